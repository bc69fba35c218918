//! The runtime against a mocked API (`tower_test`): every request the controller makes is
//! recorded and checked, so a missing or an extra call fails the test.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ferrolb_controller::metrics::Metrics;
use ferrolb_controller::runtime::{RuntimeConfig, run};
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::{Value, json};

type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

fn once(value: &Value) -> Body {
    let bytes = Bytes::from(value.to_string());
    StreamBody::new(futures::stream::once(async move { Ok(Frame::data(bytes)) }).boxed())
}

/// A watch that stays open and quiet.
fn quiet() -> Body {
    StreamBody::new(futures::stream::pending().boxed())
}

#[derive(Debug, Clone)]
struct Write {
    method: String,
    path: String,
    body: Value,
}

fn list(kind: &str, api_version: &str, items: &[Value]) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Serves the controller's lists and watches from fixtures and records every write.
async fn run_controller(
    services: Vec<Value>,
    pools: Vec<Value>,
    quiet_for: Duration,
) -> Vec<Write> {
    let (service, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let writes = Arc::new(Mutex::new(Vec::new()));
    let recorded = writes.clone();
    let server = tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let body: Value =
                serde_json::from_slice(&body.collect_bytes().await.unwrap()).unwrap_or(Value::Null);
            let response = if parts.method == http::Method::GET {
                if query.contains("watch=true") {
                    quiet()
                } else if path == "/api/v1/services" {
                    once(&list("Service", "v1", &services))
                } else if path.ends_with("/ipaddresspools") {
                    once(&list("IPAddressPool", "ferrolb.io/v1beta1", &pools))
                } else if path == "/api/v1/namespaces" {
                    once(&list(
                        "Namespace",
                        "v1",
                        &[json!({"metadata": {"name": "default"}})],
                    ))
                } else {
                    panic!("unexpected GET {path}?{query}");
                }
            } else {
                recorded.lock().unwrap().push(Write {
                    method: parts.method.to_string(),
                    path: path.clone(),
                    body: body.clone(),
                });
                // Echo something of the right kind back.
                let echo = if path.contains("/services/") {
                    services[0].clone()
                } else if path.contains("/ipaddresspools/") {
                    pools[0].clone()
                } else {
                    body
                };
                once(&echo)
            };
            send.send_response(Response::builder().status(200).body(response).unwrap());
        }
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let config = RuntimeConfig {
        namespace: "ferrolb-system".into(),
        lb_class: None,
        instance: Some("test".into()),
    };
    let controller = tokio::spawn(run(
        client,
        config,
        metrics,
        Arc::new(AtomicBool::new(false)),
    ));
    tokio::time::sleep(quiet_for).await;
    controller.abort();
    server.abort();

    writes.lock().unwrap().clone()
}

fn pool(status: Value) -> Value {
    json!({
        "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "lan", "namespace": "ferrolb-system", "uid": "pool-uid", "generation": 1,
                     "creationTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["ferrolb.io/pool-protection"]},
        "spec": {"addresses": ["192.0.2.0/29"]},
        "status": status,
    })
}

fn ready_status(assigned: i64) -> Value {
    json!({
        "assignedIPv4": assigned, "assignedIPv6": 0, "availableIPv4": 8 - assigned, "availableIPv6": 0,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Accepted", "observedGeneration": 1,
                        "message": "addresses are handed out from this pool", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    })
}

fn service(extra: Value) -> Value {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "resourceVersion": "1"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
    });
    merge(&mut v, &extra);
    v
}

fn merge(a: &mut Value, b: &Value) {
    if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
        for (k, v) in b {
            match a.get_mut(k) {
                Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                _ => {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

const SETTLE: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn nothing_is_written_when_nothing_changed() {
    let held = service(json!({
        "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.0", "ipMode": "VIP"}]}},
    }));
    let writes = run_controller(vec![held], vec![pool(ready_status(1))], SETTLE).await;
    assert!(writes.is_empty(), "unexpected writes: {writes:#?}");
}

#[tokio::test]
async fn a_new_allocation_is_one_status_patch_one_event_and_the_pool_count() {
    let writes = run_controller(
        vec![service(json!({}))],
        vec![pool(ready_status(0))],
        SETTLE,
    )
    .await;
    let mut summary: Vec<(String, String)> = writes
        .iter()
        .map(|w| (w.method.clone(), w.path.clone()))
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            (
                "PATCH".to_owned(),
                "/api/v1/namespaces/default/services/web/status".to_owned()
            ),
            (
                "PATCH".to_owned(),
                "/apis/ferrolb.io/v1beta1/namespaces/ferrolb-system/ipaddresspools/lan/status"
                    .to_owned()
            ),
            (
                "POST".to_owned(),
                "/apis/events.k8s.io/v1/namespaces/default/events".to_owned()
            ),
        ],
        "{writes:#?}"
    );
    let status = writes
        .iter()
        .find(|w| w.path.ends_with("services/web/status"))
        .unwrap();
    assert_eq!(
        status.body["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "192.0.2.0", "ipMode": "VIP"}])
    );
    assert_eq!(
        status.body["metadata"]["annotations"]["ferrolb.io/ip-allocated-from-pool"],
        "lan"
    );
    let event = writes.iter().find(|w| w.method == "POST").unwrap();
    assert_eq!(event.body["reason"], "IPAllocated");
    assert_eq!(event.body["regarding"]["name"], "web");
    let pool_status = writes
        .iter()
        .find(|w| w.path.contains("ipaddresspools"))
        .unwrap();
    assert_eq!(pool_status.body["status"]["assignedIPv4"], 1);
}

#[tokio::test]
async fn a_service_of_another_class_is_never_written() {
    let other = service(json!({
        "metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "192.0.2.3", "ferrolb.io/address-pool": "lan"}},
        "spec": {"loadBalancerClass": "example.com/other-lb"},
    }));
    let writes = run_controller(vec![other], vec![pool(ready_status(0))], SETTLE).await;
    assert!(writes.is_empty(), "unexpected writes: {writes:#?}");
}

#[tokio::test]
async fn a_pool_without_the_finalizer_gets_it() {
    let mut p = pool(ready_status(0));
    p["metadata"]["finalizers"] = json!([]);
    let writes = run_controller(vec![], vec![p], SETTLE).await;
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(
        writes[0].body["metadata"]["finalizers"],
        json!(["ferrolb.io/pool-protection"])
    );
}
