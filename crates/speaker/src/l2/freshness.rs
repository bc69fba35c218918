//! Whether this speaker's idea of what it owns is current enough to answer on, and whether its
//! links hear anyone.
//!
//! A speaker frozen (SIGSTOP, a stalled VM, a long pause of the host) keeps its sockets and its
//! idea of what it owns; the frames queued meanwhile would be answered the instant it resumes,
//! beside the node that took its IPs over while it was silent. So answering is gated on a
//! deadline that a keeper thread ([`Freshness::keep`]) renews every [`TICK`]: a reader or claim
//! that runs after a freeze finds it expired and stays silent. The keeper itself sees the gap,
//! stops renewing and marks the freeze, until the speaker has re-claimed every IP through the
//! link witness ([`Freshness::froze`], [`Freshness::thaw`]). The keeper is its own thread, not
//! the speaker's loop, so a busy loop (a large recompute) never silences the node.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the keeper renews the deadline.
pub const TICK: Duration = Duration::from_millis(50);

/// How long a renewal lasts, and the gap between ticks that counts as a freeze: shorter than
/// the quickest the others can declare this node dead (an 80 ms probe period, its 30 ms round
/// trip and a 200 ms suspicion), so nobody can have taken an IP over while it still answers.
pub const STALL: Duration = Duration::from_millis(250);

/// The answering deadline, shared by the keeper that renews it and the threads that obey it.
#[derive(Debug)]
pub struct Freshness {
    epoch: Instant,
    /// Microseconds since `epoch` until which answering is allowed.
    until_us: AtomicU64,
    /// The keeper saw a freeze: no renewal until [`Self::thaw`].
    frozen: AtomicBool,
    /// The speaker asked for silence ([`Self::hold`]): no renewal meanwhile.
    held: AtomicBool,
    /// Microseconds since `epoch` when a link last received ARP or NDP from another station,
    /// plus one (0: never).
    heard_us: AtomicU64,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            until_us: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            held: AtomicBool::new(false),
            heard_us: AtomicU64::new(0),
        }
    }
}

impl Freshness {
    /// Starts the keeper thread: it renews the deadline every [`TICK`] for [`STALL`], unless
    /// held, and marks a freeze when its own turns are more than [`STALL`] apart. It ends when
    /// the last other holder of `this` is gone.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn keep(this: &Arc<Self>) -> std::io::Result<()> {
        let weak: Weak<Self> = Arc::downgrade(this);
        std::thread::Builder::new()
            .name("l2-freshness".into())
            .spawn(move || {
                let mut last = Instant::now();
                while let Some(fresh) = weak.upgrade() {
                    let now = Instant::now();
                    fresh.turn(now.duration_since(last));
                    last = now;
                    drop(fresh);
                    std::thread::sleep(TICK);
                }
            })
            .map(drop)
    }

    /// One turn of the keeper, `gap` after the previous one.
    fn turn(&self, gap: Duration) {
        if gap > STALL {
            self.frozen.store(true, Ordering::Release);
        }
        if !self.frozen.load(Ordering::Acquire) && !self.held.load(Ordering::Acquire) {
            self.renew(STALL);
        }
    }

    /// Whether a freeze stopped answering (until [`Self::thaw`]).
    pub fn froze(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// Lets the keeper renew again after a freeze (once every IP is being claimed afresh).
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::Release);
    }

    /// Silence while `held` (the speaker is stranded): the deadline runs out within [`STALL`].
    pub fn hold(&self, held: bool) {
        self.held.store(held, Ordering::Release);
        if held {
            self.until_us.store(0, Ordering::Release);
        }
    }

    /// A link received ARP or NDP from another station now.
    pub fn heard(&self) {
        self.heard_us
            .store(self.now_us().saturating_add(1), Ordering::Relaxed);
    }

    /// When a link last received ARP or NDP from another station, if ever.
    pub fn heard_at(&self) -> Option<Instant> {
        let us = self.heard_us.load(Ordering::Relaxed).checked_sub(1)?;
        Some(self.epoch + Duration::from_micros(us))
    }

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

    #[test]
    fn the_keeper_renews_until_a_freeze_and_again_after_the_thaw() {
        let fresh = Freshness::default();
        fresh.turn(TICK);
        assert!(fresh.current());
        // A turn that comes late: the process was frozen.
        fresh.renew(Duration::ZERO);
        fresh.turn(STALL * 4);
        assert!(fresh.froze() && !fresh.current());
        fresh.turn(TICK);
        assert!(!fresh.current(), "no renewal before the thaw");
        fresh.thaw();
        fresh.turn(TICK);
        assert!(fresh.current());
    }

    #[test]
    fn a_held_deadline_ends_at_once_and_is_not_renewed() {
        let fresh = Freshness::default();
        fresh.turn(TICK);
        fresh.hold(true);
        assert!(!fresh.current());
        fresh.turn(TICK);
        assert!(!fresh.current());
        fresh.hold(false);
        fresh.turn(TICK);
        assert!(fresh.current());
    }

    #[test]
    fn hearing_is_remembered() {
        let fresh = Freshness::default();
        assert_eq!(fresh.heard_at(), None);
        fresh.heard();
        assert!(fresh.heard_at().is_some_and(|at| at <= Instant::now()));
    }
}
