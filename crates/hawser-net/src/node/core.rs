//! The engine shared by every built-in network: membership, one [`Peer`] per destination
//! (queues and counters), and the node's lifecycle. The rest of the engine is split by path:
//! - `super::link`: [`Connector`], how one network connects and moves bytes;
//! - `super::send`: the send paths (local, datagram, queued) and internal control frames;
//! - `super::writer`: one writer task per destination that connects lazily, reconnects with
//!   back-off, drops stale messages and closes idle connections;
//! - `super::receive`: counting received messages and handing them to the application;
//! - `super::counters`: node-wide counters;
//! - `super::clock`: the coarse clock of queue times.
//!
//! Reachability (`super::reach`) rides on the same writers: its frames wait in a small control
//! queue per destination, written first.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hawser_proto::node::{
    Member, Membership, MembershipChange, MembershipError, NodeId, PeerStats,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use super::clock::QueueClock;
use super::config::Settings;
use super::connector::Connector;
use super::counters::Counters;
use super::incoming::{IncomingQueue, IncomingSender};
use super::network::NodeStats;
use super::peer::Peer;
use super::reach::{self, ReachState};
use super::rpc::{FrameSink, RequestError, RpcEngine};

/// The shared state of one running network.
pub(crate) struct Core<L> {
    /// This core itself (for paths that hold only `&self`).
    me: std::sync::Weak<Core<L>>,
    /// This node.
    pub id: NodeId,
    /// The settings it started with.
    pub settings: Settings,
    /// How this network connects and moves bytes.
    pub connector: L,
    /// Node-wide counters.
    pub counters: Counters,
    /// The clock of queue times on the per-message send path (`super::clock`).
    pub(super) queue_clock: QueueClock,
    /// Every task of the node, waited for at stop.
    pub tracker: TaskTracker,
    /// Cancelled when the node stops (only by [`Core::begin_stop`]).
    pub cancel: CancellationToken,
    /// Set by [`Core::begin_stop`] just before `cancel`, for the send path
    /// ([`Core::is_stopping`]).
    stopping: Arc<AtomicBool>,
    /// Reachability, unless disabled.
    pub reach: Option<ReachState>,
    /// Requests, responses and streams (`super::rpc`).
    pub rpc: Arc<RpcEngine>,
    membership: RwLock<Membership>,
    /// Members the application removed, most recent last (at most `Settings::max_nodes`):
    /// the flood does not add them back as learned peers ([`Core::was_removed`]) until the
    /// application adds them again.
    removed: Mutex<VecDeque<NodeId>>,
    /// One entry per member at most (bounded by `Settings::max_nodes`).
    peers: Mutex<HashMap<NodeId, Arc<Peer>, BuildHasherDefault<IdHasher>>>,
    pub(super) sender: IncomingSender,
    incoming: IncomingQueue,
}

/// The hasher of the peer map, looked up on every send: node ids are chosen by the
/// application's membership (a node's peers are only ever its members), not by the network,
/// so a multiplicative hash of the id does, without SipHash's cost.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `NodeId` (a `u64`); any other key still hashes, byte by byte.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl<L: Connector> Core<L> {
    /// A running core announcing `local` addresses (reachability); starts the reachability
    /// driver when called within a tokio runtime.
    pub fn new(
        id: NodeId,
        settings: Settings,
        membership: Membership,
        link: L,
        local: &[SocketAddr],
    ) -> Arc<Core<L>> {
        let cancel = CancellationToken::new();
        let (incoming, sender) = IncomingQueue::new(settings.incoming_capacity, cancel.clone());
        let protocols = settings.protocols.iter().map(|p| p.id()).collect();
        let rpc = Arc::new(RpcEngine::new(
            id,
            settings.rpc.within_frame(settings.max_frame),
            protocols,
        ));
        let core = Arc::new_cyclic(|me: &std::sync::Weak<Core<L>>| Core {
            me: me.clone(),
            id,
            reach: ReachState::new(id, &settings, local),
            rpc,
            settings,
            connector: link,
            counters: Counters::default(),
            queue_clock: QueueClock::new(),
            tracker: TaskTracker::new(),
            cancel,
            stopping: Arc::new(AtomicBool::new(false)),
            membership: RwLock::new(membership),
            removed: Mutex::new(VecDeque::new()),
            peers: Mutex::new(HashMap::default()),
            sender,
            incoming,
        });
        let link: std::sync::Weak<dyn FrameSink> = core.me.clone();
        core.rpc.set_sink(link);
        if core.reach.is_some() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let span = tracing::info_span!(parent: None, "reach", node = id.0);
                    let task = reach::drive(core.clone()).instrument(span);
                    rt.spawn(core.tracker.track_future(task));
                }
                Err(_) => warn!(node = %id, "no tokio runtime: reachability not driven"),
            }
        }
        core
    }

    /// This core, while it runs.
    pub(super) fn myself(&self) -> Option<Arc<Core<L>>> {
        self.me.upgrade()
    }

    /// The membership, read-locked (a poisoned lock is recovered: it is plain data).
    pub(super) fn members(&self) -> RwLockReadGuard<'_, Membership> {
        self.membership.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The membership, write-locked (a poisoned lock is recovered: it is plain data).
    fn members_mut(&self) -> RwLockWriteGuard<'_, Membership> {
        self.membership.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of one member.
    pub fn membership_of(&self, id: NodeId) -> Option<Member> {
        let m = self.members();
        m.get(id).cloned()
    }

    /// Every member's id.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let m = self.members();
        m.iter().map(|m| m.id).collect()
    }

    /// Edits a member's addresses in place, without making its writer reconnect (addresses
    /// learned from the flood; the current connection stays good).
    pub fn edit_learned_addrs(&self, id: NodeId, f: impl FnOnce(&mut Vec<SocketAddr>)) {
        let mut m = self.members_mut();
        let Some(member) = m.get(id) else {
            return;
        };
        let mut addrs = member.addrs.clone();
        f(&mut addrs);
        if addrs != member.addrs {
            // Refused (too many addresses): keep the old ones.
            let _ = m.apply(MembershipChange::SetAddrs(id, addrs));
        }
    }

    /// A copy of the membership.
    pub fn membership(&self) -> Membership {
        self.members().clone()
    }

    /// Whether `id` is a member.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.members().contains(id)
    }

    /// Applies a membership change: a removed member's queue is dropped and its writer
    /// stopped; a member whose addresses changed is reconnected.
    pub fn change_membership(
        self: &Arc<Self>,
        change: MembershipChange,
    ) -> Result<(), MembershipError> {
        let (id, addr_change) = match &change {
            MembershipChange::Add(m) => (m.id, true),
            MembershipChange::Remove(id) => (*id, false),
            MembershipChange::SetAddrs(id, _) => (*id, true),
            MembershipChange::SetRole(id, _) => (*id, false),
        };
        let removed = matches!(change, MembershipChange::Remove(_));
        let added = matches!(change, MembershipChange::Add(_));
        self.members_mut().apply(change)?;
        if removed || added {
            let mut tombs = self.removed.lock().unwrap_or_else(|e| e.into_inner());
            tombs.retain(|&t| t != id);
            if removed {
                if tombs.len() >= self.settings.max_nodes.max(1) {
                    tombs.pop_front();
                }
                tombs.push_back(id);
            }
        }
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if removed {
            if let Some(peer) = peers.remove(&id) {
                peer.stop();
                let dropped = peer.lock().queue.clear();
                info!(node = %self.id, peer = %id, dropped, "peer removed");
            }
            self.rpc.fail_peer(id, RequestError::UnknownNode(id));
        } else if let (true, Some(peer)) = (addr_change, peers.get(&id)) {
            peer.generation.fetch_add(1, Ordering::Relaxed);
            peer.wake.notify_one();
        }
        Ok(())
    }

    /// Whether the application removed `id` (and has not added it again): a flooded event
    /// about it is no reason to add it back.
    pub(super) fn was_removed(&self, id: NodeId) -> bool {
        let tombs = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        tombs.contains(&id)
    }

    /// Whether the node is stopping: `cancel.is_cancelled()` without the token's lock.
    pub(super) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The peer entry of a member, created on first use; `None` for a non-member.
    pub(super) fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = peers.get(&id) {
            return Some(p.clone());
        }
        if !self.is_member(id) {
            return None;
        }
        let peer = Arc::new(Peer::new(
            id,
            self.settings.queue,
            self.cancel.child_token(),
            self.stopping.clone(),
        ));
        peers.insert(id, peer.clone());
        Some(peer)
    }

    /// A stream of the messages received.
    pub fn incoming(&self) -> super::IncomingStream {
        self.incoming.stream()
    }

    /// The node-wide counters.
    pub fn stats(&self) -> NodeStats {
        self.counters.snapshot()
    }

    /// The counters of member `id` (`None` if it is not a member).
    pub fn peer_stats(&self, id: NodeId) -> Option<PeerStats> {
        if !self.is_member(id) {
            return None;
        }
        Some(self.peer(id).map(|p| p.stats()).unwrap_or_default())
    }

    /// Begins stopping: cancels every task and releases the link.
    pub fn begin_stop(&self) {
        if !self.cancel.is_cancelled() {
            info!(node = %self.id, "stopping");
        }
        // The flag first: the send path reads it instead of the token.
        self.stopping.store(true, Ordering::SeqCst);
        self.rpc.stop();
        self.cancel.cancel();
        self.tracker.close();
        self.connector.shutdown();
    }
}
