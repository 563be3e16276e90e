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
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use tracing::{debug, warn};

use super::error::ConfigError;
use super::transport::ByteStream;
use super::turn::{Part, Turn};

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

/// Most passes over its parts the driver makes in one turn before it lets other tasks run
/// (it then wakes itself).
const MAX_PASSES: usize = 64;

/// Drives a yamux connection until it ends.
///
/// The task's parts each have their own waker ([`turn`](super::turn)): the connection (with
/// the command queue) and each companion. A turn polls the parts that were woken until none
/// is, so that a companion's write reaches the socket, and a frame read from the socket
/// reaches a companion reading its stream, in the same turn.
pub(crate) async fn drive(
    io: Box<dyn ByteStream>,
    config: yamux::Config,
    mode: yamux::Mode,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<yamux::Stream>,
) -> DriverEnd {
    let turn = Arc::new(Turn::default());
    let mut d = Driver {
        conn: yamux::Connection::new(io.compat(), config, mode),
        commands,
        inbound,
        pending_open: None,
        closing: false,
        companions: Vec::new(),
        turn: turn.clone(),
    };
    let conn_part = Part::new(&turn);
    let conn_waker = conn_part.waker();
    let end = poll_fn(|cx| {
        turn.begin(cx.waker());
        let mut passes = 0;
        let end = loop {
            if passes == MAX_PASSES || !turn.pass() {
                // Past the bound, marks are left: `end` below has the task polled again.
                break None;
            }
            passes += 1;
            // Each mark is taken just before its part is polled, so that what the companions
            // did for the connection is carried out in the same pass.
            d.poll_companions();
            if conn_part.take() {
                let mut kcx = Context::from_waker(&conn_waker);
                if let Poll::Ready(end) = d.poll_connection(&mut kcx) {
                    break Some(end);
                }
            }
        };
        let again = turn.end();
        match end {
            Some(end) => Poll::Ready(end),
            None => {
                if again {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    })
    .await;
    if let Some(reply) = d.pending_open.take() {
        let _ = reply.send(Err(yamux::ConnectionError::Closed));
    }
    // Companions not finished go on as tasks of their own, to see the session end.
    for c in d.companions {
        tokio::spawn(c.future);
    }
    debug!("mux driver ended");
    end
}

/// A companion on the driver's task, with its part's waker.
struct Running {
    future: Companion,
    part: Arc<Part>,
    waker: Waker,
}

/// What the driver task owns.
struct Driver {
    conn: yamux::Connection<Compat<Box<dyn ByteStream>>>,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<yamux::Stream>,
    pending_open: Option<oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>>,
    closing: bool,
    /// A node's writer (`Session::run_on_driver` is crate-private): one at a time per end of a
    /// session, as a node has one connection per peer (two while a closed one's writer ends).
    companions: Vec<Running>,
    turn: Arc<Turn>,
}

impl Driver {
    /// Polls the companions that were woken; drops those that finished.
    fn poll_companions(&mut self) {
        let mut i = 0;
        while let Some(c) = self.companions.get_mut(i) {
            if c.part.take()
                && c.future
                    .as_mut()
                    .poll(&mut Context::from_waker(&c.waker))
                    .is_ready()
            {
                self.companions.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Polls the connection part: commands, then the connection, until the connection has
    /// nothing more to do (`Pending`) or has ended. A companion received is added, marked.
    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Poll<DriverEnd> {
        loop {
            if self.closing {
                return match self.conn.poll_close(cx) {
                    Poll::Ready(Ok(())) => Poll::Ready(DriverEnd::Local),
                    Poll::Ready(Err(e)) => Poll::Ready(DriverEnd::Failed(e)),
                    Poll::Pending => Poll::Pending,
                };
            }
            if self.pending_open.is_some() {
                if let Poll::Ready(result) = self.conn.poll_new_outbound(cx) {
                    if let Some(reply) = self.pending_open.take() {
                        // The requester may have given up; the stream is then dropped (reset).
                        let _ = reply.send(result);
                    }
                    continue;
                }
            } else {
                match self.commands.poll_recv(cx) {
                    Poll::Ready(Some(Command::Open(reply))) => {
                        self.pending_open = Some(reply);
                        continue;
                    }
                    Poll::Ready(Some(Command::Run(future))) => {
                        // Marked: polled in the next pass of this turn.
                        let part = Part::new(&self.turn);
                        let waker = part.waker();
                        self.companions.push(Running {
                            future,
                            part,
                            waker,
                        });
                        continue;
                    }
                    Poll::Ready(Some(Command::Close) | None) => {
                        self.closing = true;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            match self.conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    if self.inbound.try_send(stream).is_err() {
                        warn!("inbound stream queue full; resetting the stream");
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(DriverEnd::Failed(e)),
                Poll::Ready(None) => return Poll::Ready(DriverEnd::Remote),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
