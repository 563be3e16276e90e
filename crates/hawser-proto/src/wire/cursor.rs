//! What the binary formats share: LEB128 varints and a bounds-checked reader.

use bytes::{BufMut, BytesMut};

use super::WireError;

/// The largest encoding of a `u64` varint.
pub(crate) const MAX_VARINT_LEN: usize = 10;

/// Writes `v` as an unsigned LEB128 varint: 7 bits per byte, least significant first, the high
/// bit set on every byte but the last.
pub(crate) fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// The number of bytes [`put_varint`] writes for `v` (1..=10).
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A cursor over the rest of the input; every read checks the length first, so no read can
/// panic, whatever the bytes.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// Whether everything was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.0.split_first().ok_or(WireError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array::<2>()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let b = self.bytes(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    pub(crate) fn bytes(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        if len > self.0.len() {
            return Err(WireError::Truncated);
        }
        let (b, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(b)
    }

    /// An unsigned LEB128 varint: at most 10 bytes, no overflow of `u64`, minimal encoding only
    /// (so every value has exactly one encoding).
    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let b = self.u8()?;
            if i == MAX_VARINT_LEN - 1 {
                if b & 0x80 != 0 {
                    return Err(WireError::Malformed("varint longer than 10 bytes"));
                }
                if b > 1 {
                    return Err(WireError::Malformed("varint overflows u64"));
                }
            }
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(WireError::Malformed("varint not minimal"));
                }
                return Ok(v);
            }
        }
        // The last iteration always returns.
        Err(WireError::Malformed("varint longer than 10 bytes"))
    }
}
