//! Refusals: for each misconfiguration, the refusing end names the mismatch and the refused
//! end hears the same reason (`HandshakeError::Refused`), over a byte stream, a message
//! transport and TCP on 127.0.0.1.

mod session_common;

use hawser_net::proto::wire::refusal::Refusal;
use hawser_net::session::{
    accept, connect, dial, memory_duplex_pair, memory_message_pair, CloseReason, DialError,
    HandshakeError, Identity, Protocol, ProtocolId, RawConnection, RefusalReason, Security,
    Session, SessionConfig, TransportConfig,
};
use session_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Outcome = Result<Session, HandshakeError>;

/// The transports every case runs over.
#[derive(Clone, Copy, Debug)]
enum Via {
    Bytes,
    Messages,
    Tcp,
}

const ALL: [Via; 3] = [Via::Bytes, Via::Messages, Via::Tcp];

/// Runs one handshake: `a` dials (pinning `pin`), `b` accepts; both outcomes, each step under
/// [`STEP`].
async fn handshake(
    via: Via,
    a: &SessionConfig,
    b: &SessionConfig,
    pin: Option<hawser_net::session::PeerId>,
) -> (Outcome, Outcome) {
    let run = async {
        match via {
            Via::Bytes => {
                let (l, r) = memory_duplex_pair(64 * 1024);
                tokio::join!(
                    connect(RawConnection::bytes(l), a, pin),
                    accept(RawConnection::bytes(r), b)
                )
            }
            Via::Messages => {
                let (l, r) = memory_message_pair(16 * 1024, 64);
                tokio::join!(
                    connect(RawConnection::messages(l), a, pin),
                    accept(RawConnection::messages(r), b)
                )
            }
            Via::Tcp => {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = format!("tcp://{}", listener.local_addr().unwrap())
                    .parse()
                    .unwrap();
                let transport = TransportConfig::default();
                let dialed = async {
                    dial(&addr, &transport, a, pin).await.map_err(|e| match e {
                        DialError::Handshake(h) => h,
                        other => panic!("transport failed: {other}"),
                    })
                };
                let accepted = async {
                    let (stream, _) = listener.accept().await.unwrap();
                    accept(RawConnection::bytes(stream), b).await
                };
                tokio::join!(dialed, accepted)
            }
        }
    };
    tokio::time::timeout(STEP, run)
        .await
        .expect("handshake hung")
}

/// Both ends failed with `reason`: the refused end (`refused`) hears it from the peer, the
/// other names it itself. Returns both errors.
#[track_caller]
fn assert_both(
    via: Via,
    refused: Outcome,
    refuser: Outcome,
    reason: RefusalReason,
) -> (HandshakeError, HandshakeError) {
    let (Err(refused), Err(refuser)) = (refused, refuser) else {
        panic!("{via:?}: both ends should fail");
    };
    assert!(refused.is_refused_by_peer(), "{via:?}: {refused}");
    assert!(!refuser.is_refused_by_peer(), "{via:?}: {refuser}");
    assert_eq!(refused.refusal_reason(), Some(reason), "{via:?}: {refused}");
    assert_eq!(refuser.refusal_reason(), Some(reason), "{via:?}: {refuser}");
    (refused, refuser)
}

#[tokio::test]
async fn a_network_id_mismatch_is_named_on_both_ends() {
    let a = config_with(1, "blue", &[(ECHO, "echo", &[1])]);
    let b = config_with(2, "green", &[(ECHO, "echo", &[1])]);
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, None).await;
        let (refused, refuser) = assert_both(via, ca, cb, RefusalReason::NetworkMismatch);
        assert_eq!(
            refused.to_string(),
            r#"refused by peer: network id mismatch (ours "blue", theirs "green")"#
        );
        assert_eq!(
            refuser.to_string(),
            r#"refused peer: network id mismatch (ours "green", theirs "blue")"#
        );
    }
}

#[tokio::test]
async fn a_cipher_mismatch_is_named_on_both_ends() {
    let a = config(1);
    let mut b = config(2);
    b.security = Security::NoiseAesGcm;
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, None).await;
        let (refused, refuser) = assert_both(via, ca, cb, RefusalReason::CipherMismatch);
        assert_eq!(
            refused.to_string(),
            "refused by peer: cipher mismatch (ours ChaChaPoly, theirs AESGCM)"
        );
        assert_eq!(
            refuser.to_string(),
            "refused peer: cipher mismatch (ours AESGCM, theirs ChaChaPoly)"
        );
    }
}

#[tokio::test]
async fn a_plaintext_dialer_hears_why_a_noise_acceptor_refused_it() {
    let (a, b) = (plaintext(config(1)), config(2));
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, None).await;
        let (refused, _) = assert_both(via, ca, cb, RefusalReason::CipherMismatch);
        assert_eq!(
            refused.to_string(),
            "refused by peer: cipher mismatch (ours plaintext, theirs ChaChaPoly)"
        );
    }
}

#[tokio::test]
async fn a_noise_dialer_and_a_plaintext_acceptor_both_name_the_cipher_mismatch() {
    // Both send first in their own mode, so each recognises the other's first message.
    let (a, b) = (config(1), plaintext(config(2)));
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, None).await;
        for (end, err) in [("dialer", ca), ("acceptor", cb)] {
            let err = err.expect_err("the handshake must fail");
            assert_eq!(
                err.refusal_reason(),
                Some(RefusalReason::CipherMismatch),
                "{via:?} {end}: {err}"
            );
        }
    }
}

#[tokio::test]
async fn a_wrong_pin_fails_and_the_pinned_peer_hears_why() {
    let (a, b) = (config(1), config(2));
    let impostor = Identity::from_secret_bytes(&[77; 32]).peer_id();
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, Some(impostor)).await;
        // The dialer refuses the acceptor: it is the acceptor that hears it.
        let (refused, refuser) = assert_both(via, cb, ca, RefusalReason::PeerMismatch);
        assert!(matches!(refuser, HandshakeError::PeerMismatch { .. }));
        // Sent in clear, the refusal names no identity.
        assert_eq!(
            refused.to_string(),
            "refused by peer: not the expected identity"
        );
    }
}

#[tokio::test]
async fn the_right_pin_still_connects_everywhere() {
    let (a, b) = (config(1), config(2));
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, Some(b.identity.peer_id())).await;
        assert_eq!(ca.unwrap().peer_id(), b.identity.peer_id());
        assert_eq!(cb.unwrap().peer_id(), a.identity.peer_id());
    }
}

#[tokio::test]
async fn a_handshake_message_over_the_limit_is_named_on_both_ends() {
    // The acceptor's message 2 carries its protocol list: long enough to pass the dialer's
    // smallest limit.
    let mut a = config(1);
    a.max_handshake_message = 256;
    let mut b = config(2);
    for i in 0..8u32 {
        let name = format!("a-protocol-with-a-long-name-{i:02}");
        b.protocols
            .register(Protocol::new(ProtocolId(2000 + i), &name, &[1, 2, 3]).unwrap())
            .unwrap();
    }
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, None).await;
        let (refused, refuser) = assert_both(via, cb, ca, RefusalReason::TooLarge);
        assert!(matches!(refuser, HandshakeError::TooLarge { max: 256, .. }));
        assert_eq!(
            refused.to_string(),
            "refused by peer: handshake message too large (limit 256 bytes)"
        );
    }
}

/// A hand-made first message: a 32-byte ephemeral key, then a prologue of `version`.
fn first_message(version: u16, suite: u8, network: &str) -> Vec<u8> {
    let mut m = vec![9u8; 32];
    m.extend_from_slice(b"hawser-session");
    m.extend_from_slice(&version.to_be_bytes());
    m.push(suite);
    m.push(network.len() as u8);
    m.extend_from_slice(network.as_bytes());
    m
}

#[tokio::test]
async fn a_peer_of_another_version_is_told_which_version_the_acceptor_speaks() {
    let b = config(2);
    let (mut l, r) = memory_duplex_pair(64 * 1024);
    let server = tokio::spawn(async move { accept(RawConnection::bytes(r), &b).await });
    let hello = first_message(7, 1, "test-net");
    l.write_all(&(hello.len() as u16).to_be_bytes())
        .await
        .unwrap();
    l.write_all(&hello).await.unwrap();
    let mut head = [0u8; 2];
    l.read_exact(&mut head).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(head))];
    l.read_exact(&mut body).await.unwrap();
    let refusal = Refusal::parse(&body).unwrap();
    assert_eq!(refusal.reason(), RefusalReason::VersionMismatch);
    assert_eq!(refusal.detail(), "2");
    // Then the acceptor ends its side, and waits (briefly) for ours to end.
    assert_eq!(l.read(&mut head).await.unwrap(), 0);
    drop(l);
    let err = server.await.unwrap().unwrap_err();
    assert!(
        matches!(err, HandshakeError::VersionMismatch { ours: 2, theirs: 7 }),
        "{err}"
    );
    assert_eq!(err.refusal_reason(), Some(RefusalReason::VersionMismatch));
}

#[tokio::test]
async fn a_peer_that_only_closes_still_gives_closed() {
    // An acceptor that sends no refusal (an older one, or a failure it does not name).
    let a = config(1);
    let (l, mut r) = memory_duplex_pair(64 * 1024);
    let client = tokio::spawn(async move { connect(RawConnection::bytes(l), &a, None).await });
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.unwrap();
    drop(r);
    let err = client.await.unwrap().unwrap_err();
    assert!(matches!(err, HandshakeError::Closed), "{err}");
    assert_eq!(err.refusal_reason(), None);
}

#[tokio::test]
async fn a_garbled_refusal_is_malformed_not_a_reason() {
    let a = config(1);
    let (l, mut r) = memory_duplex_pair(64 * 1024);
    let client = tokio::spawn(async move { connect(RawConnection::bytes(l), &a, None).await });
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(head))];
    r.read_exact(&mut body).await.unwrap();
    // The magic, then a version this end does not know.
    let mut bad = b"hawser-refusal".to_vec();
    bad.extend_from_slice(&[9, 3, 0]);
    r.write_all(&(bad.len() as u16).to_be_bytes())
        .await
        .unwrap();
    r.write_all(&bad).await.unwrap();
    let err = client.await.unwrap().unwrap_err();
    assert!(matches!(err, HandshakeError::Malformed("refusal")), "{err}");
}

#[tokio::test]
async fn a_refusal_after_the_handshake_ends_the_peers_session_with_its_reason() {
    let (a, b) = (config(1), config(2));
    for via in ALL {
        let (ca, cb) = handshake(via, &a, &b, None).await;
        let (client, server) = (ca.unwrap(), cb.unwrap());
        let refusal = Refusal::new(RefusalReason::NotMember, "node#7");
        tokio::time::timeout(STEP, server.refuse(&refusal))
            .await
            .expect("refuse hung");
        let reason = tokio::time::timeout(STEP, client.closed())
            .await
            .expect("session not closed");
        assert_eq!(reason, CloseReason::Refused(refusal.clone()), "{via:?}");
        assert_eq!(reason.to_string(), "refused by peer: not a member (node#7)");
        assert!(server.is_closed());
    }
}
