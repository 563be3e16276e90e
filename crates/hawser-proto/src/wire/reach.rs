//! Flooded reachability events: presence (`ticktock`), address `found`/`down`, application events.
//!
//! One event per datagram payload, in hawser's binary style (the state that uses it is
//! [`crate::reach`]; this module knows nothing of it):
//!
//! ```text
//! event  = version:u8 (0x01) | kind:u8 | hops:u8 | origin:varint | incarnation:varint
//!          | seq:varint | body
//!   0x01 Ticktock  lease_ms:varint | count:u8 (<= MAX_ADDRESSES) | (addr | found_seq:varint)*count
//!   0x02 Found     addr
//!   0x03 Down      addr
//!   0x04 App       app_kind:u16 BE | len:varint (<= MAX_APP_PAYLOAD) | payload[len]
//! addr   = 0x04 | ipv4[4] | port:u16 BE   or   0x06 | ipv6[16] | port:u16 BE
//! ```
//!
//! Integers are unsigned LEB128 varints (at most 10 bytes, minimal encoding only), as in
//! [`lsp_binary`](super::lsp_binary). `(origin, incarnation, seq)` identifies the event: the
//! flood de-duplicates on it, and `(incarnation, seq)` is the origin's [`Stamp`], the only
//! clock existence timestamps use. A ticktock's `found_seq` is the seq of the event in which the
//! origin found that address, in the same incarnation as the header. IPv6 flow info and scope id
//! are not carried (decoded as 0). Trailing bytes are an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::cursor::{put_varint, varint_len, Reader};
use super::WireError;

/// The version byte of this layout; anything else is rejected.
pub const VERSION: u8 = 0x01;
/// Most addresses one ticktock may list.
pub const MAX_ADDRESSES: usize = 32;
/// Largest application payload an event may carry, in bytes.
pub const MAX_APP_PAYLOAD: usize = 16 * 1024;

/// Body kinds, as on the wire.
mod kind {
    pub const TICKTOCK: u8 = 0x01;
    pub const FOUND: u8 = 0x02;
    pub const DOWN: u8 = 0x03;
    pub const APP: u8 = 0x04;
}

/// An origin's logical time: its incarnation (grows across restarts), then the sequence number
/// of its events within the incarnation. Ordered lexicographically. Only stamps of the same
/// origin are ever compared: there is no global clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    /// Chosen by the origin at start; must grow across its restarts.
    pub incarnation: u64,
    /// Counts the origin's events in this incarnation, from 1.
    pub seq: u64,
}

/// One flooded event (the `Repr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The node that created the event (a `NodeId` in the state layer).
    pub origin: u64,
    /// The origin's logical time of creation; with `origin`, the event's identity.
    pub stamp: Stamp,
    /// Forwards so far: 0 as sent by the origin.
    pub hops: u8,
    /// What the event says.
    pub body: EventBody,
}

/// What an event says; every statement is about its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventBody {
    /// "I am alive for the next `lease`, at these addresses (each found at that seq)".
    Ticktock {
        /// The lease the origin promises, from receipt.
        lease: Duration,
        /// The origin's existing addresses and the seq (same incarnation) that found each.
        addresses: Vec<(SocketAddr, u64)>,
    },
    /// "I can be reached at this address" (`wire.found`).
    Found(SocketAddr),
    /// "This address of mine is gone" (`wire.down`).
    Down(SocketAddr),
    /// An application event, flooded like the others.
    App {
        /// The application's own kind number.
        kind: u16,
        /// Opaque payload, at most [`MAX_APP_PAYLOAD`] bytes.
        payload: Bytes,
    },
}

/// Decodes one event. Never panics, whatever the bytes.
///
/// # Errors
/// [`WireError::Truncated`] when the bytes end early; [`WireError::Malformed`] for a wrong
/// version, an unknown kind or address family, a bad varint, trailing bytes;
/// [`WireError::OutOfRange`] for too many addresses or too long a payload.
pub fn decode(bytes: &[u8]) -> Result<Event, WireError> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(WireError::Malformed("unknown version"));
    }
    let k = r.u8()?;
    let hops = r.u8()?;
    let origin = r.varint()?;
    let stamp = Stamp {
        incarnation: r.varint()?,
        seq: r.varint()?,
    };
    let body = match k {
        kind::TICKTOCK => {
            let lease = Duration::from_millis(r.varint()?);
            let count = usize::from(r.u8()?);
            if count > MAX_ADDRESSES {
                return Err(WireError::OutOfRange("address count"));
            }
            let mut addresses = Vec::with_capacity(count);
            for _ in 0..count {
                let addr = read_addr(&mut r)?;
                addresses.push((addr, r.varint()?));
            }
            EventBody::Ticktock { lease, addresses }
        }
        kind::FOUND => EventBody::Found(read_addr(&mut r)?),
        kind::DOWN => EventBody::Down(read_addr(&mut r)?),
        kind::APP => {
            let kind = r.u16()?;
            let len = r.varint()?;
            if len > MAX_APP_PAYLOAD as u64 {
                return Err(WireError::OutOfRange("app payload length"));
            }
            EventBody::App {
                kind,
                payload: Bytes::copy_from_slice(r.bytes(len)?),
            }
        }
        _ => return Err(WireError::Malformed("unknown event kind")),
    };
    if !r.is_empty() {
        return Err(WireError::Malformed("trailing bytes"));
    }
    Ok(Event {
        origin,
        stamp,
        hops,
        body,
    })
}

/// Appends `event` to `out`: exactly [`encoded_len`]`(event)` bytes.
///
/// # Errors
/// [`WireError::OutOfRange`] if the event lists more than [`MAX_ADDRESSES`] addresses or
/// carries more than [`MAX_APP_PAYLOAD`] bytes; nothing is written then.
pub fn encode(event: &Event, out: &mut BytesMut) -> Result<(), WireError> {
    check_bounds(event)?;
    out.reserve(encoded_len(event));
    let k = match &event.body {
        EventBody::Ticktock { .. } => kind::TICKTOCK,
        EventBody::Found(_) => kind::FOUND,
        EventBody::Down(_) => kind::DOWN,
        EventBody::App { .. } => kind::APP,
    };
    out.put_u8(VERSION);
    out.put_u8(k);
    out.put_u8(event.hops);
    put_varint(out, event.origin);
    put_varint(out, event.stamp.incarnation);
    put_varint(out, event.stamp.seq);
    match &event.body {
        EventBody::Ticktock { lease, addresses } => {
            put_varint(out, lease_millis(*lease));
            // check_bounds: at most MAX_ADDRESSES (32) entries, so the count fits a u8.
            out.put_u8(addresses.len() as u8);
            for (addr, found) in addresses {
                put_addr(out, *addr);
                put_varint(out, *found);
            }
        }
        EventBody::Found(addr) | EventBody::Down(addr) => put_addr(out, *addr),
        EventBody::App { kind, payload } => {
            out.put_u16(*kind);
            put_varint(out, payload.len() as u64);
            out.put_slice(payload);
        }
    }
    Ok(())
}

/// The event as a fresh buffer (see [`encode`]).
///
/// # Errors
/// As [`encode`].
pub fn to_bytes(event: &Event) -> Result<Bytes, WireError> {
    let mut out = BytesMut::with_capacity(encoded_len(event));
    encode(event, &mut out)?;
    Ok(out.freeze())
}

/// The exact number of bytes [`encode`] writes for `event` (when it is within bounds).
pub fn encoded_len(event: &Event) -> usize {
    let header = 3
        + varint_len(event.origin)
        + varint_len(event.stamp.incarnation)
        + varint_len(event.stamp.seq);
    let body = match &event.body {
        EventBody::Ticktock { lease, addresses } => {
            varint_len(lease_millis(*lease))
                + 1
                + addresses
                    .iter()
                    .map(|(a, f)| addr_len(*a) + varint_len(*f))
                    .sum::<usize>()
        }
        EventBody::Found(addr) | EventBody::Down(addr) => addr_len(*addr),
        EventBody::App { payload, .. } => 2 + varint_len(payload.len() as u64) + payload.len(),
    };
    header + body
}

fn check_bounds(event: &Event) -> Result<(), WireError> {
    match &event.body {
        EventBody::Ticktock { addresses, .. } if addresses.len() > MAX_ADDRESSES => {
            Err(WireError::OutOfRange("address count"))
        }
        EventBody::App { payload, .. } if payload.len() > MAX_APP_PAYLOAD => {
            Err(WireError::OutOfRange("app payload length"))
        }
        _ => Ok(()),
    }
}

/// A lease in whole milliseconds, saturating at `u64::MAX`.
fn lease_millis(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}

fn put_addr(out: &mut BytesMut, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.put_u8(4);
            out.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.put_u8(6);
            out.put_slice(&ip.octets());
        }
    }
    out.put_u16(addr.port());
}

fn addr_len(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

/// An address: family byte (4 or 6), the IP, the port.
fn read_addr(r: &mut Reader<'_>) -> Result<SocketAddr, WireError> {
    let ip = match r.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
        _ => return Err(WireError::Malformed("unknown address family")),
    };
    Ok(SocketAddr::new(ip, r.u16()?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn enc(event: &Event) -> Vec<u8> {
        // Pre-filled so that a wrong length or offset shows.
        let mut out = BytesMut::from(&[0xa5u8][..]);
        encode(event, &mut out).expect("within bounds");
        assert_eq!(out[0], 0xa5, "encode must append");
        assert_eq!(out.len() - 1, encoded_len(event));
        out[1..].to_vec()
    }

    fn ev(origin: u64, inc: u64, seq: u64, body: EventBody) -> Event {
        Event {
            origin,
            stamp: Stamp {
                incarnation: inc,
                seq,
            },
            hops: 0,
            body,
        }
    }

    fn a4() -> SocketAddr {
        "10.0.0.1:7000".parse().expect("literal")
    }

    #[test]
    fn golden_events() {
        let cases: Vec<(Event, Vec<u8>)> = vec![
            (
                ev(5, 1, 2, EventBody::Found(a4())),
                vec![1, 2, 0, 5, 1, 2, 4, 10, 0, 0, 1, 0x1B, 0x58],
            ),
            (
                ev(5, 1, 3, EventBody::Down(a4())),
                vec![1, 3, 0, 5, 1, 3, 4, 10, 0, 0, 1, 0x1B, 0x58],
            ),
            (
                ev(
                    300,
                    0,
                    4,
                    EventBody::Ticktock {
                        lease: Duration::from_secs(10),
                        addresses: vec![(a4(), 2)],
                    },
                ),
                vec![
                    1, 1, 0, 0xAC, 0x02, 0, 4, 0x90, 0x4E, 1, 4, 10, 0, 0, 1, 0x1B, 0x58, 2,
                ],
            ),
            (
                ev(
                    1,
                    1,
                    1,
                    EventBody::App {
                        kind: 0x0102,
                        payload: Bytes::from_static(b"hi"),
                    },
                ),
                vec![1, 4, 0, 1, 1, 1, 1, 2, 2, b'h', b'i'],
            ),
        ];
        for (event, bytes) in cases {
            assert_eq!(enc(&event), bytes, "{event:?}");
            assert_eq!(decode(&bytes), Ok(event));
        }
    }

    #[test]
    fn ipv6_and_hops_round_trip() {
        let mut e = ev(
            7,
            9,
            1,
            EventBody::Found("[2001:db8::1]:443".parse().unwrap()),
        );
        e.hops = 200;
        let bytes = enc(&e);
        assert_eq!(bytes[2], 200);
        assert_eq!(bytes.len(), 6 + 19);
        assert_eq!(decode(&bytes), Ok(e));
    }

    #[test]
    fn rejects_malformed() {
        use WireError::*;
        let found = enc(&ev(5, 1, 2, EventBody::Found(a4())));
        let mut trailing = found.clone();
        trailing.push(0);
        let mut family = found.clone();
        family[6] = 5;
        let mut version = found.clone();
        version[0] = 2;
        let mut kind = found.clone();
        kind[1] = 9;
        let cases: Vec<(Vec<u8>, WireError)> = vec![
            (vec![], Truncated),
            (version, Malformed("unknown version")),
            (kind, Malformed("unknown event kind")),
            (family, Malformed("unknown address family")),
            (trailing, Malformed("trailing bytes")),
            (found[..found.len() - 1].to_vec(), Truncated),
            (
                vec![1, 2, 0, 0x80, 0x00, 1, 1],
                Malformed("varint not minimal"),
            ),
            (
                vec![
                    1, 2, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02,
                ],
                Malformed("varint overflows u64"),
            ),
            (vec![1, 1, 0, 1, 1, 1, 10, 33], OutOfRange("address count")),
            (
                vec![1, 4, 0, 1, 1, 1, 0, 0, 0x81, 0x80, 0x01],
                OutOfRange("app payload length"),
            ),
            (vec![1, 4, 0, 1, 1, 1, 0, 0, 5, b'x'], Truncated),
        ];
        for (bytes, err) in cases {
            assert_eq!(decode(&bytes), Err(err), "{bytes:?}");
        }
    }

    #[test]
    fn encode_refuses_out_of_bounds() {
        let many = ev(
            1,
            1,
            1,
            EventBody::Ticktock {
                lease: Duration::from_secs(1),
                addresses: vec![(a4(), 1); MAX_ADDRESSES + 1],
            },
        );
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&many, &mut out),
            Err(WireError::OutOfRange("address count"))
        );
        assert!(out.is_empty());
        let big = ev(
            1,
            1,
            1,
            EventBody::App {
                kind: 0,
                payload: Bytes::from(vec![0; MAX_APP_PAYLOAD + 1]),
            },
        );
        assert!(to_bytes(&big).is_err());
    }

    #[test]
    fn huge_lease_saturates() {
        let e = ev(
            1,
            1,
            1,
            EventBody::Ticktock {
                lease: Duration::MAX,
                addresses: vec![],
            },
        );
        let got = decode(&enc(&e)).expect("valid");
        let EventBody::Ticktock { lease, .. } = got.body else {
            panic!("kind")
        };
        assert_eq!(lease, Duration::from_millis(u64::MAX));
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    fn arb_body() -> impl Strategy<Value = EventBody> {
        prop_oneof![
            (
                any::<u64>(),
                proptest::collection::vec((arb_addr(), any::<u64>()), 0..=MAX_ADDRESSES)
            )
                .prop_map(|(ms, addresses)| EventBody::Ticktock {
                    lease: Duration::from_millis(ms),
                    addresses
                }),
            arb_addr().prop_map(EventBody::Found),
            arb_addr().prop_map(EventBody::Down),
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600)).prop_map(|(kind, p)| {
                EventBody::App {
                    kind,
                    payload: Bytes::from(p),
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn versioned_bytes_never_panic(kind in 0u8..6, tail in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut bytes = vec![VERSION, kind];
            bytes.extend_from_slice(&tail);
            let _ = decode(&bytes);
        }

        #[test]
        fn round_trip(origin: u64, inc: u64, seq: u64, hops: u8, body in arb_body()) {
            let mut e = ev(origin, inc, seq, body);
            e.hops = hops;
            let bytes = to_bytes(&e).expect("within bounds");
            prop_assert_eq!(bytes.len(), encoded_len(&e));
            prop_assert_eq!(decode(&bytes), Ok(e));
        }

        #[test]
        fn every_truncation_fails(body in arb_body()) {
            let bytes = to_bytes(&ev(1, 2, 3, body)).expect("within bounds");
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }
}
