//! What this speaker concludes when gossip and the API disagree, without I/O.
//!
//! Gossip alone cannot tell a dead node from one that only its gossip cannot reach (UDP 7946
//! blocked, a wrong key, datagrams rejected as replays). Answering for every IP whose owner
//! gossip calls dead would make two MACs answer one IP whenever gossip alone is cut; a quorum
//! over API state would turn the loss of a majority into an outage. So:
//!
//! - **Gains are witnessed by the link** ([`claim_kinds`]): an IP this node owns in its gossip
//!   view, but which another node would own if every node running a speaker were alive (or which
//!   another node owned in the previous view and gossip now calls dead, or any IP while gossip
//!   misses a speaker), is claimed only when nobody answers it on the link; one a live node held
//!   (or that a speaker just started cannot know the holder of) is claimed once that node let
//!   go (see [`crate::l2::claim`]). An owner keeps the IPs it holds.
//! - **Isolation is said** ([`IsolationWatch`]): a speaker that hears no gossip peer while the
//!   API shows other speaker Pods Ready is isolated: gauge `ferrolb_speaker_gossip_isolated`,
//!   Node Events `GossipIsolated` / `GossipRestored`, and `/readyz` false meanwhile.
//! - **A node cut off from everything falls silent** ([`stranded`]): one that hears no gossip
//!   peer, no API server and no ARP/NDP from another station for [`STRANDED_AFTER`] is, as far as
//!   it can tell, gone from the network; the others are taking its IPs over, so whatever it
//!   answers once its network comes back would be a second answer. It answers nothing until it
//!   hears any of them again, and then claims its IPs as successions (only once nobody else
//!   answers them). Gauge `ferrolb_speaker_stranded`. A node that reaches the API server or
//!   hears its link keeps answering however long gossip is cut, so losing the majority of the
//!   nodes (or the node that ran the API server) is not an outage.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::election::{Cluster, Decisions, Ownership};
use crate::l2::claim::ClaimKind;

/// How long the cut-off condition must hold before it counts: a speaker that just started, or
/// whose only peer just restarted, hears nobody for a moment (a join takes well under a second).
pub const ISOLATION_GRACE: Duration = Duration::from_secs(3);

/// How long a speaker cut off from gossip may also miss the API server before it is stranded:
/// the isolation grace, so a speaker is never stranded before it is isolated.
pub const STRANDED_AFTER: Duration = ISOLATION_GRACE;

/// Whether a speaker is stranded at `now`: cut off from gossip since `cut_since`, and neither
/// the API server (`api_answered`) nor another station on its links (`link_heard`) heard from
/// for [`STRANDED_AFTER`] (whichever came last, and not before the cut began). A node that
/// still hears its link is on the segment its clients use: there the link witness keeps it
/// honest, and a two-node cluster whose API server died with the other node keeps answering.
pub fn stranded(
    now: Duration,
    cut_since: Option<Duration>,
    api_answered: Option<Duration>,
    link_heard: Option<Duration>,
) -> bool {
    let Some(since) = cut_since else {
        return false;
    };
    let heard = [api_answered, link_heard]
        .into_iter()
        .flatten()
        .fold(since, Duration::max);
    now.saturating_sub(heard) >= STRANDED_AFTER
}

/// Each IP's owner in `decisions`.
pub fn owners_by_ip(decisions: &Decisions) -> BTreeMap<IpAddr, String> {
    decisions
        .iter()
        .filter_map(|(ip, d)| match &d.ownership {
            Ownership::Owner { node, .. } => Some((*ip, node.clone())),
            Ownership::Silent(_) => None,
        })
        .collect()
}

/// `cluster` as if every node that runs a speaker (per the API) were alive, whatever gossip
/// says: who would own an IP then tells a takeover from a succession.
pub fn all_alive(cluster: &Cluster) -> Cluster {
    let mut everyone = cluster.clone();
    everyone.alive.extend(cluster.speakers.iter().cloned());
    everyone
}

/// How `me` claims each IP it owns `now` and did not own in `previous` (an IP absent from the
/// result is a plain [`ClaimKind::Handover`]: nobody held it):
/// - [`ClaimKind::Takeover`] when another node would own it if gossip saw every node that runs
///   a speaker (`if_all_alive`), when gossip misses one of those `speakers`, or when its
///   previous owner is not in `view`: that owner may be alive with only gossip cut;
/// - [`ClaimKind::Succession`] when its previous owner is alive in `view` (it lets go by
///   itself), or when there is no previous round to know (`None`: the speaker just started, or
///   was frozen and forgot what it held).
pub fn claim_kinds(
    me: &str,
    now: &BTreeMap<IpAddr, String>,
    if_all_alive: &BTreeMap<IpAddr, String>,
    previous: Option<&BTreeMap<IpAddr, String>>,
    view: &BTreeSet<String>,
    speakers: &BTreeSet<String>,
) -> BTreeMap<IpAddr, ClaimKind> {
    let view_complete = speakers.is_subset(view);
    now.iter()
        .filter(|(_, owner)| owner.as_str() == me)
        .filter_map(|(ip, _)| {
            let before = previous.map(|p| p.get(ip));
            if before.flatten().is_some_and(|b| b == me) {
                return None;
            }
            let outranked = if_all_alive.get(ip).is_some_and(|o| o != me);
            let from_the_dead = before.flatten().is_some_and(|o| !view.contains(o));
            let kind = if outranked || from_the_dead || !view_complete {
                ClaimKind::Takeover
            } else if before.is_none_or(|b| b.is_some()) {
                ClaimKind::Succession
            } else {
                return None;
            };
            Some((*ip, kind))
        })
        .collect()
}

/// Whether `me` is cut off from gossip: it hears no other member while another node's speaker
/// Pod is Ready in the API.
pub fn cut_off(me: &str, view: &BTreeSet<String>, ready_speakers: &BTreeSet<String>) -> bool {
    let hears_a_peer = view.iter().any(|n| n != me);
    let others_ready = ready_speakers.iter().any(|n| n != me);
    !hears_a_peer && others_ready
}

/// A change to tell operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationChange {
    /// Cut off for [`ISOLATION_GRACE`]: Warning `GossipIsolated`.
    Isolated,
    /// Hears peers again (or no other speaker is Ready any more): Normal `GossipRestored`.
    Restored,
}

/// Tracks isolation over time: [`cut_off`] must hold for [`ISOLATION_GRACE`] before the speaker
/// is isolated; it is restored as soon as it no longer holds. Time is a [`Duration`] since any
/// fixed start.
#[derive(Debug, Clone, Default)]
pub struct IsolationWatch {
    /// Since when the condition holds.
    since: Option<Duration>,
    isolated: bool,
}

impl IsolationWatch {
    /// Whether the speaker is isolated now.
    pub fn isolated(&self) -> bool {
        self.isolated
    }

    /// The condition as seen `now`; a change to report, if any.
    pub fn observe(&mut self, cut_off: bool, now: Duration) -> Option<IsolationChange> {
        if !cut_off {
            self.since = None;
            return std::mem::take(&mut self.isolated).then_some(IsolationChange::Restored);
        }
        let since = *self.since.get_or_insert(now);
        if !self.isolated && now.saturating_sub(since) >= ISOLATION_GRACE {
            self.isolated = true;
            return Some(IsolationChange::Isolated);
        }
        None
    }

    /// Since when the cut-off condition holds, if it does.
    pub fn cut_since(&self) -> Option<Duration> {
        self.since
    }

    /// When to look again even if nothing changes (the grace running out).
    pub fn wake_at(&self) -> Option<Duration> {
        match (self.since, self.isolated) {
            (Some(since), false) => Some(since + ISOLATION_GRACE),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn nodes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn owners(pairs: &[(&str, &str)]) -> BTreeMap<IpAddr, String> {
        pairs
            .iter()
            .map(|(i, n)| (ip(i), (*n).to_owned()))
            .collect()
    }

    fn kinds(pairs: &[(&str, ClaimKind)]) -> BTreeMap<IpAddr, ClaimKind> {
        pairs.iter().map(|(i, k)| (ip(i), *k)).collect()
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_speaker_that_hears_its_peers_is_never_stranded() {
        assert!(!stranded(s(100), None, None, None));
    }

    #[test]
    fn a_speaker_cut_off_and_hearing_nobody_is_stranded_after_a_while() {
        assert!(!stranded(s(12), Some(s(10)), None, None));
        assert!(stranded(s(13), Some(s(10)), None, None));
        // What was heard before the cut says nothing about now.
        assert!(stranded(s(13), Some(s(10)), Some(s(5)), Some(s(9))));
    }

    #[test]
    fn the_api_server_or_the_link_heard_after_the_cut_restarts_the_clock() {
        assert!(!stranded(s(13), Some(s(10)), Some(s(11)), None));
        assert!(!stranded(s(13), Some(s(10)), None, Some(s(11))));
        assert!(stranded(s(14), Some(s(10)), Some(s(11)), Some(s(8))));
    }

    #[test]
    fn an_ip_this_node_owns_only_because_gossip_misses_its_owner_is_a_takeover() {
        // a hears nobody: it owns everything in its view; b and c would own theirs.
        let now = owners(&[("192.0.2.1", "a"), ("192.0.2.2", "a"), ("192.0.2.3", "a")]);
        let all = owners(&[("192.0.2.1", "a"), ("192.0.2.2", "b"), ("192.0.2.3", "c")]);
        let previous = owners(&[("192.0.2.1", "a")]);
        let got = claim_kinds(
            "a",
            &now,
            &all,
            Some(&previous),
            &nodes(&["a"]),
            &nodes(&["a"]),
        );
        let t = ClaimKind::Takeover;
        assert_eq!(got, kinds(&[("192.0.2.2", t), ("192.0.2.3", t)]));
    }

    #[test]
    fn an_owner_keeps_the_ips_it_holds_in_its_own_view_without_a_witness() {
        let now = owners(&[("192.0.2.1", "a")]);
        let view = nodes(&["a", "b"]);
        assert!(claim_kinds("a", &now, &now, Some(&now), &nodes(&["a"]), &view).is_empty());
    }

    #[test]
    fn an_ip_whose_previous_owner_gossip_now_calls_dead_is_a_takeover() {
        // The API no longer lists b's speaker, but b held the IP a moment ago.
        let now = owners(&[("192.0.2.2", "a")]);
        let previous = owners(&[("192.0.2.2", "b")]);
        let view = nodes(&["a", "c"]);
        let got = claim_kinds("a", &now, &now, Some(&previous), &view, &view);
        assert_eq!(got, kinds(&[("192.0.2.2", ClaimKind::Takeover)]));
    }

    #[test]
    fn while_gossip_misses_a_speaker_every_gain_is_a_takeover() {
        // A speaker with a wrong key hears nobody: even the IPs it would own with everyone
        // alive may be held by the others, who see it dead.
        let now = owners(&[("192.0.2.1", "a")]);
        let got = claim_kinds("a", &now, &now, None, &nodes(&["a"]), &nodes(&["a", "b"]));
        assert_eq!(got, kinds(&[("192.0.2.1", ClaimKind::Takeover)]));
    }

    #[test]
    fn an_ip_handed_over_by_a_live_owner_is_a_succession() {
        // b is alive and lets go (a node joined or the Service changed): a answers once b
        // no longer does.
        let now = owners(&[("192.0.2.2", "a")]);
        let previous = owners(&[("192.0.2.2", "b")]);
        let view = nodes(&["a", "b"]);
        let got = claim_kinds("a", &now, &now, Some(&previous), &view, &view);
        assert_eq!(got, kinds(&[("192.0.2.2", ClaimKind::Succession)]));
    }

    #[test]
    fn a_speaker_without_a_previous_round_claims_by_succession() {
        // Just started (or thawed): another node may hold what it owns.
        let now = owners(&[("192.0.2.2", "a")]);
        let view = nodes(&["a", "b"]);
        let got = claim_kinds("a", &now, &now, None, &view, &view);
        assert_eq!(got, kinds(&[("192.0.2.2", ClaimKind::Succession)]));
    }

    #[test]
    fn an_ip_nobody_held_is_a_handover() {
        let now = owners(&[("192.0.2.2", "a")]);
        let view = nodes(&["a", "b"]);
        let got = claim_kinds("a", &now, &now, Some(&BTreeMap::new()), &view, &view);
        assert!(got.is_empty());
    }

    #[test]
    fn ips_owned_by_other_nodes_are_never_claimed_by_this_one() {
        let now = owners(&[("192.0.2.2", "b")]);
        let all = owners(&[("192.0.2.2", "c")]);
        let view = nodes(&["a", "b"]);
        assert!(claim_kinds("a", &now, &all, None, &view, &view).is_empty());
    }

    #[test]
    fn a_speaker_that_hears_nobody_while_others_are_ready_is_cut_off() {
        assert!(cut_off("a", &nodes(&["a"]), &nodes(&["a", "b"])));
        assert!(!cut_off("a", &nodes(&["a", "b"]), &nodes(&["a", "b", "c"])));
        // The only speaker, or the others not Ready: alone, not cut off.
        assert!(!cut_off("a", &nodes(&["a"]), &nodes(&["a"])));
        assert!(!cut_off("a", &nodes(&["a"]), &BTreeSet::new()));
    }

    #[test]
    fn isolation_is_declared_after_the_grace_and_restored_at_once() {
        let mut watch = IsolationWatch::default();
        let t = Duration::from_secs(100);
        assert_eq!(watch.observe(true, t), None);
        assert_eq!(watch.wake_at(), Some(t + ISOLATION_GRACE));
        assert_eq!(watch.observe(true, t + ISOLATION_GRACE / 2), None);
        assert!(!watch.isolated());
        assert_eq!(
            watch.observe(true, t + ISOLATION_GRACE),
            Some(IsolationChange::Isolated)
        );
        assert!(watch.isolated());
        assert_eq!(watch.wake_at(), None);
        // Said once.
        assert_eq!(watch.observe(true, t + ISOLATION_GRACE * 2), None);
        assert_eq!(
            watch.observe(false, t + ISOLATION_GRACE * 3),
            Some(IsolationChange::Restored)
        );
        assert!(!watch.isolated());
        assert_eq!(watch.observe(false, t + ISOLATION_GRACE * 4), None);
    }

    #[test]
    fn a_short_silence_is_not_isolation() {
        let mut watch = IsolationWatch::default();
        let t = Duration::from_secs(5);
        assert_eq!(watch.observe(true, t), None);
        assert_eq!(watch.observe(false, t + Duration::from_millis(500)), None);
        // The grace starts again.
        assert_eq!(watch.observe(true, t + Duration::from_secs(1)), None);
        assert_eq!(
            watch.observe(true, t + Duration::from_secs(1) + ISOLATION_GRACE / 2),
            None
        );
        assert!(!watch.isolated());
    }
}
