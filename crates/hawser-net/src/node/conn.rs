//! One outbound connection's writer (run on its session's task when it has one): on each
//! `Transmit::Writable` it takes the engine's next batch, writes it whole to the connection in
//! one write, and hands it back; it ends when the engine closes the connection, the connection
//! closes, or a write fails.

use std::future::Future;
use std::io;
use std::sync::Arc;

use futures_util::FutureExt;

use hawser_proto::node::engine::{ConnId, WriteError};
use hawser_proto::node::FrameBatch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::shell::{Shell, Slot};

/// Where an outbound connection's batches go.
pub(crate) trait BatchSink: Send + 'static {
    /// Writes the bytes of `batch` (whole frames with their lengths) in order; stops early
    /// when `stop` is cancelled.
    ///
    /// # Errors
    /// [`WriteError`] with the bytes that reached the connection.
    fn write_batch(
        &mut self,
        batch: &FrameBatch,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<(), WriteError>> + Send;

    /// A token cancelled once the connection was closed by the peer or broke.
    fn closed(&self) -> CancellationToken;

    /// Logs why the connection closed, once [`closed`](Self::closed) fired.
    fn log_closed(&self) {}
}

/// Runs the writer of `conn` on `sink` until the engine closes it (its slot's stop signal),
/// the connection closes, or a write fails.
pub(crate) async fn write_loop<S: BatchSink>(
    shell: Arc<Shell>,
    conn: ConnId,
    slot: Slot,
    mut sink: S,
) {
    let mut batch = FrameBatch::default();
    // Made once, not at every turn: each new wait registers itself with its token again.
    let stopped = slot.stop.clone().cancelled_owned();
    let closed = sink.closed().cancelled_owned();
    tokio::pin!(stopped, closed);
    loop {
        tokio::select! {
            biased;
            () = &mut stopped => break,
            () = &mut closed => {
                sink.log_closed();
                debug!(node = %shell.id, %conn, "connection closed by the peer");
                shell.closed(conn);
                break;
            }
            () = slot.wake.notified() => {}
        }
        if !shell.take_frames(conn, &mut batch) {
            continue;
        }
        let result = sink.write_batch(&batch, &slot.stop).await;
        let failed = result.is_err();
        shell.written(conn, &mut batch, result);
        if failed {
            break;
        }
    }
}

/// Writes `bytes` on `w` with as few writes as it takes; stops when `stop` is cancelled.
///
/// # Errors
/// [`WriteError`] with how many bytes were written.
pub(crate) async fn write_all<W: tokio::io::AsyncWrite + Unpin + Send>(
    w: &mut W,
    bytes: &[u8],
    stop: &CancellationToken,
) -> Result<(), WriteError> {
    use tokio::io::AsyncWriteExt;
    let mut off = 0;
    while off < bytes.len() {
        let rest = bytes.get(off..).unwrap_or_default();
        // A write with room goes through at once, without setting up the wait for `stop`
        // (a write future that is not ready has written nothing and is dropped).
        let r = match w.write(rest).now_or_never() {
            Some(r) => r,
            None => tokio::select! {
                r = w.write(rest) => r,
                () = stop.cancelled() => Err(io::ErrorKind::Interrupted.into()),
            },
        };
        match r {
            Ok(0) | Err(_) => return Err(WriteError { written: off }),
            Ok(n) => off += n,
        }
    }
    Ok(())
}
