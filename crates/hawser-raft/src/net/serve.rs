//! The serving side: the Raft protocols answered on a hawser node.

use super::*;

/// Why the Raft protocols could not be served on a hawser node.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// hawser refused to serve a protocol (already served, node stopped).
    #[error(transparent)]
    Hawser(#[from] hawser_net::node::ServeError),
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
            let _ = match raft.handle_append(env.to, env.body).await {
                Ok(resp) => req.respond(encode(&resp)),
                Err(e) => req.refuse(refusal_code(&e), &e.to_string()),
            };
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
                VoteCall::Vote(rpc) => raft
                    .handle_vote(&env.from, env.to, rpc, false)
                    .await
                    .map(|r| encode(&r)),
                VoteCall::PreVote(rpc) => raft
                    .handle_vote(&env.from, env.to, rpc, true)
                    .await
                    .map(|r| encode(&r)),
                VoteCall::TransferLeader(rpc) => match raft.check_addressed(env.to) {
                    Err(why) => Err(Handle::Refused(why)),
                    Ok(()) => raft
                        .raft()
                        .handle_transfer_leader(rpc)
                        .await
                        .map(|r| encode(&r))
                        .map_err(|e| Handle::Raft(e.to_string())),
                },
            };
            let _ = match answer {
                Ok(bytes) => req.respond(bytes),
                Err(e) => req.refuse(refusal_code(&e), &e.to_string()),
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
        // Refused before reading megabytes (`handle_snapshot` checks again).
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
        kv.handle_snapshot(header.to, header.vote, snapshot)
            .await
            .map_err(|e| e.to_string())
    };
    let answer = encode(&answer);
    stream.write_u32(answer.len() as u32).await?;
    stream.write_all(&answer).await?;
    stream.shutdown().await
}

/// The refusal code a network answers an unhandled Raft request with.
fn refusal_code(e: &Handle) -> u32 {
    match e {
        Handle::Refused(_) => code::REFUSED,
        _ => code::RAFT,
    }
}
