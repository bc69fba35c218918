//! `ServiceL2Status` objects as the speaker reads them from its watch: name, namespace, labels
//! and status, nothing else parsed. Every speaker watches every node's objects, two events per
//! written object (the object, then its status), each carrying the server's `managedFields`:
//! building those into values was most of what a burst of status writes cost the other
//! speakers. Skipped fields are still read past, just never built.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ferrolb_api::{ServiceL2Status, ServiceL2StatusStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

/// A `ServiceL2Status` with only what [`crate::visibility::StatusObject`] needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StatusView {
    /// Name, namespace, labels, resourceVersion.
    #[serde(deserialize_with = "lean_meta")]
    pub metadata: ObjectMeta,
    /// As written by the announcing speaker.
    #[serde(default)]
    pub status: Option<ServiceL2StatusStatus>,
}

/// The metadata fields the speaker reads (the watch needs resourceVersion to resume).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    resource_version: Option<String>,
}

fn lean_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let m = LeanMeta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        labels: m.labels,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

impl Resource for StatusView {
    type DynamicType = ();
    type Scope = <ServiceL2Status as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ServiceL2Status::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        ServiceL2Status::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        ServiceL2Status::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        ServiceL2Status::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_read_fields_are_kept_and_the_rest_is_read_past() {
        let view: StatusView = serde_json::from_value(json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "ServiceL2Status",
            "metadata": {"name": "l2-abc", "namespace": "ferrolb-system", "resourceVersion": "7",
                         "labels": {"ferrolb.io/node": "node-1"},
                         "managedFields": [{"manager": "ferrolb-speaker", "operation": "Apply",
                                            "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "speaker",
                                              "uid": "u1"}]},
            "spec": {},
            "status": {"node": "node-1", "serviceName": "web", "serviceNamespace": "default",
                       "interfaces": [{"name": "eth0"}]}
        }))
        .unwrap();
        assert_eq!(view.metadata.name.as_deref(), Some("l2-abc"));
        assert_eq!(view.metadata.resource_version.as_deref(), Some("7"));
        assert!(view.metadata.managed_fields.is_none());
        assert!(view.metadata.owner_references.is_none());
        assert_eq!(view.status.unwrap().interfaces[0].name, "eth0");
        assert_eq!(StatusView::plural(&()), "servicel2statuses");
        assert_eq!(StatusView::api_version(&()), "ferrolb.io/v1beta1");
    }
}
