//! The reference JSON codec (spec section 1.1): one message per datagram, byte-for-byte what Go's
//! `encoding/json` writes for the reference `Message` struct.
//!
//! ```text
//! {"Type":1,"ConnID":1,"SeqNum":43,"Size":5,"Checksum":11659,"Payload":"aGVsbG8="}
//! ```
//!
//! - [`encode`] writes exactly that shape: fields in that order, no spaces, numbers in decimal,
//!   the payload as standard base64 with `=` padding, `null` for `None`, `""` for an empty one.
//!   It is written by hand (no serde on the send path) and [`encoded_len`] predicts it exactly.
//! - [`decode`] accepts that shape and, like Go, also: any field order, field names in any case
//!   (Go's folding, including `ſ` for `s` and the Kelvin sign for `k`), missing fields and `null`
//!   numbers as zero, unknown fields ignored, duplicate fields (the last wins), whitespace, and
//!   `\r`/`\n` inside the base64 text. Like Go it rejects everything else: a non-object,
//!   fractional or out-of-range numbers, unpadded or otherwise invalid base64, trailing bytes.
//!   hawser is stricter than Go in one way: the message type must be 0..=3
//!   ([`WireError::UnknownType`]) and `ConnID`, `SeqNum`, `Size` must be non-negative
//!   ([`WireError::OutOfRange`]), because hawser's identifiers are unsigned.
//!
//! `ConnID`, `SeqNum` and `Size` are `int64` on the Go side, so [`decode`] only yields values up
//! to `i64::MAX`; [`encode`] writes whatever `u64` it is given, and callers must not hand it
//! larger values if a Go peer is to read them.

use std::borrow::Cow;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::{ConnId, Message, MsgType, SeqNum, WireError};

const TYPE: &str = "{\"Type\":";
const CONN: &str = ",\"ConnID\":";
const SEQ: &str = ",\"SeqNum\":";
const SIZE: &str = ",\"Size\":";
const CHECKSUM: &str = ",\"Checksum\":";
const PAYLOAD: &str = ",\"Payload\":";
const END: &str = "}";
const NULL: &str = "null";
/// Everything but the numbers and the payload.
const FIXED_LEN: usize =
    TYPE.len() + CONN.len() + SEQ.len() + SIZE.len() + CHECKSUM.len() + PAYLOAD.len() + END.len();

/// Decodes one JSON datagram into a [`Message`].
///
/// Never panics. Errors: [`WireError::Truncated`] if the JSON ends early,
/// [`WireError::Malformed`] for invalid JSON, a non-object, a wrongly typed field or bad base64,
/// [`WireError::UnknownType`] for a type outside 0..=3, [`WireError::OutOfRange`] for a negative
/// or too large number.
pub fn decode(datagram: &[u8]) -> Result<Message, WireError> {
    if let Some(msg) = decode_exact(datagram) {
        return Ok(msg);
    }
    decode_general(datagram)
}

/// The fast path: exactly what [`encode`] (and Go's `encoding/json`) writes — the six fields
/// in order, no spaces, plain decimal numbers, an unescaped base64 string or `null`. Anything
/// else, or anything out of range, returns `None` and goes to [`decode_general`], which gives
/// the same result for every input this accepts (a property test checks it).
fn decode_exact(datagram: &[u8]) -> Option<Message> {
    let mut rest = datagram;
    let kind = exact_field(&mut rest, TYPE)?;
    let conn = exact_field(&mut rest, CONN)?;
    let seq = exact_field(&mut rest, SEQ)?;
    let size = exact_field(&mut rest, SIZE)?;
    let checksum = exact_field(&mut rest, CHECKSUM)?;
    rest = rest.strip_prefix(PAYLOAD.as_bytes())?;
    let payload = if let Some(tail) = rest.strip_prefix(NULL.as_bytes()) {
        rest = tail;
        None
    } else {
        let body = rest.strip_prefix(b"\"")?;
        let close = body.iter().position(|&b| b == b'"')?;
        rest = &body[close + 1..];
        // One pass: canonical base64 has only alphabet bytes, so no escape, no line break and
        // nothing that is not UTF-8 can be in it. Anything else (escapes, `\r\n`, non-zero
        // trailing bits, invalid text) goes to the general decoder.
        Some(Bytes::from(
            base64_simd::STANDARD.decode_to_vec(&body[..close]).ok()?,
        ))
    };
    if rest != END.as_bytes() {
        return None;
    }
    let limit = i64::MAX as u64;
    if conn > limit || seq > limit || size > limit {
        return None;
    }
    Some(Message {
        kind: MsgType::from_u8(u8::try_from(kind).ok()?)?,
        conn: ConnId(conn),
        seq: SeqNum(seq),
        size,
        checksum: u16::try_from(checksum).ok()?,
        payload,
        bundled: false,
    })
}

/// Strips `prefix` then a JSON non-negative integer (no leading zeros, no overflow).
fn exact_field(rest: &mut &[u8], prefix: &str) -> Option<u64> {
    let tail = rest.strip_prefix(prefix.as_bytes())?;
    let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && tail[0] == b'0') {
        return None;
    }
    let mut v: u64 = 0;
    for &d in &tail[..digits] {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    *rest = &tail[digits..];
    Some(v)
}

/// The general decoder: everything Go's `encoding/json` accepts for this struct.
fn decode_general(datagram: &[u8]) -> Result<Message, WireError> {
    let raw: Raw<'_> = serde_json::from_slice(datagram).map_err(|e| match e.classify() {
        serde_json::error::Category::Eof => WireError::Truncated,
        serde_json::error::Category::Data => WireError::Malformed("unexpected JSON value"),
        _ => WireError::Malformed("invalid JSON"),
    })?;
    let type_num = int(raw.kind, "Type", u64::MAX)?;
    let kind = u8::try_from(type_num)
        .ok()
        .and_then(MsgType::from_u8)
        .ok_or(WireError::UnknownType(type_num))?;
    let checksum = int(raw.checksum, "Checksum", u64::from(u16::MAX))?;
    let payload = match raw.payload {
        None => None,
        Some(text) => Some(Bytes::from(base64_decode(&text)?)),
    };
    Ok(Message {
        kind,
        conn: ConnId(int(raw.conn, "ConnID", i64::MAX as u64)?),
        seq: SeqNum(int(raw.seq, "SeqNum", i64::MAX as u64)?),
        size: int(raw.size, "Size", i64::MAX as u64)?,
        // `int` checked `checksum <= u16::MAX`.
        checksum: checksum as u16,
        payload,
        bundled: false,
    })
}

/// Appends the JSON encoding of `msg` to `out`: exactly [`encoded_len`]`(msg)` bytes.
pub fn encode(msg: &Message, out: &mut BytesMut) {
    // JSON has no field for it; connections never bundle on the JSON codec.
    debug_assert!(!msg.bundled, "a bundled message cannot be encoded in JSON");
    let reference;
    let msg = match reference_form(msg) {
        Some(cack) => {
            reference = cack;
            &reference
        }
        None => msg,
    };
    out.reserve(encoded_len(msg));
    out.put_slice(TYPE.as_bytes());
    put_decimal(out, msg.kind as u64);
    out.put_slice(CONN.as_bytes());
    put_decimal(out, msg.conn.0);
    out.put_slice(SEQ.as_bytes());
    put_decimal(out, msg.seq.0);
    out.put_slice(SIZE.as_bytes());
    put_decimal(out, msg.size);
    out.put_slice(CHECKSUM.as_bytes());
    put_decimal(out, u64::from(msg.checksum));
    out.put_slice(PAYLOAD.as_bytes());
    match &msg.payload {
        None => out.put_slice(NULL.as_bytes()),
        Some(p) => {
            out.put_u8(b'"');
            let start = out.len();
            out.resize(start + base64_len(p.len()), 0);
            // The slice is exactly `base64_len` long, which is what padded base64 needs (the
            // encoder asserts it), and SIMD base64 writes the same bytes as any other encoder.
            let n = base64_simd::STANDARD
                .encode(p, base64_simd::Out::from_slice(&mut out[start..]))
                .len();
            debug_assert_eq!(n, out.len() - start);
            out.put_u8(b'"');
        }
    }
    out.put_slice(END.as_bytes());
}

/// JSON has no selective acknowledgement (connections on the JSON codec never send one): a SAck
/// is written as the CAck of its cumulative point, which is true, only less informative.
fn reference_form(msg: &Message) -> Option<Message> {
    (msg.kind == MsgType::SAck).then(|| Message::cack(msg.conn, msg.seq))
}

/// The exact number of bytes [`encode`] writes for `msg`.
pub fn encoded_len(msg: &Message) -> usize {
    if let Some(cack) = reference_form(msg) {
        return encoded_len(&cack);
    }
    let payload = match &msg.payload {
        None => NULL.len(),
        Some(p) => 2 + base64_len(p.len()),
    };
    FIXED_LEN
        + decimal_len(msg.kind as u64)
        + decimal_len(msg.conn.0)
        + decimal_len(msg.seq.0)
        + decimal_len(msg.size)
        + decimal_len(u64::from(msg.checksum))
        + payload
}

/// Length of padded base64 for `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn decimal_len(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn put_decimal(out: &mut BytesMut, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

fn base64_decode(text: &str) -> Result<Vec<u8>, WireError> {
    // Go's base64 decoder skips carriage returns and newlines wherever they are.
    // (Two byte searches: `str::contains` with a set of chars walks char by char, and was a
    // quarter of the JSON codec's CPU time.)
    let bytes = text.as_bytes();
    let text: Cow<'_, str> = if bytes.contains(&b'\n') || bytes.contains(&b'\r') {
        Cow::Owned(text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect())
    } else {
        Cow::Borrowed(text)
    };
    // Go's `base64.StdEncoding` requires padding but ignores non-zero trailing bits, which a
    // strict decoder rejects: clear them in the last character before the padding.
    let mut text = text.into_owned().into_bytes();
    let pad = text.iter().rev().take_while(|&&b| b == b'=').count();
    if let (1 | 2, Some(i)) = (pad, text.len().checked_sub(pad + 1)) {
        let unused = if pad == 2 { 0b1111 } else { 0b11 };
        if let Some(v) = base64_value(text[i]) {
            text[i] = STANDARD_ALPHABET[usize::from(v & !unused)];
        }
    }
    base64_simd::STANDARD
        .decode_to_vec(&text)
        .map_err(|_| WireError::Malformed("invalid base64 payload"))
}

/// The standard base64 alphabet, by value.
const STANDARD_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The value of one standard base64 character, `None` outside the alphabet.
fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// A JSON number as read, before range checks (so that they can produce precise errors).
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
}

/// Checks a numeric field: missing is 0, it must be an integer in `0..=max`.
fn int(n: Option<Num>, field: &'static str, max: u64) -> Result<u64, WireError> {
    match n {
        None => Ok(0),
        Some(Num::Int(v)) => u64::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or(WireError::OutOfRange(field)),
        // serde_json reads integers beyond u64 as floats: those are out of range; anything else
        // written with a fraction or exponent is not an integer, which Go rejects.
        Some(Num::Float(f)) if f.fract() == 0.0 && f.abs() >= 9.0e18 => {
            Err(WireError::OutOfRange(field))
        }
        Some(Num::Float(_)) => Err(WireError::Malformed("non-integer number")),
    }
}

/// The fields of a JSON message as read, leniently; [`decode`] validates them.
#[derive(Default)]
struct Raw<'a> {
    kind: Option<Num>,
    conn: Option<Num>,
    seq: Option<Num>,
    size: Option<Num>,
    checksum: Option<Num>,
    payload: Option<Cow<'a, str>>,
}

/// Which field a JSON key names, matched the way Go does.
enum Field {
    Type,
    ConnId,
    SeqNum,
    Size,
    Checksum,
    Payload,
    Unknown,
}

impl Field {
    fn from_key(key: &str) -> Field {
        let is = |name| go_fold_eq(key, name);
        if is("type") {
            Field::Type
        } else if is("connid") {
            Field::ConnId
        } else if is("seqnum") {
            Field::SeqNum
        } else if is("size") {
            Field::Size
        } else if is("checksum") {
            Field::Checksum
        } else if is("payload") {
            Field::Payload
        } else {
            Field::Unknown
        }
    }
}

/// Whether `key` equals the lowercase ASCII `name` under Go's `encoding/json` case folding.
fn go_fold_eq(key: &str, name: &str) -> bool {
    let mut k = key.chars();
    for n in name.chars() {
        let c = match k.next() {
            Some(c) => c,
            None => return false,
        };
        // Go folds with `ToUpper(ToLower(r))` (Go 1.21+; older releases only had the first two
        // exotic cases): LONG S is S, the KELVIN SIGN is K, both dotted and dotless i are I.
        let same = c.to_ascii_lowercase() == n
            || (c == '\u{17F}' && n == 's')
            || (c == '\u{212A}' && n == 'k')
            || (matches!(c, '\u{130}' | '\u{131}') && n == 'i');
        if !same {
            return false;
        }
    }
    k.next().is_none()
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Field, E> {
                Ok(Field::from_key(key))
            }
        }
        d.deserialize_str(V)
    }
}

/// A numeric field's value: a number, or `null` (Go leaves the field unchanged).
struct NumValue(Option<Num>);

impl<'de> Deserialize<'de> for NumValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NumValue, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or null")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumValue, E> {
                Ok(NumValue(Some(Num::Int(i128::from(v)))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumValue, E> {
                Ok(NumValue(Some(Num::Int(i128::from(v)))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumValue, E> {
                Ok(NumValue(Some(Num::Float(v))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<NumValue, E> {
                Ok(NumValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The payload's value: base64 text (borrowed when it has no escapes), or `null`.
struct PayloadValue<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for PayloadValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PayloadValue<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PayloadValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string or null")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(PayloadValue(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PayloadValue(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(PayloadValue(None))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw<'de>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an LSP message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
                // A `null` number leaves the field as it was, as in Go.
                fn num(slot: &mut Option<Num>, v: NumValue) {
                    if v.0.is_some() {
                        *slot = v.0;
                    }
                }
                let mut raw = Raw::default();
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Type => num(&mut raw.kind, map.next_value()?),
                        Field::ConnId => num(&mut raw.conn, map.next_value()?),
                        Field::SeqNum => num(&mut raw.seq, map.next_value()?),
                        Field::Size => num(&mut raw.size, map.next_value()?),
                        Field::Checksum => num(&mut raw.checksum, map.next_value()?),
                        Field::Payload => raw.payload = map.next_value::<PayloadValue<'de>>()?.0,
                        Field::Unknown => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Spec 1.1's example datagrams with the messages they carry.
    fn examples() -> Vec<(&'static str, Message)> {
        let data = |seq, payload: &'static [u8], checksum| Message {
            kind: MsgType::Data,
            conn: ConnId(1),
            seq: SeqNum(seq),
            size: payload.len() as u64,
            checksum,
            payload: Some(Bytes::from_static(payload)),
            bundled: false,
        };
        vec![
            (
                r#"{"Type":0,"ConnID":0,"SeqNum":42,"Size":0,"Checksum":0,"Payload":null}"#,
                Message::connect(SeqNum(42)),
            ),
            (
                r#"{"Type":2,"ConnID":1,"SeqNum":42,"Size":0,"Checksum":0,"Payload":null}"#,
                Message::ack(ConnId(1), SeqNum(42)),
            ),
            (
                r#"{"Type":1,"ConnID":1,"SeqNum":43,"Size":5,"Checksum":11659,"Payload":"aGVsbG8="}"#,
                data(43, b"hello", 11659),
            ),
            (
                r#"{"Type":1,"ConnID":1,"SeqNum":44,"Size":0,"Checksum":65490,"Payload":""}"#,
                data(44, b"", 65490),
            ),
            (
                r#"{"Type":2,"ConnID":1,"SeqNum":0,"Size":0,"Checksum":0,"Payload":null}"#,
                Message::heartbeat(ConnId(1)),
            ),
            (
                r#"{"Type":3,"ConnID":1,"SeqNum":43,"Size":0,"Checksum":0,"Payload":null}"#,
                Message::cack(ConnId(1), SeqNum(43)),
            ),
        ]
    }

    fn encoded(msg: &Message) -> String {
        // Pre-filled so that a wrong length or offset shows.
        let mut out = BytesMut::from(&b"\xa5\xa5"[..]);
        encode(msg, &mut out);
        assert_eq!(&out[..2], b"\xa5\xa5", "encode must append");
        String::from_utf8(out[2..].to_vec()).expect("JSON is UTF-8")
    }

    #[test]
    fn spec_examples_encode_byte_exact() {
        for (json, msg) in examples() {
            assert_eq!(encoded(&msg), json);
            assert_eq!(encoded_len(&msg), json.len(), "{json}");
        }
    }

    #[test]
    fn spec_examples_decode() {
        for (json, msg) in examples() {
            assert_eq!(decode(json.as_bytes()), Ok(msg), "{json}");
        }
        // The checksum helper agrees with the spec's Data example.
        assert_eq!(
            Message::data(ConnId(1), SeqNum(43), Bytes::from_static(b"hello")),
            examples()[2].1
        );
    }

    #[test]
    fn payload_padding_and_extremes() {
        let mut m = Message::data(ConnId(1), SeqNum(1), Bytes::from_static(b"hi"));
        assert!(encoded(&m).ends_with(r#","Payload":"aGk="}"#));
        m.payload = Some(Bytes::from_static(b"h"));
        assert!(encoded(&m).ends_with(r#","Payload":"aA=="}"#));
        let max = Message {
            kind: MsgType::Data,
            conn: ConnId(u64::MAX),
            seq: SeqNum(i64::MAX as u64),
            size: 10,
            checksum: u16::MAX,
            payload: Some(Bytes::from_static(&[0xfb, 0xff])),
            bundled: false,
        };
        let s = encoded(&max);
        assert_eq!(
            s,
            r#"{"Type":1,"ConnID":18446744073709551615,"SeqNum":9223372036854775807,"Size":10,"Checksum":65535,"Payload":"+/8="}"#
        );
        assert_eq!(encoded_len(&max), s.len());
    }

    #[test]
    fn decodes_what_go_accepts() {
        let hello = examples()[2].1.clone();
        let cases = [
            // Other order, other case, whitespace.
            " {\n \"payload\" : \"aGVsbG8=\", \"CHECKSUM\":11659 ,\"size\":5,\"seqnum\":43,\"connId\":1,\"tYpE\":1 } \n",
            // Unknown fields ignored, duplicates: the last wins, null numbers are no-ops.
            r#"{"Type":1,"Extra":{"a":[1,2]},"ConnID":9,"ConnID":1,"SeqNum":43,"Size":5,"Size":null,"Checksum":11659,"Payload":"aGVsbG8="}"#,
            // JSON escapes in keys and strings; newlines inside base64; Go's exotic case folds.
            r#"{"T\u0079pe":1,"Connıd":1,"ſeqNum":43,"Size":5,"Chec\u212Asum":11659,"Payload":"aG\rVs\nbG8="}"#,
            // Non-zero trailing bits ("8" vs "9") are ignored, as in Go's non-strict decoder.
            r#"{"Type":1,"ConnID":1,"SeqNum":43,"Size":5,"Checksum":11659,"Payload":"aGVsbG9="}"#,
        ];
        for json in cases {
            assert_eq!(decode(json.as_bytes()), Ok(hello.clone()), "{json}");
        }
        // Trailing bits before one and before two padding characters.
        for (text, plain) in [("aGl=", &b"hi"[..]), ("aB==", b"h"), ("aP==", b"h")] {
            assert_eq!(base64_decode(text).as_deref(), Ok(plain), "{text}");
        }
        // Missing fields are zero: `{}` is a Connect with ISN 0.
        assert_eq!(decode(b"{}"), Ok(Message::connect(SeqNum(0))));
        // A Data message with a null payload stays `None` (faithful, not normalised).
        let m = decode(br#"{"Type":1,"ConnID":1,"SeqNum":2}"#).expect("valid");
        assert_eq!((m.kind, m.payload), (MsgType::Data, None));
    }

    #[test]
    fn rejects_malformed() {
        use WireError::*;
        let cases: &[(&str, WireError)] = &[
            ("", Truncated),
            (r#"{"Type":1,"ConnID":1"#, Truncated),
            ("null", Malformed("unexpected JSON value")),
            ("[1,2]", Malformed("unexpected JSON value")),
            ("42", Malformed("unexpected JSON value")),
            ("{} {}", Malformed("invalid JSON")),
            ("{\"Type\":1,}", Malformed("invalid JSON")),
            (r#"{"Type":4}"#, UnknownType(4)),
            (r#"{"Type":18446744073709551615}"#, UnknownType(u64::MAX)),
            (r#"{"Type":-1}"#, OutOfRange("Type")),
            (r#"{"Type":"1"}"#, Malformed("unexpected JSON value")),
            (r#"{"Type":1.5}"#, Malformed("non-integer number")),
            (r#"{"SeqNum":1e2}"#, Malformed("non-integer number")),
            (r#"{"ConnID":-1}"#, OutOfRange("ConnID")),
            (r#"{"SeqNum":9223372036854775808}"#, OutOfRange("SeqNum")),
            (r#"{"Size":-5}"#, OutOfRange("Size")),
            (r#"{"Size":99999999999999999999999}"#, OutOfRange("Size")),
            (r#"{"Checksum":65536}"#, OutOfRange("Checksum")),
            (r#"{"Checksum":-1}"#, OutOfRange("Checksum")),
            (
                r#"{"Type":1,"Payload":"aGVsbG8"}"#,
                Malformed("invalid base64 payload"),
            ),
            (
                r#"{"Type":1,"Payload":"aGVsbG8=="}"#,
                Malformed("invalid base64 payload"),
            ),
            (
                r#"{"Type":1,"Payload":"a*Vs"}"#,
                Malformed("invalid base64 payload"),
            ),
            (
                r#"{"Type":1,"Payload":"aGVs bG8="}"#,
                Malformed("invalid base64 payload"),
            ),
            (
                r#"{"Type":1,"Payload":5}"#,
                Malformed("unexpected JSON value"),
            ),
            (
                r#"{"Type":1,"Payload":[104]}"#,
                Malformed("unexpected JSON value"),
            ),
        ];
        for (json, want) in cases {
            assert_eq!(decode(json.as_bytes()).as_ref(), Err(want), "{json}");
        }
        // Not UTF-8.
        assert!(decode(b"{\"Payload\":\"\xff\"}").is_err());
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let id = 0..=i64::MAX as u64;
        (
            0u8..4,
            id.clone(),
            id.clone(),
            id,
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..1500),
        )
            .prop_map(|(t, conn, seq, size, checksum, payload)| {
                let kind = MsgType::from_u8(t).unwrap_or(MsgType::Data);
                Message {
                    kind,
                    conn: ConnId(conn),
                    seq: SeqNum(seq),
                    size,
                    checksum,
                    payload: (kind == MsgType::Data).then(|| Bytes::from(payload)),
                    bundled: false,
                }
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn json_like_bytes_never_panic(s in r#"\{("[A-Za-z]{0,8}":(-?[0-9]{1,22}|null|"[A-Za-z0-9+/=]{0,12}"),?){0,8}\}"#) {
            let _ = decode(s.as_bytes());
        }

        #[test]
        fn round_trip(msg in arb_message()) {
            let mut out = BytesMut::new();
            encode(&msg, &mut out);
            prop_assert_eq!(out.len(), encoded_len(&msg));
            prop_assert_eq!(decode(&out), Ok(msg));
        }

        #[test]
        fn fast_path_agrees_with_the_general_decoder(msg in arb_message()) {
            let mut out = BytesMut::new();
            encode(&msg, &mut out);
            prop_assert_eq!(decode_exact(&out), Some(msg.clone()));
            prop_assert_eq!(decode_general(&out), Ok(msg));
        }

        #[test]
        fn fast_path_never_accepts_what_the_general_decoder_would_not(
            msg in arb_message(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut out = BytesMut::new();
            encode(&msg, &mut out);
            let mut bytes = out.to_vec();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Some(fast) = decode_exact(&bytes) {
                prop_assert_eq!(decode_general(&bytes), Ok(fast));
            }
            bytes.truncate(i);
            if let Some(fast) = decode_exact(&bytes) {
                prop_assert_eq!(decode_general(&bytes), Ok(fast));
            }
        }

        #[test]
        fn fast_base64_agrees_with_go_semantics(text in r"[A-Za-z0-9+/=\\\n]{0,24}") {
            // Non-canonical trailing bits, missing or misplaced padding, escapes, line breaks.
            let json = format!(
                r#"{{"Type":1,"ConnID":1,"SeqNum":2,"Size":3,"Checksum":4,"Payload":"{text}"}}"#
            );
            if let Some(fast) = decode_exact(json.as_bytes()) {
                prop_assert_eq!(decode_general(json.as_bytes()), Ok(fast));
            }
        }
    }
}
