//! The sans-IO parts of sessions: node identities, the Noise handshake that proves them,
//! the encryption of an established channel, the protocol registry and its negotiation, and
//! the sealing of node datagrams with their replay window. Bytes in, bytes out: the tokio
//! layer (`hawser_net::session`) moves the bytes and keeps the time.
//!
//! # Organization
//! - [`identity`]: ed25519 [`Identity`], [`PublicKey`], printable [`PeerId`], key files.
//! - [`registry`]: numbered, named, versioned protocols ([`ProtocolRegistry`]) and their
//!   negotiation ([`negotiate`]).
//! - [`cipher`]: the AEADs a session can use ([`NoiseCipher`]) and the channel's limits.
//! - [`hello`]: the [`NetworkId`], the prologue, the plaintext-mode hello.
//! - [`handshake`]: the Noise `XX` handshake state machine ([`Handshake`]).
//! - [`transport`]: transport-mode encryption ([`Cipher`], [`Sealer`], [`Opener`]).
//! - [`datagram`] and [`replay`]: sealing and opening node datagrams ([`SealKey`],
//!   [`OpenKey`]) and the [`ReplayWindow`].
//! - [`error`]: why a handshake failed, why a channel failed, why a setting is invalid.
//!
//! Every message format is [`wire`](crate::wire)'s: `wire::handshake` (prologue, hello,
//! identity payload, protocol list), `wire::channel` (envelopes, nonces, tags),
//! `wire::refusal`, `wire::node` (sealed datagrams).
//!
//! Randomness: [`Handshake::new`] draws a fresh Noise static key and ephemeral keys from the
//! operating system (through `snow`), and [`Identity::generate`] a fresh secret; nothing else
//! here draws randomness or reads a clock. [`Identity::save`] and [`Identity::load`] are the
//! only file I/O.
//!
//! # Example
//! Two ends handshake by handing each other's messages across, then seal and open:
//! ```
//! use hawser_proto::session::{
//!     Handshake, Identity, NetworkId, NoiseCipher, ProtocolRegistry, Role,
//! };
//!
//! let network = NetworkId::new("example").unwrap();
//! let end = |role, secret: u8| {
//!     let identity = Identity::from_secret_bytes(&[secret; 32]);
//!     let registry = ProtocolRegistry::new();
//!     Handshake::new(role, NoiseCipher::ChaChaPoly, &identity, &network, &registry, 4096, None)
//! };
//! let (mut a, mut b) = (end(Role::Initiator, 1)?, end(Role::Responder, 2)?);
//! while !(a.is_finished() && b.is_finished()) {
//!     while let Some(m) = a.poll_transmit()? { b.handle_message(&m)?; }
//!     while let Some(m) = b.poll_transmit()? { a.handle_message(&m)?; }
//! }
//! let (cipher_a, remote_b) = a.into_established()?;
//! let (cipher_b, _) = b.into_established()?;
//! assert_eq!(remote_b.peer_id, Identity::from_secret_bytes(&[2; 32]).peer_id());
//!
//! let (mut seal, _) = cipher_a.split();
//! let (_, mut open) = cipher_b.split();
//! let mut sealed = Vec::new();
//! seal.seal(b"hello", &mut sealed)?;
//! let mut plain = Vec::new();
//! open.open(&sealed, &mut plain)?;
//! assert_eq!(plain, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cipher;
pub mod datagram;
pub mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod hello;
pub mod identity;
pub mod registry;
mod remote;
pub mod replay;
#[cfg(feature = "serde")]
mod serde_impls;
pub mod transport;

pub use cipher::{security_name, NoiseCipher};
pub use datagram::{OpenKey, SealKey};
pub use error::{ConfigError, CryptoError, HandshakeError};
pub use handshake::{Handshake, Remote, Role};
pub use hello::NetworkId;
pub use identity::{Identity, KeyError, PeerId, PublicKey};
pub use registry::{
    negotiate, Negotiated, Protocol, ProtocolId, ProtocolRegistry, RegistryError,
    FIRST_APPLICATION_ID, REFUSAL_STREAM,
};
pub use replay::ReplayWindow;
pub use transport::{Cipher, Opener, Sealer};

#[cfg(test)]
mod tests;
