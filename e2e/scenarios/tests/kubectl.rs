//! kubectl on ferrolb's CRDs in the test API server: their printer columns, and an invalid pool
//! refused naming the value. kubectl's generic behaviour is tested in e2e/apiserver/tests; this
//! test requires kubectl (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use test_apiserver::kubectl::{Kubectl, KubectlOutput};
use test_apiserver::{ApiServer, ServerConfig};

const POOL: &str = "
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: default}
spec:
  addresses: [192.0.2.0/28]
";

/// Runs kubectl off the async workers, which keep serving its requests meanwhile.
async fn run(kubectl: &Kubectl, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
    let kubectl = kubectl.clone();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl
            .output(&args, stdin.as_deref())
            .expect("kubectl is required (apt-get install kubernetes-client)")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_shows_pools_with_their_columns_and_refuses_an_invalid_one_naming_the_value() {
    let server = ApiServer::start(ServerConfig::default()).await.unwrap();
    ferrolb_lab::register_ferrolb_crds(&server).unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolb-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let kubectl = Kubectl::new(&kubeconfig);

    let out = run(&kubectl, &["create", "-f", "-"], Some(POOL)).await;
    assert!(out.success, "create: {}", out.stderr);
    let out = run(&kubectl, &["get", "ipaddresspools"], None).await;
    assert!(
        out.success && out.stdout.contains("AUTO ASSIGN") && out.stdout.contains("192.0.2.0/28"),
        "printer columns: {} {}",
        out.stdout,
        out.stderr
    );
    let invalid = POOL.replace("192.0.2.0/28", "192.0.2.9");
    let out = run(&kubectl, &["apply", "-f", "-"], Some(&invalid)).await;
    assert!(
        !out.success && out.stderr.contains("192.0.2.9"),
        "invalid pool must be refused naming the value: {}",
        out.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
