//! One-thread ping-pong, 64 bytes: two hawser nodes (Noise over TCP, or plaintext) or raw
//! tokio TCP with 4-byte length framing, both ends on one current-thread runtime. Prints the
//! p50 and p99 round trip in microseconds. Usage: `node_ping <node|node-plain|tcp> [trips]`.

use std::time::{Duration, Instant};

use hawser_net::node::{Delivery, Member, Node, Role};
use hawser_net::session::{Security, TransportAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn nodes(security: Security) -> (Node, Node) {
    let addrs = [free_port(), free_port()];
    let mut out = Vec::new();
    for id in 1..=2u64 {
        let peer = 3 - id;
        let node = Node::builder(id)
            .security(security)
            .listen(([127, 0, 0, 1], 0).into())
            .listen_on(TransportAddr::Tcp(addrs[id as usize - 1]))
            .member(Member::without_addr(peer, Role::Member))
            .transport_to(peer, TransportAddr::Tcp(addrs[peer as usize - 1]))
            .start()
            .await
            .unwrap();
        out.push(node);
    }
    let b = out.pop().unwrap();
    (out.pop().unwrap(), b)
}

async fn node_trips(security: Security, warm: usize, trips: usize) -> Vec<Duration> {
    let (a, b) = nodes(security).await;
    let (mut ia, mut ib) = (a.incoming(), b.incoming());
    let payload = bytes::Bytes::from(vec![7u8; 64]);
    let mut samples = Vec::with_capacity(trips);
    for i in 0..warm + trips {
        let t = Instant::now();
        a.try_send(2, payload.clone(), Delivery::Reliable).unwrap();
        let m = ib.recv().await.unwrap();
        b.try_send(1, m.payload, Delivery::Reliable).unwrap();
        ia.recv().await.unwrap();
        if i >= warm {
            samples.push(t.elapsed());
        }
    }
    a.stop().await;
    b.stop().await;
    samples
}

async fn tcp_trips(warm: usize, trips: usize) -> Vec<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut a = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut b, _) = listener.accept().await.unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; 68];
        loop {
            if b.read_exact(&mut buf).await.is_err() {
                return;
            }
            if b.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let mut frame = vec![0u8; 68];
    frame[..4].copy_from_slice(&64u32.to_be_bytes());
    let mut buf = vec![0u8; 68];
    let mut samples = Vec::with_capacity(trips);
    for i in 0..warm + trips {
        let t = Instant::now();
        a.write_all(&frame).await.unwrap();
        a.read_exact(&mut buf).await.unwrap();
        if i >= warm {
            samples.push(t.elapsed());
        }
    }
    drop(a);
    let _ = echo.await;
    samples
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "node".to_owned());
    let trips: usize = args.next().map_or(10_000, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut samples = rt.block_on(async {
        match mode.as_str() {
            "node" => node_trips(Security::Noise, 1000, trips).await,
            "node-plain" => node_trips(Security::DangerPlaintext, 1000, trips).await,
            _ => tcp_trips(1000, trips).await,
        }
    });
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{mode}: p50 {:.1} us, p99 {:.1} us",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}
