//! The JSON LSP codec: any bytes decode to one message or an error, never a panic; a decoded
//! message encodes to the predicted length, in the exact shape the fast path reads, and
//! decodes back to itself.
#![no_main]

use bytes::BytesMut;
use hawser_proto::wire::{lsp_json, Codec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = lsp_json::decode(data);
    let mut via_codec = Vec::new();
    let codec_result = Codec::Json.decode(data, &mut via_codec);
    assert_eq!(codec_result.is_ok(), result.is_ok());
    let Ok(msg) = result else {
        return;
    };
    assert_eq!(via_codec, [msg.clone()]);
    assert!(!msg.bundled);
    let mut out = BytesMut::new();
    lsp_json::encode(&msg, &mut out);
    assert_eq!(out.len(), lsp_json::encoded_len(&msg));
    assert_eq!(lsp_json::decode(&out).as_ref(), Ok(&msg));
    // What the encoder writes is canonical: encoding it again writes the same bytes.
    let mut twice = BytesMut::new();
    lsp_json::encode(&lsp_json::decode(&out).unwrap(), &mut twice);
    assert_eq!(out, twice);
});
