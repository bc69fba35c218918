//! The speaker's I/O: watches feed the election inputs, gossip says who is alive, and every
//! change recomputes this node's announcements. The responder that answers ARP/NDP
//! ([`crate::l2::responder::L2Responder`]) is behind the [`Announce`] trait, so tests can stand in
//! a recorder.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_api::annotations::{NODE_LABEL, SERVICE_NAME_LABEL, SERVICE_NAMESPACE_LABEL};
use ferrolb_api::{IPAddressPool, L2Advertisement};
use ferrolb_observe::events::Severity;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;

use crate::announcer::{Announce, Announcer, Change};
use crate::cache::{self, Cache};
use crate::election::{Cluster, Node, Ownership, ServiceFacts, decide_ip};
use crate::gossip::node::GossipStats;
use crate::gossip::udp::GossipHandle;
use crate::inputs::{self, ServiceRecord, SliceRecord};
use crate::isolation::{self, IsolationChange, IsolationWatch};
use crate::l2::claim::{ClaimKind, L2Report};
use crate::l2::freshness;
use crate::lean::StatusView;
use crate::ledger::{Ledger, Moved};
use crate::metrics::{AnnouncedLabels, Metrics, ReasonLabel, StateLabel};
use crate::publish::{self, Output, Publisher};
use crate::reach::ApiReach;
use crate::touch::{ByService, Dirty, Touch};
use crate::visibility::{
    Notice, Notices, Refusals, StatusBook, StatusObject, StatusWrite, UsablePublisher, reporter,
    status_name,
};
use ferrolb_observe::heartbeat::Heartbeat;

/// How long a speaker with peers waits to join them before deciding alone (peers that never
/// answer are down, or the key differs). Deciding alone is safe: every IP another node would own
/// is claimed only if nobody answers it on the link (see [`crate::isolation`]).
const JOIN_PATIENCE: Duration = Duration::from_secs(5);
/// Interfaces and the kube-proxy IPVS setting are also checked this often, in case a link
/// change notice was missed (or the netlink socket could not be opened).
const RECHECK: Duration = Duration::from_secs(30);
/// Longest a burst of events is taken in before the round that decides on all of them.
const COALESCE: Duration = Duration::from_millis(10);

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
    /// Beaten by the loop on every tick (`/healthz`).
    pub heartbeat: Arc<Heartbeat>,
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

/// A kind the runtime watches. Custom kinds are read through a [`DeserializeGuard`], so an
/// object that does not parse is reported and skipped instead of stopping the watch.
trait Watched: Resource {
    /// Why this object could not be parsed; `None` when it was.
    fn parse_problem(&self) -> Option<&str> {
        None
    }
}

impl Watched for Service {}
impl Watched for EndpointSlice {}
impl Watched for KubeNode {}
impl Watched for Pod {}

impl<K: Resource> Watched for DeserializeGuard<K> {
    fn parse_problem(&self) -> Option<&str> {
        self.0.as_ref().err().map(|e| e.error.as_str())
    }
}

/// Watches `api` into a cache; the stream says what each event touched (see [`touch`]).
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    touched: fn(&watcher::Event<K>) -> Option<Touch>,
) -> (Store<K>, BoxStream<'static, Touch>)
where
    K: Watched + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    // The server's record of who wrote which field is most of a small object's size.
    let watch = watcher(api, config).modify(|o| o.managed_fields_mut().clear());
    let stream = reflector::reflector(writer, watch)
        .default_backoff()
        .filter_map(move |event| std::future::ready(take_in(event, |_| {}, touched)))
        .boxed();
    (reader, stream)
}

/// One watch event in: an error or an object that cannot be parsed is logged, the event goes to
/// `cache`, and what it touched comes out.
fn take_in<K: Watched>(
    event: Result<watcher::Event<K>, watcher::Error>,
    cache: impl FnOnce(&watcher::Event<K>),
    touched: fn(&watcher::Event<K>) -> Option<Touch>,
) -> Option<Touch> {
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "watch error; retrying");
            return None;
        }
    };
    if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = &event
        && let Some(problem) = o.parse_problem()
    {
        tracing::warn!(object = %o.name_any(), %problem, "object cannot be parsed; skipped");
    }
    cache(&event);
    touched(&event)
}

/// Watches `api` into a [`Cache`] of records; the stream says what each event touched.
fn cached<K, T>(
    api: Api<K>,
    config: watcher::Config,
    key: fn(&K) -> String,
    record: fn(&K) -> Option<T>,
    touched: fn(&watcher::Event<K>) -> Option<Touch>,
) -> (Cache<T>, BoxStream<'static, Touch>)
where
    K: Watched + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default,
    T: Send + Sync + 'static,
{
    let (cache, mut writer) = cache::cache(key, record);
    let stream = watcher(api, config)
        .default_backoff()
        .filter_map(move |event| std::future::ready(take_in(event, |e| writer.apply(e), touched)))
        .boxed();
    (cache, stream)
}

/// `namespace/name` of an object.
fn key_of(o: &impl Resource) -> String {
    inputs::key_of(o.meta())
}

fn service_record(o: &Service) -> Option<ServiceRecord> {
    Some(ServiceRecord::of(o))
}

fn slice_record(o: &EndpointSlice) -> Option<SliceRecord> {
    Some(SliceRecord::of(o))
}

fn node_record(o: &KubeNode) -> Option<Node> {
    Some(inputs::node(o))
}

fn status_record(o: &DeserializeGuard<StatusView>) -> Option<StatusObject> {
    o.0.as_ref().ok().map(status_object)
}

fn service_touched(event: &watcher::Event<Service>) -> Option<Touch> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) => Some(Touch::Service(key_of(o))),
        watcher::Event::InitDone => Some(Touch::Relisted),
        watcher::Event::Init | watcher::Event::InitApply(_) => None,
    }
}

fn slice_touched(event: &watcher::Event<EndpointSlice>) -> Option<Touch> {
    match event {
        watcher::Event::Apply(o) => Some(Touch::Slice {
            name: key_of(o),
            service: inputs::slice_service(o),
        }),
        watcher::Event::Delete(o) => Some(Touch::Slice {
            name: key_of(o),
            service: None,
        }),
        watcher::Event::InitDone => Some(Touch::Relisted),
        watcher::Event::Init | watcher::Event::InitApply(_) => None,
    }
}

fn status_touched(event: &watcher::Event<DeserializeGuard<StatusView>>) -> Option<Touch> {
    match event {
        watcher::Event::Apply(o) => Some(Touch::Status {
            name: o.name_any(),
            service: o.0.as_ref().ok().map(|o| status_object(o).service),
        }),
        watcher::Event::Delete(o) => Some(Touch::Status {
            name: o.name_any(),
            service: None,
        }),
        watcher::Event::InitDone => Some(Touch::Relisted),
        watcher::Event::Init | watcher::Event::InitApply(_) => None,
    }
}

/// Nodes, advertisements, pools and speaker Pods: any change is a change of the cluster.
fn cluster_touched<K>(event: &watcher::Event<K>) -> Option<Touch> {
    match event {
        watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone => {
            Some(Touch::Cluster)
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => None,
    }
}

/// A `ServiceL2Status` as the visibility plan reads it.
fn status_object(o: &StatusView) -> StatusObject {
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
}

/// The caches the watches fill (clones share them).
#[derive(Clone)]
struct Stores {
    services: Cache<ServiceRecord>,
    slices: Cache<SliceRecord>,
    nodes: Cache<Node>,
    ads: Store<DeserializeGuard<L2Advertisement>>,
    pools: Store<DeserializeGuard<IPAddressPool>>,
    pods: Store<Pod>,
    statuses: Cache<StatusObject>,
}

impl Stores {
    /// Starts a watch per kind; the stream says what each change touched.
    fn watch(client: &Client, config: &RuntimeConfig) -> (Self, BoxStream<'static, Touch>) {
        let all = watcher::Config::default();
        let ns = config.namespace.as_str();
        let (services, s1) = cached(
            Api::all(client.clone()),
            all.clone(),
            key_of,
            service_record,
            service_touched,
        );
        let (slices, s2) = cached(
            Api::all(client.clone()),
            all.clone(),
            key_of,
            slice_record,
            slice_touched,
        );
        let (nodes, s3) = cached(
            Api::all(client.clone()),
            all.clone(),
            ResourceExt::name_any,
            node_record,
            cluster_touched,
        );
        let (ads, s4) = reflect(
            Api::namespaced(client.clone(), ns),
            all.clone(),
            cluster_touched,
        );
        let (pools, s5) = reflect(
            Api::namespaced(client.clone(), ns),
            all.clone(),
            cluster_touched,
        );
        let (pods, s6) = reflect(
            Api::namespaced(client.clone(), ns),
            all.clone().labels(&config.speaker_selector),
            cluster_touched,
        );
        let (statuses, s7) = cached(
            Api::namespaced(client.clone(), ns),
            all,
            ResourceExt::name_any,
            status_record,
            status_touched,
        );
        let stores = Self {
            services,
            slices,
            nodes,
            ads,
            pools,
            pods,
            statuses,
        };
        let changes = futures::stream::select_all([s1, s2, s3, s4, s5, s6, s7]).boxed();
        (stores, changes)
    }

    /// Resolves once every cache holds the whole cluster.
    fn loaded(&self) -> BoxFuture<'static, ()> {
        let stores = self.clone();
        Box::pin(async move {
            stores.services.wait_until_ready().await;
            stores.slices.wait_until_ready().await;
            stores.nodes.wait_until_ready().await;
            let _ = stores.ads.wait_until_ready().await;
            let _ = stores.pools.wait_until_ready().await;
            let _ = stores.pods.wait_until_ready().await;
            stores.statuses.wait_until_ready().await;
        })
    }

    /// A reference to a Service for Events.
    fn service_ref(&self, key: &str) -> Option<ObjectReference> {
        Some(self.services.get(key)?.object_ref())
    }

    /// The election's facts of the Service `key` (its EndpointSlices as `slices` files them).
    fn service_facts(
        &self,
        key: &str,
        slices: &ByService,
        lb_class: Option<&str>,
    ) -> Option<ServiceFacts> {
        let svc = self.services.get(key)?;
        let own: Vec<Arc<SliceRecord>> = slices
            .names(key)
            .filter_map(|name| self.slices.get(name))
            .collect();
        let own: Vec<&SliceRecord> = own.iter().map(AsRef::as_ref).collect();
        inputs::service(&svc, lb_class, &own)
    }

    /// Every node's `ServiceL2Status` objects of the Services in `scope`.
    fn status_objects(&self, scope: &BTreeSet<String>, filed: &ByService) -> Vec<StatusObject> {
        scope
            .iter()
            .flat_map(|service| filed.names(service))
            .filter_map(|name| self.statuses.get(name))
            .map(|o| (*o).clone())
            .collect()
    }

    /// Every slice and status object filed by its Service, from the caches.
    fn refile(&self, slices: &mut ByService, statuses: &mut ByService) {
        slices.refile(
            self.slices
                .entries()
                .into_iter()
                .filter_map(|(name, o)| Some((name, o.service.clone()?))),
        );
        statuses.refile(
            self.statuses
                .state()
                .iter()
                .map(|o| (o.name.clone(), o.service.clone())),
        );
    }

    /// This speaker's Pod: `--pod-name`, else the running speaker Pod on this node.
    fn own_pod_object(&self, config: &RuntimeConfig) -> Option<Arc<Pod>> {
        match config.pod_name.as_deref() {
            Some(name) => self
                .pods
                .get(&ObjectRef::new(name).within(&config.namespace)),
            None => self.speaker_pods().into_iter().find(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(config.node.as_str())
            }),
        }
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

    /// Speaker pods that run and are not being deleted.
    fn speaker_pods(&self) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| {
                p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && p.metadata.deletion_timestamp.is_none()
            })
            .collect()
    }

    /// Nodes whose speaker Pod is Ready (running, not being deleted, condition Ready True).
    fn ready_speaker_nodes(&self) -> BTreeSet<String> {
        self.speaker_pods()
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.spec.as_ref()?.node_name.clone())
            .collect()
    }

    /// The gossip peers: the static ones and every speaker pod's IP.
    fn peers(&self, config: &RuntimeConfig) -> Vec<SocketAddr> {
        let mut peers: BTreeSet<SocketAddr> = config.static_peers.iter().copied().collect();
        for pod in self.speaker_pods() {
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

    /// The cluster as the election reads it, with `alive` from gossip.
    fn cluster(&self, config: &RuntimeConfig, alive: &BTreeSet<String>) -> Cluster {
        Cluster {
            nodes: self
                .nodes
                .state()
                .iter()
                .map(|n| (n.name.clone(), Node::clone(n)))
                .collect(),
            alive: alive.clone(),
            speakers: self
                .speaker_pods()
                .iter()
                .filter_map(|p| p.spec.as_ref()?.node_name.clone())
                .collect(),
            advertisements: self
                .ads
                .state()
                .iter()
                .filter_map(|a| a.0.as_ref().ok())
                .map(inputs::advertisement)
                .collect(),
            pools: inputs::pools(self.pools.state().iter().filter_map(|p| p.0.as_ref().ok())),
            usable: inputs::usable_by_node(self.speaker_pods().iter().map(AsRef::as_ref)),
            ignore_exclude_lb: config.ignore_exclude_lb,
        }
    }
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

fn announced_labels(service: &str, node: &str, ip: IpAddr) -> AnnouncedLabels {
    AnnouncedLabels {
        service: service.to_owned(),
        node: node.to_owned(),
        ip: ip.to_string(),
        protocol: if ip.is_ipv4() { "ipv4" } else { "ipv6" },
    }
}

fn record_changes(metrics: &Metrics, node: &str, changes: &[Change]) {
    let labels = |ip: &IpAddr, service: &String| AnnouncedLabels {
        service: service.clone(),
        node: node.to_owned(),
        ip: ip.to_string(),
        protocol: if ip.is_ipv4() { "ipv4" } else { "ipv6" },
    };
    for change in changes {
        let (ip, now, before) = match change {
            Change::Gained { ip, services, .. } => (ip, Some(services), None),
            Change::Lost { ip, services } => (ip, None, Some(services)),
            Change::Holders {
                ip,
                services,
                before,
            } => (ip, Some(services), Some(before)),
        };
        for service in before.into_iter().flatten() {
            if !now.is_some_and(|n| n.contains(service)) {
                metrics.announced.remove(&labels(ip, service));
            }
        }
        for service in now.into_iter().flatten() {
            metrics.announced.get_or_create(&labels(ip, service)).set(1);
        }
    }
}

/// What woke the runtime up.
#[derive(Debug)]
enum Wake {
    /// Something the next round reads changed: a watched object, the gossip view, or the join
    /// patience ran out.
    Changed,
    /// Every cache holds the whole cluster (once).
    CachesLoaded,
    /// The responder reports (an address conflict, a takeover done or held back); once
    /// taken in, they wait in [`Wakeups::reports`] with any that came with them.
    Report(L2Report),
    /// Reports (and perhaps changes) taken in: see [`Wakeups::reports`].
    Reports,
    /// Links changed (a burst of notices is one wake).
    LinksChanged,
    /// Time for the periodic checks of links and the kube-proxy IPVS setting.
    Recheck,
    /// Time to renew the answering deadline (and see whether this loop was frozen).
    Tick,
    /// The watches ended (they retry forever, so this is a bug).
    WatchesEnded,
    /// A part of the speaker that must run as long as it does ended (a bug): exit, so the
    /// kubelet restarts the whole process rather than leave it half alive.
    PartEnded(&'static str),
    /// Time to leave.
    Shutdown,
}

/// Everything the runtime waits on.
struct Wakeups {
    watches: BoxStream<'static, Touch>,
    members: watch::Receiver<BTreeSet<String>>,
    loading: BoxFuture<'static, ()>,
    loaded: bool,
    /// Wakes the runtime once when the join patience runs out, even if nothing else happens.
    patience: Pin<Box<tokio::time::Sleep>>,
    patience_over: bool,
    recheck: tokio::time::Interval,
    /// Beats the heartbeat, and looks for a freeze or a change in being stranded
    /// ([`freshness::TICK`]).
    tick: tokio::time::Interval,
    feedback: L2Feedback,
    /// When the isolation grace runs out, if it is running.
    isolation_at: Option<tokio::time::Instant>,
    /// The task that publishes statuses and Events.
    writer: tokio::task::JoinHandle<()>,
    /// Reports of the links taken in since the loop last looked.
    reports: Vec<L2Report>,
    /// What the watches' events touched since the last round.
    touches: Vec<Touch>,
}

impl Wakeups {
    async fn next(&mut self, shutdown: Pin<&mut impl Future<Output = ()>>) -> Wake {
        let wake = tokio::select! {
            change = self.watches.next() => match change {
                Some(touch) => {
                    self.touches.push(touch);
                    Wake::Changed
                }
                None => Wake::WatchesEnded,
            },
            changed = self.members.changed() => match changed {
                Ok(()) => Wake::Changed,
                Err(_) => Wake::PartEnded("gossip"),
            },
            () = sleep_until(self.isolation_at) => {
                self.isolation_at = None;
                Wake::Changed
            }
            _ = &mut self.writer => Wake::PartEnded("status and Event writer"),
            () = &mut self.loading, if !self.loaded => {
                self.loaded = true;
                Wake::CachesLoaded
            }
            () = &mut self.patience, if !self.patience_over => {
                self.patience_over = true;
                Wake::Changed
            }
            Some(report) = self.feedback.reports.recv() => Wake::Report(report),
            Some(()) = self.feedback.links.recv() => Wake::LinksChanged,
            _ = self.recheck.tick() => Wake::Recheck,
            _ = self.tick.tick() => Wake::Tick,
            () = shutdown => Wake::Shutdown,
        };
        if matches!(wake, Wake::LinksChanged) {
            // A burst of link notices is one rescan.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while self.feedback.links.try_recv().is_ok() {}
        }
        if let Wake::Report(report) = wake {
            self.reports.push(report);
            self.coalesce();
            return Wake::Reports;
        }
        if matches!(wake, Wake::Changed) {
            self.coalesce();
        }
        wake
    }

    /// Takes in whatever else is ready now (watch events, reports of the links), so that a
    /// burst of them (thousands of takeovers reported, a Deployment's Services created at once)
    /// costs one round, not one each. Bounded: a round follows within [`COALESCE`] even while
    /// events keep coming.
    fn coalesce(&mut self) {
        let until = Instant::now() + COALESCE;
        let mut more = true;
        while more && Instant::now() < until {
            more = false;
            while let Ok(report) = self.feedback.reports.try_recv() {
                self.reports.push(report);
                more = true;
            }
            // An ended stream is seen again (and reported) by the next `next`.
            while let Some(Some(touch)) = self.watches.next().now_or_never() {
                self.touches.push(touch);
                more = true;
            }
        }
    }

    /// The gossip view now (and marks it seen).
    fn members(&mut self) -> BTreeSet<String> {
        self.members.borrow_and_update().clone()
    }
}

/// Sleeps until `at`; forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The announcing side of the runtime: the announcer, where each IP is answered, and what has
/// been told to operators.
struct Announcing {
    announcer: Announcer,
    /// IP → interfaces it is answered on.
    placements: BTreeMap<IpAddr, Vec<String>>,
    /// The Services announced after the last round, to see which ones are new.
    services: BTreeSet<String>,
    book: StatusBook,
    notices: Notices,
    refusals: Refusals,
    usable: UsablePublisher,
    /// The kube-proxy IPVS problem last reported.
    ipvs: Option<String>,
    /// IPs this node owns in its view but does not answer yet: a takeover or succession waiting
    /// for the link to show nobody else answers them (after a freeze or being stranded, every
    /// IP it holds).
    deferred: BTreeSet<IpAddr>,
    /// Each IP's owner in the last round, to tell a takeover from a succession or a handover;
    /// `None` before the first round (or after a freeze): who holds what is unknown.
    previous_owners: Option<BTreeMap<IpAddr, String>>,
}

impl Announcing {
    fn new(node: &str) -> Self {
        Self {
            announcer: Announcer::new(node),
            placements: BTreeMap::new(),
            services: BTreeSet::new(),
            book: StatusBook::new(node),
            notices: Notices::new(node),
            refusals: Refusals::default(),
            usable: UsablePublisher::default(),
            ipvs: None,
            deferred: BTreeSet::new(),
            previous_owners: None,
        }
    }

    /// Service → the interfaces it is answered on, for the Services of `scope` this node
    /// announces (an IP of).
    fn by_service(
        &self,
        scope: &BTreeSet<String>,
        ledger: &Ledger,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let announced = self.announcer.announced();
        let mut services: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for service in scope {
            let ips = ledger.facts(service).map_or(&[][..], |f| f.ips.as_slice());
            for ip in ips {
                // A takeover not yet witnessed by the link is not announced yet.
                if self.deferred.contains(ip)
                    || !announced
                        .get(ip)
                        .is_some_and(|a| a.services.contains(service))
                {
                    continue;
                }
                let entry = services.entry(service.clone()).or_default();
                entry.extend(self.placements.get(ip).into_iter().flatten().cloned());
            }
        }
        services
    }

    fn record(&mut self, changes: &[Change], placed: Vec<(IpAddr, Vec<String>)>) {
        for change in changes {
            if let Change::Lost { ip, .. } = change {
                self.placements.remove(ip);
                self.deferred.remove(ip);
            }
        }
        self.placements.extend(placed);
    }
}

/// The speaker's running state: what it reads, what it has decided, and where it writes.
struct Runtime<'r, R> {
    config: RuntimeConfig,
    stores: Stores,
    gossip: GossipHandle,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    responder: &'r mut R,
    outputs: UnboundedSender<Output>,
    announcing: Announcing,
    /// The gossip view of the last round, to see members come back.
    previous_view: BTreeSet<String>,
    started: Instant,
    isolation: IsolationWatch,
    /// Whether this speaker has decided once (joined its peers, or waited long enough): from
    /// then on losing them is a fault to handle, not a start to wait out.
    joined: bool,
    /// Asks the API server whether it hears this node, while gossip is cut off.
    reach: ApiReach,
    /// Reaching neither a gossip peer nor the API server: answering nothing.
    stranded: bool,
    /// The cluster as the last round read it.
    cluster: Cluster,
    /// Every Service's facts and every IP's decision.
    ledger: Ledger,
    /// What the next round reads again.
    dirty: Dirty,
    /// EndpointSlices by Service.
    slices: ByService,
    /// `ServiceL2Status` objects by Service.
    statuses: ByService,
}

impl<R: Announce> Runtime<'_, R> {
    /// Takes in what the watches touched, for the next round.
    fn take_in(&mut self, touches: Vec<Touch>) {
        for touch in touches {
            self.dirty.note(touch, &mut self.slices, &mut self.statuses);
        }
    }

    /// One round: who is alive, who owns what, what to answer, what to tell operators; each
    /// only for what changed since the last one.
    fn round(&mut self, view: &BTreeSet<String>) {
        self.publish_usable_interfaces();
        let peers = self.stores.peers(&self.config);
        let peer_count = peers.len();
        self.gossip.set_peers(peers);
        // Until this speaker has joined its peers it would see itself as the only candidate:
        // wait for the group (or, with peers that never answer, a while).
        self.joined |= view.len() > 1 || peer_count <= 1 || self.started.elapsed() > JOIN_PATIENCE;
        if !self.joined {
            return;
        }
        let isolated = self.watch_isolation(view);
        // Ready: caches synced, gossip joined, and not cut off from it.
        self.ready.store(!isolated, Ordering::Relaxed);
        record_gossip(&self.metrics, &self.gossip.stats.borrow(), view.len());
        let (moved, scope) = self.decide(view);
        let decisions = self.ledger.decisions();
        let refused = self.announcing.refusals.update(decisions, &moved.ips);
        self.metrics.ip_not_in_pool.inc_by(refused);
        let kinds = self.claim_kinds(&moved.ips, view);
        let witnessed: BTreeSet<IpAddr> = if self.responder.claim_kinds(kinds.clone()) {
            kinds.into_keys().collect()
        } else {
            BTreeSet::new()
        };
        self.remember_owners(&moved.ips);
        let announced = self.announce(&moved.ips, &witnessed, &scope);
        self.reannounce_if_a_member_returned(view);
        self.publish_notices(view, &moved.ips, &scope, &announced);
        self.write_statuses(&scope, &announced);
    }

    /// Reads again what changed and decides again the IPs it touches: returns what moved, and
    /// the Services whose announcement and objects to look at.
    fn decide(&mut self, view: &BTreeSet<String>) -> (Moved, BTreeSet<String>) {
        let dirty = std::mem::take(&mut self.dirty);
        if dirty.everything {
            self.stores.refile(&mut self.slices, &mut self.statuses);
        }
        let mut redo = dirty.everything;
        if dirty.everything || dirty.cluster || self.cluster.alive != *view {
            let cluster = self.stores.cluster(&self.config, view);
            // Most Node updates (kubelet heartbeats, images) change nothing the election reads.
            redo |= cluster != self.cluster;
            self.cluster = cluster;
        }
        let keys: BTreeSet<String> = if dirty.everything {
            self.stores
                .services
                .keys()
                .into_iter()
                .chain(self.ledger.services().cloned())
                .collect()
        } else {
            dirty.services
        };
        let lb_class = self.config.lb_class.as_deref();
        let facts: Vec<(String, Option<ServiceFacts>)> = keys
            .into_iter()
            .map(|key| {
                let facts = self.stores.service_facts(&key, &self.slices, lb_class);
                (key, facts)
            })
            .collect();
        let moved = self.ledger.update(&self.cluster, facts, redo);
        let mut scope = dirty.statuses;
        scope.extend(moved.services.iter().cloned());
        if dirty.everything {
            scope.extend(self.ledger.services().cloned());
            scope.extend(self.statuses.services().cloned());
            scope.extend(self.announcing.services.iter().cloned());
        }
        (moved, scope)
    }

    /// How this node claims each moved IP it owns now and did not before (see
    /// [`isolation::claim_kinds`]).
    fn claim_kinds(
        &self,
        moved: &BTreeSet<IpAddr>,
        view: &BTreeSet<String>,
    ) -> BTreeMap<IpAddr, ClaimKind> {
        let me = self.config.node.as_str();
        let now: BTreeMap<IpAddr, String> = moved
            .iter()
            .filter_map(|ip| Some((*ip, self.ledger.owner(*ip)?.to_owned())))
            .collect();
        if !now.values().any(|owner| owner == me) {
            return BTreeMap::new();
        }
        let everyone = isolation::all_alive(&self.cluster);
        let if_all_alive: BTreeMap<IpAddr, String> = now
            .iter()
            .filter(|(_, owner)| *owner == me)
            .filter_map(
                |(ip, _)| match decide_ip(&everyone, *ip, &self.ledger.holders(*ip)) {
                    Ownership::Owner { node, .. } => Some((*ip, node)),
                    Ownership::Silent(_) => None,
                },
            )
            .collect();
        isolation::claim_kinds(
            me,
            &now,
            &if_all_alive,
            self.announcing.previous_owners.as_ref(),
            view,
            &self.cluster.speakers,
        )
    }

    /// Each moved IP's owner now, to tell the next round's gains apart.
    fn remember_owners(&mut self, moved: &BTreeSet<IpAddr>) {
        let ledger = &self.ledger;
        match &mut self.announcing.previous_owners {
            None => {
                self.announcing.previous_owners = Some(isolation::owners_by_ip(ledger.decisions()));
            }
            Some(previous) => {
                for ip in moved {
                    match ledger.owner(*ip) {
                        Some(owner) => previous.insert(*ip, owner.to_owned()),
                        None => previous.remove(ip),
                    };
                }
            }
        }
    }

    /// Writes this node's usable interfaces on its Pod when they differ from what it says, so
    /// every speaker leaves a node that cannot answer out of the candidates.
    fn publish_usable_interfaces(&mut self) {
        let Some(pod) = self.stores.own_pod_object(&self.config) else {
            return;
        };
        let named: BTreeSet<String> = self
            .stores
            .ads
            .state()
            .iter()
            .filter_map(|a| a.0.as_ref().ok())
            .flat_map(|a| a.spec.interfaces.clone())
            .collect();
        let desired = self
            .responder
            .usable_interfaces(&named)
            .map(|set| inputs::usable_value(&set));
        let observed = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(inputs::USABLE_INTERFACES))
            .map(String::as_str);
        if let Some(value) = self.announcing.usable.plan(desired.as_deref(), observed) {
            tracing::info!(pod = %pod.name_any(), interfaces = %value, "publishing usable interfaces");
            let _ = self.outputs.send(Output::Annotate {
                pod: pod.name_any(),
                key: inputs::USABLE_INTERFACES,
                value,
            });
        }
    }

    /// Follows whether this speaker is cut off from gossip and says so on change (metric, Node
    /// Event); true while it is.
    fn watch_isolation(&mut self, view: &BTreeSet<String>) -> bool {
        let cut = isolation::cut_off(&self.config.node, view, &self.stores.ready_speaker_nodes());
        let change = self.isolation.observe(cut, self.started.elapsed());
        let isolated = self.isolation.isolated();
        self.metrics.gossip_isolated.set(i64::from(isolated));
        let (reason, note, severity) = match change {
            None => return isolated,
            Some(IsolationChange::Isolated) => (
                "GossipIsolated",
                format!(
                    "the speaker on {} hears no gossip peer although other speakers are Ready (UDP 7946 blocked, a different gossip key, or clocks apart): it keeps the IPs it holds and takes over none that another node still answers",
                    self.config.node
                ),
                Severity::Warning,
            ),
            Some(IsolationChange::Restored) => (
                "GossipRestored",
                format!(
                    "the speaker on {} hears its gossip peers again",
                    self.config.node
                ),
                Severity::Normal,
            ),
        };
        self.tell_node(reason, note, severity);
        isolated
    }

    /// Logs a change of this node's state and publishes it as an Event on its Node.
    fn tell_node(&self, reason: &'static str, note: String, severity: Severity) {
        let node = &self.config.node;
        match severity {
            Severity::Warning => tracing::warn!(%node, reason, "{note}"),
            Severity::Normal => tracing::info!(%node, reason, "{note}"),
        }
        let _ = self.outputs.send(Output::Event {
            regarding: node_ref(node),
            reason,
            note,
            severity,
        });
    }

    /// When the isolation grace runs out, if it is running.
    fn isolation_deadline(&self) -> Option<tokio::time::Instant> {
        let at = self.isolation.wake_at()?;
        Some(tokio::time::Instant::from_std(self.started + at))
    }

    /// One tick of the loop: beats its heartbeat; after a freeze of the process (SIGSTOP, a
    /// stalled VM: see [`freshness`]) or on leaving the stranded state, claims every IP afresh
    /// through the link's witness, since the other nodes may have taken them over meanwhile
    /// and what this speaker knew of gossip is as old as the freeze.
    fn tick(&mut self) {
        self.config.heartbeat.beat();
        if self.responder.froze() {
            tracing::warn!(
                "this speaker was frozen: claiming its IPs again once nobody else answers them"
            );
            self.metrics.frozen.inc();
            self.reclaim();
        }
        self.watch_stranded(Instant::now());
    }

    /// Follows whether this speaker is stranded (see [`isolation::stranded`]), holds its
    /// answers meanwhile and says so on change. The API server is asked only while gossip is
    /// cut off.
    fn watch_stranded(&mut self, now: Instant) {
        let cut_since = self.isolation.cut_since();
        self.reach.probe(cut_since.is_some());
        let since_start = |at: Instant| at.saturating_duration_since(self.started);
        let stranded = isolation::stranded(
            since_start(now),
            cut_since,
            self.reach.answered_at().map(since_start),
            self.responder.heard_at().map(since_start),
        );
        if stranded == self.stranded {
            return;
        }
        self.stranded = stranded;
        self.metrics.stranded.set(i64::from(stranded));
        self.responder.hold_answers(stranded);
        let (reason, note, severity) = if stranded {
            (
                "SpeakerStranded",
                format!(
                    "the speaker on {} reaches neither a gossip peer nor the API server: it answers nothing until it does (the other nodes take its IPs over)",
                    self.config.node
                ),
                Severity::Warning,
            )
        } else {
            // Back: what it held may be another's by now.
            self.reclaim();
            (
                "SpeakerReconnected",
                format!(
                    "the speaker on {} reaches its peers or the API server again: it claims its IPs once nobody else answers them",
                    self.config.node
                ),
                Severity::Normal,
            )
        };
        self.tell_node(reason, note, severity);
    }

    /// Restarts every claim as a succession (answered once nobody else answers it) and forgets
    /// who held what: gains are successions at best until the next round.
    fn reclaim(&mut self) {
        for ip in self.responder.reclaim_all() {
            let services = self
                .announcing
                .announcer
                .announced()
                .get(&ip)
                .map(|a| a.services.clone())
                .unwrap_or_default();
            self.defer(ip, &services);
        }
        self.announcing.previous_owners = None;
    }

    /// `ip` is not answered until the link's witness allows it: not announced by `services`
    /// meanwhile (metric), and its `ServiceL2Status` waits for `L2Report::TakenOver`.
    fn defer(&mut self, ip: IpAddr, services: &BTreeSet<String>) {
        for service in services {
            self.metrics
                .announced
                .remove(&announced_labels(service, &self.config.node, ip));
        }
        self.announcing.deferred.insert(ip);
        self.restate(ip);
    }

    /// A takeover held back (the owner still answers on the link) or done at last: the IP is
    /// (not) announced by this node, as its metric and `ServiceL2Status` say.
    fn takeover_report(&mut self, report: &L2Report) -> bool {
        let (ip, deferred) = match report {
            L2Report::TakeoverDeferred { ip, .. } => (*ip, true),
            L2Report::TakenOver { ip, .. } => (*ip, false),
            _ => return false,
        };
        let Some(announced) = self.announcing.announcer.announced().get(&ip) else {
            return false;
        };
        for service in &announced.services {
            let labels = announced_labels(service, &self.config.node, ip);
            if deferred {
                self.metrics.announced.remove(&labels);
            } else {
                self.metrics.announced.get_or_create(&labels).set(1);
            }
        }
        if deferred {
            self.announcing.deferred.insert(ip);
        } else {
            self.announcing.deferred.remove(&ip);
        }
        self.restate(ip);
        true
    }

    /// Hands the gains and losses of the `moved` IPs to the responder; returns Service →
    /// interfaces for the Services of `scope` this node announces now.
    fn announce(
        &mut self,
        moved: &BTreeSet<IpAddr>,
        witnessed: &BTreeSet<IpAddr>,
        scope: &BTreeSet<String>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let changes = self
            .announcing
            .announcer
            .update_ips(self.ledger.decisions(), moved);
        record_changes(&self.metrics, &self.config.node, &changes);
        // A takeover or succession counts as announced (metric, status, the other nodes'
        // objects cleaned up) only once the link showed nobody else answers it
        // (`L2Report::TakenOver`).
        for change in &changes {
            if let Change::Gained { ip, services, .. } = change
                && witnessed.contains(ip)
            {
                self.defer(*ip, services);
            }
        }
        let placed = Announcer::apply(&changes, self.responder);
        self.announcing.record(&changes, placed);
        let announced = self.announcing.by_service(scope, &self.ledger);
        for service in scope {
            if !announced.contains_key(service) {
                self.announcing.services.remove(service);
            } else if self.announcing.services.insert(service.clone()) {
                self.metrics.owner_changes.inc();
                self.announcing.book.took_over(service);
            }
        }
        announced
    }

    /// A member came back (a healed partition, a node back on the network): clients may have
    /// moved to an interim owner meanwhile; tell them again where this node's IPs are.
    fn reannounce_if_a_member_returned(&mut self, view: &BTreeSet<String>) {
        if !self.previous_view.is_empty() && view.iter().any(|m| !self.previous_view.contains(m)) {
            self.responder.reannounce();
        }
        self.previous_view.clone_from(view);
    }

    /// Events for takeovers and for Services nobody announces.
    fn publish_notices(
        &mut self,
        view: &BTreeSet<String>,
        moved: &BTreeSet<IpAddr>,
        scope: &BTreeSet<String>,
        announced: &BTreeMap<String, BTreeSet<String>>,
    ) {
        let has_interfaces: BTreeMap<String, bool> = announced
            .iter()
            .map(|(s, ifaces)| (s.clone(), !ifaces.is_empty()))
            .collect();
        let speakers_alive = view.iter().filter(|n| self.cluster.speakers.contains(*n));
        let is_reporter = reporter(speakers_alive) == Some(&self.config.node);
        let notices = self.announcing.notices.update(
            self.ledger.decisions(),
            moved,
            scope,
            &has_interfaces,
            is_reporter,
        );
        for notice in notices {
            self.send_notice(&notice);
        }
    }

    fn send_notice(&self, notice: &Notice) {
        let Some(regarding) = self.stores.service_ref(notice.service()) else {
            return;
        };
        tracing::info!(service = notice.service(), reason = notice.reason(), note = %notice.note(), "event");
        let _ = self.outputs.send(Output::Event {
            regarding,
            reason: notice.reason(),
            note: notice.note(),
            severity: notice.severity(),
        });
    }

    /// Brings the `ServiceL2Status` objects of the Services in `scope` in line with what this
    /// node announces.
    fn write_statuses(
        &mut self,
        scope: &BTreeSet<String>,
        announced: &BTreeMap<String, BTreeSet<String>>,
    ) {
        if scope.is_empty() {
            return;
        }
        let owner = self.stores.own_pod(&self.config);
        let observed = self.stores.status_objects(scope, &self.statuses);
        let owners = self.ledger.owners_of(scope);
        for write in self
            .announcing
            .book
            .plan(scope, announced, &owners, &observed)
        {
            let _ = self.outputs.send(Output::Status(write, owner.clone()));
        }
    }

    /// The node's links changed (or may have): answer on the interfaces chosen now; the
    /// Services of the IPs that moved say so in their objects.
    fn relink(&mut self) {
        let moved = self.responder.relink();
        for (ip, _) in &moved {
            self.restate(*ip);
        }
        self.announcing.placements.extend(moved);
    }

    /// The next round looks again at the objects of the Services `ip` is announced for.
    fn restate(&mut self, ip: IpAddr) {
        if let Some(announced) = self.announcing.announcer.announced().get(&ip) {
            self.dirty
                .statuses
                .extend(announced.services.iter().cloned());
        }
    }

    /// An address conflict on an IP this node announces becomes a Warning on its Service.
    fn report_conflict(&self, report: &L2Report) {
        let L2Report::Conflict {
            ip,
            mac,
            interface,
            withdrawn,
        } = report
        else {
            return;
        };
        let Some(announced) = self.announcing.announcer.announced().get(ip) else {
            return;
        };
        let action = if *withdrawn {
            "this node does not announce it until the other host stops answering (--conflict-policy withdraw)"
        } else {
            "this node announces it anyway (--conflict-policy warn); clients may reach either host"
        };
        for service in &announced.services {
            let Some(regarding) = self.stores.service_ref(service) else {
                continue;
            };
            let _ = self.outputs.send(Output::Event {
                regarding,
                reason: "IPConflict",
                note: format!("{ip} is also answered for by MAC {mac} on {interface}: {action}"),
                severity: Severity::Warning,
            });
        }
    }

    /// A link that cannot be used (its socket, or sending on it) becomes a Warning on this
    /// node, and a Normal Event once it works again.
    fn report_link(&self, report: &L2Report) {
        let node = &self.config.node;
        match report {
            L2Report::LinkFailed { interface, error } => self.tell_node(
                "LinkFailed",
                format!("the speaker on {node} cannot use {interface} ({error}): IPs placed on it may go unanswered; retrying"),
                Severity::Warning,
            ),
            L2Report::LinkRecovered { interface } => self.tell_node(
                "LinkRecovered",
                format!("the speaker on {node} uses {interface} again"),
                Severity::Normal,
            ),
            _ => {}
        }
    }

    /// Reports (once per change) when kube-proxy runs in IPVS mode without strict ARP.
    fn check_ipvs(&mut self) {
        let problem = crate::l2::ipvs::problem(crate::l2::ipvs::read());
        self.metrics
            .ipvs_strict_arp_missing
            .set(i64::from(problem.is_some()));
        if problem == self.announcing.ipvs {
            return;
        }
        if let Some(message) = &problem {
            self.tell_node("StrictARPRequired", message.clone(), Severity::Warning);
        }
        self.announcing.ipvs = problem;
    }

    /// Leaves gossip first, keeps answering for the grace period while the next owner takes
    /// over, then withdraws everything and deletes this node's `ServiceL2Status` objects.
    async fn leave(self) {
        let Self {
            config,
            gossip,
            metrics,
            responder,
            outputs,
            mut announcing,
            ..
        } = self;
        tracing::info!(
            grace_ms = config.grace.as_millis(),
            "leaving gossip; answering during the grace period"
        );
        // Quiet first: from the moment the others hear this node leave, their probes must find
        // it silent (it answers clients until the next owner announces each IP).
        responder.quiesce();
        gossip.leave().await;
        tokio::time::sleep(config.grace).await;
        let changes = announcing.announcer.withdraw_all();
        record_changes(&metrics, &config.node, &changes);
        Announcer::apply(&changes, responder);
        // This node's objects go with it (by name: one it just wrote may not be in the cache
        // yet); the next owner writes its own.
        let services: BTreeSet<&String> = changes
            .iter()
            .flat_map(|c| match c {
                Change::Gained { services, .. }
                | Change::Lost { services, .. }
                | Change::Holders { services, .. } => services,
            })
            .collect();
        for service in services {
            let name = status_name(service, &config.node);
            let _ = outputs.send(Output::Status(StatusWrite::Delete { name }, None));
        }
    }
}

/// A reference to `node` for Events.
fn node_ref(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(node.to_owned()),
        ..ObjectReference::default()
    }
}

/// Runs until `shutdown` resolves; then leaves gossip first, keeps answering for `grace` while
/// the next owner takes over, and only then withdraws.
///
/// # Errors
/// When the watches end.
#[allow(
    clippy::too_many_arguments,
    reason = "the one place that wires every input of the speaker together"
)]
pub async fn run(
    client: Client,
    config: RuntimeConfig,
    gossip: GossipHandle,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    responder: &mut impl Announce,
    feedback: L2Feedback,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stores, watches) = Stores::watch(&client, &config);
    let started = Instant::now();
    let (outputs, outputs_rx) = tokio::sync::mpsc::unbounded_channel();
    let reach = ApiReach::spawn(client.clone());
    let writer = tokio::spawn(publish::run(
        Publisher {
            client,
            namespace: config.namespace.clone(),
            node: config.node.clone(),
        },
        outputs_rx,
    ));
    let mut wakeups = Wakeups {
        watches,
        members: gossip.alive.clone(),
        loading: stores.loaded(),
        loaded: false,
        patience: Box::pin(tokio::time::sleep(JOIN_PATIENCE)),
        patience_over: false,
        recheck: tokio::time::interval(RECHECK),
        tick: {
            let mut tick = tokio::time::interval(freshness::TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        },
        feedback,
        isolation_at: None,
        writer,
        reports: Vec::new(),
        touches: Vec::new(),
    };
    let mut runtime = Runtime {
        announcing: Announcing::new(&config.node),
        config,
        stores,
        gossip,
        metrics,
        ready,
        responder,
        outputs,
        previous_view: BTreeSet::new(),
        started,
        isolation: IsolationWatch::default(),
        joined: false,
        reach,
        stranded: false,
        cluster: Cluster::default(),
        ledger: Ledger::default(),
        dirty: Dirty::default(),
        slices: ByService::default(),
        statuses: ByService::default(),
    };
    tokio::pin!(shutdown);
    loop {
        match wakeups.next(shutdown.as_mut()).await {
            Wake::Changed => {}
            Wake::CachesLoaded => {
                tracing::info!(node = %runtime.config.node, "caches loaded");
                runtime.dirty.everything = true;
            }
            Wake::Report(_) | Wake::Reports => {
                let mut takeovers = false;
                for report in std::mem::take(&mut wakeups.reports) {
                    runtime.report_conflict(&report);
                    runtime.report_link(&report);
                    takeovers |= runtime.takeover_report(&report);
                }
                // A takeover held back or done changes what this node announces: a round
                // brings the statuses in line; a conflict changes nothing to decide.
                if !takeovers && wakeups.touches.is_empty() {
                    continue;
                }
            }
            Wake::LinksChanged => runtime.relink(),
            Wake::Tick => {
                runtime.tick();
                // A freeze re-claims IPs; the next report or change brings statuses in line.
                continue;
            }
            Wake::Recheck => {
                // A usable-interfaces write that did not land is sent again.
                runtime.announcing.usable.retry();
                if runtime.config.check_ipvs {
                    runtime.check_ipvs();
                }
                runtime.relink();
            }
            Wake::WatchesEnded => anyhow::bail!("watches ended"),
            Wake::PartEnded(part) => {
                tracing::error!(part, "a part of the speaker ended; exiting so it restarts");
                anyhow::bail!("the speaker's {part} task ended");
            }
            Wake::Shutdown => break,
        }
        runtime.take_in(std::mem::take(&mut wakeups.touches));
        // Decide nothing until every cache holds the whole cluster.
        if wakeups.loaded {
            runtime.round(&wakeups.members());
            wakeups.isolation_at = runtime.isolation_deadline();
        }
    }
    runtime.leave().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), wakeups.writer).await;
    Ok(())
}
