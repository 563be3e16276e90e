//! A tokio UDP socket that injects faults: the sans-IO [`FaultInjector`] of `hawser-proto`,
//! applied to real traffic.
//!
//! # Organization
//! - [`FaultySocket`] wraps a [`UdpSocket`] with one injector for what it sends and one for what
//!   it receives, each seeded on its own. Its methods take `&self` and it is cheap to clone (the
//!   clones share the socket and the injectors), so one driver task can send while another
//!   receives, and a test can keep a clone to change faults or read [`FaultySocketStats`].
//! - Faults, hooks and stats are those of [`hawser_proto::fault`], re-exported here.
//!
//! # Delays without tasks
//! Delayed datagrams wait in two bounded queues inside the socket (at most [`MAX_QUEUED`] each;
//! beyond that they are dropped and counted as `overflowed`). No task is spawned: a delayed
//! outbound datagram leaves during a later [`send_to`](FaultySocket::send_to) or while a
//! [`recv_from`](FaultySocket::recv_from) is waiting, and a delayed inbound one is returned by
//! `recv_from` once due. So a driver that always has a `recv_from` pending (as every hawser
//! driver does) keeps delayed traffic moving; once the socket is dropped, nothing runs, and
//! whatever was still queued is lost, as on a network.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{ToSocketAddrs, UdpSocket};
use tokio::sync::Notify;

pub use hawser_proto::fault::{
    message_hook, FaultConfig, FaultConfigError, FaultInjector, FaultStats, Hook, Verdict,
};
use hawser_proto::wire::Codec;

/// The most datagrams each direction's delay queue holds.
pub const MAX_QUEUED: usize = 4096;

/// How soon a waiting `recv_from` retries sending a delayed datagram the socket refused.
const RETRY_DELAY: Duration = Duration::from_millis(1);

/// A UDP socket that applies seeded faults to what it sends and what it receives.
///
/// ```
/// use std::time::Duration;
/// use hawser_net::fault_socket::{FaultConfig, FaultySocket};
/// use hawser_proto::wire::Codec;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let a = FaultySocket::bind("127.0.0.1:0", Codec::Binary, 7).await?;
/// let b = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
/// a.set_outbound(FaultConfig::drop_all());
/// a.send_to(b"lost", b.local_addr()?).await?; // reported sent, never arrives
/// a.set_outbound(FaultConfig::none());
/// a.send_to(b"kept", b.local_addr()?).await?;
/// let mut buf = [0; 16];
/// let (n, _) = b.recv_from(&mut buf).await?;
/// assert_eq!(&buf[..n], b"kept");
/// assert_eq!(a.stats().outbound.dropped, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FaultySocket {
    inner: Arc<Inner>,
}

/// What a [`FaultySocket`] has done, per direction.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct FaultySocketStats {
    /// What the outbound injector did to datagrams sent.
    pub outbound: FaultStats,
    /// What the inbound injector did to datagrams received.
    pub inbound: FaultStats,
    /// Delayed datagrams dropped because their queue was full ([`MAX_QUEUED`]).
    pub overflowed: u64,
}

struct Inner {
    socket: UdpSocket,
    state: Mutex<State>,
    /// Wakes a waiting `recv_from` when `send_to` queues a delayed datagram, so it can arm a
    /// timer for it.
    queued: Notify,
}

struct State {
    outbound: FaultInjector,
    inbound: FaultInjector,
    /// Delayed datagrams to send: `peer` is the destination.
    to_send: BinaryHeap<Reverse<Queued>>,
    /// Received datagrams, due now or later: `peer` is the source.
    received: BinaryHeap<Reverse<Queued>>,
    next_id: u64,
    overflowed: u64,
    /// Scratch for the injectors' output.
    out: Vec<(Instant, Bytes)>,
}

/// A datagram waiting for its time, ordered by (time, arrival order).
struct Queued {
    at: Instant,
    id: u64,
    peer: SocketAddr,
    bytes: Bytes,
}

impl FaultySocket {
    /// Binds a UDP socket at `addr` with no faults yet. `codec` lets the injectors recognize
    /// Data messages (for payload damage); `seed` seeds the outbound injector, and the inbound
    /// one derives its own seed from it.
    ///
    /// # Errors
    /// The OS's bind error.
    pub async fn bind<A: ToSocketAddrs>(addr: A, codec: Codec, seed: u64) -> io::Result<Self> {
        Ok(FaultySocket::from_socket(
            UdpSocket::bind(addr).await?,
            codec,
            seed,
        ))
    }

    /// Wraps an already bound socket (see [`bind`](Self::bind) for `codec` and `seed`),
    /// enlarging its kernel buffers as hawser does for plain sockets
    /// ([`SOCKET_BUFFER_BYTES`](crate::lsp::SOCKET_BUFFER_BYTES)).
    pub fn from_socket(socket: UdpSocket, codec: Codec, seed: u64) -> Self {
        crate::lsp::tune_buffers(&socket);
        let state = State {
            outbound: FaultInjector::new(FaultConfig::none(), codec, seed),
            inbound: FaultInjector::new(FaultConfig::none(), codec, inbound_seed(seed)),
            to_send: BinaryHeap::new(),
            received: BinaryHeap::new(),
            next_id: 0,
            overflowed: 0,
            out: Vec::new(),
        };
        FaultySocket {
            inner: Arc::new(Inner {
                socket,
                state: Mutex::new(state),
                queued: Notify::new(),
            }),
        }
    }

    /// The local address.
    ///
    /// # Errors
    /// The OS's error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.socket.local_addr()
    }

    /// Sets the faults of datagrams sent from now on.
    pub fn set_outbound(&self, config: FaultConfig) {
        self.state().outbound.set_config(config);
    }

    /// Sets the faults of datagrams received from now on.
    pub fn set_inbound(&self, config: FaultConfig) {
        self.state().inbound.set_config(config);
    }

    /// Installs (or removes) the hook that sees every datagram sent.
    pub fn set_outbound_hook(&self, hook: Option<Hook>) {
        self.state().outbound.set_hook(hook);
    }

    /// Installs (or removes) the hook that sees every datagram received.
    pub fn set_inbound_hook(&self, hook: Option<Hook>) {
        self.state().inbound.set_hook(hook);
    }

    /// The counters so far.
    pub fn stats(&self) -> FaultySocketStats {
        let state = self.state();
        FaultySocketStats {
            outbound: state.outbound.stats(),
            inbound: state.inbound.stats(),
            overflowed: state.overflowed,
        }
    }

    /// Sends `buf` to `to` through the outbound faults, and first any delayed datagram now due.
    /// Returns `buf.len()` whether the datagram was sent, dropped or delayed (as a lossy network
    /// would).
    ///
    /// # Errors
    /// The OS's error sending a copy due at once.
    ///
    /// # Cancel safety
    /// Not cancel safe: if cancelled while a copy waits for the socket to become writable, that
    /// copy is lost, as if the network had dropped it. The socket's state stays consistent.
    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let now = now();
        let mut now_copies = Vec::new();
        let queued_any = {
            let mut state = self.state();
            let mut out = std::mem::take(&mut state.out);
            state
                .outbound
                .process(now, Bytes::copy_from_slice(buf), &mut out);
            let mut queued_any = false;
            for (at, bytes) in out.drain(..) {
                if at <= now {
                    now_copies.push(bytes);
                } else {
                    queued_any |= state.enqueue_to_send(at, to, bytes);
                }
            }
            state.out = out;
            queued_any
        };
        if queued_any {
            self.inner.queued.notify_waiters();
        }
        self.send_due(now);
        for bytes in now_copies {
            self.inner.socket.send_to(&bytes, to).await?;
        }
        Ok(buf.len())
    }

    /// Receives the next datagram that passed the inbound faults into `buf` (truncated to its
    /// length, as UDP does), with its source. While waiting it also sends delayed outbound
    /// datagrams as they come due.
    ///
    /// # Errors
    /// The OS's receive error.
    ///
    /// # Cancel safety
    /// Cancel safe: a datagram that arrived is kept inside the socket, never in the future, so
    /// dropping the future loses nothing and a later call returns it.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            // Registered before looking at the queues, so a datagram queued in between wakes us.
            let mut queued = pin!(self.inner.queued.notified());
            queued.as_mut().enable();
            let now = now();
            self.send_due(now);
            let (ready, deadline) = {
                let mut state = self.state();
                let ready = state.pop_due(now);
                (ready, state.next_deadline())
            };
            if let Some(datagram) = ready {
                let n = datagram.bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&datagram.bytes[..n]);
                return Ok((n, datagram.peer));
            }
            // At least 1 ms ahead: a datagram put back because the socket was not writable
            // stays due, and must not make this loop spin.
            let wake_at = deadline.unwrap_or(now).max(now + RETRY_DELAY);
            let sleep_until = tokio::time::Instant::from_std(wake_at);
            tokio::select! {
                received = self.inner.socket.recv_from(buf) => {
                    let (n, from) = received?;
                    self.state().receive(now_after(now), from, &buf[..n]);
                }
                () = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {}
                () = &mut queued => {}
            }
        }
    }

    /// Sends, without waiting, every delayed outbound datagram due by `now`. One that would
    /// block goes back to the queue; other errors lose it (logged), as a network would.
    fn send_due(&self, now: Instant) {
        loop {
            let Some(datagram) = self.state().pop_due_to_send(now) else {
                return;
            };
            match self
                .inner
                .socket
                .try_send_to(&datagram.bytes, datagram.peer)
            {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.state().to_send.push(Reverse(datagram));
                    return;
                }
                Err(e) => {
                    tracing::debug!(peer = %datagram.peer, error = %e, "delayed datagram lost");
                }
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while locked can only come from a user hook; the state is still coherent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for FaultySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultySocket")
            .field("local_addr", &self.local_addr().ok())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl State {
    /// Queues a delayed outbound datagram; false if the queue was full.
    fn enqueue_to_send(&mut self, at: Instant, peer: SocketAddr, bytes: Bytes) -> bool {
        if self.to_send.len() >= MAX_QUEUED {
            self.overflowed += 1;
            return false;
        }
        let id = self.next_id();
        self.to_send.push(Reverse(Queued {
            at,
            id,
            peer,
            bytes,
        }));
        true
    }

    /// Runs a received datagram through the inbound faults into the receive queue.
    fn receive(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let mut out = std::mem::take(&mut self.out);
        self.inbound
            .process(now, Bytes::copy_from_slice(datagram), &mut out);
        for (at, bytes) in out.drain(..) {
            if self.received.len() >= MAX_QUEUED {
                self.overflowed += 1;
                continue;
            }
            let id = self.next_id();
            self.received.push(Reverse(Queued {
                at,
                id,
                peer: from,
                bytes,
            }));
        }
        self.out = out;
    }

    fn pop_due(&mut self, now: Instant) -> Option<Queued> {
        pop_if_due(&mut self.received, now)
    }

    fn pop_due_to_send(&mut self, now: Instant) -> Option<Queued> {
        pop_if_due(&mut self.to_send, now)
    }

    /// When the next queued datagram (either way) comes due.
    fn next_deadline(&self) -> Option<Instant> {
        let next = |q: &BinaryHeap<Reverse<Queued>>| q.peek().map(|Reverse(d)| d.at);
        match (next(&self.to_send), next(&self.received)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

fn pop_if_due(queue: &mut BinaryHeap<Reverse<Queued>>, now: Instant) -> Option<Queued> {
    if queue.peek().is_some_and(|Reverse(d)| d.at <= now) {
        queue.pop().map(|Reverse(d)| d)
    } else {
        None
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.id).cmp(&(other.at, other.id))
    }
}

/// The present, on tokio's clock (so paused test time applies).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The present, never earlier than `earlier`.
fn now_after(earlier: Instant) -> Instant {
    now().max(earlier)
}

/// The inbound injector's seed: a SplitMix64 step away from the outbound one.
fn inbound_seed(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
