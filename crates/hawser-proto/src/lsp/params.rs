//! The five protocol parameters of spec section 2, and the endpoint settings around them.

use std::time::Duration;

use crate::wire::Codec;

/// The LSP protocol parameters (spec section 2). Both ends should use the same values.
///
/// [`Params::default`] is [`Params::reference`], the spec's defaults.
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// `K`: epochs with nothing received from the peer before the connection is declared lost;
    /// also how many epochs a client retries its Connect.
    pub epoch_limit: u32,
    /// `δ`: time between two epoch events.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub epoch: Duration,
    /// `ω`: sliding-window width, in messages.
    pub window: u32,
    /// Most epochs to wait between two sends of one Data message (0: resend every epoch).
    pub max_backoff: u32,
    /// `M`: most Data messages sent and not yet acknowledged.
    pub max_unacked: u32,
}

impl Params {
    /// The spec's defaults: K 5, δ 2000 ms, ω 1, back-off 0, M 1.
    pub const fn reference() -> Params {
        Params {
            epoch_limit: 5,
            epoch: Duration::from_millis(2000),
            window: 1,
            max_backoff: 0,
            max_unacked: 1,
        }
    }

    /// A preset for bulk traffic on a good network: δ 200 ms, K 25 (5 s to declare loss),
    /// ω 4,096 and M 1,024 (up to 1,024 messages in flight, and sending goes on while a hole at
    /// the window's base is repaired), back-off up to 8 epochs. Pair it with the binary codec,
    /// which batches, acknowledges selectively and retransmits adaptively. A receiver may buffer
    /// up to ω messages out of order (within `Config::max_read_queue`).
    pub const fn throughput() -> Params {
        Params {
            epoch_limit: 25,
            epoch: Duration::from_millis(200),
            window: 4096,
            max_backoff: 8,
            max_unacked: 1024,
        }
    }

    /// These parameters with `epoch_limit` (`K`) set.
    #[must_use]
    pub const fn with_epoch_limit(mut self, epoch_limit: u32) -> Params {
        self.epoch_limit = epoch_limit;
        self
    }

    /// These parameters with `epoch` (`δ`) set.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hawser_proto::lsp::Params;
    ///
    /// let fast = Params::reference()
    ///     .with_epoch(Duration::from_millis(100))
    ///     .with_window(32)
    ///     .with_max_unacked(32);
    /// assert_eq!(fast.in_flight_limit(), 32);
    /// assert_eq!(fast.epoch_limit, 5);
    /// ```
    #[must_use]
    pub const fn with_epoch(mut self, epoch: Duration) -> Params {
        self.epoch = epoch;
        self
    }

    /// These parameters with `window` (`ω`) set.
    #[must_use]
    pub const fn with_window(mut self, window: u32) -> Params {
        self.window = window;
        self
    }

    /// These parameters with `max_backoff` set.
    #[must_use]
    pub const fn with_max_backoff(mut self, max_backoff: u32) -> Params {
        self.max_backoff = max_backoff;
        self
    }

    /// These parameters with `max_unacked` (`M`) set.
    #[must_use]
    pub const fn with_max_unacked(mut self, max_unacked: u32) -> Params {
        self.max_unacked = max_unacked;
        self
    }

    /// How many Data messages may be in flight: `min(ω, M)`.
    pub fn in_flight_limit(&self) -> u32 {
        self.window.min(self.max_unacked)
    }

    /// Checks every parameter; a zero that would make the protocol hang is refused.
    ///
    /// # Errors
    /// [`ParamsError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.epoch_limit == 0 {
            return Err(ParamsError::Zero("epoch_limit"));
        }
        if self.epoch.is_zero() {
            return Err(ParamsError::Zero("epoch"));
        }
        if self.window == 0 {
            return Err(ParamsError::Zero("window"));
        }
        if self.max_unacked == 0 {
            return Err(ParamsError::Zero("max_unacked"));
        }
        if self.max_backoff > MAX_BACKOFF_LIMIT {
            return Err(ParamsError::TooLarge {
                name: "max_backoff",
                max: MAX_BACKOFF_LIMIT as u64,
            });
        }
        if self.window > MAX_WINDOW_LIMIT {
            return Err(ParamsError::TooLarge {
                name: "window",
                max: MAX_WINDOW_LIMIT as u64,
            });
        }
        Ok(())
    }
}

impl Default for Params {
    fn default() -> Params {
        Params::reference()
    }
}

/// The largest accepted `max_backoff` (a wait of 2^20 epochs is already weeks at 2 s).
pub const MAX_BACKOFF_LIMIT: u32 = 1 << 20;
/// The largest accepted `window`: the receiver buffers up to `window` out-of-order messages.
pub const MAX_WINDOW_LIMIT: u32 = 1 << 16;

/// An invalid setting, named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// A setting that must be positive is zero.
    #[error("setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// Two settings contradict each other.
    #[error("inconsistent settings: {0}")]
    Inconsistent(&'static str),
    /// A setting is outside its documented range.
    #[error("setting `{name}` must be between {min} and {max}")]
    OutOfRange {
        /// The setting's name.
        name: &'static str,
        /// Its minimum.
        min: u64,
        /// Its maximum.
        max: u64,
    },
    /// A setting is above its documented maximum.
    #[error("setting `{name}` must be at most {max}")]
    TooLarge {
        /// The setting's name.
        name: &'static str,
        /// Its maximum.
        max: u64,
    },
}

/// When Data messages are sent again.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetransmitPolicy {
    /// [`Epoch`](Self::Epoch) for the JSON codec, [`Adaptive`](Self::Adaptive) for binary.
    #[default]
    Auto,
    /// The reference behaviour, exact: resends only at epochs, with per-message exponential
    /// back-off capped at `max_backoff`.
    Epoch,
    /// Fast retransmit on acknowledgement gaps: a message is resent as soon as one sent a
    /// quarter-RTT after it was acknowledged (time-based, as TCP's RACK). An RTT-estimated
    /// retransmission timeout (RFC 6298: SRTT, RTTVAR, Karn's rule, doubling on expiry) resends
    /// the oldest message when acknowledgements stop. Epochs still drive heartbeats and loss
    /// detection.
    Adaptive,
}

/// How received Data is acknowledged.
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AckPolicy {
    /// [`PerMessage`](Self::PerMessage) for the JSON codec, [`Selective`](Self::Selective)
    /// for binary.
    #[default]
    Auto,
    /// One Ack per Data message, exactly as the reference implementation does.
    PerMessage,
    /// In-order Data is acknowledged by one CAck per received batch of datagrams (spec 3.3
    /// allows a CAck once everything before it has arrived, and every peer must accept
    /// CAcks); out-of-order Data still gets its own Ack. Halves the datagrams of a stream in
    /// JSON, where nothing else can batch.
    Cumulative,
    /// Binary codec only (on JSON it acts as [`Cumulative`](Self::Cumulative)): one
    /// acknowledgement per received batch of datagrams (and one every 16 out-of-order arrivals
    /// within it), a CAck while everything arrived in order, otherwise a SAck that repeats the
    /// cumulative point and up to [`wire::sack::MAX_RANGES`](crate::wire::sack::MAX_RANGES)
    /// runs held out of order: those of the latest arrivals first, then the highest. Each
    /// acknowledgement carries the whole state, so a lost one costs nothing but the time to the
    /// next: no message is resent because its individual Ack was lost (at 10 % loss each way,
    /// per-message Acks made half of all retransmissions spurious).
    Selective,
}

/// Bounds of the adaptive retransmission timeout (used by [`RetransmitPolicy::Adaptive`]).
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtoBounds {
    /// RTO before the first RTT sample. Default 200 ms.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub initial: Duration,
    /// Floor of the RTO. Default 5 ms (RFC 6298's 1 s floor is for the Internet; hawser runs
    /// in data centres too; raise it for WANs).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub min: Duration,
    /// Ceiling of the RTO, also after doubling. Default 2 s.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub max: Duration,
}

impl RtoBounds {
    /// Bounds with this initial RTO, floor and ceiling.
    pub const fn new(initial: Duration, min: Duration, max: Duration) -> RtoBounds {
        RtoBounds { initial, min, max }
    }

    /// An RTO fixed at `rto` (initial, floor and ceiling alike).
    pub const fn fixed(rto: Duration) -> RtoBounds {
        RtoBounds::new(rto, rto, rto)
    }
}

impl Default for RtoBounds {
    fn default() -> RtoBounds {
        RtoBounds {
            initial: Duration::from_millis(200),
            min: Duration::from_millis(5),
            max: Duration::from_secs(2),
        }
    }
}

/// Everything an LSP endpoint (client or server) is configured with.
///
/// Every queue an endpoint keeps is bounded by one of these fields.
#[non_exhaustive]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Protocol parameters.
    pub params: Params,
    /// Wire encoding; both ends must agree. Default: [`Codec::Binary`]. The binary codec packs
    /// several messages per datagram (up to `max_datagram`) and acknowledges in-order data
    /// cumulatively (one CAck per datagram); JSON sends one message per datagram and one Ack per
    /// Data message, exactly as the reference.
    pub codec: Codec,
    /// Largest datagram the binary codec packs frames into (a single larger message still goes
    /// alone). Default 1,452 (an Ethernet MTU minus IPv6 and UDP headers).
    pub max_datagram: usize,
    /// When Data is sent again. Default [`RetransmitPolicy::Auto`].
    pub retransmit: RetransmitPolicy,
    /// How received Data is acknowledged. Default [`AckPolicy::Auto`].
    pub acks: AckPolicy,
    /// Bounds of the adaptive retransmission timeout.
    pub rto: RtoBounds,
    /// Largest payload `write` accepts, in bytes. Default 1,400 (what a Go reference peer,
    /// reading into a 2,000-byte buffer, can still receive in JSON).
    pub max_payload: usize,
    /// Per connection: most messages written but not yet acknowledged (queued or in flight);
    /// `write` beyond it fails with `QueueFull`. Default 65,536.
    pub max_send_queue: usize,
    /// Per connection: most received messages waiting for the application to read them. When
    /// full, new Data is dropped unacknowledged, so the sender retransmits later (back-pressure
    /// without loss). Messages received out of order while the queue was not full may add up to
    /// `window` more. While the application does not read, the peer's `close` cannot complete
    /// (its messages stay unacknowledged) and heartbeats keep the connection alive. Default
    /// 65,536.
    pub max_read_queue: usize,
    /// Server only: most connections held, counting ended ones whose end the application has
    /// not read yet; further Connects are refused (dropped and counted). Default 10,000.
    pub max_connections: usize,
    /// Binary codec only: the largest message that may share one Data message (one sequence
    /// number, checksum and acknowledgement) with others written while earlier data is in
    /// flight; 0 turns bundling off. A write on an idle connection is always sent alone and at
    /// once, so bundling never delays a message: it gathers what piles up while the
    /// connection is busy, up to [`bundle_bytes`](Self::bundle_bytes) per bundle (`max_payload`,
    /// within one `max_datagram` datagram; `docs/wire.md`, bundles).
    /// With it, `max_send_queue` and `max_read_queue` count Data messages, a bundle once.
    /// Ignored by the JSON codec, which cannot carry bundles. Default 256.
    pub bundle_max: usize,
}

impl Config {
    /// A configuration with these protocol parameters and every other setting at its default.
    pub fn new(params: Params) -> Config {
        Config {
            params,
            ..Config::default()
        }
    }

    /// The retransmission policy in force: `Auto` resolved for the codec.
    pub fn effective_retransmit(&self) -> RetransmitPolicy {
        match (self.retransmit, self.codec) {
            (RetransmitPolicy::Auto, Codec::Json) => RetransmitPolicy::Epoch,
            (RetransmitPolicy::Auto, Codec::Binary) => RetransmitPolicy::Adaptive,
            (policy, _) => policy,
        }
    }

    /// Largest bundle, in bytes: `max_payload`, but never more than fits one `max_datagram`
    /// datagram with its headers, so that bundling never makes a datagram larger than
    /// `max_datagram` (only a single message written larger does). With the defaults (1,400
    /// and 1,452) this is `max_payload`.
    pub fn bundle_bytes(&self) -> usize {
        self.max_payload
            .min(self.max_datagram.saturating_sub(BUNDLE_HEADROOM))
            .max(1)
    }

    /// The bundling limit in force: [`bundle_max`](Self::bundle_max) for the binary codec, 0
    /// (off) for JSON.
    pub fn effective_bundle_max(&self) -> usize {
        match self.codec {
            Codec::Binary => self.bundle_max,
            Codec::Json => 0,
        }
    }

    /// The acknowledgement policy in force: `Auto` resolved for the codec.
    pub fn effective_acks(&self) -> AckPolicy {
        match (self.acks, self.codec) {
            (AckPolicy::Auto, Codec::Json) => AckPolicy::PerMessage,
            (AckPolicy::Auto | AckPolicy::Selective, Codec::Binary) => AckPolicy::Selective,
            (AckPolicy::Selective, Codec::Json) => AckPolicy::Cumulative,
            (policy, _) => policy,
        }
    }

    /// Sets the acknowledgement policy (builder style).
    #[must_use]
    pub fn with_acks(mut self, policy: AckPolicy) -> Config {
        self.acks = policy;
        self
    }

    /// Sets the retransmission policy (builder style).
    #[must_use]
    pub fn with_retransmit(mut self, policy: RetransmitPolicy) -> Config {
        self.retransmit = policy;
        self
    }

    /// Sets the codec (builder style).
    #[must_use]
    pub fn with_codec(mut self, codec: Codec) -> Config {
        self.codec = codec;
        self
    }

    /// Checks the parameters and every bound.
    ///
    /// # Errors
    /// [`ParamsError`] naming the first invalid setting.
    pub fn validate(&self) -> Result<(), ParamsError> {
        self.params.validate()?;
        if self.max_payload == 0 {
            return Err(ParamsError::Zero("max_payload"));
        }
        if self.max_payload > MAX_PAYLOAD_LIMIT {
            return Err(ParamsError::TooLarge {
                name: "max_payload",
                max: MAX_PAYLOAD_LIMIT as u64,
            });
        }
        if !(MIN_DATAGRAM..=MAX_DATAGRAM).contains(&self.max_datagram) {
            return Err(ParamsError::OutOfRange {
                name: "max_datagram",
                min: MIN_DATAGRAM as u64,
                max: MAX_DATAGRAM as u64,
            });
        }
        if self.rto.min.is_zero() {
            return Err(ParamsError::Zero("rto.min"));
        }
        if self.rto.initial.is_zero() {
            return Err(ParamsError::Zero("rto.initial"));
        }
        if self.rto.min > self.rto.max {
            return Err(ParamsError::Inconsistent("rto.min must not exceed rto.max"));
        }
        if self.max_send_queue == 0 {
            return Err(ParamsError::Zero("max_send_queue"));
        }
        if self.max_read_queue == 0 {
            return Err(ParamsError::Zero("max_read_queue"));
        }
        if self.max_connections == 0 {
            return Err(ParamsError::Zero("max_connections"));
        }
        Ok(())
    }
}

/// Bytes a datagram needs besides one bundle's payload, at most: version, connection id,
/// type, sequence number, size and checksum of the binary codec.
const BUNDLE_HEADROOM: usize = 32;

/// The smallest accepted `max_datagram`.
pub const MIN_DATAGRAM: usize = 64;
/// The largest accepted `max_datagram` (the UDP payload limit over IPv4).
pub const MAX_DATAGRAM: usize = 65_507;

/// The largest `max_payload`: what still fits one UDP datagram with headers, in either codec.
pub const MAX_PAYLOAD_LIMIT: usize = 48 * 1024;

impl Default for Config {
    fn default() -> Config {
        Config {
            params: Params::reference(),
            codec: Codec::Binary,
            max_datagram: 1452,
            retransmit: RetransmitPolicy::Auto,
            acks: AckPolicy::Auto,
            rto: RtoBounds::default(),
            max_payload: 1400,
            max_send_queue: 65_536,
            max_read_queue: 65_536,
            max_connections: 10_000,
            bundle_max: 256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_defaults_validate() {
        assert_eq!(Params::default().validate(), Ok(()));
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(Params::reference().in_flight_limit(), 1);
    }

    #[test]
    fn zeros_are_refused_by_name() {
        type Case = (fn(&mut Params), &'static str);
        let cases: [Case; 4] = [
            (|p| p.epoch_limit = 0, "epoch_limit"),
            (|p| p.epoch = Duration::ZERO, "epoch"),
            (|p| p.window = 0, "window"),
            (|p| p.max_unacked = 0, "max_unacked"),
        ];
        for (mutate, name) in cases {
            let mut p = Params::reference();
            mutate(&mut p);
            let err = p.validate().unwrap_err();
            assert_eq!(err, ParamsError::Zero(name));
            assert!(err.to_string().contains(name));
        }
    }

    #[test]
    fn config_bounds_are_checked() {
        let c = Config {
            max_connections: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ParamsError::Zero("max_connections")));
        let c = Config {
            max_payload: MAX_PAYLOAD_LIMIT + 1,
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ParamsError::TooLarge {
                name: "max_payload",
                ..
            })
        ));
        let mut p = Params::reference();
        p.window = MAX_WINDOW_LIMIT + 1;
        assert!(p.validate().is_err());
    }

    #[test]
    fn in_flight_is_min_of_window_and_unacked() {
        let p = Params {
            window: 15,
            max_unacked: 10,
            ..Params::reference()
        };
        assert_eq!(p.in_flight_limit(), 10);
    }
}
