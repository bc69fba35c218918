//! The HTTP face of the server: kube-apiserver's URL layout, discovery documents, the verbs, watch
//! streams, and errors as `Status` bodies. Paths are parsed by hand because `namespaces/{name}/…`
//! is ambiguous to a router (a namespace's subresource or a namespaced collection).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::error::{ApiError, ApiResult};
use super::patch::PatchKind;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector, selectable_fields};
use super::store::{Deleted, EventType, ListOptions, PatchRequest, Store, Subresource, WatchEvent};
use super::table;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct App {
    /// The object store.
    pub store: Arc<Store>,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Which listener this router serves (tests give each client its own).
    pub listener: usize,
    /// Every write request, for tests that count who wrote what.
    pub audit: Arc<Mutex<Vec<WriteRecord>>>,
}

/// One write request as it arrived.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// When it arrived.
    pub at: Instant,
    /// The listener it came through.
    pub listener: usize,
    /// `?fieldManager=` or the client's user agent.
    pub manager: String,
    /// HTTP method.
    pub method: String,
    /// `plural.group` of the target.
    pub resource: String,
    /// Namespace of the target.
    pub namespace: String,
    /// Name of the target (empty for creates).
    pub name: String,
    /// `status` for the status subresource, else empty.
    pub subresource: &'static str,
}

/// The router serving the whole API.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v3/{*gv}", get(openapi_v3_group))
        .route("/api", get(core_versions))
        .route("/apis", get(group_list))
        .route("/api/{*rest}", any(handle))
        .route("/apis/{*rest}", any(handle))
        .with_state(app)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.to_status())
}

async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-ferrolb-e2e",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "n/a", "compiler": "n/a", "platform": "linux/amd64",
        }),
    )
}

/// kubectl validates manifests against the OpenAPI v3 document of their group version. Each group
/// version is published with no schemas, which kubectl treats as "nothing to check client-side":
/// the server's own validation still applies.
async fn openapi_v3_index(State(app): State<App>) -> Response {
    let mut paths = serde_json::Map::new();
    for rt in app.store.resources() {
        let path = if rt.group.is_empty() {
            format!("api/{}", rt.version)
        } else {
            format!("apis/{}/{}", rt.group, rt.version)
        };
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}")}),
        );
    }
    json_response(StatusCode::OK, &json!({"paths": paths}))
}

async fn openapi_v3_group(State(app): State<App>, uri: Uri) -> Response {
    let gv = uri.path().trim_start_matches("/openapi/v3/");
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for rt in app.store.resources() {
        let path = if rt.group.is_empty() {
            format!("api/{}", rt.version)
        } else {
            format!("apis/{}/{}", rt.group, rt.version)
        };
        if path != gv {
            continue;
        }
        // Custom kinds publish their CRD schema; built-in kinds a permissive one, so kubectl's
        // client-side check passes and the server's own validation decides.
        let mut schema = match &rt.admission {
            super::resources::Admission::Schema(s) => s.openapi().clone(),
            super::resources::Admission::Typed(_) => {
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
            }
        };
        if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            props.insert(
                "metadata".into(),
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        }
        schema["x-kubernetes-group-version-kind"] =
            json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
        let id = format!(
            "{}.{}.{}",
            if rt.group.is_empty() {
                "core"
            } else {
                &rt.group
            },
            rt.version,
            rt.kind
        );
        schemas.insert(id, schema);
        // The PATCH operation with a fieldValidation parameter tells kubectl that this server
        // validates fields itself (`?fieldValidation=Strict`), as kube-apiserver does.
        let ns = if rt.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        paths.insert(format!("/{path}/{ns}{}/{{name}}", rt.plural), json!({
            "patch": {
                "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
                "responses": {},
            },
        }));
    }
    json_response(
        StatusCode::OK,
        &json!({
            "openapi": "3.0.0", "info": {"title": "ferrolb-e2e", "version": "v1.34.0"}, "paths": paths, "components": {"schemas": schemas},
        }),
    )
}

async fn core_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
    )
}

async fn group_list(State(app): State<App>) -> Response {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for rt in app.store.resources().iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == rt.group) {
            Some((_, versions)) if !versions.contains(&rt.version) => {
                versions.push(rt.version.clone())
            }
            Some(_) => {}
            None => groups.push((rt.group.clone(), vec![rt.version.clone()])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, versions)| {
            let vs: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
    let types: Vec<Arc<ResourceType>> = store
        .resources()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for rt in &types {
        resources.push(rt.api_resource());
        if rt.status.is_some() {
            resources.push(json!({"name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced, "kind": rt.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// A request's target after path parsing.
struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Subresource,
}

fn parse_target(store: &Store, path: &str) -> ApiResult<Result<Target, Value>> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found_path(path)),
    };
    let lookup = |plural: &str| {
        store
            .resource(group, version, plural)
            .ok_or_else(|| not_found_path(path))
    };
    let sub = |s: &str| match s {
        "status" => Ok(Subresource::Status),
        _ => Err(not_found_path(path)),
    };
    let target = |rt, namespace: Option<&str>, name: Option<&str>, subresource| Target {
        rt,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource,
    };
    Ok(Ok(match rest {
        [] => {
            return Ok(Err(
                resource_list(store, group, version).ok_or_else(|| not_found_path(path))?
            ));
        }
        [plural] => target(lookup(plural)?, None, None, Subresource::Main),
        ["namespaces", ns, plural] if *plural != "status" && *plural != "finalize" => {
            target(lookup(plural)?, Some(ns), None, Subresource::Main)
        }
        ["namespaces", ns, plural, name] => {
            target(lookup(plural)?, Some(ns), Some(name), Subresource::Main)
        }
        ["namespaces", ns, plural, name, s] => {
            target(lookup(plural)?, Some(ns), Some(name), sub(s)?)
        }
        [plural, name] => target(lookup(plural)?, None, Some(name), Subresource::Main),
        [plural, name, s] => target(lookup(plural)?, None, Some(name), sub(s)?),
        _ => return Err(not_found_path(path)),
    }))
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::NotFound {
        resource: "the server could not find the requested resource".into(),
        name: path.to_owned(),
    }
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return Err(ApiError::UnsupportedMediaType(content_type.to_owned()));
    }
    serde_json::from_slice(body)
        .or_else(|_| {
            std::str::from_utf8(body)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_saphyr::from_str(text).map_err(|e| e.to_string()))
        })
        .map_err(|e| {
            ApiError::BadRequest(format!("the request body is not valid JSON or YAML: {e}"))
        })
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    match handle_inner(&app, &method, uri.path(), &headers, &params, &body).await {
        Ok(response) => response,
        Err(e) => error_response(&e),
    }
}

async fn handle_inner(
    app: &App,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    body: &Bytes,
) -> ApiResult<Response> {
    let target = match parse_target(&app.store, path)? {
        Ok(t) => t,
        Err(discovery) if method == Method::GET => {
            return Ok(json_response(StatusCode::OK, &discovery));
        }
        Err(_) => return Err(ApiError::MethodNotAllowed),
    };
    if params.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::BadRequest(
            "dryRun is not supported by the ferrolb e2e API server".into(),
        ));
    }
    let store = &app.store;
    let rt = target.rt.clone();
    if rt.namespaced != target.namespace.is_some()
        && (target.name.is_some() || method != Method::GET)
        && !(rt.namespaced && target.name.is_none() && method == Method::GET)
    {
        return Err(not_found_path(path));
    }
    let ns = target.namespace.clone().unwrap_or_default();
    let manager = params
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| user_agent_manager(headers));
    if *method != Method::GET {
        let record = WriteRecord {
            at: Instant::now(),
            listener: app.listener,
            manager: manager.clone(),
            method: method.to_string(),
            resource: rt.qualified(),
            namespace: ns.clone(),
            name: target.name.clone().unwrap_or_default(),
            subresource: if target.subresource == Subresource::Status {
                "status"
            } else {
                ""
            },
        };
        app.audit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }
    match (method.clone(), target.name.clone()) {
        (Method::GET, None) => {
            let options = list_options(&rt, params)?;
            if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return Ok(watch(
                    app,
                    &rt,
                    target.namespace.as_deref(),
                    options,
                    params,
                ));
            }
            let page = store.list(&rt, target.namespace.as_deref(), &options)?;
            if wants_table(headers) {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(&rt, &page.items, page.rv),
                ));
            }
            let mut metadata = json!({"resourceVersion": page.rv.to_string()});
            if let Some(token) = &page.continue_token {
                metadata["continue"] = json!(token);
            }
            if let Some(remaining) = page.remaining {
                metadata["remainingItemCount"] = json!(remaining);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
                    "metadata": metadata, "items": page.items,
                }),
            ))
        }
        (Method::GET, Some(name)) => {
            let object = store.get(&rt, &ns, &name)?;
            if wants_table(headers) {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(&rt, std::slice::from_ref(&object), store.current_rv()),
                ));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        (Method::POST, None) => {
            let object = parse_body(headers, body)?;
            check_kind(&rt, &object)?;
            let created = store.create(&rt, &ns, object, &manager)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, Some(name)) => {
            let object = parse_body(headers, body)?;
            check_kind(&rt, &object)?;
            let updated = store.update(&rt, &ns, &name, object, target.subresource, &manager)?;
            Ok(json_response(StatusCode::OK, &updated))
        }
        (Method::PATCH, Some(name)) => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let kind = PatchKind::from_content_type(content_type)?;
            let patch = parse_body(headers, body)?;
            if kind == PatchKind::Apply && !params.contains_key("fieldManager") {
                return Err(ApiError::BadRequest(
                    "PATCH /apply requires a fieldManager query parameter".into(),
                ));
            }
            let force = params.get("force").is_some_and(|f| f == "true");
            let request = PatchRequest {
                kind,
                body: &patch,
                force,
            };
            let patched = store.patch(&rt, &ns, &name, request, target.subresource, &manager)?;
            Ok(json_response(StatusCode::OK, &patched))
        }
        (Method::DELETE, Some(name)) => {
            let options = parse_body(headers, body)?;
            let policy = options["propagationPolicy"]
                .as_str()
                .or(params.get("propagationPolicy").map(String::as_str))
                .unwrap_or("Background");
            let precondition = options["preconditions"]["resourceVersion"].as_str();
            match store.delete(&rt, &ns, &name, policy == "Orphan", precondition)? {
                Deleted::Gone(object) => Ok(json_response(StatusCode::OK, &object)),
                Deleted::Pending(object) => Ok(json_response(StatusCode::ACCEPTED, &object)),
            }
        }
        (Method::DELETE, None) => {
            let options = list_options(&rt, params)?;
            let page = store.list(&rt, target.namespace.as_deref(), &options)?;
            for item in &page.items {
                let item_ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
                let item_name = item["metadata"]["name"].as_str().unwrap_or_default();
                // Already gone between list and delete is fine for a collection delete.
                let _ = store.delete(&rt, item_ns, item_name, false, None);
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": page.items}),
            ))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn user_agent_manager(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

fn check_kind(rt: &ResourceType, object: &Value) -> ApiResult<()> {
    let kind = object["kind"].as_str().unwrap_or(&rt.kind);
    let api_version = object["apiVersion"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| rt.api_version());
    if kind != rt.kind || api_version.split('/').next() != rt.api_version().split('/').next() {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

fn list_options(rt: &ResourceType, params: &HashMap<String, String>) -> ApiResult<ListOptions> {
    Ok(ListOptions {
        labels: LabelSelector::parse(params.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(
            params.get("fieldSelector").map_or("", String::as_str),
            selectable_fields(&rt.group, &rt.kind),
        )?,
        limit: params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0),
        continue_token: params.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn gone_line(e: &ApiError) -> Bytes {
    event_line("ERROR", &e.to_status())
}

fn bookmark(rt: &ResourceType, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": metadata}),
    )
}

/// What a watcher with these filters sees of one change: selectors are applied to the object
/// before and after, so an object moving out of the selection is seen as deleted.
fn visible(
    rt: &ResourceType,
    event: &WatchEvent,
    ns: Option<&str>,
    options: &ListOptions,
) -> Option<(&'static str, Value)> {
    let in_scope = |o: &Value| {
        ns.is_none_or(|n| o["metadata"]["namespace"].as_str() == Some(n))
            && options.labels.matches(o)
            && options.fields.matches(o)
    };
    // Events are stored in the shape of the type that owns the storage; show this type's.
    let object = rt.present(&event.object);
    let now = in_scope(&object);
    let before = event
        .previous
        .as_ref()
        .is_some_and(|p| in_scope(&rt.present(p)));
    let kind = match event.event_type {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => (now || before).then_some("DELETED"),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    };
    kind.map(|k| (k, object))
}

fn watch(
    app: &App,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    options: ListOptions,
    params: &HashMap<String, String>,
) -> Response {
    let store = app.store.clone();
    let rt = rt.clone();
    let ns = ns.map(str::to_owned);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let send_initial = params.get("sendInitialEvents").is_some_and(|b| b == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let requested_rv = params
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0")
        .and_then(|r| r.parse::<u64>().ok());
    let bookmark_interval = app.bookmark_interval;
    let stream = async_stream_lines(move |tx| async move {
        // "Start at most recent" (no rv, or rv 0, or sendInitialEvents) first replays the current
        // state as ADDED events, as kube-apiserver does.
        let synthetic = requested_rv.is_none() || send_initial;
        let (initial, mut receiver, mut last_rv) = if synthetic {
            let snapshot = store.list(
                &rt,
                ns.as_deref(),
                &ListOptions {
                    limit: 0,
                    continue_token: None,
                    ..options.clone()
                },
            );
            let page = match snapshot {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(gone_line(&e)).await;
                    return;
                }
            };
            match store.subscribe(&rt.storage_key(), Some(page.rv)) {
                Ok((replay, receiver, _)) => {
                    let mut lines: Vec<Bytes> =
                        page.items.iter().map(|o| event_line("ADDED", o)).collect();
                    let mut last = page.rv;
                    for e in replay {
                        if let Some((t, o)) = visible(&rt, &e, ns.as_deref(), &options) {
                            lines.push(event_line(t, &o));
                        }
                        last = e.rv;
                    }
                    if send_initial {
                        lines.push(bookmark(&rt, last, true));
                    }
                    (lines, receiver, last)
                }
                Err(e) => {
                    let _ = tx.send(gone_line(&e)).await;
                    return;
                }
            }
        } else {
            match store.subscribe(&rt.storage_key(), requested_rv) {
                Ok((replay, receiver, current)) => {
                    let mut last = requested_rv.unwrap_or(current);
                    let mut lines = Vec::new();
                    for e in replay {
                        if let Some((t, o)) = visible(&rt, &e, ns.as_deref(), &options) {
                            lines.push(event_line(t, &o));
                        }
                        last = e.rv;
                    }
                    (lines, receiver, last)
                }
                Err(e) => {
                    let _ = tx.send(gone_line(&e)).await;
                    return;
                }
            }
        };
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(bookmark_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(bookmark(&rt, last_rv, false)).await.is_err() { return; }
                }
                received = receiver.recv() => match received {
                    Ok(event) => {
                        if event.rv <= last_rv || event.key != rt.storage_key() { continue; }
                        last_rv = event.rv;
                        if let Some((t, o)) = visible(&rt, &event, ns.as_deref(), &options) {
                            let mut o = o;
                            o["apiVersion"] = json!(rt.api_version());
                            if tx.send(event_line(t, &o)).await.is_err() { return; }
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow a reader: make it re-list, as the real server does.
                        let _ = tx.send(gone_line(&ApiError::Gone { requested: last_rv, oldest: store.current_rv() })).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::TRANSFER_ENCODING, "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Runs a producer task and exposes what it sends as a body stream; the task ends when the client
/// goes away (its sends fail).
fn async_stream_lines<F, Fut>(
    producer: F,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Bounded: a slow client pushes back on its own producer only.
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(producer(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok)
}
