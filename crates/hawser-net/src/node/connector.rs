//! [`Connector`]: what differs between the built-in networks (how to connect to a destination and
//! how bytes move); the engine in `super::core` does the rest.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hawser_proto::node::{FrameBatch, Member, NodeId};
use tokio::sync::mpsc;

use super::config::Settings;
use super::core::Core;
use super::error::SendError;
use super::reach::Frame;
use super::rpc::{NodeStream, StreamError};
use crate::session::ProtocolId;

/// Most payload bytes one batch of application messages carries, written in one
/// [`Connector::write_app_batch`] or received and handed on together (a single larger message goes
/// alone). Documented in `docs/node.md`.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;
/// Most application messages one batch carries (see [`BATCH_BYTES`]).
pub(crate) const BATCH_MESSAGES: usize = 1024;

/// How one network connects to a destination and moves bytes (the part that differs between
/// the default network and the in-memory one).
pub(crate) trait Connector: Send + Sync + Sized + 'static {
    /// One open reliable connection.
    type Conn: Send + 'static;

    /// Checks that `member` can be reached with this delivery; returns the largest payload.
    fn route(
        &self,
        settings: &Settings,
        member: &Member,
        reliable: bool,
    ) -> Result<usize, SendError>;

    /// Opens a reliable connection to `member` and says hello; returns it with the address of
    /// `member` it goes to (for reachability).
    fn dial(
        &self,
        core: &Arc<Core<Self>>,
        member: Member,
    ) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;

    /// Writes one frame on a connection.
    fn write(conn: &mut Self::Conn, frame: Frame) -> impl Future<Output = io::Result<()>> + Send;

    /// Writes a batch of queued application messages on a connection, in order, as
    /// [`write`](Self::write) of one [`Frame::App`] each would (the default does exactly that,
    /// with the payloads sliced out of the batch); links whose wire carries the queue's frame
    /// format (`wire::node::app_frame_header`) override it to write the batch's bytes as they
    /// are.
    ///
    /// # Errors
    /// [`BatchError`], saying how many messages, from the first, were written whole before
    /// the failure: the rest (including one written in part) were not.
    fn write_app_batch(
        conn: &mut Self::Conn,
        batch: &FrameBatch,
    ) -> impl Future<Output = Result<(), BatchError>> + Send {
        async move {
            use hawser_proto::wire::node::FRAME_LEN_PREFIX;
            for (written, (frame, _)) in batch.frames().enumerate() {
                // Each queued frame is its length prefix, then its kind byte and body.
                let body = frame.slice(FRAME_LEN_PREFIX.min(frame.len())..);
                let frame = Frame::parse(body).map_err(|e| BatchError {
                    written,
                    error: io::Error::new(io::ErrorKind::InvalidData, e),
                })?;
                Self::write(conn, frame)
                    .await
                    .map_err(|error| BatchError { written, error })?;
            }
            Ok(())
        }
    }

    /// Writes on `conn` so far that had to wait for its multiplexer (0, the default, for
    /// links without one).
    fn write_waits(conn: &Self::Conn) -> u64 {
        let _ = conn;
        0
    }

    /// The addresses of `member` reachability knows it by (tried by `dial`).
    fn reach_addrs(&self, member: &Member) -> Vec<SocketAddr>;

    /// Resolves when the connection was closed by the peer or broke. Cancel safe.
    fn closed(conn: &mut Self::Conn) -> impl Future<Output = ()> + Send;

    /// Sends one datagram without waiting.
    fn send_datagram(
        &self,
        core: &Arc<Core<Self>>,
        to: &Member,
        payload: &Bytes,
    ) -> Result<(), SendError>;

    /// Sends one datagram, waiting for room.
    fn send_datagram_wait(
        &self,
        core: &Arc<Core<Self>>,
        to: Member,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Releases sockets and registrations at stop (tasks are cancelled separately).
    fn shutdown(&self);

    /// A sender that writes internal frames on `conn` without waiting behind application
    /// messages (a stream of their own), if the connection has one.
    fn control_sender(conn: &Self::Conn) -> Option<mpsc::Sender<Frame>> {
        let _ = conn;
        None
    }

    /// This node's `PeerId`, for links with sessions.
    fn peer_id(&self) -> Option<crate::session::PeerId> {
        None
    }

    /// Every address this node accepts reliable connections on, for links that have them.
    fn listen_addrs(&self) -> Vec<crate::session::TransportAddr> {
        Vec::new()
    }

    /// The session a connection runs on, for links with sessions (streams are opened on it).
    fn session(conn: &Self::Conn) -> Option<crate::session::Session> {
        let _ = conn;
        None
    }

    /// Opens a stream of `protocol` to member `to` (`Node::open_stream`); links without
    /// streams (the default) refuse with `Unsupported`.
    fn open_stream(
        &self,
        core: &Arc<Core<Self>>,
        to: NodeId,
        protocol: ProtocolId,
    ) -> impl Future<Output = Result<NodeStream, StreamError>> + Send {
        let _ = (core, to, protocol);
        async { Err(StreamError::Unsupported) }
    }
}

/// A batch write ([`Connector::write_app_batch`]) failed.
#[derive(Debug)]
pub(crate) struct BatchError {
    /// Messages, from the first, written whole before the failure (each counted sent); the
    /// others are to be written again.
    pub written: usize,
    /// Why the connection failed.
    pub error: io::Error,
}
