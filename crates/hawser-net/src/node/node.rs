//! [`Node`] and its builder.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hawser_proto::node::{
    Delivery, Group, Member, Membership, MembershipChange, MembershipError, NodeId, PeerStats,
};
use hawser_proto::reach::{PeerSnapshot, ReachStats};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::config::{ReliableTransport, Settings};
use super::error::{SendError, StartError};
use super::events::PeerEvents;
use super::incoming::{Incoming, IncomingStream};
use super::memory::{self, MemoryHub};
use super::rpc::{
    InboundRequest, InboundRequests, InboundStreams, NodeStream, RequestError, RequestOptions,
    RpcStats, ServeError, StreamError,
};
use super::shell::Shell;
use super::stats::{BroadcastReport, NodeStats};
use super::{driver, network};
use crate::session::transport::{RegisterError, Transport};
use crate::session::ProtocolId;
use crate::session::{Identity, NetworkId, PeerId, Security, TransportAddr};

/// Configures and starts a [`Node`]. Nothing is sent or received before
/// [`start`](Self::start).
#[derive(Debug)]
#[must_use]
pub struct NodeBuilder {
    id: NodeId,
    listen: Option<SocketAddr>,
    lsp_listen: Option<SocketAddr>,
    members: Vec<Member>,
    settings: Settings,
    hub: Option<MemoryHub>,
    advertise: Vec<SocketAddr>,
    /// The first transport `transport` could not register, returned by `start`.
    transport_error: Option<RegisterError>,
}

impl NodeBuilder {
    /// Where the default network listens for TCP and UDP (port 0 picks a free port, the same
    /// for both).
    pub fn listen(mut self, addr: SocketAddr) -> NodeBuilder {
        self.listen = Some(addr);
        self
    }

    /// Where this node accepts reliable delivery over LSP (a UDP address apart from `listen`).
    pub fn lsp_listen(mut self, addr: SocketAddr) -> NodeBuilder {
        self.lsp_listen = Some(addr);
        self
    }

    /// Adds these nodes to the membership (the local node may be among them).
    pub fn members(mut self, members: impl IntoIterator<Item = Member>) -> NodeBuilder {
        self.members.extend(members);
        self
    }

    /// Adds one node to the membership.
    pub fn member(mut self, member: Member) -> NodeBuilder {
        self.members.push(member);
        self
    }

    /// Announces this address to peers through reachability (repeatable; the first also goes
    /// into hellos). Default: the bound listen address, unless it is unspecified (`0.0.0.0`
    /// or `::`: then nothing is announced and peers learn no address of this node).
    pub fn advertise(mut self, addr: SocketAddr) -> NodeBuilder {
        self.advertise.push(addr);
        self
    }

    /// Replaces every setting, including those set by earlier calls of `reliable_to`,
    /// `identity`, `network_id`, `security`, `pin`, `transport`, `transport_to` and
    /// `listen_on` (call it first).
    pub fn settings(mut self, settings: Settings) -> NodeBuilder {
        self.settings = settings;
        self
    }

    /// Registers one of the application's protocols (see [`Settings::protocols`]).
    pub fn protocol(mut self, protocol: crate::session::Protocol) -> NodeBuilder {
        self.settings.protocols.push(protocol);
        self
    }

    /// Sends reliable messages to `to` over this transport (an exception to
    /// [`Settings::reliable`]).
    pub fn reliable_to(
        mut self,
        to: impl Into<NodeId>,
        transport: ReliableTransport,
    ) -> NodeBuilder {
        self.settings.reliable_per_node.insert(to.into(), transport);
        self
    }

    /// This node's identity (default: a fresh one at every start). See [`Settings::identity`].
    pub fn identity(mut self, identity: Arc<Identity>) -> NodeBuilder {
        self.settings.identity = Some(identity);
        self
    }

    /// The cluster's network id (default [`DEFAULT_NETWORK_ID`](super::DEFAULT_NETWORK_ID)).
    pub fn network_id(mut self, id: NetworkId) -> NodeBuilder {
        self.settings.network_id = id;
        self
    }

    /// How reliable connections are protected (default [`Security::Noise`]).
    pub fn security(mut self, security: Security) -> NodeBuilder {
        self.settings.security = security;
        self
    }

    /// Pins one more `PeerId` node `node` may prove (see [`Settings::pins`]; at most
    /// [`MAX_PINS`](super::MAX_PINS) per node, checked at start).
    pub fn pin(mut self, node: impl Into<NodeId>, peer: PeerId) -> NodeBuilder {
        let pins = self.settings.pins.entry(node.into()).or_default();
        if !pins.contains(&peer) {
            pins.push(peer);
        }
        self
    }

    /// Sends reliable messages to `node` over this transport address instead of its TCP
    /// address (see [`Settings::transports`]).
    pub fn transport_to(mut self, node: impl Into<NodeId>, addr: TransportAddr) -> NodeBuilder {
        self.settings.transports.insert(node.into(), addr);
        self
    }

    /// Adds a transport of the application's, for the `transport_to` and `listen_on`
    /// addresses of its scheme (see [`Settings::custom_transports`] and
    /// [`Transport`](crate::session::transport::Transport); at most
    /// [`MAX_TRANSPORTS`](crate::session::transport::MAX_TRANSPORTS)). An invalid or taken
    /// scheme makes [`start`](Self::start) fail with [`StartError::Transport`].
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> NodeBuilder {
        if let Err(e) = self.settings.custom_transports.register(transport) {
            self.transport_error.get_or_insert(e);
        }
        self
    }

    /// Also accepts sessions on this transport address (repeatable; see
    /// [`Settings::listen_also`]).
    pub fn listen_on(mut self, addr: TransportAddr) -> NodeBuilder {
        self.settings.listen_also.push(addr);
        self
    }

    /// Runs on the in-memory network of `hub` instead of sockets (`listen` is then ignored).
    pub fn in_memory(mut self, hub: &MemoryHub) -> NodeBuilder {
        self.hub = Some(hub.clone());
        self
    }

    /// Starts the node: binds its sockets and its receiving tasks.
    ///
    /// # Errors
    /// [`StartError`]: invalid settings or membership, no listen address, a bind error.
    pub async fn start(self) -> Result<Node, StartError> {
        if let Some(e) = self.transport_error {
            return Err(StartError::Transport(e));
        }
        let mut membership = Membership::new(self.settings.max_nodes);
        for m in &self.members {
            membership.insert(m.clone())?;
        }
        let shell = match self.hub {
            Some(hub) => memory::start(&hub, self.id, self.members, self.settings)?,
            None => {
                let listen = self.listen.ok_or(StartError::NoListenAddr)?;
                network::start(
                    self.id,
                    listen,
                    self.lsp_listen,
                    self.advertise,
                    self.members,
                    self.settings,
                )
                .await?
            }
        };
        driver::start(&shell);
        Ok(Node {
            inner: Arc::new(Inner {
                shell,
                handlers: TaskTracker::new(),
                cancel: CancellationToken::new(),
            }),
        })
    }
}

/// A node of the cluster: sends to node ids and receives from them. It runs the node engine
/// ([`hawser_proto::node::Engine`]) under one lock, driven by one task, over sessions (TCP,
/// LSP, WebSocket, `mem://`) and UDP, or over a [`MemoryHub`].
///
/// Cheap to clone; every clone is the same node. Dropping the last clone without
/// [`stop`](Self::stop) stops the node without waiting for its tasks.
#[derive(Clone, Debug)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    shell: Arc<Shell>,
    /// Tasks running `on_receive` handlers.
    handlers: TaskTracker,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shell.id)
            .finish_non_exhaustive()
    }
}

/// A [`Node`] that does not keep it running: [`upgrade`](Self::upgrade) gives it back while
/// some other clone exists.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct WeakNode(std::sync::Weak<Inner>);

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
impl WeakNode {
    /// The node, unless every `Node` handle has been dropped.
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.shell.begin_stop();
    }
}

impl Node {
    /// A builder for node `id`.
    pub fn builder(id: impl Into<NodeId>) -> NodeBuilder {
        NodeBuilder {
            id: id.into(),
            listen: None,
            lsp_listen: None,
            members: Vec::new(),
            settings: Settings::default(),
            hub: None,
            advertise: Vec::new(),
            transport_error: None,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.shell.id
    }

    /// The address the node listens on (TCP and UDP); `None` on a [`MemoryHub`].
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.shell.links().local_addr()
    }

    /// This node's `PeerId` (what peers pin); `None` on a [`MemoryHub`] (no sessions).
    pub fn peer_id(&self) -> Option<PeerId> {
        self.inner.shell.links().peer_id()
    }

    /// Every address this node accepts reliable connections on: `tcp://` for
    /// [`local_addr`](Self::local_addr), then `lsp://` and the extra listeners (empty for the
    /// in-memory network).
    pub fn listen_addrs(&self) -> Vec<TransportAddr> {
        self.inner.shell.links().listen_addrs()
    }

    /// Queues a message for `to`. Never blocks.
    ///
    /// # Errors
    /// At once: [`SendError::QueueFull`], [`SendError::UnknownNode`], [`SendError::TooLarge`],
    /// [`SendError::Stopped`] (or [`SendError::NoAddress`]).
    pub fn try_send(
        &self,
        to: impl Into<NodeId>,
        payload: impl Into<Bytes>,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        self.inner
            .shell
            .try_send_bytes(to.into(), payload.into(), delivery)
    }

    /// Like [`try_send`](Self::try_send), but waits for room in the queue instead of failing.
    ///
    /// # Errors
    /// As `try_send`, except `QueueFull`.
    ///
    /// # Cancel safety
    /// Cancelling before it returns leaves the message unsent.
    pub async fn send(
        &self,
        to: impl Into<NodeId>,
        payload: impl Into<Bytes>,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        self.inner
            .shell
            .send(to.into(), payload.into(), delivery)
            .await
    }

    /// Queues the messages at the front of `batch` for `to`, in order, and removes them from
    /// it: the fast way to send many messages to one node (one hold of the node's lock and
    /// one clock reading per batch, at most one wake-up of the connection's writer). Stops at
    /// the first message it cannot queue (a full queue, a payload too large), which stays at the front
    /// of `batch`. Never blocks.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), when not even the first message could be queued; `Ok(n)`
    /// with how many were queued otherwise.
    pub fn try_send_batch(
        &self,
        to: impl Into<NodeId>,
        batch: &mut std::collections::VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<usize, SendError> {
        self.inner.shell.try_send_batch(to.into(), batch, delivery)
    }

    /// Like [`try_send_batch`](Self::try_send_batch), waiting for queue room instead of failing with
    /// `QueueFull`; returns once all of `batch` is queued.
    ///
    /// # Errors
    /// As `send`.
    ///
    /// # Cancel safety
    /// Cancelling leaves in `batch`, in order, exactly the messages not yet queued.
    pub async fn send_batch(
        &self,
        to: impl Into<NodeId>,
        batch: &mut std::collections::VecDeque<Bytes>,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        self.inner
            .shell
            .send_batch(to.into(), batch, delivery)
            .await
    }

    /// Sends to every node of `group` except this one; never blocks. Returns the outcome for
    /// each destination.
    pub fn broadcast(
        &self,
        group: Group,
        payload: impl Into<Bytes>,
        delivery: Delivery,
    ) -> BroadcastReport {
        self.broadcast_to(group, payload.into(), delivery, false)
    }

    /// Like [`broadcast`](Self::broadcast), this node included (it receives its own message
    /// through [`incoming`](Self::incoming)).
    pub fn broadcast_including_self(
        &self,
        group: Group,
        payload: impl Into<Bytes>,
        delivery: Delivery,
    ) -> BroadcastReport {
        self.broadcast_to(group, payload.into(), delivery, true)
    }

    /// Like [`try_send`](Self::try_send), but only to a peer whose liveness lease holds (this node
    /// itself always qualifies). Sending to a dead peer with `try_send` stays allowed: the queue
    /// deadline decides its fate.
    ///
    /// # Errors
    /// As `try_send`, and [`SendError::NotAlive`] (checked after `Stopped` and `UnknownNode`).
    pub fn try_send_alive(
        &self,
        to: impl Into<NodeId>,
        payload: impl Into<Bytes>,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        self.inner
            .shell
            .try_send_alive(to.into(), payload.into(), delivery)
    }

    /// Like [`broadcast`](Self::broadcast), restricted to the peers of `group` that are alive:
    /// each other one is left out, with the outcome [`SendError::NotAlive`] in the report.
    pub fn broadcast_alive(
        &self,
        group: Group,
        payload: impl Into<Bytes>,
        delivery: Delivery,
    ) -> BroadcastReport {
        let (shell, payload) = (&self.inner.shell, payload.into());
        let targets = shell.membership().select(group, Some(shell.id));
        let outcomes = targets
            .into_iter()
            .map(|to| (to, shell.try_send_alive(to, payload.clone(), delivery)))
            .collect();
        BroadcastReport { outcomes }
    }

    /// Every peer reachability knows, in id order (configured members not heard from yet are
    /// absent): whether it is alive and until when, the lease it announced, its incarnation,
    /// and each address with existence (`last_found`/`last_dismiss` stamps of the peer) and
    /// reachability (`last_reachable`/`promise_reachable` instants of this node's clock).
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        self.inner.shell.lock().engine.peers()
    }

    /// One peer of [`peers`](Self::peers).
    pub fn peer(&self, id: impl Into<NodeId>) -> Option<PeerSnapshot> {
        let id = id.into();
        self.peers().into_iter().find(|p| p.id == id)
    }

    /// Whether `peer`'s liveness lease holds, as last reported by a [`PeerEvents`] event.
    pub fn is_alive(&self, peer: impl Into<NodeId>) -> bool {
        self.inner.shell.lock().engine.is_alive(peer.into())
    }

    /// A new stream of reachability changes from now on: `PeerAlive`, `PeerDead`,
    /// `AddressFound`, `AddressDown`, `AddressReachable`, `AddressUnreachable`, in order.
    /// Any number of streams may be open; each is bounded by
    /// `Settings::reach.event_capacity` and yields `Err(Lagged(n))` when its consumer fell
    /// behind and `n` events were dropped for it. Ends after [`stop`](Self::stop).
    pub fn peer_events(&self) -> PeerEvents {
        self.inner.shell.peer_events()
    }

    /// Reachability counters (`None` when it is disabled).
    pub fn reach_stats(&self) -> Option<ReachStats> {
        self.inner
            .shell
            .lock()
            .engine
            .reachability()
            .map(|r| r.stats())
    }

    /// The liveness lease this node announces now (`None` when reachability is disabled).
    pub fn lease_in_force(&self) -> Option<std::time::Duration> {
        self.inner
            .shell
            .lock()
            .engine
            .reachability()
            .map(|r| r.lease_in_force())
    }

    /// The stream of received messages. One consumer at a time: while a stream (or an
    /// [`on_receive`](Self::on_receive) handler) is alive, another call gets a stream that ends
    /// at once. The stream ends after [`stop`](Self::stop).
    pub fn incoming(&self) -> IncomingStream {
        self.inner.shell.incoming()
    }

    /// Calls `handler` for every received message, on a task of its own (PhxPaxos's
    /// `OnReceiveMessage`), built on [`incoming`](Self::incoming). The task ends at
    /// [`stop`](Self::stop).
    pub fn on_receive(&self, handler: impl FnMut(Incoming) + Send + 'static) {
        let mut handler = handler;
        let mut stream = self.incoming();
        let cancel = self.inner.cancel.clone();
        self.inner.handlers.spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = stream.recv() => m,
                    () = cancel.cancelled() => None,
                };
                match msg {
                    Some(m) => handler(m),
                    None => break,
                }
            }
            debug!("receive handler ended");
        });
    }

    /// Sends a request to node `to` for the handler of `protocol` there, and waits for its
    /// response, at most `options.timeout` (default `RpcSettings::default_timeout`, 5 s).
    ///
    /// The request travels reliably, in order with this node's other messages and requests
    /// to `to`, over whichever transport reaches it (TCP, LSP, WebSocket, memory; encrypted
    /// with the node's sessions), in one piece of up to `RpcSettings::max_request` bytes.
    /// Its deadline travels with it: the peer drops it unhandled once the deadline has
    /// passed. A request to this node itself goes to its own handler.
    ///
    /// # Errors
    /// [`RequestError`]: each way a request can fail is its own variant (`Timeout`,
    /// `Unreachable`, `Refused`, `NoHandler`, `Overloaded`, `TooLarge`, `ResponseOmitted`,
    /// `Stopped`, ...).
    ///
    /// # Cancel safety
    /// Dropping the future forgets the request and sends a cancel to the peer, whose handler
    /// sees [`InboundRequest::cancelled`] resolve.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use hawser_net::node::{Member, MemoryHub, Node, RequestOptions, Role};
    /// use hawser_net::session::ProtocolId;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// const ECHO: ProtocolId = ProtocolId(1024);
    /// let hub = MemoryHub::new();
    /// let members = [Member::without_addr(1, Role::Member), Member::without_addr(2, Role::Member)];
    /// let a = Node::builder(1).members(members.clone()).in_memory(&hub).start().await?;
    /// let b = Node::builder(2).members(members).in_memory(&hub).start().await?;
    /// let mut requests = b.serve(ECHO)?;
    /// tokio::spawn(async move {
    ///     while let Some(req) = requests.recv().await {
    ///         let answer = req.payload().clone();
    ///         let _ = req.respond(answer);
    ///     }
    /// });
    /// let options = RequestOptions::timeout(Duration::from_secs(2));
    /// let answer = a.request(2, ECHO, "ping", options).await?;
    /// assert_eq!(&answer[..], b"ping");
    /// a.stop().await;
    /// b.stop().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn request(
        &self,
        to: impl Into<NodeId>,
        protocol: ProtocolId,
        payload: impl Into<Bytes>,
        options: RequestOptions,
    ) -> Result<Bytes, RequestError> {
        self.inner
            .shell
            .request(to.into(), protocol, payload.into(), options.timeout)
            .await
    }

    /// The requests of `protocol` (an id from 1,024) sent to this node, for the caller to
    /// answer each with [`InboundRequest::respond`] or [`InboundRequest::refuse`]. One
    /// receiver per protocol; while none exists, requests are answered `NoHandler`.
    ///
    /// # Errors
    /// [`ServeError::Reserved`], [`ServeError::AlreadyServed`], [`ServeError::Stopped`].
    pub fn serve(&self, protocol: ProtocolId) -> Result<InboundRequests, ServeError> {
        self.inner.shell.serve(protocol)
    }

    /// Serves `protocol` with `handler`: each request runs `handler(request)` on a task of
    /// its own (at most `RpcSettings::max_inbound` at once), until [`stop`](Self::stop).
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub fn serve_with<F, Fut>(&self, protocol: ProtocolId, handler: F) -> Result<(), ServeError>
    where
        F: Fn(InboundRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut requests = self.serve(protocol)?;
        let cancel = self.inner.cancel.clone();
        let tasks = self.inner.handlers.clone();
        let limit = self.inner.shell.settings.rpc.max_inbound;
        let running = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        self.inner.handlers.spawn(async move {
            loop {
                // A permit first: at most `max_inbound` handlers run at once.
                let permit = tokio::select! {
                    p = running.clone().acquire_owned() => p,
                    () = cancel.cancelled() => break,
                };
                let Ok(permit) = permit else { break };
                let request = tokio::select! {
                    r = requests.recv() => r,
                    () = cancel.cancelled() => None,
                };
                let Some(request) = request else { break };
                let call = handler(request);
                tasks.spawn(async move {
                    call.await;
                    drop(permit);
                });
            }
        });
        Ok(())
    }

    /// Opens a byte stream of `protocol` to node `to`, for bulk transfers: a multiplexed
    /// stream of the session to it, so it neither waits behind nor holds back messages,
    /// requests and heartbeats. The protocol must be in `Settings::protocols` on both nodes,
    /// and the peer must accept its streams ([`accept_streams`](Self::accept_streams)).
    ///
    /// # Errors
    /// [`StreamError`]: `Unreachable` (no session within `connect_timeout`), `NoHandler`,
    /// `Overloaded`, `NotRegistered`, `UnknownNode`, `Stopped`, `Unsupported`, `Io`.
    pub async fn open_stream(
        &self,
        to: impl Into<NodeId>,
        protocol: ProtocolId,
    ) -> Result<NodeStream, StreamError> {
        self.inner.shell.open_stream(to.into(), protocol).await
    }

    /// The streams of `protocol` other nodes open to this one, each with the node that
    /// opened it. One receiver per protocol.
    ///
    /// # Errors
    /// [`ServeError`], and [`ServeError::NotRegistered`] for a protocol outside
    /// `Settings::protocols`.
    pub fn accept_streams(&self, protocol: ProtocolId) -> Result<InboundStreams, ServeError> {
        self.inner.shell.streams.accept_streams(protocol)
    }

    /// Counters of requests and streams.
    pub fn rpc_stats(&self) -> RpcStats {
        self.inner.shell.rpc_stats()
    }

    /// A copy of the membership.
    pub fn membership(&self) -> Membership {
        self.inner.shell.membership()
    }

    /// Changes the membership at run time (add, remove, change role or addresses).
    ///
    /// # Errors
    /// [`MembershipError`]; nothing changes then.
    pub fn change_membership(&self, change: MembershipChange) -> Result<(), MembershipError> {
        self.inner.shell.change_membership(change)
    }

    /// Counters of one peer (`None` if it is not a member).
    pub fn peer_stats(&self, peer: impl Into<NodeId>) -> Option<PeerStats> {
        self.inner.shell.peer_stats(peer.into())
    }

    /// Node-wide counters.
    pub fn stats(&self) -> NodeStats {
        self.inner.shell.stats()
    }

    /// A handle that does not keep the node running (for background publishers).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.inner.shell.is_stopped()
    }

    /// Stops receiving and sending (queued messages are dropped), and returns once every task
    /// of the node has ended. Idempotent.
    ///
    /// Every socket the node listens on (TCP, UDP, `lsp_listen`, `listen_also`) is closed
    /// when it returns: a node restarted at once binds the same addresses again.
    ///
    /// # Cancel safety
    /// Stopping begins at the first poll; cancelling only stops the waiting.
    pub async fn stop(&self) {
        self.inner.shell.begin_stop();
        self.inner.cancel.cancel();
        self.inner.handlers.close();
        self.inner.shell.tracker.wait().await;
        self.inner.handlers.wait().await;
    }

    /// Sends to the members of `group` (and this node when `include_self`), in id order.
    fn broadcast_to(
        &self,
        group: Group,
        payload: Bytes,
        delivery: Delivery,
        include_self: bool,
    ) -> BroadcastReport {
        let shell = &self.inner.shell;
        let except = (!include_self).then_some(shell.id);
        let mut targets = shell.membership().select(group, except);
        if include_self && !targets.contains(&shell.id) {
            targets.push(shell.id);
            targets.sort();
        }
        let outcomes = targets
            .into_iter()
            .map(|to| (to, shell.try_send_bytes(to, payload.clone(), delivery)))
            .collect();
        BroadcastReport { outcomes }
    }
}
