//! [`Cluster`]: whole nodes — each a [`hawser_proto::node::Engine`] — on simulated time.
//!
//! A cluster plays the shell of every node: it dials and accepts connections, writes the
//! batches a node hands out, delivers frames and datagrams, and runs each node's timers, all on
//! one virtual clock. Connections are in-order frame pipes with a per-pair latency (1 to 5 ms,
//! drawn from the seed, or set with [`Cluster::set_latency`]); datagrams go through the same
//! seeded [`FaultInjector`] as [`SimNet`](crate::SimNet)'s links. Same seed,
//! same calls: the same run, bit for bit. A panicking test prints `HAWSER_SEED=<seed> to
//! replay`.
//!
//! # What happens to connections
//! - A dial to a node that is down is refused after one round trip; across a partition it is
//!   never answered (the dialler's `connect_timeout` abandons it); otherwise the other node
//!   admits it after one latency and the dialler hears back after another.
//! - A partition or a crash breaks every connection it cuts: both ends are told at once
//!   (`handle_closed`), and frames in flight on it are lost. Datagrams across a partition, or
//!   to a node that is down, are lost.
//! - A restarted node is a fresh engine with the same id, address and settings, and a higher
//!   reachability incarnation.
//!
//! # Running an application's nodes
//! The application's logic runs between steps: read what a node received with
//! [`events`](Cluster::events) or [`take_events`](Cluster::take_events), act on its engine with
//! [`with`](Cluster::with) (which carries out what the call produced), and move time with
//! [`run_for`](Cluster::run_for) or [`run_until`](Cluster::run_until).
//!
//! ```
//! use std::time::Duration;
//! use hawser_proto::node::{Delivery, Event};
//! use hawser_sim::cluster::Cluster;
//!
//! let mut cluster = Cluster::new(hawser_sim::seed());
//! let [a, b, c] = cluster.add_nodes(3)[..] else { unreachable!() };
//! cluster.with(a, |node, now| node.send(now, b, b"hello", Delivery::Reliable)).unwrap().unwrap();
//! cluster.run_for(Duration::from_millis(50));
//! assert_eq!(cluster.messages(b), [(a, "hello".into())]);
//!
//! // Cut `c` off; `a`'s messages to it wait in its queue and go out once healed.
//! cluster.partition(&[c], &[a, b]);
//! cluster.with(a, |node, now| node.send(now, c, b"later", Delivery::Reliable)).unwrap().unwrap();
//! cluster.run_for(Duration::from_secs(1));
//! assert!(cluster.messages(c).is_empty());
//! cluster.heal_all();
//! assert!(cluster.run_until(|cl| !cl.messages(c).is_empty(), Duration::from_secs(10)));
//! assert!(cluster.events(c).iter().any(|(_, e)| matches!(e, Event::Message { from, .. } if *from == a)));
//! ```

mod run;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::fault::{FaultConfig, FaultInjector};
use hawser_proto::node::{
    Engine, EngineConfig, Event, FrameBatch, Member, Membership, MembershipChange, NodeId, Role,
};

use crate::seed::{link_seed, SeedGuard};

use run::{Pipe, Scheduled};

/// A dial a node asked for, as the cluster saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DialRecord {
    /// When.
    pub at: Instant,
    /// The node dialling.
    pub from: NodeId,
    /// The node dialled.
    pub to: NodeId,
}

/// What the cluster carried.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Dials asked for.
    pub dials: u64,
    /// Dials refused (the node was down, or refused the connection).
    pub dials_refused: u64,
    /// Connections established.
    pub connections: u64,
    /// Connections broken by partitions and crashes.
    pub broken: u64,
    /// Frames written.
    pub frames: u64,
    /// Frames lost on broken connections.
    pub frames_lost: u64,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Datagrams lost (faults, partitions, nodes down).
    pub datagrams_lost: u64,
}

/// One simulated node.
struct SimNode {
    addr: SocketAddr,
    config: EngineConfig,
    /// `None` while crashed.
    engine: Option<Engine>,
    /// The only nodes it knows at start (itself aside), for a node added by
    /// [`Cluster::add_node_knowing`]; `None`: every node.
    knows: Option<BTreeSet<NodeId>>,
    /// Bumped at each restart: actions for an earlier engine are dropped.
    generation: u64,
    events: Vec<(Instant, Event)>,
    deadline: Option<Instant>,
}

/// A deterministic simulated cluster of [`Engine`]s: see the [module docs](self).
pub struct Cluster {
    guard: SeedGuard,
    origin: Instant,
    now: Instant,
    config: EngineConfig,
    nodes: BTreeMap<NodeId, SimNode>,
    pipes: BTreeMap<u64, Pipe>,
    /// Each node's connection name to its pipe.
    ends: BTreeMap<(NodeId, ConnId), u64>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    next_pipe: u64,
    /// Partitioned pairs, smaller id first.
    cut: BTreeSet<(NodeId, NodeId)>,
    latency: BTreeMap<(NodeId, NodeId), Duration>,
    faults: FaultConfig,
    injectors: BTreeMap<(NodeId, NodeId), FaultInjector>,
    batch: FrameBatch,
    dials: Vec<DialRecord>,
    stats: ClusterStats,
}

use hawser_proto::node::engine::ConnId;

impl Cluster {
    /// An empty cluster seeded with `seed`, whose nodes run with the default
    /// [`EngineConfig`] (reachability on, 10 s leases).
    pub fn new(seed: u64) -> Cluster {
        Cluster::with_config(seed, EngineConfig::default())
    }

    /// An empty cluster whose nodes run with `config`.
    pub fn with_config(seed: u64, config: EngineConfig) -> Cluster {
        #[allow(clippy::disallowed_methods)] // the only clock read: the origin
        let origin = Instant::now();
        Cluster {
            guard: SeedGuard::new(seed),
            origin,
            now: origin,
            config,
            nodes: BTreeMap::new(),
            pipes: BTreeMap::new(),
            ends: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_pipe: 0,
            cut: BTreeSet::new(),
            latency: BTreeMap::new(),
            faults: FaultConfig::default(),
            injectors: BTreeMap::new(),
            batch: FrameBatch::default(),
            dials: Vec::new(),
            stats: ClusterStats::default(),
        }
    }

    /// Adds `n` nodes (ids following the highest so far, from 1; addresses from
    /// [`fake_addr`](crate::fake_addr)), each a `Role::Member` knowing every node; the nodes
    /// already there learn of them. Returns their ids.
    pub fn add_nodes(&mut self, n: usize) -> Vec<NodeId> {
        let first = self.nodes.keys().next_back().map_or(1, |id| id.0 + 1);
        let ids: Vec<NodeId> = (first..first + n as u64).map(NodeId).collect();
        for &id in &ids {
            let addr = crate::fake_addr(u32::try_from(id.0 - 1).unwrap_or(u32::MAX));
            let config = self.config.clone();
            let node = SimNode {
                addr,
                config,
                engine: None,
                knows: None,
                generation: 0,
                events: Vec::new(),
                deadline: None,
            };
            self.nodes.insert(id, node);
        }
        let now = self.now;
        let existing: Vec<NodeId> = self
            .nodes
            .keys()
            .copied()
            .filter(|i| !ids.contains(i))
            .collect();
        for id in existing {
            for &new in &ids {
                let member = Member::new(new, Role::Member, self.nodes[&new].addr);
                let _ = self.with(id, |e, now| {
                    e.change_membership(now, MembershipChange::Add(member))
                });
            }
        }
        for &id in &ids {
            self.start(id, now);
        }
        ids
    }

    /// Adds one node (the id following the highest so far) that knows only itself and
    /// `knows`, and that no node is told of: it joins as a stranger would, through nodes that
    /// admit it (`admit_unknown`) or learn it from the flood. A restart keeps what it knows at
    /// start. Returns its id.
    pub fn add_node_knowing(&mut self, knows: &[NodeId]) -> NodeId {
        let id = NodeId(self.nodes.keys().next_back().map_or(1, |id| id.0 + 1));
        let node = SimNode {
            addr: crate::fake_addr(u32::try_from(id.0 - 1).unwrap_or(u32::MAX)),
            config: self.config.clone(),
            engine: None,
            knows: Some(knows.iter().copied().collect()),
            generation: 0,
            events: Vec::new(),
            deadline: None,
        };
        self.nodes.insert(id, node);
        let now = self.now;
        self.start(id, now);
        id
    }

    /// Starts (or restarts) node `id`'s engine.
    fn start(&mut self, id: NodeId, now: Instant) {
        let mut membership = self.membership();
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if let Some(knows) = &node.knows {
            let others: Vec<NodeId> = membership
                .iter()
                .map(|m| m.id)
                .filter(|m| *m != id)
                .collect();
            for other in others.into_iter().filter(|m| !knows.contains(m)) {
                membership.remove(other);
            }
        }
        node.generation += 1;
        let mut config = node.config.clone();
        if let Some(reach) = config.reach.as_mut() {
            // Grows across restarts, as reachability needs.
            reach.incarnation = reach.incarnation.saturating_add(node.generation);
        }
        let engine = Engine::new(id, config, membership, &[node.addr], now)
            .expect("the cluster's engine config is valid");
        node.engine = Some(engine);
        self.drain(id);
    }

    /// Every node as a member.
    fn membership(&self) -> Membership {
        let members = self
            .nodes
            .iter()
            .map(|(&id, n)| Member::new(id, Role::Member, n.addr));
        Membership::from_members(members).expect("within the membership's bounds")
    }

    /// Moves node `id` to `addr` (a node that is down: it announces the new address when it
    /// restarts; the others keep what their memberships say until told otherwise).
    pub fn set_addr(&mut self, id: NodeId, addr: SocketAddr) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.addr = addr;
        }
    }

    /// Replaces node `id`'s settings from its next restart on.
    pub fn set_config(&mut self, id: NodeId, config: EngineConfig) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.config = config;
        }
    }

    // ----- time -----

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.guard.seed()
    }

    /// The simulated present.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The instant the cluster started at.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Simulated time since the origin.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    // ----- nodes -----

    /// The nodes' ids, increasing.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Node `id`'s address.
    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.nodes.get(&id).map(|n| n.addr)
    }

    /// Node `id`'s engine (`None` if unknown or down).
    pub fn engine(&self, id: NodeId) -> Option<&Engine> {
        self.nodes.get(&id)?.engine.as_ref()
    }

    /// Whether node `id` runs.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.engine(id).is_some()
    }

    /// Calls `f` on node `id`'s engine at the present, then carries out what it produced.
    /// `None` if the node is unknown or down.
    pub fn with<R>(&mut self, id: NodeId, f: impl FnOnce(&mut Engine, Instant) -> R) -> Option<R> {
        let now = self.now;
        let engine = self.nodes.get_mut(&id)?.engine.as_mut()?;
        let r = f(engine, now);
        self.drain(id);
        Some(r)
    }

    /// The events node `id` produced (through every restart), with when.
    pub fn events(&self, id: NodeId) -> &[(Instant, Event)] {
        self.nodes.get(&id).map_or(&[], |n| &n.events)
    }

    /// Takes the events node `id` produced so far.
    pub fn take_events(&mut self, id: NodeId) -> Vec<(Instant, Event)> {
        self.nodes
            .get_mut(&id)
            .map(|n| std::mem::take(&mut n.events))
            .unwrap_or_default()
    }

    /// The messages node `id` received (reliable and unreliable), in order, with their
    /// senders.
    pub fn messages(&self, id: NodeId) -> Vec<(NodeId, Bytes)> {
        let received = self.events(id).iter().filter_map(|(_, e)| match e {
            Event::Message { from, payload, .. } => Some((*from, payload.clone())),
            _ => None,
        });
        received.collect()
    }

    /// Every dial so far, in order.
    pub fn dials(&self) -> &[DialRecord] {
        &self.dials
    }

    /// What the cluster carried.
    pub fn stats(&self) -> ClusterStats {
        self.stats
    }

    // ----- faults -----

    /// Cuts every pair of a node of `a` and a node of `b`: connections between them break
    /// (both ends told at once), dials are not answered, datagrams are lost.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.cut.insert(pair(x, y));
                }
            }
        }
        let broken: Vec<u64> = self
            .pipes
            .iter()
            .filter(|(_, p)| self.cut.contains(&pair(p.dialer.0, p.acceptor)))
            .map(|(&k, _)| k)
            .collect();
        for pipe in broken {
            self.break_pipe(pipe);
        }
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.ids().into_iter().filter(|&o| o != id).collect();
        self.partition(&[id], &others);
    }

    /// Joins the pairs of `a` and `b` again.
    pub fn heal(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut.remove(&pair(x, y));
            }
        }
    }

    /// Joins every pair again.
    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    /// Whether `a` and `b` are cut from each other.
    pub fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        self.cut.contains(&pair(a, b))
    }

    /// Stops node `id` at once: its engine is dropped (what it held is lost), its connections
    /// break, and what is sent to it is lost until [`restart`](Self::restart).
    pub fn crash(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        node.engine = None;
        node.deadline = None;
        let broken: Vec<u64> = self
            .pipes
            .iter()
            .filter(|(_, p)| p.dialer.0 == id || p.acceptor == id)
            .map(|(&k, _)| k)
            .collect();
        for pipe in broken {
            self.break_pipe(pipe);
        }
    }

    /// Starts node `id` again: a fresh engine with the same id, address and settings.
    pub fn restart(&mut self, id: NodeId) {
        if self.nodes.get(&id).is_some_and(|n| n.engine.is_none()) {
            let now = self.now;
            self.start(id, now);
        }
    }

    /// Sets the one-way latency between `a` and `b` (both directions).
    pub fn set_latency(&mut self, a: NodeId, b: NodeId, latency: Duration) {
        self.latency.insert(pair(a, b), latency);
    }

    /// The one-way latency between `a` and `b`: as set, else 1 to 5 ms drawn from the seed.
    pub fn latency(&self, a: NodeId, b: NodeId) -> Duration {
        if let Some(&l) = self.latency.get(&pair(a, b)) {
            return l;
        }
        let (x, y) = pair(a, b);
        let addr = |id: NodeId| self.nodes.get(&id).map_or(crate::fake_addr(0), |n| n.addr);
        let draw = link_seed(self.seed(), addr(x), addr(y)) % 5;
        Duration::from_millis(1 + draw)
    }

    /// Applies `config` to every datagram from now on (loss, duplication, delay...), drawn
    /// from each directed pair's own seeded injector.
    pub fn set_datagram_faults(&mut self, config: FaultConfig) {
        self.faults = config.clone();
        for inj in self.injectors.values_mut() {
            inj.set_config(config.clone());
        }
    }
}

/// An unordered pair, smaller first.
fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}
