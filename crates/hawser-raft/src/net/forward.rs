//! Client requests forwarded to the leader, and what a bootstrapping node asks every member.

use super::*;

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
                // Refused before any handler ran (or before it was sent).
                RequestError::NoHandler(_)
                | RequestError::Overloaded { .. }
                | RequestError::QueueFull(_)
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
