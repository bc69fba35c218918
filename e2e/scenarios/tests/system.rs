//! The whole system in the network-namespace lab (`ferrolb_lab::cluster::up`): the real
//! controller and speakers, kubectl against the lab's API server, and HTTP and ARP/NDP between
//! namespaces. Each test brings up its own lab under its own prefix and removes it when it ends,
//! also when it fails. Tests wait for conditions with deadlines; none asserts on a duration.
//!
//! - Service IPs of each family, and a dual-stack Service, are reachable from the client.
//! - Several Services are spread over the nodes as the election says, and ServiceL2Status and
//!   `NodeAssigned` Events name the same nodes.
//! - `externalTrafficPolicy: Local`: the IP follows its endpoint, and is not announced (with a
//!   `NotAnnounced` Warning) while no endpoint serves.
//! - An exhausted pool fails a Service with `AllocationFailed`; a freed address goes to it.
//! - A killed leader is replaced by the standby, a restarted controller takes over cleanly, and
//!   no Service's IP moves or is rewritten.
//! - A foreign writer flipping `spec.loadBalancerIP` between out-of-pool addresses costs at most
//!   one ferrolb write per change, and the out-of-pool IP never reaches the status.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferrolb_lab::cluster::{
    POOL_V4, POOL_V6, controller_pids, down, kubectl, lab_dir, publish_backends, start_controller,
    stop_controller, up,
};
use ferrolb_lab::netns::{Topology, in_ns, privileged};
use ferrolb_speaker::election::owner;
use ipnet::IpNet;
use serde_json::Value;

const NAMESPACE: &str = "ferrolb-system";
/// The lab pool with both families (POOL_V4 and POOL_V6 are routed locally on every node) and
/// an advertisement for every pool.
const LAB_POOL: &str = "lab";
/// How long anything the system does by itself may take on a loaded 2-core machine. Generous:
/// this bounds a wait, it is not what is measured.
const PATIENCE: Duration = Duration::from_secs(60);
/// A crashed leader holds the Lease for 15 s before the standby may take it.
const FAILOVER_PATIENCE: Duration = Duration::from_secs(90);

// ------------------------------------------------------------------------------ the lab

/// A lab of its own for one test; dropping it (also when the test panics) removes every
/// namespace, process and file of it.
struct Lab {
    prefix: String,
    nodes: u8,
    topo: Option<Topology>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.topo.take());
        down(&self.prefix);
    }
}

impl Lab {
    /// Brings a lab with `nodes` nodes up under a prefix made of this process's id and `tag`
    /// (short: interface names are at most 15 bytes). `None` when not root (outside CI).
    fn up(tag: &str, nodes: u8) -> Option<Self> {
        if !privileged() {
            return None;
        }
        let prefix = format!("sy{}{tag}", std::process::id() % 10_000);
        // A crashed earlier run with the same process id may have left it behind.
        down(&prefix);
        let mut lab = Self {
            prefix,
            nodes,
            topo: None,
        };
        lab.topo = Some(up(&lab.prefix, nodes).unwrap());
        Some(lab)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    fn node_names(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("node-{i}")).collect()
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        kubectl(&self.prefix, args, stdin).unwrap()
    }

    fn apply(&self, manifest: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(manifest));
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&full, None)).unwrap()
    }

    /// The lab pool with both families, and an L2Advertisement for every pool.
    fn apply_lab_pool(&self) {
        self.apply(&format!(
            "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {LAB_POOL}, namespace: {NAMESPACE}}}\nspec: {{addresses: [{POOL_V4}, {POOL_V6}]}}\n---\napiVersion: ferrolb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: lab, namespace: {NAMESPACE}}}\nspec: {{}}\n"
        ));
    }

    /// `status.loadBalancer.ingress[].ip` of Service `default/name`, in status order.
    fn ingress(&self, name: &str) -> Vec<String> {
        let svc = self.json(&["get", "svc", name, "-n", "default"]);
        ingress_of(&svc)
    }

    /// Waits until Service `default/name` holds `count` IPs and returns them.
    fn wait_ingress(&self, name: &str, count: usize) -> Vec<String> {
        wait_for(&format!("{name} to get {count} IP(s)"), PATIENCE, || {
            let ips = self.ingress(name);
            if ips.len() == count {
                Ok(ips)
            } else {
                Err(format!("ingress {ips:?}"))
            }
        })
    }

    /// Every Service in `default`: name → (ingress IPs, resourceVersion).
    fn services(&self) -> BTreeMap<String, (Vec<String>, String)> {
        self.json(&["get", "svc", "-n", "default"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["spec"]["type"] == "LoadBalancer")
            .map(|s| {
                (
                    s["metadata"]["name"].as_str().unwrap().to_owned(),
                    (
                        ingress_of(s),
                        s["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                    ),
                )
            })
            .collect()
    }

    /// What the client gets from `http://ip/` (the answering backend's node name), if anything.
    fn http_from_client(&self, ip: &str) -> Option<String> {
        let url = if ip.contains(':') {
            format!("http://[{ip}]/")
        } else {
            format!("http://{ip}/")
        };
        let out = in_ns(
            &format!("{}cl", self.prefix),
            &["curl", "-gs", "-m", "2", &url],
        )
        .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    }

    /// Waits until the client reaches `ip` and the backend of `node` answers.
    fn wait_answer_from(&self, ip: &str, node: &str) {
        wait_for(
            &format!("{node} to answer http://{ip}/"),
            PATIENCE,
            || match self.http_from_client(ip) {
                Some(answer) if answer == node => Ok(()),
                other => Err(format!("the client got {other:?}")),
            },
        );
    }

    /// Forgets the client's neighbour entry for `ip`, so its next packet asks ARP/NDP anew.
    fn forget_neighbour(&self, ip: &str) {
        let _ = in_ns(
            &format!("{}cl", self.prefix),
            &["ip", "neigh", "flush", "to", ip],
        );
    }

    /// `/metrics` of an HTTP endpoint in the lab (fetched from the bridge namespace).
    fn scrape(&self, addr: &str) -> Result<String, String> {
        let url = format!("http://{addr}/metrics");
        in_ns(&self.bridge(), &["curl", "-sS", "-m", "2", &url])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(|e| e.to_string())
    }

    /// The speaker's `/metrics` on node `i` (1-based).
    fn speaker_metrics(&self, i: u8) -> Result<String, String> {
        self.scrape(&format!("192.0.2.{}:7472", 10 + i))
    }

    /// Waits until every speaker sees every speaker alive in gossip, so elections start from
    /// one view.
    fn wait_gossip(&self) {
        let alive = format!(
            "ferrolb_speaker_gossip_members{{state=\"alive\"}} {}",
            self.nodes
        );
        for i in 1..=self.nodes {
            wait_for(&format!("node-{i} to see every speaker"), PATIENCE, || {
                let metrics = self.speaker_metrics(i)?;
                if metrics.lines().any(|l| l.trim() == alive) {
                    Ok(())
                } else {
                    Err(metrics
                        .lines()
                        .filter(|l| l.starts_with("ferrolb_speaker_gossip_members"))
                        .collect::<Vec<_>>()
                        .join("; "))
                }
            });
        }
    }

    /// Nodes whose speaker reports `ferrolb_speaker_announced` 1 for `ip`. Fails when a speaker
    /// cannot be scraped (its silence would prove nothing).
    fn announcing(&self, ip: &str) -> Result<Vec<String>, String> {
        let label = format!("ip=\"{ip}\"");
        let mut nodes = Vec::new();
        for i in 1..=self.nodes {
            let metrics = self.speaker_metrics(i)?;
            if metrics.lines().any(|l| {
                l.starts_with("ferrolb_speaker_announced{")
                    && l.contains(&label)
                    && l.split_whitespace().nth(1) == Some("1")
            }) {
                nodes.push(format!("node-{i}"));
            }
        }
        Ok(nodes)
    }

    /// Every Event in `default` with this reason, about Service `service`.
    fn events(&self, reason: &str, service: &str) -> Vec<Value> {
        self.json(&["get", "events", "-n", "default"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["reason"] == reason
                    && e["involvedObject"]["kind"] == "Service"
                    && e["involvedObject"]["name"] == service
            })
            .cloned()
            .collect()
    }

    /// How many times Events with this reason were reported about `service`: an Event object
    /// stands for `series.count` (or `count`) occurrences when the recorder folded repeats.
    fn occurrences(&self, reason: &str, service: &str) -> u64 {
        self.events(reason, service).iter().map(occurrences).sum()
    }

    /// `(label ferrolb.io/node, status.node)` of every ServiceL2Status of `default/service`.
    fn l2_statuses(&self, service: &str) -> Vec<(String, String)> {
        self.json(&["get", "servicel2statuses", "-n", NAMESPACE])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| {
                let labels = &o["metadata"]["labels"];
                labels["ferrolb.io/service-name"] == service
                    && labels["ferrolb.io/service-namespace"] == "default"
            })
            .map(|o| {
                (
                    o["metadata"]["labels"]["ferrolb.io/node"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    o["status"]["node"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// `spec.holderIdentity` of the controllers' Lease.
    fn lease_holder(&self) -> String {
        self.json(&["get", "lease", "ferrolb-controller", "-n", NAMESPACE])["spec"]
            ["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until a controller's metrics at `addr` say it leads with its caches loaded (or,
    /// with `leading` false, that it runs as a standby).
    fn wait_controller(&self, addr: &str, leading: bool) {
        let what = if leading {
            format!("the controller on {addr} to lead with its caches loaded")
        } else {
            format!("the controller on {addr} to stand by")
        };
        wait_for(&what, PATIENCE, || {
            let metrics = self.scrape(addr)?;
            let leader = metric(&metrics, "ferrolb_controller_is_leader");
            let loaded = metric(&metrics, "ferrolb_controller_config_loaded");
            let ok = if leading {
                leader == Some(1.0) && loaded == Some(1.0)
            } else {
                leader == Some(0.0)
            };
            if ok {
                Ok(())
            } else {
                Err(format!("is_leader {leader:?}, config_loaded {loaded:?}"))
            }
        });
    }
}

// ------------------------------------------------------------------------------ helpers

/// Polls `probe` until it succeeds; after `timeout` fails naming `what` and the last answer.
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn ingress_of(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

/// The value of an unlabelled sample `name` in a Prometheus/OpenMetrics page.
fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(name))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

fn occurrences(event: &Value) -> u64 {
    event["series"]["count"]
        .as_u64()
        .or_else(|| event["count"].as_u64())
        .unwrap_or(1)
}

/// A LoadBalancer Service in `default` serving port 80; `spec` and `annotations` are extra YAML
/// flow-mapping entries (each starting with `, `, or empty).
fn service(name: &str, spec: &str, annotations: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default, annotations: {{lab: system{annotations}}}}}\nspec: {{type: LoadBalancer, selector: {{app: {name}}}, ports: [{{port: 80}}]{spec}}}\n"
    )
}

/// An EndpointSlice for Service `service` with one endpoint per `(node, ready, serving)`, each
/// being that node's backend.
fn endpoint_slice(service: &str, endpoints: &[(u8, bool, bool)]) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(i, ready, serving)| {
            format!(
                r#"{{"addresses":["192.0.2.{}"],"nodeName":"node-{i}","conditions":{{"ready":{ready},"serving":{serving},"terminating":false}}}}"#,
                10 + i
            )
        })
        .collect();
    format!(
        r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"{service}-lab","namespace":"default","labels":{{"kubernetes.io/service-name":"{service}"}}}},"addressType":"IPv4","ports":[{{"port":80,"protocol":"TCP"}}],"endpoints":[{}]}}"#,
        endpoints.join(",")
    )
}

/// The node the election picks for `ip` among `nodes`.
fn expected_owner(ip: &str, nodes: &[String]) -> String {
    owner(ip, nodes.iter().map(String::as_str))
        .unwrap()
        .to_owned()
}

// ------------------------------------------------------------------------------ the tests

#[test]
fn ipv4_ipv6_and_dual_stack_service_ips_are_reachable_from_the_client() {
    let Some(lab) = Lab::up("r", 3) else { return };
    lab.wait_gossip();
    lab.apply_lab_pool();
    lab.apply(
        &[
            service(
                "v4",
                ", ipFamilyPolicy: SingleStack, ipFamilies: [IPv4]",
                "",
            ),
            service(
                "v6",
                ", ipFamilyPolicy: SingleStack, ipFamilies: [IPv6]",
                "",
            ),
            service(
                "dual",
                ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]",
                "",
            ),
        ]
        .concat(),
    );
    for name in ["v4", "v6", "dual"] {
        publish_backends(&lab.prefix, "default", name, lab.nodes).unwrap();
    }
    let v4: IpNet = POOL_V4.parse().unwrap();
    let v6: IpNet = POOL_V6.parse().unwrap();
    let nodes = lab.node_names();

    let v4_ip = lab.wait_ingress("v4", 1).remove(0);
    let v6_ip = lab.wait_ingress("v6", 1).remove(0);
    let dual = lab.wait_ingress("dual", 2);
    let parse = |ip: &str| ip.parse::<IpAddr>().unwrap();
    assert!(v4.contains(&parse(&v4_ip)), "{v4_ip} is from {POOL_V4}");
    assert!(v6.contains(&parse(&v6_ip)), "{v6_ip} is from {POOL_V6}");
    assert!(
        v4.contains(&parse(&dual[0])) && v6.contains(&parse(&dual[1])),
        "the dual-stack Service holds an IPv4 then an IPv6 address from the lab pool: {dual:?}"
    );

    // Real packets: the client resolves each IP over ARP or NDP and the owner's backend answers.
    lab.wait_answer_from(&v4_ip, &expected_owner(&v4_ip, &nodes));
    lab.wait_answer_from(&v6_ip, &expected_owner(&v6_ip, &nodes));
    // Both addresses of a dual-stack Service are announced by the owner of its first one.
    let dual_owner = expected_owner(&dual[0], &nodes);
    lab.wait_answer_from(&dual[0], &dual_owner);
    lab.wait_answer_from(&dual[1], &dual_owner);
    for ip in [&v4_ip, &v6_ip, &dual[0], &dual[1]] {
        let announcing = wait_for(
            &format!("one speaker to announce {ip}"),
            PATIENCE,
            || match lab.announcing(ip)? {
                nodes if nodes.len() == 1 => Ok(nodes),
                nodes => Err(format!("announced by {nodes:?}")),
            },
        );
        assert_eq!(
            Some(announcing[0].as_str()),
            lab.http_from_client(ip).as_deref(),
            "the node announcing {ip} is the one that answers"
        );
    }
}

#[test]
fn services_are_spread_over_the_nodes_as_the_election_says_and_reported_so() {
    const SERVICES: usize = 6;
    let Some(lab) = Lab::up("s", 3) else { return };
    lab.wait_gossip();
    lab.apply_lab_pool();
    let names: Vec<String> = (0..SERVICES).map(|i| format!("web-{i}")).collect();
    lab.apply(&names.iter().map(|n| service(n, "", "")).collect::<String>());
    for name in &names {
        publish_backends(&lab.prefix, "default", name, lab.nodes).unwrap();
    }
    let nodes = lab.node_names();
    let expected: BTreeMap<String, (String, String)> = names
        .iter()
        .map(|name| {
            let ip = lab.wait_ingress(name, 1).remove(0);
            let owner = expected_owner(&ip, &nodes);
            (name.clone(), (ip, owner))
        })
        .collect();
    let owners: std::collections::BTreeSet<&String> = expected.values().map(|(_, o)| o).collect();
    assert!(
        owners.len() > 1,
        "the allocated IPs all hash to one node, so this proves no spreading: {expected:?}"
    );

    for (name, (ip, owner)) in &expected {
        // With externalTrafficPolicy Cluster every node has a backend; the one that answers is
        // on the node the client's ARP request reached: the announcing node.
        lab.wait_answer_from(ip, owner);
        wait_for(
            &format!("the ServiceL2Status of {name} to name {owner} alone"),
            PATIENCE,
            || {
                let statuses = lab.l2_statuses(name);
                if statuses == [(owner.clone(), owner.clone())] {
                    Ok(())
                } else {
                    Err(format!("(label node, status node): {statuses:?}"))
                }
            },
        );
        let quoted = format!("\"{owner}\"");
        wait_for(
            &format!("a NodeAssigned Event on {name} naming {owner}"),
            PATIENCE,
            || {
                let events = lab.events("NodeAssigned", name);
                if events.iter().any(|e| {
                    e["type"] == "Normal" && e["message"].as_str().unwrap_or("").contains(&quoted)
                }) {
                    Ok(())
                } else {
                    Err(format!("{events:?}"))
                }
            },
        );
        assert_eq!(
            lab.announcing(ip).unwrap(),
            std::slice::from_ref(owner),
            "only {owner} announces {ip} ({name})"
        );
    }
}

#[test]
fn a_local_traffic_ip_follows_its_endpoint_and_is_withdrawn_without_one() {
    let Some(lab) = Lab::up("l", 3) else { return };
    lab.wait_gossip();
    lab.apply_lab_pool();
    // The endpoint exists before the Service has an IP, so the speakers never see it
    // without one.
    lab.apply(&endpoint_slice("local", &[(2, true, true)]));
    lab.apply(&service(
        "local",
        ", externalTrafficPolicy: Local, ipFamilyPolicy: SingleStack, ipFamilies: [IPv4]",
        "",
    ));
    let ip = lab.wait_ingress("local", 1).remove(0);

    lab.wait_answer_from(&ip, "node-2");
    assert_eq!(lab.announcing(&ip).unwrap(), ["node-2"]);

    // The pod moves to node-3: the IP follows (the client learns the new MAC from the new
    // owner's gratuitous ARP).
    lab.apply(&endpoint_slice("local", &[(3, true, true)]));
    lab.wait_answer_from(&ip, "node-3");
    wait_for("node-3 alone to announce", PATIENCE, || {
        match lab.announcing(&ip)? {
            nodes if nodes == ["node-3"] => Ok(()),
            nodes => Err(format!("announced by {nodes:?}")),
        }
    });
    wait_for("a NodeAssigned Event naming node-3", PATIENCE, || {
        let events = lab.events("NodeAssigned", "local");
        if events
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("\"node-3\""))
        {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    });

    let not_announced_before = lab.occurrences("NotAnnounced", "local");
    let withdrawn = |why: &str| {
        wait_for(
            &format!("no speaker to announce {ip} ({why})"),
            PATIENCE,
            || match lab.announcing(&ip)? {
                nodes if nodes.is_empty() => Ok(()),
                nodes => Err(format!("announced by {nodes:?}")),
            },
        );
        wait_for(
            &format!("no ServiceL2Status for local ({why})"),
            PATIENCE,
            || {
                let statuses = lab.l2_statuses("local");
                if statuses.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{statuses:?}"))
                }
            },
        );
        // Every node routes the pool locally (the lab's kube-proxy stand-in), so a client
        // still holding the old owner's MAC would get an answer from that node's backend: ask
        // anew, as a client does once its entry expires, and nobody may answer.
        for _ in 0..3 {
            lab.forget_neighbour(&ip);
            let answer = lab.http_from_client(&ip);
            assert!(
                answer.is_none(),
                "{ip} is announced by nobody ({why}), yet the client got {answer:?}"
            );
        }
    };

    // The endpoint stops serving (ready and serving false): nobody announces, and the reporting
    // speaker says why.
    lab.apply(&endpoint_slice("local", &[(3, false, false)]));
    withdrawn("endpoint not serving");
    let note = wait_for(
        "a NotAnnounced Warning saying no endpoint serves",
        PATIENCE,
        || {
            let events = lab.events("NotAnnounced", "local");
            let count: u64 = events.iter().map(occurrences).sum();
            let warning = events.iter().find(|e| e["type"] == "Warning");
            match warning {
                Some(e) if count > not_announced_before => {
                    Ok(e["message"].as_str().unwrap_or("").to_owned())
                }
                _ => Err(format!("{count} occurrence(s): {events:?}")),
            }
        },
    );
    assert!(
        note.contains("no endpoint is serving"),
        "the NotAnnounced note says why: {note}"
    );

    // Serving again on node-2, then no endpoints at all.
    lab.apply(&endpoint_slice("local", &[(2, true, true)]));
    lab.wait_answer_from(&ip, "node-2");
    lab.apply(&endpoint_slice("local", &[]));
    withdrawn("no endpoints");
}

#[test]
fn an_exhausted_pool_fails_the_next_service_until_an_address_is_freed() {
    let Some(lab) = Lab::up("x", 1) else { return };
    // Two addresses, only for Services that name the pool. Allocation only: these addresses
    // are not routed in the lab, and nothing here needs to reach them.
    lab.apply(&format!(
        "apiVersion: ferrolb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: small, namespace: {NAMESPACE}}}\nspec: {{addresses: [203.0.113.10-203.0.113.11], autoAssign: false}}\n"
    ));
    let pinned = ", ferrolb.io/address-pool: small";
    let single = ", ipFamilyPolicy: SingleStack, ipFamilies: [IPv4]";
    lab.apply(&[service("a", single, pinned), service("b", single, pinned)].concat());
    let a = lab.wait_ingress("a", 1).remove(0);
    let b = lab.wait_ingress("b", 1).remove(0);
    let mut held = [a.clone(), b.clone()];
    held.sort();
    assert_eq!(held, ["203.0.113.10", "203.0.113.11"]);

    lab.apply(&service("c", single, pinned));
    let failure = wait_for("an AllocationFailed Event on c", PATIENCE, || {
        let events = lab.events("AllocationFailed", "c");
        events.first().cloned().ok_or_else(|| "none".to_owned())
    });
    assert_eq!(failure["type"], "Warning", "{failure}");
    let note = failure["message"].as_str().unwrap_or_default();
    assert!(
        note.contains("pool \"small\"") && note.contains("no free"),
        "the note names the pool and says it is full: {note}"
    );
    assert!(lab.ingress("c").is_empty(), "c got no IP");

    lab.kubectl(&["delete", "svc", "a", "-n", "default"], None);
    let c = lab.wait_ingress("c", 1).remove(0);
    assert_eq!(c, a, "the address a released goes to c");
    assert_eq!(lab.ingress("b"), [b], "b keeps its IP");
}

#[test]
fn a_killed_leader_is_replaced_and_a_restart_moves_no_ip() {
    const SERVICES: usize = 8;
    let Some(lab) = Lab::up("f", 1) else { return };
    lab.apply_lab_pool();
    start_controller(&lab.prefix, "controller-1", "192.0.2.1:7473").unwrap();
    lab.apply(
        &(0..SERVICES)
            .map(|i| service(&format!("s-{i}"), "", ""))
            .collect::<String>(),
    );
    for i in 0..SERVICES {
        lab.wait_ingress(&format!("s-{i}"), 1);
    }
    wait_for("controller-0 to hold the Lease", PATIENCE, || {
        match lab.lease_holder() {
            h if h == "controller-0" => Ok(()),
            h => Err(h),
        }
    });
    lab.wait_controller("192.0.2.1:7472", true);
    lab.wait_controller("192.0.2.1:7473", false);
    let before = lab.services();
    assert_eq!(before.len(), SERVICES);

    // Every Service keeps its IPs and is not written at all (same resourceVersion), checked
    // repeatedly for a while after the new leader has loaded its caches.
    let unchanged = |when: &str| {
        for _ in 0..20 {
            assert_eq!(
                lab.services(),
                before,
                "{when}: every Service keeps its IPs and is not rewritten"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };

    // The leader crashes: it cannot release the Lease, the standby takes it once it expires.
    stop_controller(&lab.prefix, "controller-0", "KILL").unwrap();
    wait_for(
        "controller-1 to take the Lease",
        FAILOVER_PATIENCE,
        || match lab.lease_holder() {
            h if h == "controller-1" => Ok(()),
            h => Err(h),
        },
    );
    lab.wait_controller("192.0.2.1:7473", true);
    unchanged("after the leader was killed");

    // The crashed replica comes back as a standby; then the leader is restarted (SIGTERM: it
    // releases the Lease) and the other one takes over.
    start_controller(&lab.prefix, "controller-0", "192.0.2.1:7474").unwrap();
    lab.wait_controller("192.0.2.1:7474", false);
    stop_controller(&lab.prefix, "controller-1", "TERM").unwrap();
    wait_for(
        "controller-0 to take the Lease",
        FAILOVER_PATIENCE,
        || match lab.lease_holder() {
            h if h == "controller-0" => Ok(()),
            h => Err(h),
        },
    );
    lab.wait_controller("192.0.2.1:7474", true);
    start_controller(&lab.prefix, "controller-1", "192.0.2.1:7473").unwrap();
    lab.wait_controller("192.0.2.1:7473", false);
    unchanged("after the leader was restarted");
    assert_eq!(controller_pids(&lab.prefix, "controller-0").len(), 1);

    for name in before.keys() {
        for reason in ["IPReassigned", "ClearAssignment"] {
            let events = lab.events(reason, name);
            assert!(events.is_empty(), "{name} got {reason}: {events:?}");
        }
    }
    // The leader restored every assignment before allocating: a new Service gets a new IP.
    lab.apply(&service("late", "", ""));
    let late = lab.wait_ingress("late", 1).remove(0);
    assert!(
        before.values().all(|(ips, _)| !ips.contains(&late)),
        "the new Service's {late} is not one a Service holds: {before:?}"
    );
}

#[test]
fn a_foreign_writer_flipping_an_out_of_pool_ip_costs_at_most_one_write_per_change() {
    const CHANGES: usize = 10;
    const OUT_OF_POOL: [&str; 2] = ["203.0.113.50", "203.0.113.51"];
    const CONTROLLER: &str = "192.0.2.1:7472";
    let Some(lab) = Lab::up("w", 1) else { return };
    lab.apply_lab_pool();
    let web = |requested: Option<&str>| {
        let spec = requested.map_or(String::new(), |ip| format!(", loadBalancerIP: {ip}"));
        service(
            "web",
            &format!(", ipFamilyPolicy: SingleStack, ipFamilies: [IPv4]{spec}"),
            "",
        )
    };
    lab.apply(&web(None));
    let first = lab.wait_ingress("web", 1).remove(0);
    lab.wait_controller(CONTROLLER, true);
    let counter = |name: &str| -> u64 {
        let page = lab.scrape(CONTROLLER).unwrap();
        metric(&page, name).unwrap_or_else(|| panic!("{name} in\n{page}")) as u64
    };
    // Quiet first: the allocation's writes (Service and pool status) are done.
    let settled = || {
        let mut last = counter("ferrolb_k8s_client_updates_total");
        wait_for("the controller to stop writing", PATIENCE, || {
            std::thread::sleep(Duration::from_secs(2));
            let now = counter("ferrolb_k8s_client_updates_total");
            if now == last {
                Ok(now)
            } else {
                let seen = format!("{last} then {now} writes");
                last = now;
                Err(seen)
            }
        })
    };
    let writes_before = settled();
    let failures_before = counter("ferrolb_controller_allocation_failures_total");

    // Every version of the Service the API server publishes, to check that no status ever
    // carried an out-of-pool IP (not only the ones a poll happens to see).
    let kubeconfig = lab_dir(&lab.prefix).join("kubeconfig");
    let watch_log = lab_dir(&lab.prefix).join("web-versions.json");
    let mut watch = Command::new("ip")
        .args(["netns", "exec", &lab.bridge(), "kubectl", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["get", "svc", "web", "-n", "default", "-w", "-o", "json"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&watch_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    for change in 0..CHANGES {
        let requested = OUT_OF_POOL[change % 2];
        lab.apply(&web(Some(requested)));
        // Each change is a new reason to fail, counted once when the controller handles it.
        wait_for(
            &format!(
                "the controller to reject {requested} (change {})",
                change + 1
            ),
            PATIENCE,
            || {
                let failures = counter("ferrolb_controller_allocation_failures_total");
                if failures == failures_before + change as u64 + 1 {
                    Ok(())
                } else {
                    Err(format!("{} failures", failures - failures_before))
                }
            },
        );
        let ips = lab.ingress("web");
        assert!(
            ips.is_empty(),
            "change {}: no IP while {requested} is requested: {ips:?}",
            change + 1
        );
    }
    let writes = settled() - writes_before;
    eprintln!("{writes} controller writes for {CHANGES} foreign changes");
    let _ = watch.kill();
    let _ = watch.wait();

    assert!(
        writes <= CHANGES as u64,
        "{writes} controller writes for {CHANGES} changes"
    );
    assert!(
        writes >= 1,
        "the first change cleared {first} from the status"
    );
    let failures = counter("ferrolb_controller_allocation_failures_total") - failures_before;
    assert_eq!(failures, CHANGES as u64, "each change failed once");

    let pool: IpNet = POOL_V4.parse().unwrap();
    let text = std::fs::read_to_string(&watch_log).unwrap();
    let versions: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    let requested: Vec<&str> = versions
        .iter()
        .filter_map(|v| v["spec"]["loadBalancerIP"].as_str())
        .collect();
    assert!(
        requested.len() >= CHANGES,
        "the watch saw every change: {requested:?}"
    );
    for version in &versions {
        for ip in ingress_of(version) {
            assert!(
                pool.contains(&ip.parse::<IpAddr>().unwrap()),
                "status carried {ip}, outside the pool, at resourceVersion {}",
                version["metadata"]["resourceVersion"]
            );
        }
    }

    // The user sees why: a Warning naming the address the Service asks for now.
    let current = OUT_OF_POOL[(CHANGES - 1) % 2];
    let events = wait_for("AllocationFailed Events for every change", PATIENCE, || {
        let events = lab.events("AllocationFailed", "web");
        let count: u64 = events.iter().map(occurrences).sum();
        if count >= CHANGES as u64 {
            Ok(events)
        } else {
            Err(format!("{count} occurrence(s): {events:?}"))
        }
    });
    assert!(events.iter().all(|e| e["type"] == "Warning"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains(&format!(
                "requested IP {current} is not in any address pool"
            ))),
        "an AllocationFailed Event names the IP now requested ({current}): {:?}",
        events
            .iter()
            .map(|e| (&e["message"], occurrences(e)))
            .collect::<Vec<_>>()
    );
}
