//! The controller's decisions, driven by hand: objects in, writes and Events out.
#![allow(clippy::unwrap_used)]

use ferrolb_api::IPAddressPool;
use ferrolb_controller::convert::ServiceKey;
use ferrolb_controller::decide::Desired;
use ferrolb_controller::engine::{Action, Engine, EngineConfig};
use ferrolb_observe::events::Severity;
use k8s_openapi::api::core::v1::Service;
use serde_json::{Value, json};

fn merge(a: &mut Value, b: &Value) {
    match (a.as_object_mut(), b.as_object()) {
        (Some(a), Some(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *a = b.clone(),
    }
}

fn svc(name: &str, extra: Value) -> Service {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"},
    });
    merge(&mut v, &extra);
    serde_json::from_value(v).unwrap()
}

fn pool(name: &str, addresses: &[&str], created: &str) -> IPAddressPool {
    serde_json::from_value(json!({
        "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "ferrolb-system", "uid": format!("uid-{name}"),
                     "creationTimestamp": created, "generation": 1, "finalizers": ["ferrolb.io/pool-protection"]},
        "spec": {"addresses": addresses},
    }))
    .unwrap()
}

/// What the Service looks like after the controller's write lands (as the watch shows it).
fn written(mut s: Service, desired: &Desired) -> Service {
    let mut v = serde_json::to_value(&s).unwrap();
    json_merge_patch(&mut v, &desired.status_patch());
    s = serde_json::from_value(v).unwrap();
    s
}

fn json_merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                json_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn status_writes(actions: &[Action]) -> Vec<(String, Desired)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ServiceStatus {
                service, desired, ..
            } => Some((service.to_string(), desired.clone())),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<(&'static str, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { notice, .. } => Some((notice.reason, notice.note.clone())),
            _ => None,
        })
        .collect()
}

fn started(pools: &[IPAddressPool], services: &[Service]) -> (Engine, Vec<Action>) {
    let mut e = Engine::new(EngineConfig::default());
    for p in pools {
        assert!(e.apply_pool(p.clone()).is_empty());
    }
    for s in services {
        assert!(
            e.apply_service(s.clone()).is_empty(),
            "nothing is decided before start"
        );
    }
    let actions = e.start();
    (e, actions)
}

fn ips(d: &Desired) -> Vec<String> {
    d.ips.iter().map(ToString::to_string).collect()
}

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-02T00:00:00Z";

#[test]
fn a_new_service_gets_one_status_write_and_one_event() {
    let (mut e, actions) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    assert!(status_writes(&actions).is_empty());
    let actions = e.apply_service(svc("web", json!({})));
    let writes = status_writes(&actions);
    assert_eq!(writes.len(), 1);
    assert_eq!(ips(&writes[0].1), ["192.0.2.0"]);
    assert_eq!(writes[0].1.pool.as_deref(), Some("lan"));
    assert_eq!(
        events(&actions).iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        ["IPAllocated"]
    );
    // A repeated event for the unchanged object before the write lands changes nothing.
    assert!(status_writes(&e.apply_service(svc("web", json!({})))).is_empty());
    // Neither does the write coming back through the watch.
    assert!(
        e.apply_service(written(svc("web", json!({})), &writes[0].1))
            .is_empty()
    );
}

#[test]
fn a_restart_keeps_every_ip_even_where_new_allocation_would_pick_another() {
    let holder = svc(
        "b",
        json!({
            "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.5", "ipMode": "VIP"}]}},
        }),
    );
    let (_, actions) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[holder]);
    assert!(
        actions
            .iter()
            .all(|a| !matches!(a, Action::ServiceStatus { .. })),
        "{actions:?}"
    );
}

#[test]
fn existing_assignments_are_restored_before_anything_new_is_allocated() {
    // "a" sorts first and has no IP; "b" already holds the lowest address.
    let holder = svc(
        "b",
        json!({
            "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"}},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.0", "ipMode": "VIP"}]}},
        }),
    );
    let (_, actions) = started(
        &[pool("lan", &["192.0.2.0/29"], T0)],
        &[svc("a", json!({})), holder],
    );
    let writes = status_writes(&actions);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].0, "default/a");
    assert_eq!(ips(&writes[0].1), ["192.0.2.1"]);
}

#[test]
fn a_service_of_another_class_is_never_written() {
    let other = svc(
        "x",
        json!({
            "metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "192.0.2.1"}},
            "spec": {"loadBalancerClass": "example.com/other"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
        }),
    );
    let (mut e, actions) = started(
        &[pool("lan", &["192.0.2.0/29"], T0)],
        std::slice::from_ref(&other),
    );
    assert!(
        actions
            .iter()
            .all(|a| !matches!(a, Action::ServiceStatus { .. } | Action::Event { .. }))
    );
    assert!(e.apply_service(other).is_empty());
}

#[test]
fn a_requested_ip_outside_every_pool_fails_once_and_clears_our_ip() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let first = e.apply_service(svc("web", json!({})));
    let held = written(svc("web", json!({})), &status_writes(&first)[0].1);
    let mut bad = serde_json::to_value(&held).unwrap();
    bad["spec"]["loadBalancerIP"] = json!("198.51.100.7");
    let bad: Service = serde_json::from_value(bad).unwrap();
    let actions = e.apply_service(bad.clone());
    let ev = events(&actions);
    assert!(
        ev.iter()
            .any(|(r, note)| *r == "AllocationFailed" && note.contains("198.51.100.7")),
        "{ev:?}"
    );
    let writes = status_writes(&actions);
    assert_eq!(writes.len(), 1);
    assert!(writes[0].1.ips.is_empty(), "our IP is cleared");
    // Seeing the cleared Service, or the same Service again, changes nothing: no retry loop.
    let cleared = written(bad.clone(), &writes[0].1);
    assert!(e.apply_service(cleared.clone()).is_empty());
    assert!(e.apply_service(cleared).is_empty());
    assert_eq!(e.failure_count(), 1);
}

#[test]
fn a_foreign_writer_flipping_the_requested_ip_costs_at_most_one_write_per_change() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let mut current = svc("web", json!({}));
    let mut writes = 0;
    let mut changes = 0;
    for i in 0..20 {
        let mut v = serde_json::to_value(&current).unwrap();
        v["spec"]["loadBalancerIP"] = json!(if i % 2 == 0 {
            "192.0.2.3"
        } else {
            "198.51.100.7"
        });
        current = serde_json::from_value(v).unwrap();
        changes += 1;
        let actions = e.apply_service(current.clone());
        for (_, desired) in status_writes(&actions) {
            writes += 1;
            current = written(current, &desired);
            // Our own write coming back: no further write.
            assert!(status_writes(&e.apply_service(current.clone())).is_empty());
        }
    }
    assert!(writes <= changes, "{writes} writes for {changes} changes");
    assert_eq!(writes, 20, "each flip is answered once");
}

#[test]
fn an_exhausted_pool_is_named_and_the_waiting_service_gets_the_freed_ip() {
    let (mut e, _) = started(&[pool("tiny", &["192.0.2.8/31"], T0)], &[]);
    let a = status_writes(&e.apply_service(svc("a", json!({}))));
    e.apply_service(svc("b", json!({})));
    let actions = e.apply_service(svc("c", json!({})));
    let ev = events(&actions);
    assert!(
        ev.iter()
            .any(|(r, note)| *r == "AllocationFailed" && note.contains("tiny")),
        "{ev:?}"
    );
    assert!(e.failures().contains_key(&ServiceKey::new("default", "c")));
    let actions = e.delete_service(&ServiceKey::new("default", "a"));
    let writes = status_writes(&actions);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].0, "default/c");
    assert_eq!(writes[0].1.ips, a[0].1.ips, "c takes the freed address");
}

#[test]
fn an_overlapping_newer_pool_is_refused_visibly_and_not_used() {
    let (mut e, _) = started(&[pool("old", &["192.0.2.0/29"], T0)], &[]);
    let actions = e.apply_pool(pool("new", &["192.0.2.4/30"], T1));
    let ev = events(&actions);
    assert!(
        ev.iter()
            .any(|(r, note)| *r == "PoolOverlapping" && note.contains("old")),
        "{ev:?}"
    );
    let statuses: Vec<_> = e
        .pool_actions()
        .into_iter()
        .filter_map(|a| match a {
            Action::PoolStatus { name, status, .. } => Some((name, status)),
            _ => None,
        })
        .collect();
    let new = &statuses.iter().find(|(n, _)| n == "new").unwrap().1;
    assert_eq!(new.conditions[0].status, "False");
    assert_eq!(new.conditions[0].reason, "PoolOverlapping");
    let old = &statuses.iter().find(|(n, _)| n == "old").unwrap().1;
    assert_eq!(old.available_ipv4, 8);
}

#[test]
fn shrinking_a_pool_moves_the_service_with_an_ip_reassigned_event() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let w = status_writes(&e.apply_service(svc("web", json!({}))));
    e.apply_service(written(svc("web", json!({})), &w[0].1));
    let actions = e.apply_pool(pool("lan", &["192.0.2.4/30"], T0));
    let ev = events(&actions);
    assert!(
        ev.iter().any(|(r, note)| *r == "IPReassigned"
            && note.contains("192.0.2.0")
            && note.contains("192.0.2.4")),
        "{ev:?}"
    );
}

#[test]
fn a_deleted_pool_in_use_is_held_until_no_service_uses_it() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let w = status_writes(&e.apply_service(svc("web", json!({}))));
    e.apply_service(written(svc("web", json!({})), &w[0].1));
    let mut deleting = pool("lan", &["192.0.2.0/29"], T0);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-03T00:00:00Z".parse().unwrap(),
        ));
    let actions = e.apply_pool(deleting);
    assert!(
        status_writes(&actions).is_empty(),
        "the Service keeps its IP while the pool drains"
    );
    let pool_actions = e.pool_actions();
    assert!(
        !pool_actions
            .iter()
            .any(|a| matches!(a, Action::PoolFinalizer { .. })),
        "finalizer kept: {pool_actions:?}"
    );
    let status = pool_actions
        .iter()
        .find_map(|a| match a {
            Action::PoolStatus { status, .. } => Some(status),
            _ => None,
        })
        .unwrap();
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Deleting" && c.message.starts_with("1 Service"))
    );
    // A new Service gets nothing from it.
    let actions = e.apply_service(svc("late", json!({})));
    assert!(
        events(&actions)
            .iter()
            .any(|(r, _)| *r == "AllocationFailed")
    );
    // The last user goes: the finalizer is removed.
    e.delete_service(&ServiceKey::new("default", "web"));
    let actions = e.pool_actions();
    assert!(
        actions.iter().any(
            |a| matches!(a, Action::PoolFinalizer { finalizers, .. } if finalizers.is_empty())
        ),
        "{actions:?}"
    );
}

#[test]
fn a_service_that_stops_being_a_load_balancer_is_cleared() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let w = status_writes(&e.apply_service(svc("web", json!({}))));
    let held = written(svc("web", json!({})), &w[0].1);
    e.apply_service(held.clone());
    let mut v = serde_json::to_value(&held).unwrap();
    v["spec"]["type"] = json!("ClusterIP");
    let actions = e.apply_service(serde_json::from_value(v).unwrap());
    let writes = status_writes(&actions);
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].1, Desired::none());
    let ev = events(&actions);
    assert_eq!(ev[0].0, "ClearAssignment");
}

#[test]
fn pool_status_counts_follow_allocations_and_are_written_once_per_batch() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    for name in ["a", "b", "c"] {
        e.apply_service(svc(name, json!({})));
    }
    let statuses: Vec<_> = e
        .pool_actions()
        .into_iter()
        .filter(|a| matches!(a, Action::PoolStatus { .. }))
        .collect();
    assert_eq!(statuses.len(), 1);
    let Action::PoolStatus { status, .. } = &statuses[0] else {
        unreachable!()
    };
    assert_eq!((status.assigned_ipv4, status.available_ipv4), (3, 5));
    assert!(e.pool_actions().is_empty(), "nothing new to write");
}

#[test]
fn warnings_are_warnings() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let actions = e.apply_service(svc(
        "web",
        json!({"metadata": {"annotations": {"ferrolb.io/address-pool": "nope"}}}),
    ));
    let warning = actions.iter().find_map(|a| match a {
        Action::Event { notice, .. } => Some(notice.severity),
        _ => None,
    });
    assert_eq!(warning, Some(Severity::Warning));
}

fn holding(name: &str, ip: &str, pool: &str) -> Service {
    svc(
        name,
        json!({
            "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": pool}},
            "status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}},
        }),
    )
}

fn pool_statuses(actions: &[Action]) -> Vec<(String, ferrolb_api::IPAddressPoolStatus)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PoolStatus { name, status, .. } => Some((name.clone(), status.clone())),
            _ => None,
        })
        .collect()
}

fn ready_of(status: &ferrolb_api::IPAddressPoolStatus) -> (String, String) {
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    (ready.status.clone(), ready.reason.clone())
}

fn with_last_valid(mut p: IPAddressPool, addresses: &[&str]) -> IPAddressPool {
    p.status = Some(ferrolb_api::IPAddressPoolStatus {
        last_valid_addresses: Some(addresses.iter().map(|a| (*a).to_owned()).collect()),
        ..Default::default()
    });
    p
}

#[test]
fn an_accepted_pool_records_its_addresses_as_last_valid() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let statuses = pool_statuses(&e.pool_actions());
    assert_eq!(
        statuses[0].1.last_valid_addresses,
        Some(vec!["192.0.2.0/29".to_owned()])
    );
    assert_eq!(ready_of(&statuses[0].1), ("True".into(), "Accepted".into()));
}

#[test]
fn an_unparseable_edit_keeps_every_assigned_ip_gives_out_none_and_says_why() {
    let (mut e, _) = started(
        &[pool("lan", &["192.0.2.0/29"], T0)],
        &[holding("web", "192.0.2.3", "lan")],
    );
    e.pool_actions();
    let actions = e.apply_pool(pool("lan", &["2001:db8::ff-2001:db8::10"], T0));
    assert!(status_writes(&actions).is_empty(), "no Service is touched");
    assert_eq!(
        events(&actions).iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        ["InvalidPool"]
    );
    let statuses = pool_statuses(&e.pool_actions());
    assert_eq!(
        ready_of(&statuses[0].1),
        ("False".into(), "InvalidPool".into())
    );
    assert_eq!(
        statuses[0].1.last_valid_addresses,
        Some(vec!["192.0.2.0/29".to_owned()]),
        "the last valid addresses stay recorded"
    );
    let actions = e.apply_service(svc("new", json!({})));
    assert!(
        status_writes(&actions).is_empty(),
        "an invalid pool gives out no new address"
    );
    assert_eq!(
        events(&actions).iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        ["AllocationFailed"]
    );
}

#[test]
fn a_pool_edited_to_overlap_another_keeps_its_ips_and_the_other_pool_keeps_its_own() {
    let (mut e, _) = started(
        &[
            pool("a", &["192.0.2.0/28"], T0),
            pool("b", &["198.51.100.0/28"], T1),
        ],
        &[
            holding("in-a", "192.0.2.1", "a"),
            holding("in-b", "198.51.100.1", "b"),
        ],
    );
    e.pool_actions();
    // b now claims a's addresses (and drops its own).
    let actions = e.apply_pool(pool("b", &["192.0.2.0/27"], T1));
    assert!(status_writes(&actions).is_empty(), "{actions:?}");
    // And the older pool edited into the newer one's addresses is the one refused too.
    let actions = e.apply_pool(pool("a", &["192.0.2.0/28", "198.51.100.0/29"], T0));
    assert!(status_writes(&actions).is_empty(), "{actions:?}");
    let statuses: std::collections::BTreeMap<_, _> =
        pool_statuses(&e.pool_actions()).into_iter().collect();
    assert_eq!(
        ready_of(&statuses["a"]),
        ("False".into(), "InvalidPool".into())
    );
    assert_eq!(
        ready_of(&statuses["b"]),
        ("False".into(), "InvalidPool".into())
    );
    assert_eq!(statuses["a"].assigned_ipv4, 1);
    assert_eq!(statuses["b"].assigned_ipv4, 1);
}

#[test]
fn a_new_leader_restores_ips_from_last_valid_addresses_when_the_spec_is_invalid() {
    // Nothing in memory: the pool's spec is unusable, its status says what was valid.
    let invalid = with_last_valid(
        pool("v6", &["2001:db8::ff-2001:db8::10"], T0),
        &["2001:db8::/120"],
    );
    let web = svc(
        "web",
        json!({
            "metadata": {"annotations": {"ferrolb.io/ip-allocated-from-pool": "v6"}},
            "spec": {"ipFamilies": ["IPv6"]},
            "status": {"loadBalancer": {"ingress": [{"ip": "2001:db8::7", "ipMode": "VIP"}]}},
        }),
    );
    let (mut e, actions) = started(&[invalid], &[web]);
    assert!(status_writes(&actions).is_empty(), "{actions:?}");
    assert_eq!(
        events(&actions).iter().map(|(r, _)| *r).collect::<Vec<_>>(),
        ["InvalidPool"]
    );
    let statuses = pool_statuses(&e.pool_actions());
    assert_eq!(statuses[0].1.assigned_ipv6, 1);
    assert_eq!(
        ready_of(&statuses[0].1),
        ("False".into(), "InvalidPool".into())
    );
}

#[test]
fn without_last_valid_addresses_an_invalid_pool_is_not_used() {
    let (_, actions) = started(
        &[pool("v6", &["2001:db8::ff-2001:db8::10"], T0)],
        &[svc("web", json!({"spec": {"ipFamilies": ["IPv6"]}}))],
    );
    assert!(status_writes(&actions).is_empty());
}

#[test]
fn a_write_refused_as_stale_waits_for_the_newer_version_and_is_decided_again() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let v1 = svc("web", json!({"metadata": {"resourceVersion": "1"}}));
    let actions = e.apply_service(v1.clone());
    let Action::ServiceStatus {
        resource_version, ..
    } = actions
        .iter()
        .find(|a| matches!(a, Action::ServiceStatus { .. }))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(
        resource_version.as_deref(),
        Some("1"),
        "the write carries a precondition"
    );
    let key = ServiceKey::new("default", "web");
    assert!(e.write_conflicted(&key).is_empty());
    // The same version again (a relist) does not overwrite what was not read.
    assert!(status_writes(&e.apply_service(v1)).is_empty());
    assert!(status_writes(&e.write_failed(&key)).is_empty());
    // The newer version is decided on, and written once, with its own precondition.
    let v2 = svc(
        "web",
        json!({"metadata": {"resourceVersion": "2", "labels": {"x": "y"}}}),
    );
    let actions = e.apply_service(v2);
    assert_eq!(status_writes(&actions).len(), 1);
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::ServiceStatus { resource_version, .. } if resource_version.as_deref() == Some("2")
    )));
    assert!(
        events(&actions).is_empty(),
        "the IPAllocated Event was published with the first write"
    );
}

#[test]
fn a_failed_write_retried_does_not_publish_its_event_again() {
    let (mut e, _) = started(&[pool("lan", &["192.0.2.0/29"], T0)], &[]);
    let actions = e.apply_service(svc("web", json!({})));
    assert_eq!(events(&actions).len(), 1);
    let key = ServiceKey::new("default", "web");
    for _ in 0..5 {
        let retried = e.write_failed(&key);
        assert_eq!(status_writes(&retried).len(), 1, "the write is retried");
        assert!(events(&retried).is_empty(), "{retried:?}");
    }
}

#[test]
fn a_pool_status_refused_as_stale_waits_for_the_newer_pool_version() {
    let mut p = pool("lan", &["192.0.2.0/29"], T0);
    p.metadata.resource_version = Some("5".into());
    let (mut e, _) = started(&[p.clone()], &[]);
    let actions = e.pool_actions();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::PoolStatus { resource_version, .. } if resource_version.as_deref() == Some("5")
    )));
    e.pool_write_conflicted("lan");
    assert!(pool_statuses(&e.pool_actions()).is_empty());
    p.metadata.resource_version = Some("6".into());
    e.apply_pool(p);
    assert_eq!(pool_statuses(&e.pool_actions()).len(), 1);
}
