//! Entry points for the fuzz targets in `fuzz/` into the node layer's crate-private input
//! handling: the kind byte of framed connections, and the fast path that takes application
//! frames from a stream's receive buffer; sealed datagrams with their replay window are
//! `hawser_proto::session::fuzzing`'s (re-exported). Built only with `--cfg fuzzing` (as
//! `cargo fuzz` builds); not an API.

use bytes::{Bytes, BytesMut};
pub use hawser_proto::session::fuzzing::{DatagramKeys, Window};
use hawser_proto::wire::node::Frame;
use hawser_proto::wire::WireError;

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
