//! [`Reachability`]: presence, the peer table and flooding, as one sans-IO state machine.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::flood::{self, SeenCache, Verdict};
use super::presence::Presence;
use super::table::{PeerEvent, PeerSnapshot, PeerTable};
use super::{
    AddressError, AppEvent, Config, ConfigError, EventId, NodeId, Outgoing, PublishError,
    ReachStats, Stamp,
};
use crate::wire::reach::{self as wire, Event, EventBody};

/// The reachability state of one node: its presence, what it knows of its peers, its flood.
///
/// # Method families
/// - inputs: [`handle_connected`](Self::handle_connected),
///   [`handle_disconnected`](Self::handle_disconnected), [`handle_event`](Self::handle_event),
///   [`handle_traffic`](Self::handle_traffic), [`handle_send_failed`](Self::handle_send_failed),
///   [`handle_timeout`](Self::handle_timeout);
/// - commands: [`add_local_address`](Self::add_local_address),
///   [`remove_local_address`](Self::remove_local_address), [`publish`](Self::publish);
/// - outputs: [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event),
///   [`poll_app_event`](Self::poll_app_event), [`poll_timeout`](Self::poll_timeout);
/// - getters: [`peers`](Self::peers), [`peer`](Self::peer), [`stats`](Self::stats), ...
///
/// # The run loop
/// After any input or command, drain `poll_transmit`, `poll_event` and `poll_app_event` until
/// they return `None`, then call `handle_timeout` once `poll_timeout` has passed (an early or
/// extra call does nothing harmful). Every `now` is the caller's; one earlier than the latest
/// seen is treated as the latest seen. Lapsed leases are reported by `handle_timeout` only, so
/// the reported state (events, [`peers`](Self::peers)) is exact when the loop is followed.
///
/// ```
/// use std::time::{Duration, Instant};
/// use hawser_proto::reach::{Config, NodeId, PeerEvent, Reachability};
///
/// let (a, b) = ("10.0.0.1:7000".parse().unwrap(), "10.0.0.2:7000".parse().unwrap());
/// let t0 = Instant::now(); // the caller's clock, never the engine's
/// let mut na = Reachability::new(NodeId(1), Config::default(), t0).unwrap();
/// let mut nb = Reachability::new(NodeId(2), Config::default(), t0).unwrap();
/// na.add_local_address(t0, a).unwrap();
/// // The transports of A and B completed a handshake.
/// na.handle_connected(t0, NodeId(2), b);
/// nb.handle_connected(t0, NodeId(1), a);
/// na.handle_timeout(t0); // the ticktock is due at once for a new neighbour
/// while let Some(out) = na.poll_transmit() {
///     nb.handle_event(t0, NodeId(1), a, &out.payload);
/// }
/// let events: Vec<_> = std::iter::from_fn(|| nb.poll_event()).collect();
/// assert!(events.contains(&PeerEvent::PeerAlive { peer: NodeId(1), until: t0 + Duration::from_secs(10) }));
/// assert!(events.contains(&PeerEvent::AddressFound { peer: NodeId(1), addr: a }));
/// assert!(nb.peer(NodeId(1)).unwrap().alive);
///
/// // A falls silent: B declares it dead when the lease lapses.
/// let later = t0 + Duration::from_secs(10);
/// assert_eq!(nb.poll_timeout(), Some(t0)); // B's own ticktock is due first
/// nb.handle_timeout(later);
/// assert!(std::iter::from_fn(|| nb.poll_event()).any(|e| e == PeerEvent::PeerDead { peer: NodeId(1) }));
/// ```
#[derive(Debug)]
pub struct Reachability {
    config: Config,
    me: NodeId,
    /// Our latest event's stamp (seq 0: none yet).
    latest: Stamp,
    now: Instant,
    presence: Presence,
    /// Our addresses and the seq of the `found` that announced each.
    local: BTreeMap<SocketAddr, u64>,
    /// Direct connections, each through one address.
    neighbours: BTreeMap<NodeId, SocketAddr>,
    table: PeerTable,
    seen: SeenCache,
    transmits: VecDeque<Outgoing>,
    events: VecDeque<PeerEvent>,
    app_events: VecDeque<AppEvent>,
    scratch: Vec<PeerEvent>,
    stats: ReachStats,
}

impl Reachability {
    /// A node `me` starting at `now`, with no addresses and no neighbours yet.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` does not validate.
    pub fn new(me: NodeId, config: Config, now: Instant) -> Result<Reachability, ConfigError> {
        config.validate()?;
        Ok(Reachability {
            me,
            latest: Stamp {
                incarnation: config.incarnation,
                seq: 0,
            },
            now,
            presence: Presence::new(config.lease, config.renew_divisor, now),
            local: BTreeMap::new(),
            neighbours: BTreeMap::new(),
            table: PeerTable::new(config.max_peers, config.max_addresses_per_peer),
            seen: SeenCache::new(config.seen_ttl, config.max_seen),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            app_events: VecDeque::new(),
            scratch: Vec::new(),
            stats: ReachStats::default(),
            config,
        })
    }

    // ----- inputs -----

    /// The transport connected to `peer` through `addr` (a handshake succeeded): `addr` is
    /// reachable, `peer` becomes a neighbour (if fewer than `max_neighbours`; its previous
    /// address is replaced), and our ticktock is due at once so that it hears about us.
    pub fn handle_connected(&mut self, now: Instant, peer: NodeId, addr: SocketAddr) {
        let now = self.clock(now);
        if peer == self.me {
            return;
        }
        let (reach, mut out) = (self.config.reachable_for, std::mem::take(&mut self.scratch));
        self.table.renew_reach(now, peer, addr, reach, &mut out);
        self.flush(out);
        if !self.neighbours.contains_key(&peer)
            && self.neighbours.len() >= self.config.max_neighbours
        {
            self.stats.neighbours_refused += 1;
            return;
        }
        self.neighbours.insert(peer, addr);
        self.presence.hurry(now);
    }

    /// The connection to `peer` through `addr` closed: `peer` is no longer a neighbour through
    /// it, and `addr` is unreachable.
    pub fn handle_disconnected(&mut self, now: Instant, peer: NodeId, addr: SocketAddr) {
        let now = self.clock(now);
        if self.neighbours.get(&peer) == Some(&addr) {
            self.neighbours.remove(&peer);
        }
        let mut out = std::mem::take(&mut self.scratch);
        self.table.revoke_reach(now, peer, addr, &mut out);
        self.flush(out);
    }

    /// An event payload from neighbour `from`, received through `via`. It counts as traffic
    /// over `via`. Malformed, duplicate or hop-limited input is dropped and counted.
    pub fn handle_event(&mut self, now: Instant, from: NodeId, via: SocketAddr, payload: &[u8]) {
        let now = self.clock(now);
        self.stats.received += 1;
        let mut out = std::mem::take(&mut self.scratch);
        if from != self.me {
            let reach = self.config.reachable_for;
            self.table.renew_reach(now, from, via, reach, &mut out);
        }
        let Ok(mut event) = wire::decode(payload) else {
            self.stats.malformed += 1;
            self.flush(out);
            return;
        };
        let own = EventId {
            origin: self.me,
            stamp: self.latest,
        };
        let id = event_id(&event);
        let max_hops = self.config.max_hops;
        match flood::decide(self.me, own, id, event.hops, max_hops, &mut self.seen, now) {
            Verdict::Duplicate => self.stats.duplicates += 1,
            // Our own state is the source of our events: applying one is a no-op.
            Verdict::OwnReturned => self.stats.own_returned += 1,
            Verdict::Apply { forward } => {
                self.stats.applied += 1;
                self.apply(now, &event, &mut out);
                if out.iter().any(|e| matches!(e, PeerEvent::PeerAlive { .. })) {
                    // A new (or returning) peer should hear about us before our next renewal.
                    self.presence.welcome(now);
                }
                if forward {
                    event.hops += 1;
                    self.send(&event, Some(from), true);
                } else {
                    self.stats.hop_limited += 1;
                }
            }
        }
        self.flush(out);
    }

    /// Traffic with `peer` over `addr` succeeded (a message or an ack arrived, a send was
    /// acknowledged): `addr` is reachable for `reachable_for` more.
    pub fn handle_traffic(&mut self, now: Instant, peer: NodeId, addr: SocketAddr) {
        let now = self.clock(now);
        let (reach, mut out) = (self.config.reachable_for, std::mem::take(&mut self.scratch));
        self.table.renew_reach(now, peer, addr, reach, &mut out);
        self.flush(out);
    }

    /// A send to `peer` over `addr` failed: `addr` is unreachable from now (until traffic
    /// succeeds again).
    pub fn handle_send_failed(&mut self, now: Instant, peer: NodeId, addr: SocketAddr) {
        let now = self.clock(now);
        let mut out = std::mem::take(&mut self.scratch);
        self.table.revoke_reach(now, peer, addr, &mut out);
        self.flush(out);
    }

    /// Advances to `now`: reports lapsed leases, forgets old seen ids, sends a due ticktock.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        self.seen.expire(now);
        let mut out = std::mem::take(&mut self.scratch);
        self.table.expire(now, &mut out);
        self.flush(out);
        let reach_any = self
            .neighbours
            .iter()
            .any(|(&p, &a)| self.table.is_reachable(p, a, now));
        if !reach_any {
            // Cut off from everyone: the others stop hearing us, so uptime starts over.
            self.presence.reset_uptime(now);
        }
        if self.presence.is_due(now) {
            let lease = self.presence.on_send(now);
            if !self.neighbours.is_empty() {
                let addresses = self.local.iter().map(|(&a, &s)| (a, s)).collect();
                self.originate(EventBody::Ticktock { lease, addresses });
            }
        }
    }

    // ----- commands -----

    /// Adds an address of ours and floods its `found`. Adding one already held does nothing.
    ///
    /// # Errors
    /// [`AddressError::TooMany`] if `max_local_addresses` are held.
    pub fn add_local_address(
        &mut self,
        now: Instant,
        addr: SocketAddr,
    ) -> Result<(), AddressError> {
        self.clock(now);
        if self.local.contains_key(&addr) {
            return Ok(());
        }
        if self.local.len() >= self.config.max_local_addresses {
            return Err(AddressError::TooMany(self.local.len()));
        }
        let id = self.originate(EventBody::Found(addr));
        self.local.insert(addr, id.stamp.seq);
        Ok(())
    }

    /// Removes an address of ours and floods its `down`.
    ///
    /// # Errors
    /// [`AddressError::Unknown`] if it is not one of ours.
    pub fn remove_local_address(
        &mut self,
        now: Instant,
        addr: SocketAddr,
    ) -> Result<(), AddressError> {
        self.clock(now);
        if self.local.remove(&addr).is_none() {
            return Err(AddressError::Unknown(addr));
        }
        self.originate(EventBody::Down(addr));
        Ok(())
    }

    /// Floods an application event of `kind` to every node (not delivered to ourselves).
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] if the payload exceeds `max_app_payload`.
    pub fn publish(
        &mut self,
        now: Instant,
        kind: u16,
        payload: Bytes,
    ) -> Result<EventId, PublishError> {
        self.clock(now);
        let max = self.config.max_app_payload;
        if payload.len() > max {
            return Err(PublishError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        Ok(self.originate(EventBody::App { kind, payload }))
    }

    // ----- outputs -----

    /// The next event copy to send to a neighbour.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Outgoing> {
        self.transmits.pop_front()
    }

    /// The next change for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// The next application event received.
    #[must_use]
    pub fn poll_app_event(&mut self) -> Option<AppEvent> {
        self.app_events.pop_front()
    }

    /// When `handle_timeout` has work: the next ticktock, or the earliest reported lease to
    /// lapse. Changed by every input and command.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.presence.next_due();
        Some(self.table.next_deadline().map_or(next, |d| d.min(next)))
    }

    // ----- getters -----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The stamp of our latest event (seq 0 before the first).
    pub fn latest_stamp(&self) -> Stamp {
        self.latest
    }

    /// The lease announced by our latest ticktock.
    pub fn lease_in_force(&self) -> Duration {
        self.presence.in_force()
    }

    /// Our addresses.
    pub fn local_addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.local.keys().copied()
    }

    /// Our neighbours and the address each is connected through.
    pub fn neighbours(&self) -> impl Iterator<Item = (NodeId, SocketAddr)> + '_ {
        self.neighbours.iter().map(|(&p, &a)| (p, a))
    }

    /// Every known peer, in id order, as last reported.
    pub fn peers(&self) -> Vec<PeerSnapshot> {
        self.table.snapshots()
    }

    /// One peer, as last reported.
    pub fn peer(&self, id: NodeId) -> Option<PeerSnapshot> {
        self.table.snapshot(id)
    }

    /// Whether `peer`'s lease holds at the latest `now` seen.
    pub fn is_alive(&self, peer: NodeId) -> bool {
        self.table.is_alive(peer, self.now)
    }

    /// Number of peers in the table (at most `max_peers`).
    pub fn peer_count(&self) -> usize {
        self.table.len()
    }

    /// The most addresses any peer holds (at most `max_addresses_per_peer`).
    pub fn max_addresses_held(&self) -> usize {
        self.table.max_addresses_held()
    }

    /// Ids in the seen-cache (at most `max_seen`).
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Copies, peer events and app events waiting to be polled.
    pub fn pending(&self) -> (usize, usize, usize) {
        (
            self.transmits.len(),
            self.events.len(),
            self.app_events.len(),
        )
    }

    /// Counters.
    pub fn stats(&self) -> ReachStats {
        ReachStats {
            table_refused: self.table.refused,
            table_evicted: self.table.evicted,
            seen_evicted: self.seen.evicted(),
            ..self.stats
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- internals -----

    fn clock(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Creates, stamps and floods one of our events.
    fn originate(&mut self, body: EventBody) -> EventId {
        self.latest.seq += 1;
        let id = EventId {
            origin: self.me,
            stamp: self.latest,
        };
        self.stats.originated += 1;
        let event = Event {
            origin: self.me.0,
            stamp: self.latest,
            hops: 0,
            body,
        };
        self.send(&event, None, false);
        id
    }

    /// Queues a copy of `event` for every neighbour but `from` and the origin.
    fn send(&mut self, event: &Event, from: Option<NodeId>, forwarded: bool) {
        let Ok(payload) = wire::to_bytes(event) else {
            // Bounds are checked before: publish and the address limits keep events encodable.
            debug_assert!(false, "unencodable event {event:?}");
            return;
        };
        let neighbours = self.neighbours.iter().map(|(&p, &a)| (p, a));
        for (peer, addr) in flood::targets(neighbours, from, NodeId(event.origin)) {
            if self.transmits.len() >= self.config.max_outgoing {
                self.stats.outgoing_dropped += 1;
                continue;
            }
            self.stats.sent += 1;
            self.stats.forwarded += u64::from(forwarded);
            self.transmits.push_back(Outgoing {
                peer,
                addr,
                payload: payload.clone(),
            });
        }
    }

    /// Applies an event of another node to the table (or the app queue).
    fn apply(&mut self, now: Instant, event: &Event, out: &mut Vec<PeerEvent>) {
        let (origin, stamp) = (NodeId(event.origin), event.stamp);
        match &event.body {
            EventBody::Ticktock { lease, addresses } => {
                let lease = (*lease).min(self.config.max_accepted_lease);
                self.table
                    .apply_presence(now, origin, stamp, lease, addresses, out);
            }
            EventBody::Found(addr) => self
                .table
                .apply_existence(now, origin, stamp, *addr, true, out),
            EventBody::Down(addr) => self
                .table
                .apply_existence(now, origin, stamp, *addr, false, out),
            EventBody::App { kind, payload } => {
                if self.app_events.len() >= self.config.max_pending_events {
                    self.app_events.pop_front();
                    self.stats.events_dropped += 1;
                }
                self.app_events.push_back(AppEvent {
                    id: event_id(event),
                    kind: *kind,
                    payload: payload.clone(),
                });
            }
        }
    }

    /// Moves `out` into the bounded event queue and gives the scratch buffer back.
    fn flush(&mut self, mut out: Vec<PeerEvent>) {
        for e in out.drain(..) {
            if self.events.len() >= self.config.max_pending_events {
                self.events.pop_front();
                self.stats.events_dropped += 1;
            }
            self.events.push_back(e);
        }
        self.scratch = out;
    }
}

/// The identity of a decoded event.
fn event_id(event: &Event) -> EventId {
    EventId {
        origin: NodeId(event.origin),
        stamp: event.stamp,
    }
}
