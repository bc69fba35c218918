//! The controller's decisions as a state machine without I/O: observed objects go in, writes and
//! Events to make come out. The runtime (see `runtime.rs`) feeds it from watches and carries
//! its actions out; tests feed it by hand.
//!
//! Start-up follows DESIGN.md: nothing is decided until every cache is loaded ([`Engine::start`]);
//! then the pools are set, every existing assignment is restored (so a restart never moves an IP),
//! and only then is anything new allocated.
//!
//! Loops are impossible by construction: a Service is written only when what it should say
//! differs from what it says and from what was last written for it, and an Event is published only
//! when the Service's addresses or its failure reason change.

use std::collections::{BTreeMap, HashMap};

use ferrolb_api::annotations::POOL_FINALIZER;
use ferrolb_api::{IPAddressPool, IPAddressPoolStatus};
use ferrolb_ipam::{Allocator, Pool, PoolSpec};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use ferrolb_observe::events::Severity;

use crate::convert::{self, Ownership, RequestError, ServiceKey};
use crate::decide::{Desired, Notice, change_notice};

/// Settings that shape decisions.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// `--lb-class`: handle only Services of this class (None: only Services without a class).
    pub lb_class: Option<String>,
}

/// The object an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `Service` or `IPAddressPool`.
    pub kind: &'static str,
    /// Its apiVersion.
    pub api_version: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, so the Event attaches to this incarnation.
    pub uid: Option<String>,
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make a Service's status (and pool annotation) say `desired`.
    ServiceStatus {
        /// Which Service.
        service: ServiceKey,
        /// What to write.
        desired: Desired,
        /// The resourceVersion the decision was made on: the write is refused (409) when the
        /// Service changed since, and after a lost lease, so a stale decision never lands.
        resource_version: Option<String>,
    },
    /// Publish an Event.
    Event {
        /// On which object.
        object: ObjectRef,
        /// What to say.
        notice: Notice,
    },
    /// Write a pool's status.
    PoolStatus {
        /// Pool name.
        name: String,
        /// The whole status.
        status: IPAddressPoolStatus,
        /// Precondition, as for Services.
        resource_version: Option<String>,
    },
    /// Add or remove the pool-protection finalizer.
    PoolFinalizer {
        /// Pool name.
        name: String,
        /// The finalizer list to write.
        finalizers: Vec<String>,
        /// Precondition, as for Services.
        resource_version: Option<String>,
    },
}

/// Why a Service of ours holds no address. The Event note is its text, and a new Event is
/// published only when it changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationFailure {
    /// The Service asks for something malformed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The allocator cannot give it what it asks for.
    #[error(transparent)]
    Allocation(#[from] ferrolb_ipam::AllocError),
}

/// Why a pool is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolProblem {
    reason: &'static str,
    message: String,
}

/// The condition reason of a pool whose current spec is not used.
pub const INVALID_POOL: &str = "InvalidPool";

fn invalid_pool(why: &str, keeping: bool) -> PoolProblem {
    let message = if keeping {
        format!(
            "the current spec is not used: {why}; Services keep the addresses they hold from \
             status.lastValidAddresses, and no new ones are given out"
        )
    } else {
        format!("the current spec is not used: {why}")
    };
    PoolProblem {
        reason: INVALID_POOL,
        message,
    }
}

/// One pool on its way into the allocator: its current spec, and the pool of its last valid
/// addresses to fall back to.
struct PoolCandidate {
    name: String,
    addresses: Vec<String>,
    current: Result<Pool, String>,
    established: Option<Vec<String>>,
    /// The established addresses as a draining pool.
    fallback: Option<Pool>,
    /// The current addresses are the established ones.
    steady: bool,
    use_fallback: bool,
}

impl PoolCandidate {
    fn new(pool: &IPAddressPool, name: &str, established: Option<Vec<String>>) -> Self {
        let draining = pool.metadata.deletion_timestamp.is_some();
        let spec = convert::pool_spec(pool).map(|mut s| {
            s.draining = draining;
            s
        });
        let current = spec
            .clone()
            .and_then(|s| Pool::parse(s).map_err(|e| e.to_string()));
        let established = established.filter(|a| !a.is_empty());
        let fallback = established.as_ref().and_then(|addresses| {
            // The current settings when they parse; otherwise a pool admitting every Service
            // (it hands out nothing new anyway).
            let mut s = spec.clone().unwrap_or_else(|_| PoolSpec::new(name, &[]));
            s.addresses = addresses.clone();
            s.draining = true;
            Pool::parse(s).ok()
        });
        let steady = current.is_ok() && established.as_ref() == Some(&pool.spec.addresses);
        Self {
            name: name.to_owned(),
            addresses: pool.spec.addresses.clone(),
            use_fallback: current.is_err(),
            current,
            established,
            fallback,
            steady,
        }
    }

    /// The pools to hand the allocator: established addresses first (in creation order), then
    /// new and changed ones.
    fn layout(candidates: &[Self]) -> Vec<Pool> {
        let established = candidates.iter().filter_map(|c| {
            if c.use_fallback {
                c.fallback.clone()
            } else if c.steady {
                c.current.clone().ok()
            } else {
                None
            }
        });
        let changed = candidates
            .iter()
            .filter(|c| !c.use_fallback && !c.steady)
            .filter_map(|c| c.current.clone().ok());
        established.chain(changed).collect()
    }
}

/// The parts of a Service the engine decides on.
#[derive(Debug, Clone)]
struct ServiceView {
    object: ObjectRef,
    namespace: String,
    ownership: Ownership,
    deleting: bool,
    /// The allocator request, without namespace labels (filled in at decision time, as the
    /// Namespace may change on its own).
    request: Result<ferrolb_ipam::ServiceRequest, RequestError>,
    observed: Desired,
    status_ips: Vec<std::net::IpAddr>,
    resource_version: Option<String>,
}

impl ServiceView {
    fn new(svc: &Service, lb_class: Option<&str>) -> Self {
        Self {
            object: service_ref(svc),
            namespace: svc.metadata.namespace.clone().unwrap_or_default(),
            ownership: convert::ownership(svc, lb_class),
            deleting: svc.metadata.deletion_timestamp.is_some(),
            request: convert::request(svc, &BTreeMap::new()),
            observed: Desired::observed(svc),
            status_ips: convert::status_ips(svc),
            resource_version: svc.metadata.resource_version.clone(),
        }
    }
}

/// The controller's memory between events.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    allocator: Allocator,
    /// What decisions need of each Service, extracted once per change (a full `Service` is
    /// several times larger, and 10,000 of them add up).
    services: BTreeMap<ServiceKey, ServiceView>,
    pools: BTreeMap<String, IPAddressPool>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// The addresses of each pool last accepted as valid (`status.lastValidAddresses`): used
    /// while an edit makes the pool unusable, so a typo or an overlap never takes addresses away
    /// from running Services.
    established: BTreeMap<String, Vec<String>>,
    problems: BTreeMap<String, PoolProblem>,
    /// What was last written to each Service and not yet seen back through the watch.
    expected: HashMap<ServiceKey, Desired>,
    /// What the last Event about each Service's addresses announced: a retried write does not
    /// publish it again.
    announced: HashMap<ServiceKey, Desired>,
    /// Services whose write was refused as stale (409), with the resourceVersion it was made
    /// on: nothing is written for them until the watch brings a newer version to decide on.
    stale_services: HashMap<ServiceKey, Option<String>>,
    /// The same for pools.
    stale_pools: HashMap<String, Option<String>>,
    /// The resourceVersion each Service's last write was made on (a 409 refers to it, not to
    /// whatever the watch delivered meanwhile).
    sent_on: HashMap<ServiceKey, Option<String>>,
    /// The same for pools.
    pool_sent_on: HashMap<String, Option<String>>,
    /// Last failure reported per Service: Events only when it changes.
    failures: BTreeMap<ServiceKey, AllocationFailure>,
    expected_pool_status: HashMap<String, IPAddressPoolStatus>,
    expected_finalizers: HashMap<String, Vec<String>>,
    pools_dirty: bool,
    synced: bool,
    failure_count: u64,
}

fn service_ref(svc: &Service) -> ObjectRef {
    ObjectRef {
        kind: "Service",
        api_version: "v1",
        namespace: svc.metadata.namespace.clone().unwrap_or_default(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone(),
    }
}

fn pool_ref(pool: &IPAddressPool) -> ObjectRef {
    ObjectRef {
        kind: "IPAddressPool",
        api_version: "ferrolb.io/v1beta1",
        namespace: pool.metadata.namespace.clone().unwrap_or_default(),
        name: pool.metadata.name.clone().unwrap_or_default(),
        uid: pool.metadata.uid.clone(),
    }
}

fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Conditions equal but for their transition time.
fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (
                &x.type_,
                &x.status,
                &x.reason,
                &x.message,
                x.observed_generation,
            ) == (
                &y.type_,
                &y.status,
                &y.reason,
                &y.message,
                y.observed_generation,
            )
        })
}

fn same_status(a: &IPAddressPoolStatus, b: &IPAddressPoolStatus) -> bool {
    (
        a.assigned_ipv4,
        a.assigned_ipv6,
        a.available_ipv4,
        a.available_ipv6,
    ) == (
        b.assigned_ipv4,
        b.assigned_ipv6,
        b.available_ipv4,
        b.available_ipv6,
    ) && a.last_valid_addresses == b.last_valid_addresses
        && same_conditions(&a.conditions, &b.conditions)
}

impl Engine {
    /// An engine that decides nothing until [`Engine::start`].
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            allocator: Allocator::new(),
            services: BTreeMap::new(),
            pools: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            established: BTreeMap::new(),
            problems: BTreeMap::new(),
            expected: HashMap::new(),
            failures: BTreeMap::new(),
            announced: HashMap::new(),
            stale_services: HashMap::new(),
            stale_pools: HashMap::new(),
            sent_on: HashMap::new(),
            pool_sent_on: HashMap::new(),
            expected_pool_status: HashMap::new(),
            expected_finalizers: HashMap::new(),
            pools_dirty: false,
            synced: false,
            failure_count: 0,
        }
    }

    /// Whether [`Engine::start`] ran.
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Allocation failures reported so far (for the metric).
    pub fn failure_count(&self) -> u64 {
        self.failure_count
    }

    /// Read access to the allocator, for metrics.
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Keys of every Service seen.
    pub fn service_keys(&self) -> Vec<ServiceKey> {
        self.services.keys().cloned().collect()
    }

    /// Names of every Namespace seen.
    pub fn namespace_names(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    /// Names of the pools the allocator uses.
    pub fn pool_names(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    /// All caches are loaded: set pools, restore what Services hold, then allocate the rest.
    pub fn start(&mut self) -> Vec<Action> {
        self.synced = true;
        let mut actions = self.rebuild_pools_without_reconcile();
        // Restore first: Services that already hold IPs keep them, whatever order pools or new
        // Services would give.
        let keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
        for key in &keys {
            let Some(view) = self.services.get(key) else {
                continue;
            };
            if view.ownership != Ownership::Ours || view.status_ips.is_empty() {
                continue;
            }
            let ips = view.status_ips.clone();
            if let Ok(req) = self.request_for(view)
                && let Err(e) = self.allocator.restore(&req, &ips)
            {
                tracing::warn!(service = %key, error = %e, "existing assignment cannot be kept; reallocating");
            }
        }
        actions.extend(self.reconcile_all());
        actions
    }

    /// The Service's request with its Namespace's current labels.
    fn request_for(
        &self,
        view: &ServiceView,
    ) -> Result<ferrolb_ipam::ServiceRequest, AllocationFailure> {
        let mut req = view.request.clone()?;
        req.namespace_labels = self
            .namespaces
            .get(&view.namespace)
            .cloned()
            .unwrap_or_default();
        Ok(req)
    }

    /// A Service was created or changed.
    pub fn apply_service(&mut self, svc: Service) -> Vec<Action> {
        let key = ServiceKey::of(&svc);
        let view = ServiceView::new(&svc, self.config.lb_class.as_deref());
        if self.expected.get(&key).is_some_and(|e| *e == view.observed) {
            self.expected.remove(&key);
        }
        if self
            .stale_services
            .get(&key)
            .is_some_and(|rv| *rv != view.resource_version)
        {
            self.stale_services.remove(&key);
        }
        self.services.insert(key.clone(), view);
        if !self.synced {
            return Vec::new();
        }
        self.reconcile_and_retry(&key)
    }

    /// A Service is gone.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Vec<Action> {
        self.services.remove(key);
        self.expected.remove(key);
        self.failures.remove(key);
        self.announced.remove(key);
        self.stale_services.remove(key);
        self.sent_on.remove(key);
        if !self.synced {
            return Vec::new();
        }
        let released = self.allocator.release(&key.to_string()).is_some();
        self.pools_dirty |= released;
        if released {
            self.retry_failed(key)
        } else {
            Vec::new()
        }
    }

    /// A pool was created or changed.
    pub fn apply_pool(&mut self, pool: IPAddressPool) -> Vec<Action> {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let spec_changed = self.pools.get(&name).is_none_or(|old| {
            old.spec != pool.spec
                || old.metadata.deletion_timestamp != pool.metadata.deletion_timestamp
                || old.metadata.creation_timestamp != pool.metadata.creation_timestamp
        });
        if self
            .expected_pool_status
            .get(&name)
            .zip(pool.status.as_ref())
            .is_some_and(|(e, s)| same_status(e, s))
        {
            self.expected_pool_status.remove(&name);
        }
        if self
            .expected_finalizers
            .get(&name)
            .is_some_and(|f| Some(f) == pool.metadata.finalizers.as_ref())
        {
            self.expected_finalizers.remove(&name);
        }
        if self
            .stale_pools
            .get(&name)
            .is_some_and(|rv| *rv != pool.metadata.resource_version)
        {
            self.stale_pools.remove(&name);
        }
        self.pools.insert(name, pool);
        self.pools_dirty = true;
        if !self.synced || !spec_changed {
            return Vec::new();
        }
        let mut actions = self.rebuild_pools_without_reconcile();
        actions.extend(self.reconcile_all());
        actions
    }

    /// A pool is gone.
    pub fn delete_pool(&mut self, name: &str) -> Vec<Action> {
        self.pools.remove(name);
        self.established.remove(name);
        self.stale_pools.remove(name);
        self.pool_sent_on.remove(name);
        self.problems.remove(name);
        self.expected_pool_status.remove(name);
        self.expected_finalizers.remove(name);
        if !self.synced {
            return Vec::new();
        }
        let mut actions = self.rebuild_pools_without_reconcile();
        actions.extend(self.reconcile_all());
        actions
    }

    /// A Namespace was created or its labels changed.
    pub fn apply_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) -> Vec<Action> {
        if self.namespaces.get(name) == Some(&labels) {
            return Vec::new();
        }
        self.namespaces.insert(name.to_owned(), labels);
        self.reconcile_namespace(name)
    }

    /// A Namespace is gone.
    pub fn delete_namespace(&mut self, name: &str) -> Vec<Action> {
        self.namespaces.remove(name);
        self.reconcile_namespace(name)
    }

    fn reconcile_namespace(&mut self, name: &str) -> Vec<Action> {
        if !self.synced {
            return Vec::new();
        }
        let keys: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| k.namespace == name)
            .cloned()
            .collect();
        keys.iter()
            .flat_map(|k| self.reconcile_and_retry(k))
            .collect()
    }

    /// A write the runtime made for `key` failed: forget it, so the next pass writes again.
    pub fn write_failed(&mut self, key: &ServiceKey) -> Vec<Action> {
        self.expected.remove(key);
        if !self.synced {
            return Vec::new();
        }
        self.reconcile(key)
    }

    /// A Service's write was refused because the Service changed since the decision (409):
    /// forget it, and decide again only on the newer version the watch brings (never overwrite
    /// what was not read).
    pub fn write_conflicted(&mut self, key: &ServiceKey) -> Vec<Action> {
        self.expected.remove(key);
        let current = self
            .services
            .get(key)
            .and_then(|v| v.resource_version.clone());
        let refused = self.sent_on.remove(key).unwrap_or_else(|| current.clone());
        if refused == current {
            self.stale_services.insert(key.clone(), refused);
            return Vec::new();
        }
        // The newer version is already here: decide on it now.
        if self.synced {
            self.reconcile(key)
        } else {
            Vec::new()
        }
    }

    /// A pool write was refused as stale (409): as [`Engine::write_conflicted`].
    pub fn pool_write_conflicted(&mut self, name: &str) {
        self.expected_pool_status.remove(name);
        self.expected_finalizers.remove(name);
        let current = self
            .pools
            .get(name)
            .and_then(|p| p.metadata.resource_version.clone());
        let refused = self
            .pool_sent_on
            .remove(name)
            .unwrap_or_else(|| current.clone());
        if refused == current {
            self.stale_pools.insert(name.to_owned(), refused);
        }
        self.pools_dirty = true;
    }

    /// A pool write failed: forget it.
    pub fn pool_write_failed(&mut self, name: &str) {
        self.stale_pools.remove(name);
        self.expected_pool_status.remove(name);
        self.expected_finalizers.remove(name);
        self.pools_dirty = true;
    }

    fn reconcile_all(&mut self) -> Vec<Action> {
        let keys: Vec<ServiceKey> = self.services.keys().cloned().collect();
        keys.iter().flat_map(|k| self.reconcile(k)).collect()
    }

    fn reconcile_and_retry(&mut self, key: &ServiceKey) -> Vec<Action> {
        let held = |engine: &Self| {
            engine
                .allocator
                .lookup(&key.to_string())
                .map_or(0, |a| a.ips.len())
        };
        let before = held(self);
        let mut actions = self.reconcile(key);
        let after = held(self);
        if after < before {
            actions.extend(self.retry_failed(key));
        }
        actions
    }

    /// Addresses were freed: Services that could not get one may now.
    fn retry_failed(&mut self, except: &ServiceKey) -> Vec<Action> {
        let waiting: Vec<ServiceKey> = self
            .failures
            .keys()
            .filter(|k| *k != except)
            .cloned()
            .collect();
        waiting.iter().flat_map(|k| self.reconcile(k)).collect()
    }

    /// Decides one Service.
    fn reconcile(&mut self, key: &ServiceKey) -> Vec<Action> {
        let Some(view) = self.services.get(key) else {
            return Vec::new();
        };
        let allocator_key = key.to_string();
        let observed = view.observed.clone();
        let object = view.object.clone();
        match view.ownership {
            Ownership::OtherClass => {
                // Not ours: forget it, write nothing, whatever it carries.
                self.pools_dirty |= self.allocator.release(&allocator_key).is_some();
                self.failures.remove(key);
                self.expected.remove(key);
                Vec::new()
            }
            Ownership::NotLoadBalancer => {
                let held = self.allocator.release(&allocator_key).is_some();
                self.pools_dirty |= held;
                self.failures.remove(key);
                if held || observed.pool.is_some() {
                    self.write(
                        key,
                        object,
                        &observed,
                        Desired::none(),
                        "the Service is no longer of type LoadBalancer",
                    )
                } else {
                    Vec::new()
                }
            }
            Ownership::Ours => {
                if view.deleting {
                    // Keep the address until the Service is really gone.
                    return Vec::new();
                }
                let outcome = self.request_for(view).and_then(|req| {
                    self.allocator
                        .allocate(&req)
                        .map_err(AllocationFailure::from)
                });
                self.pools_dirty = true;
                match outcome {
                    Ok(assignment) => {
                        self.failures.remove(key);
                        let desired = Desired {
                            ips: assignment.ips,
                            pool: Some(assignment.pool),
                        };
                        self.write(key, object, &observed, desired, "")
                    }
                    Err(failure) => {
                        self.allocator.release(&allocator_key);
                        let reason = failure.to_string();
                        let mut actions = Vec::new();
                        if self.failures.get(key) != Some(&failure) {
                            self.failure_count += 1;
                            tracing::warn!(service = %key, %reason, "allocation failed");
                            actions.push(Action::Event {
                                object: object.clone(),
                                notice: Notice {
                                    severity: Severity::Warning,
                                    reason: "AllocationFailed",
                                    note: reason.clone(),
                                },
                            });
                            self.failures.insert(key.clone(), failure);
                        }
                        actions.extend(self.write(
                            key,
                            object,
                            &observed,
                            Desired::none(),
                            &reason,
                        ));
                        actions
                    }
                }
            }
        }
    }

    /// The status write (and its Event) needed to go from `observed` to `desired`, if any.
    fn write(
        &mut self,
        key: &ServiceKey,
        object: ObjectRef,
        observed: &Desired,
        desired: Desired,
        why_cleared: &str,
    ) -> Vec<Action> {
        if *observed == desired || self.expected.get(key) == Some(&desired) {
            return Vec::new();
        }
        let resource_version = self
            .services
            .get(key)
            .and_then(|v| v.resource_version.clone());
        if self
            .stale_services
            .get(key)
            .is_some_and(|rv| *rv == resource_version)
        {
            // Decided on a version the apiserver already refused: wait for the newer one.
            return Vec::new();
        }
        let mut actions = Vec::new();
        // The Event compares with what the Service says (or what we last wrote to it).
        let before = self
            .expected
            .get(key)
            .cloned()
            .unwrap_or_else(|| observed.clone());
        let before = Desired {
            ips: before
                .ips
                .into_iter()
                .filter(|ip| !ip.is_unspecified())
                .collect(),
            ..before
        };
        if let Some(notice) = change_notice(&before, &desired, why_cleared)
            && (notice.reason != "ClearAssignment" || !before.ips.is_empty())
            && self.announced.get(key) != Some(&desired)
        {
            tracing::info!(service = %key, reason = notice.reason, note = %notice.note, "service addresses changed");
            actions.push(Action::Event { object, notice });
            self.announced.insert(key.clone(), desired.clone());
        }
        self.expected.insert(key.clone(), desired.clone());
        self.sent_on.insert(key.clone(), resource_version.clone());
        actions.push(Action::ServiceStatus {
            service: key.clone(),
            desired,
            resource_version,
        });
        actions
    }

    /// Sets the allocator's pools from the observed pool objects.
    ///
    /// A pool whose current spec cannot be used (it does not parse, or its new addresses overlap
    /// another pool) falls back to its last valid addresses (kept in memory and persisted as
    /// `status.lastValidAddresses`, so a restart or a new leader finds them too), as a draining
    /// pool: every IP already assigned from it stays, and it gives out no new one. Pools whose
    /// addresses are already established are laid out first, so an edit never takes addresses
    /// from a pool in use: the edited pool is the one refused.
    fn rebuild_pools_without_reconcile(&mut self) -> Vec<Action> {
        let mut ordered: Vec<&IPAddressPool> = self.pools.values().collect();
        ordered.sort_by(|a, b| {
            (
                a.metadata.creation_timestamp.as_ref().map(|t| t.0),
                &a.metadata.name,
            )
                .cmp(&(
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    &b.metadata.name,
                ))
        });
        let mut problems = BTreeMap::new();
        let mut candidates = Vec::new();
        for pool in ordered {
            let name = pool.metadata.name.clone().unwrap_or_default();
            let established = self.established.get(&name).cloned().or_else(|| {
                pool.status
                    .as_ref()
                    .and_then(|s| s.last_valid_addresses.clone())
            });
            let candidate = PoolCandidate::new(pool, &name, established);
            if let Err(message) = &candidate.current {
                problems.insert(
                    name.clone(),
                    invalid_pool(message, candidate.fallback.is_some()),
                );
            }
            candidates.push(candidate);
        }
        // Lay out established pools first; a changed pool whose new addresses are refused
        // falls back to its established ones, and the layout is tried again (each round moves
        // at least one pool to its fallback, so this ends).
        let (pools, rejected) = loop {
            let pools = PoolCandidate::layout(&candidates);
            let rejected = ferrolb_ipam::rejected_pools(pools.clone());
            let mut moved = false;
            for (name, why) in &rejected {
                if let Some(c) = candidates.iter_mut().find(|c| &c.name == name)
                    && !c.use_fallback
                    && !c.steady
                    && c.fallback.is_some()
                {
                    c.use_fallback = true;
                    moved = true;
                    problems.insert(name.clone(), invalid_pool(&why.to_string(), true));
                }
            }
            if !moved {
                break (pools, rejected);
            }
        };
        self.established = candidates
            .iter()
            .filter_map(|c| {
                let accepted = !rejected.iter().any(|(n, _)| *n == c.name);
                let addresses = if c.use_fallback {
                    c.established.clone()
                } else if c.current.is_ok() && accepted {
                    Some(c.addresses.clone())
                } else {
                    c.established.clone()
                };
                Some((c.name.clone(), addresses?))
            })
            .collect();
        let update = self.allocator.set_pools(pools);
        for (name, rejection) in update.rejected {
            problems.entry(name).or_insert(PoolProblem {
                reason: "PoolOverlapping",
                message: rejection.to_string(),
            });
        }
        for evicted in &update.evicted {
            tracing::warn!(service = %evicted.key, pool = %evicted.pool, "addresses no longer in any pool; reassigning");
        }
        let mut actions = Vec::new();
        for (name, problem) in &problems {
            if self.problems.get(name) != Some(problem)
                && let Some(pool) = self.pools.get(name)
            {
                tracing::warn!(pool = %name, reason = problem.reason, message = %problem.message, "pool not used");
                actions.push(Action::Event {
                    object: pool_ref(pool),
                    notice: Notice {
                        severity: Severity::Warning,
                        reason: problem.reason,
                        note: problem.message.clone(),
                    },
                });
            }
        }
        self.problems = problems;
        self.pools_dirty = true;
        actions
    }

    /// Pool status and finalizer writes, when something changed since the last call. The
    /// runtime calls this after each batch of events, so a burst of allocations costs one write
    /// per pool, not one per allocation.
    pub fn pool_actions(&mut self) -> Vec<Action> {
        if !self.synced || !self.pools_dirty {
            return Vec::new();
        }
        self.pools_dirty = false;
        let mut actions = Vec::new();
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            let Some(pool) = self.pools.get(&name) else {
                continue;
            };
            let resource_version = pool.metadata.resource_version.clone();
            if self
                .stale_pools
                .get(&name)
                .is_some_and(|rv| *rv == resource_version)
            {
                continue;
            }
            let finalizers = self.wanted_finalizers(pool);
            if Some(&finalizers) != pool.metadata.finalizers.as_ref().or(Some(&Vec::new()))
                && self.expected_finalizers.get(&name) != Some(&finalizers)
            {
                // The finalizer write changes the object, so a newer version follows; the
                // status is written on that one (written now, on this version, it would be
                // refused as stale by the finalizer write it races).
                self.expected_finalizers
                    .insert(name.clone(), finalizers.clone());
                self.pool_sent_on
                    .insert(name.clone(), resource_version.clone());
                self.stale_pools
                    .insert(name.clone(), resource_version.clone());
                actions.push(Action::PoolFinalizer {
                    name,
                    finalizers,
                    resource_version,
                });
                continue;
            }
            let status = self.pool_status(pool);
            let current = pool.status.clone().unwrap_or_default();
            let expected = self.expected_pool_status.get(&name);
            if !same_status(&status, &current) && !expected.is_some_and(|e| same_status(e, &status))
            {
                self.expected_pool_status
                    .insert(name.clone(), status.clone());
                self.pool_sent_on
                    .insert(name.clone(), resource_version.clone());
                actions.push(Action::PoolStatus {
                    name: name.clone(),
                    status,
                    resource_version,
                });
            }
        }
        actions
    }

    /// Every pool carries our finalizer until it is being deleted and no Service uses it.
    fn wanted_finalizers(&self, pool: &IPAddressPool) -> Vec<String> {
        let name = pool.metadata.name.as_deref().unwrap_or_default();
        let mut list: Vec<String> = pool.metadata.finalizers.clone().unwrap_or_default();
        let in_use = self.allocator.assignments_in_pool(name) > 0;
        let keep = pool.metadata.deletion_timestamp.is_none() || in_use;
        let has = list.iter().any(|f| f == POOL_FINALIZER);
        if keep && !has {
            list.push(POOL_FINALIZER.to_owned());
        } else if !keep && has {
            list.retain(|f| f != POOL_FINALIZER);
        }
        list
    }

    fn pool_status(&self, pool: &IPAddressPool) -> IPAddressPoolStatus {
        let name = pool.metadata.name.as_deref().unwrap_or_default();
        let stats = self.allocator.pool_stats(name).unwrap_or_default();
        let generation = pool.metadata.generation;
        let previous: Vec<Condition> = pool
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let condition = |type_: &str, status: &str, reason: &str, message: String| {
            // Keep the transition time while the condition says the same.
            let since = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status && c.reason == reason)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now()));
            Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message,
                observed_generation: generation,
                last_transition_time: since,
            }
        };
        let mut conditions = vec![match self.problems.get(name) {
            Some(p) => condition("Ready", "False", p.reason, p.message.clone()),
            None => condition(
                "Ready",
                "True",
                "Accepted",
                "addresses are handed out from this pool".into(),
            ),
        }];
        if pool.metadata.deletion_timestamp.is_some() {
            let users = self.allocator.assignments_in_pool(name);
            conditions.push(condition(
                "Deleting",
                "True",
                "InUse",
                format!("{users} Service(s) still use addresses of this pool; it is deleted when none does, and gives out no new addresses"),
            ));
        }
        IPAddressPoolStatus {
            assigned_ipv4: saturate(stats.assigned_v4),
            assigned_ipv6: saturate(stats.assigned_v6),
            available_ipv4: saturate(stats.available_v4),
            available_ipv6: saturate(stats.available_v6),
            last_valid_addresses: self.established.get(name).cloned(),
            conditions,
        }
    }

    /// The Services currently failing, with why (for tests and debugging).
    pub fn failures(&self) -> &BTreeMap<ServiceKey, AllocationFailure> {
        &self.failures
    }
}
