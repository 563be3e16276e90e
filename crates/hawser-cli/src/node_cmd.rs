//! `hawser node`: runs one node of a cluster. Prints every message it receives, and sends each
//! line of standard input to one peer (`@ID text`) or to every other node (any other line).
//!
//! ```text
//! hawser node --id 1 --listen 127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
//! ```

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use hawser::node::{Delivery, Group, Member, Node, Role};
use tokio::io::{AsyncBufReadExt, BufReader};

/// One `--peer ID=ADDR` (optionally `ID=ADDR/ROLE`, role `member`, `follower` or `temporary`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// The peer's node id.
    pub id: u64,
    /// Its TCP and UDP address.
    pub addr: SocketAddr,
    /// Its role (default member).
    pub role: Role,
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerSpec, String> {
        let (id, rest) = s.split_once('=').ok_or("expected ID=ADDR")?;
        let id = id.parse().map_err(|e| format!("bad node id {id:?}: {e}"))?;
        let (addr, role) = match rest.split_once('/') {
            Some((a, r)) => (a, parse_role(r)?),
            None => (rest, Role::Member),
        };
        let addr = addr
            .parse()
            .map_err(|e| format!("bad address {addr:?}: {e}"))?;
        Ok(PeerSpec { id, addr, role })
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
    /// A peer, as ID=ADDR or ID=ADDR/ROLE; repeat for each.
    #[arg(long = "peer", value_name = "ID=ADDR")]
    pub peers: Vec<PeerSpec>,
    /// Send lines as unreliable datagrams instead of reliable messages.
    #[arg(long)]
    pub unreliable: bool,
    /// After standard input ends, keep running this long (ms) to deliver what is queued and
    /// print what still arrives.
    #[arg(long, default_value_t = 1000)]
    pub linger_ms: u64,
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
    members.extend(args.peers.iter().map(|p| Member::new(p.id, p.role, p.addr)));
    let node = Node::builder(args.id)
        .listen(args.listen)
        .members(members)
        .start()
        .await
        .with_context(|| format!("starting node {} on {}", args.id, args.listen))?;
    eprintln!("node {} listening on {:?}", args.id, node.local_addr());
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
        assert_eq!((p.id, p.addr.port(), p.role), (2, 7002, Role::Member));
        let p: PeerSpec = "3=10.77.0.3:7000/follower".parse().unwrap();
        assert_eq!(p.role, Role::Follower);
        assert!("x=1.2.3.4:5".parse::<PeerSpec>().is_err());
        assert!("2".parse::<PeerSpec>().is_err());
        assert!("2=1.2.3.4:5/boss".parse::<PeerSpec>().is_err());
    }
}
