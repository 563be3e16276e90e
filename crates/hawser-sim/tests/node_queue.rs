//! A destination that is down: its queue fills (typed refusal, counted), tells when there is
//! room again, and drops what outlives the deadline.

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
