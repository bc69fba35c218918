//! What operators see of the speakers' decisions, decided without I/O: which `ServiceL2Status`
//! objects to write or delete ([`StatusBook`]) and which Events to publish ([`Notices`]).
//!
//! Writes happen only on change: an owner writes its object when it starts announcing a Service
//! or its interfaces change, deletes it when it stops, and once, on taking a Service over,
//! deletes the objects other nodes left behind (a dead node cannot delete its own). It never
//! deletes others' objects again for that Service, so two nodes that both believe they own an IP
//! (a partition) each keep one object instead of deleting each other's in a loop.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use ferrolb_observe::events::Severity;

use crate::election::{Ownership, Silence};

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
    /// this node announces (`announcing`: Service → interfaces).
    pub fn plan(
        &mut self,
        announcing: &BTreeMap<String, BTreeSet<String>>,
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
                let others: Vec<&StatusObject> = observed
                    .iter()
                    .filter(|o| &o.service == service && o.node != self.node)
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
    /// Nobody may announce the Service (Warning).
    Silent {
        /// Service.
        service: String,
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
            Self::Silent { reason, .. } => {
                format!("no node announces this Service's IP: {}", reason.explain())
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
    /// Silences reported by this node, while it is the reporter.
    silenced: BTreeMap<String, Silence>,
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
        ownership: &BTreeMap<String, Ownership>,
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
        let silent: BTreeMap<String, Silence> = ownership
            .iter()
            .filter_map(|(s, v)| match v {
                Ownership::Silent(reason) => Some((s.clone(), *reason)),
                Ownership::Owner { .. } => None,
            })
            .collect();
        for (service, reason) in &silent {
            if self.silenced.get(service) != Some(reason) {
                notices.push(Notice::Silent {
                    service: service.clone(),
                    reason: *reason,
                });
            }
        }
        self.silenced = silent;
        notices
    }
}

/// The node that reports silences: the first, by name, of the live speakers, so every speaker
/// agrees without talking.
pub fn reporter<'a>(alive: impl IntoIterator<Item = &'a String>) -> Option<&'a String> {
    alive.into_iter().min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::Interfaces;

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
        let first = book.plan(&announcing, &[]);
        assert!(matches!(&first[..], [StatusWrite::Apply { service, .. }] if service == "ns/web"));
        // The write is not visible yet: nothing is written twice.
        assert_eq!(book.plan(&announcing, &[]), []);
        let observed = [object("ns/web", "a", &["eth0"])];
        assert_eq!(book.plan(&announcing, &observed), []);
        announcing.insert("ns/web".into(), set(&["eth0", "eth1"]));
        assert_eq!(book.plan(&announcing, &observed).len(), 1);
    }

    #[test]
    fn an_object_deleted_by_someone_else_is_written_again() {
        let mut book = StatusBook::new("a");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        book.plan(&announcing, &[]);
        book.plan(&announcing, &[object("ns/web", "a", &["eth0"])]);
        assert_eq!(book.plan(&announcing, &[]).len(), 1);
    }

    #[test]
    fn taking_over_deletes_the_previous_owners_object_once() {
        let mut book = StatusBook::new("b");
        let announcing = BTreeMap::from([("ns/web".to_owned(), set(&["eth0"]))]);
        let old = object("ns/web", "a", &["eth0"]);
        book.took_over("ns/web");
        let writes = book.plan(&announcing, std::slice::from_ref(&old));
        assert!(writes.contains(&StatusWrite::Delete {
            name: old.name.clone()
        }));
        // A partitioned node that recreates its object is left alone.
        let mine = object("ns/web", "b", &["eth0"]);
        assert_eq!(book.plan(&announcing, &[old, mine]), []);
    }

    #[test]
    fn losing_a_service_deletes_the_own_object_only() {
        let mut book = StatusBook::new("a");
        let observed = [
            object("ns/web", "a", &["eth0"]),
            object("ns/web", "b", &["eth0"]),
        ];
        let writes = book.plan(&BTreeMap::new(), &observed);
        assert_eq!(
            writes,
            [StatusWrite::Delete {
                name: status_name("ns/web", "a")
            }]
        );
        assert_eq!(book.plan(&BTreeMap::new(), &observed), []);
    }

    #[test]
    fn node_assigned_once_per_ownership_and_silences_once_per_reason() {
        let mut notices = Notices::new("a");
        let owner = Ownership::Owner {
            node: "a".into(),
            interfaces: Interfaces::All,
        };
        let ownership = BTreeMap::from([
            ("ns/web".to_owned(), owner),
            (
                "ns/db".to_owned(),
                Ownership::Silent(Silence::NoAdvertisement),
            ),
        ]);
        let placed = BTreeMap::from([("ns/web".to_owned(), true)]);
        let first = notices.update(&ownership, &placed, true);
        assert_eq!(first.len(), 2, "{first:?}");
        assert_eq!(notices.update(&ownership, &placed, true), []);
        // Losing and regaining is a new assignment.
        notices.update(&ownership, &BTreeMap::new(), true);
        let again = notices.update(&ownership, &placed, true);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].reason(), "NodeAssigned");
        // Not the reporter: no silences.
        let mut quiet = Notices::new("b");
        assert_eq!(quiet.update(&ownership, &BTreeMap::new(), false), []);
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
    fn status_names_are_short_and_distinct() {
        let a = status_name("ns/web", "node-a");
        assert_eq!(a.len(), 23);
        assert_ne!(a, status_name("ns/web", "node-b"));
    }
}
