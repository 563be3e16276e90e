//! The send paths of the engine: where a message goes ([`Plan`]), the non-blocking and waiting
//! sends, and the internal control frames of reachability.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hawser_proto::node::{Delivery, Member, NodeId};
use tokio::sync::mpsc;
use tracing::debug;

use super::config::OversizeDatagram;
use super::core::Core;
use super::counters::Counters;
use super::error::SendError;
use super::incoming::Incoming;
use super::link::Link;
use super::peer::Peer;
use super::reach::Frame;

/// Where a message goes.
enum Plan {
    Local,
    Datagram(Member),
    Queue(Arc<Peer>),
}

impl<L: Link> Core<L> {
    fn plan(&self, to: NodeId, len: usize, delivery: Delivery) -> Result<Plan, SendError> {
        let (plan, max) = self.plan_route(to, len, delivery)?;
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        Ok(plan)
    }

    /// Where messages to `to` go, and the largest that may go that way; `len` only decides
    /// whether an oversized unreliable message is refused or sent reliably.
    fn plan_route(
        &self,
        to: NodeId,
        len: usize,
        delivery: Delivery,
    ) -> Result<(Plan, usize), SendError> {
        if self.is_stopping() {
            return Err(SendError::Stopped);
        }
        if to == self.id {
            return Ok((Plan::Local, usize::MAX));
        }
        let membership = self.members();
        let member = membership.get(to).ok_or(SendError::UnknownNode(to))?;
        let mut reliable = delivery == Delivery::Reliable;
        if !reliable && len > self.settings.datagram_limit {
            match self.settings.oversize_datagram {
                OversizeDatagram::Refuse => {
                    let max = self.settings.datagram_limit;
                    return Err(SendError::TooLarge { len, max });
                }
                OversizeDatagram::SendReliably => reliable = true,
            }
        }
        let max = self.link.route(&self.settings, member, reliable)?;
        let max = if reliable {
            max.min(self.settings.max_frame)
                .min(self.settings.queue.max_bytes)
        } else {
            max
        };
        if !reliable {
            return Ok((Plan::Datagram(member.clone()), max));
        }
        drop(membership);
        let peer = self.peer(to).ok_or(SendError::UnknownNode(to))?;
        Ok((Plan::Queue(peer), max))
    }

    /// Queues the messages at the front of `batch` for `to`, in order, and removes them:
    /// reliable ones to a peer under one lookup, one lock, one clock reading and at most one
    /// wake-up of its writer. Stops at the first message it cannot queue (a full queue, a
    /// payload too large), which stays at the front. Never blocks.
    ///
    /// `Ok(n)` with how many were queued; `Err` only when not even the first was.
    pub fn send_batch(
        self: &Arc<Self>,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<usize, SendError> {
        self.send_batch_counted(to, batch, delivery, true)
            .map_err(|(e, _)| e)
    }

    /// [`send_batch`](Self::send_batch); on failure also whether waiting for room could help
    /// (a full queue), and the refusal counted in `dropped_full` only when `count`.
    fn send_batch_counted(
        self: &Arc<Self>,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
        count: bool,
    ) -> Result<usize, (SendError, bool)> {
        let Some(first) = batch.front() else {
            return Ok(0);
        };
        let (plan, max) = self
            .plan_route(to, first.len(), delivery)
            .map_err(|e| (e, false))?;
        let Plan::Queue(peer) = plan else {
            // Local messages and datagrams go one by one.
            let mut sent = 0;
            while let Some(payload) = batch.pop_front() {
                if let Err(e) = self.send(to, payload.clone(), delivery) {
                    batch.push_front(payload);
                    let full = matches!(e, SendError::QueueFull(_));
                    return if sent == 0 { Err((e, full)) } else { Ok(sent) };
                }
                sent += 1;
            }
            return Ok(sent);
        };
        let mut st = peer.lock();
        if peer.is_cancelled() {
            return Err((SendError::Stopped, false));
        }
        let was_empty = st.queue.is_empty();
        let now = Instant::now();
        let mut sent = 0;
        let mut refused = None;
        while let Some(payload) = batch.pop_front() {
            if payload.len() > max {
                let len = payload.len();
                batch.push_front(payload);
                refused = Some((SendError::TooLarge { len, max }, false));
                break;
            }
            if !st.queue.has_room_for(payload.len()) {
                if count {
                    // Refused and counted by the queue itself; the copy is a reference count.
                    let _ = st.queue.push(now, payload.clone());
                }
                batch.push_front(payload);
                refused = Some((SendError::QueueFull(to), true));
                break;
            }
            // Room was checked under this lock.
            let _ = st.queue.push(now, payload);
            sent += 1;
        }
        if sent > 0 {
            self.start_writer(&peer, &mut st);
        }
        drop(st);
        if sent > 0 && was_empty {
            peer.wake.notify_one();
        }
        match refused {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        }
    }

    /// Like [`send_batch`](Self::send_batch), waiting for queue room instead of failing with
    /// `QueueFull`; returns once every message of `batch` is queued. Messages leave `batch` as
    /// they are queued, so a cancelled or failed call leaves the unsent ones there, in order.
    pub async fn send_batch_wait(
        self: &Arc<Self>,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let mut peer = None;
        while !batch.is_empty() {
            match self.send_batch_counted(to, batch, delivery, false) {
                Ok(_) => continue,
                Err((e, false)) => return Err(e),
                Err((_, true)) => {}
            }
            // Full: wait for room, registered before looking again (as `send_wait`).
            let peer = match &peer {
                Some(p) => p,
                None => peer.insert(self.peer(to).ok_or(SendError::UnknownNode(to))?),
            };
            let room = peer.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.send_batch_counted(to, batch, delivery, false) {
                Ok(_) => continue,
                Err((e, false)) => return Err(e),
                Err((_, true)) => {}
            }
            tokio::select! {
                () = room => {}
                () = peer.cancel.cancelled() => return Err(SendError::Stopped),
            }
        }
        Ok(())
    }

    /// Queues or sends a message; never blocks.
    pub fn send(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        match self.plan(to, payload.len(), delivery)? {
            Plan::Local => {
                let msg = Incoming {
                    from: self.id,
                    delivery,
                    payload,
                };
                self.sender
                    .try_send(msg)
                    .map_err(|_| SendError::QueueFull(to))
            }
            Plan::Datagram(member) => {
                self.link.send_datagram(self, &member, &payload)?;
                self.note_datagram_sent(to, payload.len());
                Ok(())
            }
            Plan::Queue(peer) => self.enqueue(&peer, payload),
        }
    }

    /// Like [`send`](Self::send), waiting for room instead of failing with `QueueFull`.
    pub async fn send_wait(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let stopped = || SendError::Stopped;
        match self.plan(to, payload.len(), delivery)? {
            Plan::Local => {
                let msg = Incoming {
                    from: self.id,
                    delivery,
                    payload,
                };
                tokio::select! {
                    r = self.sender.send(msg) => r.map_err(|_| stopped()),
                    () = self.cancel.cancelled() => Err(stopped()),
                }
            }
            Plan::Datagram(member) => {
                let len = payload.len();
                tokio::select! {
                    r = self.link.send_datagram_wait(self, member, payload) => r?,
                    () = self.cancel.cancelled() => return Err(stopped()),
                }
                self.note_datagram_sent(to, len);
                Ok(())
            }
            Plan::Queue(peer) => {
                // The common case first: room at once, no waiter registered.
                let mut payload = match self.enqueue_if_room(&peer, payload, true) {
                    Ok(result) => return result,
                    Err(payload) => payload,
                };
                loop {
                    let room = peer.room.notified();
                    tokio::pin!(room);
                    room.as_mut().enable();
                    payload = match self.enqueue_if_room(&peer, payload, true) {
                        Ok(result) => return result,
                        Err(payload) => payload,
                    };
                    tokio::select! {
                        () = room => {}
                        () = peer.cancel.cancelled() => return Err(stopped()),
                    }
                }
            }
        }
    }

    /// A reliable message queued at once when its queue has room (`Ok` with the outcome,
    /// also for a refusal that waiting would not change), else the payload back for
    /// [`send_wait`](Self::send_wait). Local messages and datagrams always come back.
    pub fn send_if_room(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<Result<(), SendError>, Bytes> {
        match self.plan(to, payload.len(), delivery) {
            // A refusal is counted by `send_wait`, which tries again at once.
            Ok(Plan::Queue(peer)) => self.enqueue_if_room(&peer, payload, false),
            Ok(Plan::Local | Plan::Datagram(_)) => Err(payload),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Like `send`, refusing a destination whose lease does not hold.
    pub fn send_alive(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if self.cancel.is_cancelled() {
            return Err(SendError::Stopped);
        }
        if to != self.id {
            if !self.is_member(to) {
                return Err(SendError::UnknownNode(to));
            }
            if !self.is_alive(to) {
                return Err(SendError::NotAlive(to));
            }
        }
        self.send(to, payload, delivery)
    }

    fn enqueue(self: &Arc<Self>, peer: &Arc<Peer>, payload: Bytes) -> Result<(), SendError> {
        self.enqueue_if_room(peer, payload, true)
            .unwrap_or(Err(SendError::QueueFull(peer.id)))
    }

    /// Queues a payload, or gives it back when the queue is full (the refusal counted in
    /// `dropped_full` when `count`), so that a waiting send need not keep a copy. `Ok` with the outcome
    /// otherwise (`Stopped` once the peer is cancelled).
    fn enqueue_if_room(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        payload: Bytes,
        count: bool,
    ) -> Result<Result<(), SendError>, Bytes> {
        let mut st = peer.lock();
        if peer.is_cancelled() {
            return Ok(Err(SendError::Stopped));
        }
        if !st.queue.has_room_for(payload.len()) {
            if !count {
                return Err(payload);
            }
            // Refused and counted by the queue itself; the copy is a reference count.
            if let Err(full) = st.queue.push(Instant::now(), payload.clone()) {
                debug!(node = %self.id, peer = %peer.id, %full, "message refused: queue full");
            }
            return Err(payload);
        }
        // A writer that has not yet taken what is queued takes this message along: it looks
        // at the queue under this lock before it waits (`writer`), so only the message that
        // makes the queue non-empty wakes it.
        let was_empty = st.queue.is_empty();
        if let Err(full) = st.queue.push(Instant::now(), payload) {
            // Not reached: room was checked under the same lock.
            debug!(node = %self.id, peer = %peer.id, %full, "message refused: queue full");
            return Ok(Err(SendError::QueueFull(peer.id)));
        }
        self.start_writer(peer, &mut st);
        drop(st);
        if was_empty {
            peer.wake.notify_one();
        }
        Ok(Ok(()))
    }

    fn note_datagram_sent(&self, to: NodeId, len: usize) {
        if let Some(peer) = self.peer(to) {
            let mut st = peer.lock();
            st.stats.sent += 1;
            st.stats.bytes_out += len as u64;
        }
    }

    /// Queues an internal frame for member `to` (dropping the oldest beyond the bound) and
    /// makes sure its writer runs.
    pub fn push_control(self: &Arc<Self>, to: NodeId, frame: Frame) {
        let Some(peer) = self.peer(to) else {
            return;
        };
        let mut st = peer.lock();
        if peer.cancel.is_cancelled() {
            return;
        }
        // Straight to the connection's control stream when nothing older waits here, so a
        // writer busy with a large application message does not hold it back.
        let mut frame = frame;
        if let (true, Some(tx)) = (st.control.is_empty(), st.control_tx.as_ref()) {
            match tx.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f)) => {
                    frame = f;
                }
            }
        }
        if st.control.len() >= self.settings.reach.max_control_frames {
            st.control.pop_front();
            Counters::bump(&self.counters.control_dropped);
        }
        st.control.push_back((Instant::now(), frame));
        self.start_writer(&peer, &mut st);
        drop(st);
        peer.wake.notify_one();
    }

    /// Opens a connection to member `to` if there is none and nothing waits for it.
    pub fn poke(self: &Arc<Self>, to: NodeId) {
        if self.reach.is_none() {
            return;
        }
        self.open_session(to);
    }

    /// Like `poke`, with or without reachability: opens the session that brings a datagram
    /// key (`super::datagram`).
    pub fn open_session(self: &Arc<Self>, to: NodeId) {
        if to == self.id {
            return;
        }
        let Some(member) = self.membership_of(to) else {
            return;
        };
        if self.link.route(&self.settings, &member, true).is_err() {
            return;
        }
        let Some(peer) = self.peer(to) else {
            return;
        };
        let idle = {
            let st = peer.lock();
            !st.connected && st.control.is_empty() && st.queue.is_empty()
        };
        if idle {
            self.push_control(to, Frame::Ping);
        }
    }
}
