//! The peer table: per peer a liveness lease, per address existence × reachability.
//!
//! - **Liveness**: `alive_until = receipt + announced lease`, from the peer's newest ticktock.
//! - **Existence**: `last_found` and `last_dismiss`, both stamps of the peer itself (its own
//!   logical time, see [`Stamp`]); the address exists iff `last_found > last_dismiss`. Each only
//!   grows, so found/down applied in any order give the same answer.
//! - **Reachability**: a lease renewed by successful traffic over the address, revoked by a
//!   failed send.
//!
//! Every change of a reported state becomes one [`PeerEvent`]. The table holds at most
//! `max_peers` peers and `max_addresses_per_peer` addresses each: when full it evicts a dead,
//! unreachable peer (or a non-existing, unreachable address), the one heard from longest ago;
//! if there is none the new entry is refused and counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::lease::Lease;
use super::{NodeId, Stamp};

/// A change in what this node knows about a peer, for the application.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerEvent {
    /// The peer dismissed this address (or it was forgotten): it no longer exists.
    AddressDown {
        /// The peer.
        peer: NodeId,
        /// The address.
        addr: SocketAddr,
    },
    /// The peer announced this address: it exists.
    AddressFound {
        /// The peer.
        peer: NodeId,
        /// The address.
        addr: SocketAddr,
    },
    /// Traffic with the peer over this address succeeded.
    AddressReachable {
        /// The peer.
        peer: NodeId,
        /// The address.
        addr: SocketAddr,
        /// Unreachable from this instant unless renewed.
        until: Instant,
    },
    /// The reachability lease lapsed, or a send over this address failed.
    AddressUnreachable {
        /// The peer.
        peer: NodeId,
        /// The address.
        addr: SocketAddr,
    },
    /// A ticktock arrived from a peer not known to be alive.
    PeerAlive {
        /// The peer.
        peer: NodeId,
        /// Dead from this instant unless renewed.
        until: Instant,
    },
    /// The peer's lease lapsed.
    PeerDead {
        /// The peer.
        peer: NodeId,
    },
}

/// One peer as known now (see [`Reachability::peers`](super::Reachability::peers)).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// The peer.
    pub id: NodeId,
    /// Alive, as last reported by a [`PeerEvent`].
    pub alive: bool,
    /// When its lease lapses (or lapsed).
    pub alive_until: Option<Instant>,
    /// The lease its newest ticktock announced.
    pub lease: Option<Duration>,
    /// Its newest incarnation seen.
    pub incarnation: Option<u64>,
    /// Its addresses, in order.
    pub addresses: Vec<AddressSnapshot>,
}

/// One address of a peer: both dimensions with their timestamps.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressSnapshot {
    /// The address.
    pub addr: SocketAddr,
    /// `last_found > last_dismiss`.
    pub exists: bool,
    /// The peer's stamp of its newest `found` for it.
    pub last_found: Option<Stamp>,
    /// The peer's stamp of its newest `down` for it.
    pub last_dismiss: Option<Stamp>,
    /// Reachable, as last reported by a [`PeerEvent`].
    pub reachable: bool,
    /// When traffic over it last succeeded.
    pub last_reachable: Option<Instant>,
    /// When its reachability lease lapses (or lapsed).
    pub promise_reachable: Option<Instant>,
}

#[derive(Debug, Default)]
struct AddressEntry {
    last_found: Option<Stamp>,
    last_dismiss: Option<Stamp>,
    reach: Lease,
    reported_exists: bool,
}

impl AddressEntry {
    fn exists(&self) -> bool {
        self.last_found > self.last_dismiss
    }

    /// Evictable: neither existing nor reachable.
    fn is_idle(&self, now: Instant) -> bool {
        !self.exists() && !self.reach.holds(now)
    }
}

#[derive(Debug, Default)]
struct PeerEntry {
    incarnation: Option<u64>,
    last_presence: Option<Stamp>,
    lease: Option<Duration>,
    alive: Lease,
    addresses: BTreeMap<SocketAddr, AddressEntry>,
}

impl PeerEntry {
    fn is_idle(&self, now: Instant) -> bool {
        !self.alive.holds(now) && self.addresses.values().all(|a| !a.reach.holds(now))
    }

    fn last_heard(&self) -> Option<Instant> {
        let reach = self.addresses.values().filter_map(|a| a.reach.renewed_at);
        reach.chain(self.alive.renewed_at).max()
    }
}

/// All peers, bounded.
#[derive(Debug)]
pub(crate) struct PeerTable {
    peers: BTreeMap<NodeId, PeerEntry>,
    max_peers: usize,
    max_addresses: usize,
    /// Entries refused because a table was full of live ones.
    pub(crate) refused: u64,
    /// Entries evicted to make room.
    pub(crate) evicted: u64,
    /// [`next_deadline`](Self::next_deadline), once computed; forgotten by every change, so
    /// that asking again between changes does not walk the table.
    next: OnceLock<Option<Instant>>,
}

impl PeerTable {
    pub(crate) fn new(max_peers: usize, max_addresses: usize) -> PeerTable {
        PeerTable {
            peers: BTreeMap::new(),
            max_peers,
            max_addresses,
            refused: 0,
            evicted: 0,
            next: OnceLock::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// The most addresses any peer holds.
    pub(crate) fn max_addresses_held(&self) -> usize {
        self.peers
            .values()
            .map(|p| p.addresses.len())
            .max()
            .unwrap_or(0)
    }

    /// Applies a ticktock of `peer` stamped `stamp`, received at `now`.
    pub(crate) fn apply_presence(
        &mut self,
        now: Instant,
        peer: NodeId,
        stamp: Stamp,
        lease: Duration,
        addresses: &[(SocketAddr, u64)],
        out: &mut Vec<PeerEvent>,
    ) {
        self.next.take();
        let (max_addresses, mut refused) = (self.max_addresses, 0);
        let Some(entry) = self.entry(now, peer, out) else {
            return;
        };
        note_incarnation(entry, stamp);
        let newest = !matches!(entry.last_presence, Some(p) if stamp <= p);
        if newest {
            entry.last_presence = Some(stamp);
            entry.lease = Some(lease);
            entry.alive.renew(now, lease);
            if let Some(alive) = entry.alive.take_change(now) {
                out.push(alive_event(peer, alive, entry.alive.until));
            }
            // A ticktock states the origin's whole address set at `stamp`: an address found
            // before it and not listed was dismissed by then.
            for (addr, a) in entry.addresses.iter_mut() {
                if a.last_found < Some(stamp) && !addresses.iter().any(|(l, _)| l == addr) {
                    a.last_dismiss = a.last_dismiss.max(Some(stamp));
                }
            }
        }
        for &(addr, seq) in addresses {
            if seq > stamp.seq {
                continue; // found after the ticktock that lists it: inconsistent, ignored
            }
            let found = Stamp {
                incarnation: stamp.incarnation,
                seq,
            };
            if let Some(a) = address(entry, now, addr, max_addresses, &mut refused, peer, out) {
                a.last_found = a.last_found.max(Some(found));
            }
        }
        sync_exists(peer, entry, out);
        self.refused += refused;
    }

    /// Applies `found` (`exists = true`) or `down` of `addr` by `peer`, stamped `stamp`.
    pub(crate) fn apply_existence(
        &mut self,
        now: Instant,
        peer: NodeId,
        stamp: Stamp,
        addr: SocketAddr,
        found: bool,
        out: &mut Vec<PeerEvent>,
    ) {
        self.next.take();
        let (max_addresses, mut refused) = (self.max_addresses, 0);
        let Some(entry) = self.entry(now, peer, out) else {
            return;
        };
        note_incarnation(entry, stamp);
        if let Some(a) = address(entry, now, addr, max_addresses, &mut refused, peer, out) {
            let field = if found {
                &mut a.last_found
            } else {
                &mut a.last_dismiss
            };
            *field = (*field).max(Some(stamp));
        }
        sync_exists(peer, entry, out);
        self.refused += refused;
    }

    /// Traffic with `peer` over `addr` succeeded at `now`: reachable for `duration`.
    pub(crate) fn renew_reach(
        &mut self,
        now: Instant,
        peer: NodeId,
        addr: SocketAddr,
        duration: Duration,
        out: &mut Vec<PeerEvent>,
    ) {
        self.next.take();
        let (max_addresses, mut refused) = (self.max_addresses, 0);
        let Some(entry) = self.entry(now, peer, out) else {
            return;
        };
        if let Some(a) = address(entry, now, addr, max_addresses, &mut refused, peer, out) {
            a.reach.renew(now, duration);
            push_reach_change(peer, addr, a, now, out);
        }
        self.refused += refused;
    }

    /// A send to `peer` over `addr` failed at `now`: unreachable now.
    pub(crate) fn revoke_reach(
        &mut self,
        now: Instant,
        peer: NodeId,
        addr: SocketAddr,
        out: &mut Vec<PeerEvent>,
    ) {
        self.next.take();
        if let Some(a) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.addresses.get_mut(&addr))
        {
            a.reach.revoke(now);
            push_reach_change(peer, addr, a, now, out);
        }
    }

    /// Reports every lease that lapsed by `now`.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<PeerEvent>) {
        self.next.take();
        for (&peer, entry) in self.peers.iter_mut() {
            if let Some(alive) = entry.alive.take_change(now) {
                out.push(alive_event(peer, alive, entry.alive.until));
            }
            for (&addr, a) in entry.addresses.iter_mut() {
                push_reach_change(peer, addr, a, now, out);
            }
        }
    }

    /// The earliest instant at which a reported lease lapses.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        *self.next.get_or_init(|| {
            self.peers
                .values()
                .flat_map(|p| {
                    let reach = p.addresses.values().filter_map(|a| a.reach.deadline());
                    reach.chain(p.alive.deadline())
                })
                .min()
        })
    }

    /// Whether `peer`'s lease holds at `now`.
    pub(crate) fn is_alive(&self, peer: NodeId, now: Instant) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.alive.holds(now))
    }

    /// Whether `peer` is reachable over `addr` at `now`.
    pub(crate) fn is_reachable(&self, peer: NodeId, addr: SocketAddr, now: Instant) -> bool {
        self.peers
            .get(&peer)
            .and_then(|p| p.addresses.get(&addr))
            .is_some_and(|a| a.reach.holds(now))
    }

    /// Every peer, in id order.
    pub(crate) fn snapshots(&self) -> Vec<PeerSnapshot> {
        self.peers.iter().map(|(&id, p)| snapshot(id, p)).collect()
    }

    /// One peer.
    pub(crate) fn snapshot(&self, id: NodeId) -> Option<PeerSnapshot> {
        self.peers.get(&id).map(|p| snapshot(id, p))
    }

    /// The entry of `peer`, created if there is room (evicting an idle peer if needed).
    fn entry(
        &mut self,
        now: Instant,
        peer: NodeId,
        out: &mut Vec<PeerEvent>,
    ) -> Option<&mut PeerEntry> {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.max_peers {
            let victim = self
                .peers
                .iter()
                .filter(|(_, p)| p.is_idle(now))
                .min_by_key(|(id, p)| (p.last_heard(), **id))
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                self.refused += 1;
                return None;
            };
            if let Some(gone) = self.peers.remove(&victim) {
                self.evicted += 1;
                for (addr, a) in gone.addresses {
                    if a.reported_exists {
                        out.push(PeerEvent::AddressDown { peer: victim, addr });
                    }
                }
            }
        }
        Some(self.peers.entry(peer).or_default())
    }
}

/// The address entry of `addr`, created if there is room (evicting an idle one if needed).
fn address<'a>(
    entry: &'a mut PeerEntry,
    now: Instant,
    addr: SocketAddr,
    max: usize,
    refused: &mut u64,
    peer: NodeId,
    out: &mut Vec<PeerEvent>,
) -> Option<&'a mut AddressEntry> {
    if !entry.addresses.contains_key(&addr) && entry.addresses.len() >= max {
        let victim = entry
            .addresses
            .iter()
            .filter(|(_, a)| a.is_idle(now))
            .min_by_key(|(a, e)| (e.reach.renewed_at, **a))
            .map(|(a, _)| *a);
        let Some(victim) = victim else {
            *refused += 1;
            return None;
        };
        if entry
            .addresses
            .remove(&victim)
            .is_some_and(|a| a.reported_exists)
        {
            out.push(PeerEvent::AddressDown { peer, addr: victim });
        }
    }
    Some(entry.addresses.entry(addr).or_default())
}

/// A newer incarnation restarts the peer: its old lease was the old process's promise.
fn note_incarnation(entry: &mut PeerEntry, stamp: Stamp) {
    if !matches!(entry.incarnation, Some(i) if stamp.incarnation <= i) {
        if entry.incarnation.is_some() {
            entry.alive.clear();
        }
        entry.incarnation = Some(stamp.incarnation);
    }
}

fn sync_exists(peer: NodeId, entry: &mut PeerEntry, out: &mut Vec<PeerEvent>) {
    for (&addr, a) in entry.addresses.iter_mut() {
        let exists = a.exists();
        if exists != a.reported_exists {
            a.reported_exists = exists;
            out.push(if exists {
                PeerEvent::AddressFound { peer, addr }
            } else {
                PeerEvent::AddressDown { peer, addr }
            });
        }
    }
}

fn push_reach_change(
    peer: NodeId,
    addr: SocketAddr,
    a: &mut AddressEntry,
    now: Instant,
    out: &mut Vec<PeerEvent>,
) {
    match (a.reach.take_change(now), a.reach.until) {
        (Some(true), Some(until)) => out.push(PeerEvent::AddressReachable { peer, addr, until }),
        (Some(_), _) => out.push(PeerEvent::AddressUnreachable { peer, addr }),
        (None, _) => {}
    }
}

fn alive_event(peer: NodeId, alive: bool, until: Option<Instant>) -> PeerEvent {
    match (alive, until) {
        (true, Some(until)) => PeerEvent::PeerAlive { peer, until },
        _ => PeerEvent::PeerDead { peer },
    }
}

fn snapshot(id: NodeId, p: &PeerEntry) -> PeerSnapshot {
    PeerSnapshot {
        id,
        alive: p.alive.reported,
        alive_until: p.alive.until,
        lease: p.lease,
        incarnation: p.incarnation,
        addresses: p
            .addresses
            .iter()
            .map(|(&addr, a)| AddressSnapshot {
                addr,
                exists: a.exists(),
                last_found: a.last_found,
                last_dismiss: a.last_dismiss,
                reachable: a.reach.reported,
                last_reachable: a.reach.renewed_at,
                promise_reachable: a.reach.until,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_deadline_follows_every_change() {
        let t0 = crate::reach::test_origin();
        let ms = Duration::from_millis;
        let mut table = PeerTable::new(8, 8);
        let (peer, addr) = (NodeId(2), SocketAddr::from(([127, 0, 0, 1], 1)));
        let mut out = Vec::new();
        assert_eq!(table.next_deadline(), None);
        table.renew_reach(t0, peer, addr, ms(1_000), &mut out);
        assert_eq!(table.next_deadline(), Some(t0 + ms(1_000)));
        // Asked again with no change: the same answer.
        assert_eq!(table.next_deadline(), Some(t0 + ms(1_000)));
        table.renew_reach(t0 + ms(500), peer, addr, ms(1_000), &mut out);
        assert_eq!(table.next_deadline(), Some(t0 + ms(1_500)));
        table.revoke_reach(t0 + ms(600), peer, addr, &mut out);
        assert_eq!(table.next_deadline(), None);
    }
}
