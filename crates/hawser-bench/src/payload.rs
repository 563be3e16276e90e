//! Benchmark messages: an index in the first 8 bytes (little-endian), then a filler byte derived
//! from the index. Checking a message costs a few comparisons, whatever its size.

use bytes::{BufMut, Bytes, BytesMut};

/// The smallest message: the index alone.
pub const MIN_SIZE: usize = 8;

/// Message number `index`, `size` bytes long (at least [`MIN_SIZE`]).
pub fn make(index: u64, size: usize) -> Bytes {
    let size = size.max(MIN_SIZE);
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u64_le(index);
    buf.put_bytes(filler(index), size - MIN_SIZE);
    buf.freeze()
}

/// The index a message carries, if it is long enough to carry one.
pub fn index_of(msg: &[u8]) -> Option<u64> {
    let head: [u8; MIN_SIZE] = msg.get(..MIN_SIZE)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// Checks that `msg` is message number `expected` of `size` bytes: its index, its length, and
/// its last byte.
pub fn check(expected: u64, size: usize, msg: &[u8]) -> Result<(), String> {
    let size = size.max(MIN_SIZE);
    match index_of(msg) {
        Some(i) if i == expected => {}
        Some(i) => {
            return Err(format!(
                "out of order: expected message {expected}, got {i}"
            ))
        }
        None => return Err(format!("message {expected}: only {} bytes", msg.len())),
    }
    if msg.len() != size {
        return Err(format!(
            "message {expected}: {} bytes, expected {size}",
            msg.len()
        ));
    }
    if size > MIN_SIZE && msg[size - 1] != filler(expected) {
        return Err(format!("message {expected}: content damaged"));
    }
    Ok(())
}

fn filler(index: u64) -> u8 {
    (index as u8) ^ 0x5a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let m = make(7, 64);
        assert_eq!(m.len(), 64);
        assert_eq!(check(7, 64, &m), Ok(()));
        assert!(check(8, 64, &m).is_err());
        assert!(check(7, 65, &m).is_err());
        let mut bad = m.to_vec();
        bad[63] ^= 1;
        assert!(check(7, 64, &bad).is_err());
        assert_eq!(index_of(&make(u64::MAX, 8)), Some(u64::MAX));
        assert_eq!(index_of(b"short"), None);
    }
}
