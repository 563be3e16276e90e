//! The default network: reliable delivery over TCP (or LSP, per setting), unreliable over UDP.
//!
//! Every node listens on one address for both TCP and UDP (same port). An outgoing TCP
//! connection carries 4-byte big-endian length-prefixed frames (`tokio_util`'s
//! `LengthDelimitedCodec`): first a framed hello naming the sender and where it listens
//! (`hawser_proto::wire::node::FramedHello`), then one frame per message, each starting with a
//! kind byte (`FrameKind`: an application payload, a reachability event, a ping). A connection
//! opened with a plain hello (`Hello`) carries bare application payloads instead; both are
//! accepted. Connections are one-way: each node writes on the connection it opened and reads on
//! those it accepted.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use hawser_proto::node::{Delivery, Member, Membership, NodeId};
use hawser_proto::wire::node::{
    AnyHello, Datagram, FramedHello, DATAGRAM_HEADER_LEN, FRAME_KIND_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec, LengthDelimitedCodecError};
use tracing::{debug, info, warn};

use super::config::{ReliableTransport, Settings};
use super::core::{Core, Counters, Link};
use super::error::{SendError, StartError};
use super::lsp_link::{self, LspConn};
use super::reach::{Frame, TrafficGate};

/// The largest UDP datagram read.
const RECV_BUFFER: usize = 65_536;
/// Attempts to find a port free for both TCP and UDP when listening on port 0.
const BIND_ATTEMPTS: usize = 16;

/// The codec of every TCP connection, bounded by `max_frame`.
pub(crate) fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(max_frame)
        .new_codec()
}

/// The default network's [`Link`].
pub(crate) struct TcpLink {
    id: NodeId,
    /// Taken out at stop so the port is released at once.
    udp: RwLock<Option<Arc<UdpSocket>>>,
    lsp_available: bool,
}

/// One open reliable connection of the default network.
pub(crate) enum Conn {
    Tcp(TcpConn),
    Lsp(LspConn),
}

pub(crate) struct TcpConn {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: BytesMut,
}

impl TcpConn {
    /// Writes one length-prefixed frame: `prefix` (a kind byte or nothing), then `body`.
    async fn send_raw(&mut self, prefix: &[u8], body: &[u8]) -> io::Result<()> {
        let len = u32::try_from(prefix.len() + body.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        self.buf.clear();
        self.buf.reserve(4 + len as usize);
        self.buf.put_u32(len);
        self.buf.put_slice(prefix);
        self.buf.put_slice(body);
        self.write.write_all(&self.buf).await
    }

    async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let (kind, body) = frame.parts();
        self.send_raw(&[kind.byte()], body).await
    }
}

impl TcpLink {
    fn udp(&self) -> Option<Arc<UdpSocket>> {
        self.udp.read().unwrap_or_else(|e| e.into_inner()).clone()
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

impl Link for TcpLink {
    type Conn = Conn;

    fn route(&self, s: &Settings, member: &Member, reliable: bool) -> Result<usize, SendError> {
        if reliable && s.reliable_for(member.id) == ReliableTransport::Lsp {
            return match member.lsp_addr {
                // The kind byte of the framed connection takes one byte of the LSP payload.
                Some(_) => Ok(s.lsp.max_payload.saturating_sub(FRAME_KIND_LEN)),
                None => Err(SendError::NoAddress(member.id)),
            };
        }
        if member.addrs.is_empty() {
            return Err(SendError::NoAddress(member.id));
        }
        Ok(usize::MAX)
    }

    async fn dial(&self, core: &Arc<Core<Self>>, member: Member) -> io::Result<(Conn, SocketAddr)> {
        if core.settings.reliable_for(member.id) == ReliableTransport::Lsp {
            if !self.lsp_available {
                warn!(node = %self.id, "LSP delivery configured but no lsp_listen address");
            }
            let conn = lsp_link::dial(core, &member).await?;
            let via = member.addrs.first().copied().or(member.lsp_addr);
            let via = via.ok_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable))?;
            return Ok((Conn::Lsp(conn), via));
        }
        let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, "no address");
        for addr in &member.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    let mut conn = TcpConn {
                        read,
                        write,
                        buf: BytesMut::new(),
                    };
                    let mut hello = BytesMut::new();
                    let listen = core.reach.as_ref().and_then(|r| r.hello_addr);
                    FramedHello {
                        from: self.id.0,
                        listen,
                    }
                    .emit(&mut hello);
                    conn.send_raw(&[], &hello).await?;
                    debug!(node = %self.id, peer = %member.id, %addr, "tcp connected");
                    return Ok((Conn::Tcp(conn), *addr));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn write(conn: &mut Conn, frame: Frame) -> io::Result<()> {
        match conn {
            Conn::Tcp(c) => c.send(&frame).await,
            Conn::Lsp(c) => c.send(&frame).await,
        }
    }

    fn reach_addrs(&self, member: &Member) -> Vec<SocketAddr> {
        if member.addrs.is_empty() {
            member.lsp_addr.into_iter().collect()
        } else {
            member.addrs.clone()
        }
    }

    async fn closed(conn: &mut Conn) {
        match conn {
            Conn::Tcp(c) => {
                // The peer never writes on this connection: any end of the read side is the end.
                let mut scratch = [0u8; 64];
                while let Ok(n) = c.read.read(&mut scratch).await {
                    if n == 0 {
                        return;
                    }
                }
            }
            Conn::Lsp(c) => c.closed().await,
        }
    }

    fn send_datagram(&self, _: &Core<Self>, to: &Member, payload: &Bytes) -> Result<(), SendError> {
        let (Some(udp), Some(addr)) = (self.udp(), to.addrs.first()) else {
            return Err(SendError::Stopped);
        };
        match udp.try_send_to(&self.envelope(to, payload), *addr) {
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
        _: &Core<Self>,
        to: Member,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let (Some(udp), Some(addr)) = (self.udp(), to.addrs.first()) else {
            return Err(SendError::Stopped);
        };
        if let Err(err) = udp.send_to(&self.envelope(&to, &payload), *addr).await {
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
    core: Arc<Core<TcpLink>>,
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
        let (listener, udp) = bind_pair(listen).await?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let lsp_server = match lsp_listen {
            Some(addr) => Some(lsp_link::bind(addr, &settings).await?),
            None => None,
        };
        let udp = Arc::new(udp);
        let link = TcpLink {
            id,
            udp: RwLock::new(Some(udp.clone())),
            lsp_available: lsp_server.is_some(),
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
        if let Some(server) = lsp_server {
            core.tracker
                .spawn(lsp_link::serve(core.clone(), server, inbound));
        }
        info!(node = %id, %local_addr, "node listening");
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

async fn accept_loop(core: Arc<Core<TcpLink>>, listener: TcpListener, inbound: Arc<Semaphore>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = core.cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, addr)) => match inbound.clone().try_acquire_owned() {
                Ok(permit) => {
                    core.tracker
                        .spawn(read_conn(core.clone(), stream, addr, permit));
                }
                Err(_) => {
                    Counters::bump(&core.counters.refused_connections);
                    warn!(node = %core.id, %addr, "connection refused: max_inbound_connections");
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

fn is_oversized(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|e| e.is::<LengthDelimitedCodecError>())
}

/// Reads one accepted connection: the hello, then frames, until it ends or the node stops.
async fn read_conn(
    core: Arc<Core<TcpLink>>,
    stream: TcpStream,
    addr: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let mut frames = FramedRead::new(stream, codec(core.settings.max_frame));
    let first = tokio::select! {
        r = tokio::time::timeout(core.settings.hello_timeout, frames.next()) => r,
        () = core.cancel.cancelled() => return,
    };
    let hello = match first {
        Ok(Some(Ok(frame))) => match AnyHello::parse(&frame) {
            Ok(h) => h,
            Err(err) => {
                Counters::bump(&core.counters.bad_hellos);
                warn!(node = %core.id, %addr, %err, "bad hello: connection closed");
                return;
            }
        },
        Ok(Some(Err(err))) if is_oversized(&err) => {
            core.note_oversized(None);
            warn!(node = %core.id, %addr, "oversized frame before hello: connection closed");
            return;
        }
        _ => {
            Counters::bump(&core.counters.bad_hellos);
            debug!(node = %core.id, %addr, "no hello: connection closed");
            return;
        }
    };
    let from = NodeId(hello.from());
    let (framed, listen) = match hello {
        AnyHello::Plain(_) => (false, None),
        AnyHello::Framed(h) => (true, h.listen),
    };
    let admitted = if framed {
        core.admit(from, listen)
    } else {
        core.is_member(from)
    };
    if !admitted {
        Counters::bump(&core.counters.unknown_senders);
        warn!(node = %core.id, %addr, peer = %from, "hello from a non-member: connection closed");
        return;
    }
    info!(node = %core.id, peer = %from, %addr, framed, "accepted connection");
    // Reachability knows the peer by the address it listens on, else by this connection's.
    let via = listen.unwrap_or(addr);
    let mut gate = TrafficGate::default();
    if framed {
        // The kind byte comes on top of an application payload of up to `max_frame`.
        let max = core.settings.max_frame.saturating_add(FRAME_KIND_LEN);
        frames.decoder_mut().set_max_frame_length(max);
        core.reach_connected(from, via);
    }
    loop {
        let next = tokio::select! {
            r = frames.next() => r,
            () = core.cancel.cancelled() => return,
        };
        match next {
            Some(Ok(frame)) if !framed => {
                if !core.deliver(from, Delivery::Reliable, frame.freeze()).await {
                    return;
                }
            }
            Some(Ok(frame)) => match Frame::parse(frame.freeze()) {
                Ok(frame) => {
                    if !core.receive(from, via, frame, &mut gate).await {
                        return;
                    }
                }
                Err(err) => core.note_bad_frame(from, &err),
            },
            Some(Err(err)) if is_oversized(&err) => {
                core.note_oversized(Some(from));
                warn!(node = %core.id, peer = %from, max = core.settings.max_frame,
                      "oversized frame: connection closed");
                return;
            }
            Some(Err(err)) => {
                info!(node = %core.id, peer = %from, %err, "inbound connection failed");
                return;
            }
            None => {
                info!(node = %core.id, peer = %from, "inbound connection closed");
                return;
            }
        }
    }
}

async fn udp_loop(core: Arc<Core<TcpLink>>, udp: Arc<UdpSocket>) {
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

super::network_impl!(DefaultNetwork, |n| Some(n.local_addr));
