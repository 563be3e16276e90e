//! The calling side: the callers waiting for the responses of their requests, by the id the
//! engine gave each request.

use std::collections::HashMap;

use bytes::Bytes;
use hawser_proto::node::engine::{self, RequestId};
use tokio::sync::oneshot;

use super::error::RequestError;

/// Where the response of each request in flight goes (bounded by the engine's
/// `rpc.max_pending`: an entry exists only for a request the engine accepted, and leaves
/// with its `Event::Response` or its caller).
#[derive(Debug, Default)]
pub(crate) struct Calls {
    waiting: HashMap<RequestId, oneshot::Sender<Result<Bytes, RequestError>>>,
}

impl Calls {
    /// Request `id` waits for its response on `tx`.
    pub fn insert(&mut self, id: RequestId, tx: oneshot::Sender<Result<Bytes, RequestError>>) {
        self.waiting.insert(id, tx);
    }

    /// The caller of `id` gave up; whether it was still waiting.
    pub fn remove(&mut self, id: RequestId) -> bool {
        self.waiting.remove(&id).is_some()
    }

    /// Request `id` ended with `result` (from `Event::Response`).
    pub fn complete(&mut self, id: RequestId, result: Result<Bytes, engine::RequestError>) {
        if let Some(tx) = self.waiting.remove(&id) {
            // The caller may have just gone: nobody to tell.
            let _ = tx.send(result);
        }
    }

    /// Every caller is told `Stopped` (the node stops).
    pub fn stop(&mut self) {
        for (_, tx) in self.waiting.drain() {
            let _ = tx.send(Err(RequestError::Stopped));
        }
    }
}
