//! Reachability wiring, as the tokio node layer does it:
//! - inputs: this node's connection up is `handle_connected` (through the address dialled),
//!   and so is an accepted connection (through the address its hello announces); a reach
//!   frame is `handle_event`; any frame received is `handle_traffic` (at most every
//!   `reachable_for / 8` per connection); a failed dial or write is `handle_send_failed`; the
//!   loss of this node's connection is `handle_disconnected` (an idle close is not a loss);
//! - outputs: each copy to send becomes a reach frame on the neighbour's control queue; each
//!   [`PeerEvent`] becomes an [`Event::Peer`], and an `AddressFound` of a node outside the
//!   membership adds it as a `Role::Temporary` member (with `learn_peers`, unless the
//!   application removed it);
//! - every renewal interval (the shortest lease / `renew_divisor`), from one interval after
//!   start, each member with an address that is not a neighbour gets a ping, which opens a
//!   connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::event::Event;
use super::route::Control;
use super::{ConfigError, Engine};
use crate::node::{Member, NodeId, Role};
use crate::reach::{self, PeerEvent, Reachability};

/// The reachability engine of a node and its timers.
#[derive(Debug)]
pub(super) struct Wiring {
    pub engine: Reachability,
    /// How often one connection's traffic is reported.
    pub traffic_every: Duration,
    /// The interval of the pings to members that are not neighbours.
    poke_every: Duration,
    next_poke: Instant,
    announced: Option<SocketAddr>,
}

impl Wiring {
    pub fn new(
        id: NodeId,
        config: reach::Config,
        local: &[SocketAddr],
        now: Instant,
    ) -> Result<Wiring, ConfigError> {
        let lease = config.lease.min_lease();
        let poke_every = lease / config.renew_divisor.max(1);
        let traffic_every = config.reachable_for / 8;
        let mut engine = Reachability::new(id, config, now)?;
        for &addr in local {
            // Beyond `max_local_addresses`, an address is simply not announced.
            let _ = engine.add_local_address(now, addr);
        }
        // Nothing to send yet: no neighbour.
        while engine.poll_transmit().is_some() {}
        Ok(Wiring {
            engine,
            traffic_every,
            poke_every,
            next_poke: now + poke_every,
            announced: local.first().copied(),
        })
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.engine.poll_timeout();
        Some(next.map_or(self.next_poke, |t| t.min(self.next_poke)))
    }

    pub fn announced(&self) -> Option<SocketAddr> {
        self.announced
    }
}

impl Engine {
    /// Runs one input on the reachability engine, if it runs, then moves its outputs on.
    pub(super) fn reach_input(&mut self, now: Instant, f: impl FnOnce(&mut Reachability, Instant)) {
        let Some(w) = self.reach.as_mut() else {
            return;
        };
        f(&mut w.engine, now);
        self.drain_reach(now);
    }

    /// Copies become control frames, peer events become events (and learned members).
    fn drain_reach(&mut self, now: Instant) {
        while let Some(out) = self.reach.as_mut().and_then(|w| w.engine.poll_transmit()) {
            self.push_control(now, out.peer, Control::Reach(&out.payload));
        }
        while let Some(event) = self.reach.as_mut().and_then(|w| w.engine.poll_event()) {
            match event {
                PeerEvent::PeerAlive { peer, .. } => self.set_dead(peer, false),
                PeerEvent::PeerDead { peer } => self.set_dead(peer, true),
                PeerEvent::AddressFound { peer, addr } => self.learn(now, peer, addr, true),
                PeerEvent::AddressDown { peer, addr } => self.learn(now, peer, addr, false),
                _ => {}
            }
            self.event(Event::Peer(event));
        }
        // Application events of the flood are not exposed by the engine: dropped.
        while self
            .reach
            .as_mut()
            .and_then(|w| w.engine.poll_app_event())
            .is_some()
        {}
    }

    /// Adds a node reported by the flood, or keeps a learned member's addresses current.
    fn learn(&mut self, now: Instant, peer: NodeId, addr: SocketAddr, found: bool) {
        if peer == self.id || !self.config.learn_peers || self.removed.contains(&peer) {
            return;
        }
        match self.membership.get(peer) {
            None if found => {
                let _ = self.add_learned(now, Member::new(peer, Role::Temporary, addr));
            }
            Some(m) if self.learned.contains(&peer) => {
                let mut addrs = m.addrs.clone();
                if found && !addrs.contains(&addr) {
                    addrs.push(addr);
                } else if !found {
                    addrs.retain(|a| *a != addr);
                }
                if addrs != m.addrs {
                    // The current connection stays; too many addresses keeps the old ones.
                    let change = crate::node::MembershipChange::SetAddrs(peer, addrs);
                    let _ = self.membership.apply(change);
                }
            }
            _ => {}
        }
    }

    /// Reachability's timers, and the periodic pings to members that are not neighbours.
    pub(super) fn reach_timeout(&mut self, now: Instant) {
        let Some(w) = self.reach.as_mut() else {
            return;
        };
        let poke = now >= w.next_poke;
        if poke {
            w.next_poke = now + w.poke_every;
        }
        self.reach_input(now, |r, now| r.handle_timeout(now));
        if poke {
            self.poke_strangers(now);
        }
    }

    fn poke_strangers(&mut self, now: Instant) {
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        if let Some(w) = self.reach.as_ref() {
            let neighbours: Vec<NodeId> = w.engine.neighbours().map(|(p, _)| p).collect();
            let strangers = self.membership.iter().map(|m| m.id);
            ids.extend(strangers.filter(|id| *id != self.id && !neighbours.contains(id)));
        }
        for &id in &ids {
            self.poke(now, id);
        }
        self.ids = ids;
    }
}
