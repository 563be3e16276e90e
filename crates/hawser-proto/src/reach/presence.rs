//! Presence: when to send our `ticktock`, and which lease it announces.
//!
//! With [`LeasePolicy::Fixed`] every ticktock announces the same lease L and the next one is
//! due L / `renew_divisor` later. With [`LeasePolicy::Adaptive`] the lease grows with our
//! continuous uptime (the approach of adaptive mobile heartbeats): a new or flapping node
//! announces short leases, so its crash is detected fast; a stable one announces long leases and
//! renews rarely. "Continuous" restarts whenever we lose our last neighbour, since the others
//! then stop hearing us and may declare us dead.

use std::time::{Duration, Instant};

use super::lease::add_saturating;

/// The shortest time between a ticktock and an early one sent to welcome a new peer.
pub const WELCOME_GAP: Duration = Duration::from_secs(1);

/// How long a lease this node announces for itself.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeasePolicy {
    /// Always the same lease.
    Fixed(#[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))] Duration),
    /// A lease growing with continuous uptime, see [`AdaptiveLease`].
    Adaptive(AdaptiveLease),
}

impl Default for LeasePolicy {
    /// A fixed lease of 10 s.
    fn default() -> LeasePolicy {
        LeasePolicy::Fixed(Duration::from_secs(10))
    }
}

impl LeasePolicy {
    /// The lease announced after `uptime` of continuous aliveness.
    pub fn lease_for(&self, uptime: Duration) -> Duration {
        match *self {
            LeasePolicy::Fixed(l) => l,
            LeasePolicy::Adaptive(a) => a.lease_for(uptime),
        }
    }

    /// The longest lease this policy can announce.
    pub fn max_lease(&self) -> Duration {
        match *self {
            LeasePolicy::Fixed(l) => l,
            LeasePolicy::Adaptive(a) => a.max,
        }
    }

    /// The shortest lease this policy can announce.
    pub fn min_lease(&self) -> Duration {
        match *self {
            LeasePolicy::Fixed(l) => l,
            LeasePolicy::Adaptive(a) => a.min.min(a.max),
        }
    }
}

/// An adaptive lease: `clamp(uptime / uptime_divisor, min, max)`.
///
/// With the defaults (2 s, 60 s, 4) a node announces 2 s leases for its first 8 s, then a
/// quarter of its uptime, reaching 60 s after 4 minutes.
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveLease {
    /// The lease of a node that just started or just lost its last neighbour.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub min: Duration,
    /// The cap.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub max: Duration,
    /// The lease is the uptime divided by this (at least 1).
    pub uptime_divisor: u32,
}

impl Default for AdaptiveLease {
    fn default() -> AdaptiveLease {
        AdaptiveLease {
            min: Duration::from_secs(2),
            max: Duration::from_secs(60),
            uptime_divisor: 4,
        }
    }
}

impl AdaptiveLease {
    /// Leases of the uptime divided by `uptime_divisor`, at least `min` and at most `max`.
    pub const fn new(min: Duration, max: Duration, uptime_divisor: u32) -> AdaptiveLease {
        AdaptiveLease {
            min,
            max,
            uptime_divisor,
        }
    }

    /// The lease announced after `uptime` of continuous aliveness.
    pub fn lease_for(&self, uptime: Duration) -> Duration {
        let grown = uptime / self.uptime_divisor.max(1);
        grown.max(self.min).min(self.max)
    }
}

/// Our own ticktock schedule.
#[derive(Debug)]
pub(crate) struct Presence {
    policy: LeasePolicy,
    renew_divisor: u32,
    /// Start of the current run of continuous aliveness.
    stable_since: Instant,
    /// When the next ticktock is due.
    next: Instant,
    /// The lease of the last ticktock sent (the one in force at our peers).
    in_force: Duration,
    /// When the last ticktock was sent.
    last_sent: Option<Instant>,
}

impl Presence {
    /// A schedule whose first ticktock is due at `now`.
    pub(crate) fn new(policy: LeasePolicy, renew_divisor: u32, now: Instant) -> Presence {
        Presence {
            policy,
            renew_divisor: renew_divisor.max(1),
            stable_since: now,
            next: now,
            in_force: policy.min_lease(),
            last_sent: None,
        }
    }

    /// When the next ticktock is due.
    pub(crate) fn next_due(&self) -> Instant {
        self.next
    }

    /// Whether a ticktock is due at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Asks for a ticktock as soon as possible (a new neighbour should hear us now).
    pub(crate) fn hurry(&mut self, now: Instant) {
        self.next = self.next.min(now);
    }

    /// Asks for an early ticktock because a peer just came alive (it should hear about us
    /// before our next renewal), but not sooner than [`WELCOME_GAP`] after the last one, so
    /// flapping peers cannot make us flood more than once per gap.
    pub(crate) fn welcome(&mut self, now: Instant) {
        let earliest = self
            .last_sent
            .map_or(now, |t| add_saturating(t, WELCOME_GAP).max(now));
        self.next = self.next.min(earliest);
    }

    /// Restarts the uptime count: we were cut off from everyone.
    pub(crate) fn reset_uptime(&mut self, now: Instant) {
        self.stable_since = now;
    }

    /// Records a ticktock sent at `now`, schedules the next, and returns the lease to announce.
    pub(crate) fn on_send(&mut self, now: Instant) -> Duration {
        let lease = self
            .policy
            .lease_for(now.saturating_duration_since(self.stable_since));
        self.in_force = lease;
        self.last_sent = Some(now);
        self.next = add_saturating(now, lease / self.renew_divisor);
        lease
    }

    /// The lease announced by the last ticktock.
    pub(crate) fn in_force(&self) -> Duration {
        self.in_force
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_lease_grows_with_uptime_up_to_the_cap() {
        let a = AdaptiveLease::default();
        let s = Duration::from_secs;
        assert_eq!(a.lease_for(s(0)), s(2));
        assert_eq!(a.lease_for(s(8)), s(2));
        assert_eq!(a.lease_for(s(40)), s(10));
        assert_eq!(a.lease_for(s(240)), s(60));
        assert_eq!(a.lease_for(s(100_000)), s(60));
        let zero = AdaptiveLease {
            uptime_divisor: 0,
            ..a
        };
        assert_eq!(zero.lease_for(s(30)), s(30));
    }

    #[test]
    fn fixed_schedule_renews_every_third_and_hurry_pulls_in() {
        let t0 = crate::reach::test_origin();
        let mut p = Presence::new(LeasePolicy::default(), 3, t0);
        assert!(p.is_due(t0));
        assert_eq!(p.on_send(t0), Duration::from_secs(10));
        assert_eq!(p.next_due(), t0 + Duration::from_secs(10) / 3);
        assert!(!p.is_due(t0 + Duration::from_secs(3)));
        p.hurry(t0 + Duration::from_secs(1));
        assert!(p.is_due(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn welcome_is_early_but_spaced() {
        let t0 = crate::reach::test_origin();
        let mut p = Presence::new(LeasePolicy::default(), 3, t0);
        p.on_send(t0);
        p.welcome(t0 + Duration::from_millis(10));
        assert_eq!(p.next_due(), t0 + WELCOME_GAP);
        p.on_send(t0 + WELCOME_GAP);
        p.welcome(t0 + Duration::from_secs(3));
        assert_eq!(p.next_due(), t0 + Duration::from_secs(3));
    }

    #[test]
    fn adaptive_schedule_resets_on_isolation() {
        let t0 = crate::reach::test_origin();
        let mut p = Presence::new(LeasePolicy::Adaptive(AdaptiveLease::default()), 3, t0);
        let at = t0 + Duration::from_secs(400);
        assert_eq!(p.on_send(at), Duration::from_secs(60));
        assert_eq!(p.in_force(), Duration::from_secs(60));
        p.reset_uptime(at);
        assert_eq!(p.on_send(at), Duration::from_secs(2));
    }
}
