//! Errors of requests, serving and streams: one enum per operation.

use std::io;

use hawser_proto::node::NodeId;
pub use hawser_proto::wire::rpc::Part;

use crate::session::ProtocolId;

/// Why a request ([`Node::request`](crate::node::Node::request)) has no response: the
/// engine's reason, as it gave it.
pub use hawser_proto::node::engine::RequestError;

/// Why [`Node::serve`](crate::node::Node::serve) or
/// [`Node::accept_streams`](crate::node::Node::accept_streams) gave no receiver.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Ids below 1,024 are hawser's own.
    #[error("{0} is reserved for hawser")]
    Reserved(ProtocolId),
    /// Another receiver serves this protocol (drop it first).
    #[error("{0} is already served")]
    AlreadyServed(ProtocolId),
    /// Streams need the protocol in `Settings::protocols` (negotiated with each peer).
    #[error("{0} is not registered in Settings::protocols")]
    NotRegistered(ProtocolId),
    /// The node has been stopped.
    #[error("node stopped")]
    Stopped,
}

/// Why a handler's answer was not sent ([`InboundRequest::respond`]).
///
/// [`InboundRequest::respond`]: super::InboundRequest::respond
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// The response is above `RpcSettings::max_response`; the caller was told `TooLarge`.
    #[error("response of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The caller cancelled the request, or its deadline passed: nobody waits for the answer.
    #[error("the caller no longer waits for a response")]
    Cancelled,
    /// The node has been stopped, or the caller is no longer a member.
    #[error("the response could not be queued: {0}")]
    Unsent(#[from] crate::node::SendError),
}

/// Why [`Node::open_stream`](crate::node::Node::open_stream) gave no stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// No session to the peer could be made in time (`Settings::connect_timeout`), or
    /// reachability knows it dead.
    #[error("{0} is unreachable")]
    Unreachable(NodeId),
    /// The peer is not in the membership.
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The protocol is not in this node's `Settings::protocols`.
    #[error("{0} is not registered in Settings::protocols")]
    NotRegistered(ProtocolId),
    /// The peer does not speak the protocol, or nobody accepts its streams there.
    #[error("the peer accepts no streams of {0}")]
    NoHandler(ProtocolId),
    /// The peer's backlog of streams for the protocol is full, or the session's stream cap
    /// is reached.
    #[error("the peer's stream backlog or the session's stream cap is full")]
    Overloaded,
    /// The node has been stopped.
    #[error("node stopped")]
    Stopped,
    /// The stream failed while it was being opened.
    #[error("stream: {0}")]
    Io(#[from] io::Error),
}
