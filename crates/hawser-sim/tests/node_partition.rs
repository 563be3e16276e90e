//! Whole nodes across a partition: what was queued during a short partition is delivered in
//! order after it heals; what outlived the queue deadline is dropped and counted.

mod nodes;

use hawser_proto::node::{Delivery, NodeId, QueueLimits};
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, from, ms, payloads, quick};

fn send_all(cl: &mut Cluster, a: NodeId, b: NodeId, msgs: &[bytes::Bytes], every: u64) {
    for m in msgs {
        cl.with(a, |e, now| e.send(now, b, m, Delivery::Reliable))
            .unwrap()
            .unwrap();
        cl.run_for(ms(every));
    }
}

#[test]
fn queued_messages_cross_a_healed_partition_in_order_and_stale_ones_are_dropped() {
    each_seed("partition", |seed| {
        let mut config = quick();
        config.queue = QueueLimits::default().with_deadline(ms(2000));
        let mut cl = Cluster::with_config(seed, config);
        let [a, b, c] = cl.add_nodes(3)[..] else {
            unreachable!()
        };
        send_all(&mut cl, a, b, &payloads("warm", 1), 100);
        assert_eq!(from(&cl, b, a), payloads("warm", 1));

        // A short partition: ten messages wait, then all arrive, in order, after the heal.
        cl.partition(&[b], &[a, c]);
        let during = payloads("m", 10);
        send_all(&mut cl, a, b, &during, 50);
        cl.run_for(ms(500));
        assert_eq!(from(&cl, b, a).len(), 1, "nothing crosses the partition");
        cl.heal_all();
        let healed = cl.now();
        let all = |cl: &Cluster| from(cl, b, a).len() == 11;
        assert!(cl.run_until(all, ms(2000)));
        let mut want = payloads("warm", 1);
        want.extend(during);
        assert_eq!(from(&cl, b, a), want);
        // At worst: the dial under way is abandoned (300 ms), then one back-off (<= 800 ms),
        // a dial (2 latencies) and the frames (1 latency).
        let took = cl.now() - healed;
        assert!(
            took <= ms(300 + 800 + 3 * 5),
            "delivered {took:?} after the heal"
        );
        assert_eq!(
            cl.engine(a).unwrap().peer_stats(b).unwrap().dropped_stale,
            0
        );

        // A longer one: what waited more than the 2 s deadline is dropped and counted.
        cl.partition(&[b], &[a, c]);
        send_all(&mut cl, a, b, &payloads("old", 5), 10);
        cl.run_for(ms(2500));
        send_all(&mut cl, a, b, &payloads("new", 5), 10);
        cl.heal_all();
        assert!(cl.run_until(|cl| from(cl, b, a).len() == 16, ms(3000)));
        cl.run_for(ms(500));
        assert_eq!(&from(&cl, b, a)[11..], &payloads("new", 5)[..]);
        let st = cl.engine(a).unwrap().peer_stats(b).unwrap();
        assert_eq!((st.dropped_stale, st.sent, st.enqueued), (5, 16, 21));
        assert!(
            st.connect_failures >= 2,
            "dials failed during the partitions"
        );
        // Nothing went to c, and c saw nothing of it.
        assert!(cl.messages(c).is_empty());
    });
}
