//! Watches in, writes out: the loop that feeds watch events to the [`Engine`], hands its actions
//! to the [`Writer`], and asks the engine again for writes that failed once their backoff in the
//! [`RetryQueue`] is over. All state is owned by this one loop; nothing is shared or locked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrolb_api::IPAddressPool;
use ferrolb_observe::events::{Events, Severity};
use ferrolb_observe::heartbeat::Heartbeat;
use futures::stream::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference, Service};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;
use kube::{Client, ResourceExt};
use tokio::time::Instant;

use crate::convert::ServiceKey;
use crate::engine::{Action, Engine, EngineConfig};
use crate::error::Error;
use crate::leader::LeaseGuard;
use crate::metrics::{Metrics, PoolLabel, ResultLabel};
use crate::retry::{Backoff, RetryQueue};
use crate::watch::{Change, Relist, name_of, watch};
use crate::writes::{Target, Writer};

/// Backoff of failed writes: the first retry comes soon (most failures are an apiserver blip),
/// and a write refused for good (an admission webhook, a quota) costs one attempt a minute.
const WRITE_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(60),
};

/// What the runtime needs to know.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Namespace of the IPAddressPools.
    pub namespace: String,
    /// Class flag.
    pub lb_class: Option<String>,
    /// Reporter instance (pod name) for Events.
    pub instance: Option<String>,
    /// Beaten by the engine loop while it runs (`/healthz`).
    pub heartbeat: Arc<Heartbeat>,
}

/// One thing that happened; events are boxed so the enum stays small.
enum Input {
    Service(Box<Event<DeserializeGuard<Service>>>),
    Pool(Box<Event<DeserializeGuard<IPAddressPool>>>),
    Namespace(Box<Event<DeserializeGuard<Namespace>>>),
    WatchError(Error),
}

/// The relist trackers, one per watched kind.
struct Relists {
    services: Relist<ServiceKey>,
    pools: Relist<String>,
    namespaces: Relist<String>,
}

impl Relists {
    fn new() -> Self {
        Self {
            services: Relist::new(ServiceKey::from_meta),
            pools: Relist::new(name_of),
            namespaces: Relist::new(name_of),
        }
    }

    fn all_loaded(&self) -> bool {
        self.services.is_loaded() && self.pools.is_loaded() && self.namespaces.is_loaded()
    }
}

/// Runs the controller until the future is dropped (on losing the lease) or the watches end.
/// `ready` turns true once every cache is loaded and existing assignments are restored.
///
/// # Errors
/// [`Error::WatchesEnded`] only: watches retry with backoff, failed writes are retried, and a
/// failed Event is logged.
pub async fn run(
    client: Client,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<(), Error> {
    run_fenced(client, config, metrics, ready, LeaseGuard::always()).await
}

/// [`run`], sending each write only while `guard` says this replica holds a valid lease.
///
/// # Errors
/// As [`run`].
pub async fn run_fenced(
    client: Client,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    guard: LeaseGuard,
) -> Result<(), Error> {
    let mut engine = Engine::new(EngineConfig {
        lb_class: config.lb_class.clone(),
    });
    let events = Events::new(
        client.clone(),
        "ferrolb-controller",
        config.instance.as_deref().unwrap_or("ferrolb-controller"),
    );
    let mut writer = Writer::new(
        client.clone(),
        config.namespace.clone(),
        events.clone(),
        metrics.clone(),
        guard,
    );
    let mut retries: RetryQueue<Target, Instant> = RetryQueue::new(WRITE_BACKOFF);
    let mut relists = Relists::new();
    let services = watch(Api::all(client.clone()), "services")
        .map(|r| r.map_or_else(Input::WatchError, |e| Input::Service(Box::new(e))));
    let pools = watch(
        Api::namespaced(client.clone(), &config.namespace),
        "ipaddresspools",
    )
    .map(|r| r.map_or_else(Input::WatchError, |e| Input::Pool(Box::new(e))));
    let namespaces = watch(Api::all(client), "namespaces")
        .map(|r| r.map_or_else(Input::WatchError, |e| Input::Namespace(Box::new(e))));
    let mut inputs =
        futures::stream::select_all([services.boxed(), pools.boxed(), namespaces.boxed()]);
    // Targets whose retry came due: once no write for one is pending, it is settled.
    let mut retried = Vec::new();
    // An idle engine still beats, so /healthz tells idle from hung.
    let mut beat = tokio::time::interval(BEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        config.heartbeat.beat();
        tokio::select! {
            _ = beat.tick() => continue,
            input = inputs.next() => {
                let input = input.ok_or(Error::WatchesEnded)?;
                let started = std::time::Instant::now();
                let mut actions = match input {
                    Input::WatchError(e) => {
                        metrics.count(&e);
                        tracing::warn!(error = %e, "watch error; retrying");
                        Vec::new()
                    }
                    Input::Service(event) => on_service(&mut engine, &mut relists.services, *event, &events).await,
                    Input::Pool(event) => on_pool(&mut engine, &mut relists.pools, *event, &events).await,
                    Input::Namespace(event) => on_namespace(&mut engine, &mut relists.namespaces, *event, &events).await,
                };
                if !engine.is_synced() && relists.all_loaded() {
                    tracing::info!("caches loaded: restoring assignments, then allocating");
                    actions.extend(engine.start());
                    metrics.config_loaded.set(1);
                    ready.store(true, Ordering::Relaxed);
                }
                metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
                metrics.reconcile.get_or_create(&ResultLabel { result: "success" }).inc();
                writer.submit(actions);
            }
            (target, result) = writer.next_done() => {
                writer.finished(&target);
                match result {
                    Ok(()) => retries.succeeded(&target),
                    Err(e) if e.is_conflict() => {
                        let again = conflicted(&mut engine, &mut retries, &metrics, &target, &e);
                        writer.submit(again);
                    }
                    Err(e) => failed(&mut retries, &metrics, target, &e),
                }
            }
            () = until(retries.next_due()) => {
                for target in retries.pop_due(Instant::now()) {
                    writer.submit(retry(&mut engine, &target));
                    retried.push(target);
                }
            }
        }
        // Pool statuses once per batch: after the events that are ready now are handled.
        let pool_actions = engine.pool_actions();
        if !pool_actions.is_empty() {
            writer.submit(pool_actions);
        }
        // A retry that found nothing left to write leaves nothing to back off from.
        retried.retain(|target| {
            let pending = writer.is_pending(target);
            if !pending {
                retries.succeeded(target);
            }
            pending
        });
        update_pool_metrics(&engine, &metrics);
        metrics
            .allocation_failures
            .inner()
            .store(engine.failure_count(), Ordering::Relaxed);
    }
}

/// How often an idle engine loop beats its heartbeat.
const BEAT: Duration = Duration::from_secs(1);

/// Sleeps until `at`; forever when nothing waits.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A write failed: count it, and schedule it again unless it was an Event (an Event that cannot
/// be published is logged; it never blocks a write).
fn failed(retries: &mut RetryQueue<Target, Instant>, metrics: &Metrics, target: Target, e: &Error) {
    metrics.count(e);
    if let Target::Event(_) = target {
        tracing::warn!(error = %e, "could not publish Event");
        return;
    }
    metrics.update_errors.inc();
    metrics
        .reconcile
        .get_or_create(&ResultLabel { result: "error" })
        .inc();
    let delay = retries.failed(target, Instant::now(), rand::random());
    tracing::warn!(error = %e, retry_in = ?delay, "write failed; retrying");
}

/// A write was refused as stale (409): the object changed since the decision. Not retried as it
/// was; the engine decides again on the version the watch brings.
fn conflicted(
    engine: &mut Engine,
    retries: &mut RetryQueue<Target, Instant>,
    metrics: &Metrics,
    target: &Target,
    e: &Error,
) -> Vec<Action> {
    metrics.count(e);
    tracing::info!(error = %e, "write refused as stale; deciding again on the newer version");
    retries.succeeded(target);
    match target {
        Target::ServiceStatus(service) => engine.write_conflicted(service),
        Target::PoolStatus(pool) | Target::PoolFinalizer(pool) => {
            // The pool writes come from `pool_actions` at the end of the batch.
            engine.pool_write_conflicted(pool);
            Vec::new()
        }
        Target::Event(_) => Vec::new(),
    }
}

/// The engine's writes for a target whose backoff is over.
fn retry(engine: &mut Engine, target: &Target) -> Vec<Action> {
    match target {
        Target::ServiceStatus(service) => engine.write_failed(service),
        Target::PoolStatus(pool) | Target::PoolFinalizer(pool) => {
            // The pool writes come from `pool_actions` at the end of the batch.
            engine.pool_write_failed(pool);
            Vec::new()
        }
        Target::Event(_) => Vec::new(),
    }
}

async fn on_service(
    engine: &mut Engine,
    relist: &mut Relist<ServiceKey>,
    event: Event<DeserializeGuard<Service>>,
    events: &Events,
) -> Vec<Action> {
    match relist.change(event, || engine.service_keys()) {
        Change::Nothing => Vec::new(),
        Change::Applied(mut svc) => {
            slim(&mut svc.metadata);
            engine.apply_service(svc)
        }
        Change::Invalid { meta, error } => {
            report_invalid(events, "Service", "v1", &meta, &error).await;
            Vec::new()
        }
        Change::Deleted(key) => engine.delete_service(&key),
        Change::Gone(keys) => keys.iter().flat_map(|k| engine.delete_service(k)).collect(),
    }
}

async fn on_pool(
    engine: &mut Engine,
    relist: &mut Relist<String>,
    event: Event<DeserializeGuard<IPAddressPool>>,
    events: &Events,
) -> Vec<Action> {
    match relist.change(event, || engine.pool_names()) {
        Change::Nothing => Vec::new(),
        Change::Applied(mut pool) => {
            slim(&mut pool.metadata);
            engine.apply_pool(pool)
        }
        Change::Invalid { meta, error } => {
            // The engine keeps the last good version of the pool.
            report_invalid(events, "IPAddressPool", "ferrolb.io/v1beta1", &meta, &error).await;
            Vec::new()
        }
        Change::Deleted(name) => engine.delete_pool(&name),
        Change::Gone(names) => names.iter().flat_map(|n| engine.delete_pool(n)).collect(),
    }
}

async fn on_namespace(
    engine: &mut Engine,
    relist: &mut Relist<String>,
    event: Event<DeserializeGuard<Namespace>>,
    events: &Events,
) -> Vec<Action> {
    match relist.change(event, || engine.namespace_names()) {
        Change::Nothing => Vec::new(),
        Change::Applied(ns) => engine.apply_namespace(&ns.name_any(), ns.labels().clone()),
        Change::Invalid { meta, error } => {
            report_invalid(events, "Namespace", "v1", &meta, &error).await;
            Vec::new()
        }
        Change::Deleted(name) => engine.delete_namespace(&name),
        Change::Gone(names) => names
            .iter()
            .flat_map(|n| engine.delete_namespace(n))
            .collect(),
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

/// Drops what the engine never reads but would keep for every object: field ownership records
/// and kubectl's copy of the last applied manifest are most of a typical object's size.
fn slim(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
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
            Severity::Warning,
            "InvalidObject",
            "Parse",
            &note,
        )
        .await
    {
        tracing::warn!(error = %e, "could not publish Event");
    }
}
