//! Counters kept per destination.

/// Counters of one peer (as a destination, and as a source for the `*_in` fields), readable from
/// the API at any time.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct PeerStats {
    /// Messages waiting in the outgoing queue now.
    pub queued: u64,
    /// Bytes of payload waiting in the outgoing queue now.
    pub queued_bytes: u64,
    /// Bytes of memory the outgoing queue's buffers hold now: the frames waiting, room left in
    /// the newest buffer, and the spare one kept for reuse. Once the queue is empty, at most
    /// twice `hawser_proto::node::RETAINED_BUFFER`, and nothing after the connection idles out.
    pub queue_buffer_bytes: u64,
    /// Messages accepted into the outgoing queue, in total.
    pub enqueued: u64,
    /// Messages handed to the transport (reliable frames written, datagrams sent).
    pub sent: u64,
    /// Messages dropped at the head of the queue because they waited longer than the deadline.
    pub dropped_stale: u64,
    /// Messages refused because the queue was full (count or bytes).
    pub dropped_full: u64,
    /// Connections opened to this peer after the first one.
    pub reconnects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Payload bytes sent to this peer.
    pub bytes_out: u64,
    /// Payload bytes received from this peer.
    pub bytes_in: u64,
    /// Messages received from this peer.
    pub received: u64,
    /// Connections from this peer closed because a frame announced more than the limit.
    pub oversized_frames: u64,
    /// Writes to this peer's sessions that had to wait for the multiplexer (the peer's stream
    /// window used up, or the session's frame queue full), over every session so far; 0 on
    /// links without sessions. Rising steadily during a bulk transfer: the session, not the
    /// queue or the application, sets the pace (`docs/security.md`, "A stream's window").
    pub session_write_waits: u64,
}
