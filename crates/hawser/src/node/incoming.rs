//! What a node receives: [`Incoming`] messages, queued (bounded) for one [`IncomingStream`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use hawser_proto::node::{Delivery, NodeId};
use tokio::sync::mpsc;
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

/// The receiving end of a node's bounded incoming queue, for [`Network`](super::Network)
/// implementations: [`IncomingQueue::new`] gives it with its [`IncomingSender`].
#[derive(Debug)]
pub struct IncomingQueue {
    slot: Arc<Mutex<Option<mpsc::Receiver<Incoming>>>>,
    stopped: CancellationToken,
}

/// The sending end of an incoming queue (cheap to clone).
#[derive(Clone, Debug)]
pub struct IncomingSender(mpsc::Sender<Incoming>);

impl IncomingQueue {
    /// A queue of at most `capacity` messages (at least 1). Streams end once `stopped` is
    /// cancelled and everything queued was taken.
    pub fn new(capacity: usize, stopped: CancellationToken) -> (IncomingQueue, IncomingSender) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queue = IncomingQueue {
            slot: Arc::new(Mutex::new(Some(rx))),
            stopped,
        };
        (queue, IncomingSender(tx))
    }

    /// The stream of received messages.
    ///
    /// # One consumer at a time
    /// The stream holds the queue's receiving end and gives it back when dropped. While one
    /// stream is alive, another call returns a stream that ends at once.
    pub fn stream(&self) -> IncomingStream {
        let rx = self.slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        IncomingStream {
            rx,
            slot: self.slot.clone(),
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
        self.0.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
        })
    }

    /// Queues a message, waiting for room.
    ///
    /// # Errors
    /// Gives the message back if the queue is gone.
    ///
    /// # Cancel safety
    /// Cancelling drops the message.
    pub async fn send(&self, msg: Incoming) -> Result<(), Incoming> {
        self.0.send(msg).await.map_err(|e| e.0)
    }
}

/// A [`Stream`] of [`Incoming`] messages, in arrival order (so in send order per sender for
/// reliable delivery). Ends once the node is stopped and the queue is empty.
pub struct IncomingStream {
    rx: Option<mpsc::Receiver<Incoming>>,
    slot: Arc<Mutex<Option<mpsc::Receiver<Incoming>>>>,
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
}

impl Stream for IncomingStream {
    type Item = Incoming;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        let this = self.get_mut();
        let Some(rx) = this.rx.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(item) = rx.poll_recv(cx) {
            return Poll::Ready(item);
        }
        if this.stopped.as_mut().poll(cx).is_ready() {
            // Stopped: hand out what is still queued, then end.
            return Poll::Ready(rx.try_recv().ok());
        }
        Poll::Pending
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.take() {
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        }
    }
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream")
            .field("active", &self.rx.is_some())
            .finish_non_exhaustive()
    }
}
