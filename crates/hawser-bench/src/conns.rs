//! Many connections: memory per idle connection, and many active echo clients at once.
//!
//! # Memory per idle connection
//! The server and the idle clients each run in a child process of their own (this binary, with
//! the hidden `--internal` role), so the server's resident memory before and after the clients
//! connected is the server's alone: no client state, no leftovers of earlier phases in the
//! allocator. Each client is an ordinary [`Client`] with its own UDP socket (so the clients'
//! process raises `RLIMIT_NOFILE`); the server cannot tell them from clients on N machines.
//! The children talk to the parent in lines on stdin/stdout, and exit when stdin closes.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use hawser_net::lsp::{Client, Codec, Server};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UdpSocket;
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::hawser_rows::{hawser_config, spawn_echo, write_client};
use crate::payload;
use crate::stats::{cpu_secs, rss_kib};
use crate::transports::LOOPBACK;

/// Connects at most this many clients at once (a burst of Connects beyond the server socket's
/// buffer would only be retried an epoch later).
const CONNECT_CONCURRENCY: usize = 128;

/// What the idle-connection measurement found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IdleResult {
    /// Clients asked for.
    pub conns: u64,
    /// Clients that connected.
    pub connected: u64,
    /// Connections the server still had after the idle period.
    pub server_live: u64,
    /// Clients whose connection was still up after the idle period.
    pub clients_alive: u64,
    /// Server RSS before any client, KiB.
    pub server_rss_before_kib: u64,
    /// Server RSS with every client connected and idle, KiB.
    pub server_rss_after_kib: u64,
    /// Server RSS growth per connection, bytes (the headline figure).
    pub server_bytes_per_conn: f64,
    /// Client-process RSS growth per client (its socket, task and endpoint), bytes.
    pub client_bytes_per_conn: f64,
    /// How long the clients stayed idle before measuring, seconds.
    pub idle_secs: f64,
    /// The server process's CPU use while the clients were idle (heartbeats), percent of one
    /// core.
    pub server_idle_cpu_percent: f64,
    /// Time to connect every client, seconds.
    pub connect_secs: f64,
}

/// A child process speaking lines.
struct Child {
    child: tokio::process::Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    name: &'static str,
}

impl Child {
    fn spawn(name: &'static str, args: &[String]) -> Result<Child> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {name}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        Ok(Child {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            name,
        })
    }

    /// The words after `key` on the next line that starts with it (other lines are skipped).
    async fn expect(&mut self, key: &str, within: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .map_err(|_| anyhow!("{}: no `{key}` within {within:?}", self.name))??
                .ok_or_else(|| anyhow!("{} exited before `{key}`", self.name))?;
            let mut words = line.split_whitespace();
            if words.next() == Some(key) {
                return Ok(words.map(str::to_string).collect());
            }
        }
    }

    async fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        Ok(())
    }

    async fn finish(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn num(words: &[String], i: usize) -> Result<u64> {
    words
        .get(i)
        .ok_or_else(|| anyhow!("missing field {i}"))?
        .parse()
        .context("bad number")
}

/// Runs the idle-connection measurement with `conns` clients idle for `idle` (children of this
/// process; see the module docs). `within` bounds each step.
pub async fn idle(conns: u64, idle: Duration, within: Duration) -> Result<IdleResult> {
    let window = crate::hawser_rows::hawser_params().window.to_string();
    let mut server = Child::spawn(
        "idle server",
        &[
            "--internal".into(),
            "idle-server".into(),
            "--conns".into(),
            conns.to_string(),
            "--window".into(),
            window.clone(),
        ],
    )?;
    let addr = server.expect("ADDR", within).await?.join("");
    let server_before = num(&server.expect("RSS", within).await?, 0)?;
    let mut clients = Child::spawn(
        "idle clients",
        &[
            "--internal".into(),
            "idle-clients".into(),
            "--conns".into(),
            conns.to_string(),
            "--server".into(),
            addr,
            "--window".into(),
            window,
        ],
    )?;
    let ready = clients.expect("READY", within).await?;
    let (connected, client_before, client_after) =
        (num(&ready, 0)?, num(&ready, 2)?, num(&ready, 3)?);
    let connect_secs: f64 = ready.get(4).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    if connected == 0 {
        bail!("no client connected ({} failed)", num(&ready, 1)?);
    }
    server.say("MARK").await?;
    let cpu_before: f64 = server.expect("MARK", within).await?.join("").parse()?;
    tokio::time::sleep(idle).await;
    server.say("MEASURE").await?;
    let m = server.expect("MEASURE", within).await?;
    let (server_live, server_after) = (num(&m, 0)?, num(&m, 1)?);
    let cpu_after: f64 = m.get(2).ok_or_else(|| anyhow!("no cpu"))?.parse()?;
    clients.say("CHECK").await?;
    let clients_alive = num(&clients.expect("ALIVE", within).await?, 0)?;
    clients.finish().await;
    server.finish().await;
    let per =
        |before: u64, after: u64| after.saturating_sub(before) as f64 * 1024.0 / connected as f64;
    Ok(IdleResult {
        conns,
        connected,
        server_live,
        clients_alive,
        server_rss_before_kib: server_before,
        server_rss_after_kib: server_after,
        server_bytes_per_conn: per(server_before, server_after),
        client_bytes_per_conn: per(client_before, client_after),
        idle_secs: idle.as_secs_f64(),
        server_idle_cpu_percent: 100.0 * (cpu_after - cpu_before) / idle.as_secs_f64(),
        connect_secs,
    })
}

/// Raises the open-file limit to at least `want` (up to the hard limit).
pub fn raise_nofile(want: u64) -> Result<u64> {
    rlimit::increase_nofile_limit(want).context("raise RLIMIT_NOFILE")
}

/// Child role: a server with room for `conns` connections. Prints `ADDR`, `RSS`, then answers
/// `MARK` with its CPU seconds and `MEASURE` with the live connection count, RSS and CPU
/// seconds; exits when stdin closes.
pub async fn idle_server_role(conns: u64) -> Result<()> {
    let mut config = hawser_config(Codec::Binary);
    config.max_connections = usize::try_from(conns)?.max(1) + 64;
    let server = Server::bind_with(config, UdpSocket::bind(LOOPBACK).await?)?;
    // Let the driver task settle before the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("ADDR {}", server.local_addr());
    println!("RSS {}", rss_kib().unwrap_or(0));
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        match line.trim() {
            "MARK" => println!("MARK {}", cpu_secs().unwrap_or(0.0)),
            "MEASURE" => println!(
                "MEASURE {} {} {}",
                server.connection_count(),
                rss_kib().unwrap_or(0),
                cpu_secs().unwrap_or(0.0)
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Child role: connects `conns` idle clients to `server`. Prints `READY connected failed
/// rss_before rss_after connect_secs`, answers `CHECK` with `ALIVE n`; exits when stdin closes.
pub async fn idle_clients_role(conns: u64, server: std::net::SocketAddr) -> Result<()> {
    raise_nofile(conns + 256)?;
    let before = rss_kib().unwrap_or(0);
    let start = Instant::now();
    let results = connect_many(server, conns, Arc::new(AtomicU64::new(0))).await;
    let connect_secs = start.elapsed().as_secs_f64();
    let failed = results.iter().filter(|r| r.is_err()).count();
    let clients: Vec<Client> = results.into_iter().filter_map(Result::ok).collect();
    println!(
        "READY {} {failed} {before} {} {connect_secs:.3}",
        clients.len(),
        rss_kib().unwrap_or(0)
    );
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = stdin.next_line().await? {
        if line.trim() == "CHECK" {
            let alive = clients.iter().filter(|c| !c.is_driver_finished()).count();
            println!("ALIVE {alive}");
        }
    }
    Ok(())
}

/// Connects `n` clients to `server`, [`CONNECT_CONCURRENCY`] at a time, each on its own socket.
async fn connect_many(
    server: std::net::SocketAddr,
    n: u64,
    progress: Arc<AtomicU64>,
) -> Vec<Result<Client>> {
    futures_util::stream::iter(0..n)
        .map(|i| {
            let progress = progress.clone();
            async move {
                let socket = UdpSocket::bind(LOOPBACK).await?;
                let client = Client::connect_with(
                    server,
                    (i % 60_000) as u32,
                    hawser_config(Codec::Binary),
                    socket,
                )
                .await
                .with_context(|| format!("client {i} connect"))?;
                progress.fetch_add(1, Ordering::Relaxed);
                Ok(client)
            }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await
}

/// What the active echo clients did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EchoResult {
    /// Clients asked for.
    pub clients: u64,
    /// Messages each client sends (and expects back).
    pub per_client: u64,
    /// Message size, bytes.
    pub size: usize,
    /// Clients that connected.
    pub connected: u64,
    /// Clients that got every echo, in order.
    pub completed: u64,
    /// Echoes received and checked, over all clients.
    pub echoed: u64,
    /// Messages sent and never echoed (`clients * per_client - echoed`).
    pub lost: u64,
    /// Time to connect every client, seconds.
    pub connect_secs: f64,
    /// From the first write to the last echo, seconds.
    pub secs: f64,
    /// Echoes per second over all clients.
    pub echoes_per_sec: f64,
    /// The first client error, if any.
    pub first_error: Option<String>,
}

/// `clients` clients connect to one echo server, then all at once each write `per_client`
/// messages of `size` bytes and check every echo comes back in order. `progress` counts echoes.
pub async fn echo(
    clients: u64,
    per_client: u64,
    size: usize,
    progress: Arc<AtomicU64>,
) -> Result<EchoResult> {
    raise_nofile(clients + 256)?;
    let mut config = hawser_config(Codec::Binary);
    config.max_connections = usize::try_from(clients)?.max(1) + 64;
    let server = Arc::new(Server::bind_with(config, UdpSocket::bind(LOOPBACK).await?)?);
    let _echo = spawn_echo(server.clone());
    let start = Instant::now();
    let results = connect_many(server.local_addr(), clients, Arc::new(AtomicU64::new(0))).await;
    let connect_secs = start.elapsed().as_secs_f64();
    let mut first_error = results
        .iter()
        .find_map(|r| r.as_ref().err().map(|e| format!("{e:#}")));
    let connected: Vec<Client> = results.into_iter().filter_map(Result::ok).collect();
    let mut result = EchoResult {
        clients,
        per_client,
        size,
        connected: connected.len() as u64,
        connect_secs,
        ..EchoResult::default()
    };
    let start = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|client| {
            let progress = progress.clone();
            AbortOnDropHandle::new(tokio::spawn(async move {
                for i in 0..per_client {
                    write_client(&client, payload::make(i, size)).await?;
                }
                for i in 0..per_client {
                    let echo = client
                        .read()
                        .await
                        .map_err(|e| anyhow!("read after {i} echoes: {e}"))?;
                    payload::check(i, size, &echo).map_err(|e| anyhow!(e))?;
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(per_client)
            }))
        })
        .collect();
    for task in tasks {
        match task.await {
            Ok(Ok(n)) => {
                result.completed += 1;
                result.echoed += n;
            }
            Ok(Err(e)) => {
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                first_error.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    result.secs = start.elapsed().as_secs_f64();
    // Echoes of clients that failed midway still count as received.
    result.echoed = result.echoed.max(progress.load(Ordering::Relaxed));
    result.lost = (clients * per_client).saturating_sub(result.echoed);
    result.echoes_per_sec = result.echoed as f64 / result.secs.max(1e-9);
    result.first_error = first_error;
    Ok(result)
}
