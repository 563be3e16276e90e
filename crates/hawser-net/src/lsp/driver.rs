//! The one background task per endpoint: moves datagrams between the socket and the sans-IO
//! endpoint, and time into it. It holds no protocol logic.
//!
//! # Who touches what
//! One endpoint is shared by the driver task, writing tasks and waiting readers ([`Shared`]):
//! the endpoint's mutex (every protocol step), the `unsent` datagrams (only under that mutex),
//! the flags of [`Handoff`] (who sends, whether a drain is due, whether acknowledgements are
//! held back, how many readers receive, whether the driver is gone), the driver's timer with
//! its `armed_at` cache, `wake_driver` (a `Notify`: writers and the timer wake the driver) and
//! `changed` (a `watch`: the driver and receiving readers wake other waiters).
//!
//! # Invariants
//! 1. **No lost wake-up.** A command that queues output either sends it itself, wakes the
//!    driver, or finds a drain due that the driver's next round performs; that round is never
//!    held back for acknowledgements.
//! 2. **Write order.** Datagrams leave in the order the endpoint made them: a task sends inline
//!    only while the driver is not sending what it drained earlier, and then under the endpoint's
//!    lock; what a non-blocking send could not take waits in `unsent` for the driver.
//! 3. **The socket is always read.** The driver receives whenever no reader does; the last
//!    reader to leave has the timer wake the driver, which looks again.
//! 4. **Close does not hang.** `close` is a command (1 applies): the driver's next round sees
//!    the endpoint finished, drains without holding anything back, and exits; its exit marks it
//!    gone and wakes every waiter, which then fails with [`DriverGone`] instead of waiting.
//!
//! 1 to 3 are model-checked: the flags and the decisions on them live in [`Handoff`], and the
//! loom tests in `handoff/model.rs` run that code under every interleaving of a driver with
//! writers and readers (`.ci/loom`). 4 rests on 1 and on the exit guard, and is exercised by the
//! socket tests that close endpoints.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

// How long acknowledgements caused by what a reader received may wait for the reply the
// application writes next (a reader that reads again, or a write the driver sends, takes them
// along at once); the protocol's tail-loss probe allows for it.
use hawser_proto::lsp::ACK_DELAY;
use hawser_proto::{DatagramEndpoint, Transmit};
use tokio::sync::{watch, Notify};
use tokio::time::Instant as TokioInstant;
use tracing::{debug, warn};

use super::handoff::Handoff;
use super::socket::Socket;

/// Largest datagram the driver reads (the UDP maximum).
const RECV_BUFFER: usize = 65_536;
/// Datagrams handled under one lock after a wake-up before sending what they produced (a
/// received buffer is always handled whole, so up to one buffer more).
const RECV_BATCH: usize = 64;
/// How soon the driver takes the socket back after the last task receiving from it (a waiting
/// reader) stopped. Not at once: a reader that reads in a loop is back long before, and waking
/// the driver at every departure would cost a task switch per message exchanged. The tokio
/// timer rounds it up to its next millisecond tick.
const TAKEOVER_DELAY: std::time::Duration = std::time::Duration::from_millis(1);

/// What the driver needs from an endpoint beyond the datagram boundary.
pub(crate) trait Driven: DatagramEndpoint + Send + 'static {
    /// Whether the driver's work is done and it may exit (closed after flushing, or ended).
    fn is_finished(&self) -> bool;
    /// Whether `poll_transmit` may have something to give.
    fn has_transmit(&self) -> bool;
}

/// State shared between the application's handle and the driver task.
///
/// # Who does the I/O
/// The driver task receives, runs timers and sends. Two shortcuts keep a request-response
/// exchange from paying a task switch at every step, as a plain UDP socket would not:
/// - a write on a connection with nothing outstanding is sent by the writing task itself,
///   at once, unless the driver is in the middle of sending (so that datagrams leave in the
///   order they were made); a write while data is in flight is left to the driver, which packs
///   everything written meanwhile into as few datagrams as possible;
/// - a task waiting in `read` (or any other wait) receives from the socket itself and handles
///   what arrived, instead of waiting for the driver to do it and wake it. If that ends its
///   wait, the acknowledgements it caused are held back for at most [`ACK_DELAY`], so that
///   the reply the application writes next carries them.
///
/// Both shortcuts take only non-blocking socket calls under the endpoint's lock; whatever
/// would block is left to the driver. They are off for a fault-injecting socket.
///
/// # Timers that do not wake the driver
/// The driver's one timer is shared ([`Timer`]): when a command or a waiting reader moves the
/// endpoint's next deadline earlier (a write arms a retransmission timeout, a receive holds
/// acknowledgements back), it resets the timer itself and registers the driver's waker with
/// it, instead of waking the driver to do so. The driver then wakes only when the timer
/// fires, which in a request-response exchange is rarely (an acknowledgement cancels the
/// retransmission before it is due). The same timer takes the socket back to the driver
/// [`TAKEOVER_DELAY`] after the last waiting reader left.
pub(crate) struct Shared<E> {
    endpoint: Mutex<E>,
    socket: Arc<Socket>,
    /// The receive buffer: whoever holds it may receive (the driver, or a waiting reader).
    recv_buf: tokio::sync::Mutex<Vec<u8>>,
    /// Datagrams made under the lock that a non-blocking send could not take; the driver sends
    /// them before anything newer. Only touched with `endpoint` locked.
    unsent: Mutex<Vec<Transmit>>,
    /// Who sends, who receives, whether a drain is due and whether acknowledgements are held
    /// back: the flags the tasks hand the I/O over with.
    handoff: Handoff,
    /// The deadline the driver's timer is armed for, as nanoseconds after `base`
    /// (`u64::MAX`: none), read without `timer`'s lock; written with it locked.
    armed_at: AtomicU64,
    /// The driver's timer. Locked after `endpoint` when both are.
    timer: Mutex<Timer>,
    base: std::time::Instant,
    /// Wakes the driver after an application command (write, close).
    wake_driver: Notify,
    /// Bumped after every change the driver makes; readers and closers wait on it.
    changed: watch::Sender<u64>,
}

/// The driver task ended while a caller waited for something only it could bring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DriverGone;

impl<E: Driven> Shared<E> {
    pub fn new(endpoint: E, socket: Arc<Socket>) -> Arc<Shared<E>> {
        Arc::new(Shared {
            endpoint: Mutex::new(endpoint),
            socket,
            // Allocated at the first receive (see `recv_buffer`).
            recv_buf: tokio::sync::Mutex::new(Vec::new()),
            unsent: Mutex::new(Vec::new()),
            handoff: Handoff::new(),
            armed_at: AtomicU64::new(u64::MAX),
            timer: Mutex::new(Timer::default()),
            base: now(),
            wake_driver: Notify::new(),
            changed: watch::Sender::new(0),
        })
    }

    /// Locks the endpoint. A poisoned lock (a panic while held: a bug) is recovered, since the
    /// endpoint's state is only mutated through `&mut self` methods that keep it consistent.
    pub fn lock(&self) -> MutexGuard<'_, E> {
        self.endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unsent(&self) -> MutexGuard<'_, Vec<Transmit>> {
        self.unsent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs an application command, then wakes the driver so it sends what the command queued.
    pub fn command<R>(&self, f: impl FnOnce(&mut E) -> R) -> R {
        self.command_flush(|ep| (f(ep), false))
    }

    /// Runs an application command that says whether to send what it queued at once, from this
    /// task (a write on a connection with nothing outstanding); wakes the driver unless that
    /// left it nothing to do.
    pub fn command_flush<R>(&self, f: impl FnOnce(&mut E) -> (R, bool)) -> R {
        let mut ep = self.lock();
        let (result, now_please) = f(&mut ep);
        if !now_please {
            // The driver was asked to drain and has not yet (it drains under this lock): it
            // takes this command's output along. A writer streaming small messages then wakes
            // the driver once per drain, not once per message.
            let wake = self.handoff.must_wake_for_queued();
            drop(ep);
            if wake {
                self.flush_soon();
            }
            return result;
        }
        let wake = self.flush_inline(&mut ep);
        drop(ep);
        if wake {
            self.wake_driver.notify_one();
        }
        result
    }

    /// Has the driver send everything, held-back acknowledgements included, without delay.
    fn flush_soon(&self) {
        self.handoff.request_drain();
        self.wake_driver.notify_one();
    }

    /// Holds back what a receive at `at` caused for a reply, for at most [`ACK_DELAY`].
    fn owe(&self, at: std::time::Instant) {
        if self.handoff.owe(self.nanos(at)) {
            // The driver wakes at the end of the delay (or sooner, if a reply takes them).
            self.arm_earlier(at + ACK_DELAY);
        }
    }

    /// Sends what the endpoint has to send from the calling task, if the socket takes it
    /// without waiting and the driver is not sending; whether the driver must still run (it
    /// has datagrams to send, or the endpoint finished); moves its timer earlier itself.
    fn flush_inline(&self, ep: &mut E) -> bool {
        if !self.socket.sends_inline() {
            return true;
        }
        let mut unsent = self.unsent();
        // Everything goes, held-back acknowledgements included.
        if !unsent.is_empty() || !self.handoff.start_inline_send() {
            return true;
        }
        while let Some(t) = ep.poll_transmit() {
            if !unsent.is_empty() || !self.socket.try_send(&t.contents, t.destination) {
                unsent.push(t);
            }
        }
        if !unsent.is_empty() || ep.is_finished() {
            return true;
        }
        self.follow_deadline(ep);
        false
    }

    /// Moves the driver's timer earlier if the endpoint's next deadline now is.
    fn follow_deadline(&self, ep: &E) {
        let armed = self.armed_at.load(Ordering::Acquire);
        if let Some(t) = ep.poll_timeout().filter(|&t| self.nanos(t) < armed) {
            self.arm_earlier(t);
        }
    }

    fn timer(&self) -> MutexGuard<'_, Timer> {
        self.timer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the driver's timer fire at `at` if it is set for later (or not at all), without
    /// waking the driver; if its timer cannot be reached yet (the driver has not polled it),
    /// wakes the driver instead, which then arms its timer itself.
    fn arm_earlier(&self, at: std::time::Instant) {
        let mut guard = self.timer();
        if self.armed_at.load(Ordering::Acquire) <= self.nanos(at) {
            return;
        }
        let timer = &mut *guard;
        let (Some(sleep), Some(waker)) = (timer.sleep.as_mut(), timer.waker.as_ref()) else {
            drop(guard);
            self.wake_driver.notify_one();
            return;
        };
        sleep.as_mut().reset(TokioInstant::from_std(at));
        // Polled with the driver's waker, so that tokio's timer wakes the driver, not us.
        if sleep
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready()
        {
            waker.wake_by_ref();
        }
        self.armed_at.store(self.nanos(at), Ordering::Release);
    }

    /// The driver sets its timer for `deadline` (it knows the endpoint's true next deadline,
    /// under the endpoint's lock: later than an earlier arming, if that one is moot now).
    fn set_timer(&self, deadline: Option<std::time::Instant>) {
        let mut timer = self.timer();
        let nanos = deadline.map_or(u64::MAX, |t| self.nanos(t));
        if self.armed_at.load(Ordering::Acquire) == nanos {
            return;
        }
        let at = deadline.map_or_else(far_future, TokioInstant::from_std);
        match timer.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().reset(at),
            None => timer.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        self.armed_at.store(nanos, Ordering::Release);
    }

    /// The driver's wait for its timer: ready when it fires (then parked until set again).
    fn poll_timer(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut guard = self.timer();
        let timer = &mut *guard;
        if !timer
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            timer.waker = Some(cx.waker().clone());
        }
        // The driver sets its timer before it first waits for it.
        let sleep = timer
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(far_future())));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // A fired sleep stays ready: park it far away until the next deadline is set.
        sleep.as_mut().reset(far_future());
        self.armed_at.store(u64::MAX, Ordering::Release);
        Poll::Ready(())
    }

    /// Until when held-back acknowledgements may still wait, if any are and the delay is not up.
    fn hold_until(&self, since: u64) -> Option<std::time::Instant> {
        let until = self.base + std::time::Duration::from_nanos(since) + ACK_DELAY;
        (until > now()).then_some(until)
    }

    fn nanos(&self, t: std::time::Instant) -> u64 {
        // Saturates: an instant before `base` counts as `base` (due at once either way).
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Whether the driver task has ended (after which nothing written is ever sent).
    pub fn is_driver_gone(&self) -> bool {
        self.handoff.is_driver_gone()
    }

    /// A receiver that resolves whenever the driver changed the endpoint.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until `ready` returns `Some`, re-checking after every change of the endpoint.
    /// While waiting, receives from the socket itself when it can (see [`Shared`]).
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
        if let Some(result) = self.ready_now(&mut ready) {
            return Ok(result);
        }
        // Waiting again without having written: no reply is coming to carry what an earlier
        // receive held back (a reader that takes everything per call, `read_batch`, lands
        // here every time), so it leaves now rather than after the delay.
        if self.handoff.is_owed() {
            self.flush_soon();
        }
        // Subscribe before looking again, so a change made in between is not missed.
        let mut changes = self.subscribe();
        let _reading = self.socket.sends_inline().then(|| ReaderGuard::new(self));
        loop {
            changes.borrow_and_update();
            if let Some(result) = self.ready_now(&mut ready) {
                return Ok(result);
            }
            if self.handoff.is_driver_gone() {
                return Err(DriverGone);
            }
            if !self.socket.sends_inline() {
                // The sender lives in `self`, so this never errors; the driver's exit guard
                // bumps.
                let _ = changes.changed().await;
                continue;
            }
            // Biased, the socket first: no random draw per wait, and a receive is looked at
            // first, as it is what a reader waits for; a change is not missed, since the
            // endpoint is looked at after either branch.
            tokio::select! {
                biased;
                received = self.receive() => match received {
                    Ok(at) => {
                        // Other waiters (a close, a send waiting for room) look again. Not
                        // inside `receive`: this task's own wait for a change has ended
                        // here, and waking itself would make tokio hand it to the other
                        // worker thread. This task's own subscription does not count: it
                        // looks at the endpoint next.
                        self.bump_unless_only(1);
                        let mut ep = self.lock();
                        let result = ready(&mut ep);
                        let pending = ep.has_transmit();
                        // Decided under the lock, so that a command that finds output
                        // pending also finds whether it is held back (`command_flush`).
                        if let Some(result) = result {
                            // The wait is over: what the datagrams caused may ride on the
                            // reply the application writes next.
                            if pending {
                                self.owe(at);
                            }
                            return Ok(result);
                        }
                        if pending {
                            self.flush_soon();
                        }
                        drop(ep);
                    }
                    Err(_) => {
                        // The driver reports receive errors; wait for it rather than spin.
                        let _ = changes.changed().await;
                    }
                },
                _ = changes.changed() => {}
            }
        }
    }

    /// `ready`, sending what an earlier receive held back if the answer is there (a reader
    /// that reads on leaves no reply to wait for).
    fn ready_now<R>(&self, ready: &mut impl FnMut(&mut E) -> Option<R>) -> Option<R> {
        let result = ready(&mut self.lock())?;
        if self.handoff.is_owed() {
            self.flush_soon();
        }
        Some(result)
    }

    fn bump(&self) {
        self.bump_unless_only(0);
    }

    /// Tells the waiters that the endpoint changed, unless the only subscriptions are the
    /// caller's own `own` ones: nobody else to tell, and a notification walks every shard of
    /// the channel's waiter list. A task that subscribes later looks at the endpoint after
    /// subscribing (`wait_for`), so it misses nothing.
    fn bump_unless_only(&self, own: usize) {
        if self.changed.receiver_count() > own {
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Waits for datagrams and handles them (up to [`RECV_BATCH`], and every datagram of each
    /// buffer); sends nothing, and leaves telling other waiters ([`Shared::bump`]) to the
    /// caller. Returns the time they were handled at. Cancel safe: a datagram is either handled or
    /// left in the socket.
    async fn receive(&self) -> io::Result<std::time::Instant> {
        loop {
            self.socket.readable().await?;
            let mut buf = self.recv_buf.lock().await;
            recv_buffer(&mut buf);
            let first = match self.socket.try_recv(&mut buf) {
                // An ICMP port-unreachable for an earlier send (reported on a connected
                // socket): nothing was received, nothing to tell (see `recv_error`).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                    ) =>
                {
                    continue
                }
                other => other?,
            };
            let mut ep = self.lock();
            let now = now();
            let mut handled = 0;
            let mut next = Some(first);
            // Handle it, then drain what else is already waiting, under the same lock. After
            // the first buffer a peek asks whether anything follows: in a request-response
            // exchange nothing does, and a peek that finds the socket empty costs less than a
            // full receive that does.
            let mut peeked = false;
            while let Some(r) = next.take() {
                for datagram in r.datagrams(&buf) {
                    ep.handle_datagram(now, r.from, datagram);
                    handled += 1;
                }
                if handled >= RECV_BATCH {
                    break;
                }
                if !peeked {
                    peeked = true;
                    if !self.socket.has_datagram() {
                        break;
                    }
                }
                next = self.socket.try_recv(&mut buf).ok();
            }
            self.follow_deadline(&ep);
            drop(ep);
            drop(buf);
            return Ok(now);
        }
    }

    /// The driver's receive: shared with waiting readers on a plain socket; on a
    /// fault-injecting one (whose receive keeps its own bookkeeping) the driver's alone.
    async fn driver_receive(&self) -> io::Result<()> {
        if self.socket.sends_inline() {
            if !self.handoff.has_readers() {
                return self.receive().await.map(drop);
            }
            // The last reader to leave arms the timer to wake the driver, which then looks
            // again (a new call of this function).
            return std::future::pending().await;
        }
        let mut buf = self.recv_buf.lock().await;
        recv_buffer(&mut buf);
        let r = self.socket.recv(&mut buf).await?;
        let mut ep = self.lock();
        let now = now();
        for datagram in r.datagrams(&buf) {
            ep.handle_datagram(now, r.from, datagram);
        }
        Ok(())
    }
}

/// For a `send_batch` waiting for queue room: `Some` once the batch is all queued or a write
/// failed for another reason than a full queue; `None` to wait for more room.
pub(crate) fn batch_sent(
    written: Result<usize, super::WriteError>,
    all_queued: bool,
) -> Option<Result<(), super::WriteError>> {
    match written {
        Ok(_) if all_queued => Some(Ok(())),
        Ok(_) | Err(super::WriteError::QueueFull(_)) => None,
        Err(e) => Some(Err(e)),
    }
}

/// Gives `buf` its [`RECV_BUFFER`] bytes the first time it is used.
fn recv_buffer(buf: &mut Vec<u8>) {
    if buf.len() < RECV_BUFFER {
        *buf = vec![0u8; RECV_BUFFER];
    }
}

/// Counts a task in `wait_for` among the readers of the socket while it lives.
struct ReaderGuard<'a, E: Driven>(&'a Shared<E>);

impl<'a, E: Driven> ReaderGuard<'a, E> {
    fn new(shared: &'a Shared<E>) -> Self {
        shared.handoff.enter_reader();
        ReaderGuard(shared)
    }
}

impl<E: Driven> Drop for ReaderGuard<'_, E> {
    fn drop(&mut self) {
        if self.0.handoff.leave_reader() {
            self.0.arm_earlier(now() + TAKEOVER_DELAY);
        }
    }
}

/// The driver's one timer, shared (see [`Shared`]).
#[derive(Default)]
struct Timer {
    /// Created by the driver when it first sets it.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The driver task's waker, from its last wait for the timer.
    waker: Option<Waker>,
}

/// Where a timer with nothing to wait for is parked.
fn far_future() -> TokioInstant {
    TokioInstant::now() + std::time::Duration::from_secs(86_400 * 365)
}

/// The current time on tokio's clock (so paused-time tests work), as a std `Instant`.
pub(crate) fn now() -> std::time::Instant {
    TokioInstant::now().into_std()
}

/// Marks the driver gone when the driver future ends, returns or unwinds, or is aborted.
struct ExitGuard<'a, E: Driven>(&'a Shared<E>);

impl<E: Driven> Drop for ExitGuard<'_, E> {
    fn drop(&mut self) {
        self.0.handoff.set_driver_gone();
        self.0.bump();
    }
}

/// The driver loop. Returns when the endpoint is finished.
pub(crate) async fn run<E: Driven>(shared: Arc<Shared<E>>) {
    let _exit = ExitGuard(&shared);
    let socket = shared.socket.clone();
    let mut outgoing: Vec<Transmit> = Vec::new();
    // Where runs of datagrams are glued together for one segmented send.
    let mut scratch: Vec<u8> = Vec::new();
    loop {
        let finished = {
            let mut ep = shared.lock();
            let finished = ep.is_finished();
            outgoing.append(&mut shared.unsent());
            // Acknowledgements held back for a reply wait until the delay is up.
            // Under the lock: a command after this sees whether it must wake the driver.
            let hold = shared
                .handoff
                .start_round(finished, |since| shared.hold_until(since));
            if hold.is_none() {
                while let Some(t) = ep.poll_transmit() {
                    outgoing.push(t);
                }
            }
            if !outgoing.is_empty() {
                shared.handoff.driver_sends();
            }
            let deadline = match (ep.poll_timeout(), hold) {
                (Some(t), Some(h)) => Some(t.min(h)),
                (t, h) => t.or(h),
            };
            // Set under the lock, so a command that looks at it sees this round's value.
            shared.set_timer(deadline);
            finished
        };
        if !outgoing.is_empty() {
            socket.send_all(&outgoing, &mut scratch).await;
            outgoing.clear();
            shared.handoff.driver_sent();
        }
        shared.bump();
        if finished {
            debug!("driver finished");
            return;
        }
        tokio::select! {
            received = shared.driver_receive() => {
                if let Err(err) = received {
                    if recv_error(err) {
                        // A persistent error must not spin the loop.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            },
            () = std::future::poll_fn(|cx| shared.poll_timer(cx)) => {
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

    /// Stops the task and waits until it is gone (its future dropped, with what it held).
    pub async fn abort_and_join(&self) {
        if let Some(task) = self.take() {
            task.abort();
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
