//! Carries the engine's actions out as API writes and Events. Writes run concurrently (bounded),
//! but never two at once for the same [`Target`], and a newer action for a target replaces one
//! still waiting, so a burst costs one write per object.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use ferrolb_api::IPAddressPool;
use ferrolb_observe::events::Events;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::convert::ServiceKey;
use crate::engine::{Action, ObjectRef};
use crate::error::Error;
use crate::leader::LeaseGuard;
use crate::metrics::Metrics;

/// Writes in flight at once: enough to keep a 10,000-Service start-up short, few enough not to
/// flood the apiserver (client-go's default QPS burst is 10; the apiserver handles far more).
const MAX_CONCURRENT_WRITES: usize = 32;

/// What an action writes to: actions for one target are coalesced and run one at a time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A Service's status (and pool annotation).
    ServiceStatus(ServiceKey),
    /// An IPAddressPool's status.
    PoolStatus(String),
    /// An IPAddressPool's finalizers.
    PoolFinalizer(String),
    /// An Event; each has its own number, so Events are never coalesced.
    Event(u64),
}

/// A finished write.
pub type Done = (Target, Result<(), Error>);

/// The writer: a bounded set of running writes and, per target, at most one waiting action.
pub struct Writer {
    client: Client,
    namespace: String,
    events: Events,
    metrics: Arc<Metrics>,
    guard: LeaseGuard,
    running: FuturesUnordered<BoxFuture<'static, Done>>,
    busy: HashSet<Target>,
    waiting: HashMap<Target, Action>,
    queue: VecDeque<Target>,
    events_seq: u64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("running", &self.running.len())
            .field("waiting", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Writes pools in `namespace` and Events through `events`, each only while `guard` says
    /// this replica's lease is valid.
    pub fn new(
        client: Client,
        namespace: String,
        events: Events,
        metrics: Arc<Metrics>,
        guard: LeaseGuard,
    ) -> Self {
        Self {
            client,
            namespace,
            events,
            metrics,
            guard,
            running: FuturesUnordered::new(),
            busy: HashSet::new(),
            waiting: HashMap::new(),
            queue: VecDeque::new(),
            events_seq: 0,
        }
    }

    fn target(&mut self, action: &Action) -> Target {
        match action {
            Action::ServiceStatus { service, .. } => Target::ServiceStatus(service.clone()),
            Action::PoolStatus { name, .. } => Target::PoolStatus(name.clone()),
            Action::PoolFinalizer { name, .. } => Target::PoolFinalizer(name.clone()),
            Action::Event { .. } => {
                self.events_seq += 1;
                Target::Event(self.events_seq)
            }
        }
    }

    /// Queues `actions`, replacing any still waiting for the same target.
    pub fn submit(&mut self, actions: Vec<Action>) {
        for action in actions {
            let target = self.target(&action);
            if self.waiting.insert(target.clone(), action).is_none() && !self.busy.contains(&target)
            {
                self.queue.push_back(target);
            }
        }
        self.start_ready();
    }

    /// Whether a write for `target` is waiting or running.
    pub fn is_pending(&self, target: &Target) -> bool {
        self.busy.contains(target) || self.waiting.contains_key(target)
    }

    /// The next write to finish; pending forever while none runs (for `select!`).
    pub async fn next_done(&mut self) -> Done {
        match self.running.next().await {
            Some(done) => done,
            None => std::future::pending().await,
        }
    }

    /// A write finished: let the next one for the same target go.
    pub fn finished(&mut self, target: &Target) {
        self.busy.remove(target);
        if self.waiting.contains_key(target) {
            self.queue.push_back(target.clone());
        }
        self.start_ready();
    }

    fn start_ready(&mut self) {
        while self.running.len() < MAX_CONCURRENT_WRITES {
            let Some(target) = self.queue.pop_front() else {
                break;
            };
            let Some(action) = self.waiting.remove(&target) else {
                continue;
            };
            self.busy.insert(target.clone());
            let fut = self.perform(target, action);
            self.running.push(fut);
        }
    }

    fn perform(&self, target: Target, action: Action) -> BoxFuture<'static, Done> {
        let client = self.client.clone();
        let namespace = self.namespace.clone();
        let events = self.events.clone();
        let metrics = self.metrics.clone();
        let guard = self.guard.clone();
        Box::pin(async move {
            let result = perform(client, &namespace, &events, &metrics, &guard, action).await;
            (target, result)
        })
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(ferrolb_api::annotations::CONTROLLER_FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// A write to an object deleted meanwhile has nothing left to do.
fn gone_is_done<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn perform(
    client: Client,
    namespace: &str,
    events: &Events,
    metrics: &Metrics,
    guard: &LeaseGuard,
    action: Action,
) -> Result<(), Error> {
    match action {
        Action::ServiceStatus {
            service,
            desired,
            resource_version,
        } => {
            let api: Api<Service> = Api::namespaced(client, &service.namespace);
            guard.check()?;
            metrics.updates.inc();
            let patch = Patch::Merge(with_precondition(desired.status_patch(), resource_version));
            gone_is_done(api.patch_status(&service.name, &params(), &patch).await)
                .map_err(|source| Error::ServiceStatus { service, source })
        }
        Action::PoolStatus {
            name,
            status,
            resource_version,
        } => {
            let api: Api<IPAddressPool> = Api::namespaced(client, namespace);
            guard.check()?;
            metrics.updates.inc();
            let patch = Patch::Merge(with_precondition(
                json!({ "status": status }),
                resource_version,
            ));
            gone_is_done(api.patch_status(&name, &params(), &patch).await)
                .map_err(|source| Error::PoolStatus { pool: name, source })
        }
        Action::PoolFinalizer {
            name,
            finalizers,
            resource_version,
        } => {
            let api: Api<IPAddressPool> = Api::namespaced(client, namespace);
            guard.check()?;
            metrics.updates.inc();
            let patch = Patch::Merge(with_precondition(
                json!({"metadata": {"finalizers": finalizers}}),
                resource_version,
            ));
            gone_is_done(api.patch(&name, &params(), &patch).await)
                .map_err(|source| Error::PoolFinalizer { pool: name, source })
        }
        Action::Event { object, notice } => {
            guard.check()?;
            events
                .publish(
                    &object_reference(&object),
                    notice.severity,
                    notice.reason,
                    "Allocate",
                    &notice.note,
                )
                .await
                .map_err(|source| Error::Event {
                    reason: notice.reason,
                    source,
                })
        }
    }
}

/// Adds `metadata.resourceVersion` to a merge patch: the apiserver then applies it only to that
/// version of the object and answers 409 Conflict otherwise (optimistic concurrency).
fn with_precondition(
    mut patch: serde_json::Value,
    resource_version: Option<String>,
) -> serde_json::Value {
    if let Some(rv) = resource_version {
        patch["metadata"]["resourceVersion"] = json!(rv);
    }
    patch
}

fn object_reference(object: &ObjectRef) -> ObjectReference {
    ObjectReference {
        api_version: Some(object.api_version.to_owned()),
        kind: Some(object.kind.to_owned()),
        name: Some(object.name.clone()),
        namespace: Some(object.namespace.clone()),
        uid: object.uid.clone(),
        ..ObjectReference::default()
    }
}
