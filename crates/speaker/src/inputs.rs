//! Kubernetes objects in, election inputs out. Pure: the runtime hands over what its watches
//! hold; nothing here talks to the API.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_api::{IPAddressPool, L2Advertisement};
use ferrolb_ipam::{AddrRange, LabelSelector, LabelSelectorRequirement, SelectorOperator};
use k8s_openapi::api::core::v1::{Node as KubeNode, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as KubeSelector, ObjectMeta};

use crate::election::{Advertisement, Node, PoolFacts, ServiceFacts};

/// Label EndpointSlices carry to name their Service.
const SLICE_SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// Annotation each speaker writes on its own Pod: the interfaces of its node that can carry
/// Service IPs, comma separated (empty: none). Every speaker reads them all, so every speaker
/// leaves the same nodes out of the candidates.
pub const USABLE_INTERFACES: &str = "ferrolb.io/usable-interfaces";

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

/// Every pool by name, with its labels and addresses: the entries of `spec.addresses` that
/// parse and those of `status.lastValidAddresses` (what the controller last accepted), so an edit
/// that breaks a pool silences none of the addresses it held.
pub fn pools<'a>(
    pools: impl IntoIterator<Item = &'a IPAddressPool>,
) -> BTreeMap<String, PoolFacts> {
    pools
        .into_iter()
        .map(|p| {
            let last_valid = p
                .status
                .as_ref()
                .and_then(|s| s.last_valid_addresses.as_ref());
            let ranges = p
                .spec
                .addresses
                .iter()
                .chain(last_valid.into_iter().flatten())
                .filter_map(|entry| AddrRange::parse(entry).ok())
                .collect();
            let facts = PoolFacts {
                labels: p.metadata.labels.clone().unwrap_or_default(),
                ranges,
            };
            (p.metadata.name.clone().unwrap_or_default(), facts)
        })
        .collect()
}

/// The value of [`USABLE_INTERFACES`] for a set of interfaces.
pub fn usable_value(interfaces: &BTreeSet<String>) -> String {
    interfaces.iter().cloned().collect::<Vec<_>>().join(",")
}

/// What a speaker Pod published in [`USABLE_INTERFACES`]; `None` when it published nothing.
pub fn usable_interfaces(pod: &Pod) -> Option<BTreeSet<String>> {
    let value = pod.metadata.annotations.as_ref()?.get(USABLE_INTERFACES)?;
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// Node → usable interfaces, for every speaker Pod that published them.
pub fn usable_by_node<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> BTreeMap<String, BTreeSet<String>> {
    pods.into_iter()
        .filter_map(|p| Some((p.spec.as_ref()?.node_name.clone()?, usable_interfaces(p)?)))
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

/// Nodes with an endpoint in `slice` that is ready, or serving while terminating (so a draining
/// pod keeps its node announcing until it stops serving).
pub fn serving_nodes(slice: &EndpointSlice) -> BTreeSet<String> {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|ep| {
            let cond = ep.conditions.as_ref();
            let ready = cond.and_then(|c| c.ready).unwrap_or(true);
            let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
            ready || (serving && terminating)
        })
        .filter_map(|ep| ep.node_name.clone())
        .collect()
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

/// `namespace/name` of an object.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// What the speaker keeps of a Service: whether it is a LoadBalancer of which class, its
/// traffic policy, IPs and labels, and what Events name it by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRecord {
    /// `namespace/name`.
    pub key: String,
    /// For Events.
    pub uid: Option<String>,
    /// For Events.
    pub resource_version: Option<String>,
    /// `spec.type` is `LoadBalancer`.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass`.
    pub class: Option<String>,
    /// `externalTrafficPolicy: Local`.
    pub local: bool,
    /// The IPs of `status.loadBalancer.ingress` (unparseable ones left out).
    pub ips: Vec<IpAddr>,
    /// For the advertisements' Service selectors.
    pub labels: BTreeMap<String, String>,
}

impl ServiceRecord {
    /// The record of `svc`.
    pub fn of(svc: &Service) -> Self {
        let spec = svc.spec.as_ref();
        Self {
            key: key_of(&svc.metadata),
            uid: svc.metadata.uid.clone(),
            resource_version: svc.metadata.resource_version.clone(),
            load_balancer: spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"),
            class: spec.and_then(|s| s.load_balancer_class.clone()),
            local: spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local"),
            ips: svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect(),
            labels: svc.metadata.labels.clone().unwrap_or_default(),
        }
    }

    /// What Events about the Service name it by.
    pub fn object_ref(&self) -> ObjectReference {
        let (namespace, name) = self.key.split_once('/').unwrap_or(("", &self.key));
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            uid: self.uid.clone(),
            resource_version: self.resource_version.clone(),
            ..ObjectReference::default()
        }
    }
}

/// What the speaker keeps of an EndpointSlice: its Service and the nodes of its serving
/// endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceRecord {
    /// `namespace/name` of its Service, if it names one.
    pub service: Option<String>,
    /// See [`serving_nodes`].
    pub serving_nodes: BTreeSet<String>,
}

impl SliceRecord {
    /// The record of `slice`.
    pub fn of(slice: &EndpointSlice) -> Self {
        Self {
            service: slice_service(slice),
            serving_nodes: serving_nodes(slice),
        }
    }
}

/// Whether the speaker handles a Service: a LoadBalancer of its class (None: no class).
pub fn ours(svc: &ServiceRecord, lb_class: Option<&str>) -> bool {
    svc.load_balancer && svc.class.as_deref() == lb_class
}

/// A Service with an IP, for the election; None when it has no IP yet or is not ours.
pub fn service(
    svc: &ServiceRecord,
    lb_class: Option<&str>,
    slices: &[&SliceRecord],
) -> Option<ServiceFacts> {
    if !ours(svc, lb_class) || svc.ips.is_empty() {
        return None;
    }
    Some(ServiceFacts {
        key: svc.key.clone(),
        ips: svc.ips.clone(),
        labels: svc.labels.clone(),
        local: svc.local,
        serving_nodes: slices
            .iter()
            .flat_map(|s| s.serving_nodes.iter().cloned())
            .collect(),
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
        let record = SliceRecord::of(&slice);
        assert_eq!(
            record.serving_nodes,
            BTreeSet::from(["a".into(), "b".into()])
        );
        assert_eq!(record.service.as_deref(), Some("default/web"));
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
        let record = |v| ServiceRecord::of(&svc(v));
        assert!(service(&record(json!({})), None, &[]).is_none());
        let with_ip =
            record(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}));
        let facts = service(&with_ip, None, &[]).unwrap();
        assert!(facts.local);
        assert_eq!(facts.key, "default/web");
        assert!(service(&with_ip, Some("other"), &[]).is_none());
        let other_class = record(json!({"spec": {"loadBalancerClass": "other"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}}));
        assert!(service(&other_class, None, &[]).is_none());
        assert!(service(&other_class, Some("other"), &[]).is_some());
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

    #[test]
    fn pool_addresses_are_the_parseable_spec_entries_and_the_last_valid_ones() {
        let pool: IPAddressPool = serde_json::from_value(json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "lan", "namespace": "ferrolb-system", "labels": {"tier": "web"}},
            "spec": {"addresses": ["192.0.2.0/28", "not an address", "2001:db8::10-2001:db8::1f"]},
            "status": {"lastValidAddresses": ["198.51.100.0/30"]},
        }))
        .unwrap();
        let facts = &pools([&pool])["lan"];
        assert_eq!(facts.labels.get("tier").map(String::as_str), Some("web"));
        for inside in ["192.0.2.15", "2001:db8::1f", "198.51.100.3"] {
            assert!(facts.contains(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["192.0.2.16", "2001:db8::20", "198.51.100.4", "203.0.113.1"] {
            assert!(!facts.contains(outside.parse().unwrap()), "{outside}");
        }
    }

    #[test]
    fn usable_interfaces_are_read_per_node_and_absent_means_unpublished() {
        let pod = |node: &str, annotation: Option<&str>| -> Pod {
            let mut v = json!({"metadata": {"name": format!("speaker-{node}")},
                               "spec": {"nodeName": node, "containers": []}});
            if let Some(a) = annotation {
                v["metadata"]["annotations"] = json!({USABLE_INTERFACES: a});
            }
            serde_json::from_value(v).unwrap()
        };
        let pods = [
            pod("a", Some("eth0, eth1")),
            pod("b", Some("")),
            pod("c", None),
        ];
        let usable = usable_by_node(&pods);
        assert_eq!(
            usable.get("a"),
            Some(&BTreeSet::from(["eth0".into(), "eth1".into()]))
        );
        assert_eq!(usable.get("b"), Some(&BTreeSet::new()));
        assert!(!usable.contains_key("c"));
        assert_eq!(usable_value(&usable["a"]), "eth0,eth1");
    }
}
