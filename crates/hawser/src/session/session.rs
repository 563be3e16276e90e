//! The public session API: [`SessionConfig`], [`connect`], [`accept`], [`dial`],
//! [`Listener`], [`Session`] and its per-protocol [`Stream`]s.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::error::{
    CloseReason, ConfigError, DialError, HandshakeError, IncomingError, ListenError, OpenError,
};
use super::identity::{Identity, PeerId, PublicKey};
use super::mux::{self, range, Command, DriverEnd, MuxConfig};
use super::noise::{NetworkId, Role, MAX_NOISE_MESSAGE};
use super::registry::{negotiate, Negotiated, ProtocolId, ProtocolRegistry};
use super::secure::{self, Status};
use super::transport::{self, Link, RawListener, TransportAddr, TransportConfig};

/// How a session protects its traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// Noise XX: encrypted, and the peer's identity is proven. The default.
    #[default]
    Noise,
    /// **No encryption and no authentication**: the peer's identity is only claimed, and
    /// anyone on the path can read, alter and inject traffic. For benchmarks and for
    /// interoperating with the LSP reference; never for node sessions on a real network.
    DangerPlaintext,
}

/// Everything a session is configured with; every queue and wait is bounded here.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This node's identity.
    pub identity: Arc<Identity>,
    /// The cluster's name; only nodes with the same one form sessions.
    pub network_id: NetworkId,
    /// Encryption. Default [`Security::Noise`].
    pub security: Security,
    /// The protocols this node offers.
    pub protocols: ProtocolRegistry,
    /// Longest a handshake may take, from the transport connection (for a listener, from
    /// the accept) to the established session. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest handshake message accepted, in bytes (256..=65,535). Default 8 KiB.
    pub max_handshake_message: usize,
    /// Listener only: most handshakes in progress at once (including established sessions
    /// not yet taken by [`Listener::accept`]); connections beyond it are closed at once and
    /// counted. Default 64.
    pub max_pending_handshakes: usize,
    /// Bytes buffered between the multiplexer and the encrypting pumps, per direction
    /// (4 KiB..=4 MiB). Smaller favours latency, larger throughput. Default 64 KiB.
    pub pipe_buffer: usize,
    /// Inbound streams of one protocol waiting for the application (1..=1,024); a stream
    /// arriving while its queue is full is reset. Default 16.
    pub max_queued_streams: usize,
    /// Longest an inbound stream may take to name its protocol. Default 5 s.
    pub stream_header_timeout: Duration,
    /// Multiplexer bounds.
    pub mux: MuxConfig,
}

impl SessionConfig {
    /// A configuration with every setting at its default and no protocols.
    pub fn new(identity: Arc<Identity>, network_id: NetworkId) -> SessionConfig {
        SessionConfig {
            identity,
            network_id,
            security: Security::Noise,
            protocols: ProtocolRegistry::new(),
            handshake_timeout: Duration::from_secs(10),
            max_handshake_message: 8 * 1024,
            max_pending_handshakes: 64,
            pipe_buffer: 64 * 1024,
            max_queued_streams: 16,
            stream_header_timeout: Duration::from_secs(5),
            mux: MuxConfig::default(),
        }
    }

    /// Checks every bound.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "max_handshake_message",
            self.max_handshake_message,
            256,
            MAX_NOISE_MESSAGE,
        )?;
        range(
            "max_pending_handshakes",
            self.max_pending_handshakes,
            1,
            65_536,
        )?;
        range("pipe_buffer", self.pipe_buffer, 4096, 4 << 20)?;
        range("max_queued_streams", self.max_queued_streams, 1, 1024)?;
        let ms = |d: Duration| usize::try_from(d.as_millis()).unwrap_or(usize::MAX);
        range(
            "handshake_timeout (ms)",
            ms(self.handshake_timeout),
            1,
            3_600_000,
        )?;
        range(
            "stream_header_timeout (ms)",
            ms(self.stream_header_timeout),
            1,
            3_600_000,
        )?;
        self.mux.validate()
    }
}

/// Runs the handshake as the dialing end over an already connected transport. `expected`
/// pins the peer's identity.
///
/// # Errors
/// [`HandshakeError`]; [`HandshakeError::Timeout`] after `handshake_timeout`.
///
/// # Cancel safety
/// Dropping the future drops the transport.
pub async fn connect(
    link: Link,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Session, HandshakeError> {
    config.validate()?;
    handshake(link, Role::Initiator, config, expected).await
}

/// Runs the handshake as the accepting end over an already connected transport.
///
/// # Errors
/// As [`connect`].
///
/// # Cancel safety
/// Dropping the future drops the transport.
pub async fn accept(link: Link, config: &SessionConfig) -> Result<Session, HandshakeError> {
    config.validate()?;
    handshake(link, Role::Responder, config, None).await
}

/// Connects to `addr` and runs the handshake, both within `handshake_timeout`.
///
/// # Errors
/// [`DialError::Transport`] if the transport cannot connect; [`DialError::Handshake`].
///
/// # Cancel safety
/// Dropping the future abandons the attempt.
pub async fn dial(
    addr: &TransportAddr,
    transport: &TransportConfig,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Session, DialError> {
    config.validate().map_err(HandshakeError::from)?;
    let link = tokio::time::timeout(config.handshake_timeout, transport::dial(addr, transport))
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(DialError::Transport)?;
    Ok(handshake(link, Role::Initiator, config, expected).await?)
}

async fn handshake(
    link: Link,
    role: Role,
    config: &SessionConfig,
    expected: Option<PeerId>,
) -> Result<Session, HandshakeError> {
    let channel = tokio::time::timeout(
        config.handshake_timeout,
        secure::establish(link, role, config, expected),
    )
    .await
    .map_err(|_| HandshakeError::Timeout)??;
    Ok(Session::start(channel, role, config))
}

/// An established session with a peer: authenticated (unless plaintext), encrypted, and
/// carrying many streams, each bound to one negotiated protocol.
///
/// Cloning gives another handle to the same session. When the last handle is dropped the
/// session ends at once; [`close`](Self::close) ends it gracefully.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    remote_key: PublicKey,
    peer_id: PeerId,
    encrypted: bool,
    negotiated: Negotiated,
    local: ProtocolRegistry,
    commands: mpsc::Sender<Command>,
    incoming: Mutex<HashMap<ProtocolId, mpsc::Receiver<Stream>>>,
    status: Arc<Status>,
    ended: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Session {
    fn start(channel: secure::Channel, role: Role, config: &SessionConfig) -> Session {
        let negotiated = negotiate(&config.protocols, &channel.remote.protocols);
        let (cmd_tx, cmd_rx) = mpsc::channel(config.mux.max_streams.max(1));
        let (raw_tx, raw_rx) = mpsc::channel(config.mux.max_streams.max(1));
        let mut senders = HashMap::new();
        let mut receivers = HashMap::new();
        for p in config.protocols.iter() {
            let (tx, rx) = mpsc::channel(config.max_queued_streams);
            senders.insert(p.id(), tx);
            receivers.insert(p.id(), rx);
        }
        let mode = match role {
            Role::Initiator => yamux::Mode::Client,
            Role::Responder => yamux::Mode::Server,
        };
        let ended = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        let mut tasks = channel.pumps;
        let driver = mux::drive(channel.io, config.mux.to_yamux(), mode, cmd_rx, raw_tx);
        let (status, end, why) = (channel.status.clone(), ended.clone(), reason.clone());
        let peer = channel.remote.peer_id;
        tasks.push(tokio::spawn(async move {
            let result = driver.await;
            let r = status.reason().unwrap_or(match result {
                DriverEnd::Local => CloseReason::Local,
                DriverEnd::Remote => CloseReason::Remote,
                DriverEnd::Failed(e) => CloseReason::Mux(e.to_string()),
            });
            info!(%peer, reason = %r, "session ended");
            *why.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            end.cancel();
        }));
        let routes = Routes {
            senders,
            negotiated: negotiated.clone(),
            timeout: config.stream_header_timeout,
        };
        tasks.push(tokio::spawn(route_inbound(raw_rx, routes)));
        info!(%peer, encrypted = channel.encrypted, "session established");
        Session {
            inner: Arc::new(Inner {
                remote_key: channel.remote.public_key,
                peer_id: peer,
                encrypted: channel.encrypted,
                negotiated,
                local: config.protocols.clone(),
                commands: cmd_tx,
                incoming: Mutex::new(receivers),
                status: channel.status,
                ended,
                reason,
                tasks,
            }),
        }
    }

    /// The peer's `PeerId` (proven, unless the session is plaintext).
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// The peer's identity key.
    pub fn remote_key(&self) -> PublicKey {
        self.inner.remote_key
    }

    /// Whether traffic is encrypted and the peer authenticated (false for
    /// [`Security::DangerPlaintext`]).
    pub fn is_encrypted(&self) -> bool {
        self.inner.encrypted
    }

    /// The protocols both ends speak, with the agreed versions.
    pub fn negotiated(&self) -> &Negotiated {
        &self.inner.negotiated
    }

    /// Opens a stream for `protocol`.
    ///
    /// # Errors
    /// [`OpenError::UnknownProtocol`] if this node did not register it;
    /// [`OpenError::UnsupportedByPeer`] if the peer lacks it or shares no version (nothing is
    /// sent then); [`OpenError::SessionClosed`]; [`OpenError::Mux`].
    ///
    /// # Cancel safety
    /// Dropping the future resets the stream if it was already opened.
    pub async fn open(&self, protocol: ProtocolId) -> Result<Stream, OpenError> {
        if self.inner.local.protocol(protocol).is_none() {
            return Err(OpenError::UnknownProtocol(protocol));
        }
        let version = self
            .inner
            .negotiated
            .version(protocol)
            .ok_or(OpenError::UnsupportedByPeer(protocol))?;
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Open(tx))
            .await
            .map_err(|_| OpenError::SessionClosed)?;
        let raw = rx
            .await
            .map_err(|_| OpenError::SessionClosed)?
            .map_err(|e| match e {
                yamux::ConnectionError::Closed => OpenError::SessionClosed,
                e => OpenError::Mux(e.to_string()),
            })?;
        let mut stream = Stream {
            io: raw.compat(),
            protocol,
            version,
        };
        let mut header = [0u8; STREAM_HEADER_LEN];
        header[..4].copy_from_slice(&protocol.0.to_be_bytes());
        header[4..].copy_from_slice(&version.to_be_bytes());
        stream.write_all(&header).await?;
        Ok(stream)
    }

    /// Takes the receiver of `protocol`'s inbound streams (once per protocol). Until it is
    /// taken, up to `max_queued_streams` streams wait; later ones are reset.
    ///
    /// # Errors
    /// [`IncomingError::UnknownProtocol`], [`IncomingError::AlreadyTaken`].
    pub fn incoming(&self, protocol: ProtocolId) -> Result<Incoming, IncomingError> {
        if self.inner.local.protocol(protocol).is_none() {
            return Err(IncomingError::UnknownProtocol(protocol));
        }
        self.inner
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&protocol)
            .map(|rx| Incoming { rx })
            .ok_or(IncomingError::AlreadyTaken(protocol))
    }

    /// Closes gracefully (yamux GoAway, then the transport) and waits until it has ended.
    ///
    /// # Cancel safety
    /// Cancel safe: the close goes on in the background.
    pub async fn close(&self) {
        let _ = self.inner.commands.send(Command::Close).await;
        self.inner.ended.cancelled().await;
    }

    /// Waits until the session has ended and says why.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> CloseReason {
        self.inner.ended.cancelled().await;
        self.close_reason().unwrap_or(CloseReason::Local)
    }

    /// Why the session ended, or `None` while it is open.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.inner
            .reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.ended.is_cancelled()
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            duplicates_dropped: self.inner.status.duplicates(),
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer_id", &self.inner.peer_id)
            .field("encrypted", &self.inner.encrypted)
            .finish_non_exhaustive()
    }
}

/// Counters of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Duplicate transport messages dropped before decryption (message transports only).
    pub duplicates_dropped: u64,
}

/// Bytes of the header an opener writes first on every stream: `u32 protocol id | u16
/// version`, big-endian.
pub const STREAM_HEADER_LEN: usize = 6;

struct Routes {
    senders: HashMap<ProtocolId, mpsc::Sender<Stream>>,
    negotiated: Negotiated,
    timeout: Duration,
}

/// Reads each inbound stream's header (concurrently, each under the header timeout) and
/// queues it for its protocol. Unknown protocols or versions are reset.
async fn route_inbound(mut raw: mpsc::Receiver<yamux::Stream>, routes: Routes) {
    let routes = Arc::new(routes);
    // At most `mux.max_streams` entries: yamux refuses streams beyond its cap.
    let mut pending = JoinSet::new();
    loop {
        tokio::select! {
            s = raw.recv() => match s {
                Some(s) => { pending.spawn(route_one(s, routes.clone())); }
                None => return,
            },
            Some(_) = pending.join_next(), if !pending.is_empty() => {}
        }
    }
}

async fn route_one(raw: yamux::Stream, routes: Arc<Routes>) {
    let mut io = raw.compat();
    let mut header = [0u8; STREAM_HEADER_LEN];
    match tokio::time::timeout(routes.timeout, io.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => {
            debug!("inbound stream sent no header in time; reset");
            return;
        }
    }
    let protocol = ProtocolId(u32::from_be_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    let version = u16::from_be_bytes([header[4], header[5]]);
    if routes.negotiated.version(protocol) != Some(version) {
        warn!(%protocol, version, "inbound stream for a protocol or version not agreed; reset");
        return;
    }
    let Some(tx) = routes.senders.get(&protocol) else {
        return;
    };
    let stream = Stream {
        io,
        protocol,
        version,
    };
    if tx.try_send(stream).is_err() {
        warn!(%protocol, "inbound stream queue full or not taken; reset");
    }
}

/// The inbound streams of one protocol on one session.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<Stream>,
}

impl Incoming {
    /// The next inbound stream, or `None` once the session has ended.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

/// One bidirectional stream of a session, bound to one protocol and version. Reads and
/// writes as a tokio byte stream; `shutdown` half-closes; dropping it resets it.
pub struct Stream {
    io: Compat<yamux::Stream>,
    protocol: ProtocolId,
    version: u16,
}

impl Stream {
    /// The stream's protocol.
    pub fn protocol(&self) -> ProtocolId {
        self.protocol
    }

    /// The protocol version both ends agreed on.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The stream as a sequence of messages, each behind a 4-byte length, at most
    /// `max_message` bytes (for protocols that exchange messages rather than bytes).
    pub fn into_framed(self, max_message: usize) -> Framed<Stream, LengthDelimitedCodec> {
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(max_message)
            .new_codec();
        Framed::new(self, codec)
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("protocol", &self.protocol)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepts transport connections and runs their handshakes concurrently, each under
/// `handshake_timeout`, at most `max_pending_handshakes` at once. Failed handshakes are
/// traced and counted, never returned.
pub struct Listener {
    sessions: mpsc::Receiver<Session>,
    local: TransportAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Counters {
    established: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    refused: AtomicU64,
    max_pending: AtomicU64,
}

/// Counters of a [`Listener`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenerStats {
    /// Handshakes that succeeded.
    pub established: u64,
    /// Handshakes that failed (not counting timeouts).
    pub failed: u64,
    /// Handshakes dropped at `handshake_timeout`.
    pub timed_out: u64,
    /// Connections closed at once because `max_pending_handshakes` were in progress.
    pub refused: u64,
    /// The most handshakes ever in progress at once.
    pub max_pending: u64,
}

impl Listener {
    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    /// [`ListenError::Config`] for invalid settings; [`ListenError::Io`] if binding fails.
    pub async fn bind(
        addr: &TransportAddr,
        transport: &TransportConfig,
        config: SessionConfig,
    ) -> Result<Listener, ListenError> {
        config.validate()?;
        let raw = RawListener::bind(addr, transport).await?;
        Listener::from_raw(raw, config)
    }

    /// Starts accepting on a bound transport listener.
    ///
    /// # Errors
    /// [`ListenError::Config`] for invalid settings.
    pub fn from_raw(raw: RawListener, config: SessionConfig) -> Result<Listener, ListenError> {
        config.validate()?;
        let local = raw.local_addr().clone();
        let (tx, rx) = mpsc::channel(1);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(raw, Arc::new(config), tx, counters.clone()));
        Ok(Listener {
            sessions: rx,
            local,
            counters,
            task,
        })
    }

    /// The next established session, or `None` if the listener stopped.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<Session> {
        self.sessions.recv().await
    }

    /// The bound address.
    pub fn local_addr(&self) -> &TransportAddr {
        &self.local
    }

    /// Counters.
    pub fn stats(&self) -> ListenerStats {
        let c = &self.counters;
        ListenerStats {
            established: c.established.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            max_pending: c.max_pending.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    mut raw: RawListener,
    config: Arc<SessionConfig>,
    sessions: mpsc::Sender<Session>,
    counters: Arc<Counters>,
) {
    let limit = config.max_pending_handshakes;
    let permits = Arc::new(Semaphore::new(limit));
    // Each task holds a permit: at most `max_pending_handshakes` of them.
    let mut tasks = JoinSet::new();
    loop {
        let pending = tokio::select! {
            p = raw.accept() => p,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let pending = match pending {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            debug!("pending handshake cap reached; connection refused");
            continue;
        };
        let in_progress = (limit - permits.available_permits()) as u64;
        counters
            .max_pending
            .fetch_max(in_progress, Ordering::Relaxed);
        let (config, sessions, counters) = (config.clone(), sessions.clone(), counters.clone());
        tasks.spawn(respond(pending, config, sessions, counters, permit));
    }
}

async fn respond(
    pending: transport::PendingLink,
    config: Arc<SessionConfig>,
    sessions: mpsc::Sender<Session>,
    counters: Arc<Counters>,
    _permit: OwnedSemaphorePermit,
) {
    let attempt = async {
        let link = pending.await?;
        secure::establish(link, Role::Responder, &config, None).await
    };
    match tokio::time::timeout(config.handshake_timeout, attempt).await {
        Ok(Ok(channel)) => {
            counters.established.fetch_add(1, Ordering::Relaxed);
            let session = Session::start(channel, Role::Responder, &config);
            let _ = sessions.send(session).await;
        }
        Ok(Err(e)) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            info!(error = %e, "inbound handshake failed");
        }
        Err(_) => {
            counters.timed_out.fetch_add(1, Ordering::Relaxed);
            info!("inbound handshake timed out");
        }
    }
}
