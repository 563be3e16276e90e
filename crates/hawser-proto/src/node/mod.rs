//! The node layer's sans-IO parts: who the nodes are, and how messages wait to be sent to them.
//!
//! A distributed application (a Paxos or Raft node, a replicated store) addresses its peers by
//! [`NodeId`] only. This module holds everything about that layer that needs no socket and no
//! clock; the tokio layer (`hawser_net::node`) moves the bytes.
//!
//! # Organization
//! - [`NodeId`], [`Role`], [`Group`] and [`Delivery`]: the vocabulary.
//! - [`Membership`] and [`Member`]: the configuration of the cluster, bounded by
//!   [`MAX_NODES`], changed at run time with [`MembershipChange`].
//! - [`SendQueue`]: one destination's bounded outgoing queue (count, bytes, and a deadline after
//!   which a message is dropped, counted, when it reaches the head). Time is an argument.
//! - [`Backoff`]: the capped exponential reconnect schedule.
//! - [`PeerStats`]: the counters kept per destination.
//! - [`Engine`] ([`engine`]): the whole node layer (queues, connections, datagrams, requests,
//!   reachability) as one sans-IO state machine.
//!
//! The frame formats (hello, datagram envelope) live apart, in [`crate::wire::node`].

mod backoff;
pub mod engine;
mod membership;
mod queue;
mod stats;

use std::fmt;

pub use backoff::Backoff;
pub use engine::{Engine, EngineConfig, Event, Transmit};
pub use membership::{
    Member, Membership, MembershipChange, MembershipError, MAX_ADDRS_PER_NODE, MAX_NODES,
};
pub use queue::{FrameBatch, QueueFull, QueueLimits, SendQueue, GROW_BY, RETAINED_BUFFER};
pub use stats::PeerStats;

/// A node's identity in the cluster: a plain number chosen by the application (PhxPaxos packs
/// the IP address and port into one; any unique value works).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node#{}", self.0)
    }
}

impl From<u64> for NodeId {
    fn from(v: u64) -> NodeId {
        NodeId(v)
    }
}

/// What part a node plays, deciding which broadcast [`Group`]s reach it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// A follower: receives what members learn, takes no part in decisions.
    Follower,
    /// A full member (a voter, in consensus terms). The default.
    #[default]
    Member,
    /// A temporary node (being added, or a learner catching up).
    Temporary,
}

/// Which nodes a broadcast goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// Every node in the membership.
    All,
    /// Nodes whose role is [`Role::Follower`].
    Followers,
    /// Nodes whose role is [`Role::Member`].
    Members,
    /// Nodes whose role is [`Role::Temporary`].
    Temporary,
}

impl Group {
    /// Whether a node with this role belongs to the group.
    pub fn includes(self, role: Role) -> bool {
        match self {
            Group::All => true,
            Group::Followers => role == Role::Follower,
            Group::Members => role == Role::Member,
            Group::Temporary => role == Role::Temporary,
        }
    }
}

/// How a message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// In order per sender, over a connection (TCP, or LSP when so configured); queued while the
    /// destination is unreachable, up to the queue's deadline.
    Reliable,
    /// One datagram, fire and forget: may be lost, duplicated or reordered by the network.
    Unreliable,
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Delivery::Reliable => "reliable",
            Delivery::Unreliable => "unreliable",
        })
    }
}
