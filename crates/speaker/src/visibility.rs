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

use crate::election::{Decision, Decisions, Ownership, Silence};

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
    /// Deletes sent and not yet seen gone: object name → its Service.
    deleting: BTreeMap<String, String>,
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

    /// The writes that bring the objects of the Services in `scope` in line with what this node
    /// announces; Services outside it are left as they are (nothing of theirs changed).
    /// `announcing`: Service → interfaces, for those of `scope` this node announces; `owners`:
    /// Service → the nodes announcing any of its IPs in this node's view (their objects are
    /// never deleted); `observed`: every node's objects of the Services in `scope`.
    pub fn plan(
        &mut self,
        scope: &BTreeSet<String>,
        announcing: &BTreeMap<String, BTreeSet<String>>,
        owners: &BTreeMap<String, BTreeSet<String>>,
        observed: &[StatusObject],
    ) -> Vec<StatusWrite> {
        let by_name: BTreeMap<&str, &StatusObject> =
            observed.iter().map(|o| (o.name.as_str(), o)).collect();
        let mut by_service: BTreeMap<&str, Vec<&StatusObject>> = BTreeMap::new();
        for object in observed {
            by_service.entry(&object.service).or_default().push(object);
        }
        let mut writes = Vec::new();
        self.deleting.retain(|name, service| {
            !scope.contains(service) || by_name.contains_key(name.as_str())
        });
        for (service, interfaces) in announcing {
            let name = status_name(service, &self.node);
            let own = by_name.get(name.as_str());
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
                let others: Vec<&StatusObject> = by_service
                    .get(service.as_str())
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|o| o.node != self.node)
                    .filter(|o| !owning.is_some_and(|nodes| nodes.contains(&o.node)))
                    .collect();
                for other in others {
                    self.delete(other, &mut writes);
                }
            }
        }
        // Only the Services in scope: a round costs what it touched, not what this node holds.
        for service in scope.iter().filter(|s| !announcing.contains_key(*s)) {
            self.takeover.remove(service);
            self.written.remove(service);
            self.seen.remove(service);
        }
        let stale: Vec<&StatusObject> = observed
            .iter()
            .filter(|o| {
                o.node == self.node
                    && (!announcing.contains_key(&o.service)
                        || o.name != status_name(&o.service, &self.node))
            })
            .collect();
        for object in stale {
            self.delete(object, &mut writes);
        }
        writes
    }

    fn delete(&mut self, object: &StatusObject, writes: &mut Vec<StatusWrite>) {
        if self
            .deleting
            .insert(object.name.clone(), object.service.clone())
            .is_none()
        {
            writes.push(StatusWrite::Delete {
                name: object.name.clone(),
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
    /// Silences reported by this node, while it is the reporter: IP → Service → why.
    silenced: BTreeMap<IpAddr, BTreeMap<String, Silence>>,
    /// Whether this node was the reporter in the last update.
    reporter: bool,
}

impl Notices {
    /// For `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }

    /// The Events for a round that moved the decisions of `moved` and looked at the Services
    /// of `scope`. `placed` says, for each Service of `scope` this node announces, whether it
    /// answers on at least one interface. `reporter`: whether this node reports silences (one
    /// node does, so each is reported once, not by every speaker); a node that just became it
    /// looks at every decision.
    pub fn update(
        &mut self,
        decisions: &Decisions,
        moved: &BTreeSet<IpAddr>,
        scope: &BTreeSet<String>,
        placed: &BTreeMap<String, bool>,
        reporter: bool,
    ) -> Vec<Notice> {
        let mut notices = Vec::new();
        for service in scope {
            let Some(has_interfaces) = placed.get(service).copied() else {
                self.announcing.remove(service);
                continue;
            };
            let before = self.announcing.insert(service.clone(), has_interfaces);
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
        let became = reporter && !self.reporter;
        self.reporter = reporter;
        if !reporter {
            self.silenced.clear();
            return notices;
        }
        let ips: BTreeSet<IpAddr> = if became {
            decisions.keys().copied().collect()
        } else {
            moved.clone()
        };
        for ip in ips {
            let now = silences(decisions.get(&ip));
            let before = self.silenced.remove(&ip).unwrap_or_default();
            for (service, reason) in &now {
                if before.get(service) != Some(reason) {
                    notices.push(Notice::Silent {
                        service: service.clone(),
                        ip,
                        reason: *reason,
                    });
                }
            }
            if !now.is_empty() {
                self.silenced.insert(ip, now);
            }
        }
        notices
    }
}

/// Service → why nobody announces the IP of `decision`, if it is silent.
fn silences(decision: Option<&Decision>) -> BTreeMap<String, Silence> {
    match decision {
        Some(Decision {
            services,
            ownership: Ownership::Silent(reason),
        }) => services.iter().map(|s| (s.clone(), *reason)).collect(),
        _ => BTreeMap::new(),
    }
}

/// The IPs in Service status that lie in no pool, as every speaker counts them
/// (`ferrolb_speaker_ip_not_in_pool_total`): each (Service, IP) once per change.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    /// IP → the Services refused it.
    refused: BTreeMap<IpAddr, BTreeSet<String>>,
}

impl Refusals {
    /// How many (Service, IP) pairs the decisions of `moved` newly refuse as outside every pool.
    pub fn update(&mut self, decisions: &Decisions, moved: &BTreeSet<IpAddr>) -> u64 {
        let mut new = 0_u64;
        for ip in moved {
            let now: BTreeSet<String> = silences(decisions.get(ip))
                .into_iter()
                .filter(|(_, reason)| *reason == Silence::NotInPool)
                .map(|(service, _)| service)
                .collect();
            let before = self.refused.remove(ip).unwrap_or_default();
            new += u64::try_from(now.difference(&before).count()).unwrap_or(u64::MAX);
            if !now.is_empty() {
                self.refused.insert(*ip, now);
            }
        }
        new
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

    /// Plans with every Service of these tests in scope.
    fn plan(
        book: &mut StatusBook,
        announcing: &BTreeMap<String, BTreeSet<String>>,
        owners: &BTreeMap<String, BTreeSet<String>>,
        observed: &[StatusObject],
    ) -> Vec<StatusWrite> {
        book.plan(&set(&["ns/web"]), announcing, owners, observed)
    }

    /// Updates with every decision moved and every Service of these tests in scope.
    fn update(
        notices: &mut Notices,
        decisions: &Decisions,
        placed: &BTreeMap<String, bool>,
        reporter: bool,
    ) -> Vec<Notice> {
        let moved = decisions.keys().copied().collect();
        let scope = set(&["ns/web", "ns/db", "ns/a", "ns/b"]);
        notices.update(decisions, &moved, &scope, placed, reporter)
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
        let first = plan(&mut book, &announcing, &none(), &[]);
        assert!(matches!(&first[..], [StatusWrite::Apply { service, .. }] if service == "ns/web"));
        // The write is not visible yet: nothing is written twice.
        assert_eq!(plan(&mut book, &announcing, &none(), &[]), []);
        let observed = [object("ns/web", "a", &["eth0"])];
        assert_eq!(plan(&mut book, &announcing, &none(), &observed), []);
        announcing.insert("ns/web".into(), set(&["eth0", "eth1"]));
        assert_eq!(plan(&mut book, &announcing, &none(), &observed).len(), 1);
    }

    #[test]
    fn an_object_deleted_by_someone_else_is_written_again() {
        let mut book = StatusBook::new("a");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        plan(&mut book, &announcing, &none(), &[]);
        plan(
            &mut book,
            &announcing,
            &none(),
            &[object("ns/web", "a", &["eth0"])],
        );
        assert_eq!(plan(&mut book, &announcing, &none(), &[]).len(), 1);
    }

    #[test]
    fn taking_over_deletes_the_previous_owners_object_once() {
        let mut book = StatusBook::new("b");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        let old = object("ns/web", "a", &["eth0"]);
        book.took_over("ns/web");
        let writes = plan(&mut book, &announcing, &none(), std::slice::from_ref(&old));
        assert!(writes.contains(&StatusWrite::Delete {
            name: old.name.clone()
        }));
        // A partitioned node that recreates its object is left alone.
        let mine = object("ns/web", "b", &["eth0"]);
        assert_eq!(plan(&mut book, &announcing, &none(), &[old, mine]), []);
    }

    #[test]
    fn losing_a_service_deletes_the_own_object_only() {
        let mut book = StatusBook::new("a");
        let observed = [
            object("ns/web", "a", &["eth0"]),
            object("ns/web", "b", &["eth0"]),
        ];
        let writes = plan(&mut book, &BTreeMap::new(), &none(), &observed);
        assert_eq!(
            writes,
            [StatusWrite::Delete {
                name: status_name("ns/web", "a")
            }]
        );
        assert_eq!(plan(&mut book, &BTreeMap::new(), &none(), &observed), []);
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
        let first = update(&mut notices, &decisions, &placed, true);
        assert_eq!(first.len(), 2, "{first:?}");
        assert_eq!(update(&mut notices, &decisions, &placed, true), []);
        // Losing and regaining is a new assignment.
        update(&mut notices, &decisions, &BTreeMap::new(), true);
        let again = update(&mut notices, &decisions, &placed, true);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].reason(), "NodeAssigned");
        // Not the reporter: no silences.
        let mut quiet = Notices::new("b");
        assert_eq!(update(&mut quiet, &decisions, &BTreeMap::new(), false), []);
    }

    #[test]
    fn an_ip_outside_every_pool_is_reported_once_to_each_service_holding_it() {
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let decisions = Decisions::from([(
            ip,
            decision(&["ns/a", "ns/b"], Ownership::Silent(Silence::NotInPool)),
        )]);
        let mut notices = Notices::new("a");
        let first = update(&mut notices, &decisions, &BTreeMap::new(), true);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|n| n.reason() == "IPNotInPool"
            && n.severity() == Severity::Warning
            && n.note().contains("203.0.113.9")));
        assert_eq!(update(&mut notices, &decisions, &BTreeMap::new(), true), []);
        let mut refusals = Refusals::default();
        assert_eq!(refusals.update(&decisions, &[ip].into()), 2);
        assert_eq!(refusals.update(&decisions, &[ip].into()), 0);
        assert_eq!(refusals.update(&Decisions::new(), &[ip].into()), 0);
        assert_eq!(refusals.update(&decisions, &[ip].into()), 2);
    }

    #[test]
    fn an_owner_without_interfaces_warns_once() {
        let mut notices = Notices::new("a");
        let placed = BTreeMap::from([("ns/web".to_owned(), false)]);
        let first = update(&mut notices, &BTreeMap::new(), &placed, false);
        assert!(first.iter().any(|n| n.reason() == "NoInterface"));
        assert_eq!(update(&mut notices, &BTreeMap::new(), &placed, false), []);
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
        let writes = plan(&mut book, &announcing, &owners, &[a.clone(), gone.clone()]);
        assert!(writes.contains(&StatusWrite::Delete { name: gone.name }));
        assert!(!writes.contains(&StatusWrite::Delete { name: a.name }));
    }

    #[test]
    fn services_outside_the_scope_are_left_as_they_are() {
        let mut book = StatusBook::new("a");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        plan(&mut book, &announcing, &none(), &[]);
        // A round about another Service neither rewrites nor forgets this one.
        let other = set(&["ns/db"]);
        assert_eq!(book.plan(&other, &none(), &none(), &[]), []);
        assert_eq!(plan(&mut book, &announcing, &none(), &[]), []);
        // Stopping is seen only in a round whose scope holds the Service.
        let mine = [object("ns/web", "a", &["eth0"])];
        assert_eq!(book.plan(&other, &none(), &none(), &[]), []);
        assert_eq!(plan(&mut book, &none(), &none(), &mine).len(), 1);
    }

    #[test]
    fn a_new_reporter_reports_every_silence_once() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let decisions = Decisions::from([(
            ip,
            decision(&["ns/db"], Ownership::Silent(Silence::NoServingEndpoint)),
        )]);
        let mut notices = Notices::new("a");
        let none_moved = BTreeSet::new();
        let scope = BTreeSet::new();
        let placed = BTreeMap::new();
        assert_eq!(
            notices.update(&decisions, &none_moved, &scope, &placed, false),
            []
        );
        // Becoming the reporter looks at every decision, moved or not.
        let first = notices.update(&decisions, &none_moved, &scope, &placed, true);
        assert_eq!(first.len(), 1);
        assert_eq!(
            notices.update(&decisions, &[ip].into(), &scope, &placed, true),
            []
        );
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
