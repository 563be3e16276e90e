//! The clock of queue times: a message's time in its queue only decides whether it outlived
//! the queue's deadline (5 s by default), so the send path reads the kernel's coarse monotonic
//! clock (`CLOCK_MONOTONIC_COARSE`, a value the kernel updates every tick) instead of the
//! precise one, which cost 5-8 % of the sending thread's CPU with one `send` per message.
//!
//! Both are the same clock: a coarse reading lags the precise one by less than a tick (1-4 ms),
//! so a queue time taken here is within a tick of the true one, and a message may be dropped
//! as stale up to a tick early (or late). Elsewhere, and where the coarse clock is missing,
//! `Instant::now()` is used.

use std::time::Instant;

/// Readings of the coarse clock as [`Instant`]s.
#[derive(Debug)]
pub(crate) struct QueueClock {
    /// A precise reading, and the coarse one taken just after it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    origin: (Instant, std::time::Duration),
}

impl QueueClock {
    /// A clock anchored now.
    pub(crate) fn new() -> QueueClock {
        QueueClock {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            origin: (Instant::now(), coarse()),
        }
    }

    /// Now, to within a tick.
    pub(crate) fn now(&self) -> Instant {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let (at, coarse_at) = self.origin;
            at + coarse().saturating_sub(coarse_at)
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            Instant::now()
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn coarse() -> std::time::Duration {
    use rustix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::MonotonicCoarse);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
    std::time::Duration::new(secs, nanos)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn readings_stay_within_a_tick_of_the_precise_clock_and_never_go_back() {
        let clock = QueueClock::new();
        let mut last = clock.now();
        for _ in 0..1000 {
            let precise = Instant::now();
            let coarse = clock.now();
            assert!(coarse >= last, "went back");
            last = coarse;
            let off = if coarse > precise {
                coarse - precise
            } else {
                precise - coarse
            };
            // A tick is at most 10 ms (HZ 100); allow for a descheduled test thread.
            assert!(off < Duration::from_millis(50), "{off:?} off");
        }
    }
}
