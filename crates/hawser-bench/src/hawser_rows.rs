//! hawser's rows: one LSP client sending to one server, ping-pong through an echo server, both
//! optionally over fault-injecting sockets.
//!
//! Every hawser setting the benchmark uses is in [`hawser_params`] and [`hawser_config`]: when
//! the protocol gains a faster preset (`Params::throughput()`), batching or a retransmission
//! policy, plug it in there and every row follows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use hawser_net::fault_socket::{FaultConfig, FaultySocket};
use hawser_net::lsp::{
    AckPolicy, Client, Codec, Config, EndpointStats, Params, RetransmitPolicy, Server,
    ServerReadError, Socket,
};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::payload;
use crate::transports::{PingResult, RunResult, LOOPBACK};

/// `--window`: overrides the window and `max_unacked` of [`hawser_params`] (set once, at start).
pub static WINDOW_OVERRIDE: OnceLock<u32> = OnceLock::new();

/// The protocol parameters of every hawser row: the library's bulk preset,
/// [`Params::throughput`] (δ 200 ms, K 25, ω = M = 1,024, back-off up to 8), unless `--window`
/// overrides ω and M.
pub fn hawser_params() -> Params {
    let mut params = Params::throughput();
    if let Some(&window) = WINDOW_OVERRIDE.get() {
        params.window = window;
        params.max_unacked = window;
    }
    params
}

/// The full endpoint configuration of every hawser row (client and server alike).
pub fn hawser_config(codec: Codec) -> Config {
    let mut config = Config::new(hawser_params())
        .with_codec(codec)
        // Adaptive (RTT-based) for binary, the reference's epoch resends for JSON.
        .with_retransmit(RetransmitPolicy::Auto)
        // Cumulative for binary, one Ack per Data message for JSON (as the reference).
        .with_acks(AckPolicy::Auto);
    // Enough for the 1 KiB rows in either codec (the default).
    config.max_payload = 1400;
    config
}

/// The `hawser-json-cack` row: JSON, but in-order Data acknowledged by one CAck per received
/// batch (allowed by the spec, accepted by every peer) instead of one Ack per message.
pub fn hawser_json_cack_config() -> Config {
    hawser_config(Codec::Json).with_acks(AckPolicy::Cumulative)
}

/// How a hawser pair's sockets behave.
#[derive(Clone, Copy, Debug)]
pub enum UdpPath {
    /// Plain tokio UDP sockets.
    Plain,
    /// [`FaultySocket`]s on both ends, each losing this percentage of what it sends (so each
    /// direction loses it once).
    Lossy(f64),
}

async fn socket(codec: Codec, link: UdpPath, seed: u64) -> Result<Socket> {
    Ok(match link {
        UdpPath::Plain => UdpSocket::bind(LOOPBACK).await?.into(),
        UdpPath::Lossy(percent) => {
            // The same kernel buffers as a plain hawser socket, so that only the injected loss
            // differs from the loss-free rows.
            let udp = crate::baselines::udp_socket().await?;
            let s = FaultySocket::from_socket(udp, codec, seed);
            s.set_outbound(FaultConfig::dropping(percent));
            s.into()
        }
    })
}

/// A server and one client connected to it.
pub async fn pair(config: &Config, link: UdpPath, seed: u64) -> Result<(Server, Client)> {
    let codec = config.codec;
    let server = Server::bind_with(config.clone(), socket(codec, link, seed).await?)?;
    let client_socket = socket(codec, link, seed.wrapping_add(1)).await?;
    let client = Client::connect_with(
        server.local_addr(),
        (seed as u32) & 0xffff,
        config.clone(),
        client_socket,
    )
    .await
    .context("connect")?;
    Ok((server, client))
}

/// Writes `payload` with `Client::send`: a `try_send` that waits for room in the send queue (one
/// lock when there is room, as `write`), so that the payload is handed over, not cloned to be
/// kept for a retry (a clone turns a `Vec`-backed `Bytes` into a shared one: an allocation and
/// two atomic operations per message that the quinn and TCP rows, which hand theirs over, do not
/// pay).
pub async fn write_client(client: &Client, payload: Bytes) -> Result<()> {
    client.send(payload).await.map_err(|e| anyhow!("send: {e}"))
}

/// Sends `n` messages of `size` bytes client to server; the server checks each arrives once and
/// in order. Timed from the first write to the last read.
pub async fn throughput(
    config: &Config,
    link: UdpPath,
    n: u64,
    size: usize,
    seed: u64,
    progress: Arc<AtomicU64>,
) -> Result<RunResult> {
    let (server, client) = pair(config, link, seed).await?;
    let receiver = AbortOnDropHandle::new(tokio::spawn(async move {
        for i in 0..n {
            let (_, msg) = server
                .read()
                .await
                .map_err(|e| anyhow!("server read after {i} messages: {e}"))?;
            payload::check(i, size, &msg).map_err(|e| anyhow!(e))?;
            progress.store(i + 1, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>((Instant::now(), server.stats()))
    }));
    let start = Instant::now();
    for i in 0..n {
        write_client(&client, payload::make(i, size)).await?;
    }
    let (end, server_stats) = receiver.await.context("receiver task")??;
    Ok(run_result(n, end - start, &client.stats(), &server_stats))
}

/// The `hawser-batched` row: like [`throughput`], through the batch calls: the sender hands
/// over [`BATCH`](crate::baselines::BATCH) messages per `send_batch` (as the TCP and quinn
/// rows flush every `BATCH`), the receiver takes up to `BATCH` ready messages per
/// `read_batch` and still checks every one.
pub async fn throughput_batched(
    config: &Config,
    n: u64,
    size: usize,
    seed: u64,
    progress: Arc<AtomicU64>,
) -> Result<RunResult> {
    let (server, client) = pair(config, UdpPath::Plain, seed).await?;
    let receiver = AbortOnDropHandle::new(tokio::spawn(async move {
        let max = crate::baselines::BATCH as usize;
        let mut got = Vec::with_capacity(max);
        let mut i = 0;
        while i < n {
            got.clear();
            server
                .read_batch(&mut got, max)
                .await
                .map_err(|e| anyhow!("server read after {i} messages: {e}"))?;
            for (_, msg) in &got {
                payload::check(i, size, msg).map_err(|e| anyhow!(e))?;
                i += 1;
            }
            progress.store(i, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>((Instant::now(), server.stats()))
    }));
    let start = Instant::now();
    let mut batch = std::collections::VecDeque::with_capacity(crate::baselines::BATCH as usize);
    let mut i = 0;
    while i < n {
        while i < n && (batch.len() as u64) < crate::baselines::BATCH {
            batch.push_back(payload::make(i, size));
            i += 1;
        }
        client
            .send_batch(&mut batch)
            .await
            .map_err(|e| anyhow!("send_batch: {e}"))?;
    }
    let (end, server_stats) = receiver.await.context("receiver task")??;
    Ok(run_result(n, end - start, &client.stats(), &server_stats))
}

/// A complete run of `n` messages in `elapsed`, with the endpoints' counters.
fn run_result(
    n: u64,
    elapsed: Duration,
    client: &EndpointStats,
    server: &EndpointStats,
) -> RunResult {
    RunResult {
        retransmits: client.conns.retransmits,
        probes: client.conns.probes,
        rto_expiries: client.conns.rto_expiries,
        datagrams: client.datagrams_sent + server.datagrams_sent,
        ..RunResult::complete(n, elapsed)
    }
}

/// Starts an echo task on `server`: every message goes back to its connection.
pub fn spawn_echo(server: Arc<Server>) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        loop {
            match server.read().await {
                Ok((conn, msg)) => {
                    // A refused echo shows up as a missing reply on the client side.
                    let _ = server.try_send(conn, msg);
                }
                Err(ServerReadError::ConnEnded(..)) => {}
                Err(_) => return,
            }
        }
    }))
}

/// `warmup` unrecorded, then `pings` recorded round trips of `size`-byte messages through an
/// echo server. Stops early (not an error) at `budget`, if given.
pub async fn ping(
    config: &Config,
    link: UdpPath,
    pings: u64,
    warmup: u64,
    size: usize,
    budget: Option<Instant>,
    progress: Arc<AtomicU64>,
) -> Result<PingResult> {
    let (server, client) = pair(config, link, 7).await?;
    let _echo = spawn_echo(Arc::new(server));
    let mut result = PingResult::default();
    for i in 0..warmup + pings {
        if budget.is_some_and(|b| Instant::now() >= b) {
            result.stopped_early = true;
            break;
        }
        let t0 = Instant::now();
        client
            .try_send(payload::make(i, size))
            .map_err(|e| anyhow!("write: {e}"))?;
        let echo = client.read().await.map_err(|e| anyhow!("read: {e}"))?;
        let rtt = t0.elapsed();
        payload::check(i, size, &echo).map_err(|e| anyhow!(e))?;
        if i >= warmup {
            result.samples.push(rtt);
            progress.store(i + 1 - warmup, Ordering::Relaxed);
        }
    }
    Ok(result)
}
