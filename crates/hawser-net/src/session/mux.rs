//! Stream multiplexing with yamux, its defaults lowered to documented bounds, and the task
//! that drives a yamux connection.
//!
//! yamux (0.13 and later) is poll-based: nothing moves, not even outbound data of an open
//! stream, unless `Connection::poll_next_inbound` is polled. One driver task per session owns
//! the connection and polls it continuously; it opens outbound streams on request and hands
//! inbound streams to the session through a bounded channel (a stream arriving while that
//! channel is full is reset). Because the driver never stops polling, a stream that is only
//! ever written to makes progress (the classic yamux stall cannot happen).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use futures_util::stream::{FuturesUnordered, StreamExt};

use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::TokioAsyncReadCompatExt;
use tracing::{debug, warn};

use super::error::ConfigError;
use super::transport::ByteStream;

/// yamux's initial (and minimum) per-stream receive window.
pub const STREAM_WINDOW: usize = yamux::DEFAULT_CREDIT as usize;

/// Bounds of the multiplexer, per session.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuxConfig {
    /// Most streams open at once (both directions). Default 32 (yamux: 512).
    pub max_streams: usize,
    /// Most bytes received and not yet read, across all streams (the sum of receive
    /// windows). Must be at least 256 KiB × `max_streams`. Default 8 MiB (yamux: 1 GiB).
    pub connection_window: usize,
    /// Largest data frame sent; larger writes are split, so one stream never holds the
    /// connection for longer than one frame. Default 16 KiB.
    pub split_send_size: usize,
}

impl Default for MuxConfig {
    fn default() -> MuxConfig {
        MuxConfig {
            max_streams: 32,
            connection_window: 8 * 1024 * 1024,
            split_send_size: 16 * 1024,
        }
    }
}

impl MuxConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`ConfigError::OutOfRange`] for a stream cap outside 1..=1,024 or a frame size outside
    /// 1 KiB..=64 KiB; [`ConfigError::MuxWindow`] when the window cannot give every stream
    /// 256 KiB.
    pub fn validate(&self) -> Result<(), ConfigError> {
        range("mux.max_streams", self.max_streams, 1, 1024)?;
        range("mux.split_send_size", self.split_send_size, 1024, 64 * 1024)?;
        if self.connection_window < STREAM_WINDOW.saturating_mul(self.max_streams) {
            return Err(ConfigError::MuxWindow {
                window: self.connection_window,
                streams: self.max_streams,
            });
        }
        Ok(())
    }

    /// The yamux configuration. Call [`validate`](Self::validate) first: yamux panics on an
    /// inconsistent window.
    pub(crate) fn to_yamux(&self) -> yamux::Config {
        let mut c = yamux::Config::default();
        // Window first: yamux checks window ≥ 256 KiB × streams on each setter, and its
        // default stream cap (512) needs 128 MiB.
        c.set_max_num_streams(1);
        c.set_max_connection_receive_window(Some(self.connection_window));
        c.set_max_num_streams(self.max_streams);
        c.set_split_send_size(self.split_send_size);
        c
    }
}

pub(crate) fn range(
    name: &'static str,
    value: usize,
    min: usize,
    max: usize,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            name,
            value: value as u64,
            min: min as u64,
            max: max as u64,
        })
    }
}

/// A request to the driver.
pub(crate) enum Command {
    /// Open an outbound stream.
    Open(oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>),
    /// Close the connection gracefully.
    Close,
    /// Run a future on the driver's task (see [`Session::run_on_driver`](super::Session::run_on_driver)).
    Run(Companion),
}

/// A future run on a session's driver task.
pub(crate) type Companion = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How the driver ended.
pub(crate) enum DriverEnd {
    /// Closed on request (or every session handle dropped).
    Local,
    /// The peer closed, or the transport ended.
    Remote,
    /// A connection error.
    Failed(yamux::ConnectionError),
}

/// Drives a yamux connection until it ends.
pub(crate) async fn drive(
    io: Box<dyn ByteStream>,
    config: yamux::Config,
    mode: yamux::Mode,
    mut commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<yamux::Stream>,
) -> DriverEnd {
    let mut conn = yamux::Connection::new(io.compat(), config, mode);
    let mut pending_open: Option<oneshot::Sender<_>> = None;
    let mut closing = false;
    // At most one per session: a node's writer (`Session::run_on_driver` is crate-private).
    let mut companions: FuturesUnordered<Companion> = FuturesUnordered::new();
    let end = poll_fn(|cx| loop {
        // Companions first: what they write reaches the connection polled below, in this same
        // turn of the task.
        while let Poll::Ready(Some(())) = companions.poll_next_unpin(cx) {}
        if closing {
            return match conn.poll_close(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(DriverEnd::Local),
                Poll::Ready(Err(e)) => Poll::Ready(DriverEnd::Failed(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        if pending_open.is_some() {
            if let Poll::Ready(result) = conn.poll_new_outbound(cx) {
                if let Some(reply) = pending_open.take() {
                    // The requester may have given up; the stream is then dropped (reset).
                    let _ = reply.send(result);
                }
                continue;
            }
        } else {
            match commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Open(reply))) => {
                    pending_open = Some(reply);
                    continue;
                }
                Poll::Ready(Some(Command::Run(f))) => {
                    companions.push(f);
                    continue;
                }
                Poll::Ready(Some(Command::Close) | None) => {
                    closing = true;
                    continue;
                }
                Poll::Pending => {}
            }
        }
        match conn.poll_next_inbound(cx) {
            Poll::Ready(Some(Ok(stream))) => {
                if inbound.try_send(stream).is_err() {
                    warn!("inbound stream queue full; resetting the stream");
                }
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(DriverEnd::Failed(e)),
            Poll::Ready(None) => return Poll::Ready(DriverEnd::Remote),
            Poll::Pending => return Poll::Pending,
        }
    })
    .await;
    if let Some(reply) = pending_open.take() {
        let _ = reply.send(Err(yamux::ConnectionError::Closed));
    }
    // Companions not finished go on as tasks of their own, to see the session end.
    for f in companions {
        tokio::spawn(f);
    }
    debug!("mux driver ended");
    end
}
