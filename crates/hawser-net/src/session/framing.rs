//! Framing of secure-channel messages: the format is `hawser_proto::wire::channel`'s
//! (re-exported here); [`byte_codec`] cuts a byte stream into its length-prefixed messages
//! (tokio-util's `LengthDelimitedCodec` with a 2-byte length field and a bounded frame size).

use tokio_util::codec::LengthDelimitedCodec;

pub use hawser_proto::wire::channel::{
    length_prefix, prefixed_len, put_data_header, Envelope, DATA_HEADER_LEN, LENGTH_PREFIX_LEN,
};

/// A length-delimited codec with a 2-byte big-endian length and frames of at most
/// `max_frame` bytes (itself at most 65,535).
pub fn byte_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_PREFIX_LEN)
        .max_frame_length(max_frame.min(usize::from(u16::MAX)))
        .new_codec()
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;

    #[test]
    fn byte_codec_uses_two_byte_prefix_and_bounds_frames() {
        let mut codec = byte_codec(100);
        let mut buf = BytesMut::new();
        codec
            .encode(bytes::Bytes::from_static(b"abc"), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], &[0, 3, b'a', b'b', b'c']);
        assert_eq!(buf[..LENGTH_PREFIX_LEN], length_prefix(3).unwrap());
        assert_eq!(prefixed_len(&buf), Some(3));
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
        let mut big = BytesMut::from(&[0x01, 0x00][..]);
        assert!(codec.decode(&mut big).is_err());
    }
}
