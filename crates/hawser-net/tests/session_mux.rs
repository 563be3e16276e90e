//! Streams and protocols: negotiation, unknown protocols, write-only streams, a ping flood
//! from a peer that never reads, the limits on inbound streams (queued, and without a
//! header), and pings interleaving with a bulk transfer.

mod session_common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hawser_net::session::framing::byte_codec;
use hawser_net::session::noise::{Handshake, NoiseCipher, Opener, Role, Sealer, MAX_NOISE_MESSAGE};
use hawser_net::session::{
    accept, connect, dial, memory_duplex_pair, AcceptStreamsError, Listener, MuxConfig, OpenError,
    ProtocolId, RawConnection, Session, SessionConfig, TransportAddr, TransportConfig,
};
use session_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

async fn pair(a: &SessionConfig, b: &SessionConfig) -> (Session, Session) {
    let (l, r) = memory_duplex_pair(64 * 1024);
    tokio::time::timeout(STEP, async {
        tokio::try_join!(
            connect(RawConnection::bytes(l), a, None),
            accept(RawConnection::bytes(r), b)
        )
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn highest_common_version_is_agreed_on_both_ends() {
    let p = ProtocolId(2000);
    let q = ProtocolId(2001);
    let a = config_with(1, "n", &[(p, "kv", &[1, 2, 3]), (q, "old", &[1])]);
    let b = config_with(2, "n", &[(p, "kv", &[2, 3, 4]), (q, "old", &[2])]);
    let (c, s) = pair(&a, &b).await;
    assert_eq!(c.negotiated().version(p), Some(3));
    assert_eq!(s.negotiated().version(p), Some(3));
    let mut incoming = s.accept_streams(p).unwrap();
    let mut out = c.open(p).await.unwrap();
    assert_eq!(out.version(), 3);
    out.write_all(b"v").await.unwrap();
    let inbound = incoming.accept().await.unwrap();
    assert_eq!((inbound.protocol(), inbound.version()), (p, 3));
    // No common version: refused locally, nothing sent.
    assert!(matches!(c.open(q).await, Err(OpenError::UnsupportedByPeer(id)) if id == q));
    assert!(c.negotiated().is_mismatched(q));
}

#[tokio::test]
async fn unknown_protocols_fail_with_typed_errors() {
    let only_peer = ProtocolId(3000);
    let a = config_with(1, "n", &[(ECHO, "echo", &[1]), (only_peer, "mine", &[1])]);
    let b = config_with(2, "n", &[(ECHO, "echo", &[1])]);
    let (c, s) = pair(&a, &b).await;
    assert!(matches!(
        c.open(only_peer).await,
        Err(OpenError::UnsupportedByPeer(_))
    ));
    assert!(matches!(
        c.open(ProtocolId(9999)).await,
        Err(OpenError::UnknownProtocol(_))
    ));
    assert_eq!(
        s.accept_streams(ProtocolId(9999)).unwrap_err(),
        AcceptStreamsError::UnknownProtocol(ProtocolId(9999))
    );
    serve_echo(&s);
    assert_eq!(
        s.accept_streams(ECHO).unwrap_err(),
        AcceptStreamsError::AlreadyTaken(ECHO)
    );
    echo_roundtrip(&c, 1, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_only_stream_never_stalls() {
    let total: usize = if cfg!(debug_assertions) {
        24 << 20
    } else {
        128 << 20
    };
    let (c, s) = pair(&config(1), &config(2)).await;
    let mut incoming = s.accept_streams(BULK).unwrap();
    let reader = tokio::spawn(async move {
        let mut stream = incoming.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0;
        loop {
            match stream.read(&mut buf).await.unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    });
    // The writer only writes: it never reads this stream or polls the session otherwise.
    let mut stream = c.open(BULK).await.unwrap();
    let chunk = vec![7u8; 64 * 1024];
    tokio::time::timeout(STEP, async {
        for _ in 0..total / chunk.len() {
            stream.write_all(&chunk).await.unwrap();
        }
        stream.shutdown().await.unwrap();
    })
    .await
    .expect("write-only stream stalled");
    let received = tokio::time::timeout(STEP, reader).await.unwrap().unwrap();
    assert_eq!(received, total);
}

/// yamux ping frames (SYN) on the connection's stream 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_wait_for_the_peer_are_counted() {
    let (c, s) = pair(&config(1), &config(2)).await;
    let mut incoming = s.accept_streams(BULK).unwrap();
    // Within the stream's first window (256 KiB): no write waits.
    let mut stream = c.open(BULK).await.unwrap();
    stream.write_all(&[7u8; 4096]).await.unwrap();
    stream.flush().await.unwrap();
    assert_eq!(c.stats().write_waits, 0);
    // 2 MiB to a peer that does not read yet: the writer runs out of window and waits.
    let writer = tokio::spawn(async move {
        stream.write_all(&vec![7u8; 2 << 20]).await.unwrap();
        stream.shutdown().await.unwrap();
    });
    let mut inbound = tokio::time::timeout(STEP, incoming.accept())
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + STEP;
    while c.stats().write_waits == 0 {
        assert!(Instant::now() < deadline, "the writer never waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Reading everything lets the writer finish; every byte arrives.
    let mut got = Vec::new();
    tokio::time::timeout(STEP, inbound.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 4096 + (2 << 20));
    writer.await.unwrap();
    assert!(c.stats().write_waits >= 1);
    assert_eq!(s.stats().write_waits, 0, "the reader never wrote");
}

fn ping_frames(count: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 * count as usize);
    for i in 0..count {
        out.extend_from_slice(&[0, 2, 0, 1, 0, 0, 0, 0]);
        out.extend_from_slice(&i.to_be_bytes());
    }
    out
}

/// yamux frame types and flags (the header: version, type, flags, stream id, length).
const YAMUX_DATA: u8 = 0;
const YAMUX_WINDOW_UPDATE: u8 = 1;
const YAMUX_PING: u8 = 2;
const YAMUX_SYN: u16 = 1;
const YAMUX_ACK: u16 = 2;
const YAMUX_RST: u16 = 8;

/// One yamux frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct YamuxHeader {
    kind: u8,
    flags: u16,
    stream: u32,
    length: u32,
}

type RawFramed = Framed<tokio::io::DuplexStream, LengthDelimitedCodec>;

/// A peer that runs the Noise handshake through the sans-IO API, then writes raw yamux frames
/// of its choosing (what a well-behaved session never sends) and reads the victim's frames.
struct RawPeer {
    writer: RawWriter,
    reader: RawReader,
}

/// The writing half of a [`RawPeer`].
struct RawWriter {
    sink: futures_util::stream::SplitSink<RawFramed, Bytes>,
    sealer: Sealer,
}

/// The reading half of a [`RawPeer`].
struct RawReader {
    stream: futures_util::stream::SplitStream<RawFramed>,
    opener: Opener,
    /// Opened bytes not yet parsed into frames.
    plain: Vec<u8>,
}

impl RawPeer {
    /// Connects to a victim running `accept` with `victim_config`; returns the peer and the
    /// victim's session.
    async fn connect(victim_config: SessionConfig) -> (RawPeer, Session) {
        let (attacker_io, victim_io) = memory_duplex_pair(64 * 1024);
        let victim =
            tokio::spawn(
                async move { accept(RawConnection::bytes(victim_io), &victim_config).await },
            );
        let attacker = config(1);
        let mut hs = Handshake::new(
            Role::Initiator,
            NoiseCipher::ChaChaPoly,
            &attacker.identity,
            &attacker.network_id,
            &attacker.protocols,
            8192,
            None,
        )
        .unwrap();
        let mut framed = Framed::new(attacker_io, byte_codec(MAX_NOISE_MESSAGE));
        while !hs.is_finished() {
            if let Some(m) = hs.poll_transmit().unwrap() {
                framed.send(Bytes::from(m)).await.unwrap();
            } else {
                let m = framed.next().await.unwrap().unwrap();
                hs.handle_message(&m).unwrap();
            }
        }
        let (cipher, _) = hs.into_established().unwrap();
        let (sealer, opener) = cipher.split();
        let victim = victim.await.unwrap().unwrap();
        let (sink, stream) = framed.split();
        let peer = RawPeer {
            writer: RawWriter { sink, sealer },
            reader: RawReader {
                stream,
                opener,
                plain: Vec::new(),
            },
        };
        (peer, victim)
    }
}

impl RawWriter {
    /// `plaintext` sealed as the next transport message.
    fn seal(&mut self, plaintext: &[u8]) -> Bytes {
        let mut ct = Vec::new();
        self.sealer.seal(plaintext, &mut ct).unwrap();
        Bytes::from(ct)
    }

    /// Seals and sends `plaintext` (yamux frames).
    async fn send(&mut self, plaintext: &[u8]) {
        let ct = self.seal(plaintext);
        self.sink.send(ct).await.unwrap();
    }
}

impl RawReader {
    /// The victim's next yamux frame header (a data frame's body is skipped), or `None` once
    /// the victim closed the transport.
    async fn next_frame(&mut self) -> Option<YamuxHeader> {
        loop {
            if self.plain.len() >= 12 {
                let h = &self.plain[..12];
                let header = YamuxHeader {
                    kind: h[1],
                    flags: u16::from_be_bytes([h[2], h[3]]),
                    stream: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    length: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
                };
                let body = if header.kind == YAMUX_DATA {
                    header.length as usize
                } else {
                    0
                };
                if self.plain.len() >= 12 + body {
                    self.plain.drain(..12 + body);
                    return Some(header);
                }
            }
            let ct = self.stream.next().await?.ok()?;
            self.opener.open(&ct, &mut self.plain).unwrap();
        }
    }
}

/// A peer floods yamux pings and never reads the pongs: the victim takes a bounded amount
/// (back-pressure reaches the attacker, it does not buffer 64 MiB of pings), stays up, serves
/// another session meanwhile, and once the attacker reads, answers every ping it was sent,
/// each once: none dropped.
#[tokio::test]
async fn ping_flood_from_a_peer_that_never_reads_stays_bounded() {
    // The victim: a listener serving echo, plus the session the attacker opens to it.
    let transport = TransportConfig::default();
    let addr: TransportAddr = "mem://ping-flood-victim".parse().unwrap();
    let mut listener = Listener::bind(&addr, &transport, config(2)).await.unwrap();
    let (
        RawPeer {
            mut writer,
            mut reader,
        },
        victim,
    ) = RawPeer::connect(config(2)).await;
    serve_echo(&victim);
    let honest = dial(&addr, &transport, &config(3), None).await.unwrap();
    let honest_server = listener.accept().await.unwrap();
    serve_echo(&honest_server);
    echo_roundtrip(&honest, 1, 1000).await;

    let batch = ping_frames(1000);
    let (mut fed, mut sent) = (0u64, 0usize);
    let limit = 64 << 20;
    let mut held = None;
    while sent < limit {
        let ct = writer.seal(&batch);
        // `feed` hands the message to the sink or, when it waits for room, not at all: a
        // message that timed out is kept and sent later, so the Noise stream stays whole.
        match tokio::time::timeout(Duration::from_millis(300), writer.sink.feed(ct.clone())).await {
            Ok(Ok(())) => {
                fed += 1;
                sent += batch.len();
            }
            Ok(Err(e)) => panic!("the victim closed the connection: {e}"),
            Err(_) => {
                held = Some(ct); // the victim stopped reading: back-pressure reached the attacker
                break;
            }
        }
    }
    // pipe buffers (64 KiB each way) + duplex buffers + one frame in flight, far below 64 MiB.
    assert!(sent < 2 << 20, "victim absorbed {sent} bytes of pings");
    assert!(held.is_some(), "the attacker was never held back");
    // During the flood the victim stays up and serves the honest session.
    assert!(!victim.is_closed(), "{:?}", victim.close_reason());
    echo_roundtrip(&honest, 2, 50_000).await;

    // The attacker reads at last: every ping it sent (the held message too) is answered once.
    let pings = (fed + 1) * 1000;
    let held = held.unwrap();
    tokio::spawn(async move { writer.sink.send(held).await });
    let mut pongs = vec![0u32; 1000];
    let mut answered = 0u64;
    tokio::time::timeout(STEP, async {
        while answered < pings {
            let f = reader
                .next_frame()
                .await
                .expect("the victim closed the connection");
            if f.kind == YAMUX_PING && f.flags & YAMUX_ACK != 0 {
                pongs[f.length as usize] += 1;
                answered += 1;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{answered} of {pings} pings answered"));
    let per_id = (pings / 1000) as u32;
    assert!(
        pongs.iter().all(|&n| n == per_id),
        "each ping answered once"
    );
    assert!(!victim.is_closed(), "{:?}", victim.close_reason());
    echo_roundtrip(&honest, 1, 1000).await;
}

/// `max_queued_streams`: inbound streams of a protocol the application has not taken yet wait
/// up to that many; the peer's further streams are reset, and the session goes on.
#[tokio::test(start_paused = true)]
async fn streams_beyond_the_queue_are_reset() {
    let mut b = config(2);
    b.max_queued_streams = 2;
    let (c, s) = pair(&config(1), &b).await;
    // Five streams, each naming itself after the stream header; nobody takes them yet.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..5u8 {
        let mut stream = c.open(ECHO).await.unwrap();
        stream.write_all(&[i]).await.unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let r = stream.read(&mut buf).await;
            let _ = tx.send((i, r.map(|n| buf[..n].to_vec())));
        });
    }
    // Three are reset (read as an end or an error), while two wait for the application.
    let mut reset = Vec::new();
    for _ in 0..3 {
        let (i, r) = tokio::time::timeout(STEP, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&r, Ok(v) if v.is_empty()) || r.is_err(),
            "stream {i}: {r:?}"
        );
        reset.push(i);
    }
    // The two that waited are handed out, with what their opener wrote, and answered.
    let mut incoming = s.accept_streams(ECHO).unwrap();
    let mut queued = Vec::new();
    for _ in 0..2 {
        let mut st = tokio::time::timeout(STEP, incoming.accept())
            .await
            .unwrap()
            .unwrap();
        let mut i = [0u8; 1];
        st.read_exact(&mut i).await.unwrap();
        st.write_all(&i).await.unwrap();
        queued.push(i[0]);
        tokio::spawn(async move {
            let _ = st.read(&mut [0u8; 1]).await; // held open until the peer ends
        });
    }
    for _ in 0..2 {
        let (i, r) = tokio::time::timeout(STEP, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.unwrap(), vec![i], "stream {i} was answered");
        assert!(
            queued.contains(&i),
            "stream {i} answered but not handed out"
        );
    }
    let mut all: Vec<u8> = reset.iter().chain(&queued).copied().collect();
    all.sort();
    assert_eq!(all, [0, 1, 2, 3, 4], "reset {reset:?}, queued {queued:?}");
    assert!(!c.is_closed() && !s.is_closed());
    serve_echo_on(incoming);
    echo_roundtrip(&c, 1, 100).await;
}

/// Serves echo on every further stream of `incoming`.
fn serve_echo_on(mut incoming: hawser_net::session::InboundStreams) {
    tokio::spawn(async move {
        while let Some(stream) = incoming.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
}

/// `stream_header_timeout`: a stream whose opener never names its protocol is reset at that
/// time (simulated), while the session and a stream that did name one go on.
#[tokio::test(start_paused = true)]
async fn a_stream_without_a_header_is_reset_at_the_header_timeout() {
    let mut victim_config = config(2);
    victim_config.stream_header_timeout = Duration::from_secs(3);
    let (
        RawPeer {
            mut writer,
            mut reader,
        },
        victim,
    ) = RawPeer::connect(victim_config).await;
    let mut incoming = victim.accept_streams(ECHO).unwrap();
    // Stream 1 opens (SYN) and says nothing; stream 3 opens with the ECHO header, version 1.
    let mut frames = Vec::new();
    frames.extend_from_slice(&[0, YAMUX_WINDOW_UPDATE, 0, YAMUX_SYN as u8]);
    frames.extend_from_slice(&1u32.to_be_bytes());
    frames.extend_from_slice(&0u32.to_be_bytes());
    let header = hawser_proto::wire::stream::StreamHeader {
        protocol: ECHO.0,
        version: 1,
    }
    .to_bytes();
    frames.extend_from_slice(&[0, YAMUX_DATA, 0, YAMUX_SYN as u8]);
    frames.extend_from_slice(&3u32.to_be_bytes());
    frames.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frames.extend_from_slice(&header);
    let opened = tokio::time::Instant::now();
    writer.send(&frames).await;
    let named = tokio::time::timeout(STEP, incoming.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(named.protocol(), ECHO);
    let reset = tokio::time::timeout(STEP, async {
        loop {
            let f = reader
                .next_frame()
                .await
                .expect("the victim closed the connection");
            if f.stream == 1 && f.flags & YAMUX_RST != 0 {
                return tokio::time::Instant::now();
            }
            assert_ne!(f.stream, 3, "the stream with a header was touched: {f:?}");
        }
    })
    .await
    .unwrap();
    let waited = reset - opened;
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "reset after {waited:?} of simulated time"
    );
    assert!(!victim.is_closed(), "{:?}", victim.close_reason());
    drop(named);
}

/// Bulk transfer on one protocol, pings on another: a ping is never queued behind the bulk
/// stream. Measured in bulk bytes, not time: while a ping makes its round trip, the bulk reader
/// takes less than the session's connection window (8 MiB), so pings interleave with the
/// transfer (32 MiB in debug builds, 256 MiB in release) instead of waiting for it to end.
/// The benchmark (`examples/session_bench.rs`) reports the round-trip times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_interleave_with_a_bulk_transfer() {
    let total: usize = if cfg!(debug_assertions) {
        32 << 20
    } else {
        256 << 20
    };
    let window = MuxConfig::default().connection_window;
    assert!(total >= 4 * window, "the transfer must outlast the window");
    let (c, s) = pair(&config(1), &config(2)).await;
    let mut bulk_in = s.accept_streams(BULK).unwrap();
    let mut ping_in = s.accept_streams(PING).unwrap();
    // Bulk bytes the reader has taken so far.
    let progress = Arc::new(AtomicUsize::new(0));
    let read = progress.clone();
    tokio::spawn(async move {
        let mut st = bulk_in.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match st.read(&mut buf).await.unwrap_or(0) {
                0 => break,
                n => read.fetch_add(n, Ordering::SeqCst),
            };
        }
    });
    tokio::spawn(async move {
        let st = ping_in.accept().await.unwrap();
        let (mut r, mut w) = tokio::io::split(st);
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let mut ping = c.open(PING).await.unwrap();
    // Warm up the ping stream before the load starts.
    ping.write_all(&[0; 8]).await.unwrap();
    ping.read_exact(&mut [0; 8]).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let mut bulk = c.open(BULK).await.unwrap();
    let writer = tokio::spawn(async move {
        let chunk = vec![1u8; 256 * 1024];
        for _ in 0..total / chunk.len() {
            bulk.write_all(&chunk).await.unwrap();
        }
        bulk.shutdown().await.unwrap();
        d.store(true, Ordering::SeqCst);
    });
    // Bulk bytes read during each ping's round trip, for the pings sent while the reader had
    // at most `total - window` left to read (a later one may see the transfer's tail).
    let mut behind = Vec::new();
    let mut buf = [0u8; 8];
    tokio::time::timeout(STEP * 3, async {
        let mut n = 0u64;
        while !done.load(Ordering::SeqCst) {
            let before = progress.load(Ordering::SeqCst);
            n += 1;
            ping.write_all(&n.to_be_bytes()).await.unwrap();
            ping.read_exact(&mut buf).await.unwrap();
            assert_eq!(u64::from_be_bytes(buf), n);
            if before + window <= total {
                behind.push(progress.load(Ordering::SeqCst) - before);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the bulk transfer hung");
    writer.await.unwrap();
    assert!(behind.len() >= 5, "too few pings: {}", behind.len());
    behind.sort_unstable();
    let p99 = behind[(behind.len() - 1) * 99 / 100];
    println!(
        "bulk {} MiB; ping n={} bulk bytes per round trip: p50={} p99={} max={}",
        total >> 20,
        behind.len(),
        behind[behind.len() / 2],
        p99,
        behind.last().unwrap()
    );
    assert!(
        p99 < window,
        "a ping waited for {p99} bytes of the bulk stream (window {window})"
    );
}
