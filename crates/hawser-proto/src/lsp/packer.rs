//! Turns a connection's outgoing messages into datagrams: one message per datagram in JSON (the
//! reference wire format), as many frames as fit in `max_datagram` bytes in binary.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::BytesMut;

use crate::transmit::Transmit;
use crate::wire::{lsp_binary, Codec, Message};

/// Bytes the datagram buffer of an endpoint takes at a time: datagrams are cut from it, so that
/// encoding one costs no allocation of its own. A new chunk is allocated when one is used up;
/// a used-up chunk whose datagrams were all sent and dropped by then is taken again from its
/// start instead.
const BUFFER_CHUNK: usize = 16 * 1024;

/// Encodes `msgs` (all of one connection) into datagrams for `to`, appended to `out`; returns
/// how many datagrams it made. `msgs` is left empty. The datagrams are cut from `buf`, the
/// endpoint's datagram buffer (empty between calls).
pub(crate) fn pack(
    codec: Codec,
    max_datagram: usize,
    to: SocketAddr,
    msgs: &mut Vec<Message>,
    out: &mut VecDeque<Transmit>,
    buf: &mut BytesMut,
) -> u64 {
    let mut datagrams = 0;
    match codec {
        Codec::Json => {
            for msg in msgs.drain(..) {
                room(buf, codec.encoded_len(&msg));
                codec.encode(&msg, buf);
                out.push_back(Transmit {
                    destination: to,
                    contents: buf.split().freeze(),
                });
                datagrams += 1;
            }
        }
        Codec::Binary => {
            let mut start = 0;
            while start < msgs.len() {
                let mut len =
                    lsp_binary::header_len(msgs[start].conn) + lsp_binary::frame_len(&msgs[start]);
                let mut end = start + 1;
                while end < msgs.len() && msgs[end].conn == msgs[start].conn {
                    let next = lsp_binary::frame_len(&msgs[end]);
                    if len + next > max_datagram {
                        break;
                    }
                    len += next;
                    end += 1;
                }
                room(buf, len);
                lsp_binary::encode(&msgs[start..end], buf);
                debug_assert_eq!(buf.len(), len);
                out.push_back(Transmit {
                    destination: to,
                    contents: buf.split().freeze(),
                });
                datagrams += 1;
                start = end;
            }
            msgs.clear();
        }
    }
    datagrams
}

/// Makes room for a datagram of `len` bytes in the (empty) buffer: the spare room left by
/// earlier datagrams, the whole buffer again if they are all gone, or a new chunk.
fn room(buf: &mut BytesMut, len: usize) {
    if buf.capacity() < len {
        buf.reserve(len.max(BUFFER_CHUNK));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::wire::{ConnId, SeqNum};

    fn data(seq: u64, len: usize) -> Message {
        Message::data(ConnId(1), SeqNum(seq), Bytes::from(vec![7u8; len]))
    }

    #[test]
    fn binary_packs_up_to_the_limit_and_round_trips() {
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut msgs: Vec<Message> = (1..=100).map(|s| data(s, 64)).collect();
        msgs.push(Message::ack(ConnId(1), SeqNum(5)));
        let expected = msgs.clone();
        let mut out = VecDeque::new();
        let n = pack(
            Codec::Binary,
            1452,
            to,
            &mut msgs,
            &mut out,
            &mut BytesMut::new(),
        );
        assert!(msgs.is_empty());
        assert_eq!(n as usize, out.len());
        assert!((5..=6).contains(&n), "{n} datagrams for 100 × 64 B");
        let mut decoded = Vec::new();
        for t in &out {
            assert!(t.contents.len() <= 1452);
            Codec::Binary.decode(&t.contents, &mut decoded).unwrap();
        }
        assert_eq!(decoded, expected);
    }

    #[test]
    fn datagrams_are_cut_from_chunks_not_allocated_one_by_one() {
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut buf = BytesMut::new();
        let mut out = VecDeque::new();
        // Eight rounds, each sent (dropped) before the next, as the driver does: 120 datagrams
        // of about 430 bytes, some 51 KB in all.
        let (mut datagrams, mut chunk_starts, mut bytes) = (0, 0, 0);
        let mut previous_end: Option<usize> = None;
        for round in 0..8u64 {
            out.clear();
            let mut msgs: Vec<Message> = (1..=60).map(|s| data(round * 100 + s, 100)).collect();
            assert_eq!(
                pack(Codec::Binary, 500, to, &mut msgs, &mut out, &mut buf),
                15
            );
            assert!(buf.is_empty());
            let mut decoded = Vec::new();
            for t in &out {
                let start = t.contents.as_ptr() as usize;
                // A datagram that does not follow the previous one in memory starts a chunk.
                if previous_end != Some(start) {
                    chunk_starts += 1;
                }
                previous_end = Some(start + t.contents.len());
                datagrams += 1;
                bytes += t.contents.len();
                Codec::Binary.decode(&t.contents, &mut decoded).unwrap();
            }
            assert_eq!(decoded.len(), 60);
            assert_eq!(decoded.first().map(|m| m.seq.0), Some(round * 100 + 1));
        }
        assert_eq!(datagrams, 120);
        // A chunk starts at most once per BUFFER_CHUNK bytes, plus once where a round began in
        // a chunk taken again from its start.
        let most = bytes.div_ceil(BUFFER_CHUNK) * 2 + 1;
        assert!(
            chunk_starts <= most,
            "{chunk_starts} chunks for {datagrams} datagrams"
        );
    }

    #[test]
    fn oversized_message_gets_its_own_datagram() {
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut msgs = vec![data(1, 10), data(2, 3000), data(3, 10)];
        let mut out = VecDeque::new();
        assert_eq!(
            pack(
                Codec::Binary,
                1452,
                to,
                &mut msgs,
                &mut out,
                &mut BytesMut::new()
            ),
            3
        );
    }

    #[test]
    fn json_is_one_message_per_datagram() {
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut msgs = vec![data(1, 10), data(2, 10)];
        let mut out = VecDeque::new();
        assert_eq!(
            pack(
                Codec::Json,
                1452,
                to,
                &mut msgs,
                &mut out,
                &mut BytesMut::new()
            ),
            2
        );
        assert_eq!(out[0].contents[0], b'{');
    }
}
