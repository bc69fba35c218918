//! Turns the election's results into what this node must change: IPs it gained (start answering,
//! send gratuitous ARP / unsolicited NA) and IPs it lost (stop answering). Pure: the L2 responder
//! receives the changes through [`Announce`], so each side is tested alone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::election::{Cluster, Interfaces, Ownership, ServiceFacts, decide_all};

/// One change of this node's announcements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start answering for `ip` on `interfaces` (also sent again when the interfaces change).
    Gained {
        /// The IP.
        ip: IpAddr,
        /// Its Service, `namespace/name`.
        service: String,
        /// Where to answer.
        interfaces: Interfaces,
    },
    /// Stop answering for `ip`.
    Lost {
        /// The IP.
        ip: IpAddr,
        /// The Service it belonged to.
        service: String,
    },
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
    /// Gains of these IPs (until the next call) are takeovers from a node that gossip calls
    /// dead: claim each only when the link shows nobody else answers it (see
    /// [`crate::l2::claim`]). True when the receiver does so and reports each outcome
    /// (`L2Report::TakenOver` / `TakeoverDeferred`); false (the default) when it claims at once.
    fn takeovers(&mut self, _ips: std::collections::BTreeSet<IpAddr>) -> bool {
        false
    }
}

/// This node's current announcements.
#[derive(Debug, Clone)]
pub struct Announcer {
    node: String,
    current: BTreeMap<IpAddr, (String, Interfaces)>,
}

impl Announcer {
    /// An announcer for `node`, announcing nothing yet.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            current: BTreeMap::new(),
        }
    }

    /// Recomputes from a new view and returns the changes: every `Lost` before any `Gained`, so
    /// an IP moving between Services is never answered twice.
    pub fn update(&mut self, cluster: &Cluster, services: &[ServiceFacts]) -> Vec<Change> {
        self.update_from(&decide_all(cluster, services), services)
    }

    /// [`Self::update`] from ownership already decided (see [`decide_all`]).
    pub fn update_from(
        &mut self,
        ownership: &BTreeMap<String, Ownership>,
        services: &[ServiceFacts],
    ) -> Vec<Change> {
        let mut desired: BTreeMap<IpAddr, (String, Interfaces)> = BTreeMap::new();
        for svc in services {
            if let Some(Ownership::Owner { node, interfaces }) = ownership.get(&svc.key)
                && *node == self.node
            {
                for ip in &svc.ips {
                    desired.insert(*ip, (svc.key.clone(), interfaces.clone()));
                }
            }
        }
        let mut changes = Vec::new();
        for (ip, (service, _)) in &self.current {
            if desired.get(ip).is_none_or(|(s, _)| s != service) {
                changes.push(Change::Lost {
                    ip: *ip,
                    service: service.clone(),
                });
            }
        }
        for (ip, (service, interfaces)) in &desired {
            if self.current.get(ip) != Some(&(service.clone(), interfaces.clone())) {
                changes.push(Change::Gained {
                    ip: *ip,
                    service: service.clone(),
                    interfaces: interfaces.clone(),
                });
            }
        }
        self.current = desired;
        changes
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
            }
        }
        placed
    }

    /// What this node announces now: IP → (Service, interfaces).
    pub fn announced(&self) -> &BTreeMap<IpAddr, (String, Interfaces)> {
        &self.current
    }

    /// Stops announcing everything (shutdown): the changes to apply.
    pub fn withdraw_all(&mut self) -> Vec<Change> {
        let changes = self
            .current
            .iter()
            .map(|(ip, (service, _))| Change::Lost {
                ip: *ip,
                service: service.clone(),
            })
            .collect();
        self.current.clear();
        changes
    }
}
