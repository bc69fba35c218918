//! Exponential backoff with jitter and a cap, without a clock or an RNG: the caller hands in the
//! random bits, so the schedule is tested as plain arithmetic.

use std::time::Duration;

/// Delays that double from `base` up to `cap`, each drawn uniformly from its upper half ("equal
/// jitter"): retries of many speakers spread out instead of arriving together, and no delay is
/// shorter than half the nominal one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Starts at `base`, never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `random` is any random value.
    pub fn next(&mut self, random: u64) -> Duration {
        let nominal = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = nominal / 2;
        let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
        let jitter = if span == 0 { 0 } else { random % (span + 1) };
        half + Duration::from_micros(jitter)
    }

    /// Success (or a new situation): the next delay is `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn delays_double_up_to_the_cap_and_stay_in_their_upper_half() {
        let mut b = Backoff::new(s(1), s(8));
        for nominal in [1, 2, 4, 8, 8, 8] {
            for random in [0, u64::MAX / 3, u64::MAX] {
                let mut probe = b.clone();
                let d = probe.next(random);
                assert!(
                    d >= s(nominal) / 2 && d <= s(nominal),
                    "{d:?} for nominal {nominal}s"
                );
            }
            b.next(0);
        }
    }

    #[test]
    fn different_random_bits_spread_the_same_attempt() {
        let b = Backoff::new(s(1), s(8));
        assert_ne!(b.clone().next(1), b.clone().next(400_000));
    }

    #[test]
    fn reset_starts_over_from_the_base() {
        let mut b = Backoff::new(s(1), s(8));
        for _ in 0..5 {
            b.next(0);
        }
        b.reset();
        assert!(b.next(u64::MAX) <= s(1));
    }

    #[test]
    fn many_attempts_never_overflow() {
        let mut b = Backoff::new(s(1), s(30));
        for _ in 0..1000 {
            assert!(b.next(u64::MAX) <= s(30));
        }
    }
}
