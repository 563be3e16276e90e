//! `hawser node`: runs one node of a cluster. Prints every message it receives, and sends each
//! line of standard input to one peer (`@ID text`) or to every other node (any other line).
//!
//! Connections are Noise sessions (encrypted, authenticated): `--identity FILE` (from
//! `hawser keygen`) keeps the node's PeerId across restarts, and `--peer ID=ADDR#PEERID` pins
//! the identity a peer must prove. `--cipher aesgcm` picks AES-256-GCM instead of
//! ChaCha20-Poly1305, and `--network-id` names the cluster; every node of a cluster must pick
//! the same. A node accepts sessions on every `--listen` address: `tcp://` (and UDP on the same
//! port, for unreliable datagrams), `lsp://` (LSP over UDP) and `ws://` (WebSocket).
//! Settings may come from a TOML file (`--config`, see [`config`]); flags override it.
//!
//! Peers coming up and going down are logged (info), every message dropped is a warning with
//! the reason, and a per-peer summary is printed at exit (`--json`: as JSON on stdout).
//!
//! ```text
//! hawser node --id 1 --listen 127.0.0.1:7001 --listen lsp://127.0.0.1:7101 \
//!     --peer 2=127.0.0.1:7002 --peer 3=lsp://127.0.0.1:7103
//! ```

pub mod config;
mod console;
mod input;
pub mod spec;
mod summary;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hawser_net::node::{Delivery, Member, Node, PeerEvent, Role};
use hawser_net::session::{Identity, Security, TransportAddr};
use serde_json::json;
use tracing::{debug, info, warn};

use self::config::NodePlan;
use self::console::Console;
use self::input::Line;
pub use self::spec::PeerSpec;
use self::summary::Summary;
use crate::CliError;

/// Arguments of `hawser node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// This node's id (or `id` in the config file).
    #[arg(long)]
    pub id: Option<u64>,
    /// Where to accept sessions; repeat for each: HOST:PORT or tcp://HOST:PORT (TCP, and UDP
    /// on the same port for unreliable datagrams), lsp://HOST:PORT (LSP over UDP),
    /// ws://HOST:PORT (WebSocket). Without a tcp:// address, TCP and UDP take a free port.
    /// Host names are resolved.
    #[arg(long = "listen", value_name = "ADDR", value_parser = crate::addr::transport)]
    pub listen: Vec<TransportAddr>,
    /// A peer, as ID=ADDR[/ROLE][#PEERID]; repeat for each. ADDR is HOST:PORT or tcp://,
    /// lsp://, ws://HOST:PORT (the peer must listen on that transport); ROLE is member
    /// (default), follower or temporary; PEERID (from `hawser keygen`) pins its identity.
    #[arg(long = "peer", value_name = "ID=ADDR[#PEERID]")]
    pub peers: Vec<PeerSpec>,
    /// This node's identity, a key file written by `hawser keygen` (default: a fresh one, so
    /// the PeerId changes at every start).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The sessions' Noise cipher (default chachapoly); every node of a cluster must use the
    /// same.
    #[arg(long, value_enum)]
    pub cipher: Option<CipherArg>,
    /// The cluster's name (default "hawser"): nodes with different network ids never form a
    /// session.
    #[arg(long, value_name = "NAME")]
    pub network_id: Option<String>,
    /// The reachability lease this node announces, in milliseconds (default 10000): peers
    /// declare it down about this long after it stops.
    #[arg(long, value_name = "MS")]
    pub lease_ms: Option<u64>,
    /// Settings from a TOML file (see `docs/cli.md`); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Send lines as unreliable datagrams instead of reliable messages.
    #[arg(long)]
    pub unreliable: bool,
    /// After standard input ends, keep running this long (ms) to deliver what is queued and
    /// print what still arrives.
    #[arg(long, default_value_t = 1000)]
    pub linger_ms: u64,
    /// Machine-readable output: each received message and the summary at exit as one JSON
    /// object per line on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub metrics: crate::metrics::MetricsArgs,
}

/// The Noise cipher of `hawser node --cipher`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CipherArg {
    /// ChaCha20-Poly1305 (the default).
    Chachapoly,
    /// AES-256-GCM: faster on CPUs with AES instructions.
    Aesgcm,
}

impl CipherArg {
    /// The node security this cipher means.
    pub fn security(self) -> Security {
        match self {
            CipherArg::Chachapoly => Security::Noise,
            CipherArg::Aesgcm => Security::NoiseAesGcm,
        }
    }
}

/// How often held messages are retried and drop counters read.
const TICK: Duration = Duration::from_millis(100);

/// Runs the node until standard input ends (then lingers) or Ctrl-C.
///
/// # Errors
/// [`CliError::Invalid`] for bad flags or configuration; [`CliError::Failed`] if the node
/// could not start (port in use, unreadable key).
pub async fn run(args: NodeArgs) -> Result<(), CliError> {
    let plan = NodePlan::new(&args)?;
    let node = start(&plan).await?;
    let addrs: Vec<String> = node.listen_addrs().iter().map(|a| a.to_string()).collect();
    let peer_id = node.peer_id().map(|p| p.to_string()).unwrap_or_default();
    info!(
        "node {} listening on {}, PeerId {peer_id}, network id {}",
        plan.id,
        addrs.join(", "),
        plan.settings.network_id.as_str()
    );
    let _metrics = crate::metrics::start(&args.metrics, &node).await?;
    let delivery = if args.unreliable {
        Delivery::Unreliable
    } else {
        Delivery::Reliable
    };
    let sealed = plan.settings.security.is_encrypted();
    let mut console = Console::new(node.clone(), delivery, sealed, plan.settings.queue.deadline);
    for p in &plan.peers {
        console.dials(p.id.into(), p.addr.clone());
    }
    let max_line = plan.settings.max_frame.max(plan.settings.datagram_limit);
    let mut lines = input::spawn_reader(tokio::io::stdin(), max_line);
    let mut inbox = node.incoming();
    let mut events = node.peer_events();
    let mut events_open = true;
    let mut stdin_open = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let linger = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(linger);
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            msg = inbox.recv() => match msg {
                Some(m) => print_message(args.json, m.from.0, m.delivery, &m.payload),
                None => break,
            },
            line = lines.recv(), if stdin_open => match line {
                Some(Line::Text(text)) => console.send_line(&text),
                Some(Line::NotUtf8 { number }) => {
                    warn!("line {number} of standard input skipped: not UTF-8");
                }
                Some(Line::TooLong { number, max }) => {
                    warn!("line {number} of standard input skipped: longer than {max} bytes");
                }
                Some(Line::Failed(e)) => {
                    warn!("standard input failed: {e}");
                }
                None => {
                    stdin_open = false;
                    let at = tokio::time::Instant::now() + Duration::from_millis(args.linger_ms);
                    linger.as_mut().reset(at);
                }
            },
            event = events.recv(), if events_open => match event {
                Some(Ok(e)) => log_event(&e),
                Some(Err(lagged)) => {
                    warn!("missed {} reachability events: this command fell behind", lagged.0);
                }
                None => events_open = false,
            },
            _ = tick.tick() => {
                console.retry_held();
                console.warn_drops(false);
                console.hint_unreachable();
            }
            () = &mut linger => break,
            _ = &mut ctrl_c => break,
        }
    }
    console.retry_held();
    console.drop_held();
    console.warn_drops(true);
    let summary = Summary::collect(&node, console.tallies());
    node.stop().await;
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(line) => println!("{line}"),
            Err(e) => warn!("summary not printed: {e}"),
        }
    } else {
        eprint!("{}", summary.to_text());
    }
    Ok(())
}

/// Starts the node `plan` describes.
async fn start(plan: &NodePlan) -> Result<Node, CliError> {
    let mut members = vec![Member::new(plan.id, Role::Member, plan.tcp)];
    members.extend(plan.peers.iter().map(PeerSpec::member));
    let mut builder = Node::builder(plan.id)
        .settings(plan.settings.clone())
        .listen(plan.tcp)
        .members(members);
    for addr in &plan.also {
        builder = builder.listen_on(addr.clone());
    }
    if let Some(path) = &plan.identity {
        let identity =
            Identity::load(path).with_context(|| format!("reading {}", path.display()))?;
        builder = builder.identity(Arc::new(identity));
    }
    for p in &plan.peers {
        if !matches!(p.addr, TransportAddr::Tcp(_)) {
            builder = builder.transport_to(p.id, p.addr.clone());
        }
        if let Some(pin) = p.pin {
            builder = builder.pin(p.id, pin);
        }
    }
    let node = builder
        .start()
        .await
        .with_context(|| format!("cannot start node {}", plan.id))?;
    Ok(node)
}

/// Prints a received message: `FROM DELIVERY: TEXT`, or a JSON object.
fn print_message(json: bool, from: u64, delivery: Delivery, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    if json {
        let line = json!({
            "event": "message",
            "from": from,
            "delivery": delivery.to_string(),
            "text": text,
        });
        println!("{line}");
    } else {
        println!("{from} {delivery}: {text}");
    }
}

/// Logs a reachability change: peers up and down at info, addresses at debug.
fn log_event(e: &PeerEvent) {
    match e {
        PeerEvent::PeerAlive { peer, .. } => info!("peer {} up", peer.0),
        PeerEvent::PeerDead { peer } => info!("peer {} down (its lease lapsed)", peer.0),
        PeerEvent::AddressFound { peer, addr } => {
            debug!("peer {} announced address {addr}", peer.0);
        }
        PeerEvent::AddressDown { peer, addr } => {
            debug!("peer {} withdrew address {addr}", peer.0);
        }
        PeerEvent::AddressReachable { peer, addr, .. } => {
            debug!("peer {} reachable at {addr}", peer.0);
        }
        PeerEvent::AddressUnreachable { peer, addr } => {
            debug!("peer {} unreachable at {addr}", peer.0);
        }
        _ => {}
    }
}
