//! Kubernetes objects in, election inputs out. Pure: the runtime hands over what its watches
//! hold; nothing here talks to the API.

use std::collections::{BTreeMap, BTreeSet};

use ferrolb_api::annotations::IP_ALLOCATED_FROM_POOL;
use ferrolb_api::{IPAddressPool, L2Advertisement};
use ferrolb_ipam::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
use k8s_openapi::api::core::v1::{Node as KubeNode, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as KubeSelector;

use crate::election::{Advertisement, Node, ServiceFacts};

/// Label EndpointSlices carry to name their Service.
const SLICE_SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// A Kubernetes label selector for the election; an unknown operator matches nothing, so a typo
/// never widens who announces.
pub fn selector(s: &KubeSelector) -> LabelSelector {
    let match_expressions = s
        .match_expressions
        .iter()
        .flatten()
        .map(|e| match e.operator.parse() {
            Ok(operator) => LabelSelectorRequirement {
                key: e.key.clone(),
                operator,
                values: e.values.clone().unwrap_or_default(),
            },
            // Requires a value of a key to be in the empty set: never true.
            Err(_) => LabelSelectorRequirement {
                key: e.key.clone(),
                operator: SelectorOperator::In,
                values: Vec::new(),
            },
        })
        .collect();
    LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions,
    }
}

/// An L2Advertisement for the election.
pub fn advertisement(ad: &L2Advertisement) -> Advertisement {
    let spec = &ad.spec;
    Advertisement {
        name: ad.metadata.name.clone().unwrap_or_default(),
        pools: spec.ip_address_pools.clone(),
        pool_selectors: spec
            .ip_address_pool_selectors
            .iter()
            .map(selector)
            .collect(),
        node_selectors: spec.node_selectors.iter().map(selector).collect(),
        interfaces: spec.interfaces.clone(),
        service_selectors: spec.service_selectors.iter().map(selector).collect(),
    }
}

/// Pool labels by name, for `ipAddressPoolSelectors`.
pub fn pool_labels<'a>(
    pools: impl IntoIterator<Item = &'a IPAddressPool>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    pools
        .into_iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.metadata.labels.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// A Node for the election.
pub fn node(n: &KubeNode) -> Node {
    let network_unavailable = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True");
    Node {
        name: n.metadata.name.clone().unwrap_or_default(),
        labels: n.metadata.labels.clone().unwrap_or_default(),
        network_unavailable,
    }
}

/// Nodes with an endpoint of the Service that is ready, or serving while terminating (so a
/// draining pod keeps its node announcing until it stops serving).
pub fn serving_nodes<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> BTreeSet<String> {
    let mut nodes = BTreeSet::new();
    for slice in slices {
        for ep in slice.endpoints.iter().flatten() {
            let cond = ep.conditions.as_ref();
            let ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
            if (ready || (serving && terminating))
                && let Some(node) = &ep.node_name
            {
                nodes.insert(node.clone());
            }
        }
    }
    nodes
}

/// `namespace/name` of the Service an EndpointSlice belongs to.
pub fn slice_service(slice: &EndpointSlice) -> Option<String> {
    let name = slice.metadata.labels.as_ref()?.get(SLICE_SERVICE_LABEL)?;
    Some(format!(
        "{}/{}",
        slice.metadata.namespace.as_deref().unwrap_or_default(),
        name
    ))
}

/// Whether the speaker handles a Service: a LoadBalancer of its class (None: no class).
pub fn ours(svc: &Service, lb_class: Option<&str>) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_deref()) == lb_class
}

/// A Service with an IP, for the election; None when it has no IP yet or is not ours.
pub fn service(
    svc: &Service,
    lb_class: Option<&str>,
    slices: &[&EndpointSlice],
) -> Option<ServiceFacts> {
    if !ours(svc, lb_class) {
        return None;
    }
    let ips: Vec<std::net::IpAddr> = svc
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    if ips.is_empty() {
        return None;
    }
    let local = svc
        .spec
        .as_ref()
        .and_then(|s| s.external_traffic_policy.as_deref())
        == Some("Local");
    Some(ServiceFacts {
        key: format!(
            "{}/{}",
            svc.metadata.namespace.as_deref().unwrap_or_default(),
            svc.metadata.name.as_deref().unwrap_or_default()
        ),
        ips,
        pool: svc
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| IP_ALLOCATED_FROM_POOL.get(a))
            .map(str::to_owned),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        local,
        serving_nodes: serving_nodes(slices.iter().copied()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn only_ready_or_serving_terminating_endpoints_count() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["198.51.100.1"], "nodeName": "a", "conditions": {"ready": true}},
                {"addresses": ["198.51.100.2"], "nodeName": "b", "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["198.51.100.3"], "nodeName": "c", "conditions": {"ready": false, "serving": false, "terminating": true}},
                {"addresses": ["198.51.100.4"], "nodeName": "d", "conditions": {"ready": false}},
            ],
        }))
        .unwrap();
        assert_eq!(
            serving_nodes([&slice]),
            BTreeSet::from(["a".into(), "b".into()])
        );
        assert_eq!(slice_service(&slice).as_deref(), Some("default/web"));
    }

    #[test]
    fn services_without_an_ip_or_of_another_class_are_skipped() {
        let svc = |extra: serde_json::Value| -> Service {
            let mut v = json!({"metadata": {"name": "web", "namespace": "default",
                                            "annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
                               "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"}});
            json_patch::merge(&mut v, &extra);
            serde_json::from_value(v).unwrap()
        };
        assert!(service(&svc(json!({})), None, &[]).is_none());
        let with_ip = svc(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}));
        let facts = service(&with_ip, None, &[]).unwrap();
        assert_eq!(facts.pool.as_deref(), Some("lan"));
        assert!(facts.local);
        assert!(service(&with_ip, Some("other"), &[]).is_none());
    }

    #[test]
    fn an_unknown_selector_operator_selects_nothing() {
        let s: KubeSelector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
        )
        .unwrap();
        assert!(!selector(&s).matches(&BTreeMap::from([("a".into(), "x".into())])));
    }

    #[test]
    fn network_unavailable_nodes_are_marked() {
        let n: KubeNode = serde_json::from_value(json!({"metadata": {"name": "a"},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}]}}))
        .unwrap();
        assert!(node(&n).network_unavailable);
    }
}
