//! A real Prometheus server (Debian's `prometheus` package) scrapes the lab's controller and
//! speakers with the chart's scrape settings, and what it stores matches the lab:
//!
//! - the scrape jobs are the ones the Prometheus Operator would generate from the chart's
//!   rendered PodMonitors and ServiceMonitors (`charts/ferrolb/ci/monitoring-values.yaml`), with
//!   the lab's addresses as static targets in place of Kubernetes service discovery;
//! - `ferrolb_allocator_addresses_in_use_total{pool}` equals the Service IPs the API server holds
//!   from that pool, and `ferrolb_speaker_announced` names, for every one of them, exactly one
//!   node: the node whose MAC answers ARP/NDP for it from the client namespace, which is also the
//!   node its ServiceL2Status names;
//! - Prometheus loads the chart's PrometheusRule, evaluates every rule without error, and none is
//!   pending or firing in the healthy lab (`promtool check rules` and the rule unit tests run in
//!   `chart.rs`, `prometheus_rules_pass_promtool`);
//! - `promtool check metrics` accepts every `/metrics` page, apart from the findings
//!   `ACCEPTED_FINDINGS` explains.
//!
//! One test per point; those that need a lab (root: network namespaces) share one fixture while
//! they run together, and count as ignored without root. They fail when `prometheus` or
//! `promtool` is missing.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ferrolb_lab::Lab;
use ferrolb_lab::cluster::{API_ADDR, CONTROLLER_METRICS, prefix};
use ferrolb_lab::objects::{POOL_V4, POOL_V6, lab_pool, svc};
use ferrolb_lab::process::log_tail;
use ferrolb_lab::scrape;
use ferrolb_lab::topology::{bridge_ns, client_ns, in_ns, node_ip};
use ipnet::IpNet;
use serde_json::{Value, json};

/// How long anything may take on a loaded 2-core machine: bounds a wait, is not measured.
const PATIENCE: Duration = Duration::from_secs(60);
const NODES: u8 = 3;
const NAMESPACE: &str = "ferrolb-system";
const POOL: &str = "lab";
/// The value set that turns both monitor kinds and the rules on.
const VALUES: &str = "charts/ferrolb/ci/monitoring-values.yaml";
/// Inside the bridge namespace, so it is this lab's loopback, not the host's.
const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";
/// The test's scrape and rule interval (the chart's own timings are checked with `promtool
/// check config` instead of waited for).
const INTERVAL: &str = "1s";
const INSTALL_HINT: &str = "install the Debian `prometheus` package (apt-get install prometheus): it provides `prometheus` and `promtool`";

/// Gauges whose names end in `_total` although they are not counters: MetalLB's names
/// (`metallb_allocator_*`), kept so existing dashboards and alerts work (see
/// crates/controller/src/metrics.rs). promtool's linter objects to the suffix.
const METALLB_TOTAL_GAUGES: &[&str] = &[
    "ferrolb_allocator_addresses_total",
    "ferrolb_allocator_addresses_in_use_total",
    "ferrolb_allocator_ipv4_addresses_total",
    "ferrolb_allocator_ipv4_addresses_in_use_total",
    "ferrolb_allocator_ipv6_addresses_total",
    "ferrolb_allocator_ipv6_addresses_in_use_total",
];

/// What `promtool check metrics` may report, and why that is not a defect: the MetalLB
/// `_total` gauges above (their names are kept so MetalLB dashboards and alerts keep working).
/// promtool lints the Prometheus text format, which the pages serve unless OpenMetrics is
/// asked for (crates/observe/src/exposition.rs).
const ACCEPTED_FINDINGS: &str = "MetalLB `_total` gauges";

// ---------------------------------------------------------------- the lab and its fixture

/// A lab with the chart's scrape jobs and rules, and a Prometheus scraping it; the lab guard
/// removes everything (Prometheus is one of its supervised processes). Tests of this file share
/// one while they overlap (`cargo test` runs them in threads of one process; nextest gives each
/// test a process, and so a fixture, of its own).
struct Monitored {
    lab: Lab,
    jobs: Vec<Job>,
    /// Rules in the chart's PrometheusRule.
    chart_rules: usize,
    /// MAC address → node name.
    macs: BTreeMap<String, String>,
}

impl Monitored {
    fn bridge(&self) -> String {
        bridge_ns(self.lab.prefix())
    }

    fn client(&self) -> String {
        client_ns(self.lab.prefix())
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.lab.kubectl_run(args, stdin).unwrap()
    }

    /// `curl` from the bridge namespace (it reaches every lab address).
    fn curl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["curl", "-sS", "-m", "5"];
        full.extend_from_slice(args);
        in_ns(&self.bridge(), &full)
    }

    fn prometheus_log(&self) -> String {
        log_tail(&self.lab.log("prometheus"), 20)
    }

    fn by_kind(&self, kind: &str) -> Vec<&Job> {
        self.jobs
            .iter()
            .filter(|j| j.name.starts_with(&format!("{kind}/")))
            .collect()
    }
}

/// The fixture the tests running now share, made by the first of them.
fn monitored() -> Arc<Monitored> {
    static SHARED: Mutex<Weak<Monitored>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fixture) = shared.upgrade() {
        return fixture;
    }
    let fixture = Arc::new(bring_up());
    *shared = Arc::downgrade(&fixture);
    fixture
}

fn require_tools() {
    for tool in ["prometheus", "promtool"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "`{tool}` is missing: {INSTALL_HINT}");
    }
}

// ---------------------------------------------------------------- the chart

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart rendered with the real Helm engine (as `chart.rs` does; fails when it is missing).
fn render_chart() -> Vec<Value> {
    let out = Command::new("python3")
        .args(["hack/chart.py", "render", "--values", VALUES])
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): pip install helm-python-sdk"));
    assert!(
        out.status.success(),
        "python3 hack/chart.py render failed (pip install helm-python-sdk):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Whether `labels` holds every entry of `selector` (a `matchLabels` map).
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn only<'a>(what: &str, found: Vec<&'a Value>) -> &'a Value {
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {what}, found {found:?}"
    );
    found[0]
}

/// The workload whose pods `selector` picks.
fn workload<'a>(docs: &'a [Value], selector: &Value) -> &'a Value {
    only(
        &format!("workload with pods selected by {selector}"),
        docs.iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "DaemonSet")))
            .filter(|d| selects(selector, &d["spec"]["template"]["metadata"]["labels"]))
            .collect(),
    )
}

/// The container of `workload` with port `port` (a name or a number): its name and number.
fn container_port(workload: &Value, port: &Value) -> (String, u16) {
    for container in workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
    {
        for p in container["ports"].as_array().into_iter().flatten() {
            if (port.is_string() && p["name"] == *port) || p["containerPort"] == *port {
                let number = u16::try_from(p["containerPort"].as_u64().unwrap()).unwrap();
                return (container["name"].as_str().unwrap().to_owned(), number);
            }
        }
    }
    panic!(
        "no container port {port} in {}",
        workload["metadata"]["name"]
    )
}

/// A Prometheus Operator relabeling as Prometheus configuration (snake_case keys; the Operator
/// lowercases the action).
fn relabel_configs(list: &Value) -> Value {
    let snake = |key: &str| {
        key.chars()
            .flat_map(|c| {
                if c.is_ascii_uppercase() {
                    vec!['_', c.to_ascii_lowercase()]
                } else {
                    vec![c]
                }
            })
            .collect::<String>()
    };
    list.as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            rule.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let v = if k == "action" {
                        json!(v.as_str().unwrap().to_lowercase())
                    } else {
                        v.clone()
                    };
                    (snake(k), v)
                })
                .collect::<serde_json::Map<_, _>>()
        })
        .collect::<Vec<_>>()
        .into()
}

/// One scrape job, as the Operator would generate it from one monitor endpoint.
#[derive(Debug)]
struct Job {
    /// `podMonitor/<ns>/<name>/<i>` or `serviceMonitor/<ns>/<name>/<i>`.
    name: String,
    /// The `job` label of its series: `<ns>/<name>` for a PodMonitor, the Service's name for a
    /// ServiceMonitor (neither sets `jobLabel`).
    label: String,
    component: String,
    /// `ip:port` of each target.
    targets: Vec<String>,
    /// The scrape config with the chart's interval and timeout.
    config: Value,
}

/// The scrape jobs of every PodMonitor and ServiceMonitor the chart renders. Kubernetes service
/// discovery is replaced by static targets: the lab's address of each pod the monitor selects,
/// on the port the monitor names (resolved through the Service for a ServiceMonitor), with the
/// target labels the Operator's relabeling would give (`namespace`, `pod`, `container`,
/// `endpoint`, `service`, `job`). Path, scheme, honorLabels, honorTimestamps, params,
/// relabelings and metricRelabelings are taken as rendered; an endpoint setting not translated
/// here fails the test, so a chart change cannot be silently ignored.
fn scrape_jobs(docs: &[Value], lab_pods: &dyn Fn(&str) -> Vec<(String, String)>) -> Vec<Job> {
    const TRANSLATED: &[&str] = &[
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "honorLabels",
        "honorTimestamps",
        "params",
        "relabelings",
        "metricRelabelings",
    ];
    let mut jobs = Vec::new();
    for monitor in docs {
        let (kind, endpoints_key) = match monitor["kind"].as_str() {
            Some("PodMonitor") => ("podMonitor", "podMetricsEndpoints"),
            Some("ServiceMonitor") => ("serviceMonitor", "endpoints"),
            _ => continue,
        };
        let name = monitor["metadata"]["name"].as_str().unwrap();
        let ns = monitor["metadata"]["namespace"].as_str().unwrap();
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"],
            json!([NAMESPACE]),
            "{kind} {name} looks in the release namespace"
        );
        let selector = &monitor["spec"]["selector"]["matchLabels"];
        // A ServiceMonitor selects Services; their selector picks the pods.
        let service = (kind == "serviceMonitor").then(|| {
            only(
                &format!("Service selected by ServiceMonitor {name}"),
                docs.iter()
                    .filter(|d| d["kind"] == "Service")
                    .filter(|d| selects(selector, &d["metadata"]["labels"]))
                    .collect(),
            )
        });
        let pods = service.map_or(selector, |s| &s["spec"]["selector"]);
        let workload = workload(docs, pods);
        let component =
            workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .unwrap();
        for (i, endpoint) in monitor["spec"][endpoints_key]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            for key in endpoint.as_object().unwrap().keys() {
                assert!(
                    TRANSLATED.contains(&key.as_str()),
                    "{kind} {name} sets `{key}`, which this test does not translate yet"
                );
            }
            let port = match service {
                Some(s) => {
                    let port = s["spec"]["ports"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|p| p["name"] == endpoint["port"])
                        .unwrap_or_else(|| {
                            panic!("Service of {name} has no port {}", endpoint["port"])
                        });
                    port["targetPort"].clone()
                }
                None => endpoint["port"].clone(),
            };
            let (container, number) = container_port(workload, &port);
            let label = match service {
                Some(s) => s["metadata"]["name"].as_str().unwrap().to_owned(),
                None => format!("{ns}/{name}"),
            };
            let pods = lab_pods(component);
            let static_configs: Vec<Value> = pods
                .iter()
                .map(|(pod, ip)| {
                    let mut labels = json!({
                        "job": label, "namespace": ns, "pod": pod, "container": container,
                        "endpoint": endpoint["port"],
                    });
                    if let Some(s) = service {
                        labels["service"] = s["metadata"]["name"].clone();
                    }
                    json!({"targets": [format!("{ip}:{number}")], "labels": labels})
                })
                .collect();
            let mut config = json!({
                "job_name": format!("{kind}/{ns}/{name}/{i}"),
                "honor_labels": endpoint["honorLabels"].as_bool().unwrap_or(false),
                "scheme": endpoint["scheme"].as_str().unwrap_or("http"),
                "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
                "static_configs": static_configs,
                "relabel_configs": relabel_configs(&endpoint["relabelings"]),
                "metric_relabel_configs": relabel_configs(&endpoint["metricRelabelings"]),
            });
            for (from, to) in [
                ("interval", "scrape_interval"),
                ("scrapeTimeout", "scrape_timeout"),
                ("honorTimestamps", "honor_timestamps"),
                ("params", "params"),
            ] {
                if !endpoint[from].is_null() {
                    config[to] = endpoint[from].clone();
                }
            }
            jobs.push(Job {
                name: format!("{kind}/{ns}/{name}/{i}"),
                label,
                component: component.to_owned(),
                targets: pods
                    .iter()
                    .map(|(_, ip)| format!("{ip}:{number}"))
                    .collect(),
                config,
            });
        }
    }
    jobs
}

/// A Prometheus configuration with these jobs and rules; `fast` swaps the chart's timings for
/// the test's one-second interval.
fn prometheus_config(jobs: &[Job], rules: &Path, fast: bool) -> String {
    let scrape_configs: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut c = j.config.clone();
            if fast {
                c["scrape_interval"] = json!(INTERVAL);
                c["scrape_timeout"] = json!(INTERVAL);
            }
            c
        })
        .collect();
    // JSON is YAML: Prometheus reads it as is.
    serde_json::to_string_pretty(&json!({
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [rules],
        "scrape_configs": scrape_configs,
    }))
    .unwrap()
}

// ---------------------------------------------------------------- the Prometheus HTTP API

/// GET `path` with URL-encoded `params` from the Prometheus in the bridge namespace: `data`,
/// or why there is none.
fn api(lab: &Monitored, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
    let url = format!("http://{PROMETHEUS_ADDR}{path}");
    let encoded: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args = vec!["-G", url.as_str()];
    for p in &encoded {
        args.extend(["--data-urlencode", p.as_str()]);
    }
    let out = lab.curl(&args).map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))?;
    if body["status"] == "success" {
        Ok(body["data"].clone())
    } else {
        Err(body.to_string())
    }
}

/// The instant vector of `promql`.
fn query(lab: &Monitored, promql: &str) -> Result<Vec<Value>, String> {
    let data = api(lab, "/api/v1/query", &[("query", promql)])?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

fn label(sample: &Value, name: &str) -> String {
    sample["metric"][name]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------- the lab's state

/// Service IPs the API server holds from the lab pool: IP → `namespace/name`.
fn assigned_ips(lab: &Monitored) -> BTreeMap<IpAddr, String> {
    let pool: Vec<IpNet> = [POOL_V4, POOL_V6]
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    let list: Value =
        serde_json::from_str(&lab.kubectl(&["get", "svc", "-A", "-o", "json"], None)).unwrap();
    let mut ips = BTreeMap::new();
    for svc in list["items"].as_array().unwrap() {
        let name = format!(
            "{}/{}",
            svc["metadata"]["namespace"].as_str().unwrap(),
            svc["metadata"]["name"].as_str().unwrap()
        );
        for ingress in svc["status"]["loadBalancer"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let ip: IpAddr = ingress["ip"].as_str().unwrap().parse().unwrap();
            if pool.iter().any(|net| net.contains(&ip)) {
                ips.insert(ip, name.clone());
            }
        }
    }
    ips
}

/// Which node's MAC answers ARP (IPv4) or NDP (IPv6) for `ip` from the client namespace.
fn answering_node(lab: &Monitored, macs: &BTreeMap<String, String>, ip: IpAddr) -> Option<String> {
    let ip_text = ip.to_string();
    let client = lab.client();
    let text = if ip.is_ipv4() {
        in_ns(
            &client,
            &["arping", "-c", "1", "-w", "2", "-I", "eth0", &ip_text],
        )
    } else {
        in_ns(
            &client,
            &["ndisc6", "-1", "-r", "2", "-w", "500", &ip_text, "eth0"],
        )
    }
    .ok()
    .map(|o| String::from_utf8_lossy(&o.stdout).to_lowercase())?;
    // arping: "Unicast reply from 192.0.2.192 [96:9a:...]"; ndisc6: "Target link-layer
    // address: 96:9a:...".
    let mac = text.lines().find_map(|l| {
        if l.contains("reply from") {
            l.split_once('[')?
                .1
                .split_once(']')
                .map(|(m, _)| m.to_owned())
        } else {
            l.strip_prefix("target link-layer address:")
                .map(|m| m.trim().to_owned())
        }
    })?;
    macs.get(&mac).cloned()
}

/// `(service, node)` of every ServiceL2Status (its labels, which the speaker writes first).
fn l2_statuses(lab: &Monitored) -> BTreeSet<(String, String)> {
    let list: Value = serde_json::from_str(&lab.kubectl(
        &["get", "servicel2status", "-n", NAMESPACE, "-o", "json"],
        None,
    ))
    .unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = &s["metadata"]["labels"];
            (
                format!(
                    "{}/{}",
                    labels["ferrolb.io/service-namespace"]
                        .as_str()
                        .unwrap_or("?"),
                    labels["ferrolb.io/service-name"].as_str().unwrap_or("?")
                ),
                labels["ferrolb.io/node"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// One `ferrolb_speaker_announced` series (or what one should be).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Announced {
    service: String,
    ip: String,
    protocol: String,
    node: String,
    /// The `pod` target label: which speaker Prometheus scraped it from.
    scraped_from: String,
}

/// What Prometheus stores for one monitor kind, or what it should store.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    /// `ferrolb_allocator_addresses_in_use_total{pool="lab"}` per controller target.
    in_use: Vec<f64>,
    announced: BTreeSet<Announced>,
}

/// The lab's state, seen without Prometheus.
#[derive(Debug, Clone, PartialEq)]
struct Truth {
    assigned: BTreeMap<IpAddr, String>,
    /// IP → node answering ARP/NDP for it (`None`: no answer).
    answering: BTreeMap<IpAddr, Option<String>>,
    l2_statuses: BTreeSet<(String, String)>,
}

impl Truth {
    fn observe(lab: &Monitored, macs: &BTreeMap<String, String>) -> Self {
        let assigned = assigned_ips(lab);
        let answering = assigned
            .keys()
            .map(|ip| (*ip, answering_node(lab, macs, *ip)))
            .collect();
        Self {
            assigned,
            answering,
            l2_statuses: l2_statuses(lab),
        }
    }

    /// What one monitor kind's jobs should store: one controller target, and each IP
    /// announced once, by the node that answers for it, scraped from that node's speaker.
    #[allow(clippy::cast_precision_loss)]
    fn expected(&self) -> Stored {
        Stored {
            in_use: vec![self.assigned.len() as f64],
            announced: self
                .assigned
                .iter()
                .map(|(ip, service)| {
                    let node = self.answering[ip].clone().unwrap_or_default();
                    Announced {
                        service: service.clone(),
                        ip: ip.to_string(),
                        protocol: if ip.is_ipv4() { "ipv4" } else { "ipv6" }.to_owned(),
                        scraped_from: format!("speaker-{node}"),
                        node,
                    }
                })
                .collect(),
        }
    }

    /// The ServiceL2Status objects that should exist: one per Service and announcing node.
    fn expected_l2_statuses(&self) -> BTreeSet<(String, String)> {
        self.expected()
            .announced
            .into_iter()
            .map(|a| (a.service, a.node))
            .collect()
    }
}

/// What Prometheus stores for the jobs of one monitor kind (`jobs`: controller and speaker).
fn stored(lab: &Monitored, jobs: &[&Job]) -> Result<Stored, String> {
    let mut in_use = Vec::new();
    let mut announced = BTreeSet::new();
    for job in jobs {
        match job.component.as_str() {
            "controller" => {
                for s in query(
                    lab,
                    &format!(
                        "ferrolb_allocator_addresses_in_use_total{{job=\"{}\",pool=\"{POOL}\"}}",
                        job.label
                    ),
                )? {
                    in_use.push(value(&s));
                }
            }
            "speaker" => {
                for s in query(
                    lab,
                    &format!("ferrolb_speaker_announced{{job=\"{}\"}} == 1", job.label),
                )? {
                    announced.insert(Announced {
                        service: label(&s, "service"),
                        ip: label(&s, "ip")
                            .parse::<IpAddr>()
                            .map_or_else(|_| label(&s, "ip"), |ip| ip.to_string()),
                        protocol: label(&s, "protocol"),
                        node: label(&s, "node"),
                        scraped_from: label(&s, "pod"),
                    });
                }
            }
            other => panic!("unexpected component {other}"),
        }
    }
    Ok(Stored { in_use, announced })
}

// ---------------------------------------------------------------- promtool check metrics

/// Runs `promtool check metrics` on the `/metrics` page at `addr`: its findings, split into
/// accepted (see `ACCEPTED_FINDINGS`) and not.
fn promtool_findings(lab: &Monitored, addr: &str) -> (Vec<String>, Vec<String>) {
    // Ask for the format promtool lints; the answer's Content-Type says what was served.
    let out = lab
        .curl(&[
            "-f",
            "-i",
            "-H",
            "Accept: text/plain;version=0.0.4",
            &format!("http://{addr}/metrics"),
        ])
        .unwrap();
    let response = String::from_utf8(out.stdout).unwrap();
    let (head, page) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_lowercase()
            .lines()
            .any(|l| l.starts_with("content-type:") && l.contains("text/plain; version=0.0.4")),
        "{addr}/metrics asked for the text format, got: {head}"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): {INSTALL_HINT}"));
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let result = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    // 0: clean; 3: lint findings only; anything else (1: the page does not parse) fails.
    assert!(
        matches!(result.status.code(), Some(0 | 3)),
        "promtool check metrics could not read {addr}/metrics ({}):\n{report}\npage:\n{page}",
        result.status
    );
    let (mut accepted_findings, mut unaccepted) = (Vec::new(), Vec::new());
    for finding in report.lines().filter(|l| !l.trim().is_empty()) {
        let (metric, problem) = finding.split_once(' ').unwrap_or((finding, ""));
        let accepted = match problem {
            "non-counter metrics should not have \"_total\" suffix" => {
                METALLB_TOTAL_GAUGES.contains(&metric)
            }
            _ => false,
        };
        let entry = format!("{addr}: {finding}");
        if accepted {
            accepted_findings.push(entry);
        } else {
            unaccepted.push(entry);
        }
    }
    (accepted_findings, unaccepted)
}

// ---------------------------------------------------------------- bringing it up

/// The chart's PrometheusRule.
fn chart_rule(docs: &[Value]) -> &Value {
    only(
        "PrometheusRule",
        docs.iter()
            .filter(|d| d["kind"] == "PrometheusRule")
            .collect(),
    )
}

/// Where the lab runs what the chart's pods would run (`Lab::up`): the controller beside the
/// API server on the bridge address, one speaker per node namespace on the node's address.
fn lab_pods(component: &str) -> Vec<(String, String)> {
    match component {
        "controller" => vec![(
            "controller-0".to_owned(),
            API_ADDR.split(':').next().unwrap().to_owned(),
        )],
        "speaker" => (1..=NODES)
            .map(|i| (format!("speaker-node-{i}"), node_ip(i)))
            .collect(),
        other => panic!("the chart monitors a component the lab does not run: {other}"),
    }
}

/// A lab serving Services of every family policy, scraped by Prometheus with the chart's jobs
/// and rules (at a one-second interval), every target up.
fn bring_up() -> Monitored {
    require_tools();
    let docs = render_chart();
    let rule = chart_rule(&docs).clone();
    let chart_rules = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    let lab = Lab::up(&prefix("fp"), NODES).unwrap();
    let jobs = scrape_jobs(&docs, &lab_pods);
    let macs = lab.node_macs().unwrap();
    let fixture = Monitored {
        lab,
        jobs,
        chart_rules,
        macs,
    };
    let lab = &fixture.lab;
    // The pool first, and Services only once the controller serves it: a Service reconciled
    // before its pool is known counts an allocation failure, which one alert reports.
    let [pool, advertisement] = lab_pool();
    lab.apply(&[&pool, &advertisement]).unwrap();
    lab.eventually("the controller to export pool lab", PATIENCE, || {
        let samples = lab.metrics(CONTROLLER_METRICS)?;
        scrape::value(
            &samples,
            "ferrolb_allocator_addresses_total",
            &[("pool", POOL)],
        )
        .map(|_| ())
        .ok_or_else(|| "no ferrolb_allocator_addresses_total{pool=\"lab\"}".to_owned())
    });
    lab.apply(&[
        &svc("web"),
        &svc("dual-a").dual_stack(),
        &svc("dual-b").dual_stack(),
        &svc("v6").ipv6_only(),
    ])
    .unwrap();
    // web, v6: one IP each; dual-a, dual-b: one per family.
    lab.eventually(
        "every Service to get its IPs",
        PATIENCE,
        || match assigned_ips(&fixture).len() {
            6 => Ok(()),
            n => Err(format!("{n} IPs")),
        },
    );
    let rules = lab.dir().join("ferrolb-rules.yaml");
    std::fs::write(&rules, serde_json::to_string_pretty(&rule["spec"]).unwrap()).unwrap();
    let config = lab.dir().join("prometheus.yaml");
    std::fs::write(&config, prometheus_config(&fixture.jobs, &rules, true)).unwrap();
    let tsdb = lab.dir().join("tsdb");
    lab.spawn(
        "prometheus",
        &fixture.bridge(),
        Path::new("prometheus"),
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", tsdb.display()),
            &format!("--web.listen-address={PROMETHEUS_ADDR}"),
        ],
        &[],
    )
    .unwrap();
    let ready_url = format!("http://{PROMETHEUS_ADDR}/-/ready");
    lab.eventually("Prometheus to be ready", PATIENCE, || {
        fixture
            .curl(&["-f", &ready_url])
            .map(|_| ())
            .map_err(|e| format!("{e}; log:\n{}", fixture.prometheus_log()))
    });
    fixture
}

/// Up targets per job: job name → (up, expected).
fn targets_up(m: &Monitored) -> BTreeMap<String, (usize, usize)> {
    m.jobs
        .iter()
        .map(|j| {
            let up = query(m, &format!("up{{job=\"{}\"}} == 1", j.label)).map_or(0, |v| v.len());
            (j.name.clone(), (up, j.targets.len()))
        })
        .collect()
}

/// Waits until the lab itself is settled (every IP answered, ServiceL2Status as expected) and
/// what Prometheus stores for each monitor kind equals it; the truth and what each kind stored.
fn compare(m: &Monitored) -> (Truth, BTreeMap<&'static str, Result<Stored, String>>) {
    let mut last = None;
    let found = m
        .lab
        .poll_until("Prometheus to store the lab's state", PATIENCE, || {
            let truth = Truth::observe(m, &m.macs);
            let seen: BTreeMap<&'static str, Result<Stored, String>> =
                ["podMonitor", "serviceMonitor"]
                    .into_iter()
                    .map(|k| (k, stored(m, &m.by_kind(k))))
                    .collect();
            let expected = truth.expected();
            let done = truth.answering.values().all(Option::is_some)
                && truth.l2_statuses == truth.expected_l2_statuses()
                && seen.values().all(|s| s.as_ref() == Ok(&expected));
            if done {
                Ok((truth, seen))
            } else {
                last = Some((truth, seen));
                Err("not yet equal".to_owned())
            }
        });
    // On a timeout the last observation is asserted on, so the failure shows the difference.
    found.unwrap_or_else(|_| last.expect("observed at least once"))
}

// ---------------------------------------------------------------- the tests

#[test]
fn the_charts_monitors_become_scrape_configs_promtool_accepts_with_the_charts_timings() {
    require_tools();
    let docs = render_chart();
    let jobs = scrape_jobs(&docs, &lab_pods);
    let kinds: BTreeSet<&str> = jobs
        .iter()
        .map(|j| j.name.split('/').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["podMonitor", "serviceMonitor"]),
        "{VALUES} renders both monitor kinds: {jobs:#?}"
    );
    let dir = std::env::temp_dir().join(format!("ferrolb-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("ferrolb-rules.yaml");
    let rule = chart_rule(&docs);
    std::fs::write(&rules, serde_json::to_string_pretty(&rule["spec"]).unwrap()).unwrap();
    let config = dir.join("prometheus-chart-timings.yaml");
    std::fs::write(&config, prometheus_config(&jobs, &rules, false)).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        check.status.success(),
        "promtool check config with the chart's scrape settings:\n{}{}\n{text}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
    );
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn every_target_of_every_chart_monitor_is_scraped() {
    let m = monitored();
    let targets = m.lab.poll_until("every target to be up", PATIENCE, || {
        let targets = targets_up(&m);
        if targets.values().all(|(up, want)| up == want) {
            Ok(targets)
        } else {
            Err(format!("{targets:?}"))
        }
    });
    assert!(
        targets.is_ok(),
        "targets up (job: (up, expected)): {:?}; Prometheus log:\n{}",
        targets_up(&m),
        m.prometheus_log()
    );
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn allocator_in_use_gauge_equals_the_service_ips_the_api_server_holds() {
    let m = monitored();
    let (truth, seen) = compare(&m);
    assert_eq!(truth.assigned.len(), 6, "Service IPs: {truth:#?}");
    for (kind, stored) in &seen {
        assert_eq!(
            stored.as_ref().map(|s| &s.in_use),
            Ok(&truth.expected().in_use),
            "{kind}: ferrolb_allocator_addresses_in_use_total{{pool=\"lab\"}} per controller \
             target against the {} Service IPs the API server holds",
            truth.assigned.len()
        );
    }
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn speaker_announced_names_the_node_answering_arp_and_ndp_and_its_l2_status() {
    let m = monitored();
    let (truth, seen) = compare(&m);
    for (ip, node) in &truth.answering {
        assert!(
            node.is_some(),
            "no node answered ARP/NDP for {ip}: {truth:#?}"
        );
    }
    assert_eq!(
        truth.l2_statuses,
        truth.expected_l2_statuses(),
        "ServiceL2Status objects name the answering node of each Service"
    );
    for (kind, stored) in &seen {
        // A target label the Operator adds (`service` for a ServiceMonitor) wins over the
        // metric's own label of that name unless the endpoint honours labels; the metric's value
        // then moves to `exported_service`. Say so rather than only show the difference.
        let target_labels: BTreeSet<String> = m
            .by_kind(kind)
            .iter()
            .filter(|j| j.config["honor_labels"] == false)
            .flat_map(|j| j.config["static_configs"].as_array().unwrap().clone())
            .flat_map(|c| c["labels"]["service"].as_str().map(str::to_owned))
            .collect();
        let clobbered = stored.as_ref().is_ok_and(|s| {
            s.announced
                .iter()
                .any(|a| target_labels.contains(&a.service))
        });
        assert!(
            !clobbered,
            "{kind}: the `service` target label ({target_labels:?}) overwrote the `service` label \
             of ferrolb_speaker_announced (honorLabels is false): the chart's {kind} endpoints \
             need `honorLabels: true`, as MetalLB's chart sets. Stored: {stored:#?}"
        );
        assert_eq!(
            stored.as_ref().map(|s| &s.announced),
            Ok(&truth.expected().announced),
            "{kind}: ferrolb_speaker_announced as Prometheus stores it (left) against the node \
             answering ARP/NDP for each IP: {truth:#?}"
        );
    }
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn the_charts_rules_all_evaluate_without_error_and_none_fires_in_a_healthy_lab() {
    let m = monitored();
    // Rules evaluated after the lab has settled, so none sees the start-up.
    compare(&m);
    let settled = jiff::Timestamp::now();
    let rules = |m: &Monitored| -> Vec<Value> {
        api(m, "/api/v1/rules", &[])
            .map(|d| {
                d["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    };
    let evaluated = m
        .lab
        .poll_until("every rule to be evaluated", PATIENCE, || {
            let loaded = rules(&m);
            let fresh = loaded.len() == m.chart_rules
                && loaded.iter().all(|r| {
                    r["lastEvaluation"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .is_some_and(|t| t > settled)
                });
            if fresh {
                Ok(loaded)
            } else {
                Err(format!("{} rules", loaded.len()))
            }
        });
    let loaded = evaluated.unwrap_or_else(|_| rules(&m));
    assert_eq!(loaded.len(), m.chart_rules, "Prometheus loaded every rule");
    let unhealthy: Vec<String> = loaded
        .iter()
        .filter(|r| r["health"] != "ok" || r["state"] != "inactive")
        .map(|r| {
            format!(
                "{} health={} state={} error={} alerts={}",
                r["name"], r["health"], r["state"], r["lastError"], r["alerts"]
            )
        })
        .collect();
    assert!(
        unhealthy.is_empty(),
        "rules failing or alerting in a healthy lab:\n{}",
        unhealthy.join("\n")
    );
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn promtool_check_metrics_accepts_every_page_but_the_metallb_total_gauges() {
    let m = monitored();
    let pages: BTreeSet<&String> = m.jobs.iter().flat_map(|j| &j.targets).collect();
    assert_eq!(pages.len(), 1 + usize::from(NODES), "pages: {pages:?}");
    let (mut accepted, mut unaccepted) = (Vec::new(), Vec::new());
    for addr in pages {
        let (a, u) = promtool_findings(&m, addr);
        accepted.extend(a);
        unaccepted.extend(u);
    }
    eprintln!(
        "promtool check metrics, accepted findings ({ACCEPTED_FINDINGS}):\n{}",
        accepted.join("\n")
    );
    assert!(
        unaccepted.is_empty(),
        "promtool check metrics (accepted: {ACCEPTED_FINDINGS}):\n{}",
        unaccepted.join("\n")
    );
}
