//! The deposed leader: two controller replicas, the leader frozen past its lease while the
//! other takes over and the cluster changes, then resumed. The old leader talks to the API
//! server through a recording proxy ([`crate::apiproxy`]), so every write it lands after it was
//! resumed is counted (it was frozen from before its lease expired until then, so any such
//! write comes after the expiry).

use std::time::Duration;

use super::{Options, Outcome, PATIENCE, hold, ips_changed, lab};
use crate::apiproxy::ApiProxy;
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
    let proxy = ApiProxy::start(&lab.topology().bridge_ns, PROXY_ADDR, API_ADDR)?;
    let via_proxy = lab.kubeconfig_via("kubeconfig-proxy", PROXY_ADDR)?;
    lab.start_controller_with("old", OLD_METRICS, &via_proxy)?;
    lab.poll_until("the old replica to lead", PATIENCE, || {
        match lab.lease_holder() {
            Ok(h) if h == "old" => Ok(()),
            other => Err(format!("holder {other:?}")),
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
