//! The node's receive path on a framed stream: the fast path that takes application frames
//! straight from the receive buffer must agree with the stream's length-delimited codec on any
//! bytes, and every frame the codec yields parses (or is refused) without panic, with what
//! parses written back the same.
#![no_main]

use bytes::{Bytes, BytesMut};
use hawser_net::node::fuzzing::{parse_frame, take_app_frames, take_whole_frame};
use hawser_proto::wire::node::FrameKind;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

fuzz_target!(|input: (u8, &[u8])| {
    let (max, bytes) = input;
    let max = usize::from(max);
    let mut codec = LengthDelimitedCodec::builder()
        .max_frame_length(max)
        .new_codec();
    let mut theirs = BytesMut::from(bytes);
    let mut ours = BytesMut::from(bytes);
    loop {
        let payloads = take_app_frames(&mut ours, max);
        for p in &payloads {
            let frame = codec.decode(&mut theirs).unwrap().unwrap();
            assert_eq!(frame.first(), Some(&FrameKind::App.byte()));
            assert_eq!(&frame[1..], &p[..]);
        }
        assert_eq!(ours, theirs);
        let whole = take_whole_frame(&mut ours, max);
        let decoded = match codec.decode(&mut theirs) {
            Ok(Some(frame)) => frame,
            // Partial, or over the bound: the fast path left it too.
            Ok(None) | Err(_) => {
                assert!(whole.is_none());
                return;
            }
        };
        assert_eq!(whole.as_ref(), Some(&decoded));
        assert_eq!(ours, theirs);
        let frame = Bytes::from(decoded);
        if let Ok((kind, body)) = parse_frame(frame.clone()) {
            let mut again = vec![kind];
            again.extend_from_slice(&body);
            assert_eq!(&again[..], &frame[..]);
        }
    }
});
