//! The baselines: raw UDP (no reliability), TCP with `LengthDelimitedCodec`, and QUIC (quinn).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use quinn::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::task::AbortOnDropHandle;

use crate::payload;
use crate::transports::{PingResult, RunResult, LOOPBACK};

/// Messages per flush in the batched rows (TCP batched, quinn).
pub const BATCH: u64 = 64;

/// How long the raw UDP receiver waits for more once the sender is done.
const UDP_DRAIN: Duration = Duration::from_millis(200);

/// How long a raw UDP ping waits for its echo before counting it lost.
const UDP_PING_TIMEOUT: Duration = Duration::from_millis(500);

/// A loopback UDP socket with the kernel buffers hawser asks for on its own sockets
/// ([`hawser_net::lsp::SOCKET_BUFFER_BYTES`]), so the baseline is not penalised by smaller ones.
pub async fn udp_socket() -> Result<UdpSocket> {
    let socket = UdpSocket::bind(LOOPBACK).await?;
    let sock = socket2::SockRef::from(&socket);
    sock.set_recv_buffer_size(hawser_net::lsp::SOCKET_BUFFER_BYTES)?;
    sock.set_send_buffer_size(hawser_net::lsp::SOCKET_BUFFER_BYTES)?;
    Ok(socket)
}

/// Raw UDP: `n` datagrams as fast as `send` goes; the receiver counts what arrives, in which
/// order, until the sender is done and nothing came for [`UDP_DRAIN`].
pub async fn udp_throughput(n: u64, size: usize, progress: Arc<AtomicU64>) -> Result<RunResult> {
    let rx = udp_socket().await?;
    let tx = udp_socket().await?;
    tx.connect(rx.local_addr()?).await?;
    let sender_done = Arc::new(AtomicBool::new(false));
    let done = sender_done.clone();
    let receiver = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let (mut received, mut reordered, mut next) = (0u64, 0u64, 0u64);
        let mut last = None;
        while received < n {
            match tokio::time::timeout(UDP_DRAIN, rx.recv(&mut buf)).await {
                Ok(Ok(len)) => {
                    let idx = payload::index_of(&buf[..len]).ok_or_else(|| anyhow!("runt"))?;
                    payload::check(idx, size, &buf[..len]).map_err(|e| anyhow!(e))?;
                    if idx < next {
                        reordered += 1;
                    }
                    next = next.max(idx + 1);
                    received += 1;
                    last = Some(Instant::now());
                    progress.store(received, Ordering::Relaxed);
                }
                Ok(Err(e)) => return Err(anyhow!("recv: {e}")),
                Err(_) if done.load(Ordering::Acquire) => break,
                Err(_) => {}
            }
        }
        Ok::<_, anyhow::Error>((received, reordered, last))
    }));
    let start = Instant::now();
    for i in 0..n {
        tx.send(&payload::make(i, size)).await?;
    }
    sender_done.store(true, Ordering::Release);
    let (received, reordered, last) = receiver.await.context("receiver task")??;
    let last = last.ok_or_else(|| anyhow!("no datagram arrived"))?;
    Ok(RunResult {
        received,
        lost: n - received,
        reordered,
        secs: (last - start).as_secs_f64(),
        retransmits: 0,
        probes: 0,
        rto_expiries: 0,
        datagrams: 0,
        cpu_secs: 0.0,
    })
}

/// Raw UDP ping-pong; a round trip without an answer in [`UDP_PING_TIMEOUT`] counts as lost.
pub async fn udp_ping(
    pings: u64,
    warmup: u64,
    size: usize,
    progress: Arc<AtomicU64>,
) -> Result<PingResult> {
    let server = udp_socket().await?;
    let client = udp_socket().await?;
    client.connect(server.local_addr()?).await?;
    let _echo = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok((len, from)) = server.recv_from(&mut buf).await {
            let _ = server.send_to(&buf[..len], from).await;
        }
    }));
    let mut result = PingResult::default();
    let mut buf = vec![0u8; 65_536];
    for i in 0..warmup + pings {
        let t0 = Instant::now();
        client.send(&payload::make(i, size)).await?;
        // Skip stale echoes of earlier lost-then-late round trips.
        let answered = loop {
            match tokio::time::timeout_at(t0 + UDP_PING_TIMEOUT, client.recv(&mut buf)).await {
                Ok(Ok(len)) if payload::index_of(&buf[..len]) == Some(i) => {
                    payload::check(i, size, &buf[..len]).map_err(|e| anyhow!(e))?;
                    break true;
                }
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => bail!("recv: {e}"),
                Err(_) => break false,
            }
        };
        let rtt = t0.elapsed();
        if i >= warmup {
            if answered {
                result.samples.push(rtt);
            } else {
                result.lost += 1;
            }
            progress.store(i + 1 - warmup, Ordering::Relaxed);
        }
    }
    Ok(result)
}

async fn tcp_pair() -> Result<(Framed<TcpStream, LengthDelimitedCodec>, TcpStream)> {
    let listener = TcpListener::bind(LOOPBACK).await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    // Latency matters for ping-pong; the batched row batches by itself.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((Framed::new(client, LengthDelimitedCodec::new()), server))
}

/// TCP: `n` length-delimited messages; `batched` feeds them and flushes every [`BATCH`],
/// otherwise each is sent (and flushed) on its own.
pub async fn tcp_throughput(
    n: u64,
    size: usize,
    batched: bool,
    progress: Arc<AtomicU64>,
) -> Result<RunResult> {
    let (mut client, server) = tcp_pair().await?;
    let receiver = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut server = Framed::new(server, LengthDelimitedCodec::new());
        for i in 0..n {
            let msg = server
                .next()
                .await
                .ok_or_else(|| anyhow!("eof after {i} messages"))??;
            payload::check(i, size, &msg).map_err(|e| anyhow!(e))?;
            progress.store(i + 1, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>(Instant::now())
    }));
    let start = Instant::now();
    for i in 0..n {
        let msg = payload::make(i, size);
        if batched {
            client.feed(msg).await?;
            if i % BATCH == BATCH - 1 {
                SinkExt::<Bytes>::flush(&mut client).await?;
            }
        } else {
            client.send(msg).await?;
        }
    }
    SinkExt::<Bytes>::flush(&mut client).await?;
    let end = receiver.await.context("receiver task")??;
    Ok(RunResult::complete(n, end - start))
}

/// TCP ping-pong, one flushed message each way.
pub async fn tcp_ping(
    pings: u64,
    warmup: u64,
    size: usize,
    progress: Arc<AtomicU64>,
) -> Result<PingResult> {
    let (mut client, server) = tcp_pair().await?;
    let _echo = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut server = Framed::new(server, LengthDelimitedCodec::new());
        while let Some(Ok(msg)) = server.next().await {
            if server.send(msg.freeze()).await.is_err() {
                return;
            }
        }
    }));
    let mut result = PingResult::default();
    for i in 0..warmup + pings {
        let t0 = Instant::now();
        client.send(payload::make(i, size)).await?;
        let echo = client.next().await.ok_or_else(|| anyhow!("eof"))??;
        let rtt = t0.elapsed();
        payload::check(i, size, &echo).map_err(|e| anyhow!(e))?;
        if i >= warmup {
            result.samples.push(rtt);
            progress.store(i + 1 - warmup, Ordering::Relaxed);
        }
    }
    Ok(result)
}

/// A quinn server endpoint with a fresh self-signed certificate for "localhost", and a client
/// endpoint trusting it, both on loopback.
fn quinn_endpoints() -> Result<(quinn::Endpoint, quinn::Endpoint)> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert_der: CertificateDer<'static> = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server_config = quinn::ServerConfig::with_single_cert(vec![cert_der.clone()], key)?;
    let server = quinn::Endpoint::server(server_config, LOOPBACK)?;
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let mut client = quinn::Endpoint::client(LOOPBACK)?;
    client.set_default_client_config(quinn::ClientConfig::with_root_certificates(Arc::new(
        roots,
    ))?);
    Ok((server, client))
}

/// Connects the two endpoints; returns the client's connection and the server's.
async fn quinn_connect(
    server: &quinn::Endpoint,
    client: &quinn::Endpoint,
) -> Result<(quinn::Connection, quinn::Connection)> {
    let connecting = client.connect(server.local_addr()?, "localhost")?;
    let incoming = server
        .accept()
        .await
        .ok_or_else(|| anyhow!("server endpoint closed"))?;
    let (c, s) = tokio::join!(connecting, incoming);
    Ok((
        c.context("client handshake")?,
        s.context("server handshake")?,
    ))
}

/// quinn: `n` length-delimited messages on one bidirectional stream, fed and flushed every
/// [`BATCH`] (quinn copies each write into the stream's buffer; flush is cheap).
pub async fn quinn_throughput(n: u64, size: usize, progress: Arc<AtomicU64>) -> Result<RunResult> {
    let (server_ep, client_ep) = quinn_endpoints()?;
    let (client_conn, server_conn) = quinn_connect(&server_ep, &client_ep).await?;
    let receiver = AbortOnDropHandle::new(tokio::spawn(async move {
        let (_send, recv) = server_conn.accept_bi().await?;
        let mut reader = FramedRead::new(recv, LengthDelimitedCodec::new());
        for i in 0..n {
            let msg = reader
                .next()
                .await
                .ok_or_else(|| anyhow!("eof after {i} messages"))??;
            payload::check(i, size, &msg).map_err(|e| anyhow!(e))?;
            progress.store(i + 1, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>((Instant::now(), server_conn))
    }));
    let start = Instant::now();
    let (send, _recv) = client_conn.open_bi().await?;
    let mut writer = FramedWrite::new(send, LengthDelimitedCodec::new());
    for i in 0..n {
        writer.feed(payload::make(i, size)).await?;
        if i % BATCH == BATCH - 1 {
            SinkExt::<Bytes>::flush(&mut writer).await?;
        }
    }
    SinkExt::<Bytes>::flush(&mut writer).await?;
    writer.get_mut().finish()?;
    let (end, server_conn) = receiver.await.context("receiver task")??;
    client_conn.close(0u32.into(), b"done");
    server_conn.close(0u32.into(), b"done");
    Ok(RunResult::complete(n, end - start))
}

/// quinn ping-pong on one bidirectional stream, one flushed message each way.
pub async fn quinn_ping(
    pings: u64,
    warmup: u64,
    size: usize,
    progress: Arc<AtomicU64>,
) -> Result<PingResult> {
    let (server_ep, client_ep) = quinn_endpoints()?;
    let (client_conn, server_conn) = quinn_connect(&server_ep, &client_ep).await?;
    let _echo = AbortOnDropHandle::new(tokio::spawn(async move {
        let Ok((send, recv)) = server_conn.accept_bi().await else {
            return;
        };
        let mut reader = FramedRead::new(recv, LengthDelimitedCodec::new());
        let mut writer = FramedWrite::new(send, LengthDelimitedCodec::new());
        while let Some(Ok(msg)) = reader.next().await {
            if writer.send(msg.freeze()).await.is_err() {
                return;
            }
        }
    }));
    let (send, recv) = client_conn.open_bi().await?;
    let mut reader = FramedRead::new(recv, LengthDelimitedCodec::new());
    let mut writer = FramedWrite::new(send, LengthDelimitedCodec::new());
    let mut result = PingResult::default();
    for i in 0..warmup + pings {
        let t0 = Instant::now();
        writer.send(payload::make(i, size)).await?;
        let echo = reader.next().await.ok_or_else(|| anyhow!("eof"))??;
        let rtt = t0.elapsed();
        payload::check(i, size, &echo).map_err(|e| anyhow!(e))?;
        if i >= warmup {
            result.samples.push(rtt);
            progress.store(i + 1 - warmup, Ordering::Relaxed);
        }
    }
    client_conn.close(0u32.into(), b"done");
    Ok(result)
}
