//! What operators see of the speakers' decisions, decided without I/O: which `ServiceL2Status`
//! objects to write or delete ([`StatusBook`]) and which Events to publish ([`Notices`]).
//!
//! There is one `ServiceL2Status` per (Service, announcing node): ownership is per IP, so a
//! dual-stack Service whose IPv4 and IPv6 addresses elect different nodes has two, one written by
//! each node, each naming the interfaces that node answers on.
//!
//! Writes happen only on change: an owner writes its object when it starts announcing (an IP of)
//! a Service or its interfaces change, deletes it when it stops, and once, on taking a Service
//! over, deletes the objects left behind by nodes that no longer announce any of its IPs (a dead
//! node cannot delete its own). It never deletes others' objects again for that Service, so two
//! nodes that both believe they own an IP (a partition) each keep one object instead of deleting
//! each other's in a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use ferrolb_observe::events::Severity;

use crate::election::{Decisions, Ownership, Silence};

/// A `ServiceL2Status` as read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusObject {
    /// Object name.
    pub name: String,
    /// Service, `namespace/name`.
    pub service: String,
    /// Announcing node.
    pub node: String,
    /// Interfaces written.
    pub interfaces: BTreeSet<String>,
}

/// A write to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusWrite {
    /// Create or update this node's object for `service`.
    Apply {
        /// Object name ([`status_name`]).
        name: String,
        /// Service, `namespace/name`.
        service: String,
        /// Interfaces it is announced on.
        interfaces: BTreeSet<String>,
    },
    /// Delete an object.
    Delete {
        /// Object name.
        name: String,
    },
}

/// The name of `node`'s object for `service`: stable, so a restarted speaker finds its own, and
/// within every length limit whatever the names.
pub fn status_name(service: &str, node: &str) -> String {
    let digest = Sha256::digest(format!("{service}@{node}").as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("l2-{hex}")
}

/// This node's bookkeeping of its `ServiceL2Status` objects.
#[derive(Debug, Clone, Default)]
pub struct StatusBook {
    node: String,
    /// What this node last wrote per Service.
    written: BTreeMap<String, BTreeSet<String>>,
    /// Services whose written object has been seen in the cluster since (if it disappears
    /// now, someone deleted it and it is written again).
    seen: BTreeSet<String>,
    /// Services taken over whose other nodes' objects are still to be deleted.
    takeover: BTreeSet<String>,
    /// Deletes sent and not yet seen gone.
    deleting: BTreeSet<String>,
}

impl StatusBook {
    /// The book of `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }

    /// Notes that this node started announcing `service`.
    pub fn took_over(&mut self, service: &str) {
        self.takeover.insert(service.to_owned());
    }

    /// The writes that bring the cluster's objects (`observed`, all nodes') in line with what
    /// this node announces (`announcing`: Service → interfaces). `owners`: Service → the nodes
    /// announcing any of its IPs in this node's view; their objects are never deleted.
    pub fn plan(
        &mut self,
        announcing: &BTreeMap<String, BTreeSet<String>>,
        owners: &BTreeMap<String, BTreeSet<String>>,
        observed: &[StatusObject],
    ) -> Vec<StatusWrite> {
        let mut writes = Vec::new();
        self.deleting
            .retain(|name| observed.iter().any(|o| &o.name == name));
        for (service, interfaces) in announcing {
            let name = status_name(service, &self.node);
            let own = observed.iter().find(|o| o.name == name);
            if own.is_some_and(|o| &o.interfaces == interfaces) {
                self.seen.insert(service.clone());
            } else if self.written.get(service) != Some(interfaces) || self.seen.contains(service) {
                writes.push(StatusWrite::Apply {
                    name,
                    service: service.clone(),
                    interfaces: interfaces.clone(),
                });
                self.written.insert(service.clone(), interfaces.clone());
                self.seen.remove(service);
            }
            if self.takeover.remove(service) {
                let owning = owners.get(service);
                let others: Vec<&StatusObject> = observed
                    .iter()
                    .filter(|o| &o.service == service && o.node != self.node)
                    .filter(|o| !owning.is_some_and(|nodes| nodes.contains(&o.node)))
                    .collect();
                for other in others {
                    self.delete(&other.name, &mut writes);
                }
            }
        }
        self.takeover.retain(|s| announcing.contains_key(s));
        self.written.retain(|s, _| announcing.contains_key(s));
        self.seen.retain(|s| announcing.contains_key(s));
        let stale: Vec<&StatusObject> = observed
            .iter()
            .filter(|o| {
                o.node == self.node
                    && (!announcing.contains_key(&o.service)
                        || o.name != status_name(&o.service, &self.node))
            })
            .collect();
        for object in stale {
            self.delete(&object.name, &mut writes);
        }
        writes
    }

    fn delete(&mut self, name: &str, writes: &mut Vec<StatusWrite>) {
        if self.deleting.insert(name.to_owned()) {
            writes.push(StatusWrite::Delete {
                name: name.to_owned(),
            });
        }
    }
}

/// An Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// This node now announces the Service (`NodeAssigned`).
    NodeAssigned {
        /// Service, `namespace/name`.
        service: String,
        /// This node.
        node: String,
    },
    /// Nobody may announce an IP of the Service (Warning).
    Silent {
        /// Service.
        service: String,
        /// The IP.
        ip: IpAddr,
        /// Why.
        reason: Silence,
    },
    /// This node was elected but has none of the interfaces it must answer on (Warning).
    NoInterface {
        /// Service.
        service: String,
        /// This node.
        node: String,
    },
}

impl Notice {
    /// Service the Event is about.
    pub fn service(&self) -> &str {
        match self {
            Self::NodeAssigned { service, .. }
            | Self::Silent { service, .. }
            | Self::NoInterface { service, .. } => service,
        }
    }

    /// Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NodeAssigned { .. } => "NodeAssigned",
            Self::Silent {
                reason: Silence::NotInPool,
                ..
            } => "IPNotInPool",
            Self::Silent { .. } => "NotAnnounced",
            Self::NoInterface { .. } => "NoInterface",
        }
    }

    /// Normal for a takeover, Warning for a Service nobody announces.
    pub fn severity(&self) -> Severity {
        match self {
            Self::NodeAssigned { .. } => Severity::Normal,
            Self::Silent { .. } | Self::NoInterface { .. } => Severity::Warning,
        }
    }

    /// Event note.
    pub fn note(&self) -> String {
        match self {
            Self::NodeAssigned { node, .. } => {
                format!("announcing from node \"{node}\" with protocol \"layer2\"")
            }
            Self::Silent { ip, reason, .. } => {
                format!("no node announces {ip}: {}", reason.explain())
            }
            Self::NoInterface { node, .. } => format!(
                "node \"{node}\" was elected to announce this Service but has none of the interfaces the L2Advertisement names (or none usable); nothing is announced"
            ),
        }
    }
}

/// Which Events to publish, each once per change.
#[derive(Debug, Clone, Default)]
pub struct Notices {
    node: String,
    /// Services this node announces, and whether it found interfaces for them.
    announcing: BTreeMap<String, bool>,
    /// Silences reported by this node, while it is the reporter: (Service, IP) → why.
    silenced: BTreeMap<(String, IpAddr), Silence>,
}

impl Notices {
    /// For `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }

    /// The Events for a new round of ownership decisions. `placed` says, for each Service this node
    /// announces, whether it answers on at least one interface. `reporter`: whether this node
    /// reports silences (one node does, so each is reported once, not by every speaker).
    pub fn update(
        &mut self,
        decisions: &Decisions,
        placed: &BTreeMap<String, bool>,
        reporter: bool,
    ) -> Vec<Notice> {
        let mut notices = Vec::new();
        for (service, has_interfaces) in placed {
            let before = self.announcing.get(service).copied();
            if before.is_none() {
                notices.push(Notice::NodeAssigned {
                    service: service.clone(),
                    node: self.node.clone(),
                });
            }
            if !has_interfaces && before != Some(false) {
                notices.push(Notice::NoInterface {
                    service: service.clone(),
                    node: self.node.clone(),
                });
            }
        }
        self.announcing = placed.clone();
        if !reporter {
            self.silenced.clear();
            return notices;
        }
        let silent = silences(decisions);
        for ((service, ip), reason) in &silent {
            if self.silenced.get(&(service.clone(), *ip)) != Some(reason) {
                notices.push(Notice::Silent {
                    service: service.clone(),
                    ip: *ip,
                    reason: *reason,
                });
            }
        }
        self.silenced = silent;
        notices
    }
}

/// (Service, IP) → why nobody announces it, for every silent IP.
fn silences(decisions: &Decisions) -> BTreeMap<(String, IpAddr), Silence> {
    decisions
        .iter()
        .filter_map(|(ip, d)| match d.ownership {
            Ownership::Silent(reason) => Some((ip, &d.services, reason)),
            Ownership::Owner { .. } => None,
        })
        .flat_map(|(ip, services, reason)| services.iter().map(move |s| ((s.clone(), *ip), reason)))
        .collect()
}

/// The IPs in Service status that lie in no pool, as every speaker counts them
/// (`ferrolb_speaker_ip_not_in_pool_total`): each (Service, IP) once per change.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    refused: BTreeSet<(String, IpAddr)>,
}

impl Refusals {
    /// How many (Service, IP) pairs `decisions` newly refuse as outside every pool.
    pub fn update(&mut self, decisions: &Decisions) -> u64 {
        let now: BTreeSet<(String, IpAddr)> = silences(decisions)
            .into_iter()
            .filter(|(_, reason)| *reason == Silence::NotInPool)
            .map(|(key, _)| key)
            .collect();
        let new = now.difference(&self.refused).count();
        self.refused = now;
        u64::try_from(new).unwrap_or(u64::MAX)
    }
}

/// When to write this speaker's usable interfaces on its Pod: when the Pod says otherwise and
/// that value has not been sent already (a failed write is sent again after [`Self::retry`]).
#[derive(Debug, Clone, Default)]
pub struct UsablePublisher {
    sent: Option<String>,
}

impl UsablePublisher {
    /// The value to write, if any. `desired`: this node's usable interfaces now (`None`:
    /// unknown); `observed`: the Pod's annotation as last read.
    pub fn plan(&mut self, desired: Option<&str>, observed: Option<&str>) -> Option<String> {
        let desired = desired?;
        if observed == Some(desired) {
            self.sent = None;
            return None;
        }
        if self.sent.as_deref() == Some(desired) {
            return None;
        }
        self.sent = Some(desired.to_owned());
        self.sent.clone()
    }

    /// Forgets what was sent, so a write that did not land is sent again.
    pub fn retry(&mut self) {
        self.sent = None;
    }
}

/// The node that reports silences: the first, by name, of the live speakers, so every speaker
/// agrees without talking.
pub fn reporter<'a>(alive: impl IntoIterator<Item = &'a String>) -> Option<&'a String> {
    alive.into_iter().min()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::election::{Decision, Interfaces};

    fn none() -> BTreeMap<String, BTreeSet<String>> {
        BTreeMap::new()
    }

    fn decision(services: &[&str], ownership: Ownership) -> Decision {
        Decision {
            services: set(services),
            ownership,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn object(service: &str, node: &str, interfaces: &[&str]) -> StatusObject {
        StatusObject {
            name: status_name(service, node),
            service: service.into(),
            node: node.into(),
            interfaces: set(interfaces),
        }
    }

    #[test]
    fn an_owner_writes_once_and_again_only_on_change() {
        let mut book = StatusBook::new("a");
        let mut announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        let first = book.plan(&announcing, &none(), &[]);
        assert!(matches!(&first[..], [StatusWrite::Apply { service, .. }] if service == "ns/web"));
        // The write is not visible yet: nothing is written twice.
        assert_eq!(book.plan(&announcing, &none(), &[]), []);
        let observed = [object("ns/web", "a", &["eth0"])];
        assert_eq!(book.plan(&announcing, &none(), &observed), []);
        announcing.insert("ns/web".into(), set(&["eth0", "eth1"]));
        assert_eq!(book.plan(&announcing, &none(), &observed).len(), 1);
    }

    #[test]
    fn an_object_deleted_by_someone_else_is_written_again() {
        let mut book = StatusBook::new("a");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        book.plan(&announcing, &none(), &[]);
        book.plan(&announcing, &none(), &[object("ns/web", "a", &["eth0"])]);
        assert_eq!(book.plan(&announcing, &none(), &[]).len(), 1);
    }

    #[test]
    fn taking_over_deletes_the_previous_owners_object_once() {
        let mut book = StatusBook::new("b");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        let old = object("ns/web", "a", &["eth0"]);
        book.took_over("ns/web");
        let writes = book.plan(&announcing, &none(), std::slice::from_ref(&old));
        assert!(writes.contains(&StatusWrite::Delete {
            name: old.name.clone()
        }));
        // A partitioned node that recreates its object is left alone.
        let mine = object("ns/web", "b", &["eth0"]);
        assert_eq!(book.plan(&announcing, &none(), &[old, mine]), []);
    }

    #[test]
    fn losing_a_service_deletes_the_own_object_only() {
        let mut book = StatusBook::new("a");
        let observed = [
            object("ns/web", "a", &["eth0"]),
            object("ns/web", "b", &["eth0"]),
        ];
        let writes = book.plan(&BTreeMap::new(), &none(), &observed);
        assert_eq!(
            writes,
            [StatusWrite::Delete {
                name: status_name("ns/web", "a")
            }]
        );
        assert_eq!(book.plan(&BTreeMap::new(), &none(), &observed), []);
    }

    #[test]
    fn node_assigned_once_per_ownership_and_silences_once_per_reason() {
        let mut notices = Notices::new("a");
        let owner = Ownership::Owner {
            node: "a".into(),
            interfaces: Interfaces::All,
        };
        let decisions = Decisions::from([
            ("192.0.2.1".parse().unwrap(), decision(&["ns/web"], owner)),
            (
                "192.0.2.2".parse().unwrap(),
                decision(&["ns/db"], Ownership::Silent(Silence::NoAdvertisement)),
            ),
        ]);
        let placed = BTreeMap::from([("ns/web".to_owned(), true)]);
        let first = notices.update(&decisions, &placed, true);
        assert_eq!(first.len(), 2, "{first:?}");
        assert_eq!(notices.update(&decisions, &placed, true), []);
        // Losing and regaining is a new assignment.
        notices.update(&decisions, &BTreeMap::new(), true);
        let again = notices.update(&decisions, &placed, true);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].reason(), "NodeAssigned");
        // Not the reporter: no silences.
        let mut quiet = Notices::new("b");
        assert_eq!(quiet.update(&decisions, &BTreeMap::new(), false), []);
    }

    #[test]
    fn an_ip_outside_every_pool_is_reported_once_to_each_service_holding_it() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let decisions = Decisions::from([(
            ip,
            decision(&["ns/a", "ns/b"], Ownership::Silent(Silence::NotInPool)),
        )]);
        let mut notices = Notices::new("a");
        let first = notices.update(&decisions, &BTreeMap::new(), true);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|n| n.reason() == "IPNotInPool"
            && n.severity() == Severity::Warning
            && n.note().contains("203.0.113.9")));
        assert_eq!(notices.update(&decisions, &BTreeMap::new(), true), []);
        let mut refusals = Refusals::default();
        assert_eq!(refusals.update(&decisions), 2);
        assert_eq!(refusals.update(&decisions), 0);
        assert_eq!(refusals.update(&Decisions::new()), 0);
        assert_eq!(refusals.update(&decisions), 2);
    }

    #[test]
    fn an_owner_without_interfaces_warns_once() {
        let mut notices = Notices::new("a");
        let placed = BTreeMap::from([("ns/web".to_owned(), false)]);
        let first = notices.update(&BTreeMap::new(), &placed, false);
        assert!(first.iter().any(|n| n.reason() == "NoInterface"));
        assert_eq!(notices.update(&BTreeMap::new(), &placed, false), []);
    }

    #[test]
    fn taking_over_one_ip_keeps_the_object_of_the_node_announcing_the_other() {
        // A dual-stack Service: node a announces its IPv4 address, node b takes over its IPv6
        // one. Both objects stay: each says truthfully that its node announces the Service.
        let mut book = StatusBook::new("b");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        let owners = BTreeMap::from([("ns/web".to_owned(), set(&["a", "b"]))]);
        let a = object("ns/web", "a", &["eth0"]);
        let gone = object("ns/web", "c", &["eth0"]);
        book.took_over("ns/web");
        let writes = book.plan(&announcing, &owners, &[a.clone(), gone.clone()]);
        assert!(writes.contains(&StatusWrite::Delete { name: gone.name }));
        assert!(!writes.contains(&StatusWrite::Delete { name: a.name }));
    }

    #[test]
    fn usable_interfaces_are_written_on_change_and_again_only_after_a_retry() {
        let mut publisher = UsablePublisher::default();
        assert_eq!(publisher.plan(None, None), None);
        assert_eq!(publisher.plan(Some("eth0"), None).as_deref(), Some("eth0"));
        // Not visible yet: not sent twice.
        assert_eq!(publisher.plan(Some("eth0"), None), None);
        publisher.retry();
        assert_eq!(publisher.plan(Some("eth0"), None).as_deref(), Some("eth0"));
        assert_eq!(publisher.plan(Some("eth0"), Some("eth0")), None);
        assert_eq!(publisher.plan(Some(""), Some("eth0")).as_deref(), Some(""));
    }

    #[test]
    fn status_names_are_short_and_distinct() {
        let a = status_name("ns/web", "node-a");
        assert_eq!(a.len(), 23);
        assert_ne!(a, status_name("ns/web", "node-b"));
    }
}
