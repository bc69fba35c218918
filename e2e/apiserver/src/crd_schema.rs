//! What kube-apiserver does with a custom object against its CRD's structural schema: prune
//! unknown fields, apply `default`s, check the OpenAPI constraints, then the CEL rules
//! (`x-kubernetes-validations`). OpenAPI constraints are checked by the `jsonschema` crate on a
//! JSON Schema translated from the OpenAPI dialect; CEL rules and defaults by `kube-cel`.

use serde_json::{Map, Value, json};

use super::error::Cause;

/// A CRD version's schema, compiled once when the CRD is registered.
pub struct CrdSchema {
    openapi: Value,
    structural: jsonschema::Validator,
    cel: kube_cel::CompiledSchema,
}

impl std::fmt::Debug for CrdSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdSchema").finish_non_exhaustive()
    }
}

/// Rewrites OpenAPI v3 schema keywords into their JSON Schema draft 4 equivalents.
fn to_json_schema(openapi: &Value) -> Value {
    let Value::Object(map) = openapi else {
        return openapi.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "properties" | "patternProperties" | "definitions" => {
                let translated = value
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), to_json_schema(v)))
                            .collect::<Map<_, _>>()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(translated));
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(key.clone(), to_json_schema(value));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let list = value
                    .as_array()
                    .map(|l| l.iter().map(to_json_schema).collect())
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(list));
            }
            // Checked elsewhere (CEL), or only meaningful to the apiserver's own machinery.
            "x-kubernetes-validations"
            | "nullable"
            | "format"
            | "default"
            | "description"
            | "x-kubernetes-int-or-string"
            | "x-kubernetes-embedded-resource"
            | "x-kubernetes-preserve-unknown-fields"
            | "x-kubernetes-list-map-keys"
            | "x-kubernetes-map-type"
            | "example"
            | "externalDocs" => {}
            "x-kubernetes-list-type" => {
                if value == "set" {
                    out.insert("uniqueItems".into(), Value::Bool(true));
                }
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if map.get("nullable") == Some(&Value::Bool(true))
        && let Some(Value::String(t)) = out.get("type").cloned()
    {
        out.insert("type".into(), json!([t, "null"]));
    }
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.remove("type");
        out.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    Value::Object(out)
}

/// Removes fields the schema does not declare, as the apiserver does for structural schemas.
fn prune(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                && schema.get("properties").is_none()
            {
                return;
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                let keep_unknown =
                    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
                // Unknown fields go, and so do nulls the schema does not allow, as in kube-apiserver.
                map.retain(|k, v| {
                    let declared = props.get(k);
                    let null_allowed =
                        declared.is_some_and(|d| d.get("nullable") == Some(&Value::Bool(true)));
                    (keep_unknown || declared.is_some()) && (!v.is_null() || null_allowed)
                });
                for (k, v) in map.iter_mut() {
                    if let Some(sub) = props.get(k) {
                        prune(sub, v);
                    }
                }
            } else if let Some(additional) = schema.get("additionalProperties") {
                if additional.is_object() {
                    for v in map.values_mut() {
                        prune(additional, v);
                    }
                }
            } else if !schema.get("type").is_some_and(|t| t == "object") {
                // No object schema at all: leave it to the type check.
            } else {
                map.clear();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    prune(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// `/spec/addresses/0` → `spec.addresses[0]`, the apiserver's field path notation.
fn field_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

impl CrdSchema {
    /// Compiles a version's `openAPIV3Schema`.
    ///
    /// # Errors
    /// A message when the schema is not a valid JSON Schema or a CEL rule does not compile.
    pub fn compile(openapi: &Value) -> Result<Self, String> {
        let mut structural_schema = to_json_schema(openapi);
        // metadata is validated by the server's own object-meta rules, not by the CRD.
        if let Some(props) = structural_schema
            .get_mut("properties")
            .and_then(Value::as_object_mut)
        {
            props.remove("metadata");
        }
        let structural = jsonschema::draft4::new(&structural_schema).map_err(|e| e.to_string())?;
        let cel = kube_cel::compile_schema(openapi);
        if cel.has_errors() {
            let errors: Vec<String> = cel
                .compilation_errors()
                .iter()
                .map(|e| e.to_string())
                .collect();
            return Err(format!("CEL rules do not compile: {}", errors.join("; ")));
        }
        Ok(Self {
            openapi: openapi.clone(),
            structural,
            cel,
        })
    }

    /// The schema as the CRD declares it.
    pub fn openapi(&self) -> &Value {
        &self.openapi
    }

    /// Prunes, defaults and validates an object on create (`old` = None) or update.
    ///
    /// # Errors
    /// Every failing field with its message.
    pub fn admit(&self, mut object: Value, old: Option<&Value>) -> Result<Value, Vec<Cause>> {
        // apiVersion, kind and metadata belong to the server, not to the CRD's schema: never
        // pruned, whatever the schema declares.
        let kept: Vec<(&str, Value)> = ["apiVersion", "kind", "metadata"]
            .into_iter()
            .filter_map(|k| object.get(k).cloned().map(|v| (k, v)))
            .collect();
        prune(&self.openapi, &mut object);
        let mut object = kube_cel::apply_defaults(&self.openapi, &object);
        if let Some(map) = object.as_object_mut() {
            for (k, v) in kept {
                map.insert(k.into(), v);
            }
        }
        let mut causes: Vec<Cause> = self
            .structural
            .iter_errors(&object)
            .map(|e| Cause {
                field: field_path(&e.instance_path().to_string()),
                message: e.to_string(),
            })
            .collect();
        {
            // CEL rules do not run on null values.
            let without_nulls = strip_nulls(&object);
            let old = old.map(strip_nulls);
            if let Err(errors) = kube_cel::Validator::new().validate_compiled(
                &self.cel,
                &without_nulls,
                old.as_ref(),
            ) {
                causes.extend(errors.into_vec().into_iter().map(|e| Cause {
                    field: e.field_path,
                    message: e.message,
                }));
            }
        }
        if causes.is_empty() {
            Ok(object)
        } else {
            Err(causes)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn schema() -> CrdSchema {
        CrdSchema::compile(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["items"],
                    "properties": {
                        "items": {"type": "array", "minItems": 1, "x-kubernetes-list-type": "set",
                                  "items": {"type": "string"}},
                        "flag": {"type": "boolean", "default": true},
                        "n": {"type": "integer", "minimum": 0, "nullable": true,
                              "x-kubernetes-validations": [{"rule": "self < 10", "message": "n must be below 10"}]},
                    },
                },
            },
        }))
        .unwrap()
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_applied() {
        let out = schema()
            .admit(
                json!({"metadata": {"name": "x"}, "spec": {"items": ["a"], "bogus": 1}, "junk": 2}),
                None,
            )
            .unwrap();
        assert_eq!(out["spec"], json!({"items": ["a"], "flag": true}));
        assert!(out.get("junk").is_none());
        assert_eq!(out["metadata"]["name"], "x");
    }

    #[test]
    fn openapi_constraints_and_cel_rules_are_enforced_with_field_paths() {
        let s = schema();
        let e = s.admit(json!({"spec": {"items": []}}), None).unwrap_err();
        assert_eq!(e[0].field, "spec.items");
        let e = s
            .admit(json!({"spec": {"items": ["a", "a"]}}), None)
            .unwrap_err();
        assert_eq!(e[0].field, "spec.items");
        let e = s
            .admit(json!({"spec": {"items": ["a"], "n": -1}}), None)
            .unwrap_err();
        assert_eq!(e[0].field, "spec.n");
        let e = s
            .admit(json!({"spec": {"items": ["a"], "n": 12}}), None)
            .unwrap_err();
        assert!(e[0].message.contains("below 10"), "{e:?}");
        assert!(
            s.admit(json!({"spec": {"items": ["a"], "n": null}}), None)
                .is_ok()
        );
    }
}
