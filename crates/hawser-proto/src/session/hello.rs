//! The clear parts of a handshake: the [`NetworkId`] and the prologue it goes into (checked
//! against a peer's, naming the first difference), the plaintext-mode hello, and the detection
//! of a peer running the other mode. The formats are `wire::handshake`'s.

use crate::wire::handshake::{
    PlaintextHello, Prologue, MAGIC as PROLOGUE_MAGIC, NOISE_EPHEMERAL_LEN,
};
use crate::wire::WireError;

use super::cipher::{suite, suite_name, NoiseCipher, MAX_NETWORK_ID, PROTOCOL_VERSION};
use super::error::HandshakeError;
use super::identity::{Identity, PeerId, PublicKey};
use super::registry::ProtocolRegistry;
use super::remote::Remote;

/// The name of a cluster, mixed into every handshake: sessions form only between nodes with
/// the same network id (1 to [`MAX_NETWORK_ID`] bytes).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetworkId(String);

impl NetworkId {
    /// A network id.
    ///
    /// # Errors
    /// [`HandshakeError::Malformed`] if it is empty or longer than [`MAX_NETWORK_ID`] bytes.
    pub fn new(id: &str) -> Result<NetworkId, HandshakeError> {
        if id.is_empty() || id.len() > MAX_NETWORK_ID {
            return Err(HandshakeError::Malformed(
                "network id must be 1 to 64 bytes",
            ));
        }
        Ok(NetworkId(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The prologue of `network` and `cipher`: `wire::handshake`'s [`Prologue`].
fn wire_prologue(network: &NetworkId, cipher: Option<NoiseCipher>) -> Prologue<'_> {
    let prologue = Prologue::new(suite(cipher), network.0.as_bytes());
    // NetworkId::new bounds the length to MAX_NETWORK_ID, below the format's bound.
    prologue.expect("a network id fits a prologue")
}

/// The prologue bytes for `network` and `cipher` (`None`: plaintext mode; see the
/// [handshake docs](super::handshake)).
pub fn prologue(network: &NetworkId, cipher: Option<NoiseCipher>) -> Vec<u8> {
    let mut out = Vec::new();
    wire_prologue(network, cipher).emit(&mut out);
    out
}

/// Compares a peer's prologue with ours (network `ours`, suite `cipher`), naming the
/// difference.
///
/// # Errors
/// [`HandshakeError::VersionMismatch`], [`HandshakeError::CipherMismatch`],
/// [`HandshakeError::NetworkMismatch`] or [`HandshakeError::Malformed`].
pub fn check_prologue(
    ours: &NetworkId,
    cipher: Option<NoiseCipher>,
    theirs: &[u8],
) -> Result<(), HandshakeError> {
    // The version first: it sets the layout of the rest.
    let version = Prologue::peek_version(theirs).map_err(|e| match e {
        WireError::Truncated => HandshakeError::Malformed("hello too short"),
        _ => HandshakeError::Malformed("not a hawser session hello"),
    })?;
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    let theirs = Prologue::parse(theirs).map_err(|e| match e {
        WireError::Truncated => HandshakeError::Malformed("hello too short"),
        _ => HandshakeError::Malformed("hello length"),
    })?;
    if theirs.suite() != suite(cipher).byte() {
        return Err(HandshakeError::CipherMismatch {
            ours: suite_name(suite(cipher).byte()),
            theirs: suite_name(theirs.suite()),
        });
    }
    if theirs.network() != ours.0.as_bytes() {
        return Err(HandshakeError::NetworkMismatch {
            ours: ours.0.clone(),
            theirs: String::from_utf8_lossy(theirs.network()).into_owned(),
        });
    }
    Ok(())
}

/// The plaintext-mode hello: `prologue | identity key (claimed, not proven) | protocol list`.
pub fn plaintext_hello(
    identity: &Identity,
    network: &NetworkId,
    protocols: &ProtocolRegistry,
) -> Vec<u8> {
    let mut list = Vec::new();
    protocols.emit(&mut list);
    let hello = PlaintextHello {
        prologue: wire_prologue(network, None),
        public_key: identity.public_key().to_bytes(),
        protocols: &list,
    };
    let mut out = Vec::new();
    hello.emit(&mut out);
    out
}

/// Parses a peer's plaintext-mode hello. The identity is only *claimed*.
///
/// # Errors
/// As [`check_prologue`], [`HandshakeError::Malformed`], and
/// [`HandshakeError::PeerMismatch`] if the claimed identity is not the pinned one.
pub fn parse_plaintext_hello(
    network: &NetworkId,
    hello: &[u8],
    expected: Option<PeerId>,
) -> Result<Remote, HandshakeError> {
    // Check the prologue part first, whatever its length, to name a foreign network.
    check_hello_prologue(network, None, hello)?;
    let hello = PlaintextHello::parse(hello).map_err(|_| HandshakeError::Malformed("hello"))?;
    let public_key = PublicKey::from_bytes(&hello.public_key)
        .map_err(|_| HandshakeError::Malformed("identity key"))?;
    let protocols = hello
        .protocol_list()
        .map_err(|_| HandshakeError::Malformed("protocol list"))
        .and_then(|l| {
            ProtocolRegistry::from_list(&l).map_err(|_| HandshakeError::Malformed("protocol list"))
        })?;
    let remote = Remote {
        public_key,
        peer_id: public_key.peer_id(),
        protocols,
    };
    match expected {
        Some(e) if e != remote.peer_id => Err(HandshakeError::PeerMismatch {
            expected: e,
            actual: remote.peer_id,
        }),
        _ => Ok(remote),
    }
}

/// Checks the prologue at the front of `hello` (a plaintext-mode hello, or the payload of a
/// Noise first message) against ours; returns its length.
fn check_hello_prologue(
    network: &NetworkId,
    cipher: Option<NoiseCipher>,
    hello: &[u8],
) -> Result<(), HandshakeError> {
    let (their_prologue, _) =
        Prologue::split_front(hello).ok_or(HandshakeError::Malformed("hello"))?;
    check_prologue(network, cipher, their_prologue)
}

/// Names the mismatch when the first message of a peer shows it runs the other mode: a
/// plaintext hello (the prologue at its front) reaching a Noise end (`cipher` is `Some`), or a
/// Noise first message (a 32-byte ephemeral key, then the prologue in clear) reaching a
/// plaintext end. `None` when `message` is neither; otherwise the first difference
/// [`check_prologue`] finds (a version, the cipher, or a malformed prologue).
pub fn foreign_mode_error(
    network: &NetworkId,
    cipher: Option<NoiseCipher>,
    message: &[u8],
) -> Option<HandshakeError> {
    let hello = match cipher {
        Some(_) => message,
        None if message.starts_with(PROLOGUE_MAGIC.as_slice()) => return None,
        None => message.get(NOISE_EPHEMERAL_LEN..)?,
    };
    if !hello.starts_with(PROLOGUE_MAGIC.as_slice()) {
        return None;
    }
    check_hello_prologue(network, cipher, hello).err()
}
