//! Sending: where a message goes (this node, a datagram, a destination's queue), broadcasts,
//! datagrams received, and the internal control frames.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::event::{BroadcastReport, SendError, Transmit};
use super::{Engine, OversizeDatagram};
use crate::node::{Delivery, Group, NodeId};
use crate::wire::node::{app_frame_header, Datagram, FrameKind, FRAME_KIND_LEN, MAX_APP_PAYLOAD};

/// An internal frame for a destination's control queue.
pub(super) enum Control<'a> {
    /// A reachability event (`wire::reach`).
    Reach(&'a [u8]),
    /// A ping: opens the connection.
    Ping,
}

impl Engine {
    /// Sends `payload` to `to`. Reliable: copied into `to`'s bounded queue (the only copy and,
    /// beyond the queue's buffers, no allocation), written in order once connected (the first
    /// message dials). Unreliable: one datagram, given as [`Transmit::Datagram`]. To this node
    /// itself: an [`Event::Message`](super::Event::Message) at once.
    ///
    /// # Errors
    /// [`SendError`]: stopped, unknown node, too large (above `max_frame` for reliable
    /// messages, `max_datagram` for unreliable ones unless `oversize_datagram` sends them
    /// reliably), queue full (counted; an [`Event::Room`](super::Event::Room) follows when it
    /// drained to half), no address.
    pub fn send(
        &mut self,
        now: Instant,
        to: NodeId,
        payload: &[u8],
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let now = self.clock(now);
        if self.stopped {
            return Err(SendError::Stopped);
        }
        if to == self.id {
            if self.events.len() >= self.config.max_events {
                return Err(SendError::QueueFull(to));
            }
            self.deliver(to, delivery, Bytes::copy_from_slice(payload));
            return Ok(());
        }
        let Some(member) = self.membership.get(to) else {
            return Err(SendError::UnknownNode(to));
        };
        let len = payload.len();
        let delivery = if delivery == Delivery::Unreliable
            && len > self.config.max_datagram
            && self.config.oversize_datagram == OversizeDatagram::SendReliably
        {
            Delivery::Reliable
        } else {
            delivery
        };
        let Some(&addr) = member.addrs.first() else {
            return Err(SendError::NoAddress(to));
        };
        match delivery {
            Delivery::Unreliable => self.send_datagram(to, addr, payload),
            Delivery::Reliable => {
                let max = self.max_reliable();
                if len > max {
                    return Err(SendError::TooLarge { len, max });
                }
                let Some(header) = app_frame_header(len) else {
                    return Err(SendError::TooLarge { len, max });
                };
                self.enqueue(now, to, &header, payload)
            }
        }
    }

    /// The largest reliable payload: its frame fits `max_frame`, the queue and the format.
    pub(super) fn max_reliable(&self) -> usize {
        (self.config.max_frame.saturating_sub(FRAME_KIND_LEN))
            .min(self.config.queue.max_bytes)
            .min(MAX_APP_PAYLOAD)
    }

    /// Queues one frame (`header` then `tail`) for member `to`, and makes its connection
    /// progress.
    pub(super) fn enqueue(
        &mut self,
        now: Instant,
        to: NodeId,
        header: &[u8],
        tail: &[u8],
    ) -> Result<(), SendError> {
        let Some(d) = self.dest_mut(to) else {
            return Err(SendError::UnknownNode(to));
        };
        if d.queue.push(now, header, tail).is_err() {
            d.want_room = true;
            return Err(SendError::QueueFull(to));
        }
        self.kick(now, to);
        Ok(())
    }

    /// [`send`](Self::send), refusing a destination whose lease does not hold: for messages
    /// that are worth nothing once late (a heartbeat, a vote), where queueing for a dead peer
    /// until the deadline only wastes the queue. To this node itself it always sends.
    ///
    /// # Errors
    /// [`SendError::NotAlive`] when reachability reports `to` dead or does not know it (and
    /// always with reachability off); otherwise as [`send`](Self::send).
    pub fn send_alive(
        &mut self,
        now: Instant,
        to: NodeId,
        payload: &[u8],
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if self.stopped {
            return Err(SendError::Stopped);
        }
        if to != self.id {
            if !self.membership.contains(to) {
                return Err(SendError::UnknownNode(to));
            }
            if !self.is_alive(to) {
                return Err(SendError::NotAlive(to));
            }
        }
        self.send(now, to, payload, delivery)
    }

    fn send_datagram(
        &mut self,
        to: NodeId,
        addr: SocketAddr,
        payload: &[u8],
    ) -> Result<(), SendError> {
        let (len, max) = (payload.len(), self.config.max_datagram);
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        if self.transmits.len() >= self.config.max_events {
            return Err(SendError::QueueFull(to));
        }
        let datagram = Datagram {
            from: self.id.0,
            to: to.0,
            payload,
        };
        let mut out = BytesMut::with_capacity(datagram.buffer_len());
        datagram.emit(&mut out);
        self.transmits.push_back(Transmit::Datagram {
            to,
            addr,
            payload: out.freeze(),
        });
        if let Some(d) = self.dest_mut(to) {
            d.stats.sent += 1;
            d.stats.bytes_out += len as u64;
        }
        Ok(())
    }

    /// Sends `payload` to every member of `group` but this node, each as
    /// [`send`](Self::send) would; the outcome per destination, by increasing id.
    pub fn broadcast(
        &mut self,
        now: Instant,
        group: Group,
        payload: &[u8],
        delivery: Delivery,
    ) -> BroadcastReport {
        let targets = self.membership.select(group, Some(self.id));
        let outcomes = targets
            .into_iter()
            .map(|to| (to, self.send(now, to, payload, delivery)))
            .collect();
        BroadcastReport { outcomes }
    }

    /// One datagram received from `from`: a `wire::node` datagram envelope for this node from
    /// a member becomes an [`Event::Message`](super::Event::Message) (its payload a slice of `datagram`). Malformed
    /// ones are counted in `malformed_datagrams`; those for another node or from a
    /// non-member in `unknown_senders`. The source address is not checked (a shell with
    /// sealed datagrams authenticates the sender).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        let _ = (self.clock(now), from);
        if self.stopped {
            return;
        }
        let Ok(d) = Datagram::parse(&datagram) else {
            self.stats.malformed_datagrams += 1;
            return;
        };
        let sender = NodeId(d.from);
        if d.to != self.id.0 || sender == self.id || !self.membership.contains(sender) {
            self.stats.unknown_senders += 1;
            return;
        }
        let payload = datagram.slice_ref(d.payload);
        self.deliver(sender, Delivery::Unreliable, payload);
    }

    /// Queues an internal frame for member `to` (dropping the oldest beyond
    /// `max_control_frames`, counted) and makes its connection progress.
    pub(super) fn push_control(&mut self, now: Instant, to: NodeId, frame: Control<'_>) {
        if self.stopped || to == self.id {
            return;
        }
        let max = self.config.max_control_frames;
        let mut scratch = std::mem::take(&mut self.scratch);
        let Some(d) = self.dest_mut(to) else {
            self.scratch = scratch;
            return;
        };
        let mut dropped = 0;
        while d.control.len() >= max {
            // The oldest goes (taking one from the head); what expired goes with it.
            let stale = d.control.take(now, 1, 0, &mut scratch);
            dropped += stale + scratch.len();
            d.control.recycle(&mut scratch);
        }
        let (body, kind): (&[u8], FrameKind) = match frame {
            Control::Reach(payload) => (payload, FrameKind::Reach),
            Control::Ping => (&[], FrameKind::Ping),
        };
        // Reachability payloads are at most a few KiB: the length fits.
        let len = u32::try_from(body.len() + FRAME_KIND_LEN).unwrap_or(u32::MAX);
        let [a, b, c, e] = len.to_be_bytes();
        let _ = d.control.push(now, &[a, b, c, e, kind.byte()], body);
        self.scratch = scratch;
        self.stats.control_dropped += dropped as u64;
        self.kick(now, to);
    }

    /// A datagram the shell has authenticated and opened (sealed datagrams): `payload` from
    /// member `from` becomes an [`Event::Message`](super::Event::Message), counted as
    /// [`handle_datagram`](Self::handle_datagram) counts it; from a non-member it is dropped
    /// and counted in `unknown_senders`.
    pub fn handle_opened_datagram(&mut self, now: Instant, from: NodeId, payload: Bytes) {
        self.clock(now);
        if self.stopped {
            return;
        }
        if from == self.id || !self.membership.contains(from) {
            self.stats.unknown_senders += 1;
            return;
        }
        self.deliver(from, Delivery::Unreliable, payload);
    }

    /// Opens a connection to member `to` (a ping frame) if it has an address and nothing is
    /// connected or waiting for it, with or without reachability: for a shell whose datagrams
    /// need a key that only a connection brings, or that wants a connection for streams.
    pub fn connect(&mut self, now: Instant, to: NodeId) {
        let now = self.clock(now);
        if self.stopped || to == self.id {
            return;
        }
        if self.membership.get(to).is_none_or(|m| m.addrs.is_empty()) {
            return;
        }
        let idle = self
            .dests
            .get(&to)
            .is_none_or(|d| !d.is_connected() && !d.has_work());
        if idle {
            self.push_control(now, to, Control::Ping);
        }
    }

    /// Opens a connection to member `to` (a ping) if it has an address and nothing is
    /// connected or waiting for it; only with reachability.
    pub(super) fn poke(&mut self, now: Instant, to: NodeId) {
        if self.reach.is_none() || to == self.id {
            return;
        }
        if self.membership.get(to).is_none_or(|m| m.addrs.is_empty()) {
            return;
        }
        let idle = self
            .dests
            .get(&to)
            .is_none_or(|d| !d.is_connected() && !d.has_work());
        if idle {
            self.push_control(now, to, Control::Ping);
        }
    }
}
