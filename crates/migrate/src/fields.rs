//! Taking a MetalLB object apart one known field at a time, so that every field nobody asked for
//! is left over and reported instead of being dropped.
//!
//! Each converter wraps a mapping in [`Fields`], takes the keys it knows (typed, with the field's
//! path in any error), and hands the rest to [`Fields::leftovers`]. Shared pieces of MetalLB's
//! schema (label selectors, metadata) are taken apart here.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::LAST_APPLIED_ANNOTATION;

/// Metadata the apiserver writes itself. It describes the MetalLB object, not the configuration,
/// and is meaningless (or rejected) on a new object, so it is left out without a report.
pub const SERVER_MANAGED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "selfLink",
];

/// A mapping being converted: known keys are taken out, the rest are [`Self::leftovers`].
#[derive(Debug)]
pub(crate) struct Fields {
    map: Map<String, Value>,
    path: String,
}

impl Fields {
    /// Wraps `value`, which must be a mapping; `path` locates it in messages (`spec`,
    /// `spec.serviceAllocation`, or empty for the top of an object).
    pub(crate) fn new(value: Value, path: &str) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_owned(),
            }),
            other => Err(format!(
                "{}: expected a mapping, found {}",
                display_path(path),
                type_name(&other)
            )),
        }
    }

    /// The path of one key of this mapping.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Takes `key` out; an explicit `null` counts as absent, as it does for the apiserver.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    /// Takes `key` out and reads it as a `T`.
    pub(crate) fn take_as<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, String> {
        self.take(key)
            .map(|value| typed(value, &self.path_of(key)))
            .transpose()
    }

    /// Takes a key that must be present.
    pub(crate) fn require<T: DeserializeOwned>(&mut self, key: &str) -> Result<T, String> {
        self.take_as(key)?
            .ok_or_else(|| format!("{}: missing", self.path_of(key)))
    }

    /// Drops `key` without a report: only for keys that carry no configuration.
    pub(crate) fn discard(&mut self, key: &str) {
        self.map.remove(key);
    }

    /// Paths of the keys nobody took, sorted.
    pub(crate) fn leftovers(self) -> Vec<String> {
        let mut keys: Vec<String> = self.map.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        keys.into_iter().map(|key| join(&self.path, &key)).collect()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "object" } else { path }
}

/// Reads `value` as a `T`, naming `path` in the error.
pub(crate) fn typed<T: DeserializeOwned>(value: Value, path: &str) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("{}: {e}", display_path(path)))
}

/// The YAML name of a value's type, for messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Takes a list, each item handed to `item` with its path (`path[i]`).
pub(crate) fn list<T>(
    value: Value,
    path: &str,
    mut item: impl FnMut(Value, &str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, value)| item(value, &format!("{path}[{i}]")))
            .collect(),
        other => Err(format!(
            "{path}: expected a list, found {}",
            type_name(&other)
        )),
    }
}

/// A list of `metav1.LabelSelector`; unknown keys inside go to `unknown`.
pub(crate) fn selectors(
    value: Value,
    path: &str,
    unknown: &mut Vec<String>,
) -> Result<Vec<LabelSelector>, String> {
    list(value, path, |item, path| selector(item, path, unknown))
}

fn selector(value: Value, path: &str, unknown: &mut Vec<String>) -> Result<LabelSelector, String> {
    let mut fields = Fields::new(value, path)?;
    let match_labels = fields.take_as::<BTreeMap<String, String>>("matchLabels")?;
    let match_expressions = fields
        .take("matchExpressions")
        .map(|value| {
            list(value, &fields.path_of("matchExpressions"), |item, path| {
                let mut expression = Fields::new(item, path)?;
                let requirement = LabelSelectorRequirement {
                    key: expression.require("key")?,
                    operator: expression.require("operator")?,
                    values: expression.take_as("values")?,
                };
                unknown.extend(expression.leftovers());
                Ok(requirement)
            })
        })
        .transpose()?;
    unknown.extend(fields.leftovers());
    Ok(LabelSelector {
        match_labels,
        match_expressions,
    })
}

/// The metadata of a converted object: its name, labels and annotations, in `namespace`.
/// Server-managed fields and kubectl's last-applied annotation are left out; any other field
/// (finalizers, generateName, ...) goes to `unknown`.
pub(crate) fn metadata(
    value: Option<Value>,
    namespace: &str,
    unknown: &mut Vec<String>,
) -> Result<ObjectMeta, String> {
    let mut fields = Fields::new(value.unwrap_or(Value::Object(Map::new())), "metadata")?;
    let name: String = fields.require("name")?;
    // The namespace is replaced by the target namespace, never carried over.
    fields.discard("namespace");
    for key in SERVER_MANAGED_METADATA {
        fields.discard(key);
    }
    let labels = fields.take_as::<BTreeMap<String, String>>("labels")?;
    let annotations = fields
        .take_as::<BTreeMap<String, String>>("annotations")?
        .map(|mut annotations| {
            annotations.remove(LAST_APPLIED_ANNOTATION);
            annotations
        })
        .filter(|annotations| !annotations.is_empty());
    unknown.extend(fields.leftovers());
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        labels: labels.filter(|labels| !labels.is_empty()),
        annotations,
        ..ObjectMeta::default()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keys_not_taken_are_left_over_with_their_path() {
        let mut fields = Fields::new(json!({"a": 1, "z": 2, "b": 3}), "spec")
            .unwrap_or_else(|e| panic!("a mapping is accepted: {e}"));
        assert_eq!(fields.take("a"), Some(json!(1)));
        assert_eq!(fields.leftovers(), ["spec.b", "spec.z"]);
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let mut fields = Fields::new(json!({"addresses": "192.0.2.0/24"}), "spec")
            .unwrap_or_else(|e| panic!("a mapping is accepted: {e}"));
        let err = fields
            .require::<Vec<String>>("addresses")
            .expect_err("a string is not a list");
        assert!(
            err.starts_with("spec.addresses: invalid type: string"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_inside_selectors_are_reported() {
        let mut unknown = vec![];
        let value = json!([{"matchLabels": {"a": "b"}, "matchExpressions": [
            {"key": "k", "operator": "Exists", "extra": true}], "matchFields": {}}]);
        let parsed = selectors(value, "spec.nodeSelectors", &mut unknown)
            .unwrap_or_else(|e| panic!("valid selectors: {e}"));
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            unknown,
            [
                "spec.nodeSelectors[0].matchExpressions[0].extra",
                "spec.nodeSelectors[0].matchFields"
            ]
        );
    }

    #[test]
    fn server_managed_metadata_and_last_applied_are_left_out_silently() {
        let mut unknown = vec![];
        let meta = metadata(
            Some(json!({
                "name": "lan", "namespace": "metallb-system", "uid": "u", "resourceVersion": "7",
                "generation": 2, "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [],
                "annotations": {LAST_APPLIED_ANNOTATION: "{}"},
                "finalizers": ["example.com/keep"],
            })),
            "ferrolb-system",
            &mut unknown,
        )
        .unwrap_or_else(|e| panic!("valid metadata: {e}"));
        assert_eq!(meta.name.as_deref(), Some("lan"));
        assert_eq!(meta.namespace.as_deref(), Some("ferrolb-system"));
        assert_eq!(meta.annotations, None);
        assert_eq!(unknown, ["metadata.finalizers"]);
    }
}
