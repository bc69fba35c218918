//! What one link does when this node gains an IP: probe for another holder first (an RFC 5227
//! ARP probe, or a duplicate-address Neighbor Solicitation for IPv6), answer, send the gratuitous
//! ARP / unsolicited NA and its repeats, then the optional periodic refresh. Runs on its own
//! short-lived thread per (IP, link) and stops the moment the IP is lost.
//!
//! A claim seen during the probe is checked once more after a short wait before it counts as a
//! conflict: when ownership moves, the previous owner may answer the first probe in the few
//! milliseconds before it learns it lost the IP, and that is a handover, not a conflict.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ferrolb_wire::Mac;
use pnet_datalink::DataLinkSender;
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::L2Metrics;

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
}

/// The IPs one link answers for, and which claim of each is current.
#[derive(Debug, Default)]
pub struct Owned {
    /// IPv4 addresses answered now.
    pub v4: BTreeSet<Ipv4Addr>,
    /// IPv6 addresses answered now.
    pub v6: BTreeSet<Ipv6Addr>,
    /// Gained and not lost since, with the generation of the claim that serves it; a claim
    /// whose generation is no longer here stops.
    pub wanted: BTreeMap<IpAddr, u64>,
}

impl Owned {
    fn answer(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.v4.insert(v4),
            IpAddr::V6(v6) => self.v6.insert(v6),
        };
    }

    /// Every IP answered now.
    pub fn answered(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.v4.iter().copied().map(IpAddr::V4);
        v4.chain(self.v6.iter().copied().map(IpAddr::V6))
    }

    /// Stops answering for `ip` and ends its claim.
    pub fn forget(&mut self, ip: IpAddr) {
        self.wanted.remove(&ip);
        match ip {
            IpAddr::V4(v4) => self.v4.remove(&v4),
            IpAddr::V6(v6) => self.v6.remove(&v6),
        };
    }
}

/// What a link's threads share.
pub struct LinkShared {
    /// Interface name.
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Sending half of its channel.
    pub tx: Mutex<Box<dyn DataLinkSender>>,
    /// Answered and wanted IPs.
    pub owned: RwLock<Owned>,
    /// IPs being probed, with the MACs seen claiming them (filled by the reader thread).
    pub claims: Mutex<BTreeMap<IpAddr, BTreeSet<Mac>>>,
    /// The speaker is leaving: keep answering questions, but announce nothing more and leave
    /// address probes to the next owner (answering them would look like a conflict there).
    pub quiet: AtomicBool,
}

impl std::fmt::Debug for LinkShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkShared")
            .field("name", &self.name)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

impl LinkShared {
    /// Sends one frame; a failure is logged (the next repeat may get through).
    pub fn send(&self, frame: &[u8]) -> bool {
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        match tx.send_to(frame, None) {
            Some(Err(e)) => {
                tracing::warn!(interface = %self.name, error = %e, "frame not sent");
                false
            }
            _ => true,
        }
    }

    /// Sends the gratuitous ARP / unsolicited NA for `ip` and counts it; nothing once the
    /// speaker is leaving.
    pub fn announce(&self, ip: IpAddr, metrics: &L2Metrics) {
        if self.quiet.load(Ordering::Relaxed) {
            return;
        }
        let frames = announce_frames(self.mac, ip);
        if frames.iter().filter(|f| self.send(f)).count() > 0 {
            L2Metrics::count(&metrics.gratuitous, ip);
        }
    }

    /// Notes claims of other stations on probed IPs (called by the reader for every frame).
    pub fn watch_claims(&self, frame: &[u8]) {
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        for (ip, macs) in claims.iter_mut() {
            if let Some(mac) = ferrolb_wire::conflict_from(frame, *ip, self.mac) {
                macs.insert(mac);
            }
        }
    }

    fn current(&self, ip: IpAddr, generation: u64) -> bool {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .wanted
            .get(&ip)
            == Some(&generation)
    }

    /// Starts answering, unless the claim was ended meanwhile (checked under the same lock
    /// `lost` takes, so a lost IP is never answered again).
    fn answer(&self, ip: IpAddr, generation: u64) -> bool {
        let mut owned = self.owned.write().unwrap_or_else(PoisonError::into_inner);
        if owned.wanted.get(&ip) != Some(&generation) {
            return false;
        }
        owned.answer(ip);
        true
    }

    fn start_watch(&self, ip: IpAddr) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ip, BTreeSet::new());
    }

    /// The MACs seen since the last call, and keeps watching.
    fn take_claims(&self, ip: IpAddr) -> BTreeSet<Mac> {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&ip)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn stop_watch(&self, ip: IpAddr) {
        self.claims
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&ip);
    }
}

fn probe_frame(mac: Mac, ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => ferrolb_wire::arp_probe(mac, v4),
        IpAddr::V6(v6) => ferrolb_wire::dad_ns(mac, v6),
    }
}

/// The gratuitous frames announcing `ip` from `mac`.
fn announce_frames(mac: Mac, ip: IpAddr) -> Vec<Vec<u8>> {
    match ip {
        IpAddr::V4(v4) => ferrolb_wire::gratuitous_arp(mac, v4).into_iter().collect(),
        IpAddr::V6(v6) => vec![ferrolb_wire::unsolicited_na(mac, v6)],
    }
}

/// One claim: everything a link does for an IP it gained.
#[derive(Debug)]
pub struct Claim {
    /// The link.
    pub link: Arc<LinkShared>,
    /// The IP.
    pub ip: IpAddr,
    /// The generation in [`Owned::wanted`] this claim serves.
    pub generation: u64,
    /// Timing and policy.
    pub timing: ClaimTiming,
    /// Counters.
    pub metrics: L2Metrics,
    /// Where conflicts are reported.
    pub reports: UnboundedSender<L2Report>,
}

impl Claim {
    /// Probes and waits; the MACs that claimed the IP in two probes in a row.
    fn conflict(&self, probe: &[u8]) -> BTreeSet<Mac> {
        self.link.send(probe);
        std::thread::sleep(self.timing.probe_wait);
        if self.link.take_claims(self.ip).is_empty() {
            return BTreeSet::new();
        }
        self.confirm(probe)
    }

    /// Probes once more after a claim: the MACs that still claim the IP.
    fn confirm(&self, probe: &[u8]) -> BTreeSet<Mac> {
        self.link.send(probe);
        std::thread::sleep(self.timing.confirm_wait);
        self.link.take_claims(self.ip)
    }

    fn report_conflict(&self, macs: &BTreeSet<Mac>, withdrawn: bool) {
        for mac in macs {
            tracing::warn!(ip = %self.ip, %mac, interface = %self.link.name, withdrawn, "address conflict: another station answers for this IP");
            L2Metrics::count(&self.metrics.conflicts, self.ip);
            let _ = self.reports.send(L2Report::Conflict {
                ip: self.ip,
                mac: *mac,
                interface: self.link.name.clone(),
                withdrawn,
            });
        }
    }

    /// Runs the claim to its end (the IP lost, or the repeats done without a refresh).
    pub fn run(self) {
        let (ip, generation, mac) = (self.ip, self.generation, self.link.mac);
        let probe = probe_frame(mac, ip);
        self.link.start_watch(ip);
        let withdraw = self.timing.policy == ConflictPolicy::Withdraw;
        if !withdraw {
            // Probe first, then answer at once: failover must not wait for the probe.
            self.link.send(&probe);
            if !self.link.answer(ip, generation) {
                self.link.stop_watch(ip);
                return;
            }
            self.link.announce(ip, &self.metrics);
            std::thread::sleep(self.timing.probe_wait);
            if !self.link.take_claims(ip).is_empty() {
                let macs = self.confirm(&probe);
                if !macs.is_empty() {
                    self.report_conflict(&macs, false);
                }
            }
        } else {
            let mut macs = self.conflict(&probe);
            if !macs.is_empty() {
                self.report_conflict(&macs, true);
                while !macs.is_empty() {
                    std::thread::sleep(self.timing.conflict_retry);
                    if !self.link.current(ip, generation) {
                        self.link.stop_watch(ip);
                        return;
                    }
                    macs = self.conflict(&probe);
                }
                tracing::info!(%ip, interface = %self.link.name, "address conflict over; announcing");
                let _ = self.reports.send(L2Report::ConflictCleared {
                    ip,
                    interface: self.link.name.clone(),
                });
            }
            if !self.link.answer(ip, generation) {
                self.link.stop_watch(ip);
                return;
            }
            self.link.announce(ip, &self.metrics);
        }
        self.link.stop_watch(ip);
        for _ in 0..self.timing.repeats {
            std::thread::sleep(self.timing.repeat_interval);
            if !self.link.current(ip, generation) {
                return;
            }
            self.link.announce(ip, &self.metrics);
        }
        let Some(refresh) = self.timing.refresh else {
            return;
        };
        loop {
            std::thread::sleep(refresh);
            if !self.link.current(ip, generation) {
                return;
            }
            self.link.announce(ip, &self.metrics);
        }
    }
}
