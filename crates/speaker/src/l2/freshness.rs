//! Whether this speaker's idea of what it owns is current enough to answer on.
//!
//! A speaker frozen (SIGSTOP, a stalled VM, a long GC-like pause of the host) keeps its sockets
//! and its idea of what it owns; the frames queued meanwhile would be answered the instant it
//! resumes, beside the node that took its IPs over while it was silent. So answering is gated
//! on a deadline the speaker's loop renews on every tick: a reader or claim that runs after a
//! freeze finds it expired and stays silent until the loop has looked again (and, after a freeze
//! longer than [`STALL`], re-claimed every IP through the link witness).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the speaker's loop renews the deadline.
pub const TICK: Duration = Duration::from_millis(50);

/// How long a renewal lasts, and the gap between ticks that counts as a freeze: shorter than
/// the quickest the others can declare this node dead (an 80 ms probe period, its 30 ms round
/// trip and a 200 ms suspicion), so nobody can have taken an IP over while it still answers.
pub const STALL: Duration = Duration::from_millis(250);

/// The answering deadline, shared by the loop that renews it and the threads that obey it.
#[derive(Debug)]
pub struct Freshness {
    epoch: Instant,
    /// Microseconds since `epoch` until which answering is allowed.
    until_us: AtomicU64,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            until_us: AtomicU64::new(0),
        }
    }
}

impl Freshness {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Allows answering for `how_long` from now.
    pub fn renew(&self, how_long: Duration) {
        let until = self
            .now_us()
            .saturating_add(u64::try_from(how_long.as_micros()).unwrap_or(u64::MAX));
        self.until_us.store(until, Ordering::Release);
    }

    /// Whether answering is allowed now.
    pub fn current(&self) -> bool {
        self.now_us() < self.until_us.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answering_is_allowed_only_until_the_deadline() {
        let fresh = Freshness::default();
        assert!(!fresh.current(), "nothing before the first renewal");
        fresh.renew(Duration::from_secs(3600));
        assert!(fresh.current());
        fresh.renew(Duration::ZERO);
        assert!(!fresh.current());
    }
}
