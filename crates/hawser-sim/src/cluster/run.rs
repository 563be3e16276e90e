//! The cluster's run loop: scheduled deliveries, carrying out each node's transmits, and
//! breaking connections.

use std::cmp::{Ordering, Reverse};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::fault::FaultInjector;
use hawser_proto::node::engine::{ConnId, DialError, WriteError};
use hawser_proto::node::{NodeId, Transmit};
use hawser_proto::wire::Codec;

use super::{Cluster, DialRecord};
use crate::seed::link_seed;

/// After this many steps without the clock moving, a run panics: an engine keeps asking for
/// a timeout it does not act on (a bug).
const MAX_STEPS_PER_INSTANT: u32 = 100_000;

/// A connection: frames flow from the dialler to the acceptor, in order.
#[derive(Debug)]
pub(super) struct Pipe {
    /// The dialling node and its name for the connection.
    pub dialer: (NodeId, ConnId),
    /// The dialler's engine generation.
    dialer_gen: u64,
    /// The node dialled.
    pub acceptor: NodeId,
    /// The acceptor's name for it, once accepted, and its engine generation.
    accepted: Option<(ConnId, u64)>,
    /// The dialler closed (or abandoned) it.
    dialer_closed: bool,
    /// The acceptor closed it.
    acceptor_closed: bool,
}

/// Something due at an instant.
#[derive(Debug)]
pub(super) struct Scheduled {
    at: Instant,
    seq: u64,
    action: Action,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Debug)]
enum Action {
    /// A dial reaches its destination.
    Accept { pipe: u64 },
    /// The dialler hears how its dial went.
    Dialed { pipe: u64, refused: bool },
    /// A frame reaches the acceptor.
    Frame { pipe: u64, frame: Bytes },
    /// One end's close reaches the other.
    Closed { pipe: u64, to_acceptor: bool },
    /// A datagram arrives.
    Datagram {
        from: NodeId,
        to: NodeId,
        gen: u64,
        bytes: Bytes,
    },
}

impl Cluster {
    fn schedule(&mut self, at: Instant, action: Action) {
        self.seq += 1;
        let seq = self.seq;
        self.queue.push(Reverse(Scheduled { at, seq, action }));
    }

    fn generation(&self, id: NodeId) -> Option<u64> {
        let n = self.nodes.get(&id)?;
        n.engine.as_ref().map(|_| n.generation)
    }

    /// Carries out everything node `id` wants, and records its events and deadline.
    pub(super) fn drain(&mut self, id: NodeId) {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            let Some(engine) = node.engine.as_mut() else {
                return;
            };
            while let Some(e) = engine.poll_event() {
                node.events.push((self.now, e));
            }
            let Some(t) = engine.poll_transmit() else {
                node.deadline = engine.poll_timeout();
                return;
            };
            self.carry(id, t);
        }
    }

    fn carry(&mut self, id: NodeId, t: Transmit) {
        let now = self.now;
        match t {
            Transmit::Dial { conn, peer, .. } => {
                self.stats.dials += 1;
                self.dials.push(DialRecord {
                    at: now,
                    from: id,
                    to: peer,
                });
                let Some(gen) = self.generation(id) else {
                    return;
                };
                self.next_pipe += 1;
                let pipe = self.next_pipe;
                self.pipes.insert(
                    pipe,
                    Pipe {
                        dialer: (id, conn),
                        dialer_gen: gen,
                        acceptor: peer,
                        accepted: None,
                        dialer_closed: false,
                        acceptor_closed: false,
                    },
                );
                self.ends.insert((id, conn), pipe);
                let lat = self.latency(id, peer);
                if self.is_cut(id, peer) {
                    // Never answered: the dialler's connect timeout abandons it.
                } else if !self.is_up(peer) {
                    self.schedule(
                        now + lat * 2,
                        Action::Dialed {
                            pipe,
                            refused: true,
                        },
                    );
                } else {
                    self.schedule(now + lat, Action::Accept { pipe });
                }
            }
            Transmit::Writable { conn } => self.write(id, conn),
            Transmit::Close { conn, .. } => {
                let Some(pipe) = self.ends.remove(&(id, conn)) else {
                    return;
                };
                let Some(p) = self.pipes.get_mut(&pipe) else {
                    return;
                };
                let to_acceptor = p.dialer == (id, conn);
                if to_acceptor {
                    p.dialer_closed = true;
                } else {
                    p.acceptor_closed = true;
                }
                let other = if to_acceptor { p.acceptor } else { p.dialer.0 };
                let lat = self.latency(id, other);
                self.schedule(now + lat, Action::Closed { pipe, to_acceptor });
            }
            Transmit::Datagram { to, payload, .. } => self.datagram(id, to, payload),
        }
    }

    /// Writes every batch node `id` has for `conn`.
    fn write(&mut self, id: NodeId, conn: ConnId) {
        let now = self.now;
        let mut batch = std::mem::take(&mut self.batch);
        while let Some(engine) = self.nodes.get_mut(&id).and_then(|n| n.engine.as_mut()) {
            if !engine.take_frames(now, conn, &mut batch) {
                break;
            }
            let pipe = self.ends.get(&(id, conn)).copied();
            let open = pipe
                .and_then(|k| self.pipes.get(&k))
                .filter(|p| p.accepted.is_some());
            let result = match (pipe, open) {
                (Some(pipe), Some(p)) => {
                    let lat = self.latency(id, p.acceptor);
                    for (frame, _) in batch.frames() {
                        self.stats.frames += 1;
                        // Without the 4-byte length: the engine takes frame bodies.
                        let body = frame.slice(4.min(frame.len())..);
                        self.schedule(now + lat, Action::Frame { pipe, frame: body });
                    }
                    Ok(())
                }
                _ => Err(WriteError { written: 0 }),
            };
            let Some(engine) = self.nodes.get_mut(&id).and_then(|n| n.engine.as_mut()) else {
                break;
            };
            engine.handle_written(now, conn, &mut batch, result);
        }
        self.batch = batch;
    }

    fn datagram(&mut self, from: NodeId, to: NodeId, payload: Bytes) {
        self.stats.datagrams += 1;
        let gen = self.generation(to);
        let (Some(gen), false) = (gen, self.is_cut(from, to)) else {
            self.stats.datagrams_lost += 1;
            return;
        };
        let (seed, faults) = (self.seed(), self.faults.clone());
        let (fa, ta) = (self.nodes[&from].addr, self.nodes[&to].addr);
        let injector = self.injectors.entry((from, to)).or_insert_with(|| {
            FaultInjector::new(faults, Codec::default(), link_seed(seed, fa, ta))
        });
        let mut out = Vec::new();
        injector.process(self.now, payload, &mut out);
        if out.is_empty() {
            self.stats.datagrams_lost += 1;
        }
        let lat = self.latency(from, to);
        for (at, bytes) in out {
            self.schedule(
                at + lat,
                Action::Datagram {
                    from,
                    to,
                    gen,
                    bytes,
                },
            );
        }
    }

    /// A partition or crash breaks `pipe`: both live ends are told now; frames in flight are
    /// lost.
    pub(super) fn break_pipe(&mut self, pipe: u64) {
        let Some(p) = self.pipes.remove(&pipe) else {
            return;
        };
        self.stats.broken += 1;
        self.ends.remove(&p.dialer);
        if !p.dialer_closed && self.generation(p.dialer.0) == Some(p.dialer_gen) {
            let (id, conn) = p.dialer;
            self.with(id, |e, now| e.handle_closed(now, conn));
        }
        if let Some((conn, gen)) = p.accepted {
            self.ends.remove(&(p.acceptor, conn));
            if !p.acceptor_closed && self.generation(p.acceptor) == Some(gen) {
                self.with(p.acceptor, |e, now| e.handle_closed(now, conn));
            }
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Accept { pipe } => self.accept(pipe),
            Action::Dialed { pipe, refused } => {
                let Some(p) = self.pipes.get(&pipe) else {
                    return;
                };
                let (id, conn) = p.dialer;
                let gen = p.dialer_gen;
                let addr = self.nodes[&p.acceptor].addr;
                if p.dialer_closed || self.generation(id) != Some(gen) {
                    // Abandoned meanwhile: close the other end, if any.
                    if !refused {
                        self.break_pipe(pipe);
                    } else {
                        self.pipes.remove(&pipe);
                    }
                    return;
                }
                if refused {
                    self.stats.dials_refused += 1;
                    self.pipes.remove(&pipe);
                    self.ends.remove(&(id, conn));
                    self.with(id, |e, now| {
                        e.handle_dialed(now, conn, Err(DialError::Refused))
                    });
                } else {
                    self.stats.connections += 1;
                    self.with(id, |e, now| e.handle_dialed(now, conn, Ok(addr)));
                }
            }
            Action::Frame { pipe, frame } => {
                let target = self.pipes.get(&pipe).and_then(|p| match p.accepted {
                    Some((conn, gen)) if !p.acceptor_closed => Some((p.acceptor, conn, gen)),
                    _ => None,
                });
                match target {
                    Some((id, conn, gen)) if self.generation(id) == Some(gen) => {
                        self.with(id, |e, now| e.handle_frame(now, conn, frame));
                    }
                    _ => self.stats.frames_lost += 1,
                }
            }
            Action::Closed { pipe, to_acceptor } => {
                let Some(p) = self.pipes.get(&pipe) else {
                    return;
                };
                let target = if to_acceptor {
                    p.accepted
                        .filter(|_| !p.acceptor_closed)
                        .map(|(c, g)| (p.acceptor, c, g))
                } else {
                    Some((p.dialer.0, p.dialer.1, p.dialer_gen)).filter(|_| !p.dialer_closed)
                };
                self.pipes.remove(&pipe);
                if let Some((id, conn, gen)) = target {
                    self.ends.remove(&(id, conn));
                    if self.generation(id) == Some(gen) {
                        self.with(id, |e, now| e.handle_closed(now, conn));
                    }
                }
            }
            Action::Datagram {
                from,
                to,
                gen,
                bytes,
            } => {
                if self.is_cut(from, to) || self.generation(to) != Some(gen) {
                    self.stats.datagrams_lost += 1;
                    return;
                }
                let addr = self.nodes[&from].addr;
                self.with(to, |e, now| e.handle_datagram(now, addr, bytes));
            }
        }
    }

    /// A dial arrives at its destination: admitted (and answered after one latency) or
    /// refused.
    fn accept(&mut self, pipe: u64) {
        let Some(p) = self.pipes.get(&pipe) else {
            return;
        };
        let (from, to) = (p.dialer.0, p.acceptor);
        if p.dialer_closed || self.is_cut(from, to) {
            self.pipes.remove(&pipe);
            return;
        }
        let announced = self.nodes[&from].addr;
        let lat = self.latency(from, to);
        let gen = self.generation(to);
        let admitted = self.with(to, |e, now| e.handle_accepted(now, from, Some(announced)));
        let (Some(Ok(conn)), Some(gen)) = (admitted, gen) else {
            self.schedule(
                self.now + lat,
                Action::Dialed {
                    pipe,
                    refused: true,
                },
            );
            return;
        };
        if let Some(p) = self.pipes.get_mut(&pipe) {
            p.accepted = Some((conn, gen));
        }
        self.ends.insert((to, conn), pipe);
        self.schedule(
            self.now + lat,
            Action::Dialed {
                pipe,
                refused: false,
            },
        );
    }

    /// The next instant something happens.
    pub fn next_event(&self) -> Option<Instant> {
        let queued = self.queue.peek().map(|Reverse(s)| s.at);
        let timers = self.nodes.values().filter_map(|n| n.deadline);
        queued.into_iter().chain(timers).min()
    }

    /// Jumps to the next instant something happens and runs everything due then: deliveries
    /// in (time, order sent), then the timers of the nodes whose deadline came, by id.
    /// `false` when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(next) = self.next_event() else {
            return false;
        };
        self.advance_to(next);
        true
    }

    fn advance_to(&mut self, next: Instant) {
        let mut spins = 0u32;
        self.now = self.now.max(next);
        loop {
            spins += 1;
            assert!(
                spins < MAX_STEPS_PER_INSTANT,
                "stalled at {:?}",
                self.elapsed()
            );
            if let Some(Reverse(s)) = self.queue.peek() {
                if s.at <= self.now {
                    let Some(Reverse(s)) = self.queue.pop() else {
                        break;
                    };
                    self.act(s.action);
                    continue;
                }
            }
            let due: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.deadline.is_some_and(|d| d <= self.now))
                .map(|(&id, _)| id)
                .collect();
            if due.is_empty() {
                break;
            }
            for id in due {
                self.with(id, |e, now| e.handle_timeout(now));
            }
        }
    }

    /// Runs for `duration` of simulated time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while let Some(next) = self.next_event().filter(|&t| t <= end) {
            self.advance_to(next);
        }
        self.now = end;
    }

    /// Runs until `done` holds (checked after every step) or `limit` of simulated time
    /// passed; whether it holds.
    pub fn run_until(&mut self, mut done: impl FnMut(&Cluster) -> bool, limit: Duration) -> bool {
        let end = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            match self.next_event().filter(|&t| t <= end) {
                Some(next) => self.advance_to(next),
                None => {
                    self.now = end;
                    return done(self);
                }
            }
        }
    }
}
