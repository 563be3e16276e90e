//! Node-layer frame formats: the hellos that open a reliable connection, the kind byte of a
//! framed connection's frames, and the envelope of an unreliable datagram. Stateless; node ids
//! are plain `u64` here (the node layer wraps them).
//!
//! ```text
//! hello        = magic "HW" (0x48 0x57) | version:u8 (0x01) | kind:u8 (0x01) | from:u64 BE
//!                (12 bytes; opens a plain connection)
//! framed_hello = magic "HW" | version:u8 (0x01) | kind:u8 (0x03) | from:u64 BE | addr
//!                (13, 19 or 31 bytes; opens a framed connection)
//! addr         = 0x00 (none) | 0x04 ipv4[4] port:u16 BE | 0x06 ipv6[16] port:u16 BE
//!                (where the sender listens, if it says)
//! datagram     = magic "HW" | version:u8 (0x01) | kind:u8 (0x02) | from:u64 BE | to:u64 BE
//!                | payload (the rest of the UDP datagram; 20 header bytes)
//! sealed       = magic "HW" | version:u8 (0x01) | kind:u8 (0x04) | from:u64 BE | to:u64 BE
//!                | counter:u64 BE | ciphertext | tag[16]
//!                (28 header bytes, then the payload sealed with ChaCha20-Poly1305)
//! ```
//!
//! A `sealed` datagram is what nodes running with Noise sessions send instead of `datagram`.
//! Its key is the sender's datagram key for this receiver (sent in a [`FrameKind::DatagramKey`]
//! frame inside the sender's encrypted session), its 96-bit nonce is 4 zero bytes then
//! `counter` (big-endian; each key seals each counter once), and its associated data is the
//! whole 28-byte header ([`SealedDatagram::header`]), so `from`, `to` and `counter` are
//! authenticated. The receiver checks `counter` against a replay window after authentication.
//!
//! A hello is the first frame of every reliable connection, inside its length prefix on TCP, or
//! the first message on LSP. After a plain `hello`, each frame is one application payload (on
//! TCP: 4-byte big-endian length, then the payload; no further header). After a `framed_hello`,
//! each frame starts with one [`FrameKind`] byte:
//!
//! ```text
//! frame = 0x00 | application payload      (delivered to the application, byte for byte)
//!       | 0x01 | reachability event       (hawser_proto::wire::reach, for the node itself)
//!       | 0x02                            (ping: opens the connection, carries nothing)
//!       | 0x03 | key[32]                  (the sender's datagram key for this receiver;
//!                                          sent only inside an encrypted session)
//!       | 0x04 | rpc message              (a request, response or cancel: `wire::rpc`)
//! ```
//!
//! hawser's nodes open framed connections and accept both. Parsers never panic, and reject a
//! wrong magic, an unknown version or kind, truncation and trailing bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::WireError;

/// The two magic bytes, `"HW"`.
pub const MAGIC: [u8; 2] = *b"HW";
/// The version byte of this layout.
pub const VERSION: u8 = 0x01;
/// The kind byte of a hello.
pub const KIND_HELLO: u8 = 0x01;
/// The kind byte of a datagram envelope.
pub const KIND_DATAGRAM: u8 = 0x02;
/// The kind byte of a framed hello ([`FramedHello`]).
pub const KIND_FRAMED_HELLO: u8 = 0x03;
/// The kind byte of a sealed datagram envelope ([`SealedDatagram`]).
pub const KIND_SEALED_DATAGRAM: u8 = 0x04;
/// Length of an encoded [`Hello`].
pub const HELLO_LEN: usize = 12;
/// Length of a datagram envelope's header, before the payload.
pub const DATAGRAM_HEADER_LEN: usize = 20;
/// Length of a sealed datagram's header (authenticated, in clear), before the ciphertext.
pub const SEALED_HEADER_LEN: usize = 28;
/// Length of a sealed datagram's authentication tag (Poly1305), after the ciphertext.
pub const SEALED_TAG_LEN: usize = super::channel::TAG_LEN;
/// Length of a datagram key ([`FrameKind::DatagramKey`]'s body).
pub const DATAGRAM_KEY_LEN: usize = 32;

mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const FROM: Range<usize> = 4..12;
    pub const TO: Range<usize> = 12..20;
    pub const COUNTER: Range<usize> = 20..28;
}

/// The first frame of a reliable connection: who is speaking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's node id.
    pub from: u64,
}

impl Hello {
    /// Parses a hello frame (exactly [`HELLO_LEN`] bytes).
    ///
    /// # Errors
    /// [`WireError`] on anything else; never panics.
    pub fn parse(bytes: &[u8]) -> Result<Hello, WireError> {
        check_header(bytes, HELLO_LEN, KIND_HELLO)?;
        if bytes.len() > HELLO_LEN {
            return Err(WireError::Malformed("trailing bytes after hello"));
        }
        Ok(Hello {
            from: read_u64(bytes, field::FROM),
        })
    }

    /// Appends the encoded hello ([`HELLO_LEN`] bytes) to `out`.
    pub fn emit(&self, out: &mut BytesMut) {
        out.reserve(HELLO_LEN);
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u8(KIND_HELLO);
        out.put_u64(self.from);
    }

    /// The encoded length, [`HELLO_LEN`].
    pub fn buffer_len(&self) -> usize {
        HELLO_LEN
    }
}

/// The hello of a framed connection: who is speaking, where it listens (if it says), and that
/// every later frame starts with a [`FrameKind`] byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramedHello {
    /// The sender's node id.
    pub from: u64,
    /// Where the sender listens (its advertised address), if it says.
    pub listen: Option<SocketAddr>,
}

/// Address family bytes of a framed hello's `addr`.
mod family {
    pub const NONE: u8 = 0x00;
    pub const V4: u8 = 0x04;
    pub const V6: u8 = 0x06;
}

impl FramedHello {
    /// Parses a framed hello frame (exactly [`buffer_len`](Self::buffer_len) bytes).
    ///
    /// # Errors
    /// [`WireError`] on anything else; never panics.
    pub fn parse(bytes: &[u8]) -> Result<FramedHello, WireError> {
        check_header(bytes, HELLO_LEN + 1, KIND_FRAMED_HELLO)?;
        let from = read_u64(bytes, field::FROM);
        let rest = bytes.get(HELLO_LEN..).unwrap_or_default();
        let (listen, used) = match rest.first().copied() {
            Some(family::NONE) => (None, 1),
            Some(family::V4) => {
                let b = rest.get(1..7).ok_or(WireError::Truncated)?;
                let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
                let port = u16::from_be_bytes([b[4], b[5]]);
                (Some(SocketAddr::new(IpAddr::V4(ip), port)), 7)
            }
            Some(family::V6) => {
                let b = rest.get(1..19).ok_or(WireError::Truncated)?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&b[..16]);
                let port = u16::from_be_bytes([b[16], b[17]]);
                (
                    Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port)),
                    19,
                )
            }
            Some(_) => return Err(WireError::Malformed("unknown address family")),
            None => return Err(WireError::Truncated),
        };
        if rest.len() > used {
            return Err(WireError::Malformed("trailing bytes after hello"));
        }
        Ok(FramedHello { from, listen })
    }

    /// Appends the encoded hello ([`buffer_len`](Self::buffer_len) bytes) to `out`.
    pub fn emit(&self, out: &mut BytesMut) {
        out.reserve(self.buffer_len());
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u8(KIND_FRAMED_HELLO);
        out.put_u64(self.from);
        match self.listen {
            None => out.put_u8(family::NONE),
            Some(SocketAddr::V4(a)) => {
                out.put_u8(family::V4);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
            Some(SocketAddr::V6(a)) => {
                out.put_u8(family::V6);
                out.put_slice(&a.ip().octets());
                out.put_u16(a.port());
            }
        }
    }

    /// Appends the hello as the first frame of a byte stream carries it: the 4-byte length
    /// prefix, then the hello (no kind byte).
    pub fn emit_frame(&self, out: &mut BytesMut) {
        let len = self.buffer_len();
        out.reserve(FRAME_LEN_PREFIX + len);
        // At most MAX_HELLO_FRAME (31) bytes.
        out.put_u32(len as u32);
        self.emit(out);
    }

    /// The encoded length: 13 bytes without an address, 19 with IPv4, 31 with IPv6.
    pub fn buffer_len(&self) -> usize {
        HELLO_LEN
            + match self.listen {
                None => 1,
                Some(SocketAddr::V4(_)) => 7,
                Some(SocketAddr::V6(_)) => 19,
            }
    }
}

/// Either hello, as the first frame of an accepted connection says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyHello {
    /// A plain connection: every frame is an application payload.
    Plain(Hello),
    /// A framed connection: every frame starts with a [`FrameKind`] byte.
    Framed(FramedHello),
}

impl AnyHello {
    /// Parses the first frame of a connection as either hello (by its kind byte).
    ///
    /// # Errors
    /// [`WireError`] when it is neither; never panics.
    pub fn parse(bytes: &[u8]) -> Result<AnyHello, WireError> {
        if bytes.get(field::KIND) == Some(&KIND_FRAMED_HELLO) {
            FramedHello::parse(bytes).map(AnyHello::Framed)
        } else {
            Hello::parse(bytes).map(AnyHello::Plain)
        }
    }

    /// The sender's node id.
    pub fn from(&self) -> u64 {
        match self {
            AnyHello::Plain(h) => h.from,
            AnyHello::Framed(h) => h.from,
        }
    }
}

/// What a frame of a framed connection carries: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// An application payload (the rest of the frame), delivered as is.
    App = 0x00,
    /// A reachability event (`wire::reach`) for the receiving node itself.
    Reach = 0x01,
    /// Nothing: a frame that only opens (or keeps) the connection. Its rest must be empty.
    Ping = 0x02,
    /// The sender's datagram key for the receiver: exactly [`DATAGRAM_KEY_LEN`] bytes.
    DatagramKey = 0x03,
    /// A request, response or cancel ([`super::rpc::Rpc`]); never empty.
    Rpc = 0x04,
}

/// Length of the kind byte before a framed connection's frame body.
pub const FRAME_KIND_LEN: usize = 1;

impl FrameKind {
    /// The kind of a framed connection's frame, from its first byte.
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an empty frame, [`WireError::UnknownType`] for an unknown
    /// kind, [`WireError::Malformed`] for a ping with a body; never panics.
    pub fn of(frame: &[u8]) -> Result<FrameKind, WireError> {
        let (&kind, rest) = frame.split_first().ok_or(WireError::Truncated)?;
        match kind {
            0x00 => Ok(FrameKind::App),
            0x01 => Ok(FrameKind::Reach),
            0x02 if rest.is_empty() => Ok(FrameKind::Ping),
            0x02 => Err(WireError::Malformed("ping with a body")),
            0x03 if rest.len() == DATAGRAM_KEY_LEN => Ok(FrameKind::DatagramKey),
            0x03 => Err(WireError::Malformed("datagram key of the wrong length")),
            0x04 if !rest.is_empty() => Ok(FrameKind::Rpc),
            0x04 => Err(WireError::Truncated),
            other => Err(WireError::UnknownType(u64::from(other))),
        }
    }

    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        self as u8
    }
}

/// Length of the big-endian length prefix before every frame on a byte stream.
pub const FRAME_LEN_PREFIX: usize = 4;

/// The most bytes a framed hello takes inside its frame (31, with an IPv6 address); a
/// receiver reading the first frame of a stream may refuse a longer one unread.
pub const MAX_HELLO_FRAME: usize = HELLO_LEN + 19;

/// Bytes before an application payload on a framed byte stream: the 4-byte big-endian length
/// of the frame (kind byte and payload) and the [`FrameKind::App`] byte.
pub const APP_FRAME_HEADER_LEN: usize = FRAME_LEN_PREFIX + FRAME_KIND_LEN;

/// One frame of a framed connection, parsed: its kind and its body (sliced, not copied, from
/// the received frame).
///
/// On a byte stream each frame is `len:u32 BE | kind:u8 | body`, `len` counting the kind byte
/// and the body. [`Frame::emit`] writes exactly that; [`Frame::parse`] reads what follows the
/// length; [`frame_len`], [`peek_frame`] and [`take_frame`] read the length, bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// An application payload.
    App(Bytes),
    /// One encoded reachability event (`wire::reach`).
    Reach(Bytes),
    /// Nothing: opens (or keeps) the connection.
    Ping,
    /// The sender's datagram key for the receiver (encrypted sessions only).
    DatagramKey([u8; DATAGRAM_KEY_LEN]),
    /// A request, response or cancel (`wire::rpc`), after its kind byte.
    Rpc(Bytes),
}

impl Frame {
    /// Parses a frame of a framed connection (kind byte first, the length prefix already
    /// removed).
    ///
    /// # Errors
    /// [`WireError`] as [`FrameKind::of`] says: an empty frame, an unknown kind, a body of the
    /// wrong length for its kind; never panics.
    pub fn parse(frame: Bytes) -> Result<Frame, WireError> {
        let body = || frame.slice(FRAME_KIND_LEN..);
        Ok(match FrameKind::of(&frame)? {
            FrameKind::App => Frame::App(body()),
            FrameKind::Reach => Frame::Reach(body()),
            FrameKind::Ping => Frame::Ping,
            FrameKind::DatagramKey => {
                let mut key = [0u8; DATAGRAM_KEY_LEN];
                // `FrameKind::of` checked the body is exactly a key.
                key.copy_from_slice(frame.get(FRAME_KIND_LEN..).unwrap_or_default());
                Frame::DatagramKey(key)
            }
            FrameKind::Rpc => Frame::Rpc(body()),
        })
    }

    /// The kind byte's meaning.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::App(_) => FrameKind::App,
            Frame::Reach(_) => FrameKind::Reach,
            Frame::Ping => FrameKind::Ping,
            Frame::DatagramKey(_) => FrameKind::DatagramKey,
            Frame::Rpc(_) => FrameKind::Rpc,
        }
    }

    /// The body, after the kind byte.
    pub fn body(&self) -> &[u8] {
        match self {
            Frame::App(b) | Frame::Reach(b) | Frame::Rpc(b) => b,
            Frame::Ping => &[],
            Frame::DatagramKey(k) => k,
        }
    }

    /// Appends the frame as a byte stream carries it ([`buffer_len`](Self::buffer_len)
    /// bytes): the length prefix, the kind byte, the body.
    ///
    /// # Errors
    /// [`WireError::TooLong`] (and nothing appended) when the frame's length does not fit the
    /// 4-byte prefix.
    pub fn emit(&self, out: &mut BytesMut) -> Result<(), WireError> {
        emit_frame(out, &[self.kind().byte()], self.body())
    }

    /// The encoded length: the prefix, the kind byte and the body.
    pub fn buffer_len(&self) -> usize {
        APP_FRAME_HEADER_LEN + self.body().len()
    }
}

/// Appends one length-prefixed frame of `head` then `body` to `out`, or nothing when its
/// length does not fit 4 bytes.
fn emit_frame(out: &mut BytesMut, head: &[u8], body: &[u8]) -> Result<(), WireError> {
    let too_long = WireError::TooLong(u32::MAX as usize);
    let len = head.len().checked_add(body.len()).ok_or(too_long.clone())?;
    let len = u32::try_from(len).map_err(|_| too_long)?;
    out.reserve(FRAME_LEN_PREFIX + head.len() + body.len());
    out.put_u32(len);
    out.put_slice(head);
    out.put_slice(body);
    Ok(())
}

/// The length a frame's 4-byte prefix announces (the kind byte and body that follow it).
///
/// # Errors
/// [`WireError::TooLong`] when it announces more than `max` bytes.
pub fn frame_len(prefix: [u8; FRAME_LEN_PREFIX], max: usize) -> Result<usize, WireError> {
    match usize::try_from(u32::from_be_bytes(prefix)) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(WireError::TooLong(max)),
    }
}

/// The length of the first frame of `buf` (after its prefix, as [`frame_len`] reads it):
/// `Ok(None)` until the prefix and the whole frame are in `buf`.
///
/// # Errors
/// [`WireError::TooLong`] when the prefix announces more than `max` bytes; never panics.
pub fn peek_frame(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buf.first_chunk::<FRAME_LEN_PREFIX>() else {
        return Ok(None);
    };
    let len = frame_len(*prefix, max)?;
    Ok((buf.len() - FRAME_LEN_PREFIX >= len).then_some(len))
}

/// Takes the first frame of `buf` (without its prefix; kind byte first, or the hello) once it
/// lies there whole ([`peek_frame`]); `Ok(None)`, leaving `buf` untouched, until then.
///
/// # Errors
/// [`WireError::TooLong`], leaving `buf` untouched, when the frame announces more than `max`
/// bytes.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, WireError> {
    let Some(len) = peek_frame(buf, max)? else {
        return Ok(None);
    };
    let mut frame = buf.split_to(FRAME_LEN_PREFIX + len);
    frame.advance(FRAME_LEN_PREFIX);
    Ok(Some(frame))
}

/// The largest application payload whose frame length (kind byte and payload) fits the
/// 4-byte prefix.
pub const MAX_APP_PAYLOAD: usize = u32::MAX as usize - FRAME_KIND_LEN;

/// What goes before an application payload of `payload_len` bytes on a framed byte stream
/// (a frame as `tokio_util`'s `LengthDelimitedCodec` reads it: length, then kind and payload);
/// `None` when the frame's length does not fit in 4 bytes.
pub fn app_frame_header(payload_len: usize) -> Option<[u8; APP_FRAME_HEADER_LEN]> {
    let len = u32::try_from(payload_len.checked_add(FRAME_KIND_LEN)?).ok()?;
    let [a, b, c, d] = len.to_be_bytes();
    Some([a, b, c, d, FrameKind::App.byte()])
}

/// Length of a sealed datagram's nonce ([`SealedDatagram::nonce`]).
pub const SEALED_NONCE_LEN: usize = super::channel::NONCE_LEN;

/// An unreliable datagram: sender, intended receiver, payload (borrowed from the datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The sender's node id.
    pub from: u64,
    /// The receiver's node id (a receiver drops datagrams meant for another node).
    pub to: u64,
    /// The application payload.
    pub payload: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Parses one UDP datagram.
    ///
    /// # Errors
    /// [`WireError`] when it is not a node datagram of this version; never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Datagram<'a>, WireError> {
        check_header(bytes, DATAGRAM_HEADER_LEN, KIND_DATAGRAM)?;
        Ok(Datagram {
            from: read_u64(bytes, field::FROM),
            to: read_u64(bytes, field::TO),
            payload: bytes.get(DATAGRAM_HEADER_LEN..).unwrap_or_default(),
        })
    }

    /// Appends the encoded datagram ([`buffer_len`](Self::buffer_len) bytes) to `out`.
    pub fn emit(&self, out: &mut BytesMut) {
        out.reserve(self.buffer_len());
        out.put_slice(&MAGIC);
        out.put_u8(VERSION);
        out.put_u8(KIND_DATAGRAM);
        out.put_u64(self.from);
        out.put_u64(self.to);
        out.put_slice(self.payload);
    }

    /// The encoded length: [`DATAGRAM_HEADER_LEN`] plus the payload.
    pub fn buffer_len(&self) -> usize {
        DATAGRAM_HEADER_LEN + self.payload.len()
    }
}

/// A sealed unreliable datagram: sender, intended receiver, counter (the nonce), and the
/// ciphertext with its tag (borrowed from the datagram). Stateless: sealing and opening are
/// the node layer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedDatagram<'a> {
    /// The sender's node id.
    pub from: u64,
    /// The receiver's node id.
    pub to: u64,
    /// The sender's counter for this key: the nonce, and the replay window's index.
    pub counter: u64,
    /// The ciphertext followed by its [`SEALED_TAG_LEN`]-byte tag.
    pub sealed: &'a [u8],
}

impl<'a> SealedDatagram<'a> {
    /// Parses one UDP datagram as a sealed datagram (at least a header and a tag).
    ///
    /// # Errors
    /// [`WireError`] when it is not a sealed node datagram of this version; never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<SealedDatagram<'a>, WireError> {
        check_header(
            bytes,
            SEALED_HEADER_LEN + SEALED_TAG_LEN,
            KIND_SEALED_DATAGRAM,
        )?;
        Ok(SealedDatagram {
            from: read_u64(bytes, field::FROM),
            to: read_u64(bytes, field::TO),
            counter: read_u64(bytes, field::COUNTER),
            sealed: bytes.get(SEALED_HEADER_LEN..).unwrap_or_default(),
        })
    }

    /// The header: the associated data of the seal, and the first bytes on the wire.
    pub fn header(&self) -> [u8; SEALED_HEADER_LEN] {
        let mut h = [0u8; SEALED_HEADER_LEN];
        h[field::MAGIC].copy_from_slice(&MAGIC);
        h[field::VERSION] = VERSION;
        h[field::KIND] = KIND_SEALED_DATAGRAM;
        h[field::FROM].copy_from_slice(&self.from.to_be_bytes());
        h[field::TO].copy_from_slice(&self.to.to_be_bytes());
        h[field::COUNTER].copy_from_slice(&self.counter.to_be_bytes());
        h
    }

    /// The 96-bit nonce of the seal: 4 zero bytes, then [`counter`](Self::counter)
    /// big-endian.
    pub fn nonce(&self) -> [u8; SEALED_NONCE_LEN] {
        super::channel::nonce(self.counter, super::channel::CounterOrder::BigEndian)
    }

    /// The ciphertext, without its tag (`parse` checked the tag is there).
    pub fn ciphertext(&self) -> &'a [u8] {
        super::channel::split_tag(self.sealed).map_or(&[], |(c, _)| c)
    }

    /// The tag at the end of [`sealed`](Self::sealed), if there is one.
    pub fn tag(&self) -> Option<&'a [u8; SEALED_TAG_LEN]> {
        super::channel::split_tag(self.sealed).map(|(_, t)| t)
    }

    /// Appends the encoded datagram ([`buffer_len`](Self::buffer_len) bytes) to `out`.
    pub fn emit(&self, out: &mut BytesMut) {
        out.reserve(self.buffer_len());
        out.put_slice(&self.header());
        out.put_slice(self.sealed);
    }

    /// The encoded length: [`SEALED_HEADER_LEN`] plus the ciphertext and tag.
    pub fn buffer_len(&self) -> usize {
        SEALED_HEADER_LEN + self.sealed.len()
    }
}

fn check_header(bytes: &[u8], min_len: usize, kind: u8) -> Result<(), WireError> {
    if bytes.len() < min_len {
        return Err(WireError::Truncated);
    }
    if bytes[field::MAGIC] != MAGIC {
        return Err(WireError::Malformed("bad magic"));
    }
    if bytes[field::VERSION] != VERSION {
        return Err(WireError::Malformed("unsupported version"));
    }
    if bytes[field::KIND] != kind {
        return Err(WireError::UnknownType(u64::from(bytes[field::KIND])));
    }
    Ok(())
}

/// Reads a big-endian u64; `bytes` was checked to cover `range` (8 bytes) by `check_header`.
fn read_u64(bytes: &[u8], range: std::ops::Range<usize>) -> u64 {
    let mut v = [0u8; 8];
    if let Some(src) = bytes.get(range) {
        v.copy_from_slice(src);
    }
    u64::from_be_bytes(v)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    static HELLO_7: [u8; 12] = [0x48, 0x57, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 7];
    static DGRAM_1_TO_2: [u8; 23] = [
        0x48, 0x57, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b', b'c',
    ];

    #[test]
    fn app_frame_header_is_length_then_kind() {
        assert_eq!(app_frame_header(0), Some([0, 0, 0, 1, 0x00]));
        assert_eq!(app_frame_header(0x0102_0304), Some([1, 2, 3, 5, 0x00]));
        assert_eq!(
            app_frame_header(u32::MAX as usize - 1),
            Some([0xff, 0xff, 0xff, 0xff, 0])
        );
        assert_eq!(app_frame_header(u32::MAX as usize), None);
        assert_eq!(app_frame_header(usize::MAX), None);
        let h = app_frame_header(3).unwrap();
        assert_eq!(FrameKind::of(&[h[4], 1, 2, 3]), Ok(FrameKind::App));
    }

    fn emit_after_a5(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::from(&[0xa5u8][..]);
        f(&mut out);
        assert_eq!(out[0], 0xa5, "emit must append");
        out[1..].to_vec()
    }

    #[test]
    fn hello_golden_bytes() {
        assert_eq!(Hello::parse(&HELLO_7), Ok(Hello { from: 7 }));
        let bytes = emit_after_a5(|o| Hello { from: 7 }.emit(o));
        assert_eq!(bytes, HELLO_7);
        assert_eq!(Hello { from: 7 }.buffer_len(), bytes.len());
    }

    #[test]
    fn datagram_golden_bytes() {
        let d = Datagram::parse(&DGRAM_1_TO_2).unwrap();
        assert_eq!((d.from, d.to, d.payload), (1, 2, &b"abc"[..]));
        let bytes = emit_after_a5(|o| d.emit(o));
        assert_eq!(bytes, DGRAM_1_TO_2);
        assert_eq!(d.buffer_len(), bytes.len());
        let empty = Datagram::parse(&DGRAM_1_TO_2[..20]).unwrap();
        assert!(empty.payload.is_empty());
    }

    #[test]
    fn malformed_input_is_refused() {
        for n in 0..HELLO_LEN {
            assert_eq!(Hello::parse(&HELLO_7[..n]), Err(WireError::Truncated));
        }
        for n in 0..DATAGRAM_HEADER_LEN {
            assert_eq!(
                Datagram::parse(&DGRAM_1_TO_2[..n]),
                Err(WireError::Truncated)
            );
        }
        let mut bad = HELLO_7;
        bad[0] = b'X';
        assert_eq!(Hello::parse(&bad), Err(WireError::Malformed("bad magic")));
        let mut bad = HELLO_7;
        bad[2] = 2;
        assert_eq!(
            Hello::parse(&bad),
            Err(WireError::Malformed("unsupported version"))
        );
        let mut long = HELLO_7.to_vec();
        long.push(0);
        assert!(matches!(Hello::parse(&long), Err(WireError::Malformed(_))));
        // A datagram is not a hello and vice versa.
        assert_eq!(
            Hello::parse(&DGRAM_1_TO_2[..12]),
            Err(WireError::UnknownType(2))
        );
        let mut as_dgram = [0u8; 20];
        as_dgram[..12].copy_from_slice(&HELLO_7);
        assert_eq!(Datagram::parse(&as_dgram), Err(WireError::UnknownType(1)));
    }

    static FRAMED_7_V4: [u8; 19] = [
        0x48, 0x57, 0x01, 0x03, 0, 0, 0, 0, 0, 0, 0, 7, 0x04, 10, 77, 0, 3, 0x1e, 0x14,
    ];

    #[test]
    fn framed_hello_golden_bytes() {
        let listen = Some("10.77.0.3:7700".parse().unwrap());
        let h = FramedHello { from: 7, listen };
        assert_eq!(FramedHello::parse(&FRAMED_7_V4), Ok(h));
        let bytes = emit_after_a5(|o| h.emit(o));
        assert_eq!(bytes, FRAMED_7_V4);
        assert_eq!(h.buffer_len(), 19);
        let none = FramedHello {
            from: 7,
            listen: None,
        };
        let bytes = emit_after_a5(|o| none.emit(o));
        assert_eq!(
            &bytes[..12],
            &[0x48, 0x57, 0x01, 0x03, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        assert_eq!(bytes[12..], [0x00]);
        assert_eq!(none.buffer_len(), 13);
        let v6 = FramedHello {
            from: 1,
            listen: Some("[fd00::9]:1".parse().unwrap()),
        };
        let mut out = BytesMut::new();
        v6.emit(&mut out);
        assert_eq!((out.len(), out[12]), (31, 0x06));
        assert_eq!(FramedHello::parse(&out), Ok(v6));
        // Either hello parses through `AnyHello`, told apart by the kind byte.
        assert_eq!(
            AnyHello::parse(&HELLO_7),
            Ok(AnyHello::Plain(Hello { from: 7 }))
        );
        assert_eq!(AnyHello::parse(&FRAMED_7_V4), Ok(AnyHello::Framed(h)));
        assert_eq!(AnyHello::parse(&FRAMED_7_V4).unwrap().from(), 7);
    }

    #[test]
    fn malformed_framed_hellos_are_refused() {
        for n in 0..FRAMED_7_V4.len() {
            assert!(FramedHello::parse(&FRAMED_7_V4[..n]).is_err(), "prefix {n}");
        }
        let mut long = FRAMED_7_V4.to_vec();
        long.push(0);
        assert!(matches!(
            FramedHello::parse(&long),
            Err(WireError::Malformed(_))
        ));
        let mut bad = FRAMED_7_V4;
        bad[12] = 0x05;
        assert!(matches!(
            FramedHello::parse(&bad),
            Err(WireError::Malformed(_))
        ));
        // A plain hello is not a framed one.
        assert_eq!(
            FramedHello::parse(&[&HELLO_7[..], &[0]].concat()),
            Err(WireError::UnknownType(1))
        );
    }

    static SEALED_1_TO_2: [u8; 45] = [
        0x48, 0x57, 0x01, 0x04, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
        0x01, 0x02, b'x', 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
        0xac, 0xad, 0xae, 0xaf,
    ];

    #[test]
    fn sealed_datagram_golden_bytes() {
        let d = SealedDatagram::parse(&SEALED_1_TO_2).unwrap();
        assert_eq!((d.from, d.to, d.counter), (1, 2, 0x0102));
        assert_eq!(d.sealed, &SEALED_1_TO_2[28..]);
        assert_eq!(d.header(), SEALED_1_TO_2[..SEALED_HEADER_LEN]);
        assert_eq!(d.nonce(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02]);
        assert_eq!(d.ciphertext(), b"x");
        assert_eq!(d.tag().unwrap()[..], SEALED_1_TO_2[29..]);
        let bytes = emit_after_a5(|o| d.emit(o));
        assert_eq!(bytes, SEALED_1_TO_2);
        assert_eq!(d.buffer_len(), bytes.len());
        // An empty payload: header and tag only.
        let bytes = [&SEALED_1_TO_2[..28], &[0; 16]].concat();
        let empty = SealedDatagram::parse(&bytes).unwrap();
        assert_eq!(empty.sealed.len(), SEALED_TAG_LEN);
    }

    #[test]
    fn malformed_sealed_datagrams_are_refused() {
        for n in 0..SEALED_HEADER_LEN + SEALED_TAG_LEN {
            assert_eq!(
                SealedDatagram::parse(&SEALED_1_TO_2[..n]),
                Err(WireError::Truncated),
                "prefix {n}"
            );
        }
        let mut bad = SEALED_1_TO_2;
        bad[1] = b'X';
        assert!(matches!(
            SealedDatagram::parse(&bad),
            Err(WireError::Malformed(_))
        ));
        // A plain datagram is not a sealed one and vice versa.
        assert_eq!(
            SealedDatagram::parse(&[&DGRAM_1_TO_2[..], &[0; 32]].concat()),
            Err(WireError::UnknownType(2))
        );
        assert_eq!(
            Datagram::parse(&SEALED_1_TO_2),
            Err(WireError::UnknownType(4))
        );
    }

    #[test]
    fn frame_kinds() {
        assert_eq!(FrameKind::of(&[0x00]), Ok(FrameKind::App));
        assert_eq!(FrameKind::of(&[0x00, b'x']), Ok(FrameKind::App));
        assert_eq!(FrameKind::of(&[0x01, 1, 2]), Ok(FrameKind::Reach));
        assert_eq!(FrameKind::of(&[0x02]), Ok(FrameKind::Ping));
        assert!(matches!(
            FrameKind::of(&[0x02, 0]),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(FrameKind::of(&[]), Err(WireError::Truncated));
        assert_eq!(FrameKind::of(&[0x07]), Err(WireError::UnknownType(7)));
        let mut key = [0u8; 33];
        key[0] = 0x03;
        assert_eq!(FrameKind::of(&key), Ok(FrameKind::DatagramKey));
        assert!(matches!(
            FrameKind::of(&key[..32]),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            FrameKind::of(&[&key[..], &[0]].concat()),
            Err(WireError::Malformed(_))
        ));
        for k in [FrameKind::App, FrameKind::Reach, FrameKind::Ping] {
            assert_eq!(
                FrameKind::of(&[k.byte()]).ok().map(|x| x.byte()),
                Some(k.byte())
            );
        }
    }

    /// `App "ab"`, `Ping`, `Rpc [7]`, as a byte stream carries them.
    static FRAMES: [u8; 18] = [
        0, 0, 0, 3, 0x00, b'a', b'b', // App
        0, 0, 0, 1, 0x02, // Ping
        0, 0, 0, 2, 0x04, 7, // Rpc
    ];

    #[test]
    fn frames_golden_bytes() {
        let frames = [
            Frame::App(Bytes::from_static(b"ab")),
            Frame::Ping,
            Frame::Rpc(Bytes::from_static(&[7])),
        ];
        let bytes = emit_after_a5(|o| {
            for f in &frames {
                f.emit(o).unwrap();
            }
        });
        assert_eq!(bytes, FRAMES);
        assert_eq!(frames.iter().map(Frame::buffer_len).sum::<usize>(), 18);
        let mut buf = BytesMut::from(&FRAMES[..]);
        for f in &frames {
            let body = take_frame(&mut buf, 16).unwrap().unwrap();
            assert_eq!(Frame::parse(body.freeze()).as_ref(), Ok(f));
        }
        assert_eq!(take_frame(&mut buf, 16), Ok(None));
        // The application header is a frame's first bytes.
        let h = app_frame_header(2).unwrap();
        assert_eq!(h, FRAMES[..APP_FRAME_HEADER_LEN]);
        // A datagram key, and a framed hello as a stream's first frame.
        let key = Frame::DatagramKey([9; DATAGRAM_KEY_LEN]);
        let bytes = emit_after_a5(|o| key.emit(o).unwrap());
        assert_eq!(bytes[..5], [0, 0, 0, 33, 0x03]);
        assert_eq!(bytes[5..], [9; 32]);
        let hello = FramedHello::parse(&FRAMED_7_V4).unwrap();
        let bytes = emit_after_a5(|o| hello.emit_frame(o));
        assert_eq!(bytes[..4], [0, 0, 0, 19]);
        assert_eq!(bytes[4..], FRAMED_7_V4);
    }

    #[test]
    fn frame_lengths_are_bounded_and_partial_frames_wait() {
        assert_eq!(frame_len([0, 0, 0, 16], 16), Ok(16));
        assert_eq!(frame_len([0, 0, 0, 17], 16), Err(WireError::TooLong(16)));
        assert_eq!(
            frame_len([0xff; 4], usize::MAX),
            Ok(u32::MAX as usize),
            "the prefix's whole range"
        );
        for n in 0..7 {
            assert_eq!(peek_frame(&FRAMES[..n], 16), Ok(None), "prefix {n}");
            let mut partial = BytesMut::from(&FRAMES[..n]);
            assert_eq!(take_frame(&mut partial, 16), Ok(None));
            assert_eq!(partial.len(), n, "untouched");
        }
        assert_eq!(peek_frame(&FRAMES, 16), Ok(Some(3)));
        let mut big = BytesMut::from(&FRAMES[..]);
        assert_eq!(take_frame(&mut big, 2), Err(WireError::TooLong(2)));
        assert_eq!(big.len(), FRAMES.len(), "untouched");
    }

    #[test]
    fn malformed_frames_are_refused() {
        assert_eq!(Frame::parse(Bytes::new()), Err(WireError::Truncated));
        assert_eq!(
            Frame::parse(Bytes::from_static(&[0x09])),
            Err(WireError::UnknownType(9))
        );
        assert!(matches!(
            Frame::parse(Bytes::from_static(&[0x02, 0])),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(
            Frame::parse(Bytes::from_static(&[0x03, 1, 2])),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            Frame::parse(Bytes::from_static(&[0x04])),
            Err(WireError::Truncated)
        );
    }

    proptest! {
        #[test]
        fn frames_round_trip(kind in 0u8..5, body in proptest::collection::vec(any::<u8>(), 1..64)) {
            let frame = match kind {
                0 => Frame::App(Bytes::from(body)),
                1 => Frame::Reach(Bytes::from(body)),
                2 => Frame::Ping,
                3 => Frame::DatagramKey([body[0]; DATAGRAM_KEY_LEN]),
                _ => Frame::Rpc(Bytes::from(body)),
            };
            let mut out = BytesMut::new();
            frame.emit(&mut out).unwrap();
            prop_assert_eq!(out.len(), frame.buffer_len());
            let max = frame.buffer_len() - FRAME_LEN_PREFIX;
            prop_assert_eq!(peek_frame(&out, max), Ok(Some(max)));
            prop_assert_eq!(peek_frame(&out, max - 1), Err(WireError::TooLong(max - 1)));
            let taken = take_frame(&mut out, max).unwrap().unwrap();
            prop_assert!(out.is_empty());
            prop_assert_eq!(Frame::parse(taken.freeze()), Ok(frame));
        }

        #[test]
        fn frame_decoders_never_panic(bytes in proptest::collection::vec(
            proptest::prop_oneof![3 => 0u8..5, 1 => any::<u8>()], 0..64), max in 0usize..32) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = take_frame(&mut buf, max) {
                let _ = Frame::parse(frame.freeze());
            }
        }

        #[test]
        fn round_trips(from in any::<u64>(), to in any::<u64>(),
                       payload in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut out = BytesMut::new();
            Hello { from }.emit(&mut out);
            prop_assert_eq!(out.len(), HELLO_LEN);
            prop_assert_eq!(Hello::parse(&out), Ok(Hello { from }));
            let d = Datagram { from, to, payload: &payload };
            let mut out = BytesMut::new();
            d.emit(&mut out);
            prop_assert_eq!(out.len(), d.buffer_len());
            prop_assert_eq!(Datagram::parse(&out), Ok(d));
            let mut sealed = payload.clone();
            sealed.extend_from_slice(&[0x5a; SEALED_TAG_LEN]);
            let s = SealedDatagram { from, to, counter: from ^ to, sealed: &sealed };
            let mut out = BytesMut::new();
            s.emit(&mut out);
            prop_assert_eq!(out.len(), s.buffer_len());
            prop_assert_eq!(&out[..SEALED_HEADER_LEN], &s.header()[..]);
            prop_assert_eq!(&s.nonce()[4..], &out[20..28]);
            prop_assert_eq!(SealedDatagram::parse(&out), Ok(s));
            let port = (to & 0xffff) as u16;
            for listen in [None, Some(SocketAddr::from(([10, 0, 0, 1], port))),
                           Some(SocketAddr::new(Ipv6Addr::from(u128::from(to)).into(), port))] {
                let h = FramedHello { from, listen };
                let mut out = BytesMut::new();
                h.emit(&mut out);
                prop_assert_eq!(out.len(), h.buffer_len());
                prop_assert_eq!(FramedHello::parse(&out), Ok(h));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = Hello::parse(&bytes);
            let _ = Datagram::parse(&bytes);
            let _ = SealedDatagram::parse(&bytes);
            let _ = FramedHello::parse(&bytes);
            let _ = AnyHello::parse(&bytes);
            let _ = FrameKind::of(&bytes);
        }
    }
}
