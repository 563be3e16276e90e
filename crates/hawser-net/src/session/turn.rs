//! Wakers that let one task drive several parts in one turn: the session driver polls the
//! yamux connection and the futures it runs beside it (a node's writer), and what one part
//! does often wakes another (a write queues a frame for the connection, which then hands the
//! writer room back). With the task's own waker, each such wake-up would schedule the task
//! again and cost it a whole extra turn. Each part instead gets a
//! [`Part`] waker: during a turn it only marks its part, and the turn polls marked parts
//! again before it ends; outside a turn it also wakes the task.
//!
//! Whether a turn is running and whether a part was woken since the turn last looked live in
//! one atomic word, changed only by read-modify-write operations, which every thread sees in
//! one order: a wake-up either comes before the turn's end (which then sees it and has the
//! task polled again) or after it (and then sees no turn running, and wakes the task). A wake-up
//! is never lost (checked under loom in `turn::model`, `.ci/loom`).

use std::sync::Arc;
use std::task::{Wake, Waker};

#[cfg(hawser_loom)]
use loom::sync::atomic::{
    AtomicBool, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Release,
};
#[cfg(not(hawser_loom))]
use std::sync::atomic::{
    AtomicBool, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Release,
};

use futures_util::task::AtomicWaker;

/// [`Turn::state`]: a turn is running.
const RUNNING: u8 = 1;
/// [`Turn::state`]: a part was woken since the last pass began.
const WOKEN: u8 = 2;

/// What a task's parts share: the task's waker, and the state word ([`RUNNING`], [`WOKEN`]).
pub(crate) struct Turn {
    task: AtomicWaker,
    state: AtomicU8,
}

impl Default for Turn {
    fn default() -> Turn {
        Turn {
            task: AtomicWaker::new(),
            state: AtomicU8::new(0),
        }
    }
}

/// The waker of one part of the task, with its mark.
pub(crate) struct Part {
    turn: Arc<Turn>,
    marked: AtomicBool,
}

impl Wake for Part {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.marked.store(true, Release);
        let before = self.turn.state.fetch_or(WOKEN, AcqRel);
        if before & RUNNING == 0 {
            self.turn.task.wake();
        }
    }
}

impl Part {
    /// A part of `turn`'s task, marked: a new part is polled in the next pass.
    pub fn new(turn: &Arc<Turn>) -> Arc<Part> {
        let part = Arc::new(Part {
            turn: turn.clone(),
            marked: AtomicBool::new(true),
        });
        turn.state.fetch_or(WOKEN, AcqRel);
        part
    }

    /// Takes the part's mark: whether it was woken since the last take.
    pub fn take(&self) -> bool {
        self.marked.swap(false, Acquire)
    }

    /// The part's waker.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }
}

impl Turn {
    /// Starts a turn of the task polled with `task`: wake-ups now only mark their part.
    pub fn begin(&self, task: &Waker) {
        self.task.register(task);
        self.state.fetch_or(RUNNING, AcqRel);
    }

    /// Starts a pass over the parts: whether any was woken since the last pass began (each
    /// part's own mark then says which).
    pub fn pass(&self) -> bool {
        self.state.fetch_and(!WOKEN, AcqRel) & WOKEN != 0
    }

    /// Ends the turn: wake-ups wake the task again. Whether a part was woken after the last
    /// pass began: the caller then has the task polled again.
    pub fn end(&self) -> bool {
        self.state.fetch_and(!RUNNING, AcqRel) & WOKEN != 0
    }
}

#[cfg(all(test, hawser_loom))]
mod model {
    //! A wake-up from another thread during a turn is either seen by the turn or wakes the
    //! task: never lost.

    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// A task waker counting its wake-ups (loom's own atomics need not apply: it is only read
    /// after the threads joined).
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_up_during_a_turn_is_never_lost() {
        loom::model(|| {
            let turn = Arc::new(Turn::default());
            let part = Part::new(&turn);
            // The first turn takes the initial mark.
            let task = Arc::new(Counting(AtomicUsize::new(0)));
            turn.begin(&Waker::from(task.clone()));
            assert!(turn.pass() && part.take());
            let waker = part.waker();
            let other = loom::thread::spawn(move || waker.wake());
            // The turn makes one more pass, then ends.
            let seen_in_turn = turn.pass() && part.take();
            let again = turn.end();
            other.join().unwrap();
            let woken = task.0.load(std::sync::atomic::Ordering::SeqCst) > 0;
            assert!(
                seen_in_turn || again || woken,
                "a wake-up was lost: not seen in the turn, not after it, and the task not woken"
            );
        });
    }
}
