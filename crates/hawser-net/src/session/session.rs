//! The session itself: [`connect`], [`accept`], [`dial`] and [`Session`]. Its configuration is in
//! `config`, the listener in `listener`, the per-protocol streams in `stream`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hawser_proto::wire::refusal::Refusal;
use hawser_proto::wire::stream::StreamHeader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;
use tracing::{info, Instrument};

use super::config::SessionConfig;
use super::error::{AcceptStreamsError, CloseReason, DialError, HandshakeError, OpenError};
use super::identity::{PeerId, PublicKey};
use super::mux::{self, Command, Companion, DriverEnd};
use super::noise::{NoiseCipher, Role};
use super::registry::{negotiate, Negotiated, ProtocolId, ProtocolRegistry};
use super::secure;
use super::status::Status;
use super::stream::{route_inbound, InboundStreams, Routes, Stream, STREAM_HEADER_LEN};
use super::transport::{self, RawConnection, TransportAddr, TransportConfig};

/// Runs the handshake as the dialing end over an already connected transport. `expected`
/// pins the peer's identity.
///
/// # Errors
/// [`HandshakeError`]; [`HandshakeError::Timeout`] after `handshake_timeout`.
///
/// # Cancel safety
/// Dropping the future drops the transport.
pub async fn connect(
    link: RawConnection,
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
pub async fn accept(
    link: RawConnection,
    config: &SessionConfig,
) -> Result<Session, HandshakeError> {
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
    link: RawConnection,
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
    cipher: Option<NoiseCipher>,
    negotiated: Negotiated,
    local: ProtocolRegistry,
    commands: mpsc::Sender<Command>,
    incoming: Mutex<HashMap<ProtocolId, mpsc::Receiver<Stream>>>,
    status: Arc<Status>,
    ended: CancellationToken,
    reason: Arc<Mutex<Option<CloseReason>>>,
    /// Longest [`Session::refuse`] waits for the peer to take its refusal.
    refusal_wait: Duration,
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
    /// Runs a session over an established secure channel.
    pub(super) fn start(channel: secure::Channel, role: Role, config: &SessionConfig) -> Session {
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
        let mut tasks = Vec::new();
        let driver = mux::drive(channel.io, config.mux.to_yamux(), mode, cmd_rx, raw_tx);
        let (status, end, why) = (channel.status.clone(), ended.clone(), reason.clone());
        let peer = channel.remote.peer_id;
        // A child of the caller's span (the node's peer or connection), so that everything
        // the session logs can be filtered by peer.
        let span = tracing::info_span!("session", peer_id = %peer);
        tasks.push(tokio::spawn(
            async move {
                let result = driver.await;
                let r = status.reason().unwrap_or(match result {
                    DriverEnd::Local => CloseReason::Local,
                    DriverEnd::Remote => CloseReason::Remote,
                    DriverEnd::Failed(e) => CloseReason::Mux(e.to_string()),
                });
                info!(%peer, reason = %r, "session ended");
                *why.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                end.cancel();
            }
            .instrument(span.clone()),
        ));
        let routes = Routes {
            senders,
            negotiated: negotiated.clone(),
            timeout: config.stream_header_timeout,
            status: channel.status.clone(),
        };
        tasks.push(tokio::spawn(route_inbound(raw_rx, routes).instrument(span)));
        let cipher = channel.cipher.map_or("plaintext", NoiseCipher::name);
        info!(%peer, cipher, "session established");
        Session {
            inner: Arc::new(Inner {
                remote_key: channel.remote.public_key,
                peer_id: peer,
                cipher: channel.cipher,
                negotiated,
                local: config.protocols.clone(),
                commands: cmd_tx,
                incoming: Mutex::new(receivers),
                status: channel.status,
                ended,
                reason,
                refusal_wait: config.stream_header_timeout,
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
    /// [`Security::DangerPlaintext`](super::Security::DangerPlaintext)).
    pub fn is_encrypted(&self) -> bool {
        self.inner.cipher.is_some()
    }

    /// The Noise cipher protecting the session; `None` in plaintext mode.
    pub fn cipher(&self) -> Option<NoiseCipher> {
        self.inner.cipher
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
        let mut stream = Stream::new(raw, protocol, version, self.inner.status.clone());
        let header = StreamHeader {
            protocol: protocol.0,
            version,
        };
        stream.write_all(&header.to_bytes()).await?;
        Ok(stream)
    }

    /// Takes the receiver of `protocol`'s inbound streams (once per protocol). Until it is
    /// taken, up to `max_queued_streams` streams wait; later ones are reset.
    ///
    /// # Errors
    /// [`AcceptStreamsError::UnknownProtocol`], [`AcceptStreamsError::AlreadyTaken`].
    pub fn accept_streams(
        &self,
        protocol: ProtocolId,
    ) -> Result<InboundStreams, AcceptStreamsError> {
        if self.inner.local.protocol(protocol).is_none() {
            return Err(AcceptStreamsError::UnknownProtocol(protocol));
        }
        self.inner
            .incoming
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&protocol)
            .map(InboundStreams::new)
            .ok_or(AcceptStreamsError::AlreadyTaken(protocol))
    }

    /// Runs `future` on the session's own task, beside the multiplexer, so that what it writes
    /// on the session's streams goes out in the same turn of that task rather than through a
    /// hand-off between tasks (a node's writer runs this way). If the session ends before
    /// `future` does, `future` goes on as a task of its own.
    ///
    /// # Errors
    /// Gives `future` back when the session has ended or its command queue is full.
    pub(crate) fn run_on_driver(&self, future: Companion) -> Result<(), Companion> {
        match self.inner.commands.try_reserve() {
            Ok(permit) => {
                permit.send(Command::Run(future));
                Ok(())
            }
            Err(_) => Err(future),
        }
    }

    /// Closes gracefully (yamux GoAway, then the transport) and waits until it has ended.
    ///
    /// # Cancel safety
    /// Cancel safe: the close goes on in the background.
    pub async fn close(&self) {
        let _ = self.inner.commands.send(Command::Close).await;
        self.inner.ended.cancelled().await;
    }

    /// Tells the peer why this end will not go on with the session, then closes it: the
    /// peer's session ends with [`CloseReason::Refused`] carrying `refusal` (a peer that does
    /// not know refusals resets the stream and sees an ordinary close). For what only shows
    /// after the handshake, such as a node id that is not a member. The refusal travels on a
    /// stream of its own ([`REFUSAL_STREAM`](super::REFUSAL_STREAM)) inside the session,
    /// so it is encrypted and authenticated; this end waits at most `stream_header_timeout`
    /// for the peer to take it.
    ///
    /// # Cancel safety
    /// Dropping the future may leave the refusal unsent; the session stays open then.
    pub async fn refuse(&self, refusal: &Refusal) {
        let send = async {
            let (tx, rx) = oneshot::channel();
            self.inner.commands.send(Command::Open(tx)).await.ok()?;
            let mut stream = rx.await.ok()?.ok()?.compat();
            let mut bytes = Vec::with_capacity(STREAM_HEADER_LEN + refusal.buffer_len());
            StreamHeader::REFUSAL.emit(&mut bytes);
            refusal.emit(&mut bytes);
            stream.write_all(&bytes).await.ok()?;
            stream.shutdown().await.ok()?;
            // The peer drops the stream once it has recorded the refusal.
            let _ = stream.read(&mut [0u8; 1]).await;
            Some(())
        };
        let _ = tokio::time::timeout(self.inner.refusal_wait, send).await;
        self.close().await;
    }

    /// Waits until the session has ended and says why.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn closed(&self) -> CloseReason {
        self.inner.ended.cancelled().await;
        self.close_reason().unwrap_or(CloseReason::Local)
    }

    /// A handle that does not keep the session open.
    pub(crate) fn downgrade(&self) -> WeakSession {
        WeakSession {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// A token cancelled when the session has ended (what [`closed`](Self::closed) waits
    /// for).
    pub(crate) fn ended(&self) -> CancellationToken {
        self.inner.ended.clone()
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
            write_waits: self.inner.status.write_waits(),
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer_id", &self.inner.peer_id)
            .field("cipher", &self.inner.cipher)
            .finish_non_exhaustive()
    }
}

/// A handle to a session that does not keep it open ([`Session::downgrade`]).
#[derive(Clone)]
pub(crate) struct WeakSession {
    inner: Weak<Inner>,
}

impl WeakSession {
    /// A full handle, while some other handle keeps the session.
    pub fn upgrade(&self) -> Option<Session> {
        self.inner.upgrade().map(|inner| Session { inner })
    }
}

/// Counters of a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
#[non_exhaustive]
pub struct SessionStats {
    /// Duplicate transport messages dropped before decryption (message transports only).
    pub duplicates_dropped: u64,
    /// Stream writes that had to wait for the multiplexer: the stream's send window was used
    /// up (the peer's application had not read enough) or yamux's frame queue was full. Many
    /// of them during a bulk transfer mean the session, not the application, set the pace:
    /// see "Multiplexing" in `docs/security.md`.
    pub write_waits: u64,
}
