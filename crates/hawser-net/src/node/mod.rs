//! Node messaging: send to a node id, reliably or not, broadcast to groups, with bounded queues.
//!
//! This is the layer a consensus library or a replicated store links against: it never sees
//! sockets, only [`NodeId`]s (the model is PhxPaxos's network layer).
//!
//! # Organization
//! - [`Node`], started with [`Node::builder`]: `try_send`, `send`, `broadcast`, `incoming`,
//!   `on_receive`, membership changes, counters, `stop`.
//! - [`Network`]: the trait a transport implements; [`DefaultNetwork`] (TCP for reliable
//!   delivery, or LSP per setting; UDP for unreliable) and [`MemoryNetwork`] (in-process, on a
//!   [`MemoryHub`]) are hawser's.
//! - [`Settings`]: every bound and timer, with documented defaults; [`ReachSettings`] for
//!   reachability.
//! - Security (`docs/security.md`): every reliable connection of [`DefaultNetwork`] is a
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

mod clock;
mod config;
mod connector;
mod core;
mod counters;
mod datagram;
mod default_network;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod incoming;
mod memory;
mod network;
#[allow(clippy::module_inception)]
mod node;
mod peer;
mod reach;
mod receive;
mod rpc;
mod secure;
mod send;
mod writer;

pub use config::{
    OversizeDatagram, ReachSettings, ReliableTransport, RpcSettings, Settings, SettingsError,
    DEFAULT_NETWORK_ID, MAX_APP_PROTOCOLS, MAX_DATAGRAM_LIMIT, MAX_EVENT_CAPACITY,
    MAX_EXTRA_LISTENERS, MAX_PINS, MAX_STREAMS_PER_SESSION,
};
pub use default_network::DefaultNetwork;
pub use error::{SendError, SessionError, StartError};
pub use hawser_proto::node::{
    Delivery, Group, Member, Membership, MembershipChange, MembershipError, NodeId, PeerStats,
    QueueLimits, Role,
};
pub use hawser_proto::reach::{
    AdaptiveLease, AddressSnapshot, LeasePolicy, PeerEvent, PeerSnapshot, ReachStats, Stamp,
};
pub use incoming::{Incoming, IncomingQueue, IncomingSender, IncomingStream};
pub use memory::{MemoryHub, MemoryNetwork};
pub use network::{BoxFuture, BroadcastReport, Network, NodeStats};
pub use node::{Node, NodeBuilder};
pub use reach::{memory_addr, Lagged, PeerEvents};
pub use rpc::{
    InboundRequest, InboundRequests, InboundStreams, NodeStream, Part, RequestError,
    RequestOptions, RespondError, RpcEngine, RpcStats, ServeError, StreamError,
};
pub use secure::{
    node_protocols, NODE_MAX_STREAMS, NODE_MESSAGES, NODE_PROTOCOL_VERSION, NODE_REACH,
    NODE_SPLIT_SEND_SIZE,
};

/// Implements [`Network`] for a wrapper holding `core: Arc<Core<_>>`.
macro_rules! network_impl {
    ($ty:ty, |$n:ident| $local_addr:expr) => {
        impl $crate::node::Network for $ty {
            fn id(&self) -> hawser_proto::node::NodeId {
                self.core.id
            }
            fn local_addr(&self) -> Option<std::net::SocketAddr> {
                let $n = self;
                $local_addr
            }
            fn membership(&self) -> hawser_proto::node::Membership {
                self.core.membership()
            }
            fn change_membership(
                &self,
                change: hawser_proto::node::MembershipChange,
            ) -> Result<(), hawser_proto::node::MembershipError> {
                self.core.change_membership(change)
            }
            fn try_send(
                &self,
                to: hawser_proto::node::NodeId,
                payload: bytes::Bytes,
                delivery: hawser_proto::node::Delivery,
            ) -> Result<(), $crate::node::SendError> {
                self.core.try_send(to, payload, delivery)
            }
            fn send(
                &self,
                to: hawser_proto::node::NodeId,
                payload: bytes::Bytes,
                delivery: hawser_proto::node::Delivery,
            ) -> $crate::node::BoxFuture<'_, Result<(), $crate::node::SendError>> {
                Box::pin(self.core.send(to, payload, delivery))
            }
            fn send_if_room(
                &self,
                to: hawser_proto::node::NodeId,
                payload: bytes::Bytes,
                delivery: hawser_proto::node::Delivery,
            ) -> Result<Result<(), $crate::node::SendError>, bytes::Bytes> {
                self.core.send_if_room(to, payload, delivery)
            }
            fn try_send_batch(
                &self,
                to: hawser_proto::node::NodeId,
                batch: &mut std::collections::VecDeque<bytes::Bytes>,
                delivery: hawser_proto::node::Delivery,
            ) -> Result<usize, $crate::node::SendError> {
                self.core.try_send_batch(to, batch, delivery)
            }
            fn send_batch<'a>(
                &'a self,
                to: hawser_proto::node::NodeId,
                batch: &'a mut std::collections::VecDeque<bytes::Bytes>,
                delivery: hawser_proto::node::Delivery,
            ) -> $crate::node::BoxFuture<'a, Result<(), $crate::node::SendError>> {
                Box::pin(self.core.send_batch(to, batch, delivery))
            }
            fn incoming(&self) -> $crate::node::IncomingStream {
                self.core.incoming()
            }
            fn peer_stats(
                &self,
                peer: hawser_proto::node::NodeId,
            ) -> Option<hawser_proto::node::PeerStats> {
                self.core.peer_stats(peer)
            }
            fn stats(&self) -> $crate::node::NodeStats {
                self.core.stats()
            }
            fn begin_stop(&self) {
                self.core.begin_stop();
            }
            fn stopped(&self) -> $crate::node::BoxFuture<'_, ()> {
                Box::pin(self.core.tracker.wait())
            }
            fn is_stopped(&self) -> bool {
                self.core.cancel.is_cancelled()
            }
            fn peers(&self) -> Vec<hawser_proto::reach::PeerSnapshot> {
                self.core
                    .reach
                    .as_ref()
                    .map(|r| r.peers())
                    .unwrap_or_default()
            }
            fn peer_events(&self) -> $crate::node::PeerEvents {
                match self.core.reach.as_ref() {
                    Some(r) => r.subscribe(self.core.cancel.clone()),
                    None => $crate::node::PeerEvents::empty(),
                }
            }
            fn is_alive(&self, peer: hawser_proto::node::NodeId) -> bool {
                self.core.is_alive(peer)
            }
            fn try_send_alive(
                &self,
                to: hawser_proto::node::NodeId,
                payload: bytes::Bytes,
                delivery: hawser_proto::node::Delivery,
            ) -> Result<(), $crate::node::SendError> {
                self.core.try_send_alive(to, payload, delivery)
            }
            fn reach_stats(&self) -> Option<hawser_proto::reach::ReachStats> {
                self.core.reach.as_ref().map(|r| r.stats())
            }
            fn lease_in_force(&self) -> Option<std::time::Duration> {
                self.core.reach.as_ref().map(|r| r.lease_in_force())
            }
            fn peer_id(&self) -> Option<$crate::session::PeerId> {
                $crate::node::connector::Connector::peer_id(&self.core.connector)
            }
            fn listen_addrs(&self) -> Vec<$crate::session::TransportAddr> {
                $crate::node::connector::Connector::listen_addrs(&self.core.connector)
            }
            fn rpc(&self) -> Option<std::sync::Arc<$crate::node::RpcEngine>> {
                Some(self.core.rpc.clone())
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("id", &self.core.id)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use network_impl;
