//! `hawser lsp echo-server` and `hawser lsp echo-client`.

use std::collections::HashSet;
use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use hawser_net::lsp::{Client, ConnectError, EndReason, EndpointStats, Server, ServerReadError};
use tokio::io::AsyncBufReadExt as _;
use tokio::time::Instant;
use tracing::warn;

use crate::args::{EchoClientArgs, EchoServerArgs, ProtoArgs};
use crate::faults::{self, FaultProbe, SocketFaults};
use crate::payload::HEADER_LEN;
use crate::pump::{self, Outcome};
use crate::CliError;

/// Runs the echo server until Ctrl-C, then closes it gracefully (a second Ctrl-C skips the
/// flush).
///
/// # Errors
/// Invalid settings or address; the socket cannot be bound.
pub async fn server(a: EchoServerArgs) -> Result<ExitCode, CliError> {
    let config = a.proto.config()?;
    let socket_faults = socket_faults(&a.proto)?;
    let addr = resolve(&a.host, a.port).await?;
    let (socket, probe) = faults::bind(addr, config.codec, socket_faults)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    let server = Server::bind_with(config, socket).map_err(connect_error)?;
    println!("listening on {}", server.local_addr());
    // Tests and scripts wait for that line; make sure it is out.
    let _ = std::io::stdout().flush();

    let mut open: HashSet<hawser_net::lsp::ConnId> = HashSet::new();
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                eprintln!("hawser: interrupted; closing (Ctrl-C again to skip the flush)");
                break;
            }
            item = server.read() => match item {
                Ok((conn, payload)) => {
                    if open.insert(conn) {
                        eprintln!("hawser: {conn} connected");
                    }
                    if let Err(e) = server.try_send(conn, payload) {
                        warn!(%conn, %e, "echo not sent");
                    }
                }
                Err(ServerReadError::ConnEnded(conn, reason)) => {
                    open.remove(&conn);
                    let why = match reason {
                        EndReason::Closed => "closed",
                        _ => "lost (the client closed or went silent)",
                    };
                    eprintln!("hawser: {conn} ended: {why}");
                }
                Err(e) => {
                    eprintln!("hawser: {e}");
                    break;
                }
            },
        }
    }
    tokio::select! {
        closed = server.close() => match closed {
            Ok(()) => eprintln!("hawser: server closed"),
            Err(e) => eprintln!("hawser: server closed: {e}"),
        },
        _ = tokio::signal::ctrl_c() => eprintln!("hawser: interrupted again; not flushing"),
    }
    eprintln!("hawser: {}", stats_line(&server.stats(), probe.as_ref()));
    Ok(ExitCode::SUCCESS)
}

/// Runs the echo client: stdin's lines, or `--count` generated messages checked on return.
///
/// # Errors
/// Invalid settings or address; no answer from the server; socket errors.
pub async fn client(a: EchoClientArgs) -> Result<ExitCode, CliError> {
    let config = a.proto.config()?;
    let socket_faults = socket_faults(&a.proto)?;
    if a.pipeline == 0 {
        return Err(CliError::Invalid(
            "invalid --pipeline: must be greater than zero".into(),
        ));
    }
    if a.count.is_some() && a.size > config.max_payload {
        return Err(CliError::Invalid(format!(
            "invalid --size: {} bytes exceeds the payload limit of {}",
            a.size, config.max_payload
        )));
    }
    let server = resolve_addr(&a.addr).await?;
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let codec = config.codec;
    let epochs = config
        .params
        .epoch
        .checked_mul(config.params.epoch_limit)
        .unwrap_or(Duration::MAX);
    let (socket, probe) = faults::bind(local, codec, socket_faults)
        .await
        .with_context(|| format!("cannot bind {local}"))?;
    let client = Client::connect_with(server, a.proto.isn(), config, socket)
        .await
        .map_err(|e| match e {
            ConnectError::Timeout => CliError::Failed(anyhow!(
                "no answer from {server} within {} ({} epochs of {} ms): is an echo server \
                 running there, and on the same wire? This client speaks --wire {}; a server \
                 on the other wire ignores its Connect",
                fmt_duration(epochs),
                a.proto.epoch_limit,
                a.proto.epoch_ms,
                a.proto.wire_name()
            )),
            e => connect_error(e),
        })?;
    let deadline = (a.timeout > 0).then(|| Instant::now() + Duration::from_secs(a.timeout));
    match a.count {
        Some(count) => count_mode(&client, &a, count, deadline, probe.as_ref()).await,
        None => line_mode(&client, &a.proto, deadline).await,
    }
}

/// Sends `count` generated messages, pipelined, checks the echoes and prints a summary.
async fn count_mode(
    client: &Client,
    a: &EchoClientArgs,
    count: u64,
    deadline: Option<Instant>,
    probe: Option<&FaultProbe>,
) -> Result<ExitCode, CliError> {
    let size = a.size.max(HEADER_LEN);
    let start = Instant::now();
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut hinted = false;
    let mut last = (start, 0u64);
    let progress = |sent: u64, echoed: u64| {
        let now = Instant::now();
        let rate = (echoed - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
        last = (now, echoed);
        let stats = client.stats();
        eprintln!(
            "hawser: sent {sent} of {count}, echoed {echoed}, {rate:.0} msg/s, {} retransmits",
            stats.conns.retransmits
        );
        if !hinted && stats.conns.retransmits > 0 && is_cautious(&a.proto) {
            hinted = true;
            eprintln!("hawser: hint: {}", slow_hint(&a.proto));
        }
    };
    let report =
        pump::pump_with_progress(client, count, size, a.pipeline, deadline, stop, progress).await;
    let elapsed = start.elapsed();
    let closed = if report.outcome == Outcome::Complete {
        Some(close_within(client, deadline).await)
    } else {
        None
    };
    let stats = client.stats();
    let c = &report.check;
    let rate = c.distinct as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "echo summary ({}, {} wire, {} retransmission)",
        client.conn_id(),
        a.proto.wire_name(),
        a.proto.policy_name()
    );
    println!("  sent:          {}", report.sent);
    println!("  received:      {}", c.received);
    println!("  out of order:  {}", c.out_of_order);
    println!("  duplicates:    {}", c.duplicates);
    println!("  missing:       {}", c.missing());
    println!("  corrupted:     {}", c.corrupted);
    println!("  retransmits:   {}", stats.conns.retransmits);
    println!("  heartbeats:    {}", stats.conns.heartbeats_sent);
    if let Some(p) = probe {
        let f = p.counts().total();
        println!("  injected drops: {} of {} datagrams", f.dropped, f.seen);
    }
    println!(
        "  elapsed:       {} ({rate:.0} msg/s)",
        fmt_duration(elapsed)
    );
    if let Some(Err(e)) = &closed {
        // Every echo came back, so every message was delivered: only the last acks are missing.
        eprintln!("hawser: warning: close: {e}");
    }
    let ok = report.outcome == Outcome::Complete && c.is_clean();
    if ok {
        println!("result: ok");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("result: FAILED ({})", report.outcome);
        Ok(ExitCode::FAILURE)
    }
}

/// Sends each line of stdin, prints each echo; at the end of stdin waits for the remaining
/// echoes, then closes.
async fn line_mode(
    client: &Client,
    proto: &ProtoArgs,
    deadline: Option<Instant>,
) -> Result<ExitCode, CliError> {
    // Lines as bytes: stdin need not be UTF-8.
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).split(b'\n');
    let mut eof = false;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut ticks =
        tokio::time::interval_at(Instant::now() + pump::PROGRESS_EVERY, pump::PROGRESS_EVERY);
    let (mut last_echo, mut hinted) = (Instant::now(), false);
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let outcome = loop {
        if eof && received >= sent {
            break Ok(());
        }
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut ctrl_c => break Err(anyhow!("interrupted")),
            () = timeout => break Err(anyhow!("timed out")),
            _ = ticks.tick() => {
                // Say so when echoes are overdue: a second and more without one.
                if sent > received && last_echo.elapsed() >= pump::PROGRESS_EVERY {
                    let retransmits = client.stats().conns.retransmits;
                    eprintln!(
                        "hawser: waiting for {} echoes ({retransmits} retransmits)",
                        sent - received
                    );
                    if !hinted && retransmits > 0 && is_cautious(proto) {
                        hinted = true;
                        eprintln!("hawser: hint: {}", slow_hint(proto));
                    }
                }
            }
            echo = client.read() => match echo {
                Ok(p) => {
                    received += 1;
                    last_echo = Instant::now();
                    // The bytes as sent, one line each (stdout flushes at each newline).
                    let mut out = std::io::stdout().lock();
                    out.write_all(&p)
                        .and_then(|()| out.write_all(b"\n"))
                        .context("writing stdout")?;
                }
                Err(e) => break Err(anyhow!("{e} with {} echoes outstanding", sent - received)),
            },
            line = lines.next_segment(), if !eof => match line {
                Ok(Some(line)) => {
                    // Waits for room if the send queue is full (acks free it, reading or not).
                    client.send(line).await.context("write")?;
                    sent += 1;
                }
                Ok(None) => eof = true,
                Err(e) => break Err(anyhow!("reading stdin: {e}")),
            },
        }
    };
    match outcome {
        Ok(()) => {
            if let Err(e) = close_within(client, deadline).await {
                eprintln!("hawser: warning: close: {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(CliError::Failed(e)),
    }
}

/// Whether the protocol settings are the reference's cautious ones (a window of a few
/// messages, or epochs of a second or more), under which each lost message stalls the
/// connection for an epoch.
fn is_cautious(p: &ProtoArgs) -> bool {
    p.window.min(p.max_unacked) <= 4 || p.epoch_ms >= 1000
}

/// The hint for a slow connection under loss.
fn slow_hint(p: &ProtoArgs) -> String {
    let window = p.window.min(p.max_unacked);
    let mut try_this = Vec::new();
    if window <= 4 {
        try_this.push("--window 64 --max-unacked 64".to_owned());
    }
    if p.epoch_ms > 200 {
        try_this.push("--epoch-ms 100".to_owned());
    }
    if p.wire == crate::args::Wire::Binary {
        try_this.push("--retransmit adaptive".to_owned());
    }
    format!(
        "messages are being resent: with a window of {window} and {} ms epochs each loss \
         stalls the connection for an epoch; both ends accept faster settings: {}",
        p.epoch_ms,
        try_this.join(" ")
    )
}

/// Closes the client gracefully, giving up at `deadline`.
async fn close_within(client: &Client, deadline: Option<Instant>) -> anyhow::Result<()> {
    let close = client.close();
    match deadline {
        Some(at) => match tokio::time::timeout_at(at, close).await {
            Ok(r) => r.map_err(Into::into),
            Err(_) => Err(anyhow!("timed out")),
        },
        None => close.await.map_err(Into::into),
    }
}

/// The faults `--drop-percent` asks for, on both directions of the socket.
fn socket_faults(p: &ProtoArgs) -> Result<Option<SocketFaults>, CliError> {
    Ok(p.faults()?.map(|f| SocketFaults {
        outbound: f.clone(),
        inbound: f,
        seed: p.fault_seed(),
    }))
}

/// One line of endpoint counters (and injected faults).
fn stats_line(s: &EndpointStats, probe: Option<&FaultProbe>) -> String {
    let mut line = format!(
        "connections {} (lost {}), data sent {}, received {}, retransmits {}, heartbeats {}",
        s.connections_opened,
        s.connections_lost,
        s.conns.data_sent,
        s.conns.data_received,
        s.conns.retransmits,
        s.conns.heartbeats_sent
    );
    if let Some(p) = probe {
        let f = p.counts().total();
        line.push_str(&format!(
            ", injected drops {} of {} datagrams",
            f.dropped, f.seen
        ));
    }
    line
}

/// Maps a connect or bind error to the exit status it deserves.
fn connect_error(e: ConnectError) -> CliError {
    match e {
        ConnectError::Params(p) => CliError::Invalid(p.to_string()),
        e => CliError::Failed(e.into()),
    }
}

/// Resolves `host` and `port` to the first address found.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, CliError> {
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?;
    addrs
        .next()
        .ok_or_else(|| CliError::Failed(anyhow!("{host} has no address")))
}

/// Resolves `HOST:PORT`; a malformed one is invalid usage.
async fn resolve_addr(addr: &str) -> Result<SocketAddr, CliError> {
    let port = addr
        .rsplit_once(':')
        .and_then(|(host, port)| (!host.is_empty()).then_some(port))
        .and_then(|p| p.parse::<u16>().ok());
    if port.is_none() {
        return Err(CliError::Invalid(format!(
            "invalid --addr '{addr}': expected HOST:PORT"
        )));
    }
    let mut addrs = tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve {addr}"))?;
    addrs
        .next()
        .ok_or_else(|| CliError::Failed(anyhow!("{addr} has no address")))
}

/// A duration for people: milliseconds below a second, seconds above.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
