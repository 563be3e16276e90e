//! Shared harness of the node tests: start a cluster on the in-memory network, on 127.0.0.1
//! (TCP + UDP), on 127.0.0.1 with reliable delivery over LSP, or on 127.0.0.1 with reliable
//! delivery over a session transport (`ws://`, `mem://`, `lsp://`, or `uds://`, a transport
//! written outside hawser: [`uds`]), with short timers.
#![allow(dead_code)]

/// The Unix-domain-socket transport of the `uds_transport` example, written against the public
/// seam only.
#[path = "../../examples/uds_transport/uds.rs"]
pub mod uds;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hawser_net::node::{
    Incoming, IncomingStream, Member, MemoryHub, Node, NodeId, QueueLimits, ReliableTransport,
    Role, Settings, StartError,
};
use hawser_net::session::{Identity, TransportAddr};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// Which network a cluster runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Memory,
    Tcp,
    Lsp,
    /// The default network, reliable messages over `ws://` sessions (`Settings::transports`).
    SessionWs,
    /// The default network, reliable messages over `mem://` sessions.
    SessionMem,
    /// The default network, reliable messages over `lsp://` sessions.
    SessionLsp,
    /// The default network, reliable messages over `uds://` sessions: Unix domain sockets,
    /// a transport of the test's own ([`uds::Uds`], registered with `NodeBuilder::transport`).
    SessionUds,
}

impl Kind {
    /// Whether reliable messages go over a session transport of `Settings::transports`.
    pub fn is_session(self) -> bool {
        matches!(
            self,
            Kind::SessionWs | Kind::SessionMem | Kind::SessionLsp | Kind::SessionUds
        )
    }
}

/// Session-transport clusters give a transport address to every id up to this one, before
/// any node starts, so a node added later (`membership_changes`) is reached over it too.
pub const MAX_TEST_ID: u64 = 8;

/// Test settings: short back-off, a 1 s deadline.
pub fn settings() -> Settings {
    let mut s = Settings::default();
    s.queue = QueueLimits::default().with_deadline(Duration::from_secs(1));
    s.backoff_initial = Duration::from_millis(20);
    s.backoff_max = Duration::from_millis(100);
    s.connect_timeout = Duration::from_secs(1);
    s
}

/// Nodes of one test cluster, and how to (re)start them.
pub struct Cluster {
    pub kind: Kind,
    pub hub: MemoryHub,
    pub roles: Vec<(u64, Role)>,
    pub addrs: HashMap<u64, SocketAddr>,
    pub lsp_addrs: HashMap<u64, SocketAddr>,
    /// Session kinds: where each node accepts reliable sessions (`listen_on`); every node
    /// sends reliable messages to it there (`settings.transports`).
    pub transports: HashMap<u64, TransportAddr>,
    pub settings: Settings,
    /// `Kind::SessionUds`: the directory of the nodes' socket files, removed with the cluster.
    pub uds_dir: Option<PathBuf>,
    /// Each node's identity, pinned in every node's settings (`Settings::pins`), as in
    /// production: pinned peers share one session both ways. Empty for [`Kind::Memory`]
    /// (no sessions), for [`Kind::Lsp`] (so that the suite also runs nodes that each write on
    /// sessions of their own) and after [`Cluster::unpinned`].
    pub identities: HashMap<u64, Arc<Identity>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(dir) = &self.uds_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where a test node listens before its peers are told the address: a port taken at random
/// below Linux's ephemeral range (32768 and up), checked free by binding it once. A port asked
/// of the kernel with `:0` and released could be handed to the next `:0` socket of a test
/// running alongside ("address already in use" when the node binds it); this range is never
/// handed out for `:0`.
fn free_port(free: impl Fn(SocketAddr) -> bool) -> SocketAddr {
    loop {
        let addr: SocketAddr = ([127, 0, 0, 1], fastrand::u16(20_000..32_768)).into();
        if free(addr) {
            return addr;
        }
    }
}

/// A UDP port on 127.0.0.1 for a node to bind (see [`free_port`]).
pub fn free_udp_port() -> SocketAddr {
    free_port(|a| std::net::UdpSocket::bind(a).is_ok())
}

/// A TCP port on 127.0.0.1 for a node to listen on (see [`free_port`]).
pub fn free_tcp_port() -> SocketAddr {
    free_port(|a| std::net::TcpListener::bind(a).is_ok())
}

/// A new directory for one cluster's socket files (short: a socket path has at most 107
/// bytes).
fn uds_dir() -> PathBuf {
    static DIRS: AtomicU64 = AtomicU64::new(0);
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hawser-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the socket directory");
    dir
}

/// The session transport address of node `id` for `kind` (`mem://` names are unique in the
/// process: the in-memory transport's names are global; `uds://` paths are in `dir`).
fn transport_addr(kind: Kind, id: u64, dir: Option<&PathBuf>) -> TransportAddr {
    static CLUSTER: AtomicU64 = AtomicU64::new(0);
    match (kind, dir) {
        (Kind::SessionUds, Some(dir)) => {
            let path = dir.join(format!("{id}.sock"));
            TransportAddr::other("uds", &path.display().to_string()).expect("a uds address")
        }
        _ => transport_addr_of(kind, id, &CLUSTER),
    }
}

fn transport_addr_of(kind: Kind, id: u64, cluster: &AtomicU64) -> TransportAddr {
    match kind {
        Kind::SessionWs => TransportAddr::Ws(free_tcp_port()),
        Kind::SessionLsp => TransportAddr::Lsp(free_udp_port()),
        Kind::SessionMem => {
            let n = cluster.fetch_add(1, Ordering::Relaxed);
            TransportAddr::Mem(format!("node-suite-{n}-{id}"))
        }
        _ => unreachable!("{kind:?} has no session transport"),
    }
}

impl Cluster {
    pub fn new(kind: Kind, roles: &[(u64, Role)]) -> Cluster {
        let mut settings = settings();
        if kind == Kind::Lsp {
            settings.reliable = ReliableTransport::Lsp;
        }
        if kind == Kind::SessionLsp || kind == Kind::Lsp {
            // LSP has no close: a stopped peer is noticed only after `epoch_limit` silent
            // epochs. 100 ms (not 2 s) lets the suite's timings (a restart within the 1 s
            // deadline) see a stop as TCP would.
            settings.lsp.params.epoch = Duration::from_millis(20);
            settings.lsp.params.epoch_limit = 5;
        }
        let mut transports = HashMap::new();
        let uds_dir = (kind == Kind::SessionUds).then(uds_dir);
        if kind.is_session() {
            for id in 1..=MAX_TEST_ID {
                let addr = transport_addr(kind, id, uds_dir.as_ref());
                settings.transports.insert(NodeId(id), addr.clone());
                transports.insert(id, addr);
            }
        }
        let mut identities = HashMap::new();
        if !matches!(kind, Kind::Memory | Kind::Lsp) {
            for id in 1..=MAX_TEST_ID {
                let identity = Arc::new(Identity::generate().expect("an identity"));
                settings.pins.insert(NodeId(id), vec![identity.peer_id()]);
                identities.insert(id, identity);
            }
        }
        Cluster {
            kind,
            hub: MemoryHub::new(),
            roles: roles.to_vec(),
            addrs: HashMap::new(),
            lsp_addrs: HashMap::new(),
            transports,
            settings,
            uds_dir,
            identities,
        }
    }

    /// The same cluster with no pins and an identity of its own at every start: a node id
    /// is then only a claim, as for tests that play impostors.
    pub fn unpinned(mut self) -> Cluster {
        self.identities.clear();
        self.settings.pins.clear();
        self
    }

    /// `n` members with ids 1..=n.
    pub fn members(kind: Kind, n: u64) -> Cluster {
        let roles: Vec<_> = (1..=n).map(|i| (i, Role::Member)).collect();
        Cluster::new(kind, &roles)
    }

    fn member(&self, id: u64, role: Role) -> Member {
        let mut m = Member::without_addr(id, role);
        if let Some(a) = self.addrs.get(&id) {
            m.addrs.push(*a);
        }
        m.lsp_addr = self.lsp_addrs.get(&id).copied();
        m
    }

    pub fn membership(&self) -> Vec<Member> {
        self.roles
            .iter()
            .map(|&(id, role)| self.member(id, role))
            .collect()
    }

    /// Starts (or restarts, at its previous address) node `id`: a stopped node has released
    /// its addresses when `stop` returns, so a restart binds them again at once.
    pub async fn start(&mut self, id: u64) -> Node {
        self.try_start(id).await.unwrap()
    }

    async fn try_start(&mut self, id: u64) -> Result<Node, StartError> {
        if self.kind == Kind::Lsp {
            // A node added after `start_all` needs its LSP address too.
            self.lsp_addrs.entry(id).or_insert_with(free_udp_port);
        }
        let b = Node::builder(id)
            .members(self.membership())
            .settings(self.settings.clone());
        let b = match self.identities.get(&id) {
            Some(identity) => b.identity(identity.clone()),
            None => b,
        };
        let b = match self.kind {
            Kind::SessionUds => b.transport(Arc::new(uds::Uds)),
            _ => b,
        };
        let b = match self.transports.get(&id) {
            Some(t) => b.listen_on(t.clone()),
            None => b,
        };
        let node = match self.kind {
            Kind::Memory => b.in_memory(&self.hub).start().await?,
            Kind::Tcp
            | Kind::Lsp
            | Kind::SessionWs
            | Kind::SessionMem
            | Kind::SessionLsp
            | Kind::SessionUds => {
                let listen = self
                    .addrs
                    .get(&id)
                    .copied()
                    .unwrap_or(([127, 0, 0, 1], 0).into());
                let b = b.listen(listen);
                let b = match self.lsp_addrs.get(&id) {
                    Some(a) => b.lsp_listen(*a),
                    None => b,
                };
                b.start().await?
            }
        };
        if let Some(addr) = node.local_addr() {
            self.addrs.insert(id, addr);
        }
        if let Some(t) = self.transports.get(&id) {
            assert!(node.listen_addrs().contains(t), "{t} not listened on");
        }
        Ok(node)
    }

    /// Starts every node, then tells each node every address.
    pub async fn start_all(&mut self) -> Vec<Node> {
        if self.kind == Kind::Lsp {
            for &(id, _) in &self.roles {
                self.lsp_addrs.insert(id, free_udp_port());
            }
        }
        let ids: Vec<u64> = self.roles.iter().map(|r| r.0).collect();
        let mut nodes = Vec::new();
        for id in ids {
            nodes.push(self.start(id).await);
        }
        let all = self.membership();
        for node in &nodes {
            for m in &all {
                node.change_membership(hawser_net::node::MembershipChange::Add(m.clone()))
                    .unwrap();
            }
        }
        nodes
    }
}

/// The next message, or a panic after [`WAIT`].
pub async fn next(inbox: &mut IncomingStream) -> Incoming {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("stream ended")
}

/// Whether nothing arrives within `d`.
pub async fn quiet(inbox: &mut IncomingStream, d: Duration) -> bool {
    tokio::time::timeout(d, inbox.recv()).await.is_err()
}

/// Polls `cond` every 10 ms until true, or panics after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops every node.
pub async fn stop_all(nodes: &[Node]) {
    for n in nodes {
        tokio::time::timeout(WAIT, n.stop())
            .await
            .expect("stop hung");
    }
}

/// A session to `addr` as a node of the default network would open it (default network id,
/// the given identity), for tests that play a hostile or stranger node.
pub async fn raw_session(addr: SocketAddr, identity: [u8; 32]) -> hawser_net::session::Session {
    raw_session_with(addr, identity, hawser_net::session::Security::default()).await
}

/// The same with `security` (for nodes that run another cipher, or plaintext).
pub async fn raw_session_with(
    addr: SocketAddr,
    identity: [u8; 32],
    security: hawser_net::session::Security,
) -> hawser_net::session::Session {
    let mut settings = Settings::default();
    settings.security = security;
    let config = settings.session_config(std::sync::Arc::new(
        hawser_net::session::Identity::from_secret_bytes(&identity),
    ));
    let to = hawser_net::session::TransportAddr::Tcp(addr);
    tokio::time::timeout(
        WAIT,
        hawser_net::session::dial(&to, &settings.transport_config(), &config, None),
    )
    .await
    .expect("dial timed out")
    .expect("dial failed")
}

/// A length-prefixed framed hello naming node `from`, as the first frame of a node stream.
pub fn framed_hello(from: u64) -> Vec<u8> {
    let mut hello = bytes::BytesMut::new();
    hawser_proto::wire::node::FramedHello { from, listen: None }.emit(&mut hello);
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    frame
}

/// Waits until `session` ends, or panics after [`WAIT`].
pub async fn session_closed(session: &hawser_net::session::Session) {
    tokio::time::timeout(WAIT, session.closed())
        .await
        .expect("session not closed by the node");
}

/// `suite!(Kind: test_a, test_b, ...)`: a module named after the network kind with one
/// `#[tokio::test]` per scenario, each running `scenario(Kind::...)` on two worker threads under
/// a 60 s bound. Scenarios are `async fn(Kind)` of the including file.
#[allow(unused_macros)]
macro_rules! suite {
    ($kind:ident: $($test:ident),* $(,)?) => {
        #[allow(non_snake_case)]
        mod $kind {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    tokio::time::timeout(Duration::from_secs(60), super::$test(Kind::$kind))
                        .await
                        .expect("test timed out");
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use suite;
