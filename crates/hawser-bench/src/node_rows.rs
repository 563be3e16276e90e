//! Node-to-node rows: reliable messages between two `hawser_net::node::Node`s, over a secure
//! (Noise) or a plaintext session, on TCP or on LSP, to set beside raw batched TCP framing
//! (hawser's target: ≥ 0.8× of it) and to show what encryption costs (secure against
//! plaintext at 64 B and at 16 KiB).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use hawser_net::node::{Delivery, Member, Node, Role};
use hawser_net::session::{Security, TransportAddr};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::payload;
use crate::transports::RunResult;

/// How the two nodes are joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeVariant {
    /// Noise session over TCP (the node's default).
    TcpSecure,
    /// Plaintext session over TCP (`Security::DangerPlaintext`).
    TcpPlain,
    /// Noise session over LSP (binary codec) on UDP.
    LspSecure,
    /// Plaintext session over LSP.
    LspPlain,
    /// Noise session over TCP, the sender handing over [`BATCH`](crate::baselines::BATCH)
    /// messages per `Node::send_batch` (as the TCP and quinn rows flush every `BATCH`).
    TcpSecureBatch,
    /// Noise session over LSP, sent through `Node::send_batch`.
    LspSecureBatch,
    /// Plaintext session over TCP, sent through `Node::send_batch`: like for like with
    /// raw batched TCP framing (plaintext, a flush every `BATCH`).
    TcpPlainBatch,
    /// Plaintext session over LSP, sent through `Node::send_batch`.
    LspPlainBatch,
    /// Noise session with AES-256-GCM (`Security::NoiseAesGcm`, the cipher quinn uses here)
    /// over TCP, sent through `Node::send_batch`.
    TcpAesBatch,
    /// The same over LSP.
    LspAesBatch,
}

impl NodeVariant {
    /// Every node row, in the order of the table.
    pub const ALL: [NodeVariant; 10] = [
        NodeVariant::TcpSecure,
        NodeVariant::TcpPlain,
        NodeVariant::TcpSecureBatch,
        NodeVariant::TcpAesBatch,
        NodeVariant::TcpPlainBatch,
        NodeVariant::LspSecure,
        NodeVariant::LspPlain,
        NodeVariant::LspSecureBatch,
        NodeVariant::LspAesBatch,
        NodeVariant::LspPlainBatch,
    ];

    /// The row's name (also what `--only` matches).
    pub fn name(self) -> &'static str {
        match self {
            NodeVariant::TcpSecure => "node-tcp",
            NodeVariant::TcpPlain => "node-tcp-plain",
            NodeVariant::LspSecure => "node-lsp",
            NodeVariant::LspPlain => "node-lsp-plain",
            NodeVariant::TcpSecureBatch => "node-tcp-batch",
            NodeVariant::LspSecureBatch => "node-lsp-batch",
            NodeVariant::TcpPlainBatch => "node-tcp-plain-batch",
            NodeVariant::LspPlainBatch => "node-lsp-plain-batch",
            NodeVariant::TcpAesBatch => "node-tcp-aes-batch",
            NodeVariant::LspAesBatch => "node-lsp-aes-batch",
        }
    }

    fn is_lsp(self) -> bool {
        matches!(
            self,
            NodeVariant::LspSecure
                | NodeVariant::LspPlain
                | NodeVariant::LspSecureBatch
                | NodeVariant::LspPlainBatch
                | NodeVariant::LspAesBatch
        )
    }

    fn is_batch(self) -> bool {
        matches!(
            self,
            NodeVariant::TcpSecureBatch
                | NodeVariant::LspSecureBatch
                | NodeVariant::TcpPlainBatch
                | NodeVariant::LspPlainBatch
                | NodeVariant::TcpAesBatch
                | NodeVariant::LspAesBatch
        )
    }

    fn security(self) -> Security {
        match self {
            NodeVariant::TcpPlain
            | NodeVariant::LspPlain
            | NodeVariant::TcpPlainBatch
            | NodeVariant::LspPlainBatch => Security::DangerPlaintext,
            NodeVariant::TcpSecure
            | NodeVariant::LspSecure
            | NodeVariant::TcpSecureBatch
            | NodeVariant::LspSecureBatch => Security::Noise,
            NodeVariant::TcpAesBatch | NodeVariant::LspAesBatch => Security::NoiseAesGcm,
        }
    }
}

/// Whether `name` is a node row (they run in a section of their own, at sizes of their own).
pub fn is_node_row(name: &str) -> bool {
    NodeVariant::ALL.iter().any(|l| l.name() == name)
}

/// From this size on, node rows send fewer messages per run ([`LARGE_MESSAGES`]).
pub const LARGE_SIZE: usize = 16 * 1024;

/// Most messages per run of a node row at [`LARGE_SIZE`] or more (320 MB of payload).
pub const LARGE_MESSAGES: u64 = 20_000;

/// Messages per run of a node row of `size` bytes, when the table's rows send `messages`.
pub fn messages(size: usize, messages: u64) -> u64 {
    if size >= LARGE_SIZE {
        messages.min(LARGE_MESSAGES)
    } else {
        messages
    }
}

fn free_port(udp: bool) -> Result<SocketAddr> {
    Ok(if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?
    })
}

/// Two nodes, 1 and 2, that reach each other over `link` only. The listening ports are picked
/// free and bound a moment later, so another socket may take one meanwhile (seen once in a full
/// run, after the idle-connection section): a failed start is retried on fresh ports.
async fn pair(link: NodeVariant) -> Result<(Node, Node)> {
    let mut attempt = 1;
    loop {
        match try_pair(link).await {
            Err(e) if attempt < 5 => {
                eprintln!("node pair, attempt {attempt}: {e:#}; again on other ports");
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn try_pair(link: NodeVariant) -> Result<(Node, Node)> {
    let security = link.security();
    let addrs = [free_port(link.is_lsp())?, free_port(link.is_lsp())?];
    let addr_of = |id: u64| {
        let a = addrs[id as usize - 1];
        if link.is_lsp() {
            TransportAddr::Lsp(a)
        } else {
            TransportAddr::Tcp(a)
        }
    };
    let mut nodes: Vec<Node> = Vec::new();
    for id in 1..=2u64 {
        let peer = 3 - id;
        let started = Node::builder(id)
            .security(security)
            .listen(([127, 0, 0, 1], 0).into())
            .listen_on(addr_of(id))
            .member(Member::without_addr(peer, Role::Member))
            .transport_to(peer, addr_of(peer))
            .start()
            .await
            .with_context(|| format!("start node {id}"));
        match started {
            Ok(node) => nodes.push(node),
            Err(e) => {
                for node in &nodes {
                    node.stop().await;
                }
                return Err(e);
            }
        }
    }
    let b = nodes.pop().ok_or_else(|| anyhow!("no node"))?;
    let a = nodes.pop().ok_or_else(|| anyhow!("no node"))?;
    Ok((a, b))
}

/// Node 1 sends `n` messages of `size` bytes to node 2, reliably, waiting for queue room.
pub async fn throughput(
    link: NodeVariant,
    n: u64,
    size: usize,
    progress: Arc<AtomicU64>,
) -> Result<RunResult> {
    let (a, b) = pair(link).await?;
    let mut inbox = b.incoming();
    // The baselines connect (and quinn completes its handshake) before their clocks start; a
    // node connects lazily on its first message, so one message goes through first to open the
    // connection, run the handshake and open the protocol's stream outside the timed part.
    a.send(2, payload::make(u64::MAX, size), Delivery::Reliable)
        .await
        .map_err(|e| anyhow!("warm-up send: {e}"))?;
    inbox
        .recv()
        .await
        .ok_or_else(|| anyhow!("node 2 stopped before the warm-up message"))?;
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
    if link.is_batch() {
        let per_batch = crate::baselines::BATCH;
        let mut batch = std::collections::VecDeque::with_capacity(per_batch as usize);
        let mut i = 0;
        while i < n {
            while i < n && (batch.len() as u64) < per_batch {
                batch.push_back(payload::make(i, size));
                i += 1;
            }
            a.send_batch(2, &mut batch, Delivery::Reliable)
                .await
                .map_err(|e| anyhow!("send_batch before {i}: {e}"))?;
        }
    } else {
        for i in 0..n {
            a.send(2, payload::make(i, size), Delivery::Reliable)
                .await
                .map_err(|e| anyhow!("send {i}: {e}"))?;
        }
    }
    let end = receiver.await.context("receiver task")??;
    a.stop().await;
    b.stop().await;
    Ok(RunResult::complete(n, end - start))
}
