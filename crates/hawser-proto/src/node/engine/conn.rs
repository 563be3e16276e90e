//! Connection inputs and writing: dialling, accepting, frames in, batches out, losses.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::event::{
    CloseReason, ConnId, DialError, Event, Refusal, RequestError, Transmit, WriteError,
};
use super::peer::ConnState;
use super::{dest_for_change, Engine};
use crate::node::{Delivery, FrameBatch, Member, MembershipError, NodeId, Role};
use crate::wire::node::Frame;

/// One connection the engine knows of.
#[derive(Clone, Copy, Debug)]
pub(super) struct Conn {
    pub peer: NodeId,
    /// This node dialled it (it carries this node's frames); else accepted (the peer's).
    pub outbound: bool,
    /// The address it runs through: dialled, or announced by the peer's hello.
    pub via: Option<SocketAddr>,
    /// When traffic on it was last reported to reachability.
    pub last_traffic: Option<Instant>,
    /// The shell closed it while a batch was being written: kept until that batch returns.
    pub closed: bool,
}

impl Engine {
    /// A new connection name.
    fn alloc_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Asks the shell to dial `id` (which has work and no connection).
    pub(super) fn dial(&mut self, now: Instant, id: NodeId) {
        let addrs = match self.membership.get(id) {
            Some(m) if !m.addrs.is_empty() => m.addrs.clone(),
            // No route: what waits expires.
            _ => return,
        };
        let conn = self.alloc_conn();
        let deadline = now + self.config.connect_timeout;
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return;
        };
        d.link = ConnState::Dialing { conn, deadline };
        self.conns.insert(
            conn,
            Conn {
                peer: id,
                outbound: true,
                via: None,
                last_traffic: None,
                closed: false,
            },
        );
        self.transmits.push_back(Transmit::Dial {
            conn,
            peer: id,
            addrs,
        });
    }

    /// A dial to `id` failed or timed out: counted, reported, backed off.
    pub(super) fn dial_failed(&mut self, now: Instant, id: NodeId) {
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return;
        };
        d.stats.connect_failures += 1;
        let delay = d.backoff.next_delay();
        d.link = ConnState::Backoff {
            until: now.checked_add(delay).unwrap_or(now),
        };
        if let Some(m) = self.membership.get(id) {
            let addrs = m.addrs.clone();
            self.reach_input(now, |r, now| {
                for a in addrs {
                    r.handle_send_failed(now, id, a);
                }
            });
        }
        // Requests waiting for this peer's answers cannot get them over no connection.
        self.fail_requests(id, &RequestError::Unreachable(id));
    }

    /// This node's connection `conn` to `id` through `via` is gone (not an idle close).
    fn lost(&mut self, now: Instant, id: NodeId, via: SocketAddr, send_failed: bool) {
        if let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) {
            d.link = ConnState::Idle;
        }
        self.event(Event::Disconnected { peer: id });
        self.reach_input(now, |r, now| {
            if send_failed {
                r.handle_send_failed(now, id, via);
            }
            r.handle_disconnected(now, id, via);
        });
        // Requests written on the lost connection may never be answered.
        self.fail_requests(id, &RequestError::Unreachable(id));
    }

    /// The shell's dial of `conn` ended: connected through `via`, or failed. A dial the engine
    /// gave up on (a `Close` was given for it) is ignored, and a connection it brings is
    /// closed.
    pub fn handle_dialed(
        &mut self,
        now: Instant,
        conn: ConnId,
        result: Result<SocketAddr, DialError>,
    ) {
        let now = self.clock(now);
        let current = self.conns.get(&conn).map(|c| c.peer).and_then(|peer| {
            let d = self.dests.get(&peer)?;
            matches!(d.link, ConnState::Dialing { conn: c, .. } if c == conn).then_some(peer)
        });
        let Some(id) = current else {
            self.stats.unknown_conns += 1;
            if result.is_ok() {
                let reason = CloseReason::Stale;
                self.transmits.push_back(Transmit::Close { conn, reason });
            }
            return;
        };
        let via = match result {
            Ok(via) => via,
            Err(_) => {
                self.conns.remove(&conn);
                self.dial_failed(now, id);
                self.kick(now, id);
                return;
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.via = Some(via);
        }
        if let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) {
            d.backoff.reset();
            if d.connected_before {
                d.stats.reconnects += 1;
            }
            d.connected_before = true;
            d.link = ConnState::Connected { conn, via };
            d.writable_signalled = false;
            d.last_active = now;
        }
        self.event(Event::Connected { peer: id });
        self.reach_input(now, |r, now| r.handle_connected(now, id, via));
        self.kick(now, id);
    }

    /// A connection from `peer` said hello, announcing where it listens: admitted (a member,
    /// or a newcomer when `admit_unknown`) with a name for it, or refused. The connection only
    /// carries the peer's frames to this node.
    ///
    /// # Errors
    /// [`Refusal`], counted in `EngineStats::refused_connections`: the shell closes it.
    pub fn handle_accepted(
        &mut self,
        now: Instant,
        peer: NodeId,
        announced: Option<SocketAddr>,
    ) -> Result<ConnId, Refusal> {
        let now = self.clock(now);
        let admitted = self.admit(now, peer, announced);
        if let Err(e) = admitted {
            self.stats.refused_connections += 1;
            return Err(e);
        }
        let conn = self.alloc_conn();
        self.inbound_conns += 1;
        self.conns.insert(
            conn,
            Conn {
                peer,
                outbound: false,
                via: announced,
                last_traffic: None,
                closed: false,
            },
        );
        if let Some(addr) = announced {
            self.reach_input(now, |r, now| r.handle_connected(now, peer, addr));
        }
        Ok(conn)
    }

    fn admit(
        &mut self,
        now: Instant,
        peer: NodeId,
        announced: Option<SocketAddr>,
    ) -> Result<(), Refusal> {
        if self.stopped {
            return Err(Refusal::Stopped);
        }
        if peer == self.id {
            return Err(Refusal::Itself);
        }
        if self.inbound_conns >= self.config.max_inbound_connections {
            return Err(Refusal::TooManyConnections);
        }
        if self.membership.contains(peer) {
            return Ok(());
        }
        if !self.config.admit_unknown || self.removed.contains(&peer) {
            return Err(Refusal::NotMember(peer));
        }
        let mut m = Member::without_addr(peer, Role::Temporary);
        m.addrs.extend(announced);
        match self.add_learned(now, m) {
            Ok(()) => Ok(()),
            Err(_) => Err(Refusal::MembershipFull),
        }
    }

    /// Adds a learned member, counted when refused.
    pub(super) fn add_learned(&mut self, now: Instant, m: Member) -> Result<(), MembershipError> {
        let id = m.id;
        if let Err(e) = self.membership.insert(m.clone()) {
            self.stats.learned_refused += 1;
            return Err(e);
        }
        self.learned.insert(id);
        if self.learned.len() > self.membership.max_nodes() {
            let membership = &self.membership;
            self.learned.retain(|p| membership.contains(*p));
        }
        self.event(Event::Learned(m));
        // Connect at once: it is there.
        self.poke(now, id);
        Ok(())
    }

    /// One frame body (kind byte first, no length prefix) received on `conn`. Application
    /// payloads become [`Event::Message`] (a slice of `frame`, not a copy); reachability
    /// events, pings and rpc messages are the engine's. A malformed frame is dropped and
    /// counted; one above `max_frame` closes the connection.
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Bytes) {
        let now = self.clock(now);
        let Some(c) = self.conns.get_mut(&conn).filter(|c| !c.closed) else {
            self.stats.unknown_conns += 1;
            return;
        };
        if self.stopped {
            return;
        }
        let (peer, via) = (c.peer, c.via);
        if frame.len() > self.config.max_frame {
            self.stats.oversized_frames += 1;
            if let Some(d) = self.dest_mut(peer) {
                d.stats.oversized_frames += 1;
            }
            self.transmits.push_back(Transmit::Close {
                conn,
                reason: CloseReason::Broken,
            });
            self.closed(now, conn);
            return;
        }
        if let (Some(via), Some(every)) = (via, self.reach.as_ref().map(|r| r.traffic_every)) {
            let due = c
                .last_traffic
                .is_none_or(|t| now.saturating_duration_since(t) >= every);
            if due {
                c.last_traffic = Some(now);
                self.reach_input(now, |r, now| r.handle_traffic(now, peer, via));
            }
        }
        let frame = match Frame::parse(frame) {
            Ok(f) => f,
            Err(_) => {
                self.stats.bad_frames += 1;
                return;
            }
        };
        match frame {
            Frame::App(payload) => self.deliver(peer, Delivery::Reliable, payload),
            Frame::Reach(payload) => {
                let via = via.or_else(|| self.membership.get(peer)?.addrs.first().copied());
                match via {
                    Some(via) => {
                        self.reach_input(now, |r, now| r.handle_event(now, peer, via, &payload))
                    }
                    None => self.stats.bad_frames += 1,
                }
            }
            Frame::Ping => {}
            // Keys belong to the shell's secure layer, which takes them before the engine.
            Frame::DatagramKey(_) => self.stats.bad_frames += 1,
            Frame::Rpc(body) => self.handle_rpc(now, peer, body),
        }
    }

    /// The shell's reader of `conn` found a frame announcing more than it accepts (its
    /// decoder refused it before reading it): counted as an oversized frame of the peer, and
    /// the connection is closed, as [`handle_frame`](Self::handle_frame) does for a frame
    /// above `max_frame`.
    pub fn handle_oversized(&mut self, now: Instant, conn: ConnId) {
        let now = self.clock(now);
        let Some(c) = self.conns.get(&conn).filter(|c| !c.closed) else {
            self.stats.unknown_conns += 1;
            return;
        };
        let peer = c.peer;
        self.stats.oversized_frames += 1;
        if let Some(d) = self.dest_mut(peer) {
            d.stats.oversized_frames += 1;
        }
        self.transmits.push_back(Transmit::Close {
            conn,
            reason: CloseReason::Broken,
        });
        self.closed(now, conn);
    }

    /// Counts a received message and hands it to the application; a sender outside the
    /// membership is counted and dropped.
    pub(super) fn deliver(&mut self, from: NodeId, delivery: Delivery, payload: Bytes) {
        if from != self.id {
            let Some(d) = self.dest_mut(from) else {
                self.stats.unknown_senders += 1;
                return;
            };
            d.stats.received += 1;
            d.stats.bytes_in += payload.len() as u64;
        }
        self.event(Event::Message {
            from,
            delivery,
            payload,
        });
    }

    /// Replaces `batch` with the next frames to write on `conn`: internal frames first
    /// (expired ones dropped), else application and rpc frames in order (stale ones dropped
    /// and counted), at most `batch_messages` and about `batch_bytes`. `false` when there is
    /// nothing, when `conn` is not this node's live connection, or while an earlier batch is
    /// being written. Hand the batch back with [`handle_written`](Self::handle_written).
    pub fn take_frames(&mut self, now: Instant, conn: ConnId, batch: &mut FrameBatch) -> bool {
        let now = self.clock(now);
        let Some(id) = self.live_outbound(conn) else {
            return false;
        };
        let config = &self.config;
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return false;
        };
        d.writable_signalled = false;
        if d.in_flight.is_some() {
            return false;
        }
        let (source, dropped, control_dropped) = d.take(now, config, batch);
        if let Some(source) = source {
            d.in_flight = Some((conn, source));
            d.last_active = now;
        }
        self.stats.control_dropped += control_dropped as u64;
        self.room_check(id, dropped);
        source.is_some()
    }

    /// The batch taken for `conn` was written (`Ok`), or the write failed after
    /// `WriteError::written` bytes: the frames lying whole in them count as sent, the other
    /// application frames are queued again at the head in order (internal ones are dropped,
    /// counted), and the connection is lost (a `Close` follows). `batch` is emptied and its
    /// buffer reused.
    pub fn handle_written(
        &mut self,
        now: Instant,
        conn: ConnId,
        batch: &mut FrameBatch,
        result: Result<(), WriteError>,
    ) {
        let now = self.clock(now);
        let Some(c) = self.conns.get(&conn).copied() else {
            self.stats.unknown_conns += 1;
            *batch = FrameBatch::default();
            return;
        };
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, c.peer) else {
            *batch = FrameBatch::default();
            return;
        };
        let Some((_, source)) = d.in_flight.filter(|(on, _)| *on == conn) else {
            *batch = FrameBatch::default();
            return;
        };
        d.in_flight = None;
        d.last_active = now;
        let written = match result {
            Ok(()) => batch.len(),
            Err(e) => batch.whole_in(e.written),
        };
        let lost = d.written(source, batch, written);
        self.stats.control_dropped += lost as u64;
        if c.closed {
            self.conns.remove(&conn);
        } else if result.is_err() {
            self.conns.remove(&conn);
            self.transmits.push_back(Transmit::Close {
                conn,
                reason: CloseReason::Broken,
            });
            if let Some(via) = c.via {
                self.lost(now, c.peer, via, true);
            }
        }
        self.room_check(c.peer, 0);
        self.kick(now, c.peer);
    }

    /// The shell's connection `conn` closed (by the peer, or broken). A dial still pending
    /// counts as failed; this node's live connection as lost.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId) {
        let now = self.clock(now);
        if !self.conns.contains_key(&conn) {
            self.stats.unknown_conns += 1;
            return;
        }
        self.closed(now, conn);
    }

    /// Forgets `conn` (kept while a batch on it is being written), and what it meant.
    fn closed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.closed {
            return;
        }
        let c = *c;
        let writing = self
            .dests
            .get(&c.peer)
            .is_some_and(|d| d.in_flight.is_some_and(|(on, _)| on == conn));
        if writing {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.closed = true;
            }
        } else {
            self.conns.remove(&conn);
        }
        if !c.outbound {
            self.inbound_conns = self.inbound_conns.saturating_sub(1);
            return;
        }
        let link = self.dests.get(&c.peer).map(|d| d.link);
        match link {
            Some(ConnState::Dialing { conn: on, .. }) if on == conn => {
                self.dial_failed(now, c.peer);
            }
            Some(ConnState::Connected { conn: on, via }) if on == conn => {
                self.lost(now, c.peer, via, false);
            }
            _ => {}
        }
        self.kick(now, c.peer);
    }

    /// The destination whose live, connected outbound connection `conn` is.
    fn live_outbound(&self, conn: ConnId) -> Option<NodeId> {
        let c = self.conns.get(&conn)?;
        let d = self.dests.get(&c.peer)?;
        matches!(d.link, ConnState::Connected { conn: on, .. } if on == conn).then_some(c.peer)
    }

    /// Member `id` was removed: its queue dropped, its connections closed, its requests
    /// failed.
    pub(super) fn forget_peer(&mut self, now: Instant, id: NodeId) {
        if let Some(d) = self.dests.remove(&id) {
            if let Some(t) = d.indexed {
                self.timers.remove(&(t, id));
            }
            self.close_link(now, id, d.link);
        }
        let inbound: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == id)
            .map(|(&k, _)| k)
            .collect();
        for conn in inbound {
            if let Some(c) = self.conns.remove(&conn) {
                if !c.outbound {
                    self.inbound_conns = self.inbound_conns.saturating_sub(1);
                }
                let reason = CloseReason::MembershipChanged;
                self.transmits.push_back(Transmit::Close { conn, reason });
            }
        }
        self.fail_requests(id, &RequestError::UnknownNode(id));
        self.forget_inbound(id);
    }

    /// Closes `id`'s outbound connection in state `link`, if any, for a membership change
    /// (kept, marked closed, while a batch on it is being written).
    fn close_link(&mut self, now: Instant, id: NodeId, link: ConnState) {
        let (conn, via) = match link {
            ConnState::Dialing { conn, .. } => (conn, None),
            ConnState::Connected { conn, via } => (conn, Some(via)),
            ConnState::Idle | ConnState::Backoff { .. } => return,
        };
        let writing = self
            .dests
            .get(&id)
            .is_some_and(|d| d.in_flight.is_some_and(|(on, _)| on == conn));
        match self.conns.get_mut(&conn) {
            Some(c) if writing => c.closed = true,
            _ => {
                self.conns.remove(&conn);
            }
        }
        let reason = CloseReason::MembershipChanged;
        self.transmits.push_back(Transmit::Close { conn, reason });
        if let Some(via) = via {
            self.event(Event::Disconnected { peer: id });
            self.reach_input(now, |r, now| r.handle_disconnected(now, id, via));
        }
    }

    /// Member `id`'s addresses changed: its connection is closed and dialled again (at once if
    /// there is work), its back-off reset.
    pub(super) fn reconnect(&mut self, now: Instant, id: NodeId) {
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return;
        };
        let old = std::mem::replace(&mut d.link, ConnState::Idle);
        d.backoff.reset();
        self.close_link(now, id, old);
        self.kick(now, id);
    }
}
