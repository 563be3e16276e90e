//! Reconnecting to a node that is down: the dial times on the simulated clock follow the
//! back-off schedule exactly.

mod nodes;

use hawser_proto::node::{Backoff, Delivery, QueueLimits};
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, from, ms, quick};

#[test]
fn dials_to_a_down_node_follow_the_backoff_schedule() {
    each_seed("backoff", |seed| {
        let mut config = quick();
        config.queue = QueueLimits::default().with_deadline(ms(60_000));
        let mut cl = Cluster::with_config(seed, config.clone());
        let [a, b] = cl.add_nodes(2)[..] else {
            unreachable!()
        };
        cl.crash(b);
        let t0 = cl.now();
        cl.with(a, |e, now| e.send(now, b, b"x", Delivery::Reliable))
            .unwrap()
            .unwrap();
        cl.run_for(ms(5000));
        let dials: Vec<_> = cl
            .dials()
            .iter()
            .filter(|d| d.from == a && d.to == b)
            .map(|d| d.at)
            .collect();
        // Each refusal comes back after a round trip, then the back-off delay (100, 200,
        // 400, 800, 800... ms): the whole schedule within the 5 s, and nothing else.
        let (rtt, end) = (cl.latency(a, b) * 2, t0 + ms(5000));
        let mut backoff = Backoff::new(config.backoff_initial, config.backoff_max);
        let mut want = vec![t0];
        loop {
            let next = *want.last().unwrap() + rtt + backoff.next_delay();
            if next > end {
                break;
            }
            want.push(next);
        }
        assert_eq!(
            dials,
            want,
            "{:?}",
            dials.iter().map(|t| *t - t0).collect::<Vec<_>>()
        );
        let refused = want.iter().filter(|t| **t + rtt <= end).count() as u64;
        let failures = cl
            .engine(a)
            .unwrap()
            .peer_stats(b)
            .unwrap()
            .connect_failures;
        assert_eq!(failures, refused);
        // Up again: the next scheduled dial connects, and the schedule starts over.
        cl.restart(b);
        assert!(cl.run_until(|cl| from(cl, b, a).len() == 1, ms(1000)));
        assert_eq!(
            cl.engine(a)
                .unwrap()
                .peer_stats(b)
                .unwrap()
                .connect_failures,
            refused
        );
    });
}
