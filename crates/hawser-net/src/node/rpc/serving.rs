//! The serving side: requests received, checked against the caps, handed to their
//! handler, answered.

use super::*;

impl RpcEngine {
    pub(super) fn on_request(
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
    pub(super) fn take_inbound(&self, from: NodeId, id: u64) -> Option<CancellationToken> {
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
    pub(super) fn answer(
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
        match link.push_rpc(from, &header, msg.tail()) {
            Ok(()) => Ok(()),
            // A handler's answer waits for room until the request's deadline; the engine's own
            // refusals (no deadline) do not, so a flood of refused requests spawns nothing.
            Err(SendError::QueueFull(_)) => match deadline {
                Some(deadline) => {
                    self.answer_later(link, from, header, msg.tail().to_vec(), deadline);
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
        link: Arc<dyn FrameSink>,
        from: NodeId,
        header: FrameHeader,
        tail: Vec<u8>,
        deadline: Instant,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            bump(&self.counters.responses_unsent);
            return;
        };
        let id = self.id;
        rt.spawn(async move {
            loop {
                match link.push_rpc(from, &header, &tail) {
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
}
