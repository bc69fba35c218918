//! The Helm chart `charts/ferrolb` on the real Helm engine (the Helm v4 SDK from PyPI, driven by
//! `hack/chart.py`), checked against Kubernetes' own types and the test API server. This file
//! holds what every topic shares: running the engine, rendering, and reading rendered objects.
//!
//! - `render`: lint, and render every value set in `charts/ferrolb/ci/` with what each sets;
//! - `invariants`: what every rendering holds: objects parse as their Kubernetes types with no
//!   field left over (a misspelt field is an error here, where the API server would drop it
//!   silently), labels the speaker selects peers by, downward-API fields, one capability,
//!   least-privilege RBAC;
//! - `apply`: every object is accepted by the test API server through `kubectl apply`, and a Helm
//!   install, upgrade and uninstall against it keep the gossip key, the CRDs and the Secret;
//! - `generated`: the chart CRDs are the generated ones and the schema refuses bad values naming
//!   the key;
//! - `monitoring`: the monitoring objects, and `promtool` accepts the alerts and passes their
//!   unit tests.
#![allow(clippy::unwrap_used)]

mod apply;
mod generated;
mod invariants;
mod monitoring;
mod render;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The namespace the chart's CI value sets install into.
const NAMESPACE: &str = "ferrolb-system";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `program args…` in the repository root; fails the test (never skips) when it cannot start.
fn run(program: &str, args: &[&str], install_hint: &str) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; {install_hint}"))
}

/// Standard output then standard error.
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

/// The chart rendered with value set `set`, as YAML.
fn render_text(set: &str) -> String {
    chart_py(&["render", "--values", &format!("charts/ferrolb/ci/{set}")])
}

fn parse_docs(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The chart rendered with value set `set`, one value per object.
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

/// [`typed`] with the type its `kind` names.
fn check_typed(object: &Value) {
    fn is<T: DeserializeOwned + Serialize>(object: &Value) {
        let _: T = typed(object);
    }
    match object["kind"].as_str().unwrap() {
        "Deployment" => is::<Deployment>(object),
        "DaemonSet" => is::<DaemonSet>(object),
        "ServiceAccount" => is::<ServiceAccount>(object),
        "ClusterRole" => is::<ClusterRole>(object),
        "ClusterRoleBinding" => is::<ClusterRoleBinding>(object),
        "Role" => is::<Role>(object),
        "RoleBinding" => is::<RoleBinding>(object),
        "Secret" => is::<Secret>(object),
        "ConfigMap" => is::<ConfigMap>(object),
        "PodDisruptionBudget" => is::<PodDisruptionBudget>(object),
        "NetworkPolicy" => is::<NetworkPolicy>(object),
        "Service" => is::<Service>(object),
        "CustomResourceDefinition" => is::<CustomResourceDefinition>(object),
        "ServiceMonitor" | "PodMonitor" | "PrometheusRule" => {
            assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1", "{object}");
            assert!(object["spec"].is_object(), "{object}");
        }
        other => panic!("the chart renders an unexpected kind {other}"),
    }
}

/// The rendered object `kind`/`name`.
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The first rendered object of `kind`, as `T`.
fn first<T: DeserializeOwned + Serialize>(docs: &[Value], kind: &str) -> T {
    typed(
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered")),
    )
}

/// The first container of the first workload of `kind`.
fn container(docs: &[Value], kind: &str) -> Container {
    let d = docs
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"));
    serde_json::from_value(d["spec"]["template"]["spec"]["containers"][0].clone()).unwrap()
}

/// The literal value of environment variable `name`.
fn env_value(container: &Container, name: &str) -> Option<String> {
    env(container, name).and_then(|e| e.value.clone())
}

/// The downward-API field environment variable `name` reads.
fn env_field(container: &Container, name: &str) -> Option<String> {
    env(container, name)
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone())
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
    container.env.iter().flatten().find(|e| e.name == name)
}
