//! One destination's state: its bounded send queue, control queue, counters, and what its
//! writer (`super::writer`) is doing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hawser_proto::node::{NodeId, PeerStats, QueueLimits, SendQueue};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::datagram::{OpenKey, SealKey};
use super::reach::Frame;

/// One destination's queue, counters and writer state.
pub(crate) struct Peer {
    pub(super) id: NodeId,
    state: Mutex<PeerState>,
    /// A message was queued.
    pub(super) wake: Notify,
    /// Room was freed in the queue.
    pub(super) room: Notify,
    /// Cancelled when the node stops or the peer is removed.
    pub(super) cancel: CancellationToken,
    /// Set before `cancel` when the peer is removed ([`Peer::stop`]).
    removed: AtomicBool,
    /// The node's own flag, set before its token is cancelled (`Core::begin_stop`).
    node_stopping: Arc<AtomicBool>,
    /// Bumped when the peer's addresses change, so the writer reconnects.
    pub(super) generation: AtomicU64,
    /// The writer connected.
    pub(super) connected_now: Notify,
}

/// The mutable part of a [`Peer`], behind its lock.
pub(super) struct PeerState {
    pub(super) queue: SendQueue,
    pub(super) stats: PeerStats,
    pub(super) writer_running: bool,
    pub(super) connected_before: bool,
    /// Internal frames waiting, with when each was queued (bounded by
    /// `reach.max_control_frames`, expired by the queue deadline).
    pub(super) control: VecDeque<(Instant, Frame)>,
    /// The writer holds a connection.
    pub(super) connected: bool,
    /// The current connection's own path for internal frames (`Connector::control_sender`).
    pub(super) control_tx: Option<mpsc::Sender<Frame>>,
    /// This node's datagram key to the peer (sealed datagrams, Noise only).
    pub(super) seal: Option<SealKey>,
    /// The peer's datagram key to this node, with its replay window (Noise only).
    pub(super) open: Option<OpenKey>,
    /// `Connector::write_waits` of the current connection when last counted into
    /// `stats.session_write_waits` (0 for a new connection).
    pub(super) conn_write_waits: u64,
    /// The current connection's session, for links with sessions (streams open on it).
    pub(super) session: Option<crate::session::Session>,
}

impl Peer {
    /// A new destination `id` with an empty queue bounded by `limits`, cancelled with `cancel`
    /// (a child of the node's token) and stopping with `node_stopping`.
    pub(super) fn new(
        id: NodeId,
        limits: QueueLimits,
        cancel: CancellationToken,
        node_stopping: Arc<AtomicBool>,
    ) -> Peer {
        Peer {
            id,
            state: Mutex::new(PeerState {
                queue: SendQueue::new(limits),
                stats: PeerStats::default(),
                writer_running: false,
                connected_before: false,
                control: VecDeque::new(),
                connected: false,
                control_tx: None,
                seal: None,
                open: None,
                conn_write_waits: 0,
                session: None,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            cancel,
            removed: AtomicBool::new(false),
            node_stopping,
            generation: AtomicU64::new(0),
            connected_now: Notify::new(),
        }
    }

    /// Whether the node stops or the peer was removed: what `cancel.is_cancelled()` says,
    /// read from two flags rather than under the token's lock (the send path asks per
    /// message). The flags are set before the tokens are cancelled.
    pub(super) fn is_cancelled(&self) -> bool {
        self.removed.load(Ordering::Acquire) || self.node_stopping.load(Ordering::Acquire)
    }

    /// Removes the peer: marks it, then cancels its token.
    pub(super) fn stop(&self) {
        self.removed.store(true, Ordering::Release);
        self.cancel.cancel();
    }

    /// Locks the state.
    pub(super) fn lock(&self) -> MutexGuard<'_, PeerState> {
        // A poisoned lock (a panic while held: a bug) is recovered: the state is plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer's counters, with the queue's own.
    pub(super) fn stats(&self) -> PeerStats {
        let st = self.lock();
        let mut stats = st.stats;
        st.queue.fill_stats(&mut stats);
        stats
    }
}
