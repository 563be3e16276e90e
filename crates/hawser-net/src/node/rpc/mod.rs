//! Requests with responses and deadlines, and byte streams, to node ids: the shell's side.
//!
//! Requests, responses and cancels are the node engine's (`hawser_proto::node::Engine`:
//! correlation by id, deadlines, caps, each failure its own variant); they travel as
//! [`FrameKind::Rpc`] frames through the same bounded per-destination queues as application
//! messages. This module keeps what needs tasks: the callers waiting for their responses
//! (`calls`), the handler of each protocol and what a handler holds (`serving`, `inbound`),
//! streams (`stream`), and one error enum per operation (`error`).
//!
//! Streams ([`NodeStream`]) are multiplexed streams of the session to the peer, one per
//! [`Node::open_stream`](super::Node::open_stream), so bulk transfers never wait behind, or
//! hold back, messages and requests.
//!
//! [`FrameKind::Rpc`]: hawser_proto::wire::node::FrameKind::Rpc

mod calls;
mod error;
mod inbound;
mod responder;
mod serving;
mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) use calls::Calls;
pub use error::{Part, RequestError, RespondError, ServeError, StreamError};
pub use inbound::{InboundRequest, InboundRequests};
pub(crate) use responder::{Responder, ServeCounters};
pub(crate) use serving::{from_engine as respond_from_engine, Serving};
pub(crate) use stream::{read_stream_status, StreamStatus, Streams};
pub use stream::{InboundStreams, NodeStream};

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

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl RpcStats {
    /// The node's counters: the engine's, with what the shell counts (handlers, streams).
    pub(crate) fn combine(
        engine: hawser_proto::node::engine::RpcStats,
        serving: &ServeCounters,
        streams: &Streams,
    ) -> RpcStats {
        let no_handler = get(&serving.no_handler);
        let overloaded = get(&serving.overloaded);
        let (opened, accepted, refused) = streams.counts();
        RpcStats {
            requests_sent: engine.requests_sent,
            responses_received: engine.responses_received,
            timeouts: engine.timeouts,
            cancelled: engine.cancelled,
            outbound_overloaded: engine.outbound_overloaded,
            requests_received: engine
                .requests_received
                .saturating_sub(no_handler + overloaded),
            inbound_overloaded: engine.inbound_overloaded + overloaded,
            no_handler,
            // The engine also counts requests handed out and left unanswered past their
            // deadline; the node counts those its handlers never saw.
            expired: get(&serving.expired),
            cancels_received: engine.cancels_received,
            late_responses: engine.late_responses,
            bad_frames: engine.bad_frames,
            responses_unsent: engine.responses_unsent,
            streams_opened: opened,
            streams_accepted: accepted,
            streams_refused: refused,
            outbound_in_flight: engine.outbound_in_flight,
            inbound_in_flight: engine.inbound_in_flight,
        }
    }
}
