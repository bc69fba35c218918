//! The one place that touches raw sockets: a pnet datalink channel per interface (not
//! promiscuous), a thread per interface reading frames and answering with
//! [`ferrolb_wire::Responder`], a loop per interface that claims the IPs gained on it
//! ([`crate::l2::link_loop`]: conflict probe, gratuitous ARP / unsolicited NA, refresh), and the
//! IPv6 solicited-node multicast memberships that make a real NIC deliver Neighbor
//! Solicitations. Two threads per link, none per IP.
//!
//! Needs `CAP_NET_RAW` (packet sockets) only; joining multicast groups uses a plain UDP socket
//! and watching links a netlink socket, neither of which needs a capability.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ferrolb_wire::{Mac, Responder, Verdict};
use pnet_datalink::{Channel, NetworkInterface};
use socket2::{Domain, SockFilter, Socket, Type};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::announcer::Announce;
use crate::election::Interfaces;
use crate::l2::claim::{ClaimKind, ClaimTiming, L2Report};
use crate::l2::freshness::Freshness;
use crate::l2::groups::Memberships;
use crate::l2::interfaces::{LinkInfo, NameFilter, select, usable_names};
use crate::l2::link::{LinkShared, Owned};
use crate::l2::link_loop::{LinkCommand, LinkLoop};
use crate::metrics::{InterfaceLabel, IpLabel, L2Metrics};
use prometheus_client::metrics::counter::Counter;

/// IFF_NOARP from `<linux/if.h>`.
const IFF_NOARP: u32 = 0x80;
/// How long a reader waits for a frame before checking whether it should stop.
const READ_TIMEOUT: Duration = Duration::from_millis(200);
/// Pause after a read error other than a timeout (a vanished interface), so a dead link does
/// not spin a core until the rescan closes it.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Settings of the responder.
#[derive(Debug, Clone, Default)]
pub struct L2Config {
    /// Which interfaces answer when no L2Advertisement names them.
    pub filter: NameFilter,
    /// Probing, announcing and refreshing.
    pub timing: ClaimTiming,
}

struct Link {
    index: u32,
    shared: Arc<LinkShared>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    /// To the link's loop (which ends once this and the reader's copy are gone).
    commands: Option<Sender<LinkCommand>>,
    claims: Option<JoinHandle<()>>,
}

impl Link {
    fn tell(&self, command: LinkCommand) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(command);
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.commands = None;
        if let Some(claims) = self.claims.take() {
            let _ = claims.join();
        }
    }
}

/// An interface as scanned: what selection needs, plus what identifies its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scanned {
    info: LinkInfo,
    index: u32,
}

/// Answers ARP and NDP for the IPs it is told it owns.
pub struct L2Responder {
    config: L2Config,
    links: BTreeMap<String, Link>,
    /// IP → (what the advertisement asks for, interfaces it is answered on).
    placed: BTreeMap<IpAddr, (Interfaces, Vec<String>)>,
    /// Solicited-node memberships: one UDP socket per (group, interface index), held while
    /// `memberships` says an answered IP needs it.
    groups: BTreeMap<(Ipv6Addr, u32), Socket>,
    memberships: Memberships,
    metrics: L2Metrics,
    reports: UnboundedSender<L2Report>,
    last_scan: Vec<Scanned>,
    /// The kernel's interfaces at that scan (what channels are opened on).
    interfaces: Vec<NetworkInterface>,
    generation: u64,
    /// How gains of these IPs are claimed, until they are lost (see
    /// [`Announce::claim_kinds`]); a handover otherwise. Kept so a claim restarted on a new
    /// link is claimed as its gain was.
    kinds: BTreeMap<IpAddr, ClaimKind>,
    /// Until when answering is allowed (renewed by its keeper thread), and what the links hear.
    fresh: Arc<Freshness>,
    /// Interfaces whose raw socket could not be opened (retried on every recheck).
    unopened: BTreeSet<String>,
}

impl std::fmt::Debug for L2Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Responder")
            .field("links", &self.links.keys())
            .field("placed", &self.placed)
            .finish_non_exhaustive()
    }
}

fn link_info(iface: &NetworkInterface) -> LinkInfo {
    let has_master =
        std::path::Path::new(&format!("/sys/class/net/{}/master", iface.name)).exists();
    LinkInfo {
        name: iface.name.clone(),
        // Up and with carrier: a link whose cable (or veth peer) is down cannot answer.
        up: iface.is_up() && iface.is_running(),
        mac: iface.mac.map(|m| m.octets()),
        noarp: iface.flags & IFF_NOARP != 0,
        has_master,
    }
}

fn scan() -> (Vec<NetworkInterface>, Vec<Scanned>) {
    let all = pnet_datalink::interfaces();
    let mut scanned: Vec<Scanned> = all
        .iter()
        .map(|i| Scanned {
            info: link_info(i),
            index: i.index,
        })
        .collect();
    scanned.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    (all, scanned)
}

/// Room for a burst of questions while the reader is busy (the kernel caps it at
/// `net.core.rmem_max`).
const RECEIVE_BUFFER: usize = 4 << 20;

/// A packet socket that receives nothing until bound (protocol 0; pnet binds it to its
/// interface for every protocol), with [`ferrolb_wire::filter`] attached first: frames this
/// node never answers stay in the kernel. The lab's client listens through the same filter,
/// so its own flood does not crowd out the answers it waits for.
///
/// # Errors
/// When the socket cannot be opened or the filter attached.
pub fn filtered_socket() -> std::io::Result<i32> {
    use std::os::fd::IntoRawFd;
    let socket = Socket::new(Domain::PACKET, Type::RAW, None)?;
    let program: Vec<SockFilter> = ferrolb_wire::filter::program()
        .into_iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect();
    socket.attach_filter(&program)?;
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::debug!(error = %e, "receive buffer left at its default");
    }
    Ok(socket.into_raw_fd())
}

fn read_loop(
    link: Arc<LinkShared>,
    mut rx: Box<dyn pnet_datalink::DataLinkReceiver>,
    stop: Arc<AtomicBool>,
    metrics: L2Metrics,
    claims: Sender<LinkCommand>,
) {
    // Cloned out of the family: holding what `get_or_create` returns keeps the family's lock,
    // and the next interface's reader could never add its own series.
    let malformed = metrics
        .malformed
        .get_or_create(&InterfaceLabel {
            interface: link.name.clone(),
        })
        .clone();
    // Per-IP counters looked up once, not per frame (a label lookup formats the IP).
    let mut per_ip: BTreeMap<IpAddr, (Counter, Counter)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let frame = match rx.next() {
            Ok(frame) => frame,
            Err(e) => {
                // Read timeouts come back as errors: look at the stop flag and read again.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) {
                    std::thread::sleep(ERROR_PAUSE);
                }
                continue;
            }
        };
        let claim = ferrolb_wire::claim_in(frame);
        if let Some((ip, mac)) = link.watches(claim) {
            let _ = claims.send(LinkCommand::Seen(ip, mac));
        }
        if link.quiet.load(Ordering::Relaxed) {
            if ferrolb_wire::is_address_probe(frame) {
                continue;
            }
            link.yield_claimed(claim);
        }
        let verdict = {
            let owned = link.owned.read().unwrap_or_else(PoisonError::into_inner);
            Responder {
                mac: link.mac,
                owned_v4: &owned.v4,
                owned_v6: &owned.v6,
            }
            .answer(frame)
        };
        // Someone else on the segment asks or tells addresses: this node is not cut off from
        // its clients (see `isolation::stranded`).
        if verdict.from_another_station() {
            link.fresh.heard();
        }
        // Frozen or stranded: what this node owned may be another's by now.
        if !link.fresh.current() {
            continue;
        }
        match verdict {
            Verdict::Reply { target, .. }
                if link.quiet.load(Ordering::Relaxed) && !link.may_answer(frame, target) => {}
            Verdict::Reply { frame, target } => {
                let (requests, responses) = per_ip.entry(target).or_insert_with(|| {
                    let label = IpLabel {
                        ip: target.to_string(),
                    };
                    (
                        metrics.requests.get_or_create(&label).clone(),
                        metrics.responses.get_or_create(&label).clone(),
                    )
                });
                requests.inc();
                if link.send(&frame) {
                    responses.inc();
                }
            }
            Verdict::Malformed(reason) => {
                tracing::trace!(interface = %link.name, ?reason, "malformed frame dropped");
                malformed.inc();
            }
            Verdict::Ignore(_) => {}
        }
    }
}

impl L2Responder {
    /// A responder with no IPs and no open links, and the receiving end of its reports
    /// (address conflicts).
    ///
    /// # Errors
    /// When the thread that keeps the answering deadline cannot be started.
    pub fn new(
        config: L2Config,
        metrics: L2Metrics,
    ) -> std::io::Result<(Self, UnboundedReceiver<L2Report>)> {
        let (reports, rx) = tokio::sync::mpsc::unbounded_channel();
        let responder = Self {
            config,
            links: BTreeMap::new(),
            placed: BTreeMap::new(),
            groups: BTreeMap::new(),
            memberships: Memberships::default(),
            metrics,
            reports,
            last_scan: Vec::new(),
            interfaces: Vec::new(),
            generation: 0,
            kinds: BTreeMap::new(),
            fresh: Arc::default(),
            unopened: BTreeSet::new(),
        };
        Freshness::keep(&responder.fresh)?;
        Ok((responder, rx))
    }

    fn open(&mut self, iface: &NetworkInterface) -> std::io::Result<()> {
        if self.links.contains_key(&iface.name) {
            return Ok(());
        }
        let mac = Mac(iface.mac.map(|m| m.octets()).unwrap_or_default());
        let config = pnet_datalink::Config {
            read_timeout: Some(READ_TIMEOUT),
            promiscuous: false,
            socket_fd: Some(filtered_socket()?),
            ..pnet_datalink::Config::default()
        };
        let Channel::Ethernet(tx, rx) = pnet_datalink::channel(iface, config)? else {
            return Err(std::io::Error::other("not an Ethernet channel"));
        };
        let shared = Arc::new(LinkShared {
            name: iface.name.clone(),
            mac,
            tx: Mutex::new(tx),
            owned: RwLock::new(Owned::default()),
            watched: RwLock::default(),
            yielded: Mutex::default(),
            quiet: AtomicBool::new(false),
            fresh: self.fresh.clone(),
            send_errors: self.link_errors(&iface.name),
            failing: AtomicBool::new(false),
            reports: self.reports.clone(),
        });
        let (commands, commands_rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let claims = {
            let link_loop = LinkLoop::new(
                shared.clone(),
                self.config.timing.clone(),
                commands_rx,
                self.metrics.clone(),
                self.reports.clone(),
            );
            std::thread::Builder::new()
                .name(format!("l2-claims-{}", iface.name))
                .spawn(move || link_loop.run())?
        };
        // A link whose reader cannot start is not opened; its loop ends with the last sender.
        let reader = {
            let (shared, stop, metrics) = (shared.clone(), stop.clone(), self.metrics.clone());
            let commands = commands.clone();
            std::thread::Builder::new()
                .name(format!("l2-{}", iface.name))
                .spawn(move || read_loop(shared, rx, stop, metrics, commands))?
        };
        self.links.insert(
            iface.name.clone(),
            Link {
                index: iface.index,
                shared,
                stop,
                reader: Some(reader),
                commands: Some(commands),
                claims: Some(claims),
            },
        );
        Ok(())
    }

    /// The counter of frames `interface` could not send or receive on.
    fn link_errors(&self, interface: &str) -> Counter {
        self.metrics
            .link_errors
            .get_or_create(&InterfaceLabel {
                interface: interface.to_owned(),
            })
            .clone()
    }

    /// The socket of `interface` cannot be opened: counted, and said once until it opens
    /// (retried on every recheck of the links).
    fn open_failed(&mut self, interface: &str, error: &std::io::Error) {
        self.link_errors(interface).inc();
        if self.unopened.insert(interface.to_owned()) {
            tracing::warn!(%interface, %error, "cannot open a raw socket (CAP_NET_RAW needed); retrying");
            let _ = self.reports.send(L2Report::LinkFailed {
                interface: interface.to_owned(),
                error: format!("cannot open a raw socket (CAP_NET_RAW needed): {error}"),
            });
        }
    }

    /// Tries again to open the links whose socket could not be opened, and claims the IPs
    /// placed on those that open now.
    fn retry_unopened(&mut self) {
        let unopened = std::mem::take(&mut self.unopened);
        let all = self.interfaces.clone();
        for name in unopened {
            let Some(iface) = all.iter().find(|i| i.name == name) else {
                continue;
            };
            if let Err(e) = self.open(iface) {
                self.open_failed(&name, &e);
                continue;
            }
            tracing::info!(interface = %name, "raw socket open");
            let _ = self.reports.send(L2Report::LinkRecovered {
                interface: name.clone(),
            });
            let waiting: Vec<IpAddr> = self
                .placed
                .iter()
                .filter(|(_, (_, names))| names.contains(&name))
                .map(|(ip, _)| *ip)
                .collect();
            for ip in waiting {
                self.start(ip, iface);
            }
        }
    }

    fn join_group(&mut self, ip: Ipv6Addr, index: u32) {
        let Some(group) = self.memberships.add(ip, index) else {
            return;
        };
        let joined = Socket::new(Domain::IPV6, Type::DGRAM, None)
            .and_then(|s| s.join_multicast_v6(&group, index).map(|()| s));
        match joined {
            Ok(socket) => {
                self.groups.insert((group, index), socket);
            }
            Err(e) => {
                // Not counted as joined, so the next IP of the group tries again.
                self.memberships.remove(ip, index);
                tracing::warn!(%group, error = %e, "cannot join the solicited-node group; NS to it may not arrive on a real NIC")
            }
        }
    }

    fn leave_group(&mut self, ip: Ipv6Addr, index: u32) {
        if let Some(group) = self.memberships.remove(ip, index) {
            // Dropping the socket leaves the group.
            self.groups.remove(&(group, index));
        }
    }

    /// Starts a claim for `ip` on the link `name` (once its socket opens, if it does not yet).
    fn start(&mut self, ip: IpAddr, iface: &NetworkInterface) {
        if self.unopened.contains(&iface.name) {
            return;
        }
        if let Err(e) = self.open(iface) {
            self.open_failed(&iface.name, &e);
            return;
        }
        let Some(link) = self.links.get(&iface.name) else {
            return;
        };
        self.generation += 1;
        let generation = self.generation;
        link.shared
            .owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .wanted
            .insert(ip, generation);
        let index = link.index;
        if let IpAddr::V6(v6) = ip {
            self.join_group(v6, index);
        }
        let Some(link) = self.links.get(&iface.name) else {
            return;
        };
        let kind = self.kinds.get(&ip).copied().unwrap_or(ClaimKind::Handover);
        link.tell(LinkCommand::Start {
            ip,
            generation,
            kind,
        });
    }

    fn withdraw_from(&mut self, ip: IpAddr, name: &str) {
        let Some(link) = self.links.get(name) else {
            return;
        };
        link.shared
            .owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(ip);
        link.tell(LinkCommand::Stop(ip));
        if let IpAddr::V6(v6) = ip {
            let index = link.index;
            self.leave_group(v6, index);
        }
    }

    /// Puts `ip` on the interfaces chosen for it now; returns them.
    fn place(&mut self, ip: IpAddr, wanted: &Interfaces, all: &[NetworkInterface]) -> Vec<String> {
        let infos: Vec<LinkInfo> = self.last_scan.iter().map(|s| s.info.clone()).collect();
        let chosen = select(&infos, wanted, &self.config.filter);
        let previous = self
            .placed
            .insert(ip, (wanted.clone(), chosen.clone()))
            .map(|(_, names)| names)
            .unwrap_or_default();
        for name in previous.iter().filter(|n| !chosen.contains(n)) {
            self.withdraw_from(ip, name);
        }
        for name in chosen.iter().filter(|n| !previous.contains(n)) {
            if let Some(iface) = all.iter().find(|i| &i.name == name) {
                self.start(ip, iface);
            }
        }
        chosen
    }

    /// Reads the interfaces again; closes links that are gone or were replaced (new index or
    /// MAC). True when anything changed.
    fn rescan(&mut self) -> (bool, Vec<NetworkInterface>) {
        let (all, scanned) = scan();
        self.interfaces.clone_from(&all);
        if scanned == self.last_scan {
            return (false, all);
        }
        let stale: Vec<String> = self
            .links
            .iter()
            .filter(|(name, link)| {
                !scanned.iter().any(|s| {
                    &s.info.name == *name
                        && s.index == link.index
                        && s.info.mac == Some(link.shared.mac.0)
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(link) = self.links.remove(&name) {
                tracing::info!(interface = %name, "interface gone or replaced; closing its socket");
                self.groups.retain(|(_, index), _| *index != link.index);
                self.memberships.forget_link(link.index);
            }
            // Its IPs are placed afresh below.
            for (_, names) in self.placed.values_mut() {
                names.retain(|n| n != &name);
            }
        }
        self.last_scan = scanned;
        (true, all)
    }
}

impl Drop for L2Responder {
    /// Ends every claim (each link's loop and reader end as its link is dropped).
    fn drop(&mut self) {
        for link in self.links.values() {
            *link
                .shared
                .owned
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Owned::default();
        }
    }
}

impl Announce for L2Responder {
    fn gained(&mut self, ip: IpAddr, interfaces: &Interfaces) -> Vec<String> {
        // The links as last scanned: link changes rescan through `relink` (rtnetlink, and a
        // periodic recheck), so gaining a thousand IPs at start-up does not read the kernel's
        // interfaces a thousand times.
        if self.interfaces.is_empty() {
            self.rescan();
        }
        let all = self.interfaces.clone();
        let chosen = self.place(ip, interfaces, &all);
        if chosen.is_empty() {
            tracing::warn!(%ip, ?interfaces, "owner of this IP, but no usable interface to announce it on");
        }
        chosen
    }

    fn lost(&mut self, ip: IpAddr) {
        self.kinds.remove(&ip);
        for name in self.placed.remove(&ip).map(|(_, n)| n).unwrap_or_default() {
            self.withdraw_from(ip, &name);
        }
    }

    fn quiesce(&mut self) {
        for link in self.links.values() {
            link.shared.quiet.store(true, Ordering::Relaxed);
        }
    }

    fn reannounce(&mut self) {
        for link in self.links.values() {
            link.tell(LinkCommand::Reannounce);
        }
    }

    fn usable_interfaces(&mut self, named: &BTreeSet<String>) -> Option<BTreeSet<String>> {
        if self.last_scan.is_empty() {
            self.rescan();
        }
        let infos: Vec<LinkInfo> = self.last_scan.iter().map(|s| s.info.clone()).collect();
        Some(usable_names(&infos, &self.config.filter, named))
    }

    fn claim_kinds(&mut self, kinds: BTreeMap<IpAddr, ClaimKind>) -> bool {
        self.kinds.extend(kinds);
        true
    }

    fn froze(&self) -> bool {
        self.fresh.froze()
    }

    fn hold_answers(&mut self, held: bool) {
        self.fresh.hold(held);
    }

    fn heard_at(&self) -> Option<std::time::Instant> {
        self.fresh.heard_at()
    }

    fn reclaim_all(&mut self) -> Vec<IpAddr> {
        let placed: Vec<(IpAddr, Vec<String>)> = self
            .placed
            .iter()
            .filter(|(_, (_, names))| !names.is_empty())
            .map(|(ip, (_, names))| (*ip, names.clone()))
            .collect();
        let all = self.interfaces.clone();
        for (ip, names) in &placed {
            self.kinds.insert(*ip, ClaimKind::Succession);
            for name in names {
                self.withdraw_from(*ip, name);
                if let Some(iface) = all.iter().find(|i| &i.name == name) {
                    self.start(*ip, iface);
                }
            }
        }
        // Every answered IP is a claim waiting for the link's witness now: answering may resume.
        self.fresh.thaw();
        placed.into_iter().map(|(ip, _)| ip).collect()
    }

    fn relink(&mut self) -> Vec<(IpAddr, Vec<String>)> {
        // Before the rescan, which forgets links that are gone.
        let placed: Vec<(IpAddr, Interfaces, Vec<String>)> = self
            .placed
            .iter()
            .map(|(ip, (wanted, names))| (*ip, wanted.clone(), names.clone()))
            .collect();
        let (changed, all) = self.rescan();
        self.retry_unopened();
        if !changed {
            return Vec::new();
        }
        let mut moved = Vec::new();
        for (ip, wanted, before) in placed {
            let after = self.place(ip, &wanted, &all);
            if after != before {
                tracing::info!(%ip, ?before, ?after, "interfaces changed");
                moved.push((ip, after));
            }
        }
        moved
    }
}
