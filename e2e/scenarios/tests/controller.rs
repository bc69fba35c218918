//! ferrolb-controller against the test API server: real watches, real writes, counted. Services
//! are created and changed both before the controller starts (its initial sync) and after it
//! (watch events one by one): both paths must assign, move and free IPs.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use ferrolb_api::annotations::ADDRESS_POOL;
use ferrolb_lab::wait::eventually_async;
use k8s_openapi::api::core::v1::Service;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn service(name: &str, extra: Value) -> Service {
    serde_json::from_value(lb_service(name, extra)).unwrap()
}

/// A replica with leader election (lease of `lease_seconds`) against `url`; aborting its task
/// drops it, which releases the lease.
async fn replica(
    url: String,
    identity: &'static str,
    lease_seconds: u64,
) -> tokio::task::JoinHandle<()> {
    let client = client_for(&url).await;
    let args = <ferrolb_controller::Args as clap::Parser>::parse_from([
        "ferrolb-controller",
        "--namespace",
        NAMESPACE,
        "--identity",
        identity,
        "--lease-duration-seconds",
        &lease_seconds.to_string(),
    ]);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = std::sync::Arc::new(ferrolb_controller::metrics::Metrics::new(&mut registry));
    let config = ferrolb_controller::runtime::RuntimeConfig {
        namespace: NAMESPACE.into(),
        lb_class: None,
        instance: Some(identity.into()),
        heartbeat: Default::default(),
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_created_after_the_initial_sync_gets_an_ip_from_the_pool() {
    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    let controller = Controller::start(&server.url()).await;
    controller.synced().await;
    let api = services_api(&server).await;
    api.create(&PostParams::default(), &service("web", json!({})))
        .await
        .unwrap();
    wait_ip(
        &server,
        "web",
        "an IP from pool v6 for a Service created after the sync",
        within("2001:db8:1::/120"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_requested_ip_of_a_running_service_moves_it_there() {
    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    create_service(&server, "web", json!({}));
    let controller = Controller::start(&server.url()).await;
    controller.synced().await;
    let first = wait_ip(&server, "web", "the first IP", within("2001:db8:1::/120")).await;
    let requested = "2001:db8:1::42";
    assert_ne!(first, requested, "the test needs the request to be a move");
    let patch = json!({"spec": {"loadBalancerIP": requested}});
    services_api(&server)
        .await
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    wait_ip(
        &server,
        "web",
        "the Service to move to the requested IP",
        |ip| ip == requested,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_pool_annotation_of_a_running_service_moves_it_to_that_pool() {
    let server = server().await;
    create_pool(&server, "a", &["2001:db8:a::/120"]);
    create_pool(&server, "b", &["2001:db8:b::/120"]);
    let pool_is = |pool: &str| json!({"metadata": {"annotations": {ADDRESS_POOL.name: pool}}});
    create_service(&server, "web", pool_is("a"));
    let controller = Controller::start(&server.url()).await;
    controller.synced().await;
    wait_ip(
        &server,
        "web",
        "an IP from pool a",
        within("2001:db8:a::/120"),
    )
    .await;
    services_api(&server)
        .await
        .patch("web", &PatchParams::default(), &Patch::Merge(pool_is("b")))
        .await
        .unwrap();
    wait_ip(
        &server,
        "web",
        "the Service to move to pool b",
        within("2001:db8:b::/120"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_service_gives_its_ip_to_a_service_that_was_waiting_for_one() {
    let server = server().await;
    create_pool(&server, "one", &["2001:db8:1::7/128"]);
    create_services(&server, "svc", 2);
    let controller = Controller::start(&server.url()).await;
    controller.synced().await;
    let (holder, waiting) = eventually_async(
        "one Service to hold the only address",
        Duration::from_secs(20),
        || {
            let ips = [0, 1].map(|i| ingress(&server, "default", &format!("svc-{i}")));
            match ips.iter().position(|ips| ips == &["2001:db8:1::7"]) {
                Some(i) if ips[1 - i].is_empty() => Ok((i, 1 - i)),
                _ => Err(format!("{ips:?}")),
            }
        },
    )
    .await;
    services_api(&server)
        .await
        .delete(&format!("svc-{holder}"), &DeleteParams::default())
        .await
        .unwrap();
    wait_ip(
        &server,
        &format!("svc-{waiting}"),
        "the freed address to go to the waiting Service",
        |ip| ip == "2001:db8:1::7",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_services_created_at_once_get_distinct_ips_with_one_write_each() {
    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/112"]);
    let controller = Controller::start(&server.url()).await;
    controller.synced().await;
    let api = services_api(&server).await;
    let creates = (0..1000).map(|i| {
        let api = api.clone();
        async move {
            let svc = service(&format!("svc-{i}"), json!({}));
            api.create(&PostParams::default(), &svc).await.unwrap();
        }
    });
    futures::future::join_all(creates).await;
    let ips = wait_assigned(&server, "svc", 1000, "every Service to get an IP").await;
    let distinct: BTreeSet<&String> = ips.iter().flatten().collect();
    assert_eq!(distinct.len(), 1000, "two Services were given the same IP");
    assert_eq!(
        service_status_writes(&server).len(),
        1000,
        "status writes for 1000 Services"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restart_keeps_every_ip_and_gives_a_freed_one_to_the_next_service() {
    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    create_services(&server, "svc", 20);
    let controller = Controller::start(&server.url()).await;
    let before = wait_assigned(&server, "svc", 20, "IPs").await;
    controller.stop();
    // Free the lowest address while the controller is down: a fresh allocation would take it.
    let api = services_api(&server).await;
    api.delete("svc-0", &DeleteParams::default()).await.unwrap();
    let writes_before = service_status_writes(&server).len();

    let controller = Controller::start(&server.url()).await;
    controller.synced().await;
    api.create(&PostParams::default(), &service("late", json!({})))
        .await
        .unwrap();
    let late_ip = wait_ip(&server, "late", "the new Service's IP", |_| true).await;
    for (i, ips) in before.iter().enumerate().skip(1) {
        assert_eq!(
            &ingress(&server, "default", &format!("svc-{i}")),
            ips,
            "svc-{i} lost its IP in the restart"
        );
    }
    assert_eq!(
        late_ip, before[0][0],
        "the freed lowest address did not go to the new Service"
    );
    assert_eq!(
        service_status_writes(&server).len() - writes_before,
        1,
        "the restart rewrote Service statuses (only the new Service's write was expected)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_writer_flipping_the_requested_ip_costs_one_write_per_change() {
    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    create_service(&server, "web", json!({}));
    let _controller = Controller::start(&server.url()).await;
    wait_ip(&server, "web", "the first IP", |_| true).await;
    let api = services_api(&server).await;
    let start = service_status_writes(&server).len();
    for i in 0..100 {
        // In the pool (assigned) and outside every pool (cleared), in turn.
        let ip = if i % 2 == 0 {
            "2001:db8:1::42"
        } else {
            "2001:db8:ffff::7"
        };
        let apply = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"loadBalancerIP": ip},
        });
        api.patch(
            "web",
            &PatchParams::apply("foreign-controller").force(),
            &Patch::Apply(apply),
        )
        .await
        .unwrap();
        let want: &[&str] = if i % 2 == 0 { &[ip] } else { &[] };
        eventually_async(
            &format!("ferrolb to answer request {i} ({ip})"),
            Duration::from_secs(10),
            || {
                let now = ingress(&server, "default", "web");
                if now == want {
                    Ok(())
                } else {
                    Err(format!("web holds {now:?}"))
                }
            },
        )
        .await;
    }
    assert_eq!(
        service_status_writes(&server).len() - start,
        100,
        "status writes for 100 changes of the requested IP"
    );
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_both_write() {
    let mut server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    let url_a = server.url();
    let url_b = server.add_listener().await.unwrap();
    let a = replica(url_a, "replica-a", 15).await;
    create_services(&server, "first", 5);
    wait_assigned(&server, "first", 5, "the first leader to assign").await;
    let b = replica(url_b, "replica-b", 15).await;
    create_services(&server, "second", 5);
    wait_assigned(&server, "second", 5, "the leader to assign again").await;
    // The leader goes away: the standby takes over.
    a.abort();
    create_services(&server, "third", 5);
    wait_assigned(&server, "third", 5, "the new leader to assign").await;
    b.abort();

    let writes: Vec<_> = controller_writes(&server)
        .into_iter()
        .filter(|w| w.resource == "services" || w.resource == "ipaddresspools.ferrolb.io")
        .collect();
    let last_a = writes
        .iter()
        .filter(|w| w.listener == 0)
        .map(|w| w.at)
        .max()
        .expect("the first leader wrote");
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
    assert_eq!(all.len(), 15, "not every Service has its own IP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_goes_quiet_once_everything_is_written() {
    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    create_services(&server, "svc", 10);
    let _controller = Controller::start(&server.url()).await;
    wait_assigned(&server, "svc", 10, "IPs").await;
    // The Service statuses come first; the pool status and one IPAllocated Event per Service
    // follow. Wait for all of them, so the quiet window below sees only extra writes.
    let pools = ("ferrolb.io", "v1beta1", "ipaddresspools");
    eventually_async(
        "the pool status and the Events",
        Duration::from_secs(10),
        || {
            let pool = get(&server, pools, NAMESPACE, "v6").expect("pool v6");
            let assigned = &pool["status"]["assignedIPv6"];
            let events = events(&server, "IPAllocated").len();
            if *assigned == 10 && events == 10 {
                Ok(())
            } else {
                Err(format!(
                    "pool assignedIPv6 {assigned}, {events} IPAllocated Events"
                ))
            }
        },
    )
    .await;
    assert_stays_quiet(
        "the controller wrote with nothing to do",
        Duration::from_secs(2),
        || controller_writes(&server).len(),
    )
    .await;
}

const POOLS: (&str, &str, &str) = ("ferrolb.io", "v1beta1", "ipaddresspools");

/// The `Ready` condition of pool `name`: (status, reason).
fn pool_ready(server: &test_apiserver::ApiServer, name: &str) -> (String, String) {
    let pool = get(server, POOLS, NAMESPACE, name).unwrap_or_default();
    pool["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .unwrap_or_default()
}

/// Asserts the Services `{prefix}-i` hold exactly `ips`, and that no new one got an address.
fn assert_kept(server: &test_apiserver::ApiServer, before: &[Vec<String>], when: &str) {
    for (i, ips) in before.iter().enumerate() {
        assert_eq!(
            &ingress(server, "default", &format!("svc-{i}")),
            ips,
            "svc-{i} changed {when}"
        );
    }
}

/// Edits pool b to overlap pool a (the schema cannot see across pools) and waits for the
/// controller to mark it Ready=False InvalidPool with a Warning Event.
async fn make_pool_b_overlap_pool_a(server: &test_apiserver::ApiServer) {
    let pools: kube::Api<ferrolb_api::IPAddressPool> =
        kube::Api::namespaced(client_for(&server.url()).await, NAMESPACE);
    pools
        .patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"addresses": ["2001:db8:a::/121"]}})),
        )
        .await
        .unwrap();
    eventually_async(
        "pool b Ready=False InvalidPool",
        Duration::from_secs(10),
        || match pool_ready(server, "b") {
            (s, r) if s == "False" && r == "InvalidPool" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    // The Event is published after the status, by another task: wait for it too.
    eventually_async(
        "an InvalidPool Warning Event on the pool",
        Duration::from_secs(10),
        || {
            let events: Vec<Value> = list(server, ("events.k8s.io", "v1", "events"), NAMESPACE);
            if events
                .iter()
                .any(|e| e["reason"] == "InvalidPool" && e["type"] == "Warning")
            {
                Ok(())
            } else {
                Err(format!("{events:?}"))
            }
        },
    )
    .await;
}

/// Waits until `identity` holds the controller's Lease.
async fn wait_lease_holder(server: &test_apiserver::ApiServer, identity: &str) {
    eventually_async(
        &format!("{identity} to hold the lease"),
        Duration::from_secs(20),
        || {
            let lease = get(
                server,
                ("coordination.k8s.io", "v1", "leases"),
                NAMESPACE,
                "ferrolb-controller",
            )
            .unwrap_or_default();
            (lease["spec"]["holderIdentity"] == identity)
                .then_some(())
                .ok_or(format!("{}", lease["spec"]))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_pool_keeps_its_services_ips_across_a_leader_change_and_a_restart() {
    let mut server = server().await;
    create_pool(&server, "a", &["2001:db8:a::/120"]);
    create_pool(&server, "b", &["2001:db8:b::/120"]);
    for i in 0..5 {
        create_service(
            &server,
            &format!("svc-{i}"),
            json!({"metadata": {"annotations": {ADDRESS_POOL.name: "b"}}}),
        );
    }
    let url_a = server.url();
    let url_b = server.add_listener().await.unwrap();
    let first = replica(url_a, "replica-a", 3).await;
    let before = wait_assigned(&server, "svc", 5, "IPs from pool b").await;
    assert!(
        before
            .iter()
            .flatten()
            .all(|ip| within("2001:db8:b::/120")(ip))
    );
    eventually_async(
        "pool b's last valid addresses in its status",
        Duration::from_secs(10),
        || {
            let pool = get(&server, POOLS, NAMESPACE, "b").unwrap();
            let last = &pool["status"]["lastValidAddresses"];
            (*last == json!(["2001:db8:b::/120"]))
                .then_some(())
                .ok_or(format!("{last}"))
        },
    )
    .await;
    let standby = replica(url_b, "replica-b", 3).await;

    make_pool_b_overlap_pool_a(&server).await;
    assert_kept(&server, &before, "after the edit");
    let writes_after_edit = service_status_writes(&server).len();

    // Leader change: the first replica goes, the standby takes over with an empty memory.
    first.abort();
    wait_lease_holder(&server, "replica-b").await;
    let api = services_api(&server).await;
    api.create(
        &PostParams::default(),
        &service(
            "late",
            json!({"metadata": {"annotations": {ADDRESS_POOL.name: "b"}}}),
        ),
    )
    .await
    .unwrap();
    eventually_async(
        "the new leader to refuse the late Service an address from the invalid pool",
        Duration::from_secs(20),
        || {
            let failed = events(&server, "AllocationFailed");
            (!failed.is_empty())
                .then_some(())
                .ok_or("no AllocationFailed yet".to_owned())
        },
    )
    .await;
    assert!(ingress(&server, "default", "late").is_empty());
    assert_kept(&server, &before, "after the leader change");
    standby.abort();

    // Restart: a fresh controller again finds the last valid addresses in the pool's status.
    let controller = Controller::start(&server.url()).await;
    controller.synced().await;
    api.create(&PostParams::default(), &service("probe", json!({})))
        .await
        .unwrap();
    // A Service from pool a is served: the controller is running, not stuck.
    wait_ip(
        &server,
        "probe",
        "an IP from pool a",
        within("2001:db8:a::/120"),
    )
    .await;
    assert_kept(&server, &before, "after the restart");
    assert!(ingress(&server, "default", "late").is_empty());
    assert_eq!(
        pool_ready(&server, "b"),
        ("False".into(), "InvalidPool".into())
    );
    assert_eq!(
        service_status_writes(&server).len() - writes_after_edit,
        1,
        "only the probe Service was written after the edit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_write_on_a_stale_resource_version_from_a_deposed_leader_is_refused() {
    use ferrolb_controller::decide::Desired;
    use ferrolb_controller::engine::Action;
    use ferrolb_controller::writes::Writer;

    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    create_service(&server, "web", json!({}));
    let controller = Controller::start(&server.url()).await;
    let ip = wait_ip(&server, "web", "the first IP", |_| true).await;
    controller.stop();
    // What the deposed leader last saw.
    let seen = get(&server, ("", "v1", "services"), "default", "web").unwrap();
    let stale_rv = seen["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    // The new leader (here: another writer) changes the Service meanwhile.
    let api = services_api(&server).await;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"changed": "by-the-new-leader"}}})),
    )
    .await
    .unwrap();

    // The deposed leader's writer, carrying out a decision made on the old version.
    let client = client_for(&server.url()).await;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = std::sync::Arc::new(ferrolb_controller::metrics::Metrics::new(&mut registry));
    let events = ferrolb_controller::observe::events::Events::new(
        client.clone(),
        "ferrolb-controller",
        "old",
    );
    let mut writer = Writer::new(
        client,
        NAMESPACE.into(),
        events,
        metrics,
        ferrolb_controller::leader::LeaseGuard::always(),
    );
    let moved = "2001:db8:1::99".parse().unwrap();
    writer.submit(vec![Action::ServiceStatus {
        service: ferrolb_controller::convert::ServiceKey::new("default", "web"),
        desired: Desired {
            ips: vec![moved],
            pool: Some("v6".into()),
        },
        resource_version: Some(stale_rv),
    }]);
    let (_, result) = tokio::time::timeout(Duration::from_secs(10), writer.next_done())
        .await
        .unwrap();
    let error = result.expect_err("a write on a stale resourceVersion must be refused");
    assert!(error.is_conflict(), "expected 409 Conflict, got {error}");
    assert_eq!(
        ingress(&server, "default", "web"),
        [ip],
        "the stale write landed"
    );
}
