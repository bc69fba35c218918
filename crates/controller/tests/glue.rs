//! The runtime against a mocked API (`tower_test`): lists and watches come from fixtures, Service
//! changes are pushed through the Service watch after the controller is ready, and every write
//! is recorded. Each test asserts the exact writes made, so a missing or an extra call fails,
//! and each waits for writes a working controller must make, so a stopped one fails too. A
//! panic in the mock (an unexpected request) fails the test that caused it.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
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
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a condition may take: far above what a working controller needs (milliseconds).
const WAIT: Duration = Duration::from_secs(10);
/// Longest wait between two looks at a condition no write signals (the ready flag, the mock's
/// health); a recorded write wakes the waiter at once.
const RECHECK: Duration = Duration::from_millis(20);
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const POOL_PATH: &str = "/apis/ferrolb.io/v1beta1/namespaces/ferrolb-system/ipaddresspools/lan";

type Body = StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>>;

fn once(value: &Value) -> Body {
    let bytes = Bytes::from(value.to_string());
    StreamBody::new(futures::stream::once(async move { Ok(Frame::data(bytes)) }).boxed())
}

/// A watch that stays open and quiet.
fn quiet() -> Body {
    StreamBody::new(futures::stream::pending().boxed())
}

/// A watch that sends what the test pushes, one JSON watch event per line.
fn pushed(mut events: mpsc::UnboundedReceiver<Value>) -> Body {
    let lines = futures::stream::poll_fn(move |cx| events.poll_recv(cx))
        .map(|event| Ok(Frame::data(Bytes::from(format!("{event}\n")))))
        .boxed();
    StreamBody::new(lines)
}

/// One write the controller made. Event bodies keep only what a user reads (type, reason,
/// note, object): the rest carries clocks and generated names.
#[derive(Debug, Clone, PartialEq)]
struct Write {
    method: String,
    path: String,
    body: Value,
}

fn sorted(mut writes: Vec<Write>) -> Vec<Write> {
    writes.sort_by_key(|w| (w.method.clone(), w.path.clone(), w.body.to_string()));
    writes
}

fn list(kind: &str, api_version: &str, items: &[Value]) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A controller running against the mock, and the handles a test drives it with.
struct Cluster {
    writes: Arc<Recorded>,
    service_watch: mpsc::UnboundedSender<Value>,
    ready: Arc<AtomicBool>,
    controller: JoinHandle<Result<(), ferrolb_controller::Error>>,
    server: Option<JoinHandle<()>>,
    resource_version: u64,
}

impl Cluster {
    /// Starts the controller with these objects in the cluster and waits until it is ready.
    async fn start(services: Vec<Value>, pools: Vec<Value>) -> Self {
        let (service, handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let writes = Arc::new(Recorded::default());
        let (service_watch, pushed_events) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(
            handle,
            services,
            pools,
            pushed_events,
            writes.clone(),
        ));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let config = RuntimeConfig {
            namespace: "ferrolb-system".into(),
            lb_class: None,
            instance: Some("test".into()),
            heartbeat: Default::default(),
        };
        let ready = Arc::new(AtomicBool::new(false));
        let controller = tokio::spawn(run(client, config, metrics, ready.clone()));
        let mut cluster = Self {
            writes,
            service_watch,
            ready,
            controller,
            server: Some(server),
            resource_version: 1,
        };
        cluster
            .until("the controller to be ready", |c| {
                c.ready.load(Ordering::Relaxed)
            })
            .await;
        cluster
    }

    fn writes(&self) -> Vec<Write> {
        self.writes.writes.lock().unwrap().clone()
    }

    /// Pushes a Service event (`ADDED` or `MODIFIED`) through the Service watch.
    fn push(&mut self, kind: &str, mut svc: Value) {
        self.resource_version += 1;
        svc["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.service_watch
            .send(json!({"type": kind, "object": svc}))
            .unwrap();
    }

    /// Waits until `done` holds, failing after [`WAIT`] with `what`, or at once when the mock
    /// panicked or the controller stopped.
    async fn until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.check_alive().await;
            if done(self) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}; writes so far: {:#?}",
                self.writes()
            );
            let _ = tokio::time::timeout(RECHECK, self.writes.written.notified()).await;
        }
    }

    /// Waits until at least `n` writes were made.
    async fn until_writes(&mut self, n: usize) {
        self.until(&format!("{n} writes"), |c| c.writes().len() >= n)
            .await;
    }

    async fn check_alive(&mut self) {
        if self.server.as_ref().is_some_and(JoinHandle::is_finished) {
            join_server(self.server.take()).await;
            panic!("the mock API server stopped while the controller ran");
        }
        assert!(
            !self.controller.is_finished(),
            "the controller stopped: {:?}",
            (&mut self.controller).await
        );
    }

    /// Stops the controller, joins the mock (raising its panic, if any) and returns every write.
    async fn stop(mut self) -> Vec<Write> {
        self.check_alive().await;
        self.controller.abort();
        let _ = (&mut self.controller).await;
        // The mock ends once the controller's client is dropped.
        join_server(self.server.take()).await;
        sorted(self.writes())
    }
}

async fn join_server(server: Option<JoinHandle<()>>) {
    let Some(server) = server else { return };
    match tokio::time::timeout(WAIT, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("mock API server failed: {e}"),
        Err(_) => panic!("mock API server did not stop within {WAIT:?}"),
    }
}

/// Serves lists and watches from the fixtures and records every write; panics on a request the
/// controller has no business making.
async fn serve(
    mut handle: tower_test::mock::Handle<Request<kube::client::Body>, Response<Body>>,
    services: Vec<Value>,
    pools: Vec<Value>,
    pushed_events: mpsc::UnboundedReceiver<Value>,
    writes: Arc<Recorded>,
) {
    let mut pushed_events = Some(pushed_events);
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let body: Value =
            serde_json::from_slice(&body.collect_bytes().await.unwrap()).unwrap_or(Value::Null);
        let watch = query.contains("watch=true");
        let response = match (parts.method.as_str(), path.as_str()) {
            ("GET", "/api/v1/services") if watch => match pushed_events.take() {
                Some(events) => pushed(events),
                None => panic!("the Service watch was opened twice"),
            },
            ("GET", _) if watch => quiet(),
            ("GET", "/api/v1/services") => once(&list("Service", "v1", &services)),
            ("GET", "/apis/ferrolb.io/v1beta1/namespaces/ferrolb-system/ipaddresspools") => {
                once(&list("IPAddressPool", "ferrolb.io/v1beta1", &pools))
            }
            ("GET", "/api/v1/namespaces") => once(&list(
                "Namespace",
                "v1",
                &[json!({"metadata": {"name": "default"}})],
            )),
            ("PATCH", p) if p.starts_with("/api/v1/namespaces/default/services/") => {
                let name = p.split('/').nth(6).unwrap_or_default();
                record(&writes, "PATCH", p, body);
                once(&json!({"apiVersion": "v1", "kind": "Service",
                             "metadata": {"name": name, "namespace": "default"}}))
            }
            ("PATCH", p) if p.starts_with(POOL_PATH) => {
                record(&writes, "PATCH", p, body);
                once(&pools[0])
            }
            ("POST", EVENTS_PATH) => {
                let echo = once(&body);
                let summary = json!({
                    "type": body["type"], "reason": body["reason"], "note": body["note"],
                    "regarding": body["regarding"]["name"],
                });
                record(&writes, "POST", EVENTS_PATH, summary);
                echo
            }
            (method, _) => panic!("unexpected request {method} {path}?{query}: {body}"),
        };
        send.send_response(Response::builder().status(200).body(response).unwrap());
    }
}

/// What the mock recorded, and a signal for each new write.
#[derive(Debug, Default)]
struct Recorded {
    writes: Mutex<Vec<Write>>,
    written: tokio::sync::Notify,
}

fn record(recorded: &Recorded, method: &str, path: &str, body: Value) {
    recorded.writes.lock().unwrap().push(Write {
        method: method.to_owned(),
        path: path.to_owned(),
        body,
    });
    recorded.written.notify_one();
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
        "lastValidAddresses": ["192.0.2.0/29"],
    })
}

fn service(name: &str, extra: Value) -> Value {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "resourceVersion": "1"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
    });
    merge(&mut v, &extra);
    v
}

/// A Service that holds `ip` from pool `lan`.
fn holding(name: &str, ip: &str) -> Value {
    service(
        name,
        json!({
            "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}},
        }),
    )
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

/// The status write for `name`, made on its resourceVersion `rv` (the precondition).
fn status_patch(name: &str, ip: &str, rv: &str) -> Write {
    Write {
        method: "PATCH".into(),
        path: format!("/api/v1/namespaces/default/services/{name}/status"),
        body: json!({
            "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}, "resourceVersion": rv},
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}},
        }),
    }
}

fn event(name: &str, type_: &str, reason: &str, note: &str) -> Write {
    Write {
        method: "POST".into(),
        path: EVENTS_PATH.into(),
        body: json!({"type": type_, "reason": reason, "note": note, "regarding": name}),
    }
}

fn pool_count(assigned: i64) -> Write {
    Write {
        method: "PATCH".into(),
        path: format!("{POOL_PATH}/status"),
        body: json!({ "status": ready_status(assigned) }),
    }
}

/// The writes for a Service that gets `ip` while the pool then holds `assigned` addresses.
fn allocation(name: &str, ip: &str, rv: &str, assigned: i64) -> Vec<Write> {
    vec![
        status_patch(name, ip, rv),
        event(
            name,
            "Normal",
            "IPAllocated",
            &format!("assigned IP [{ip}] from pool lan"),
        ),
        pool_count(assigned),
    ]
}

#[tokio::test]
async fn a_service_created_after_sync_gets_one_status_patch_one_event_and_the_pool_count() {
    let mut cluster = Cluster::start(vec![], vec![pool(ready_status(0))]).await;
    cluster.push("ADDED", service("web", json!({})));
    cluster.until_writes(3).await;
    assert_eq!(
        cluster.stop().await,
        sorted(allocation("web", "192.0.2.0", "2", 1))
    );
}

#[tokio::test]
async fn a_service_changed_after_sync_to_request_another_ip_moves_with_one_patch_and_a_warning() {
    let mut cluster = Cluster::start(
        vec![holding("web", "192.0.2.0")],
        vec![pool(ready_status(1))],
    )
    .await;
    let mut moved = holding("web", "192.0.2.0");
    moved["metadata"]["annotations"]["ferrolb.io/loadBalancerIPs"] = json!("192.0.2.5");
    cluster.push("MODIFIED", moved);
    cluster.until_writes(2).await;
    // The pool still holds one address: its status is unchanged and not written.
    assert_eq!(
        cluster.stop().await,
        sorted(vec![
            status_patch("web", "192.0.2.5", "2"),
            event(
                "web",
                "Warning",
                "IPReassigned",
                "IP changed from [192.0.2.0] to [192.0.2.5] (pool lan)"
            ),
        ])
    );
}

#[tokio::test]
async fn a_service_held_at_start_or_relabelled_later_costs_no_write() {
    let mut cluster = Cluster::start(
        vec![holding("web", "192.0.2.0")],
        vec![pool(ready_status(1))],
    )
    .await;
    let mut relabelled = holding("web", "192.0.2.0");
    relabelled["metadata"]["labels"] = json!({"app": "web"});
    cluster.push("MODIFIED", relabelled);
    // A Service that needs writes, after the one that needs none: once its writes are made, the
    // change before it was handled too.
    cluster.push("ADDED", service("next", json!({})));
    cluster.until_writes(3).await;
    assert_eq!(
        cluster.stop().await,
        sorted(allocation("next", "192.0.2.1", "3", 2))
    );
}

#[tokio::test]
async fn a_service_of_another_class_is_never_written() {
    let other = |name: &str| {
        service(
            name,
            json!({
                "metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "192.0.2.3", "ferrolb.io/address-pool": "lan"}},
                "spec": {"loadBalancerClass": "example.com/other-lb"},
            }),
        )
    };
    let mut cluster = Cluster::start(vec![other("other")], vec![pool(ready_status(0))]).await;
    let mut changed = other("other");
    changed["metadata"]["annotations"]["ferrolb.io/loadBalancerIPs"] = json!("192.0.2.4");
    cluster.push("MODIFIED", changed);
    cluster.push("ADDED", other("another"));
    cluster.push("ADDED", service("web", json!({})));
    cluster.until_writes(3).await;
    assert_eq!(
        cluster.stop().await,
        sorted(allocation("web", "192.0.2.0", "4", 1))
    );
}

#[tokio::test]
async fn a_pool_without_the_finalizer_gets_it() {
    let mut p = pool(ready_status(0));
    p["metadata"]["finalizers"] = json!([]);
    let mut cluster = Cluster::start(vec![], vec![p]).await;
    cluster.until_writes(1).await;
    assert_eq!(
        cluster.stop().await,
        [Write {
            method: "PATCH".into(),
            path: POOL_PATH.into(),
            body: json!({"metadata": {"finalizers": ["ferrolb.io/pool-protection"]}}),
        }]
    );
}
