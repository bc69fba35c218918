//! Object storage and resourceVersions: the state behind the lock, where each object is kept,
//! the global resourceVersion counter, and the reads (get, paged list, count).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::watch_log::{EventType, WatchEvent};
use super::{ListOptions, ListPage, Store};
use crate::error::{ApiError, ApiResult};
use crate::resources::{Registry, ResourceType};
use crate::services::ServiceAllocations;

/// Where an object is kept within its type's bucket: (namespace, name); cluster-scoped objects
/// have an empty namespace.
pub(super) type ObjectKey = (String, String);

/// Everything the store's mutex guards.
pub(super) struct State {
    pub(super) registry: Registry,
    /// Objects by storage key (`group/plural`), in storage shape.
    pub(super) objects: BTreeMap<String, BTreeMap<ObjectKey, Value>>,
    pub(super) rv: u64,
    pub(super) log: VecDeque<Arc<WatchEvent>>,
    pub(super) capacity: usize,
    /// Highest rv that is no longer in the log: watches must start at or after it.
    pub(super) compacted: u64,
    pub(super) services: ServiceAllocations,
    pub(super) primary_v6: bool,
    /// Owner references of the stored objects, kept by [`State::record`] (and by CRD
    /// deletion, which drops a kind's objects without events).
    pub(super) owners: super::owners::Owners,
}

impl State {
    pub(super) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub(super) fn bucket(&mut self, rt: &ResourceType) -> &mut BTreeMap<ObjectKey, Value> {
        self.objects.entry(rt.storage_key()).or_default()
    }

    pub(super) fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get("/namespaces")
            .is_some_and(|b| b.contains_key(&(String::new(), ns.to_owned())))
    }

    pub(super) fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::NotFound {
            resource: rt.qualified(),
            name: name.to_owned(),
        }
    }

    /// Stores a changed object (in storage shape) under a new resourceVersion and tells the
    /// watchers; returns what was stored.
    pub(super) fn replace(
        &mut self,
        sender: &broadcast::Sender<Arc<WatchEvent>>,
        rt: &ResourceType,
        key: ObjectKey,
        previous: Value,
        mut stored: Value,
    ) -> Value {
        let rv = self.next_rv();
        set_rv(&mut stored, rv);
        self.bucket(rt).insert(key, stored.clone());
        self.record(
            sender,
            WatchEvent {
                rv,
                key: rt.storage_key(),
                event_type: EventType::Modified,
                object: stored.clone(),
                previous: Some(previous),
                line: std::sync::OnceLock::new(),
            },
        );
        stored
    }
}

pub(super) fn meta(object: &Value, field: &str) -> String {
    object["metadata"][field]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub(super) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub(super) fn set_rv(object: &mut Value, rv: u64) {
    metadata_mut(object).insert("resourceVersion".into(), json!(rv.to_string()));
}

pub(super) fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

pub(super) fn is_terminating(object: &Value) -> bool {
    object["metadata"].get("deletionTimestamp").is_some()
}

/// Objects are stored with their type; a type registered under another version of the same
/// resource is served with the version asked for.
pub(super) fn with_type(rt: &ResourceType, object: &Value) -> Value {
    let mut o = object.clone();
    o["apiVersion"] = json!(rt.api_version());
    o["kind"] = json!(rt.kind);
    o
}

/// Where an object of a type is stored: cluster-scoped objects have no namespace.
pub(super) fn object_key(rt: &ResourceType, ns: &str, name: &str) -> ObjectKey {
    let ns = if rt.namespaced {
        ns.to_owned()
    } else {
        String::new()
    };
    (ns, name.to_owned())
}

impl Store {
    /// Reads one object.
    ///
    /// # Errors
    /// `NotFound`.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let state = self.lock();
        state
            .objects
            .get(&rt.storage_key())
            .and_then(|b| b.get(&(ns.to_owned(), name.to_owned())))
            .map(|o| rt.present(o))
            .ok_or_else(|| State::not_found(rt, name))
    }

    /// Lists objects (in one namespace, or all with `ns` = None).
    ///
    /// # Errors
    /// `BadRequest` for a malformed continue token.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        options: &ListOptions,
    ) -> ApiResult<ListPage> {
        let state = self.lock();
        let start: Option<ObjectKey> = match &options.continue_token {
            Some(token) => Some(decode_continue(token)?),
            None => None,
        };
        let mut matching = state
            .objects
            .get(&rt.storage_key())
            .into_iter()
            .flat_map(|b| b.iter())
            .filter(|((o_ns, _), _)| ns.is_none_or(|n| n == o_ns))
            .filter(|(k, _)| start.as_ref().is_none_or(|s| *k > s))
            .map(|(k, o)| (k, rt.present(o)))
            .filter(|(_, o)| options.labels.matches(o) && options.fields.matches(o));
        let mut items = Vec::new();
        let mut last_key = None;
        for (k, o) in matching.by_ref() {
            if options.limit > 0 && items.len() == options.limit {
                let rest = 1 + matching.count();
                return Ok(ListPage {
                    items,
                    rv: state.rv,
                    continue_token: last_key.map(|k: &ObjectKey| encode_continue(k)),
                    remaining: Some(rest),
                });
            }
            items.push(o);
            last_key = Some(k);
        }
        Ok(ListPage {
            items,
            rv: state.rv,
            continue_token: None,
            remaining: None,
        })
    }

    /// Counts the objects of a type for which `f` holds, without copying them: for tests and
    /// benchmarks that poll a large store.
    pub fn count(&self, rt: &ResourceType, f: impl Fn(&Value) -> bool) -> usize {
        let state = self.lock();
        state
            .objects
            .get(&rt.storage_key())
            .map_or(0, |bucket| bucket.values().filter(|o| f(o)).count())
    }
}

/// Continue tokens are the last key of the page, opaque to clients.
fn encode_continue(key: &ObjectKey) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!([key.0, key.1]).to_string())
}

fn decode_continue(token: &str) -> ApiResult<ObjectKey> {
    use base64::Engine;
    let bad = || ApiError::BadRequest(format!("invalid continue token \"{token}\""));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let parts: (String, String) = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    Ok(parts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_a_bad_request() {
        let key = ("default".to_owned(), "web".to_owned());
        assert_eq!(decode_continue(&encode_continue(&key)).unwrap(), key);
        assert_eq!(decode_continue("not base64!").unwrap_err().code(), 400);
    }

    #[test]
    fn cluster_scoped_objects_are_keyed_without_a_namespace() {
        let store = Store::new(&super::super::StoreConfig::default()).unwrap();
        let ns = store.resource("", "v1", "namespaces").unwrap();
        let cm = store.resource("", "v1", "configmaps").unwrap();
        assert_eq!(object_key(&ns, "default", "x"), (String::new(), "x".into()));
        assert_eq!(
            object_key(&cm, "default", "x"),
            ("default".into(), "x".into())
        );
    }
}
