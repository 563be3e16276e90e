//! Requests across nodes: answered, timed out at their deadline, failed when the peer is down;
//! each refusal its own error; cancels and deadlines seen by the peer; this node's own errors;
//! a dead peer failing requests at once until it is alive again.

mod nodes;

use bytes::Bytes;
use hawser_proto::node::engine::{InboundId, RequestError, RequestId, RespondError};
use hawser_proto::node::{Event, NodeId};
use hawser_proto::session::ProtocolId;
use hawser_proto::wire::rpc::{Outcome, Part};
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, ms, quick, with_reach};

/// The requests `at` received: (id, from, payload).
fn requests(cl: &Cluster, at: NodeId) -> Vec<(InboundId, NodeId, Bytes)> {
    let reqs = cl.events(at).iter().filter_map(|(_, e)| match e {
        Event::Request {
            id, from, payload, ..
        } => Some((*id, *from, payload.clone())),
        _ => None,
    });
    reqs.collect()
}

/// When and how request `id` of `at` ended.
fn response(
    cl: &Cluster,
    at: NodeId,
    id: RequestId,
) -> Option<(std::time::Instant, Result<Bytes, RequestError>)> {
    cl.events(at).iter().find_map(|(t, e)| match e {
        Event::Response { id: r, result } if *r == id => Some((*t, result.clone())),
        _ => None,
    })
}

#[test]
fn requests_are_answered_time_out_and_fail_when_the_peer_is_down() {
    each_seed("rpc", |seed| {
        let mut cl = Cluster::with_config(seed, with_reach(ms(1000)));
        let [a, b, c] = cl.add_nodes(3)[..] else {
            unreachable!()
        };
        cl.run_for(ms(500));

        // Answered: b's application echoes.
        let t = cl.now();
        let id = cl
            .with(a, |e, now| e.request(now, b, 9, b"ping", Some(ms(1000))))
            .unwrap()
            .unwrap();
        assert!(cl.run_until(|cl| !requests(cl, b).is_empty(), ms(100)));
        let (inbound, caller, payload) = requests(&cl, b).remove(0);
        assert_eq!((caller, &payload[..]), (a, &b"ping"[..]));
        let reply = [&b"pong:"[..], &payload].concat();
        cl.with(b, |e, now| e.respond(now, inbound, Outcome::Ok(&reply)))
            .unwrap()
            .unwrap();
        assert!(cl.run_until(|cl| response(cl, a, id).is_some(), ms(100)));
        let (at, result) = response(&cl, a, id).unwrap();
        assert_eq!(result, Ok(Bytes::from_static(b"pong:ping")));
        assert!(at - t <= ms(4 * 5), "answered in {:?}", at - t);

        // Unanswered: times out exactly at its deadline; c hears the cancel.
        let t = cl.now();
        let id = cl
            .with(a, |e, now| e.request(now, c, 9, b"slow", Some(ms(300))))
            .unwrap()
            .unwrap();
        cl.run_for(ms(400));
        assert_eq!(
            response(&cl, a, id),
            Some((t + ms(300), Err(RequestError::Timeout)))
        );
        let (served, _, _) = requests(&cl, c).remove(0);
        assert!(cl
            .events(c)
            .iter()
            .any(|(_, e)| *e == Event::RequestCancelled { id: served }));
        let late = cl
            .with(c, |e, now| e.respond(now, served, Outcome::Ok(b"late")))
            .unwrap();
        assert!(late.is_err(), "nobody waits for it");

        // The peer crashes: a request in flight fails with Unreachable once the dial is
        // refused, long before its deadline.
        let id = cl
            .with(a, |e, now| e.request(now, b, 9, b"lost", Some(ms(5000))))
            .unwrap()
            .unwrap();
        cl.run_for(ms(1));
        let crashed = cl.now();
        cl.crash(b);
        assert!(cl.run_until(|cl| response(cl, a, id).is_some(), ms(1000)));
        let (at, result) = response(&cl, a, id).unwrap();
        assert_eq!(result, Err(RequestError::Unreachable(b)));
        assert!(
            at - crashed <= cl.latency(a, b) * 2,
            "failed after {:?}",
            at - crashed
        );
        // Once reachability declares it dead, requests fail at once.
        cl.run_for(ms(1200));
        assert!(!cl.engine(a).unwrap().is_alive(b));
        let refused = cl
            .with(a, |e, now| e.request(now, b, 9, b"x", None))
            .unwrap();
        assert_eq!(refused, Err(RequestError::Unreachable(b)));
        let st = cl.engine(a).unwrap().stats().rpc;
        assert_eq!(
            (
                st.requests_sent,
                st.responses_received,
                st.timeouts,
                st.outbound_in_flight
            ),
            (3, 1, 1, 0)
        );
    });
}

/// The request `at` received last, and its payload.
fn last_request(cl: &Cluster, at: NodeId) -> (InboundId, Bytes) {
    let (id, _, payload) = requests(cl, at).pop().expect("a request arrived");
    (id, payload)
}

/// Sends a request from `a` to `b` and runs until `b` holds it; its ids here and there.
fn call(
    cl: &mut Cluster,
    a: NodeId,
    b: NodeId,
    payload: &[u8],
    ms_: u64,
) -> (RequestId, InboundId) {
    let before = requests(cl, b).len();
    let id = cl
        .with(a, |e, now| e.request(now, b, 9, payload, Some(ms(ms_))))
        .unwrap()
        .unwrap();
    assert!(cl.run_until(|cl| requests(cl, b).len() > before, ms(100)));
    (id, last_request(cl, b).0)
}

/// Runs until request `id` of `at` ended; how.
fn outcome(cl: &mut Cluster, at: NodeId, id: RequestId) -> Result<Bytes, RequestError> {
    assert!(cl.run_until(|cl| response(cl, at, id).is_some(), ms(100)));
    response(cl, at, id).unwrap().1
}

#[test]
fn every_refusal_reaches_the_caller_as_its_own_error() {
    each_seed("rpc_refusals", |seed| {
        let mut cl = Cluster::with_config(seed, quick());
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        // b serves requests of at most 1,000 bytes, two at once from one peer.
        let mut config = quick();
        config.rpc.max_request = 1000;
        config.rpc.max_inbound_per_peer = 2;
        cl.set_config(b, config);
        cl.crash(b);
        cl.restart(b);
        let answer = |cl: &mut Cluster, given: Outcome<'_>| {
            let (id, served) = call(cl, a, b, b"x", 5000);
            cl.with(b, |e, now| e.respond(now, served, given))
                .unwrap()
                .unwrap();
            outcome(cl, a, id)
        };
        assert_eq!(
            answer(&mut cl, Outcome::NoHandler),
            Err(RequestError::NoHandler(ProtocolId(9)))
        );
        let refused = Outcome::Refused {
            code: 7,
            message: "not the leader",
        };
        assert_eq!(
            answer(&mut cl, refused),
            Err(RequestError::Refused {
                code: 7,
                message: "not the leader".into()
            })
        );
        assert_eq!(
            answer(&mut cl, Outcome::Omitted),
            Err(RequestError::ResponseOmitted)
        );
        // Above b's maximum: refused by b, its handler never sees it.
        let seen = requests(&cl, b).len();
        let id = cl
            .with(a, |e, now| e.request(now, b, 9, &[1; 1001], Some(ms(5000))))
            .unwrap()
            .unwrap();
        let (part, len, max) = (Part::Request, 1001, 1000);
        assert_eq!(
            outcome(&mut cl, a, id),
            Err(RequestError::TooLarge { part, len, max })
        );
        assert_eq!(requests(&cl, b).len(), seen);
        // Above a's own maximum (8 MiB): refused at once, nothing sent.
        let sent = cl.engine(a).unwrap().stats().rpc.requests_sent;
        let big = vec![1u8; (8 << 20) + 1];
        let err = cl
            .with(a, |e, now| e.request(now, b, 9, &big, None))
            .unwrap();
        let (len, max) = ((8 << 20) + 1, 8 << 20);
        assert_eq!(err, Err(RequestError::TooLarge { part, len, max }));
        assert_eq!(cl.engine(a).unwrap().stats().rpc.requests_sent, sent);
        // A response above b's maximum: b's call fails, a is answered TooLarge.
        let (id, served) = call(&mut cl, a, b, b"big", 5000);
        let r = cl
            .with(b, |e, now| e.respond(now, served, Outcome::Ok(&big)))
            .unwrap();
        assert_eq!(
            r,
            Err(RespondError::TooLarge {
                len: big.len(),
                max: 8 << 20
            })
        );
        let (part, len) = (Part::Response, big.len() as u64);
        assert_eq!(
            outcome(&mut cl, a, id),
            Err(RequestError::TooLarge {
                part,
                len,
                max: 8 << 20
            })
        );
        // Two held requests fill b's cap for a: the third is answered Overloaded.
        let (hold1, _) = call(&mut cl, a, b, b"hold", 300);
        let (hold2, _) = call(&mut cl, a, b, b"hold", 300);
        let third = cl
            .with(a, |e, now| e.request(now, b, 9, b"third", Some(ms(5000))))
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome(&mut cl, a, third),
            Err(RequestError::Overloaded { local: false })
        );
        assert_eq!(cl.engine(b).unwrap().stats().rpc.inbound_overloaded, 1);
        cl.run_for(ms(300));
        assert_eq!(outcome(&mut cl, a, hold1), Err(RequestError::Timeout));
        assert_eq!(outcome(&mut cl, a, hold2), Err(RequestError::Timeout));
        // Their cancels free b's cap: b serves a again, over the same connection.
        assert!(cl.run_until(
            |cl| cl.engine(b).unwrap().stats().rpc.inbound_in_flight == 0,
            ms(100)
        ));
        assert_eq!(cl.engine(b).unwrap().stats().rpc.cancels_received, 2);
        let (id, served) = call(&mut cl, a, b, b"again", 5000);
        cl.with(b, |e, now| e.respond(now, served, Outcome::Ok(b"again")))
            .unwrap()
            .unwrap();
        assert_eq!(outcome(&mut cl, a, id), Ok(Bytes::from_static(b"again")));
        let st = cl.engine(a).unwrap().peer_stats(b).unwrap();
        assert_eq!((st.reconnects, st.connect_failures), (0, 0), "{st:?}");
        assert_eq!(cl.engine(b).unwrap().stats().oversized_frames, 0);
        assert_eq!(cl.engine(b).unwrap().peer_stats(a).unwrap().reconnects, 0);
        let net = cl.stats();
        assert_eq!((net.broken, net.dials_refused), (0, 0), "{net:?}");
    });
}

/// Whether `at` told its application that request `id` is no longer awaited.
fn cancelled(cl: &Cluster, at: NodeId, id: InboundId) -> Option<std::time::Instant> {
    cl.events(at)
        .iter()
        .find_map(|(t, e)| (*e == Event::RequestCancelled { id }).then_some(*t))
}

#[test]
fn deadlines_and_cancels_reach_the_peer() {
    each_seed("rpc_deadlines", |seed| {
        let mut config = quick();
        config.rpc.serve_grace = ms(500);
        let mut cl = Cluster::with_config(seed, config);
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        // Unanswered: the caller's wait is its deadline, to the instant; b hears the cancel
        // one latency later and refuses a late answer.
        let t = cl.now();
        let (id, first) = call(&mut cl, a, b, b"first", 200);
        cl.run_for(ms(200) - (cl.now() - t));
        assert_eq!(
            response(&cl, a, id),
            Some((t + ms(200), Err(RequestError::Timeout)))
        );
        assert!(cl.run_until(|cl| cancelled(cl, b, first).is_some(), ms(100)));
        assert_eq!(
            cancelled(&cl, b, first),
            Some(t + ms(200) + cl.latency(a, b))
        );
        let late = cl.with(b, |e, now| e.respond(now, first, Outcome::Ok(b"late")));
        assert_eq!(late, Some(Err(RespondError::UnknownRequest)));
        // Cancelled by the caller's application: no response event, b told at once.
        let (id, second) = call(&mut cl, a, b, b"second", 10_000);
        assert_eq!(cl.with(a, |e, now| e.cancel(now, id)), Some(true));
        let at = cl.now();
        assert!(cl.run_until(|cl| cancelled(cl, b, second).is_some(), ms(100)));
        assert_eq!(cancelled(&cl, b, second), Some(at + cl.latency(a, b)));
        assert_eq!(response(&cl, a, id), None);
        let late = cl.with(b, |e, now| e.respond(now, second, Outcome::Ok(b"late")));
        assert_eq!(late, Some(Err(RespondError::UnknownRequest)));
        // The cancel lost (a cut off from b, which fails the request at a at once): b
        // forgets the request at its deadline plus the grace, counted expired, and tells its
        // application then.
        let t = cl.now();
        let (id, third) = call(&mut cl, a, b, b"third", 100);
        let arrived = cl.now();
        cl.partition(&[a], &[b]);
        assert_eq!(
            response(&cl, a, id).map(|r| r.1),
            Some(Err(RequestError::Unreachable(b)))
        );
        cl.run_for(ms(1000));
        let deadline = arrived + ms(100);
        assert_eq!(cancelled(&cl, b, third), Some(deadline + ms(500)));
        assert!(arrived - t <= cl.latency(a, b));
        let rpc = cl.engine(b).unwrap().stats().rpc;
        assert_eq!(
            (
                rpc.requests_received,
                rpc.cancels_received,
                rpc.expired,
                rpc.inbound_in_flight
            ),
            (3, 2, 1, 0)
        );
        let rpc = cl.engine(a).unwrap().stats().rpc;
        assert_eq!(
            (
                rpc.requests_sent,
                rpc.timeouts,
                rpc.cancelled,
                rpc.outbound_in_flight
            ),
            (3, 1, 1, 0)
        );
    });
}

#[test]
fn this_nodes_own_errors_come_at_once() {
    each_seed("rpc_local_errors", |seed| {
        let mut config = quick();
        config.rpc.max_pending_per_peer = 2;
        config.connect_timeout = ms(500);
        let mut cl = Cluster::with_config(seed, config);
        let [a, b, c, d] = cl.add_nodes(4)[..] else {
            unreachable!()
        };
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(call(&mut cl, a, b, b"hold", 10_000).0);
        }
        let third = cl
            .with(a, |e, now| e.request(now, b, 9, b"x", None))
            .unwrap();
        assert_eq!(third, Err(RequestError::Overloaded { local: true }));
        assert_eq!(cl.engine(a).unwrap().stats().rpc.outbound_overloaded, 1);
        let unknown = cl.with(a, |e, now| e.request(now, NodeId(9), 9, b"x", None));
        assert_eq!(unknown, Some(Err(RequestError::UnknownNode(NodeId(9)))));
        // A member that is down: Unreachable once its dial is refused, one round trip,
        // not at the 60 s deadline.
        cl.crash(c);
        let t = cl.now();
        let id = cl
            .with(a, |e, now| e.request(now, c, 9, b"x", Some(ms(60_000))))
            .unwrap()
            .unwrap();
        cl.run_for(ms(100));
        let (at, result) = response(&cl, a, id).expect("failed before its deadline");
        assert_eq!(result, Err(RequestError::Unreachable(c)));
        assert_eq!(at - t, cl.latency(a, c) * 2);
        // Across a partition the dial is never answered: Unreachable at the connect timeout.
        cl.partition(&[a], &[d]);
        let t = cl.now();
        let id = cl
            .with(a, |e, now| e.request(now, d, 9, b"x", Some(ms(60_000))))
            .unwrap()
            .unwrap();
        cl.run_for(ms(1000));
        let (at, result) = response(&cl, a, id).expect("failed before its deadline");
        assert_eq!(
            (at - t, result),
            (ms(500), Err(RequestError::Unreachable(d)))
        );
        // Stopped: what is in flight fails with Stopped, and new requests at once.
        cl.with(a, |e, now| e.close(now)).unwrap();
        for id in held {
            assert_eq!(
                response(&cl, a, id).map(|r| r.1),
                Some(Err(RequestError::Stopped))
            );
        }
        let stopped = cl.with(a, |e, now| e.request(now, b, 9, b"x", None));
        assert_eq!(stopped, Some(Err(RequestError::Stopped)));
    });
}

#[test]
fn a_dead_peer_fails_requests_at_once_and_is_called_again_once_alive() {
    each_seed("rpc_dead_peer", |seed| {
        let lease = ms(300);
        let mut cl = Cluster::with_config(seed, with_reach(lease));
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        let (id, served) = call(&mut cl, a, b, b"warm", 5000);
        cl.with(b, |e, now| e.respond(now, served, Outcome::Ok(b"warm")))
            .unwrap()
            .unwrap();
        assert_eq!(outcome(&mut cl, a, id), Ok(Bytes::from_static(b"warm")));
        assert!(cl.run_until(|cl| cl.engine(a).unwrap().is_alive(b), lease));
        // Held by b when it crashes: failed when the connection breaks, not at its 30 s
        // deadline.
        let (held, _) = call(&mut cl, a, b, b"held", 30_000);
        let crashed = cl.now();
        cl.crash(b);
        assert_eq!(outcome(&mut cl, a, held), Err(RequestError::Unreachable(b)));
        assert!(response(&cl, a, held).unwrap().0 - crashed <= lease);
        assert!(cl.run_until(|cl| !cl.engine(a).unwrap().is_alive(b), lease * 2));
        // Dead: a new request fails at once, nothing sent.
        let sent = cl.engine(a).unwrap().stats().rpc.requests_sent;
        let err = cl.with(a, |e, now| e.request(now, b, 9, b"x", Some(ms(30_000))));
        assert_eq!(err, Some(Err(RequestError::Unreachable(b))));
        assert_eq!(cl.engine(a).unwrap().stats().rpc.requests_sent, sent);
        // Back: alive again, answered again.
        cl.restart(b);
        assert!(cl.run_until(|cl| cl.engine(a).unwrap().is_alive(b), lease * 2));
        let (id, served) = call(&mut cl, a, b, b"back", 5000);
        cl.with(b, |e, now| e.respond(now, served, Outcome::Ok(b"back")))
            .unwrap()
            .unwrap();
        assert_eq!(outcome(&mut cl, a, id), Ok(Bytes::from_static(b"back")));
    });
}
