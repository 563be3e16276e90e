//! The in-memory network: nodes of one [`MemoryHub`] reach each other by id, in the same
//! process, with the same queues, deadlines, back-off and counters as the default network. For
//! tests and simulations of the layers above.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use hawser_proto::node::{Delivery, Member, Membership, NodeId};
use tokio_util::sync::CancellationToken;

use super::config::Settings;
use super::core::{Core, Link};
use super::error::{SendError, StartError};

/// A process-local "network" that in-memory nodes join by id. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct MemoryHub {
    /// Running nodes; bounded by the nodes started on the hub (each removes itself at stop).
    nodes: Arc<Mutex<HashMap<NodeId, Weak<Core<MemoryLink>>>>>,
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    fn lookup(&self, id: NodeId) -> Option<Arc<Core<MemoryLink>>> {
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

/// The in-memory [`Link`].
pub(crate) struct MemoryLink {
    hub: MemoryHub,
    id: NodeId,
}

/// An in-memory "connection": the destination, and its stop signal.
pub(crate) struct MemoryConn {
    dest: Weak<Core<MemoryLink>>,
    from: NodeId,
    alive: CancellationToken,
}

impl Link for MemoryLink {
    type Conn = MemoryConn;

    fn route(&self, _: &Settings, _: &Member, _: bool) -> Result<usize, SendError> {
        Ok(usize::MAX)
    }

    async fn dial(&self, _: &Arc<Core<Self>>, member: Member) -> io::Result<MemoryConn> {
        let dest = self
            .hub
            .lookup(member.id)
            .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
        Ok(MemoryConn {
            alive: dest.cancel.clone(),
            dest: Arc::downgrade(&dest),
            from: self.id,
        })
    }

    async fn write(conn: &mut MemoryConn, payload: Bytes) -> io::Result<()> {
        let dest = conn
            .dest
            .upgrade()
            .ok_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))?;
        if dest.deliver(conn.from, Delivery::Reliable, payload).await {
            Ok(())
        } else {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    async fn closed(conn: &mut MemoryConn) {
        conn.alive.cancelled().await;
    }

    fn send_datagram(&self, _: &Core<Self>, to: &Member, payload: &Bytes) -> Result<(), SendError> {
        // A datagram to a node that is not running is lost, as on a real network.
        if let Some(dest) = self.hub.lookup(to.id) {
            dest.deliver_now(self.id, payload.clone());
        }
        Ok(())
    }

    async fn send_datagram_wait(
        &self,
        core: &Core<Self>,
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
    core: Arc<Core<MemoryLink>>,
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
        let link = MemoryLink {
            hub: hub.clone(),
            id,
        };
        let core = Core::new(id, settings, membership, link);
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
