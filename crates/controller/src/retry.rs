//! Failed writes wait here before they are tried again: one queue ordered by due time that the
//! runtime's loop sleeps on (not a sleep spawned per failure). The delay doubles with each
//! failure of the same key up to a cap, and is jittered so writes that failed together (an
//! apiserver restart) do not all come back in the same instant.
//!
//! Pure: the caller passes the time and the jitter, so tests need no clock and no RNG.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::ops::Add;
use std::time::Duration;

/// How long to wait before retry number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure (before jitter).
    pub initial: Duration,
    /// Largest delay (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 for the first), with `jitter` in
    /// `[0, 1]` placing it between half and all of the exponential value ("equal jitter": the
    /// wait never collapses to zero, yet spreads over half its range).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        let full = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Keys waiting to be retried, with how often each failed in a row.
#[derive(Debug)]
pub struct RetryQueue<K, I> {
    backoff: Backoff,
    /// Consecutive failures per key, kept while a retry is pending or running so the next
    /// failure waits longer; dropped on success.
    failures: HashMap<K, u32>,
    /// When each waiting key is due.
    due_at: HashMap<K, I>,
    /// The same, ordered by time.
    by_time: BTreeSet<(I, K)>,
}

impl<K, I> RetryQueue<K, I>
where
    K: Clone + Eq + Hash + Ord,
    I: Copy + Ord + Add<Duration, Output = I>,
{
    /// An empty queue.
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            failures: HashMap::new(),
            due_at: HashMap::new(),
            by_time: BTreeSet::new(),
        }
    }

    /// `key` failed at `now`: it is due again after the backoff for its failure count. Returns
    /// the delay chosen. A key already waiting keeps a single entry, at the new time.
    pub fn failed(&mut self, key: K, now: I, jitter: f64) -> Duration {
        let count = self.failures.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        let delay = self.backoff.delay(*count, jitter);
        self.unschedule(&key);
        let at = now + delay;
        self.by_time.insert((at, key.clone()));
        self.due_at.insert(key, at);
        delay
    }

    /// `key` was written: forget its failures and any pending retry (the write that succeeded
    /// superseded the one that failed).
    pub fn succeeded(&mut self, key: &K) {
        self.failures.remove(key);
        self.unschedule(key);
    }

    /// When the earliest waiting key is due.
    pub fn next_due(&self) -> Option<I> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns the keys due at `now`, earliest first.
    pub fn pop_due(&mut self, now: I) -> Vec<K> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first()
            && *at <= now
        {
            if let Some((_, key)) = self.by_time.pop_first() {
                self.due_at.remove(&key);
                due.push(key);
            }
        }
        due
    }

    /// Keys waiting.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// Whether no key is waiting.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }

    fn unschedule(&mut self, key: &K) {
        if let Some(at) = self.due_at.remove(key) {
            self.by_time.remove(&(at, key.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn backoff() -> Backoff {
        Backoff {
            initial: S,
            max: 8 * S,
        }
    }

    /// Seconds since an arbitrary origin: a time type without a clock.
    type T = Duration;

    #[test]
    fn delays_double_per_failure_up_to_the_cap() {
        let b = backoff();
        let full: Vec<Duration> = (1..=6).map(|n| b.delay(n, 1.0)).collect();
        assert_eq!(full, [S, 2 * S, 4 * S, 8 * S, 8 * S, 8 * S]);
        assert_eq!(b.delay(u32::MAX, 1.0), 8 * S, "no overflow");
    }

    #[test]
    fn jitter_spreads_a_delay_over_its_upper_half() {
        let b = backoff();
        assert_eq!(b.delay(3, 0.0), 2 * S);
        assert_eq!(b.delay(3, 0.5), 3 * S);
        assert_eq!(b.delay(3, 1.0), 4 * S);
        assert_eq!(b.delay(3, 7.0), 4 * S, "jitter is clamped");
    }

    #[test]
    fn a_key_is_due_after_its_delay_and_not_before() {
        let mut q: RetryQueue<&str, T> = RetryQueue::new(backoff());
        let delay = q.failed("a", T::ZERO, 1.0);
        assert_eq!(delay, S);
        assert_eq!(q.next_due(), Some(S));
        assert!(q.pop_due(S / 2).is_empty());
        assert_eq!(q.pop_due(S), ["a"]);
        assert!(q.is_empty());
    }

    #[test]
    fn repeated_failures_wait_longer_and_success_starts_over() {
        let mut q: RetryQueue<&str, T> = RetryQueue::new(backoff());
        assert_eq!(q.failed("a", T::ZERO, 1.0), S);
        q.pop_due(S);
        assert_eq!(q.failed("a", S, 1.0), 2 * S);
        q.pop_due(3 * S);
        assert_eq!(q.failed("a", 3 * S, 1.0), 4 * S);
        q.succeeded(&"a");
        assert!(q.is_empty(), "a success cancels the pending retry");
        assert_eq!(q.failed("a", 10 * S, 1.0), S);
    }

    #[test]
    fn keys_come_out_in_due_order_once_each() {
        let mut q: RetryQueue<&str, T> = RetryQueue::new(backoff());
        q.failed("late", T::ZERO, 1.0);
        q.failed("late", T::ZERO, 1.0);
        q.failed("early", T::ZERO, 1.0);
        assert_eq!(q.len(), 2, "a key waits once");
        assert_eq!(q.pop_due(10 * S), ["early", "late"]);
    }
}
