//! One verdict for every pool: what the CRD schema (its CEL rules and OpenAPI constraints, as the
//! apiserver applies them) accepts, the allocator's parser accepts, and what one refuses the other
//! refuses. Each example goes through both; the only disagreements allowed are the ones listed in
//! `CONTROLLER_ONLY`, which Kubernetes CEL cannot express and the controller reports instead.
#![allow(clippy::unwrap_used)]

use ferrolb_api::crd;
use ferrolb_ipam::{LabelSelectorRequirement, Pool, PoolSpec};
use kube_cel::Validator;
use serde_json::{Value, json};

fn pool_schema() -> Value {
    let crd = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == "IPAddressPool")
        .unwrap();
    let version = &crd.spec.versions[0];
    serde_json::to_value(version.schema.as_ref().unwrap().open_api_v3_schema.as_ref()).unwrap()
}

fn pool(spec: Value) -> Value {
    json!({
        "apiVersion": "ferrolb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p", "namespace": "ferrolb-system"},
        "spec": spec,
    })
}

/// The schema's CEL messages for a pool with this spec (empty: accepted).
fn schema_errors(spec: Value) -> Vec<String> {
    match Validator::new().validate(&pool_schema(), &pool(spec), None) {
        Ok(()) => vec![],
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

fn parser_accepts_addresses(addresses: &[&str]) -> Result<(), String> {
    Pool::parse(PoolSpec::new("p", addresses))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Accepted by both, refused by both (and the schema's message names the field).
const AGREED: &[(&[&str], bool)] = &[
    (&["192.0.2.0/24"], true),
    (&[" 192.0.2.0/28 "], true),
    (&["192.0.2.0/28", "192.0.2.16/28"], true),
    (
        &["192.0.2.0/28", "192.0.2.16-192.0.2.20", "198.51.100.7/32"],
        true,
    ),
    (&["192.0.2.0/24", "2001:db8::/64"], true),
    (&["2001:db8::/64", "2001:db8:1::/64"], true),
    (&["2001:db8::10-2001:db8::ff", "192.0.2.0/30"], true),
    (&["198.51.100.255-203.0.113.0"], true),
    // Overlaps inside one pool.
    (&["192.0.2.0/24", "192.0.2.128/25"], false),
    (&["192.0.2.0/24", "192.0.2.77/24"], false),
    (&["192.0.2.0/28", "192.0.2.15-192.0.2.20"], false),
    (&["192.0.2.10-192.0.2.20", "192.0.2.20-192.0.2.30"], false),
    (&["192.0.2.10-192.0.2.20", "192.0.2.0/24"], false),
    (&["0.0.0.0/0", "203.0.113.9/32"], false),
    (&["2001:db8::/64", "2001:db8::/96"], false),
    (&["2001:db8::/64", "2001:db8::1/64"], false),
    // Malformed entries.
    (&["192.0.2.7"], false),
    (&["192.0.2.300/24"], false),
    (&["192.0.2.20-192.0.2.10"], false),
    (&["192.0.2.1-2001:db8::1"], false),
    (&["::ffff:192.0.2.0/120"], false),
    (&["::ffff:192.0.2.1-::ffff:192.0.2.9"], false),
    (&["pool-a"], false),
];

/// Refused by the parser, accepted by the schema: Kubernetes CEL has no ordering on IPv6
/// addresses. The controller refuses such a pool (`Ready=False`, reason `InvalidPool`, a Warning
/// Event) and keeps serving its last valid addresses.
const CONTROLLER_ONLY: &[&[&str]] = &[
    &["2001:db8::ff-2001:db8::10"],
    &["2001:db8::10-2001:db8::20", "2001:db8::18-2001:db8::30"],
    &["2001:db8::-2001:db8::1:0", "2001:db8::100/120"],
];

#[test]
fn schema_and_parser_give_one_verdict_on_every_address_list() {
    for (addresses, valid) in AGREED {
        let schema = schema_errors(json!({ "addresses": addresses }));
        let parser = parser_accepts_addresses(addresses);
        assert_eq!(
            schema.is_empty(),
            *valid,
            "schema on {addresses:?}: {schema:?}"
        );
        assert_eq!(
            parser.is_ok(),
            *valid,
            "parser on {addresses:?}: {parser:?}"
        );
        assert!(
            schema.iter().all(|m| m.contains("spec.addresses")),
            "{addresses:?}: a message does not name the field: {schema:?}"
        );
    }
}

#[test]
fn an_overlap_inside_one_pool_is_refused_naming_both_entries() {
    let errors = schema_errors(json!({"addresses": ["192.0.2.0/28", "192.0.2.8-192.0.2.20"]}));
    assert!(
        errors
            .iter()
            .any(|m| m.contains("spec.addresses: entries overlap")
                && m.contains("192.0.2.0/28")
                && m.contains("192.0.2.8-192.0.2.20")),
        "{errors:?}"
    );
}

#[test]
fn only_ipv6_range_ordering_is_left_to_the_controller() {
    for addresses in CONTROLLER_ONLY {
        assert_eq!(
            schema_errors(json!({ "addresses": addresses })),
            Vec::<String>::new(),
            "{addresses:?}: the schema now refuses this; move it to AGREED"
        );
        assert!(
            parser_accepts_addresses(addresses).is_err(),
            "{addresses:?}"
        );
    }
}

/// Whether the schema accepts one `matchExpressions` entry: the `operator` enum (checked here,
/// as kube-cel checks CEL rules only) and the CEL values rule.
fn schema_accepts_requirement(operator: &str, values: Option<&[&str]>) -> bool {
    let schema = pool_schema();
    let requirement = &schema["properties"]["spec"]["properties"]["serviceAllocation"]["properties"]
        ["serviceSelectors"]["items"]["properties"]["matchExpressions"]["items"];
    let operators = requirement["properties"]["operator"]["enum"]
        .as_array()
        .expect("operator is an enum");
    let mut expression = json!({"key": "app", "operator": operator});
    if let Some(values) = values {
        expression["values"] = json!(values);
    }
    let spec = json!({
        "addresses": ["192.0.2.0/24"],
        "serviceAllocation": {
            "serviceSelectors": [{"matchExpressions": [expression.clone()]}],
            "namespaceSelectors": [{"matchExpressions": [expression]}],
        },
    });
    operators.contains(&json!(operator)) && schema_errors(spec).is_empty()
}

#[test]
fn schema_and_parser_accept_and_refuse_the_same_selector_operators_and_values() {
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("In", Some(&["web"])),
        ("NotIn", Some(&["web", "db"])),
        ("Exists", None),
        ("Exists", Some(&[])),
        ("DoesNotExist", None),
        ("In", None),
        ("In", Some(&[])),
        ("NotIn", None),
        ("Exists", Some(&["web"])),
        ("DoesNotExist", Some(&["web"])),
        ("in", Some(&["web"])),
        ("Gt", Some(&["1"])),
        ("", None),
    ];
    for (operator, values) in cases {
        let schema = schema_accepts_requirement(operator, *values);
        let parsed = LabelSelectorRequirement::parse(
            "app",
            operator,
            values
                .unwrap_or_default()
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
        );
        assert_eq!(
            schema,
            parsed.is_ok(),
            "{operator} {values:?}: schema says {schema}, parser says {parsed:?}"
        );
    }
}

#[test]
fn a_bad_selector_is_refused_with_a_message_naming_operator_and_key() {
    let spec = json!({
        "addresses": ["192.0.2.0/24"],
        "serviceAllocation": {"serviceSelectors": [{"matchExpressions": [
            {"key": "tier", "operator": "In"},
        ]}]},
    });
    let errors = schema_errors(spec);
    assert!(
        errors
            .iter()
            .any(|m| m.contains("operator In needs at least one value") && m.contains("tier")),
        "{errors:?}"
    );
}

#[test]
fn every_address_rule_stays_within_the_apiserver_cost_budget() {
    let schema = pool_schema();
    let addresses = &schema["properties"]["spec"]["properties"]["addresses"];
    let compiled = kube_cel::compile_schema(addresses);
    let rules = addresses["x-kubernetes-validations"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            addresses["items"]["x-kubernetes-validations"]
                .as_array()
                .unwrap(),
        );
    for rule in rules {
        let rule = rule["rule"].as_str().unwrap();
        // kube-cel warns above the runtime per-call budget (10⁶); what the apiserver enforces
        // when it accepts a CRD is the static estimate per expression, 10⁷.
        for warning in kube_cel::estimate_rule_cost(rule, &compiled) {
            let cost: u64 = warning
                .message
                .strip_prefix("estimated cost ")
                .and_then(|m| m.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX);
            assert!(cost <= 10_000_000, "{}", warning.message);
        }
    }
}
