//! The clear parts of a session handshake: the prologue a Noise first message carries, the
//! plaintext-mode hello, the "other mode" check on a first message, and the identity payload
//! of messages 2 and 3 (reached through the crate's fuzzing entry point, since it is only ever
//! seen decrypted). None may panic; a parsed hello names the key it carried.
#![no_main]

use arbitrary::Arbitrary;
use hawser_proto::session::cipher::STATIC_KEY_CONTEXT;
use hawser_proto::session::fuzzing::parse_identity_payload;
use hawser_proto::session::hello::{
    check_prologue, foreign_mode_error, parse_plaintext_hello, plaintext_hello,
};
use hawser_proto::session::{Identity, NetworkId, NoiseCipher, ProtocolRegistry};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    cipher: u8,
    bytes: &'a [u8],
    /// For the identity payload: sign the static key correctly, then append `bytes` as the
    /// protocol list (so that the list parser is reached past the signature check).
    signed: bool,
    secret: [u8; 32],
    remote_static: [u8; 32],
}

fuzz_target!(|input: Input<'_>| {
    let network = NetworkId::new("fuzz").unwrap();
    let cipher = match input.cipher % 3 {
        0 => None,
        1 => Some(NoiseCipher::ChaChaPoly),
        _ => Some(NoiseCipher::AesGcm),
    };
    let _ = check_prologue(&network, cipher, input.bytes);
    let _ = foreign_mode_error(&network, cipher, input.bytes);
    if let Ok(remote) = parse_plaintext_hello(&network, input.bytes, None) {
        assert_eq!(remote.peer_id, remote.public_key.peer_id());
    }

    let identity = Identity::from_secret_bytes(&input.secret);
    let payload = if input.signed {
        let mut signed = STATIC_KEY_CONTEXT.to_vec();
        signed.extend_from_slice(&input.remote_static);
        let mut p = vec![1u8];
        p.extend_from_slice(&identity.public_key().to_bytes());
        p.extend_from_slice(&identity.sign(&signed));
        p.extend_from_slice(input.bytes);
        p
    } else {
        input.bytes.to_vec()
    };
    match parse_identity_payload(&payload, &input.remote_static) {
        Ok(remote) => {
            assert_eq!(remote.peer_id, identity.peer_id());
            assert!(input.signed || payload.len() > 97);
        }
        Err(_) => {
            if input.signed {
                assert!(ProtocolRegistry::parse(input.bytes).is_err());
            }
        }
    }

    // A hello we write parses back, whatever protocol list it carries.
    if let Ok(protocols) = ProtocolRegistry::parse(input.bytes) {
        let hello = plaintext_hello(&identity, &network, &protocols);
        let remote = parse_plaintext_hello(&network, &hello, Some(identity.peer_id())).unwrap();
        assert_eq!(remote.protocols, protocols);
    }
});
