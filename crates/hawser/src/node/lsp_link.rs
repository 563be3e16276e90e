//! Reliable delivery over LSP (`hawser::lsp`), the alternative to TCP: one LSP client per
//! destination, connected to its `Member::lsp_addr`, whose first message is the hello; and one
//! LSP server per node, mapping each connection to the node named by its hello.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hawser_proto::lsp::WriteError;
use hawser_proto::node::{Delivery, Member, NodeId};
use hawser_proto::wire::node::Hello;
use hawser_proto::wire::ConnId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::config::Settings;
use super::core::{Core, Counters, Link};
use super::error::StartError;
use crate::lsp::{Client, Server, ServerReadError, Socket};

/// One reliable LSP connection to a destination.
pub(crate) struct LspConn {
    client: Client,
    /// How long to wait when the client's send queue is full.
    retry: Duration,
}

impl LspConn {
    /// Queues one message on the LSP connection, waiting while its send queue is full.
    pub async fn send(&mut self, payload: Bytes) -> io::Result<()> {
        loop {
            match self.client.write(payload.clone()) {
                Ok(()) => return Ok(()),
                Err(WriteError::QueueFull(_)) => tokio::time::sleep(self.retry).await,
                Err(e) => return Err(io::Error::new(io::ErrorKind::BrokenPipe, e)),
            }
        }
    }

    /// Resolves when the connection is lost (the server never writes to it).
    pub async fn closed(&mut self) {
        while self.client.read().await.is_ok() {}
    }
}

/// Connects to `member`'s LSP address and says hello.
pub(crate) async fn dial<L: Link>(core: &Arc<Core<L>>, member: &Member) -> io::Result<LspConn> {
    let addr = member
        .lsp_addr
        .ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no lsp_addr"))?;
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = Socket::bind(local).await?;
    let isn = fastrand::u32(..);
    let config = core.settings.lsp.clone();
    let client = Client::connect_with(addr, isn, config, socket)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))?;
    let mut hello = BytesMut::new();
    Hello { from: core.id.0 }.emit(&mut hello);
    client
        .write(hello.freeze())
        .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
    info!(node = %core.id, peer = %member.id, %addr, "lsp connected");
    Ok(LspConn {
        client,
        retry: core.settings.lsp.params.epoch / 2,
    })
}

/// Binds the node's LSP server.
pub(crate) async fn bind(addr: SocketAddr, settings: &Settings) -> Result<Server, StartError> {
    let bind_err = |source| StartError::Bind { addr, source };
    let socket = Socket::bind(addr).await.map_err(bind_err)?;
    Server::bind_with(settings.lsp.clone(), socket).map_err(|e| bind_err(io::Error::other(e)))
}

/// Serves the node's LSP server until the node stops: the first message of each connection is
/// its hello; later ones are delivered as reliable messages from that node.
pub(crate) async fn serve<L: Link>(core: Arc<Core<L>>, server: Server, inbound: Arc<Semaphore>) {
    // Bounded by `max_inbound_connections` through the permits.
    let mut conns: HashMap<ConnId, (NodeId, OwnedSemaphorePermit)> = HashMap::new();
    loop {
        let read = tokio::select! {
            r = server.read() => r,
            () = core.cancel.cancelled() => break,
        };
        match read {
            Ok((conn, payload)) => {
                if let Some((from, _)) = conns.get(&conn) {
                    if !core.deliver(*from, Delivery::Reliable, payload).await {
                        break;
                    }
                    continue;
                }
                match hello_from(&core, &payload) {
                    Some(from) => match inbound.clone().try_acquire_owned() {
                        Ok(permit) => {
                            info!(node = %core.id, peer = %from, %conn, "accepted lsp connection");
                            conns.insert(conn, (from, permit));
                        }
                        Err(_) => {
                            Counters::bump(&core.counters.refused_connections);
                            let _ = server.close_conn(conn);
                        }
                    },
                    None => {
                        let _ = server.close_conn(conn);
                    }
                }
            }
            Err(ServerReadError::ConnEnded(conn, reason)) => {
                if let Some((from, _)) = conns.remove(&conn) {
                    info!(node = %core.id, peer = %from, %reason, "lsp connection ended");
                }
            }
            Err(_) => break,
        }
    }
    // Dropping the server stops its driver task.
    drop(server);
}

fn hello_from<L: Link>(core: &Core<L>, payload: &[u8]) -> Option<NodeId> {
    let Ok(hello) = Hello::parse(payload) else {
        Counters::bump(&core.counters.bad_hellos);
        warn!(node = %core.id, "bad lsp hello: connection closed");
        return None;
    };
    let from = NodeId(hello.from);
    if !core.is_member(from) {
        Counters::bump(&core.counters.unknown_senders);
        warn!(node = %core.id, peer = %from, "lsp hello from a non-member: connection closed");
        return None;
    }
    Some(from)
}
