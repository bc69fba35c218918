//! `cargo run --release -p ferrolb-e2e --bin controller-bench`
//!
//! Starts the test API server and a ferrolb controller in a child process (this same binary,
//! re-run with `--controller <url>`, so its memory is its own), creates 10,000 LoadBalancer
//! Services in 50 namespaces against two pools, and measures the time until every Service has an
//! IP, the status writes the controller made, and the controller's peak RSS. Every wait is on a
//! condition, raced against the controller's exit: a controller that dies ends the run with an
//! error, never with figures.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_lab::procstat;
use ferrolb_lab::wait::poll_until;
use serde_json::{Value, json};
use test_apiserver::store::Store;
use test_apiserver::{ApiServer, ServerConfig, StoreConfig, kubeconfig_for};

/// Services to create; `BENCH_SERVICES` overrides it for quick runs.
fn services_count() -> usize {
    std::env::var("BENCH_SERVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}
const NAMESPACES: usize = 50;
const POOLS: [(&str, &str); 2] = [
    ("pool-a", "2001:db8:a::/114"),
    ("pool-b", "2001:db8:b::/114"),
];

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
        heartbeat: Default::default(),
    };
    ferrolb_controller::runtime::run(client, config, metrics, Arc::new(AtomicBool::new(false)))
        .await?;
    Ok(())
}

/// Creates `object` through the store, as `bench`.
fn create(store: &Store, group: &str, plural: &str, ns: &str, object: Value) -> anyhow::Result<()> {
    let version = if group.is_empty() { "v1" } else { "v1beta1" };
    let rt = store
        .resource(group, version, plural)
        .ok_or_else(|| anyhow::anyhow!("the server serves no {plural}"))?;
    store
        .create(&rt, ns, object, "bench")
        .map_err(|e| anyhow::anyhow!("creating {plural}: {e}"))?;
    Ok(())
}

/// A server with ferrolb's CRDs, `ferrolb-system`, the teams' namespaces and the two pools.
async fn start_server() -> anyhow::Result<ApiServer> {
    let server = ApiServer::start(ServerConfig {
        store: StoreConfig {
            service_ranges: vec!["2001:db8:96::/108".into()],
            ..StoreConfig::default()
        },
        ..ServerConfig::default()
    })
    .await?;
    ferrolb_lab::register_ferrolb_crds(&server)?;
    let store = server.store();
    let namespaces = std::iter::once("ferrolb-system".to_owned())
        .chain((0..NAMESPACES).map(|n| format!("team-{n}")));
    for name in namespaces {
        create(
            store,
            "",
            "namespaces",
            "",
            json!({"metadata": {"name": name}}),
        )?;
    }
    for (name, range) in POOLS {
        let pool = json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
                          "metadata": {"name": name}, "spec": {"addresses": [range]}});
        create(
            store,
            "ferrolb.io",
            "ipaddresspools",
            "ferrolb-system",
            pool,
        )?;
    }
    Ok(server)
}

/// The controller in a child process, optionally under `BENCH_WRAPPER` (a profiling hook:
/// `BENCH_WRAPPER="valgrind --tool=massif"`).
fn spawn_controller(url: &str) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
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
    Ok(command
        .arg("--controller")
        .arg(url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?)
}

/// Polls `probe` on the store until it holds (off the runtime's threads, which serve the
/// controller), failing at once if the controller exits first.
async fn wait_for<T: Send + 'static>(
    child: &mut tokio::process::Child,
    what: &'static str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String> + Send + 'static,
) -> anyhow::Result<T> {
    // Set when the controller exits: the poll then ends at once instead of holding the runtime's
    // shutdown until its timeout.
    let abandoned = Arc::new(AtomicBool::new(false));
    let stop = abandoned.clone();
    let waiting = tokio::task::spawn_blocking(move || {
        poll_until(what, timeout, || {
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            probe().map(Some)
        })
    });
    tokio::select! {
        done = waiting => done??.ok_or_else(|| anyhow::anyhow!("{what}: abandoned")),
        exit = child.wait() => {
            abandoned.store(true, Ordering::Relaxed);
            anyhow::bail!("the controller exited ({:?}) while waiting for {what}", exit?)
        }
    }
}

/// Count of objects of a resource that satisfy `f`.
fn count(
    store: &Store,
    group: &str,
    version: &str,
    plural: &str,
    f: impl Fn(&Value) -> bool,
) -> usize {
    store
        .resource(group, version, plural)
        .map_or(0, |rt| store.count(&rt, f))
}

/// Whether the controller made its first pass: it writes both pools' status then.
fn synced(store: &Store) -> Result<(), String> {
    let with_status = count(store, "ferrolb.io", "v1beta1", "ipaddresspools", |p| {
        p["status"]["conditions"].is_array()
    });
    if with_status == POOLS.len() {
        Ok(())
    } else {
        Err(format!("{with_status} pools with a status"))
    }
}

/// Whether all `total` Services have an IP.
fn all_assigned(store: &Store, total: usize) -> Result<(), String> {
    let with_ip = count(store, "", "v1", "services", |s| {
        s["status"]["loadBalancer"]["ingress"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    });
    if with_ip == total {
        Ok(())
    } else {
        Err(format!("{with_ip} of {total} Services have an IP"))
    }
}

/// Whether the writes that trail the Service statuses are in: the pools' status counts every
/// Service, and an IPAllocated Event was written for each.
fn trailing_writes_done(store: &Store, total: usize) -> Result<(), String> {
    let assigned: i64 = POOLS
        .iter()
        .filter_map(|(name, _)| {
            let rt = store.resource("ferrolb.io", "v1beta1", "ipaddresspools")?;
            store.get(&rt, "ferrolb-system", name).ok()
        })
        .map(|p| p["status"]["assignedIPv6"].as_i64().unwrap_or(0))
        .sum();
    let events = count(store, "events.k8s.io", "v1", "events", |e| {
        e["reason"] == "IPAllocated"
    });
    if usize::try_from(assigned) == Ok(total) && events >= total {
        Ok(())
    } else {
        Err(format!(
            "{assigned} assigned in pool statuses, {events} IPAllocated Events"
        ))
    }
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
    let server = start_server().await?;
    let store = server.store().clone();
    let mut child = spawn_controller(&server.url())?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("controller did not start"))?;
    // Let the controller load its (empty) caches first, as it would in a running cluster.
    let probe = store.clone();
    let what = "the controller's initial sync";
    wait_for(&mut child, what, Duration::from_secs(60), move || {
        synced(&probe)
    })
    .await?;

    let started = Instant::now();
    let total = services_count();
    for i in 0..total {
        let ns = format!("team-{}", i % NAMESPACES);
        let service = json!({"metadata": {"name": format!("svc-{i}")}, "spec": {
            "type": "LoadBalancer", "ports": [{"port": 80}], "allocateLoadBalancerNodePorts": false,
            "ipFamilies": ["IPv6"]}});
        create(&store, "", "services", &ns, service)?;
    }
    let created = started.elapsed();
    let probe = store.clone();
    let what = "every Service to get an IP";
    wait_for(&mut child, what, Duration::from_secs(300), move || {
        all_assigned(&probe, total)
    })
    .await?;
    let done = started.elapsed();
    let probe = store.clone();
    let what = "the pool statuses and an Event per Service";
    wait_for(&mut child, what, Duration::from_secs(60), move || {
        trailing_writes_done(&probe, total)
    })
    .await?;
    let rss = procstat::peak_rss_mib(pid).unwrap_or(f64::NAN);
    // A measurement window, not a wait: an idle controller must use no CPU and write nothing.
    let writes_before = server.writes().len();
    let cpu_before = procstat::cpu_seconds(pid).unwrap_or(f64::NAN);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_cpu_pct = (procstat::cpu_seconds(pid).unwrap_or(f64::NAN) - cpu_before) * 100.0;
    if let Some(status) = child.try_wait()? {
        anyhow::bail!("the controller exited ({status}) during the idle window");
    }
    child.kill().await.ok();
    let writes = server.writes();
    let idle_writes = writes.len() - writes_before;
    let by_controller = |resource: &str| {
        writes
            .iter()
            .filter(|w| w.manager == "ferrolb-controller" && w.resource == resource)
            .count()
    };
    let status_writes = by_controller("services");
    let pool_writes = by_controller("ipaddresspools.ferrolb.io");
    let events = writes
        .iter()
        .filter(|w| w.resource.starts_with("events"))
        .count();
    println!(
        "controller-bench created_in_s={:.2} pool_writes={pool_writes} events={events} idle_cpu_pct={idle_cpu_pct:.0} idle_writes={idle_writes}",
        created.as_secs_f64()
    );
    println!(
        "controller-bench services={total} seconds={:.2} writes={status_writes} rss_mib={rss:.1}",
        done.as_secs_f64()
    );
    Ok(())
}
