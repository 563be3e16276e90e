//! The engine shared by every built-in network: membership, per-destination queues and
//! counters, the send paths, and one writer task per destination that connects lazily,
//! reconnects with back-off, drops stale messages and closes idle connections. A [`Link`] says
//! how to connect and how bytes move. Reachability (`super::reach`) rides on the same writers:
//! its frames wait in a small control queue per destination, written first.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use bytes::Bytes;
use hawser_proto::node::{
    Backoff, Delivery, Member, Membership, MembershipChange, MembershipError, NodeId, PeerStats,
    SendQueue,
};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::config::{OversizeDatagram, Settings};
use super::error::SendError;
use super::incoming::{Incoming, IncomingQueue, IncomingSender};
use super::network::NodeStats;
use super::reach::{self, Frame, ReachState, TrafficGate};

/// How one network connects to a destination and moves bytes (the part that differs between
/// the default network and the in-memory one).
pub(crate) trait Link: Send + Sync + Sized + 'static {
    /// One open reliable connection.
    type Conn: Send + 'static;

    /// Checks that `member` can be reached with this delivery; returns the largest payload.
    fn route(
        &self,
        settings: &Settings,
        member: &Member,
        reliable: bool,
    ) -> Result<usize, SendError>;

    /// Opens a reliable connection to `member` and says hello; returns it with the address of
    /// `member` it goes to (for reachability).
    fn dial(
        &self,
        core: &Arc<Core<Self>>,
        member: Member,
    ) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;

    /// Writes one frame on a connection.
    fn write(conn: &mut Self::Conn, frame: Frame) -> impl Future<Output = io::Result<()>> + Send;

    /// The addresses of `member` reachability knows it by (tried by `dial`).
    fn reach_addrs(&self, member: &Member) -> Vec<SocketAddr>;

    /// Resolves when the connection was closed by the peer or broke. Cancel safe.
    fn closed(conn: &mut Self::Conn) -> impl Future<Output = ()> + Send;

    /// Sends one datagram without waiting.
    fn send_datagram(
        &self,
        core: &Core<Self>,
        to: &Member,
        payload: &Bytes,
    ) -> Result<(), SendError>;

    /// Sends one datagram, waiting for room.
    fn send_datagram_wait(
        &self,
        core: &Core<Self>,
        to: Member,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Releases sockets and registrations at stop (tasks are cancelled separately).
    fn shutdown(&self);

    /// A sender that writes internal frames on `conn` without waiting behind application
    /// messages (a stream of their own), if the connection has one.
    fn control_sender(conn: &Self::Conn) -> Option<mpsc::Sender<Frame>> {
        let _ = conn;
        None
    }

    /// This node's `PeerId`, for links with sessions.
    fn peer_id(&self) -> Option<crate::session::PeerId> {
        None
    }

    /// Every address this node accepts reliable connections on, for links that have them.
    fn listen_addrs(&self) -> Vec<crate::session::TransportAddr> {
        Vec::new()
    }
}

/// One destination's queue, counters and writer state.
pub(crate) struct Peer {
    id: NodeId,
    state: Mutex<PeerState>,
    /// A message was queued.
    wake: Notify,
    /// Room was freed in the queue.
    room: Notify,
    /// Cancelled when the node stops or the peer is removed.
    cancel: CancellationToken,
    /// Bumped when the peer's addresses change, so the writer reconnects.
    generation: AtomicU64,
}

struct PeerState {
    queue: SendQueue,
    stats: PeerStats,
    writer_running: bool,
    connected_before: bool,
    /// Internal frames waiting, with when each was queued (bounded by
    /// `reach.max_control_frames`, expired by the queue deadline).
    control: VecDeque<(Instant, Frame)>,
    /// The writer holds a connection.
    connected: bool,
    /// The current connection's own path for internal frames (`Link::control_sender`).
    control_tx: Option<mpsc::Sender<Frame>>,
}

impl Peer {
    fn lock(&self) -> MutexGuard<'_, PeerState> {
        // A poisoned lock (a panic while held: a bug) is recovered: the state is plain data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> PeerStats {
        let st = self.lock();
        let mut stats = st.stats;
        st.queue.fill_stats(&mut stats);
        stats
    }
}

/// Node-wide counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub malformed_datagrams: AtomicU64,
    pub unknown_senders: AtomicU64,
    pub refused_connections: AtomicU64,
    pub oversized_frames: AtomicU64,
    pub bad_hellos: AtomicU64,
    pub incoming_dropped: AtomicU64,
    pub bad_frames: AtomicU64,
    pub control_dropped: AtomicU64,
    pub learned_refused: AtomicU64,
    pub handshake_failures: AtomicU64,
    pub peer_mismatches: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> NodeStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NodeStats {
            malformed_datagrams: r(&self.malformed_datagrams),
            unknown_senders: r(&self.unknown_senders),
            refused_connections: r(&self.refused_connections),
            oversized_frames: r(&self.oversized_frames),
            bad_hellos: r(&self.bad_hellos),
            incoming_dropped: r(&self.incoming_dropped),
            bad_frames: r(&self.bad_frames),
            control_dropped: r(&self.control_dropped),
            learned_refused: r(&self.learned_refused),
            handshake_failures: r(&self.handshake_failures),
            peer_mismatches: r(&self.peer_mismatches),
        }
    }
}

/// Where a message goes.
enum Plan {
    Local,
    Datagram(Member),
    Queue(Arc<Peer>),
}

/// The shared state of one running network.
pub(crate) struct Core<L> {
    pub id: NodeId,
    pub settings: Settings,
    pub link: L,
    pub counters: Counters,
    pub tracker: TaskTracker,
    pub cancel: CancellationToken,
    /// Reachability, unless disabled.
    pub reach: Option<ReachState>,
    membership: RwLock<Membership>,
    /// One entry per member at most (bounded by `Settings::max_nodes`).
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
    sender: IncomingSender,
    incoming: IncomingQueue,
}

impl<L: Link> Core<L> {
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
        let core = Arc::new(Core {
            id,
            reach: ReachState::new(id, &settings, local),
            settings,
            link,
            counters: Counters::default(),
            tracker: TaskTracker::new(),
            cancel,
            membership: RwLock::new(membership),
            peers: Mutex::new(HashMap::new()),
            sender,
            incoming,
        });
        if core.reach.is_some() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(core.tracker.track_future(reach::drive(core.clone())));
                }
                Err(_) => warn!(node = %id, "no tokio runtime: reachability not driven"),
            }
        }
        core
    }

    /// A copy of one member.
    pub fn membership_of(&self, id: NodeId) -> Option<Member> {
        let m = self.membership.read().unwrap_or_else(|e| e.into_inner());
        m.get(id).cloned()
    }

    /// Every member's id.
    pub fn member_ids(&self) -> Vec<NodeId> {
        let m = self.membership.read().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|m| m.id).collect()
    }

    /// Edits a member's addresses in place, without making its writer reconnect (addresses
    /// learned from the flood; the current connection stays good).
    pub fn edit_learned_addrs(&self, id: NodeId, f: impl FnOnce(&mut Vec<SocketAddr>)) {
        let mut m = self.membership.write().unwrap_or_else(|e| e.into_inner());
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

    /// Queues an internal frame for member `to` (dropping the oldest beyond the bound) and
    /// makes sure its writer runs.
    pub fn push_control(self: &Arc<Self>, to: NodeId, frame: Frame) {
        let Some(peer) = self.peer(to) else {
            return;
        };
        let mut st = peer.lock();
        if peer.cancel.is_cancelled() {
            return;
        }
        // Straight to the connection's control stream when nothing older waits here, so a
        // writer busy with a large application message does not hold it back.
        let mut frame = frame;
        if let (true, Some(tx)) = (st.control.is_empty(), st.control_tx.as_ref()) {
            match tx.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(f) | mpsc::error::TrySendError::Closed(f)) => {
                    frame = f;
                }
            }
        }
        if st.control.len() >= self.settings.reach.max_control_frames {
            st.control.pop_front();
            Counters::bump(&self.counters.control_dropped);
        }
        st.control.push_back((Instant::now(), frame));
        self.start_writer(&peer, &mut st);
        drop(st);
        peer.wake.notify_one();
    }

    /// Opens a connection to member `to` if there is none and nothing waits for it.
    pub fn poke(self: &Arc<Self>, to: NodeId) {
        if self.reach.is_none() || to == self.id {
            return;
        }
        let Some(member) = self.membership_of(to) else {
            return;
        };
        if self.link.route(&self.settings, &member, true).is_err() {
            return;
        }
        let Some(peer) = self.peer(to) else {
            return;
        };
        let idle = {
            let st = peer.lock();
            !st.connected && st.control.is_empty() && st.queue.is_empty()
        };
        if idle {
            self.push_control(to, Frame::Ping);
        }
    }

    fn start_writer(self: &Arc<Self>, peer: &Arc<Peer>, st: &mut PeerState) {
        if !st.writer_running {
            st.writer_running = true;
            self.tracker.spawn(writer(self.clone(), peer.clone()));
        }
    }

    /// A frame of a framed connection from `from` through `via`: delivered, or handed to
    /// reachability. Returns `false` once the node is stopping.
    pub async fn receive(
        self: &Arc<Self>,
        from: NodeId,
        via: SocketAddr,
        frame: Frame,
        gate: &mut TrafficGate,
    ) -> bool {
        self.reach_traffic(from, via, gate);
        match frame {
            Frame::App(payload) => self.deliver(from, Delivery::Reliable, payload).await,
            Frame::Reach(payload) => {
                self.reach_event(from, via, &payload);
                true
            }
            Frame::Ping => true,
        }
    }

    /// Counts a bad frame of a framed connection.
    pub fn note_bad_frame(&self, from: NodeId, err: &hawser_proto::wire::WireError) {
        Counters::bump(&self.counters.bad_frames);
        debug!(node = %self.id, peer = %from, %err, "bad frame dropped");
    }

    /// Like `send`, refusing a destination whose lease does not hold.
    pub fn send_alive(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        if self.cancel.is_cancelled() {
            return Err(SendError::Stopped);
        }
        if to != self.id {
            if !self.is_member(to) {
                return Err(SendError::UnknownNode(to));
            }
            if !self.is_alive(to) {
                return Err(SendError::NotAlive(to));
            }
        }
        self.send(to, payload, delivery)
    }

    pub fn membership(&self) -> Membership {
        self.membership
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.membership
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    pub fn incoming(&self) -> super::IncomingStream {
        self.incoming.stream()
    }

    pub fn stats(&self) -> NodeStats {
        self.counters.snapshot()
    }

    pub fn peer_stats(&self, id: NodeId) -> Option<PeerStats> {
        if !self.is_member(id) {
            return None;
        }
        Some(self.peer(id).map(|p| p.stats()).unwrap_or_default())
    }

    /// The peer entry of a member, created on first use; `None` for a non-member.
    fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = peers.get(&id) {
            return Some(p.clone());
        }
        if !self.is_member(id) {
            return None;
        }
        let peer = Arc::new(Peer {
            id,
            state: Mutex::new(PeerState {
                queue: SendQueue::new(self.settings.queue),
                stats: PeerStats::default(),
                writer_running: false,
                connected_before: false,
                control: VecDeque::new(),
                connected: false,
                control_tx: None,
            }),
            wake: Notify::new(),
            room: Notify::new(),
            cancel: self.cancel.child_token(),
            generation: AtomicU64::new(0),
        });
        peers.insert(id, peer.clone());
        Some(peer)
    }

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
        self.membership
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(change)?;
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if removed {
            if let Some(peer) = peers.remove(&id) {
                peer.cancel.cancel();
                let dropped = peer.lock().queue.clear();
                info!(node = %self.id, peer = %id, dropped, "peer removed");
            }
        } else if let (true, Some(peer)) = (addr_change, peers.get(&id)) {
            peer.generation.fetch_add(1, Ordering::Relaxed);
            peer.wake.notify_one();
        }
        Ok(())
    }

    fn plan(&self, to: NodeId, len: usize, delivery: Delivery) -> Result<Plan, SendError> {
        if self.cancel.is_cancelled() {
            return Err(SendError::Stopped);
        }
        if to == self.id {
            return Ok(Plan::Local);
        }
        let membership = self.membership.read().unwrap_or_else(|e| e.into_inner());
        let member = membership.get(to).ok_or(SendError::UnknownNode(to))?;
        let mut reliable = delivery == Delivery::Reliable;
        if !reliable && len > self.settings.datagram_limit {
            match self.settings.oversize_datagram {
                OversizeDatagram::Refuse => {
                    let max = self.settings.datagram_limit;
                    return Err(SendError::TooLarge { len, max });
                }
                OversizeDatagram::SendReliably => reliable = true,
            }
        }
        let max = self.link.route(&self.settings, member, reliable)?;
        let max = if reliable {
            max.min(self.settings.max_frame)
                .min(self.settings.queue.max_bytes)
        } else {
            max
        };
        if len > max {
            return Err(SendError::TooLarge { len, max });
        }
        if !reliable {
            return Ok(Plan::Datagram(member.clone()));
        }
        drop(membership);
        self.peer(to)
            .map(Plan::Queue)
            .ok_or(SendError::UnknownNode(to))
    }

    /// Queues or sends a message; never blocks.
    pub fn send(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        match self.plan(to, payload.len(), delivery)? {
            Plan::Local => {
                let msg = Incoming {
                    from: self.id,
                    delivery,
                    payload,
                };
                self.sender
                    .try_send(msg)
                    .map_err(|_| SendError::QueueFull(to))
            }
            Plan::Datagram(member) => {
                self.link.send_datagram(self, &member, &payload)?;
                self.note_datagram_sent(to, payload.len());
                Ok(())
            }
            Plan::Queue(peer) => self.enqueue(&peer, payload),
        }
    }

    /// Like [`send`](Self::send), waiting for room instead of failing with `QueueFull`.
    pub async fn send_wait(
        self: &Arc<Self>,
        to: NodeId,
        payload: Bytes,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let stopped = || SendError::Stopped;
        match self.plan(to, payload.len(), delivery)? {
            Plan::Local => {
                let msg = Incoming {
                    from: self.id,
                    delivery,
                    payload,
                };
                tokio::select! {
                    r = self.sender.send(msg) => r.map_err(|_| stopped()),
                    () = self.cancel.cancelled() => Err(stopped()),
                }
            }
            Plan::Datagram(member) => {
                let len = payload.len();
                tokio::select! {
                    r = self.link.send_datagram_wait(self, member, payload) => r?,
                    () = self.cancel.cancelled() => return Err(stopped()),
                }
                self.note_datagram_sent(to, len);
                Ok(())
            }
            Plan::Queue(peer) => loop {
                let room = peer.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                match self.enqueue(&peer, payload.clone()) {
                    Err(SendError::QueueFull(_)) => {}
                    other => return other,
                }
                tokio::select! {
                    () = room => {}
                    () = peer.cancel.cancelled() => return Err(stopped()),
                }
            },
        }
    }

    fn enqueue(self: &Arc<Self>, peer: &Arc<Peer>, payload: Bytes) -> Result<(), SendError> {
        let mut st = peer.lock();
        if peer.cancel.is_cancelled() {
            return Err(SendError::Stopped);
        }
        if let Err(full) = st.queue.push(Instant::now(), payload) {
            debug!(node = %self.id, peer = %peer.id, %full, "message refused: queue full");
            return Err(SendError::QueueFull(peer.id));
        }
        self.start_writer(peer, &mut st);
        drop(st);
        peer.wake.notify_one();
        Ok(())
    }

    fn note_datagram_sent(&self, to: NodeId, len: usize) {
        if let Some(peer) = self.peer(to) {
            let mut st = peer.lock();
            st.stats.sent += 1;
            st.stats.bytes_out += len as u64;
        }
    }

    /// Counts a received message; `false` (and counted) if the sender is not a member.
    fn note_received(&self, from: NodeId, len: usize) -> bool {
        if from == self.id {
            return true;
        }
        let Some(peer) = self.peer(from) else {
            Counters::bump(&self.counters.unknown_senders);
            return false;
        };
        let mut st = peer.lock();
        st.stats.received += 1;
        st.stats.bytes_in += len as u64;
        true
    }

    /// Counts an oversized frame from `from` (node-wide, and on the peer when known).
    pub fn note_oversized(&self, from: Option<NodeId>) {
        Counters::bump(&self.counters.oversized_frames);
        if let Some(peer) = from.and_then(|id| self.peer(id)) {
            peer.lock().stats.oversized_frames += 1;
        }
    }

    /// Hands a reliable message to the application, waiting for room in the incoming queue
    /// (back-pressure). Returns `false` once the node is stopping.
    pub async fn deliver(&self, from: NodeId, delivery: Delivery, payload: Bytes) -> bool {
        if !self.note_received(from, payload.len()) {
            return true;
        }
        let msg = Incoming {
            from,
            delivery,
            payload,
        };
        tokio::select! {
            r = self.sender.send(msg) => r.is_ok(),
            () = self.cancel.cancelled() => false,
        }
    }

    /// Hands a datagram to the application if there is room; drops it (counted) otherwise.
    pub fn deliver_now(&self, from: NodeId, payload: Bytes) {
        if self.cancel.is_cancelled() || !self.note_received(from, payload.len()) {
            return;
        }
        let msg = Incoming {
            from,
            delivery: Delivery::Unreliable,
            payload,
        };
        if self.sender.try_send(msg).is_err() {
            Counters::bump(&self.counters.incoming_dropped);
            debug!(node = %self.id, peer = %from, "datagram dropped: incoming queue full");
        }
    }

    /// Begins stopping: cancels every task and releases the link.
    pub fn begin_stop(&self) {
        if !self.cancel.is_cancelled() {
            info!(node = %self.id, "stopping");
        }
        self.cancel.cancel();
        self.tracker.close();
        self.link.shutdown();
    }
}

async fn closed<L: Link>(conn: &mut Option<(L::Conn, SocketAddr)>) {
    match conn {
        Some((c, _)) => L::closed(c).await,
        None => std::future::pending().await,
    }
}

/// Expires stale messages and internal frames at the head, tracing and waking waiters;
/// whether anything is left to write.
fn expire<L>(core: &Core<L>, peer: &Peer) -> bool {
    let mut st = peer.lock();
    let now = Instant::now();
    let dropped = st.queue.expire(now);
    if dropped > 0 {
        warn!(node = %core.id, peer = %peer.id, dropped, "dropped messages that outlived the deadline");
        peer.room.notify_waiters();
    }
    let deadline = core.settings.queue.deadline;
    while st
        .control
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > deadline)
    {
        st.control.pop_front();
        Counters::bump(&core.counters.control_dropped);
    }
    !st.queue.is_empty() || !st.control.is_empty()
}

/// The writer lost its connection to `peer` through `via` (not an idle close).
fn lost<L: Link>(core: &Arc<Core<L>>, peer: &Peer, via: SocketAddr) {
    {
        let mut st = peer.lock();
        st.connected = false;
        st.control_tx = None;
    }
    core.reach_disconnected(peer.id, via);
}

/// One destination's writer: connects when there is something to send, writes in order,
/// reconnects with back-off, closes the connection when idle, and exits when idle and
/// disconnected (the next message starts a new one).
async fn writer<L: Link>(core: Arc<Core<L>>, peer: Arc<Peer>) {
    let s = &core.settings;
    let mut backoff = Backoff::new(s.backoff_initial, s.backoff_max);
    let mut conn: Option<(L::Conn, SocketAddr)> = None;
    let mut generation = 0;
    loop {
        if peer.cancel.is_cancelled() {
            break;
        }
        if conn.is_some() && peer.generation.load(Ordering::Relaxed) != generation {
            info!(node = %core.id, peer = %peer.id, "address changed: reconnecting");
            if let Some((_, via)) = conn.take() {
                lost(&core, &peer, via);
            }
        }
        if !expire(&core, &peer) {
            tokio::select! {
                () = peer.cancel.cancelled() => break,
                () = peer.wake.notified() => {}
                () = closed::<L>(&mut conn) => {
                    info!(node = %core.id, peer = %peer.id, "disconnected by peer");
                    if let Some((_, via)) = conn.take() {
                        lost(&core, &peer, via);
                    }
                }
                () = tokio::time::sleep(s.idle_timeout) => {
                    let mut st = peer.lock();
                    if conn.take().is_some() {
                        st.connected = false;
                        st.control_tx = None;
                        info!(node = %core.id, peer = %peer.id, "idle connection closed");
                    }
                    if st.queue.is_empty() && st.control.is_empty() {
                        st.writer_running = false;
                        return;
                    }
                }
            }
            continue;
        }
        let Some((c, via)) = conn.as_mut() else {
            conn = connect(&core, &peer, &mut backoff, &mut generation).await;
            continue;
        };
        let via = *via;
        if !write_queued::<L>(&core, &peer, c).await {
            conn = None;
            core.reach_send_failed(peer.id, &[via]);
            lost(&core, &peer, via);
        }
    }
    if let Some((_, via)) = conn.take() {
        lost(&core, &peer, via);
    }
    debug!(node = %core.id, peer = %peer.id, "writer ended");
}

/// One connection attempt (then the back-off delay if it failed).
async fn connect<L: Link>(
    core: &Arc<Core<L>>,
    peer: &Peer,
    backoff: &mut Backoff,
    generation: &mut u64,
) -> Option<(L::Conn, SocketAddr)> {
    *generation = peer.generation.load(Ordering::Relaxed);
    let member = {
        let m = core.membership.read().unwrap_or_else(|e| e.into_inner());
        m.get(peer.id).cloned()
    };
    let Some(member) = member else {
        peer.cancel.cancel();
        return None;
    };
    let addrs = core.link.reach_addrs(&member);
    let attempt = tokio::time::timeout(core.settings.connect_timeout, core.link.dial(core, member));
    let result = tokio::select! {
        r = attempt => r.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
        () = peer.cancel.cancelled() => return None,
    };
    match result {
        Ok((conn, via)) => {
            backoff.reset();
            {
                let mut st = peer.lock();
                if st.connected_before {
                    st.stats.reconnects += 1;
                }
                st.connected_before = true;
                st.connected = true;
                st.control_tx = L::control_sender(&conn);
                info!(node = %core.id, peer = %peer.id, reconnects = st.stats.reconnects, "connected");
            }
            core.reach_connected(peer.id, via);
            Some((conn, via))
        }
        Err(err) => {
            peer.lock().stats.connect_failures += 1;
            core.reach_send_failed(peer.id, &addrs);
            let delay = backoff.next_delay();
            debug!(node = %core.id, peer = %peer.id, %err, ?delay, "connect failed");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = peer.cancel.cancelled() => {}
            }
            None
        }
    }
}

/// Writes every internal frame, then everything queued; `false` if the connection failed (an
/// application message is requeued, an internal frame dropped: the next renewal restates it).
async fn write_queued<L: Link>(core: &Core<L>, peer: &Peer, conn: &mut L::Conn) -> bool {
    loop {
        let control = peer.lock().control.pop_front();
        let Some((_, frame)) = control else {
            break;
        };
        let result = tokio::select! {
            r = L::write(conn, frame) => r,
            () = peer.cancel.cancelled() => return true,
        };
        if let Err(err) = result {
            warn!(node = %core.id, peer = %peer.id, %err, "write failed: reconnecting");
            return false;
        }
    }
    loop {
        let item = {
            let mut st = peer.lock();
            if !st.control.is_empty() {
                // Internal frames go first: come back for them.
                return true;
            }
            let before = st.queue.dropped_stale();
            let item = st.queue.pop(Instant::now());
            let dropped = st.queue.dropped_stale() - before;
            if dropped > 0 {
                warn!(node = %core.id, peer = %peer.id, dropped, "dropped messages that outlived the deadline");
            }
            item
        };
        let Some(item) = item else {
            return true;
        };
        peer.room.notify_waiters();
        let len = item.payload.len();
        let result = tokio::select! {
            r = L::write(conn, Frame::App(item.payload.clone())) => r,
            () = peer.cancel.cancelled() => return true,
        };
        let mut st = peer.lock();
        match result {
            Ok(()) => {
                st.stats.sent += 1;
                st.stats.bytes_out += len as u64;
            }
            Err(err) => {
                st.queue.requeue_front(item);
                warn!(node = %core.id, peer = %peer.id, %err, "write failed: reconnecting");
                return false;
            }
        }
    }
}
