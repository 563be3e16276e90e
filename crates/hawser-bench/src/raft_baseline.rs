//! A hand-written Raft network: what a user of openraft would write without hawser.
//!
//! Plain tokio TCP, frames cut by [`LengthDelimitedCodec`], and a request-id map
//! (`HashMap<u64, oneshot::Sender>`) matching each answer to its request. Each node dials each
//! peer once: every openraft client a node makes for a target (replication, heartbeats, votes,
//! snapshots) shares that one connection, and a pair of nodes has one connection each way, each
//! carrying requests one way and their answers the other. There is **no encryption and no
//! authentication**: that is what such a network typically lacks, and the benchmark rows say so.
//!
//! It does what [`hawser_raft::net`] does, so the comparison is fair:
//! - bodies are JSON, in an envelope with the sender's [`Identity`] and the incarnation
//!   addressed; the serving side applies the same amnesia checks, through
//!   [`KvNode::handle_append`], [`KvNode::handle_vote`] and [`KvNode::handle_snapshot`];
//! - `stream_append` is pipelined: up to [`PIPELINE`] append requests in flight to one follower,
//!   their answers yielded in order; the follower applies the appends of a connection one at a
//!   time, in arrival order;
//! - frames queued while the socket is busy leave in one write (one flush per burst), and
//!   `TCP_NODELAY` is set;
//! - a snapshot is one big frame (header and data), bounded by [`MAX_FRAME`]: while it travels,
//!   the connection carries nothing else, which a hand-written network usually accepts;
//! - a timeout becomes `RPCError::Timeout`, any other failure `Unreachable` (a refusal too); a
//!   broken connection fails its pending requests and the next request dials again;
//! - leadership transfer is not implemented (openraft's default refuses it), and neither is
//!   forwarding of client writes: the benchmark's clients write to the leader, so
//!   [`NoForward`] reports the leader unreachable.
//!
//! # Frames
//!
//! After the codec's 4-byte length, a request is `id: u64 | kind: u8 | body` and an answer
//! `id: u64 | status: u8 | body` (status 0: the body is the JSON answer; 1: a refusal, the body
//! its reason in UTF-8). A snapshot's body is `header length: u32 | header (JSON) | data`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hawser_raft::app::KvNode;
use hawser_raft::forward::{Forward, ForwardError, ForwardFuture};
use hawser_raft::identity::Identity;
use hawser_raft::net::pipelined_appends;
use hawser_raft::types::{
    Incarnation, Node, NodeId, Request, Response, Snapshot, SnapshotMeta, TypeConfig, Vote,
};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    RPCError, ReplicationClosed, StreamingError, Timeout as RpcTimeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, VoteRequest,
    VoteResponse,
};
use openraft::{OptionalSend, RPCTypes, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use tokio_util::task::AbortOnDropHandle;

/// Most append requests in flight to one follower (as [`hawser_raft::net::PIPELINE`]).
pub const PIPELINE: usize = hawser_raft::net::PIPELINE;

/// Largest frame accepted: a snapshot as big as hawser's adapter accepts
/// ([`hawser_raft::net::MAX_SNAPSHOT`]) and its header.
pub const MAX_FRAME: usize = hawser_raft::net::MAX_SNAPSHOT as usize + (1 << 20);

/// Frames queued for one connection's writer.
const QUEUE: usize = 4 * PIPELINE;

/// Vote and snapshot requests one connection may have in progress at once.
const MAX_CONCURRENT: usize = 64;

/// How long dialing a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Request kinds.
mod kind {
    pub const APPEND: u8 = 1;
    pub const VOTE: u8 = 2;
    pub const PRE_VOTE: u8 = 3;
    pub const SNAPSHOT: u8 = 4;
}

/// Answer statuses.
mod status {
    pub const OK: u8 = 0;
    pub const REFUSED: u8 = 1;
}

/// A Raft request with who sends it and which incarnation it is for.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    from: Identity,
    to: Incarnation,
    body: T,
}

#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    from: Identity,
    to: Incarnation,
    vote: Vote,
    meta: SnapshotMeta,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer within the deadline.
    #[error("no answer in time")]
    Timeout,
    /// The peer could not be dialed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke before the answer came.
    #[error("connection closed")]
    Closed,
    /// The peer refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// A body did not encode or decode.
    #[error("codec: {0}")]
    Codec(#[from] serde_json::Error),
    /// A frame was shorter than its header.
    #[error("malformed frame")]
    Malformed,
}

/// A frame of `id`, `tag` (kind or status) and the JSON of `body`.
fn frame<T: Serialize>(id: u64, tag: u8, body: &T) -> Result<Bytes, serde_json::Error> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_u64(id);
    buf.put_u8(tag);
    serde_json::to_writer((&mut buf).writer(), body)?;
    Ok(buf.freeze())
}

/// Splits a frame into its id, tag and body.
fn split(mut frame: BytesMut) -> Result<(u64, u8, Bytes), CallError> {
    if frame.len() < 9 {
        return Err(CallError::Malformed);
    }
    let id = frame.get_u64();
    let tag = frame.get_u8();
    Ok((id, tag, frame.freeze()))
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Writes the frames of `rx` to `sink`, every frame queued meanwhile in the same flush, until
/// the channel closes or a write fails; then runs `on_exit`.
async fn write_frames(
    mut rx: mpsc::Receiver<Bytes>,
    mut sink: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    on_exit: impl FnOnce(),
) {
    'outer: while let Some(frame) = rx.recv().await {
        if sink.feed(frame).await.is_err() {
            break;
        }
        while let Ok(frame) = rx.try_recv() {
            if sink.feed(frame).await.is_err() {
                break 'outer;
            }
        }
        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            break;
        }
    }
    on_exit();
}

// ---------------------------------------------------------------------------------------------
// The client side.

/// Requests waiting for their answers on one connection.
#[derive(Default)]
struct Pending {
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, CallError>>>>,
    closed: AtomicBool,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<Bytes, CallError>>>> {
        // A map of channels stays consistent across a panic (each update is one insert/remove).
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails every waiting request; later ones fail at once.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, tx) in self.lock().drain() {
            let _ = tx.send(Err(CallError::Closed));
        }
    }
}

/// One connection to a peer: a writer task, a reader task and the requests in flight.
struct Conn {
    pending: Arc<Pending>,
    next_id: AtomicU64,
    out: mpsc::Sender<Bytes>,
    _writer: AbortOnDropHandle<()>,
    _reader: AbortOnDropHandle<()>,
}

impl Conn {
    async fn dial(addr: &str) -> Result<Conn, CallError> {
        let connect = |source| CallError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| connect(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        let (r, w) = stream.into_split();
        let pending = Arc::new(Pending::default());
        let (out, rx) = mpsc::channel(QUEUE);
        let p = pending.clone();
        let writer = tokio::spawn(write_frames(rx, FramedWrite::new(w, codec()), move || {
            p.close()
        }));
        let p = pending.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::new(r, codec());
            while let Some(Ok(frame)) = frames.next().await {
                let Ok((id, status, body)) = split(frame) else {
                    break;
                };
                let answer = if status == status::OK {
                    Ok(body)
                } else {
                    Err(CallError::Refused(
                        String::from_utf8_lossy(&body).into_owned(),
                    ))
                };
                if let Some(tx) = p.lock().remove(&id) {
                    let _ = tx.send(answer);
                }
            }
            p.close();
        });
        Ok(Conn {
            pending,
            next_id: AtomicU64::new(1),
            out,
            _writer: AbortOnDropHandle::new(writer),
            _reader: AbortOnDropHandle::new(reader),
        })
    }

    fn is_open(&self) -> bool {
        !self.pending.closed.load(Ordering::Acquire)
    }

    /// Sends a request built by `build` (given its id) and waits up to `ttl` for the answer.
    /// The request is queued before the first `.await` that can wait for an answer, so calls
    /// polled in order leave in order.
    async fn call(
        &self,
        build: impl FnOnce(u64) -> Result<Bytes, serde_json::Error>,
        ttl: Duration,
    ) -> Result<Bytes, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = build(id)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.pending.lock();
            if !self.is_open() {
                return Err(CallError::Closed);
            }
            waiting.insert(id, tx);
        }
        let exchange = async {
            self.out.send(frame).await.map_err(|_| CallError::Closed)?;
            rx.await.map_err(|_| CallError::Closed)?
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(answer) => answer,
            Err(_) => {
                self.pending.lock().remove(&id);
                Err(CallError::Timeout)
            }
        }
    }
}

/// A peer and the connection to it, dialed on first use and again after it broke.
struct Peer {
    addr: String,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl Peer {
    async fn conn(&self) -> Result<Arc<Conn>, CallError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref().filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let c = Arc::new(Conn::dial(&self.addr).await?);
        *conn = Some(c.clone());
        Ok(c)
    }
}

/// One peer per (target, address): all of a node's clients for a target share it.
type Peers = HashMap<(NodeId, String), Arc<Peer>>;

/// The openraft network factory of one node on the hand-written network.
#[derive(Clone)]
pub struct BaselineNetwork {
    me: Identity,
    peers: Arc<Mutex<Peers>>,
}

impl BaselineNetwork {
    /// The network of the Raft node `me`; targets are dialed at the address their
    /// [`Node`] records.
    pub fn new(me: Identity) -> Self {
        BaselineNetwork {
            me,
            peers: Arc::default(),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for BaselineNetwork {
    type Network = BaselineConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        let peer = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((target, node.addr.clone()))
            .or_insert_with(|| {
                Arc::new(Peer {
                    addr: node.addr.clone(),
                    conn: tokio::sync::Mutex::new(None),
                })
            })
            .clone();
        BaselineConnection {
            peer,
            me: self.me,
            target,
            addressed: node.incarnation,
        }
    }
}

/// One node's openraft client for one target on the hand-written network.
#[derive(Clone)]
pub struct BaselineConnection {
    peer: Arc<Peer>,
    me: Identity,
    target: NodeId,
    addressed: Incarnation,
}

impl BaselineConnection {
    fn envelope<T>(&self, body: T) -> Envelope<T> {
        Envelope {
            from: self.me,
            to: self.addressed,
            body,
        }
    }

    fn error(&self, e: CallError, action: RPCTypes, ttl: Duration) -> RPCError<TypeConfig> {
        match e {
            CallError::Timeout => RPCError::Timeout(RpcTimeout {
                action,
                id: self.me.id,
                target: self.target,
                timeout: ttl,
            }),
            other => RPCError::Unreachable(Unreachable::new(&other)),
        }
    }

    /// One request of `kind` on `conn`, its answer decoded.
    async fn call_on<T: Serialize, R: DeserializeOwned>(
        &self,
        conn: &Conn,
        kind: u8,
        body: T,
        action: RPCTypes,
        ttl: Duration,
    ) -> Result<R, RPCError<TypeConfig>> {
        let env = self.envelope(body);
        let answer = conn
            .call(|id| frame(id, kind, &env), ttl)
            .await
            .map_err(|e| self.error(e, action, ttl))?;
        serde_json::from_slice(&answer).map_err(|e| self.error(e.into(), action, ttl))
    }

    async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        kind: u8,
        body: T,
        action: RPCTypes,
        ttl: Duration,
    ) -> Result<R, RPCError<TypeConfig>> {
        let conn = self
            .peer
            .conn()
            .await
            .map_err(|e| self.error(e, action, ttl))?;
        self.call_on(&conn, kind, body, action, ttl).await
    }

    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
        ttl: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let fail = |e| match self.error(e, RPCTypes::InstallSnapshot, ttl) {
            RPCError::Timeout(t) => StreamingError::Timeout(t),
            RPCError::Unreachable(u) => StreamingError::Unreachable(u),
            other => StreamingError::Unreachable(Unreachable::new(&other)),
        };
        let header = serde_json::to_vec(&SnapshotHeader {
            from: self.me,
            to: self.addressed,
            vote,
            meta: snapshot.meta,
        })
        .map_err(|e| fail(e.into()))?;
        let header_len = u32::try_from(header.len()).map_err(|_| fail(CallError::Malformed))?;
        let data = snapshot.snapshot;
        let build = |id| {
            let mut buf = BytesMut::with_capacity(13 + header.len() + data.len());
            buf.put_u64(id);
            buf.put_u8(kind::SNAPSHOT);
            buf.put_u32(header_len);
            buf.put_slice(&header);
            buf.put_slice(&data);
            Ok(buf.freeze())
        };
        let conn = self.peer.conn().await.map_err(fail)?;
        let answer = conn.call(build, ttl).await.map_err(fail)?;
        serde_json::from_slice(&answer).map_err(|e| fail(e.into()))
    }
}

impl RaftNetworkV2<TypeConfig> for BaselineConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(kind::APPEND, rpc, RPCTypes::AppendEntries, ttl)
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
        let this = self.clone();
        let ttl = option.soft_ttl();
        Box::pin(async move {
            // One connection for the whole stream: its requests leave in order, and the
            // follower applies them in order.
            let conn = this
                .peer
                .conn()
                .await
                .map_err(|e| this.error(e, RPCTypes::AppendEntries, ttl))?;
            let results = pipelined_appends(input, PIPELINE, move |req| {
                let (this, conn) = (this.clone(), conn.clone());
                async move {
                    this.call_on(&conn, kind::APPEND, req, RPCTypes::AppendEntries, ttl)
                        .await
                }
            });
            Ok(results)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(kind::VOTE, rpc, RPCTypes::Vote, ttl).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        self.call(kind::PRE_VOTE, rpc, RPCTypes::Vote, ttl).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let ttl = option.hard_ttl();
        tokio::select! {
            r = self.send_snapshot(vote, snapshot, ttl) => r,
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// The [`Forward`] of a node on the hand-written network: it forwards nothing.
///
/// The benchmark's clients write to the leader's [`KvNode`], which never forwards; a write that
/// reaches a node after it lost leadership fails with [`ForwardError::Unreachable`] (nothing
/// was sent, so nothing was done) instead of travelling to the new leader.
pub struct NoForward;

impl Forward for NoForward {
    fn forward_write(&self, leader: NodeId, _req: Request) -> ForwardFuture<'_, Response> {
        Box::pin(std::future::ready(Err(ForwardError::Unreachable(leader))))
    }

    fn forward_read(&self, leader: NodeId, _key: String) -> ForwardFuture<'_, Option<String>> {
        Box::pin(std::future::ready(Err(ForwardError::Unreachable(leader))))
    }
}

// ---------------------------------------------------------------------------------------------
// The serving side.

/// A node's listener serving its Raft RPCs; dropping it stops the listener and every
/// connection.
pub struct BaselineServer {
    _accept: AbortOnDropHandle<()>,
}

impl BaselineServer {
    /// Serves `kv`'s Raft RPCs on `listener`.
    pub fn start(listener: TcpListener, kv: KvNode) -> BaselineServer {
        let accept = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            conns.spawn(serve_conn(stream, kv.clone()));
                        }
                        // A failed accept (out of descriptors) ends serving.
                        Err(_) => return,
                    },
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        BaselineServer {
            _accept: AbortOnDropHandle::new(accept),
        }
    }
}

/// Serves one connection: appends one at a time in arrival order, votes and snapshots
/// concurrently (at most [`MAX_CONCURRENT`]).
async fn serve_conn(stream: TcpStream, kv: KvNode) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let (r, w) = stream.into_split();
    let (out, rx) = mpsc::channel::<Bytes>(QUEUE);
    let mut tasks = JoinSet::new();
    tasks.spawn(write_frames(rx, FramedWrite::new(w, codec()), || {}));
    let (appends, mut append_rx) = mpsc::channel::<(u64, Bytes)>(PIPELINE);
    let (raft, answers) = (kv.clone(), out.clone());
    tasks.spawn(async move {
        while let Some((id, body)) = append_rx.recv().await {
            let answer = append(&raft, &body).await;
            if answers.send(answer_frame(id, answer)).await.is_err() {
                return;
            }
        }
    });
    let mut frames = FramedRead::new(r, codec());
    while let Some(Ok(frame)) = frames.next().await {
        while tasks.try_join_next().is_some() {}
        let Ok((id, kind, body)) = split(frame) else {
            return;
        };
        if kind == kind::APPEND {
            if appends.send((id, body)).await.is_err() {
                return;
            }
            continue;
        }
        if tasks.len() >= MAX_CONCURRENT + 2 {
            let refusal = Err("too many requests in progress".to_owned());
            if out.send(answer_frame(id, refusal)).await.is_err() {
                return;
            }
            continue;
        }
        let (kv, out) = (kv.clone(), out.clone());
        tasks.spawn(async move {
            let answer = match kind {
                kind::VOTE | kind::PRE_VOTE => vote(&kv, kind, &body).await,
                kind::SNAPSHOT => install_snapshot(&kv, body).await,
                other => Err(format!("unknown request kind {other}")),
            };
            let _ = out.send(answer_frame(id, answer)).await;
        });
    }
}

/// The answer frame of request `id`: the JSON answer, or a refusal and its reason.
fn answer_frame(id: u64, answer: Result<Bytes, String>) -> Bytes {
    let (status, body) = match answer {
        Ok(body) => (status::OK, body),
        Err(why) => (status::REFUSED, Bytes::from(why)),
    };
    let mut buf = BytesMut::with_capacity(9 + body.len());
    buf.put_u64(id);
    buf.put_u8(status);
    buf.put_slice(&body);
    buf.freeze()
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, String> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

async fn append(kv: &KvNode, body: &[u8]) -> Result<Bytes, String> {
    let env: Envelope<AppendEntriesRequest<TypeConfig>> =
        serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let resp = kv
        .handle_append(env.to, env.body)
        .await
        .map_err(|e| e.to_string())?;
    encode(&resp)
}

async fn vote(kv: &KvNode, kind: u8, body: &[u8]) -> Result<Bytes, String> {
    let env: Envelope<VoteRequest<TypeConfig>> =
        serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let pre_vote = kind != kind::VOTE;
    let resp = kv.handle_vote(&env.from, env.to, env.body, pre_vote).await;
    encode(&resp.map_err(|e| e.to_string())?)
}

async fn install_snapshot(kv: &KvNode, mut body: Bytes) -> Result<Bytes, String> {
    if body.len() < 4 {
        return Err("malformed snapshot frame".to_owned());
    }
    let header_len = body.get_u32() as usize;
    if body.len() < header_len {
        return Err("malformed snapshot frame".to_owned());
    }
    let header: SnapshotHeader =
        serde_json::from_slice(&body.split_to(header_len)).map_err(|e| e.to_string())?;
    let snapshot = Snapshot {
        meta: header.meta,
        snapshot: body.to_vec(),
    };
    let resp = kv
        .handle_snapshot(header.to, header.vote, snapshot)
        .await
        .map_err(|e| e.to_string())?;
    encode(&resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_into_id_tag_and_body() {
        let f = frame(7, kind::VOTE, &"x").unwrap();
        let (id, tag, body) = split(BytesMut::from(&f[..])).unwrap();
        assert_eq!((id, tag, &body[..]), (7, kind::VOTE, &b"\"x\""[..]));
        assert!(split(BytesMut::from(&[0u8; 8][..])).is_err());
        let a = answer_frame(9, Err("no".into()));
        let (id, tag, body) = split(BytesMut::from(&a[..])).unwrap();
        assert_eq!((id, tag, &body[..]), (9, status::REFUSED, &b"no"[..]));
    }
}
