//! The deposed leader: two controller replicas, the leader frozen past its lease while the
//! other takes over and the cluster changes (a Service gone, one new, and one whose status a
//! foreign writer cleared, which the new leader writes again), then resumed: its backlog of
//! watch events asks it for writes, and only fencing (a resourceVersion precondition, a
//! leadership that runs out on its own clock) keeps them from landing. Its Lease requests are
//! answered [late](LEASE_REQUESTS_DELAYED), so what it learns from the API about its lease
//! comes after its backlog, every run (not by the luck of which task runs first on resume). The old leader talks to the API
//! server through a recording proxy ([`crate::apiproxy`]), so every write it lands after it was
//! resumed is counted (it was frozen from before its lease expired until then, so any such
//! write comes after the expiry).

use std::time::Duration;

use super::{Options, Outcome, PATIENCE, hold, ips_changed, lab};
use crate::apiproxy::{ApiProxy, Slow};
use crate::cluster::API_ADDR;
use crate::faults::{pause, resume};
use crate::objects::{endpoints, svc};
use crate::prober::now_us;
use crate::process::Signal;

/// Where the old leader's proxy listens (bridge namespace).
const PROXY_ADDR: &str = "192.0.2.1:6444";
/// The replicas' `/metrics`.
const OLD_METRICS: &str = "192.0.2.1:7473";
const NEW_METRICS: &str = "192.0.2.1:7474";
/// How long the old leader's Lease requests take to be answered (its other requests are not
/// held back): it cannot learn from the API in time that it was deposed, as when the API server
/// is slow or far. A replica that is fenced does not need to: its leadership runs out on its
/// own clock, and its writes carry preconditions.
const LEASE_REQUESTS_DELAYED: Duration = Duration::from_secs(1);
/// How long the old leader runs after being resumed before its writes are counted.
const RESUMED_FOR: Duration = Duration::from_secs(10);

/// See the module header.
pub fn deposed_leader(options: &Options) -> anyhow::Result<Outcome> {
    let lab = lab(options, 2)?;
    let ips = lab.serve(1)?;
    lab.wait_settled(&ips, Duration::from_secs(1), PATIENCE)?;
    // The lab's own controller leaves (releasing the lease); "old" leads through the proxy.
    lab.processes()
        .stop("controller-0", Signal::Term, Duration::from_secs(15))?;
    let slow_leases = Slow {
        path_part: "/leases/".into(),
        delay: LEASE_REQUESTS_DELAYED,
    };
    let proxy = ApiProxy::start_slow(
        &lab.topology().bridge_ns,
        PROXY_ADDR,
        API_ADDR,
        Some(&slow_leases),
    )?;
    let via_proxy = lab.kubeconfig_via("kubeconfig-proxy", PROXY_ADDR)?;
    lab.start_controller_with("old", OLD_METRICS, &via_proxy)?;
    lab.poll_until("the old replica to lead", PATIENCE, || {
        match lab.lease_holder() {
            Ok(h) if h == "old" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })?;
    // Holding the Lease is not leading yet: it leads once its caches are loaded (its watches
    // open, so what happens while it is frozen piles up for it).
    lab.poll_until("the old replica to load its caches", PATIENCE, || {
        let samples = lab.metrics(OLD_METRICS)?;
        match crate::scrape::value(&samples, "ferrolb_controller_config_loaded", &[]) {
            Some(v) if v >= 1.0 => Ok(()),
            other => Err(format!("ferrolb_controller_config_loaded {other:?}")),
        }
    })?;
    lab.start_controller("new", NEW_METRICS)?;
    // The old leader is frozen, the new one takes the lease once it expires.
    pause(&lab, "old")?;
    lab.poll_until(
        "the new replica to take the lease",
        PATIENCE,
        || match lab.lease_holder() {
            Ok(h) if h == "new" => Ok(()),
            other => Err(format!("holder {other:?}")),
        },
    )?;
    // What the old leader missed: a Service gone, a Service new.
    lab.kubectl_run(&["delete", "svc", "web-1", "-n", "default"], None)?;
    lab.apply(&[
        &svc("late").ipv4_only(),
        &endpoints("late").on_every_node(2),
    ])?;
    lab.wait_ingress("late", 1, PATIENCE)?;
    // A foreign writer clears a Service's status, which the new leader must write again: the
    // old leader's backlog now holds a state it would answer with a write of its own.
    let cleared = lab.ingress("web")?;
    lab.kubectl_run(
        &[
            "patch",
            "svc",
            "web",
            "-n",
            "default",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":null}}}"#,
        ],
        None,
    )?;
    lab.poll_until(
        "the new leader to write web's status again",
        PATIENCE,
        || match lab.ingress("web") {
            Ok(ips) if !ips.is_empty() => Ok(()),
            other => Err(format!("ingress {other:?}")),
        },
    )?;
    let services = lab.services()?;
    let resumed_us = now_us();
    resume(&lab, "old")?;
    hold(&lab, RESUMED_FOR)?;
    let mut outcome = Outcome::default();
    let landed: Vec<String> = proxy
        .writes()
        .into_iter()
        .filter(|w| w.at_us >= resumed_us && w.accepted())
        .map(|w| w.line())
        .collect();
    outcome.deposed_writes = landed.len() as u64;
    outcome.detail.extend(landed);
    outcome.detail.push(format!(
        "web's status {cleared:?} cleared by a foreign writer while the old leader was frozen"
    ));
    outcome.ips_changed = ips_changed(&services, &lab.services()?);
    match lab.lease_holder() {
        Ok(h) if h == "new" => {}
        other => outcome.violations.push(format!(
            "the lease moved back from the new leader: {other:?}"
        )),
    }
    lab.healthy()?;
    Ok(outcome)
}
