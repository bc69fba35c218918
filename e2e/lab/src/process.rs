//! The lab's processes (API server, controllers, speakers, backends, and whatever a scenario adds
//! such as keepalived): started, signalled, restarted and watched by one [`Supervisor`].
//!
//! Each process runs in a namespace in a process group of its own
//! ([`crate::topology::command_in`]) with stdout and stderr appended to its log file. A watcher
//! thread reaps every child as it exits: an exit nobody asked for (no [`Supervisor::stop`], no
//! [`Supervisor::signal`] with a fatal signal) is a [`Death`], printed at once with the last log
//! lines, returned by [`Supervisor::healthy`], and fails the lab's owner when the lab is dropped.
//! So a run whose lab lost a process partway fails naming it instead of measuring a broken lab.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::topology::{command_in, run};

/// How often the watcher looks for exited children: deaths are reported within this.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Log lines quoted when a process dies.
const TAIL: usize = 25;

/// A signal, sent with `kill(1)` (no libc needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop gracefully.
    Term,
    /// SIGKILL.
    Kill,
    /// SIGINT.
    Int,
    /// SIGSTOP: freeze (the process keeps its sockets and addresses but does nothing).
    Stop,
    /// SIGCONT: resume after [`Signal::Stop`].
    Cont,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Term => "TERM",
            Self::Kill => "KILL",
            Self::Int => "INT",
            Self::Stop => "STOP",
            Self::Cont => "CONT",
        }
    }

    /// Whether the process is expected to end after it.
    fn ends(self) -> bool {
        matches!(self, Self::Term | Self::Kill | Self::Int)
    }
}

/// How to start one process.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its name in the lab (`apiserver`, `controller-0`, `speaker-node-1`, ...), unique.
    pub name: String,
    /// The namespace it runs in.
    pub ns: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Its log (appended to, so a restarted process keeps its earlier lines).
    pub log: PathBuf,
}

/// A process that exited when nobody asked it to.
#[derive(Debug, Clone)]
pub struct Death {
    /// Its name.
    pub name: String,
    /// How it ended.
    pub status: String,
    /// The last lines of its log.
    pub tail: String,
}

impl std::fmt::Display for Death {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lab process {} died ({}); its last log lines:\n{}",
            self.name, self.status, self.tail
        )
    }
}

#[derive(Debug)]
struct Proc {
    spec: Spec,
    child: Child,
    /// Set when it was told to end: its exit is no death.
    ending: bool,
    exited: Option<ExitStatus>,
}

#[derive(Debug, Default)]
struct State {
    procs: BTreeMap<String, Proc>,
    deaths: Vec<Death>,
}

/// The lab's processes and their watcher.
#[derive(Debug)]
pub struct Supervisor {
    state: Arc<Mutex<State>>,
    quit: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

/// The last `lines` lines of the file at `path`.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether process `pid` runs (a zombie or a stopped one's exit do not count; a stopped
/// process runs).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

fn reap(state: &mut State) {
    let State { procs, deaths } = state;
    for proc in procs.values_mut().filter(|p| p.exited.is_none()) {
        let Ok(Some(status)) = proc.child.try_wait() else {
            continue;
        };
        proc.exited = Some(status);
        if !proc.ending {
            let death = Death {
                name: proc.spec.name.clone(),
                status: status.to_string(),
                tail: log_tail(&proc.spec.log, TAIL),
            };
            eprintln!("{death}");
            deaths.push(death);
        }
    }
}

impl Supervisor {
    /// No processes yet; the watcher starts.
    pub fn new() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let quit = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (state, quit) = (state.clone(), quit.clone());
            std::thread::spawn(move || {
                while !quit.load(Ordering::Relaxed) {
                    if let Ok(mut state) = state.lock() {
                        reap(&mut state);
                    }
                    std::thread::sleep(WATCH_EVERY);
                }
            })
        };
        Self {
            state,
            quit,
            watcher: Some(watcher),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the map consistent (every step is one insert
        // or one field write).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `spec`; its process id.
    ///
    /// # Errors
    /// When a process of that name runs, or it cannot start.
    pub fn start(&self, spec: Spec) -> anyhow::Result<u32> {
        let mut state = self.lock();
        reap(&mut state);
        if let Some(p) = state.procs.get(&spec.name) {
            anyhow::ensure!(p.exited.is_some(), "{} runs already", spec.name);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", spec.log.display()))?;
        let child = command_in(&spec.ns, &spec.program.display().to_string())
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", spec.name))?;
        // `ip netns exec` execs the program: the child's pid is the program's.
        let pid = child.id();
        state.procs.insert(
            spec.name.clone(),
            Proc {
                spec,
                child,
                ending: false,
                exited: None,
            },
        );
        Ok(pid)
    }

    /// Starts `name` again with the command line, environment and log it had.
    ///
    /// # Errors
    /// When it is unknown or still runs.
    pub fn restart(&self, name: &str) -> anyhow::Result<u32> {
        let spec = {
            let mut state = self.lock();
            reap(&mut state);
            let p = state
                .procs
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("no process {name} in the lab"))?;
            anyhow::ensure!(p.exited.is_some(), "{name} still runs");
            p.spec.clone()
        };
        self.start(spec)
    }

    /// The process id of `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let mut state = self.lock();
        reap(&mut state);
        state
            .procs
            .get(name)
            .filter(|p| p.exited.is_none())
            .map(|p| p.child.id())
    }

    /// Whether `name` runs.
    pub fn is_running(&self, name: &str) -> bool {
        self.pid(name).is_some()
    }

    /// The names of every process started, running or not.
    pub fn names(&self) -> Vec<String> {
        self.lock().procs.keys().cloned().collect()
    }

    /// Sends `signal` to `name`; after a signal that ends it, its exit is expected.
    ///
    /// # Errors
    /// When it does not run or `kill` fails.
    pub fn signal(&self, name: &str, signal: Signal) -> anyhow::Result<()> {
        let mut state = self.lock();
        reap(&mut state);
        let p = state
            .procs
            .get_mut(name)
            .filter(|p| p.exited.is_none())
            .ok_or_else(|| anyhow::anyhow!("{name} does not run"))?;
        if signal.ends() {
            p.ending = true;
        }
        run(
            "kill",
            &[&format!("-{}", signal.name()), &p.child.id().to_string()],
        )?;
        Ok(())
    }

    /// Sends `signal` to `name` and waits until it has exited; how long that took.
    ///
    /// # Errors
    /// When it does not run, or still runs after `deadline`.
    pub fn stop(&self, name: &str, signal: Signal, deadline: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.signal(name, signal)?;
        while self.is_running(name) {
            anyhow::ensure!(
                start.elapsed() < deadline,
                "{name} still runs {deadline:?} after SIG{}",
                signal.name()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(start.elapsed())
    }

    /// Every unexpected exit so far.
    pub fn deaths(&self) -> Vec<Death> {
        let mut state = self.lock();
        reap(&mut state);
        state.deaths.clone()
    }

    /// Fine while no process has died unexpectedly.
    ///
    /// # Errors
    /// Naming each process that died, with its last log lines.
    pub fn healthy(&self) -> anyhow::Result<()> {
        let deaths = self.deaths();
        if deaths.is_empty() {
            return Ok(());
        }
        let text: Vec<String> = deaths.iter().map(Death::to_string).collect();
        anyhow::bail!("{}", text.join("\n"))
    }

    /// Kills every process (SIGKILL) and reaps it; the watcher stops.
    pub fn shutdown(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let mut state = self.lock();
        reap(&mut state);
        for p in state.procs.values_mut().filter(|p| p.exited.is_none()) {
            p.ending = true;
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// Leaves every process running (for a lab that outlives its creator); the watcher stops.
    pub fn detach(&mut self) {
        self.quit.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        self.lock().procs.clear();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.watcher.is_some() {
            self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_stat_line_of_a_zombie_is_not_running() {
        assert!(running(std::process::id()));
        assert!(!running(u32::MAX));
    }

    #[test]
    fn a_death_names_the_process_and_quotes_its_log() {
        let death = Death {
            name: "speaker-node-2".into(),
            status: "signal: 9 (SIGKILL)".into(),
            tail: "gossip joined".into(),
        };
        let text = death.to_string();
        assert!(text.contains("speaker-node-2") && text.contains("SIGKILL"));
        assert!(text.contains("gossip joined"));
    }
}

/// A helper process of the lab tool that prints one record per line (prober, witness, API
/// proxy): started with its stdin piped (closing it stops the tool) and its stdout read by one
/// thread into `records`. Dropped without [`LineTool::finish`] (a test unwinding), it is killed.
#[derive(Debug)]
pub struct LineTool<T> {
    child: Child,
    /// Its stdin; dropping it asks the tool to stop.
    stdin: Option<std::process::ChildStdin>,
    records: Arc<Mutex<Vec<T>>>,
    /// The reading thread; ends when the tool closes its stdout. `None` once finished.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl<T: Send + 'static> LineTool<T> {
    /// Spawns `command` and collects each stdout line `parse` accepts; `what` names the tool in
    /// errors.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(
        mut command: std::process::Command,
        what: &str,
        parse: fn(&str) -> Option<T>,
    ) -> anyhow::Result<Self> {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from the {what}"))?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(record) = parse(&line)
                    && let Ok(mut all) = sink.lock()
                {
                    all.push(record);
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            records,
            reader: Some(reader),
        })
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The records from index `from` on, and the index after the last.
    pub fn since(&self, from: usize) -> (Vec<T>, usize)
    where
        T: Clone,
    {
        self.records.lock().map_or((Vec::new(), from), |r| {
            (r.get(from..).unwrap_or_default().to_vec(), r.len())
        })
    }

    /// Writes one line to its stdin.
    ///
    /// # Errors
    /// When it has closed its stdin (it exited).
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("stdin closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Closes its stdin, waits for it to exit and for its last lines to be read.
    ///
    /// # Errors
    /// When it cannot be waited for or exits unsuccessfully.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        anyhow::ensure!(status.success(), "exited with {status}");
        Ok(())
    }
}

impl<T> Drop for LineTool<T> {
    fn drop(&mut self) {
        if self.reader.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
