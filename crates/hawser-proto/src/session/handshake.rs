//! The Noise `XX_25519_ChaChaPoly_SHA256` handshake bound to the nodes' ed25519 identities,
//! sans-IO: bytes in, bytes out ([`Handshake`]). `XX_25519_AESGCM_SHA256` is the one
//! alternative ([`NoiseCipher`]), chosen per cluster. A finished handshake gives the
//! transport-mode [`Cipher`] (`session::transport`).
//!
//! # Handshake
//! ```text
//! initiator                                   responder
//!   -> e,  payload = hello (clear)          [network id and version, checked first]
//!   <- e, ee, s, es, payload = identity(R)  [encrypted]
//!   -> s, se, payload = identity(I)         [encrypted]
//! ```
//! - The *prologue*, mixed into the handshake hash by both ends, is
//!   `"hawser-session" | u16 PROTOCOL_VERSION | u8 suite | u8 len | network id`, where the
//!   suite is 0 for plaintext mode, 1 for ChaChaPoly and 2 for AESGCM. Two ends with different
//!   prologues cannot finish the handshake. The first message also carries the same bytes in
//!   clear so the responder can refuse a foreign network, version or cipher with a typed error.
//! - An end that refuses the other after the first message it receives (the responder after
//!   message 1, the initiator after message 2) sends a refusal in place of its next message
//!   (`wire::channel`, `wire::refusal`), so that the refused end
//!   fails with [`HandshakeError::Refused`] naming the same reason. A plaintext hello where a
//!   Noise message is expected (and the other way round) is named as a cipher mismatch.
//! - An *identity payload* is `u8 1 | ed25519 public key (32) | signature (64) | protocol
//!   list` (`wire::handshake`; the list is a [`ProtocolRegistry`]'s), where the signature is over
//!   [`STATIC_KEY_CONTEXT`] followed by the sender's Noise static X25519 public key (as in
//!   libp2p). A fresh Noise static key is drawn for every handshake.
//! - The initiator learns and checks the responder's identity (and the pinned [`PeerId`])
//!   before it reveals its own.

use snow::{Builder, HandshakeState};

use crate::wire::handshake::IdentityPayload;

use super::cipher::{NoiseCipher, MAX_NOISE_MESSAGE, STATIC_KEY_CONTEXT};
use super::error::HandshakeError;
use super::hello::{check_prologue, foreign_mode_error, prologue, NetworkId};
use super::identity::{Identity, PeerId, PublicKey};
use super::registry::ProtocolRegistry;
pub use super::remote::Remote;
use super::transport::Cipher;

/// Which end of the handshake this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The end that dialed: sends first.
    Initiator,
    /// The end that accepted.
    Responder,
}

/// An in-progress handshake. Drive it with the usual loop: send every message
/// [`poll_transmit`](Self::poll_transmit) returns; when it returns `None` and
/// [`is_finished`](Self::is_finished) is false, feed the next received message to
/// [`handle_message`](Self::handle_message).
pub struct Handshake {
    state: HandshakeState,
    role: Role,
    cipher: NoiseCipher,
    network: NetworkId,
    local_payload: Vec<u8>,
    expected: Option<PeerId>,
    max_message: usize,
    remote: Option<Remote>,
    received: u8,
    buf: Vec<u8>,
}

impl Handshake {
    /// Starts a handshake with `cipher`. `expected` pins the peer's [`PeerId`];
    /// `max_message` bounds every handshake message received (and is at most
    /// [`MAX_NOISE_MESSAGE`]).
    ///
    /// # Errors
    /// [`HandshakeError::Noise`] if the crypto backend fails.
    pub fn new(
        role: Role,
        cipher: NoiseCipher,
        identity: &Identity,
        network: &NetworkId,
        protocols: &ProtocolRegistry,
        max_message: usize,
        expected: Option<PeerId>,
    ) -> Result<Handshake, HandshakeError> {
        // Both protocol names are constants that snow supports.
        let params = cipher
            .noise_params()
            .parse()
            .map_err(HandshakeError::Noise)?;
        let builder = Builder::new(params);
        let static_key = builder.generate_keypair()?;
        let prologue = prologue(network, Some(cipher));
        let builder = builder
            .local_private_key(&static_key.private)?
            .prologue(&prologue)?;
        let state = match role {
            Role::Initiator => builder.build_initiator()?,
            Role::Responder => builder.build_responder()?,
        };
        let local_payload = identity_payload(identity, &static_key.public, protocols);
        Ok(Handshake {
            state,
            role,
            cipher,
            network: network.clone(),
            local_payload,
            expected,
            max_message: max_message.min(MAX_NOISE_MESSAGE),
            remote: None,
            received: 0,
            buf: vec![0; MAX_NOISE_MESSAGE],
        })
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The next handshake message to send, if it is this end's turn.
    ///
    /// # Errors
    /// [`HandshakeError::Noise`] (the local payload is too large, or the backend failed).
    #[must_use = "the message must be sent"]
    pub fn poll_transmit(&mut self) -> Result<Option<Vec<u8>>, HandshakeError> {
        if self.state.is_handshake_finished() || !self.state.is_my_turn() {
            return Ok(None);
        }
        // The first message (initiator only) carries the clear hello; later ones the identity.
        let payload = if self.role == Role::Initiator && self.remote.is_none() {
            prologue(&self.network, Some(self.cipher))
        } else {
            self.local_payload.clone()
        };
        let n = self.state.write_message(&payload, &mut self.buf)?;
        Ok(Some(self.buf[..n].to_vec()))
    }

    /// Processes one received handshake message.
    ///
    /// # Errors
    /// The handshake has failed and must be abandoned: [`HandshakeError::TooLarge`],
    /// [`HandshakeError::Noise`] (decryption failed: tampering, or a different prologue),
    /// [`HandshakeError::NetworkMismatch`], [`HandshakeError::VersionMismatch`],
    /// [`HandshakeError::Malformed`], [`HandshakeError::BadSignature`],
    /// [`HandshakeError::PeerMismatch`].
    pub fn handle_message(&mut self, message: &[u8]) -> Result<(), HandshakeError> {
        if message.len() > self.max_message {
            return Err(HandshakeError::TooLarge {
                len: message.len(),
                max: self.max_message,
            });
        }
        if self.state.is_handshake_finished() || self.state.is_my_turn() {
            return Err(HandshakeError::Malformed("unexpected handshake message"));
        }
        if self.received == 0 {
            // A plaintext hello where a Noise message was expected: name the mismatch.
            if let Some(e) = foreign_mode_error(&self.network, Some(self.cipher), message) {
                return Err(e);
            }
        }
        let first = self.role == Role::Responder && self.received == 0;
        let n = self.state.read_message(message, &mut self.buf)?;
        self.received = self.received.saturating_add(1);
        if first {
            return check_prologue(&self.network, Some(self.cipher), &self.buf[..n]);
        }
        let remote_static = self
            .state
            .get_remote_static()
            .ok_or(HandshakeError::Malformed("no static key"))?
            .to_vec();
        let remote = parse_identity_payload(&self.buf[..n], &remote_static)?;
        if let Some(expected) = self.expected {
            if expected != remote.peer_id {
                return Err(HandshakeError::PeerMismatch {
                    expected,
                    actual: remote.peer_id,
                });
            }
        }
        self.remote = Some(remote);
        Ok(())
    }

    /// Whether the handshake is complete (after this end's last send or receive).
    pub fn is_finished(&self) -> bool {
        self.state.is_handshake_finished()
    }

    /// The transport-mode cipher and the proven peer.
    ///
    /// # Errors
    /// [`HandshakeError::Malformed`] if the handshake is not finished.
    pub fn into_established(self) -> Result<(Cipher, Remote), HandshakeError> {
        let remote = self
            .remote
            .ok_or(HandshakeError::Malformed("handshake not finished"))?;
        let mut state = self.state;
        // The same keys snow derives for its transport mode (Noise `Split()`): the
        // initiator sends with the first, the responder with the second. They seal and open
        // in place (`Sealer::seal_in_place`, `Opener::open_in_place`).
        let (k1, k2) = state.dangerously_get_raw_split();
        let (send, recv) = match self.role {
            Role::Initiator => (k1, k2),
            Role::Responder => (k2, k1),
        };
        let cipher = Cipher::established(state, self.cipher, send, recv)?;
        Ok((cipher, remote))
    }
}

/// The identity payload of `identity` for the Noise static public key `static_public`.
pub(super) fn identity_payload(
    identity: &Identity,
    static_public: &[u8],
    protocols: &ProtocolRegistry,
) -> Vec<u8> {
    let mut signed = STATIC_KEY_CONTEXT.to_vec();
    signed.extend_from_slice(static_public);
    let mut list = Vec::new();
    protocols.emit(&mut list);
    let payload = IdentityPayload {
        public_key: identity.public_key().to_bytes(),
        signature: identity.sign(&signed),
        protocols: &list,
    };
    let mut out = Vec::new();
    payload.emit(&mut out);
    out
}

/// Parses and verifies an identity payload against the sender's Noise static key.
pub(crate) fn parse_identity_payload(
    payload: &[u8],
    remote_static: &[u8],
) -> Result<Remote, HandshakeError> {
    let payload = IdentityPayload::parse(payload)
        .map_err(|_| HandshakeError::Malformed("identity payload"))?;
    let public_key = PublicKey::from_bytes(&payload.public_key)
        .map_err(|_| HandshakeError::Malformed("identity key"))?;
    let mut signed = STATIC_KEY_CONTEXT.to_vec();
    signed.extend_from_slice(remote_static);
    if !public_key.verify(&signed, &payload.signature) {
        return Err(HandshakeError::BadSignature);
    }
    let protocols = payload
        .protocol_list()
        .map_err(|_| HandshakeError::Malformed("protocol list"))
        .and_then(|l| {
            ProtocolRegistry::from_list(&l).map_err(|_| HandshakeError::Malformed("protocol list"))
        })?;
    Ok(Remote {
        public_key,
        peer_id: public_key.peer_id(),
        protocols,
    })
}
