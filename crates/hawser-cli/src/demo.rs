//! `hawser demo`: an echo server and several clients in one process over 127.0.0.1, with loss,
//! duplication and reordering injected on every socket, checking every echo.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hawser_net::lsp::{Client, Codec, Config, ConnStats, EndpointStats, Params, Server};
use hawser_net::lsp::{ServerReadError, WriteError};
use hawser_proto::fault::FaultConfig;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::args::{policy_name, splitmix64, validate_config, DemoArgs};
use crate::echo::fmt_duration;
use crate::faults::{self, FaultCounts, FaultProbe, SocketFaults};
use crate::payload::{EchoCheck, HEADER_LEN};
use crate::pump::{self, Outcome};
use crate::CliError;

/// The demo's protocol parameters: short epochs so that loss heals fast, a wide window.
fn demo_params() -> Params {
    Params::reference()
        .with_epoch_limit(20)
        .with_epoch(Duration::from_millis(50))
        .with_window(32)
        .with_max_backoff(2)
        .with_max_unacked(32)
}

/// Most messages a demo client keeps written and not yet echoed.
const PIPELINE: u64 = 256;

/// What one demo client did.
struct ClientReport {
    /// The client's number, from 0.
    index: u32,
    /// Messages written.
    sent: u64,
    /// The check of its echoes.
    check: EchoCheck,
    /// Why its traffic stopped, or why it never started.
    outcome: Result<Outcome, String>,
    /// The client, for closing and its counters.
    client: Option<Client>,
    /// Its socket's fault counters.
    probe: Option<FaultProbe>,
}

/// Runs the demo and prints its table. Exit status 0 iff every echo came back exactly once, in
/// order, intact.
///
/// # Errors
/// Invalid options; a socket cannot be bound.
pub async fn run(a: DemoArgs) -> Result<ExitCode, CliError> {
    let codec: Codec = a.wire.into();
    // The adaptive timeout needs no cap here: the library never lets it exceed the epoch
    // schedule's longest wait, (max_backoff + 1) epochs.
    let config = Config::new(demo_params())
        .with_codec(codec)
        .with_retransmit(a.retransmit.into());
    let p = config.params;
    validate_config(&config)?;
    if a.clients == 0 {
        return Err(CliError::Invalid(
            "invalid --clients: must be greater than zero".into(),
        ));
    }
    let size = a.size.max(HEADER_LEN);
    if size > config.max_payload {
        return Err(CliError::Invalid(format!(
            "invalid --size: {size} bytes exceeds the payload limit of {}",
            config.max_payload
        )));
    }
    let reorder = Duration::from_millis(a.reorder_ms);
    let outbound = FaultConfig::default()
        .with_drop_percent(a.drop_percent)
        .with_duplicate_percent(a.duplicate_percent)
        .with_reorder_percent(a.reorder_percent)
        .with_delay(reorder)
        .with_corrupt_percent(a.damage_percent)
        .with_shorten_percent(a.damage_percent)
        .with_lengthen_percent(a.damage_percent);
    outbound
        .validate()
        .map_err(|e| CliError::Invalid(format!("invalid fault option: {e}")))?;
    let faults_for = |k: u64| SocketFaults {
        outbound: outbound.clone(),
        inbound: FaultConfig::none(),
        seed: splitmix64(a.seed ^ splitmix64(k)),
    };

    println!(
        "hawser demo: {} clients x {} messages of {size} bytes over 127.0.0.1, {} wire, seed {}",
        a.clients,
        a.messages,
        codec.name(),
        a.seed
    );
    println!(
        "  params: epoch limit {}, epoch {} ms, window {}, max unacked {}, max backoff {}; \
         {} retransmission",
        p.epoch_limit,
        p.epoch.as_millis(),
        p.window,
        p.max_unacked,
        p.max_backoff,
        policy_name(&config)
    );
    println!(
        "  faults on every socket's sends: drop {}%, duplicate {}%, reorder {}% (held up to {} ms)",
        a.drop_percent, a.duplicate_percent, a.reorder_percent, a.reorder_ms
    );
    if a.damage_percent > 0.0 {
        println!(
            "  payload damage on every socket's sends: corrupt, shorten, lengthen {}% each",
            a.damage_percent
        );
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.timeout.max(1));
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (socket, server_probe) = faults::bind(loopback, codec, Some(faults_for(0)))
        .await
        .context("cannot bind the server socket")?;
    let server =
        Arc::new(Server::bind_with(config.clone(), socket).map_err(|e| {
            CliError::Failed(anyhow::Error::new(e).context("cannot start the server"))
        })?);
    let server_addr = server.local_addr();
    let echo = tokio::spawn(echo_loop(server.clone()));

    let mut clients = JoinSet::new();
    for index in 0..a.clients {
        let config = config.clone();
        let faults = faults_for(u64::from(index) + 1);
        let isn = splitmix64(a.seed.wrapping_add((0xC11E_u64 << 32) | u64::from(index))) as u32;
        let messages = a.messages;
        clients.spawn(async move {
            run_client(
                index,
                server_addr,
                isn,
                config,
                faults,
                messages,
                size,
                deadline,
            )
            .await
        });
    }
    let mut reports = Vec::with_capacity(a.clients as usize);
    while let Some(joined) = clients.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(e) => {
                return Err(CliError::Failed(anyhow::anyhow!(
                    "a client task failed: {e}"
                )))
            }
        }
    }
    reports.sort_by_key(|r| r.index);
    let traffic_elapsed = start.elapsed();

    // A side that has closed goes silent, so a message of the other side whose ack was lost
    // would never be acknowledged. Let both sides' last retransmissions heal first.
    settle(&reports, &server, p, deadline).await;
    let (clean_closes, closes) = close_all(&mut reports, deadline).await;
    let server_closed = match tokio::time::timeout_at(deadline, server.close()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("{e}"),
        Err(_) => "timed out".to_string(),
    };
    let elapsed = start.elapsed();
    let echoed = match tokio::time::timeout(Duration::from_secs(1), echo).await {
        Ok(Ok(n)) => n,
        _ => 0,
    };

    // Totals.
    let mut sent = 0;
    let mut delivered = 0;
    let mut lost = 0;
    let mut duplicated = 0;
    let mut out_of_order = 0;
    let mut corrupted = 0;
    let mut failures = Vec::new();
    let mut stats = EndpointStats::default();
    let mut faults_total = FaultCounts::default();
    let server_stats = server.stats();
    add_stats(&mut stats, &server_stats);
    if let Some(probe) = &server_probe {
        faults_total.accumulate(&probe.counts());
    }
    for r in &reports {
        sent += r.sent;
        delivered += r.check.distinct;
        lost += r.check.missing();
        duplicated += r.check.duplicates;
        out_of_order += r.check.out_of_order;
        corrupted += r.check.corrupted;
        match &r.outcome {
            Ok(Outcome::Complete) => {}
            Ok(other) => failures.push(format!("client {}: {other}", r.index)),
            Err(e) => failures.push(format!("client {}: {e}", r.index)),
        }
        if let Some(c) = &r.client {
            add_stats(&mut stats, &c.stats());
        }
        if let Some(probe) = &r.probe {
            faults_total.accumulate(&probe.counts());
        }
    }
    // Faults are injected on sends only; the inbound injectors pass everything.
    let f = faults_total.total();
    let c: &ConnStats = &stats.conns;

    println!();
    row("messages sent", sent);
    row("echoes delivered", delivered);
    row("lost", lost);
    row("duplicated", duplicated);
    row("out of order", out_of_order);
    row("corrupted", corrupted);
    row("retransmissions", c.retransmits);
    row("heartbeats", c.heartbeats_sent);
    row("duplicates suppressed", c.duplicates_received);
    row("datagrams sent", stats.datagrams_sent);
    row("messages echoed by server", echoed);
    println!("  {:<28}{:>12}", "elapsed", fmt_duration(elapsed));
    println!(
        "  {:<28}{:>12}",
        "  of which traffic",
        fmt_duration(traffic_elapsed)
    );
    println!(
        "  {:<28}{:>12}",
        "clean closes",
        format!("{clean_closes}/{closes}")
    );
    println!("  {:<28}{:>12}", "server close", server_closed);
    println!(
        "  injected faults (on {} datagrams sent through them):",
        faults_total.outbound.seen
    );
    row("  dropped", f.dropped);
    row("  duplicated", f.duplicated);
    row("  reordered", f.reordered);
    row("  delayed", f.delayed);
    if a.damage_percent > 0.0 {
        row("  corrupted", f.corrupted);
        row("  shortened", f.shortened);
        row("  lengthened", f.lengthened);
    }
    if faults_total.overflowed > 0 {
        row("  delay queue overflows", faults_total.overflowed);
    }
    println!();
    for failure in &failures {
        println!("  {failure}");
    }
    let mut pass = lost == 0 && duplicated == 0 && out_of_order == 0 && corrupted == 0;
    if a.nodes > 0 {
        let lease = Duration::from_millis(a.lease_ms.max(1));
        match crate::demo_nodes::run(a.nodes, lease).await {
            Ok(report) => {
                // A crash is detected within one lease of the last renewal, so within a lease
                // (plus scheduling slack) of the stop. The times are wall-clock times on a
                // machine that may be busy: a later detection is reported, not a failure (a
                // crash never detected is one: `run` fails).
                let slack = lease + lease / 2;
                if let Some(worst) = report.dead_after.iter().max() {
                    if *worst > slack {
                        println!(
                            "  detection took {} (lease {}): a busy machine delays timers",
                            fmt_duration(*worst),
                            fmt_duration(lease)
                        );
                    }
                }
            }
            Err(e) => {
                println!("  reachability demo failed: {e:#}");
                pass = false;
            }
        }
    }
    if a.raft_writes > 0 {
        pass &= raft_part(&a, outbound_faults(&a)).await;
    }
    println!();
    if pass {
        println!("result: PASS");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("result: FAIL");
        Ok(ExitCode::FAILURE)
    }
}

/// The loss, duplication and reordering of the demo's arguments (no payload damage: the
/// relays of the Raft part carry sealed session data, whose damage is the same as a loss).
fn outbound_faults(a: &DemoArgs) -> FaultConfig {
    FaultConfig::default()
        .with_drop_percent(a.drop_percent)
        .with_duplicate_percent(a.duplicate_percent)
        .with_reorder_percent(a.reorder_percent)
        .with_delay(Duration::from_millis(a.reorder_ms))
}

/// The Raft part: prints what it measured and checked; whether it passed.
async fn raft_part(a: &DemoArgs, faults: FaultConfig) -> bool {
    println!();
    println!("raft: a replicated key-value store (openraft on hawser)");
    let election_bound = Duration::from_secs(5);
    match crate::demo_raft::run(faults, a.raft_writes).await {
        Ok(r) => {
            let (before, after) = r.acknowledged;
            println!("  writes acknowledged          {before:>6} before, {after} after the stop");
            println!(
                "  relays dropped/duplicated/reordered {} / {} / {} datagrams",
                r.faults.0, r.faults.1, r.faults.2
            );
            println!(
                "  every acknowledged write read back from both survivors: {}",
                if r.wrong.is_empty() { "yes" } else { "NO" }
            );
            for w in r.wrong.iter().take(10) {
                println!("    {w}");
            }
            // The election's wall-clock time is reported, not judged: a busy machine delays
            // timers (an election that never ends is a failure: `run` gives up on it).
            if r.election > election_bound {
                println!(
                    "  election took {} ms: a busy machine delays timers",
                    r.election.as_millis()
                );
            }
            r.wrong.is_empty() && after > 0
        }
        Err(e) => {
            println!("  raft demo failed: {e:#}");
            false
        }
    }
}

/// One line of the table.
fn row(name: &str, value: u64) {
    println!("  {name:<28}{value:>12}");
}

/// Adds an endpoint's counters into the total.
fn add_stats(total: &mut EndpointStats, s: &EndpointStats) {
    total.datagrams_received += s.datagrams_received;
    total.datagrams_sent += s.datagrams_sent;
    total.malformed += s.malformed;
    total.unknown_conn += s.unknown_conn;
    total.refused_connects += s.refused_connects;
    total.duplicate_connects += s.duplicate_connects;
    total.connections_opened += s.connections_opened;
    total.connections_lost += s.connections_lost;
    total.conns.accumulate(&s.conns);
}

/// One client: connect, pipeline `messages` echoes, check them. The client is returned open.
#[allow(clippy::too_many_arguments)]
async fn run_client(
    index: u32,
    server: SocketAddr,
    isn: u32,
    config: Config,
    faults: SocketFaults,
    messages: u64,
    size: usize,
    deadline: Instant,
) -> ClientReport {
    let mut report = ClientReport {
        index,
        sent: 0,
        check: EchoCheck::new(messages, size),
        outcome: Err(String::new()),
        client: None,
        probe: None,
    };
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (socket, probe) = match faults::bind(loopback, config.codec, Some(faults)).await {
        Ok(bound) => bound,
        Err(e) => {
            report.outcome = Err(format!("cannot bind: {e}"));
            return report;
        }
    };
    report.probe = probe;
    let connect = Client::connect_with(server, isn, config, socket);
    let client = match tokio::time::timeout_at(deadline, connect).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            report.outcome = Err(format!("connect: {e}"));
            return report;
        }
        Err(_) => {
            report.outcome = Err("connect: timed out".into());
            return report;
        }
    };
    info!(index, conn = %client.conn_id(), "connected");
    let pumped = pump::pump(
        &client,
        messages,
        size,
        PIPELINE,
        Some(deadline),
        std::future::pending(),
    )
    .await;
    report.sent = pumped.sent;
    report.check = pumped.check;
    report.outcome = Ok(pumped.outcome);
    report.client = Some(client);
    report
}

/// Waits until nothing is left unacknowledged in either direction of any connection (a side
/// that has closed goes silent, so a message whose ack was lost would never be acknowledged
/// after a close). Gives up after `epoch_limit` epochs (or at `deadline`).
async fn settle(reports: &[ClientReport], server: &Server, p: Params, deadline: Instant) {
    let give_up = deadline.min(Instant::now() + p.epoch * p.epoch_limit);
    let flushed = || {
        reports
            .iter()
            .filter_map(|r| r.client.as_ref())
            .all(|c| c.pending() == 0 && server.pending(c.conn_id()) == 0)
    };
    while Instant::now() < give_up {
        if flushed() {
            return;
        }
        tokio::time::sleep(p.epoch / 5).await;
    }
    info!("closing while data is still unacknowledged");
}

/// Closes every connected client concurrently; returns (clean closes, closes attempted).
async fn close_all(reports: &mut [ClientReport], deadline: Instant) -> (usize, usize) {
    let mut closing = JoinSet::new();
    for r in reports.iter_mut() {
        if let Some(client) = r.client.take() {
            let index = r.index;
            closing.spawn(async move {
                let result = tokio::time::timeout_at(deadline, client.close()).await;
                (index, client, result)
            });
        }
    }
    let (mut clean, mut total) = (0, 0);
    while let Some(joined) = closing.join_next().await {
        let Ok((index, client, result)) = joined else {
            continue;
        };
        total += 1;
        match result {
            Ok(Ok(())) => clean += 1,
            Ok(Err(e)) => warn!(index, %e, "client close"),
            Err(_) => warn!(index, "client close timed out"),
        }
        if let Some(r) = reports.iter_mut().find(|r| r.index == index) {
            r.client = Some(client);
        }
    }
    (clean, total)
}

/// The server side: echoes every message to its sender until the server is closed. Returns
/// how many messages it echoed.
async fn echo_loop(server: Arc<Server>) -> u64 {
    let mut echoed = 0;
    loop {
        match server.read().await {
            Ok((conn, payload)) => match server.try_send(conn, payload) {
                Ok(()) => echoed += 1,
                Err(WriteError::Closed) => {}
                Err(e) => warn!(%conn, %e, "echo not sent"),
            },
            Err(ServerReadError::ConnEnded(conn, reason)) => info!(%conn, %reason, "ended"),
            Err(_) => return echoed,
        }
    }
}
