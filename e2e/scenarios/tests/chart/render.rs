//! Lint, and render every value set in `charts/ferrolb/ci/`: what each one sets shows up in the
//! objects, on top of the invariants every rendering holds.

use serde_json::Value;

use super::{chart_py, container, env_value, find, invariants, monitoring, render, value_sets};

#[test]
fn chart_lints_clean_with_every_value_set() {
    let out = chart_py(&["lint"]);
    for set in value_sets() {
        assert!(
            out.contains(&format!("charts/ferrolb/ci/{set}: lint passed")),
            "{set} not linted:\n{out}"
        );
    }
}

#[test]
fn every_value_set_renders_objects_of_their_kubernetes_types() {
    for set in value_sets() {
        let docs = render(&set);
        invariants::check(&set, &docs);
        match set.as_str() {
            "defaults-values.yaml" => check_defaults(&docs),
            "no-crds-values.yaml" => {
                assert!(crds(&docs).is_empty(), "crds.enabled=false rendered a CRD")
            }
            "no-keep-values.yaml" => check_no_keep(&docs),
            "custom-values.yaml" => check_custom(&docs),
            "monitoring-values.yaml" => monitoring::check(&docs),
            other => panic!("add expectations for the new value set {other}"),
        }
    }
}

fn crds(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect()
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

fn check_defaults(docs: &[Value]) {
    assert_eq!(
        kinds(docs),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "DaemonSet",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Secret",
            "ServiceAccount",
            "ServiceAccount",
        ],
        "defaults render other objects than the core ones"
    );
    let deployment = find(docs, "Deployment", "ferrolb-controller");
    assert_eq!(
        deployment["spec"]["replicas"], 2,
        "default controller replicas"
    );
    for crd in crds(docs) {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "by default a CRD outlives an uninstall: {}",
            crd["metadata"]["name"]
        );
    }
    let controller = container(docs, "Deployment");
    assert_eq!(
        env_value(&controller, "FERROLB_LB_CLASS").as_deref(),
        Some("")
    );
    let speaker = container(docs, "DaemonSet");
    assert_eq!(
        env_value(&speaker, "FERROLB_CONFLICT_POLICY").as_deref(),
        Some("warn")
    );
    assert_eq!(env_value(&speaker, "RUST_LOG").as_deref(), Some("info"));
    let exclude = env_value(&speaker, "FERROLB_EXCLUDE_INTERFACES").unwrap();
    assert!(
        exclude.contains("veth*"),
        "pod veths are not excluded by default: {exclude}"
    );
    assert_eq!(env_value(&speaker, "FERROLB_INCLUDE_INTERFACES"), None);
}

fn check_no_keep(docs: &[Value]) {
    let crds = crds(docs);
    assert_eq!(crds.len(), 3, "CRDs rendered with crds.keep=false");
    for crd in crds {
        assert!(
            crd["metadata"]["annotations"].is_null(),
            "crds.keep=false still annotates: {}",
            crd["metadata"]
        );
    }
}

fn check_custom(docs: &[Value]) {
    let controller = container(docs, "Deployment");
    let speaker = container(docs, "DaemonSet");
    for c in [&controller, &speaker] {
        assert_eq!(
            env_value(c, "FERROLB_LB_CLASS").as_deref(),
            Some("example.com/lan")
        );
        assert_eq!(env_value(c, "FERROLB_LOG_FORMAT").as_deref(), Some("json"));
    }
    for (name, value) in [
        ("FERROLB_CONFLICT_POLICY", "withdraw"),
        ("FERROLB_INCLUDE_INTERFACES", "eth0,bond*"),
        ("FERROLB_EXCLUDE_INTERFACES", "lo,docker*,veth*"),
        ("FERROLB_REFRESH_INTERVAL", "30s"),
        ("FERROLB_IGNORE_EXCLUDE_LB", "true"),
        ("FERROLB_GOSSIP_PORT", "7947"),
        ("FERROLB_GOSSIP_PROFILE", "fast"),
        // The node's own IP, not every address of the host (HOST_IP below).
        ("FERROLB_METRICS_ADDR", "$(HOST_IP):7473"),
        ("RUST_LOG", "debug"),
        ("TZ", "UTC"),
    ] {
        assert_eq!(
            env_value(&speaker, name).as_deref(),
            Some(value),
            "speaker {name}"
        );
    }
    let host_ip = speaker
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "HOST_IP")
        .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(
        host_ip,
        Some("status.hostIP"),
        "HOST_IP from the downward API"
    );
    assert_eq!(
        speaker.args.as_deref(),
        Some(&["--shutdown-grace=3s".to_owned()][..])
    );
    assert_eq!(
        controller.args.as_deref(),
        Some(&["--log-format=json".to_owned()][..])
    );
    let image = controller.image.as_deref().unwrap();
    assert!(
        image.ends_with("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        "the controller image is not pinned by digest: {image}"
    );
    let deployment = find(docs, "Deployment", "lan-lb-controller");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let affinity = &deployment["spec"]["template"]["spec"]["affinity"];
    assert!(affinity["nodeAffinity"].is_object(), "{affinity}");
    assert!(affinity["podAntiAffinity"].is_null(), "{affinity}");
    find(docs, "DaemonSet", "lan-lb-speaker");
    find(docs, "Secret", "lan-lb-gossip-keys");
    find(docs, "ClusterRole", "lan-lb-speaker");
    assert_eq!(
        find(docs, "PodDisruptionBudget", "lan-lb-controller")["spec"]["minAvailable"],
        2
    );
}
