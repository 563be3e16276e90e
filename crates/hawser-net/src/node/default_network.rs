//! The default network: reliable delivery over sessions (`crate::session`), unreliable over
//! UDP.
//!
//! Every node listens on one address for both TCP and UDP (same port), and optionally on LSP
//! (`lsp_listen`) and extra transport addresses (`Settings::listen_also`). Every reliable
//! connection, whatever its transport, is a session: Noise-authenticated and encrypted (unless
//! `Security::DangerPlaintext`), multiplexed, carrying the node protocols of `super::secure`
//! (messages and reachability on streams of their own, each starting with a framed hello).
//! Sessions are one-way: each node writes on the sessions it opened and reads on those it
//! accepted. With Noise, datagrams are sealed with the key each session's dialer sends in it
//! (`super::datagram`); in plaintext they are not authenticated (`docs/security.md`).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};
use hawser_proto::node::{FrameBatch, Member, Membership, NodeId};
use hawser_proto::wire::channel::{length_prefix, LENGTH_PREFIX_LEN};
use hawser_proto::wire::node::{Datagram, SealedDatagram, DATAGRAM_HEADER_LEN};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

use super::config::{ReliableTransport, Settings};
use super::connector::{BatchError, Connector};
use super::core::Core;
use super::counters::Counters;
use super::datagram::OpenError;
use super::error::{SendError, StartError};
use super::reach::{memory_addr, Frame};
use super::rpc::{NodeStream, StreamError};
use super::secure::{self, SecureConn, SecureCtx};
use crate::session::transport::{tune_tcp, RawListener};
use crate::session::{PeerId, Refusal, RefusalReason, TransportAddr};

/// The largest UDP datagram read.
const RECV_BUFFER: usize = 65_536;
/// Attempts to find a port free for both TCP and UDP when listening on port 0.
const BIND_ATTEMPTS: usize = 16;

/// The default network's [`Connector`].
pub(crate) struct SessionConnector {
    id: NodeId,
    /// Taken out at stop so the port is released at once.
    udp: RwLock<Option<Arc<UdpSocket>>>,
    lsp_available: bool,
    ctx: Arc<SecureCtx>,
    listen_addrs: Vec<TransportAddr>,
    /// `Settings::transports`, for `reach_addrs`.
    transports: std::collections::BTreeMap<NodeId, TransportAddr>,
}

/// The address reachability knows a node by when reached through `t`.
fn transport_via(t: &TransportAddr, id: NodeId) -> SocketAddr {
    match t {
        TransportAddr::Tcp(a) | TransportAddr::Lsp(a) | TransportAddr::Ws(a) => *a,
        // No socket address: the in-memory network's pseudo address of the node.
        TransportAddr::Mem(_) | TransportAddr::Other { .. } => memory_addr(id),
    }
}

impl SessionConnector {
    /// Where reliable messages to `m` go, in order, each with the address reachability knows
    /// it by.
    fn targets(&self, s: &Settings, m: &Member) -> Vec<(TransportAddr, SocketAddr)> {
        if let Some(t) = s.transports.get(&m.id) {
            return vec![(t.clone(), transport_via(t, m.id))];
        }
        if s.reliable_for(m.id) == ReliableTransport::Lsp {
            let Some(lsp) = m.lsp_addr else {
                return Vec::new();
            };
            let via = m.addrs.first().copied().unwrap_or(lsp);
            return vec![(TransportAddr::Lsp(lsp), via)];
        }
        m.addrs
            .iter()
            .map(|a| (TransportAddr::Tcp(*a), *a))
            .collect()
    }

    fn udp(&self) -> Option<Arc<UdpSocket>> {
        self.udp.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether datagrams are sealed (the node runs Noise sessions).
    fn seals(&self) -> bool {
        self.ctx.session.security.is_encrypted()
    }

    /// The datagram to send `payload` to `to` as: sealed with Noise, plain otherwise. `None`
    /// (counted) when no session has brought a key for `to` yet; a session is then opened.
    fn datagram(&self, core: &Arc<Core<Self>>, to: &Member, payload: &[u8]) -> Option<Bytes> {
        if !self.seals() {
            return Some(self.envelope(to, payload));
        }
        let peer = core.peer(to.id)?;
        let mut st = peer.lock();
        let sealed = st
            .seal
            .as_mut()
            .and_then(|k| k.seal(self.id.0, to.id.0, payload));
        if sealed.is_none() {
            // No key, or its counter is exhausted: the next session brings a new one.
            st.seal = None;
            drop(st);
            Counters::bump(&core.counters.datagrams_without_key);
            debug!(node = %self.id, peer = %to.id, "datagram dropped: no datagram key yet");
            core.open_session(to.id);
        }
        sealed
    }

    fn envelope(&self, to: &Member, payload: &[u8]) -> Bytes {
        let mut buf = BytesMut::with_capacity(DATAGRAM_HEADER_LEN + payload.len());
        let d = Datagram {
            from: self.id.0,
            to: to.id.0,
            payload,
        };
        d.emit(&mut buf);
        buf.freeze()
    }
}

impl Connector for SessionConnector {
    type Conn = SecureConn;

    fn route(&self, s: &Settings, member: &Member, reliable: bool) -> Result<usize, SendError> {
        if reliable && s.transports.contains_key(&member.id) {
            return Ok(usize::MAX);
        }
        if reliable && s.reliable_for(member.id) == ReliableTransport::Lsp {
            return match member.lsp_addr {
                // The session splits frames into LSP messages and joins them again: frames
                // are bounded by `max_frame` as over TCP.
                Some(_) => Ok(usize::MAX),
                None => Err(SendError::NoAddress(member.id)),
            };
        }
        if member.addrs.is_empty() {
            return Err(SendError::NoAddress(member.id));
        }
        Ok(usize::MAX)
    }

    async fn dial(
        &self,
        core: &Arc<Core<Self>>,
        member: Member,
    ) -> io::Result<(SecureConn, SocketAddr)> {
        if core.settings.reliable_for(member.id) == ReliableTransport::Lsp && !self.lsp_available {
            warn!(node = %self.id, "LSP delivery configured but no lsp_listen address");
        }
        let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address");
        for (addr, via) in self.targets(&core.settings, &member) {
            match secure::dial(core, &self.ctx, &member, &addr).await {
                Ok(conn) => return Ok((conn, via)),
                Err(err) => {
                    secure::note_dial_error(core, member.id, &err);
                    last = io::Error::other(err);
                }
            }
        }
        Err(last)
    }

    async fn write(conn: &mut SecureConn, frame: Frame) -> io::Result<()> {
        conn.write(frame).await
    }

    async fn write_app_batch(conn: &mut SecureConn, batch: &FrameBatch) -> Result<(), BatchError> {
        conn.write_app_batch(batch).await
    }

    fn write_waits(conn: &SecureConn) -> u64 {
        conn.write_waits()
    }

    fn reach_addrs(&self, member: &Member) -> Vec<SocketAddr> {
        if let Some(t) = self.transports.get(&member.id) {
            return vec![transport_via(t, member.id)];
        }
        if member.addrs.is_empty() {
            member.lsp_addr.into_iter().collect()
        } else {
            member.addrs.clone()
        }
    }

    async fn closed(conn: &mut SecureConn) {
        conn.closed().await;
    }

    fn control_sender(conn: &SecureConn) -> Option<mpsc::Sender<Frame>> {
        Some(conn.control_sender())
    }

    fn session(conn: &SecureConn) -> Option<crate::session::Session> {
        Some(conn.session().clone())
    }

    async fn open_stream(
        &self,
        core: &Arc<Core<Self>>,
        to: NodeId,
        protocol: crate::session::ProtocolId,
    ) -> Result<NodeStream, StreamError> {
        let session = core.session_to(to).await?;
        secure::open_app_stream(core, &session, protocol).await
    }

    fn peer_id(&self) -> Option<PeerId> {
        Some(self.ctx.peer_id())
    }

    fn listen_addrs(&self) -> Vec<TransportAddr> {
        self.listen_addrs.clone()
    }

    fn send_datagram(
        &self,
        core: &Arc<Core<Self>>,
        to: &Member,
        payload: &Bytes,
    ) -> Result<(), SendError> {
        let (Some(udp), Some(addr)) = (self.udp(), to.addrs.first()) else {
            return Err(SendError::Stopped);
        };
        let Some(datagram) = self.datagram(core, to, payload) else {
            return Ok(());
        };
        match udp.try_send_to(&datagram, *addr) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SendError::QueueFull(to.id)),
            Err(err) => {
                // Unreliable: an OS error is loss, not a caller error.
                debug!(node = %self.id, peer = %to.id, %err, "datagram send failed");
                Ok(())
            }
        }
    }

    async fn send_datagram_wait(
        &self,
        core: &Arc<Core<Self>>,
        to: Member,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let (Some(udp), Some(addr)) = (self.udp(), to.addrs.first()) else {
            return Err(SendError::Stopped);
        };
        let Some(datagram) = self.datagram(core, &to, &payload) else {
            return Ok(());
        };
        if let Err(err) = udp.send_to(&datagram, *addr).await {
            debug!(node = %self.id, peer = %to.id, %err, "datagram send failed");
        }
        Ok(())
    }

    fn shutdown(&self) {
        self.udp.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The default network: TCP (or LSP) for reliable delivery, UDP for unreliable.
pub struct DefaultNetwork {
    core: Arc<Core<SessionConnector>>,
    local_addr: SocketAddr,
}

impl DefaultNetwork {
    /// Binds `listen` for TCP and UDP (and `lsp_listen` for LSP, if given) and starts the
    /// receiving tasks and reachability, which announces the bound address (unless it is
    /// unspecified, `0.0.0.0` or `::`) and connects to the members.
    ///
    /// # Errors
    /// [`StartError`]: invalid settings, or a socket that could not be bound.
    pub async fn start(
        id: NodeId,
        listen: SocketAddr,
        lsp_listen: Option<SocketAddr>,
        membership: Membership,
        settings: Settings,
    ) -> Result<DefaultNetwork, StartError> {
        Self::start_advertising(id, listen, lsp_listen, Vec::new(), membership, settings).await
    }

    /// Like [`start`](Self::start), announcing `advertise` (at most
    /// `reach.engine.max_local_addresses`; the first goes into hellos) instead of the bound
    /// address when it is not empty: the addresses peers should use (behind a NAT, or when
    /// listening on `0.0.0.0`).
    ///
    /// # Errors
    /// As `start`.
    pub async fn start_advertising(
        id: NodeId,
        listen: SocketAddr,
        lsp_listen: Option<SocketAddr>,
        advertise: Vec<SocketAddr>,
        membership: Membership,
        settings: Settings,
    ) -> Result<DefaultNetwork, StartError> {
        settings.validate()?;
        let ctx = Arc::new(SecureCtx::new(&settings)?);
        let (listener, udp) = bind_pair(listen).await?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let mut extra = Vec::new();
        let lsp = lsp_listen.map(TransportAddr::Lsp);
        for addr in lsp.iter().chain(&settings.listen_also) {
            let raw = RawListener::bind(addr, &ctx.transport)
                .await
                .map_err(|source| StartError::Listen {
                    addr: addr.clone(),
                    source,
                })?;
            extra.push(raw);
        }
        let mut listen_addrs = vec![TransportAddr::Tcp(local_addr)];
        listen_addrs.extend(extra.iter().map(|r| r.local_addr().clone()));
        let udp = Arc::new(udp);
        let link = SessionConnector {
            id,
            udp: RwLock::new(Some(udp.clone())),
            lsp_available: lsp_listen.is_some(),
            ctx: ctx.clone(),
            listen_addrs,
            transports: settings.transports.clone(),
        };
        let local = if !advertise.is_empty() {
            advertise
        } else if local_addr.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![local_addr]
        };
        let core = Core::new(id, settings, membership, link, &local);
        let inbound = Arc::new(Semaphore::new(core.settings.max_inbound_connections));
        core.tracker
            .spawn(accept_loop(core.clone(), listener, inbound.clone()));
        core.tracker.spawn(udp_loop(core.clone(), udp));
        for raw in extra {
            core.tracker
                .spawn(listen_loop(core.clone(), raw, inbound.clone()));
        }
        info!(node = %id, %local_addr, peer_id = %ctx.peer_id(), "node listening");
        Ok(DefaultNetwork { core, local_addr })
    }
}

async fn bind_pair(listen: SocketAddr) -> Result<(TcpListener, UdpSocket), StartError> {
    let bind_err = |source| StartError::Bind {
        addr: listen,
        source,
    };
    let attempts = if listen.port() == 0 { BIND_ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        match UdpSocket::bind(addr).await {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) => last = Some(e),
        }
    }
    let err = last.unwrap_or_else(|| io::ErrorKind::AddrInUse.into());
    Err(bind_err(err))
}

async fn accept_loop(
    core: Arc<Core<SessionConnector>>,
    listener: TcpListener,
    inbound: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = core.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, addr)) => match inbound.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = core.connector.ctx.clone();
                    if let Err(err) = tune_tcp(&stream, &ctx.transport) {
                        debug!(node = %core.id, %addr, %err, "socket options not set");
                    }
                    let link = crate::session::RawConnection::bytes(stream);
                    let pending = Box::pin(async move { Ok(link) });
                    core.tracker.spawn(secure::accept(
                        core.clone(),
                        ctx,
                        pending,
                        Some(addr),
                        permit,
                    ));
                }
                Err(_) => {
                    Counters::bump(&core.counters.refused_connections);
                    warn!(node = %core.id, %addr, "refused peer: max_inbound_connections");
                    refuse_busy(&stream, core.settings.max_inbound_connections);
                }
            },
            Err(err) => {
                // Out of descriptors and the like: wait a little rather than spin.
                warn!(node = %core.id, %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Tells a TCP connection refused at the inbound bound why, as the session handshake would
/// (a refusal frame), without waiting: one write into the empty send buffer of a fresh
/// socket, or nothing. A hint only, and best effort: the dialler's first handshake message
/// may still be unread when the socket closes, and TCP then resets the connection, which
/// may discard the refusal before the dialler reads it.
fn refuse_busy(stream: &TcpStream, limit: usize) {
    let refusal = Refusal::new(
        RefusalReason::Busy,
        &format!("max_inbound_connections {limit}"),
    );
    let mut frame = Vec::with_capacity(LENGTH_PREFIX_LEN + refusal.buffer_len());
    // A refusal is at most MAX_REFUSAL_LEN (145) bytes, so its length always fits.
    frame.extend_from_slice(&length_prefix(refusal.buffer_len()).unwrap_or_default());
    refusal.emit(&mut frame);
    // Read what already arrived, so that closing resets the connection less often.
    let mut scratch = [0u8; 512];
    let _ = stream.try_read(&mut scratch);
    let _ = stream.try_write(&frame);
}

/// Accepts sessions on an extra listener (`lsp_listen`, `Settings::listen_also`).
async fn listen_loop(
    core: Arc<Core<SessionConnector>>,
    mut raw: RawListener,
    inbound: Arc<Semaphore>,
) {
    let local = raw.local_addr().clone();
    loop {
        let accepted = tokio::select! {
            r = raw.accept() => r,
            () = core.cancel.cancelled() => return,
        };
        match accepted {
            Ok(pending) => match inbound.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = core.connector.ctx.clone();
                    core.tracker
                        .spawn(secure::accept(core.clone(), ctx, pending, None, permit));
                }
                Err(_) => {
                    Counters::bump(&core.counters.refused_connections);
                    warn!(node = %core.id, %local, "connection refused: max_inbound_connections");
                }
            },
            Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
            Err(err) => {
                warn!(node = %core.id, %local, %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn udp_loop(core: Arc<Core<SessionConnector>>, udp: Arc<UdpSocket>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let received = tokio::select! {
            r = udp.recv_from(&mut buf) => r,
            () = core.cancel.cancelled() => return,
        };
        let len = match received {
            Ok((len, _)) => len,
            // ICMP errors from earlier sends surface here on Linux; they are loss, not failure.
            Err(err) => {
                debug!(node = %core.id, %err, "udp recv failed");
                continue;
            }
        };
        let Some(bytes) = buf.get(..len) else {
            continue;
        };
        if core.connector.seals() {
            receive_sealed(&core, bytes);
            continue;
        }
        match Datagram::parse(bytes) {
            Ok(d) if d.to == core.id.0 => {
                let payload = Bytes::copy_from_slice(d.payload);
                core.deliver_now(NodeId(d.from), payload);
            }
            Ok(d) => {
                Counters::bump(&core.counters.unknown_senders);
                debug!(node = %core.id, to = d.to, "datagram for another node dropped");
            }
            Err(err) => {
                Counters::bump(&core.counters.malformed_datagrams);
                debug!(node = %core.id, %err, "malformed datagram dropped");
            }
        }
    }
}

/// Handles one datagram received by a Noise node: opened with the sender's key and delivered,
/// or dropped and counted.
fn receive_sealed(core: &Arc<Core<SessionConnector>>, bytes: &[u8]) {
    let d = match SealedDatagram::parse(bytes) {
        Ok(d) => d,
        Err(_) => match Datagram::parse(bytes) {
            Ok(plain) if plain.to != core.id.0 => {
                Counters::bump(&core.counters.unknown_senders);
                debug!(node = %core.id, to = plain.to, "datagram for another node dropped");
                return;
            }
            Ok(_) => {
                Counters::bump(&core.counters.unsealed_datagrams);
                debug!(node = %core.id, "plain datagram dropped: this node requires sealed ones");
                return;
            }
            Err(err) => {
                Counters::bump(&core.counters.malformed_datagrams);
                debug!(node = %core.id, %err, "malformed datagram dropped");
                return;
            }
        },
    };
    let from = NodeId(d.from);
    let peer = match core.peer(from) {
        Some(peer) if d.to == core.id.0 => peer,
        _ => {
            Counters::bump(&core.counters.unknown_senders);
            debug!(node = %core.id, %from, to = d.to, "datagram misdirected or from a stranger");
            return;
        }
    };
    let opened = match peer.lock().open.as_mut() {
        Some(key) => key.open(&d),
        None => {
            Counters::bump(&core.counters.unsealed_datagrams);
            debug!(node = %core.id, %from, "sealed datagram dropped: no key from this sender");
            return;
        }
    };
    match opened {
        Ok(payload) => core.deliver_now(from, payload),
        Err(OpenError::Forged) => {
            Counters::bump(&core.counters.forged_datagrams);
            debug!(node = %core.id, %from, "datagram dropped: authentication failed");
        }
        Err(OpenError::Replayed) => {
            Counters::bump(&core.counters.replayed_datagrams);
            debug!(node = %core.id, %from, counter = d.counter, "datagram dropped: replayed");
        }
    }
}

super::network_impl!(DefaultNetwork, |n| Some(n.local_addr));
