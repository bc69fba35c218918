//! The speaker's I/O: watches feed the election inputs, gossip says who is alive, and every
//! change recomputes this node's announcements. The responder that answers ARP/NDP
//! ([`crate::l2::responder::L2Responder`]) is behind the [`Announce`] trait, so tests can stand in
//! a recorder.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrolb_api::{IPAddressPool, L2Advertisement};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::announcer::{Announce, Announcer, Change};
use crate::election::Cluster;
use crate::gossip::node::GossipStats;
use crate::gossip::udp::GossipHandle;
use crate::inputs;
use crate::metrics::{AnnouncedLabels, Metrics, ReasonLabel, StateLabel};

/// How long a speaker with peers waits to join them before deciding alone (peers that never
/// answer are down, or the key differs).
const JOIN_PATIENCE: Duration = Duration::from_secs(5);

/// What the runtime needs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// This node.
    pub node: String,
    /// Namespace of pools, advertisements and speaker pods.
    pub namespace: String,
    /// Class flag.
    pub lb_class: Option<String>,
    /// `--ignore-exclude-lb`.
    pub ignore_exclude_lb: bool,
    /// Label selector of the speaker pods (for peers and for which nodes run a speaker).
    pub speaker_selector: String,
    /// Gossip port peers listen on.
    pub gossip_port: u16,
    /// Static peers (`--peers`).
    pub static_peers: Vec<SocketAddr>,
    /// How long to keep answering after leaving gossip on shutdown.
    pub grace: Duration,
}

struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<KubeNode>,
    /// Custom objects behind a guard: one that does not parse is reported and skipped, and
    /// never stops the watch.
    ads: Store<DeserializeGuard<L2Advertisement>>,
    pools: Store<DeserializeGuard<IPAddressPool>>,
    pods: Store<Pod>,
}

fn speaker_pods(pods: &Store<Pod>) -> Vec<Arc<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && p.metadata.deletion_timestamp.is_none()
        })
        .collect()
}

/// Builds the election inputs from the stores and the gossip view.
fn snapshot(
    stores: &Stores,
    config: &RuntimeConfig,
    alive: &BTreeSet<String>,
) -> (Cluster, Vec<crate::election::ServiceFacts>) {
    let pods = speaker_pods(&stores.pods);
    let cluster = Cluster {
        nodes: stores
            .nodes
            .state()
            .iter()
            .map(|n| {
                let n = inputs::node(n);
                (n.name.clone(), n)
            })
            .collect(),
        alive: alive.clone(),
        speakers: pods
            .iter()
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect(),
        advertisements: stores
            .ads
            .state()
            .iter()
            .filter_map(|a| a.0.as_ref().ok())
            .map(inputs::advertisement)
            .collect(),
        pool_labels: inputs::pool_labels(
            stores
                .pools
                .state()
                .iter()
                .filter_map(|p| p.0.as_ref().ok()),
        ),
        ignore_exclude_lb: config.ignore_exclude_lb,
    };
    let slices = stores.slices.state();
    let services = stores
        .services
        .state()
        .iter()
        .filter_map(|svc| {
            let key = format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any());
            let own: Vec<&EndpointSlice> = slices
                .iter()
                .filter(|s| inputs::slice_service(s).as_deref() == Some(key.as_str()))
                .map(AsRef::as_ref)
                .collect();
            inputs::service(svc, config.lb_class.as_deref(), &own)
        })
        .collect();
    (cluster, services)
}

fn peers(stores: &Stores, config: &RuntimeConfig) -> Vec<SocketAddr> {
    let mut peers: BTreeSet<SocketAddr> = config.static_peers.iter().copied().collect();
    for pod in speaker_pods(&stores.pods) {
        if let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        {
            peers.insert(SocketAddr::new(ip, config.gossip_port));
        }
    }
    peers.into_iter().collect()
}

fn record_gossip(metrics: &Metrics, stats: &GossipStats, alive: usize) {
    metrics
        .members
        .get_or_create(&StateLabel { state: "alive" })
        .set(i64::try_from(alive).unwrap_or(i64::MAX));
    for (reason, count) in &stats.rejected {
        let counter = metrics
            .gossip_dropped
            .get_or_create(&ReasonLabel { reason });
        let seen = counter.get();
        if *count > seen {
            counter.inc_by(*count - seen);
        }
    }
}

fn record_changes(metrics: &Metrics, node: &str, changes: &[Change]) {
    for change in changes {
        let (ip, service, on) = match change {
            Change::Gained { ip, service, .. } => (ip, service, 1),
            Change::Lost { ip, service } => (ip, service, 0),
        };
        let labels = AnnouncedLabels {
            service: service.clone(),
            node: node.to_owned(),
            ip: ip.to_string(),
            protocol: if ip.is_ipv4() { "ipv4" } else { "ipv6" },
        };
        if on == 1 {
            metrics.announced.get_or_create(&labels).set(1);
        } else {
            metrics.announced.remove(&labels);
        }
    }
}

/// Why an object of a guarded kind could not be parsed (None for every other object).
fn invalid(object: &dyn std::any::Any) -> Option<String> {
    if let Some(g) = object.downcast_ref::<DeserializeGuard<L2Advertisement>>() {
        return g.0.as_ref().err().map(|e| e.error.clone());
    }
    if let Some(g) = object.downcast_ref::<DeserializeGuard<IPAddressPool>>() {
        return g.0.as_ref().err().map(|e| e.error.clone());
    }
    None
}

fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, futures::stream::BoxStream<'static, ()>)
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .map(|event| match event {
            Err(e) => tracing::warn!(error = %e, "watch error; retrying"),
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                if let Some(problem) = invalid(&o) {
                    tracing::warn!(object = %o.name_any(), %problem, "object cannot be parsed; skipped");
                }
            }
            Ok(_) => {}
        })
        .boxed();
    (reader, stream)
}

/// Runs until `shutdown` resolves; then leaves gossip first, keeps answering for `grace` while
/// the next owner takes over, and only then withdraws.
///
/// # Errors
/// When the stores never become ready.
pub async fn run(
    client: Client,
    config: RuntimeConfig,
    gossip: GossipHandle,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    responder: &mut impl Announce,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let cfg = watcher::Config::default();
    let (services, s1) = reflect(Api::<Service>::all(client.clone()), cfg.clone());
    let (slices, s2) = reflect(Api::<EndpointSlice>::all(client.clone()), cfg.clone());
    let (nodes, s3) = reflect(Api::<KubeNode>::all(client.clone()), cfg.clone());
    let (ads, s4) = reflect(
        Api::<DeserializeGuard<L2Advertisement>>::namespaced(client.clone(), &config.namespace),
        cfg.clone(),
    );
    let (pools, s5) = reflect(
        Api::<DeserializeGuard<IPAddressPool>>::namespaced(client.clone(), &config.namespace),
        cfg.clone(),
    );
    let (pods, s6) = reflect(
        Api::<Pod>::namespaced(client.clone(), &config.namespace),
        cfg.labels(&config.speaker_selector),
    );
    let stores = Stores {
        services,
        slices,
        nodes,
        ads,
        pools,
        pods,
    };
    let mut changes = futures::stream::select_all([s1, s2, s3, s4, s5, s6]);
    let mut alive = gossip.alive.clone();
    let mut announcer = Announcer::new(&config.node);
    tokio::pin!(shutdown);
    // Decide nothing until every cache holds the whole cluster.
    let all_ready = async {
        let _ = stores.services.wait_until_ready().await;
        let _ = stores.slices.wait_until_ready().await;
        let _ = stores.nodes.wait_until_ready().await;
        let _ = stores.ads.wait_until_ready().await;
        let _ = stores.pools.wait_until_ready().await;
        let _ = stores.pods.wait_until_ready().await;
    };
    tokio::pin!(all_ready);
    let mut synced = false;
    let started = std::time::Instant::now();
    // Wake up when the join patience runs out even if nothing else happens.
    let patience = tokio::time::sleep(JOIN_PATIENCE);
    tokio::pin!(patience);
    loop {
        tokio::select! {
            change = changes.next() => if change.is_none() { anyhow::bail!("watches ended") },
            _ = alive.changed() => {}
            () = &mut all_ready, if !synced => {
                synced = true;
                tracing::info!(node = %config.node, "caches loaded");
            }
            () = &mut patience, if started.elapsed() <= JOIN_PATIENCE => {}
            () = &mut shutdown => break,
        }
        if !synced {
            continue;
        }
        let peers = peers(&stores, &config);
        gossip.set_peers(peers.clone());
        let view = alive.borrow_and_update().clone();
        // Until this speaker has joined its peers it would see itself as the only candidate and
        // announce everything: wait for the group (or, with peers that never answer, a while).
        let joined = view.len() > 1 || peers.len() <= 1 || started.elapsed() > JOIN_PATIENCE;
        if !joined {
            continue;
        }
        // Ready: caches synced and gossip joined.
        ready.store(true, Ordering::Relaxed);
        record_gossip(&metrics, &gossip.stats.borrow(), view.len());
        let (cluster, services) = snapshot(&stores, &config, &view);
        let changes = announcer.update(&cluster, &services);
        record_changes(&metrics, &config.node, &changes);
        Announcer::apply(&changes, responder);
    }
    tracing::info!(
        grace_ms = config.grace.as_millis(),
        "leaving gossip; answering during the grace period"
    );
    gossip.leave().await;
    tokio::time::sleep(config.grace).await;
    let changes = announcer.withdraw_all();
    record_changes(&metrics, &config.node, &changes);
    Announcer::apply(&changes, responder);
    Ok(())
}
