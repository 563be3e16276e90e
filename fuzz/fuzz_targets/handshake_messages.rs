//! Session handshake messages (`wire::handshake`): the prologue, the plaintext-mode hello,
//! the identity payload and the protocol list. No decoder panics; what decodes emits the
//! input byte for byte, with the length `buffer_len` says.
#![no_main]

use hawser_proto::wire::handshake::{IdentityPayload, PlaintextHello, Prologue, ProtocolList};
use libfuzzer_sys::fuzz_target;

/// The list's bytes encoded again from its decoded entries.
fn reencode(list: &ProtocolList<'_>) -> Vec<u8> {
    let entries: Vec<(u32, &str, Vec<u16>)> = list
        .iter()
        .map(|e| (e.id, e.name, e.versions.collect()))
        .collect();
    let mut out = Vec::new();
    ProtocolList::encode(
        entries
            .iter()
            .map(|(id, name, v)| (*id, *name, v.as_slice())),
        &mut out,
    )
    .expect("a decoded list encodes");
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = ProtocolList::parse(data) {
        assert_eq!(reencode(&list), data);
        assert_eq!(list.iter().count(), list.len());
    }
    let _ = Prologue::peek_version(data);
    if let Ok(p) = Prologue::parse(data) {
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(out, data);
        assert_eq!(p.buffer_len(), data.len());
    }
    if let Some((front, rest)) = Prologue::split_front(data) {
        assert_eq!(front.len() + rest.len(), data.len());
    }
    if let Ok(h) = PlaintextHello::parse(data) {
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(out, data);
        assert_eq!(h.buffer_len(), data.len());
        if let Ok(list) = h.protocol_list() {
            assert_eq!(reencode(&list), h.protocols);
        }
    }
    if let Ok(p) = IdentityPayload::parse(data) {
        let mut out = Vec::new();
        p.emit(&mut out);
        assert_eq!(out, data);
        assert_eq!(p.buffer_len(), data.len());
        if let Ok(list) = p.protocol_list() {
            assert_eq!(reencode(&list), p.protocols);
        }
    }
});
