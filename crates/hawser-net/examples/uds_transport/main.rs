//! A transport written outside hawser: Unix domain sockets under the scheme `uds` (the
//! transport is `uds.rs`, about 80 lines; the node test suites run over the same file). Two
//! nodes register it, listen on a socket file each, and node 1 sends node 2 a reliable message
//! over `uds://` (a Noise session on a Unix socket).
//!
//! ```text
//! cargo run -p hawser-net --example uds_transport
//! ```

mod uds;

use std::sync::Arc;
use std::time::Duration;

use hawser_net::node::{Delivery, Member, MembershipChange, Node, Role};
use hawser_net::session::TransportAddr;
use uds::Uds;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("hawser-uds-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let uds = |id: u64| {
        TransportAddr::other("uds", &dir.join(format!("{id}.sock")).display().to_string())
    };

    // Each node still listens on TCP + UDP (datagrams, reachability); reliable messages to
    // either node go to its socket file.
    let mut nodes = Vec::new();
    for id in 1..=2u64 {
        let node = Node::builder(id)
            .listen("127.0.0.1:0".parse()?)
            .transport(Arc::new(Uds))
            .listen_on(uds(id)?)
            .transport_to(1, uds(1)?)
            .transport_to(2, uds(2)?)
            .start()
            .await?;
        for addr in node.listen_addrs() {
            println!("node {id} listens on {addr}");
        }
        nodes.push(node);
    }
    for node in &nodes {
        for peer in &nodes {
            let addr = peer.local_addr().expect("a TCP/UDP node has an address");
            node.change_membership(MembershipChange::Add(Member::new(
                peer.id(),
                Role::Member,
                addr,
            )))?;
        }
    }

    let mut inbox = nodes[1].incoming();
    nodes[0].try_send(2, "hello over uds://", Delivery::Reliable)?;
    let msg = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
        .await?
        .ok_or("node stopped")?;
    println!(
        "node 2 got {:?} from node {}",
        String::from_utf8_lossy(&msg.payload),
        msg.from.0
    );

    for node in &nodes {
        node.stop().await;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
