//! The lab's tool (run as root). Subcommands used inside network namespaces:
//! - `responder --ip IP...`: answer ARP/NDP for these IPs on every interface until stdin closes;
//!   a line `lose IP` or `gain IP` changes ownership. Prints counters at exit.
//! - `flood --iface IF --count N`: send malformed and truncated ARP/NDP frames.
//! - `junk --iface IF --dst MAC --rate N --seconds S`: a flood of other traffic and malformed
//!   ARP/NDP to one station (see `ferrolb_lab::forgery::junk_frames`); prints what it sent.
//! - `sweep --iface IF --rate N`: ARP/NDP for the IPs named on stdin (`add`/`del` lines), one
//!   line per answer heard (see `ferrolb_lab::sweep`).
//! - `probe --target IP`: an HTTP request to IP every 10 ms, one line per probe (who answered,
//!   or why not) until stdin closes, then a summary (see `ferrolb_lab::prober`).
//! - `witness --ip IP...`: ARP/NDP requests for these IPs every 10 ms, one line per request and
//!   per answer (which MAC, when) until stdin closes (see `ferrolb_lab::witness`).
//! - `api-proxy --listen ADDR --upstream ADDR`: forwards HTTP to the API server, one line per
//!   write request with its status (see `ferrolb_lab::apiproxy`).
//! - `send-udp --to ADDR --hex HEX...`: send each hex string as one UDP datagram.
//! - `backend --name NODE`: the HTTP backend behind Service IPs on a node.
//!
//! And for people: `up`, `down` and `demo` (a tour that removes its lab at the end, also on
//! Ctrl-C).

#![allow(
    clippy::print_stdout,
    reason = "the responder reports its counters on stdout for the test that runs it"
)]

use std::io::BufRead;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferrolb_speaker::announcer::Announce;
use ferrolb_speaker::election::Interfaces;
use ferrolb_speaker::l2::claim::{ClaimTiming, ConflictPolicy, L2Report};
use ferrolb_speaker::l2::interfaces::NameFilter;
use ferrolb_speaker::l2::responder::{L2Config, L2Responder};

#[derive(Debug, Parser)]
#[command(name = "ferrolb-lab", about = "ferrolb's network-namespace lab tool")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the lab: namespaces, API server, controller, a speaker per node, a client.
    Up {
        /// Node namespaces.
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Prefix of every name (default: derived from the process id).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// The tour: bring a lab up, give a Service an IP, reach it from the client, cut its owner
    /// off the network, show the new owner and the outage, then remove everything.
    Demo {
        /// Node namespaces.
        #[arg(long, default_value_t = 3)]
        nodes: u8,
        /// Use the lab `up` made with this prefix (and leave it up) instead of a new one.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Remove everything of a lab (also after a crash).
    Down {
        /// The lab's prefix, as `up` printed it.
        #[arg(long)]
        prefix: String,
    },
    /// HTTP backend answering with the node's name (runs inside a node namespace).
    Backend {
        /// Node name to answer with.
        #[arg(long)]
        name: String,
        /// Port.
        #[arg(long, default_value_t = 80)]
        port: u16,
    },
    /// Answer ARP/NDP for IPs on every interface until stdin closes.
    Responder {
        /// IPs to own from the start.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// What to do when another host answers for a gained IP.
        #[arg(long, value_enum, default_value_t = ConflictPolicy::Warn)]
        conflict_policy: ConflictPolicy,
    },
    /// Send malformed and truncated frames on an interface.
    Flood {
        /// Interface.
        #[arg(long)]
        iface: String,
        /// Frames to send.
        #[arg(long, default_value_t = 10_000)]
        count: u32,
        /// Frames per second (0: as fast as the link takes them).
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
    /// A flood of junk to one station: other traffic and malformed ARP/NDP.
    Junk {
        /// Interface.
        #[arg(long)]
        iface: String,
        /// The station flooded (its MAC, `aa:bb:cc:dd:ee:ff`).
        #[arg(long)]
        dst: String,
        /// Frames per second.
        #[arg(long, default_value_t = 100_000)]
        rate: u32,
        /// How long.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Ask who answers the IPs named on stdin, printing every answer heard.
    Sweep {
        /// Interface.
        #[arg(long, default_value = "eth0")]
        iface: String,
        /// Requests per second, over all targets in turn.
        #[arg(long, default_value_t = 20_000)]
        rate: u32,
    },
    /// Probe a Service IP with HTTP requests (each its own TCP connection) every interval until
    /// stdin closes (or for --duration-ms), printing one line per probe and a summary.
    Probe {
        /// The IP to probe.
        #[arg(long)]
        target: IpAddr,
        /// TCP port.
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// Time between probes.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        /// Time a probe is given (connect, request and answer).
        #[arg(long, default_value_t = 250)]
        timeout_ms: u64,
        /// Stop after this long instead of at the end of stdin.
        #[arg(long)]
        duration_ms: Option<u64>,
    },
    /// Ask for each IP (ARP or NDP) every interval until stdin closes, printing one line per
    /// request and per answer: who claimed the IP, and when (see `ferrolb_lab::witness`).
    Witness {
        /// The interface to ask on.
        #[arg(long, default_value = "eth0")]
        iface: String,
        /// IPs to ask for.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Time between rounds.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
    },
    /// Forward HTTP from `--listen` to `--upstream`, printing one line per write request with
    /// the status it got (see `ferrolb_lab::apiproxy`).
    ApiProxy {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The API server.
        #[arg(long)]
        upstream: std::net::SocketAddr,
        /// Hold back requests whose path contains this (with `--slow-ms`).
        #[arg(long, requires = "slow_ms")]
        slow_path: Option<String>,
        /// How long such requests wait, ms.
        #[arg(long, requires = "slow_path")]
        slow_ms: Option<u64>,
    },
    /// Send each hex string as one UDP datagram.
    SendUdp {
        /// Destination.
        #[arg(long)]
        to: std::net::SocketAddr,
        /// Datagram bytes in hex (repeat for several).
        #[arg(long = "hex")]
        datagrams: Vec<String>,
    },
}

fn run_probe(
    target: IpAddr,
    port: u16,
    interval: Duration,
    timeout: Duration,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    if duration.is_none() {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Runs until the caller closes stdin (or goes away).
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            stop.store(true, Ordering::Relaxed);
        });
    }
    ferrolb_lab::prober::run_prober(
        std::net::SocketAddr::new(target, port),
        interval,
        timeout,
        duration,
        &stop,
        &mut std::io::stdout().lock(),
    )?;
    Ok(())
}

fn run_witness(iface: &str, ips: &[IpAddr], interval: Duration) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Runs until the caller closes stdin (or goes away).
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            stop.store(true, Ordering::Relaxed);
        });
    }
    let out = std::sync::Mutex::new(std::io::stdout());
    ferrolb_lab::witness::run_witness(iface, ips, interval, &stop, &out)
}

fn junk(iface: &str, dst: &str, rate: u32, seconds: u64) -> anyhow::Result<()> {
    let mut dst_mac = [0u8; 6];
    let parts: Vec<u8> = dst
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(parts.len() == 6, "--dst is not a MAC: {dst}");
    dst_mac.copy_from_slice(&parts);
    let interfaces = pnet_datalink::interfaces();
    let Some(nic) = interfaces.iter().find(|i| i.name == iface) else {
        anyhow::bail!("no interface {iface}")
    };
    let config = pnet_datalink::Config {
        write_buffer_size: 65536,
        ..pnet_datalink::Config::default()
    };
    let pnet_datalink::Channel::Ethernet(mut tx, _rx) = pnet_datalink::channel(nic, config)? else {
        anyhow::bail!("not an Ethernet interface");
    };
    let src = nic.mac.map(|m| m.octets()).unwrap_or_default();
    let frames = ferrolb_lab::forgery::junk_frames(src, dst_mac, 4096);
    let started = std::time::Instant::now();
    let until = Duration::from_secs(seconds);
    let mut sent: u64 = 0;
    // Paced in 1 ms batches: frame i leaves no earlier than i / rate s after the start.
    while started.elapsed() < until {
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let frame = &frames[(sent % frames.len() as u64) as usize];
            if let Some(Err(e)) = tx.send_to(frame, None) {
                anyhow::bail!("send failed: {e}");
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("junk sent={sent} seconds={seconds:.2}");
    Ok(())
}

fn sweep(iface: &str, rate: u32) -> anyhow::Result<()> {
    let out = std::sync::Mutex::new(std::io::stdout());
    ferrolb_lab::sweep::run_sweep(iface, rate, std::io::stdin().lock(), &out)
}

fn send_udp(to: std::net::SocketAddr, datagrams: &[String]) -> anyhow::Result<()> {
    let bind: std::net::SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    for hex in datagrams {
        anyhow::ensure!(hex.len() % 2 == 0, "odd hex length");
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?;
        socket.send_to(&bytes, to)?;
        // Paced a little, so a burst does not overflow the receiver's socket buffer.
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

fn responder(ips: Vec<IpAddr>, policy: ConflictPolicy) -> anyhow::Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = ferrolb_speaker::metrics::Metrics::new(&mut registry);
    let (mut l2, mut reports) = L2Responder::new(
        L2Config {
            filter: NameFilter {
                include: Vec::new(),
                exclude: vec!["lo".into()],
            },
            timing: ClaimTiming {
                policy,
                ..ClaimTiming::default()
            },
        },
        metrics.l2.clone(),
    )?;
    // Conflicts are printed as they come, one line each.
    std::thread::spawn(move || {
        while let Some(report) = reports.blocking_recv() {
            if let L2Report::Conflict {
                ip, mac, withdrawn, ..
            } = report
            {
                println!("conflict ip={ip} mac={mac} withdrawn={withdrawn}");
            }
        }
    });
    for ip in ips {
        l2.gained(ip, &Interfaces::All);
    }
    // Link changes, as the speaker watches them; commands from stdin on their own thread.
    let (links_tx, mut links) = tokio::sync::mpsc::unbounded_channel();
    ferrolb_speaker::l2::linkwatch::spawn(links_tx)?;
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    eprintln!("responder ready");
    loop {
        let line = match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if links.try_recv().is_ok() {
                    while links.try_recv().is_ok() {}
                    for (ip, interfaces) in l2.relink() {
                        eprintln!("relinked {ip} {}", interfaces.join(","));
                    }
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut words = line.split_whitespace();
        match (
            words.next(),
            words.next().and_then(|w| w.parse::<IpAddr>().ok()),
        ) {
            (Some("gain"), Some(ip)) => {
                l2.gained(ip, &Interfaces::All);
            }
            (Some("lose"), Some(ip)) => l2.lost(ip),
            _ => eprintln!("unknown command: {line}"),
        }
        eprintln!("ok {line}");
    }
    drop(l2);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(" ").next()?.parse::<u64>().ok())
            .sum()
    };
    println!(
        "responses={} malformed={} requests={}",
        sum("ferrolb_layer2_responses_sent_total"),
        sum("ferrolb_layer2_malformed_frames_total"),
        sum("ferrolb_layer2_requests_received_total")
    );
    print!("{text}");
    Ok(())
}

fn flood(iface: &str, count: u32, rate: u32) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let interfaces = pnet_datalink::interfaces();
    let Some(nic) = interfaces.iter().find(|i| i.name == iface) else {
        anyhow::bail!("no interface {iface}")
    };
    let pnet_datalink::Channel::Ethernet(mut tx, _rx) =
        pnet_datalink::channel(nic, pnet_datalink::Config::default())?
    else {
        anyhow::bail!("not an Ethernet interface");
    };
    let mac = nic.mac.map(|m| m.octets()).unwrap_or_default();
    for (i, frame) in (0..count).zip(ferrolb_lab::forgery::malformed_arp_frames(mac, count)) {
        if let Some(Err(e)) = tx.send_to(&frame, None) {
            anyhow::bail!("send failed: {e}");
        }
        // Paced: frame i leaves no earlier than i / rate seconds after the start.
        if rate > 0 {
            let due = Duration::from_secs_f64(f64::from(i) / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    Ok(())
}

/// A tiny HTTP server answering every request with `name` (the backend behind Service IPs).
fn backend(name: &str, port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind(("::", port))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let body = format!("{name}\n");
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    Ok(())
}

/// One HTTP GET from the client namespace; the node name that answered.
fn probe(prefix: &str, ip: &str, timeout: &str) -> Option<String> {
    let out = ferrolb_lab::topology::in_ns(
        &ferrolb_lab::topology::client_ns(prefix),
        &["curl", "-s", "-m", timeout, &format!("http://{ip}/")],
    )
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// On Ctrl-C (SIGINT; the lab's processes run in process groups of their own and do not see
/// it), removes the lab and exits: what the lab guard would do, since `exit` runs no drops.
fn remove_on_interrupt(prefix: String) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Installed here, before the lab exists, so no Ctrl-C can come too early.
    let mut interrupt = {
        let _context = runtime.enter();
        signal(SignalKind::interrupt())?
    };
    std::thread::spawn(move || {
        if runtime.block_on(interrupt.recv()).is_some() {
            eprintln!("== interrupted: removing lab {prefix}");
            // Twice: a namespace being created during the first pass is caught by the second.
            ferrolb_lab::cluster::down(&prefix);
            ferrolb_lab::cluster::down(&prefix);
            std::process::exit(130);
        }
    });
    Ok(())
}

fn demo(nodes: u8, existing: Option<String>) -> anyhow::Result<()> {
    use ferrolb_lab::Lab;
    use ferrolb_lab::objects::{endpoints, lab_pool, svc};
    let lab = match existing {
        Some(prefix) => Lab::attach(&prefix, nodes),
        None => {
            let prefix = ferrolb_lab::cluster::prefix("fd");
            remove_on_interrupt(prefix.clone())?;
            println!(
                "== bringing up lab {prefix}: {nodes} nodes, a client, API server and controller (namespaces {prefix}*; Ctrl-C removes it)"
            );
            Lab::up(&prefix, nodes)?
        }
    };
    let prefix = lab.prefix().to_owned();
    println!(
        "== creating an IPAddressPool (192.0.2.192/27, 2001:db8::c0/123), an L2Advertisement and a LoadBalancer Service"
    );
    let [pool, advertisement] = lab_pool();
    lab.apply(&[
        &pool,
        &advertisement,
        &svc("web").ipv4_only(),
        &endpoints("web").on_every_node(nodes),
    ])?;
    let ip = lab
        .wait_ingress("web", 1, Duration::from_secs(30))?
        .remove(0);
    print!("{}", lab.kubectl_run(&["get", "svc", "web"], None)?);
    let owner = lab.poll_until(
        &format!("the client to reach {ip}"),
        Duration::from_secs(30),
        || probe(&prefix, &ip, "1").ok_or_else(|| "no answer".to_owned()),
    )?;
    println!("== the client reached http://{ip}/ and {owner} answered");
    let index: u8 = owner.trim_start_matches("node-").parse()?;
    println!("== taking {owner} off the network; probing every 10 ms");
    ferrolb_lab::faults::set_node_link(&lab, index, false)?;
    let cut = std::time::Instant::now();
    let new_owner = lab.poll_until(
        &format!("another node to take over {ip}"),
        Duration::from_secs(30),
        || probe(&prefix, &ip, "0.1").ok_or_else(|| "no answer".to_owned()),
    )?;
    println!(
        "== {new_owner} took over {ip}; the client was cut off for about {} ms",
        cut.elapsed().as_millis()
    );
    ferrolb_lab::faults::set_node_link(&lab, index, true)?;
    println!("== {owner} is back on the network");
    let events = lab.kubectl_run(&["describe", "svc", "web"], None)?;
    if let Some(at) = events.find("Events:") {
        print!("{}", &events[at..]);
    }
    drop(lab);
    println!("== lab {prefix} removed (unless it was an existing lab)");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Responder {
            ips,
            conflict_policy,
        } => responder(ips, conflict_policy),
        Command::Flood { iface, count, rate } => flood(&iface, count, rate),
        Command::Junk {
            iface,
            dst,
            rate,
            seconds,
        } => junk(&iface, &dst, rate, seconds),
        Command::Sweep { iface, rate } => sweep(&iface, rate),
        Command::Probe {
            target,
            port,
            interval_ms,
            timeout_ms,
            duration_ms,
        } => run_probe(
            target,
            port,
            Duration::from_millis(interval_ms),
            Duration::from_millis(timeout_ms),
            duration_ms.map(Duration::from_millis),
        ),
        Command::SendUdp { to, datagrams } => send_udp(to, &datagrams),
        Command::Witness {
            iface,
            ips,
            interval_ms,
        } => run_witness(&iface, &ips, Duration::from_millis(interval_ms)),
        Command::ApiProxy {
            listen,
            upstream,
            slow_path,
            slow_ms,
        } => {
            let slow = slow_path
                .zip(slow_ms)
                .map(|(path_part, ms)| ferrolb_lab::apiproxy::Slow {
                    path_part,
                    delay: Duration::from_millis(ms),
                });
            ferrolb_lab::apiproxy::run_proxy(listen, upstream, slow)
        }
        Command::Up { nodes, prefix } => {
            let prefix = prefix.unwrap_or_else(|| ferrolb_lab::cluster::prefix("fl"));
            let lab = ferrolb_lab::Lab::up(&prefix, nodes)?;
            let kc = lab.kubeconfig();
            println!("lab {prefix} is up: kubeconfig {}", kc.display());
            println!(
                "  ip netns exec {prefix}br kubectl --kubeconfig {} get nodes",
                kc.display()
            );
            println!("  remove it with: ferrolb-lab down --prefix {prefix}");
            // The lab outlives this command; `down` removes it.
            lab.detach();
            Ok(())
        }
        Command::Demo { nodes, prefix } => demo(nodes, prefix),
        Command::Down { prefix } => {
            ferrolb_lab::cluster::down(&prefix);
            Ok(())
        }
        Command::Backend { name, port } => backend(&name, port),
    }
}
