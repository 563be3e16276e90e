//! openraft over hawser: the network adapter.
//!
//! Every Raft RPC is a hawser request to a node id ([`hawser::node::Node::request`]), with
//! openraft's deadline, and every snapshot a hawser stream ([`hawser::node::Node::open_stream`]),
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
use hawser::node::{Node as HawserNode, NodeStream, RequestError, RequestOptions};
use hawser::session::{Protocol, ProtocolId};
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

use crate::app::{KvNode, ReadError, WriteError};
use crate::forward::{Forward, ForwardError, ForwardFuture};
use crate::identity::Identity;
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

// ---------------------------------------------------------------------------------------------
// The client side: openraft's network factory and connections.

/// The openraft network factory of a node running on hawser.
#[derive(Clone)]
pub struct HawserNetwork {
    node: HawserNode,
    me: Identity,
}

impl HawserNetwork {
    /// The network of the Raft node `me` over the hawser node `node` (whose node ids are the
    /// Raft node ids).
    pub fn new(node: HawserNode, me: Identity) -> Self {
        HawserNetwork { node, me }
    }
}

impl RaftNetworkFactory<TypeConfig> for HawserNetwork {
    type Network = HawserConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        HawserConnection {
            node: self.node.clone(),
            me: self.me,
            target,
            addressed: node.incarnation,
        }
    }
}

/// One node's openraft client for one target, over hawser.
#[derive(Clone)]
pub struct HawserConnection {
    node: HawserNode,
    me: Identity,
    target: NodeId,
    addressed: Incarnation,
}

impl HawserConnection {
    fn envelope<T>(&self, body: T) -> Envelope<T> {
        Envelope {
            from: self.me,
            to: self.addressed,
            body,
        }
    }

    fn error(&self, e: &RequestError, action: RPCTypes, ttl: Duration) -> RPCError<TypeConfig> {
        match e {
            RequestError::Timeout => RPCError::Timeout(RpcTimeout {
                action,
                id: self.me.id,
                target: self.target,
                timeout: ttl,
            }),
            other => RPCError::Unreachable(Unreachable::new(other)),
        }
    }

    /// One request on `protocol` with deadline `ttl`, its answer decoded.
    async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        protocol: ProtocolId,
        body: T,
        action: RPCTypes,
        ttl: Duration,
    ) -> Result<R, RPCError<TypeConfig>> {
        let payload = encode(&self.envelope(body));
        let answer = self
            .node
            .request(self.target, protocol, payload, RequestOptions::timeout(ttl))
            .await
            .map_err(|e| self.error(&e, action, ttl))?;
        decode(&answer).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }

    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
        ttl: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        fn unreachable<E: std::error::Error + 'static>(e: &E) -> StreamingError<TypeConfig> {
            StreamingError::Unreachable(Unreachable::new(e))
        }
        let timeout = || {
            StreamingError::Timeout(RpcTimeout {
                action: RPCTypes::InstallSnapshot,
                id: self.me.id,
                target: self.target,
                timeout: ttl,
            })
        };
        let mut stream = self
            .node
            .open_stream(self.target, RAFT_SNAPSHOT)
            .await
            .map_err(|e| unreachable(&e))?;
        let header = encode(&SnapshotHeader {
            from: self.me,
            to: self.addressed,
            vote,
            meta: snapshot.meta,
            len: snapshot.snapshot.len() as u64,
        });
        let header_len = u32::try_from(header.len()).map_err(|e| unreachable(&e))?;
        let write = async {
            stream.write_u32(header_len).await?;
            stream.write_all(&header).await?;
            Ok::<_, std::io::Error>(())
        };
        step(ttl, write)
            .await
            .map_err(|e| e.map_or_else(timeout, |e| unreachable(&e)))?;
        // Each chunk under the deadline: a slow but moving transfer is not cut off.
        for chunk in snapshot.snapshot.chunks(SNAPSHOT_CHUNK) {
            step(ttl, stream.write_all(chunk))
                .await
                .map_err(|e| e.map_or_else(timeout, |e| unreachable(&e)))?;
        }
        // The answer comes once the follower installed it: allow the whole deadline again.
        let answer = step(ttl, read_frame(&mut stream, MAX_SNAPSHOT_HEADER))
            .await
            .map_err(|e| e.map_or_else(timeout, |e| unreachable(&e)))?;
        let answer: Result<SnapshotResponse<TypeConfig>, String> =
            decode(&answer).map_err(|e| unreachable(&e))?;
        answer.map_err(|msg| unreachable(&std::io::Error::other(msg)))
    }
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

impl RaftNetworkV2<TypeConfig> for HawserConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(RAFT_APPEND, rpc, RPCTypes::AppendEntries, ttl)
            .await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>>
            + OptionalSend
            + Unpin
            + 'static,
    {
        let conn = self.clone();
        let ttl = option.soft_ttl();
        // Each request is queued at its first poll, and the pipeline polls new calls in order:
        // the follower receives them in order and applies them one by one.
        Box::pin(std::future::ready(Ok(pipelined_appends(
            input,
            PIPELINE,
            move |req| {
                let conn = conn.clone();
                async move {
                    conn.call(RAFT_APPEND, req, RPCTypes::AppendEntries, ttl)
                        .await
                }
            },
        ))))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(RAFT_VOTE, VoteCall::Vote(rpc), RPCTypes::Vote, ttl)
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(RAFT_VOTE, VoteCall::PreVote(rpc), RPCTypes::Vote, ttl)
            .await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        let call = VoteCall::TransferLeader(req);
        self.call(RAFT_VOTE, call, RPCTypes::TransferLeader, ttl)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let ttl = option.hard_ttl();
        tokio::select! {
            r = self.send_snapshot(vote, snapshot, ttl) => r,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }

    fn backoff(&self) -> Option<Backoff> {
        Some(Backoff::new(ReachBackoff::new(
            self.node.clone(),
            self.target,
        )))
    }
}

/// openraft's back-off towards an unreachable peer: doubling from 50 ms to 1 s, back to 50 ms
/// as soon as hawser's reachability reports the peer alive.
pub struct ReachBackoff {
    node: HawserNode,
    target: NodeId,
    next: Duration,
    was_alive: bool,
}

impl ReachBackoff {
    /// The first delay.
    pub const INITIAL: Duration = Duration::from_millis(50);
    /// The longest delay.
    pub const MAX: Duration = Duration::from_secs(1);

    /// A back-off towards `target`.
    pub fn new(node: HawserNode, target: NodeId) -> Self {
        let was_alive = node.is_alive(target);
        ReachBackoff {
            node,
            target,
            next: Self::INITIAL,
            was_alive,
        }
    }
}

impl Iterator for ReachBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let alive = self.node.is_alive(self.target);
        if alive && !self.was_alive {
            self.next = Self::INITIAL;
        }
        self.was_alive = alive;
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

/// openraft's `stream_append` over any request/response call: up to `depth` calls in flight,
/// started in input order, their results yielded in order as openraft's stream results. The
/// stream ends after the first error, conflict, higher vote or partial success, as openraft's
/// sequential default does. The hawser adapter and the benchmark's hand-written network both
/// use it.
pub fn pipelined_appends<'s, S, F, Fut>(
    input: S,
    depth: usize,
    call: F,
) -> BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>
where
    S: futures_util::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    F: Fn(AppendEntriesRequest<TypeConfig>) -> Fut + Send + 'static,
    Fut: std::future::Future<
            Output = Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>>,
        > + Send
        + 'static,
{
    input
        .map(move |req| {
            // The range the request covers: (prev, last], as openraft counts it.
            let prev = req.prev_log_id;
            let last = req.entries.last().map(|e| e.log_id).or(prev);
            let result = call(req);
            async move { (prev, last, result.await) }
        })
        .buffered(depth.max(1))
        .scan(false, |ended, (prev, last, result)| {
            let item = if *ended {
                None
            } else {
                match result {
                    Ok(resp) => {
                        let partial = match &resp {
                            AppendEntriesResponse::PartialSuccess(p) => Some(*p),
                            _ => None,
                        };
                        let r = resp.into_stream_result(prev, last);
                        *ended = r.is_err() || partial.is_some_and(|p| p != last);
                        Some(Ok(r))
                    }
                    Err(e) => {
                        *ended = true;
                        Some(Err(e))
                    }
                }
            };
            std::future::ready(item)
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Forwarding client requests to the leader.

/// [`Forward`] over hawser: a follower's client writes and reads go to the leader as requests.
pub struct HawserForward {
    node: HawserNode,
    timeout: Duration,
}

impl HawserForward {
    /// Forwards over `node`, each request with deadline `timeout`.
    pub fn new(node: HawserNode, timeout: Duration) -> Self {
        HawserForward { node, timeout }
    }

    async fn call(&self, leader: NodeId, call: ClientCall) -> Result<ClientAnswer, ForwardError> {
        let options = RequestOptions::timeout(self.timeout);
        let answer = self
            .node
            .request(leader, RAFT_CLIENT, encode(&call), options)
            .await
            .map_err(|e| match e {
                // The request may have left: its outcome is unknown.
                RequestError::Timeout | RequestError::Unreachable(_) | RequestError::Stopped => {
                    ForwardError::Timeout(leader)
                }
                // Refused before any handler ran.
                RequestError::NoHandler(_)
                | RequestError::Overloaded { .. }
                | RequestError::UnknownNode(_) => ForwardError::Unreachable(leader),
                other => ForwardError::Failed(other.to_string()),
            })?;
        let answer: Result<ClientAnswer, ForwardError> =
            decode(&answer).map_err(|e| ForwardError::Failed(e.to_string()))?;
        answer
    }

    /// Asks node `id` what the membership should record for it, and whether it already
    /// belongs to an initialized cluster.
    ///
    /// # Errors
    /// [`ForwardError`] when it cannot be reached or answers otherwise.
    pub async fn node_info(&self, id: NodeId) -> Result<(Node, bool), ForwardError> {
        match self.call(id, ClientCall::Info).await? {
            ClientAnswer::Info(node, initialized) => Ok((node, initialized)),
            _ => Err(ForwardError::Failed("unexpected answer".into())),
        }
    }
}

impl Forward for HawserForward {
    fn forward_write(&self, leader: NodeId, req: Request) -> ForwardFuture<'_, Response> {
        Box::pin(async move {
            match self.call(leader, ClientCall::Write(req)).await? {
                ClientAnswer::Written(r) => Ok(r),
                _ => Err(ForwardError::Failed("unexpected answer".into())),
            }
        })
    }

    fn forward_read(&self, leader: NodeId, key: String) -> ForwardFuture<'_, Option<String>> {
        Box::pin(async move {
            match self.call(leader, ClientCall::Read(key)).await? {
                ClientAnswer::Value(v) => Ok(v),
                _ => Err(ForwardError::Failed("unexpected answer".into())),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The serving side.

/// Why the Raft protocols could not be served on a hawser node.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// hawser refused to serve a protocol (already served, node stopped).
    #[error(transparent)]
    Hawser(#[from] hawser::node::ServeError),
}

/// Serves `kv`'s Raft protocols on `node` until the node stops: appends in arrival order,
/// votes and client requests concurrently, snapshots each on a stream of its own.
///
/// # Errors
/// [`ServeError`] when a protocol is already served or the node has stopped.
pub fn serve(node: &HawserNode, kv: KvNode) -> Result<(), ServeError> {
    let mut appends = node.serve(RAFT_APPEND)?;
    let raft = kv.clone();
    tokio::spawn(async move {
        // One at a time, in arrival order: a leader's pipelined appends apply in order.
        while let Some(mut req) = appends.recv().await {
            let body = req.take_payload();
            let env: Envelope<AppendEntriesRequest<TypeConfig>> = match decode(&body) {
                Ok(e) => e,
                Err(e) => {
                    let _ = req.refuse(code::BAD_REQUEST, &e.to_string());
                    continue;
                }
            };
            if let Err(why) = raft.check_addressed(env.to) {
                let _ = req.refuse(code::REFUSED, &why.to_string());
                continue;
            }
            match raft.raft().append_entries(env.body).await {
                Ok(resp) => {
                    let _ = req.respond(encode(&resp));
                }
                Err(e) => {
                    let _ = req.refuse(code::RAFT, &e.to_string());
                }
            }
        }
    });
    let raft = kv.clone();
    node.serve_with(RAFT_VOTE, move |mut req| {
        let raft = raft.clone();
        async move {
            let body = req.take_payload();
            let env: Envelope<VoteCall> = match decode(&body) {
                Ok(e) => e,
                Err(e) => {
                    let _ = req.refuse(code::BAD_REQUEST, &e.to_string());
                    return;
                }
            };
            let answer = match env.body {
                VoteCall::Vote(rpc) => match raft.check_vote_request(&env.from, env.to) {
                    Err(why) => Err((code::REFUSED, why.to_string())),
                    Ok(()) => raft
                        .raft()
                        .vote(rpc)
                        .await
                        .map(|r| encode(&r))
                        .map_err(|e| (code::RAFT, e.to_string())),
                },
                VoteCall::PreVote(rpc) => match raft.check_vote_request(&env.from, env.to) {
                    Err(why) => Err((code::REFUSED, why.to_string())),
                    Ok(()) => raft
                        .raft()
                        .pre_vote(rpc)
                        .await
                        .map(|r| encode(&r))
                        .map_err(|e| (code::RAFT, e.to_string())),
                },
                VoteCall::TransferLeader(rpc) => match raft.check_addressed(env.to) {
                    Err(why) => Err((code::REFUSED, why.to_string())),
                    Ok(()) => raft
                        .raft()
                        .handle_transfer_leader(rpc)
                        .await
                        .map(|r| encode(&r))
                        .map_err(|e| (code::RAFT, e.to_string())),
                },
            };
            let _ = match answer {
                Ok(bytes) => req.respond(bytes),
                Err((c, msg)) => req.refuse(c, &msg),
            };
        }
    })?;
    let app = kv.clone();
    node.serve_with(RAFT_CLIENT, move |mut req| {
        let app = app.clone();
        async move {
            let body = req.take_payload();
            let call: ClientCall = match decode(&body) {
                Ok(c) => c,
                Err(e) => {
                    let _ = req.refuse(code::BAD_REQUEST, &e.to_string());
                    return;
                }
            };
            let answer: Result<ClientAnswer, ForwardError> = match call {
                ClientCall::Write(w) => app
                    .write_local(w)
                    .await
                    .map(ClientAnswer::Written)
                    .map_err(|e| write_error(e, app.id())),
                ClientCall::Read(key) => app
                    .read_local(&key)
                    .await
                    .map(ClientAnswer::Value)
                    .map_err(|e| read_error(e, app.id())),
                ClientCall::Info => {
                    let initialized = app.raft().is_initialized().await.unwrap_or(true);
                    Ok(ClientAnswer::Info(app.node_info(), initialized))
                }
            };
            let _ = req.respond(encode(&answer));
        }
    })?;
    let mut streams = node.accept_streams(RAFT_SNAPSHOT)?;
    tokio::spawn(async move {
        while let Some((from, stream)) = streams.accept().await {
            let kv = kv.clone();
            tokio::spawn(async move {
                if let Err(e) = receive_snapshot(&kv, stream).await {
                    warn!(node = kv.id(), from = from.0, %e, "snapshot not installed");
                }
            });
        }
    });
    Ok(())
}

/// A leader's (`me`) failure to commit a forwarded write, as the forwarding node hears it.
fn write_error(e: WriteError, me: NodeId) -> ForwardError {
    match e {
        WriteError::NotLeader { leader } => ForwardError::NotLeader { leader },
        WriteError::NoLeader => ForwardError::NotLeader { leader: None },
        WriteError::Timeout | WriteError::Discarded => ForwardError::Timeout(me),
        other => ForwardError::Failed(other.to_string()),
    }
}

/// A leader's (`me`) failure to read linearizably, as the forwarding node hears it.
fn read_error(e: ReadError, me: NodeId) -> ForwardError {
    match e {
        ReadError::NotLeader { leader } => ForwardError::NotLeader { leader },
        ReadError::NoLeader => ForwardError::NotLeader { leader: None },
        ReadError::QuorumLost => ForwardError::QuorumLost,
        ReadError::Timeout => ForwardError::Timeout(me),
        other => ForwardError::Failed(other.to_string()),
    }
}

/// How long a snapshot stream may stay silent before the receiver gives up.
const SNAPSHOT_IDLE: Duration = Duration::from_secs(10);

/// Reads one snapshot from `stream`, installs it, and answers.
async fn receive_snapshot(kv: &KvNode, mut stream: NodeStream) -> std::io::Result<()> {
    let idle = |e: Option<std::io::Error>| e.unwrap_or_else(|| std::io::ErrorKind::TimedOut.into());
    let header = step(SNAPSHOT_IDLE, read_frame(&mut stream, MAX_SNAPSHOT_HEADER))
        .await
        .map_err(idle)?;
    let header: SnapshotHeader =
        decode(&header).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let answer: Result<SnapshotResponse<TypeConfig>, String> = if header.len > MAX_SNAPSHOT {
        Err(format!(
            "snapshot of {} bytes above {MAX_SNAPSHOT}",
            header.len
        ))
    } else if let Err(why) = kv.check_addressed(header.to) {
        Err(why.to_string())
    } else {
        let len = header.len as usize;
        let mut data = Vec::with_capacity(len.min(64 << 20));
        let mut buf = vec![0u8; SNAPSHOT_CHUNK];
        while data.len() < len {
            let want = (len - data.len()).min(SNAPSHOT_CHUNK);
            let got = step(SNAPSHOT_IDLE, stream.read(&mut buf[..want]))
                .await
                .map_err(idle)?;
            if got == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            data.extend_from_slice(&buf[..got]);
        }
        debug!(
            node = kv.id(),
            from = header.from.id,
            bytes = len,
            "snapshot received"
        );
        let snapshot = Snapshot {
            meta: header.meta,
            snapshot: data,
        };
        kv.raft()
            .install_full_snapshot(header.vote, snapshot)
            .await
            .map_err(|e| e.to_string())
    };
    let answer = encode(&answer);
    stream.write_u32(answer.len() as u32).await?;
    stream.write_all(&answer).await?;
    stream.shutdown().await
}

/// What a bootstrapping node learns of the members.
#[derive(Debug)]
pub enum Gathered {
    /// Every member answered and none belongs to a cluster yet: their node infos.
    Fresh(BTreeMap<NodeId, Node>),
    /// This member already belongs to an initialized cluster: nothing to bootstrap.
    Initialized(NodeId),
}

/// Asks every member of `members` for its node info, retrying until all answer (or one
/// already belongs to a cluster) or `deadline` passes: what a bootstrapping node needs to
/// initialize the cluster, and to know it must not.
///
/// # Errors
/// The last [`ForwardError`] of a member that did not answer in time.
pub async fn gather_members(
    forward: &HawserForward,
    members: &[NodeId],
    deadline: Duration,
) -> Result<Gathered, ForwardError> {
    let until = tokio::time::Instant::now() + deadline;
    let mut found = BTreeMap::new();
    loop {
        let mut last = None;
        for &id in members {
            if found.contains_key(&id) {
                continue;
            }
            match forward.node_info(id).await {
                Ok((_, true)) => return Ok(Gathered::Initialized(id)),
                Ok((node, false)) => {
                    found.insert(id, node);
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            None => return Ok(Gathered::Fresh(found)),
            Some(e) if tokio::time::Instant::now() >= until => return Err(e),
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
