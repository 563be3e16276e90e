//! A set of sequence numbers kept as disjoint, non-adjacent runs: the shape of what a receiver
//! holds out of order, which is what a selective acknowledgement reports.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent runs `start..end` of `u64`s, keyed by start. Inserting or finding a
/// number costs `O(log runs)`, whatever the runs' lengths.
#[derive(Debug, Default)]
pub(crate) struct RangeSet {
    runs: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Adds `n`, merging it with the runs it touches. Adding a number already present is a
    /// no-op, and so is adding `u64::MAX`, which a half-open run cannot hold (no sequence number
    /// gets there: they start from a 32-bit ISN).
    pub fn insert(&mut self, n: u64) {
        if n < u64::MAX {
            self.insert_range(n, n + 1);
        }
    }

    /// Adds every number of `start..end` (nothing if it is empty), merging the runs it overlaps
    /// or touches: `O((1 + merged) · log runs)`.
    pub fn insert_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        if let Some((&s, &e)) = self.runs.range(..start).next_back() {
            if e >= start {
                start = s;
            }
        }
        while let Some((&s, &e)) = self.runs.range(start..=end).next() {
            self.runs.remove(&s);
            end = end.max(e);
        }
        self.runs.insert(start, end);
    }

    /// Removes every number below `n` (runs below it go, one across it is cut at `n`).
    pub fn trim_below(&mut self, n: u64) {
        while let Some((&s, &e)) = self.runs.first_key_value() {
            if s >= n {
                break;
            }
            self.runs.remove(&s);
            if e > n {
                self.runs.insert(n, e);
                break;
            }
        }
    }

    /// The start of the first run that begins above `n`.
    pub fn next_start_after(&self, n: u64) -> Option<u64> {
        let from = n.checked_add(1)?;
        self.runs.range(from..).next().map(|(&s, _)| s)
    }

    /// The runs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(&start, &end)| (start, end))
    }

    /// The run holding `n`, if any.
    pub fn containing(&self, n: u64) -> Option<(u64, u64)> {
        self.runs
            .range(..=n)
            .next_back()
            .filter(|&(_, &end)| n < end)
            .map(|(&start, &end)| (start, end))
    }

    /// Removes the run that starts at `start`, if there is one, and returns its end.
    pub fn remove_starting_at(&mut self, start: u64) -> Option<u64> {
        self.runs.remove(&start)
    }

    /// The runs from the highest down.
    pub fn iter_rev(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().rev().map(|(&start, &end)| (start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn runs(set: &RangeSet) -> Vec<(u64, u64)> {
        let mut v: Vec<_> = set.iter_rev().collect();
        v.reverse();
        v
    }

    #[test]
    fn merges_neighbours() {
        let mut s = RangeSet::default();
        for n in [5, 7, 6, 10, 9, 1] {
            s.insert(n);
        }
        assert_eq!(runs(&s), vec![(1, 2), (5, 8), (9, 11)]);
        assert_eq!(s.containing(6), Some((5, 8)));
        assert_eq!(s.containing(8), None);
        s.insert(8);
        assert_eq!(runs(&s), vec![(1, 2), (5, 11)]);
        assert_eq!(s.remove_starting_at(5), Some(11));
        assert_eq!(s.remove_starting_at(5), None);
        assert_eq!(runs(&s), vec![(1, 2)]);
        s.insert(u64::MAX);
        assert_eq!(s.iter().count(), 1);
        s.insert_range(10, 20);
        s.insert_range(25, 30);
        s.insert_range(18, 26);
        assert_eq!(runs(&s), vec![(1, 2), (10, 30)]);
        assert_eq!(s.next_start_after(1), Some(10));
        assert_eq!(s.next_start_after(10), None);
        s.trim_below(15);
        assert_eq!(runs(&s), vec![(15, 30)]);
        s.trim_below(40);
        assert_eq!(s.iter().count(), 0);
        s.insert(u64::MAX - 1);
        assert_eq!(s.containing(u64::MAX - 1), Some((u64::MAX - 1, u64::MAX)));
    }

    proptest! {
        #[test]
        fn agrees_with_a_plain_set(
            ops in proptest::collection::vec((0u64..200, 0u64..12, 0u8..10), 0..150),
        ) {
            let mut s = RangeSet::default();
            let mut plain = BTreeSet::new();
            for (n, len, op) in ops {
                match op {
                    0 => {
                        s.trim_below(n);
                        plain.retain(|&x| x >= n);
                    }
                    1..=4 => {
                        s.insert_range(n, n + len);
                        plain.extend(n..n + len);
                    }
                    _ => {
                        s.insert(n);
                        plain.insert(n);
                    }
                }
                let next = plain.iter().find(|&&x| x > n && !plain.contains(&(x - 1))).copied();
                prop_assert_eq!(s.next_start_after(n), next);
            }
            let mut expanded = BTreeSet::new();
            let mut prev_end = None;
            for (start, end) in runs(&s) {
                prop_assert!(start < end);
                prop_assert!(prev_end.is_none_or(|p| p < start), "runs touch or overlap");
                prev_end = Some(end);
                expanded.extend(start..end);
            }
            prop_assert_eq!(&expanded, &plain);
            for n in 0..200 {
                prop_assert_eq!(s.containing(n).is_some(), plain.contains(&n));
            }
        }
    }
}
