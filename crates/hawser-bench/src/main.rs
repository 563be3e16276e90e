//! # hawser-bench
//!
//! Runs hawser's LSP side by side with raw UDP, TCP and QUIC (quinn) over 127.0.0.1, in one
//! process and on one tokio runtime (multi-thread, 2 workers), and prints:
//! - throughput, N messages one way received complete and in order, median of 3 runs, at 64 B
//!   and 1 KiB;
//! - 64-byte ping-pong latency (p50, p99), on that runtime and, for the target, with each
//!   series on a current-thread runtime of its own (both ends on one thread);
//! - hawser's goodput and latency under 0 to 20 % loss each way;
//! - server memory per idle connection (child processes, see [`conns`]) and many active echo
//!   clients;
//! - committed writes per second and commit latency of a 3-node Raft key-value cluster
//!   (`hawser-raft`) under 1, 64 and 256 clients, on hawser (TCP and LSP, encrypted), on a
//!   hand-written plaintext TCP network ([`raft_baseline`]) and in process ([`raft_rows`]);
//! - the ratios against the performance targets.
//!
//! Results also go to a JSON file (`--json`, default `target/bench.json`). Every phase runs
//! under a timeout and a watchdog bounds the whole run: a hang becomes an error row. The exit
//! status is 1 if a row failed (a timeout, a lost or misordered message of a reliable
//! transport), never because of a performance figure.
//!
//! hawser's settings are in one place: [`hawser_rows::hawser_config`].

mod baselines;
mod conns;
mod hawser_rows;
mod node_rows;
mod payload;
mod raft_baseline;
mod raft_rows;
mod report;
mod stats;
mod transports;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use hawser_net::lsp::Codec;
use tokio::time::Instant;

use crate::hawser_rows::UdpPath;
use crate::node_rows::NodeVariant;
use crate::raft_rows::{Cluster, RaftNet};
use crate::report::{
    LossRow, Meta, Outcome, PingRow, PingRuntime, RaftRow, Report, ThroughputRow, RAFT_CLIENTS,
};
use crate::transports::{RunResult, Transport};

/// Worker threads of the runtime every row runs on.
const WORKERS: usize = 2;

/// Loss levels of the loss table, percent each way.
const LOSSES: [f64; 5] = [0.0, 1.0, 5.0, 10.0, 20.0];

/// Benchmark hawser LSP against raw UDP, TCP and quinn over 127.0.0.1.
#[derive(Parser, Debug)]
#[command(name = "hawser-bench", version)]
struct Args {
    /// A smoke run for CI: a few thousand messages, fewer connections; under 60 s.
    #[arg(long)]
    quick: bool,
    /// Messages per throughput run [default: 100000, quick 2000].
    #[arg(long)]
    messages: Option<u64>,
    /// Recorded ping-pong round trips per row [default: 10000, quick 1000].
    #[arg(long)]
    pings: Option<u64>,
    /// Message sizes of the throughput table, bytes (comma-separated); the node rows have
    /// their own, `--node-sizes`.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 1024])]
    sizes: Vec<usize>,
    /// Message sizes of the node rows, bytes (comma-separated); at 16 KiB and more a run
    /// sends at most 20,000 messages.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 1024, 16384])]
    node_sizes: Vec<usize>,
    /// Runs per throughput row; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run only these rows or sections (comma-separated): transports hawser-binary, hawser-batched,
    /// hawser-json, hawser-json-cack, udp-raw, tcp-send, tcp-batched, quinn, node-tcp,
    /// node-tcp-plain, node-tcp-batch, node-tcp-aes-batch, node-tcp-plain-batch, node-lsp,
    /// node-lsp-plain, node-lsp-batch, node-lsp-aes-batch, node-lsp-plain-batch, and the node
    /// section's references ref-tcp-batched
    /// and ref-quinn (which run with the node rows unless `--only` names transports without
    /// them); sections throughput, pingpong, loss, idle, echo. Transports and sections combine
    /// (both must match).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Idle clients of the memory measurement [default: 10000, quick 500].
    #[arg(long)]
    conns: Option<u64>,
    /// Active echo clients [default: 1000, quick 100].
    #[arg(long)]
    active: Option<u64>,
    /// Messages each active echo client sends [default: 100, quick 10].
    #[arg(long)]
    echo_messages: Option<u64>,
    /// Messages of each goodput run under loss [default: 20000, quick 1000].
    #[arg(long)]
    loss_messages: Option<u64>,
    /// Message size of the goodput runs under loss, bytes.
    #[arg(long, default_value_t = 1024)]
    loss_size: usize,
    /// Round trips of each ping-pong series under loss [default: 1000, quick 100].
    #[arg(long)]
    loss_pings: Option<u64>,
    /// Seconds of each slice of a Raft row [default: 2, quick 0.25]; a row has `--runs`
    /// slices, interleaved with the other networks'.
    #[arg(long)]
    raft_secs: Option<f64>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/bench.json")]
    json: PathBuf,
    /// Stop everything after this many seconds [default: 1800, quick 55].
    #[arg(long)]
    budget_secs: Option<u64>,
    /// Sets hawser's window and max_unacked both to N [default: the preset's 4,096 and 1,024, see `hawser_params`].
    #[arg(long)]
    window: Option<u32>,
    /// Internal: run as a child process of the idle-connection measurement.
    #[arg(long, hide = true)]
    internal: Option<String>,
    /// Internal: the server address for `--internal idle-clients`.
    #[arg(long, hide = true)]
    server: Option<std::net::SocketAddr>,
}

/// Every count and time limit, after `--quick` and the explicit options.
#[derive(Clone, Debug)]
struct Plan {
    messages: u64,
    pings: u64,
    /// The ping-pong series of every transport are interleaved in this many rounds.
    ping_rounds: u64,
    /// Unrecorded round trips at the start of each round.
    warmup: u64,
    runs: usize,
    sizes: Vec<usize>,
    node_sizes: Vec<usize>,
    conns: u64,
    active: u64,
    echo_messages: u64,
    loss_messages: u64,
    loss_size: usize,
    loss_pings: u64,
    /// One throughput run.
    run_timeout: Duration,
    /// One round of one ping-pong series.
    ping_timeout: Duration,
    /// One goodput run under loss (reported as incomplete beyond it).
    loss_timeout: Duration,
    /// One ping-pong series under loss (stops early beyond it).
    loss_ping_budget: Duration,
    /// Each step of the idle measurement.
    idle_step: Duration,
    /// How long the idle clients stay idle before measuring.
    idle_for: Duration,
    /// The whole echo phase.
    echo_timeout: Duration,
    /// How long the clients of one slice of a Raft row write.
    raft_for: Duration,
    /// Starting one Raft cluster, electing its leader and warming it up.
    raft_start_timeout: Duration,
    /// One slice of a Raft row (its clients finish the write they are in, within the request
    /// timeout).
    raft_run_timeout: Duration,
    budget: Duration,
    only: Vec<String>,
}

impl Plan {
    fn new(a: &Args) -> Plan {
        let q = a.quick;
        let pick =
            |v: Option<u64>, full: u64, quick: u64| v.unwrap_or(if q { quick } else { full });
        let secs = |full: u64, quick: u64| Duration::from_secs(if q { quick } else { full });
        let raft_secs = a.raft_secs.unwrap_or(if q { 0.25 } else { 2.0 });
        let raft_for = Duration::from_secs_f64(raft_secs.clamp(0.1, 600.0));
        Plan {
            messages: pick(a.messages, 100_000, 2_000).max(1),
            pings: pick(a.pings, 10_000, 1_000).max(1),
            ping_rounds: if q { 2 } else { 10 },
            warmup: if q { 20 } else { 100 },
            runs: a.runs.max(1),
            sizes: a.sizes.iter().map(|&s| s.max(payload::MIN_SIZE)).collect(),
            node_sizes: a
                .node_sizes
                .iter()
                .map(|&s| s.max(payload::MIN_SIZE))
                .collect(),
            conns: pick(a.conns, 10_000, 500).max(1),
            active: pick(a.active, 1_000, 100).max(1),
            echo_messages: pick(a.echo_messages, 100, 10).max(1),
            loss_messages: pick(a.loss_messages, 20_000, 1_000).max(1),
            loss_size: a.loss_size.max(payload::MIN_SIZE),
            loss_pings: pick(a.loss_pings, 1_000, 100).max(1),
            run_timeout: secs(60, 8),
            ping_timeout: secs(60, 8),
            loss_timeout: secs(60, 4),
            loss_ping_budget: secs(45, 2),
            idle_step: secs(180, 20),
            idle_for: secs(3, 1),
            echo_timeout: secs(180, 15),
            raft_for,
            raft_start_timeout: secs(30, 10),
            raft_run_timeout: raft_for + secs(20, 10),
            budget: Duration::from_secs(a.budget_secs.unwrap_or(if q { 55 } else { 1800 })),
            only: a.only.iter().map(|s| s.trim().to_lowercase()).collect(),
        }
    }

    /// Whether `section` (throughput, pingpong, loss, idle, echo) runs for `transport`.
    fn runs(&self, section: &str, transport: &str) -> bool {
        const SECTIONS: [&str; 6] = ["throughput", "pingpong", "loss", "idle", "echo", "raft"];
        let sections: Vec<&str> = self
            .only
            .iter()
            .map(String::as_str)
            .filter(|s| SECTIONS.contains(s))
            .collect();
        let transports: Vec<&str> = self
            .only
            .iter()
            .map(String::as_str)
            .filter(|s| !SECTIONS.contains(s))
            .collect();
        (sections.is_empty() || sections.contains(&section))
            && (transports.is_empty() || transports.contains(&transport))
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(w) = args.window {
        let _ = hawser_rows::WINDOW_OVERRIDE.set(w);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hawser-bench: runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(role) = args.internal.clone() {
        let result = runtime.block_on(internal(&role, &args));
        return match result {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hawser-bench {role}: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let plan = Plan::new(&args);
    let report = Arc::new(Mutex::new(Report {
        meta: meta(&args, &plan),
        ..Report::default()
    }));
    start_watchdog(plan.budget, report.clone(), args.json.clone());
    let started = Instant::now();
    runtime.block_on(run(&plan, &report));
    let mut report = lock(&report).clone();
    report.meta.total_secs = started.elapsed().as_secs_f64();
    report.meta.loadavg_end = stats::loadavg();
    report.compute_ratios();
    print!("{}", report.render());
    if let Err(e) = write_json(&args.json, &report) {
        eprintln!("hawser-bench: writing {}: {e:#}", args.json.display());
        return std::process::ExitCode::FAILURE;
    }
    eprintln!("results written to {}", args.json.display());
    // The runtime may hold tasks of timed-out phases; do not wait for them.
    runtime.shutdown_background();
    if report.has_errors() {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

async fn internal(role: &str, args: &Args) -> Result<()> {
    let conns = args.conns.unwrap_or(10_000);
    match role {
        "idle-server" => conns::idle_server_role(conns).await,
        "idle-clients" => {
            let server = args.server.ok_or_else(|| anyhow!("--server is required"))?;
            conns::idle_clients_role(conns, server).await
        }
        other => Err(anyhow!("unknown role {other}")),
    }
}

fn lock(report: &Mutex<Report>) -> std::sync::MutexGuard<'_, Report> {
    report.lock().unwrap_or_else(PoisonError::into_inner)
}

fn meta(args: &Args, plan: &Plan) -> Meta {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    Meta {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        runtime: format!(
            "tokio multi-thread, {WORKERS} worker threads (every row; each ping-pong row also on a current-thread runtime of its own)"
        ),
        cpu,
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        quick: args.quick,
        hawser_config: format!("{:?}", hawser_rows::hawser_config(Codec::Binary)),
        messages: plan.messages,
        runs: plan.runs,
        pings: plan.pings,
        git_commit: git(&["rev-parse", "--short", "HEAD"])
            .unwrap_or_else(|| "unknown (not a git checkout)".into()),
        git_dirty: git(&["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty()),
        loadavg_start: stats::loadavg(),
        loadavg_end: String::new(),
        total_secs: 0.0,
        aborted: None,
    }
}

/// The trimmed output of a git command run in the current directory, if it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn write_json(path: &PathBuf, report: &Report) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(path, json + "\n").context("write")
}

/// A thread that, after `budget`, writes what was measured so far and exits the process.
fn start_watchdog(budget: Duration, report: Arc<Mutex<Report>>, json: PathBuf) {
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        let mut r = lock(&report).clone();
        r.meta.aborted = Some(format!(
            "watchdog: the benchmark did not finish within {budget:?}"
        ));
        r.meta.total_secs = budget.as_secs_f64();
        r.meta.loadavg_end = stats::loadavg();
        r.compute_ratios();
        print!("{}", r.render());
        let _ = write_json(&json, &r);
        eprintln!(
            "hawser-bench: watchdog fired after {budget:?}; partial results in {}",
            json.display()
        );
        std::process::exit(2);
    });
}

async fn run(plan: &Plan, report: &Arc<Mutex<Report>>) {
    // Runs are interleaved (run 1 of every row, then run 2, ...) so that a change in the
    // machine's load hits every row alike.
    for &size in &plan.sizes {
        let mut rows: Vec<(Transport, ThroughputRow)> = Transport::THROUGHPUT
            .into_iter()
            // The node rows have a section of their own, below.
            .filter(|t| plan.runs("throughput", t.name()) && !node_rows::is_node_row(t.name()))
            .map(|t| {
                let row = ThroughputRow {
                    transport: t.name().to_string(),
                    size,
                    messages: plan.messages,
                    ..ThroughputRow::default()
                };
                (t, row)
            })
            .collect();
        for run in 0..plan.runs {
            for (t, row) in &mut rows {
                if row.error.is_none() {
                    throughput_run(plan, *t, run, row).await;
                }
            }
        }
        for (t, mut row) in rows {
            finish_throughput(&mut row);
            eprintln!(
                "throughput {:<14} {:>6}: {}",
                t.name(),
                report::size_name(size),
                summary_tput(&row)
            );
            lock(report).throughput.push(row);
        }
    }
    node_throughput(plan, report).await;
    // Likewise the ping-pong series, in rounds, each transport on both runtimes.
    let mut pings: Vec<(Transport, PingRow, Vec<Duration>)> = PingRuntime::ALL
        .into_iter()
        .flat_map(|runtime| Transport::PING.into_iter().map(move |t| (runtime, t)))
        .filter_map(|(runtime, t)| {
            let name = if t == Transport::TcpSend {
                "tcp"
            } else {
                t.name()
            };
            (plan.runs("pingpong", t.name()) || plan.runs("pingpong", name)).then(|| {
                let row = PingRow {
                    transport: name.to_string(),
                    runtime,
                    size: 64,
                    round_trips: plan.pings,
                    ..PingRow::default()
                };
                (t, row, Vec::new())
            })
        })
        .collect();
    let per_round = plan.pings.div_ceil(plan.ping_rounds);
    for round in 0..plan.ping_rounds {
        let count = per_round.min(plan.pings - (round * per_round).min(plan.pings));
        for (t, row, samples) in &mut pings {
            if row.error.is_none() && count > 0 {
                ping_round(plan, *t, count, row, samples).await;
            }
        }
    }
    for (_, mut row, samples) in pings {
        row.completed = samples.len() as u64;
        row.latency = stats::percentiles(&samples);
        row.cpu_us_per_trip =
            (row.cpu_secs > 0.0).then(|| row.cpu_secs * 1e6 / row.cpu_trips.max(1) as f64);
        eprintln!(
            "pingpong   {:<14} {:<10}: p50 {:?} us, p99 {:?} us {}",
            row.transport,
            row.runtime.name(),
            row.latency.map(|l| l.p50_us.round()),
            row.latency.map(|l| l.p99_us.round()),
            row.error.as_deref().unwrap_or("")
        );
        lock(report).pingpong.push(row);
    }
    if plan.runs("loss", "hawser-binary") {
        for loss in LOSSES {
            let mut row = loss_row(plan, loss).await;
            let base = lock(report).loss.first().cloned();
            if let Some(base) = base.filter(|b| b.loss_percent == 0.0) {
                row.goodput_ratio = ratio(row.msgs_per_sec, base.msgs_per_sec);
                row.p99_ratio = ratio(
                    row.latency.map(|l| l.p99_us),
                    base.latency.map(|l| l.p99_us),
                );
            } else if loss == 0.0 {
                row.goodput_ratio = row.msgs_per_sec.map(|_| 1.0);
                row.p99_ratio = row.latency.map(|_| 1.0);
            }
            eprintln!(
                "loss {loss:>4}%: {:?} msgs/s, p99 {:?} us {}",
                row.msgs_per_sec.map(f64::round),
                row.latency.map(|l| l.p99_us.round()),
                row.error.as_deref().unwrap_or("")
            );
            lock(report).loss.push(row);
        }
    }
    if plan.runs("idle", "hawser-binary") {
        let started = Instant::now();
        let outcome = match conns::idle(plan.conns, plan.idle_for, plan.idle_step).await {
            Ok(r) => Outcome {
                result: Some(r),
                error: None,
                progress: None,
            },
            Err(e) => Outcome {
                result: None,
                error: Some(format!("{e:#}")),
                progress: None,
            },
        };
        eprintln!(
            "idle       {} conns: {:?} ({:.1} s)",
            plan.conns,
            outcome
                .result
                .as_ref()
                .map(|r| r.server_bytes_per_conn.round()),
            transports::since(started)
        );
        let mut outcome = outcome;
        if let Some(r) = &outcome.result {
            if r.connected < r.conns || r.server_live < r.connected || r.clients_alive < r.connected
            {
                outcome.error = Some(format!(
                    "{} of {} connected, {} live on the server, {} clients alive after idling",
                    r.connected, r.conns, r.server_live, r.clients_alive
                ));
            }
        }
        lock(report).idle = Some(outcome);
    }
    if plan.runs("echo", "hawser-binary") {
        let progress = Arc::new(AtomicU64::new(0));
        let fut = conns::echo(plan.active, plan.echo_messages, 64, progress.clone());
        let outcome = match tokio::time::timeout(plan.echo_timeout, fut).await {
            Ok(Ok(r)) => {
                let error = r.first_error.clone().map(|e| format!("client failed: {e}"));
                Outcome {
                    result: Some(r),
                    error,
                    progress: None,
                }
            }
            Ok(Err(e)) => Outcome {
                result: None,
                error: Some(format!("{e:#}")),
                progress: Some(progress.load(Ordering::Relaxed)),
            },
            Err(_) => Outcome {
                result: None,
                error: Some(format!("timed out after {:?}", plan.echo_timeout)),
                progress: Some(progress.load(Ordering::Relaxed)),
            },
        };
        eprintln!(
            "echo       {} clients: {:?}",
            plan.active,
            outcome.result.as_ref().map(|r| (r.echoed, r.lost))
        );
        lock(report).echo = Some(outcome);
    }
    raft_phase(plan, report).await;
}

/// The Raft rows: one cluster per network, all started first; then, at each client count,
/// `runs` rounds in which every network writes for one slice in turn, so that a drift in the
/// machine's load hits every network alike. A row's rate is the median of its slices'; its
/// latency percentiles pool every slice's writes.
async fn raft_phase(plan: &Plan, report: &Arc<Mutex<Report>>) {
    let nets: Vec<RaftNet> = RaftNet::ALL
        .into_iter()
        .filter(|n| plan.runs("raft", n.name()))
        .collect();
    let mut clusters: Vec<(RaftNet, Result<Cluster, String>)> = Vec::new();
    for net in nets {
        let started = tokio::time::timeout(plan.raft_start_timeout, start_raft(net, plan)).await;
        let cluster = match started {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!(
                "cluster not ready within {:?}",
                plan.raft_start_timeout
            )),
        };
        clusters.push((net, cluster));
    }
    for clients in RAFT_CLIENTS {
        let mut rows: Vec<(RaftRow, RaftSlices)> = clusters
            .iter()
            .map(|(net, cluster)| {
                let row = RaftRow {
                    network: net.name().to_string(),
                    note: net.note().to_string(),
                    clients,
                    error: cluster.as_ref().err().cloned(),
                    ..RaftRow::default()
                };
                (row, RaftSlices::default())
            })
            .collect();
        for _ in 0..plan.runs {
            for ((_, cluster), (row, slices)) in clusters.iter().zip(&mut rows) {
                if let (Ok(c), None) = (cluster, &row.error) {
                    raft_slice(plan, c, clients, row, slices).await;
                }
            }
        }
        for (mut row, slices) in rows {
            if row.error.is_none() {
                row.slices = slices.rates.len();
                row.writes_per_sec = stats::median(&slices.rates);
                row.latency = stats::percentiles(&slices.samples);
                row.cpu_us_per_write = (row.committed > 0 && slices.cpu_secs > 0.0)
                    .then(|| slices.cpu_secs * 1e6 / row.committed as f64);
            }
            eprintln!(
                "raft       {:<18} {clients:>3} clients: {:?} writes/s, p50 {:?} ms, p99 {:?} ms {}",
                row.network,
                row.writes_per_sec.map(f64::round),
                row.latency.map(|l| l.p50_us / 1000.0),
                row.latency.map(|l| l.p99_us / 1000.0),
                row.error.as_deref().unwrap_or("")
            );
            lock(report).raft.push(row);
        }
    }
    for (net, cluster) in clusters {
        if let Ok(c) = cluster {
            if tokio::time::timeout(Duration::from_secs(10), c.stop())
                .await
                .is_err()
            {
                eprintln!(
                    "raft       {}: the cluster did not stop within 10 s",
                    net.name()
                );
            }
        }
    }
}

/// What a Raft row's slices measured so far.
#[derive(Default)]
struct RaftSlices {
    /// Committed writes per second of each slice.
    rates: Vec<f64>,
    /// Commit latency of every committed write.
    samples: Vec<Duration>,
    /// CPU time of the process during the slices.
    cpu_secs: f64,
}

/// Starts the cluster of `net`, waits for its leader and warms it up (connections, pipelines)
/// with a short unrecorded load.
async fn start_raft(net: RaftNet, plan: &Plan) -> Result<Cluster> {
    let cluster = Cluster::start(net).await?;
    let warm = async {
        let leader = cluster.leader(plan.raft_start_timeout).await?;
        let progress = Arc::new(AtomicU64::new(0));
        raft_rows::load(&leader, 16, plan.raft_for / 2, progress).await
    };
    match warm.await {
        Ok(r) if r.committed > 0 => Ok(cluster),
        Ok(r) => {
            cluster.stop().await;
            Err(anyhow!(
                "warm-up committed nothing: {}",
                r.first_failure.unwrap_or_default()
            ))
        }
        Err(e) => {
            cluster.stop().await;
            Err(e)
        }
    }
}

/// One slice of a Raft row: `clients` writers against the current leader of `cluster` for
/// `raft_for`, under the slice's timeout; added to `row` and `slices`, or its failure recorded.
async fn raft_slice(
    plan: &Plan,
    cluster: &Cluster,
    clients: u64,
    row: &mut RaftRow,
    slices: &mut RaftSlices,
) {
    let progress = Arc::new(AtomicU64::new(0));
    let run = async {
        let leader = cluster.leader(Duration::from_secs(5)).await?;
        let cpu_before = stats::cpu_secs();
        let r = raft_rows::load(&leader, clients, plan.raft_for, progress.clone()).await?;
        let cpu = match (cpu_before, stats::cpu_secs()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        };
        Ok::<_, anyhow::Error>((r, cpu))
    };
    match tokio::time::timeout(plan.raft_run_timeout, run).await {
        Ok(Ok((r, cpu))) => {
            row.committed += r.committed;
            row.failed += r.failed;
            if row.first_failure.is_none() {
                row.first_failure = r.first_failure;
            }
            row.secs += r.secs;
            if r.secs > 0.0 {
                slices.rates.push(r.committed as f64 / r.secs);
            }
            slices.samples.extend(r.samples);
            slices.cpu_secs += cpu;
        }
        Ok(Err(e)) => row.error = Some(format!("{e:#}")),
        Err(_) => {
            row.error = Some(format!(
                "timed out after {:?} with {} writes committed in the slice",
                plan.raft_run_timeout,
                progress.load(Ordering::Relaxed)
            ))
        }
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn summary_tput(row: &ThroughputRow) -> String {
    match &row.error {
        Some(e) => format!("ERROR {e}"),
        None => format!(
            "{:.0} msgs/s, {:.1} MB/s, loss {:.1}%",
            row.msgs_per_sec.unwrap_or(0.0),
            row.mb_per_sec.unwrap_or(0.0),
            row.max_loss_percent
        ),
    }
}

/// The node rows (`node_rows`), at `--node-sizes`, runs interleaved as above, with the two
/// rows they are compared with (`ref-tcp-batched`, `ref-quinn`) run between them at the same
/// sizes: the load of this shared machine drifts within seconds, and a ratio of two runs made
/// a minute apart measured that drift as much as hawser.
async fn node_throughput(plan: &Plan, report: &Arc<Mutex<Report>>) {
    for &size in &plan.node_sizes {
        let messages = node_rows::messages(size, plan.messages);
        let row = |name: &str| ThroughputRow {
            transport: name.to_string(),
            size,
            messages,
            ..ThroughputRow::default()
        };
        let mut rows: Vec<(NodeRow, ThroughputRow)> = NodeVariant::ALL
            .into_iter()
            .filter(|l| plan.runs("throughput", l.name()))
            .map(|l| (NodeRow::Node(l), row(l.name())))
            .collect();
        if !rows.is_empty() {
            for r in [NodeRow::RefQuinn, NodeRow::RefTcpBatched] {
                if plan.runs("throughput", r.name()) {
                    rows.insert(0, (r, row(r.name())));
                }
            }
        }
        for run in 0..plan.runs {
            for (what, row) in &mut rows {
                if row.error.is_none() {
                    let progress = Arc::new(AtomicU64::new(0));
                    let p = progress.clone();
                    match *what {
                        NodeRow::Node(link) => {
                            let fut = node_rows::throughput(link, messages, size, p);
                            record_run(plan, fut, progress, run, row).await;
                        }
                        NodeRow::RefTcpBatched => {
                            let fut = baselines::tcp_throughput(messages, size, true, p);
                            record_run(plan, fut, progress, run, row).await;
                        }
                        NodeRow::RefQuinn => {
                            let fut = baselines::quinn_throughput(messages, size, p);
                            record_run(plan, fut, progress, run, row).await;
                        }
                    }
                }
            }
        }
        for (what, mut row) in rows {
            finish_throughput(&mut row);
            eprintln!(
                "throughput {:<14} {:>6}: {}",
                what.name(),
                report::size_name(size),
                summary_tput(&row)
            );
            lock(report).throughput.push(row);
        }
    }
}

/// A row of the node section.
#[derive(Clone, Copy)]
enum NodeRow {
    /// Raw batched TCP framing (as `tcp-batched`), the target's denominator.
    RefTcpBatched,
    /// quinn (as `quinn`), the denominator of the encrypted-LSP target.
    RefQuinn,
    /// Two hawser nodes.
    Node(NodeVariant),
}

impl NodeRow {
    fn name(self) -> &'static str {
        match self {
            NodeRow::RefTcpBatched => report::REF_TCP_BATCHED,
            NodeRow::RefQuinn => report::REF_QUINN,
            NodeRow::Node(link) => link.name(),
        }
    }
}

/// One throughput run of `t`, added to `row` (or its failure recorded there).
async fn throughput_run(plan: &Plan, t: Transport, run: usize, row: &mut ThroughputRow) {
    let progress = Arc::new(AtomicU64::new(0));
    let fut = t.throughput(plan.messages, row.size, 1000 + run as u64, progress.clone());
    record_run(plan, fut, progress, run, row).await;
}

/// Runs `fut`, one throughput run of `row.messages` messages (`progress` counts those
/// received), under the run timeout; adds it to `row` or records its failure there.
async fn record_run(
    plan: &Plan,
    fut: impl std::future::Future<Output = Result<RunResult>>,
    progress: Arc<AtomicU64>,
    run: usize,
    row: &mut ThroughputRow,
) {
    let cpu_before = stats::cpu_secs();
    match tokio::time::timeout(plan.run_timeout, fut).await {
        Ok(Ok(mut r)) => {
            // Includes connection setup, which is small next to the run.
            r.cpu_secs = match (cpu_before, stats::cpu_secs()) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            };
            row.runs.push(r);
        }
        Ok(Err(e)) => {
            row.error = Some(format!(
                "run {}: {e:#} ({} received)",
                run + 1,
                progress.load(Ordering::Relaxed)
            ));
        }
        Err(_) => {
            row.error = Some(format!(
                "run {}: timed out after {:?} with {} of {} received",
                run + 1,
                plan.run_timeout,
                progress.load(Ordering::Relaxed),
                row.messages
            ));
        }
    }
}

/// The median and the worst loss of a row's runs.
fn finish_throughput(row: &mut ThroughputRow) {
    if row.error.is_none() {
        let rates: Vec<f64> = row.runs.iter().map(|r| r.msgs_per_sec()).collect();
        row.msgs_per_sec = stats::median(&rates);
        row.mb_per_sec = row.msgs_per_sec.map(|m| m * row.size as f64 / 1e6);
        let cpu: f64 = row.runs.iter().map(|r| r.cpu_secs).sum();
        let received: u64 = row.runs.iter().map(|r| r.received).sum();
        row.cpu_us_per_msg = (cpu > 0.0).then(|| cpu * 1e6 / received.max(1) as f64);
        row.max_loss_percent = row
            .runs
            .iter()
            .map(|r| 100.0 * r.lost as f64 / row.messages.max(1) as f64)
            .fold(0.0, f64::max);
    }
}

/// One round of `count` recorded round trips of `t` (after its own warm-up), added to
/// `samples` (or its failure recorded in `row`).
async fn ping_round(
    plan: &Plan,
    t: Transport,
    count: u64,
    row: &mut PingRow,
    samples: &mut Vec<Duration>,
) {
    let progress = Arc::new(AtomicU64::new(0));
    let (warmup, timeout, seen) = (plan.warmup, plan.ping_timeout, progress.clone());
    let series =
        async move { tokio::time::timeout(timeout, t.ping(count, warmup, 64, seen)).await };
    let cpu_before = stats::cpu_secs();
    let outcome = match row.runtime {
        PingRuntime::Workers => series.await,
        // Both ends and every task of the transport on one thread of their own.
        PingRuntime::OneThread => match tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(series))
        })
        .await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Ok(Err(anyhow!("current-thread runtime: {e}"))),
            Err(e) => Ok(Err(anyhow!("ping thread: {e}"))),
        },
    };
    match outcome {
        Ok(Ok(r)) => {
            if let (Some(a), Some(b)) = (cpu_before, stats::cpu_secs()) {
                row.cpu_secs += b - a;
                row.cpu_trips += count + plan.warmup;
            }
            samples.extend(r.samples);
            row.lost += r.lost;
        }
        Ok(Err(e)) => {
            row.error = Some(format!(
                "{e:#} after {} round trips",
                samples.len() as u64 + progress.load(Ordering::Relaxed)
            ));
        }
        Err(_) => {
            row.error = Some(format!(
                "timed out after {:?} with {} of {} round trips",
                plan.ping_timeout,
                samples.len() as u64 + progress.load(Ordering::Relaxed),
                plan.pings
            ));
        }
    }
}

async fn loss_row(plan: &Plan, loss: f64) -> LossRow {
    let (n, size) = (plan.loss_messages, plan.loss_size);
    let mut row = LossRow {
        loss_percent: loss,
        size,
        messages: n,
        pings: plan.loss_pings,
        ..LossRow::default()
    };
    let config = hawser_rows::hawser_config(Codec::Binary);
    let mut rates = Vec::new();
    for run in 0..plan.runs {
        let progress = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let seed = 2000 + 100 * run as u64 + loss as u64;
        let fut = hawser_rows::throughput(
            &config,
            UdpPath::Lossy(loss),
            n,
            size,
            seed,
            progress.clone(),
        );
        match tokio::time::timeout(plan.loss_timeout, fut).await {
            Ok(Ok(r)) => {
                row.received += r.received;
                row.secs += r.secs;
                row.retransmits += r.retransmits;
                row.probes += r.probes;
                row.rto_expiries += r.rto_expiries;
                rates.push(r.msgs_per_sec());
            }
            Ok(Err(e)) => {
                row.received += progress.load(Ordering::Relaxed);
                row.error = Some(format!("run {}: {e:#}", run + 1));
                break;
            }
            Err(_) => {
                // Goodput so far (includes connection setup, so slightly pessimistic).
                let received = progress.load(Ordering::Relaxed);
                row.received += received;
                row.secs += started.elapsed().as_secs_f64();
                rates.push(received as f64 / started.elapsed().as_secs_f64());
                row.error = Some(format!(
                    "incomplete: run {}: {received} of {n} received within {:?}",
                    run + 1,
                    plan.loss_timeout
                ));
                break;
            }
        }
    }
    row.runs = rates.len();
    row.msgs_per_sec = stats::median(&rates);
    row.mb_per_sec = row.msgs_per_sec.map(|m| m * size as f64 / 1e6);
    let progress = Arc::new(AtomicU64::new(0));
    let budget = Instant::now() + plan.loss_ping_budget;
    let fut = hawser_rows::ping(
        &config,
        UdpPath::Lossy(loss),
        plan.loss_pings,
        10,
        64,
        Some(budget),
        progress.clone(),
    );
    // The budget stops the series between round trips; the timeout catches a hang within one.
    match tokio::time::timeout(plan.loss_ping_budget + Duration::from_secs(30), fut).await {
        Ok(Ok(r)) => {
            row.pings_completed = r.samples.len() as u64;
            row.latency = stats::percentiles(&r.samples);
        }
        Ok(Err(e)) => row.ping_error = Some(format!("ping: {e:#}")),
        Err(_) => {
            row.ping_error = Some(format!(
                "ping: a round trip hung ({} done)",
                progress.load(Ordering::Relaxed)
            ))
        }
    }
    row
}
