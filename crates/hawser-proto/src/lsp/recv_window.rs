//! The receiving half of a connection: accept, acknowledge, buffer and deliver in order, exactly
//! once (spec section 3.3).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::range_set::RangeSet;
use crate::wire::{bundle, SeqNum};

/// One received Data message's payload: a plain message, or a bundle read message by message.
#[derive(Debug)]
struct Unit {
    payload: Bytes,
    bundled: bool,
}

/// What became of one received Data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// New, in the window: acknowledge it (it was delivered or buffered).
    New,
    /// Already delivered: acknowledge again, deliver nothing.
    Duplicate,
    /// Buffered already (out of order, seen twice): acknowledge again.
    DuplicateBuffered,
    /// Outside the window ahead of us, or no room to read it: drop without acknowledging.
    Refused,
}

/// The receive-side window and the queue of messages waiting for the application.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    /// The next sequence number to deliver.
    expected: SeqNum,
    window: u32,
    /// Received ahead of `expected`, within the window.
    ahead: BTreeMap<u64, Unit>,
    /// The sequence numbers of `ahead`, as runs.
    runs: RangeSet,
    /// Delivered in order, not yet read by the application (the front bundle perhaps in part).
    readable: VecDeque<Unit>,
    max_readable: usize,
    /// Messages ever delivered to `readable`.
    delivered: u64,
}

impl RecvWindow {
    /// A window expecting `first` next.
    pub fn new(first: SeqNum, window: u32, max_readable: usize) -> RecvWindow {
        RecvWindow {
            expected: first,
            window,
            ahead: BTreeMap::new(),
            runs: RangeSet::default(),
            readable: VecDeque::new(),
            max_readable,
            delivered: 0,
        }
    }

    /// Handles a Data message that passed the size and checksum checks (and, if `bundled`,
    /// whose payload [`bundle::validate`] accepted).
    pub fn on_data(&mut self, seq: SeqNum, payload: Bytes, bundled: bool) -> Accept {
        if seq < self.expected {
            return Accept::Duplicate;
        }
        let offset = seq.0 - self.expected.0;
        if offset >= u64::from(self.window) {
            return Accept::Refused;
        }
        if self.ahead.contains_key(&seq.0) {
            return Accept::DuplicateBuffered;
        }
        // Back-pressure. The expected message needs only room in the read queue: refusing it
        // because of what waits behind it would deadlock. A message ahead of it also counts
        // what is already buffered, so the queue holds at most `max_readable + window`.
        let used = if offset == 0 {
            self.readable.len()
        } else {
            self.readable.len() + self.ahead.len()
        };
        if used >= self.max_readable {
            return Accept::Refused;
        }
        let payload = Unit { payload, bundled };
        if offset == 0 {
            self.deliver(payload);
            self.runs.remove_starting_at(self.expected.0);
            while let Some(next) = self.ahead.remove(&self.expected.0) {
                self.deliver(next);
            }
        } else {
            self.ahead.insert(seq.0, payload);
            self.runs.insert(seq.0);
        }
        Accept::New
    }

    fn deliver(&mut self, payload: Unit) {
        self.readable.push_back(payload);
        self.expected = self.expected.plus(1);
        self.delivered += 1;
    }

    /// The next sequence number to deliver (everything before it was delivered).
    pub fn expected(&self) -> SeqNum {
        self.expected
    }

    /// How many messages were ever delivered in order (read or not).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The next message for the application, in order, and whether it was the last of its
    /// Data message (a plain message always is; a bundle's last message is).
    pub fn read(&mut self) -> Option<(Bytes, bool)> {
        let mut message = None;
        let (_, last) = self.read_front(1, |m| message = Some(m))?;
        message.map(|m| (m, last))
    }

    /// Gives `push` up to `max` (at least 1) messages of the front Data message, in order;
    /// returns how many, and whether that Data message is now read whole (a plain message
    /// always is). `None` if nothing is readable. One call per Data message: the fast way to
    /// drain bundles.
    pub fn read_front(&mut self, max: usize, mut push: impl FnMut(Bytes)) -> Option<(usize, bool)> {
        let front = self.readable.front_mut()?;
        if !front.bundled {
            let unit = self.readable.pop_front()?;
            push(unit.payload);
            return Some((1, true));
        }
        let mut taken = 0;
        while taken < max.max(1) {
            match bundle::split_next(&mut front.payload) {
                Some(message) => {
                    push(message);
                    taken += 1;
                    if front.payload.is_empty() {
                        break;
                    }
                }
                // Only reached for a bundle that was not validated (a bug): drop the rest.
                None => {
                    front.payload.clear();
                    break;
                }
            }
        }
        let done = front.payload.is_empty();
        if done {
            self.readable.pop_front();
        }
        Some((taken, done))
    }

    /// Data messages waiting to be read (a bundle counts once).
    pub fn readable_len(&self) -> usize {
        self.readable.len()
    }

    /// Messages buffered out of order.
    pub fn ahead_len(&self) -> usize {
        self.ahead.len()
    }

    /// Replaces `out` with up to `max` runs of messages buffered out of order, as `start..end`
    /// ranges in ascending order: what a selective acknowledgement reports. First, in up to half
    /// of them, the runs holding the sequence numbers in `recent` (the latest arrival first), so
    /// that a retransmission filling a hole far below the top is acknowledged at once; then the
    /// highest runs. Costs `O(max · (log runs + max))`, whatever the runs' lengths.
    pub fn sack_ranges<'a>(
        &self,
        max: usize,
        recent: impl IntoIterator<Item = &'a SeqNum, IntoIter: DoubleEndedIterator>,
        out: &mut Vec<(SeqNum, SeqNum)>,
    ) {
        out.clear();
        let add = |out: &mut Vec<(SeqNum, SeqNum)>, (start, end): (u64, u64)| {
            let run = (SeqNum(start), SeqNum(end));
            if out.len() < max && !out.contains(&run) {
                out.push(run);
            }
            out.len() < max
        };
        for seq in recent.into_iter().rev() {
            if let Some(run) = self.runs.containing(seq.0) {
                if !add(out, run) || out.len() >= max.div_ceil(2) {
                    break;
                }
            }
        }
        for run in self.runs.iter_rev() {
            if !add(out, run) {
                break;
            }
        }
        out.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn read_all(w: &mut RecvWindow) -> Vec<Bytes> {
        std::iter::from_fn(|| w.read().map(|(m, _)| m)).collect()
    }

    #[test]
    fn sack_ranges_reports_recent_runs_then_the_highest_ascending() {
        let mut w = RecvWindow::new(SeqNum(1), 64, 100);
        for seq in [3, 4, 5, 8, 10, 11, 20] {
            assert_eq!(w.on_data(SeqNum(seq), b("x"), false), Accept::New);
        }
        let mut out = Vec::new();
        let r = |a: u64, b: u64| (SeqNum(a), SeqNum(b));
        w.sack_ranges(10, &[], &mut out);
        assert_eq!(out, vec![r(3, 6), r(8, 9), r(10, 12), r(20, 21)]);
        w.sack_ranges(2, &[], &mut out);
        assert_eq!(out, vec![r(10, 12), r(20, 21)]);
        w.sack_ranges(1, &[], &mut out);
        assert_eq!(out, vec![r(20, 21)]);
        // recent arrivals low down come first, in up to half the runs; a delivered or unknown
        // one is skipped
        w.sack_ranges(4, &[SeqNum(5), SeqNum(4), SeqNum(2), SeqNum(8)], &mut out);
        assert_eq!(out, vec![r(3, 6), r(8, 9), r(10, 12), r(20, 21)]);
        w.sack_ranges(3, &[SeqNum(5), SeqNum(4), SeqNum(2), SeqNum(8)], &mut out);
        assert_eq!(out, vec![r(3, 6), r(8, 9), r(20, 21)]);
        w.sack_ranges(3, &[SeqNum(4), SeqNum(4)], &mut out);
        assert_eq!(out, vec![r(3, 6), r(10, 12), r(20, 21)]);
        // 1 and 2 arrive: 1..=5 delivered, the rest stays ahead
        w.on_data(SeqNum(1), b("x"), false);
        w.on_data(SeqNum(2), b("x"), false);
        assert_eq!(w.expected(), SeqNum(6));
        w.sack_ranges(10, &[SeqNum(4)], &mut out);
        assert_eq!(out, vec![r(8, 9), r(10, 12), r(20, 21)]);
        w.on_data(SeqNum(9), b("x"), false);
        w.sack_ranges(10, &[], &mut out);
        assert_eq!(out, vec![r(8, 12), r(20, 21)]);
    }

    #[test]
    fn a_bundle_is_read_message_by_message() {
        let mut w = RecvWindow::new(SeqNum(1), 4, 100);
        let mut gathered = bytes::BytesMut::new();
        for m in [&b"x"[..], b"yy", b""] {
            bundle::put_entry(&mut gathered, m);
        }
        assert_eq!(w.on_data(SeqNum(2), b("after"), false), Accept::New);
        assert_eq!(w.on_data(SeqNum(1), gathered.freeze(), true), Accept::New);
        assert_eq!(w.readable_len(), 2);
        assert_eq!(w.read(), Some((b("x"), false)));
        assert_eq!(w.read(), Some((b("yy"), false)));
        assert_eq!(w.read(), Some((b(""), true)));
        assert_eq!(w.read(), Some((b("after"), true)));
        assert_eq!(w.read(), None);
    }

    #[test]
    fn read_front_takes_up_to_max_of_one_bundle() {
        let mut w = RecvWindow::new(SeqNum(1), 4, 100);
        let mut gathered = bytes::BytesMut::new();
        for m in [&b"a"[..], b"b", b"c"] {
            bundle::put_entry(&mut gathered, m);
        }
        assert_eq!(w.on_data(SeqNum(1), gathered.freeze(), true), Accept::New);
        assert_eq!(w.on_data(SeqNum(2), b("plain"), false), Accept::New);
        let mut got = Vec::new();
        assert_eq!(w.read_front(2, |m| got.push(m)), Some((2, false)));
        assert_eq!(w.read_front(5, |m| got.push(m)), Some((1, true)));
        assert_eq!(w.read_front(5, |m| got.push(m)), Some((1, true)));
        assert_eq!(w.read_front(5, |m| got.push(m)), None);
        assert_eq!(got, vec![b("a"), b("b"), b("c"), b("plain")]);
    }

    #[test]
    fn delivers_in_order_exactly_once() {
        let mut w = RecvWindow::new(SeqNum(11), 4, 100);
        assert_eq!(w.on_data(SeqNum(13), b("c"), false), Accept::New);
        assert_eq!(w.on_data(SeqNum(12), b("b"), false), Accept::New);
        assert!(read_all(&mut w).is_empty());
        assert_eq!(
            w.on_data(SeqNum(13), b("c"), false),
            Accept::DuplicateBuffered
        );
        assert_eq!(w.on_data(SeqNum(11), b("a"), false), Accept::New);
        assert_eq!(read_all(&mut w), vec![b("a"), b("b"), b("c")]);
        assert_eq!(w.on_data(SeqNum(12), b("b"), false), Accept::Duplicate);
        assert!(read_all(&mut w).is_empty());
    }

    #[test]
    fn refuses_outside_window() {
        let mut w = RecvWindow::new(SeqNum(1), 2, 100);
        assert_eq!(w.on_data(SeqNum(3), b("c"), false), Accept::Refused);
        assert_eq!(w.on_data(SeqNum(2), b("b"), false), Accept::New);
        assert_eq!(w.ahead_len(), 1);
    }

    #[test]
    fn full_read_queue_refuses_until_read() {
        let mut w = RecvWindow::new(SeqNum(1), 8, 2);
        assert_eq!(w.on_data(SeqNum(1), b("a"), false), Accept::New);
        assert_eq!(w.on_data(SeqNum(2), b("b"), false), Accept::New);
        assert_eq!(w.on_data(SeqNum(3), b("c"), false), Accept::Refused);
        assert_eq!(w.read(), Some((b("a"), true)));
        assert_eq!(w.on_data(SeqNum(3), b("c"), false), Accept::New);
        assert_eq!(w.delivered(), 3);
    }

    #[test]
    fn a_window_wider_than_the_read_queue_never_deadlocks() {
        let mut w = RecvWindow::new(SeqNum(1), 8, 2);
        // The first message is lost; two later ones fill the bound.
        assert_eq!(w.on_data(SeqNum(2), b("b"), false), Accept::New);
        assert_eq!(w.on_data(SeqNum(3), b("c"), false), Accept::New);
        assert_eq!(w.on_data(SeqNum(4), b("d"), false), Accept::Refused);
        // The expected one is still accepted, and releases the others.
        assert_eq!(w.on_data(SeqNum(1), b("a"), false), Accept::New);
        assert_eq!(read_all(&mut w), vec![b("a"), b("b"), b("c")]);
    }
}
