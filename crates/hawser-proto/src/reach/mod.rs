//! Who is alive and which address works: leases, existence × reachability, flooded events.
//!
//! The model is Kache's Rope network layer (`docs/reachability.md` has the long version):
//! - **Peer liveness is a lease.** A peer floods a `ticktock` saying "alive for the next L";
//!   `alive_until = receipt + L`. It renews every L / `renew_divisor`, and early (at most once
//!   per [`WELCOME_GAP`]) when it sees a peer come alive, so that a newcomer hears of everyone
//!   quickly. L is fixed, or adaptive: it grows with the peer's continuous uptime
//!   ([`LeasePolicy`]).
//! - **Each address of a peer has two independent dimensions.** *Existence*: `last_found` and
//!   `last_dismiss`, stamps of the peer's own logical clock carried by its `found`/`down` events
//!   (and restated by its ticktocks); the address exists iff `last_found > last_dismiss`.
//!   *Reachability*: a lease renewed by successful traffic over the address. An address can be
//!   reachable and not (yet) exist, or exist and be unreachable.
//! - **Events are flooded.** Each event carries its origin and the origin's stamp; each node
//!   applies an unseen event and forwards it to its neighbours but the sender, de-duplicating
//!   with a bounded, ageing seen-cache and bounded by a hop limit.
//!
//! # Timestamps
//! There is no global clock. Every event is stamped by its origin with a [`Stamp`]:
//! `(incarnation, seq)`, where `seq` counts the origin's events (1, 2, ...) and `incarnation`
//! is given by the driver at start and must grow across restarts (e.g. Unix milliseconds at
//! start, or a persisted counter). Existence stamps are only compared with stamps of the same
//! origin. Local leases use the receiver's `now`, never the sender's.
//!
//! # Organization
//! - [`Reachability`]: the sans-IO state machine a node drives.
//! - [`Config`], [`LeasePolicy`], [`AdaptiveLease`]: settings, each bound documented.
//! - [`PeerEvent`], [`AppEvent`], [`Outgoing`]: what comes out.
//! - [`PeerSnapshot`], [`AddressSnapshot`], [`ReachStats`]: what can be looked at.
//! - [`ConfigError`], [`AddressError`], [`PublishError`]: what can go wrong.

mod engine;
mod flood;
mod lease;
mod presence;
mod table;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

pub use crate::node::NodeId;
pub use crate::wire::reach::Stamp;
pub use engine::Reachability;
pub use presence::{AdaptiveLease, LeasePolicy, WELCOME_GAP};
pub use table::{AddressSnapshot, PeerEvent, PeerSnapshot};

use crate::wire::reach::{MAX_ADDRESSES, MAX_APP_PAYLOAD};

/// One arbitrary origin for the unit tests' clocks.
#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests need one arbitrary origin
pub(crate) fn test_origin() -> std::time::Instant {
    std::time::Instant::now()
}

/// Settings of a [`Reachability`] engine. Every table and queue is bounded by one of them.
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This run's incarnation: must grow across restarts of the same node id (e.g. Unix
    /// milliseconds at start). Default 0.
    pub incarnation: u64,
    /// The lease this node announces. Default: fixed 10 s.
    pub lease: LeasePolicy,
    /// Renew every lease / `renew_divisor` (at least 2). Default 3.
    pub renew_divisor: u32,
    /// How long an address stays reachable after traffic over it succeeded. Must exceed the
    /// longest renewal interval (max lease / `renew_divisor`), or neighbours flap. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub reachable_for: Duration,
    /// Longer leases announced by peers are cut to this. Default 1 hour.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub max_accepted_lease: Duration,
    /// Events are forwarded while they have made fewer than this many hops. Default 16.
    pub max_hops: u8,
    /// How long the seen-cache remembers an event id. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub seen_ttl: Duration,
    /// Most ids in the seen-cache; the oldest go first. Default 65,536.
    pub max_seen: usize,
    /// Most peers in the table. Default 1,024.
    pub max_peers: usize,
    /// Most addresses kept per peer. Default 16.
    pub max_addresses_per_peer: usize,
    /// Most neighbours (direct connections events are flooded over). Default 256.
    pub max_neighbours: usize,
    /// Most addresses of our own (at most 32, what a ticktock can list). Default 16.
    pub max_local_addresses: usize,
    /// Most [`PeerEvent`]s, and separately [`AppEvent`]s, waiting to be polled; the oldest are
    /// dropped (and counted) beyond it. Default 4,096.
    pub max_pending_events: usize,
    /// Most [`Outgoing`] waiting to be polled; new ones are dropped (and counted) beyond it.
    /// Default 65,536.
    pub max_outgoing: usize,
    /// Largest application payload [`Reachability::publish`] accepts (at most 16 KiB).
    /// Default 1,024.
    pub max_app_payload: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            incarnation: 0,
            lease: LeasePolicy::default(),
            renew_divisor: 3,
            reachable_for: Duration::from_secs(30),
            max_accepted_lease: Duration::from_secs(3600),
            max_hops: 16,
            seen_ttl: Duration::from_secs(60),
            max_seen: 65_536,
            max_peers: 1024,
            max_addresses_per_peer: 16,
            max_neighbours: 256,
            max_local_addresses: 16,
            max_pending_events: 4096,
            max_outgoing: 65_536,
            max_app_payload: 1024,
        }
    }
}

impl Config {
    /// Checks every setting.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero_durations = [
            ("lease", self.lease.min_lease()),
            ("reachable_for", self.reachable_for),
            ("seen_ttl", self.seen_ttl),
            ("max_accepted_lease", self.max_accepted_lease),
        ];
        for (name, d) in zero_durations {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        let zero_counts = [
            ("max_hops", usize::from(self.max_hops)),
            ("max_seen", self.max_seen),
            ("max_peers", self.max_peers),
            ("max_addresses_per_peer", self.max_addresses_per_peer),
            ("max_neighbours", self.max_neighbours),
            ("max_local_addresses", self.max_local_addresses),
            ("max_pending_events", self.max_pending_events),
            ("max_outgoing", self.max_outgoing),
        ];
        for (name, n) in zero_counts {
            if n == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let too_large = [
            (
                "max_local_addresses",
                self.max_local_addresses,
                MAX_ADDRESSES,
            ),
            ("max_app_payload", self.max_app_payload, MAX_APP_PAYLOAD),
        ];
        for (name, n, max) in too_large {
            if n > max {
                return Err(ConfigError::TooLarge { name, max });
            }
        }
        if self.renew_divisor < 2 {
            return Err(ConfigError::Inconsistent(
                "renew_divisor must be at least 2 to renew before expiry",
            ));
        }
        if let LeasePolicy::Adaptive(a) = self.lease {
            if a.min > a.max {
                return Err(ConfigError::Inconsistent("adaptive lease min exceeds max"));
            }
        }
        if self.reachable_for <= self.lease.max_lease() / self.renew_divisor {
            return Err(ConfigError::Inconsistent(
                "reachable_for must exceed the longest renewal interval",
            ));
        }
        Ok(())
    }
}

/// An invalid [`Config`] setting, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting that must be positive is zero.
    #[error("setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// A setting is above its maximum.
    #[error("setting `{name}` must be at most {max}")]
    TooLarge {
        /// The setting's name.
        name: &'static str,
        /// Its maximum.
        max: usize,
    },
    /// Settings contradict each other.
    #[error("inconsistent settings: {0}")]
    Inconsistent(&'static str),
}

/// Why [`Reachability::add_local_address`] or
/// [`remove_local_address`](Reachability::remove_local_address) refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// `Config::max_local_addresses` addresses are already held.
    #[error("already {0} local addresses")]
    TooMany(usize),
    /// The address is not one of ours.
    #[error("{0} is not a local address")]
    Unknown(SocketAddr),
}

/// Why [`Reachability::publish`] refused an event. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload exceeds `Config::max_app_payload`.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// What identifies one flooded event: its origin and the origin's stamp for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId {
    /// The node that created the event.
    pub origin: NodeId,
    /// The origin's logical time of creation.
    pub stamp: Stamp,
}

/// An application event received through the flood (never our own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppEvent {
    /// Origin and stamp.
    pub id: EventId,
    /// The application's kind number.
    pub kind: u16,
    /// The payload.
    pub payload: Bytes,
}

/// One encoded event the driver must send to a neighbour (inside its own framing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The neighbour.
    pub peer: NodeId,
    /// The address to reach it at (the one it is connected through).
    pub addr: SocketAddr,
    /// The event, encoded by [`wire::reach`](crate::wire::reach).
    pub payload: Bytes,
}

/// Counters of a [`Reachability`] engine.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct ReachStats {
    /// Event payloads handed to `handle_event`.
    pub received: u64,
    /// Payloads that did not decode (dropped).
    pub malformed: u64,
    /// Events already seen (dropped).
    pub duplicates: u64,
    /// Our own events that came back (applied, not forwarded).
    pub own_returned: u64,
    /// Events of others applied.
    pub applied: u64,
    /// Applied events not forwarded because of the hop limit.
    pub hop_limited: u64,
    /// Events created here.
    pub originated: u64,
    /// Copies queued for neighbours (originated and forwarded).
    pub sent: u64,
    /// Of `sent`, copies of others' events.
    pub forwarded: u64,
    /// Copies dropped because `max_outgoing` were waiting.
    pub outgoing_dropped: u64,
    /// Peer and app events dropped because `max_pending_events` were waiting.
    pub events_dropped: u64,
    /// Peers or addresses refused because a table was full of live entries.
    pub table_refused: u64,
    /// Peers evicted to make room.
    pub table_evicted: u64,
    /// Ids the seen-cache forgot early because it was full.
    pub seen_evicted: u64,
    /// Neighbours refused because `max_neighbours` were connected.
    pub neighbours_refused: u64,
}
