//! Presence and the two dimensions of an address, on simulated time: join, crash, partition
//! and heal, out-of-order found/down, reachable-but-not-existing.

mod reach_harness;

use std::time::{Duration, Instant};

use hawser_proto::reach::{Config, PeerEvent};
use hawser_proto::wire::reach::{self as wire, EventBody};
use hawser_sim::{fake_addr, SimNet, Verdict};
use reach_harness::*;

/// How many seeds each test runs on (`hawser_sim::for_each_seed`; `HAWSER_SEEDS` overrides it).
const SEEDS: usize = 8;

const LEASE: Duration = Duration::from_secs(10);

/// Fixed 10 s leases, renewed every 3.3 s; addresses reachable for 5 s after traffic.
fn config() -> Config {
    let mut config = Config::default();
    config.reachable_for = Duration::from_secs(5);
    config
}

fn full_mesh(n: u32) -> Vec<(u32, u32)> {
    (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .collect()
}

/// A–B connected; C joins by connecting to A only. B learns C's address from A's flood (before
/// any traffic with C), connects to it, and everyone ends up seeing everyone directly.
#[test]
fn join_learns_addresses_through_the_flood() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(2, &config(), &[(0, 1)], Duration::from_secs(1));
        let c = ReachNode::new(2, config(), net.now(), true);
        net.add(fake_addr(2), c).expect("fresh");
        // Only A and B dial what they learn: C knows nobody but A, so whatever B learns of C comes
        // through A.
        for i in 0..2 {
            net.with(fake_addr(i), |n: &mut ReachNode, _| n.auto_connect = true)
                .expect("a node");
        }
        let joined = net.now();
        connect(&mut net, 2, 0);
        assert!(net.run_until_cond(Duration::from_secs(5), |net| all_see_all(net, &[0, 1, 2])));
        eprintln!("all see all {:?} after the join", net.now() - joined);
        // B's first news of C was the flooded address, not traffic with C.
        let about_c = node(&net, 1).about(id(2));
        let found = PeerEvent::AddressFound {
            peer: id(2),
            addr: fake_addr(2),
        };
        assert_eq!(
            about_c.first().map(|(_, e)| e),
            Some(&PeerEvent::PeerAlive {
                peer: id(2),
                until: about_c[0].0 + LEASE
            })
        );
        assert_eq!(about_c.get(1).map(|(_, e)| e), Some(&found));
        assert!(
            node(&net, 1).engine.neighbours().any(|(p, _)| p == id(2)),
            "B connected to C"
        );
        let reachable = node(&net, 1)
            .about(id(2))
            .into_iter()
            .find(|(_, e)| matches!(e, PeerEvent::AddressReachable { .. }));
        assert!(
            reachable.is_some_and(|(t, _)| t > about_c[1].0),
            "reachable only after B dialled C"
        );
        // C learned B too (B's ticktock came through A, and B said Hello).
        assert!(sees(&net, 2, 1));
    });
}

/// A node crashes (removed from the net): every other node declares it dead within one lease
/// of the crash, not before its last renewal lapses, and its address becomes unreachable.
#[test]
fn crash_is_detected_within_one_lease() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(4, &config(), &full_mesh(4), Duration::from_secs(30));
        assert!(all_see_all(&net, &[0, 1, 2, 3]));
        let last_tick = node(&net, 3)
            .ticktocks
            .last()
            .map(|t| t.0)
            .expect("D ticked");
        let crash = net.now();
        net.remove::<ReachNode>(fake_addr(3)).expect("D");
        let dead = PeerEvent::PeerDead { peer: id(3) };
        assert!(net.run_until_cond(LEASE * 2, |net| (0..3)
            .all(|i| node(net, i).when(&dead).is_some())));
        for i in 0..3 {
            let at = node(&net, i).when(&dead).expect("dead");
            assert!(
                at <= crash + LEASE,
                "node {i} detected after {:?}",
                at - crash
            );
            assert!(at >= last_tick + LEASE, "node {i} gave up early");
            let down = PeerEvent::AddressUnreachable {
                peer: id(3),
                addr: fake_addr(3),
            };
            assert!(node(&net, i)
                .when(&down)
                .is_some_and(|t| t <= crash + Duration::from_secs(5)));
            // Existence is the other dimension: D never dismissed its address.
            let p = node(&net, i).engine.peer(id(3)).expect("known");
            assert!(!p.alive && p.addresses[0].exists && !p.addresses[0].reachable);
        }
        assert!(all_see_all(&net, &[0, 1, 2]), "the others stay alive");
    });
}

/// {A, B} and {C, D} are cut apart: each side declares the other dead within a lease, with
/// unreachable (still existing) addresses; after the heal both come back within a renewal.
#[test]
fn partition_and_heal() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let all = [0, 1, 2, 3];
        let mut net = cluster(4, &config(), &full_mesh(4), Duration::from_secs(5));
        assert!(all_see_all(&net, &all));
        let cut = net.now();
        for (a, b) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
            net.partition(fake_addr(a), fake_addr(b));
        }
        let apart = |net: &mut SimNet| {
            [(0, 2), (0, 3), (1, 2), (1, 3), (2, 0), (3, 1)]
                .iter()
                .all(|&(i, j)| !node(net, i).engine.peer(id(j)).expect("known").alive)
        };
        assert!(net.run_until_cond(LEASE + Duration::from_millis(10), apart));
        eprintln!("partition seen after {:?}", net.now() - cut);
        let p = node(&net, 0).engine.peer(id(2)).expect("known");
        assert!(p.addresses[0].exists && !p.addresses[0].reachable);
        assert!(all_see_all(&net, &[0, 1]) && all_see_all(&net, &[2, 3]));
        let healed = net.now();
        net.heal_all();
        assert!(
            net.run_until_cond(LEASE / 3 + Duration::from_millis(10), |net| all_see_all(
                net, &all
            ))
        );
        eprintln!("heal seen after {:?}", net.now() - healed);
    });
}

/// A isolated for a while (SimNet `isolate`), then back: the others see it die and return.
#[test]
fn isolation_and_rejoin() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(3, &config(), &full_mesh(3), Duration::from_secs(5));
        net.isolate(fake_addr(0));
        net.run_for(LEASE + Duration::from_secs(1));
        assert!(!node(&net, 1).engine.is_alive(id(0)) && !node(&net, 0).engine.is_alive(id(1)));
        net.rejoin(fake_addr(0));
        assert!(net.run_until_cond(LEASE, |net| all_see_all(net, &[0, 1, 2])));
        let alive = node(&net, 1)
            .about(id(0))
            .into_iter()
            .filter(|(_, e)| matches!(e, PeerEvent::PeerAlive { .. }));
        assert_eq!(alive.count(), 2, "alive, dead, alive again");
    });
}

/// A's `found` of a second address is sent before its `down` but, lost on the direct link, it
/// reaches B later through C's slower path: B applies down then found, and the address stays
/// down because both stamps are kept and compared. A later found brings it back.
#[test]
fn found_overtaken_by_down_resolves_by_stamps() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let extra = fake_addr(100);
        let mut net = cluster(3, &config(), &full_mesh(3), Duration::from_secs(1));
        net.set_link_latency(fake_addr(2), fake_addr(1), Duration::from_millis(50));
        net.set_hook(
            fake_addr(0),
            fake_addr(1),
            Some(Box::new(|d: &mut Vec<u8>| {
                match d.get(9..).map(wire::decode) {
                    Some(Ok(e)) if matches!(e.body, EventBody::Found(_)) => Verdict::Drop,
                    _ => Verdict::Pass,
                }
            })),
        );
        command(&mut net, 0, |e, now| e.add_local_address(now, extra)).expect("room");
        net.run_for(Duration::from_millis(2));
        command(&mut net, 0, |e, now| e.remove_local_address(now, extra)).expect("ours");
        net.run_for(Duration::from_millis(100));
        let b = node(&net, 1);
        let found_at = b.when(&PeerEvent::AddressFound {
            peer: id(0),
            addr: extra,
        });
        assert_eq!(found_at, None, "B never saw the extra address exist");
        let p = b.engine.peer(id(0)).expect("known");
        let a = p
            .addresses
            .iter()
            .find(|a| a.addr == extra)
            .expect("tracked");
        assert!(!a.exists && a.last_found < a.last_dismiss);
        assert!(
            a.last_found.is_some(),
            "the late found was applied (its stamp kept)"
        );
        // C, which got them in order, agrees; a new found wins everywhere.
        let c = node(&net, 2).engine.peer(id(0)).expect("known");
        assert!(c.addresses.iter().any(|a| a.addr == extra && !a.exists));
        net.set_hook(fake_addr(0), fake_addr(1), None);
        command(&mut net, 0, |e, now| e.add_local_address(now, extra)).expect("room");
        net.run_for(Duration::from_millis(100));
        assert!(node(&net, 1)
            .when(&PeerEvent::AddressFound {
                peer: id(0),
                addr: extra
            })
            .is_some());
    });
}

/// A newly joined C connects to A: A sees C's address reachable (the handshake) before C's
/// announcement of it has arrived, so reachable-but-not-existing; a moment later it exists.
#[test]
fn reachable_before_it_exists() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(1, &config(), &[], Duration::from_secs(1));
        net.add(fake_addr(2), ReachNode::new(2, config(), net.now(), true))
            .expect("fresh");
        connect(&mut net, 2, 0);
        let reachable = |net: &mut SimNet| {
            let p = node(net, 0).engine.peer(id(2));
            p.is_some_and(|p| {
                p.addresses
                    .iter()
                    .any(|a| a.addr == fake_addr(2) && a.reachable)
            })
        };
        assert!(net.run_until_cond(Duration::from_secs(1), reachable));
        let p = node(&net, 0).engine.peer(id(2)).expect("known");
        assert!(!p.alive && !p.addresses[0].exists && p.addresses[0].last_found.is_none());
        let since = net.now();
        assert!(net.run_until_cond(Duration::from_secs(1), |net| sees(net, 0, 2)));
        eprintln!("reachable, then existing {:?} later", net.now() - since);
    });
}

/// A node that never announces the address it connects from (think NAT): reachable from A for
/// as long as it talks, never existing.
#[test]
fn reachable_but_never_announced() {
    hawser_sim::for_each_seed(SEEDS, |_| {
        let mut net = cluster(1, &config(), &[], Duration::from_secs(1));
        net.add(fake_addr(2), ReachNode::new(2, config(), net.now(), false))
            .expect("fresh");
        connect(&mut net, 2, 0);
        net.run_for(Duration::from_secs(30));
        let p = node(&net, 0).engine.peer(id(2)).expect("known");
        assert!(p.alive && p.addresses.len() == 1);
        assert!(p.addresses[0].reachable && !p.addresses[0].exists);
        let t: Instant = p.addresses[0].last_reachable.expect("traffic");
        assert!(
            net.now() - t < Duration::from_secs(4),
            "renewed by C's ticktocks"
        );
    });
}
