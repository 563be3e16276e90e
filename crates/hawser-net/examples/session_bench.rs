//! Session-layer benchmark: node messages per second, secure (Noise) versus plaintext, over
//! TCP and LSP at 64 B and 16 KiB; handshakes per second; ping p99 under a bulk transfer.
//!
//! Run in release: `cargo run -p hawser-net --release --example session_bench`.
//! Messages are length-delimited frames on one stream (`Stream::into_framed`), all on
//! 127.0.0.1.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hawser_net::session::{
    dial, Identity, Listener, NetworkId, Protocol, ProtocolId, Security, Session, SessionConfig,
    TransportAddr, TransportConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MSG: ProtocolId = ProtocolId(1024);
const BULK: ProtocolId = ProtocolId(1025);
const PING: ProtocolId = ProtocolId(1026);

fn config(secret: u8, security: Security) -> SessionConfig {
    let mut c = SessionConfig::new(
        Arc::new(Identity::from_secret_bytes(&[secret; 32])),
        NetworkId::new("bench").expect("valid network id"),
    );
    c.security = security;
    for (id, name) in [(MSG, "msg"), (BULK, "bulk"), (PING, "ping")] {
        c.protocols
            .register(Protocol::new(id, name, &[1]).expect("valid protocol"))
            .expect("distinct ids");
    }
    c
}

async fn session_pair(addr: &str, security: Security) -> (Session, Session, Listener) {
    let transport = TransportConfig::default();
    let addr: TransportAddr = addr.parse().expect("valid address");
    let mut listener = Listener::bind(&addr, &transport, config(2, security))
        .await
        .expect("bind");
    let client = dial(
        listener.local_addr(),
        &transport,
        &config(1, security),
        None,
    )
    .await
    .expect("dial");
    let server = listener.accept().await.expect("accept");
    (client, server, listener)
}

/// Messages per second of `count` messages of `size` bytes, sender to receiver.
async fn msgs_per_sec(addr: &str, security: Security, size: usize, count: usize) -> f64 {
    let (client, server, _l) = session_pair(addr, security).await;
    let mut incoming = server.accept_streams(MSG).expect("registered");
    let receiver = tokio::spawn(async move {
        let stream = incoming.accept().await.expect("stream");
        let mut framed = stream.into_framed(1 << 20);
        let mut n = 0;
        while n < count {
            match framed.next().await {
                Some(Ok(_)) => n += 1,
                _ => break,
            }
        }
        (n, Instant::now())
    });
    let mut framed = client.open(MSG).await.expect("open").into_framed(1 << 20);
    let payload = Bytes::from(vec![0xa5u8; size]);
    let start = Instant::now();
    for i in 0..count {
        framed.feed(payload.clone()).await.expect("send");
        if i % 32 == 31 {
            SinkExt::<Bytes>::flush(&mut framed).await.expect("flush");
        }
    }
    SinkExt::<Bytes>::flush(&mut framed).await.expect("flush");
    let (n, end) = receiver.await.expect("receiver");
    assert_eq!(n, count);
    client.close().await;
    count as f64 / (end - start).as_secs_f64()
}

async fn handshakes_per_sec(addr: &str, window: Duration) -> f64 {
    let transport = TransportConfig::default();
    let addr: TransportAddr = addr.parse().expect("valid address");
    let mut listener = Listener::bind(&addr, &transport, config(2, Security::Noise))
        .await
        .expect("bind");
    let a = config(1, Security::Noise);
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < window {
        let c = dial(listener.local_addr(), &transport, &a, None)
            .await
            .expect("dial");
        let s = listener.accept().await.expect("accept");
        drop((c, s));
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

async fn ping_under_load(addr: &str, total: usize) -> (Duration, Duration, Duration, usize, f64) {
    let (client, server, _l) = session_pair(addr, Security::Noise).await;
    let mut bulk_in = server.accept_streams(BULK).expect("registered");
    let mut ping_in = server.accept_streams(PING).expect("registered");
    tokio::spawn(async move {
        let mut st = bulk_in.accept().await.expect("stream");
        let mut buf = vec![0u8; 64 * 1024];
        while st.read(&mut buf).await.unwrap_or(0) > 0 {}
    });
    tokio::spawn(async move {
        let st = ping_in.accept().await.expect("stream");
        let (mut r, mut w) = tokio::io::split(st);
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let mut ping = client.open(PING).await.expect("open");
    ping.write_all(&[0; 8]).await.expect("ping");
    ping.read_exact(&mut [0; 8]).await.expect("pong");
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let mut bulk = client.open(BULK).await.expect("open");
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![1u8; 256 * 1024];
        for _ in 0..total / chunk.len() {
            bulk.write_all(&chunk).await.expect("bulk");
        }
        bulk.shutdown().await.expect("shutdown");
        d.store(true, Ordering::SeqCst);
    });
    let mut rtts = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let t = Instant::now();
        ping.write_all(&[1; 8]).await.expect("ping");
        ping.read_exact(&mut [0; 8]).await.expect("pong");
        rtts.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    writer.await.expect("writer");
    let secs = start.elapsed().as_secs_f64();
    rtts.sort();
    let pct = |p: f64| rtts[((rtts.len() as f64 - 1.0) * p).round() as usize];
    (
        pct(0.5),
        pct(0.99),
        *rtts.last().expect("some pings"),
        rtts.len(),
        total as f64 / secs / 1e6,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("| transport | size | plaintext msgs/s | secure msgs/s | secure/plain |");
    println!("| --- | --- | --- | --- | --- |");
    let cases = [
        ("tcp://127.0.0.1:0", "tcp", 64, 400_000),
        ("tcp://127.0.0.1:0", "tcp", 16 * 1024, 40_000),
        ("lsp://127.0.0.1:0", "lsp", 64, 100_000),
        ("lsp://127.0.0.1:0", "lsp", 16 * 1024, 4_000),
    ];
    for (addr, name, size, count) in cases {
        let plain = msgs_per_sec(addr, Security::DangerPlaintext, size, count).await;
        let secure = msgs_per_sec(addr, Security::Noise, size, count).await;
        println!(
            "| {name} | {size} B | {plain:.0} | {secure:.0} | {:.2} |",
            secure / plain
        );
    }
    let window = Duration::from_secs(2);
    println!();
    println!(
        "handshakes/s (sequential dial+accept, Noise XX): tcp {:.0}, mem {:.0}",
        handshakes_per_sec("tcp://127.0.0.1:0", window).await,
        handshakes_per_sec("mem://bench-hs", window).await
    );
    let (p50, p99, max, n, mbps) = ping_under_load("tcp://127.0.0.1:0", 512 << 20).await;
    println!(
        "ping every 1 ms during a 512 MiB secure bulk transfer over tcp ({mbps:.0} MB/s): n={n} p50={p50:?} p99={p99:?} max={max:?}"
    );
}
