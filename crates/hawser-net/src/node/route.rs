//! Where a member is reached: the address a member without one is given (its in-memory
//! pseudo address, its session transport's, its LSP address), and the address reachability
//! knows a node by when reached through a transport address.

use std::net::SocketAddr;

use hawser_proto::node::{Member, NodeId};

use super::config::Settings;
use super::events::memory_addr;
use crate::session::TransportAddr;

/// The address reachability knows node `id` by when reached through `t`.
pub(crate) fn transport_via(t: &TransportAddr, id: NodeId) -> SocketAddr {
    match t {
        TransportAddr::Tcp(a) | TransportAddr::Lsp(a) | TransportAddr::Ws(a) => *a,
        // No socket address: the in-memory network's pseudo address of the node.
        TransportAddr::Mem(_) | TransportAddr::Other { .. } => memory_addr(id),
    }
}

/// `m` with the address its route gives when it has none: its in-memory pseudo address, its
/// session transport's, or its LSP address.
pub(crate) fn fill_addrs(settings: &Settings, memory: bool, mut m: Member) -> Member {
    if !m.addrs.is_empty() {
        return m;
    }
    if memory {
        m.addrs.push(memory_addr(m.id));
    } else if let Some(t) = settings.transports.get(&m.id) {
        m.addrs.push(transport_via(t, m.id));
    } else if let Some(lsp) = m.lsp_addr {
        m.addrs.push(lsp);
    }
    m
}
