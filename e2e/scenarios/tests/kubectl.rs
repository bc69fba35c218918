//! kubectl against the test API server: what an operator types in the lab must work.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use test_apiserver::{ApiServer, ServerConfig};

/// Runs kubectl with the server's kubeconfig, returning (success, stdout + stderr).
fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn kubectl_available() -> bool {
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubectl is required in CI (.ci/run installs it)"
        );
        eprintln!(
            "SKIPPED: kubectl is not installed (apt-get install kubectl or kubernetes-client)"
        );
    }
    found
}

const POOL: &str = "
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: default}
spec:
  addresses: [192.0.2.0/28]
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

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_gets_describes_creates_applies_and_deletes() {
    if !kubectl_available() {
        return;
    }
    let server = ApiServer::start(ServerConfig::default()).await.unwrap();
    ferrolb_lab::register_ferrolb_crds(&server).unwrap();
    let dir = std::env::temp_dir().join(format!("ferrolb-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kc = dir.join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();

    let run = |args: &[&str], stdin: Option<&str>| {
        let kc = kc.clone();
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let stdin = stdin.map(str::to_owned);
        std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(&kc, &args, stdin.as_deref())
        })
        .join()
        .unwrap()
    };

    let (ok, out) = run(&["create", "-f", "-"], Some(POOL));
    assert!(ok, "create: {out}");
    let (ok, out) = run(&["apply", "-f", "-"], Some(SERVICE));
    assert!(ok && out.contains("service/web created"), "apply: {out}");
    let (ok, out) = run(
        &["apply", "-f", "-"],
        Some(&SERVICE.replace("port: 80", "port: 8080")),
    );
    assert!(ok && out.contains("configured"), "re-apply: {out}");

    let (ok, out) = run(&["get", "svc", "web"], None);
    assert!(
        ok && out.contains("LoadBalancer") && out.contains("8080"),
        "get: {out}"
    );
    let (ok, out) = run(&["get", "ipaddresspools"], None);
    assert!(
        ok && out.contains("AUTO ASSIGN") && out.contains("192.0.2.0/28"),
        "printer columns: {out}"
    );
    let (ok, out) = run(&["describe", "svc", "web"], None);
    assert!(
        ok && out.contains("LoadBalancer Ingress") || out.contains("Type:"),
        "describe: {out}"
    );

    let (ok, out) = run(
        &["apply", "-f", "-"],
        Some(&POOL.replace("192.0.2.0/28", "192.0.2.9")),
    );
    assert!(
        !ok && out.contains("192.0.2.9"),
        "invalid pool must be refused naming the value: {out}"
    );

    let (ok, out) = run(&["delete", "svc", "web"], None);
    assert!(ok, "delete: {out}");
    let (ok, _) = run(&["get", "svc", "web"], None);
    assert!(!ok, "deleted service is gone");
    std::fs::remove_dir_all(&dir).unwrap();
}
