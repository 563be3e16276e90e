//! The adaptive lease: a stable peer's renewals fall over time, yet a crash is still detected
//! within the lease then in force; a new or flapping peer is back on short leases.

mod reach_harness;

use std::time::{Duration, Instant};

use hawser_proto::reach::{AdaptiveLease, Config, LeasePolicy, PeerEvent};
use hawser_sim::{fake_addr, SimNet};
use reach_harness::*;

/// How many seeds each test runs on (`hawser_sim::for_each_seed`; `HAWSER_SEEDS` overrides it).
const SEEDS: usize = 8;

const MIN: Duration = Duration::from_secs(2);
const MAX: Duration = Duration::from_secs(60);

/// Leases of `clamp(uptime / 4, 2 s, 60 s)`, renewed every third; reachable for 30 s.
fn config() -> Config {
    let mut config = Config::default();
    config.lease = LeasePolicy::Adaptive(AdaptiveLease::new(MIN, MAX, 4));
    config
}

fn full_mesh(n: u32) -> Vec<(u32, u32)> {
    (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect()
}

/// Ticktocks node `i` originated in `[from, to)` after `origin`.
fn ticks(net: &SimNet, i: u32, origin: Instant, from: u64, to: u64) -> usize {
    let window = origin + Duration::from_secs(from)..origin + Duration::from_secs(to);
    node(net, i)
        .ticktocks
        .iter()
        .filter(|(t, _)| window.contains(t))
        .count()
}

/// Crashes node `i` and checks every node in `others` declares it dead within the lease it
/// last saw announced; returns that lease.
fn crash_and_check(net: &mut SimNet, i: u32, others: &[u32]) -> Duration {
    let in_force = node(net, others[0])
        .engine
        .peer(id(i))
        .and_then(|p| p.lease)
        .expect("ticked");
    let last_tick = node(net, i).ticktocks.last().map(|t| t.0).expect("ticked");
    let crash = net.now();
    net.remove::<ReachNode>(fake_addr(i)).expect("a node");
    let dead = PeerEvent::PeerDead { peer: id(i) };
    assert!(net.run_until_cond(in_force * 2, |net| others
        .iter()
        .all(|&j| node(net, j).when(&dead).is_some())));
    for &j in others {
        let at = node(net, j).when(&dead).expect("dead");
        assert!(
            at <= crash + in_force,
            "node {j}: {:?} > lease {in_force:?}",
            at - crash
        );
        assert!(
            at >= last_tick + in_force,
            "node {j} gave up before the lease lapsed"
        );
    }
    in_force
}

#[test]
fn stable_peer_renews_less_and_its_crash_is_still_detected_within_its_lease() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(5, &config(), &full_mesh(5), Duration::ZERO);
        let origin = net.now();
        net.run_for(Duration::from_secs(600));
        let (first, last) = (
            ticks(&net, 4, origin, 0, 60),
            ticks(&net, 4, origin, 540, 600),
        );
        eprintln!("node 4 ticktocks: {first} in the first minute, {last} in the tenth");
        assert!(
            first >= 4 * last && last >= 3,
            "renewals fall: {first} then {last}"
        );
        let leases: Vec<Duration> = node(&net, 4).ticktocks.iter().map(|t| t.1).collect();
        assert!(
            leases.windows(2).all(|w| w[0] <= w[1]),
            "a stable peer's lease never shrinks"
        );
        assert!(all_see_all(&net, &[0, 1, 2, 3, 4]));
        let in_force = crash_and_check(&mut net, 4, &[0, 1, 2, 3]);
        assert_eq!(in_force, MAX);
    });
}

#[test]
fn new_peer_has_a_short_lease_and_a_fast_detection() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(3, &config(), &full_mesh(3), Duration::from_secs(300));
        net.add(fake_addr(3), ReachNode::new(3, config(), net.now(), true))
            .expect("fresh");
        auto_connect_all(&mut net);
        let joined = net.now();
        connect(&mut net, 3, 0);
        // The stable nodes renew every 20 s, but welcome a new peer with an early ticktock.
        assert!(
            net.run_until_cond(Duration::from_secs(2), |net| all_see_all(
                net,
                &[0, 1, 2, 3]
            ))
        );
        eprintln!("joined among stable peers in {:?}", net.now() - joined);
        net.run_until(joined + Duration::from_secs(5));
        let in_force = crash_and_check(&mut net, 3, &[0, 1, 2]);
        assert_eq!(
            in_force, MIN,
            "five seconds of uptime earn the minimum lease"
        );
        // Meanwhile the stable ones kept their long leases.
        assert_eq!(
            node(&net, 0).engine.peer(id(1)).and_then(|p| p.lease),
            Some(MAX)
        );
    });
}

#[test]
fn flapping_peer_falls_back_to_short_leases() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(3, &config(), &full_mesh(3), Duration::from_secs(300));
        assert_eq!(node(&net, 0).engine.lease_in_force(), MAX);
        net.isolate(fake_addr(0));
        // Longer than reachable_for: node 0 finds itself cut off from everyone.
        net.run_for(Duration::from_secs(31));
        let back = net.now();
        net.rejoin(fake_addr(0));
        net.run_for(Duration::from_secs(1));
        let after: Vec<Duration> = node(&net, 0)
            .ticktocks
            .iter()
            .filter(|t| t.0 >= back)
            .map(|t| t.1)
            .collect();
        assert_eq!(
            after.first(),
            Some(&MIN),
            "uptime restarted at the isolation"
        );
        assert!(net.run_until_cond(Duration::from_secs(61), |net| all_see_all(net, &[0, 1, 2])));
        assert!(
            node(&net, 1).engine.peer(id(0)).and_then(|p| p.lease) < Some(Duration::from_secs(10))
        );
    });
}
