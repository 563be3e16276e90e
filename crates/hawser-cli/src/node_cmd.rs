//! `hawser node`: runs one node of a cluster. Prints every message it receives, and sends each
//! line of standard input to one peer (`@ID text`) or to every other node (any other line).
//!
//! Connections are Noise sessions (encrypted, authenticated): `--identity FILE` (from
//! `hawser keygen`) keeps the node's PeerId across restarts, and `--peer ID=ADDR#PEERID` pins
//! the identity a peer must prove. `--cipher aesgcm` picks AES-256-GCM instead of
//! ChaCha20-Poly1305; every node of a cluster must pick the same.
//!
//! ```text
//! hawser node --id 1 --listen 127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hawser_net::node::{Delivery, Group, Member, Node, Role};
use hawser_net::session::{Identity, PeerId, Security, TransportAddr};
use tokio::io::{AsyncBufReadExt, BufReader};

/// One `--peer ID=ADDR[/ROLE][#PEERID]`: role `member` (default), `follower` or `temporary`;
/// ADDR is `IP:PORT` (TCP, and UDP for datagrams) or a transport address `tcp://IP:PORT`,
/// `lsp://IP:PORT`, `ws://IP:PORT` (reliable messages only); PEERID pins the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's node id.
    pub id: u64,
    /// Its address.
    pub addr: TransportAddr,
    /// Its role (default member).
    pub role: Role,
    /// The identity it must prove, if pinned.
    pub pin: Option<PeerId>,
}

impl PeerSpec {
    /// The peer as a member: a TCP address is also its datagram address.
    fn member(&self) -> Member {
        match self.addr {
            TransportAddr::Tcp(a) => Member::new(self.id, self.role, a),
            _ => Member::without_addr(self.id, self.role),
        }
    }
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerSpec, String> {
        let (id, rest) = s.split_once('=').ok_or("expected ID=ADDR")?;
        let id = id.parse().map_err(|e| format!("bad node id {id:?}: {e}"))?;
        let (rest, pin) = match rest.split_once('#') {
            Some((r, p)) => {
                let pin = p.parse().map_err(|e| format!("bad PeerId {p:?}: {e}"))?;
                (r, Some(pin))
            }
            None => (rest, None),
        };
        let (addr, role) = match rest.rsplit_once('/') {
            Some((a, r)) if !r.is_empty() && !a.ends_with('/') => (a, parse_role(r)?),
            _ => (rest, Role::Member),
        };
        let addr = if addr.contains("://") {
            addr.parse::<TransportAddr>().map_err(|e| e.to_string())?
        } else {
            let a: SocketAddr = addr
                .parse()
                .map_err(|e| format!("bad address {addr:?}: {e}"))?;
            TransportAddr::Tcp(a)
        };
        Ok(PeerSpec {
            id,
            addr,
            role,
            pin,
        })
    }
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "member" => Ok(Role::Member),
        "follower" => Ok(Role::Follower),
        "temporary" => Ok(Role::Temporary),
        other => Err(format!(
            "unknown role {other:?} (member, follower or temporary)"
        )),
    }
}

/// Arguments of `hawser node`.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// This node's id.
    #[arg(long)]
    pub id: u64,
    /// Address to listen on (TCP and UDP, same port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// A peer, as ID=ADDR[/ROLE][#PEERID]; repeat for each. ADDR is IP:PORT or
    /// tcp://, lsp://, ws://IP:PORT; PEERID (from `hawser keygen`) pins its identity.
    #[arg(long = "peer", value_name = "ID=ADDR[#PEERID]")]
    pub peers: Vec<PeerSpec>,
    /// This node's identity, a key file written by `hawser keygen` (default: a fresh one, so
    /// the PeerId changes at every start).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// The sessions' Noise cipher; every node of a cluster must use the same.
    #[arg(long, value_enum, default_value_t = CipherArg::Chachapoly)]
    pub cipher: CipherArg,
    /// Send lines as unreliable datagrams instead of reliable messages.
    #[arg(long)]
    pub unreliable: bool,
    /// After standard input ends, keep running this long (ms) to deliver what is queued and
    /// print what still arrives.
    #[arg(long, default_value_t = 1000)]
    pub linger_ms: u64,
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

/// Runs the node until standard input ends (then lingers) or Ctrl-C.
///
/// # Errors
/// The node could not start (bad address, port in use).
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let delivery = if args.unreliable {
        Delivery::Unreliable
    } else {
        Delivery::Reliable
    };
    let mut members = vec![Member::new(args.id, Role::Member, args.listen)];
    members.extend(args.peers.iter().map(PeerSpec::member));
    let mut builder = Node::builder(args.id)
        .listen(args.listen)
        .members(members)
        .security(args.cipher.security());
    if let Some(path) = &args.identity {
        let identity =
            Identity::load(path).with_context(|| format!("reading {}", path.display()))?;
        builder = builder.identity(Arc::new(identity));
    }
    for p in &args.peers {
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
        .with_context(|| format!("starting node {} on {}", args.id, args.listen))?;
    let peer_id = node.peer_id().map(|p| p.to_string()).unwrap_or_default();
    eprintln!(
        "node {} listening on {:?}, PeerId {peer_id}",
        args.id,
        node.local_addr()
    );
    let _metrics = crate::metrics::start(&args.metrics, &node).await?;
    let mut inbox = node.incoming();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let linger = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(linger);
    loop {
        tokio::select! {
            msg = inbox.recv() => match msg {
                Some(m) => println!("{} {}: {}", m.from.0, m.delivery,
                                    String::from_utf8_lossy(&m.payload)),
                None => break,
            },
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => send_line(&node, &line, delivery),
                _ => {
                    stdin_open = false;
                    let at = tokio::time::Instant::now() + Duration::from_millis(args.linger_ms);
                    linger.as_mut().reset(at);
                }
            },
            () = &mut linger => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    node.stop().await;
    Ok(())
}

fn send_line(node: &Node, line: &str, delivery: Delivery) {
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    if let Some(rest) = line.strip_prefix('@') {
        let (id, text) = rest.split_once(' ').unwrap_or((rest, ""));
        match id.parse::<u64>() {
            Ok(id) => {
                if let Err(e) = node.send(id, text.to_owned(), delivery) {
                    eprintln!("send to {id}: {e}");
                }
            }
            Err(_) => eprintln!("bad destination {id:?}: use @ID text"),
        }
        return;
    }
    let report = node.broadcast(Group::All, line.to_owned(), delivery);
    for (id, err) in report.failures() {
        eprintln!("send to {}: {err}", id.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_specs_parse() {
        let p: PeerSpec = "2=127.0.0.1:7002".parse().unwrap();
        let tcp = TransportAddr::Tcp("127.0.0.1:7002".parse().unwrap());
        assert_eq!(
            (p.id, &p.addr, p.role, p.pin),
            (2, &tcp, Role::Member, None)
        );
        let p: PeerSpec = "3=10.77.0.3:7000/follower".parse().unwrap();
        assert_eq!(p.role, Role::Follower);
        let id = Identity::from_secret_bytes(&[7; 32]).peer_id();
        let p: PeerSpec = format!("4=ws://127.0.0.1:7004/temporary#{id}")
            .parse()
            .unwrap();
        let ws = TransportAddr::Ws("127.0.0.1:7004".parse().unwrap());
        assert_eq!((&p.addr, p.role, p.pin), (&ws, Role::Temporary, Some(id)));
        assert_eq!(p.member().addrs, []);
        let p: PeerSpec = format!("5=127.0.0.1:7005#{id}").parse().unwrap();
        assert_eq!((p.pin, p.member().addrs.len()), (Some(id), 1));
        assert!("6=127.0.0.1:7006#notapeerid".parse::<PeerSpec>().is_err());
        assert!("x=1.2.3.4:5".parse::<PeerSpec>().is_err());
        assert!("2".parse::<PeerSpec>().is_err());
        assert!("2=1.2.3.4:5/boss".parse::<PeerSpec>().is_err());
    }
}
