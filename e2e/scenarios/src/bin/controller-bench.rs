//! `cargo run --release -p ferrolb-e2e --bin controller-bench`
//!
//! Starts the test API server and a ferrolb controller in a child process (this same binary,
//! re-run with `--controller <url>`, so its memory is its own), creates 10,000 LoadBalancer
//! Services in 50 namespaces against two pools, and measures the time until every Service has an
//! IP, the status writes the controller made, and the controller's peak RSS.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde_json::json;
use test_apiserver::{ApiServer, ServerConfig, StoreConfig, kubeconfig_for};

/// Services to create; `BENCH_SERVICES` overrides it for quick runs.
fn services_count() -> usize {
    std::env::var("BENCH_SERVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}
const NAMESPACES: usize = 50;

async fn run_controller(url: &str) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig_for(url))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(ferrolb_controller::metrics::Metrics::new(&mut registry));
    let config = ferrolb_controller::runtime::RuntimeConfig {
        namespace: "ferrolb-system".into(),
        lb_class: None,
        instance: Some("bench".into()),
    };
    ferrolb_controller::runtime::run(client, config, metrics, Arc::new(AtomicBool::new(false)))
        .await?;
    Ok(())
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--controller") {
        let url = args
            .get(2)
            .ok_or_else(|| anyhow::anyhow!("--controller needs the API URL"))?;
        return run_controller(url).await;
    }
    let server = ApiServer::start(ServerConfig {
        store: StoreConfig {
            service_ranges: vec!["2001:db8:96::/108".into()],
            ..StoreConfig::default()
        },
        ..ServerConfig::default()
    })
    .await?;
    ferrolb_lab::register_ferrolb_crds(&server)?;
    let store = server.store().clone();
    let namespaces = store
        .resource("", "v1", "namespaces")
        .ok_or_else(|| anyhow::anyhow!("no namespaces"))?;
    let pools = store
        .resource("ferrolb.io", "v1beta1", "ipaddresspools")
        .ok_or_else(|| anyhow::anyhow!("no pools"))?;
    let services = store
        .resource("", "v1", "services")
        .ok_or_else(|| anyhow::anyhow!("no services"))?;
    let err = |e: test_apiserver::error::ApiError| anyhow::anyhow!("{e}");
    store
        .create(
            &namespaces,
            "",
            json!({"metadata": {"name": "ferrolb-system"}}),
            "bench",
        )
        .map_err(err)?;
    for n in 0..NAMESPACES {
        store
            .create(
                &namespaces,
                "",
                json!({"metadata": {"name": format!("team-{n}")}}),
                "bench",
            )
            .map_err(err)?;
    }
    for (name, range) in [
        ("pool-a", "2001:db8:a::/114"),
        ("pool-b", "2001:db8:b::/114"),
    ] {
        store
            .create(
                &pools,
                "ferrolb-system",
                json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": {"name": name}, "spec": {"addresses": [range]}}),
                "bench",
            )
            .map_err(err)?;
    }

    let exe = std::env::current_exe()?;
    // Profiling hook: BENCH_WRAPPER="valgrind --tool=massif" runs the controller under a tool.
    let wrapper = std::env::var("BENCH_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(tool) => {
            let mut c = tokio::process::Command::new(tool);
            c.args(words).arg(&exe);
            c
        }
        None => tokio::process::Command::new(&exe),
    };
    let mut child = command
        .arg("--controller")
        .arg(server.url())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("controller did not start"))?;
    // Let the controller load its (empty) caches first, as it would in a running cluster.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let total = services_count();
    for i in 0..total {
        let ns = format!("team-{}", i % NAMESPACES);
        store
            .create(&services, &ns, json!({"metadata": {"name": format!("svc-{i}")}, "spec": {
                "type": "LoadBalancer", "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false,
                "ipFamilies": ["IPv6"]}}), "bench")
            .map_err(err)?;
    }
    let created = started.elapsed();
    let done = loop {
        let with_ip = store.count(&services, |s| {
            s["status"]["loadBalancer"]["ingress"]
                .as_array()
                .is_some_and(|i| !i.is_empty())
        });
        if with_ip == total {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("only {with_ip} of {total} Services have an IP after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let trailing writes (pool status) land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = peak_rss_mib(pid).unwrap_or(f64::NAN);
    // An idle controller must be idle: measure its CPU over a quiet second.
    let cpu_before = cpu_seconds(pid).unwrap_or(f64::NAN);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_cpu_pct = (cpu_seconds(pid).unwrap_or(f64::NAN) - cpu_before) * 100.0;
    let writes = server.writes();
    let status_writes = writes
        .iter()
        .filter(|w| w.manager == "ferrolb-controller" && w.resource == "services")
        .count();
    let pool_writes = writes
        .iter()
        .filter(|w| w.manager == "ferrolb-controller" && w.resource == "ipaddresspools.ferrolb.io")
        .count();
    let events = writes
        .iter()
        .filter(|w| w.resource.starts_with("events"))
        .count();
    child.kill().await.ok();
    println!(
        "controller-bench created_in_s={:.2} pool_writes={pool_writes} events={events} idle_cpu_pct={idle_cpu_pct:.0}",
        created.as_secs_f64()
    );
    println!(
        "controller-bench services={total} seconds={:.2} writes={status_writes} rss_mib={rss:.1}",
        done.as_secs_f64()
    );
    Ok(())
}
