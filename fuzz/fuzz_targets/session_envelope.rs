//! Message-transport envelopes of sessions: `Envelope::parse` never panics, and what parses
//! emits the input byte for byte.
#![no_main]

use hawser_net::session::framing::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::parse(data) else {
        return;
    };
    let mut out = Vec::new();
    envelope.emit(&mut out);
    assert_eq!(out, data);
    assert_eq!(envelope.buffer_len(), data.len());
});
