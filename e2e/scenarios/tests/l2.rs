//! The L2 responder on real links between network namespaces: `arping` and `ndisc6` from a
//! client namespace get answers for owned IPs only, ownership changes take effect at once,
//! gratuitous ARP moves a client's neighbour entry, and a flood of malformed frames is counted
//! while answers continue.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrolb_lab::netns::{Host, Topology, command_in, in_ns, privileged};

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
    /// What it said on stderr after starting.
    log: Arc<Mutex<Vec<String>>>,
}

impl Speaker {
    fn start(host: &Host, ips: &[&str]) -> Self {
        Self::start_with(host, ips, "warn")
    }

    fn start_with(host: &Host, ips: &[&str], conflict_policy: &str) -> Self {
        let mut cmd = command_in(&host.ns, &workspace_bin("ferrolb-lab"));
        cmd.args(["responder", "--conflict-policy", conflict_policy]);
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
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, stdin, log }
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
    let counters = speaker.stop();
    // Two questions answered (one ARP, one NS), each counted under its IP.
    for metric in [
        "ferrolb_layer2_requests_received_total",
        "ferrolb_layer2_responses_sent_total",
    ] {
        for ip in ["192.0.2.200", "2001:db8::200"] {
            let line = format!("{metric}{{ip=\"{ip}\"}} 1");
            assert!(counters.contains(&line), "{line} in {counters}");
        }
    }
    assert!(
        !counters.contains("ip=\"192.0.2.201\""),
        "no series for an IP not owned"
    );
}

#[test]
fn a_host_already_holding_the_ip_is_reported_as_a_conflict() {
    if !privileged() {
        return;
    }
    let (_topo, a, b, client) = lab("x");
    // The client already has both addresses (nodad: usable at once, so it answers DAD).
    for args in [
        [
            "ip",
            "addr",
            "add",
            "192.0.2.200/24",
            "dev",
            &client.iface,
            "",
        ],
        [
            "ip",
            "addr",
            "add",
            "2001:db8::200/64",
            "dev",
            &client.iface,
            "nodad",
        ],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        in_ns(&client.ns, &args).unwrap();
    }
    let (client_mac, a_mac) = (mac_of(&client), mac_of(&a));

    // warn: reported (log, metric, report line) and announced anyway.
    let speaker = Speaker::start(&a, &["192.0.2.200", "2001:db8::200"]);
    std::thread::sleep(Duration::from_millis(1500));
    let out = speaker.stop();
    for ip in ["192.0.2.200", "2001:db8::200"] {
        let line = format!("conflict ip={ip} mac={client_mac} withdrawn=false");
        assert!(out.contains(&line), "{line} in {out}");
        let metric = format!("ferrolb_layer2_conflicts_total{{ip=\"{ip}\"}} 1");
        assert!(out.contains(&metric), "{metric} in {out}");
    }
    assert!(
        out.contains("ferrolb_layer2_gratuitous_sent_total{ip=\"192.0.2.200\"}"),
        "announced anyway under warn: {out}"
    );

    // withdraw: reported, and only the other host answers.
    let speaker = Speaker::start_with(&a, &["192.0.2.200"], "withdraw");
    std::thread::sleep(Duration::from_millis(1500));
    let out = in_ns(
        &b.ns,
        &[
            "arping",
            "-c",
            "3",
            "-w",
            "3",
            "-I",
            &b.iface,
            "192.0.2.200",
        ],
    )
    .unwrap();
    let replies = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        replies.contains(&client_mac),
        "the holder answers: {replies}"
    );
    assert!(!replies.contains(&a_mac), "ferrolb stays silent: {replies}");
    let out = speaker.stop();
    let line = format!("conflict ip=192.0.2.200 mac={client_mac} withdrawn=true");
    assert!(out.contains(&line), "{line} in {out}");
    assert!(
        !out.contains("ferrolb_layer2_gratuitous_sent_total{ip=\"192.0.2.200\"}"),
        "nothing announced under withdraw: {out}"
    );
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
fn gaining_an_ip_sends_gratuitous_arp_and_an_unsolicited_na_on_the_wire() {
    if !privileged() {
        return;
    }
    let (_topo, a, _b, client) = lab("w");
    // tcpdump in the client namespace, started before the responder gains the IPs.
    // Probe, gratuitous request and reply, NA, then the first repeat of each: 7 frames in ~1 s.
    let mut capture = command_in(&client.ns, "timeout")
        .args([
            "10",
            "tcpdump",
            "-l",
            "-n",
            "-e",
            "-i",
            &client.iface,
            "-c",
            "7",
            "arp or (icmp6 and ip6[40] == 136)",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(capture.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("listening") {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "tcpdump did not start: {said}"
        );
        said.push_str(&line);
    }
    std::thread::spawn(move || for _ in err.lines() {});
    let speaker = Speaker::start(&a, &["192.0.2.200", "2001:db8::200"]);
    let mac = mac_of(&a);
    let out = capture.wait_with_output().unwrap();
    speaker.stop();
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    // The gratuitous request and reply, broadcast from the owner, sender = target = the IP.
    assert!(
        text.contains(&format!("{mac} > ff:ff:ff:ff:ff:ff"))
            && text.contains("who-has 192.0.2.200 tell 192.0.2.200"),
        "gratuitous ARP request: {text}"
    );
    assert!(
        text.contains("192.0.2.200 is-at"),
        "gratuitous ARP reply: {text}"
    );
    // The unsolicited NA to all-nodes.
    assert!(
        text.contains("> 33:33:00:00:00:01") && text.contains("tgt is 2001:db8::200"),
        "unsolicited NA to ff02::1: {text}"
    );
}

#[test]
fn links_added_or_removed_are_used_or_dropped_without_a_restart() {
    if !privileged() {
        return;
    }
    let (_topo, a, _b, _client) = lab("k");
    let speaker = Speaker::start(&a, &["192.0.2.200"]);
    let wait_for = |line: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !speaker.log.lock().unwrap().iter().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "no `{line}` in {:?}",
                speaker.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // A new pair of links comes up: the IP is answered there too, at once.
    for args in [
        &[
            "ip", "link", "add", "xa", "type", "veth", "peer", "name", "xb",
        ][..],
        &["ip", "link", "set", "xa", "up"],
        &["ip", "link", "set", "xb", "up"],
    ] {
        in_ns(&a.ns, args).unwrap();
    }
    let mut names = [a.iface.clone(), "xa".into(), "xb".into()];
    names.sort();
    wait_for(&format!("relinked 192.0.2.200 {}", names.join(",")));
    // They go away: only the original link is left.
    in_ns(&a.ns, &["ip", "link", "del", "xa"]).unwrap();
    wait_for(&format!("relinked 192.0.2.200 {}", a.iface));
    speaker.stop();
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
