//! Whether the API server answers this node, asked only while gossip is cut off: one small task
//! for the whole speaker, quiet in the steady state (a thousand nodes probing all the time would
//! be a thousand requests a second for nothing).
//!
//! A speaker that hears neither a gossip peer nor the API server is stranded (see
//! [`crate::isolation::stranded`]): its node is gone from the network as far as it can tell,
//! and the IPs it holds are being taken over elsewhere.

use std::time::{Duration, Instant};

use kube::Client;
use tokio::sync::watch;

/// How often to ask while asked to.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long one answer may take: as long as the interval, so a probe is always in flight.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The probing task's handle: ask it to probe or stop, and read when the API server last
/// answered.
#[derive(Debug)]
pub struct ApiReach {
    wanted: watch::Sender<bool>,
    answered: watch::Receiver<Option<Instant>>,
}

impl ApiReach {
    /// Starts the task (idle until [`Self::probe`] says so).
    pub fn spawn(client: Client) -> Self {
        let (wanted, wanted_rx) = watch::channel(false);
        let (answered_tx, answered) = watch::channel(None);
        tokio::spawn(run(client, wanted_rx, answered_tx));
        Self { wanted, answered }
    }

    /// Probes while `wanted`, not otherwise.
    pub fn probe(&self, wanted: bool) {
        self.wanted
            .send_if_modified(|w| std::mem::replace(w, wanted) != wanted);
    }

    /// When the API server last answered a probe (never asked: `None`).
    pub fn answered_at(&self) -> Option<Instant> {
        *self.answered.borrow()
    }
}

async fn run(
    client: Client,
    mut wanted: watch::Receiver<bool>,
    answered: watch::Sender<Option<Instant>>,
) {
    loop {
        if wanted.wait_for(|w| *w).await.is_err() {
            return;
        }
        let started = tokio::time::Instant::now();
        let reply = tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await;
        if matches!(reply, Ok(Ok(_))) {
            answered.send_replace(Some(Instant::now()));
        }
        tokio::time::sleep_until(started + PROBE_EVERY).await;
    }
}
