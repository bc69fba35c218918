//! What every value set must render, whatever it changes: typed objects with the chart's labels
//! in the right namespace, locked-down pods with the fields the binaries read, the gossip key
//! wiring, and least-privilege RBAC.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Container, PodSpec, Toleration};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use serde_json::Value;

use super::{NAMESPACE, check_typed, env_field, env_value, find, first, typed};

/// Checks everything below on the objects rendered from value set `set`.
pub(super) fn check(set: &str, docs: &[Value]) {
    for d in docs {
        check_metadata(set, d);
    }
    check_controller(set, docs);
    check_speaker(set, docs);
    check_rbac(set, docs);
}

fn check_metadata(set: &str, d: &Value) {
    check_typed(d);
    let what = format!("{set}: {} {}", d["kind"], d["metadata"]["name"]);
    let labels = &d["metadata"]["labels"];
    assert_eq!(
        labels["app.kubernetes.io/name"], "ferrolb",
        "{what}: {labels}"
    );
    assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
    assert!(labels["app.kubernetes.io/instance"].is_string(), "{what}");
    let cluster_scoped = matches!(
        d["kind"].as_str().unwrap(),
        "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition"
    );
    if cluster_scoped {
        assert!(
            d["metadata"]["namespace"].is_null(),
            "{what} is cluster-scoped but names a namespace"
        );
    } else {
        assert_eq!(d["metadata"]["namespace"], NAMESPACE, "{what}");
    }
}

/// Read-only root, no privilege escalation, every capability dropped but `add`.
fn check_locked_down(set: &str, who: &str, c: &Container, add: Option<&[String]>) {
    let sc = c.security_context.as_ref().unwrap();
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(
        caps.drop.as_deref(),
        Some(&["ALL".to_owned()][..]),
        "{set}: {who}"
    );
    assert_eq!(
        caps.add.as_deref().filter(|a| !a.is_empty()),
        add,
        "{set}: {who}'s added capabilities"
    );
    assert_eq!(sc.read_only_root_filesystem, Some(true), "{set}: {who}");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{set}: {who}");
    assert!(
        sc.privileged.is_none_or(|p| !p),
        "{set}: {who} is privileged"
    );
}

fn check_controller(set: &str, docs: &[Value]) {
    let spec = first::<Deployment>(docs, "Deployment").spec;
    let pod = spec.template.spec.unwrap();
    let controller = &pod.containers[0];
    assert_eq!(
        env_field(controller, "POD_NAME").as_deref(),
        Some("metadata.name")
    );
    assert_eq!(
        env_field(controller, "FERROLB_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    let leader_elect = env_value(controller, "FERROLB_LEADER_ELECT");
    assert!(
        spec.replicas == Some(1) || leader_elect.as_deref() == Some("true"),
        "{set}: several controller replicas need leader election"
    );
    let pod_sc = pod.security_context.as_ref().unwrap();
    assert_eq!(
        pod_sc.run_as_non_root,
        Some(true),
        "{set}: controller runs as root"
    );
    check_locked_down(set, "the controller", controller, None);
    for path in ["/healthz", "/readyz"] {
        let probes = [&controller.liveness_probe, &controller.readiness_probe];
        assert!(
            probes.iter().any(|p| p
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .is_some_and(|h| h.path.as_deref() == Some(path))),
            "{set}: no controller probe on {path}"
        );
    }
}

fn tolerates_control_plane(tolerations: Option<&Vec<Toleration>>) -> bool {
    tolerations.into_iter().flatten().any(|t| {
        t.operator.as_deref() == Some("Exists")
            && (t.key.is_none()
                || t.key.as_deref() == Some("node-role.kubernetes.io/control-plane"))
    })
}

fn check_speaker(set: &str, docs: &[Value]) {
    let spec = first::<DaemonSet>(docs, "DaemonSet").spec;
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.host_network,
        Some(true),
        "{set}: the speaker answers ARP on the node's links"
    );
    let speaker = &pod.containers[0];
    for (name, field) in [
        ("NODE_NAME", "spec.nodeName"),
        ("POD_IP", "status.podIP"),
        ("POD_NAME", "metadata.name"),
    ] {
        assert_eq!(
            env_field(speaker, name).as_deref(),
            Some(field),
            "{set}: speaker {name}"
        );
    }
    // The speakers find their peers with this selector: their own pods must match it.
    let selector = env_value(speaker, "FERROLB_SPEAKER_SELECTOR").unwrap();
    for pair in selector.split(',') {
        let (k, v) = pair.split_once('=').unwrap();
        assert_eq!(
            labels.get(k).map(String::as_str),
            Some(v),
            "{set}: speaker pods must carry {pair}"
        );
    }
    // ... and the binary's default selector too.
    assert_eq!(labels["app.kubernetes.io/name"], "ferrolb");
    assert_eq!(labels["app.kubernetes.io/component"], "speaker");
    let net_raw = ["NET_RAW".to_owned()];
    check_locked_down(set, "the speaker", speaker, Some(&net_raw[..]));
    assert!(
        tolerates_control_plane(pod.tolerations.as_ref()),
        "{set}: speakers do not run on control-plane nodes"
    );
    check_gossip(set, docs, &pod, speaker);
}

/// The gossip key file comes from the Secret the chart makes or names, and the port is declared.
fn check_gossip(set: &str, docs: &[Value], pod: &PodSpec, speaker: &Container) {
    let key_file = env_value(speaker, "FERROLB_GOSSIP_KEY_FILE").unwrap();
    let mount = speaker
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| key_file.starts_with(&m.mount_path))
        .unwrap_or_else(|| panic!("{set}: nothing mounted at the key file {key_file}"));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap();
    let secret_name = volume.secret.as_ref().unwrap().secret_name.clone().unwrap();
    let secret = find(docs, "Secret", &secret_name);
    assert!(
        !secret["data"]["keys"].as_str().unwrap().is_empty(),
        "{set}: no generated gossip key"
    );
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "{set}: the gossip Secret does not outlive an uninstall"
    );
    let gossip_port: i32 = env_value(speaker, "FERROLB_GOSSIP_PORT")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        speaker
            .ports
            .iter()
            .flatten()
            .any(|p| p.container_port == gossip_port && p.protocol.as_deref() == Some("UDP")),
        "{set}: gossip port {gossip_port}/UDP not declared"
    );
}

/// Resources the binaries write; no role may write anything else.
const ALLOWED_WRITES: &[&str] = &[
    "services/status",
    "events",
    // The speaker's own Pod: its usable interfaces (ferrolb.io/usable-interfaces).
    "pods",
    "ipaddresspools",
    "ipaddresspools/status",
    "ipaddresspools/finalizers",
    "leases",
    "servicel2statuses",
    "servicel2statuses/status",
];

/// Least privilege: no wildcards, no Secrets, writes only where the binaries write.
fn check_rbac(set: &str, docs: &[Value]) {
    let mut all_rules: Vec<(String, PolicyRule)> = Vec::new();
    for d in docs {
        let name = d["metadata"]["name"].as_str().unwrap().to_owned();
        let rules = match d["kind"].as_str().unwrap() {
            "ClusterRole" => typed::<ClusterRole>(d).rules.unwrap_or_default(),
            "Role" => typed::<Role>(d).rules.unwrap_or_default(),
            _ => continue,
        };
        all_rules.extend(rules.into_iter().map(|r| (name.clone(), r)));
    }
    assert!(!all_rules.is_empty(), "{set}: no RBAC rendered");
    let writes = ["create", "update", "patch", "delete", "deletecollection"];
    for (role, rule) in &all_rules {
        let resources = rule.resources.clone().unwrap_or_default();
        for field in [&rule.verbs, &resources, rule.api_groups.as_ref().unwrap()] {
            assert!(
                !field.iter().any(|v| v == "*"),
                "{set}: {role} has a wildcard: {rule:?}"
            );
        }
        assert!(
            !resources
                .iter()
                .any(|r| r.starts_with("secrets") || r.starts_with("pods/exec")),
            "{set}: {role} must not reach {resources:?}"
        );
        if rule.verbs.iter().any(|v| writes.contains(&v.as_str())) {
            for r in &resources {
                assert!(
                    ALLOWED_WRITES.contains(&r.as_str()),
                    "{set}: {role} may write {r}"
                );
            }
        }
    }
    // The Lease: create anywhere in the namespace (cannot be limited by name), the rest only on
    // the controller's own Lease.
    for (_, r) in all_rules
        .iter()
        .filter(|(_, r)| r.resources.iter().flatten().any(|x| x == "leases"))
    {
        let named = r.resource_names.as_deref() == Some(&["ferrolb-controller".to_owned()][..]);
        assert!(
            named || r.verbs == ["create"],
            "{set}: lease rule reaches other Leases: {r:?}"
        );
    }
    // Bindings point at service accounts the chart renders.
    let accounts: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceAccount")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding")
    {
        for s in d["subjects"].as_array().unwrap() {
            assert!(
                accounts.contains(s["name"].as_str().unwrap()),
                "{set}: binding to a service account not rendered: {s}"
            );
            assert_eq!(s["namespace"], NAMESPACE, "{set}: binding subject {s}");
        }
    }
}
