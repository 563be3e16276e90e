//! The amnesia rule on a 3-node cluster: a node restarted with empty storage does not vote or
//! lead under its old identity, and works again once removed and re-added.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{set, within, Cluster};
use hawser_raft::amnesia::Refused;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

const LIMIT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_neither_votes_nor_leads_until_re_added() {
    within(9, async {
        let mut c = Cluster::start(3, false, |_| {}).await;
        let leader = c.leader(LIMIT).await;
        let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
        let (healthy, wiped) = (others[0], others[1]);
        c.node(leader).write(set("k", "v")).await.unwrap();
        let old_incarnation = c.node(wiped).identity().incarnation;

        c.crash(wiped).await;
        let amnesiac = c.boot_wiped(wiped).await;
        assert_ne!(amnesiac.identity().incarnation, old_incarnation);

        // Requests for the old incarnation are refused: the wiped node receives no log.
        c.node(leader).write(set("k2", "v2")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            amnesiac.raft().metrics().borrow_watched().last_log_index,
            None
        );
        let refused = amnesiac.check_vote_request(&c.node(healthy).identity(), old_incarnation);
        assert!(matches!(refused, Err(Refused::AddressedToOther { .. })));
        assert!(amnesiac.check_addressed(old_incarnation).is_err());
        let refused = c
            .node(healthy)
            .check_vote_request(&amnesiac.identity(), c.node(healthy).identity().incarnation);
        assert!(matches!(
            refused,
            Err(Refused::SenderIncarnationStale { .. })
        ));

        // Without the old leader, the healthy node needs the wiped node's vote: it gets none,
        // and the wiped node does not campaign, so nobody leads.
        c.router.set_down(leader, true);
        assert_eq!(
            c.leader_among(&[healthy, wiped], Duration::from_millis(1500))
                .await,
            None
        );
        let state = amnesiac.raft().metrics().borrow_watched().state;
        assert_ne!(state, ServerState::Leader);
        assert_ne!(state, ServerState::Candidate);

        // Remedy: remove the wiped node and add it again with its new incarnation.
        c.router.set_down(leader, false);
        let up = [leader, healthy];
        let keep: BTreeSet<u64> = (1..=3).filter(|id| *id != wiped).collect();
        let info = amnesiac.node_info();
        // The healed pair may change leader once more while terms settle: retry each step.
        until_ok(&c, &up, |n| {
            let keep = keep.clone();
            async move { n.change_voters(keep).await }
        })
        .await;
        until_ok(&c, &up, |n| {
            let info = info.clone();
            async move { n.add_learner(wiped, info).await }
        })
        .await;
        let all = [1, 2, 3];
        until_ok(&c, &all, |n| async move {
            n.change_voters(BTreeSet::from(all)).await
        })
        .await;
        amnesiac
            .raft()
            .wait(Some(LIMIT))
            .metrics(|_| amnesiac.may_vote(), "may vote again")
            .await
            .expect("the re-added node may vote");

        // Now the re-added node and one other form a quorum without the third node.
        let current = c.leader(LIMIT).await;
        let down = if current == wiped { healthy } else { current };
        c.router.set_down(down, true);
        let rest: Vec<u64> = all.into_iter().filter(|id| *id != down).collect();
        let deadline = tokio::time::Instant::now() + LIMIT;
        let value = loop {
            let new = c
                .leader_among(&rest, LIMIT)
                .await
                .expect("the re-added node votes");
            match c.node(new).read("k").await {
                Ok(v) => break v,
                // A leader elected a moment ago may not have confirmed its quorum yet.
                Err(e) if tokio::time::Instant::now() < deadline => eprintln!("retrying read: {e}"),
                Err(e) => panic!("read: {e}"),
            }
        };
        assert_eq!(value.as_deref(), Some("v"));
    })
    .await;
}

/// Runs `op` on the leader among `ids` until it succeeds; returns that leader.
async fn until_ok<F, Fut>(c: &Cluster, ids: &[u64], op: F) -> u64
where
    F: Fn(hawser_raft::app::KvNode) -> Fut,
    Fut: std::future::Future<Output = Result<(), hawser_raft::app::AdminError>>,
{
    for _ in 0..20 {
        let leader = c.leader_among(ids, LIMIT).await.expect("a leader");
        match op(c.node(leader)).await {
            Ok(()) => return leader,
            Err(e) => {
                eprintln!("retrying on a new leader: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("no leader accepted the operation");
}
