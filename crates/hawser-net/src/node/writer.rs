//! One writer task per destination: connects when there is something to send, writes
//! internal frames then queued messages in order, reconnects with back-off, drops stale
//! messages and closes idle connections.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hawser_proto::node::{Backoff, FrameBatch};
use tracing::{debug, info, info_span, warn, Instrument};

use super::connector::{BatchError, Connector, BATCH_BYTES, BATCH_MESSAGES};
use super::core::Core;
use super::counters::Counters;
use super::peer::{Peer, PeerState};
use super::rpc::{RequestError, StreamError};

impl<L: Connector> Core<L> {
    /// Starts `peer`'s writer unless it runs (`st` is `peer`'s locked state).
    pub(super) fn start_writer(self: &Arc<Self>, peer: &Arc<Peer>, st: &mut PeerState) {
        if !st.writer_running {
            st.writer_running = true;
            // Everything the writer logs, and the sessions it dials, carry the peer's id.
            let span = info_span!(parent: None, "peer", node = self.id.0, peer = peer.id.0);
            let task = writer(self.clone(), peer.clone()).instrument(span);
            self.tracker.spawn(task);
        }
    }
}

impl<L: Connector> Core<L> {
    /// The session of the writer's connection to `to`, connecting if there is none, within
    /// `connect_timeout` (for links with sessions).
    pub(super) async fn session_to(
        self: &Arc<Self>,
        to: hawser_proto::node::NodeId,
    ) -> Result<crate::session::Session, StreamError> {
        let member = self.membership_of(to).ok_or(StreamError::UnknownNode(to))?;
        if self.connector.route(&self.settings, &member, true).is_err() {
            return Err(StreamError::Unreachable(to));
        }
        let peer = self.peer(to).ok_or(StreamError::UnknownNode(to))?;
        let deadline = tokio::time::Instant::now() + self.settings.connect_timeout;
        loop {
            let connected = peer.connected_now.notified();
            tokio::pin!(connected);
            connected.as_mut().enable();
            let session = peer.lock().session.clone();
            if let Some(session) = session.filter(|s| !s.is_closed()) {
                return Ok(session);
            }
            if peer.is_cancelled() {
                return Err(StreamError::Stopped);
            }
            self.open_session(to);
            if tokio::time::Instant::now() >= deadline {
                return Err(StreamError::Unreachable(to));
            }
            // A writer that connects wakes us; one already connected but closing is looked
            // at again soon.
            let again = tokio::time::Instant::now() + SESSION_POLL;
            tokio::select! {
                () = connected => {}
                () = tokio::time::sleep_until(again.min(deadline)) => {}
            }
        }
    }
}

/// How often [`Core::session_to`] looks again for a session while it waits for one.
const SESSION_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// One destination's writer: connects when there is something to send, writes in order,
/// reconnects with back-off, closes the connection when idle, and exits when idle and
/// disconnected (the next message starts a new one).
async fn writer<L: Connector>(core: Arc<Core<L>>, peer: Arc<Peer>) {
    let s = &core.settings;
    let mut backoff = Backoff::new(s.backoff_initial, s.backoff_max);
    let mut conn: Option<(L::Conn, SocketAddr)> = None;
    let mut generation = 0;
    let mut batch = FrameBatch::default();
    loop {
        if peer.cancel.is_cancelled() {
            break;
        }
        if conn.is_some() && peer.generation.load(Ordering::Relaxed) != generation {
            info!(node = %core.id, peer = %peer.id, "address changed: reconnecting");
            if let Some((_, via)) = conn.take() {
                lost(&core, &peer, via);
            }
        }
        if !expire(&core, &peer) {
            tokio::select! {
                () = peer.cancel.cancelled() => break,
                () = peer.wake.notified() => {}
                () = closed::<L>(&mut conn) => {
                    info!(node = %core.id, peer = %peer.id, "disconnected by peer");
                    if let Some((_, via)) = conn.take() {
                        lost(&core, &peer, via);
                    }
                }
                () = tokio::time::sleep(s.idle_timeout) => {
                    let mut st = peer.lock();
                    if conn.take().is_some() {
                        st.connected = false;
                        st.control_tx = None;
                        st.session = None;
                        info!(node = %core.id, peer = %peer.id, "idle connection closed");
                    }
                    st.queue.release_buffer();
                    if st.queue.is_empty() && st.control.is_empty() {
                        st.writer_running = false;
                        return;
                    }
                }
            }
            continue;
        }
        let Some((c, via)) = conn.as_mut() else {
            conn = connect(&core, &peer, &mut backoff, &mut generation).await;
            continue;
        };
        let via = *via;
        if !write_queued::<L>(&core, &peer, c, &mut batch).await {
            conn = None;
            core.reach_send_failed(peer.id, &[via]);
            lost(&core, &peer, via);
        }
    }
    if let Some((_, via)) = conn.take() {
        lost(&core, &peer, via);
    }
    debug!(node = %core.id, peer = %peer.id, "writer ended");
}

/// One connection attempt (then the back-off delay if it failed).
async fn connect<L: Connector>(
    core: &Arc<Core<L>>,
    peer: &Peer,
    backoff: &mut Backoff,
    generation: &mut u64,
) -> Option<(L::Conn, SocketAddr)> {
    *generation = peer.generation.load(Ordering::Relaxed);
    let Some(member) = core.membership_of(peer.id) else {
        peer.stop();
        return None;
    };
    let addrs = core.connector.reach_addrs(&member);
    let attempt = tokio::time::timeout(
        core.settings.connect_timeout,
        core.connector.dial(core, member),
    );
    let result = tokio::select! {
        r = attempt => r.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
        () = peer.cancel.cancelled() => return None,
    };
    match result {
        Ok((conn, via)) => {
            backoff.reset();
            {
                let mut st = peer.lock();
                if st.connected_before {
                    st.stats.reconnects += 1;
                }
                st.connected_before = true;
                st.connected = true;
                st.conn_write_waits = 0;
                st.control_tx = L::control_sender(&conn);
                st.session = L::session(&conn);
                info!(node = %core.id, peer = %peer.id, reconnects = st.stats.reconnects, "connected");
            }
            peer.connected_now.notify_waiters();
            core.reach_connected(peer.id, via);
            Some((conn, via))
        }
        Err(err) => {
            peer.lock().stats.connect_failures += 1;
            core.reach_send_failed(peer.id, &addrs);
            // Requests waiting for this peer's answers cannot get them over no session.
            core.rpc
                .fail_peer(peer.id, RequestError::Unreachable(peer.id));
            // The first failure of a series is a warning (a peer down, or dialled on a
            // transport it does not listen on); the retries that follow are debug.
            if backoff.attempts() == 0 {
                warn!(node = %core.id, peer = %peer.id, addr = %describe_targets(&addrs), %err,
                      "cannot connect to peer: retrying with back-off");
            }
            let delay = backoff.next_delay();
            debug!(node = %core.id, peer = %peer.id, %err, delay_ms = delay.as_millis() as u64,
                   "connect failed");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = peer.cancel.cancelled() => {}
            }
            None
        }
    }
}

/// Writes every internal frame, then everything queued, in batches; `false` if the
/// connection failed (the application messages not written whole are requeued in order, an
/// internal frame dropped: the next renewal restates it).
async fn write_queued<L: Connector>(
    core: &Core<L>,
    peer: &Peer,
    conn: &mut L::Conn,
    batch: &mut FrameBatch,
) -> bool {
    loop {
        let control = peer.lock().control.pop_front();
        let Some((_, frame)) = control else {
            break;
        };
        let result = tokio::select! {
            r = L::write(conn, frame) => r,
            () = peer.cancel.cancelled() => return true,
        };
        if let Err(err) = result {
            warn!(node = %core.id, peer = %peer.id, %err, "write failed: reconnecting");
            return false;
        }
    }
    loop {
        let wake;
        {
            let mut st = peer.lock();
            if !st.control.is_empty() {
                // Internal frames go first: come back for them.
                return true;
            }
            let now = Instant::now();
            let dropped = st.queue.take(now, BATCH_MESSAGES, BATCH_BYTES, batch);
            if dropped > 0 {
                warn!(node = %core.id, peer = %peer.id, dropped, "dropped messages that outlived the deadline");
            }
            // Senders waiting for room: once the queue is half drained, not at every batch
            // (`SendQueue::below_low_watermark`); dropped messages made room at once.
            wake = dropped > 0 || st.queue.below_low_watermark();
        }
        if wake {
            peer.room.notify_waiters();
        }
        if batch.is_empty() {
            return true;
        }
        let result = tokio::select! {
            r = L::write_app_batch(conn, batch) => r,
            () = peer.cancel.cancelled() => return true,
        };
        let waits = L::write_waits(conn);
        let mut st = peer.lock();
        st.stats.session_write_waits += waits.saturating_sub(st.conn_write_waits);
        st.conn_write_waits = waits;
        let written = match &result {
            Ok(()) => batch.len(),
            Err(e) => e.written,
        };
        st.stats.sent += written as u64;
        st.stats.bytes_out += batch.payload_bytes(written);
        if let Err(BatchError { error, .. }) = result {
            let requeued = st.queue.requeue_front(batch, written);
            warn!(node = %core.id, peer = %peer.id, %error, requeued, "write failed: reconnecting");
            st.queue.recycle(batch);
            return false;
        }
        // The written frames' buffer goes back to the queue, which reuses it.
        st.queue.recycle(batch);
    }
}

/// Expires stale messages and internal frames at the head, tracing and waking waiters;
/// whether anything is left to write.
fn expire<L>(core: &Core<L>, peer: &Peer) -> bool {
    let mut st = peer.lock();
    let now = Instant::now();
    let dropped = st.queue.expire(now);
    if dropped > 0 {
        warn!(node = %core.id, peer = %peer.id, dropped, "dropped messages that outlived the deadline");
        peer.room.notify_waiters();
    }
    let deadline = core.settings.queue.deadline;
    while st
        .control
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > deadline)
    {
        st.control.pop_front();
        Counters::bump(&core.counters.control_dropped);
    }
    !st.queue.is_empty() || !st.control.is_empty()
}

/// The writer lost its connection to `peer` through `via` (not an idle close).
fn lost<L: Connector>(core: &Arc<Core<L>>, peer: &Peer, via: SocketAddr) {
    {
        let mut st = peer.lock();
        st.connected = false;
        st.control_tx = None;
        st.session = None;
    }
    core.reach_disconnected(peer.id, via);
    // Requests written on the lost connection may never be answered.
    core.rpc
        .fail_peer(peer.id, RequestError::Unreachable(peer.id));
}

async fn closed<L: Connector>(conn: &mut Option<(L::Conn, SocketAddr)>) {
    match conn {
        Some((c, _)) => L::closed(c).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;

/// The addresses a connection attempt went to, for a message.
fn describe_targets(addrs: &[SocketAddr]) -> String {
    let all: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    all.join(", ")
}
