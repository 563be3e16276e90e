//! The stream header: the first bytes an opener writes on every stream of a session, saying
//! which protocol the stream carries and at which version. Stateless; protocol ids are plain
//! `u32` here (the session layer wraps them).
//!
//! ```text
//! header = protocol:u32 BE | version:u16 BE      (6 bytes, then the protocol's own bytes)
//! ```
//!
//! Protocol [`REFUSAL_PROTOCOL`] (0) is reserved: its stream, at [`REFUSAL_VERSION`], carries
//! one refusal (`wire::refusal`) and ends. The acceptor of a stream reads exactly
//! [`STREAM_HEADER_LEN`] bytes, so every 6 bytes are a header; whether its protocol and
//! version were agreed is the session's to check.
//!
//! On a node's application stream (after the header, the opener's framed hello,
//! `wire::node`), the acceptor answers with one [`StreamStatus`] byte:
//!
//! ```text
//! status = 0x00 accepted | 0x01 no handler | 0x02 overloaded
//! ```
//!
//! After `accepted` the stream carries the application's bytes both ways; after another
//! status the acceptor resets it.

use bytes::BufMut;

use super::WireError;

/// Length of an encoded [`StreamHeader`].
pub const STREAM_HEADER_LEN: usize = 6;

/// The reserved protocol id of the stream that carries a refusal.
pub const REFUSAL_PROTOCOL: u32 = 0;

/// The header version of a refusal stream.
pub const REFUSAL_VERSION: u16 = 1;

mod field {
    use std::ops::Range;
    pub const PROTOCOL: Range<usize> = 0..4;
    pub const VERSION: Range<usize> = 4..6;
}

/// The header of one stream: its protocol and the version both ends agreed for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamHeader {
    /// The protocol id.
    pub protocol: u32,
    /// The protocol's version.
    pub version: u16,
}

impl StreamHeader {
    /// The header of the refusal stream.
    pub const REFUSAL: StreamHeader = StreamHeader {
        protocol: REFUSAL_PROTOCOL,
        version: REFUSAL_VERSION,
    };

    /// Parses a header (exactly [`STREAM_HEADER_LEN`] bytes).
    ///
    /// # Errors
    /// [`WireError::Truncated`] for fewer bytes, [`WireError::Malformed`] for more; never
    /// panics.
    pub fn parse(bytes: &[u8]) -> Result<StreamHeader, WireError> {
        let head: &[u8; STREAM_HEADER_LEN] = bytes.first_chunk().ok_or(WireError::Truncated)?;
        if bytes.len() > STREAM_HEADER_LEN {
            return Err(WireError::Malformed("trailing bytes after stream header"));
        }
        Ok(StreamHeader::from_bytes(*head))
    }

    /// The header these 6 bytes encode (every 6 bytes encode one).
    pub fn from_bytes(bytes: [u8; STREAM_HEADER_LEN]) -> StreamHeader {
        let [p0, p1, p2, p3, v0, v1] = bytes;
        StreamHeader {
            protocol: u32::from_be_bytes([p0, p1, p2, p3]),
            version: u16::from_be_bytes([v0, v1]),
        }
    }

    /// The encoded header.
    pub fn to_bytes(&self) -> [u8; STREAM_HEADER_LEN] {
        let mut out = [0u8; STREAM_HEADER_LEN];
        out[field::PROTOCOL].copy_from_slice(&self.protocol.to_be_bytes());
        out[field::VERSION].copy_from_slice(&self.version.to_be_bytes());
        out
    }

    /// Appends the encoded header ([`STREAM_HEADER_LEN`] bytes) to `out`.
    pub fn emit(&self, out: &mut impl BufMut) {
        out.put_slice(&self.to_bytes());
    }

    /// The encoded length, [`STREAM_HEADER_LEN`].
    pub fn buffer_len(&self) -> usize {
        STREAM_HEADER_LEN
    }
}

/// Length of an encoded [`StreamStatus`].
pub const STREAM_STATUS_LEN: usize = 1;

/// What a node accepting an application stream answers its opener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamStatus {
    /// The stream was handed to an acceptor.
    Accepted,
    /// Nobody accepts streams of the protocol.
    NoHandler,
    /// The acceptor's backlog is full.
    Overloaded,
}

impl StreamStatus {
    /// The status's byte.
    pub fn byte(self) -> u8 {
        match self {
            StreamStatus::Accepted => 0x00,
            StreamStatus::NoHandler => 0x01,
            StreamStatus::Overloaded => 0x02,
        }
    }

    /// The status of a byte.
    ///
    /// # Errors
    /// [`WireError::UnknownType`] for a byte that is no status.
    pub fn from_byte(byte: u8) -> Result<StreamStatus, WireError> {
        match byte {
            0x00 => Ok(StreamStatus::Accepted),
            0x01 => Ok(StreamStatus::NoHandler),
            0x02 => Ok(StreamStatus::Overloaded),
            other => Err(WireError::UnknownType(u64::from(other))),
        }
    }

    /// Parses a status (exactly [`STREAM_STATUS_LEN`] byte).
    ///
    /// # Errors
    /// [`WireError::Truncated`] for no byte, [`WireError::Malformed`] for more,
    /// [`WireError::UnknownType`] for a byte that is no status; never panics.
    pub fn parse(bytes: &[u8]) -> Result<StreamStatus, WireError> {
        match bytes {
            [] => Err(WireError::Truncated),
            [b] => StreamStatus::from_byte(*b),
            _ => Err(WireError::Malformed("trailing bytes after stream status")),
        }
    }

    /// The encoded status.
    pub fn to_bytes(self) -> [u8; STREAM_STATUS_LEN] {
        [self.byte()]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Protocol 0x0102_0304, version 0x0506.
    static HEADER: [u8; 6] = [1, 2, 3, 4, 5, 6];

    #[test]
    fn golden_bytes() {
        let h = StreamHeader {
            protocol: 0x0102_0304,
            version: 0x0506,
        };
        assert_eq!(StreamHeader::parse(&HEADER), Ok(h));
        assert_eq!(StreamHeader::from_bytes(HEADER), h);
        assert_eq!(h.to_bytes(), HEADER);
        let mut out = vec![0xa5];
        h.emit(&mut out);
        assert_eq!(out[0], 0xa5, "emit must append");
        assert_eq!(out[1..], HEADER);
        assert_eq!(h.buffer_len(), STREAM_HEADER_LEN);
        // The refusal stream's header, and node messages (protocol 1, version 1).
        assert_eq!(StreamHeader::REFUSAL.to_bytes(), [0, 0, 0, 0, 0, 1]);
        let node = StreamHeader {
            protocol: 1,
            version: 1,
        };
        assert_eq!(node.to_bytes(), [0, 0, 0, 1, 0, 1]);
    }

    #[test]
    fn malformed_input_is_refused() {
        for n in 0..STREAM_HEADER_LEN {
            assert_eq!(StreamHeader::parse(&HEADER[..n]), Err(WireError::Truncated));
        }
        assert!(matches!(
            StreamHeader::parse(&[&HEADER[..], &[0]].concat()),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn stream_status_golden_bytes_and_malformed_input() {
        for (status, byte) in [
            (StreamStatus::Accepted, 0),
            (StreamStatus::NoHandler, 1),
            (StreamStatus::Overloaded, 2),
        ] {
            assert_eq!(status.to_bytes(), [byte]);
            assert_eq!(StreamStatus::parse(&[byte]), Ok(status));
            assert_eq!(StreamStatus::from_byte(status.byte()), Ok(status));
        }
        assert_eq!(StreamStatus::parse(&[]), Err(WireError::Truncated));
        assert_eq!(StreamStatus::parse(&[3]), Err(WireError::UnknownType(3)));
        assert!(matches!(
            StreamStatus::parse(&[0, 0]),
            Err(WireError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn stream_statuses_round_trip_or_are_refused(b in any::<u8>()) {
            match StreamStatus::from_byte(b) {
                Ok(s) => prop_assert_eq!(s.to_bytes(), [b]),
                Err(e) => {
                    prop_assert!(b > 2);
                    prop_assert_eq!(e, WireError::UnknownType(u64::from(b)));
                }
            }
        }

        #[test]
        fn round_trips(protocol in any::<u32>(), version in any::<u16>()) {
            let h = StreamHeader { protocol, version };
            prop_assert_eq!(StreamHeader::parse(&h.to_bytes()), Ok(h));
            let mut out = Vec::new();
            h.emit(&mut out);
            prop_assert_eq!(&out[..], &h.to_bytes()[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(h) = StreamHeader::parse(&bytes) {
                prop_assert_eq!(&h.to_bytes()[..], &bytes[..]);
            }
        }
    }
}
