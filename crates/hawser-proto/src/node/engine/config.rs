//! [`EngineConfig`]: every bound and timer of an [`Engine`](super::Engine), with defaults.

use std::time::Duration;

use crate::node::QueueLimits;
use crate::reach;

/// What to do with an unreliable message above [`EngineConfig::max_datagram`].
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OversizeDatagram {
    /// Refuse it with `SendError::TooLarge` (the default: nothing is silently upgraded).
    #[default]
    Refuse,
    /// Send it reliably instead (it arrives marked `Delivery::Reliable`).
    SendReliably,
}

/// Settings of an [`Engine`](super::Engine). Every map and queue it keeps is bounded by one of
/// them (or by the membership, itself bounded by `Membership::max_nodes`). The defaults are
/// those of the tokio node layer (`hawser_net::node::Settings`).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Each destination's application queue: count, bytes and the deadline after which a
    /// message is dropped (counted) at the head. Default [`QueueLimits::default`] (10,240
    /// messages, 200 MiB, 5 s).
    pub queue: QueueLimits,
    /// Largest frame body (kind byte and body) sent or accepted on a connection; a received
    /// frame above it closes the connection, counted. Also bounds reliable payloads. Default
    /// 10 MiB.
    pub max_frame: usize,
    /// Largest unreliable payload; a larger one is refused with `SendError::TooLarge`, or sent
    /// reliably, as `oversize_datagram` says. Default 4,096 bytes.
    pub max_datagram: usize,
    /// What `send` does with an unreliable payload above `max_datagram`. Default
    /// [`OversizeDatagram::Refuse`].
    pub oversize_datagram: OversizeDatagram,
    /// An outbound connection with nothing to write for this long is closed (not a loss: the
    /// next message reconnects). Default 60 s.
    pub idle_timeout: Duration,
    /// First delay after a failed connection attempt (doubling, see `Backoff`). Default 100 ms.
    pub backoff_initial: Duration,
    /// Longest delay between connection attempts. Default 5 s.
    pub backoff_max: Duration,
    /// A dial not answered within this is abandoned (closed) and counts as a failure.
    /// Default 3 s.
    pub connect_timeout: Duration,
    /// Per destination: most internal frames (reachability events, pings) waiting; beyond it
    /// the oldest is dropped, counted in `EngineStats::control_dropped`. They expire after the
    /// queue deadline too. Default 256.
    pub max_control_frames: usize,
    /// Most inbound connections held at once; beyond it `handle_accepted` refuses. Default
    /// 1,024.
    pub max_inbound_connections: usize,
    /// Most [`Event`](super::Event)s waiting to be polled; beyond it new ones are dropped,
    /// counted in `EngineStats::events_dropped` (a shell following the run loop drains them
    /// after every call, so this only bounds a shell that does not). Default 65,536.
    pub max_events: usize,
    /// Most messages in one batch handed out by `take_frames`. Default 1,024.
    pub batch_messages: usize,
    /// A batch stops growing once its payloads reach this many bytes. Default 64 KiB.
    pub batch_bytes: usize,
    /// Requests and responses.
    pub rpc: RpcConfig,
    /// Reachability (leases, address tables, the flood); `None` runs without it: no control
    /// frame is sent and `is_alive` is always `false`. Default `Some(reach::Config::default())`.
    /// Its `incarnation` must grow across restarts of the same node id: the engine reads no
    /// clock, so the shell sets it (e.g. Unix milliseconds at start).
    pub reach: Option<reach::Config>,
    /// Add nodes that reachability reports (an `AddressFound` of a node outside the
    /// membership) as `Role::Temporary` members, unless the application removed them.
    /// Default `true`.
    pub learn_peers: bool,
    /// Accept a connection from a node outside the membership, adding it as a
    /// `Role::Temporary` member at the address it announces. Default `false`.
    pub admit_unknown: bool,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            queue: QueueLimits::default(),
            max_frame: 10 * 1024 * 1024,
            max_datagram: 4096,
            oversize_datagram: OversizeDatagram::Refuse,
            idle_timeout: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            max_control_frames: 256,
            max_inbound_connections: 1024,
            max_events: 65_536,
            batch_messages: 1024,
            batch_bytes: 64 * 1024,
            rpc: RpcConfig::default(),
            reach: Some(reach::Config::default()),
            learn_peers: true,
            admit_unknown: false,
        }
    }
}

/// Settings of requests and responses. Every table is bounded by one of them.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcConfig {
    /// Deadline of a request made without one. Default 5 s.
    pub default_timeout: Duration,
    /// Largest request payload sent or served. Default 8 MiB.
    pub max_request: usize,
    /// Largest response payload sent or accepted. Default 8 MiB.
    pub max_response: usize,
    /// Most requests of this node waiting for a response, in all. Default 8,192.
    pub max_pending: usize,
    /// Most of them to one peer. Default 1,024.
    pub max_pending_per_peer: usize,
    /// Most requests from peers being served (handed out as `Event::Request`, not yet
    /// answered or expired), in all; beyond it the caller is answered `Overloaded`. Default
    /// 8,192.
    pub max_inbound: usize,
    /// Most of them from one peer. Default 1,024.
    pub max_inbound_per_peer: usize,
    /// How long after its deadline a request being served, neither answered nor cancelled,
    /// is kept before it is forgotten (counted in `RpcStats::expired`, an
    /// `Event::RequestCancelled` given): the caller sends its cancel at the deadline, and the
    /// grace lets it arrive and be counted. An answer after the deadline is refused
    /// all the same. Default 1 s.
    pub serve_grace: Duration,
}

impl Default for RpcConfig {
    fn default() -> RpcConfig {
        RpcConfig {
            default_timeout: Duration::from_secs(5),
            max_request: 8 << 20,
            max_response: 8 << 20,
            max_pending: 8192,
            max_pending_per_peer: 1024,
            max_inbound: 8192,
            max_inbound_per_peer: 1024,
            serve_grace: Duration::from_secs(1),
        }
    }
}

/// An invalid [`EngineConfig`] setting, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting that must be positive is zero.
    #[error("setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// Settings contradict each other.
    #[error("inconsistent settings: {0}")]
    Inconsistent(&'static str),
    /// The reachability settings are invalid.
    #[error("reachability: {0}")]
    Reach(#[from] reach::ConfigError),
}

impl EngineConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let counts = [
            ("queue.max_messages", self.queue.max_messages),
            ("queue.max_bytes", self.queue.max_bytes),
            ("max_frame", self.max_frame),
            ("max_control_frames", self.max_control_frames),
            ("max_events", self.max_events),
            ("batch_messages", self.batch_messages),
            ("batch_bytes", self.batch_bytes),
            ("rpc.max_pending", self.rpc.max_pending),
            ("rpc.max_pending_per_peer", self.rpc.max_pending_per_peer),
        ];
        for (name, n) in counts {
            if n == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let durations = [
            ("queue.deadline", self.queue.deadline),
            ("idle_timeout", self.idle_timeout),
            ("connect_timeout", self.connect_timeout),
            ("rpc.default_timeout", self.rpc.default_timeout),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.backoff_initial > self.backoff_max {
            return Err(ConfigError::Inconsistent(
                "backoff_initial exceeds backoff_max",
            ));
        }
        if self.rpc.max_pending_per_peer > self.rpc.max_pending {
            return Err(ConfigError::Inconsistent(
                "rpc.max_pending_per_peer exceeds rpc.max_pending",
            ));
        }
        if let Some(reach) = &self.reach {
            reach.validate()?;
        }
        Ok(())
    }
}
