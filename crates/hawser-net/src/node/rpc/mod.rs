//! Requests with responses and deadlines, and byte streams, to node ids.
//!
//! Requests, responses and cancels are [`FrameKind::Rpc`] frames (`hawser_proto::wire::rpc`)
//! that travel through the same bounded per-destination queues and writers as application
//! messages: a request goes on this node's session to the peer, its response on the peer's
//! session back. [`RpcEngine`] matches responses to requests by id, keeps the caps of
//! [`RpcSettings`], fails requests loudly (each cause a [`RequestError`] variant), and hands
//! inbound requests to the handler of their protocol ([`InboundRequests`]).
//!
//! Streams ([`NodeStream`]) are multiplexed streams of the session to the peer, one per
//! [`Node::open_stream`](super::Node::open_stream), so bulk transfers never wait behind, or
//! hold back, messages and requests.
//!
//! The engine's parts: `calls` (requests sent and matched to their responses), `serving`
//! (requests received, capped, handed out, answered), `inbound` (what a handler holds),
//! `stream` (streams), `error` (one error enum per operation).
//!
//! [`FrameKind::Rpc`]: hawser_proto::wire::node::FrameKind::Rpc

mod calls;
mod error;
mod inbound;
mod serving;
mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::node::NodeId;
use hawser_proto::wire::rpc::{truncate_message, FrameHeader, Outcome, Rpc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use error::{Part, RequestError, RespondError, ServeError, StreamError};
pub use inbound::{InboundRequest, InboundRequests};
pub(crate) use stream::{read_stream_status, StreamStatus};
pub use stream::{InboundStreams, NodeStream};

use super::config::RpcSettings;
use super::error::SendError;
use super::network::BoxFuture;
use crate::session::{ProtocolId, FIRST_APPLICATION_ID};

/// How long a caller whose request found the queue full waits before it looks again, at most
/// (a wake-up for room may come sooner).
const ROOM_POLL: Duration = Duration::from_millis(20);

/// Options of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestOptions {
    /// How long to wait for the response; `None`: `RpcSettings::default_timeout`. The time
    /// left travels with the request, and the peer does not hand it to a handler once it has
    /// passed.
    pub timeout: Option<Duration>,
}

impl RequestOptions {
    /// Options with this deadline.
    pub fn timeout(timeout: Duration) -> RequestOptions {
        RequestOptions {
            timeout: Some(timeout),
        }
    }
}

/// Counters of requests and streams, node-wide.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
#[non_exhaustive]
pub struct RpcStats {
    /// Requests queued to peers (or to this node).
    pub requests_sent: u64,
    /// Responses received and matched to a request in flight.
    pub responses_received: u64,
    /// Requests that ended with `RequestError::Timeout`.
    pub timeouts: u64,
    /// Requests cancelled by their caller (future dropped) while in flight.
    pub cancelled: u64,
    /// Requests refused by this node's outbound caps (`Overloaded { local: true }`).
    pub outbound_overloaded: u64,
    /// Requests received and handed to a handler's queue.
    pub requests_received: u64,
    /// Inbound requests answered `Overloaded` (inbound caps, or a handler's queue full).
    pub inbound_overloaded: u64,
    /// Inbound requests answered `NoHandler`.
    pub no_handler: u64,
    /// Inbound requests not handed to the handler: their deadline had passed, or the caller
    /// cancelled them, before the handler took them.
    pub expired: u64,
    /// Cancels received for requests being served.
    pub cancels_received: u64,
    /// Responses that matched no request in flight (it had timed out, been cancelled or
    /// failed): dropped.
    pub late_responses: u64,
    /// Rpc frames that did not parse: dropped.
    pub bad_frames: u64,
    /// Responses that could not be queued (the caller stopped being a member, or this node
    /// stopped) or found the queue full until the request's deadline: dropped.
    pub responses_unsent: u64,
    /// Streams opened to peers.
    pub streams_opened: u64,
    /// Streams accepted from peers and handed to an acceptor.
    pub streams_accepted: u64,
    /// Inbound streams refused: no acceptor, or its backlog full.
    pub streams_refused: u64,
    /// Requests of this node waiting for their responses now.
    pub outbound_in_flight: u64,
    /// Requests from peers being served now (handed to a handler or waiting for one).
    pub inbound_in_flight: u64,
}

#[derive(Default)]
struct Counters {
    requests_sent: AtomicU64,
    responses_received: AtomicU64,
    timeouts: AtomicU64,
    cancelled: AtomicU64,
    outbound_overloaded: AtomicU64,
    requests_received: AtomicU64,
    inbound_overloaded: AtomicU64,
    no_handler: AtomicU64,
    expired: AtomicU64,
    cancels_received: AtomicU64,
    late_responses: AtomicU64,
    bad_frames: AtomicU64,
    responses_unsent: AtomicU64,
    streams_opened: AtomicU64,
    streams_accepted: AtomicU64,
    streams_refused: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// What the engine needs from the network it runs on (implemented by the node's engine for
/// every built-in network).
pub(crate) trait FrameSink: Send + Sync + 'static {
    /// Queues one rpc frame for `to`, `header` then `tail` (or hands it to this node's own
    /// engine when `to` is this node). Never blocks: `SendError::QueueFull` when there is no
    /// room.
    fn push_rpc(&self, to: NodeId, header: &FrameHeader, tail: &[u8]) -> Result<(), SendError>;
    /// Resolves when room may have been freed in `to`'s queue.
    fn room(&self, to: NodeId) -> BoxFuture<'_, ()>;
    /// Opens a stream of `protocol` to `to`, on the session to it.
    fn open_stream(
        &self,
        to: NodeId,
        protocol: ProtocolId,
    ) -> BoxFuture<'_, Result<NodeStream, StreamError>>;
}

/// A request in flight, waiting for its response.
struct Pending {
    tx: oneshot::Sender<Result<Bytes, RequestError>>,
    protocol: ProtocolId,
}

/// The tables of requests in flight, both ways; every map is bounded by the caps of
/// [`RpcSettings`] (and the peers by the membership).
#[derive(Default)]
struct Tables {
    /// This node's requests, per peer.
    outbound: HashMap<NodeId, HashMap<u64, Pending>>,
    outbound_total: usize,
    /// Requests being served, per caller, each with its cancel token.
    inbound: HashMap<NodeId, HashMap<u64, CancellationToken>>,
    inbound_total: usize,
    /// Peers reachability reported dead (and not alive since).
    dead: HashSet<NodeId>,
}

/// The request/response and stream engine of one of hawser's networks. A [`Node`] uses it;
/// applications call [`Node::request`], [`Node::serve`], [`Node::open_stream`] and
/// [`Node::accept_streams`] instead.
///
/// [`Node`]: super::Node
/// [`Node::request`]: super::Node::request
/// [`Node::serve`]: super::Node::serve
/// [`Node::open_stream`]: super::Node::open_stream
/// [`Node::accept_streams`]: super::Node::accept_streams
pub struct RpcEngine {
    id: NodeId,
    settings: RpcSettings,
    /// The application protocols of `Settings::protocols` (streams need one of them).
    protocols: Vec<ProtocolId>,
    link: OnceLock<Weak<dyn FrameSink>>,
    next_id: AtomicU64,
    tables: Mutex<Tables>,
    handlers: Mutex<HashMap<ProtocolId, mpsc::Sender<InboundRequest>>>,
    acceptors: Mutex<HashMap<ProtocolId, mpsc::Sender<(NodeId, NodeStream)>>>,
    stopped: AtomicBool,
    counters: Counters,
}

impl std::fmt::Debug for RpcEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEngine")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Recovers a poisoned lock: every table here is plain data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RpcEngine {
    /// An engine for node `id`; [`set_sink`](Self::set_sink) connects it to its network.
    pub(crate) fn new(id: NodeId, settings: RpcSettings, protocols: Vec<ProtocolId>) -> Self {
        RpcEngine {
            id,
            settings,
            protocols,
            link: OnceLock::new(),
            next_id: AtomicU64::new(1),
            tables: Mutex::new(Tables::default()),
            handlers: Mutex::new(HashMap::new()),
            acceptors: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// Connects the engine to its network (once, right after both exist).
    pub(crate) fn set_sink(&self, link: Weak<dyn FrameSink>) {
        let _ = self.link.set(link);
    }

    fn link(&self) -> Option<Arc<dyn FrameSink>> {
        self.link.get().and_then(Weak::upgrade)
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The settings it runs with.
    pub(crate) fn settings(&self) -> &RpcSettings {
        &self.settings
    }

    /// Counters.
    pub fn stats(&self) -> RpcStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (outbound, inbound) = self.in_flight();
        RpcStats {
            outbound_in_flight: outbound as u64,
            inbound_in_flight: inbound as u64,
            requests_sent: get(&c.requests_sent),
            responses_received: get(&c.responses_received),
            timeouts: get(&c.timeouts),
            cancelled: get(&c.cancelled),
            outbound_overloaded: get(&c.outbound_overloaded),
            requests_received: get(&c.requests_received),
            inbound_overloaded: get(&c.inbound_overloaded),
            no_handler: get(&c.no_handler),
            expired: get(&c.expired),
            cancels_received: get(&c.cancels_received),
            late_responses: get(&c.late_responses),
            bad_frames: get(&c.bad_frames),
            responses_unsent: get(&c.responses_unsent),
            streams_opened: get(&c.streams_opened),
            streams_accepted: get(&c.streams_accepted),
            streams_refused: get(&c.streams_refused),
        }
    }

    /// Requests in flight from this node, and being served by it.
    fn in_flight(&self) -> (usize, usize) {
        let t = lock(&self.tables);
        (t.outbound_total, t.inbound_total)
    }

    /// An rpc frame from `from` (the bytes after its kind byte).
    pub(crate) fn handle_frame(self: &Arc<Self>, from: NodeId, body: Bytes) {
        let msg = match Rpc::parse(&body) {
            Ok(m) => m,
            Err(err) => {
                bump(&self.counters.bad_frames);
                debug!(node = %self.id, peer = %from, %err, "bad rpc frame dropped");
                return;
            }
        };
        match msg {
            Rpc::Request {
                id,
                protocol,
                timeout_ms,
                payload,
            } => {
                let payload = body.slice_ref(payload);
                let timeout = Duration::from_millis(u64::from(timeout_ms));
                self.on_request(from, id, ProtocolId(protocol), timeout, payload);
            }
            Rpc::Response { id, outcome } => self.on_response(from, id, outcome, &body),
            Rpc::Cancel { id } => {
                let t = lock(&self.tables);
                if let Some(token) = t.inbound.get(&from).and_then(|m| m.get(&id)) {
                    token.cancel();
                    bump(&self.counters.cancels_received);
                }
            }
        }
    }

    /// Stops the engine: requests in flight fail with `Stopped`, handlers' and acceptors'
    /// receivers end.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let outbound = std::mem::take(&mut lock(&self.tables).outbound);
        lock(&self.tables).outbound_total = 0;
        for (_, peer) in outbound {
            for (_, p) in peer {
                let _ = p.tx.send(Err(RequestError::Stopped));
            }
        }
        lock(&self.handlers).clear();
        lock(&self.acceptors).clear();
    }
}

#[cfg(test)]
mod tests;
