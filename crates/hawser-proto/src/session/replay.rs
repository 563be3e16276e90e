//! The replay window of sealed datagrams: which of the last [`ReplayWindow::WIDTH`] counters
//! of one key were seen.

/// Which of the last 64 counters were seen (bit `i`: `top − i`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayWindow {
    top: u64,
    bits: u64,
}

impl ReplayWindow {
    /// Width of the window: counters more than this far below the highest seen are refused.
    pub const WIDTH: u64 = 64;

    /// Records `counter`; `false` if it was seen already or is too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        if self.bits == 0 {
            // Nothing seen yet.
            self.top = counter;
            self.bits = 1;
            return true;
        }
        if counter > self.top {
            let shift = counter - self.top;
            self.bits = if shift >= Self::WIDTH {
                1
            } else {
                (self.bits << shift) | 1
            };
            self.top = counter;
            return true;
        }
        let back = self.top - counter;
        if back >= Self::WIDTH {
            return false;
        }
        let mask = 1u64 << back;
        if self.bits & mask != 0 {
            return false;
        }
        self.bits |= mask;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_refuses_repeats_and_old_counters() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(5));
        assert!(!w.accept(5));
        assert!(w.accept(3), "late but new");
        assert!(!w.accept(3));
        assert!(w.accept(100));
        assert!(!w.accept(36), "64 below the top: out of the window");
        assert!(w.accept(37));
        assert!(!w.accept(37));
        assert!(w.accept(u64::MAX));
        assert!(!w.accept(100));
    }
}
