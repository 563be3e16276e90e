//! What goes in and out of an [`Engine`](super::Engine): identifiers, transmits, events,
//! errors (one enum per operation) and counters.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::node::{Delivery, Member, NodeId};
use crate::reach::PeerEvent;
use crate::session::ProtocolId;
use crate::wire::rpc::Part;

/// A connection as the engine names it: allocated by the engine for a dial
/// ([`Transmit::Dial`]) or an accepted connection ([`handle_accepted`]), never reused.
///
/// [`handle_accepted`]: super::Engine::handle_accepted
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A request of this node, as [`request`](super::Engine::request) names it; also its id on the
/// wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// A request from a peer being served, as [`Event::Request`] names it for
/// [`respond`](super::Engine::respond).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboundId(pub u64);

/// Something the shell must do, from [`poll_transmit`](super::Engine::poll_transmit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Open a reliable connection to `peer`, trying `addrs` in order, and report the outcome
    /// with [`handle_dialed`](super::Engine::handle_dialed) (unless a `Close` for `conn` comes
    /// first: the engine gave up on it).
    Dial {
        /// The connection's name.
        conn: ConnId,
        /// The destination.
        peer: NodeId,
        /// Its addresses, in order of preference (never empty).
        addrs: Vec<SocketAddr>,
    },
    /// Close (or abandon the dial of) this connection; the engine has already forgotten it.
    /// A `Close` for a connection the shell already dropped is to be ignored.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Send one datagram: the encoded envelope of `wire::node` (header and payload).
    Datagram {
        /// The destination node.
        to: NodeId,
        /// Its address.
        addr: SocketAddr,
        /// The whole datagram.
        payload: Bytes,
    },
    /// The connection has frames to write: call [`take_frames`](super::Engine::take_frames)
    /// (given once per edge: again only after a batch was written, or after `take_frames`
    /// found nothing).
    Writable {
        /// The connection.
        conn: ConnId,
    },
}

/// Why the engine closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The dial took longer than `connect_timeout`.
    ConnectTimeout,
    /// Nothing was written for `idle_timeout`.
    Idle,
    /// A write failed, or the frames received broke the protocol (oversized).
    Broken,
    /// The destination was removed from the membership, or its addresses changed.
    MembershipChanged,
    /// A dial answered after the engine gave up on it, or for a node it no longer sends to.
    Stale,
    /// The engine was closed.
    Stopped,
}

/// Why a dial failed ([`handle_dialed`](super::Engine::handle_dialed)).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The peer refused the connection (nobody listens, or its hello was refused).
    #[error("connection refused")]
    Refused,
    /// The shell's own attempt timed out.
    #[error("connection timed out")]
    TimedOut,
    /// Any other failure, described.
    #[error("{0}")]
    Other(String),
}

/// A batch write failed after `written` bytes ([`handle_written`](super::Engine::handle_written)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("write failed after {written} bytes")]
pub struct WriteError {
    /// Bytes of the batch that reached the connection; the frames lying whole in them count
    /// as sent, the others are queued again in order.
    pub written: usize,
}

/// Why [`handle_accepted`](super::Engine::handle_accepted) refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The node is not a member, and is not admitted (`admit_unknown` off, or removed by the
    /// application).
    #[error("{0} is not a member")]
    NotMember(NodeId),
    /// The hello named this node itself.
    #[error("a connection from this node itself")]
    Itself,
    /// `max_inbound_connections` are open.
    #[error("too many inbound connections")]
    TooManyConnections,
    /// Admitting the node would overflow the membership (counted in `learned_refused`).
    #[error("membership full")]
    MembershipFull,
    /// The engine was closed.
    #[error("engine stopped")]
    Stopped,
}

/// Why a message was not queued or sent. Nothing was queued when it fails. (`hawser_net`'s
/// `Node` returns the same type.)
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The destination's queue is full (by count or bytes); counted in
    /// `PeerStats::dropped_full`. [`Event::Room`] tells when it drained to half. For an
    /// unreliable message: the socket or the receiver's queue had no room.
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
    /// The engine (the node) was stopped.
    #[error("stopped")]
    Stopped,
    /// The destination has no address for this delivery: a member without addresses (in
    /// `hawser_net`, also one without an `lsp_addr` when reliable delivery to it goes over
    /// LSP).
    #[error("no address for {0}")]
    NoAddress(NodeId),
    /// An alive-only send ([`send_alive`](super::Engine::send_alive), `Node::try_send_alive`,
    /// `Node::broadcast_alive`): the destination's lease does not hold (dead, not heard from
    /// yet, or reachability is off).
    #[error("{0} is not alive")]
    NotAlive(NodeId),
}

/// Why a request has no response ([`Engine::request`](super::Engine::request), and
/// `hawser_net`'s `Node::request`, which returns the same type). Each cause is its own
/// variant; none is a silent drop.
///
/// Whether the peer's handler ran is known only for `NoHandler`, `Overloaded`, `TooLarge` (it
/// did not) and `Refused`, `ResponseOmitted` (it did). After `Timeout` or `Unreachable` it may
/// or may not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No response came before the request's deadline; a cancel was queued for the peer.
    #[error("no response within the deadline")]
    Timeout,
    /// The peer cannot be reached: reachability knows it dead, it has no address for the
    /// transport, or the connection to it failed or broke while the request was in flight.
    #[error("{0} is unreachable")]
    Unreachable(NodeId),
    /// The peer is not (or no longer) in the membership.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The peer's handler answered with an error.
    #[error("refused ({code}): {message}")]
    Refused {
        /// The application's code.
        code: u32,
        /// Why (at most 1,024 bytes).
        message: String,
    },
    /// The peer serves no handler for the request's protocol.
    #[error("the peer serves no handler for {0}")]
    NoHandler(ProtocolId),
    /// This node (`local`: its caps of requests in flight, `RpcConfig::max_pending` and
    /// `max_pending_per_peer`) or the peer (its cap of requests served) is at its cap;
    /// nothing was sent, or the peer did not serve it.
    #[error("overloaded ({})", if *local { "this node" } else { "the peer" })]
    Overloaded {
        /// Whether this node's cap refused it, before sending.
        local: bool,
    },
    /// The request or the response is above the maximum of the side that refused it
    /// (`RpcConfig::max_request`, `max_response`); the connection stays up.
    #[error("{part:?} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Which part.
        part: Part,
        /// Its length.
        len: u64,
        /// The limit that applied.
        max: u64,
    },
    /// The peer's handler dropped the request without answering.
    #[error("the handler dropped the request without answering")]
    ResponseOmitted,
    /// The destination's queue is full: the request was not sent.
    #[error("queue full for {0}")]
    QueueFull(NodeId),
    /// This node (its engine) has been stopped.
    #[error("stopped")]
    Stopped,
}

/// Why [`respond`](super::Engine::respond) sent nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No request with this id is being served: answered already, expired (its deadline
    /// passed), cancelled by the caller, or never handed out.
    #[error("no such request being served")]
    UnknownRequest,
    /// The response is above `rpc.max_response`: the caller was answered `TooLarge` instead.
    #[error("response of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The response could not be queued (counted in `RpcStats::responses_unsent`).
    #[error("response not queued: {0}")]
    Unsent(#[from] SendError),
}

/// What happened, from [`poll_event`](super::Engine::poll_event).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message for the application (the payload is a slice of the received frame).
    Message {
        /// Its sender.
        from: NodeId,
        /// How it came.
        delivery: Delivery,
        /// The payload.
        payload: Bytes,
    },
    /// A request from a peer (or from this node) to answer with
    /// [`respond`](super::Engine::respond) before `deadline`.
    Request {
        /// Its name here.
        id: InboundId,
        /// The caller.
        from: NodeId,
        /// The protocol's number.
        protocol: u32,
        /// The request.
        payload: Bytes,
        /// When the caller stops waiting (the time it gave, from arrival here).
        deadline: Instant,
    },
    /// The caller of a request being served gave up on it (a cancel arrived): nobody waits for
    /// the answer, and [`respond`](super::Engine::respond) will refuse it.
    RequestCancelled {
        /// The request.
        id: InboundId,
    },
    /// A request of this node ended.
    Response {
        /// The request.
        id: RequestId,
        /// The response's payload, or why there is none.
        result: Result<Bytes, RequestError>,
    },
    /// Reachability learned something about a peer.
    Peer(PeerEvent),
    /// This node's connection to the peer is up (messages to it flow).
    Connected {
        /// The peer.
        peer: NodeId,
    },
    /// This node's connection to the peer went down (lost, idle, or closed by the engine).
    Disconnected {
        /// The peer.
        peer: NodeId,
    },
    /// The peer's queue, which refused a message, drained to half: a waiting sender may try
    /// again.
    Room {
        /// The peer.
        peer: NodeId,
    },
    /// A node was added as a `Role::Temporary` member (reported by reachability, or admitted
    /// when it connected).
    Learned(Member),
}

/// The outcome of a [`broadcast`](super::Engine::broadcast), per destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Each destination with the outcome of its send, by increasing id.
    pub outcomes: Vec<(NodeId, Result<(), SendError>)>,
}

impl BroadcastReport {
    /// Whether every destination's send was accepted.
    pub fn is_all_ok(&self) -> bool {
        self.outcomes.iter().all(|(_, r)| r.is_ok())
    }
}

/// Counters of requests and responses.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RpcStats {
    /// Requests queued to peers (or to this node).
    pub requests_sent: u64,
    /// Responses matched to a request in flight.
    pub responses_received: u64,
    /// Requests that ended with `RequestError::Timeout`.
    pub timeouts: u64,
    /// Requests cancelled by this node's application while in flight.
    pub cancelled: u64,
    /// Requests refused by the pending caps (`Overloaded { local: true }`).
    pub outbound_overloaded: u64,
    /// Requests received and handed out as `Event::Request`.
    pub requests_received: u64,
    /// Inbound requests answered `Overloaded` (the inbound caps).
    pub inbound_overloaded: u64,
    /// Inbound requests whose deadline passed before an answer (or that arrived with none
    /// left): dropped.
    pub expired: u64,
    /// Cancels received for requests being served.
    pub cancels_received: u64,
    /// Responses that matched no request in flight (timed out, cancelled, failed): dropped.
    pub late_responses: u64,
    /// Rpc frames that did not parse, or repeated the id of a request being served: dropped.
    pub bad_frames: u64,
    /// Responses that could not be queued: dropped.
    pub responses_unsent: u64,
    /// Requests of this node waiting for their responses now.
    pub outbound_in_flight: u64,
    /// Requests from peers being served now.
    pub inbound_in_flight: u64,
}

/// Node-wide counters of an [`Engine`](super::Engine).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Datagrams that did not parse: dropped.
    pub malformed_datagrams: u64,
    /// Datagrams or frames from a node outside the membership, or datagrams for another
    /// node: dropped.
    pub unknown_senders: u64,
    /// Frames that did not parse, or carried a datagram key (not handled by the engine):
    /// dropped.
    pub bad_frames: u64,
    /// Frames above `max_frame`: their connection was closed.
    pub oversized_frames: u64,
    /// Input naming a connection the engine does not hold (closed already): ignored.
    pub unknown_conns: u64,
    /// Internal frames (reachability events, pings) dropped: beyond `max_control_frames` per
    /// destination, older than the queue deadline, or unwritten when a write failed.
    pub control_dropped: u64,
    /// Nodes learned from reachability or admitted by connection, but refused: membership
    /// full.
    pub learned_refused: u64,
    /// Inbound connections refused by `handle_accepted`.
    pub refused_connections: u64,
    /// Events dropped because `max_events` were waiting.
    pub events_dropped: u64,
    /// Requests and responses.
    pub rpc: RpcStats,
}
