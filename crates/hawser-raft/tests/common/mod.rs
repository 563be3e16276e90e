//! A test cluster on the in-process router.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hawser_raft::app::KvNode;
use hawser_raft::config::NodeConfig;
use hawser_raft::router::Router;
use hawser_raft::store::{Storage, StoreError};
use hawser_raft::types::{Node, NodeId, Request};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

/// Fast Raft timing for tests: 50 ms heartbeats, 150–300 ms election timeouts.
pub fn test_config(id: NodeId) -> NodeConfig {
    let mut c = NodeConfig::new(id, format!("node-{id}"));
    c.request_timeout = Duration::from_secs(2);
    c
}

/// Where a node keeps its data.
pub enum Mode {
    /// redb's in-memory backend; the `Storage` survives a restart inside the test.
    InMemory,
    /// A directory under this temp dir per node.
    Durable(tempfile::TempDir),
}

/// A cluster of nodes on one router.
pub struct Cluster {
    pub router: Router,
    pub mode: Mode,
    pub configs: BTreeMap<NodeId, NodeConfig>,
    storages: BTreeMap<NodeId, Storage>,
}

impl Cluster {
    /// Starts nodes `1..=n` and initializes them as one cluster with node 1.
    pub async fn start(n: u64, durable: bool, tweak: impl Fn(&mut NodeConfig)) -> Self {
        let mode = if durable {
            Mode::Durable(tempfile::tempdir().expect("temp dir"))
        } else {
            Mode::InMemory
        };
        let mut cluster = Cluster {
            router: Router::new(),
            mode,
            configs: BTreeMap::new(),
            storages: BTreeMap::new(),
        };
        for id in 1..=n {
            let mut config = test_config(id);
            tweak(&mut config);
            cluster.configs.insert(id, config);
            cluster.boot(id).await;
        }
        let members: BTreeMap<NodeId, Node> = (1..=n)
            .map(|id| (id, cluster.node(id).node_info()))
            .collect();
        cluster
            .node(1)
            .initialize(members)
            .await
            .expect("initialize");
        cluster.leader(Duration::from_secs(3)).await;
        cluster
    }

    pub fn dir(&self, id: NodeId) -> Option<PathBuf> {
        match &self.mode {
            Mode::InMemory => None,
            Mode::Durable(d) => Some(d.path().join(format!("n{id}"))),
        }
    }

    /// Starts node `id` on its storage (opening it again in durable mode).
    pub async fn boot(&mut self, id: NodeId) -> KvNode {
        let storage = match self.dir(id) {
            None => match self.storages.get(&id) {
                Some(s) => s.clone(),
                None => Storage::in_memory(id).expect("storage"),
            },
            Some(dir) => open_retrying(&dir, id).await,
        };
        if self.dir(id).is_none() {
            self.storages.insert(id, storage.clone());
        }
        let config = self.configs[&id].clone();
        self.router
            .start_node(&config, storage)
            .await
            .expect("start node")
    }

    /// Starts node `id` on fresh, empty storage: the node lost its data.
    pub async fn boot_wiped(&mut self, id: NodeId) -> KvNode {
        if let Some(dir) = self.dir(id) {
            std::fs::remove_dir_all(&dir).expect("wipe");
        }
        self.storages.remove(&id);
        self.boot(id).await
    }

    /// Stops node `id` and removes it from the router.
    pub async fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.router.unregister(id) {
            node.shutdown().await;
        }
    }

    pub fn node(&self, id: NodeId) -> KvNode {
        self.router.node(id).expect("node registered")
    }

    /// Waits until one registered, reachable node is leader and every registered node that can
    /// reach it agrees; returns its id.
    pub async fn leader(&self, limit: Duration) -> NodeId {
        self.leader_among(&self.router.ids(), limit)
            .await
            .expect("a leader in time")
    }

    /// Waits until one of `ids` is leader (as it says itself); `None` when `limit` passes.
    pub async fn leader_among(&self, ids: &[NodeId], limit: Duration) -> Option<NodeId> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            for id in ids {
                if let Some(node) = self.router.node(*id) {
                    let m = node.raft().metrics().borrow_watched().clone();
                    if m.state == ServerState::Leader && m.current_leader == Some(*id) {
                        return Some(*id);
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn applied(&self, id: NodeId, index: u64, limit: Duration) {
        self.node(id)
            .raft()
            .wait(Some(limit))
            .applied_index_at_least(Some(index), "applied")
            .await
            .expect("applied in time");
    }
}

/// Opens durable storage, waiting while the previous run's handles are still being dropped.
pub async fn open_retrying(dir: &std::path::Path, id: NodeId) -> Storage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match Storage::open(dir, id) {
            Ok(s) => return s,
            Err(StoreError::Locked(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("open storage: {e}"),
        }
    }
}

pub fn set(key: &str, value: &str) -> Request {
    Request::Set {
        key: key.to_owned(),
        value: value.to_owned(),
    }
}

/// Bounds a test body in time.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test took too long")
}
