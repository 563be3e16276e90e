//! Framing of a session's secure channel: how each Noise message (handshake or transport) is
//! carried by the transport below. Stateless; the handshake and the ciphers are the session
//! layer's.
//!
//! # Byte streams (TCP, in-memory duplex)
//! Every message is preceded by its length:
//! ```text
//! message = len:u16 BE | Noise message (len bytes)
//! ```
//! [`length_prefix`] writes the prefix and [`prefixed_len`] reads it; the receiver bounds
//! `len` itself (a handshake message, a sealed transport message).
//!
//! # Message transports (LSP, WebSocket, in-memory channels)
//! One message per transport message, behind a one-byte kind ([`Envelope`]):
//! ```text
//! envelope = 0x00 | counter:u64 BE | ciphertext    data (counter = the Noise nonce)
//!          | 0x01..=0x03 | handshake message       handshake step 1, 2 or 3
//!          | 0x04 | hello                          plaintext-mode hello
//!          | 0x05 | refusal                        why the handshake was refused
//! ```
//! The explicit counter lets the receiver drop a retransmitted duplicate before decryption;
//! a late duplicate of a handshake step is dropped too.
//!
//! # Sealed messages
//! A transport message (a Noise message after the handshake) is the ciphertext followed by a
//! [`TAG_LEN`]-byte tag. Its AEAD nonce is not sent: each direction counts its messages from
//! 0, and message `n` is sealed under
//! ```text
//! nonce = 0x00000000 | n:u64       (little-endian for ChaChaPoly, big-endian for AESGCM)
//! ```
//! as the Noise specification says for each cipher ([`nonce`], [`CounterOrder`]). A sealed
//! node datagram (`wire::node`) uses the same layout with the counter big-endian.
//!
//! # Refusals
//! An end that refuses the handshake sends a refusal ([`super::refusal`]) before it closes: on
//! byte streams as a message of its own (a refusal starts with `hawser-refusal` and is at most
//! 145 bytes, shorter than any Noise handshake message 2 or 3, so
//! [`is_refusal`](super::refusal::is_refusal) tells them apart), on message transports behind
//! kind `0x05`.

use super::WireError;

/// Bytes of the length prefix on byte streams.
pub const LENGTH_PREFIX_LEN: usize = 2;
/// Bytes a data envelope adds on message transports (kind and counter).
pub const DATA_HEADER_LEN: usize = 1 + 8;

/// Bytes of the AEAD tag at the end of every sealed message.
pub const TAG_LEN: usize = 16;
/// Bytes of an AEAD nonce.
pub const NONCE_LEN: usize = 12;

const KIND_DATA: u8 = 0x00;
const KIND_HELLO: u8 = 0x04;
const KIND_REFUSAL: u8 = 0x05;

/// The length prefix of a message of `len` bytes on a byte stream; `None` when `len` does not
/// fit 2 bytes.
pub fn length_prefix(len: usize) -> Option<[u8; LENGTH_PREFIX_LEN]> {
    u16::try_from(len).ok().map(u16::to_be_bytes)
}

/// The length the first message of `buf` announces (after its prefix); `None` until the
/// prefix is there. The caller bounds it and waits for the message itself.
pub fn prefixed_len(buf: &[u8]) -> Option<usize> {
    buf.first_chunk::<LENGTH_PREFIX_LEN>()
        .map(|p| usize::from(u16::from_be_bytes(*p)))
}

/// Writes the header of a data envelope with `counter` into `out`'s first
/// [`DATA_HEADER_LEN`] bytes, in front of a body written in place; writes nothing when `out`
/// is shorter.
pub fn put_data_header(out: &mut [u8], counter: u64) {
    let Some(head) = out.get_mut(..DATA_HEADER_LEN) else {
        debug_assert!(false, "a data header needs {DATA_HEADER_LEN} bytes");
        return;
    };
    head[0] = KIND_DATA;
    head[1..].copy_from_slice(&counter.to_be_bytes());
}

/// How a cipher writes its message counter into the nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterOrder {
    /// Least significant byte first (Noise's ChaChaPoly).
    LittleEndian,
    /// Most significant byte first (Noise's AESGCM, sealed node datagrams).
    BigEndian,
}

/// The nonce of message `counter`: 4 zero bytes, then the counter in `order`.
pub fn nonce(counter: u64, order: CounterOrder) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&match order {
        CounterOrder::LittleEndian => counter.to_le_bytes(),
        CounterOrder::BigEndian => counter.to_be_bytes(),
    });
    n
}

/// A sealed message cut into its ciphertext and its tag; `None` when it is shorter than a
/// tag.
pub fn split_tag(sealed: &[u8]) -> Option<(&[u8], &[u8; TAG_LEN])> {
    sealed.split_last_chunk::<TAG_LEN>()
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
    /// A refusal ([`super::refusal`]), ending the handshake.
    Refusal(&'a [u8]),
}

impl<'a> Envelope<'a> {
    /// Parses a transport message.
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an empty message or a truncated data header,
    /// [`WireError::UnknownType`] for an unknown kind; never panics.
    pub fn parse(message: &'a [u8]) -> Result<Envelope<'a>, WireError> {
        let (&kind, rest) = message.split_first().ok_or(WireError::Truncated)?;
        match kind {
            KIND_DATA => {
                let (head, body) = rest.split_first_chunk::<8>().ok_or(WireError::Truncated)?;
                Ok(Envelope::Data {
                    counter: u64::from_be_bytes(*head),
                    body,
                })
            }
            1..=3 => Ok(Envelope::Handshake {
                step: kind,
                body: rest,
            }),
            KIND_HELLO => Ok(Envelope::Hello(rest)),
            KIND_REFUSAL => Ok(Envelope::Refusal(rest)),
            other => Err(WireError::UnknownType(u64::from(other))),
        }
    }

    /// Appends the envelope's bytes ([`buffer_len`](Self::buffer_len)) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_data_header_written_in_place_parses_as_emitted() {
        let mut msg = vec![0xa5; DATA_HEADER_LEN + 3];
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
            let mut out = vec![0xa5];
            env.emit(&mut out);
            assert_eq!(out[1..], bytes);
            assert_eq!(env.buffer_len(), bytes.len());
            assert_eq!(Envelope::parse(&bytes), Ok(env));
        }
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert_eq!(Envelope::parse(&[]), Err(WireError::Truncated));
        for n in 1..DATA_HEADER_LEN {
            assert_eq!(
                Envelope::parse(&[0; DATA_HEADER_LEN][..n]),
                Err(WireError::Truncated)
            );
        }
        assert_eq!(Envelope::parse(&[6]), Err(WireError::UnknownType(6)));
        assert_eq!(
            Envelope::parse(&[0xff, 1]),
            Err(WireError::UnknownType(255))
        );
    }

    #[test]
    fn length_prefix_golden_bytes_and_bounds() {
        assert_eq!(length_prefix(3), Some([0, 3]));
        assert_eq!(length_prefix(0x0102), Some([1, 2]));
        assert_eq!(length_prefix(65_535), Some([0xff, 0xff]));
        assert_eq!(length_prefix(65_536), None);
        assert_eq!(prefixed_len(&[0, 3, b'a']), Some(3));
        assert_eq!(prefixed_len(&[1, 2]), Some(0x0102));
        assert_eq!(prefixed_len(&[1]), None);
        assert_eq!(prefixed_len(&[]), None);
    }

    #[test]
    fn nonce_and_tag_golden_bytes() {
        let n = 0x0102_0304_0506_0708;
        assert_eq!(
            nonce(n, CounterOrder::LittleEndian),
            [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(
            nonce(n, CounterOrder::BigEndian),
            [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(nonce(0, CounterOrder::BigEndian), [0; NONCE_LEN]);
        let sealed: Vec<u8> = (0..20).collect();
        let (ciphertext, tag) = split_tag(&sealed).unwrap();
        assert_eq!(ciphertext, [0, 1, 2, 3]);
        assert_eq!(tag[..], sealed[4..]);
        assert_eq!(split_tag(&sealed[..TAG_LEN]).unwrap().0, b"");
        assert_eq!(split_tag(&sealed[..TAG_LEN - 1]), None);
    }

    proptest! {
        #[test]
        fn nonces_carry_the_counter(counter in any::<u64>()) {
            let le = nonce(counter, CounterOrder::LittleEndian);
            let be = nonce(counter, CounterOrder::BigEndian);
            prop_assert_eq!(&le[..4], &[0; 4]);
            prop_assert_eq!(u64::from_le_bytes(le[4..].try_into().unwrap()), counter);
            prop_assert_eq!(u64::from_be_bytes(be[4..].try_into().unwrap()), counter);
        }

        #[test]
        fn envelopes_round_trip(kind in 0u8..6, counter in any::<u64>(),
                                body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let env = match kind {
                0 => Envelope::Data { counter, body: &body },
                1..=3 => Envelope::Handshake { step: kind, body: &body },
                4 => Envelope::Hello(&body),
                _ => Envelope::Refusal(&body),
            };
            let mut out = Vec::new();
            env.emit(&mut out);
            prop_assert_eq!(out.len(), env.buffer_len());
            prop_assert_eq!(Envelope::parse(&out), Ok(env));
            let prefix = length_prefix(out.len()).unwrap();
            prop_assert_eq!(prefixed_len(&prefix), Some(out.len()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(env) = Envelope::parse(&bytes) {
                let mut out = Vec::new();
                env.emit(&mut out);
                prop_assert_eq!(out, bytes.clone());
            }
            let _ = prefixed_len(&bytes);
        }
    }
}
