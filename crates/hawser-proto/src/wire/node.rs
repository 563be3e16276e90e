//! Node-layer frame formats: the hello that opens a reliable connection, and the envelope of an
//! unreliable datagram. Stateless; node ids are plain `u64` here (the node layer wraps them).
//!
//! ```text
//! hello    = magic "HW" (0x48 0x57) | version:u8 (0x01) | kind:u8 (0x01) | from:u64 BE
//!            (12 bytes; the first frame of every reliable connection, inside its length prefix
//!            on TCP, or the first message on LSP)
//! datagram = magic "HW" | version:u8 (0x01) | kind:u8 (0x02) | from:u64 BE | to:u64 BE
//!            | payload (the rest of the UDP datagram; 20 header bytes)
//! ```
//!
//! After the hello, a TCP connection carries one application payload per length-prefixed frame
//! (4-byte big-endian length, then the payload; no further header). Parsers never panic, and
//! reject a wrong magic, an unknown version or kind, truncation and trailing bytes.

use bytes::{BufMut, BytesMut};

use super::WireError;

/// The two magic bytes, `"HW"`.
pub const MAGIC: [u8; 2] = *b"HW";
/// The version byte of this layout.
pub const VERSION: u8 = 0x01;
/// The kind byte of a hello.
pub const KIND_HELLO: u8 = 0x01;
/// The kind byte of a datagram envelope.
pub const KIND_DATAGRAM: u8 = 0x02;
/// Length of an encoded [`Hello`].
pub const HELLO_LEN: usize = 12;
/// Length of a datagram envelope's header, before the payload.
pub const DATAGRAM_HEADER_LEN: usize = 20;

mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const FROM: Range<usize> = 4..12;
    pub const TO: Range<usize> = 12..20;
}

/// The first frame of a reliable connection: who is speaking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's node id.
    pub from: u64,
}

impl Hello {
    /// Parses a hello frame (exactly [`HELLO_LEN`] bytes).
    ///
    /// # Errors
    /// [`WireError`] on anything else; never panics.
    pub fn parse(bytes: &[u8]) -> Result<Hello, WireError> {
        check_header(bytes, HELLO_LEN, KIND_HELLO)?;
        if bytes.len() > HELLO_LEN {
            return Err(WireError::Malformed("trailing bytes after hello"));
        }
        Ok(Hello {
            from: read_u64(bytes, field::FROM),
        })
    }

    /// Appends the encoded hello ([`HELLO_LEN`] bytes) to `out`.
    pub fn emit(&self, out: &mut BytesMut) {
        out.reserve(HELLO_LEN);
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u8(KIND_HELLO);
        out.put_u64(self.from);
    }

    /// The encoded length, [`HELLO_LEN`].
    pub fn buffer_len(&self) -> usize {
        HELLO_LEN
    }
}

/// An unreliable datagram: sender, intended receiver, payload (borrowed from the datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The sender's node id.
    pub from: u64,
    /// The receiver's node id (a receiver drops datagrams meant for another node).
    pub to: u64,
    /// The application payload.
    pub payload: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Parses one UDP datagram.
    ///
    /// # Errors
    /// [`WireError`] when it is not a node datagram of this version; never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, WireError> {
        check_header(bytes, DATAGRAM_HEADER_LEN, KIND_DATAGRAM)?;
        Ok(Datagram {
            from: read_u64(bytes, field::FROM),
            to: read_u64(bytes, field::TO),
            payload: bytes.get(DATAGRAM_HEADER_LEN..).unwrap_or_default(),
        })
    }

    /// Appends the encoded datagram ([`buffer_len`](Self::buffer_len) bytes) to `out`.
    pub fn emit(&self, out: &mut BytesMut) {
        out.reserve(self.buffer_len());
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u8(KIND_DATAGRAM);
        out.put_u64(self.from);
        out.put_u64(self.to);
        out.put_slice(self.payload);
    }

    /// The encoded length: [`DATAGRAM_HEADER_LEN`] plus the payload.
    pub fn buffer_len(&self) -> usize {
        DATAGRAM_HEADER_LEN + self.payload.len()
    }
}

fn check_header(bytes: &[u8], min_len: usize, kind: u8) -> Result<(), WireError> {
    if bytes.len() < min_len {
        return Err(WireError::Truncated);
    }
    if bytes[field::MAGIC] != MAGIC {
        return Err(WireError::Malformed("bad magic"));
    }
    if bytes[field::VERSION] != VERSION {
        return Err(WireError::Malformed("unsupported version"));
    }
    if bytes[field::KIND] != kind {
        return Err(WireError::UnknownType(u64::from(bytes[field::KIND])));
    }
    Ok(())
}

/// Reads a big-endian u64; `bytes` was checked to cover `range` (8 bytes) by `check_header`.
fn read_u64(bytes: &[u8], range: std::ops::Range<usize>) -> u64 {
    let mut v = [0u8; 8];
    if let Some(src) = bytes.get(range) {
        v.copy_from_slice(src);
    }
    u64::from_be_bytes(v)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    static HELLO_7: [u8; 12] = [0x48, 0x57, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 7];
    static DGRAM_1_TO_2: [u8; 23] = [
        0x48, 0x57, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b', b'c',
    ];

    fn emit_after_a5(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::from(&[0xa5u8][..]);
        f(&mut out);
        assert_eq!(out[0], 0xa5, "emit must append");
        out[1..].to_vec()
    }

    #[test]
    fn hello_golden_bytes() {
        assert_eq!(Hello::parse(&HELLO_7), Ok(Hello { from: 7 }));
        let bytes = emit_after_a5(|o| Hello { from: 7 }.emit(o));
        assert_eq!(bytes, HELLO_7);
        assert_eq!(Hello { from: 7 }.buffer_len(), bytes.len());
    }

    #[test]
    fn datagram_golden_bytes() {
        let d = Datagram::parse(&DGRAM_1_TO_2).unwrap();
        assert_eq!((d.from, d.to, d.payload), (1, 2, &b"abc"[..]));
        let bytes = emit_after_a5(|o| d.emit(o));
        assert_eq!(bytes, DGRAM_1_TO_2);
        assert_eq!(d.buffer_len(), bytes.len());
        let empty = Datagram::parse(&DGRAM_1_TO_2[..20]).unwrap();
        assert!(empty.payload.is_empty());
    }

    #[test]
    fn malformed_input_is_refused() {
        for n in 0..HELLO_LEN {
            assert_eq!(Hello::parse(&HELLO_7[..n]), Err(WireError::Truncated));
        }
        for n in 0..DATAGRAM_HEADER_LEN {
            assert_eq!(
                Datagram::parse(&DGRAM_1_TO_2[..n]),
                Err(WireError::Truncated)
            );
        }
        let mut bad = HELLO_7;
        bad[0] = b'X';
        assert_eq!(Hello::parse(&bad), Err(WireError::Malformed("bad magic")));
        let mut bad = HELLO_7;
        bad[2] = 2;
        assert_eq!(
            Hello::parse(&bad),
            Err(WireError::Malformed("unsupported version"))
        );
        let mut long = HELLO_7.to_vec();
        long.push(0);
        assert!(matches!(Hello::parse(&long), Err(WireError::Malformed(_))));
        // A datagram is not a hello and vice versa.
        assert_eq!(
            Hello::parse(&DGRAM_1_TO_2[..12]),
            Err(WireError::UnknownType(2))
        );
        let mut as_dgram = [0u8; 20];
        as_dgram[..12].copy_from_slice(&HELLO_7);
        assert_eq!(Datagram::parse(&as_dgram), Err(WireError::UnknownType(1)));
    }

    proptest! {
        #[test]
        fn round_trips(from in any::<u64>(), to in any::<u64>(),
                       payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut out = BytesMut::new();
            Hello { from }.emit(&mut out);
            prop_assert_eq!(out.len(), HELLO_LEN);
            prop_assert_eq!(Hello::parse(&out), Ok(Hello { from }));
            let d = Datagram { from, to, payload: &payload };
            let mut out = BytesMut::new();
            d.emit(&mut out);
            prop_assert_eq!(out.len(), d.buffer_len());
            prop_assert_eq!(Datagram::parse(&out), Ok(d));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Hello::parse(&bytes);
            let _ = Datagram::parse(&bytes);
        }
    }
}
