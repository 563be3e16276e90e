//! The 16-bit LSP checksum of spec section 1.2.
//!
//! Only Data messages carry a checksum (others carry 0). It covers the connection id, the sequence
//! number, the declared size and the payload, but not the message type. The one quirk: each of the
//! three integer fields is first truncated to 32 bits and its two 16-bit halves are added with a
//! *wrapping* 16-bit addition (the carry is lost, unlike a true one's-complement sum). The
//! reference implementation accepts only this variant, so hawser reproduces it exactly.

/// Computes the LSP checksum of a Data message (spec 1.2).
///
/// `conn`, `seq` and `size` are the message's fields as the Go peer sees them (`int64`); callers
/// holding hawser's `u64` identifiers pass them with `as i64`, which keeps the low 32 bits that
/// matter. `payload` must already be truncated to `size` bytes (spec 3.3); this function does not
/// look at `size` to cut it.
///
/// Steps: each of `conn`, `seq`, `size` truncated to `u32`, low half + high half as a wrapping
/// `u16` addition; the payload as little-endian 16-bit words (an odd last byte padded with a zero
/// byte); the four summed, folded (`(s >> 16) + (s & 0xFFFF)` until it fits 16 bits) and inverted.
///
/// The payload is summed in a `u64`, so no payload length can overflow it. (A Go peer summing in
/// 32 bits could only differ for payloads over 128 KiB, which cannot reach it anyway.)
///
/// ```
/// use hawser_proto::wire::checksum::compute;
/// assert_eq!(compute(1, 43, 5, b"hello"), 11659);
/// ```
#[must_use]
pub fn compute(conn: i64, seq: i64, size: i64, payload: &[u8]) -> u16 {
    let header =
        u64::from(field_sum(conn)) + u64::from(field_sum(seq)) + u64::from(field_sum(size));
    let mut sum = header + payload_sum(payload);
    while sum > 0xFFFF {
        sum = (sum >> 16) + (sum & 0xFFFF);
    }
    // The loop leaves `sum <= 0xFFFF`, so the cast is lossless.
    !(sum as u16)
}

/// Step 1 for one integer field: truncate to 32 bits, add the halves as wrapping 16-bit numbers.
fn field_sum(v: i64) -> u16 {
    let v = v as u32;
    (v as u16).wrapping_add((v >> 16) as u16)
}

/// Step 2: the payload's little-endian 16-bit words, summed.
///
/// Reads 32-bit little-endian words instead of 16-bit ones, which halves the additions without
/// changing the folded result: a 32-bit word `lo + hi·2^16` is congruent to `lo + hi` modulo
/// 0xFFFF (because 2^16 ≡ 1), and the fold of a non-negative sum is the unique value in
/// `1..=0xFFFF` of its class (or 0 when the sum is 0, i.e. in both readings exactly when every
/// byte is zero). The `reference` test checks this against the word-by-word definition.
fn payload_sum(payload: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut quads = payload.chunks_exact(4);
    for q in &mut quads {
        sum += u64::from(u32::from_le_bytes([q[0], q[1], q[2], q[3]]));
    }
    match *quads.remainder() {
        [] => {}
        [a] => sum += u64::from(a),
        [a, b] => sum += u64::from(u16::from_le_bytes([a, b])),
        [a, b, c] => sum += u64::from(u16::from_le_bytes([a, b])) + u64::from(c),
        // `chunks_exact(4)` leaves at most 3 bytes.
        _ => {}
    }
    sum
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The spec's definition, word by word, for comparison with the optimised version.
    fn reference(conn: i64, seq: i64, size: i64, payload: &[u8]) -> u16 {
        let half = |v: i64| {
            let v = v as u32;
            u32::from((v as u16).wrapping_add((v >> 16) as u16))
        };
        let mut words = 0u64;
        for pair in payload.chunks(2) {
            let lo = u64::from(pair[0]);
            let hi = pair.get(1).map_or(0, |&b| u64::from(b));
            words += lo | (hi << 8);
        }
        let mut sum = u64::from(half(conn) + half(seq) + half(size)) + words;
        while sum > 0xFFFF {
            sum = (sum >> 16) + (sum & 0xFFFF);
        }
        !(sum as u16)
    }

    /// Every test vector of spec section 1.2, in the table's order.
    const VECTORS: &[(i64, i64, i64, &[u8], u16)] = &[
        (1, 1, 5, b"hello", 11701),
        (7, 1, 5, b"hello", 11695),
        (1, 43, 5, b"hello", 11659),
        (1, 131071, 5, b"hello", 11702),
        (1, 14, 0, b"", 65520),
        (1, 44, 0, b"", 65490),
        (3, 42, 3, &[1, 2, 3], 64971),
        (65535, 65535, 65535, &[0xff, 0xff], 0),
        (1, 131071, 1, b"x", 65413),
        (70000, 1, 1, b"x", 60948),
        (-1, 1, 1, b"x", 65414),
    ];

    #[test]
    fn spec_vectors() {
        for &(conn, seq, size, payload, want) in VECTORS {
            assert_eq!(
                compute(conn, seq, size, payload),
                want,
                "compute({conn}, {seq}, {size}, {payload:?})"
            );
            assert_eq!(
                reference(conn, seq, size, payload),
                want,
                "reference vector"
            );
        }
    }

    #[test]
    fn field_halves_wrap_as_16_bit() {
        // 0xFFFF_FFFF: halves 0xFFFF + 0xFFFF wrap to 0xFFFE (a one's-complement add gives 0xFFFF).
        assert_eq!(field_sum(-1), 0xFFFE);
        assert_eq!(field_sum(0x1_0001), 2);
        // Only the low 32 bits count.
        assert_eq!(field_sum(0x7_0000_0001), 1);
    }

    #[test]
    fn message_data_uses_it() {
        use crate::wire::{ConnId, Message, SeqNum};
        let m = Message::data(ConnId(1), SeqNum(43), bytes::Bytes::from_static(b"hello"));
        assert_eq!((m.size, m.checksum), (5, 11659));
    }

    #[test]
    fn long_payload_does_not_overflow() {
        let payload = vec![0xffu8; 1 << 20];
        let n = payload.len() as i64;
        assert_eq!(compute(1, 2, n, &payload), reference(1, 2, n, &payload));
    }

    proptest! {
        #[test]
        fn matches_reference(
            conn in any::<i64>(),
            seq in any::<i64>(),
            size in any::<i64>(),
            payload in proptest::collection::vec(any::<u8>(), 0..2100),
        ) {
            prop_assert_eq!(compute(conn, seq, size, &payload), reference(conn, seq, size, &payload));
        }

        #[test]
        fn only_low_32_bits_of_fields_count(
            conn in any::<i64>(),
            seq in any::<i64>(),
            hi in any::<u32>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let size = payload.len() as i64;
            let shifted = conn ^ (i64::from(hi) << 32);
            prop_assert_eq!(compute(conn, seq, size, &payload), compute(shifted, seq, size, &payload));
        }
    }
}
