//! [`Shell`]: one node's [`Engine`] under one lock, with the little state the shell keeps
//! beside it, and the run loop's drain.
//!
//! Every call into the engine (the application's commands, a connection's input, the
//! driver's timeout) is made under the lock of [`State`] and followed by [`Shell::flush`],
//! which carries out every `Transmit` (a dial starts a task of the node's [`Links`], a
//! `Writable` wakes the connection's writer, a `Close` stops its task, a datagram is sent at
//! once) and dispatches every `Event` (messages to the incoming queue, requests to their
//! handlers, responses to their callers, peer events to their streams, room to waiting
//! senders). The engine's event queue is thus drained after every call and never reaches
//! `max_events`. `flush` then wakes the driver only when the engine's next timeout moved
//! earlier than the one it sleeps until.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::node::engine::{ConnId, DialError, Event, Refusal, Transmit, WriteError};
use hawser_proto::node::{
    Delivery, Engine, FrameBatch, Member, Membership, MembershipChange, MembershipError, NodeId,
    PeerStats,
};
use hawser_proto::reach::PeerEvent;
use hawser_proto::wire::node::FrameKind;
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

pub(crate) use crate::session::transport::BoxFuture;

use super::config::Settings;
use super::counters::Counters;
use super::datagram::{OpenKey, SealKey};
use super::engine_config::engine_config;
use super::error::StartError;
use super::events::PeerEvents;
use super::incoming::{Incoming, IncomingQueue, IncomingSender, IncomingStream};
use super::room::Room;
use super::route::fill_addrs;
use super::rpc::{Calls, NodeStream, Responder, RpcStats, Serving, StreamError, Streams};
use super::stats::NodeStats;
use crate::session::{NoiseCipher, PeerId, ProtocolId, Session, TransportAddr, WeakSession};

/// How long a hello from a node that is not a member waits for the flood to make it one
/// ([`Shell::accepted_soon`]).
pub(crate) const LEARN_GRACE: Duration = Duration::from_secs(1);

/// How often [`Shell::accepted_soon`] looks at the membership again while it waits.
const LEARN_POLL: Duration = Duration::from_millis(10);

/// How one node reaches others: the sessions of the default network, or the in-memory hub.
/// Required methods only move bytes; the engine decides what and when.
pub(crate) trait Links: Send + Sync + 'static {
    /// Dials `peer` for `conn` on a task of its own (stopped by `stop`), which ends with
    /// [`Shell::dialed`]. Called under the lock (`st`): it must not take it.
    fn dial(
        &self,
        shell: &Arc<Shell>,
        st: &State,
        conn: ConnId,
        peer: NodeId,
        stop: CancellationToken,
    );

    /// Sends one datagram (the engine's `wire::node` envelope) to `to` at `addr`; `st` holds
    /// the datagram keys.
    fn send_datagram(
        &self,
        shell: &Arc<Shell>,
        st: &mut State,
        to: NodeId,
        addr: SocketAddr,
        datagram: Bytes,
    );

    /// Opens a byte stream of `protocol` to `to`.
    fn open_stream<'a>(
        &'a self,
        shell: &'a Arc<Shell>,
        to: NodeId,
        protocol: ProtocolId,
    ) -> BoxFuture<'a, Result<NodeStream, StreamError>>;

    /// The address the node listens on (TCP and UDP), if it has one.
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// This node's `PeerId`, for links with sessions.
    fn peer_id(&self) -> Option<PeerId> {
        None
    }

    /// Every address this node accepts connections on.
    fn listen_addrs(&self) -> Vec<TransportAddr> {
        Vec::new()
    }

    /// Releases sockets and registrations at stop.
    fn shutdown(&self) {}
}

/// One connection's handles: the wake-up of its writer, and its stop signal.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    /// Notified on `Transmit::Writable`.
    pub wake: Arc<Notify>,
    /// Cancelled on `Transmit::Close` and at stop.
    pub stop: CancellationToken,
}

/// What the lock protects: the engine, and what the shell keeps per connection and peer.
/// Every map is bounded by the engine's connections or the membership.
pub(crate) struct State {
    /// The node layer's state machine.
    pub engine: Engine,
    /// Live connections, both ways.
    conns: HashMap<ConnId, Slot>,
    /// Senders waiting for room, per destination.
    pub(super) rooms: HashMap<NodeId, Arc<Room>>,
    pub(super) calls: Calls,
    pub(super) serving: Serving,
    /// This node's datagram key to each peer (Noise only).
    pub seal: HashMap<NodeId, SealKey>,
    /// Each peer's datagram key to this node, with its replay window (Noise only).
    pub open: HashMap<NodeId, OpenKey>,
    /// This node's session to each peer, for streams.
    pub sessions: HashMap<NodeId, (ConnId, Session)>,
    /// A session with each pinned peer that carries messages both ways, with the peer's
    /// address ([`Shell::share_session`]); at most one per member. Weak: a session lives only
    /// while a writer or a reader of either node uses it.
    shared: HashMap<NodeId, (WeakSession, SocketAddr)>,
    /// Reliable messages the incoming queue had no room for, in order: the readers wait until
    /// they are in before reading more (bounded by what one read hands over per connection).
    overflow: Vec<Incoming>,
    /// Peers whose last dial failed (the first failure of a series is a warning).
    failing: std::collections::HashSet<NodeId>,
    /// Where the driver sleeps until.
    armed: Option<Instant>,
}

/// One running node: the engine, its lock, and the shell's shared parts.
pub(crate) struct Shell {
    /// This node.
    pub id: NodeId,
    /// The settings it started with.
    pub settings: Settings,
    state: Mutex<State>,
    /// The counters only the shell sees.
    pub counters: Counters,
    /// Cancelled when the node stops.
    pub cancel: CancellationToken,
    /// Every task of the node, waited for at stop.
    pub tracker: TaskTracker,
    incoming: IncomingQueue,
    pub(super) sender: IncomingSender,
    peer_events: broadcast::Sender<PeerEvent>,
    /// Wakes the driver (its deadline moved earlier).
    pub driver: Notify,
    /// Held while the overflow is moved into the incoming queue (keeps it in order).
    overflow_lock: tokio::sync::Mutex<()>,
    /// Streams' acceptors and counters.
    pub streams: Streams,
    pub(super) serve_counters: Arc<super::rpc::ServeCounters>,
    pub(super) links: Box<dyn Links>,
    /// Nodes without addresses are reached at their in-memory pseudo address.
    memory: bool,
    pub(super) me: Weak<Shell>,
}

pub(super) fn now() -> Instant {
    Instant::now()
}

impl Shell {
    /// A node `id` over `links`, announcing `local` addresses; `memory` for the in-memory
    /// network (nodes without addresses are reached by id).
    pub fn new(
        id: NodeId,
        settings: Settings,
        members: Vec<Member>,
        links: Box<dyn Links>,
        local: &[SocketAddr],
        memory: bool,
    ) -> Result<Arc<Shell>, StartError> {
        let config = engine_config(&settings);
        let mut membership = Membership::new(settings.max_nodes);
        let fill = |m: Member| fill_addrs(&settings, memory, m);
        for m in members {
            membership.insert(fill(m))?;
        }
        let engine = Engine::new(id, config, membership, local, now()).map_err(|e| {
            StartError::Settings(super::config::SettingsError::Engine(e.to_string()))
        })?;
        let cancel = CancellationToken::new();
        let (incoming, sender) = IncomingQueue::new(settings.incoming_capacity, cancel.clone());
        let (peer_events, _) = broadcast::channel(settings.reach.event_capacity.max(1));
        let rpc = settings.rpc.within_frame(settings.max_frame);
        let serving = Serving::new(rpc.max_inbound, rpc.max_response);
        let serve_counters = serving.counters.clone();
        let protocols = settings.protocols.iter().map(|p| p.id()).collect();
        let shell = Arc::new_cyclic(|me| Shell {
            id,
            streams: Streams::new(protocols, rpc.stream_backlog),
            settings,
            state: Mutex::new(State {
                engine,
                conns: HashMap::new(),
                rooms: HashMap::new(),
                calls: Calls::default(),
                serving,
                seal: HashMap::new(),
                open: HashMap::new(),
                sessions: HashMap::new(),
                shared: HashMap::new(),
                overflow: Vec::new(),
                failing: std::collections::HashSet::new(),
                armed: None,
            }),
            counters: Counters::default(),
            cancel,
            tracker: TaskTracker::new(),
            incoming,
            sender,
            peer_events,
            driver: Notify::new(),
            overflow_lock: tokio::sync::Mutex::new(()),
            serve_counters,
            links,
            memory,
            me: me.clone(),
        });
        Ok(shell)
    }

    /// Locks the state (a poisoned lock is recovered: a panic while it was held is a bug, and
    /// the engine's own state stays consistent between calls).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The links (for their addresses and ids).
    pub fn links(&self) -> &dyn Links {
        &*self.links
    }

    // ----- the run loop -----

    /// Carries out every transmit and dispatches every event, until both are drained; then
    /// wakes the driver if the next timeout moved earlier.
    pub fn flush(self: &Arc<Self>, st: &mut State) {
        self.drain(st);
        self.rearm(st);
    }

    /// `flush` after a message was queued: when it gave no transmit and no event, the queue
    /// already held older messages (whose expiry comes first) or its connection was already
    /// told to write, so the next timeout did not move and is not looked at (the send path
    /// stays free of the walk over every destination that `poll_timeout` is).
    pub fn flush_queued(self: &Arc<Self>, st: &mut State) {
        if self.drain(st) || st.armed.is_none() {
            self.rearm(st);
        }
    }

    /// Carries out every transmit and dispatches every event; whether there was any.
    fn drain(self: &Arc<Self>, st: &mut State) -> bool {
        let mut any = false;
        loop {
            let mut moved = false;
            while let Some(t) = st.engine.poll_transmit() {
                moved = true;
                self.carry(st, t);
            }
            while let Some(e) = st.engine.poll_event() {
                moved = true;
                self.dispatch(st, e);
            }
            if !moved {
                return any;
            }
            any = true;
        }
    }

    /// Wakes the driver if the engine's next timeout is earlier than the one it sleeps until.
    fn rearm(&self, st: &mut State) {
        let next = st.engine.poll_timeout();
        if next.is_some_and(|n| st.armed.is_none_or(|a| n < a)) {
            st.armed = next;
            self.driver.notify_one();
        }
    }

    /// The driver's turn: the engine's timers.
    pub fn timeout(self: &Arc<Self>) -> Option<Instant> {
        let mut st = self.lock();
        st.engine.handle_timeout(now());
        self.flush(&mut st);
        let next = st.engine.poll_timeout();
        st.armed = next;
        next
    }

    fn carry(self: &Arc<Self>, st: &mut State, t: Transmit) {
        match t {
            Transmit::Dial { conn, peer, .. } => {
                let stop = self.cancel.child_token();
                let slot = Slot {
                    wake: Arc::new(Notify::new()),
                    stop: stop.clone(),
                };
                st.conns.insert(conn, slot);
                self.links.dial(self, st, conn, peer, stop);
            }
            Transmit::Close { conn, reason } => {
                debug!(node = %self.id, %conn, ?reason, "connection closed");
                if let Some(slot) = st.conns.remove(&conn) {
                    slot.stop.cancel();
                }
                st.sessions.retain(|_, (c, _)| *c != conn);
            }
            Transmit::Datagram { to, addr, payload } => {
                self.links.send_datagram(self, st, to, addr, payload);
            }
            Transmit::Writable { conn } => {
                if let Some(slot) = st.conns.get(&conn) {
                    slot.wake.notify_one();
                }
            }
        }
    }

    fn dispatch(self: &Arc<Self>, st: &mut State, e: Event) {
        match e {
            Event::Message {
                from,
                delivery,
                payload,
            } => {
                let msg = Incoming {
                    from,
                    delivery,
                    payload,
                };
                if delivery == Delivery::Unreliable {
                    if self.sender.try_send(msg).is_err() {
                        Counters::bump(&self.counters.incoming_dropped);
                    }
                } else if !st.overflow.is_empty() {
                    st.overflow.push(msg);
                } else if let Err(msg) = self.sender.try_send(msg) {
                    st.overflow.push(msg);
                }
            }
            Event::Request {
                id,
                from,
                protocol,
                payload,
                deadline,
            } => {
                let me: Weak<dyn Responder> = self.me.clone();
                let refused = st
                    .serving
                    .dispatch(me, id, from, protocol, payload, deadline);
                if let Some(outcome) = refused {
                    let _ = st.engine.respond(now(), id, outcome);
                }
            }
            Event::RequestCancelled { id } => st.serving.cancelled(id),
            Event::Response { id, result } => st.calls.complete(id, result),
            Event::Peer(event) => {
                debug!(node = %self.id, ?event, "reachability");
                // No receiver is not an error: nobody listens.
                let _ = self.peer_events.send(event);
            }
            Event::Connected { peer } => info!(node = %self.id, %peer, "connected"),
            Event::Disconnected { peer } => {
                info!(node = %self.id, %peer, "disconnected");
            }
            Event::Room { peer } => {
                if let Some(room) = st.rooms.get(&peer) {
                    room.wake();
                }
            }
            Event::Learned(m) => {
                info!(node = %self.id, peer = %m.id, "learned a peer: added as temporary member");
            }
            _ => {}
        }
    }

    /// Moves the reliable messages the incoming queue had no room for into it, waiting for
    /// room (back-pressure on the caller: a connection's reader). `false` once stopped.
    pub async fn drain_overflow(&self) -> bool {
        if self.lock().overflow.is_empty() {
            return !self.cancel.is_cancelled();
        }
        let _order = self.overflow_lock.lock().await;
        let mut msgs = std::mem::take(&mut self.lock().overflow);
        if msgs.is_empty() {
            return true;
        }
        tokio::select! {
            r = self.sender.send_all(&mut msgs) => r.is_ok(),
            () = self.cancel.cancelled() => false,
        }
    }

    // ----- connections (for the links) -----

    /// The dial of `conn` ended. On success, the writer's slot (`None` if the engine gave up
    /// on the dial meanwhile: the caller drops the connection).
    pub fn dialed(
        self: &Arc<Self>,
        conn: ConnId,
        peer: NodeId,
        result: Result<(SocketAddr, Option<Session>), DialError>,
    ) -> Option<Slot> {
        let mut st = self.lock();
        let slot = st.conns.get(&conn).cloned();
        let outcome = match result {
            Ok((via, session)) => {
                st.failing.remove(&peer);
                if slot.is_some() {
                    if let Some(s) = session {
                        st.sessions.insert(peer, (conn, s));
                    }
                }
                Ok(via)
            }
            Err(e) => {
                st.conns.remove(&conn);
                Err(e)
            }
        };
        let ok = outcome.is_ok();
        st.engine.handle_dialed(now(), conn, outcome);
        self.flush(&mut st);
        slot.filter(|_| ok)
    }

    /// A dial to `peer` failed: whether it is the first failure since it last connected.
    pub fn first_failure(&self, peer: NodeId) -> bool {
        self.lock().failing.insert(peer)
    }

    /// A connection from `peer` said hello, announcing `announced`: its name and stop signal,
    /// or why it is refused.
    pub fn accepted(
        self: &Arc<Self>,
        peer: NodeId,
        announced: Option<SocketAddr>,
    ) -> Result<(ConnId, CancellationToken), Refusal> {
        let mut st = self.lock();
        let conn = st.engine.handle_accepted(now(), peer, announced);
        let out = conn.map(|conn| {
            let stop = self.cancel.child_token();
            let slot = Slot {
                wake: Arc::new(Notify::new()),
                stop: stop.clone(),
            };
            st.conns.insert(conn, slot);
            (conn, stop)
        });
        self.flush(&mut st);
        out
    }

    /// [`accepted`](Self::accepted), waiting up to [`LEARN_GRACE`] (and at most half of
    /// `hello_timeout`, so that the refusal still comes before the session's other node stream
    /// is given up on) for `peer` to become a member where this node learns peers from the
    /// flood: a peer that learned this node from a flood dials it at once, and its hello may
    /// arrive before the same flood does. Refused at once, the messages it wrote behind the
    /// hello would be lost with the session; admitted after the wait, they are read as usual.
    /// A node removed by the application, or one this node cannot learn, is refused at once.
    pub async fn accepted_soon(
        self: &Arc<Self>,
        peer: NodeId,
        announced: Option<SocketAddr>,
    ) -> Result<(ConnId, CancellationToken), Refusal> {
        if self.waits_for_flood(peer) {
            let grace = LEARN_GRACE.min(self.settings.hello_timeout / 2);
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline && !self.cancel.is_cancelled() {
                tokio::time::sleep(LEARN_POLL).await;
                if self.lock().engine.membership().contains(peer) {
                    debug!(node = %self.id, %peer, "admitted once learned from the flood");
                    break;
                }
            }
        }
        self.accepted(peer, announced)
    }

    /// Whether a hello from `peer` would be refused as a non-member that the flood may yet
    /// make a member.
    fn waits_for_flood(&self, peer: NodeId) -> bool {
        let s = &self.settings;
        if !s.reach.enabled || !s.reach.learn_peers || s.reach.admit_unknown || peer == self.id {
            return false;
        }
        let st = self.lock();
        !st.engine.membership().contains(peer) && !st.engine.was_removed(peer)
    }

    /// Offers `session` with `peer` (at `via`) for this node's messages to `peer`: a later
    /// dial to `peer` opens its stream on it, so both directions share one connection. A
    /// session is offered once `peer` is known to be at its other end: one this node dialled,
    /// or one whose messages stream's hello named `peer`. Only an encrypted session whose
    /// proven identity is one of `peer`'s pins: without pins a node id is only a claim, and a
    /// session that merely claims to be `peer` must not receive what this node sends to it.
    pub fn share_session(&self, peer: NodeId, session: &Session, via: SocketAddr) {
        let pinned = self
            .settings
            .pins
            .get(&peer)
            .is_some_and(|pins| pins.contains(&session.peer_id()));
        if !pinned || !session.is_encrypted() {
            return;
        }
        let mut st = self.lock();
        if st.engine.membership().contains(peer) {
            st.shared.insert(peer, (session.downgrade(), via));
        }
    }

    /// The session shared with `peer`, if it is still open, with the peer's address.
    pub fn shared_session(&self, peer: NodeId) -> Option<(Session, SocketAddr)> {
        let mut st = self.lock();
        let (weak, via) = st.shared.get(&peer)?;
        match weak.upgrade().filter(|s| !s.is_closed()) {
            Some(s) => Some((s, *via)),
            None => {
                st.shared.remove(&peer);
                None
            }
        }
    }

    /// Frame bodies (kind byte first) received on `conn` from `from`; a datagram key is the
    /// shell's (kept when the session has a `cipher`, else handed to the engine, which
    /// counts it as a bad frame). Empties `frames`. Whether reliable messages wait for room in
    /// the incoming queue: the caller then waits in [`drain_overflow`](Self::drain_overflow)
    /// before reading more.
    #[must_use]
    pub fn receive(
        self: &Arc<Self>,
        conn: ConnId,
        from: NodeId,
        cipher: Option<NoiseCipher>,
        frames: &mut Vec<Bytes>,
    ) -> bool {
        let mut st = self.lock();
        let t = now();
        for frame in frames.drain(..) {
            if let (Some(cipher), Ok(FrameKind::DatagramKey)) = (cipher, FrameKind::of(&frame)) {
                match hawser_proto::wire::node::Frame::parse(frame) {
                    Ok(hawser_proto::wire::node::Frame::DatagramKey(key)) => {
                        debug!(node = %self.id, peer = %from, "datagram key received");
                        st.open.insert(from, OpenKey::new(&key, cipher));
                    }
                    _ => Counters::bump(&self.counters.bad_frames),
                }
                continue;
            }
            st.engine.handle_frame(t, conn, frame);
        }
        self.flush(&mut st);
        !st.overflow.is_empty()
    }

    /// The reader of `conn` met a frame above the bound.
    pub fn oversized(self: &Arc<Self>, conn: ConnId) {
        let mut st = self.lock();
        st.engine.handle_oversized(now(), conn);
        self.flush(&mut st);
    }

    /// Connection `conn` closed (by the peer, or broken).
    pub fn closed(self: &Arc<Self>, conn: ConnId) {
        let mut st = self.lock();
        if let Some(slot) = st.conns.remove(&conn) {
            slot.stop.cancel();
        } else {
            return;
        }
        st.sessions.retain(|_, (c, _)| *c != conn);
        st.engine.handle_closed(now(), conn);
        self.flush(&mut st);
    }

    /// The next batch to write on `conn` (into `batch`); `false` when there is none. Taking
    /// frames sets no timer (it only drops what expired), so the next timeout is looked at only
    /// when that gave an event, as after a send.
    pub fn take_frames(self: &Arc<Self>, conn: ConnId, batch: &mut FrameBatch) -> bool {
        let mut st = self.lock();
        let got = st.engine.take_frames(now(), conn, batch);
        self.flush_queued(&mut st);
        got
    }

    /// The batch taken for `conn` was written (or failed after `written` bytes).
    pub fn written(
        self: &Arc<Self>,
        conn: ConnId,
        batch: &mut FrameBatch,
        result: Result<(), WriteError>,
    ) {
        let mut st = self.lock();
        st.engine.handle_written(now(), conn, batch, result);
        self.flush(&mut st);
    }

    /// A datagram received, in the engine's plain envelope.
    pub fn datagram(self: &Arc<Self>, from: SocketAddr, datagram: Bytes) {
        let mut st = self.lock();
        st.engine.handle_datagram(now(), from, datagram);
        self.flush(&mut st);
    }

    /// Opens a connection to `to` (for a datagram key or a stream).
    pub fn connect(self: &Arc<Self>, st: &mut State, to: NodeId) {
        st.engine.connect(now(), to);
    }

    /// This node's session to `to` (connecting if there is none), within `connect_timeout`.
    pub async fn session_to(self: &Arc<Self>, to: NodeId) -> Result<Session, StreamError> {
        let deadline = tokio::time::Instant::now() + self.settings.connect_timeout;
        loop {
            {
                let mut st = self.lock();
                if !st.engine.membership().contains(to) {
                    return Err(StreamError::UnknownNode(to));
                }
                if let Some((_, s)) = st.sessions.get(&to).filter(|(_, s)| !s.is_closed()) {
                    return Ok(s.clone());
                }
                if self.cancel.is_cancelled() {
                    return Err(StreamError::Stopped);
                }
                self.connect(&mut st, to);
                self.flush(&mut st);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StreamError::Unreachable(to));
            }
            let again = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
            tokio::select! {
                () = tokio::time::sleep_until(again.min(deadline)) => {}
                () = self.cancel.cancelled() => return Err(StreamError::Stopped),
            }
        }
    }

    /// Applies a membership change (members without addresses get their route's).
    pub fn change_membership(
        self: &Arc<Self>,
        change: MembershipChange,
    ) -> Result<(), MembershipError> {
        let change = match change {
            MembershipChange::Add(m) => {
                MembershipChange::Add(fill_addrs(&self.settings, self.memory, m))
            }
            MembershipChange::SetAddrs(id, addrs) if addrs.is_empty() => {
                let m = fill_addrs(
                    &self.settings,
                    self.memory,
                    Member::without_addr(id, hawser_proto::node::Role::Member),
                );
                MembershipChange::SetAddrs(id, m.addrs)
            }
            other => other,
        };
        let mut st = self.lock();
        let removed = match &change {
            MembershipChange::Remove(id) => Some(*id),
            _ => None,
        };
        let r = st.engine.change_membership(now(), change);
        if let (Ok(()), Some(id)) = (&r, removed) {
            st.seal.remove(&id);
            st.open.remove(&id);
            st.sessions.remove(&id);
            st.shared.remove(&id);
            if let Some(room) = st.rooms.remove(&id) {
                room.wake();
            }
        }
        self.flush(&mut st);
        r
    }

    // ----- getters -----

    /// A copy of the membership.
    pub fn membership(&self) -> Membership {
        self.lock().engine.membership().clone()
    }

    /// The counters of member `id`, with this node's session write waits.
    pub fn peer_stats(&self, id: NodeId) -> Option<PeerStats> {
        let st = self.lock();
        let mut stats = st.engine.peer_stats(id)?;
        if let Some((_, s)) = st.sessions.get(&id) {
            stats.session_write_waits = s.stats().write_waits;
        }
        Some(stats)
    }

    /// Node-wide counters.
    pub fn stats(&self) -> NodeStats {
        let e = self.lock().engine.stats();
        self.counters.snapshot(&e)
    }

    /// Requests and streams counters.
    pub fn rpc_stats(&self) -> RpcStats {
        let e = self.lock().engine.stats().rpc;
        RpcStats::combine(e, &self.serve_counters, &self.streams)
    }

    /// The stream of received messages.
    pub fn incoming(&self) -> IncomingStream {
        self.incoming.stream()
    }

    /// A new stream of reachability changes.
    pub fn peer_events(&self) -> PeerEvents {
        if self.lock().engine.reachability().is_none() {
            return PeerEvents::empty();
        }
        PeerEvents::new(self.peer_events.subscribe(), self.cancel.clone())
    }

    /// Whether the node is stopping or stopped.
    pub fn is_stopped(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Begins stopping: the engine closes every connection, requests fail with `Stopped`,
    /// handlers and acceptors end, tasks are cancelled, sockets released. Idempotent.
    pub fn begin_stop(self: &Arc<Self>) {
        if !self.cancel.is_cancelled() {
            info!(node = %self.id, "stopping");
        }
        {
            let mut st = self.lock();
            st.engine.close(now());
            self.flush(&mut st);
            st.calls.stop();
            st.serving.stop();
            for (_, slot) in st.conns.drain() {
                slot.stop.cancel();
            }
            st.sessions.clear();
            st.shared.clear();
            for (_, room) in st.rooms.drain() {
                room.wake();
            }
        }
        self.streams.stop();
        self.cancel.cancel();
        self.tracker.close();
        self.links.shutdown();
    }
}
