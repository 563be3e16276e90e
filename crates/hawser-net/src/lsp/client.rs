//! The async LSP client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hawser_proto::lsp::{
    ClientEndpoint, ClientRead, ClientState, Config, EndReason, EndpointStats, Params,
};
use hawser_proto::wire::{ConnId, SeqNum};

use super::driver::{self, Driven, DriverTask, Shared};
use super::error::{ClientReadError, CloseError, ConnectError, WriteError};
use super::socket::Socket;

impl Driven for ClientEndpoint {
    fn is_finished(&self) -> bool {
        self.is_ended()
    }

    fn has_transmit(&self) -> bool {
        Self::has_transmit(self)
    }
}

/// An LSP client: one reliable, in-order connection to a server.
///
/// Dropping a client without [`close`](Self::close) stops its background task at once
/// (pending messages are abandoned, and the server will notice the silence).
pub struct Client {
    shared: Arc<Shared<ClientEndpoint>>,
    driver: DriverTask,
    conn_id: ConnId,
    local_addr: SocketAddr,
}

impl Client {
    /// Connects to `server` with initial sequence number `isn` and the protocol parameters
    /// `params` (every other setting at its default, binary codec), from an ephemeral port on
    /// the unspecified address. Resolves once the server acknowledged the Connect.
    ///
    /// # Errors
    /// [`ConnectError::Timeout`] after `epoch_limit` epochs without an answer; invalid
    /// parameters; socket errors.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the attempt and its task.
    pub async fn connect(
        server: SocketAddr,
        isn: u32,
        params: Params,
    ) -> Result<Client, ConnectError> {
        let local: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = Socket::bind(local).await?;
        Client::connect_with(server, isn, Config::new(params), socket).await
    }

    /// Connects with a full [`Config`] over a socket of the caller's (for example a
    /// [`FaultySocket`](crate::fault_socket::FaultySocket) to inject loss). A plain socket is
    /// `connect`ed to `server` (the kernel then drops datagrams from anyone else, which the
    /// client would drop anyway, and keeps the route); if the OS refuses, it stays as it was.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    ///
    /// # Cancel safety
    /// Dropping the future abandons the attempt and its task.
    pub async fn connect_with(
        server: SocketAddr,
        isn: u32,
        config: Config,
        socket: impl Into<Socket>,
    ) -> Result<Client, ConnectError> {
        config.validate()?;
        let mut socket = socket.into();
        socket.connect(server).await;
        let socket = Arc::new(socket);
        let local_addr = socket.local_addr()?;
        let now = tokio::time::Instant::now().into_std();
        let endpoint = ClientEndpoint::new(config, server, SeqNum(u64::from(isn)), now)?;
        let shared = Shared::new(endpoint, socket);
        let span = tracing::info_span!("lsp_client", addr = %server, local = %local_addr);
        let task = tokio::spawn(tracing::Instrument::instrument(
            driver::run(shared.clone()),
            span,
        ));
        // If this future is dropped while waiting, dropping the handle aborts the task.
        let driver = DriverTask::new(task);
        let connected = shared
            .wait_for(|ep| match ep.state() {
                ClientState::Connecting => None,
                ClientState::Connected(id) => Some(Ok(id)),
                ClientState::ConnectFailed | ClientState::ClosedBeforeConnect => Some(Err(())),
            })
            .await
            .unwrap_or(Err(()));
        match connected {
            Ok(conn_id) => Ok(Client {
                shared,
                driver,
                conn_id,
                local_addr,
            }),
            Err(()) => {
                driver.join().await;
                Err(ConnectError::Timeout)
            }
        }
    }

    /// The connection id the server assigned.
    pub fn conn_id(&self) -> ConnId {
        self.conn_id
    }

    /// The local address of the client's socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next message from the server, in order. Once the connection has ended and every
    /// received message was read, returns the error saying how it ended.
    ///
    /// # Errors
    /// [`ClientReadError`] naming [`EndReason::Lost`] or [`EndReason::Closed`].
    ///
    /// # Cancel safety
    /// Cancel safe: a message is only taken when it is returned.
    pub async fn read(&self) -> Result<Bytes, ClientReadError> {
        // A driver that died (a panicking fault hook, a bug) can deliver nothing more: lost.
        let item = self
            .shared
            .wait_for(ClientEndpoint::read)
            .await
            .unwrap_or(ClientRead::Ended(EndReason::Lost));
        match item {
            ClientRead::Data(payload) => Ok(payload),
            ClientRead::Ended(reason) => Err(ClientReadError(reason)),
        }
    }

    /// Like [`read`](Self::read), for many messages at once: waits for the next item, then
    /// appends up to `max` (at least 1) messages that are ready to `out`, in order, under one
    /// lock. Returns how many it appended.
    ///
    /// # Errors
    /// As [`read`](Self::read), once every message was read and the connection has ended.
    ///
    /// # Cancel safety
    /// Cancel safe: messages are only taken when this returns.
    pub async fn read_batch(
        &self,
        out: &mut Vec<Bytes>,
        max: usize,
    ) -> Result<usize, ClientReadError> {
        let max = max.max(1);
        let result = self
            .shared
            .wait_for(|ep| {
                let n = ep.read_data_batch(out, max);
                if n > 0 {
                    return Some(Ok(n));
                }
                // Nothing to read: the end, if the connection has ended (a state, so the
                // next call reports it again).
                match ep.read()? {
                    ClientRead::Data(payload) => {
                        out.push(payload);
                        Some(Ok(1))
                    }
                    ClientRead::Ended(reason) => Some(Err(reason)),
                }
            })
            .await
            .unwrap_or(Err(EndReason::Lost));
        result.map_err(ClientReadError)
    }

    /// Queues a message; it goes out at once if the window allows. Never blocks.
    ///
    /// # Errors
    /// [`WriteError`]: the connection is closed or lost, the send queue is full, or the payload
    /// is larger than `Config::max_payload`.
    pub fn try_send(&self, payload: impl Into<Bytes>) -> Result<(), WriteError> {
        let payload = payload.into();
        if self.shared.is_driver_gone() {
            return Err(self.gone_error());
        }
        // Nothing outstanding: send it from here at once (request-response latency); else
        // the driver packs it with what else is written meanwhile.
        self.shared.command_flush(|ep| {
            let idle = ep.pending() == 0;
            // A message that joins the bundle being gathered is not timed: no clock reading.
            let result = ep.write_with_clock(driver::now, payload);
            let sent_now = idle && result.is_ok();
            (result, sent_now)
        })
    }

    /// Queues the messages at the front of `batch`, in order, under one lock, one clock
    /// reading and one wake-up of the driver: the fast way to write many small messages.
    /// Removes from `batch` what it queued and returns how many; stops at the first message it
    /// cannot queue (a full send queue, a payload too large), which stays at the front of
    /// `batch`. Never blocks.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), when not even the first message could be queued.
    pub fn try_send_batch(&self, batch: &mut VecDeque<Bytes>) -> Result<usize, WriteError> {
        if self.shared.is_driver_gone() {
            return Err(self.gone_error());
        }
        self.shared.command_flush(|ep| {
            // A lone message on an idle connection leaves from here at once, as with `try_send`;
            // more go to the driver, which sends runs of datagrams in one segmented send.
            let idle = ep.pending() == 0;
            let result = ep.write_batch(driver::now(), batch);
            let sent_now = idle && matches!(result, Ok(1));
            (result, sent_now)
        })
    }

    /// Queues every message of `batch`, in order, waiting for room in the send queue when it
    /// is full (as [`send`](Self::send) does for one). Messages leave `batch` as they are
    /// queued.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), except `QueueFull`; the failing message and those after it
    /// stay in `batch`.
    ///
    /// # Cancel safety
    /// Cancel safe: what left `batch` is queued, what is still there is not.
    pub async fn send_batch(&self, batch: &mut VecDeque<Bytes>) -> Result<(), WriteError> {
        if self.shared.is_driver_gone() {
            return Err(self.gone_error());
        }
        let mut sent_now = false;
        let result = self
            .shared
            .wait_for(|ep| {
                let idle = ep.pending() == 0;
                let result = ep.write_batch(driver::now(), batch);
                sent_now |= idle && matches!(result, Ok(1));
                driver::batch_sent(result, batch.is_empty())
            })
            .await
            .unwrap_or(Err(WriteError::Lost));
        self.shared.command_flush(|_| ((), sent_now));
        result
    }

    /// Queues a message, waiting for room in the send queue (`Config::max_send_queue`) instead
    /// of failing with [`WriteError::QueueFull`]: the way to let a slow reader slow the writer.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), except `QueueFull`.
    ///
    /// # Cancel safety
    /// Cancel safe: the message is queued only when this returns `Ok`.
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<(), WriteError> {
        let mut payload = Some(payload.into());
        if self.shared.is_driver_gone() {
            return Err(self.gone_error());
        }
        // The common case, room at once: one lock, as `try_send` (a queue without room for a
        // message of its own waits below, where a write that fails keeps its payload).
        let at_once = self.shared.command_flush(|ep| {
            let Some(p) = payload.take_if(|_| ep.send_capacity() > 0) else {
                return (None, false);
            };
            let idle = ep.pending() == 0;
            let result = ep.write_with_clock(driver::now, p);
            let sent_now = idle && result.is_ok();
            (Some(result), sent_now)
        });
        if let Some(result) = at_once {
            return result;
        }
        let mut idle = false;
        let result = self
            .shared
            .wait_for(|ep| {
                let p = payload.take()?;
                idle = ep.pending() == 0;
                match ep.write(driver::now(), p.clone()) {
                    Err(WriteError::QueueFull(_)) => {
                        payload = Some(p);
                        None
                    }
                    other => Some(other),
                }
            })
            .await
            .unwrap_or(Err(WriteError::Lost));
        let sent_now = idle && result.is_ok();
        self.shared.command_flush(|_| ((), sent_now));
        result
    }

    /// Closes gracefully: waits until every pending message is acknowledged (or the
    /// connection is lost); then the background task has ended. Writes fail from the moment
    /// this is called.
    ///
    /// # Errors
    /// [`CloseError::Lost`] if the connection was lost before everything was acknowledged.
    ///
    /// # Cancel safety
    /// Cancelling leaves the client closing in the background; calling again resumes waiting.
    pub async fn close(&self) -> Result<(), CloseError> {
        self.shared.command(ClientEndpoint::close);
        let reason = self
            .shared
            .wait_for(|ep| ep.end_reason())
            .await
            .unwrap_or(EndReason::Lost);
        self.driver.join().await;
        match reason {
            EndReason::Closed => Ok(()),
            _ => Err(CloseError::Lost),
        }
    }

    /// Messages written and not yet acknowledged by the server (0 once everything is).
    pub fn pending(&self) -> usize {
        self.shared.lock().pending()
    }

    /// Why writing fails once the driver has ended: how the connection ended, or `Lost` if the
    /// driver died with the connection still open.
    fn gone_error(&self) -> WriteError {
        match self.shared.lock().end_reason() {
            Some(EndReason::Closed) => WriteError::Closed,
            _ => WriteError::Lost,
        }
    }

    /// Counters of the client and its connection.
    pub fn stats(&self) -> EndpointStats {
        self.shared.lock().stats()
    }

    /// Whether the background task has ended.
    pub fn is_driver_finished(&self) -> bool {
        self.driver.is_finished()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("conn_id", &self.conn_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}
