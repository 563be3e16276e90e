//! The results: rows, ratios against the targets, the printed tables and the JSON file.

use std::fmt::Write as _;

use serde::Serialize;

use crate::conns::{EchoResult, IdleResult};
use crate::stats::Percentiles;
use crate::transports::RunResult;

/// Raw batched TCP framing, run within the node section (at the node sizes, between the node
/// rows): the denominator of the node rows' ratios.
pub const REF_TCP_BATCHED: &str = "ref-tcp-batched";

/// quinn, run within the node section: the denominator of the encrypted-LSP ratio.
pub const REF_QUINN: &str = "ref-quinn";

/// The Raft row of hawser over TCP (encrypted).
pub const RAFT_HAWSER_TCP: &str = "raft-hawser-tcp";

/// The Raft row of hawser over LSP (encrypted).
pub const RAFT_HAWSER_LSP: &str = "raft-hawser-lsp";

/// The Raft row of the hand-written plaintext TCP network.
pub const RAFT_BASELINE: &str = "raft-baseline-tcp";

/// The Raft row of openraft's in-process routing, the ceiling.
pub const RAFT_IN_PROCESS: &str = "raft-in-process";

/// Client counts of the Raft rows.
pub const RAFT_CLIENTS: [u64; 3] = [1, 64, 256];

/// Bytes of each value the Raft rows' clients write.
pub const RAFT_VALUE_BYTES: usize = 32;

/// How the benchmark was run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Meta {
    /// The command line.
    pub command: String,
    /// The tokio runtime every row ran on.
    pub runtime: String,
    /// CPU model (`/proc/cpuinfo`).
    pub cpu: String,
    /// Available parallelism.
    pub nproc: usize,
    /// Whether `--quick` was given.
    pub quick: bool,
    /// hawser's parameters and settings (`hawser_config`).
    pub hawser_config: String,
    /// Messages per throughput run.
    pub messages: u64,
    /// Runs per throughput row (the median is reported).
    pub runs: usize,
    /// Recorded ping-pong round trips per row.
    pub pings: u64,
    /// The git commit of the working tree, if known (`git rev-parse HEAD` at run time).
    pub git_commit: String,
    /// Whether the working tree had uncommitted changes then.
    pub git_dirty: bool,
    /// Load averages when the benchmark started (1, 5, 15 min).
    pub loadavg_start: String,
    /// Load averages when it ended.
    pub loadavg_end: String,
    /// Wall-clock time of the whole benchmark, seconds.
    pub total_secs: f64,
    /// Set if the watchdog stopped the benchmark.
    pub aborted: Option<String>,
}

/// One row of the throughput table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ThroughputRow {
    /// Transport name.
    pub transport: String,
    /// Message size, bytes.
    pub size: usize,
    /// Messages sent per run.
    pub messages: u64,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// Median messages per second (received).
    pub msgs_per_sec: Option<f64>,
    /// Median payload megabytes (10^6 bytes) per second (received).
    pub mb_per_sec: Option<f64>,
    /// Worst loss of a run, percent (raw UDP only).
    pub max_loss_percent: f64,
    /// CPU time of the process per message received, over all runs, microseconds (both
    /// ends and the runtime; robust to the machine's load, unlike msgs/s).
    pub cpu_us_per_msg: Option<f64>,
    /// The first failure, if a run failed.
    pub error: Option<String>,
}

/// The runtime a ping-pong series runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PingRuntime {
    /// A current-thread runtime on a thread of its own: both ends, and every task of the
    /// transport, on one thread. No wake-up crosses CPUs, so the figure is the cost of the
    /// software path (system calls, protocol, runtime), not how fast this machine's idle vCPUs
    /// wake up. The target is judged on these rows.
    #[default]
    OneThread,
    /// The benchmark's multi-thread runtime: the ends may sit on different worker threads,
    /// and every wake-up of a parked worker is in the figure.
    Workers,
}

impl PingRuntime {
    /// Both, in the order they run.
    pub const ALL: [PingRuntime; 2] = [PingRuntime::OneThread, PingRuntime::Workers];

    /// The name in the table.
    pub fn name(self) -> &'static str {
        match self {
            PingRuntime::OneThread => "one thread",
            PingRuntime::Workers => "2 workers",
        }
    }
}

/// One row of the ping-pong table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PingRow {
    /// Transport name.
    pub transport: String,
    /// The runtime the series ran on.
    pub runtime: PingRuntime,
    /// Message size, bytes.
    pub size: usize,
    /// Round trips asked for (after the warm-up).
    pub round_trips: u64,
    /// Round trips answered.
    pub completed: u64,
    /// Round trips unanswered (raw UDP only).
    pub lost: u64,
    /// Latency percentiles of the answered round trips.
    pub latency: Option<Percentiles>,
    /// CPU time of the process per round trip (warm-ups included), microseconds: both ends
    /// and the runtime. Unlike latency, it does not depend on how fast idle CPUs wake up.
    pub cpu_us_per_trip: Option<f64>,
    /// CPU seconds measured (for `cpu_us_per_trip`).
    pub cpu_secs: f64,
    /// Round trips the CPU time covers.
    pub cpu_trips: u64,
    /// The failure, if any.
    pub error: Option<String>,
}

/// One row of the loss table: hawser binary over fault-injecting sockets.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LossRow {
    /// Loss each way, percent.
    pub loss_percent: f64,
    /// Message size of the goodput run, bytes.
    pub size: usize,
    /// Messages of each goodput run.
    pub messages: u64,
    /// Goodput runs made (the median is reported).
    pub runs: usize,
    /// Messages received in order, over all runs (all of them unless incomplete).
    pub received: u64,
    /// Goodput run time, over all runs, seconds.
    pub secs: f64,
    /// Data retransmissions, over all runs.
    pub retransmits: u64,
    /// Tail-loss probes, over all runs.
    pub probes: u64,
    /// Retransmission timeouts that expired, over all runs.
    pub rto_expiries: u64,
    /// Goodput, messages per second (median of the runs).
    pub msgs_per_sec: Option<f64>,
    /// Goodput, payload MB/s.
    pub mb_per_sec: Option<f64>,
    /// Goodput over the loss-free (0 %) row's.
    pub goodput_ratio: Option<f64>,
    /// Ping-pong round trips asked for / answered within the budget.
    pub pings: u64,
    /// Round trips answered.
    pub pings_completed: u64,
    /// Ping-pong latency.
    pub latency: Option<Percentiles>,
    /// p99 over the loss-free row's p99.
    pub p99_ratio: Option<f64>,
    /// Why the goodput run did not complete, if it did not.
    pub error: Option<String>,
    /// Why the ping-pong series failed, if it did.
    pub ping_error: Option<String>,
}

/// A result (or its failure) of the connection-count phases.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Outcome<T> {
    /// The measurement, if it completed.
    pub result: Option<T>,
    /// The failure, if any.
    pub error: Option<String>,
    /// Progress when it failed (clients connected or echoes received).
    pub progress: Option<u64>,
}

/// One row of the Raft table: a 3-node key-value cluster on one network under some clients.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RaftRow {
    /// The network (`raft-hawser-tcp`, `raft-hawser-lsp`, `raft-baseline-tcp`,
    /// `raft-in-process`).
    pub network: String,
    /// What the network is (transport, encryption).
    pub note: String,
    /// Concurrent clients, each writing one request at a time to the leader.
    pub clients: u64,
    /// Slices measured (each `--raft-secs` long, interleaved with the other networks').
    pub slices: usize,
    /// Writes committed, over all slices.
    pub committed: u64,
    /// Writes that failed (a leader change, a timeout).
    pub failed: u64,
    /// The first failed write's error.
    pub first_failure: Option<String>,
    /// From the first write to the last answer, summed over the slices, seconds.
    pub secs: f64,
    /// Committed writes per second, the median of the slices'.
    pub writes_per_sec: Option<f64>,
    /// Commit latency of the committed writes of every slice (from the call to `KvNode::write` to its answer).
    pub latency: Option<Percentiles>,
    /// CPU time of the process (all three nodes, clients and runtime) per committed write,
    /// microseconds.
    pub cpu_us_per_write: Option<f64>,
    /// Why the row could not be measured (the cluster did not start, a run hung).
    pub error: Option<String>,
}

/// One ratio against its target.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The measured value.
    pub value: Option<f64>,
    /// The target, as text.
    pub target: String,
    /// Whether the target is met (`None`: no target, or not measured).
    pub met: Option<bool>,
}

/// Everything measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// How it was run.
    pub meta: Meta,
    /// Throughput rows.
    pub throughput: Vec<ThroughputRow>,
    /// Ping-pong rows.
    pub pingpong: Vec<PingRow>,
    /// Loss rows.
    pub loss: Vec<LossRow>,
    /// Memory per idle connection.
    pub idle: Option<Outcome<IdleResult>>,
    /// Active echo clients.
    pub echo: Option<Outcome<EchoResult>>,
    /// Raft rows: a 3-node key-value cluster per network and client count.
    pub raft: Vec<RaftRow>,
    /// Ratios against the targets.
    pub ratios: Vec<Ratio>,
}

impl Report {
    /// The throughput of `transport` at `size`, if it ran without error.
    fn tput(&self, transport: &str, size: usize) -> Option<f64> {
        self.throughput
            .iter()
            .find(|r| r.transport == transport && r.size == size && r.error.is_none())
            .and_then(|r| r.msgs_per_sec)
    }

    /// The Raft row of `network` at `clients`, if it was measured.
    fn raft_row(&self, network: &str, clients: u64) -> Option<&RaftRow> {
        self.raft
            .iter()
            .find(|r| r.network == network && r.clients == clients && r.error.is_none())
    }

    fn p50(&self, transport: &str, runtime: PingRuntime) -> Option<f64> {
        self.pingpong
            .iter()
            .find(|r| r.transport == transport && r.runtime == runtime && r.error.is_none())
            .and_then(|r| r.latency.map(|l| l.p50_us))
    }

    /// Computes the ratios against hawser's performance targets.
    pub fn compute_ratios(&mut self) {
        let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let mut ratios = Vec::new();
        let mut push =
            |name: String, value: Option<f64>, target: &str, ok: Option<fn(f64) -> bool>| {
                ratios.push(Ratio {
                    name,
                    value,
                    target: target.to_string(),
                    met: ok.and_then(|f| value.map(f)),
                });
            };
        push(
            "hawser-binary / quinn, msgs/s, 64 B".into(),
            div(self.tput("hawser-binary", 64), self.tput("quinn", 64)),
            ">= 1.5",
            Some(|v| v >= 1.5),
        );
        push(
            "hawser-binary / quinn, msgs/s, 1 KiB".into(),
            div(self.tput("hawser-binary", 1024), self.tput("quinn", 1024)),
            ">= 1.0",
            Some(|v| v >= 1.0),
        );
        push(
            "hawser-batched / quinn, msgs/s, 64 B".into(),
            div(self.tput("hawser-batched", 64), self.tput("quinn", 64)),
            ">= 1.5",
            Some(|v| v >= 1.5),
        );
        push(
            "hawser-batched / quinn, msgs/s, 1 KiB".into(),
            div(self.tput("hawser-batched", 1024), self.tput("quinn", 1024)),
            ">= 1.0",
            Some(|v| v >= 1.0),
        );
        for size in [64, 1024] {
            push(
                format!("hawser-binary / tcp-batched, msgs/s, {}", size_name(size)),
                div(
                    self.tput("hawser-binary", size),
                    self.tput("tcp-batched", size),
                ),
                "(none)",
                None,
            );
        }
        for size in [64, 1024] {
            push(
                format!("hawser-json / udp-raw, msgs/s, {}", size_name(size)),
                div(self.tput("hawser-json", size), self.tput("udp-raw", size)),
                ">= 0.7",
                Some(|v| v >= 0.7),
            );
        }
        for size in [64, 1024] {
            push(
                format!("hawser-json-cack / udp-raw, msgs/s, {}", size_name(size)),
                div(
                    self.tput("hawser-json-cack", size),
                    self.tput("udp-raw", size),
                ),
                "(none)",
                None,
            );
        }
        // The node rows against the references run between them (falling back on the
        // throughput table's rows when the node section ran without them); plaintext rows are
        // the like-for-like comparison (raw framing is plaintext too), secure rows what a
        // node does by default.
        let reference = |name: &str, fallback: &str, size: usize| {
            self.tput(name, size).or_else(|| self.tput(fallback, size))
        };
        for size in [64, 1024] {
            let tcp = reference(REF_TCP_BATCHED, "tcp-batched", size);
            for row in [
                "node-tcp-plain",
                "node-tcp-plain-batch",
                "node-lsp-plain",
                "node-lsp-plain-batch",
                "node-tcp",
                "node-tcp-batch",
                "node-lsp",
                "node-lsp-batch",
            ] {
                let kind = if row.contains("plain") {
                    "plaintext"
                } else {
                    "secure"
                };
                push(
                    format!("{row} ({kind}) / tcp-batched, msgs/s, {}", size_name(size)),
                    div(self.tput(row, size), tcp),
                    ">= 0.8",
                    Some(|v| v >= 0.8),
                );
            }
        }
        for row in ["node-lsp", "node-lsp-batch"] {
            push(
                format!("{row} (secure) / quinn, msgs/s, 64 B"),
                div(self.tput(row, 64), reference(REF_QUINN, "quinn", 64)),
                ">= 1.0",
                Some(|v| v >= 1.0),
            );
        }
        // AES-256-GCM, the cipher quinn negotiates here: no target of its own (the targets
        // are for the default ChaChaPoly), set beside them to show the cipher's share.
        push(
            "node-lsp-aes-batch (secure, AES-GCM) / quinn, msgs/s, 64 B".into(),
            div(
                self.tput("node-lsp-aes-batch", 64),
                reference(REF_QUINN, "quinn", 64),
            ),
            "(none)",
            None,
        );
        for (aes, plain) in [
            ("node-tcp-aes-batch", "node-tcp-plain-batch"),
            ("node-lsp-aes-batch", "node-lsp-plain-batch"),
        ] {
            for size in [64, 16384] {
                push(
                    format!("{aes} / {plain}, msgs/s, {}", size_name(size)),
                    div(self.tput(aes, size), self.tput(plain, size)),
                    "(none)",
                    None,
                );
            }
        }
        for (secure, plain) in [
            ("node-tcp", "node-tcp-plain"),
            ("node-lsp", "node-lsp-plain"),
        ] {
            push(
                format!("{secure} secure / plaintext, msgs/s, 64 B"),
                div(self.tput(secure, 64), self.tput(plain, 64)),
                ">= 0.6",
                Some(|v| v >= 0.6),
            );
            push(
                format!("{secure} secure / plaintext, msgs/s, 16 KiB"),
                div(self.tput(secure, 16384), self.tput(plain, 16384)),
                ">= 0.5",
                Some(|v| v >= 0.5),
            );
        }
        use PingRuntime::{OneThread, Workers};
        // A ping-pong row's p50 against raw UDP's on the same runtime.
        let vs_udp = |t: &str, rt: PingRuntime| div(self.p50(t, rt), self.p50("udp-raw", rt));
        push(
            "ping-pong p50 hawser-binary / udp-raw, one thread".into(),
            vs_udp("hawser-binary", OneThread),
            "<= 1.3",
            Some(|v| v <= 1.3),
        );
        for (t, rt) in [("hawser-json", OneThread), ("hawser-binary", Workers)] {
            push(
                format!("ping-pong p50 {t} / udp-raw, {}", rt.name()),
                vs_udp(t, rt),
                "(none)",
                None,
            );
        }
        let cpu = |t: &str| {
            self.pingpong
                .iter()
                .find(|r| r.transport == t && r.runtime == OneThread && r.error.is_none())
                .and_then(|r| r.cpu_us_per_trip)
        };
        push(
            "ping-pong CPU/trip hawser-binary / udp-raw, one thread".into(),
            div(cpu("hawser-binary"), cpu("udp-raw")),
            "(none)",
            None,
        );
        let idle = self
            .idle
            .as_ref()
            .and_then(|o| o.result.as_ref())
            .map(|r| r.server_bytes_per_conn);
        push(
            "server memory per idle connection, bytes".into(),
            idle,
            "<= 8192",
            Some(|v| v <= 8192.0),
        );
        let echo = self.echo.as_ref().and_then(|o| o.result.as_ref());
        let echo_ok = echo.map(|e| {
            if e.lost == 0 && e.completed == e.clients && e.first_error.is_none() {
                0.0
            } else {
                e.lost.max(1) as f64
            }
        });
        push(
            match echo {
                Some(e) => format!("{} active echo clients: messages lost", e.clients),
                None => "active echo clients: messages lost".to_string(),
            },
            echo_ok,
            "0",
            Some(|v| v == 0.0),
        );
        let ten = self
            .loss
            .iter()
            .find(|r| r.loss_percent == 10.0)
            .and_then(|r| r.goodput_ratio);
        push(
            "goodput at 10% loss / loss-free".into(),
            ten,
            ">= 0.5",
            Some(|v| v >= 0.5),
        );
        // Raft: hawser (encrypted) against the hand-written plaintext network and against the
        // in-process ceiling, all measured in this run.
        let writes =
            |net: &str, clients: u64| self.raft_row(net, clients).and_then(|r| r.writes_per_sec);
        for clients in RAFT_CLIENTS {
            for net in [RAFT_HAWSER_TCP, RAFT_HAWSER_LSP] {
                push(
                    format!(
                        "{net} (secure) / {RAFT_BASELINE} (plaintext), writes/s, {clients} clients"
                    ),
                    div(writes(net, clients), writes(RAFT_BASELINE, clients)),
                    ">= 1.0",
                    Some(|v| v >= 1.0),
                );
            }
        }
        for net in [RAFT_HAWSER_TCP, RAFT_HAWSER_LSP] {
            push(
                format!("{net} / {RAFT_IN_PROCESS}, writes/s, 256 clients"),
                div(writes(net, 256), writes(RAFT_IN_PROCESS, 256)),
                ">= 0.5",
                Some(|v| v >= 0.5),
            );
        }
        for net in [
            RAFT_HAWSER_TCP,
            RAFT_HAWSER_LSP,
            RAFT_BASELINE,
            RAFT_IN_PROCESS,
        ] {
            let hawser = net != RAFT_BASELINE && net != RAFT_IN_PROCESS;
            push(
                format!("{net} p99 commit latency, 64 clients, ms"),
                self.raft_row(net, 64)
                    .and_then(|r| r.latency.map(|l| l.p99_us / 1000.0)),
                if hawser { "<= 2" } else { "(none)" },
                if hawser { Some(|v| v <= 2.0) } else { None },
            );
        }
        self.ratios = ratios;
    }

    /// Whether any row failed (a hang, a loss or a reordering of a reliable transport, a
    /// phase that could not run). Performance never counts; an incomplete loss row neither.
    pub fn has_errors(&self) -> bool {
        self.throughput.iter().any(|r| r.error.is_some())
            || self.pingpong.iter().any(|r| r.error.is_some())
            || self.loss.iter().any(|r| {
                r.ping_error.is_some()
                    || r.error
                        .as_deref()
                        .is_some_and(|e| !e.starts_with("incomplete"))
            })
            || self.idle.as_ref().is_some_and(|o| o.error.is_some())
            || self
                .echo
                .as_ref()
                .is_some_and(|o| o.error.is_some() || o.result.as_ref().is_some_and(|r| r.lost > 0))
            || self.raft.iter().any(|r| r.error.is_some())
            || self.meta.aborted.is_some()
    }

    /// The tables, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.meta;
        let _ = writeln!(out, "hawser-bench: {}", m.command);
        let _ = writeln!(
            out,
            "machine: {} ({} CPUs); runtime: {}",
            m.cpu, m.nproc, m.runtime
        );
        let _ = writeln!(out, "hawser: {}", m.hawser_config);
        let _ = writeln!(
            out,
            "git {}{}; load average at start {}, at end {}",
            m.git_commit,
            if m.git_dirty {
                " (uncommitted changes)"
            } else {
                ""
            },
            m.loadavg_start,
            m.loadavg_end
        );
        let _ = writeln!(out, "all traffic on 127.0.0.1; MB = 10^6 payload bytes\n");
        if !self.throughput.is_empty() {
            let _ = writeln!(
                out,
                "Throughput: {} messages one way, complete and in order, median of {} runs",
                m.messages, m.runs
            );
            let _ = writeln!(
                out,
                "{:<20} {:>6} {:>10} {:>8} {:>10} {:>6}  note",
                "transport", "size", "msgs/s", "MB/s", "CPU us/msg", "loss%"
            );
            for r in &self.throughput {
                let mut note = match &r.error {
                    Some(e) => format!("ERROR: {e}"),
                    None => hawser_note(&r.runs),
                };
                if r.messages != m.messages {
                    // The node rows at 16 KiB send fewer.
                    note = format!("{} messages per run {note}", r.messages);
                }
                let _ = writeln!(
                    out,
                    "{:<20} {:>6} {:>10} {:>8} {:>10} {:>6}  {}",
                    r.transport,
                    size_name(r.size),
                    fmt_opt(r.msgs_per_sec, 0),
                    fmt_opt(r.mb_per_sec, 1),
                    fmt_opt(r.cpu_us_per_msg, 2),
                    format!("{:.1}", r.max_loss_percent),
                    note
                );
            }
            out.push('\n');
        }
        if !self.pingpong.is_empty() {
            let _ = writeln!(
                out,
                "Ping-pong: 64 B round trips, after a warm-up. \"one thread\": both ends on one current-thread runtime of their own (the target's rows); \"2 workers\": on the multi-thread runtime, wake-ups of idle CPUs included"
            );
            let _ = writeln!(
                out,
                "{:<16} {:<10} {:>8} {:>9} {:>9} {:>9} {:>12} {:>5}  note",
                "transport",
                "runtime",
                "trips",
                "p50 us",
                "p99 us",
                "max us",
                "CPU us/trip",
                "lost"
            );
            for r in &self.pingpong {
                let l = r.latency;
                let _ = writeln!(
                    out,
                    "{:<16} {:<10} {:>8} {:>9} {:>9} {:>9} {:>12} {:>5}  {}",
                    r.transport,
                    r.runtime.name(),
                    r.completed,
                    fmt_opt(l.map(|l| l.p50_us), 1),
                    fmt_opt(l.map(|l| l.p99_us), 1),
                    fmt_opt(l.map(|l| l.max_us), 0),
                    fmt_opt(r.cpu_us_per_trip, 1),
                    r.lost,
                    r.error
                        .as_deref()
                        .map(|e| format!("ERROR: {e}"))
                        .unwrap_or_default()
                );
            }
            out.push('\n');
        }
        if !self.loss.is_empty() {
            let r0 = &self.loss[0];
            let _ = writeln!(
                out,
                "Under loss: hawser-binary over FaultySocket on both ends (each drops loss% of what it sends); goodput: {} x {}, median of {} runs; 64 B ping-pong: one series",
                r0.messages,
                size_name(r0.size),
                r0.runs
            );
            let _ = writeln!(
                out,
                "{:>6} {:>10} {:>8} {:>7} {:>8} {:>7} {:>10} {:>10} {:>8}  note",
                "loss%",
                "msgs/s",
                "MB/s",
                "ratio",
                "retr/run",
                "trips",
                "p50 us",
                "p99 us",
                "p99 x",
            );
            for r in &self.loss {
                let l = r.latency;
                let runs = r.runs.max(1) as u64;
                let timers = (r.loss_percent > 0.0).then(|| {
                    format!(
                        "{} probes, {} RTOs per run",
                        r.probes / runs,
                        r.rto_expiries / runs
                    )
                });
                let note = [
                    timers.as_deref(),
                    r.error.as_deref(),
                    r.ping_error.as_deref(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ");
                let _ = writeln!(
                    out,
                    "{:>6} {:>10} {:>8} {:>7} {:>8} {:>7} {:>10} {:>10} {:>8}  {}",
                    r.loss_percent,
                    fmt_opt(r.msgs_per_sec, 0),
                    fmt_opt(r.mb_per_sec, 2),
                    fmt_opt(r.goodput_ratio, 2),
                    r.retransmits / r.runs.max(1) as u64,
                    r.pings_completed,
                    fmt_opt(l.map(|l| l.p50_us), 0),
                    fmt_opt(l.map(|l| l.p99_us), 0),
                    fmt_opt(r.p99_ratio, 1),
                    note
                );
            }
            out.push('\n');
        }
        if let Some(o) = &self.idle {
            let _ = writeln!(
                out,
                "Idle connections (server and clients in child processes)"
            );
            match &o.result {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "{} of {} connected in {:.1} s; after {:.0} s idle: server has {} live, {} clients alive",
                        r.connected, r.conns, r.connect_secs, r.idle_secs, r.server_live, r.clients_alive
                    );
                    let _ = writeln!(
                        out,
                        "server RSS {} KiB -> {} KiB: {:.0} bytes per idle connection; client side {:.0} bytes per client",
                        r.server_rss_before_kib,
                        r.server_rss_after_kib,
                        r.server_bytes_per_conn,
                        r.client_bytes_per_conn
                    );
                    let _ = writeln!(
                        out,
                        "server CPU while idle (heartbeats): {:.0}% of one core",
                        r.server_idle_cpu_percent
                    );
                }
                None => {
                    let _ = writeln!(out, "ERROR: {}", o.error.as_deref().unwrap_or("?"));
                }
            }
            if let (Some(e), Some(_)) = (&o.error, &o.result) {
                let _ = writeln!(out, "ERROR: {e}");
            }
            out.push('\n');
        }
        if let Some(o) = &self.echo {
            let _ = writeln!(out, "Active echo clients");
            match &o.result {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "{} clients x {} messages of {} B: {} connected ({:.1} s), {} completed, {} echoes in {:.2} s ({:.0}/s), {} lost{}",
                        r.clients,
                        r.per_client,
                        r.size,
                        r.connected,
                        r.connect_secs,
                        r.completed,
                        r.echoed,
                        r.secs,
                        r.echoes_per_sec,
                        r.lost,
                        r.first_error.as_deref().map(|e| format!("; first error: {e}")).unwrap_or_default()
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "ERROR: {} (progress {})",
                        o.error.as_deref().unwrap_or("?"),
                        o.progress.unwrap_or(0)
                    );
                }
            }
            out.push('\n');
        }
        if !self.raft.is_empty() {
            self.render_raft(&mut out);
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(out, "Ratios against the targets");
            for r in &self.ratios {
                let verdict = match r.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None if r.value.is_none() && r.target != "(none)" => "not measured",
                    None => "",
                };
                let _ = writeln!(
                    out,
                    "{:<48} {:>10}  target {:<8} {}",
                    r.name,
                    fmt_opt(r.value, 3),
                    r.target,
                    verdict
                );
            }
            out.push('\n');
        }
        let _ = writeln!(out, "total {:.1} s", m.total_secs);
        if let Some(a) = &m.aborted {
            let _ = writeln!(out, "ABORTED: {a}");
        }
        out
    }
}

impl Report {
    fn render_raft(&self, out: &mut String) {
        let (slices, secs) = self
            .raft
            .iter()
            .find(|r| r.slices > 0)
            .map_or((0, 0.0), |r| (r.slices, r.secs / r.slices as f64));
        let _ = writeln!(
            out,
            "Raft: 3-node key-value cluster on 127.0.0.1, in-memory storage (the network is measured, not the disk); each client writes {RAFT_VALUE_BYTES} B values to the leader, one write at a time; per row {slices} slices of ~{secs:.2} s interleaved with the other networks', writes/s the median slice; heartbeat 50 ms, elections 150-300 ms"
        );
        let _ = writeln!(
            out,
            "{:<18} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>12} {:>6}  note",
            "network",
            "clients",
            "writes",
            "writes/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU us/write",
            "failed"
        );
        for r in &self.raft {
            let l = r.latency;
            let mut note = r.note.clone();
            if let Some(e) = &r.error {
                note = format!("ERROR: {e}");
            } else if let Some(f) = &r.first_failure {
                note = format!("{note}; first failure: {f}");
            }
            let _ = writeln!(
                out,
                "{:<18} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>12} {:>6}  {}",
                r.network,
                r.clients,
                r.committed,
                fmt_opt(r.writes_per_sec, 0),
                fmt_opt(l.map(|l| l.p50_us / 1000.0), 2),
                fmt_opt(l.map(|l| l.p99_us / 1000.0), 2),
                fmt_opt(l.map(|l| l.max_us / 1000.0), 1),
                fmt_opt(r.cpu_us_per_write, 1),
                r.failed,
                note
            );
        }
        out.push('\n');
    }
}

/// hawser's retransmissions and datagram count of the median-ish run, when there were any.
fn hawser_note(runs: &[RunResult]) -> String {
    let Some(r) = runs.first() else {
        return String::new();
    };
    if r.datagrams == 0 {
        return String::new();
    }
    let retrans: u64 = runs.iter().map(|r| r.retransmits).sum();
    format!(
        "{:.2} datagrams/msg, {} retransmits in {} runs",
        r.datagrams as f64 / r.received.max(1) as f64,
        retrans,
        runs.len()
    )
}

/// `64 B`, `1 KiB`.
pub fn size_name(size: usize) -> String {
    if size >= 1024 && size.is_multiple_of(1024) {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) => format!("{v:.decimals$}"),
        None => "-".to_string(),
    }
}
