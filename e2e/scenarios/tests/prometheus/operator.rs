//! What the Prometheus Operator would make of the chart's PodMonitors and ServiceMonitors:
//! scrape jobs with the lab's addresses as static targets.

use super::*;

// ---------------------------------------------------------------- the chart

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The chart rendered with the real Helm engine (as `chart.rs` does; fails when it is missing).
pub(crate) fn render_chart() -> Vec<Value> {
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
pub(crate) fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

pub(crate) fn only<'a>(what: &str, found: Vec<&'a Value>) -> &'a Value {
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {what}, found {found:?}"
    );
    found[0]
}

/// The workload whose pods `selector` picks.
pub(crate) fn workload<'a>(docs: &'a [Value], selector: &Value) -> &'a Value {
    only(
        &format!("workload with pods selected by {selector}"),
        docs.iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "DaemonSet")))
            .filter(|d| selects(selector, &d["spec"]["template"]["metadata"]["labels"]))
            .collect(),
    )
}

/// The container of `workload` with port `port` (a name or a number): its name and number.
pub(crate) fn container_port(workload: &Value, port: &Value) -> (String, u16) {
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
pub(crate) fn relabel_configs(list: &Value) -> Value {
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
pub(crate) struct Job {
    /// `podMonitor/<ns>/<name>/<i>` or `serviceMonitor/<ns>/<name>/<i>`.
    pub(crate) name: String,
    /// The `job` label of its series: `<ns>/<name>` for a PodMonitor, the Service's name for a
    /// ServiceMonitor (neither sets `jobLabel`).
    pub(crate) label: String,
    pub(crate) component: String,
    /// `ip:port` of each target.
    pub(crate) targets: Vec<String>,
    /// The scrape config with the chart's interval and timeout.
    pub(crate) config: Value,
}

/// The scrape jobs of every PodMonitor and ServiceMonitor the chart renders. Kubernetes service
/// discovery is replaced by static targets: the lab's address of each pod the monitor selects,
/// on the port the monitor names (resolved through the Service for a ServiceMonitor), with the
/// target labels the Operator's relabeling would give (`namespace`, `pod`, `container`,
/// `endpoint`, `service`, `job`). Path, scheme, honorLabels, honorTimestamps, params,
/// relabelings and metricRelabelings are taken as rendered; an endpoint setting not translated
/// here fails the test, so a chart change cannot be silently ignored.
pub(crate) fn scrape_jobs(
    docs: &[Value],
    lab_pods: &dyn Fn(&str) -> Vec<(String, String)>,
) -> Vec<Job> {
    docs.iter()
        .filter_map(|monitor| Monitor::of(docs, monitor))
        .flat_map(|monitor| monitor.jobs(lab_pods))
        .collect()
}

/// Endpoint settings [`scrape_jobs`] translates; any other fails the test.
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

/// One PodMonitor or ServiceMonitor with what it selects.
struct Monitor<'a> {
    /// `podMonitor` or `serviceMonitor`.
    kind: &'static str,
    name: &'a str,
    ns: &'a str,
    monitor: &'a Value,
    /// The Service a ServiceMonitor selects (its selector picks the pods).
    service: Option<&'a Value>,
    workload: &'a Value,
    component: &'a str,
}

impl<'a> Monitor<'a> {
    fn of(docs: &'a [Value], monitor: &'a Value) -> Option<Self> {
        let kind = match monitor["kind"].as_str() {
            Some("PodMonitor") => "podMonitor",
            Some("ServiceMonitor") => "serviceMonitor",
            _ => return None,
        };
        let name = monitor["metadata"]["name"].as_str().unwrap();
        let ns = monitor["metadata"]["namespace"].as_str().unwrap();
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"],
            json!([NAMESPACE]),
            "{kind} {name} looks in the release namespace"
        );
        let selector = &monitor["spec"]["selector"]["matchLabels"];
        let service = (kind == "serviceMonitor").then(|| {
            only(
                &format!("Service selected by ServiceMonitor {name}"),
                docs.iter()
                    .filter(|d| d["kind"] == "Service")
                    .filter(|d| selects(selector, &d["metadata"]["labels"]))
                    .collect(),
            )
        });
        let workload = workload(docs, service.map_or(selector, |s| &s["spec"]["selector"]));
        let component =
            workload["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .unwrap();
        Some(Self {
            kind,
            name,
            ns,
            monitor,
            service,
            workload,
            component,
        })
    }

    fn jobs(&self, lab_pods: &dyn Fn(&str) -> Vec<(String, String)>) -> Vec<Job> {
        let key = if self.service.is_some() {
            "endpoints"
        } else {
            "podMetricsEndpoints"
        };
        let pods = lab_pods(self.component);
        self.monitor["spec"][key]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, endpoint)| self.job(i, endpoint, &pods))
            .collect()
    }

    /// The scrape job of endpoint `i`, targeting `pods` (name, lab address).
    fn job(&self, i: usize, endpoint: &Value, pods: &[(String, String)]) -> Job {
        let (kind, name, ns) = (self.kind, self.name, self.ns);
        for key in endpoint.as_object().unwrap().keys() {
            assert!(
                TRANSLATED.contains(&key.as_str()),
                "{kind} {name} sets `{key}`, which this test does not translate yet"
            );
        }
        let port = match self.service {
            Some(s) => {
                s["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == endpoint["port"])
                    .unwrap_or_else(|| panic!("Service of {name} has no port {}", endpoint["port"]))
                    ["targetPort"]
                    .clone()
            }
            None => endpoint["port"].clone(),
        };
        let (container, number) = container_port(self.workload, &port);
        let label = match self.service {
            Some(s) => s["metadata"]["name"].as_str().unwrap().to_owned(),
            None => format!("{ns}/{name}"),
        };
        let static_configs: Vec<Value> = pods
            .iter()
            .map(|(pod, ip)| {
                let mut labels = json!({
                    "job": label, "namespace": ns, "pod": pod, "container": container,
                    "endpoint": endpoint["port"],
                });
                if let Some(s) = self.service {
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
        Job {
            name: format!("{kind}/{ns}/{name}/{i}"),
            label,
            component: self.component.to_owned(),
            targets: pods
                .iter()
                .map(|(_, ip)| format!("{ip}:{number}"))
                .collect(),
            config,
        }
    }
}

/// A Prometheus configuration with these jobs and rules; `fast` swaps the chart's timings for
/// the test's one-second interval.
pub(crate) fn prometheus_config(jobs: &[Job], rules: &Path, fast: bool) -> String {
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
