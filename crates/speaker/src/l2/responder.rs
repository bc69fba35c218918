//! The one place that touches raw sockets: a pnet datalink channel per interface (not
//! promiscuous), a thread per interface reading frames and answering with
//! [`ferrolb_wire::Responder`], gratuitous ARP / unsolicited NA on gaining an IP, and the IPv6
//! solicited-node multicast memberships that make a real NIC deliver Neighbor Solicitations.
//!
//! Needs `CAP_NET_RAW` (packet sockets) only; joining multicast groups uses a plain UDP socket.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ferrolb_wire::{Mac, Responder, Verdict};
use pnet_datalink::{Channel, DataLinkSender, NetworkInterface};
use socket2::{Domain, Socket, Type};

use crate::announcer::Announce;
use crate::election::Interfaces;
use crate::l2::interfaces::{LinkInfo, select};

/// IFF_NOARP from `<linux/if.h>`.
const IFF_NOARP: u32 = 0x80;
/// How long a reader waits for a frame before checking whether it should stop.
const READ_TIMEOUT: Duration = Duration::from_millis(200);

/// Settings of the responder.
#[derive(Debug, Clone)]
pub struct L2Config {
    /// Interface name patterns skipped when no interfaces are named.
    pub excludes: Vec<String>,
    /// Gratuitous ARP / unsolicited NA sent after the first one on gaining an IP.
    pub repeats: u32,
    /// Time between them.
    pub repeat_interval: Duration,
}

impl Default for L2Config {
    fn default() -> Self {
        Self {
            excludes: super::interfaces::DEFAULT_EXCLUDES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            repeats: 3,
            repeat_interval: Duration::from_secs(1),
        }
    }
}

/// Counters the speaker exports (requests answered, replies, gratuitous, malformed).
#[derive(Debug, Default)]
pub struct L2Counters {
    /// ARP requests / NS answered, by IP.
    pub requests: Mutex<BTreeMap<IpAddr, u64>>,
    /// Replies sent.
    pub responses: AtomicU64,
    /// Gratuitous ARP / unsolicited NA sent, by IP.
    pub gratuitous: Mutex<BTreeMap<IpAddr, u64>>,
    /// Malformed frames, by interface.
    pub malformed: Mutex<BTreeMap<String, u64>>,
}

#[derive(Debug, Default)]
struct Owned {
    v4: BTreeSet<Ipv4Addr>,
    v6: BTreeSet<Ipv6Addr>,
}

struct Link {
    mac: Mac,
    index: u32,
    owned: Arc<RwLock<Owned>>,
    tx: Arc<Mutex<Box<dyn DataLinkSender>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// Answers ARP and NDP for the IPs it is told it owns.
pub struct L2Responder {
    config: L2Config,
    links: BTreeMap<String, Link>,
    /// IP → interfaces it is answered on.
    placed: BTreeMap<IpAddr, Vec<String>>,
    /// Solicited-node memberships: one UDP socket per (group, interface).
    groups: BTreeMap<(Ipv6Addr, u32), Socket>,
    counters: Arc<L2Counters>,
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
        up: iface.is_up(),
        mac: iface.mac.map(|m| m.octets()),
        noarp: iface.flags & IFF_NOARP != 0,
        has_master,
    }
}

fn read_loop(
    name: String,
    mac: Mac,
    mut rx: Box<dyn pnet_datalink::DataLinkReceiver>,
    tx: Arc<Mutex<Box<dyn DataLinkSender>>>,
    owned: Arc<RwLock<Owned>>,
    stop: Arc<AtomicBool>,
    counters: Arc<L2Counters>,
) {
    while !stop.load(Ordering::Relaxed) {
        let frame = match rx.next() {
            Ok(frame) => frame,
            // Read timeouts come back as errors: look at the stop flag and read again.
            Err(_) => continue,
        };
        let verdict = {
            let owned = owned
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Responder {
                mac,
                owned_v4: &owned.v4,
                owned_v6: &owned.v6,
            }
            .answer(frame)
        };
        match verdict {
            Verdict::Reply(reply) => {
                let mut tx = tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(Err(e)) = tx.send_to(&reply, None) {
                    tracing::warn!(interface = %name, error = %e, "reply not sent");
                } else {
                    counters.responses.fetch_add(1, Ordering::Relaxed);
                }
            }
            Verdict::Malformed(reason) => {
                tracing::trace!(interface = %name, ?reason, "malformed frame dropped");
                *counters
                    .malformed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(name.clone())
                    .or_default() += 1;
            }
            Verdict::Ignore(_) => {}
        }
    }
}

impl L2Responder {
    /// A responder with no IPs and no open links.
    pub fn new(config: L2Config) -> Self {
        Self {
            config,
            links: BTreeMap::new(),
            placed: BTreeMap::new(),
            groups: BTreeMap::new(),
            counters: Arc::default(),
        }
    }

    /// The counters, for metrics.
    pub fn counters(&self) -> Arc<L2Counters> {
        self.counters.clone()
    }

    fn open(&mut self, iface: &NetworkInterface) -> std::io::Result<()> {
        if self.links.contains_key(&iface.name) {
            return Ok(());
        }
        let mac = Mac(iface.mac.map(|m| m.octets()).unwrap_or_default());
        let config = pnet_datalink::Config {
            read_timeout: Some(READ_TIMEOUT),
            promiscuous: false,
            ..pnet_datalink::Config::default()
        };
        let Channel::Ethernet(tx, rx) = pnet_datalink::channel(iface, config)? else {
            return Err(std::io::Error::other("not an Ethernet channel"));
        };
        let tx = Arc::new(Mutex::new(tx));
        let owned = Arc::new(RwLock::new(Owned::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (name, tx, owned, stop, counters) = (
                iface.name.clone(),
                tx.clone(),
                owned.clone(),
                stop.clone(),
                self.counters.clone(),
            );
            std::thread::Builder::new()
                .name(format!("l2-{}", iface.name))
                .spawn(move || read_loop(name, mac, rx, tx, owned, stop, counters))?
        };
        self.links.insert(
            iface.name.clone(),
            Link {
                mac,
                index: iface.index,
                owned,
                tx,
                stop,
                reader: Some(reader),
            },
        );
        Ok(())
    }

    fn announce_frames(mac: Mac, ip: IpAddr) -> Vec<Vec<u8>> {
        match ip {
            IpAddr::V4(v4) => ferrolb_wire::gratuitous_arp(mac, v4).into_iter().collect(),
            IpAddr::V6(v6) => vec![ferrolb_wire::unsolicited_na(mac, v6)],
        }
    }

    fn join_group(&mut self, ip: Ipv6Addr, index: u32) {
        let group = ferrolb_wire::solicited_node(ip);
        if self.groups.contains_key(&(group, index)) {
            return;
        }
        let joined = Socket::new(Domain::IPV6, Type::DGRAM, None)
            .and_then(|s| s.join_multicast_v6(&group, index).map(|()| s));
        match joined {
            Ok(socket) => {
                self.groups.insert((group, index), socket);
            }
            Err(e) => {
                tracing::warn!(%group, error = %e, "cannot join the solicited-node group; NS to it may not arrive on a real NIC")
            }
        }
    }
}

impl Announce for L2Responder {
    fn gained(&mut self, ip: IpAddr, interfaces: &Interfaces) {
        let all = pnet_datalink::interfaces();
        let infos: Vec<LinkInfo> = all.iter().map(link_info).collect();
        let chosen = select(&infos, interfaces, &self.config.excludes);
        if chosen.is_empty() {
            tracing::warn!(%ip, ?interfaces, "owner of this IP, but no usable interface to announce it on");
        }
        let previous = self.placed.insert(ip, chosen.clone()).unwrap_or_default();
        for name in previous.iter().filter(|n| !chosen.contains(n)) {
            self.withdraw_from(ip, name);
        }
        for name in &chosen {
            let Some(iface) = all.iter().find(|i| &i.name == name) else {
                continue;
            };
            if let Err(e) = self.open(iface) {
                tracing::warn!(interface = %name, error = %e, "cannot open a raw socket (CAP_NET_RAW needed)");
                continue;
            }
            let Some(link) = self.links.get(name) else {
                continue;
            };
            {
                let mut owned = link
                    .owned
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match ip {
                    IpAddr::V4(v4) => owned.v4.insert(v4),
                    IpAddr::V6(v6) => owned.v6.insert(v6),
                };
            }
            let (mac, index, tx, owned) =
                (link.mac, link.index, link.tx.clone(), link.owned.clone());
            if let IpAddr::V6(v6) = ip {
                self.join_group(v6, index);
            }
            // Announce at once, then repeat while still owned: clients that missed the first
            // (or cached the old owner) switch over.
            let frames = Self::announce_frames(mac, ip);
            let (repeats, interval, counters) = (
                self.config.repeats,
                self.config.repeat_interval,
                self.counters.clone(),
            );
            let _ = std::thread::Builder::new()
                .name("l2-announce".into())
                .spawn(move || {
                    for round in 0..=repeats {
                        if round > 0 {
                            std::thread::sleep(interval);
                        }
                        let still_owned = {
                            let owned = owned
                                .read()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            match ip {
                                IpAddr::V4(v4) => owned.v4.contains(&v4),
                                IpAddr::V6(v6) => owned.v6.contains(&v6),
                            }
                        };
                        if !still_owned {
                            return;
                        }
                        for frame in &frames {
                            let mut tx =
                                tx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            let _ = tx.send_to(frame, None);
                        }
                        *counters
                            .gratuitous
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .entry(ip)
                            .or_default() += 1;
                    }
                });
        }
    }

    fn lost(&mut self, ip: IpAddr) {
        for name in self.placed.remove(&ip).unwrap_or_default() {
            self.withdraw_from(ip, &name);
        }
    }
}

impl L2Responder {
    fn withdraw_from(&mut self, ip: IpAddr, name: &str) {
        let Some(link) = self.links.get(name) else {
            return;
        };
        {
            let mut owned = link
                .owned
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match ip {
                IpAddr::V4(v4) => owned.v4.remove(&v4),
                IpAddr::V6(v6) => owned.v6.remove(&v6),
            };
        }
        if let IpAddr::V6(v6) = ip {
            self.groups
                .remove(&(ferrolb_wire::solicited_node(v6), link.index));
        }
    }
}
