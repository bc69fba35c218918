//! Gossip over real UDP sockets on loopback: speakers agree on membership and notice deaths.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use ferrolb_speaker::gossip::seal::{KeyRing, REPLAY_WINDOW_MS, Sealer};
use ferrolb_speaker::gossip::timing::Timing;
use ferrolb_speaker::gossip::udp::{GossipHandle, spawn};

async fn speaker(name: &str, peers: Vec<SocketAddr>) -> GossipHandle {
    let sealer = Sealer::new(
        KeyRing::from_lines("udp-test-key").unwrap(),
        REPLAY_WINDOW_MS,
    );
    spawn(
        "127.0.0.1:0".parse().unwrap(),
        name,
        Timing::for_cluster(3),
        sealer,
        peers,
    )
    .await
    .unwrap()
}

async fn wait_for(handle: &GossipHandle, expected: &[&str], limit: Duration) -> Duration {
    let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    let start = tokio::time::Instant::now();
    let mut alive = handle.alive.clone();
    loop {
        if *alive.borrow_and_update() == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "membership {:?} never became {expected:?}",
            *alive.borrow()
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), alive.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_speakers_agree_and_a_leaving_one_is_dropped_by_the_others() {
    let a = speaker("a", vec![]).await;
    let b = speaker("b", vec![a.local_addr]).await;
    let c = speaker("c", vec![a.local_addr]).await;
    for h in [&a, &b, &c] {
        wait_for(h, &["a", "b", "c"], Duration::from_secs(10)).await;
    }
    c.leave().await;
    // Within the 5 s bound (not a timing claim: gossip-sim measures speed).
    wait_for(&a, &["a", "b"], Duration::from_secs(5)).await;
    wait_for(&b, &["a", "b"], Duration::from_secs(5)).await;
}
