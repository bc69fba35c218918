//! `ferrolb-lab up`: the whole system on one machine. The API server and the controller run in
//! the bridge namespace on 192.0.2.1, one speaker runs in each node namespace with a kube-proxy
//! stand-in (Service IPs routed locally, `arp_ignore` so only the speaker answers ARP, and an HTTP
//! backend that answers with the node's name), and a client namespace reaches Service IPs over
//! the bridge. Nothing is put in the host's own network namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::binaries::binary as sibling;
use crate::netns::{Topology, command_in, delete_all, in_ns};

/// Where the lab of a prefix keeps its kubeconfig, key and logs.
pub fn lab_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferrolb-lab-{prefix}"))
}

/// Address of the API server inside the lab.
pub const API_ADDR: &str = "192.0.2.1:6443";
/// Service IPs handed out in the lab (on the nodes' link, so clients ARP for them).
pub const POOL_V4: &str = "192.0.2.192/27";
/// The demo's pool, advertisement and Service (also what the smoke test applies).
pub const DEMO_OBJECTS: &str = r#"
apiVersion: ferrolb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab, namespace: ferrolb-system}
spec:
  addresses: [192.0.2.192/27]
---
apiVersion: ferrolb.io/v1beta1
kind: L2Advertisement
metadata: {name: lab, namespace: ferrolb-system}
spec: {}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
"#;

/// IPv6 Service IPs.
pub const POOL_V6: &str = "2001:db8::c0/123";

fn spawn_in(
    ns: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> anyhow::Result<()> {
    let out = std::fs::File::create(log)?;
    let mut cmd = command_in(ns, &program.display().to_string());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()?;
    Ok(())
}

/// Runs kubectl against the lab's API server (from inside the bridge namespace).
///
/// # Errors
/// When kubectl fails.
pub fn kubectl(prefix: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    test_apiserver::kubectl::Kubectl::new(lab_dir(prefix).join("kubeconfig"))
        .in_netns(format!("{prefix}br"))
        .run(args, stdin)
}

fn wait_for_api(prefix: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if kubectl(prefix, &["get", "ns", "default"], None).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!(
        "the lab API server did not come up (see {})",
        lab_dir(prefix).join("apiserver.log").display()
    )
}

/// Tools the lab runs, with the Debian package of each.
const PREREQUISITES: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("curl", "curl"),
    ("kubectl", "kubernetes-client"),
    ("sysctl", "procps"),
];

/// Installs missing tools with apt-get when running as root; otherwise says exactly what to
/// install.
///
/// # Errors
/// When a tool is missing and cannot be installed here.
pub fn ensure_prerequisites() -> anyhow::Result<()> {
    let missing: Vec<&(&str, &str)> = PREREQUISITES
        .iter()
        .filter(|(tool, _)| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map_or(true, |o| !o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        anyhow::bail!(
            "the lab needs root and these packages: apt-get install {}",
            packages.join(" ")
        );
    }
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-qq"])
        .args(&packages)
        .status()
        .is_ok_and(|s| s.success());
    anyhow::ensure!(
        ok,
        "could not install {}: install them and retry",
        packages.join(" ")
    );
    Ok(())
}

/// Brings the lab up with `nodes` node namespaces. The topology is handed back so the caller
/// decides whether it outlives this process (`up`) or not (tests).
///
/// # Errors
/// When any step fails; what was created so far is removed.
pub fn up(prefix: &str, nodes: u8) -> anyhow::Result<Topology> {
    ensure_prerequisites()?;
    let dir = lab_dir(prefix);
    std::fs::create_dir_all(&dir)?;
    let mut topo = Topology::new(prefix)?;
    let bridge = topo.bridge_ns.clone();
    in_ns(
        &bridge,
        &["ip", "addr", "add", "192.0.2.1/24", "dev", "br0"],
    )?;
    in_ns(
        &bridge,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8::1/64",
            "dev",
            "br0",
            "nodad",
        ],
    )?;
    let client = topo.add_host("cl", 2)?;
    let mut node_hosts = Vec::new();
    for i in 1..=nodes {
        node_hosts.push(topo.add_host(&format!("n{i}"), 10 + i)?);
    }
    let kubeconfig = dir.join("kubeconfig");
    spawn_in(
        &bridge,
        &sibling("ferrolb-apiserver")?,
        &[
            "--listen".into(),
            API_ADDR.into(),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--ferrolb-crds".into(),
        ],
        &[],
        &dir.join("apiserver.log"),
    )?;
    wait_for_api(prefix)?;
    kubectl(
        prefix,
        &["create", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ferrolb-system"}}"#),
    )?;
    let key = dir.join("gossip.key");
    std::fs::write(
        &key,
        format!("ferrolb-lab-{prefix}-{}\n", std::process::id()),
    )?;
    let env = vec![
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ];
    spawn_in(
        &bridge,
        &sibling("ferrolb-controller")?,
        &[
            "--namespace".into(),
            "ferrolb-system".into(),
            "--metrics-addr".into(),
            "192.0.2.1:7472".into(),
            "--identity".into(),
            "controller-0".into(),
        ],
        &env,
        &dir.join("controller.log"),
    )?;
    for (i, host) in node_hosts.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        kubectl(
            prefix,
            &["create", "-f", "-"],
            Some(&format!(
                r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"kubernetes.io/hostname":"{name}"}}}}}}"#
            )),
        )?;
        let pod = format!(
            r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"speaker-{name}","namespace":"ferrolb-system","labels":{{"app.kubernetes.io/name":"ferrolb","app.kubernetes.io/component":"speaker"}}}},"spec":{{"nodeName":"{name}","hostNetwork":true,"containers":[{{"name":"speaker","image":"ferrolb-speaker"}}]}}}}"#
        );
        kubectl(prefix, &["create", "-f", "-"], Some(&pod))?;
        kubectl(
            prefix,
            &[
                "patch",
                "pod",
                &format!("speaker-{name}"),
                "-n",
                "ferrolb-system",
                "--subresource=status",
                "--type=merge",
                "-p",
                &format!(
                    r#"{{"status":{{"phase":"Running","podIP":"{}"}}}}"#,
                    host.ipv4
                ),
            ],
            None,
        )?;
        // kube-proxy stand-in: Service IPs are local on the node, and only the speaker answers
        // ARP/NDP for them.
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ] {
            in_ns(&host.ns, &["sysctl", "-qw", &format!("{key}={value}")])?;
        }
        in_ns(
            &host.ns,
            &["ip", "route", "add", "local", POOL_V4, "dev", "lo"],
        )?;
        in_ns(
            &host.ns,
            &["ip", "-6", "route", "add", "local", POOL_V6, "dev", "lo"],
        )?;
        spawn_in(
            &host.ns,
            &sibling("ferrolb-lab")?,
            &["backend".into(), "--name".into(), name.clone()],
            &[],
            &dir.join(format!("backend-{name}.log")),
        )?;
        spawn_in(
            &host.ns,
            &sibling("ferrolb-speaker")?,
            &[
                "--node-name".into(),
                name.clone(),
                "--bind-addr".into(),
                host.ipv4.clone(),
                "--gossip-key-file".into(),
                key.display().to_string(),
                "--metrics-addr".into(),
                format!("{}:7472", host.ipv4),
                "--namespace".into(),
                "ferrolb-system".into(),
                "--shutdown-grace".into(),
                "2s".into(),
            ],
            &env,
            &dir.join(format!("speaker-{name}.log")),
        )?;
    }
    let _ = client;
    Ok(topo)
}

/// Publishes the lab's backends (one per node, port 80) as the EndpointSlice of a Service: the
/// lab has no endpoints controller, so it plays that part.
///
/// # Errors
/// When kubectl fails.
pub fn publish_backends(
    prefix: &str,
    namespace: &str,
    service: &str,
    nodes: u8,
) -> anyhow::Result<()> {
    let endpoints: Vec<String> = (1..=nodes)
        .map(|i| format!(r#"{{"addresses":["192.0.2.{}"],"nodeName":"node-{i}","conditions":{{"ready":true,"serving":true,"terminating":false}}}}"#, 10 + i))
        .collect();
    let slice = format!(
        r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"{service}-lab","namespace":"{namespace}","labels":{{"kubernetes.io/service-name":"{service}"}}}},"addressType":"IPv4","ports":[{{"port":80,"protocol":"TCP"}}],"endpoints":[{}]}}"#,
        endpoints.join(",")
    );
    kubectl(prefix, &["apply", "-f", "-"], Some(&slice))?;
    Ok(())
}

/// Removes every namespace and process of the lab with this prefix, and its files.
pub fn down(prefix: &str) {
    delete_all(prefix);
    let _ = std::fs::remove_dir_all(lab_dir(prefix));
}

/// A tiny HTTP server answering every request with `name` (the backend behind Service IPs).
///
/// # Errors
/// When the port cannot be bound.
pub fn backend(name: &str, port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("::", port))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let body = format!("{name}\n");
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}

/// Starts one more controller replica in the lab's bridge namespace, as `up` starts the first
/// (same kubeconfig, namespace and log level), under its own `identity` (the Lease holder name)
/// with /metrics on `metrics_addr`. Its log is appended to `controller-<identity>.log` in the
/// lab's directory, so a replica restarted under the same identity keeps its earlier log.
///
/// # Errors
/// When the binary is missing or cannot be started.
pub fn start_controller(prefix: &str, identity: &str, metrics_addr: &str) -> anyhow::Result<()> {
    let dir = lab_dir(prefix);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("controller-{identity}.log")))?;
    command_in(
        &format!("{prefix}br"),
        &sibling("ferrolb-controller")?.display().to_string(),
    )
    .args([
        "--namespace",
        "ferrolb-system",
        "--metrics-addr",
        metrics_addr,
        "--identity",
        identity,
    ])
    .env("KUBECONFIG", dir.join("kubeconfig"))
    .env("RUST_LOG", "info")
    .stdin(Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log)
    .spawn()?;
    Ok(())
}

/// Process ids of the lab's running controller replicas named `identity`: the processes in the
/// bridge namespace whose program is `ferrolb-controller` and whose arguments hold `--identity
/// <identity>` (read from `/proc/<pid>/cmdline`; a dead, unreaped process has none).
pub fn controller_pids(prefix: &str, identity: &str) -> Vec<u32> {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", &format!("{prefix}br")])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let program = args.first().and_then(|a| a.rsplit(|b| *b == b'/').next());
            program == Some(b"ferrolb-controller".as_slice())
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--identity" && w[1] == identity.as_bytes())
        })
        .collect()
}

/// Sends `signal` (a `kill` signal name: `KILL`, `TERM`) to the lab's controller replica named
/// `identity` and waits (up to 10 s) until it no longer runs. Returns the process ids signalled.
///
/// # Errors
/// When no such replica runs, `kill` fails, or it still runs after 10 s.
pub fn stop_controller(prefix: &str, identity: &str, signal: &str) -> anyhow::Result<Vec<u32>> {
    let pids = controller_pids(prefix, identity);
    anyhow::ensure!(
        !pids.is_empty(),
        "no controller {identity} runs in lab {prefix}"
    );
    for pid in &pids {
        super::netns::run("kill", &[&format!("-{signal}"), &pid.to_string()])?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !controller_pids(prefix, identity).is_empty() {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "controller {identity} still runs 10 s after SIG{signal}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(pids)
}
