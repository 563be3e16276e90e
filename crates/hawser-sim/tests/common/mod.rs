//! The shared harness of the LSP scenario tests (spec section 5): a [`Cluster`] of one
//! [`ServerEndpoint`] at `fake_addr(0)` and N [`ClientEndpoint`]s at `fake_addr(1..)`, on one
//! [`SimNet`], with a small application on top that the run loop drives after every step:
//!
//! - the server reads everything it is given and, when `echo` is on, writes each message back to
//!   the connection it came from (optionally "sleeping" a random time first, sequentially, like
//!   the reference echo server);
//! - each client reads everything it is given, and may run a script of writes (all at once, or
//!   one round trip at a time).
//!
//! Everything runs on simulated time: `run_until` jumps from event to event. Randomness (ISNs,
//! payloads, echo delays) comes from `hawser_sim::seed()`: each scenario runs on [`SEEDS`]
//! seeds (`hawser_sim::for_each_seed`), and a failing one prints `HAWSER_SEED=<seed> to
//! replay`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::lsp::{
    ClientEndpoint, ClientRead, ClientState, Config, Connection, EndReason, Params,
    RetransmitPolicy, ServerEndpoint, ServerRead, WriteError,
};
use hawser_proto::wire::{Codec, ConnId, Message, MsgType, SeqNum};
use hawser_sim::{fake_addr, message_hook, seed, FaultConfig, SimNet, TraceKind, Verdict};

/// One millisecond.
pub const MS: Duration = Duration::from_millis(1);

/// How many seeds each scenario runs on (`hawser_sim::for_each_seed`; `HAWSER_SEEDS`
/// overrides it).
pub const SEEDS: usize = 8;

/// Runs one scenario for both codecs, on [`SEEDS`] seeds each: `name: |codec| body;` becomes
/// `mod name` with the tests `json` and `binary`.
macro_rules! both_codecs {
    ($($(#[$meta:meta])* $name:ident: |$codec:ident| $body:expr;)*) => {
        $(
            $(#[$meta])*
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[test]
                fn json() {
                    let $codec = hawser_proto::wire::Codec::Json;
                    hawser_sim::for_each_seed(SEEDS, |_| $body);
                }

                #[test]
                fn binary() {
                    let $codec = hawser_proto::wire::Codec::Binary;
                    hawser_sim::for_each_seed(SEEDS, |_| $body);
                }
            }
        )*
    };
}

/// The five protocol parameters, in the reference's order: K, δ (ms), ω, MaxBackOffInterval, M.
pub fn params(
    epoch_limit: u32,
    epoch_ms: u64,
    window: u32,
    max_backoff: u32,
    max_unacked: u32,
) -> Params {
    Params::reference()
        .with_epoch_limit(epoch_limit)
        .with_epoch(Duration::from_millis(epoch_ms))
        .with_window(window)
        .with_max_backoff(max_backoff)
        .with_max_unacked(max_unacked)
}

/// The configuration of the reference's behaviour: `params`, `codec`, and retransmission only
/// at epochs with per-message back-off (spec 3.4), whatever the codec.
pub fn reference_config(codec: Codec, params: Params) -> Config {
    Config::new(params)
        .with_codec(codec)
        .with_retransmit(RetransmitPolicy::Epoch)
}

/// A client's script of writes.
#[derive(Debug)]
pub struct Script {
    msgs: Vec<Bytes>,
    written: usize,
    /// Write the next message only once every earlier one has been echoed back.
    lockstep: bool,
    /// How many messages the client had read when the script started.
    base: usize,
}

/// The application above the endpoints, and what it saw.
#[derive(Debug)]
pub struct App {
    /// The server reads whatever is readable after each step.
    pub read_server: bool,
    /// Each client reads whatever is readable after each step.
    pub read_clients: bool,
    /// The server writes every message it reads back to its connection.
    pub echo: bool,
    /// Before each echo the server "sleeps" a random time below this, reading nothing meanwhile.
    pub echo_delay_max: Option<Duration>,
    /// What the server read, per connection, in order.
    pub server_reads: BTreeMap<ConnId, Vec<Bytes>>,
    /// How the server's reader saw each connection end.
    pub server_ended: BTreeMap<ConnId, EndReason>,
    /// Echo writes the server refused.
    pub echo_errors: Vec<(ConnId, WriteError)>,
    /// What each client read, in order.
    pub client_reads: Vec<Vec<Bytes>>,
    /// How each client's reader saw its connection end.
    pub client_ended: Vec<Option<EndReason>>,
    /// Each client's script, if any.
    pub scripts: Vec<Option<Script>>,
    /// The most out-of-order messages any server connection held at once.
    pub max_ahead_server: usize,
    /// The most out-of-order messages any client held at once.
    pub max_ahead_clients: usize,
    pending_echo: Option<(Instant, ConnId, Bytes)>,
    rng: fastrand::Rng,
}

impl App {
    fn new(seed: u64) -> App {
        App {
            read_server: true,
            read_clients: true,
            echo: false,
            echo_delay_max: None,
            server_reads: BTreeMap::new(),
            server_ended: BTreeMap::new(),
            echo_errors: Vec::new(),
            client_reads: Vec::new(),
            client_ended: Vec::new(),
            scripts: Vec::new(),
            max_ahead_server: 0,
            max_ahead_clients: 0,
            pending_echo: None,
            rng: fastrand::Rng::with_seed(seed ^ 0xEC40),
        }
    }

    /// When the sleeping echo server wakes up, if it sleeps.
    fn next_wakeup(&self) -> Option<Instant> {
        self.pending_echo.as_ref().map(|(at, _, _)| *at)
    }

    fn echo_write(&mut self, net: &mut SimNet, server: SocketAddr, id: ConnId, payload: Bytes) {
        let result = net
            .with(server, |s: &mut ServerEndpoint, now| {
                s.write(now, id, payload)
            })
            .expect("the server is a ServerEndpoint");
        if let Err(err) = result {
            self.echo_errors.push((id, err));
        }
    }

    fn pump_server(&mut self, net: &mut SimNet, server: SocketAddr) {
        if !self.read_server || net.endpoint::<ServerEndpoint>(server).is_err() {
            return;
        }
        let now = net.now();
        loop {
            if let Some((at, id, payload)) = self.pending_echo.take() {
                if at > now {
                    self.pending_echo = Some((at, id, payload));
                    return;
                }
                self.echo_write(net, server, id, payload);
            }
            let item = net
                .with(server, |s: &mut ServerEndpoint, _| s.read())
                .expect("the server is a ServerEndpoint");
            match item {
                None => return,
                Some(ServerRead::Data(id, payload)) => {
                    self.server_reads
                        .entry(id)
                        .or_default()
                        .push(payload.clone());
                    if !self.echo {
                        continue;
                    }
                    match self.echo_delay_max {
                        Some(max) => {
                            let sleep = self.rng.u64(0..max.as_millis().max(1) as u64);
                            self.pending_echo =
                                Some((now + Duration::from_millis(sleep), id, payload));
                        }
                        None => self.echo_write(net, server, id, payload),
                    }
                }
                Some(ServerRead::Ended(id, reason)) => {
                    let before = self.server_ended.insert(id, reason);
                    assert_eq!(before, None, "the server's reader saw {id} end twice");
                }
            }
        }
    }

    fn pump_client(&mut self, net: &mut SimNet, i: usize, addr: SocketAddr) {
        if self.read_clients && self.client_ended[i].is_none() {
            loop {
                let item = net
                    .with(addr, |c: &mut ClientEndpoint, _| c.read())
                    .expect("clients are ClientEndpoints");
                match item {
                    Some(ClientRead::Data(payload)) => self.client_reads[i].push(payload),
                    Some(ClientRead::Ended(reason)) => {
                        self.client_ended[i] = Some(reason);
                        break;
                    }
                    None => break,
                }
            }
        }
        let read = self.client_reads[i].len();
        let Some(script) = self.scripts[i].as_mut() else {
            return;
        };
        let connected = net
            .endpoint::<ClientEndpoint>(addr)
            .is_ok_and(|c| c.conn_id().is_some());
        if !connected {
            return; // like the reference, a script starts once its client is connected
        }
        while script.written < script.msgs.len()
            && (!script.lockstep || read - script.base >= script.written)
        {
            let msg = script.msgs[script.written].clone();
            let result = net
                .with(addr, |c: &mut ClientEndpoint, now| c.write(now, msg))
                .expect("clients are ClientEndpoints");
            if let Err(err) = result {
                panic!("client {i}: write {} failed: {err}", script.written);
            }
            script.written += 1;
        }
    }

    fn track_ahead(&mut self, net: &SimNet, server: SocketAddr, clients: &[SocketAddr]) {
        let server = net.endpoint::<ServerEndpoint>(server).ok();
        for &addr in clients {
            let Ok(client) = net.endpoint::<ClientEndpoint>(addr) else {
                continue;
            };
            if let Some(conn) = client.connection() {
                self.max_ahead_clients = self.max_ahead_clients.max(conn.buffered_out_of_order());
                if let Some(theirs) = server.and_then(|s| s.connection(conn.id())) {
                    self.max_ahead_server =
                        self.max_ahead_server.max(theirs.buffered_out_of_order());
                }
            }
        }
    }
}

/// Counts Data messages per (connection, sequence number), as a hook sees them on a link.
#[derive(Clone, Debug, Default)]
pub struct DataCounter(Arc<Mutex<BTreeMap<(u64, u64), u32>>>);

impl DataCounter {
    /// Counts `msg` if it is a Data message.
    pub fn record(&self, msg: &Message) {
        if msg.kind == MsgType::Data {
            *self
                .0
                .lock()
                .expect("not poisoned")
                .entry((msg.conn.0, msg.seq.0))
                .or_default() += 1;
        }
    }

    /// Sends of each sequence number of connection `conn`, in sequence order.
    pub fn per_seq(&self, conn: ConnId) -> Vec<(u64, u32)> {
        let map = self.0.lock().expect("not poisoned");
        map.iter()
            .filter(|((c, _), _)| *c == conn.0)
            .map(|((_, s), n)| (*s, *n))
            .collect()
    }

    /// All Data messages counted.
    pub fn total(&self) -> u32 {
        self.0.lock().expect("not poisoned").values().sum()
    }
}

/// A server, its clients, the net between them, and the application on top.
pub struct Cluster {
    pub net: SimNet,
    pub codec: Codec,
    /// Every endpoint's configuration (the server's unless started with another).
    pub config: Config,
    pub server: SocketAddr,
    pub clients: Vec<SocketAddr>,
    pub isns: Vec<u64>,
    pub app: App,
    pub rng: fastrand::Rng,
}

impl Cluster {
    /// A server already listening, no client yet; the codec's default retransmission policy.
    pub fn new(codec: Codec, params: Params) -> Cluster {
        Cluster::with_config(Config::new(params).with_codec(codec))
    }

    /// A server with this configuration already listening, no client yet.
    pub fn with_config(config: Config) -> Cluster {
        let mut cluster = Cluster::without_server(config);
        cluster.start_server();
        cluster
    }

    /// No server yet (see [`start_server`](Self::start_server)), no client.
    pub fn without_server(config: Config) -> Cluster {
        let seed = seed();
        let mut net = SimNet::new(seed);
        net.set_codec(config.codec);
        Cluster {
            net,
            codec: config.codec,
            config,
            server: fake_addr(0),
            clients: Vec::new(),
            isns: Vec::new(),
            app: App::new(seed),
            rng: fastrand::Rng::with_seed(seed ^ 0xC1A5),
        }
    }

    /// Starts the server at its address with the cluster's configuration.
    pub fn start_server(&mut self) {
        let server = ServerEndpoint::new(self.config.clone()).expect("valid config");
        self.net
            .add(self.server, server)
            .expect("the server address is free");
    }

    /// Adds a client with this ISN; it sends its Connect at once. Returns its index.
    pub fn add_client(&mut self, isn: u64) -> usize {
        let i = self.clients.len();
        let addr = fake_addr(i as u32 + 1);
        let client = ClientEndpoint::new(
            self.config.clone(),
            self.server,
            SeqNum(isn),
            self.net.now(),
        )
        .expect("valid config");
        self.net
            .add(addr, client)
            .expect("client addresses are free");
        self.clients.push(addr);
        self.isns.push(isn);
        self.app.client_reads.push(Vec::new());
        self.app.client_ended.push(None);
        self.app.scripts.push(None);
        i
    }

    /// Adds `n` clients with random 32-bit ISNs.
    pub fn add_clients(&mut self, n: usize) {
        for _ in 0..n {
            let isn = u64::from(self.rng.u32(..));
            self.add_client(isn);
        }
    }

    /// Runs until every client is connected; panics if that takes more than K + 1 epochs.
    pub fn connect_all(&mut self) {
        let limit = self.epoch() * (self.config.params.epoch_limit + 1);
        let connected = self.run_until(limit, Cluster::all_connected);
        assert!(connected, "not every client connected within {limit:?}");
    }

    pub fn all_connected(&self) -> bool {
        (0..self.clients.len()).all(|i| matches!(self.client(i).state(), ClientState::Connected(_)))
    }

    pub fn epoch(&self) -> Duration {
        self.config.params.epoch
    }

    // ----- running -----

    /// Drives the net and the application until `done` holds (checked first, then after every
    /// event) or `max` of simulated time has passed. Returns whether `done` held.
    pub fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let deadline = self.net.now() + max;
        let (mut last, mut same) = (self.net.now(), 0u32);
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            let next = [self.net.next_event(), self.app.next_wakeup()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= deadline => self.net.run_until(at),
                _ => {
                    self.net.run_until(deadline);
                    self.pump();
                    return done(self);
                }
            }
            if self.net.now() > last {
                (last, same) = (self.net.now(), 0);
            } else {
                same += 1;
                assert!(
                    same < 100_000,
                    "simulation stalled at {:?}",
                    self.net.elapsed()
                );
            }
        }
    }

    /// Drives the net and the application for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(duration, |_| false);
    }

    /// One round of the application: server reads (and echoes), then each client.
    pub fn pump(&mut self) {
        self.app.pump_server(&mut self.net, self.server);
        for (i, &addr) in self.clients.iter().enumerate() {
            self.app.pump_client(&mut self.net, i, addr);
        }
        self.app.track_ahead(&self.net, self.server, &self.clients);
    }

    // ----- endpoints -----

    pub fn server_ep(&self) -> &ServerEndpoint {
        self.net
            .endpoint(self.server)
            .expect("the server is running")
    }

    pub fn client(&self, i: usize) -> &ClientEndpoint {
        self.net
            .endpoint(self.clients[i])
            .expect("clients are ClientEndpoints")
    }

    pub fn with_server<R>(&mut self, f: impl FnOnce(&mut ServerEndpoint, Instant) -> R) -> R {
        self.net
            .with(self.server, f)
            .expect("the server is running")
    }

    pub fn with_client<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut ClientEndpoint, Instant) -> R,
    ) -> R {
        self.net
            .with(self.clients[i], f)
            .expect("clients are ClientEndpoints")
    }

    /// Client `i`'s connection id; panics if it is not connected.
    pub fn conn_id(&self, i: usize) -> ConnId {
        self.client(i)
            .conn_id()
            .unwrap_or_else(|| panic!("client {i} is not connected"))
    }

    /// The server's side of client `i`'s connection (while the server still has it).
    pub fn server_conn(&self, i: usize) -> &Connection {
        let id = self.conn_id(i);
        self.server_ep()
            .connection(id)
            .unwrap_or_else(|| panic!("the server has no {id}"))
    }

    /// Client `i`'s side of its connection.
    pub fn client_conn(&self, i: usize) -> &Connection {
        self.client(i)
            .connection()
            .unwrap_or_else(|| panic!("client {i} has no connection"))
    }

    // ----- the application -----

    /// `n` distinct payloads tagged `tag`, each with a random part.
    pub fn msgs(&mut self, tag: &str, n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|k| Bytes::from(format!("{tag}:{k}:{}", self.rng.u32(..))))
            .collect()
    }

    /// Client `i` writes every message now; panics if a write fails.
    pub fn write(&mut self, i: usize, msgs: &[Bytes]) {
        for (k, msg) in msgs.iter().enumerate() {
            let msg = msg.clone();
            if let Err(err) = self.with_client(i, |c, now| c.write(now, msg)) {
                panic!("client {i}: write {k} failed: {err}");
            }
        }
    }

    /// The server writes every message to client `i` now; panics if a write fails.
    pub fn server_write(&mut self, i: usize, msgs: &[Bytes]) {
        let id = self.conn_id(i);
        for (k, msg) in msgs.iter().enumerate() {
            let msg = msg.clone();
            if let Err(err) = self.with_server(|s, now| s.write(now, id, msg)) {
                panic!("server: write {k} to {id} failed: {err}");
            }
        }
    }

    /// Client `i` writes one message, waits for its echo, writes the next, and so on.
    pub fn round_trips(&mut self, i: usize, msgs: Vec<Bytes>) {
        self.app.scripts[i] = Some(Script {
            msgs,
            written: 0,
            lockstep: true,
            base: self.app.client_reads[i].len(),
        });
    }

    /// Whether every client script has written everything and read every echo.
    pub fn scripts_done(&self) -> bool {
        self.app.scripts.iter().enumerate().all(|(i, s)| {
            s.as_ref().is_none_or(|s| {
                s.written == s.msgs.len() && self.app.client_reads[i].len() - s.base >= s.msgs.len()
            })
        })
    }

    /// What client `i` read.
    pub fn reads(&self, i: usize) -> &[Bytes] {
        &self.app.client_reads[i]
    }

    /// What the server read from client `i`.
    pub fn server_reads(&self, i: usize) -> &[Bytes] {
        self.app
            .server_reads
            .get(&self.conn_id(i))
            .map_or(&[][..], Vec::as_slice)
    }

    /// Messages the server read from all clients.
    pub fn server_read_total(&self) -> usize {
        self.app.server_reads.values().map(Vec::len).sum()
    }

    /// Every message client `i` can read now, without the run loop (for tests that read late).
    pub fn drain_client(&mut self, i: usize) -> Vec<ClientRead> {
        let mut out = Vec::new();
        while let Some(item) = self.with_client(i, |c, _| c.read()) {
            let end = matches!(item, ClientRead::Ended(_));
            out.push(item);
            if end {
                break;
            }
        }
        out
    }

    /// Every item the server can read now, without the run loop.
    pub fn drain_server(&mut self) -> Vec<ServerRead> {
        std::iter::from_fn(|| self.with_server(|s, _| s.read())).collect()
    }

    // ----- the network -----

    /// The link from client `i` to the server.
    pub fn up(&self, i: usize) -> (SocketAddr, SocketAddr) {
        (self.clients[i], self.server)
    }

    /// The link from the server to client `i`.
    pub fn down(&self, i: usize) -> (SocketAddr, SocketAddr) {
        (self.server, self.clients[i])
    }

    pub fn set_faults(&mut self, (from, to): (SocketAddr, SocketAddr), config: FaultConfig) {
        self.net.set_faults(from, to, config);
    }

    /// Every link drops everything (the reference's "network off").
    pub fn net_down(&mut self) {
        self.net.set_faults_all(FaultConfig::drop_all());
    }

    /// Every link delivers everything again.
    pub fn net_up(&mut self) {
        self.net.set_faults_all(FaultConfig::none());
    }

    /// Installs a hook over decoded messages on one link.
    pub fn hook(
        &mut self,
        (from, to): (SocketAddr, SocketAddr),
        f: impl FnMut(&mut Message) -> Verdict + Send + 'static,
    ) {
        self.net
            .set_hook(from, to, Some(message_hook(self.codec, f)));
    }

    pub fn unhook(&mut self, (from, to): (SocketAddr, SocketAddr)) {
        self.net.set_hook(from, to, None);
    }

    /// Counts the Data messages put on a link from now on (replacing its hook).
    pub fn count_data(&mut self, link: (SocketAddr, SocketAddr), counter: &DataCounter) {
        let counter = counter.clone();
        self.hook(link, move |m| {
            counter.record(m);
            Verdict::Pass
        });
    }

    /// Every message sent since the trace was last taken (needs `net.record_trace`), decoded,
    /// with its sender, in send order.
    pub fn sent_messages(&mut self) -> Vec<(SocketAddr, Message)> {
        self.sent_messages_at()
            .into_iter()
            .map(|(_, from, m)| (from, m))
            .collect()
    }

    /// Like [`sent_messages`](Self::sent_messages), with each message's send time (since the
    /// net's origin).
    pub fn sent_messages_at(&mut self) -> Vec<(Duration, SocketAddr, Message)> {
        let mut out = Vec::new();
        for event in self.net.take_trace() {
            if event.kind != TraceKind::Sent {
                continue;
            }
            let mut msgs = Vec::new();
            self.codec
                .decode(&event.bytes, &mut msgs)
                .expect("endpoints send valid datagrams");
            out.extend(msgs.into_iter().map(|m| (event.at, event.from, m)));
        }
        out
    }
}
