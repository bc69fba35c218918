//! The one fixture: a server serving the made-up `widgets.example.com` CRD, and a kube client
//! for it.

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use test_apiserver::{ApiServer, ServerConfig};

/// The CRD file the tests and the binary's `--crds` use.
pub const WIDGETS_CRD_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/widgets.crd.yaml");

pub fn widget_crds() -> Vec<Value> {
    let text = std::fs::read_to_string(WIDGETS_CRD_FILE).unwrap();
    serde_saphyr::from_multiple(&text).unwrap()
}

pub async fn client_for(server: &ApiServer) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

pub async fn start(config: ServerConfig) -> (ApiServer, Client) {
    let server = ApiServer::start(config).await.unwrap();
    server.register_crds(widget_crds()).unwrap();
    let client = client_for(&server).await;
    (server, client)
}

pub async fn server() -> (ApiServer, Client) {
    start(ServerConfig::default()).await
}

pub fn widgets(client: Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    Api::namespaced_with(
        client,
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "widgets"),
    )
}

pub fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

pub fn lb_service(name: &str) -> k8s_openapi::api::core::v1::Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80}]},
    }))
    .unwrap()
}

/// The code and reason of an API error; panics on any other error.
pub fn api_code(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A fresh directory for one test's files.
pub fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("test-apiserver-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
