//! The async LSP server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hawser_proto::lsp::{Config, EndpointStats, Params, ServerEndpoint, ServerRead};
use hawser_proto::wire::ConnId;

use super::driver::{self, Driven, DriverTask, Shared};
use super::error::{CloseError, ConnectError, ServerReadError, WriteError};
use super::socket::Socket;

impl Driven for ServerEndpoint {
    fn is_finished(&self) -> bool {
        self.is_closed()
    }

    fn has_transmit(&self) -> bool {
        Self::has_transmit(self)
    }
}

/// An LSP server: accepts clients on one UDP socket and exchanges reliable, in-order messages
/// with each.
///
/// Dropping a server without [`close`](Self::close) stops its background task at once.
pub struct Server {
    shared: Arc<Shared<ServerEndpoint>>,
    driver: DriverTask,
    local_addr: SocketAddr,
}

impl Server {
    /// Binds `addr` (port 0 picks a free one) and starts serving with the protocol parameters
    /// `params`, every other setting at its default (binary codec).
    ///
    /// # Errors
    /// Invalid parameters; the socket's bind error.
    pub async fn bind(addr: SocketAddr, params: Params) -> Result<Server, ConnectError> {
        let socket = Socket::bind(addr).await?;
        Server::bind_with(Config::new(params), socket)
    }

    /// Starts serving on a socket of the caller's with a full [`Config`].
    ///
    /// # Errors
    /// Invalid settings; the socket has no local address.
    ///
    /// # Panics
    /// If called outside a tokio runtime.
    pub fn bind_with(config: Config, socket: impl Into<Socket>) -> Result<Server, ConnectError> {
        let endpoint = ServerEndpoint::new(config)?;
        let socket = Arc::new(socket.into());
        let local_addr = socket.local_addr()?;
        let shared = Shared::new(endpoint, socket);
        let span = tracing::info_span!("lsp_server", local = %local_addr);
        let task = tokio::spawn(tracing::Instrument::instrument(
            driver::run(shared.clone()),
            span,
        ));
        Ok(Server {
            shared,
            driver: DriverTask::new(task),
            local_addr,
        })
    }

    /// Stops the server at once, as dropping it does, and returns once its socket is closed
    /// (dropping it leaves that to its background task, shortly after).
    pub(crate) async fn shutdown(self) {
        self.driver.abort_and_join().await;
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next message from any client, with its connection id. A connection that ended
    /// (lost, or closed with [`close_conn`](Self::close_conn)) is reported once, after all of
    /// its messages.
    ///
    /// # Errors
    /// [`ServerReadError::ConnEnded`] names an ended connection;
    /// [`ServerReadError::ServerClosed`] once [`close`](Self::close) was called and nothing is
    /// left to read.
    ///
    /// # Cancel safety
    /// Cancel safe: a message is only taken when it is returned.
    pub async fn read(&self) -> Result<(ConnId, Bytes), ServerReadError> {
        self.shared
            .wait_for(read_one)
            .await
            .unwrap_or(Err(ServerReadError::ServerClosed))
    }

    /// Like [`read`](Self::read), for many messages at once: waits for the next item, then
    /// appends up to `max` (at least 1) messages that are ready to `out`, in order, under one
    /// lock. Returns how many it appended. A connection's end stops the batch before it and is
    /// returned, as by `read`, by the call that finds it first.
    ///
    /// # Errors
    /// As [`read`](Self::read), when the next item is an end rather than data.
    ///
    /// # Cancel safety
    /// Cancel safe: messages are only taken when this returns.
    pub async fn read_batch(
        &self,
        out: &mut Vec<(ConnId, Bytes)>,
        max: usize,
    ) -> Result<usize, ServerReadError> {
        let max = max.max(1);
        self.shared
            .wait_for(|ep| {
                let n = ep.read_data_batch(out, max);
                if n > 0 {
                    return Some(Ok(n));
                }
                read_one(ep).map(|r| {
                    r.map(|item| {
                        out.push(item);
                        1
                    })
                })
            })
            .await
            .unwrap_or(Err(ServerReadError::ServerClosed))
    }

    /// Queues a message for connection `conn`; it goes out at once if the window allows.
    /// Never blocks.
    ///
    /// # Errors
    /// [`WriteError`]: unknown, closed or lost connection, full queue, payload too large.
    pub fn try_send(&self, conn: ConnId, payload: impl Into<Bytes>) -> Result<(), WriteError> {
        let payload = payload.into();
        // Nothing outstanding on `conn`: send it from here at once (request-response
        // latency); else the driver packs it with what else is written meanwhile.
        self.shared.command_flush(|ep| {
            let idle = ep.pending(conn) == 0;
            // A message that joins the bundle being gathered is not timed: no clock reading.
            let result = ep.write_with_clock(driver::now, conn, payload);
            let sent_now = idle && result.is_ok();
            (result, sent_now)
        })
    }

    /// Queues the messages at the front of `batch` on `conn`, in order, under one lock, one
    /// clock reading and one wake-up of the driver: the fast way to write many small messages.
    /// Removes from `batch` what it queued and returns how many; stops at the first message it
    /// cannot queue (a full send queue, a payload too large), which stays at the front of
    /// `batch`. Never blocks.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), when not even the first message could be queued.
    pub fn try_send_batch(
        &self,
        conn: ConnId,
        batch: &mut VecDeque<Bytes>,
    ) -> Result<usize, WriteError> {
        self.shared.command_flush(|ep| {
            // A lone message on an idle connection leaves from here at once, as with `try_send`;
            // more go to the driver, which sends runs of datagrams in one segmented send.
            let idle = ep.pending(conn) == 0;
            let result = ep.write_batch(driver::now(), conn, batch);
            let sent_now = idle && matches!(result, Ok(1));
            (result, sent_now)
        })
    }

    /// Queues every message of `batch` on `conn`, in order, waiting for room in the send queue
    /// when it is full (as [`send`](Self::send) does for one). Messages leave `batch` as they
    /// are queued.
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), except `QueueFull`; the failing message and those after it
    /// stay in `batch`.
    ///
    /// # Cancel safety
    /// Cancel safe: what left `batch` is queued, what is still there is not.
    pub async fn send_batch(
        &self,
        conn: ConnId,
        batch: &mut VecDeque<Bytes>,
    ) -> Result<(), WriteError> {
        if self.shared.is_driver_gone() {
            return Err(WriteError::Closed);
        }
        let mut sent_now = false;
        let result = self
            .shared
            .wait_for(|ep| {
                let idle = ep.pending(conn) == 0;
                let result = ep.write_batch(driver::now(), conn, batch);
                sent_now |= idle && matches!(result, Ok(1));
                driver::batch_sent(result, batch.is_empty())
            })
            .await
            .unwrap_or(Err(WriteError::Closed));
        self.shared.command_flush(|_| ((), sent_now));
        result
    }

    /// Queues a message for `conn`, waiting for room in its send queue
    /// (`Config::max_send_queue`) instead of failing with [`WriteError::QueueFull`].
    ///
    /// # Errors
    /// As [`try_send`](Self::try_send), except `QueueFull`.
    ///
    /// # Cancel safety
    /// Cancel safe: the message is queued only when this returns `Ok`.
    pub async fn send(&self, conn: ConnId, payload: impl Into<Bytes>) -> Result<(), WriteError> {
        let mut payload = Some(payload.into());
        if self.shared.is_driver_gone() {
            return Err(WriteError::Closed);
        }
        let mut idle = false;
        let result = self
            .shared
            .wait_for(|ep| {
                let p = payload.take()?;
                idle = ep.pending(conn) == 0;
                match ep.write(driver::now(), conn, p.clone()) {
                    Err(WriteError::QueueFull(_)) => {
                        payload = Some(p);
                        None
                    }
                    other => Some(other),
                }
            })
            .await
            .unwrap_or(Err(WriteError::Closed));
        let sent_now = idle && result.is_ok();
        self.shared.command_flush(|_| ((), sent_now));
        result
    }

    /// Closes one connection: its pending messages are flushed, then the server goes silent to
    /// it. Never blocks.
    ///
    /// # Errors
    /// [`WriteError::UnknownConn`] (or `Lost`/`Closed`) if it is not open.
    pub fn close_conn(&self, conn: ConnId) -> Result<(), WriteError> {
        self.shared.command(|ep| ep.close_conn(conn))
    }

    /// Closes the server: waits until every pending message on every connection is
    /// acknowledged (or its connection lost); then the background task has ended. Writes fail
    /// from the moment this is called.
    ///
    /// # Errors
    /// [`CloseError::Lost`] if a client was lost before its messages were acknowledged.
    ///
    /// # Cancel safety
    /// Cancelling leaves the server closing in the background; calling again resumes waiting.
    pub async fn close(&self) -> Result<(), CloseError> {
        self.shared.command(ServerEndpoint::close);
        let lost = self
            .shared
            .wait_for(|ep| ep.is_closed().then(|| ep.lost_while_closing()))
            .await
            .unwrap_or(true);
        self.driver.join().await;
        if lost {
            Err(CloseError::Lost)
        } else {
            Ok(())
        }
    }

    /// Messages written on `conn` and not yet acknowledged by its client.
    pub fn pending(&self, conn: ConnId) -> usize {
        self.shared.lock().pending(conn)
    }

    /// The address of `conn`'s client, while the server holds the connection.
    pub fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.shared.lock().peer_addr(conn)
    }

    /// Number of open (or closing) connections.
    pub fn connection_count(&self) -> usize {
        self.shared.lock().live_connections()
    }

    /// Counters of the server and the sum over its connections.
    pub fn stats(&self) -> EndpointStats {
        self.shared.lock().stats()
    }

    /// Whether the background task has ended.
    pub fn is_driver_finished(&self) -> bool {
        self.driver.is_finished()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// One read: data in order; a connection's end; once closed, the one error with no id.
fn read_one(ep: &mut ServerEndpoint) -> Option<Result<(ConnId, Bytes), ServerReadError>> {
    loop {
        break match ep.read() {
            Some(ServerRead::Data(conn, payload)) => Some(Ok((conn, payload))),
            // Once the server is closed, its connections' ends are not news: every read after
            // the buffered data is the one error with no id (spec 4).
            Some(ServerRead::Ended(..)) if ep.is_closing() => continue,
            Some(ServerRead::Ended(conn, reason)) => {
                Some(Err(ServerReadError::ConnEnded(conn, reason)))
            }
            None if ep.is_closing() => Some(Err(ServerReadError::ServerClosed)),
            None => None,
        };
    }
}
