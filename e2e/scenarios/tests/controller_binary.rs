//! The `ferrolb-controller` binary as an operator runs it: kubeconfig from the environment,
//! metrics and health on its port, leader lease, clean SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use ferrolb_lab::binaries::binary;
use serde_json::json;

async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_allocates_serves_metrics_and_releases_its_lease_on_sigterm() {
    let server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    create_service(&server, "web", json!({}));
    let dir = std::env::temp_dir().join(format!("ferrolb-ctl-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let port = free_port(false);
    let mut child = tokio::process::Command::new(binary("ferrolb-controller").unwrap())
        .args([
            "--namespace",
            NAMESPACE,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "controller-0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    wait_ip(&server, "web", "the binary to assign an IP", |_| true).await;
    let (code, _) = http_get(port, "/readyz").await;
    assert_eq!(code, 200, "/readyz of a controller that assigned an IP");
    let (code, metrics) = http_get(port, "/metrics").await;
    assert_eq!(code, 200, "/metrics");
    for name in [
        "ferrolb_allocator_addresses_in_use_total{pool=\"v6\"} 1",
        "ferrolb_allocator_addresses_total{pool=\"v6\"} 256",
        "ferrolb_controller_is_leader 1",
        "ferrolb_controller_config_loaded 1",
        "ferrolb_k8s_client_updates_total",
        "ferrolb_controller_reconcile_total{result=\"success\"}",
        "ferrolb_controller_reconcile_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }

    let lease = || {
        let leases = ("coordination.k8s.io", "v1", "leases");
        get(&server, leases, NAMESPACE, "ferrolb-controller").expect("the controller's Lease")
    };
    let held = lease();
    assert_eq!(
        held["spec"]["holderIdentity"], "controller-0",
        "the lease holder is the pod named by POD_NAME"
    );

    let pid = child.id().unwrap();
    let sent = Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits within 5 s after SIGTERM")
        .unwrap();
    assert!(status.success(), "SIGTERM ended the binary with {status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "slow exit after SIGTERM"
    );
    let released = lease();
    assert!(
        released["spec"]["holderIdentity"].is_null(),
        "the lease was not released: {released}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts the binary against `url` as replica `identity`, metrics on `port`, with a lease of
/// `lease_seconds`.
fn spawn_replica(
    kubeconfig: &std::path::Path,
    identity: &str,
    port: u16,
    lease_seconds: u64,
) -> tokio::process::Child {
    tokio::process::Command::new(binary("ferrolb-controller").unwrap())
        .args([
            "--namespace",
            NAMESPACE,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--lease-duration-seconds",
            &lease_seconds.to_string(),
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", identity)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success()
    );
}

fn lease_holder(server: &test_apiserver::ApiServer) -> String {
    get(
        server,
        ("coordination.k8s.io", "v1", "leases"),
        NAMESPACE,
        "ferrolb-controller",
    )
    .map(|l| {
        l["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    })
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_writes_nothing_after_it_resumes() {
    const LEASE_SECONDS: u64 = 3;
    let mut server = server().await;
    create_pool(&server, "v6", &["2001:db8:1::/120"]);
    create_service(&server, "web", json!({}));
    let dir = std::env::temp_dir().join(format!("ferrolb-ctl-deposed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Each replica through its own listener, so the server tells their writes apart.
    let kubeconfig_a = dir.join("kubeconfig-a");
    server.write_kubeconfig(&kubeconfig_a).unwrap();
    let url_b = server.add_listener().await.unwrap();
    let kubeconfig_b = dir.join("kubeconfig-b");
    std::fs::write(&kubeconfig_b, test_apiserver::kubeconfig_for(&url_b)).unwrap();
    let (port_a, port_b) = (free_port(false), free_port(false));

    let a = spawn_replica(&kubeconfig_a, "replica-a", port_a, LEASE_SECONDS);
    wait_ip(&server, "web", "replica-a to assign", |_| true).await;
    assert_eq!(lease_holder(&server), "replica-a");
    let b = spawn_replica(&kubeconfig_b, "replica-b", port_b, LEASE_SECONDS);

    signal(&a, "-STOP");
    let paused = Instant::now();
    ferrolb_lab::wait::eventually_async(
        "replica-b to take the lease over",
        Duration::from_secs(20),
        || {
            let holder = lease_holder(&server);
            (holder == "replica-b").then_some(()).ok_or(holder)
        },
    )
    .await;
    let took_over = paused.elapsed();
    // While a is paused: work only the new leader can do, and work a would redo on resuming.
    create_service(&server, "late", json!({}));
    wait_ip(&server, "late", "replica-b to assign", |_| true).await;
    let resumed = Instant::now();
    signal(&a, "-CONT");
    // a has a watch backlog (the late Service, b's writes) and believes it led a moment ago.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(port_a, "/metrics")
        .await
        .1
        .contains("ferrolb_controller_leader 0")
    {
        assert!(
            Instant::now() < deadline,
            "replica-a still reports itself leader 10 s after resuming"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deposed = || {
        server
            .writes()
            .into_iter()
            .filter(|w| w.listener == 0 && w.at > resumed)
            .collect::<Vec<_>>()
    };
    assert!(
        deposed().is_empty(),
        "the deposed leader wrote after resuming: {:?}",
        deposed()
    );
    assert_stays_quiet(
        "the deposed leader wrote after resuming",
        Duration::from_secs(2),
        || deposed().len(),
    )
    .await;
    assert!(
        took_over < Duration::from_secs(LEASE_SECONDS * 3),
        "takeover took {took_over:?}"
    );
    drop((a, b));
    std::fs::remove_dir_all(&dir).unwrap();
}
