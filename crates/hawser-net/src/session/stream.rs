//! The per-protocol streams of a session: the stream header, routing inbound streams to
//! their protocol's queue, [`InboundStreams`] and [`Stream`].

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hawser_proto::wire::refusal::{Refusal, MAX_REFUSAL_LEN};
use hawser_proto::wire::stream::{self as stream_wire, StreamHeader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};
use tracing::{debug, warn};

use super::error::CloseReason;
use super::registry::{Negotiated, ProtocolId};
use super::status::Status;

/// Bytes of the header an opener writes first on every stream: `u32 protocol id | u16
/// version`, big-endian (`hawser_proto::wire::stream`).
pub const STREAM_HEADER_LEN: usize = stream_wire::STREAM_HEADER_LEN;

/// The reserved protocol of the stream that carries a refusal
/// ([`Session::refuse`](super::Session::refuse)): never registered nor negotiated, its
/// stream (header version 1) holds one `hawser_proto::wire::refusal` and ends.
pub use super::registry::REFUSAL_STREAM;

/// Where `route_inbound` queues each inbound stream, per protocol.
pub(super) struct Routes {
    pub senders: HashMap<ProtocolId, mpsc::Sender<Stream>>,
    pub negotiated: Negotiated,
    pub timeout: Duration,
    pub status: Arc<Status>,
}

/// Reads each inbound stream's header (concurrently, each under the header timeout) and
/// queues it for its protocol. Unknown protocols or versions are reset.
pub(super) async fn route_inbound(mut raw: mpsc::Receiver<yamux::Stream>, routes: Routes) {
    let routes = Arc::new(routes);
    // At most `mux.max_streams` entries: yamux refuses streams beyond its cap.
    let mut pending = JoinSet::new();
    loop {
        tokio::select! {
            s = raw.recv() => match s {
                Some(s) => { pending.spawn(route_one(s, routes.clone())); }
                None => return,
            },
            Some(_) = pending.join_next(), if !pending.is_empty() => {}
        }
    }
}

async fn route_one(raw: yamux::Stream, routes: Arc<Routes>) {
    let mut io = raw.compat();
    let mut header = [0u8; STREAM_HEADER_LEN];
    match tokio::time::timeout(routes.timeout, io.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        _ => {
            debug!("inbound stream sent no header in time; reset");
            return;
        }
    }
    let header = StreamHeader::from_bytes(header);
    let (protocol, version) = (ProtocolId(header.protocol), header.version);
    if protocol == REFUSAL_STREAM {
        take_refusal(io, &routes).await;
        return;
    }
    if routes.negotiated.version(protocol) != Some(version) {
        warn!(%protocol, version, "inbound stream for a protocol or version not agreed; reset");
        return;
    }
    let Some(tx) = routes.senders.get(&protocol) else {
        return;
    };
    let stream = Stream {
        io,
        protocol,
        version,
        status: routes.status.clone(),
        window: MIN_READ_WINDOW,
    };
    if tx.try_send(stream).is_err() {
        warn!(%protocol, "inbound stream queue full or not taken; reset");
    }
}

/// Reads the refusal an inbound [`REFUSAL_STREAM`] carries (at most one, under the header
/// timeout) and records it as the reason the session ends. Dropping the stream afterwards
/// tells the refusing end it was taken.
async fn take_refusal(mut io: Compat<yamux::Stream>, routes: &Routes) {
    let mut bytes = Vec::with_capacity(MAX_REFUSAL_LEN);
    let limit = MAX_REFUSAL_LEN as u64 + 1;
    let read = tokio::time::timeout(
        routes.timeout,
        (&mut io).take(limit).read_to_end(&mut bytes),
    )
    .await;
    match read.map(|r| r.map(|_| Refusal::parse(&bytes))) {
        Ok(Ok(Ok(refusal))) => {
            debug!(reason = %refusal, "session refused by peer");
            routes.status.fail(CloseReason::Refused(refusal));
        }
        _ => debug!("unreadable refusal stream; reset"),
    }
}

/// The inbound streams of one protocol on one session.
#[derive(Debug)]
pub struct InboundStreams {
    rx: mpsc::Receiver<Stream>,
}

impl InboundStreams {
    /// The inbound streams queued on `rx`.
    pub(super) fn new(rx: mpsc::Receiver<Stream>) -> InboundStreams {
        InboundStreams { rx }
    }

    /// The next inbound stream, or `None` once the session has ended.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

/// One bidirectional stream of a session, bound to one protocol and version. Reads and
/// writes as a tokio byte stream; `shutdown` half-closes; dropping it resets it.
pub struct Stream {
    io: Compat<yamux::Stream>,
    protocol: ProtocolId,
    version: u16,
    /// The session's, to count writes that wait.
    status: Arc<Status>,
    /// Bytes the next read offers yamux (see [`READ_WINDOW`]).
    window: usize,
}

impl Stream {
    /// A stream of `protocol` at `version` over a raw yamux stream of the session whose
    /// status is `status`.
    pub(super) fn new(
        raw: yamux::Stream,
        protocol: ProtocolId,
        version: u16,
        status: Arc<Status>,
    ) -> Stream {
        Stream {
            io: raw.compat(),
            protocol,
            version,
            status,
            window: MIN_READ_WINDOW,
        }
    }

    /// The stream's protocol.
    pub fn protocol(&self) -> ProtocolId {
        self.protocol
    }

    /// The protocol version both ends agreed on.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The stream as a sequence of messages, each behind a 4-byte length, at most
    /// `max_message` bytes (for protocols that exchange messages rather than bytes).
    pub fn into_framed(self, max_message: usize) -> Framed<Stream, LengthDelimitedCodec> {
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(max_message)
            .new_codec();
        Framed::new(self, codec)
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("protocol", &self.protocol)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Most bytes one read of a [`Stream`] takes. yamux reads into initialised memory, so each
/// read (even one that finds nothing and returns `Pending`) first zeroes the room it is
/// given; a `Framed` reader offers all its spare capacity, often far more than is waiting.
/// The room offered therefore follows what reads return: it doubles, up to this, while reads
/// fill it, and halves, down to [`MIN_READ_WINDOW`], while they return less than a quarter.
const READ_WINDOW: usize = 16 * 1024;

/// Fewest bytes one read of a [`Stream`] offers (see [`READ_WINDOW`]).
const MIN_READ_WINDOW: usize = 1024;

/// The room to offer after a read of `n` bytes into `offered` bytes, from `window`.
fn next_window(window: usize, offered: usize, n: usize) -> usize {
    if n == offered {
        // A read that filled a smaller offer says nothing of what was waiting.
        if offered == window {
            (window * 2).min(READ_WINDOW)
        } else {
            window
        }
    } else if n < window / 4 {
        (window / 2).max(MIN_READ_WINDOW)
    } else {
        window
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let room = buf.remaining().min(self.window);
        let dst = buf.initialize_unfilled_to(room);
        let raw = Pin::new(self.io.get_mut());
        let n = std::task::ready!(futures_util::io::AsyncRead::poll_read(raw, cx, dst))?;
        buf.advance(n);
        self.window = next_window(self.window, room, n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        if result.is_pending() {
            // yamux waits for send window (the peer has not read enough yet) or for room in
            // its connection's frame queue.
            self.status.note_write_wait();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{next_window, MIN_READ_WINDOW, READ_WINDOW};

    #[test]
    fn the_read_window_follows_what_reads_return_within_its_bounds() {
        // Full reads double it, up to the cap.
        let mut w = MIN_READ_WINDOW;
        let mut sizes = Vec::new();
        for _ in 0..8 {
            w = next_window(w, w, w);
            sizes.push(w);
        }
        assert_eq!(sizes[..4], [2048, 4096, 8192, 16384]);
        assert!(sizes.iter().all(|&s| s <= READ_WINDOW));
        // A full read of less than the window (the caller offered less) does not grow it.
        assert_eq!(next_window(4096, 100, 100), 4096);
        // Reads of under a quarter halve it, down to the floor.
        let mut w = READ_WINDOW;
        for _ in 0..8 {
            w = next_window(w, w, 70);
        }
        assert_eq!(w, MIN_READ_WINDOW);
        // Reads between a quarter and the whole leave it.
        assert_eq!(next_window(8192, 8192, 4096), 8192);
        // The end of the stream (0 bytes) shrinks it like any small read.
        assert_eq!(next_window(8192, 8192, 0), 4096);
    }
}
