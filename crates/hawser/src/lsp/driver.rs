//! The one background task per endpoint: moves datagrams between the socket and the sans-IO
//! endpoint, and time into it. It holds no protocol logic.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hawser_proto::{DatagramEndpoint, Transmit};
use tokio::sync::{watch, Notify};
use tokio::time::Instant as TokioInstant;
use tracing::{debug, warn};

use super::socket::Socket;

/// Largest datagram the driver reads (the UDP maximum).
const RECV_BUFFER: usize = 65_536;
/// Datagrams handled under one lock after a wake-up before sending what they produced (a
/// received buffer is always handled whole, so up to one buffer more).
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
    /// Set when the driver task has ended, normally or not (a panic in a user hook, a bug).
    driver_gone: AtomicBool,
}

/// The driver task ended while a caller waited for something only it could bring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DriverGone;

impl<E: Driven> Shared<E> {
    pub fn new(endpoint: E) -> Arc<Shared<E>> {
        Arc::new(Shared {
            endpoint: Mutex::new(endpoint),
            wake_driver: Notify::new(),
            changed: watch::Sender::new(0),
            driver_gone: AtomicBool::new(false),
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

    /// Whether the driver task has ended (after which nothing written is ever sent).
    pub fn is_driver_gone(&self) -> bool {
        self.driver_gone.load(Ordering::Acquire)
    }

    /// A receiver that resolves whenever the driver changed the endpoint.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until `ready` returns `Some`, re-checking after every change of the endpoint.
    ///
    /// # Errors
    /// [`DriverGone`] if the driver has ended and `ready` still says no: nothing can change
    /// the endpoint any more, so waiting would be forever.
    pub async fn wait_for<R>(
        &self,
        mut ready: impl FnMut(&mut E) -> Option<R>,
    ) -> Result<R, DriverGone> {
        // Fast path, taken by nearly every read of a busy connection: no subscription needed
        // when the answer is already there.
        if let Some(result) = ready(&mut self.lock()) {
            return Ok(result);
        }
        // Subscribe before looking again, so a change made in between is not missed.
        let mut changes = self.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(result) = ready(&mut self.lock()) {
                return Ok(result);
            }
            if self.driver_gone.load(Ordering::Acquire) {
                return Err(DriverGone);
            }
            // The sender lives in `self`, so this never errors; the driver's exit guard bumps.
            let _ = changes.changed().await;
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

/// Marks the driver gone when the driver future ends, returns or unwinds, or is aborted.
struct ExitGuard<'a, E: Driven>(&'a Shared<E>);

impl<E: Driven> Drop for ExitGuard<'_, E> {
    fn drop(&mut self) {
        self.0.driver_gone.store(true, Ordering::Release);
        self.0.bump();
    }
}

/// The driver loop. Returns when the endpoint is finished.
pub(crate) async fn run<E: Driven>(shared: Arc<Shared<E>>, socket: Arc<Socket>) {
    let _exit = ExitGuard(&shared);
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut outgoing: Vec<Transmit> = Vec::new();
    // Where runs of datagrams are glued together for one segmented send.
    let mut scratch: Vec<u8> = Vec::new();
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
        if !outgoing.is_empty() {
            socket.send_all(&outgoing, &mut scratch).await;
            outgoing.clear();
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
            received = socket.recv(&mut buf) => match received {
                Ok(first) => {
                    let mut ep = shared.lock();
                    let now = now();
                    let mut handled = 0;
                    let mut next = Some(first);
                    // Handle it, then drain what else is already waiting, under the same lock.
                    while let Some(r) = next.take() {
                        for datagram in r.datagrams(&buf) {
                            ep.handle_datagram(now, r.from, datagram);
                            handled += 1;
                        }
                        if handled < RECV_BATCH {
                            next = socket.try_recv(&mut buf).ok();
                        }
                    }
                }
                Err(err) => {
                    if recv_error(err) {
                        // A persistent error must not spin the loop.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            },
            () = &mut sleep => {
                // A fired sleep stays ready: park it far away until the next deadline is armed.
                armed = None;
                sleep.as_mut().reset(far_future);
                shared.lock().handle_timeout(now());
            }
            () = shared.wake_driver.notified() => {}
        }
    }
}

/// Logs a receive error; returns whether it is unexpected (worth pausing before retrying).
fn recv_error(err: io::Error) -> bool {
    // On Linux an ICMP port-unreachable surfaces as ConnectionRefused on the next recv; it says
    // nothing reliable about the peer, so it is ignored like a lost datagram.
    if err.kind() == io::ErrorKind::ConnectionRefused {
        return false;
    }
    warn!(%err, "recv failed");
    true
}

/// The handle of an endpoint's driver task: joined by `close`, aborted when dropped (a client
/// or server dropped without `close`, or a `connect` future abandoned mid-way, takes its task
/// with it).
pub(crate) struct DriverTask(Mutex<Option<tokio::task::JoinHandle<()>>>);

impl DriverTask {
    pub fn new(task: tokio::task::JoinHandle<()>) -> DriverTask {
        DriverTask(Mutex::new(Some(task)))
    }

    fn take(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Waits for the task to end (at once if it already did, or was joined before).
    pub async fn join(&self) {
        if let Some(task) = self.take() {
            let _ = task.await;
        }
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(tokio::task::JoinHandle::is_finished)
    }
}

impl Drop for DriverTask {
    fn drop(&mut self) {
        if let Some(task) = self.take() {
            task.abort();
        }
    }
}
