//! The binary LSP codec: any bytes decode to messages or an error, never a panic; what
//! decodes (also the messages before an error) encodes to the predicted length and decodes
//! back to the same messages.
#![no_main]

use bytes::BytesMut;
use hawser_proto::wire::{lsp_binary, Codec, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut msgs = Vec::new();
    let result = lsp_binary::decode(data, &mut msgs);
    let mut via_codec = Vec::new();
    assert_eq!(Codec::Binary.decode(data, &mut via_codec), result);
    assert_eq!(via_codec, msgs);
    if result.is_ok() {
        assert!(!msgs.is_empty());
    }
    if msgs.is_empty() {
        return;
    }
    let mut out = BytesMut::new();
    lsp_binary::encode(&msgs, &mut out);
    assert_eq!(out.len(), lsp_binary::encoded_len(&msgs));
    if msgs.iter().all(|m| m.conn == msgs[0].conn) {
        let frames: usize = msgs.iter().map(lsp_binary::frame_len).sum();
        assert_eq!(out.len(), lsp_binary::header_len(msgs[0].conn) + frames);
    }
    let mut again: Vec<Message> = Vec::new();
    lsp_binary::decode(&out, &mut again).expect("re-encoded messages decode");
    assert_eq!(again, msgs);
    for m in &msgs {
        // A decoded SAck's range list was validated: reading it never stops early.
        let n = m.sack_ranges().count();
        if let Some(list) = m
            .payload
            .as_deref()
            .filter(|_| m.kind == hawser_proto::wire::MsgType::SAck)
        {
            assert_eq!(hawser_proto::wire::sack::validate(m.seq, list), Ok(n));
        }
    }
});
