//! Entry points for the fuzz targets in `fuzz/` into the session layer's crate-private
//! parsing: the identity payload of handshake messages 2 and 3, and sealed datagrams at
//! chosen counters with their replay window. Built only with `--cfg fuzzing` (as
//! `cargo fuzz` builds); not an API.

use bytes::Bytes;

use super::datagram::{OpenError, OpenKey, SealKey};
use super::handshake::Remote;
use super::replay::ReplayWindow;
use super::{HandshakeError, NoiseCipher};
use crate::wire::node::{SealedDatagram, DATAGRAM_KEY_LEN};

/// Parses and verifies an identity payload against the sender's Noise static key, as a
/// handshake does with the decrypted payload of message 2 or 3.
///
/// # Errors
/// As the handshake's parser.
pub fn parse_identity_payload(
    payload: &[u8],
    remote_static: &[u8],
) -> Result<Remote, HandshakeError> {
    super::handshake::parse_identity_payload(payload, remote_static)
}

/// Both halves of one direction's datagram key.
pub struct DatagramKeys {
    seal: SealKey,
    open: OpenKey,
}

impl DatagramKeys {
    /// A sealing and an opening half of `key`, for `cipher`.
    pub fn new(key: &[u8; DATAGRAM_KEY_LEN], cipher: NoiseCipher) -> DatagramKeys {
        DatagramKeys {
            seal: SealKey::new(key, cipher),
            open: OpenKey::new(key, cipher),
        }
    }

    /// Seals `payload` with counter `counter` (the sender's next counter jumps there).
    pub fn seal(&mut self, counter: u64, from: u64, to: u64, payload: &[u8]) -> Option<Bytes> {
        self.seal.skip_to(counter);
        self.seal.seal(from, to, payload)
    }

    /// Parses and opens one received datagram, as the node's receive path does: `Err` with
    /// the reason when it does not parse, does not authenticate, or was seen already.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Bytes, &'static str> {
        let d = SealedDatagram::parse(datagram).map_err(|_| "malformed")?;
        self.open.open(&d).map_err(|e| match e {
            OpenError::Forged => "forged",
            OpenError::Replayed => "replayed",
        })
    }
}

/// A replay window on its own.
#[derive(Default)]
pub struct Window(ReplayWindow);

impl Window {
    /// Records `counter`; `false` if it was seen already or is too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        self.0.accept(counter)
    }

    /// Counters this far below the highest seen are refused.
    pub const WIDTH: u64 = ReplayWindow::WIDTH;
}
