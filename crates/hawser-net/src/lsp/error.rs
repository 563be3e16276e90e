//! Errors of the async LSP API.

use std::io;

use hawser_proto::lsp::{EndReason, ParamsError};
use hawser_proto::wire::ConnId;

pub use hawser_proto::lsp::WriteError;

/// Why `Client::connect` or `Server::bind` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A setting is invalid.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// The socket could not be bound or used.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The server never acknowledged the Connect within `epoch_limit` epochs.
    #[error("no answer to Connect within the epoch limit")]
    Timeout,
}

/// Why a client's `read` returned no message: the connection has ended, and everything it
/// received has been read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connection {0}")]
pub struct ClientReadError(pub EndReason);

/// Why a server's `read` returned no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerReadError {
    /// This connection ended (lost, or closed with `close_conn`); all its data was read before.
    #[error("{0} {1}")]
    ConnEnded(ConnId, EndReason),
    /// The server was closed.
    #[error("server closed")]
    ServerClosed,
}

/// Why `close` reported a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// A connection was lost before all its pending messages were acknowledged.
    #[error("connection lost before every pending message was acknowledged")]
    Lost,
}

impl From<ClientReadError> for io::Error {
    fn from(e: ClientReadError) -> io::Error {
        let kind = match e.0 {
            EndReason::Closed => io::ErrorKind::NotConnected,
            _ => io::ErrorKind::ConnectionAborted,
        };
        io::Error::new(kind, e)
    }
}
