//! The AEADs a session can use ([`NoiseCipher`]), their Noise protocol names, and the
//! limits of the secure channel.

use ring::aead::{Algorithm, Nonce, AES_256_GCM, CHACHA20_POLY1305};

use crate::wire::channel::{self, CounterOrder};
use crate::wire::handshake::Suite;

/// The Noise pattern and primitives of the default cipher ([`NoiseCipher::ChaChaPoly`]).
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// The same with [`NoiseCipher::AesGcm`].
pub const NOISE_PARAMS_AESGCM: &str = "Noise_XX_25519_AESGCM_SHA256";
/// Version of the session protocol, carried in the prologue. Version 2 added the suite byte.
pub const PROTOCOL_VERSION: u16 = crate::wire::handshake::VERSION;
/// What an identity signs, followed by its Noise static public key.
pub const STATIC_KEY_CONTEXT: &[u8] = b"hawser-noise-static-key:";
/// Largest Noise message (the Noise specification's limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;
/// Bytes the AEAD adds to each message.
pub const TAG_LEN: usize = crate::wire::channel::TAG_LEN;
/// Largest plaintext in one Noise message.
pub const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Longest network id, in bytes.
pub const MAX_NETWORK_ID: usize = 64;

/// The AEAD of a Noise session: every node of a cluster must use the same one; a peer with
/// another is refused with [`HandshakeError::CipherMismatch`](super::HandshakeError::CipherMismatch)
/// (and hears [`HandshakeError::Refused`](super::HandshakeError::Refused)).
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
    pub(super) fn nonce(self, n: u64) -> Nonce {
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
pub(super) fn suite(cipher: Option<NoiseCipher>) -> Suite {
    match cipher {
        None => Suite::Plaintext,
        Some(NoiseCipher::ChaChaPoly) => Suite::ChaChaPoly,
        Some(NoiseCipher::AesGcm) => Suite::AesGcm,
    }
}

/// The name of a suite byte, for errors.
pub(super) fn suite_name(byte: u8) -> String {
    match Suite::from_byte(byte) {
        Some(Suite::Plaintext) => "plaintext".to_owned(),
        Some(Suite::ChaChaPoly) => NoiseCipher::ChaChaPoly.name().to_owned(),
        Some(Suite::AesGcm) => NoiseCipher::AesGcm.name().to_owned(),
        None => format!("unknown suite {byte}"),
    }
}

/// The name of what protects a session: the Noise cipher's, or `plaintext`.
pub fn security_name(cipher: Option<NoiseCipher>) -> &'static str {
    cipher.map_or("plaintext", NoiseCipher::name)
}
