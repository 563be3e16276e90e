//! A lease: "valid until" an instant, renewed by evidence, with change detection.
//!
//! Both peer liveness (`alive_until`) and address reachability (`promise_reachable`) are leases.
//! [`Lease`] remembers what was last reported, so the engine emits one event per change.

use std::time::{Duration, Instant};

/// A lease and the state last reported for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lease {
    /// When the evidence for it last arrived (`last_reachable` for an address).
    pub(crate) renewed_at: Option<Instant>,
    /// The lease holds strictly before this instant.
    pub(crate) until: Option<Instant>,
    /// Whether the last reported state was "held".
    pub(crate) reported: bool,
}

impl Lease {
    /// Renews the lease at `now` for `duration` (saturating far in the future): it now holds
    /// until `now + duration`, even if it was promised longer before.
    pub(crate) fn renew(&mut self, now: Instant, duration: Duration) {
        self.renewed_at = Some(now);
        self.until = Some(add_saturating(now, duration));
    }

    /// Ends the lease at `now` (a send failed): it no longer holds.
    pub(crate) fn revoke(&mut self, now: Instant) {
        if self.until.is_some_and(|u| u > now) {
            self.until = Some(now);
        }
    }

    /// Forgets the lease entirely (a new incarnation of the peer).
    pub(crate) fn clear(&mut self) {
        self.until = None;
    }

    /// Whether the lease holds at `now`.
    pub(crate) fn holds(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// `Some(new state)` if it differs from the last reported one (and records it as reported).
    pub(crate) fn take_change(&mut self, now: Instant) -> Option<bool> {
        let held = self.holds(now);
        (held != self.reported).then(|| {
            self.reported = held;
            held
        })
    }

    /// The instant at which a reported "held" will lapse, if it is reported held.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.reported {
            self.until
        } else {
            None
        }
    }
}

/// `now + d`, or a far-future instant when that overflows (about 30 years on).
pub(crate) fn add_saturating(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(1 << 30)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_lapse_and_report_once() {
        let t0 = crate::reach::test_origin();
        let mut l = Lease::default();
        assert!(!l.holds(t0));
        assert_eq!(l.take_change(t0), None);
        l.renew(t0, Duration::from_secs(10));
        assert_eq!(l.take_change(t0), Some(true));
        assert_eq!(l.take_change(t0), None);
        assert_eq!(l.deadline(), Some(t0 + Duration::from_secs(10)));
        assert!(l.holds(t0 + Duration::from_millis(9_999)));
        assert_eq!(l.take_change(t0 + Duration::from_secs(10)), Some(false));
        assert_eq!(l.deadline(), None);
    }

    #[test]
    fn revoke_ends_now_and_huge_lease_saturates() {
        let t0 = crate::reach::test_origin();
        let mut l = Lease::default();
        l.renew(t0, Duration::MAX);
        assert!(l.holds(t0 + Duration::from_secs(86_400)));
        l.revoke(t0);
        assert!(!l.holds(t0));
        assert_eq!(l.renewed_at, Some(t0));
    }
}
