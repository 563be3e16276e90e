//! How long a 3-node cluster over TCP on 127.0.0.1 takes to agree on a new leader after its
//! leader stops ([`Server::stop`](hawser_raft::server::Server::stop)), over repeated trials.
//!
//! The survivors notice the loss when heartbeats stop (the leader's sockets close with it),
//! wait out their election timeout (150 to 300 ms, drawn at random), then need about three
//! round trips: a pre-vote, a vote, and the new leader's first append, which tells the other
//! survivor who leads. openraft adds a leader lease: a follower refuses pre-votes and votes for
//! `election_timeout_max` after its last heartbeat, so a candidate whose timer fires before
//! the other survivor's lease ends is refused and tries again one timeout later. The test
//! prints the distribution next to both expectations (timeout max + 3 round trips, and lease +
//! timeout max + 3 round trips). It asserts no time on the wall clock, which a loaded machine
//! stretches: every trial elects a survivor, in a later term, that both survivors follow (a
//! trial that never agrees fails at a hang guard, [`HANG`]). `HAWSER_ELECTION_TRIALS` sets the
//! number of trials (the ignored variant runs 100).

mod hawser_common;

use std::time::{Duration, Instant};

use hawser_common::*;
use hawser_raft::net::HawserForward;
use hawser_raft::server::Transport;
use hawser_raft::types::NodeId;

/// The longest election timeout of the test timing ([`raft_config`]).
const ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(300);
/// How long a trial may go without agreement before the test is taken as hung.
const HANG: Duration = Duration::from_secs(10);

/// The median of `count` node-info requests from `from` to `to`: one hawser request and its
/// response, the round trip of every Raft message.
async fn round_trip(c: &HawserCluster, from: NodeId, to: NodeId, count: usize) -> Duration {
    let forward = HawserForward::new(c.server(from).network.clone(), Duration::from_secs(2));
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        forward.node_info(to).await.expect("node info");
        times.push(start.elapsed());
    }
    times.sort_unstable();
    times[times.len() / 2]
}

/// Waits until every node of `ids` names the same leader among them, and that leader says it
/// leads; the time it took from `since`.
async fn agreed(c: &HawserCluster, ids: &[NodeId], since: Instant) -> (NodeId, Duration) {
    loop {
        let statuses: Vec<_> = ids.iter().map(|id| c.server(*id).kv.status()).collect();
        if let Some(l) = statuses[0].leader.filter(|l| ids.contains(l)) {
            let all = statuses.iter().all(|s| s.leader == Some(l));
            if all && c.server(l).kv.status().state == "Leader" {
                return (l, since.elapsed());
            }
        }
        assert!(since.elapsed() < HANG, "no leader among {ids:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn election_trials(trials: usize) {
    let mut c = HawserCluster::start(3, Transport::Tcp, true, |_| {}).await;
    let mut leader = c.leader(Duration::from_secs(10)).await;
    let mut times = Vec::with_capacity(trials);
    let mut rtts = Vec::with_capacity(trials);
    for trial in 0..trials {
        let survivors: Vec<NodeId> = (1..=3).filter(|&id| id != leader).collect();
        rtts.push(round_trip(&c, survivors[0], survivors[1], 5).await);
        let old_term = c.server(leader).kv.status().term;
        let start = Instant::now();
        c.crash(leader).await;
        let stop_took = start.elapsed();
        let (new, took) = agreed(&c, &survivors, start).await;
        eprintln!(
            "trial {trial}: leader {leader} stopped in {:.1} ms, {new} agreed after {:.1} ms",
            ms(stop_took),
            ms(took)
        );
        let term = c.server(new).kv.status().term;
        assert!(
            term > old_term,
            "trial {trial}: {new} leads in term {term} <= {old_term}"
        );
        times.push(took);
        // The old leader back from its data; the next trial starts once all three agree.
        c.boot(leader).await;
        leader = c.leader(Duration::from_secs(10)).await;
    }
    c.stop_all().await;

    times.sort_unstable();
    rtts.sort_unstable();
    let rtt = rtts[rtts.len() / 2];
    let expected = ELECTION_TIMEOUT_MAX + 3 * rtt;
    let with_lease = 2 * ELECTION_TIMEOUT_MAX + 3 * rtt;
    eprintln!(
        "election after the leader stops, {trials} trials (ms): min {:.1}, median {:.1}, \
         p90 {:.1}, max {:.1}; round trip (median) {:.2} ms; election timeout max + 3 round \
         trips = {:.1} ms; with the leader lease = {:.1} ms",
        ms(times[0]),
        ms(percentile(&times, 50)),
        ms(percentile(&times, 90)),
        ms(times[times.len() - 1]),
        ms(rtt),
        ms(expected),
        ms(with_lease)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_is_agreed_soon_after_the_leader_stops() {
    let trials = std::env::var("HAWSER_ELECTION_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    bounded(election_trials(trials)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "100 trials, about a minute"]
async fn a_new_leader_is_agreed_soon_after_the_leader_stops_100_trials() {
    tokio::time::timeout(Duration::from_secs(600), election_trials(100))
        .await
        .expect("test timed out");
}
