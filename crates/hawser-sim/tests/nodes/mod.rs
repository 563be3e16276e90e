//! Helpers of the whole-node scenarios (`node_*.rs`): seeds, quick settings, readers.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::node::{EngineConfig, Event, NodeId};
use hawser_proto::reach::{self, LeasePolicy, PeerEvent};
use hawser_sim::cluster::Cluster;

/// The seeds a scenario runs with: `HAWSER_SEED` alone when set (to replay), else eight
/// seeds derived from the default one. Each is printed.
pub fn seeds() -> Vec<u64> {
    match std::env::var(hawser_sim::SEED_ENV) {
        Ok(_) => vec![hawser_sim::seed()],
        Err(_) => (0..8)
            .map(|k| hawser_sim::DEFAULT_SEED.wrapping_add(k * 0x9E37))
            .collect(),
    }
}

/// Runs `scenario` once per seed, printing each seed first.
pub fn each_seed(name: &str, mut scenario: impl FnMut(u64)) {
    for seed in seeds() {
        println!("{name}: {}={seed}", hawser_sim::SEED_ENV);
        scenario(seed);
    }
}

/// Settings with short timers: connect timeout 300 ms, back-off 100..800 ms, and no
/// reachability (its traffic is left out of scenarios that count dials).
pub fn quick() -> EngineConfig {
    let mut c = EngineConfig::default();
    c.connect_timeout = ms(300);
    c.backoff_initial = ms(100);
    c.backoff_max = ms(800);
    c.reach = None;
    c
}

/// [`quick`] with reachability: a fixed lease of `lease`, renewed every third.
pub fn with_reach(lease: Duration) -> EngineConfig {
    let mut c = quick();
    let mut r = reach::Config::default();
    r.lease = LeasePolicy::Fixed(lease);
    r.reachable_for = lease * 2;
    c.reach = Some(r);
    c
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The payloads `to` received from `from`, in order.
pub fn from(cl: &Cluster, to: NodeId, from: NodeId) -> Vec<Bytes> {
    cl.messages(to)
        .into_iter()
        .filter(|(f, _)| *f == from)
        .map(|(_, p)| p)
        .collect()
}

/// When `at` reported `event` about `peer` (`PeerDead` or `PeerAlive`), after `since`.
pub fn peer_event(
    cl: &Cluster,
    at: NodeId,
    peer: NodeId,
    alive: bool,
    since: Instant,
) -> Option<Instant> {
    cl.events(at).iter().find_map(|(t, e)| {
        let hit = match e {
            Event::Peer(PeerEvent::PeerAlive { peer: p, .. }) => alive && *p == peer,
            Event::Peer(PeerEvent::PeerDead { peer: p }) => !alive && *p == peer,
            _ => false,
        };
        (hit && *t >= since).then_some(*t)
    })
}

/// `n` payloads `"{tag}{i}"`.
pub fn payloads(tag: &str, n: usize) -> Vec<Bytes> {
    (0..n).map(|i| Bytes::from(format!("{tag}{i}"))).collect()
}
