//! Selective-acknowledgement range lists: `validate` never panics; the ranges of a valid list
//! are ascending, disjoint and not adjacent, and encode back to the same bytes.
#![no_main]

use hawser_proto::wire::{sack, SeqNum};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &[u8])| {
    let (through, list) = input;
    let through = SeqNum(through);
    let Ok(count) = sack::validate(through, list) else {
        return;
    };
    assert!(count <= sack::MAX_RANGES);
    let ranges: Vec<_> = sack::ranges(through, list).collect();
    assert_eq!(ranges.len(), count);
    let mut prev_end = through.0 + 1;
    for &(start, end) in &ranges {
        assert!(start.0 > prev_end && end.0 > start.0);
        prev_end = end.0;
    }
    assert_eq!(&sack::encode(through, ranges)[..], list);
});
