//! In-process transports: duplex pipes (`mem://` addresses, or [`memory_duplex_pair`]) and
//! message channel pairs ([`memory_message_pair`]).

use std::collections::HashMap;
use std::io;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use super::seam::{BoxFuture, Transport, TransportListener};
use super::{
    ChannelTransport, Inbound, PendingConnection, RawConnection, TransportAddr, TransportConfig,
};

/// hawser's in-process transport (`mem://NAME`): duplex pipes between listeners and dialers
/// of one process, found by name.
pub(super) struct Mem(pub(super) TransportConfig);

impl Transport for Mem {
    fn scheme(&self) -> &str {
        "mem"
    }

    fn dial<'a>(&'a self, addr: &'a TransportAddr) -> BoxFuture<'a, io::Result<RawConnection>> {
        Box::pin(async move {
            let TransportAddr::Mem(name) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            dial(name, &self.0)
        })
    }

    fn listen<'a>(
        &'a self,
        addr: &'a TransportAddr,
    ) -> BoxFuture<'a, io::Result<Box<dyn TransportListener>>> {
        Box::pin(async move {
            let TransportAddr::Mem(name) = addr else {
                return Err(io::ErrorKind::InvalidInput.into());
            };
            let rx = bind(name, &self.0)?;
            Ok(Box::new(MemAccept {
                rx,
                name: name.clone(),
            }) as Box<dyn TransportListener>)
        })
    }
}

/// A `mem://` name's queue of new connections; dropping it frees the name.
struct MemAccept {
    rx: mpsc::Receiver<RawConnection>,
    name: String,
}

impl TransportListener for MemAccept {
    fn local_addr(&self) -> TransportAddr {
        TransportAddr::Mem(self.name.clone())
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<PendingConnection>> {
        Box::pin(async move { super::next_queued(&mut self.rx).await })
    }
}

impl Drop for MemAccept {
    fn drop(&mut self) {
        self.rx.close();
        unbind(&self.name);
    }
}

/// Two connected in-memory byte streams, each buffering at most `buffer` bytes per direction.
pub fn memory_duplex_pair(buffer: usize) -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(buffer)
}

/// Two connected in-memory message transports, each queueing at most `depth` messages of at
/// most `max_message` bytes per direction.
pub fn memory_message_pair(
    max_message: usize,
    depth: usize,
) -> (ChannelTransport, ChannelTransport) {
    let depth = depth.max(1);
    let (a_tx, b_rx) = mpsc::channel::<Bytes>(depth);
    let (b_tx, a_rx) = mpsc::channel::<Bytes>(depth);
    // Each side's outgoing Bytes must appear as io::Result<Bytes> at the other: a forwarding
    // task per direction keeps both ends the same ChannelTransport type.
    let (a_in_tx, a_in) = mpsc::channel(depth);
    let (b_in_tx, b_in) = mpsc::channel(depth);
    let fa = tokio::spawn(forward(b_rx, b_in_tx));
    let fb = tokio::spawn(forward(a_rx, a_in_tx));
    (
        ChannelTransport::new(a_tx, a_in, max_message, Some(fb)),
        ChannelTransport::new(b_tx, b_in, max_message, Some(fa)),
    )
}

async fn forward(mut from: mpsc::Receiver<Bytes>, to: mpsc::Sender<io::Result<Inbound>>) {
    while let Some(m) = from.recv().await {
        if to.send(Ok(Inbound::One(m))).await.is_err() {
            return;
        }
    }
}

type Hub = Mutex<HashMap<String, mpsc::Sender<RawConnection>>>;

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(Hub::default)
}

fn bind(name: &str, config: &TransportConfig) -> io::Result<mpsc::Receiver<RawConnection>> {
    let mut hub = hub().lock().unwrap_or_else(|e| e.into_inner());
    if hub.get(name).is_some_and(|tx| !tx.is_closed()) {
        return Err(io::ErrorKind::AddrInUse.into());
    }
    let (tx, rx) = mpsc::channel(config.accept_backlog.max(1));
    hub.insert(name.to_owned(), tx);
    Ok(rx)
}

fn unbind(name: &str) {
    let mut hub = hub().lock().unwrap_or_else(|e| e.into_inner());
    if hub.get(name).is_some_and(mpsc::Sender::is_closed) {
        hub.remove(name);
    }
}

fn dial(name: &str, config: &TransportConfig) -> io::Result<RawConnection> {
    let tx = hub()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
        .ok_or(io::ErrorKind::ConnectionRefused)?;
    let (ours, theirs) = tokio::io::duplex(config.mem_buffer.max(1));
    tx.try_send(RawConnection::bytes(theirs))
        .map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
    Ok(RawConnection::bytes(ours))
}
