//! The sending half of a connection: sequence numbers, the sliding window, `M`, and the two
//! retransmission schedules: per-message exponential back-off at epochs (spec 3.2 and 3.4), and,
//! for the adaptive policy, time-based loss detection on acknowledgement gaps (as TCP's RACK: a
//! message is lost once a message sent sufficiently later was acknowledged) with the RTO as a
//! last resort that resends the oldest message only.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::range_set::RangeSet;
use crate::wire::SeqNum;

/// One written message, from `write` until the peer acknowledges it and the window slides past.
#[derive(Debug)]
struct Slot {
    payload: Bytes,
    /// The payload is a bundle of several messages (`wire::bundle`).
    bundled: bool,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Written, not yet sent (the window or `M` holds it back).
    Queued,
    /// Sent and unacknowledged.
    InFlight(Flight),
    /// Acknowledged (possibly out of order); freed when the window slides past it.
    Acked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flight {
    /// Epoch policy: current wait in epochs, and epochs since the last send.
    backoff: u32,
    waited: u32,
    /// When it was last sent, and how many times in all.
    sent_at: Instant,
    transmissions: u32,
}

/// What the window asks the connection to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutData {
    pub seq: SeqNum,
    pub payload: Bytes,
    pub bundled: bool,
    pub retransmit: bool,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AckOutcome {
    /// Messages newly acknowledged.
    pub newly: usize,
    /// An RTT sample, from the newest newly acknowledged message that was sent only once.
    pub rtt: Option<Duration>,
}

/// The send-side window.
///
/// Slots start at `base`, the oldest unacknowledged sequence number; slot `i` holds `base + i`.
/// Only `base .. base + window` may be in flight, and at most `max_unacked` at once.
#[derive(Debug)]
pub(crate) struct SendWindow {
    base: SeqNum,
    slots: VecDeque<Slot>,
    /// Index of the first `Queued` slot (all slots before it were sent).
    first_queued: usize,
    in_flight: u32,
    window: u32,
    max_unacked: u32,
    max_backoff: u32,
    /// The highest sequence number acknowledged so far.
    highest_acked: Option<SeqNum>,
    /// What was acknowledged above `base` one by one (Acks and SAck ranges, not the cumulative
    /// point): lets a SAck, which repeats what the receiver holds, touch only what is new, and
    /// loss detection visit only the holes below the highest acknowledgement.
    acked_above: RangeSet,
    /// The latest send time of any acknowledged message: everything in flight sent well before
    /// it is presumed lost.
    newest_acked_send: Option<Instant>,
}

impl SendWindow {
    /// A window whose first message will carry `first`.
    pub fn new(first: SeqNum, window: u32, max_unacked: u32, max_backoff: u32) -> SendWindow {
        SendWindow {
            base: first,
            slots: VecDeque::new(),
            first_queued: 0,
            in_flight: 0,
            window,
            max_unacked,
            max_backoff,
            highest_acked: None,
            acked_above: RangeSet::default(),
            newest_acked_send: None,
        }
    }

    /// Messages written and not yet acknowledged-and-slid (queued, in flight or acked-in-a-gap).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether every written message has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Messages sent and not acknowledged.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Whether there is a queued message that the window or `M` holds back.
    pub fn is_stalled(&self) -> bool {
        self.first_queued < self.slots.len() && !self.can_send_next()
    }

    /// Appends a message (a bundle if `bundled`); it gets the next sequence number.
    pub fn push(&mut self, payload: Bytes, bundled: bool) {
        self.slots.push_back(Slot {
            payload,
            bundled,
            state: SlotState::Queued,
        });
    }

    fn can_send_next(&self) -> bool {
        self.first_queued < self.slots.len()
            && (self.first_queued as u64) < u64::from(self.window)
            && self.in_flight < self.max_unacked
    }

    /// The next message that may be sent now, if the window and `M` allow one.
    pub fn poll_send(&mut self, now: Instant) -> Option<OutData> {
        if !self.can_send_next() {
            return None;
        }
        let index = self.first_queued;
        let slot = &mut self.slots[index];
        slot.state = SlotState::InFlight(Flight {
            backoff: 0,
            waited: 0,
            sent_at: now,
            transmissions: 1,
        });
        self.first_queued += 1;
        self.in_flight += 1;
        Some(OutData {
            seq: self.base.plus(index as u64),
            payload: slot.payload.clone(),
            bundled: slot.bundled,
            retransmit: false,
        })
    }

    /// Handles `(Ack, seq)`.
    pub fn ack(&mut self, seq: SeqNum, now: Instant) -> AckOutcome {
        let Some(index) = self.index_of(seq) else {
            return AckOutcome::default();
        };
        let flight = self.mark_acked(index);
        self.acked_above.insert(seq.0);
        let outcome = AckOutcome {
            newly: usize::from(flight.is_some()),
            rtt: flight
                .filter(|f| f.transmissions == 1)
                .map(|f| now.saturating_duration_since(f.sent_at)),
        };
        self.note_highest(seq);
        self.slide();
        outcome
    }

    /// Handles `(CAck, seq)`: acknowledges every sent message up to and including `seq`.
    pub fn cack(&mut self, seq: SeqNum, now: Instant) -> AckOutcome {
        let mut outcome = AckOutcome::default();
        let mut ambiguous = false;
        self.ack_through(seq, |flight| {
            outcome.newly += 1;
            match flight.transmissions {
                1 => outcome.rtt = Some(now.saturating_duration_since(flight.sent_at)),
                // A resent message among those covered: the CAck may have been triggered by
                // the resend, so no message's send time is a sound sample (Karn's rule, as BSD
                // applies it to cumulative acks).
                _ => ambiguous = true,
            }
        });
        if ambiguous {
            outcome.rtt = None;
        }
        self.slide();
        outcome
    }

    /// Handles `(SAck, through, ranges)`: everything sent up to `through`, and every sent
    /// message inside one of the `start..end` ranges. Unlike a CAck, a selective ack reports
    /// exactly what the receiver holds, so the RTT sample is the newest newly acknowledged
    /// message's, if it was sent once (Karn's rule); a resent one gives none.
    pub fn sack(
        &mut self,
        through: SeqNum,
        ranges: impl Iterator<Item = (SeqNum, SeqNum)>,
        now: Instant,
    ) -> AckOutcome {
        let mut newly = 0;
        let mut newest: Option<Flight> = None;
        let mut note = |flight: Flight| {
            newly += 1;
            if newest.is_none_or(|n| flight.sent_at >= n.sent_at) {
                newest = Some(flight);
            }
        };
        self.ack_through(through, &mut note);
        let sent_end = self.base.0.saturating_add(self.first_queued as u64);
        for (start, end) in ranges {
            let (lo, hi) = (start.0.max(self.base.0), end.0.min(sent_end));
            if lo >= hi
                || self
                    .acked_above
                    .containing(lo)
                    .is_some_and(|(_, end)| end >= hi)
            {
                continue;
            }
            // Only what no earlier acknowledgement covered: a SAck repeats the receiver's state.
            let mut seq = lo;
            while seq < hi {
                if let Some((_, end)) = self.acked_above.containing(seq) {
                    seq = end;
                    continue;
                }
                let stop = self
                    .acked_above
                    .next_start_after(seq)
                    .map_or(hi, |s| s.min(hi));
                for new in seq..stop {
                    if let Some(flight) = self.mark_acked((new - self.base.0) as usize) {
                        note(flight);
                    }
                }
                seq = stop;
            }
            self.acked_above.insert_range(lo, hi);
            self.note_highest(SeqNum(hi - 1));
        }
        self.slide();
        AckOutcome {
            newly,
            rtt: newest
                .filter(|f| f.transmissions == 1)
                .map(|f| now.saturating_duration_since(f.sent_at)),
        }
    }

    /// Marks every sent message up to and including `seq` acknowledged, giving each newly
    /// acknowledged one's flight to `newly` (the caller slides the window afterwards).
    fn ack_through(&mut self, seq: SeqNum, mut newly: impl FnMut(Flight)) {
        if seq < self.base {
            return;
        }
        let end = (seq.0 - self.base.0)
            .saturating_add(1)
            .min(self.first_queued as u64) as usize;
        for index in 0..end {
            if let Some(flight) = self.mark_acked(index) {
                newly(flight);
            }
        }
        if end > 0 {
            self.note_highest(self.base.plus(end as u64 - 1));
        }
    }

    fn note_highest(&mut self, seq: SeqNum) {
        if self.highest_acked.is_none_or(|h| seq > h) {
            self.highest_acked = Some(seq);
        }
    }

    fn index_of(&self, seq: SeqNum) -> Option<usize> {
        let offset = seq.0.checked_sub(self.base.0)?;
        (offset < self.first_queued as u64).then_some(offset as usize)
    }

    /// Marks a slot acknowledged. `None`: it was not in flight. `Some(flight)`: newly
    /// acknowledged, with its last send time and transmission count (for Karn's rule).
    fn mark_acked(&mut self, index: usize) -> Option<Flight> {
        let slot = &mut self.slots[index];
        let SlotState::InFlight(flight) = slot.state else {
            return None;
        };
        slot.state = SlotState::Acked;
        slot.payload = Bytes::new();
        self.in_flight -= 1;
        if self.newest_acked_send.is_none_or(|t| flight.sent_at > t) {
            self.newest_acked_send = Some(flight.sent_at);
        }
        Some(flight)
    }

    fn slide(&mut self) {
        while let Some(front) = self.slots.front() {
            if front.state != SlotState::Acked {
                break;
            }
            self.slots.pop_front();
            self.first_queued -= 1;
            self.base = self.base.plus(1);
        }
        self.acked_above.trim_below(self.base.0);
    }

    fn resend(base: SeqNum, index: usize, slot: &mut Slot, now: Instant) -> Option<OutData> {
        let SlotState::InFlight(flight) = &mut slot.state else {
            return None;
        };
        flight.sent_at = now;
        flight.transmissions = flight.transmissions.saturating_add(1);
        Some(OutData {
            seq: base.plus(index as u64),
            payload: slot.payload.clone(),
            bundled: slot.bundled,
            retransmit: true,
        })
    }

    /// Epoch policy: one epoch passed. Every in-flight message whose back-off allows it is
    /// pushed to `out` for resending, and its back-off becomes `min(max(1, 2·b), max_backoff)`.
    pub fn on_epoch(&mut self, now: Instant, out: &mut Vec<OutData>) {
        let max_backoff = self.max_backoff;
        let base = self.base;
        for (index, slot) in self.slots.iter_mut().enumerate().take(self.first_queued) {
            let SlotState::InFlight(flight) = &mut slot.state else {
                continue;
            };
            if flight.waited >= flight.backoff {
                flight.backoff = (flight.backoff * 2).max(1).min(max_backoff);
                flight.waited = 0;
                out.extend(Self::resend(base, index, slot, now));
            } else {
                flight.waited += 1;
            }
        }
    }

    /// Adaptive policy: the RTO expired with nothing acknowledged meanwhile. Resends the oldest
    /// message in flight only (the acknowledgement it brings back lets loss detection find the
    /// rest), as TCP does.
    pub fn on_rto(&mut self, now: Instant, out: &mut Vec<OutData>) {
        let base = self.base;
        for (index, slot) in self.slots.iter_mut().enumerate().take(self.first_queued) {
            if let Some(data) = Self::resend(base, index, slot, now) {
                out.push(data);
                return;
            }
        }
    }

    /// Adaptive policy: a tail-loss probe. Resends the newest message in flight, whose
    /// acknowledgement (a SAck listing what arrived) lets loss detection find whatever before it
    /// was lost, without waiting for the RTO.
    pub fn on_probe(&mut self, now: Instant, out: &mut Vec<OutData>) {
        let base = self.base;
        for (index, slot) in self
            .slots
            .iter_mut()
            .enumerate()
            .take(self.first_queued)
            .rev()
        {
            if let Some(data) = Self::resend(base, index, slot, now) {
                out.push(data);
                return;
            }
        }
    }

    /// Adaptive policy: resends every message in flight that was last sent more than
    /// `reorder_window` before some message that has since been acknowledged. A resent
    /// message gets a new send time, so it is only declared lost again if a message sent after
    /// the resend is acknowledged first.
    pub fn detect_losses(
        &mut self,
        now: Instant,
        reorder_window: Duration,
        out: &mut Vec<OutData>,
    ) {
        let (Some(newest), Some(highest)) = (self.newest_acked_send, self.highest_acked) else {
            return;
        };
        // Messages beyond the highest acknowledged one were sent after everything acknowledged,
        // barring resends; stop there so that a loss-free stream costs nothing. Below it, only
        // the holes between what was acknowledged one by one can be in flight.
        let end = (highest.0.saturating_add(1).saturating_sub(self.base.0) as usize)
            .min(self.first_queued);
        let base = self.base;
        let mut check = |slots: &mut VecDeque<Slot>, from: usize, to: usize| {
            let to = to.min(end);
            for (index, slot) in slots.range_mut(from.min(to)..to).enumerate() {
                let index = from + index;
                if let SlotState::InFlight(flight) = slot.state {
                    if flight.sent_at + reorder_window < newest {
                        out.extend(Self::resend(base, index, slot, now));
                    }
                }
            }
        };
        let mut cursor = 0usize;
        for (start, stop) in self.acked_above.iter() {
            if cursor >= end {
                break;
            }
            let run_start = start.saturating_sub(base.0) as usize;
            check(&mut self.slots, cursor, run_start);
            cursor = stop.saturating_sub(base.0) as usize;
        }
        if cursor < end {
            check(&mut self.slots, cursor, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(w: u32, m: u32, b: u32) -> SendWindow {
        SendWindow::new(SeqNum(101), w, m, b)
    }

    fn t0() -> Instant {
        #[allow(clippy::disallowed_methods)] // tests need one arbitrary origin
        Instant::now()
    }

    fn drain(win: &mut SendWindow, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| win.poll_send(now))
            .map(|d| d.seq.0)
            .collect()
    }

    fn acked(win: &mut SendWindow, seq: u64, now: Instant) -> bool {
        win.ack(SeqNum(seq), now).newly == 1
    }

    #[test]
    fn sends_at_most_min_of_window_and_unacked() {
        let now = t0();
        let mut win = window(5, 3, 0);
        for _ in 0..10 {
            win.push(Bytes::from_static(b"x"), false);
        }
        assert_eq!(drain(&mut win, now), vec![101, 102, 103]);
        assert!(win.is_stalled());
        assert!(acked(&mut win, 102, now));
        // out-of-order ack frees an M slot but does not slide: 104 may go (within 101..105)
        assert_eq!(drain(&mut win, now), vec![104]);
        assert!(acked(&mut win, 103, now));
        assert!(acked(&mut win, 104, now));
        // window is still 101..105: only 105 may go
        assert_eq!(drain(&mut win, now), vec![105]);
        assert!(acked(&mut win, 101, now));
        // slid to 105: 106..109 allowed, M=3 with 105 in flight -> two more
        assert_eq!(drain(&mut win, now), vec![106, 107]);
    }

    #[test]
    fn duplicate_and_unknown_acks_are_harmless() {
        let now = t0();
        let mut win = window(2, 2, 0);
        win.push(Bytes::from_static(b"a"), false);
        assert_eq!(drain(&mut win, now), vec![101]);
        assert!(!acked(&mut win, 100, now));
        assert!(!acked(&mut win, 102, now));
        assert!(acked(&mut win, 101, now));
        assert!(!acked(&mut win, 101, now));
        assert!(win.is_empty());
        assert_eq!(win.in_flight(), 0);
    }

    #[test]
    fn cack_acknowledges_everything_sent_up_to_seq() {
        let now = t0();
        let mut win = window(10, 10, 0);
        for _ in 0..6 {
            win.push(Bytes::from_static(b"x"), false);
        }
        assert_eq!(drain(&mut win, now).len(), 6);
        assert_eq!(win.cack(SeqNum(104), now).newly, 4);
        assert_eq!(win.len(), 2);
        assert_eq!(win.in_flight(), 2);
        // a CAck far beyond what was sent acknowledges only what was sent
        assert_eq!(win.cack(SeqNum(10_000), now).newly, 2);
        assert!(win.is_empty());
        let mut out = Vec::new();
        win.on_epoch(now, &mut out);
        win.on_rto(now, &mut out);
        win.detect_losses(now, Duration::ZERO, &mut out);
        assert!(out.is_empty(), "nothing may be resent after a CAck");
    }

    fn resend_epochs(max_backoff: u32, epochs: u32) -> Vec<u32> {
        let now = t0();
        let mut win = window(1, 1, max_backoff);
        win.push(Bytes::from_static(b"x"), false);
        drain(&mut win, now);
        let mut resent_at = Vec::new();
        for epoch in 1..=epochs {
            let mut out = Vec::new();
            win.on_epoch(now, &mut out);
            if !out.is_empty() {
                assert!(out[0].retransmit);
                resent_at.push(epoch);
            }
        }
        resent_at
    }

    #[test]
    fn backoff_resends_at_epochs_1_3_6_11() {
        assert_eq!(resend_epochs(8, 20), vec![1, 3, 6, 11, 20]);
    }

    #[test]
    fn zero_max_backoff_resends_every_epoch() {
        assert_eq!(resend_epochs(0, 5), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn backoff_is_capped() {
        // waits 0, 1, 2, 2, 2...
        assert_eq!(resend_epochs(2, 12), vec![1, 3, 6, 9, 12]);
    }

    #[test]
    fn rtt_samples_follow_karns_rule() {
        let now = t0();
        let mut win = window(4, 4, 0);
        win.push(Bytes::from_static(b"a"), false);
        drain(&mut win, now);
        let later = now + Duration::from_millis(30);
        let mut out = Vec::new();
        win.on_rto(later, &mut out);
        assert_eq!(out.len(), 1);
        // sent twice: no sample
        assert_eq!(
            win.ack(SeqNum(101), later + Duration::from_millis(5)).rtt,
            None
        );
        win.push(Bytes::from_static(b"b"), false);
        win.push(Bytes::from_static(b"c"), false);
        drain(&mut win, later);
        let outcome = win.cack(SeqNum(103), later + Duration::from_millis(7));
        assert_eq!(outcome.newly, 2);
        assert_eq!(outcome.rtt, Some(Duration::from_millis(7)));
    }

    #[test]
    fn a_cack_covering_a_resent_message_gives_no_sample() {
        let now = t0();
        let mut win = window(4, 4, 0);
        win.push(Bytes::from_static(b"a"), false);
        win.push(Bytes::from_static(b"b"), false);
        drain(&mut win, now);
        let mut out = Vec::new();
        win.on_rto(now + Duration::from_millis(500), &mut out); // resends 101 only
        let outcome = win.cack(SeqNum(102), now + Duration::from_millis(502));
        assert_eq!(outcome.newly, 2);
        assert_eq!(outcome.rtt, None, "102's 502 ms would be a false sample");
    }

    #[test]
    fn rto_resends_the_oldest_only() {
        let now = t0();
        let mut win = window(4, 4, 0);
        for _ in 0..3 {
            win.push(Bytes::from_static(b"a"), false);
        }
        drain(&mut win, now);
        let mut out = Vec::new();
        win.on_rto(now + Duration::from_millis(20), &mut out);
        assert_eq!(out.iter().map(|d| d.seq.0).collect::<Vec<_>>(), vec![101]);
    }

    #[test]
    fn loss_is_detected_when_a_later_send_is_acknowledged() {
        let now = t0();
        let ms = Duration::from_millis;
        let mut win = window(8, 8, 0);
        for i in 0..5 {
            win.push(Bytes::from_static(b"x"), false);
            win.poll_send(now + ms(i)).unwrap();
        }
        let mut out = Vec::new();
        // 103 (sent at 2 ms) acknowledged: 101 and 102 were sent more than 1 ms before it.
        win.ack(SeqNum(103), now + ms(10));
        win.detect_losses(now + ms(10), ms(1), &mut out);
        assert_eq!(out.iter().map(|d| d.seq.0).collect::<Vec<_>>(), vec![101]);
        out.clear();
        // Nothing new acknowledged: the resent one is not declared lost again.
        win.detect_losses(now + ms(11), ms(1), &mut out);
        assert!(out.is_empty());
        // 105 (sent at 4 ms) acknowledged: 102 (2 ms earlier) is lost; 104 (sent 1 ms before
        // it) is within the reorder window; 101 was resent at 10 ms.
        win.ack(SeqNum(105), now + ms(12));
        win.detect_losses(now + ms(12), ms(1), &mut out);
        assert_eq!(out.iter().map(|d| d.seq.0).collect::<Vec<_>>(), vec![102]);
    }
}
