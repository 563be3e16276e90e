//! Errors of the node API, one enum per operation.

use std::io;

use hawser_proto::node::{MembershipError, NodeId};

use super::config::SettingsError;

/// Why a message was not queued. Nothing was queued when it fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The destination's outgoing queue is full (by count or bytes); counted in
    /// `PeerStats::dropped_full`. For an unreliable message: the socket or the receiver's
    /// queue had no room.
    #[error("queue full for {0}")]
    QueueFull(NodeId),
    /// The destination is not in the membership.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The payload is above the limit of its delivery (frame, datagram or LSP payload).
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// The node has been stopped.
    #[error("node stopped")]
    Stopped,
    /// The destination has no address for this delivery (no `addrs`, or no `lsp_addr` when
    /// reliable delivery to it goes over LSP).
    #[error("no address for {0}")]
    NoAddress(NodeId),
    /// An alive-only send (`Node::send_alive`, `Node::broadcast_alive`) skipped a destination
    /// whose reachability lease does not hold (dead, or not heard from yet).
    #[error("{0} is not alive")]
    NotAlive(NodeId),
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The membership is invalid (too many nodes or addresses).
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The default network needs a listen address (`NodeBuilder::listen`).
    #[error("no listen address given")]
    NoListenAddr,
    /// A socket could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS's error.
        source: io::Error,
    },
    /// The in-memory hub already has a running node with this id.
    #[error("{0} is already running on this hub")]
    DuplicateId(NodeId),
}
