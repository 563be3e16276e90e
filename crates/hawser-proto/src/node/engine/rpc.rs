//! Requests and responses: ids, the bounded tables both ways, deadlines, matching.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::config::RpcConfig;
use super::event::{Event, InboundId, RequestError, RequestId, RespondError, RpcStats, SendError};
use super::Engine;
use crate::node::NodeId;
use crate::session::ProtocolId;
use crate::wire::rpc::{truncate_message, Outcome, Part, Rpc as Msg};

/// A request of this node waiting for its response.
#[derive(Clone, Copy, Debug)]
struct Pending {
    to: NodeId,
    protocol: u32,
    deadline: Instant,
}

/// A request from a peer being served.
#[derive(Clone, Copy, Debug)]
struct Served {
    from: NodeId,
    /// The caller's id for it.
    remote: u64,
    deadline: Instant,
    /// When it is forgotten if neither answered nor cancelled: `rpc.serve_grace` after
    /// `deadline`, so that the caller's cancel, sent at its deadline, still finds it.
    forget_at: Instant,
}

/// The request tables of one engine; each bounded by [`RpcConfig`].
#[derive(Debug)]
pub(super) struct Rpc {
    config: RpcConfig,
    next_id: u64,
    next_inbound: u64,
    pending: BTreeMap<RequestId, Pending>,
    pending_per_peer: BTreeMap<NodeId, usize>,
    deadlines: BTreeSet<(Instant, RequestId)>,
    served: BTreeMap<InboundId, Served>,
    served_by_remote: BTreeMap<(NodeId, u64), InboundId>,
    served_per_peer: BTreeMap<NodeId, usize>,
    served_deadlines: BTreeSet<(Instant, InboundId)>,
    /// Peers reachability reports dead (bounded by its peer table).
    dead: BTreeSet<NodeId>,
    stats: RpcStats,
}

impl Rpc {
    pub fn new(config: RpcConfig) -> Rpc {
        Rpc {
            config,
            next_id: 0,
            next_inbound: 0,
            pending: BTreeMap::new(),
            pending_per_peer: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            served: BTreeMap::new(),
            served_by_remote: BTreeMap::new(),
            served_per_peer: BTreeMap::new(),
            served_deadlines: BTreeSet::new(),
            dead: BTreeSet::new(),
            stats: RpcStats::default(),
        }
    }

    pub fn stats(&self) -> RpcStats {
        let mut s = self.stats;
        s.outbound_in_flight = self.pending.len() as u64;
        s.inbound_in_flight = self.served.len() as u64;
        s
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let out = self.deadlines.first().map(|(t, _)| *t);
        let inb = self.served_deadlines.first().map(|(t, _)| *t);
        out.into_iter().chain(inb).min()
    }

    /// Reachability says `peer` is dead (`true`) or alive again.
    pub fn set_dead(&mut self, peer: NodeId, dead: bool) {
        if dead {
            self.dead.insert(peer);
        } else {
            self.dead.remove(&peer);
        }
    }

    fn take_pending(&mut self, id: RequestId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.deadlines.remove(&(p.deadline, id));
        if let Some(n) = self.pending_per_peer.get_mut(&p.to) {
            *n -= 1;
            if *n == 0 {
                self.pending_per_peer.remove(&p.to);
            }
        }
        Some(p)
    }

    fn take_served(&mut self, id: InboundId) -> Option<Served> {
        let s = self.served.remove(&id)?;
        self.served_deadlines.remove(&(s.forget_at, id));
        self.served_by_remote.remove(&(s.from, s.remote));
        if let Some(n) = self.served_per_peer.get_mut(&s.from) {
            *n -= 1;
            if *n == 0 {
                self.served_per_peer.remove(&s.from);
            }
        }
        Some(s)
    }
}

impl Engine {
    /// Sends a request for `protocol` to `to` (or to this node itself), answered by an
    /// [`Event::Response`] with its id: the peer's response, or a [`RequestError`] at the
    /// deadline (`timeout`, else `rpc.default_timeout`), when the connection to the peer fails
    /// or breaks, when reachability finds it dead, or when it is removed. The time left
    /// travels with the request.
    ///
    /// # Errors
    /// [`RequestError`] at once (nothing sent, no event): stopped, too large, unknown node,
    /// unreachable (reported dead, or no address), overloaded (`rpc.max_pending*`), queue full.
    pub fn request(
        &mut self,
        now: Instant,
        to: NodeId,
        protocol: u32,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Result<RequestId, RequestError> {
        let now = self.clock(now);
        if self.stopped {
            return Err(RequestError::Stopped);
        }
        let (len, max) = (payload.len(), self.rpc.config.max_request);
        let too_large = RequestError::TooLarge {
            part: Part::Request,
            len: len as u64,
            max: max as u64,
        };
        if len > max {
            return Err(too_large);
        }
        if to != self.id {
            match self.membership.get(to) {
                None => return Err(RequestError::UnknownNode(to)),
                Some(m) if m.addrs.is_empty() => return Err(RequestError::Unreachable(to)),
                Some(_) if self.rpc.dead.contains(&to) => {
                    return Err(RequestError::Unreachable(to))
                }
                Some(_) => {}
            }
        }
        let cfg = self.rpc.config;
        let per_peer = self.rpc.pending_per_peer.get(&to).copied().unwrap_or(0);
        if per_peer >= cfg.max_pending_per_peer || self.rpc.pending.len() >= cfg.max_pending {
            self.rpc.stats.outbound_overloaded += 1;
            return Err(RequestError::Overloaded { local: true });
        }
        let timeout = timeout.unwrap_or(cfg.default_timeout);
        let deadline = now.checked_add(timeout).unwrap_or(now);
        let id = RequestId(self.rpc.next_id);
        let msg = Msg::Request {
            id: id.0,
            protocol,
            timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            payload,
        };
        let header = msg.frame_header().ok_or(too_large)?;
        // Registered first: a request to this node itself is answered within this call.
        self.rpc.next_id += 1;
        self.rpc.pending.insert(
            id,
            Pending {
                to,
                protocol,
                deadline,
            },
        );
        *self.rpc.pending_per_peer.entry(to).or_default() += 1;
        self.rpc.deadlines.insert((deadline, id));
        if let Err(e) = self.push_rpc(now, to, header.as_slice(), payload) {
            self.rpc.take_pending(id);
            return Err(match e {
                SendError::QueueFull(n) => RequestError::QueueFull(n),
                SendError::UnknownNode(n) => RequestError::UnknownNode(n),
                SendError::Stopped => RequestError::Stopped,
                SendError::TooLarge { .. } => RequestError::TooLarge {
                    part: Part::Request,
                    len: len as u64,
                    max: max as u64,
                },
                _ => RequestError::Unreachable(to),
            });
        }
        self.rpc.stats.requests_sent += 1;
        Ok(id)
    }

    /// Gives up on request `id` of this node: no event will come for it, and a cancel is
    /// queued for the peer (best effort). `false` if it was not pending.
    pub fn cancel(&mut self, now: Instant, id: RequestId) -> bool {
        let now = self.clock(now);
        let Some(p) = self.rpc.take_pending(id) else {
            return false;
        };
        self.rpc.stats.cancelled += 1;
        self.send_cancel(now, p.to, id);
        true
    }

    fn send_cancel(&mut self, now: Instant, to: NodeId, id: RequestId) {
        let msg = Msg::Cancel { id: id.0 };
        if let Some(header) = msg.frame_header() {
            // Best effort: a full queue loses it, and the peer sees the deadline pass.
            let _ = self.push_rpc(now, to, header.as_slice(), &[]);
        }
    }

    /// Answers request `id` (from an [`Event::Request`]) with `outcome`: a payload
    /// (`Outcome::Ok`), or a refusal, `NoHandler`, `Overloaded` or `Omitted`, which the caller
    /// gets as the matching [`RequestError`].
    ///
    /// # Errors
    /// [`RespondError::UnknownRequest`] when it is not being served (answered, expired,
    /// cancelled); [`RespondError::TooLarge`] above `rpc.max_response` (the caller is answered
    /// `TooLarge`); [`RespondError::Unsent`] when the response could not be queued.
    pub fn respond(
        &mut self,
        now: Instant,
        id: InboundId,
        outcome: Outcome<'_>,
    ) -> Result<(), RespondError> {
        let now = self.clock(now);
        let Some(s) = self.rpc.take_served(id) else {
            return Err(RespondError::UnknownRequest);
        };
        if now >= s.deadline {
            self.rpc.stats.expired += 1;
            return Err(RespondError::UnknownRequest);
        }
        let max = self.rpc.config.max_response;
        match outcome {
            Outcome::Ok(p) if p.len() > max => {
                let len = p.len();
                let (part, l, m) = (Part::Response, len as u64, max as u64);
                let too_large = Outcome::TooLarge {
                    part,
                    len: l,
                    max: m,
                };
                self.answer(now, s.from, s.remote, too_large)?;
                Err(RespondError::TooLarge { len, max })
            }
            Outcome::Refused { code, message } => {
                let message = truncate_message(message);
                self.answer(now, s.from, s.remote, Outcome::Refused { code, message })
            }
            other => self.answer(now, s.from, s.remote, other),
        }
    }

    /// Queues a response for request `remote` of `to`.
    fn answer(
        &mut self,
        now: Instant,
        to: NodeId,
        remote: u64,
        outcome: Outcome<'_>,
    ) -> Result<(), RespondError> {
        let msg = Msg::Response {
            id: remote,
            outcome,
        };
        let pushed = match msg.frame_header() {
            Some(header) => self.push_rpc(now, to, header.as_slice(), msg.tail()),
            None => Err(SendError::TooLarge {
                len: msg.tail().len(),
                max: self.config.max_frame,
            }),
        };
        pushed.map_err(|e| {
            self.rpc.stats.responses_unsent += 1;
            RespondError::Unsent(e)
        })
    }

    /// Queues one rpc frame (`header` from `Rpc::frame_header`, then `tail`) for `to`, or
    /// handles it at once when `to` is this node.
    fn push_rpc(
        &mut self,
        now: Instant,
        to: NodeId,
        header: &[u8],
        tail: &[u8],
    ) -> Result<(), SendError> {
        if self.stopped {
            return Err(SendError::Stopped);
        }
        if to == self.id {
            // The frame's body: after the 4-byte length and the kind byte.
            let head = header.get(5..).unwrap_or_default();
            let mut body = BytesMut::with_capacity(head.len() + tail.len());
            body.extend_from_slice(head);
            body.extend_from_slice(tail);
            self.handle_rpc(now, to, body.freeze());
            return Ok(());
        }
        match self.membership.get(to) {
            None => return Err(SendError::UnknownNode(to)),
            Some(m) if m.addrs.is_empty() => return Err(SendError::NoAddress(to)),
            Some(_) => {}
        }
        let (len, max) = (header.len() + tail.len(), self.config.max_frame);
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        self.enqueue(now, to, header, tail)
    }

    /// The body of an rpc frame from `from`.
    pub(super) fn handle_rpc(&mut self, now: Instant, from: NodeId, body: Bytes) {
        if from != self.id && !self.membership.contains(from) {
            self.stats.unknown_senders += 1;
            return;
        }
        let msg = match Msg::parse(&body) {
            Ok(m) => m,
            Err(_) => {
                self.rpc.stats.bad_frames += 1;
                return;
            }
        };
        match msg {
            Msg::Request {
                id,
                protocol,
                timeout_ms,
                payload,
            } => {
                let payload = body.slice_ref(payload);
                self.on_request(now, from, id, protocol, timeout_ms, payload);
            }
            Msg::Response { id, outcome } => self.on_response(from, RequestId(id), outcome, &body),
            Msg::Cancel { id } => {
                let served = self.rpc.served_by_remote.get(&(from, id)).copied();
                if let Some(iid) = served {
                    self.rpc.take_served(iid);
                    self.rpc.stats.cancels_received += 1;
                    self.event(Event::RequestCancelled { id: iid });
                }
            }
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        from: NodeId,
        id: u64,
        protocol: u32,
        timeout_ms: u32,
        payload: Bytes,
    ) {
        let cfg = self.rpc.config;
        if payload.len() > cfg.max_request {
            let (len, max) = (payload.len() as u64, cfg.max_request as u64);
            let outcome = Outcome::TooLarge {
                part: Part::Request,
                len,
                max,
            };
            let _ = self.answer(now, from, id, outcome);
            return;
        }
        if timeout_ms == 0 {
            self.rpc.stats.expired += 1;
            return;
        }
        if self.rpc.served_by_remote.contains_key(&(from, id)) {
            // A second request with the id of one being served: not from a hawser node.
            self.rpc.stats.bad_frames += 1;
            return;
        }
        let per_peer = self.rpc.served_per_peer.get(&from).copied().unwrap_or(0);
        if per_peer >= cfg.max_inbound_per_peer || self.rpc.served.len() >= cfg.max_inbound {
            self.rpc.stats.inbound_overloaded += 1;
            let _ = self.answer(now, from, id, Outcome::Overloaded);
            return;
        }
        let iid = InboundId(self.rpc.next_inbound);
        self.rpc.next_inbound += 1;
        let deadline = now + Duration::from_millis(u64::from(timeout_ms));
        let forget_at = deadline.checked_add(cfg.serve_grace).unwrap_or(deadline);
        let served = Served {
            from,
            remote: id,
            deadline,
            forget_at,
        };
        self.rpc.served.insert(iid, served);
        self.rpc.served_by_remote.insert((from, id), iid);
        *self.rpc.served_per_peer.entry(from).or_default() += 1;
        self.rpc.served_deadlines.insert((forget_at, iid));
        self.rpc.stats.requests_received += 1;
        self.event(Event::Request {
            id: iid,
            from,
            protocol,
            payload,
            deadline,
        });
    }

    fn on_response(&mut self, from: NodeId, id: RequestId, outcome: Outcome<'_>, body: &Bytes) {
        if self.rpc.pending.get(&id).is_none_or(|p| p.to != from) {
            self.rpc.stats.late_responses += 1;
            return;
        }
        let Some(pending) = self.rpc.take_pending(id) else {
            return;
        };
        self.rpc.stats.responses_received += 1;
        let max = self.rpc.config.max_response;
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
            Outcome::NoHandler => Err(RequestError::NoHandler(ProtocolId(pending.protocol))),
            Outcome::Overloaded => Err(RequestError::Overloaded { local: false }),
            Outcome::TooLarge { part, len, max } => Err(RequestError::TooLarge { part, len, max }),
            Outcome::Omitted => Err(RequestError::ResponseOmitted),
        };
        self.event(Event::Response { id, result });
    }

    /// Fails every request in flight to `to` with `error`.
    pub(super) fn fail_requests(&mut self, to: NodeId, error: &RequestError) {
        if !self.rpc.pending_per_peer.contains_key(&to) {
            return;
        }
        let ids: Vec<RequestId> = self
            .rpc
            .pending
            .iter()
            .filter(|(_, p)| p.to == to)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.rpc.take_pending(id);
            let result = Err(error.clone());
            self.event(Event::Response { id, result });
        }
    }

    /// Forgets the requests `from` made (it was removed).
    pub(super) fn forget_inbound(&mut self, from: NodeId) {
        if !self.rpc.served_per_peer.contains_key(&from) {
            return;
        }
        let ids: Vec<InboundId> = self
            .rpc
            .served
            .iter()
            .filter(|(_, s)| s.from == from)
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.rpc.take_served(id);
        }
        self.rpc.dead.remove(&from);
    }

    /// Times out this node's requests and the requests served past their deadlines.
    pub(super) fn rpc_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.rpc.deadlines.first() {
            if deadline > now {
                break;
            }
            let Some(p) = self.rpc.take_pending(id) else {
                break;
            };
            self.rpc.stats.timeouts += 1;
            self.event(Event::Response {
                id,
                result: Err(RequestError::Timeout),
            });
            self.send_cancel(now, p.to, id);
        }
        while let Some(&(deadline, id)) = self.rpc.served_deadlines.first() {
            if deadline > now {
                break;
            }
            self.rpc.take_served(id);
            self.rpc.stats.expired += 1;
            self.event(Event::RequestCancelled { id });
        }
    }

    /// Fails every request of this node with `Stopped`, forgets those served.
    pub(super) fn rpc_stop(&mut self) {
        let ids: Vec<RequestId> = self.rpc.pending.keys().copied().collect();
        for id in ids {
            self.rpc.take_pending(id);
            let result = Err(RequestError::Stopped);
            self.event(Event::Response { id, result });
        }
        let served: Vec<InboundId> = self.rpc.served.keys().copied().collect();
        for id in served {
            self.rpc.take_served(id);
        }
    }

    /// Reachability reports `peer` dead or alive: requests to a dead peer fail with
    /// `Unreachable`, and new ones fail at once until it is alive.
    pub(super) fn set_dead(&mut self, peer: NodeId, dead: bool) {
        self.rpc.set_dead(peer, dead);
        if dead {
            self.fail_requests(peer, &RequestError::Unreachable(peer));
        }
    }
}
