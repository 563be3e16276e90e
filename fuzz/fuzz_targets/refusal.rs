//! Handshake refusals: `Refusal::parse` never panics; what parses is recognised by
//! `is_refusal`, is what `Refusal::new` makes of its parts, and emits the input byte for byte.
#![no_main]

use hawser_proto::wire::refusal::{is_refusal, Refusal, RefusalReason};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = Refusal::parse(data) else {
        return;
    };
    assert!(is_refusal(data));
    assert_eq!(r.to_vec(), data);
    assert_eq!(r.buffer_len(), data.len());
    assert_eq!(Refusal::new(r.reason(), r.detail()), r);
    assert_eq!(RefusalReason::from_code(r.reason().code()), r.reason());
});
