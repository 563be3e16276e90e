//! Nine nodes broadcasting to each other at seeded random times: every reliable message is
//! delivered exactly once per receiver, in per-sender order; unreliable ones lose exactly
//! what the fault model drops.

mod nodes;

use std::collections::BTreeMap;

use hawser_proto::node::{Delivery, Group, NodeId};
use hawser_sim::cluster::Cluster;
use hawser_sim::FaultConfig;
use nodes::{each_seed, ms, with_reach};

const ROUNDS: u32 = 25;

/// Every node broadcasts `ROUNDS` messages `"{sender}:{round}"` at random instants.
fn broadcast_all(cl: &mut Cluster, ids: &[NodeId], seed: u64, delivery: Delivery) {
    let mut rng = fastrand::Rng::with_seed(seed);
    for round in 0..ROUNDS {
        for &id in ids {
            let msg = format!("{}:{round}", id.0);
            let report = cl
                .with(id, |e, now| {
                    e.broadcast(now, Group::All, msg.as_bytes(), delivery)
                })
                .unwrap();
            assert!(report.is_all_ok(), "{report:?}");
            assert_eq!(report.outcomes.len(), ids.len() - 1);
            cl.run_for(ms(rng.u64(0..4)));
        }
    }
}

/// Per receiver, per sender: the rounds received, in order.
fn received(cl: &Cluster, ids: &[NodeId]) -> BTreeMap<NodeId, BTreeMap<u64, Vec<u32>>> {
    ids.iter()
        .map(|&to| {
            let mut per: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
            for (from, payload) in cl.messages(to) {
                let text = std::str::from_utf8(&payload).unwrap();
                let (sender, round) = text.split_once(':').unwrap();
                assert_eq!(
                    sender.parse::<u64>().unwrap(),
                    from.0,
                    "sender named in payload"
                );
                per.entry(from.0).or_default().push(round.parse().unwrap());
            }
            (to, per)
        })
        .collect()
}

#[test]
fn nine_nodes_broadcast_reliably_exactly_once_in_order() {
    each_seed("broadcast", |seed| {
        let mut cl = Cluster::with_config(seed, with_reach(ms(1000)));
        let ids = cl.add_nodes(9);
        broadcast_all(&mut cl, &ids, seed, Delivery::Reliable);
        let expected = (ROUNDS as usize) * 8;
        assert!(cl.run_until(
            |cl| ids.iter().all(|&i| cl.messages(i).len() >= expected),
            ms(2000)
        ));
        cl.run_for(ms(500));
        let all: Vec<u32> = (0..ROUNDS).collect();
        for (to, per) in received(&cl, &ids) {
            assert_eq!(per.len(), 8, "{to} hears from every other node");
            assert!(!per.contains_key(&to.0), "no loopback");
            for (from, rounds) in per {
                assert_eq!(rounds, all, "{to} from node#{from}");
            }
        }
        for &i in &ids {
            for &j in &ids {
                if i != j {
                    let st = cl.engine(i).unwrap().peer_stats(j).unwrap();
                    assert_eq!(
                        (st.sent, st.received, st.dropped_stale),
                        (u64::from(ROUNDS), u64::from(ROUNDS), 0)
                    );
                }
            }
        }
    });
}

#[test]
fn unreliable_broadcasts_lose_exactly_what_the_fault_model_drops() {
    each_seed("broadcast_lossy", |seed| {
        let mut config = nodes::quick();
        config.reach = None;
        let mut cl = Cluster::with_config(seed, config);
        let ids = cl.add_nodes(9);
        cl.set_datagram_faults(FaultConfig::dropping(20.0));
        broadcast_all(&mut cl, &ids, seed, Delivery::Unreliable);
        cl.run_for(ms(100));
        let got = received(&cl, &ids);
        let total: usize = got.values().flat_map(|p| p.values()).map(Vec::len).sum();
        let st = cl.stats();
        assert_eq!(st.datagrams, u64::from(ROUNDS) * 9 * 8);
        assert_eq!(total as u64, st.datagrams - st.datagrams_lost);
        // About a fifth lost, seeded: never all, never none.
        assert!(st.datagrams_lost > st.datagrams / 10 && st.datagrams_lost < st.datagrams * 3 / 10);
        for per in got.values() {
            for rounds in per.values() {
                assert!(
                    rounds.windows(2).all(|w| w[0] < w[1]),
                    "no duplicate, no reorder"
                );
            }
        }
    });
}
