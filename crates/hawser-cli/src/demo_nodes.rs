//! The second part of `hawser demo`: a few nodes on 127.0.0.1 watch each other through
//! reachability leases; one is stopped and restarted, and the time each other node took to see
//! it dead and alive again is printed beside the configured lease. The nodes run secure by
//! default (Noise sessions), each with its own identity, pinned by the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hawser_net::node::{
    Member, MembershipChange, Node, NodeId, PeerEvent, PeerEvents, ReachSettings, Role, Settings,
};
use hawser_net::session::Identity;

/// What the node part of the demo measured.
pub struct NodeReport {
    /// Detection times of the stop, one per watching node.
    pub dead_after: Vec<Duration>,
    /// Detection times of the restart, one per watching node.
    pub alive_after: Vec<Duration>,
}

fn settings(lease: Duration) -> Settings {
    let mut s = Settings::default();
    s.backoff_initial = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(200);
    s.reach = ReachSettings::with_lease(lease);
    s
}

/// Starts node `id` (identity `identities[id - 1]`), pinning every other node's identity.
async fn start(
    id: u64,
    listen: SocketAddr,
    peers: &[Member],
    lease: Duration,
    identities: &[Arc<Identity>],
) -> anyhow::Result<Node> {
    let mut b = Node::builder(id)
        .settings(settings(lease))
        .listen(listen)
        .members(peers.iter().filter(|m| m.id.0 != id).cloned());
    for (i, identity) in identities.iter().enumerate() {
        let peer = i as u64 + 1;
        if peer == id {
            b = b.identity(identity.clone());
        } else {
            b = b.pin(peer, identity.peer_id());
        }
    }
    b.start()
        .await
        .with_context(|| format!("cannot start node {id}"))
}

/// Prints one node's peer table.
fn print_table(node: &Node) {
    println!("  peer table of node {}:", node.id().0);
    for p in node.peers() {
        let left = p
            .alive_until
            .map(|t| t.saturating_duration_since(Instant::now()));
        let addresses: Vec<String> = p
            .addresses
            .iter()
            .map(|a| {
                format!(
                    "{} {}{}",
                    a.addr,
                    if a.exists { "exists" } else { "unknown" },
                    if a.reachable {
                        ", reachable"
                    } else {
                        ", unreachable"
                    }
                )
            })
            .collect();
        println!(
            "    node {:<3} {:<5} lease {:>6} left {:>8}  {}",
            p.id.0,
            if p.alive { "alive" } else { "dead" },
            crate::echo::fmt_duration(p.lease.unwrap_or_default()),
            crate::echo::fmt_duration(left.unwrap_or_default()),
            addresses.join("; ")
        );
    }
}

/// Waits until `events` reports the victim dead (or alive); how long since `since`.
async fn detect(
    events: &mut PeerEvents,
    victim: NodeId,
    since: Instant,
    alive: bool,
) -> anyhow::Result<Duration> {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .map_err(|_| anyhow!("no peer event within 10 s"))?
            .ok_or_else(|| anyhow!("node stopped"))?;
        let hit = match item {
            Ok(PeerEvent::PeerAlive { peer, .. }) => alive && peer == victim,
            Ok(PeerEvent::PeerDead { peer }) => !alive && peer == victim,
            Ok(_) | Err(_) => false,
        };
        if hit {
            return Ok(since.elapsed());
        }
    }
}

/// Runs `count` nodes with leases of `lease`, stops the last one, restarts it.
pub async fn run(count: u64, lease: Duration) -> anyhow::Result<NodeReport> {
    anyhow::ensure!(count >= 2, "the node demo needs at least 2 nodes");
    println!(
        "\nreachability: {count} nodes on 127.0.0.1, lease {}",
        crate::echo::fmt_duration(lease)
    );
    let identities = (1..=count)
        .map(|_| Identity::generate().map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot generate node identities")?;
    let mut nodes = Vec::new();
    for id in 1..=count {
        let node = start(id, ([127, 0, 0, 1], 0).into(), &[], lease, &identities).await?;
        if let Some(peer_id) = node.peer_id() {
            println!("  node {id}: PeerId {peer_id} (noise sessions, pinned by the others)");
        }
        nodes.push(node);
    }
    let members: Vec<Member> = nodes
        .iter()
        .filter_map(|n| n.local_addr().map(|a| Member::new(n.id(), Role::Member, a)))
        .collect();
    for node in &nodes {
        for m in members.iter().filter(|m| m.id != node.id()) {
            node.change_membership(MembershipChange::Add(m.clone()))?;
        }
    }
    let t = Instant::now();
    while !nodes
        .iter()
        .all(|n| nodes.iter().all(|m| m.id() == n.id() || n.is_alive(m.id())))
    {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(10),
            "the nodes did not see each other"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  all {count} nodes alive to each other after {}",
        crate::echo::fmt_duration(t.elapsed())
    );
    print_table(&nodes[0]);

    let mut watchers: Vec<PeerEvents> = nodes[..nodes.len() - 1]
        .iter()
        .map(Node::peer_events)
        .collect();
    let victim = nodes.pop().ok_or_else(|| anyhow!("no node"))?;
    let victim_id = victim.id();
    let victim_addr = victim.local_addr().ok_or_else(|| anyhow!("no address"))?;
    println!("  stopping node {}", victim_id.0);
    let stopped = Instant::now();
    victim.stop().await;
    drop(victim);
    let mut report = NodeReport {
        dead_after: Vec::new(),
        alive_after: Vec::new(),
    };
    for (i, w) in watchers.iter_mut().enumerate() {
        let took = detect(w, victim_id, stopped, false).await?;
        println!(
            "    node {} saw node {} dead after {:>8}   (lease {})",
            i + 1,
            victim_id.0,
            crate::echo::fmt_duration(took),
            crate::echo::fmt_duration(lease)
        );
        report.dead_after.push(took);
    }
    print_table(&nodes[0]);
    println!("  restarting node {} at {victim_addr}", victim_id.0);
    let restarted = Instant::now();
    let restarted_node = start(victim_id.0, victim_addr, &members, lease, &identities).await?;
    nodes.push(restarted_node);
    for (i, w) in watchers.iter_mut().enumerate() {
        let took = detect(w, victim_id, restarted, true).await?;
        println!(
            "    node {} saw node {} alive again after {:>8}",
            i + 1,
            victim_id.0,
            crate::echo::fmt_duration(took)
        );
        report.alive_after.push(took);
    }
    print_table(&nodes[0]);
    for node in &nodes {
        node.stop().await;
    }
    Ok(report)
}
