//! Shared set-up for tests that run ferrolb against the test API server.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use test_apiserver::{ApiServer, ServerConfig, StoreConfig, kubeconfig_for};

/// A kube client for a server URL.
pub async fn client_for(url: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_for(url)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
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
    let ns = server.store().resource("", "v1", "namespaces").unwrap();
    server
        .store()
        .create(
            &ns,
            "",
            json!({"metadata": {"name": "ferrolb-system"}}),
            "test",
        )
        .unwrap();
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

/// An IPv6 single-stack LoadBalancer Service without node ports.
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

pub fn pool(name: &str, addresses: &[&str]) -> Value {
    json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
           "metadata": {"name": name}, "spec": {"addresses": addresses}})
}

/// A controller running in this process against `url`; dropped = stopped.
pub struct Controller {
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    pub async fn start(url: &str) -> Self {
        let client = client_for(url).await;
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(ferrolb_controller::metrics::Metrics::new(&mut registry));
        let config = ferrolb_controller::runtime::RuntimeConfig {
            namespace: "ferrolb-system".into(),
            lb_class: None,
            instance: Some("test".into()),
        };
        let task = tokio::spawn(async move {
            let _ = ferrolb_controller::runtime::run(
                client,
                config,
                metrics,
                Arc::new(AtomicBool::new(false)),
            )
            .await;
        });
        Self { task }
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

/// Polls `check` until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The ingress IPs of a Service in the store.
pub fn ingress(server: &ApiServer, ns: &str, name: &str) -> Vec<String> {
    let rt = server.store().resource("", "v1", "services").unwrap();
    let Ok(svc) = server.store().get(&rt, ns, name) else {
        return Vec::new();
    };
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

/// Status writes the controller made to Services.
pub fn service_status_writes(server: &ApiServer) -> Vec<test_apiserver::WriteRecord> {
    server
        .writes()
        .into_iter()
        .filter(|w| {
            w.manager == "ferrolb-controller"
                && w.resource == "services"
                && w.subresource == "status"
        })
        .collect()
}

/// Creates LoadBalancer Services `{prefix}-0` … `{prefix}-{n-1}` in `default`.
pub fn create_services(server: &ApiServer, prefix: &str, n: usize) {
    for i in 0..n {
        create(
            server,
            "",
            "v1",
            "services",
            "default",
            lb_service(&format!("{prefix}-{i}"), json!({})),
        );
    }
}

/// Waits until every one of those Services has one IP, and returns them in order.
pub async fn wait_assigned(
    server: &ApiServer,
    prefix: &str,
    n: usize,
    what: &str,
) -> Vec<Vec<String>> {
    eventually(Duration::from_secs(60), what, || {
        let all: Vec<Vec<String>> = (0..n)
            .map(|i| ingress(server, "default", &format!("{prefix}-{i}")))
            .collect();
        all.iter().all(|ips| ips.len() == 1).then_some(all)
    })
    .await
}
