//! Requests across nodes: answered, timed out at their deadline, failed when the peer is down.

mod nodes;

use bytes::Bytes;
use hawser_proto::node::engine::{InboundId, RequestError, RequestId};
use hawser_proto::node::{Event, NodeId};
use hawser_proto::wire::rpc::Outcome;
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, ms, with_reach};

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
