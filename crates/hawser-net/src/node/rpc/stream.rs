//! Byte streams to node ids: [`NodeStream`], [`InboundStreams`], and the one-byte answer an
//! accepting node gives an opener.
//!
//! On a session, an application stream opens like the node's own streams: the session's
//! stream header (protocol and version), then one length-prefixed framed hello naming the
//! opening node (`hawser_proto::wire::node::FramedHello`). The acceptor checks the hello as
//! it checks a messages stream's (the pins of the session's proven identity, the
//! membership), then writes one status byte ([`StreamStatus`], `hawser_proto::wire::stream`);
//! after `Accepted`, the stream is the application's, both ways.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use hawser_proto::node::NodeId;
pub(crate) use hawser_proto::wire::stream::StreamStatus;
use hawser_proto::wire::stream::STREAM_STATUS_LEN;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use super::{bump, get, ServeError, StreamError};
use crate::session::{ProtocolId, Stream, FIRST_APPLICATION_ID};

/// Reads the acceptor's status byte from a freshly opened stream, within `timeout`.
pub(crate) async fn read_stream_status<S: AsyncRead + Unpin>(
    stream: &mut S,
    protocol: ProtocolId,
    timeout: Duration,
) -> Result<(), StreamError> {
    let mut b = [0u8; STREAM_STATUS_LEN];
    match tokio::time::timeout(timeout, stream.read_exact(&mut b)).await {
        Err(_) => Err(StreamError::Io(io::ErrorKind::TimedOut.into())),
        Ok(Err(e)) => Err(StreamError::Io(e)),
        Ok(Ok(_)) => match StreamStatus::parse(&b) {
            Ok(StreamStatus::Accepted) => Ok(()),
            Ok(StreamStatus::NoHandler) => Err(StreamError::NoHandler(protocol)),
            Ok(StreamStatus::Overloaded) => Err(StreamError::Overloaded),
            Err(_) => Err(StreamError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "unknown stream status",
            ))),
        },
    }
}

/// A bidirectional byte stream to another node, for one protocol: a multiplexed stream of
/// the session between them (or an in-process pipe on the in-memory network). Reads and
/// writes as a tokio byte stream; `shutdown` half-closes; dropping it resets it.
pub struct NodeStream {
    io: Io,
    protocol: ProtocolId,
}

enum Io {
    Session(Stream),
    Memory(DuplexStream),
}

impl std::fmt::Debug for NodeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.io {
            Io::Session(_) => "session",
            Io::Memory(_) => "memory",
        };
        f.debug_struct("NodeStream")
            .field("protocol", &self.protocol)
            .field("over", &kind)
            .finish()
    }
}

impl NodeStream {
    /// A stream over a session's stream.
    pub(crate) fn session(stream: Stream) -> NodeStream {
        let protocol = stream.protocol();
        NodeStream {
            io: Io::Session(stream),
            protocol,
        }
    }

    /// A stream over an in-process pipe.
    pub(crate) fn memory(pipe: DuplexStream, protocol: ProtocolId) -> NodeStream {
        NodeStream {
            io: Io::Memory(pipe),
            protocol,
        }
    }

    /// The stream's protocol.
    pub fn protocol(&self) -> ProtocolId {
        self.protocol
    }

    /// The protocol version both nodes agreed on in their session (for the in-memory
    /// network: the highest this node registered).
    pub fn version(&self) -> Option<u16> {
        match &self.io {
            Io::Session(s) => Some(s.version()),
            Io::Memory(_) => None,
        }
    }
}

impl AsyncRead for NodeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Session(s) => Pin::new(s).poll_read(cx, buf),
            Io::Memory(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NodeStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Session(s) => Pin::new(s).poll_write(cx, buf),
            Io::Memory(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Session(s) => Pin::new(s).poll_flush(cx),
            Io::Memory(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Session(s) => Pin::new(s).poll_shutdown(cx),
            Io::Memory(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The inbound streams of one protocol, as
/// [`Node::accept_streams`](crate::node::Node::accept_streams) gives them: each with the
/// node that opened it. At most `RpcSettings::stream_backlog` wait; more are refused, and
/// their openers get `StreamError::Overloaded`. Dropping it stops accepting the protocol's
/// streams.
#[derive(Debug)]
pub struct InboundStreams {
    rx: mpsc::Receiver<(NodeId, NodeStream)>,
    protocol: ProtocolId,
}

impl InboundStreams {
    /// The protocol accepted.
    pub fn protocol(&self) -> ProtocolId {
        self.protocol
    }

    /// The next stream and the node that opened it, or `None` once the node has stopped.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<(NodeId, NodeStream)> {
        self.rx.recv().await
    }
}

/// The acceptors of each protocol's streams, and the stream counters.
#[derive(Debug)]
pub(crate) struct Streams {
    /// The application protocols of `Settings::protocols` (streams need one of them).
    protocols: Vec<ProtocolId>,
    backlog: usize,
    acceptors: Mutex<HashMap<ProtocolId, mpsc::Sender<(NodeId, NodeStream)>>>,
    stopped: AtomicBool,
    opened: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl Streams {
    /// Streams of `protocols`, at most `backlog` waiting per acceptor.
    pub fn new(protocols: Vec<ProtocolId>, backlog: usize) -> Streams {
        Streams {
            protocols,
            backlog: backlog.max(1),
            acceptors: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn acceptors(&self) -> MutexGuard<'_, HashMap<ProtocolId, mpsc::Sender<(NodeId, NodeStream)>>> {
        // A poisoned lock is recovered: the table is plain data.
        self.acceptors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Streams opened, accepted and refused so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (get(&self.opened), get(&self.accepted), get(&self.refused))
    }

    /// Whether `protocol` is one of `Settings::protocols`.
    pub fn is_registered(&self, protocol: ProtocolId) -> bool {
        self.protocols.contains(&protocol)
    }

    /// The receiver of `protocol`'s inbound streams (see `Node::accept_streams`).
    pub fn accept_streams(&self, protocol: ProtocolId) -> Result<InboundStreams, ServeError> {
        if protocol.0 < FIRST_APPLICATION_ID {
            return Err(ServeError::Reserved(protocol));
        }
        if !self.is_registered(protocol) {
            return Err(ServeError::NotRegistered(protocol));
        }
        if self.stopped.load(Ordering::Acquire) {
            return Err(ServeError::Stopped);
        }
        let mut acceptors = self.acceptors();
        if acceptors.get(&protocol).is_some_and(|a| !a.is_closed()) {
            return Err(ServeError::AlreadyServed(protocol));
        }
        let (tx, rx) = mpsc::channel(self.backlog);
        acceptors.insert(protocol, tx);
        Ok(InboundStreams { rx, protocol })
    }

    /// Reserves room for one stream of `protocol` at its acceptor: the status to answer, and
    /// where the stream goes once accepted.
    pub fn reserve_stream(
        &self,
        protocol: ProtocolId,
    ) -> Result<mpsc::OwnedPermit<(NodeId, NodeStream)>, StreamStatus> {
        let acceptor = self.acceptors().get(&protocol).cloned();
        let refused = match acceptor.map(mpsc::Sender::try_reserve_owned) {
            Some(Ok(permit)) => return Ok(permit),
            Some(Err(mpsc::error::TrySendError::Full(_))) => StreamStatus::Overloaded,
            Some(Err(mpsc::error::TrySendError::Closed(_))) | None => StreamStatus::NoHandler,
        };
        bump(&self.refused);
        Err(refused)
    }

    /// Counts a stream handed to an acceptor.
    pub fn note_accepted(&self) {
        bump(&self.accepted);
    }

    /// Counts a stream opened to a peer.
    pub fn note_opened(&self) {
        bump(&self.opened);
    }

    /// Whether the node stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The node stops: acceptors' receivers end.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.acceptors().clear();
    }
}
