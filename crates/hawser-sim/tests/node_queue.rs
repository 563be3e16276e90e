//! A destination that is down: its queue fills (typed refusal, counted), tells when there is
//! room again, and drops what outlives the deadline; restarted, it gets what is younger.

mod nodes;

use hawser_proto::node::engine::SendError;
use hawser_proto::node::{Delivery, Event, QueueLimits};
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, from, ms, payloads, quick};

#[test]
fn a_full_queue_refuses_then_drains_to_the_restarted_peer() {
    each_seed("queue_full", |seed| {
        let mut config = quick();
        config.queue = QueueLimits::default()
            .with_max_messages(8)
            .with_deadline(ms(5000));
        let mut cl = Cluster::with_config(seed, config);
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        cl.crash(b);
        let msgs = payloads("m", 10);
        let results: Vec<_> = msgs
            .iter()
            .map(|m| {
                cl.with(a, |e, now| e.send(now, b, m, Delivery::Reliable))
                    .unwrap()
            })
            .collect();
        assert!(results[..8].iter().all(Result::is_ok));
        assert_eq!(
            results[8..],
            [Err(SendError::QueueFull(b)), Err(SendError::QueueFull(b))]
        );
        let st = cl.engine(a).unwrap().peer_stats(b).unwrap();
        assert_eq!((st.enqueued, st.dropped_full, st.queued), (8, 2, 8));
        cl.run_for(ms(1000));
        cl.restart(b);
        assert!(cl.run_until(|cl| from(cl, b, a).len() == 8, ms(2000)));
        assert_eq!(from(&cl, b, a), msgs[..8]);
        let rooms = cl
            .events(a)
            .iter()
            .filter(|(_, e)| *e == Event::Room { peer: b })
            .count();
        assert_eq!(rooms, 1, "one Room once the queue drained");
        let st = cl.engine(a).unwrap().peer_stats(b).unwrap();
        assert_eq!((st.sent, st.queued, st.dropped_stale), (8, 0, 0));
    });
}

#[test]
fn messages_older_than_the_deadline_are_dropped_and_counted() {
    each_seed("stale", |seed| {
        let mut config = quick();
        config.queue = QueueLimits::default().with_deadline(ms(1000));
        let mut cl = Cluster::with_config(seed, config);
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        cl.crash(b);
        let sent_at = cl.now();
        for m in payloads("old", 4) {
            cl.with(a, |e, now| e.send(now, b, &m, Delivery::Reliable))
                .unwrap()
                .unwrap();
        }
        cl.run_for(ms(999));
        assert_eq!(
            cl.engine(a).unwrap().peer_stats(b).unwrap().dropped_stale,
            0
        );
        cl.run_for(ms(2));
        // Dropped by the timer right after the deadline, not at the next write.
        let st = cl.engine(a).unwrap().peer_stats(b).unwrap();
        assert_eq!((st.dropped_stale, st.queued), (4, 0));
        assert!(cl.now() - sent_at <= ms(1001));
        cl.restart(b);
        cl.with(a, |e, now| e.send(now, b, b"fresh", Delivery::Reliable))
            .unwrap()
            .unwrap();
        assert!(cl.run_until(|cl| !from(cl, b, a).is_empty(), ms(2000)));
        cl.run_for(ms(100));
        assert_eq!(from(&cl, b, a), [bytes::Bytes::from_static(b"fresh")]);
    });
}

#[test]
fn a_restarted_peer_gets_only_what_waited_less_than_the_deadline() {
    each_seed("restart_deadline", |seed| {
        let mut config = quick();
        config.queue = QueueLimits::default().with_deadline(ms(1000));
        let mut cl = Cluster::with_config(seed, config);
        let [a, b, c] = cl.add_nodes(3)[..] else {
            unreachable!()
        };
        // a has a connection to b before b stops; c never had one.
        cl.with(a, |e, now| e.send(now, b, b"before", Delivery::Reliable))
            .unwrap()
            .unwrap();
        assert!(cl.run_until(|cl| from(cl, b, a).len() == 1, ms(100)));
        cl.crash(b);
        cl.run_for(ms(150));
        let send = |cl: &mut Cluster, tag: &str| {
            for m in payloads(tag, 3) {
                for sender in [a, c] {
                    // Never waits: b is down, and the call returns at once.
                    cl.with(sender, |e, now| e.send(now, b, &m, Delivery::Reliable))
                        .unwrap()
                        .unwrap();
                }
            }
        };
        send(&mut cl, "old ");
        // The 1 s deadline passes while b is down.
        cl.run_for(ms(1300));
        send(&mut cl, "new ");
        cl.restart(b);
        let all = |cl: &Cluster| from(cl, b, a).len() == 4 && from(cl, b, c).len() == 3;
        assert!(cl.run_until(all, ms(2000)));
        cl.run_for(ms(200));
        let mut want = vec![bytes::Bytes::from_static(b"before")];
        want.extend(payloads("new ", 3));
        assert_eq!(from(&cl, b, a), want, "nothing old arrived");
        assert_eq!(from(&cl, b, c), payloads("new ", 3));
        for sender in [a, c] {
            let st = cl.engine(sender).unwrap().peer_stats(b).unwrap();
            assert_eq!((st.dropped_stale, st.queued), (3, 0), "{sender}: {st:?}");
            assert!(st.connect_failures >= 1, "{sender}: {st:?}");
        }
        // a had a connection before the restart: it counts a reconnect; c does not.
        let reconnects = |id| cl.engine(id).unwrap().peer_stats(b).unwrap().reconnects;
        assert_eq!((reconnects(a), reconnects(c)), (1, 0));
    });
}
