//! `convert` over realistic MetalLB manifests: the exact ferrolb objects written, the exact list of
//! what was not converted, and every object valid for ferrolb's CRDs.

mod common;

use common::{assert_valid_ferrolb, fixture};
use ferrolb_migrate::{Conversion, Options, convert, report, yaml};
use serde_json::{Value, json};

const NO_BGP: &str =
    "ferrolb announces addresses with ARP and NDP (Layer 2) only and has no BGP speaker";

fn convert_text(text: &str, options: &Options) -> Conversion {
    let documents = yaml::parse_documents(text).unwrap_or_else(|e| panic!("input is YAML: {e}"));
    let conversion = convert(&documents, options);
    assert_valid_ferrolb(&conversion.ferrolb_objects());
    conversion
}

fn convert_fixture(name: &str) -> Conversion {
    convert_text(&fixture(name), &Options::default())
}

/// `(from, object as JSON)` for each converted object.
fn objects(conversion: &Conversion) -> Vec<(String, Value)> {
    conversion
        .objects
        .iter()
        .map(|c| {
            let json = serde_json::to_value(&c.object)
                .unwrap_or_else(|e| panic!("object serializes: {e}"));
            (c.from.clone(), json)
        })
        .collect()
}

/// `(what, reason)` for each item not converted.
fn skipped(conversion: &Conversion) -> Vec<(String, String)> {
    conversion
        .skipped
        .iter()
        .map(|s| (s.what.clone(), s.reason.clone()))
        .collect()
}

fn pair(a: &str, b: impl Into<String>) -> (String, String) {
    (a.to_owned(), b.into())
}

fn pool(name: &str, addresses: &[&str]) -> Value {
    json!({
        "apiVersion": "ferrolb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "ferrolb-system"},
        "spec": {"addresses": addresses, "autoAssign": true, "avoidBuggyIPs": false},
    })
}

fn l2(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "ferrolb.io/v1beta1",
        "kind": "L2Advertisement",
        "metadata": {"name": name, "namespace": "ferrolb-system"},
        "spec": spec,
    })
}

fn crd(kind: &str, name: &str) -> String {
    format!("metallb.io/v1beta1 {kind} metallb-system/{name}")
}

#[test]
fn layer2_setup_with_two_pools_converts_completely() {
    let conversion = convert_fixture("l2-two-pools.yaml");
    let mut general = pool("general", &["192.0.2.0/25", "2001:db8:1::/120"]);
    general["metadata"]["labels"] = json!({"tier": "general"});
    assert_eq!(
        objects(&conversion),
        [
            (crd("IPAddressPool", "general"), general),
            (
                crd("IPAddressPool", "production"),
                json!({
                    "apiVersion": "ferrolb.io/v1beta1",
                    "kind": "IPAddressPool",
                    "metadata": {
                        "name": "production",
                        "namespace": "ferrolb-system",
                        "labels": {"tier": "production"},
                        "annotations": {"owner": "platform-team"},
                    },
                    "spec": {
                        "addresses": ["198.51.100.10-198.51.100.20"],
                        "autoAssign": false,
                        "avoidBuggyIPs": true,
                        "serviceAllocation": {
                            "priority": 10,
                            "namespaces": ["shop"],
                            "namespaceSelectors": [{"matchLabels": {"env": "prod"}}],
                            "serviceSelectors": [{"matchExpressions": [
                                {"key": "app", "operator": "In", "values": ["web", "api"]},
                            ]}],
                        },
                    },
                })
            ),
            (
                crd("L2Advertisement", "general"),
                l2("general", json!({"ipAddressPools": ["general"]}))
            ),
            (
                crd("L2Advertisement", "production-edge"),
                l2(
                    "production-edge",
                    json!({
                        "ipAddressPoolSelectors": [{"matchLabels": {"tier": "production"}}],
                        "nodeSelectors": [
                            {"matchLabels": {"node-role.kubernetes.io/edge": ""}},
                            {"matchExpressions": [{
                                "key": "kubernetes.io/hostname",
                                "operator": "NotIn",
                                "values": ["edge-3"],
                            }]},
                        ],
                        "interfaces": ["eth1", "bond0.42"],
                    })
                )
            ),
        ]
    );
    assert_eq!(skipped(&conversion), []);
    assert!(conversion.is_complete());
}

#[test]
fn bgp_objects_are_listed_with_the_reason_and_the_pools_still_convert() {
    let conversion = convert_fixture("bgp-mixed.yaml");
    assert_eq!(
        objects(&conversion),
        [
            (
                crd("IPAddressPool", "routed"),
                pool("routed", &["203.0.113.0/26"])
            ),
            (
                crd("IPAddressPool", "lan"),
                pool("lan", &["192.0.2.240/28"])
            ),
            (
                crd("L2Advertisement", "lan"),
                l2("lan", json!({"ipAddressPools": ["lan"]}))
            ),
        ]
    );
    assert_eq!(
        skipped(&conversion),
        [
            pair(
                "metallb.io/v1beta2 BGPPeer metallb-system/tor-a",
                format!("BGP peering session: {NO_BGP}")
            ),
            pair(
                &crd("BGPPeer", "tor-b"),
                format!("BGP peering session: {NO_BGP}")
            ),
            pair(
                &crd("BGPAdvertisement", "routed"),
                format!(
                    "BGP advertisement of pool(s) routed: {NO_BGP}; the pools themselves are \
                     converted, but their addresses are reachable only where an \
                     L2Advertisement announces them"
                )
            ),
            pair(
                &crd("BFDProfile", "fast"),
                format!("BFD profile, used only by BGP sessions: {NO_BGP}")
            ),
            pair(
                &crd("Community", "communities"),
                format!("BGP community aliases: {NO_BGP}")
            ),
        ]
    );
}

#[test]
fn legacy_configmap_layer2_pools_are_announced_and_bgp_pools_are_not() {
    let conversion = convert_fixture("legacy-configmap.yaml");
    let cm = "v1 ConfigMap metallb-system/config";
    let mut reserved = pool("reserved", &["192.0.2.200-192.0.2.210", "2001:db8:2::/124"]);
    reserved["spec"]["autoAssign"] = json!(false);
    reserved["spec"]["avoidBuggyIPs"] = json!(true);
    assert_eq!(
        objects(&conversion),
        [
            (
                format!("{cm}: data.config.address-pools[0] (default)"),
                pool("default", &["192.0.2.64/26"])
            ),
            (
                format!("{cm}: data.config.address-pools[1] (reserved)"),
                reserved
            ),
            (
                format!("{cm}: data.config.address-pools[2] (routed)"),
                pool("routed", &["203.0.113.0/24"])
            ),
            (
                format!("{cm}: data.config.address-pools with protocol layer2"),
                l2(
                    "config-layer2",
                    json!({"ipAddressPools": ["default", "reserved"]})
                )
            ),
        ]
    );
    assert_eq!(
        skipped(&conversion),
        [
            pair(
                &format!("{cm}: data.config.peers[0] (198.51.100.1, AS 64501)"),
                format!("BGP peer: {NO_BGP}")
            ),
            pair(
                &format!("{cm}: data.config.peers[1] (198.51.100.2, AS 64502)"),
                format!("BGP peer: {NO_BGP}")
            ),
            pair(
                &format!("{cm}: data.config.bgp-communities"),
                format!("BGP community aliases: {NO_BGP}")
            ),
            pair(
                &format!("{cm}: data.config.address-pools[2] (routed)"),
                format!(
                    "protocol bgp: converted to IPAddressPool routed so that its addresses stay \
                     allocated to the Services holding them, but not announced: {NO_BGP}; name \
                     the pool in an L2Advertisement if its addresses should be announced in \
                     Layer 2"
                )
            ),
            pair(
                &format!("{cm}: data.config.address-pools[2].bgp-advertisements"),
                format!("BGP advertisement settings: {NO_BGP}")
            ),
        ]
    );
}

#[test]
fn unknown_fields_are_reported_one_by_one_and_the_object_converted_without_them() {
    let conversion = convert_fixture("unknown-fields.yaml");
    let mut office = pool("office", &["192.0.2.128/27"]);
    office["spec"]["serviceAllocation"] = json!({"namespaces": ["office"]});
    assert_eq!(
        objects(&conversion),
        [
            (crd("IPAddressPool", "office"), office),
            (
                crd("L2Advertisement", "office"),
                l2(
                    "office",
                    json!({
                        "ipAddressPools": ["office"],
                        "nodeSelectors": [{"matchLabels": {"site": "hq"}}],
                    })
                )
            ),
        ]
    );
    let unknown = |kind: &str| {
        format!(
            "unknown field: not a field of metallb.io/v1beta1 {kind}, so its meaning is unknown; \
             the {kind} was converted without it"
        )
    };
    let office_pool = crd("IPAddressPool", "office");
    assert_eq!(
        skipped(&conversion),
        [
            pair(
                &format!("{office_pool}: metadata.finalizers"),
                "metadata not carried over: ferrolb-migrate keeps only the name, labels and \
                 annotations"
            ),
            pair(
                &format!("{office_pool}: spec.avoidBuggyIps"),
                unknown("IPAddressPool")
            ),
            pair(
                &format!("{office_pool}: spec.serviceAllocation.priorty"),
                unknown("IPAddressPool")
            ),
            pair(
                &format!(
                    "{}: spec.nodeSelectors[0].matchField",
                    crd("L2Advertisement", "office")
                ),
                unknown("L2Advertisement")
            ),
        ]
    );
}

#[test]
fn kubectl_list_output_is_flattened_and_server_written_metadata_and_status_left_out() {
    let conversion = convert_fixture("list.yaml");
    assert_eq!(
        objects(&conversion),
        [
            (
                crd("IPAddressPool", "first-pool"),
                pool("first-pool", &["192.0.2.10-192.0.2.50"])
            ),
            (crd("L2Advertisement", "example"), l2("example", json!({}))),
        ]
    );
    assert_eq!(
        skipped(&conversion),
        [pair(
            &crd("ServiceL2Status", "l2-4kxjv"),
            "status written by MetalLB's speakers, not configuration: ferrolb's speakers write \
             their own ferrolb.io ServiceL2Status"
        )]
    );
}

#[test]
fn every_object_goes_to_the_chosen_namespace_whatever_namespace_it_came_from() {
    let text = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: a, namespace: metallb}
spec: {addresses: [192.0.2.0/28]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: a}
";
    let conversion = convert_text(
        text,
        &Options {
            namespace: "lb".to_owned(),
        },
    );
    let namespaces: Vec<(String, Value)> = objects(&conversion)
        .into_iter()
        .map(|(from, object)| (from, object["metadata"]["namespace"].clone()))
        .collect();
    assert_eq!(
        namespaces,
        [
            (
                "metallb.io/v1beta1 IPAddressPool metallb/a".to_owned(),
                json!("lb")
            ),
            (
                "metallb.io/v1beta1 L2Advertisement a".to_owned(),
                json!("lb")
            ),
        ]
    );
    assert!(conversion.is_complete());
}

#[test]
fn two_objects_landing_on_one_name_are_not_both_written() {
    let text = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [192.0.2.0/28]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: other}
spec: {addresses: [192.0.2.16/28]}
";
    let conversion = convert_text(text, &Options::default());
    assert_eq!(
        objects(&conversion),
        [(crd("IPAddressPool", "lan"), pool("lan", &["192.0.2.0/28"]))]
    );
    assert_eq!(
        skipped(&conversion),
        [pair(
            "metallb.io/v1beta1 IPAddressPool other/lan",
            "duplicate: ferrolb.io/v1beta1 IPAddressPool ferrolb-system/lan was already converted \
             from metallb.io/v1beta1 IPAddressPool metallb-system/lan; rename one of them and run \
             ferrolb-migrate again"
        )]
    );
}

#[test]
fn deprecated_address_pool_converts_like_the_configmap() {
    let text = "\
apiVersion: metallb.io/v1beta1
kind: AddressPool
metadata: {name: lan, namespace: metallb-system, labels: {site: hq}}
spec:
  protocol: layer2
  addresses: [192.0.2.0/28]
  autoAssign: false
---
apiVersion: metallb.io/v1alpha1
kind: AddressPool
metadata: {name: routed, namespace: metallb-system}
spec:
  protocol: bgp
  addresses: [203.0.113.0/28]
  bgpAdvertisements: [{aggregationLength: 32}]
";
    let conversion = convert_text(text, &Options::default());
    let mut lan = pool("lan", &["192.0.2.0/28"]);
    lan["metadata"]["labels"] = json!({"site": "hq"});
    lan["spec"]["autoAssign"] = json!(false);
    let lan_from = "metallb.io/v1beta1 AddressPool metallb-system/lan";
    let routed_from = "metallb.io/v1alpha1 AddressPool metallb-system/routed";
    assert_eq!(
        objects(&conversion),
        [
            (lan_from.to_owned(), lan),
            (
                lan_from.to_owned(),
                l2("lan", json!({"ipAddressPools": ["lan"]}))
            ),
            (routed_from.to_owned(), pool("routed", &["203.0.113.0/28"])),
        ]
    );
    assert_eq!(
        skipped(&conversion),
        [
            pair(
                routed_from,
                format!(
                    "protocol bgp: converted to IPAddressPool routed so that its addresses stay \
                     allocated to the Services holding them, but not announced: {NO_BGP}; name \
                     the pool in an L2Advertisement if its addresses should be announced in \
                     Layer 2"
                )
            ),
            pair(
                &format!("{routed_from}: spec.bgpAdvertisements"),
                format!("BGP advertisement settings: {NO_BGP}")
            ),
        ]
    );
}

#[test]
fn objects_ferrolb_would_reject_are_reported_whole_with_the_field_at_fault() {
    let text = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: bare-ip, namespace: metallb-system}
spec: {addresses: [192.0.2.7]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: one-string, namespace: metallb-system}
spec: {addresses: 192.0.2.0/28}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: negative, namespace: metallb-system}
spec: {addresses: [192.0.2.0/28], serviceAllocation: {priority: -1}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {namespace: metallb-system}
spec: {addresses: [192.0.2.0/28]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: long-interface, namespace: metallb-system}
spec: {interfaces: [enp0s31f6-uplink-0]}
";
    let conversion = convert_text(text, &Options::default());
    assert_eq!(objects(&conversion), []);
    assert_eq!(
        skipped(&conversion),
        [
            pair(
                &crd("IPAddressPool", "bare-ip"),
                "invalid: pool \"bare-ip\", entry 0 (\"192.0.2.7\"): 192.0.2.7 is a single \
                 address: use 192.0.2.7/32 or a range; ferrolb would not use this pool"
            ),
            pair(
                &crd("IPAddressPool", "one-string"),
                "invalid: spec.addresses: invalid type: string \"192.0.2.0/28\", expected a \
                 sequence"
            ),
            pair(
                &crd("IPAddressPool", "negative"),
                "invalid: spec.serviceAllocation.priority: -1 is negative; ferrolb accepts 0 \
                 (tried last) or more"
            ),
            pair(
                "metallb.io/v1beta1 IPAddressPool (document 4 has no metadata.name)",
                "invalid: metadata.name: missing"
            ),
            pair(
                &crd("L2Advertisement", "long-interface"),
                "invalid: spec.interfaces[0]: \"enp0s31f6-uplink-0\" is not a Linux interface \
                 name (1 to 15 bytes, no '/' or white space)"
            ),
        ]
    );
}

#[test]
fn anything_that_is_not_metallb_configuration_is_reported() {
    let text = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: controller, namespace: metallb-system}
---
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: already, namespace: ferrolb-system}
spec: {addresses: [192.0.2.0/28]}
---
apiVersion: metallb.io/v1alpha1
kind: IPAddressPool
metadata: {name: old, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: OSPFInstance
metadata: {name: area0, namespace: metallb-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-proxy, namespace: kube-system}
data: {config.conf: 'mode: ipvs'}
---
just a string
";
    let conversion = convert_text(text, &Options::default());
    assert_eq!(objects(&conversion), []);
    let not_metallb = "not a MetalLB object: ferrolb-migrate converts metallb.io resources and \
                       MetalLB's legacy configuration ConfigMap";
    assert_eq!(
        skipped(&conversion),
        [
            pair("apps/v1 Deployment metallb-system/controller", not_metallb),
            pair(
                "ferrolb.io/v1beta1 IPAddressPool ferrolb-system/already",
                not_metallb
            ),
            pair(
                "metallb.io/v1alpha1 IPAddressPool metallb-system/old",
                "unsupported version v1alpha1: ferrolb-migrate reads metallb.io/v1beta1, the \
                 version every MetalLB release with this kind serves"
            ),
            pair(
                "metallb.io/v1beta1 OSPFInstance metallb-system/area0",
                "unknown MetalLB kind \"OSPFInstance\": ferrolb-migrate converts IPAddressPool, \
                 L2Advertisement and AddressPool"
            ),
            pair(
                "v1 ConfigMap kube-system/kube-proxy",
                "not a MetalLB configuration: MetalLB's ConfigMap holds its configuration as YAML \
                 text in data.config"
            ),
            pair(
                "<no apiVersion> <no kind> (document 6 has no metadata.name)",
                not_metallb
            ),
        ]
    );
}

#[test]
fn legacy_config_keys_ferrolb_migrate_does_not_know_are_reported() {
    let text = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: metallb, namespace: metallb}
data:
  extra: x
  config: |
    peer-autodiscovery: {from-labels: [{my-asn: example.com/asn}]}
    address-pools:
    - name: old-style
      protocol: layer2
      addresses: [192.0.2.0/28]
      arp-network: 192.0.2.0/24
    - name: typo
      protocol: layer-2
      addresses: [192.0.2.16/28]
    ipam: {}
";
    let conversion = convert_text(text, &Options::default());
    let cm = "v1 ConfigMap metallb/metallb";
    assert_eq!(
        objects(&conversion),
        [
            (
                format!("{cm}: data.config.address-pools[0] (old-style)"),
                pool("old-style", &["192.0.2.0/28"])
            ),
            (
                format!("{cm}: data.config.address-pools with protocol layer2"),
                l2("metallb-layer2", json!({"ipAddressPools": ["old-style"]}))
            ),
        ]
    );
    let unknown = "unknown field: not part of MetalLB's configuration ConfigMap format, so its \
                   meaning is unknown; converted without it";
    assert_eq!(
        skipped(&conversion),
        [
            pair(&format!("{cm}: data.extra"), unknown),
            pair(
                &format!("{cm}: data.config.peer-autodiscovery"),
                format!("BGP peer autodiscovery: {NO_BGP}")
            ),
            pair(
                &format!("{cm}: data.config.address-pools[0].arp-network"),
                unknown
            ),
            pair(
                &format!("{cm}: data.config.address-pools[1] (typo)"),
                "invalid: data.config.address-pools[1].protocol: unknown protocol \"layer-2\" \
                 (MetalLB knows layer2 and bgp)"
            ),
            pair(&format!("{cm}: data.config.ipam"), unknown),
        ]
    );
}

#[test]
fn the_report_lists_each_object_and_each_reason() {
    let text = "\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [192.0.2.0/28]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
";
    let conversion = convert_text(text, &Options::default());
    assert_eq!(
        report(&conversion),
        format!(
            "converted: metallb.io/v1beta1 IPAddressPool metallb-system/lan -> ferrolb.io/v1beta1 \
             IPAddressPool ferrolb-system/lan\n\
             NOT converted: metallb.io/v1beta2 BGPPeer metallb-system/tor\n    \
             reason: BGP peering session: {NO_BGP}\n\
             summary: 1 ferrolb object(s) written, 1 item(s) not converted\n"
        )
    );
}
