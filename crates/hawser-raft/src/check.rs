//! A linearizability checker for key-value histories.
//!
//! Clients record each operation's invocation and return in a [`History`]: writes of a value to
//! a key and reads of a key, with timestamps from one monotonic clock. An operation whose
//! outcome is unknown (a timeout, a lost connection) is recorded as [`Outcome::Unknown`]: an
//! unknown write may have taken effect at any time after its invocation, or never; an unknown
//! read tells nothing and is ignored.
//!
//! [`check`] decides whether the history is linearizable for a map of registers. Keys are
//! independent, so each key is checked on its own (P-compositionality). Per key it runs the
//! Wing & Gong search with Lowe's memoization, as porcupine does: depth-first, it linearizes next
//! any pending operation invoked before the earliest return among pending operations, if the
//! register's state allows it, and it never revisits a (set of linearized operations, register
//! value) pair. The number of visited states is bounded ([`SEARCH_LIMIT`]); past it the check
//! is inconclusive and says so.
//!
//! An unknown write whose value no read returned is left out before the search: leaving out a
//! write nobody observed never breaks a linearization, and each such write would otherwise double
//! the states to search. Values are assumed unique per write, as tests make them.
//!
//! Acknowledged writes that are later lost show up as a read returning an older value (or none)
//! after the write returned, which the search rejects; a test makes losses visible by ending
//! with one read per key.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// States the search may visit per key before giving up.
pub const SEARCH_LIMIT: usize = 2_000_000;

/// An operation on the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Write {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Read `key`.
    Read {
        /// The key.
        key: String,
    },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Write { key, .. } | Op::Read { key } => key,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The write was acknowledged.
    Written,
    /// The read returned this value.
    Read(Option<String>),
    /// The outcome is unknown.
    Unknown,
}

/// One completed operation: who ran it, when, and how it ended. Times are nanoseconds since
/// the history began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The client.
    pub client: u64,
    /// The operation.
    pub op: Op,
    /// When it was invoked.
    pub call: u64,
    /// When it returned (for [`Outcome::Unknown`], when the client gave up).
    pub ret: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// An operation invoked but not yet finished; pass it to [`History::finish`].
#[derive(Debug)]
#[must_use = "an invoked operation must be finished to be recorded"]
pub struct Pending {
    client: u64,
    op: Op,
    call: u64,
}

/// Why a history could not be recorded or is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The history holds its maximum number of events.
    #[error("history full ({0} events)")]
    Full(usize),
    /// A read saw a value no write wrote.
    #[error("key {key:?}: read of a value never written: {value:?}")]
    UnknownValue {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// No linearization exists for this key.
    #[error("key {key:?}: not linearizable ({events} events)")]
    NotLinearizable {
        /// The key.
        key: String,
        /// How many events the key's history has.
        events: usize,
    },
    /// The search visited [`SEARCH_LIMIT`] states without an answer.
    #[error("key {key:?}: search limit reached, inconclusive")]
    Inconclusive {
        /// The key.
        key: String,
    },
}

/// A bounded, shareable recorder of operations. Cheap to clone.
#[derive(Clone)]
pub struct History {
    start: Instant,
    limit: usize,
    events: Arc<Mutex<Vec<Event>>>,
}

impl History {
    /// An empty history that holds at most `limit` events.
    pub fn new(limit: usize) -> Self {
        Self {
            start: Instant::now(),
            limit,
            events: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Records that `client` invokes `op` now.
    pub fn invoke(&self, client: u64, op: Op) -> Pending {
        Pending {
            client,
            op,
            call: self.now(),
        }
    }

    /// Records that `pending` returned now with `outcome`.
    ///
    /// # Errors
    ///
    /// [`CheckError::Full`] when the history already holds its limit.
    pub fn finish(&self, pending: Pending, outcome: Outcome) -> Result<(), CheckError> {
        let ret = self.now();
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() >= self.limit {
            return Err(CheckError::Full(self.limit));
        }
        events.push(Event {
            client: pending.client,
            op: pending.op,
            call: pending.call,
            ret,
            outcome,
        });
        Ok(())
    }

    /// The recorded events.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks the recorded events; see [`check`].
    ///
    /// # Errors
    ///
    /// See [`check`].
    pub fn check(&self) -> Result<(), CheckError> {
        check(&self.events())
    }
}

/// One operation of one key, with values interned.
#[derive(Clone, Copy, Debug)]
struct KeyOp {
    call: u64,
    ret: u64,
    /// `Some(v)` for a write of v; `None` for a read.
    write: Option<u32>,
    /// The value a read returned.
    read: Option<u32>,
}

/// Checks that `events` are linearizable for a map of registers that starts empty.
///
/// # Errors
///
/// The first key that is not linearizable, reads a never-written value, or exhausts the search.
pub fn check(events: &[Event]) -> Result<(), CheckError> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_key.entry(e.op.key()).or_default().push(e);
    }
    for (key, events) in by_key {
        check_key(key, &events)?;
    }
    Ok(())
}

fn check_key(key: &str, events: &[&Event]) -> Result<(), CheckError> {
    let mut values: HashMap<&str, u32> = HashMap::new();
    for e in events {
        if let Op::Write { value, .. } = &e.op {
            let next = u32::try_from(values.len()).unwrap_or(u32::MAX);
            values.entry(value.as_str()).or_insert(next);
        }
    }
    let observed: HashSet<&str> = events
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Read(Some(v)) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let mut ops = Vec::new();
    for e in events {
        let op = match (&e.op, &e.outcome) {
            (Op::Write { value, .. }, Outcome::Unknown) if !observed.contains(value.as_str()) => {
                continue
            }
            (Op::Write { value, .. }, outcome) => KeyOp {
                call: e.call,
                ret: if *outcome == Outcome::Unknown {
                    u64::MAX
                } else {
                    e.ret
                },
                write: Some(values[value.as_str()]),
                read: None,
            },
            (Op::Read { .. }, Outcome::Read(seen)) => {
                let read =
                    match seen {
                        None => None,
                        Some(v) => Some(*values.get(v.as_str()).ok_or_else(|| {
                            CheckError::UnknownValue {
                                key: key.to_owned(),
                                value: v.clone(),
                            }
                        })?),
                    };
                KeyOp {
                    call: e.call,
                    ret: e.ret,
                    write: None,
                    read,
                }
            }
            // Unknown reads say nothing; a read marked written is not a real outcome.
            (Op::Read { .. }, _) => continue,
        };
        ops.push(op);
    }
    ops.sort_by_key(|o| o.call);
    match search(&ops) {
        Some(true) => Ok(()),
        Some(false) => Err(CheckError::NotLinearizable {
            key: key.to_owned(),
            events: ops.len(),
        }),
        None => Err(CheckError::Inconclusive {
            key: key.to_owned(),
        }),
    }
}

/// A set of linearized operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn with(&self, i: usize) -> Self {
        let mut b = self.clone();
        b.0[i / 64] |= 1 << (i % 64);
        b
    }
}

/// Depth-first search for a linearization of `ops` (sorted by call time). `None` when the
/// search limit is reached.
fn search(ops: &[KeyOp]) -> Option<bool> {
    let mut seen: HashSet<(Bits, Option<u32>)> = HashSet::new();
    let mut stack = vec![(Bits::new(ops.len()), None::<u32>)];
    while let Some((done, reg)) = stack.pop() {
        if !seen.insert((done.clone(), reg)) {
            continue;
        }
        if seen.len() > SEARCH_LIMIT {
            return None;
        }
        let pending = || (0..ops.len()).filter(|i| !done.has(*i));
        // Only unknown writes left: each can take effect last (or never) without contradiction.
        if pending().all(|i| ops[i].write.is_some() && ops[i].ret == u64::MAX) {
            return Some(true);
        }
        let min_ret = pending().map(|i| ops[i].ret).min().unwrap_or(u64::MAX);
        for i in pending() {
            let op = ops[i];
            if op.call > min_ret {
                break;
            }
            match op.write {
                Some(v) => stack.push((done.with(i), Some(v))),
                None if op.read == reg => stack.push((done.with(i), reg)),
                None => {}
            }
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: u64, key: &str, value: &str, call: u64, ret: u64) -> Event {
        Event {
            client,
            op: Op::Write {
                key: key.into(),
                value: value.into(),
            },
            call,
            ret,
            outcome: Outcome::Written,
        }
    }

    fn w_unknown(client: u64, key: &str, value: &str, call: u64) -> Event {
        Event {
            outcome: Outcome::Unknown,
            ..w(client, key, value, call, call + 1)
        }
    }

    fn r(client: u64, key: &str, seen: Option<&str>, call: u64, ret: u64) -> Event {
        Event {
            client,
            op: Op::Read { key: key.into() },
            call,
            ret,
            outcome: Outcome::Read(seen.map(str::to_owned)),
        }
    }

    #[test]
    fn a_sequential_history_is_linearizable() {
        let h = [
            r(1, "k", None, 0, 1),
            w(1, "k", "a", 2, 3),
            r(2, "k", Some("a"), 4, 5),
            w(2, "k", "b", 6, 7),
            r(1, "k", Some("b"), 8, 9),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // Two concurrent writes; reads during and after pick one consistent order (b then a).
        let h = [
            w(1, "k", "a", 0, 10),
            w(2, "k", "b", 1, 9),
            r(3, "k", Some("b"), 2, 3),
            r(3, "k", Some("a"), 11, 12),
        ];
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_not_linearizable() {
        let h = [
            w(1, "k", "a", 0, 1),
            w(1, "k", "b", 2, 3),
            r(2, "k", Some("a"), 4, 5),
        ];
        assert!(matches!(check(&h), Err(CheckError::NotLinearizable { .. })));
    }

    #[test]
    fn a_lost_acknowledged_write_is_not_linearizable() {
        let h = [w(1, "k", "a", 0, 1), r(2, "k", None, 5, 6)];
        assert!(matches!(check(&h), Err(CheckError::NotLinearizable { .. })));
    }

    #[test]
    fn reads_cannot_flip_between_values() {
        // a and b overlap, but once a read saw b after a, a cannot come back without a write.
        let h = [
            w(1, "k", "a", 0, 10),
            w(2, "k", "b", 0, 10),
            r(3, "k", Some("a"), 11, 12),
            r(3, "k", Some("b"), 13, 14),
            r(3, "k", Some("a"), 15, 16),
        ];
        assert!(matches!(check(&h), Err(CheckError::NotLinearizable { .. })));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let never = [w_unknown(1, "k", "a", 0), r(2, "k", None, 100, 101)];
        assert_eq!(check(&never), Ok(()));
        let late = [
            w_unknown(1, "k", "a", 0),
            r(2, "k", None, 100, 101),
            r(2, "k", Some("a"), 200, 201),
        ];
        assert_eq!(check(&late), Ok(()));
        let flip = [
            w_unknown(1, "k", "a", 0),
            r(2, "k", Some("a"), 100, 101),
            r(2, "k", None, 200, 201),
        ];
        assert!(matches!(
            check(&flip),
            Err(CheckError::NotLinearizable { .. })
        ));
    }

    #[test]
    fn keys_are_independent_and_unknown_values_are_reported() {
        let ok = [
            w(1, "x", "1", 0, 1),
            r(1, "y", None, 2, 3),
            r(1, "x", Some("1"), 4, 5),
        ];
        assert_eq!(check(&ok), Ok(()));
        let ghost = [r(1, "x", Some("ghost"), 0, 1)];
        assert!(matches!(
            check(&ghost),
            Err(CheckError::UnknownValue { .. })
        ));
    }

    #[test]
    fn the_history_is_bounded() {
        let h = History::new(1);
        let p = h.invoke(1, Op::Read { key: "k".into() });
        h.finish(p, Outcome::Read(None)).unwrap();
        let p = h.invoke(1, Op::Read { key: "k".into() });
        assert_eq!(h.finish(p, Outcome::Read(None)), Err(CheckError::Full(1)));
        assert_eq!(h.check(), Ok(()));
    }
}
