//! Sealed datagrams, for nodes running Noise sessions (`docs/security.md`): sealing, opening
//! and the replay window are `hawser_proto::session::datagram`'s; this module draws the keys.

use hawser_proto::wire::node::DATAGRAM_KEY_LEN;

pub(crate) use hawser_proto::session::datagram::{OpenError, OpenKey, SealKey};

/// A datagram key, as carried in a `FrameKind::DatagramKey` frame.
pub(crate) type KeyBytes = [u8; DATAGRAM_KEY_LEN];

/// A fresh random datagram key, from the operating system.
pub(crate) fn generate_key() -> Result<KeyBytes, getrandom::Error> {
    let mut key = [0u8; DATAGRAM_KEY_LEN];
    getrandom::fill(&mut key)?;
    Ok(key)
}
