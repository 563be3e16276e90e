//! Requests and responses between engines.

use bytes::{BufMut, Bytes, BytesMut};

use super::*;
use crate::node::Delivery;
use crate::wire::node::FrameKind;
use crate::wire::rpc::{Outcome, Rpc as Msg};

#[test]
fn requests_are_matched_to_responses_and_time_out() {
    let mut s = Shell::new(2, quiet());
    let now = s.now;
    let r1 = s
        .node(0)
        .request(now, NodeId(2), 7, b"ping", Some(ms(1000)))
        .unwrap();
    let r2 = s
        .node(0)
        .request(now, NodeId(2), 7, b"slow", Some(ms(200)))
        .unwrap();
    s.pump();
    let reqs: Vec<(InboundId, Vec<u8>, Instant)> = s.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::Request {
                id,
                protocol: 7,
                payload,
                deadline,
                from: NodeId(1),
            } => Some((*id, payload.to_vec(), *deadline)),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].2, now + ms(1000));
    s.node(1)
        .respond(now, reqs[0].0, Outcome::Ok(b"pong"))
        .unwrap();
    s.pump();
    assert_eq!(s.responses(0), [(r1, Ok(Bytes::from_static(b"pong")))]);
    // Answering twice is refused.
    assert_eq!(
        s.node(1).respond(now, reqs[0].0, Outcome::Ok(b"again")),
        Err(RespondError::UnknownRequest)
    );
    s.advance(ms(200));
    assert_eq!(s.responses(0)[1], (r2, Err(RequestError::Timeout)));
    // The cancel reached the server, which stops serving it.
    assert!(s.events[1].contains(&Event::RequestCancelled { id: reqs[1].0 }));
    assert_eq!(
        s.nodes[1].respond(s.now, reqs[1].0, Outcome::Ok(b"late")),
        Err(RespondError::UnknownRequest)
    );
    let st = s.nodes[0].stats().rpc;
    assert_eq!(
        (
            st.requests_sent,
            st.responses_received,
            st.timeouts,
            st.outbound_in_flight
        ),
        (2, 1, 1, 0)
    );
    // A response for nothing pending is late, counted.
    let mut out = BytesMut::new();
    out.put_u8(FrameKind::Rpc.byte());
    Msg::Response {
        id: 99,
        outcome: Outcome::Ok(b"?"),
    }
    .emit(&mut out);
    let conn = s.nodes[0].handle_accepted(s.now, NodeId(2), None).unwrap();
    s.nodes[0].handle_frame(s.now, conn, out.freeze());
    assert_eq!(s.nodes[0].stats().rpc.late_responses, 1);
}

#[test]
fn refusals_and_caps_reach_the_caller_as_typed_errors() {
    let mut cfg = quiet();
    cfg.rpc.max_pending_per_peer = 2;
    cfg.rpc.max_inbound = 1;
    let mut s = Shell::new(2, cfg);
    let now = s.now;
    let a = s.node(0).request(now, NodeId(2), 1, b"a", None).unwrap();
    let b = s.node(0).request(now, NodeId(2), 1, b"b", None).unwrap();
    assert_eq!(
        s.node(0).request(now, NodeId(2), 1, b"c", None),
        Err(RequestError::Overloaded { local: true })
    );
    s.pump();
    // The server holds one; the second is answered Overloaded by its cap.
    assert_eq!(
        s.responses(0),
        [(b, Err(RequestError::Overloaded { local: false }))]
    );
    let Some(Event::Request { id, .. }) = s.events[1]
        .iter()
        .find(|e| matches!(e, Event::Request { .. }))
        .cloned()
    else {
        panic!("no request")
    };
    s.node(1)
        .respond(
            now,
            id,
            Outcome::Refused {
                code: 3,
                message: "no",
            },
        )
        .unwrap();
    s.pump();
    assert_eq!(
        s.responses(0)[1],
        (
            a,
            Err(RequestError::Refused {
                code: 3,
                message: "no".into()
            })
        )
    );
}

#[test]
fn removing_a_member_fails_its_requests_and_drops_its_queue() {
    let mut s = Shell::new(3, quiet());
    s.mode = Dials::Ignore;
    let now = s.now;
    let r = s.node(0).request(now, NodeId(2), 1, b"q", None).unwrap();
    s.node(0)
        .send(now, NodeId(2), b"m", Delivery::Reliable)
        .unwrap();
    s.pump();
    s.node(0)
        .change_membership(now, MembershipChange::Remove(NodeId(2)))
        .unwrap();
    s.pump();
    assert_eq!(
        s.responses(0),
        [(r, Err(RequestError::UnknownNode(NodeId(2))))]
    );
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)), None);
    assert!(s
        .closes
        .iter()
        .any(|c| c.2 == CloseReason::MembershipChanged));
    assert_eq!(
        s.node(0).request(now, NodeId(2), 1, b"q", None),
        Err(RequestError::UnknownNode(NodeId(2)))
    );
}

#[test]
fn a_request_served_past_its_deadline_is_kept_for_the_grace_then_forgotten() {
    let mut cfg = quiet();
    cfg.rpc.serve_grace = ms(500);
    let mut e = Engine::new(NodeId(2), cfg, members(2), &[], origin()).unwrap();
    let now = origin();
    let conn = e.handle_accepted(now, NodeId(1), Some(addr(0))).unwrap();
    let request = |id: u64| {
        let msg = Msg::Request {
            id,
            protocol: 7,
            timeout_ms: 100,
            payload: b"x",
        };
        let mut body = BytesMut::new();
        body.put_u8(FrameKind::Rpc.byte());
        msg.emit(&mut body);
        body.freeze()
    };
    e.handle_frame(now, conn, request(1));
    e.handle_frame(now, conn, request(2));
    let served: Vec<InboundId> = std::iter::from_fn(|| e.poll_event())
        .filter_map(|ev| match ev {
            Event::Request { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(served.len(), 2);
    // Past the deadline: an answer is refused, but the request is still known.
    e.handle_timeout(now + ms(200));
    assert_eq!(e.poll_event(), None);
    assert_eq!(
        e.respond(now + ms(200), served[0], Outcome::Ok(b"late")),
        Err(RespondError::UnknownRequest)
    );
    // The caller's cancel, arriving after the deadline, still finds the other one.
    let mut cancel = BytesMut::new();
    cancel.put_u8(FrameKind::Rpc.byte());
    Msg::Cancel { id: 2 }.emit(&mut cancel);
    e.handle_frame(now + ms(250), conn, cancel.freeze());
    assert_eq!(e.stats().rpc.cancels_received, 1);
    assert_eq!(
        e.poll_event(),
        Some(Event::RequestCancelled { id: served[1] })
    );
    assert_eq!(e.stats().rpc.inbound_in_flight, 0);
    assert_eq!(e.stats().rpc.expired, 1);
}
