//! Three nodes on 127.0.0.1: node 1 broadcasts, nodes 2 and 3 reply, node 1 prints the replies.
//!
//! ```text
//! cargo run -p hawser-net --example three_nodes
//! ```

use std::time::Duration;

use hawser_net::node::{Delivery, Group, Member, MembershipChange, Node, Role};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Start three nodes on free ports, then tell each one every address.
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let node = Node::builder(id)
            .listen("127.0.0.1:0".parse()?)
            .start()
            .await?;
        nodes.push(node);
    }
    for node in &nodes {
        for peer in &nodes {
            let addr = peer.local_addr().expect("a TCP/UDP node has an address");
            let member = Member::new(peer.id(), Role::Member, addr);
            node.change_membership(MembershipChange::Add(member))?;
        }
    }

    // Nodes 2 and 3 answer every message with a reply to its sender.
    for node in &nodes[1..] {
        let me = node.clone();
        node.on_receive(move |msg| {
            let text = String::from_utf8_lossy(&msg.payload);
            println!("node {} got {text:?} from node {}", me.id().0, msg.from.0);
            let reply = format!("ack from {}", me.id().0);
            if let Err(e) = me.try_send(msg.from, reply, Delivery::Reliable) {
                eprintln!("reply failed: {e}");
            }
        });
    }

    // Node 1 broadcasts to every other member and waits for both replies.
    let mut inbox = nodes[0].incoming();
    let report = nodes[0].broadcast(Group::Members, "hello, cluster", Delivery::Reliable);
    println!("broadcast queued for {:?}", report.delivered());
    for _ in 0..2 {
        let msg = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await?
            .ok_or("node stopped")?;
        println!("node 1 got {:?} from node {}", msg.payload, msg.from.0);
    }
    println!("counters towards node 2: {:?}", nodes[0].peer_stats(2));

    for node in &nodes {
        node.stop().await;
    }
    Ok(())
}
