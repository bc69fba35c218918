//! The lab with Prometheus scraping it: bringing it up, sharing it between tests, and asking
//! Prometheus over its HTTP API.

use super::*;

// ---------------------------------------------------------------- the lab and its fixture

/// A lab with the chart's scrape jobs and rules, and a Prometheus scraping it; the lab guard
/// removes everything (Prometheus is one of its supervised processes). Tests of this file share
/// one while they overlap (`cargo test` runs them in threads of one process; nextest gives each
/// test a process, and so a fixture, of its own).
pub(crate) struct Monitored {
    pub(crate) lab: Lab,
    pub(crate) jobs: Vec<Job>,
    /// Rules in the chart's PrometheusRule.
    pub(crate) chart_rules: usize,
    /// MAC address → node name.
    pub(crate) macs: BTreeMap<String, String>,
}

impl Monitored {
    pub(crate) fn bridge(&self) -> String {
        bridge_ns(self.lab.prefix())
    }

    pub(crate) fn client(&self) -> String {
        client_ns(self.lab.prefix())
    }

    pub(crate) fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.lab.kubectl_run(args, stdin).unwrap()
    }

    /// `curl` from the bridge namespace (it reaches every lab address).
    pub(crate) fn curl(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["curl", "-sS", "-m", "5"];
        full.extend_from_slice(args);
        in_ns(&self.bridge(), &full)
    }

    pub(crate) fn prometheus_log(&self) -> String {
        log_tail(&self.lab.log("prometheus"), 20)
    }

    pub(crate) fn by_kind(&self, kind: &str) -> Vec<&Job> {
        self.jobs
            .iter()
            .filter(|j| j.name.starts_with(&format!("{kind}/")))
            .collect()
    }
}

/// The fixture the tests running now share, made by the first of them.
pub(crate) fn monitored() -> Arc<Monitored> {
    static SHARED: Mutex<Weak<Monitored>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fixture) = shared.upgrade() {
        return fixture;
    }
    let fixture = Arc::new(bring_up());
    *shared = Arc::downgrade(&fixture);
    fixture
}

pub(crate) fn require_tools() {
    for tool in ["prometheus", "promtool"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(ok, "`{tool}` is missing: {INSTALL_HINT}");
    }
}

// ---------------------------------------------------------------- the Prometheus HTTP API

/// GET `path` with URL-encoded `params` from the Prometheus in the bridge namespace: `data`,
/// or why there is none.
pub(crate) fn api(lab: &Monitored, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
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
pub(crate) fn query(lab: &Monitored, promql: &str) -> Result<Vec<Value>, String> {
    let data = api(lab, "/api/v1/query", &[("query", promql)])?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

pub(crate) fn label(sample: &Value, name: &str) -> String {
    sample["metric"][name]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------- bringing it up

/// The chart's PrometheusRule.
pub(crate) fn chart_rule(docs: &[Value]) -> &Value {
    only(
        "PrometheusRule",
        docs.iter()
            .filter(|d| d["kind"] == "PrometheusRule")
            .collect(),
    )
}

/// Where the lab runs what the chart's pods would run (`Lab::up`): the controller beside the
/// API server on the bridge address, one speaker per node namespace on the node's address.
pub(crate) fn lab_pods(component: &str) -> Vec<(String, String)> {
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
pub(crate) fn bring_up() -> Monitored {
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
pub(crate) fn targets_up(m: &Monitored) -> BTreeMap<String, (usize, usize)> {
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
pub(crate) fn compare(m: &Monitored) -> (Truth, BTreeMap<&'static str, Result<Stored, String>>) {
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
