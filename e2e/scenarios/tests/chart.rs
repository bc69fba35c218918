//! The Helm chart `charts/ferrolb` on the real Helm engine (the Helm v4 SDK from PyPI, driven by
//! `hack/chart.py`), checked against Kubernetes' own types and the test API server:
//!
//! - lint, and render every value set in `charts/ferrolb/ci/`;
//! - every rendered object parses as its Kubernetes type with no field left over (a misspelt
//!   field is an error here, where the API server would drop it silently), and carries what the
//!   binaries need (labels the speaker selects peers by, downward-API fields, one capability);
//! - every object is accepted by the test API server through `kubectl apply`, and a Helm install,
//!   upgrade and uninstall against it keep the gossip key, the CRDs and the Secret;
//! - the generated files (native manifest, chart CRDs) are current, the schema refuses bad values
//!   naming the key, and `promtool` accepts the alerts and passes their unit tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, Secret, Service, ServiceAccount, Toleration,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use test_apiserver::{ApiServer, ServerConfig};

const NAMESPACE: &str = "ferrolb-system";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(program: &str, args: &[&str], install_hint: &str) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; {install_hint}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `python3 hack/chart.py ARGS` and returns its stdout; fails the test (never skips) when
/// Python or the Helm engine is missing, or the command fails.
fn chart_py(args: &[&str]) -> String {
    const HINT: &str =
        "the chart tests need Python 3 and the Helm engine: pip install helm-python-sdk";
    let probe = run("python3", &["-c", "import helm_python"], HINT);
    assert!(probe.status.success(), "{HINT}\n{}", text(&probe));
    let mut full = vec!["hack/chart.py"];
    full.extend_from_slice(args);
    let out = run("python3", &full, HINT);
    assert!(
        out.status.success(),
        "python3 hack/chart.py {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({e}): install it (apt-get install kubernetes-client)")
        });
    (out.status.success(), text(&out))
}

/// The value sets in `charts/ferrolb/ci/`, by file name.
fn value_sets() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join("charts/ferrolb/ci"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 5,
        "expected the ci value sets, found {names:?}"
    );
    names
}

fn render_text(set: &str) -> String {
    chart_py(&["render", "--values", &format!("charts/ferrolb/ci/{set}")])
}

fn parse_docs(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn render(set: &str) -> Vec<Value> {
    parse_docs(&render_text(set))
}

/// Parses `object` as `T` and back: what comes back must be what went in, so a field the type
/// does not have (a typo, a wrong level of indentation) fails here.
fn typed<T: DeserializeOwned + Serialize>(object: &Value) -> T {
    let what = format!("{} {}", object["kind"], object["metadata"]["name"]);
    let parsed: T = serde_json::from_value(object.clone())
        .unwrap_or_else(|e| panic!("{what} does not parse as its Kubernetes type: {e}"));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(
        &back, object,
        "{what}: fields were lost or changed parsing it as its Kubernetes type"
    );
    parsed
}

fn check_typed(object: &Value) {
    match object["kind"].as_str().unwrap() {
        "Deployment" => {
            let _: Deployment = typed(object);
        }
        "DaemonSet" => {
            let _: DaemonSet = typed(object);
        }
        "ServiceAccount" => {
            let _: ServiceAccount = typed(object);
        }
        "ClusterRole" => {
            let _: ClusterRole = typed(object);
        }
        "ClusterRoleBinding" => {
            let _: ClusterRoleBinding = typed(object);
        }
        "Role" => {
            let _: Role = typed(object);
        }
        "RoleBinding" => {
            let _: RoleBinding = typed(object);
        }
        "Secret" => {
            let _: Secret = typed(object);
        }
        "ConfigMap" => {
            let _: ConfigMap = typed(object);
        }
        "PodDisruptionBudget" => {
            let _: PodDisruptionBudget = typed(object);
        }
        "NetworkPolicy" => {
            let _: NetworkPolicy = typed(object);
        }
        "Service" => {
            let _: Service = typed(object);
        }
        "CustomResourceDefinition" => {
            let _: CustomResourceDefinition = typed(object);
        }
        "ServiceMonitor" | "PodMonitor" | "PrometheusRule" => {
            assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1", "{object}");
            assert!(object["spec"].is_object(), "{object}");
        }
        other => panic!("the chart renders an unexpected kind {other}"),
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    k.sort();
    k
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container.env.iter().flatten().find(|e| e.name == name)
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    env(container, name).and_then(|e| e.value.clone())
}

fn env_field(container: &Container, name: &str) -> Option<String> {
    env(container, name)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone())
}

fn tolerates_control_plane(tolerations: Option<&Vec<Toleration>>) -> bool {
    tolerations.into_iter().flatten().any(|t| {
        t.operator.as_deref() == Some("Exists")
            && (t.key.is_none()
                || t.key.as_deref() == Some("node-role.kubernetes.io/control-plane"))
    })
}

/// What every value set must hold, whatever it changes.
fn check_common(set: &str, docs: &[Value]) {
    for d in docs {
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
                "{what} is cluster-scoped"
            );
        } else {
            assert_eq!(d["metadata"]["namespace"], NAMESPACE, "{what}");
        }
    }

    let deployment: Deployment = typed(docs.iter().find(|d| d["kind"] == "Deployment").unwrap());
    let spec = deployment.spec;
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
        "{set}: controller runs as non-root"
    );
    let sc = controller.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true), "{set}");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{set}");
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{set}");
    assert!(
        caps.add.as_ref().is_none_or(Vec::is_empty),
        "{set}: the controller needs no capability"
    );
    for path in ["/healthz", "/readyz"] {
        let probes = [&controller.liveness_probe, &controller.readiness_probe];
        assert!(
            probes.iter().any(|p| p
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .is_some_and(|h| h.path.as_deref() == Some(path))),
            "{set}: controller probe {path}"
        );
    }

    let daemonset: DaemonSet = typed(docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap());
    let spec = daemonset.spec;
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(
        pod.host_network,
        Some(true),
        "{set}: the speaker answers ARP on the node's links"
    );
    let speaker = &pod.containers[0];
    assert_eq!(
        env_field(speaker, "NODE_NAME").as_deref(),
        Some("spec.nodeName"),
        "{set}"
    );
    assert_eq!(
        env_field(speaker, "POD_IP").as_deref(),
        Some("status.podIP"),
        "{set}"
    );
    assert_eq!(
        env_field(speaker, "POD_NAME").as_deref(),
        Some("metadata.name"),
        "{set}"
    );
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
    let sc = speaker.security_context.as_ref().unwrap();
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(
        caps.add.as_deref(),
        Some(&["NET_RAW".to_owned()][..]),
        "{set}: CAP_NET_RAW only"
    );
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{set}");
    assert_eq!(sc.read_only_root_filesystem, Some(true), "{set}");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{set}");
    assert!(sc.privileged.is_none_or(|p| !p), "{set}: never privileged");
    assert!(
        tolerates_control_plane(pod.tolerations.as_ref()),
        "{set}: speakers run on control-plane nodes"
    );
    // The gossip key file comes from the Secret the chart makes or names.
    let key_file = env_value(speaker, "FERROLB_GOSSIP_KEY_FILE").unwrap();
    let mount = speaker
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| key_file.starts_with(&m.mount_path))
        .unwrap();
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
        "{set}: generated gossip key"
    );
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "{set}"
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
        "{set}: gossip port declared"
    );

    check_rbac(set, docs);
}

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
    assert!(!all_rules.is_empty(), "{set}: RBAC rendered");
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
        let allowed_writes: &[&str] = &[
            "services/status",
            "events",
            "ipaddresspools",
            "ipaddresspools/status",
            "ipaddresspools/finalizers",
            "leases",
            "servicel2statuses",
            "servicel2statuses/status",
        ];
        if rule.verbs.iter().any(|v| writes.contains(&v.as_str())) {
            for r in &resources {
                assert!(
                    allowed_writes.contains(&r.as_str()),
                    "{set}: {role} may write {r}"
                );
            }
        }
    }
    // The Lease: create anywhere in the namespace (cannot be limited by name), the rest only on
    // the controller's own Lease.
    let lease_rules: Vec<&PolicyRule> = all_rules
        .iter()
        .filter(|(_, r)| r.resources.iter().flatten().any(|x| x == "leases"))
        .map(|(_, r)| r)
        .collect();
    for r in &lease_rules {
        let named = r.resource_names.as_deref() == Some(&["ferrolb-controller".to_owned()][..]);
        assert!(named || r.verbs == ["create"], "{set}: lease rule {r:?}");
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
                "{set}: binding to {s}"
            );
            assert_eq!(s["namespace"], NAMESPACE);
        }
    }
}

fn container(docs: &[Value], kind: &str) -> Container {
    let d = docs.iter().find(|d| d["kind"] == kind).unwrap();
    serde_json::from_value(d["spec"]["template"]["spec"]["containers"][0].clone()).unwrap()
}

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
        check_common(&set, &docs);
        let crds: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .collect();
        match set.as_str() {
            "defaults-values.yaml" => {
                assert_eq!(
                    kinds(&docs),
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
                    "defaults render exactly the core objects"
                );
                let deployment = find(&docs, "Deployment", "ferrolb-controller");
                assert_eq!(deployment["spec"]["replicas"], 2);
                for crd in &crds {
                    assert_eq!(
                        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
                        "keep"
                    );
                }
                let controller = container(&docs, "Deployment");
                assert_eq!(
                    env_value(&controller, "FERROLB_LB_CLASS").as_deref(),
                    Some("")
                );
                let speaker = container(&docs, "DaemonSet");
                assert_eq!(
                    env_value(&speaker, "FERROLB_CONFLICT_POLICY").as_deref(),
                    Some("warn")
                );
                assert_eq!(env_value(&speaker, "RUST_LOG").as_deref(), Some("info"));
                assert!(
                    env_value(&speaker, "FERROLB_EXCLUDE_INTERFACES")
                        .unwrap()
                        .contains("veth*")
                );
                assert_eq!(env_value(&speaker, "FERROLB_INCLUDE_INTERFACES"), None);
            }
            "no-crds-values.yaml" => assert!(crds.is_empty(), "crds.enabled=false renders no CRD"),
            "no-keep-values.yaml" => {
                assert_eq!(crds.len(), 3);
                for crd in &crds {
                    assert!(
                        crd["metadata"]["annotations"].is_null(),
                        "crds.keep=false: {}",
                        crd["metadata"]
                    );
                }
            }
            "custom-values.yaml" => check_custom(&docs),
            "monitoring-values.yaml" => check_monitoring(&docs),
            other => panic!("add expectations for the new value set {other}"),
        }
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
    assert_eq!(
        env_value(&speaker, "FERROLB_CONFLICT_POLICY").as_deref(),
        Some("withdraw")
    );
    assert_eq!(
        env_value(&speaker, "FERROLB_INCLUDE_INTERFACES").as_deref(),
        Some("eth0,bond*")
    );
    assert_eq!(
        env_value(&speaker, "FERROLB_EXCLUDE_INTERFACES").as_deref(),
        Some("lo,docker*,veth*")
    );
    assert_eq!(
        env_value(&speaker, "FERROLB_REFRESH_INTERVAL").as_deref(),
        Some("30s")
    );
    assert_eq!(
        env_value(&speaker, "FERROLB_IGNORE_EXCLUDE_LB").as_deref(),
        Some("true")
    );
    assert_eq!(
        env_value(&speaker, "FERROLB_GOSSIP_PORT").as_deref(),
        Some("7947")
    );
    assert_eq!(
        env_value(&speaker, "FERROLB_METRICS_ADDR").as_deref(),
        Some("0.0.0.0:7473")
    );
    assert_eq!(env_value(&speaker, "RUST_LOG").as_deref(), Some("debug"));
    assert_eq!(env_value(&speaker, "TZ").as_deref(), Some("UTC"));
    assert_eq!(
        speaker.args.as_deref(),
        Some(&["--shutdown-grace=3s".to_owned()][..])
    );
    assert_eq!(
        controller.args.as_deref(),
        Some(&["--log-format=json".to_owned()][..])
    );
    assert!(
        controller
            .image
            .as_deref()
            .unwrap()
            .ends_with("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    );
    let deployment = find(docs, "Deployment", "lan-lb-controller");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert!(deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"].is_object());
    assert!(deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_null());
    find(docs, "DaemonSet", "lan-lb-speaker");
    find(docs, "Secret", "lan-lb-gossip-keys");
    find(docs, "ClusterRole", "lan-lb-speaker");
    assert_eq!(
        find(docs, "PodDisruptionBudget", "lan-lb-controller")["spec"]["minAvailable"],
        2
    );
}

fn check_monitoring(docs: &[Value]) {
    for kind in ["ServiceMonitor", "PodMonitor"] {
        for component in ["controller", "speaker"] {
            let m = find(docs, kind, &format!("ferrolb-{component}"));
            assert_eq!(
                m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
                component
            );
        }
    }
    assert_eq!(
        find(docs, "ServiceMonitor", "ferrolb-speaker")["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    // The ServiceMonitors need a Service per component selecting its pods' metrics port.
    for component in ["controller", "speaker"] {
        let svc: Service = typed(find(
            docs,
            "Service",
            &format!("ferrolb-{component}-metrics"),
        ));
        let spec = svc.spec.unwrap();
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/component"],
            component
        );
        assert_eq!(spec.ports.unwrap()[0].name.as_deref(), Some("metrics"));
    }
    let rule = find(docs, "PrometheusRule", "ferrolb");
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for want in [
        "FerroLBAddressPoolExhausted",
        "FerroLBAddressPoolUsage75Percent",
        "FerroLBAddressPoolUsage85Percent",
        "FerroLBAddressPoolUsage95Percent",
        "FerroLBConfigNotLoaded",
        "FerroLBNoControllerLeader",
        "FerroLBGossipMembersMissing",
        "FerroLBIPConflict",
        "FerroLBAllocationFailures",
    ] {
        assert!(
            alerts.contains(&want),
            "alert {want} missing from {alerts:?}"
        );
    }
    let dashboard: ConfigMap = typed(find(docs, "ConfigMap", "ferrolb-dashboard"));
    assert_eq!(
        dashboard.metadata.labels.as_ref().unwrap()["grafana_dashboard"],
        "1"
    );
    let json: Value = serde_json::from_str(&dashboard.data.unwrap()["ferrolb.json"]).unwrap();
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    for (what, needle) in [
        ("pool usage", "ferrolb_allocator_addresses_in_use_total"),
        (
            "announcements per node",
            "sum by (node) (ferrolb_speaker_announced",
        ),
        ("owner changes", "ferrolb_speaker_owner_changes_total"),
        ("gossip health", "ferrolb_speaker_gossip_members"),
        ("gossip health", "ferrolb_speaker_gossip_dropped_total"),
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needle)),
            "dashboard lacks {what} ({needle})"
        );
    }
    let speaker_policy: NetworkPolicy = typed(find(docs, "NetworkPolicy", "ferrolb-speaker"));
    let ingress = speaker_policy.spec.unwrap().ingress.unwrap();
    let gossip_ports: Vec<_> = ingress[0]
        .ports
        .iter()
        .flatten()
        .map(|p| p.protocol.clone().unwrap())
        .collect();
    assert_eq!(gossip_ports, ["UDP", "TCP"]);
    let from = ingress[0].from.as_ref().unwrap();
    assert!(from.iter().any(|p| {
        p.ip_block
            .as_ref()
            .is_some_and(|b| b.cidr == "192.0.2.0/24")
    }));
    assert!(from.iter().any(|p| p.pod_selector.is_some()));
    find(docs, "NetworkPolicy", "ferrolb-controller");
}

/// Minimal CRDs of the Prometheus Operator kinds the chart may render.
fn prometheus_operator_crds() -> String {
    [("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors"), ("PrometheusRule", "prometheusrules")]
        .iter()
        .map(|(kind, plural)| {
            let crd = json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
                "spec": {
                    "group": "monitoring.coreos.com",
                    "scope": "Namespaced",
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_ascii_lowercase()},
                    "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
                },
            });
            format!("---\n{crd}\n")
        })
        .collect()
}

struct Cluster {
    server: ApiServer,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Cluster {
    async fn start(name: &str) -> Self {
        let server = ApiServer::start(ServerConfig::default()).await.unwrap();
        let dir = std::env::temp_dir().join(format!("ferrolb-chart-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Self {
            server,
            dir,
            kubeconfig,
        }
    }

    /// `kubectl apply -f` of a file holding `yaml`, off the runtime's threads.
    async fn apply(&self, file: &str, yaml: &str) -> String {
        let path = self.dir.join(file);
        std::fs::write(&path, yaml).unwrap();
        let kc = self.kubeconfig.clone();
        let (ok, out) = tokio::task::spawn_blocking(move || {
            kubectl(&kc, &["apply", "-f", path.to_str().unwrap()])
        })
        .await
        .unwrap();
        assert!(ok, "kubectl apply -f {file} was refused:\n{out}");
        out
    }

    /// Every object of `docs` is stored by the server.
    fn assert_stored(&self, what: &str, docs: &[Value]) {
        let types = self.server.store().resources();
        for d in docs {
            let rt = types
                .iter()
                .find(|t| t.api_version() == d["apiVersion"] && t.kind == d["kind"])
                .unwrap_or_else(|| {
                    panic!(
                        "{what}: the server serves no {} {}",
                        d["apiVersion"], d["kind"]
                    )
                });
            let ns = if rt.namespaced {
                d["metadata"]["namespace"].as_str().unwrap()
            } else {
                ""
            };
            let name = d["metadata"]["name"].as_str().unwrap();
            self.server
                .store()
                .get(rt, ns, name)
                .unwrap_or_else(|e| panic!("{what}: {} {ns}/{name} not stored: {e}", d["kind"]));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_value_set_is_accepted_by_the_api_server() {
    for set in value_sets() {
        let yaml = render_text(&set);
        let docs = parse_docs(&yaml);
        let cluster = Cluster::start(set.trim_end_matches(".yaml")).await;
        common::create(
            &cluster.server,
            "",
            "v1",
            "namespaces",
            "",
            json!({"metadata": {"name": NAMESPACE}}),
        );
        cluster
            .apply("prometheus-operator-crds.yaml", &prometheus_operator_crds())
            .await;
        let out = cluster.apply("chart.yaml", &yaml).await;
        assert_eq!(
            out.lines().filter(|l| l.ends_with(" created")).count(),
            docs.len(),
            "{set}: every object created:\n{out}"
        );
        cluster.assert_stored(&set, &docs);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn native_manifest_is_current_and_applies_as_is() {
    chart_py(&["check-manifest"]);
    let yaml =
        std::fs::read_to_string(repo_root().join("config/manifests/ferrolb-native.yaml")).unwrap();
    let docs = parse_docs(&yaml);
    assert_eq!(docs[0]["kind"], "Namespace", "the namespace comes first");
    assert_eq!(
        docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "no gossip key in a file everyone downloads"
    );
    // The header tells the operator to create exactly the Secret the speakers mount.
    let speaker = container(&docs, "DaemonSet");
    assert_eq!(
        env_value(&speaker, "FERROLB_GOSSIP_KEY_FILE").as_deref(),
        Some("/etc/ferrolb/gossip/keys")
    );
    let ds = find(&docs, "DaemonSet", "ferrolb-speaker");
    assert_eq!(
        ds["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "ferrolb-gossip"
    );
    assert!(yaml.contains(
        "kubectl -n ferrolb-system create secret generic ferrolb-gossip --from-literal=keys="
    ));
    for d in &docs {
        if d["kind"] != "Namespace" {
            check_typed(d);
        }
    }
    let cluster = Cluster::start("native").await;
    let out = cluster.apply("ferrolb-native.yaml", &yaml).await;
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        docs.len(),
        "{out}"
    );
    cluster.assert_stored("ferrolb-native.yaml", &docs);
}

#[test]
fn chart_crds_are_the_generated_ones() {
    let out = chart_py(&["check-crds"]);
    assert!(
        out.contains("chart CRDs match config/crd/ (3 CRDs)"),
        "{out}"
    );
}

#[test]
fn schema_and_guards_refuse_bad_values_naming_the_key() {
    let out = chart_py(&["check-schema"]);
    eprintln!("{out}");
    assert!(
        out.lines().filter(|l| l.starts_with("refused ")).count() >= 20,
        "{out}"
    );
    assert!(
        out.contains("bad value sets were refused with a message naming the key"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_upgrade_keeps_the_gossip_key_and_uninstall_keeps_what_it_should() {
    let cluster = Cluster::start("lifecycle").await;
    let kc = cluster.kubeconfig.to_str().unwrap().to_owned();
    let out =
        tokio::task::spawn_blocking(move || chart_py(&["check-upgrade", "--kubeconfig", &kc]))
            .await
            .unwrap();
    eprintln!("{out}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("gossip key: "))
        .unwrap();
    let store = cluster.server.store();
    // What the cluster holds after the last uninstall (with crds.keep=false): the gossip Secret
    // with the key of the first install, and nothing else of the release.
    let secrets = store.resource("", "v1", "secrets").unwrap();
    let secret = store.get(&secrets, NAMESPACE, "ferrolb-gossip").unwrap();
    assert_eq!(
        secret["data"]["keys"], key,
        "the Secret holds the key of the first install"
    );
    let crds = store
        .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .unwrap();
    assert!(
        store.get(&crds, "", "ipaddresspools.ferrolb.io").is_err(),
        "crds.keep=false: CRDs removed"
    );
    let deployments = store.resource("apps", "v1", "deployments").unwrap();
    assert!(
        store
            .get(&deployments, NAMESPACE, "ferrolb-controller")
            .is_err(),
        "uninstalled"
    );
}

#[test]
fn prometheus_rules_pass_promtool() {
    const HINT: &str = "install promtool: apt-get install prometheus";
    let docs = render("monitoring-values.yaml");
    let rule = find(&docs, "PrometheusRule", "ferrolb");
    let dir = std::env::temp_dir().join(format!("ferrolb-chart-{}-promtool", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, serde_json::to_string_pretty(&rule["spec"]).unwrap()).unwrap();
    let out = run(
        "promtool",
        &["check", "rules", rules.to_str().unwrap()],
        HINT,
    );
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        text(&out)
    );
    assert!(text(&out).contains("SUCCESS"), "{}", text(&out));
    // Behaviour, not only syntax: the unit tests feed series and expect exactly these alerts.
    let tests = dir.join("alerts.promtest.yaml");
    std::fs::copy(
        repo_root().join("e2e/tests/data/chart-alerts.promtest.yaml"),
        &tests,
    )
    .unwrap();
    let out = run(
        "promtool",
        &["test", "rules", tests.to_str().unwrap()],
        HINT,
    );
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}
