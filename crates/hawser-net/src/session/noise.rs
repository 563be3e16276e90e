//! The secure channel, sans-IO: the Noise `XX_25519_ChaChaPoly_SHA256` handshake bound to the
//! nodes' ed25519 identities, then transport-mode encryption with explicit nonce handling.
//! `XX_25519_AESGCM_SHA256` is the one alternative ([`NoiseCipher`]), chosen per cluster.
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
//!   ([`framing`](super::framing), `hawser_proto::wire::refusal`), so that the refused end
//!   fails with [`HandshakeError::Refused`] naming the same reason. A plaintext hello where a
//!   Noise message is expected (and the other way round) is named as a cipher mismatch.
//! - An *identity payload* is `u8 1 | ed25519 public key (32) | signature (64) | protocol
//!   list` (see [`registry`](super::registry)), where the signature is over
//!   [`STATIC_KEY_CONTEXT`] followed by the sender's Noise static X25519 public key (as in
//!   libp2p). A fresh Noise static key is drawn for every handshake.
//! - The initiator learns and checks the responder's identity (and the pinned [`PeerId`])
//!   before it reveals its own.
//!
//! # Transport mode
//! Each direction counts its messages from 0; the count is the AEAD nonce (encoded as the Noise
//! specification says for each cipher: little-endian for ChaChaPoly, big-endian for AESGCM).
//! - Byte streams carry the count implicitly: a replayed, dropped, reordered or altered frame
//!   fails authentication and the session ends.
//! - Message transports carry it explicitly ([`framing`](super::framing)); a count below the
//!   next expected one is a retransmitted duplicate, dropped *before* decryption; a count
//!   above it (a gap) ends the session, since the stream above needs every byte in order.
//!
//! There is no rekeying: a direction ends after 2^64 − 1 messages.

use std::sync::Arc;

use hawser_proto::wire::channel::{self, CounterOrder};
use hawser_proto::wire::handshake::{
    IdentityPayload, PlaintextHello, Prologue, Suite, MAGIC as PROLOGUE_MAGIC, NOISE_EPHEMERAL_LEN,
};
use hawser_proto::wire::WireError;
use ring::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
use snow::{Builder, HandshakeState, StatelessTransportState};

use super::error::{CryptoError, HandshakeError};
use super::identity::{Identity, PeerId, PublicKey};
use super::registry::ProtocolRegistry;

/// The Noise pattern and primitives of the default cipher ([`NoiseCipher::ChaChaPoly`]).
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// The same with [`NoiseCipher::AesGcm`].
pub const NOISE_PARAMS_AESGCM: &str = "Noise_XX_25519_AESGCM_SHA256";
/// Version of the session protocol, carried in the prologue. Version 2 added the suite byte.
pub const PROTOCOL_VERSION: u16 = hawser_proto::wire::handshake::VERSION;
/// What an identity signs, followed by its Noise static public key.
pub const STATIC_KEY_CONTEXT: &[u8] = b"hawser-noise-static-key:";
/// Largest Noise message (the Noise specification's limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// Bytes the AEAD adds to each message.
pub const TAG_LEN: usize = hawser_proto::wire::channel::TAG_LEN;
/// Largest plaintext in one Noise message.
pub const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Longest network id, in bytes.
pub const MAX_NETWORK_ID: usize = 64;

/// The AEAD of a Noise session: every node of a cluster must use the same one; a peer with
/// another is refused with [`HandshakeError::CipherMismatch`] (and hears
/// [`HandshakeError::Refused`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NoiseCipher {
    /// ChaCha20-Poly1305, the default: fast everywhere, constant-time without special
    /// instructions.
    #[default]
    ChaChaPoly,
    /// AES-256-GCM: 2.6-2.9 times faster than ChaCha20-Poly1305 where the CPU has AES and
    /// carry-less multiply instructions (x86-64 AES-NI and PCLMULQDQ, ARMv8 crypto
    /// extensions), much slower where it has not. The cipher TLS and QUIC usually pick.
    AesGcm,
}

impl NoiseCipher {
    /// The Noise protocol name with this cipher.
    pub fn noise_params(self) -> &'static str {
        match self {
            NoiseCipher::ChaChaPoly => NOISE_PARAMS,
            NoiseCipher::AesGcm => NOISE_PARAMS_AESGCM,
        }
    }

    /// The name Noise gives the cipher ("ChaChaPoly" or "AESGCM").
    pub fn name(self) -> &'static str {
        match self {
            NoiseCipher::ChaChaPoly => "ChaChaPoly",
            NoiseCipher::AesGcm => "AESGCM",
        }
    }

    /// Whether this CPU runs the cipher with instructions made for it: always for
    /// ChaChaPoly (its software form is fast), and for AES-GCM when the CPU has AES and
    /// carry-less multiply instructions (x86/x86-64 `aes` and `pclmulqdq`, AArch64 `aes` and
    /// `pmull`). Without them AES-GCM runs several times slower than ChaChaPoly.
    pub fn hardware_accelerated(self) -> bool {
        match self {
            NoiseCipher::ChaChaPoly => true,
            NoiseCipher::AesGcm => aes_instructions(),
        }
    }

    /// The `ring` AEAD.
    pub(crate) fn algorithm(self) -> &'static Algorithm {
        match self {
            NoiseCipher::ChaChaPoly => &CHACHA20_POLY1305,
            NoiseCipher::AesGcm => &AES_256_GCM,
        }
    }

    /// The Noise nonce of message `n`: 32 zero bits, then `n` little-endian for ChaChaPoly
    /// and big-endian for AESGCM.
    fn nonce(self, n: u64) -> Nonce {
        let order = match self {
            NoiseCipher::ChaChaPoly => CounterOrder::LittleEndian,
            NoiseCipher::AesGcm => CounterOrder::BigEndian,
        };
        Nonce::assume_unique_for_key(channel::nonce(n, order))
    }
}

/// Whether the CPU has the instructions AES-GCM needs to be fast.
fn aes_instructions() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The prologue's suite: what protects the session (`None` is plaintext mode).
fn suite(cipher: Option<NoiseCipher>) -> Suite {
    match cipher {
        None => Suite::Plaintext,
        Some(NoiseCipher::ChaChaPoly) => Suite::ChaChaPoly,
        Some(NoiseCipher::AesGcm) => Suite::AesGcm,
    }
}

/// The name of a suite byte, for errors.
fn suite_name(byte: u8) -> String {
    match Suite::from_byte(byte) {
        Some(Suite::Plaintext) => "plaintext".to_owned(),
        Some(Suite::ChaChaPoly) => NoiseCipher::ChaChaPoly.name().to_owned(),
        Some(Suite::AesGcm) => NoiseCipher::AesGcm.name().to_owned(),
        None => format!("unknown suite {byte}"),
    }
}

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
/// [module docs](self)).
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

/// Which end of the handshake this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The end that dialed: sends first.
    Initiator,
    /// The end that accepted.
    Responder,
}

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
        let cipher = self.cipher;
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
        let cipher = Cipher {
            state: Some(Arc::new(state)),
            keys: Some(keys),
        };
        Ok((cipher, remote))
    }
}

/// The identity payload of `identity` for the Noise static public key `static_public`.
fn identity_payload(
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
pub(super) fn parse_identity_payload(
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

/// The name of what protects a session: the Noise cipher's, or `plaintext`.
pub(crate) fn security_name(cipher: Option<NoiseCipher>) -> &'static str {
    cipher.map_or("plaintext", NoiseCipher::name)
}

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
struct AeadKey {
    key: LessSafeKey,
    cipher: NoiseCipher,
}

impl Cipher {
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
    state: Option<Arc<StatelessTransportState>>,
    key: Option<AeadKey>,
    nonce: u64,
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

#[cfg(test)]
mod tests;
