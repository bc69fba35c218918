//! One or more tests per rule, each running that rule alone on a hand-made spec.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::error::ApiError;

type RuleFn = fn(&mut ServiceAllocations, &mut Review<'_>) -> ApiResult<()>;

fn alloc() -> ServiceAllocations {
    ServiceAllocations::new(&["198.51.100.0/24".into(), "2001:db8:96::/112".into()]).unwrap()
}

fn v4_only() -> ServiceAllocations {
    ServiceAllocations::new(&["198.51.100.0/24".into()]).unwrap()
}

/// Runs one rule on `spec` (with `old` as the stored Service); returns the spec it left and
/// what it took.
fn run(
    rule: RuleFn,
    a: &mut ServiceAllocations,
    mut spec: Value,
    old: Option<&Value>,
) -> Result<(Value, Vec<IpAddr>, Vec<u16>), ApiError> {
    let taken = {
        let mut review = Review {
            name: "web".into(),
            spec: spec.as_object_mut().unwrap(),
            old,
            primary_v6: false,
            taken_ips: Vec::new(),
            taken_ports: Vec::new(),
        };
        rule(a, &mut review)?;
        (review.taken_ips, review.taken_ports)
    };
    Ok((spec, taken.0, taken.1))
}

fn refused_field(result: Result<(Value, Vec<IpAddr>, Vec<u16>), ApiError>) -> String {
    match result.unwrap_err() {
        ApiError::Invalid { causes, .. } => causes[0].field.clone(),
        other => panic!("expected 422, got {other}"),
    }
}

#[test]
fn type_defaults_to_cluster_ip_with_no_session_affinity() {
    let (spec, ..) = run(default_type, &mut alloc(), json!({}), None).unwrap();
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
}

#[test]
fn an_unknown_type_is_refused() {
    let r = run(default_type, &mut alloc(), json!({"type": "Magic"}), None);
    assert_eq!(refused_field(r), "spec.type");
}

#[test]
fn an_unparseable_load_balancer_ip_is_refused_and_an_address_accepted() {
    let r = run(
        validate_load_balancer_ip,
        &mut alloc(),
        json!({"loadBalancerIP": "192.0.2.300"}),
        None,
    );
    assert_eq!(refused_field(r), "spec.loadBalancerIP");
    for ip in ["192.0.2.7", "2001:db8::7", ""] {
        run(
            validate_load_balancer_ip,
            &mut alloc(),
            json!({"loadBalancerIP": ip}),
            None,
        )
        .unwrap();
    }
}

#[test]
fn load_balancer_class_needs_type_load_balancer() {
    let spec = json!({"type": "ClusterIP", "loadBalancerClass": "ferrolb.io/l2"});
    let r = run(validate_load_balancer_class, &mut alloc(), spec, None);
    assert_eq!(refused_field(r), "spec.loadBalancerClass");
}

#[test]
fn load_balancer_class_cannot_change_on_a_load_balancer() {
    let old = json!({"spec": {"type": "LoadBalancer", "loadBalancerClass": "a"}});
    let spec = json!({"type": "LoadBalancer", "loadBalancerClass": "b"});
    let r = run(validate_load_balancer_class, &mut alloc(), spec, Some(&old));
    assert_eq!(refused_field(r), "spec.loadBalancerClass");
    let same = json!({"type": "LoadBalancer", "loadBalancerClass": "a"});
    run(validate_load_balancer_class, &mut alloc(), same, Some(&old)).unwrap();
}

#[test]
fn ports_default_to_tcp_and_their_own_number_as_target() {
    let (spec, ..) = run(
        default_ports,
        &mut alloc(),
        json!({"ports": [{"port": 80}]}),
        None,
    )
    .unwrap();
    assert_eq!(
        spec["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
}

#[test]
fn ports_out_of_range_or_missing_are_refused_unless_headless() {
    let r = run(
        default_ports,
        &mut alloc(),
        json!({"ports": [{"port": 70000}]}),
        None,
    );
    assert_eq!(refused_field(r), "spec.ports[].port");
    let r = run(default_ports, &mut alloc(), json!({}), None);
    assert_eq!(refused_field(r), "spec.ports");
    run(
        default_ports,
        &mut alloc(),
        json!({"clusterIP": "None"}),
        None,
    )
    .unwrap();
}

#[test]
fn families_default_to_the_primary_range_single_stack() {
    let (spec, ..) = run(default_ip_families, &mut alloc(), json!({}), None).unwrap();
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
}

#[test]
fn families_follow_a_requested_cluster_ip() {
    let spec = json!({"clusterIP": "2001:db8:96::5"});
    let (spec, ..) = run(default_ip_families, &mut alloc(), spec, None).unwrap();
    assert_eq!(spec["ipFamilies"], json!(["IPv6"]));
}

#[test]
fn dual_stack_policies_add_the_other_family_after_the_asked_one() {
    let spec = json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]});
    let (spec, ..) = run(default_ip_families, &mut alloc(), spec, None).unwrap();
    assert_eq!(spec["ipFamilies"], json!(["IPv6", "IPv4"]));
}

#[test]
fn require_dual_stack_needs_two_ranges_and_a_family_needs_its_range() {
    let r = run(
        default_ip_families,
        &mut v4_only(),
        json!({"ipFamilyPolicy": "RequireDualStack"}),
        None,
    );
    assert_eq!(refused_field(r), "spec.ipFamilyPolicy");
    let r = run(
        default_ip_families,
        &mut v4_only(),
        json!({"ipFamilies": ["IPv6"]}),
        None,
    );
    assert_eq!(refused_field(r), "spec.ipFamilies[0]");
}

#[test]
fn external_traffic_policy_defaults_only_where_traffic_comes_from_outside() {
    let (lb, ..) = run(
        default_traffic_policies,
        &mut alloc(),
        json!({"type": "LoadBalancer"}),
        None,
    )
    .unwrap();
    assert_eq!(lb["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["internalTrafficPolicy"], "Cluster");
    let (cip, ..) = run(
        default_traffic_policies,
        &mut alloc(),
        json!({"type": "ClusterIP"}),
        None,
    )
    .unwrap();
    assert!(cip.get("externalTrafficPolicy").is_none());
}

#[test]
fn cluster_ips_come_from_the_range_of_each_family_in_order() {
    let spec = json!({"ipFamilies": ["IPv6", "IPv4"]});
    let (spec, taken, _) = run(allocate_cluster_ips, &mut alloc(), spec, None).unwrap();
    assert_eq!(
        spec["clusterIPs"],
        json!(["2001:db8:96::1", "198.51.100.1"])
    );
    assert_eq!(spec["clusterIP"], "2001:db8:96::1");
    assert_eq!(taken.len(), 2);
}

#[test]
fn a_requested_cluster_ip_must_be_free_and_in_range() {
    let mut a = alloc();
    let spec = json!({"ipFamilies": ["IPv4"], "clusterIP": "198.51.100.9"});
    let (got, ..) = run(allocate_cluster_ips, &mut a, spec.clone(), None).unwrap();
    assert_eq!(got["clusterIPs"], json!(["198.51.100.9"]));
    assert_eq!(
        refused_field(run(allocate_cluster_ips, &mut a, spec, None)),
        "spec.clusterIPs[0]"
    );
    let outside = json!({"ipFamilies": ["IPv4"], "clusterIP": "203.0.113.9"});
    assert_eq!(
        refused_field(run(allocate_cluster_ips, &mut a, outside, None)),
        "spec.clusterIPs[0]"
    );
}

#[test]
fn a_cluster_ip_cannot_change_once_set_and_headless_stays_none() {
    let old = json!({"spec": {"clusterIPs": ["198.51.100.1"]}});
    let spec = json!({"ipFamilies": ["IPv4"], "clusterIP": "198.51.100.2"});
    let r = run(allocate_cluster_ips, &mut alloc(), spec, Some(&old));
    assert_eq!(refused_field(r), "spec.clusterIPs[0]");
    let headless = json!({"ipFamilies": ["IPv4"], "clusterIP": "None"});
    let (spec, taken, _) = run(allocate_cluster_ips, &mut alloc(), headless, None).unwrap();
    assert_eq!(spec["clusterIPs"], json!(["None"]));
    assert!(taken.is_empty());
}

#[test]
fn load_balancers_get_node_ports_unless_disabled() {
    let spec = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
    let (got, _, ports) = run(allocate_node_ports, &mut alloc(), spec, None).unwrap();
    assert_eq!(got["ports"][0]["nodePort"], 30000);
    assert_eq!(got["allocateLoadBalancerNodePorts"], true);
    assert_eq!(ports, [30000]);
    let off = json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "nodePort": 30001}]});
    let (got, ..) = run(allocate_node_ports, &mut alloc(), off, None).unwrap();
    assert!(got["ports"][0].get("nodePort").is_none());
}

#[test]
fn a_taken_or_out_of_range_node_port_is_refused_and_an_old_one_kept() {
    let mut a = alloc();
    let spec = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30100}]});
    run(allocate_node_ports, &mut a, spec.clone(), None).unwrap();
    assert_eq!(
        refused_field(run(allocate_node_ports, &mut a, spec.clone(), None)),
        "spec.ports[].nodePort"
    );
    let low = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]});
    assert_eq!(
        refused_field(run(allocate_node_ports, &mut a, low, None)),
        "spec.ports[].nodePort"
    );
    let old = json!({"spec": {"ports": [{"port": 80, "nodePort": 30100}]}});
    let unchanged = json!({"type": "NodePort", "ports": [{"port": 80}]});
    let (got, _, taken) = run(allocate_node_ports, &mut a, unchanged, Some(&old)).unwrap();
    assert_eq!(got["ports"][0]["nodePort"], 30100);
    assert!(taken.is_empty());
}

#[test]
fn an_update_that_drops_a_family_and_a_node_port_gives_them_back() {
    let mut a = alloc();
    let dual = json!({"type": "NodePort", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]});
    let (dual, ..) = run(allocate_cluster_ips, &mut a, dual, None).unwrap();
    let (dual, ..) = run(allocate_node_ports, &mut a, dual, None).unwrap();
    let old = json!({"spec": dual});
    let single =
        json!({"type": "ClusterIP", "clusterIPs": ["198.51.100.1"], "ports": [{"port": 80}]});
    run(release_dropped, &mut a, single, Some(&old)).unwrap();
    assert!(!a.used_ips.contains(&"2001:db8:96::1".parse().unwrap()));
    assert!(a.used_ips.contains(&"198.51.100.1".parse().unwrap()));
    assert!(a.used_ports.is_empty());
}

#[test]
fn a_refused_service_leaves_nothing_allocated() {
    let mut a = alloc();
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 1}]}});
    assert_eq!(a.admit(&mut svc, None, false).unwrap_err().code(), 422);
    assert!(a.used_ips.is_empty() && a.used_ports.is_empty());
}

#[test]
fn external_name_services_skip_ports_and_allocations() {
    let mut a = alloc();
    let mut svc = json!({"metadata": {"name": "web"}, "spec": {"type": "ExternalName", "externalName": "example.com"}});
    a.admit(&mut svc, None, false).unwrap();
    assert!(svc["spec"].get("clusterIP").is_none());
    assert_eq!(svc["spec"]["sessionAffinity"], "None");
}

#[test]
fn every_rule_has_a_distinct_name() {
    let names: BTreeSet<&str> = RULES.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), RULES.len());
}
