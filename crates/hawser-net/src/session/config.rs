//! [`SessionConfig`] and [`Security`]: what a session is configured with, every bound checked
//! by [`SessionConfig::validate`].

use std::sync::Arc;
use std::time::Duration;

use super::error::ConfigError;
use super::identity::Identity;
use super::mux::{range, MuxConfig};
use super::noise::{NetworkId, NoiseCipher, MAX_NOISE_MESSAGE};
use super::registry::ProtocolRegistry;

/// How a session protects its traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Security {
    /// Noise XX with ChaCha20-Poly1305: encrypted, and the peer's identity is proven. The
    /// default.
    #[default]
    Noise,
    /// Noise XX with AES-256-GCM ([`NoiseCipher::AesGcm`]): the same guarantees, faster on
    /// CPUs with AES instructions (`docs/security.md`). Every node of a cluster must choose
    /// the same; a peer with another cipher fails the handshake with
    /// [`HandshakeError::CipherMismatch`](super::HandshakeError::CipherMismatch) at the end
    /// that refuses it, and [`HandshakeError::Refused`](super::HandshakeError::Refused) at the
    /// other.
    NoiseAesGcm,
    /// **No encryption and no authentication**: the peer's identity is only claimed, and
    /// anyone on the path can read, alter and inject traffic. For benchmarks and for
    /// interoperating with the LSP reference; never for node sessions on a real network.
    DangerPlaintext,
}

impl Security {
    /// The Noise cipher, or `None` in plaintext mode.
    pub fn cipher(self) -> Option<NoiseCipher> {
        match self {
            Security::Noise => Some(NoiseCipher::ChaChaPoly),
            Security::NoiseAesGcm => Some(NoiseCipher::AesGcm),
            Security::DangerPlaintext => None,
        }
    }

    /// Whether traffic is encrypted and peers authenticated (every choice but plaintext).
    pub fn is_encrypted(self) -> bool {
        self.cipher().is_some()
    }
}

/// Everything a session is configured with; every queue and wait is bounded here.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// This node's identity.
    pub identity: Arc<Identity>,
    /// The cluster's name; only nodes with the same one form sessions.
    pub network_id: NetworkId,
    /// Encryption. Default [`Security::Noise`].
    pub security: Security,
    /// The protocols this node offers.
    pub protocols: ProtocolRegistry,
    /// Longest a handshake may take, from the transport connection (for a listener, from
    /// the accept) to the established session. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest handshake message accepted, in bytes (256..=65,535). Default 8 KiB.
    pub max_handshake_message: usize,
    /// Listener only: most handshakes in progress at once (including established sessions
    /// not yet taken by [`Listener::accept`](super::Listener::accept)); connections beyond it are closed at once and
    /// counted. Default 64.
    pub max_pending_handshakes: usize,
    /// Sealed bytes held for a byte-stream transport that has not taken them yet, before the
    /// multiplexer's writes wait (4 KiB..=4 MiB; one sealed message more may be held).
    /// Smaller favours latency, larger throughput. Default 64 KiB.
    pub pipe_buffer: usize,
    /// Inbound streams of one protocol waiting for the application (1..=1,024); a stream
    /// arriving while its queue is full is reset. Default 16.
    pub max_queued_streams: usize,
    /// Longest an inbound stream may take to name its protocol. Default 5 s.
    pub stream_header_timeout: Duration,
    /// Multiplexer bounds.
    pub mux: MuxConfig,
}

impl SessionConfig {
    /// A configuration with every setting at its default and no protocols.
    pub fn new(identity: Arc<Identity>, network_id: NetworkId) -> SessionConfig {
        SessionConfig {
            identity,
            network_id,
            security: Security::Noise,
            protocols: ProtocolRegistry::new(),
            handshake_timeout: Duration::from_secs(10),
            max_handshake_message: 8 * 1024,
            max_pending_handshakes: 64,
            pipe_buffer: 64 * 1024,
            max_queued_streams: 16,
            stream_header_timeout: Duration::from_secs(5),
            mux: MuxConfig::default(),
        }
    }

    /// Checks every bound.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "max_handshake_message",
            self.max_handshake_message,
            256,
            MAX_NOISE_MESSAGE,
        )?;
        range(
            "max_pending_handshakes",
            self.max_pending_handshakes,
            1,
            65_536,
        )?;
        range("pipe_buffer", self.pipe_buffer, 4096, 4 << 20)?;
        range("max_queued_streams", self.max_queued_streams, 1, 1024)?;
        let ms = |d: Duration| usize::try_from(d.as_millis()).unwrap_or(usize::MAX);
        range(
            "handshake_timeout (ms)",
            ms(self.handshake_timeout),
            1,
            3_600_000,
        )?;
        range(
            "stream_header_timeout (ms)",
            ms(self.stream_header_timeout),
            1,
            3_600_000,
        )?;
        self.mux.validate()
    }
}
