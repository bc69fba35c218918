//! The `test-apiserver` binary: serves the CRD files it is given and writes a kubeconfig.

use std::process::Stdio;
use std::time::Duration;

use kube::api::ListParams;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::fixture::{WIDGETS_CRD_FILE, tempdir, widgets};

const BINARY: &str = env!("CARGO_BIN_EXE_test-apiserver");

#[tokio::test]
async fn the_binary_serves_the_crds_it_is_given_and_writes_a_kubeconfig() {
    let dir = tempdir("binary");
    let kubeconfig = dir.join("kubeconfig");
    let mut child = tokio::process::Command::new(BINARY)
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--crds", WIDGETS_CRD_FILE])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // It logs "ready" after writing the kubeconfig: wait for that line, not for a time.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("test API server ready") {
                return;
            }
        }
        panic!("the server exited before it was ready");
    })
    .await
    .unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let listed = widgets(client).list(&ListParams::default()).await.unwrap();
    assert!(listed.items.is_empty(), "widgets are served");
    child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_binary_refuses_to_listen_on_every_address() {
    let out = std::process::Command::new(BINARY)
        .args(["--listen", "0.0.0.0:6443"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loopback or documentation address"),
        "{stderr}"
    );
}
