//! Request/response frames: `Rpc::parse` never panics, and what parses emits the input byte
//! for byte, with a frame header that announces the right length.
#![no_main]

use bytes::BytesMut;
use hawser_proto::wire::node::FrameKind;
use hawser_proto::wire::rpc::Rpc;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rpc) = Rpc::parse(data) else {
        return;
    };
    let mut out = BytesMut::new();
    rpc.emit(&mut out);
    assert_eq!(&out[..], data);
    assert_eq!(rpc.buffer_len(), data.len());
    assert!(data.ends_with(rpc.tail()));
    let header = rpc.frame_header().expect("a parsed message fits a frame");
    let h = header.as_slice();
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    assert_eq!(len, 1 + data.len());
    assert_eq!(h[4], FrameKind::Rpc.byte());
    let mut frame = h[5..].to_vec();
    frame.extend_from_slice(rpc.tail());
    assert_eq!(frame, data);
});
