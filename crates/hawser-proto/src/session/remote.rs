//! [`Remote`]: what a finished handshake proved about the peer.

use super::identity::{PeerId, PublicKey};
use super::registry::ProtocolRegistry;

/// What the handshake proved about the peer.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The peer's identity key.
    pub public_key: PublicKey,
    /// Its [`PeerId`].
    pub peer_id: PeerId,
    /// The protocols it offers.
    pub protocols: ProtocolRegistry,
}
