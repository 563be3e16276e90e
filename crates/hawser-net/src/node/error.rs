//! Errors of the node API, one enum per operation.

use std::io;

use hawser_proto::node::{MembershipError, NodeId};

use super::config::SettingsError;
use crate::session::transport::RegisterError;
use crate::session::{HandshakeError, KeyError, OpenError, PeerId, TransportAddr};

/// Why a message was not queued: the engine's refusal, as it gave it.
pub use hawser_proto::node::engine::SendError;

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The membership is invalid (too many nodes or addresses).
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The default network needs a listen address (`NodeBuilder::listen`).
    #[error("no listen address given")]
    NoListenAddr,
    /// A socket could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS's error.
        source: io::Error,
    },
    /// The in-memory hub already has a running node with this id.
    #[error("{0} is already running on this hub")]
    DuplicateId(NodeId),
    /// No identity was given and none could be generated (the OS random source failed).
    #[error("identity: {0}")]
    Identity(#[from] KeyError),
    /// A transport given to `NodeBuilder::transport` could not be registered (an invalid or
    /// taken scheme, or too many).
    #[error("transport: {0}")]
    Transport(#[from] RegisterError),
    /// An extra listener (`Settings::listen_also`, or the LSP listener) could not be bound.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: TransportAddr,
        /// The transport's error.
        source: io::Error,
    },
}

/// Why a reliable connection (a session) to or from a peer failed before carrying any
/// message. The node traces it and counts it (`NodeStats::handshake_failures`,
/// `NodeStats::peer_mismatches`, `PeerStats::connect_failures`), and the engine dials again
/// after its back-off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The transport connection could not be made.
    #[error("transport: {0}")]
    Transport(#[source] io::Error),
    /// The session handshake failed (another network id, a bad signature, a pin given to
    /// the session layer, a timeout, ...).
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer proved an identity that is not among those pinned for its node.
    #[error("{node} proved identity {actual}, not a pinned one ({expected:?})")]
    PeerMismatch {
        /// The node dialled, or named by the peer's hello.
        node: NodeId,
        /// The pinned `PeerId`s.
        expected: Vec<PeerId>,
        /// The one the peer proved.
        actual: PeerId,
    },
    /// A node stream could not be opened (the peer does not speak the node protocols).
    #[error("open: {0}")]
    Open(#[from] OpenError),
    /// Writing the in-session hello failed.
    #[error("hello: {0}")]
    Hello(#[source] io::Error),
}

impl SessionError {
    /// Whether the peer proved another identity than the pinned one.
    pub fn is_peer_mismatch(&self) -> bool {
        matches!(
            self,
            SessionError::PeerMismatch { .. }
                | SessionError::Handshake(HandshakeError::PeerMismatch { .. })
        )
    }
}
