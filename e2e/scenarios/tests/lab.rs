//! Lab smoke test: `Lab::up` with 3 nodes registers Nodes as a kubelet would, a Service gets an
//! IP, the client reaches it over ARP (the answer names the node that announces it), a lab
//! process that dies is reported by name, and dropping the lab leaves no namespace, process or
//! file behind.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ferrolb_lab::Lab;
use ferrolb_lab::cluster::{lab_dir, prefix};
use ferrolb_lab::objects::{endpoints, lab_pool, svc};
use ferrolb_lab::process::running;
use ferrolb_lab::topology::existing;

const PATIENCE: Duration = Duration::from_secs(60);

/// Every process running inside the lab's namespaces.
fn processes_of(prefix: &str) -> Vec<u32> {
    existing(prefix)
        .iter()
        .flat_map(|ns| {
            let out = ferrolb_lab::topology::run("ip", &["netns", "pids", ns]).unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn up_serves_a_service_ip_to_the_client_from_the_announcing_node_and_drop_leaves_nothing() {
    let prefix = prefix("fs");
    let pids = {
        let lab = Lab::up(&prefix, 3).unwrap();
        let [pool, advertisement] = lab_pool();
        lab.apply(&[
            &pool,
            &advertisement,
            &svc("web").ipv4_only(),
            &endpoints("web").on_every_node(3),
        ])
        .unwrap();
        let ip = lab.wait_ingress("web", 1, PATIENCE).unwrap().remove(0);
        let answer = lab.eventually(&format!("the client to reach {ip}"), PATIENCE, || {
            lab.http_from_client(&ip)
                .ok_or_else(|| "no answer".to_owned())
        });
        assert!(
            answer.starts_with("node-"),
            "the backend answered: {answer}"
        );
        lab.wait_gossip(PATIENCE).unwrap();
        // Exactly one speaker announces the IP: the one whose backend answered.
        lab.eventually(
            &format!("{answer} alone to announce {ip}"),
            PATIENCE,
            || match lab.announcing(&ip)? {
                nodes if nodes == [answer.clone()] => Ok(()),
                nodes => Err(format!("announced by {nodes:?}")),
            },
        );
        let pids = processes_of(&prefix);
        assert!(
            pids.len() >= 8,
            "apiserver, controller, 3 speakers and 3 backends run: {pids:?}"
        );
        pids
    };
    assert!(
        existing(&prefix).is_empty(),
        "namespaces left: {:?}",
        existing(&prefix)
    );
    let alive: Vec<&u32> = pids.iter().filter(|p| running(**p)).collect();
    assert!(alive.is_empty(), "processes left: {alive:?}");
    assert!(
        !lab_dir(&prefix).exists(),
        "files left in {}",
        lab_dir(&prefix).display()
    );
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn nodes_carry_the_labels_addresses_and_ready_condition_a_kubelet_writes() {
    let lab = Lab::up(&prefix("fk"), 2).unwrap();
    for node in 1..=2u8 {
        let name = format!("node-{node}");
        let object = lab.get_json(&["node", &name]).unwrap();
        let labels = &object["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], name.as_str(), "{object}");
        assert_eq!(labels["kubernetes.io/os"], "linux", "{object}");
        assert!(labels["kubernetes.io/arch"].is_string(), "{object}");
        let addresses = &object["status"]["addresses"];
        let has = |kind: &str, address: &str| {
            addresses
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["type"] == kind && a["address"] == address)
        };
        assert!(
            has("InternalIP", &format!("192.0.2.{}", 10 + node)),
            "{object}"
        );
        assert!(has("Hostname", &name), "{object}");
        let ready = object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready");
        assert_eq!(
            ready.map(|c| &c["status"]),
            Some(&"True".into()),
            "{object}"
        );
    }
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_lab_process_that_dies_is_reported_by_name_with_its_log() {
    let lab = Lab::up(&prefix("fd"), 1).unwrap();
    let pid = lab.processes().pid("backend-node-1").unwrap();
    // Killed behind the supervisor's back, as a crash would be.
    ferrolb_lab::topology::run("kill", &["-KILL", &pid.to_string()]).unwrap();
    let err = lab
        .poll_until("nothing", PATIENCE, || Err::<(), _>("waiting".to_owned()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("backend-node-1 died"), "{err}");
    // The guard fails the run too; the test expects that panic.
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(lab)));
    let message = dropped.expect_err("dropping a lab with a dead process fails");
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("backend-node-1"), "{text}");
}
