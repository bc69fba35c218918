//! The lab's state seen without Prometheus (API server, ARP/NDP from the client, L2 statuses),
//! what Prometheus stores, and promtool's view of each page.

use super::*;

// ---------------------------------------------------------------- the lab's state

/// Service IPs the API server holds from the lab pool: IP → `namespace/name`.
pub(crate) fn assigned_ips(lab: &Monitored) -> BTreeMap<IpAddr, String> {
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
pub(crate) fn answering_node(
    lab: &Monitored,
    macs: &BTreeMap<String, String>,
    ip: IpAddr,
) -> Option<String> {
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
pub(crate) fn l2_statuses(lab: &Monitored) -> BTreeSet<(String, String)> {
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
pub(crate) struct Announced {
    pub(crate) service: String,
    pub(crate) ip: String,
    pub(crate) protocol: String,
    pub(crate) node: String,
    /// The `pod` target label: which speaker Prometheus scraped it from.
    pub(crate) scraped_from: String,
}

/// What Prometheus stores for one monitor kind, or what it should store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    /// `ferrolb_allocator_addresses_in_use_total{pool="lab"}` per controller target.
    pub(crate) in_use: Vec<f64>,
    pub(crate) announced: BTreeSet<Announced>,
}

/// The lab's state, seen without Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Truth {
    pub(crate) assigned: BTreeMap<IpAddr, String>,
    /// IP → node answering ARP/NDP for it (`None`: no answer).
    pub(crate) answering: BTreeMap<IpAddr, Option<String>>,
    pub(crate) l2_statuses: BTreeSet<(String, String)>,
}

impl Truth {
    pub(crate) fn observe(lab: &Monitored, macs: &BTreeMap<String, String>) -> Self {
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
    pub(crate) fn expected(&self) -> Stored {
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
    pub(crate) fn expected_l2_statuses(&self) -> BTreeSet<(String, String)> {
        self.expected()
            .announced
            .into_iter()
            .map(|a| (a.service, a.node))
            .collect()
    }
}

/// What Prometheus stores for the jobs of one monitor kind (`jobs`: controller and speaker).
pub(crate) fn stored(lab: &Monitored, jobs: &[&Job]) -> Result<Stored, String> {
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
pub(crate) fn promtool_findings(lab: &Monitored, addr: &str) -> (Vec<String>, Vec<String>) {
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
