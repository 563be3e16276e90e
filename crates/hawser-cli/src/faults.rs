//! Binding a socket, with or without injected faults, and reading its fault counters later.
//!
//! Everything the CLI needs from [`hawser_net::fault_socket::FaultySocket`] goes through here.

use std::io;
use std::net::SocketAddr;

use hawser_net::fault_socket::FaultySocket;
use hawser_net::lsp::{Codec, Socket};
use hawser_proto::fault::{FaultConfig, FaultStats};

/// The faults to inject on one socket.
#[derive(Clone, Debug)]
pub struct SocketFaults {
    /// Applied to every datagram this socket sends.
    pub outbound: FaultConfig,
    /// Applied to every datagram this socket receives.
    pub inbound: FaultConfig,
    /// Seed of the outbound injector (the inbound one derives its own from it).
    pub seed: u64,
}

/// Reads the fault counters of a socket after it was handed to a client or server.
#[derive(Clone, Debug)]
pub struct FaultProbe(FaultySocket);

/// The fault counters of one socket, per direction.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultCounts {
    /// What the outbound injector did.
    pub outbound: FaultStats,
    /// What the inbound injector did.
    pub inbound: FaultStats,
    /// Delayed datagrams dropped because the socket's delay queue was full.
    pub overflowed: u64,
}

impl FaultProbe {
    /// The counters so far.
    pub fn counts(&self) -> FaultCounts {
        let s = self.0.stats();
        FaultCounts {
            outbound: s.outbound,
            inbound: s.inbound,
            overflowed: s.overflowed,
        }
    }
}

/// Binds a UDP socket at `addr`; with `faults`, one that injects them (the codec lets the
/// injectors recognize Data messages). Either way its kernel buffers are enlarged to
/// `hawser_net::lsp::SOCKET_BUFFER_BYTES`, as hawser does for its own plain sockets: with the OS default
/// (about 200 KiB on Linux) a full window overflows the receiver's buffer.
///
/// # Errors
/// The OS's bind error.
pub async fn bind(
    addr: SocketAddr,
    codec: Codec,
    faults: Option<SocketFaults>,
) -> io::Result<(Socket, Option<FaultProbe>)> {
    let Some(faults) = faults else {
        return Ok((Socket::bind(addr).await?, None));
    };
    // `from_socket` enlarges the kernel buffers, as hawser does for its plain sockets.
    let udp = tokio::net::UdpSocket::bind(addr).await?;
    let socket = FaultySocket::from_socket(udp, codec, faults.seed);
    socket.set_outbound(faults.outbound);
    socket.set_inbound(faults.inbound);
    let probe = FaultProbe(socket.clone());
    Ok((Socket::from(socket), Some(probe)))
}

impl FaultCounts {
    /// Adds `other` into `self`.
    pub fn accumulate(&mut self, other: &FaultCounts) {
        add(&mut self.outbound, &other.outbound);
        add(&mut self.inbound, &other.inbound);
        self.overflowed += other.overflowed;
    }

    /// Both directions summed.
    pub fn total(&self) -> FaultStats {
        let mut t = self.outbound;
        add(&mut t, &self.inbound);
        t
    }
}

fn add(into: &mut FaultStats, other: &FaultStats) {
    into.seen += other.seen;
    into.dropped += other.dropped;
    into.delayed += other.delayed;
    into.duplicated += other.duplicated;
    into.reordered += other.reordered;
    into.corrupted += other.corrupted;
    into.shortened += other.shortened;
    into.lengthened += other.lengthened;
    into.hooked_drops += other.hooked_drops;
}
