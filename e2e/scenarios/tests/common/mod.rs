//! Shared set-up for tests that run ferrolb against the in-process test API server: the server
//! with ferrolb's CRDs, objects created straight into its store, a controller in this process,
//! and readings of what landed in the store.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferrolb_lab::wait::eventually_async;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use test_apiserver::{ApiServer, ServerConfig, StoreConfig, WriteRecord, kubeconfig_for};

/// Where ferrolb's pools and status objects live.
pub const NAMESPACE: &str = "ferrolb-system";

/// A kube client for a server URL.
pub async fn client_for(url: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_for(url)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The Services of `default`, through the server's HTTP API (as a user would write them).
pub async fn services_api(server: &ApiServer) -> Api<Service> {
    Api::namespaced(client_for(&server.url()).await, "default")
}

/// A server with ferrolb's CRDs, the `ferrolb-system` namespace, and IPv6 cluster IPs (so
/// thousands of Services fit in a documentation range).
pub async fn server() -> ApiServer {
    let server = ApiServer::start(ServerConfig {
        store: StoreConfig {
            service_ranges: vec!["2001:db8:96::/108".into()],
            ..StoreConfig::default()
        },
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    ferrolb_lab::register_ferrolb_crds(&server).unwrap();
    create(
        &server,
        "",
        "v1",
        "namespaces",
        "",
        json!({"metadata": {"name": NAMESPACE}}),
    );
    server
}

/// Creates an object through the store directly (fast set-up).
pub fn create(
    server: &ApiServer,
    group: &str,
    version: &str,
    plural: &str,
    ns: &str,
    object: Value,
) -> Value {
    let rt = server.store().resource(group, version, plural).unwrap();
    server.store().create(&rt, ns, object, "test").unwrap()
}

/// Creates the `IPAddressPool` `name` over `addresses`.
pub fn create_pool(server: &ApiServer, name: &str, addresses: &[&str]) {
    create(
        server,
        "ferrolb.io",
        "v1beta1",
        "ipaddresspools",
        NAMESPACE,
        json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": name}, "spec": {"addresses": addresses}}),
    );
}

/// Creates [`lb_service`] `name` in `default`.
pub fn create_service(server: &ApiServer, name: &str, extra: Value) -> Value {
    create(
        server,
        "",
        "v1",
        "services",
        "default",
        lb_service(name, extra),
    )
}

/// An IPv6 single-stack LoadBalancer Service without node ports, with `extra` merged in.
pub fn lb_service(name: &str, extra: Value) -> Value {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name},
                 "allocateLoadBalancerNodePorts": false},
    });
    json_patch::merge(&mut v, &extra);
    v
}

/// A controller running in this process against `url`; dropped = stopped.
pub struct Controller {
    task: tokio::task::JoinHandle<()>,
    ready: Arc<AtomicBool>,
}

impl Controller {
    pub async fn start(url: &str) -> Self {
        let client = client_for(url).await;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(ferrolb_controller::metrics::Metrics::new(&mut registry));
        let config = ferrolb_controller::runtime::RuntimeConfig {
            namespace: NAMESPACE.into(),
            lb_class: None,
            instance: Some("test".into()),
            heartbeat: Default::default(),
        };
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let task = tokio::spawn(async move {
            let _ = ferrolb_controller::runtime::run(client, config, metrics, flag).await;
        });
        Self { task, ready }
    }

    /// Waits until the controller has loaded its caches and made its initial pass: from here on
    /// it acts on watch events one by one.
    pub async fn synced(&self) {
        eventually_async(
            "the controller's initial sync",
            Duration::from_secs(20),
            || {
                if self.ready.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("not ready".into())
                }
            },
        )
        .await;
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stored object `name` in `ns` of `group/version` `plural`, if there is one.
pub fn get(
    server: &ApiServer,
    (group, version, plural): (&str, &str, &str),
    ns: &str,
    name: &str,
) -> Option<Value> {
    let rt = server.store().resource(group, version, plural).unwrap();
    server.store().get(&rt, ns, name).ok()
}

/// The stored objects in `ns` of `group/version` `plural`.
pub fn list(
    server: &ApiServer,
    (group, version, plural): (&str, &str, &str),
    ns: &str,
) -> Vec<Value> {
    let rt = server.store().resource(group, version, plural).unwrap();
    server
        .store()
        .list(&rt, Some(ns), &Default::default())
        .unwrap()
        .items
}

/// The ingress IPs of a Service in `ns` (none when it does not exist).
pub fn ingress(server: &ApiServer, ns: &str, name: &str) -> Vec<String> {
    let Some(svc) = get(server, ("", "v1", "services"), ns, name) else {
        return Vec::new();
    };
    ferrolb_lab::observe::ingress_of(&svc)
}

/// Waits until Service `default/name` holds exactly one IP that satisfies `wanted`, and returns it.
pub async fn wait_ip(
    server: &ApiServer,
    name: &str,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) -> String {
    eventually_async(what, Duration::from_secs(20), || {
        match ingress(server, "default", name).as_slice() {
            [ip] if wanted(ip) => Ok(ip.clone()),
            other => Err(format!("{name} holds {other:?}")),
        }
    })
    .await
}

/// Whether an IP lies in `cidr`.
pub fn within(cidr: &str) -> impl Fn(&str) -> bool {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    move |ip| {
        ip.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| net.contains(&ip))
    }
}

/// Notes of the Events with `reason` about objects in `default`.
pub fn events(server: &ApiServer, reason: &str) -> Vec<String> {
    list(server, ("events.k8s.io", "v1", "events"), "default")
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A loopback port nothing is bound to now, for UDP or TCP.
pub fn free_port(udp: bool) -> u16 {
    let addr = if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
    };
    addr.unwrap().port()
}

/// Every write the controller made.
pub fn controller_writes(server: &ApiServer) -> Vec<WriteRecord> {
    server
        .writes()
        .into_iter()
        .filter(|w| w.manager == "ferrolb-controller")
        .collect()
}

/// Status writes the controller made to Services.
pub fn service_status_writes(server: &ApiServer) -> Vec<WriteRecord> {
    controller_writes(server)
        .into_iter()
        .filter(|w| w.resource == "services" && w.subresource == "status")
        .collect()
}

/// Creates LoadBalancer Services `{prefix}-0` … `{prefix}-{n-1}` in `default`.
pub fn create_services(server: &ApiServer, prefix: &str, n: usize) {
    for i in 0..n {
        create_service(server, &format!("{prefix}-{i}"), json!({}));
    }
}

/// Waits until every one of those Services has one IP, and returns them in order.
pub async fn wait_assigned(
    server: &ApiServer,
    prefix: &str,
    n: usize,
    what: &str,
) -> Vec<Vec<String>> {
    eventually_async(what, Duration::from_secs(60), || {
        let all: Vec<Vec<String>> = (0..n)
            .map(|i| ingress(server, "default", &format!("{prefix}-{i}")))
            .collect();
        let waiting = all.iter().filter(|ips| ips.len() != 1).count();
        if waiting == 0 {
            Ok(all)
        } else {
            Err(format!("{waiting} of {n} Services without exactly one IP"))
        }
    })
    .await
}

/// Asserts that `count` stays put for `window`, polling so a change fails at once. A quiet
/// window can only ever be sampled: callers first wait for everything they expect to land, so
/// what this catches is extra work, not work still in flight.
pub async fn assert_stays_quiet(what: &str, window: Duration, count: impl Fn() -> usize) {
    let settled = count();
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        let now = count();
        assert_eq!(
            now, settled,
            "{what}: {settled} before a quiet window, then {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
