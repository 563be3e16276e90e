//! One destination's outgoing queue, bounded by count and bytes, with a deadline.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::PeerStats;

/// The bounds of a [`SendQueue`].
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most messages waiting. Default 10,240 (PhxPaxos's queue length).
    pub max_messages: usize,
    /// Most payload bytes waiting. Default 200 MiB.
    pub max_bytes: usize,
    /// A message that waited longer than this is dropped (and counted) when it reaches the
    /// head: a consensus message that late is useless. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub deadline: Duration,
}

impl QueueLimits {
    /// These limits with `max_messages` set.
    #[must_use]
    pub const fn with_max_messages(mut self, max_messages: usize) -> QueueLimits {
        self.max_messages = max_messages;
        self
    }

    /// These limits with `max_bytes` set.
    #[must_use]
    pub const fn with_max_bytes(mut self, max_bytes: usize) -> QueueLimits {
        self.max_bytes = max_bytes;
        self
    }

    /// These limits with `deadline` set.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hawser_proto::node::QueueLimits;
    ///
    /// let limits = QueueLimits::default().with_deadline(Duration::from_secs(1));
    /// assert_eq!(limits.max_messages, 10_240);
    /// ```
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Duration) -> QueueLimits {
        self.deadline = deadline;
        self
    }
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

/// The queue is full: the message was refused and counted in `dropped_full`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("queue full ({messages} messages, {bytes} bytes waiting)")]
pub struct QueueFull {
    /// Messages waiting when it was refused.
    pub messages: usize,
    /// Bytes waiting when it was refused.
    pub bytes: usize,
}

/// One queued message: its encoded frame's length, its payload's, and when it was queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameMeta {
    frame_len: usize,
    payload_len: usize,
    queued_at: Instant,
}

/// Each buffer of a queue has room for at least this many bytes of frames (or one larger
/// frame): 64 KiB.
pub const GROW_BY: usize = 64 * 1024;

/// An emptied buffer larger than this is let go rather than kept for the next messages, so
/// that one burst (or one large message) does not pin its memory: 256 KiB.
pub const RETAINED_BUFFER: usize = 256 * 1024;

/// One destination's outgoing queue: FIFO, bounded by [`QueueLimits`], with time passed in.
///
/// Each message is stored already encoded, header and payload side by side in one buffer, so
/// that the caller's payload is copied once, on the caller's thread, and a writer takes a run
/// of messages as one contiguous [`FrameBatch`] to write as it is. The header is the caller's
/// (the node layer's frame format, `wire::node::app_frame_header`); the bounds count payload
/// bytes.
///
/// ```
/// use std::time::{Duration, Instant};
/// use hawser_proto::node::{FrameBatch, QueueLimits, SendQueue};
///
/// let limits = QueueLimits::default()
///     .with_max_messages(2)
///     .with_max_bytes(100)
///     .with_deadline(Duration::from_secs(5));
/// let mut q = SendQueue::new(limits);
/// let t0 = Instant::now(); // the caller's clock
/// q.push(t0, b"<", b"a").unwrap();
/// q.push(t0 + Duration::from_secs(4), b"<", b"b").unwrap();
/// assert!(q.push(t0, b"<", b"c").is_err()); // full: an error, never growth
/// // At 6 s, "a" has outlived the deadline: dropped at the head and counted.
/// let mut batch = FrameBatch::default();
/// q.take(t0 + Duration::from_secs(6), 16, 1024, &mut batch);
/// assert_eq!(&batch.bytes()[..], b"<b");
/// assert_eq!(q.dropped_stale(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct SendQueue {
    /// The frames of earlier buffers, oldest first (each was `tail` until a frame did not
    /// fit: buffers are never grown, so waiting frames are never copied again). Which buffer
    /// a frame lies in follows from the lengths: the head's is the first of these, or `tail`.
    chunks: VecDeque<Bytes>,
    /// The buffer new frames go to.
    tail: BytesMut,
    /// A written batch's buffer taken back for the next frames (`recycle`), so that a busy
    /// queue does not ask the allocator, and the kernel, for fresh pages all the time.
    spare: Option<BytesMut>,
    /// Room of a new buffer ([`GROW_BY`] unless set otherwise).
    grow_by: usize,
    frames: VecDeque<FrameMeta>,
    bytes: usize,
    limits: QueueLimits,
    enqueued: u64,
    dropped_stale: u64,
    dropped_full: u64,
}

/// Messages taken from a [`SendQueue`] for one write: their frames, contiguous and in order.
/// Reused from one batch to the next.
#[derive(Clone, Debug, Default)]
pub struct FrameBatch {
    bytes: Bytes,
    frames: Vec<FrameMeta>,
}

impl FrameBatch {
    /// The frames, back to back.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// How many frames, from the first, lie whole in the first `written` bytes.
    pub fn whole_in(&self, written: usize) -> usize {
        let mut end = 0;
        self.frames
            .iter()
            .take_while(|f| {
                end += f.frame_len;
                end <= written
            })
            .count()
    }

    /// Payload bytes of the first `n` messages.
    pub fn payload_bytes(&self, n: usize) -> u64 {
        self.frames
            .iter()
            .take(n)
            .map(|f| f.payload_len as u64)
            .sum()
    }

    /// Each message's frame, in order, with how many of its bytes are the header (slices of
    /// [`bytes`](Self::bytes), not copies).
    pub fn frames(&self) -> impl Iterator<Item = (Bytes, usize)> + '_ {
        let mut start = 0;
        self.frames.iter().map(move |f| {
            let end = start + f.frame_len;
            let frame = self.bytes.slice(start..end);
            start = end;
            (frame, f.frame_len - f.payload_len)
        })
    }
}

impl SendQueue {
    /// An empty queue with these bounds.
    pub fn new(limits: QueueLimits) -> SendQueue {
        SendQueue::with_buffers_of(limits, GROW_BY)
    }

    /// An empty queue whose buffers hold at least `bytes` of frames each (tests use small
    /// buffers to reach the paths between them).
    fn with_buffers_of(limits: QueueLimits, bytes: usize) -> SendQueue {
        SendQueue {
            grow_by: bytes.max(1),
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            spare: None,
            frames: VecDeque::new(),
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

    /// Whether senders waiting for room should be woken now: the queue is at most half full,
    /// by count and by bytes (its low watermark). A queue that a faster sender keeps full
    /// wakes that sender once per half a queue drained, not once per batch written, so the
    /// sender refills it in one go instead of a task switch every few messages; half a
    /// queue is still waiting to be written meanwhile, so the link never runs dry for it.
    /// Below the mark every batch taken wakes them again, so a waiter that needs more room
    /// than half a queue is woken as the queue drains further, at the latest when it is empty.
    pub fn below_low_watermark(&self) -> bool {
        self.frames.len() <= self.limits.max_messages / 2 && self.bytes <= self.limits.max_bytes / 2
    }

    /// Whether a payload of `len` bytes would be accepted now.
    pub fn has_room_for(&self, len: usize) -> bool {
        self.frames.len() < self.limits.max_messages
            && self.bytes.saturating_add(len) <= self.limits.max_bytes
    }

    /// Queues a message at the tail: its frame is `header` then `payload`, copied.
    ///
    /// # Errors
    /// [`QueueFull`] when the count or the byte bound would be exceeded; the refusal is
    /// counted and nothing is queued.
    pub fn push(&mut self, now: Instant, header: &[u8], payload: &[u8]) -> Result<(), QueueFull> {
        if !self.has_room_for(payload.len()) {
            return Err(self.refuse());
        }
        let frame_len = header.len() + payload.len();
        if self.tail.capacity() - self.tail.len() < frame_len {
            let room = frame_len.max(self.grow_by);
            if self.tail.is_empty() {
                // Reuses the buffer when the frames taken from it are gone.
                self.tail.reserve(room);
            } else {
                let next = match self.spare.take() {
                    Some(spare) if spare.capacity() >= frame_len => spare,
                    _ => BytesMut::with_capacity(room),
                };
                let full = std::mem::replace(&mut self.tail, next);
                self.chunks.push_back(full.freeze());
            }
        }
        self.tail.extend_from_slice(header);
        self.tail.extend_from_slice(payload);
        self.bytes += payload.len();
        self.enqueued += 1;
        self.frames.push_back(FrameMeta {
            frame_len,
            payload_len: payload.len(),
            queued_at: now,
        });
        Ok(())
    }

    /// Counts a message refused for want of room (as a failed [`push`](Self::push) does), for
    /// callers that check [`has_room_for`](Self::has_room_for) first; returns the refusal.
    pub fn refuse(&mut self) -> QueueFull {
        self.dropped_full += 1;
        QueueFull {
            messages: self.frames.len(),
            bytes: self.bytes,
        }
    }

    /// Drops every message at the head that has outlived the deadline at `now`; returns how
    /// many (also counted in [`dropped_stale`](Self::dropped_stale)). A `now` earlier than a
    /// message's queue time counts as no wait.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        while let Some(head) = self.frames.front() {
            if now.saturating_duration_since(head.queued_at) <= self.limits.deadline {
                break;
            }
            let head = *head;
            self.frames.pop_front();
            self.drop_front_bytes(head.frame_len);
            self.bytes = self.bytes.saturating_sub(head.payload_len);
            dropped += 1;
        }
        self.dropped_stale += dropped as u64;
        self.release_if_empty();
        dropped
    }

    /// Replaces `batch` with the next messages: first drops (and counts) the stale ones at the
    /// head, then takes at least one message if any is left, and more while fewer than
    /// `max_messages` are taken, their payloads come to less than `max_bytes`, and they lie in
    /// the same buffer (at least [`GROW_BY`] bytes of frames, unless the queue holds fewer).
    /// Returns how many stale ones were dropped.
    ///
    /// Only the head's age is checked: the messages behind it were queued no earlier, when the
    /// `now` given to [`push`](Self::push) never goes back.
    pub fn take(
        &mut self,
        now: Instant,
        max_messages: usize,
        max_bytes: usize,
        batch: &mut FrameBatch,
    ) -> usize {
        let dropped = self.expire(now);
        batch.frames.clear();
        let in_buffer = self.chunks.front().map_or(self.tail.len(), Bytes::len);
        let (mut frame_bytes, mut payload_bytes) = (0, 0);
        while let Some(&f) = self.frames.front() {
            let more = batch.frames.len() < max_messages && payload_bytes < max_bytes;
            // At least one; the others while the bounds hold, from the same buffer.
            if !batch.frames.is_empty() && (!more || frame_bytes + f.frame_len > in_buffer) {
                break;
            }
            self.frames.pop_front();
            frame_bytes += f.frame_len;
            payload_bytes += f.payload_len;
            batch.frames.push(f);
        }
        self.bytes = self.bytes.saturating_sub(payload_bytes);
        batch.bytes = match self.chunks.front_mut() {
            Some(chunk) => {
                let bytes = chunk.split_to(frame_bytes);
                if chunk.is_empty() {
                    self.chunks.pop_front();
                }
                bytes
            }
            None => self.tail.split_to(frame_bytes).freeze(),
        };
        self.release_if_empty();
        dropped
    }

    /// Puts the messages of `batch` from the `from`-th on back at the head, in order (their
    /// write failed; they will be retried first). They keep their queue times, so the deadline
    /// still applies. This may exceed the bounds by that batch, which was counted in them
    /// before. Returns how many.
    pub fn requeue_front(&mut self, batch: &FrameBatch, from: usize) -> usize {
        let Some(rest) = batch.frames.get(from..) else {
            return 0;
        };
        if rest.is_empty() {
            return 0;
        }
        let skip: usize = batch.frames.iter().take(from).map(|f| f.frame_len).sum();
        self.chunks
            .push_front(batch.bytes.slice(skip.min(batch.bytes.len())..));
        for f in rest.iter().rev() {
            self.frames.push_front(*f);
            self.bytes = self.bytes.saturating_add(f.payload_len);
        }
        rest.len()
    }

    /// Empties `batch` once it was written, keeping its buffer for the next frames when
    /// nothing else holds it (the last batch taken from a buffer) and the queue has no spare
    /// one yet; at most one buffer of at most [`RETAINED_BUFFER`] bytes is kept so.
    pub fn recycle(&mut self, batch: &mut FrameBatch) {
        let bytes = std::mem::take(&mut batch.bytes);
        batch.frames.clear();
        if self.spare.is_some() {
            return;
        }
        if let Ok(mut buf) = bytes.try_into_mut() {
            buf.clear();
            // Unique and empty: this takes back the whole allocation, without a copy.
            buf.reserve(self.grow_by);
            if buf.capacity() <= RETAINED_BUFFER {
                self.spare = Some(buf);
            }
        }
    }

    /// When the head message will outlive the deadline, if there is one.
    pub fn next_expiry(&self) -> Option<Instant> {
        let head = self.frames.front()?;
        head.queued_at.checked_add(self.limits.deadline)
    }

    /// Drops everything waiting (not counted as stale); returns how many.
    pub fn clear(&mut self) -> usize {
        let n = self.frames.len();
        self.frames.clear();
        self.chunks.clear();
        self.tail.clear();
        self.bytes = 0;
        self.release_if_empty();
        n
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Payload bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes the queue's buffers hold (frames waiting, room for more in the newest, and the
    /// spare one), for memory accounting; once the queue is empty, at most twice
    /// [`RETAINED_BUFFER`] (the newest buffer and the spare, each kept only up to that size).
    pub fn buffer_capacity(&self) -> usize {
        self.tail.capacity()
            + self.spare.as_ref().map_or(0, BytesMut::capacity)
            + self.chunks.iter().map(Bytes::len).sum::<usize>()
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
        stats.queued = self.frames.len() as u64;
        stats.queued_bytes = self.bytes as u64;
        stats.queue_buffer_bytes = self.buffer_capacity() as u64;
        stats.enqueued = self.enqueued;
        stats.dropped_stale = self.dropped_stale;
        stats.dropped_full = self.dropped_full;
    }

    /// Lets the buffer go if nothing waits (for an idle destination).
    pub fn release_buffer(&mut self) {
        if self.frames.is_empty() {
            self.tail = BytesMut::new();
            self.spare = None;
        }
    }

    /// Drops the first `n` bytes of frames, from the buffer the head lies in.
    fn drop_front_bytes(&mut self, n: usize) {
        match self.chunks.front_mut() {
            Some(chunk) => {
                chunk.advance(n);
                if chunk.is_empty() {
                    self.chunks.pop_front();
                }
            }
            None => self.tail.advance(n),
        }
    }

    fn release_if_empty(&mut self) {
        if self.frames.is_empty() && self.tail.capacity() > RETAINED_BUFFER {
            self.tail = BytesMut::new();
        }
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

    /// Pushes `payload` with a one-byte header `<`.
    fn push(q: &mut SendQueue, at: Instant, payload: &[u8]) -> Result<(), QueueFull> {
        q.push(at, b"<", payload)
    }

    /// The payloads of the next batch (headers stripped).
    fn take(q: &mut SendQueue, now: Instant, max: usize) -> Vec<Bytes> {
        let mut batch = FrameBatch::default();
        q.take(now, max, usize::MAX, &mut batch);
        batch.frames().map(|(f, h)| f.slice(h..)).collect()
    }

    #[test]
    fn fifo_within_deadline() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(10, 100, 1000));
        for p in ["a", "b", "c"] {
            push(&mut q, t0, p.as_bytes()).unwrap();
        }
        assert_eq!((q.len(), q.bytes()), (3, 3));
        assert_eq!(take(&mut q, ms(t0, 1000), 2), ["a", "b"]);
        assert_eq!(take(&mut q, ms(t0, 1000), 2), ["c"]);
        assert!(take(&mut q, ms(t0, 1000), 2).is_empty());
        assert_eq!((q.len(), q.bytes(), q.dropped_stale()), (0, 0, 0));
    }

    #[test]
    fn a_batch_is_the_frames_back_to_back_within_both_bounds() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(10, 100, 1000));
        for p in ["ab", "", "cde", "f"] {
            q.push(t0, &[p.len() as u8], p.as_bytes()).unwrap();
        }
        let mut batch = FrameBatch::default();
        // Stops once the payloads reach 5 bytes: "ab", "", "cde".
        q.take(t0, 10, 5, &mut batch);
        assert_eq!(&batch.bytes()[..], b"\x02ab\x00\x03cde");
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.payload_bytes(2), 2);
        assert_eq!(batch.payload_bytes(9), 5);
        let whole: Vec<_> = (0..=9).map(|n| batch.whole_in(n)).collect();
        assert_eq!(whole, [0, 0, 0, 1, 2, 2, 2, 2, 3, 3]);
        // One message at least, whatever the bounds.
        q.take(t0, 0, 0, &mut batch);
        assert_eq!(&batch.bytes()[..], b"\x01f");
        assert!(q.is_empty());
    }

    #[test]
    fn full_by_count_and_by_bytes_is_refused_and_counted() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(2, 10, 1000));
        push(&mut q, t0, b"12345").unwrap();
        assert_eq!(
            push(&mut q, t0, b"123456"),
            Err(QueueFull {
                messages: 1,
                bytes: 5
            })
        );
        push(&mut q, t0, b"12345").unwrap();
        assert!(push(&mut q, t0, b"").is_err());
        assert_eq!(q.refuse().messages, 2);
        assert_eq!(q.dropped_full(), 3);
        let mut s = PeerStats::default();
        q.fill_stats(&mut s);
        assert_eq!(
            (s.queued, s.queued_bytes, s.enqueued, s.dropped_full),
            (2, 10, 2, 3)
        );
    }

    #[test]
    fn stale_messages_drop_at_the_head_only() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(10, 100, 100));
        push(&mut q, t0, b"old").unwrap();
        push(&mut q, ms(t0, 50), b"mid").unwrap();
        push(&mut q, ms(t0, 140), b"new").unwrap();
        assert_eq!(q.next_expiry(), Some(ms(t0, 100)));
        assert_eq!(
            q.expire(ms(t0, 100)),
            0,
            "exactly at the deadline is still in time"
        );
        assert_eq!(take(&mut q, ms(t0, 160), 10), ["new"]);
        assert_eq!(q.dropped_stale(), 2);
        assert_eq!(q.bytes(), 0);
        assert!(take(&mut q, ms(t0, 160), 10).is_empty());
    }

    #[test]
    fn requeued_messages_come_first_and_keep_their_age() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(2, 100, 100));
        push(&mut q, t0, b"x").unwrap();
        push(&mut q, ms(t0, 1), b"y").unwrap();
        let mut batch = FrameBatch::default();
        q.take(t0, 10, 100, &mut batch);
        push(&mut q, ms(t0, 10), b"z").unwrap();
        push(&mut q, ms(t0, 10), b"w").unwrap();
        // "x" was written; "y" was not.
        assert_eq!(q.requeue_front(&batch, 1), 1);
        assert_eq!(q.len(), 3, "one over the bound, by the requeued message");
        assert_eq!(q.bytes(), 3);
        // The requeued frames are a buffer of their own, taken first.
        assert_eq!(take(&mut q, ms(t0, 2), 10), ["y"]);
        assert_eq!(take(&mut q, ms(t0, 2), 10), ["z", "w"]);
        push(&mut q, t0, b"v").unwrap();
        q.take(t0, 10, 100, &mut batch);
        q.requeue_front(&batch, 0);
        assert_eq!(take(&mut q, ms(t0, 105), 10), Vec::<Bytes>::new());
        assert_eq!(q.dropped_stale(), 1);
        assert_eq!(q.requeue_front(&batch, 5), 0);
    }

    #[test]
    fn frames_never_span_buffers_and_are_never_copied_again() {
        let t0 = origin();
        let mut q = SendQueue::with_buffers_of(limits(10, 100, 100), 6);
        for p in ["ab", "cd", "efgh", "i"] {
            push(&mut q, t0, p.as_bytes()).unwrap();
        }
        // Buffers of 6 bytes: "<ab<cd", "<efgh" (it does not fit after them), "<i".
        assert_eq!(q.chunks.len(), 2);
        let first = q.chunks[0].as_ptr();
        let mut batch = FrameBatch::default();
        q.take(t0, 10, 100, &mut batch);
        assert_eq!(&batch.bytes()[..], b"<ab<cd");
        assert_eq!(
            batch.bytes().as_ptr(),
            first,
            "taken where it was written, not copied"
        );
        assert_eq!(take(&mut q, t0, 10), ["efgh"]);
        assert_eq!(q.expire(ms(t0, 101)), 1);
        assert!(q.is_empty());
        push(&mut q, ms(t0, 101), b"jk").unwrap();
        q.take(ms(t0, 101), 10, 100, &mut batch);
        assert_eq!(&batch.bytes()[..], b"<jk");
    }

    #[test]
    fn a_written_buffer_is_taken_back_for_the_next_frames() {
        let t0 = origin();
        let mut q = SendQueue::with_buffers_of(limits(10, 100, 100), 6);
        for p in ["ab", "cd", "efgh"] {
            push(&mut q, t0, p.as_bytes()).unwrap();
        }
        let mut batch = FrameBatch::default();
        q.take(t0, 10, 100, &mut batch);
        let first = batch.bytes().as_ptr();
        assert_eq!(&batch.bytes()[..], b"<ab<cd");
        q.recycle(&mut batch);
        assert!(batch.is_empty() && batch.bytes().is_empty());
        // "<efgh" fills the tail; the next frame starts a buffer: the one taken back.
        push(&mut q, t0, b"i").unwrap();
        q.take(t0, 10, 100, &mut batch);
        assert_eq!(&batch.bytes()[..], b"<efgh");
        q.recycle(&mut batch);
        q.take(t0, 10, 100, &mut batch);
        assert_eq!(&batch.bytes()[..], b"<i");
        assert_eq!(batch.bytes().as_ptr(), first, "the buffer was reused");
        // A batch still sharing its buffer with the queue is not taken back.
        push(&mut q, t0, b"j").unwrap();
        let mut other = FrameBatch::default();
        q.take(t0, 10, 100, &mut other);
        q.recycle(&mut other);
        assert!(q.buffer_capacity() <= 64, "{}", q.buffer_capacity());
    }

    #[test]
    fn waiters_are_woken_once_the_queue_is_half_drained() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(10, 1000, 100));
        assert!(q.below_low_watermark(), "an empty queue");
        for _ in 0..10 {
            push(&mut q, t0, b"m").unwrap();
        }
        assert!(!q.below_low_watermark(), "full by count");
        assert_eq!(take(&mut q, t0, 4).len(), 4);
        assert!(!q.below_low_watermark(), "six of ten left");
        assert_eq!(take(&mut q, t0, 1).len(), 1);
        assert!(q.below_low_watermark(), "five of ten left");
        // By bytes as well: one message of more than half the byte limit.
        let mut q = SendQueue::new(limits(10, 1000, 100));
        push(&mut q, t0, &[0; 501]).unwrap();
        assert!(!q.below_low_watermark(), "over half the bytes");
        take(&mut q, t0, 1);
        assert!(q.below_low_watermark());
    }

    #[test]
    fn clock_going_back_counts_as_no_wait() {
        let t0 = origin() + Duration::from_secs(10);
        let mut q = SendQueue::new(limits(10, 100, 100));
        push(&mut q, t0, b"a").unwrap();
        assert_eq!(take(&mut q, t0 - Duration::from_secs(5), 1), ["a"]);
        assert_eq!(q.clear(), 0);
    }

    #[test]
    fn a_large_emptied_buffer_is_let_go() {
        let t0 = origin();
        let mut q = SendQueue::new(limits(10, 1 << 20, 100));
        push(&mut q, t0, &vec![7; RETAINED_BUFFER + 1]).unwrap();
        assert!(q.buffer_capacity() > RETAINED_BUFFER);
        let got = take(&mut q, t0, 1);
        assert_eq!(got[0].len(), RETAINED_BUFFER + 1);
        assert_eq!(q.buffer_capacity(), 0);
        push(&mut q, t0, b"small").unwrap();
        take(&mut q, t0, 1);
        assert!(q.buffer_capacity() <= RETAINED_BUFFER);
        let mut stats = PeerStats::default();
        q.fill_stats(&mut stats);
        assert_eq!(stats.queue_buffer_bytes, q.buffer_capacity() as u64);
        q.release_buffer();
        q.fill_stats(&mut stats);
        assert_eq!(stats.queue_buffer_bytes, 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(usize, u64),
        Take(u64, usize, usize),
        TakeRequeue(u64, usize, usize, usize),
        Expire(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..40, 0u64..50).prop_map(|(l, dt)| Op::Push(l, dt)),
            2 => (0u64..50, 1usize..4, 1usize..60).prop_map(|(dt, n, b)| Op::Take(dt, n, b)),
            2 => (0u64..50, 1usize..4, 1usize..60, 0usize..4)
                .prop_map(|(dt, n, b, w)| Op::TakeRequeue(dt, n, b, w)),
            1 => (0u64..50).prop_map(Op::Expire),
        ]
    }

    /// A message as the model keeps it: its number, its payload's length, when it was queued.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct ModelMsg {
        id: u64,
        len: usize,
        queued_at: Instant,
    }

    /// The queue as its documentation describes it, written the plain way: a `VecDeque` of
    /// messages with a count bound, a payload-byte bound and a deadline, and its counters.
    /// It shares no code with [`SendQueue`].
    struct Model {
        max_messages: usize,
        max_bytes: usize,
        deadline: Duration,
        msgs: VecDeque<ModelMsg>,
        bytes: usize,
        enqueued: u64,
        stale: u64,
        full: u64,
    }

    impl Model {
        fn push(&mut self, msg: ModelMsg) -> bool {
            if self.msgs.len() + 1 > self.max_messages || self.bytes + msg.len > self.max_bytes {
                self.full += 1;
                return false;
            }
            self.bytes += msg.len;
            self.enqueued += 1;
            self.msgs.push_back(msg);
            true
        }

        /// Drops the messages at the head that waited longer than the deadline (a clock that
        /// went back counts as no wait).
        fn expire(&mut self, now: Instant) -> usize {
            let mut n = 0;
            while let Some(head) = self.msgs.front() {
                let waited = now
                    .checked_duration_since(head.queued_at)
                    .unwrap_or_default();
                if waited <= self.deadline {
                    break;
                }
                self.bytes -= head.len;
                self.msgs.pop_front();
                n += 1;
            }
            self.stale += n as u64;
            n
        }

        /// How many messages a take of at most `max_messages` and `max_bytes` of payload may
        /// hand out, at most (at least one when any is waiting).
        fn batch_bound(&self, max_messages: usize, max_bytes: usize) -> usize {
            let (mut n, mut bytes) = (0, 0);
            for m in &self.msgs {
                if n > 0 && (n >= max_messages || bytes >= max_bytes) {
                    break;
                }
                n += 1;
                bytes += m.len;
            }
            n
        }
    }

    proptest! {
        /// Against an independent model (a `VecDeque` with counts, bytes and deadlines): every
        /// push is accepted or refused as the model says; every take first drops what the
        /// model finds stale, then hands out the model's head messages, in order, within both
        /// bounds, at least one if any is waiting, each frame its header then its payload;
        /// written messages leave, the others come back at the head; the counts, bytes,
        /// counters and next expiry agree after every step.
        #[test]
        fn queue_matches_model(ops in proptest::collection::vec(op(), 0..200),
                               max_messages in 1usize..8, max_bytes in 0usize..120,
                               deadline in 0u64..120, grow in 1usize..80) {
            let t0 = origin();
            let mut now = t0;
            let limits = limits(max_messages, max_bytes, deadline);
            let mut q = SendQueue::with_buffers_of(limits, grow);
            let mut model = Model {
                max_messages,
                max_bytes,
                deadline: limits.deadline,
                msgs: VecDeque::new(),
                bytes: 0,
                enqueued: 0,
                stale: 0,
                full: 0,
            };
            let mut next_id = 0u64;
            let mut batch = FrameBatch::default();
            for op in ops {
                match op {
                    Op::Push(len, dt) => {
                        now += Duration::from_millis(dt);
                        let mut p = vec![0u8; len.max(8)];
                        p[..8].copy_from_slice(&next_id.to_be_bytes());
                        let msg = ModelMsg { id: next_id, len: p.len(), queued_at: now };
                        let header = [p.len() as u8];
                        let accepted = model.push(msg);
                        prop_assert_eq!(q.push(now, &header, &p).is_ok(), accepted, "{:?}", msg);
                        if accepted {
                            next_id += 1;
                        }
                    }
                    Op::Expire(dt) => {
                        now += Duration::from_millis(dt);
                        prop_assert_eq!(q.expire(now), model.expire(now));
                    }
                    Op::Take(dt, n, b) | Op::TakeRequeue(dt, n, b, _) => {
                        now += Duration::from_millis(dt);
                        let stale = q.take(now, n, b, &mut batch);
                        prop_assert_eq!(stale, model.expire(now));
                        let bound = model.batch_bound(n, b);
                        prop_assert!(batch.len() <= bound, "{} > {}", batch.len(), bound);
                        prop_assert_eq!(batch.is_empty(), model.msgs.is_empty());
                        let mut total = 0;
                        for (i, (frame, h)) in batch.frames().enumerate() {
                            let want = model.msgs[i];
                            prop_assert_eq!(h, 1);
                            prop_assert_eq!(usize::from(frame[0]), want.len);
                            prop_assert_eq!(frame.len(), 1 + want.len);
                            let id = u64::from_be_bytes(frame[1..9].try_into().unwrap());
                            prop_assert_eq!(id, want.id);
                            prop_assert!(frame[9..].iter().all(|&x| x == 0));
                            total += frame.len();
                        }
                        prop_assert_eq!(total, batch.bytes().len());
                        let written = match op {
                            Op::TakeRequeue(_, _, _, w) => w.min(batch.len()),
                            _ => batch.len(),
                        };
                        prop_assert_eq!(
                            batch.payload_bytes(written),
                            model.msgs.iter().take(written).map(|m| m.len as u64).sum::<u64>()
                        );
                        prop_assert_eq!(q.requeue_front(&batch, written), batch.len() - written);
                        for _ in 0..written {
                            let m = model.msgs.pop_front().unwrap();
                            model.bytes -= m.len;
                        }
                        q.recycle(&mut batch);
                    }
                }
                prop_assert_eq!(q.len(), model.msgs.len());
                prop_assert_eq!(q.bytes(), model.bytes);
                prop_assert!(q.len() <= max_messages && q.bytes() <= max_bytes);
                prop_assert_eq!(q.dropped_stale(), model.stale);
                prop_assert_eq!(q.dropped_full(), model.full);
                prop_assert_eq!(
                    q.next_expiry(),
                    model.msgs.front().map(|m| m.queued_at + model.deadline)
                );
                let mut stats = PeerStats::default();
                q.fill_stats(&mut stats);
                prop_assert_eq!(stats.enqueued, model.enqueued);
                prop_assert_eq!(stats.queued, model.msgs.len() as u64);
            }
        }
    }
}
