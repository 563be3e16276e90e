//! Every counter of the API, published through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`).
//!
//! The counters themselves stay where they are: plain integers that the protocol state
//! machines and the tokio layer increment, readable as snapshots ([`Node::stats`],
//! [`Node::peer_stats`], [`Node::rpc_stats`], [`Node::reach_stats`], [`lsp::Server::stats`],
//! [`Session::stats`], [`Listener::stats`]). The functions here read those snapshots and set
//! the facade's counters to them (`Counter::absolute`) and its gauges, so the hot paths pay
//! nothing for metrics, with or without this feature, and whichever recorder the application
//! installs (Prometheus, StatsD, OpenTelemetry, ...) receives every value.
//!
//! - [`spawn_node_publisher`] publishes a node's counters at an interval until the node
//!   stops: the usual way.
//! - [`publish_node`], [`publish_lsp_server`], [`publish_lsp_client`], [`publish_session`]
//!   and [`publish_listener`] publish once, for applications with their own schedule (or a
//!   scrape hook).
//! - [`describe`] registers each metric's unit-free description with the installed recorder;
//!   the publisher calls it at its start.
//!
//! Names are stable, with the Prometheus conventions: counters end in `_total`, every metric
//! of a node carries the label `node` (its id), per-peer metrics also `peer`.
//! `docs/metrics.md` lists them all ([`METRICS`] is the same list, in code).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use hawser_net::node::Node;
//!
//! // An application installs a recorder first (metrics-exporter-prometheus, say).
//! let node = Node::builder(1).listen("127.0.0.1:0".parse()?).start().await?;
//! let publisher = hawser_net::metrics::spawn_node_publisher(&node, Duration::from_secs(1));
//! // ... every second, hawser_node_*, hawser_peer_*, hawser_rpc_* and hawser_reach_* are set.
//! node.stop().await;
//! publisher.await?; // ends once the node has stopped
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use hawser_proto::lsp::{ConnStats, EndpointStats};
use hawser_proto::node::PeerStats;
use hawser_proto::reach::ReachStats;
use tokio::task::JoinHandle;

use crate::lsp;
use crate::node::{Node, NodeStats, RpcStats};
use crate::session::{Listener, ListenerStats, Session, SessionStats};

/// Whether a metric only grows (a counter) or goes up and down (a gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only grows (until the process restarts); its name ends in `_total`.
    Counter,
    /// A level now (queue lengths, requests in flight, whether a peer is up).
    Gauge,
}

/// One published metric: its name, kind, labels, and the counter it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metric {
    /// The metric's name, e.g. `hawser_peer_messages_sent_total`.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Its labels (`node`, `peer`, `endpoint`, `listener`).
    pub labels: &'static [&'static str],
    /// Where its value comes from, e.g. `PeerStats::sent`.
    pub source: &'static str,
    /// What it counts.
    pub help: &'static str,
}

const NODE: &[&str] = &["node"];
const NODE_PEER: &[&str] = &["node", "peer"];
const ENDPOINT: &[&str] = &["endpoint"];
const SESSION: &[&str] = &["peer_id"];
const LISTENER: &[&str] = &["listener"];

/// Declares, per stats type, the table of its metrics and the function that publishes one
/// snapshot of it.
macro_rules! metrics_of {
    ($(#[$doc:meta])* fn $publish:ident($ty:ident) const $table:ident labels $labels:ident {
        $($field:ident: $kind:ident $name:literal $help:literal;)*
    }) => {
        $(#[$doc])*
        const $table: &[Metric] = &[$(Metric {
            name: $name,
            kind: MetricKind::$kind,
            labels: $labels,
            source: concat!(stringify!($ty), "::", stringify!($field)),
            help: $help,
        },)*];

        fn $publish(s: &$ty, labels: &[(&'static str, String)]) {
            $(set(MetricKind::$kind, $name, s.$field, labels);)*
        }
    };
}

metrics_of! {
    /// [`NodeStats`]: node-wide counters.
    fn publish_node_stats(NodeStats) const NODE_METRICS labels NODE {
        malformed_datagrams: Counter "hawser_node_malformed_datagrams_total"
            "Datagrams that did not parse, dropped.";
        unknown_senders: Counter "hawser_node_unknown_senders_total"
            "Datagrams or connections naming a sender outside the membership, or another receiver, dropped.";
        refused_connections: Counter "hawser_node_refused_connections_total"
            "Accepted connections closed because max_inbound_connections was reached.";
        oversized_frames: Counter "hawser_node_oversized_frames_total"
            "Connections closed because a frame announced more than max_frame bytes.";
        bad_hellos: Counter "hawser_node_bad_hellos_total"
            "Connections closed because the hello was missing, late or malformed.";
        incoming_dropped: Counter "hawser_node_incoming_dropped_total"
            "Received unreliable messages dropped because the incoming queue was full.";
        bad_frames: Counter "hawser_node_bad_frames_total"
            "Frames with no or an unknown kind byte, dropped.";
        control_dropped: Counter "hawser_node_control_dropped_total"
            "Internal frames (reachability events, pings) dropped.";
        learned_refused: Counter "hawser_node_learned_refused_total"
            "Peers learned from the flood or admitted by hello but refused: membership full.";
        handshake_failures: Counter "hawser_node_handshake_failures_total"
            "Session handshakes that failed, dialling or accepting.";
        peer_mismatches: Counter "hawser_node_peer_mismatches_total"
            "Sessions refused because the peer proved another identity than the one pinned.";
        datagrams_without_key: Counter "hawser_node_datagrams_without_key_total"
            "Unreliable messages dropped on send: no datagram key for the destination yet.";
        unsealed_datagrams: Counter "hawser_node_unsealed_datagrams_total"
            "Received datagrams dropped: not sealed, or sealed with a key this node does not hold.";
        forged_datagrams: Counter "hawser_node_forged_datagrams_total"
            "Sealed datagrams dropped because they did not authenticate.";
        replayed_datagrams: Counter "hawser_node_replayed_datagrams_total"
            "Sealed datagrams dropped as replays (counter seen or older than the window).";
        shared_sessions: Counter "hawser_node_shared_sessions_total"
            "Connections to a peer carried by a session the peer opened, not a new one.";
    }
}

metrics_of! {
    /// [`PeerStats`]: per destination (label `peer`).
    fn publish_peer_stats(PeerStats) const PEER_METRICS labels NODE_PEER {
        queued: Gauge "hawser_peer_queued_messages"
            "Messages waiting in the outgoing queue now.";
        queued_bytes: Gauge "hawser_peer_queued_bytes"
            "Bytes of payload waiting in the outgoing queue now.";
        queue_buffer_bytes: Gauge "hawser_peer_queue_buffer_bytes"
            "Bytes of memory the outgoing queue's buffers hold now.";
        enqueued: Counter "hawser_peer_messages_enqueued_total"
            "Messages accepted into the outgoing queue.";
        sent: Counter "hawser_peer_messages_sent_total"
            "Messages handed to the transport (frames written, datagrams sent).";
        dropped_stale: Counter "hawser_peer_messages_dropped_stale_total"
            "Messages dropped because they waited longer than the queue deadline.";
        dropped_full: Counter "hawser_peer_messages_dropped_full_total"
            "Messages refused because the queue was full.";
        reconnects: Counter "hawser_peer_reconnects_total"
            "Connections opened to the peer after the first one.";
        connect_failures: Counter "hawser_peer_connect_failures_total"
            "Failed connection attempts.";
        bytes_out: Counter "hawser_peer_bytes_sent_total"
            "Payload bytes sent to the peer.";
        bytes_in: Counter "hawser_peer_bytes_received_total"
            "Payload bytes received from the peer.";
        received: Counter "hawser_peer_messages_received_total"
            "Messages received from the peer.";
        oversized_frames: Counter "hawser_peer_oversized_frames_total"
            "Connections from the peer closed because a frame announced more than the limit.";
        session_write_waits: Counter "hawser_peer_session_write_waits_total"
            "Writes to the peer's sessions that waited for the multiplexer.";
    }
}

metrics_of! {
    /// [`RpcStats`]: requests and streams, node-wide.
    fn publish_rpc_stats(RpcStats) const RPC_METRICS labels NODE {
        requests_sent: Counter "hawser_rpc_requests_sent_total"
            "Requests queued to peers (or to this node).";
        responses_received: Counter "hawser_rpc_responses_received_total"
            "Responses received and matched to a request in flight.";
        timeouts: Counter "hawser_rpc_timeouts_total"
            "Requests that timed out.";
        cancelled: Counter "hawser_rpc_cancelled_total"
            "Requests cancelled by their caller while in flight.";
        outbound_overloaded: Counter "hawser_rpc_outbound_overloaded_total"
            "Requests refused by this node's outbound caps.";
        requests_received: Counter "hawser_rpc_requests_received_total"
            "Requests received and handed to a handler's queue.";
        inbound_overloaded: Counter "hawser_rpc_inbound_overloaded_total"
            "Inbound requests answered Overloaded.";
        no_handler: Counter "hawser_rpc_no_handler_total"
            "Inbound requests answered NoHandler.";
        expired: Counter "hawser_rpc_expired_total"
            "Inbound requests not handed to the handler: deadline passed or cancelled.";
        cancels_received: Counter "hawser_rpc_cancels_received_total"
            "Cancels received for requests being served.";
        late_responses: Counter "hawser_rpc_late_responses_total"
            "Responses that matched no request in flight, dropped.";
        bad_frames: Counter "hawser_rpc_bad_frames_total"
            "Rpc frames that did not parse, dropped.";
        responses_unsent: Counter "hawser_rpc_responses_unsent_total"
            "Responses that could not be queued, dropped.";
        streams_opened: Counter "hawser_rpc_streams_opened_total"
            "Streams opened to peers.";
        streams_accepted: Counter "hawser_rpc_streams_accepted_total"
            "Streams accepted from peers and handed to an acceptor.";
        streams_refused: Counter "hawser_rpc_streams_refused_total"
            "Inbound streams refused: no acceptor, or its backlog full.";
        outbound_in_flight: Gauge "hawser_rpc_outbound_in_flight"
            "Requests of this node waiting for their responses now.";
        inbound_in_flight: Gauge "hawser_rpc_inbound_in_flight"
            "Requests from peers being served now.";
    }
}

metrics_of! {
    /// [`ReachStats`]: the reachability engine.
    fn publish_reach_stats(ReachStats) const REACH_METRICS labels NODE {
        received: Counter "hawser_reach_events_received_total"
            "Event payloads received.";
        malformed: Counter "hawser_reach_malformed_total"
            "Event payloads that did not decode, dropped.";
        duplicates: Counter "hawser_reach_duplicates_total"
            "Events already seen, dropped.";
        own_returned: Counter "hawser_reach_own_returned_total"
            "This node's own events that came back.";
        applied: Counter "hawser_reach_applied_total"
            "Events of others applied.";
        hop_limited: Counter "hawser_reach_hop_limited_total"
            "Applied events not forwarded because of the hop limit.";
        originated: Counter "hawser_reach_originated_total"
            "Events created by this node.";
        sent: Counter "hawser_reach_copies_sent_total"
            "Event copies queued for neighbours (originated and forwarded).";
        forwarded: Counter "hawser_reach_forwarded_total"
            "Of the copies sent, copies of others' events.";
        outgoing_dropped: Counter "hawser_reach_outgoing_dropped_total"
            "Copies dropped because max_outgoing were waiting.";
        events_dropped: Counter "hawser_reach_events_dropped_total"
            "Peer and app events dropped because max_pending_events were waiting.";
        table_refused: Counter "hawser_reach_table_refused_total"
            "Peers or addresses refused because a table was full of live entries.";
        table_evicted: Counter "hawser_reach_table_evicted_total"
            "Peers evicted to make room.";
        seen_evicted: Counter "hawser_reach_seen_evicted_total"
            "Event ids the seen-cache forgot early because it was full.";
        neighbours_refused: Counter "hawser_reach_neighbours_refused_total"
            "Neighbours refused because max_neighbours were connected.";
    }
}

metrics_of! {
    /// [`EndpointStats`]: an LSP endpoint (label `endpoint`, the application's name for it).
    fn publish_endpoint_stats(EndpointStats) const ENDPOINT_METRICS labels ENDPOINT {
        datagrams_received: Counter "hawser_lsp_datagrams_received_total"
            "Datagrams received.";
        datagrams_sent: Counter "hawser_lsp_datagrams_sent_total"
            "Datagrams sent.";
        malformed: Counter "hawser_lsp_malformed_total"
            "Datagrams that did not decode, dropped.";
        unknown_conn: Counter "hawser_lsp_unknown_conn_total"
            "Messages for an unknown connection or from an unexpected address, dropped.";
        refused_connects: Counter "hawser_lsp_refused_connects_total"
            "Connects refused: max_connections reached or the server closing.";
        duplicate_connects: Counter "hawser_lsp_duplicate_connects_total"
            "Connects from an address that already has a connection.";
        connections_opened: Counter "hawser_lsp_connections_opened_total"
            "Connections accepted (server) or established (client).";
        connections_lost: Counter "hawser_lsp_connections_lost_total"
            "Connections lost.";
        timeouts_handled: Counter "hawser_lsp_timeouts_handled_total"
            "Timer expiries handled.";
    }
}

metrics_of! {
    /// [`ConnStats`]: summed over an LSP endpoint's connections (label `endpoint`).
    fn publish_conn_stats(ConnStats) const CONN_METRICS labels ENDPOINT {
        data_sent: Counter "hawser_lsp_data_sent_total"
            "Data messages sent for the first time.";
        retransmits: Counter "hawser_lsp_retransmits_total"
            "Data messages sent again.";
        probes: Counter "hawser_lsp_probes_total"
            "Tail-loss probes sent (adaptive policy).";
        rto_expiries: Counter "hawser_lsp_rto_expiries_total"
            "Retransmission timeouts that expired (adaptive policy).";
        acks_sent: Counter "hawser_lsp_acks_sent_total"
            "Acks sent for received Data.";
        heartbeats_sent: Counter "hawser_lsp_heartbeats_sent_total"
            "Heartbeats sent.";
        data_received: Counter "hawser_lsp_data_received_total"
            "Data messages received and accepted for delivery.";
        duplicates_received: Counter "hawser_lsp_duplicates_received_total"
            "Data messages received again.";
        data_refused: Counter "hawser_lsp_data_refused_total"
            "Data dropped unacknowledged: outside the window or read queue full.";
        bad_size: Counter "hawser_lsp_bad_size_total"
            "Data dropped: payload shorter than its declared size.";
        bad_checksum: Counter "hawser_lsp_bad_checksum_total"
            "Data dropped: checksum mismatch.";
        truncated: Counter "hawser_lsp_truncated_total"
            "Data payloads longer than their size, truncated.";
        acks_received: Counter "hawser_lsp_acks_received_total"
            "Acknowledgements that acknowledged at least one message in flight.";
        heartbeats_received: Counter "hawser_lsp_heartbeats_received_total"
            "Heartbeats received.";
        window_stalls: Counter "hawser_lsp_window_stalls_total"
            "Writes that waited because the window or max_unacked was full.";
        epochs: Counter "hawser_lsp_epochs_total"
            "Epochs elapsed, summed over connections.";
        bundles_sent: Counter "hawser_lsp_bundles_sent_total"
            "Data messages sent as bundles.";
        messages_bundled: Counter "hawser_lsp_messages_bundled_total"
            "Application messages that went out inside a bundle.";
        bad_bundle: Counter "hawser_lsp_bad_bundle_total"
            "Bundles received whose content was not well-formed, dropped.";
    }
}

metrics_of! {
    /// [`SessionStats`]: one session (label `peer_id`, the peer's key).
    fn publish_session_stats(SessionStats) const SESSION_METRICS labels SESSION {
        duplicates_dropped: Counter "hawser_session_duplicates_dropped_total"
            "Duplicate transport messages dropped before decryption.";
        write_waits: Counter "hawser_session_write_waits_total"
            "Stream writes that waited for the multiplexer.";
    }
}

metrics_of! {
    /// [`ListenerStats`]: a session listener (label `listener`, its address).
    fn publish_listener_stats(ListenerStats) const LISTENER_METRICS labels LISTENER {
        established: Counter "hawser_listener_handshakes_established_total"
            "Handshakes that succeeded.";
        failed: Counter "hawser_listener_handshakes_failed_total"
            "Handshakes that failed (timeouts aside).";
        timed_out: Counter "hawser_listener_handshakes_timed_out_total"
            "Handshakes dropped at handshake_timeout.";
        refused: Counter "hawser_listener_refused_total"
            "Connections closed at once: max_pending_handshakes in progress.";
        max_pending: Gauge "hawser_listener_max_pending_handshakes"
            "The most handshakes ever in progress at once.";
    }
}

/// Metrics that come from no stats field.
const EXTRA_METRICS: &[Metric] = &[
    Metric {
        name: "hawser_peer_up",
        kind: MetricKind::Gauge,
        labels: NODE_PEER,
        source: "Node::is_alive",
        help: "1 while the peer's lease is valid and an address of it reachable, else 0.",
    },
    Metric {
        name: "hawser_node_members",
        kind: MetricKind::Gauge,
        labels: NODE,
        source: "Membership::len",
        help: "Nodes in the membership, this one included.",
    },
    Metric {
        name: "hawser_lsp_connections",
        kind: MetricKind::Gauge,
        labels: ENDPOINT,
        source: "lsp::Server::connection_count",
        help: "Connections the LSP server holds now.",
    },
];

/// Every metric published, grouped by where it comes from. `docs/metrics.md` is this list.
pub const METRICS: &[&[Metric]] = &[
    NODE_METRICS,
    PEER_METRICS,
    RPC_METRICS,
    REACH_METRICS,
    ENDPOINT_METRICS,
    CONN_METRICS,
    SESSION_METRICS,
    LISTENER_METRICS,
    EXTRA_METRICS,
];

fn set(kind: MetricKind, name: &'static str, value: u64, labels: &[(&'static str, String)]) {
    match kind {
        MetricKind::Counter => metrics::counter!(name, labels).absolute(value),
        // Gauges are f64: exact up to 2^53, far beyond any queue or count here.
        MetricKind::Gauge => metrics::gauge!(name, labels).set(value as f64),
    }
}

/// Registers the description of every metric with the installed recorder (so Prometheus
/// shows `# HELP` lines). Call it after installing the recorder; [`spawn_node_publisher`]
/// does.
pub fn describe() {
    for m in METRICS.iter().flat_map(|t| t.iter()) {
        match m.kind {
            MetricKind::Counter => metrics::describe_counter!(m.name, m.help),
            MetricKind::Gauge => metrics::describe_gauge!(m.name, m.help),
        }
    }
}

/// Publishes every counter of `node` once: [`NodeStats`], [`PeerStats`] of each member
/// (label `peer`) with whether it is up, [`RpcStats`] and [`ReachStats`].
pub fn publish_node(node: &Node) {
    let id = node.id();
    let labels = [("node", id.0.to_string())];
    publish_node_stats(&node.stats(), &labels);
    publish_rpc_stats(&node.rpc_stats(), &labels);
    if let Some(reach) = node.reach_stats() {
        publish_reach_stats(&reach, &labels);
    }
    let membership = node.membership();
    set(
        MetricKind::Gauge,
        "hawser_node_members",
        membership.len() as u64,
        &labels,
    );
    for member in membership.iter().filter(|m| m.id != id) {
        let Some(stats) = node.peer_stats(member.id) else {
            continue;
        };
        let labels = [
            ("node", id.0.to_string()),
            ("peer", member.id.0.to_string()),
        ];
        publish_peer_stats(&stats, &labels);
        let up = u64::from(node.is_alive(member.id));
        set(MetricKind::Gauge, "hawser_peer_up", up, &labels);
    }
}

/// Publishes an LSP server's counters once, labelled `endpoint = name`.
pub fn publish_lsp_server(server: &lsp::Server, name: &str) {
    let labels = [("endpoint", name.to_owned())];
    publish_endpoint(&server.stats(), &labels);
    let open = server.connection_count() as u64;
    set(MetricKind::Gauge, "hawser_lsp_connections", open, &labels);
}

/// Publishes an LSP client's counters once, labelled `endpoint = name`.
pub fn publish_lsp_client(client: &lsp::Client, name: &str) {
    publish_endpoint(&client.stats(), &[("endpoint", name.to_owned())]);
}

fn publish_endpoint(stats: &EndpointStats, labels: &[(&'static str, String)]) {
    publish_endpoint_stats(stats, labels);
    publish_conn_stats(&stats.conns, labels);
}

/// Publishes a session's counters once, labelled `peer_id` (the peer's key).
pub fn publish_session(session: &Session) {
    let labels = [("peer_id", session.peer_id().to_string())];
    publish_session_stats(&session.stats(), &labels);
}

/// Publishes a session listener's counters once, labelled `listener` (its address).
pub fn publish_listener(listener: &Listener) {
    let labels = [("listener", listener.local_addr().to_string())];
    publish_listener_stats(&listener.stats(), &labels);
}

/// Spawns a task (on the current tokio runtime) that calls [`describe`], then
/// [`publish_node`] every `interval`, and ends once the node has stopped or every other
/// handle to it is dropped (the task holds none between publications).
///
/// # Panics
/// Outside a tokio runtime, as `tokio::spawn`.
pub fn spawn_node_publisher(node: &Node, interval: Duration) -> JoinHandle<()> {
    let weak = node.downgrade();
    tokio::spawn(async move {
        describe();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(node) = weak.upgrade() else {
                return;
            };
            publish_node(&node);
            if node.is_stopped() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests;
