//! One destination's outgoing queue, bounded by count and bytes, with a deadline.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::PeerStats;

/// The bounds of a [`SendQueue`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most messages waiting. Default 10,240 (PhxPaxos's queue length).
    pub max_messages: usize,
    /// Most payload bytes waiting. Default 200 MiB.
    pub max_bytes: usize,
    /// A message that waited longer than this is dropped (and counted) when it reaches the
    /// head: a consensus message that late is useless. Default 5 s.
    pub deadline: Duration,
}

impl Default for QueueLimits {
    fn default() -> QueueLimits {
        QueueLimits {
            max_messages: 10_240,
            max_bytes: 200 * 1024 * 1024,
            deadline: Duration::from_secs(5),
        }
    }
}

/// A message in the queue, with the time it was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// The payload.
    pub payload: Bytes,
    /// When it was queued (the `now` given to [`SendQueue::push`]).
    pub queued_at: Instant,
}

/// The queue is full: the message was refused and counted in `dropped_full`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("queue full ({messages} messages, {bytes} bytes waiting)")]
pub struct QueueFull {
    /// Messages waiting when it was refused.
    pub messages: usize,
    /// Bytes waiting when it was refused.
    pub bytes: usize,
}

/// One destination's outgoing queue: FIFO, bounded by [`QueueLimits`], with time passed in.
///
/// ```
/// use std::time::{Duration, Instant};
/// use hawser_proto::node::{QueueLimits, SendQueue};
///
/// let limits = QueueLimits { max_messages: 2, max_bytes: 100, deadline: Duration::from_secs(5) };
/// let mut q = SendQueue::new(limits);
/// let t0 = Instant::now(); // the caller's clock
/// q.push(t0, "a".into()).unwrap();
/// q.push(t0 + Duration::from_secs(4), "b".into()).unwrap();
/// assert!(q.push(t0, "c".into()).is_err()); // full: an error, never growth
/// // At 6 s, "a" has outlived the deadline: dropped at the head and counted.
/// assert_eq!(q.pop(t0 + Duration::from_secs(6)).unwrap().payload, "b");
/// assert_eq!(q.dropped_stale(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct SendQueue {
    items: VecDeque<Queued>,
    bytes: usize,
    limits: QueueLimits,
    enqueued: u64,
    dropped_stale: u64,
    dropped_full: u64,
}

impl SendQueue {
    /// An empty queue with these bounds.
    pub fn new(limits: QueueLimits) -> SendQueue {
        SendQueue {
            items: VecDeque::new(),
            bytes: 0,
            limits,
            enqueued: 0,
            dropped_stale: 0,
            dropped_full: 0,
        }
    }

    /// The bounds.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Whether a payload of `len` bytes would be accepted now.
    pub fn has_room_for(&self, len: usize) -> bool {
        self.items.len() < self.limits.max_messages
            && self.bytes.saturating_add(len) <= self.limits.max_bytes
    }

    /// Queues a payload at the tail.
    ///
    /// # Errors
    /// [`QueueFull`] when the count or the byte bound would be exceeded; the refusal is
    /// counted and nothing is queued.
    pub fn push(&mut self, now: Instant, payload: Bytes) -> Result<(), QueueFull> {
        if !self.has_room_for(payload.len()) {
            self.dropped_full += 1;
            return Err(QueueFull {
                messages: self.items.len(),
                bytes: self.bytes,
            });
        }
        self.bytes += payload.len();
        self.enqueued += 1;
        self.items.push_back(Queued {
            payload,
            queued_at: now,
        });
        Ok(())
    }

    /// Drops every message at the head that has outlived the deadline at `now`; returns how
    /// many (also counted in [`dropped_stale`](Self::dropped_stale)). A `now` earlier than a
    /// message's queue time counts as no wait.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some(head) = self.items.front() {
            if now.saturating_duration_since(head.queued_at) <= self.limits.deadline {
                break;
            }
            self.remove_head();
            dropped += 1;
        }
        self.dropped_stale += dropped as u64;
        dropped
    }

    /// The next message still within its deadline at `now`, dropping (and counting) stale ones
    /// that reach the head first.
    pub fn pop(&mut self, now: Instant) -> Option<Queued> {
        self.expire(now);
        self.remove_head()
    }

    /// Puts a message taken with [`pop`](Self::pop) back at the head (its write failed; it will
    /// be retried first). It keeps its queue time, so the deadline still applies. This may
    /// exceed the bounds by that one message, which was counted in them before.
    pub fn requeue_front(&mut self, item: Queued) {
        self.bytes = self.bytes.saturating_add(item.payload.len());
        self.items.push_front(item);
    }

    /// When the head message will outlive the deadline, if there is one.
    pub fn next_expiry(&self) -> Option<Instant> {
        let head = self.items.front()?;
        head.queued_at.checked_add(self.limits.deadline)
    }

    /// Drops everything waiting (not counted as stale); returns how many.
    pub fn clear(&mut self) -> usize {
        let n = self.items.len();
        self.items.clear();
        self.bytes = 0;
        n
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Payload bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages dropped at the head for outliving the deadline, in total.
    pub fn dropped_stale(&self) -> u64 {
        self.dropped_stale
    }

    /// Messages refused because the queue was full, in total.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full
    }

    /// Copies the queue's counters into `stats` (`queued`, `queued_bytes`, `enqueued`,
    /// `dropped_stale`, `dropped_full`); the other fields are left as they are.
    pub fn fill_stats(&self, stats: &mut PeerStats) {
        stats.queued = self.items.len() as u64;
        stats.queued_bytes = self.bytes as u64;
        stats.enqueued = self.enqueued;
        stats.dropped_stale = self.dropped_stale;
        stats.dropped_full = self.dropped_full;
    }

    fn remove_head(&mut self) -> Option<Queued> {
        let item = self.items.pop_front()?;
        self.bytes = self.bytes.saturating_sub(item.payload.len());
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limits(max_messages: usize, max_bytes: usize, deadline_ms: u64) -> QueueLimits {
        QueueLimits {
            max_messages,
            max_bytes,
            deadline: Duration::from_millis(deadline_ms),
        }
    }

    fn origin() -> Instant {
        #[allow(clippy::disallowed_methods)] // tests need one arbitrary origin
        Instant::now()
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn defaults_are_phxpaxos_like() {
        let l = QueueLimits::default();
        assert_eq!(l.max_messages, 10_240);
        assert_eq!(l.max_bytes, 200 << 20);
        assert_eq!(l.deadline, Duration::from_secs(5));
    }

    #[test]
    fn fifo_within_deadline() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(10, 100, 1000));
        for p in ["a", "b", "c"] {
            q.push(t0, Bytes::from(p)).unwrap();
        }
        assert_eq!((q.len(), q.bytes()), (3, 3));
        let got: Vec<_> = std::iter::from_fn(|| q.pop(ms(t0, 1000)))
            .map(|i| i.payload)
            .collect();
        assert_eq!(got, ["a", "b", "c"]);
        assert_eq!((q.len(), q.bytes(), q.dropped_stale()), (0, 0, 0));
    }

    #[test]
    fn full_by_count_and_by_bytes_is_refused_and_counted() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(2, 10, 1000));
        q.push(t0, Bytes::from_static(b"12345")).unwrap();
        assert_eq!(
            q.push(t0, Bytes::from_static(b"123456")),
            Err(QueueFull {
                messages: 1,
                bytes: 5
            })
        );
        q.push(t0, Bytes::from_static(b"12345")).unwrap();
        assert!(q.push(t0, Bytes::new()).is_err());
        assert_eq!(q.dropped_full(), 2);
        let mut s = PeerStats::default();
        q.fill_stats(&mut s);
        assert_eq!(
            (s.queued, s.queued_bytes, s.enqueued, s.dropped_full),
            (2, 10, 2, 2)
        );
    }

    #[test]
    fn stale_messages_drop_at_the_head_only() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(10, 100, 100));
        q.push(t0, "old".into()).unwrap();
        q.push(ms(t0, 50), "mid".into()).unwrap();
        q.push(ms(t0, 140), "new".into()).unwrap();
        assert_eq!(q.next_expiry(), Some(ms(t0, 100)));
        assert_eq!(
            q.expire(ms(t0, 100)),
            0,
            "exactly at the deadline is still in time"
        );
        assert_eq!(q.pop(ms(t0, 160)).unwrap().payload, "new");
        assert_eq!(q.dropped_stale(), 2);
        assert_eq!(q.bytes(), 0);
        assert_eq!(q.pop(ms(t0, 160)), None);
    }

    #[test]
    fn requeued_message_comes_first_and_keeps_its_age() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(1, 100, 100));
        q.push(t0, "x".into()).unwrap();
        let item = q.pop(t0).unwrap();
        q.push(ms(t0, 10), "y".into()).unwrap();
        q.requeue_front(item);
        assert_eq!(q.len(), 2, "one over the bound, by the requeued message");
        assert_eq!(q.pop(ms(t0, 105)).unwrap().payload, "y");
        assert_eq!(q.dropped_stale(), 1);
    }

    #[test]
    fn clock_going_back_counts_as_no_wait() {
        let t0 = origin() + Duration::from_secs(10);
        let mut q = SendQueue::new(limits(10, 100, 100));
        q.push(t0, "a".into()).unwrap();
        assert_eq!(q.pop(t0 - Duration::from_secs(5)).unwrap().payload, "a");
        assert_eq!(q.clear(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(usize, u64),
        Pop(u64),
        PopRequeue(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..40, 0u64..50).prop_map(|(l, dt)| Op::Push(l, dt)),
            (0u64..50).prop_map(Op::Pop),
            (0u64..50).prop_map(Op::PopRequeue),
        ]
    }

    proptest! {
        /// Against a model: bounds hold (but for one requeued message), order is FIFO, nothing
        /// handed out is stale, and every message is accounted for exactly once.
        #[test]
        fn queue_matches_model(ops in proptest::collection::vec(op(), 0..200),
                               max_messages in 1usize..8, max_bytes in 0usize..120,
                               deadline in 0u64..120) {
            let t0 = origin();
            let mut now = t0;
            let mut q = SendQueue::new(limits(max_messages, max_bytes, deadline));
            let (mut pushed, mut popped, mut next_id) = (0u64, 0u64, 0u64);
            let mut last_popped: Option<u64> = None;
            for op in ops {
                match op {
                    Op::Push(len, dt) => {
                        now += Duration::from_millis(dt);
                        let mut p = vec![0u8; len.max(8)];
                        p[..8].copy_from_slice(&next_id.to_be_bytes());
                        let p = Bytes::from(p);
                        let fits = q.has_room_for(p.len());
                        prop_assert_eq!(q.push(now, p).is_ok(), fits);
                        if fits { pushed += 1; next_id += 1; }
                    }
                    Op::Pop(dt) | Op::PopRequeue(dt) => {
                        now += Duration::from_millis(dt);
                        if let Some(item) = q.pop(now) {
                            prop_assert!(now.duration_since(item.queued_at) <= q.limits().deadline);
                            let id = u64::from_be_bytes(item.payload[..8].try_into().unwrap());
                            if let Some(prev) = last_popped { prop_assert!(id >= prev); }
                            last_popped = Some(id);
                            if matches!(op, Op::PopRequeue(_)) {
                                q.requeue_front(item);
                            } else {
                                popped += 1;
                            }
                        }
                    }
                }
                prop_assert!(q.len() <= max_messages);
                prop_assert!(q.bytes() <= max_bytes);
                prop_assert_eq!(pushed, popped + q.dropped_stale() + q.len() as u64);
            }
        }
    }
}
