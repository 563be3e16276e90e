//! Reachability between whole nodes: every node sees every other alive, and a crash is
//! detected by each survivor within the configured lease.

mod nodes;

use hawser_proto::node::NodeId;
use hawser_sim::cluster::Cluster;
use nodes::{each_seed, ms, peer_event, with_reach};

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
