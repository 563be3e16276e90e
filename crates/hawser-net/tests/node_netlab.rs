//! Three nodes in three network namespaces (`shared/netlab/netlab.sh`): node 3 is partitioned
//! from the others, then healed; reliable delivery resumes, in order, with nothing duplicated.
//!
//! Runs only as root with `ip` and `nft` available and `HAWSER_NETLAB=1`; otherwise it prints
//! "skipped: ..." and passes. The nodes run inside the namespaces as child processes: this test
//! binary re-executed (`netlab_child`) through `ip netns exec`. Traffic goes only to the lab's
//! 10.77.0.0/24 inside its namespaces.

use std::collections::HashMap;
use std::time::Duration;

use hawser_net::node::{Delivery, Member, Node, Role};

mod netlab_common;

use netlab_common::{field, lab, Lab};

const NODES: u64 = 3;
const PORT: u16 = 7700;
/// Children send every `TICK` for `SEND_FOR`, then keep receiving until `RUN_FOR`.
const TICK: Duration = Duration::from_millis(50);
const SEND_FOR: Duration = Duration::from_secs(10);
const RUN_FOR: Duration = Duration::from_secs(16);

fn addr(id: u64) -> std::net::SocketAddr {
    netlab_common::addr(id, PORT)
}

#[test]
fn netlab_partition_heal() {
    let Some(running) = Lab::up(NODES) else {
        return;
    };
    let children = running.spawn_children(NODES, "netlab_child");
    std::thread::sleep(Duration::from_secs(3));
    // (`isolate 3` applies the same blocks, but exits 1 when the host is the lab's last one.)
    lab(&["partition", "3", "1"]);
    lab(&["partition", "3", "2"]);
    std::thread::sleep(Duration::from_secs(3));
    lab(&["heal"]);
    let outputs = netlab_common::outputs(children);
    check(&outputs);
}

/// Every receiver got each sender's sequence numbers strictly increasing (in order, no
/// duplicate) and up to the last one sent (delivery resumed after the heal).
fn check(outputs: &[String]) {
    let mut last_sent: HashMap<u64, u64> = HashMap::new();
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.contains("DONE"),
            "child {} did not finish:\n{out}",
            i + 1
        );
        for line in out.lines().filter_map(|l| field(l, "SENT ")) {
            last_sent.insert(i as u64 + 1, line.trim().parse().unwrap());
        }
    }
    for (i, out) in outputs.iter().enumerate() {
        let me = i as u64 + 1;
        let mut seqs: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut times: HashMap<u64, Vec<u64>> = HashMap::new();
        for line in out.lines().filter_map(|l| field(l, "RECV ")) {
            let f: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            seqs.entry(f[0]).or_default().push(f[1]);
            times.entry(f[0]).or_default().push(f[2]);
        }
        for from in (1..=NODES).filter(|&f| f != me) {
            let got = seqs.get(&from).cloned().unwrap_or_default();
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "{from}->{me}: duplicate or reordered"
            );
            let want = last_sent[&from];
            let missing: Vec<u64> = (1..=want).filter(|s| !got.contains(s)).collect();
            if !missing.is_empty() {
                println!("{from}->{me}: missing {missing:?}");
            }
            assert_eq!(
                got.last().copied(),
                Some(want),
                "{from}->{me}: delivery did not resume"
            );
            // The partition was real: across node 3, a silence of well over a second.
            let gap = times[&from]
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or(0);
            if from == 3 || me == 3 {
                assert!(
                    gap >= 1500,
                    "{from}->{me}: no silence during the partition ({gap} ms)"
                );
            }
            println!(
                "{from}->{me}: {} messages, last {want}, longest gap {gap} ms",
                got.len()
            );
        }
    }
}

/// One node of the lab (runs only when re-executed by `netlab_partition_heal`).
#[test]
fn netlab_child() {
    let Some(id) = netlab_common::child_id() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let members = (1..=NODES).map(|n| Member::new(n, Role::Member, addr(n)));
        let node = Node::builder(id).listen(addr(id)).members(members).start().await.unwrap();
        let mut inbox = node.incoming();
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(TICK);
        let mut seq = 0u64;
        let end = tokio::time::sleep_until(start + RUN_FOR);
        tokio::pin!(end);
        loop {
            tokio::select! {
                _ = tick.tick(), if start.elapsed() < SEND_FOR => {
                    seq += 1;
                    for to in (1..=NODES).filter(|&n| n != id) {
                        if let Err(e) = node.try_send(to, seq.to_be_bytes().to_vec(), Delivery::Reliable) {
                            eprintln!("node {id}: send {seq} to {to}: {e}");
                        }
                    }
                    println!("SENT {seq}");
                }
                m = inbox.recv() => {
                    let Some(m) = m else { break };
                    let s = u64::from_be_bytes(m.payload[..8].try_into().unwrap());
                    println!("RECV {} {s} {}", m.from.0, start.elapsed().as_millis());
                }
                () = &mut end => break,
            }
        }
        for to in (1..=NODES).filter(|&n| n != id) {
            eprintln!("node {id} -> {to}: {:?}", node.peer_stats(to));
        }
        node.stop().await;
        println!("DONE");
    });
}
