//! The write path: create, update (PUT) and patch, whatever carried them. Here the server stamps
//! what it owns (uid, timestamps, generation, resourceVersion), enforces optimistic concurrency,
//! keeps main and `/status` writes to their own fields, and drops no-op writes.

use serde_json::{Value, json};

use super::objects::{
    ObjectKey, State, has_finalizers, is_terminating, meta, metadata_mut, object_key, set_rv,
    with_type,
};
use super::watch_log::{EventType, WatchEvent};
use super::{PatchRequest, Store, Subresource, admission, deletion, now};
use crate::error::{ApiError, ApiResult};
use crate::patch::{self, PatchKind, Writer};
use crate::resources::{ResourceType, StatusScope};

/// Metadata the server maintains: a write cannot change it.
const SERVER_OWNED_METADATA: [&str; 6] = [
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "namespace",
    "generation",
];

impl Store {
    /// Creates an object.
    ///
    /// # Errors
    /// `AlreadyExists`, `NotFound` (namespace), `Invalid`.
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        object: Value,
        manager: &str,
    ) -> ApiResult<Value> {
        self.create_inner(rt, ns, object, manager, false)
    }

    /// `applied`: the object comes from server-side apply, which recorded its managedFields.
    fn create_inner(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut object: Value,
        manager: &str,
        applied: bool,
    ) -> ApiResult<Value> {
        let mut state = self.lock();
        let state = &mut *state;
        let name = creatable_name(state, rt, ns, &object)?;
        let key = object_key(rt, ns, &name);
        if state.bucket(rt).contains_key(&key) {
            return Err(ApiError::AlreadyExists {
                resource: rt.qualified(),
                name,
            });
        }
        stamp_new_object(rt, ns, &name, state.rv + 1, &mut object, applied);
        let mut object = admission::admit(state, rt, object, None)?;
        if !applied {
            let writer = Writer {
                manager,
                subresource: "",
                api_version: &rt.api_version(),
                time: &now(),
            };
            patch::record_update(None, &mut object, &writer);
        }
        if rt.group == "apiextensions.k8s.io" {
            admission::register_crd(state, &mut object)?;
        }
        let rv = state.next_rv();
        set_rv(&mut object, rv);
        let stored = rt.persist(&object);
        state.bucket(rt).insert(key, stored.clone());
        state.record(
            &self.events,
            WatchEvent {
                rv,
                key: rt.storage_key(),
                event_type: EventType::Added,
                object: stored,
                previous: None,
                line: std::sync::OnceLock::new(),
            },
        );
        Ok(with_type(rt, &object))
    }

    /// Replaces an object (PUT), or its status.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` (stale resourceVersion), `Invalid`.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        object: Value,
        sub: Subresource,
        manager: &str,
    ) -> ApiResult<Value> {
        let target = WriteTarget { rt, ns, name, sub };
        self.write(&target, manager, false, |_| Ok(object))
    }

    /// Patches an object or its status.
    ///
    /// # Errors
    /// As `update`, plus `Conflict` for server-side apply conflicts. Apply to a missing object
    /// creates it.
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        request: PatchRequest<'_>,
        sub: Subresource,
        manager: &str,
    ) -> ApiResult<Value> {
        let target = WriteTarget { rt, ns, name, sub };
        let PatchRequest { kind, body, force } = request;
        if kind == PatchKind::Apply {
            return self.apply(&target, body, force, manager);
        }
        self.write(&target, manager, false, |live| {
            let mut patched = patch::apply_patch(kind, live, body)?;
            // A patch that carries a resourceVersion is a precondition; one that does not
            // applies to whatever is live.
            if body["metadata"].get("resourceVersion").is_none()
                && let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut)
            {
                m.insert(
                    "resourceVersion".into(),
                    live["metadata"]["resourceVersion"].clone(),
                );
            }
            Ok(patched)
        })
    }

    /// Server-side apply: creates a missing object, else merges by field ownership.
    fn apply(
        &self,
        target: &WriteTarget<'_>,
        body: &Value,
        force: bool,
        manager: &str,
    ) -> ApiResult<Value> {
        let WriteTarget { rt, ns, name, sub } = *target;
        if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(
                "the name of the object does not match the name on the URL".into(),
            ));
        }
        let (api_version, time) = (rt.api_version(), now());
        let writer = Writer {
            manager,
            subresource: sub.name(),
            api_version: &api_version,
            time: &time,
        };
        if self.get(rt, ns, name).is_err() {
            if sub == Subresource::Status {
                return Err(State::not_found(rt, name));
            }
            let mut created = patch::server_side_apply(None, body, &writer, force)?;
            metadata_mut(&mut created).insert("name".into(), json!(name));
            return self.create_inner(rt, ns, created, manager, true);
        }
        self.write(target, manager, true, |live| {
            patch::server_side_apply(Some(live), body, &writer, force)
        })
    }

    /// Changes a stored object: `change` turns the live object into the one written.
    /// `applied`: server-side apply already recorded managedFields.
    fn write(
        &self,
        target: &WriteTarget<'_>,
        manager: &str,
        applied: bool,
        change: impl FnOnce(&Value) -> ApiResult<Value>,
    ) -> ApiResult<Value> {
        let WriteTarget { rt, ns, name, sub } = *target;
        if sub == Subresource::Status && rt.status.is_none() {
            return Err(State::not_found(rt, name));
        }
        let mut state = self.lock();
        let state = &mut *state;
        let key: ObjectKey = object_key(rt, ns, name);
        let stored_live = state
            .bucket(rt)
            .get(&key)
            .cloned()
            .ok_or_else(|| State::not_found(rt, name))?;
        // Decisions below work on this type's shape; storage may keep another one.
        let live = rt.present(&stored_live);
        let mut new = change(&live)?;
        check_resource_version(rt, name, &live, &new)?;
        check_name(name, &mut new)?;
        let mut new = scope_write(rt, &live, new, sub);
        keep_server_owned_fields(rt, &live, &mut new);
        if !applied {
            let writer = Writer {
                manager,
                subresource: sub.name(),
                api_version: &rt.api_version(),
                time: &now(),
            };
            patch::record_update(Some(&live), &mut new, &writer);
        }
        let mut new = admission::admit(state, rt, new, Some(&live))?;
        if spec_part(&new) != spec_part(&live) {
            let generation = live["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            metadata_mut(&mut new).insert("generation".into(), json!(generation));
        }
        if is_terminating(&live) && !has_finalizers(&new) {
            // The last finalizer was removed: the object goes away now.
            let gone = deletion::remove_released(state, &self.events, rt, key, stored_live, new);
            return Ok(with_type(rt, &gone));
        }
        if comparable(&new) == comparable(&live) {
            // kube-apiserver does not bump resourceVersion or notify watchers for no-op writes.
            return Ok(with_type(rt, &live));
        }
        if rt.group == "apiextensions.k8s.io" {
            admission::register_crd(state, &mut new)?;
        }
        let stored = state.replace(&self.events, rt, key, stored_live, rt.persist(&new));
        metadata_mut(&mut new).insert(
            "resourceVersion".into(),
            stored["metadata"]["resourceVersion"].clone(),
        );
        Ok(with_type(rt, &new))
    }
}

/// Which object a write addresses.
#[derive(Debug, Clone, Copy)]
struct WriteTarget<'a> {
    rt: &'a ResourceType,
    ns: &'a str,
    name: &'a str,
    sub: Subresource,
}

/// The name a new object will have (generated from `generateName` if needed), after checking it
/// and the namespace it goes into.
fn creatable_name(state: &State, rt: &ResourceType, ns: &str, object: &Value) -> ApiResult<String> {
    if rt.namespaced && !state.namespace_exists(ns) {
        return Err(ApiError::NotFound {
            resource: "namespaces".into(),
            name: ns.to_owned(),
        });
    }
    let body_ns = meta(object, "namespace");
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let mut name = meta(object, "name");
    if name.is_empty() {
        let prefix = meta(object, "generateName");
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                &rt.kind,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        name = format!("{prefix}{}", random_suffix());
    }
    if !valid_name(&name) {
        return Err(ApiError::invalid(
            &rt.kind,
            &name,
            "metadata.name",
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
            ),
        ));
    }
    Ok(name)
}

/// What the server sets on a new object before admission: type, identity, timestamps,
/// generation 1, and the status a new object of its kind starts with.
fn stamp_new_object(
    rt: &ResourceType,
    ns: &str,
    name: &str,
    rv: u64,
    object: &mut Value,
    applied: bool,
) {
    object["apiVersion"] = json!(rt.api_version());
    object["kind"] = json!(rt.kind);
    let m = metadata_mut(object);
    m.insert("name".into(), json!(name));
    if rt.namespaced {
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now()));
    m.insert("generation".into(), json!(1));
    m.insert("resourceVersion".into(), json!(rv.to_string()));
    m.remove("deletionTimestamp");
    if !applied {
        m.remove("managedFields");
    }
    if rt.status.is_some()
        && reset_status_on_create(rt)
        && let Some(m) = object.as_object_mut()
    {
        m.remove("status");
    }
    on_create_defaults(rt, object);
}

/// A write that carries a resourceVersion must name the live one.
fn check_resource_version(
    rt: &ResourceType,
    name: &str,
    live: &Value,
    new: &Value,
) -> ApiResult<()> {
    let sent_rv = meta(new, "resourceVersion");
    if !sent_rv.is_empty() && sent_rv != meta(live, "resourceVersion") {
        return Err(ApiError::Conflict {
            resource: rt.qualified(),
            name: name.to_owned(),
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        });
    }
    Ok(())
}

/// The body may omit the name; if it has one, it must be the URL's.
fn check_name(name: &str, new: &mut Value) -> ApiResult<()> {
    if meta(new, "name").is_empty() {
        metadata_mut(new).insert("name".into(), json!(name));
    }
    if meta(new, "name") != name {
        return Err(ApiError::BadRequest(
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    Ok(())
}

fn keep_server_owned_fields(rt: &ResourceType, live: &Value, new: &mut Value) {
    new["apiVersion"] = json!(rt.api_version());
    new["kind"] = json!(rt.kind);
    let m = metadata_mut(new);
    for field in SERVER_OWNED_METADATA {
        match live["metadata"].get(field) {
            Some(v) => m.insert(field.into(), v.clone()),
            None => m.remove(field),
        };
    }
}

/// DNS-1123 subdomain, the rule for most object names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..5].to_owned()
}

/// Everything but metadata and status: what bumps `generation` when it changes.
fn spec_part(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

/// An object without the fields the server maintains, to detect no-op writes.
fn comparable(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

fn reset_status_on_create(rt: &ResourceType) -> bool {
    rt.status == Some(StatusScope::StatusOnly)
        || matches!(rt.kind.as_str(), "Service" | "Pod" | "Namespace")
}

fn on_create_defaults(rt: &ResourceType, object: &mut Value) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => {
            object["status"] = json!({"phase": "Active"});
            let name = meta(object, "name");
            let labels = metadata_mut(object)
                .entry("labels")
                .or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        ("", "Pod") => object["status"] = json!({"phase": "Pending"}),
        ("", "Service") => object["status"] = json!({"loadBalancer": {}}),
        _ => {}
    }
}

/// Replaces `field` of `target` with that of `source`, or removes it when `source` has none.
fn take_field(target: &mut Value, source: &Value, field: &str) {
    match source.get(field) {
        Some(v) => target[field] = v.clone(),
        None => {
            if let Some(m) = target.as_object_mut() {
                m.remove(field);
            }
        }
    }
}

/// Merges a write into the live object according to which part it addresses.
fn scope_write(rt: &ResourceType, live: &Value, mut new: Value, sub: Subresource) -> Value {
    match (sub, rt.status) {
        (Subresource::Main, Some(_)) => {
            take_field(&mut new, live, "status");
            new
        }
        (Subresource::Status, Some(StatusScope::StatusOnly)) => {
            let mut out = live.clone();
            take_field(&mut out, &new, "status");
            // The write's resourceVersion precondition and field ownership still apply.
            metadata_mut(&mut out).insert(
                "resourceVersion".into(),
                new["metadata"]["resourceVersion"].clone(),
            );
            if let Some(mf) = new["metadata"].get("managedFields") {
                metadata_mut(&mut out).insert("managedFields".into(), mf.clone());
            }
            out
        }
        (Subresource::Status, Some(StatusScope::ResetSpec)) => {
            take_field(&mut new, live, "spec");
            new
        }
        (_, None) => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_lowercase_dns_subdomains() {
        assert!(valid_name("web-1.example"));
        assert!(!valid_name("Web"));
        assert!(!valid_name("-web"));
        assert!(!valid_name(""));
    }

    #[test]
    fn metadata_and_status_changes_are_not_spec_changes() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}, "status": {"y": 2}});
        assert_eq!(spec_part(&a), spec_part(&b));
    }
}
