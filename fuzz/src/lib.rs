//! Helpers shared by the fuzz targets in `fuzz_targets/`: structured inputs that reach past
//! the decoders (well-formed LSP messages with correct checksums, reachability events), and a
//! simulated clock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use hawser_proto::wire::reach::{self, EventBody, Stamp};
use hawser_proto::wire::{Codec, ConnId, Message, MsgType, SeqNum};

/// A simulated clock: one real `Instant` taken once, then moved only by the input.
pub struct Clock {
    now: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            now: Instant::now(),
        }
    }

    /// The current simulated instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance(&mut self, ms: u16) -> Instant {
        self.now += Duration::from_millis(u64::from(ms));
        self.now
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// One of a handful of addresses, so that inputs name the same peer again.
pub fn addr(i: u8) -> SocketAddr {
    match i % 4 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000),
        1 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 4000),
        2 => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4001),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4001),
    }
}

/// An LSP message as a fuzzer builds it: small identifiers (so that they hit live
/// connections and windows), a correct checksum unless asked otherwise.
#[derive(Arbitrary, Debug, Clone)]
pub enum LspMsg {
    /// `(Connect, 0, isn)`.
    Connect(u8),
    /// Data with a correct size and checksum.
    Data { conn: u8, seq: u8, payload: Vec<u8> },
    /// Data with the size and checksum as given.
    RawData {
        conn: u8,
        seq: u8,
        size: u8,
        checksum: u16,
        payload: Vec<u8>,
    },
    /// A bundle of messages under one sequence number.
    Bundle {
        conn: u8,
        seq: u8,
        messages: Vec<Vec<u8>>,
    },
    /// `(Ack, conn, seq)`.
    Ack { conn: u8, seq: u8 },
    /// `(CAck, conn, seq)`.
    CAck { conn: u8, seq: u8 },
    /// `(SAck, conn, through, ranges)`.
    SAck {
        conn: u8,
        through: u8,
        ranges: Vec<(u8, u8)>,
    },
    /// Any message, fields as given.
    Wild {
        kind: u8,
        conn: u64,
        seq: u64,
        size: u64,
        checksum: u16,
        payload: Option<Vec<u8>>,
        bundled: bool,
    },
}

impl LspMsg {
    /// The message. `isn` shifts sequence numbers so that small ones land near a window.
    pub fn to_message(&self, isn: u64) -> Message {
        let seq = |s: u8| SeqNum(isn.wrapping_add(u64::from(s)));
        let conn = |c: u8| ConnId(u64::from(c % 8));
        match self {
            LspMsg::Connect(i) => Message::connect(seq(*i)),
            LspMsg::Data {
                conn: c,
                seq: s,
                payload,
            } => Message::data(conn(*c), seq(*s), Bytes::copy_from_slice(payload)),
            LspMsg::RawData {
                conn: c,
                seq: s,
                size,
                checksum,
                payload,
            } => Message {
                size: u64::from(*size),
                checksum: *checksum,
                ..Message::data(conn(*c), seq(*s), Bytes::copy_from_slice(payload))
            },
            LspMsg::Bundle {
                conn: c,
                seq: s,
                messages,
            } => {
                let mut b = BytesMut::new();
                for m in messages {
                    hawser_proto::wire::bundle::put_entry(&mut b, m);
                }
                Message::bundle(conn(*c), seq(*s), b.freeze())
            }
            LspMsg::Ack { conn: c, seq: s } => Message::ack(conn(*c), seq(*s)),
            LspMsg::CAck { conn: c, seq: s } => Message::cack(conn(*c), seq(*s)),
            LspMsg::SAck {
                conn: c,
                through,
                ranges,
            } => {
                let mut at = u64::from(*through) + 1;
                let mut list = Vec::new();
                for &(gap, len) in ranges.iter().take(40) {
                    let start = at + u64::from(gap) + 1;
                    let end = start + u64::from(len) + 1;
                    list.push((seq(0).plus(start), seq(0).plus(end)));
                    at = end;
                }
                Message::sack(conn(*c), seq(*through), list)
            }
            LspMsg::Wild {
                kind,
                conn,
                seq,
                size,
                checksum,
                payload,
                bundled,
            } => Message {
                kind: match kind % 5 {
                    0 => MsgType::Connect,
                    1 => MsgType::Data,
                    2 => MsgType::Ack,
                    3 => MsgType::CAck,
                    _ => MsgType::SAck,
                },
                conn: ConnId(*conn),
                seq: SeqNum(*seq),
                size: *size,
                checksum: *checksum,
                payload: payload.as_deref().map(Bytes::copy_from_slice),
                bundled: *bundled,
            },
        }
    }
}

/// A datagram as a fuzzer sends it to an endpoint: well-formed messages in the endpoint's
/// codec, or raw bytes.
#[derive(Arbitrary, Debug, Clone)]
pub enum Datagram {
    /// Messages encoded with the endpoint's codec (the JSON codec sends the first only).
    Messages(Vec<LspMsg>),
    /// Any bytes.
    Raw(Vec<u8>),
}

impl Datagram {
    /// The datagram's bytes for an endpoint speaking `codec`.
    pub fn to_bytes(&self, codec: Codec, isn: u64) -> Vec<u8> {
        match self {
            Datagram::Raw(b) => b.clone(),
            Datagram::Messages(msgs) => {
                let msgs: Vec<Message> = msgs.iter().map(|m| m.to_message(isn)).collect();
                let mut out = BytesMut::new();
                match codec {
                    Codec::Binary => hawser_proto::wire::lsp_binary::encode(&msgs, &mut out),
                    Codec::Json => {
                        // JSON carries neither bundles nor values above i64::MAX.
                        if let Some(m) = msgs.first().filter(|m| json_encodable(m)) {
                            hawser_proto::wire::lsp_json::encode(m, &mut out);
                        }
                    }
                }
                out.to_vec()
            }
        }
    }
}

/// Whether the JSON codec can carry `m` (no bundle; identifiers a Go peer can hold).
pub fn json_encodable(m: &Message) -> bool {
    let limit = i64::MAX as u64;
    !m.bundled && m.conn.0 <= limit && m.seq.0 <= limit && m.size <= limit
}

/// An address a reachability event may carry.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Addr {
    /// IPv4.
    V4([u8; 4], u16),
    /// IPv6.
    V6([u8; 16], u16),
    /// One of [`addr`]'s few.
    Known(u8),
}

impl Addr {
    /// The socket address.
    pub fn to_socket(self) -> SocketAddr {
        match self {
            Addr::V4(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
            Addr::V6(ip, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
            Addr::Known(i) => addr(i),
        }
    }
}

/// A reachability event as a fuzzer builds it: small origins and stamps.
#[derive(Arbitrary, Debug, Clone)]
pub struct ReachEvent {
    /// Origin node (few distinct ones).
    pub origin: u8,
    /// Incarnation.
    pub incarnation: u8,
    /// Sequence number.
    pub seq: u8,
    /// Hops so far.
    pub hops: u8,
    /// What it says.
    pub body: ReachBody,
}

/// The body of a [`ReachEvent`].
#[derive(Arbitrary, Debug, Clone)]
pub enum ReachBody {
    /// A ticktock.
    Ticktock {
        /// Lease in milliseconds.
        lease_ms: u32,
        /// Addresses and the seq that found each.
        addresses: Vec<(Addr, u8)>,
    },
    /// `found`.
    Found(Addr),
    /// `down`.
    Down(Addr),
    /// An application event.
    App {
        /// Kind.
        kind: u16,
        /// Payload.
        payload: Vec<u8>,
    },
}

impl ReachEvent {
    /// The encoded event, if it is within the format's bounds.
    pub fn encode(&self) -> Option<Bytes> {
        let body = match &self.body {
            ReachBody::Ticktock {
                lease_ms,
                addresses,
            } => EventBody::Ticktock {
                lease: Duration::from_millis(u64::from(*lease_ms)),
                addresses: addresses
                    .iter()
                    .map(|(a, s)| (a.to_socket(), u64::from(*s)))
                    .collect(),
            },
            ReachBody::Found(a) => EventBody::Found(a.to_socket()),
            ReachBody::Down(a) => EventBody::Down(a.to_socket()),
            ReachBody::App { kind, payload } => EventBody::App {
                kind: *kind,
                payload: Bytes::copy_from_slice(payload),
            },
        };
        let event = reach::Event {
            origin: u64::from(self.origin % 8),
            stamp: Stamp {
                incarnation: u64::from(self.incarnation % 4),
                seq: u64::from(self.seq),
            },
            hops: self.hops,
            body,
        };
        reach::to_bytes(&event).ok()
    }
}

/// LSP endpoint settings as a fuzzer picks them: small bounds, so that they are reached.
#[derive(Arbitrary, Debug, Clone)]
pub struct LspSetup {
    json: bool,
    epoch_limit: u8,
    epoch_ms: u16,
    window: u8,
    max_unacked: u8,
    max_backoff: u8,
    retransmit: u8,
    acks: u8,
    max_datagram: u16,
    max_payload: u16,
    max_send_queue: u8,
    max_read_queue: u8,
    max_connections: u8,
    bundle_max: u16,
}

impl LspSetup {
    /// A configuration that validates.
    pub fn config(&self) -> hawser_proto::lsp::Config {
        use hawser_proto::lsp::{AckPolicy, Config, Params, RetransmitPolicy};
        let params = Params::reference()
            .with_epoch_limit(u32::from(self.epoch_limit % 8) + 1)
            .with_epoch(Duration::from_millis(u64::from(self.epoch_ms % 2000) + 1))
            .with_window(u32::from(self.window % 16) + 1)
            .with_max_backoff(u32::from(self.max_backoff % 4))
            .with_max_unacked(u32::from(self.max_unacked % 16) + 1);
        let mut config = Config::default();
        config.params = params;
        config.codec = if self.json {
            Codec::Json
        } else {
            Codec::Binary
        };
        config.max_datagram = 64 + usize::from(self.max_datagram) % 1400;
        config.retransmit = match self.retransmit % 3 {
            0 => RetransmitPolicy::Auto,
            1 => RetransmitPolicy::Epoch,
            _ => RetransmitPolicy::Adaptive,
        };
        config.acks = match self.acks % 4 {
            0 => AckPolicy::Auto,
            1 => AckPolicy::PerMessage,
            2 => AckPolicy::Cumulative,
            _ => AckPolicy::Selective,
        };
        config.max_payload = 1 + usize::from(self.max_payload) % 1400;
        config.max_send_queue = 1 + usize::from(self.max_send_queue % 64);
        config.max_read_queue = 1 + usize::from(self.max_read_queue % 64);
        config.max_connections = 1 + usize::from(self.max_connections % 4);
        config.bundle_max = usize::from(self.bundle_max) % 300;
        config.validate().expect("fuzz settings validate");
        config
    }
}

/// Every datagram an endpoint sends must decode with its own codec.
pub fn check_transmit(codec: Codec, contents: &[u8]) -> Vec<Message> {
    let mut msgs = Vec::new();
    if let Err(e) = codec.decode(contents, &mut msgs) {
        panic!("endpoint sent a datagram its own codec rejects: {e}");
    }
    msgs
}
