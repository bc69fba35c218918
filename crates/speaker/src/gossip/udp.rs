//! The gossip node on a real UDP socket: one task owns the socket, the node and its timer queue
//! (no sleep per timer), and publishes who is alive on a `watch` channel.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::backoff::Backoff;
use super::member::Member;
use super::node::{Clock, GossipNode, GossipStats};
use super::seal::Sealer;
use super::timing::Timing;

/// A speaker that knows fewer members than it has peers asks them again to let it in after
/// this, doubling (with jitter) up to [`REJOIN_CAP`] while they stay silent: a cut-off speaker
/// costs its peers a few datagrams a minute, not a join storm (foca's own announcements to
/// members it believes down, every 5 s, heal a partition meanwhile). Short at first, because
/// speakers start in any order: one that asked a peer before that peer listened must ask again
/// before it decides ownership without it.
const REJOIN_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two rejoin attempts.
const REJOIN_CAP: Duration = Duration::from_secs(30);
/// Largest datagram accepted (foca keeps its own below 1,400 bytes).
const MAX_DATAGRAM: usize = 2048;

/// Talks to the gossip task.
#[derive(Debug, Clone)]
pub struct GossipHandle {
    /// Nodes alive, this one included.
    pub alive: watch::Receiver<BTreeSet<String>>,
    /// Counters, refreshed after every datagram.
    pub stats: watch::Receiver<GossipStats>,
    peers: watch::Sender<Vec<SocketAddr>>,
    leave: mpsc::Sender<oneshot::Sender<()>>,
    /// The address the socket is bound to.
    pub local_addr: SocketAddr,
}

impl GossipHandle {
    /// Replaces the peer list (from `--peers` and from speaker pods); the gossip task hears of
    /// it only when it differs, so calling this every round asks nobody anything.
    pub fn set_peers(&self, peers: Vec<SocketAddr>) {
        self.peers.send_if_modified(|current| {
            let changed = *current != peers;
            if changed {
                *current = peers;
            }
            changed
        });
    }

    /// Leaves the group gracefully and waits until the goodbye is sent.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.leave.send(tx).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn clock(start: Instant) -> Clock {
    let wall_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Clock {
        mono: start.elapsed(),
        wall_ms,
    }
}

/// Binds the socket and starts the gossip task.
///
/// # Errors
/// When the socket cannot be bound.
pub async fn spawn(
    bind: SocketAddr,
    node: &str,
    mut timing: Timing,
    sealer: Sealer,
    peers: Vec<SocketAddr>,
) -> std::io::Result<GossipHandle> {
    let socket = UdpSocket::bind(bind).await?;
    let local_addr = socket.local_addr()?;
    // A new instance must win over the previous one of this node: the start time grows.
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let me = Member {
        node: node.to_owned(),
        addr: local_addr,
        incarnation,
    };
    // From the OS: nonces under the shared key must never repeat across speakers, and
    // speakers started in the same millisecond on the same port are common.
    let seed: u64 = rand::random();
    let mut gossip = GossipNode::new(me, timing.config(), sealer, seed);
    let (alive_tx, alive) = watch::channel(gossip.alive());
    let (stats_tx, stats) = watch::channel(GossipStats::default());
    let (peers_tx, mut peers_rx) = watch::channel(peers);
    let (leave_tx, mut leave_rx) = mpsc::channel::<oneshot::Sender<()>>(1);
    let start = Instant::now();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut backoff = Backoff::new(REJOIN_FIRST, REJOIN_CAP);
        // The first join goes out at once: a speaker that knows only part of the group
        // decides ownership on a partial view meanwhile.
        let mut rejoin_at = tokio::time::Instant::now();
        loop {
            let deadline = gossip.next_deadline().map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(1),
                |d| tokio::time::Instant::from_std(start + d),
            );
            tokio::select! {
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        if let Err(e) = gossip.receive(&buf[..n], clock(start)) {
                            tracing::debug!(%from, reason = %e, "gossip datagram dropped");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "gossip socket error"),
                },
                () = tokio::time::sleep_until(deadline) => gossip.advance(clock(start)),
                // New peers are asked at once; known ones again, backing off, while this node
                // sees fewer members than it has peers.
                () = tokio::time::sleep_until(rejoin_at) => {
                    let peers = peers_rx.borrow_and_update().clone();
                    let known = gossip.alive().len() - 1;
                    if known < peers.iter().filter(|p| **p != local_addr).count() {
                        for peer in peers.into_iter().filter(|p| *p != local_addr) {
                            gossip.join(peer, clock(start));
                        }
                        rejoin_at = tokio::time::Instant::now() + backoff.next(rand::random());
                    } else {
                        backoff.reset();
                        rejoin_at = tokio::time::Instant::now() + REJOIN_FIRST;
                    }
                }
                Ok(()) = peers_rx.changed() => {
                    let peers = peers_rx.borrow_and_update().clone();
                    // Suspicion must last long enough for a refutation to cross the whole
                    // cluster: follow its size as speakers come and go.
                    let wanted = timing.profile.timing(peers.len().max(3));
                    if wanted != timing {
                        match gossip.set_config(wanted.config()) {
                            Ok(()) => {
                                tracing::info!(speakers = peers.len(), suspect_to_down_ms = wanted.suspect_to_down.as_millis(), "gossip timing follows the cluster size");
                                timing = wanted;
                            }
                            Err(e) => tracing::warn!(error = %e, "gossip timing unchanged"),
                        }
                    }
                    let known = gossip.alive().len() - 1;
                    if known < peers.iter().filter(|p| **p != local_addr).count() {
                        for peer in peers.into_iter().filter(|p| *p != local_addr) {
                            gossip.join(peer, clock(start));
                        }
                    }
                    // A new situation: retry soon again, then back off afresh.
                    backoff.reset();
                    rejoin_at = tokio::time::Instant::now() + backoff.next(rand::random());
                }
                request = leave_rx.recv() => {
                    gossip.leave(clock(start));
                    for (to, bytes) in gossip.take_outbox() {
                        let _ = socket.send_to(&bytes, to).await;
                    }
                    if let Some(done) = request {
                        let _ = done.send(());
                    }
                    return;
                }
            }
            for (to, bytes) in gossip.take_outbox() {
                if let Err(e) = socket.send_to(&bytes, to).await {
                    tracing::debug!(%to, error = %e, "gossip send failed");
                }
            }
            for event in gossip.take_events() {
                tracing::info!(?event, "gossip membership changed");
            }
            alive_tx.send_if_modified(|alive| {
                let now = gossip.alive();
                let changed = *alive != now;
                *alive = now;
                changed
            });
            stats_tx.send_replace(gossip.stats().clone());
        }
    });
    Ok(GossipHandle {
        alive,
        stats,
        peers: peers_tx,
        leave: leave_tx,
        local_addr,
    })
}
