//! The retransmission timeout estimator of RFC 6298.

use std::time::Duration;

use super::params::RtoBounds;

/// SRTT/RTTVAR estimator with exponential back-off on expiry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RtoEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Times the timer expired since the last new acknowledgement (the RTO doubles each time).
    backoffs: u32,
    bounds: RtoBounds,
    /// The epoch schedule's longest wait, `(max_backoff + 1) · δ`: the RTO never exceeds it, so
    /// the adaptive policy is never slower than the reference schedule.
    ceiling: Duration,
    /// [`rto`](Self::rto), worked out again whenever an input changes (a connection asks for it
    /// at every send and acknowledgement, and `Duration` arithmetic is not free).
    current: Duration,
}

/// Clock granularity `G` of RFC 6298 (the driver's timer resolution).
const GRANULARITY: Duration = Duration::from_millis(1);

/// How long a driver may hold back the acknowledgements caused by what a reader received,
/// waiting for the reply the application writes next (so that they leave in the same
/// datagram, like TCP's delayed ACK, but far shorter than the RTO floor). The tokio driver
/// (`hawser_net::lsp`) uses exactly this.
pub const ACK_DELAY: Duration = Duration::from_millis(1);

/// The longest a hawser receiver holds an acknowledgement back: [`ACK_DELAY`] plus one timer
/// granularity, as a driver's timer can fire that much late. A tail-loss probe of a lone
/// message waits this much beyond two RTTs, so that a held-back acknowledgement is rarely taken
/// for a loss.
pub const MAX_ACK_DELAY: Duration = ACK_DELAY.saturating_add(GRANULARITY);

impl RtoEstimator {
    pub fn new(bounds: RtoBounds, ceiling: Duration) -> RtoEstimator {
        let mut e = RtoEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            backoffs: 0,
            bounds,
            ceiling,
            current: Duration::ZERO,
        };
        e.current = e.compute();
        e
    }

    /// Feeds one RTT sample (only from messages sent once: Karn's rule, applied by the caller).
    pub fn on_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        self.current = self.compute();
    }

    /// New data was acknowledged: the back-off ends (RFC 6298 5.7 recomputes from SRTT).
    pub fn on_progress(&mut self) {
        if self.backoffs != 0 {
            self.backoffs = 0;
            self.current = self.compute();
        }
    }

    /// The timer expired: double the RTO (5.5).
    pub fn on_expiry(&mut self) {
        self.backoffs = self.backoffs.saturating_add(1).min(16);
        self.current = self.compute();
    }

    /// The smoothed RTT, once sampled.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// How much later than a lost message another must have been sent, and acknowledged, before
    /// the first is declared lost: a quarter of the smoothed RTT (at least 1 ms), tolerating
    /// that much reordering.
    pub fn reorder_window(&self) -> Duration {
        self.srtt
            .map_or(GRANULARITY, |srtt| (srtt / 4).max(GRANULARITY))
    }

    /// The probe timeout of a tail-loss probe (RACK-TLP, RFC 8985 7.2): two smoothed RTTs (at
    /// least the timer granularity), plus the peer's [`MAX_ACK_DELAY`] when only one message is
    /// in flight (the one case where a receiver holds its acknowledgement back), never longer
    /// than the RTO; `None` before the first sample.
    pub fn pto(&self, one_in_flight: bool) -> Option<Duration> {
        let srtt = self.srtt?;
        let delay = if one_in_flight {
            MAX_ACK_DELAY
        } else {
            Duration::ZERO
        };
        Some(((srtt * 2).max(GRANULARITY) + delay).min(self.current))
    }

    /// The current RTO, back-off included, within the bounds.
    pub fn rto(&self) -> Duration {
        self.current
    }

    /// The RTO from the inputs (RFC 6298 2.2-2.5, 5.5).
    fn compute(&self) -> Duration {
        let base = match self.srtt {
            None => self.bounds.initial,
            Some(srtt) => srtt + (self.rttvar * 4).max(GRANULARITY),
        };
        let max = self.bounds.max.min(self.ceiling);
        // RFC 6298 5.5 doubles the RTO in force, the floor included: a computed RTO under the
        // floor must not hide the first doublings.
        base.clamp(self.bounds.min.min(max), max)
            .saturating_mul(1u32 << self.backoffs.min(16))
            .min(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> RtoBounds {
        RtoBounds {
            initial: Duration::from_millis(200),
            min: Duration::from_millis(5),
            max: Duration::from_secs(2),
        }
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut e = RtoEstimator::new(bounds(), Duration::from_secs(60));
        assert_eq!(e.rto(), Duration::from_millis(200));
        e.on_sample(Duration::from_millis(40));
        assert_eq!(e.srtt(), Some(Duration::from_millis(40)));
        // 40 + 4 × 20
        assert_eq!(e.rto(), Duration::from_millis(120));
    }

    #[test]
    fn converges_on_a_steady_rtt_and_respects_the_floor() {
        let mut e = RtoEstimator::new(bounds(), Duration::from_secs(60));
        for _ in 0..200 {
            e.on_sample(Duration::from_micros(100));
        }
        assert_eq!(e.rto(), Duration::from_millis(5));
    }

    #[test]
    fn expiry_doubles_until_the_ceiling_and_progress_resets() {
        let mut e = RtoEstimator::new(bounds(), Duration::from_secs(60));
        e.on_expiry();
        assert_eq!(e.rto(), Duration::from_millis(400));
        for _ in 0..10 {
            e.on_expiry();
        }
        assert_eq!(e.rto(), Duration::from_secs(2));
        e.on_progress();
        assert_eq!(e.rto(), Duration::from_millis(200));
    }

    #[test]
    fn the_probe_timeout_is_two_rtts_and_the_ack_delay_within_the_rto() {
        let mut e = RtoEstimator::new(bounds(), Duration::from_secs(60));
        assert_eq!(e.pto(true), None);
        for _ in 0..50 {
            e.on_sample(Duration::from_micros(100));
        }
        // 2 × 0.1 ms is under the 1 ms granularity; the ack delay only for a lone message
        assert_eq!(e.pto(false), Some(Duration::from_millis(1)));
        assert_eq!(e.pto(true), Some(Duration::from_millis(1) + MAX_ACK_DELAY));
        // a varying RTT: the RTO (srtt + 4 rttvar) is well above two RTTs
        for i in 0..50 {
            e.on_sample(Duration::from_millis(if i % 2 == 0 { 1 } else { 5 }));
        }
        let srtt = e.srtt().unwrap();
        assert!(e.rto() > srtt * 2 + MAX_ACK_DELAY, "{:?} {srtt:?}", e.rto());
        assert_eq!(e.pto(true), Some(srtt * 2 + MAX_ACK_DELAY));
        assert_eq!(e.pto(false), Some(srtt * 2));
        let mut e = RtoEstimator::new(bounds(), Duration::from_millis(4));
        e.on_sample(Duration::from_millis(3));
        assert_eq!(
            e.pto(true),
            Some(Duration::from_millis(4)),
            "capped by the RTO"
        );
    }

    #[test]
    fn expiry_doubles_the_floored_rto() {
        let mut e = RtoEstimator::new(bounds(), Duration::from_secs(60));
        e.on_sample(Duration::from_micros(200));
        assert_eq!(
            e.rto(),
            Duration::from_millis(5),
            "1.2 ms computed, 5 ms floor"
        );
        e.on_expiry();
        assert_eq!(e.rto(), Duration::from_millis(10));
        e.on_expiry();
        assert_eq!(e.rto(), Duration::from_millis(20));
    }

    #[test]
    fn never_waits_longer_than_the_epoch_schedule() {
        // δ 50 ms, max_backoff 0: the reference resends every epoch.
        let mut e = RtoEstimator::new(bounds(), Duration::from_millis(50));
        assert_eq!(e.rto(), Duration::from_millis(50));
        e.on_sample(Duration::from_secs(1));
        e.on_expiry();
        assert_eq!(e.rto(), Duration::from_millis(50));
        // a ceiling under the floor wins
        let e = RtoEstimator::new(bounds(), Duration::from_millis(2));
        assert_eq!(e.rto(), Duration::from_millis(2));
    }
}
