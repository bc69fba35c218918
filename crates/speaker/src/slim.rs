//! What the speaker's caches keep of a watched object it caches whole: Nodes keep their labels
//! and conditions, not their images and addresses. (Services, EndpointSlices and
//! `ServiceL2Status` objects are not cached whole at all, only as records: see
//! [`crate::cache`] and [`crate::inputs::ServiceRecord`].)

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Labels (node selectors, exclusion) and the `NetworkUnavailable` condition.
pub fn node(node: &mut Node) {
    let m = &mut node.metadata;
    *m = ObjectMeta {
        name: m.name.take(),
        labels: m.labels.take(),
        uid: m.uid.take(),
        resource_version: m.resource_version.take(),
        ..ObjectMeta::default()
    };
    node.spec = None;
    node.status = node.status.take().map(|s| NodeStatus {
        conditions: s.conditions.map(|all| {
            all.into_iter()
                .map(|c| NodeCondition {
                    type_: c.type_,
                    status: c.status,
                    ..NodeCondition::default()
                })
                .collect()
        }),
        ..NodeStatus::default()
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::inputs;
    use serde_json::json;

    #[test]
    fn a_slimmed_node_keeps_its_labels_and_network_condition() {
        let mut n: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-1", "labels": {"zone": "a"}},
            "spec": {"podCIDR": "198.51.100.0/26"},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "True",
                                       "message": "route missing"}],
                       "images": [{"names": ["example/image:1"], "sizeBytes": 1}]}
        }))
        .unwrap();
        let before = inputs::node(&n);
        node(&mut n);
        assert_eq!(inputs::node(&n), before);
        assert!(n.status.unwrap().images.is_none());
    }
}
