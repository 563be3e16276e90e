//! The datagram socket under an LSP endpoint: a plain UDP socket driven through `quinn-udp`
//! (segmentation offload both ways where the kernel has it), or one that injects faults (for
//! tests, demos and the CLI's `--drop-percent`).
//!
//! # Batching
//! A plain socket sends runs of equal-sized datagrams to one destination as one `sendmsg` with
//! UDP generic segmentation offload (GSO, Linux ≥ 4.18): up to [`MAX_SEGMENTS`] datagrams and
//! [`MAX_BATCH_BYTES`] per system call. It receives with generic receive offload (GRO): one
//! receive may return many datagrams of one sender glued together, cut apart here by the
//! segment size the kernel reports. Where the kernel lacks either, every datagram is one call,
//! as before; nothing on the wire differs (the peer sees ordinary datagrams).
//!
//! # The latency path
//! On Linux a receive is one `recvmsg` that asks only for the GRO segment size (the packet-info
//! and TOS control messages `quinn-udp` turns on are turned off again: hawser reads neither).
//! Whether more waits after a burst is asked with a zero-length peek (`Socket::has_datagram`),
//! cheaper than a full receive that finds nothing. A client's socket is connected to its server
//! (`Socket::connect`): single datagrams go out with `send` on the route the socket keeps, and
//! the kernel drops datagrams from anyone else.
//!
//! # Fragmentation
//! `quinn-udp` forbids IP fragmentation on its sockets (QUIC's choice); hawser restores the
//! socket's previous path-MTU setting afterwards, so a datagram larger than the path MTU (a JSON
//! datagram with a large payload, say) is fragmented by IP as on any UDP socket. A segmented
//! send that the path cannot carry is retried one datagram per call.

use std::io;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::io::IoSliceMut;
use std::net::SocketAddr;

use hawser_proto::Transmit;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use quinn_udp::RecvMeta;
use quinn_udp::{UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::fault_socket::FaultySocket;

/// Most datagrams one segmented send carries (the Linux kernel's `UDP_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes one segmented send carries (the UDP length limit, rounded down).
pub const MAX_BATCH_BYTES: usize = 64_000;

/// A UDP socket for an LSP client or server.
#[derive(Debug)]
pub struct Socket(Inner);

#[derive(Debug)]
enum Inner {
    Plain(Plain),
    Faulty(FaultySocket),
}

/// A plain socket and, where the platform allows, its `quinn-udp` state.
struct Plain {
    io: UdpSocket,
    /// `None` where `quinn-udp` could not set the socket up: plain `send_to`, one datagram per
    /// call (and `recv_from` outside Linux).
    state: Option<UdpSocketState>,
    /// The one peer of a client's socket, once connected to it (`Socket::connect`): single
    /// datagrams to it go out with `send`, which uses the route the socket keeps instead of
    /// looking one up per datagram.
    peer: Option<SocketAddr>,
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plain")
            .field("io", &self.io)
            .field("gso_segments", &self.gso_segments())
            .field(
                "gro",
                &self.state.as_ref().map(UdpSocketState::gro_segments),
            )
            .finish()
    }
}

/// Where one received buffer came from and how to cut it into datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    /// The sender.
    pub from: SocketAddr,
    /// Bytes received.
    pub len: usize,
    /// The length of each datagram in the buffer (the last may be shorter); `len` if one.
    pub stride: usize,
}

impl Received {
    /// The datagrams of `buf[..len]`, in order.
    pub fn datagrams<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        buf[..self.len].chunks(self.stride.max(1))
    }
}

impl Socket {
    /// Binds a plain socket.
    ///
    /// # Errors
    /// The OS's bind error.
    pub async fn bind(addr: SocketAddr) -> io::Result<Socket> {
        Ok(Socket::from(UdpSocket::bind(addr).await?))
    }

    /// The local address.
    ///
    /// # Errors
    /// The OS's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.0 {
            Inner::Plain(p) => p.io.local_addr(),
            Inner::Faulty(s) => s.local_addr(),
        }
    }

    /// How many datagrams one send may carry (1 without segmentation offload).
    pub fn max_segments(&self) -> usize {
        match &self.0 {
            Inner::Plain(p) => p.gso_segments(),
            Inner::Faulty(_) => 1,
        }
    }

    /// Sends every datagram of `transmits`, in order, as few system calls as the kernel allows.
    /// `scratch` is reused between calls to glue runs of datagrams together. Returns the number
    /// of system calls made. Send errors other than a full buffer are loss (logged, not
    /// returned): the protocol retransmits.
    pub(crate) async fn send_all(&self, transmits: &[Transmit], scratch: &mut Vec<u8>) -> usize {
        let plain = match &self.0 {
            Inner::Plain(p) if p.gso_segments() > 1 => p,
            _ => {
                for t in transmits {
                    self.send_one(&t.contents, t.destination).await;
                }
                return transmits.len();
            }
        };
        let mut calls = 0;
        let mut rest = transmits;
        while let Some(first) = rest.first() {
            let run = run_length(rest, plain.gso_segments());
            calls += 1;
            if run == 1 {
                self.send_one(&first.contents, first.destination).await;
            } else {
                scratch.clear();
                for t in &rest[..run] {
                    scratch.extend_from_slice(&t.contents);
                }
                let segment = first.contents.len();
                if !plain
                    .send_segments(scratch, segment, first.destination)
                    .await
                {
                    // The path refused the glued form (EMSGSIZE): one datagram per call.
                    for t in &rest[..run] {
                        self.send_one(&t.contents, t.destination).await;
                    }
                    calls += run;
                }
            }
            rest = &rest[run..];
        }
        calls
    }

    /// Connects a plain socket to `peer`, the only address it then exchanges datagrams with
    /// (an LSP client's server): the kernel keeps the route and drops datagrams from anyone
    /// else (which the client would drop anyway). A fault-injecting socket, or one the OS does
    /// not let connect, stays as it is.
    pub(crate) async fn connect(&mut self, peer: SocketAddr) {
        if let Inner::Plain(p) = &mut self.0 {
            match p.io.connect(peer).await {
                Ok(()) => p.peer = Some(peer),
                Err(err) => tracing::debug!(%peer, %err, "socket not connected to its peer"),
            }
        }
    }

    async fn send_one(&self, buf: &[u8], to: SocketAddr) {
        let result = match &self.0 {
            Inner::Plain(p) => match p.try_send_one(buf, to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.io.send_to(buf, to).await,
                other => other,
            },
            Inner::Faulty(s) => s.send_to(buf, to).await,
        };
        if let Err(err) = result {
            // UDP send errors (no buffer space, unreachable) are loss; the protocol retransmits.
            tracing::debug!(%to, %err, "send failed");
        }
    }

    /// Whether datagrams may arrive glued (receive offload is on).
    #[cfg(test)]
    fn receives_glued(&self) -> bool {
        match &self.0 {
            Inner::Plain(p) => p.state.as_ref().is_some_and(|s| s.gro_segments() > 1),
            Inner::Faulty(_) => false,
        }
    }

    /// Whether callers other than the driver may send and receive on this socket without
    /// waiting (a plain socket; not a fault-injecting one, whose calls keep bookkeeping).
    pub(crate) fn sends_inline(&self) -> bool {
        matches!(self.0, Inner::Plain(_))
    }

    /// Sends one datagram if the socket takes it without waiting: `false` if it would block
    /// (the caller leaves it to the driver). Other errors are loss, logged.
    pub(crate) fn try_send(&self, buf: &[u8], to: SocketAddr) -> bool {
        let Inner::Plain(p) = &self.0 else {
            return false;
        };
        match p.try_send_one(buf, to) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(err) => {
                tracing::debug!(%to, %err, "send failed");
                true
            }
        }
    }

    /// Waits until a datagram may be waiting (a plain socket), for [`try_recv`](Self::try_recv).
    /// Cancel safe. Never resolves for a fault-injecting socket (use [`recv`](Self::recv)).
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match &self.0 {
            Inner::Plain(p) => p.io.readable().await,
            Inner::Faulty(_) => std::future::pending().await,
        }
    }

    /// Receives one buffer of datagrams, waiting for one. Cancel safe: a datagram is either
    /// returned or left in the socket.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        match &self.0 {
            Inner::Plain(p) => loop {
                p.io.readable().await?;
                match p.try_recv(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => return other,
                }
            },
            Inner::Faulty(s) => {
                let (len, from) = s.recv_from(buf).await?;
                Ok(Received {
                    from,
                    len,
                    stride: len,
                })
            }
        }
    }

    /// Whether a datagram is waiting, asked without taking it: the cheapest call that tells
    /// (a zero-length peek, no message header, no control messages), for the receive that
    /// usually finds the socket empty at the end of a burst. When none is waiting the runtime's
    /// readiness is cleared, as a receive that would block clears it. `true` when unsure (an
    /// error to report, a fault-injecting socket): the caller then receives.
    pub(crate) fn has_datagram(&self) -> bool {
        match &self.0 {
            Inner::Plain(p) => match p.io.try_peek_sender() {
                Ok(_) => true,
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            },
            Inner::Faulty(_) => true,
        }
    }

    /// A buffer of datagrams already waiting, without waiting: `WouldBlock` when there is none
    /// (always, for a fault-injecting socket, whose `recv_from` does the bookkeeping of delays).
    pub(crate) fn try_recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        match &self.0 {
            Inner::Plain(p) => p.try_recv(buf),
            Inner::Faulty(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Plain {
    fn new(io: UdpSocket) -> Plain {
        let state = restoring_pmtu(&io, || UdpSocketState::new(UdpSockRef::from(&io)));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if state.is_ok() {
            gro::quiet(&io);
        }
        let state = match state {
            Ok(s) => Some(s),
            Err(err) => {
                tracing::debug!(%err, "no segmentation offload: plain UDP calls");
                None
            }
        };
        Plain {
            io,
            state,
            peer: None,
        }
    }

    /// One datagram without waiting: with `send` to the connected peer, `send_to` otherwise.
    fn try_send_one(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        if self.peer == Some(to) {
            self.io.try_send(buf)
        } else {
            self.io.try_send_to(buf, to)
        }
    }

    fn gso_segments(&self) -> usize {
        self.state
            .as_ref()
            .map_or(1, |s| s.max_gso_segments().min(MAX_SEGMENTS))
    }

    /// One segmented send of `contents` cut every `segment` bytes; `false` if the path refused
    /// it as too large (the caller then sends the datagrams one by one).
    async fn send_segments(&self, contents: &[u8], segment: usize, to: SocketAddr) -> bool {
        let Some(state) = &self.state else {
            return false;
        };
        let transmit = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: Some(segment),
            src_ip: None,
        };
        loop {
            let sent = self.io.try_io(Interest::WRITABLE, || {
                state.try_send(UdpSockRef::from(&self.io), &transmit)
            });
            match sent {
                Ok(()) => return true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(err) = self.io.writable().await {
                        tracing::debug!(%to, %err, "socket not writable");
                        return true;
                    }
                }
                Err(e) if is_too_large(&e) => return false,
                Err(err) => {
                    // Loss, like any UDP send error; `quinn-udp` turns segmentation off by
                    // itself if the kernel or device refuses it (EIO, EINVAL).
                    tracing::debug!(%to, %err, "segmented send failed");
                    return true;
                }
            }
        }
    }

    /// On Linux one `recvmsg` (see [`gro`]), which reads a glued buffer's segment size if GRO is
    /// on and the datagram's length otherwise; elsewhere `quinn-udp`'s receive, or a plain
    /// `recv_from` where `quinn-udp` could not set the socket up.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            self.io
                .try_io(Interest::READABLE, || gro::recv(&self.io, buf))
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let Some(state) = &self.state else {
                let (len, from) = self.io.try_recv_from(buf)?;
                return Ok(Received {
                    from,
                    len,
                    stride: len,
                });
            };
            let mut meta = [RecvMeta::default()];
            self.io.try_io(Interest::READABLE, || {
                let mut bufs = [IoSliceMut::new(buf)];
                state.recv(UdpSockRef::from(&self.io), &mut bufs, &mut meta)
            })?;
            let [m] = meta;
            Ok(Received {
                from: m.addr,
                len: m.len,
                stride: if m.stride == 0 { m.len } else { m.stride },
            })
        }
    }
}

/// Receiving on Linux: one `recvmsg` that asks only for the GRO segment size.
///
/// `quinn-udp`'s receive is a `recvmmsg` that prepares (and zeroes) 32 message headers and asks
/// for ECN and packet-info control messages on every call; hawser reads one buffer per call and
/// uses neither, and in a request-response exchange every half trip makes two receives (one
/// that finds the datagram, one that finds the socket empty), so that work was paid on the
/// latency path for nothing. `quinn-udp` still sets the socket up (GRO, GSO) and sends.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod gro {
    use std::io::{self, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{self, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use tokio::net::UdpSocket;

    use super::Received;

    /// Room for one `UDP_GRO` control message (an `int`), aligned as the kernel writes it.
    #[repr(C, align(8))]
    struct ControlBuf([u8; 32]);

    /// Turns off the control messages `quinn-udp` asked for and hawser does not read (packet
    /// info, TOS / traffic class): the kernel then builds only the GRO one. Best effort.
    pub(super) fn quiet(io: &UdpSocket) {
        use rustix::net::sockopt;
        let _ = socket::setsockopt(io, socket::sockopt::Ipv4PacketInfo, &false);
        let _ = socket::setsockopt(io, socket::sockopt::Ipv6RecvPacketInfo, &false);
        let _ = sockopt::set_ip_recvtos(io, false);
        let _ = sockopt::set_ipv6_recvtclass(io, false);
    }

    /// One receive: the sender, the bytes received and the GRO segment size (`len` when the
    /// kernel glued nothing together).
    pub(super) fn recv(io: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut control = ControlBuf([0; 32]);
        let msg = socket::recvmsg::<SockaddrStorage>(
            io.as_raw_fd(),
            &mut iov,
            Some(&mut control.0),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let len = msg.bytes;
        let mut stride = len;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::UdpGroSegments(size) = c {
                    stride = usize::try_from(size).ok().filter(|&s| s > 0).unwrap_or(len);
                }
            }
        }
        let from = msg
            .address
            .as_ref()
            .and_then(to_std)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no sender address"))?;
        Ok(Received { from, len, stride })
    }

    fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddrV4::from(*v4).into());
        }
        a.as_sockaddr_in6().map(|v6| SocketAddrV6::from(*v6).into())
    }
}

/// Whether a send failed because the datagram (or a segment) is larger than the path allows.
fn is_too_large(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        err.raw_os_error() == Some(rustix::io::Errno::MSGSIZE.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

/// How many datagrams from the head of `transmits` go out as one segmented send: same
/// destination, all but the last exactly as long as the first, the last no longer, within
/// `max` datagrams and [`MAX_BATCH_BYTES`].
fn run_length(transmits: &[Transmit], max: usize) -> usize {
    let Some(first) = transmits.first() else {
        return 0;
    };
    let segment = first.contents.len();
    let mut bytes = segment;
    let mut n = 1;
    for t in &transmits[1..] {
        let len = t.contents.len();
        if n == max
            || t.destination != first.destination
            || len > segment
            || len == 0
            || bytes + len > MAX_BATCH_BYTES
        {
            break;
        }
        n += 1;
        bytes += len;
        if len < segment {
            // A shorter datagram can only be the last of a run.
            break;
        }
    }
    n
}

/// Runs `f` (which may change the socket's path-MTU discovery) and puts the previous setting
/// back, so that IP fragmentation behaves as on any UDP socket.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn restoring_pmtu<R>(io: &UdpSocket, f: impl FnOnce() -> R) -> R {
    use rustix::net::sockopt;
    let v4 = sockopt::ip_mtu_discover(io).ok();
    let v6 = sockopt::ipv6_mtu_discover(io).ok();
    let result = f();
    if let Some(v) = v4 {
        let _ = sockopt::set_ip_mtu_discover(io, v);
    }
    if let Some(v) = v6 {
        let _ = sockopt::set_ipv6_mtu_discover(io, v);
    }
    result
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn restoring_pmtu<R>(_io: &UdpSocket, f: impl FnOnce() -> R) -> R {
    f()
}

/// The kernel send and receive buffer hawser asks for on its UDP sockets: a full window of
/// datagrams must fit, or the kernel drops what the protocol then has to resend. Linux caps the
/// request at `net.core.rmem_max` / `wmem_max` (often 4 MiB, sometimes 208 KiB).
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Asks for [`SOCKET_BUFFER_BYTES`] of kernel buffer; best effort, a refusal is only logged.
pub(crate) fn tune_buffers(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    for (what, result) in [
        ("receive", sock.set_recv_buffer_size(SOCKET_BUFFER_BYTES)),
        ("send", sock.set_send_buffer_size(SOCKET_BUFFER_BYTES)),
    ] {
        if let Err(err) = result {
            tracing::debug!(%err, what, "could not enlarge the socket buffer");
        }
    }
}

impl From<UdpSocket> for Socket {
    /// Wraps a plain socket, enlarging its kernel buffers (see [`SOCKET_BUFFER_BYTES`]) and
    /// turning on segmentation offload where the kernel has it.
    fn from(s: UdpSocket) -> Socket {
        tune_buffers(&s);
        Socket(Inner::Plain(Plain::new(s)))
    }
}

impl From<FaultySocket> for Socket {
    fn from(s: FaultySocket) -> Socket {
        Socket(Inner::Faulty(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn t(to: u16, len: usize) -> Transmit {
        Transmit {
            destination: SocketAddr::from(([127, 0, 0, 1], to)),
            contents: Bytes::from(vec![7u8; len]),
        }
    }

    #[test]
    fn runs_group_equal_datagrams_to_one_destination() {
        let ts = [t(1, 100), t(1, 100), t(1, 100), t(2, 100)];
        assert_eq!(run_length(&ts, 64), 3);
        assert_eq!(run_length(&ts[3..], 64), 1);
        assert_eq!(run_length(&[], 64), 0);
    }

    #[test]
    fn a_shorter_datagram_ends_a_run_and_a_longer_one_starts_the_next() {
        let ts = [t(1, 100), t(1, 60), t(1, 100)];
        assert_eq!(run_length(&ts, 64), 2);
        let ts = [t(1, 60), t(1, 100)];
        assert_eq!(run_length(&ts, 64), 1);
    }

    #[test]
    fn runs_stop_at_the_segment_and_byte_limits() {
        let ts: Vec<_> = (0..100).map(|_| t(1, 100)).collect();
        assert_eq!(run_length(&ts, 64), 64);
        assert_eq!(run_length(&ts, 1), 1);
        let big: Vec<_> = (0..100).map(|_| t(1, 1452)).collect();
        assert_eq!(run_length(&big, 64), MAX_BATCH_BYTES / 1452);
    }

    #[test]
    fn received_buffers_are_cut_at_the_stride() {
        let buf = [1u8; 10];
        let r = Received {
            from: SocketAddr::from(([127, 0, 0, 1], 1)),
            len: 10,
            stride: 4,
        };
        let lens: Vec<_> = r.datagrams(&buf).map(<[u8]>::len).collect();
        assert_eq!(lens, [4, 4, 2]);
    }

    /// A plain socket on 127.0.0.1, on a port the OS picks.
    async fn loopback() -> Socket {
        Socket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn glued_sends_arrive_as_the_datagrams_they_were() {
        let (a, b) = (loopback().await, loopback().await);
        let to = b.local_addr().unwrap();
        let sizes = [1000, 1000, 1000, 700, 1000, 5, 5];
        let ts: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Transmit {
                destination: to,
                contents: Bytes::from(vec![i as u8; n]),
            })
            .collect();
        let mut scratch = Vec::new();
        a.send_all(&ts, &mut scratch).await;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while got.len() < sizes.len() {
            let r = tokio::time::timeout(std::time::Duration::from_secs(5), b.recv(&mut buf))
                .await
                .expect("datagrams arrive")
                .unwrap();
            assert_eq!(r.from, a.local_addr().unwrap());
            got.extend(r.datagrams(&buf).map(<[u8]>::to_vec));
        }
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; sizes[i]], "datagram {i}");
        }
    }

    /// On Linux, a segmented send reaches a plain socket as one buffer, cut where the GRO
    /// control message says (the receive asks for nothing else).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn a_segmented_send_is_received_glued_and_cut_at_the_stride() {
        let (a, b) = (loopback().await, loopback().await);
        if a.max_segments() < 2 || !b.receives_glued() {
            eprintln!("skipped: no segmentation or receive offload on this kernel");
            return;
        }
        let to = b.local_addr().unwrap();
        let ts: Vec<_> = (0..4u8)
            .map(|i| Transmit {
                destination: to,
                contents: Bytes::from(vec![i; 300]),
            })
            .collect();
        let mut scratch = Vec::new();
        assert_eq!(a.send_all(&ts, &mut scratch).await, 1, "one segmented send");
        let mut buf = vec![0u8; 65_536];
        let r = tokio::time::timeout(std::time::Duration::from_secs(5), b.recv(&mut buf))
            .await
            .expect("the datagrams arrive")
            .unwrap();
        assert_eq!((r.len, r.stride), (1200, 300), "glued, cut every 300 bytes");
        let got: Vec<_> = r.datagrams(&buf).map(<[u8]>::to_vec).collect();
        assert_eq!(got, (0..4u8).map(|i| vec![i; 300]).collect::<Vec<_>>());
    }

    /// A socket connected to its peer sends to it and hears only from it: a third socket's
    /// datagram never reaches it.
    #[tokio::test]
    async fn a_connected_socket_hears_only_its_peer() {
        let (mut client, peer, stranger) = (loopback().await, loopback().await, loopback().await);
        let peer_addr = peer.local_addr().unwrap();
        client.connect(peer_addr).await;
        let client_addr = client.local_addr().unwrap();
        let mut scratch = Vec::new();
        let to = |destination, byte| Transmit {
            destination,
            contents: Bytes::from(vec![byte; 10]),
        };
        stranger.send_all(&[to(client_addr, 1)], &mut scratch).await;
        peer.send_all(&[to(client_addr, 2)], &mut scratch).await;
        client.send_all(&[to(peer_addr, 3)], &mut scratch).await;
        let mut buf = vec![0u8; 65_536];
        let wait = std::time::Duration::from_secs(5);
        let r = tokio::time::timeout(wait, peer.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.from, &buf[..r.len]), (client_addr, &[3u8; 10][..]));
        let r = tokio::time::timeout(wait, client.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.from, &buf[..r.len]), (peer_addr, &[2u8; 10][..]));
        // The stranger's datagram was sent first and would have come first.
        let err = client.try_recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// The peek tells whether a datagram waits and leaves it there.
    #[tokio::test]
    async fn a_peek_finds_a_waiting_datagram_and_leaves_it() {
        let (a, b) = (loopback().await, loopback().await);
        assert!(!b.has_datagram(), "nothing sent yet");
        let t = Transmit {
            destination: b.local_addr().unwrap(),
            contents: Bytes::from_static(b"ping"),
        };
        a.send_all(&[t], &mut Vec::new()).await;
        b.readable().await.unwrap();
        assert!(b.has_datagram());
        assert!(b.has_datagram(), "a peek takes nothing");
        let mut buf = vec![0u8; 65_536];
        let r = b.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"ping");
        assert!(!b.has_datagram());
    }
}
