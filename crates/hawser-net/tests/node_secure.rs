//! Secure node sessions: identity pins (refused before any data, counted), network ids, the
//! plaintext setting, batched traffic (whole, ordered, counted), and the node suite's core (exchange, broadcast, order) over each
//! transport the default network supports (`tcp://`, `lsp://`, `ws://`, `mem://`).

mod node_common;

use std::sync::Arc;
use std::time::Duration;

use hawser_net::node::{
    Delivery, Group, Member, MembershipChange, Node, NodeId, Role, Settings, SettingsError,
    StartError, MAX_PINS,
};
use hawser_net::session::{Identity, NetworkId, PeerId, Security, TransportAddr};
use node_common::{eventually, free_tcp_port, free_udp_port, next, quiet, settings, stop_all};

fn identity(n: u8) -> Arc<Identity> {
    Arc::new(Identity::from_secret_bytes(&[n; 32]))
}

fn peer_id(n: u8) -> PeerId {
    identity(n).peer_id()
}

/// Starts nodes 1..=settings.len() on 127.0.0.1 (node `i` with identity `i`), then tells each
/// node every address.
async fn start(per_node: Vec<Settings>) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (i, s) in per_node.into_iter().enumerate() {
        let id = i as u64 + 1;
        let node = Node::builder(id)
            .settings(s)
            .identity(identity(id as u8))
            .listen(([127, 0, 0, 1], 0).into())
            .start()
            .await
            .unwrap();
        nodes.push(node);
    }
    for n in &nodes {
        for m in &nodes {
            let member = Member::new(m.id(), Role::Member, m.local_addr().unwrap());
            n.change_membership(MembershipChange::Add(member)).unwrap();
        }
    }
    nodes
}

#[tokio::test]
async fn node_reports_its_peer_id() {
    let nodes = start(vec![settings()]).await;
    assert_eq!(nodes[0].peer_id(), Some(peer_id(1)));
    let addrs = nodes[0].listen_addrs();
    assert_eq!(addrs, [TransportAddr::Tcp(nodes[0].local_addr().unwrap())]);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn dialler_refuses_a_wrong_pinned_identity_before_data() {
    let mut s1 = settings();
    s1.pins.insert(NodeId(2), vec![peer_id(9)]); // node 2 really is identity 2
    let nodes = start(vec![s1, settings()]).await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "secret", Delivery::Reliable).unwrap();
    eventually("mismatch counted", || nodes[0].stats().peer_mismatches >= 1).await;
    assert!(quiet(&mut inbox, Duration::from_millis(500)).await);
    assert!(nodes[0].peer_stats(2).unwrap().connect_failures >= 1);
    assert_eq!(nodes[0].peer_stats(2).unwrap().sent, 0);
    assert_eq!(nodes[1].peer_stats(1).unwrap().received, 0);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn acceptor_refuses_a_wrong_pinned_identity_before_data() {
    let mut s2 = settings();
    s2.pins.insert(NodeId(1), vec![peer_id(9)]); // node 1 really is identity 1
    let nodes = start(vec![settings(), s2]).await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "forged", Delivery::Reliable).unwrap();
    eventually("mismatch counted", || nodes[1].stats().peer_mismatches >= 1).await;
    assert!(quiet(&mut inbox, Duration::from_millis(500)).await);
    assert_eq!(nodes[1].peer_stats(1).unwrap().received, 0);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn a_pin_set_allows_key_rotation() {
    let mut s1 = settings();
    s1.pins.insert(NodeId(2), vec![peer_id(9), peer_id(2)]); // old and new key
    let mut s2 = settings();
    s2.pins.insert(NodeId(1), vec![peer_id(1)]);
    let nodes = start(vec![s1, s2]).await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "rotated", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox).await.payload, "rotated");
    assert_eq!(nodes[0].stats().peer_mismatches, 0);
    assert_eq!(nodes[1].stats().peer_mismatches, 0);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn wrong_network_id_is_refused() {
    let mut s2 = settings();
    s2.network_id = NetworkId::new("another-cluster").unwrap();
    let nodes = start(vec![settings(), s2]).await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "x", Delivery::Reliable).unwrap();
    eventually("handshake failures counted", || {
        nodes[0].stats().handshake_failures >= 1 && nodes[1].stats().handshake_failures >= 1
    })
    .await;
    assert!(quiet(&mut inbox, Duration::from_millis(500)).await);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn plaintext_setting_works() {
    let plain = || {
        let mut s = settings();
        s.security = Security::DangerPlaintext;
        s
    };
    let nodes = start(vec![plain(), plain()]).await;
    let mut inbox = nodes[1].incoming();
    nodes[0]
        .try_send(2, "in clear", Delivery::Reliable)
        .unwrap();
    let m = next(&mut inbox).await;
    assert_eq!((m.from.0, &m.payload[..]), (1, &b"in clear"[..]));
    stop_all(&nodes).await;
}

/// Node 1 on `first`, node 2 on the default: a message from 1 never reaches 2, and node 2
/// counts the failed handshake.
async fn security_mismatch_is_refused(first: Security) {
    let mut one = settings();
    one.security = first;
    let nodes = start(vec![one, settings()]).await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "x", Delivery::Reliable).unwrap();
    eventually("handshake failure counted", || {
        nodes[1].stats().handshake_failures >= 1
    })
    .await;
    assert!(quiet(&mut inbox, Duration::from_millis(300)).await);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn plaintext_and_noise_do_not_mix() {
    security_mismatch_is_refused(Security::DangerPlaintext).await;
}

/// Thousands of messages queued at once (written and received in batches): all arrive, in
/// order, and both ends count each once, with its bytes.
async fn batched_traffic_is_whole_ordered_and_counted(security: Security) {
    let s = || {
        let mut s = settings();
        s.security = security;
        s
    };
    let nodes = start(vec![s(), s()]).await;
    let mut inbox = nodes[1].incoming();
    let payloads: Vec<Vec<u8>> = (0..5000u32)
        .map(|i| {
            let mut p = i.to_be_bytes().to_vec();
            let len = match i % 1000 {
                0 => 100_000, // above one batch: goes alone
                n if n % 7 == 0 => 0,
                n => 4 + (n as usize * 37) % 3000,
            };
            p.resize(len.max(4), i as u8);
            p
        })
        .collect();
    for p in &payloads {
        nodes[0].try_send(2, p.clone(), Delivery::Reliable).unwrap();
    }
    for (i, p) in payloads.iter().enumerate() {
        let m = next(&mut inbox).await;
        assert_eq!((m.from.0, m.payload.len()), (1, p.len()), "message {i}");
        assert_eq!(&m.payload[..], &p[..], "message {i}");
    }
    let bytes: u64 = payloads.iter().map(|p| p.len() as u64).sum();
    // The writer counts a batch just after the session took it: maybe after its delivery.
    eventually("every message counted sent", || {
        nodes[0].peer_stats(2).unwrap().sent == 5000
    })
    .await;
    let out = nodes[0].peer_stats(2).unwrap();
    assert_eq!((out.sent, out.bytes_out, out.queued), (5000, bytes, 0));
    let inc = nodes[1].peer_stats(1).unwrap();
    assert_eq!((inc.received, inc.bytes_in), (5000, bytes));
    stop_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_traffic_over_noise() {
    batched_traffic_is_whole_ordered_and_counted(Security::Noise).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_traffic_over_noise_aes_gcm() {
    batched_traffic_is_whole_ordered_and_counted(Security::NoiseAesGcm).await;
}

#[tokio::test]
async fn nodes_with_different_ciphers_do_not_talk() {
    security_mismatch_is_refused(Security::NoiseAesGcm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_traffic_over_plaintext() {
    batched_traffic_is_whole_ordered_and_counted(Security::DangerPlaintext).await;
}

/// Three nodes reaching each other only through `addr_of(id)` (members have no TCP address,
/// so nothing else could carry their reliable messages).
async fn start_on(security: Security, addr_of: impl Fn(u64) -> TransportAddr) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let mut b = Node::builder(id)
            .settings({
                let mut s = settings();
                s.security = security;
                s
            })
            .identity(identity(id as u8))
            .listen(([127, 0, 0, 1], 0).into())
            .listen_on(addr_of(id));
        for peer in (1..=3u64).filter(|p| *p != id) {
            b = b
                .member(Member::without_addr(peer, Role::Member))
                .transport_to(peer, addr_of(peer))
                .pin(peer, peer_id(peer as u8));
        }
        nodes.push(b.start().await.unwrap());
    }
    nodes
}

/// The suite's core over one transport with the default cipher.
async fn core_suite(addr_of: impl Fn(u64) -> TransportAddr) {
    core_suite_with(Security::Noise, addr_of).await;
}

/// The suite's core over one transport: each to each, a broadcast, per-sender order.
async fn core_suite_with(security: Security, addr_of: impl Fn(u64) -> TransportAddr) {
    let nodes = start_on(security, addr_of).await;
    let mut inboxes: Vec<_> = nodes.iter().map(|n| n.incoming()).collect();
    // Exchange.
    for from in &nodes {
        for to in (1..=3u64).filter(|t| *t != from.id().0) {
            let msg = format!("r {} {to}", from.id().0);
            from.try_send(to, msg, Delivery::Reliable).unwrap();
        }
    }
    for (i, inbox) in inboxes.iter_mut().enumerate() {
        for _ in 0..2 {
            let m = next(inbox).await;
            assert_eq!(m.payload, format!("r {} {}", m.from.0, i + 1));
        }
    }
    // Broadcast.
    let report = nodes[0].broadcast(Group::All, "all", Delivery::Reliable);
    assert!(report.is_all_ok(), "{report:?}");
    for inbox in &mut inboxes[1..] {
        let m = next(inbox).await;
        assert_eq!((m.from.0, &m.payload[..]), (1, &b"all"[..]));
    }
    // Order, with payloads of several session chunks.
    for i in 0..200u32 {
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(if i % 50 == 0 { 100_000 } else { 8 }, 7);
        nodes[1].try_send(3, payload, Delivery::Reliable).unwrap();
    }
    for i in 0..200u32 {
        let m = next(&mut inboxes[2]).await;
        assert_eq!(m.from.0, 2);
        assert_eq!(m.payload[..4], i.to_be_bytes());
    }
    for n in &nodes {
        assert_eq!(n.stats().peer_mismatches, 0);
    }
    stop_all(&nodes).await;
}

macro_rules! over {
    ($($name:ident: $addr:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            tokio::time::timeout(Duration::from_secs(60), core_suite($addr))
                .await
                .expect("test timed out");
        }
    )*};
}

over! {
    core_over_tcp: {
        let ports: Vec<_> = (0..3).map(|_| free_tcp_port()).collect();
        move |id: u64| TransportAddr::Tcp(ports[id as usize - 1])
    };
    core_over_lsp: {
        let ports: Vec<_> = (0..3).map(|_| free_udp_port()).collect();
        move |id: u64| TransportAddr::Lsp(ports[id as usize - 1])
    };
    core_over_ws: {
        let ports: Vec<_> = (0..3).map(|_| free_tcp_port()).collect();
        move |id: u64| TransportAddr::Ws(ports[id as usize - 1])
    };
    core_over_mem: |id: u64| TransportAddr::Mem(format!("node-secure-{id}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_over_lsp_with_aes_gcm() {
    let ports: Vec<_> = (0..3).map(|_| free_udp_port()).collect();
    let addr_of = move |id: u64| TransportAddr::Lsp(ports[id as usize - 1]);
    tokio::time::timeout(
        Duration::from_secs(60),
        core_suite_with(Security::NoiseAesGcm, addr_of),
    )
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_write_waits_are_counted_per_peer() {
    let nodes = start(vec![settings(), settings()]).await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "first", Delivery::Reliable).unwrap();
    assert_eq!(&next(&mut inbox).await.payload[..], b"first");
    assert_eq!(nodes[0].peer_stats(2).unwrap().session_write_waits, 0);
    // 8 MiB queued at once: far more than the stream's first window (256 KiB), which the
    // writer uses up long before node 2's first window update can come back.
    let payload = vec![9u8; 64 * 1024];
    for _ in 0..128 {
        nodes[0]
            .send(2, payload.clone(), Delivery::Reliable)
            .await
            .unwrap();
    }
    eventually("the writer waited for the session", || {
        nodes[0].peer_stats(2).unwrap().session_write_waits >= 1
    })
    .await;
    for _ in 0..128 {
        assert_eq!(next(&mut inbox).await.payload.len(), 64 * 1024);
    }
    stop_all(&nodes).await;
}

/// At most `MAX_PINS` PeerIds per node (old and new keys during a rotation, and spares): a
/// node given more refuses to start, naming the setting; with exactly as many, a peer proving
/// any one of them is accepted.
#[tokio::test]
async fn pins_per_node_are_capped() {
    let too_many = (0..=MAX_PINS as u8).fold(Node::builder(1), |b, i| b.pin(2, peer_id(10 + i)));
    let err = too_many
        .listen(([127, 0, 0, 1], 0).into())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StartError::Settings(SettingsError::TooLarge { name, max })
                if name.starts_with("pins") && max == MAX_PINS as u64
        ),
        "{err}"
    );
    // The same through `Settings::pins`.
    let mut s = settings();
    s.pins.insert(
        NodeId(2),
        (0..=MAX_PINS as u8).map(|i| peer_id(10 + i)).collect(),
    );
    assert!(Node::builder(1)
        .settings(s)
        .listen(([127, 0, 0, 1], 0).into())
        .start()
        .await
        .is_err());
    // Exactly `MAX_PINS`, node 2's real identity last: accepted, and node 2 gets through.
    let mut pinned = settings();
    pinned.pins.insert(
        NodeId(2),
        (1..MAX_PINS as u8)
            .map(|i| peer_id(10 + i))
            .chain([peer_id(2)])
            .collect(),
    );
    let nodes = start(vec![pinned, settings()]).await;
    let mut inbox = nodes[0].incoming();
    nodes[1].try_send(1, "pinned", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox).await.payload, "pinned");
    assert_eq!(nodes[0].stats().peer_mismatches, 0);
    stop_all(&nodes).await;
}
