//! Identity, network separation, tampering, replay, stalled and flooding handshakes.

mod session_common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hawser_net::session::{
    accept, connect, dial, memory_duplex_pair, memory_message_pair, CloseReason, CryptoError,
    DialError, HandshakeError, Identity, Listener, RawConnection, RefusalReason, Security, Session,
    TransportAddr, TransportConfig,
};
use session_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;

#[tokio::test]
async fn handshake_succeeds_and_proves_identities() {
    let (a, b) = (config(1), config(2));
    let (l, r) = memory_duplex_pair(64 * 1024);
    let (c, s) = tokio::try_join!(
        connect(RawConnection::bytes(l), &a, Some(b.identity.peer_id())),
        accept(RawConnection::bytes(r), &b)
    )
    .unwrap();
    assert_eq!(c.peer_id(), b.identity.peer_id());
    assert_eq!(s.peer_id(), a.identity.peer_id());
    assert_eq!(s.remote_key(), a.identity.public_key());
    assert!(c.is_encrypted() && s.is_encrypted());
}

#[tokio::test]
async fn wrong_pinned_identity_fails_with_a_typed_error() {
    let (a, b) = (config(1), config(2));
    let mut listener = Listener::bind(
        &"tcp://127.0.0.1:0".parse().unwrap(),
        &TransportConfig::default(),
        b,
    )
    .await
    .unwrap();
    let impostor = Identity::from_secret_bytes(&[77; 32]).peer_id();
    let err = dial(
        listener.local_addr(),
        &TransportConfig::default(),
        &a,
        Some(impostor),
    )
    .await
    .unwrap_err();
    match err {
        DialError::Handshake(HandshakeError::PeerMismatch { expected, actual }) => {
            assert_eq!(expected, impostor);
            assert_eq!(actual, config(2).identity.peer_id());
        }
        other => panic!("unexpected {other}"),
    }
    // The listener never hands out a session for it.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), listener.accept())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn wrong_network_id_is_refused() {
    let a = config_with(1, "blue", &[(ECHO, "echo", &[1])]);
    let b = config_with(2, "green", &[(ECHO, "echo", &[1])]);
    // Direct pair: the responder names the mismatch, the initiator hears it refused.
    let (l, r) = memory_duplex_pair(64 * 1024);
    let (ci, ri) = tokio::join!(
        connect(RawConnection::bytes(l), &a, None),
        accept(RawConnection::bytes(r), &b)
    );
    assert!(
        matches!(ri, Err(HandshakeError::NetworkMismatch { .. })),
        "{ri:?}"
    );
    assert!(
        matches!(
            ci,
            Err(HandshakeError::Refused {
                reason: RefusalReason::NetworkMismatch,
                ..
            })
        ),
        "{ci:?}"
    );
    // In plaintext mode both ends exchange hellos, so each names the mismatch itself.
    let (pa, pb) = (plaintext(a), plaintext(b));
    let (l, r) = memory_duplex_pair(64 * 1024);
    let (ci, ri) = tokio::join!(
        connect(RawConnection::bytes(l), &pa, None),
        accept(RawConnection::bytes(r), &pb)
    );
    assert!(
        matches!(ri, Err(HandshakeError::NetworkMismatch { .. })),
        "{ri:?}"
    );
    assert!(
        matches!(ci, Err(HandshakeError::NetworkMismatch { .. })),
        "{ci:?}"
    );
}

#[tokio::test]
async fn aes_gcm_sessions_work_and_a_cipher_mismatch_is_named() {
    let aes = |n| {
        let mut c = config_with(n, "n", &[(ECHO, "echo", &[1])]);
        c.security = Security::NoiseAesGcm;
        c
    };
    // Both ends on AES-256-GCM, over a message transport: identities proven, bytes carried.
    let (a1, a2) = (aes(1), aes(2));
    let (l, r) = memory_message_pair(16 * 1024, 64);
    let (c, s) = tokio::try_join!(
        connect(RawConnection::messages(l), &a1, Some(a2.identity.peer_id())),
        accept(RawConnection::messages(r), &a2)
    )
    .unwrap();
    assert!(c.is_encrypted() && s.is_encrypted());
    serve_echo(&s);
    echo_roundtrip(&c, 4, 100_000).await;
    // ChaChaPoly against AES-GCM: the responder names both, the initiator hears it refused.
    let b = config_with(2, "n", &[(ECHO, "echo", &[1])]);
    let (l, r) = memory_duplex_pair(64 * 1024);
    let (ci, ri) = tokio::join!(
        connect(RawConnection::bytes(l), &a1, None),
        accept(RawConnection::bytes(r), &b)
    );
    match ri {
        Err(HandshakeError::CipherMismatch { ours, theirs }) => {
            assert_eq!((ours.as_str(), theirs.as_str()), ("ChaChaPoly", "AESGCM"));
        }
        other => panic!("expected a cipher mismatch, got {other:?}"),
    }
    assert!(ci.is_err());
}

const PASS: u8 = 0;
const FLIP_NEXT: u8 = 1;
const DUP_NEXT: u8 = 2;

/// A frame-aware man in the middle on a byte stream (2-byte length prefix), client to
/// server only: passes frames, or flips a bit in / duplicates the next one when armed.
fn mitm(from: DuplexStream, to: DuplexStream, mode: Arc<AtomicU8>) {
    let (mut to_r, mut to_w) = tokio::io::split(to);
    let (mut from_r, mut from_w) = tokio::io::split(from);
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut to_r, &mut from_w).await;
        let _ = from_w.shutdown().await;
    });
    tokio::spawn(async move {
        loop {
            let mut head = [0u8; 2];
            if from_r.read_exact(&mut head).await.is_err() {
                return;
            }
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(head))];
            if from_r.read_exact(&mut body).await.is_err() {
                return;
            }
            let m = mode.swap(PASS, Ordering::SeqCst);
            if m == FLIP_NEXT {
                let mid = body.len() / 2;
                body[mid] ^= 0x01;
            }
            let copies = if m == DUP_NEXT { 2 } else { 1 };
            for _ in 0..copies {
                if to_w.write_all(&head).await.is_err() || to_w.write_all(&body).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// A listener on `mem://name`, one session through the MITM and one direct.
async fn two_sessions(name: &str) -> (Arc<AtomicU8>, Session, Session, Listener, Vec<Session>) {
    let (a, b) = (config(1), config(2));
    let transport = TransportConfig::default();
    let addr: TransportAddr = format!("mem://{name}").parse().unwrap();
    let mut listener = Listener::bind(&addr, &transport, b).await.unwrap();
    // One session through the MITM, one direct to the listener.
    let (client_end, mitm_client) = memory_duplex_pair(64 * 1024);
    let (mitm_server, server_end) = memory_duplex_pair(64 * 1024);
    let mode = Arc::new(AtomicU8::new(PASS));
    mitm(mitm_client, mitm_server, mode.clone());
    let server_link = RawConnection::bytes(server_end);
    let b = config(2);
    let (attacked, attacked_server) = tokio::try_join!(
        connect(RawConnection::bytes(client_end), &a, None),
        accept(server_link, &b)
    )
    .unwrap();
    let healthy = dial(&addr, &transport, &a, None).await.unwrap();
    let healthy_server = listener.accept().await.unwrap();
    serve_echo(&healthy_server);
    serve_echo(&attacked_server);
    (
        mode,
        attacked,
        healthy,
        listener,
        vec![attacked_server, healthy_server],
    )
}

#[tokio::test]
async fn tampered_ciphertext_closes_only_that_session() {
    let (mode, attacked, healthy, _l, _s) = two_sessions("tamper").await;
    echo_roundtrip(&attacked, 1, 1000).await;
    mode.store(FLIP_NEXT, Ordering::SeqCst);
    let mut s = attacked.open(ECHO).await.unwrap();
    let _ = s.write_all(&[1u8; 4096]).await;
    // The server side rejects the frame and ends; the client sees the end.
    let reason = tokio::time::timeout(STEP, attacked.closed()).await.unwrap();
    assert!(
        matches!(reason, CloseReason::Remote | CloseReason::Transport(_)),
        "{reason:?}"
    );
    // The other session is untouched.
    echo_roundtrip(&healthy, 2, 50_000).await;
    assert!(!healthy.is_closed());
}

#[tokio::test]
async fn replayed_frame_on_a_byte_stream_ends_the_session() {
    let (mode, attacked, healthy, _l, _s) = two_sessions("replay").await;
    echo_roundtrip(&attacked, 1, 1000).await;
    mode.store(DUP_NEXT, Ordering::SeqCst);
    let mut s = attacked.open(ECHO).await.unwrap();
    let _ = s.write_all(&[2u8; 100]).await;
    let reason = tokio::time::timeout(STEP, attacked.closed()).await.unwrap();
    assert!(
        matches!(reason, CloseReason::Remote | CloseReason::Transport(_)),
        "{reason:?}"
    );
    echo_roundtrip(&healthy, 1, 10_000).await;
}

#[tokio::test]
async fn decrypt_failure_is_the_reported_reason_at_the_receiver() {
    let (a, b) = (config(1), config(2));
    let (client_end, mitm_client) = memory_duplex_pair(64 * 1024);
    let (mitm_server, server_end) = memory_duplex_pair(64 * 1024);
    let mode = Arc::new(AtomicU8::new(PASS));
    mitm(mitm_client, mitm_server, mode.clone());
    let (c, s) = tokio::try_join!(
        connect(RawConnection::bytes(client_end), &a, None),
        accept(RawConnection::bytes(server_end), &b)
    )
    .unwrap();
    serve_echo(&s);
    echo_roundtrip(&c, 1, 100).await;
    mode.store(DUP_NEXT, Ordering::SeqCst);
    let mut st = c.open(ECHO).await.unwrap();
    let _ = st.write_all(b"x").await;
    let reason = tokio::time::timeout(STEP, s.closed()).await.unwrap();
    assert_eq!(reason, CloseReason::Crypto(CryptoError::Decrypt));
}

#[tokio::test]
async fn duplicate_message_on_a_message_transport_is_dropped_before_decryption() {
    let (a, b) = (config(1), config(2));
    let (client_end, mut mitm_client) = memory_message_pair(4096, 16);
    let (mut mitm_server, server_end) = memory_message_pair(4096, 16);
    let dup = Arc::new(AtomicU8::new(PASS));
    let d = dup.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = mitm_client.next() => {
                    let Some(Ok(m)) = m else { return };
                    let copies = if d.swap(PASS, Ordering::SeqCst) == DUP_NEXT { 2 } else { 1 };
                    for _ in 0..copies {
                        if mitm_server.send(m.clone()).await.is_err() { return; }
                    }
                }
                m = mitm_server.next() => {
                    let Some(Ok(m)) = m else { return };
                    if mitm_client.send(m).await.is_err() { return; }
                }
            }
        }
    });
    let (c, s) = tokio::try_join!(
        connect(RawConnection::messages(client_end), &a, None),
        accept(RawConnection::messages(server_end), &b)
    )
    .unwrap();
    serve_echo(&s);
    echo_roundtrip(&c, 1, 1000).await;
    dup.store(DUP_NEXT, Ordering::SeqCst);
    echo_roundtrip(&c, 2, 20_000).await;
    assert!(s.stats().duplicates_dropped >= 1);
    assert!(!s.is_closed() && !c.is_closed());
}

#[tokio::test]
async fn stalled_handshake_is_dropped_at_the_timeout_without_blocking_others() {
    let mut b = config(2);
    // Long enough that another handshake on this machine, however loaded, ends well before.
    b.handshake_timeout = Duration::from_secs(2);
    let transport = TransportConfig::default();
    let mut listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap(), &transport, b)
        .await
        .unwrap();
    let TransportAddr::Tcp(sock) = listener.local_addr().clone() else {
        unreachable!()
    };
    // The staller sends half of a first handshake frame, then nothing.
    let started = tokio::time::Instant::now();
    let mut staller = TcpStream::connect(sock).await.unwrap();
    staller.write_all(&[0, 32, 1, 2, 3]).await.unwrap();
    let a = config(1);
    let client = dial(listener.local_addr(), &transport, &a, None)
        .await
        .unwrap();
    let _server = listener.accept().await.unwrap();
    // Another handshake finished while the staller's was still pending: it did not wait.
    let mut buf = [0u8; 16];
    assert!(
        matches!(staller.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the staller was dropped before another handshake finished"
    );
    assert_eq!(listener.stats().timed_out, 0);
    assert!(!client.is_closed());
    // The server closes the staller at the timeout, not before (timers never fire early).
    let n = tokio::time::timeout(STEP, staller.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(listener.stats().timed_out, 1);
}

#[tokio::test]
async fn handshake_flood_stays_within_the_pending_cap() {
    let mut b = config(2);
    b.handshake_timeout = Duration::from_millis(800);
    b.max_pending_handshakes = 4;
    let transport = TransportConfig::default();
    let mut listener = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap(), &transport, b)
        .await
        .unwrap();
    let TransportAddr::Tcp(sock) = listener.local_addr().clone() else {
        unreachable!()
    };
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(TcpStream::connect(sock).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = listener.stats();
    assert!(stats.max_pending <= 4, "{stats:?}");
    assert!(stats.refused >= 36, "{stats:?}");
    // Once the flood times out, a real peer gets in.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let a = config(1);
    let _client = dial(listener.local_addr(), &transport, &a, None)
        .await
        .unwrap();
    let server = tokio::time::timeout(STEP, listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.peer_id(), client_identity());
    assert!(listener.stats().max_pending <= 4);
    drop(flood);
}

fn client_identity() -> hawser_net::session::PeerId {
    config(1).identity.peer_id()
}

#[tokio::test]
async fn oversized_handshake_prefix_fails_at_once_with_a_typed_error() {
    let mut b = config(2);
    b.handshake_timeout = Duration::from_secs(30);
    let (mut l, r) = memory_duplex_pair(64 * 1024);
    // Announces 65,535 bytes, sends three, and stays open.
    l.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(5), accept(RawConnection::bytes(r), &b))
        .await
        .expect("refused long before the handshake timeout");
    let Err(err) = refused else {
        panic!("handshake accepted")
    };
    let max = b.max_handshake_message;
    assert!(
        matches!(err, HandshakeError::TooLarge { len: 65_535, max: m } if m == max),
        "{err}"
    );
    drop(l);
}
