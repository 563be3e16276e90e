//! The range list of a selective acknowledgement (binary codec only): which Data messages above
//! the cumulative point the receiver holds.
//!
//! ```text
//! ranges = range*                 (at most MAX_RANGES, ascending, disjoint, not adjacent)
//! range  = gap:varint | len:varint
//! ```
//!
//! A `SAck` frame (`docs/wire.md` 2.2) carries `through`, the cumulative point (every Data
//! message up to and including it was received), and this list. Each range starts `gap` places
//! after the end of the previous one (the first: after `through + 1`) and covers `len` sequence
//! numbers: `start = prev_end + gap`, `end = start + len`, with `gap >= 1` (a range never touches
//! the one before it, or the cumulative point) and `len >= 1`. The list says what was received; a
//! sequence number it leaves out is *not* reported missing, so a receiver may list only some of
//! its ranges (hawser lists the highest ones: the newest news). Because every acknowledgement
//! repeats the whole state, losing one costs nothing but the time to the next.
//!
//! [`validate`] is the only parser; [`ranges`] relies on a list it accepted.

use bytes::{Bytes, BytesMut};

use super::cursor::{put_varint, Reader};
use super::{SeqNum, WireError};

/// The most ranges one selective acknowledgement carries (and a decoder accepts): 32 ranges of
/// two varints are at most 640 bytes, typically under 100.
pub const MAX_RANGES: usize = 32;

/// Encodes `ranges` (ascending, disjoint, each `start..end` with `start < end`, the first
/// starting above `through + 1`) as a range list. Ranges that break those rules, and any beyond
/// [`MAX_RANGES`], are left out rather than encoded wrongly.
pub fn encode(through: SeqNum, ranges: impl IntoIterator<Item = (SeqNum, SeqNum)>) -> Bytes {
    let mut out = BytesMut::new();
    let mut prev_end = through.0.saturating_add(1);
    for (start, end) in ranges.into_iter().take(MAX_RANGES) {
        if start.0 <= prev_end || end.0 <= start.0 {
            continue;
        }
        put_varint(&mut out, start.0 - prev_end);
        put_varint(&mut out, end.0 - start.0);
        prev_end = end.0;
    }
    out.freeze()
}

/// Checks that `list` is a well-formed range list after `through` and returns how many ranges
/// it holds.
///
/// # Errors
/// [`WireError::Truncated`] when a range is cut off; [`WireError::Malformed`] for a bad varint,
/// a zero gap or length, more than [`MAX_RANGES`] ranges, or a range beyond `u64`. Never panics,
/// whatever the bytes.
pub fn validate(through: SeqNum, list: &[u8]) -> Result<usize, WireError> {
    let mut parser = Parser::new(through, list);
    let mut count = 0usize;
    while parser.next_range()?.is_some() {
        count += 1;
        if count > MAX_RANGES {
            return Err(WireError::Malformed("sack with too many ranges"));
        }
    }
    Ok(count)
}

/// The ranges (`start..end`, ascending) of a list that [`validate`] accepted for `through`.
/// On a list it did not accept, iteration stops at the first bad range.
pub fn ranges(through: SeqNum, list: &[u8]) -> impl Iterator<Item = (SeqNum, SeqNum)> + '_ {
    let mut parser = Parser::new(through, list);
    std::iter::from_fn(move || parser.next_range().ok().flatten())
}

/// The one reader of range lists, behind both [`validate`] and [`ranges`].
struct Parser<'a> {
    r: Reader<'a>,
    /// Where the previous range ended (`through + 1` before the first); `None` past `u64`.
    prev_end: Option<u64>,
}

impl<'a> Parser<'a> {
    fn new(through: SeqNum, list: &'a [u8]) -> Parser<'a> {
        Parser {
            r: Reader(list),
            prev_end: through.0.checked_add(1),
        }
    }

    /// The next range, `None` at the end of the list.
    fn next_range(&mut self) -> Result<Option<(SeqNum, SeqNum)>, WireError> {
        let prev_end = self.prev_end.ok_or(WireError::OutOfRange("sack through"))?;
        if self.r.is_empty() {
            return Ok(None);
        }
        let gap = self.r.varint()?;
        let len = self.r.varint()?;
        if gap == 0 || len == 0 {
            return Err(WireError::Malformed("sack range with a zero gap or length"));
        }
        let start = prev_end
            .checked_add(gap)
            .ok_or(WireError::OutOfRange("sack range"))?;
        let end = start
            .checked_add(len)
            .ok_or(WireError::OutOfRange("sack range"))?;
        self.prev_end = Some(end);
        Ok(Some((SeqNum(start), SeqNum(end))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: u64) -> SeqNum {
        SeqNum(v)
    }

    #[test]
    fn round_trips_ranges_above_the_cumulative_point() {
        let list = encode(s(10), [(s(12), s(15)), (s(20), s(21))]);
        assert_eq!(validate(s(10), &list), Ok(2));
        let back: Vec<_> = ranges(s(10), &list).collect();
        assert_eq!(back, vec![(s(12), s(15)), (s(20), s(21))]);
        // gap 1 (11 missing), len 3; gap 5 (15..20 missing), len 1
        assert_eq!(&list[..], &[1, 3, 5, 1]);
    }

    #[test]
    fn encode_leaves_out_what_it_cannot_encode_truthfully() {
        // touching the cumulative point, empty, overlapping, then a good one
        let list = encode(
            s(10),
            [
                (s(11), s(13)),
                (s(14), s(14)),
                (s(16), s(18)),
                (s(17), s(19)),
                (s(30), s(31)),
            ],
        );
        let back: Vec<_> = ranges(s(10), &list).collect();
        assert_eq!(back, vec![(s(16), s(18)), (s(30), s(31))]);
        let many: Vec<_> = (0..100u64)
            .map(|i| (s(20 + 3 * i), s(21 + 3 * i)))
            .collect();
        let list = encode(s(10), many);
        assert_eq!(validate(s(10), &list), Ok(MAX_RANGES));
    }

    #[test]
    fn malformed_lists_are_refused() {
        assert_eq!(validate(s(1), &[]), Ok(0));
        assert!(matches!(
            validate(s(1), &[0, 1]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            validate(s(1), &[1, 0]),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(validate(s(1), &[1]), Err(WireError::Truncated));
        let mut too_many = Vec::new();
        for _ in 0..=MAX_RANGES {
            too_many.extend([1, 1]);
        }
        assert!(matches!(
            validate(s(1), &too_many),
            Err(WireError::Malformed(_))
        ));
        // beyond u64
        let mut huge = BytesMut::new();
        put_varint(&mut huge, u64::MAX - 5);
        put_varint(&mut huge, 10);
        assert!(matches!(
            validate(s(1), &huge),
            Err(WireError::OutOfRange(_))
        ));
        assert!(validate(s(u64::MAX), &[]).is_err());
    }

    proptest! {
        #[test]
        fn validate_never_panics_and_agrees_with_ranges(through in any::<u64>(), bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(n) = validate(SeqNum(through), &bytes) {
                let got: Vec<_> = ranges(SeqNum(through), &bytes).collect();
                prop_assert_eq!(got.len(), n);
                let mut prev = through.saturating_add(1);
                for (start, end) in got {
                    prop_assert!(start.0 > prev && end.0 > start.0);
                    prev = end.0;
                }
            }
        }

        #[test]
        fn encoded_ranges_round_trip(through in 0u64..1 << 40, spans in proptest::collection::vec((1u64..50, 1u64..50), 0..40)) {
            let mut prev = through + 1;
            let mut want = Vec::new();
            for (gap, len) in spans {
                let start = prev + gap;
                want.push((SeqNum(start), SeqNum(start + len)));
                prev = start + len;
            }
            let list = encode(SeqNum(through), want.clone());
            prop_assert_eq!(validate(SeqNum(through), &list), Ok(want.len().min(MAX_RANGES)));
            let got: Vec<_> = ranges(SeqNum(through), &list).collect();
            want.truncate(MAX_RANGES);
            prop_assert_eq!(got, want);
        }
    }
}
