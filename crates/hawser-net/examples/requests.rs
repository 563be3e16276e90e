//! Requests with deadlines and a bulk stream between two nodes on 127.0.0.1, encrypted:
//! `cargo run -p hawser-net --example requests`.

use std::time::Duration;

use hawser_net::node::{Member, MembershipChange, Node, RequestError, RequestOptions, Role};
use hawser_net::session::{Protocol, ProtocolId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request/response protocol: "get" a key.
const GET: ProtocolId = ProtocolId(1024);
/// A stream protocol: bulk transfers (registered on both nodes, negotiated per session).
const SNAPSHOT: ProtocolId = ProtocolId(1025);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut nodes = Vec::new();
    for id in 1..=2u64 {
        let node = Node::builder(id)
            .listen("127.0.0.1:0".parse()?)
            .protocol(Protocol::new(SNAPSHOT, "example/snapshot", &[1])?)
            .start()
            .await?;
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
    let (a, b) = (&nodes[0], &nodes[1]);

    // Node 2 answers "get" requests: known keys with a value, others with a refusal.
    b.serve_with(GET, |req| async move {
        let answer = match req.payload().as_ref() {
            b"color" => req.respond("blue"),
            _ => req.refuse(404, "no such key"),
        };
        if let Err(e) = answer {
            eprintln!("answer not sent: {e}");
        }
    })?;

    let options = RequestOptions::timeout(Duration::from_secs(2));
    let value = a.request(2, GET, "color", options).await?;
    println!("color = {}", String::from_utf8_lossy(&value));
    match a.request(2, GET, "size", options).await {
        Err(RequestError::Refused { code, message }) => {
            println!("size: refused {code} ({message})")
        }
        other => println!("size: {other:?}"),
    }

    // A 4 MiB transfer on a stream of its own, while requests go on beside it.
    let mut streams = b.accept_streams(SNAPSHOT)?;
    let receiver = tokio::spawn(async move {
        let (from, mut stream) = streams.accept().await.expect("a stream");
        let mut data = Vec::new();
        stream.read_to_end(&mut data).await?;
        Ok::<_, std::io::Error>((from, data.len()))
    });
    let mut stream = a.open_stream(2, SNAPSHOT).await?;
    stream.write_all(&vec![7u8; 4 << 20]).await?;
    stream.shutdown().await?;
    let value = a.request(2, GET, "color", options).await?;
    let (from, len) = receiver.await??;
    println!(
        "node 2 received {len} bytes from {from}; color still {}",
        String::from_utf8_lossy(&value)
    );
    println!("requests: {:?}", a.rpc_stats());

    for node in &nodes {
        node.stop().await;
    }
    Ok(())
}
