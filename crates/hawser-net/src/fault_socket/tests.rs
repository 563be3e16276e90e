//! Real-socket tests, on 127.0.0.1 only, each bounded by a timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

use super::*;

const LOCAL: &str = "127.0.0.1:0";
/// Bound on each whole test.
const TEST_LIMIT: Duration = Duration::from_secs(10);
/// How long to wait before concluding that nothing will arrive.
const QUIET: Duration = Duration::from_millis(150);

async fn pair() -> (FaultySocket, UdpSocket) {
    let a = FaultySocket::bind(LOCAL, Codec::Binary, 1)
        .await
        .expect("bind 127.0.0.1");
    let b = UdpSocket::bind(LOCAL).await.expect("bind 127.0.0.1");
    (a, b)
}

fn addr_of(s: &UdpSocket) -> SocketAddr {
    s.local_addr().expect("local addr")
}

/// Everything `b` receives until it has been quiet for [`QUIET`].
async fn drain(b: &UdpSocket) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok((n, _))) = timeout(QUIET, b.recv_from(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    got
}

async fn send_numbered(a: &FaultySocket, to: SocketAddr, range: std::ops::Range<u8>) {
    for i in range {
        let sent = a.send_to(&[i], to).await.expect("send on 127.0.0.1");
        assert_eq!(sent, 1);
    }
}

#[tokio::test]
async fn fault_socket_full_drop_drops_everything() {
    timeout(TEST_LIMIT, async {
        let (a, b) = pair().await;
        a.set_outbound(FaultConfig::drop_all());
        send_numbered(&a, addr_of(&b), 0..20).await;
        assert!(drain(&b).await.is_empty());
        assert_eq!(a.stats().outbound.dropped, 20);
        assert_eq!(a.stats().outbound.seen, 20);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn fault_socket_no_faults_pass_everything() {
    timeout(TEST_LIMIT, async {
        let (a, b) = pair().await;
        send_numbered(&a, addr_of(&b), 0..50).await;
        let got = drain(&b).await;
        assert_eq!(got, (0..50u8).map(|i| vec![i]).collect::<Vec<_>>());

        // And inbound: b sends to a.
        for i in 0..10u8 {
            b.send_to(&[i], a.local_addr().expect("addr"))
                .await
                .expect("send");
        }
        let mut buf = [0u8; 16];
        for i in 0..10u8 {
            let (n, from) = a.recv_from(&mut buf).await.expect("recv");
            assert_eq!((&buf[..n], from), (&[i][..], addr_of(&b)));
        }
        assert_eq!(a.stats().inbound.seen, 10);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn fault_socket_outbound_delay_delays_while_a_recv_is_pending() {
    timeout(TEST_LIMIT, async {
        let (a, b) = pair().await;
        let delay = Duration::from_millis(200);
        a.set_outbound(
            FaultConfig::default()
                .with_delay_percent(100.0)
                .with_delay(delay),
        );
        // The driver pattern: a receive always pending on a clone of the socket.
        let receiver = a.clone();
        let pending = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let _ = receiver.recv_from(&mut buf).await;
        });
        let start = Instant::now();
        a.send_to(b"late", addr_of(&b)).await.expect("send");
        let mut buf = [0u8; 16];
        let (n, _) = b.recv_from(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"late");
        assert!(
            start.elapsed() >= delay,
            "arrived after {:?}",
            start.elapsed()
        );
        assert_eq!(a.stats().outbound.delayed, 1);
        pending.abort();
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn fault_socket_inbound_delay_delays_and_recv_is_cancel_safe() {
    timeout(TEST_LIMIT, async {
        let (a, b) = pair().await;
        let delay = Duration::from_millis(200);
        a.set_inbound(
            FaultConfig::default()
                .with_delay_percent(100.0)
                .with_delay(delay),
        );
        let start = Instant::now();
        b.send_to(b"slow", a.local_addr().expect("addr"))
            .await
            .expect("send");
        // Many short receives, each cancelled: the datagram must survive them.
        let mut buf = [0u8; 16];
        let mut cancelled = 0;
        let (n, from) = loop {
            match timeout(Duration::from_millis(20), a.recv_from(&mut buf)).await {
                Ok(received) => break received.expect("recv"),
                Err(_) => cancelled += 1,
            }
        };
        assert_eq!((&buf[..n], from), (&b"slow"[..], addr_of(&b)));
        assert!(start.elapsed() >= delay);
        assert!(cancelled >= 3, "only {cancelled} receives were cancelled");
        assert_eq!(a.stats().inbound.delayed, 1);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn fault_socket_config_switches_at_runtime() {
    timeout(TEST_LIMIT, async {
        let (a, b) = pair().await;
        let to = addr_of(&b);
        a.set_outbound(FaultConfig::drop_all());
        send_numbered(&a, to, 0..10).await;
        a.set_outbound(FaultConfig::none());
        send_numbered(&a, to, 10..20).await;
        a.set_outbound(FaultConfig::default().with_duplicate_percent(100.0));
        send_numbered(&a, to, 20..22).await;
        let got = drain(&b).await;
        let want: Vec<Vec<u8>> = (10..20u8)
            .map(|i| vec![i])
            .chain([vec![20], vec![20], vec![21], vec![21]])
            .collect();
        assert_eq!(got, want);

        // Inbound, from a shared handle.
        let shared = Arc::new(a);
        shared.set_inbound(FaultConfig::drop_all());
        b.send_to(b"gone", shared.local_addr().expect("addr"))
            .await
            .expect("send");
        let mut buf = [0u8; 16];
        assert!(timeout(QUIET, shared.recv_from(&mut buf)).await.is_err());
        shared.set_inbound(FaultConfig::none());
        b.send_to(b"here", shared.local_addr().expect("addr"))
            .await
            .expect("send");
        let (n, _) = shared.recv_from(&mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"here");
        let stats = shared.stats();
        assert_eq!((stats.outbound.dropped, stats.inbound.dropped), (10, 1));
        assert_eq!(stats.outbound.duplicated, 2);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn fault_socket_hooks_rewrite_and_drop() {
    timeout(TEST_LIMIT, async {
        let (a, b) = pair().await;
        a.set_outbound_hook(Some(Box::new(|d: &mut Vec<u8>| {
            if d.first() == Some(&b'x') {
                return Verdict::Drop;
            }
            d.make_ascii_uppercase();
            Verdict::Pass
        })));
        a.send_to(b"xyz", addr_of(&b)).await.expect("send");
        a.send_to(b"abc", addr_of(&b)).await.expect("send");
        assert_eq!(drain(&b).await, vec![b"ABC".to_vec()]);
        assert_eq!(a.stats().outbound.hooked_drops, 1);
    })
    .await
    .expect("test finished in time");
}

#[tokio::test]
async fn fault_socket_truncates_to_the_buffer() {
    timeout(TEST_LIMIT, async {
        let (a, b) = pair().await;
        b.send_to(b"0123456789", a.local_addr().expect("addr"))
            .await
            .expect("send");
        let mut small = [0u8; 4];
        let (n, _) = a.recv_from(&mut small).await.expect("recv");
        assert_eq!(&small[..n], b"0123");
    })
    .await
    .expect("test finished in time");
}
