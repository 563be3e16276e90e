//! A peer that crashes and restarts: reachability reports it dead within its lease, then
//! alive again; connections come back and delivery resumes, queued messages first.

mod nodes;

use hawser_proto::node::{Delivery, QueueLimits};
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, from, ms, payloads, peer_event, with_reach};

#[test]
fn a_restarted_peer_is_reported_down_then_up_and_delivery_resumes() {
    each_seed("restart", |seed| {
        let lease = ms(1000);
        let mut config = with_reach(lease);
        config.queue = QueueLimits::default().with_deadline(ms(4000));
        let mut cl = Cluster::with_config(seed, config);
        let [a, b, c] = cl.add_nodes(3)[..] else {
            unreachable!()
        };
        cl.run_for(ms(1500));
        assert!(cl.engine(a).unwrap().is_alive(b), "warm-up: a sees b alive");
        assert!(cl.engine(c).unwrap().is_alive(b));

        let crashed = cl.now();
        cl.crash(b);
        // Queued while b is down: kept for the new b (the deadline is 4 s).
        for m in payloads("q", 3) {
            cl.with(a, |e, now| e.send(now, b, &m, Delivery::Reliable))
                .unwrap()
                .unwrap();
        }
        cl.run_for(ms(1500));
        for watcher in [a, c] {
            let dead = peer_event(&cl, watcher, b, false, crashed).expect("reported dead");
            // The lease lapses at most one lease after the last ticktock before the crash.
            assert!(
                dead - crashed <= lease + ms(10),
                "{watcher} took {:?}",
                dead - crashed
            );
            assert!(!cl.engine(watcher).unwrap().is_alive(b));
        }

        let restarted = cl.now();
        cl.restart(b);
        let back = |cl: &Cluster| from(cl, b, a).len() == 3;
        assert!(
            cl.run_until(back, ms(2000)),
            "queued messages reach the new b"
        );
        assert_eq!(from(&cl, b, a), payloads("q", 3));
        cl.run_for(ms(1000));
        for watcher in [a, c] {
            let up = peer_event(&cl, watcher, b, true, restarted).expect("reported alive again");
            assert!(
                up - restarted <= lease,
                "{watcher} took {:?}",
                up - restarted
            );
            assert!(cl.engine(watcher).unwrap().is_alive(b));
        }
        cl.with(a, |e, now| e.send(now, b, b"after", Delivery::Reliable))
            .unwrap()
            .unwrap();
        cl.run_for(ms(100));
        assert_eq!(from(&cl, b, a).last().map(|p| &p[..]), Some(&b"after"[..]));
        let st = cl.engine(a).unwrap().peer_stats(b).unwrap();
        assert!(st.reconnects >= 1 && st.connect_failures >= 1, "{st:?}");
    });
}
