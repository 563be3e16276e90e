//! Errors of the LSP operations, one enum per operation.

use crate::wire::ConnId;

/// Why `write` refused a message. Nothing is queued when it fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The connection (or the endpoint) was closed by this side.
    #[error("connection closed")]
    Closed,
    /// The peer stopped answering: the connection was lost.
    #[error("connection lost")]
    Lost,
    /// The client is not connected yet (or its connect failed).
    #[error("not connected")]
    NotConnected,
    /// No connection has this id (never existed, or already ended and reported).
    #[error("unknown connection {0}")]
    UnknownConn(ConnId),
    /// The per-connection send queue (`Config::max_send_queue`) is full.
    #[error("send queue full ({0} messages)")]
    QueueFull(usize),
    /// The payload exceeds `Config::max_payload`.
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

/// How a connection ended, as reported to the reader after its buffered data.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// This side closed it and every pending message was acknowledged.
    Closed,
    /// The peer was silent for `epoch_limit` epochs (or the connect was never acknowledged).
    Lost,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EndReason::Closed => "closed",
            EndReason::Lost => "lost",
        })
    }
}
