//! `hawser raft`: runs one node of a replicated key-value store (openraft on hawser) with an
//! HTTP API.
//!
//! ```text
//! hawser raft --id 1 --listen 127.0.0.1:7101 --peer 2=127.0.0.1:7102 --peer 3=127.0.0.1:7103 \
//!     --http 127.0.0.1:8101 --data-dir /var/lib/hawser/n1
//! ```
//!
//! Nodes started with each other as peers form one cluster, bootstrapped by the lowest id.
//! Without `--data-dir` the node keeps its log, vote and state in memory and says so. With
//! it, the node's Raft identity and storage and its hawser key (`node.key`) live there, so a
//! restarted node rejoins as itself. `--transport lsp` carries Raft traffic in sessions over
//! LSP on UDP port `PORT + 1` of every node's address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hawser_net::session::Identity as KeyIdentity;
use hawser_raft::config::NodeConfig;
use hawser_raft::http::{self, HttpLimits};
use hawser_raft::server::{Server, ServerConfig, Transport};
use hawser_raft::store::Storage;
use tracing::info;

use crate::addr::resolve;
use crate::node_cmd::CipherArg;

/// One `--peer ID=HOST:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftPeer {
    /// The peer's node id.
    pub id: u64,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl std::str::FromStr for RaftPeer {
    type Err = String;

    fn from_str(s: &str) -> Result<RaftPeer, String> {
        let (id, addr) = s.split_once('=').ok_or("expected ID=HOST:PORT")?;
        let id = id
            .parse()
            .map_err(|e| format!("invalid node id '{id}': {e}"))?;
        Ok(RaftPeer {
            id,
            addr: resolve(addr)?,
        })
    }
}

/// The reliable transport, as spelled on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// Sessions over TCP.
    #[default]
    Tcp,
    /// Sessions over LSP on UDP port PORT + 1.
    Lsp,
}

/// Arguments of `hawser raft`.
#[derive(clap::Args, Debug)]
pub struct RaftArgs {
    /// This node's id.
    #[arg(long)]
    pub id: u64,
    /// Address to listen on for other nodes, HOST:PORT (TCP and UDP; LSP on the next port).
    #[arg(long, value_parser = resolve)]
    pub listen: SocketAddr,
    /// Every other node, as ID=HOST:PORT; repeat for each.
    #[arg(long = "peer", value_name = "ID=HOST:PORT")]
    pub peers: Vec<RaftPeer>,
    /// Address of the HTTP API, HOST:PORT (PUT/GET /kv/KEY, GET /status).
    #[arg(long, value_parser = resolve)]
    pub http: SocketAddr,
    /// Directory of the node's log, vote, snapshots and keys (default: all in memory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The reliable transport between nodes.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    pub transport: TransportArg,
    /// The sessions' Noise cipher; every node of a cluster must use the same.
    #[arg(long, value_enum, default_value_t = CipherArg::Chachapoly)]
    pub cipher: CipherArg,
    /// Longest election timeout in ms (the shortest is half of it; heartbeats every sixth).
    #[arg(long, default_value_t = 300)]
    pub election_ms: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub run_for: Option<u64>,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

/// The file of the node's hawser key inside its data directory.
const KEY_FILE: &str = "node.key";

/// Runs one node until Ctrl-C (or `--run-for`).
pub async fn run(args: RaftArgs) -> anyhow::Result<()> {
    if args.peers.iter().any(|p| p.id == args.id) {
        anyhow::bail!("--peer lists this node's own id {}", args.id);
    }
    let storage = match &args.data_dir {
        Some(dir) => Storage::open(dir, args.id)
            .with_context(|| format!("opening the data directory {}", dir.display()))?,
        None => {
            eprintln!("hawser raft: no --data-dir: everything is kept in memory and lost at exit");
            Storage::in_memory(args.id).context("in-memory storage")?
        }
    };
    let peers = args.peers.iter().map(|p| (p.id, p.addr)).collect();
    let mut config = ServerConfig::new(args.id, args.listen, peers);
    config.raft = raft_timing(
        NodeConfig::new(args.id, args.listen.to_string()),
        args.election_ms,
    );
    config.transport = match args.transport {
        TransportArg::Tcp => Transport::Tcp,
        TransportArg::Lsp => Transport::Lsp,
    };
    config.settings.security = args.cipher.security();
    if let Some(dir) = &args.data_dir {
        config.settings.identity = Some(Arc::new(load_or_create_key(&dir.join(KEY_FILE))?));
    }
    let server = Server::start(config, storage)
        .await
        .with_context(|| format!("starting node {} on {}", args.id, args.listen))?;
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding the HTTP API on {}", args.http))?;
    let status = server.kv.status();
    let transport = match args.transport {
        TransportArg::Tcp => "tcp",
        TransportArg::Lsp => "lsp",
    };
    eprintln!(
        "hawser raft: node {} (incarnation {}) on {} over {transport}, HTTP on {}",
        args.id, status.incarnation, args.listen, args.http
    );
    let _metrics = crate::metrics::start(&args.metrics, &server.network).await?;
    let api = http::serve(listener, server.kv.clone(), HttpLimits::default());
    let stop = async {
        match args.run_for {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        r = api => r.context("HTTP API")?,
        () = stop => info!(node = args.id, "stopping"),
    }
    server.stop().await;
    Ok(())
}

/// `config` with the election timeout `max_ms` (shortest half of it, heartbeats a sixth).
pub fn raft_timing(mut config: NodeConfig, max_ms: u64) -> NodeConfig {
    let max = max_ms.max(60);
    config.election_timeout_max = Duration::from_millis(max);
    config.election_timeout_min = Duration::from_millis(max / 2);
    config.heartbeat_interval = Duration::from_millis(max / 6);
    config
}

/// The node's hawser key at `path`, written (mode 0600) on first use.
fn load_or_create_key(path: &std::path::Path) -> anyhow::Result<KeyIdentity> {
    if path.exists() {
        return KeyIdentity::load(path).with_context(|| format!("reading {}", path.display()));
    }
    let key = KeyIdentity::generate().context("generating the node key")?;
    key.save(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_resolve_host_names() {
        // `resolve` itself is tested in `addr`.
        let peer: RaftPeer = "2=localhost:7102".parse().unwrap();
        assert_eq!((peer.id, peer.addr.port()), (2, 7102));
        assert!("2".parse::<RaftPeer>().is_err());
        assert!("x=127.0.0.1:1".parse::<RaftPeer>().is_err());
    }
}
