//! A live peer table: four nodes on 127.0.0.1 with 500 ms leases; node 4 is stopped, then
//! restarted at the same address, and the time each other node took to see it dead and alive
//! again is printed beside the configured lease.
//!
//! `cargo run -p hawser-net --example peer_table`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hawser_net::node::{
    Member, MembershipChange, Node, NodeId, PeerEvent, PeerEvents, ReachSettings, Role, Settings,
};

const NODES: u64 = 4;
/// The node stopped and restarted.
const VICTIM: u64 = 4;
const LEASE: Duration = Duration::from_millis(500);

fn settings() -> Settings {
    let mut s = Settings::default();
    s.backoff_initial = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(200);
    s.reach = ReachSettings::with_lease(LEASE);
    s
}

async fn start(
    id: u64,
    listen: SocketAddr,
    peers: &[Member],
) -> Result<Node, Box<dyn std::error::Error>> {
    let node = Node::builder(id)
        .listen(listen)
        .members(peers.iter().filter(|m| m.id.0 != id).cloned())
        .settings(settings())
        .start()
        .await?;
    Ok(node)
}

/// Prints one node's peer table.
fn print_table(node: &Node) {
    println!("  node {} sees:", node.id().0);
    for p in node.peers() {
        let left = p
            .alive_until
            .map(|t| t.saturating_duration_since(Instant::now()));
        let state = if p.alive { "alive" } else { "dead " };
        println!(
            "    node {} {state} lease {:?} (left {:?}) incarnation {:?}",
            p.id.0,
            p.lease.unwrap_or_default(),
            left.unwrap_or_default(),
            p.incarnation.unwrap_or_default()
        );
        for a in &p.addresses {
            println!(
                "      {} exists={} reachable={} found={:?} dismissed={:?}",
                a.addr,
                a.exists,
                a.reachable,
                a.last_found.map(|s| s.seq),
                a.last_dismiss.map(|s| s.seq)
            );
        }
    }
}

/// Waits until `events` reports `want` about the victim; how long that took since `since`.
async fn detect(
    events: &mut PeerEvents,
    since: Instant,
    alive: bool,
) -> Result<Duration, Box<dyn std::error::Error>> {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await?
            .ok_or("node stopped")?;
        let hit = match item {
            Ok(PeerEvent::PeerAlive { peer, .. }) => alive && peer == NodeId(VICTIM),
            Ok(PeerEvent::PeerDead { peer }) => !alive && peer == NodeId(VICTIM),
            Ok(_) => false,
            Err(lagged) => {
                println!("  ({lagged})");
                false
            }
        };
        if hit {
            return Ok(since.elapsed());
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Start the nodes on free ports, then tell each one every address.
    let mut nodes = Vec::new();
    for id in 1..=NODES {
        nodes.push(start(id, "127.0.0.1:0".parse()?, &[]).await?);
    }
    let members: Vec<Member> = nodes
        .iter()
        .map(|n| Member::new(n.id(), Role::Member, n.local_addr().expect("an address")))
        .collect();
    for node in &nodes {
        for m in members.iter().filter(|m| m.id != node.id()) {
            node.change_membership(MembershipChange::Add(m.clone()))?;
        }
    }
    let all_alive = |nodes: &[Node]| {
        nodes
            .iter()
            .all(|n| nodes.iter().all(|m| m.id() == n.id() || n.is_alive(m.id())))
    };
    let t = Instant::now();
    while !all_alive(&nodes) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if t.elapsed() > Duration::from_secs(10) {
            return Err("the nodes did not see each other".into());
        }
    }
    println!(
        "{NODES} nodes see each other after {:?}; lease {LEASE:?}",
        t.elapsed()
    );
    print_table(&nodes[0]);

    let mut watchers: Vec<PeerEvents> = nodes[..NODES as usize - 1]
        .iter()
        .map(|n| n.peer_events())
        .collect();
    let victim = nodes.pop().ok_or("no node")?;
    let victim_addr = victim.local_addr().ok_or("no address")?;
    println!("\nstopping node {VICTIM}");
    let stopped = Instant::now();
    victim.stop().await;
    drop(victim);
    for (i, w) in watchers.iter_mut().enumerate() {
        let took = detect(w, stopped, false).await?;
        println!(
            "  node {} saw node {VICTIM} dead after {took:?} (lease {LEASE:?})",
            i + 1
        );
    }
    print_table(&nodes[0]);

    println!("\nrestarting node {VICTIM} at {victim_addr}");
    let restarted = Instant::now();
    nodes.push(start(VICTIM, victim_addr, &members).await?);
    for (i, w) in watchers.iter_mut().enumerate() {
        let took = detect(w, restarted, true).await?;
        println!(
            "  node {} saw node {VICTIM} alive again after {took:?} (lease {LEASE:?})",
            i + 1
        );
    }
    tokio::time::sleep(LEASE / 2).await;
    print_table(&nodes[0]);

    for node in &nodes {
        node.stop().await;
    }
    Ok(())
}
