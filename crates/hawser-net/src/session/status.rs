//! [`Status`]: what the sealed channel reports to its session (why it failed, and counters),
//! shared by the channel's reader and writer, the multiplexer's streams and the session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::error::CloseReason;

/// What the sealed I/O object (`super::sealed`) reports to the session.
#[derive(Default)]
pub(crate) struct Status {
    reason: Mutex<Option<CloseReason>>,
    duplicates: AtomicU64,
    write_waits: AtomicU64,
}

impl Status {
    /// Records why the channel failed (the first reason wins).
    pub(crate) fn fail(&self, reason: CloseReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
    }

    pub(crate) fn reason(&self) -> Option<CloseReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Counts a duplicate message dropped before decryption.
    pub(crate) fn note_duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Counts a stream write that had to wait for the multiplexer.
    pub(crate) fn note_write_wait(&self) {
        self.write_waits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn write_waits(&self) -> u64 {
        self.write_waits.load(Ordering::Relaxed)
    }
}
