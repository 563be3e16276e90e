//! Node messaging: send to a node id, reliably or not, broadcast to groups, with bounded queues.
//!
//! This is the layer a consensus library or a replicated store links against: it never sees
//! sockets, only [`NodeId`]s (the model is PhxPaxos's network layer).
//!
//! # Organization
//! - [`Node`], started with [`Node::builder`]: `try_send`, `send`, `broadcast`, `incoming`,
//!   `on_receive`, requests, streams, membership changes, counters, `stop`. A node runs the
//!   sans-IO node engine ([`hawser_proto::node::Engine`]: queues, connections, back-off,
//!   requests, reachability) under one lock, with one driver task for its timers, one writer
//!   task per outbound connection and one reader per inbound one: over sessions (TCP for
//!   reliable delivery, or LSP, WebSocket, `mem://` per setting) and UDP for unreliable
//!   delivery, or in-process on a [`MemoryHub`] (`NodeBuilder::in_memory`).
//! - [`Settings`]: every bound and timer, with documented defaults; [`ReachSettings`] for
//!   reachability.
//! - Security (`docs/security.md`): every reliable connection of a node not in memory is a
//!   session ([`crate::session`]): Noise-authenticated and encrypted by default
//!   ([`Settings::security`]), bound to [`Settings::identity`] and [`Settings::network_id`],
//!   with per-node identity pins ([`Settings::pins`], [`SessionError`] and
//!   `NodeStats::peer_mismatches`). Messages and reachability use the reserved protocols
//!   [`NODE_MESSAGES`] and [`NODE_REACH`], each on its own stream. With Noise, unreliable
//!   datagrams are sealed (ChaCha20-Poly1305, replay window) with a key per direction sent
//!   inside the session; a node drops (and counts) datagrams to or from a peer it has no
//!   session key for yet (`NodeStats::datagrams_without_key`, `unsealed_datagrams`).
//! - Reachability (`docs/reachability.md`): every node runs the presence protocol of
//!   [`hawser_proto::reach`] on its connections, learns peers and addresses from the flood, and
//!   exposes [`Node::peers`] (a [`PeerSnapshot`] per peer), [`Node::peer_events`] (a stream of
//!   [`PeerEvent`]s, [`Lagged`] when a consumer falls behind), and the alive-only
//!   [`Node::try_send_alive`] and [`Node::broadcast_alive`].
//! - The sans-IO parts ([`Membership`], the bounded [`SendQueue`](hawser_proto::node::SendQueue),
//!   [`Backoff`](hawser_proto::node::Backoff), [`PeerStats`]) live in [`hawser_proto::node`].
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use hawser_net::node::{Delivery, Member, MemoryHub, Node, Role};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = MemoryHub::new();
//! let members = [Member::without_addr(1, Role::Member), Member::without_addr(2, Role::Member)];
//! let a = Node::builder(1).members(members.clone()).in_memory(&hub).start().await?;
//! let b = Node::builder(2).members(members).in_memory(&hub).start().await?;
//! let mut inbox = b.incoming();
//! a.try_send(2, "hello", Delivery::Reliable)?; // never blocks
//! let msg = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await?.unwrap();
//! assert_eq!((msg.from.0, &msg.payload[..]), (1, &b"hello"[..]));
//! a.stop().await;
//! b.stop().await;
//! # Ok(())
//! # }
//! ```

// Modules, each with one job, whose `use super::` edges form no circle: leaves (`config`,
// `error`, `events`, `stats`, `room`, `route`, `rpc`, ...), then `shell` (the engine under its
// lock), `send` and `requests` (the application's commands on it), `conn` and `driver` (its
// tasks), the links (`secure` and `network`, `memory`), and `node` on top.
mod config;
mod conn;
mod counters;
mod datagram;
mod driver;
mod engine_config;
mod error;
mod events;
mod incoming;
mod memory;
mod network;
#[allow(clippy::module_inception)]
mod node;
mod requests;
mod room;
mod route;
mod rpc;
mod secure;
mod send;
mod shell;
mod stats;

pub use config::{
    OversizeDatagram, ReachSettings, ReliableTransport, RpcSettings, Settings, SettingsError,
    DEFAULT_NETWORK_ID, MAX_APP_PROTOCOLS, MAX_DATAGRAM_LIMIT, MAX_EVENT_CAPACITY,
    MAX_EXTRA_LISTENERS, MAX_PINS, MAX_STREAMS_PER_SESSION,
};
pub use error::{SendError, SessionError, StartError};
pub use events::{memory_addr, Lagged, PeerEvents};
pub use hawser_proto::node::{
    Delivery, Group, Member, Membership, MembershipChange, MembershipError, NodeId, PeerStats,
    QueueLimits, Role,
};
pub use hawser_proto::reach::{
    AdaptiveLease, AddressSnapshot, LeasePolicy, PeerEvent, PeerSnapshot, ReachStats, Stamp,
};
pub use incoming::{Incoming, IncomingQueue, IncomingSender, IncomingStream};
pub use memory::MemoryHub;
pub use node::{Node, NodeBuilder};
pub use rpc::{
    InboundRequest, InboundRequests, InboundStreams, NodeStream, Part, RequestError,
    RequestOptions, RespondError, RpcStats, ServeError, StreamError,
};
pub use secure::{
    node_protocols, NODE_MAX_STREAMS, NODE_MESSAGES, NODE_PROTOCOL_VERSION, NODE_REACH,
    NODE_SPLIT_SEND_SIZE,
};
pub use stats::{BroadcastReport, NodeStats};
