//! The boundary every sans-IO datagram endpoint shares with its driver.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

/// One datagram the driver must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram's bytes.
    pub contents: Bytes,
}

/// A sans-IO endpoint that speaks datagrams: the driver (a tokio task, or the simulator) feeds it
/// received datagrams and timeouts, and drains what it wants sent.
///
/// # The run loop
/// After any call that changes state (`handle_datagram`, `handle_timeout`, or an application
/// command on the concrete type), drain [`poll_transmit`](Self::poll_transmit) until it returns
/// `None`, then read [`poll_timeout`](Self::poll_timeout) and call
/// [`handle_timeout`](Self::handle_timeout) once that instant has passed. An early or extra call
/// to `handle_timeout` does nothing harmful. A `now` earlier than one already seen is treated as
/// the latest one seen.
pub trait DatagramEndpoint {
    /// Feeds one datagram received from `from` at `now`. Malformed or unexpected input is
    /// dropped and counted, never a panic.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);
    /// Advances timers to `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, if any.
    #[must_use]
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// The earliest instant at which `handle_timeout` has work to do, if any.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
}
