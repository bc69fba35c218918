//! One link as its threads share it: the IPs it answers ([`Owned`]), its sending half, and the
//! few flags the reader obeys (leaving, fresh, yielded). The reader thread answers from
//! [`Owned`]; the link's loop ([`crate::l2::link_loop`]) changes it as claims go, under the
//! same lock, so a lost IP is never answered again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use ferrolb_wire::Mac;
use pnet_datalink::DataLinkSender;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc::UnboundedSender;

use crate::l2::claim::L2Report;
use crate::l2::freshness::Freshness;

/// How many times a frame the kernel had no room for is tried again, [`SEND_PAUSE`] apart:
/// a full transmit queue drains in well under this (20 ms), and a frame is never dropped
/// silently: one that still fails is counted and reported.
const SEND_RETRIES: u32 = 20;
/// Pause between those tries.
const SEND_PAUSE: Duration = Duration::from_millis(1);

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

    /// Whether `ip` is answered now.
    pub fn answers(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.contains(&v4),
            IpAddr::V6(v6) => self.v6.contains(&v6),
        }
    }

    /// Every IP answered now.
    pub fn answered(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.v4.iter().copied().map(IpAddr::V4);
        v4.chain(self.v6.iter().copied().map(IpAddr::V6))
    }

    /// Stops answering for `ip` but keeps its claim (a takeover held back).
    pub fn silence(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.v4.remove(&v4),
            IpAddr::V6(v6) => self.v6.remove(&v6),
        };
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
    /// IPs whose claim listens for other stations' claims now (the reader tells the link's
    /// loop about those only).
    pub watched: RwLock<HashSet<IpAddr>>,
    /// The speaker is leaving: keep answering questions until the next owner claims the IP,
    /// but announce nothing more and leave address probes to the next owner (answering them
    /// would hold its claim back).
    pub quiet: AtomicBool,
    /// Answer and announce only while this is current (not after a freeze).
    pub fresh: Arc<Freshness>,
    /// Leaving: IPs the next owner has claimed (answered only to unicast questions).
    pub yielded: Mutex<BTreeSet<IpAddr>>,
    /// Frames that could not be sent.
    pub send_errors: Counter,
    /// Sending fails now (said once per episode).
    pub failing: AtomicBool,
    /// Where a failing link is reported.
    pub reports: UnboundedSender<L2Report>,
}

impl std::fmt::Debug for LinkShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkShared")
            .field("name", &self.name)
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

/// Whether a send failed only for want of room (a full socket or transmit queue).
fn for_want_of_room(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

impl LinkShared {
    /// Sends one frame, trying again a few times while the kernel has no room for it. A frame
    /// that still fails is counted, and the first failure of an episode is logged and reported
    /// (the link's loop probes or announces again later).
    pub fn send(&self, frame: &[u8]) -> bool {
        let mut retries = 0;
        let result = loop {
            let result = self
                .tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .send_to(frame, None)
                .unwrap_or(Ok(()));
            match result {
                Err(e) if for_want_of_room(&e) && retries < SEND_RETRIES => {
                    retries += 1;
                    // Outside the lock: the reader answers meanwhile.
                    std::thread::sleep(SEND_PAUSE);
                }
                result => break result,
            }
        };
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(interface = %self.name, "frames are sent again");
                    let _ = self.reports.send(L2Report::LinkRecovered {
                        interface: self.name.clone(),
                    });
                }
                true
            }
            Err(e) => {
                self.send_errors.inc();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(interface = %self.name, error = %e, "frame not sent");
                    let _ = self.reports.send(L2Report::LinkFailed {
                        interface: self.name.clone(),
                        error: format!("frames cannot be sent: {e}"),
                    });
                }
                false
            }
        }
    }

    /// Sends the gratuitous ARP / unsolicited NA for `ip` and counts it in `sent`; nothing once
    /// the speaker is leaving or answering is not current. True when a frame went out.
    pub fn announce(&self, ip: IpAddr, sent: &Counter) -> bool {
        if self.quiet.load(Ordering::Relaxed) || !self.fresh.current() {
            return false;
        }
        let frames = announce_frames(self.mac, ip);
        let went = frames.iter().filter(|f| self.send(f)).count() > 0;
        if went {
            sent.inc();
        }
        went
    }

    /// Whether another station's claim (from [`ferrolb_wire::claim_in`], read once per frame
    /// by the reader) is one a claim of this link listens for now.
    pub fn watches(&self, claim: Option<(IpAddr, Mac)>) -> Option<(IpAddr, Mac)> {
        let (ip, mac) = claim.filter(|(_, mac)| *mac != self.mac)?;
        self.watched
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&ip)
            .then_some((ip, mac))
    }

    /// Starts or stops telling the link's loop about other stations' claims of `ip`.
    pub fn watch(&self, ip: IpAddr, on: bool) {
        let mut watched = self.watched.write().unwrap_or_else(PoisonError::into_inner);
        if on {
            watched.insert(ip);
        } else {
            watched.remove(&ip);
        }
    }

    /// While leaving: once another station claims an IP (the next owner's announcement or
    /// answer), stops answering broadcast and multicast questions for it, so that both answer
    /// the segment only for that moment, not the whole grace. A client that still asks this
    /// MAC directly (unicast, to confirm a neighbour entry that missed the announcement) is
    /// still answered: this node serves the IP until its grace ends.
    pub fn yield_claimed(&self, claim: Option<(IpAddr, Mac)>) {
        let Some((ip, mac)) = claim else {
            return;
        };
        if mac == self.mac
            || !self
                .owned
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .answers(ip)
        {
            return;
        }
        let mut yielded = self.yielded.lock().unwrap_or_else(PoisonError::into_inner);
        if yielded.insert(ip) {
            tracing::info!(%ip, %mac, interface = %self.name, "leaving: the next owner claimed it");
        }
    }

    /// Whether a reply to `request` for `ip` may go out while leaving: not to the segment
    /// once the next owner claimed the IP (see [`Self::yield_claimed`]).
    pub fn may_answer(&self, request: &[u8], ip: IpAddr) -> bool {
        let to_us = request.get(..6).is_some_and(|dst| dst == self.mac.0);
        to_us
            || !self
                .yielded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&ip)
    }

    /// Whether the claim of `generation` still serves `ip`.
    pub fn current(&self, ip: IpAddr, generation: u64) -> bool {
        self.owned
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .wanted
            .get(&ip)
            == Some(&generation)
    }

    /// Starts answering, unless the claim was ended meanwhile (checked under the same lock
    /// `lost` takes, so a lost IP is never answered again).
    pub fn answer(&self, ip: IpAddr, generation: u64) -> bool {
        let mut owned = self.owned.write().unwrap_or_else(PoisonError::into_inner);
        if owned.wanted.get(&ip) != Some(&generation) {
            return false;
        }
        owned.answer(ip);
        true
    }

    /// Stops answering `ip` while keeping its claim (a takeover held back).
    pub fn silence(&self, ip: IpAddr) {
        self.owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .silence(ip);
    }
}

/// The ARP probe / duplicate-address NS for `ip` from `mac`.
pub fn probe_frame(mac: Mac, ip: IpAddr) -> Vec<u8> {
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
