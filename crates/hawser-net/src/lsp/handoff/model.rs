//! Model checks of the hand-off: loom runs each test under every interleaving of its threads
//! (up to a bound on preemptions) and fails on a broken assertion or on a deadlock, which is
//! how a lost wake-up shows (the driver waits for a wake-up nobody will send).
//!
//! The threads call the production [`Handoff`] in the order `driver::Shared` does, on a
//! stand-in endpoint (a queue of messages) and socket (a list of what left). The tokio
//! primitives become loom's: `Notify::notify_one` (which keeps a permit) is loom's `Notify`;
//! the driver's timer, when it only takes the socket back or ends a hold, is a wake-up.
//!
//! Run with `RUSTFLAGS="--cfg hawser_loom" cargo test -p hawser-net --lib --release lsp::handoff`
//! (`.ci/loom`).

use loom::sync::{Arc, Mutex, Notify};
use loom::thread;

use super::Handoff;

/// The endpoint, reduced to what the hand-off decides on.
#[derive(Default)]
struct Endpoint {
    /// Messages written and not yet taken by a drain or an inline send, in write order.
    queued: Vec<u32>,
    /// Acknowledgements receives caused, not yet sent.
    acks: usize,
    /// `close` was called: the driver's next drain is its last.
    closed: bool,
    /// A command left output to a drain already due instead of waking the driver.
    counting_on_drain: bool,
}

impl Endpoint {
    fn has_transmit(&self) -> bool {
        !self.queued.is_empty() || self.acks > 0
    }

    /// Everything to send, as `poll_transmit` until `None`.
    fn drain(&mut self) -> Vec<u32> {
        self.acks = 0;
        self.counting_on_drain = false;
        std::mem::take(&mut self.queued)
    }
}

/// The socket: datagrams waiting to be received, and who listens for them.
#[derive(Default)]
struct Socket {
    /// Messages sent, in the order they left.
    sent: Vec<u32>,
    /// Datagrams arrived and not yet received.
    waiting: u32,
    /// Datagrams received, by the driver or a reader.
    received: u32,
    /// The driver waits for the socket to become readable (it had no readers to leave it to).
    driver_listens: bool,
}

struct Model {
    endpoint: Mutex<Endpoint>,
    handoff: Handoff,
    wake_driver: Notify,
    socket: Mutex<Socket>,
}

impl Model {
    fn new() -> Arc<Model> {
        Arc::new(Model {
            endpoint: Mutex::new(Endpoint::default()),
            handoff: Handoff::new(),
            wake_driver: Notify::new(),
            socket: Mutex::new(Socket::default()),
        })
    }

    /// `Shared::command_flush`: queues `msg` (or closes), sending at once from this thread if
    /// `at_once` (a write on an idle connection), else leaving it to the driver.
    fn command(&self, msg: Option<u32>, at_once: bool) {
        let mut ep = self.endpoint.lock().unwrap();
        match msg {
            Some(m) => ep.queued.push(m),
            None => ep.closed = true,
        }
        if !at_once {
            let wake = self.handoff.must_wake_for_queued();
            ep.counting_on_drain |= !wake;
            drop(ep);
            if wake {
                self.flush_soon();
            }
            return;
        }
        // `flush_inline`: the socket takes everything, sent under the endpoint's lock.
        let wake = if self.handoff.start_inline_send() {
            let out = ep.drain();
            self.socket.lock().unwrap().sent.extend(out);
            ep.closed
        } else {
            true
        };
        drop(ep);
        if wake {
            self.wake_driver.notify();
        }
    }

    /// `Shared::flush_soon`.
    fn flush_soon(&self) {
        self.handoff.request_drain();
        self.wake_driver.notify();
    }

    /// `Shared::ready_now` and the start of `wait_for`: a reader that reads on sends what an
    /// earlier receive held back.
    fn read_on(&self) {
        if self.handoff.is_owed() {
            self.flush_soon();
        }
    }

    /// A waiting reader's receive that ends its wait (`wait_for`): what it caused is held back
    /// for the reply the application writes next. (Arming the timer for the end of the hold
    /// is left out: the hold outlasts every model run.)
    fn receive_ending_wait(&self, at: u64) {
        let mut ep = self.endpoint.lock().unwrap();
        ep.acks += 1;
        if ep.has_transmit() {
            self.handoff.owe(at);
        }
    }

    /// A reader receives from the socket while it waits (`ReaderGuard` and `receive`).
    fn reader_receives(&self) {
        self.handoff.enter_reader();
        {
            let mut socket = self.socket.lock().unwrap();
            socket.received += std::mem::take(&mut socket.waiting);
        }
        if self.handoff.leave_reader() {
            // The timer takes the socket back to the driver.
            self.wake_driver.notify();
        }
    }

    /// A datagram arrives; readiness wakes the driver if it listens.
    fn arrive(&self) {
        let mut socket = self.socket.lock().unwrap();
        socket.waiting += 1;
        if socket.driver_listens {
            self.wake_driver.notify();
        }
    }

    /// One round of `driver::run` before its wait: drain (unless acknowledgements are held
    /// back, which in the model they are until the delay would end, that is never), then send
    /// outside the lock. Returns whether the endpoint is finished.
    fn driver_round(&self) -> bool {
        let mut ep = self.endpoint.lock().unwrap();
        let finished = ep.closed;
        let out = match self.handoff.start_round(finished, |_since| Some(())) {
            None => ep.drain(),
            Some(()) => {
                assert!(
                    !ep.counting_on_drain,
                    "a command counted on a due drain, and the driver held its output back"
                );
                Vec::new()
            }
        };
        if !out.is_empty() {
            self.handoff.driver_sends();
        }
        drop(ep);
        if !out.is_empty() {
            self.socket.lock().unwrap().sent.extend(out);
            self.handoff.driver_sent();
        }
        finished
    }

    /// `driver::run` for the sending side: rounds until the endpoint is closed.
    fn run_sending_driver(&self) {
        while !self.driver_round() {
            self.wake_driver.wait();
        }
    }

    /// `driver::run` for the receiving side (`driver_receive`): receives unless readers do,
    /// until `expected` datagrams were received by anyone.
    fn run_receiving_driver(&self, expected: u32) {
        loop {
            {
                let mut socket = self.socket.lock().unwrap();
                socket.driver_listens = !self.handoff.has_readers();
                if socket.driver_listens {
                    socket.received += std::mem::take(&mut socket.waiting);
                }
                if socket.received == expected {
                    return;
                }
            }
            self.wake_driver.wait();
        }
    }

    fn sent(&self) -> Vec<u32> {
        self.socket.lock().unwrap().sent.clone()
    }
}

/// Runs `f` under every interleaving with up to `preemptions` preemptions: two are enough
/// for each race below; three explore more, at a cost that grows steeply with the threads.
fn check(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(f);
}

/// Writes leave in write order whether the writer or the driver sends them, and a write left
/// to the driver always wakes it (else it waits for ever: a deadlock).
#[test]
fn writes_leave_in_order_and_wake_the_driver() {
    check(3, || {
        let m = Model::new();
        let driver = thread::spawn({
            let m = m.clone();
            move || m.run_sending_driver()
        });
        m.command(Some(1), true);
        m.command(Some(2), false);
        m.command(Some(3), true);
        m.command(None, false);
        driver.join().unwrap();
        assert_eq!(m.sent(), [1, 2, 3]);
    });
}

/// Two writers, each leaving its messages to the driver: none is lost for want of a wake-up,
/// and each writer's messages leave in its order.
#[test]
fn writes_left_to_the_driver_are_all_sent() {
    check(2, || {
        let m = Model::new();
        let driver = thread::spawn({
            let m = m.clone();
            move || m.run_sending_driver()
        });
        let other = thread::spawn({
            let m = m.clone();
            move || {
                m.command(Some(10), false);
                m.command(Some(11), true);
            }
        });
        m.command(Some(1), false);
        m.command(Some(2), false);
        other.join().unwrap();
        m.command(None, false);
        driver.join().unwrap();
        let sent = m.sent();
        assert_eq!(sent.len(), 4, "{sent:?}");
        let mine: Vec<_> = sent.iter().copied().filter(|&s| s < 10).collect();
        let theirs: Vec<_> = sent.iter().copied().filter(|&s| s >= 10).collect();
        assert_eq!(
            (mine.as_slice(), theirs.as_slice()),
            (&[1, 2][..], &[10, 11][..])
        );
    });
}

/// A reader reading on asks for a drain; a write counting on that drain is not held back by a
/// receive that owes acknowledgements in between. (It was: the driver held the write back
/// with the acknowledgements until the delay ended, up to a timer tick.)
#[test]
fn a_due_drain_is_not_held_back() {
    check(3, || {
        let m = Model::new();
        // An earlier receive held acknowledgements back.
        m.handoff.owe(0);
        let driver = thread::spawn({
            let m = m.clone();
            move || m.run_sending_driver()
        });
        let reader = thread::spawn({
            let m = m.clone();
            move || {
                m.read_on();
                m.receive_ending_wait(1);
            }
        });
        m.command(Some(1), false);
        reader.join().unwrap();
        m.command(None, false);
        driver.join().unwrap();
        assert_eq!(m.sent(), [1]);
    });
}

/// A datagram is always received, by a waiting reader or by the driver, however its arrival
/// interleaves with a reader coming and going (else the driver waits for ever).
#[test]
fn the_socket_is_always_read() {
    check(3, || {
        let m = Model::new();
        let driver = thread::spawn({
            let m = m.clone();
            move || m.run_receiving_driver(2)
        });
        let reader = thread::spawn({
            let m = m.clone();
            move || m.reader_receives()
        });
        m.arrive();
        m.arrive();
        reader.join().unwrap();
        driver.join().unwrap();
        assert_eq!(m.socket.lock().unwrap().waiting, 0);
    });
}
