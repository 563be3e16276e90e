//! Reachability events: `decode` never panics, and what decodes encodes back to the same
//! bytes (varints are minimal, so each event has one encoding) at the predicted length.
#![no_main]

use hawser_proto::wire::reach;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = reach::decode(data) else {
        return;
    };
    assert_eq!(reach::encoded_len(&event), data.len());
    let bytes = reach::to_bytes(&event).expect("a decoded event is within bounds");
    assert_eq!(&bytes[..], data);
});
