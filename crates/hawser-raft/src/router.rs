//! An in-process network: openraft RPCs and forwarded client requests as direct calls.
//!
//! [`Router`] holds every registered [`KvNode`] of one process. Its openraft network
//! ([`RouterNetwork`], a `RaftNetworkFactory`) calls the target node's `Raft` handle directly,
//! without serializing anything; its [`Forward`] implementation calls the leader's
//! [`KvNode::write_local`] / [`KvNode::read_local`]. It is the ceiling a real network is measured
//! against, and the network the crate's tests run on.
//!
//! Fault injection: [`Router::set_down`] makes a node unreachable from and to every other node
//! (it keeps running, like a node behind a dead link), and [`Router::cut`] cuts one link in both
//! directions. A request whose link breaks while the target handles it loses its answer. Every
//! failure reaches openraft as `Unreachable`, or as `Timeout` past the RPC's deadline.
//!
//! Every request passes the target's amnesia checks ([`crate::amnesia`]) with the incarnation
//! the membership records for the target and, for votes, the sender's identity, as the hawser
//! adapter does: it goes through [`KvNode::handle_append`], [`KvNode::handle_vote`] or
//! [`KvNode::handle_snapshot`]. A refusal reaches openraft as `Unreachable`.
//!
//! Replication uses openraft's default `stream_append`, which sends one append request at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use openraft::errors::{
    RPCError, ReplicationClosed, StreamingError, Timeout as RpcTimeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes, RaftNetworkV2};

use crate::app::{KvNode, ReadError, StartError, WriteError};
use crate::config::NodeConfig;
use crate::forward::{Forward, ForwardError, ForwardFuture};
use crate::identity::Identity;
use crate::store::Storage;
use crate::types::{Incarnation, Node, NodeId, Request, Response, Snapshot, TypeConfig, Vote};

#[derive(Default)]
struct State {
    nodes: BTreeMap<NodeId, KvNode>,
    down: BTreeSet<NodeId>,
    /// Cut links, each stored as (smaller id, larger id).
    cut: BTreeSet<(NodeId, NodeId)>,
}

impl State {
    fn reachable(&self, from: NodeId, to: NodeId) -> bool {
        let link = (from.min(to), from.max(to));
        !self.down.contains(&from) && !self.down.contains(&to) && !self.cut.contains(&link)
    }
}

/// The in-process network of one process's nodes. Cheap to clone.
#[derive(Clone, Default)]
pub struct Router {
    state: Arc<Mutex<State>>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Starts a node on this router and registers it.
    ///
    /// # Errors
    ///
    /// See [`StartError`].
    pub async fn start_node(
        &self,
        config: &NodeConfig,
        storage: Storage,
    ) -> Result<KvNode, StartError> {
        let identity = storage.identity();
        let node = KvNode::start(
            config,
            storage,
            self.network(identity),
            self.forwarder(identity.id),
        )
        .await?;
        self.register(node.clone());
        Ok(node)
    }

    /// The openraft network factory of the node `me`.
    pub fn network(&self, me: Identity) -> RouterNetwork {
        RouterNetwork {
            state: Arc::downgrade(&self.state),
            me,
        }
    }

    /// The [`Forward`] implementation of the node `me`.
    pub fn forwarder(&self, me: NodeId) -> Arc<dyn Forward> {
        Arc::new(RouterForward {
            state: Arc::downgrade(&self.state),
            me,
        })
    }

    /// Registers `node`, replacing a node with the same id.
    pub fn register(&self, node: KvNode) {
        self.lock().nodes.insert(node.id(), node);
    }

    /// Unregisters and returns node `id`; it becomes unreachable.
    pub fn unregister(&self, id: NodeId) -> Option<KvNode> {
        self.lock().nodes.remove(&id)
    }

    /// The registered node `id`.
    pub fn node(&self, id: NodeId) -> Option<KvNode> {
        self.lock().nodes.get(&id).cloned()
    }

    /// The registered node ids.
    pub fn ids(&self) -> Vec<NodeId> {
        self.lock().nodes.keys().copied().collect()
    }

    /// Makes node `id` unreachable from and to every node (`true`), or reachable again.
    pub fn set_down(&self, id: NodeId, down: bool) {
        let mut state = self.lock();
        if down {
            state.down.insert(id);
        } else {
            state.down.remove(&id);
        }
    }

    /// Cuts (`true`) or restores the link between `a` and `b`, both directions.
    pub fn cut(&self, a: NodeId, b: NodeId, cut: bool) {
        let link = (a.min(b), a.max(b));
        let mut state = self.lock();
        if cut {
            state.cut.insert(link);
        } else {
            state.cut.remove(&link);
        }
    }

    /// Restores every node and link.
    pub fn heal(&self) {
        let mut state = self.lock();
        state.down.clear();
        state.cut.clear();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The router's state stays consistent across a panic (every update is one insert/remove).
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves `to` as seen from `from`, or `None` when it is not registered or not reachable.
fn resolve(state: &Weak<Mutex<State>>, from: NodeId, to: NodeId) -> Option<KvNode> {
    let state = state.upgrade()?;
    let state = lock(&state);
    if !state.reachable(from, to) {
        return None;
    }
    state.nodes.get(&to).cloned()
}

fn still_reachable(state: &Weak<Mutex<State>>, from: NodeId, to: NodeId) -> bool {
    resolve(state, from, to).is_some()
}

/// The openraft network factory of one node on a [`Router`].
pub struct RouterNetwork {
    state: Weak<Mutex<State>>,
    me: Identity,
}

impl RaftNetworkFactory<TypeConfig> for RouterNetwork {
    type Network = RouterConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        RouterConnection {
            state: self.state.clone(),
            me: self.me,
            target,
            target_incarnation: node.incarnation,
        }
    }
}

/// One node's client for one target on a [`Router`].
pub struct RouterConnection {
    state: Weak<Mutex<State>>,
    me: Identity,
    target: NodeId,
    target_incarnation: Incarnation,
}

impl RouterConnection {
    fn unreachable(&self, why: &str) -> Unreachable<TypeConfig> {
        Unreachable::from_string(format!("node {} from {}: {why}", self.target, self.me.id))
    }

    fn timeout(&self, action: RPCTypes, option: &RPCOption) -> RpcTimeout<TypeConfig> {
        RpcTimeout {
            action,
            id: self.me.id,
            target: self.target,
            timeout: option.hard_ttl(),
        }
    }

    /// Runs `call` on the target within the deadline, dropping the answer if the link broke.
    async fn call<T, E, F, Fut>(
        &self,
        action: RPCTypes,
        option: &RPCOption,
        call: F,
    ) -> Result<T, RPCError<TypeConfig>>
    where
        E: std::error::Error + 'static,
        F: FnOnce(KvNode) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let node = resolve(&self.state, self.me.id, self.target)
            .ok_or_else(|| self.unreachable("down"))?;
        let answer = tokio::time::timeout(option.hard_ttl(), call(node))
            .await
            .map_err(|_| RPCError::Timeout(self.timeout(action, option)))?;
        if !still_reachable(&self.state, self.me.id, self.target) {
            return Err(self.unreachable("link broke").into());
        }
        answer.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for RouterConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let addressed = self.target_incarnation;
        self.call(RPCTypes::AppendEntries, &option, |node| async move {
            node.handle_append(addressed, rpc).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let (me, addressed) = (self.me, self.target_incarnation);
        self.call(RPCTypes::Vote, &option, |node| async move {
            node.handle_vote(&me, addressed, rpc, false).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let (me, addressed) = (self.me, self.target_incarnation);
        self.call(RPCTypes::Vote, &option, |node| async move {
            node.handle_vote(&me, addressed, rpc, true).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let addressed = self.target_incarnation;
        let install = self.call(RPCTypes::InstallSnapshot, &option, |node| async move {
            node.handle_snapshot(addressed, vote, snapshot).await
        });
        tokio::select! {
            answer = install => answer.map_err(|e| match e {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                other => StreamingError::Unreachable(Unreachable::new(&other)),
            }),
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// The [`Forward`] implementation of one node on a [`Router`].
struct RouterForward {
    state: Weak<Mutex<State>>,
    me: NodeId,
}

impl Forward for RouterForward {
    fn forward_write(&self, leader: NodeId, req: Request) -> ForwardFuture<'_, Response> {
        Box::pin(async move {
            let node =
                resolve(&self.state, self.me, leader).ok_or(ForwardError::Unreachable(leader))?;
            let answer = node.write_local(req).await;
            if !still_reachable(&self.state, self.me, leader) {
                return Err(ForwardError::Timeout(leader));
            }
            answer.map_err(|e| match e {
                WriteError::NotLeader { leader } => ForwardError::NotLeader { leader },
                WriteError::NoLeader => ForwardError::NotLeader { leader: None },
                WriteError::Timeout | WriteError::Discarded => ForwardError::Timeout(leader),
                other => ForwardError::Failed(other.to_string()),
            })
        })
    }

    fn forward_read(&self, leader: NodeId, key: String) -> ForwardFuture<'_, Option<String>> {
        Box::pin(async move {
            let node =
                resolve(&self.state, self.me, leader).ok_or(ForwardError::Unreachable(leader))?;
            let answer = node.read_local(&key).await;
            if !still_reachable(&self.state, self.me, leader) {
                return Err(ForwardError::Timeout(leader));
            }
            answer.map_err(|e| match e {
                ReadError::NotLeader { leader } => ForwardError::NotLeader { leader },
                ReadError::NoLeader => ForwardError::NotLeader { leader: None },
                ReadError::QuorumLost => ForwardError::QuorumLost,
                ReadError::Timeout => ForwardError::Timeout(leader),
                other => ForwardError::Failed(other.to_string()),
            })
        })
    }
}
