//! Flooding (Rope's EventPub): the bounded seen-cache and the apply/forward decision.
//!
//! Each node forwards an event it has not seen to all its neighbours except the one it came
//! from (and its origin), so on a static graph an event crosses each edge at most twice. The
//! seen-cache forgets an id after `seen_ttl`, or earlier when `max_seen` ids are held (oldest
//! first); a forgotten id that comes back is applied and forwarded again, which the hop limit
//! (`max_hops`) bounds.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::{EventId, NodeId};

/// What to do with a received event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Seen before (or a forged future event of ours): drop it.
    Duplicate,
    /// Our own event came back: apply it (idempotently), never forward it.
    OwnReturned,
    /// New: apply it; forward it with one more hop if `forward`.
    Apply {
        /// Whether the hop limit still allows a forward.
        forward: bool,
    },
}

/// Ids of recently seen events, bounded in count and age.
///
/// Lookups only (never iterated in hash order), so runs stay deterministic.
#[derive(Debug)]
pub(crate) struct SeenCache {
    ids: HashSet<EventId>,
    /// Insertion order with insertion time; `now` never goes back, so this is expiry order.
    order: VecDeque<(Instant, EventId)>,
    ttl: Duration,
    cap: usize,
    evicted: u64,
}

impl SeenCache {
    /// An empty cache holding at most `cap` ids, each for at most `ttl`.
    pub(crate) fn new(ttl: Duration, cap: usize) -> SeenCache {
        SeenCache {
            ids: HashSet::new(),
            order: VecDeque::new(),
            ttl,
            cap: cap.max(1),
            evicted: 0,
        }
    }

    /// Records `id` as seen at `now`; true if it was not held already.
    pub(crate) fn insert(&mut self, now: Instant, id: EventId) -> bool {
        self.expire(now);
        if self.ids.contains(&id) {
            return false;
        }
        while self.order.len() >= self.cap {
            self.pop_oldest();
            self.evicted += 1;
        }
        self.ids.insert(id);
        self.order.push_back((now, id));
        true
    }

    /// Forgets every id older than the ttl.
    pub(crate) fn expire(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.ttl)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.ids.remove(&id);
        }
    }

    /// Ids held.
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Ids forgotten early because the cache was full.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// Decides what to do with `id`, received after `hops` forwards, at a node `me` whose own
/// events so far go up to `own_latest`.
pub(crate) fn decide(
    me: NodeId,
    own_latest: EventId,
    id: EventId,
    hops: u8,
    max_hops: u8,
    seen: &mut SeenCache,
    now: Instant,
) -> Verdict {
    if id.origin == me {
        // A stamp beyond ours is not ours: a forgery or a clash of ids. Drop it.
        return if id.stamp <= own_latest.stamp {
            Verdict::OwnReturned
        } else {
            Verdict::Duplicate
        };
    }
    if !seen.insert(now, id) {
        return Verdict::Duplicate;
    }
    Verdict::Apply {
        forward: hops.saturating_add(1) < max_hops,
    }
}

/// The neighbours to forward to: every one but `from` and the origin.
pub(crate) fn targets<'a, T>(
    neighbours: impl Iterator<Item = (NodeId, T)> + 'a,
    from: Option<NodeId>,
    origin: NodeId,
) -> impl Iterator<Item = (NodeId, T)> + 'a {
    neighbours.filter(move |(n, _)| Some(*n) != from && *n != origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::reach::Stamp;

    fn id(origin: u64, seq: u64) -> EventId {
        EventId {
            origin: NodeId(origin),
            stamp: Stamp {
                incarnation: 1,
                seq,
            },
        }
    }

    #[test]
    fn cache_dedups_forgets_after_ttl_and_stays_bounded() {
        let t0 = crate::reach::test_origin();
        let mut c = SeenCache::new(Duration::from_secs(5), 3);
        assert!(c.insert(t0, id(1, 1)));
        assert!(!c.insert(t0, id(1, 1)));
        for s in 2..=10 {
            assert!(c.insert(t0, id(1, s)));
            assert!(c.len() <= 3);
        }
        assert_eq!(c.evicted(), 7);
        // Evicted early: accepted again (the hop limit is the backstop).
        assert!(c.insert(t0, id(1, 1)));
        c.expire(t0 + Duration::from_secs(5));
        assert_eq!(c.len(), 0);
        assert!(c.insert(t0 + Duration::from_secs(5), id(1, 10)));
    }

    #[test]
    fn decide_applies_once_and_respects_hop_limit() {
        let t0 = crate::reach::test_origin();
        let mut c = SeenCache::new(Duration::from_secs(5), 16);
        let me = NodeId(9);
        let own = id(9, 4);
        let apply = |forward| Verdict::Apply { forward };
        assert_eq!(decide(me, own, id(1, 1), 0, 3, &mut c, t0), apply(true));
        assert_eq!(
            decide(me, own, id(1, 1), 0, 3, &mut c, t0),
            Verdict::Duplicate
        );
        assert_eq!(decide(me, own, id(1, 2), 1, 3, &mut c, t0), apply(true));
        assert_eq!(decide(me, own, id(1, 3), 2, 3, &mut c, t0), apply(false));
        assert_eq!(decide(me, own, id(1, 4), 255, 3, &mut c, t0), apply(false));
        assert_eq!(
            decide(me, own, id(9, 4), 1, 3, &mut c, t0),
            Verdict::OwnReturned
        );
        assert_eq!(
            decide(me, own, id(9, 4), 1, 3, &mut c, t0),
            Verdict::OwnReturned
        );
        assert_eq!(
            decide(me, own, id(9, 5), 1, 3, &mut c, t0),
            Verdict::Duplicate
        );
    }

    #[test]
    fn targets_skip_sender_and_origin() {
        let n = [(NodeId(1), ()), (NodeId(2), ()), (NodeId(3), ())];
        let got: Vec<_> = targets(n.into_iter(), Some(NodeId(2)), NodeId(3))
            .map(|(n, _)| n.0)
            .collect();
        assert_eq!(got, vec![1]);
    }
}
