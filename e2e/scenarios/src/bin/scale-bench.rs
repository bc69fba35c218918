//! `scale-bench` (root): ferrolb with 10,000 Service IPs in the lab (the test API server, the
//! controller, three speakers in node namespaces, a client), and what that costs.
//!
//! Steps, each waiting on conditions (never a fixed sleep as a measurement):
//! 1. create 5,000 IPv4 Services and 2,500 dual-stack ones (IPv4 from 127.16.0.0/18, loopback
//!    space kept inside the lab's namespaces, IPv6 from 2001:db8:5::/114): `all_answered_s` is
//!    from the first create until the client (`ferrolb-lab sweep`) has heard every IP answered
//!    by the node the election names;
//! 2. 30 s with nothing changing: `idle_cpu_pct` (the busiest speaker);
//! 3. a Service with `externalTrafficPolicy: Local` whose only endpoint moves between nodes
//!    100 times: `endpoint_to_announce_p99_ms`, until the new owner's announcement reaches the
//!    client;
//! 4. 30 s of churn, 100 creates and 100 deletes a second (one of each every 10 ms):
//!    `churn_cpu_pct` (busiest speaker), `assign_p99_ms` (create until the IP is in the
//!    Service's status, as a watch sees it);
//! 5. a flood of at least 100,000 junk frames a second at one node for 10 s while the client
//!    asks it for one IP 100 times a second: `flood_valid_answered_pct`, `flood_junk_per_s`;
//! 6. node 1's link cut: the outage of each IP it owned, from the cut until the client hears
//!    another node answer it: `takeover_p95_ms`, `takeover_max_ms`.
//!
//! Memory and threads are the largest seen across the speakers (peak RSS), and the controller's
//! peak RSS. One line at the end:
//! `scale-bench ips=.. all_answered_s=.. takeover_p95_ms=.. ...`.
//!
//! The bench runs itself again inside the lab's bridge namespace (`--drive`), where the API
//! server listens. `SCALE_V4` and `SCALE_DUAL` shrink the run for a quick look. Everything is
//! removed at the end, also on failure; after a crash, `ferrolb-lab down --prefix <printed>`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports its figures on stdout and its progress on stderr"
)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

use ferrolb_lab::Lab;
use ferrolb_lab::binaries::{binary, build_lab_binaries};
use ferrolb_lab::faults::set_node_link;
use ferrolb_lab::objects::{self, Object};
use ferrolb_lab::prober::now_us;
use ferrolb_lab::procstat;
use ferrolb_lab::sweep::Sweep;
use ferrolb_lab::topology::{bridge_ns, client_ns, command_in, mac_of, node_name, node_ns};

const NODES: u8 = 3;
const V4_POOL: &str = "127.16.0.0/18";
const V6_POOL: &str = "2001:db8:5::/114";
const NAMESPACE: &str = "default";
/// Requests in flight while creating.
const CONCURRENCY: usize = 64;
/// The client's requests a second while waiting for answers.
const SWEEP_RATE: u32 = 30_000;
const IDLE: Duration = Duration::from_secs(30);
const CHURN: Duration = Duration::from_secs(30);
const CHURN_PER_S: usize = 100;
const MOVES: usize = 100;
const FLOOD_SECONDS: u64 = 10;
const FLOOD_RATE: u32 = 110_000;
const VALID_RATE: u32 = 100;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--drive") {
        let prefix = args
            .get(at + 1)
            .ok_or_else(|| anyhow::anyhow!("--drive needs the lab's prefix"))?;
        let pids = args
            .get(at + 2)
            .ok_or_else(|| anyhow::anyhow!("--drive needs the pids"))?;
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(drive(prefix, pids));
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    anyhow::ensure!(
        root,
        "scale-bench creates network namespaces: run it as root"
    );
    if !args.iter().any(|a| a == "--no-build") {
        build_lab_binaries()?;
    }
    let prefix = ferrolb_lab::cluster::prefix("sb");
    eprintln!("lab prefix {prefix}");
    let lab = Lab::up(&prefix, NODES)?;
    let mut pids = Vec::new();
    for node in 1..=NODES {
        let name = Lab::speaker(node);
        let pid = lab
            .processes()
            .pid(&name)
            .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;
        pids.push(format!("{}={pid}", node_name(node)));
    }
    let controller = lab
        .processes()
        .pid("controller-0")
        .ok_or_else(|| anyhow::anyhow!("the controller is not running"))?;
    pids.push(format!("controller={controller}"));
    let me = std::env::current_exe()?;
    let status = command_in(&bridge_ns(&prefix), &me.display().to_string())
        .args(["--drive", &prefix, &pids.join(",")])
        .status()?;
    if !status.success() {
        eprintln!("{}", lab.log_tails(30));
        anyhow::bail!("the bench driver failed: {status}");
    }
    Ok(())
}

/// What the watch of Services has seen: each Service's IPs, and when they first appeared.
#[derive(Debug, Default)]
struct Seen {
    ips: HashMap<String, Vec<IpAddr>>,
    first_us: HashMap<String, u64>,
}

fn ips_of(svc: &Service) -> Vec<IpAddr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| {
            ingress
                .iter()
                .filter_map(|i| i.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Follows every Service's IPs into `seen`.
fn watch_services(api: Api<Service>, seen: Arc<Mutex<Seen>>) {
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = events.try_next().await {
            let now = now_us();
            let Ok(mut seen) = seen.lock() else { return };
            match event {
                watcher::Event::Apply(svc) | watcher::Event::InitApply(svc) => {
                    let name = svc.metadata.name.clone().unwrap_or_default();
                    let ips = ips_of(&svc);
                    if !ips.is_empty() {
                        seen.first_us.entry(name.clone()).or_insert(now);
                        seen.ips.insert(name, ips);
                    }
                }
                watcher::Event::Delete(svc) => {
                    seen.ips
                        .remove(&svc.metadata.name.clone().unwrap_or_default());
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
    });
}

fn service(name: &str, dual: bool) -> Service {
    let families = if dual {
        json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]})
    } else {
        json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
    };
    // 30000-32767 holds 2,768 node ports: as on a real cluster, thousands of LoadBalancer
    // Services need `allocateLoadBalancerNodePorts: false` (Layer 2 never uses node ports).
    let mut spec = json!({
        "type": "LoadBalancer",
        "allocateLoadBalancerNodePorts": false,
        "ports": [{"port": 80}],
    });
    for (k, v) in families.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }))
    .unwrap_or_default()
}

async fn create_all(api: &Api<Service>, names: Vec<(String, bool)>) -> anyhow::Result<()> {
    futures::stream::iter(names)
        .map(|(name, dual)| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &service(&name, dual))
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The speakers' and the controller's pids, from `n1=1,n2=2,..,controller=9`.
fn parse_pids(text: &str) -> BTreeMap<String, u32> {
    text.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The run's state inside the bridge namespace.
struct Driver {
    prefix: String,
    lab: Lab,
    services: Api<Service>,
    seen: Arc<Mutex<Seen>>,
    speakers: BTreeMap<String, u32>,
    controller: u32,
    /// MAC → node name.
    macs: HashMap<String, String>,
    node_macs: BTreeMap<String, String>,
    sweep: Sweep,
    /// Where the next read of the sweep starts.
    cursor: usize,
    max_threads: u32,
}

impl Driver {
    /// The busiest speaker's CPU over `span` while `during` runs, percent of one core.
    async fn speaker_cpu<F: Future<Output = anyhow::Result<()>>>(
        &mut self,
        during: F,
    ) -> anyhow::Result<f64> {
        let before: Vec<f64> = self
            .speakers
            .values()
            .map(|p| procstat::cpu_seconds(*p).unwrap_or(0.0))
            .collect();
        let started = Instant::now();
        during.await?;
        let span = started.elapsed().as_secs_f64();
        self.sample_threads();
        Ok(self
            .speakers
            .values()
            .zip(before)
            .map(|(p, b)| (procstat::cpu_seconds(*p).unwrap_or(b) - b) / span * 100.0)
            .fold(0.0, f64::max))
    }

    fn sample_threads(&mut self) {
        for pid in self.speakers.values() {
            self.max_threads = self.max_threads.max(procstat::threads(*pid).unwrap_or(0));
        }
    }

    /// Every IP of every Service the watch sees, with the node the election names.
    fn expected(&self) -> HashMap<IpAddr, String> {
        let names: Vec<String> = (1..=NODES).map(node_name).collect();
        let Ok(seen) = self.seen.lock() else {
            return HashMap::new();
        };
        seen.ips
            .values()
            .flatten()
            .map(|ip| {
                let owner = ferrolb_speaker::election::owner(
                    &ip.to_string(),
                    names.iter().map(String::as_str),
                )
                .unwrap_or_default()
                .to_owned();
                (*ip, owner)
            })
            .collect()
    }

    /// New answers heard, as (ip, node, µs).
    fn answers(&mut self) -> Vec<(IpAddr, String, u64)> {
        let (answers, next) = self.sweep.answers_since(self.cursor);
        self.cursor = next;
        answers
            .into_iter()
            .filter_map(|(ip, mac, at)| Some((ip, self.macs.get(&mac)?.clone(), at)))
            .collect()
    }

    /// Creates the Services; seconds until every IP is answered by its elected node.
    async fn fill(&mut self, v4: usize, dual: usize) -> anyhow::Result<f64> {
        let mut names: Vec<(String, bool)> = (0..v4).map(|i| (format!("v4-{i}"), false)).collect();
        names.extend((0..dual).map(|i| (format!("ds-{i}"), true)));
        let total = v4 + 2 * dual;
        let started = Instant::now();
        let mut create = Some({
            let api = self.services.clone();
            tokio::spawn(async move { create_all(&api, names).await })
        });
        let mut asked: HashSet<IpAddr> = HashSet::new();
        let mut done: HashSet<IpAddr> = HashSet::new();
        let deadline = Duration::from_secs(600);
        while done.len() < total {
            anyhow::ensure!(
                started.elapsed() < deadline,
                "after {deadline:?} only {} of {total} IPs answered by their owner",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            if create.as_ref().is_some_and(|c| c.is_finished())
                && let Some(finished) = create.take()
            {
                // A refused create fails the run now rather than at the deadline.
                finished.await??;
            }
            let expected = self.expected();
            let new: Vec<IpAddr> = expected
                .keys()
                .filter(|ip| asked.insert(**ip))
                .copied()
                .collect();
            self.sweep.add(&new)?;
            let mut right = Vec::new();
            for (ip, node, _) in self.answers() {
                if expected.get(&ip) == Some(&node) && done.insert(ip) {
                    right.push(ip);
                }
            }
            self.sweep.remove(&right)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        if let Some(create) = create {
            create.await??;
        }
        Ok(seconds)
    }

    /// Moves the only endpoint of a Local Service between nodes; ms until the new owner's
    /// announcement reaches the client, per move.
    async fn moves(&mut self, client: &kube::Client) -> anyhow::Result<Vec<f64>> {
        let name = "moving";
        let mut svc = service(name, false);
        if let Some(spec) = svc.spec.as_mut() {
            spec.external_traffic_policy = Some("Local".into());
        }
        self.services.create(&PostParams::default(), &svc).await?;
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
        let slice = |node: u8| -> anyhow::Result<EndpointSlice> {
            Ok(serde_json::from_value(
                objects::endpoints(name).on(node, true, true).to_value(),
            )?)
        };
        slices.create(&PostParams::default(), &slice(1)?).await?;
        let ip = loop {
            let found = self
                .seen
                .lock()
                .ok()
                .and_then(|s| s.ips.get(name).and_then(|ips| ips.first().copied()));
            if let Some(ip) = found {
                break ip;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Answered by node 1 first.
        self.sweep.add(&[ip])?;
        self.wait_answer(ip, &node_name(1), 0).await?;
        self.sweep.remove(&[ip])?;
        let slice_name = format!("{name}-lab");
        let mut latencies = Vec::new();
        for i in 0..MOVES {
            let node = u8::try_from(i % usize::from(NODES)).unwrap_or(0) + 2;
            let node = if node > NODES { node - NODES } else { node };
            let patch = slice(node)?;
            let sent = now_us();
            slices
                .patch(
                    &slice_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"endpoints": patch.endpoints})),
                )
                .await?;
            let heard = self.wait_answer(ip, &node_name(node), sent).await?;
            latencies.push(heard.saturating_sub(sent) as f64 / 1000.0);
        }
        Ok(latencies)
    }

    /// When `node` was first heard answering (or announcing) `ip` after `after_us`.
    async fn wait_answer(&mut self, ip: IpAddr, node: &str, after_us: u64) -> anyhow::Result<u64> {
        let started = Instant::now();
        loop {
            if let Some(at) = self
                .answers()
                .into_iter()
                .find(|(i, n, at)| *i == ip && n == node && *at > after_us)
                .map(|(_, _, at)| at)
            {
                return Ok(at);
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "{node} never answered {ip}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// 100 creates and 100 deletes a second, paced evenly (one of each every 10 ms; each
    /// deletes the oldest Service still there, created about a second before); create-to-IP
    /// latencies, ms.
    async fn churn(&mut self) -> anyhow::Result<Vec<f64>> {
        let mut created: Vec<(String, u64)> = Vec::new();
        // The churned Services still there, oldest first (a Service joins once created).
        let mut live: std::collections::VecDeque<String> =
            (0..CHURN_PER_S).map(|i| format!("v4-{i}")).collect();
        let mut ticker = tokio::time::interval(Duration::from_secs(1) / CHURN_PER_S as u32);
        // A slow server delays the next pair instead of bursting the missed ones after it; the
        // requests in flight are then at most those of the 30 s.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = futures::stream::FuturesUnordered::new();
        let started = Instant::now();
        let mut n = 0usize;
        while started.elapsed() < CHURN || !running.is_empty() {
            tokio::select! {
                _ = ticker.tick(), if started.elapsed() < CHURN => {
                    let name = format!("churn-{n}");
                    n += 1;
                    let doomed = live.pop_front();
                    let api = self.services.clone();
                    running.push(async move {
                        let (params, object) = (PostParams::default(), service(&name, false));
                        let at = now_us();
                        let create = api.create(&params, &object);
                        let delete = async {
                            match &doomed {
                                Some(d) => api.delete(d, &DeleteParams::default()).await.map(|_| ()),
                                None => Ok(()),
                            }
                        };
                        let (c, d) = futures::join!(create, delete);
                        c?;
                        d?;
                        anyhow::Ok((name, at))
                    });
                }
                Some(done) = running.next() => {
                    let (name, at) = done?;
                    live.push_back(name.clone());
                    created.push((name, at));
                }
            }
        }
        eprintln!(
            "churn: {} creates and as many deletes in {:.1} s",
            created.len(),
            started.elapsed().as_secs_f64()
        );
        // The Services still there get their IPs too.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self
                .seen
                .lock()
                .is_ok_and(|s| live.iter().all(|n| s.first_us.contains_key(n)));
            if all || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = self
            .seen
            .lock()
            .map_err(|_| anyhow::anyhow!("watch state poisoned"))?;
        let never = created
            .iter()
            .filter(|(n, _)| !seen.first_us.contains_key(n))
            .count();
        if never > 0 {
            eprintln!("churn: {never} Services never seen with an IP (deleted first, or stuck)");
        }
        Ok(created
            .iter()
            .filter_map(|(n, at)| Some(seen.first_us.get(n)?.saturating_sub(*at) as f64 / 1000.0))
            .collect())
    }

    /// Junk at node 2 while the client asks it for one of its IPs; (answered %, junk/s).
    async fn flood(&mut self) -> anyhow::Result<(f64, f64)> {
        let owner = node_name(2);
        let ip = self
            .expected()
            .into_iter()
            .find(|(ip, node)| ip.is_ipv4() && *node == owner)
            .map(|(ip, _)| ip)
            .ok_or_else(|| anyhow::anyhow!("{owner} owns no IPv4 address"))?;
        let mac = self
            .node_macs
            .get(&owner)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no MAC for {owner}"))?;
        let mut valid = Sweep::start(&self.prefix, VALID_RATE)?;
        let tool = binary("ferrolb-lab")?;
        let junk = command_in(&client_ns(&self.prefix), &tool.display().to_string())
            .args(["junk", "--iface", "eth0", "--dst", &mac])
            .args(["--rate", &FLOOD_RATE.to_string()])
            .args(["--seconds", &FLOOD_SECONDS.to_string()])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        valid.add(&[ip])?;
        let out = tokio::task::spawn_blocking(move || junk.wait_with_output()).await??;
        valid.remove(&[ip])?;
        // Answers to the last requests are a millisecond away.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (answers, _) = valid.answers_since(0);
        let sent = valid.finish()?;
        let answered = answers
            .iter()
            .filter(|(i, m, _)| *i == ip && *m == mac)
            .count() as f64;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> f64 {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0.0)
        };
        let junk_per_s = field("sent") / field("seconds").max(0.001);
        let pct = if sent == 0 {
            0.0
        } else {
            (answered / sent as f64 * 100.0).min(100.0)
        };
        Ok((pct, junk_per_s))
    }

    /// Cuts node 1 off; each of its IPs' outage until another node answers it, ms.
    async fn takeover(&mut self) -> anyhow::Result<Vec<f64>> {
        let cut = node_name(1);
        let owned: Vec<IpAddr> = self
            .expected()
            .into_iter()
            .filter(|(_, node)| *node == cut)
            .map(|(ip, _)| ip)
            .collect();
        let _ = self.answers();
        self.sweep.add(&owned)?;
        let at = now_us();
        set_node_link(&self.lab, 1, false)?;
        let mut back: HashMap<IpAddr, u64> = HashMap::new();
        let started = Instant::now();
        while back.len() < owned.len() && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut heard = Vec::new();
            for (ip, node, when) in self.answers() {
                if node != cut && when > at && !back.contains_key(&ip) {
                    back.insert(ip, when);
                    heard.push(ip);
                }
            }
            self.sweep.remove(&heard)?;
        }
        set_node_link(&self.lab, 1, true)?;
        anyhow::ensure!(
            back.len() == owned.len(),
            "{} of {} IPs of {cut} never answered by another node",
            owned.len() - back.len(),
            owned.len()
        );
        Ok(back
            .values()
            .map(|when| when.saturating_sub(at) as f64 / 1000.0)
            .collect())
    }
}

/// Follows the `ServiceL2Status` objects from the start, as the speakers do (one stream from
/// the same server); says how many have their status written (the speakers write the object,
/// then its status).
fn watch_statuses(client: &kube::Client) -> tokio::sync::watch::Receiver<usize> {
    let (count, counted) = tokio::sync::watch::channel(0);
    let api: Api<ferrolb_api::ServiceL2Status> =
        Api::namespaced(client.clone(), objects::SYSTEM_NAMESPACE);
    tokio::spawn(async move {
        let mut written: HashSet<String> = HashSet::new();
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = events.try_next().await {
            match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    if o.status.as_ref().is_some_and(|s| !s.interfaces.is_empty()) {
                        written.insert(name);
                    } else {
                        written.remove(&name);
                    }
                }
                watcher::Event::Delete(o) => {
                    written.remove(&o.metadata.name.clone().unwrap_or_default());
                }
                watcher::Event::Init => written.clear(),
                watcher::Event::InitDone => {}
            }
            count.send_replace(written.len());
        }
    });
    counted
}

/// Seconds until the stream of [`watch_statuses`] has brought a written status for each of
/// `services`: "idle" starts only once nothing is left to write, nor to deliver to the
/// speakers' watches.
async fn statuses_written(
    counted: &mut tokio::sync::watch::Receiver<usize>,
    services: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let waited = tokio::time::timeout(
        Duration::from_secs(600),
        counted.wait_for(|n| *n >= services),
    )
    .await
    .map(|r| r.map(|_| ()));
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(_)) => anyhow::bail!("the ServiceL2Status watch ended"),
        Err(_) => anyhow::bail!(
            "only {} of {services} ServiceL2Status objects written after 600 s",
            *counted.borrow()
        ),
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn drive(prefix: &str, pids: &str) -> anyhow::Result<()> {
    let v4 = count("SCALE_V4", 5_000);
    let dual = count("SCALE_DUAL", 2_500);
    let lab = Lab::attach(prefix, NODES);
    lab.apply(&[
        &objects::pool("scale").addresses(&[V4_POOL, V6_POOL]),
        &objects::l2_advertisement("scale"),
    ])?;
    let kubeconfig = kube::config::Kubeconfig::read_from(lab.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let seen = Arc::new(Mutex::new(Seen::default()));
    watch_services(services.clone(), seen.clone());
    let mut statuses = watch_statuses(&client);
    let mut pids = parse_pids(pids);
    let controller = pids
        .remove("controller")
        .ok_or_else(|| anyhow::anyhow!("no controller pid"))?;
    let mut macs = HashMap::new();
    let mut node_macs = BTreeMap::new();
    for node in 1..=NODES {
        let mac = mac_of(&node_ns(prefix, node), "eth0")?;
        macs.insert(mac.clone(), node_name(node));
        node_macs.insert(node_name(node), mac);
    }
    let mut d = Driver {
        prefix: prefix.to_owned(),
        lab,
        services,
        seen,
        speakers: pids,
        controller,
        macs,
        node_macs,
        sweep: Sweep::start(prefix, SWEEP_RATE)?,
        cursor: 0,
        max_threads: 0,
    };
    eprintln!("creating {v4} IPv4 and {dual} dual-stack Services");
    let all_answered_s = d.fill(v4, dual).await?;
    eprintln!("all answered after {all_answered_s:.1} s; waiting for every ServiceL2Status");
    let statuses_s = statuses_written(&mut statuses, v4 + dual).await?;
    eprintln!("every ServiceL2Status written {statuses_s:.1} s later; idle for {IDLE:?}");
    let idle_cpu = d
        .speaker_cpu(async {
            tokio::time::sleep(IDLE).await;
            Ok(())
        })
        .await?;
    eprintln!("moving an endpoint {MOVES} times");
    let mut moves = d.moves(&client).await?;
    eprintln!("churn for {CHURN:?}");
    let before = d
        .speakers
        .values()
        .map(|p| procstat::cpu_seconds(*p).unwrap_or(0.0))
        .collect::<Vec<_>>();
    let churn_started = Instant::now();
    let mut assign = d.churn().await?;
    let span = churn_started.elapsed().as_secs_f64();
    let churn_cpu = d
        .speakers
        .values()
        .zip(before)
        .map(|(p, b)| (procstat::cpu_seconds(*p).unwrap_or(b) - b) / span * 100.0)
        .fold(0.0, f64::max);
    d.sample_threads();
    eprintln!("flood for {FLOOD_SECONDS} s");
    let (flood_pct, junk_per_s) = d.flood().await?;
    eprintln!("cutting node 1");
    let mut outages = d.takeover().await?;
    d.sample_threads();
    let rss = d
        .speakers
        .values()
        .filter_map(|p| procstat::peak_rss_mib(*p))
        .fold(0.0, f64::max);
    let controller_rss = procstat::peak_rss_mib(d.controller).unwrap_or(f64::NAN);
    let sweep = std::mem::replace(&mut d.sweep, Sweep::start(prefix, 1)?);
    let _ = sweep.finish();
    println!(
        "scale-bench ips={} all_answered_s={all_answered_s:.1} takeover_p95_ms={:.0} takeover_max_ms={:.0} endpoint_to_announce_p99_ms={:.0} speaker_rss_mib={rss:.1} speaker_threads={} idle_cpu_pct={idle_cpu:.2} churn_cpu_pct={churn_cpu:.1} assign_p99_ms={:.0} controller_rss_mib={controller_rss:.1} flood_valid_answered_pct={flood_pct:.1} flood_junk_per_s={junk_per_s:.0}",
        v4 + 2 * dual,
        percentile(&mut outages, 95.0),
        percentile(&mut outages.clone(), 100.0),
        percentile(&mut moves, 99.0),
        d.max_threads,
        percentile(&mut assign, 99.0),
    );
    println!(
        "scale-bench detail statuses_written_after_s={statuses_s:.1} takeover_ips={} takeover_p50_ms={:.0} endpoint_to_announce_p50_ms={:.0} assign_p50_ms={:.0} churn_assigned={}",
        outages.len(),
        percentile(&mut outages, 50.0),
        percentile(&mut moves, 50.0),
        percentile(&mut assign, 50.0),
        assign.len()
    );
    Ok(())
}
