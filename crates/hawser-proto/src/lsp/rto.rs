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
}

/// Clock granularity `G` of RFC 6298 (the driver's timer resolution).
const GRANULARITY: Duration = Duration::from_millis(1);

impl RtoEstimator {
    pub fn new(bounds: RtoBounds, ceiling: Duration) -> RtoEstimator {
        RtoEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            backoffs: 0,
            bounds,
            ceiling,
        }
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
    }

    /// New data was acknowledged: the back-off ends (RFC 6298 5.7 recomputes from SRTT).
    pub fn on_progress(&mut self) {
        self.backoffs = 0;
    }

    /// The timer expired: double the RTO (5.5).
    pub fn on_expiry(&mut self) {
        self.backoffs = self.backoffs.saturating_add(1).min(16);
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

    /// The current RTO, back-off included, within the bounds.
    pub fn rto(&self) -> Duration {
        let base = match self.srtt {
            None => self.bounds.initial,
            Some(srtt) => srtt + (self.rttvar * 4).max(GRANULARITY),
        };
        let backed_off = base.saturating_mul(1u32 << self.backoffs.min(16));
        let max = self.bounds.max.min(self.ceiling);
        backed_off.clamp(self.bounds.min.min(max), max)
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
