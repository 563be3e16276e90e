//! Sealing and opening node datagrams, sans-IO, for nodes running Noise sessions (the format
//! is `wire::node`'s [`SealedDatagram`]).
//!
//! Each direction has its own key: the node that dials a session draws a random
//! [`DATAGRAM_KEY_LEN`]-byte key, sends it inside the encrypted session (a
//! `FrameKind::DatagramKey` frame on the messages stream, after the hello), and seals its
//! datagrams to that peer with it ([`SealKey`]). The accepting node keeps it as the peer's
//! [`OpenKey`]. A new session replaces both ends' key. Drawing the key is the caller's.
//!
//! Sealing uses the session's cipher (`ring`: ChaCha20-Poly1305, or AES-256-GCM for
//! `Security::NoiseAesGcm`), nonce = 4 zero bytes then a 64-bit counter carried in clear,
//! associated data = the 28-byte envelope header (`SealedDatagram::header`: sender, receiver,
//! counter). Opening authenticates first, then checks the counter against a 64-wide sliding
//! [`ReplayWindow`].

use bytes::{Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};

use crate::wire::node::{SealedDatagram, DATAGRAM_KEY_LEN, SEALED_TAG_LEN};

use super::cipher::NoiseCipher;
use super::replay::ReplayWindow;

/// Why a sealed datagram was not opened: one of two, which a receiver counts apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Authentication failed: another key, or altered bytes.
    #[error("sealed datagram forged or altered")]
    Forged,
    /// The counter was already seen, or is older than the window.
    #[error("sealed datagram replayed")]
    Replayed,
}

fn aead_key(key: &[u8; DATAGRAM_KEY_LEN], cipher: NoiseCipher) -> LessSafeKey {
    // Both ciphers take exactly 32-byte keys, and `KeyBytes` is 32 bytes.
    LessSafeKey::new(UnboundKey::new(cipher.algorithm(), key).expect("32-byte key"))
}

/// The nonce of `d` (`wire::node`'s layout); each key seals each counter once.
fn nonce(d: &SealedDatagram<'_>) -> Nonce {
    Nonce::assume_unique_for_key(d.nonce())
}

/// The sending half of one direction: the key and the next counter.
pub struct SealKey {
    key: LessSafeKey,
    next: u64,
}

impl SealKey {
    /// The sending half of `key` for `cipher`, at counter 0.
    pub fn new(key: &[u8; DATAGRAM_KEY_LEN], cipher: NoiseCipher) -> SealKey {
        SealKey {
            key: aead_key(key, cipher),
            next: 0,
        }
    }

    /// Moves the next counter to `counter` (the fuzz targets seal at chosen counters).
    #[cfg(fuzzing)]
    pub fn skip_to(&mut self, counter: u64) {
        self.next = counter;
    }

    /// The sealed datagram from `from` to `to` carrying `payload`; `None` once the counter
    /// is exhausted (2^64 − 1 datagrams: a new session brings a new key).
    pub fn seal(&mut self, from: u64, to: u64, payload: &[u8]) -> Option<Bytes> {
        let counter = self.next;
        self.next = self.next.checked_add(1)?;
        let mut sealed = Vec::with_capacity(payload.len() + SEALED_TAG_LEN);
        sealed.extend_from_slice(payload);
        let d = SealedDatagram {
            from,
            to,
            counter,
            sealed: &[],
        };
        let header = d.header();
        self.key
            .seal_in_place_append_tag(nonce(&d), Aad::from(header), &mut sealed)
            .ok()?;
        let d = SealedDatagram {
            sealed: &sealed,
            ..d
        };
        let mut out = BytesMut::with_capacity(d.buffer_len());
        d.emit(&mut out);
        Some(out.freeze())
    }
}

/// The receiving half of one direction: the key and its replay window.
pub struct OpenKey {
    key: LessSafeKey,
    window: ReplayWindow,
}

impl OpenKey {
    /// The receiving half of `key` for `cipher`, with an empty window.
    pub fn new(key: &[u8; DATAGRAM_KEY_LEN], cipher: NoiseCipher) -> OpenKey {
        OpenKey {
            key: aead_key(key, cipher),
            window: ReplayWindow::default(),
        }
    }

    /// The payload of `d`, authenticated and never seen before.
    ///
    /// # Errors
    /// [`OpenError`]; the window only moves for authentic datagrams.
    pub fn open(&mut self, d: &SealedDatagram<'_>) -> Result<Bytes, OpenError> {
        let mut buf = d.sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce(d), Aad::from(d.header()), &mut buf)
            .map_err(|_| OpenError::Forged)?;
        let len = plain.len();
        if !self.window.accept(d.counter) {
            return Err(OpenError::Replayed);
        }
        buf.truncate(len);
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_once() {
        for cipher in [NoiseCipher::ChaChaPoly, NoiseCipher::AesGcm] {
            seal_then_open_once_with(cipher);
        }
    }

    #[test]
    fn a_datagram_sealed_with_one_cipher_does_not_open_with_the_other() {
        let key = [7u8; DATAGRAM_KEY_LEN];
        let bytes = SealKey::new(&key, NoiseCipher::AesGcm)
            .seal(1, 2, b"hi")
            .unwrap();
        let d = SealedDatagram::parse(&bytes).unwrap();
        let mut chacha = OpenKey::new(&key, NoiseCipher::ChaChaPoly);
        assert_eq!(chacha.open(&d), Err(OpenError::Forged));
    }

    fn seal_then_open_once_with(cipher: NoiseCipher) {
        let key = [7u8; DATAGRAM_KEY_LEN];
        let (mut tx, mut rx) = (SealKey::new(&key, cipher), OpenKey::new(&key, cipher));
        let bytes = tx.seal(1, 2, b"hi").unwrap();
        let d = SealedDatagram::parse(&bytes).unwrap();
        assert_eq!((d.from, d.to, d.counter), (1, 2, 0));
        assert_eq!(rx.open(&d).unwrap(), &b"hi"[..]);
        assert_eq!(rx.open(&d), Err(OpenError::Replayed));
        // Another sender id in the header: the associated data differs.
        let next = tx.seal(1, 2, b"yo").unwrap();
        let mut forged = next.to_vec();
        forged[11] = 9;
        let d = SealedDatagram::parse(&forged).unwrap();
        assert_eq!(rx.open(&d), Err(OpenError::Forged));
        // Another key.
        let mut other = OpenKey::new(&[8u8; DATAGRAM_KEY_LEN], cipher);
        let d = SealedDatagram::parse(&next).unwrap();
        assert_eq!(other.open(&d), Err(OpenError::Forged));
        assert_eq!(rx.open(&d).unwrap(), &b"yo"[..]);
    }
}
