//! The command line, as clap derive types, and its translation into hawser settings.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hawser_net::lsp::{Codec, Config, Params};
use hawser_proto::fault::FaultConfig;
use hawser_proto::lsp::RetransmitPolicy;

use crate::CliError;

/// hawser: reliable messages over UDP (the Live Sequence Protocol).
#[derive(Debug, Parser)]
#[command(name = "hawser", version, about, propagate_version = true)]
pub struct Cli {
    /// More log messages on stderr: -v for hawser's informational messages, -vv for debug,
    /// -vvv for trace (`RUST_LOG`, when set, decides instead).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Format of the log messages on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live Sequence Protocol tools: echo server and client.
    Lsp {
        /// Which LSP tool.
        #[command(subcommand)]
        command: LspCommand,
    },
    /// A self-contained demo: an echo server and several clients in one process over
    /// 127.0.0.1, with loss, duplication and reordering injected on every socket.
    Demo(DemoArgs),
    /// Run a node: print what it receives; send each line of stdin to a peer (`@ID text`) or to
    /// every other node. Listens on tcp://, lsp:// and ws:// addresses; settings from flags and
    /// a TOML file (--config); a per-peer summary at exit.
    Node(crate::node_cmd::NodeArgs),
    /// Generate a node identity (an ed25519 key) into a file and print its PeerId, or print the
    /// PeerId of an existing key file (--show).
    Keygen(crate::keygen::KeygenArgs),
    /// Run one node of a replicated key-value store (openraft on hawser) with an HTTP API:
    /// PUT/GET /kv/KEY, GET /status.
    Raft(crate::raft_cmd::RaftArgs),
}

/// The `lsp` subcommands.
#[derive(Debug, Subcommand)]
pub enum LspCommand {
    /// Echo every message back to its sender, until Ctrl-C.
    EchoServer(EchoServerArgs),
    /// Send stdin's lines (or `--count` generated messages) and print (or check) the echoes.
    EchoClient(EchoClientArgs),
}

/// The format of log messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per message (colour only on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The wire encoding, as spelled on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Wire {
    /// hawser's compact binary encoding.
    #[default]
    Binary,
    /// The reference JSON encoding (compatible with the Go implementations).
    Json,
}

impl From<Wire> for Codec {
    fn from(w: Wire) -> Codec {
        match w {
            Wire::Binary => Codec::Binary,
            Wire::Json => Codec::Json,
        }
    }
}

/// When Data is sent again, as spelled on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Retransmit {
    /// `epoch` for the JSON wire, `adaptive` for binary.
    #[default]
    Auto,
    /// The reference behaviour: resends at epochs only, with per-message back-off.
    Epoch,
    /// An RTT-estimated timeout plus loss detection from later acknowledgements (epochs still
    /// drive heartbeats and the detection of a lost connection).
    Adaptive,
}

impl From<Retransmit> for RetransmitPolicy {
    fn from(r: Retransmit) -> RetransmitPolicy {
        match r {
            Retransmit::Auto => RetransmitPolicy::Auto,
            Retransmit::Epoch => RetransmitPolicy::Epoch,
            Retransmit::Adaptive => RetransmitPolicy::Adaptive,
        }
    }
}

/// The name of the policy in force, for printing.
pub fn policy_name(config: &Config) -> &'static str {
    match config.effective_retransmit() {
        RetransmitPolicy::Epoch => "epoch",
        RetransmitPolicy::Adaptive => "adaptive",
        _ => "auto",
    }
}

/// Settings shared by the echo server and client: wire, ISN, the five protocol parameters,
/// and injected loss.
#[derive(Clone, Debug, Args)]
pub struct ProtoArgs {
    /// Wire encoding; both ends must agree.
    #[arg(long, value_enum, default_value_t = Wire::Binary)]
    pub wire: Wire,
    /// When Data is sent again.
    #[arg(long, value_enum, default_value_t = Retransmit::Auto)]
    pub retransmit: Retransmit,
    /// Initial sequence number of the connection (chosen by the client; the server ignores
    /// it). Default: derived from the clock.
    #[arg(long)]
    pub isn: Option<u32>,
    /// K: epochs with nothing received before the connection is declared lost.
    #[arg(long, default_value_t = 5)]
    pub epoch_limit: u32,
    /// δ: milliseconds between epochs.
    #[arg(long, default_value_t = 2000)]
    pub epoch_ms: u64,
    /// ω: sliding-window width, in messages.
    #[arg(long, default_value_t = 1)]
    pub window: u32,
    /// Most epochs between two sends of one message (0: resend every epoch).
    #[arg(long, default_value_t = 0)]
    pub max_backoff: u32,
    /// M: most messages sent and not yet acknowledged.
    #[arg(long, default_value_t = 1)]
    pub max_unacked: u32,
    /// Percentage of datagrams to drop on this endpoint's socket, in each direction.
    #[arg(long, default_value_t = 0.0)]
    pub drop_percent: f64,
    /// Seed of the loss injected by `--drop-percent`. Default: derived from the clock.
    #[arg(long)]
    pub fault_seed: Option<u64>,
}

impl ProtoArgs {
    /// The protocol parameters as given.
    pub fn params(&self) -> Params {
        Params::reference()
            .with_epoch_limit(self.epoch_limit)
            .with_epoch(Duration::from_millis(self.epoch_ms))
            .with_window(self.window)
            .with_max_backoff(self.max_backoff)
            .with_max_unacked(self.max_unacked)
    }

    /// The endpoint configuration, validated.
    ///
    /// # Errors
    /// [`CliError::Invalid`] naming the bad setting (and its flag).
    pub fn config(&self) -> Result<Config, CliError> {
        let config = Config::new(self.params())
            .with_codec(self.wire.into())
            .with_retransmit(self.retransmit.into());
        validate_config(&config)?;
        Ok(config)
    }

    /// The loss to inject on this endpoint's socket (both directions), if any, validated.
    ///
    /// # Errors
    /// [`CliError::Invalid`] if the percentage is out of range.
    pub fn faults(&self) -> Result<Option<FaultConfig>, CliError> {
        let faults = FaultConfig::dropping(self.drop_percent);
        faults
            .validate()
            .map_err(|e| CliError::Invalid(format!("invalid --drop-percent: {e}")))?;
        Ok((!faults.is_noop()).then_some(faults))
    }

    /// The wire encoding's name.
    pub fn wire_name(&self) -> &'static str {
        Codec::from(self.wire).name()
    }

    /// The name of the retransmission policy in force.
    pub fn policy_name(&self) -> &'static str {
        let config = Config::new(self.params())
            .with_codec(self.wire.into())
            .with_retransmit(self.retransmit.into());
        policy_name(&config)
    }

    /// The ISN to use: `--isn`, or one derived from the clock and the process id.
    pub fn isn(&self) -> u32 {
        self.isn.unwrap_or_else(clock_seed_u32)
    }

    /// The seed of the injected faults: `--fault-seed`, or one derived from the clock.
    pub fn fault_seed(&self) -> u64 {
        self.fault_seed.unwrap_or_else(clock_seed)
    }
}

/// Validates a configuration, turning its typed error into an invalid-usage error that names
/// both the setting and the command-line flag.
///
/// # Errors
/// [`CliError::Invalid`] naming the first bad setting.
pub fn validate_config(config: &Config) -> Result<(), CliError> {
    config.validate().map_err(|e| {
        let setting = match &e {
            hawser_proto::lsp::ParamsError::Zero(name) => Some(*name),
            hawser_proto::lsp::ParamsError::TooLarge { name, .. } => Some(*name),
            _ => None,
        };
        match setting.and_then(flag_of) {
            Some(flag) => CliError::Invalid(format!("invalid {flag}: {e}")),
            None => CliError::Invalid(format!("invalid settings: {e}")),
        }
    })
}

/// The command-line flag that sets a named [`Params`] field.
fn flag_of(setting: &str) -> Option<&'static str> {
    Some(match setting {
        "epoch_limit" => "--epoch-limit",
        "epoch" => "--epoch-ms",
        "window" => "--window",
        "max_backoff" => "--max-backoff",
        "max_unacked" => "--max-unacked",
        _ => return None,
    })
}

/// A seed that differs from run to run: the clock's nanoseconds mixed with the process id.
pub fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    splitmix64(nanos ^ (u64::from(std::process::id()) << 32))
}

/// [`clock_seed`], folded to 32 bits.
fn clock_seed_u32() -> u32 {
    let s = clock_seed();
    (s ^ (s >> 32)) as u32
}

/// One step of SplitMix64: spreads the bits of `x` (used to derive seeds and ISNs).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Arguments of `hawser lsp echo-server`.
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// UDP port to listen on (0 picks a free one; the address is printed on stdout).
    #[arg(long)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Protocol settings.
    #[command(flatten)]
    pub proto: ProtoArgs,
}

/// Arguments of `hawser lsp echo-client`.
#[derive(Debug, Args)]
pub struct EchoClientArgs {
    /// The server, as HOST:PORT.
    #[arg(long)]
    pub addr: String,
    /// Send this many generated messages instead of stdin's lines, and check their echoes.
    #[arg(long)]
    pub count: Option<u64>,
    /// Size of each generated message, in bytes (at least enough to hold its index).
    #[arg(long, default_value_t = 32, requires = "count")]
    pub size: usize,
    /// Most generated messages written and not yet echoed back; the protocol's window
    /// governs what is actually in flight.
    #[arg(long, default_value_t = 256)]
    pub pipeline: u64,
    /// Give up after this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// Protocol settings.
    #[command(flatten)]
    pub proto: ProtoArgs,
}

/// Arguments of `hawser demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of echo clients.
    #[arg(long, default_value_t = 8)]
    pub clients: u32,
    /// Messages each client sends (and checks the echo of).
    #[arg(long, default_value_t = 500)]
    pub messages: u64,
    /// Percentage of datagrams each socket drops on sending.
    #[arg(long, default_value_t = 10.0)]
    pub drop_percent: f64,
    /// Percentage of datagrams each socket sends twice.
    #[arg(long, default_value_t = 5.0)]
    pub duplicate_percent: f64,
    /// Percentage of datagrams each socket holds back by up to `--reorder-ms`.
    #[arg(long, default_value_t = 10.0)]
    pub reorder_percent: f64,
    /// Percentage of Data messages each socket damages on sending, for each of: one payload
    /// byte flipped, payload one byte short, payload lengthened (the receiver must drop the
    /// first two and truncate the third).
    #[arg(long, default_value_t = 0.0)]
    pub damage_percent: f64,
    /// Longest hold-back of a reordered datagram, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub reorder_ms: u64,
    /// Seed of every fault injector (and of the ISNs). The same seed draws the same sequence
    /// of fault decisions; real-time scheduling still varies which datagram each one meets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Wire encoding.
    #[arg(long, value_enum, default_value_t = Wire::Binary)]
    pub wire: Wire,
    /// When Data is sent again.
    #[arg(long, value_enum, default_value_t = Retransmit::Auto)]
    pub retransmit: Retransmit,
    /// Size of each message, in bytes (at least enough to hold its index).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Nodes in the reachability part (0 skips it): they watch each other with leases; the
    /// last one is stopped and restarted, and the detection times are printed.
    #[arg(long, default_value_t = 4)]
    pub nodes: u64,
    /// Reachability lease of the nodes, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub lease_ms: u64,
    /// Writes before and after the leader's stop in the Raft part (0 skips it): three
    /// key-value nodes over LSP through relays with the same loss, duplication and reordering.
    #[arg(long, default_value_t = 100)]
    pub raft_writes: usize,
}
