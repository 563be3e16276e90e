//! `--peer ID=ADDR[/ROLE][#PEERID]`: a peer as typed on the command line or in a
//! configuration file.

use std::str::FromStr;

use hawser_net::node::{Member, Role};
use hawser_net::session::{PeerId, TransportAddr};

use crate::addr;

/// One `--peer ID=ADDR[/ROLE][#PEERID]`: role `member` (default), `follower` or `temporary`;
/// ADDR is `HOST:PORT` (TCP, and UDP for datagrams) or a transport address `tcp://HOST:PORT`,
/// `lsp://HOST:PORT`, `ws://HOST:PORT` (reliable messages only); PEERID pins the identity.
/// Host names are resolved when the spec is parsed.
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
    pub fn member(&self) -> Member {
        match self.addr {
            TransportAddr::Tcp(a) => Member::new(self.id, self.role, a),
            _ => Member::without_addr(self.id, self.role),
        }
    }
}

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<PeerSpec, String> {
        let (id, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid peer '{s}': expected ID=ADDR"))?;
        let id = id
            .parse()
            .map_err(|_| format!("invalid node id '{id}' in '{s}': expected a number"))?;
        let (rest, pin) = match rest.split_once('#') {
            Some((r, p)) => {
                let pin = p
                    .parse()
                    .map_err(|e| format!("invalid PeerId '{p}' in '{s}': {e}"))?;
                (r, Some(pin))
            }
            None => (rest, None),
        };
        let (addr, role) = match rest.rsplit_once('/') {
            Some((a, r)) if !r.is_empty() && !a.ends_with('/') && r != "hawser" => {
                (a, parse_role(r)?)
            }
            _ => (rest, Role::Member),
        };
        Ok(PeerSpec {
            id,
            addr: addr::transport(addr)?,
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
            "unknown role '{other}': expected member, follower or temporary"
        )),
    }
}

#[cfg(test)]
mod tests {
    use hawser_net::session::Identity;

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
        let p: PeerSpec = "4=ws://127.0.0.1:7004/hawser".parse().unwrap();
        assert_eq!((&p.addr, p.role), (&ws, Role::Member));
        let p: PeerSpec = format!("5=127.0.0.1:7005#{id}").parse().unwrap();
        assert_eq!((p.pin, p.member().addrs.len()), (Some(id), 1));
        let p: PeerSpec = "6=lsp://localhost:7006".parse().unwrap();
        assert!(matches!(p.addr, TransportAddr::Lsp(a) if a.ip().is_loopback()));
        assert!("6=127.0.0.1:7006#notapeerid".parse::<PeerSpec>().is_err());
        assert!("x=1.2.3.4:5".parse::<PeerSpec>().is_err());
        assert!("2".parse::<PeerSpec>().is_err());
        assert!("2=1.2.3.4:5/boss".parse::<PeerSpec>().is_err());
    }
}
