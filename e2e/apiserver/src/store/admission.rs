//! What happens to an object between the write and storage: kind-specific defaulting (Service
//! allocation, EndpointSlice ports), validation (typed for built-in kinds, the CRD schema and its
//! CEL rules for custom ones), and CRD registration; plus giving back what admission took when
//! an object goes away.

use serde_json::{Value, json};

use super::now;
use super::objects::{State, meta};
use crate::error::{ApiError, ApiResult};
use crate::resources::{Admission, ResourceType};

/// Defaults and validates an object on create (`old` = None) or update.
pub(super) fn admit(
    state: &mut State,
    rt: &ResourceType,
    mut object: Value,
    old: Option<&Value>,
) -> ApiResult<Value> {
    let name = meta(&object, "name");
    if rt.group == "discovery.k8s.io" && rt.kind == "EndpointSlice" {
        default_endpoint_slice_ports(&mut object);
    }
    if rt.group.is_empty() && rt.kind == "Service" {
        let primary_v6 = state.primary_v6;
        state.services.admit(&mut object, old, primary_v6)?;
    }
    match &rt.admission {
        Admission::Typed(check) => {
            check(&object).map_err(|e| ApiError::invalid(&rt.kind, &name, "body", e))?;
            Ok(object)
        }
        Admission::Schema(schema) => {
            schema
                .admit(object, old)
                .map_err(|causes| ApiError::Invalid {
                    kind: rt.kind.clone(),
                    group: rt.group.clone(),
                    name,
                    causes,
                })
        }
    }
}

/// kube-apiserver defaults every port's name to "" and protocol to TCP; clients (kubectl
/// describe) dereference both.
fn default_endpoint_slice_ports(object: &mut Value) {
    for port in object["ports"].as_array_mut().into_iter().flatten() {
        if let Some(p) = port.as_object_mut() {
            p.entry("name").or_insert_with(|| json!(""));
            p.entry("protocol").or_insert_with(|| json!("TCP"));
        }
    }
}

/// Serves the kinds a CustomResourceDefinition defines (replacing earlier versions of it) and
/// fills in the status kube-apiserver reports once names are accepted.
pub(super) fn register_crd(state: &mut State, crd: &mut Value) -> ApiResult<()> {
    let name = meta(crd, "name");
    let types = crate::resources::from_crd(crd)
        .map_err(|e| ApiError::invalid("CustomResourceDefinition", &name, "spec.versions", e))?;
    let group = crd["spec"]["group"].as_str().unwrap_or_default().to_owned();
    let plural = crd["spec"]["names"]["plural"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name != format!("{plural}.{group}") {
        return Err(ApiError::invalid(
            "CustomResourceDefinition",
            &name,
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    state.registry.remove(&group, &plural);
    for t in types {
        state.registry.insert(t);
    }
    let stored_versions: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    crd["status"] = json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "storedVersions": stored_versions,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()},
        ],
    });
    Ok(())
}

/// Gives back what admission took for an object that is gone: a Service's cluster IPs and node
/// ports; a CRD's kinds and their objects.
pub(super) fn release(state: &mut State, rt: &ResourceType, object: &Value) {
    if rt.group.is_empty() && rt.kind == "Service" {
        state.services.release(object);
    }
    if rt.group == "apiextensions.k8s.io" {
        let group = object["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let plural = object["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        state.registry.remove(&group, &plural);
        let storage_key = format!("{group}/{plural}");
        if let Some(bucket) = state.objects.remove(&storage_key) {
            for (key, object) in bucket {
                state.owners.removed(&(storage_key.clone(), key), &object);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_slice_ports_get_an_empty_name_and_tcp() {
        let mut slice = json!({"ports": [{"port": 80}, {"name": "dns", "protocol": "UDP"}]});
        default_endpoint_slice_ports(&mut slice);
        assert_eq!(
            slice["ports"][0],
            json!({"port": 80, "name": "", "protocol": "TCP"})
        );
        assert_eq!(slice["ports"][1], json!({"name": "dns", "protocol": "UDP"}));
    }
}
