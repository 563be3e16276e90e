//! Settings of a node and its default network. Every queue, map and connection count is bounded
//! by one of these fields.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hawser_proto::lsp;
use hawser_proto::node::{NodeId, QueueLimits, MAX_NODES};
use hawser_proto::reach;

use crate::session::transport::TransportRegistry;
use crate::session::{
    ConfigError, Identity, NetworkId, PeerId, Protocol, Security, TransportAddr,
    FIRST_APPLICATION_ID,
};

/// What to do with an unreliable message above [`Settings::datagram_limit`] (the engine's
/// setting, applied by `Engine::send`).
pub use hawser_proto::node::engine::OversizeDatagram;

/// How the default network carries reliable messages to a destination.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReliableTransport {
    /// LSP over UDP (`hawser_net::lsp`), to the destination's `Member::lsp_addr`: a session over
    /// LSP, which splits each frame into LSP messages and joins them again, so payloads are
    /// bounded by [`Settings::max_frame`] as over TCP.
    Lsp,
    /// TCP with 4-byte big-endian length-prefixed frames (the default).
    #[default]
    Tcp,
}

/// Settings of a node. [`Settings::default`] gives the documented defaults.
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Per destination: most messages and bytes waiting, and the deadline after which a waiting
    /// message is dropped (defaults 10,240 messages, 200 MiB, 5 s).
    pub queue: QueueLimits,
    /// Largest reliable payload (frame) sent or accepted, in bytes; a peer announcing a larger
    /// frame has its connection closed, counted. Default 10 MiB.
    pub max_frame: usize,
    /// Largest unreliable payload, in bytes (one UDP datagram with a 20-byte envelope, or
    /// with Noise a 28-byte header and a 16-byte tag). Default 4,096, as PhxPaxos. At most
    /// 65,000.
    pub datagram_limit: usize,
    /// What to do with a larger unreliable payload. Default [`OversizeDatagram::Refuse`].
    pub oversize_datagram: OversizeDatagram,
    /// An outgoing connection with nothing sent for this long is closed. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "hawser_proto::serde_util::duration"))]
    pub idle_timeout: Duration,
    /// First delay before reconnecting after a failure; doubles up to `backoff_max`.
    /// Default 100 ms.
    #[cfg_attr(feature = "serde", serde(with = "hawser_proto::serde_util::duration"))]
    pub backoff_initial: Duration,
    /// Cap of the reconnect delay. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "hawser_proto::serde_util::duration"))]
    pub backoff_max: Duration,
    /// Longest wait for one connection attempt. Default 3 s.
    #[cfg_attr(feature = "serde", serde(with = "hawser_proto::serde_util::duration"))]
    pub connect_timeout: Duration,
    /// Longest wait for the session handshake and then the in-session hello on an accepted
    /// connection (each). Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "hawser_proto::serde_util::duration"))]
    pub hello_timeout: Duration,
    /// Received messages waiting for the application. When full, reliable connections stop
    /// being read (back-pressure, no loss) and datagrams are dropped, counted. Default 10,240.
    pub incoming_capacity: usize,
    /// Most accepted (incoming) connections at once; more are closed at once, counted.
    /// Default 1,024.
    pub max_inbound_connections: usize,
    /// Most nodes in the membership. Default [`MAX_NODES`] (4,096).
    pub max_nodes: usize,
    /// How reliable messages travel by default. Default [`ReliableTransport::Tcp`].
    pub reliable: ReliableTransport,
    /// Per-destination exceptions to `reliable`, at most `max_nodes` entries.
    pub reliable_per_node: BTreeMap<NodeId, ReliableTransport>,
    /// LSP settings for [`ReliableTransport::Lsp`] and `lsp://` sessions (client and server
    /// side). Default: LSP defaults with 100 ms epochs, a window of 256 with up to 256 messages
    /// unacknowledged, and a send queue of 256: per connection at most 256 messages of up to
    /// `max_payload` (1,400 bytes) in flight and 256 waiting, about 360 KB each. On a loopback
    /// link messages are up to `lsp_loopback_message` bytes, so the same counts allow up to
    /// 8 MiB each; a session's mux window (8 MiB per session) bounds it as much.
    pub lsp: lsp::Config,
    /// Largest LSP message of a session whose peer is a loopback address (127.0.0.0/8,
    /// `::1`), instead of `lsp.max_payload`: the loopback interface carries 64 KiB datagrams
    /// unfragmented, and larger messages take fewer datagrams, acknowledgements and cipher
    /// calls. Every other link keeps `lsp.max_payload`. At most 48 KiB; a value at most
    /// `lsp.max_payload` turns it off (`TransportConfig::lsp_loopback_message`). Default
    /// 32 KiB.
    pub lsp_loopback_message: usize,
    /// Reachability: peer liveness leases and address tables (see [`ReachSettings`]).
    pub reach: ReachSettings,
    /// This node's long-term identity (its [`PeerId`] is what peers pin). Default `None`: a
    /// fresh identity is generated at start (so the `PeerId` changes at every restart; give
    /// one loaded with [`Identity::load`] to keep it).
    #[cfg_attr(feature = "serde", serde(skip))]
    pub identity: Option<Arc<Identity>>,
    /// The cluster's name, mixed into every handshake: nodes with different ids never form a
    /// session. Default [`DEFAULT_NETWORK_ID`] (`"hawser"`).
    pub network_id: NetworkId,
    /// How reliable connections are protected. Default [`Security::Noise`] (encrypted, the
    /// peer's identity proven). [`Security::DangerPlaintext`] sends everything in clear with
    /// identities only claimed: for benchmarks and debugging on a trusted network only.
    /// With Noise, unreliable datagrams are sealed with a key each session's dialer sends in
    /// it; a datagram to a destination with no such key yet is dropped (counted in
    /// `NodeStats::datagrams_without_key`) and a session to it opened. In plaintext they go
    /// unauthenticated.
    pub security: Security,
    /// Per node: the `PeerId`s it may prove (at most [`MAX_PINS`] each, two or more during a
    /// key rotation; at most `max_nodes` entries). A session to or from that node proving
    /// another identity is refused before any message, counted (`NodeStats::peer_mismatches`).
    /// A node without pins is accepted with any identity of the network (see
    /// `docs/security.md`). Default empty.
    pub pins: BTreeMap<NodeId, Vec<PeerId>>,
    /// Per node: the transport address reliable messages to it go to, instead of its TCP
    /// `addrs` (or `lsp_addr`): `tcp://`, `lsp://`, `ws://`, `mem://`, or the scheme of one of
    /// `custom_transports` (at most `max_nodes` entries). Unreliable datagrams still go to its
    /// first `addrs` entry. Default empty.
    pub transports: BTreeMap<NodeId, TransportAddr>,
    /// Extra addresses this node accepts sessions on, besides `listen` (TCP): `tcp://`,
    /// `lsp://`, `ws://`, `mem://`, or the scheme of one of `custom_transports`; at most
    /// [`MAX_EXTRA_LISTENERS`]. Default empty.
    pub listen_also: Vec<TransportAddr>,
    /// The application's own transports, by scheme, next to hawser's four (at most
    /// [`MAX_TRANSPORTS`](crate::session::transport::MAX_TRANSPORTS); see
    /// [`Transport`](crate::session::transport::Transport)): `transports` and `listen_also`
    /// addresses with their schemes go through them. Default none.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub custom_transports: TransportRegistry,
    /// Requests, responses and streams to node ids: deadlines, caps and sizes (see
    /// [`RpcSettings`]).
    pub rpc: RpcSettings,
    /// The application's own protocols (ids from 1,024, named and versioned), offered on every
    /// session next to hawser's and negotiated with each peer: a stream
    /// ([`Node::open_stream`](super::Node::open_stream)) needs its protocol here on both nodes.
    /// Requests need only a handler at the peer. At most [`MAX_APP_PROTOCOLS`]. Default empty.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub protocols: Vec<Protocol>,
}

/// The most application protocols of [`Settings::protocols`].
pub const MAX_APP_PROTOCOLS: usize = 32;

/// Settings of requests and streams between nodes ([`Node::request`](super::Node::request),
/// [`Node::serve`](super::Node::serve), [`Node::open_stream`](super::Node::open_stream)).
/// Every count is a cap that fails loudly: a request over it gets `RequestError::Overloaded`,
/// never a silent drop.
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcSettings {
    /// The deadline of a request whose options give none. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "hawser_proto::serde_util::duration"))]
    pub default_timeout: Duration,
    /// Largest request payload sent or served, in bytes. Default 8 MiB; a `max_frame` below
    /// it lowers it to `max_frame` minus 32 (the request's header).
    pub max_request: usize,
    /// Largest response payload sent back or accepted, in bytes. Default 8 MiB; lowered to
    /// `max_frame` minus 32 as `max_request` is.
    pub max_response: usize,
    /// Most requests this node has in flight to one peer (waiting for their responses).
    /// Default 1,024.
    pub max_outbound_per_peer: usize,
    /// Most requests this node has in flight in all. Default 8,192.
    pub max_outbound: usize,
    /// Most requests from one peer being served at once (handed to a handler or waiting for
    /// one); more are answered `Overloaded`. Default 1,024.
    pub max_inbound_per_peer: usize,
    /// Most requests being served at once in all; also the capacity of each protocol's queue
    /// of inbound requests. Default 8,192.
    pub max_inbound: usize,
    /// Most inbound streams of one protocol waiting for [`InboundStreams::accept`]; more are
    /// refused (the opener gets `StreamError::Overloaded`). Default 16.
    ///
    /// [`InboundStreams::accept`]: super::InboundStreams::accept
    pub stream_backlog: usize,
    /// Most application streams open at once on one session (each side of a pair of nodes
    /// opens its own session). Default 6; at most 64. The node's two own streams come on top.
    pub max_streams_per_session: usize,
}

impl RpcSettings {
    /// These settings with `max_request` and `max_response` lowered to fit frames of
    /// `max_frame` bytes.
    pub(crate) fn within_frame(&self, max_frame: usize) -> RpcSettings {
        let fit = max_frame.saturating_sub(RPC_OVERHEAD);
        RpcSettings {
            max_request: self.max_request.min(fit),
            max_response: self.max_response.min(fit),
            ..self.clone()
        }
    }
}

impl Default for RpcSettings {
    fn default() -> RpcSettings {
        RpcSettings {
            default_timeout: Duration::from_secs(5),
            max_request: 8 << 20,
            max_response: 8 << 20,
            max_outbound_per_peer: 1024,
            max_outbound: 8192,
            max_inbound_per_peer: 1024,
            max_inbound: 8192,
            stream_backlog: 16,
            max_streams_per_session: 6,
        }
    }
}

/// Bytes an rpc frame's kind and fixed fields may take on top of its payload, kept free
/// below `max_frame` by [`RpcSettings::max_request`] and `max_response`.
pub(crate) const RPC_OVERHEAD: usize = 32;

/// The most of [`RpcSettings::max_streams_per_session`].
pub const MAX_STREAMS_PER_SESSION: usize = 64;

/// The default [`Settings::network_id`].
pub const DEFAULT_NETWORK_ID: &str = "hawser";

/// The most `PeerId`s pinned for one node ([`Settings::pins`]).
pub const MAX_PINS: usize = 4;

/// The most entries of [`Settings::listen_also`].
pub const MAX_EXTRA_LISTENERS: usize = 8;

/// Settings of a node's reachability protocol (`docs/reachability.md`): presence leases,
/// the peer table, the flood, and how the node learns of new peers.
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReachSettings {
    /// Run the presence protocol on the node's connections. Default `true`. When `false`, no
    /// internal frame is sent, [`Node::peers`](super::Node::peers) stays empty and alive-only
    /// sends refuse every destination.
    pub enabled: bool,
    /// The engine's settings ([`reach::Config`]): the lease this node announces (default fixed
    /// 10 s; or [`reach::LeasePolicy::Adaptive`]), `renew_divisor` (3), `reachable_for`
    /// (30 s), and the bounds of its tables (at most 1,024 peers, 16 addresses each, 256
    /// neighbours, 4,096 pending events, 65,536 pending copies). `incarnation` 0 (the
    /// default) means "Unix milliseconds at start", made to grow within the process.
    pub engine: reach::Config,
    /// Add peers learned from the flood (not in the membership) as [`Role::Temporary`]
    /// members with their announced addresses, so that `send` reaches them directly. Default
    /// `true`. Bounded by `max_nodes`; a refused peer is counted
    /// (`NodeStats::learned_refused`). A member the application removed is never learned
    /// back from the flood (the last `max_nodes` removals are remembered) until the
    /// application adds it again.
    ///
    /// [`Role::Temporary`]: hawser_proto::node::Role::Temporary
    pub learn_peers: bool,
    /// Accept a framed hello from a node outside the membership, adding it as a
    /// `Role::Temporary` member at the address its hello announces (a seed node that lets
    /// newcomers join by connecting to it). Default `false`: only members (configured or
    /// learned from the flood) may connect. Plain hellos from non-members are always refused.
    pub admit_unknown: bool,
    /// Per destination: most internal frames (flooded events, pings) waiting to be written;
    /// beyond it the oldest is dropped, counted (`NodeStats::control_dropped`). They do not
    /// count in the application's queue limits or `PeerStats`. Default 256.
    pub max_control_frames: usize,
    /// Capacity of each [`Node::peer_events`](super::Node::peer_events) stream: a consumer
    /// more than this many events behind gets `Err(Lagged(n))` for the `n` it missed, then the
    /// newest. Default 1,024.
    pub event_capacity: usize,
}

impl Default for ReachSettings {
    fn default() -> ReachSettings {
        ReachSettings {
            enabled: true,
            engine: reach::Config::default(),
            learn_peers: true,
            admit_unknown: false,
            max_control_frames: 256,
            event_capacity: 1024,
        }
    }
}

impl ReachSettings {
    /// Default settings with a fixed lease `lease`: renewals every `lease / 3` and
    /// `reachable_for` of three leases.
    pub fn with_lease(lease: std::time::Duration) -> ReachSettings {
        let mut s = ReachSettings::default();
        s.engine.lease = reach::LeasePolicy::Fixed(lease);
        s.engine.reachable_for = lease.saturating_mul(3);
        s
    }
}

impl Default for Settings {
    fn default() -> Settings {
        // Enough in flight for a session's bulk traffic: with 32 the sender stops every
        // 45 KB for acknowledgements, and node messages over LSP run at half the rate
        // (measured in the runs recorded in `CHANGELOG.md`).
        let params = lsp::Params::reference()
            .with_epoch(Duration::from_millis(100))
            .with_window(256)
            .with_max_unacked(256)
            .with_epoch_limit(20);
        let mut lsp = lsp::Config::new(params);
        lsp.max_send_queue = 256;
        Settings {
            queue: QueueLimits::default(),
            max_frame: 10 * 1024 * 1024,
            datagram_limit: 4096,
            oversize_datagram: OversizeDatagram::Refuse,
            idle_timeout: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            hello_timeout: Duration::from_secs(5),
            incoming_capacity: 10_240,
            max_inbound_connections: 1024,
            max_nodes: MAX_NODES,
            reliable: ReliableTransport::Tcp,
            reliable_per_node: BTreeMap::new(),
            lsp,
            lsp_loopback_message: 32 * 1024,
            reach: ReachSettings::default(),
            identity: None,
            // A constant of 6 bytes: within NetworkId's 1..=64.
            network_id: NetworkId::new(DEFAULT_NETWORK_ID).expect("valid constant network id"),
            security: Security::Noise,
            pins: BTreeMap::new(),
            transports: BTreeMap::new(),
            listen_also: Vec::new(),
            custom_transports: TransportRegistry::new(),
            rpc: RpcSettings::default(),
            protocols: Vec::new(),
        }
    }
}

/// The largest accepted [`ReachSettings::event_capacity`].
pub const MAX_EVENT_CAPACITY: usize = 1 << 20;

/// The largest accepted [`Settings::datagram_limit`].
pub const MAX_DATAGRAM_LIMIT: usize = 65_000;

/// An invalid setting, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A setting that must be positive is zero.
    #[error("setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// A setting is above its maximum.
    #[error("setting `{name}` must be at most {max}")]
    TooLarge {
        /// The setting.
        name: &'static str,
        /// Its maximum.
        max: u64,
    },
    /// The LSP settings are invalid.
    #[error("lsp: {0}")]
    Lsp(#[from] lsp::ParamsError),
    /// The reachability engine's settings are invalid.
    #[error("reach: {0}")]
    Reach(#[from] reach::ConfigError),
    /// The session settings derived from these ones are invalid (`hello_timeout` above an
    /// hour).
    #[error("session: {0}")]
    Session(#[from] ConfigError),
    /// An application protocol of `Settings::protocols` has a reserved id (below 1,024) or
    /// the id of another.
    #[error("protocol {0}: application ids start at 1024 and appear once")]
    Protocol(u32),
    /// An address of `transports` or `listen_also` has a scheme without a transport (neither
    /// hawser's nor one of `custom_transports`).
    #[error("no transport for scheme {0:?} (register one in `custom_transports`)")]
    UnknownTransport(String),
    /// The node engine's settings derived from these ones are inconsistent (e.g.
    /// `backoff_initial` above `backoff_max`).
    #[error("engine: {0}")]
    Engine(String),
}

impl Settings {
    /// The reliable transport used towards `to`.
    pub fn reliable_for(&self, to: NodeId) -> ReliableTransport {
        self.reliable_per_node
            .get(&to)
            .copied()
            .unwrap_or(self.reliable)
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`SettingsError`] naming the first invalid one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let positive = [
            ("queue.max_messages", self.queue.max_messages as u64),
            ("max_frame", self.max_frame as u64),
            ("datagram_limit", self.datagram_limit as u64),
            ("incoming_capacity", self.incoming_capacity as u64),
            (
                "max_inbound_connections",
                self.max_inbound_connections as u64,
            ),
            ("max_nodes", self.max_nodes as u64),
            ("idle_timeout", self.idle_timeout.as_nanos() as u64),
            ("backoff_initial", self.backoff_initial.as_nanos() as u64),
            ("connect_timeout", self.connect_timeout.as_nanos() as u64),
            ("hello_timeout", self.hello_timeout.as_nanos() as u64),
            (
                "reach.max_control_frames",
                self.reach.max_control_frames as u64,
            ),
            ("reach.event_capacity", self.reach.event_capacity as u64),
            (
                "rpc.default_timeout",
                self.rpc.default_timeout.as_nanos() as u64,
            ),
            (
                "rpc.max_outbound_per_peer",
                self.rpc.max_outbound_per_peer as u64,
            ),
            ("rpc.max_outbound", self.rpc.max_outbound as u64),
            (
                "rpc.max_inbound_per_peer",
                self.rpc.max_inbound_per_peer as u64,
            ),
            ("rpc.max_inbound", self.rpc.max_inbound as u64),
            ("rpc.stream_backlog", self.rpc.stream_backlog as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(SettingsError::Zero(name));
        }
        if self.datagram_limit > MAX_DATAGRAM_LIMIT {
            return Err(SettingsError::TooLarge {
                name: "datagram_limit",
                max: MAX_DATAGRAM_LIMIT as u64,
            });
        }
        // The 4-byte length prefix bounds a frame, kind byte included.
        if self.max_frame >= u32::MAX as usize {
            return Err(SettingsError::TooLarge {
                name: "max_frame",
                max: u64::from(u32::MAX) - 1,
            });
        }
        if self.reach.event_capacity > MAX_EVENT_CAPACITY {
            return Err(SettingsError::TooLarge {
                name: "reach.event_capacity",
                max: MAX_EVENT_CAPACITY as u64,
            });
        }
        if self.reliable_per_node.len() > self.max_nodes {
            return Err(SettingsError::TooLarge {
                name: "reliable_per_node",
                max: self.max_nodes as u64,
            });
        }
        for (name, len) in [
            ("pins", self.pins.len()),
            ("transports", self.transports.len()),
        ] {
            if len > self.max_nodes {
                return Err(SettingsError::TooLarge {
                    name,
                    max: self.max_nodes as u64,
                });
            }
        }
        if self.pins.values().any(|p| p.len() > MAX_PINS) {
            return Err(SettingsError::TooLarge {
                name: "pins (per node)",
                max: MAX_PINS as u64,
            });
        }
        if self.listen_also.len() > MAX_EXTRA_LISTENERS {
            return Err(SettingsError::TooLarge {
                name: "listen_also",
                max: MAX_EXTRA_LISTENERS as u64,
            });
        }
        let mut addrs = self.transports.values().chain(&self.listen_also);
        if let Some(a) = addrs.find(|a| !self.custom_transports.contains(a.scheme())) {
            return Err(SettingsError::UnknownTransport(a.scheme().to_owned()));
        }
        self.validate_rpc()?;
        self.lsp.validate()?;
        self.reach.engine.validate()?;
        Ok(())
    }

    fn validate_rpc(&self) -> Result<(), SettingsError> {
        let limits = [
            (
                "rpc.max_streams_per_session",
                self.rpc.max_streams_per_session as u64,
                MAX_STREAMS_PER_SESSION as u64,
            ),
            (
                "protocols",
                self.protocols.len() as u64,
                MAX_APP_PROTOCOLS as u64,
            ),
            // The 4-byte wire field of a request's deadline, in milliseconds.
            (
                "rpc.default_timeout (ms)",
                self.rpc
                    .default_timeout
                    .as_millis()
                    .min(u128::from(u64::MAX)) as u64,
                u64::from(u32::MAX),
            ),
        ];
        for (name, value, max) in limits {
            if value > max {
                return Err(SettingsError::TooLarge { name, max });
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for p in &self.protocols {
            if p.id().0 < FIRST_APPLICATION_ID || !ids.insert(p.id()) {
                return Err(SettingsError::Protocol(p.id().0));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_lsp_message_size_reaches_the_transports() {
        let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 7).into();
        let remote: std::net::SocketAddr = ([10, 0, 0, 1], 7).into();
        let mut s = Settings::default();
        let t = s.transport_config();
        assert_eq!(t.lsp_message_limit(loopback), 32 * 1024);
        assert_eq!(t.lsp_message_limit(remote), s.lsp.max_payload);
        s.lsp_loopback_message = 8 * 1024;
        assert_eq!(s.transport_config().lsp_message_limit(loopback), 8 * 1024);
        s.lsp_loopback_message = 0;
        assert_eq!(
            s.transport_config().lsp_message_limit(loopback),
            s.lsp.max_payload
        );
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let s = Settings::default();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.max_frame, 10 << 20);
        assert_eq!(s.datagram_limit, 4096);
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.reliable_for(NodeId(3)), ReliableTransport::Tcp);
        assert_eq!(s.lsp_loopback_message, 32 * 1024);
        assert_eq!(s.lsp.params.in_flight_limit(), 256);
        assert_eq!(s.lsp.max_send_queue, 256);
        assert_eq!(s.lsp.validate(), Ok(()));
    }

    #[test]
    fn zeros_and_excess_are_refused() {
        let s = Settings {
            incoming_capacity: 0,
            ..Settings::default()
        };
        assert_eq!(s.validate(), Err(SettingsError::Zero("incoming_capacity")));
        let s = Settings {
            datagram_limit: 70_000,
            ..Settings::default()
        };
        assert!(matches!(s.validate(), Err(SettingsError::TooLarge { .. })));
    }
}
