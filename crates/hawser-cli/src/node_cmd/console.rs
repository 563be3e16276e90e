//! What `hawser node` does with its node: sends lines, holds unreliable ones until a datagram
//! key exists, warns of every message dropped and why, and keeps the per-peer tallies of the
//! summary printed at exit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use hawser_net::node::{Delivery, Group, Node, NodeId, NodeStats, SendError};
use hawser_net::session::TransportAddr;
use tokio::time::Instant;
use tracing::warn;

/// Most unreliable messages held for one destination while no datagram key exists.
pub const MAX_HELD: usize = 1024;

/// What the command itself counted for one destination.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Messages refused at once by `send` (queue full, too large, no address, ...).
    pub refused: u64,
    /// Unreliable messages held because no datagram key existed yet.
    pub held: u64,
    /// Held messages given up (no key within the queue deadline, or too many held).
    pub held_dropped: u64,
}

/// Unreliable messages waiting for a datagram key, per destination.
#[derive(Default)]
struct Held {
    queue: VecDeque<(Instant, Bytes)>,
}

/// The node as the command drives it.
pub struct Console {
    node: Node,
    delivery: Delivery,
    /// Whether unreliable messages need a datagram key (Noise sessions).
    sealed: bool,
    held: BTreeMap<NodeId, Held>,
    tallies: BTreeMap<NodeId, Tally>,
    /// Node-wide counters as last seen, to warn of what changed.
    seen: NodeStats,
    /// Messages dropped for want of a datagram key that the command held (not lost).
    own_without_key: u64,
    deadline: Duration,
    /// Drops counted but not warned of yet, by reason (see [`Console::warn_drops`]).
    unwarned: [u64; DROP_REASONS.len()],
    last_warned: Option<Instant>,
    /// Where each peer is dialled, for the hint when it cannot be reached.
    dialled: BTreeMap<NodeId, TransportAddr>,
    /// Peers whose unreachability was already explained.
    hinted: BTreeSet<NodeId>,
}

/// The reasons a node drops messages, as [`Console::warn_drops`] words them.
const DROP_REASONS: [&str; 8] = [
    "datagram(s) dropped on arrival: malformed (a peer dialling lsp:// this node's tcp:// \
     port sends such datagrams)",
    "datagram(s) or connection(s) dropped: from a node outside the membership",
    "unreliable message(s) dropped on arrival: the incoming queue was full",
    "frame(s) dropped: unknown kind",
    "unreliable message(s) dropped on send: no datagram key for the destination yet",
    "datagram(s) dropped on arrival: not sealed, or sealed with a key this node does not hold \
     yet (the sender's session to this node is not up)",
    "datagram(s) dropped on arrival: they did not authenticate",
    "datagram(s) dropped on arrival: replayed",
];

/// The shortest time between two warnings of drops: counts add up in between.
const WARN_EVERY: Duration = Duration::from_secs(1);

impl Console {
    /// Drives `node`, sending lines with `delivery`; held messages are given up after
    /// `deadline`.
    pub fn new(node: Node, delivery: Delivery, sealed: bool, deadline: Duration) -> Console {
        let seen = node.stats();
        Console {
            node,
            delivery,
            sealed,
            held: BTreeMap::new(),
            tallies: BTreeMap::new(),
            seen,
            own_without_key: 0,
            deadline,
            unwarned: [0; DROP_REASONS.len()],
            last_warned: None,
            dialled: BTreeMap::new(),
            hinted: BTreeSet::new(),
        }
    }

    /// Remembers where `peer` is dialled, for the hint if it cannot be reached.
    pub fn dials(&mut self, peer: NodeId, addr: TransportAddr) {
        self.dialled.insert(peer, addr);
    }

    /// The tallies, per destination.
    pub fn tallies(&self) -> &BTreeMap<NodeId, Tally> {
        &self.tallies
    }

    /// Sends one line of input: `@ID text` to one node, anything else to every other one.
    pub fn send_line(&mut self, line: &str) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if let Some(rest) = line.strip_prefix('@') {
            let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
            match id.parse::<u64>() {
                Ok(id) => self.send(NodeId(id), Bytes::copy_from_slice(text.as_bytes())),
                Err(_) => warn!("line ignored: '@{id}' is not a node id; write @ID TEXT"),
            }
            return;
        }
        let payload = Bytes::copy_from_slice(line.as_bytes());
        let targets = self
            .node
            .membership()
            .select(Group::All, Some(self.node.id()));
        if targets.is_empty() {
            warn!("line dropped: no other node to send it to (give --peer)");
        }
        for to in targets {
            self.send(to, payload.clone());
        }
    }

    /// Sends one message, holding it if it is unreliable and no datagram key exists yet.
    fn send(&mut self, to: NodeId, payload: Bytes) {
        let unreliable = self.delivery == Delivery::Unreliable;
        if unreliable && self.held.get(&to).is_some_and(|h| !h.queue.is_empty()) {
            // Behind the ones already waiting, in order.
            self.hold(to, payload);
            return;
        }
        match self.try_send(to, payload.clone()) {
            Ok(true) => {}
            Ok(false) => {
                warn!(
                    "unreliable message to node {} held: no session has brought a datagram key \
                     for it yet (one is being opened); it goes once one has",
                    to.0
                );
                self.hold(to, payload);
            }
            Err(e) => self.refused(to, &e),
        }
    }

    /// Sends; `Ok(false)` if the node dropped it for want of a datagram key.
    fn try_send(&mut self, to: NodeId, payload: Bytes) -> Result<bool, SendError> {
        let watch = self.sealed && self.delivery == Delivery::Unreliable;
        let before = if watch {
            self.node.stats().datagrams_without_key
        } else {
            0
        };
        self.node.try_send(to, payload, self.delivery)?;
        if watch {
            let dropped = self.node.stats().datagrams_without_key - before;
            if dropped > 0 {
                self.own_without_key += dropped;
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn hold(&mut self, to: NodeId, payload: Bytes) {
        let tally = self.tallies.entry(to).or_default();
        let held = self.held.entry(to).or_default();
        if held.queue.len() >= MAX_HELD {
            tally.held_dropped += 1;
            warn!(
                "unreliable message to node {} dropped: {MAX_HELD} already wait for a datagram key",
                to.0
            );
            return;
        }
        tally.held += 1;
        held.queue.push_back((Instant::now(), payload));
    }

    fn refused(&mut self, to: NodeId, e: &SendError) {
        self.tallies.entry(to).or_default().refused += 1;
        let why = match e {
            SendError::QueueFull(_) => "its queue is full".to_owned(),
            SendError::UnknownNode(_) => "it is not a member (give it with --peer)".to_owned(),
            SendError::TooLarge { len, max } => {
                format!("{len} bytes exceed the limit of {max} for this delivery")
            }
            SendError::NoAddress(_) => {
                "it has no address for this delivery (unreliable messages need a peer given \
                 as HOST:PORT or tcp://)"
                    .to_owned()
            }
            SendError::Stopped => "the node is stopping".to_owned(),
            other => other.to_string(),
        };
        warn!("message to node {} dropped: {why}", to.0);
    }

    /// Sends what was held for destinations that now have a key, and gives up on what
    /// waited longer than the deadline.
    pub fn retry_held(&mut self) {
        let now = Instant::now();
        let ids: Vec<NodeId> = self.held.keys().copied().collect();
        for to in ids {
            let mut expired = 0u64;
            while let Some((since, payload)) =
                self.held.get(&to).and_then(|h| h.queue.front().cloned())
            {
                if now.saturating_duration_since(since) <= self.deadline {
                    match self.try_send(to, payload) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => self.refused(to, &e),
                    }
                } else {
                    expired += 1;
                }
                if let Some(held) = self.held.get_mut(&to) {
                    held.queue.pop_front();
                }
            }
            if expired > 0 {
                self.tallies.entry(to).or_default().held_dropped += expired;
                warn!(
                    "{expired} unreliable message(s) to node {} dropped: no datagram key within {}",
                    to.0,
                    crate::echo::fmt_duration(self.deadline)
                );
            }
        }
        self.held.retain(|_, h| !h.queue.is_empty());
    }

    /// Gives up on every held message (at exit), saying so.
    pub fn drop_held(&mut self) {
        for (to, held) in std::mem::take(&mut self.held) {
            let n = held.queue.len() as u64;
            if n > 0 {
                self.tallies.entry(to).or_default().held_dropped += n;
                warn!(
                    "{n} unreliable message(s) to node {} never sent: no datagram key before exit",
                    to.0
                );
            }
        }
    }

    /// Warns of every message the node dropped, by reason: at most once a second (counts
    /// add up in between), or at once with `now_all`.
    pub fn warn_drops(&mut self, now_all: bool) {
        let now = self.node.stats();
        let was = std::mem::replace(&mut self.seen, now);
        let without_key = now
            .datagrams_without_key
            .saturating_sub(was.datagrams_without_key)
            .saturating_sub(std::mem::take(&mut self.own_without_key));
        let deltas = [
            now.malformed_datagrams - was.malformed_datagrams,
            now.unknown_senders - was.unknown_senders,
            now.incoming_dropped - was.incoming_dropped,
            now.bad_frames - was.bad_frames,
            without_key,
            now.unsealed_datagrams - was.unsealed_datagrams,
            now.forged_datagrams - was.forged_datagrams,
            now.replayed_datagrams - was.replayed_datagrams,
        ];
        for (sum, d) in self.unwarned.iter_mut().zip(deltas) {
            *sum += d;
        }
        let due = self.last_warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if !(now_all || due) || self.unwarned.iter().all(|n| *n == 0) {
            return;
        }
        self.last_warned = Some(Instant::now());
        for (n, what) in self.unwarned.iter_mut().zip(DROP_REASONS) {
            if *n > 0 {
                warn!("{n} {what}");
                *n = 0;
            }
        }
    }

    /// Explains, once per peer, a peer that cannot be connected to: where it is dialled and
    /// what usually causes it.
    pub fn hint_unreachable(&mut self) {
        for (id, addr) in &self.dialled {
            if self.hinted.contains(id) {
                continue;
            }
            let Some(stats) = self.node.peer_stats(*id) else {
                continue;
            };
            if stats.connect_failures == 0 {
                continue;
            }
            self.hinted.insert(*id);
            let scheme = match addr {
                TransportAddr::Lsp(_) => "lsp",
                TransportAddr::Ws(_) => "ws",
                _ => "tcp",
            };
            warn!(
                "node {} does not answer at {addr}: is it running, and does it listen there \
                 for {scheme}:// (--listen {addr})? A node takes only the transports its \
                 --listen addresses name",
                id.0
            );
        }
    }
}
