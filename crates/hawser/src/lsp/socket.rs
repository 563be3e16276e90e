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
        Ok(Socket::Plain(UdpSocket::bind(addr).await?))
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

    /// Cancel safe: a datagram is either returned or left in the socket.
    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Socket::Plain(s) => s.recv_from(buf).await,
            Socket::Faulty(s) => s.recv_from(buf).await,
        }
    }
}

impl From<UdpSocket> for Socket {
    fn from(s: UdpSocket) -> Socket {
        Socket::Plain(s)
    }
}

impl From<FaultySocket> for Socket {
    fn from(s: FaultySocket) -> Socket {
        Socket::Faulty(s)
    }
}
