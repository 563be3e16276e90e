//! Queues, connections, back-off, idle close, requeues, control frames and sends.

use std::time::Duration;

use super::*;
use crate::node::{Delivery, Group, Member, QueueLimits, Role};
use crate::wire::node::FrameKind;

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
        Err(SendError::NoAddress(NodeId(9)))
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
fn an_oversize_datagram_goes_reliably_only_when_configured() {
    let now = origin();
    for (policy, reliable) in [
        (OversizeDatagram::Refuse, false),
        (OversizeDatagram::SendReliably, true),
    ] {
        let mut cfg = quiet();
        cfg.max_datagram = 10;
        cfg.oversize_datagram = policy;
        let mut e = Engine::new(NodeId(1), cfg, members(2), &[], now).unwrap();
        let r = e.send(now, NodeId(2), &[7; 11], Delivery::Unreliable);
        let transmits: Vec<_> = std::iter::from_fn(|| e.poll_transmit()).collect();
        let st = e.peer_stats(NodeId(2));
        if reliable {
            assert_eq!(r, Ok(()));
            // Queued for the connection the first reliable message dials; no datagram.
            assert!(
                matches!(transmits[..], [Transmit::Dial { .. }]),
                "{transmits:?}"
            );
            assert_eq!(st.map(|s| (s.enqueued, s.queued)), Some((1, 1)));
        } else {
            assert_eq!(r, Err(SendError::TooLarge { len: 11, max: 10 }));
            assert!(transmits.is_empty(), "{transmits:?}");
        }
        // Within the limit it stays a datagram either way.
        e.send(now, NodeId(2), &[7; 10], Delivery::Unreliable)
            .unwrap();
        assert!(matches!(
            e.poll_transmit(),
            Some(Transmit::Datagram { to: NodeId(2), .. })
        ));
    }
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
