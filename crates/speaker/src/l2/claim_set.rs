//! Every claim of one link, and one ordered timer queue for all of them: the link's loop feeds
//! it starts, stops, other stations' claims and the clock, and carries out the actions it
//! returns. Pure (no sockets, no clock, no threads), so thousands of claims cost one heap
//! entry each, not a thread each.
//!
//! A claim's timer is kept in a binary heap keyed by due time; a claim that moves its timer
//! leaves the old entry behind, and entries that no longer match their claim are skipped when
//! they come up (cheaper than removing from the middle of a heap).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_wire::Mac;

use crate::l2::claim::{ClaimAction, ClaimKind, ClaimMachine, ClaimTiming};

/// One claim and the timer the heap holds for it.
#[derive(Debug)]
struct Entry {
    machine: ClaimMachine,
    generation: u64,
    due: Option<Duration>,
}

/// What one claim asks for at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The IP.
    pub ip: IpAddr,
    /// The claim's generation (the link answers `ip` for this generation only).
    pub generation: u64,
    /// What to do, in order.
    pub actions: Vec<ClaimAction>,
}

/// The claims of one link.
#[derive(Debug)]
pub struct ClaimSet {
    timing: ClaimTiming,
    claims: HashMap<IpAddr, Entry>,
    timers: BinaryHeap<Reverse<(Duration, IpAddr)>>,
}

impl ClaimSet {
    /// No claims.
    pub fn new(timing: ClaimTiming) -> Self {
        Self {
            timing,
            claims: HashMap::new(),
            timers: BinaryHeap::new(),
        }
    }

    /// Starts claiming `ip` (replacing any claim of it); `seed` spreads its re-probes.
    pub fn start(
        &mut self,
        ip: IpAddr,
        generation: u64,
        kind: ClaimKind,
        seed: u64,
        now: Duration,
    ) -> Step {
        let mut machine = ClaimMachine::new(kind, self.timing.clone(), seed);
        let actions = machine.start(now);
        self.claims.insert(
            ip,
            Entry {
                machine,
                generation,
                due: None,
            },
        );
        self.settle(ip);
        Step {
            ip,
            generation,
            actions,
        }
    }

    /// Ends the claim of `ip`, if any.
    pub fn stop(&mut self, ip: IpAddr) {
        self.claims.remove(&ip);
    }

    /// Another station (`mac`) claims `ip` on the link.
    pub fn seen(&mut self, ip: IpAddr, mac: Mac, now: Duration) -> Option<Step> {
        let entry = self.claims.get_mut(&ip)?;
        let actions = entry.machine.claims_seen(BTreeSet::from([mac]), now);
        let generation = entry.generation;
        self.settle(ip);
        Some(Step {
            ip,
            generation,
            actions,
        })
    }

    /// The probe the claim of `ip` asked for could not be sent.
    pub fn probe_failed(&mut self, ip: IpAddr, now: Duration) {
        if let Some(entry) = self.claims.get_mut(&ip) {
            entry.machine.probe_failed(now);
            self.settle(ip);
        }
    }

    /// Whether the claim of `ip` listens for other stations' claims now.
    pub fn watching(&self, ip: IpAddr) -> bool {
        self.claims.get(&ip).is_some_and(|e| e.machine.watching())
    }

    /// When the earliest timer is due (possibly one that turns out stale).
    pub fn next_due(&self) -> Option<Duration> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest claim whose timer is due by `now`, run; `None` when none is.
    pub fn due(&mut self, now: Duration) -> Option<Step> {
        while let Some(Reverse((at, ip))) = self.timers.peek().copied() {
            if at > now {
                return None;
            }
            self.timers.pop();
            let Some(entry) = self.claims.get_mut(&ip) else {
                continue;
            };
            if entry.due != Some(at) {
                continue;
            }
            entry.due = None;
            let actions = entry.machine.timer(now);
            let generation = entry.generation;
            self.settle(ip);
            return Some(Step {
                ip,
                generation,
                actions,
            });
        }
        None
    }

    /// Claims in the set (those with something left to do).
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// Whether no claim has anything left to do.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// After the claim of `ip` moved: queue its timer, or drop it when it has nothing left to
    /// do (the IP stays answered; the link's [`crate::l2::link::Owned`] says so).
    fn settle(&mut self, ip: IpAddr) {
        let Some(entry) = self.claims.get_mut(&ip) else {
            return;
        };
        match entry.machine.wake_at() {
            None => {
                self.claims.remove(&ip);
            }
            Some(at) if entry.due != Some(at) => {
                entry.due = Some(at);
                self.timers.push(Reverse((at, ip)));
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::claim::ConflictPolicy;
    use std::net::Ipv4Addr;

    const THEIRS: Mac = Mac([0x02, 0, 0, 0, 0, 0x22]);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn set() -> ClaimSet {
        ClaimSet::new(ClaimTiming {
            policy: ConflictPolicy::Warn,
            ..ClaimTiming::default()
        })
    }

    /// Every step due by `until`, with the time it ran.
    fn run_until(set: &mut ClaimSet, until: Duration) -> Vec<(Duration, Step)> {
        let mut out = Vec::new();
        while let Some(at) = set.next_due().filter(|at| *at <= until) {
            if let Some(step) = set.due(at) {
                out.push((at, step));
            }
        }
        out
    }

    #[test]
    fn timers_of_many_claims_come_due_in_time_order() {
        let mut set = set();
        set.start(ip(2), 1, ClaimKind::Takeover, 1, ms(10));
        set.start(ip(1), 2, ClaimKind::Takeover, 2, ms(0));
        let steps = run_until(&mut set, ms(45));
        let order: Vec<(Duration, IpAddr)> = steps.iter().map(|(at, s)| (*at, s.ip)).collect();
        assert_eq!(order, [(ms(30), ip(1)), (ms(40), ip(2))]);
        assert!(
            steps
                .iter()
                .all(|(_, s)| s.actions.contains(&ClaimAction::Answer))
        );
    }

    #[test]
    fn a_stopped_claim_never_comes_due() {
        let mut set = set();
        set.start(ip(1), 1, ClaimKind::Takeover, 1, ms(0));
        set.stop(ip(1));
        assert_eq!(set.due(ms(100)), None);
        assert!(set.is_empty());
    }

    #[test]
    fn a_restarted_claim_runs_on_its_new_timer_only() {
        let mut set = set();
        set.start(ip(1), 1, ClaimKind::Takeover, 1, ms(0));
        set.start(ip(1), 2, ClaimKind::Takeover, 1, ms(20));
        let steps = run_until(&mut set, ms(60));
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!((steps[0].0, steps[0].1.generation), (ms(50), 2));
    }

    #[test]
    fn another_stations_claim_reaches_only_the_claim_of_its_ip() {
        let mut set = set();
        set.start(ip(1), 1, ClaimKind::Takeover, 1, ms(0));
        set.start(ip(2), 2, ClaimKind::Takeover, 2, ms(0));
        assert!(set.watching(ip(1)));
        let step = set.seen(ip(1), THEIRS, ms(1)).expect("a claim of ip 1");
        assert!(matches!(
            step.actions.as_slice(),
            [ClaimAction::TakeoverDeferred { .. }]
        ));
        assert!(!set.watching(ip(1)));
        assert_eq!(set.seen(ip(3), THEIRS, ms(1)), None);
        // ip 2 still claims after its witness wait; ip 1 probes again later.
        let steps = run_until(&mut set, ms(30));
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].1.ip, ip(2));
    }

    #[test]
    fn a_claim_with_nothing_left_to_do_leaves_the_set() {
        let mut set = ClaimSet::new(ClaimTiming {
            repeats: 0,
            ..ClaimTiming::default()
        });
        set.start(ip(1), 1, ClaimKind::Handover, 1, ms(0));
        assert_eq!(set.len(), 1);
        run_until(&mut set, ms(1000));
        assert!(set.is_empty());
    }

    #[test]
    fn ten_thousand_claims_each_come_due_once_for_their_witness() {
        let mut set = set();
        for n in 0..10_000u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, n));
            set.start(ip, u64::from(n), ClaimKind::Takeover, u64::from(n), ms(0));
        }
        let claimed = run_until(&mut set, ms(30))
            .into_iter()
            .filter(|(_, s)| s.actions.contains(&ClaimAction::TakenOver))
            .count();
        assert_eq!(claimed, 10_000);
    }

    #[test]
    fn a_probe_not_sent_delays_the_claim_instead_of_claiming() {
        let mut set = set();
        set.start(ip(1), 1, ClaimKind::Takeover, 1, ms(0));
        set.probe_failed(ip(1), ms(1));
        let again = ms(1) + ClaimTiming::default().succession_retry;
        assert_eq!(run_until(&mut set, again - ms(1)), []);
        let steps = run_until(&mut set, again);
        assert_eq!(steps[0].1.actions, [ClaimAction::Probe]);
    }
}
