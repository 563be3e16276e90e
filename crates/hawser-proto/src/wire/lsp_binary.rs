//! hawser's compact binary codec, the default (full layout and rationale in `docs/wire.md`).
//!
//! ```text
//! datagram = version:u8 (0x01) | conn:varint | frame+
//! frame    = type:u8 (low nibble kind, high nibble flags) | body
//!   0x00 Connect  seq:varint
//!   0x01 Data     seq:varint | size:varint | checksum:u16 BE | len:varint | payload[len]
//!   0x11 Data     seq:varint | size:varint | checksum:u16 BE | payload[size]   (len == size)
//!   0x21, 0x31    the same, the payload a bundle of messages (`wire::bundle`)
//!   0x02 Ack      seq:varint
//!   0x03 CAck     seq:varint
//!   0x04 Conn     conn:varint   (connection id of the frames that follow)
//!   0x05 SAck     seq:varint | len:varint | ranges[len]   (`wire::sack`)
//!   0x06..=0x0F   reserved (0x0F extended type); rejected for now
//! ```
//!
//! Integers are unsigned LEB128 varints (at most 10 bytes, minimal encoding only). The version
//! byte is never `{` or JSON whitespace, so a binary datagram can never be mistaken for JSON.
//!
//! **Connection id in the header.** A UDP datagram goes to one peer, and an LSP peer address has
//! one connection, so all frames of a datagram normally share a connection id: it is written once,
//! in the header. [`encode`] still accepts any batch: when a message's connection differs from the
//! current one it emits a `Conn` frame first, so every batch round-trips exactly. Callers should
//! group messages by connection (one datagram per peer anyway); mixing costs `1 + varint` bytes per
//! switch, nothing more.
//!
//! **What a frame keeps.** A Data frame keeps `size`, `checksum` and the payload length
//! separately, so the protocol layer (not the codec) checks length and checksum, and fault
//! injection can rewrite them independently. Control frames keep only `seq`: decoded, they have
//! `size` 0, `checksum` 0 and no payload, whatever was given to [`encode`]. A Data message without
//! a payload (`None`) is encoded as an empty one.

use bytes::{BufMut, Bytes, BytesMut};

#[cfg(test)]
use super::cursor::MAX_VARINT_LEN;
use super::cursor::{put_varint, varint_len, Reader};
use super::{sack, ConnId, Message, MsgType, SeqNum, WireError};

/// The version byte of this layout; anything else is rejected.
pub const VERSION: u8 = 0x01;

/// Frame kinds (low nibble of the type byte) and flags (high nibble).
mod kind {
    pub const CONNECT: u8 = 0x0;
    pub const DATA: u8 = 0x1;
    pub const ACK: u8 = 0x2;
    pub const CACK: u8 = 0x3;
    /// Sets the connection id of the frames that follow.
    pub const CONN: u8 = 0x4;
    /// Selective ack: a cumulative point and a range list (`wire::sack`).
    pub const SACK: u8 = 0x5;
    // 0x6..=0xE: reserved.
    // 0xF: reserved as an escape to a varint type number.
    pub const MASK: u8 = 0x0F;
    /// Data flag: the payload length equals `size` and is not written.
    pub const LEN_IS_SIZE: u8 = 0x10;
    /// Data flag: the payload is a bundle of several messages (`wire::bundle`).
    pub const BUNDLE: u8 = 0x20;
}

/// Decodes every message of one binary datagram, appending them to `out` in order.
///
/// Never panics, whatever the bytes, and checks every length against the datagram. Errors:
/// [`WireError::Truncated`] when the datagram ends inside the header or a frame (or is empty);
/// [`WireError::Malformed`] for a wrong version, an unknown or reserved frame type, flags that do
/// not exist, a varint over 10 bytes, overflowing `u64` or not minimal, or a datagram without a
/// message. On error, the messages before the bad frame stay in `out`.
pub fn decode(datagram: &[u8], out: &mut Vec<Message>) -> Result<(), WireError> {
    let mut r = Reader(datagram);
    if r.u8()? != VERSION {
        return Err(WireError::Malformed("unknown version"));
    }
    let mut conn = ConnId(r.varint()?);
    let mut messages = 0usize;
    while !r.is_empty() {
        let ty = r.u8()?;
        let flags = ty & !kind::MASK;
        let k = ty & kind::MASK;
        let allowed = if k == kind::DATA {
            kind::LEN_IS_SIZE | kind::BUNDLE
        } else {
            0
        };
        if flags & !allowed != 0 {
            return Err(WireError::Malformed("unknown frame flags"));
        }
        let control = move |t: MsgType, seq: u64| Message {
            kind: t,
            conn,
            seq: SeqNum(seq),
            size: 0,
            checksum: 0,
            payload: None,
            bundled: false,
        };
        let msg = match k {
            kind::CONNECT => control(MsgType::Connect, r.varint()?),
            kind::ACK => control(MsgType::Ack, r.varint()?),
            kind::CACK => control(MsgType::CAck, r.varint()?),
            kind::SACK => {
                let through = SeqNum(r.varint()?);
                let len = r.varint()?;
                let list = r.bytes(len)?;
                sack::validate(through, list)?;
                Message {
                    payload: Some(Bytes::copy_from_slice(list)),
                    ..control(MsgType::SAck, through.0)
                }
            }
            kind::DATA => {
                let seq = SeqNum(r.varint()?);
                let size = r.varint()?;
                let checksum = r.u16()?;
                let len = if flags & kind::LEN_IS_SIZE != 0 {
                    size
                } else {
                    r.varint()?
                };
                let payload = r.bytes(len)?;
                Message {
                    kind: MsgType::Data,
                    conn,
                    seq,
                    size,
                    checksum,
                    payload: Some(Bytes::copy_from_slice(payload)),
                    bundled: flags & kind::BUNDLE != 0,
                }
            }
            kind::CONN => {
                conn = ConnId(r.varint()?);
                continue;
            }
            _ => return Err(WireError::Malformed("unknown frame type")),
        };
        out.push(msg);
        messages += 1;
    }
    if messages == 0 {
        return Err(WireError::Malformed("no message in datagram"));
    }
    Ok(())
}

/// Appends the binary datagram carrying `msgs`, in order, to `out`: exactly
/// [`encoded_len`]`(msgs)` bytes. An empty batch writes nothing.
///
/// The header carries the first message's connection id; a `Conn` frame precedes any message
/// whose connection differs from the one before it (callers should group by connection).
pub fn encode(msgs: &[Message], out: &mut BytesMut) {
    let Some(first) = msgs.first() else {
        return;
    };
    out.reserve(encoded_len(msgs));
    out.put_u8(VERSION);
    put_varint(out, first.conn.0);
    let mut conn = first.conn;
    for m in msgs {
        if m.conn != conn {
            out.put_u8(kind::CONN);
            put_varint(out, m.conn.0);
            conn = m.conn;
        }
        match m.kind {
            MsgType::Connect => put_control(out, kind::CONNECT, m.seq),
            MsgType::Ack => put_control(out, kind::ACK, m.seq),
            MsgType::CAck => put_control(out, kind::CACK, m.seq),
            MsgType::SAck => {
                let list = m.payload.as_deref().unwrap_or_default();
                put_control(out, kind::SACK, m.seq);
                put_varint(out, list.len() as u64);
                out.put_slice(list);
            }
            MsgType::Data => {
                let payload = m.payload.as_deref().unwrap_or_default();
                let len = payload.len() as u64;
                let len_is_size = len == m.size;
                let mut ty = kind::DATA;
                if len_is_size {
                    ty |= kind::LEN_IS_SIZE;
                }
                if m.bundled {
                    ty |= kind::BUNDLE;
                }
                out.put_u8(ty);
                put_varint(out, m.seq.0);
                put_varint(out, m.size);
                out.put_u16(m.checksum);
                if !len_is_size {
                    put_varint(out, len);
                }
                out.put_slice(payload);
            }
        }
    }
}

/// The bytes a datagram header for connection `conn` takes (version byte and conn varint).
pub fn header_len(conn: ConnId) -> usize {
    1 + varint_len(conn.0)
}

/// The bytes `msg` adds to a datagram whose frames share its connection id: with
/// [`header_len`], `encoded_len(msgs) == header_len(conn) + Σ frame_len(m)` for a batch of one
/// connection. Lets a sender pack frames into datagrams without encoding twice.
pub fn frame_len(msg: &Message) -> usize {
    let mut len = 1 + varint_len(msg.seq.0);
    if msg.kind == MsgType::Data {
        let payload = msg.payload.as_ref().map_or(0, |p| p.len());
        len += varint_len(msg.size) + 2 + payload;
        if payload as u64 != msg.size {
            len += varint_len(payload as u64);
        }
    } else if msg.kind == MsgType::SAck {
        let list = msg.payload.as_ref().map_or(0, |p| p.len());
        len += varint_len(list as u64) + list;
    }
    len
}

/// The exact number of bytes [`encode`] writes for `msgs`.
pub fn encoded_len(msgs: &[Message]) -> usize {
    let Some(first) = msgs.first() else {
        return 0;
    };
    let mut len = header_len(first.conn);
    let mut conn = first.conn;
    for m in msgs {
        if m.conn != conn {
            len += 1 + varint_len(m.conn.0);
            conn = m.conn;
        }
        len += frame_len(m);
    }
    len
}

fn put_control(out: &mut BytesMut, kind: u8, seq: SeqNum) {
    out.put_u8(kind);
    put_varint(out, seq.0);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn enc(msgs: &[Message]) -> Vec<u8> {
        // Pre-filled so that a wrong length or offset shows.
        let mut out = BytesMut::from(&[0xa5u8][..]);
        encode(msgs, &mut out);
        assert_eq!(out[0], 0xa5, "encode must append");
        assert_eq!(out.len() - 1, encoded_len(msgs));
        out[1..].to_vec()
    }

    fn dec(bytes: &[u8]) -> Result<Vec<Message>, WireError> {
        let mut out = Vec::new();
        decode(bytes, &mut out).map(|()| out)
    }

    fn hello() -> Message {
        Message::data(ConnId(1), SeqNum(43), Bytes::from_static(b"hello"))
    }

    #[test]
    fn golden_single_messages() {
        let cases: Vec<(Message, &[u8])> = vec![
            (Message::connect(SeqNum(42)), &[0x01, 0x00, 0x00, 0x2A]),
            (
                Message::ack(ConnId(1), SeqNum(42)),
                &[0x01, 0x01, 0x02, 0x2A],
            ),
            (Message::heartbeat(ConnId(1)), &[0x01, 0x01, 0x02, 0x00]),
            (
                Message::cack(ConnId(300), SeqNum(43)),
                &[0x01, 0xAC, 0x02, 0x03, 0x2B],
            ),
            // checksum 11659 = 0x2D8B; len == size, so the 0x10 flag and no length field.
            (
                hello(),
                &[
                    0x01, 0x01, 0x11, 0x2B, 0x05, 0x2D, 0x8B, b'h', b'e', b'l', b'l', b'o',
                ],
            ),
        ];
        for (msg, bytes) in cases {
            assert_eq!(enc(std::slice::from_ref(&msg)), bytes, "{msg:?}");
            assert_eq!(dec(bytes), Ok(vec![msg]));
        }
    }

    #[test]
    fn golden_size_differs_from_payload() {
        // A lengthened payload (fault injection): size 3, 5 bytes; the length is written.
        let mut m = hello();
        m.size = 3;
        let bytes = [
            0x01, 0x01, 0x01, 0x2B, 0x03, 0x2D, 0x8B, 0x05, b'h', b'e', b'l', b'l', b'o',
        ];
        assert_eq!(enc(std::slice::from_ref(&m)), bytes);
        assert_eq!(dec(&bytes), Ok(vec![m]));
    }

    #[test]
    fn golden_bundle() {
        // Two messages, "hi" and "yo", bundled: flags 0x10 | 0x20, payload 02 'h' 'i' 02 'y' 'o'.
        let mut payload = BytesMut::new();
        crate::wire::bundle::put_entry(&mut payload, b"hi");
        crate::wire::bundle::put_entry(&mut payload, b"yo");
        let m = Message::bundle(ConnId(1), SeqNum(43), payload.freeze());
        let sum = m.checksum.to_be_bytes();
        let bytes = [
            0x01, 0x01, 0x31, 0x2B, 0x06, sum[0], sum[1], 2, b'h', b'i', 2, b'y', b'o',
        ];
        assert_eq!(enc(std::slice::from_ref(&m)), bytes);
        assert_eq!(dec(&bytes), Ok(vec![m]));
        // The flag exists on Data only.
        assert_eq!(
            dec(&[0x01, 0x01, 0x22, 0x05]),
            Err(WireError::Malformed("unknown frame flags"))
        );
    }

    #[test]
    fn overhead_of_a_64_byte_message() {
        let m = |seq| Message::data(ConnId(1), SeqNum(seq), Bytes::from(vec![7u8; 64]));
        assert_eq!(encoded_len(&[m(43)]) - 64, 7);
        // A sequence number near a random 32-bit ISN takes a 5-byte varint.
        assert_eq!(encoded_len(&[m(3_000_000_000)]) - 64, 11);
    }

    #[test]
    fn multi_frame_round_trip() {
        let batch = vec![
            hello(),
            Message::ack(ConnId(1), SeqNum(7)),
            Message::data(ConnId(1), SeqNum(44), Bytes::new()),
            Message::cack(ConnId(1), SeqNum(44)),
            Message::heartbeat(ConnId(1)),
        ];
        let bytes = enc(&batch);
        assert_eq!(&bytes[..2], &[VERSION, 0x01]);
        assert_eq!(dec(&bytes), Ok(batch));
    }

    #[test]
    fn mixed_connections_use_conn_frames() {
        let batch = vec![
            Message::ack(ConnId(1), SeqNum(5)),
            Message::ack(ConnId(2), SeqNum(6)),
            Message::ack(ConnId(2), SeqNum(7)),
            Message::ack(ConnId(1), SeqNum(8)),
        ];
        let bytes = enc(&batch);
        let want = [1, 1, 2, 5, 4, 2, 2, 6, 2, 7, 4, 1, 2, 8];
        assert_eq!(bytes, want);
        assert_eq!(dec(&bytes), Ok(batch));
    }

    #[test]
    fn control_frames_drop_size_checksum_payload() {
        let mut m = Message::ack(ConnId(1), SeqNum(9));
        m.size = 4;
        m.checksum = 77;
        m.payload = Some(Bytes::from_static(b"junk"));
        assert_eq!(
            dec(&enc(&[m])),
            Ok(vec![Message::ack(ConnId(1), SeqNum(9))])
        );
        // Data without a payload becomes an empty payload.
        let mut d = Message::data(ConnId(1), SeqNum(2), Bytes::new());
        d.payload = None;
        let got = dec(&enc(&[d])).expect("valid");
        assert_eq!(got[0].payload, Some(Bytes::new()));
    }

    #[test]
    fn empty_batch_writes_nothing() {
        assert_eq!(enc(&[]), Vec::<u8>::new());
        assert_eq!(dec(&[]), Err(WireError::Truncated));
    }

    #[test]
    fn rejects_malformed() {
        use WireError::*;
        let cases: &[(&[u8], WireError)] = &[
            (&[0x02, 0x01, 0x02, 0x00], Malformed("unknown version")),
            (b"{\"Type\":0}", Malformed("unknown version")),
            (&[0x01], Truncated),
            (&[0x01, 0x01], Malformed("no message in datagram")),
            (
                &[0x01, 0x01, 0x04, 0x02],
                Malformed("no message in datagram"),
            ),
            (&[0x01, 0x80], Truncated),
            (&[0x01, 0x01, 0x02], Truncated),
            (&[0x01, 0x01, 0x06, 0x00], Malformed("unknown frame type")),
            // SAck: no list length; a list past the end; a zero gap; too many ranges
            (&[0x01, 0x01, 0x05, 0x00], Truncated),
            (&[0x01, 0x01, 0x05, 0x0A, 0x04, 0x01, 0x01], Truncated),
            (
                &[0x01, 0x01, 0x05, 0x0A, 0x02, 0x00, 0x01],
                Malformed("sack range with a zero gap or length"),
            ),
            (
                &[0x01, 0x01, 0x25, 0x0A, 0x00],
                Malformed("unknown frame flags"),
            ),
            (&[0x01, 0x01, 0x0F, 0x00], Malformed("unknown frame type")),
            (&[0x01, 0x01, 0x12, 0x00], Malformed("unknown frame flags")),
            (&[0x01, 0x01, 0x41, 0x00], Malformed("unknown frame flags")),
            // Data cut in the checksum, in the length, in the payload.
            (&[0x01, 0x01, 0x01, 0x2B, 0x05, 0x2D], Truncated),
            (&[0x01, 0x01, 0x01, 0x2B, 0x05, 0x2D, 0x8B], Truncated),
            (&[0x01, 0x01, 0x11, 0x2B, 0x05, 0x2D, 0x8B, b'h'], Truncated),
            // A huge length must not be trusted.
            (
                &[
                    0x01, 0x01, 0x11, 0x2B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                    0x01, 0, 0,
                ],
                Truncated,
            ),
            // Varints: 11 bytes, u64 overflow in the 10th byte, not minimal.
            (
                &[
                    0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
                ],
                Malformed("varint longer than 10 bytes"),
            ),
            (
                &[
                    0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02,
                ],
                Malformed("varint overflows u64"),
            ),
            (
                &[0x01, 0x81, 0x00, 0x02, 0x00],
                Malformed("varint not minimal"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(dec(bytes).as_ref(), Err(want), "{bytes:02x?}");
        }
    }

    #[test]
    fn a_sack_round_trips_with_its_ranges() {
        let r = |a: u64, b: u64| (SeqNum(a), SeqNum(b));
        let sack = Message::sack(ConnId(7), SeqNum(100), [r(102, 105), r(110, 111)]);
        let bytes = enc(&[sack.clone(), Message::cack(ConnId(7), SeqNum(100))]);
        // version, conn 7 | SAck 100, 4 bytes of ranges: gap 1 len 3, gap 5 len 1 | CAck 100
        assert_eq!(
            bytes,
            [0x01, 0x07, 0x05, 100, 4, 1, 3, 5, 1, 0x03, 100],
            "{bytes:02x?}"
        );
        let got = dec(&bytes).unwrap();
        assert_eq!(got[0], sack);
        assert_eq!(
            got[0].sack_ranges().collect::<Vec<_>>(),
            vec![r(102, 105), r(110, 111)]
        );
        assert_eq!(got[1].sack_ranges().count(), 0);
    }

    #[test]
    fn errors_keep_earlier_messages() {
        let mut bytes = enc(&[Message::heartbeat(ConnId(1))]);
        bytes.push(0x07);
        let mut out = Vec::new();
        assert_eq!(
            decode(&bytes, &mut out),
            Err(WireError::Malformed("unknown frame type"))
        );
        assert_eq!(out, vec![Message::heartbeat(ConnId(1))]);
    }

    #[test]
    fn varint_limits() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert!(out.len() <= MAX_VARINT_LEN);
            assert_eq!(Reader(&out).varint(), Ok(v));
        }
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let small = prop_oneof![0u64..300, any::<u64>()];
        (
            0u8..5,
            prop_oneof![0u64..4, any::<u64>()],
            small.clone(),
            small,
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..300),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(t, conn, seq, size, checksum, payload, exact, bundled)| {
                if t == 4 {
                    // A SAck whose ranges come from the payload bytes, two at a time.
                    let seq = seq.min(1 << 40);
                    let mut next = seq + 1;
                    let ranges: Vec<_> = payload
                        .chunks_exact(2)
                        .map(|p| {
                            let start = next + 1 + u64::from(p[0]);
                            next = start + 1 + u64::from(p[1]);
                            (SeqNum(start), SeqNum(next))
                        })
                        .collect();
                    return Message::sack(ConnId(conn), SeqNum(seq), ranges);
                }
                let kind = MsgType::from_u8(t).unwrap_or(MsgType::Data);
                if kind != MsgType::Data {
                    return Message {
                        kind,
                        conn: ConnId(conn),
                        seq: SeqNum(seq),
                        size: 0,
                        checksum: 0,
                        payload: None,
                        bundled: false,
                    };
                }
                Message {
                    kind,
                    conn: ConnId(conn),
                    seq: SeqNum(seq),
                    size: if exact { payload.len() as u64 } else { size },
                    checksum,
                    payload: Some(Bytes::from(payload)),
                    bundled,
                }
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            let _ = decode(&bytes, &mut out);
        }

        #[test]
        fn versioned_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = vec![VERSION];
            bytes.extend_from_slice(&tail);
            let mut out = Vec::new();
            let _ = decode(&bytes, &mut out);
        }

        #[test]
        fn round_trip(batch in proptest::collection::vec(arb_message(), 1..12)) {
            let mut out = BytesMut::new();
            encode(&batch, &mut out);
            prop_assert_eq!(out.len(), encoded_len(&batch));
            prop_assert_ne!(out[0], b'{');
            let mut got = Vec::new();
            prop_assert_eq!(decode(&out, &mut got), Ok(()));
            prop_assert_eq!(got, batch);
        }

        #[test]
        fn frame_len_adds_up(batch in proptest::collection::vec(arb_message(), 1..12)) {
            let conn = batch[0].conn;
            let same: Vec<Message> = batch.into_iter().map(|mut m| { m.conn = conn; m }).collect();
            let predicted = header_len(conn) + same.iter().map(frame_len).sum::<usize>();
            prop_assert_eq!(predicted, encoded_len(&same));
        }

        #[test]
        fn varint_round_trip(v in any::<u64>()) {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            let mut r = Reader(&out);
            prop_assert_eq!(r.varint(), Ok(v));
            prop_assert!(r.0.is_empty());
        }
    }
}
