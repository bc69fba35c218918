//! The L2 responder on real links between network namespaces: `arping` and `ndisc6` from a
//! client namespace get answers for owned IPs only, ownership changes take effect at once,
//! gratuitous ARP moves a client's neighbour entry, and a flood of malformed frames is counted
//! while answers continue.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrolb_lab::Lab;
use ferrolb_lab::binaries::binary;
use ferrolb_lab::topology::{Host, command_in, in_ns};
use ferrolb_lab::wait::eventually;

const PATIENCE: Duration = Duration::from_secs(10);

/// `ferrolb-lab responder`: the speaker's L2 code without Kubernetes, owning IPs it is told to.
struct Responder {
    child: Child,
    stdin: ChildStdin,
    /// Every line it printed, stdout and stderr, as they come.
    said: Arc<Mutex<Vec<String>>>,
    stdout: std::thread::JoinHandle<()>,
}

/// Collects the lines of `from` into `said`.
fn collect(
    from: impl std::io::Read + Send + 'static,
    said: &Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    let said = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            said.lock().unwrap().push(line);
        }
    })
}

impl Responder {
    fn start(host: &Host, ips: &[&str]) -> Self {
        Self::start_with(host, ips, "warn")
    }

    fn start_with(host: &Host, ips: &[&str], conflict_policy: &str) -> Self {
        let tool = binary("ferrolb-lab").unwrap().display().to_string();
        let mut cmd = command_in(&host.ns, &tool);
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
        let said = Arc::new(Mutex::new(Vec::new()));
        collect(child.stderr.take().unwrap(), &said);
        let stdout = collect(child.stdout.take().unwrap(), &said);
        let responder = Self {
            child,
            stdin,
            said,
            stdout,
        };
        responder.wait_said("responder ready");
        responder
    }

    /// Waits until it has printed a line containing `text`.
    fn wait_said(&self, text: &str) {
        self.wait_line(text, |l| l.contains(text));
    }

    /// Waits until it has printed a line for which `matches` holds.
    fn wait_line(&self, what: &str, matches: impl Fn(&str) -> bool) {
        eventually(&format!("the responder to say `{what}`"), PATIENCE, || {
            let said = self.said.lock().unwrap();
            if said.iter().any(|l| matches(l)) {
                Ok(())
            } else {
                Err(format!("{said:?}"))
            }
        });
    }

    /// Sends a command (`gain IP`, `lose IP`) and waits until it is carried out.
    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        self.wait_said(&format!("ok {line}"));
    }

    /// Stops it and returns everything it printed (its counters at the end).
    fn stop(mut self) -> String {
        drop(self.stdin);
        self.child.wait().unwrap();
        self.stdout.join().unwrap();
        self.said.lock().unwrap().join("\n")
    }
}

fn mac_of(host: &Host) -> String {
    ferrolb_lab::topology::mac_of(&host.ns, &host.iface).unwrap()
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

/// Two hosts and a client on a bridge, removed when the lab is dropped.
fn lab(tag: &str) -> (Lab, Host, Host, Host) {
    let mut lab = Lab::network(&ferrolb_lab::cluster::prefix(&format!("l{tag}"))).unwrap();
    let a = lab.add_host("a", 10).unwrap();
    let b = lab.add_host("b", 11).unwrap();
    let client = lab.add_host("c", 2).unwrap();
    (lab, a, b, client)
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn owned_ips_are_answered_over_arp_and_ndp_and_only_while_owned() {
    let (_topo, a, _b, client) = lab("o");
    let mac = mac_of(&a);
    let mut speaker = Responder::start(&a, &["192.0.2.200", "2001:db8::200"]);
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
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_host_already_holding_the_ip_is_reported_as_a_conflict() {
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
    let speaker = Responder::start(&a, &["192.0.2.200", "2001:db8::200"]);
    for ip in ["192.0.2.200", "2001:db8::200"] {
        speaker.wait_said(&format!(
            "conflict ip={ip} mac={client_mac} withdrawn=false"
        ));
    }
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
    let speaker = Responder::start_with(&a, &["192.0.2.200"], "withdraw");
    speaker.wait_said(&format!(
        "conflict ip=192.0.2.200 mac={client_mac} withdrawn=true"
    ));
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
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_gratuitous_arp_moves_the_clients_neighbour_entry_to_the_new_owner() {
    let (_topo, a, b, client) = lab("g");
    let mut first = Responder::start(&a, &["192.0.2.200"]);
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
    let second = Responder::start(&b, &["192.0.2.200"]);
    // The first gratuitous ARP goes out at once; the client has no other way to learn the new
    // MAC here (it sends nothing), so a moved entry proves the announcement.
    let new_mac = mac_of(&b);
    eventually(
        "the client's entry to move to the new owner",
        Duration::from_secs(3),
        || {
            let out = in_ns(
                &client.ns,
                &["ip", "neigh", "show", "192.0.2.200", "dev", &client.iface],
            )
            .map_err(|e| e.to_string())?;
            let neigh = String::from_utf8_lossy(&out.stdout).to_lowercase();
            if neigh.contains(&new_mac) {
                Ok(())
            } else {
                Err(neigh)
            }
        },
    );
    first.stop();
    second.stop();
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn gaining_an_ip_sends_gratuitous_arp_and_an_unsolicited_na_on_the_wire() {
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
    let speaker = Responder::start(&a, &["192.0.2.200", "2001:db8::200"]);
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
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn links_added_or_removed_are_used_or_dropped_without_a_restart() {
    let (_topo, a, _b, _client) = lab("k");
    let speaker = Responder::start(&a, &["192.0.2.200"]);
    let wait_for = |line: &str| speaker.wait_line(line, |l| l == line);
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
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn a_flood_of_malformed_frames_stays_in_the_kernel_or_is_counted_and_answers_continue() {
    const FLOOD: u64 = 20_000;
    let (_topo, a, _b, client) = lab("f");
    let speaker = Responder::start(&a, &["192.0.2.200"]);
    in_ns(
        &client.ns,
        &[
            &binary("ferrolb-lab").unwrap().display().to_string(),
            "flood",
            "--iface",
            &client.iface,
            "--count",
            &FLOOD.to_string(),
        ],
    )
    .unwrap();
    assert!(
        arping(&client, "192.0.2.200").is_some(),
        "still answering after the flood"
    );
    let counters = speaker.stop();
    let counter = |name: &str| -> u64 {
        counters
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (malformed, requests) = (counter("malformed"), counter("requests"));
    // A flipped byte past the fixed header passes the socket filter: counted, never answered
    // wrongly. Truncated frames, wrong sizes and bad opcodes (three in four) never reach the
    // speaker at all.
    assert!(malformed > 0, "malformed frames counted: {counters}");
    assert!(
        malformed + requests < FLOOD / 2,
        "most of the flood stays in the kernel: {counters}"
    );
}

/// The IPv6 multicast groups `host`'s link has joined (`ip -6 maddr show`).
fn groups_joined(host: &Host) -> String {
    let out = in_ns(&host.ns, &["ip", "-6", "maddr", "show", "dev", &host.iface]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn withdrawing_one_of_two_ips_sharing_a_solicited_node_group_keeps_the_group_joined() {
    // Same last 24 bits (05:00:a1): one solicited-node group, ff02::1:ff05:a1. veth links
    // deliver multicast whether or not it is joined, so the join itself is what is checked (a
    // real NIC drops NS to a group nobody joined, and the remaining IP goes unanswered).
    const GROUP: &str = "ff02::1:ff05:a1";
    let (_topo, a, _b, client) = lab("g");
    let mut speaker = Responder::start(&a, &["2001:db8::5:a1", "2001:db8::1:5:a1"]);
    let joined = |want: bool| {
        eventually(
            &format!("{GROUP} joined = {want} on {}", a.iface),
            PATIENCE,
            || {
                let groups = groups_joined(&a);
                if groups.contains(GROUP) == want {
                    Ok(())
                } else {
                    Err(groups)
                }
            },
        );
    };
    joined(true);
    speaker.command("lose 2001:db8::5:a1");
    joined(true);
    let na = ndisc(&client, "2001:db8::1:5:a1").expect("the other IP is still answered");
    assert!(na.contains(&mac_of(&a)), "{na}");
    speaker.command("lose 2001:db8::1:5:a1");
    joined(false);
    speaker.stop();
}
