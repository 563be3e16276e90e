//! Raft rows: a 3-node key-value cluster (`hawser-raft`) on 127.0.0.1 under concurrent
//! clients, on four networks:
//! - `raft-hawser-tcp`: [`Server`] ×3, hawser sessions over TCP, encrypted (the default
//!   `Security::Noise`);
//! - `raft-hawser-lsp`: the same with [`Transport::Lsp`] (sessions over LSP on UDP, encrypted);
//! - `raft-baseline-tcp`: the hand-written network of [`crate::raft_baseline`] (tokio TCP,
//!   length-delimited frames, a request-id map; plaintext);
//! - `raft-in-process`: openraft's RPCs as direct calls ([`Router`]), the ceiling. It
//!   replicates with openraft's default `stream_append`, one append request at a time, where
//!   the two networks above pipeline up to 64: under many clients a pipelined network can
//!   match or pass it.
//!
//! Every node keeps its log and state machine in memory ([`Storage::in_memory`]): the rows
//! measure the network, not the disk. Every cluster has the same Raft timing (heartbeat 50 ms,
//! elections 150–300 ms) and snapshot policy ([`node_config`]). Each client is a task writing
//! `Set` requests to the leader's [`KvNode`] in a loop, one at a time, on keys of its own; a
//! write counts once [`KvNode::write`] returns, that is once a quorum has it and the leader
//! applied it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hawser_net::node::NodeId as HawserNodeId;
use hawser_net::session::Identity;
use hawser_raft::app::KvNode;
use hawser_raft::config::NodeConfig;
use hawser_raft::router::Router;
use hawser_raft::server::{Server, ServerConfig, Transport};
use hawser_raft::store::Storage;
use hawser_raft::types::{NodeId, Request};
use tokio::time::Instant;

use crate::raft_baseline::{BaselineNetwork, BaselineServer, NoForward};
use crate::report;

/// Nodes per cluster.
const NODES: u64 = 3;

/// Keys each client cycles through (`c<client>-<n>`): the state machine stays small, so
/// snapshots stay cheap and alike on every network.
const KEYS_PER_CLIENT: u64 = 64;

/// How long a client pauses after a failed write before trying again.
const FAILURE_PAUSE: Duration = Duration::from_millis(20);

/// The network a cluster runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftNet {
    /// hawser sessions over TCP, encrypted.
    HawserTcp,
    /// hawser sessions over LSP (UDP), encrypted.
    HawserLsp,
    /// The hand-written TCP network, plaintext.
    Baseline,
    /// Direct calls within the process.
    InProcess,
}

impl RaftNet {
    /// Every network, in the order of the table.
    pub const ALL: [RaftNet; 4] = [
        RaftNet::HawserTcp,
        RaftNet::HawserLsp,
        RaftNet::Baseline,
        RaftNet::InProcess,
    ];

    /// The row's name (also what `--only` matches).
    pub fn name(self) -> &'static str {
        match self {
            RaftNet::HawserTcp => report::RAFT_HAWSER_TCP,
            RaftNet::HawserLsp => report::RAFT_HAWSER_LSP,
            RaftNet::Baseline => report::RAFT_BASELINE,
            RaftNet::InProcess => report::RAFT_IN_PROCESS,
        }
    }

    /// What the row's network is, for the table.
    pub fn note(self) -> &'static str {
        match self {
            RaftNet::HawserTcp => "hawser, TCP, Noise (encrypted)",
            RaftNet::HawserLsp => "hawser, LSP/UDP, Noise (encrypted)",
            RaftNet::Baseline => "hand-written TCP, plaintext",
            RaftNet::InProcess => "in-process calls, no network",
        }
    }
}

/// The Raft settings of node `id` in every cluster: the crate's defaults (heartbeat 50 ms,
/// elections 150–300 ms, a snapshot per 5000 entries), spelled out so that all four match.
pub fn node_config(id: NodeId, addr: String) -> NodeConfig {
    let mut c = NodeConfig::new(id, addr);
    c.heartbeat_interval = Duration::from_millis(50);
    c.election_timeout_min = Duration::from_millis(150);
    c.election_timeout_max = Duration::from_millis(300);
    c.snapshot_logs_since_last = 5000;
    c.max_in_snapshot_log_to_keep = 1000;
    c.request_timeout = Duration::from_secs(5);
    c
}

/// What keeps a cluster's nodes reachable; dropped or stopped with the cluster.
enum Members {
    Hawser(Vec<Server>),
    Baseline(Vec<BaselineServer>),
    InProcess(Router),
}

/// Three running nodes.
pub struct Cluster {
    nodes: Vec<KvNode>,
    members: Members,
}

impl Cluster {
    /// Starts three nodes on `net`; retried on fresh ports when a port was taken meanwhile.
    pub async fn start(net: RaftNet) -> Result<Cluster> {
        let mut attempt = 1;
        loop {
            let started = match net {
                RaftNet::HawserTcp => start_hawser(Transport::Tcp).await,
                RaftNet::HawserLsp => start_hawser(Transport::Lsp).await,
                RaftNet::Baseline => start_baseline().await,
                RaftNet::InProcess => start_in_process().await,
            };
            match started {
                Err(e) if attempt < 5 => {
                    eprintln!("{} cluster, attempt {attempt}: {e:#}", net.name());
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Waits until every node names the same leader and that node leads; its handle.
    pub async fn leader(&self, limit: Duration) -> Result<KvNode> {
        let deadline = Instant::now() + limit;
        loop {
            let leaders: Vec<Option<NodeId>> =
                self.nodes.iter().map(|n| n.status().leader).collect();
            if let Some(Some(l)) = leaders.first() {
                let node = self.nodes.iter().find(|n| n.id() == *l);
                let agreed = leaders.iter().all(|x| x == &Some(*l));
                if let Some(node) = node.filter(|n| agreed && n.status().state == "Leader") {
                    return Ok(node.clone());
                }
            }
            if Instant::now() >= deadline {
                bail!("no leader within {limit:?}: {leaders:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops Raft on every node, then the network.
    pub async fn stop(self) {
        match self.members {
            Members::Hawser(servers) => {
                for s in servers {
                    s.stop().await;
                }
            }
            Members::Baseline(servers) => {
                for n in &self.nodes {
                    n.shutdown().await;
                }
                drop(servers);
            }
            Members::InProcess(router) => {
                for n in &self.nodes {
                    n.shutdown().await;
                }
                drop(router);
            }
        }
    }
}

/// A port free for TCP and UDP on 127.0.0.1 whose next port is free for UDP too (LSP).
fn free_addr() -> Result<SocketAddr> {
    for _ in 0..100 {
        let a = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let Some(next) = a.port().checked_add(1) else {
            continue;
        };
        let b = SocketAddr::new(a.ip(), next);
        if std::net::UdpSocket::bind(a).is_ok() && std::net::UdpSocket::bind(b).is_ok() {
            return Ok(a);
        }
    }
    bail!("no free port pair on 127.0.0.1")
}

async fn start_hawser(transport: Transport) -> Result<Cluster> {
    let addrs: BTreeMap<NodeId, SocketAddr> = (1..=NODES)
        .map(|id| free_addr().map(|a| (id, a)))
        .collect::<Result<_>>()?;
    // Every node pins the others' identities, as in production: a node dialled by a peer
    // answers on that peer's session.
    let identities: BTreeMap<NodeId, Arc<Identity>> = (1..=NODES)
        .map(|id| Identity::generate().map(|i| (id, Arc::new(i))))
        .collect::<Result<_, _>>()
        .context("identity")?;
    let mut servers: Vec<Server> = Vec::new();
    for (&id, &addr) in &addrs {
        let peers = addrs
            .iter()
            .filter(|(&p, _)| p != id)
            .map(|(&p, &a)| (p, a))
            .collect();
        let mut config = ServerConfig::new(id, addr, peers);
        config.raft = node_config(id, addr.to_string());
        config.transport = transport;
        // Only connection setup at start: peers not listening yet are dialed again soon.
        config.settings.connect_timeout = Duration::from_millis(500);
        config.settings.backoff_max = Duration::from_millis(200);
        config.settings.identity = identities.get(&id).cloned();
        for (&peer, identity) in identities.iter().filter(|(&p, _)| p != id) {
            config
                .settings
                .pins
                .insert(HawserNodeId(peer), vec![identity.peer_id()]);
        }
        let storage = Storage::in_memory(id).context("storage")?;
        match Server::start(config, storage).await {
            Ok(s) => servers.push(s),
            Err(e) => {
                for s in &servers {
                    s.stop().await;
                }
                return Err(anyhow!("start node {id}: {e}"));
            }
        }
    }
    // The lowest id bootstraps the cluster in the background.
    Ok(Cluster {
        nodes: servers.iter().map(|s| s.kv.clone()).collect(),
        members: Members::Hawser(servers),
    })
}

async fn start_baseline() -> Result<Cluster> {
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for id in 1..=NODES {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let storage = Storage::in_memory(id).context("storage")?;
        let network = BaselineNetwork::new(storage.identity());
        let kv = KvNode::start(
            &node_config(id, addr.to_string()),
            storage,
            network,
            Arc::new(NoForward),
        )
        .await
        .with_context(|| format!("start node {id}"))?;
        servers.push(BaselineServer::start(listener, kv.clone()));
        nodes.push(kv);
    }
    initialize(&nodes).await?;
    Ok(Cluster {
        nodes,
        members: Members::Baseline(servers),
    })
}

async fn start_in_process() -> Result<Cluster> {
    let router = Router::new();
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        let storage = Storage::in_memory(id).context("storage")?;
        let config = node_config(id, format!("in-process-{id}"));
        let kv = router
            .start_node(&config, storage)
            .await
            .with_context(|| format!("start node {id}"))?;
        nodes.push(kv);
    }
    initialize(&nodes).await?;
    Ok(Cluster {
        nodes,
        members: Members::InProcess(router),
    })
}

/// Initializes the cluster of `nodes` from the first.
async fn initialize(nodes: &[KvNode]) -> Result<()> {
    let members = nodes.iter().map(|n| (n.id(), n.node_info())).collect();
    let first = nodes.first().ok_or_else(|| anyhow!("no node"))?;
    first
        .initialize(members)
        .await
        .map_err(|e| anyhow!("initialize: {e}"))
}

/// What a load run measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Writes committed.
    pub committed: u64,
    /// Writes that failed.
    pub failed: u64,
    /// The first failure.
    pub first_failure: Option<String>,
    /// From the first write to the last answer, seconds.
    pub secs: f64,
    /// Commit latency of every committed write.
    pub samples: Vec<Duration>,
}

/// `clients` tasks write to `leader` in a loop for `duration` (each finishes the write it is
/// in); `progress` counts committed writes.
pub async fn load(
    leader: &KvNode,
    clients: u64,
    duration: Duration,
    progress: Arc<std::sync::atomic::AtomicU64>,
) -> Result<LoadResult> {
    let value = "v".repeat(report::RAFT_VALUE_BYTES);
    let start = Instant::now();
    let until = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (leader, value, progress) = (leader.clone(), value.clone(), progress.clone());
        tasks.spawn(async move {
            let mut r = LoadResult::default();
            let mut n = 0u64;
            while Instant::now() < until {
                let req = Request::Set {
                    key: format!("c{client}-{}", n % KEYS_PER_CLIENT),
                    value: value.clone(),
                };
                n += 1;
                let t = Instant::now();
                match leader.write(req).await {
                    Ok(_) => {
                        r.samples.push(t.elapsed());
                        r.committed += 1;
                        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        r.failed += 1;
                        r.first_failure.get_or_insert_with(|| e.to_string());
                        tokio::time::sleep(FAILURE_PAUSE).await;
                    }
                }
            }
            r
        });
    }
    let mut total = LoadResult::default();
    while let Some(done) = tasks.join_next().await {
        let r = done.context("client task")?;
        total.committed += r.committed;
        total.failed += r.failed;
        if total.first_failure.is_none() {
            total.first_failure = r.first_failure;
        }
        total.samples.extend(r.samples);
    }
    total.secs = start.elapsed().as_secs_f64();
    Ok(total)
}
