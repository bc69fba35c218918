//! Who owns whom, kept as objects change, so that garbage collection after a delete looks up the
//! gone owner's dependents instead of scanning every object (with ten thousand Services and
//! their EndpointSlices a scan per delete made the lab's churn stall).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::objects::{ObjectKey, meta};

/// An object's place: its storage key and its (namespace, name).
pub(super) type Place = (String, ObjectKey);

/// The uids of stored objects, and the objects that name each uid in `ownerReferences`.
#[derive(Debug, Default)]
pub(super) struct Owners {
    live: HashSet<String>,
    dependents: HashMap<String, BTreeSet<Place>>,
}

impl Owners {
    /// `object` is stored at `place` (created, or replacing `previous`).
    pub(super) fn stored(&mut self, place: &Place, previous: Option<&Value>, object: &Value) {
        if let Some(previous) = previous {
            self.removed(place, previous);
        }
        let uid = meta(object, "uid");
        if !uid.is_empty() {
            self.live.insert(uid);
        }
        for owner in owner_uids(object) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(place.clone());
        }
    }

    /// `object`, stored at `place`, is gone.
    pub(super) fn removed(&mut self, place: &Place, object: &Value) {
        self.live.remove(&meta(object, "uid"));
        for owner in owner_uids(object) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(place);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    /// Whether an object with this uid is stored.
    pub(super) fn is_live(&self, uid: &str) -> bool {
        self.live.contains(uid)
    }

    /// The objects naming `uid` as an owner.
    pub(super) fn dependents_of(&self, uid: &str) -> Vec<Place> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The uids an object's `ownerReferences` name.
pub(super) fn owner_uids(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn object(uid: &str, owners: &[&str]) -> Value {
        let refs: Vec<Value> = owners.iter().map(|o| json!({"uid": o})).collect();
        json!({"metadata": {"uid": uid, "ownerReferences": refs}})
    }

    fn place(name: &str) -> Place {
        ("/configmaps".into(), ("default".into(), name.into()))
    }

    #[test]
    fn dependents_follow_their_references_through_changes_and_removal() {
        let mut owners = Owners::default();
        owners.stored(&place("owner"), None, &object("u1", &[]));
        owners.stored(&place("child"), None, &object("u2", &["u1"]));
        assert!(owners.is_live("u1"));
        assert_eq!(owners.dependents_of("u1"), vec![place("child")]);
        // The child drops the reference: no longer a dependent.
        owners.stored(
            &place("child"),
            Some(&object("u2", &["u1"])),
            &object("u2", &[]),
        );
        assert!(owners.dependents_of("u1").is_empty());
        owners.removed(&place("owner"), &object("u1", &[]));
        assert!(!owners.is_live("u1"));
        assert!(owners.is_live("u2"));
    }
}
