//! Protocol lists of handshake payloads: `ProtocolRegistry::parse` never panics; a parsed list
//! emits a list that parses to the same registry; negotiation is symmetric.
#![no_main]

use hawser_proto::session::{negotiate, ProtocolRegistry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], &[u8])| {
    let (a, b) = input;
    let Ok(ra) = ProtocolRegistry::parse(a) else {
        return;
    };
    let mut out = Vec::new();
    ra.emit(&mut out);
    assert_eq!(ProtocolRegistry::parse(&out).as_ref(), Ok(&ra));
    // Versions are kept sorted and deduplicated, so emitting again gives the same bytes.
    let mut twice = Vec::new();
    ProtocolRegistry::parse(&out).unwrap().emit(&mut twice);
    assert_eq!(out, twice);
    if let Ok(rb) = ProtocolRegistry::parse(b) {
        assert_eq!(negotiate(&ra, &rb), negotiate(&rb, &ra));
        for (id, v) in negotiate(&ra, &rb).iter() {
            assert!(ra.protocol(id).unwrap().versions().contains(&v));
            assert!(rb.protocol(id).unwrap().versions().contains(&v));
        }
    }
});
