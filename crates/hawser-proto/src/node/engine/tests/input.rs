//! Datagrams and frames from the network: malformed, oversized, random.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::*;
use proptest::prelude::*;

use crate::node::{Delivery, QueueLimits};
use crate::wire::node::Datagram;
use crate::wire::rpc::Outcome;

#[test]
fn datagrams_round_trip_and_bad_ones_are_counted() {
    let mut s = Shell::new(2, quiet());
    let now = s.now;
    s.node(0)
        .send(now, NodeId(2), b"dg", Delivery::Unreliable)
        .unwrap();
    s.pump();
    assert_eq!(s.messages(1), [(NodeId(1), b"dg".to_vec())]);
    assert!(matches!(
        s.events[1][0],
        Event::Message {
            delivery: Delivery::Unreliable,
            ..
        }
    ));
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)).unwrap().sent, 1);
    let e = s.node(1);
    e.handle_datagram(now, addr(0), Bytes::from_static(b"garbage"));
    let mut out = BytesMut::new();
    Datagram {
        from: 1,
        to: 3,
        payload: b"x",
    }
    .emit(&mut out);
    e.handle_datagram(now, addr(0), out.split().freeze());
    Datagram {
        from: 5,
        to: 2,
        payload: b"x",
    }
    .emit(&mut out);
    e.handle_datagram(now, addr(0), out.split().freeze());
    let st = e.stats();
    assert_eq!((st.malformed_datagrams, st.unknown_senders), (1, 2));
    assert_eq!(e.poll_event(), None);
}

#[test]
fn malformed_and_oversized_frames_are_counted_never_delivered() {
    let mut cfg = quiet();
    cfg.max_frame = 64;
    let mut e = Engine::new(NodeId(2), cfg, members(2), &[], origin()).unwrap();
    let now = origin();
    let conn = e.handle_accepted(now, NodeId(1), Some(addr(0))).unwrap();
    for bad in [
        &b""[..],
        &[0x02, 1],
        &[0x09],
        &[0x04],
        &[0x04, 0xff],
        &[0x03; 33],
    ] {
        e.handle_frame(now, conn, Bytes::copy_from_slice(bad));
    }
    let st = e.stats();
    assert_eq!((st.bad_frames, st.rpc.bad_frames), (5, 1));
    e.handle_frame(now, ConnId(99), Bytes::from_static(&[0, 1]));
    assert_eq!(e.stats().unknown_conns, 1);
    e.handle_frame(now, conn, Bytes::from(vec![0; 65]));
    assert_eq!(e.stats().oversized_frames, 1);
    assert_eq!(
        e.poll_transmit(),
        Some(Transmit::Close {
            conn,
            reason: CloseReason::Broken
        })
    );
    assert_eq!(e.peer_stats(NodeId(1)).unwrap().oversized_frames, 1);
    // The connection is gone: later frames are ignored.
    e.handle_frame(now, conn, Bytes::from_static(&[0, 1]));
    assert_eq!(e.poll_event(), None);
}

#[derive(Clone, Debug)]
enum Input {
    Send(u8, u8, bool),
    Request(u8, u8),
    Respond(u8),
    Frame(u8, Vec<u8>),
    Datagram(Vec<u8>),
    Accept(u8),
    Dialed(u8, bool),
    Take(u8, Option<u8>),
    Closed(u8),
    Advance(u16),
    Remove(u8),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (0..5u8, any::<u8>(), any::<bool>()).prop_map(|(t, l, r)| Input::Send(t, l, r)),
        (0..5u8, any::<u8>()).prop_map(|(t, l)| Input::Request(t, l)),
        any::<u8>().prop_map(Input::Respond),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(c, f)| Input::Frame(c, f)),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Input::Datagram),
        (0..5u8).prop_map(Input::Accept),
        (any::<u8>(), any::<bool>()).prop_map(|(c, ok)| Input::Dialed(c, ok)),
        (any::<u8>(), proptest::option::of(any::<u8>())).prop_map(|(c, w)| Input::Take(c, w)),
        any::<u8>().prop_map(Input::Closed),
        any::<u16>().prop_map(Input::Advance),
        (0..5u8).prop_map(Input::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the inputs, nothing panics and every table stays within its bound.
    #[test]
    fn random_inputs_keep_every_bound(inputs in proptest::collection::vec(input(), 1..120)) {
        let cfg = EngineConfig {
            queue: QueueLimits::default().with_max_messages(4).with_max_bytes(300).with_deadline(ms(800)),
            max_control_frames: 3,
            max_inbound_connections: 2,
            max_events: 16,
            rpc: RpcConfig {
                max_pending: 3,
                max_pending_per_peer: 2,
                max_inbound: 2,
                max_inbound_per_peer: 2,
                ..RpcConfig::default()
            },
            connect_timeout: ms(300),
            idle_timeout: ms(900),
            admit_unknown: true,
            reach: Some(crate::reach::Config {
                lease: crate::reach::LeasePolicy::Fixed(ms(600)),
                reachable_for: ms(1000),
                ..Default::default()
            }),
            ..EngineConfig::default()
        };
        let mut now = origin();
        let mut e = Engine::new(NodeId(1), cfg.clone(), members(4), &[addr(0)], now).unwrap();
        let mut batch = FrameBatch::default();
        let mut inbound: Vec<InboundId> = Vec::new();
        for i in inputs {
            match i {
                Input::Send(t, l, r) => {
                    let d = if r { Delivery::Reliable } else { Delivery::Unreliable };
                    let _ = e.send(now, NodeId(u64::from(t)), &vec![7; usize::from(l)], d);
                }
                Input::Request(t, l) => { let _ = e.request(now, NodeId(u64::from(t)), 1, &vec![1; usize::from(l)], Some(ms(500))); }
                Input::Respond(i) => if let Some(id) = inbound.get(usize::from(i) % inbound.len().max(1)) {
                    let _ = e.respond(now, *id, Outcome::Ok(b"r"));
                },
                Input::Frame(c, f) => e.handle_frame(now, ConnId(u64::from(c % 8)), Bytes::from(f)),
                Input::Datagram(d) => e.handle_datagram(now, addr(1), Bytes::from(d)),
                Input::Accept(p) => { let _ = e.handle_accepted(now, NodeId(u64::from(p)), Some(addr(usize::from(p)))); }
                Input::Dialed(c, ok) => {
                    let r = if ok { Ok(addr(1)) } else { Err(DialError::Refused) };
                    e.handle_dialed(now, ConnId(u64::from(c % 8)), r);
                }
                Input::Take(c, w) => {
                    let conn = ConnId(u64::from(c % 8));
                    if e.take_frames(now, conn, &mut batch) {
                        let r = match w { None => Ok(()), Some(n) => Err(WriteError { written: usize::from(n) }) };
                        e.handle_written(now, conn, &mut batch, r);
                    }
                }
                Input::Closed(c) => e.handle_closed(now, ConnId(u64::from(c % 8))),
                Input::Advance(d) => { now += ms(u64::from(d % 2000)); e.handle_timeout(now); }
                Input::Remove(p) => { let _ = e.change_membership(now, MembershipChange::Remove(NodeId(u64::from(p)))); }
            }
            let (events, transmits) = e.pending();
            prop_assert!(events <= cfg.max_events);
            prop_assert!(transmits <= 64, "transmits {}", transmits);
            for id in e.membership().iter().map(|m| m.id) {
                let st = e.peer_stats(id).unwrap();
                // A failed write may put back one batch beyond the bound, never more.
                prop_assert!(st.queued <= 8, "queued {}", st.queued);
            }
            prop_assert!(e.stats().rpc.outbound_in_flight <= 3);
            prop_assert!(e.stats().rpc.inbound_in_flight <= 2);
            prop_assert!(e.inbound_conns <= 2);
            while let Some(ev) = e.poll_event() {
                if let Event::Request { id, .. } = ev { inbound.push(id); }
            }
            while e.poll_transmit().is_some() {}
            if let Some(t) = e.poll_timeout() {
                prop_assert!(t >= now || t + Duration::from_secs(10) > now);
            }
        }
    }
}

#[test]
fn an_oversized_frame_reported_by_the_shell_closes_the_connection_and_counts() {
    let mut e = Engine::new(NodeId(2), quiet(), members(2), &[], origin()).unwrap();
    let now = origin();
    let conn = e.handle_accepted(now, NodeId(1), Some(addr(0))).unwrap();
    e.handle_oversized(now, conn);
    assert_eq!(e.stats().oversized_frames, 1);
    assert_eq!(e.peer_stats(NodeId(1)).unwrap().oversized_frames, 1);
    let close = Transmit::Close {
        conn,
        reason: CloseReason::Broken,
    };
    assert_eq!(e.poll_transmit(), Some(close));
    e.handle_oversized(now, conn);
    assert_eq!(
        (e.stats().oversized_frames, e.stats().unknown_conns),
        (1, 1)
    );
}

#[test]
fn opened_datagrams_are_delivered_from_members_only() {
    let mut e = Engine::new(NodeId(2), quiet(), members(2), &[], origin()).unwrap();
    let now = origin();
    e.handle_opened_datagram(now, NodeId(1), Bytes::from_static(b"hi"));
    e.handle_opened_datagram(now, NodeId(9), Bytes::from_static(b"x"));
    e.handle_opened_datagram(now, NodeId(2), Bytes::from_static(b"x"));
    let msg = Event::Message {
        from: NodeId(1),
        delivery: Delivery::Unreliable,
        payload: Bytes::from_static(b"hi"),
    };
    assert_eq!(e.poll_event(), Some(msg));
    assert_eq!(e.poll_event(), None);
    assert_eq!(e.stats().unknown_senders, 2);
    assert_eq!(e.peer_stats(NodeId(1)).unwrap().received, 1);
}

#[test]
fn connect_opens_a_connection_without_reachability_once() {
    let mut e = Engine::new(NodeId(1), quiet(), members(2), &[], origin()).unwrap();
    let now = origin();
    e.connect(now, NodeId(2));
    assert!(matches!(
        e.poll_transmit(),
        Some(Transmit::Dial {
            peer: NodeId(2),
            ..
        })
    ));
    e.connect(now, NodeId(2));
    e.connect(now, NodeId(1));
    e.connect(now, NodeId(7));
    assert_eq!(e.poll_transmit(), None);
}
