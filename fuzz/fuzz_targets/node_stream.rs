//! The node's receive path on a framed stream: taking whole frames straight from the receive
//! buffer (`wire::node::take_frame`) must agree with the stream's length-delimited codec on any
//! bytes, and every frame taken parses (or is refused) without panic, with what parses written
//! back the same.
#![no_main]

use bytes::BytesMut;
use hawser_proto::wire::node::{take_frame, Frame};
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
        let taken = take_frame(&mut ours, max);
        match codec.decode(&mut theirs) {
            Ok(Some(decoded)) => {
                assert_eq!(taken.as_ref().ok().and_then(Option::as_ref), Some(&decoded))
            }
            // Partial: nothing taken (the codec, unlike `take_frame`, keeps the length it
            // read and drops its prefix, so the buffers differ from here on).
            Ok(None) => {
                assert!(matches!(taken, Ok(None)));
                return;
            }
            // Over the bound: refused, the buffer left as it was.
            Err(_) => {
                assert!(taken.is_err());
                return;
            }
        }
        assert_eq!(ours, theirs);
        let Ok(Some(frame)) = taken else {
            unreachable!()
        };
        let frame = frame.freeze();
        if let Ok(parsed) = Frame::parse(frame.clone()) {
            let mut again = vec![parsed.kind().byte()];
            again.extend_from_slice(&parsed.body());
            assert_eq!(&again[..], &frame[..]);
        }
    }
});
