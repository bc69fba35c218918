//! kubectl against the server: what an operator types must work, for built-in kinds and for
//! any CRD (here `widgets.example.com`). Ignored when kubectl is missing outside CI (see
//! build.rs); in CI they run and need kubectl.

use std::path::PathBuf;

use test_apiserver::ApiServer;
use test_apiserver::kubectl::{Kubectl, KubectlOutput};

use crate::fixture::{start, tempdir};

const WIDGET: &str = "
apiVersion: example.com/v1
kind: Widget
metadata: {name: gear, namespace: default}
spec: {size: 7, color: red}
";

const SERVICE: &str = "
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, port: 80}]
";

/// A server, its kubeconfig on disk, and kubectl pointed at it.
struct Cluster {
    _server: ApiServer,
    kubectl: Kubectl,
    dir: PathBuf,
}

impl Cluster {
    async fn start(name: &str) -> Self {
        let (server, _client) = start(test_apiserver::ServerConfig::default()).await;
        let dir = tempdir(&format!("kubectl-{name}"));
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Self {
            _server: server,
            kubectl: Kubectl::new(kubeconfig),
            dir,
        }
    }

    /// Runs kubectl off the async workers, which keep serving its requests meanwhile.
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        let kubectl = self.kubectl.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let stdin = stdin.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl.output(&args, stdin.as_deref()).expect(
                "kubectl runs (CI installs it; elsewhere these tests are ignored without it)",
            )
        })
        .await
        .unwrap()
    }

    /// Runs kubectl and asserts it succeeded; returns stdout.
    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin).await;
        assert!(out.success, "kubectl {args:?}: {}", out.stderr);
        out.stdout
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(kubectl_missing, ignore = "kubectl is not installed")]
async fn kubectl_creates_applies_and_reapplies() {
    let c = Cluster::start("apply").await;
    c.ok(&["create", "-f", "-"], Some(WIDGET)).await;
    let out = c.ok(&["apply", "-f", "-"], Some(SERVICE)).await;
    assert!(out.contains("service/web created"), "{out}");
    let out = c
        .ok(
            &["apply", "-f", "-"],
            Some(&SERVICE.replace("port: 80", "port: 8080")),
        )
        .await;
    assert!(out.contains("configured"), "{out}");
    let out = c.ok(&["get", "svc", "web"], None).await;
    assert!(
        out.contains("LoadBalancer") && out.contains("8080"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(kubectl_missing, ignore = "kubectl is not installed")]
async fn kubectl_get_shows_a_crds_printer_columns() {
    let c = Cluster::start("columns").await;
    c.ok(&["create", "-f", "-"], Some(WIDGET)).await;
    let out = c.ok(&["get", "widgets"], None).await;
    assert!(out.contains("SIZE") && out.contains("COLOR"), "{out}");
    assert!(
        out.contains("gear") && out.contains('7') && out.contains("red"),
        "{out}"
    );
    let out = c
        .ok(&["get", "wd", "gear", "-o", "jsonpath={.spec.size}"], None)
        .await;
    assert_eq!(out, "7", "short names and jsonpath work");
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(kubectl_missing, ignore = "kubectl is not installed")]
async fn kubectl_describe_shows_a_service() {
    let c = Cluster::start("describe").await;
    c.ok(&["apply", "-f", "-"], Some(SERVICE)).await;
    let out = c.ok(&["describe", "svc", "web"], None).await;
    assert!(
        out.contains("Type:") && out.contains("LoadBalancer"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(kubectl_missing, ignore = "kubectl is not installed")]
async fn kubectl_prints_why_an_invalid_object_is_refused() {
    let c = Cluster::start("invalid").await;
    let out = c
        .run(
            &["apply", "-f", "-"],
            Some(&WIDGET.replace("size: 7", "size: 700")),
        )
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("size must be below 100"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(kubectl_missing, ignore = "kubectl is not installed")]
async fn kubectl_deletes_and_the_object_is_gone() {
    let c = Cluster::start("delete").await;
    c.ok(&["apply", "-f", "-"], Some(SERVICE)).await;
    c.ok(&["delete", "svc", "web"], None).await;
    let out = c.run(&["get", "svc", "web"], None).await;
    assert!(
        !out.success && out.stderr.contains("NotFound"),
        "{}",
        out.stderr
    );
}
