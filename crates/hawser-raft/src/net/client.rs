//! The client side: openraft's network factory and connections over hawser, the pipeline of
//! appends, and the back-off.

use super::*;

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
