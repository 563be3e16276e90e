//! Errors of the session layer, one type per operation. [`HandshakeError`], [`CryptoError`]
//! and [`ConfigError`] are `hawser_proto::session`'s (re-exported here).

use std::io;

pub use hawser_proto::session::error::{ConfigError, CryptoError, HandshakeError};
use hawser_proto::wire::refusal::Refusal;

use super::registry::ProtocolId;

/// Why [`Session::open`](super::Session::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// This node has not registered the protocol.
    #[error("{0} is not registered locally")]
    UnknownProtocol(ProtocolId),
    /// The peer does not offer the protocol, or no common version exists.
    #[error("the peer does not support {0}")]
    UnsupportedByPeer(ProtocolId),
    /// The session has ended.
    #[error("session closed")]
    SessionClosed,
    /// The multiplexer refused to open a stream (stream cap reached, connection failed).
    #[error("mux: {0}")]
    Mux(String),
    /// Writing the stream header failed.
    #[error("stream header: {0}")]
    Io(#[from] io::Error),
}

/// Why [`Session::accept_streams`](super::Session::accept_streams) gave no receiver.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptStreamsError {
    /// This node has not registered the protocol.
    #[error("{0} is not registered locally")]
    UnknownProtocol(ProtocolId),
    /// The receiver of this protocol's inbound streams was already taken.
    #[error("the inbound streams of {0} were already taken")]
    AlreadyTaken(ProtocolId),
}

/// Why [`Listener::bind`](super::Listener::bind) or [`dial`](super::dial) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The address could not be bound or reached.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Why [`dial`](super::dial) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The transport connection could not be made.
    #[error("transport: {0}")]
    Transport(#[source] io::Error),
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

/// Why an established session ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// This end closed it ([`Session::close`](super::Session::close), or every handle dropped).
    #[error("closed locally")]
    Local,
    /// The peer closed it, or the transport reached its end.
    #[error("closed by the peer")]
    Remote,
    /// A message failed authentication or was out of order: the session was attacked or the
    /// transport corrupted data.
    #[error("{0}")]
    Crypto(CryptoError),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The peer broke the multiplexing protocol.
    #[error("mux: {0}")]
    Mux(String),
    /// The peer refused the session after the handshake and said why
    /// ([`Session::refuse`](super::Session::refuse)), inside the session: the refusal is
    /// authenticated.
    #[error("refused by peer: {0}")]
    Refused(Refusal),
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> io::Error {
        let kind = match e {
            OpenError::SessionClosed => io::ErrorKind::NotConnected,
            OpenError::UnknownProtocol(_) | OpenError::UnsupportedByPeer(_) => {
                io::ErrorKind::Unsupported
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
