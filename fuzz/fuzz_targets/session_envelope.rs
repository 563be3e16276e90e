//! Message-transport envelopes of sessions: `Envelope::parse` never panics, and what parses
//! emits the input byte for byte; a data envelope's body cuts into ciphertext and tag.
#![no_main]

use hawser_proto::wire::channel::{split_tag, Envelope, TAG_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::parse(data) else {
        return;
    };
    let mut out = Vec::new();
    envelope.emit(&mut out);
    assert_eq!(out, data);
    assert_eq!(envelope.buffer_len(), data.len());
    if let Envelope::Data { body, .. } = envelope {
        match split_tag(body) {
            Some((ciphertext, tag)) => {
                assert_eq!(ciphertext.len() + TAG_LEN, body.len());
                assert!(body.ends_with(tag));
            }
            None => assert!(body.len() < TAG_LEN),
        }
    }
});
