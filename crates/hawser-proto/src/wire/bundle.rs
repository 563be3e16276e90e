//! The payload of a bundled Data message (binary codec only): several application messages that
//! share one LSP sequence number, one checksum and one acknowledgement.
//!
//! ```text
//! bundle = entry entry+          (at least two entries; one message is sent unbundled)
//! entry  = len:varint | bytes[len]
//! ```
//!
//! The varints are those of the binary codec (LEB128, at most 10 bytes, minimal). A bundle is
//! carried by a Data frame with the `BUNDLE` flag (`docs/wire.md` 2.2); the checksum and the
//! spec-3.3 size check cover the whole bundle, so a bundle is checked as one message and then
//! split. [`validate`] is the only parser; [`split_next`] relies on a bundle it accepted.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::cursor::{put_varint, varint_len, Reader};
use super::WireError;

/// The bytes one entry of `len` bytes takes in a bundle.
pub fn entry_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Appends one entry (`message`, length-prefixed) to a bundle being built.
pub fn put_entry(out: &mut BytesMut, message: &[u8]) {
    out.reserve(entry_len(message.len()));
    put_varint(out, message.len() as u64);
    out.put_slice(message);
}

/// Checks that `bundle` is a well-formed bundle and returns how many messages it holds.
///
/// # Errors
/// [`WireError::Truncated`] when an entry runs past the end; [`WireError::Malformed`] for a bad
/// varint or fewer than two entries. Never panics, whatever the bytes.
pub fn validate(bundle: &[u8]) -> Result<usize, WireError> {
    let mut r = Reader(bundle);
    let mut count = 0usize;
    while !r.is_empty() {
        let len = r.varint()?;
        r.bytes(len)?;
        count += 1;
    }
    if count < 2 {
        return Err(WireError::Malformed("bundle of fewer than two messages"));
    }
    Ok(count)
}

/// Takes the first message off a bundle that [`validate`] accepted, leaving the rest in
/// `bundle` (without copying: the message shares `bundle`'s buffer). `None` once it is empty,
/// or if the rest is not well-formed (which a validated bundle never is).
#[inline]
pub fn split_next(bundle: &mut Bytes) -> Option<Bytes> {
    // Fast path: a length below 128 is one byte (every message `bundle_max` allows by default).
    if let Some(&len) = bundle.first() {
        if len < 0x80 && usize::from(len) < bundle.len() {
            let message = bundle.slice(1..1 + usize::from(len));
            bundle.advance(1 + usize::from(len));
            return Some(message);
        }
    }
    let mut r = Reader(bundle);
    let len = r.varint().ok()?;
    let header = bundle.len() - r.0.len();
    let len = usize::try_from(len).ok()?;
    if len > r.0.len() {
        return None;
    }
    let mut message = bundle.split_to(header + len);
    message.advance(header);
    Some(message)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn build(messages: &[&[u8]]) -> Bytes {
        let mut b = BytesMut::new();
        for m in messages {
            put_entry(&mut b, m);
        }
        b.freeze()
    }

    fn split_all(mut b: Bytes) -> Vec<Bytes> {
        std::iter::from_fn(|| split_next(&mut b)).collect()
    }

    #[test]
    fn known_bytes() {
        let b = build(&[b"hi", b"", b"abc"]);
        assert_eq!(&b[..], &[2, b'h', b'i', 0, 3, b'a', b'b', b'c']);
        assert_eq!(validate(&b), Ok(3));
        assert_eq!(split_all(b), vec![&b"hi"[..], &b""[..], &b"abc"[..]]);
    }

    #[test]
    fn entry_len_counts_the_prefix() {
        assert_eq!(entry_len(0), 1);
        assert_eq!(entry_len(127), 128);
        assert_eq!(entry_len(128), 130);
    }

    #[test]
    fn malformed_bundles_are_rejected() {
        assert_eq!(
            validate(&[]),
            Err(WireError::Malformed("bundle of fewer than two messages"))
        );
        assert_eq!(
            validate(&[1, 7]),
            Err(WireError::Malformed("bundle of fewer than two messages"))
        );
        assert_eq!(validate(&[1, 7, 2, 1]), Err(WireError::Truncated));
        assert_eq!(validate(&[1, 7, 0x80]), Err(WireError::Truncated));
        assert_eq!(
            validate(&[1, 7, 0x80, 0x00]),
            Err(WireError::Malformed("varint not minimal"))
        );
    }

    proptest! {
        #[test]
        fn round_trip(messages in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 2..20)) {
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let b = build(&refs);
            let expected: usize = refs.iter().map(|m| entry_len(m.len())).sum();
            prop_assert_eq!(b.len(), expected);
            prop_assert_eq!(validate(&b), Ok(messages.len()));
            let split = split_all(b);
            prop_assert_eq!(split.len(), messages.len());
            for (got, want) in split.iter().zip(&messages) {
                prop_assert_eq!(&got[..], &want[..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let valid = validate(&bytes);
            let mut b = Bytes::from(bytes);
            let total = b.len();
            let mut taken = 0usize;
            let mut n = 0usize;
            while let Some(m) = split_next(&mut b) {
                taken += entry_len(m.len());
                n += 1;
            }
            prop_assert!(taken <= total);
            // Whatever validate accepts, split_next takes whole.
            if let Ok(count) = valid {
                prop_assert_eq!(count, n);
                prop_assert_eq!(taken, total);
            }
        }
    }
}
