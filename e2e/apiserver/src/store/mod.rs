//! The object store: every object, one global resourceVersion counter, and the event log that
//! watches replay from. All writes go through here so that uid, timestamps, generation,
//! resourceVersion, optimistic concurrency, subresource separation, finalizers and garbage
//! collection behave as in kube-apiserver, whichever HTTP verb or patch type carried the write.
//!
//! One mutex guards the state; it is never held across an `.await`. Watch events are sent on a
//! broadcast channel while the lock is held, so a watcher that subscribes under the same lock sees
//! every event after its replay exactly once.
//!
//! The concerns live in their own modules: [`objects`] (storage, resourceVersions, reads and
//! pages), [`watch_log`] (the event log and fan-out), [`writes`] (create, update, patch),
//! [`admission`] (defaulting and validation before storage, CRD registration), [`deletion`]
//! (finalizers, garbage collection, namespace deletion) and [`owners`] (the index garbage
//! collection looks dependents up in).

mod admission;
mod deletion;
mod objects;
mod owners;
mod watch_log;
mod writes;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::patch::PatchKind;
use super::resources::{Registry, ResourceType};
use super::selector::{FieldSelector, LabelQuery};
use super::services::ServiceAllocations;
use objects::State;

pub use watch_log::{EventType, Subscription, WatchEvent};

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself.
    Main,
    /// `/status`.
    Status,
}

impl Subresource {
    /// The name managedFields entries and audit records use (`status`, or empty for the object).
    pub fn name(self) -> &'static str {
        match self {
            Self::Main => "",
            Self::Status => "status",
        }
    }
}

/// Options of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelQuery,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size, 0 for all.
    pub limit: usize,
    /// Continue token of the previous page.
    pub continue_token: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// Matching objects, ordered by namespace and name.
    pub items: Vec<Value>,
    /// resourceVersion of the list.
    pub rv: u64,
    /// Token for the next page.
    pub continue_token: Option<String>,
    /// Objects after this page.
    pub remaining: Option<usize>,
}

/// Server settings that change behaviour.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Events kept for watches to resume from; older resourceVersions get 410 Gone.
    pub event_log_capacity: usize,
    /// `--service-cluster-ip-range` equivalents, primary family first. Documentation ranges by
    /// default: cluster IPs are only bookkeeping here, nothing routes them, and the lab must not
    /// name any other address.
    pub service_ranges: Vec<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            event_log_capacity: 200_000,
            service_ranges: vec!["198.51.100.0/24".into(), "2001:db8:96::/108".into()],
        }
    }
}

/// A patch as it arrived: its type, body, and whether apply conflicts are overridden.
#[derive(Debug, Clone, Copy)]
pub struct PatchRequest<'a> {
    /// Patch type.
    pub kind: PatchKind,
    /// Patch document.
    pub body: &'a Value,
    /// `?force=true` for server-side apply.
    pub force: bool,
}

/// Outcome of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Removed; the last state.
    Gone(Value),
    /// Held by finalizers; marked with deletionTimestamp.
    Pending(Value),
}

/// The store shared by every request handler.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Current time as the apiserver writes timestamps (RFC 3339, seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Store {
    /// An empty store with the built-in kinds and the `default`, `kube-system` and
    /// `kube-public` namespaces, as a new cluster has.
    ///
    /// # Errors
    /// A message for a bad service range.
    pub fn new(config: &StoreConfig) -> Result<Self, String> {
        let services = ServiceAllocations::new(&config.service_ranges)?;
        let primary_v6 = config
            .service_ranges
            .first()
            .is_some_and(|r| r.contains(':'));
        // Watchers that fall this far behind get 410 Gone and re-list (see the HTTP watch).
        let (events, _) = broadcast::channel(65_536);
        let store = Self {
            state: Mutex::new(State {
                registry: Registry::with_builtins(),
                objects: BTreeMap::new(),
                rv: 0,
                log: VecDeque::new(),
                capacity: config.event_log_capacity.max(1),
                compacted: 0,
                services,
                primary_v6,
                owners: owners::Owners::default(),
            }),
            events,
        };
        let ns = store
            .resource("", "v1", "namespaces")
            .ok_or("namespaces are built in")?;
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .create(
                    &ns,
                    "",
                    json!({"metadata": {"name": name}}),
                    "kube-apiserver",
                )
                .map_err(|e| e.to_string())?;
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in this server; keep serving what is there.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The type served at these URL parts.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.get(group, version, plural)
    }

    /// Every served type.
    pub fn resources(&self) -> Vec<Arc<ResourceType>> {
        self.lock().registry.all().cloned().collect()
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }
}
