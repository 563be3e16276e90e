//! What a node reports: [`NodeStats`], its node-wide counters, and [`BroadcastReport`], the
//! outcome of a broadcast.

use hawser_proto::node::NodeId;

use super::error::SendError;

/// Node-wide counters (per-destination ones are [`PeerStats`](hawser_proto::node::PeerStats)).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct NodeStats {
    /// Datagrams that did not parse, dropped.
    pub malformed_datagrams: u64,
    /// Datagrams or connections naming a sender outside the membership, or another receiver,
    /// dropped.
    pub unknown_senders: u64,
    /// Accepted connections closed because `max_inbound_connections` was reached.
    pub refused_connections: u64,
    /// Connections closed because a frame announced more than `max_frame` bytes.
    pub oversized_frames: u64,
    /// Connections closed because the hello was missing, late or malformed.
    pub bad_hellos: u64,
    /// Received unreliable messages dropped because the incoming queue was full.
    pub incoming_dropped: u64,
    /// Frames of framed connections with no or an unknown kind byte, dropped.
    pub bad_frames: u64,
    /// Internal frames (reachability events, pings) dropped: beyond
    /// `reach.max_control_frames` per destination, or older than the queue deadline.
    pub control_dropped: u64,
    /// Peers learned from the flood or admitted by hello but refused: membership full.
    pub learned_refused: u64,
    /// Session handshakes that failed, dialling or accepting: malformed, late, another
    /// network id or protocol version, a bad identity signature.
    pub handshake_failures: u64,
    /// Sessions refused, dialling or accepting, because the peer proved (or, in plaintext,
    /// claimed) another identity than the one pinned for its node (`Settings::pins`).
    pub peer_mismatches: u64,
    /// Unreliable messages dropped on send because no session has given this node a
    /// datagram key for the destination yet (Noise only; a session is opened for the next ones).
    pub datagrams_without_key: u64,
    /// Datagrams received by a Noise node dropped because they were not sealed, or were
    /// sealed by a sender whose datagram key this node does not hold (yet).
    pub unsealed_datagrams: u64,
    /// Sealed datagrams dropped because they did not authenticate: another key, or altered.
    pub forged_datagrams: u64,
    /// Sealed datagrams dropped because their counter was already seen or is older than the
    /// replay window (64 counters).
    pub replayed_datagrams: u64,
    /// Connections to a peer opened on a session the peer had opened to this node (pinned
    /// peers, encrypted sessions), so that both directions share one transport connection,
    /// instead of on a new session.
    pub shared_sessions: u64,
}

/// The outcome of a broadcast, per destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BroadcastReport {
    /// Each destination with the outcome of its send, by increasing id.
    pub outcomes: Vec<(NodeId, Result<(), SendError>)>,
}

impl BroadcastReport {
    /// Whether every destination's send was queued.
    pub fn is_all_ok(&self) -> bool {
        self.outcomes.iter().all(|(_, r)| r.is_ok())
    }

    /// The destinations reached (queued).
    pub fn delivered(&self) -> Vec<NodeId> {
        let ok = self.outcomes.iter().filter(|(_, r)| r.is_ok());
        ok.map(|(id, _)| *id).collect()
    }

    /// The destinations whose send failed, with why.
    pub fn failures(&self) -> impl Iterator<Item = (NodeId, &SendError)> + '_ {
        self.outcomes
            .iter()
            .filter_map(|(id, r)| r.as_ref().err().map(|e| (*id, e)))
    }
}
