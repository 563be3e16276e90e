//! The datagram socket under an LSP endpoint: a plain tokio UDP socket, or one that injects
//! faults (for tests, demos and the CLI's `--drop-percent`).

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

use crate::fault_socket::FaultySocket;

/// A UDP socket for an LSP client or server.
#[derive(Debug)]
pub enum Socket {
    /// A plain socket.
    Plain(UdpSocket),
    /// A socket that drops, delays, duplicates or corrupts datagrams as configured.
    Faulty(FaultySocket),
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
        match self {
            Socket::Plain(s) => s.local_addr(),
            Socket::Faulty(s) => s.local_addr(),
        }
    }

    pub(crate) async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.send_to(buf, to).await,
            Socket::Faulty(s) => s.send_to(buf, to).await,
        }
    }

    /// A datagram already waiting, without waiting: `WouldBlock` when there is none (always,
    /// for a fault-injecting socket, whose `recv_from` does the bookkeeping of delays).
    pub(crate) fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Socket::Plain(s) => s.try_recv_from(buf),
            Socket::Faulty(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Sends at once if the socket has room, else waits.
    pub(crate) async fn send_now(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        if let Socket::Plain(s) = self {
            match s.try_send_to(buf, to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
        self.send_to(buf, to).await
    }

    /// Cancel safe: a datagram is either returned or left in the socket.
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Socket::Plain(s) => s.recv_from(buf).await,
            Socket::Faulty(s) => s.recv_from(buf).await,
        }
    }
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
    /// Wraps a plain socket, enlarging its kernel buffers (see [`SOCKET_BUFFER_BYTES`]).
    fn from(s: UdpSocket) -> Socket {
        tune_buffers(&s);
        Socket::Plain(s)
    }
}

impl From<FaultySocket> for Socket {
    fn from(s: FaultySocket) -> Socket {
        Socket::Faulty(s)
    }
}
