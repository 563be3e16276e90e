//! What `hawser node` runs with: its flags over its configuration file (`--config FILE`).
//!
//! The file is TOML. Its top level holds the node's own keys (`id`, `listen`, `peers`,
//! `identity`), and its `[settings]` table any field of `hawser_net::node::Settings`, with
//! durations written as text (`"500ms"`, `"10s"`). Every key may be left out; an unknown
//! key is an error. A flag given on the command line replaces the file's value (a `--listen`
//! or `--peer` flag replaces the whole list).
//!
//! ```toml
//! id = 1
//! listen = ["tcp://127.0.0.1:7001", "lsp://127.0.0.1:7101"]
//! peers = ["2=127.0.0.1:7002", "3=lsp://node3.example:7103"]
//! identity = "node1.key"          # relative to the file's folder
//!
//! [settings]
//! network_id = "staging"
//! idle_timeout = "2m"
//! [settings.reach.engine]
//! lease = { fixed = "2s" }
//! reachable_for = "6s"
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hawser_net::node::{LeasePolicy, Settings};
use hawser_net::session::{NetworkId, TransportAddr};
use serde::Deserialize;

use super::spec::PeerSpec;
use super::NodeArgs;
use crate::{addr, CliError};

/// The configuration file of `hawser node`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeFile {
    /// This node's id.
    pub id: Option<u64>,
    /// Addresses to listen on, as `--listen` takes them.
    pub listen: Vec<String>,
    /// Peers, as `--peer` takes them.
    pub peers: Vec<String>,
    /// The identity key file, relative to the configuration file's folder.
    pub identity: Option<PathBuf>,
    /// The node's settings.
    pub settings: Settings,
}

impl NodeFile {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`CliError::Invalid`] naming the file and what is wrong in it.
    pub fn load(path: &Path) -> Result<NodeFile, CliError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Invalid(format!("cannot read config file {}: {e}", path.display()))
        })?;
        toml::from_str(&text).map_err(|e| {
            let e = e.to_string();
            CliError::Invalid(format!(
                "invalid config file {}: {}",
                path.display(),
                e.trim_end()
            ))
        })
    }
}

/// Everything the node starts with, flags and file merged and checked.
#[derive(Debug)]
pub struct NodePlan {
    /// This node's id.
    pub id: u64,
    /// The TCP address (UDP too, same port, for datagrams).
    pub tcp: SocketAddr,
    /// The other addresses sessions are accepted on (`lsp://`, `ws://`, more `tcp://`).
    pub also: Vec<TransportAddr>,
    /// The peers.
    pub peers: Vec<PeerSpec>,
    /// The identity key file.
    pub identity: Option<PathBuf>,
    /// The settings, validated.
    pub settings: Settings,
}

impl NodePlan {
    /// Merges `args` over the configuration file they name, if any.
    ///
    /// # Errors
    /// [`CliError::Invalid`]: an unreadable or invalid file, a missing id or listen address,
    /// an invalid flag or setting.
    pub fn new(args: &NodeArgs) -> Result<NodePlan, CliError> {
        let file = match &args.config {
            Some(path) => NodeFile::load(path)?,
            None => NodeFile::default(),
        };
        let in_file = |what: &str| match &args.config {
            Some(p) => format!("{what} in {}", p.display()),
            None => what.to_owned(),
        };
        let id = args.id.or(file.id).ok_or_else(|| {
            CliError::Invalid("no node id: give --id or `id` in the config file".into())
        })?;
        let listen = if args.listen.is_empty() {
            parse_all(&file.listen, addr::transport, &in_file("listen"))?
        } else {
            args.listen.clone()
        };
        let peers = if args.peers.is_empty() {
            parse_all(&file.peers, str::parse::<PeerSpec>, &in_file("peers"))?
        } else {
            args.peers.clone()
        };
        let identity = args.identity.clone().or_else(|| {
            let base = args.config.as_deref().and_then(Path::parent);
            file.identity
                .map(|p| base.map_or_else(|| p.clone(), |b| b.join(&p)))
        });
        let settings = settings(args, file.settings)?;
        let (tcp, also) = split_listen(listen)?;
        Ok(NodePlan {
            id,
            tcp,
            also,
            peers,
            identity,
            settings,
        })
    }
}

/// Parses every entry of a list from the file.
fn parse_all<T>(
    items: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
    what: &str,
) -> Result<Vec<T>, CliError> {
    items
        .iter()
        .map(|s| parse(s).map_err(|e| CliError::Invalid(format!("invalid {what}: {e}"))))
        .collect()
}

/// The file's settings with the flags applied, validated.
fn settings(args: &NodeArgs, mut s: Settings) -> Result<Settings, CliError> {
    if let Some(cipher) = args.cipher {
        s.security = cipher.security();
    }
    if let Some(id) = &args.network_id {
        s.network_id = NetworkId::new(id).map_err(|_| {
            CliError::Invalid(format!(
                "invalid --network-id '{id}': it must be 1 to 64 bytes"
            ))
        })?;
    }
    if let Some(ms) = args.lease_ms {
        if ms == 0 {
            return Err(CliError::Invalid(
                "invalid --lease-ms: must be greater than zero".into(),
            ));
        }
        let lease = Duration::from_millis(ms);
        s.reach.engine.lease = LeasePolicy::Fixed(lease);
        // A peer is reachable over an address for three leases after traffic over it.
        s.reach.engine.reachable_for = lease.saturating_mul(3);
    }
    s.validate()
        .map_err(|e| CliError::Invalid(format!("invalid settings: {e}")))?;
    Ok(s)
}

/// The TCP listen address (the first `tcp://` one) and the others. Without a `tcp://`
/// address, TCP and UDP take a free port on the first address's host.
fn split_listen(listen: Vec<TransportAddr>) -> Result<(SocketAddr, Vec<TransportAddr>), CliError> {
    let host = |a: &TransportAddr| match a {
        TransportAddr::Tcp(s) | TransportAddr::Lsp(s) | TransportAddr::Ws(s) => s.ip(),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let mut tcp = None;
    let mut also = Vec::new();
    for a in listen {
        match a {
            TransportAddr::Tcp(s) if tcp.is_none() => tcp = Some(s),
            other => also.push(other),
        }
    }
    let tcp = match (tcp, also.first()) {
        (Some(a), _) => a,
        (None, Some(a)) => SocketAddr::new(host(a), 0),
        (None, None) => {
            return Err(CliError::Invalid(
                "no listen address: give --listen or `listen` in the config file".into(),
            ))
        }
    };
    Ok((tcp, also))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tcp_address_carries_tcp_and_udp_and_the_rest_are_extra() {
        let at = |s: &str| addr::transport(s).unwrap();
        let (tcp, also) =
            split_listen(vec![at("lsp://127.0.0.1:5"), at("tcp://127.0.0.1:6")]).unwrap();
        assert_eq!((tcp.port(), also), (6, vec![at("lsp://127.0.0.1:5")]));
        let (tcp, also) = split_listen(vec![at("ws://127.0.0.2:7")]).unwrap();
        assert_eq!(tcp, "127.0.0.2:0".parse().unwrap());
        assert_eq!(also.len(), 1);
        assert!(split_listen(Vec::new()).is_err());
    }

    #[test]
    fn a_file_with_node_keys_and_partial_settings_parses() {
        let file: NodeFile = toml::from_str(
            r#"
            id = 4
            listen = ["127.0.0.1:7001"]
            [settings]
            network_id = "blue"
            [settings.reach.engine]
            lease = { fixed = "750ms" }
            "#,
        )
        .unwrap();
        assert_eq!(file.id, Some(4));
        assert_eq!(file.settings.network_id.as_str(), "blue");
        assert_eq!(
            file.settings.reach.engine.lease,
            LeasePolicy::Fixed(Duration::from_millis(750))
        );
        let file: NodeFile = toml::from_str(
            r#"
            [settings]
            queue = { deadline = "3s" }
            [settings.pins]
            "2" = ["5mUbX5DP5uyXZx6NjSqpWgDHT2GKtsctfGRPbX1xoGUN"]
            [settings.reach.engine]
            lease = { adaptive = { min = "2s", max = "60s", uptime_divisor = 4 } }
            "#,
        )
        .unwrap();
        assert_eq!(file.settings.queue.deadline, Duration::from_secs(3));
        assert_eq!(file.settings.pins.len(), 1);
        assert!(matches!(
            file.settings.reach.engine.lease,
            LeasePolicy::Adaptive(_)
        ));
        let err = toml::from_str::<NodeFile>("[settings]\nidle_timout = \"1s\"").unwrap_err();
        assert!(err.to_string().contains("idle_timout"), "{err}");
    }
}
