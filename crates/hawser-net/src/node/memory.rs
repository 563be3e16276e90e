//! The in-memory network: nodes of one [`MemoryHub`] reach each other by id, in the same
//! process, running the same engine as the default network (queues, deadlines, back-off,
//! reachability, counters). For tests and simulations of the layers above.
//!
//! A connection is a frame pipe: the dialler's writer hands each batch's frames straight to
//! the destination's engine (as the frames an accepted connection reads), waiting while the
//! destination's incoming queue is full. Datagrams go through a bounded channel per node
//! (`DATAGRAM_BACKLOG` or `incoming_capacity`, the larger).
//! In-memory nodes have no addresses, so reachability knows node `n` by the pseudo address
//! [`memory_addr(n)`](super::memory_addr) (`[fd68:6177::n]:0`), and members without
//! addresses are given theirs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use hawser_proto::node::engine::{ConnId, DialError, WriteError};
use hawser_proto::node::{FrameBatch, Member, NodeId};
use hawser_proto::wire::node::FRAME_LEN_PREFIX;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::Settings;
use super::conn::{write_loop, BatchSink};
use super::error::StartError;
use super::events::memory_addr;
use super::rpc::{NodeStream, StreamError, StreamStatus};
use super::shell::{BoxFuture, Links, Shell, State};
use crate::session::ProtocolId;

/// How many datagrams at least wait for a node of the hub to read them (a socket's receive
/// buffer); beyond, they are lost as on a real network.
const DATAGRAM_BACKLOG: usize = 1024;

/// Bytes buffered each way in an in-memory stream (`tokio::io::duplex`).
const MEMORY_STREAM_BUFFER: usize = 256 * 1024;

/// One node of a hub: the node, and where its datagrams go.
#[derive(Clone, Debug)]
struct Entry {
    shell: Weak<Shell>,
    datagrams: mpsc::Sender<(NodeId, Bytes)>,
}

/// A process-local "network" that in-memory nodes join by id. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct MemoryHub {
    /// Running nodes; bounded by the nodes started on the hub (each removes itself at stop).
    nodes: Arc<Mutex<HashMap<NodeId, Entry>>>,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    fn nodes(&self) -> MutexGuard<'_, HashMap<NodeId, Entry>> {
        // A poisoned lock is recovered: the table is plain data.
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lookup(&self, id: NodeId) -> Option<Entry> {
        let nodes = self.nodes();
        nodes
            .get(&id)
            .filter(|e| e.shell.upgrade().is_some_and(|s| !s.is_stopped()))
            .cloned()
    }

    /// Ids of the nodes running on the hub.
    pub fn running(&self) -> Vec<NodeId> {
        let nodes = self.nodes();
        let mut ids: Vec<NodeId> = nodes
            .iter()
            .filter(|(_, e)| e.shell.upgrade().is_some_and(|s| !s.is_stopped()))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }
}

/// The in-memory [`Links`].
struct MemoryLinks {
    hub: MemoryHub,
    id: NodeId,
}

impl Links for MemoryLinks {
    fn dial(
        &self,
        shell: &Arc<Shell>,
        _st: &State,
        conn: ConnId,
        peer: NodeId,
        stop: CancellationToken,
    ) {
        let dest = self.hub.lookup(peer).and_then(|e| e.shell.upgrade());
        let shell = shell.clone();
        let from = self.id;
        shell.tracker.clone().spawn(async move {
            let Some(dest) = dest else {
                shell.dialed(conn, peer, Err(DialError::Refused));
                return;
            };
            // The "hello": the destination admits this node, or refuses it.
            let (inbound, inbound_stop) =
                match dest.accepted_soon(from, Some(memory_addr(from))).await {
                    Ok(c) => c,
                    Err(_) => {
                        shell.dialed(conn, peer, Err(DialError::Refused));
                        return;
                    }
                };
            let sink = MemorySink {
                dest: Arc::downgrade(&dest),
                inbound,
                inbound_stop,
                from,
                bodies: Vec::new(),
            };
            drop(dest);
            if stop.is_cancelled() {
                return;
            }
            if let Some(slot) = shell.dialed(conn, peer, Ok((memory_addr(peer), None))) {
                write_loop(shell, conn, slot, sink).await;
            }
        });
    }

    fn send_datagram(
        &self,
        _shell: &Arc<Shell>,
        _st: &mut State,
        to: NodeId,
        _addr: SocketAddr,
        datagram: Bytes,
    ) {
        // A datagram to a node that is not running, or whose queue is full, is lost, as on
        // a real network.
        if let Some(dest) = self.hub.lookup(to) {
            let _ = dest.datagrams.try_send((self.id, datagram));
        }
    }

    fn open_stream<'a>(
        &'a self,
        _shell: &'a Arc<Shell>,
        to: NodeId,
        protocol: ProtocolId,
    ) -> BoxFuture<'a, Result<NodeStream, StreamError>> {
        Box::pin(async move {
            let dest = self
                .hub
                .lookup(to)
                .and_then(|e| e.shell.upgrade())
                .ok_or(StreamError::Unreachable(to))?;
            if !dest.lock().engine.membership().contains(self.id) {
                return Err(StreamError::Unreachable(to));
            }
            if !dest.streams.is_registered(protocol) {
                return Err(StreamError::NoHandler(protocol));
            }
            let permit = dest
                .streams
                .reserve_stream(protocol)
                .map_err(|status| match status {
                    StreamStatus::Overloaded => StreamError::Overloaded,
                    _ => StreamError::NoHandler(protocol),
                })?;
            let (ours, theirs) = tokio::io::duplex(MEMORY_STREAM_BUFFER);
            dest.streams.note_accepted();
            permit.send((self.id, NodeStream::memory(theirs, protocol)));
            Ok(NodeStream::memory(ours, protocol))
        })
    }

    fn shutdown(&self) {
        let mut nodes = self.hub.nodes();
        // Only this node's own entry (a restarted node with the same id may have replaced it).
        let stale = nodes
            .get(&self.id)
            .is_some_and(|e| e.shell.upgrade().is_none_or(|s| s.is_stopped()));
        if stale {
            nodes.remove(&self.id);
        }
    }
}

/// An in-memory connection's sending end: the destination's engine and its name for the
/// connection there.
struct MemorySink {
    dest: Weak<Shell>,
    inbound: ConnId,
    /// Cancelled when the destination closes its end, or stops.
    inbound_stop: CancellationToken,
    from: NodeId,
    bodies: Vec<Bytes>,
}

impl BatchSink for MemorySink {
    async fn write_batch(
        &mut self,
        batch: &FrameBatch,
        _stop: &CancellationToken,
    ) -> Result<(), WriteError> {
        let Some(dest) = self
            .dest
            .upgrade()
            .filter(|_| !self.inbound_stop.is_cancelled())
        else {
            return Err(WriteError { written: 0 });
        };
        // Each queued frame is its length prefix, then its kind byte and body.
        self.bodies.extend(
            batch
                .frames()
                .map(|(f, _)| f.slice(FRAME_LEN_PREFIX.min(f.len())..)),
        );
        let waits = dest.receive(self.inbound, self.from, None, &mut self.bodies);
        let taken = !waits || dest.drain_overflow().await;
        if taken && !dest.is_stopped() {
            Ok(())
        } else {
            Err(WriteError {
                written: batch.bytes().len(),
            })
        }
    }

    fn closed(&self) -> CancellationToken {
        self.inbound_stop.clone()
    }
}

impl Drop for MemorySink {
    fn drop(&mut self) {
        if let Some(dest) = self.dest.upgrade() {
            dest.closed(self.inbound);
        }
    }
}

/// Starts node `id` on `hub`.
///
/// # Errors
/// [`StartError::Settings`], [`StartError::Membership`], or [`StartError::DuplicateId`] when
/// a running node of the hub has this id.
pub(crate) fn start(
    hub: &MemoryHub,
    id: NodeId,
    members: Vec<Member>,
    settings: Settings,
) -> Result<Arc<Shell>, StartError> {
    settings.validate()?;
    if hub.lookup(id).is_some() {
        return Err(StartError::DuplicateId(id));
    }
    // Like a socket's receive buffer: the engine reads datagrams from here as fast as they
    // come and counts what the incoming queue then drops, so this bound is not
    // `incoming_capacity` (a burst above it would be lost here, uncounted).
    let capacity = settings.incoming_capacity.max(DATAGRAM_BACKLOG);
    let links = MemoryLinks {
        hub: hub.clone(),
        id,
    };
    let shell = Shell::new(
        id,
        settings,
        members,
        Box::new(links),
        &[memory_addr(id)],
        true,
    )?;
    let (tx, mut rx) = mpsc::channel::<(NodeId, Bytes)>(capacity);
    let weak = Arc::downgrade(&shell);
    let cancel = shell.cancel.clone();
    shell.tracker.spawn(async move {
        loop {
            let (from, datagram) = tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => d,
                    None => return,
                },
                () = cancel.cancelled() => return,
            };
            let Some(shell) = weak.upgrade() else {
                return;
            };
            shell.datagram(memory_addr(from), datagram);
        }
    });
    let mut nodes = hub.nodes();
    if nodes
        .get(&id)
        .is_some_and(|e| e.shell.upgrade().is_some_and(|s| !s.is_stopped()))
    {
        drop(nodes);
        shell.begin_stop();
        return Err(StartError::DuplicateId(id));
    }
    nodes.insert(
        id,
        Entry {
            shell: Arc::downgrade(&shell),
            datagrams: tx,
        },
    );
    Ok(shell)
}
