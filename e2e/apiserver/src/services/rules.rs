//! Service admission as a list of named rules, each a small function run in order on a
//! [`Review`]. Rules marked `for_external_name: false` are skipped for `type: ExternalName`,
//! which has no ports, cluster IPs or node ports. A rule that refuses stops admission; what
//! earlier rules allocated is given back by the caller.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::{NODE_PORTS, Review, ServiceAllocations, family_of, node_ports, node_ports_of};
use crate::error::ApiResult;

/// One admission step.
pub(super) struct Rule {
    /// What it does, for logs.
    pub(super) name: &'static str,
    /// Whether it applies to `type: ExternalName`.
    pub(super) for_external_name: bool,
    /// The step itself.
    pub(super) run: fn(&mut ServiceAllocations, &mut Review<'_>) -> ApiResult<()>,
}

/// The rules, in the order kube-apiserver's defaulting and validation imply: types and
/// immutable fields first, then ports and families, then allocations (which must see the
/// defaulted families), then giving back what an update dropped.
pub(super) const RULES: &[Rule] = &[
    Rule {
        name: "type defaults to ClusterIP and must be known",
        for_external_name: true,
        run: default_type,
    },
    Rule {
        name: "loadBalancerIP must be an IP address",
        for_external_name: true,
        run: validate_load_balancer_ip,
    },
    Rule {
        name: "loadBalancerClass only on LoadBalancer, and immutable",
        for_external_name: true,
        run: validate_load_balancer_class,
    },
    Rule {
        name: "ports default protocol and targetPort, and are in range",
        for_external_name: false,
        run: default_ports,
    },
    Rule {
        name: "ipFamilyPolicy and ipFamilies default from the cluster's ranges",
        for_external_name: false,
        run: default_ip_families,
    },
    Rule {
        name: "traffic policies default to Cluster",
        for_external_name: false,
        run: default_traffic_policies,
    },
    Rule {
        name: "cluster IPs are allocated, kept, or checked",
        for_external_name: false,
        run: allocate_cluster_ips,
    },
    Rule {
        name: "node ports are allocated, kept, or checked",
        for_external_name: false,
        run: allocate_node_ports,
    },
    Rule {
        name: "an update gives back the cluster IPs and node ports it dropped",
        for_external_name: false,
        run: release_dropped,
    },
];

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The cluster IPs a spec asks for: `clusterIPs`, else `clusterIP`.
fn requested_ips(spec: &Map<String, Value>) -> Vec<String> {
    let ips = strings(spec.get("clusterIPs"));
    if !ips.is_empty() {
        return ips;
    }
    spec.get("clusterIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(|s| vec![s.to_owned()])
        .unwrap_or_default()
}

fn old_cluster_ips(review: &Review<'_>) -> Vec<String> {
    strings(review.old.map(|o| &o["spec"]["clusterIPs"]))
}

fn default_type(_: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    review
        .spec
        .entry("type")
        .or_insert_with(|| json!("ClusterIP"));
    let ty = review.service_type().to_owned();
    if !matches!(
        ty.as_str(),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        return Err(review.invalid("spec.type", format!("Unsupported value: \"{ty}\"")));
    }
    review
        .spec
        .entry("sessionAffinity")
        .or_insert_with(|| json!("None"));
    Ok(())
}

/// ferrolb relies on this one: an unparseable address is refused before any controller sees it.
fn validate_load_balancer_ip(_: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    if let Some(ip) = review.spec.get("loadBalancerIP").and_then(Value::as_str)
        && !ip.is_empty()
        && ip.parse::<IpAddr>().is_err()
    {
        return Err(review.invalid(
            "spec.loadBalancerIP",
            format!("Invalid value: \"{ip}\": must be a valid IP address"),
        ));
    }
    Ok(())
}

fn validate_load_balancer_class(
    _: &mut ServiceAllocations,
    review: &mut Review<'_>,
) -> ApiResult<()> {
    let load_balancer = review.service_type() == "LoadBalancer";
    if review.spec.contains_key("loadBalancerClass") && !load_balancer {
        return Err(review.invalid(
            "spec.loadBalancerClass",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if let Some(old) = review.old
        && old["spec"]["type"] == "LoadBalancer"
        && load_balancer
        && review.spec.get("loadBalancerClass").unwrap_or(&Value::Null)
            != &old["spec"]["loadBalancerClass"]
    {
        return Err(review.invalid(
            "spec.loadBalancerClass",
            "Invalid value: field is immutable",
        ));
    }
    Ok(())
}

fn default_ports(_: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    let headless = review.headless();
    let name = review.name.clone();
    match review.spec.get_mut("ports").and_then(Value::as_array_mut) {
        Some(ports) if !ports.is_empty() => {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.entry("protocol").or_insert_with(|| json!("TCP"));
                let port = p.get("port").cloned().unwrap_or(Value::Null);
                if !port.as_u64().is_some_and(|n| (1..=65535).contains(&n)) {
                    return Err(super::invalid(
                        &name,
                        "spec.ports[].port",
                        format!("Invalid value: {port}: must be between 1 and 65535"),
                    ));
                }
                p.entry("targetPort").or_insert(port);
            }
            Ok(())
        }
        _ if headless => Ok(()),
        _ => Err(review.invalid("spec.ports", "Required value")),
    }
}

fn default_ip_families(alloc: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    let policy = review
        .spec
        .get("ipFamilyPolicy")
        .and_then(Value::as_str)
        .unwrap_or("SingleStack")
        .to_owned();
    let dual_capable = alloc.v4.is_some() && alloc.v6.is_some();
    if policy == "RequireDualStack" && !dual_capable {
        return Err(review.invalid(
            "spec.ipFamilyPolicy",
            "Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services",
        ));
    }
    let mut families = strings(review.spec.get("ipFamilies"));
    if families.is_empty() {
        families = requested_ips(review.spec)
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| family_of(ip).to_owned())
            .collect();
    }
    if families.is_empty() {
        families.push(alloc.primary_family(review.primary_v6).to_owned());
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
        if alloc.range(f).is_none() {
            return Err(review.invalid(
                &format!("spec.ipFamilies[{i}]"),
                format!("Unsupported value: \"{f}\": this cluster has no {f} service range"),
            ));
        }
    }
    review.spec.insert("ipFamilyPolicy".into(), json!(policy));
    review.spec.insert("ipFamilies".into(), json!(families));
    Ok(())
}

fn default_traffic_policies(_: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    let external = matches!(review.service_type(), "NodePort" | "LoadBalancer");
    review
        .spec
        .entry("internalTrafficPolicy")
        .or_insert_with(|| json!("Cluster"));
    if external {
        review
            .spec
            .entry("externalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    Ok(())
}

/// Headless Services keep `None`; existing cluster IPs are immutable (a second family may be
/// added or dropped); new Services get the IPs they ask for, if free and in range, or the next
/// free ones.
fn allocate_cluster_ips(alloc: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    let families = strings(review.spec.get("ipFamilies"));
    let requested = requested_ips(review.spec);
    let old_ips = old_cluster_ips(review);
    let ips: Vec<String> = if review.headless() {
        vec!["None".into()]
    } else if !old_ips.is_empty() {
        if requested.first().is_some_and(|r| *r != old_ips[0]) {
            return Err(review.invalid(
                "spec.clusterIPs[0]",
                "Invalid value: may not change once set",
            ));
        }
        let mut ips = old_ips.clone();
        for f in families.iter().skip(ips.len()) {
            ips.push(take_next_ip(alloc, review, f)?.to_string());
        }
        ips.truncate(families.len());
        ips
    } else {
        let mut ips = Vec::new();
        for (i, f) in families.iter().enumerate() {
            let ip = match requested.get(i) {
                Some(s) => take_requested_ip(alloc, review, i, f, s)?,
                None => take_next_ip(alloc, review, f)?,
            };
            ips.push(ip.to_string());
        }
        ips
    };
    review.spec.insert("clusterIP".into(), json!(ips[0]));
    review.spec.insert("clusterIPs".into(), json!(ips));
    Ok(())
}

fn take_next_ip(
    alloc: &mut ServiceAllocations,
    review: &mut Review<'_>,
    family: &str,
) -> ApiResult<IpAddr> {
    let ip = alloc
        .allocate_ip(family)
        .ok_or_else(|| review.invalid("spec.clusterIPs", "range is full"))?;
    review.taken_ips.push(ip);
    Ok(ip)
}

fn take_requested_ip(
    alloc: &mut ServiceAllocations,
    review: &mut Review<'_>,
    i: usize,
    family: &str,
    requested: &str,
) -> ApiResult<IpAddr> {
    let field = format!("spec.clusterIPs[{i}]");
    let ip: IpAddr = requested.parse().map_err(|_| {
        review.invalid(
            &field,
            format!("Invalid value: \"{requested}\": must be a valid IP address"),
        )
    })?;
    let in_range = alloc.range(family).and_then(|r| r.offset_of(ip)).is_some();
    if !in_range || family_of(ip) != family {
        return Err(review.invalid(
            &field,
            format!("Invalid value: \"{requested}\": provided IP is not in the valid range"),
        ));
    }
    if !alloc.used_ips.insert(ip) {
        return Err(review.invalid(
            &field,
            format!("Invalid value: \"{requested}\": provided IP is already allocated"),
        ));
    }
    review.taken_ips.push(ip);
    Ok(ip)
}

/// NodePort Services, and LoadBalancer ones unless `allocateLoadBalancerNodePorts: false`, get a
/// node port per port: the one asked for, the one the port had, or the next free one.
fn allocate_node_ports(alloc: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    let ty = review.service_type().to_owned();
    let wants_node_ports = ty == "NodePort"
        || (ty == "LoadBalancer"
            && review.spec.get("allocateLoadBalancerNodePorts") != Some(&Value::Bool(false)));
    if ty == "LoadBalancer" {
        review
            .spec
            .entry("allocateLoadBalancerNodePorts")
            .or_insert(Value::Bool(true));
    }
    let old_node_ports: Vec<(u64, u16)> = review
        .old
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
    let mut ports = review
        .spec
        .get_mut("ports")
        .map(Value::take)
        .unwrap_or(Value::Null);
    let outcome = ports
        .as_array_mut()
        .into_iter()
        .flatten()
        .try_for_each(|p| {
            if !wants_node_ports {
                if let Some(map) = p.as_object_mut() {
                    map.remove("nodePort");
                }
                return Ok(());
            }
            let node_port = node_port_for(alloc, review, p, &old_node_ports)?;
            p["nodePort"] = json!(node_port);
            Ok(())
        });
    if !ports.is_null() {
        review.spec.insert("ports".into(), ports);
    }
    outcome
}

fn node_port_for(
    alloc: &mut ServiceAllocations,
    review: &mut Review<'_>,
    port: &Value,
    old_node_ports: &[(u64, u16)],
) -> ApiResult<u16> {
    let asked = port
        .get("nodePort")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok());
    match asked {
        Some(n) if old_node_ports.iter().any(|(_, o)| *o == n) => Ok(n),
        Some(n) => {
            if !NODE_PORTS.contains(&n) || !alloc.used_ports.insert(n) {
                return Err(review.invalid(
                    "spec.ports[].nodePort",
                    format!(
                        "Invalid value: {n}: provided port is already allocated or out of range"
                    ),
                ));
            }
            review.taken_ports.push(n);
            Ok(n)
        }
        None => {
            let number = port["port"].as_u64().unwrap_or(0);
            if let Some((_, n)) = old_node_ports.iter().find(|(p, _)| *p == number) {
                return Ok(*n);
            }
            let n = alloc
                .allocate_port()
                .ok_or_else(|| review.invalid("spec.ports[].nodePort", "no node ports left"))?;
            review.taken_ports.push(n);
            Ok(n)
        }
    }
}

fn release_dropped(alloc: &mut ServiceAllocations, review: &mut Review<'_>) -> ApiResult<()> {
    let Some(old) = review.old else {
        return Ok(());
    };
    let kept_ips: BTreeSet<String> = strings(review.spec.get("clusterIPs")).into_iter().collect();
    for ip in old_cluster_ips(review) {
        if !kept_ips.contains(&ip)
            && let Ok(ip) = ip.parse()
        {
            alloc.used_ips.remove(&ip);
        }
    }
    let no_ports = Value::Null;
    let ports = review.spec.get("ports").unwrap_or(&no_ports);
    let kept_ports: BTreeSet<u16> = node_ports_of(ports).collect();
    for port in node_ports(old) {
        if !kept_ports.contains(&port) {
            alloc.used_ports.remove(&port);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
