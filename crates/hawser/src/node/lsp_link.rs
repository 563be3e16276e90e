//! Reliable delivery over LSP (`hawser::lsp`), the alternative to TCP: one LSP client per
//! destination, connected to its `Member::lsp_addr`, whose first message is the hello (a framed
//! hello: every later message starts with a kind byte, as on TCP); and one LSP server per node,
//! mapping each connection to the node named by its hello (plain or framed).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use hawser_proto::lsp::WriteError;
use hawser_proto::node::{Delivery, Member, NodeId};
use hawser_proto::wire::node::{AnyHello, FramedHello};
use hawser_proto::wire::ConnId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use super::config::Settings;
use super::core::{Core, Counters, Link};
use super::error::StartError;
use super::reach::{Frame, TrafficGate};
use crate::lsp::{Client, Server, ServerReadError, Socket};

/// One reliable LSP connection to a destination.
pub(crate) struct LspConn {
    client: Client,
    /// How long to wait when the client's send queue is full.
    retry: Duration,
}

impl LspConn {
    /// Queues one frame (kind byte first) on the LSP connection, waiting while its send queue
    /// is full.
    pub async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let (kind, body) = frame.parts();
        let mut buf = BytesMut::with_capacity(1 + body.len());
        buf.put_u8(kind.byte());
        buf.put_slice(body);
        let payload = buf.freeze();
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
    let listen = core.reach.as_ref().and_then(|r| r.hello_addr);
    FramedHello {
        from: core.id.0,
        listen,
    }
    .emit(&mut hello);
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
    let mut conns: HashMap<ConnId, Accepted> = HashMap::new();
    loop {
        let read = tokio::select! {
            r = server.read() => r,
            () = core.cancel.cancelled() => break,
        };
        match read {
            Ok((conn, payload)) => {
                if let Some(a) = conns.get_mut(&conn) {
                    let delivered = match a.via {
                        None => core.deliver(a.from, Delivery::Reliable, payload).await,
                        Some(via) => match Frame::parse(payload) {
                            Ok(frame) => core.receive(a.from, via, frame, &mut a.gate).await,
                            Err(err) => {
                                core.note_bad_frame(a.from, &err);
                                true
                            }
                        },
                    };
                    if !delivered {
                        break;
                    }
                    continue;
                }
                match hello_from(&core, &payload) {
                    Some((from, via)) => match inbound.clone().try_acquire_owned() {
                        Ok(permit) => {
                            info!(node = %core.id, peer = %from, %conn, "accepted lsp connection");
                            if let Some(via) = via {
                                core.reach_connected(from, via);
                            }
                            let gate = TrafficGate::default();
                            let accepted = Accepted {
                                from,
                                via,
                                gate,
                                _permit: permit,
                            };
                            conns.insert(conn, accepted);
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
                if let Some(a) = conns.remove(&conn) {
                    info!(node = %core.id, peer = %a.from, %reason, "lsp connection ended");
                }
            }
            Err(_) => break,
        }
    }
    // Dropping the server stops its driver task.
    drop(server);
}

/// One accepted LSP connection: its node, and for a framed one the address reachability knows
/// it by.
struct Accepted {
    from: NodeId,
    via: Option<SocketAddr>,
    gate: TrafficGate,
    _permit: OwnedSemaphorePermit,
}

/// The node of a hello, and for a framed hello the address reachability knows it by (the one it
/// announces; else its LSP connection's, unknown here: the unspecified address).
fn hello_from<L: Link>(
    core: &Arc<Core<L>>,
    payload: &[u8],
) -> Option<(NodeId, Option<SocketAddr>)> {
    let Ok(hello) = AnyHello::parse(payload) else {
        Counters::bump(&core.counters.bad_hellos);
        warn!(node = %core.id, "bad lsp hello: connection closed");
        return None;
    };
    let from = NodeId(hello.from());
    let (admitted, via) = match hello {
        AnyHello::Plain(_) => (core.is_member(from), None),
        AnyHello::Framed(h) => {
            let via = h.listen.unwrap_or((Ipv4Addr::UNSPECIFIED, 0).into());
            (core.admit(from, h.listen), Some(via))
        }
    };
    if !admitted {
        Counters::bump(&core.counters.unknown_senders);
        warn!(node = %core.id, peer = %from, "lsp hello from a non-member: connection closed");
        return None;
    }
    Some((from, via))
}
