//! One LSP connection: both window halves, epochs, heartbeats, loss detection and closing.
//!
//! A [`Connection`] speaks [`Message`]s, not bytes: the endpoint that owns it decodes datagrams,
//! routes them here by connection id, and encodes what it drains from the connection.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, trace};

use super::bundler::Bundler;
use super::error::{EndReason, WriteError};
use super::params::{AckPolicy, Config, RetransmitPolicy};
use super::recv_window::{Accept, RecvWindow};
use super::rto::RtoEstimator;
use super::send_window::{AckOutcome, OutData, SendWindow};
use super::stats::ConnStats;
use crate::wire::{bundle, checksum, sack, ConnId, Message, MsgType, SeqNum};

/// How an accepted write is queued.
#[derive(Clone, Copy, Debug)]
enum Admit {
    /// Into the bundle being gathered (sealing the current one first if it is full).
    Gather { seal_first: bool },
    /// As a Data message of its own, sent at once if the window allows.
    Alone,
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Sending and receiving.
    Open,
    /// `close` was called: no new writes; waits until every pending message is acknowledged.
    Closing,
    /// Ended: closed by this side after flushing, or lost. Silent from now on.
    Ended(EndReason),
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    id: ConnId,
    config: Config,
    send: SendWindow,
    recv: RecvWindow,
    state: ConnState,
    next_epoch: Instant,
    silent_epochs: u32,
    heard_since_epoch: bool,
    sent_data_since_epoch: bool,
    out: VecDeque<Message>,
    stats: ConnStats,
    adaptive: bool,
    rto: RtoEstimator,
    rto_deadline: Option<Instant>,
    /// The armed `rto_deadline` is a tail-loss probe's (a shorter wait than the RTO).
    deadline_is_probe: bool,
    /// Probes sent since the last acknowledgement of new data: each doubles the next probe's
    /// wait, and once that reaches the RTO the RTO takes over.
    probes_in_row: u32,
    /// The RTO expired since the last acknowledgement of new data: no more probes until one
    /// comes (its own back-off is the RTO's).
    rto_fired: bool,
    /// How received Data is acknowledged: `Config::effective_acks`, never `Auto`.
    acks: AckPolicy,
    /// A CAck (or SAck) is due at the next drain.
    ack_due: bool,
    /// Selective acks: the latest [`sack::MAX_RANGES`] messages received out of order, whose
    /// runs every SAck lists first (so that each arrival is reported by several SAcks, even a
    /// retransmission filling a hole far below the top).
    recent: VecDeque<SeqNum>,
    /// Selective acks: messages received out of order since the last acknowledgement.
    unreported: usize,
    /// Scratch for the ranges of a SAck.
    sack_ranges: Vec<(SeqNum, SeqNum)>,
    resends: Vec<OutData>,
    /// When the peer was last heard from.
    last_heard: Instant,
    /// Small messages written while data is in flight, gathered into one Data message.
    bundler: Bundler,
    /// `Config::effective_bundle_max` (0: no bundling).
    bundle_max: usize,
    /// `Config::bundle_bytes`: the largest bundle.
    bundle_bytes: usize,
    /// The latest time given by any input: when a bundle sealed at drain time counts as sent.
    last_now: Instant,
}

/// Selective acks: within one batch of received datagrams, a SAck goes out after this many
/// messages received out of order, so that the runs of everything that arrived since the one
/// before fit in the half of its [`sack::MAX_RANGES`] given to recent arrivals (a batch of
/// received datagrams can hold thousands of messages).
const SACK_EVERY: usize = sack::MAX_RANGES / 2;

impl Connection {
    /// A connection whose Data, in both directions, starts at `first` (the client's ISN + 1).
    pub(crate) fn new(id: ConnId, first: SeqNum, config: &Config, now: Instant) -> Connection {
        let p = config.params;
        Connection {
            id,
            config: config.clone(),
            send: SendWindow::new(first, p.window, p.max_unacked, p.max_backoff),
            recv: RecvWindow::new(first, p.window, config.max_read_queue),
            state: ConnState::Open,
            next_epoch: now + p.epoch,
            silent_epochs: 0,
            heard_since_epoch: false,
            sent_data_since_epoch: false,
            out: VecDeque::new(),
            stats: ConnStats::default(),
            adaptive: config.effective_retransmit() == RetransmitPolicy::Adaptive,
            rto: RtoEstimator::new(
                config.rto,
                p.epoch.saturating_mul(p.max_backoff.saturating_add(1)),
            ),
            rto_deadline: None,
            deadline_is_probe: false,
            probes_in_row: 0,
            rto_fired: false,
            acks: config.effective_acks(),
            ack_due: false,
            recent: VecDeque::new(),
            unreported: 0,
            sack_ranges: Vec::new(),
            resends: Vec::new(),
            last_heard: now,
            bundler: Bundler::default(),
            bundle_max: config.effective_bundle_max(),
            bundle_bytes: config.bundle_bytes(),
            last_now: now,
        }
    }

    /// When the peer was last heard from (any valid message).
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// The smoothed round-trip time, once measured (adaptive policy only).
    pub fn srtt(&self) -> Option<Duration> {
        self.rto.srtt()
    }

    /// The current retransmission timeout (adaptive policy).
    pub fn rto(&self) -> Duration {
        self.rto.rto()
    }

    /// The connection id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The connection's state.
    pub fn state(&self) -> ConnState {
        self.state
    }

    /// Counters.
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// Data messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> u32 {
        self.send.in_flight()
    }

    /// Data messages written and not yet acknowledged (queued, in flight, or a bundle being
    /// gathered; a bundle counts once). 0 once everything written was acknowledged.
    pub fn pending(&self) -> usize {
        self.send.len() + usize::from(!self.bundler.is_empty())
    }

    /// How many more messages `write` accepts for certain before the send queue is full (with
    /// bundling it may accept more: small messages join the bundle being gathered).
    pub fn send_capacity(&self) -> usize {
        match self.state {
            ConnState::Open => self.config.max_send_queue.saturating_sub(self.pending()),
            _ => 0,
        }
    }

    /// Received Data messages waiting to be read (a bundle counts once, until its last message
    /// is read).
    pub fn readable(&self) -> usize {
        self.recv.readable_len()
    }

    /// Messages received out of order, buffered until the gap before them fills.
    pub fn buffered_out_of_order(&self) -> usize {
        self.recv.ahead_len()
    }

    /// How many messages were ever delivered in order to the read queue.
    pub fn delivered(&self) -> u64 {
        self.recv.delivered()
    }

    /// Queues `payload` for reliable, in-order delivery and sends it at once if the window and
    /// `max_unacked` allow.
    pub(crate) fn write(
        &mut self,
        payload: Bytes,
        clock: impl FnOnce() -> Instant,
    ) -> Result<(), WriteError> {
        let admit = self.admit(payload.len())?;
        // A message joining the bundle being gathered is not timed now (the bundle is, when
        // it is sealed and sent): the clock is read only for a message sent on its own.
        let now = match admit {
            Admit::Gather { .. } => self.last_now,
            Admit::Alone => clock(),
        };
        self.enqueue(payload, admit, now);
        Ok(())
    }

    /// Writes the messages at the front of `batch`, in order, removing each it queues; stops
    /// at the first it cannot queue, which stays in `batch`. Returns how many it queued.
    ///
    /// # Errors
    /// As [`write`](Self::write), when not even the first message could be queued.
    pub(crate) fn write_batch(
        &mut self,
        batch: &mut VecDeque<Bytes>,
        now: Instant,
    ) -> Result<usize, WriteError> {
        let mut queued = 0;
        while let Some(front) = batch.front() {
            match self.admit(front.len()) {
                Ok(admit) => {
                    if let Some(payload) = batch.pop_front() {
                        self.enqueue(payload, admit, now);
                        queued += 1;
                    }
                }
                Err(e) if queued == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(queued)
    }

    /// Whether a message of `len` bytes may be written now, and how it will be queued.
    fn admit(&self, len: usize) -> Result<Admit, WriteError> {
        match self.state {
            ConnState::Open => {}
            ConnState::Closing | ConnState::Ended(EndReason::Closed) => {
                return Err(WriteError::Closed)
            }
            ConnState::Ended(EndReason::Lost) => return Err(WriteError::Lost),
        }
        if len > self.config.max_payload {
            return Err(WriteError::TooLarge {
                len,
                max: self.config.max_payload,
            });
        }
        let full = self.pending() >= self.config.max_send_queue;
        // Bundle a small message when data is in flight (it could not leave at once anyway,
        // or its predecessors are being gathered); an idle connection sends it alone, now.
        let busy = self.send.in_flight() > 0 || !self.bundler.is_empty();
        if len <= self.bundle_max && busy {
            let fits = self.bundler.fits(len, self.bundle_bytes);
            // Joining the gathered bundle takes no new Data message; anything else does (the
            // gathered one, sealed, stays counted).
            if (!fits || self.bundler.is_empty()) && full {
                return Err(WriteError::QueueFull(self.config.max_send_queue));
            }
            return Ok(Admit::Gather { seal_first: !fits });
        }
        if full {
            return Err(WriteError::QueueFull(self.config.max_send_queue));
        }
        Ok(Admit::Alone)
    }

    /// Queues a message [`admit`](Self::admit) accepted.
    fn enqueue(&mut self, payload: Bytes, admit: Admit, now: Instant) {
        self.last_now = now;
        match admit {
            Admit::Gather { seal_first } => {
                if seal_first {
                    self.seal_bundle();
                }
                self.bundler.push(payload);
            }
            Admit::Alone => {
                // What was gathered goes first: order is kept.
                self.seal_bundle();
                self.send.push(payload, false);
                self.pump_sends(now);
                if self.send.is_stalled() {
                    self.stats.window_stalls += 1;
                }
            }
        }
    }

    /// The next application message, in order.
    pub(crate) fn read(&mut self) -> Option<Bytes> {
        self.recv.read().map(|(message, _)| message)
    }

    /// Gives `push` up to `max` messages of the next received Data message (see
    /// `RecvWindow::read_front`): how many, and whether that Data message is read whole.
    pub(crate) fn read_front(
        &mut self,
        max: usize,
        push: impl FnMut(Bytes),
    ) -> Option<(usize, bool)> {
        self.recv.read_front(max, push)
    }

    /// Moves the gathered bundle, if any, into the send window (it gets the next sequence
    /// number; it is sent by the next `pump_sends`).
    fn seal_bundle(&mut self) {
        if let Some(sealed) = self.bundler.seal() {
            if sealed.bundled {
                self.stats.bundles_sent += 1;
                self.stats.messages_bundled += sealed.count as u64;
            }
            self.send.push(sealed.payload, sealed.bundled);
        }
    }

    /// Starts a graceful close: no new writes; ends once everything is acknowledged.
    pub(crate) fn close(&mut self) {
        if self.state == ConnState::Open {
            debug!(conn = %self.id, pending = self.send.len(), "closing");
            self.state = ConnState::Closing;
            self.seal_bundle();
            self.pump_sends(self.last_now);
            self.finish_close_if_flushed();
        }
    }

    /// Ends the connection as lost at once (used when a client's endpoint gives up).
    pub(crate) fn mark_lost(&mut self) {
        if !matches!(self.state, ConnState::Ended(_)) {
            self.state = ConnState::Ended(EndReason::Lost);
            self.out.clear();
            self.bundler.clear();
        }
    }

    fn finish_close_if_flushed(&mut self) {
        if self.state == ConnState::Closing && self.send.is_empty() {
            debug!(conn = %self.id, "closed: everything acknowledged");
            self.state = ConnState::Ended(EndReason::Closed);
        }
    }

    fn is_ended(&self) -> bool {
        matches!(self.state, ConnState::Ended(_))
    }

    /// Handles one message addressed to this connection.
    pub(crate) fn handle_message(&mut self, mut msg: Message, now: Instant) {
        if self.is_ended() {
            return;
        }
        self.last_now = now;
        if msg.kind != MsgType::Data {
            self.last_heard = now;
        }
        match msg.kind {
            MsgType::Data => {
                let Some(payload) = self.verify_data(&mut msg) else {
                    return; // as if never received
                };
                if msg.bundled && bundle::validate(&payload).is_err() {
                    // The checksum held, so the peer built it wrong: as if never received.
                    self.stats.bad_bundle += 1;
                    trace!(conn = %self.id, seq = %msg.seq, "dropped: malformed bundle");
                    return;
                }
                self.heard_since_epoch = true;
                self.last_heard = now;
                self.on_data(msg.seq, payload, msg.bundled);
            }
            MsgType::Ack if msg.is_heartbeat() => {
                self.heard_since_epoch = true;
                self.stats.heartbeats_received += 1;
            }
            MsgType::Ack => {
                self.heard_since_epoch = true;
                let outcome = self.send.ack(msg.seq, now);
                self.after_ack(outcome, now);
            }
            MsgType::CAck => {
                self.heard_since_epoch = true;
                let outcome = self.send.cack(msg.seq, now);
                self.after_ack(outcome, now);
            }
            MsgType::SAck => {
                self.heard_since_epoch = true;
                let outcome = self.send.sack(msg.seq, msg.sack_ranges(), now);
                self.after_ack(outcome, now);
            }
            // A Connect re-sent by the client; the endpoint re-acknowledges it.
            MsgType::Connect => self.heard_since_epoch = true,
        }
    }

    /// Spec 3.3: size check first (short: dropped; long: truncated), then the checksum. Takes
    /// the payload out of `msg` (a clone of a freshly decoded `Bytes` would allocate).
    fn verify_data(&mut self, msg: &mut Message) -> Option<Bytes> {
        let payload = msg.payload.take().unwrap_or_default();
        let declared = msg.size;
        if (payload.len() as u64) < declared {
            self.stats.bad_size += 1;
            trace!(conn = %self.id, seq = %msg.seq, "dropped: payload shorter than size");
            return None;
        }
        let payload = if payload.len() as u64 > declared {
            self.stats.truncated += 1;
            payload.slice(..declared as usize)
        } else {
            payload
        };
        let sum = checksum::compute(
            msg.conn.0 as i64,
            msg.seq.0 as i64,
            declared as i64,
            &payload,
        );
        if sum != msg.checksum {
            self.stats.bad_checksum += 1;
            trace!(conn = %self.id, seq = %msg.seq, "dropped: bad checksum");
            return None;
        }
        Some(payload)
    }

    fn on_data(&mut self, seq: SeqNum, payload: Bytes, bundled: bool) {
        match self.recv.on_data(seq, payload, bundled) {
            Accept::New => {
                self.stats.data_received += 1;
                self.queue_ack(seq);
            }
            Accept::Duplicate | Accept::DuplicateBuffered => {
                self.stats.duplicates_received += 1;
                self.queue_ack(seq);
            }
            Accept::Refused => self.stats.data_refused += 1,
        }
    }

    /// Acknowledges `seq`: with cumulative acks, data at or below the delivery point is covered
    /// by one CAck emitted when the batch is drained; the rest gets its own Ack. With selective
    /// acks all of it is covered by one CAck or SAck per batch, and by a SAck every
    /// [`SACK_EVERY`] messages received out of order within a batch.
    fn queue_ack(&mut self, seq: SeqNum) {
        if self.acks == AckPolicy::Selective {
            self.ack_due = true;
            if self.recv.ahead_len() > 0 {
                if self.recent.len() == sack::MAX_RANGES {
                    self.recent.pop_front();
                }
                self.recent.push_back(seq);
                self.unreported += 1;
                if self.unreported >= SACK_EVERY {
                    let mut out = std::mem::take(&mut self.out);
                    self.emit_ack(&mut out);
                    self.out = out;
                }
            }
            return;
        }
        if self.acks == AckPolicy::Cumulative && seq < self.recv.expected() {
            self.ack_due = true;
            return;
        }
        self.stats.acks_sent += 1;
        self.out.push_back(Message::ack(self.id, seq));
    }

    /// Emits the CAck (or, with selective acks and data held out of order, the SAck) that is
    /// due, if one is.
    fn emit_ack(&mut self, out: &mut impl Extend<Message>) {
        if !std::mem::take(&mut self.ack_due) {
            return;
        }
        self.stats.acks_sent += 1;
        let through = SeqNum(self.recv.expected().0.saturating_sub(1));
        let ack = if self.acks == AckPolicy::Selective && self.recv.ahead_len() > 0 {
            self.recv
                .sack_ranges(sack::MAX_RANGES, &self.recent, &mut self.sack_ranges);
            Message::sack(self.id, through, self.sack_ranges.iter().copied())
        } else {
            Message::cack(self.id, through)
        };
        self.unreported = 0;
        out.extend([ack]);
    }

    fn after_ack(&mut self, outcome: AckOutcome, now: Instant) {
        if outcome.newly > 0 {
            self.stats.acks_received += 1;
            if let Some(rtt) = outcome.rtt {
                self.rto.on_sample(rtt);
            }
            self.rto.on_progress();
            self.rto_deadline = None;
            self.probes_in_row = 0;
            self.rto_fired = false;
        }
        if self.adaptive {
            let reorder_window = self.rto.reorder_window();
            self.send
                .detect_losses(now, reorder_window, &mut self.resends);
            self.queue_resends();
        }
        self.pump_sends(now);
        if self.send.is_empty() {
            // Nothing unacknowledged: an idle connection keeps no spare bundle buffer.
            self.bundler.release();
        }
        self.finish_close_if_flushed();
    }

    fn pump_sends(&mut self, now: Instant) {
        while let Some(data) = self.send.poll_send(now) {
            self.queue_data(data);
        }
        self.arm_rto(now);
    }

    /// Adaptive policy: keeps the retransmission timer running while anything is in flight.
    /// After new data was acknowledged it first waits for a tail-loss probe (two RTTs and the
    /// ack delay), doubling that wait for each probe that went unanswered, until it reaches the
    /// RTO, which then takes over (with its own back-off).
    fn arm_rto(&mut self, now: Instant) {
        if !self.adaptive {
            return;
        }
        if self.send.in_flight() == 0 {
            self.rto_deadline = None;
        } else if self.rto_deadline.is_none() {
            let rto = self.rto.rto();
            let probe = (!self.rto_fired)
                .then(|| self.rto.pto(self.send.in_flight() == 1))
                .flatten()
                .map(|pto| pto.saturating_mul(1 << self.probes_in_row.min(16)))
                .filter(|&wait| wait < rto);
            self.deadline_is_probe = probe.is_some();
            self.rto_deadline = Some(now + probe.unwrap_or(rto));
        }
    }

    fn queue_resends(&mut self) {
        let mut resends = std::mem::take(&mut self.resends);
        for data in resends.drain(..) {
            self.queue_data(data);
        }
        self.resends = resends;
    }

    fn queue_data(&mut self, data: OutData) {
        if data.retransmit {
            self.stats.retransmits += 1;
        } else {
            self.stats.data_sent += 1;
        }
        self.sent_data_since_epoch = true;
        self.out.push_back(if data.bundled {
            Message::bundle(self.id, data.seq, data.payload)
        } else {
            Message::data(self.id, data.seq, data.payload)
        });
    }

    /// Moves every message to put on the wire into `out`, the pending cumulative ack first.
    /// Call after each batch of input (a datagram, a timeout, a command).
    ///
    /// A cumulative ack still due when the connection has just closed gracefully goes out all
    /// the same: the peer's data was received and must not be resent to a closed endpoint.
    pub(crate) fn drain_messages(&mut self, out: &mut Vec<Message>) {
        // What was gathered since the last drain leaves now (if the window allows).
        if !self.bundler.is_empty() {
            self.seal_bundle();
            self.pump_sends(self.last_now);
        }
        let lost = self.state == ConnState::Ended(EndReason::Lost);
        if lost {
            self.ack_due = false;
        }
        self.emit_ack(out);
        out.extend(self.out.drain(..));
    }

    /// When the next timer (epoch, or retransmission timeout) fires, unless the connection ended.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.is_ended() {
            return None;
        }
        Some(match self.rto_deadline {
            Some(rto) => rto.min(self.next_epoch),
            None => self.next_epoch,
        })
    }

    /// Runs whatever timer is due: the retransmission timeout, the epoch (spec 3.4).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.is_ended() {
            return;
        }
        self.last_now = now;
        if self.rto_deadline.is_some_and(|at| now >= at) {
            self.rto_deadline = None;
            if std::mem::take(&mut self.deadline_is_probe) {
                self.probes_in_row += 1;
                self.stats.probes += 1;
                self.send.on_probe(now, &mut self.resends);
                trace!(conn = %self.id, resends = self.resends.len(), "tail-loss probe");
            } else {
                self.send.on_rto(now, &mut self.resends);
                self.rto.on_expiry();
                self.rto_fired = true;
                self.stats.rto_expiries += 1;
                trace!(conn = %self.id, resends = self.resends.len(), rto = ?self.rto.rto(), "rto expired");
            }
            self.queue_resends();
            self.arm_rto(now);
        }
        if now >= self.next_epoch {
            self.on_epoch(now);
        }
    }

    fn on_epoch(&mut self, now: Instant) {
        let epoch = self.config.params.epoch;
        self.next_epoch += epoch;
        if self.next_epoch <= now {
            // The driver fell behind by more than an epoch: run one, not a burst.
            self.next_epoch = now + epoch;
        }
        self.stats.epochs += 1;
        if self.heard_since_epoch {
            self.silent_epochs = 0;
        } else {
            self.silent_epochs += 1;
            if self.silent_epochs >= self.config.params.epoch_limit {
                debug!(conn = %self.id, epochs = self.silent_epochs, "lost: peer silent");
                self.mark_lost();
                return;
            }
        }
        self.heard_since_epoch = false;
        if !self.adaptive {
            self.send.on_epoch(now, &mut self.resends);
        }
        let sent_data = self.sent_data_since_epoch || !self.resends.is_empty();
        self.queue_resends();
        if !sent_data {
            self.stats.heartbeats_sent += 1;
            self.out.push_back(Message::heartbeat(self.id));
        }
        self.sent_data_since_epoch = false;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::lsp::Params;

    fn t0() -> Instant {
        #[allow(clippy::disallowed_methods)] // tests need one arbitrary origin
        Instant::now()
    }

    #[test]
    fn a_batch_of_out_of_order_data_is_acknowledged_every_sack_every_arrivals() {
        let now = t0();
        let config = Config::new(Params::throughput());
        let mut conn = Connection::new(ConnId(1), SeqNum(1), &config, now);
        // One batch of 200 messages, every third one missing: many more runs than one SAck
        // can list.
        let arrived: Vec<u64> = (2..=300).filter(|s| s % 3 != 1).take(200).collect();
        for &seq in &arrived {
            let msg = Message::data(ConnId(1), SeqNum(seq), Bytes::from_static(b"x"));
            conn.handle_message(msg, now);
        }
        let mut out = Vec::new();
        conn.drain_messages(&mut out);
        let sacks: Vec<&Message> = out.iter().filter(|m| m.kind == MsgType::SAck).collect();
        assert_eq!(
            sacks.len(),
            200 / SACK_EVERY + 1,
            "one per 16 arrivals, and the drain's"
        );
        assert!(out.iter().all(|m| m.kind == MsgType::SAck));
        // Every arrival is listed by some SAck, though there are 100 runs.
        for seq in arrived {
            assert!(
                sacks
                    .iter()
                    .any(|m| m.sack_ranges().any(|(a, b)| a.0 <= seq && seq < b.0)),
                "{seq} never reported"
            );
        }
    }

    #[test]
    fn in_order_data_is_acknowledged_by_one_cack_per_batch() {
        let now = t0();
        let config = Config::new(Params::throughput());
        let mut conn = Connection::new(ConnId(1), SeqNum(1), &config, now);
        for seq in 1..=100 {
            let msg = Message::data(ConnId(1), SeqNum(seq), Bytes::from_static(b"x"));
            conn.handle_message(msg, now);
        }
        let mut out = Vec::new();
        conn.drain_messages(&mut out);
        assert_eq!(out, vec![Message::cack(ConnId(1), SeqNum(100))]);
    }
}
