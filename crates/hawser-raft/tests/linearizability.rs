//! Concurrent clients against a 3-node cluster while nodes crash, restart and are cut off; the
//! recorded history must be linearizable and end with every acknowledged write visible.

mod common;

use std::time::Duration;

use common::{within, Cluster};
use hawser_raft::check::{History, Op, Outcome};
use hawser_raft::router::Router;
use hawser_raft::types::Request;

const CLIENTS: u64 = 4;
const KEYS: [&str; 3] = ["a", "b", "c"];
const RUN: Duration = Duration::from_millis(2500);

/// One client: random reads and writes of unique values on random live nodes until `stop`.
async fn client(
    router: Router,
    history: History,
    client: u64,
    seed: u64,
    stop: tokio::time::Instant,
) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut acknowledged = 0;
    let mut n = 0;
    while tokio::time::Instant::now() < stop {
        let ids = router.ids();
        let Some(node) = router.node(ids[rng.usize(..ids.len())]) else {
            continue;
        };
        let key = KEYS[rng.usize(..KEYS.len())].to_owned();
        if rng.bool() {
            n += 1;
            let value = format!("c{client}-{n}");
            let op = Op::Write {
                key: key.clone(),
                value: value.clone(),
            };
            let pending = history.invoke(client, op);
            let outcome = match node.write(Request::Set { key, value }).await {
                Ok(_) => {
                    acknowledged += 1;
                    Outcome::Written
                }
                Err(_) => Outcome::Unknown,
            };
            history.finish(pending, outcome).expect("history space");
        } else {
            let pending = history.invoke(client, Op::Read { key: key.clone() });
            let outcome = match node.read(&key).await {
                Ok(v) => Outcome::Read(v),
                Err(_) => Outcome::Unknown,
            };
            history.finish(pending, outcome).expect("history space");
        }
        // A client that keeps hitting a dead node must not spin.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..5))).await;
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_crashes_and_partitions_are_linearizable() {
    let seed = std::env::var("HAWSER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("HAWSER_SEED={seed}");
    within(9, async {
        let mut c = Cluster::start(3, false, |cfg| {
            cfg.request_timeout = Duration::from_millis(700)
        })
        .await;
        let history = History::new(100_000);
        let stop = tokio::time::Instant::now() + RUN;
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| tokio::spawn(client(c.router.clone(), history.clone(), i, seed ^ i, stop)))
            .collect();

        // The nemesis: one fault at a time, each healed before the next.
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut faults = 0;
        while tokio::time::Instant::now() + Duration::from_millis(500) < stop {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let victim = rng.u64(1..=3);
            if rng.bool() {
                c.crash(victim).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                c.boot(victim).await;
            } else {
                c.router.set_down(victim, true);
                tokio::time::sleep(Duration::from_millis(250)).await;
                c.router.set_down(victim, false);
            }
            faults += 1;
        }

        let mut acknowledged = 0;
        for handle in clients {
            acknowledged += handle.await.expect("client task");
        }
        // Every acknowledged write must still be visible: end with one read per key.
        let leader = c.leader(Duration::from_secs(3)).await;
        for key in KEYS {
            let pending = history.invoke(CLIENTS, Op::Read { key: key.into() });
            let value = c.node(leader).read(key).await.expect("final read");
            history.finish(pending, Outcome::Read(value)).unwrap();
        }
        let events = history.events();
        let unknown = events
            .iter()
            .filter(|e| e.outcome == Outcome::Unknown)
            .count();
        eprintln!(
            "{faults} faults, {} events ({unknown} unknown), {acknowledged} acknowledged writes",
            events.len()
        );
        assert!(faults >= 3, "the nemesis ran");
        assert!(acknowledged >= 20, "the clients made progress");
        let verdict = tokio::task::spawn_blocking(move || hawser_raft::check::check(&events));
        verdict.await.expect("checker task").expect("linearizable");
    })
    .await;
}
