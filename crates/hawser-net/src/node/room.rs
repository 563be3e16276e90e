//! [`Room`]: where senders wait for room in one destination's queue.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Where senders wait for room in one destination's queue: the engine's `Event::Room` (or a
/// removal, or the stop) bumps `epoch` and wakes them.
#[derive(Debug, Default)]
pub(crate) struct Room {
    notify: Notify,
    epoch: AtomicU64,
}

impl Room {
    /// The epoch now (read under the node's lock, before waiting).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Wakes every waiter.
    pub fn wake(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Waits for a wake-up after epoch `seen` (at once if one came since).
    pub async fn wait(&self, seen: u64) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.epoch() != seen {
            return;
        }
        notified.await;
    }
}
