//! The Raft part of `hawser demo`: three key-value nodes (openraft on hawser) in this process
//! over 127.0.0.1, their Raft traffic in encrypted sessions over LSP through relays that lose,
//! duplicate and reorder datagrams. Clients write through every node; the leader is stopped; a
//! new one is elected and the writes go on; every acknowledged write is then read back,
//! linearizably, from both survivors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use hawser_net::fault_relay::FaultyRelay;
use hawser_net::fault_socket::FaultConfig;
use hawser_raft::config::NodeConfig;
use hawser_raft::server::{Server, ServerConfig, Transport};
use hawser_raft::store::Storage;
use hawser_raft::types::{NodeId, Request};

/// What the Raft part measured and checked.
pub struct RaftReport {
    /// Time from the leader's stop until both survivors agreed on a new leader.
    pub election: Duration,
    /// Writes acknowledged, before and after the leader's stop.
    pub acknowledged: (usize, usize),
    /// Acknowledged writes read back with another value, or missing.
    pub wrong: Vec<String>,
    /// Datagrams the relays dropped, duplicated and reordered.
    pub faults: (u64, u64, u64),
}

const NODES: u64 = 3;

/// A free port on 127.0.0.1 whose next port is free too (LSP listens there).
fn free_pair() -> anyhow::Result<SocketAddr> {
    for _ in 0..1000 {
        let a: SocketAddr = ([127, 0, 0, 1], fastrand::u16(20_000..32_000)).into();
        let b: SocketAddr = ([127, 0, 0, 1], a.port() + 1).into();
        if std::net::TcpListener::bind(a).is_ok()
            && std::net::UdpSocket::bind(a).is_ok()
            && std::net::UdpSocket::bind(b).is_ok()
        {
            return Ok(a);
        }
    }
    Err(anyhow!("no free port pair on 127.0.0.1"))
}

/// Runs the Raft part with `faults` on every relay.
pub async fn run(faults: FaultConfig, writes: usize) -> anyhow::Result<RaftReport> {
    let addrs: BTreeMap<NodeId, SocketAddr> = (1..=NODES)
        .map(|id| free_pair().map(|a| (id, a)))
        .collect::<anyhow::Result<_>>()?;
    // One relay per ordered pair: node `from` dials node `to`'s LSP port through it.
    let mut relays = Vec::new();
    let mut routes: BTreeMap<NodeId, BTreeMap<NodeId, SocketAddr>> = BTreeMap::new();
    for &from in addrs.keys() {
        for (&to, &addr) in &addrs {
            if from == to {
                continue;
            }
            let lsp = SocketAddr::new(addr.ip(), addr.port() + 1);
            let seed = from * 100 + to;
            let relay = FaultyRelay::start(([127, 0, 0, 1], 0).into(), lsp, faults.clone(), seed)
                .await
                .context("starting a relay")?;
            routes
                .entry(from)
                .or_default()
                .insert(to, relay.local_addr());
            relays.push(relay);
        }
    }
    let mut servers = BTreeMap::new();
    for (&id, &addr) in &addrs {
        let peers = addrs
            .iter()
            .filter(|(&p, _)| p != id)
            .map(|(&p, &a)| (p, a))
            .collect();
        let mut config = ServerConfig::new(id, addr, peers);
        config.raft = NodeConfig::new(id, addr.to_string());
        config.transport = Transport::Lsp;
        config.lsp_routes = routes.remove(&id).unwrap_or_default();
        config.settings.connect_timeout = Duration::from_millis(500);
        config.settings.backoff_max = Duration::from_millis(200);
        let storage = Storage::in_memory(id).context("storage")?;
        let server = Server::start(config, storage)
            .await
            .with_context(|| format!("starting raft node {id}"))?;
        servers.insert(id, server);
    }
    let all: Vec<NodeId> = servers.keys().copied().collect();
    let leader = agreed_leader(&servers, &all, Duration::from_secs(20)).await?;
    println!("  3 nodes over LSP through lossy relays; node {leader} leads");

    let mut acked = BTreeMap::new();
    let before = write_round(&servers, &all, "before", writes, &mut acked).await;
    servers[&leader].stop().await;
    let stopped = Instant::now();
    let survivors: Vec<NodeId> = all.iter().copied().filter(|&id| id != leader).collect();
    let new_leader = agreed_leader(&servers, &survivors, Duration::from_secs(20)).await?;
    let election = stopped.elapsed();
    println!(
        "  node {leader} stopped; node {new_leader} elected after {} ms",
        election.as_millis()
    );
    let after = write_round(&servers, &survivors, "after", writes, &mut acked).await;

    let mut wrong = Vec::new();
    for &reader in &survivors {
        for (key, value) in &acked {
            match servers[&reader].kv.read(key).await {
                Ok(Some(v)) if &v == value => {}
                other => {
                    let got = match other {
                        Ok(Some(v)) => v.to_string(),
                        Ok(None) => "nothing".to_owned(),
                        Err(e) => format!("an error ({e})"),
                    };
                    wrong.push(format!(
                        "node {reader}: {key} read {got}, acknowledged {value}"
                    ));
                }
            }
        }
    }
    let mut faults_seen = (0, 0, 0);
    for r in &relays {
        let s = r.stats();
        faults_seen.0 += s.outbound.dropped + s.inbound.dropped;
        faults_seen.1 += s.outbound.duplicated + s.inbound.duplicated;
        faults_seen.2 += s.outbound.reordered + s.inbound.reordered;
    }
    for &id in &survivors {
        servers[&id].stop().await;
    }
    Ok(RaftReport {
        election,
        acknowledged: (before, after),
        wrong,
        faults: faults_seen,
    })
}

/// Writes `n` keys `{tag}-{i}` through the nodes `via` in turn, four at a time; records the
/// acknowledged ones in `acked`; returns how many were acknowledged.
async fn write_round(
    servers: &BTreeMap<NodeId, Server>,
    via: &[NodeId],
    tag: &str,
    n: usize,
    acked: &mut BTreeMap<String, String>,
) -> usize {
    let mut count = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(4) {
        let calls = chunk.iter().map(|&i| {
            let node = servers[&via[i % via.len()]].kv.clone();
            let (key, value) = (format!("{tag}-{i}"), format!("v{i}"));
            async move {
                let req = Request::Set {
                    key: key.clone(),
                    value: value.clone(),
                };
                node.write(req).await.ok().map(|_| (key, value))
            }
        });
        for (key, value) in futures_util::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
        {
            acked.insert(key, value);
            count += 1;
        }
    }
    count
}

/// Waits until the nodes `ids` agree on a leader among them.
async fn agreed_leader(
    servers: &BTreeMap<NodeId, Server>,
    ids: &[NodeId],
    limit: Duration,
) -> anyhow::Result<NodeId> {
    let deadline = Instant::now() + limit;
    loop {
        let views: Vec<_> = ids.iter().map(|id| servers[id].kv.status()).collect();
        if let Some(l) = views.first().and_then(|s| s.leader) {
            let agreed = views.iter().all(|s| s.leader == Some(l));
            let leads = views.iter().any(|s| s.id == l && s.state == "Leader");
            if agreed && leads {
                return Ok(l);
            }
        }
        if Instant::now() >= deadline {
            let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
            return Err(anyhow!(
                "no leader agreed among nodes {} within {} ms",
                ids.join(", "),
                limit.as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
