//! Request/response frames between nodes: the body of a [`FrameKind::Rpc`] frame on a node's
//! messages stream. Stateless; correlation, deadlines and caps are the node layer's.
//!
//! ```text
//! rpc      = request | response | cancel            (after the frame's 0x04 kind byte)
//! request  = 0x01 | id:u64 | protocol:u32 | timeout_ms:u32 | payload (the rest)
//! response = 0x02 | id:u64 | status:u8 | body
//! cancel   = 0x03 | id:u64
//!
//! status/body:
//!   0x00 ok         | payload (the rest)
//!   0x01 refused    | code:u32 | message (UTF-8, the rest, at most MAX_MESSAGE_LEN bytes)
//!   0x02 no handler
//!   0x03 overloaded
//!   0x04 too large  | part:u8 (0 request, 1 response) | len:u64 | max:u64
//!   0x05 omitted    (the handler dropped the request without answering)
//! ```
//!
//! All integers are big-endian. `id` is chosen by the caller and unique among its requests in
//! flight to one peer; a response or a cancel names the request it answers by it. `timeout_ms`
//! is the time the caller still gave the request when it queued it (0: none left). Parsers
//! never panic, and reject truncation, unknown types and statuses, trailing bytes after
//! fixed-size messages, and invalid UTF-8.
//!
//! A frame as queued for a stream (4-byte length, kind byte, fixed fields, then the tail:
//! payload or message) is built by [`Rpc::frame_header`] and [`Rpc::tail`], one encoder for
//! every use.
//!
//! [`FrameKind::Rpc`]: super::node::FrameKind::Rpc

use bytes::{BufMut, BytesMut};

use super::cursor::Reader;
use super::node::{FrameKind, FRAME_KIND_LEN, FRAME_LEN_PREFIX};
use super::WireError;

/// Type byte of a request.
const TYPE_REQUEST: u8 = 0x01;
/// Type byte of a response.
const TYPE_RESPONSE: u8 = 0x02;
/// Type byte of a cancel.
const TYPE_CANCEL: u8 = 0x03;

mod status {
    pub const OK: u8 = 0x00;
    pub const REFUSED: u8 = 0x01;
    pub const NO_HANDLER: u8 = 0x02;
    pub const OVERLOADED: u8 = 0x03;
    pub const TOO_LARGE: u8 = 0x04;
    pub const OMITTED: u8 = 0x05;
}

/// Longest refusal message, in bytes (a longer one is cut at a character boundary by
/// [`truncate_message`]).
pub const MAX_MESSAGE_LEN: usize = 1024;

/// Bytes of a request before its payload (type, id, protocol, timeout).
pub const REQUEST_HEADER_LEN: usize = 1 + 8 + 4 + 4;
/// Bytes of a response before its body's tail (type, id, status).
pub const RESPONSE_HEADER_LEN: usize = 1 + 8 + 1;
/// The largest fixed part of any rpc message (a "too large" response).
pub const MAX_FIXED_LEN: usize = RESPONSE_HEADER_LEN + 1 + 8 + 8;
/// The largest frame header [`Rpc::frame_header`] gives: length prefix, kind byte, fixed part.
pub const MAX_FRAME_HEADER_LEN: usize = FRAME_LEN_PREFIX + FRAME_KIND_LEN + MAX_FIXED_LEN;

/// Which part of an exchange was too large.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    /// The request.
    Request,
    /// The response.
    Response,
}

/// How a request ended, as its response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The handler answered with this payload.
    Ok(&'a [u8]),
    /// The handler refused, with an application code and a message.
    Refused {
        /// The application's code.
        code: u32,
        /// Why, for people (at most [`MAX_MESSAGE_LEN`] bytes).
        message: &'a str,
    },
    /// The peer serves no handler for the request's protocol.
    NoHandler,
    /// The peer is at its cap of requests in flight (from this node, or in all).
    Overloaded,
    /// The request or the response was above the peer's maximum.
    TooLarge {
        /// Which one.
        part: Part,
        /// Its length.
        len: u64,
        /// The maximum that applied.
        max: u64,
    },
    /// The handler dropped the request without answering.
    Omitted,
}

/// One rpc message: the body of a [`FrameKind::Rpc`] frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc<'a> {
    /// A request for the handler of `protocol` at the receiver.
    Request {
        /// The caller's id for it.
        id: u64,
        /// The protocol's number (`ProtocolId` at the node layer).
        protocol: u32,
        /// Milliseconds the caller still gave it when it was queued.
        timeout_ms: u32,
        /// The request.
        payload: &'a [u8],
    },
    /// The answer to request `id`.
    Response {
        /// The request's id.
        id: u64,
        /// How it ended.
        outcome: Outcome<'a>,
    },
    /// The caller gave up on request `id` (its future was dropped, or it timed out).
    Cancel {
        /// The request's id.
        id: u64,
    },
}

/// A frame header built by [`Rpc::frame_header`]: at most [`MAX_FRAME_HEADER_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    bytes: [u8; MAX_FRAME_HEADER_LEN],
    len: usize,
}

impl FrameHeader {
    /// The header's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The message's fixed fields: the header after the frame's length prefix and kind byte
    /// (what [`Rpc::parse`] reads first, in front of the tail).
    pub fn message_head(&self) -> &[u8] {
        self.as_slice()
            .get(FRAME_LEN_PREFIX + FRAME_KIND_LEN..)
            .unwrap_or_default()
    }
}

impl<'a> Rpc<'a> {
    /// Parses the body of an rpc frame (the bytes after its kind byte).
    ///
    /// # Errors
    /// [`WireError`] on anything that is not one rpc message; never panics.
    pub fn parse(body: &'a [u8]) -> Result<Rpc<'a>, WireError> {
        let mut r = Reader(body);
        let rpc = match r.u8()? {
            TYPE_REQUEST => Rpc::Request {
                id: u64::from_be_bytes(r.array()?),
                protocol: u32::from_be_bytes(r.array()?),
                timeout_ms: u32::from_be_bytes(r.array()?),
                payload: r.0,
            },
            TYPE_RESPONSE => {
                let id = u64::from_be_bytes(r.array()?);
                let outcome = parse_outcome(&mut r)?;
                return Ok(Rpc::Response { id, outcome });
            }
            TYPE_CANCEL => Rpc::Cancel {
                id: u64::from_be_bytes(r.array()?),
            },
            other => return Err(WireError::UnknownType(u64::from(other))),
        };
        if matches!(rpc, Rpc::Cancel { .. }) && !r.is_empty() {
            return Err(WireError::Malformed("trailing bytes after cancel"));
        }
        Ok(rpc)
    }

    /// The variable-length end of the message: a request's or an ok response's payload, a
    /// refusal's message; empty otherwise.
    pub fn tail(&self) -> &'a [u8] {
        match self {
            Rpc::Request { payload, .. }
            | Rpc::Response {
                outcome: Outcome::Ok(payload),
                ..
            } => payload,
            Rpc::Response {
                outcome: Outcome::Refused { message, .. },
                ..
            } => message.as_bytes(),
            _ => &[],
        }
    }

    /// The encoded length of the message (without the frame's length and kind byte).
    pub fn buffer_len(&self) -> usize {
        self.fixed().1 + self.tail().len()
    }

    /// What goes before [`tail`](Self::tail) in a frame of a node's stream: the 4-byte
    /// big-endian frame length (kind byte and message), the [`FrameKind::Rpc`] byte, and the
    /// message's fixed fields. `None` when the frame's length does not fit in 4 bytes.
    pub fn frame_header(&self) -> Option<FrameHeader> {
        let (fixed, fixed_len) = self.fixed();
        let frame_len = u32::try_from(FRAME_KIND_LEN + fixed_len + self.tail().len()).ok()?;
        let head = FRAME_LEN_PREFIX + FRAME_KIND_LEN;
        let mut bytes = [0u8; MAX_FRAME_HEADER_LEN];
        bytes[..FRAME_LEN_PREFIX].copy_from_slice(&frame_len.to_be_bytes());
        bytes[FRAME_LEN_PREFIX] = FrameKind::Rpc.byte();
        bytes[head..head + fixed_len].copy_from_slice(&fixed[..fixed_len]);
        Some(FrameHeader {
            bytes,
            len: head + fixed_len,
        })
    }

    /// Appends the encoded message (fixed fields, then the tail) to `out`.
    pub fn emit(&self, out: &mut BytesMut) {
        let (fixed, len) = self.fixed();
        out.reserve(len + self.tail().len());
        out.put_slice(&fixed[..len]);
        out.put_slice(self.tail());
    }

    /// The fixed fields, encoded, and their length.
    fn fixed(&self) -> ([u8; MAX_FIXED_LEN], usize) {
        let mut out = [0u8; MAX_FIXED_LEN];
        let mut w = Writer {
            out: &mut out,
            at: 0,
        };
        match *self {
            Rpc::Request {
                id,
                protocol,
                timeout_ms,
                ..
            } => {
                w.put(&[TYPE_REQUEST]);
                w.put(&id.to_be_bytes());
                w.put(&protocol.to_be_bytes());
                w.put(&timeout_ms.to_be_bytes());
            }
            Rpc::Response { id, outcome } => {
                w.put(&[TYPE_RESPONSE]);
                w.put(&id.to_be_bytes());
                match outcome {
                    Outcome::Ok(_) => w.put(&[status::OK]),
                    Outcome::Refused { code, .. } => {
                        w.put(&[status::REFUSED]);
                        w.put(&code.to_be_bytes());
                    }
                    Outcome::NoHandler => w.put(&[status::NO_HANDLER]),
                    Outcome::Overloaded => w.put(&[status::OVERLOADED]),
                    Outcome::TooLarge { part, len, max } => {
                        w.put(&[status::TOO_LARGE, part_byte(part)]);
                        w.put(&len.to_be_bytes());
                        w.put(&max.to_be_bytes());
                    }
                    Outcome::Omitted => w.put(&[status::OMITTED]),
                }
            }
            Rpc::Cancel { id } => {
                w.put(&[TYPE_CANCEL]);
                w.put(&id.to_be_bytes());
            }
        }
        let len = w.at;
        (out, len)
    }
}

/// Writes into a fixed array; every caller writes at most [`MAX_FIXED_LEN`] bytes.
struct Writer<'b> {
    out: &'b mut [u8; MAX_FIXED_LEN],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        // The longest message (a "too large" response) is exactly MAX_FIXED_LEN bytes.
        if let Some(dst) = self.out.get_mut(self.at..self.at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.at += bytes.len();
        }
    }
}

fn part_byte(part: Part) -> u8 {
    match part {
        Part::Request => 0,
        Part::Response => 1,
    }
}

fn parse_outcome<'a>(r: &mut Reader<'a>) -> Result<Outcome<'a>, WireError> {
    let outcome = match r.u8()? {
        status::OK => return Ok(Outcome::Ok(r.0)),
        status::REFUSED => {
            let code = u32::from_be_bytes(r.array()?);
            if r.0.len() > MAX_MESSAGE_LEN {
                return Err(WireError::Malformed("refusal message too long"));
            }
            let message = std::str::from_utf8(r.0)
                .map_err(|_| WireError::Malformed("refusal message not UTF-8"))?;
            return Ok(Outcome::Refused { code, message });
        }
        status::NO_HANDLER => Outcome::NoHandler,
        status::OVERLOADED => Outcome::Overloaded,
        status::TOO_LARGE => {
            let part = match r.u8()? {
                0 => Part::Request,
                1 => Part::Response,
                _ => return Err(WireError::Malformed("unknown part")),
            };
            Outcome::TooLarge {
                part,
                len: u64::from_be_bytes(r.array()?),
                max: u64::from_be_bytes(r.array()?),
            }
        }
        status::OMITTED => Outcome::Omitted,
        _ => return Err(WireError::Malformed("unknown response status")),
    };
    if !r.is_empty() {
        return Err(WireError::Malformed("trailing bytes after response"));
    }
    Ok(outcome)
}

/// `message` cut to at most [`MAX_MESSAGE_LEN`] bytes, at a character boundary.
pub fn truncate_message(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE_LEN {
        return message;
    }
    let mut end = MAX_MESSAGE_LEN;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_examples() -> Vec<Rpc<'static>> {
        vec![
            Rpc::Request {
                id: 7,
                protocol: 1024,
                timeout_ms: 5000,
                payload: b"vote",
            },
            Rpc::Request {
                id: u64::MAX,
                protocol: u32::MAX,
                timeout_ms: 0,
                payload: b"",
            },
            Rpc::Response {
                id: 7,
                outcome: Outcome::Ok(b"granted"),
            },
            Rpc::Response {
                id: 8,
                outcome: Outcome::Refused {
                    code: 42,
                    message: "not the leader: ünïcode",
                },
            },
            Rpc::Response {
                id: 9,
                outcome: Outcome::NoHandler,
            },
            Rpc::Response {
                id: 10,
                outcome: Outcome::Overloaded,
            },
            Rpc::Response {
                id: 11,
                outcome: Outcome::TooLarge {
                    part: Part::Response,
                    len: 1 << 40,
                    max: 8 << 20,
                },
            },
            Rpc::Response {
                id: 12,
                outcome: Outcome::Omitted,
            },
            Rpc::Cancel { id: 13 },
        ]
    }

    #[test]
    fn golden_bytes_of_a_request_a_refusal_and_a_cancel() {
        let mut out = BytesMut::new();
        Rpc::Request {
            id: 1,
            protocol: 1024,
            timeout_ms: 250,
            payload: b"hi",
        }
        .emit(&mut out);
        assert_eq!(
            &out[..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 4, 0, 0, 0, 0, 250, b'h', b'i']
        );
        out.clear();
        Rpc::Response {
            id: 2,
            outcome: Outcome::Refused {
                code: 3,
                message: "no",
            },
        }
        .emit(&mut out);
        assert_eq!(
            &out[..],
            &[2, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 3, b'n', b'o']
        );
        out.clear();
        Rpc::Cancel { id: 258 }.emit(&mut out);
        assert_eq!(&out[..], &[3, 0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn every_message_round_trips_and_its_frame_is_header_then_tail() {
        for m in all_examples() {
            let mut body = BytesMut::new();
            m.emit(&mut body);
            assert_eq!(body.len(), m.buffer_len(), "{m:?}");
            assert_eq!(Rpc::parse(&body).unwrap(), m);
            let header = m.frame_header().unwrap();
            let mut frame = BytesMut::from(header.as_slice());
            frame.extend_from_slice(m.tail());
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4);
            assert_eq!(FrameKind::of(&frame[4..]).unwrap(), FrameKind::Rpc);
            assert_eq!(&frame[5..], &body[..]);
            let mut head = header.message_head().to_vec();
            head.extend_from_slice(m.tail());
            assert_eq!(head, &body[..]);
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let bad: [&[u8]; 10] = [
            b"",
            &[9],
            &[1, 0, 0],
            &[2, 0, 0, 0, 0, 0, 0, 0, 1],
            &[2, 0, 0, 0, 0, 0, 0, 0, 1, 0x77],
            &[2, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0],
            &[2, 0, 0, 0, 0, 0, 0, 0, 1, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0],
            &[2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0xff],
            &[3, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            &[3, 0, 0, 0],
        ];
        for b in bad {
            assert!(Rpc::parse(b).is_err(), "{b:?}");
        }
        let mut long = vec![2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1];
        long.extend(std::iter::repeat_n(b'a', MAX_MESSAGE_LEN + 1));
        assert!(Rpc::parse(&long).is_err());
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let s = "é".repeat(MAX_MESSAGE_LEN);
        let cut = truncate_message(&s);
        assert!(cut.len() <= MAX_MESSAGE_LEN && cut.len() >= MAX_MESSAGE_LEN - 1);
        assert_eq!(truncate_message("short"), "short");
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = Rpc::parse(&bytes) {
                // What parses re-encodes to the same bytes: one encoding per message.
                let mut out = BytesMut::new();
                m.emit(&mut out);
                prop_assert_eq!(&out[..], &bytes[..]);
            }
        }

        #[test]
        fn requests_round_trip(id: u64, protocol: u32, timeout_ms: u32,
                               payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let m = Rpc::Request { id, protocol, timeout_ms, payload: &payload };
            let mut out = BytesMut::new();
            m.emit(&mut out);
            prop_assert_eq!(Rpc::parse(&out).unwrap(), m);
        }
    }
}
