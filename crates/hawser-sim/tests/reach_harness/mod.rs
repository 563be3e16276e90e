//! The shared harness of the reachability scenarios: each fake address is one node running a
//! [`Reachability`] engine behind a tiny transport of its own, on one [`SimNet`].
//!
//! The transport is three datagram kinds: `Hello(id)` (a connect), `HelloAck(id)` (its answer;
//! both sides then call `handle_connected`) and `Event(id, payload)` (one flooded event from
//! neighbour `id`). With `auto_connect`, a node says Hello to every address it learns of through
//! the flood, as the real node will. Partitions, isolation and crashes are SimNet's own
//! (`partition`, `isolate`, `remove`), and time is SimNet's virtual clock.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hawser_proto::reach::{AppEvent, Config, EventId, NodeId, PeerEvent, Reachability, Stamp};
use hawser_proto::wire::reach::{self as wire, EventBody};
use hawser_proto::{DatagramEndpoint, Transmit};
use hawser_sim::{fake_addr, SimNet};

const HELLO: u8 = 1;
const HELLO_ACK: u8 = 2;
const EVENT: u8 = 3;

/// One simulated node.
pub struct ReachNode {
    pub engine: Reachability,
    pub addr: SocketAddr,
    /// Say Hello to every address learned from the flood.
    pub auto_connect: bool,
    out: VecDeque<Transmit>,
    /// Every peer event, with when it came out.
    pub log: Vec<(Instant, PeerEvent)>,
    /// Every application event received.
    pub apps: Vec<AppEvent>,
    /// Copies of each event this node put on the wire (originated or forwarded).
    pub copies: BTreeMap<EventId, u32>,
    /// When each of our own ticktocks was originated, and its lease.
    pub ticktocks: Vec<(Instant, Duration)>,
    hellos: BTreeSet<SocketAddr>,
}

impl ReachNode {
    /// Node `i` (id `i + 1`) at `fake_addr(i)`, announcing that address if `announce`.
    pub fn new(i: u32, config: Config, now: Instant, announce: bool) -> ReachNode {
        let id = NodeId(u64::from(i) + 1);
        let addr = fake_addr(i);
        let mut engine = Reachability::new(id, config, now).expect("valid config");
        if announce {
            engine.add_local_address(now, addr).expect("room");
        }
        ReachNode {
            engine,
            addr,
            auto_connect: false,
            out: VecDeque::new(),
            log: Vec::new(),
            apps: Vec::new(),
            copies: BTreeMap::new(),
            ticktocks: Vec::new(),
            hellos: BTreeSet::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.engine.id()
    }

    /// Starts a handshake with the node at `to`.
    pub fn connect(&mut self, now: Instant, to: SocketAddr) {
        self.hellos.insert(to);
        self.push(to, HELLO, &[]);
        self.pump(now);
    }

    /// Runs a command on the engine, then drains it (the run loop).
    pub fn command<R>(
        &mut self,
        now: Instant,
        f: impl FnOnce(&mut Reachability, Instant) -> R,
    ) -> R {
        let r = f(&mut self.engine, now);
        self.pump(now);
        r
    }

    /// Events about `peer`, in order.
    pub fn about(&self, peer: NodeId) -> Vec<(Instant, PeerEvent)> {
        self.log
            .iter()
            .filter(|(_, e)| subject(e) == peer)
            .cloned()
            .collect()
    }

    /// The first instant at which `want` was logged.
    pub fn when(&self, want: &PeerEvent) -> Option<Instant> {
        self.log.iter().find(|(_, e)| e == want).map(|(t, _)| *t)
    }

    fn push(&mut self, to: SocketAddr, kind: u8, payload: &[u8]) {
        let mut d = Vec::with_capacity(9 + payload.len());
        d.push(kind);
        d.extend_from_slice(&self.id().0.to_be_bytes());
        d.extend_from_slice(payload);
        self.out.push_back(Transmit {
            destination: to,
            contents: d.into(),
        });
    }

    /// Drains the engine, as the run loop says.
    fn pump(&mut self, now: Instant) {
        while let Some(o) = self.engine.poll_transmit() {
            if let Ok(e) = wire::decode(&o.payload) {
                let id = EventId {
                    origin: NodeId(e.origin),
                    stamp: e.stamp,
                };
                *self.copies.entry(id).or_default() += 1;
                if let (EventBody::Ticktock { lease, .. }, true) = (&e.body, id.origin == self.id())
                {
                    if self.ticktocks.last().map(|t| t.0) != Some(now) {
                        self.ticktocks.push((now, *lease));
                    }
                }
            }
            self.push(o.addr, EVENT, &o.payload);
        }
        while let Some(e) = self.engine.poll_event() {
            if let PeerEvent::AddressFound { peer, addr } = e {
                let neighbour = self.engine.neighbours().any(|(p, _)| p == peer);
                if self.auto_connect && !neighbour && self.hellos.insert(addr) {
                    self.push(addr, HELLO, &[]);
                }
            }
            self.log.push((now, e));
        }
        while let Some(a) = self.engine.poll_app_event() {
            self.apps.push(a);
        }
    }
}

impl DatagramEndpoint for ReachNode {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        let Some((&kind, rest)) = d.split_first() else {
            return;
        };
        let Some((id, payload)) = rest.split_first_chunk::<8>() else {
            return;
        };
        let peer = NodeId(u64::from_be_bytes(*id));
        match kind {
            HELLO => {
                self.engine.handle_connected(now, peer, from);
                self.push(from, HELLO_ACK, &[]);
            }
            HELLO_ACK => self.engine.handle_connected(now, peer, from),
            EVENT => self.engine.handle_event(now, peer, from, payload),
            _ => {}
        }
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }
}

/// The peer an event is about.
pub fn subject(e: &PeerEvent) -> NodeId {
    match e {
        PeerEvent::AddressDown { peer, .. }
        | PeerEvent::AddressFound { peer, .. }
        | PeerEvent::AddressReachable { peer, .. }
        | PeerEvent::AddressUnreachable { peer, .. }
        | PeerEvent::PeerAlive { peer, .. }
        | PeerEvent::PeerDead { peer } => *peer,
        _ => NodeId(u64::MAX),
    }
}

/// The id of node `i`.
pub fn id(i: u32) -> NodeId {
    NodeId(u64::from(i) + 1)
}

/// A net of `n` announcing nodes with `config`, connected along `edges` (each `(from, to)`
/// says Hello once), then run for `settle`.
pub fn cluster(n: u32, config: &Config, edges: &[(u32, u32)], settle: Duration) -> SimNet {
    let mut net = SimNet::new(hawser_sim::seed());
    for i in 0..n {
        let node = ReachNode::new(i, config.clone(), net.now(), true);
        net.add(fake_addr(i), node).expect("fresh address");
    }
    for &(a, b) in edges {
        connect(&mut net, a, b);
    }
    net.run_for(settle);
    net
}

/// Turns `auto_connect` on for every node of the net.
pub fn auto_connect_all(net: &mut SimNet) {
    net.for_each(|_, n: &mut ReachNode, _| n.auto_connect = true);
}

/// Node `a` says Hello to node `b`.
pub fn connect(net: &mut SimNet, a: u32, b: u32) {
    net.with(fake_addr(a), |n: &mut ReachNode, now| {
        n.connect(now, fake_addr(b))
    })
    .expect("a node");
}

/// Runs a command on node `i`'s engine at the net's present instant.
pub fn command<R>(net: &mut SimNet, i: u32, f: impl FnOnce(&mut Reachability, Instant) -> R) -> R {
    net.with(fake_addr(i), |n: &mut ReachNode, now| n.command(now, f))
        .expect("a node")
}

/// A shared look at node `i`.
pub fn node(net: &SimNet, i: u32) -> &ReachNode {
    net.endpoint::<ReachNode>(fake_addr(i)).expect("a node")
}

/// Whether node `i` sees node `j` alive, with address `fake_addr(j)` existing and reachable.
pub fn sees(net: &SimNet, i: u32, j: u32) -> bool {
    let Some(p) = node(net, i).engine.peer(id(j)) else {
        return false;
    };
    p.alive
        && p.addresses
            .iter()
            .any(|a| a.addr == fake_addr(j) && a.exists && a.reachable)
}

/// Every pair sees each other.
pub fn all_see_all(net: &SimNet, nodes: &[u32]) -> bool {
    nodes
        .iter()
        .all(|&i| nodes.iter().all(|&j| i == j || sees(net, i, j)))
}

/// A ring of `n`.
pub fn ring(n: u32) -> Vec<(u32, u32)> {
    (0..n).map(|i| (i, (i + 1) % n)).collect()
}

/// A line of `n`.
pub fn line(n: u32) -> Vec<(u32, u32)> {
    (1..n).map(|i| (i - 1, i)).collect()
}

/// A connected random graph on `n` nodes: a random tree plus `extra` random edges, no
/// duplicates, drawn from `seed`.
pub fn random_mesh(n: u32, extra: usize, seed: u64) -> Vec<(u32, u32)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut set = BTreeSet::new();
    for i in 1..n {
        set.insert((rng.u32(0..i), i));
    }
    while set.len() < (n as usize - 1) + extra {
        let (a, b) = (rng.u32(0..n), rng.u32(0..n));
        if a != b {
            set.insert((a.min(b), a.max(b)));
        }
    }
    set.into_iter().collect()
}

/// The same stamp type the engine uses, for building ids in tests.
pub fn stamp(incarnation: u64, seq: u64) -> Stamp {
    Stamp { incarnation, seq }
}
