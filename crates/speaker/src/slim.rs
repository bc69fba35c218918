//! What the speaker's caches keep of each watched object: the fields it reads, nothing more.
//! With ten thousand Services (and their EndpointSlices and `ServiceL2Status` objects) the rest
//! (ports, selectors, cluster IPs, endpoint addresses, owner references, field ownership) would
//! be most of the speaker's memory. The election, the status plan and Events read only what is
//! kept here; a field read elsewhere must be kept here too.

use ferrolb_api::ServiceL2Status;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeCondition, NodeStatus, Service, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Name, namespace, labels; uid and resourceVersion when `identity` (Events name the object).
fn meta(m: &mut ObjectMeta, identity: bool) {
    *m = ObjectMeta {
        name: m.name.take(),
        namespace: m.namespace.take(),
        labels: m.labels.take(),
        uid: if identity { m.uid.take() } else { None },
        resource_version: if identity {
            m.resource_version.take()
        } else {
            None
        },
        ..ObjectMeta::default()
    };
}

/// Whether the Service is ours (type, class), its traffic policy and its IPs.
pub fn service(svc: &mut Service) {
    meta(&mut svc.metadata, true);
    svc.spec = svc.spec.take().map(|s| ServiceSpec {
        type_: s.type_,
        load_balancer_class: s.load_balancer_class,
        external_traffic_policy: s.external_traffic_policy,
        ..ServiceSpec::default()
    });
    svc.status = svc.status.take().map(|s| ServiceStatus {
        load_balancer: s.load_balancer.map(|lb| LoadBalancerStatus {
            ingress: lb.ingress.map(|all| {
                all.into_iter()
                    .map(|i| LoadBalancerIngress {
                        ip: i.ip,
                        ..LoadBalancerIngress::default()
                    })
                    .collect()
            }),
        }),
        conditions: None,
    });
}

/// The Service it belongs to (a label) and where its endpoints are and whether they serve.
pub fn slice(slice: &mut EndpointSlice) {
    meta(&mut slice.metadata, false);
    slice.ports = None;
    for ep in slice.endpoints.iter_mut().flatten() {
        *ep = Endpoint {
            conditions: ep.conditions.take(),
            node_name: ep.node_name.take(),
            ..Endpoint::default()
        };
    }
}

/// Labels (node selectors, exclusion) and the `NetworkUnavailable` condition.
pub fn node(node: &mut Node) {
    meta(&mut node.metadata, true);
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

/// Whose status it is and what it says (the plan compares it with what should be written).
pub fn status(o: &mut ServiceL2Status) {
    meta(&mut o.metadata, false);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::inputs;
    use serde_json::json;

    #[test]
    fn a_slimmed_service_and_slice_give_the_same_facts() {
        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                     "ports": [{"port": 80}], "selector": {"app": "web"}, "clusterIP": "198.51.100.7"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}}
        }))
        .unwrap();
        let mut ep: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["198.51.100.20"], "nodeName": "node-1",
                           "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "web-1"}}],
            "ports": [{"port": 8080}]
        }))
        .unwrap();
        let before = inputs::service(&svc, None, &[&ep]).unwrap();
        service(&mut svc);
        slice(&mut ep);
        assert_eq!(inputs::service(&svc, None, &[&ep]).unwrap(), before);
        assert_eq!(inputs::slice_service(&ep).as_deref(), Some("default/web"));
        assert!(svc.metadata.annotations.is_none());
        assert!(svc.spec.as_ref().unwrap().ports.is_none());
        assert_eq!(svc.metadata.uid.as_deref(), Some("u1"));
        assert!(ep.endpoints.unwrap()[0].addresses.is_empty());
    }

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
