//! Wire framing of secure-channel messages.
//!
//! # Byte streams (TCP, in-memory duplex)
//! Every Noise message (handshake or transport) is preceded by its length:
//! ```text
//! +----------------+--------------------------------+
//! | u16 length, BE | Noise message (length bytes)   |
//! +----------------+--------------------------------+
//! ```
//! [`byte_codec`] is tokio-util's `LengthDelimitedCodec` with a 2-byte length field and a
//! bounded frame size.
//!
//! # Message transports (LSP, WebSocket, in-memory channels)
//! One Noise message per transport message, behind a one-byte kind:
//! ```text
//! 0x00 | u64 counter, BE | ciphertext      data (counter = the Noise nonce)
//! 0x01..=0x03 | handshake message          handshake step 1, 2 or 3
//! 0x04 | hello                             plaintext-mode hello
//! 0x05 | refusal                           why the handshake was refused
//! ```
//! The explicit counter lets the receiver drop a retransmitted duplicate before decryption;
//! a late duplicate of a handshake step is dropped too.
//!
//! # Refusals
//! An end that refuses the handshake sends a refusal (`hawser_proto::wire::refusal`) before it
//! closes: on byte streams as a frame of its own (a refusal starts with `hawser-refusal` and
//! is at most 145 bytes, shorter than any Noise handshake message 2 or 3, so
//! `wire::refusal::is_refusal` tells them apart), on message transports behind kind `0x05`.

use tokio_util::codec::LengthDelimitedCodec;

use super::error::CryptoError;

/// Bytes of the length prefix on byte streams.
pub const LENGTH_PREFIX_LEN: usize = 2;
/// Bytes a data envelope adds on message transports (kind and counter).
pub const DATA_HEADER_LEN: usize = 9;

const KIND_DATA: u8 = 0x00;

/// Writes the header of a data envelope with `counter` into `out`'s first
/// [`DATA_HEADER_LEN`] bytes, in front of a body written in place (`out` must be that long).
pub fn put_data_header(out: &mut [u8], counter: u64) {
    out[0] = KIND_DATA;
    out[1..DATA_HEADER_LEN].copy_from_slice(&counter.to_be_bytes());
}
const KIND_HELLO: u8 = 0x04;
const KIND_REFUSAL: u8 = 0x05;

/// A length-delimited codec with a 2-byte big-endian length and frames of at most
/// `max_frame` bytes (itself at most 65,535).
pub fn byte_codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_PREFIX_LEN)
        .max_frame_length(max_frame.min(usize::from(u16::MAX)))
        .new_codec()
}

/// A parsed message-transport envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// Transport data with its explicit counter.
    Data {
        /// The sender's message counter (the Noise nonce).
        counter: u64,
        /// The ciphertext.
        body: &'a [u8],
    },
    /// Handshake message number `step` (1 to 3).
    Handshake {
        /// The handshake step.
        step: u8,
        /// The Noise handshake message.
        body: &'a [u8],
    },
    /// A plaintext-mode hello.
    Hello(&'a [u8]),
    /// A refusal (`hawser_proto::wire::refusal`), ending the handshake.
    Refusal(&'a [u8]),
}

impl<'a> Envelope<'a> {
    /// Parses a transport message; never panics.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for an unknown kind or a truncated header.
    pub fn parse(message: &'a [u8]) -> Result<Envelope<'a>, CryptoError> {
        let (&kind, rest) = message.split_first().ok_or(CryptoError::Malformed)?;
        match kind {
            KIND_DATA => {
                let head: [u8; 8] = rest
                    .get(..8)
                    .and_then(|h| h.try_into().ok())
                    .ok_or(CryptoError::Malformed)?;
                Ok(Envelope::Data {
                    counter: u64::from_be_bytes(head),
                    body: &rest[8..],
                })
            }
            1..=3 => Ok(Envelope::Handshake {
                step: kind,
                body: rest,
            }),
            KIND_HELLO => Ok(Envelope::Hello(rest)),
            KIND_REFUSAL => Ok(Envelope::Refusal(rest)),
            _ => Err(CryptoError::Malformed),
        }
    }

    /// Appends the envelope's bytes to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match *self {
            Envelope::Data { counter, body } => {
                out.push(KIND_DATA);
                out.extend_from_slice(&counter.to_be_bytes());
                out.extend_from_slice(body);
            }
            Envelope::Handshake { step, body } => {
                out.push(step);
                out.extend_from_slice(body);
            }
            Envelope::Hello(body) => {
                out.push(KIND_HELLO);
                out.extend_from_slice(body);
            }
            Envelope::Refusal(body) => {
                out.push(KIND_REFUSAL);
                out.extend_from_slice(body);
            }
        }
    }

    /// The length [`emit`](Self::emit) appends.
    pub fn buffer_len(&self) -> usize {
        match self {
            Envelope::Data { body, .. } => DATA_HEADER_LEN + body.len(),
            Envelope::Handshake { body, .. } | Envelope::Hello(body) | Envelope::Refusal(body) => {
                1 + body.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;

    #[test]
    fn a_data_header_written_in_place_parses_as_emitted() {
        let mut msg = vec![0xAA; DATA_HEADER_LEN + 3];
        msg[DATA_HEADER_LEN..].copy_from_slice(b"abc");
        put_data_header(&mut msg, 0x0102_0304_0506_0708);
        let mut emitted = Vec::new();
        Envelope::Data {
            counter: 0x0102_0304_0506_0708,
            body: b"abc",
        }
        .emit(&mut emitted);
        assert_eq!(msg, emitted);
    }

    #[test]
    fn envelope_golden_bytes_and_round_trip() {
        let cases = [
            (
                Envelope::Data {
                    counter: 258,
                    body: b"xy",
                },
                vec![0, 0, 0, 0, 0, 0, 0, 1, 2, b'x', b'y'],
            ),
            (
                Envelope::Handshake {
                    step: 2,
                    body: b"h",
                },
                vec![2, b'h'],
            ),
            (Envelope::Hello(b""), vec![4]),
            (Envelope::Refusal(b"r"), vec![5, b'r']),
        ];
        for (env, bytes) in cases {
            let mut out = vec![];
            env.emit(&mut out);
            assert_eq!(out, bytes);
            assert_eq!(env.buffer_len(), out.len());
            assert_eq!(Envelope::parse(&out).unwrap(), env);
        }
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert!(Envelope::parse(&[]).is_err());
        assert!(Envelope::parse(&[0, 1, 2]).is_err());
        assert!(Envelope::parse(&[6]).is_err());
        assert!(Envelope::parse(&[9]).is_err());
    }

    #[test]
    fn byte_codec_uses_two_byte_prefix_and_bounds_frames() {
        let mut codec = byte_codec(100);
        let mut buf = BytesMut::new();
        codec
            .encode(bytes::Bytes::from_static(b"abc"), &mut buf)
            .unwrap();
        assert_eq!(&buf[..], &[0, 3, b'a', b'b', b'c']);
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
        let mut big = BytesMut::from(&[0x01, 0x00][..]);
        assert!(codec.decode(&mut big).is_err());
    }
}
