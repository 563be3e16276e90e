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
//! naming the opening node and where it listens, then frames starting with a kind byte
//! (`hawser_proto::wire::node::Frame`). The reading end checks the hello's node against the
//! pins of [`Settings::pins`] (the session proved the peer's `PeerId`) and the membership
//! before reading anything else. Each stream is one-way: the node that opened it writes, the
//! other reads. Between pinned peers both nodes open their messages stream on one session,
//! whichever dialled it ([`Shell::share_session`]); otherwise each node writes on the session
//! it dialled. A writer runs on its session's own task (a batch leaves in the same turn); a
//! reader runs on a task of its own, so that reading a fast sender's stream runs beside the
//! session's decryption rather than after it.
//!
//! The engine writes reachability frames and pings before application frames, on the
//! messages stream; [`NODE_REACH`] stays reserved (older nodes open it; it is accepted and
//! read like the messages stream).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

#[cfg(any(test, fuzzing))]
use bytes::Bytes;
use bytes::BytesMut;
use futures_util::StreamExt;
use hawser_proto::node::engine::{
    ConnId, DialError as EngineDialError, Refusal as EngineRefusal, WriteError,
};
use hawser_proto::node::{FrameBatch, NodeId};
use hawser_proto::wire::node::{
    self as wire_node, Frame, FramedHello, FRAME_KIND_LEN, FRAME_LEN_PREFIX, MAX_HELLO_FRAME,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::LengthDelimitedCodecError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::config::Settings;
use super::conn::{write_all, write_loop, BatchSink};
use super::counters::Counters;
use super::datagram::{self, SealKey};
use super::error::{SessionError, StartError};
use super::rpc::{read_stream_status, NodeStream, StreamError, StreamStatus};
use super::shell::Shell;
use crate::session::{
    self, CloseReason, DialError, HandshakeError, Identity, InboundStreams, NoiseCipher, OpenError,
    PeerId, Protocol, ProtocolId, ProtocolRegistry, Refusal, RefusalReason, Session, SessionConfig,
    Stream, TransportAddr, TransportConfig, WeakSession,
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
/// (`EngineConfig::batch_bytes`, 64 KiB) goes as one yamux frame, so as one sealed message
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

/// Most frames a reader hands to the engine under one hold of the lock.
const READ_BATCH: usize = 1024;

/// This node's hello (its id, and the address it announces).
fn hello(shell: &Shell) -> FramedHello {
    let listen = shell.lock().engine.announced_addr();
    FramedHello {
        from: shell.id.0,
        listen,
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
fn note_dial_error(shell: &Shell, peer: NodeId, err: &SessionError) {
    if err.is_peer_mismatch() {
        Counters::bump(&shell.counters.peer_mismatches);
        warn!(node = %shell.id, %peer, %err, "session refused: the peer is not the pinned identity");
    } else if matches!(err, SessionError::Handshake(_)) {
        Counters::bump(&shell.counters.handshake_failures);
        warn!(node = %shell.id, %peer, %err, "session handshake failed");
    }
}

/// An outbound session's messages stream, as the writer's sink.
pub(crate) struct SessionSink {
    session: Session,
    app: Stream,
}

impl BatchSink for SessionSink {
    async fn write_batch(
        &mut self,
        batch: &FrameBatch,
        stop: &CancellationToken,
    ) -> Result<(), WriteError> {
        write_all(&mut self.app, batch.bytes(), stop).await
    }

    fn closed(&self) -> CancellationToken {
        self.session.ended()
    }

    fn log_closed(&self) {
        let reason = self.session.close_reason().unwrap_or(CloseReason::Local);
        let peer = self.session.peer_id();
        if matches!(reason, CloseReason::Refused(_)) {
            warn!(%peer, %reason, "session ended");
        } else {
            debug!(%peer, %reason, "session closed");
        }
    }
}

/// Dials `member` at `addr`, checks its identity, opens the messages stream and says hello
/// (then, with Noise, sends this node's datagram key). Nothing but the hello is written
/// before the identity is checked.
pub(crate) async fn dial(
    shell: &Arc<Shell>,
    ctx: &SecureCtx,
    peer: NodeId,
    addr: &TransportAddr,
) -> Result<SessionSink, SessionError> {
    let pins = shell.settings.pins.get(&peer);
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
    if let Err(e) = check_pin(&shell.settings, peer, session.peer_id()) {
        session.close().await;
        return Err(e);
    }
    serve_dialled(shell, &session, peer);
    let sink = open_messages(shell, session, peer).await?;
    info!(node = %shell.id, %peer, %addr, peer_id = %sink.session.peer_id(),
          cipher = sink.session.cipher().map_or("plaintext", NoiseCipher::name), "session connected");
    Ok(sink)
}

/// Opens this node's messages stream to `peer` on `session` and says hello (then, with Noise,
/// sends this node's datagram key).
async fn open_messages(
    shell: &Arc<Shell>,
    session: Session,
    peer: NodeId,
) -> Result<SessionSink, SessionError> {
    let mut buf = BytesMut::new();
    let mut app = session.open(NODE_MESSAGES).await?;
    write_hello(&mut app, &mut buf, &hello(shell))
        .await
        .map_err(SessionError::Hello)?;
    if let Some(cipher) = session.cipher() {
        let key = datagram::generate_key().map_err(|e| SessionError::Hello(io::Error::other(e)))?;
        write_frame(&mut app, &mut buf, &Frame::DatagramKey(key))
            .await
            .map_err(SessionError::Hello)?;
        shell.lock().seal.insert(peer, SealKey::new(&key, cipher));
    }
    Ok(SessionSink { session, app })
}

/// Dials each of `targets` in turn for `conn` (within `connect_timeout`), reports the outcome
/// to the engine, and runs the connection's writer.
pub(crate) async fn dial_and_write(
    shell: Arc<Shell>,
    ctx: Arc<SecureCtx>,
    conn: ConnId,
    peer: NodeId,
    targets: Vec<(TransportAddr, SocketAddr)>,
    stop: CancellationToken,
) {
    let attempt = async {
        // A session the peer opened to this node carries this node's messages too (one
        // connection both ways): no new connection, and replies share the packets of what
        // they answer.
        if let Some((session, via)) = shell.shared_session(peer) {
            match open_messages(&shell, session, peer).await {
                Ok(sink) => {
                    Counters::bump(&shell.counters.shared_sessions);
                    debug!(node = %shell.id, %peer, "writing on the session the peer opened");
                    return Ok((sink, via));
                }
                Err(err) => debug!(node = %shell.id, %peer, %err, "shared session unusable"),
            }
        }
        let mut last = EngineDialError::Other("no address".to_owned());
        for (addr, via) in &targets {
            match dial(&shell, &ctx, peer, addr).await {
                Ok(sink) => return Ok((sink, *via)),
                Err(err) => {
                    note_dial_error(&shell, peer, &err);
                    debug!(node = %shell.id, %peer, %addr, %err, "cannot connect");
                    last = EngineDialError::Other(err.to_string());
                }
            }
        }
        Err(last)
    };
    let result = tokio::select! {
        r = tokio::time::timeout(shell.settings.connect_timeout, attempt) => {
            r.unwrap_or(Err(EngineDialError::TimedOut))
        }
        () = stop.cancelled() => return,
    };
    match result {
        Ok((sink, via)) => {
            let session = sink.session.clone();
            shell.share_session(peer, &session, via);
            if let Some(slot) = shell.dialed(conn, peer, Ok((via, Some(session.clone())))) {
                // On the session's own task: a batch written there goes out in the same turn,
                // with no hand-off to the multiplexer's task. Still tracked, so `stop` waits
                // for it.
                let writer = shell
                    .tracker
                    .track_future(write_loop(shell.clone(), conn, slot, sink).in_current_span());
                if let Err(writer) = session.run_on_driver(Box::pin(writer)) {
                    writer.await;
                }
            }
        }
        Err(e) => {
            // The first failure of a series is a warning (a peer down, or dialled on a
            // transport it does not listen on); the retries that follow are debug.
            if shell.first_failure(peer) {
                let addrs: Vec<String> = targets.iter().map(|(a, _)| a.to_string()).collect();
                warn!(node = %shell.id, %peer, addr = %addrs.join(", "), err = %e,
                      "cannot connect to peer: retrying with back-off");
            }
            shell.dialed(conn, peer, Err(e));
        }
    }
}

fn is_oversized(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.is::<LengthDelimitedCodecError>())
}

/// Runs the handshake of an accepted transport connection (`remote`: its address, when
/// known), then serves the session. Holds `permit` (`max_inbound_connections`) throughout.
pub(crate) async fn accept(
    shell: Arc<Shell>,
    ctx: Arc<SecureCtx>,
    pending: session::transport::PendingConnection,
    remote: Option<SocketAddr>,
    permit: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!(
        parent: None,
        "conn",
        node = shell.id.0,
        addr = tracing::field::Empty,
        peer_id = tracing::field::Empty,
        peer = tracing::field::Empty,
    );
    if let Some(addr) = remote {
        span.record("addr", tracing::field::display(addr));
    }
    handshake_and_serve(shell, ctx, pending, remote, permit)
        .instrument(span)
        .await;
}

async fn handshake_and_serve(
    shell: Arc<Shell>,
    ctx: Arc<SecureCtx>,
    pending: session::transport::PendingConnection,
    remote: Option<SocketAddr>,
    permit: OwnedSemaphorePermit,
) {
    let attempt = async {
        // The transport's own setup (a WebSocket upgrade) is bounded like the handshake.
        let link = tokio::time::timeout(shell.settings.hello_timeout, pending)
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        session::accept(link, &ctx.session).await
    };
    let result = tokio::select! {
        r = attempt => r,
        () = shell.cancel.cancelled() => return,
    };
    match result {
        Ok(session) => serve(shell, Held::Accepted(session), remote, Some(permit)).await,
        Err(err) => {
            if matches!(err, HandshakeError::PeerMismatch { .. }) {
                Counters::bump(&shell.counters.peer_mismatches);
            } else {
                Counters::bump(&shell.counters.handshake_failures);
            }
            let remote = fmt_remote(remote);
            let hint = transport_hint(&err);
            warn!(node = %shell.id, %remote, %err, "inbound session handshake failed{hint}");
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

/// What a served stream knows of its session.
#[derive(Clone, Copy)]
struct Accepted {
    peer: PeerId,
    /// The connection's address, when known.
    remote: Option<SocketAddr>,
    /// The session's cipher (a datagram key is taken only when there is one, for it).
    cipher: Option<NoiseCipher>,
    /// On a session this node dialled: the node it dialled, the only one its hellos may name.
    dialled: Option<NodeId>,
}

/// How a served session is held.
enum Held {
    /// A session a peer opened: held until it ends (the peer that opened it decides when).
    Accepted(Session),
    /// A session this node dialled to the node: held only while a stream of the peer's is
    /// read, so that it ends once this node's writer and the peer's are both done with it.
    Dialled(WeakSession, NodeId),
}

impl Held {
    /// A full handle, while the session is held by someone.
    fn get(&self) -> Option<Session> {
        match self {
            Held::Accepted(s) => Some(s.clone()),
            Held::Dialled(w, _) => w.upgrade(),
        }
    }

    /// The node dialled, for a session this node dialled.
    fn dialled(&self) -> Option<NodeId> {
        match self {
            Held::Accepted(_) => None,
            Held::Dialled(_, peer) => Some(*peer),
        }
    }
}

/// Reads the node streams `peer` opens on a session this node dialled to it (the peer writes
/// there when it shares the session rather than dialling one of its own), on a task of its
/// own: a reader beside the session's task decrypts and parses in parallel with it. The
/// peer's hellos must name `peer`.
fn serve_dialled(shell: &Arc<Shell>, session: &Session, peer: NodeId) {
    let held = Held::Dialled(session.downgrade(), peer);
    let served = serve(shell.clone(), held, None, None);
    shell.tracker.spawn(served.in_current_span());
}

/// Serves a session's node and application streams until it ends, the node stops, or the
/// peer breaks a rule.
async fn serve(
    shell: Arc<Shell>,
    held: Held,
    remote: Option<SocketAddr>,
    _permit: Option<OwnedSemaphorePermit>,
) {
    let Some(session) = held.get() else {
        return;
    };
    let (Ok(messages), Ok(reach)) = (
        session.accept_streams(NODE_MESSAGES),
        session.accept_streams(NODE_REACH),
    ) else {
        // A fresh session's receivers are always there.
        return;
    };
    let app: Vec<InboundStreams> = shell
        .settings
        .protocols
        .iter()
        .filter_map(|p| session.accept_streams(p.id()).ok())
        .collect();
    let peer = session.peer_id();
    let on = Accepted {
        peer,
        remote,
        cipher: session.cipher(),
        dialled: held.dialled(),
    };
    if on.dialled.is_none() {
        tracing::Span::current().record("peer_id", tracing::field::display(peer));
        debug!(node = %shell.id, %peer, remote = %fmt_remote(remote), "session accepted");
    }
    // A dialled session is held only while a stream is read.
    let accepted = matches!(held, Held::Accepted(_)).then_some(session);
    tokio::select! {
        () = serve_protocol(&shell, &held, messages, on, true) => {}
        () = serve_protocol(&shell, &held, reach, on, false) => {}
        () = serve_app_streams(&shell, app, on) => {}
        () = shell.cancel.cancelled() => {}
    }
    // Dropping the last handle ends the session at once (and its offer for sharing lapses:
    // the shell holds it weakly).
    drop(accepted);
}

/// Serves the streams of one protocol, one after the other. On an accepted session the
/// messages stream must come within `hello_timeout`.
async fn serve_protocol(
    shell: &Arc<Shell>,
    held: &Held,
    mut incoming: InboundStreams,
    on: Accepted,
    messages: bool,
) {
    let first = if messages && on.dialled.is_none() {
        match tokio::time::timeout(shell.settings.hello_timeout, incoming.accept()).await {
            Ok(s) => s,
            Err(_) => {
                Counters::bump(&shell.counters.bad_hellos);
                warn!(node = %shell.id, peer = %on.peer, "no node stream in time: session closed");
                return;
            }
        }
    } else {
        incoming.accept().await
    };
    let Some(mut stream) = first else {
        return;
    };
    loop {
        let Some(session) = held.get() else {
            return;
        };
        if !serve_stream(shell, &session, stream, on, messages).await {
            return;
        }
        drop(session);
        stream = match incoming.accept().await {
            Some(s) => s,
            None => return,
        };
    }
}

/// Reads one stream: the hello, checked, then frames. `false` when the session must close.
/// A hello that is malformed, names a node pinned to another identity, a non-member, or on a
/// dialled session another node than the one dialled, is refused ([`Session::refuse`]), so
/// that the other end logs the same reason. The messages stream of an accepted session is
/// offered for this node's own messages to the peer ([`Shell::share_session`]).
async fn serve_stream(
    shell: &Arc<Shell>,
    session: &Session,
    stream: Stream,
    on: Accepted,
    messages: bool,
) -> bool {
    let Accepted {
        peer,
        remote,
        cipher,
        dialled,
    } = on;
    // The kind byte comes on top of an application payload of up to `max_frame`.
    let max = shell.settings.max_frame.saturating_add(FRAME_KIND_LEN);
    let mut frames = stream.into_framed(max);
    let first = tokio::time::timeout(shell.settings.hello_timeout, frames.next()).await;
    let hello = match first {
        Ok(Some(Ok(frame))) => match FramedHello::parse(&frame) {
            Ok(h) => h,
            Err(err) => {
                Counters::bump(&shell.counters.bad_hellos);
                warn!(node = %shell.id, %peer, %err, "refused peer: bad hello");
                let detail = format!("node hello: {err}");
                session
                    .refuse(&Refusal::new(RefusalReason::Malformed, &detail))
                    .await;
                return false;
            }
        },
        Ok(Some(Err(err))) if is_oversized(&err) => {
            Counters::bump(&shell.counters.oversized_frames);
            warn!(node = %shell.id, %peer, "oversized frame before hello: session closed");
            return false;
        }
        _ => {
            Counters::bump(&shell.counters.bad_hellos);
            debug!(node = %shell.id, %peer, "no hello: session closed");
            return false;
        }
    };
    let from = NodeId(hello.from);
    if dialled.is_some_and(|d| d != from) {
        Counters::bump(&shell.counters.bad_hellos);
        warn!(node = %shell.id, peer = %from, "refused peer: its hello names another node than the one dialled");
        let detail = format!("this session was dialled to another node than {from}");
        session
            .refuse(&Refusal::new(RefusalReason::PeerMismatch, &detail))
            .await;
        return false;
    }
    if let Err(err) = check_pin(&shell.settings, from, peer) {
        Counters::bump(&shell.counters.peer_mismatches);
        warn!(node = %shell.id, %err, "refused peer: not the pinned identity");
        let detail = format!("{from} is pinned to another identity");
        session
            .refuse(&Refusal::new(RefusalReason::PeerMismatch, &detail))
            .await;
        return false;
    }
    // Reachability knows the peer by the address it listens on, else by the connection's.
    let via = hello.listen.or(remote);
    let (conn, stop) = match shell.accepted_soon(from, via).await {
        Ok(c) => c,
        Err(EngineRefusal::Stopped) => return false,
        Err(refusal) => {
            if matches!(refusal, EngineRefusal::NotMember(_)) {
                Counters::bump(&shell.counters.unknown_senders);
            }
            warn!(node = %shell.id, peer = %from, %refusal, "refused peer");
            let reason = match refusal {
                EngineRefusal::TooManyConnections => RefusalReason::Busy,
                _ => RefusalReason::NotMember,
            };
            session
                .refuse(&Refusal::new(reason, &from.to_string()))
                .await;
            return false;
        }
    };
    info!(node = %shell.id, peer = %from, %peer, remote = %fmt_remote(remote), "accepted session");
    if messages && dialled.is_none() {
        if let Some(via) = via {
            shell.share_session(from, session, via);
        }
    }
    let mut bodies = Vec::new();
    // Made once, not at every frame: each new wait registers itself with the token again.
    let stopped = stop.cancelled_owned();
    tokio::pin!(stopped);
    let keep = loop {
        let item = tokio::select! {
            item = frames.next() => item,
            () = &mut stopped => break false,
        };
        let frame = match item {
            Some(Ok(frame)) => frame,
            Some(Err(err)) if is_oversized(&err) => {
                warn!(node = %shell.id, peer = %from, max = shell.settings.max_frame,
                      "oversized frame: session closed");
                shell.oversized(conn);
                return false;
            }
            Some(Err(err)) => {
                info!(node = %shell.id, peer = %from, %err, "inbound stream failed");
                break false;
            }
            None => {
                debug!(node = %shell.id, peer = %from, "inbound stream closed");
                break true;
            }
        };
        bodies.push(frame.freeze());
        // Whole frames already buffered, taken straight from the buffer.
        while bodies.len() < READ_BATCH {
            let Some(frame) = take_whole_frame(frames.read_buffer_mut(), max) else {
                break;
            };
            bodies.push(frame.freeze());
        }
        if shell.receive(conn, from, cipher, &mut bodies) && !shell.drain_overflow().await {
            break false;
        }
    };
    shell.closed(conn);
    keep
}

/// Accepts the application's streams (`Settings::protocols`, their receivers `incoming`) on
/// a session, each checked and answered on a task of its own, until the session ends. Never
/// returns before.
async fn serve_app_streams(shell: &Arc<Shell>, incoming: Vec<InboundStreams>, on: Accepted) {
    let accepting = incoming.into_iter().map(|mut inc| async move {
        // Bounded by the session's stream cap: yamux refuses streams beyond it.
        while let Some(stream) = inc.accept().await {
            let task = accept_app_stream(shell.clone(), stream, on.peer);
            shell.tracker.spawn(task.in_current_span());
        }
    });
    futures_util::future::join_all(accepting).await;
    std::future::pending::<()>().await;
}

/// Checks an application stream's hello (pins, membership), answers its opener, and hands
/// it to the protocol's acceptor.
async fn accept_app_stream(shell: Arc<Shell>, stream: Stream, peer: PeerId) {
    let protocol = stream.protocol();
    let mut stream = stream;
    let hello = tokio::time::timeout(shell.settings.hello_timeout, read_hello(&mut stream)).await;
    let Ok(Ok(hello)) = hello else {
        Counters::bump(&shell.counters.bad_hellos);
        debug!(node = %shell.id, %peer, %protocol, "application stream without a hello: reset");
        return;
    };
    let from = NodeId(hello.from);
    if let Err(err) = check_pin(&shell.settings, from, peer) {
        Counters::bump(&shell.counters.peer_mismatches);
        warn!(node = %shell.id, %err, "stream refused: not the pinned identity");
        return;
    }
    if !shell.lock().engine.membership().contains(from) {
        Counters::bump(&shell.counters.unknown_senders);
        warn!(node = %shell.id, peer = %from, "stream from a non-member: reset");
        return;
    }
    let (status, permit) = match shell.streams.reserve_stream(protocol) {
        Ok(permit) => (StreamStatus::Accepted, Some(permit)),
        Err(status) => (status, None),
    };
    if stream.write_all(&status.to_bytes()).await.is_err() {
        return;
    }
    if let Some(permit) = permit {
        shell.streams.note_accepted();
        debug!(node = %shell.id, peer = %from, %protocol, "stream accepted");
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

/// Opens a stream of `protocol` on `session`: says hello, and waits for the acceptor's
/// answer.
pub(crate) async fn open_app_stream(
    shell: &Arc<Shell>,
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
    let mut buf = BytesMut::new();
    write_hello(&mut stream, &mut buf, &hello(shell)).await?;
    read_stream_status(&mut stream, protocol, shell.settings.hello_timeout).await?;
    Ok(NodeStream::session(stream))
}

/// Takes the first frame of `buf` if it lies there whole (`wire::node::take_frame`); `None`
/// otherwise, leaving `buf` untouched, so the codec, which has just returned a frame and so
/// waits for a length, reads on from the same place (and reports a frame over `max`).
fn take_whole_frame(buf: &mut BytesMut, max: usize) -> Option<BytesMut> {
    wire_node::take_frame(buf, max).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(payload: &[u8]) -> Frame {
        Frame::App(Bytes::copy_from_slice(payload))
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
