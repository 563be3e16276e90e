//! The calling side: requests sent, matched to their responses, cancelled, failed.

use super::*;

impl RpcEngine {
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
            match link.push_rpc(to, &header, &payload) {
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
            let _ = link.push_rpc(to, &header, &[]);
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

    pub(super) fn on_response(&self, from: NodeId, id: u64, outcome: Outcome<'_>, body: &Bytes) {
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
