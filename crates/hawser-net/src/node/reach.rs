//! Reachability in the node: one sans-IO [`Reachability`] engine per node, fed by the node's
//! connections, driven by one task, its changes published as [`PeerEvents`].
//!
//! - Inputs: an outgoing connection that said hello is `handle_connected` (through the address
//!   dialled), and so is an accepted framed hello (through the address it announces); a reach
//!   frame is `handle_event`; any received frame is `handle_traffic` (at most every
//!   `reachable_for / 8` per connection); a failed connect or write is `handle_send_failed`; the
//!   loss of an outgoing connection is `handle_disconnected`. An idle connection closed by the
//!   node itself is not a loss: the next frame reconnects.
//! - Outputs: each [`Outgoing`](hawser_proto::reach::Outgoing) becomes a reach frame on the
//!   neighbour's control queue (written before application messages, bounded, not counted in
//!   `PeerStats`); each peer event goes to every [`PeerEvents`] stream, and an `AddressFound`
//!   of a peer outside the membership adds it as a `Role::Temporary` member (when
//!   `learn_peers`).
//! - The driver task calls `handle_timeout` when `poll_timeout` passes, and from one renewal
//!   interval after start on, every renewal interval (the shortest lease / `renew_divisor`) opens a connection (a ping
//!   frame) to each member with an address that is not a neighbour. A peer learned from the
//!   flood or admitted by hello is connected to at once; a member added by the application at
//!   the next interval (or at its first message).
//!
//! Lock order: the engine's lock is taken first, never while holding the membership, the peer
//! map or a peer's state.

use std::collections::BTreeSet;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_core::Stream;
use hawser_proto::node::{Member, MembershipChange, MembershipError, NodeId, Role};
use hawser_proto::reach::{PeerEvent, PeerSnapshot, ReachStats, Reachability};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::Settings;
use super::connector::Connector;
use super::core::Core;

/// How long a hello from a node that is not a member waits for the flood to make it one
/// ([`Core::admit_soon`]).
pub(crate) const LEARN_GRACE: Duration = Duration::from_secs(1);

/// How often [`Core::admit_soon`] looks at the membership again while it waits.
const LEARN_POLL: Duration = Duration::from_millis(10);
use super::counters::Counters;

/// What a framed connection carries: application payloads, reachability events, pings,
/// datagram keys and rpc messages (the format is `wire::node`'s).
pub(crate) use hawser_proto::wire::node::Frame;

/// The pseudo address of in-memory node `id` in reachability tables: `[fd68:6177::]` plus the
/// id in the low 64 bits, port 0 (the in-memory network routes by id and has no addresses).
pub fn memory_addr(id: NodeId) -> SocketAddr {
    let ip = Ipv6Addr::from((0xfd68_6177_u128 << 112) | u128::from(id.0));
    SocketAddr::new(ip.into(), 0)
}

/// A node's reachability state.
pub(crate) struct ReachState {
    engine: Mutex<EngineState>,
    /// The driver's deadline moved earlier.
    wake: Notify,
    events: broadcast::Sender<PeerEvent>,
    /// The address announced in framed hellos.
    pub(crate) hello_addr: Option<SocketAddr>,
    /// How often a connection may renew reachability by traffic.
    pub(crate) traffic_every: Duration,
}

struct EngineState {
    engine: Reachability,
    /// Members added because the flood or a hello told of them (bounded by the membership:
    /// pruned to current members when it outgrows it).
    learned: BTreeSet<NodeId>,
    /// Where the driver sleeps until.
    armed: Option<Instant>,
}

/// Why a [`PeerEvents`] item is missing: the consumer fell behind by more than
/// `ReachSettings::event_capacity` events, and the oldest `n` were dropped for it.
/// [`Node::peers`](super::Node::peers) gives the current state to resync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("missed {0} peer events (the consumer lagged); resync with Node::peers()")]
pub struct Lagged(pub u64);

/// A [`Stream`] of reachability changes of one node: `Ok(event)` in the order the node's engine
/// produced them, or `Err(Lagged(n))` where `n` events were dropped because this consumer fell
/// `ReachSettings::event_capacity` behind (the others are unaffected). Every stream sees every
/// event from its creation on. Ends when the node stops.
pub struct PeerEvents {
    inner: Pin<Box<dyn Stream<Item = Result<PeerEvent, Lagged>> + Send>>,
}

impl PeerEvents {
    /// A stream that ends at once (networks without reachability).
    pub fn empty() -> PeerEvents {
        PeerEvents {
            inner: Box::pin(futures_util::stream::empty()),
        }
    }

    fn new(rx: broadcast::Receiver<PeerEvent>, stopped: CancellationToken) -> PeerEvents {
        let stream = futures_util::stream::unfold((rx, stopped), |(mut rx, stopped)| async {
            let item = tokio::select! {
                biased;
                r = rx.recv() => match r {
                    Ok(e) => Some(Ok(e)),
                    Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(Lagged(n))),
                    Err(broadcast::error::RecvError::Closed) => None,
                },
                () = stopped.cancelled() => None,
            };
            item.map(|i| (i, (rx, stopped)))
        });
        PeerEvents {
            inner: Box::pin(stream),
        }
    }

    /// The next change; `None` once the node is stopped.
    ///
    /// # Cancel safety
    /// Cancel safe: an event is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<Result<PeerEvent, Lagged>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl Stream for PeerEvents {
    type Item = Result<PeerEvent, Lagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for PeerEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerEvents").finish_non_exhaustive()
    }
}

/// An incarnation from the wall clock (Unix milliseconds), growing within the process even
/// across restarts in the same millisecond.
fn incarnation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now_ms.max(prev.saturating_add(1));
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

impl ReachState {
    /// The state of node `id` announcing `local` addresses; `None` when disabled.
    pub(crate) fn new(id: NodeId, settings: &Settings, local: &[SocketAddr]) -> Option<ReachState> {
        let s = &settings.reach;
        if !s.enabled {
            return None;
        }
        let mut config = s.engine.clone();
        if config.incarnation == 0 {
            config.incarnation = incarnation();
        }
        let now = Instant::now();
        // Settings were validated before the network starts.
        let mut engine = match Reachability::new(id, config, now) {
            Ok(e) => e,
            Err(err) => {
                warn!(node = %id, %err, "reachability disabled: invalid settings");
                return None;
            }
        };
        for &addr in local {
            if let Err(err) = engine.add_local_address(now, addr) {
                warn!(node = %id, %addr, %err, "address not announced");
            }
        }
        // Nothing to send yet: no neighbour. Drop the queued copies (none) and events.
        while engine.poll_transmit().is_some() {}
        let (events, _) = broadcast::channel(s.event_capacity.max(1));
        Some(ReachState {
            engine: Mutex::new(EngineState {
                engine,
                learned: BTreeSet::new(),
                armed: None,
            }),
            wake: Notify::new(),
            events,
            hello_addr: local.first().copied(),
            traffic_every: s.engine.reachable_for / 8,
        })
    }

    fn lock(&self) -> MutexGuard<'_, EngineState> {
        // A poisoned lock (a panic while held: a bug) is recovered: the engine is plain data.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn peers(&self) -> Vec<PeerSnapshot> {
        self.lock().engine.peers()
    }

    pub(crate) fn peer(&self, id: NodeId) -> Option<PeerSnapshot> {
        self.lock().engine.peer(id)
    }

    pub(crate) fn stats(&self) -> ReachStats {
        self.lock().engine.stats()
    }

    pub(crate) fn lease_in_force(&self) -> Duration {
        self.lock().engine.lease_in_force()
    }

    pub(crate) fn subscribe(&self, stopped: CancellationToken) -> PeerEvents {
        PeerEvents::new(self.events.subscribe(), stopped)
    }
}

/// Rate limit of `handle_traffic` for one connection.
#[derive(Debug, Default)]
pub(crate) struct TrafficGate {
    last: Option<Instant>,
}

impl TrafficGate {
    /// Whether traffic at `now` should be reported.
    fn pass(&mut self, now: Instant, every: Duration) -> bool {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

impl<L: Connector> Core<L> {
    /// Runs one input or command on the engine, then drains its outputs (the run loop).
    fn reach_input(self: &Arc<Self>, f: impl FnOnce(&mut Reachability, Instant)) {
        let Some(reach) = self.reach.as_ref() else {
            return;
        };
        let mut st = reach.lock();
        f(&mut st.engine, Instant::now());
        self.drain(reach, &mut st);
        let next = st.engine.poll_timeout();
        if next.is_some_and(|n| st.armed.is_none_or(|a| n < a)) {
            reach.wake.notify_one();
        }
    }

    /// Moves the engine's outputs on, under its lock (so events keep their order).
    fn drain(self: &Arc<Self>, reach: &ReachState, st: &mut EngineState) {
        while let Some(out) = st.engine.poll_transmit() {
            self.push_control(out.peer, Frame::Reach(out.payload));
        }
        while let Some(event) = st.engine.poll_event() {
            match &event {
                PeerEvent::PeerAlive { peer, .. } => {
                    info!(node = %self.id, %peer, "peer alive");
                    self.rpc.set_dead(*peer, false);
                }
                PeerEvent::PeerDead { peer } => {
                    info!(node = %self.id, %peer, "peer dead");
                    self.rpc.set_dead(*peer, true);
                }
                PeerEvent::AddressFound { peer, addr } => {
                    debug!(node = %self.id, %peer, %addr, "address found");
                    self.learn(st, *peer, *addr, true);
                }
                PeerEvent::AddressDown { peer, addr } => {
                    debug!(node = %self.id, %peer, %addr, "address down");
                    self.learn(st, *peer, *addr, false);
                }
                PeerEvent::AddressReachable { peer, addr, .. } => {
                    debug!(node = %self.id, %peer, %addr, "address reachable");
                }
                PeerEvent::AddressUnreachable { peer, addr } => {
                    debug!(node = %self.id, %peer, %addr, "address unreachable");
                }
                _ => debug!(node = %self.id, "reachability event"),
            }
            // No receiver is not an error: nobody listens.
            let _ = reach.events.send(event);
        }
        // Application events are not exposed by the node (yet): drop them.
        while st.engine.poll_app_event().is_some() {}
    }

    /// Adds a peer learned from the flood, or keeps a learned member's addresses current.
    fn learn(self: &Arc<Self>, st: &mut EngineState, peer: NodeId, addr: SocketAddr, found: bool) {
        if peer == self.id || !self.settings.reach.learn_peers || self.was_removed(peer) {
            return;
        }
        let member = self.membership_of(peer);
        match member {
            None if found => {
                let m = Member::new(peer, Role::Temporary, addr);
                self.add_learned(st, m);
            }
            Some(_) if st.learned.contains(&peer) => {
                self.edit_learned_addrs(peer, |addrs| {
                    if found && !addrs.contains(&addr) {
                        addrs.push(addr);
                    } else if !found {
                        addrs.retain(|a| *a != addr);
                    }
                });
            }
            _ => {}
        }
    }

    fn add_learned(self: &Arc<Self>, st: &mut EngineState, m: Member) {
        let id = m.id;
        match self.change_membership(MembershipChange::Add(m)) {
            Ok(()) => {
                info!(node = %self.id, peer = %id, "learned a peer: added as temporary member");
                st.learned.insert(id);
                if st.learned.len() > self.settings.max_nodes {
                    st.learned.retain(|p| self.is_member(*p));
                }
                // Connect at once: the flood says it is there.
                self.poke(id);
            }
            Err(err @ (MembershipError::Full { .. } | MembershipError::TooManyAddrs { .. })) => {
                Counters::bump(&self.counters.learned_refused);
                warn!(node = %self.id, peer = %id, %err, "learned peer refused");
            }
            Err(err) => warn!(node = %self.id, peer = %id, %err, "learned peer refused"),
        }
    }

    /// Whether a hello from `from` may open a connection: a member, or (with `admit_unknown`)
    /// a newcomer, added as a temporary member at `listen`.
    pub(crate) fn admit(self: &Arc<Self>, from: NodeId, listen: Option<SocketAddr>) -> bool {
        if self.is_member(from) {
            return true;
        }
        let Some(reach) = self.reach.as_ref() else {
            return false;
        };
        if !self.settings.reach.admit_unknown || from == self.id {
            return false;
        }
        let mut st = reach.lock();
        let mut m = Member::without_addr(from, Role::Temporary);
        if let Some(a) = listen {
            m.addrs.push(a);
        }
        self.add_learned(&mut st, m);
        self.is_member(from)
    }

    /// [`admit`](Self::admit), waiting up to [`LEARN_GRACE`] (and at most half of
    /// `hello_timeout`, so that the refusal still comes before the session's other node stream
    /// is given up on) for `from` to become a member where this node learns peers from the
    /// flood: a peer that
    /// learned this node from a flood dials it at once, and its hello may arrive before the
    /// same flood does. Refused at once, the messages it wrote behind the hello would be lost
    /// with the session; admitted after the wait, they are read as usual. A node removed by
    /// the application, or one this node cannot learn, is refused at once.
    pub(crate) async fn admit_soon(
        self: &Arc<Self>,
        from: NodeId,
        listen: Option<SocketAddr>,
    ) -> bool {
        if self.admit(from, listen) {
            return true;
        }
        let learns = self.reach.is_some() && self.settings.reach.learn_peers;
        if !learns || from == self.id || self.was_removed(from) {
            return false;
        }
        let grace = LEARN_GRACE.min(self.settings.hello_timeout / 2);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline && !self.is_stopping() {
            tokio::time::sleep(LEARN_POLL).await;
            if self.admit(from, listen) {
                debug!(node = %self.id, peer = %from, "admitted once learned from the flood");
                return true;
            }
        }
        false
    }

    /// A connection to `peer` said hello (either direction).
    pub(crate) fn reach_connected(self: &Arc<Self>, peer: NodeId, via: SocketAddr) {
        self.reach_input(|e, now| e.handle_connected(now, peer, via));
    }

    /// Our outgoing connection to `peer` through `via` was lost.
    pub(crate) fn reach_disconnected(self: &Arc<Self>, peer: NodeId, via: SocketAddr) {
        self.reach_input(|e, now| e.handle_disconnected(now, peer, via));
    }

    /// Connecting or writing to `peer` through `via` failed.
    pub(crate) fn reach_send_failed(self: &Arc<Self>, peer: NodeId, via: &[SocketAddr]) {
        self.reach_input(|e, now| {
            for &a in via {
                e.handle_send_failed(now, peer, a);
            }
        });
    }

    /// A reach frame from neighbour `from` through `via`.
    pub(crate) fn reach_event(self: &Arc<Self>, from: NodeId, via: SocketAddr, payload: &[u8]) {
        self.reach_input(|e, now| e.handle_event(now, from, via, payload));
    }

    /// A frame from `from` through `via` arrived (rate-limited by `gate`).
    pub(crate) fn reach_traffic(
        self: &Arc<Self>,
        from: NodeId,
        via: SocketAddr,
        gate: &mut TrafficGate,
    ) {
        let Some(reach) = self.reach.as_ref() else {
            return;
        };
        if gate.pass(Instant::now(), reach.traffic_every) {
            self.reach_input(|e, now| e.handle_traffic(now, from, via));
        }
    }

    /// Whether `peer`'s lease holds, as last reported.
    pub(crate) fn is_alive(&self, peer: NodeId) -> bool {
        self.reach
            .as_ref()
            .and_then(|r| r.peer(peer))
            .is_some_and(|p| p.alive)
    }

    /// Opens a connection to every member (with an address) that is not a neighbour.
    fn poke_strangers(self: &Arc<Self>, reach: &ReachState) {
        let neighbours: BTreeSet<NodeId> =
            reach.lock().engine.neighbours().map(|(p, _)| p).collect();
        for id in self.member_ids() {
            if id != self.id && !neighbours.contains(&id) {
                self.poke(id);
            }
        }
    }
}

/// The reachability driver of a node: runs the engine's timers and opens connections to
/// members that are not neighbours. Ends when the node stops.
pub(crate) async fn drive<L: Connector>(core: Arc<Core<L>>) {
    let Some(reach) = core.reach.as_ref() else {
        return;
    };
    let lease = core.settings.reach.engine.lease.min_lease();
    let poke_every = lease / core.settings.reach.engine.renew_divisor.max(1);
    // The first round one interval after start: the application often adds its peers'
    // addresses right after starting the node, and a cluster started at once should not dial
    // before its nodes listen.
    let mut next_poke = Instant::now() + poke_every;
    loop {
        let now = Instant::now();
        if now >= next_poke {
            core.poke_strangers(reach);
            next_poke = now + poke_every;
        }
        let deadline = {
            let mut st = reach.lock();
            st.engine.handle_timeout(now);
            core.drain(reach, &mut st);
            let next = st
                .engine
                .poll_timeout()
                .map_or(next_poke, |t| t.min(next_poke));
            st.armed = Some(next);
            next
        };
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            () = core.cancel.cancelled() => break,
            () = reach.wake.notified() => {}
            () = sleep => {}
        }
    }
    debug!(node = %core.id, "reachability driver ended");
}
