//! The object store: every object, one global resourceVersion counter, and the event log that
//! watches replay from. All writes go through here so that uid, timestamps, generation,
//! resourceVersion, optimistic concurrency, subresource separation, finalizers and garbage
//! collection behave as in kube-apiserver, whichever HTTP verb or patch type carried the write.
//!
//! One mutex guards the state; it is never held across an `.await`. Watch events are sent on a
//! broadcast channel while the lock is held, so a watcher that subscribes under the same lock sees
//! every event after its replay exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::error::{ApiError, ApiResult};
use super::patch::{self, PatchKind, Writer};
use super::resources::{Admission, Registry, ResourceType, StatusScope};
use super::selector::{FieldSelector, LabelSelector};
use super::services::ServiceAllocations;

/// Kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the log and sent to watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Storage key of the resource (`group/plural`).
    pub key: String,
    /// What happened.
    pub event_type: EventType,
    /// The object after the change (for Deleted: the last state, with the deletion's rv).
    pub object: Value,
    /// The object before the change, for Modified: watchers with selectors need it.
    pub previous: Option<Value>,
}

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself.
    Main,
    /// `/status`.
    Status,
}

/// Options of a list or watch.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
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

type ObjectKey = (String, String);

/// What a new watcher gets: the logged events to replay, the live receiver, and the latest rv.
pub type Subscription = (
    Vec<Arc<WatchEvent>>,
    broadcast::Receiver<Arc<WatchEvent>>,
    u64,
);

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

struct State {
    registry: Registry,
    objects: BTreeMap<String, BTreeMap<ObjectKey, Value>>,
    rv: u64,
    log: VecDeque<Arc<WatchEvent>>,
    capacity: usize,
    /// Highest rv that is no longer in the log: watches must start at or after it.
    compacted: u64,
    services: ServiceAllocations,
    primary_v6: bool,
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

fn meta(object: &Value, field: &str) -> String {
    object["metadata"][field]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

/// DNS-1123 subdomain, the rule for most object names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..5].to_owned()
}

/// Everything but metadata and status: what bumps `generation` when it changes.
fn spec_part(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// An object without the fields the server maintains, to detect no-op writes.
fn comparable(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

impl State {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, sender: &broadcast::Sender<Arc<WatchEvent>>, event: WatchEvent) {
        let event = Arc::new(event);
        self.log.push_back(event.clone());
        while self.log.len() > self.capacity {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = sender.send(event);
    }

    /// Stores a changed object (in storage shape) under a new resourceVersion and tells the
    /// watchers; returns what was stored.
    fn replace(
        &mut self,
        sender: &broadcast::Sender<Arc<WatchEvent>>,
        rt: &ResourceType,
        key: ObjectKey,
        previous: Value,
        mut stored: Value,
    ) -> Value {
        let rv = self.next_rv();
        set_rv(&mut stored, rv);
        self.bucket(rt).insert(key, stored.clone());
        self.record(
            sender,
            WatchEvent {
                rv,
                key: rt.storage_key(),
                event_type: EventType::Modified,
                object: stored.clone(),
                previous: Some(previous),
            },
        );
        stored
    }

    fn bucket(&mut self, rt: &ResourceType) -> &mut BTreeMap<ObjectKey, Value> {
        self.objects.entry(rt.storage_key()).or_default()
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get("/namespaces")
            .is_some_and(|b| b.contains_key(&(String::new(), ns.to_owned())))
    }

    fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::NotFound {
            resource: rt.qualified(),
            name: name.to_owned(),
        }
    }
}

/// Outcome of a delete.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Removed; the last state.
    Gone(Value),
    /// Held by finalizers; marked with deletionTimestamp.
    Pending(Value),
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

    /// Subscribes to live events, returning the logged events after `from_rv` (which the caller
    /// sends first) and the receiver for the rest. `from_rv` = None starts at the current state.
    ///
    /// # Errors
    /// `Gone` when `from_rv` is older than the log remembers.
    pub fn subscribe(&self, key: &str, from_rv: Option<u64>) -> ApiResult<Subscription> {
        let state = self.lock();
        let receiver = self.events.subscribe();
        let from = from_rv.unwrap_or(state.rv);
        if from < state.compacted {
            return Err(ApiError::Gone {
                requested: from,
                oldest: state.compacted + 1,
            });
        }
        let replay = state
            .log
            .iter()
            .filter(|e| e.rv > from && e.key == key)
            .cloned()
            .collect();
        Ok((replay, receiver, state.rv))
    }

    /// Reads one object.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let state = self.lock();
        state
            .objects
            .get(&rt.storage_key())
            .and_then(|b| b.get(&(ns.to_owned(), name.to_owned())))
            .map(|o| rt.present(o))
            .ok_or_else(|| State::not_found(rt, name))
    }

    /// Lists objects (in one namespace, or all with `ns` = None).
    ///
    /// # Errors
    /// `BadRequest` for a malformed continue token.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        options: &ListOptions,
    ) -> ApiResult<ListPage> {
        let state = self.lock();
        let start: Option<ObjectKey> = match &options.continue_token {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let mut matching = state
            .objects
            .get(&rt.storage_key())
            .into_iter()
            .flat_map(|b| b.iter())
            .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
            .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
            .map(|(k, o)| (k, rt.present(o)))
            .filter(|(_, o)| options.labels.matches(o) && options.fields.matches(o));
        let mut items = Vec::new();
        let mut last_key = None;
        for (k, o) in matching.by_ref() {
            if options.limit > 0 && items.len() == options.limit {
                let rest = 1 + matching.count();
                return Ok(ListPage {
                    items,
                    rv: state.rv,
                    continue_token: last_key.map(|k: &ObjectKey| encode_continue(k)),
                    remaining: Some(rest),
                });
            }
            items.push(o);
            last_key = Some(k);
        }
        Ok(ListPage {
            items,
            rv: state.rv,
            continue_token: None,
            remaining: None,
        })
    }

    /// Counts the objects of a type for which `f` holds, without copying them: for tests and
    /// benchmarks that poll a large store.
    pub fn count(&self, rt: &ResourceType, f: impl Fn(&Value) -> bool) -> usize {
        let state = self.lock();
        state
            .objects
            .get(&rt.storage_key())
            .map_or(0, |bucket| bucket.values().filter(|o| f(o)).count())
    }

    /// Creates an object.
    ///
    /// # Errors
    /// `AlreadyExists`, `NotFound` (namespace), `Invalid`.
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        object: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        self.create_inner(rt, ns, object, manager, false)
    }

    fn create_inner(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut object: Value,
        manager: &str,
        applied: bool,
    ) -> ApiResult<Value> {
        let mut state = self.lock();
        let state = &mut *state;
        if rt.namespaced && !state.namespace_exists(ns) {
            return Err(ApiError::NotFound {
                resource: "namespaces".into(),
                name: ns.to_owned(),
            });
        }
        let body_ns = meta(&object, "namespace");
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        let mut name = meta(&object, "name");
        if name.is_empty() {
            let prefix = meta(&object, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", random_suffix());
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                &rt.kind,
                &name,
                "metadata.name",
                format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            ));
        }
        let key = object_key(rt, ns, &name);
        if state.bucket(rt).contains_key(&key) {
            return Err(ApiError::AlreadyExists {
                resource: rt.qualified(),
                name,
            });
        }
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        let rv = state.rv + 1;
        {
            let m = metadata_mut(&mut object);
            m.insert("name".into(), json!(name));
            if rt.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now()));
            m.insert("generation".into(), json!(1));
            m.insert("resourceVersion".into(), json!(rv.to_string()));
            m.remove("deletionTimestamp");
            if !applied {
                m.remove("managedFields");
            }
        }
        if rt.status.is_some()
            && reset_status_on_create(rt)
            && let Some(m) = object.as_object_mut()
        {
            m.remove("status");
        }
        on_create_defaults(rt, &mut object);
        let mut object = admit(state, rt, object, None)?;
        if !applied {
            patch::record_update(
                None,
                &mut object,
                &Writer {
                    manager,
                    subresource: "",
                    api_version: &rt.api_version(),
                    time: &now(),
                },
            );
        }
        if rt.group == "apiextensions.k8s.io" {
            register_crd(state, &mut object)?;
        }
        let rv = state.next_rv();
        set_rv(&mut object, rv);
        let stored = rt.persist(&object);
        state.bucket(rt).insert(key, stored.clone());
        state.record(
            &self.events,
            WatchEvent {
                rv,
                key: rt.storage_key(),
                event_type: EventType::Added,
                object: stored,
                previous: None,
            },
        );
        Ok(with_type(rt, &object))
    }

    /// Replaces an object (PUT), or its status.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` (stale resourceVersion), `Invalid`.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        object: Value,
        sub: Subresource,
        manager: &str,
    ) -> ApiResult<Value> {
        self.write(rt, ns, name, sub, manager, |_| Ok(object))
    }

    /// Patches an object or its status.
    ///
    /// # Errors
    /// As `update`, plus `Conflict` for server-side apply conflicts. Apply to a missing object
    /// creates it.
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        request: PatchRequest<'_>,
        sub: Subresource,
        manager: &str,
    ) -> ApiResult<Value> {
        let PatchRequest { kind, body, force } = request;
        if kind == PatchKind::Apply {
            if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                return Err(ApiError::BadRequest(
                    "the name of the object does not match the name on the URL".into(),
                ));
            }
            let (api_version, time) = (rt.api_version(), now());
            let writer = Writer {
                manager,
                subresource: if sub == Subresource::Status {
                    "status"
                } else {
                    ""
                },
                api_version: &api_version,
                time: &time,
            };
            if self.get(rt, ns, name).is_err() {
                if sub == Subresource::Status {
                    return Err(State::not_found(rt, name));
                }
                let mut created = patch::server_side_apply(None, body, &writer, force)?;
                metadata_mut(&mut created).insert("name".into(), json!(name));
                return self.create_inner(rt, ns, created, manager, true);
            }
            return self.write_with(rt, ns, name, sub, manager, true, |live| {
                patch::server_side_apply(Some(live), body, &writer, force)
            });
        }
        self.write(rt, ns, name, sub, manager, |live| {
            let mut patched = patch::apply_patch(kind, live, body)?;
            // A patch that carries a resourceVersion is a precondition; one that does not
            // applies to whatever is live.
            if body["metadata"].get("resourceVersion").is_none()
                && let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.insert(
                    "resourceVersion".into(),
                    live["metadata"]["resourceVersion"].clone(),
                );
            }
            Ok(patched)
        })
    }

    fn write(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: Subresource,
        manager: &str,
        change: impl FnOnce(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        self.write_with(rt, ns, name, sub, manager, false, change)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_with(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        sub: Subresource,
        manager: &str,
        applied: bool,
        change: impl FnOnce(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        if sub == Subresource::Status && rt.status.is_none() {
            return Err(State::not_found(rt, name));
        }
        let mut state = self.lock();
        let state = &mut *state;
        let key = object_key(rt, ns, name);
        let stored_live = state
            .bucket(rt)
            .get(&key)
            .cloned()
            .ok_or_else(|| State::not_found(rt, name))?;
        // Decisions below work on this type's shape; storage may keep another one.
        let live = rt.present(&stored_live);
        let mut new = change(&live)?;
        let sent_rv = new["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !sent_rv.is_empty() && sent_rv != meta(&live, "resourceVersion") {
            return Err(ApiError::Conflict {
                resource: rt.qualified(),
                name: name.to_owned(),
                message: format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.qualified()
                ),
            });
        }
        if meta(&new, "name").is_empty() {
            metadata_mut(&mut new).insert("name".into(), json!(name));
        }
        if meta(&new, "name") != name {
            return Err(ApiError::BadRequest(
                "the name of the object does not match the name on the URL".into(),
            ));
        }
        new = scope_write(rt, &live, new, sub);
        new["apiVersion"] = json!(rt.api_version());
        new["kind"] = json!(rt.kind);
        {
            let m = metadata_mut(&mut new);
            for field in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "generation",
            ] {
                match live["metadata"].get(field) {
                    Some(v) => m.insert(field.into(), v.clone()),
                    None => m.remove(field),
                };
            }
        }
        if !applied {
            let sub_name = if sub == Subresource::Status {
                "status"
            } else {
                ""
            };
            patch::record_update(
                Some(&live),
                &mut new,
                &Writer {
                    manager,
                    subresource: sub_name,
                    api_version: &rt.api_version(),
                    time: &now(),
                },
            );
        }
        let mut new = admit(state, rt, new, Some(&live))?;
        if spec_part(&new) != spec_part(&live) {
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            metadata_mut(&mut new).insert("generation".into(), json!(generation));
        }
        // A terminating object whose last finalizer was removed goes away now.
        let terminating = live["metadata"].get("deletionTimestamp").is_some();
        let finalizers_left = new["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if terminating && !finalizers_left {
            let rv = state.next_rv();
            set_rv(&mut new, rv);
            state.bucket(rt).remove(&key);
            release(state, rt, &new);
            state.record(
                &self.events,
                WatchEvent {
                    rv,
                    key: rt.storage_key(),
                    event_type: EventType::Deleted,
                    object: rt.persist(&new),
                    previous: Some(stored_live),
                },
            );
            collect_garbage(state, &self.events, &new);
            return Ok(with_type(rt, &new));
        }
        if comparable(&new) == comparable(&live) {
            // kube-apiserver does not bump resourceVersion or notify watchers for no-op writes.
            return Ok(with_type(rt, &live));
        }
        if rt.group == "apiextensions.k8s.io" {
            register_crd(state, &mut new)?;
        }
        let stored = state.replace(&self.events, rt, key, stored_live, rt.persist(&new));
        metadata_mut(&mut new).insert(
            "resourceVersion".into(),
            stored["metadata"]["resourceVersion"].clone(),
        );
        Ok(with_type(rt, &new))
    }

    /// Deletes an object: at once, or by marking it when finalizers hold it. Dependents whose
    /// owners are all gone are deleted too (background propagation), or orphaned when asked.
    ///
    /// # Errors
    /// `NotFound`, or `Conflict` when a precondition does not hold.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        orphan: bool,
        precondition_rv: Option<&str>,
    ) -> ApiResult<Deleted> {
        let mut state = self.lock();
        let state = &mut *state;
        let key = object_key(rt, ns, name);
        let live = state
            .bucket(rt)
            .get(&key)
            .cloned()
            .ok_or_else(|| State::not_found(rt, name))?;
        if let Some(rv) = precondition_rv
            && rv != meta(&live, "resourceVersion")
        {
            return Err(ApiError::Conflict {
                resource: rt.qualified(),
                name: name.to_owned(),
                message: format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record",
                    rt.qualified()
                ),
            });
        }
        if orphan {
            orphan_dependents(state, &self.events, &meta(&live, "uid"));
        }
        let has_finalizers = live["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let is_namespace = rt.storage_key() == "/namespaces";
        if has_finalizers || (is_namespace && namespace_has_objects(state, name)) {
            if is_namespace {
                delete_namespace_contents(state, &self.events, name);
                if !namespace_has_objects(state, name) && !has_finalizers {
                    return Ok(Deleted::Gone(remove_now(
                        state,
                        &self.events,
                        rt,
                        key,
                        live,
                    )));
                }
            }
            if live["metadata"].get("deletionTimestamp").is_some() {
                return Ok(Deleted::Pending(rt.present(&live)));
            }
            let marked = mark_terminating(state, &self.events, rt, key, live);
            return Ok(Deleted::Pending(rt.present(&marked)));
        }
        Ok(Deleted::Gone(rt.present(&remove_now(
            state,
            &self.events,
            rt,
            key,
            live,
        ))))
    }
}

fn set_rv(object: &mut Value, rv: u64) {
    metadata_mut(object).insert("resourceVersion".into(), json!(rv.to_string()));
}

/// Objects are stored with their type; a type registered under another version of the same
/// resource is served with the version asked for.
fn with_type(rt: &ResourceType, object: &Value) -> Value {
    let mut o = object.clone();
    o["apiVersion"] = json!(rt.api_version());
    o["kind"] = json!(rt.kind);
    o
}

fn reset_status_on_create(rt: &ResourceType) -> bool {
    rt.status == Some(StatusScope::StatusOnly)
        || matches!(rt.kind.as_str(), "Service" | "Pod" | "Namespace")
}

fn on_create_defaults(rt: &ResourceType, object: &mut Value) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            object["status"] = json!({"phase": "Active"});
            let name = meta(object, "name");
            let labels = metadata_mut(object)
                .entry("labels")
                .or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        ("", "Pod") => object["status"] = json!({"phase": "Pending"}),
        ("", "Service") => object["status"] = json!({"loadBalancer": {}}),
        _ => {}
    }
}

/// Merges a write into the live object according to which part it addresses.
fn scope_write(rt: &ResourceType, live: &Value, mut new: Value, sub: Subresource) -> Value {
    match (sub, rt.status) {
        (Subresource::Main, Some(_)) => {
            match live.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new
        }
        (Subresource::Status, Some(StatusScope::StatusOnly)) => {
            let mut out = live.clone();
            match new.get("status") {
                Some(s) => out["status"] = s.clone(),
                None => {
                    if let Some(m) = out.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            // The write's resourceVersion precondition and field ownership still apply.
            metadata_mut(&mut out).insert(
                "resourceVersion".into(),
                new["metadata"]["resourceVersion"].clone(),
            );
            if let Some(mf) = new["metadata"].get("managedFields") {
                metadata_mut(&mut out).insert("managedFields".into(), mf.clone());
            }
            out
        }
        (Subresource::Status, Some(StatusScope::ResetSpec)) => {
            match live.get("spec") {
                Some(s) => new["spec"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("spec");
                    }
                }
            }
            new
        }
        (_, None) => new,
    }
}

fn admit(
    state: &mut State,
    rt: &ResourceType,
    mut object: Value,
    old: Option<&Value>,
) -> ApiResult<Value> {
    let name = meta(&object, "name");
    if rt.group == "discovery.k8s.io" && rt.kind == "EndpointSlice" {
        // kube-apiserver defaults every port's name to "" and protocol to TCP; clients
        // (kubectl describe) dereference both.
        for port in object["ports"].as_array_mut().into_iter().flatten() {
            if let Some(p) = port.as_object_mut() {
                p.entry("name").or_insert_with(|| json!(""));
                p.entry("protocol").or_insert_with(|| json!("TCP"));
            }
        }
    }
    if rt.group.is_empty() && rt.kind == "Service" {
        let primary_v6 = state.primary_v6;
        state.services.admit(&mut object, old, primary_v6)?;
    }
    match &rt.admission {
        Admission::Typed(check) => {
            check(&object).map_err(|e| ApiError::invalid(&rt.kind, &name, "body", e))?;
            Ok(object)
        }
        Admission::Schema(schema) => {
            schema
                .admit(object, old)
                .map_err(|causes| ApiError::Invalid {
                    kind: rt.kind.clone(),
                    group: rt.group.clone(),
                    name,
                    causes,
                })
        }
    }
}

fn register_crd(state: &mut State, crd: &mut Value) -> ApiResult<()> {
    let name = meta(crd, "name");
    let types = super::resources::from_crd(crd)
        .map_err(|e| ApiError::invalid("CustomResourceDefinition", &name, "spec.versions", e))?;
    let group = crd["spec"]["group"].as_str().unwrap_or_default().to_owned();
    let plural = crd["spec"]["names"]["plural"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name != format!("{plural}.{group}") {
        return Err(ApiError::invalid(
            "CustomResourceDefinition",
            &name,
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    state.registry.remove(&group, &plural);
    for t in types {
        state.registry.insert(t);
    }
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "storedVersions": crd["spec"]["versions"].as_array().into_iter().flatten().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()},
        ],
    });
    Ok(())
}

fn release(state: &mut State, rt: &ResourceType, object: &Value) {
    if rt.group.is_empty() && rt.kind == "Service" {
        state.services.release(object);
    }
    if rt.group == "apiextensions.k8s.io" {
        let group = object["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let plural = object["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        state.registry.remove(&group, &plural);
        state.objects.remove(&format!("{group}/{plural}"));
    }
}

fn remove_now(
    state: &mut State,
    sender: &broadcast::Sender<Arc<WatchEvent>>,
    rt: &ResourceType,
    key: ObjectKey,
    live: Value,
) -> Value {
    let rv = state.next_rv();
    let mut gone = live.clone();
    set_rv(&mut gone, rv);
    state.bucket(rt).remove(&key);
    release(state, rt, &gone);
    state.record(
        sender,
        WatchEvent {
            rv,
            key: rt.storage_key(),
            event_type: EventType::Deleted,
            object: gone.clone(),
            previous: Some(live),
        },
    );
    collect_garbage(state, sender, &gone);
    if rt.namespaced {
        finish_namespace_if_empty(state, sender, &key_ns(&gone));
    }
    gone
}

fn key_ns(object: &Value) -> String {
    meta(object, "namespace")
}

fn namespace_has_objects(state: &State, ns: &str) -> bool {
    state
        .objects
        .iter()
        .any(|(key, bucket)| key != "/namespaces" && bucket.keys().any(|(o_ns, _)| o_ns == ns))
}

fn finish_namespace_if_empty(
    state: &mut State,
    sender: &broadcast::Sender<Arc<WatchEvent>>,
    ns: &str,
) {
    let key = (String::new(), ns.to_owned());
    let Some(namespace) = state
        .objects
        .get("/namespaces")
        .and_then(|b| b.get(&key))
        .cloned()
    else {
        return;
    };
    let terminating = namespace["metadata"].get("deletionTimestamp").is_some();
    let finalizers = namespace["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if terminating
        && !finalizers
        && !namespace_has_objects(state, ns)
        && let Some(rt) = state.registry.get("", "v1", "namespaces")
    {
        remove_now(state, sender, &rt, key, namespace);
    }
}

fn delete_namespace_contents(
    state: &mut State,
    sender: &broadcast::Sender<Arc<WatchEvent>>,
    ns: &str,
) {
    let types: Vec<Arc<ResourceType>> = state
        .registry
        .all()
        .filter(|t| t.namespaced)
        .cloned()
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for rt in types {
        if !seen.insert(rt.storage_key()) {
            continue;
        }
        let keys: Vec<ObjectKey> = state
            .bucket(&rt)
            .keys()
            .filter(|(o_ns, _)| o_ns == ns)
            .cloned()
            .collect();
        for key in keys {
            delete_by_key(state, sender, &rt, key);
        }
    }
}

/// Deletes (or marks, with finalizers) one object; used by garbage collection and namespace
/// deletion.
fn delete_by_key(
    state: &mut State,
    sender: &broadcast::Sender<Arc<WatchEvent>>,
    rt: &ResourceType,
    key: ObjectKey,
) {
    let Some(live) = state.bucket(rt).get(&key).cloned() else {
        return;
    };
    let has_finalizers = live["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if !has_finalizers {
        remove_now(state, sender, rt, key, live);
    } else if live["metadata"].get("deletionTimestamp").is_none() {
        mark_terminating(state, sender, rt, key, live);
    }
}

fn all_uids(state: &State) -> std::collections::BTreeSet<String> {
    state
        .objects
        .values()
        .flat_map(|b| b.values())
        .map(|o| meta(o, "uid"))
        .collect()
}

/// Background garbage collection: dependents of a deleted owner whose owners are all gone are
/// deleted; references to the gone owner are dropped from dependents that keep another owner.
fn collect_garbage(state: &mut State, sender: &broadcast::Sender<Arc<WatchEvent>>, gone: &Value) {
    let uid = meta(gone, "uid");
    if uid.is_empty() {
        return;
    }
    let uids = all_uids(state);
    let types: Vec<Arc<ResourceType>> = {
        let mut seen = std::collections::BTreeSet::new();
        state
            .registry
            .all()
            .filter(|t| seen.insert(t.storage_key()))
            .cloned()
            .collect()
    };
    for rt in types {
        let dependents: Vec<(ObjectKey, bool)> = state
            .bucket(&rt)
            .iter()
            .filter_map(|(k, o)| {
                let refs = o["metadata"]["ownerReferences"].as_array()?;
                if !refs.iter().any(|r| r["uid"] == uid.as_str()) {
                    return None;
                }
                let orphaned = refs
                    .iter()
                    .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()));
                Some((k.clone(), orphaned))
            })
            .collect();
        for (key, orphaned) in dependents {
            if orphaned {
                delete_by_key(state, sender, &rt, key);
            } else {
                drop_owner_reference(state, sender, &rt, key, &uid);
            }
        }
    }
}

fn drop_owner_reference(
    state: &mut State,
    sender: &broadcast::Sender<Arc<WatchEvent>>,
    rt: &ResourceType,
    key: ObjectKey,
    uid: &str,
) {
    let Some(live) = state.bucket(rt).get(&key).cloned() else {
        return;
    };
    let mut new = live.clone();
    if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
        refs.retain(|r| r["uid"] != uid);
    }
    state.replace(sender, rt, key, live, new);
}

/// Marks a stored object as being deleted (finalizers still hold it); returns the marked
/// object.
fn mark_terminating(
    state: &mut State,
    sender: &broadcast::Sender<Arc<WatchEvent>>,
    rt: &ResourceType,
    key: ObjectKey,
    live: Value,
) -> Value {
    let mut marked = live.clone();
    let m = metadata_mut(&mut marked);
    m.insert("deletionTimestamp".into(), json!(now()));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    if rt.storage_key() == "/namespaces" {
        marked["status"] = json!({"phase": "Terminating"});
    }
    state.replace(sender, rt, key, live, marked)
}

/// Where an object of a type is stored: cluster-scoped objects have no namespace.
fn object_key(rt: &ResourceType, ns: &str, name: &str) -> ObjectKey {
    let ns = if rt.namespaced {
        ns.to_owned()
    } else {
        String::new()
    };
    (ns, name.to_owned())
}

fn orphan_dependents(state: &mut State, sender: &broadcast::Sender<Arc<WatchEvent>>, uid: &str) {
    let types: Vec<Arc<ResourceType>> = state.registry.all().cloned().collect();
    for rt in types {
        let keys: Vec<ObjectKey> = state
            .bucket(&rt)
            .iter()
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            drop_owner_reference(state, sender, &rt, key, uid);
        }
    }
}

fn encode_continue(key: &ObjectKey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([key.0, key.1]).to_string())
}

fn decode_continue(token: &str) -> ApiResult<ObjectKey> {
    use base64::Engine;
    let bad = || ApiError::BadRequest(format!("invalid continue token \"{token}\""));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let parts: (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok(parts)
}
