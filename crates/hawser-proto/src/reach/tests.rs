//! Script tests: events fed as reprs at given instants, exact outputs asserted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::wire::reach::{self as wire, Event, EventBody};

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);
const ME: NodeId = NodeId(9);

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 7000))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn engine(t0: Instant) -> Reachability {
    Reachability::new(ME, Config::default(), t0).expect("default config is valid")
}

fn ev(origin: NodeId, seq: u64, hops: u8, body: EventBody) -> Bytes {
    let event = Event {
        origin: origin.0,
        stamp: Stamp {
            incarnation: 1,
            seq,
        },
        hops,
        body,
    };
    wire::to_bytes(&event).expect("within bounds")
}

fn tick(origin: NodeId, seq: u64, lease: u64, addrs: &[(SocketAddr, u64)]) -> Bytes {
    let body = EventBody::Ticktock {
        lease: secs(lease),
        addresses: addrs.to_vec(),
    };
    ev(origin, seq, 0, body)
}

fn events(r: &mut Reachability) -> Vec<PeerEvent> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn sent(r: &mut Reachability) -> Vec<(NodeId, Event)> {
    std::iter::from_fn(|| r.poll_transmit())
        .map(|o| {
            (
                o.peer,
                wire::decode(&o.payload).expect("we encode valid events"),
            )
        })
        .collect()
}

fn exists(r: &Reachability, peer: NodeId, a: SocketAddr) -> Option<bool> {
    let p = r.peer(peer)?;
    p.addresses.iter().find(|s| s.addr == a).map(|s| s.exists)
}

#[test]
fn ticktock_makes_alive_and_silence_kills_within_the_lease() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    r.handle_event(t0, A, addr(1), &tick(A, 2, 10, &[(addr(1), 1)]));
    let until = t0 + secs(10);
    assert_eq!(
        events(&mut r),
        vec![
            PeerEvent::AddressReachable {
                peer: A,
                addr: addr(1),
                until: t0 + secs(30)
            },
            PeerEvent::PeerAlive { peer: A, until },
            PeerEvent::AddressFound {
                peer: A,
                addr: addr(1)
            },
        ]
    );
    assert!(r.poll_timeout().is_some_and(|t| t <= until));
    r.handle_timeout(until - Duration::from_millis(1));
    assert_eq!(events(&mut r), vec![]);
    r.handle_timeout(until);
    assert_eq!(events(&mut r), vec![PeerEvent::PeerDead { peer: A }]);
    let snap = r.peer(A).expect("known");
    assert!(!snap.alive);
    assert_eq!(snap.alive_until, Some(until));
    // Existence is another dimension: the address still exists.
    assert_eq!(exists(&r, A, addr(1)), Some(true));
}

#[test]
fn found_sent_before_down_but_received_after_stays_down() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    r.handle_event(t0, B, addr(2), &ev(A, 5, 1, EventBody::Down(addr(1))));
    r.handle_event(t0, B, addr(2), &ev(A, 4, 1, EventBody::Found(addr(1))));
    assert_eq!(exists(&r, A, addr(1)), Some(false));
    let snap = r.peer(A).expect("known");
    let a = &snap.addresses[0];
    assert_eq!(
        (a.last_found.map(|s| s.seq), a.last_dismiss.map(|s| s.seq)),
        (Some(4), Some(5))
    );
    assert!(!events(&mut r)
        .iter()
        .any(|e| matches!(e, PeerEvent::AddressFound { .. })));
    // A later found wins.
    r.handle_event(t0, B, addr(2), &ev(A, 6, 1, EventBody::Found(addr(1))));
    assert_eq!(exists(&r, A, addr(1)), Some(true));
    assert!(events(&mut r).contains(&PeerEvent::AddressFound {
        peer: A,
        addr: addr(1)
    }));
}

#[test]
fn reachable_before_its_found_arrives() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    r.handle_connected(t0, C, addr(3));
    let snap = r.peer(C).expect("known from the handshake");
    assert!(!snap.alive);
    assert!(snap.addresses[0].reachable && !snap.addresses[0].exists);
    assert_eq!(
        events(&mut r),
        vec![PeerEvent::AddressReachable {
            peer: C,
            addr: addr(3),
            until: t0 + secs(30)
        }]
    );
    let t1 = t0 + Duration::from_millis(2);
    r.handle_event(t1, C, addr(3), &ev(C, 1, 0, EventBody::Found(addr(3))));
    assert_eq!(exists(&r, C, addr(3)), Some(true));
    // ...and exists while unreachable, after a failed send.
    r.handle_send_failed(t1, C, addr(3));
    let _ = events(&mut r);
    let snap = r.peer(C).expect("known");
    assert!(snap.addresses[0].exists && !snap.addresses[0].reachable);
    assert_eq!(snap.addresses[0].last_reachable, Some(t1));
}

#[test]
fn ticktock_restates_the_address_set() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    r.handle_event(t0, A, addr(1), &ev(A, 1, 0, EventBody::Found(addr(1))));
    r.handle_event(t0, A, addr(1), &ev(A, 3, 0, EventBody::Found(addr(3))));
    // Ticktock 2 lists only addr(1): addr(2)... was never known; addr(3) was found after it.
    r.handle_event(t0, A, addr(1), &tick(A, 2, 10, &[(addr(1), 1)]));
    assert_eq!(exists(&r, A, addr(3)), Some(true));
    // Ticktock 4 omits addr(1): dismissed at 4.
    r.handle_event(t0, A, addr(1), &tick(A, 4, 10, &[(addr(3), 3)]));
    assert_eq!(exists(&r, A, addr(1)), Some(false));
    assert!(events(&mut r).contains(&PeerEvent::AddressDown {
        peer: A,
        addr: addr(1)
    }));
    // A stale ticktock neither renews the lease nor revives addr(1).
    let until = r.peer(A).and_then(|p| p.alive_until);
    r.handle_event(t0 + secs(5), A, addr(1), &tick(A, 2, 10, &[(addr(1), 1)]));
    assert_eq!(r.peer(A).and_then(|p| p.alive_until), until);
    assert_eq!(exists(&r, A, addr(1)), Some(false));
}

#[test]
fn new_incarnation_dismisses_old_addresses() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    r.handle_event(t0, A, addr(1), &tick(A, 9, 10, &[(addr(1), 1)]));
    let reborn = Event {
        origin: A.0,
        stamp: Stamp {
            incarnation: 2,
            seq: 2,
        },
        hops: 0,
        body: EventBody::Ticktock {
            lease: secs(10),
            addresses: vec![(addr(2), 1)],
        },
    };
    r.handle_event(
        t0 + secs(1),
        A,
        addr(1),
        &wire::to_bytes(&reborn).expect("valid"),
    );
    assert_eq!(exists(&r, A, addr(1)), Some(false));
    assert_eq!(exists(&r, A, addr(2)), Some(true));
    assert_eq!(r.peer(A).and_then(|p| p.incarnation), Some(2));
    assert_eq!(r.peer(A).and_then(|p| p.alive_until), Some(t0 + secs(11)));
}

#[test]
fn forwards_once_to_all_but_sender_and_origin_and_respects_hops() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    for (p, i) in [(A, 1), (B, 2), (C, 3)] {
        r.handle_connected(t0, p, addr(i));
    }
    r.handle_timeout(t0);
    let mine = sent(&mut r);
    assert_eq!(mine.len(), 3, "our ticktock goes to every neighbour");
    let _ = events(&mut r);
    let app = EventBody::App {
        kind: 7,
        payload: Bytes::from_static(b"x"),
    };
    let bytes = ev(A, 1, 2, app.clone());
    r.handle_event(t0, B, addr(2), &bytes);
    let out = sent(&mut r);
    assert_eq!(out.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![C]);
    assert_eq!(out[0].1.hops, 3);
    let got = r.poll_app_event().expect("delivered");
    assert_eq!(
        (got.id.origin, got.kind, &got.payload[..]),
        (A, 7, &b"x"[..])
    );
    r.handle_event(t0, C, addr(3), &bytes);
    assert!(sent(&mut r).is_empty() && r.poll_app_event().is_none());
    // At the hop limit: applied, not forwarded.
    r.handle_event(t0, B, addr(2), &ev(A, 2, 15, app));
    assert!(sent(&mut r).is_empty());
    assert!(r.poll_app_event().is_some());
    let s = r.stats();
    assert_eq!(
        (s.applied, s.duplicates, s.hop_limited, s.forwarded),
        (2, 1, 1, 1)
    );
}

#[test]
fn own_event_back_is_applied_not_forwarded() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    r.handle_connected(t0, A, addr(1));
    r.handle_connected(t0, B, addr(2));
    r.add_local_address(t0, addr(9)).expect("room");
    let out = sent(&mut r);
    assert_eq!(out.len(), 2);
    let back = wire::to_bytes(&Event {
        hops: 2,
        ..out[0].1.clone()
    })
    .expect("valid");
    r.handle_event(t0, A, addr(1), &back);
    assert!(sent(&mut r).is_empty());
    assert_eq!(r.stats().own_returned, 1);
    // A "future" event of ours is a forgery: dropped.
    r.handle_event(t0, A, addr(1), &ev(ME, 99, 1, EventBody::Found(addr(8))));
    assert!(sent(&mut r).is_empty());
    assert_eq!(r.stats().duplicates, 1);
    assert!(r.peer(ME).is_none());
}

#[test]
fn traffic_renews_and_failure_revokes_reachability() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    r.handle_traffic(t0, A, addr(1));
    r.handle_traffic(t0 + secs(20), A, addr(1));
    r.handle_timeout(t0 + secs(31));
    assert!(r.peer(A).expect("known").addresses[0].reachable);
    r.handle_send_failed(t0 + secs(32), A, addr(1));
    let evs = events(&mut r);
    assert_eq!(
        evs.last(),
        Some(&PeerEvent::AddressUnreachable {
            peer: A,
            addr: addr(1)
        })
    );
    r.handle_traffic(t0 + secs(33), A, addr(1));
    r.handle_timeout(t0 + secs(63));
    assert_eq!(
        events(&mut r),
        vec![
            PeerEvent::AddressReachable {
                peer: A,
                addr: addr(1),
                until: t0 + secs(63)
            },
            PeerEvent::AddressUnreachable {
                peer: A,
                addr: addr(1)
            },
        ]
    );
}

#[test]
fn tables_and_queues_stay_bounded_under_a_storm_of_origins() {
    let t0 = crate::reach::test_origin();
    let config = Config {
        max_peers: 8,
        max_addresses_per_peer: 2,
        max_seen: 50,
        max_pending_events: 20,
        max_outgoing: 30,
        ..Config::default()
    };
    let mut r = Reachability::new(ME, config, t0).expect("valid");
    r.handle_connected(t0, A, addr(1));
    r.handle_connected(t0, B, addr(2));
    for i in 0..500u64 {
        let now = t0 + Duration::from_millis(i);
        let origin = NodeId(100 + i % 40);
        let a = SocketAddr::from(([10, 1, (i % 7) as u8, 1], 7000));
        let body = if i % 3 == 0 {
            EventBody::Ticktock {
                lease: Duration::MAX,
                addresses: vec![(a, i)],
            }
        } else {
            EventBody::Found(a)
        };
        r.handle_event(now, A, addr(1), &ev(origin, i + 1, 0, body));
        assert!(r.peer_count() <= 8);
        assert!(r.max_addresses_held() <= 2);
        assert!(r.seen_len() <= 50);
        let (t, e, a) = r.pending();
        assert!(t <= 30 && e <= 20 && a <= 20);
    }
    let s = r.stats();
    assert!(s.table_refused > 0 && s.seen_evicted > 0 && s.outgoing_dropped > 0);
    assert!(s.events_dropped > 0);
    // Announced leases are cut to max_accepted_lease: no overflow, no eternal peer.
    let p = r
        .peers()
        .into_iter()
        .find(|p| p.lease.is_some())
        .expect("a ticking peer");
    assert_eq!(p.lease, Some(secs(3600)));
}

#[test]
fn commands_refuse_bad_input() {
    let t0 = crate::reach::test_origin();
    let mut r = engine(t0);
    let big = Bytes::from(vec![0; 1025]);
    assert_eq!(
        r.publish(t0, 1, big),
        Err(PublishError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
    assert_eq!(
        r.remove_local_address(t0, addr(1)),
        Err(AddressError::Unknown(addr(1)))
    );
    for i in 0..16 {
        r.add_local_address(t0, SocketAddr::from(([10, 0, 1, i], 1)))
            .expect("room");
    }
    assert_eq!(
        r.add_local_address(t0, addr(1)),
        Err(AddressError::TooMany(16))
    );
    assert_eq!(r.latest_stamp().seq, 16);
}

#[test]
fn config_is_validated() {
    let bad = |c: Config| Reachability::new(ME, c, crate::reach::test_origin()).err();
    let d = Config::default;
    assert_eq!(
        bad(Config { max_seen: 0, ..d() }),
        Some(ConfigError::Zero("max_seen"))
    );
    assert!(matches!(
        bad(Config {
            renew_divisor: 1,
            ..d()
        }),
        Some(ConfigError::Inconsistent(_))
    ));
    assert!(matches!(
        bad(Config {
            reachable_for: secs(3),
            ..d()
        }),
        Some(ConfigError::Inconsistent(_))
    ));
    let adaptive = LeasePolicy::Adaptive(AdaptiveLease {
        min: secs(5),
        max: secs(1),
        uptime_divisor: 4,
    });
    assert!(matches!(
        bad(Config {
            lease: adaptive,
            ..d()
        }),
        Some(ConfigError::Inconsistent(_))
    ));
    assert!(matches!(
        bad(Config {
            max_local_addresses: 33,
            ..d()
        }),
        Some(ConfigError::TooLarge {
            name: "max_local_addresses",
            ..
        })
    ));
    assert!(Config::default().validate().is_ok());
    let adaptive = Config {
        lease: LeasePolicy::Adaptive(AdaptiveLease::default()),
        ..d()
    };
    assert!(adaptive.validate().is_ok());
}

#[test]
fn adaptive_renewals_fall_while_neighbours_stay_reachable() {
    let t0 = crate::reach::test_origin();
    let config = Config {
        lease: LeasePolicy::Adaptive(AdaptiveLease::default()),
        ..Config::default()
    };
    let mut r = Reachability::new(ME, config, t0).expect("valid");
    r.handle_connected(t0, A, addr(1));
    let (mut first, mut last, mut now) = (0, 0, t0);
    while now < t0 + secs(600) {
        now = r
            .poll_timeout()
            .expect("a ticktock is always scheduled")
            .max(now);
        // Traffic from A arrives at every wakeup, keeping the link reachable.
        r.handle_traffic(now, A, addr(1));
        r.handle_timeout(now);
        let n = sent(&mut r).len();
        if now < t0 + secs(60) {
            first += n;
        } else if now >= t0 + secs(540) {
            last += n;
        }
        now += Duration::from_millis(1);
    }
    assert!(
        first > 3 * last && last > 0,
        "first minute {first}, last minute {last}"
    );
    assert_eq!(r.lease_in_force(), secs(60));
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(
        inputs in proptest::collection::vec((0u8..5, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..64)
    ) {
        let t0 = crate::reach::test_origin();
        let mut r = engine(t0);
        for (i, (op, who, bytes)) in inputs.into_iter().enumerate() {
            let now = t0 + Duration::from_millis(i as u64 * 700);
            let peer = NodeId(u64::from(who % 4));
            let a = addr(who % 4);
            match op {
                0 => r.handle_event(now, peer, a, &bytes),
                1 => r.handle_connected(now, peer, a),
                2 => r.handle_send_failed(now, peer, a),
                3 => r.handle_disconnected(now, peer, a),
                _ => r.handle_timeout(now),
            }
            while r.poll_transmit().is_some() || r.poll_event().is_some() {}
        }
    }
}
