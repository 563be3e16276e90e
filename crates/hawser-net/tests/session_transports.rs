//! The same small suite (handshake, several concurrent echo streams, close) over every
//! transport, encrypted and in plaintext.

mod session_common;

use hawser_net::session::{
    accept, connect, dial, memory_message_pair, CloseReason, Listener, RawConnection, Session,
    SessionConfig, TransportAddr, TransportConfig,
};
use session_common::*;

async fn over_address(addr: &str, secure: bool) {
    let (mut a, mut b) = (config(1), config(2));
    if !secure {
        a = plaintext(a);
        b = plaintext(b);
    }
    let transport = TransportConfig::default();
    let addr: TransportAddr = addr.parse().unwrap();
    let mut listener = Listener::bind(&addr, &transport, b.clone()).await.unwrap();
    let target = listener.local_addr().clone();
    assert_eq!(target.to_string().parse::<TransportAddr>().unwrap(), target);
    let pin = Some(b.identity.peer_id());
    let client = tokio::time::timeout(STEP, dial(&target, &transport, &a, pin))
        .await
        .unwrap()
        .unwrap();
    let server = tokio::time::timeout(STEP, listener.accept())
        .await
        .unwrap()
        .unwrap();
    suite(client, server, &a, &b, secure).await;
}

async fn suite(
    client: Session,
    server: Session,
    a: &SessionConfig,
    b: &SessionConfig,
    secure: bool,
) {
    assert_eq!(client.peer_id(), b.identity.peer_id());
    assert_eq!(server.peer_id(), a.identity.peer_id());
    assert_eq!(client.is_encrypted(), secure);
    assert_eq!(server.negotiated().version(ECHO), Some(1));
    serve_echo(&server);
    echo_roundtrip(&client, 4, 100_000).await;
    tokio::time::timeout(STEP, client.close()).await.unwrap();
    assert_eq!(client.closed().await, CloseReason::Local);
    let reason = tokio::time::timeout(STEP, server.closed()).await.unwrap();
    assert_eq!(reason, CloseReason::Remote);
}

async fn over_memory_messages(secure: bool) {
    let (mut a, mut b) = (config(1), config(2));
    if !secure {
        a = plaintext(a);
        b = plaintext(b);
    }
    let (left, right) = memory_message_pair(4096, 16);
    let (client, server) = tokio::time::timeout(STEP, async {
        tokio::try_join!(
            connect(
                RawConnection::messages(left),
                &a,
                Some(b.identity.peer_id())
            ),
            accept(RawConnection::messages(right), &b)
        )
    })
    .await
    .unwrap()
    .unwrap();
    suite(client, server, &a, &b, secure).await;
}

#[tokio::test]
async fn tcp_secure() {
    over_address("tcp://127.0.0.1:0", true).await;
}

#[tokio::test]
async fn tcp_plaintext() {
    over_address("tcp://127.0.0.1:0", false).await;
}

#[tokio::test]
async fn mem_duplex_secure() {
    over_address("mem://transports-secure", true).await;
}

#[tokio::test]
async fn mem_duplex_plaintext() {
    over_address("mem://transports-plain", false).await;
}

#[tokio::test]
async fn websocket_secure() {
    over_address("ws://127.0.0.1:0", true).await;
}

#[tokio::test]
async fn websocket_plaintext() {
    over_address("ws://127.0.0.1:0", false).await;
}

#[tokio::test]
async fn lsp_secure() {
    over_address("lsp://127.0.0.1:0", true).await;
}

#[tokio::test]
async fn lsp_plaintext() {
    over_address("lsp://127.0.0.1:0", false).await;
}

#[tokio::test]
async fn memory_messages_secure() {
    over_memory_messages(true).await;
}

#[tokio::test]
async fn memory_messages_plaintext() {
    over_memory_messages(false).await;
}

#[test]
fn addresses_parse_and_print() {
    for s in [
        "tcp://127.0.0.1:7000",
        "lsp://[::1]:7001",
        "ws://127.0.0.1:7002",
        "mem://x",
        "udp://1.2.3.4:5",
    ] {
        assert_eq!(s.parse::<TransportAddr>().unwrap().to_string(), s);
    }
    // A scheme hawser has no transport for names another transport's address.
    assert!(matches!(
        "udp://1.2.3.4:5".parse::<TransportAddr>(),
        Ok(TransportAddr::Other { scheme, rest }) if scheme == "udp" && rest == "1.2.3.4:5"
    ));
    for s in [
        "UDP://1.2.3.4:5",
        "udp://",
        "tcp://host:1",
        "mem://",
        "tcp:127.0.0.1:1",
    ] {
        assert!(s.parse::<TransportAddr>().is_err(), "{s}");
    }
}

/// An LSP listener's socket is shared with the writers of the connections it accepted: closing
/// the listener stops them and returns once the address can be bound again, even while an
/// accepted connection is still held (a node restarted at once on its `lsp_listen` address).
#[tokio::test]
async fn a_closed_lsp_listener_frees_its_address_at_once() {
    use futures_util::SinkExt;
    use hawser_net::session::transport::{self, RawListener};

    let config = TransportConfig::default();
    let addr: TransportAddr = "lsp://127.0.0.1:0".parse().unwrap();
    let mut listener = RawListener::bind(&addr, &config).await.unwrap();
    let local = listener.local_addr().clone();
    let RawConnection::Messages(mut client) = transport::dial(&local, &config).await.unwrap()
    else {
        panic!("LSP carries messages");
    };
    // The server offers a connection on its first message.
    client
        .send(bytes::Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let pending = tokio::time::timeout(STEP, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let accepted = pending.await.unwrap();
    listener.close().await;
    let again = RawListener::bind(&local, &config).await;
    assert!(again.is_ok(), "{local} still taken: {:?}", again.err());
    drop(accepted);
}
