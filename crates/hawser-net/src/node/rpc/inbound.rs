//! The serving side: [`InboundRequests`], one protocol's queue of requests, and
//! [`InboundRequest`], one request with its answer to give.

use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use hawser_proto::node::engine::InboundId;
use hawser_proto::node::NodeId;
use hawser_proto::wire::rpc::{Outcome, Part};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::responder::{Responder, ServeCounters};
use super::{bump, RespondError};
use crate::session::ProtocolId;

/// The requests of one protocol, as [`Node::serve`](crate::node::Node::serve) gives them, in
/// arrival order. A request whose deadline passed, or that its caller cancelled, before it is
/// taken is dropped here (counted in `RpcStats::expired`), never handed out. Dropping the
/// receiver stops serving the protocol: later requests are answered `NoHandler`.
#[derive(Debug)]
pub struct InboundRequests {
    pub(super) rx: mpsc::Receiver<InboundRequest>,
    protocol: ProtocolId,
    counters: Arc<ServeCounters>,
}

impl InboundRequests {
    pub(super) fn new(
        rx: mpsc::Receiver<InboundRequest>,
        protocol: ProtocolId,
        counters: Arc<ServeCounters>,
    ) -> Self {
        InboundRequests {
            rx,
            protocol,
            counters,
        }
    }

    /// The protocol served.
    pub fn protocol(&self) -> ProtocolId {
        self.protocol
    }

    /// The next request, or `None` once the node has stopped.
    ///
    /// # Cancel safety
    /// Cancel safe: a request is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<InboundRequest> {
        loop {
            let mut request = self.rx.recv().await?;
            if request.is_expired() {
                bump(&self.counters.expired);
                request.discard();
                continue;
            }
            return Some(request);
        }
    }
}

/// One request to answer: [`respond`](Self::respond) or [`refuse`](Self::refuse) it.
/// Dropping it unanswered tells the caller `RequestError::ResponseOmitted`.
pub struct InboundRequest {
    responder: Weak<dyn Responder>,
    from: NodeId,
    id: InboundId,
    protocol: ProtocolId,
    payload: Bytes,
    deadline: Instant,
    cancel: CancellationToken,
    answered: bool,
    max_response: usize,
}

impl std::fmt::Debug for InboundRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundRequest")
            .field("from", &self.from)
            .field("id", &self.id)
            .field("protocol", &self.protocol)
            .field("len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl InboundRequest {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        responder: Weak<dyn Responder>,
        from: NodeId,
        id: InboundId,
        protocol: ProtocolId,
        payload: Bytes,
        deadline: Instant,
        cancel: CancellationToken,
        max_response: usize,
    ) -> Self {
        InboundRequest {
            responder,
            from,
            id,
            protocol,
            payload,
            deadline,
            cancel,
            answered: false,
            max_response,
        }
    }

    /// Leaves the request without an answer of its own (the node answers it).
    pub(super) fn disarm(&mut self) {
        self.answered = true;
    }

    /// The calling node.
    pub fn from(&self) -> NodeId {
        self.from
    }

    /// The request's protocol.
    pub fn protocol(&self) -> ProtocolId {
        self.protocol
    }

    /// The request's payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload out (leaving it empty), e.g. to decode it without a copy.
    pub fn take_payload(&mut self) -> Bytes {
        std::mem::take(&mut self.payload)
    }

    /// When the caller stops waiting: the time it gave the request when it queued it,
    /// counted from its arrival here (transit time is not subtracted, so it errs late).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the caller cancelled the request or its deadline passed: nobody waits for the
    /// answer.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled() || Instant::now() >= self.deadline
    }

    /// Resolves when the caller cancels the request (its future was dropped, or it timed
    /// out) or the deadline passes, whichever comes first.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn cancelled(&self) {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        tokio::select! {
            () = self.cancel.cancelled() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }

    fn is_expired(&self) -> bool {
        self.is_cancelled()
    }

    /// Answers with `payload`.
    ///
    /// # Errors
    /// [`RespondError::TooLarge`] above `RpcSettings::max_response` (the caller is told
    /// `TooLarge` instead); [`RespondError::Cancelled`] when nobody waits any more (nothing
    /// is sent); [`RespondError::Unsent`] when the response could not be queued.
    pub fn respond(mut self, payload: impl Into<Bytes>) -> Result<(), RespondError> {
        let payload = payload.into();
        let max = self.max_response;
        if payload.len() > max {
            let (len, part) = (payload.len(), Part::Response);
            let outcome = Outcome::TooLarge {
                part,
                len: len as u64,
                max: max as u64,
            };
            self.finish(outcome)?;
            return Err(RespondError::TooLarge { len, max });
        }
        self.finish(Outcome::Ok(&payload))
    }

    /// Answers with an error: the caller gets `RequestError::Refused { code, message }` (the
    /// message cut to 1,024 bytes).
    ///
    /// # Errors
    /// As [`respond`](Self::respond), but for `TooLarge`.
    pub fn refuse(mut self, code: u32, message: &str) -> Result<(), RespondError> {
        self.finish(Outcome::Refused { code, message })
    }

    /// Answers with `outcome`, unless nobody waits.
    fn finish(&mut self, outcome: Outcome<'_>) -> Result<(), RespondError> {
        self.answered = true;
        let Some(responder) = self.responder.upgrade() else {
            return Err(RespondError::Unsent(crate::node::SendError::Stopped));
        };
        if self.cancel.is_cancelled() || Instant::now() >= self.deadline {
            responder.forget(self.id);
            return Err(RespondError::Cancelled);
        }
        responder.respond(self.id, outcome)
    }

    /// Leaves the request unanswered: its caller gave up.
    fn discard(&mut self) {
        self.answered = true;
        if let Some(responder) = self.responder.upgrade() {
            responder.forget(self.id);
        }
    }
}

impl Drop for InboundRequest {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.finish(Outcome::Omitted);
        }
    }
}
