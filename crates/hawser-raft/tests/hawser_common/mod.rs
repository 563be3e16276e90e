//! A key-value cluster on hawser in one process: every node on 127.0.0.1, its own ports.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hawser_net::node::NodeId as HawserNodeId;
use hawser_net::session::Identity;

use hawser_raft::config::NodeConfig;
use hawser_raft::server::{Server, ServerConfig, Transport};
use hawser_raft::store::Storage;
use hawser_raft::types::NodeId;

/// Runs `f` under a 120 s bound.
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("test timed out");
}

/// Polls `cond` every 20 ms until it holds, or panics after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free port on 127.0.0.1 for TCP and UDP (and UDP on the next one, for LSP), below Linux's
/// ephemeral range so that no `:0` socket of a test running alongside takes it.
pub fn free_addr() -> SocketAddr {
    loop {
        let port = fastrand::u16(20_000..32_000);
        let a: SocketAddr = ([127, 0, 0, 1], port).into();
        let b: SocketAddr = ([127, 0, 0, 1], port + 1).into();
        if std::net::TcpListener::bind(a).is_ok()
            && std::net::UdpSocket::bind(a).is_ok()
            && std::net::UdpSocket::bind(b).is_ok()
        {
            return a;
        }
    }
}

/// Nodes of one cluster, their addresses and data.
pub struct HawserCluster {
    pub transport: Transport,
    pub addrs: BTreeMap<NodeId, SocketAddr>,
    pub servers: BTreeMap<NodeId, Server>,
    pub configs: BTreeMap<NodeId, NodeConfig>,
    storages: BTreeMap<NodeId, Storage>,
    dir: Option<tempfile::TempDir>,
    /// Each node's session identity, kept across restarts and pinned by every node started
    /// after it is known (as in production: pinned peers share one session both ways).
    identities: BTreeMap<NodeId, Arc<Identity>>,
}

fn new_identity() -> Arc<Identity> {
    Arc::new(Identity::generate().expect("an identity"))
}

/// Test Raft timing: 50 ms heartbeats, 150-300 ms elections, 5 s client deadline.
pub fn raft_config(id: NodeId, addr: SocketAddr) -> NodeConfig {
    let mut c = NodeConfig::new(id, addr.to_string());
    c.request_timeout = Duration::from_secs(5);
    c
}

impl HawserCluster {
    /// Starts nodes `1..=n` (in memory, or each in a data directory when `durable`); node 1
    /// bootstraps the cluster.
    pub async fn start(
        n: u64,
        transport: Transport,
        durable: bool,
        tweak: impl Fn(&mut NodeConfig),
    ) -> HawserCluster {
        let mut c = HawserCluster {
            transport,
            addrs: (1..=n).map(|id| (id, free_addr())).collect(),
            servers: BTreeMap::new(),
            configs: BTreeMap::new(),
            storages: BTreeMap::new(),
            dir: durable.then(|| tempfile::tempdir().expect("temp dir")),
            identities: (1..=n).map(|id| (id, new_identity())).collect(),
        };
        for id in 1..=n {
            let mut config = raft_config(id, c.addrs[&id]);
            tweak(&mut config);
            c.configs.insert(id, config);
        }
        for id in 1..=n {
            c.boot(id).await;
        }
        c
    }

    fn storage(&mut self, id: NodeId) -> Storage {
        match &self.dir {
            Some(dir) => {
                // A stopped node's last handles may still be dropping: redb opens a file once.
                let path = dir.path().join(format!("n{id}"));
                let mut tries = 0;
                loop {
                    match Storage::open(&path, id) {
                        Ok(s) => break s,
                        Err(e) if tries < 100 => {
                            tries += 1;
                            if tries == 1 {
                                eprintln!("open {id}: {e}; retrying");
                            }
                            std::thread::sleep(Duration::from_millis(30));
                        }
                        Err(e) => panic!("open {id}: {e}"),
                    }
                }
            }
            None => self
                .storages
                .entry(id)
                .or_insert_with(|| Storage::in_memory(id).expect("storage"))
                .clone(),
        }
    }

    /// Starts (or restarts) node `id` on its storage.
    pub async fn boot(&mut self, id: NodeId) -> Server {
        let storage = self.storage(id);
        let peers = self
            .addrs
            .iter()
            .filter(|(&p, _)| p != id)
            .map(|(&p, &a)| (p, a))
            .collect();
        let mut config = ServerConfig::new(id, self.addrs[&id], peers);
        config.raft = self.configs[&id].clone();
        config.transport = self.transport;
        config.settings.connect_timeout = Duration::from_millis(500);
        config.settings.backoff_max = Duration::from_millis(200);
        self.pin(id, &mut config);
        let server = loop {
            // A restarted node's ports may linger a moment after its stop.
            match Server::start(config.clone(), storage.clone()).await {
                Ok(s) => break s,
                Err(e) => {
                    eprintln!("start {id}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.servers.insert(id, server.clone());
        server
    }

    /// Adds node `id` at a fresh address, told of every node and every node of it.
    pub async fn add_node(&mut self, id: NodeId) -> Server {
        let addr = free_addr();
        self.addrs.insert(id, addr);
        self.configs.insert(id, raft_config(id, addr));
        for s in self.servers.values() {
            s.add_peer(id, addr, self.transport).unwrap();
        }
        let mut config = ServerConfig::new(
            id,
            addr,
            self.addrs
                .iter()
                .filter(|(&p, _)| p != id)
                .map(|(&p, &a)| (p, a))
                .collect(),
        );
        config.raft = self.configs[&id].clone();
        config.transport = self.transport;
        config.bootstrap = false;
        self.identities.insert(id, new_identity());
        self.pin(id, &mut config);
        let storage = self.storage(id);
        let server = Server::start(config, storage).await.expect("start");
        self.servers.insert(id, server.clone());
        server
    }

    /// Gives node `id` its identity and pins every other known node's.
    fn pin(&self, id: NodeId, config: &mut ServerConfig) {
        config.settings.identity = self.identities.get(&id).cloned();
        for (&peer, identity) in &self.identities {
            if peer != id {
                config
                    .settings
                    .pins
                    .insert(HawserNodeId(peer), vec![identity.peer_id()]);
            }
        }
    }

    /// Stops node `id` (its storage stays).
    pub async fn crash(&mut self, id: NodeId) {
        if let Some(s) = self.servers.remove(&id) {
            s.stop().await;
        }
    }

    /// Deletes node `id`'s data (it must be stopped).
    pub fn wipe(&mut self, id: NodeId) {
        match &self.dir {
            Some(dir) => std::fs::remove_dir_all(dir.path().join(format!("n{id}"))).expect("wipe"),
            None => {
                self.storages.remove(&id);
            }
        }
    }

    pub fn server(&self, id: NodeId) -> Server {
        self.servers[&id].clone()
    }

    /// Waits until the running nodes agree on one leader among them; its id.
    pub async fn leader(&self, limit: Duration) -> NodeId {
        let ids: Vec<NodeId> = self.servers.keys().copied().collect();
        self.leader_among(&ids, limit).await
    }

    /// Waits until the nodes `ids` agree on one leader among them; its id.
    pub async fn leader_among(&self, ids: &[NodeId], limit: Duration) -> NodeId {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let leaders: Vec<Option<NodeId>> = ids
                .iter()
                .filter_map(|id| self.servers.get(id))
                .map(|s| s.kv.status().leader)
                .collect();
            if let Some(Some(l)) = leaders.first() {
                let me = self.servers.get(l).map(|s| s.kv.status());
                let agreed = leaders.iter().all(|x| *x == Some(*l));
                if agreed && ids.contains(l) && me.is_some_and(|m| m.state == "Leader") {
                    return *l;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader among {ids:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<NodeId> = self.servers.keys().copied().collect();
        for id in ids {
            self.crash(id).await;
        }
    }
}
