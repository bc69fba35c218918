//! The monitoring value set: ServiceMonitors and PodMonitors with the Services they scrape
//! through, the alerts (checked and unit-tested by `promtool`), the Grafana dashboard, and the
//! NetworkPolicies.

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use super::{find, render, run, text, typed};

/// What `monitoring-values.yaml` renders beyond the invariants.
pub(super) fn check(docs: &[Value]) {
    check_scraping(docs);
    let rule = find(docs, "PrometheusRule", "ferrolb");
    let alerts: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for want in [
        "FerroLBAddressPoolExhausted",
        "FerroLBAddressPoolUsage75Percent",
        "FerroLBAddressPoolUsage85Percent",
        "FerroLBAddressPoolUsage95Percent",
        "FerroLBConfigNotLoaded",
        "FerroLBNoControllerLeader",
        "FerroLBGossipMembersMissing",
        "FerroLBIPConflict",
        "FerroLBAllocationFailures",
    ] {
        assert!(
            alerts.contains(&want),
            "alert {want} missing from {alerts:?}"
        );
    }
    check_dashboard(docs);
    check_network_policies(docs);
}

/// Monitors per component, and a Service per component selecting its pods' metrics port.
fn check_scraping(docs: &[Value]) {
    for kind in ["ServiceMonitor", "PodMonitor"] {
        for component in ["controller", "speaker"] {
            let m = find(docs, kind, &format!("ferrolb-{component}"));
            assert_eq!(
                m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], component,
                "{kind} for the {component} selects another component"
            );
        }
    }
    assert_eq!(
        find(docs, "ServiceMonitor", "ferrolb-speaker")["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    for component in ["controller", "speaker"] {
        let svc: Service = typed(find(
            docs,
            "Service",
            &format!("ferrolb-{component}-metrics"),
        ));
        let spec = svc.spec.unwrap();
        assert_eq!(
            spec.selector.unwrap()["app.kubernetes.io/component"],
            component
        );
        assert_eq!(spec.ports.unwrap()[0].name.as_deref(), Some("metrics"));
    }
}

fn check_dashboard(docs: &[Value]) {
    let dashboard: ConfigMap = typed(find(docs, "ConfigMap", "ferrolb-dashboard"));
    assert_eq!(
        dashboard.metadata.labels.as_ref().unwrap()["grafana_dashboard"],
        "1",
        "the dashboard ConfigMap lacks the label Grafana's sidecar loads by"
    );
    let json: Value = serde_json::from_str(&dashboard.data.unwrap()["ferrolb.json"]).unwrap();
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    for (what, needle) in [
        ("pool usage", "ferrolb_allocator_addresses_in_use_total"),
        (
            "announcements per node",
            "sum by (node) (ferrolb_speaker_announced",
        ),
        ("owner changes", "ferrolb_speaker_owner_changes_total"),
        ("gossip health", "ferrolb_speaker_gossip_members"),
        ("gossip health", "ferrolb_speaker_gossip_dropped_total"),
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needle)),
            "dashboard lacks {what} ({needle})"
        );
    }
}

/// Gossip (UDP only: the speakers gossip over nothing else) admitted from the node range and
/// from speaker pods.
fn check_network_policies(docs: &[Value]) {
    let speaker_policy: NetworkPolicy = typed(find(docs, "NetworkPolicy", "ferrolb-speaker"));
    let ingress = speaker_policy.spec.unwrap().ingress.unwrap();
    let gossip_ports: Vec<_> = ingress[0]
        .ports
        .iter()
        .flatten()
        .map(|p| p.protocol.clone().unwrap())
        .collect();
    assert_eq!(gossip_ports, ["UDP"], "gossip ports admitted");
    let from = ingress[0].from.as_ref().unwrap();
    assert!(
        from.iter().any(|p| p
            .ip_block
            .as_ref()
            .is_some_and(|b| b.cidr == "192.0.2.0/24")),
        "gossip not admitted from the node range: {from:?}"
    );
    assert!(
        from.iter().any(|p| p.pod_selector.is_some()),
        "gossip not admitted from speaker pods: {from:?}"
    );
    find(docs, "NetworkPolicy", "ferrolb-controller");
}

#[test]
fn prometheus_rules_pass_promtool() {
    const HINT: &str = "install promtool: apt-get install prometheus";
    let docs = render("monitoring-values.yaml");
    let rule = find(&docs, "PrometheusRule", "ferrolb");
    let dir = std::env::temp_dir().join(format!("ferrolb-chart-{}-promtool", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The unit tests name their rule file `rules.yaml`, beside them.
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, serde_json::to_string_pretty(&rule["spec"]).unwrap()).unwrap();
    let out = run(
        "promtool",
        &["check", "rules", rules.to_str().unwrap()],
        HINT,
    );
    assert!(
        out.status.success() && text(&out).contains("SUCCESS"),
        "promtool check rules:\n{}",
        text(&out)
    );
    // Behaviour, not only syntax: the unit tests feed series and expect exactly these alerts.
    let tests = dir.join("alerts.promtest.yaml");
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chart-alerts.promtest.yaml");
    std::fs::copy(&source, &tests)
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", source.display()));
    let out = run(
        "promtool",
        &["test", "rules", tests.to_str().unwrap()],
        HINT,
    );
    assert!(out.status.success(), "promtool test rules:\n{}", text(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}
