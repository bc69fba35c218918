//! Lab smoke test: `up` with 3 nodes, a Service gets an IP, the client reaches it over ARP (and
//! the answer names a node), then `down` leaves no namespace and no process behind.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use ferrolb_lab::cluster::{DEMO_OBJECTS, down, kubectl, lab_dir, up};
use ferrolb_lab::netns::{existing, in_ns, privileged};

/// Every process running inside the lab's namespaces.
fn processes_of(prefix: &str) -> Vec<String> {
    existing(prefix)
        .iter()
        .flat_map(|ns| {
            let out = Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn up_serves_a_service_ip_to_the_client_and_down_leaves_nothing() {
    if !privileged() {
        return;
    }
    let prefix = format!("fs{}", std::process::id() % 10_000);
    let topo = up(&prefix, 3).unwrap();
    let result = std::panic::catch_unwind(|| {
        kubectl(&prefix, &["apply", "-f", "-"], Some(DEMO_OBJECTS)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let ip = loop {
            let ip = kubectl(
                &prefix,
                &[
                    "get",
                    "svc",
                    "web",
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ],
                None,
            )
            .unwrap();
            if !ip.is_empty() {
                break ip;
            }
            assert!(Instant::now() < deadline, "the Service never got an IP");
            std::thread::sleep(Duration::from_millis(200));
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            if let Ok(out) = in_ns(
                &format!("{prefix}cl"),
                &["curl", "-s", "-m", "1", &format!("http://{ip}/")],
            ) {
                let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if !text.is_empty() {
                    break text;
                }
            }
            assert!(Instant::now() < deadline, "the client never reached {ip}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            answer.starts_with("node-"),
            "the backend answered: {answer}"
        );
        // Every speaker sees all three alive, and exactly one announces the IP: the one that
        // answered.
        let mut announcing = Vec::new();
        for i in 1..=3u8 {
            let ns = format!("{prefix}n{i}");
            let url = format!("http://192.0.2.{}:7472/metrics", 10 + i);
            let scrape = || {
                String::from_utf8_lossy(
                    &in_ns(&ns, &["curl", "-s", "-m", "2", &url]).unwrap().stdout,
                )
                .into_owned()
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut metrics = scrape();
            while !metrics.contains("ferrolb_speaker_gossip_members{state=\"alive\"} 3") {
                assert!(Instant::now() < deadline, "node-{i} membership:\n{metrics}");
                std::thread::sleep(Duration::from_millis(100));
                metrics = scrape();
            }
            let ip_label = format!("ip=\"{ip}\"");
            if metrics
                .lines()
                .any(|l| l.starts_with("ferrolb_speaker_announced{") && l.contains(&ip_label))
            {
                announcing.push(format!("node-{i}"));
            }
        }
        assert_eq!(
            announcing,
            std::slice::from_ref(&answer),
            "exactly the answering node announces {ip}"
        );
    });
    let pids = processes_of(&prefix);
    assert!(
        pids.len() >= 8,
        "apiserver, controller, 3 speakers and 3 backends run: {pids:?}"
    );
    drop(topo);
    down(&prefix);
    assert!(
        existing(&prefix).is_empty(),
        "namespaces left: {:?}",
        existing(&prefix)
    );
    std::thread::sleep(Duration::from_millis(300));
    // A killed child of this test stays a zombie until reaped; it no longer runs.
    let running = |pid: &String| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    let alive: Vec<&String> = pids.iter().filter(|p| running(p)).collect();
    assert!(alive.is_empty(), "processes left: {alive:?}");
    assert!(!lab_dir(&prefix).exists());
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
