//! Default-network specifics on 127.0.0.1: hostile handshakes, hellos, frames and datagrams,
//! the oversize policy, the inbound connection bound. Reliable connections are sessions, so
//! the hostile peers speak the session handshake (`node_common::raw_session`).

mod node_common;

use std::time::Duration;

use hawser_net::node::{Delivery, NodeId, OversizeDatagram, NODE_MESSAGES};
use hawser_net::session::{CloseReason, Identity, RefusalReason, Security};
use hawser_proto::wire::node::FrameKind;
use hawser_proto::wire::refusal::Refusal;
use node_common::{
    eventually, framed_hello, next, raw_session, raw_session_with, session_closed, stop_all,
    Cluster, Kind,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Waits until the node closes the connection (reads reach the end or fail); returns the
/// refusal it sent first, if any.
async fn closed_by_node(s: &mut TcpStream) -> Option<Refusal> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "connection not closed");
    let body = got.get(2..)?;
    Some(Refusal::parse(body).unwrap_or_else(|_| panic!("not a refusal: {got:?}")))
}

/// Says hello as node `from` on a new node stream of `session`, and returns the refusal the
/// node ends the session with (a panic if it does not refuse within 5 s).
async fn refusal_of_hello(session: &hawser_net::session::Session, from: u64) -> Refusal {
    let mut stream = session.open(NODE_MESSAGES).await.unwrap();
    stream.write_all(&framed_hello(from)).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("not refused");
    match reason {
        CloseReason::Refused(r) => r,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let mut c = Cluster::members(Kind::Tcp, 2).unpinned();
    c.settings.max_frame = 1024;
    let nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "before", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox).await.payload, "before");

    // A "node 1" (node 1 is not pinned: any identity of the network may claim it) that
    // announces a frame one byte above the limit (1,024 and the kind byte).
    let evil = raw_session(nodes[1].local_addr().unwrap(), [66; 32]).await;
    let mut stream = evil.open(NODE_MESSAGES).await.unwrap();
    stream.write_all(&framed_hello(1)).await.unwrap();
    stream.write_all(&1026u32.to_be_bytes()).await.unwrap();
    session_closed(&evil).await;
    eventually("oversized counted", || {
        nodes[1].stats().oversized_frames == 1
    })
    .await;
    assert_eq!(nodes[1].peer_stats(1).unwrap().oversized_frames, 1);

    // The real connection from node 1 is unaffected.
    nodes[0].try_send(2, "after", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox).await.payload, "after");
    stop_all(&nodes).await;
}

#[tokio::test]
async fn a_datagram_key_on_a_plaintext_session_is_ignored_and_counted() {
    let mut c = Cluster::members(Kind::Tcp, 2).unpinned();
    c.settings.security = Security::DangerPlaintext;
    let nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    // A plaintext "node 1" sends a datagram key, then a message.
    let peer = raw_session_with(
        nodes[1].local_addr().unwrap(),
        [66; 32],
        Security::DangerPlaintext,
    )
    .await;
    let mut stream = peer.open(NODE_MESSAGES).await.unwrap();
    stream.write_all(&framed_hello(1)).await.unwrap();
    let mut key_frame = 33u32.to_be_bytes().to_vec();
    key_frame.push(FrameKind::DatagramKey.byte());
    key_frame.extend_from_slice(&[7; 32]);
    stream.write_all(&key_frame).await.unwrap();
    let mut app = 6u32.to_be_bytes().to_vec();
    app.push(FrameKind::App.byte());
    app.extend_from_slice(b"after");
    stream.write_all(&app).await.unwrap();
    // The key is not taken (a plaintext session cannot vouch for it); the session goes on.
    assert_eq!(next(&mut inbox).await.payload, "after");
    assert_eq!(nodes[1].stats().bad_frames, 1);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn bad_hellos_and_strangers_are_refused() {
    let mut c = Cluster::members(Kind::Tcp, 2).unpinned();
    c.settings.hello_timeout = Duration::from_secs(1);
    let nodes = c.start_all().await;
    let addr = nodes[1].local_addr().unwrap();
    // Not a handshake.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    closed_by_node(&mut garbage).await;
    // A handshake message announcing 65,535 bytes, never sent: closed at `hello_timeout`.
    let mut huge_hello = TcpStream::connect(addr).await.unwrap();
    huge_hello.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    closed_by_node(&mut huge_hello).await;
    // A valid session whose hello names a non-member.
    let stranger = raw_session(addr, [99; 32]).await;
    let mut stream = stranger.open(NODE_MESSAGES).await.unwrap();
    stream.write_all(&framed_hello(99)).await.unwrap();
    session_closed(&stranger).await;
    // A valid session whose hello is garbage.
    let garbled = raw_session(addr, [98; 32]).await;
    let mut stream = garbled.open(NODE_MESSAGES).await.unwrap();
    stream.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
    session_closed(&garbled).await;
    eventually("all counted", || {
        let s = nodes[1].stats();
        (s.handshake_failures, s.bad_hellos, s.unknown_senders) == (2, 1, 1)
    })
    .await;
    stop_all(&nodes).await;
}

#[tokio::test]
async fn malformed_and_misdirected_datagrams_are_dropped() {
    let mut c = Cluster::members(Kind::Tcp, 2).unpinned();
    let nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = nodes[1].local_addr().unwrap();
    udp.send_to(b"not a node datagram", to).await.unwrap();
    let mut misdirected = bytes::BytesMut::new();
    hawser_proto::wire::node::Datagram {
        from: 1,
        to: 7,
        payload: b"x",
    }
    .emit(&mut misdirected);
    udp.send_to(&misdirected, to).await.unwrap();
    eventually("drops counted", || {
        let s = nodes[1].stats();
        s.malformed_datagrams == 1 && s.unknown_senders == 1
    })
    .await;
    nodes[0].try_send(2, "fine", Delivery::Reliable).unwrap();
    assert_eq!(next(&mut inbox).await.payload, "fine");
    stop_all(&nodes).await;
}

#[tokio::test]
async fn oversize_datagram_can_go_reliably_when_asked() {
    let mut c = Cluster::members(Kind::Tcp, 2).unpinned();
    c.settings.datagram_limit = 100;
    c.settings.oversize_datagram = OversizeDatagram::SendReliably;
    let nodes = c.start_all().await;
    let mut inbox = nodes[1].incoming();
    nodes[0]
        .try_send(2, vec![7u8; 500], Delivery::Unreliable)
        .unwrap();
    let m = next(&mut inbox).await;
    assert_eq!(
        (m.from, m.delivery, m.payload.len()),
        (NodeId(1), Delivery::Reliable, 500)
    );
    stop_all(&nodes).await;
}

#[tokio::test]
async fn inbound_connections_are_bounded() {
    let mut c = Cluster::members(Kind::Tcp, 2).unpinned();
    c.settings.max_inbound_connections = 1;
    let nodes = c.start_all().await;
    let addr = nodes[1].local_addr().unwrap();
    let _first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    // Told why (it has sent nothing, so nothing unread makes the close a reset).
    let refusal = closed_by_node(&mut second).await.expect("a refusal");
    assert_eq!(refusal.reason(), RefusalReason::Busy);
    assert_eq!(refusal.detail(), "max_inbound_connections 1");
    assert_eq!(nodes[1].stats().refused_connections, 1);
    stop_all(&nodes).await;
}

#[tokio::test]
async fn a_non_member_and_a_wrong_pin_hear_why_the_node_refused_them() {
    let mut c = Cluster::members(Kind::Tcp, 2).unpinned();
    c.settings.pins.insert(
        NodeId(1),
        vec![Identity::from_secret_bytes(&[1; 32]).peer_id()],
    );
    let nodes = c.start_all().await;
    let addr = nodes[1].local_addr().unwrap();
    // Node 7 is no member: the session ends with the node's reason, inside the session.
    let stranger = raw_session(addr, [66; 32]).await;
    let r = refusal_of_hello(&stranger, 7).await;
    assert_eq!(r.reason(), RefusalReason::NotMember);
    assert_eq!(r.detail(), "node#7");
    eventually("stranger counted", || nodes[1].stats().unknown_senders >= 1).await;
    // Node 1 is pinned to identity 1: another key claiming it is refused as such.
    let impostor = raw_session(addr, [66; 32]).await;
    let r = refusal_of_hello(&impostor, 1).await;
    assert_eq!(r.reason(), RefusalReason::PeerMismatch);
    eventually("mismatch counted", || nodes[1].stats().peer_mismatches >= 1).await;
    stop_all(&nodes).await;
}

/// On a session a node dialled, the peer may open its own node stream (sessions are shared
/// both ways), but only as the node that was dialled: a hello naming any other node is
/// refused, counted, and ends the session.
#[tokio::test]
async fn a_stream_on_a_dialled_session_must_name_the_node_dialled() {
    use hawser_net::node::{Member, Node, Role, Settings};
    use hawser_net::session::{Listener, TransportAddr};
    // "Node 2": a listener that speaks the session handshake as a node would.
    let settings = Settings::default();
    let config =
        settings.session_config(std::sync::Arc::new(Identity::from_secret_bytes(&[2; 32])));
    let any = TransportAddr::Tcp(([127, 0, 0, 1], 0).into());
    let mut listener = Listener::bind(&any, &settings.transport_config(), config)
        .await
        .unwrap();
    let TransportAddr::Tcp(addr) = listener.local_addr().clone() else {
        panic!("not a TCP listener");
    };
    let node = Node::builder(1)
        .settings(node_common::settings())
        .listen(([127, 0, 0, 1], 0).into())
        .member(Member::new(2, Role::Member, addr))
        .member(Member::new(3, Role::Member, ([127, 0, 0, 1], 9).into()))
        .start()
        .await
        .unwrap();
    node.try_send(2, "hello", Delivery::Reliable).unwrap();
    let dialled = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .expect("not dialled")
        .expect("listener ended");
    // The peer of a session node 1 dialled to node 2 claims to be node 3.
    let r = refusal_of_hello(&dialled, 3).await;
    assert_eq!(r.reason(), RefusalReason::PeerMismatch);
    eventually("bad hello counted", || node.stats().bad_hellos >= 1).await;
    stop_all(&[node]).await;
}
