//! The writer's batching, against a link that records what it is given and can fail after a
//! chosen number of payloads: order, bounds, requeue on failure, counters, stale messages
//! and internal frames first. No sockets and no timing.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::node::{FrameBatch, Member, Membership, NodeId, Role};
use hawser_proto::wire::node::app_frame_header;

use super::super::config::Settings;
use super::super::connector::{Connector, BATCH_BYTES, BATCH_MESSAGES};
use super::super::core::Core;
use super::super::error::SendError;
use super::super::peer::Peer;
use super::super::reach::Frame;
use super::write_queued;

/// A link whose connections record frames.
struct RecordingConnector;

/// What a recording connection was given.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    App(Bytes),
    Internal,
}

/// A recording connection: takes `accept` application payloads (all if `None`), then fails.
#[derive(Default)]
struct Recorder {
    written: Vec<Written>,
    /// Payloads per `write_app_batch` call.
    batches: Vec<usize>,
    accept: Option<usize>,
}

impl Recorder {
    fn apps(&self) -> Vec<Bytes> {
        self.written
            .iter()
            .filter_map(|w| match w {
                Written::App(b) => Some(b.clone()),
                Written::Internal => None,
            })
            .collect()
    }
}

impl Connector for RecordingConnector {
    type Conn = Recorder;

    fn route(&self, _: &Settings, _: &Member, _: bool) -> Result<usize, SendError> {
        Ok(usize::MAX)
    }

    async fn dial(&self, _: &Arc<Core<Self>>, _: Member) -> io::Result<(Recorder, SocketAddr)> {
        Err(io::ErrorKind::ConnectionRefused.into())
    }

    async fn write(conn: &mut Recorder, frame: Frame) -> io::Result<()> {
        match frame {
            Frame::App(payload) => {
                if conn.accept == Some(0) {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                conn.accept = conn.accept.map(|n| n - 1);
                conn.written.push(Written::App(payload));
            }
            _ => conn.written.push(Written::Internal),
        }
        Ok(())
    }

    async fn write_app_batch(
        conn: &mut Recorder,
        batch: &FrameBatch,
    ) -> Result<(), super::BatchError> {
        conn.batches.push(batch.len());
        for (written, (frame, header)) in batch.frames().enumerate() {
            Self::write(conn, Frame::App(frame.slice(header..)))
                .await
                .map_err(|error| super::BatchError { written, error })?;
        }
        Ok(())
    }

    fn reach_addrs(&self, _: &Member) -> Vec<SocketAddr> {
        Vec::new()
    }

    async fn closed(_: &mut Recorder) {
        std::future::pending().await
    }

    fn send_datagram(&self, _: &Arc<Core<Self>>, _: &Member, _: &Bytes) -> Result<(), SendError> {
        Ok(())
    }

    async fn send_datagram_wait(
        &self,
        _: &Arc<Core<Self>>,
        _: Member,
        _: Bytes,
    ) -> Result<(), SendError> {
        Ok(())
    }

    fn shutdown(&self) {}
}

/// Node 1 with member 2, reachability off; the peer entry of node 2.
fn core() -> (Arc<Core<RecordingConnector>>, Arc<Peer>) {
    core_with(Settings::default())
}

/// As [`core`], with these settings.
fn core_with(mut settings: Settings) -> (Arc<Core<RecordingConnector>>, Arc<Peer>) {
    settings.reach.enabled = false;
    let mut membership = Membership::new(settings.max_nodes);
    for id in [1u64, 2] {
        membership
            .insert(Member::without_addr(id, Role::Member))
            .unwrap();
    }
    let core = Core::new(NodeId(1), settings, membership, RecordingConnector, &[]);
    let peer = core.peer(NodeId(2)).unwrap();
    (core, peer)
}

/// Message `i`: its index, then `len - 8` filler bytes.
fn msg(i: u64, len: usize) -> Bytes {
    let mut v = i.to_be_bytes().to_vec();
    v.resize(len.max(8), i as u8);
    Bytes::from(v)
}

fn queue(peer: &Peer, at: Instant, msgs: &[Bytes]) {
    let mut st = peer.lock();
    for m in msgs {
        let header = app_frame_header(m.len()).unwrap();
        st.queue.push(at, &header, m).unwrap();
    }
}

/// Everything waiting in the queue, taken out in order.
fn drain(peer: &Peer) -> Vec<Bytes> {
    let mut st = peer.lock();
    let mut batch = FrameBatch::default();
    let mut out = Vec::new();
    while !st.queue.is_empty() {
        st.queue
            .take(Instant::now(), usize::MAX, usize::MAX, &mut batch);
        out.extend(batch.frames().map(|(f, h)| f.slice(h..)));
    }
    out
}

#[tokio::test(flavor = "current_thread")]
async fn batches_keep_order_and_bounds_and_count_every_message() {
    let (core, peer) = core();
    let mut msgs: Vec<Bytes> = (0..3000).map(|i| msg(i, 64)).collect();
    // Large messages too: a batch stops at the byte bound, and one above it goes alone.
    msgs.extend((3000..3010).map(|i| msg(i, 40 * 1024)));
    msgs.push(msg(3010, 3 * BATCH_BYTES));
    queue(&peer, Instant::now(), &msgs);
    let mut conn = Recorder::default();
    assert!(write_queued(&core, &peer, &mut conn, &mut FrameBatch::default()).await);
    assert_eq!(conn.apps(), msgs, "every message once, in order");
    assert!(conn.batches.len() < msgs.len() / 100, "{:?}", conn.batches);
    let mut at = 0;
    for &n in &conn.batches {
        let bytes: usize = msgs[at..at + n].iter().map(Bytes::len).sum();
        let last = msgs[at + n - 1].len();
        assert!(n <= BATCH_MESSAGES, "{n} messages in one batch");
        assert!(
            n == 1 || bytes - last < BATCH_BYTES,
            "{bytes} bytes in {n} messages"
        );
        at += n;
    }
    let s = peer.stats();
    let total: usize = msgs.iter().map(Bytes::len).sum();
    assert_eq!((s.sent, s.bytes_out), (msgs.len() as u64, total as u64));
    assert_eq!((s.queued, s.queued_bytes), (0, 0));
    // An emptied queue keeps at most its newest buffer and one spare, each bounded.
    let retained = 2 * hawser_proto::node::RETAINED_BUFFER as u64;
    assert!(s.queue_buffer_bytes <= retained, "{}", s.queue_buffer_bytes);
}

#[tokio::test(flavor = "current_thread")]
async fn failed_batch_requeues_what_was_not_written_in_order() {
    let (core, peer) = core();
    let msgs: Vec<Bytes> = (0..2500).map(|i| msg(i, 100)).collect();
    queue(&peer, Instant::now(), &msgs);
    // Fails inside the second batch.
    let mut conn = Recorder {
        accept: Some(700),
        ..Recorder::default()
    };
    assert!(!write_queued(&core, &peer, &mut conn, &mut FrameBatch::default()).await);
    assert_eq!(conn.batches.len(), 2, "{:?}", conn.batches);
    assert_eq!(conn.apps(), msgs[..700]);
    let s = peer.stats();
    assert_eq!((s.sent, s.bytes_out), (700, 70_000));
    assert_eq!((s.queued, s.queued_bytes), (1800, 180_000));
    // The waiting frames (payload and 5-byte headers) are in the queue's buffers.
    assert!(
        s.queue_buffer_bytes >= 1800 * 105,
        "{}",
        s.queue_buffer_bytes
    );
    // A new connection writes the rest, in order: each message exactly once in all.
    let mut conn2 = Recorder::default();
    assert!(write_queued(&core, &peer, &mut conn2, &mut FrameBatch::default()).await);
    let mut all = conn.apps();
    all.extend(conn2.apps());
    assert_eq!(all, msgs);
    let s = peer.stats();
    assert_eq!((s.sent, s.queued), (2500, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn failure_on_a_batch_first_message_requeues_the_whole_batch() {
    let (core, peer) = core();
    let msgs: Vec<Bytes> = (0..10).map(|i| msg(i, 64)).collect();
    queue(&peer, Instant::now(), &msgs);
    let mut conn = Recorder {
        accept: Some(0),
        ..Recorder::default()
    };
    assert!(!write_queued(&core, &peer, &mut conn, &mut FrameBatch::default()).await);
    assert_eq!(peer.stats().sent, 0);
    assert_eq!(drain(&peer), msgs);
}

#[tokio::test(flavor = "current_thread")]
async fn stale_messages_at_the_head_are_dropped_and_counted() {
    let (core, peer) = core();
    let deadline = core.settings.queue.deadline;
    let Some(old) = Instant::now().checked_sub(deadline + Duration::from_secs(1)) else {
        return; // a clock too close to its origin to go back that far
    };
    let stale: Vec<Bytes> = (0..5).map(|i| msg(i, 64)).collect();
    let fresh: Vec<Bytes> = (5..10).map(|i| msg(i, 64)).collect();
    queue(&peer, old, &stale);
    queue(&peer, Instant::now(), &fresh);
    let mut conn = Recorder::default();
    assert!(write_queued(&core, &peer, &mut conn, &mut FrameBatch::default()).await);
    assert_eq!(conn.apps(), fresh);
    let s = peer.stats();
    assert_eq!((s.sent, s.dropped_stale), (5, 5));
}

#[tokio::test(flavor = "current_thread")]
async fn internal_frames_go_before_queued_messages() {
    let (core, peer) = core();
    let msgs: Vec<Bytes> = (0..3).map(|i| msg(i, 64)).collect();
    queue(&peer, Instant::now(), &msgs);
    peer.lock().control.push_back((Instant::now(), Frame::Ping));
    let mut conn = Recorder::default();
    assert!(write_queued(&core, &peer, &mut conn, &mut FrameBatch::default()).await);
    assert_eq!(conn.written.first(), Some(&Written::Internal));
    assert_eq!(conn.apps(), msgs);
}

#[tokio::test(flavor = "current_thread")]
async fn a_batch_send_copied_in_slices_keeps_order_and_stops_at_a_full_queue() {
    // 80 messages of 1 KiB: five holds of the queue's lock (16 KiB each); room for 50.
    let mut settings = Settings::default();
    settings.queue.max_messages = 50;
    let (core, peer) = core_with(settings);
    let msgs: Vec<Bytes> = (0..80).map(|i| msg(i, 1024)).collect();
    let mut batch: std::collections::VecDeque<Bytes> = msgs.iter().cloned().collect();
    let queued = core
        .try_send_batch(
            NodeId(2),
            &mut batch,
            hawser_proto::node::Delivery::Reliable,
        )
        .unwrap();
    assert_eq!(queued, 50);
    assert_eq!(Vec::from(batch), msgs[50..], "the rest stays, in order");
    let s = peer.stats();
    assert_eq!((s.queued, s.enqueued, s.dropped_full), (50, 50, 1));
    assert_eq!(
        drain(&peer),
        msgs[..50],
        "queued once each, in order, across the slices"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn senders_waiting_for_room_are_woken_once_the_queue_is_half_drained() {
    use futures_util::FutureExt;
    // Ten messages of 40 KiB, room for ten: each lies in a buffer of its own, so each batch
    // is one message.
    let mut settings = Settings::default();
    settings.queue.max_messages = 10;
    let (core, peer) = core_with(settings);
    let msgs: Vec<Bytes> = (0..10).map(|i| msg(i, 40 * 1024)).collect();
    queue(&peer, Instant::now(), &msgs);
    let room = peer.room.notified();
    tokio::pin!(room);
    room.as_mut().enable();
    // Three batches written, the fourth refused: six left after the last take, over half.
    let mut conn = Recorder {
        accept: Some(3),
        ..Recorder::default()
    };
    assert!(!write_queued(&core, &peer, &mut conn, &mut FrameBatch::default()).await);
    assert_eq!(conn.batches, [1, 1, 1, 1]);
    assert_eq!(peer.stats().queued, 7, "the refused one went back");
    assert!(
        room.as_mut().now_or_never().is_none(),
        "woken while the queue was more than half full"
    );
    // Drained on a new connection: woken once five are left.
    let mut conn = Recorder::default();
    assert!(write_queued(&core, &peer, &mut conn, &mut FrameBatch::default()).await);
    assert_eq!(conn.apps(), msgs[3..]);
    assert!(room.as_mut().now_or_never().is_some(), "never woken");
}
