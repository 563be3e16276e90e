//! openraft over hawser: the network adapter.
//!
//! Every Raft RPC is a hawser request to a node id ([`hawser_net::node::Node::request`]), with
//! openraft's deadline, and every snapshot a hawser stream ([`hawser_net::node::Node::open_stream`]),
//! so that a snapshot of many megabytes never delays heartbeats and appends. Sessions are
//! encrypted and authenticated as the hawser node is configured.
//!
//! | protocol | id | kind | carries |
//! | --- | --- | --- | --- |
//! | `hawser-raft/append` | [`RAFT_APPEND`] | request | append-entries, pipelined, applied in order |
//! | `hawser-raft/vote` | [`RAFT_VOTE`] | request | vote, pre-vote, transfer-leader |
//! | `hawser-raft/client` | [`RAFT_CLIENT`] | request | writes and reads forwarded to the leader, node info |
//! | `hawser-raft/snapshot` | [`RAFT_SNAPSHOT`] | stream | a full snapshot |
//!
//! Bodies are JSON. Each Raft request travels in an envelope with the sender's
//! [`Identity`] and the incarnation it addresses, for the amnesia checks
//! ([`crate::amnesia`]): a node refuses appends and snapshots addressed to another
//! incarnation, and votes from or to a node that lost its data.
//!
//! Its parts: `client` (openraft's network factory and connections, the pipeline of appends,
//! the back-off), `forward` (client requests sent to the leader, the bootstrap's questions),
//! `serve` (the protocols answered).
//!
//! # Mapping of errors and timeouts
//! - openraft's `RPCOption::hard_ttl()` is each request's hawser deadline (a snapshot stream's
//!   per-write and per-read deadline); `RequestError::Timeout` becomes `RPCError::Timeout`.
//! - Every other hawser failure (`Unreachable`, which includes a peer that hawser's reachability
//!   knows dead, `NoHandler`, `Overloaded`, `Refused`, ...) becomes `RPCError::Unreachable`, so
//!   openraft backs off instead of retrying at once.
//! - The back-off ([`ReachBackoff`]) doubles from 50 ms to 1 s, and restarts from 50 ms as soon
//!   as reachability reports the peer alive again.
//! - Appends are pipelined: up to [`PIPELINE`] append requests in flight to one follower, their
//!   responses yielded in order; the follower applies them in arrival order.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hawser_net::node::{Node as HawserNode, NodeStream, RequestError, RequestOptions};
use hawser_net::session::{Protocol, ProtocolId};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    RPCError, ReplicationClosed, StreamingError, Timeout as RpcTimeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::app::{Handle, KvNode, ReadError, WriteError};
use crate::forward::{Forward, ForwardError, ForwardFuture};
use crate::identity::Identity;
mod client;
mod forward;
mod serve;

pub use client::{pipelined_appends, HawserConnection, HawserNetwork, ReachBackoff};
pub use forward::{gather_members, Gathered, HawserForward};
pub use serve::{serve, ServeError};

use crate::types::{
    Incarnation, Node, NodeId, Request, Response, Snapshot, SnapshotMeta, TypeConfig, Vote,
};

/// Append-entries requests (request/response).
pub const RAFT_APPEND: ProtocolId = ProtocolId(1100);
/// Votes, pre-votes and leadership transfers (request/response).
pub const RAFT_VOTE: ProtocolId = ProtocolId(1101);
/// Client writes and reads forwarded to the leader, and node info (request/response).
pub const RAFT_CLIENT: ProtocolId = ProtocolId(1102);
/// Full snapshots (a stream per snapshot).
pub const RAFT_SNAPSHOT: ProtocolId = ProtocolId(1103);

/// Most append requests in flight to one follower.
pub const PIPELINE: usize = 64;

/// Largest snapshot accepted from a leader, in bytes (1 GiB).
pub const MAX_SNAPSHOT: u64 = 1 << 30;

/// Largest snapshot header (vote and metadata, JSON) accepted, in bytes.
const MAX_SNAPSHOT_HEADER: u32 = 1 << 20;

/// Bytes written or read per step of a snapshot stream (each under the deadline).
const SNAPSHOT_CHUNK: usize = 256 * 1024;

/// Application codes of refusals (`RequestError::Refused`).
mod code {
    /// The body did not decode.
    pub const BAD_REQUEST: u32 = 400;
    /// The amnesia rule refused the request.
    pub const REFUSED: u32 = 403;
    /// openraft failed (it is shutting down, or a storage error).
    pub const RAFT: u32 = 500;
}

/// The protocols to register on a hawser node that runs Raft (`NodeBuilder::protocol`):
/// the snapshot stream's (request protocols need no registration).
pub fn protocols() -> Vec<Protocol> {
    // A constant name under 64 bytes and one version: always valid.
    vec![Protocol::new(RAFT_SNAPSHOT, "hawser-raft/snapshot", &[1]).expect("valid protocol")]
}

/// A Raft request with who sends it and which incarnation it is for.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    from: Identity,
    to: Incarnation,
    body: T,
}

#[derive(Serialize, Deserialize)]
enum VoteCall {
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
}

#[derive(Serialize, Deserialize)]
enum ClientCall {
    Write(Request),
    Read(String),
    Info,
}

#[derive(Serialize, Deserialize)]
enum ClientAnswer {
    Written(Response),
    Value(Option<String>),
    /// The node's info, and whether it belongs to an initialized cluster.
    Info(Node, bool),
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    from: Identity,
    to: Incarnation,
    vote: Vote,
    meta: SnapshotMeta,
    len: u64,
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    // Serializing these plain data types to JSON cannot fail (string keys, no custom errors).
    serde_json::to_vec(value)
        .expect("raft messages serialize")
        .into()
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Runs `f` within `ttl`: `Err(None)` on timeout, `Err(Some(e))` on an I/O error.
async fn step<T>(
    ttl: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, Option<std::io::Error>> {
    match tokio::time::timeout(ttl, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// Reads one u32-length-prefixed frame of at most `max` bytes.
async fn read_frame(stream: &mut NodeStream, max: u32) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await?;
    if len > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}
