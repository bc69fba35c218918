//! Turns the election's results into what this node must change: IPs it gained (start answering,
//! send gratuitous ARP / unsolicited NA) and IPs it lost (stop answering). Keyed by IP: the
//! Services holding an IP may change (a shared IP gains or loses a Service) without the
//! responder hearing of it. Pure: the L2 responder receives the changes through [`Announce`], so
//! each side is tested alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::election::{Cluster, Decisions, Interfaces, Ownership, ServiceFacts, decide_all};
use crate::l2::claim::ClaimKind;

/// One change of this node's announcements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start answering for `ip` on `interfaces` (also sent again when the interfaces change).
    Gained {
        /// The IP.
        ip: IpAddr,
        /// The Services holding it, `namespace/name`.
        services: BTreeSet<String>,
        /// Where to answer.
        interfaces: Interfaces,
    },
    /// Stop answering for `ip`.
    Lost {
        /// The IP.
        ip: IpAddr,
        /// The Services that held it.
        services: BTreeSet<String>,
    },
    /// Still answered the same way, but the Services holding `ip` changed (nothing for the
    /// responder to do).
    Holders {
        /// The IP.
        ip: IpAddr,
        /// The Services holding it now.
        services: BTreeSet<String>,
        /// Those that held it before.
        before: BTreeSet<String>,
    },
}

impl Change {
    /// The IP changed.
    pub fn ip(&self) -> IpAddr {
        match self {
            Self::Gained { ip, .. } | Self::Lost { ip, .. } | Self::Holders { ip, .. } => *ip,
        }
    }
}

/// The receiving end of announcements (the L2 responder, or a test double).
pub trait Announce {
    /// Start answering for an IP; returns the interfaces it is answered on (none: the node has
    /// none of those required).
    fn gained(&mut self, ip: IpAddr, interfaces: &Interfaces) -> Vec<String>;
    /// Stop answering for an IP.
    fn lost(&mut self, ip: IpAddr);
    /// The node's links changed: choose the interfaces again. Returns the IPs now answered on
    /// other interfaces.
    fn relink(&mut self) -> Vec<(IpAddr, Vec<String>)> {
        Vec::new()
    }
    /// The speaker is leaving: keep answering, but announce nothing more and leave address
    /// probes to the next owner.
    fn quiesce(&mut self) {}
    /// Announce every answered IP once more (a member came back: clients that moved to an
    /// interim owner during a partition must come back).
    fn reannounce(&mut self) {}
    /// How gains of these IPs are claimed (kept until the IP is lost): a takeover from a node
    /// that gossip calls dead, or a succession from a live holder, is claimed only when the
    /// link shows nobody else answers it (see [`crate::l2::claim`]); any other gain is a
    /// handover. True when the receiver does so and reports each outcome
    /// (`L2Report::TakenOver` / `TakeoverDeferred`); false (the default) when it claims at once.
    fn claim_kinds(&mut self, _kinds: BTreeMap<IpAddr, ClaimKind>) -> bool {
        false
    }
    /// Whether a freeze of this process stopped answering (see [`crate::l2::freshness`]);
    /// answering resumes after [`Self::reclaim_all`].
    fn froze(&self) -> bool {
        false
    }
    /// Answer nothing while `held` (the speaker is stranded, see [`crate::isolation`]).
    fn hold_answers(&mut self, _held: bool) {}
    /// When a link last received ARP or NDP from another station, if this responder has links.
    fn heard_at(&self) -> Option<std::time::Instant> {
        None
    }
    /// After a freeze or being stranded: claim every IP placed on a link afresh, as a
    /// succession (another node may have taken it over meanwhile), and answer again once each
    /// claim allows. Returns the IPs now waiting for the link's witness.
    fn reclaim_all(&mut self) -> Vec<IpAddr> {
        Vec::new()
    }
    /// The interfaces of this node that can carry Service IPs now (up, with carrier, passing
    /// the name filter or named in `named`, the interfaces L2Advertisements name), for other
    /// speakers to read; `None` when this responder does not know its links (a test double).
    fn usable_interfaces(&mut self, named: &BTreeSet<String>) -> Option<BTreeSet<String>> {
        let _ = named;
        None
    }
}

/// What this node announces for one IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The Services holding it.
    pub services: BTreeSet<String>,
    /// Where it is answered.
    pub interfaces: Interfaces,
}

/// This node's current announcements.
#[derive(Debug, Clone)]
pub struct Announcer {
    node: String,
    current: BTreeMap<IpAddr, Announced>,
}

impl Announcer {
    /// An announcer for `node`, announcing nothing yet.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            current: BTreeMap::new(),
        }
    }

    /// Recomputes from a new view and returns the changes, every `Lost` before any `Gained`.
    pub fn update(&mut self, cluster: &Cluster, services: &[ServiceFacts]) -> Vec<Change> {
        self.update_from(&decide_all(cluster, services))
    }

    /// [`Self::update`] from decisions already made (see [`decide_all`]).
    pub fn update_from(&mut self, decisions: &Decisions) -> Vec<Change> {
        let ips: BTreeSet<IpAddr> = self
            .current
            .keys()
            .chain(decisions.keys())
            .copied()
            .collect();
        self.update_ips(decisions, &ips)
    }

    /// [`Self::update_from`] for `ips` only: the IPs whose decision moved (the others keep what
    /// they have). Every `Lost` comes before any `Gained`.
    pub fn update_ips(&mut self, decisions: &Decisions, ips: &BTreeSet<IpAddr>) -> Vec<Change> {
        let mut lost = Vec::new();
        let mut changes = Vec::new();
        for ip in ips {
            let desired = decisions.get(ip).and_then(|d| match &d.ownership {
                Ownership::Owner { node, interfaces } if *node == self.node => Some(Announced {
                    services: d.services.clone(),
                    interfaces: interfaces.clone(),
                }),
                _ => None,
            });
            let Some(now) = desired else {
                if let Some(was) = self.current.remove(ip) {
                    lost.push(Change::Lost {
                        ip: *ip,
                        services: was.services,
                    });
                }
                continue;
            };
            let was = self.current.get(ip);
            if let Some(was) = was
                && was.services != now.services
            {
                changes.push(Change::Holders {
                    ip: *ip,
                    services: now.services.clone(),
                    before: was.services.clone(),
                });
            }
            if was.is_none_or(|w| w.interfaces != now.interfaces) {
                changes.push(Change::Gained {
                    ip: *ip,
                    services: now.services.clone(),
                    interfaces: now.interfaces.clone(),
                });
            }
            self.current.insert(*ip, now);
        }
        lost.extend(changes);
        lost
    }

    /// Hands changes to the responder; returns where each gained IP is answered.
    pub fn apply(changes: &[Change], to: &mut impl Announce) -> Vec<(IpAddr, Vec<String>)> {
        let mut placed = Vec::new();
        for change in changes {
            match change {
                Change::Gained { ip, interfaces, .. } => {
                    placed.push((*ip, to.gained(*ip, interfaces)));
                }
                Change::Lost { ip, .. } => to.lost(*ip),
                Change::Holders { .. } => {}
            }
        }
        placed
    }

    /// What this node announces now, by IP.
    pub fn announced(&self) -> &BTreeMap<IpAddr, Announced> {
        &self.current
    }

    /// Stops announcing everything (shutdown): the changes to apply.
    pub fn withdraw_all(&mut self) -> Vec<Change> {
        let changes = self
            .current
            .iter()
            .map(|(ip, was)| Change::Lost {
                ip: *ip,
                services: was.services.clone(),
            })
            .collect();
        self.current.clear();
        changes
    }
}
