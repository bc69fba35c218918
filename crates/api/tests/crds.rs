//! The generated CRDs: committed YAML in step with the types, samples valid, and the schema's
//! rules accepting and rejecting what an operator would expect, with messages that name the value.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ferrolb_api::{IPAddressPool, L2Advertisement, crd};
use kube_cel::Validator;
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schema_of(kind: &str) -> Value {
    let crd = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    let version = &crd.spec.versions[0];
    serde_json::to_value(
        version
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn pool_with(addresses: &[&str]) -> Value {
    json!({
        "apiVersion": "ferrolb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p", "namespace": "ferrolb-system"},
        "spec": {"addresses": addresses},
    })
}

/// The CEL failure messages for a pool with these addresses.
fn cel_errors(addresses: &[&str]) -> Vec<String> {
    match Validator::new().validate(&schema_of("IPAddressPool"), &pool_with(addresses), None) {
        Ok(()) => vec![],
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn committed_crd_yaml_matches_the_types() {
    let stale = crd::stale_files(&repo_root().join("config/crd")).unwrap();
    assert!(
        stale.is_empty(),
        "config/crd is out of date for {stale:?}: run `cargo run -p ferrolb-api --bin crdgen`"
    );
}

#[test]
fn every_sample_parses_into_its_type_and_passes_the_schema_rules() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo_root().join("config/samples")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_saphyr::from_str(&text).unwrap();
        let kind = value["kind"].as_str().unwrap().to_owned();
        match kind.as_str() {
            "IPAddressPool" => {
                serde_json::from_value::<IPAddressPool>(value.clone()).unwrap();
            }
            "L2Advertisement" => {
                serde_json::from_value::<L2Advertisement>(value.clone()).unwrap();
            }
            other => panic!("{}: unexpected kind {other}", path.display()),
        }
        if let Err(e) = Validator::new().validate(&schema_of(&kind), &value, None) {
            panic!("{} fails the CRD rules: {e:?}", path.display());
        }
        seen += 1;
    }
    assert!(seen >= 4, "expected the four samples, found {seen}");
}

#[test]
fn cidrs_and_ordered_ranges_of_one_family_are_accepted() {
    let good = [
        "192.0.2.0/24",
        "192.0.2.7/32",
        "192.0.2.10-192.0.2.20",
        "192.0.2.10 - 192.0.2.10",
        "198.51.100.255-203.0.113.0",
        "2001:db8::/64",
        "2001:db8::10-2001:db8::ff",
    ];
    for entry in good {
        assert_eq!(cel_errors(&[entry]), Vec::<String>::new(), "{entry}");
    }
}

#[test]
fn bad_address_entries_are_rejected_with_a_message_naming_the_value() {
    let bad = [
        ("192.0.2.7", "must be a CIDR"),
        ("192.0.2.300/24", "must be a CIDR"),
        ("192.0.2.1-2001:db8::1", "must be a CIDR"),
        ("192.0.2.1-192.0.2.2-192.0.2.3", "must be a CIDR"),
        ("pool-a", "must be a CIDR"),
        ("192.0.2.20-192.0.2.10", "starts after it ends"),
        ("192.0.3.0-192.0.2.255", "starts after it ends"),
    ];
    for (entry, why) in bad {
        let errors = cel_errors(&[entry]);
        assert!(
            errors
                .iter()
                .any(|m| m.contains(why) && m.contains(entry) && m.contains("spec.addresses")),
            "{entry}: expected a message with {why:?} naming the value, got {errors:?}"
        );
    }
}

#[test]
fn schema_rejects_empty_and_duplicate_address_lists() {
    let addresses = &schema_of("IPAddressPool")["properties"]["spec"]["properties"]["addresses"];
    assert_eq!(addresses["minItems"], 1);
    assert_eq!(addresses["x-kubernetes-list-type"], "set");
    let required = &schema_of("IPAddressPool")["properties"]["spec"]["required"];
    assert!(required.as_array().unwrap().contains(&json!("addresses")));
}

#[test]
fn schema_rejects_negative_priority_and_duplicate_names() {
    let pool = schema_of("IPAddressPool");
    let allocation = &pool["properties"]["spec"]["properties"]["serviceAllocation"]["properties"];
    assert_eq!(allocation["priority"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(allocation["namespaces"]["x-kubernetes-list-type"], "set");
    let l2 = schema_of("L2Advertisement");
    let spec = &l2["properties"]["spec"]["properties"];
    assert_eq!(spec["ipAddressPools"]["x-kubernetes-list-type"], "set");
    assert_eq!(spec["interfaces"]["x-kubernetes-list-type"], "set");
    assert_eq!(spec["interfaces"]["items"]["maxLength"], 15);
}

#[test]
fn pool_defaults_match_metallb() {
    let pool: IPAddressPool = serde_json::from_value(pool_with(&["192.0.2.0/24"])).unwrap();
    assert!(pool.spec.auto_assign);
    assert!(!pool.spec.avoid_buggy_ips);
    assert!(pool.spec.service_allocation.is_none());
    let spec = &schema_of("IPAddressPool")["properties"]["spec"]["properties"];
    assert_eq!(spec["autoAssign"]["default"], true);
    assert_eq!(spec["avoidBuggyIPs"]["default"], false);
}

#[test]
fn a_metallb_manifest_converts_by_changing_the_api_version() {
    let metallb = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: prod, namespace: metallb-system}
spec:
  addresses: ["192.0.2.0/24", "2001:db8::/120"]
  autoAssign: false
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 50
    namespaces: [prod]
    namespaceSelectors: [{matchLabels: {env: prod}}]
    serviceSelectors: [{matchExpressions: [{key: app, operator: In, values: [web]}]}]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: prod, namespace: metallb-system}
spec:
  ipAddressPools: [prod]
  ipAddressPoolSelectors: [{matchLabels: {env: prod}}]
  nodeSelectors: [{matchLabels: {kubernetes.io/hostname: node-a}}]
  interfaces: [eth0]
"#
    .replace("metallb.io/v1beta1", "ferrolb.io/v1beta1");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&metallb).unwrap();
    let pool: IPAddressPool = serde_json::from_value(docs[0].clone()).unwrap();
    assert!(!pool.spec.auto_assign && pool.spec.avoid_buggy_ips);
    assert_eq!(pool.spec.service_allocation.unwrap().priority, Some(50));
    let l2: L2Advertisement = serde_json::from_value(docs[1].clone()).unwrap();
    assert_eq!(l2.spec.interfaces, ["eth0"]);
    // Nothing was dropped on the way in.
    assert_eq!(serde_json::to_value(&l2.spec).unwrap(), docs[1]["spec"]);
}

#[test]
fn every_kind_is_namespaced_with_a_status_subresource_and_printer_columns() {
    for crd in crd::all() {
        assert_eq!(crd.spec.group, "ferrolb.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1beta1");
        assert!(version.served && version.storage);
        let name = &crd.spec.names.kind;
        assert!(
            version.subresources.as_ref().unwrap().status.is_some(),
            "{name}"
        );
        let columns = version.additional_printer_columns.as_ref().unwrap();
        assert!(
            columns.len() >= 3,
            "{name} has {} printer columns",
            columns.len()
        );
    }
}
