//! What kube-apiserver does to a Service beyond storing it: defaults (type, protocols, target
//! ports, IP families and policy), cluster IPs from the service ranges, node ports, and the
//! validation ferrolb depends on (an unparseable `spec.loadBalancerIP` is refused with 422).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};

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

    /// Defaults, allocates and validates a Service on create (`old` = None) or update.
    /// On error nothing is allocated.
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
        let primary = self.primary_family(primary_v6);
        let spec = service
            .get_mut("spec")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| invalid(&name, "spec", "Required value"))?;
        let ty = spec
            .entry("type")
            .or_insert_with(|| json!("ClusterIP"))
            .as_str()
            .unwrap_or("ClusterIP")
            .to_owned();
        if !matches!(
            ty.as_str(),
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            return Err(invalid(
                &name,
                "spec.type",
                format!("Unsupported value: \"{ty}\""),
            ));
        }
        spec.entry("sessionAffinity")
            .or_insert_with(|| json!("None"));
        if let Some(ip) = spec.get("loadBalancerIP").and_then(Value::as_str)
            && !ip.is_empty()
            && ip.parse::<IpAddr>().is_err()
        {
            return Err(invalid(
                &name,
                "spec.loadBalancerIP",
                format!("Invalid value: \"{ip}\": must be a valid IP address"),
            ));
        }
        if spec.contains_key("loadBalancerClass") && ty != "LoadBalancer" {
            return Err(invalid(
                &name,
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        if let Some(old_class) = old.map(|o| &o["spec"]["loadBalancerClass"]) {
            let old_type = old.map_or("", |o| o["spec"]["type"].as_str().unwrap_or(""));
            if old_type == "LoadBalancer"
                && ty == "LoadBalancer"
                && spec.get("loadBalancerClass").unwrap_or(&Value::Null) != old_class
            {
                return Err(invalid(
                    &name,
                    "spec.loadBalancerClass",
                    "Invalid value: field is immutable",
                ));
            }
        }
        if ty == "ExternalName" {
            return Ok(());
        }
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        match spec.get_mut("ports").and_then(Value::as_array_mut) {
            Some(ports) if !ports.is_empty() => {
                for p in ports.iter_mut() {
                    let Some(p) = p.as_object_mut() else { continue };
                    p.entry("protocol").or_insert_with(|| json!("TCP"));
                    let port = p.get("port").cloned().unwrap_or(Value::Null);
                    if !port.as_u64().is_some_and(|n| (1..=65535).contains(&n)) {
                        return Err(invalid(
                            &name,
                            "spec.ports[].port",
                            format!("Invalid value: {port}: must be between 1 and 65535"),
                        ));
                    }
                    p.entry("targetPort").or_insert(port);
                }
            }
            _ if headless => {}
            _ => return Err(invalid(&name, "spec.ports", "Required value")),
        }

        // Families and cluster IPs. Existing cluster IPs are immutable.
        let old_ips: Vec<String> = old
            .and_then(|o| o["spec"]["clusterIPs"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let policy = spec
            .get("ipFamilyPolicy")
            .and_then(Value::as_str)
            .unwrap_or("SingleStack")
            .to_owned();
        let dual_capable = self.v4.is_some() && self.v6.is_some();
        if policy == "RequireDualStack" && !dual_capable {
            return Err(invalid(
                &name,
                "spec.ipFamilyPolicy",
                "Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
            ));
        }
        let requested_ips: Vec<String> = match spec.get("clusterIPs").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => spec
                .get("clusterIP")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| vec![s.to_owned()])
                .unwrap_or_default(),
        };
        let mut families: Vec<String> = spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if families.is_empty() {
            families = requested_ips
                .iter()
                .filter_map(|s| s.parse::<IpAddr>().ok())
                .map(|ip| family_of(ip).to_owned())
                .collect();
        }
        if families.is_empty() {
            families.push(primary.to_owned());
        }
        let other = if families[0] == "IPv4" {
            "IPv6"
        } else {
            "IPv4"
        };
        if policy != "SingleStack" && dual_capable && families.len() == 1 {
            families.push(other.to_owned());
        }
        if policy == "SingleStack" {
            families.truncate(1);
        }
        for (i, f) in families.iter().enumerate() {
            if self.range(f).is_none() {
                return Err(invalid(
                    &name,
                    &format!("spec.ipFamilies[{i}]"),
                    format!("Unsupported value: \"{f}\": this cluster has no {f} service range"),
                ));
            }
        }
        spec.insert("ipFamilyPolicy".into(), json!(policy));
        spec.insert("ipFamilies".into(), json!(families));
        spec.entry("internalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            spec.entry("externalTrafficPolicy")
                .or_insert_with(|| json!("Cluster"));
        }

        let mut newly_taken: Vec<IpAddr> = Vec::new();
        let mut new_ports: Vec<u16> = Vec::new();
        let outcome = (|| -> ApiResult<()> {
            let ips: Vec<String> = if headless {
                vec!["None".into()]
            } else if !old_ips.is_empty() {
                if !requested_ips.is_empty() && requested_ips[0] != old_ips[0] {
                    return Err(invalid(
                        &name,
                        "spec.clusterIPs[0]",
                        "Invalid value: may not change once set",
                    ));
                }
                let mut ips = old_ips.clone();
                for f in families.iter().skip(ips.len()) {
                    let ip = self
                        .allocate_ip(f)
                        .ok_or_else(|| invalid(&name, "spec.clusterIPs", "range is full"))?;
                    newly_taken.push(ip);
                    ips.push(ip.to_string());
                }
                ips.truncate(families.len());
                ips
            } else {
                let mut ips = Vec::new();
                for (i, f) in families.iter().enumerate() {
                    let ip = match requested_ips.get(i) {
                        Some(s) => {
                            let ip: IpAddr = s.parse().map_err(|_| {
                                invalid(
                                    &name,
                                    &format!("spec.clusterIPs[{i}]"),
                                    format!("Invalid value: \"{s}\": must be a valid IP address"),
                                )
                            })?;
                            let in_range = self.range(f).and_then(|r| r.offset_of(ip)).is_some();
                            if !in_range || family_of(ip) != f {
                                return Err(invalid(
                                    &name,
                                    &format!("spec.clusterIPs[{i}]"),
                                    format!(
                                        "Invalid value: \"{s}\": provided IP is not in the valid range"
                                    ),
                                ));
                            }
                            if !self.used_ips.insert(ip) {
                                return Err(invalid(
                                    &name,
                                    &format!("spec.clusterIPs[{i}]"),
                                    format!(
                                        "Invalid value: \"{s}\": provided IP is already allocated"
                                    ),
                                ));
                            }
                            ip
                        }
                        None => self
                            .allocate_ip(f)
                            .ok_or_else(|| invalid(&name, "spec.clusterIPs", "range is full"))?,
                    };
                    newly_taken.push(ip);
                    ips.push(ip.to_string());
                }
                ips
            };
            spec.insert("clusterIP".into(), json!(ips[0]));
            spec.insert("clusterIPs".into(), json!(ips));

            let wants_node_ports = ty == "NodePort"
                || (ty == "LoadBalancer"
                    && spec.get("allocateLoadBalancerNodePorts") != Some(&Value::Bool(false)));
            if ty == "LoadBalancer" {
                spec.entry("allocateLoadBalancerNodePorts")
                    .or_insert(Value::Bool(true));
            }
            let old_node_ports: Vec<(u64, u16)> = old
                .and_then(|o| o["spec"]["ports"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p["port"].as_u64()?,
                        u16::try_from(p["nodePort"].as_u64()?).ok()?,
                    ))
                })
                .collect();
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut() {
                    if !wants_node_ports {
                        if let Some(map) = p.as_object_mut() {
                            map.remove("nodePort");
                        }
                        continue;
                    }
                    let port = p["port"].as_u64().unwrap_or(0);
                    let has = p
                        .get("nodePort")
                        .and_then(Value::as_u64)
                        .and_then(|n| u16::try_from(n).ok());
                    let node_port = match has {
                        Some(n) if old_node_ports.iter().any(|(_, o)| *o == n) => n,
                        Some(n) => {
                            if !NODE_PORTS.contains(&n) || !self.used_ports.insert(n) {
                                return Err(invalid(
                                    &name,
                                    "spec.ports[].nodePort",
                                    format!(
                                        "Invalid value: {n}: provided port is already allocated or out of range"
                                    ),
                                ));
                            }
                            new_ports.push(n);
                            n
                        }
                        None => match old_node_ports.iter().find(|(p, _)| *p == port) {
                            Some((_, n)) => *n,
                            None => {
                                let n = self.allocate_port().ok_or_else(|| {
                                    invalid(&name, "spec.ports[].nodePort", "no node ports left")
                                })?;
                                new_ports.push(n);
                                n
                            }
                        },
                    };
                    p["nodePort"] = json!(node_port);
                }
            }
            Ok(())
        })();
        if outcome.is_err() {
            for ip in newly_taken {
                self.used_ips.remove(&ip);
            }
            for port in new_ports {
                self.used_ports.remove(&port);
            }
            return outcome;
        }
        // Release what the update gave up.
        if let Some(old) = old {
            let kept_ips: BTreeSet<&str> = service["spec"]["clusterIPs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for ip in &old_ips {
                if !kept_ips.contains(ip.as_str())
                    && let Ok(ip) = ip.parse()
                {
                    self.used_ips.remove(&ip);
                }
            }
            let kept_ports: BTreeSet<u16> = node_ports(service).collect();
            for port in node_ports(old) {
                if !kept_ports.contains(&port) {
                    self.used_ports.remove(&port);
                }
            }
        }
        Ok(())
    }
}

fn node_ports(service: &Value) -> impl Iterator<Item = u16> + '_ {
    service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
