//! Generated, self-identifying messages and the checker of their echoes.
//!
//! Message `i` reads `#<i, 10 digits>:` followed by filler derived from `i`, so every message
//! is distinct and an echo can be checked byte for byte.

use std::collections::BTreeSet;

use bytes::Bytes;

/// Length of the header that carries the index: `#`, ten digits, `:`.
pub const HEADER_LEN: usize = 12;

/// Message `index` of `size` bytes (or [`HEADER_LEN`] if `size` is smaller).
pub fn make(index: u64, size: usize) -> Bytes {
    let mut out = format!("#{index:010}:").into_bytes();
    let len = size.max(out.len());
    let mut j = 0u64;
    while out.len() < len {
        // Letters cycling from a start that depends on the index.
        out.push(b'a' + ((index.wrapping_mul(7).wrapping_add(j)) % 26) as u8);
        j += 1;
    }
    Bytes::from(out)
}

/// The index a message claims to carry, if its header is well-formed.
pub fn index_of(payload: &[u8]) -> Option<u64> {
    let header = payload.get(..HEADER_LEN)?;
    if header[0] != b'#' || header[HEADER_LEN - 1] != b':' {
        return None;
    }
    let digits = std::str::from_utf8(&header[1..HEADER_LEN - 1]).ok()?;
    digits.parse().ok()
}

/// What one echo was, as judged by [`EchoCheck::on_echo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// The next message, in order.
    InOrder,
    /// A message not seen before, but not the next one.
    OutOfOrder,
    /// A message already echoed.
    Duplicate,
    /// Not one of the messages sent (bad header, index out of range, or altered content).
    Corrupted,
}

/// Checks that the echoes of messages `0..count` come back exactly once and in order.
#[derive(Clone, Debug)]
pub struct EchoCheck {
    count: u64,
    size: usize,
    /// Every index below this one has been echoed.
    contiguous: u64,
    /// Indices at or above `contiguous` that have been echoed (memory grows with disorder
    /// only, not with `count`).
    ahead: BTreeSet<u64>,
    /// Index expected next: one past the highest index echoed so far.
    next: u64,
    /// Echoes received, of any kind.
    pub received: u64,
    /// Distinct messages echoed.
    pub distinct: u64,
    /// Echoes of new messages that did not come in order.
    pub out_of_order: u64,
    /// Echoes of messages already echoed.
    pub duplicates: u64,
    /// Echoes that were not any message sent.
    pub corrupted: u64,
}

impl EchoCheck {
    /// A checker for `count` messages made by [`make`] with `size`.
    pub fn new(count: u64, size: usize) -> EchoCheck {
        EchoCheck {
            count,
            size,
            contiguous: 0,
            ahead: BTreeSet::new(),
            next: 0,
            received: 0,
            distinct: 0,
            out_of_order: 0,
            duplicates: 0,
            corrupted: 0,
        }
    }

    /// Judges one echo and counts it.
    pub fn on_echo(&mut self, payload: &[u8]) -> Echo {
        self.received += 1;
        let verdict = match index_of(payload) {
            Some(i) if i < self.count && payload == make(i, self.size) => {
                if i < self.contiguous || !self.ahead.insert(i) {
                    Echo::Duplicate
                } else {
                    while self.ahead.remove(&self.contiguous) {
                        self.contiguous += 1;
                    }
                    self.distinct += 1;
                    let in_order = i == self.next;
                    self.next = self.next.max(i + 1);
                    if in_order {
                        Echo::InOrder
                    } else {
                        Echo::OutOfOrder
                    }
                }
            }
            _ => Echo::Corrupted,
        };
        match verdict {
            Echo::InOrder => {}
            Echo::OutOfOrder => self.out_of_order += 1,
            Echo::Duplicate => self.duplicates += 1,
            Echo::Corrupted => self.corrupted += 1,
        }
        verdict
    }

    /// Messages whose echo has not come back (yet).
    pub fn missing(&self) -> u64 {
        self.count - self.distinct
    }

    /// Whether every message has been echoed.
    pub fn is_complete(&self) -> bool {
        self.distinct == self.count
    }

    /// Whether every message was echoed exactly once, in order, intact.
    pub fn is_clean(&self) -> bool {
        self.is_complete() && self.out_of_order == 0 && self.duplicates == 0 && self.corrupted == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_distinct_sized_and_parse_back() {
        let a = make(0, 32);
        let b = make(1, 32);
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(index_of(&b), Some(1));
        assert_eq!(make(5, 0).len(), HEADER_LEN);
        assert_eq!(index_of(b"garbage"), None);
    }

    #[test]
    fn checker_counts_each_kind() {
        let mut c = EchoCheck::new(4, 20);
        assert_eq!(c.on_echo(&make(0, 20)), Echo::InOrder);
        assert_eq!(c.on_echo(&make(2, 20)), Echo::OutOfOrder);
        assert_eq!(c.on_echo(&make(1, 20)), Echo::OutOfOrder);
        assert_eq!(c.on_echo(&make(1, 20)), Echo::Duplicate);
        assert_eq!(c.on_echo(&make(3, 21)), Echo::Corrupted);
        assert_eq!(c.on_echo(&make(9, 20)), Echo::Corrupted);
        assert_eq!(c.missing(), 1);
        assert!(!c.is_complete());
        assert_eq!(c.on_echo(&make(3, 20)), Echo::InOrder);
        assert!(c.is_complete());
        assert!(!c.is_clean());
        assert_eq!((c.out_of_order, c.duplicates, c.corrupted), (2, 1, 2));
    }
}
