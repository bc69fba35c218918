//! What the lab shows, as a user would look: Service IPs and Events through kubectl, the node
//! that answers a client's HTTP request, and who announces what according to the speakers'
//! `/metrics`. Every wait here goes through [`Lab::poll_until`], so it also stops, naming the
//! process, when a lab process dies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::Lab;
use crate::objects::{self, SYSTEM_NAMESPACE, endpoints, svc};
use crate::scrape::{self, SpeakerView, settled, speaker_views};
use crate::topology::{bridge_ns, client_ns, in_ns, node_ip, node_name};

/// `status.loadBalancer.ingress[].ip` of a Service object, in status order.
pub fn ingress_of(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

/// How many occurrences an Event object stands for (`series.count`, `count`, or 1).
pub fn occurrences(event: &Value) -> u64 {
    event["series"]["count"]
        .as_u64()
        .or_else(|| event["count"].as_u64())
        .unwrap_or(1)
}

impl Lab {
    /// The ingress IPs of Service `default/name` now.
    ///
    /// # Errors
    /// When kubectl fails.
    pub fn ingress(&self, name: &str) -> anyhow::Result<Vec<String>> {
        Ok(ingress_of(&self.get_json(&["svc", name, "-n", "default"])?))
    }

    /// Waits (up to `timeout`) until Service `default/name` holds `count` IPs; them.
    ///
    /// # Errors
    /// When it does not, or a lab process dies.
    pub fn wait_ingress(
        &self,
        name: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        self.poll_until(
            &format!("{name} to get {count} IP(s)"),
            timeout,
            || match self.ingress(name) {
                Ok(ips) if ips.len() == count => Ok(ips),
                other => Err(format!("ingress {other:?}")),
            },
        )
    }

    /// Every LoadBalancer Service in `default`: name → (ingress IPs, resourceVersion).
    ///
    /// # Errors
    /// When kubectl fails.
    pub fn services(&self) -> anyhow::Result<BTreeMap<String, (Vec<String>, String)>> {
        let list = self.get_json(&["svc", "-n", "default"])?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["spec"]["type"] == "LoadBalancer")
            .map(|s| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (
                    text(&s["metadata"]["name"]),
                    (ingress_of(s), text(&s["metadata"]["resourceVersion"])),
                )
            })
            .collect())
    }

    /// Every Event in `default` with this reason about Service `service`.
    ///
    /// # Errors
    /// When kubectl fails.
    pub fn events(&self, reason: &str, service: &str) -> anyhow::Result<Vec<Value>> {
        let list = self.get_json(&["events", "-n", "default"])?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["reason"] == reason
                    && e["involvedObject"]["kind"] == "Service"
                    && e["involvedObject"]["name"] == service
            })
            .cloned()
            .collect())
    }

    /// `(label ferrolb.io/node, status.node)` of every ServiceL2Status of `default/service`.
    ///
    /// # Errors
    /// When kubectl fails.
    pub fn l2_statuses(&self, service: &str) -> anyhow::Result<Vec<(String, String)>> {
        let list = self.get_json(&["servicel2statuses", "-n", SYSTEM_NAMESPACE])?;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                let labels = &o["metadata"]["labels"];
                labels["ferrolb.io/service-name"] == service
                    && labels["ferrolb.io/service-namespace"] == "default"
            })
            .map(|o| {
                (
                    text(&o["metadata"]["labels"]["ferrolb.io/node"]),
                    text(&o["status"]["node"]),
                )
            })
            .collect())
    }

    /// `spec.holderIdentity` of the controllers' Lease.
    ///
    /// # Errors
    /// When kubectl fails.
    pub fn lease_holder(&self) -> anyhow::Result<String> {
        let lease = self.get_json(&["lease", "ferrolb-controller", "-n", SYSTEM_NAMESPACE])?;
        Ok(lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// What the client gets from `http://ip/` (the answering backend's node name), if anything.
    pub fn http_from_client(&self, ip: &str) -> Option<String> {
        let url = if ip.contains(':') {
            format!("http://[{ip}]/")
        } else {
            format!("http://{ip}/")
        };
        let out = in_ns(
            &client_ns(self.prefix()),
            &["curl", "-gsf", "-m", "2", &url],
        )
        .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    }

    /// Waits until the client reaches `ip` and the backend of `node` answers.
    ///
    /// # Errors
    /// When it does not within `timeout`, or a lab process dies.
    pub fn wait_answer_from(&self, ip: &str, node: &str, timeout: Duration) -> anyhow::Result<()> {
        self.poll_until(
            &format!("{node} to answer http://{ip}/"),
            timeout,
            || match self.http_from_client(ip) {
                Some(answer) if answer == node => Ok(()),
                other => Err(format!("the client got {other:?}")),
            },
        )
    }

    /// The `/metrics` page at `addr`, fetched from the bridge namespace.
    ///
    /// # Errors
    /// When it does not answer.
    pub fn metrics(&self, addr: &str) -> Result<Vec<scrape::Sample>, String> {
        scrape::page(&bridge_ns(self.prefix()), addr).map(|p| scrape::parse(&p))
    }

    /// The speakers' views (index 0 is node 1; `None` where the speaker does not answer).
    pub fn speaker_views(&self) -> Vec<Option<SpeakerView>> {
        speaker_views(self.prefix(), self.nodes())
    }

    /// Nodes whose speaker announces `ip`. Fails when a speaker cannot be scraped (its silence
    /// would prove nothing).
    ///
    /// # Errors
    /// Naming the speaker that did not answer.
    pub fn announcing(&self, ip: &str) -> Result<Vec<String>, String> {
        let mut nodes = Vec::new();
        for (view, node) in self.speaker_views().into_iter().zip(1u8..) {
            let view =
                view.ok_or_else(|| format!("{}'s metrics do not answer", node_name(node)))?;
            if view.announced.contains(ip) {
                nodes.push(node_name(node));
            }
        }
        Ok(nodes)
    }

    /// Waits until every speaker sees every speaker alive in gossip.
    ///
    /// # Errors
    /// When that does not happen within `timeout`, or a lab process dies.
    pub fn wait_gossip(&self, timeout: Duration) -> anyhow::Result<()> {
        let all = Some(u64::from(self.nodes()));
        self.poll_until("every speaker to see every speaker", timeout, || {
            let alive: Vec<Option<u64>> = self
                .speaker_views()
                .iter()
                .map(|v| v.as_ref().and_then(|v| v.alive))
                .collect();
            if alive.iter().all(|a| *a == all) {
                Ok(())
            } else {
                Err(format!("alive members per node: {alive:?}"))
            }
        })
    }

    /// Waits until the lab is settled ([`settled`]: every speaker sees all alive, one announcer
    /// per IP) and has stayed the same for `hold`; the owner of each IP.
    ///
    /// # Errors
    /// When that does not happen within `timeout`, or a lab process dies.
    pub fn wait_settled(
        &self,
        ips: &[String],
        hold: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Vec<u8>> {
        let mut since: Option<(Instant, Vec<u8>)> = None;
        self.poll_until("the lab to settle", timeout, || {
            let views = self.speaker_views();
            match (settled(&views, ips), &since) {
                (Some(owners), Some((at, before))) if owners == *before => {
                    if at.elapsed() >= hold {
                        return Ok(owners);
                    }
                }
                (Some(owners), _) => since = Some((Instant::now(), owners)),
                (None, _) => since = None,
            }
            let summary: Vec<String> = views
                .iter()
                .zip(1u8..)
                .map(|(v, i)| match v {
                    Some(v) => format!("node-{i}: alive={:?} announces={:?}", v.alive, v.announced),
                    None => format!("node-{i}: metrics do not answer"),
                })
                .collect();
            Err(summary.join("; "))
        })
    }

    /// Applies the lab pool, an advertisement and Services `web` plus `web-1`..`web-<extra>`,
    /// publishes their backends, and waits until every speaker sees all nodes alive, each
    /// Service IP has one announcer, and the client reaches the first one. The IPs, `web`'s
    /// first.
    ///
    /// # Errors
    /// When any of that does not happen within a minute, or a lab process dies.
    pub fn serve(&self, extra: usize) -> anyhow::Result<Vec<String>> {
        let minute = Duration::from_secs(60);
        let names: Vec<String> = std::iter::once("web".to_owned())
            .chain((1..=extra).map(|i| format!("web-{i}")))
            .collect();
        let [pool, advertisement] = objects::lab_pool();
        self.apply(&[&pool, &advertisement])?;
        for name in &names {
            self.apply(&[
                &svc(name).ipv4_only(),
                &endpoints(name).on_every_node(self.nodes()),
            ])?;
        }
        let mut ips = Vec::new();
        for name in &names {
            ips.extend(self.wait_ingress(name, 1, minute)?);
        }
        self.wait_settled(&ips, Duration::from_millis(500), minute)?;
        let first = ips[0].clone();
        self.poll_until(
            &format!("the client to reach {first}"),
            minute,
            || match self.http_from_client(&first) {
                Some(node) if node.starts_with("node-") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )?;
        Ok(ips)
    }

    /// The MAC address → node name of every node's link.
    ///
    /// # Errors
    /// When a node's link cannot be read.
    pub fn node_macs(&self) -> anyhow::Result<BTreeMap<String, String>> {
        (1..=self.nodes())
            .map(|n| {
                let mac =
                    crate::topology::mac_of(&crate::topology::node_ns(self.prefix(), n), "eth0")?;
                Ok((mac, node_name(n)))
            })
            .collect()
    }
}

/// The speaker metrics address of node `node`.
pub fn speaker_metrics_addr(node: u8) -> String {
    format!("{}:7472", node_ip(node))
}
