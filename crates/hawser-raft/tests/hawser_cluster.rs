//! Key-value clusters on hawser in one process, over 127.0.0.1: TCP and LSP sessions,
//! encrypted; elections, forwarded writes, linearizable reads, a leader crash and a restart
//! from its data directory, a node that lost its data, a learner promoted, and a 10 MB
//! snapshot sent to a lagging node while heartbeats go on.

mod hawser_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hawser_common::*;
use hawser_raft::server::Transport;
use hawser_raft::types::Request;

fn set(key: &str, value: &str) -> Request {
    Request::Set {
        key: key.into(),
        value: value.into(),
    }
}

async fn elect_write_read(transport: Transport, n: u64) {
    let mut c = HawserCluster::start(n, transport, false, |_| {}).await;
    let leader = c.leader(Duration::from_secs(10)).await;
    // Writes through every node (followers forward them), reads from every node.
    for id in 1..=n {
        c.server(id)
            .kv
            .write(set(&format!("k{id}"), &format!("v{id}")))
            .await
            .unwrap();
    }
    for reader in 1..=n {
        for id in 1..=n {
            let got = c.server(reader).kv.read(&format!("k{id}")).await.unwrap();
            assert_eq!(got.as_deref(), Some(format!("v{id}").as_str()));
        }
    }
    assert_eq!(c.server(leader).kv.read("absent").await.unwrap(), None);
    // Every Raft message went through hawser requests, none failed for want of a handler.
    let stats = c.server(leader).network.rpc_stats();
    assert!(stats.requests_sent > 0);
    assert_eq!(stats.no_handler, 0);
    // The nodes pin each other: a node dialled by a peer answers on the peer's session.
    let shared: u64 = (1..=n)
        .map(|id| c.server(id).network.stats().shared_sessions)
        .sum();
    assert!(shared > 0, "no node wrote on a session its peer opened");
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_tcp_elect_forward_writes_and_read_linearizably() {
    bounded(elect_write_read(Transport::Tcp, 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_lsp_elect_forward_writes_and_read_linearizably() {
    bounded(elect_write_read(Transport::Lsp, 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_over_tcp_elect_forward_writes_and_read_linearizably() {
    bounded(elect_write_read(Transport::Tcp, 5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_over_lsp_elect_forward_writes_and_read_linearizably() {
    bounded(elect_write_read(Transport::Lsp, 5)).await;
}

async fn leader_crash_and_restart(transport: Transport) {
    let mut c = HawserCluster::start(3, transport, true, |_| {}).await;
    let old = c.leader(Duration::from_secs(10)).await;
    for i in 0..20 {
        c.server(old)
            .kv
            .write(set(&format!("a{i}"), "1"))
            .await
            .unwrap();
    }
    c.crash(old).await;
    let start = Instant::now();
    let new = c.leader(Duration::from_secs(10)).await;
    assert_ne!(new, old);
    eprintln!("new leader {new} after {:?}", start.elapsed());
    for i in 0..20 {
        c.server(new)
            .kv
            .write(set(&format!("b{i}"), "2"))
            .await
            .unwrap();
    }
    // The old leader comes back from its data directory, as itself, and catches up.
    c.boot(old).await;
    let back = c.server(old);
    eventually("old leader caught up", Duration::from_secs(10), || {
        back.kv.view().get("b19").is_some()
    })
    .await;
    assert!(back.kv.may_vote(), "restarted with its data, it votes");
    for i in 0..20 {
        let a = c.server(old).kv.read(&format!("a{i}")).await.unwrap();
        let b = c.server(old).kv.read(&format!("b{i}")).await.unwrap();
        assert_eq!((a.as_deref(), b.as_deref()), (Some("1"), Some("2")));
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_restarts_from_its_data_directory_over_tcp() {
    bounded(leader_crash_and_restart(Transport::Tcp)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_restarts_from_its_data_directory_over_lsp() {
    bounded(leader_crash_and_restart(Transport::Lsp)).await;
}

async fn wiped_node(transport: Transport) {
    bounded(async {
        let mut c = HawserCluster::start(3, transport, true, |_| {}).await;
        let leader = c.leader(Duration::from_secs(10)).await;
        c.server(leader).kv.write(set("x", "1")).await.unwrap();
        // Node 1 is the one that bootstraps: wipe it unless it leads, to check that it does
        // not start a second cluster either.
        let victim = if leader == 1 { 2 } else { 1 };
        let other = 6 - leader - victim;
        c.crash(victim).await;
        c.wipe(victim);
        c.boot(victim).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let wiped = c.server(victim).kv.status();
        let members = c.server(other).kv.status().members;
        let recorded = members.iter().find(|m| m.id == victim).unwrap().incarnation;
        assert_ne!(wiped.incarnation, recorded, "a new incarnation");
        assert!(
            wiped.members.is_empty(),
            "no cluster of its own, no log under its old identity"
        );
        // With the leader gone, the last node with its data cannot win: the wiped node refuses
        // every request addressed to its old incarnation, votes included.
        c.crash(leader).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(c.server(other).kv.status().state, "Candidate");
        assert!(c.server(victim).kv.status().members.is_empty());
        assert!(
            c.server(victim).network.rpc_stats().requests_received > 0,
            "it was asked"
        );
        // The leader back with its data: a leader again, and the write is there.
        c.boot(leader).await;
        let l = c
            .leader_among(&[leader, other], Duration::from_secs(10))
            .await;
        assert_eq!(
            c.server(l).kv.read("x").await.unwrap().as_deref(),
            Some("1")
        );
        c.stop_all().await;
    })
    .await;
}

async fn learner(transport: Transport) {
    bounded(async {
        let mut c = HawserCluster::start(3, transport, false, |_| {}).await;
        let leader = c.leader(Duration::from_secs(10)).await;
        c.server(leader).kv.write(set("before", "1")).await.unwrap();
        let fourth = c.add_node(4).await;
        let info = fourth.kv.node_info();
        c.server(leader).kv.add_learner(4, info).await.unwrap();
        c.server(leader)
            .kv
            .change_voters(BTreeSet::from([1, 2, 3, 4]))
            .await
            .unwrap();
        let status = c.server(leader).kv.status();
        assert!(status.members.iter().any(|m| m.id == 4 && m.voter));
        assert_eq!(
            fourth.kv.read("before").await.unwrap().as_deref(),
            Some("1")
        );
        c.stop_all().await;
    })
    .await;
}

async fn snapshot(transport: Transport) {
    bounded(async {
        // Elections after 1-2 s of silence: a debug build on a busy 2-core machine spends
        // hundreds of milliseconds on 10 MB of JSON, and only a network that held heartbeats
        // back behind the snapshot for that long would make a follower campaign.
        let mut c = HawserCluster::start(3, transport, true, |cfg| {
            cfg.snapshot_logs_since_last = 50;
            cfg.max_in_snapshot_log_to_keep = 0;
            cfg.heartbeat_interval = Duration::from_millis(100);
            cfg.election_timeout_min = Duration::from_millis(1000);
            cfg.election_timeout_max = Duration::from_millis(2000);
        })
        .await;
        let leader = c.leader(Duration::from_secs(10)).await;
        let lagging = (1..=3).find(|&id| id != leader).unwrap();
        c.crash(lagging).await;
        // 10 MB of state: 100 values of 100 KB, then enough writes to snapshot and purge.
        let value = "v".repeat(100_000);
        for i in 0..100 {
            c.server(leader)
                .kv
                .write(set(&format!("big{i}"), &value))
                .await
                .unwrap();
        }
        let term = c.server(leader).kv.status().term;
        c.boot(lagging).await;
        let back = c.server(lagging);
        // While the snapshot travels, the leader keeps its term (heartbeats reach the third
        // node) and keeps committing.
        let start = Instant::now();
        let mut writes = 0;
        while back.kv.view().get("big99").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "snapshot not installed"
            );
            c.server(leader)
                .kv
                .write(set("during", &writes.to_string()))
                .await
                .unwrap();
            writes += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            c.server(leader).kv.status().term,
            term,
            "no election during the transfer"
        );
        assert!(writes > 0);
        assert_eq!(back.kv.view().get("big42").map(|v| v.len()), Some(100_000));
        assert!(
            back.network.rpc_stats().streams_accepted >= 1,
            "it came on a stream"
        );
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_transferred_over_hawser() {
    bounded(async {
        let mut c = HawserCluster::start(3, Transport::Tcp, false, |_| {}).await;
        let leader = c.leader(Duration::from_secs(10)).await;
        c.server(leader).kv.write(set("k", "1")).await.unwrap();
        let target = (1..=3).find(|&id| id != leader).unwrap();
        c.server(leader)
            .kv
            .raft()
            .trigger()
            .transfer_leader(target)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.server(target).kv.status().state != "Leader" {
            assert!(
                Instant::now() < deadline,
                "leadership not transferred to {target}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(c.leader(Duration::from_secs(10)).await, target);
        c.server(target).kv.write(set("k", "2")).await.unwrap();
        assert_eq!(
            c.server(leader).kv.read("k").await.unwrap().as_deref(),
            Some("2")
        );
        c.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_its_data_does_not_vote_under_its_old_identity_over_tcp() {
    wiped_node(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_its_data_does_not_vote_under_its_old_identity_over_lsp() {
    wiped_node(Transport::Lsp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_is_added_over_hawser_and_promoted_over_tcp() {
    learner(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_is_added_over_hawser_and_promoted_over_lsp() {
    learner(Transport::Lsp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_snapshot_reaches_a_lagging_node_while_heartbeats_go_on_over_tcp() {
    snapshot(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_snapshot_reaches_a_lagging_node_while_heartbeats_go_on_over_lsp() {
    snapshot(Transport::Lsp).await;
}
