//! The application's send paths on a [`Shell`]: `try_send` (never blocks), `send` (waits for
//! room), batches, alive-only sends, and messages to this node itself.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use hawser_proto::node::{Delivery, NodeId};

use super::error::SendError;
use super::incoming::Incoming;
use super::shell::{now, Shell};

impl Shell {
    /// A message to this node itself: straight to the incoming queue.
    fn send_local(&self, payload: Bytes, delivery: Delivery) -> Result<(), SendError> {
        if self.cancel.is_cancelled() {
            return Err(SendError::Stopped);
        }
        let msg = Incoming {
            from: self.id,
            delivery,
            payload,
        };
        self.sender
            .try_send(msg)
            .map_err(|_| SendError::QueueFull(self.id))
    }

    /// Queues or sends `payload` to `to`; never blocks.
    pub fn try_send(
        self: &Arc<Self>,
        to: NodeId,
        payload: &[u8],
        delivery: Delivery,
    ) -> Result<(), SendError> {
        self.queue(to, payload, delivery, false)
    }

    /// `Engine::send` (or, `alive`, `Engine::send_alive`) under the lock, then what it gave
    /// carried out.
    fn queue(
        self: &Arc<Self>,
        to: NodeId,
        payload: &[u8],
        delivery: Delivery,
        alive: bool,
    ) -> Result<(), SendError> {
        let mut st = self.lock();
        let r = if alive {
            st.engine.send_alive(now(), to, payload, delivery)
        } else {
            st.engine.send(now(), to, payload, delivery)
        };
        self.flush_queued(&mut st);
        r
    }

    /// [`try_send`](Self::try_send) of a `Bytes` (a message to this node itself is not
    /// copied).
    pub fn try_send_bytes(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if to == self.id {
            return self.send_local(payload, delivery);
        }
        self.try_send(to, &payload, delivery)
    }

    /// Like `try_send`, waiting for room instead of failing with `QueueFull`.
    pub async fn send(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if to == self.id {
            if self.cancel.is_cancelled() {
                return Err(SendError::Stopped);
            }
            let msg = Incoming {
                from: self.id,
                delivery,
                payload,
            };
            // Woken when the application reads and there is room again.
            return tokio::select! {
                r = self.sender.send(msg) => r.map_err(|_| SendError::Stopped),
                () = self.cancel.cancelled() => Err(SendError::Stopped),
            };
        }
        loop {
            let (room, seen) = {
                let mut st = self.lock();
                let r = st.engine.send(now(), to, &payload, delivery);
                self.flush_queued(&mut st);
                match r {
                    Err(SendError::QueueFull(_)) => {}
                    other => return other,
                }
                // The epoch read under the lock: the `Room` event the refusal asked for
                // cannot be missed.
                let room = st.rooms.entry(to).or_default().clone();
                let seen = room.epoch();
                (room, seen)
            };
            tokio::select! {
                () = room.wait(seen) => {}
                () = self.cancel.cancelled() => return Err(SendError::Stopped),
            }
        }
    }

    /// Queues the messages at the front of `batch` under one hold of the lock; stops at the
    /// first that cannot go, which stays at the front.
    pub fn try_send_batch(
        self: &Arc<Self>,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<usize, SendError> {
        let mut sent = 0;
        let mut refused = None;
        if to == self.id {
            while let Some(p) = batch.front() {
                if let Err(e) = self.send_local(p.clone(), delivery) {
                    refused = Some(e);
                    break;
                }
                batch.pop_front();
                sent += 1;
            }
        } else {
            let mut st = self.lock();
            let t = now();
            for p in batch.iter() {
                if let Err(e) = st.engine.send(t, to, p, delivery) {
                    refused = Some(e);
                    break;
                }
                sent += 1;
            }
            self.flush_queued(&mut st);
            drop(st);
            batch.drain(..sent);
        }
        match refused {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        }
    }

    /// Like `try_send_batch`, waiting for room; returns once `batch` is empty.
    pub async fn send_batch(
        self: &Arc<Self>,
        to: NodeId,
        batch: &mut VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        while !batch.is_empty() {
            match self.try_send_batch(to, batch, delivery) {
                Ok(_) if batch.is_empty() => return Ok(()),
                Ok(_) | Err(SendError::QueueFull(_)) => {
                    // The first message left waits for room; it leaves the batch once queued
                    // (a cancelled call leaves it there).
                    let Some(first) = batch.front().cloned() else {
                        return Ok(());
                    };
                    self.send(to, first, delivery).await?;
                    batch.pop_front();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Like `try_send`, refusing a peer whose lease does not hold (`Engine::send_alive`).
    pub fn try_send_alive(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if to == self.id {
            return self.send_local(payload, delivery);
        }
        self.queue(to, &payload, delivery, true)
    }
}
