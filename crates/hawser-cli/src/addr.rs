//! Addresses as typed on the command line or in a configuration file: `HOST:PORT`, with host
//! names resolved, and transport addresses `tcp://`, `lsp://`, `ws://HOST:PORT`.

use std::net::{SocketAddr, ToSocketAddrs};

use hawser_net::session::TransportAddr;

/// `HOST:PORT` as one socket address: an IP address as it is, a host name resolved (its
/// first address).
///
/// # Errors
/// A message naming the address and why it did not resolve.
pub fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!("invalid address '{s}': expected HOST:PORT"));
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{s}': {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("'{s}' resolves to no address"))
}

/// A transport address: `tcp://HOST:PORT`, `lsp://HOST:PORT`, `ws://HOST:PORT` (an optional
/// `/hawser` path), `mem://NAME`, or a bare `HOST:PORT`, which means `tcp://`. Host names are
/// resolved.
///
/// # Errors
/// A message naming the address and what was expected.
pub fn transport(s: &str) -> Result<TransportAddr, String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return resolve(s).map(TransportAddr::Tcp);
    };
    let host = || resolve(rest.strip_suffix("/hawser").unwrap_or(rest));
    match scheme {
        "tcp" => host().map(TransportAddr::Tcp),
        "lsp" => host().map(TransportAddr::Lsp),
        "ws" => host().map(TransportAddr::Ws),
        "mem" => s.parse().map_err(|e| format!("{e}")),
        other => Err(format!(
            "unknown transport '{other}' in '{s}': expected tcp://, lsp:// or ws://HOST:PORT"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_as_they_are_and_host_names_resolved() {
        assert_eq!(resolve("10.0.0.1:7").unwrap(), ([10, 0, 0, 1], 7).into());
        assert!(resolve("localhost:7101").unwrap().ip().is_loopback());
        assert!(resolve("no-port").unwrap_err().contains("HOST:PORT"));
        let lsp = transport("lsp://localhost:7001").unwrap();
        assert!(matches!(lsp, TransportAddr::Lsp(a) if a.ip().is_loopback() && a.port() == 7001));
        let ws = transport("ws://127.0.0.1:7002/hawser").unwrap();
        assert_eq!(ws, TransportAddr::Ws("127.0.0.1:7002".parse().unwrap()));
        let tcp = transport("localhost:7003").unwrap();
        assert!(matches!(tcp, TransportAddr::Tcp(a) if a.port() == 7003));
        assert!(transport("udp://127.0.0.1:1")
            .unwrap_err()
            .contains("unknown transport"));
    }
}
