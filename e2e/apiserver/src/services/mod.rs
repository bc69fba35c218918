//! What kube-apiserver does to a Service beyond storing it: defaults (type, protocols, target
//! ports, IP families and policy), cluster IPs from the service ranges, node ports, and the
//! validation ferrolb depends on (an unparseable `spec.loadBalancerIP` is refused with 422).
//!
//! This module keeps the allocation state; [`rules`] holds admission as a list of named rules,
//! run in order on each create and update.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

mod rules;

/// A service range: addresses are numbered from the one after the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr(IpNet);

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Cidr {
    fn parse(s: &str) -> Option<Self> {
        s.parse::<IpNet>().ok().map(|n| Self(n.trunc()))
    }

    fn v6(&self) -> bool {
        matches!(self.0, IpNet::V6(_))
    }

    /// Usable addresses (network address excluded), capped so a huge IPv6 range stays cheap.
    fn size(&self) -> u128 {
        let host_bits = u32::from(self.0.max_prefix_len() - self.0.prefix_len()).min(20);
        (1u128 << host_bits).saturating_sub(1)
    }

    fn nth(&self, n: u128) -> IpAddr {
        let v = to_u128(self.0.network()) + 1 + n;
        if self.v6() {
            IpAddr::V6(v.into())
        } else {
            IpAddr::V4(u32::try_from(v).unwrap_or(u32::MAX).into())
        }
    }

    fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        let base = to_u128(self.0.network());
        let v = to_u128(ip);
        (self.0.contains(&ip) && v > base && v - base - 1 < self.size()).then(|| v - base - 1)
    }
}

/// Cluster IP and node port allocation state.
#[derive(Debug)]
pub struct ServiceAllocations {
    v4: Option<Cidr>,
    v6: Option<Cidr>,
    used_ips: BTreeSet<IpAddr>,
    used_ports: BTreeSet<u16>,
    next_v4: u128,
    next_v6: u128,
    next_port: u16,
}

const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn family_of(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn invalid(name: &str, field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid("Service", name, field, message)
}

impl ServiceAllocations {
    /// Service ranges as kube-apiserver's `--service-cluster-ip-range` (one or two CIDRs; the first
    /// is the primary family).
    ///
    /// # Errors
    /// A message for a range that does not parse.
    pub fn new(ranges: &[String]) -> Result<Self, String> {
        let mut s = Self {
            v4: None,
            v6: None,
            used_ips: BTreeSet::new(),
            used_ports: BTreeSet::new(),
            next_v4: 0,
            next_v6: 0,
            next_port: *NODE_PORTS.start(),
        };
        for r in ranges {
            let cidr = Cidr::parse(r).ok_or_else(|| format!("bad service range {r}"))?;
            if cidr.v6() {
                s.v6 = Some(cidr);
            } else {
                s.v4 = Some(cidr);
            }
        }
        Ok(s)
    }

    fn primary_family(&self, ranges_first_v6: bool) -> &'static str {
        if ranges_first_v6 || self.v4.is_none() {
            "IPv6"
        } else {
            "IPv4"
        }
    }

    fn range(&self, family: &str) -> Option<Cidr> {
        if family == "IPv6" { self.v6 } else { self.v4 }
    }

    fn allocate_ip(&mut self, family: &str) -> Option<IpAddr> {
        let cidr = self.range(family)?;
        let size = cidr.size();
        let next = if family == "IPv6" {
            &mut self.next_v6
        } else {
            &mut self.next_v4
        };
        for _ in 0..size {
            let ip = cidr.nth(*next % size);
            *next = (*next + 1) % size;
            if self.used_ips.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    fn allocate_port(&mut self) -> Option<u16> {
        for _ in NODE_PORTS {
            let port = self.next_port;
            self.next_port = if port == *NODE_PORTS.end() {
                *NODE_PORTS.start()
            } else {
                port + 1
            };
            if self.used_ports.insert(port) {
                return Some(port);
            }
        }
        None
    }

    /// Frees what a deleted Service held.
    pub fn release(&mut self, service: &Value) {
        for ip in service["spec"]["clusterIPs"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(ip) = ip.as_str().and_then(|s| s.parse().ok()) {
                self.used_ips.remove(&ip);
            }
        }
        for port in node_ports(service) {
            self.used_ports.remove(&port);
        }
    }

    /// Defaults, allocates and validates a Service on create (`old` = None) or update, rule by
    /// rule ([`rules::RULES`]). On error nothing is allocated.
    ///
    /// # Errors
    /// `Invalid` naming the field.
    pub fn admit(
        &mut self,
        service: &mut Value,
        old: Option<&Value>,
        primary_v6: bool,
    ) -> ApiResult<()> {
        let name = service["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
            return Err(invalid(&name, "spec", "Required value"));
        };
        let mut review = Review {
            name,
            spec,
            old,
            primary_v6,
            taken_ips: Vec::new(),
            taken_ports: Vec::new(),
        };
        for rule in rules::RULES {
            if review.service_type() == "ExternalName" && !rule.for_external_name {
                continue;
            }
            if let Err(e) = (rule.run)(self, &mut review) {
                tracing::debug!(service = %review.name, rule = rule.name, error = %e, "service refused");
                for ip in &review.taken_ips {
                    self.used_ips.remove(ip);
                }
                for port in &review.taken_ports {
                    self.used_ports.remove(port);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// One Service under admission, as the rules see it.
#[derive(Debug)]
struct Review<'a> {
    /// The Service's name, for error messages.
    name: String,
    /// Its spec, which the rules default and fill in.
    spec: &'a mut Map<String, Value>,
    /// The stored version, on update.
    old: Option<&'a Value>,
    /// Whether the first service range is IPv6 (the cluster's primary family).
    primary_v6: bool,
    /// Cluster IPs this admission took: given back when a later rule refuses.
    taken_ips: Vec<IpAddr>,
    /// Node ports this admission took, likewise.
    taken_ports: Vec<u16>,
}

impl Review<'_> {
    fn service_type(&self) -> &str {
        self.spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
    }

    fn headless(&self) -> bool {
        self.spec.get("clusterIP").and_then(Value::as_str) == Some("None")
    }

    fn invalid(&self, field: &str, message: impl Into<String>) -> ApiError {
        invalid(&self.name, field, message)
    }
}

fn node_ports(service: &Value) -> impl Iterator<Item = u16> + '_ {
    node_ports_of(&service["spec"]["ports"])
}

/// The node ports in a `spec.ports` list.
fn node_ports_of(ports: &Value) -> impl Iterator<Item = u16> + '_ {
    ports
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn alloc() -> ServiceAllocations {
        ServiceAllocations::new(&["198.51.100.0/24".into(), "2001:db8:96::/112".into()]).unwrap()
    }

    fn lb(extra: Value) -> Value {
        let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        json_patch::merge(&mut svc, &extra);
        svc
    }

    #[test]
    fn load_balancer_services_get_cluster_ip_families_and_node_ports() {
        let mut a = alloc();
        let mut svc = lb(json!({}));
        a.admit(&mut svc, None, false).unwrap();
        assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(svc["spec"]["clusterIP"], "198.51.100.1");
        assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn dual_stack_policies_get_both_families_in_order() {
        let mut a = alloc();
        let mut svc =
            lb(json!({"spec": {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}}));
        a.admit(&mut svc, None, false).unwrap();
        assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv6", "IPv4"]));
        assert_eq!(svc["spec"]["clusterIPs"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn node_ports_are_not_allocated_when_disabled() {
        let mut a = alloc();
        let mut svc = lb(json!({"spec": {"allocateLoadBalancerNodePorts": false}}));
        a.admit(&mut svc, None, false).unwrap();
        assert!(svc["spec"]["ports"][0].get("nodePort").is_none());
    }

    #[test]
    fn unparseable_load_balancer_ip_is_invalid() {
        let mut a = alloc();
        let mut svc = lb(json!({"spec": {"loadBalancerIP": "not-an-ip"}}));
        let e = a.admit(&mut svc, None, false).unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(e.to_string().contains("spec.loadBalancerIP"), "{e}");
    }

    #[test]
    fn updates_keep_cluster_ips_and_node_ports() {
        let mut a = alloc();
        let mut svc = lb(json!({}));
        a.admit(&mut svc, None, false).unwrap();
        let old = svc.clone();
        let mut new = lb(json!({"metadata": {"labels": {"x": "y"}}}));
        a.admit(&mut new, Some(&old), false).unwrap();
        assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert_eq!(
            new["spec"]["ports"][0]["nodePort"],
            old["spec"]["ports"][0]["nodePort"]
        );
    }
}
