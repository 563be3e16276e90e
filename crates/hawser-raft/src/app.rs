//! The key-value application: one node's Raft handle, state machine view and forwarding seam.
//!
//! [`KvNode::start`] builds a node from a [`NodeConfig`], a [`Storage`], an openraft network
//! factory and a [`Forward`] implementation. Clients call [`KvNode::write`] and
//! [`KvNode::read`] on any node; a follower forwards to the leader through [`Forward`], whose
//! receiving side calls [`KvNode::write_local`] / [`KvNode::read_local`] on the leader.
//!
//! Reads are linearizable: the node confirms its leadership with a quorum (openraft's
//! `ReadIndex` policy) and waits until its state machine has applied up to the read index before
//! reading it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::network::{NetSnapshot, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{ConfigError, ReadPolicy};
use serde::{Deserialize, Serialize};

use crate::amnesia::{self, Refused};
use crate::config::NodeConfig;
use crate::forward::{Forward, ForwardError};
use crate::identity::Identity;
use crate::store::{KvView, StateMachine, Storage, StoreError};
use crate::types::{Incarnation, Node, NodeId, Request, Response, TypeConfig};

/// The openraft handle of a node.
pub type KvRaft = openraft::Raft<TypeConfig, StateMachine>;

/// Pause between attempts while a node waits for a leader to be known.
const LEADER_POLL: Duration = Duration::from_millis(20);

/// Attempts of a linearizable read that fail for want of a quorum before the read fails.
const QUORUM_RETRIES: u32 = 5;

/// One node of the replicated key-value store. Cheap to clone.
#[derive(Clone)]
pub struct KvNode {
    inner: Arc<Inner>,
}

struct Inner {
    raft: KvRaft,
    identity: Identity,
    addr: String,
    view: KvView,
    forward: Arc<dyn Forward>,
    request_timeout: Duration,
    gate: tokio::task::JoinHandle<()>,
}

/// Why a Raft request from the network was not handled ([`KvNode::handle_append`],
/// [`KvNode::handle_vote`], [`KvNode::handle_snapshot`]); a network answers it with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Handle {
    /// The amnesia rule refused it ([`crate::amnesia`]).
    #[error("refused: {0}")]
    Refused(#[from] Refused),
    /// openraft failed (it is shutting down, or storage failed).
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// openraft rejected the configuration.
    #[error("raft config: {0}")]
    Config(#[from] ConfigError),
    /// The storage could not be read.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The storage belongs to another node id.
    #[error("storage belongs to node {storage}, config names node {config}")]
    WrongNode {
        /// The id in the storage.
        storage: NodeId,
        /// The id in the config.
        config: NodeId,
    },
    /// openraft failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a write failed. Outcome-unknown variants say so.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No leader is known.
    #[error("no leader")]
    NoLeader,
    /// This node is not the leader and was asked not to forward.
    #[error("not the leader; leader is {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// Forwarding to the leader failed.
    #[error("forwarding to the leader: {0}")]
    Forward(ForwardError),
    /// The entry was appended but then discarded by a leader change; it may still commit.
    #[error("leader changed; outcome unknown")]
    Discarded,
    /// The write did not finish within the request timeout; outcome unknown.
    #[error("timed out; outcome unknown")]
    Timeout,
    /// openraft refused the request.
    #[error("rejected: {0}")]
    Rejected(String),
    /// The node stopped.
    #[error("node stopped: {0}")]
    Stopped(String),
}

/// Why a linearizable read failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// No leader is known.
    #[error("no leader")]
    NoLeader,
    /// This node is not the leader and was asked not to forward.
    #[error("not the leader; leader is {leader:?}")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The leader could not confirm its leadership with a quorum.
    #[error("quorum lost")]
    QuorumLost,
    /// Forwarding to the leader failed.
    #[error("forwarding to the leader: {0}")]
    Forward(ForwardError),
    /// The read did not finish within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The node stopped.
    #[error("node stopped: {0}")]
    Stopped(String),
}

/// Why a membership operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// openraft refused or failed the operation.
    #[error("{0}")]
    Raft(String),
    /// The operation did not finish within the request timeout.
    #[error("timed out")]
    Timeout,
}

/// One member as [`Status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemberStatus {
    /// The node id.
    pub id: NodeId,
    /// Its address.
    pub addr: String,
    /// The incarnation it was added with.
    pub incarnation: Incarnation,
    /// Whether it votes (otherwise a learner).
    pub voter: bool,
}

/// A node's view of itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// This node's id.
    pub id: NodeId,
    /// This node's incarnation.
    pub incarnation: Incarnation,
    /// Leader, Follower, Candidate, Learner or Shutdown.
    pub state: String,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// The index of the last applied entry.
    pub last_applied: Option<u64>,
    /// The index of the last log entry.
    pub last_log_index: Option<u64>,
    /// Whether the amnesia rule lets this node vote ([`crate::amnesia`]).
    pub may_vote: bool,
    /// The effective membership.
    pub members: Vec<MemberStatus>,
}

impl KvNode {
    /// Starts a node: opens its state machine from `storage`, starts openraft over `network`,
    /// and applies the amnesia rule's election gate.
    ///
    /// # Errors
    ///
    /// See [`StartError`].
    pub async fn start<N>(
        config: &NodeConfig,
        storage: Storage,
        network: N,
        forward: Arc<dyn Forward>,
    ) -> Result<Self, StartError>
    where
        N: RaftNetworkFactory<TypeConfig>,
        N::Network: NetSnapshot<TypeConfig, SnapshotData = Vec<u8>>,
    {
        let raft_config = config.raft_config()?;
        let identity = storage.identity();
        if identity.id != config.id {
            return Err(StartError::WrongNode {
                storage: identity.id,
                config: config.id,
            });
        }
        let sm = storage.state_machine()?;
        let view = sm.view();
        let raft = KvRaft::build(config.id, raft_config, network, storage.log_store(), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let allowed = may_vote_now(&raft, &identity);
        raft.runtime_config().elect(allowed);
        raft.run();
        let gate = tokio::spawn(election_gate(raft.clone(), identity, allowed));
        Ok(Self {
            inner: Arc::new(Inner {
                raft,
                identity,
                addr: config.addr.clone(),
                view,
                forward,
                request_timeout: config.request_timeout,
                gate,
            }),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.identity.id
    }

    /// This node's identity.
    pub fn identity(&self) -> Identity {
        self.inner.identity
    }

    /// What the membership should record for this node.
    pub fn node_info(&self) -> Node {
        Node {
            addr: self.inner.addr.clone(),
            incarnation: self.inner.identity.incarnation,
        }
    }

    /// The openraft handle, for the network adapter's incoming RPCs and for metrics.
    pub fn raft(&self) -> &KvRaft {
        &self.inner.raft
    }

    /// A view of the state machine (not linearizable on its own).
    pub fn view(&self) -> &KvView {
        &self.inner.view
    }

    /// Whether this node may vote and campaign now (see [`crate::amnesia`]).
    pub fn may_vote(&self) -> bool {
        may_vote_now(&self.inner.raft, &self.inner.identity)
    }

    /// Checks an incoming append or snapshot request addressed to incarnation `addressed`; the
    /// network adapter calls it before handing the request to openraft.
    ///
    /// # Errors
    ///
    /// [`Refused::AddressedToOther`]; the adapter answers with an error.
    pub fn check_addressed(&self, addressed: Incarnation) -> Result<(), Refused> {
        amnesia::check_addressed(&self.inner.identity, addressed)
    }

    /// Checks an incoming vote or pre-vote request from `from`, addressed to incarnation
    /// `addressed`; the network adapter calls it before handing the request to openraft.
    ///
    /// # Errors
    ///
    /// The [`Refused`] reason; the adapter answers with an error instead of a vote.
    pub fn check_vote_request(
        &self,
        from: &Identity,
        addressed: Incarnation,
    ) -> Result<(), Refused> {
        let membership = self.current_membership();
        let recorded = |id| membership.get_node(&id).map(|n| n.incarnation);
        amnesia::check_vote_request(recorded, &self.inner.identity, from, addressed)
    }

    /// An append from the network, addressed to incarnation `addressed`: checked
    /// ([`check_addressed`](Self::check_addressed)), then handed to openraft. Every network
    /// calls this (never `Raft::append_entries` directly), so none can skip the check.
    ///
    /// # Errors
    /// [`Handle::Refused`] by the amnesia rule, or [`Handle::Raft`].
    pub async fn handle_append(
        &self,
        addressed: Incarnation,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, Handle> {
        self.check_addressed(addressed)?;
        let r = self.inner.raft.append_entries(rpc).await;
        r.map_err(|e| Handle::Raft(e.to_string()))
    }

    /// A vote (`pre_vote` false) or pre-vote request from `from`, addressed to `addressed`:
    /// checked ([`check_vote_request`](Self::check_vote_request)), then handed to openraft.
    ///
    /// # Errors
    /// [`Handle::Refused`] by the amnesia rule, or [`Handle::Raft`].
    pub async fn handle_vote(
        &self,
        from: &Identity,
        addressed: Incarnation,
        rpc: VoteRequest<TypeConfig>,
        pre_vote: bool,
    ) -> Result<VoteResponse<TypeConfig>, Handle> {
        self.check_vote_request(from, addressed)?;
        let raft = &self.inner.raft;
        let r = if pre_vote {
            raft.pre_vote(rpc).await
        } else {
            raft.vote(rpc).await
        };
        r.map_err(|e| Handle::Raft(e.to_string()))
    }

    /// A whole snapshot from the leader, addressed to `addressed`: checked, then installed.
    ///
    /// # Errors
    /// [`Handle::Refused`] by the amnesia rule, or [`Handle::Raft`].
    pub async fn handle_snapshot(
        &self,
        addressed: Incarnation,
        vote: crate::types::Vote,
        snapshot: crate::types::Snapshot,
    ) -> Result<SnapshotResponse<TypeConfig>, Handle> {
        self.check_addressed(addressed)?;
        let r = self.inner.raft.install_full_snapshot(vote, snapshot).await;
        r.map_err(|e| Handle::Raft(e.to_string()))
    }

    fn current_membership(&self) -> openraft::Membership<NodeId, Node> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow_watched();
        m.membership_config.membership().clone()
    }

    /// Makes a single node cluster or the initial cluster of `members`; call it on one node.
    ///
    /// # Errors
    ///
    /// When openraft refuses, e.g. because the node is already initialized.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Node>) -> Result<(), AdminError> {
        self.inner
            .raft
            .initialize(members)
            .await
            .map_err(|e| AdminError::Raft(e.to_string()))
    }

    /// Adds a learner and waits until it has caught up; call it on the leader.
    ///
    /// # Errors
    ///
    /// When this node is not the leader, openraft refuses, or the timeout passes.
    pub async fn add_learner(&self, id: NodeId, node: Node) -> Result<(), AdminError> {
        let fut = self.inner.raft.add_learner(id, node, true);
        match tokio::time::timeout(self.inner.request_timeout, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(AdminError::Raft(e.to_string())),
            Err(_) => Err(AdminError::Timeout),
        }
    }

    /// Makes `voters` the voter set; members not in it are removed. Call it on the leader.
    ///
    /// # Errors
    ///
    /// When this node is not the leader, openraft refuses, or the timeout passes.
    pub async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), AdminError> {
        let fut = self.inner.raft.change_membership(voters, false);
        match tokio::time::timeout(self.inner.request_timeout, fut).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(AdminError::Raft(e.to_string())),
            Err(_) => Err(AdminError::Timeout),
        }
    }

    /// Commits `req`, forwarding it to the leader when this node is not the leader.
    ///
    /// # Errors
    ///
    /// See [`WriteError`]; [`WriteError::Timeout`], [`WriteError::Discarded`] and some
    /// [`WriteError::Forward`] errors leave the outcome unknown.
    pub async fn write(&self, req: Request) -> Result<Response, WriteError> {
        let fut = self.write_inner(req, true);
        tokio::time::timeout(self.inner.request_timeout, fut)
            .await
            .unwrap_or(Err(WriteError::Timeout))
    }

    /// Commits `req` on this node if it is the leader; the receiving side of [`Forward`].
    ///
    /// # Errors
    ///
    /// As [`KvNode::write`]; [`WriteError::NotLeader`] instead of forwarding.
    pub async fn write_local(&self, req: Request) -> Result<Response, WriteError> {
        let fut = self.write_inner(req, false);
        tokio::time::timeout(self.inner.request_timeout, fut)
            .await
            .unwrap_or(Err(WriteError::Timeout))
    }

    async fn write_inner(&self, req: Request, may_forward: bool) -> Result<Response, WriteError> {
        loop {
            let err = match self.inner.raft.client_write(req.clone()).await {
                Ok(resp) => return Ok(resp.data),
                Err(RaftError::Fatal(f)) => return Err(WriteError::Stopped(f.to_string())),
                Err(RaftError::APIError(e)) => e,
            };
            let leader = match err {
                ClientWriteError::ForwardToLeader(f) => f.leader_id,
                ClientWriteError::LogEntryDiscarded(_) => return Err(WriteError::Discarded),
                other => return Err(WriteError::Rejected(other.to_string())),
            };
            match leader {
                Some(l) if l != self.id() && may_forward => {
                    return self
                        .inner
                        .forward
                        .forward_write(l, req)
                        .await
                        .map_err(WriteError::Forward);
                }
                Some(l) if l != self.id() => return Err(WriteError::NotLeader { leader: Some(l) }),
                None if !may_forward => return Err(WriteError::NotLeader { leader: None }),
                // No leader known, or this node is becoming or leaving leadership: wait and retry
                // within the caller's timeout.
                _ => tokio::time::sleep(LEADER_POLL).await,
            }
        }
    }

    /// Reads `key` linearizably, forwarding to the leader when this node is not the leader.
    ///
    /// # Errors
    ///
    /// See [`ReadError`].
    pub async fn read(&self, key: &str) -> Result<Option<String>, ReadError> {
        let fut = self.read_inner(key, true);
        tokio::time::timeout(self.inner.request_timeout, fut)
            .await
            .unwrap_or(Err(ReadError::Timeout))
    }

    /// Reads `key` linearizably if this node is the leader; the receiving side of [`Forward`].
    ///
    /// # Errors
    ///
    /// As [`KvNode::read`]; [`ReadError::NotLeader`] instead of forwarding.
    pub async fn read_local(&self, key: &str) -> Result<Option<String>, ReadError> {
        let fut = self.read_inner(key, false);
        tokio::time::timeout(self.inner.request_timeout, fut)
            .await
            .unwrap_or(Err(ReadError::Timeout))
    }

    async fn read_inner(&self, key: &str, may_forward: bool) -> Result<Option<String>, ReadError> {
        let mut quorum_misses = 0;
        loop {
            let err = match self
                .inner
                .raft
                .ensure_linearizable(ReadPolicy::ReadIndex)
                .await
            {
                Ok(_) => return Ok(self.inner.view.get(key)),
                Err(RaftError::Fatal(f)) => return Err(ReadError::Stopped(f.to_string())),
                Err(RaftError::APIError(e)) => e,
            };
            let leader = match err {
                LinearizableReadError::ForwardToLeader(f) => f.leader_id,
                LinearizableReadError::QuorumNotEnough(_) => {
                    // A leader elected a moment ago may miss its first round; a read has no
                    // effect, so it is retried a few times before the loss is reported.
                    quorum_misses += 1;
                    if quorum_misses >= QUORUM_RETRIES {
                        return Err(ReadError::QuorumLost);
                    }
                    tokio::time::sleep(LEADER_POLL).await;
                    continue;
                }
            };
            match leader {
                Some(l) if l != self.id() && may_forward => {
                    return self
                        .inner
                        .forward
                        .forward_read(l, key.to_owned())
                        .await
                        .map_err(ReadError::Forward);
                }
                Some(l) if l != self.id() => return Err(ReadError::NotLeader { leader: Some(l) }),
                None if !may_forward => return Err(ReadError::NotLeader { leader: None }),
                _ => tokio::time::sleep(LEADER_POLL).await,
            }
        }
    }

    /// This node's view of itself and the cluster.
    pub fn status(&self) -> Status {
        let m = self.inner.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                id: *id,
                addr: node.addr.clone(),
                incarnation: node.incarnation,
                voter: voters.contains(id),
            })
            .collect();
        Status {
            id: self.id(),
            incarnation: self.inner.identity.incarnation,
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            may_vote: amnesia::may_vote(
                |id| membership.get_node(&id).map(|n| n.incarnation),
                &self.inner.identity,
            ),
            members,
        }
    }

    /// Stops openraft on this node; every later call fails with a `Stopped` error.
    pub async fn shutdown(&self) {
        self.inner.gate.abort();
        // The join error only says the core task panicked, which its logs already report.
        let _ = self.inner.raft.shutdown().await;
    }
}

fn may_vote_now(raft: &KvRaft, identity: &Identity) -> bool {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    may_vote_in(&m, identity)
}

fn may_vote_in(m: &openraft::RaftMetrics<TypeConfig>, identity: &Identity) -> bool {
    let membership = m.membership_config.membership();
    amnesia::may_vote(
        |id| membership.get_node(&id).map(|n| n.incarnation),
        identity,
    )
}

/// Turns elections on and off as the membership changes, following [`amnesia::may_vote`].
async fn election_gate(raft: KvRaft, identity: Identity, mut allowed: bool) {
    let mut rx = raft.metrics();
    loop {
        let now = may_vote_in(&rx.borrow_watched(), &identity);
        if now != allowed {
            tracing::info!(
                id = identity.id,
                may_vote = now,
                "amnesia gate changes elections"
            );
            raft.runtime_config().elect(now);
            allowed = now;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
