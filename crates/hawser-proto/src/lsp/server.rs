//! The server side: accepts Connects, owns every connection, routes datagrams by source address.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tracing::{debug, trace};

use super::connection::{ConnState, Connection};
use super::error::{EndReason, WriteError};
use super::packer;
use super::params::{Config, ParamsError};
use super::stats::{ConnStats, EndpointStats};
use crate::transmit::{DatagramEndpoint, Transmit};
use crate::wire::{ConnId, Message, MsgType, SeqNum};

/// Most lifecycle events kept for [`ServerEndpoint::poll_event`]; older ones are dropped.
pub const MAX_EVENTS: usize = 1024;

/// What a server's reader gets next, in order: a connection's data always comes before the
/// report of its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerRead {
    /// One message from a connection.
    Data(ConnId, Bytes),
    /// The connection ended (closed by `close_conn` after flushing, or lost); nothing of it is
    /// left to read.
    Ended(ConnId, EndReason),
}

/// Lifecycle notifications, for observers (the reader does not need them).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// A new client connected from `addr`.
    Accepted(ConnId, SocketAddr),
    /// A connection ended.
    Ended(ConnId, EndReason),
}

struct Peer {
    conn: Connection,
    addr: SocketAddr,
    isn: SeqNum,
    /// How many of the connection's delivered messages have a read ticket.
    ticketed: u64,
    /// The deadline this connection has in the endpoint's timer set: its own next deadline or
    /// an earlier one (see `flush_conn`).
    scheduled: Option<Instant>,
    /// Whether it is in the endpoint's queue of connections with messages to pack.
    dirty: bool,
}

/// Ticket in the read queue: which connection has the next readable item.
#[derive(Clone, Copy, Debug)]
enum Ticket {
    Data(ConnId),
    Ended(ConnId, EndReason),
}

/// The sans-IO LSP server: one per listening socket.
///
/// Feed it datagrams and timeouts ([`DatagramEndpoint`]); it answers with datagrams to send.
/// The application reads with [`read`](Self::read) and writes with [`write`](Self::write).
pub struct ServerEndpoint {
    config: Config,
    peers: BTreeMap<ConnId, Peer>,
    by_addr: HashMap<SocketAddr, ConnId>,
    next_id: u64,
    tickets: VecDeque<Ticket>,
    events: VecDeque<ServerEvent>,
    transmits: VecDeque<Transmit>,
    /// Where datagrams are encoded and cut from (`packer::pack`).
    datagram_buf: BytesMut,
    closing: bool,
    lost_while_closing: bool,
    last_now: Option<Instant>,
    stats: EndpointStats,
    ended_stats: ConnStats,
    decoded: Vec<Message>,
    scratch: Vec<Message>,
    /// Every live connection's next deadline, or an earlier one, ordered: the earliest is the
    /// endpoint's.
    timers: BTreeSet<(Instant, ConnId)>,
    /// Connections that may have messages to send, in the order they changed.
    dirty: VecDeque<ConnId>,
}

impl ServerEndpoint {
    /// A server with this configuration.
    ///
    /// # Errors
    /// [`ParamsError`] if a setting is invalid.
    pub fn new(config: Config) -> Result<ServerEndpoint, ParamsError> {
        config.validate()?;
        Ok(ServerEndpoint {
            config,
            peers: BTreeMap::new(),
            by_addr: HashMap::new(),
            next_id: 1,
            tickets: VecDeque::new(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            datagram_buf: BytesMut::new(),
            closing: false,
            lost_while_closing: false,
            last_now: None,
            stats: EndpointStats::default(),
            ended_stats: ConnStats::default(),
            decoded: Vec::new(),
            scratch: Vec::new(),
            timers: BTreeSet::new(),
            dirty: VecDeque::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Queues `payload` on connection `conn` at `now`; sent at once if its window allows.
    ///
    /// # Errors
    /// [`WriteError`]: unknown, closed or lost connection, full queue, payload too large.
    pub fn write(&mut self, now: Instant, conn: ConnId, payload: Bytes) -> Result<(), WriteError> {
        self.write_with_clock(|| now, conn, payload)
    }

    /// Like [`write`](Self::write), reading `clock` only if the message needs the time: one
    /// that joins the bundle being gathered does not (the bundle is timed when it is sent),
    /// which spares a streaming writer a clock reading per message.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub fn write_with_clock(
        &mut self,
        clock: impl FnOnce() -> Instant,
        conn: ConnId,
        payload: Bytes,
    ) -> Result<(), WriteError> {
        let last = self.last_now;
        let mut read = None;
        let result = self.with_connection(conn, |c| {
            c.write(payload, || {
                let now = clock();
                let now = last.map_or(now, |last| now.max(last));
                read = Some(now);
                now
            })
        });
        if read.is_some() {
            self.last_now = read;
        }
        result
    }

    /// Writes the messages at the front of `batch` on `conn`, in order, removing each it
    /// queues; stops at the first it cannot queue (which stays in `batch`). Returns how many
    /// it queued.
    ///
    /// # Errors
    /// As [`write`](Self::write), when not even the first message could be queued.
    pub fn write_batch(
        &mut self,
        now: Instant,
        conn: ConnId,
        batch: &mut VecDeque<Bytes>,
    ) -> Result<usize, WriteError> {
        let now = self.clamp(now);
        self.with_connection(conn, |c| c.write_batch(batch, now))
    }

    /// Runs a write on connection `conn`, if it exists and the server is not closing, then
    /// flushes it.
    fn with_connection<R>(
        &mut self,
        conn: ConnId,
        write: impl FnOnce(&mut Connection) -> Result<R, WriteError>,
    ) -> Result<R, WriteError> {
        if self.closing {
            return Err(WriteError::Closed);
        }
        let peer = self
            .peers
            .get_mut(&conn)
            .ok_or(WriteError::UnknownConn(conn))?;
        let result = write(&mut peer.conn)?;
        self.flush_conn(conn);
        Ok(result)
    }

    /// Messages written on `conn` and not yet acknowledged by its client (0 if unknown).
    pub fn pending(&self, conn: ConnId) -> usize {
        self.peers.get(&conn).map_or(0, |p| p.conn.pending())
    }

    /// How many more messages connection `conn` accepts before `write` fails with
    /// [`WriteError::QueueFull`] (0 for an unknown or ended connection).
    pub fn send_capacity(&self, conn: ConnId) -> usize {
        self.peers.get(&conn).map_or(0, |p| p.conn.send_capacity())
    }

    /// The next item for the application, if any.
    pub fn read(&mut self) -> Option<ServerRead> {
        let ticket = *self.tickets.front()?;
        match ticket {
            Ticket::Data(id) => {
                let mut payload = None;
                let unit = self
                    .peers
                    .get_mut(&id)
                    .and_then(|p| p.conn.read_front(1, |m| payload = Some(m)))
                    .and_then(|(_, last)| payload.map(|p| (p, last)));
                // Invariant: a Data ticket is pushed once per delivered Data message, and a
                // peer is removed only when its Ended ticket is read, after all its Data
                // tickets. A bundle's ticket stays until its last message is read.
                debug_assert!(unit.is_some(), "data ticket without data");
                if unit.as_ref().is_none_or(|(_, last)| *last) {
                    self.tickets.pop_front();
                }
                unit.map(|(p, _)| ServerRead::Data(id, p))
            }
            Ticket::Ended(id, reason) => {
                self.tickets.pop_front();
                if let Some(peer) = self.peers.remove(&id) {
                    self.ended_stats.accumulate(peer.conn.stats());
                    if let Some(at) = peer.scheduled {
                        self.timers.remove(&(at, id));
                    }
                }
                Some(ServerRead::Ended(id, reason))
            }
        }
    }

    /// Appends to `out` up to `max` messages that are ready, in order, until the next item is
    /// a connection's end (which stays for [`read`](Self::read)); returns how many. Looks each
    /// connection up once per run of its messages: the fast way to drain many small messages.
    pub fn read_data_batch(&mut self, out: &mut Vec<(ConnId, Bytes)>, max: usize) -> usize {
        let start = out.len();
        while out.len() - start < max {
            let Some(&Ticket::Data(id)) = self.tickets.front() else {
                break;
            };
            let Some(peer) = self.peers.get_mut(&id) else {
                // Invariant (see `read`): never reached; drop the orphan ticket.
                debug_assert!(false, "data ticket without a connection");
                self.tickets.pop_front();
                continue;
            };
            // This connection's messages, a Data message at a time, while its tickets lead.
            while out.len() - start < max {
                let room = max - (out.len() - start);
                let Some((_, whole)) = peer.conn.read_front(room, |p| out.push((id, p))) else {
                    debug_assert!(false, "data ticket without data");
                    self.tickets.pop_front();
                    break;
                };
                if whole {
                    self.tickets.pop_front();
                    if !matches!(self.tickets.front(), Some(Ticket::Data(next)) if *next == id) {
                        break;
                    }
                }
            }
        }
        out.len() - start
    }

    /// The next lifecycle event, if any. At most [`MAX_EVENTS`] are kept; when the
    /// application does not poll them, the oldest are dropped.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Closes one connection gracefully: flushes its pending messages, then goes silent to it.
    /// Its end is reported to the reader as [`EndReason::Closed`].
    ///
    /// # Errors
    /// [`WriteError::UnknownConn`] if there is no such live connection.
    pub fn close_conn(&mut self, conn: ConnId) -> Result<(), WriteError> {
        let peer = self
            .peers
            .get_mut(&conn)
            .ok_or(WriteError::UnknownConn(conn))?;
        match peer.conn.state() {
            ConnState::Open => {
                peer.conn.close();
                self.flush_conn(conn);
                Ok(())
            }
            ConnState::Closing => Ok(()),
            ConnState::Ended(EndReason::Lost) => Err(WriteError::Lost),
            ConnState::Ended(EndReason::Closed) => Err(WriteError::Closed),
        }
    }

    /// Starts closing every connection; new Connects are refused and writes fail from now on.
    /// Watch [`is_closed`](Self::is_closed).
    pub fn close(&mut self) {
        if self.closing {
            return;
        }
        self.closing = true;
        let ids: Vec<ConnId> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.conn.close();
            }
            self.flush_conn(id);
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether [`poll_transmit`](DatagramEndpoint::poll_transmit) may have something to give
    /// (a connection has messages to pack, or datagrams are packed).
    pub fn has_transmit(&self) -> bool {
        !self.transmits.is_empty() || !self.dirty.is_empty()
    }

    /// After [`close`](Self::close): whether every connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closing
            && self
                .peers
                .values()
                .all(|p| matches!(p.conn.state(), ConnState::Ended(_)))
    }

    /// After [`close`](Self::close): whether some connection was lost before it was flushed.
    pub fn lost_while_closing(&self) -> bool {
        self.lost_while_closing
    }

    /// Connections that are open or closing.
    pub fn live_connections(&self) -> usize {
        self.by_addr.len()
    }

    /// One connection's counters and state, if it exists.
    pub fn connection(&self, conn: ConnId) -> Option<&Connection> {
        self.peers.get(&conn).map(|p| &p.conn)
    }

    /// The address a connection's client sends from.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.peers.get(&conn).map(|p| p.addr)
    }

    /// Endpoint counters, with the sum over all connections (live and ended).
    pub fn stats(&self) -> EndpointStats {
        let mut stats = self.stats;
        stats.conns = self.ended_stats;
        for peer in self.peers.values() {
            stats.conns.accumulate(peer.conn.stats());
        }
        stats
    }

    fn push_event(&mut self, event: ServerEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |last| last.max(now));
        self.last_now = Some(now);
        now
    }

    fn on_connect(&mut self, now: Instant, from: SocketAddr, isn: SeqNum) {
        if let Some(&id) = self.by_addr.get(&from) {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            if peer.isn == isn {
                // Spec 3.1: never a second connection; re-acknowledge so a lost Ack heals.
                self.stats.duplicate_connects += 1;
                peer.conn.handle_message(Message::connect(isn), now);
                self.send(from, Message::ack(id, isn));
                return;
            }
            // Another ISN from the same address. If the connection is alive (heard within the
            // last epoch), this is a stale or forged Connect: ignore it, never a second
            // connection. If it has been silent for an epoch, the client restarted: its old
            // connection is gone for good; report it lost (after its buffered data) and accept
            // the new one. (A restarted client retries its Connect every epoch, so it gets in.)
            if now < peer.conn.last_heard() + self.config.params.epoch {
                self.stats.duplicate_connects += 1;
                return;
            }
            debug!(conn = %id, %from, "client restarted with a new ISN: old connection lost");
            peer.conn.mark_lost();
            self.flush_conn(id);
        }
        // Ended connections whose end the application has not read yet still hold memory: they
        // count too, so a server whose application stops reading stops accepting.
        if self.closing || self.peers.len() >= self.config.max_connections {
            self.stats.refused_connects += 1;
            debug!(%from, "connect refused");
            return;
        }
        let id = ConnId(self.next_id);
        self.next_id += 1;
        let conn = Connection::new(id, isn.plus(1), &self.config, now);
        self.peers.insert(
            id,
            Peer {
                conn,
                addr: from,
                isn,
                ticketed: 0,
                scheduled: None,
                dirty: false,
            },
        );
        self.by_addr.insert(from, id);
        self.stats.connections_opened += 1;
        self.push_event(ServerEvent::Accepted(id, from));
        debug!(conn = %id, %from, isn = isn.0, "accepted");
        self.send(from, Message::ack(id, isn));
        self.flush_conn(id);
    }

    /// Routes one message from `from` to its connection (`conn`: the one `from` has, if any);
    /// returns the connection to flush afterwards.
    fn on_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        conn: Option<ConnId>,
        msg: Message,
    ) -> Option<ConnId> {
        let Some(id) = conn else {
            self.stats.unknown_conn += 1;
            trace!(%from, "message from unknown address");
            return None;
        };
        if msg.conn != id {
            self.stats.unknown_conn += 1;
            return None;
        }
        let peer = self.peers.get_mut(&id)?;
        peer.conn.handle_message(msg, now);
        Some(id)
    }

    fn send(&mut self, to: SocketAddr, msg: Message) {
        let mut msgs = vec![msg];
        self.stats.datagrams_sent += packer::pack(
            self.config.codec,
            self.config.max_datagram,
            to,
            &mut msgs,
            &mut self.transmits,
            &mut self.datagram_buf,
        );
    }

    /// After any change to a connection: marks it for transmission (its messages are packed
    /// into datagrams lazily, in `poll_transmit`, so that everything written before the driver
    /// polls shares datagrams), moves its newly delivered messages to the read queue, re-files
    /// its deadline, and reports its end.
    fn flush_conn(&mut self, id: ConnId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let addr = peer.addr;
        if !peer.dirty {
            peer.dirty = true;
            self.dirty.push_back(id);
        }
        let delivered = peer.conn.delivered();
        for _ in peer.ticketed..delivered {
            self.tickets.push_back(Ticket::Data(id));
        }
        peer.ticketed = delivered;
        let state = peer.conn.state();
        let deadline = peer.conn.poll_timeout();
        // Re-filed only when the deadline moved earlier. One that moved later (or went away)
        // stays filed where it was: it then fires early, `handle_timeout` finds nothing due
        // (a connection acts on its own deadlines only) and files the true one. A connection's
        // deadline moves at nearly every message (a send arms the retransmission timer, an
        // acknowledgement disarms it), mostly later, and this spares the ordered set two
        // updates per datagram.
        if let Some(new) = deadline.filter(|&new| peer.scheduled.is_none_or(|old| new < old)) {
            if let Some(old) = peer.scheduled {
                self.timers.remove(&(old, id));
            }
            self.timers.insert((new, id));
            peer.scheduled = Some(new);
        }
        if let ConnState::Ended(reason) = state {
            if self.by_addr.get(&addr) == Some(&id) {
                self.by_addr.remove(&addr);
                if reason == EndReason::Lost {
                    self.stats.connections_lost += 1;
                    if self.closing {
                        self.lost_while_closing = true;
                    }
                }
                self.tickets.push_back(Ticket::Ended(id, reason));
                self.push_event(ServerEvent::Ended(id, reason));
            }
        }
    }
}

impl DatagramEndpoint for ServerEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let now = self.clamp(now);
        self.stats.datagrams_received += 1;
        let mut decoded = std::mem::take(&mut self.decoded);
        decoded.clear();
        if let Err(err) = self.config.codec.decode(datagram, &mut decoded) {
            self.stats.malformed += 1;
            trace!(%from, %err, "malformed datagram dropped");
        }
        let mut touched = None;
        // The connection of `from`, looked up once per datagram (again after a Connect).
        let mut conn: Option<Option<ConnId>> = None;
        for msg in decoded.drain(..) {
            if msg.kind == MsgType::Connect {
                self.on_connect(now, from, msg.seq);
                conn = None;
                continue;
            }
            let id = *conn.get_or_insert_with(|| self.by_addr.get(&from).copied());
            if let Some(id) = self.on_message(now, from, id, msg) {
                if let Some(previous) = touched.replace(id) {
                    if previous != id {
                        self.flush_conn(previous);
                    }
                }
            }
        }
        self.decoded = decoded;
        if let Some(id) = touched {
            self.flush_conn(id);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.stats.timeouts_handled += 1;
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(peer) = self.peers.get_mut(&id) {
                peer.scheduled = None;
                peer.conn.handle_timeout(now);
            }
            self.flush_conn(id);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        while self.transmits.is_empty() {
            let id = self.dirty.pop_front()?;
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.dirty = false;
            let mut out = std::mem::take(&mut self.scratch);
            peer.conn.drain_messages(&mut out);
            self.stats.datagrams_sent += packer::pack(
                self.config.codec,
                self.config.max_datagram,
                peer.addr,
                &mut out,
                &mut self.transmits,
                &mut self.datagram_buf,
            );
            self.scratch = out;
        }
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;

    use super::*;
    use crate::lsp::Params;

    fn t0() -> Instant {
        #[allow(clippy::disallowed_methods)] // tests need one arbitrary origin
        Instant::now()
    }

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7000))
    }

    fn connect(server: &mut ServerEndpoint, now: Instant, from: SocketAddr, isn: u64) {
        let mut buf = BytesMut::new();
        server
            .config
            .codec
            .encode(&Message::connect(SeqNum(isn)), &mut buf);
        server.handle_datagram(now, from, &buf);
        while server.poll_transmit().is_some() {}
    }

    #[test]
    fn lifecycle_events_are_capped_when_nobody_polls_them() {
        let config = Config {
            max_connections: 5_000,
            ..Config::default()
        };
        let mut server = ServerEndpoint::new(config).unwrap();
        let now = t0();
        for i in 0..MAX_EVENTS as u32 + 100 {
            connect(&mut server, now, addr(i), 1);
        }
        assert_eq!(server.live_connections(), MAX_EVENTS + 100);
        let events = std::iter::from_fn(|| server.poll_event()).count();
        assert_eq!(events, MAX_EVENTS, "the oldest events were dropped");
    }

    #[test]
    fn ended_connections_count_until_their_end_is_read() {
        let config = Config {
            max_connections: 2,
            ..Config::new(Params {
                epoch: Duration::from_millis(100),
                ..Params::reference()
            })
        };
        let mut server = ServerEndpoint::new(config).unwrap();
        let mut now = t0();
        connect(&mut server, now, addr(1), 1);
        connect(&mut server, now, addr(2), 2);
        // Both clients go silent: after K silent epochs both connections are lost.
        for _ in 0..10 {
            now += Duration::from_millis(100);
            server.handle_timeout(now);
            while server.poll_transmit().is_some() {}
        }
        assert_eq!(server.live_connections(), 0);
        // Their ends are not read yet: they still hold memory, so a third client is refused.
        connect(&mut server, now, addr(3), 3);
        assert_eq!(server.stats().refused_connects, 1);
        assert!(matches!(
            server.read(),
            Some(ServerRead::Ended(_, EndReason::Lost))
        ));
        assert!(matches!(
            server.read(),
            Some(ServerRead::Ended(_, EndReason::Lost))
        ));
        connect(&mut server, now, addr(3), 3);
        assert_eq!(server.live_connections(), 1);
        assert_eq!(server.stats().refused_connects, 1);
    }

    /// Moves every datagram `from` has to send into `to`.
    fn deliver(
        from: &mut impl DatagramEndpoint,
        from_addr: SocketAddr,
        to: &mut impl DatagramEndpoint,
        now: Instant,
    ) -> usize {
        let mut n = 0;
        while let Some(t) = from.poll_transmit() {
            to.handle_datagram(now, from_addr, &t.contents);
            n += 1;
        }
        n
    }

    #[test]
    fn an_ack_due_when_a_close_completes_still_goes_out() {
        use crate::lsp::{ClientEndpoint, ClientRead};
        let server_addr = addr(1);
        let client_addr = addr(2);
        let now = t0();
        let mut server = ServerEndpoint::new(Config::default()).unwrap();
        let mut client =
            ClientEndpoint::new(Config::default(), server_addr, SeqNum(0), now).unwrap();
        deliver(&mut client, client_addr, &mut server, now);
        deliver(&mut server, server_addr, &mut client, now);
        let conn = client.conn_id().unwrap();
        server.write(now, conn, Bytes::from_static(b"hi")).unwrap();
        deliver(&mut server, server_addr, &mut client, now);
        // The client received the data; before its acknowledgement is drained, it closes (it
        // has nothing of its own pending, so the close completes at once).
        client.close();
        assert!(client.is_ended());
        deliver(&mut client, client_addr, &mut server, now);
        assert_eq!(
            server.pending(conn),
            0,
            "the server's data was acknowledged"
        );
        assert_eq!(
            client.read(),
            Some(ClientRead::Data(Bytes::from_static(b"hi")))
        );
    }

    /// A deadline that moves later stays filed where it was: the endpoint wakes then, early,
    /// finds nothing due (no resend, no epoch counted) and files the true deadline; one that
    /// moves earlier is filed at once.
    #[test]
    fn a_deadline_that_moved_later_fires_early_and_is_filed_again() {
        use crate::lsp::{ClientEndpoint, RetransmitPolicy};
        let server_addr = addr(1);
        let client_addr = addr(2);
        let config = Config::new(Params::throughput()).with_retransmit(RetransmitPolicy::Adaptive);
        let now = t0();
        let mut server = ServerEndpoint::new(config.clone()).unwrap();
        let mut client = ClientEndpoint::new(config, server_addr, SeqNum(0), now).unwrap();
        deliver(&mut client, client_addr, &mut server, now);
        deliver(&mut server, server_addr, &mut client, now);
        let conn = client.conn_id().unwrap();
        // One exchange first, for an RTT sample (the first RTO is as long as an epoch).
        let mut now = now;
        for round in 0..2 {
            server.write(now, conn, Bytes::from_static(b"rtt")).unwrap();
            deliver(&mut server, server_addr, &mut client, now);
            now += Duration::from_millis(1);
            client.handle_timeout(now + Duration::from_millis(5 * round));
            deliver(&mut client, client_addr, &mut server, now);
        }
        // The deadlines filed meanwhile fire (early: nothing is due) until the filed one is the
        // connection's own, its next epoch.
        let mut epoch_deadline = server.poll_timeout().unwrap();
        while epoch_deadline < now + Duration::from_millis(100) {
            now = epoch_deadline;
            server.handle_timeout(now);
            epoch_deadline = server.poll_timeout().unwrap();
        }
        assert_eq!(server.stats().conns.retransmits, 0);
        // A write arms the retransmission timer: earlier than the epoch, filed at once.
        server.write(now, conn, Bytes::from_static(b"hi")).unwrap();
        deliver(&mut server, server_addr, &mut client, now);
        let rto_deadline = server.poll_timeout().unwrap();
        assert!(
            rto_deadline < epoch_deadline,
            "{rto_deadline:?} {epoch_deadline:?}"
        );
        // The acknowledgement disarms it: the connection's own deadline is the epoch again,
        // but the endpoint keeps the earlier one filed.
        let later = now + Duration::from_millis(1);
        client.handle_timeout(later + Duration::from_millis(5));
        deliver(&mut client, client_addr, &mut server, later);
        assert_eq!(server.pending(conn), 0, "acknowledged");
        assert_eq!(server.poll_timeout(), Some(rto_deadline));
        // Woken then: nothing is resent, and the true deadline is filed.
        let before = server.stats();
        server.handle_timeout(rto_deadline);
        assert!(server.poll_transmit().is_none(), "nothing to resend");
        let after = server.stats();
        assert_eq!(after.conns.retransmits, before.conns.retransmits);
        assert_eq!(after.conns.epochs, before.conns.epochs);
        assert_eq!(after.timeouts_handled, before.timeouts_handled + 1);
        assert_eq!(server.poll_timeout(), Some(epoch_deadline));
    }
}
