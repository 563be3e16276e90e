//! hawser-sim: a deterministic simulated network for hawser's sans-IO endpoints.
//!
//! [`SimNet`] joins any number of [`DatagramEndpoint`]s, each at a fake address (use `10.x` or
//! `127.0.0.x`; nothing ever touches a socket), on a virtual clock. Every directed link has its
//! own [`FaultInjector`] seeded from the net's seed and the two addresses (smoltcp netsim style),
//! a latency, and counters. Same seed, same endpoints, same calls: the same run, bit for bit.
//!
//! # Organization
//! - [`SimNet`]: endpoints, the clock, links, the run loop.
//! - [`cluster::Cluster`]: whole nodes (`hawser_proto::node::Engine`s) with connections,
//!   datagrams, partitions, crashes and restarts, on the same kind of clock.
//! - [`seed`], [`seeds`], [`for_each_seed`], [`SeedGuard`], [`link_seed`]: where seeds come from; a panicking test
//!   prints `HAWSER_SEED=<seed> to replay`, and `HAWSER_SEED` replays it.
//! - [`LinkStats`], [`NetStats`], [`TraceEvent`]: what happened.
//!
//! # The run loop
//! [`SimNet::step`] jumps the clock to the earliest event (a datagram's arrival or an endpoint's
//! [`poll_timeout`](DatagramEndpoint::poll_timeout)), delivers every datagram due by then in
//! (arrival time, send order), then calls `handle_timeout` on every endpoint whose deadline has
//! come, in (deadline, address) order. After each call into an endpoint the net drains its `poll_transmit`
//! onto the links. [`SimNet::with`] does the same for an application command.
//!
//! ```
//! use std::collections::VecDeque;
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use hawser_proto::{DatagramEndpoint, Transmit};
//! use hawser_sim::SimNet;
//!
//! /// Echoes every datagram back.
//! #[derive(Default)]
//! struct Echo { out: VecDeque<Transmit>, heard: usize }
//! impl DatagramEndpoint for Echo {
//!     fn handle_datagram(&mut self, _: Instant, from: SocketAddr, d: &[u8]) {
//!         self.heard += 1;
//!         self.out.push_back(Transmit { destination: from, contents: d.to_vec().into() });
//!     }
//!     fn handle_timeout(&mut self, _: Instant) {}
//!     fn poll_transmit(&mut self) -> Option<Transmit> { self.out.pop_front() }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//! }
//!
//! let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
//! let mut net = SimNet::new(hawser_sim::seed());
//! net.add(b, Echo::default()).unwrap();
//! net.add(a, Echo::default()).unwrap();
//! net.inject(a, b, "ping".into()); // as if `a` had sent it; the two now echo forever
//! net.run_for(Duration::from_millis(10)); // 1 ms per hop by default
//! assert_eq!(net.endpoint::<Echo>(b).unwrap().heard, 5);
//! ```

pub mod cluster;
mod endpoint;
mod link;
mod net;
mod seed;
#[cfg(test)]
mod tests;

pub use endpoint::SimError;
pub use hawser_proto::fault::{
    message_hook, FaultConfig, FaultInjector, FaultStats, Hook, Verdict,
};
pub use hawser_proto::DatagramEndpoint;
pub use link::{LinkStats, NetStats, TraceEvent, TraceKind};
pub use net::SimNet;
pub use seed::{
    for_each_seed, link_seed, parse_seed, seed, seeds, SeedGuard, DEFAULT_SEED, SEEDS_ENV, SEED_ENV,
};

use std::net::{Ipv4Addr, SocketAddr};

/// A fake address for the `i`-th simulated node: `10.a.b.c:7000` with `a.b.c` the low 24 bits
/// of `i + 1` (so `fake_addr(0)` is `10.0.0.1:7000`). Never a real host: for the simulator only.
pub fn fake_addr(i: u32) -> SocketAddr {
    let n = i.wrapping_add(1) & 0x00FF_FFFF;
    let [_, a, b, c] = n.to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, a, b, c), 7000))
}
