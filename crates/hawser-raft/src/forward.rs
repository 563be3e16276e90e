//! The seam through which a node hands a client request to the leader.
//!
//! A follower that receives a write (or a linearizable read) calls [`Forward`] with the leader's
//! id. The hawser network adapter implements it by sending the request to the leader's node and
//! calling [`crate::app::KvNode::write_local`] / [`crate::app::KvNode::read_local`] there; the
//! in-process [`crate::router::Router`] implements it by calling the leader's node directly. The
//! leader never forwards again: a forwarded request that reaches a node that is no longer the
//! leader fails with [`ForwardError::NotLeader`], and the client may retry.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Request, Response};

/// A boxed future returned by [`Forward`] methods.
pub type ForwardFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ForwardError>> + Send + 'a>>;

/// Sends client requests to the leader.
pub trait Forward: Send + Sync + 'static {
    /// Has `leader` commit `req` and returns the state machine's response.
    fn forward_write(&self, leader: NodeId, req: Request) -> ForwardFuture<'_, Response>;

    /// Has `leader` read `key` linearizably.
    fn forward_read(&self, leader: NodeId, key: String) -> ForwardFuture<'_, Option<String>>;
}

/// Why a forwarded request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ForwardError {
    /// The leader could not be reached and the request was not sent: nothing was done. An
    /// implementation that cannot tell whether the request left reports
    /// [`ForwardError::Timeout`] instead.
    #[error("leader {0} unreachable")]
    Unreachable(NodeId),
    /// No answer in time: a write's outcome is unknown.
    #[error("leader {0} did not answer in time")]
    Timeout(NodeId),
    /// The target is not the leader (any more); `leader` is the one it knows of.
    #[error("node is not the leader; leader is {leader:?}")]
    NotLeader {
        /// The leader the target knows of.
        leader: Option<NodeId>,
    },
    /// The leader could not reach a quorum.
    #[error("leader lost its quorum")]
    QuorumLost,
    /// The leader failed otherwise.
    #[error("leader failed: {0}")]
    Failed(String),
}
