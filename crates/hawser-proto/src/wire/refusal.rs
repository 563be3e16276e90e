//! The refusal: what one end of a session handshake sends before it closes the transport, so
//! that the refused end can say why ("refused by peer: network id mismatch") instead of only
//! seeing the close. Stateless; where and how it travels is the session layer's business
//! (`docs/wire.md`, "Refusals", and `docs/security.md`).
//!
//! ```text
//! refusal = magic "hawser-refusal" (14 bytes) | version:u8 (0x01) | reason:u8
//!           | len:u8 | detail (len bytes of UTF-8, at most 128, no control characters)
//!           (17 to 145 bytes)
//! ```
//!
//! For the three mismatches ([`RefusalReason::VersionMismatch`],
//! [`RefusalReason::CipherMismatch`], [`RefusalReason::NetworkMismatch`]) the detail is the
//! refusing end's own value (its version in decimal, its cipher's name, its network id), so
//! the refused end can print both sides; for the other reasons it is a short explanation,
//! possibly empty. A reason code this version does not know decodes as
//! [`RefusalReason::Unknown`], so that later codes need no new version.
//!
//! A refusal is at most [`MAX_REFUSAL_LEN`] (145) bytes: shorter than any Noise handshake
//! message 2 or 3 (163 bytes and more), and it starts with a magic that no
//! plaintext hello starts with. [`is_refusal`] tells the two apart without decoding.
//! The decoder never panics, and rejects a wrong magic, an unknown version, a detail that is
//! too long, not UTF-8 or holds a control character, truncation and trailing bytes.

use std::fmt;

use bytes::BufMut;

use super::cursor::Reader;
use super::WireError;

/// The magic a refusal starts with.
pub const MAGIC: &[u8; 14] = b"hawser-refusal";
/// The version byte of this layout.
pub const VERSION: u8 = 0x01;
/// Longest detail, in bytes.
pub const MAX_DETAIL: usize = 128;
/// Bytes of a refusal before its detail: magic, version, reason, length.
pub const HEADER_LEN: usize = MAGIC.len() + 3;
/// Longest encoded refusal.
pub const MAX_REFUSAL_LEN: usize = HEADER_LEN + MAX_DETAIL;

/// Why one end refused the other. Codes follow the wire; a code this version does not know is
/// kept as [`Unknown`](Self::Unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// Code 1: the two ends speak different versions of the session protocol.
    VersionMismatch,
    /// Code 2: the two ends protect sessions differently (another Noise cipher, or plaintext
    /// against Noise).
    CipherMismatch,
    /// Code 3: the two ends belong to different networks (clusters).
    NetworkMismatch,
    /// Code 4: the refused end is not the identity the refusing end expected (a pin).
    PeerMismatch,
    /// Code 5: the refused end named a node that is not a member of the refusing end's
    /// cluster.
    NotMember,
    /// Code 6: a handshake message was larger than the refusing end accepts.
    TooLarge,
    /// Code 7: a handshake message or hello was not well formed.
    Malformed,
    /// Code 8: the refusing end has too many connections or handshakes in progress.
    Busy,
    /// Code 9: the refused end's identity signature does not verify.
    BadSignature,
    /// A code this version does not know (0, or 10 and above).
    Unknown(u8),
}

impl RefusalReason {
    /// The reason of wire code `code`.
    pub fn from_code(code: u8) -> RefusalReason {
        match code {
            1 => RefusalReason::VersionMismatch,
            2 => RefusalReason::CipherMismatch,
            3 => RefusalReason::NetworkMismatch,
            4 => RefusalReason::PeerMismatch,
            5 => RefusalReason::NotMember,
            6 => RefusalReason::TooLarge,
            7 => RefusalReason::Malformed,
            8 => RefusalReason::Busy,
            9 => RefusalReason::BadSignature,
            other => RefusalReason::Unknown(other),
        }
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            RefusalReason::VersionMismatch => 1,
            RefusalReason::CipherMismatch => 2,
            RefusalReason::NetworkMismatch => 3,
            RefusalReason::PeerMismatch => 4,
            RefusalReason::NotMember => 5,
            RefusalReason::TooLarge => 6,
            RefusalReason::Malformed => 7,
            RefusalReason::Busy => 8,
            RefusalReason::BadSignature => 9,
            RefusalReason::Unknown(code) => code,
        }
    }

    /// Whether the detail of this reason is the refusing end's own value (the mismatches).
    pub fn is_mismatch(self) -> bool {
        matches!(
            self,
            RefusalReason::VersionMismatch
                | RefusalReason::CipherMismatch
                | RefusalReason::NetworkMismatch
        )
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::VersionMismatch => f.write_str("session protocol version mismatch"),
            RefusalReason::CipherMismatch => f.write_str("cipher mismatch"),
            RefusalReason::NetworkMismatch => f.write_str("network id mismatch"),
            RefusalReason::PeerMismatch => f.write_str("not the expected identity"),
            RefusalReason::NotMember => f.write_str("not a member"),
            RefusalReason::TooLarge => f.write_str("handshake message too large"),
            RefusalReason::Malformed => f.write_str("malformed handshake"),
            RefusalReason::Busy => f.write_str("too many connections in progress"),
            RefusalReason::BadSignature => f.write_str("identity signature does not verify"),
            RefusalReason::Unknown(code) => write!(f, "unknown reason {code}"),
        }
    }
}

/// A refusal: a reason and a short detail (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Refusal {
    reason: RefusalReason,
    detail: String,
}

impl Refusal {
    /// A refusal for `reason` with `detail`, made fit to send: cut to [`MAX_DETAIL`] bytes (at
    /// a character boundary), each control character replaced by a space.
    pub fn new(reason: RefusalReason, detail: &str) -> Refusal {
        let mut out = String::with_capacity(detail.len().min(MAX_DETAIL));
        for c in detail.chars() {
            let c = if c.is_control() { ' ' } else { c };
            if out.len() + c.len_utf8() > MAX_DETAIL {
                break;
            }
            out.push(c);
        }
        Refusal {
            reason,
            detail: out,
        }
    }

    /// Why.
    pub fn reason(&self) -> RefusalReason {
        self.reason
    }

    /// The detail: the refusing end's value for a mismatch, otherwise a short explanation
    /// (possibly empty).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The number of bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.detail.len()
    }

    /// Appends the encoded refusal to `out`.
    pub fn emit(&self, out: &mut impl BufMut) {
        out.put_slice(MAGIC);
        out.put_u8(VERSION);
        out.put_u8(self.reason.code());
        // `new` and `parse` bound the detail to MAX_DETAIL (< 256) bytes.
        out.put_u8(self.detail.len() as u8);
        out.put_slice(self.detail.as_bytes());
    }

    /// The encoded refusal.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buffer_len());
        self.emit(&mut out);
        out
    }

    /// Decodes a refusal; never panics.
    ///
    /// # Errors
    /// [`WireError::Malformed`] for a wrong magic, an unknown version, a detail over
    /// [`MAX_DETAIL`], not UTF-8 or with a control character, or trailing bytes;
    /// [`WireError::Truncated`].
    pub fn parse(bytes: &[u8]) -> Result<Refusal, WireError> {
        let mut r = Reader(bytes);
        if r.array::<14>()? != *MAGIC {
            return Err(WireError::Malformed("not a refusal"));
        }
        if r.u8()? != VERSION {
            return Err(WireError::Malformed("unknown refusal version"));
        }
        let reason = RefusalReason::from_code(r.u8()?);
        let len = r.u8()?;
        if usize::from(len) > MAX_DETAIL {
            return Err(WireError::Malformed("refusal detail too long"));
        }
        let detail = std::str::from_utf8(r.bytes(u64::from(len))?)
            .map_err(|_| WireError::Malformed("refusal detail is not UTF-8"))?;
        if detail.chars().any(char::is_control) {
            return Err(WireError::Malformed("control character in refusal detail"));
        }
        if !r.is_empty() {
            return Err(WireError::Malformed("trailing bytes after refusal"));
        }
        Ok(Refusal {
            reason,
            detail: detail.to_owned(),
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Whether `message` is meant as a refusal: it starts with [`MAGIC`] and is at most
/// [`MAX_REFUSAL_LEN`] bytes. Decode it with [`Refusal::parse`].
pub fn is_refusal(message: &[u8]) -> bool {
    message.len() <= MAX_REFUSAL_LEN && message.starts_with(MAGIC)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn golden_bytes() {
        let r = Refusal::new(RefusalReason::NetworkMismatch, "blue");
        let mut expected = b"hawser-refusal".to_vec();
        expected.extend_from_slice(&[0x01, 0x03, 0x04, b'b', b'l', b'u', b'e']);
        assert_eq!(r.to_vec(), expected);
        assert_eq!(r.buffer_len(), expected.len());
        assert_eq!(Refusal::parse(&expected).unwrap(), r);
        assert_eq!(r.to_string(), "network id mismatch (blue)");
        let empty = Refusal::new(RefusalReason::PeerMismatch, "");
        assert_eq!(&empty.to_vec()[14..], &[0x01, 0x04, 0x00]);
        assert_eq!(empty.to_string(), "not the expected identity");
    }

    #[test]
    fn emit_writes_exactly_buffer_len_over_a_filled_buffer() {
        let r = Refusal::new(RefusalReason::Busy, "64 pending");
        let mut out = vec![0xa5; 3];
        r.emit(&mut out);
        assert_eq!(out.len(), 3 + r.buffer_len());
        assert_eq!(&out[..3], &[0xa5; 3]);
        assert_eq!(Refusal::parse(&out[3..]).unwrap(), r);
    }

    #[test]
    fn every_code_round_trips_and_unknown_codes_decode() {
        for code in 0..=u8::MAX {
            let reason = RefusalReason::from_code(code);
            assert_eq!(reason.code(), code);
            let r = Refusal::new(reason, "x");
            assert_eq!(Refusal::parse(&r.to_vec()).unwrap(), r);
        }
        assert_eq!(RefusalReason::from_code(0), RefusalReason::Unknown(0));
        assert_eq!(RefusalReason::from_code(200), RefusalReason::Unknown(200));
        assert_eq!(
            RefusalReason::Unknown(200).to_string(),
            "unknown reason 200"
        );
    }

    #[test]
    fn new_cuts_long_details_at_a_char_boundary_and_blanks_control_characters() {
        let long = "é".repeat(100); // 200 bytes
        let r = Refusal::new(RefusalReason::Malformed, &long);
        assert_eq!(r.detail().len(), MAX_DETAIL);
        assert_eq!(r.to_vec().len(), MAX_REFUSAL_LEN);
        let r = Refusal::new(RefusalReason::Malformed, "a\nb\x1b[31m");
        assert_eq!(r.detail(), "a b [31m");
    }

    #[test]
    fn malformed_refusals_are_errors() {
        let good = Refusal::new(RefusalReason::TooLarge, "ab").to_vec();
        for n in 0..good.len() {
            assert_eq!(Refusal::parse(&good[..n]), Err(WireError::Truncated), "{n}");
        }
        let mut bad_magic = good.clone();
        bad_magic[0] = b'H';
        assert!(Refusal::parse(&bad_magic).is_err());
        let mut bad_version = good.clone();
        bad_version[14] = 2;
        assert!(Refusal::parse(&bad_version).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Refusal::parse(&trailing).is_err());
        let mut too_long = good[..HEADER_LEN].to_vec();
        too_long[16] = 129;
        too_long.extend_from_slice(&[b'a'; 129]);
        assert!(Refusal::parse(&too_long).is_err());
        let mut not_utf8 = good.clone();
        not_utf8[17] = 0xff;
        assert!(Refusal::parse(&not_utf8).is_err());
        let mut control = good;
        control[17] = b'\n';
        assert!(Refusal::parse(&control).is_err());
    }

    #[test]
    fn is_refusal_needs_the_magic_and_a_short_message() {
        let r = Refusal::new(RefusalReason::Malformed, &"a".repeat(MAX_DETAIL)).to_vec();
        assert!(is_refusal(&r));
        let mut longer = r.clone();
        longer.push(b'a');
        assert!(!is_refusal(&longer));
        assert!(!is_refusal(b"hawser-session\x00\x02\x01\x01n"));
        assert!(!is_refusal(b"hawser-refusa"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Refusal::parse(&bytes);
            let _ = is_refusal(&bytes);
        }

        #[test]
        fn parse_never_panics_after_the_magic(
            tail in proptest::collection::vec(any::<u8>(), 0..160),
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            if let Ok(r) = Refusal::parse(&bytes) {
                prop_assert_eq!(r.to_vec(), bytes);
            }
        }

        #[test]
        fn round_trip(code in any::<u8>(), detail in "\\PC{0,60}") {
            let r = Refusal::new(RefusalReason::from_code(code), &detail);
            let bytes = r.to_vec();
            prop_assert_eq!(bytes.len(), r.buffer_len());
            prop_assert!(is_refusal(&bytes));
            prop_assert_eq!(Refusal::parse(&bytes).unwrap(), r);
        }
    }
}
