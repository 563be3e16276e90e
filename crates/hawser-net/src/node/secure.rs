//! Node traffic over sessions (`crate::session`): every reliable connection of the default
//! network is an authenticated, encrypted (unless
//! [`Security::DangerPlaintext`](crate::session::Security::DangerPlaintext)) session carrying
//! the node's own protocols, each on its own stream:
//!
//! | protocol | id | stream carries |
//! | --- | --- | --- |
//! | `hawser/node/messages` | [`NODE_MESSAGES`] (1) | the hello, then application payloads |
//! | `hawser/node/reach` | [`NODE_REACH`] (2) | the hello, then reachability events and pings |
//!
//! Ids below 1,024 are reserved for hawser. Each stream carries 4-byte big-endian
//! length-prefixed frames: first a framed hello (`hawser_proto::wire::node::FramedHello`)
//! naming the dialling node and where it listens, then frames starting with a kind byte, as
//! before sessions. The accepting end checks the hello's node against the pins of
//! [`Settings::pins`] (the session proved the peer's `PeerId`) and the membership before
//! reading anything else. Streams are one-way: the dialler writes, the acceptor reads.
//!
//! Reachability frames go to a writer task of their own, through a channel of
//! `reach.max_control_frames`, so a large application message never delays them.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use hawser_proto::node::{FrameBatch, Member, NodeId};
use hawser_proto::wire::node::{
    self as wire_node, FrameKind, FramedHello, FRAME_KIND_LEN, FRAME_LEN_PREFIX, MAX_HELLO_FRAME,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;
use tokio_util::codec::LengthDelimitedCodecError;
use tracing::{debug, info, warn, Instrument};

use super::config::Settings;
use super::connector::{BatchError, Connector, BATCH_BYTES, BATCH_MESSAGES};
use super::core::Core;
use super::counters::Counters;
use super::datagram::{self, OpenKey, SealKey};
use super::error::{SessionError, StartError};
use super::reach::{Frame, TrafficGate};
use super::rpc::{read_stream_status, NodeStream, StreamError, StreamStatus};
use crate::session::{
    self, CloseReason, DialError, HandshakeError, Identity, InboundStreams, NoiseCipher, OpenError,
    PeerId, Protocol, ProtocolId, ProtocolRegistry, Refusal, RefusalReason, Session, SessionConfig,
    Stream, TransportAddr, TransportConfig,
};

/// The protocol of application messages between nodes (reserved id 1).
pub const NODE_MESSAGES: ProtocolId = ProtocolId(1);
/// The protocol of reachability events and pings between nodes (reserved id 2).
pub const NODE_REACH: ProtocolId = ProtocolId(2);
/// The version of both node protocols.
pub const NODE_PROTOCOL_VERSION: u16 = 1;

/// Most streams open at once on a node's session by default (`MuxConfig::max_streams`: the
/// node's two, and `RpcSettings::max_streams_per_session`, 6, for the application). Far below the session default (32), so that the connection window (8 MiB) leaves a
/// stream room to grow its receive window beyond yamux's initial 256 KiB when a fast sender
/// needs it: with 32 streams, 32 × 256 KiB took all of it.
pub const NODE_MAX_STREAMS: usize = 8;

/// Largest data frame of a node's session (`MuxConfig::split_send_size`): one writer batch
/// (`super::connector::BATCH_BYTES`, 64 KiB) goes as one yamux frame, so as one sealed message
/// and one transport write, rather than four. A reachability frame waits behind at most one
/// such frame.
pub const NODE_SPLIT_SEND_SIZE: usize = 64 * 1024;

/// The registry of hawser's node protocols, as every node's sessions offer them (next to the
/// application's own, [`Settings::protocols`]).
pub fn node_protocols() -> ProtocolRegistry {
    let mut registry = ProtocolRegistry::new();
    for (id, name) in [
        (NODE_MESSAGES, "hawser/node/messages"),
        (NODE_REACH, "hawser/node/reach"),
    ] {
        // Constant names under 64 bytes, one version, two distinct ids: always valid.
        let protocol =
            Protocol::new(id, name, &[NODE_PROTOCOL_VERSION]).expect("valid node protocol");
        registry
            .register(protocol)
            .expect("room for node protocols");
    }
    registry
}

impl Settings {
    /// The session configuration of a node with these settings and `identity`: its network
    /// id and security, the node protocols and [`Settings::protocols`], `hello_timeout` as
    /// the handshake timeout, at most two streams plus `rpc.max_streams_per_session`
    /// ([`NODE_MAX_STREAMS`] by default), and data frames of up to [`NODE_SPLIT_SEND_SIZE`].
    ///
    /// # Panics
    /// Never for settings that pass [`Settings::validate`] (application protocols with ids
    /// from 1,024, each once, at most 32).
    pub fn session_config(&self, identity: Arc<Identity>) -> SessionConfig {
        let mut c = SessionConfig::new(identity, self.network_id.clone());
        c.security = self.security;
        c.protocols = node_protocols();
        for p in &self.protocols {
            // Validated: ids from 1,024 (none of hawser's), distinct, 34 protocols at most.
            c.protocols
                .register(p.clone())
                .expect("validated application protocols");
        }
        c.handshake_timeout = self.hello_timeout;
        c.mux.max_streams = 2 + self.rpc.max_streams_per_session;
        c.mux.split_send_size = NODE_SPLIT_SEND_SIZE;
        c
    }

    /// The transport configuration of a node with these settings (LSP uses [`Settings::lsp`]
    /// and [`Settings::lsp_loopback_message`]).
    pub fn transport_config(&self) -> TransportConfig {
        TransportConfig {
            lsp: self.lsp.clone(),
            lsp_loopback_message: self.lsp_loopback_message,
            custom_transports: self.custom_transports.clone(),
            ..TransportConfig::default()
        }
    }
}

/// A node's session configuration, built once at start.
pub(crate) struct SecureCtx {
    pub session: SessionConfig,
    pub transport: TransportConfig,
}

impl SecureCtx {
    /// The context of `settings`, generating an identity if none is given.
    pub fn new(settings: &Settings) -> Result<SecureCtx, StartError> {
        let identity = match &settings.identity {
            Some(i) => i.clone(),
            None => Arc::new(Identity::generate()?),
        };
        let session = settings.session_config(identity);
        session
            .validate()
            .map_err(super::config::SettingsError::from)?;
        match settings.security.cipher() {
            None => warn!("node sessions are PLAINTEXT: no encryption, identities only claimed"),
            Some(c) if !c.hardware_accelerated() => warn!(
                cipher = c.name(),
                "this CPU has no instructions for the chosen cipher: ChaChaPoly would be faster"
            ),
            Some(_) => {}
        }
        Ok(SecureCtx {
            session,
            transport: settings.transport_config(),
        })
    }

    pub fn peer_id(&self) -> PeerId {
        self.session.identity.peer_id()
    }
}

/// One outgoing session to a node: its messages stream, and the task writing its reach
/// stream.
pub(crate) struct SecureConn {
    session: Session,
    app: Stream,
    /// Scratch for single frames (`write`).
    buf: BytesMut,
    control: mpsc::Sender<Frame>,
    task: JoinHandle<()>,
}

impl Drop for SecureConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SecureConn {
    /// Writes an application frame on the messages stream, or hands an internal frame to
    /// the reach stream's writer.
    pub async fn write(&mut self, frame: Frame) -> io::Result<()> {
        match frame {
            Frame::App(_) => write_frame(&mut self.app, &mut self.buf, &frame).await,
            other => self
                .control
                .send(other)
                .await
                .map_err(|_| io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Writes a batch of queued messages: its bytes are the frames as the stream carries them
    /// (`wire::node::app_frame_header`, then the payload), written with as few writes as the
    /// stream takes.
    ///
    /// # Errors
    /// [`BatchError`] with the messages whose frames the stream took whole.
    pub async fn write_app_batch(&mut self, batch: &FrameBatch) -> Result<(), BatchError> {
        let bytes = batch.bytes();
        let mut off = 0;
        while off < bytes.len() {
            let rest = bytes.get(off..).unwrap_or_default();
            let error = match self.app.write(rest).await {
                Ok(0) => io::ErrorKind::WriteZero.into(),
                Ok(n) => {
                    off += n;
                    continue;
                }
                Err(error) => error,
            };
            return Err(BatchError {
                written: batch.whole_in(off),
                error,
            });
        }
        Ok(())
    }

    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Writes on this session that waited for the multiplexer (`SessionStats::write_waits`).
    pub fn write_waits(&self) -> u64 {
        self.session.stats().write_waits
    }

    pub fn control_sender(&self) -> mpsc::Sender<Frame> {
        self.control.clone()
    }

    /// Resolves when the session has ended. Cancel safe.
    pub async fn closed(&mut self) {
        let reason = self.session.closed().await;
        let peer = self.session.peer_id();
        if matches!(reason, CloseReason::Refused(_)) {
            warn!(%peer, %reason, "session ended");
        } else {
            debug!(%peer, %reason, "session closed");
        }
    }
}

/// Writes one frame (`wire::node`'s length prefix, kind byte and body).
async fn write_frame(stream: &mut Stream, buf: &mut BytesMut, frame: &Frame) -> io::Result<()> {
    buf.clear();
    frame
        .emit(buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    stream.write_all(buf).await
}

/// Writes a stream's first frame: the length-prefixed hello.
async fn write_hello(
    stream: &mut Stream,
    buf: &mut BytesMut,
    hello: &FramedHello,
) -> io::Result<()> {
    buf.clear();
    hello.emit_frame(buf);
    stream.write_all(buf).await
}

/// Writes internal frames on the reach stream until the channel closes or a write fails.
async fn control_writer(mut stream: Stream, mut rx: mpsc::Receiver<Frame>) {
    let mut buf = BytesMut::new();
    while let Some(frame) = rx.recv().await {
        if let Err(err) = write_frame(&mut stream, &mut buf, &frame).await {
            debug!(%err, "reach stream write failed");
            return;
        }
    }
}

/// Checks `actual` against the pins of `node`.
pub(crate) fn check_pin(
    settings: &Settings,
    node: NodeId,
    actual: PeerId,
) -> Result<(), SessionError> {
    match settings.pins.get(&node) {
        Some(pins) if !pins.is_empty() && !pins.contains(&actual) => {
            Err(SessionError::PeerMismatch {
                node,
                expected: pins.clone(),
                actual,
            })
        }
        _ => Ok(()),
    }
}

/// Counts and traces a failed outgoing session.
pub(crate) fn note_dial_error<L: Connector>(core: &Core<L>, peer: NodeId, err: &SessionError) {
    if err.is_peer_mismatch() {
        Counters::bump(&core.counters.peer_mismatches);
        warn!(node = %core.id, %peer, %err, "session refused: the peer is not the pinned identity");
    } else if matches!(err, SessionError::Handshake(_)) {
        Counters::bump(&core.counters.handshake_failures);
        warn!(node = %core.id, %peer, %err, "session handshake failed");
    }
}

/// Dials `member` at `addr`, checks its identity, opens both node streams and says hello on
/// each. Nothing but the hello is written before the identity is checked.
pub(crate) async fn dial<L: Connector>(
    core: &Arc<Core<L>>,
    ctx: &SecureCtx,
    member: &Member,
    addr: &TransportAddr,
) -> Result<SecureConn, SessionError> {
    let pins = core.settings.pins.get(&member.id);
    // One pin: the session layer checks it inside the handshake.
    let expected = match pins.map(Vec::as_slice) {
        Some([one]) => Some(*one),
        _ => None,
    };
    let session = session::dial(addr, &ctx.transport, &ctx.session, expected)
        .await
        .map_err(|e| match e {
            DialError::Transport(e) => SessionError::Transport(e),
            DialError::Handshake(h) => SessionError::Handshake(h),
        })?;
    if let Err(e) = check_pin(&core.settings, member.id, session.peer_id()) {
        session.close().await;
        return Err(e);
    }
    let hello = FramedHello {
        from: core.id.0,
        listen: core.reach.as_ref().and_then(|r| r.hello_addr),
    };
    let mut buf = BytesMut::new();
    let mut app = session.open(NODE_MESSAGES).await?;
    write_hello(&mut app, &mut buf, &hello)
        .await
        .map_err(SessionError::Hello)?;
    if let Some(cipher) = session.cipher() {
        send_datagram_key(core, member.id, cipher, &mut app, &mut buf).await?;
    }
    let mut reach = session.open(NODE_REACH).await?;
    write_hello(&mut reach, &mut buf, &hello)
        .await
        .map_err(SessionError::Hello)?;
    let (control, rx) = mpsc::channel(core.settings.reach.max_control_frames.max(1));
    let task = core.tracker.spawn(control_writer(reach, rx));
    info!(node = %core.id, peer = %member.id, %addr, peer_id = %session.peer_id(),
          cipher = session.cipher().map_or("plaintext", NoiseCipher::name), "session connected");
    Ok(SecureConn {
        session,
        app,
        buf,
        control,
        task,
    })
}

/// Draws this node's datagram key to `to`, sends it on the (encrypted) messages stream, and
/// seals the next datagrams to `to` with it.
async fn send_datagram_key<L: Connector>(
    core: &Core<L>,
    to: NodeId,
    cipher: NoiseCipher,
    app: &mut Stream,
    buf: &mut BytesMut,
) -> Result<(), SessionError> {
    let key = datagram::generate_key().map_err(|e| SessionError::Hello(io::Error::other(e)))?;
    write_frame(app, buf, &Frame::DatagramKey(key))
        .await
        .map_err(SessionError::Hello)?;
    if let Some(peer) = core.peer(to) {
        peer.lock().seal = Some(SealKey::new(&key, cipher));
    }
    Ok(())
}

fn is_oversized(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.is::<LengthDelimitedCodecError>())
}

/// Runs the handshake of an accepted transport connection (`remote`: its address, when
/// known), then serves the session. Holds `permit` (`max_inbound_connections`) throughout.
pub(crate) async fn accept<L: Connector>(
    core: Arc<Core<L>>,
    ctx: Arc<SecureCtx>,
    pending: session::transport::PendingConnection,
    remote: Option<SocketAddr>,
    permit: OwnedSemaphorePermit,
) {
    // Filled in as they become known: the remote address (byte-stream transports), then the
    // PeerId the handshake proved and the node id its hello names.
    let span = tracing::info_span!(
        parent: None,
        "conn",
        node = core.id.0,
        addr = tracing::field::Empty,
        peer_id = tracing::field::Empty,
        peer = tracing::field::Empty,
    );
    if let Some(addr) = remote {
        span.record("addr", tracing::field::display(addr));
    }
    handshake_and_serve(core, ctx, pending, remote, permit)
        .instrument(span)
        .await;
}

async fn handshake_and_serve<L: Connector>(
    core: Arc<Core<L>>,
    ctx: Arc<SecureCtx>,
    pending: session::transport::PendingConnection,
    remote: Option<SocketAddr>,
    permit: OwnedSemaphorePermit,
) {
    let attempt = async {
        // The transport's own setup (a WebSocket upgrade) is bounded like the handshake.
        let link = tokio::time::timeout(core.settings.hello_timeout, pending)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        session::accept(link, &ctx.session).await
    };
    let result = tokio::select! {
        r = attempt => r,
        () = core.cancel.cancelled() => return,
    };
    match result {
        Ok(session) => serve(core, session, remote, permit).await,
        Err(err) => {
            if matches!(err, HandshakeError::PeerMismatch { .. }) {
                Counters::bump(&core.counters.peer_mismatches);
            } else {
                Counters::bump(&core.counters.handshake_failures);
            }
            let remote = remote.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
            let hint = transport_hint(&err);
            warn!(node = %core.id, %remote, %err, "inbound session handshake failed{hint}");
        }
    }
}

/// A connection's address for a message: the address, or `unknown`.
fn fmt_remote(remote: Option<SocketAddr>) -> String {
    remote.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

/// What an inbound handshake failure suggests about a transport mismatch: an HTTP request
/// on a TCP listener (its first bytes "GE" of "GET" read as a length) comes from a peer
/// dialling `ws://`; bytes that are no HTTP on a WebSocket listener, from one dialling
/// `tcp://`.
fn transport_hint(err: &HandshakeError) -> &'static str {
    match err {
        HandshakeError::TooLarge { len, .. } if *len == usize::from(u16::from_be_bytes(*b"GE")) => {
            ": an HTTP request arrived; the peer dials ws:// an address that listens for tcp://"
        }
        HandshakeError::Io(e) if e.to_string().contains("httparse") => {
            ": not a WebSocket request; the peer dials tcp:// an address that listens for ws://"
        }
        _ => "",
    }
}

/// Serves an accepted session until it ends, the node stops, or the peer breaks a rule.
async fn serve<L: Connector>(
    core: Arc<Core<L>>,
    session: Session,
    remote: Option<SocketAddr>,
    _permit: OwnedSemaphorePermit,
) {
    let (Ok(messages), Ok(reach)) = (
        session.accept_streams(NODE_MESSAGES),
        session.accept_streams(NODE_REACH),
    ) else {
        // A fresh session's receivers are always there.
        return;
    };
    let peer = session.peer_id();
    let cipher = session.cipher();
    tracing::Span::current().record("peer_id", tracing::field::display(peer));
    debug!(node = %core.id, %peer, remote = %fmt_remote(remote), "session accepted");
    let on = Accepted {
        peer,
        remote,
        cipher,
    };
    tokio::select! {
        () = serve_protocol(&core, &session, messages, on, true) => {}
        () = serve_protocol(&core, &session, reach, on, false) => {}
        () = serve_app_streams(&core, &session, on) => {}
        () = core.cancel.cancelled() => {}
    }
    // Dropping the last handle ends the session at once.
    drop(session);
}

/// Accepts the application's streams (`Settings::protocols`) on an accepted session, each
/// checked and answered on a task of its own, until the session ends. Never returns before.
async fn serve_app_streams<L: Connector>(core: &Arc<Core<L>>, session: &Session, on: Accepted) {
    let incoming: Vec<InboundStreams> = core
        .settings
        .protocols
        .iter()
        .filter_map(|p| session.accept_streams(p.id()).ok())
        .collect();
    let accepting = incoming.into_iter().map(|mut inc| async move {
        // Bounded by the session's stream cap: yamux refuses streams beyond it.
        while let Some(stream) = inc.accept().await {
            let task = accept_app_stream(core.clone(), stream, on.peer);
            core.tracker.spawn(task.in_current_span());
        }
    });
    futures_util::future::join_all(accepting).await;
    std::future::pending::<()>().await;
}

/// Checks an application stream's hello (pins, membership), answers its opener, and hands
/// it to the protocol's acceptor.
async fn accept_app_stream<L: Connector>(core: Arc<Core<L>>, stream: Stream, peer: PeerId) {
    let protocol = stream.protocol();
    let mut stream = stream;
    let hello = tokio::time::timeout(core.settings.hello_timeout, read_hello(&mut stream)).await;
    let Ok(Ok(hello)) = hello else {
        Counters::bump(&core.counters.bad_hellos);
        debug!(node = %core.id, %peer, %protocol, "application stream without a hello: reset");
        return;
    };
    let from = NodeId(hello.from);
    if let Err(err) = check_pin(&core.settings, from, peer) {
        Counters::bump(&core.counters.peer_mismatches);
        warn!(node = %core.id, %err, "stream refused: not the pinned identity");
        return;
    }
    if !core.is_member(from) {
        Counters::bump(&core.counters.unknown_senders);
        warn!(node = %core.id, peer = %from, "stream from a non-member: reset");
        return;
    }
    let (status, permit) = match core.rpc.reserve_stream(protocol) {
        Ok(permit) => (StreamStatus::Accepted, Some(permit)),
        Err(status) => (status, None),
    };
    if stream.write_all(&status.to_bytes()).await.is_err() {
        return;
    }
    if let Some(permit) = permit {
        core.rpc.note_stream_accepted();
        debug!(node = %core.id, peer = %from, %protocol, "stream accepted");
        permit.send((from, NodeStream::session(stream)));
    }
}

/// Reads one length-prefixed framed hello (at most [`MAX_HELLO_FRAME`] bytes) from `stream`.
async fn read_hello(stream: &mut Stream) -> io::Result<FramedHello> {
    use tokio::io::AsyncReadExt;
    let mut prefix = [0u8; FRAME_LEN_PREFIX];
    stream.read_exact(&mut prefix).await?;
    let len = wire_node::frame_len(prefix, MAX_HELLO_FRAME)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    FramedHello::parse(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Opens a stream of `protocol` on `session` (to `member`): says hello, and waits for the
/// acceptor's answer.
pub(crate) async fn open_app_stream<L: Connector>(
    core: &Arc<Core<L>>,
    session: &Session,
    protocol: ProtocolId,
) -> Result<NodeStream, StreamError> {
    let mut stream = session.open(protocol).await.map_err(|e| match e {
        OpenError::UnsupportedByPeer(p) | OpenError::UnknownProtocol(p) => {
            StreamError::NoHandler(p)
        }
        OpenError::Mux(_) => StreamError::Overloaded,
        OpenError::SessionClosed => StreamError::Io(io::ErrorKind::NotConnected.into()),
        OpenError::Io(e) => StreamError::Io(e),
    })?;
    let hello = FramedHello {
        from: core.id.0,
        listen: core.reach.as_ref().and_then(|r| r.hello_addr),
    };
    let mut buf = BytesMut::new();
    write_hello(&mut stream, &mut buf, &hello).await?;
    read_stream_status(&mut stream, protocol, core.settings.hello_timeout).await?;
    Ok(NodeStream::session(stream))
}

/// What a served stream knows of its session.
#[derive(Clone, Copy)]
struct Accepted {
    peer: PeerId,
    /// The connection's address, when known.
    remote: Option<SocketAddr>,
    /// The session's cipher (a datagram key is taken only when there is one, for it).
    cipher: Option<NoiseCipher>,
}

/// Serves the streams of one protocol, one after the other; the first must come within
/// `hello_timeout`.
async fn serve_protocol<L: Connector>(
    core: &Arc<Core<L>>,
    session: &Session,
    mut incoming: InboundStreams,
    on: Accepted,
    messages: bool,
) {
    let peer = on.peer;
    let first = tokio::time::timeout(core.settings.hello_timeout, incoming.accept()).await;
    let mut stream = match first {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(_) => {
            Counters::bump(&core.counters.bad_hellos);
            warn!(node = %core.id, %peer, "no node stream in time: session closed");
            return;
        }
    };
    loop {
        if !serve_stream(core, session, stream, on, messages).await {
            return;
        }
        stream = match incoming.accept().await {
            Some(s) => s,
            None => return,
        };
    }
}

/// Reads one stream: the hello, checked, then frames. `false` when the session must close.
/// A hello that is malformed, names a node pinned to another identity, or a non-member, is
/// refused ([`Session::refuse`]), so that the dialler logs the same reason.
async fn serve_stream<L: Connector>(
    core: &Arc<Core<L>>,
    session: &Session,
    stream: Stream,
    on: Accepted,
    messages: bool,
) -> bool {
    let Accepted {
        peer,
        remote,
        cipher,
    } = on;
    // The kind byte comes on top of an application payload of up to `max_frame`.
    let max = core.settings.max_frame.saturating_add(FRAME_KIND_LEN);
    let mut frames = stream.into_framed(max);
    let first = tokio::time::timeout(core.settings.hello_timeout, frames.next()).await;
    let hello = match first {
        Ok(Some(Ok(frame))) => match FramedHello::parse(&frame) {
            Ok(h) => h,
            Err(err) => {
                Counters::bump(&core.counters.bad_hellos);
                warn!(node = %core.id, %peer, %err, "refused peer: bad hello");
                let detail = format!("node hello: {err}");
                session
                    .refuse(&Refusal::new(RefusalReason::Malformed, &detail))
                    .await;
                return false;
            }
        },
        Ok(Some(Err(err))) if is_oversized(&err) => {
            core.note_oversized(None);
            warn!(node = %core.id, %peer, "oversized frame before hello: session closed");
            return false;
        }
        _ => {
            Counters::bump(&core.counters.bad_hellos);
            debug!(node = %core.id, %peer, "no hello: session closed");
            return false;
        }
    };
    let from = NodeId(hello.from);
    if let Err(err) = check_pin(&core.settings, from, peer) {
        Counters::bump(&core.counters.peer_mismatches);
        warn!(node = %core.id, %err, "refused peer: not the pinned identity");
        let detail = format!("{from} is pinned to another identity");
        session
            .refuse(&Refusal::new(RefusalReason::PeerMismatch, &detail))
            .await;
        return false;
    }
    if !core.admit_soon(from, hello.listen).await {
        Counters::bump(&core.counters.unknown_senders);
        warn!(node = %core.id, peer = %from, "refused peer: not a member");
        session
            .refuse(&Refusal::new(RefusalReason::NotMember, &from.to_string()))
            .await;
        return false;
    }
    // Reachability knows the peer by the address it listens on, else by the connection's.
    let via = hello
        .listen
        .or(remote)
        .unwrap_or((Ipv4Addr::UNSPECIFIED, 0).into());
    if messages {
        info!(node = %core.id, peer = %from, %peer, remote = %fmt_remote(remote), "accepted session");
        core.reach_connected(from, via);
    }
    let mut gate = TrafficGate::default();
    let mut batch = AppBatch::default();
    loop {
        let mut item = frames.next().await;
        // Then every frame already received, up to a batch, handed on together.
        let end = loop {
            let on = Served { from, via, cipher };
            if let Some(keep) = serve_item(core, on, item, &mut batch, &mut gate).await {
                break Some(keep);
            }
            // Application frames already buffered, in a tight loop of their own.
            take_app_frames(frames.read_buffer_mut(), max, &mut batch);
            if batch.is_full() {
                break None;
            }
            // Whole frames already buffered are taken straight from the buffer; the
            // framed stream reads more (and reports oversized or broken frames).
            if let Some(frame) = take_whole_frame(frames.read_buffer_mut(), max) {
                item = Some(Ok(frame));
                continue;
            }
            match frames.next().now_or_never() {
                Some(next) => item = next,
                None => break None,
            }
        };
        if !batch.deliver(core, from, via, &mut gate).await {
            return false;
        }
        if let Some(keep) = end {
            return keep;
        }
    }
}

/// Takes the first frame of `buf` if it lies there whole (`wire::node::take_frame`); `None`
/// otherwise, leaving `buf` untouched, so the codec, which has just returned a frame and so
/// waits for a length, reads on from the same place (and reports a frame over `max`).
fn take_whole_frame(buf: &mut BytesMut, max: usize) -> Option<BytesMut> {
    wire_node::take_frame(buf, max).ok().flatten()
}

/// Moves the application frames that lie whole at the front of `buf` (each announcing at most
/// `max` bytes) into `batch`, until it is full or another kind of frame, a partial frame or a
/// frame over the bound comes next (left for [`take_whole_frame`] or the codec).
fn take_app_frames(buf: &mut BytesMut, max: usize, batch: &mut AppBatch) {
    while !batch.is_full() {
        let Some(payload) = wire_node::take_app_payload(buf, max) else {
            return;
        };
        batch.push(payload);
    }
}

/// [`take_app_frames`] for the fuzz targets (`super::fuzzing`).
#[cfg(fuzzing)]
pub(super) fn fuzz_take_app_frames(buf: &mut BytesMut, max: usize) -> Vec<Bytes> {
    let mut batch = AppBatch::default();
    take_app_frames(buf, max, &mut batch);
    batch.payloads
}

/// [`take_whole_frame`] for the fuzz targets (`super::fuzzing`).
#[cfg(fuzzing)]
pub(super) fn fuzz_take_whole_frame(buf: &mut BytesMut, max: usize) -> Option<BytesMut> {
    take_whole_frame(buf, max)
}

/// Application payloads received and not yet handed on, at most [`BATCH_MESSAGES`] and
/// [`BATCH_BYTES`] (or one larger payload).
#[derive(Default)]
struct AppBatch {
    payloads: Vec<Bytes>,
    bytes: usize,
}

impl AppBatch {
    fn push(&mut self, payload: Bytes) {
        self.bytes += payload.len();
        self.payloads.push(payload);
    }

    fn is_full(&self) -> bool {
        self.payloads.len() >= BATCH_MESSAGES || self.bytes >= BATCH_BYTES
    }

    /// Hands the payloads to the application; `false` once the node is stopping.
    async fn deliver<L: Connector>(
        &mut self,
        core: &Arc<Core<L>>,
        from: NodeId,
        via: SocketAddr,
        gate: &mut TrafficGate,
    ) -> bool {
        self.bytes = 0;
        core.receive_app_batch(from, via, &mut self.payloads, gate)
            .await
    }
}

/// The sender of a served stream, once its hello was checked.
#[derive(Clone, Copy)]
struct Served {
    from: NodeId,
    via: SocketAddr,
    cipher: Option<NoiseCipher>,
}

/// Handles one item of a served stream: an application payload joins `batch`; anything else
/// is handled at once, after the batch. `Some(keep)` when the stream ends (`keep`: whether
/// the session may go on).
async fn serve_item<L: Connector>(
    core: &Arc<Core<L>>,
    on: Served,
    item: Option<io::Result<BytesMut>>,
    batch: &mut AppBatch,
    gate: &mut TrafficGate,
) -> Option<bool> {
    let Served { from, via, cipher } = on;
    let frame = match item {
        Some(Ok(frame)) => frame,
        Some(Err(err)) if is_oversized(&err) => {
            core.note_oversized(Some(from));
            warn!(node = %core.id, peer = %from, max = core.settings.max_frame,
                  "oversized frame: session closed");
            return Some(false);
        }
        Some(Err(err)) => {
            info!(node = %core.id, peer = %from, %err, "inbound stream failed");
            return Some(false);
        }
        None => {
            debug!(node = %core.id, peer = %from, "inbound stream closed");
            return Some(true);
        }
    };
    let mut frame = frame;
    if FrameKind::of(&frame) == Ok(FrameKind::App) {
        // The common case, without a second reference to the buffer (`Frame::parse` slices).
        frame.advance(FRAME_KIND_LEN);
        batch.push(frame.freeze());
        return None;
    }
    let frame = match Frame::parse(frame.freeze()) {
        Ok(Frame::App(payload)) => {
            batch.push(payload);
            return None;
        }
        Ok(frame) => frame,
        Err(err) => {
            core.note_bad_frame(from, &err);
            return None;
        }
    };
    // Everything received before it is handed on first.
    if !batch.deliver(core, from, via, gate).await {
        return Some(false);
    }
    match (frame, cipher) {
        (Frame::DatagramKey(key), Some(cipher)) => {
            if let Some(p) = core.peer(from) {
                p.lock().open = Some(OpenKey::new(&key, cipher));
                debug!(node = %core.id, peer = %from, "datagram key received");
            }
            None
        }
        (frame, _) => (!core.receive(from, via, frame, gate).await).then_some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(payload: &[u8]) -> Frame {
        Frame::App(Bytes::copy_from_slice(payload))
    }

    #[test]
    fn app_frames_are_taken_until_another_kind_a_partial_or_an_oversized_frame() {
        let mut buf = BytesMut::new();
        for body in [&b"ab"[..], b"", b"cdefgh"] {
            app(body).emit(&mut buf).unwrap();
        }
        Frame::Ping.emit(&mut buf).unwrap();
        app(b"after").emit(&mut buf).unwrap();
        let mut batch = AppBatch::default();
        take_app_frames(&mut buf, 16, &mut batch);
        assert_eq!(batch.payloads, [&b"ab"[..], b"", b"cdefgh"]);
        // The ping stays, and what follows it.
        assert_eq!(&buf[..5], &[0, 0, 0, 1, FrameKind::Ping.byte()]);
        let ping = take_whole_frame(&mut buf, 16).unwrap();
        assert_eq!(&ping[..], &[FrameKind::Ping.byte()]);
        // Over the bound: left for the codec, which reports it.
        take_app_frames(&mut buf, 4, &mut batch);
        assert_eq!(batch.payloads.len(), 3);
        // Partial: left until the rest arrives.
        let mut partial = buf.split_to(buf.len() - 1);
        take_app_frames(&mut partial, 16, &mut batch);
        assert_eq!((batch.payloads.len(), partial.len()), (3, 9));
        partial.unsplit(buf);
        take_app_frames(&mut partial, 16, &mut batch);
        assert_eq!(batch.payloads[3], &b"after"[..]);
        assert!(partial.is_empty());
    }

    #[test]
    fn an_empty_frame_is_left_for_the_codec_not_read_as_an_app_frame() {
        // An empty frame (no kind byte), then an application frame: the byte after the empty
        // frame's prefix is the next frame's length, 0x00 like the App kind.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0, 0, 0, 0]);
        app(b"x").emit(&mut buf).unwrap();
        let mut batch = AppBatch::default();
        take_app_frames(&mut buf, 16, &mut batch);
        assert!(batch.payloads.is_empty());
        assert_eq!(buf.len(), 4 + 4 + 2, "nothing taken");
        assert_eq!(take_whole_frame(&mut buf, 16).as_deref(), Some(&b""[..]));
        take_app_frames(&mut buf, 16, &mut batch);
        assert_eq!(batch.payloads, [&b"x"[..]]);
    }

    proptest::proptest! {
        /// Whatever bytes arrive, the fast path never panics, and every payload it takes is
        /// what the stream's codec would have decoded as an application frame, in order; it
        /// stops where the codec (or `serve_item`) must decide.
        #[test]
        fn app_frames_agree_with_the_codec_on_any_input(
            // Mostly 0 and 1, so that short, empty and App frames are common.
            bytes in proptest::collection::vec(
                proptest::prop_oneof![3 => 0u8..2, 1 => proptest::prelude::any::<u8>()],
                0..64,
            ),
            max in 0usize..16,
        ) {
            use tokio_util::codec::{Decoder, LengthDelimitedCodec};
            let mut ours = BytesMut::from(&bytes[..]);
            let mut batch = AppBatch::default();
            take_app_frames(&mut ours, max, &mut batch);
            let mut theirs = BytesMut::from(&bytes[..]);
            let mut codec = LengthDelimitedCodec::builder().max_frame_length(max).new_codec();
            for payload in &batch.payloads {
                let frame = codec.decode(&mut theirs).unwrap().unwrap();
                proptest::prop_assert_eq!(frame.first(), Some(&FrameKind::App.byte()));
                proptest::prop_assert_eq!(&frame[1..], &payload[..]);
            }
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn whole_frames_are_taken_from_the_buffer_as_the_codec_would() {
        use tokio_util::codec::{Decoder, LengthDelimitedCodec};
        let mut buf = BytesMut::new();
        for body in [&b"ab"[..], b"", b"cdefgh"] {
            app(body).emit(&mut buf).unwrap();
        }
        let mut codec = LengthDelimitedCodec::builder()
            .max_frame_length(8)
            .new_codec();
        let mut theirs = buf.clone();
        let mut ours = buf.clone();
        while let Some(expected) = codec.decode(&mut theirs).unwrap() {
            assert_eq!(take_whole_frame(&mut ours, 8), Some(expected));
        }
        assert!(ours.is_empty());
        // A partial frame, or one over the bound, is left for the codec.
        let mut partial = buf.split_to(6);
        assert_eq!(take_whole_frame(&mut partial, 8), None);
        assert_eq!(partial.len(), 6);
        let mut big = BytesMut::from(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9][..]);
        assert_eq!(take_whole_frame(&mut big, 8), None);
        assert_eq!(big.len(), 13);
    }
}
