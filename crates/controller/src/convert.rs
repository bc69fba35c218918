//! Kubernetes objects in, plain allocator inputs out: which Services are ours, what each one
//! asks for, and what each pool offers. Pure: no client, no clock.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ferrolb_api::IPAddressPool;
use ferrolb_api::annotations::{
    ADDRESS_POOL, ALLOW_SHARED_IP, IP_ALLOCATED_FROM_POOL, LOAD_BALANCER_IPS,
};
use ferrolb_ipam as ipam;
use ipam::{Family, FamilyPolicy, Port, Protocol, RequestedIps, ServiceRequest};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// Whether the controller handles a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// `type: LoadBalancer` of our class: allocate.
    Ours,
    /// Not (or no longer) `type: LoadBalancer`: hold nothing for it.
    NotLoadBalancer,
    /// A LoadBalancer of another class: never touch it, not even its status.
    OtherClass,
}

/// Decides ownership as DESIGN.md says: with a class flag only Services of that class; without
/// one only Services with no class.
pub fn ownership(svc: &Service, lb_class: Option<&str>) -> Ownership {
    let spec = svc.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        return Ownership::NotLoadBalancer;
    }
    let class = spec.and_then(|s| s.load_balancer_class.as_deref());
    if class == lb_class {
        Ownership::Ours
    } else {
        Ownership::OtherClass
    }
}

/// Which Service: the key of everything the controller keeps or writes per Service. Written as
/// `namespace/name`, which is also the allocator's key (the allocator takes opaque strings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceKey {
    /// The key of the Service `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of the object with this metadata (missing parts are empty).
    pub fn from_meta(meta: &ObjectMeta) -> Self {
        Self::new(
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        )
    }

    /// The key of `svc`.
    pub fn of(svc: &Service) -> Self {
        Self::from_meta(&svc.metadata)
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What is wrong with a Service's request before the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// An entry of the loadBalancerIPs annotation is not an IP.
    #[error("annotation {annotation}: \"{value}\" is not an IP address")]
    BadAnnotationIp {
        /// The spelling of the annotation found.
        annotation: &'static str,
        /// The bad entry.
        value: String,
    },
    /// `spec.loadBalancerIP` is not an IP.
    #[error("spec.loadBalancerIP: \"{0}\" is not an IP address")]
    BadSpecIp(String),
    /// A port number outside 1..=65535 or a protocol ferrolb does not know.
    #[error("spec.ports: {0}")]
    BadPort(String),
}

fn family(name: &str) -> Option<Family> {
    match name {
        "IPv4" => Some(Family::V4),
        "IPv6" => Some(Family::V6),
        _ => None,
    }
}

fn other(f: Family) -> Family {
    match f {
        Family::V4 => Family::V6,
        Family::V6 => Family::V4,
    }
}

/// The Service's family policy from `ipFamilyPolicy` and `ipFamilies` (the apiserver defaults
/// both; a missing value falls back to the family of a requested IP, then IPv4).
fn family_policy(svc: &Service, requested: &[IpAddr]) -> FamilyPolicy {
    let spec = svc.spec.as_ref();
    let first = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .and_then(|f| family(f))
        .or_else(|| {
            requested
                .first()
                .map(|ip| if ip.is_ipv6() { Family::V6 } else { Family::V4 })
        })
        .unwrap_or(Family::V4);
    match spec.and_then(|s| s.ip_family_policy.as_deref()) {
        Some("PreferDualStack") => FamilyPolicy::PreferDualStack(first, other(first)),
        Some("RequireDualStack") => FamilyPolicy::RequireDualStack(first, other(first)),
        _ => FamilyPolicy::SingleStack(first),
    }
}

fn ports(svc: &Service) -> Result<Vec<Port>, RequestError> {
    let mut out = Vec::new();
    for p in svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
    {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => return Err(RequestError::BadPort(format!("unknown protocol {other}"))),
        };
        let port = u16::try_from(p.port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| RequestError::BadPort(format!("port {} is out of range", p.port)))?;
        out.push(Port { protocol, port });
    }
    Ok(out)
}

/// For `externalTrafficPolicy: Local`, Services may share an IP only when they select the same
/// pods, so the selector in a canonical text form is the backend key.
fn backend_key(svc: &Service) -> Option<String> {
    let spec = svc.spec.as_ref()?;
    if spec.external_traffic_policy.as_deref() != Some("Local") {
        return None;
    }
    let selector = spec.selector.clone().unwrap_or_default();
    Some(
        selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The allocator request for a Service we own.
///
/// # Errors
/// When an annotation, the requested IP or a port cannot be understood.
pub fn request(
    svc: &Service,
    namespace_labels: &BTreeMap<String, String>,
) -> Result<ServiceRequest, RequestError> {
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    let from_annotation = match LOAD_BALANCER_IPS.lookup(&annotations) {
        Some((annotation, value)) => value
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.parse().map_err(|_| RequestError::BadAnnotationIp {
                    annotation,
                    value: v.to_owned(),
                })
            })
            .collect::<Result<Vec<IpAddr>, _>>()?,
        None => Vec::new(),
    };
    let from_spec = match svc
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(ip) => Some(
            ip.parse()
                .map_err(|_| RequestError::BadSpecIp(ip.to_owned()))?,
        ),
        None => None,
    };
    let requested: Vec<IpAddr> = from_annotation.iter().copied().chain(from_spec).collect();
    let mut req = ServiceRequest::new(
        svc.metadata.namespace.as_deref().unwrap_or_default(),
        svc.metadata.name.as_deref().unwrap_or_default(),
    );
    req.labels = svc.metadata.labels.clone().unwrap_or_default();
    req.namespace_labels = namespace_labels.clone();
    req.ports = ports(svc)?;
    req.sharing_key = ALLOW_SHARED_IP
        .get(&annotations)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);
    req.backend_key = backend_key(svc);
    req.families = family_policy(svc, &requested);
    req.requested_ips = RequestedIps {
        from_annotation,
        from_spec,
    };
    req.requested_pool = ADDRESS_POOL
        .get(&annotations)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    Ok(req)
}

/// The IPs in a Service's status, as the allocator restores them (hostnames are ignored).
pub fn status_ips(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The pool annotation ferrolb wrote, if any.
pub fn status_pool(svc: &Service) -> Option<String> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(IP_ALLOCATED_FROM_POOL.name))
        .cloned()
}

/// Converts a Kubernetes label selector.
///
/// # Errors
/// An entry Kubernetes refuses too: an operator it does not define, `In` / `NotIn` without
/// values, `Exists` / `DoesNotExist` with values.
pub fn label_selector(selector: &LabelSelector) -> Result<ipam::LabelSelector, String> {
    let match_expressions = selector
        .match_expressions
        .iter()
        .flatten()
        .map(|e| {
            ipam::LabelSelectorRequirement::parse(
                &e.key,
                &e.operator,
                e.values.clone().unwrap_or_default(),
            )
            .map_err(|why| format!("{why} (key \"{}\")", e.key))
        })
        .collect::<Result<_, _>>()?;
    Ok(ipam::LabelSelector {
        match_labels: selector.match_labels.clone().unwrap_or_default(),
        match_expressions,
    })
}

/// The allocator's view of a pool.
///
/// # Errors
/// A selector the allocator cannot evaluate, named by field.
pub fn pool_spec(pool: &IPAddressPool) -> Result<ipam::PoolSpec, String> {
    let spec = &pool.spec;
    let selectors = |list: &[LabelSelector],
                     field: &str|
     -> Result<Vec<ipam::LabelSelector>, String> {
        list.iter()
            .enumerate()
            .map(|(i, s)| {
                label_selector(s).map_err(|e| format!("spec.serviceAllocation.{field}[{i}]: {e}"))
            })
            .collect()
    };
    let service_allocation = match &spec.service_allocation {
        Some(a) => Some(ipam::ServiceAllocation {
            priority: a.priority.and_then(|p| u32::try_from(p).ok()),
            namespaces: a.namespaces.clone(),
            namespace_selectors: selectors(&a.namespace_selectors, "namespaceSelectors")?,
            service_selectors: selectors(&a.service_selectors, "serviceSelectors")?,
        }),
        None => None,
    };
    let mut out = ipam::PoolSpec::new(pool.metadata.name.as_deref().unwrap_or_default(), &[]);
    out.addresses = spec.addresses.clone();
    out.auto_assign = spec.auto_assign;
    out.avoid_buggy_ips = spec.avoid_buggy_ips;
    out.service_allocation = service_allocation;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn svc(extra: serde_json::Value) -> Service {
        let mut v = json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": "web"},
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
        });
        merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: &serde_json::Value) {
        if let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) {
            for (k, v) in b {
                if v.is_object() && a.get(k).is_some_and(serde_json::Value::is_object) {
                    merge(a.get_mut(k).unwrap(), v);
                } else {
                    a.insert(k.clone(), v.clone());
                }
            }
        }
    }

    #[test]
    fn without_a_class_flag_only_classless_load_balancers_are_ours() {
        assert_eq!(ownership(&svc(json!({})), None), Ownership::Ours);
        let classed = svc(json!({"spec": {"loadBalancerClass": "other.io/lb"}}));
        assert_eq!(ownership(&classed, None), Ownership::OtherClass);
        assert_eq!(ownership(&classed, Some("other.io/lb")), Ownership::Ours);
        assert_eq!(
            ownership(&svc(json!({})), Some("ferrolb.io/lb")),
            Ownership::OtherClass
        );
        assert_eq!(
            ownership(&svc(json!({"spec": {"type": "ClusterIP"}})), None),
            Ownership::NotLoadBalancer
        );
    }

    #[test]
    fn requests_read_annotations_aliases_spec_ip_and_families() {
        let s = svc(json!({
            "metadata": {"annotations": {
                "metallb.io/loadBalancerIPs": "192.0.2.5, 2001:db8::5",
                "ferrolb.io/address-pool": "lan",
                "metallb.universe.tf/allow-shared-ip": "key",
            }},
            "spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"], "externalTrafficPolicy": "Local",
                     "ports": [{"port": 53, "protocol": "UDP"}]},
        }));
        let r = request(&s, &BTreeMap::new()).unwrap();
        assert_eq!(r.key, "shop/web");
        assert_eq!(r.requested_ips.from_annotation.len(), 2);
        assert_eq!(r.requested_pool.as_deref(), Some("lan"));
        assert_eq!(r.sharing_key.as_deref(), Some("key"));
        assert_eq!(r.backend_key.as_deref(), Some("app=web"));
        assert_eq!(
            r.families,
            FamilyPolicy::RequireDualStack(Family::V6, Family::V4)
        );
        assert_eq!(r.ports, [Port::udp(53)]);
    }

    #[test]
    fn unparseable_requested_ips_are_errors_naming_the_value() {
        let s = svc(
            json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "192.0.2.1,nope"}}}),
        );
        let e = request(&s, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let s = svc(json!({"spec": {"loadBalancerIP": "192.0.2.300"}}));
        assert!(
            request(&s, &BTreeMap::new())
                .unwrap_err()
                .to_string()
                .contains("192.0.2.300")
        );
    }

    #[test]
    fn status_ips_skip_hostnames() {
        let s = svc(
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example"}]}}}),
        );
        assert_eq!(status_ips(&s), ["192.0.2.1".parse::<IpAddr>().unwrap()]);
    }
}
