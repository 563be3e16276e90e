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
//! [`FrameKind::Rpc`]: hawser_proto::wire::node::FrameKind::Rpc

mod error;
mod inbound;
mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::node::NodeId;
use hawser_proto::wire::rpc::{truncate_message, Outcome, Rpc};
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
pub(crate) trait RpcLink: Send + Sync + 'static {
    /// Queues one rpc frame for `to`, `header` then `tail` (or hands it to this node's own
    /// engine when `to` is this node). Never blocks: `SendError::QueueFull` when there is no
    /// room.
    fn push_rpc(&self, to: NodeId, header: &[u8], tail: &[u8]) -> Result<(), SendError>;
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
    link: OnceLock<Weak<dyn RpcLink>>,
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
    /// An engine for node `id`; [`set_link`](Self::set_link) connects it to its network.
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
    pub(crate) fn set_link(&self, link: Weak<dyn RpcLink>) {
        let _ = self.link.set(link);
    }

    fn link(&self) -> Option<Arc<dyn RpcLink>> {
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

    // ---- calling ----

    /// Sends a request and waits for its response (see `Node::request`).
    pub(crate) async fn request(
        self: &Arc<Self>,
        to: NodeId,
        protocol: ProtocolId,
        payload: Bytes,
        options: RequestOptions,
    ) -> Result<Bytes, RequestError> {
        let timeout = options.timeout.unwrap_or(self.settings.default_timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        if self.is_stopped() {
            return Err(RequestError::Stopped);
        }
        let (len, max) = (payload.len(), self.settings.max_request);
        if len > max {
            return Err(RequestError::TooLarge {
                part: Part::Request,
                len: len as u64,
                max: max as u64,
            });
        }
        let link = self.link().ok_or(RequestError::Stopped)?;
        let (id, rx) = self.register(to, protocol)?;
        let mut guard = InFlight {
            rpc: self,
            to,
            id,
            sent: false,
            done: false,
            timed_out: false,
        };
        let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        let msg = Rpc::Request {
            id,
            protocol: protocol.0,
            timeout_ms,
            payload: &payload,
        };
        // `max_request` is below `max_frame`, itself below 4 GiB: the header exists.
        let header = msg.frame_header().ok_or(RequestError::TooLarge {
            part: Part::Request,
            len: len as u64,
            max: max as u64,
        })?;
        loop {
            match link.push_rpc(to, header.as_slice(), &payload) {
                Ok(()) => break,
                Err(SendError::QueueFull(_)) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        bump(&self.counters.timeouts);
                        return Err(RequestError::Timeout);
                    }
                    let wait = (deadline - now).min(ROOM_POLL);
                    let _ = tokio::time::timeout(wait, link.room(to)).await;
                }
                Err(e) => return Err(from_send_error(e, to)),
            }
        }
        drop(link);
        guard.sent = true;
        bump(&self.counters.requests_sent);
        let result = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            // The sender is dropped only when the engine stops.
            Ok(Err(_)) => Err(RequestError::Stopped),
            Err(_) => {
                bump(&self.counters.timeouts);
                Err(RequestError::Timeout)
            }
        };
        // A timeout leaves the request registered: the guard forgets it and tells the peer.
        guard.timed_out = matches!(result, Err(RequestError::Timeout));
        guard.done = !guard.timed_out;
        result
    }

    /// Registers a request to `to`: its id and where its response will go, within the caps.
    fn register(
        &self,
        to: NodeId,
        protocol: ProtocolId,
    ) -> Result<(u64, oneshot::Receiver<Result<Bytes, RequestError>>), RequestError> {
        let mut t = lock(&self.tables);
        if t.dead.contains(&to) {
            return Err(RequestError::Unreachable(to));
        }
        let per_peer = t.outbound.get(&to).map_or(0, HashMap::len);
        if per_peer >= self.settings.max_outbound_per_peer
            || t.outbound_total >= self.settings.max_outbound
        {
            bump(&self.counters.outbound_overloaded);
            return Err(RequestError::Overloaded { local: true });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        t.outbound
            .entry(to)
            .or_default()
            .insert(id, Pending { tx, protocol });
        t.outbound_total += 1;
        Ok((id, rx))
    }

    /// Removes request `id` to `to` from the table, if it is still there.
    fn take_pending(&self, to: NodeId, id: u64) -> Option<Pending> {
        let mut t = lock(&self.tables);
        let peer = t.outbound.get_mut(&to)?;
        let pending = peer.remove(&id)?;
        if peer.is_empty() {
            t.outbound.remove(&to);
        }
        t.outbound_total -= 1;
        Some(pending)
    }

    /// The caller gave up on request `id` (timed out, or its future was dropped): forget it,
    /// and tell the peer if the request was sent.
    fn abandon(&self, to: NodeId, id: u64, sent: bool, timed_out: bool) {
        if self.take_pending(to, id).is_none() || !sent {
            return;
        }
        if !timed_out {
            bump(&self.counters.cancelled);
        }
        let cancel = Rpc::Cancel { id };
        if let (Some(link), Some(header)) = (self.link(), cancel.frame_header()) {
            // Best effort: a full queue or a stopped node loses the cancel, and the peer's
            // handler sees the deadline pass instead.
            let _ = link.push_rpc(to, header.as_slice(), &[]);
        }
    }

    /// Fails every request in flight to `to` with `error` (the connection to it failed or
    /// broke, it was found dead, or removed).
    pub(crate) fn fail_peer(&self, to: NodeId, error: RequestError) {
        let failed = {
            let mut t = lock(&self.tables);
            let Some(peer) = t.outbound.remove(&to) else {
                return;
            };
            t.outbound_total -= peer.len();
            peer
        };
        debug!(node = %self.id, peer = %to, requests = failed.len(), %error, "requests failed");
        for (_, p) in failed {
            let _ = p.tx.send(Err(error.clone()));
        }
    }

    /// Reachability says `peer` is dead (`true`) or alive again (`false`). Requests in flight
    /// to a dead peer fail with `Unreachable`, and new ones fail at once until it is alive.
    pub(crate) fn set_dead(&self, peer: NodeId, dead: bool) {
        {
            let mut t = lock(&self.tables);
            if dead {
                t.dead.insert(peer);
            } else {
                t.dead.remove(&peer);
            }
        }
        if dead {
            self.fail_peer(peer, RequestError::Unreachable(peer));
        }
    }

    /// Whether reachability reported `peer` dead.
    pub(crate) fn is_dead(&self, peer: NodeId) -> bool {
        lock(&self.tables).dead.contains(&peer)
    }

    // ---- receiving ----

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

    fn on_response(&self, from: NodeId, id: u64, outcome: Outcome<'_>, body: &Bytes) {
        let Some(pending) = self.take_pending(from, id) else {
            bump(&self.counters.late_responses);
            return;
        };
        bump(&self.counters.responses_received);
        let max = self.settings.max_response;
        let result = match outcome {
            Outcome::Ok(p) if p.len() > max => Err(RequestError::TooLarge {
                part: Part::Response,
                len: p.len() as u64,
                max: max as u64,
            }),
            Outcome::Ok(p) => Ok(body.slice_ref(p)),
            Outcome::Refused { code, message } => Err(RequestError::Refused {
                code,
                message: message.to_owned(),
            }),
            Outcome::NoHandler => Err(RequestError::NoHandler(pending.protocol)),
            Outcome::Overloaded => Err(RequestError::Overloaded { local: false }),
            Outcome::TooLarge { part, len, max } => Err(RequestError::TooLarge { part, len, max }),
            Outcome::Omitted => Err(RequestError::ResponseOmitted),
        };
        let _ = pending.tx.send(result);
    }

    fn on_request(
        self: &Arc<Self>,
        from: NodeId,
        id: u64,
        protocol: ProtocolId,
        timeout: Duration,
        payload: Bytes,
    ) {
        let max = self.settings.max_request;
        if payload.len() > max {
            let part = Part::Request;
            let (len, max) = (payload.len() as u64, max as u64);
            let _ = self.answer(from, id, Outcome::TooLarge { part, len, max }, None);
            return;
        }
        if timeout.is_zero() {
            bump(&self.counters.expired);
            return;
        }
        let handler = lock(&self.handlers).get(&protocol).cloned();
        let Some(handler) = handler else {
            bump(&self.counters.no_handler);
            let _ = self.answer(from, id, Outcome::NoHandler, None);
            return;
        };
        let token = CancellationToken::new();
        {
            let mut t = lock(&self.tables);
            let per_peer = t.inbound.get(&from).map_or(0, HashMap::len);
            if per_peer >= self.settings.max_inbound_per_peer
                || t.inbound_total >= self.settings.max_inbound
            {
                drop(t);
                bump(&self.counters.inbound_overloaded);
                let _ = self.answer(from, id, Outcome::Overloaded, None);
                return;
            }
            let calls = t.inbound.entry(from).or_default();
            if calls.contains_key(&id) {
                // A second request with the id of one being served: not from a hawser node.
                drop(t);
                bump(&self.counters.bad_frames);
                return;
            }
            calls.insert(id, token.clone());
            t.inbound_total += 1;
        }
        let deadline = Instant::now() + timeout;
        let request =
            InboundRequest::new(self.clone(), from, id, protocol, payload, deadline, token);
        match handler.try_send(request) {
            Ok(()) => bump(&self.counters.requests_received),
            Err(mpsc::error::TrySendError::Full(request)) => {
                bump(&self.counters.inbound_overloaded);
                request.finish_with(Outcome::Overloaded);
            }
            Err(mpsc::error::TrySendError::Closed(request)) => {
                // The receiver was dropped: nobody serves the protocol any more.
                let mut handlers = lock(&self.handlers);
                if handlers.get(&protocol).is_some_and(mpsc::Sender::is_closed) {
                    handlers.remove(&protocol);
                }
                drop(handlers);
                bump(&self.counters.no_handler);
                request.finish_with(Outcome::NoHandler);
            }
        }
    }

    /// Removes request `id` of `from` from the served table; its cancel token, if it was
    /// there.
    fn take_inbound(&self, from: NodeId, id: u64) -> Option<CancellationToken> {
        let mut t = lock(&self.tables);
        let calls = t.inbound.get_mut(&from)?;
        let token = calls.remove(&id)?;
        if calls.is_empty() {
            t.inbound.remove(&from);
        }
        t.inbound_total -= 1;
        Some(token)
    }

    /// Sends the response to request `id` of `from`; when the queue is full, waits for room
    /// (on a task of its own) until `deadline`, or with no deadline (a refusal by the engine)
    /// drops it, counted.
    fn answer(
        &self,
        from: NodeId,
        id: u64,
        outcome: Outcome<'_>,
        deadline: Option<Instant>,
    ) -> Result<(), RespondError> {
        let outcome = match outcome {
            Outcome::Refused { code, message } => Outcome::Refused {
                code,
                message: truncate_message(message),
            },
            other => other,
        };
        let msg = Rpc::Response { id, outcome };
        let link = self
            .link()
            .ok_or(RespondError::Unsent(SendError::Stopped))?;
        // Responses are bounded by `max_response`, below `max_frame`.
        let Some(header) = msg.frame_header() else {
            bump(&self.counters.responses_unsent);
            return Err(RespondError::Unsent(SendError::Stopped));
        };
        match link.push_rpc(from, header.as_slice(), msg.tail()) {
            Ok(()) => Ok(()),
            // A handler's answer waits for room until the request's deadline; the engine's own
            // refusals (no deadline) do not, so a flood of refused requests spawns nothing.
            Err(SendError::QueueFull(_)) => match deadline {
                Some(deadline) => {
                    let frame = [header.as_slice(), msg.tail()].concat();
                    let header_len = header.as_slice().len();
                    self.answer_later(link, from, frame, header_len, deadline);
                    Ok(())
                }
                None => {
                    bump(&self.counters.responses_unsent);
                    Err(RespondError::Unsent(SendError::QueueFull(from)))
                }
            },
            Err(e) => {
                bump(&self.counters.responses_unsent);
                debug!(node = %self.id, peer = %from, %e, "response not sent");
                Err(RespondError::Unsent(e))
            }
        }
    }

    /// Queues a response frame once `from`'s queue has room, on a task, until `deadline`.
    fn answer_later(
        &self,
        link: Arc<dyn RpcLink>,
        from: NodeId,
        frame: Vec<u8>,
        header_len: usize,
        deadline: Instant,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            bump(&self.counters.responses_unsent);
            return;
        };
        let id = self.id;
        rt.spawn(async move {
            let (header, tail) = frame.split_at(header_len);
            loop {
                match link.push_rpc(from, header, tail) {
                    Ok(()) => return,
                    Err(SendError::QueueFull(_)) if Instant::now() < deadline => {
                        let _ = tokio::time::timeout(ROOM_POLL, link.room(from)).await;
                    }
                    Err(e) => {
                        debug!(node = %id, peer = %from, %e, "response not sent");
                        return;
                    }
                }
            }
        });
    }

    // ---- serving ----

    /// The receiver of `protocol`'s requests (see `Node::serve`).
    pub(crate) fn serve(&self, protocol: ProtocolId) -> Result<InboundRequests, ServeError> {
        if protocol.0 < FIRST_APPLICATION_ID {
            return Err(ServeError::Reserved(protocol));
        }
        if self.is_stopped() {
            return Err(ServeError::Stopped);
        }
        let mut handlers = lock(&self.handlers);
        if handlers.get(&protocol).is_some_and(|h| !h.is_closed()) {
            return Err(ServeError::AlreadyServed(protocol));
        }
        let (tx, rx) = mpsc::channel(self.settings.max_inbound.max(1));
        handlers.insert(protocol, tx);
        Ok(InboundRequests::new(rx, protocol))
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

/// A request of this node in flight: forgotten, and cancelled at the peer, if the caller's
/// future is dropped or times out.
struct InFlight<'a> {
    rpc: &'a RpcEngine,
    to: NodeId,
    id: u64,
    sent: bool,
    /// The response came (or the request failed for good): nothing to forget.
    done: bool,
    timed_out: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.rpc
                .abandon(self.to, self.id, self.sent, self.timed_out);
        }
    }
}

fn from_send_error(e: SendError, to: NodeId) -> RequestError {
    match e {
        SendError::Stopped => RequestError::Stopped,
        SendError::UnknownNode(n) => RequestError::UnknownNode(n),
        SendError::TooLarge { len, max } => RequestError::TooLarge {
            part: Part::Request,
            len: len as u64,
            max: max as u64,
        },
        // No address, not alive, or another refusal of the route: the peer cannot be reached.
        _ => RequestError::Unreachable(to),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn engine() -> Arc<RpcEngine> {
        Arc::new(RpcEngine::new(
            NodeId(1),
            RpcSettings::default(),
            Vec::new(),
        ))
    }

    #[test]
    fn a_request_reaches_its_handler_and_a_cancel_its_token() {
        let rpc = engine();
        let mut inbound = rpc.serve(ProtocolId(1024)).unwrap();
        let mut frame = BytesMut::new();
        Rpc::Request {
            id: 9,
            protocol: 1024,
            timeout_ms: 60_000,
            payload: b"hi",
        }
        .emit(&mut frame);
        rpc.handle_frame(NodeId(2), frame.freeze());
        let req = inbound.rx.try_recv().unwrap();
        assert_eq!((req.from(), &req.payload()[..]), (NodeId(2), &b"hi"[..]));
        assert_eq!(rpc.stats().inbound_in_flight, 1);
        let mut cancel = BytesMut::new();
        Rpc::Cancel { id: 9 }.emit(&mut cancel);
        rpc.handle_frame(NodeId(2), cancel.freeze());
        assert!(req.is_cancelled());
        assert_eq!(req.respond("late"), Err(RespondError::Cancelled));
        assert_eq!(rpc.stats().inbound_in_flight, 0);
    }

    proptest::proptest! {
        /// Whatever bytes a peer sends as an rpc frame, the engine never panics: a frame that
        /// does not parse is counted, anything else is handled (and its tables stay bounded).
        #[test]
        fn any_frame_is_handled_or_counted_never_a_panic(
            frames in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..20),
            from in 1u64..4,
        ) {
            let rpc = engine();
            let _inbound = rpc.serve(ProtocolId(1024)).unwrap();
            for f in frames {
                let parses = Rpc::parse(&f).is_ok();
                let bad = rpc.stats().bad_frames;
                rpc.handle_frame(NodeId(from), Bytes::from(f));
                if !parses {
                    proptest::prop_assert_eq!(rpc.stats().bad_frames, bad + 1);
                }
            }
            proptest::prop_assert!(rpc.stats().inbound_in_flight <= 20);
        }
    }
}
