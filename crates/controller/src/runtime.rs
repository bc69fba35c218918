//! Carries the engine's decisions out: watches feed it, its actions become API writes and
//! Events. Writes run concurrently (bounded), but never two at once for the same object, and a
//! newer write for an object replaces one still waiting, so a burst costs one write per object.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_api::IPAddressPool;
use ferrolb_observe::events::{Events, Severity as EventSeverity};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::convert::service_key;
use crate::decide::Severity;
use crate::engine::{Action, Engine, EngineConfig, ObjectRef};
use crate::metrics::{Metrics, PoolLabel, ResultLabel};

/// Writes in flight at once: enough to keep a 10,000-Service start-up short, few enough not to
/// flood the apiserver (client-go's default QPS burst is 10; the apiserver handles far more).
const MAX_CONCURRENT_WRITES: usize = 32;
/// Wait before writing again after a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What the runtime needs to know.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Namespace of the IPAddressPools.
    pub namespace: String,
    /// Class flag.
    pub lb_class: Option<String>,
    /// Reporter instance (pod name) for Events.
    pub instance: Option<String>,
}

/// One thing that happened; objects are boxed so the enum stays small.
enum Input {
    Service(Box<Event<DeserializeGuard<Service>>>),
    Pool(Box<Event<DeserializeGuard<IPAddressPool>>>),
    Namespace(Box<Event<Namespace>>),
    WatchError(&'static str, watcher::Error),
}

/// Tracks a relist so objects that vanished while the watch was down are deleted.
#[derive(Default)]
struct Relist {
    seen: Option<BTreeSet<String>>,
    done_once: bool,
}

impl Relist {
    /// The relist is complete: the names in `known` it did not see are gone.
    fn finish(&mut self, known: Vec<String>) -> Vec<String> {
        self.done_once = true;
        let seen = self.seen.take().unwrap_or_default();
        known.into_iter().filter(|k| !seen.contains(k)).collect()
    }
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

type Done = (String, Result<(), String>);

struct Executor {
    client: Client,
    namespace: String,
    events: Events,
    metrics: Arc<Metrics>,
    running: FuturesUnordered<BoxFuture<'static, Done>>,
    busy: HashSet<String>,
    waiting: HashMap<String, Action>,
    queue: VecDeque<String>,
    events_seq: u64,
}

impl Executor {
    fn key(&mut self, action: &Action) -> String {
        match action {
            Action::ServiceStatus { key, .. } => format!("svc/{key}"),
            Action::PoolStatus { name, .. } => format!("poolstatus/{name}"),
            Action::PoolFinalizer { name, .. } => format!("poolfinalizer/{name}"),
            Action::Event { .. } => {
                self.events_seq += 1;
                format!("event/{}", self.events_seq)
            }
        }
    }

    fn submit(&mut self, actions: Vec<Action>) {
        for action in actions {
            let key = self.key(&action);
            if self.waiting.insert(key.clone(), action).is_none() && !self.busy.contains(&key) {
                self.queue.push_back(key);
            }
        }
        self.start_ready();
    }

    fn start_ready(&mut self) {
        while self.running.len() < MAX_CONCURRENT_WRITES {
            let Some(key) = self.queue.pop_front() else {
                break;
            };
            let Some(action) = self.waiting.remove(&key) else {
                continue;
            };
            self.busy.insert(key.clone());
            let fut = self.perform(key, action);
            self.running.push(fut);
        }
    }

    /// A write finished: let the next one for the same object go.
    fn finished(&mut self, key: &str) {
        self.busy.remove(key);
        if self.waiting.contains_key(key) {
            self.queue.push_back(key.to_owned());
        }
        self.start_ready();
    }

    fn perform(&mut self, key: String, action: Action) -> BoxFuture<'static, Done> {
        let client = self.client.clone();
        let namespace = self.namespace.clone();
        let events = self.events.clone();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let params = PatchParams {
                field_manager: Some(ferrolb_api::annotations::CONTROLLER_FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            let result = match &action {
                Action::ServiceStatus { key: svc, desired } => {
                    let (ns, name) = svc.split_once('/').unwrap_or(("", svc));
                    let api: Api<Service> = Api::namespaced(client, ns);
                    metrics.updates.inc();
                    match api
                        .patch_status(name, &params, &Patch::Merge(desired.status_patch()))
                        .await
                    {
                        Ok(_) => Ok(()),
                        // Deleted meanwhile: nothing left to write.
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Action::PoolStatus { name, status } => {
                    let api: Api<IPAddressPool> = Api::namespaced(client, &namespace);
                    metrics.updates.inc();
                    api.patch_status(name, &params, &Patch::Merge(json!({"status": status})))
                        .await
                        .map(drop)
                        .or_else(|e| {
                            if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                                Ok(())
                            } else {
                                Err(e.to_string())
                            }
                        })
                }
                Action::PoolFinalizer { name, finalizers } => {
                    let api: Api<IPAddressPool> = Api::namespaced(client, &namespace);
                    metrics.updates.inc();
                    api.patch(
                        name,
                        &params,
                        &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
                    )
                    .await
                    .map(drop)
                    .or_else(|e| {
                        if matches!(&e, kube::Error::Api(s) if s.code == 404) {
                            Ok(())
                        } else {
                            Err(e.to_string())
                        }
                    })
                }
                Action::Event { object, notice } => {
                    let severity = match notice.severity {
                        Severity::Normal => EventSeverity::Normal,
                        Severity::Warning => EventSeverity::Warning,
                    };
                    // An Event that cannot be published is logged; it never blocks a write.
                    if let Err(e) = events
                        .publish(
                            &object_reference(object),
                            severity,
                            notice.reason,
                            "Allocate",
                            &notice.note,
                        )
                        .await
                    {
                        tracing::warn!(error = %e, reason = notice.reason, "could not publish Event");
                    }
                    Ok(())
                }
            };
            if let Err(e) = &result {
                metrics.update_errors.inc();
                tracing::warn!(write = %key, error = %e, "write failed; retrying");
            }
            (key, result)
        })
    }
}

fn update_pool_metrics(engine: &Engine, metrics: &Metrics) {
    for pool in engine.pool_names() {
        let stats = engine.allocator().pool_stats(&pool).unwrap_or_default();
        let label = PoolLabel { pool };
        let g = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        metrics
            .ipv4_in_use
            .get_or_create(&label)
            .set(g(stats.assigned_v4));
        metrics
            .ipv6_in_use
            .get_or_create(&label)
            .set(g(stats.assigned_v6));
        metrics
            .ipv4_total
            .get_or_create(&label)
            .set(g(stats.assigned_v4.saturating_add(stats.available_v4)));
        metrics
            .ipv6_total
            .get_or_create(&label)
            .set(g(stats.assigned_v6.saturating_add(stats.available_v6)));
        metrics
            .addresses_in_use
            .get_or_create(&label)
            .set(g(stats.assigned_v4.saturating_add(stats.assigned_v6)));
        metrics.addresses_total.get_or_create(&label).set(g(stats
            .assigned_v4
            .saturating_add(stats.available_v4)
            .saturating_add(stats.assigned_v6)
            .saturating_add(stats.available_v6)));
    }
}

/// Runs the controller until the future is dropped (on losing the lease) or a watch fails for
/// good.
///
/// # Errors
/// Never under normal operation; watches retry with backoff.
pub async fn run(
    client: Client,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut engine = Engine::new(EngineConfig {
        lb_class: config.lb_class.clone(),
    });
    let events = Events::new(
        client.clone(),
        "ferrolb-controller",
        config.instance.as_deref().unwrap_or("ferrolb-controller"),
    );
    let mut exec = Executor {
        client: client.clone(),
        namespace: config.namespace.clone(),
        events: events.clone(),
        metrics: metrics.clone(),
        running: FuturesUnordered::new(),
        busy: HashSet::new(),
        waiting: HashMap::new(),
        queue: VecDeque::new(),
        events_seq: 0,
    };
    let cfg = watcher::Config::default();
    // Backoff on watch errors: without it a lost apiserver would be retried in a tight loop.
    let services = watcher::watcher(
        Api::<DeserializeGuard<Service>>::all(client.clone()),
        cfg.clone(),
    )
    .default_backoff()
    .map(|e| {
        e.map_or_else(
            |e| Input::WatchError("services", e),
            |e| Input::Service(Box::new(e)),
        )
    });
    let pools = watcher::watcher(
        Api::<DeserializeGuard<IPAddressPool>>::namespaced(client.clone(), &config.namespace),
        cfg.clone(),
    )
    .default_backoff()
    .map(|e| {
        e.map_or_else(
            |e| Input::WatchError("ipaddresspools", e),
            |e| Input::Pool(Box::new(e)),
        )
    });
    let namespaces = watcher::watcher(Api::<Namespace>::all(client.clone()), cfg)
        .default_backoff()
        .map(|e| {
            e.map_or_else(
                |e| Input::WatchError("namespaces", e),
                |e| Input::Namespace(Box::new(e)),
            )
        });
    let mut inputs =
        futures::stream::select_all([services.boxed(), pools.boxed(), namespaces.boxed()]);
    let (mut svc_relist, mut pool_relist, mut ns_relist) =
        (Relist::default(), Relist::default(), Relist::default());
    let (retry_tx, mut retry_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let invalid_recorder = events;

    loop {
        tokio::select! {
            input = inputs.next() => {
                let Some(input) = input else { anyhow::bail!("watch streams ended") };
                let started = Instant::now();
                let actions = match input {
                    Input::WatchError(what, e) => {
                        tracing::warn!(watch = what, error = %e, "watch error; retrying");
                        Vec::new()
                    }
                    Input::Service(event) => handle_services(&mut engine, &mut svc_relist, *event, &invalid_recorder).await,
                    Input::Pool(event) => handle_pools(&mut engine, &mut pool_relist, *event, &invalid_recorder).await,
                    Input::Namespace(event) => handle_namespaces(&mut engine, &mut ns_relist, *event),
                };
                let mut actions = actions;
                if !engine.is_synced() && svc_relist.done_once && pool_relist.done_once && ns_relist.done_once {
                    tracing::info!("caches loaded: restoring assignments, then allocating");
                    actions.extend(engine.start());
                    metrics.config_loaded.set(1);
                    ready.store(true, Ordering::Relaxed);
                }
                metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
                metrics.reconcile.get_or_create(&ResultLabel { result: "success" }).inc();
                exec.submit(actions);
            }
            Some((key, result)) = exec.running.next(), if !exec.running.is_empty() => {
                exec.finished(&key);
                if let Err(_e) = result {
                    metrics.reconcile.get_or_create(&ResultLabel { result: "error" }).inc();
                    let tx = retry_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = tx.send(key);
                    });
                }
            }
            Some(key) = retry_rx.recv() => {
                let actions = if let Some(svc) = key.strip_prefix("svc/") {
                    engine.write_failed(svc)
                } else if let Some(pool) = key.strip_prefix("poolstatus/").or_else(|| key.strip_prefix("poolfinalizer/")) {
                    engine.pool_write_failed(pool);
                    Vec::new()
                } else {
                    Vec::new()
                };
                exec.submit(actions);
            }
        }
        // Pool statuses once per batch: after the events that are ready now are handled.
        let pool_actions = engine.pool_actions();
        if !pool_actions.is_empty() {
            exec.submit(pool_actions);
        }
        update_pool_metrics(&engine, &metrics);
        metrics
            .allocation_failures
            .inner()
            .store(engine.failure_count(), Ordering::Relaxed);
    }
}

async fn report_invalid(
    recorder: &Events,
    kind: &'static str,
    api_version: &'static str,
    meta: &kube::api::ObjectMeta,
    error: &str,
) {
    tracing::warn!(kind, namespace = ?meta.namespace, name = ?meta.name, %error, "object cannot be parsed; skipped");
    let reference = ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..ObjectReference::default()
    };
    let note: String = error.chars().take(1000).collect();
    if let Err(e) = recorder
        .publish(
            &reference,
            EventSeverity::Warning,
            "InvalidObject",
            "Parse",
            &note,
        )
        .await
    {
        tracing::warn!(error = %e, "could not publish Event");
    }
}

async fn handle_services(
    engine: &mut Engine,
    relist: &mut Relist,
    event: Event<DeserializeGuard<Service>>,
    recorder: &Events,
) -> Vec<Action> {
    match event {
        Event::Init => {
            relist.seen = Some(BTreeSet::new());
            Vec::new()
        }
        Event::InitApply(DeserializeGuard(obj)) | Event::Apply(DeserializeGuard(obj)) => {
            match obj {
                Ok(mut svc) => {
                    if let Some(seen) = relist.seen.as_mut() {
                        seen.insert(service_key(&svc));
                    }
                    slim(&mut svc.metadata);
                    engine.apply_service(svc)
                }
                Err(invalid) => {
                    report_invalid(recorder, "Service", "v1", &invalid.metadata, &invalid.error)
                        .await;
                    Vec::new()
                }
            }
        }
        Event::Delete(DeserializeGuard(obj)) => match obj {
            Ok(svc) => engine.delete_service(&service_key(&svc)),
            Err(invalid) => engine.delete_service(&format!(
                "{}/{}",
                invalid.metadata.namespace.unwrap_or_default(),
                invalid.metadata.name.unwrap_or_default()
            )),
        },
        Event::InitDone => {
            let gone = relist.finish(engine.service_keys());
            gone.iter().flat_map(|k| engine.delete_service(k)).collect()
        }
    }
}

/// Drops what the engine never reads but would keep for every object: field ownership records
/// and kubectl's copy of the last applied manifest are most of a typical object's size.
fn slim(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

async fn handle_pools(
    engine: &mut Engine,
    relist: &mut Relist,
    event: Event<DeserializeGuard<IPAddressPool>>,
    recorder: &Events,
) -> Vec<Action> {
    match event {
        Event::Init => {
            relist.seen = Some(BTreeSet::new());
            Vec::new()
        }
        Event::InitApply(DeserializeGuard(obj)) | Event::Apply(DeserializeGuard(obj)) => {
            match obj {
                Ok(mut pool) => {
                    if let Some(seen) = relist.seen.as_mut() {
                        seen.insert(pool.name_any());
                    }
                    slim(&mut pool.metadata);
                    engine.apply_pool(pool)
                }
                Err(invalid) => {
                    // Keep the last good version of the pool (the engine still has it).
                    if let (Some(seen), Some(name)) =
                        (relist.seen.as_mut(), invalid.metadata.name.clone())
                    {
                        seen.insert(name);
                    }
                    report_invalid(
                        recorder,
                        "IPAddressPool",
                        "ferrolb.io/v1beta1",
                        &invalid.metadata,
                        &invalid.error,
                    )
                    .await;
                    Vec::new()
                }
            }
        }
        Event::Delete(DeserializeGuard(obj)) => {
            let name = match obj {
                Ok(pool) => pool.name_any(),
                Err(invalid) => invalid.metadata.name.unwrap_or_default(),
            };
            engine.delete_pool(&name)
        }
        Event::InitDone => {
            let gone = relist.finish(engine.pool_names());
            gone.iter().flat_map(|k| engine.delete_pool(k)).collect()
        }
    }
}

fn handle_namespaces(
    engine: &mut Engine,
    relist: &mut Relist,
    event: Event<Namespace>,
) -> Vec<Action> {
    match event {
        Event::Init => {
            relist.seen = Some(BTreeSet::new());
            Vec::new()
        }
        Event::InitApply(ns) | Event::Apply(ns) => {
            if let Some(seen) = relist.seen.as_mut() {
                seen.insert(ns.name_any());
            }
            engine.apply_namespace(&ns.name_any(), ns.labels().clone())
        }
        Event::Delete(ns) => engine.delete_namespace(&ns.name_any()),
        Event::InitDone => {
            let gone = relist.finish(engine.namespace_names());
            gone.iter()
                .flat_map(|k| engine.delete_namespace(k))
                .collect()
        }
    }
}
