//! The one loop of a link that claims its IPs: it owns the link's [`ClaimSet`], takes commands
//! from the responder (start, stop, announce again) and from the link's reader (another
//! station claims an IP being probed), runs the claims' timers and carries out their actions.
//! One thread per link, however many IPs it answers.
//!
//! Frames are paced: at most [`PACE_BURST`] per [`PACE_GAP`]. A node that gains thousands of
//! IPs at once (its neighbour died) probes and announces all of them within a few hundred
//! milliseconds without overrunning its socket or the switch; what waits is queued, not
//! dropped. A claim is started (and its timer run) only when there is room to send what it
//! asks for, so a probe's witness wait counts from the moment the probe leaves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use ferrolb_wire::Mac;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::UnboundedSender;

use crate::l2::claim::{ClaimAction, ClaimKind, ClaimTiming, L2Report};
use crate::l2::claim_set::{ClaimSet, Step};
use crate::l2::link::{LinkShared, probe_frame};
use crate::metrics::{IpLabel, L2Metrics};

/// Frames a link sends in one burst. With [`PACE_GAP`] that is 64,000 frames a second at most
/// (about 45 Mbit/s of minimum-size frames): 10,000 IPs probed and announced in about 0.3 s,
/// while a switch port or a veth backlog (1,000 frames) is never handed more than it holds.
pub const PACE_BURST: u32 = 64;
/// Time that refills a burst.
pub const PACE_GAP: Duration = Duration::from_millis(1);

/// What the link's loop is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCommand {
    /// Claim `ip`: the link's [`crate::l2::link::Owned::wanted`] holds it with `generation`.
    Start {
        /// The IP.
        ip: IpAddr,
        /// The claim's generation.
        generation: u64,
        /// How carefully to claim it.
        kind: ClaimKind,
    },
    /// `ip` is no longer claimed here.
    Stop(IpAddr),
    /// Another station claims `ip` (the reader saw its answer or announcement).
    Seen(IpAddr, Mac),
    /// Announce every IP the link answers again (a member came back).
    Reannounce,
}

/// The loop's state.
#[derive(Debug)]
pub struct LinkLoop {
    link: Arc<LinkShared>,
    claims: ClaimSet,
    commands: Receiver<LinkCommand>,
    /// Claims waiting for room to send their first frames, oldest first.
    starts: VecDeque<(IpAddr, u64, ClaimKind)>,
    /// IPs waiting to be announced again.
    reannounce: VecDeque<IpAddr>,
    /// What the reader is told to pass on, as last set (see [`LinkShared::watch`]).
    watched: HashSet<IpAddr>,
    /// Each IP's count of announcements (looked up once, not per frame).
    announced: HashMap<IpAddr, Counter>,
    metrics: L2Metrics,
    reports: UnboundedSender<L2Report>,
    epoch: Instant,
    /// Frames that may go out before the next refill, and when the last refill was.
    tokens: u32,
    refilled: Duration,
}

impl LinkLoop {
    /// A loop for `link` that takes its commands from `commands`.
    pub fn new(
        link: Arc<LinkShared>,
        timing: ClaimTiming,
        commands: Receiver<LinkCommand>,
        metrics: L2Metrics,
        reports: UnboundedSender<L2Report>,
    ) -> Self {
        Self {
            link,
            claims: ClaimSet::new(timing),
            commands,
            starts: VecDeque::new(),
            reannounce: VecDeque::new(),
            watched: HashSet::new(),
            announced: HashMap::new(),
            metrics,
            reports,
            epoch: Instant::now(),
            tokens: PACE_BURST,
            refilled: Duration::ZERO,
        }
    }

    /// Runs until every sender of commands is gone.
    pub fn run(mut self) {
        loop {
            let now = self.epoch.elapsed();
            self.refill(now);
            let first = match self.wait(now) {
                None => self
                    .commands
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(wait) => self.commands.recv_timeout(wait),
            };
            let mut open = true;
            match first {
                Ok(command) => self.handle(command),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            while open {
                match self.commands.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            if !open {
                return;
            }
            self.work();
        }
    }

    /// How long to wait for a command: until the next timer, or the next refill while work
    /// waits for room; `None`: until a command comes.
    fn wait(&self, now: Duration) -> Option<Duration> {
        let backlog = !self.starts.is_empty() || !self.reannounce.is_empty();
        let next = self.claims.next_due();
        if backlog || next.is_some_and(|at| at <= now) {
            return Some(if self.tokens > 0 {
                Duration::ZERO
            } else {
                (self.refilled + PACE_GAP).saturating_sub(now)
            });
        }
        next.map(|at| at.saturating_sub(now))
    }

    fn refill(&mut self, now: Duration) {
        if now >= self.refilled + PACE_GAP {
            self.tokens = PACE_BURST;
            self.refilled = now;
        }
    }

    fn handle(&mut self, command: LinkCommand) {
        let now = self.epoch.elapsed();
        match command {
            LinkCommand::Start {
                ip,
                generation,
                kind,
            } => self.starts.push_back((ip, generation, kind)),
            LinkCommand::Stop(ip) => self.stop(ip),
            LinkCommand::Seen(ip, mac) => {
                if let Some(step) = self.claims.seen(ip, mac, now) {
                    self.carry_out(step, now);
                }
            }
            LinkCommand::Reannounce => {
                let owned = self
                    .link
                    .owned
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.reannounce = owned.answered().collect();
            }
        }
    }

    fn stop(&mut self, ip: IpAddr) {
        self.claims.stop(ip);
        self.announced.remove(&ip);
        self.sync_watch(ip);
    }

    /// Runs what is due, then starts waiting claims, then announcements again, while there is
    /// room to send.
    fn work(&mut self) {
        let now = self.epoch.elapsed();
        self.refill(now);
        while self.tokens > 0 {
            let Some(step) = self.claims.due(now) else {
                break;
            };
            self.carry_out(step, now);
        }
        while self.tokens > 0 {
            let Some((ip, generation, kind)) = self.starts.pop_front() else {
                break;
            };
            // Lost (or started again) while it waited.
            if !self.link.current(ip, generation) {
                continue;
            }
            let step = self
                .claims
                .start(ip, generation, kind, self.seed(generation), now);
            self.carry_out(step, now);
        }
        while self.tokens > 0 {
            let Some(ip) = self.reannounce.pop_front() else {
                break;
            };
            let answered = self
                .link
                .owned
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .answers(ip);
            if answered {
                self.announce(ip);
            }
        }
    }

    /// A seed for a claim's re-probe jitter that differs between nodes and claims.
    fn seed(&self, generation: u64) -> u64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(0));
        nanos ^ generation.rotate_left(32)
    }

    fn spend(&mut self, frames: u32) {
        self.tokens = self.tokens.saturating_sub(frames);
    }

    /// Tells the reader whether to pass on other stations' claims of `ip`, when that changed.
    fn sync_watch(&mut self, ip: IpAddr) {
        let on = self.claims.watching(ip);
        let changed = if on {
            self.watched.insert(ip)
        } else {
            self.watched.remove(&ip)
        };
        if changed {
            self.link.watch(ip, on);
        }
    }

    fn announce(&mut self, ip: IpAddr) {
        self.spend(2);
        let metrics = &self.metrics;
        let counter = self.announced.entry(ip).or_insert_with(|| {
            metrics
                .gratuitous
                .get_or_create(&IpLabel { ip: ip.to_string() })
                .clone()
        });
        self.link.announce(ip, counter);
    }

    /// Carries out one claim's actions; a claim whose IP was lost meanwhile stops.
    fn carry_out(&mut self, step: Step, now: Duration) {
        let Step {
            ip,
            generation,
            actions,
        } = step;
        // Before the actions: an answer to a probe among them may come back within a
        // millisecond, and must find the watch open.
        self.sync_watch(ip);
        let link = self.link.clone();
        let interface = &link.name;
        for action in actions {
            match action {
                ClaimAction::Probe => {
                    if !self.link.current(ip, generation) {
                        return self.stop(ip);
                    }
                    self.spend(1);
                    if !self.link.send(&probe_frame(self.link.mac, ip)) {
                        self.claims.probe_failed(ip, now);
                        self.sync_watch(ip);
                    }
                }
                ClaimAction::Answer => {
                    if !self.link.answer(ip, generation) {
                        return self.stop(ip);
                    }
                }
                ClaimAction::Silence => self.link.silence(ip),
                // A repeat falls due up to a second after the last check: an IP lost meanwhile
                // must not be announced once more (it would pull clients to a node that no
                // longer answers for it).
                ClaimAction::Announce => {
                    if !self.link.current(ip, generation) {
                        return self.stop(ip);
                    }
                    self.announce(ip);
                }
                ClaimAction::Conflict { macs, withdrawn } => {
                    for mac in macs {
                        tracing::warn!(%ip, %mac, %interface, withdrawn, "address conflict: another station answers for this IP");
                        L2Metrics::count(&self.metrics.conflicts, ip);
                        let _ = self.reports.send(L2Report::Conflict {
                            ip,
                            mac,
                            interface: interface.clone(),
                            withdrawn,
                        });
                    }
                }
                ClaimAction::ConflictCleared => {
                    tracing::info!(%ip, %interface, "address conflict over; announcing");
                    let _ = self.reports.send(L2Report::ConflictCleared {
                        ip,
                        interface: interface.clone(),
                    });
                }
                ClaimAction::TakeoverDeferred { macs } => {
                    self.metrics.takeover_deferred.inc();
                    for mac in macs {
                        tracing::info!(%ip, %mac, %interface, "claim held back: another node still answers on the link");
                        let _ = self.reports.send(L2Report::TakeoverDeferred {
                            ip,
                            mac,
                            interface: interface.clone(),
                        });
                    }
                }
                ClaimAction::TakenOver => {
                    tracing::debug!(%ip, %interface, "claimed: nobody else answers on the link");
                    let _ = self.reports.send(L2Report::TakenOver {
                        ip,
                        interface: interface.clone(),
                    });
                }
            }
        }
        if self.claims.watching(ip) != self.watched.contains(&ip) {
            self.sync_watch(ip);
        }
    }
}
