//! The default network: reliable delivery over sessions (`crate::session`, see
//! `super::secure`), unreliable over UDP.
//!
//! Every node listens on one address for both TCP and UDP (same port), and optionally on LSP
//! (`lsp_listen`) and extra transport addresses (`Settings::listen_also`). A node writes to a
//! pinned peer on the session either of them dialled (one connection both ways), and to
//! other peers on a session it dialled itself; it reads every node stream opened to it.
//! With Noise, datagrams are sealed with the key each session's dialer sends in it
//! (`super::datagram`); in plaintext they are not authenticated (`docs/security.md`).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use hawser_proto::node::engine::ConnId;
use hawser_proto::node::{Member, NodeId};
use hawser_proto::wire::channel::{length_prefix, LENGTH_PREFIX_LEN};
use hawser_proto::wire::node::{Datagram, SealedDatagram};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::config::{ReliableTransport, Settings};
use super::counters::Counters;
use super::datagram::OpenError;
use super::error::StartError;
use super::route::transport_via;
use super::rpc::{NodeStream, StreamError};
use super::secure::{self, SecureCtx};
use super::shell::{BoxFuture, Links, Shell, State};
use crate::session::transport::{tune_tcp, RawListener};
use crate::session::{PeerId, ProtocolId, Refusal, RefusalReason, TransportAddr};

/// The largest UDP datagram read.
const RECV_BUFFER: usize = 65_536;
/// Attempts to find a port free for both TCP and UDP when listening on port 0.
const BIND_ATTEMPTS: usize = 16;

/// The default network's [`Links`]: sessions for connections, a UDP socket for datagrams.
pub(crate) struct SessionLinks {
    /// Taken out at stop so the port is released at once.
    udp: RwLock<Option<Arc<UdpSocket>>>,
    lsp_available: bool,
    ctx: Arc<SecureCtx>,
    local_addr: SocketAddr,
    listen_addrs: Vec<TransportAddr>,
}

/// Where reliable messages to `m` go, in order, each with the address reachability knows it
/// by.
fn targets(s: &Settings, m: &Member) -> Vec<(TransportAddr, SocketAddr)> {
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

impl SessionLinks {
    fn udp(&self) -> Option<Arc<UdpSocket>> {
        self.udp.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether datagrams are sealed (the node runs Noise sessions).
    fn seals(&self) -> bool {
        self.ctx.session.security.is_encrypted()
    }
}

impl Links for SessionLinks {
    fn dial(
        &self,
        shell: &Arc<Shell>,
        st: &State,
        conn: ConnId,
        peer: NodeId,
        stop: CancellationToken,
    ) {
        let member = st.engine.membership().get(peer).cloned();
        let targets = member.map_or_else(Vec::new, |m| targets(&shell.settings, &m));
        if shell.settings.reliable_for(peer) == ReliableTransport::Lsp && !self.lsp_available {
            warn!(node = %shell.id, "LSP delivery configured but no lsp_listen address");
        }
        // Everything the dial and the writer log carries the peer's id.
        let span = tracing::info_span!(parent: None, "peer", node = shell.id.0, peer = peer.0);
        let task =
            secure::dial_and_write(shell.clone(), self.ctx.clone(), conn, peer, targets, stop);
        shell.tracker.spawn(task.instrument(span));
    }

    fn send_datagram(
        &self,
        shell: &Arc<Shell>,
        st: &mut State,
        to: NodeId,
        addr: SocketAddr,
        datagram: Bytes,
    ) {
        let Some(udp) = self.udp() else {
            return;
        };
        let datagram = if self.seals() {
            let Ok(d) = Datagram::parse(&datagram) else {
                return;
            };
            let sealed = st
                .seal
                .get_mut(&to)
                .and_then(|k| k.seal(d.from, d.to, d.payload));
            match sealed {
                Some(s) => s,
                None => {
                    // No key, or its counter is exhausted: the next session brings a new one.
                    st.seal.remove(&to);
                    Counters::bump(&shell.counters.datagrams_without_key);
                    debug!(node = %shell.id, peer = %to, "datagram dropped: no datagram key yet");
                    shell.connect(st, to);
                    return;
                }
            }
        } else {
            datagram
        };
        match udp.try_send_to(&datagram, addr) {
            Ok(_) => {}
            // A fresh socket not yet known writable, or a full buffer: sent when it can be.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let id = shell.id;
                shell.tracker.spawn(async move {
                    if let Err(err) = udp.send_to(&datagram, addr).await {
                        debug!(node = %id, peer = %to, %err, "datagram send failed");
                    }
                });
            }
            // Unreliable: an OS error is loss, not a caller error.
            Err(err) => debug!(node = %shell.id, peer = %to, %err, "datagram send failed"),
        }
    }

    fn open_stream<'a>(
        &'a self,
        shell: &'a Arc<Shell>,
        to: NodeId,
        protocol: ProtocolId,
    ) -> BoxFuture<'a, Result<NodeStream, StreamError>> {
        Box::pin(async move {
            let session = shell.session_to(to).await?;
            secure::open_app_stream(shell, &session, protocol).await
        })
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        Some(self.local_addr)
    }

    fn peer_id(&self) -> Option<PeerId> {
        Some(self.ctx.peer_id())
    }

    fn listen_addrs(&self) -> Vec<TransportAddr> {
        self.listen_addrs.clone()
    }

    fn shutdown(&self) {
        self.udp.write().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Binds `listen` for TCP and UDP (and `lsp_listen`, and `Settings::listen_also`), and
/// starts node `id` on them, announcing `advertise` (default: the bound address unless it
/// is unspecified).
///
/// # Errors
/// [`StartError`]: invalid settings or membership, a socket that could not be bound.
pub(crate) async fn start(
    id: NodeId,
    listen: SocketAddr,
    lsp_listen: Option<SocketAddr>,
    advertise: Vec<SocketAddr>,
    members: Vec<Member>,
    settings: Settings,
) -> Result<Arc<Shell>, StartError> {
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
    let links = SessionLinks {
        udp: RwLock::new(Some(udp.clone())),
        lsp_available: lsp_listen.is_some(),
        ctx: ctx.clone(),
        local_addr,
        listen_addrs,
    };
    let seals = links.seals();
    let local = if !advertise.is_empty() {
        advertise
    } else if local_addr.ip().is_unspecified() {
        Vec::new()
    } else {
        vec![local_addr]
    };
    let shell = Shell::new(id, settings, members, Box::new(links), &local, false)?;
    let inbound = Arc::new(Semaphore::new(shell.settings.max_inbound_connections));
    let tasks = &shell.tracker;
    tasks.spawn(accept_loop(
        shell.clone(),
        ctx.clone(),
        listener,
        inbound.clone(),
    ));
    tasks.spawn(udp_loop(shell.clone(), seals, udp));
    for raw in extra {
        tasks.spawn(listen_loop(
            shell.clone(),
            ctx.clone(),
            raw,
            inbound.clone(),
        ));
    }
    info!(node = %id, %local_addr, peer_id = %ctx.peer_id(), "node listening");
    Ok(shell)
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
    shell: Arc<Shell>,
    ctx: Arc<SecureCtx>,
    listener: TcpListener,
    inbound: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = shell.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, addr)) => match inbound.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = ctx.clone();
                    if let Err(err) = tune_tcp(&stream, &ctx.transport) {
                        debug!(node = %shell.id, %addr, %err, "socket options not set");
                    }
                    let link = crate::session::RawConnection::bytes(stream);
                    let pending = Box::pin(async move { Ok(link) });
                    shell.tracker.spawn(secure::accept(
                        shell.clone(),
                        ctx,
                        pending,
                        Some(addr),
                        permit,
                    ));
                }
                Err(_) => {
                    Counters::bump(&shell.counters.refused_connections);
                    warn!(node = %shell.id, %addr, "refused peer: max_inbound_connections");
                    refuse_busy(&stream, shell.settings.max_inbound_connections);
                }
            },
            Err(err) => {
                // Out of descriptors and the like: wait a little rather than spin.
                warn!(node = %shell.id, %err, "accept failed");
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
    shell: Arc<Shell>,
    ctx: Arc<SecureCtx>,
    mut raw: RawListener,
    inbound: Arc<Semaphore>,
) {
    let local = raw.local_addr().clone();
    loop {
        let accepted = tokio::select! {
            r = raw.accept() => r,
            () = shell.cancel.cancelled() => {
                // `stop` waits for this: the address is free once it returns.
                raw.close().await;
                return;
            }
        };
        match accepted {
            Ok(pending) => match inbound.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = ctx.clone();
                    shell
                        .tracker
                        .spawn(secure::accept(shell.clone(), ctx, pending, None, permit));
                }
                Err(_) => {
                    Counters::bump(&shell.counters.refused_connections);
                    warn!(node = %shell.id, %local, "connection refused: max_inbound_connections");
                }
            },
            Err(err) if err.kind() == io::ErrorKind::NotConnected => return,
            Err(err) => {
                warn!(node = %shell.id, %local, %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn udp_loop(shell: Arc<Shell>, seals: bool, udp: Arc<UdpSocket>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let received = tokio::select! {
            r = udp.recv_from(&mut buf) => r,
            () = shell.cancel.cancelled() => return,
        };
        let (len, from) = match received {
            Ok(r) => r,
            // ICMP errors from earlier sends surface here on Linux; they are loss, not failure.
            Err(err) => {
                debug!(node = %shell.id, %err, "udp recv failed");
                continue;
            }
        };
        let Some(bytes) = buf.get(..len) else {
            continue;
        };
        if seals {
            receive_sealed(&shell, bytes);
        } else {
            shell.datagram(from, Bytes::copy_from_slice(bytes));
        }
    }
}

/// Handles one datagram received by a Noise node: opened with the sender's key and delivered,
/// or dropped and counted.
fn receive_sealed(shell: &Arc<Shell>, bytes: &[u8]) {
    let d = match SealedDatagram::parse(bytes) {
        Ok(d) => d,
        Err(_) => match Datagram::parse(bytes) {
            Ok(plain) if plain.to != shell.id.0 => {
                Counters::bump(&shell.counters.unknown_senders);
                debug!(node = %shell.id, to = plain.to, "datagram for another node dropped");
                return;
            }
            Ok(_) => {
                Counters::bump(&shell.counters.unsealed_datagrams);
                debug!(node = %shell.id, "plain datagram dropped: this node requires sealed ones");
                return;
            }
            Err(err) => {
                Counters::bump(&shell.counters.malformed_datagrams);
                debug!(node = %shell.id, %err, "malformed datagram dropped");
                return;
            }
        },
    };
    let from = NodeId(d.from);
    let mut st = shell.lock();
    if d.to != shell.id.0 || !st.engine.membership().contains(from) {
        drop(st);
        Counters::bump(&shell.counters.unknown_senders);
        debug!(node = %shell.id, %from, to = d.to, "datagram misdirected or from a stranger");
        return;
    }
    let opened = match st.open.get_mut(&from) {
        Some(key) => key.open(&d),
        None => {
            drop(st);
            Counters::bump(&shell.counters.unsealed_datagrams);
            debug!(node = %shell.id, %from, "sealed datagram dropped: no key from this sender");
            return;
        }
    };
    match opened {
        Ok(payload) => {
            st.engine
                .handle_opened_datagram(Instant::now(), from, payload);
            shell.flush(&mut st);
        }
        Err(OpenError::Forged) => {
            Counters::bump(&shell.counters.forged_datagrams);
            debug!(node = %shell.id, %from, "datagram dropped: authentication failed");
        }
        Err(OpenError::Replayed) => {
            Counters::bump(&shell.counters.replayed_datagrams);
            debug!(node = %shell.id, %from, counter = d.counter, "datagram dropped: replayed");
        }
    }
}
