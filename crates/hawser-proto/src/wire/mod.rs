//! Wire formats: how LSP messages become bytes and back. Stateless; knows nothing of connections.
//!
//! # Organization
//! - [`Message`] is the parsed representation (the `Repr`) of one LSP message, shared by both
//!   codecs. [`ConnId`] and [`SeqNum`] are its identifiers.
//! - [`bundle`] is the payload of a bundled Data message: several length-prefixed application
//!   messages under one sequence number (binary codec only).
//! - [`sack`] is the range list of a selective acknowledgement (binary codec only).
//! - [`checksum`] computes the 16-bit LSP checksum of spec section 1.2.
//! - [`lsp_json`] is the reference-compatible JSON codec (one message per datagram, byte-for-byte
//!   what the Go implementation writes).
//! - [`lsp_binary`] is hawser's compact binary codec, the default (layout in `docs/wire.md`).
//! - [`Codec`] chooses between the two at run time.
//! - [`node`], [`reach`] and [`rpc`] are the node layer's: hellos, frame kinds and datagram
//!   envelopes; reachability events; requests, responses and cancels between nodes.
//! - [`channel`] frames a session's secure channel: the length prefix of each Noise message
//!   on byte streams, and the envelope (data with its counter, handshake steps, hello,
//!   refusal) on message transports.
//! - [`handshake`] holds the session handshake's messages: the prologue, the plaintext-mode
//!   hello, the identity payload inside the Noise handshake, and the protocol list.
//! - [`refusal`] is what one end of a session handshake sends before closing, saying why.
//! - [`stream`] is the header that opens every stream of a session (protocol and version).
//!
//! Every decoder returns [`WireError`] on malformed input and never panics, whatever the bytes.

pub mod bundle;
pub mod channel;
pub mod checksum;
mod cursor;
pub mod handshake;
pub mod lsp_binary;
pub mod lsp_json;
pub mod node;
pub mod reach;
pub mod refusal;
pub mod rpc;
pub mod sack;
pub mod stream;

use std::fmt;

use bytes::{Bytes, BytesMut};

/// A connection identifier, assigned by the server. `0` only appears in `Connect` messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A Data sequence number. Each direction of a connection counts from the client's ISN + 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqNum(pub u64);

impl SeqNum {
    /// The sequence number `n` places after this one (wrapping is impossible in practice: the
    /// ISN is 32-bit and the space is 64-bit).
    #[must_use]
    pub fn plus(self, n: u64) -> SeqNum {
        SeqNum(self.0.wrapping_add(n))
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The four LSP message types, numbered as on the wire, and hawser's selective acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// A client asks to connect (`conn` 0, `seq` = ISN).
    Connect = 0,
    /// Application data.
    Data = 1,
    /// Acknowledges one Data message, or the Connect (seq = ISN); `seq` 0 is a heartbeat.
    Ack = 2,
    /// Cumulative acknowledgement: every Data message up to and including `seq`.
    CAck = 3,
    /// Selective acknowledgement (binary codec only; not a reference type): a CAck of `seq`
    /// plus the ranges above it that the receiver holds, as a [`sack`] range list in `payload`.
    SAck = 4,
}

impl MsgType {
    /// The type for its wire number, if it is one of the reference's four (the JSON codec's
    /// `Type` field; [`SAck`](Self::SAck) has no JSON number).
    pub fn from_u8(v: u8) -> Option<MsgType> {
        match v {
            0 => Some(MsgType::Connect),
            1 => Some(MsgType::Data),
            2 => Some(MsgType::Ack),
            3 => Some(MsgType::CAck),
            _ => None,
        }
    }
}

/// One LSP message: the six fields of spec section 1, parsed.
///
/// `size` and `checksum` are kept as received, so that the protocol logic (not the codec) applies
/// the size check, truncation and checksum check of spec section 3.3. Non-Data messages carry
/// `size` 0, `checksum` 0 and no payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message type.
    pub kind: MsgType,
    /// Connection id (0 for Connect).
    pub conn: ConnId,
    /// Sequence number (the ISN for Connect and its Ack, 0 for a heartbeat).
    pub seq: SeqNum,
    /// Declared payload size in bytes (Data only).
    pub size: u64,
    /// 16-bit checksum (Data only).
    pub checksum: u16,
    /// Payload: `None` for non-Data messages (JSON `null`), `Some` for Data (possibly empty).
    pub payload: Option<Bytes>,
    /// Data only, binary codec only: the payload is a [`bundle`] of several application
    /// messages sharing this sequence number. Always `false` in JSON, which cannot carry it.
    pub bundled: bool,
}

impl Message {
    /// `(Connect, 0, isn)`.
    pub fn connect(isn: SeqNum) -> Message {
        Message::control(MsgType::Connect, ConnId(0), isn)
    }

    /// `(Ack, conn, seq)`; `seq` 0 is a heartbeat.
    pub fn ack(conn: ConnId, seq: SeqNum) -> Message {
        Message::control(MsgType::Ack, conn, seq)
    }

    /// `(CAck, conn, seq)`.
    pub fn cack(conn: ConnId, seq: SeqNum) -> Message {
        Message::control(MsgType::CAck, conn, seq)
    }

    /// `(SAck, conn, through, ranges)`: everything up to `through`, and the `start..end` ranges
    /// above it (ascending; see [`sack::encode`] for what it leaves out).
    pub fn sack(
        conn: ConnId,
        through: SeqNum,
        ranges: impl IntoIterator<Item = (SeqNum, SeqNum)>,
    ) -> Message {
        Message {
            payload: Some(sack::encode(through, ranges)),
            ..Message::control(MsgType::SAck, conn, through)
        }
    }

    /// The ranges of a SAck (empty for any other message). A decoded SAck's list was validated.
    pub fn sack_ranges(&self) -> impl Iterator<Item = (SeqNum, SeqNum)> + '_ {
        let list: &[u8] = match (&self.kind, &self.payload) {
            (MsgType::SAck, Some(p)) => p,
            _ => &[],
        };
        sack::ranges(self.seq, list)
    }

    /// The heartbeat `(Ack, conn, 0)`.
    pub fn heartbeat(conn: ConnId) -> Message {
        Message::ack(conn, SeqNum(0))
    }

    /// `(Data, conn, seq, len, checksum, payload)` with a correct size and checksum.
    pub fn data(conn: ConnId, seq: SeqNum, payload: Bytes) -> Message {
        let size = payload.len() as u64;
        let checksum = checksum::compute(conn.0 as i64, seq.0 as i64, size as i64, &payload);
        Message {
            kind: MsgType::Data,
            conn,
            seq,
            size,
            checksum,
            payload: Some(payload),
            bundled: false,
        }
    }

    /// Like [`data`](Self::data), for a payload that is a [`bundle`] of several messages.
    pub fn bundle(conn: ConnId, seq: SeqNum, bundle: Bytes) -> Message {
        Message {
            bundled: true,
            ..Message::data(conn, seq, bundle)
        }
    }

    fn control(kind: MsgType, conn: ConnId, seq: SeqNum) -> Message {
        Message {
            kind,
            conn,
            seq,
            size: 0,
            checksum: 0,
            payload: None,
            bundled: false,
        }
    }

    /// Whether this is the heartbeat `(Ack, id, 0)`.
    pub fn is_heartbeat(&self) -> bool {
        self.kind == MsgType::Ack && self.seq.0 == 0
    }
}

/// Why bytes could not be decoded into a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The datagram ended before the message did.
    #[error("truncated message")]
    Truncated,
    /// The bytes are not a message of this codec (bad JSON, unknown version, trailing bytes...).
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// The message type number is not 0..=3.
    #[error("unknown message type {0}")]
    UnknownType(u64),
    /// A numeric field is negative or does not fit its type.
    #[error("field {0} out of range")]
    OutOfRange(&'static str),
    /// The output buffer or datagram limit is too small for the message.
    #[error("message does not fit in {0} bytes")]
    TooLong(usize),
}

/// Which wire encoding an endpoint speaks. Both ends of a connection must agree.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Codec {
    /// hawser's compact binary encoding (`docs/wire.md`); the default.
    #[default]
    Binary,
    /// The reference JSON encoding, byte-compatible with the Go implementation.
    Json,
}

impl Codec {
    /// Decodes every message of one datagram, appending them to `out`.
    ///
    /// The JSON codec always yields one message; the binary one may yield several. On error,
    /// messages already appended stay (they were well-formed) and the rest is dropped.
    pub fn decode(self, datagram: &[u8], out: &mut Vec<Message>) -> Result<(), WireError> {
        match self {
            Codec::Json => {
                out.push(lsp_json::decode(datagram)?);
                Ok(())
            }
            Codec::Binary => lsp_binary::decode(datagram, out),
        }
    }

    /// Encodes one message as one datagram, appended to `out`.
    pub fn encode(self, msg: &Message, out: &mut BytesMut) {
        match self {
            Codec::Json => lsp_json::encode(msg, out),
            Codec::Binary => lsp_binary::encode(std::slice::from_ref(msg), out),
        }
    }

    /// The exact number of bytes [`Codec::encode`] writes for `msg`.
    pub fn encoded_len(self, msg: &Message) -> usize {
        match self {
            Codec::Json => lsp_json::encoded_len(msg),
            Codec::Binary => lsp_binary::encoded_len(std::slice::from_ref(msg)),
        }
    }

    /// The codec's name, as the CLI spells it (`json` or `binary`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Binary => "binary",
        }
    }
}

impl std::str::FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Codec::Json),
            "binary" => Ok(Codec::Binary),
            other => Err(format!(
                "unknown wire codec {other:?} (expected json or binary)"
            )),
        }
    }
}
