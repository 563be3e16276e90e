//! The receive side of the engine: frames from connections, counted per peer and handed to
//! the application (reliable messages with back-pressure, datagrams dropped when full).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use hawser_proto::node::{Delivery, NodeId};
use tracing::debug;

use super::connector::Connector;
use super::core::Core;
use super::counters::Counters;
use super::incoming::Incoming;
use super::reach::{Frame, TrafficGate};

impl<L: Connector> Core<L> {
    /// A frame of a framed connection from `from` through `via`: delivered, or handed to
    /// reachability. Returns `false` once the node is stopping.
    pub async fn receive(
        self: &Arc<Self>,
        from: NodeId,
        via: SocketAddr,
        frame: Frame,
        gate: &mut TrafficGate,
    ) -> bool {
        self.reach_traffic(from, via, gate);
        match frame {
            Frame::App(payload) => self.deliver(from, Delivery::Reliable, payload).await,
            Frame::Reach(payload) => {
                self.reach_event(from, via, &payload);
                true
            }
            Frame::Ping => true,
            Frame::Rpc(body) => {
                self.rpc.handle_frame(from, body);
                true
            }
            // Keys are taken by the session's reader (`super::secure`), which knows whether
            // the session is encrypted; one reaching here came another way and is ignored.
            Frame::DatagramKey(_) => {
                Counters::bump(&self.counters.bad_frames);
                true
            }
        }
    }

    /// Application payloads of a framed connection from `from` through `via`, in order (a
    /// batch of frames that were already received): counted once, then handed to the
    /// application together while the incoming queue has room, else as room comes
    /// (back-pressure). Empties `payloads`. Returns `false` once the node is stopping.
    pub async fn receive_app_batch(
        self: &Arc<Self>,
        from: NodeId,
        via: SocketAddr,
        payloads: &mut Vec<Bytes>,
        gate: &mut TrafficGate,
    ) -> bool {
        if payloads.is_empty() {
            return true;
        }
        self.reach_traffic(from, via, gate);
        let bytes = payloads.iter().map(|p| p.len() as u64).sum();
        if !self.note_received_many(from, payloads.len() as u64, bytes) {
            payloads.clear();
            return true;
        }
        let mut msgs: Vec<Incoming> = payloads
            .drain(..)
            .map(|payload| Incoming {
                from,
                delivery: Delivery::Reliable,
                payload,
            })
            .collect();
        // The whole batch under one lock when there is room, else as room comes.
        tokio::select! {
            r = self.sender.send_all(&mut msgs) => r.is_ok(),
            () = self.cancel.cancelled() => false,
        }
    }

    /// Counts a bad frame of a framed connection.
    pub fn note_bad_frame(&self, from: NodeId, err: &hawser_proto::wire::WireError) {
        Counters::bump(&self.counters.bad_frames);
        debug!(node = %self.id, peer = %from, %err, "bad frame dropped");
    }

    /// Counts a received message; `false` (and counted) if the sender is not a member.
    fn note_received(&self, from: NodeId, len: usize) -> bool {
        self.note_received_many(from, 1, len as u64)
    }

    /// Counts `count` received messages of `bytes` bytes in all; `false` (and counted, each)
    /// if the sender is not a member.
    fn note_received_many(&self, from: NodeId, count: u64, bytes: u64) -> bool {
        if from == self.id {
            return true;
        }
        let Some(peer) = self.peer(from) else {
            self.counters
                .unknown_senders
                .fetch_add(count, Ordering::Relaxed);
            return false;
        };
        let mut st = peer.lock();
        st.stats.received += count;
        st.stats.bytes_in += bytes;
        true
    }

    /// Counts an oversized frame from `from` (node-wide, and on the peer when known).
    pub fn note_oversized(&self, from: Option<NodeId>) {
        Counters::bump(&self.counters.oversized_frames);
        if let Some(peer) = from.and_then(|id| self.peer(id)) {
            peer.lock().stats.oversized_frames += 1;
        }
    }

    /// Hands a reliable message to the application, waiting for room in the incoming queue
    /// (back-pressure). Returns `false` once the node is stopping.
    pub async fn deliver(&self, from: NodeId, delivery: Delivery, payload: Bytes) -> bool {
        if !self.note_received(from, payload.len()) {
            return true;
        }
        let msg = Incoming {
            from,
            delivery,
            payload,
        };
        tokio::select! {
            r = self.sender.send(msg) => r.is_ok(),
            () = self.cancel.cancelled() => false,
        }
    }

    /// Hands a datagram to the application if there is room; drops it (counted) otherwise.
    pub fn deliver_now(&self, from: NodeId, payload: Bytes) {
        if self.cancel.is_cancelled() || !self.note_received(from, payload.len()) {
            return;
        }
        let msg = Incoming {
            from,
            delivery: Delivery::Unreliable,
            payload,
        };
        if self.sender.try_send(msg).is_err() {
            Counters::bump(&self.counters.incoming_dropped);
            debug!(node = %self.id, peer = %from, "datagram dropped: incoming queue full");
        }
    }
}
