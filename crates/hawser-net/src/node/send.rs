//! The send paths of the engine: where a message goes ([`Plan`]), the non-blocking and waiting
//! sends, and the internal control frames of reachability.

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use hawser_proto::node::{Delivery, Member, NodeId};
use hawser_proto::wire::node::{app_frame_header, MAX_APP_PAYLOAD};
use hawser_proto::wire::rpc::FrameHeader;
use tokio::sync::mpsc;
use tracing::debug;

use super::config::OversizeDatagram;
use super::connector::Connector;
use super::core::Core;
use super::counters::Counters;
use super::error::SendError;
use super::incoming::Incoming;
use super::network::{send_each, send_each_waiting};
use super::peer::{Peer, PeerState};
use super::reach::Frame;
use super::rpc::{FrameSink, NodeStream, StreamError};
use crate::session::ProtocolId;

/// Most payload bytes a batch send copies into a queue under one hold of its lock (16 KiB):
/// a batch of large messages would otherwise keep the writer from the queue while it is
/// copied.
const LOCK_SLICE: usize = 16 * 1024;

/// Where a message goes.
enum Plan {
    Local,
    Datagram(Member),
    Queue(Arc<Peer>),
}

impl<L: Connector> Core<L> {
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
        let max = self.connector.route(&self.settings, member, reliable)?;
        let max = if reliable {
            max.min(self.settings.max_frame)
                .min(self.settings.queue.max_bytes)
                // The frame format's own bound (`max_frame`, 10 MiB by default, is lower).
                .min(MAX_APP_PAYLOAD)
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
    pub fn try_send_batch(
        self: &Arc<Self>,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<usize, SendError> {
        let Some(first) = batch.front() else {
            return Ok(0);
        };
        match self.plan_route(to, first.len(), delivery)? {
            (Plan::Queue(peer), max) => self
                .enqueue_batch(&peer, batch, max, true)
                .map_err(|(e, _)| e),
            // Local messages and datagrams go one by one.
            _ => send_each(batch, |payload| self.try_send(to, payload, delivery)),
        }
    }

    /// Like [`try_send_batch`](Self::try_send_batch), waiting for queue room instead of failing with
    /// `QueueFull`; returns once every message of `batch` is queued. Messages leave `batch` as
    /// they are queued, so a cancelled or failed call leaves the unsent ones there, in order.
    pub async fn send_batch(
        self: &Arc<Self>,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let Some(first) = batch.front() else {
            return Ok(());
        };
        let (Plan::Queue(peer), max) = self.plan_route(to, first.len(), delivery)? else {
            // Local messages and datagrams wait one by one, each where it waits.
            return send_each_waiting(batch, |payload| self.send(to, payload, delivery)).await;
        };
        // `Some` once the batch is queued or failed for good; `None` to wait for room.
        let settled = |r: Result<usize, (SendError, bool)>, batch: &VecDeque<Bytes>| match r {
            Ok(_) if batch.is_empty() => Some(Ok(())),
            // A full queue, perhaps after queuing some: wait (a payload too large behind
            // them is refused by the next attempt).
            Ok(_) | Err((_, true)) => None,
            Err((e, false)) => Some(Err(e)),
        };
        loop {
            if let Some(done) = settled(self.enqueue_batch(&peer, batch, max, false), batch) {
                return done;
            }
            // Registered before looking again, so that room freed meanwhile is not missed.
            let room = peer.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(done) = settled(self.enqueue_batch(&peer, batch, max, false), batch) {
                return done;
            }
            tokio::select! {
                () = room => {}
                () = peer.cancel.cancelled() => return Err(SendError::Stopped),
            }
        }
    }

    /// Queues the messages at the front of `batch` (each at most `max` bytes) for `peer` with
    /// one clock reading, under one lock per [`LOCK_SLICE`] bytes copied; stops at the first
    /// that does not fit or is too large. On failure (nothing queued), also whether waiting
    /// for room could help; a refusal for a full queue is counted in `dropped_full` only when
    /// `count`.
    fn enqueue_batch(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        batch: &mut VecDeque<Bytes>,
        max: usize,
        count: bool,
    ) -> Result<usize, (SendError, bool)> {
        let now = self.queue_clock.now();
        let mut sent = 0;
        let mut refused = None;
        while refused.is_none() && !batch.is_empty() {
            let mut st = peer.lock();
            if peer.is_cancelled() {
                refused = Some((SendError::Stopped, false));
                break;
            }
            let was_empty = st.queue.is_empty();
            let here;
            (here, refused) = self.push_slice(peer, &mut st, batch, now, max, count);
            if here > 0 {
                sent += here;
                self.queued(peer, st, was_empty);
                // Copied into the queue: the caller's buffers are freed outside the lock.
                batch.drain(..here);
            }
        }
        match refused {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        }
    }

    /// Under one hold of the queue's lock, copies messages from the front of `batch` into the
    /// queue until [`LOCK_SLICE`] bytes are copied (letting the writer take what is queued
    /// while the rest is copied) or one is refused: how many, and the refusal. The messages
    /// queued stay in `batch` for the caller to drop once the lock is released (freeing the
    /// caller's buffers is no work for the writer to wait on); the refused one stays behind
    /// them.
    fn push_slice(
        &self,
        peer: &Peer,
        st: &mut PeerState,
        batch: &VecDeque<Bytes>,
        now: Instant,
        max: usize,
        count: bool,
    ) -> (usize, Option<(SendError, bool)>) {
        let (mut here, mut copied) = (0, 0);
        while copied < LOCK_SLICE {
            let Some(payload) = batch.get(here) else {
                break;
            };
            let len = payload.len();
            if len > max {
                return (here, Some((SendError::TooLarge { len, max }, false)));
            }
            if self.push_locked(peer, st, now, payload, count).is_err() {
                return (here, Some((SendError::QueueFull(peer.id), true)));
            }
            here += 1;
            copied += len;
        }
        (here, None)
    }

    /// Queues or sends a message; never blocks.
    pub fn try_send(
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
                self.connector.send_datagram(self, &member, &payload)?;
                self.note_datagram_sent(to, payload.len());
                Ok(())
            }
            Plan::Queue(peer) => self.enqueue(&peer, payload),
        }
    }

    /// Like [`try_send`](Self::try_send), waiting for room instead of failing with `QueueFull`.
    pub async fn send(
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
                    r = self.connector.send_datagram_wait(self, member, payload) => r?,
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
    /// [`send`](Self::send). Local messages and datagrams always come back.
    pub fn send_if_room(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<Result<(), SendError>, Bytes> {
        match self.plan(to, payload.len(), delivery) {
            // A refusal is counted by `try_send`, which tries again at once.
            Ok(Plan::Queue(peer)) => self.enqueue_if_room(&peer, payload, false),
            Ok(Plan::Local | Plan::Datagram(_)) => Err(payload),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Like `try_send`, refusing a destination whose lease does not hold.
    pub fn try_send_alive(
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
        self.try_send(to, payload, delivery)
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
        let was_empty = st.queue.is_empty();
        let now = self.queue_clock.now();
        if self
            .push_locked(peer, &mut st, now, &payload, count)
            .is_err()
        {
            return Err(payload);
        }
        self.queued(peer, st, was_empty);
        // Copied into the queue: the caller's buffer is freed here, outside the lock.
        drop(payload);
        Ok(Ok(()))
    }

    /// Copies `payload` into `peer`'s locked state `st` as a frame (the caller then frees its
    /// buffer, on its own thread and after the lock), or fails when the queue is full (the
    /// refusal counted in `dropped_full` when `count`).
    fn push_locked(
        &self,
        peer: &Peer,
        st: &mut PeerState,
        now: Instant,
        payload: &Bytes,
        count: bool,
    ) -> Result<(), QueueIsFull> {
        // `plan_route` bounds reliable payloads by `MAX_APP_PAYLOAD`, so a header exists.
        let header =
            app_frame_header(payload.len()).filter(|_| st.queue.has_room_for(payload.len()));
        if let Some(header) = header {
            // Room was checked under this lock: the push cannot fail.
            let _ = st.queue.push(now, &header, payload);
            return Ok(());
        }
        if count {
            let full = st.queue.refuse();
            debug!(node = %self.id, peer = %peer.id, %full, "message refused: queue full");
        }
        Err(QueueIsFull)
    }

    /// After messages were queued under `st`: makes sure `peer`'s writer runs, and wakes it if
    /// the queue was empty before. A writer that has not yet taken what was queued takes these
    /// along: it looks at the queue under this lock before it waits (`writer`), so only the
    /// message that makes the queue non-empty wakes it.
    fn queued(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        mut st: MutexGuard<'_, PeerState>,
        was_empty: bool,
    ) {
        self.start_writer(peer, &mut st);
        drop(st);
        if was_empty {
            peer.wake.notify_one();
        }
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
        if self.connector.route(&self.settings, &member, true).is_err() {
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

/// [`Core::push_locked`] found no room.
struct QueueIsFull;

impl<L: Connector> Core<L> {
    /// Queues a frame of its own kind (`header` then `tail`) for `peer`, or fails at once
    /// with `QueueFull` (counted in `dropped_full`).
    fn enqueue_frame(
        self: &Arc<Self>,
        peer: &Arc<Peer>,
        header: &[u8],
        tail: &[u8],
    ) -> Result<(), SendError> {
        let mut st = peer.lock();
        if peer.is_cancelled() {
            return Err(SendError::Stopped);
        }
        if !st.queue.has_room_for(tail.len()) {
            let full = st.queue.refuse();
            debug!(node = %self.id, peer = %peer.id, %full, "rpc frame refused: queue full");
            return Err(SendError::QueueFull(peer.id));
        }
        let was_empty = st.queue.is_empty();
        // Room was checked under this lock: the push cannot fail.
        let _ = st.queue.push(self.queue_clock.now(), header, tail);
        self.queued(peer, st, was_empty);
        Ok(())
    }
}

impl<L: Connector> FrameSink for Core<L> {
    fn push_rpc(&self, to: NodeId, header: &FrameHeader, tail: &[u8]) -> Result<(), SendError> {
        if self.is_stopping() {
            return Err(SendError::Stopped);
        }
        if to == self.id {
            // The frame's body: the message, after the frame's length and kind byte.
            let head = header.message_head();
            let mut body = bytes::BytesMut::with_capacity(head.len() + tail.len());
            body.extend_from_slice(head);
            body.extend_from_slice(tail);
            self.rpc.handle_frame(self.id, body.freeze());
            return Ok(());
        }
        let Some(core) = self.myself() else {
            return Err(SendError::Stopped);
        };
        match core.plan(to, tail.len(), Delivery::Reliable)? {
            Plan::Queue(peer) => core.enqueue_frame(&peer, header.as_slice(), tail),
            // `to` is not this node, and reliable: always queued.
            Plan::Local | Plan::Datagram(_) => Err(SendError::Stopped),
        }
    }

    fn room(&self, to: NodeId) -> super::network::BoxFuture<'_, ()> {
        let peer = self.peer(to);
        Box::pin(async move {
            if let Some(peer) = peer {
                tokio::select! {
                    () = peer.room.notified() => {}
                    () = peer.cancel.cancelled() => {}
                }
            }
        })
    }

    fn open_stream(
        &self,
        to: NodeId,
        protocol: ProtocolId,
    ) -> super::network::BoxFuture<'_, Result<NodeStream, StreamError>> {
        Box::pin(async move {
            let core = self.myself().ok_or(StreamError::Stopped)?;
            if !core.is_member(to) {
                return Err(StreamError::UnknownNode(to));
            }
            core.connector.open_stream(&core, to, protocol).await
        })
    }
}
