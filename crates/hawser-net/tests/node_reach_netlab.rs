//! Reachability across five network namespaces (`shared/netlab/netlab.sh`): node 5 is cut from
//! the other four; each of them sees it dead within its lease, then alive again after the heal.
//!
//! Runs only with `HAWSER_NETLAB=1` (otherwise it prints "skipped: ..." and passes), as root
//! with `ip` and `nft` available: with the variable set, a missing piece fails the test. The nodes run inside the namespaces as child processes: this test
//! binary re-executed (`reach_netlab_child`) through `ip netns exec`. Traffic goes only to the
//! lab's 10.77.0.0/24 inside its namespaces. Times are compared on the wall clock (Unix
//! milliseconds), which parent and children share.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hawser_net::node::{Member, Node, PeerEvent, ReachSettings, Role, Settings};

mod netlab_common;

use netlab_common::{field, lab, Lab};

const NODES: u64 = 5;
/// The node cut from the others.
const ISOLATED: u64 = 5;
const PORT: u16 = 7710;
/// The lease every node announces.
const LEASE: Duration = Duration::from_secs(1);
/// Timer, scheduling and namespace slack on top of the lease.
const SLACK: Duration = Duration::from_millis(400);
/// Children run this long.
const RUN_FOR: Duration = Duration::from_secs(22);
/// After the heal, the isolated node must be seen alive again within this (TCP retransmits
/// back off exponentially during the cut: the first one after the heal may take seconds).
const BACK_WITHIN: Duration = Duration::from_secs(12);

fn addr(id: u64) -> std::net::SocketAddr {
    netlab_common::addr(id, PORT)
}

fn unix_ms() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    d.as_millis() as u64
}

#[test]
fn reach_netlab_isolate_heal() {
    let Some(running) = Lab::up(NODES) else {
        return;
    };
    let children = running.spawn_children(NODES, "reach_netlab_child");
    std::thread::sleep(Duration::from_secs(4));
    // (`isolate 5` applies the same blocks, but exits 1 when the host is the lab's last one.)
    let cut = unix_ms();
    for other in (1..=NODES).filter(|&n| n != ISOLATED) {
        lab(&["partition", &ISOLATED.to_string(), &other.to_string()]);
    }
    let cut_done = unix_ms();
    std::thread::sleep(Duration::from_secs(3));
    let healed = unix_ms();
    lab(&["heal"]);
    let outputs = netlab_common::outputs(children);
    check(&outputs, cut, cut_done, healed);
}

/// Each of nodes 1-4 saw node 5 alive before the cut, dead within one lease of the cut, and
/// alive again after the heal.
fn check(outputs: &[String], cut: u64, cut_done: u64, healed: u64) {
    let lease = LEASE.as_millis() as u64;
    let slack = SLACK.as_millis() as u64;
    for (i, out) in outputs.iter().enumerate() {
        let me = i as u64 + 1;
        assert!(out.contains("DONE"), "child {me} did not finish:\n{out}");
        // peer -> [(alive?, unix ms)]
        let mut log: HashMap<u64, Vec<(bool, u64)>> = HashMap::new();
        for line in out.lines().filter_map(|l| field(l, "PEER ")) {
            let f: Vec<&str> = line.split(' ').collect();
            let (peer, what, at) = (f[0].parse().unwrap(), f[1], f[2].parse().unwrap());
            log.entry(peer).or_default().push((what == "alive", at));
        }
        if me == ISOLATED {
            // The isolated node sees the others dead too (printed, not asserted: its view is
            // the mirror image).
            println!("node {me} (isolated): {log:?}");
            continue;
        }
        let about = log.get(&ISOLATED).cloned().unwrap_or_default();
        assert!(
            about.iter().any(|&(alive, at)| alive && at < cut),
            "node {me}: node {ISOLATED} never alive before the cut: {about:?}"
        );
        let dead = about
            .iter()
            .find(|&&(alive, at)| !alive && at >= cut)
            .map(|&(_, at)| at)
            .unwrap_or_else(|| panic!("node {me}: node {ISOLATED} never dead: {about:?}"));
        let back = about
            .iter()
            .find(|&&(alive, at)| alive && at >= dead)
            .map(|&(_, at)| at)
            .unwrap_or_else(|| panic!("node {me}: node {ISOLATED} never back: {about:?}"));
        println!(
            "node {me}: node {ISOLATED} dead {} ms after the cut began ({} ms after it was \
             complete; lease {lease} ms), alive again {} ms after the heal",
            dead - cut,
            dead.saturating_sub(cut_done),
            back.saturating_sub(healed)
        );
        assert!(
            dead <= cut_done + lease + slack,
            "node {me}: dead only {} ms after the cut",
            dead - cut_done
        );
        assert!(
            dead < healed,
            "node {me}: declared dead only after the heal"
        );
        assert!(
            back <= healed + BACK_WITHIN.as_millis() as u64,
            "node {me}: back only {} ms after the heal",
            back - healed
        );
        // The others never saw each other die.
        for (peer, events) in &log {
            if *peer != ISOLATED {
                assert!(
                    events.iter().all(|&(alive, _)| alive),
                    "node {me}: node {peer} flapped: {events:?}"
                );
            }
        }
    }
}

/// One node of the lab (runs only when re-executed by `reach_netlab_isolate_heal`).
#[test]
fn reach_netlab_child() {
    let Some(id) = netlab_common::child_id() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let members = (1..=NODES).map(|n| Member::new(n, Role::Member, addr(n)));
        let mut settings = Settings::default();
        settings.backoff_initial = Duration::from_millis(50);
        settings.backoff_max = Duration::from_millis(500);
        settings.connect_timeout = Duration::from_secs(1);
        settings.reach = ReachSettings::with_lease(LEASE);
        let node = Node::builder(id)
            .listen(addr(id))
            .members(members)
            .settings(settings)
            .start()
            .await
            .unwrap();
        let mut events = node.peer_events();
        let end = tokio::time::sleep(RUN_FOR);
        tokio::pin!(end);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(Ok(PeerEvent::PeerAlive { peer, .. })) => {
                        println!("PEER {} alive {}", peer.0, unix_ms());
                    }
                    Some(Ok(PeerEvent::PeerDead { peer })) => {
                        println!("PEER {} dead {}", peer.0, unix_ms());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(lag)) => eprintln!("node {id}: {lag}"),
                    None => break,
                },
                () = &mut end => break,
            }
        }
        eprintln!("node {id}: {:?}", node.reach_stats());
        node.stop().await;
        println!("DONE");
    });
}
