//! Discovery: what a client asks before it asks for objects. `/version`, the group and resource
//! lists kube-rs and kubectl walk, and the OpenAPI v3 documents kubectl validates manifests
//! against.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::{App, json_response};
use crate::resources::{Admission, ResourceType};
use crate::store::Store;

pub(super) async fn version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-ferrolb-e2e",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "n/a", "compiler": "n/a", "platform": "linux/amd64",
        }),
    )
}

/// `api/v1` or `apis/group/version`: where a type's group version is served.
fn group_version_path(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        format!("api/{}", rt.version)
    } else {
        format!("apis/{}/{}", rt.group, rt.version)
    }
}

/// kubectl validates manifests against the OpenAPI v3 document of their group version.
pub(super) async fn openapi_v3_index(State(app): State<App>) -> Response {
    let mut paths = serde_json::Map::new();
    for rt in app.store.resources() {
        let path = group_version_path(&rt);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}")}),
        );
    }
    json_response(StatusCode::OK, &json!({"paths": paths}))
}

/// The OpenAPI v3 schema kubectl checks one kind against before sending it.
fn openapi_schema(rt: &ResourceType) -> Value {
    // Custom kinds publish their CRD schema; built-in kinds a permissive one, so kubectl's
    // client-side check passes and the server's own validation decides.
    let mut schema = match &rt.admission {
        Admission::Schema(s) => s.openapi().clone(),
        Admission::Typed(_) => {
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
    schema
}

pub(super) async fn openapi_v3_group(State(app): State<App>, uri: Uri) -> Response {
    let gv = uri.path().trim_start_matches("/openapi/v3/");
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for rt in app.store.resources() {
        let path = group_version_path(&rt);
        if path != gv {
            continue;
        }
        let group = if rt.group.is_empty() {
            "core"
        } else {
            &rt.group
        };
        schemas.insert(
            format!("{group}.{}.{}", rt.version, rt.kind),
            openapi_schema(&rt),
        );
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

pub(super) async fn core_versions() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
    )
}

pub(super) async fn group_list(State(app): State<App>) -> Response {
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

/// The APIResourceList of one group version, or None when nothing is served there.
pub(super) fn resource_list(store: &Store, group: &str, version: &str) -> Option<Value> {
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
