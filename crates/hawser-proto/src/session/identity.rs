//! Node identities: an ed25519 key pair ([`Identity`]), its public half ([`PublicKey`]) and
//! the printable name derived from it ([`PeerId`]).
//!
//! # `PeerId`
//! A `PeerId` is the SHA-256 digest of the 32-byte ed25519 public key, printed in base58
//! (Bitcoin alphabet, no prefix; 43 or 44 characters). It is stable (it depends on the public
//! key only), parses back with [`str::parse`], and commits to the key: a peer proves a
//! `PeerId` by showing the public key that hashes to it and a signature made with that key
//! (see [`handshake`](super::handshake)).
//!
//! # Key file
//! The one file I/O of this crate: [`Identity::save`] writes a small text file, readable only by its owner on Unix (mode 0600):
//! ```text
//! hawser-identity v1
//! secret <base58 of the 32-byte ed25519 secret seed>
//! peer-id <the PeerId, for the reader's convenience; checked on load>
//! ```

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The first line of a key file.
const KEY_FILE_MAGIC: &str = "hawser-identity v1";

pub use crate::wire::handshake::{PUBLIC_KEY_LEN, SIGNATURE_LEN};

/// A node's long-term identity: an ed25519 signing key. The secret is wiped from memory when
/// the value is dropped.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// A fresh identity drawn from the operating system's random source.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn generate() -> Result<Identity, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        let identity = Identity::from_secret_bytes(&seed);
        seed.fill(0);
        Ok(identity)
    }

    /// The identity whose ed25519 secret seed is `secret` (deterministic: for tests and for
    /// keys kept elsewhere).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Identity {
        Identity {
            signing: SigningKey::from_bytes(secret),
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The identity's [`PeerId`].
    pub fn peer_id(&self) -> PeerId {
        self.public_key().peer_id()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// The key file's text (see the [module docs](self)). It contains the secret.
    pub fn to_key_file(&self) -> String {
        format!(
            "{KEY_FILE_MAGIC}\nsecret {}\npeer-id {}\n",
            bs58::encode(self.signing.as_bytes()).into_string(),
            self.peer_id()
        )
    }

    /// Parses a key file's text.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] if the text is not a v1 key file or its `peer-id` line does not
    /// match the secret.
    pub fn from_key_file(text: &str) -> Result<Identity, KeyError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(KEY_FILE_MAGIC) {
            return Err(KeyError::Malformed(
                "missing the `hawser-identity v1` header",
            ));
        }
        let mut secret = None;
        let mut peer_id = None;
        for line in lines {
            match line.split_once(' ') {
                Some(("secret", v)) => secret = Some(v.trim()),
                Some(("peer-id", v)) => peer_id = Some(v.trim()),
                _ => return Err(KeyError::Malformed("unknown line")),
            }
        }
        let secret = secret.ok_or(KeyError::Malformed("no `secret` line"))?;
        let mut seed = [0u8; 32];
        match bs58::decode(secret).onto(&mut seed) {
            Ok(32) => {}
            _ => return Err(KeyError::Malformed("the secret is not 32 bytes of base58")),
        }
        let identity = Identity::from_secret_bytes(&seed);
        seed.fill(0);
        if let Some(p) = peer_id {
            if p.parse::<PeerId>().ok() != Some(identity.peer_id()) {
                return Err(KeyError::Malformed("`peer-id` does not match the secret"));
            }
        }
        Ok(identity)
    }

    /// Writes the key file to `path`, which must not exist yet (a key is never overwritten by
    /// accident); on Unix the file is created with mode 0600.
    ///
    /// # Errors
    /// [`KeyError::Io`], including `AlreadyExists`.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        file.write_all(self.to_key_file().as_bytes())?;
        file.sync_all()?;
        Ok(())
    }

    /// Reads a key file written by [`save`](Self::save).
    ///
    /// # Errors
    /// [`KeyError::Io`] or [`KeyError::Malformed`]. Files larger than 4 KiB are refused.
    pub fn load(path: &Path) -> Result<Identity, KeyError> {
        let meta = std::fs::metadata(path)?;
        if meta.len() > 4096 {
            return Err(KeyError::Malformed("key file larger than 4 KiB"));
        }
        let text = std::fs::read_to_string(path)?;
        Identity::from_key_file(&text)
    }
}

/// Two identities are equal when their public keys are (the secret determines the key).
impl PartialEq for Identity {
    fn eq(&self, other: &Identity) -> bool {
        self.public_key().to_bytes() == other.public_key().to_bytes()
    }
}

impl Eq for Identity {}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .finish()
    }
}

/// An ed25519 public key: the public half of an [`Identity`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 32 bytes.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] if the bytes are not a valid curve point.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::Malformed("not an ed25519 public key"))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// The [`PeerId`] of this key.
    pub fn peer_id(&self) -> PeerId {
        PeerId(Sha256::digest(self.0.as_bytes()).into())
    }

    /// Whether `signature` is this key's signature of `message` (strict verification: weak
    /// keys and malleable signatures are refused).
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        !self.0.is_weak() && self.0.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({})",
            bs58::encode(self.0.as_bytes()).into_string()
        )
    }
}

/// A peer's stable, printable name: SHA-256 of its ed25519 public key, shown in base58.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId([u8; 32]);

impl PeerId {
    /// The 32 digest bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The `PeerId` with these digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> PeerId {
        PeerId(bytes)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({self})")
    }
}

impl FromStr for PeerId {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<PeerId, KeyError> {
        let mut bytes = [0u8; 32];
        // 32 bytes never need more than 44 base58 characters.
        if s.len() > 44 {
            return Err(KeyError::Malformed("a PeerId has at most 44 characters"));
        }
        match bs58::decode(s).onto(&mut bytes) {
            Ok(32) => Ok(PeerId(bytes)),
            _ => Err(KeyError::Malformed("a PeerId is 32 bytes of base58")),
        }
    }
}

/// Why a key, key file or `PeerId` could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
    /// The text or bytes are not what they should be.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// The operating system's random source failed.
    #[error("random source: {0}")]
    Random(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_and_is_stable() {
        let id = Identity::from_secret_bytes(&[7; 32]);
        let text = id.peer_id().to_string();
        assert_eq!(text.parse::<PeerId>().unwrap(), id.peer_id());
        assert_eq!(
            Identity::from_secret_bytes(&[7; 32]).peer_id(),
            id.peer_id()
        );
        assert_ne!(
            Identity::from_secret_bytes(&[8; 32]).peer_id(),
            id.peer_id()
        );
        assert!("not-base58-0OIl".parse::<PeerId>().is_err());
        assert!("abc".parse::<PeerId>().is_err());
    }

    #[test]
    fn key_file_round_trips_and_detects_mismatch() {
        let id = Identity::generate().unwrap();
        let text = id.to_key_file();
        let back = Identity::from_key_file(&text).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
        let other = Identity::from_secret_bytes(&[1; 32]).peer_id();
        let forged = text.replace(&id.peer_id().to_string(), &other.to_string());
        assert!(Identity::from_key_file(&forged).is_err());
        assert!(Identity::from_key_file("garbage").is_err());
        assert!(!format!("{id:?}").contains(&bs58::encode(id.signing.as_bytes()).into_string()));
    }

    #[test]
    fn save_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("hawser-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let id = Identity::generate().unwrap();
        id.save(&path).unwrap();
        assert!(id.save(&path).is_err());
        assert_eq!(Identity::load(&path).unwrap().peer_id(), id.peer_id());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn signatures_verify() {
        let id = Identity::from_secret_bytes(&[3; 32]);
        let sig = id.sign(b"hello");
        assert!(id.public_key().verify(b"hello", &sig));
        assert!(!id.public_key().verify(b"hellO", &sig));
    }
}
