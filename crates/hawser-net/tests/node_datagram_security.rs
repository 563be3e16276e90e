//! Unreliable datagrams between Noise nodes are sealed: they arrive once a session has
//! brought the key, and forged, tampered, replayed or plain ones are dropped and counted.
//! Plaintext nodes still exchange plain datagrams. Also: a session handshake announcing more
//! than `max_handshake_message` is refused at once.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hawser_net::node::{Delivery, Member, MembershipChange, Node, NodeStats, Role, Settings};
use hawser_net::session::Security;
use hawser_proto::wire::node::{Datagram, SealedDatagram, SEALED_HEADER_LEN};
use hawser_proto::wire::refusal::{Refusal, RefusalReason};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const STEP: Duration = Duration::from_secs(10);

fn settings(security: Security) -> Settings {
    let mut s = Settings::default();
    s.security = security;
    // No reachability: sessions open only when something is sent.
    s.reach.enabled = false;
    s
}

async fn start(id: u64, security: Security) -> Node {
    Node::builder(id)
        .settings(settings(security))
        .listen(([127, 0, 0, 1], 0).into())
        .start()
        .await
        .unwrap()
}

fn add(node: &Node, id: u64, addr: SocketAddr) {
    let member = Member::new(id, Role::Member, addr);
    node.change_membership(MembershipChange::Add(member))
        .unwrap();
}

/// Waits until `f` holds on `node`'s counters.
async fn counted(node: &Node, what: &str, f: impl Fn(&NodeStats) -> bool) {
    let deadline = Instant::now() + STEP;
    while !f(&node.stats()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", node.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends unreliable messages from `a` to `to` until one reaches `inbox`; returns it.
async fn first_datagram(
    a: &Node,
    to: u64,
    inbox: &mut hawser_net::node::IncomingStream,
) -> Vec<u8> {
    let deadline = Instant::now() + STEP;
    for i in 0u32.. {
        assert!(Instant::now() < deadline, "no datagram arrived");
        a.send(to, format!("dgram-{i}"), Delivery::Unreliable)
            .await
            .unwrap();
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(50), inbox.recv()).await {
            assert_eq!(msg.delivery, Delivery::Unreliable);
            assert_eq!(msg.from.0, a.id().0);
            return msg.payload.to_vec();
        }
    }
    unreachable!()
}

/// A man in the middle on one port: forwards TCP both ways and UDP one way to `target`,
/// keeping a copy of every datagram.
async fn proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let udp = UdpSocket::bind(addr).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = tcp.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    let copies = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, _)) = udp.recv_from(&mut buf).await {
            copies.lock().unwrap().push(buf[..len].to_vec());
            let _ = udp.send_to(&buf[..len], target).await;
        }
    });
    (addr, seen)
}

/// Asserts nothing reaches `inbox` for a little while.
async fn quiet(inbox: &mut hawser_net::node::IncomingStream) {
    let got = tokio::time::timeout(Duration::from_millis(300), inbox.recv()).await;
    assert!(got.is_err(), "unexpected delivery: {got:?}");
}

#[tokio::test]
async fn sealed_datagrams_arrive_and_forgeries_and_replays_are_dropped() {
    sealed_datagrams_with(Security::Noise).await;
}

#[tokio::test]
async fn sealed_datagrams_with_aes_gcm_sessions() {
    sealed_datagrams_with(Security::NoiseAesGcm).await;
}

/// Sealed datagrams between two nodes of `security`: they arrive, sealed on the wire;
/// replays, tampered and forged ones and plain ones are dropped and counted.
async fn sealed_datagrams_with(security: Security) {
    let (a, b) = (start(1, security).await, start(2, security).await);
    let b_addr = b.local_addr().unwrap();
    let (via, seen) = proxy(b_addr).await;
    add(&a, 2, via);
    add(&b, 1, a.local_addr().unwrap());
    let mut inbox = b.incoming();

    // The first send has no key yet: dropped, counted, and a session opened for the next.
    let got = first_datagram(&a, 2, &mut inbox).await;
    assert!(got.starts_with(b"dgram-"));
    assert!(a.stats().datagrams_without_key >= 1, "{:?}", a.stats());
    assert!(b.peer_stats(1).unwrap().received >= 1);

    // What went over the wire is sealed: the payload is not in clear.
    let wire = seen.lock().unwrap().last().cloned().unwrap();
    let sealed = SealedDatagram::parse(&wire).expect("a sealed datagram");
    assert_eq!((sealed.from, sealed.to), (1, 2));
    assert!(!wire.windows(6).any(|w| w == b"dgram-"));

    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Replayed, byte for byte.
    raw.send_to(&wire, b_addr).await.unwrap();
    counted(&b, "replay", |s| s.replayed_datagrams == 1).await;
    // Tampered: one ciphertext byte flipped.
    let mut tampered = wire.clone();
    tampered[SEALED_HEADER_LEN] ^= 0x01;
    raw.send_to(&tampered, b_addr).await.unwrap();
    counted(&b, "tampered", |s| s.forged_datagrams == 1).await;
    // Right envelope, wrong key (and a fresh counter).
    let forged = SealedDatagram {
        from: 1,
        to: 2,
        counter: 1 << 40,
        sealed: &[0x42; 40],
    };
    let mut out = BytesMut::new();
    forged.emit(&mut out);
    raw.send_to(&out, b_addr).await.unwrap();
    counted(&b, "wrong key", |s| s.forged_datagrams == 2).await;
    // A plain datagram to a Noise node.
    let plain = Datagram {
        from: 1,
        to: 2,
        payload: b"plain",
    };
    let mut out = BytesMut::new();
    plain.emit(&mut out);
    raw.send_to(&out, b_addr).await.unwrap();
    counted(&b, "plain", |s| s.unsealed_datagrams >= 1).await;
    quiet(&mut inbox).await;

    // Real traffic still flows after the attempts (the window was not moved by them).
    let got = first_datagram(&a, 2, &mut inbox).await;
    assert!(got.starts_with(b"dgram-"));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn sealed_datagrams_flow_both_ways() {
    let (a, b) = (
        start(1, Security::Noise).await,
        start(2, Security::Noise).await,
    );
    add(&a, 2, b.local_addr().unwrap());
    add(&b, 1, a.local_addr().unwrap());
    let (mut in_a, mut in_b) = (a.incoming(), b.incoming());
    first_datagram(&a, 2, &mut in_b).await;
    first_datagram(&b, 1, &mut in_a).await;
    for s in [a.stats(), b.stats()] {
        assert_eq!(
            (
                s.forged_datagrams,
                s.replayed_datagrams,
                s.malformed_datagrams
            ),
            (0, 0, 0),
            "{s:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn plaintext_nodes_exchange_plain_datagrams_without_a_session() {
    let (a, b) = (
        start(1, Security::DangerPlaintext).await,
        start(2, Security::DangerPlaintext).await,
    );
    let b_addr = b.local_addr().unwrap();
    let (via, seen) = proxy(b_addr).await;
    add(&a, 2, via);
    add(&b, 1, a.local_addr().unwrap());
    let mut inbox = b.incoming();
    // `send`: a fresh UDP socket may not be known writable yet (`send` then says
    // `QueueFull`, as before sealing).
    a.send(2, "hello", Delivery::Unreliable).await.unwrap();
    let msg = tokio::time::timeout(STEP, inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((msg.from.0, &msg.payload[..]), (1, &b"hello"[..]));
    let wire = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(Datagram::parse(&wire).unwrap().payload, b"hello");
    assert_eq!(a.stats().datagrams_without_key, 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn oversized_handshake_prefix_is_refused_at_once() {
    let mut s = settings(Security::Noise);
    s.hello_timeout = Duration::from_secs(30);
    let node = Node::builder(1)
        .settings(s)
        .listen(([127, 0, 0, 1], 0).into())
        .start()
        .await
        .unwrap();
    let mut tcp = TcpStream::connect(node.local_addr().unwrap())
        .await
        .unwrap();
    // Announces 65,535 bytes, sends a few, and waits.
    tcp.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    // The node answers with a refusal naming the limit (not the handshake timeout, which
    // would name no limit), then closes.
    let mut got = Vec::new();
    let read = tokio::time::timeout(STEP, tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "connection not closed");
    let refusal = got
        .get(2..)
        .and_then(|body| Refusal::parse(body).ok())
        .unwrap_or_else(|| panic!("no refusal: {got:?}"));
    assert_eq!(refusal.reason(), RefusalReason::TooLarge);
    counted(&node, "handshake failure", |s| s.handshake_failures == 1).await;
    node.stop().await;
}
