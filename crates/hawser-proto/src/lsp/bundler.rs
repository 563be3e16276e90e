//! Gathers small messages written while a connection is busy into one bundle (binary codec):
//! one Data message, one sequence number, one checksum and one acknowledgement for many
//! application messages. The layout is `wire::bundle`.

use bytes::{Bytes, BytesMut};

use crate::wire::bundle;

/// How much buffer a bundler reserves at a time (several bundles' worth, so that freezing a
/// bundle rarely allocates; a frozen bundle keeps its part alive until it is acknowledged).
/// What is left of it is released when the connection has nothing unacknowledged
/// ([`release`](Bundler::release)), so an idle connection holds none.
const CHUNK: usize = 8 * 1024;

/// The bundle being gathered; sealed into the send window when it is full or when the
/// connection next sends.
#[derive(Debug, Default)]
pub(crate) struct Bundler {
    /// The first message, kept whole until a second arrives: a lone message goes out
    /// unbundled, exactly as if bundling were off.
    first: Option<Bytes>,
    /// The bundle's bytes once it holds two or more messages.
    buf: BytesMut,
    /// Messages gathered.
    count: usize,
    /// The bundle's encoded length so far.
    len: usize,
}

/// A sealed bundle: the payload of one Data message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Sealed {
    pub payload: Bytes,
    /// Whether `payload` is a bundle (two or more messages) rather than one plain message.
    pub bundled: bool,
    /// Application messages in it.
    pub count: usize,
}

impl Bundler {
    /// Whether nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a message of `len` bytes still fits a bundle of at most `max` bytes.
    pub fn fits(&self, len: usize, max: usize) -> bool {
        self.count == 0 || self.len + bundle::entry_len(len) <= max
    }

    /// Adds a message (the caller checked [`fits`](Self::fits)).
    pub fn push(&mut self, message: Bytes) {
        self.len += bundle::entry_len(message.len());
        self.count += 1;
        match self.count {
            1 => self.first = Some(message),
            _ => {
                if let Some(first) = self.first.take() {
                    self.reserve(self.len);
                    bundle::put_entry(&mut self.buf, &first);
                }
                self.reserve(bundle::entry_len(message.len()));
                bundle::put_entry(&mut self.buf, &message);
            }
        }
    }

    fn reserve(&mut self, n: usize) {
        if self.buf.capacity() - self.buf.len() < n {
            self.buf.reserve(n.max(CHUNK));
        }
    }

    /// Takes what was gathered, if anything.
    pub fn seal(&mut self) -> Option<Sealed> {
        let count = std::mem::take(&mut self.count);
        self.len = 0;
        match count {
            0 => None,
            1 => self.first.take().map(|payload| Sealed {
                payload,
                bundled: false,
                count: 1,
            }),
            _ => Some(Sealed {
                payload: self.buf.split().freeze(),
                bundled: true,
                count,
            }),
        }
    }

    /// Frees the spare buffer, if nothing is gathered (called when the connection is idle).
    pub fn release(&mut self) {
        if self.count == 0 && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }

    /// Drops what was gathered (the connection was lost).
    pub fn clear(&mut self) {
        self.first = None;
        self.buf.clear();
        self.count = 0;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_message_goes_out_plain() {
        let mut b = Bundler::default();
        assert!(b.seal().is_none());
        b.push(Bytes::from_static(b"solo"));
        assert_eq!(
            b.seal(),
            Some(Sealed {
                payload: Bytes::from_static(b"solo"),
                bundled: false,
                count: 1
            })
        );
        assert!(b.is_empty());
    }

    #[test]
    fn several_messages_make_a_valid_bundle() {
        let mut b = Bundler::default();
        for m in [&b"a"[..], b"", b"ccc"] {
            assert!(b.fits(m.len(), 100));
            b.push(Bytes::copy_from_slice(m));
        }
        let sealed = b.seal().expect("three messages");
        assert!(sealed.bundled);
        assert_eq!(sealed.count, 3);
        assert_eq!(bundle::validate(&sealed.payload), Ok(3));
        assert_eq!(&sealed.payload[..], &[1, b'a', 0, 3, b'c', b'c', b'c']);
    }

    #[test]
    fn fits_counts_the_prefixes() {
        let mut b = Bundler::default();
        // Anything fits an empty bundler (a lone message is sent plain).
        assert!(b.fits(5000, 10));
        b.push(Bytes::from(vec![0u8; 6])); // 7 bytes with its prefix
        assert!(b.fits(2, 10)); // 7 + 3
        assert!(!b.fits(3, 10)); // 7 + 4
        b.push(Bytes::from(vec![0u8; 2]));
        assert_eq!(b.seal().map(|s| s.payload.len()), Some(10));
    }

    #[test]
    fn release_frees_the_spare_buffer_only_when_empty() {
        let mut b = Bundler::default();
        b.push(Bytes::from_static(b"a"));
        b.push(Bytes::from_static(b"b"));
        b.release();
        assert!(b.buf.capacity() > 0, "gathered messages are kept");
        let sealed = b.seal().expect("two");
        assert!(b.buf.capacity() > 0, "a spare chunk is left after sealing");
        b.release();
        assert_eq!(b.buf.capacity(), 0);
        // The sealed bundle is unaffected.
        assert_eq!(&sealed.payload[..], &[1, b'a', 1, b'b']);
    }
}
