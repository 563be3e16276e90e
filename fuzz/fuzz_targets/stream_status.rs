//! The stream header of session streams and the status byte of node application streams
//! (`wire::stream`): neither decoder panics, and what decodes encodes to the input.
#![no_main]

use hawser_proto::wire::stream::{StreamHeader, StreamStatus};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = StreamHeader::parse(data) {
        assert_eq!(h.to_bytes(), data);
    }
    match StreamStatus::parse(data) {
        Ok(s) => assert_eq!(s.to_bytes(), data),
        Err(_) => assert!(data.len() != 1 || data[0] > 2),
    }
});
