//! Bundles (several messages under one sequence number): `validate` and `split_next` agree on
//! any bytes, never panic, and a valid bundle is rebuilt byte for byte from its messages.
#![no_main]

use bytes::{Bytes, BytesMut};
use hawser_proto::wire::bundle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let valid = bundle::validate(data);
    let mut rest = Bytes::copy_from_slice(data);
    let mut messages = Vec::new();
    while let Some(m) = bundle::split_next(&mut rest) {
        messages.push(m);
        assert!(messages.len() <= data.len());
    }
    let Ok(count) = valid else {
        return;
    };
    assert_eq!(messages.len(), count);
    assert!(rest.is_empty(), "a valid bundle splits to its end");
    let mut rebuilt = BytesMut::new();
    for m in &messages {
        bundle::put_entry(&mut rebuilt, m);
    }
    assert_eq!(&rebuilt[..], data);
    let expected: usize = messages.iter().map(|m| bundle::entry_len(m.len())).sum();
    assert_eq!(expected, data.len());
});
