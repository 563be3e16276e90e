//! One destination: its application and control queues, its outbound connection's state
//! machine, its back-off and its counters.
//!
//! ```text
//!            work queued                 handle_dialed(Ok)
//!   Idle ───────────────────> Dialing ─────────────────────> Connected
//!    ^  ^                        │ failed / connect_timeout      │ lost (closed, write failed),
//!    │  └── back-off expired ── Backoff <──┘                     │ idle_timeout, address change
//!    └───────────────────────────────────────────────────────────┘
//! ```
//! Only one batch is written at a time (`in_flight`), and a new connection is dialled only
//! once the previous one's batch came back, so requeued messages keep their order.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::node::{Backoff, FrameBatch, PeerStats, QueueLimits, SendQueue};

use super::event::ConnId;
use super::EngineConfig;

/// Which queue a batch in flight came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// Reachability events and pings.
    Control,
    /// Application messages and rpc frames.
    App,
}

/// The outbound connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConnState {
    /// No connection; dialled when there is work.
    Idle,
    /// A dial was asked for; abandoned at `deadline`.
    Dialing { conn: ConnId, deadline: Instant },
    /// Connected through `via`.
    Connected { conn: ConnId, via: SocketAddr },
    /// The last attempt failed; the next one not before `until`.
    Backoff { until: Instant },
}

/// One destination's state.
#[derive(Debug)]
pub(super) struct Dest {
    /// Application messages and rpc frames, in order.
    pub queue: SendQueue,
    /// Internal frames, written before `queue` (bounded by `max_control_frames`).
    pub control: SendQueue,
    pub stats: PeerStats,
    pub backoff: Backoff,
    pub link: ConnState,
    pub connected_before: bool,
    /// The batch the shell is writing, and on which connection.
    pub in_flight: Option<(ConnId, Source)>,
    /// A `Writable` was given and `take_frames` not called since.
    pub writable_signalled: bool,
    /// When a batch was last taken or written (the idle timer counts from it).
    pub last_active: Instant,
    /// A send was refused for a full queue: tell when there is room again.
    pub want_room: bool,
    /// The key of this destination in the engine's timer index: its `next_timeout` when the
    /// index was last brought up to date.
    pub indexed: Option<Instant>,
    /// Changed since then: the index entry may be stale.
    pub dirty: bool,
}

impl Dest {
    pub fn new(config: &EngineConfig, now: Instant) -> Dest {
        let control = QueueLimits::default()
            .with_max_messages(config.max_control_frames)
            .with_max_bytes(usize::MAX)
            .with_deadline(config.queue.deadline);
        Dest {
            queue: SendQueue::new(config.queue),
            control: SendQueue::new(control),
            stats: PeerStats::default(),
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            link: ConnState::Idle,
            connected_before: false,
            in_flight: None,
            writable_signalled: false,
            last_active: now,
            want_room: false,
            indexed: None,
            dirty: false,
        }
    }

    /// Whether anything waits to be written.
    pub fn has_work(&self) -> bool {
        !self.queue.is_empty() || !self.control.is_empty()
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, ConnState::Connected { .. })
    }

    /// The earliest instant at which `handle_timeout` has something to do here.
    pub fn next_timeout(&self, idle_timeout: Duration) -> Option<Instant> {
        let link = match self.link {
            ConnState::Dialing { deadline, .. } => Some(deadline),
            ConnState::Backoff { until } => Some(until),
            ConnState::Connected { .. } if !self.has_work() && self.in_flight.is_none() => {
                self.last_active.checked_add(idle_timeout)
            }
            ConnState::Idle | ConnState::Connected { .. } => None,
        };
        // A message expires once it waited *more* than the deadline.
        let after = |t: Instant| t.checked_add(Duration::from_nanos(1));
        let queue = self.queue.next_expiry().and_then(after);
        let control = self.control.next_expiry().and_then(after);
        [link, queue, control].into_iter().flatten().min()
    }

    /// Takes the next batch to write: internal frames first, then application frames.
    /// Returns where it came from and how many stale application messages were dropped, or
    /// `None` when nothing is left (after expiry).
    pub fn take(
        &mut self,
        now: Instant,
        config: &EngineConfig,
        batch: &mut FrameBatch,
    ) -> (Option<Source>, usize, usize) {
        let control_dropped = self.control.expire(now);
        if !self.control.is_empty() {
            let (m, b) = (config.batch_messages, config.batch_bytes);
            self.control.take(now, m, b, batch);
            return (Some(Source::Control), 0, control_dropped);
        }
        let (m, b) = (config.batch_messages, config.batch_bytes);
        let dropped = self.queue.take(now, m, b, batch);
        let source = (!batch.is_empty()).then_some(Source::App);
        (source, dropped, control_dropped)
    }

    /// A batch from `source` came back: `written` of its messages went out whole. Counts
    /// them, puts the others back (application frames, in order) or drops them (internal
    /// frames; returned), and keeps the buffer for reuse.
    pub fn written(&mut self, source: Source, batch: &mut FrameBatch, written: usize) -> usize {
        match source {
            Source::App => {
                self.stats.sent += written as u64;
                self.stats.bytes_out += batch.payload_bytes(written);
                self.queue.requeue_front(batch, written);
                self.queue.recycle(batch);
                0
            }
            Source::Control => {
                let lost = batch.len().saturating_sub(written);
                self.control.recycle(batch);
                lost
            }
        }
    }

    /// The counters, with the queue's own.
    pub fn peer_stats(&self) -> PeerStats {
        let mut stats = self.stats;
        self.queue.fill_stats(&mut stats);
        stats
    }
}
