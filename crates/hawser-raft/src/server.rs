//! One node of the key-value store on hawser: a hawser node, a [`KvNode`] on it, its Raft
//! protocols served, and the cluster bootstrapped without a separate init step.
//!
//! Nodes started with each other as peers form one cluster: the member with the lowest id,
//! when its storage holds no log, asks every member for its node info (id, address,
//! incarnation) over hawser and, when none of them belongs to a cluster yet, initializes the
//! cluster with all of them (a lowest-id node restarted without its data finds the cluster
//! and does not start another). A node restarted
//! with its data rejoins as itself; one restarted without it has a new incarnation and is kept
//! from voting ([`crate::amnesia`]) until it is removed and added again.
//!
//! With [`Transport::Lsp`], Raft traffic travels in sessions over LSP on UDP port `PORT + 1`
//! of each node's address; the TCP port carries nothing but the session that brings the
//! datagram key, and reachability. With [`Transport::Tcp`] it travels in sessions over TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hawser_net::node::{Member, Node as HawserNode, ReliableTransport, Role, Settings};
use tracing::{info, warn};

use crate::app::{KvNode, StartError as AppStartError};
use crate::config::NodeConfig;
use crate::net::{self, HawserForward, HawserNetwork};
use crate::store::Storage;
use crate::types::NodeId;

/// Which reliable transport Raft traffic takes between nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// Sessions over TCP (the default).
    #[default]
    Tcp,
    /// Sessions over LSP on UDP, port `PORT + 1` of each node's address.
    Lsp,
}

/// How to run one node on hawser.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Raft settings of the node (id, timing, snapshot policy, request timeout).
    pub raft: NodeConfig,
    /// Where the node listens (TCP and UDP; LSP on the next port).
    pub listen: SocketAddr,
    /// Every other node: its id and address.
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Sessions over TCP or LSP.
    pub transport: Transport,
    /// The hawser node's settings (security, identity, queues, timers); the transport and
    /// the Raft protocols are set from the other fields.
    pub settings: Settings,
    /// Bootstrap the cluster from the lowest id (default `true`).
    pub bootstrap: bool,
    /// With [`Transport::Lsp`]: where this node dials a peer's LSP sessions, instead of the
    /// peer's `PORT + 1` (a relay in between, say). Default empty.
    pub lsp_routes: std::collections::BTreeMap<NodeId, SocketAddr>,
}

impl ServerConfig {
    /// Node `id` at `listen` with `peers`, over TCP, encrypted, with default Raft timing.
    pub fn new(id: NodeId, listen: SocketAddr, peers: Vec<(NodeId, SocketAddr)>) -> Self {
        ServerConfig {
            raft: NodeConfig::new(id, listen.to_string()),
            listen,
            peers,
            transport: Transport::Tcp,
            settings: Settings::default(),
            bootstrap: true,
            lsp_routes: std::collections::BTreeMap::new(),
        }
    }
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The hawser node did not start (an address in use, invalid settings).
    #[error("network: {0}")]
    Network(#[from] hawser_net::node::StartError),
    /// The Raft node did not start.
    #[error("raft: {0}")]
    Raft(#[from] AppStartError),
    /// The Raft protocols could not be served.
    #[error("serve: {0}")]
    Serve(#[from] net::ServeError),
    /// An address has no next port for LSP (port 65535).
    #[error("{0} has no next port for LSP")]
    NoLspPort(SocketAddr),
}

/// One running node: the hawser node and the key-value node on it.
#[derive(Clone)]
pub struct Server {
    /// The hawser node (for counters and reachability).
    pub network: HawserNode,
    /// The key-value node.
    pub kv: KvNode,
}

fn lsp_addr(addr: SocketAddr) -> Result<SocketAddr, ServerError> {
    let port = addr
        .port()
        .checked_add(1)
        .ok_or(ServerError::NoLspPort(addr))?;
    Ok(SocketAddr::new(addr.ip(), port))
}

fn member(id: NodeId, addr: SocketAddr, transport: Transport) -> Result<Member, ServerError> {
    let mut m = Member::new(id, Role::Member, addr);
    if transport == Transport::Lsp {
        m.lsp_addr = Some(lsp_addr(addr)?);
    }
    Ok(m)
}

impl Server {
    /// Starts the node on `storage`: binds its sockets, starts Raft, serves the Raft
    /// protocols, and (when it has the lowest id and an empty log) bootstraps the cluster in
    /// the background.
    ///
    /// # Errors
    /// [`ServerError`].
    pub async fn start(config: ServerConfig, storage: Storage) -> Result<Server, ServerError> {
        let id = config.raft.id;
        let mut settings = config.settings.clone();
        if config.transport == Transport::Lsp {
            settings.reliable = ReliableTransport::Lsp;
        }
        let mut members = vec![member(id, config.listen, config.transport)?];
        for &(peer, addr) in &config.peers {
            let mut m = member(peer, addr, config.transport)?;
            if let (Transport::Lsp, Some(route)) = (config.transport, config.lsp_routes.get(&peer))
            {
                m.lsp_addr = Some(*route);
            }
            members.push(m);
        }
        let mut builder = HawserNode::builder(id)
            .settings(settings)
            .listen(config.listen)
            .members(members);
        for p in net::protocols() {
            builder = builder.protocol(p);
        }
        if config.transport == Transport::Lsp {
            builder = builder.lsp_listen(lsp_addr(config.listen)?);
        }
        let network = builder.start().await?;
        let identity = storage.identity();
        let forward = Arc::new(HawserForward::new(
            network.clone(),
            config.raft.request_timeout,
        ));
        let kv = KvNode::start(
            &config.raft,
            storage,
            HawserNetwork::new(network.clone(), identity),
            forward.clone(),
        )
        .await?;
        net::serve(&network, kv.clone())?;
        let lowest = config.peers.iter().map(|p| p.0).chain([id]).min() == Some(id);
        if config.bootstrap && lowest {
            let mut all: Vec<NodeId> = config.peers.iter().map(|p| p.0).collect();
            all.push(id);
            all.sort_unstable();
            tokio::spawn(bootstrap(kv.clone(), forward, all));
        }
        info!(node = id, listen = %config.listen, transport = ?config.transport, "raft node started");
        Ok(Server { network, kv })
    }

    /// Tells the hawser node of another node (before Raft adds it as a learner).
    ///
    /// # Errors
    /// The membership refused it (too many nodes or addresses).
    pub fn add_peer(
        &self,
        id: NodeId,
        addr: SocketAddr,
        transport: Transport,
    ) -> Result<(), ServerError> {
        let m = member(id, addr, transport)?;
        self.network
            .change_membership(hawser_net::node::MembershipChange::Add(m))
            .map_err(|e| ServerError::Network(e.into()))
    }

    /// Stops the hawser node (no request reaches Raft any more), then Raft.
    pub async fn stop(&self) {
        self.network.stop().await;
        self.kv.shutdown().await;
    }
}

/// How long the bootstrapping node waits for every member's info.
const BOOTSTRAP_WAIT: Duration = Duration::from_secs(60);

/// Initializes the cluster from this node when its log is empty.
async fn bootstrap(kv: KvNode, forward: Arc<HawserForward>, members: Vec<NodeId>) {
    match kv.raft().is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            warn!(node = kv.id(), %e, "cannot tell whether the cluster exists");
            return;
        }
    }
    let infos = match net::gather_members(&forward, &members, BOOTSTRAP_WAIT).await {
        Ok(net::Gathered::Fresh(infos)) => infos,
        Ok(net::Gathered::Initialized(member)) => {
            info!(
                node = kv.id(),
                member, "a cluster exists: not bootstrapping"
            );
            return;
        }
        Err(e) => {
            warn!(node = kv.id(), %e, "bootstrap: not every member answered");
            return;
        }
    };
    match kv.initialize(infos).await {
        Ok(()) => info!(node = kv.id(), ?members, "cluster initialized"),
        Err(e) => warn!(node = kv.id(), %e, "bootstrap: initialize refused"),
    }
}
