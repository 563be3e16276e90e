//! Script tests of the engine on simulated time: a tiny in-test shell wires engines together
//! (dials answered at once, frames moved at once), and each test drives one rule.
//!
//! - `links`: queues, connections, back-off, idle close, requeues, control frames, sends;
//! - `input`: datagrams and frames from the network, malformed and random;
//! - `rpc`: requests and responses;
//! - `reach`: reachability wiring.

mod input;
mod links;
mod reach;
mod rpc;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::node::{Member, Role};

fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)] // tests need one arbitrary origin
    Instant::now()
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i as u8 + 1], 7000))
}

fn members(n: usize) -> Membership {
    Membership::from_members((0..n).map(|i| Member::new(i as u64 + 1, Role::Member, addr(i))))
        .unwrap()
}

fn quiet() -> EngineConfig {
    EngineConfig {
        reach: None,
        ..EngineConfig::default()
    }
}

/// What the test shell does with a dial.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dials {
    Connect,
    Refuse,
    Ignore,
}

/// Engines joined by a shell that answers dials and moves frames at once.
struct Shell {
    nodes: Vec<Engine>,
    now: Instant,
    /// (node, outbound conn) -> (node, inbound conn).
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    events: Vec<Vec<Event>>,
    dials: Vec<(Instant, usize, NodeId)>,
    closes: Vec<(usize, ConnId, CloseReason)>,
    mode: Dials,
    /// Writes fail after this many bytes (once), if set.
    fail_write: Option<usize>,
    /// Writables seen but not served (when `hold` is set).
    held: Vec<(usize, ConnId)>,
    hold: bool,
    batch: FrameBatch,
}

impl Shell {
    fn new(n: usize, config: EngineConfig) -> Shell {
        let now = origin();
        let m = members(n);
        let nodes = (0..n)
            .map(|i| {
                Engine::new(
                    NodeId(i as u64 + 1),
                    config.clone(),
                    m.clone(),
                    &[addr(i)],
                    now,
                )
                .unwrap()
            })
            .collect();
        Shell {
            nodes,
            now,
            links: BTreeMap::new(),
            events: vec![Vec::new(); n],
            dials: Vec::new(),
            closes: Vec::new(),
            mode: Dials::Connect,
            fail_write: None,
            held: Vec::new(),
            hold: false,
            batch: FrameBatch::default(),
        }
    }

    fn node(&mut self, i: usize) -> &mut Engine {
        &mut self.nodes[i]
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].poll_transmit() {
                    moved = true;
                    self.carry(i, t);
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    self.events[i].push(e);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn carry(&mut self, i: usize, t: Transmit) {
        let now = self.now;
        match t {
            Transmit::Dial { conn, peer, .. } => {
                self.dials.push((now, i, peer));
                let j = peer.0 as usize - 1;
                match self.mode {
                    Dials::Connect => {
                        let me = self.nodes[i].id();
                        match self.nodes[j].handle_accepted(now, me, Some(addr(i))) {
                            Ok(inbound) => {
                                self.links.insert((i, conn), (j, inbound));
                                self.nodes[i].handle_dialed(now, conn, Ok(addr(j)));
                            }
                            Err(_) => {
                                self.nodes[i].handle_dialed(now, conn, Err(DialError::Refused))
                            }
                        }
                    }
                    Dials::Refuse => {
                        self.nodes[i].handle_dialed(now, conn, Err(DialError::Refused))
                    }
                    Dials::Ignore => {}
                }
            }
            Transmit::Writable { conn } if self.hold => self.held.push((i, conn)),
            Transmit::Writable { conn } => self.write(i, conn),
            Transmit::Close { conn, reason } => {
                self.closes.push((i, conn, reason));
                if let Some((j, inbound)) = self.links.remove(&(i, conn)) {
                    self.nodes[j].handle_closed(now, inbound);
                }
            }
            Transmit::Datagram { to, payload, .. } => {
                let j = to.0 as usize - 1;
                self.nodes[j].handle_datagram(now, addr(i), payload);
            }
        }
    }

    fn write(&mut self, i: usize, conn: ConnId) {
        let now = self.now;
        let mut batch = std::mem::take(&mut self.batch);
        if self.nodes[i].take_frames(now, conn, &mut batch) {
            let (j, inbound) = self.links[&(i, conn)];
            let limit = self.fail_write.take().unwrap_or(usize::MAX);
            let mut at = 0;
            for (frame, _) in batch.frames() {
                if at + frame.len() > limit {
                    break;
                }
                at += frame.len();
                self.nodes[j].handle_frame(now, inbound, frame.slice(4..));
            }
            let result = if limit == usize::MAX {
                Ok(())
            } else {
                Err(WriteError { written: limit })
            };
            self.nodes[i].handle_written(now, conn, &mut batch, result);
        }
        self.batch = batch;
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self.nodes.iter().filter_map(Engine::poll_timeout).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for n in 0..self.nodes.len() {
                        if self.nodes[n].poll_timeout().is_some_and(|t| t <= self.now) {
                            self.nodes[n].handle_timeout(self.now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        for n in &mut self.nodes {
            n.handle_timeout(end);
        }
        self.pump();
    }

    fn messages(&self, i: usize) -> Vec<(NodeId, Vec<u8>)> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Message { from, payload, .. } => Some((*from, payload.to_vec())),
                _ => None,
            })
            .collect()
    }

    fn responses(&self, i: usize) -> Vec<(RequestId, Result<Bytes, RequestError>)> {
        self.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Response { id, result } => Some((*id, result.clone())),
                _ => None,
            })
            .collect()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
