//! The sending half of a connection: sequence numbers, the sliding window, `M`, and per-message
//! exponential back-off (spec sections 3.2 and 3.4).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::wire::SeqNum;

/// One written message, from `write` until the peer acknowledges it and the window slides past.
#[derive(Debug)]
struct Slot {
    payload: Bytes,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// Written, not yet sent (the window or `M` holds it back).
    Queued,
    /// Sent and unacknowledged. `backoff` is the current wait in epochs; `waited` the epochs
    /// since the last send.
    InFlight { backoff: u32, waited: u32 },
    /// Acknowledged (possibly out of order); freed when the window slides past it.
    Acked,
}

/// What `on_epoch` or `poll_send` asks the connection to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutData {
    pub seq: SeqNum,
    pub payload: Bytes,
    pub retransmit: bool,
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

    /// Appends a message; it gets the next sequence number.
    pub fn push(&mut self, payload: Bytes) {
        self.slots.push_back(Slot {
            payload,
            state: SlotState::Queued,
        });
    }

    fn can_send_next(&self) -> bool {
        self.first_queued < self.slots.len()
            && (self.first_queued as u64) < u64::from(self.window)
            && self.in_flight < self.max_unacked
    }

    /// The next message that may be sent now, if the window and `M` allow one.
    pub fn poll_send(&mut self) -> Option<OutData> {
        if !self.can_send_next() {
            return None;
        }
        let index = self.first_queued;
        let slot = &mut self.slots[index];
        slot.state = SlotState::InFlight {
            backoff: 0,
            waited: 0,
        };
        self.first_queued += 1;
        self.in_flight += 1;
        Some(OutData {
            seq: self.base.plus(index as u64),
            payload: slot.payload.clone(),
            retransmit: false,
        })
    }

    /// Handles `(Ack, seq)`. Returns whether it acknowledged a message in flight.
    pub fn ack(&mut self, seq: SeqNum) -> bool {
        let Some(index) = self.index_of(seq) else {
            return false;
        };
        let newly = self.mark_acked(index);
        self.slide();
        newly
    }

    /// Handles `(CAck, seq)`: acknowledges every sent message up to and including `seq`.
    /// Returns how many were newly acknowledged.
    pub fn cack(&mut self, seq: SeqNum) -> usize {
        if seq < self.base {
            return 0;
        }
        let end = (seq.0 - self.base.0)
            .saturating_add(1)
            .min(self.first_queued as u64) as usize;
        let mut newly = 0;
        for index in 0..end {
            if self.mark_acked(index) {
                newly += 1;
            }
        }
        self.slide();
        newly
    }

    fn index_of(&self, seq: SeqNum) -> Option<usize> {
        let offset = seq.0.checked_sub(self.base.0)?;
        (offset < self.first_queued as u64).then_some(offset as usize)
    }

    fn mark_acked(&mut self, index: usize) -> bool {
        let slot = &mut self.slots[index];
        if let SlotState::InFlight { .. } = slot.state {
            slot.state = SlotState::Acked;
            slot.payload = Bytes::new();
            self.in_flight -= 1;
            true
        } else {
            false
        }
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
    }

    /// One epoch passed: every in-flight message whose back-off allows it is pushed to `out`
    /// for resending, and its back-off grows to `min(max(1, 2·backoff), max_backoff)`.
    pub fn on_epoch(&mut self, out: &mut Vec<OutData>) {
        let max_backoff = self.max_backoff;
        for (index, slot) in self.slots.iter_mut().enumerate().take(self.first_queued) {
            if let SlotState::InFlight { backoff, waited } = &mut slot.state {
                if *waited >= *backoff {
                    *backoff = (*backoff * 2).max(1).min(max_backoff);
                    *waited = 0;
                    out.push(OutData {
                        seq: self.base.plus(index as u64),
                        payload: slot.payload.clone(),
                        retransmit: true,
                    });
                } else {
                    *waited += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(w: u32, m: u32, b: u32) -> SendWindow {
        SendWindow::new(SeqNum(101), w, m, b)
    }

    fn drain(win: &mut SendWindow) -> Vec<u64> {
        std::iter::from_fn(|| win.poll_send()).map(|d| d.seq.0).collect()
    }

    #[test]
    fn sends_at_most_min_of_window_and_unacked() {
        let mut win = window(5, 3, 0);
        for _ in 0..10 {
            win.push(Bytes::from_static(b"x"));
        }
        assert_eq!(drain(&mut win), vec![101, 102, 103]);
        assert!(win.is_stalled());
        assert!(win.ack(SeqNum(102)));
        // out-of-order ack frees an M slot but does not slide: 104 may go (within 101..105)
        assert_eq!(drain(&mut win), vec![104]);
        assert!(win.ack(SeqNum(103)));
        assert!(win.ack(SeqNum(104)));
        // window is still 101..105: only 105 may go
        assert_eq!(drain(&mut win), vec![105]);
        assert!(win.ack(SeqNum(101)));
        // slid to 105: 106..109 allowed, M=3 with 105 in flight -> two more
        assert_eq!(drain(&mut win), vec![106, 107]);
    }

    #[test]
    fn duplicate_and_unknown_acks_are_harmless() {
        let mut win = window(2, 2, 0);
        win.push(Bytes::from_static(b"a"));
        assert_eq!(drain(&mut win), vec![101]);
        assert!(!win.ack(SeqNum(100)));
        assert!(!win.ack(SeqNum(102)));
        assert!(win.ack(SeqNum(101)));
        assert!(!win.ack(SeqNum(101)));
        assert!(win.is_empty());
        assert_eq!(win.in_flight(), 0);
    }

    #[test]
    fn cack_acknowledges_everything_sent_up_to_seq() {
        let mut win = window(10, 10, 0);
        for _ in 0..6 {
            win.push(Bytes::from_static(b"x"));
        }
        assert_eq!(drain(&mut win).len(), 6);
        assert_eq!(win.cack(SeqNum(104)), 4);
        assert_eq!(win.len(), 2);
        assert_eq!(win.in_flight(), 2);
        // a CAck far beyond what was sent acknowledges only what was sent
        assert_eq!(win.cack(SeqNum(10_000)), 2);
        assert!(win.is_empty());
        let mut out = Vec::new();
        win.on_epoch(&mut out);
        assert!(out.is_empty(), "nothing may be resent after a CAck");
    }

    #[test]
    fn backoff_resends_at_epochs_1_3_6_11() {
        let mut win = window(1, 1, 8);
        win.push(Bytes::from_static(b"x"));
        drain(&mut win);
        let mut resent_at = Vec::new();
        for epoch in 1..=20 {
            let mut out = Vec::new();
            win.on_epoch(&mut out);
            if !out.is_empty() {
                resent_at.push(epoch);
            }
        }
        assert_eq!(resent_at, vec![1, 3, 6, 11, 20]);
    }

    #[test]
    fn zero_max_backoff_resends_every_epoch() {
        let mut win = window(1, 1, 0);
        win.push(Bytes::from_static(b"x"));
        drain(&mut win);
        for _ in 0..5 {
            let mut out = Vec::new();
            win.on_epoch(&mut out);
            assert_eq!(out.len(), 1);
            assert!(out[0].retransmit);
        }
    }

    #[test]
    fn backoff_is_capped() {
        let mut win = window(1, 1, 2);
        win.push(Bytes::from_static(b"x"));
        drain(&mut win);
        let mut resent_at = Vec::new();
        for epoch in 1..=12 {
            let mut out = Vec::new();
            win.on_epoch(&mut out);
            if !out.is_empty() {
                resent_at.push(epoch);
            }
        }
        // waits 0, 1, 2, 2, 2...
        assert_eq!(resent_at, vec![1, 3, 6, 9, 12]);
    }
}
