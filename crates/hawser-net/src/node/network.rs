//! The [`Network`] trait: what a node needs from a transport, so users can plug in their own
//! (PhxPaxos lets users replace its default network the same way).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use hawser_proto::node::{
    Delivery, Group, Membership, MembershipChange, MembershipError, NodeId, PeerStats,
};
use hawser_proto::reach::{PeerSnapshot, ReachStats};

use super::error::SendError;
use super::incoming::IncomingStream;
use super::reach::PeerEvents;
use crate::session::{PeerId, TransportAddr};

/// A boxed future, as the [`Network`] trait's async methods return (the trait stays usable as
/// `dyn Network`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Node-wide counters (per-destination ones are [`PeerStats`]).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct NodeStats {
    /// Datagrams that did not parse, dropped.
    pub malformed_datagrams: u64,
    /// Datagrams or connections naming a sender outside the membership, or another receiver,
    /// dropped.
    pub unknown_senders: u64,
    /// Accepted connections closed because `max_inbound_connections` was reached.
    pub refused_connections: u64,
    /// Connections closed because a frame announced more than `max_frame` bytes.
    pub oversized_frames: u64,
    /// Connections closed because the hello was missing, late or malformed.
    pub bad_hellos: u64,
    /// Received unreliable messages dropped because the incoming queue was full.
    pub incoming_dropped: u64,
    /// Frames of framed connections with no or an unknown kind byte, dropped.
    pub bad_frames: u64,
    /// Internal frames (reachability events, pings) dropped: beyond
    /// `reach.max_control_frames` per destination, or older than the queue deadline.
    pub control_dropped: u64,
    /// Peers learned from the flood or admitted by hello but refused: membership full.
    pub learned_refused: u64,
    /// Session handshakes that failed, dialling or accepting: malformed, late, another
    /// network id or protocol version, a bad identity signature.
    pub handshake_failures: u64,
    /// Sessions refused, dialling or accepting, because the peer proved (or, in plaintext,
    /// claimed) another identity than the one pinned for its node (`Settings::pins`).
    pub peer_mismatches: u64,
    /// Unreliable messages dropped on send because no session has given this node a
    /// datagram key for the destination yet (Noise only; a session is opened for the next ones).
    pub datagrams_without_key: u64,
    /// Datagrams received by a Noise node dropped because they were not sealed, or were
    /// sealed by a sender whose datagram key this node does not hold (yet).
    pub unsealed_datagrams: u64,
    /// Sealed datagrams dropped because they did not authenticate: another key, or altered.
    pub forged_datagrams: u64,
    /// Sealed datagrams dropped because their counter was already seen or is older than the
    /// replay window (64 counters).
    pub replayed_datagrams: u64,
}

/// The outcome of a broadcast, per destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Each destination with the outcome of its send, by increasing id.
    pub outcomes: Vec<(NodeId, Result<(), SendError>)>,
}

impl BroadcastReport {
    /// Whether every destination's send was queued.
    pub fn is_all_ok(&self) -> bool {
        self.outcomes.iter().all(|(_, r)| r.is_ok())
    }

    /// The destinations reached (queued).
    pub fn delivered(&self) -> Vec<NodeId> {
        let ok = self.outcomes.iter().filter(|(_, r)| r.is_ok());
        ok.map(|(id, _)| *id).collect()
    }

    /// The destinations whose send failed, with why.
    pub fn failures(&self) -> impl Iterator<Item = (NodeId, &SendError)> + '_ {
        self.outcomes
            .iter()
            .filter_map(|(id, r)| r.as_ref().err().map(|e| (*id, e)))
    }
}

/// A transport for a node: sends to node ids, receives into an
/// [`IncomingStream`](super::IncomingStream). hawser ships the default TCP+UDP network
/// ([`DefaultNetwork`](super::DefaultNetwork)) and an in-memory one
/// ([`MemoryNetwork`](super::MemoryNetwork)); both pass the same test suite.
///
/// An implementation starts sending and receiving when it is constructed (started), and must
/// never block in the non-async methods.
pub trait Network: Send + Sync + 'static {
    /// The local node's id.
    fn id(&self) -> NodeId;

    /// The local address, for networks that have one.
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// A copy of the current membership.
    fn membership(&self) -> Membership;

    /// Changes the membership at run time. Removing a node drops its queue and connection.
    ///
    /// # Errors
    /// [`MembershipError`]; nothing changes then.
    fn change_membership(&self, change: MembershipChange) -> Result<(), MembershipError>;

    /// Queues a message for `to`; never blocks.
    ///
    /// # Errors
    /// [`SendError`] at once when it cannot be queued.
    fn try_send(&self, to: NodeId, payload: Bytes, delivery: Delivery) -> Result<(), SendError>;

    /// Like [`try_send`](Self::try_send), but waits for room when the queue is full.
    ///
    /// # Errors
    /// [`SendError`] other than `QueueFull`.
    fn send(
        &self,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> BoxFuture<'_, Result<(), SendError>>;

    /// The part of [`send`](Self::send) that needs no waiting: `Ok` with the
    /// outcome when the message was queued (or refused for good) at once, or the payload
    /// back when the caller must wait (`send` then does). Lets a send with room skip
    /// `send`'s boxed future. The default always gives the payload back.
    ///
    /// # Errors
    /// The inner result: [`SendError`] other than `QueueFull`, as `send` gives.
    fn send_if_room(
        &self,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<Result<(), SendError>, Bytes> {
        let _ = (to, delivery);
        Err(payload)
    }

    /// Queues the messages at the front of `batch` for `to`, in order, removing them; stops at
    /// the first it cannot queue, which stays at the front. Never blocks. hawser's networks
    /// queue a reliable batch under one lookup (and one lock per 16 KiB); the default sends one
    /// by one.
    ///
    /// # Errors
    /// [`SendError`] when not even the first message could be queued; `Ok(n)` otherwise.
    fn try_send_batch(
        &self,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<usize, SendError> {
        send_each(batch, |payload| self.try_send(to, payload, delivery))
    }

    /// Like [`try_send_batch`](Self::try_send_batch), waiting for room instead of failing with
    /// `QueueFull`, until `batch` is empty. A cancelled or failed call leaves the messages not
    /// yet queued in `batch`, in order.
    ///
    /// # Errors
    /// [`SendError`] other than `QueueFull`.
    fn send_batch<'a>(
        &'a self,
        to: NodeId,
        batch: &'a mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(send_each_waiting(batch, move |payload| {
            self.send(to, payload, delivery)
        }))
    }

    /// Sends to every node of `group` but the local one (unless `include_self`); never blocks.
    fn broadcast(
        &self,
        group: Group,
        payload: Bytes,
        delivery: Delivery,
        include_self: bool,
    ) -> BroadcastReport {
        let except = (!include_self).then(|| self.id());
        let mut targets = self.membership().select(group, except);
        if include_self && !targets.contains(&self.id()) {
            targets.push(self.id());
            targets.sort();
        }
        let outcomes = targets
            .into_iter()
            .map(|to| (to, self.try_send(to, payload.clone(), delivery)))
            .collect();
        BroadcastReport { outcomes }
    }

    /// The received messages (one consumer at a time; see [`IncomingStream`]).
    fn incoming(&self) -> IncomingStream;

    /// Counters of one peer, if it is a member.
    fn peer_stats(&self, peer: NodeId) -> Option<PeerStats>;

    /// Node-wide counters.
    fn stats(&self) -> NodeStats;

    /// Begins stopping without waiting: from now on nothing is sent or received, and sends fail
    /// with [`SendError::Stopped`]. Idempotent.
    fn begin_stop(&self);

    /// Waits until every task of the network has ended (after [`begin_stop`](Self::begin_stop)).
    fn stopped(&self) -> BoxFuture<'_, ()>;

    /// Whether [`begin_stop`](Self::begin_stop) was called.
    fn is_stopped(&self) -> bool;

    /// Every peer reachability knows, in id order: alive or dead and until when, each address
    /// with existence and reachability and their timestamps. Empty for networks without
    /// reachability (the default).
    fn peers(&self) -> Vec<PeerSnapshot> {
        Vec::new()
    }

    /// The stream of reachability changes (see [`PeerEvents`]). Ends at once for networks
    /// without reachability (the default).
    fn peer_events(&self) -> PeerEvents {
        PeerEvents::empty()
    }

    /// Whether `peer`'s liveness lease holds, as last reported. Always `false` for networks
    /// without reachability (the default): alive-only sends then refuse every peer.
    fn is_alive(&self, peer: NodeId) -> bool {
        let _ = peer;
        false
    }

    /// Like [`try_send`](Self::try_send), but refuses a peer that is not alive with
    /// [`SendError::NotAlive`] (after the other checks of its own: `Stopped`, `UnknownNode`).
    ///
    /// # Errors
    /// As `try_send`, and `NotAlive`.
    fn try_send_alive(
        &self,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if to != self.id() && !self.is_alive(to) {
            return Err(SendError::NotAlive(to));
        }
        self.try_send(to, payload, delivery)
    }

    /// Reachability counters, for networks that have it.
    fn reach_stats(&self) -> Option<ReachStats> {
        None
    }

    /// The lease this node announces now, for networks that have reachability.
    fn lease_in_force(&self) -> Option<std::time::Duration> {
        None
    }

    /// This node's `PeerId` (what peers pin), for networks with sessions.
    fn peer_id(&self) -> Option<PeerId> {
        None
    }

    /// Every address this node accepts reliable connections on (`tcp://` for the listen
    /// address, then `lsp://` and the extra listeners), for networks that have them.
    fn listen_addrs(&self) -> Vec<TransportAddr> {
        Vec::new()
    }

    /// The engine of requests, responses and streams to node ids, for networks that carry
    /// them (hawser's do; `None`, the default, makes those calls fail with `Unsupported`).
    fn rpc(&self) -> Option<std::sync::Arc<super::RpcEngine>> {
        None
    }
}

/// Sends the messages at the front of `batch` one by one with `try_send`, removing each that went;
/// stops at the first that fails, which stays at the front. `Ok(n)` with how many went, or the
/// failure when not even the first did (the one-by-one form of `Network::send_batch`).
pub(crate) fn send_each(
    batch: &mut VecDeque<Bytes>,
    mut send: impl FnMut(Bytes) -> Result<(), SendError>,
) -> Result<usize, SendError> {
    let mut sent = 0;
    while let Some(payload) = batch.front() {
        // A reference count: the payload stays in `batch` if it is refused.
        if let Err(e) = send(payload.clone()) {
            return if sent == 0 { Err(e) } else { Ok(sent) };
        }
        batch.pop_front();
        sent += 1;
    }
    Ok(sent)
}

/// Waits to send each message of `batch` with `send`, in order, removing each once it went; a
/// cancelled or failed call leaves the rest in `batch` (the one-by-one form of
/// `Network::send_batch`).
pub(crate) async fn send_each_waiting<F>(
    batch: &mut VecDeque<Bytes>,
    mut send: impl FnMut(Bytes) -> F,
) -> Result<(), SendError>
where
    F: Future<Output = Result<(), SendError>>,
{
    while let Some(payload) = batch.front().cloned() {
        send(payload).await?;
        batch.pop_front();
    }
    Ok(())
}
