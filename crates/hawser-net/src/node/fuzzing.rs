//! Entry points for the fuzz targets in `fuzz/` into the node layer's crate-private input
//! handling: sealed datagrams with their replay window, the kind byte of framed connections,
//! and the fast path that takes application frames from a stream's receive buffer. Built only
//! with `--cfg fuzzing` (as `cargo fuzz` builds); not an API.

use bytes::{Bytes, BytesMut};
use hawser_proto::wire::node::{SealedDatagram, DATAGRAM_KEY_LEN};
use hawser_proto::wire::WireError;

use super::datagram::{OpenError, OpenKey, ReplayWindow, SealKey};
use crate::session::NoiseCipher;
use hawser_proto::wire::node::Frame;

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

/// Parses a framed connection's frame (kind byte first) as the node does, and returns its
/// kind byte and body as the node would send them again.
///
/// # Errors
/// As the node's parser.
pub fn parse_frame(frame: Bytes) -> Result<(u8, Vec<u8>), WireError> {
    let frame = Frame::parse(frame)?;
    Ok((frame.kind().byte(), frame.body().to_vec()))
}

/// Runs the receive fast path over `buf` (frames of at most `max` bytes): the application
/// payloads it takes, and leaves the rest in `buf`.
pub fn take_app_frames(buf: &mut BytesMut, max: usize) -> Vec<Bytes> {
    super::secure::fuzz_take_app_frames(buf, max)
}

/// Takes the first frame of `buf` if it lies there whole, as the receive path does.
pub fn take_whole_frame(buf: &mut BytesMut, max: usize) -> Option<BytesMut> {
    super::secure::fuzz_take_whole_frame(buf, max)
}
