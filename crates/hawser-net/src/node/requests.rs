//! Requests and streams on a [`Shell`]: a request waits for its `Event::Response` (and is
//! cancelled at the engine when its caller goes away), handlers answer through
//! [`Responder`], streams open on the session to the peer.

use std::sync::Arc;

use bytes::Bytes;
use hawser_proto::node::engine::{InboundId, RequestId};
use hawser_proto::node::NodeId;
use hawser_proto::wire::rpc::Outcome;
use tokio::sync::oneshot;

use super::error::SendError;
use super::rpc::{
    respond_from_engine, InboundRequests, NodeStream, RequestError, RespondError, Responder,
    ServeError, StreamError,
};
use super::shell::{now, Shell};
use crate::session::ProtocolId;

impl Shell {
    /// Sends a request and waits for its response.
    pub async fn request(
        self: &Arc<Self>,
        to: NodeId,
        protocol: ProtocolId,
        payload: Bytes,
        timeout: Option<std::time::Duration>,
    ) -> Result<Bytes, RequestError> {
        let timeout = timeout.unwrap_or(self.settings.rpc.default_timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let (id, rx) = loop {
            let waiting = {
                let mut st = self.lock();
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let r = st
                    .engine
                    .request(now(), to, protocol.0, &payload, Some(left));
                let out = match r {
                    Ok(id) => {
                        let (tx, rx) = oneshot::channel();
                        st.calls.insert(id, tx);
                        Ok((id, rx))
                    }
                    Err(hawser_proto::node::engine::RequestError::QueueFull(_)) => {
                        // As in `send`: the epoch read under the lock.
                        let room = st.rooms.entry(to).or_default().clone();
                        let seen = room.epoch();
                        Err(Some((room, seen)))
                    }
                    Err(e) => {
                        self.flush(&mut st);
                        return Err(e);
                    }
                };
                self.flush(&mut st);
                out
            };
            match waiting {
                Ok(pair) => break pair,
                Err(Some((room, seen))) => {
                    tokio::select! {
                        () = room.wait(seen) => {}
                        () = tokio::time::sleep_until(deadline) => return Err(RequestError::Timeout),
                        () = self.cancel.cancelled() => return Err(RequestError::Stopped),
                    }
                }
                Err(None) => {}
            }
        };
        let mut guard = Pending {
            shell: self,
            id,
            done: false,
        };
        let result = rx.await.unwrap_or(Err(RequestError::Stopped));
        guard.done = true;
        result
    }

    /// Answers (for [`Responder`]).
    fn answer(self: &Arc<Self>, id: InboundId, outcome: Outcome<'_>) -> Result<(), RespondError> {
        let mut st = self.lock();
        st.serving.forget(id);
        let r = st.engine.respond(now(), id, outcome);
        self.flush(&mut st);
        r.map_err(respond_from_engine)
    }

    /// The receiver of `protocol`'s requests.
    pub fn serve(&self, protocol: ProtocolId) -> Result<InboundRequests, ServeError> {
        self.lock().serving.serve(protocol)
    }

    /// Opens a stream of `protocol` to `to`.
    pub async fn open_stream(
        self: &Arc<Self>,
        to: NodeId,
        protocol: ProtocolId,
    ) -> Result<NodeStream, StreamError> {
        if self.cancel.is_cancelled() || self.streams.is_stopped() {
            return Err(StreamError::Stopped);
        }
        if !self.streams.is_registered(protocol) {
            return Err(StreamError::NotRegistered(protocol));
        }
        {
            let st = self.lock();
            if !st.engine.membership().contains(to) {
                return Err(StreamError::UnknownNode(to));
            }
            let dead = st
                .engine
                .reachability()
                .and_then(|r| r.peer(to))
                .is_some_and(|p| !p.alive);
            if dead {
                return Err(StreamError::Unreachable(to));
            }
        }
        let stream = self.links.open_stream(self, to, protocol).await?;
        self.streams.note_opened();
        Ok(stream)
    }
}

impl Responder for Shell {
    fn respond(&self, id: InboundId, outcome: Outcome<'_>) -> Result<(), RespondError> {
        match self.me.upgrade() {
            Some(me) => me.answer(id, outcome),
            None => Err(RespondError::Unsent(SendError::Stopped)),
        }
    }

    fn forget(&self, id: InboundId) {
        self.lock().serving.forget(id);
    }
}

/// A request of this node in flight: cancelled at the engine (which tells the peer) if its
/// caller's future is dropped.
struct Pending<'a> {
    shell: &'a Arc<Shell>,
    id: RequestId,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.shell.lock();
        if st.calls.remove(self.id) {
            st.engine.cancel(now(), self.id);
            self.shell.flush(&mut st);
        }
    }
}
