//! A tiny replicated service on simulated nodes: a leader takes increments and forwards each,
//! in order, to its followers by request/response; a follower applies an increment only when
//! it is the next one, so every replica passes through the same values. One follower is cut
//! off by a partition for a second; once healed it catches up, and all replicas converge.
//!
//! Run with `cargo run -p hawser-sim --example replicated_counter` (`HAWSER_SEED=<n>` picks
//! another run).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hawser_proto::node::engine::{RequestError, RequestId};
use hawser_proto::node::{EngineConfig, Event, NodeId};
use hawser_proto::reach::{self, LeasePolicy};
use hawser_proto::wire::rpc::Outcome;
use hawser_sim::cluster::Cluster;

/// The protocol number of "apply increment".
const APPLY: u32 = 1024;
/// Increments the leader takes.
const INCREMENTS: u64 = 40;
/// Refusal code: the increment is not the next one; the message is the follower's position.
const GAP: u32 = 1;

/// The leader: its log, and per follower the next index to send and the request in flight.
struct Leader {
    log: Vec<i64>,
    next: BTreeMap<NodeId, u64>,
    in_flight: BTreeMap<RequestId, NodeId>,
    busy: BTreeMap<NodeId, bool>,
    retry_at: BTreeMap<NodeId, Instant>,
}

/// A follower's replica.
#[derive(Default)]
struct Follower {
    applied: u64,
    value: i64,
}

fn encode(index: u64, delta: i64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_be_bytes());
    b[8..].copy_from_slice(&delta.to_be_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, i64)> {
    let index = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let delta = i64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
    Some((index, delta))
}

fn main() {
    let seed = hawser_sim::seed();
    let mut config = EngineConfig::default();
    config.connect_timeout = Duration::from_millis(200);
    config.backoff_max = Duration::from_millis(400);
    let mut r = reach::Config::default();
    r.lease = LeasePolicy::Fixed(Duration::from_millis(900));
    r.reachable_for = Duration::from_millis(1800);
    config.reach = Some(r);
    let mut cl = Cluster::with_config(seed, config);
    let ids = cl.add_nodes(4);
    let (leader_id, followers) = (ids[0], ids[1..].to_vec());
    let cut_off = followers[1];

    let mut leader = Leader {
        log: Vec::new(),
        next: followers.iter().map(|&f| (f, 1)).collect(),
        in_flight: BTreeMap::new(),
        busy: followers.iter().map(|&f| (f, false)).collect(),
        retry_at: BTreeMap::new(),
    };
    let mut replicas: BTreeMap<NodeId, Follower> = followers
        .iter()
        .map(|&f| (f, Follower::default()))
        .collect();

    let tick = Duration::from_millis(5);
    let start = cl.now();
    let mut partitioned = false;
    let mut healed = false;
    while cl.elapsed() < Duration::from_secs(20) {
        let t = cl.now() - start;
        // The application: one increment every 20 ms, by 1, 2, 3...
        if (leader.log.len() as u64) < INCREMENTS
            && t >= Duration::from_millis(20) * leader.log.len() as u32
        {
            leader.log.push(leader.log.len() as i64 + 1);
        }
        if !partitioned && t >= Duration::from_millis(200) {
            println!(
                "{:>6} ms  partition: {cut_off} cut off from the others",
                t.as_millis()
            );
            cl.isolate(cut_off);
            partitioned = true;
        }
        if !healed && t >= Duration::from_millis(1200) {
            println!("{:>6} ms  heal", t.as_millis());
            cl.heal_all();
            healed = true;
        }
        drive_leader(&mut cl, leader_id, &mut leader);
        for &f in &followers {
            drive_follower(&mut cl, f, replicas.get_mut(&f).expect("a follower"));
        }
        let total: i64 = leader.log.iter().sum();
        let done = leader.log.len() as u64 == INCREMENTS
            && replicas
                .values()
                .all(|r| r.applied == INCREMENTS && r.value == total);
        if done && healed {
            break;
        }
        cl.run_for(tick);
    }

    let total: i64 = leader.log.iter().sum();
    println!("{:>6} ms  leader value {total}", cl.elapsed().as_millis());
    for (id, r) in &replicas {
        let stats = cl
            .engine(leader_id)
            .map(|e| e.peer_stats(*id).unwrap_or_default());
        println!(
            "          {id}: applied {}/{INCREMENTS}, value {} (reconnects {})",
            r.applied,
            r.value,
            stats.map_or(0, |s| s.reconnects)
        );
        assert_eq!((r.applied, r.value), (INCREMENTS, total), "{id} converged");
    }
    println!(
        "all {} replicas converged (HAWSER_SEED={seed})",
        replicas.len()
    );
}

/// The leader: sends each follower its next increment (one at a time), and moves on or
/// retries as the responses say.
fn drive_leader(cl: &mut Cluster, id: NodeId, leader: &mut Leader) {
    let now = cl.now();
    for (_, event) in cl.take_events(id) {
        let Event::Response { id: req, result } = event else {
            continue;
        };
        let Some(f) = leader.in_flight.remove(&req) else {
            continue;
        };
        leader.busy.insert(f, false);
        match result {
            Ok(_) => *leader.next.entry(f).or_default() += 1,
            Err(RequestError::Refused { code: GAP, message }) => {
                // The follower says where it is: resend from there.
                let at: u64 = message.parse().unwrap_or(0);
                leader.next.insert(f, at + 1);
            }
            Err(e) => {
                println!("          {f}: {e}; retrying");
                leader.retry_at.insert(f, now + Duration::from_millis(100));
            }
        }
    }
    let followers: Vec<NodeId> = leader.next.keys().copied().collect();
    for f in followers {
        let next = leader.next[&f];
        let waiting = leader.retry_at.get(&f).is_some_and(|t| *t > now);
        if leader.busy[&f] || waiting || next > leader.log.len() as u64 {
            continue;
        }
        let delta = leader.log[(next - 1) as usize];
        let payload = encode(next, delta);
        let timeout = Some(Duration::from_millis(300));
        match cl.with(id, |e, now| e.request(now, f, APPLY, &payload, timeout)) {
            Some(Ok(req)) => {
                leader.in_flight.insert(req, f);
                leader.busy.insert(f, true);
            }
            Some(Err(_)) => {
                leader.retry_at.insert(f, now + Duration::from_millis(100));
            }
            None => {}
        }
    }
}

/// A follower: applies the next increment, acknowledges repeats, refuses gaps.
fn drive_follower(cl: &mut Cluster, id: NodeId, replica: &mut Follower) {
    for (_, event) in cl.take_events(id) {
        let Event::Request {
            id: req,
            protocol: APPLY,
            payload,
            ..
        } = event
        else {
            continue;
        };
        let Some((index, delta)) = decode(&payload) else {
            continue;
        };
        let position = if index == replica.applied + 1 {
            replica.applied = index;
            replica.value += delta;
            None
        } else if index <= replica.applied {
            None // a repeat of one applied already: acknowledged again
        } else {
            Some(replica.applied.to_string())
        };
        let _ = cl.with(id, |e, now| match &position {
            None => e.respond(now, req, Outcome::Ok(&replica.applied.to_be_bytes())),
            Some(at) => e.respond(
                now,
                req,
                Outcome::Refused {
                    code: GAP,
                    message: at,
                },
            ),
        });
    }
}
