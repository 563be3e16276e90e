//! Handshake and transport-mode tests of the Noise channel.

use super::cipher::{MAX_PLAINTEXT, PROTOCOL_VERSION};
use super::handshake::{identity_payload, parse_identity_payload};
use super::hello::{check_prologue, parse_plaintext_hello, plaintext_hello, prologue};
use super::*;
use crate::wire::handshake::MAGIC as PROLOGUE_MAGIC;

fn registry() -> ProtocolRegistry {
    let mut r = ProtocolRegistry::new();
    r.register(Protocol::new(ProtocolId(7), "echo", &[1, 2]).unwrap())
        .unwrap();
    r
}

fn run(
    a: &mut Handshake,
    b: &mut Handshake,
    tamper: impl Fn(usize, &mut Vec<u8>),
) -> Result<(), HandshakeError> {
    let mut step = 0;
    while !(a.is_finished() && b.is_finished()) {
        if let Some(mut m) = a.poll_transmit()? {
            tamper(step, &mut m);
            step += 1;
            b.handle_message(&m)?;
        }
        if let Some(mut m) = b.poll_transmit()? {
            tamper(step, &mut m);
            step += 1;
            a.handle_message(&m)?;
        }
    }
    Ok(())
}

fn pair(net_a: &str, net_b: &str, pin: Option<PeerId>) -> (Handshake, Handshake) {
    pair_with(
        NoiseCipher::ChaChaPoly,
        NoiseCipher::ChaChaPoly,
        net_a,
        net_b,
        pin,
    )
}

/// A handshake pair with a cipher for each end.
fn pair_with(
    cipher_a: NoiseCipher,
    cipher_b: NoiseCipher,
    net_a: &str,
    net_b: &str,
    pin: Option<PeerId>,
) -> (Handshake, Handshake) {
    let ia = Identity::from_secret_bytes(&[1; 32]);
    let ib = Identity::from_secret_bytes(&[2; 32]);
    let a = Handshake::new(
        Role::Initiator,
        cipher_a,
        &ia,
        &NetworkId::new(net_a).unwrap(),
        &registry(),
        4096,
        pin,
    )
    .unwrap();
    let b = Handshake::new(
        Role::Responder,
        cipher_b,
        &ib,
        &NetworkId::new(net_b).unwrap(),
        &registry(),
        4096,
        None,
    )
    .unwrap();
    (a, b)
}

/// The two ciphers of a finished handshake between the test identities, on one network.
fn established(cipher: NoiseCipher) -> (Cipher, Cipher) {
    let (mut a, mut b) = pair_with(cipher, cipher, "n", "n", None);
    run(&mut a, &mut b, |_, _| {}).unwrap();
    let (ca, _) = a.into_established().unwrap();
    let (cb, _) = b.into_established().unwrap();
    (ca, cb)
}

/// A finished handshake with `cipher` in which the initiator pinned the responder: checks
/// that each end proved the other's identity and learned its protocols.
fn established_and_proven(cipher: NoiseCipher) -> (Cipher, Cipher) {
    let (mut a, mut b) = pair_with(
        cipher,
        cipher,
        "n",
        "n",
        Some(Identity::from_secret_bytes(&[2; 32]).peer_id()),
    );
    run(&mut a, &mut b, |_, _| {}).unwrap();
    let (ca, ra) = a.into_established().unwrap();
    let (cb, rb) = b.into_established().unwrap();
    assert_eq!(ra.peer_id, Identity::from_secret_bytes(&[2; 32]).peer_id());
    assert_eq!(rb.peer_id, Identity::from_secret_bytes(&[1; 32]).peer_id());
    assert!(rb.protocols.protocol(ProtocolId(7)).is_some());
    (ca, cb)
}

#[test]
fn handshake_then_duplex_encryption() {
    let (ca, cb) = established_and_proven(NoiseCipher::ChaChaPoly);
    let (mut sa, _) = ca.split();
    let (_, mut ob) = cb.split();
    let mut ct = Vec::new();
    sa.seal(b"hello", &mut ct).unwrap();
    let mut pt = ct.clone();
    assert_eq!(ob.open_counted_in_place(0, &mut pt).unwrap(), Some(5));
    assert_eq!(&pt[..5], b"hello");
    // A replay of counter 0 is a duplicate, dropped before decryption.
    assert_eq!(ob.open_counted_in_place(0, &mut ct.clone()).unwrap(), None);
    assert_eq!(ob.duplicates(), 1);
    // A jump ahead is a gap.
    assert!(matches!(
        ob.open_counted_in_place(5, &mut ct.clone()),
        Err(CryptoError::Gap { .. })
    ));
    let mut pt = Vec::new();
    // A bit flip fails authentication.
    let mut ct2 = Vec::new();
    sa.seal(b"world", &mut ct2).unwrap();
    ct2[3] ^= 1;
    assert_eq!(ob.open(&ct2, &mut pt), Err(CryptoError::Decrypt));
}

const CIPHERS: [NoiseCipher; 2] = [NoiseCipher::ChaChaPoly, NoiseCipher::AesGcm];

#[test]
fn counted_messages_open_in_place_like_copied_ones() {
    for cipher in CIPHERS {
        counted_messages_open_in_place(cipher);
    }
}

fn counted_messages_open_in_place(cipher: NoiseCipher) {
    let (ca, cb) = established(cipher);
    let (mut sa, _) = ca.split();
    let (_, mut ob) = cb.split();
    let mut ct = Vec::new();
    sa.seal(b"hello", &mut ct).unwrap();
    let mut msg = ct.clone();
    assert_eq!(ob.open_counted_in_place(0, &mut msg).unwrap(), Some(5));
    assert_eq!(&msg[..5], b"hello");
    // A replay is a duplicate, dropped before decryption; a jump ahead is a gap.
    let mut replay = ct.clone();
    assert_eq!(ob.open_counted_in_place(0, &mut replay).unwrap(), None);
    assert_eq!(replay, ct, "a duplicate is left as it is");
    assert_eq!(ob.duplicates(), 1);
    assert!(matches!(
        ob.open_counted_in_place(5, &mut replay),
        Err(CryptoError::Gap { .. })
    ));
    // Sealed in place, opened in place; then a bit flip fails authentication.
    let mut buf = b"world".to_vec();
    sa.seal_in_place(&mut buf, 0).unwrap();
    assert_eq!(
        ob.open_counted_in_place(1, &mut buf.clone()).unwrap(),
        Some(5)
    );
    let mut next = b"again".to_vec();
    sa.seal_in_place(&mut next, 0).unwrap();
    next[2] ^= 1;
    assert_eq!(
        ob.open_counted_in_place(2, &mut next),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn another_cipher_is_named_by_the_responder() {
    let (mut a, mut b) = pair_with(NoiseCipher::AesGcm, NoiseCipher::ChaChaPoly, "n", "n", None);
    let err = run(&mut a, &mut b, |_, _| {}).unwrap_err();
    match err {
        HandshakeError::CipherMismatch { ours, theirs } => {
            assert_eq!((ours.as_str(), theirs.as_str()), ("ChaChaPoly", "AESGCM"));
        }
        other => panic!("expected a cipher mismatch, got {other}"),
    }
    // A plaintext-mode hello is named too, and an unknown suite byte.
    let net = NetworkId::new("n").unwrap();
    let plain = prologue(&net, None);
    assert!(matches!(
        check_prologue(&net, Some(NoiseCipher::ChaChaPoly), &plain),
        Err(HandshakeError::CipherMismatch { .. })
    ));
    let mut unknown = prologue(&net, Some(NoiseCipher::AesGcm));
    unknown[PROLOGUE_MAGIC.len() + 2] = 9;
    let err = check_prologue(&net, Some(NoiseCipher::AesGcm), &unknown).unwrap_err();
    assert!(err.to_string().contains("unknown suite 9"), "{err}");
}

#[test]
fn a_version_1_hello_is_named_as_such() {
    // Version 1's prologue had no suite byte: magic | u16 1 | u8 len | network id.
    let net = NetworkId::new("n").unwrap();
    let mut v1 = PROLOGUE_MAGIC.to_vec();
    v1.extend_from_slice(&1u16.to_be_bytes());
    v1.push(1);
    v1.extend_from_slice(b"n");
    match check_prologue(&net, Some(NoiseCipher::ChaChaPoly), &v1) {
        Err(HandshakeError::VersionMismatch { ours, theirs }) => {
            assert_eq!((ours, theirs), (PROTOCOL_VERSION, 1));
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}

#[test]
fn aes_gcm_handshake_proves_identities_and_carries_data() {
    let (ca, cb) = established_and_proven(NoiseCipher::AesGcm);
    let (mut sa, _) = ca.split();
    let (_, mut ob) = cb.split();
    let mut msg = b"over aes".to_vec();
    sa.seal_in_place(&mut msg, 0).unwrap();
    assert_eq!(ob.open_counted_in_place(0, &mut msg).unwrap(), Some(8));
    assert_eq!(&msg[..8], b"over aes");
}

#[test]
fn wrong_network_is_named_by_the_responder() {
    let (mut a, mut b) = pair("blue", "green", None);
    let err = run(&mut a, &mut b, |_, _| {}).unwrap_err();
    assert!(
        matches!(err, HandshakeError::NetworkMismatch { .. }),
        "{err}"
    );
}

#[test]
fn wrong_pin_fails_at_the_initiator_before_it_reveals_itself() {
    let other = Identity::from_secret_bytes(&[9; 32]).peer_id();
    let (mut a, mut b) = pair("n", "n", Some(other));
    let err = run(&mut a, &mut b, |_, _| {}).unwrap_err();
    assert!(matches!(err, HandshakeError::PeerMismatch { .. }), "{err}");
}

#[test]
fn tampered_handshake_message_fails() {
    for target in 0..3 {
        let (mut a, mut b) = pair("n", "n", None);
        let res = run(&mut a, &mut b, |step, m| {
            if step == target {
                let last = m.len() - 1;
                m[last] ^= 0x80;
            }
        });
        assert!(res.is_err(), "tampering message {target} went unnoticed");
    }
}

#[test]
fn oversized_handshake_message_is_refused() {
    let (_, mut b) = pair("n", "n", None);
    let err = b.handle_message(&[0; 5000]).unwrap_err();
    assert!(matches!(err, HandshakeError::TooLarge { .. }));
}

#[test]
fn plaintext_hello_round_trip() {
    let id = Identity::from_secret_bytes(&[4; 32]);
    let net = NetworkId::new("n").unwrap();
    let hello = plaintext_hello(&id, &net, &registry());
    let remote = parse_plaintext_hello(&net, &hello, Some(id.peer_id())).unwrap();
    assert_eq!(remote.peer_id, id.peer_id());
    let other = NetworkId::new("other").unwrap();
    assert!(matches!(
        parse_plaintext_hello(&other, &hello, None),
        Err(HandshakeError::NetworkMismatch { .. })
    ));
    for cut in 0..hello.len() {
        assert!(parse_plaintext_hello(&net, &hello[..cut], None).is_err());
    }
}

#[test]
fn sealing_in_place_gives_the_messages_of_snow_both_ways() {
    // snow implements each cipher's nonce encoding itself: matching it byte for byte checks
    // ours (little-endian for ChaChaPoly, big-endian for AESGCM).
    for cipher in CIPHERS {
        sealing_in_place_matches_snow(cipher);
    }
}

fn sealing_in_place_matches_snow(cipher: NoiseCipher) {
    let (ca, cb) = established(cipher);
    let (mut seal_a, mut open_a) = ca.split();
    let (mut seal_b, mut open_b) = cb.split();
    for (i, len) in [0usize, 1, 64, 1024, MAX_PLAINTEXT].into_iter().enumerate() {
        let plain: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        // In place (after a 2-byte head, as on a byte stream) against snow's copy.
        let mut in_place = vec![0xa5, 0xa5];
        in_place.extend_from_slice(&plain);
        seal_a.seal_in_place(&mut in_place, 2).unwrap();
        let mut copied = vec![0xa5, 0xa5];
        let mut twin = seal_a_twin(&mut seal_a);
        twin.seal(&plain, &mut copied).unwrap();
        assert_eq!(in_place, copied, "message {i}, {len} bytes");
        // snow opens what was sealed in place, then opening in place reads snow's.
        let mut out = Vec::new();
        open_b.open(&in_place[2..], &mut out).unwrap();
        assert_eq!(out, plain);
        let mut back = Vec::new();
        seal_b.seal(&plain, &mut back).unwrap();
        let n = open_a.open_in_place(&mut back).unwrap();
        assert_eq!(&back[..n], &plain[..]);
    }
    // A flipped bit fails, in place too.
    let mut msg = b"hello".to_vec();
    seal_b.seal_in_place(&mut msg, 0).unwrap();
    msg[0] ^= 1;
    assert_eq!(open_a.open_in_place(&mut msg), Err(CryptoError::Decrypt));
}

/// A sealer going through snow (no in-place key) at the nonce `sealer` used last, so that
/// both seal the same message.
fn seal_a_twin(sealer: &mut Sealer) -> Sealer {
    Sealer {
        state: sealer.state.clone(),
        key: None,
        nonce: sealer.nonce - 1,
    }
}

proptest::proptest! {
    /// The decoders of handshake input never panic on any bytes: they accept or name an error.
    #[test]
    fn handshake_input_decoders_never_panic(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        suite in 0u8..3,
    ) {
        let net = NetworkId::new("n").unwrap();
        let cipher = match suite {
            0 => None,
            1 => Some(NoiseCipher::ChaChaPoly),
            _ => Some(NoiseCipher::AesGcm),
        };
        let _ = check_prologue(&net, cipher, &bytes);
        let _ = parse_plaintext_hello(&net, &bytes, None);
        let _ = parse_identity_payload(&bytes, &[0; 32]);
        // A responder fed them as the first message, an initiator as the second.
        let (mut a, mut b) = pair("n", "n", None);
        let _ = b.handle_message(&bytes);
        let first = a.poll_transmit().unwrap().unwrap();
        proptest::prop_assert!(first.len() > 32);
        proptest::prop_assert!(a.handle_message(&bytes).is_err());
    }

    /// Every byte of the prologue matters: changing any one, or cutting or extending it, is
    /// refused.
    #[test]
    fn any_change_to_a_prologue_is_refused(
        at in 0usize..64,
        flip in 1u8..=255,
        suite in 0u8..3,
        extra in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..4),
    ) {
        let net = NetworkId::new("cluster-7").unwrap();
        let cipher = match suite {
            0 => None,
            1 => Some(NoiseCipher::ChaChaPoly),
            _ => Some(NoiseCipher::AesGcm),
        };
        let good = prologue(&net, cipher);
        proptest::prop_assert!(check_prologue(&net, cipher, &good).is_ok());
        let mut changed = good.clone();
        let at = at % good.len();
        changed[at] ^= flip;
        proptest::prop_assert!(check_prologue(&net, cipher, &changed).is_err());
        proptest::prop_assert!(check_prologue(&net, cipher, &good[..at]).is_err());
        let mut longer = good.clone();
        longer.extend_from_slice(&extra);
        proptest::prop_assert!(check_prologue(&net, cipher, &longer).is_err());
    }
}

/// Bytes from a hex string (whitespace ignored).
fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Two protocols, for the golden lists.
fn golden_registry() -> ProtocolRegistry {
    let mut r = registry();
    r.register(Protocol::new(ProtocolId(1024), "kv", &[3]).unwrap())
        .unwrap();
    r
}

/// The protocol list of [`golden_registry`].
const GOLDEN_LIST: &str = "0002 00000007 04 6563686f 02 0001 0002 00000400 02 6b76 01 0003";
/// The ed25519 public key of the secret `[4; 32]`.
const GOLDEN_KEY: &str = "ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7c";
/// Its signature of `STATIC_KEY_CONTEXT` then `[0x11; 32]`.
const GOLDEN_SIG: &str = "77d16e4d7ca4daf23ca3bde060daa660127d911571489780b0af64d339b9da7c\
                          c9c5030f26a34cf0d24be15c783ee280058bcb39729f6a0fd349d6510e656a08";

#[test]
fn protocol_list_golden_bytes() {
    let mut out = vec![];
    golden_registry().emit(&mut out);
    assert_eq!(out, unhex(GOLDEN_LIST));
    assert_eq!(ProtocolRegistry::parse(&out).unwrap(), golden_registry());
}

#[test]
fn prologue_golden_bytes() {
    let net = NetworkId::new("n").unwrap();
    // "hawser-session" | version 2 | suite | length 1 | "n"
    let magic = "6861777365722d73657373696f6e";
    for (cipher, suite) in [
        (None, "00"),
        (Some(NoiseCipher::ChaChaPoly), "01"),
        (Some(NoiseCipher::AesGcm), "02"),
    ] {
        let golden = unhex(&format!("{magic} 0002 {suite} 01 6e"));
        assert_eq!(prologue(&net, cipher), golden);
        assert!(check_prologue(&net, cipher, &golden).is_ok());
    }
}

#[test]
fn plaintext_hello_golden_bytes() {
    let id = Identity::from_secret_bytes(&[4; 32]);
    let net = NetworkId::new("n").unwrap();
    let golden = unhex(&format!(
        "6861777365722d73657373696f6e 0002 00 01 6e {GOLDEN_KEY} {GOLDEN_LIST}"
    ));
    assert_eq!(plaintext_hello(&id, &net, &golden_registry()), golden);
    let remote = parse_plaintext_hello(&net, &golden, Some(id.peer_id())).unwrap();
    assert_eq!(remote.protocols, golden_registry());
}

#[test]
fn identity_payload_golden_bytes() {
    let id = Identity::from_secret_bytes(&[4; 32]);
    let golden = unhex(&format!("01 {GOLDEN_KEY} {GOLDEN_SIG} {GOLDEN_LIST}"));
    assert_eq!(
        identity_payload(&id, &[0x11; 32], &golden_registry()),
        golden
    );
    let remote = parse_identity_payload(&golden, &[0x11; 32]).unwrap();
    assert_eq!(remote.peer_id, id.peer_id());
    assert_eq!(remote.protocols, golden_registry());
    assert!(matches!(
        parse_identity_payload(&golden, &[0x12; 32]),
        Err(HandshakeError::BadSignature)
    ));
}
