//! Transport-mode encryption of an established session, sans-IO: a [`Cipher`] split into its
//! sending [`Sealer`] and receiving [`Opener`].
//!
//! # Nonces
//! Each direction counts its messages from 0; the count is the AEAD nonce (encoded as the Noise
//! specification says for each cipher: little-endian for ChaChaPoly, big-endian for AESGCM;
//! `wire::channel`).
//! - Byte streams carry the count implicitly: a replayed, dropped, reordered or altered frame
//!   fails authentication and the session ends.
//! - Message transports carry it explicitly (`wire::channel`); a count below the
//!   next expected one is a retransmitted duplicate, dropped *before* decryption; a count
//!   above it (a gap) ends the session, since the stream above needs every byte in order.
//!
//! There is no rekeying: a direction ends after 2^64 − 1 messages.

use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, UnboundKey};
use snow::{HandshakeState, StatelessTransportState};

use super::cipher::{NoiseCipher, MAX_NOISE_MESSAGE, MAX_PLAINTEXT, TAG_LEN};
use super::error::{CryptoError, HandshakeError};

/// Transport-mode keys for both directions, or none in plaintext mode. Split it into its two
/// halves with [`split`](Self::split).
pub struct Cipher {
    state: Option<Arc<StatelessTransportState>>,
    keys: Option<Keys>,
}

/// The two transport keys of an established cipher, for sealing and opening in place.
struct Keys {
    send: AeadKey,
    recv: AeadKey,
}

/// One direction's transport key and the cipher it is for (which sets the nonce's form).
pub(super) struct AeadKey {
    key: LessSafeKey,
    cipher: NoiseCipher,
}

impl Cipher {
    /// The cipher of a finished handshake: snow's transport state, and the raw transport
    /// keys (Noise `Split()`) this end sends and receives with, sealing and opening in place.
    pub(super) fn established(
        state: HandshakeState,
        cipher: NoiseCipher,
        send: [u8; 32],
        recv: [u8; 32],
    ) -> Result<Cipher, HandshakeError> {
        let key = |k: [u8; 32]| {
            UnboundKey::new(cipher.algorithm(), &k)
                .map(|key| AeadKey {
                    key: LessSafeKey::new(key),
                    cipher,
                })
                .map_err(|_| HandshakeError::Malformed("transport key rejected"))
        };
        let keys = Keys {
            send: key(send)?,
            recv: key(recv)?,
        };
        let state = state.into_stateless_transport_mode()?;
        Ok(Cipher {
            state: Some(Arc::new(state)),
            keys: Some(keys),
        })
    }

    /// The "cipher" of plaintext mode: copies bytes as they are, but still counts messages.
    pub fn danger_plaintext() -> Cipher {
        Cipher {
            state: None,
            keys: None,
        }
    }

    /// The Noise cipher, or `None` for the plaintext one.
    pub fn noise_cipher(&self) -> Option<NoiseCipher> {
        self.keys.as_ref().map(|k| k.send.cipher)
    }

    /// The sending and receiving halves.
    pub fn split(self) -> (Sealer, Opener) {
        let (send, recv) = match self.keys {
            Some(Keys { send, recv }) => (Some(send), Some(recv)),
            None => (None, None),
        };
        (
            Sealer {
                state: self.state.clone(),
                key: send,
                nonce: 0,
            },
            Opener {
                state: self.state,
                key: recv,
                nonce: 0,
                duplicates: 0,
            },
        )
    }
}

/// The sending half of a [`Cipher`].
pub struct Sealer {
    pub(super) state: Option<Arc<StatelessTransportState>>,
    pub(super) key: Option<AeadKey>,
    pub(super) nonce: u64,
}

impl Sealer {
    /// Appends the encryption of `plaintext` (at most [`MAX_PLAINTEXT`] bytes) to `out`,
    /// with the next nonce.
    ///
    /// # Errors
    /// [`CryptoError::TooLarge`]; [`CryptoError::NonceExhausted`] after 2^64 − 1 messages.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(CryptoError::TooLarge(plaintext.len()));
        }
        if self.nonce == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        match &self.state {
            Some(state) => {
                let start = out.len();
                out.resize(start + plaintext.len() + TAG_LEN, 0);
                let n = state
                    .write_message(self.nonce, plaintext, &mut out[start..])
                    .map_err(|_| CryptoError::Encrypt)?;
                out.truncate(start + n);
            }
            None => out.extend_from_slice(plaintext),
        }
        self.nonce += 1;
        Ok(())
    }

    /// Seals in place, with the next nonce, the plaintext `buf[start..]` (at most
    /// [`MAX_PLAINTEXT`] bytes), appending the tag: the same message [`seal`](Self::seal)
    /// appends, without copying the plaintext. In plaintext mode the bytes stay as they are.
    ///
    /// # Errors
    /// [`CryptoError::TooLarge`] (also when `start` is past the end);
    /// [`CryptoError::NonceExhausted`] after 2^64 − 1 messages.
    pub fn seal_in_place(&mut self, buf: &mut Vec<u8>, start: usize) -> Result<(), CryptoError> {
        let len = buf
            .len()
            .checked_sub(start)
            .ok_or(CryptoError::TooLarge(start))?;
        if len > MAX_PLAINTEXT {
            return Err(CryptoError::TooLarge(len));
        }
        if self.nonce == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        if let Some(AeadKey { key, cipher }) = &self.key {
            let tag = key
                .seal_in_place_separate_tag(
                    cipher.nonce(self.nonce),
                    Aad::empty(),
                    &mut buf[start..],
                )
                .map_err(|_| CryptoError::Encrypt)?;
            buf.extend_from_slice(tag.as_ref());
        }
        self.nonce += 1;
        Ok(())
    }

    /// Whether this half encrypts (false in plaintext mode).
    pub fn is_encrypted(&self) -> bool {
        self.state.is_some()
    }

    /// The nonce the next message will use (= messages sealed so far).
    pub fn next_nonce(&self) -> u64 {
        self.nonce
    }
}

/// The receiving half of a [`Cipher`].
pub struct Opener {
    state: Option<Arc<StatelessTransportState>>,
    key: Option<AeadKey>,
    nonce: u64,
    duplicates: u64,
}

impl Opener {
    /// Decrypts the next message of a byte stream (implicit nonce), appending the plaintext.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`]: the frame was altered, replayed, reordered or dropped.
    pub fn open(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.open_at(self.nonce, ciphertext, out)
    }

    /// Decrypts in place the next message of a byte stream (implicit nonce), a whole Noise
    /// message in `msg`; returns the plaintext's length (its bytes are then at the front of
    /// `msg`). In plaintext mode the bytes stay as they are.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`]: the frame was altered, replayed, reordered or dropped.
    pub fn open_in_place(&mut self, msg: &mut [u8]) -> Result<usize, CryptoError> {
        if self.nonce == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        let n = match &self.key {
            Some(AeadKey { key, cipher }) => {
                if msg.len() < TAG_LEN || msg.len() > MAX_NOISE_MESSAGE {
                    return Err(CryptoError::Decrypt);
                }
                key.open_in_place(cipher.nonce(self.nonce), Aad::empty(), msg)
                    .map_err(|_| CryptoError::Decrypt)?
                    .len()
            }
            None => msg.len(),
        };
        self.nonce += 1;
        Ok(n)
    }

    /// Opens in place a message of a message transport, whose explicit `counter` is its nonce:
    /// the ciphertext is `msg`, and the plaintext is left at its front. Returns the
    /// plaintext's length, or `None` for a duplicate (a counter already seen), dropped
    /// without decrypting. In plaintext mode the bytes stay as they are.
    ///
    /// # Errors
    /// [`CryptoError::Gap`] if `counter` is past the next expected one;
    /// [`CryptoError::Decrypt`] if authentication fails.
    pub fn open_counted_in_place(
        &mut self,
        counter: u64,
        msg: &mut [u8],
    ) -> Result<Option<usize>, CryptoError> {
        if counter < self.nonce {
            self.duplicates += 1;
            return Ok(None);
        }
        if counter > self.nonce {
            return Err(CryptoError::Gap {
                got: counter,
                expected: self.nonce,
            });
        }
        self.open_in_place(msg).map(Some)
    }

    fn open_at(
        &mut self,
        nonce: u64,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if self.nonce == u64::MAX {
            return Err(CryptoError::NonceExhausted);
        }
        match &self.state {
            Some(state) => {
                if ciphertext.len() < TAG_LEN || ciphertext.len() > MAX_NOISE_MESSAGE {
                    return Err(CryptoError::Decrypt);
                }
                let start = out.len();
                out.resize(start + ciphertext.len(), 0);
                let n = state
                    .read_message(nonce, ciphertext, &mut out[start..])
                    .map_err(|_| {
                        out.truncate(start);
                        CryptoError::Decrypt
                    })?;
                out.truncate(start + n);
            }
            None => out.extend_from_slice(ciphertext),
        }
        self.nonce += 1;
        Ok(())
    }

    /// Duplicates dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}
