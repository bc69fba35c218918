//! A loop's sign of life for `/healthz`: a process whose main loop hangs (a deadlock, a blocking
//! call that never returns) is alive to the kernel and dead to its users; the kubelet restarts it
//! only if its liveness probe says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Beaten by one loop on every turn (and by a timer in it, so an idle loop beats too); stale
/// once no beat came for [`Heartbeat::stale_after`] while the loop is supposed to run.
#[derive(Debug)]
pub struct Heartbeat {
    /// The loop, as `/healthz` names it.
    pub name: &'static str,
    /// How long without a beat means the loop hangs.
    pub stale_after: Duration,
    started: Instant,
    /// Milliseconds after `started` of the last beat, plus one; 0 while resting.
    last: AtomicU64,
}

/// How long a loop that beats at least every second may miss beats before it counts as hung:
/// long enough for a loaded node's scheduling hiccups, short against a liveness probe's period.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new("main loop", STALE_AFTER)
    }
}

impl Heartbeat {
    /// A heartbeat resting until the loop's first beat.
    pub fn new(name: &'static str, stale_after: Duration) -> Self {
        Self {
            name,
            stale_after,
            started: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// The loop ran now.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    /// The loop does not run now by design (a controller standing by): never stale meanwhile.
    pub fn rest(&self) {
        self.last.store(0, Ordering::Relaxed);
    }

    /// How long since the last beat at `now`, if longer than [`Self::stale_after`].
    pub fn stale_at(&self, now: Instant) -> Option<Duration> {
        let last = self.last.load(Ordering::Relaxed).checked_sub(1)?;
        let since = now
            .saturating_duration_since(self.started)
            .saturating_sub(Duration::from_millis(last));
        (since > self.stale_after).then_some(since)
    }

    fn beat_at(&self, at: Instant) {
        let ms = at.saturating_duration_since(self.started).as_millis();
        self.last.store(
            u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1,
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_stale_only_after_its_loop_beat_and_then_stopped_beating() {
        let h = Heartbeat::new("loop", Duration::from_secs(10));
        let t0 = h.started;
        // Resting (never beaten): never stale.
        assert_eq!(h.stale_at(t0 + Duration::from_secs(60)), None);
        h.beat_at(t0 + Duration::from_secs(1));
        assert_eq!(h.stale_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(
            h.stale_at(t0 + Duration::from_secs(12)),
            Some(Duration::from_secs(11))
        );
        h.rest();
        assert_eq!(h.stale_at(t0 + Duration::from_secs(60)), None);
    }
}
