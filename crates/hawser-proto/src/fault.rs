//! Seeded, sans-IO fault injection for datagrams: loss, delay, duplication, reordering, LSP-aware
//! payload damage, and a hook that may watch or rewrite every datagram.
//!
//! # Organization
//! - [`FaultConfig`] says how often each fault happens; [`FaultConfig::validate`] rejects
//!   impossible percentages with a [`FaultConfigError`].
//! - [`FaultInjector`] applies a config to one stream of datagrams (one link direction, or one
//!   socket direction): [`FaultInjector::process`] turns one datagram into zero or more
//!   `(deliver_at, bytes)` pairs. It never reads a clock (time is the `now` argument) and draws
//!   every decision from its own [`fastrand::Rng`] seeded at construction, so the same seed and the
//!   same inputs always give the same outputs.
//! - [`Hook`] sees every datagram first and may rewrite or drop it; [`message_hook`] builds one
//!   from a closure over decoded [`Message`]s. [`Verdict`] is a hook's answer.
//! - [`FaultStats`] counts what the injector did.
//!
//! # The faults, in the order they apply
//! 1. The hook, if any. [`Verdict::Drop`] ends processing (counted in `hooked_drops`).
//! 2. `drop_percent`: the datagram is lost.
//! 3. Payload damage, per Data message of a datagram the codec can decode (others pass untouched):
//!    `corrupt_percent` flips one payload byte, `shorten_percent` makes the payload one byte
//!    shorter than its declared `size`, `lengthen_percent` appends 1 to 8 bytes beyond `size`.
//!    `size` and `checksum` stay as they were, and the datagram is re-encoded with the codec.
//! 4. `duplicate_percent`: the datagram is delivered twice.
//! 5. `delay_percent`: delivered `delay` late (copies keep their mutual order), or else
//!    `reorder_percent`: delivered late by a random duration in (0, window], where the window is
//!    `delay`, or [`DEFAULT_REORDER_WINDOW`] when `delay` is zero. Datagrams sent during that time
//!    overtake it. (Reordering is stateless on purpose: an injector need not know destinations,
//!    so one can serve a whole socket.)
//!
//! Each fault is rolled only when its percentage is above zero, so a config of zeros consumes no
//! randomness and passes every datagram untouched, at `now`.

mod mutate;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::wire::{Codec, Message};

pub use mutate::message_hook;

/// The reorder window used when [`FaultConfig::delay`] is zero.
pub const DEFAULT_REORDER_WINDOW: Duration = Duration::from_millis(10);

/// How often each fault happens. Percentages are `0.0..=100.0`; the default injects no fault.
///
/// Out-of-range values are clamped by the injector (NaN counts as 0); call
/// [`validate`](Self::validate) to reject them instead.
///
/// ```
/// use std::time::Duration;
/// use hawser_proto::fault::FaultConfig;
///
/// let lossy = FaultConfig::dropping(20.0);
/// assert!(lossy.validate().is_ok());
/// let late = lossy
///     .with_delay_percent(50.0)
///     .with_delay(Duration::from_millis(500));
/// assert!(!late.is_noop());
/// ```
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultConfig {
    /// Chance that a datagram is lost.
    pub drop_percent: f64,
    /// Chance that a datagram is delivered [`delay`](Self::delay) late.
    pub delay_percent: f64,
    /// How late a delayed datagram is; also the reorder window when non-zero.
    pub delay: Duration,
    /// Chance that a datagram is delivered twice.
    pub duplicate_percent: f64,
    /// Chance that a datagram (not already delayed) is held back by a random part of the window.
    pub reorder_percent: f64,
    /// Chance, per Data message, that one payload byte is flipped.
    pub corrupt_percent: f64,
    /// Chance, per non-empty Data message, that its payload loses its last byte.
    pub shorten_percent: f64,
    /// Chance, per Data message, that 1 to 8 bytes are appended to its payload.
    pub lengthen_percent: f64,
}

impl FaultConfig {
    /// No faults at all (the same as `Default`).
    pub fn none() -> FaultConfig {
        FaultConfig::default()
    }

    /// Loses `percent` of the datagrams, nothing else.
    pub fn dropping(percent: f64) -> FaultConfig {
        FaultConfig {
            drop_percent: percent,
            ..FaultConfig::default()
        }
    }

    /// Loses every datagram: the link is down.
    pub fn drop_all() -> FaultConfig {
        FaultConfig::dropping(100.0)
    }

    /// This config with `drop_percent` set: the chance that a datagram is lost.
    #[must_use]
    pub fn with_drop_percent(mut self, drop_percent: f64) -> FaultConfig {
        self.drop_percent = drop_percent;
        self
    }

    /// This config with `delay_percent` set: the chance that a datagram is delivered late.
    #[must_use]
    pub fn with_delay_percent(mut self, delay_percent: f64) -> FaultConfig {
        self.delay_percent = delay_percent;
        self
    }

    /// This config with `delay` set: how late a delayed datagram is (also the reorder window).
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> FaultConfig {
        self.delay = delay;
        self
    }

    /// This config with `duplicate_percent` set: the chance that a datagram is delivered twice.
    #[must_use]
    pub fn with_duplicate_percent(mut self, duplicate_percent: f64) -> FaultConfig {
        self.duplicate_percent = duplicate_percent;
        self
    }

    /// This config with `reorder_percent` set: the chance that a datagram is held back by a random part of the window.
    #[must_use]
    pub fn with_reorder_percent(mut self, reorder_percent: f64) -> FaultConfig {
        self.reorder_percent = reorder_percent;
        self
    }

    /// This config with `corrupt_percent` set: the chance, per Data message, that one payload byte is flipped.
    #[must_use]
    pub fn with_corrupt_percent(mut self, corrupt_percent: f64) -> FaultConfig {
        self.corrupt_percent = corrupt_percent;
        self
    }

    /// This config with `shorten_percent` set: the chance, per non-empty Data message, that its payload loses its last byte.
    #[must_use]
    pub fn with_shorten_percent(mut self, shorten_percent: f64) -> FaultConfig {
        self.shorten_percent = shorten_percent;
        self
    }

    /// This config with `lengthen_percent` set: the chance, per Data message, that bytes are appended to its payload.
    #[must_use]
    pub fn with_lengthen_percent(mut self, lengthen_percent: f64) -> FaultConfig {
        self.lengthen_percent = lengthen_percent;
        self
    }

    /// Whether this config injects no random fault (hooks aside).
    pub fn is_noop(&self) -> bool {
        self.percents()
            .iter()
            .all(|(_, p)| clamp_percent(*p) == 0.0)
    }

    /// Checks every percentage is a number within `0.0..=100.0`.
    ///
    /// # Errors
    /// [`FaultConfigError::PercentOutOfRange`] naming the first bad field.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        for (field, value) in self.percents() {
            if !(0.0..=100.0).contains(&value) {
                return Err(FaultConfigError::PercentOutOfRange { field, value });
            }
        }
        Ok(())
    }

    fn percents(&self) -> [(&'static str, f64); 7] {
        [
            ("drop_percent", self.drop_percent),
            ("delay_percent", self.delay_percent),
            ("duplicate_percent", self.duplicate_percent),
            ("reorder_percent", self.reorder_percent),
            ("corrupt_percent", self.corrupt_percent),
            ("shorten_percent", self.shorten_percent),
            ("lengthen_percent", self.lengthen_percent),
        ]
    }

    fn damages_payloads(&self) -> bool {
        [
            self.corrupt_percent,
            self.shorten_percent,
            self.lengthen_percent,
        ]
        .iter()
        .any(|p| clamp_percent(*p) > 0.0)
    }

    fn reorder_window(&self) -> Duration {
        if self.delay.is_zero() {
            DEFAULT_REORDER_WINDOW
        } else {
            self.delay
        }
    }
}

/// Why a [`FaultConfig`] was rejected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultConfigError {
    /// A percentage is negative, above 100, or NaN.
    #[error("{field} must be within 0..=100, got {value}")]
    PercentOutOfRange {
        /// The field's name, e.g. `drop_percent`.
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
}

/// What a [`Hook`] decides about one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The datagram goes on (possibly rewritten) to the random faults.
    Pass,
    /// The datagram is lost.
    Drop,
}

/// Sees every datagram before the random faults; may rewrite it in place or drop it.
///
/// Build one from a closure over decoded messages with [`message_hook`].
pub type Hook = Box<dyn FnMut(&mut Vec<u8>) -> Verdict + Send>;

/// What a [`FaultInjector`] has done so far. Payload damage counts Data messages, everything else
/// counts datagrams.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default)
)]
pub struct FaultStats {
    /// Datagrams given to [`FaultInjector::process`].
    pub seen: u64,
    /// Datagrams lost to `drop_percent`.
    pub dropped: u64,
    /// Datagrams delayed by `delay`.
    pub delayed: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// Datagrams held back by a random part of the reorder window.
    pub reordered: u64,
    /// Data messages with one payload byte flipped.
    pub corrupted: u64,
    /// Data messages whose payload lost its last byte.
    pub shortened: u64,
    /// Data messages whose payload grew beyond `size`.
    pub lengthened: u64,
    /// Datagrams a hook dropped.
    pub hooked_drops: u64,
}

/// Applies a [`FaultConfig`] (and an optional [`Hook`]) to a stream of datagrams, deterministically
/// from a seed. Sans-IO: the caller delivers the output at the instants it says.
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use hawser_proto::fault::{FaultConfig, FaultInjector};
/// use hawser_proto::wire::Codec;
///
/// let now = Instant::now();
/// let mut faults = FaultInjector::new(FaultConfig::default(), Codec::Json, 7);
/// let mut out = Vec::new();
/// faults.process(now, Bytes::from_static(b"hi"), &mut out);
/// assert_eq!(out, vec![(now, Bytes::from_static(b"hi"))]);
///
/// faults.set_config(
///     FaultConfig::default()
///         .with_delay_percent(100.0)
///         .with_delay(Duration::from_millis(500)),
/// );
/// out.clear();
/// faults.process(now, Bytes::from_static(b"late"), &mut out);
/// assert_eq!(out[0].0, now + Duration::from_millis(500));
/// ```
pub struct FaultInjector {
    config: FaultConfig,
    codec: Codec,
    rng: fastrand::Rng,
    hook: Option<Hook>,
    stats: FaultStats,
    /// Scratch space for decoding, kept to avoid an allocation per datagram.
    msgs: Vec<Message>,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("config", &self.config)
            .field("codec", &self.codec)
            .field("hook", &self.hook.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl FaultInjector {
    /// An injector applying `config`, decoding with `codec` for payload damage, drawing every
    /// decision from an RNG seeded with `seed`.
    pub fn new(config: FaultConfig, codec: Codec, seed: u64) -> FaultInjector {
        FaultInjector {
            config,
            codec,
            rng: fastrand::Rng::with_seed(seed),
            hook: None,
            stats: FaultStats::default(),
            msgs: Vec::new(),
        }
    }

    /// Replaces the config; applies from the next datagram on. Datagrams already handed out keep
    /// their delivery times.
    pub fn set_config(&mut self, config: FaultConfig) {
        self.config = config;
    }

    /// The config in force.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Replaces the codec used to decode datagrams for payload damage. (A hook made by
    /// [`message_hook`] keeps the codec it was made with.)
    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// The codec used for payload damage.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Installs (or, with `None`, removes) the hook that sees every datagram first.
    pub fn set_hook(&mut self, hook: Option<Hook>) {
        self.hook = hook;
    }

    /// Whether a hook is installed.
    pub fn has_hook(&self) -> bool {
        self.hook.is_some()
    }

    /// What the injector has done so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Runs one datagram sent at `now` through the hook and the faults, appending to `out` each
    /// copy to deliver with its delivery instant: none if it was lost, two if duplicated, later
    /// than `now` if delayed or reordered. Never panics, whatever the bytes.
    pub fn process(&mut self, now: Instant, datagram: Bytes, out: &mut Vec<(Instant, Bytes)>) {
        self.stats.seen += 1;
        let mut datagram = datagram;
        if let Some(hook) = self.hook.as_mut() {
            let mut buf = Vec::from(datagram);
            if hook(&mut buf) == Verdict::Drop {
                self.stats.hooked_drops += 1;
                return;
            }
            datagram = Bytes::from(buf);
        }
        if self.roll(self.config.drop_percent) {
            self.stats.dropped += 1;
            return;
        }
        if self.config.damages_payloads() {
            datagram = self.damage(datagram);
        }
        let copies = if self.roll(self.config.duplicate_percent) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let deliver_at = if self.roll(self.config.delay_percent) {
            self.stats.delayed += 1;
            now + self.config.delay
        } else if self.roll(self.config.reorder_percent) {
            self.stats.reordered += 1;
            now + self.reorder_hold()
        } else {
            now
        };
        if copies == 2 {
            out.push((deliver_at, datagram.clone()));
        }
        out.push((deliver_at, datagram));
    }

    /// A random hold in (0, window], at microsecond granularity.
    fn reorder_hold(&mut self) -> Duration {
        let window = self.config.reorder_window();
        let micros = u64::try_from(window.as_micros()).unwrap_or(u64::MAX).max(1);
        Duration::from_micros(self.rng.u64(1..=micros))
    }

    /// Rolls a `percent` chance; consumes no randomness when it is zero.
    fn roll(&mut self, percent: f64) -> bool {
        let p = clamp_percent(percent);
        p > 0.0 && self.rng.f64() * 100.0 < p
    }

    /// Applies corrupt/shorten/lengthen to each Data message; undecodable datagrams pass as is.
    fn damage(&mut self, datagram: Bytes) -> Bytes {
        let mut msgs = std::mem::take(&mut self.msgs);
        msgs.clear();
        let result = if self.codec.decode(&datagram, &mut msgs).is_err() || msgs.is_empty() {
            datagram
        } else {
            let mut changed = false;
            for msg in &mut msgs {
                changed |= self.damage_message(msg);
            }
            match changed.then(|| mutate::encode_batch(self.codec, &msgs)) {
                Some(Some(bytes)) => bytes,
                _ => datagram,
            }
        };
        msgs.clear();
        self.msgs = msgs;
        result
    }

    /// Rolls each payload fault for one message; returns whether it changed.
    fn damage_message(&mut self, msg: &mut Message) -> bool {
        let mut changed = false;
        if self.roll(self.config.corrupt_percent) && mutate::corrupt(msg, &mut self.rng) {
            self.stats.corrupted += 1;
            changed = true;
        }
        if self.roll(self.config.shorten_percent) && mutate::shorten(msg) {
            self.stats.shortened += 1;
            changed = true;
        }
        if self.roll(self.config.lengthen_percent) && mutate::lengthen(msg, &mut self.rng) {
            self.stats.lengthened += 1;
            changed = true;
        }
        changed
    }
}

/// A percentage forced into `0.0..=100.0`, NaN as 0.
fn clamp_percent(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 100.0)
    }
}
