//! The one background task per endpoint: moves datagrams between the socket and the sans-IO
//! endpoint, and time into it. It holds no protocol logic.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use hawser_proto::{DatagramEndpoint, Transmit};
use tokio::sync::{watch, Notify};
use tokio::time::Instant as TokioInstant;
use tracing::{debug, warn};

use super::socket::Socket;

/// Largest datagram the driver reads (the UDP maximum).
const RECV_BUFFER: usize = 65_536;
/// Most datagrams handled under one lock after a wake-up, before sending what they produced.
const RECV_BATCH: usize = 64;

/// What the driver needs from an endpoint beyond the datagram boundary.
pub(crate) trait Driven: DatagramEndpoint + Send + 'static {
    /// Whether the driver's work is done and it may exit (closed after flushing, or ended).
    fn is_finished(&self) -> bool;
}

/// State shared between the application's handle and the driver task.
pub(crate) struct Shared<E> {
    endpoint: Mutex<E>,
    /// Wakes the driver after an application command (write, close).
    wake_driver: Notify,
    /// Bumped after every change the driver makes; readers and closers wait on it.
    changed: watch::Sender<u64>,
}

impl<E: Driven> Shared<E> {
    pub fn new(endpoint: E) -> Arc<Shared<E>> {
        Arc::new(Shared {
            endpoint: Mutex::new(endpoint),
            wake_driver: Notify::new(),
            changed: watch::Sender::new(0),
        })
    }

    /// Locks the endpoint. A poisoned lock (a panic while held: a bug) is recovered, since the
    /// endpoint's state is only mutated through `&mut self` methods that keep it consistent.
    pub fn lock(&self) -> MutexGuard<'_, E> {
        self.endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs an application command, then wakes the driver so it sends what the command queued.
    pub fn command<R>(&self, f: impl FnOnce(&mut E) -> R) -> R {
        let result = f(&mut self.lock());
        self.wake_driver.notify_one();
        result
    }

    /// A receiver that resolves whenever the driver changed the endpoint.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until `ready` returns `Some`, re-checking after every change of the endpoint.
    pub async fn wait_for<R>(&self, mut ready: impl FnMut(&mut E) -> Option<R>) -> R {
        let mut changes = self.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(result) = ready(&mut self.lock()) {
                return result;
            }
            if changes.changed().await.is_err() {
                // The driver has ended; the state can no longer change. One last look.
                if let Some(result) = ready(&mut self.lock()) {
                    return result;
                }
                std::future::pending::<()>().await;
            }
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The current time on tokio's clock (so paused-time tests work), as a std `Instant`.
pub(crate) fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

/// The driver loop. Returns when the endpoint is finished.
pub(crate) async fn run<E: Driven>(shared: Arc<Shared<E>>, socket: Arc<Socket>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut outgoing: Vec<Transmit> = Vec::new();
    // One timer for the whole endpoint, re-armed only when the deadline moves.
    let far_future = TokioInstant::now() + std::time::Duration::from_secs(86_400 * 365);
    let sleep = tokio::time::sleep_until(far_future);
    tokio::pin!(sleep);
    let mut armed: Option<std::time::Instant> = None;
    loop {
        let (deadline, finished) = {
            let mut ep = shared.lock();
            while let Some(t) = ep.poll_transmit() {
                outgoing.push(t);
            }
            (ep.poll_timeout(), ep.is_finished())
        };
        for t in outgoing.drain(..) {
            send(&socket, &t.contents, t.destination).await;
        }
        shared.bump();
        if finished {
            debug!("driver finished");
            return;
        }
        if deadline != armed {
            armed = deadline;
            sleep
                .as_mut()
                .reset(deadline.map_or(far_future, TokioInstant::from_std));
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => {
                    let mut ep = shared.lock();
                    let now = now();
                    ep.handle_datagram(now, from, &buf[..len]);
                    // Drain what else is already waiting, under the same lock.
                    for _ in 1..RECV_BATCH {
                        match socket.try_recv_from(&mut buf) {
                            Ok((len, from)) => ep.handle_datagram(now, from, &buf[..len]),
                            Err(_) => break,
                        }
                    }
                }
                Err(err) => recv_error(err),
            },
            () = &mut sleep => {
                armed = None;
                shared.lock().handle_timeout(now());
            }
            () = shared.wake_driver.notified() => {}
        }
    }
}

async fn send(socket: &Socket, contents: &[u8], to: SocketAddr) {
    if let Err(err) = socket.send_now(contents, to).await {
        // UDP send errors (no buffer space, unreachable) are loss; the protocol retransmits.
        debug!(%to, %err, "send failed");
    }
}

fn recv_error(err: io::Error) {
    // On Linux an ICMP port-unreachable surfaces as ConnectionRefused on the next recv; it says
    // nothing reliable about the peer, so it is ignored like a lost datagram.
    if err.kind() != io::ErrorKind::ConnectionRefused {
        warn!(%err, "recv failed");
    }
}

/// Aborts a task when dropped (a future abandoned mid-way takes its task with it).
pub(crate) struct AbortOnDrop(pub Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
