//! Three nodes on 127.0.0.1: node 1 sends "hello" to the others, and each one answers.

use std::time::Duration;

use hawser_net::node::{Delivery, Group, Member, MembershipChange, Node, Role};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Three nodes, each on a free port (TCP for sessions, UDP for datagrams).
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let node = Node::builder(id)
            .listen("127.0.0.1:0".parse()?)
            .start()
            .await?;
        nodes.push(node);
    }

    // Every node learns every node's id and address.
    for node in &nodes {
        for peer in &nodes {
            let addr = peer.local_addr().ok_or("no address")?;
            let member = Member::new(peer.id(), Role::Member, addr);
            node.change_membership(MembershipChange::Add(member))?;
        }
    }

    // Nodes 2 and 3 answer every message with a reply to its sender.
    for node in &nodes[1..] {
        let me = node.clone();
        node.on_receive(move |msg| {
            let text = String::from_utf8_lossy(&msg.payload);
            let reply = format!("{} got {text:?}", me.id());
            if let Err(e) = me.try_send(msg.from, reply, Delivery::Reliable) {
                eprintln!("{}: reply not sent: {e}", me.id());
            }
        });
    }

    // Node 1 sends to every other member, then waits for both replies.
    let mut inbox = nodes[0].incoming();
    nodes[0].broadcast(Group::Members, "hello", Delivery::Reliable);
    for _ in 0..2 {
        let reply = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await?
            .ok_or("node 1 stopped")?;
        println!("{}", String::from_utf8_lossy(&reply.payload));
    }

    for node in &nodes {
        node.stop().await;
    }
    Ok(())
}
