//! One-thread ping-pong, 64 bytes: two hawser nodes or raw tokio TCP with 4-byte length
//! framing, both ends on one current-thread runtime. Prints the p50 and p99 round trip in
//! microseconds.
//!
//! Usage: `node_ping <mode> [trips] [task]`, where mode is one of
//! - `node`: Noise over TCP, each node pinning the other's identity, so that both directions
//!   share one session (the production setting);
//! - `node-unpinned`: Noise over TCP without pins: each node writes on a session it dialled;
//! - `node-plain`: plaintext sessions, without pins;
//! - `tcp`: raw TCP, one connection both ways;
//! - `tcp-two`: raw TCP, one connection each way (what unpinned nodes pay for in the kernel).
//!
//! With `task`, the client loop runs as a spawned task, as an application's would, instead
//! of as the future `block_on` drives (which tokio polls after an extra non-blocking look at
//! the sockets each time a task wakes it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hawser_net::node::{Delivery, Member, Node, Role};

use hawser_net::session::{Identity, Security, TransportAddr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn nodes(security: Security, pinned: bool) -> (Node, Node) {
    let addrs = [free_port(), free_port()];
    let identities = [
        Arc::new(Identity::generate().unwrap()),
        Arc::new(Identity::generate().unwrap()),
    ];
    let mut out = Vec::new();
    for id in 1..=2u64 {
        let peer = 3 - id;
        let mut b = Node::builder(id).identity(identities[id as usize - 1].clone());
        if pinned {
            b = b.pin(peer, identities[peer as usize - 1].peer_id());
        }
        let node = b
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

/// Round-trip times: the first `warm` are not kept.
struct Samples {
    warm: usize,
    left: usize,
    kept: Vec<Duration>,
}

impl Samples {
    fn new(warm: usize, trips: usize) -> Samples {
        Samples {
            warm,
            left: warm + trips,
            kept: Vec::with_capacity(trips),
        }
    }

    /// Whether a round trip is still to be made.
    fn more(&self) -> bool {
        self.left > 0
    }

    /// A round trip started at `start` ended now.
    fn record(&mut self, start: Instant) {
        self.left -= 1;
        if self.warm > 0 {
            self.warm -= 1;
        } else {
            self.kept.push(start.elapsed());
        }
    }
}

async fn node_trips(security: Security, pinned: bool, warm: usize, trips: usize) -> Vec<Duration> {
    let (a, b) = nodes(security, pinned).await;
    let (mut ia, mut ib) = (a.incoming(), b.incoming());
    let payload = bytes::Bytes::from(vec![7u8; 64]);
    let mut samples = Samples::new(warm, trips);
    while samples.more() {
        let t = Instant::now();
        a.try_send(2, payload.clone(), Delivery::Reliable).unwrap();
        let m = ib.recv().await.unwrap();
        b.try_send(1, m.payload, Delivery::Reliable).unwrap();
        ia.recv().await.unwrap();
        samples.record(t);
    }
    a.stop().await;
    b.stop().await;
    samples.kept
}

/// A connection through `listener`: the dialling end, then the accepted one.
async fn connection(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let a = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (b, _) = listener.accept().await.unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

/// Sends back every 68-byte frame read from `r` on `w`, until either ends.
async fn echo(mut r: impl AsyncRead + Unpin, mut w: impl AsyncWrite + Unpin) {
    let mut buf = [0u8; FRAME];
    while r.read_exact(&mut buf).await.is_ok() {
        if w.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// A 64-byte message with its 4-byte length.
const FRAME: usize = 68;

/// Raw TCP: a frame to the echo end and back, over one connection both ways or (`two`) one
/// connection each way.
async fn tcp_trips(two: bool, warm: usize, trips: usize) -> Vec<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (mut a, b) = connection(&listener).await;
    let (echo, mut back) = if two {
        let (b_out, a_in) = connection(&listener).await;
        (tokio::spawn(echo(b, b_out)), Some(a_in))
    } else {
        let (r, w) = b.into_split();
        (tokio::spawn(echo(r, w)), None)
    };
    let mut frame = [0u8; FRAME];
    frame[..4].copy_from_slice(&64u32.to_be_bytes());
    let mut buf = [0u8; FRAME];
    let mut samples = Samples::new(warm, trips);
    while samples.more() {
        let t = Instant::now();
        a.write_all(&frame).await.unwrap();
        match back.as_mut() {
            Some(a_in) => a_in.read_exact(&mut buf).await.unwrap(),
            None => a.read_exact(&mut buf).await.unwrap(),
        };
        samples.record(t);
    }
    drop((a, back));
    let _ = echo.await;
    samples.kept
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "node".to_owned());
    let label = mode.clone();
    let trips: usize = args.next().map_or(10_000, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let task = args.next().as_deref() == Some("task");
    let run = async move {
        match mode.as_str() {
            "node" => node_trips(Security::Noise, true, 1000, trips).await,
            "node-unpinned" => node_trips(Security::Noise, false, 1000, trips).await,
            "node-plain" => node_trips(Security::DangerPlaintext, false, 1000, trips).await,
            "tcp-two" => tcp_trips(true, 1000, trips).await,
            "tcp" => tcp_trips(false, 1000, trips).await,
            other => panic!("unknown mode {other}"),
        }
    };
    let mut samples = rt.block_on(async {
        if task {
            tokio::spawn(run).await.expect("the client task")
        } else {
            run.await
        }
    });
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{label}{}: p50 {:.1} us, p99 {:.1} us",
        if task { " (task)" } else { "" },
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}
