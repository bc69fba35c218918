//! ferrolb-controller against the test API server: real watches, real writes, counted.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_services_created_at_once_get_distinct_ips() {
    let server = server().await;
    create(
        &server,
        "ferrolb.io",
        "v1beta1",
        "ipaddresspools",
        "ferrolb-system",
        pool("v6", &["2001:db8:1::/112"]),
    );
    let _controller = Controller::start(&server.url()).await;
    let client = client_for(&server.url()).await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let creates = (0..1000).map(|i| {
        let api = api.clone();
        async move {
            let svc: Service =
                serde_json::from_value(lb_service(&format!("svc-{i}"), json!({}))).unwrap();
            api.create(&PostParams::default(), &svc).await.unwrap();
        }
    });
    futures::future::join_all(creates).await;
    let ips = eventually(
        Duration::from_secs(60),
        "every Service to get an IP",
        || {
            let all: Vec<Vec<String>> = (0..1000)
                .map(|i| ingress(&server, "default", &format!("svc-{i}")))
                .collect();
            all.iter().all(|ips| ips.len() == 1).then_some(all)
        },
    )
    .await;
    let distinct: BTreeSet<&String> = ips.iter().flatten().collect();
    assert_eq!(distinct.len(), 1000, "IPs are distinct");
    assert_eq!(
        service_status_writes(&server).len(),
        1000,
        "one status write per Service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restart_keeps_every_ip() {
    let server = server().await;
    create(
        &server,
        "ferrolb.io",
        "v1beta1",
        "ipaddresspools",
        "ferrolb-system",
        pool("v6", &["2001:db8:1::/120"]),
    );
    create_services(&server, "svc", 20);
    let controller = Controller::start(&server.url()).await;
    let before = wait_assigned(&server, "svc", 20, "IPs").await;
    controller.stop();
    // Free the lowest address while the controller is down: a fresh allocation would take it.
    let client = client_for(&server.url()).await;
    let api: Api<Service> = Api::namespaced(client, "default");
    api.delete("svc-0", &DeleteParams::default()).await.unwrap();
    let writes_before = service_status_writes(&server).len();

    let _controller = Controller::start(&server.url()).await;
    let late: Service = serde_json::from_value(lb_service("late", json!({}))).unwrap();
    api.create(&PostParams::default(), &late).await.unwrap();
    let late_ip = eventually(Duration::from_secs(20), "the new Service's IP", || {
        ingress(&server, "default", "late").into_iter().next()
    })
    .await;
    for (i, ips) in before.iter().enumerate().skip(1) {
        assert_eq!(
            &ingress(&server, "default", &format!("svc-{i}")),
            ips,
            "svc-{i} kept its IP"
        );
    }
    assert_eq!(
        late_ip, before[0][0],
        "the freed lowest address goes to the new Service"
    );
    assert_eq!(
        service_status_writes(&server).len() - writes_before,
        1,
        "the restart itself wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_writer_flipping_the_requested_ip_costs_at_most_one_write_per_change() {
    let server = server().await;
    create(
        &server,
        "ferrolb.io",
        "v1beta1",
        "ipaddresspools",
        "ferrolb-system",
        pool("v6", &["2001:db8:1::/120"]),
    );
    create(
        &server,
        "",
        "v1",
        "services",
        "default",
        lb_service("web", json!({})),
    );
    let _controller = Controller::start(&server.url()).await;
    eventually(Duration::from_secs(20), "first IP", || {
        ingress(&server, "default", "web").into_iter().next()
    })
    .await;
    let client = client_for(&server.url()).await;
    let api: Api<Service> = Api::namespaced(client, "default");
    let start = service_status_writes(&server).len();
    for i in 0..100 {
        let (ip, expect_ip) = if i % 2 == 0 {
            ("2001:db8:1::42", true)
        } else {
            ("2001:db8:ffff::7", false)
        };
        let patch = json!({"spec": {"loadBalancerIP": ip}});
        api.patch("web", &PatchParams::apply("foreign-controller").force(), &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": patch["spec"],
        })))
        .await
        .unwrap();
        eventually(Duration::from_secs(10), "ferrolb to react", || {
            let now = ingress(&server, "default", "web");
            let settled = if expect_ip {
                now == [ip]
            } else {
                now.is_empty()
            };
            settled.then_some(())
        })
        .await;
    }
    let writes = service_status_writes(&server).len() - start;
    assert!(writes <= 100, "{writes} status writes for 100 changes");
    assert!(writes >= 100, "every change was answered ({writes})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_both_write() {
    let mut server = server().await;
    create(
        &server,
        "ferrolb.io",
        "v1beta1",
        "ipaddresspools",
        "ferrolb-system",
        pool("v6", &["2001:db8:1::/120"]),
    );
    let url_a = server.url();
    let url_b = server.add_listener().await.unwrap();
    #[allow(clippy::async_yields_async)] // the replica's task handle is what the test wants
    let replica = |url: String, identity: &'static str| async move {
        let client = client_for(&url).await;
        let args = <ferrolb_controller::Args as clap::Parser>::parse_from([
            "ferrolb-controller",
            "--namespace",
            "ferrolb-system",
            "--identity",
            identity,
        ]);
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = std::sync::Arc::new(ferrolb_controller::metrics::Metrics::new(&mut registry));
        let config = ferrolb_controller::runtime::RuntimeConfig {
            namespace: "ferrolb-system".into(),
            lb_class: None,
            instance: Some(identity.into()),
        };
        tokio::spawn(async move {
            let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let _ = ferrolb_controller::leader::run_as_leader(
                client,
                &args,
                config,
                metrics,
                ready,
                std::future::pending(),
            )
            .await;
        })
    };
    let a = replica(url_a, "replica-a").await;
    create_services(&server, "first", 5);
    wait_assigned(&server, "first", 5, "the first leader to assign").await;
    let b = replica(url_b, "replica-b").await;
    create_services(&server, "second", 5);
    wait_assigned(&server, "second", 5, "the leader to assign again").await;
    // The leader goes away: the standby takes over.
    a.abort();
    create_services(&server, "third", 5);
    wait_assigned(&server, "third", 5, "the new leader to assign").await;
    b.abort();

    let writes: Vec<_> = server
        .writes()
        .into_iter()
        .filter(|w| w.resource == "services" || w.resource == "ipaddresspools.ferrolb.io")
        .filter(|w| w.manager == "ferrolb-controller")
        .collect();
    let last_a = writes
        .iter()
        .filter(|w| w.listener == 0)
        .map(|w| w.at)
        .max()
        .unwrap();
    let first_b = writes
        .iter()
        .filter(|w| w.listener == 1)
        .map(|w| w.at)
        .min()
        .expect("the standby wrote after taking over");
    assert!(last_a < first_b, "the two replicas' writes overlap in time");
    let all: BTreeSet<String> = ["first", "second", "third"]
        .iter()
        .flat_map(|p| (0..5).map(move |i| format!("{p}-{i}")))
        .flat_map(|n| ingress(&server, "default", &n))
        .collect();
    assert_eq!(all.len(), 15, "every Service has its own IP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_goes_quiet_once_everything_is_written() {
    let server = server().await;
    create(
        &server,
        "ferrolb.io",
        "v1beta1",
        "ipaddresspools",
        "ferrolb-system",
        pool("v6", &["2001:db8:1::/120"]),
    );
    create_services(&server, "svc", 10);
    let _controller = Controller::start(&server.url()).await;
    wait_assigned(&server, "svc", 10, "IPs").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let count = |s: &test_apiserver::ApiServer| {
        s.writes()
            .iter()
            .filter(|w| w.manager == "ferrolb-controller")
            .count()
    };
    let settled = count(&server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&server),
        settled,
        "the controller keeps writing with nothing to do"
    );
}
