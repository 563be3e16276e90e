//! Why a handshake failed ([`HandshakeError`]), why an established channel failed
//! ([`CryptoError`]), and why a setting is invalid ([`ConfigError`]).

use std::io;

use crate::wire::refusal::{Refusal, RefusalReason};

use super::identity::PeerId;

/// Why a session could not be established (`connect`, `accept`, a listener's handshake).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The handshake did not finish within `SessionConfig::handshake_timeout`.
    #[error("handshake timed out")]
    Timeout,
    /// The transport failed.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the transport before the handshake finished without saying why (a
    /// peer that sends no refusal, or one that failed for a reason it does not name).
    #[error("the peer closed the transport during the handshake")]
    Closed,
    /// The peer refused the handshake and said why before closing the transport: the same
    /// reason its own error names ([`refusal_reason`](Self::refusal_reason) is equal on both
    /// ends). Sent before any key exists, a refusal is not authenticated: it only explains
    /// the end of this handshake (`docs/security.md`, "Refusals").
    #[error("refused by peer: {reason}{}", in_parentheses(detail))]
    Refused {
        /// Why.
        reason: RefusalReason,
        /// For a mismatch, both values from this end's point of view (`ours "a", theirs
        /// "b"`); otherwise the peer's explanation, possibly empty.
        detail: String,
    },
    /// Noise failed: a message did not decrypt (altered, or made with a different prologue,
    /// i.e. another network id or version) or the crypto backend failed.
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    /// A handshake message exceeds `SessionConfig::max_handshake_message`.
    #[error("handshake message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer belongs to another network (cluster).
    #[error("refused peer: network id mismatch (ours {ours:?}, theirs {theirs:?})")]
    NetworkMismatch {
        /// This node's network id.
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// The peer speaks another version of the session protocol.
    #[error("refused peer: session protocol version mismatch (ours {ours}, theirs {theirs})")]
    VersionMismatch {
        /// This node's version.
        ours: u16,
        /// The peer's.
        theirs: u16,
    },
    /// The peer protects its sessions otherwise: another Noise cipher, or plaintext mode
    /// against Noise. Every node of a cluster must use the same `Security`.
    #[error("refused peer: cipher mismatch (ours {ours}, theirs {theirs})")]
    CipherMismatch {
        /// What this node uses.
        ours: String,
        /// What the peer uses.
        theirs: String,
    },
    /// A handshake message is not well formed.
    #[error("malformed handshake: {0}")]
    Malformed(&'static str),
    /// The peer's identity signature over its Noise static key does not verify.
    #[error("the peer's identity signature does not verify")]
    BadSignature,
    /// The peer proved (or, in plaintext mode, claimed) another identity than the pinned one.
    #[error("refused peer: not the expected identity (expected {expected}, the peer is {actual})")]
    PeerMismatch {
        /// The pinned `PeerId`.
        expected: PeerId,
        /// The one the peer proved.
        actual: PeerId,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl HandshakeError {
    /// Why the handshake was refused, by this end (a mismatch, a pin, a message too large or
    /// malformed, a bad signature) or by the peer ([`Refused`](Self::Refused)); `None` for
    /// failures that refuse nobody (transport, timeout, a close without a reason, crypto,
    /// configuration).
    pub fn refusal_reason(&self) -> Option<RefusalReason> {
        match self {
            HandshakeError::Refused { reason, .. } => Some(*reason),
            other => other.refusal().map(|r| r.reason()),
        }
    }

    /// Whether the peer refused the handshake ([`Refused`](Self::Refused)).
    pub fn is_refused_by_peer(&self) -> bool {
        matches!(self, HandshakeError::Refused { .. })
    }

    /// The refusal this end sends for this error, if it refuses the peer. It names no
    /// identity: it may travel in clear.
    pub fn refusal(&self) -> Option<Refusal> {
        let (reason, detail) = match self {
            HandshakeError::VersionMismatch { ours, .. } => {
                (RefusalReason::VersionMismatch, ours.to_string())
            }
            HandshakeError::CipherMismatch { ours, .. } => {
                (RefusalReason::CipherMismatch, ours.clone())
            }
            HandshakeError::NetworkMismatch { ours, .. } => {
                (RefusalReason::NetworkMismatch, ours.clone())
            }
            HandshakeError::PeerMismatch { .. } => (RefusalReason::PeerMismatch, String::new()),
            HandshakeError::TooLarge { max, .. } => {
                (RefusalReason::TooLarge, format!("limit {max} bytes"))
            }
            HandshakeError::Malformed(what) => (RefusalReason::Malformed, (*what).to_owned()),
            HandshakeError::BadSignature => (RefusalReason::BadSignature, String::new()),
            _ => return None,
        };
        Some(Refusal::new(reason, &detail))
    }
}

/// `" (text)"`, or nothing for an empty text.
fn in_parentheses(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

/// Why a message of an established session could not be encrypted or decrypted. Any of these
/// ends the session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: the ciphertext was altered, replayed, reordered or dropped.
    #[error("decryption failed: altered, replayed or reordered ciphertext")]
    Decrypt,
    /// Encryption failed in the backend.
    #[error("encryption failed")]
    Encrypt,
    /// A message counter skipped ahead: messages were lost.
    #[error("message counter {got} is past the expected {expected}")]
    Gap {
        /// The counter received.
        got: u64,
        /// The counter expected.
        expected: u64,
    },
    /// A plaintext larger than one Noise message.
    #[error("plaintext of {0} bytes is larger than one noise message")]
    TooLarge(usize),
    /// 2^64 − 1 messages were sent or received in one direction.
    #[error("nonce space exhausted")]
    NonceExhausted,
    /// A transport message is not a valid envelope.
    #[error("malformed transport message")]
    Malformed,
}

/// Why a setting is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting is out of its allowed range.
    #[error("setting {name} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// The setting's name.
        name: &'static str,
        /// Its value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// The yamux bounds are inconsistent: the connection window must give every stream at
    /// least 256 KiB.
    #[error("mux connection window {window} is less than 256 KiB × {streams} streams")]
    MuxWindow {
        /// The connection window.
        window: usize,
        /// The stream cap.
        streams: usize,
    },
}
