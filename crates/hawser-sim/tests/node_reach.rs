//! Reachability between whole nodes: every node sees every other alive, a crash is detected
//! by each survivor within the configured lease, events about a peer come in causal order, a
//! restarted peer comes back as a new incarnation, messages to a dead peer wait for the queue
//! deadline while alive-only sends refuse it at once; without reachability no control frame is
//! sent and alive-only sends always refuse.

mod nodes;

use hawser_proto::node::engine::SendError;
use hawser_proto::node::{Delivery, Event, NodeId, QueueLimits};
use hawser_proto::reach::PeerEvent;
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, from, ms, peer_event, quick, with_reach};

#[test]
fn a_crash_is_detected_by_every_survivor_within_the_lease() {
    each_seed("reach_crash", |seed| {
        let lease = ms(1200);
        let mut cl = Cluster::with_config(seed, with_reach(lease));
        let ids = cl.add_nodes(5);
        let start = cl.now();
        // Every node pings the others one renewal interval (lease / 3) after start.
        assert!(cl.run_until(
            |cl| ids.iter().all(|&i| ids
                .iter()
                .all(|&j| i == j || cl.engine(i).unwrap().is_alive(j))),
            lease,
        ));
        assert!(
            cl.now() - start <= lease / 3 + ms(30),
            "all alive after {:?}",
            cl.now() - start
        );
        cl.run_for(ms(2000));
        let victim = NodeId(5);
        let crashed = cl.now();
        cl.crash(victim);
        cl.run_for(lease * 2);
        for &id in &ids[..4] {
            let dead = peer_event(&cl, id, victim, false, crashed).expect("reported dead");
            assert!(
                dead > crashed && dead - crashed <= lease + ms(10),
                "{id}: {:?}",
                dead - crashed
            );
            // No survivor is taken for dead.
            for &other in &ids[..4] {
                assert!(
                    peer_event(&cl, id, other, false, start).is_none(),
                    "{id} lost {other}"
                );
                assert!(id == other || cl.engine(id).unwrap().is_alive(other));
            }
        }
    });
}

#[test]
fn events_about_a_peer_come_in_causal_order() {
    each_seed("reach_order", |seed| {
        let lease = ms(300);
        let mut cl = Cluster::with_config(seed, with_reach(lease));
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        assert!(cl.run_until(|cl| cl.engine(a).unwrap().is_alive(b), lease));
        // Let the address events settle, then stop b.
        cl.run_for(lease);
        cl.crash(b);
        assert!(cl.run_until(|cl| !cl.engine(a).unwrap().is_alive(b), lease * 2));
        cl.run_for(lease);
        let log: Vec<PeerEvent> = cl
            .events(a)
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Peer(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        let pos = |f: &dyn Fn(&PeerEvent) -> bool| log.iter().position(f);
        let found = pos(&|e| matches!(e, PeerEvent::AddressFound { peer, .. } if *peer == b));
        let reachable =
            pos(&|e| matches!(e, PeerEvent::AddressReachable { peer, .. } if *peer == b));
        let alive = pos(&|e| matches!(e, PeerEvent::PeerAlive { peer, .. } if *peer == b));
        let unreachable =
            pos(&|e| matches!(e, PeerEvent::AddressUnreachable { peer, .. } if *peer == b));
        let dead = pos(&|e| matches!(e, PeerEvent::PeerDead { peer } if *peer == b));
        let (Some(found), Some(reachable), Some(alive), Some(unreachable), Some(dead)) =
            (found, reachable, alive, unreachable, dead)
        else {
            panic!("an event is missing: {log:?}");
        };
        assert!(found < dead, "{log:?}");
        assert!(reachable < alive && alive < dead, "{log:?}");
        assert!(reachable < unreachable && unreachable < dead, "{log:?}");
        let deaths = log
            .iter()
            .filter(|e| matches!(e, PeerEvent::PeerDead { peer } if *peer == b))
            .count();
        assert_eq!(deaths, 1, "{log:?}");
    });
}

#[test]
fn a_restarted_peer_is_alive_again_as_a_new_incarnation() {
    each_seed("reach_incarnation", |seed| {
        let lease = ms(300);
        let mut cl = Cluster::with_config(seed, with_reach(lease));
        let ids = cl.add_nodes(3);
        let victim = ids[2];
        let all_alive = |cl: &Cluster| {
            ids.iter().all(|&i| {
                ids.iter()
                    .all(|&j| i == j || cl.engine(i).unwrap().is_alive(j))
            })
        };
        assert!(cl.run_until(all_alive, lease));
        let incarnation = |cl: &Cluster, at: NodeId| {
            let peers = cl.engine(at).unwrap().peers();
            peers
                .iter()
                .find(|p| p.id == victim)
                .and_then(|p| p.incarnation)
        };
        let old = incarnation(&cl, ids[0]).expect("an incarnation seen");
        let crashed = cl.now();
        cl.crash(victim);
        cl.run_for(lease * 2);
        for &id in &ids[..2] {
            assert!(
                peer_event(&cl, id, victim, false, crashed).is_some(),
                "{id}"
            );
            assert!(!cl.engine(id).unwrap().is_alive(victim));
        }
        let restarted = cl.now();
        cl.restart(victim);
        assert!(cl.run_until(all_alive, lease * 2));
        for &id in &ids[..2] {
            assert!(
                peer_event(&cl, id, victim, true, restarted).is_some(),
                "{id}"
            );
            let new = incarnation(&cl, id).unwrap();
            assert!(new > old, "{id}: incarnation {old} -> {new}");
        }
    });
}

#[test]
fn a_message_to_a_dead_peer_waits_for_the_queue_deadline() {
    each_seed("reach_dead_queue", |seed| {
        let lease = ms(300);
        let mut config = with_reach(lease);
        config.queue = QueueLimits::default().with_deadline(ms(2000));
        let mut cl = Cluster::with_config(seed, config);
        let [a, b, c] = cl.add_nodes(3)[..] else {
            unreachable!()
        };
        assert!(cl.run_until(|cl| cl.engine(a).unwrap().is_alive(c), lease));
        cl.crash(c);
        assert!(cl.run_until(|cl| !cl.engine(a).unwrap().is_alive(c), lease * 2));
        assert!(cl.engine(a).unwrap().is_alive(b));
        // Dead, but a plain send stays allowed: queued, then dropped at the deadline.
        let sent_at = cl.now();
        cl.with(a, |e, now| e.send(now, c, b"later", Delivery::Reliable))
            .unwrap()
            .unwrap();
        cl.run_for(ms(1999));
        let st = cl.engine(a).unwrap().peer_stats(c).unwrap();
        assert_eq!((st.queued, st.dropped_stale), (1, 0), "{st:?}");
        cl.run_for(ms(2));
        let st = cl.engine(a).unwrap().peer_stats(c).unwrap();
        assert_eq!((st.queued, st.dropped_stale), (0, 1), "{st:?}");
        assert!(cl.now() - sent_at <= ms(2001));
    });
}

#[test]
fn alive_only_sends_go_to_live_peers_and_refuse_dead_ones_at_once() {
    each_seed("reach_send_alive", |seed| {
        let lease = ms(300);
        let mut cl = Cluster::with_config(seed, with_reach(lease));
        let [a, b, c] = cl.add_nodes(3)[..] else {
            unreachable!()
        };
        // Before the first ping, nobody is known alive: refused, nothing queued.
        let early = cl.with(a, |e, now| {
            e.send_alive(now, b, b"early", Delivery::Reliable)
        });
        assert_eq!(early, Some(Err(SendError::NotAlive(b))));
        assert!(cl.run_until(
            |cl| cl.engine(a).unwrap().is_alive(b) && cl.engine(a).unwrap().is_alive(c),
            lease
        ));
        for to in [b, c, a] {
            cl.with(a, |e, now| {
                e.send_alive(now, to, b"alive", Delivery::Reliable)
            })
            .unwrap()
            .unwrap();
        }
        cl.crash(c);
        assert!(cl.run_until(|cl| !cl.engine(a).unwrap().is_alive(c), lease * 2));
        let queued_before = cl.engine(a).unwrap().peer_stats(c).unwrap().enqueued;
        let dead = cl.with(a, |e, now| {
            e.send_alive(now, c, b"late", Delivery::Reliable)
        });
        assert_eq!(dead, Some(Err(SendError::NotAlive(c))));
        assert_eq!(
            cl.engine(a).unwrap().peer_stats(c).unwrap().enqueued,
            queued_before,
            "nothing queued for the dead peer"
        );
        let unknown = cl.with(a, |e, now| {
            e.send_alive(now, NodeId(99), b"x", Delivery::Reliable)
        });
        assert_eq!(unknown, Some(Err(SendError::UnknownNode(NodeId(99)))));
        cl.run_for(ms(50));
        assert_eq!(from(&cl, b, a), [bytes::Bytes::from_static(b"alive")]);
        assert!(from(&cl, a, a).contains(&bytes::Bytes::from_static(b"alive")));
    });
}

#[test]
fn without_reachability_no_control_frame_is_sent() {
    each_seed("reach_off", |seed| {
        let mut cl = Cluster::with_config(seed, quick());
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        cl.with(a, |e, now| e.send(now, b, b"plain", Delivery::Reliable))
            .unwrap()
            .unwrap();
        cl.run_for(ms(3000));
        assert_eq!(from(&cl, b, a), [bytes::Bytes::from_static(b"plain")]);
        let net = cl.stats();
        assert_eq!(
            (net.frames, net.datagrams),
            (1, 0),
            "only the message: {net:?}"
        );
        for (x, y) in [(a, b), (b, a)] {
            let e = cl.engine(x).unwrap();
            assert!(e.peers().is_empty() && e.reachability().is_none());
            assert!(!e.is_alive(y));
            assert_eq!(
                cl.with(x, |e, now| e.send_alive(now, y, b"x", Delivery::Reliable)),
                Some(Err(SendError::NotAlive(y)))
            );
            assert!(cl
                .events(x)
                .iter()
                .all(|(_, ev)| !matches!(ev, Event::Peer(_))));
        }
    });
}
