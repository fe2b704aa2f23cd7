//! Waits between retries: doubling up to a ceiling, with jitter, so the replicas that lost the
//! same database or broker at the same instant do not retry in lockstep when it returns.

use std::time::Duration;

/// A doubling backoff with "equal jitter": each wait is drawn from [d/2, d] for the current
/// step d, which doubles after each wait up to `max`. Never shorter than half the step, so a
/// retry loop keeps its pace; never in step with another replica's.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The next wait; the step after it is doubled.
    pub fn next_wait(&mut self) -> Duration {
        let wait = jittered(self.step);
        self.step = self.step.saturating_mul(2).min(self.max);
        wait
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// `d` with equal jitter: uniform in [d/2, d].
pub fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_jitter_up_to_the_ceiling() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut b = Backoff::new(min, max);
        let steps = [100, 200, 400, 800, 1000, 1000];
        let mut waits = Vec::new();
        for step in steps {
            let w = b.next_wait();
            let step = Duration::from_millis(step);
            assert!(
                w >= step / 2 && w <= step,
                "{w:?} outside [{:?}, {step:?}]",
                step / 2
            );
            waits.push(w);
        }
        b.reset();
        assert!(b.next_wait() <= min);
        // Two replicas starting together part ways (the chance of 6 equal draws is nil).
        let mut other = Backoff::new(min, max);
        let theirs: Vec<_> = steps.iter().map(|_| other.next_wait()).collect();
        assert_ne!(waits, theirs);
    }
}
