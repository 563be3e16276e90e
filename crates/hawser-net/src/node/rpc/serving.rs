//! The serving side: the handler of each protocol, and the cancel signal of each request
//! being handled.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use hawser_proto::node::engine::{InboundId, RespondError as EngineRespondError};
use hawser_proto::node::NodeId;
use hawser_proto::wire::rpc::Outcome;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bump;
use super::error::{RespondError, ServeError};
use super::inbound::{InboundRequest, InboundRequests};
use super::responder::{Responder, ServeCounters};
use crate::node::SendError;
use crate::session::{ProtocolId, FIRST_APPLICATION_ID};

/// The handlers, and the cancel signal of each request handed out (one per request the
/// engine serves: bounded by `rpc.max_inbound`).
#[derive(Debug)]
pub(crate) struct Serving {
    handlers: HashMap<ProtocolId, mpsc::Sender<InboundRequest>>,
    tokens: HashMap<InboundId, CancellationToken>,
    backlog: usize,
    max_response: usize,
    pub counters: Arc<ServeCounters>,
    stopped: bool,
}

impl Serving {
    /// No handler yet; each handler queues at most `backlog` requests, answers are at most
    /// `max_response` bytes.
    pub fn new(backlog: usize, max_response: usize) -> Serving {
        Serving {
            handlers: HashMap::new(),
            tokens: HashMap::new(),
            backlog: backlog.max(1),
            max_response,
            counters: Arc::default(),
            stopped: false,
        }
    }

    /// The receiver of `protocol`'s requests (see `Node::serve`).
    pub fn serve(&mut self, protocol: ProtocolId) -> Result<InboundRequests, ServeError> {
        if protocol.0 < FIRST_APPLICATION_ID {
            return Err(ServeError::Reserved(protocol));
        }
        if self.stopped {
            return Err(ServeError::Stopped);
        }
        if self.handlers.get(&protocol).is_some_and(|h| !h.is_closed()) {
            return Err(ServeError::AlreadyServed(protocol));
        }
        let (tx, rx) = mpsc::channel(self.backlog);
        self.handlers.insert(protocol, tx);
        Ok(InboundRequests::new(rx, protocol, self.counters.clone()))
    }

    /// Hands request `id` to its protocol's handler; the outcome to answer at once when
    /// there is none, or its queue is full (counted).
    #[allow(clippy::too_many_arguments)]
    pub fn dispatch(
        &mut self,
        responder: Weak<dyn Responder>,
        id: InboundId,
        from: NodeId,
        protocol: u32,
        payload: Bytes,
        deadline: Instant,
    ) -> Option<Outcome<'static>> {
        let protocol = ProtocolId(protocol);
        let Some(handler) = self.handlers.get(&protocol) else {
            bump(&self.counters.no_handler);
            return Some(Outcome::NoHandler);
        };
        let cancel = CancellationToken::new();
        let request = InboundRequest::new(
            responder,
            from,
            id,
            protocol,
            payload,
            deadline,
            cancel.clone(),
            self.max_response,
        );
        match handler.try_send(request) {
            Ok(()) => {
                self.tokens.insert(id, cancel);
                None
            }
            Err(mpsc::error::TrySendError::Full(mut request)) => {
                request.disarm();
                bump(&self.counters.overloaded);
                Some(Outcome::Overloaded)
            }
            Err(mpsc::error::TrySendError::Closed(mut request)) => {
                request.disarm();
                self.handlers.remove(&protocol);
                bump(&self.counters.no_handler);
                Some(Outcome::NoHandler)
            }
        }
    }

    /// The caller of `id` gave up (or its deadline passed): its handler is told.
    pub fn cancelled(&mut self, id: InboundId) {
        if let Some(token) = self.tokens.remove(&id) {
            token.cancel();
        }
    }

    /// Request `id` was answered or dropped.
    pub fn forget(&mut self, id: InboundId) {
        self.tokens.remove(&id);
    }

    /// The node stops: handlers' receivers end, every request handed out is cancelled.
    pub fn stop(&mut self) {
        self.stopped = true;
        self.handlers.clear();
        for (_, token) in self.tokens.drain() {
            token.cancel();
        }
    }
}

/// The engine's refusal of an answer, in the node's terms.
pub(crate) fn from_engine(e: EngineRespondError) -> RespondError {
    match e {
        EngineRespondError::UnknownRequest => RespondError::Cancelled,
        EngineRespondError::TooLarge { len, max } => RespondError::TooLarge { len, max },
        EngineRespondError::Unsent(e) => RespondError::Unsent(e),
        _ => RespondError::Unsent(SendError::Stopped),
    }
}
