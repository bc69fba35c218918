//! What one link does when this node gains an IP: probe for another holder first (an RFC 5227
//! ARP probe, or a duplicate-address Neighbor Solicitation for IPv6), answer, send the gratuitous
//! ARP / unsolicited NA and its repeats, then the optional periodic refresh.
//!
//! The decisions are a pure state machine ([`ClaimMachine`]: events in, actions out, its timers
//! as data), tested without sockets or a clock. Every claim of a link lives in one
//! [`crate::l2::claim_set::ClaimSet`], driven by that link's one loop
//! ([`crate::l2::link_loop`]): no thread or task per IP.
//!
//! Three kinds of gain:
//! - a **handover** (nobody held the IP: a new Service): answer at once; a claim seen during the
//!   probe is checked once more after a short wait before it counts as a conflict;
//! - a **succession** (a live node held it and lets go by itself once it learns it lost it, or
//!   this speaker cannot know who holds it: it just started, or it was frozen): probe, and
//!   answer only once nobody else does, probing again meanwhile: after 10 ms at first, then
//!   after half the time waited so far (a holder that is slow to let go costs a few frames). The
//!   previous owner usually lets go within milliseconds of the same news, so the IP is silent
//!   for about one probe, and two MACs answer it only if a late answer races the probe (then
//!   the watch after claiming silences this node);
//! - a **takeover** (this node owns the IP only because gossip calls another node dead, or
//!   gossip does not see every speaker): the link is an independent witness. Probe, and claim
//!   only if no other MAC answers; if one does, the presumed-dead owner is alive and only
//!   gossip is cut, so hold back (count `ferrolb_layer2_takeover_deferred_total`) and probe
//!   again every few hundred ms, taking over as soon as nobody answers.
//!
//! A succession still answered after [`ClaimTiming::succession_patience`] is held back like a
//! takeover. After either kind claims, an answer that comes later still makes this node fall
//! silent at once.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ferrolb_wire::Mac;

/// What to do when another host already answers for a newly gained IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ConflictPolicy {
    /// Report it (log, Event, metric) and announce anyway.
    #[default]
    Warn,
    /// Report it and stay silent for that IP until the other host is gone.
    Withdraw,
}

/// Timing of a claim.
#[derive(Debug, Clone)]
pub struct ClaimTiming {
    /// Gratuitous announcements after the first.
    pub repeats: u32,
    /// Time between them.
    pub repeat_interval: Duration,
    /// Periodic re-announcement after the repeats, if any.
    pub refresh: Option<Duration>,
    /// How long to listen for an answer to the probe.
    pub probe_wait: Duration,
    /// How long to listen for an answer to the confirming probe.
    pub confirm_wait: Duration,
    /// With [`ConflictPolicy::Withdraw`], how often to probe again while withdrawn.
    pub conflict_retry: Duration,
    /// The policy.
    pub policy: ConflictPolicy,
    /// Takeover: how long to listen for the presumed-dead owner's answer before claiming.
    pub witness_wait: Duration,
    /// Takeover: how long after claiming a late answer still makes this node fall silent.
    pub witness_watch: Duration,
    /// Takeover held back: probe again after this, plus up to [`Self::reprobe_spread`].
    pub reprobe: Duration,
    /// Random spread added to each re-probe, so two nodes that both wait for the same silent
    /// owner do not probe (and claim) in lock step.
    pub reprobe_spread: Duration,
    /// Succession: how soon, at the least, to probe again while the previous owner still
    /// answers; later probes back off to half the time waited so far, with jitter.
    pub succession_retry: Duration,
    /// Succession: how long the previous owner may keep answering before this claim is held
    /// back like a takeover (and said to be).
    pub succession_patience: Duration,
}

impl Default for ClaimTiming {
    fn default() -> Self {
        Self {
            repeats: 3,
            repeat_interval: Duration::from_secs(1),
            refresh: None,
            probe_wait: Duration::from_millis(200),
            confirm_wait: Duration::from_millis(500),
            conflict_retry: Duration::from_secs(10),
            policy: ConflictPolicy::Warn,
            // A live responder answers a probe in well under a millisecond on a LAN (0.6 ms
            // measured in the lab, 8-60 us of it inside the program): 30 ms covers a busy
            // node's scheduling delay many times over, and costs a takeover only 30 ms (a cut
            // node's IPs move in about 430 ms without it, against a 500 ms target). Waiting
            // longer would only shorten double answers that are already rare and short: an
            // answer later than this is still caught by `witness_watch`, and this node then
            // falls silent at once, so two MACs answer for at most that owner's answer delay.
            witness_wait: Duration::from_millis(30),
            // Up to the first gratuitous repeat: a presumed-dead owner that answers a probe at
            // all answers long before.
            witness_watch: Duration::from_millis(1000),
            // 300-500 ms: a cut-off owner that really dies is replaced within half a second of
            // the next probe, and a deferred IP costs two frames a second on the link.
            reprobe: Duration::from_millis(300),
            reprobe_spread: Duration::from_millis(200),
            // The previous owner lets go within a few ms of the same news (gossip, or the
            // EndpointSlice that moved a Local Service): probing again 10-15 ms after its answer
            // keeps the IP's silence well under 100 ms; the backoff after that bounds a holder
            // that does not let go to about 15 probes over the patience below.
            succession_retry: Duration::from_millis(10),
            // Gossip news reaches every member within a few probe periods; a holder that still
            // answers after this is not letting go (or its gossip is cut).
            succession_patience: Duration::from_secs(3),
        }
    }
}

/// What the responder tells the speaker, asynchronously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L2Report {
    /// Another station answers for `ip`.
    Conflict {
        /// The IP.
        ip: IpAddr,
        /// The other station's MAC.
        mac: Mac,
        /// Where it was seen.
        interface: String,
        /// Whether this node stays silent for it (`--conflict-policy withdraw`).
        withdrawn: bool,
    },
    /// A withdrawn IP is announced again: its other holder no longer answers.
    ConflictCleared {
        /// The IP.
        ip: IpAddr,
        /// The interface.
        interface: String,
    },
    /// A takeover held back: the owner gossip calls dead (or a previous owner that does not let
    /// go) still answers for `ip` on the link.
    TakeoverDeferred {
        /// The IP.
        ip: IpAddr,
        /// The MAC that answered.
        mac: Mac,
        /// Where.
        interface: String,
    },
    /// A takeover or succession is done: nobody else answered the probe for `ip`.
    TakenOver {
        /// The IP.
        ip: IpAddr,
        /// Where.
        interface: String,
    },
    /// The link cannot be used: its raw socket cannot be opened, or frames cannot be sent on
    /// it (said once when it starts; retried meanwhile).
    LinkFailed {
        /// The interface.
        interface: String,
        /// What failed.
        error: String,
    },
    /// A link that failed works again.
    LinkRecovered {
        /// The interface.
        interface: String,
    },
}

/// Why this node gained an IP, which decides how carefully it claims it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// Nobody held it: answer at once, report a conflict if another MAC insists.
    Handover,
    /// A live node held it and lets go by itself (or this speaker cannot know who holds it):
    /// answer once the link shows nobody else does, probing again soon while someone does.
    Succession,
    /// This node owns it only because gossip calls another node dead (or misses a speaker):
    /// claim only when the link confirms that nobody answers.
    Takeover,
}

/// What [`ClaimMachine`] asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimAction {
    /// Send an ARP probe / DAD Neighbor Solicitation for the IP.
    Probe,
    /// Start answering requests for the IP.
    Answer,
    /// Stop answering (the claim goes on).
    Silence,
    /// Send the gratuitous ARP / unsolicited NA.
    Announce,
    /// Another station answers for the IP; `withdrawn`: this node stays silent meanwhile.
    Conflict {
        /// Who answered.
        macs: BTreeSet<Mac>,
        /// Whether this node stays silent meanwhile.
        withdrawn: bool,
    },
    /// A conflict reported as withdrawn is over; the IP is answered again.
    ConflictCleared,
    /// A takeover is held back: these MACs still answer for the IP.
    TakeoverDeferred {
        /// Who answered.
        macs: BTreeSet<Mac>,
    },
    /// A takeover went through (nobody answered the probe).
    TakenOver,
}

/// Where a claim is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Listening for other stations' claims until `until`.
    Checking {
        until: Duration,
        /// This is the second probe, after a claim was seen in the first.
        confirming: bool,
        /// This node answers already (a handover with [`ConflictPolicy::Warn`], or a takeover
        /// within its watch after claiming).
        answering: bool,
        /// The claim was held back before (a cleared conflict or takeover is reported).
        after_deferral: bool,
    },
    /// Silent, probing again at `next`.
    Deferred { next: Duration },
    /// Gratuitous repeats; `left` more, the next at `next`.
    Repeating { next: Duration, left: u32 },
    /// Periodic refresh, the next at `next`.
    Refreshing { next: Duration },
    /// Nothing more to do (the IP stays answered until it is lost).
    Done,
}

/// One claim's decisions, without I/O: feed it [`Self::start`], the other stations' claims seen
/// on the link ([`Self::claims_seen`]) and its timer ([`Self::timer`]); it returns what to do.
/// Time is a [`Duration`] since any fixed start.
#[derive(Debug, Clone)]
pub struct ClaimMachine {
    kind: ClaimKind,
    timing: ClaimTiming,
    phase: Phase,
    /// Claims seen in the current check.
    seen: BTreeSet<Mac>,
    /// State of the re-probe jitter (splitmix64).
    jitter: u64,
    /// When the claim started (a succession's patience runs from here).
    started: Duration,
    /// The current hold-back was reported ([`ClaimAction::TakeoverDeferred`] once per episode).
    deferral_said: bool,
}

impl ClaimMachine {
    /// A claim of `kind`; `seed` spreads its re-probes (any value; the driver uses the clock).
    pub fn new(kind: ClaimKind, timing: ClaimTiming, seed: u64) -> Self {
        Self {
            kind,
            timing,
            phase: Phase::Done,
            seen: BTreeSet::new(),
            jitter: seed,
            started: Duration::ZERO,
            deferral_said: false,
        }
    }

    /// The IP was just gained.
    pub fn start(&mut self, now: Duration) -> Vec<ClaimAction> {
        self.seen.clear();
        self.started = now;
        match (self.kind, self.timing.policy) {
            (ClaimKind::Handover, ConflictPolicy::Warn) => {
                // Probe first, then answer at once: failover must not wait for the probe.
                self.phase = Phase::Checking {
                    until: now + self.timing.probe_wait,
                    confirming: false,
                    answering: true,
                    after_deferral: false,
                };
                vec![
                    ClaimAction::Probe,
                    ClaimAction::Answer,
                    ClaimAction::Announce,
                ]
            }
            (ClaimKind::Handover, ConflictPolicy::Withdraw) => {
                self.phase = self.checking(now, false);
                vec![ClaimAction::Probe]
            }
            (ClaimKind::Takeover | ClaimKind::Succession, _) => {
                self.phase = self.checking(now, false);
                vec![ClaimAction::Probe]
            }
        }
    }

    /// Whether this claim waits for the link to show nobody else answers.
    fn witnessed(&self) -> bool {
        matches!(self.kind, ClaimKind::Takeover | ClaimKind::Succession)
    }

    fn checking(&self, now: Duration, after_deferral: bool) -> Phase {
        let wait = if self.witnessed() {
            self.timing.witness_wait
        } else {
            self.timing.probe_wait
        };
        Phase::Checking {
            until: now + wait,
            confirming: false,
            answering: false,
            after_deferral,
        }
    }

    /// Whether the driver should collect other stations' claims on the link now.
    pub fn watching(&self) -> bool {
        matches!(self.phase, Phase::Checking { .. })
    }

    /// When [`Self::timer`] is due; `None`: nothing more to do.
    pub fn wake_at(&self) -> Option<Duration> {
        match self.phase {
            Phase::Checking { until, .. } => Some(until),
            Phase::Deferred { next }
            | Phase::Repeating { next, .. }
            | Phase::Refreshing { next } => Some(next),
            Phase::Done => None,
        }
    }

    /// Whether the claim has nothing more to do.
    pub fn done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Other stations claim the IP (answers to our probe, gratuitous ARP, NA).
    pub fn claims_seen(&mut self, macs: BTreeSet<Mac>, now: Duration) -> Vec<ClaimAction> {
        let Phase::Checking { answering, .. } = self.phase else {
            return Vec::new();
        };
        if macs.is_empty() {
            return Vec::new();
        }
        if self.witnessed() {
            // Another MAC answers: the owner gossip calls dead is alive (only gossip is cut), or
            // the previous owner has not let go yet. Hold back at once (and fall silent if
            // already claimed): two MACs must not answer one IP.
            return self.hold_back(macs, now, answering);
        }
        self.seen.extend(macs);
        Vec::new()
    }

    /// Silent until the next probe: soon for a succession within its patience, after a
    /// re-probe delay otherwise (said once per episode).
    fn hold_back(
        &mut self,
        macs: BTreeSet<Mac>,
        now: Duration,
        answering: bool,
    ) -> Vec<ClaimAction> {
        let patient = self.kind == ClaimKind::Succession
            && now.saturating_sub(self.started) < self.timing.succession_patience;
        let next = if patient && answering {
            // Both had claimed (two nodes back from being cut off, each believing it
            // succeeds): spread over a few witness waits, so that one finds the other answering
            // instead of both claiming in step again.
            now + self.jittered(self.timing.succession_retry, self.timing.witness_wait * 3)
        } else if patient {
            // This node never answered: the other station is the previous owner, about to let
            // go (it learns the same news within milliseconds), so look again soon, then less
            // and less often (half the time waited so far) while it holds on.
            let retry = (now.saturating_sub(self.started) / 2).max(self.timing.succession_retry);
            now + self.jittered(retry, retry / 2)
        } else {
            now + self.jittered(self.timing.reprobe, self.timing.reprobe_spread)
        };
        self.phase = Phase::Deferred { next };
        self.seen.clear();
        let mut actions = Vec::new();
        if answering {
            actions.push(ClaimAction::Silence);
        }
        if !patient && !std::mem::replace(&mut self.deferral_said, true) {
            actions.push(ClaimAction::TakeoverDeferred { macs });
        }
        actions
    }

    /// The probe just asked for could not be sent: silence on the link proves nothing, so a
    /// claim waiting for its witness probes again after [`ClaimTiming::succession_retry`]
    /// instead of claiming.
    pub fn probe_failed(&mut self, now: Duration) {
        if let Phase::Checking {
            answering: false, ..
        } = self.phase
            && self.witnessed()
        {
            self.seen.clear();
            self.phase = Phase::Deferred {
                next: now + self.timing.succession_retry,
            };
        }
    }

    /// The timer of [`Self::wake_at`] is due.
    pub fn timer(&mut self, now: Duration) -> Vec<ClaimAction> {
        match self.phase.clone() {
            Phase::Checking {
                until,
                confirming,
                answering,
                after_deferral,
            } => {
                if now < until {
                    return Vec::new();
                }
                self.check_over(now, confirming, answering, after_deferral)
            }
            Phase::Deferred { next } => {
                if now < next {
                    return Vec::new();
                }
                self.seen.clear();
                self.phase = self.checking(now, true);
                vec![ClaimAction::Probe]
            }
            Phase::Repeating { next, left } => {
                if now < next {
                    return Vec::new();
                }
                self.phase = if left > 1 {
                    Phase::Repeating {
                        next: now + self.timing.repeat_interval,
                        left: left - 1,
                    }
                } else {
                    self.after_repeats(now)
                };
                vec![ClaimAction::Announce]
            }
            Phase::Refreshing { next } => {
                if now < next {
                    return Vec::new();
                }
                self.phase = self.after_repeats(now);
                vec![ClaimAction::Announce]
            }
            Phase::Done => Vec::new(),
        }
    }

    fn check_over(
        &mut self,
        now: Duration,
        confirming: bool,
        answering: bool,
        after_deferral: bool,
    ) -> Vec<ClaimAction> {
        let seen = std::mem::take(&mut self.seen);
        match self.kind {
            ClaimKind::Takeover | ClaimKind::Succession if answering => {
                // The watch after claiming ended quietly.
                self.phase = self.repeating(now);
                Vec::new()
            }
            ClaimKind::Takeover | ClaimKind::Succession => {
                // Nobody answered the probe: the owner is gone or let go. Claim, and keep
                // listening a while for a late answer.
                self.deferral_said = false;
                self.phase = Phase::Checking {
                    until: now + self.timing.witness_watch,
                    confirming: false,
                    answering: true,
                    after_deferral,
                };
                vec![
                    ClaimAction::Answer,
                    ClaimAction::Announce,
                    ClaimAction::TakenOver,
                ]
            }
            ClaimKind::Handover if !seen.is_empty() && !confirming => {
                // Maybe the previous owner answered before it learnt it lost the IP: ask again.
                self.phase = Phase::Checking {
                    until: now + self.timing.confirm_wait,
                    confirming: true,
                    answering,
                    after_deferral,
                };
                vec![ClaimAction::Probe]
            }
            ClaimKind::Handover if !seen.is_empty() => {
                if answering {
                    self.phase = self.repeating(now);
                    vec![ClaimAction::Conflict {
                        macs: seen,
                        withdrawn: false,
                    }]
                } else {
                    self.phase = Phase::Deferred {
                        next: now + self.timing.conflict_retry,
                    };
                    if after_deferral {
                        // Still there: reported when it started.
                        Vec::new()
                    } else {
                        vec![ClaimAction::Conflict {
                            macs: seen,
                            withdrawn: true,
                        }]
                    }
                }
            }
            ClaimKind::Handover => {
                self.phase = self.repeating(now);
                if answering {
                    Vec::new()
                } else {
                    let mut actions = Vec::new();
                    if after_deferral {
                        actions.push(ClaimAction::ConflictCleared);
                    }
                    actions.extend([ClaimAction::Answer, ClaimAction::Announce]);
                    actions
                }
            }
        }
    }

    fn repeating(&self, now: Duration) -> Phase {
        if self.timing.repeats > 0 {
            Phase::Repeating {
                next: now + self.timing.repeat_interval,
                left: self.timing.repeats,
            }
        } else {
            self.after_repeats(now)
        }
    }

    fn after_repeats(&self, now: Duration) -> Phase {
        self.timing
            .refresh
            .map_or(Phase::Done, |every| Phase::Refreshing { next: now + every })
    }

    /// The next re-probe delay: [`ClaimTiming::reprobe`] plus a share of the spread.
    /// `base` plus a pseudo-random part of `spread`.
    fn jittered(&mut self, base: Duration, spread: Duration) -> Duration {
        // splitmix64: enough to keep two nodes apart, no RNG state to share or seed.
        self.jitter = self.jitter.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.jitter;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let spread = u64::try_from(spread.as_micros()).unwrap_or(u64::MAX);
        let extra = if spread == 0 { 0 } else { z % (spread + 1) };
        base + Duration::from_micros(extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THEIRS: Mac = Mac([0x02, 0, 0, 0, 0, 0x22]);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timing(policy: ConflictPolicy) -> ClaimTiming {
        ClaimTiming {
            policy,
            ..ClaimTiming::default()
        }
    }

    /// The probe at `at` went unanswered: the claim answers, announces and says it took over.
    fn assert_claims(m: &mut ClaimMachine, at: Duration) {
        assert_eq!(
            m.timer(at),
            [
                ClaimAction::Answer,
                ClaimAction::Announce,
                ClaimAction::TakenOver
            ]
        );
    }

    fn theirs() -> BTreeSet<Mac> {
        [THEIRS].into()
    }

    /// Runs the machine's timers until `until`, returning every action with its time.
    fn run_timers(m: &mut ClaimMachine, until: Duration) -> Vec<(Duration, ClaimAction)> {
        let mut out = Vec::new();
        while let Some(at) = m.wake_at() {
            if at > until {
                break;
            }
            out.extend(m.timer(at).into_iter().map(|a| (at, a)));
        }
        out
    }

    #[test]
    fn a_handover_answers_at_once_and_repeats_its_announcement() {
        let mut m = ClaimMachine::new(ClaimKind::Handover, timing(ConflictPolicy::Warn), 1);
        assert_eq!(
            m.start(ms(0)),
            [
                ClaimAction::Probe,
                ClaimAction::Answer,
                ClaimAction::Announce
            ]
        );
        let later = run_timers(&mut m, ms(10_000));
        let announces = later
            .iter()
            .filter(|(_, a)| *a == ClaimAction::Announce)
            .count();
        assert_eq!(announces, 3, "{later:?}");
        assert!(m.done());
    }

    #[test]
    fn a_takeover_claims_only_after_nobody_answered_its_probe() {
        let t = timing(ConflictPolicy::Warn);
        let wait = t.witness_wait;
        let mut m = ClaimMachine::new(ClaimKind::Takeover, t, 1);
        assert_eq!(m.start(ms(0)), [ClaimAction::Probe]);
        assert!(m.watching());
        assert_eq!(m.wake_at(), Some(wait));
        assert_claims(&mut m, wait);
    }

    #[test]
    fn a_takeover_whose_owner_still_answers_is_held_back_and_probed_again() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Takeover, t.clone(), 7);
        m.start(ms(0));
        assert_eq!(
            m.claims_seen(theirs(), ms(1)),
            [ClaimAction::TakeoverDeferred { macs: theirs() }]
        );
        assert!(!m.watching());
        let next = m.wake_at().unwrap_or_default();
        assert!(
            next >= ms(1) + t.reprobe && next <= ms(1) + t.reprobe + t.reprobe_spread,
            "re-probe at {next:?}"
        );
        // Nothing is answered meanwhile, and the probe comes again.
        assert_eq!(m.timer(next), [ClaimAction::Probe]);
        // Still there: held back again, without saying it again.
        assert_eq!(m.claims_seen(theirs(), next + ms(1)), []);
        assert!(!m.watching());
        // Gone: the next probe goes unanswered and the IP is taken over.
        let again = m.wake_at().unwrap_or_default();
        assert_eq!(m.timer(again), [ClaimAction::Probe]);
        assert_claims(&mut m, again + t.witness_wait);
    }

    #[test]
    fn a_late_answer_after_a_takeover_silences_this_node_at_once() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Takeover, t.clone(), 3);
        m.start(ms(0));
        m.timer(t.witness_wait);
        assert!(m.watching(), "listens on after claiming");
        assert_eq!(
            m.claims_seen(theirs(), t.witness_wait + ms(40)),
            [
                ClaimAction::Silence,
                ClaimAction::TakeoverDeferred { macs: theirs() }
            ]
        );
    }

    #[test]
    fn a_takeover_that_stays_unchallenged_repeats_its_announcement_like_a_handover() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Takeover, t.clone(), 3);
        m.start(ms(0));
        let actions = run_timers(&mut m, ms(10_000));
        let announces = actions
            .iter()
            .filter(|(_, a)| *a == ClaimAction::Announce)
            .count();
        assert_eq!(announces, 1 + 3, "{actions:?}");
        assert!(!actions.iter().any(|(_, a)| *a == ClaimAction::Silence));
        assert!(m.done());
    }

    #[test]
    fn two_held_back_claims_reprobe_at_different_times() {
        let t = timing(ConflictPolicy::Warn);
        let mut a = ClaimMachine::new(ClaimKind::Takeover, t.clone(), 1);
        let mut b = ClaimMachine::new(ClaimKind::Takeover, t, 2);
        for m in [&mut a, &mut b] {
            m.start(ms(0));
            m.claims_seen(theirs(), ms(1));
        }
        assert_ne!(a.wake_at(), b.wake_at());
    }

    #[test]
    fn a_handover_answered_by_the_previous_owner_once_is_not_a_conflict() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Handover, t.clone(), 1);
        m.start(ms(0));
        assert_eq!(m.claims_seen(theirs(), ms(1)), []);
        // The confirming probe goes unanswered: a handover, nothing reported.
        assert_eq!(m.timer(t.probe_wait), [ClaimAction::Probe]);
        assert_eq!(m.timer(t.probe_wait + t.confirm_wait), []);
        assert!(!m.watching());
    }

    #[test]
    fn a_handover_answered_twice_is_a_conflict_reported_and_announced_anyway_under_warn() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Handover, t.clone(), 1);
        m.start(ms(0));
        m.claims_seen(theirs(), ms(1));
        m.timer(t.probe_wait);
        m.claims_seen(theirs(), t.probe_wait + ms(1));
        assert_eq!(
            m.timer(t.probe_wait + t.confirm_wait),
            [ClaimAction::Conflict {
                macs: theirs(),
                withdrawn: false
            }]
        );
    }

    #[test]
    fn under_withdraw_a_conflict_keeps_the_ip_silent_until_the_other_host_stops() {
        let t = timing(ConflictPolicy::Withdraw);
        let mut m = ClaimMachine::new(ClaimKind::Handover, t.clone(), 1);
        assert_eq!(m.start(ms(0)), [ClaimAction::Probe]);
        m.claims_seen(theirs(), ms(1));
        assert_eq!(m.timer(t.probe_wait), [ClaimAction::Probe]);
        m.claims_seen(theirs(), t.probe_wait + ms(1));
        let confirmed = t.probe_wait + t.confirm_wait;
        assert_eq!(
            m.timer(confirmed),
            [ClaimAction::Conflict {
                macs: theirs(),
                withdrawn: true
            }]
        );
        let retry = confirmed + t.conflict_retry;
        assert_eq!(m.wake_at(), Some(retry));
        assert_eq!(m.timer(retry), [ClaimAction::Probe]);
        assert_eq!(
            m.timer(retry + t.probe_wait),
            [
                ClaimAction::ConflictCleared,
                ClaimAction::Answer,
                ClaimAction::Announce
            ]
        );
    }

    #[test]
    fn a_succession_answers_only_once_the_previous_owner_lets_go() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Succession, t.clone(), 1);
        assert_eq!(m.start(ms(0)), [ClaimAction::Probe]);
        // The previous owner still answers: silent, nothing reported, probed again soon.
        assert_eq!(m.claims_seen(theirs(), ms(1)), []);
        let again = m.wake_at().unwrap_or_default();
        let retry = t.succession_retry;
        assert!(
            again >= ms(1) + retry && again <= ms(1) + retry + retry / 2,
            "probed again at {again:?}"
        );
        assert_eq!(m.timer(again), [ClaimAction::Probe]);
        // It let go: the probe goes unanswered and this node claims.
        assert_claims(&mut m, again + t.witness_wait);
    }

    #[test]
    fn two_successors_that_both_claimed_probe_again_spread_apart() {
        let t = timing(ConflictPolicy::Warn);
        let retry = t.succession_retry;
        let mut wakes = Vec::new();
        for seed in [1, 2] {
            let mut m = ClaimMachine::new(ClaimKind::Succession, t.clone(), seed);
            m.start(ms(0));
            assert_claims(&mut m, t.witness_wait);
            let now = t.witness_wait + ms(1);
            assert_eq!(m.claims_seen(theirs(), now), [ClaimAction::Silence]);
            let again = m.wake_at().unwrap_or_default();
            assert!(again >= now + retry && again <= now + retry + t.witness_wait * 3);
            wakes.push(again);
        }
        // Apart by more than a few ms: the first to probe again finds the other silent and
        // claims, the other then finds it answering.
        assert!(wakes[0].abs_diff(wakes[1]) > ms(2), "{wakes:?}");
    }

    #[test]
    fn a_succession_whose_holder_never_lets_go_is_held_back_and_said_once() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Succession, t.clone(), 1);
        m.start(ms(0));
        let mut said = 0;
        let mut probes_in_patience = 0;
        let mut now = ms(0);
        while now < t.succession_patience * 3 {
            now += ms(1);
            if now < t.succession_patience {
                probes_in_patience += 1;
            }
            said += m
                .claims_seen(theirs(), now)
                .iter()
                .filter(|a| matches!(a, ClaimAction::TakeoverDeferred { .. }))
                .count();
            assert!(!m.watching());
            now = m.wake_at().unwrap_or_default();
            assert_eq!(m.timer(now), [ClaimAction::Probe], "never answers");
        }
        assert_eq!(said, 1);
        // Backing off: a holder that never lets go costs a few frames, not one per 10 ms.
        assert!(probes_in_patience <= 20, "{probes_in_patience} probes");
        // Past its patience it re-probes at the takeover's pace.
        m.claims_seen(theirs(), now + ms(1));
        assert!(m.wake_at().unwrap_or_default() >= now + ms(1) + t.reprobe);
    }

    #[test]
    fn a_late_answer_after_a_succession_silences_this_node_at_once() {
        let t = timing(ConflictPolicy::Warn);
        let mut m = ClaimMachine::new(ClaimKind::Succession, t.clone(), 3);
        m.start(ms(0));
        m.timer(t.witness_wait);
        assert_eq!(
            m.claims_seen(theirs(), t.witness_wait + ms(5)),
            [ClaimAction::Silence]
        );
        assert!(!m.watching());
    }

    #[test]
    fn a_takeover_whose_probe_was_not_sent_probes_again_instead_of_claiming() {
        let mut m = ClaimMachine::new(ClaimKind::Takeover, timing(ConflictPolicy::Warn), 1);
        assert_eq!(m.start(ms(0)), [ClaimAction::Probe]);
        m.probe_failed(ms(1));
        assert!(!m.watching());
        let again = ms(1) + ClaimTiming::default().succession_retry;
        assert_eq!(m.wake_at(), Some(again));
        assert_eq!(m.timer(again), [ClaimAction::Probe]);
        assert_claims(&mut m, again + ClaimTiming::default().witness_wait);
    }

    #[test]
    fn timers_before_their_time_do_nothing() {
        let mut m = ClaimMachine::new(ClaimKind::Takeover, timing(ConflictPolicy::Warn), 1);
        m.start(ms(0));
        assert_eq!(m.timer(ms(1)), []);
        assert!(m.watching());
    }
}
