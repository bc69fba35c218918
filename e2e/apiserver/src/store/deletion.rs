//! Deletion as kube-apiserver does it: finalizers hold an object (marked with a
//! deletionTimestamp) until they are removed; background garbage collection deletes dependents
//! whose owners are all gone, or orphans them when asked; deleting a namespace deletes what is in
//! it and the namespace goes when it is empty.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::objects::{
    ObjectKey, State, has_finalizers, is_terminating, meta, metadata_mut, object_key, set_rv,
};
use super::owners::owner_uids;
use super::watch_log::{EventType, WatchEvent};
use super::{Deleted, Store, admission, now};
use crate::error::{ApiError, ApiResult};
use crate::resources::ResourceType;

type Sender = broadcast::Sender<Arc<WatchEvent>>;

impl Store {
    /// Deletes an object: at once, or by marking it when finalizers hold it. Dependents whose
    /// owners are all gone are deleted too (background propagation), or orphaned when asked.
    ///
    /// # Errors
    /// `NotFound`, or `Conflict` when a precondition does not hold.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        orphan: bool,
        precondition_rv: Option<&str>,
    ) -> ApiResult<Deleted> {
        let mut state = self.lock();
        let state = &mut *state;
        let key = object_key(rt, ns, name);
        let live = state
            .bucket(rt)
            .get(&key)
            .cloned()
            .ok_or_else(|| State::not_found(rt, name))?;
        if let Some(rv) = precondition_rv
            && rv != meta(&live, "resourceVersion")
        {
            return Err(ApiError::Conflict {
                resource: rt.qualified(),
                name: name.to_owned(),
                message: format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record",
                    rt.qualified()
                ),
            });
        }
        if orphan {
            orphan_dependents(state, &self.events, &meta(&live, "uid"));
        }
        let held = has_finalizers(&live);
        let is_namespace = rt.storage_key() == "/namespaces";
        let namespace_in_use = is_namespace && namespace_has_objects(state, name);
        if !held && !namespace_in_use {
            let gone = remove_now(state, &self.events, rt, key, live);
            return Ok(Deleted::Gone(rt.present(&gone)));
        }
        if is_namespace {
            delete_namespace_contents(state, &self.events, name);
            if !namespace_has_objects(state, name) && !held {
                return Ok(Deleted::Gone(remove_now(
                    state,
                    &self.events,
                    rt,
                    key,
                    live,
                )));
            }
        }
        if is_terminating(&live) {
            return Ok(Deleted::Pending(rt.present(&live)));
        }
        let marked = mark_terminating(state, &self.events, rt, key, live);
        Ok(Deleted::Pending(rt.present(&marked)))
    }
}

/// Removes a terminating object whose last finalizer a write just removed; `new` is the written
/// object (this type's shape). Returns it with the deletion's resourceVersion.
pub(super) fn remove_released(
    state: &mut State,
    sender: &Sender,
    rt: &ResourceType,
    key: ObjectKey,
    stored_live: Value,
    mut new: Value,
) -> Value {
    let rv = state.next_rv();
    set_rv(&mut new, rv);
    state.bucket(rt).remove(&key);
    admission::release(state, rt, &new);
    state.record(
        sender,
        WatchEvent {
            rv,
            key: rt.storage_key(),
            event_type: EventType::Deleted,
            object: rt.persist(&new),
            previous: Some(stored_live),
            line: std::sync::OnceLock::new(),
        },
    );
    collect_garbage(state, sender, &new);
    new
}

fn remove_now(
    state: &mut State,
    sender: &Sender,
    rt: &ResourceType,
    key: ObjectKey,
    live: Value,
) -> Value {
    let rv = state.next_rv();
    let mut gone = live.clone();
    set_rv(&mut gone, rv);
    state.bucket(rt).remove(&key);
    admission::release(state, rt, &gone);
    state.record(
        sender,
        WatchEvent {
            rv,
            key: rt.storage_key(),
            event_type: EventType::Deleted,
            object: gone.clone(),
            previous: Some(live),
            line: std::sync::OnceLock::new(),
        },
    );
    collect_garbage(state, sender, &gone);
    if rt.namespaced {
        finish_namespace_if_empty(state, sender, &meta(&gone, "namespace"));
    }
    gone
}

/// Marks a stored object as being deleted (finalizers still hold it); returns the marked
/// object.
fn mark_terminating(
    state: &mut State,
    sender: &Sender,
    rt: &ResourceType,
    key: ObjectKey,
    live: Value,
) -> Value {
    let mut marked = live.clone();
    let m = metadata_mut(&mut marked);
    m.insert("deletionTimestamp".into(), json!(now()));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    if rt.storage_key() == "/namespaces" {
        marked["status"] = json!({"phase": "Terminating"});
    }
    state.replace(sender, rt, key, live, marked)
}

/// Deletes (or marks, with finalizers) one object; used by garbage collection and namespace
/// deletion.
fn delete_by_key(state: &mut State, sender: &Sender, rt: &ResourceType, key: ObjectKey) {
    let Some(live) = state.bucket(rt).get(&key).cloned() else {
        return;
    };
    if !has_finalizers(&live) {
        remove_now(state, sender, rt, key, live);
    } else if !is_terminating(&live) {
        mark_terminating(state, sender, rt, key, live);
    }
}

fn namespace_has_objects(state: &State, ns: &str) -> bool {
    state
        .objects
        .iter()
        .any(|(key, bucket)| key != "/namespaces" && bucket.keys().any(|(o_ns, _)| o_ns == ns))
}

fn finish_namespace_if_empty(state: &mut State, sender: &Sender, ns: &str) {
    let key = (String::new(), ns.to_owned());
    let Some(namespace) = state
        .objects
        .get("/namespaces")
        .and_then(|b| b.get(&key))
        .cloned()
    else {
        return;
    };
    if is_terminating(&namespace)
        && !has_finalizers(&namespace)
        && !namespace_has_objects(state, ns)
        && let Some(rt) = state.registry.get("", "v1", "namespaces")
    {
        remove_now(state, sender, &rt, key, namespace);
    }
}

/// Every served type once, even when several versions or APIs share its storage.
fn storage_types(state: &State) -> Vec<Arc<ResourceType>> {
    let mut seen = BTreeSet::new();
    state
        .registry
        .all()
        .filter(|t| seen.insert(t.storage_key()))
        .cloned()
        .collect()
}

fn delete_namespace_contents(state: &mut State, sender: &Sender, ns: &str) {
    for rt in storage_types(state).into_iter().filter(|t| t.namespaced) {
        let keys: Vec<ObjectKey> = state
            .bucket(&rt)
            .keys()
            .filter(|(o_ns, _)| o_ns == ns)
            .cloned()
            .collect();
        for key in keys {
            delete_by_key(state, sender, &rt, key);
        }
    }
}

/// Background garbage collection: dependents of a deleted owner whose owners are all gone are
/// deleted; references to the gone owner are dropped from dependents that keep another owner.
fn collect_garbage(state: &mut State, sender: &Sender, gone: &Value) {
    let uid = meta(gone, "uid");
    if uid.is_empty() {
        return;
    }
    let types = storage_types(state);
    for (storage_key, key) in state.owners.dependents_of(&uid) {
        let Some(rt) = types.iter().find(|t| t.storage_key() == storage_key) else {
            continue;
        };
        let Some(dependent) = state.bucket(rt).get(&key) else {
            continue;
        };
        let owners = owner_uids(dependent);
        if !owners.contains(&uid) {
            continue;
        }
        if owners.iter().all(|owner| !state.owners.is_live(owner)) {
            delete_by_key(state, sender, rt, key);
        } else {
            drop_owner_reference(state, sender, rt, key, &uid);
        }
    }
}

fn drop_owner_reference(
    state: &mut State,
    sender: &Sender,
    rt: &ResourceType,
    key: ObjectKey,
    uid: &str,
) {
    let Some(live) = state.bucket(rt).get(&key).cloned() else {
        return;
    };
    let mut new = live.clone();
    if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
        refs.retain(|r| r["uid"] != uid);
    }
    state.replace(sender, rt, key, live, new);
}

fn orphan_dependents(state: &mut State, sender: &Sender, uid: &str) {
    let types = storage_types(state);
    for (storage_key, key) in state.owners.dependents_of(uid) {
        if let Some(rt) = types.iter().find(|t| t.storage_key() == storage_key) {
            drop_owner_reference(state, sender, rt, key, uid);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::StoreConfig;

    fn store() -> (Store, Arc<ResourceType>) {
        let store = Store::new(&StoreConfig::default()).unwrap();
        let cm = store.resource("", "v1", "configmaps").unwrap();
        (store, cm)
    }

    #[test]
    fn orphaned_dependents_lose_the_reference_and_stay() {
        let (store, cm) = store();
        let owner = store
            .create(&cm, "default", json!({"metadata": {"name": "owner"}}), "t")
            .unwrap();
        let child = json!({"metadata": {"name": "child", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]},
        ]}});
        store.create(&cm, "default", child, "t").unwrap();
        store.delete(&cm, "default", "owner", true, None).unwrap();
        let child = store.get(&cm, "default", "child").unwrap();
        assert_eq!(child["metadata"]["ownerReferences"], json!([]));
    }

    #[test]
    fn a_stale_delete_precondition_is_a_conflict() {
        let (store, cm) = store();
        store
            .create(&cm, "default", json!({"metadata": {"name": "x"}}), "t")
            .unwrap();
        let e = store
            .delete(&cm, "default", "x", false, Some("1"))
            .unwrap_err();
        assert_eq!(e.code(), 409);
    }
}
