//! Speakers against the test API server, gossiping over real UDP on loopback: they agree on one
//! owner per IP, and another takes over when the owner leaves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ferrolb_lab::wait::eventually_async;
use ferrolb_speaker::announcer::Announce;
use ferrolb_speaker::election::{Interfaces, owner};
use ferrolb_speaker::gossip::seal::{KeyRing, REPLAY_WINDOW_MS, Sealer};
use ferrolb_speaker::gossip::timing::Timing;
use ferrolb_speaker::runtime::{RuntimeConfig, run};
use serde_json::json;
use test_apiserver::ApiServer;

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const IP: &str = "192.0.2.5";

/// The IPs one speaker announces: what its responder was told to gain and not yet to lose; and
/// the interfaces it says can carry them (`None`: it does not say).
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<BTreeSet<IpAddr>>>, Option<BTreeSet<String>>);

impl Announce for Shared {
    fn gained(&mut self, ip: IpAddr, _: &Interfaces) -> Vec<String> {
        self.0.lock().unwrap().insert(ip);
        vec!["eth0".into()]
    }
    fn lost(&mut self, ip: IpAddr) {
        self.0.lock().unwrap().remove(&ip);
    }
    fn usable_interfaces(&mut self, _: &BTreeSet<String>) -> Option<BTreeSet<String>> {
        self.1.clone()
    }
}

/// Speakers running in this process, one per node of [`NODES`], in that order.
struct Speakers {
    running: Vec<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
    announced: Vec<Shared>,
}

impl Speakers {
    async fn start(server: &ApiServer) -> Self {
        Self::start_with(server, [None, None, None]).await
    }

    /// Starts the speakers, each saying its usable interfaces are `usable[i]`.
    async fn start_with(server: &ApiServer, usable: [Option<BTreeSet<String>>; 3]) -> Self {
        let ports: Vec<u16> = NODES.iter().map(|_| free_port(true)).collect();
        let addrs: Vec<SocketAddr> = ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let mut speakers = Self {
            running: Vec::new(),
            announced: Vec::new(),
        };
        for (i, name) in NODES.iter().enumerate() {
            let client = client_for(&server.url()).await;
            let sealer = Sealer::new(KeyRing::from_lines("e2e-key").unwrap(), REPLAY_WINDOW_MS);
            let gossip = ferrolb_speaker::gossip::udp::spawn(
                addrs[i],
                name,
                Timing::for_cluster(3),
                sealer,
                addrs.clone(),
            )
            .await
            .unwrap();
            let config = RuntimeConfig {
                node: (*name).to_owned(),
                namespace: NAMESPACE.into(),
                lb_class: None,
                ignore_exclude_lb: false,
                speaker_selector: "app=ferrolb-speaker".into(),
                gossip_port: ports[i],
                static_peers: addrs.clone(),
                grace: Duration::from_millis(300),
                pod_name: None,
                check_ipvs: false,
                heartbeat: Default::default(),
            };
            let mut responder = Shared(Arc::default(), usable[i].clone());
            speakers.announced.push(responder.clone());
            let mut registry = prometheus_client::registry::Registry::default();
            let metrics = Arc::new(ferrolb_speaker::metrics::Metrics::new(&mut registry));
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let stopped = async {
                    let _ = stop_rx.await;
                };
                let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let feedback = ferrolb_speaker::runtime::L2Feedback::none().0;
                run(
                    client,
                    config,
                    gossip,
                    metrics,
                    ready,
                    &mut responder,
                    feedback,
                    stopped,
                )
                .await
                .unwrap();
            });
            speakers.running.push(Some((stop_tx, task)));
        }
        speakers
    }

    /// Indices of the nodes announcing [`IP`].
    fn holders(&self) -> Vec<usize> {
        self.holders_of(IP)
    }

    /// Indices of the nodes announcing `ip`.
    fn holders_of(&self, ip: &str) -> Vec<usize> {
        let ip: IpAddr = ip.parse().unwrap();
        (0..self.announced.len())
            .filter(|i| self.announced[*i].0.lock().unwrap().contains(&ip))
            .collect()
    }

    /// Waits until exactly `node` announces [`IP`].
    async fn wait_sole_holder(&self, what: &str, node: usize) {
        eventually_async(what, Duration::from_secs(20), || {
            let holders = self.holders();
            if holders == [node] {
                Ok(())
            } else {
                Err(format!("announced by {holders:?}"))
            }
        })
        .await;
    }

    /// Stops speaker `i` as SIGTERM would, and waits until it has left.
    async fn stop(&mut self, i: usize) {
        let (stop, task) = self.running[i].take().expect("a speaker stopped once");
        let _ = stop.send(());
        task.await.expect("the speaker's run ends without a panic");
    }

    async fn stop_all(mut self) {
        for i in 0..self.running.len() {
            if self.running[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

/// Three nodes, pool `lan`, an `L2Advertisement` for all, and Service `web` holding [`IP`].
fn cluster_with_one_service(server: &ApiServer) {
    for n in NODES {
        create(
            server,
            "",
            "v1",
            "nodes",
            "",
            json!({"metadata": {"name": n}}),
        );
    }
    create_pool(server, "lan", &["192.0.2.0/28"]);
    let advertisement = json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
                               "metadata": {"name": "all"}, "spec": {}});
    let group = "ferrolb.io";
    create(
        server,
        group,
        "v1beta1",
        "l2advertisements",
        NAMESPACE,
        advertisement,
    );
    create_service(
        server,
        "web",
        json!({"metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}}}),
    );
    set_ingress(server, "web", IP);
}

/// Writes `ip` into Service `default/name`'s status, as a controller (or anyone) would.
fn set_ingress(server: &ApiServer, name: &str, ip: &str) {
    let services = server.store().resource("", "v1", "services").unwrap();
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}});
    let request = test_apiserver::store::PatchRequest {
        kind: test_apiserver::patch::PatchKind::Merge,
        body: &status,
        force: false,
    };
    let subresource = test_apiserver::store::Subresource::Status;
    server
        .store()
        .patch(&services, "default", name, request, subresource, "test")
        .unwrap();
}

/// Each speaker's Pod, running on its node: what says which nodes run a speaker (one of them
/// reports silences), and where each publishes its usable interfaces.
fn create_speaker_pods(server: &ApiServer) {
    for node in NODES {
        let pod = format!("speaker-{node}");
        create(
            server,
            "",
            "v1",
            "pods",
            NAMESPACE,
            json!({"metadata": {"name": pod, "labels": {"app": "ferrolb-speaker"}},
                   "spec": {"nodeName": node, "containers": [{"name": "speaker", "image": "ferrolb-speaker"}]}}),
        );
        let pods = server.store().resource("", "v1", "pods").unwrap();
        let status = json!({"status": {"phase": "Running"}});
        let request = test_apiserver::store::PatchRequest {
            kind: test_apiserver::patch::PatchKind::Merge,
            body: &status,
            force: false,
        };
        server
            .store()
            .patch(
                &pods,
                NAMESPACE,
                &pod,
                request,
                test_apiserver::store::Subresource::Status,
                "test",
            )
            .unwrap();
    }
}

/// Every `ServiceL2Status` as (announcing node, service namespace/name, interfaces).
fn l2_statuses(server: &ApiServer) -> Vec<(String, String, String)> {
    list(
        server,
        ("ferrolb.io", "v1beta1", "servicel2statuses"),
        NAMESPACE,
    )
    .iter()
    .map(|o| {
        let labels = &o["metadata"]["labels"];
        // The status follows the object by a moment.
        if !o["status"].is_null() {
            assert_eq!(
                labels["ferrolb.io/node"], o["status"]["node"],
                "a ServiceL2Status's node label and status disagree"
            );
        }
        let label = |k: &str| labels[k].as_str().unwrap_or_default().to_owned();
        (
            o["status"]["node"].as_str().unwrap_or_default().to_owned(),
            format!(
                "{}/{}",
                label("ferrolb.io/service-namespace"),
                label("ferrolb.io/service-name")
            ),
            o["status"]["interfaces"].to_string(),
        )
    })
    .collect()
}

/// Waits until the only `ServiceL2Status` says `node` announces `default/web` on eth0, and a
/// `NodeAssigned` Event names `node`.
async fn wait_reported_owner(server: &ApiServer, node: &str) {
    let want = vec![(
        node.to_owned(),
        "default/web".to_owned(),
        r#"[{"name":"eth0"}]"#.to_owned(),
    )];
    eventually_async(
        &format!("only {node}'s ServiceL2Status"),
        Duration::from_secs(10),
        || {
            let now = l2_statuses(server);
            if now == want {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    )
    .await;
    eventually_async(
        &format!("a NodeAssigned Event naming {node}"),
        Duration::from_secs(10),
        || {
            let notes = events(server, "NodeAssigned");
            if notes.iter().any(|n| n.contains(node)) {
                Ok(())
            } else {
                Err(format!("{notes:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speakers_agree_on_one_owner_and_hand_over_when_it_leaves() {
    let server = server().await;
    cluster_with_one_service(&server);
    let mut speakers = Speakers::start(&server).await;
    let position = |node: &str| NODES.iter().position(|n| *n == node).unwrap();

    let first = owner(IP, NODES).unwrap();
    speakers
        .wait_sole_holder("exactly the hash owner to announce", position(first))
        .await;
    wait_reported_owner(&server, first).await;
    let assigned = events(&server, "NodeAssigned");
    assert_eq!(
        assigned.len(),
        1,
        "one NodeAssigned Event for the first owner: {assigned:?}"
    );

    // The owner is stopped (SIGTERM): it leaves gossip, and the next owner takes over.
    speakers.stop(position(first)).await;
    let next = owner(IP, NODES.into_iter().filter(|n| *n != first)).unwrap();
    speakers
        .wait_sole_holder("the next owner alone to announce", position(next))
        .await;
    wait_reported_owner(&server, next).await;

    // Everything the handover writes has landed (waited for above): from here, nothing changes.
    assert_stays_quiet(
        "ServiceL2Status rewritten without a change",
        Duration::from_secs(2),
        || {
            server
                .writes()
                .iter()
                .filter(|w| w.resource.starts_with("servicel2statuses"))
                .count()
        },
    )
    .await;
    speakers.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_outside_every_pool_is_answered_by_no_speaker_and_reported_once() {
    const FOREIGN: &str = "203.0.113.9";
    let server = server().await;
    cluster_with_one_service(&server);
    // Claimed to come from pool `lan` (the annotation is not trusted), written by another hand.
    create_service(
        &server,
        "foreign",
        json!({"metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}}}),
    );
    set_ingress(&server, "foreign", FOREIGN);
    create_speaker_pods(&server);
    let speakers = Speakers::start(&server).await;
    let owner_index = NODES
        .iter()
        .position(|n| Some(*n) == owner(IP, NODES))
        .unwrap();
    speakers
        .wait_sole_holder("the pool address to be announced", owner_index)
        .await;
    eventually_async(
        "an IPNotInPool Event naming the foreign IP",
        Duration::from_secs(10),
        || match events(&server, "IPNotInPool").as_slice() {
            [note] if note.contains(FOREIGN) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_stays_quiet(
        "a second IPNotInPool Event without a change",
        Duration::from_secs(1),
        || events(&server, "IPNotInPool").len(),
    )
    .await;
    assert_eq!(
        speakers.holders_of(FOREIGN),
        Vec::<usize>::new(),
        "nobody announces {FOREIGN}"
    );
    speakers.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_usable_interface_publishes_so_and_never_wins() {
    let server = server().await;
    cluster_with_one_service(&server);
    create_speaker_pods(&server);
    // The hash winner's links are all down.
    let first = owner(IP, NODES).unwrap();
    let usable = NODES.map(|n| {
        Some(if n == first {
            BTreeSet::new()
        } else {
            BTreeSet::from(["eth0".to_owned()])
        })
    });
    let speakers = Speakers::start_with(&server, usable).await;
    for node in NODES {
        let want = if node == first { "" } else { "eth0" };
        eventually_async(
            &format!("{node}'s Pod to say its usable interfaces are {want:?}"),
            Duration::from_secs(10),
            || {
                let pod = get(
                    &server,
                    ("", "v1", "pods"),
                    NAMESPACE,
                    &format!("speaker-{node}"),
                );
                let value = pod
                    .as_ref()
                    .map(|p| p["metadata"]["annotations"]["ferrolb.io/usable-interfaces"].clone());
                if value == Some(json!(want)) {
                    Ok(())
                } else {
                    Err(format!("{value:?}"))
                }
            },
        )
        .await;
    }
    let next = owner(IP, NODES.into_iter().filter(|n| *n != first)).unwrap();
    let position = |node: &str| NODES.iter().position(|n| *n == node).unwrap();
    speakers
        .wait_sole_holder("the best node that can answer to announce", position(next))
        .await;
    speakers.stop_all().await;
}
