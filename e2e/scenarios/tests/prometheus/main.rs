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
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);
pub(crate) const NODES: u8 = 3;
pub(crate) const NAMESPACE: &str = "ferrolb-system";
pub(crate) const POOL: &str = "lab";
/// The value set that turns both monitor kinds and the rules on.
pub(crate) const VALUES: &str = "charts/ferrolb/ci/monitoring-values.yaml";
/// Inside the bridge namespace, so it is this lab's loopback, not the host's.
pub(crate) const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";
/// The test's scrape and rule interval (the chart's own timings are checked with `promtool
/// check config` instead of waited for).
pub(crate) const INTERVAL: &str = "1s";
pub(crate) const INSTALL_HINT: &str = "install the Debian `prometheus` package (apt-get install prometheus): it provides `prometheus` and `promtool`";

/// Gauges whose names end in `_total` although they are not counters: MetalLB's names
/// (`metallb_allocator_*`), kept so existing dashboards and alerts work (see
/// crates/controller/src/metrics.rs). promtool's linter objects to the suffix.
pub(crate) const METALLB_TOTAL_GAUGES: &[&str] = &[
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
pub(crate) const ACCEPTED_FINDINGS: &str = "MetalLB `_total` gauges";

mod fixture;
mod operator;
mod truth;

use fixture::*;
use operator::*;
use truth::*;

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
