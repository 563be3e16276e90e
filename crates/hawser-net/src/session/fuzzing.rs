//! Entry points for the fuzz targets in `fuzz/` into the session layer's crate-private
//! parsing: the identity payload of handshake messages 2 and 3. Built only with
//! `--cfg fuzzing` (as `cargo fuzz` builds); not an API.

use super::noise::Remote;
use super::HandshakeError;

/// Parses and verifies an identity payload against the sender's Noise static key, as a
/// handshake does with the decrypted payload of message 2 or 3.
///
/// # Errors
/// As the handshake's parser.
pub fn parse_identity_payload(
    payload: &[u8],
    remote_static: &[u8],
) -> Result<Remote, HandshakeError> {
    super::noise::parse_identity_payload(payload, remote_static)
}
