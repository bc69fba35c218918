//! The HTTP face of the server: kube-apiserver's URL layout, the verbs, and errors as `Status`
//! bodies. Discovery, target parsing, content negotiation, the verbs and watch streams each have
//! their own module; this one wires them into a router and keeps the audit of writes.

mod discovery;
mod negotiation;
mod target;
mod verbs;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use negotiation::Representation;
use target::{Addressed, Target};

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
        .route("/version", get(discovery::version))
        .route("/openapi/v3", get(discovery::openapi_v3_index))
        .route("/openapi/v3/{*gv}", get(discovery::openapi_v3_group))
        .route("/api", get(discovery::core_versions))
        .route("/apis", get(discovery::group_list))
        .route("/api/{*rest}", any(handle))
        .route("/apis/{*rest}", any(handle))
        // Only the routes above: health probes answer plain text to anyone.
        .layer(axum::middleware::from_fn(negotiation::require_json))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
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

/// One request to a resource URL, as the verb handlers see it.
struct Call<'a> {
    app: &'a App,
    target: Target,
    /// The target's namespace, empty for cluster-scoped objects and all-namespace lists.
    ns: String,
    manager: String,
    headers: &'a HeaderMap,
    params: &'a HashMap<String, String>,
    body: &'a Bytes,
    representation: Representation,
}

async fn handle(
    State(app): State<App>,
    Extension(representation): Extension<Representation>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let target = match target::parse_target(&app.store, path) {
        Ok(Addressed::Objects(t)) => t,
        Ok(Addressed::Discovery(list)) if method == Method::GET => {
            return json_response(StatusCode::OK, &list);
        }
        Ok(Addressed::Discovery(_)) => return error_response(&ApiError::MethodNotAllowed),
        Err(e) => return error_response(&e),
    };
    match check_request(&method, path, &target, &params) {
        Ok(()) => {}
        Err(e) => return error_response(&e),
    }
    let manager = params
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| user_agent_manager(&headers));
    let call = Call {
        app: &app,
        ns: target.namespace.clone().unwrap_or_default(),
        target,
        manager,
        headers: &headers,
        params: &params,
        body: &body,
        representation,
    };
    if method != Method::GET {
        audit(&call, &method);
    }
    verbs::dispatch(&call, &method).unwrap_or_else(|e| error_response(&e))
}

/// Refusals that do not depend on the verb: dry runs, and a namespace where the type has none
/// (or none where it needs one).
fn check_request(
    method: &Method,
    path: &str,
    target: &Target,
    params: &HashMap<String, String>,
) -> ApiResult<()> {
    if params.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::BadRequest(
            "dryRun is not supported by the ferrolb e2e API server".into(),
        ));
    }
    let rt = &target.rt;
    // Listing a namespaced type across all namespaces is the one request without a namespace.
    let all_namespaces_list = rt.namespaced && target.name.is_none() && method == Method::GET;
    if rt.namespaced != target.namespace.is_some()
        && (target.name.is_some() || method != Method::GET)
        && !all_namespaces_list
    {
        return Err(target::not_found_path(path));
    }
    Ok(())
}

fn audit(call: &Call<'_>, method: &Method) {
    let record = WriteRecord {
        at: Instant::now(),
        listener: call.app.listener,
        manager: call.manager.clone(),
        method: method.to_string(),
        resource: call.target.rt.qualified(),
        namespace: call.ns.clone(),
        name: call.target.name.clone().unwrap_or_default(),
        subresource: call.target.subresource.name(),
    };
    call.app
        .audit
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(record);
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
