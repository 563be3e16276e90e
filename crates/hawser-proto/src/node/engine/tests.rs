//! Script tests of the engine on simulated time: a tiny in-test shell wires engines together
//! (dials answered at once, frames moved at once), and each test drives one rule.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::node::{Delivery, Group, Member, QueueLimits, Role};
use crate::wire::node::{Datagram, FrameKind};
use crate::wire::rpc::{Outcome, Rpc as Msg};

fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)] // tests need one arbitrary origin
    Instant::now()
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000))
}

fn members(n: usize) -> Membership {
    Membership::from_members((0..n).map(|i| Member::new(i as u64 + 1, Role::Member, addr(i))))
        .unwrap()
}

fn quiet() -> EngineConfig {
    EngineConfig {
        reach: None,
        ..EngineConfig::default()
    }
}

/// What the test shell does with a dial.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dials {
    Connect,
    Refuse,
    Ignore,
}

/// Engines joined by a shell that answers dials and moves frames at once.
struct Shell {
    nodes: Vec<Engine>,
    now: Instant,
    /// (node, outbound conn) -> (node, inbound conn).
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    events: Vec<Vec<Event>>,
    dials: Vec<(Instant, usize, NodeId)>,
    closes: Vec<(usize, ConnId, CloseReason)>,
    mode: Dials,
    /// Writes fail after this many bytes (once), if set.
    fail_write: Option<usize>,
    /// Writables seen but not served (when `hold` is set).
    held: Vec<(usize, ConnId)>,
    hold: bool,
    batch: FrameBatch,
}

impl Shell {
    fn new(n: usize, config: EngineConfig) -> Shell {
        let now = origin();
        let m = members(n);
        let nodes = (0..n)
            .map(|i| {
                Engine::new(
                    NodeId(i as u64 + 1),
                    config.clone(),
                    m.clone(),
                    &[addr(i)],
                    now,
                )
                .unwrap()
            })
            .collect();
        Shell {
            nodes,
            now,
            links: BTreeMap::new(),
            events: vec![Vec::new(); n],
            dials: Vec::new(),
            closes: Vec::new(),
            mode: Dials::Connect,
            fail_write: None,
            held: Vec::new(),
            hold: false,
            batch: FrameBatch::default(),
        }
    }

    fn node(&mut self, i: usize) -> &mut Engine {
        &mut self.nodes[i]
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].poll_transmit() {
                    moved = true;
                    self.carry(i, t);
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events[i].push(e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn carry(&mut self, i: usize, t: Transmit) {
        let now = self.now;
        match t {
            Transmit::Dial { conn, peer, .. } => {
                self.dials.push((now, i, peer));
                let j = peer.0 as usize - 1;
                match self.mode {
                    Dials::Connect => {
                        let me = self.nodes[i].id();
                        match self.nodes[j].handle_accepted(now, me, Some(addr(i))) {
                            Ok(inbound) => {
                                self.links.insert((i, conn), (j, inbound));
                                self.nodes[i].handle_dialed(now, conn, Ok(addr(j)));
                            }
                            Err(_) => {
                                self.nodes[i].handle_dialed(now, conn, Err(DialError::Refused))
                            }
                        }
                    }
                    Dials::Refuse => {
                        self.nodes[i].handle_dialed(now, conn, Err(DialError::Refused))
                    }
                    Dials::Ignore => {}
                }
            }
            Transmit::Writable { conn } if self.hold => self.held.push((i, conn)),
            Transmit::Writable { conn } => self.write(i, conn),
            Transmit::Close { conn, reason } => {
                self.closes.push((i, conn, reason));
                if let Some((j, inbound)) = self.links.remove(&(i, conn)) {
                    self.nodes[j].handle_closed(now, inbound);
                }
            }
            Transmit::Datagram { to, payload, .. } => {
                let j = to.0 as usize - 1;
                self.nodes[j].handle_datagram(now, addr(i), payload);
            }
        }
    }

    fn write(&mut self, i: usize, conn: ConnId) {
        let now = self.now;
        let mut batch = std::mem::take(&mut self.batch);
        if self.nodes[i].take_frames(now, conn, &mut batch) {
            let (j, inbound) = self.links[&(i, conn)];
            let limit = self.fail_write.take().unwrap_or(usize::MAX);
            let mut at = 0;
            for (frame, _) in batch.frames() {
                if at + frame.len() > limit {
                    break;
                }
                at += frame.len();
                self.nodes[j].handle_frame(now, inbound, frame.slice(4..));
            }
            let result = if limit == usize::MAX {
                Ok(())
            } else {
                Err(WriteError { written: limit })
            };
            self.nodes[i].handle_written(now, conn, &mut batch, result);
        }
        self.batch = batch;
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self.nodes.iter().filter_map(Engine::poll_timeout).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for n in 0..self.nodes.len() {
                        if self.nodes[n].poll_timeout().is_some_and(|t| t <= self.now) {
                            self.nodes[n].handle_timeout(self.now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        for n in &mut self.nodes {
            n.handle_timeout(end);
        }
        self.pump();
    }

    fn messages(&self, i: usize) -> Vec<(NodeId, Vec<u8>)> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Message { from, payload, .. } => Some((*from, payload.to_vec())),
                _ => None,
            })
            .collect()
    }

    fn responses(&self, i: usize) -> Vec<(RequestId, Result<Bytes, RequestError>)> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Response { id, result } => Some((*id, result.clone())),
                _ => None,
            })
            .collect()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn reliable_messages_arrive_in_order_and_are_counted() {
    let mut s = Shell::new(2, quiet());
    let now = s.now;
    for i in 0..5u8 {
        s.node(0)
            .send(now, NodeId(2), &[i], Delivery::Reliable)
            .unwrap();
    }
    s.pump();
    let got: Vec<Vec<u8>> = s.messages(1).into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, [[0], [1], [2], [3], [4]]);
    let st = s.nodes[0].peer_stats(NodeId(2)).unwrap();
    assert_eq!(
        (st.sent, st.enqueued, st.bytes_out, st.reconnects),
        (5, 5, 5, 0)
    );
    assert_eq!(s.nodes[1].peer_stats(NodeId(1)).unwrap().received, 5);
    assert_eq!(s.dials.len(), 1);
    assert!(s.events[0].contains(&Event::Connected { peer: NodeId(2) }));
}

#[test]
fn stale_messages_are_dropped_at_the_head_and_counted() {
    let mut cfg = quiet();
    cfg.queue = QueueLimits::default().with_deadline(ms(500));
    let mut s = Shell::new(2, cfg);
    s.mode = Dials::Ignore;
    let t0 = s.now;
    s.node(0)
        .send(t0, NodeId(2), b"old", Delivery::Reliable)
        .unwrap();
    s.pump();
    s.advance(ms(300));
    let t1 = s.now;
    s.node(0)
        .send(t1, NodeId(2), b"new", Delivery::Reliable)
        .unwrap();
    // The first is dropped when its deadline passes, by the timer, not at the next take.
    s.advance(ms(201));
    let st = s.nodes[0].peer_stats(NodeId(2)).unwrap();
    assert_eq!((st.dropped_stale, st.queued), (1, 1));
    s.advance(ms(300));
    let st = s.nodes[0].peer_stats(NodeId(2)).unwrap();
    assert_eq!((st.dropped_stale, st.queued), (2, 0));
}

#[test]
fn failed_dials_back_off_on_the_schedule_then_connect_and_reset() {
    let mut cfg = quiet();
    cfg.backoff_initial = ms(100);
    cfg.backoff_max = ms(400);
    cfg.queue = QueueLimits::default().with_deadline(Duration::from_secs(60));
    let mut s = Shell::new(2, cfg);
    s.mode = Dials::Refuse;
    let t0 = s.now;
    s.node(0)
        .send(t0, NodeId(2), b"x", Delivery::Reliable)
        .unwrap();
    s.advance(ms(1500));
    let at: Vec<u128> = s
        .dials
        .iter()
        .map(|(t, _, _)| (*t - t0).as_millis())
        .collect();
    // 0, +100, +200, +400, +400 (capped), +400
    assert_eq!(at, [0, 100, 300, 700, 1100, 1500]);
    assert_eq!(
        s.nodes[0].peer_stats(NodeId(2)).unwrap().connect_failures,
        6
    );
    s.mode = Dials::Connect;
    s.advance(ms(400));
    assert_eq!(s.messages(1), [(NodeId(1), b"x".to_vec())]);
    // Reset after success: the next failure waits the initial delay again.
    s.mode = Dials::Refuse;
    let (j, inbound) = *s.links.values().next().unwrap();
    let (i, conn) = *s.links.keys().next().unwrap();
    s.links.clear();
    s.nodes[i].handle_closed(s.now, conn);
    s.nodes[j].handle_closed(s.now, inbound);
    let (t1, before) = (s.now, s.dials.len());
    s.node(0)
        .send(t1, NodeId(2), b"y", Delivery::Reliable)
        .unwrap();
    s.advance(ms(150));
    let late: Vec<u128> = s.dials[before..]
        .iter()
        .map(|(t, _, _)| (*t - t1).as_millis())
        .collect();
    assert_eq!(late, [0, 100]);
}

#[test]
fn a_dial_without_answer_is_abandoned_at_the_connect_timeout() {
    let mut cfg = quiet();
    cfg.connect_timeout = ms(300);
    cfg.backoff_initial = ms(100);
    let mut s = Shell::new(2, cfg);
    s.mode = Dials::Ignore;
    let t0 = s.now;
    s.node(0)
        .send(t0, NodeId(2), b"x", Delivery::Reliable)
        .unwrap();
    s.advance(ms(450));
    assert_eq!(s.closes.len(), 1, "the first dial abandoned at 300 ms");
    assert!(s.closes.iter().all(|c| c.2 == CloseReason::ConnectTimeout));
    let at: Vec<u128> = s
        .dials
        .iter()
        .map(|(t, _, _)| (*t - t0).as_millis())
        .collect();
    assert_eq!(at, [0, 400]);
    // A late answer for the abandoned dial is closed as stale.
    let stale = ConnId(1);
    s.nodes[0].handle_dialed(s.now, stale, Ok(addr(1)));
    assert_eq!(
        s.nodes[0].poll_transmit(),
        Some(Transmit::Close {
            conn: stale,
            reason: CloseReason::Stale
        })
    );
}

#[test]
fn an_idle_connection_is_closed_and_the_next_message_reconnects() {
    let mut cfg = quiet();
    cfg.idle_timeout = ms(1000);
    let mut s = Shell::new(2, cfg);
    let t0 = s.now;
    s.node(0)
        .send(t0, NodeId(2), b"a", Delivery::Reliable)
        .unwrap();
    s.advance(ms(999));
    assert!(s.closes.is_empty());
    assert!(s.nodes[0].is_connected(NodeId(2)));
    s.advance(ms(1));
    assert_eq!(s.closes.len(), 1);
    assert_eq!(s.closes[0].2, CloseReason::Idle);
    assert!(!s.nodes[0].is_connected(NodeId(2)));
    let t1 = s.now;
    s.node(0)
        .send(t1, NodeId(2), b"b", Delivery::Reliable)
        .unwrap();
    s.pump();
    assert_eq!(s.messages(1).len(), 2);
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)).unwrap().reconnects, 1);
}

#[test]
fn a_failed_write_requeues_the_unwritten_messages_in_order() {
    let mut s = Shell::new(2, quiet());
    let now = s.now;
    s.hold = true;
    for p in [b"m1", b"m2", b"m3"] {
        s.node(0)
            .send(now, NodeId(2), p, Delivery::Reliable)
            .unwrap();
    }
    s.pump();
    // Each frame is 4 + 1 + 2 = 7 bytes: 10 bytes written carry m1 whole, m2 in part.
    s.hold = false;
    s.fail_write = Some(10);
    let (i, conn) = s.held.pop().unwrap();
    s.write(i, conn);
    s.node(0)
        .send(now, NodeId(2), b"m4", Delivery::Reliable)
        .unwrap();
    s.pump();
    let got: Vec<Vec<u8>> = s.messages(1).into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        got,
        [
            b"m1".to_vec(),
            b"m2".to_vec(),
            b"m3".to_vec(),
            b"m4".to_vec()
        ]
    );
    let st = s.nodes[0].peer_stats(NodeId(2)).unwrap();
    assert_eq!((st.sent, st.reconnects), (4, 1));
    assert!(s.closes.iter().any(|c| c.2 == CloseReason::Broken));
    assert!(s.events[0].contains(&Event::Disconnected { peer: NodeId(2) }));
}

#[test]
fn control_frames_go_first_and_are_bounded() {
    let mut cfg = quiet();
    cfg.max_control_frames = 3;
    let mut s = Shell::new(2, cfg);
    s.hold = true;
    let now = s.now;
    s.node(0)
        .send(now, NodeId(2), b"app", Delivery::Reliable)
        .unwrap();
    for i in 0..5u8 {
        s.node(0)
            .push_control(now, NodeId(2), route::Control::Reach(&[i]));
    }
    s.pump();
    assert_eq!(s.node(0).stats().control_dropped, 2);
    let (i, conn) = s.held.pop().unwrap();
    let mut batch = FrameBatch::default();
    assert!(s.node(i).take_frames(now, conn, &mut batch));
    // Only the three newest internal frames, in order, before any application frame.
    let bodies: Vec<Vec<u8>> = batch.frames().map(|(f, _)| f[4..].to_vec()).collect();
    let reach = FrameKind::Reach.byte();
    assert_eq!(bodies, [vec![reach, 2], vec![reach, 3], vec![reach, 4]]);
    // One batch at a time.
    assert!(!s.node(i).take_frames(now, conn, &mut FrameBatch::default()));
    s.node(i).handle_written(now, conn, &mut batch, Ok(()));
    assert_eq!(s.node(i).poll_transmit(), Some(Transmit::Writable { conn }));
    assert!(s.node(i).take_frames(now, conn, &mut batch));
    assert_eq!(
        batch
            .frames()
            .map(|(f, _)| f[5..].to_vec())
            .collect::<Vec<_>>(),
        [b"app".to_vec()]
    );
    // Control frames count in no application counter.
    s.node(i).handle_written(now, conn, &mut batch, Ok(()));
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)).unwrap().sent, 1);
}

#[test]
fn a_full_queue_refuses_with_a_typed_error_and_tells_when_there_is_room() {
    let mut cfg = quiet();
    cfg.queue = QueueLimits::default().with_max_messages(4);
    let mut s = Shell::new(2, cfg);
    s.hold = true;
    let now = s.now;
    for i in 0..4u8 {
        s.node(0)
            .send(now, NodeId(2), &[i], Delivery::Reliable)
            .unwrap();
    }
    assert_eq!(
        s.node(0).send(now, NodeId(2), b"x", Delivery::Reliable),
        Err(SendError::QueueFull(NodeId(2)))
    );
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)).unwrap().dropped_full, 1);
    s.pump();
    assert!(!s.events[0].contains(&Event::Room { peer: NodeId(2) }));
    s.hold = false;
    let (i, conn) = s.held.pop().unwrap();
    s.write(i, conn);
    s.pump();
    assert_eq!(
        s.events[0]
            .iter()
            .filter(|e| **e == Event::Room { peer: NodeId(2) })
            .count(),
        1
    );
}

#[test]
fn sends_are_refused_with_typed_errors() {
    let mut m = members(2);
    m.insert(Member::without_addr(9, Role::Member)).unwrap();
    let now = origin();
    let mut cfg = quiet();
    cfg.max_frame = 100;
    cfg.max_datagram = 10;
    let mut e = Engine::new(NodeId(1), cfg, m, &[], now).unwrap();
    assert_eq!(
        e.send(now, NodeId(7), b"x", Delivery::Reliable),
        Err(SendError::UnknownNode(NodeId(7)))
    );
    assert_eq!(
        e.send(now, NodeId(9), b"x", Delivery::Reliable),
        Err(SendError::Unreachable(NodeId(9)))
    );
    assert_eq!(
        e.send(now, NodeId(2), &[0; 100], Delivery::Reliable),
        Err(SendError::TooLarge { len: 100, max: 99 })
    );
    assert_eq!(
        e.send(now, NodeId(2), &[0; 11], Delivery::Unreliable),
        Err(SendError::TooLarge { len: 11, max: 10 })
    );
    e.send(now, NodeId(1), b"me", Delivery::Reliable).unwrap();
    assert!(matches!(
        e.poll_event(),
        Some(Event::Message {
            from: NodeId(1),
            ..
        })
    ));
    e.close(now);
    assert_eq!(
        e.send(now, NodeId(2), b"x", Delivery::Reliable),
        Err(SendError::Stopped)
    );
    assert_eq!(e.poll_timeout(), None);
}

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

#[test]
fn connections_from_strangers_are_refused_unless_admitted() {
    let now = origin();
    let mut e = Engine::new(NodeId(1), quiet(), members(2), &[], now).unwrap();
    assert_eq!(
        e.handle_accepted(now, NodeId(5), None),
        Err(Refusal::NotMember(NodeId(5)))
    );
    assert_eq!(
        e.handle_accepted(now, NodeId(1), None),
        Err(Refusal::Itself)
    );
    let mut cfg = quiet();
    cfg.admit_unknown = true;
    let mut e = Engine::new(NodeId(1), cfg, members(2), &[], now).unwrap();
    e.handle_accepted(now, NodeId(5), Some(addr(4))).unwrap();
    assert_eq!(e.membership().get(NodeId(5)).unwrap().role, Role::Temporary);
    assert!(matches!(e.poll_event(), Some(Event::Learned(m)) if m.id == NodeId(5)));
    e.change_membership(now, MembershipChange::Remove(NodeId(5)))
        .unwrap();
    assert_eq!(
        e.handle_accepted(now, NodeId(5), Some(addr(4))),
        Err(Refusal::NotMember(NodeId(5)))
    );
    assert_eq!(e.stats().refused_connections, 1);
}

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
    let inbound = *s.links.values().next().map(|(_, c)| c).unwrap();
    let _ = inbound;
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
fn an_address_change_reconnects() {
    let mut s = Shell::new(2, quiet());
    let now = s.now;
    s.node(0)
        .send(now, NodeId(2), b"a", Delivery::Reliable)
        .unwrap();
    s.pump();
    s.node(0)
        .change_membership(
            now,
            MembershipChange::SetAddrs(NodeId(2), vec![addr(1), addr(5)]),
        )
        .unwrap();
    s.node(0)
        .send(now, NodeId(2), b"b", Delivery::Reliable)
        .unwrap();
    s.pump();
    assert_eq!(s.dials.len(), 2);
    assert_eq!(s.messages(1).len(), 2);
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)).unwrap().reconnects, 1);
}

#[test]
fn broadcasts_reach_the_group_but_this_node() {
    let mut s = Shell::new(4, quiet());
    let now = s.now;
    s.node(0)
        .change_membership(now, MembershipChange::SetRole(NodeId(4), Role::Follower))
        .unwrap();
    let report = s
        .node(0)
        .broadcast(now, Group::Members, b"hi", Delivery::Reliable);
    assert!(report.is_all_ok());
    assert_eq!(
        report
            .outcomes
            .iter()
            .map(|(id, _)| id.0)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    s.pump();
    assert_eq!(
        s.messages(1).len() + s.messages(2).len() + s.messages(3).len(),
        2
    );
}

#[test]
fn reachability_connects_members_and_reports_them_alive() {
    let mut s = Shell::new(3, EngineConfig::default());
    // One renewal interval (10 s / 3) after start, every node pings the others.
    s.advance(Duration::from_secs(4));
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                assert!(s.nodes[i].is_alive(NodeId(j as u64 + 1)), "{i} sees {j}");
            }
        }
    }
    assert!(s.events[0].iter().any(|e| matches!(
        e,
        Event::Peer(PeerEvent::PeerAlive {
            peer: NodeId(2),
            ..
        })
    )));
    // Reachability frames count in no application counter.
    assert_eq!(s.nodes[0].peer_stats(NodeId(2)).unwrap().sent, 0);
}

#[test]
fn a_connection_closed_while_writing_requeues_once_the_batch_returns() {
    let mut s = Shell::new(2, quiet());
    let now = s.now;
    s.hold = true;
    for p in [b"a", b"b"] {
        s.node(0)
            .send(now, NodeId(2), p, Delivery::Reliable)
            .unwrap();
    }
    s.pump();
    let (i, conn) = s.held.pop().unwrap();
    let mut batch = FrameBatch::default();
    assert!(s.node(i).take_frames(now, conn, &mut batch));
    // The peer closes while the batch is being written: no dial until the batch returns.
    let (j, inbound) = s.links.remove(&(i, conn)).unwrap();
    s.node(j).handle_closed(now, inbound);
    s.node(i).handle_closed(now, conn);
    s.pump();
    assert_eq!(s.dials.len(), 1);
    assert!(s.events[0].contains(&Event::Disconnected { peer: NodeId(2) }));
    s.hold = false;
    s.node(i)
        .handle_written(now, conn, &mut batch, Err(WriteError { written: 0 }));
    s.node(0)
        .send(now, NodeId(2), b"c", Delivery::Reliable)
        .unwrap();
    s.pump();
    assert_eq!(s.dials.len(), 2);
    let got: Vec<Vec<u8>> = s.messages(1).into_iter().map(|(_, p)| p).collect();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

#[test]
fn nodes_reported_by_the_flood_are_learned_unless_removed() {
    let mut s = Shell::new(3, EngineConfig::default());
    // Node 2 starts without node 3 in its membership; nodes 1 and 3 know everyone.
    let mut partial = members(3);
    partial.remove(NodeId(3));
    s.nodes[1] = Engine::new(
        NodeId(2),
        EngineConfig::default(),
        partial,
        &[addr(1)],
        s.now,
    )
    .unwrap();
    s.advance(Duration::from_secs(4));
    let learned: Vec<&Member> = s.events[1]
        .iter()
        .filter_map(|e| match e {
            Event::Learned(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(learned, [&Member::new(3, Role::Temporary, addr(2))]);
    assert!(s.nodes[1].membership().contains(NodeId(3)));
    assert!(s.nodes[1].is_alive(NodeId(3)));
    assert_eq!(
        s.nodes[1]
            .all_peer_stats()
            .map(|(id, _)| id.0)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Removed by the application: the flood does not bring it back.
    let now = s.now;
    s.node(1)
        .change_membership(now, MembershipChange::Remove(NodeId(3)))
        .unwrap();
    s.advance(Duration::from_secs(8));
    assert!(!s.nodes[1].membership().contains(NodeId(3)));
    let again = s.events[1]
        .iter()
        .filter(|e| matches!(e, Event::Learned(_)))
        .count();
    assert_eq!(again, 1);
    assert!(
        s.nodes[1].stats().refused_connections > 0,
        "node 3's dials are refused"
    );
}

use crate::reach::PeerEvent;

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
