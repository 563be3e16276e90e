//! The node-wide counters only the shell sees (sessions, hellos, sealed datagrams, the
//! incoming queue), snapshotted with the engine's as [`NodeStats`].

use std::sync::atomic::{AtomicU64, Ordering};

use hawser_proto::node::engine::EngineStats;

use super::stats::NodeStats;

/// Node-wide counters (each as the same field of [`NodeStats`]).
#[derive(Default)]
pub(crate) struct Counters {
    /// Datagrams that did not parse, dropped.
    pub malformed_datagrams: AtomicU64,
    /// Datagrams or connections naming a sender outside the membership, or another receiver,
    /// dropped.
    pub unknown_senders: AtomicU64,
    /// Accepted connections closed because `max_inbound_connections` was reached.
    pub refused_connections: AtomicU64,
    /// Connections closed because a frame announced more than `max_frame` bytes.
    pub oversized_frames: AtomicU64,
    /// Connections closed because the hello was missing, late or malformed.
    pub bad_hellos: AtomicU64,
    /// Received unreliable messages dropped because the incoming queue was full.
    pub incoming_dropped: AtomicU64,
    /// Frames of framed connections with no or an unknown kind byte, dropped.
    pub bad_frames: AtomicU64,
    /// Internal frames (reachability events, pings) dropped: beyond
    /// `reach.max_control_frames` per destination, or older than the queue deadline.
    pub control_dropped: AtomicU64,
    /// Peers learned from the flood or admitted by hello but refused: membership full.
    pub learned_refused: AtomicU64,
    /// Session handshakes that failed, dialling or accepting: malformed, late, another
    /// network id or protocol version, a bad identity signature.
    pub handshake_failures: AtomicU64,
    /// Sessions refused, dialling or accepting, because the peer proved (or, in plaintext,
    /// claimed) another identity than the one pinned for its node (`Settings::pins`).
    pub peer_mismatches: AtomicU64,
    /// Unreliable messages dropped on send because no session has given this node a
    /// datagram key for the destination yet (Noise only; a session is opened for the next ones).
    pub datagrams_without_key: AtomicU64,
    /// Datagrams received by a Noise node dropped because they were not sealed, or were
    /// sealed by a sender whose datagram key this node does not hold (yet).
    pub unsealed_datagrams: AtomicU64,
    /// Sealed datagrams dropped because they did not authenticate: another key, or altered.
    pub forged_datagrams: AtomicU64,
    /// Sealed datagrams dropped because their counter was already seen or is older than the
    /// replay window (64 counters).
    pub replayed_datagrams: AtomicU64,
    /// Connections to a peer opened on a session the peer had opened to this node (pinned
    /// peers, encrypted sessions), so that both directions share one transport connection,
    /// instead of on a new session.
    pub shared_sessions: AtomicU64,
}

impl Counters {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values, added to the engine's own counters of the same things.
    pub(super) fn snapshot(&self, e: &EngineStats) -> NodeStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeStats {
            malformed_datagrams: r(&self.malformed_datagrams) + e.malformed_datagrams,
            unknown_senders: r(&self.unknown_senders) + e.unknown_senders,
            refused_connections: r(&self.refused_connections) + e.refused_connections,
            oversized_frames: r(&self.oversized_frames) + e.oversized_frames,
            bad_hellos: r(&self.bad_hellos),
            incoming_dropped: r(&self.incoming_dropped),
            bad_frames: r(&self.bad_frames) + e.bad_frames,
            control_dropped: r(&self.control_dropped) + e.control_dropped,
            learned_refused: r(&self.learned_refused) + e.learned_refused,
            handshake_failures: r(&self.handshake_failures),
            peer_mismatches: r(&self.peer_mismatches),
            datagrams_without_key: r(&self.datagrams_without_key),
            unsealed_datagrams: r(&self.unsealed_datagrams),
            forged_datagrams: r(&self.forged_datagrams),
            replayed_datagrams: r(&self.replayed_datagrams),
            shared_sessions: r(&self.shared_sessions),
        }
    }
}
