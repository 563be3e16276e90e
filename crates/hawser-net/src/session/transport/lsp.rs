//! LSP message transport (`hawser_net::lsp`): a dialer is one LSP client; a listener is one LSP
//! server whose connections are told apart by their `ConnId`. Messages are at most
//! `TransportConfig::lsp.max_payload` bytes, or `lsp_loopback_message` on a loopback link
//! ([`TransportConfig::lsp_message_limit`]).
//!
//! LSP below the secure channel adds reliability, not security: in plaintext mode anyone on
//! the path can read and inject.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, Instrument};

use super::seam::{BoxFuture, Transport, TransportListener};
use super::{
    ChannelTransport, Inbound, PendingConnection, RawConnection, TransportAddr, TransportConfig,
};
use crate::lsp::{Client, ConnId, Server, ServerReadError, Socket};

/// Most LSP messages moved per batch call, each way (the channels' depth bounds the rest).
const BATCH: usize = 64;

/// hawser's LSP transport (`lsp://IP:PORT`).
pub(super) struct Lsp(pub(super) TransportConfig);

impl Transport for Lsp {
    fn scheme(&self) -> &str {
        "lsp"
    }

    fn dial<'a>(&'a self, addr: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>> {
        Box::pin(async move {
            let TransportAddr::Lsp(a) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            dial(*a, &self.0).await
        })
    }

    fn listen<'a>(
        &'a self,
        addr: &'a TransportAddr,
    ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>> {
        Box::pin(async move {
            let TransportAddr::Lsp(a) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            let (rx, guard, local) = bind(*a, &self.0).await?;
            let local = TransportAddr::Lsp(local);
            Ok(Box::new(LspAccept { rx, local, guard }) as Box<dyn TransportListener>)
        })
    }
}

/// An LSP server's queue of new connections.
struct LspAccept {
    rx: mpsc::Receiver<RawConnection>,
    local: TransportAddr,
    guard: ServerGuard,
}

impl TransportListener for LspAccept {
    fn local_addr(&self) -> TransportAddr {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<PendingConnection>> {
        Box::pin(async move { super::next_queued(&mut self.rx).await })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.guard.close())
    }
}

/// A listener's LSP server and the tasks sharing it: the one routing its messages and one
/// writer per connection. Dropped, it stops them; [`close`](Self::close) also waits until the
/// server's socket is closed.
struct ServerGuard {
    serve: Option<JoinHandle<()>>,
    server: Option<Arc<Server>>,
    /// Ends the connections' writers.
    stop: CancellationToken,
    writers: TaskTracker,
}

impl ServerGuard {
    /// Stops every task sharing the server, then the server itself, and returns once its
    /// socket is closed, so that the address can be bound again at once.
    async fn close(&mut self) {
        self.stop.cancel();
        if let Some(serve) = self.serve.take() {
            serve.abort();
            let _ = serve.await;
        }
        self.writers.close();
        self.writers.wait().await;
        if let Some(server) = self.server.take().and_then(Arc::into_inner) {
            server.shutdown().await;
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(serve) = &self.serve {
            serve.abort();
        }
    }
}

fn to_io(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, e)
}

/// Connects an LSP client to `addr`.
async fn dial(addr: SocketAddr, config: &TransportConfig) -> io::Result<RawConnection> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = Socket::bind(local).await?;
    let max_message = config.lsp_message_limit(addr);
    let mut lsp = config.lsp.clone();
    lsp.max_payload = max_message;
    let client = Client::connect_with(addr, fastrand::u32(..), lsp, socket)
        .await
        .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e))?;
    let client = Arc::new(client);
    let depth = config.channel_depth.max(1);
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(depth);
    let (in_tx, in_rx) = mpsc::channel(depth);
    let reader_client = client.clone();
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(BATCH);
        loop {
            got.clear();
            if let Err(e) = reader_client.read_batch(&mut got, BATCH).await {
                let _ = in_tx.send(Err(to_io(e))).await;
                return;
            }
            let batch = std::mem::replace(&mut got, Vec::with_capacity(BATCH));
            if in_tx.send(Ok(Inbound::Many(batch))).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut batch = Batch::new();
        while next_batch(&mut out_rx, &mut batch).await {
            if client.send_batch(&mut batch.queue).await.is_err() {
                return;
            }
        }
        // Flush what is pending, bounded by LSP's own loss detection.
        let _ = client.close().await;
    });
    Ok(RawConnection::messages(ChannelTransport::new(
        out_tx,
        in_rx,
        max_message,
        Some(reader),
    )))
}

/// Binds an LSP server; its task turns each new connection into a [`RawConnection`].
async fn bind(
    addr: SocketAddr,
    config: &TransportConfig,
) -> io::Result<(mpsc::Receiver<RawConnection>, ServerGuard, SocketAddr)> {
    let socket = Socket::bind(addr).await?;
    // Large enough for a loopback client's messages; each link keeps its own limit.
    let mut lsp = config.lsp.clone();
    lsp.max_payload = config.lsp_largest_message();
    let server = Arc::new(Server::bind_with(lsp, socket).map_err(to_io)?);
    let local = server.local_addr();
    let (accept_tx, accept_rx) = mpsc::channel(config.accept_backlog.max(1));
    let stop = CancellationToken::new();
    let writers = TaskTracker::new();
    let task = tokio::spawn(serve(
        server.clone(),
        accept_tx,
        config.clone(),
        stop.clone(),
        writers.clone(),
    ));
    let guard = ServerGuard {
        serve: Some(task),
        server: Some(server),
        stop,
        writers,
    };
    Ok((accept_rx, guard, local))
}

/// Routes each connection's messages to its own channel. A connection is offered to the
/// listener on its first message; when the backlog is full it is closed at once.
async fn serve(
    server: Arc<Server>,
    accept: mpsc::Sender<RawConnection>,
    config: TransportConfig,
    stop: CancellationToken,
    writers: TaskTracker,
) {
    let depth = config.channel_depth.max(1);
    // Bounded by LSP's `max_connections`.
    let mut conns: HashMap<ConnId, mpsc::Sender<io::Result<Inbound>>> = HashMap::new();
    // Connections closed here whose end has not been read yet: what they still deliver is
    // dropped, not taken for a new connection. Bounded by `max_connections` too.
    let mut closed: HashSet<ConnId> = HashSet::new();
    let mut got = Vec::with_capacity(BATCH);
    loop {
        got.clear();
        match server.read_batch(&mut got, BATCH).await {
            Ok(_) => {}
            Err(ServerReadError::ConnEnded(conn, _)) => {
                conns.remove(&conn);
                closed.remove(&conn);
                continue;
            }
            Err(_) => return,
        }
        let mut got = got.drain(..).peekable();
        while let Some((conn, payload)) = got.next() {
            if closed.contains(&conn) {
                continue;
            }
            if let Some(tx) = conns.get(&conn) {
                // This connection's run of messages goes over as one batch.
                let mut run = vec![payload];
                while let Some((_, p)) = got.next_if(|(c, _)| *c == conn) {
                    run.push(p);
                }
                // Waits while the session is behind: its mux windows bound how long.
                if tx.send(Ok(Inbound::Many(run))).await.is_err() {
                    conns.remove(&conn);
                    closed.insert(conn);
                    let _ = server.close_conn(conn);
                }
                continue;
            }
            let max_message = server
                .peer_addr(conn)
                .map_or(config.lsp.max_payload, |peer| {
                    config.lsp_message_limit(peer)
                });
            let (out_tx, out_rx) = mpsc::channel::<Bytes>(depth);
            let (in_tx, in_rx) = mpsc::channel(depth);
            // The channel is new and has room for `depth` ≥ 1 messages.
            let _ = in_tx.try_send(Ok(Inbound::One(payload)));
            let link =
                RawConnection::messages(ChannelTransport::new(out_tx, in_rx, max_message, None));
            if accept.try_send(link).is_err() {
                debug!(%conn, "lsp accept backlog full; closing");
                closed.insert(conn);
                let _ = server.close_conn(conn);
                continue;
            }
            conns.insert(conn, in_tx);
            let span = tracing::info_span!("lsp_conn", %conn, addr = tracing::field::Empty);
            if let Some(addr) = server.peer_addr(conn) {
                span.record("addr", tracing::field::display(addr));
            }
            writers.spawn(write_conn(server.clone(), conn, out_rx, stop.clone()).instrument(span));
        }
    }
}

/// Waits for the next outgoing message, then takes every other one already queued (up to
/// [`BATCH`]) into `batch`; false once the channel is closed and empty.
async fn next_batch(rx: &mut mpsc::Receiver<Bytes>, batch: &mut Batch) -> bool {
    if rx.recv_many(&mut batch.taken, BATCH).await == 0 {
        return false;
    }
    batch.queue.extend(batch.taken.drain(..));
    true
}

/// A writer's batch: what `recv_many` takes, moved into what `send_batch` queues.
struct Batch {
    taken: Vec<Bytes>,
    queue: VecDeque<Bytes>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            taken: Vec::with_capacity(BATCH),
            queue: VecDeque::with_capacity(BATCH),
        }
    }
}

async fn write_conn(
    server: Arc<Server>,
    conn: ConnId,
    mut out: mpsc::Receiver<Bytes>,
    stop: CancellationToken,
) {
    let write = async {
        let mut batch = Batch::new();
        while next_batch(&mut out, &mut batch).await {
            if server.send_batch(conn, &mut batch.queue).await.is_err() {
                return;
            }
        }
        let _ = server.close_conn(conn);
    };
    tokio::select! {
        () = write => {}
        () = stop.cancelled() => {}
    }
}
