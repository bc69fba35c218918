//! The L2 responder on real links between network namespaces: `arping` and `ndisc6` from a
//! client namespace get answers for owned IPs only, ownership changes take effect at once,
//! gratuitous ARP moves a client's neighbour entry, and a flood of malformed frames is counted
//! while answers continue.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::time::Duration;

use ferrolb_e2e::lab::netns::{Host, Topology, command_in, in_ns, privileged};

/// A workspace binary next to this test's executable.
fn workspace_bin(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(name)
        .display()
        .to_string()
}

struct Speaker {
    child: Child,
    stdin: ChildStdin,
}

impl Speaker {
    fn start(host: &Host, ips: &[&str]) -> Self {
        let mut cmd = command_in(&host.ns, &workspace_bin("ferrolb-lab"));
        cmd.arg("responder");
        for ip in ips {
            cmd.args(["--ip", ip]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(
            line.contains("responder ready"),
            "responder did not start: {line}"
        );
        std::thread::spawn(move || for _ in err.lines() {});
        Self { child, stdin }
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Stops it and returns what it printed (its counters).
    fn stop(self) -> String {
        drop(self.stdin);
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn mac_of(host: &Host) -> String {
    let out = in_ns(
        &host.ns,
        &["cat", &format!("/sys/class/net/{}/address", host.iface)],
    )
    .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn arping(client: &Host, ip: &str) -> Option<String> {
    let out = in_ns(
        &client.ns,
        &["arping", "-c", "1", "-w", "2", "-I", &client.iface, ip],
    )
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    text.lines()
        .find(|l| l.contains("reply from") || l.contains("unicast reply"))
        .map(str::to_owned)
}

fn ndisc(client: &Host, ip: &str) -> Option<String> {
    let out = in_ns(
        &client.ns,
        &["ndisc6", "-1", "-r", "2", "-w", "500", ip, &client.iface],
    )
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    text.lines()
        .find(|l| l.contains("target link-layer address"))
        .map(str::to_owned)
}

fn lab(tag: &str) -> (Topology, Host, Host, Host) {
    let prefix = format!("fl{}{tag}", std::process::id() % 10_000);
    let mut topo = Topology::new(&prefix).unwrap();
    let a = topo.add_host("a", 10).unwrap();
    let b = topo.add_host("b", 11).unwrap();
    let client = topo.add_host("c", 2).unwrap();
    (topo, a, b, client)
}

#[test]
fn owned_ips_are_answered_over_arp_and_ndp_and_only_while_owned() {
    if !privileged() {
        return;
    }
    let (_topo, a, _b, client) = lab("o");
    let mac = mac_of(&a);
    let mut speaker = Speaker::start(&a, &["192.0.2.200", "2001:db8::200"]);
    let reply = arping(&client, "192.0.2.200").expect("ARP answered for an owned IP");
    assert!(reply.contains(&mac), "{reply} names {mac}");
    let na = ndisc(&client, "2001:db8::200").expect("NS answered for an owned IP");
    assert!(na.contains(&mac), "{na} names {mac}");
    assert!(
        arping(&client, "192.0.2.201").is_none(),
        "an IP nobody owns is not answered"
    );
    speaker.command("lose 192.0.2.200");
    speaker.command("lose 2001:db8::200");
    assert!(
        arping(&client, "192.0.2.200").is_none(),
        "answers stop after Lost"
    );
    assert!(
        ndisc(&client, "2001:db8::200").is_none(),
        "answers stop after Lost"
    );
    speaker.stop();
}

#[test]
fn a_gratuitous_arp_moves_the_clients_neighbour_entry_to_the_new_owner() {
    if !privileged() {
        return;
    }
    let (_topo, a, b, client) = lab("g");
    let mut first = Speaker::start(&a, &["192.0.2.200"]);
    arping(&client, "192.0.2.200").unwrap();
    // Put the IP in the client's neighbour table, pointing at the first owner.
    in_ns(
        &client.ns,
        &[
            "ip",
            "neigh",
            "replace",
            "192.0.2.200",
            "lladdr",
            &mac_of(&a),
            "dev",
            &client.iface,
            "nud",
            "reachable",
        ],
    )
    .unwrap();
    first.command("lose 192.0.2.200");
    let second = Speaker::start(&b, &["192.0.2.200"]);
    // The first gratuitous ARP goes out at once; the client has no other way to learn the new
    // MAC here (it sends nothing), so a moved entry proves the announcement.
    let new_mac = mac_of(&b);
    let mut neigh = String::new();
    for _ in 0..30 {
        let out = in_ns(
            &client.ns,
            &["ip", "neigh", "show", "192.0.2.200", "dev", &client.iface],
        )
        .unwrap();
        neigh = String::from_utf8_lossy(&out.stdout).to_lowercase();
        if neigh.contains(&new_mac) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        neigh.contains(&new_mac),
        "client entry moved to the new owner: {neigh}"
    );
    first.stop();
    second.stop();
}

#[test]
fn a_flood_of_malformed_frames_is_counted_and_answers_continue() {
    if !privileged() {
        return;
    }
    let (_topo, a, _b, client) = lab("f");
    let speaker = Speaker::start(&a, &["192.0.2.200"]);
    in_ns(
        &client.ns,
        &[
            &workspace_bin("ferrolb-lab"),
            "flood",
            "--iface",
            &client.iface,
            "--count",
            "20000",
        ],
    )
    .unwrap();
    assert!(
        arping(&client, "192.0.2.200").is_some(),
        "still answering after the flood"
    );
    let counters = speaker.stop();
    let malformed: u64 = counters
        .split_whitespace()
        .find_map(|w| w.strip_prefix("malformed="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(malformed > 1000, "malformed frames counted: {counters}");
}
