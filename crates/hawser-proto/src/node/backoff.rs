//! The reconnect schedule: capped exponential back-off, as pure data.

use std::time::Duration;

/// Capped exponential back-off: `initial`, then twice the previous delay, never above `max`;
/// [`reset`](Self::reset) after a success starts over. Deterministic (no jitter): the caller
/// adds jitter from its own seeded RNG if it wants some.
///
/// ```
/// use std::time::Duration;
/// use hawser_proto::node::Backoff;
///
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
/// let delays: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
/// assert_eq!(delays, [100, 200, 350, 350]);
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempts: u32,
}

impl Backoff {
    /// A schedule starting at `initial` and capped at `max` (a `max` below `initial` caps the
    /// first delay too).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial.min(max),
            attempts: 0,
        }
    }

    /// The delay to wait before the next attempt; each call doubles the following one, up to
    /// the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// Starts over at the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
        self.attempts = 0;
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        let d: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(b.attempts(), 9);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn huge_values_saturate() {
        let mut b = Backoff::new(Duration::MAX, Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
