//! The four patch types kube-apiserver accepts, and the field ownership (`managedFields`) that
//! server-side apply needs so that one manager's apply never removes what another manager set.
//!
//! Field sets are kept as leaf paths (map keys down to a scalar, list or empty map); lists are
//! owned as a whole, which is how kube-apiserver treats atomic lists. That is enough for every
//! list ferrolb applies (status ingress, conditions are written whole).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};

/// Patch body encodings, from the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`: merge with keyed list merging.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchKind {
    /// From a Content-Type header value.
    ///
    /// # Errors
    /// `UnsupportedMediaType` for anything else.
    pub fn from_content_type(content_type: &str) -> ApiResult<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Ok(Self::Merge),
            "application/json-patch+json" => Ok(Self::Json),
            "application/strategic-merge-patch+json" => Ok(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(Self::Apply),
            other => Err(ApiError::UnsupportedMediaType(other.to_owned())),
        }
    }
}

/// Applies a merge, JSON or strategic patch to a document.
///
/// # Errors
/// `BadRequest` / `Invalid` when the patch does not apply.
pub fn apply_patch(kind: PatchKind, target: &Value, patch: &Value) -> ApiResult<Value> {
    let mut out = target.clone();
    match kind {
        PatchKind::Merge => json_patch::merge(&mut out, patch),
        PatchKind::Strategic => strategic_merge(&mut out, patch),
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &ops)
                .map_err(|e| ApiError::invalid("", "", "patch", e.to_string()))?;
        }
        PatchKind::Apply => {
            return Err(ApiError::BadRequest(
                "apply patches go through server-side apply".into(),
            ));
        }
    }
    Ok(out)
}

/// The keys by which kube-apiserver merges lists of objects in strategic merge patches.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => "name",
        "ports" => "port",
        "volumeMounts" => "mountPath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(target_map) = target.as_object_mut() else {
        return;
    };
    for (key, value) in patch_map {
        if key.starts_with("$setElementOrder/") || key == "$retainKeys" {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) =
                (target_map.get_mut(field), value)
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Array(items)
                if merge_key(key).is_some() && items.iter().all(Value::is_object) =>
            {
                let mk = merge_key(key).unwrap_or("name");
                let list = target_map
                    .entry(key.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !list.is_array() {
                    *list = Value::Array(Vec::new());
                }
                if let Value::Array(existing) = list {
                    for item in items {
                        let id = &item[mk];
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        let position = existing.iter().position(|e| &e[mk] == id);
                        match (position, delete) {
                            (Some(i), true) => {
                                existing.remove(i);
                            }
                            (Some(i), false) => strategic_merge(&mut existing[i], item),
                            (None, false) => existing.push(item.clone()),
                            (None, true) => {}
                        }
                    }
                }
            }
            Value::Object(_) => {
                let slot = target_map.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(slot, value);
            }
            other => {
                target_map.insert(key.clone(), other.clone());
            }
        }
    }
}

/// A set of owned fields, as leaf paths.
pub type FieldSet = BTreeSet<Vec<String>>;

/// Fields no manager owns: identity and bookkeeping the server itself maintains.
fn unmanaged(path: &[String]) -> bool {
    match path {
        [top] => top == "apiVersion" || top == "kind",
        [meta, field, ..] if meta == "metadata" => matches!(
            field.as_str(),
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "managedFields"
                | "selfLink"
        ),
        _ => false,
    }
}

/// The leaf paths of a document.
pub fn leaf_paths(value: &Value) -> FieldSet {
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {
                if !unmanaged(path) {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cursor = value;
    for key in parents {
        match cursor.get_mut(key) {
            Some(next) => cursor = next,
            None => return,
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.remove(last);
    }
}

/// Deep merge for apply: maps merge, everything else is replaced.
fn merge_into(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_into(slot, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

fn paths_overlap(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// `fieldsV1` encoding of a field set: `{"f:spec": {"f:x": {}}}`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut cursor = &mut root;
        for key in path {
            let Some(map) = cursor.as_object_mut() else {
                break;
            };
            cursor = map
                .entry(format!("f:{key}"))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    root
}

/// Decodes `fieldsV1` back into leaf paths (list element keys are kept as opaque names).
pub fn from_fields_v1(fields: &Value) -> FieldSet {
    fn walk(value: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
        let children: Vec<_> = value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != ".")
            .collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, v) in children {
            path.push(k.strip_prefix("f:").unwrap_or(k).to_owned());
            walk(v, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// Empty for the main resource, `status` for the status subresource.
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
    /// apiVersion of the request that last set these fields.
    pub api_version: String,
    /// When.
    pub time: String,
}

/// Reads `metadata.managedFields`.
pub fn managed_entries(object: &Value) -> Vec<ManagedEntry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ManagedEntry {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or("Update").to_owned(),
            subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
            fields: from_fields_v1(&e["fieldsV1"]),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Writes `metadata.managedFields`, dropping entries that own nothing.
pub fn set_managed_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = Value::String(e.subresource.clone());
            }
            v
        })
        .collect();
    if let Some(map) = object.as_object_mut() {
        let meta = map.entry("metadata").or_insert_with(|| json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return;
        };
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who is writing, for field ownership.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// Field manager (`?fieldManager=`).
    pub manager: &'a str,
    /// `""` or `status`.
    pub subresource: &'a str,
    /// apiVersion of the request.
    pub api_version: &'a str,
    /// Timestamp to record.
    pub time: &'a str,
}

fn entry_mut<'e>(
    entries: &'e mut Vec<ManagedEntry>,
    writer: &Writer<'_>,
    operation: &str,
) -> &'e mut ManagedEntry {
    let position = entries.iter().position(|e| {
        e.manager == writer.manager
            && e.operation == operation
            && e.subresource == writer.subresource
    });
    let index = position.unwrap_or_else(|| {
        entries.push(ManagedEntry {
            manager: writer.manager.to_owned(),
            operation: operation.to_owned(),
            subresource: writer.subresource.to_owned(),
            fields: FieldSet::new(),
            api_version: writer.api_version.to_owned(),
            time: writer.time.to_owned(),
        });
        entries.len() - 1
    });
    let entry = &mut entries[index];
    entry.time = writer.time.to_owned();
    entry.api_version = writer.api_version.to_owned();
    entry
}

/// Records an ordinary write (create, update, non-apply patch): fields whose value changed now
/// belong to the writer alone; fields that disappeared belong to nobody.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer<'_>) {
    let mut entries = old.map(managed_entries).unwrap_or_default();
    let new_paths = leaf_paths(new);
    let changed: FieldSet = new_paths
        .iter()
        .filter(|p| old.and_then(|o| lookup(o, p)) != lookup(new, p))
        .cloned()
        .collect();
    for entry in &mut entries {
        entry.fields.retain(|p| {
            new_paths.iter().any(|n| paths_overlap(n, p))
                && !changed.iter().any(|c| paths_overlap(c, p))
        });
    }
    if !changed.is_empty() {
        entry_mut(&mut entries, writer, "Update")
            .fields
            .extend(changed);
    }
    set_managed_entries(new, &entries);
}

/// Server-side apply of `config` by `writer` onto `live` (None on create).
///
/// # Errors
/// `Conflict` naming the fields and their managers when the config changes a field another
/// manager owns and `force` is false.
pub fn server_side_apply(
    live: Option<&Value>,
    config: &Value,
    writer: &Writer<'_>,
    force: bool,
) -> ApiResult<Value> {
    let mut object = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = live.map(managed_entries).unwrap_or_default();
    let applied = leaf_paths(config);

    let mut conflicts = Vec::new();
    for entry in entries.iter_mut().filter(|e| e.manager != writer.manager) {
        let taken: Vec<Vec<String>> = entry
            .fields
            .iter()
            .filter(|owned| {
                applied
                    .iter()
                    .any(|a| paths_overlap(a, owned) && lookup(config, a) != lookup(&object, a))
            })
            .cloned()
            .collect();
        if taken.is_empty() {
            continue;
        }
        if force {
            entry.fields.retain(|p| !taken.contains(p));
        } else {
            conflicts.extend(
                taken
                    .iter()
                    .map(|p| format!(".{}: conflict with \"{}\"", p.join("."), entry.manager)),
            );
        }
    }
    if !conflicts.is_empty() {
        return Err(ApiError::Conflict {
            resource: String::new(),
            name: config["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            message: format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                conflicts.join(", ")
            ),
        });
    }

    let previously: FieldSet = entries
        .iter()
        .find(|e| {
            e.manager == writer.manager
                && e.operation == "Apply"
                && e.subresource == writer.subresource
        })
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for dropped in previously.difference(&applied) {
        let owned_elsewhere = entries.iter().any(|e| {
            !(e.manager == writer.manager && e.operation == "Apply")
                && e.fields.iter().any(|p| paths_overlap(p, dropped))
        });
        if !owned_elsewhere {
            remove_path(&mut object, dropped);
        }
    }
    merge_into(&mut object, config);
    entry_mut(&mut entries, writer, "Apply").fields = applied;
    set_managed_entries(&mut object, &entries);
    Ok(object)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            subresource: "",
            api_version: "v1",
            time: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn apply_keeps_fields_another_manager_set_and_drops_its_own_removed_fields() {
        let first = json!({"metadata": {"name": "a", "labels": {"mine": "1", "also": "2"}}});
        let live = server_side_apply(None, &first, &writer("one"), false).unwrap();
        let mut live2 = json_patch_merge(&live, &json!({"metadata": {"labels": {"other": "x"}}}));
        record_update(Some(&live), &mut live2, &writer("two"));
        let second = json!({"metadata": {"name": "a", "labels": {"mine": "1"}}});
        let out = server_side_apply(Some(&live2), &second, &writer("one"), false).unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"mine": "1", "other": "x"})
        );
    }

    #[test]
    fn apply_changing_another_managers_field_conflicts_unless_forced() {
        let live =
            server_side_apply(None, &json!({"spec": {"x": 1}}), &writer("one"), false).unwrap();
        let err = server_side_apply(
            Some(&live),
            &json!({"spec": {"x": 2}}),
            &writer("two"),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("conflict with \"one\""), "{err}");
        let out = server_side_apply(
            Some(&live),
            &json!({"spec": {"x": 2}}),
            &writer("two"),
            true,
        )
        .unwrap();
        assert_eq!(out["spec"]["x"], 2);
        let owners: Vec<_> = managed_entries(&out)
            .into_iter()
            .map(|e| e.manager)
            .collect();
        assert_eq!(owners, ["two"]);
    }

    #[test]
    fn same_value_from_two_appliers_is_shared_not_a_conflict() {
        let live =
            server_side_apply(None, &json!({"spec": {"x": 1}}), &writer("one"), false).unwrap();
        let out = server_side_apply(
            Some(&live),
            &json!({"spec": {"x": 1}}),
            &writer("two"),
            false,
        )
        .unwrap();
        assert_eq!(managed_entries(&out).len(), 2);
    }

    #[test]
    fn strategic_merge_merges_keyed_lists_and_honours_delete_directives() {
        let target = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "name": "web"}, {"port": 443, "$patch": "delete"}, {"port": 8080}],
                                     "$setElementOrder/ports": [{"port": 80}]}});
        let out = apply_patch(PatchKind::Strategic, &target, &patch).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "web"}, {"port": 8080}])
        );
    }

    #[test]
    fn fields_v1_round_trips() {
        let set =
            leaf_paths(&json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": [1], "y": {}}}));
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
    }

    fn json_patch_merge(target: &Value, patch: &Value) -> Value {
        apply_patch(PatchKind::Merge, target, patch).unwrap()
    }
}
