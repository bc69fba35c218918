//! The chart against the test API server: every value set and the native manifest are accepted
//! by `kubectl apply`, and a Helm install, upgrade and uninstall keep what they should.

use std::path::PathBuf;

use serde_json::{Value, json};
use test_apiserver::kubectl::Kubectl;
use test_apiserver::{ApiServer, ServerConfig};

use super::{NAMESPACE, chart_py, check_typed, container, env_value, find, parse_docs};
use super::{render_text, repo_root, value_sets};

/// Minimal CRDs of the Prometheus Operator kinds the chart may render.
fn prometheus_operator_crds() -> String {
    [
        ("ServiceMonitor", "servicemonitors"),
        ("PodMonitor", "podmonitors"),
        ("PrometheusRule", "prometheusrules"),
    ]
    .iter()
    .map(|(kind, plural)| {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_ascii_lowercase()},
                "versions": [{"name": "v1", "served": true, "storage": true,
                              "schema": {"openAPIV3Schema": schema}}],
            },
        });
        format!("---\n{crd}\n")
    })
    .collect()
}

/// A test API server with a kubeconfig file for kubectl and Helm.
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

    fn create_namespace(&self, name: &str) {
        let store = self.server.store();
        let namespaces = store.resource("", "v1", "namespaces").unwrap();
        store
            .create(&namespaces, "", json!({"metadata": {"name": name}}), "test")
            .unwrap();
    }

    /// `kubectl apply` of `yaml`, off the runtime's threads; asserts every object was created.
    async fn apply_all(&self, what: &str, yaml: &str) {
        let objects = parse_docs(yaml).len();
        let kubectl = Kubectl::new(&self.kubeconfig);
        let input = yaml.to_owned();
        let out = tokio::task::spawn_blocking(move || {
            kubectl.output(&["apply", "-f", "-"], Some(&input))
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            out.success,
            "kubectl apply of {what} was refused:\n{}",
            out.stderr
        );
        let created = out
            .stdout
            .lines()
            .filter(|l| l.ends_with(" created"))
            .count();
        assert_eq!(
            created, objects,
            "{what}: {created} of {objects} objects created:\n{}",
            out.stdout
        );
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
        let cluster = Cluster::start(set.trim_end_matches(".yaml")).await;
        cluster.create_namespace(NAMESPACE);
        cluster
            .apply_all("the Prometheus Operator CRDs", &prometheus_operator_crds())
            .await;
        cluster.apply_all(&set, &yaml).await;
        cluster.assert_stored(&set, &parse_docs(&yaml));
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
        docs[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
        "the speakers need a privileged namespace (host network, NET_RAW)"
    );
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "a gossip key in a file everyone downloads"
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
    assert!(
        yaml.contains(
            "kubectl -n ferrolb-system create secret generic ferrolb-gossip --from-literal=keys="
        ),
        "the header does not say how to create the gossip Secret"
    );
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        check_typed(d);
    }
    let cluster = Cluster::start("native").await;
    cluster.apply_all("ferrolb-native.yaml", &yaml).await;
    cluster.assert_stored("ferrolb-native.yaml", &docs);
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_upgrade_keeps_the_gossip_key_and_uninstall_keeps_what_it_should() {
    let cluster = Cluster::start("lifecycle").await;
    let kc = cluster.kubeconfig.to_str().unwrap().to_owned();
    let out =
        tokio::task::spawn_blocking(move || chart_py(&["check-upgrade", "--kubeconfig", &kc]))
            .await
            .unwrap();
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("gossip key: "))
        .unwrap_or_else(|| panic!("check-upgrade printed no gossip key:\n{out}"));
    let store = cluster.server.store();
    // What the cluster holds after the last uninstall (with crds.keep=false): the gossip Secret
    // with the key of the first install, and nothing else of the release.
    let secrets = store.resource("", "v1", "secrets").unwrap();
    let secret = store.get(&secrets, NAMESPACE, "ferrolb-gossip").unwrap();
    assert_eq!(
        secret["data"]["keys"], key,
        "the Secret lost the key of the first install"
    );
    let crds = store
        .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .unwrap();
    assert!(
        store.get(&crds, "", "ipaddresspools.ferrolb.io").is_err(),
        "crds.keep=false: CRDs outlived the uninstall"
    );
    let deployments = store.resource("apps", "v1", "deployments").unwrap();
    assert!(
        store
            .get(&deployments, NAMESPACE, "ferrolb-controller")
            .is_err(),
        "the controller Deployment outlived the uninstall"
    );
}
