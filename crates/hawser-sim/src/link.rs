//! Links, counters and the trace: the bookkeeping half of the simulator.

use std::cmp::Ordering;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::fault::{FaultConfig, FaultInjector, FaultStats};
use hawser_proto::wire::Codec;

/// One direction between two addresses: its faults, latency and counters.
pub(crate) struct Link {
    pub(crate) faults: FaultInjector,
    /// `None`: the net's default latency.
    pub(crate) latency: Option<Duration>,
    pub(crate) partitioned: bool,
    pub(crate) stats: LinkStats,
}

impl Link {
    pub(crate) fn new(config: FaultConfig, codec: Codec, seed: u64) -> Link {
        Link {
            faults: FaultInjector::new(config, codec, seed),
            latency: None,
            partitioned: false,
            stats: LinkStats::default(),
        }
    }

    /// The counters, with the injector's own filled in.
    pub(crate) fn stats(&self) -> LinkStats {
        LinkStats {
            faults: self.faults.stats(),
            ..self.stats
        }
    }
}

/// Counters of one directed link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams sent on the link.
    pub sent: u64,
    /// Copies handed to the receiving endpoint (duplicates count twice).
    pub delivered: u64,
    /// Datagrams lost: to a fault, a hook, a partition or an isolated endpoint.
    pub dropped: u64,
    /// Copies that arrived where no endpoint was.
    pub vanished: u64,
    /// What the link's fault injector did.
    pub faults: FaultStats,
}

/// Counters of the whole net.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent, on every link.
    pub sent: u64,
    /// Copies handed to endpoints.
    pub delivered: u64,
    /// Datagrams lost to faults, hooks, partitions or isolation.
    pub dropped: u64,
    /// Copies that arrived where no endpoint was.
    pub vanished: u64,
    /// Times a run stopped early because events kept firing without simulated time advancing
    /// (an endpoint whose `poll_timeout` stays in the past, or a zero-latency loop).
    pub stalls: u64,
}

/// What happened to a datagram, in a [`TraceEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TraceKind {
    /// An endpoint sent it (or a test injected it).
    Sent,
    /// It reached its endpoint.
    Delivered,
    /// A fault, hook, partition or isolation lost it.
    Dropped,
    /// It arrived where no endpoint was.
    Vanished,
}

/// One entry of the net's trace (see [`SimNet::record_trace`](crate::SimNet::record_trace)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TraceEvent {
    /// Simulated time since the net's origin.
    pub at: Duration,
    /// What happened.
    pub kind: TraceKind,
    /// Sender.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// The datagram.
    pub bytes: Bytes,
}

/// A datagram on its way, ordered by (delivery time, send order): simultaneous arrivals keep the
/// order in which they were put on the wire.
pub(crate) struct InFlight {
    pub(crate) at: Instant,
    pub(crate) id: u64,
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) bytes: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.id).cmp(&(other.at, other.id))
    }
}
