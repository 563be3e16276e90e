//! The client side: connects with an ISN, retries every epoch, then runs one connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tracing::{debug, trace};

use super::connection::{ConnState, Connection};
use super::error::{EndReason, WriteError};
use super::packer;
use super::params::{Config, ParamsError};
use super::stats::EndpointStats;
use crate::transmit::{DatagramEndpoint, Transmit};
use crate::wire::{ConnId, Message, MsgType, SeqNum};

/// Where a client is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Sending Connect every epoch, waiting for the server's Ack.
    Connecting,
    /// Connected (or closing, or ended: see [`ClientEndpoint::connection`]).
    Connected(ConnId),
    /// No Ack came within `epoch_limit` epochs.
    ConnectFailed,
    /// `close` was called before the connection was established.
    ClosedBeforeConnect,
}

/// What a client's reader gets next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientRead {
    /// One message from the server.
    Data(Bytes),
    /// The connection ended and nothing is left to read.
    Ended(EndReason),
}

/// The sans-IO LSP client: one connection to one server.
pub struct ClientEndpoint {
    config: Config,
    server: SocketAddr,
    isn: SeqNum,
    state: ClientState,
    conn: Option<Connection>,
    next_epoch: Instant,
    connect_epochs: u32,
    transmits: VecDeque<Transmit>,
    /// Where datagrams are encoded and cut from (`packer::pack`).
    datagram_buf: BytesMut,
    last_now: Instant,
    stats: EndpointStats,
    decoded: Vec<Message>,
    scratch: Vec<Message>,
    /// Whether the connection may have messages to pack.
    dirty: bool,
}

impl ClientEndpoint {
    /// Starts connecting to `server` with initial sequence number `isn`: the first Connect is
    /// ready to transmit at once.
    ///
    /// # Errors
    /// [`ParamsError`] if a setting is invalid.
    pub fn new(
        config: Config,
        server: SocketAddr,
        isn: SeqNum,
        now: Instant,
    ) -> Result<ClientEndpoint, ParamsError> {
        config.validate()?;
        let mut client = ClientEndpoint {
            next_epoch: now + config.params.epoch,
            config,
            server,
            isn,
            state: ClientState::Connecting,
            conn: None,
            connect_epochs: 0,
            transmits: VecDeque::new(),
            datagram_buf: BytesMut::new(),
            last_now: now,
            stats: EndpointStats::default(),
            decoded: Vec::new(),
            scratch: Vec::new(),
            dirty: false,
        };
        client.send(Message::connect(isn));
        Ok(client)
    }

    /// The connection state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The connection id, once connected.
    pub fn conn_id(&self) -> Option<ConnId> {
        match self.state {
            ClientState::Connected(id) => Some(id),
            _ => None,
        }
    }

    /// The ISN this client connected with.
    pub fn isn(&self) -> SeqNum {
        self.isn
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The connection, once connected.
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// Whether [`poll_transmit`](DatagramEndpoint::poll_transmit) may have something to give.
    pub fn has_transmit(&self) -> bool {
        !self.transmits.is_empty() || self.dirty
    }

    /// Whether the client is done: closed after flushing, lost, or never connected.
    pub fn is_ended(&self) -> bool {
        match self.state {
            ClientState::Connecting => false,
            ClientState::ConnectFailed | ClientState::ClosedBeforeConnect => true,
            ClientState::Connected(_) => self
                .conn
                .as_ref()
                .is_some_and(|c| matches!(c.state(), ConnState::Ended(_))),
        }
    }

    /// How the connection ended, if it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        match self.state {
            ClientState::Connecting => None,
            ClientState::ConnectFailed => Some(EndReason::Lost),
            ClientState::ClosedBeforeConnect => Some(EndReason::Closed),
            ClientState::Connected(_) => match self.conn.as_ref().map(Connection::state) {
                Some(ConnState::Ended(reason)) => Some(reason),
                _ => None,
            },
        }
    }

    /// Queues `payload` for the server; sent at once if the window allows.
    ///
    /// # Errors
    /// [`WriteError`]: not connected, closed, lost, full queue, payload too large.
    pub fn write(&mut self, now: Instant, payload: Bytes) -> Result<(), WriteError> {
        self.write_with_clock(|| now, payload)
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
        payload: Bytes,
    ) -> Result<(), WriteError> {
        let last = self.last_now;
        let mut read = None;
        let result = self.with_connection(|conn| {
            conn.write(payload, || {
                let now = clock().max(last);
                read = Some(now);
                now
            })
        });
        if let Some(now) = read {
            self.last_now = now;
        }
        result
    }

    /// Writes the messages at the front of `batch`, in order, removing each it queues; stops
    /// at the first it cannot queue (which stays in `batch`). Returns how many it queued.
    ///
    /// # Errors
    /// As [`write`](Self::write), when not even the first message could be queued.
    pub fn write_batch(
        &mut self,
        now: Instant,
        batch: &mut VecDeque<Bytes>,
    ) -> Result<usize, WriteError> {
        let now = self.clamp(now);
        self.with_connection(|conn| conn.write_batch(batch, now))
    }

    /// Runs a write on the connection, if there is one to write on, then flushes it.
    fn with_connection<R>(
        &mut self,
        write: impl FnOnce(&mut Connection) -> Result<R, WriteError>,
    ) -> Result<R, WriteError> {
        let conn = match self.state {
            ClientState::Connected(_) => self.conn.as_mut(),
            ClientState::ConnectFailed => return Err(WriteError::Lost),
            ClientState::ClosedBeforeConnect => return Err(WriteError::Closed),
            ClientState::Connecting => None,
        }
        .ok_or(WriteError::NotConnected)?;
        let result = write(conn)?;
        self.flush_conn();
        Ok(result)
    }

    /// Messages written and not yet acknowledged by the server.
    pub fn pending(&self) -> usize {
        self.conn.as_ref().map_or(0, Connection::pending)
    }

    /// How many more messages `write` accepts before it fails with
    /// [`WriteError::QueueFull`] (0 when not connected or ended).
    pub fn send_capacity(&self) -> usize {
        self.conn.as_ref().map_or(0, Connection::send_capacity)
    }

    /// The next item for the application: data in order, then the end.
    pub fn read(&mut self) -> Option<ClientRead> {
        if let Some(payload) = self.conn.as_mut().and_then(Connection::read) {
            return Some(ClientRead::Data(payload));
        }
        self.end_reason().map(ClientRead::Ended)
    }

    /// Appends up to `max` received messages to `out`, in order, a Data message at a time;
    /// returns how many (0 when none is readable: the end, if any, is [`read`](Self::read)'s
    /// to report). The fast way to drain bundles.
    pub fn read_data_batch(&mut self, out: &mut Vec<Bytes>, max: usize) -> usize {
        let start = out.len();
        if let Some(conn) = self.conn.as_mut() {
            while out.len() - start < max {
                let room = max - (out.len() - start);
                if conn.read_front(room, |m| out.push(m)).is_none() {
                    break;
                }
            }
        }
        out.len() - start
    }

    /// Starts a graceful close: ends once every pending message is acknowledged (or the
    /// connection is lost). A client still connecting gives up at once.
    pub fn close(&mut self) {
        match self.state {
            ClientState::Connecting => {
                debug!("close while connecting: giving up");
                self.state = ClientState::ClosedBeforeConnect;
            }
            ClientState::Connected(_) => {
                if let Some(conn) = self.conn.as_mut() {
                    conn.close();
                }
                self.flush_conn();
            }
            ClientState::ConnectFailed | ClientState::ClosedBeforeConnect => {}
        }
    }

    /// Endpoint counters, with the connection's.
    pub fn stats(&self) -> EndpointStats {
        let mut stats = self.stats;
        if let Some(conn) = &self.conn {
            stats.conns = *conn.stats();
        }
        stats
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn send(&mut self, msg: Message) {
        let mut msgs = vec![msg];
        self.pack(&mut msgs);
    }

    fn pack(&mut self, msgs: &mut Vec<Message>) {
        self.stats.datagrams_sent += packer::pack(
            self.config.codec,
            self.config.max_datagram,
            self.server,
            msgs,
            &mut self.transmits,
            &mut self.datagram_buf,
        );
    }

    fn flush_conn(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.state() == ConnState::Ended(EndReason::Lost) && self.stats.connections_lost == 0 {
            self.stats.connections_lost = 1;
        }
        // Packed lazily in `poll_transmit`, so that everything written before the driver polls
        // shares datagrams.
        self.dirty = true;
    }

    fn on_message(&mut self, now: Instant, msg: Message) {
        match self.state {
            ClientState::Connecting => {
                if msg.kind == MsgType::Ack && msg.seq == self.isn && msg.conn.0 != 0 {
                    let id = msg.conn;
                    debug!(conn = %id, "connected");
                    self.state = ClientState::Connected(id);
                    self.stats.connections_opened += 1;
                    let mut conn = Connection::new(id, self.isn.plus(1), &self.config, now);
                    conn.handle_message(Message::heartbeat(id), now);
                    self.conn = Some(conn);
                } else {
                    // Data before our Connect's Ack: the server re-acks our next Connect.
                    self.stats.unknown_conn += 1;
                }
            }
            ClientState::Connected(id) => {
                if msg.conn != id {
                    self.stats.unknown_conn += 1;
                    return;
                }
                if msg.kind == MsgType::Ack && msg.seq == self.isn {
                    // A re-sent Ack of our Connect: proof of life, nothing to acknowledge.
                    if let Some(conn) = self.conn.as_mut() {
                        conn.handle_message(Message::heartbeat(id), now);
                    }
                    return;
                }
                if let Some(conn) = self.conn.as_mut() {
                    conn.handle_message(msg, now);
                }
            }
            ClientState::ConnectFailed | ClientState::ClosedBeforeConnect => {}
        }
    }
}

impl DatagramEndpoint for ClientEndpoint {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let now = self.clamp(now);
        self.stats.datagrams_received += 1;
        if from != self.server {
            self.stats.unknown_conn += 1;
            return;
        }
        let mut decoded = std::mem::take(&mut self.decoded);
        decoded.clear();
        if let Err(err) = self.config.codec.decode(datagram, &mut decoded) {
            self.stats.malformed += 1;
            trace!(%err, "malformed datagram dropped");
        }
        for msg in decoded.drain(..) {
            self.on_message(now, msg);
        }
        self.decoded = decoded;
        self.flush_conn();
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        self.stats.timeouts_handled += 1;
        match self.state {
            ClientState::Connecting if now >= self.next_epoch => {
                self.next_epoch += self.config.params.epoch;
                if self.next_epoch <= now {
                    self.next_epoch = now + self.config.params.epoch;
                }
                self.connect_epochs += 1;
                if self.connect_epochs >= self.config.params.epoch_limit {
                    debug!(epochs = self.connect_epochs, "connect failed");
                    self.state = ClientState::ConnectFailed;
                    self.stats.connections_lost = 1;
                } else {
                    trace!(isn = self.isn.0, "resending Connect");
                    self.send(Message::connect(self.isn));
                }
            }
            ClientState::Connected(_) => {
                if let Some(conn) = self.conn.as_mut() {
                    conn.handle_timeout(now);
                }
                self.flush_conn();
            }
            _ => {}
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty() && std::mem::take(&mut self.dirty) {
            if let Some(conn) = self.conn.as_mut() {
                let mut out = std::mem::take(&mut self.scratch);
                conn.drain_messages(&mut out);
                self.pack(&mut out);
                self.scratch = out;
            }
        }
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ClientState::Connecting => Some(self.next_epoch),
            ClientState::Connected(_) => self.conn.as_ref().and_then(Connection::poll_timeout),
            ClientState::ConnectFailed | ClientState::ClosedBeforeConnect => None,
        }
    }
}
