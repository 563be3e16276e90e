//! [`SimNet`]: endpoints, the virtual clock, links and the run loop.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hawser_proto::fault::{FaultConfig, Hook};
use hawser_proto::wire::Codec;
use hawser_proto::{DatagramEndpoint, Transmit};

use crate::endpoint::{SimEndpoint, SimError};
use crate::link::{InFlight, Link, LinkStats, NetStats, TraceEvent, TraceKind};
use crate::seed::{link_seed, SeedGuard};

/// The default one-way latency of every link.
const DEFAULT_LATENCY: Duration = Duration::from_millis(1);

/// After this many steps without simulated time moving, a run stops (and counts a stall).
const MAX_STEPS_PER_INSTANT: u32 = 100_000;

/// A deterministic simulated network of sans-IO endpoints on a virtual clock.
///
/// The clock starts at one `Instant::now()` read in [`new`](Self::new) and is never read again:
/// time moves only when the net steps, so 28 simulated seconds take milliseconds. Links are
/// created on first use with the net-wide defaults ([`set_latency`](Self::set_latency),
/// [`set_faults_all`](Self::set_faults_all)); per-link settings override them until the next
/// `set_faults_all`. Dropping a `SimNet` while its thread panics prints the seed to replay.
pub struct SimNet {
    guard: SeedGuard,
    origin: Instant,
    now: Instant,
    codec: Codec,
    latency: Duration,
    default_faults: FaultConfig,
    endpoints: BTreeMap<SocketAddr, Node>,
    /// Every endpoint's deadline, as last read from `poll_timeout` (which can only change when
    /// the endpoint is called, after which the net reads it again).
    timers: BTreeSet<(Instant, SocketAddr)>,
    links: BTreeMap<(SocketAddr, SocketAddr), Link>,
    isolated: BTreeSet<SocketAddr>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    next_id: u64,
    stats: NetStats,
    trace: VecDeque<TraceEvent>,
    trace_capacity: usize,
    /// Scratch buffers, kept to avoid allocating per datagram.
    transmits: Vec<Transmit>,
    outputs: Vec<(Instant, Bytes)>,
}

impl SimNet {
    /// An empty net seeded with `seed`, its clock at the present instant, using the binary codec
    /// for LSP-aware faults, 1 ms of latency and no faults on every link.
    pub fn new(seed: u64) -> SimNet {
        let origin = Instant::now();
        SimNet {
            guard: SeedGuard::new(seed),
            origin,
            now: origin,
            codec: Codec::default(),
            latency: DEFAULT_LATENCY,
            default_faults: FaultConfig::default(),
            endpoints: BTreeMap::new(),
            timers: BTreeSet::new(),
            links: BTreeMap::new(),
            isolated: BTreeSet::new(),
            in_flight: BinaryHeap::new(),
            next_id: 0,
            stats: NetStats::default(),
            trace: VecDeque::new(),
            trace_capacity: 0,
            transmits: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The seed every link's seed derives from.
    pub fn seed(&self) -> u64 {
        self.guard.seed()
    }

    /// The current simulated instant.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The instant the net started at.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Simulated time since the origin.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    // ----- endpoints -----

    /// Places `endpoint` at `addr`, then drains anything it already wants to send.
    ///
    /// # Errors
    /// [`SimError::AddressInUse`] if an endpoint is already there.
    pub fn add<T: DatagramEndpoint + 'static>(
        &mut self,
        addr: SocketAddr,
        endpoint: T,
    ) -> Result<(), SimError> {
        if self.endpoints.contains_key(&addr) {
            return Err(SimError::AddressInUse(addr));
        }
        let node = Node {
            ep: Box::new(endpoint),
            deadline: None,
        };
        self.endpoints.insert(addr, node);
        self.drain(addr);
        Ok(())
    }

    /// Takes the endpoint at `addr` out of the net (datagrams to it vanish from now on).
    ///
    /// # Errors
    /// [`SimError::NoEndpoint`], or [`SimError::WrongType`] (the endpoint stays).
    pub fn remove<T: DatagramEndpoint + 'static>(
        &mut self,
        addr: SocketAddr,
    ) -> Result<T, SimError> {
        let actual = self.endpoint_any(addr)?.type_name();
        if !self.endpoint_any(addr)?.as_any().is::<T>() {
            return Err(wrong_type::<T>(addr, actual));
        }
        let node = self
            .endpoints
            .remove(&addr)
            .ok_or(SimError::NoEndpoint(addr))?;
        if let Some(deadline) = node.deadline {
            self.timers.remove(&(deadline, addr));
        }
        node.ep
            .into_any()
            .downcast::<T>()
            .map(|b| *b)
            .map_err(|_| wrong_type::<T>(addr, actual))
    }

    /// The addresses of all endpoints, in order.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints.keys().copied()
    }

    /// A shared look at the endpoint at `addr` as its concrete type.
    ///
    /// # Errors
    /// [`SimError::NoEndpoint`] or [`SimError::WrongType`].
    pub fn endpoint<T: 'static>(&self, addr: SocketAddr) -> Result<&T, SimError> {
        let ep = self.endpoint_any(addr)?;
        ep.as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| wrong_type::<T>(addr, ep.type_name()))
    }

    /// Runs `f` on the endpoint at `addr` as its concrete type, with the current instant, then
    /// drains its transmits onto the network (the run-loop contract).
    ///
    /// # Errors
    /// [`SimError::NoEndpoint`] or [`SimError::WrongType`]; `f` did not run.
    pub fn with<T: 'static, R>(
        &mut self,
        addr: SocketAddr,
        f: impl FnOnce(&mut T, Instant) -> R,
    ) -> Result<R, SimError> {
        let now = self.now;
        let ep = &mut self
            .endpoints
            .get_mut(&addr)
            .ok_or(SimError::NoEndpoint(addr))?
            .ep;
        let actual = ep.type_name();
        let typed = ep
            .as_any_mut()
            .downcast_mut::<T>()
            .ok_or_else(|| wrong_type::<T>(addr, actual))?;
        let result = f(typed, now);
        self.drain(addr);
        Ok(result)
    }

    /// Runs `f` on every endpoint of type `T`, in address order, draining each afterwards.
    pub fn for_each<T: 'static>(&mut self, mut f: impl FnMut(SocketAddr, &mut T, Instant)) {
        let addrs: Vec<SocketAddr> = self.endpoints.keys().copied().collect();
        for addr in addrs {
            // Endpoints of another type are skipped, by design.
            let _ = self.with(addr, |ep: &mut T, now| f(addr, ep, now));
        }
    }

    /// Sends `datagram` from `from` to `to` as if an endpoint at `from` had (there need not be
    /// one): it goes through the link's faults and latency like any other.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, datagram: Bytes) {
        self.send(from, to, datagram);
    }

    // ----- links -----

    /// Sets the default one-way latency (for links without one of their own).
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    /// Sets the one-way latency of the link `from -> to` only.
    pub fn set_link_latency(&mut self, from: SocketAddr, to: SocketAddr, latency: Duration) {
        self.link(from, to).latency = Some(latency);
    }

    /// Sets the codec links decode with for payload damage, on every link now and later.
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
        for link in self.links.values_mut() {
            link.faults.set_codec(codec);
        }
    }

    /// Sets the faults of the link `from -> to`, from the next datagram on.
    pub fn set_faults(&mut self, from: SocketAddr, to: SocketAddr, config: FaultConfig) {
        self.link(from, to).faults.set_config(config);
    }

    /// Sets the faults of both directions between `a` and `b`.
    pub fn set_faults_both(&mut self, a: SocketAddr, b: SocketAddr, config: FaultConfig) {
        self.set_faults(a, b, config.clone());
        self.set_faults(b, a, config);
    }

    /// Sets the faults of every link, including links not used yet (replacing per-link ones).
    pub fn set_faults_all(&mut self, config: FaultConfig) {
        for link in self.links.values_mut() {
            link.faults.set_config(config.clone());
        }
        self.default_faults = config;
    }

    /// Installs (or removes, with `None`) the hook of the link `from -> to`.
    pub fn set_hook(&mut self, from: SocketAddr, to: SocketAddr, hook: Option<Hook>) {
        self.link(from, to).faults.set_hook(hook);
    }

    /// Cuts both directions between `a` and `b`: datagrams sent while cut are lost.
    pub fn partition(&mut self, a: SocketAddr, b: SocketAddr) {
        self.link(a, b).partitioned = true;
        self.link(b, a).partitioned = true;
    }

    /// Undoes [`partition`](Self::partition) between `a` and `b`.
    pub fn heal(&mut self, a: SocketAddr, b: SocketAddr) {
        self.link(a, b).partitioned = false;
        self.link(b, a).partitioned = false;
    }

    /// Cuts every link to and from `addr`, including links not used yet.
    pub fn isolate(&mut self, addr: SocketAddr) {
        self.isolated.insert(addr);
    }

    /// Undoes [`isolate`](Self::isolate).
    pub fn rejoin(&mut self, addr: SocketAddr) {
        self.isolated.remove(&addr);
    }

    /// Undoes every partition and isolation.
    pub fn heal_all(&mut self) {
        self.isolated.clear();
        for link in self.links.values_mut() {
            link.partitioned = false;
        }
    }

    /// The counters of the link `from -> to` (all zero if it was never used).
    pub fn link_stats(&self, from: SocketAddr, to: SocketAddr) -> LinkStats {
        self.links
            .get(&(from, to))
            .map(Link::stats)
            .unwrap_or_default()
    }

    /// The net-wide counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Datagrams (copies) on their way.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Keeps the last `capacity` datagram events in a trace (0, the default, keeps none).
    pub fn record_trace(&mut self, capacity: usize) {
        self.trace_capacity = capacity;
        while self.trace.len() > capacity {
            self.trace.pop_front();
        }
    }

    /// The recorded trace, oldest first.
    pub fn trace(&self) -> impl ExactSizeIterator<Item = &TraceEvent> + '_ {
        self.trace.iter()
    }

    /// Takes the recorded trace, leaving it empty.
    pub fn take_trace(&mut self) -> Vec<TraceEvent> {
        self.trace.drain(..).collect()
    }

    // ----- running -----

    /// The instant of the next event (arrival or endpoint deadline), if any.
    pub fn next_event(&self) -> Option<Instant> {
        let arrival = self.in_flight.peek().map(|Reverse(f)| f.at);
        let deadline = self.timers.first().map(|(at, _)| *at);
        match (arrival, deadline) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }

    /// Advances to the next event and handles everything due then. Returns false, without
    /// moving the clock, if nothing is scheduled.
    pub fn step(&mut self) -> bool {
        match self.next_event() {
            Some(at) => {
                self.step_to(at);
                true
            }
            None => false,
        }
    }

    /// Runs for `duration` of simulated time; the clock ends exactly `duration` later.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now + duration);
    }

    /// Handles every event up to and including `deadline`; the clock ends at `deadline` (or
    /// stays, if it is already past it).
    pub fn run_until(&mut self, deadline: Instant) {
        self.run_while(deadline, |_| false);
        self.now = self.now.max(deadline);
    }

    /// Steps until `done(self)` holds, checked first and after every step, for at most `max` of
    /// simulated time. Returns whether it held; on false the clock ends `max` later.
    pub fn run_until_cond(
        &mut self,
        max: Duration,
        mut done: impl FnMut(&mut SimNet) -> bool,
    ) -> bool {
        let deadline = self.now + max;
        if done(self) || self.run_while(deadline, &mut done) {
            return true;
        }
        self.now = self.now.max(deadline);
        done(self)
    }

    /// Steps through events up to `deadline` until `done` holds; true if it did.
    fn run_while(&mut self, deadline: Instant, mut done: impl FnMut(&mut SimNet) -> bool) -> bool {
        let mut last = self.now;
        let mut same = 0u32;
        while let Some(at) = self.next_event() {
            if at > deadline {
                break;
            }
            self.step_to(at);
            if done(self) {
                return true;
            }
            if self.now > last {
                (last, same) = (self.now, 0);
            } else {
                same += 1;
                if same >= MAX_STEPS_PER_INSTANT {
                    self.stats.stalls += 1;
                    tracing::error!(seed = self.seed(), at = ?self.elapsed(), "simulation stalled");
                    break;
                }
            }
        }
        false
    }

    /// Moves the clock to `at` (never backwards) and handles what is due: first the datagrams
    /// sent before this step, in (arrival, send order), then deadlines, in (deadline, address) order.
    fn step_to(&mut self, at: Instant) {
        self.now = self.now.max(at);
        let now = self.now;
        let horizon = self.next_id;
        while self
            .in_flight
            .peek()
            .is_some_and(|Reverse(f)| f.at <= now && f.id < horizon)
        {
            if let Some(Reverse(flight)) = self.in_flight.pop() {
                self.deliver(flight);
            }
        }
        let due: Vec<SocketAddr> = self
            .timers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, addr)| *addr)
            .collect();
        for addr in due {
            if let Some(node) = self.endpoints.get_mut(&addr) {
                node.ep.handle_timeout(now);
            }
            self.drain(addr);
        }
    }

    // ----- internals -----

    fn endpoint_any(&self, addr: SocketAddr) -> Result<&dyn SimEndpoint, SimError> {
        self.endpoints
            .get(&addr)
            .map(|node| node.ep.as_ref())
            .ok_or(SimError::NoEndpoint(addr))
    }

    /// The link `from -> to`, created with the net's defaults on first use.
    fn link(&mut self, from: SocketAddr, to: SocketAddr) -> &mut Link {
        let (seed, codec, faults) = (self.guard.seed(), self.codec, &self.default_faults);
        self.links
            .entry((from, to))
            .or_insert_with(|| Link::new(faults.clone(), codec, link_seed(seed, from, to)))
    }

    /// Puts everything the endpoint at `addr` wants to send onto the links, then re-reads its
    /// deadline. Called after every call into an endpoint.
    fn drain(&mut self, addr: SocketAddr) {
        let mut transmits = std::mem::take(&mut self.transmits);
        if let Some(node) = self.endpoints.get_mut(&addr) {
            while let Some(t) = node.ep.poll_transmit() {
                transmits.push(t);
            }
            let deadline = node.ep.poll_timeout();
            if deadline != node.deadline {
                if let Some(old) = node.deadline {
                    self.timers.remove(&(old, addr));
                }
                if let Some(new) = deadline {
                    self.timers.insert((new, addr));
                }
                node.deadline = deadline;
            }
        }
        for t in transmits.drain(..) {
            self.send(addr, t.destination, t.contents);
        }
        self.transmits = transmits;
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, bytes: Bytes) {
        let now = self.now;
        self.stats.sent += 1;
        self.record(TraceKind::Sent, from, to, &bytes);
        let cut = self.isolated.contains(&from) || self.isolated.contains(&to);
        let default_latency = self.latency;
        let mut outputs = std::mem::take(&mut self.outputs);
        let link = self.link(from, to);
        link.stats.sent += 1;
        let latency = link.latency.unwrap_or(default_latency);
        if !(cut || link.partitioned) {
            link.faults.process(now, bytes.clone(), &mut outputs);
        }
        if outputs.is_empty() {
            link.stats.dropped += 1;
            self.stats.dropped += 1;
            self.record(TraceKind::Dropped, from, to, &bytes);
        }
        for (at, bytes) in outputs.drain(..) {
            let id = self.next_id;
            self.next_id += 1;
            self.in_flight.push(Reverse(InFlight {
                at: at + latency,
                id,
                from,
                to,
                bytes,
            }));
        }
        self.outputs = outputs;
    }

    fn deliver(&mut self, flight: InFlight) {
        let InFlight {
            from, to, bytes, ..
        } = flight;
        let now = self.now;
        let delivered = match self.endpoints.get_mut(&to) {
            Some(node) => {
                node.ep.handle_datagram(now, from, &bytes);
                true
            }
            None => false,
        };
        let link = self.links.get_mut(&(from, to));
        if delivered {
            self.stats.delivered += 1;
            if let Some(link) = link {
                link.stats.delivered += 1;
            }
            self.record(TraceKind::Delivered, from, to, &bytes);
            self.drain(to);
        } else {
            self.stats.vanished += 1;
            if let Some(link) = link {
                link.stats.vanished += 1;
            }
            self.record(TraceKind::Vanished, from, to, &bytes);
        }
    }

    fn record(&mut self, kind: TraceKind, from: SocketAddr, to: SocketAddr, bytes: &Bytes) {
        tracing::trace!(at = ?self.elapsed(), ?kind, %from, %to, len = bytes.len(), "datagram");
        if self.trace_capacity == 0 {
            return;
        }
        if self.trace.len() >= self.trace_capacity {
            self.trace.pop_front();
        }
        self.trace.push_back(TraceEvent {
            at: self.elapsed(),
            kind,
            from,
            to,
            bytes: bytes.clone(),
        });
    }
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNet")
            .field("seed", &self.seed())
            .field("elapsed", &self.elapsed())
            .field("endpoints", &self.endpoints.len())
            .field("links", &self.links.len())
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// An endpoint and its deadline as last read.
struct Node {
    ep: Box<dyn SimEndpoint>,
    deadline: Option<Instant>,
}

fn wrong_type<T>(addr: SocketAddr, actual: &'static str) -> SimError {
    SimError::WrongType {
        addr,
        expected: std::any::type_name::<T>(),
        actual,
    }
}
