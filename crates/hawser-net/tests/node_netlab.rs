//! Three nodes in three network namespaces (`shared/netlab/netlab.sh`): node 3 is partitioned
//! from the others, then healed; every reliable message arrives exactly once, in each sender's
//! order.
//!
//! Runs only with `HAWSER_NETLAB=1` (otherwise it prints "skipped: ..." and passes), as root
//! with `ip` and `nft` available: with the variable set, a missing piece fails the test. The nodes run inside the namespaces as child processes: this test
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

/// Every reliable message a node accepted (`try_send` returned `Ok`) arrived at its
/// destination exactly once, in the sender's order, with nothing else (so delivery also
/// resumed after the heal), and the partition really silenced node 3's links.
fn check(outputs: &[String]) {
    // (from, to) -> the sequence numbers `from` queued for `to`, in order.
    let mut accepted: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for (i, out) in outputs.iter().enumerate() {
        let from = i as u64 + 1;
        assert!(out.contains("DONE"), "child {from} did not finish:\n{out}");
        // A few seconds of partition fill no queue (10,240 messages, 5 s): nothing is refused.
        assert!(
            !out.contains("REFUSED"),
            "child {from} was refused a send:\n{out}"
        );
        for line in out.lines().filter_map(|l| field(l, "SENT ")) {
            let f: Vec<u64> = line.split(' ').map(|x| x.trim().parse().unwrap()).collect();
            accepted.entry((from, f[0])).or_default().push(f[1]);
        }
    }
    for (i, out) in outputs.iter().enumerate() {
        let me = i as u64 + 1;
        let mut seqs: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut times: HashMap<u64, Vec<u64>> = HashMap::new();
        for line in out.lines().filter_map(|l| field(l, "RECV ")) {
            let f: Vec<u64> = line.split(' ').map(|x| x.trim().parse().unwrap()).collect();
            seqs.entry(f[0]).or_default().push(f[1]);
            times.entry(f[0]).or_default().push(f[2]);
        }
        for from in (1..=NODES).filter(|&f| f != me) {
            let got = seqs.remove(&from).unwrap_or_default();
            let want = accepted.remove(&(from, me)).unwrap_or_default();
            assert!(!want.is_empty(), "{from}->{me}: nothing was sent");
            if got != want {
                let missing: Vec<u64> = want.iter().filter(|s| !got.contains(s)).copied().collect();
                let mut seen = std::collections::HashSet::new();
                let twice: Vec<u64> = got.iter().filter(|s| !seen.insert(**s)).copied().collect();
                let foreign: Vec<u64> = got.iter().filter(|s| !want.contains(s)).copied().collect();
                panic!(
                    "{from}->{me}: {} accepted, {} received; missing {missing:?}, \
                     duplicated {twice:?}, never sent {foreign:?}, in order: {}\n\
                     sender:\n{}\nreceiver:\n{out}",
                    want.len(),
                    got.len(),
                    got.windows(2).all(|w| w[0] < w[1]),
                    outputs[from as usize - 1]
                );
            }
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
                "{from}->{me}: {} messages, each once and in order, longest gap {gap} ms",
                got.len()
            );
        }
        assert!(
            seqs.is_empty(),
            "{me} received from unknown senders: {seqs:?}"
        );
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
        let node = Node::builder(id)
            .listen(addr(id))
            .members(members)
            .start()
            .await
            .unwrap();
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
                        match node.try_send(to, seq.to_be_bytes().to_vec(), Delivery::Reliable) {
                            Ok(()) => println!("SENT {to} {seq}"),
                            Err(e) => println!("REFUSED {to} {seq}: {e}"),
                        }
                    }
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
            println!("STATS {to} {:?}", node.peer_stats(to));
        }
        node.stop().await;
        println!("DONE");
    });
}
