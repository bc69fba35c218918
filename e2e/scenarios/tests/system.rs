//! The whole system in the network-namespace lab (`ferrolb_lab::cluster::up`): the real
//! controller and speakers, kubectl against the lab's API server, and HTTP and ARP/NDP between
//! namespaces. Each test brings up its own lab under its own prefix; the lab guard removes it
//! when the test ends, also when it fails, and fails the test when a lab process dies
//! unasked. Tests wait for conditions with deadlines; none asserts on a duration.
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
use std::process::Stdio;
use std::time::Duration;

use ferrolb_lab::Lab;
use ferrolb_lab::cluster::{CONTROLLER_METRICS, prefix};
use ferrolb_lab::faults::forget_neighbour;
use ferrolb_lab::objects::{Object, POOL_V4, POOL_V6, endpoints, lab_pool, pool, svc};
use ferrolb_lab::observe::{ingress_of, occurrences};
use ferrolb_lab::process::Signal;
use ferrolb_lab::scrape;
use ferrolb_lab::topology::{bridge_ns, command_in};
use ferrolb_speaker::election::owner;
use ipnet::IpNet;
use serde_json::Value;

/// How long anything the system does by itself may take on a loaded 2-core machine. Generous:
/// this bounds a wait, it is not what is measured.
const PATIENCE: Duration = Duration::from_secs(60);
/// A crashed leader holds the Lease for 15 s before the standby may take it.
const FAILOVER_PATIENCE: Duration = Duration::from_secs(90);

/// A lab of `nodes` nodes of its own for one test.
fn lab(tag: &str, nodes: u8) -> Lab {
    Lab::up(&prefix(&format!("sy{tag}")), nodes).unwrap()
}

/// The lab pool (both families) and an advertisement for it.
fn apply_lab_pool(lab: &Lab) {
    let [pool, advertisement] = lab_pool();
    lab.apply(&[&pool, &advertisement]).unwrap();
}

fn apply(lab: &Lab, objects: &[&dyn Object]) {
    lab.apply(objects).unwrap();
}

/// How many times Events with this reason were reported about `service`.
fn occurrences_of(lab: &Lab, reason: &str, service: &str) -> u64 {
    lab.events(reason, service)
        .unwrap()
        .iter()
        .map(occurrences)
        .sum()
}

/// The value of an unlabelled sample `name` on the `/metrics` page at `addr`.
fn metric(lab: &Lab, addr: &str, name: &str) -> Result<Option<f64>, String> {
    Ok(scrape::value(&lab.metrics(addr)?, name, &[]))
}

/// Waits until a controller's metrics at `addr` say it leads with its caches loaded (or,
/// with `leading` false, that it runs as a standby).
fn wait_controller(lab: &Lab, addr: &str, leading: bool) {
    let role = if leading {
        "lead with its caches loaded"
    } else {
        "stand by"
    };
    lab.eventually(
        &format!("the controller on {addr} to {role}"),
        PATIENCE,
        || {
            let leader = metric(lab, addr, "ferrolb_controller_is_leader")?;
            let loaded = metric(lab, addr, "ferrolb_controller_config_loaded")?;
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
        },
    );
}

/// Waits until the controllers' Lease names `identity`.
fn wait_lease_holder(lab: &Lab, identity: &str) {
    lab.eventually(
        &format!("{identity} to hold the Lease"),
        FAILOVER_PATIENCE,
        || match lab.lease_holder().map_err(|e| e.to_string())? {
            h if h == identity => Ok(()),
            h => Err(h),
        },
    );
}

/// The node the election picks for `ip` among `nodes`.
fn expected_owner(ip: &str, nodes: &[String]) -> String {
    owner(ip, nodes.iter().map(String::as_str))
        .unwrap()
        .to_owned()
}

// ------------------------------------------------------------------------------ the tests

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn ipv4_ipv6_and_dual_stack_service_ips_are_reachable_from_the_client() {
    let lab = lab("r", 3);
    lab.wait_gossip(PATIENCE).unwrap();
    apply_lab_pool(&lab);
    apply(
        &lab,
        &[
            &svc("v4").ipv4_only(),
            &svc("v6").ipv6_only(),
            &svc("dual").dual_stack(),
        ],
    );
    for name in ["v4", "v6", "dual"] {
        apply(&lab, &[&endpoints(name).on_every_node(lab.nodes())]);
    }
    let v4: IpNet = POOL_V4.parse().unwrap();
    let v6: IpNet = POOL_V6.parse().unwrap();
    let nodes = lab.node_names();

    let v4_ip = lab.wait_ingress("v4", 1, PATIENCE).unwrap().remove(0);
    let v6_ip = lab.wait_ingress("v6", 1, PATIENCE).unwrap().remove(0);
    let dual = lab.wait_ingress("dual", 2, PATIENCE).unwrap();
    let parse = |ip: &str| ip.parse::<IpAddr>().unwrap();
    assert!(v4.contains(&parse(&v4_ip)), "{v4_ip} is from {POOL_V4}");
    assert!(v6.contains(&parse(&v6_ip)), "{v6_ip} is from {POOL_V6}");
    assert!(
        v4.contains(&parse(&dual[0])) && v6.contains(&parse(&dual[1])),
        "the dual-stack Service holds an IPv4 then an IPv6 address from the lab pool: {dual:?}"
    );

    // Real packets: the client resolves each IP over ARP or NDP and the owner's backend answers.
    lab.wait_answer_from(&v4_ip, &expected_owner(&v4_ip, &nodes), PATIENCE)
        .unwrap();
    lab.wait_answer_from(&v6_ip, &expected_owner(&v6_ip, &nodes), PATIENCE)
        .unwrap();
    // Ownership is per IP: each address of a dual-stack Service is announced by its own owner
    // (so its IPv6 address agrees with any IPv6-only Service sharing it).
    for ip in &dual {
        lab.wait_answer_from(ip, &expected_owner(ip, &nodes), PATIENCE)
            .unwrap();
    }
    for ip in [&v4_ip, &v6_ip, &dual[0], &dual[1]] {
        let announcing =
            lab.eventually(
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
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn services_are_spread_over_the_nodes_as_the_election_says_and_reported_so() {
    const SERVICES: usize = 6;
    let lab = lab("s", 3);
    lab.wait_gossip(PATIENCE).unwrap();
    apply_lab_pool(&lab);
    let names: Vec<String> = (0..SERVICES).map(|i| format!("web-{i}")).collect();
    for name in &names {
        apply(
            &lab,
            &[&svc(name), &endpoints(name).on_every_node(lab.nodes())],
        );
    }
    let nodes = lab.node_names();
    let expected: BTreeMap<String, (String, String)> = names
        .iter()
        .map(|name| {
            let ip = lab.wait_ingress(name, 1, PATIENCE).unwrap().remove(0);
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
        lab.wait_answer_from(ip, owner, PATIENCE).unwrap();
        lab.eventually(
            &format!("the ServiceL2Status of {name} to name {owner} alone"),
            PATIENCE,
            || {
                let statuses = lab.l2_statuses(name).unwrap();
                if statuses == [(owner.clone(), owner.clone())] {
                    Ok(())
                } else {
                    Err(format!("(label node, status node): {statuses:?}"))
                }
            },
        );
        let quoted = format!("\"{owner}\"");
        lab.eventually(
            &format!("a NodeAssigned Event on {name} naming {owner}"),
            PATIENCE,
            || {
                let events = lab.events("NodeAssigned", name).unwrap();
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
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_local_traffic_ip_follows_its_endpoint_and_is_withdrawn_without_one() {
    let lab = lab("l", 3);
    lab.wait_gossip(PATIENCE).unwrap();
    apply_lab_pool(&lab);
    // The endpoint exists before the Service has an IP, so the speakers never see it
    // without one.
    apply(&lab, &[&endpoints("local").on(2, true, true)]);
    apply(&lab, &[&svc("local").local().ipv4_only()]);
    let ip = lab.wait_ingress("local", 1, PATIENCE).unwrap().remove(0);

    lab.wait_answer_from(&ip, "node-2", PATIENCE).unwrap();
    assert_eq!(lab.announcing(&ip).unwrap(), ["node-2"]);

    // The pod moves to node-3: the IP follows (the client learns the new MAC from the new
    // owner's gratuitous ARP).
    apply(&lab, &[&endpoints("local").on(3, true, true)]);
    lab.wait_answer_from(&ip, "node-3", PATIENCE).unwrap();
    lab.eventually("node-3 alone to announce", PATIENCE, || {
        match lab.announcing(&ip)? {
            nodes if nodes == ["node-3"] => Ok(()),
            nodes => Err(format!("announced by {nodes:?}")),
        }
    });
    lab.eventually("a NodeAssigned Event naming node-3", PATIENCE, || {
        let events = lab.events("NodeAssigned", "local").unwrap();
        if events
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("\"node-3\""))
        {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    });

    let not_announced_before = occurrences_of(&lab, "NotAnnounced", "local");
    let withdrawn = |why: &str| {
        lab.eventually(
            &format!("no speaker to announce {ip} ({why})"),
            PATIENCE,
            || match lab.announcing(&ip)? {
                nodes if nodes.is_empty() => Ok(()),
                nodes => Err(format!("announced by {nodes:?}")),
            },
        );
        lab.eventually(
            &format!("no ServiceL2Status for local ({why})"),
            PATIENCE,
            || {
                let statuses = lab.l2_statuses("local").unwrap();
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
            forget_neighbour(lab.prefix(), &ip).unwrap();
            let answer = lab.http_from_client(&ip);
            assert!(
                answer.is_none(),
                "{ip} is announced by nobody ({why}), yet the client got {answer:?}"
            );
        }
    };

    // The endpoint stops serving (ready and serving false): nobody announces, and the reporting
    // speaker says why.
    apply(&lab, &[&endpoints("local").on(3, false, false)]);
    withdrawn("endpoint not serving");
    let note = lab.eventually(
        "a NotAnnounced Warning saying no endpoint serves",
        PATIENCE,
        || {
            let events = lab.events("NotAnnounced", "local").unwrap();
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
    apply(&lab, &[&endpoints("local").on(2, true, true)]);
    lab.wait_answer_from(&ip, "node-2", PATIENCE).unwrap();
    apply(&lab, &[&endpoints("local")]);
    withdrawn("no endpoints");
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn an_exhausted_pool_fails_the_next_service_until_an_address_is_freed() {
    let lab = lab("x", 1);
    // Two addresses, only for Services that name the pool. Allocation only: these addresses
    // are not routed in the lab, and nothing here needs to reach them.
    apply(
        &lab,
        &[&pool("small")
            .addresses(&["203.0.113.10-203.0.113.11"])
            .on_request_only()],
    );
    let pinned = |name: &str| svc(name).ipv4_only().from_pool("small");
    apply(&lab, &[&pinned("a"), &pinned("b")]);
    let a = lab.wait_ingress("a", 1, PATIENCE).unwrap().remove(0);
    let b = lab.wait_ingress("b", 1, PATIENCE).unwrap().remove(0);
    let mut held = [a.clone(), b.clone()];
    held.sort();
    assert_eq!(held, ["203.0.113.10", "203.0.113.11"]);

    apply(&lab, &[&pinned("c")]);
    let failure = lab.eventually("an AllocationFailed Event on c", PATIENCE, || {
        let events = lab.events("AllocationFailed", "c").unwrap();
        events.first().cloned().ok_or_else(|| "none".to_owned())
    });
    assert_eq!(failure["type"], "Warning", "{failure}");
    let note = failure["message"].as_str().unwrap_or_default();
    assert!(
        note.contains("pool \"small\"") && note.contains("no free"),
        "the note names the pool and says it is full: {note}"
    );
    assert!(lab.ingress("c").unwrap().is_empty(), "c got no IP");

    lab.kubectl_run(&["delete", "svc", "a", "-n", "default"], None)
        .unwrap();
    let c = lab.wait_ingress("c", 1, PATIENCE).unwrap().remove(0);
    assert_eq!(c, a, "the address a released goes to c");
    assert_eq!(lab.ingress("b").unwrap(), [b], "b keeps its IP");
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_killed_leader_is_replaced_and_a_restart_moves_no_ip() {
    const SERVICES: usize = 8;
    let lab = lab("f", 1);
    apply_lab_pool(&lab);
    lab.start_controller("controller-1", "192.0.2.1:7473")
        .unwrap();
    let services: Vec<_> = (0..SERVICES).map(|i| svc(&format!("s-{i}"))).collect();
    let objects: Vec<&dyn Object> = services.iter().map(|s| s as &dyn Object).collect();
    apply(&lab, &objects);
    for i in 0..SERVICES {
        lab.wait_ingress(&format!("s-{i}"), 1, PATIENCE).unwrap();
    }
    wait_lease_holder(&lab, "controller-0");
    wait_controller(&lab, "192.0.2.1:7472", true);
    wait_controller(&lab, "192.0.2.1:7473", false);
    let before = lab.services().unwrap();
    assert_eq!(before.len(), SERVICES);

    // Every Service keeps its IPs and is not written at all (same resourceVersion), checked
    // repeatedly for a while after the new leader has loaded its caches.
    let unchanged = |when: &str| {
        for _ in 0..20 {
            assert_eq!(
                lab.services().unwrap(),
                before,
                "{when}: every Service keeps its IPs and is not rewritten"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };

    // The leader crashes: it cannot release the Lease, the standby takes it once it expires.
    let ten = Duration::from_secs(10);
    let procs = lab.processes();
    procs.stop("controller-0", Signal::Kill, ten).unwrap();
    wait_lease_holder(&lab, "controller-1");
    wait_controller(&lab, "192.0.2.1:7473", true);
    unchanged("after the leader was killed");

    // The crashed replica comes back as a standby; then the leader is restarted (SIGTERM: it
    // releases the Lease) and the other one takes over.
    lab.start_controller("controller-0", "192.0.2.1:7474")
        .unwrap();
    wait_controller(&lab, "192.0.2.1:7474", false);
    procs.stop("controller-1", Signal::Term, ten).unwrap();
    wait_lease_holder(&lab, "controller-0");
    wait_controller(&lab, "192.0.2.1:7474", true);
    lab.start_controller("controller-1", "192.0.2.1:7473")
        .unwrap();
    wait_controller(&lab, "192.0.2.1:7473", false);
    unchanged("after the leader was restarted");
    assert!(procs.is_running("controller-0") && procs.is_running("controller-1"));

    for name in before.keys() {
        for reason in ["IPReassigned", "ClearAssignment"] {
            let events = lab.events(reason, name).unwrap();
            assert!(events.is_empty(), "{name} got {reason}: {events:?}");
        }
    }
    // The leader restored every assignment before allocating: a new Service gets a new IP.
    apply(&lab, &[&svc("late")]);
    let late = lab.wait_ingress("late", 1, PATIENCE).unwrap().remove(0);
    assert!(
        before.values().all(|(ips, _)| !ips.contains(&late)),
        "the new Service's {late} is not one a Service holds: {before:?}"
    );
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_foreign_writer_flipping_an_out_of_pool_ip_costs_at_most_one_write_per_change() {
    const CHANGES: usize = 10;
    const OUT_OF_POOL: [&str; 2] = ["203.0.113.50", "203.0.113.51"];
    const CONTROLLER: &str = CONTROLLER_METRICS;
    let lab = lab("w", 1);
    apply_lab_pool(&lab);
    apply(&lab, &[&svc("web").ipv4_only()]);
    let first = lab.wait_ingress("web", 1, PATIENCE).unwrap().remove(0);
    wait_controller(&lab, CONTROLLER, true);
    let counter = |name: &str| -> u64 {
        let value = metric(&lab, CONTROLLER, name).unwrap();
        value.unwrap_or_else(|| panic!("no {name} on {CONTROLLER}")) as u64
    };
    // Quiet first: the allocation's writes (Service and pool status) are done.
    let settled = || {
        let mut last = counter("ferrolb_k8s_client_updates_total");
        lab.eventually("the controller to stop writing", PATIENCE, || {
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
    let watch_log = lab.dir().join("web-versions.json");
    let mut watch = command_in(&bridge_ns(lab.prefix()), "kubectl")
        .arg("--kubeconfig")
        .arg(lab.kubeconfig())
        .args(["get", "svc", "web", "-n", "default", "-w", "-o", "json"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&watch_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    for change in 0..CHANGES {
        let requested = OUT_OF_POOL[change % 2];
        apply(&lab, &[&svc("web").ipv4_only().requesting(requested)]);
        // Each change is a new reason to fail, counted once when the controller handles it.
        lab.eventually(
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
        let ips = lab.ingress("web").unwrap();
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

    no_version_carried_an_ip_outside_the_pool(&watch_log, CHANGES);
    // The user sees why: a Warning naming the address the Service asks for now.
    allocation_failures_name_the_requested_ip(&lab, OUT_OF_POOL[(CHANGES - 1) % 2], CHANGES);
}

/// Every version of the Service the watch wrote to `log` (at least `changes` of them) had its
/// ingress IPs inside the lab pool.
fn no_version_carried_an_ip_outside_the_pool(log: &std::path::Path, changes: usize) {
    let pool: IpNet = POOL_V4.parse().unwrap();
    let text = std::fs::read_to_string(log).unwrap();
    let versions: Vec<Value> = serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    let requested: Vec<&str> = versions
        .iter()
        .filter_map(|v| v["spec"]["loadBalancerIP"].as_str())
        .collect();
    assert!(
        requested.len() >= changes,
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
}

/// AllocationFailed Warnings were published for each of `changes` changes, one naming `current`.
fn allocation_failures_name_the_requested_ip(lab: &Lab, current: &str, changes: usize) {
    let events = lab.eventually("AllocationFailed Events for every change", PATIENCE, || {
        let events = lab.events("AllocationFailed", "web").unwrap();
        let count: u64 = events.iter().map(occurrences).sum();
        if count >= changes as u64 {
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
