//! Cluster behaviour on the in-process router: elections, writes, reads, restarts, membership
//! changes and snapshots.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{set, within, Cluster};
use openraft::async_runtime::watch::WatchReceiver;

const LIMIT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_all_agree_on() {
    within(8, async {
        let c = Cluster::start(3, false, |_| {}).await;
        let leader = c.leader(LIMIT).await;
        for id in 1..=3 {
            let node = c.node(id);
            node.raft()
                .wait(Some(LIMIT))
                .current_leader(leader, "agree")
                .await
                .expect("agrees on the leader");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_elect_again_after_the_leader_is_cut_off() {
    within(8, async {
        let c = Cluster::start(5, false, |_| {}).await;
        let first = c.leader(LIMIT).await;
        c.router.set_down(first, true);
        let others: Vec<u64> = (1..=5).filter(|id| *id != first).collect();
        let second = c.leader_among(&others, LIMIT).await.expect("a new leader");
        assert_ne!(first, second);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_are_read_linearizably_from_every_node() {
    within(8, async {
        let c = Cluster::start(3, false, |_| {}).await;
        let leader = c.leader(LIMIT).await;
        let follower = (1..=3).find(|id| *id != leader).unwrap();
        let resp = c
            .node(follower)
            .write(set("a", "1"))
            .await
            .expect("forwarded write");
        assert_eq!(resp.previous, None);
        let resp = c
            .node(leader)
            .write(set("a", "2"))
            .await
            .expect("leader write");
        assert_eq!(resp.previous.as_deref(), Some("1"));
        for id in 1..=3 {
            assert_eq!(c.node(id).read("a").await.unwrap().as_deref(), Some("2"));
            assert_eq!(c.node(id).read("missing").await.unwrap(), None);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_restarts_from_disk_and_a_whole_cluster_restart_keeps_every_write() {
    within(9, async {
        let mut c = Cluster::start(3, true, |_| {}).await;
        let leader = c.leader(LIMIT).await;
        for i in 0..10 {
            c.node(leader)
                .write(set(&format!("k{i}"), "before"))
                .await
                .unwrap();
        }
        c.crash(leader).await;
        let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        let next = c.leader_among(&rest, LIMIT).await.expect("failover");
        c.node(next).write(set("k0", "after")).await.unwrap();

        let old = c.boot(leader).await;
        let applied = c
            .node(next)
            .raft()
            .metrics()
            .borrow_watched()
            .last_applied
            .unwrap()
            .index;
        c.applied(leader, applied, LIMIT).await;
        assert_eq!(old.view().get("k0").as_deref(), Some("after"));
        assert_eq!(old.view().get("k9").as_deref(), Some("before"));
        // A node's handles keep its database open; a restart needs them all dropped.
        drop(old);

        for id in 1..=3 {
            c.crash(id).await;
        }
        for id in 1..=3 {
            c.boot(id).await;
        }
        let leader = c.leader(LIMIT).await;
        assert_eq!(
            c.node(leader).read("k0").await.unwrap().as_deref(),
            Some("after")
        );
        assert_eq!(
            c.node(leader).read("k9").await.unwrap().as_deref(),
            Some("before")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_is_added_and_promoted_to_voter() {
    within(8, async {
        let mut c = Cluster::start(3, false, |_| {}).await;
        let leader = c.leader(LIMIT).await;
        c.node(leader).write(set("x", "1")).await.unwrap();

        c.configs.insert(4, common::test_config(4));
        let newcomer = c.boot(4).await;
        let lead = c.node(leader);
        lead.add_learner(4, newcomer.node_info())
            .await
            .expect("learner");
        let applied = lead
            .raft()
            .metrics()
            .borrow_watched()
            .last_applied
            .unwrap()
            .index;
        c.applied(4, applied, LIMIT).await;
        assert_eq!(newcomer.view().get("x").as_deref(), Some("1"));
        lead.change_voters(BTreeSet::from([1, 2, 3, 4]))
            .await
            .expect("promote");

        let status = lead.status();
        let four = status.members.iter().find(|m| m.id == 4).expect("member 4");
        assert!(four.voter);
        assert_eq!(four.incarnation, newcomer.identity().incarnation);
        assert_eq!(newcomer.read("x").await.unwrap().as_deref(), Some("1"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_catches_up_from_a_snapshot() {
    within(9, async {
        let c = Cluster::start(3, false, |cfg| {
            cfg.snapshot_logs_since_last = 20;
            cfg.max_in_snapshot_log_to_keep = 5;
        })
        .await;
        let leader = c.leader(LIMIT).await;
        let lagging = (1..=3).find(|id| *id != leader).unwrap();
        c.router.set_down(lagging, true);
        let lag_last = c
            .node(lagging)
            .raft()
            .metrics()
            .borrow_watched()
            .last_log_index;

        for i in 0..60 {
            c.node(leader)
                .write(set(&format!("k{i}"), &i.to_string()))
                .await
                .unwrap();
        }
        let m = c
            .node(leader)
            .raft()
            .wait(Some(LIMIT))
            .metrics(
                |m| m.purged.is_some_and(|p| Some(p.index) > lag_last),
                "purged past the lagging node",
            )
            .await
            .expect("the leader compacted");
        let applied = m.last_applied.unwrap().index;

        c.router.set_down(lagging, false);
        c.applied(lagging, applied, LIMIT).await;
        let lm = c.node(lagging).raft().metrics().borrow_watched().clone();
        let snap = lm.snapshot.expect("the lagging node holds a snapshot");
        assert!(
            Some(snap.index) > lag_last,
            "installed a snapshot from the leader"
        );
        assert_eq!(c.node(lagging).view().get("k59").as_deref(), Some("59"));
        assert_eq!(c.node(lagging).view().len(), 60);
    })
    .await;
}
