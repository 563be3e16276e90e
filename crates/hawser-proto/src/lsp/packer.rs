//! Turns a connection's outgoing messages into datagrams: one message per datagram in JSON (the
//! reference wire format), as many frames as fit in `max_datagram` bytes in binary.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::BytesMut;

use crate::transmit::Transmit;
use crate::wire::{lsp_binary, Codec, Message};

/// Encodes `msgs` (all of one connection) into datagrams for `to`, appended to `out`; returns
/// how many datagrams it made. `msgs` is left empty.
pub(crate) fn pack(
    codec: Codec,
    max_datagram: usize,
    to: SocketAddr,
    msgs: &mut Vec<Message>,
    out: &mut VecDeque<Transmit>,
) -> u64 {
    let mut datagrams = 0;
    match codec {
        Codec::Json => {
            for msg in msgs.drain(..) {
                let mut buf = BytesMut::with_capacity(codec.encoded_len(&msg));
                codec.encode(&msg, &mut buf);
                out.push_back(Transmit {
                    destination: to,
                    contents: buf.freeze(),
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
                let mut buf = BytesMut::with_capacity(len);
                lsp_binary::encode(&msgs[start..end], &mut buf);
                debug_assert_eq!(buf.len(), len);
                out.push_back(Transmit {
                    destination: to,
                    contents: buf.freeze(),
                });
                datagrams += 1;
                start = end;
            }
            msgs.clear();
        }
    }
    datagrams
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
        let n = pack(Codec::Binary, 1452, to, &mut msgs, &mut out);
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
    fn oversized_message_gets_its_own_datagram() {
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut msgs = vec![data(1, 10), data(2, 3000), data(3, 10)];
        let mut out = VecDeque::new();
        assert_eq!(pack(Codec::Binary, 1452, to, &mut msgs, &mut out), 3);
    }

    #[test]
    fn json_is_one_message_per_datagram() {
        let to: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let mut msgs = vec![data(1, 10), data(2, 10)];
        let mut out = VecDeque::new();
        assert_eq!(pack(Codec::Json, 1452, to, &mut msgs, &mut out), 2);
        assert_eq!(out[0].contents[0], b'{');
    }
}
