//! The speaker's I/O: watches feed the election inputs, gossip says who is alive, and every
//! change recomputes this node's announcements. The responder that answers ARP/NDP
//! ([`crate::l2::responder::L2Responder`]) is behind the [`Announce`] trait, so tests can stand in
//! a recorder.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrolb_api::annotations::{NODE_LABEL, SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL};
use ferrolb_api::{IPAddressPool, L2Advertisement, ServiceL2Status};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::announcer::{Announce, Announcer, Change};
use crate::election::Cluster;
use crate::gossip::node::GossipStats;
use crate::gossip::udp::GossipHandle;
use crate::inputs;
use crate::l2::claim::L2Report;
use crate::metrics::{AnnouncedLabels, Metrics, ReasonLabel, StateLabel};
use crate::publish::{self, Output, Publisher};
use crate::visibility::{Notices, StatusBook, StatusObject, StatusWrite, reporter};

/// How long a speaker with peers waits to join them before deciding alone (peers that never
/// answer are down, or the key differs).
const JOIN_PATIENCE: Duration = Duration::from_secs(5);
/// Interfaces and the kube-proxy IPVS setting are also checked this often, in case a link
/// change notice was missed (or the netlink socket could not be opened).
const RECHECK: Duration = Duration::from_secs(30);

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
    /// This speaker's pod (owner of its `ServiceL2Status` objects), when run in a cluster.
    pub pod_name: Option<String>,
    /// Check the node's kube-proxy IPVS / strict ARP setting (off where the node is not the
    /// host, as in tests).
    pub check_ipvs: bool,
}

/// What the L2 layer tells the runtime, besides the announcements it is given.
#[derive(Debug)]
pub struct L2Feedback {
    /// Address conflicts, from the responder.
    pub reports: UnboundedReceiver<L2Report>,
    /// A tick per link change (from [`crate::l2::linkwatch`]).
    pub links: UnboundedReceiver<()>,
}

impl L2Feedback {
    /// Feedback that never comes (a responder that is not on real links).
    pub fn none() -> (Self, UnboundedSender<L2Report>, UnboundedSender<()>) {
        let (reports_tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let (links_tx, links) = tokio::sync::mpsc::unbounded_channel();
        (Self { reports, links }, reports_tx, links_tx)
    }
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
    statuses: Store<ServiceL2Status>,
}

impl Stores {
    /// A reference to a Service for Events.
    fn service_ref(&self, key: &str) -> Option<ObjectReference> {
        let (namespace, name) = key.split_once('/')?;
        let svc = self.services.get(&ObjectRef::new(name).within(namespace))?;
        Some(svc.object_ref(&()))
    }

    /// Every `ServiceL2Status`, as the visibility plan reads them.
    fn status_objects(&self) -> Vec<StatusObject> {
        self.statuses
            .state()
            .iter()
            .map(|o| {
                // Labels first: they are written with the object, the status a moment later.
                let status = o.status.clone().unwrap_or_default();
                let label = |key: &str, or: String| o.labels().get(key).cloned().unwrap_or(or);
                StatusObject {
                    name: o.name_any(),
                    service: format!(
                        "{}/{}",
                        label(SERVICE_NAMESPACE_LABEL, status.service_namespace),
                        label(SERVICE_NAME_LABEL, status.service_name)
                    ),
                    node: label(NODE_LABEL, status.node),
                    interfaces: status.interfaces.into_iter().map(|i| i.name).collect(),
                }
            })
            .collect()
    }

    /// The owner reference to this speaker's pod.
    fn own_pod(&self, config: &RuntimeConfig) -> Option<OwnerReference> {
        let name = config.pod_name.as_deref()?;
        let pod = self
            .pods
            .get(&ObjectRef::new(name).within(&config.namespace))?;
        pod.controller_owner_ref(&()).map(|mut o| {
            o.controller = Some(false);
            o.block_owner_deletion = Some(false);
            o
        })
    }
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
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
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

/// The announcing side of the runtime: the announcer, where each IP is answered, and what has
/// been told to operators.
struct Announcing {
    announcer: Announcer,
    /// IP → interfaces it is answered on.
    placements: BTreeMap<IpAddr, Vec<String>>,
    book: StatusBook,
    notices: Notices,
    /// The kube-proxy IPVS problem last reported.
    ipvs: Option<String>,
}

impl Announcing {
    fn new(node: &str) -> Self {
        Self {
            announcer: Announcer::new(node),
            placements: BTreeMap::new(),
            book: StatusBook::new(node),
            notices: Notices::new(node),
            ipvs: None,
        }
    }

    /// Service → the interfaces it is answered on, for every Service this node announces.
    fn by_service(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (ip, (service, _)) in self.announcer.announced() {
            let entry = services.entry(service.clone()).or_default();
            entry.extend(self.placements.get(ip).into_iter().flatten().cloned());
        }
        services
    }

    fn record(&mut self, changes: &[Change], placed: Vec<(IpAddr, Vec<String>)>) {
        for change in changes {
            if let Change::Lost { ip, .. } = change {
                self.placements.remove(ip);
            }
        }
        self.placements.extend(placed);
    }
}

fn send_notices(
    stores: &Stores,
    outputs: &UnboundedSender<Output>,
    notices: Vec<crate::visibility::Notice>,
) {
    for notice in notices {
        if let Some(regarding) = stores.service_ref(notice.service()) {
            tracing::info!(service = notice.service(), reason = notice.reason(), note = %notice.note(), "event");
            let _ = outputs.send(Output::Event {
                regarding,
                reason: notice.reason(),
                note: notice.note(),
                warning: notice.warning(),
            });
        }
    }
}

fn handle_report(
    stores: &Stores,
    outputs: &UnboundedSender<Output>,
    announcing: &Announcing,
    report: &L2Report,
) {
    let L2Report::Conflict {
        ip,
        mac,
        interface,
        withdrawn,
    } = report
    else {
        return;
    };
    let Some((service, _)) = announcing.announcer.announced().get(ip) else {
        return;
    };
    let Some(regarding) = stores.service_ref(service) else {
        return;
    };
    let action = if *withdrawn {
        "this node does not announce it until the other host stops answering (--conflict-policy withdraw)"
    } else {
        "this node announces it anyway (--conflict-policy warn); clients may reach either host"
    };
    let _ = outputs.send(Output::Event {
        regarding,
        reason: "IPConflict",
        note: format!("{ip} is also answered for by MAC {mac} on {interface}: {action}"),
        warning: true,
    });
}

fn check_ipvs(
    node: &str,
    metrics: &Metrics,
    outputs: &UnboundedSender<Output>,
    announcing: &mut Announcing,
) {
    let problem = crate::l2::ipvs::problem(crate::l2::ipvs::read());
    metrics
        .ipvs_strict_arp_missing
        .set(i64::from(problem.is_some()));
    if problem == announcing.ipvs {
        return;
    }
    if let Some(message) = &problem {
        tracing::warn!(%node, "{message}");
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..ObjectReference::default()
        };
        let _ = outputs.send(Output::Event {
            regarding,
            reason: "StrictARPRequired",
            note: message.clone(),
            warning: true,
        });
    }
    announcing.ipvs = problem;
}

/// Runs until `shutdown` resolves; then leaves gossip first, keeps answering for `grace` while
/// the next owner takes over, and only then withdraws.
///
/// # Errors
/// When the stores never become ready.
#[allow(
    clippy::too_many_arguments,
    clippy::too_many_lines,
    reason = "the one place that wires every input of the speaker together"
)]
pub async fn run(
    client: Client,
    config: RuntimeConfig,
    gossip: GossipHandle,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    responder: &mut impl Announce,
    mut feedback: L2Feedback,
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
        cfg.clone().labels(&config.speaker_selector),
    );
    let (statuses, s7) = reflect(
        Api::<ServiceL2Status>::namespaced(client.clone(), &config.namespace),
        cfg,
    );
    let stores = Stores {
        services,
        slices,
        nodes,
        ads,
        pools,
        pods,
        statuses,
    };
    let (outputs, outputs_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(publish::run(
        Publisher {
            client: client.clone(),
            namespace: config.namespace.clone(),
            node: config.node.clone(),
        },
        outputs_rx,
    ));
    let mut changes = futures::stream::select_all([s1, s2, s3, s4, s5, s6, s7]);
    let mut alive = gossip.alive.clone();
    let mut announcing = Announcing::new(&config.node);
    tokio::pin!(shutdown);
    // Decide nothing until every cache holds the whole cluster.
    let all_ready = async {
        let _ = stores.services.wait_until_ready().await;
        let _ = stores.slices.wait_until_ready().await;
        let _ = stores.nodes.wait_until_ready().await;
        let _ = stores.ads.wait_until_ready().await;
        let _ = stores.pools.wait_until_ready().await;
        let _ = stores.pods.wait_until_ready().await;
        let _ = stores.statuses.wait_until_ready().await;
    };
    tokio::pin!(all_ready);
    let mut synced = false;
    let started = std::time::Instant::now();
    // Wake up when the join patience runs out even if nothing else happens.
    let patience = tokio::time::sleep(JOIN_PATIENCE);
    tokio::pin!(patience);
    let mut recheck = tokio::time::interval(RECHECK);
    let mut previous_view: BTreeSet<String> = BTreeSet::new();
    loop {
        let mut relink = false;
        tokio::select! {
            change = changes.next() => if change.is_none() { anyhow::bail!("watches ended") },
            _ = alive.changed() => {}
            () = &mut all_ready, if !synced => {
                synced = true;
                tracing::info!(node = %config.node, "caches loaded");
            }
            () = &mut patience, if started.elapsed() <= JOIN_PATIENCE => {}
            Some(report) = feedback.reports.recv() => {
                handle_report(&stores, &outputs, &announcing, &report);
                continue;
            }
            Some(()) = feedback.links.recv() => {
                // A burst of link notices is one rescan.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while feedback.links.try_recv().is_ok() {}
                relink = true;
            }
            _ = recheck.tick() => {
                relink = true;
                if config.check_ipvs {
                    check_ipvs(&config.node, &metrics, &outputs, &mut announcing);
                }
            }
            () = &mut shutdown => break,
        }
        if relink {
            let moved = responder.relink();
            announcing.placements.extend(moved);
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
        let verdicts = Announcer::verdicts(&cluster, &services);
        let before: BTreeSet<String> = announcing.by_service().into_keys().collect();
        let changes = announcing.announcer.update_from(&verdicts, &services);
        record_changes(&metrics, &config.node, &changes);
        let placed = Announcer::apply(&changes, responder);
        announcing.record(&changes, placed);
        // A member came back (a healed partition, a node back on the network): clients may have
        // moved to an interim owner meanwhile; tell them again where this node's IPs are.
        if !previous_view.is_empty() && view.iter().any(|m| !previous_view.contains(m)) {
            responder.reannounce();
        }
        previous_view.clone_from(&view);
        let now = announcing.by_service();
        for service in now.keys().filter(|s| !before.contains(*s)) {
            metrics.owner_changes.inc();
            announcing.book.took_over(service);
        }
        let has_interfaces: BTreeMap<String, bool> = now
            .iter()
            .map(|(s, ifaces)| (s.clone(), !ifaces.is_empty()))
            .collect();
        let speakers_alive: Vec<&String> = view
            .iter()
            .filter(|n| cluster.speakers.contains(*n))
            .collect();
        let is_reporter = reporter(speakers_alive.iter().copied()) == Some(&config.node);
        let notices = announcing
            .notices
            .update(&verdicts, &has_interfaces, is_reporter);
        send_notices(&stores, &outputs, notices);
        let owner = stores.own_pod(&config);
        for write in announcing.book.plan(&now, &stores.status_objects()) {
            let _ = outputs.send(Output::Status(write, owner.clone()));
        }
    }
    tracing::info!(
        grace_ms = config.grace.as_millis(),
        "leaving gossip; answering during the grace period"
    );
    gossip.leave().await;
    responder.quiesce();
    tokio::time::sleep(config.grace).await;
    let services = announcing.by_service();
    let changes = announcing.announcer.withdraw_all();
    record_changes(&metrics, &config.node, &changes);
    Announcer::apply(&changes, responder);
    // This node's objects go with it (by name: one it just wrote may not be in the cache yet);
    // the next owner writes its own.
    for service in services.keys() {
        let name = crate::visibility::status_name(service, &config.node);
        let _ = outputs.send(Output::Status(StatusWrite::Delete { name }, None));
    }
    drop(outputs);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(())
}
