//! Node-to-node rows: reliable messages between two `hawser::node::Node`s, over a secure
//! (Noise) session on TCP or on LSP, and over a plaintext session on TCP, to set beside raw
//! batched TCP framing (the target: ≥ 0.8× of it) and to show what encryption costs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use hawser::node::{Delivery, Member, Node, Role};
use hawser::session::{Security, TransportAddr};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::payload;
use crate::transports::RunResult;

/// How the two nodes are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeLink {
    /// Noise session over TCP (the node's default).
    TcpSecure,
    /// Plaintext session over TCP (`Security::DangerPlaintext`).
    TcpPlain,
    /// Noise session over LSP (binary codec) on UDP.
    LspSecure,
}

fn free_port(udp: bool) -> Result<SocketAddr> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
    })
}

/// Two nodes, 1 and 2, that reach each other over `link` only.
async fn pair(link: NodeLink) -> Result<(Node, Node)> {
    let security = match link {
        NodeLink::TcpPlain => Security::DangerPlaintext,
        _ => Security::Noise,
    };
    let addrs = [
        free_port(link == NodeLink::LspSecure)?,
        free_port(link == NodeLink::LspSecure)?,
    ];
    let addr_of = |id: u64| {
        let a = addrs[id as usize - 1];
        if link == NodeLink::LspSecure {
            TransportAddr::Lsp(a)
        } else {
            TransportAddr::Tcp(a)
        }
    };
    let mut nodes = Vec::new();
    for id in 1..=2u64 {
        let peer = 3 - id;
        let node = Node::builder(id)
            .security(security)
            .listen(([127, 0, 0, 1], 0).into())
            .listen_on(addr_of(id))
            .member(Member::without_addr(peer, Role::Member))
            .transport_to(peer, addr_of(peer))
            .start()
            .await
            .with_context(|| format!("start node {id}"))?;
        nodes.push(node);
    }
    let b = nodes.pop().ok_or_else(|| anyhow!("no node"))?;
    let a = nodes.pop().ok_or_else(|| anyhow!("no node"))?;
    Ok((a, b))
}

/// Node 1 sends `n` messages of `size` bytes to node 2, reliably, waiting for queue room.
pub async fn throughput(
    link: NodeLink,
    n: u64,
    size: usize,
    progress: Arc<AtomicU64>,
) -> Result<RunResult> {
    let (a, b) = pair(link).await?;
    let mut inbox = b.incoming();
    let receiver = AbortOnDropHandle::new(tokio::spawn(async move {
        for i in 0..n {
            let msg = inbox
                .recv()
                .await
                .ok_or_else(|| anyhow!("node 2 stopped after {i} messages"))?;
            payload::check(i, size, &msg.payload).map_err(|e| anyhow!(e))?;
            progress.store(i + 1, Ordering::Relaxed);
        }
        Ok::<_, anyhow::Error>(Instant::now())
    }));
    let start = Instant::now();
    for i in 0..n {
        a.send_wait(2, payload::make(i, size), Delivery::Reliable)
            .await
            .map_err(|e| anyhow!("send {i}: {e}"))?;
    }
    let end = receiver.await.context("receiver task")??;
    a.stop().await;
    b.stop().await;
    Ok(RunResult::complete(n, end - start))
}
