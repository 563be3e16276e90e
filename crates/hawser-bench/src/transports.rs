//! The transports compared, and what one run of each measures.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use hawser_net::lsp::Codec;
use tokio::time::Instant;

use crate::baselines;
use crate::hawser_rows::{self, UdpPath};
use crate::node_rows::{self, NodeVariant};

/// Every socket binds here: only loopback is ever used.
pub const LOOPBACK: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    0,
));

/// One transport (a row of the tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// hawser LSP, binary codec.
    HawserBinary,
    /// hawser LSP, binary codec, written and read through the batch calls.
    HawserBatched,
    /// hawser LSP, reference JSON codec (one Ack per Data message, as the reference).
    HawserJson,
    /// hawser LSP, JSON codec with cumulative acknowledgements (`AckPolicy::Cumulative`).
    HawserJsonCack,
    /// Raw tokio UDP, one datagram per message, no reliability.
    UdpRaw,
    /// TCP, `LengthDelimitedCodec`, flushed after every message (`send`).
    TcpSend,
    /// TCP, `LengthDelimitedCodec`, `feed` and a flush every [`baselines::BATCH`] messages.
    TcpBatched,
    /// QUIC (quinn), one bidirectional stream of length-prefixed messages.
    Quinn,
    /// Two `hawser_net::node::Node`s, reliable messages over a Noise session on TCP (the default).
    NodeTcp,
    /// The same over a plaintext session (`Security::DangerPlaintext`).
    NodeTcpPlain,
    /// Two nodes, reliable messages over a Noise session on LSP.
    NodeLsp,
}

impl Transport {
    /// Rows of the throughput table, in order.
    pub const THROUGHPUT: [Transport; 11] = [
        Transport::HawserBinary,
        Transport::HawserBatched,
        Transport::HawserJson,
        Transport::HawserJsonCack,
        Transport::UdpRaw,
        Transport::TcpSend,
        Transport::TcpBatched,
        Transport::Quinn,
        Transport::NodeTcp,
        Transport::NodeTcpPlain,
        Transport::NodeLsp,
    ];

    /// Rows of the ping-pong table (TCP flushes each message, so it is one row).
    pub const PING: [Transport; 5] = [
        Transport::HawserBinary,
        Transport::HawserJson,
        Transport::UdpRaw,
        Transport::TcpSend,
        Transport::Quinn,
    ];

    /// The row's name (also what `--only` matches).
    pub fn name(self) -> &'static str {
        match self {
            Transport::HawserBinary => "hawser-binary",
            Transport::HawserBatched => "hawser-batched",
            Transport::HawserJson => "hawser-json",
            Transport::HawserJsonCack => "hawser-json-cack",
            Transport::UdpRaw => "udp-raw",
            Transport::TcpSend => "tcp-send",
            Transport::TcpBatched => "tcp-batched",
            Transport::Quinn => "quinn",
            Transport::NodeTcp => "node-tcp",
            Transport::NodeTcpPlain => "node-tcp-plain",
            Transport::NodeLsp => "node-lsp",
        }
    }

    /// Sends `n` messages of `size` bytes one way; `progress` counts messages received.
    pub async fn throughput(
        self,
        n: u64,
        size: usize,
        seed: u64,
        progress: Arc<AtomicU64>,
    ) -> Result<RunResult> {
        let plain = UdpPath::Plain;
        if self == Transport::HawserBatched {
            let config = hawser_rows::hawser_config(Codec::Binary);
            return hawser_rows::throughput_batched(&config, n, size, seed, progress).await;
        }
        match self.hawser_config() {
            Some(config) => hawser_rows::throughput(&config, plain, n, size, seed, progress).await,
            None => match self {
                Transport::TcpSend => baselines::tcp_throughput(n, size, false, progress).await,
                Transport::TcpBatched => baselines::tcp_throughput(n, size, true, progress).await,
                Transport::Quinn => baselines::quinn_throughput(n, size, progress).await,
                Transport::NodeTcp => {
                    node_rows::throughput(NodeVariant::TcpSecure, n, size, progress).await
                }
                Transport::NodeTcpPlain => {
                    node_rows::throughput(NodeVariant::TcpPlain, n, size, progress).await
                }
                Transport::NodeLsp => {
                    node_rows::throughput(NodeVariant::LspSecure, n, size, progress).await
                }
                _ => baselines::udp_throughput(n, size, progress).await,
            },
        }
    }

    /// `warmup` + `pings` round trips of `size` bytes; `progress` counts recorded ones.
    pub async fn ping(
        self,
        pings: u64,
        warmup: u64,
        size: usize,
        progress: Arc<AtomicU64>,
    ) -> Result<PingResult> {
        let plain = UdpPath::Plain;
        match self.hawser_config() {
            Some(config) => {
                hawser_rows::ping(&config, plain, pings, warmup, size, None, progress).await
            }
            None => match self {
                Transport::TcpSend | Transport::TcpBatched => {
                    baselines::tcp_ping(pings, warmup, size, progress).await
                }
                Transport::Quinn => baselines::quinn_ping(pings, warmup, size, progress).await,
                _ => baselines::udp_ping(pings, warmup, size, progress).await,
            },
        }
    }

    /// The configuration of a hawser row; `None` for a baseline.
    fn hawser_config(self) -> Option<hawser_net::lsp::Config> {
        match self {
            Transport::HawserBinary => Some(hawser_rows::hawser_config(Codec::Binary)),
            Transport::HawserJson => Some(hawser_rows::hawser_config(Codec::Json)),
            Transport::HawserJsonCack => Some(hawser_rows::hawser_json_cack_config()),
            _ => None,
        }
    }
}

/// What one throughput run measured.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct RunResult {
    /// Messages that arrived (complete and in order for every reliable transport).
    pub received: u64,
    /// Messages that never arrived (raw UDP only).
    pub lost: u64,
    /// Messages that arrived out of order (raw UDP only; reliable rows fail instead).
    pub reordered: u64,
    /// From the first send to the last message received.
    pub secs: f64,
    /// hawser only: Data messages the sender sent again.
    pub retransmits: u64,
    /// hawser only: tail-loss probes the sender sent.
    pub probes: u64,
    /// hawser only: retransmission timeouts that expired at the sender.
    pub rto_expiries: u64,
    /// hawser only: datagrams both endpoints sent (Data, Acks, heartbeats).
    pub datagrams: u64,
    /// CPU time of the whole process (sender and receiver, all threads) during the run.
    pub cpu_secs: f64,
}

impl RunResult {
    /// A run where all `n` messages arrived in `elapsed`.
    pub fn complete(n: u64, elapsed: Duration) -> RunResult {
        RunResult {
            received: n,
            lost: 0,
            reordered: 0,
            secs: elapsed.as_secs_f64(),
            retransmits: 0,
            probes: 0,
            rto_expiries: 0,
            datagrams: 0,
            cpu_secs: 0.0,
        }
    }

    /// Messages received per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.received as f64 / self.secs.max(1e-9)
    }
}

/// What one ping-pong series measured.
#[derive(Clone, Debug, Default)]
pub struct PingResult {
    /// Round-trip times of the recorded round trips that completed.
    pub samples: Vec<Duration>,
    /// Round trips that got no answer in time (raw UDP only).
    pub lost: u64,
    /// Whether the series stopped at its time budget before every round trip was made.
    pub stopped_early: bool,
}

/// When a phase started, to report how long it took.
pub fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
