//! [`Engine`]: the node layer as one sans-IO state machine — per-destination queues and
//! connections, datagrams, requests with responses, and reachability — with no socket, no
//! task and no clock.
//!
//! A shell owns the sockets and the clock: it dials and accepts connections, moves frames and
//! datagrams, and feeds the outcome back; the engine decides what goes where and when. The
//! simulator's `hawser_sim::cluster::Cluster` is such a shell, and so is the tokio node layer
//! (`hawser_net::node::Node`).
//!
//! # Organization
//! - [`Engine`]: the state machine; [`EngineConfig`] and [`RpcConfig`]: its bounds.
//! - [`Transmit`]: what the shell must do (dial, close, send a datagram, write frames).
//! - [`Event`]: what the application hears (messages, requests, responses, peers).
//! - [`ConnId`], [`RequestId`], [`InboundId`]: names the engine gives out.
//! - [`SendError`], [`RequestError`], [`RespondError`], [`Refusal`], [`DialError`],
//!   [`WriteError`], [`ConfigError`]: one error enum per operation.
//! - [`EngineStats`], [`RpcStats`] (node-wide) and `PeerStats` (per destination): counters.
//!
//! The engine's parts: `peer` (one destination's queues and connection state machine),
//! `conn` (connection inputs and writing), `route` (sending, broadcasting, datagrams), `rpc`
//! (request correlation), `reach` (reachability wiring), `event` (what goes in and out).
//!
//! # What the shell keeps
//! Encryption (Noise sessions, datagram keys), byte-stream multiplexing and the hello that
//! opens a connection are the shell's. A [`FrameKind::DatagramKey`] frame reaching the engine
//! is dropped and counted in [`EngineStats::bad_frames`]; the shell's secure layer takes keys
//! before frames reach the engine.
//!
//! [`FrameKind::DatagramKey`]: crate::wire::node::FrameKind::DatagramKey

mod config;
mod conn;
mod event;
mod peer;
mod reach;
mod route;
mod rpc;

/// Marks destination `id` (`d`) changed, for the timer index.
fn mark(d: &mut Dest, dirty: &mut Vec<NodeId>, id: NodeId) {
    if !d.dirty {
        d.dirty = true;
        dirty.push(id);
    }
}

/// Destination `id` of `dests`, to change (marked for the timer index).
fn dest_for_change<'a>(
    dests: &'a mut BTreeMap<NodeId, Dest>,
    dirty: &mut Vec<NodeId>,
    id: NodeId,
) -> Option<&'a mut Dest> {
    let d = dests.get_mut(&id)?;
    mark(d, dirty, id);
    Some(d)
}

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::node::{FrameBatch, Membership, MembershipChange, MembershipError, NodeId, PeerStats};
use crate::reach::{PeerSnapshot, Reachability};

pub use config::{ConfigError, EngineConfig, OversizeDatagram, RpcConfig};
pub use event::{
    BroadcastReport, CloseReason, ConnId, DialError, EngineStats, Event, InboundId, Refusal,
    RequestError, RequestId, RespondError, RpcStats, SendError, Transmit, WriteError,
};

use peer::{ConnState, Dest};

/// The node layer of one node as a sans-IO state machine.
///
/// # Method families
/// - application commands: [`send`](Self::send), [`broadcast`](Self::broadcast),
///   [`request`](Self::request), [`respond`](Self::respond), [`cancel`](Self::cancel),
///   [`change_membership`](Self::change_membership), [`close`](Self::close);
/// - connection and network inputs: [`handle_dialed`](Self::handle_dialed),
///   [`handle_accepted`](Self::handle_accepted), [`handle_frame`](Self::handle_frame),
///   [`handle_written`](Self::handle_written), [`handle_closed`](Self::handle_closed),
///   [`handle_datagram`](Self::handle_datagram), [`handle_timeout`](Self::handle_timeout);
/// - outputs: [`poll_transmit`](Self::poll_transmit), [`take_frames`](Self::take_frames),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout);
/// - getters: [`stats`](Self::stats), [`peer_stats`](Self::peer_stats),
///   [`peers`](Self::peers), [`is_alive`](Self::is_alive), [`membership`](Self::membership)...
///
/// # The run loop
/// After every command or input, drain [`poll_transmit`](Self::poll_transmit) (carrying each
/// out: a `Writable` is answered with `take_frames`, the batch written, then
/// [`handle_written`](Self::handle_written)) and [`poll_event`](Self::poll_event) until both
/// give `None`; then sleep until [`poll_timeout`](Self::poll_timeout) and call
/// [`handle_timeout`](Self::handle_timeout). An early or extra `handle_timeout` does nothing
/// harmful. Every `now` is the shell's; one earlier than the latest seen counts as the latest.
///
/// Frames are the bodies of `wire::node` frames (kind byte first, without the 4-byte length);
/// batches from `take_frames` are whole frames with their lengths, ready for a byte stream.
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use hawser_proto::node::{Delivery, Engine, EngineConfig, Event, FrameBatch, Member,
///     Membership, NodeId, Role, Transmit};
///
/// let (a, b): (std::net::SocketAddr, std::net::SocketAddr) =
///     ("10.0.0.1:7000".parse().unwrap(), "10.0.0.2:7000".parse().unwrap());
/// let members = Membership::from_members([
///     Member::new(1, Role::Member, a),
///     Member::new(2, Role::Member, b),
/// ]).unwrap();
/// let t0 = Instant::now(); // the shell's clock, never the engine's
/// let mut config = EngineConfig::default();
/// config.reach = None; // no reachability in this example
/// let mut n1 = Engine::new(NodeId(1), config.clone(), members.clone(), &[a], t0).unwrap();
/// let mut n2 = Engine::new(NodeId(2), config, members, &[b], t0).unwrap();
///
/// n1.send(t0, NodeId(2), b"hello", Delivery::Reliable).unwrap();
/// // The first message dials.
/// let Some(Transmit::Dial { conn, peer, addrs }) = n1.poll_transmit() else { panic!() };
/// assert_eq!((peer, addrs), (NodeId(2), vec![b]));
/// // The shell connects; the other side admits the hello.
/// let inbound = n2.handle_accepted(t0, NodeId(1), Some(a)).unwrap();
/// n1.handle_dialed(t0, conn, Ok(b));
/// let Some(Transmit::Writable { conn: w }) = n1.poll_transmit() else { panic!() };
/// let mut batch = FrameBatch::default();
/// assert!(n1.take_frames(t0, w, &mut batch));
/// // The shell writes the batch; the other side reads frames off the stream.
/// for (frame, _) in batch.frames() {
///     n2.handle_frame(t0, inbound, frame.slice(4..)); // without the length prefix
/// }
/// n1.handle_written(t0, w, &mut batch, Ok(()));
/// let msg = std::iter::from_fn(|| n2.poll_event()).find(|e| matches!(e, Event::Message { .. }));
/// assert_eq!(msg, Some(Event::Message {
///     from: NodeId(1), delivery: Delivery::Reliable, payload: Bytes::from_static(b"hello"),
/// }));
/// assert_eq!(n1.peer_stats(NodeId(2)).unwrap().sent, 1);
/// ```
#[derive(Debug)]
pub struct Engine {
    id: NodeId,
    config: EngineConfig,
    membership: Membership,
    /// Members the application removed, most recent last (at most `max_nodes`): neither the
    /// flood nor a connection adds them back until the application does.
    removed: VecDeque<NodeId>,
    /// Members added because reachability told of them (pruned to members when it outgrows
    /// the membership's bound).
    learned: BTreeSet<NodeId>,
    /// One per member used as a destination or source (bounded by the membership).
    dests: BTreeMap<NodeId, Dest>,
    /// Each destination's next timeout, in order, as of its last change brought in
    /// ([`Engine::settle`]): `poll_timeout` reads the earliest without walking every
    /// destination. At most one entry per destination.
    timers: BTreeSet<(Instant, NodeId)>,
    /// Destinations changed since their entry in `timers` was made (each once: `Dest::dirty`).
    dirty: Vec<NodeId>,
    /// Connections, both ways (one outbound per destination, at most
    /// `max_inbound_connections` inbound).
    conns: BTreeMap<ConnId, conn::Conn>,
    inbound_conns: usize,
    next_conn: u64,
    reach: Option<reach::Wiring>,
    rpc: rpc::Rpc,
    /// At most one `Dial` and one `Writable` per destination, a `Close` per connection, and
    /// datagrams bounded by `max_events`.
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: EngineStats,
    /// The latest `now` seen.
    now: Instant,
    stopped: bool,
    /// Reused to drop control frames beyond the bound.
    scratch: FrameBatch,
    /// Reused to walk the destinations in `handle_timeout`.
    ids: Vec<NodeId>,
}

impl Engine {
    /// Node `id` of `membership`, announcing `local_addrs` to reachability, at `now`.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` does not validate.
    pub fn new(
        id: NodeId,
        config: EngineConfig,
        membership: Membership,
        local_addrs: &[SocketAddr],
        now: Instant,
    ) -> Result<Engine, ConfigError> {
        config.validate()?;
        let reach = match &config.reach {
            Some(c) => Some(reach::Wiring::new(id, c.clone(), local_addrs, now)?),
            None => None,
        };
        Ok(Engine {
            id,
            rpc: rpc::Rpc::new(config.rpc),
            config,
            membership,
            removed: VecDeque::new(),
            learned: BTreeSet::new(),
            dests: BTreeMap::new(),
            timers: BTreeSet::new(),
            dirty: Vec::new(),
            conns: BTreeMap::new(),
            inbound_conns: 0,
            next_conn: 0,
            reach,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EngineStats::default(),
            now,
            stopped: false,
            scratch: FrameBatch::default(),
            ids: Vec::new(),
        })
    }

    // ----- outputs -----

    /// The next thing the shell must do.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.settle();
        self.transmits.pop_front()
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.settle();
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next: the earliest of
    /// each destination's connect timeout, back-off expiry, idle timeout and queue expiry, the
    /// requests' deadlines, and reachability's timers (renewals, leases, the periodic pings to
    /// members that are not neighbours). `None` when nothing is timed, and once closed. Any
    /// command or input can change it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopped {
            return None;
        }
        let dests = self.next_dest_timeout();
        debug_assert_eq!(
            dests,
            self.dests
                .values()
                .filter_map(|d| d.next_timeout(self.config.idle_timeout))
                .min(),
            "the timer index missed a change"
        );
        let reach = self.reach.as_ref().and_then(reach::Wiring::poll_timeout);
        dests
            .into_iter()
            .chain(self.rpc.poll_timeout())
            .chain(reach)
            .min()
    }

    /// The earliest timeout of any destination: the first index entry of an unchanged one,
    /// or a changed one's own.
    fn next_dest_timeout(&self) -> Option<Instant> {
        let idle = self.config.idle_timeout;
        let changed = self
            .dirty
            .iter()
            .filter_map(|id| self.dests.get(id)?.next_timeout(idle))
            .min();
        let unchanged = self
            .timers
            .iter()
            .find(|(_, id)| self.dests.get(id).is_some_and(|d| !d.dirty))
            .map(|&(t, _)| t);
        changed.into_iter().chain(unchanged).min()
    }

    /// Brings the timer index up to date with the destinations changed since.
    fn settle(&mut self) {
        let idle = self.config.idle_timeout;
        for id in self.dirty.drain(..) {
            let Some(d) = self.dests.get_mut(&id) else {
                continue;
            };
            d.dirty = false;
            let next = d.next_timeout(idle);
            if next != d.indexed {
                if let Some(t) = d.indexed {
                    self.timers.remove(&(t, id));
                }
                if let Some(t) = next {
                    self.timers.insert((t, id));
                }
                d.indexed = next;
            }
        }
    }

    // ----- timers and membership -----

    /// Advances to `now`: abandons dials past `connect_timeout`, ends back-offs (dialling
    /// again if there is work), closes idle connections, drops stale messages, times requests
    /// out, and runs reachability's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        if self.stopped {
            return;
        }
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(self.dests.keys().copied());
        for &id in &ids {
            self.dest_timeout(now, id);
        }
        self.ids = ids;
        self.rpc_timeout(now);
        self.reach_timeout(now);
    }

    /// One destination's timers.
    fn dest_timeout(&mut self, now: Instant, id: NodeId) {
        let idle = self.config.idle_timeout;
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return;
        };
        let dropped = d.queue.expire(now);
        let control_dropped = d.control.expire(now);
        self.stats.control_dropped += control_dropped as u64;
        self.room_check(id, dropped);
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return;
        };
        match d.link {
            ConnState::Dialing { conn, deadline } if now >= deadline => {
                self.transmits.push_back(Transmit::Close {
                    conn,
                    reason: CloseReason::ConnectTimeout,
                });
                self.conns.remove(&conn);
                self.dial_failed(now, id);
            }
            ConnState::Backoff { until } if now >= until => d.link = ConnState::Idle,
            ConnState::Connected { conn, .. }
                if !d.has_work()
                    && d.in_flight.is_none()
                    && now.saturating_duration_since(d.last_active) >= idle =>
            {
                // Not a loss: the next frame reconnects.
                d.link = ConnState::Idle;
                d.queue.release_buffer();
                self.conns.remove(&conn);
                self.transmits.push_back(Transmit::Close {
                    conn,
                    reason: CloseReason::Idle,
                });
                self.event(Event::Disconnected { peer: id });
            }
            _ => {}
        }
        self.kick(now, id);
    }

    /// Applies a membership change. A removed member's queue is dropped, its connections
    /// closed, its pending requests fail with [`RequestError::UnknownNode`], and neither
    /// reachability nor a connection adds it back until the application does. A member whose
    /// addresses change (or that is added again) is reconnected.
    ///
    /// # Errors
    /// [`MembershipError`]; nothing changes.
    pub fn change_membership(
        &mut self,
        now: Instant,
        change: MembershipChange,
    ) -> Result<(), MembershipError> {
        let now = self.clock(now);
        let (id, addr_change) = match &change {
            MembershipChange::Add(m) => (m.id, true),
            MembershipChange::Remove(id) => (*id, false),
            MembershipChange::SetAddrs(id, _) => (*id, true),
            MembershipChange::SetRole(id, _) => (*id, false),
        };
        let removed = matches!(change, MembershipChange::Remove(_));
        let added = matches!(change, MembershipChange::Add(_));
        self.membership.apply(change)?;
        if removed || added {
            self.removed.retain(|&t| t != id);
            if removed {
                if self.removed.len() >= self.membership.max_nodes().max(1) {
                    self.removed.pop_front();
                }
                self.removed.push_back(id);
                self.learned.remove(&id);
            }
        }
        if removed {
            self.forget_peer(now, id);
        } else if addr_change {
            self.reconnect(now, id);
        }
        Ok(())
    }

    /// Stops: every connection is closed (a `Close` each), every queue dropped, every request
    /// of this node fails with [`RequestError::Stopped`]; commands fail with `Stopped` from now
    /// on and inputs are ignored. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.clock(now);
        if self.stopped {
            return;
        }
        self.stopped = true;
        for d in self.dests.values_mut() {
            d.queue.clear();
            d.control.clear();
            d.link = ConnState::Idle;
            d.indexed = None;
            d.dirty = false;
        }
        self.timers.clear();
        self.dirty.clear();
        let conns = std::mem::take(&mut self.conns);
        for conn in conns.into_keys() {
            self.transmits.push_back(Transmit::Close {
                conn,
                reason: CloseReason::Stopped,
            });
        }
        self.inbound_conns = 0;
        self.rpc_stop();
    }

    // ----- getters -----

    /// This node.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The membership as it is now (with learned members).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Whether the application removed `peer` (and has not added it back since).
    pub fn was_removed(&self, peer: NodeId) -> bool {
        self.removed.contains(&peer)
    }

    /// The address to announce in hellos (the first local address given to
    /// [`new`](Self::new)), if reachability runs.
    pub fn announced_addr(&self) -> Option<SocketAddr> {
        self.reach.as_ref().and_then(reach::Wiring::announced)
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Whether this node's connection to `peer` is up.
    pub fn is_connected(&self, peer: NodeId) -> bool {
        self.dests.get(&peer).is_some_and(Dest::is_connected)
    }

    /// The counters of member `id` (`None` if it is not a member).
    pub fn peer_stats(&self, id: NodeId) -> Option<PeerStats> {
        if !self.membership.contains(id) {
            return None;
        }
        Some(
            self.dests
                .get(&id)
                .map(Dest::peer_stats)
                .unwrap_or_default(),
        )
    }

    /// The counters of every member, by increasing id.
    pub fn all_peer_stats(&self) -> impl Iterator<Item = (NodeId, PeerStats)> + '_ {
        let stats = |id| {
            self.dests
                .get(&id)
                .map(Dest::peer_stats)
                .unwrap_or_default()
        };
        self.membership.iter().map(move |m| (m.id, stats(m.id)))
    }

    /// Node-wide counters.
    pub fn stats(&self) -> EngineStats {
        let mut stats = self.stats;
        stats.rpc = self.rpc.stats();
        stats
    }

    /// Every peer reachability knows of (empty without reachability).
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        self.reach
            .as_ref()
            .map(|r| r.engine.peers())
            .unwrap_or_default()
    }

    /// Whether `peer`'s lease holds, as last reported (`false` without reachability).
    pub fn is_alive(&self, peer: NodeId) -> bool {
        self.reach.as_ref().is_some_and(|r| r.engine.is_alive(peer))
    }

    /// The reachability engine, if it runs (for its snapshots and counters).
    pub fn reachability(&self) -> Option<&Reachability> {
        self.reach.as_ref().map(|r| &r.engine)
    }

    /// Events waiting to be polled, and transmits waiting (for bounds checks).
    pub fn pending(&self) -> (usize, usize) {
        (self.events.len(), self.transmits.len())
    }

    // ----- internals -----

    /// `now`, or the latest seen if that is later.
    fn clock(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Queues an event, or counts it dropped beyond `max_events`.
    fn event(&mut self, event: Event) {
        if self.events.len() >= self.config.max_events {
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(event);
    }

    /// The destination state of member `id`, created on first use; `None` for a non-member.
    fn dest_mut(&mut self, id: NodeId) -> Option<&mut Dest> {
        if !self.membership.contains(id) {
            return None;
        }
        let (config, now) = (&self.config, self.now);
        let d = self
            .dests
            .entry(id)
            .or_insert_with(|| Dest::new(config, now));
        mark(d, &mut self.dirty, id);
        Some(d)
    }

    /// After `dropped` stale messages left `id`'s queue, or a batch was taken: tells a
    /// refused sender when there is room again.
    fn room_check(&mut self, id: NodeId, dropped: usize) {
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return;
        };
        if d.want_room && (dropped > 0 || d.queue.below_low_watermark()) {
            d.want_room = false;
            self.event(Event::Room { peer: id });
        }
    }

    /// Makes `id`'s connection progress: dials when there is work and no connection, or
    /// tells the shell its connection is writable (once per edge).
    fn kick(&mut self, now: Instant, id: NodeId) {
        if self.stopped {
            return;
        }
        let Some(d) = dest_for_change(&mut self.dests, &mut self.dirty, id) else {
            return;
        };
        match d.link {
            ConnState::Backoff { until } if now >= until => {
                d.link = ConnState::Idle;
                self.kick(now, id);
            }
            ConnState::Idle if d.has_work() && d.in_flight.is_none() => self.dial(now, id),
            ConnState::Connected { conn, .. }
                if d.has_work() && d.in_flight.is_none() && !d.writable_signalled =>
            {
                d.writable_signalled = true;
                self.transmits.push_back(Transmit::Writable { conn });
            }
            _ => {}
        }
    }
}
