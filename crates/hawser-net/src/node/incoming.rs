//! What a node receives: [`Incoming`] messages, queued (bounded) for one [`IncomingStream`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;
use hawser_proto::node::{Delivery, NodeId};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// One received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The sender.
    pub from: NodeId,
    /// How it travelled.
    pub delivery: Delivery,
    /// The payload.
    pub payload: Bytes,
}

/// The receiving end of a node's bounded incoming queue: [`IncomingQueue::new`] gives it
/// with its [`IncomingSender`].
///
/// The queue holds at most `capacity` messages, counting those its stream has taken in bulk
/// and not handed out yet. Senders push whole batches under one lock
/// ([`IncomingSender::send_all`]); the stream takes everything queued at once and hands it
/// out message by message, giving room back every `capacity / 8` messages, so neither side
/// takes a lock or wakes the other per message.
#[derive(Debug)]
pub struct IncomingQueue {
    receiver: Arc<Receiver>,
    stopped: CancellationToken,
}

/// The sending end of an incoming queue (cheap to clone).
#[derive(Clone, Debug)]
pub struct IncomingSender(Arc<Shared>);

/// What both ends share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Room was given back, or the receiving side is gone.
    room: Notify,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Incoming>,
    /// Messages a stream took from `items` and has not given room back for.
    held: usize,
    /// The waiting stream's waker.
    waker: Option<Waker>,
    /// A stream is alive (one consumer at a time).
    active: bool,
    /// Neither the queue nor a stream is left: sends fail.
    closed: bool,
}

/// Closes the queue when the last receiving handle goes.
#[derive(Debug)]
struct Receiver(Arc<Shared>);

impl Drop for Receiver {
    fn drop(&mut self) {
        self.0.lock().closed = true;
        self.0.room.notify_waiters();
    }
}

/// Why a message was not queued.
enum Refused {
    Full(Incoming),
    Closed(Incoming),
}

impl Refused {
    fn into_inner(self) -> Incoming {
        match self {
            Refused::Full(m) | Refused::Closed(m) => m,
        }
    }
}

impl Shared {
    /// Queues one message if there is room, waking a waiting stream.
    fn push_one(&self, msg: Incoming) -> Result<(), Refused> {
        let waker = {
            let mut st = self.lock();
            if st.closed {
                return Err(Refused::Closed(msg));
            }
            if st.items.len() + st.held >= self.capacity {
                return Err(Refused::Full(msg));
            }
            st.items.push_back(msg);
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock (a panic while held: a bug) is recovered: the state is plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the messages of `msgs` that fit, from the front, waking a waiting stream;
    /// `Err` if the queue is closed.
    fn push_some(&self, msgs: &mut Vec<Incoming>) -> Result<(), ()> {
        let waker = {
            let mut st = self.lock();
            if st.closed {
                return Err(());
            }
            let room = self.capacity.saturating_sub(st.items.len() + st.held);
            let n = room.min(msgs.len());
            if n == 0 {
                return Ok(());
            }
            st.items.extend(msgs.drain(..n));
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl IncomingQueue {
    /// A queue of at most `capacity` messages (at least 1). Streams end once `stopped` is
    /// cancelled and everything queued was taken.
    pub fn new(capacity: usize, stopped: CancellationToken) -> (IncomingQueue, IncomingSender) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            room: Notify::new(),
        });
        let queue = IncomingQueue {
            receiver: Arc::new(Receiver(shared.clone())),
            stopped,
        };
        (queue, IncomingSender(shared))
    }

    /// The stream of received messages.
    ///
    /// # One consumer at a time
    /// While one stream is alive, another call returns a stream that ends at once; a stream
    /// dropped puts back what it took and had not handed out, in order.
    pub fn stream(&self) -> IncomingStream {
        let shared = &self.receiver.0;
        let active = {
            let mut st = shared.lock();
            !std::mem::replace(&mut st.active, true)
        };
        IncomingStream {
            receiver: active.then(|| self.receiver.clone()),
            local: VecDeque::new(),
            handed: 0,
            give_back_every: (shared.capacity / 8).max(1),
            stopped: Box::pin(self.stopped.clone().cancelled_owned()),
        }
    }
}

impl IncomingSender {
    /// Queues a message if there is room.
    ///
    /// # Errors
    /// Gives the message back when the queue is full or no longer read.
    pub fn try_send(&self, msg: Incoming) -> Result<(), Incoming> {
        self.0.push_one(msg).map_err(Refused::into_inner)
    }

    /// Queues a message, waiting for room.
    ///
    /// # Errors
    /// Gives the message back if the queue is gone.
    ///
    /// # Cancel safety
    /// Cancelling drops the message.
    pub async fn send(&self, msg: Incoming) -> Result<(), Incoming> {
        let mut msg = match self.0.push_one(msg) {
            Ok(()) => return Ok(()),
            Err(Refused::Closed(m)) => return Err(m),
            Err(Refused::Full(m)) => m,
        };
        loop {
            let room = self.0.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Room may have been given back before the waiter was registered.
            msg = match self.0.push_one(msg) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed(m)) => return Err(m),
                Err(Refused::Full(m)) => m,
            };
            room.await;
        }
    }

    /// Queues every message of `msgs`, in order, as many at a time as there is room for,
    /// waiting for room for the rest; empties `msgs` on success.
    ///
    /// # Errors
    /// `Err(())` if the queue is gone; `msgs` keeps the messages not queued.
    ///
    /// # Cancel safety
    /// Cancelling leaves the messages not yet queued in `msgs`.
    pub async fn send_all(&self, msgs: &mut Vec<Incoming>) -> Result<(), ()> {
        loop {
            self.0.push_some(msgs)?;
            if msgs.is_empty() {
                return Ok(());
            }
            let room = self.0.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            // Room may have been given back before the waiter was registered.
            self.0.push_some(msgs)?;
            if msgs.is_empty() {
                return Ok(());
            }
            room.await;
        }
    }
}

/// A [`Stream`] of [`Incoming`] messages, in arrival order (so in send order per sender for
/// reliable delivery). Ends once the node is stopped and the queue is empty.
pub struct IncomingStream {
    /// `None` for a stream that ends at once (another one is alive).
    receiver: Option<Arc<Receiver>>,
    /// Taken from the queue, not handed out yet (counted in the queue's `held`).
    local: VecDeque<Incoming>,
    /// Handed out since room was last given back.
    handed: usize,
    /// Room goes back every eighth of the capacity, so a full queue drains in steps.
    give_back_every: usize,
    stopped: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl IncomingStream {
    /// The next message; `None` once the node is stopped and nothing is left.
    ///
    /// # Cancel safety
    /// Cancel safe: a message is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<Incoming> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Waits for at least one message, then moves up to `limit` (at least 1) of those
    /// received into `buf`, in order; returns how many (0 once the node is stopped and
    /// nothing is left).
    ///
    /// # Cancel safety
    /// Cancel safe: messages are only taken when the call returns.
    pub async fn recv_many(&mut self, buf: &mut Vec<Incoming>, limit: usize) -> usize {
        let Some(first) = self.recv().await else {
            return 0;
        };
        buf.push(first);
        let more = limit.max(1).saturating_sub(1).min(self.local.len());
        buf.extend(self.local.drain(..more));
        self.handed += more;
        1 + more
    }

    /// Gives back room for what was handed out since the last time, and takes everything
    /// queued when nothing is left locally (registering `cx` if there is nothing).
    fn refill(&mut self, shared: &Shared, cx: &mut Context<'_>) {
        let mut st = shared.lock();
        st.held = st.held.saturating_sub(self.handed);
        let gave_room = self.handed > 0;
        self.handed = 0;
        if self.local.is_empty() {
            std::mem::swap(&mut self.local, &mut st.items);
            st.held += self.local.len();
            if self.local.is_empty() {
                st.waker = Some(cx.waker().clone());
            }
        }
        drop(st);
        if gave_room {
            shared.room.notify_waiters();
        }
    }
}

impl Stream for IncomingStream {
    type Item = Incoming;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        let this = self.get_mut();
        // The common case: a message taken earlier, and no room to give back yet.
        if this.handed < this.give_back_every {
            if let Some(msg) = this.local.pop_front() {
                this.handed += 1;
                return Poll::Ready(Some(msg));
            }
        }
        let Some(receiver) = this.receiver.clone() else {
            return Poll::Ready(None);
        };
        let shared = &receiver.0;
        if this.local.is_empty() || this.handed >= this.give_back_every {
            this.refill(shared, cx);
        }
        if let Some(msg) = this.local.pop_front() {
            this.handed += 1;
            return Poll::Ready(Some(msg));
        }
        if this.stopped.as_mut().poll(cx).is_ready() {
            // Stopped: hand out what is still queued, then end.
            this.refill(shared, cx);
            let msg = this.local.pop_front();
            this.handed += usize::from(msg.is_some());
            return Poll::Ready(msg);
        }
        Poll::Pending
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if let Some(receiver) = self.receiver.take() {
            let mut st = receiver.0.lock();
            st.held = 0;
            st.waker = None;
            st.active = false;
            // Put back, in order, what was taken and not handed out.
            let rest = std::mem::take(&mut self.local);
            let queued = std::mem::replace(&mut st.items, rest);
            st.items.extend(queued);
            drop(st);
            receiver.0.room.notify_waiters();
        }
    }
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("active", &self.receiver.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u8) -> Incoming {
        Incoming {
            from: NodeId(1),
            delivery: Delivery::Reliable,
            payload: Bytes::from(vec![i]),
        }
    }

    fn ids(msgs: &[Incoming]) -> Vec<u8> {
        msgs.iter().map(|m| m.payload[0]).collect()
    }

    #[tokio::test]
    async fn a_batch_arrives_whole_and_in_order() {
        let (queue, tx) = IncomingQueue::new(16, CancellationToken::new());
        let mut batch: Vec<_> = (0..10).map(msg).collect();
        tx.send_all(&mut batch).await.unwrap();
        assert!(batch.is_empty());
        tx.try_send(msg(10)).unwrap();
        let mut rx = queue.stream();
        let mut got = Vec::new();
        for _ in 0..11 {
            got.push(rx.recv().await.unwrap());
        }
        assert_eq!(ids(&got), (0..11).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn messages_taken_but_not_handed_out_count_against_the_capacity() {
        let (queue, tx) = IncomingQueue::new(16, CancellationToken::new());
        for i in 0..16 {
            tx.try_send(msg(i)).unwrap();
        }
        assert!(tx.try_send(msg(99)).is_err(), "full");
        let mut rx = queue.stream();
        // The stream takes all 16; room comes back in steps of 16 / 8 = 2 handed out.
        assert_eq!(rx.recv().await.unwrap().payload[0], 0);
        assert!(tx.try_send(msg(99)).is_err(), "still held by the stream");
        assert_eq!(rx.recv().await.unwrap().payload[0], 1);
        assert_eq!(rx.recv().await.unwrap().payload[0], 2);
        tx.try_send(msg(16)).unwrap();
        tx.try_send(msg(17)).unwrap();
        assert!(tx.try_send(msg(99)).is_err(), "full again");
        let mut rest = Vec::new();
        while rest.len() < 15 {
            rx.recv_many(&mut rest, 100).await;
        }
        assert_eq!(ids(&rest), (3..18).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_waiting_batch_goes_in_as_room_comes_back() {
        let (queue, tx) = IncomingQueue::new(8, CancellationToken::new());
        let mut rx = queue.stream();
        let sender = tokio::spawn(async move {
            let mut batch: Vec<_> = (0..20).map(msg).collect();
            tx.send_all(&mut batch).await.map(|()| batch.len())
        });
        let mut got = Vec::new();
        while got.len() < 20 {
            got.push(rx.recv().await.unwrap());
        }
        assert_eq!(sender.await.unwrap(), Ok(0));
        assert_eq!(ids(&got), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_dropped_stream_puts_back_what_it_held_and_one_consumer_at_a_time() {
        let (queue, tx) = IncomingQueue::new(8, CancellationToken::new());
        for i in 0..4 {
            tx.try_send(msg(i)).unwrap();
        }
        let mut rx = queue.stream();
        assert_eq!(rx.recv().await.unwrap().payload[0], 0);
        let mut second = queue.stream();
        assert!(
            second.recv().await.is_none(),
            "a second stream ends at once"
        );
        drop(second);
        drop(rx);
        tx.try_send(msg(4)).unwrap();
        let mut rx = queue.stream();
        let mut got = Vec::new();
        while got.len() < 4 {
            rx.recv_many(&mut got, 10).await;
        }
        assert_eq!(ids(&got), vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn stopped_streams_hand_out_the_rest_then_end_and_a_gone_queue_refuses() {
        let stop = CancellationToken::new();
        let (queue, tx) = IncomingQueue::new(8, stop.clone());
        tx.try_send(msg(0)).unwrap();
        tx.try_send(msg(1)).unwrap();
        stop.cancel();
        let mut rx = queue.stream();
        assert_eq!(rx.recv().await.unwrap().payload[0], 0);
        assert_eq!(rx.recv().await.unwrap().payload[0], 1);
        assert!(rx.recv().await.is_none());
        drop(rx);
        drop(queue);
        assert!(tx.try_send(msg(2)).is_err());
        assert!(tx.send(msg(3)).await.is_err());
        let mut batch = vec![msg(4)];
        assert!(tx.send_all(&mut batch).await.is_err());
        assert_eq!(batch.len(), 1, "kept when refused");
    }
}
