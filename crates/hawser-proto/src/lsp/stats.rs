//! Counters, readable from the API at any time.

/// Counters of one connection.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct ConnStats {
    /// Data messages sent for the first time.
    pub data_sent: u64,
    /// Data messages sent again (epoch back-off, loss detection, probes and RTO expiries).
    pub retransmits: u64,
    /// Adaptive policy: tail-loss probes sent (a resend of the newest message in flight after
    /// two RTTs without an acknowledgement).
    pub probes: u64,
    /// Adaptive policy: retransmission timeouts that expired.
    pub rto_expiries: u64,
    /// Acks sent for received Data.
    pub acks_sent: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Data messages received and accepted for delivery.
    pub data_received: u64,
    /// Data messages received again after delivery or buffering (acknowledged, not delivered).
    pub duplicates_received: u64,
    /// Data dropped unacknowledged: outside the receive window or read queue full.
    pub data_refused: u64,
    /// Data dropped because the payload was shorter than its declared size.
    pub bad_size: u64,
    /// Data dropped because the checksum did not match.
    pub bad_checksum: u64,
    /// Data payloads longer than their size, truncated.
    pub truncated: u64,
    /// Acks, CAcks and SAcks that acknowledged at least one message in flight.
    pub acks_received: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Times a write had to wait because the window or `max_unacked` was full.
    pub window_stalls: u64,
    /// Epochs elapsed on this connection.
    pub epochs: u64,
    /// Data messages sent as bundles (counted in `data_sent` too).
    pub bundles_sent: u64,
    /// Application messages that went out inside a bundle.
    pub messages_bundled: u64,
    /// Bundles received whose content was not well-formed (checksum correct), dropped.
    pub bad_bundle: u64,
}

/// Counters of a whole endpoint (client or server).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct EndpointStats {
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams that did not decode, dropped.
    pub malformed: u64,
    /// Messages for an unknown connection or from an unexpected address, dropped.
    pub unknown_conn: u64,
    /// Connects refused because `max_connections` was reached or the server is closing.
    pub refused_connects: u64,
    /// Connects from an address that already has a connection (re-acknowledged, not doubled).
    pub duplicate_connects: u64,
    /// Connections accepted (server) or established (client).
    pub connections_opened: u64,
    /// Connections lost.
    pub connections_lost: u64,
    /// Calls to `handle_timeout` (a driver that spins shows here).
    pub timeouts_handled: u64,
    /// Sum over the endpoint's connections, including ended ones.
    pub conns: ConnStats,
}

impl ConnStats {
    /// Adds `other` into `self`, field by field.
    pub fn accumulate(&mut self, other: &ConnStats) {
        self.data_sent += other.data_sent;
        self.retransmits += other.retransmits;
        self.probes += other.probes;
        self.rto_expiries += other.rto_expiries;
        self.acks_sent += other.acks_sent;
        self.heartbeats_sent += other.heartbeats_sent;
        self.data_received += other.data_received;
        self.duplicates_received += other.duplicates_received;
        self.data_refused += other.data_refused;
        self.bad_size += other.bad_size;
        self.bad_checksum += other.bad_checksum;
        self.truncated += other.truncated;
        self.acks_received += other.acks_received;
        self.heartbeats_received += other.heartbeats_received;
        self.window_stalls += other.window_stalls;
        self.epochs += other.epochs;
        self.bundles_sent += other.bundles_sent;
        self.messages_bundled += other.messages_bundled;
        self.bad_bundle += other.bad_bundle;
    }
}
