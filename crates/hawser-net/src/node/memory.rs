//! The in-memory network: nodes of one [`MemoryHub`] reach each other by id, in the same
//! process, with the same queues, deadlines, back-off and counters as the default network. For
//! tests and simulations of the layers above.
//!
//! Reachability runs here too: a connection says hello when it is dialled, and internal frames
//! travel beside application payloads. In-memory nodes have no addresses, so reachability knows
//! node `n` by the pseudo address [`memory_addr(n)`](super::memory_addr) (`[fd68:6177::n]:0`).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use hawser_proto::node::{Delivery, Member, Membership, NodeId};
use tokio_util::sync::CancellationToken;

use super::config::Settings;
use super::connector::Connector;
use super::core::Core;
use super::error::{SendError, StartError};
use super::reach::{memory_addr, Frame, TrafficGate};
use super::rpc::{NodeStream, StreamError, StreamStatus};
use crate::session::ProtocolId;

/// Bytes buffered each way in an in-memory stream (`tokio::io::duplex`).
const MEMORY_STREAM_BUFFER: usize = 256 * 1024;

/// A process-local "network" that in-memory nodes join by id. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct MemoryHub {
    /// Running nodes; bounded by the nodes started on the hub (each removes itself at stop).
    nodes: Arc<Mutex<HashMap<NodeId, Weak<Core<MemoryConnector>>>>>,
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    fn lookup(&self, id: NodeId) -> Option<Arc<Core<MemoryConnector>>> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .get(&id)
            .and_then(Weak::upgrade)
            .filter(|c| !c.cancel.is_cancelled())
    }

    /// Ids of the nodes running on the hub.
    pub fn running(&self) -> Vec<NodeId> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<NodeId> = nodes
            .iter()
            .filter(|(_, w)| w.upgrade().is_some_and(|c| !c.cancel.is_cancelled()))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }
}

/// The in-memory [`Connector`].
pub(crate) struct MemoryConnector {
    hub: MemoryHub,
    id: NodeId,
}

/// An in-memory "connection": the destination, and its stop signal.
pub(crate) struct MemoryConn {
    dest: Weak<Core<MemoryConnector>>,
    from: NodeId,
    alive: CancellationToken,
    /// The destination admitted us (internal frames are only accepted then).
    admitted: bool,
    gate: TrafficGate,
}

impl Connector for MemoryConnector {
    type Conn = MemoryConn;

    fn route(&self, _: &Settings, _: &Member, _: bool) -> Result<usize, SendError> {
        Ok(usize::MAX)
    }

    async fn dial(
        &self,
        _: &Arc<Core<Self>>,
        member: Member,
    ) -> io::Result<(MemoryConn, SocketAddr)> {
        let dest = self
            .hub
            .lookup(member.id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
        // The "hello": the destination learns who connects (a non-member's messages are
        // dropped and counted there, as before reachability).
        let admitted = dest.admit_soon(self.id, Some(memory_addr(self.id))).await;
        if admitted {
            dest.reach_connected(self.id, memory_addr(self.id));
        }
        let conn = MemoryConn {
            alive: dest.cancel.clone(),
            dest: Arc::downgrade(&dest),
            from: self.id,
            admitted,
            gate: TrafficGate::default(),
        };
        Ok((conn, memory_addr(member.id)))
    }

    async fn write(conn: &mut MemoryConn, frame: Frame) -> io::Result<()> {
        let dest = conn
            .dest
            .upgrade()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        let delivered = match frame {
            frame if conn.admitted => {
                let via = memory_addr(conn.from);
                dest.receive(conn.from, via, frame, &mut conn.gate).await
            }
            Frame::App(payload) => dest.deliver(conn.from, Delivery::Reliable, payload).await,
            // Internal frames of a node the destination did not admit: dropped.
            _ => !dest.cancel.is_cancelled(),
        };
        if delivered {
            Ok(())
        } else {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    fn reach_addrs(&self, member: &Member) -> Vec<SocketAddr> {
        vec![memory_addr(member.id)]
    }

    async fn open_stream(
        &self,
        _: &Arc<Core<Self>>,
        to: NodeId,
        protocol: ProtocolId,
    ) -> Result<NodeStream, StreamError> {
        let dest = self.hub.lookup(to).ok_or(StreamError::Unreachable(to))?;
        if !dest.is_member(self.id) {
            return Err(StreamError::Unreachable(to));
        }
        if !dest.rpc.is_registered(protocol) {
            return Err(StreamError::NoHandler(protocol));
        }
        let permit = dest
            .rpc
            .reserve_stream(protocol)
            .map_err(|status| match status {
                StreamStatus::Overloaded => StreamError::Overloaded,
                _ => StreamError::NoHandler(protocol),
            })?;
        let (ours, theirs) = tokio::io::duplex(MEMORY_STREAM_BUFFER);
        dest.rpc.note_stream_accepted();
        permit.send((self.id, NodeStream::memory(theirs, protocol)));
        Ok(NodeStream::memory(ours, protocol))
    }

    async fn closed(conn: &mut MemoryConn) {
        conn.alive.cancelled().await;
    }

    fn send_datagram(
        &self,
        _: &Arc<Core<Self>>,
        to: &Member,
        payload: &Bytes,
    ) -> Result<(), SendError> {
        // A datagram to a node that is not running is lost, as on a real network.
        if let Some(dest) = self.hub.lookup(to.id) {
            dest.deliver_now(self.id, payload.clone());
        }
        Ok(())
    }

    async fn send_datagram_wait(
        &self,
        core: &Arc<Core<Self>>,
        to: Member,
        payload: Bytes,
    ) -> Result<(), SendError> {
        self.send_datagram(core, &to, &payload)
    }

    fn shutdown(&self) {
        let mut nodes = self.hub.nodes.lock().unwrap_or_else(|e| e.into_inner());
        // Only this node's own entry (a restarted node with the same id may have replaced it).
        let stale = nodes
            .get(&self.id)
            .is_some_and(|w| w.upgrade().is_none_or(|c| c.cancel.is_cancelled()));
        if stale {
            nodes.remove(&self.id);
        }
    }
}

/// A node's network on a [`MemoryHub`].
pub struct MemoryNetwork {
    core: Arc<Core<MemoryConnector>>,
}

impl MemoryNetwork {
    /// Joins `hub` as `id`.
    ///
    /// # Errors
    /// [`StartError::Settings`], or [`StartError::DuplicateId`] when a running node of the hub
    /// has this id.
    pub fn start(
        hub: &MemoryHub,
        id: NodeId,
        membership: Membership,
        settings: Settings,
    ) -> Result<MemoryNetwork, StartError> {
        settings.validate()?;
        let link = MemoryConnector {
            hub: hub.clone(),
            id,
        };
        let core = Core::new(id, settings, membership, link, &[memory_addr(id)]);
        let mut nodes = hub.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let taken = nodes
            .get(&id)
            .and_then(Weak::upgrade)
            .is_some_and(|c| !c.cancel.is_cancelled());
        if taken {
            return Err(StartError::DuplicateId(id));
        }
        nodes.insert(id, Arc::downgrade(&core));
        Ok(MemoryNetwork { core })
    }
}

super::network_impl!(MemoryNetwork, |_n| None);
