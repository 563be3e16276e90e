//! PLACEHOLDER (being written by the fault-injection work): replace wholesale.
#![allow(missing_docs)]
use std::{io, net::SocketAddr};
#[derive(Debug)]
pub struct FaultySocket(tokio::net::UdpSocket);
impl FaultySocket {
    pub fn local_addr(&self) -> io::Result<SocketAddr> { self.0.local_addr() }
    pub async fn send_to(&self, b: &[u8], to: SocketAddr) -> io::Result<usize> { self.0.send_to(b, to).await }
    pub async fn recv_from(&self, b: &mut [u8]) -> io::Result<(usize, SocketAddr)> { self.0.recv_from(b).await }
}
