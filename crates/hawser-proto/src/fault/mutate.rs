//! The LSP-aware part of fault injection: payload damage and message-level hooks.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Hook, Verdict};
use crate::wire::{lsp_binary, Codec, Message, MsgType};

/// The most bytes `lengthen` appends.
pub(super) const MAX_LENGTHEN: usize = 8;

/// Lifts a closure over decoded messages into a [`Hook`].
///
/// The closure sees every message of every datagram `codec` can decode (undecodable datagrams
/// pass untouched). It may rewrite the message in place, e.g. turn an Ack into a CAck, or answer
/// [`Verdict::Drop`] to remove that message; a datagram left with no message is dropped. A
/// datagram whose messages all come back unchanged keeps its original bytes; otherwise it is
/// re-encoded (for the binary codec, the whole remaining batch as one datagram).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use hawser_proto::fault::{message_hook, Verdict};
/// use hawser_proto::wire::{Codec, MsgType};
///
/// // Count Data sends and drop every Ack.
/// let data_sent = Arc::new(Mutex::new(0u32));
/// let counter = Arc::clone(&data_sent);
/// let hook = message_hook(Codec::Json, move |msg| match msg.kind {
///     MsgType::Ack => Verdict::Drop,
///     MsgType::Data => {
///         if let Ok(mut n) = counter.lock() {
///             *n += 1;
///         }
///         Verdict::Pass
///     }
///     _ => Verdict::Pass,
/// });
/// # drop(hook);
/// ```
pub fn message_hook<F>(codec: Codec, mut f: F) -> Hook
where
    F: FnMut(&mut Message) -> Verdict + Send + 'static,
{
    Box::new(move |datagram: &mut Vec<u8>| {
        let mut msgs = Vec::new();
        if codec.decode(datagram, &mut msgs).is_err() || msgs.is_empty() {
            return Verdict::Pass;
        }
        let mut changed = false;
        let mut kept = Vec::with_capacity(msgs.len());
        for mut msg in msgs {
            let before = msg.clone();
            match f(&mut msg) {
                Verdict::Drop => changed = true,
                Verdict::Pass => {
                    changed |= msg != before;
                    kept.push(msg);
                }
            }
        }
        if kept.is_empty() {
            return Verdict::Drop;
        }
        if changed {
            if let Some(bytes) = encode_batch(codec, &kept) {
                *datagram = Vec::from(bytes);
            }
        }
        Verdict::Pass
    })
}

/// Encodes messages as one datagram: a whole batch for the binary codec, exactly one message for
/// JSON (`None` if JSON is asked for any other count).
pub(super) fn encode_batch(codec: Codec, msgs: &[Message]) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    match (codec, msgs) {
        (Codec::Json, [msg]) => codec.encode(msg, &mut buf),
        (Codec::Json, _) => return None,
        (Codec::Binary, _) => lsp_binary::encode(msgs, &mut buf),
    }
    Some(buf.freeze())
}

/// Flips one payload byte of a Data message (XOR with a non-zero mask). False if there is none.
pub(super) fn corrupt(msg: &mut Message, rng: &mut fastrand::Rng) -> bool {
    let Some(payload) = data_payload(msg) else {
        return false;
    };
    if payload.is_empty() {
        return false;
    }
    let mut bytes = Vec::from(payload.clone());
    let at = rng.usize(..bytes.len());
    bytes[at] ^= rng.u8(1..=u8::MAX);
    msg.payload = Some(Bytes::from(bytes));
    true
}

/// Makes a Data message's payload one byte shorter than its declared `size`. False if the
/// message declares no byte or already carries fewer than `size`.
pub(super) fn shorten(msg: &mut Message) -> bool {
    let size = msg.size;
    let Some(payload) = data_payload(msg) else {
        return false;
    };
    let Ok(size) = usize::try_from(size) else {
        return false;
    };
    if size == 0 || payload.len() < size {
        return false;
    }
    let shorter = payload.slice(..size - 1);
    msg.payload = Some(shorter);
    true
}

/// Appends 1 to [`MAX_LENGTHEN`] random bytes to a Data message's payload, `size` unchanged.
pub(super) fn lengthen(msg: &mut Message, rng: &mut fastrand::Rng) -> bool {
    let Some(payload) = data_payload(msg) else {
        return false;
    };
    let extra = rng.usize(1..=MAX_LENGTHEN);
    let mut bytes = BytesMut::with_capacity(payload.len() + extra);
    bytes.put_slice(payload);
    for _ in 0..extra {
        bytes.put_u8(rng.u8(..));
    }
    msg.payload = Some(bytes.freeze());
    true
}

/// The payload of a Data message, if it is one and has a payload.
fn data_payload(msg: &Message) -> Option<&Bytes> {
    match msg.kind {
        MsgType::Data => msg.payload.as_ref(),
        _ => None,
    }
}
