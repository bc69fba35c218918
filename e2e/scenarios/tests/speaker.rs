//! Speakers against the test API server, gossiping over real UDP on loopback: they agree on one
//! owner per IP, and another takes over when the owner leaves.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ferrolb_speaker::announcer::Announce;
use ferrolb_speaker::election::{Interfaces, owner};
use ferrolb_speaker::gossip::seal::{KeyRing, Sealer};
use ferrolb_speaker::gossip::timing::Timing;
use ferrolb_speaker::runtime::{RuntimeConfig, run};
use serde_json::json;

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<BTreeSet<IpAddr>>>);

impl Announce for Shared {
    fn gained(&mut self, ip: IpAddr, _: &Interfaces) -> Vec<String> {
        self.0.lock().unwrap().insert(ip);
        vec!["eth0".into()]
    }
    fn lost(&mut self, ip: IpAddr) {
        self.0.lock().unwrap().remove(&ip);
    }
}

/// Every `ServiceL2Status` as (announcing node, service namespace/name, interfaces).
fn l2_statuses(server: &test_apiserver::ApiServer) -> Vec<(String, String, String)> {
    let rt = server
        .store()
        .resource("ferrolb.io", "v1beta1", "servicel2statuses")
        .unwrap();
    let page = server
        .store()
        .list(&rt, Some("ferrolb-system"), &Default::default())
        .unwrap();
    page.items
        .iter()
        .map(|o| {
            let labels = &o["metadata"]["labels"];
            // The status follows the object by a moment.
            if !o["status"].is_null() {
                assert_eq!(labels["ferrolb.io/node"], o["status"]["node"]);
            }
            (
                o["status"]["node"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}/{}",
                    labels["ferrolb.io/service-namespace"]
                        .as_str()
                        .unwrap_or_default(),
                    labels["ferrolb.io/service-name"]
                        .as_str()
                        .unwrap_or_default()
                ),
                o["status"]["interfaces"].to_string(),
            )
        })
        .collect()
}

/// Notes of the Events with `reason` about Services in `default`.
fn events(server: &test_apiserver::ApiServer, reason: &str) -> Vec<String> {
    let rt = server
        .store()
        .resource("events.k8s.io", "v1", "events")
        .unwrap();
    let page = server
        .store()
        .list(&rt, Some("default"), &Default::default())
        .unwrap();
    page.items
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speakers_agree_on_one_owner_and_hand_over_when_it_leaves() {
    let server = server().await;
    for n in ["node-a", "node-b", "node-c"] {
        create(
            &server,
            "",
            "v1",
            "nodes",
            "",
            json!({"metadata": {"name": n}}),
        );
    }
    create(
        &server,
        "ferrolb.io",
        "v1beta1",
        "ipaddresspools",
        "ferrolb-system",
        pool("lan", &["192.0.2.0/28"]),
    );
    create(
        &server,
        "ferrolb.io",
        "v1beta1",
        "l2advertisements",
        "ferrolb-system",
        json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "all"}, "spec": {}}),
    );
    let svc = create(
        &server,
        "",
        "v1",
        "services",
        "default",
        lb_service(
            "web",
            json!({"metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}}}),
        ),
    );
    let services = server.store().resource("", "v1", "services").unwrap();
    let _ = svc;
    server
        .store()
        .patch(&services, "default", "web",
            test_apiserver::store::PatchRequest {
                kind: test_apiserver::patch::PatchKind::Merge,
                body: &json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5", "ipMode": "VIP"}]}}}),
                force: false,
            },
            test_apiserver::store::Subresource::Status, "test")
        .unwrap();

    let names = ["node-a", "node-b", "node-c"];
    let ports: Vec<u16> = names.iter().map(|_| free_udp_port()).collect();
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect();
    let mut speakers = Vec::new();
    let mut announced = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let client = client_for(&server.url()).await;
        let sealer = Sealer::new(KeyRing::from_lines("e2e-key").unwrap(), 10_000);
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
            namespace: "ferrolb-system".into(),
            lb_class: None,
            ignore_exclude_lb: false,
            speaker_selector: "app=ferrolb-speaker".into(),
            gossip_port: ports[i],
            static_peers: addrs.clone(),
            grace: Duration::from_millis(300),
            pod_name: None,
            check_ipvs: false,
        };
        let shared = Shared::default();
        announced.push(shared.0.clone());
        let mut responder = shared;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(ferrolb_speaker::metrics::Metrics::new(&mut registry));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            run(
                client,
                config,
                gossip,
                metrics,
                Arc::new(std::sync::atomic::AtomicBool::new(false)),
                &mut responder,
                ferrolb_speaker::runtime::L2Feedback::none().0,
                async {
                    let _ = stop_rx.await;
                },
            )
            .await
            .unwrap();
        });
        speakers.push((stop_tx, task));
    }
    let ip: IpAddr = "192.0.2.5".parse().unwrap();
    let holders = |announced: &[Arc<Mutex<BTreeSet<IpAddr>>>]| -> Vec<usize> {
        (0..announced.len())
            .filter(|i| announced[*i].lock().unwrap().contains(&ip))
            .collect()
    };
    let expected = owner("192.0.2.5", names).unwrap();
    let first = names.iter().position(|n| *n == expected).unwrap();
    eventually(
        Duration::from_secs(20),
        "exactly the hash owner to announce",
        || (holders(&announced) == [first]).then_some(()),
    )
    .await;
    // The owner says so: one ServiceL2Status, and one NodeAssigned Event naming it.
    let status = |node: &str| {
        vec![(
            node.to_owned(),
            "default/web".to_owned(),
            r#"[{"name":"eth0"}]"#.to_owned(),
        )]
    };
    eventually(
        Duration::from_secs(10),
        "the owner's ServiceL2Status",
        || (l2_statuses(&server) == status(expected)).then_some(()),
    )
    .await;
    eventually(Duration::from_secs(10), "a NodeAssigned Event", || {
        let notes = events(&server, "NodeAssigned");
        (notes.len() == 1 && notes[0].contains(expected)).then_some(())
    })
    .await;

    // The owner is stopped (SIGTERM): it leaves gossip, and the next owner takes over.
    let (stop, task) = speakers.remove(first);
    let _ = stop.send(());
    let survivors: Vec<&str> = names.iter().copied().filter(|n| *n != expected).collect();
    let next = names
        .iter()
        .position(|n| *n == owner("192.0.2.5", survivors.iter().copied()).unwrap())
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the next owner to take over",
        || holders(&announced).contains(&next).then_some(()),
    )
    .await;
    task.await.unwrap();
    eventually(Duration::from_secs(5), "the old owner to withdraw", || {
        (holders(&announced) == [next]).then_some(())
    })
    .await;
    // The new owner's object replaces the old one, and the Event names it.
    eventually(
        Duration::from_secs(10),
        "only the new owner's ServiceL2Status",
        || (l2_statuses(&server) == status(names[next])).then_some(()),
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "a second NodeAssigned Event",
        || {
            let notes = events(&server, "NodeAssigned");
            notes.iter().any(|n| n.contains(names[next])).then_some(())
        },
    )
    .await;
    // Quiet once settled: no ServiceL2Status writes while nothing changes.
    let writes = |server: &test_apiserver::ApiServer| {
        server
            .writes()
            .iter()
            .filter(|w| w.resource.starts_with("servicel2statuses"))
            .count()
    };
    let settled = writes(&server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        writes(&server),
        settled,
        "ServiceL2Status rewritten without a change"
    );
    for (stop, task) in speakers {
        let _ = stop.send(());
        task.await.unwrap();
    }
}
