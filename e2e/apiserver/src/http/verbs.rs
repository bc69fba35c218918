//! The verbs on resource URLs: list (or watch), get, create, update, patch, delete and delete a
//! collection, each turning one request into one store call and its answer.

use std::collections::HashMap;

use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::negotiation::{Representation, parse_body};
use super::{Call, json_response, watch};
use crate::error::{ApiError, ApiResult};
use crate::patch::PatchKind;
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelQuery, selectable_fields};
use crate::store::{Deleted, ListOptions, PatchRequest};
use crate::table;

pub(super) fn dispatch(call: &Call<'_>, method: &Method) -> ApiResult<Response> {
    match (method.clone(), call.target.name.as_deref()) {
        (Method::GET, None) => list(call),
        (Method::GET, Some(name)) => get(call, name),
        (Method::POST, None) => create(call),
        (Method::PUT, Some(name)) => update(call, name),
        (Method::PATCH, Some(name)) => patch(call, name),
        (Method::DELETE, Some(name)) => delete(call, name),
        (Method::DELETE, None) => delete_collection(call),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

fn list(call: &Call<'_>) -> ApiResult<Response> {
    let rt = &call.target.rt;
    let options = list_options(rt, call.params)?;
    let namespace = call.target.namespace.as_deref();
    if call
        .params
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1")
    {
        return Ok(watch::watch(call.app, rt, namespace, options, call.params));
    }
    let page = call.app.store.list(rt, namespace, &options)?;
    if call.representation == Representation::Table {
        return Ok(json_response(
            StatusCode::OK,
            &table::table(rt, &page.items, page.rv),
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

fn get(call: &Call<'_>, name: &str) -> ApiResult<Response> {
    let store = &call.app.store;
    let rt = &call.target.rt;
    let object = store.get(rt, &call.ns, name)?;
    if call.representation == Representation::Table {
        let rv = store.current_rv();
        let table = table::table(rt, std::slice::from_ref(&object), rv);
        return Ok(json_response(StatusCode::OK, &table));
    }
    Ok(json_response(StatusCode::OK, &object))
}

fn create(call: &Call<'_>) -> ApiResult<Response> {
    let rt = &call.target.rt;
    let object = parse_body(call.body)?;
    check_kind(rt, &object)?;
    let created = call.app.store.create(rt, &call.ns, object, &call.manager)?;
    Ok(json_response(StatusCode::CREATED, &created))
}

fn update(call: &Call<'_>, name: &str) -> ApiResult<Response> {
    let rt = &call.target.rt;
    let object = parse_body(call.body)?;
    check_kind(rt, &object)?;
    let sub = call.target.subresource;
    let updated = call
        .app
        .store
        .update(rt, &call.ns, name, object, sub, &call.manager)?;
    Ok(json_response(StatusCode::OK, &updated))
}

fn patch(call: &Call<'_>, name: &str) -> ApiResult<Response> {
    let content_type = call
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = PatchKind::from_content_type(content_type)?;
    let body = parse_body(call.body)?;
    if kind == PatchKind::Apply && !call.params.contains_key("fieldManager") {
        return Err(ApiError::BadRequest(
            "PATCH /apply requires a fieldManager query parameter".into(),
        ));
    }
    let request = PatchRequest {
        kind,
        body: &body,
        force: call.params.get("force").is_some_and(|f| f == "true"),
    };
    let (rt, sub) = (&call.target.rt, call.target.subresource);
    let patched = call
        .app
        .store
        .patch(rt, &call.ns, name, request, sub, &call.manager)?;
    Ok(json_response(StatusCode::OK, &patched))
}

fn delete(call: &Call<'_>, name: &str) -> ApiResult<Response> {
    let options = parse_body(call.body)?;
    let policy = options["propagationPolicy"]
        .as_str()
        .or(call.params.get("propagationPolicy").map(String::as_str))
        .unwrap_or("Background");
    let precondition = options["preconditions"]["resourceVersion"].as_str();
    let rt = &call.target.rt;
    match call
        .app
        .store
        .delete(rt, &call.ns, name, policy == "Orphan", precondition)?
    {
        Deleted::Gone(object) => Ok(json_response(StatusCode::OK, &object)),
        Deleted::Pending(object) => Ok(json_response(StatusCode::ACCEPTED, &object)),
    }
}

fn delete_collection(call: &Call<'_>) -> ApiResult<Response> {
    let store = &call.app.store;
    let rt = &call.target.rt;
    let options = list_options(rt, call.params)?;
    let page = store.list(rt, call.target.namespace.as_deref(), &options)?;
    for item in &page.items {
        let item_ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
        let item_name = item["metadata"]["name"].as_str().unwrap_or_default();
        // Already gone between list and delete is fine for a collection delete.
        let _ = store.delete(rt, item_ns, item_name, false, None);
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": page.items}),
    ))
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
        labels: LabelQuery::parse(params.get("labelSelector").map_or("", String::as_str))?,
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
