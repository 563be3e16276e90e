//! Flooding on a line, a ring and a 20-node random mesh: every event applied exactly once per
//! node, at most 2 × edges copies per event; the hop limit; bounds under an event storm.

mod reach_harness;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hawser_proto::reach::{Config, EventId, NodeId};
use hawser_sim::{fake_addr, SimNet};
use reach_harness::*;

/// How many seeds each test runs on (`hawser_sim::for_each_seed`; `HAWSER_SEEDS` overrides it).
const SEEDS: usize = 8;
/// The same for the event storms, which take longer each.
const STORM_SEEDS: usize = 2;

/// Every node publishes one app event; returns their ids.
fn publish_all(net: &mut SimNet, n: u32) -> Vec<EventId> {
    (0..n)
        .map(|i| {
            let payload = Bytes::from(format!("from {i}"));
            command(net, i, |e, now| e.publish(now, 42, payload)).expect("small")
        })
        .collect()
}

/// Checks exactly-once delivery of `published` and the 2 × edges bound for every event seen.
fn check_flood(net: &SimNet, n: u32, edges: usize, published: &[EventId]) {
    for j in 0..n {
        let mut got: BTreeMap<EventId, u32> = BTreeMap::new();
        for a in &node(net, j).apps {
            *got.entry(a.id).or_default() += 1;
        }
        for (i, id) in published.iter().enumerate() {
            let want = u32::from(i as u32 != j);
            assert_eq!(
                got.get(id).copied().unwrap_or(0),
                want,
                "node {j}, event of node {i}"
            );
        }
        assert_eq!(got.len(), n as usize - 1, "node {j}: no other app events");
    }
    let mut copies: BTreeMap<EventId, u32> = BTreeMap::new();
    for j in 0..n {
        for (id, c) in &node(net, j).copies {
            *copies.entry(*id).or_default() += c;
        }
    }
    for id in published {
        assert!(copies.contains_key(id), "{id:?} was sent");
    }
    // Every event, presence included, crossed each edge at most twice.
    for (id, c) in copies {
        assert!(
            c as usize <= 2 * edges,
            "{id:?}: {c} copies for {edges} edges"
        );
    }
}

fn flood_scenario(n: u32, edges: Vec<(u32, u32)>) {
    let mut net = cluster(n, &Config::default(), &edges, Duration::from_secs(1));
    let all: Vec<u32> = (0..n).collect();
    assert!(
        net.run_until_cond(Duration::from_secs(10), |net| {
            all.iter().all(|&i| {
                all.iter()
                    .all(|&j| i == j || node(net, i).engine.is_alive(id(j)))
            })
        }),
        "every node learns every other through the flood"
    );
    let published = publish_all(&mut net, n);
    net.run_for(Duration::from_secs(1));
    check_flood(&net, n, edges.len(), &published);
    let dup: u64 = all
        .iter()
        .map(|&i| node(&net, i).engine.stats().duplicates)
        .sum();
    assert_eq!(net.stats().stalls, 0);
    eprintln!("{n} nodes, {} edges: {dup} duplicates dropped", edges.len());
}

#[test]
fn flood_on_a_line() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        flood_scenario(10, line(10));
    });
}

#[test]
fn flood_on_a_ring() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        flood_scenario(12, ring(12));
    });
}

#[test]
fn flood_on_a_20_node_random_mesh() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let edges = random_mesh(20, 25, hawser_sim::seed());
        flood_scenario(20, edges);
    });
}

#[test]
fn hop_limit_bounds_how_far_an_event_goes() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut config = Config::default();
        config.max_hops = 4;
        let mut net = cluster(10, &config, &line(10), Duration::from_secs(1));
        let ev = command(&mut net, 0, |e, now| e.publish(now, 1, Bytes::new())).expect("small");
        net.run_for(Duration::from_secs(1));
        for j in 1..10 {
            let got = node(&net, j).apps.iter().filter(|a| a.id == ev).count();
            assert_eq!(got, usize::from(j <= 4), "node {j} is {j} hops away");
        }
        // So on a long line, liveness only reaches max_hops away.
        assert!(node(&net, 4).engine.is_alive(id(0)) && !node(&net, 5).engine.is_alive(id(0)));
    });
}

/// A storm: every node of a 10-node mesh publishes 100 events in 100 ms, with a seen-cache of
/// 8 ids, far too small to hold them. Every bound holds at every step, the hop limit ends the
/// duplicates the cache let through, and the net goes quiet again.
#[test]
fn bounds_hold_under_an_event_storm() {
    hawser_sim::for_each_seed(STORM_SEEDS, |_| {
        let mut config = Config::default();
        config.max_seen = 8;
        config.max_hops = 4;
        config.max_peers = 6;
        config.max_pending_events = 128;
        config.max_outgoing = 512;
        let n = 10;
        let edges = random_mesh(n, 10, hawser_sim::seed() ^ 1);
        let mut net = cluster(n, &config, &edges, Duration::from_secs(1));
        let check = |net: &mut SimNet| {
            for i in 0..n {
                let e = &node(net, i).engine;
                assert!(
                    e.seen_len() <= 8,
                    "seen-cache of node {i}: {}",
                    e.seen_len()
                );
                assert!(e.peer_count() <= 6, "peers of node {i}: {}", e.peer_count());
                assert!(e.max_addresses_held() <= 16);
                let (t, p, a) = e.pending();
                assert!(t <= 512 && p <= 128 && a <= 128);
            }
            false
        };
        for round in 0..100u32 {
            for i in 0..n {
                let payload = Bytes::from(vec![round as u8; 64]);
                command(&mut net, i, |e, now| e.publish(now, 7, payload)).expect("small");
            }
            net.run_until_cond(Duration::from_millis(1), check);
        }
        net.run_until_cond(Duration::from_secs(2), check);
        let before = net.stats().sent;
        net.run_for(Duration::from_secs(1));
        // Quiet again: only presence traffic (10 nodes, a ticktock every 3.3 s, ≤ 2 × edges each).
        assert!(
            net.stats().sent - before < 2 * edges.len() as u64 * 10,
            "storm over"
        );
        eprintln!("storm: {:?}", net.stats());
        let evicted: u64 = (0..n)
            .map(|i| node(&net, i).engine.stats().seen_evicted)
            .sum();
        let limited: u64 = (0..n)
            .map(|i| node(&net, i).engine.stats().hop_limited)
            .sum();
        assert!(
            evicted > 0 && limited > 0,
            "cache evictions {evicted}, hop-limited {limited}"
        );
        assert_eq!(net.stats().stalls, 0);
    });
}

/// The same storm with a seen-cache large enough: still exactly once everywhere.
#[test]
fn storm_with_a_big_enough_cache_is_exactly_once() {
    hawser_sim::for_each_seed(STORM_SEEDS, |_| {
        let n = 10;
        let edges = random_mesh(n, 10, hawser_sim::seed() ^ 2);
        let mut net = cluster(n, &Config::default(), &edges, Duration::from_secs(1));
        let mut published = Vec::new();
        for _ in 0..50 {
            published.extend(publish_all(&mut net, n));
            net.run_for(Duration::from_millis(1));
        }
        net.run_for(Duration::from_secs(1));
        for j in 0..n {
            let r = node(&net, j);
            assert_eq!(r.apps.len(), 50 * (n as usize - 1), "node {j}");
            let mut ids: Vec<EventId> = r.apps.iter().map(|a| a.id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), r.apps.len(), "node {j}: no duplicates");
        }
    });
}

/// Forged events from a thousand origins, injected at one node: its table stays bounded.
#[test]
fn forged_origins_cannot_grow_the_table() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut config = Config::default();
        config.max_peers = 16;
        let mut net = cluster(2, &config, &[(0, 1)], Duration::from_secs(1));
        for k in 0..1000u64 {
            let event = hawser_proto::wire::reach::Event {
                origin: 1000 + k,
                stamp: stamp(1, 1),
                hops: 0,
                body: hawser_proto::wire::reach::EventBody::Found(fake_addr(5000 + k as u32)),
            };
            let mut d = vec![3u8];
            d.extend_from_slice(&id(1).0.to_be_bytes());
            d.extend_from_slice(&hawser_proto::wire::reach::to_bytes(&event).expect("valid"));
            net.inject(fake_addr(1), fake_addr(0), d.into());
            net.run_for(Duration::from_micros(100));
            assert!(node(&net, 0).engine.peer_count() <= 16);
        }
        let s = node(&net, 0).engine.stats();
        assert!(s.table_refused + s.table_evicted > 0);
        // The real neighbour is still known: live entries are never evicted.
        assert!(node(&net, 0).engine.is_alive(NodeId(2)));
    });
}
