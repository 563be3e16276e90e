//! The flags through which the driver task, writing tasks and waiting readers hand the
//! endpoint's I/O to each other, and the decisions taken on them (see `driver::Shared` for who
//! does what, and the invariants these keep).
//!
//! The driver and the model checks in `handoff::model` run this same code: under `--cfg hawser_loom`
//! the atomics are loom's, which explore every interleaving of the threads touching them.

#[cfg(hawser_loom)]
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(hawser_loom))]
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// `owed_since` when no acknowledgement is held back.
const NOTHING_OWED: u64 = u64::MAX;

/// The hand-off flags. Methods documented "endpoint locked" must be called with the endpoint's
/// lock held: that lock orders them against each other, and the flags carry only what happens
/// outside it.
pub(crate) struct Handoff {
    /// Set (endpoint locked) while the driver sends what it drained, cleared after, so that no
    /// task sends past it out of order.
    driver_sending: AtomicBool,
    /// Set when the driver is woken to drain, cleared (endpoint locked) when it does: while
    /// set, output queued under the lock leaves with that drain, no new wake-up needed.
    drain_due: AtomicBool,
    /// Since when acknowledgements are held back for a reply, in nanoseconds on the driver's
    /// clock ([`NOTHING_OWED`]: nothing held).
    owed_since: AtomicU64,
    /// Tasks waiting for the endpoint that receive from the socket themselves; while there are
    /// any, the driver leaves the socket to them.
    readers: AtomicUsize,
    /// Set when the driver task has ended, normally or not.
    driver_gone: AtomicBool,
}

impl Handoff {
    pub fn new() -> Handoff {
        Handoff {
            driver_sending: AtomicBool::new(false),
            drain_due: AtomicBool::new(false),
            owed_since: AtomicU64::new(NOTHING_OWED),
            readers: AtomicUsize::new(0),
            driver_gone: AtomicBool::new(false),
        }
    }

    /// A command queued output for the driver (endpoint locked): whether the driver must be
    /// woken for it ([`request_drain`](Self::request_drain)). Not if a drain is already due
    /// and nothing is held back: the driver's next round, which locks the endpoint after this
    /// command, sends it.
    pub fn must_wake_for_queued(&self) -> bool {
        !(self.drain_due.load(Ordering::Acquire)
            && self.owed_since.load(Ordering::Acquire) == NOTHING_OWED)
    }

    /// Asks the driver to send everything, held-back acknowledgements included, without
    /// delay. The caller then wakes the driver.
    pub fn request_drain(&self) {
        self.owed_since.store(NOTHING_OWED, Ordering::Release);
        self.drain_due.store(true, Ordering::Release);
    }

    /// Holds back what a receive at `at` (nanoseconds) caused for a reply; whether nothing
    /// was held before (then the caller arms the driver's timer for the end of the delay).
    pub fn owe(&self, at: u64) -> bool {
        self.owed_since
            .compare_exchange(NOTHING_OWED, at, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether acknowledgements are held back for a reply.
    pub fn is_owed(&self) -> bool {
        self.owed_since.load(Ordering::Acquire) != NOTHING_OWED
    }

    /// Since when acknowledgements are held back, if they are.
    pub fn owed_since(&self) -> Option<u64> {
        let since = self.owed_since.load(Ordering::Acquire);
        (since != NOTHING_OWED).then_some(since)
    }

    /// A task other than the driver is about to send what the endpoint has (endpoint locked):
    /// whether it may. Not while the driver sends what it drained earlier, which must leave
    /// first. If it may, held-back acknowledgements go with it.
    pub fn start_inline_send(&self) -> bool {
        if self.driver_sending.load(Ordering::Acquire) {
            return false;
        }
        self.owed_since.store(NOTHING_OWED, Ordering::Release);
        true
    }

    /// The driver starts a round (endpoint locked): `None` to drain the endpoint now, else
    /// what `hold(since)` said (acknowledgements held since `since` may wait longer). A
    /// requested drain is never held back: a command that found it due did not wake the
    /// driver and counts on this round to send its output, even if a receive began to hold
    /// acknowledgements back since. Draining clears the request, so a command after this
    /// wakes the driver again.
    pub fn start_round<T>(&self, finished: bool, hold: impl FnOnce(u64) -> Option<T>) -> Option<T> {
        if !finished && !self.drain_due.load(Ordering::Acquire) {
            if let Some(held) = self.owed_since().and_then(hold) {
                return Some(held);
            }
        }
        self.owed_since.store(NOTHING_OWED, Ordering::Release);
        self.drain_due.store(false, Ordering::Release);
        None
    }

    /// The driver will send what it drained after unlocking the endpoint (endpoint locked).
    pub fn driver_sends(&self) {
        self.driver_sending.store(true, Ordering::Release);
    }

    /// The driver has sent what it drained.
    pub fn driver_sent(&self) {
        self.driver_sending.store(false, Ordering::Release);
    }

    /// A task starts receiving from the socket while it waits.
    pub fn enter_reader(&self) {
        self.readers.fetch_add(1, Ordering::AcqRel);
    }

    /// A task stops receiving from the socket; whether it was the last (then the caller has
    /// the driver take the socket back).
    pub fn leave_reader(&self) -> bool {
        self.readers.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Whether tasks are receiving from the socket (then the driver does not).
    pub fn has_readers(&self) -> bool {
        self.readers.load(Ordering::Acquire) != 0
    }

    /// The driver task has ended.
    pub fn set_driver_gone(&self) {
        self.driver_gone.store(true, Ordering::Release);
    }

    /// Whether the driver task has ended (after which nothing written is ever sent).
    pub fn is_driver_gone(&self) -> bool {
        self.driver_gone.load(Ordering::Acquire)
    }
}

#[cfg(all(test, hawser_loom))]
mod model;
