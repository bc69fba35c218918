//! Scraping: Prometheus text (and OpenMetrics) `/metrics` pages read into samples, and what a
//! speaker's page says ([`SpeakerView`]): members alive, IPs announced, datagrams dropped.
//! [`settled`] and [`announcers`] are pure over views; fetching goes through `curl` inside the
//! lab's namespaces.

use std::collections::{BTreeMap, BTreeSet};

use crate::topology::{in_ns, node_ip, node_ns};

/// One sample of a `/metrics` page.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with its `_total` / `_bucket` suffix as written).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if set.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample of a page (comments and malformed lines skipped).
pub fn parse(page: &str) -> Vec<Sample> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => line.split_at(line.find(' ')?),
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}')?)?),
        None => (series, BTreeMap::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y"` (values may hold escaped quotes and commas).
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim_start_matches(',');
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The value of the sample `name` with every label in `labels` (the first one).
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
}

/// The sum of every sample `name` (0 when there is none).
pub fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "counters and gauges of small non-negative integers"
)]
fn count(v: f64) -> u64 {
    v as u64
}

/// One speaker's view, from its `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpeakerView {
    /// `ferrolb_speaker_gossip_members{state="alive"}`.
    pub alive: Option<u64>,
    /// IPs in `ferrolb_speaker_announced`.
    pub announced: BTreeSet<String>,
    /// `ferrolb_speaker_gossip_dropped_total` by reason.
    pub dropped: BTreeMap<String, u64>,
    /// `ferrolb_speaker_owner_changes_total`.
    pub owner_changes: u64,
    /// Sum of `ferrolb_layer2_malformed_frames_total`.
    pub l2_malformed: u64,
}

impl SpeakerView {
    /// Reads the Prometheus text of a speaker's `/metrics`.
    pub fn parse(page: &str) -> Self {
        let samples = parse(page);
        let mut view = Self {
            alive: value(
                &samples,
                "ferrolb_speaker_gossip_members",
                &[("state", "alive")],
            )
            .map(count),
            owner_changes: count(sum(&samples, "ferrolb_speaker_owner_changes_total")),
            l2_malformed: count(sum(&samples, "ferrolb_layer2_malformed_frames_total")),
            ..Self::default()
        };
        for s in &samples {
            match (s.name.as_str(), s.label("ip"), s.label("reason")) {
                ("ferrolb_speaker_announced", Some(ip), _) if s.value > 0.0 => {
                    view.announced.insert(ip.to_owned());
                }
                ("ferrolb_speaker_gossip_dropped_total", _, Some(reason)) => {
                    view.dropped.insert(reason.to_owned(), count(s.value));
                }
                _ => {}
            }
        }
        view
    }

    /// Dropped datagrams of one reason.
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }
}

/// The `/metrics` page at `addr` (`ip:port`), fetched from inside namespace `ns`.
///
/// # Errors
/// When it does not answer.
pub fn page(ns: &str, addr: &str) -> Result<String, String> {
    let url = format!("http://{addr}/metrics");
    in_ns(ns, &["curl", "-sSf", "-m", "2", &url])
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| e.to_string())
}

/// Node `node`'s speaker view, or `None` when its metrics do not answer (it is not running).
pub fn speaker_view(prefix: &str, node: u8) -> Option<SpeakerView> {
    let text = page(&node_ns(prefix, node), &format!("{}:7472", node_ip(node))).ok()?;
    text.contains("ferrolb_speaker")
        .then(|| SpeakerView::parse(&text))
}

/// Every node's view (index 0 is node 1).
pub fn speaker_views(prefix: &str, nodes: u8) -> Vec<Option<SpeakerView>> {
    (1..=nodes).map(|n| speaker_view(prefix, n)).collect()
}

/// The nodes whose running speaker announces `ip`.
pub fn announcers(views: &[Option<SpeakerView>], ip: &str) -> Vec<u8> {
    views
        .iter()
        .zip(1u8..)
        .filter(|(v, _)| v.as_ref().is_some_and(|v| v.announced.contains(ip)))
        .map(|(_, n)| n)
        .collect()
}

/// Whether every speaker runs and sees `nodes` alive, and each IP has exactly one announcer;
/// then the owner of each IP.
pub fn settled(views: &[Option<SpeakerView>], ips: &[String]) -> Option<Vec<u8>> {
    let n = views.len() as u64;
    if !views
        .iter()
        .all(|v| v.as_ref().is_some_and(|v| v.alive == Some(n)))
    {
        return None;
    }
    ips.iter()
        .map(|ip| match announcers(views, ip).as_slice() {
            [one] => Some(*one),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp)]
    use super::*;

    #[test]
    fn samples_are_read_with_their_labels() {
        let page = "# HELP x y\nplain 3\nwith{a=\"1\",b=\"q\\\"x,y\"} 2.5\nbad line\n# EOF\n";
        let samples = parse(page);
        assert_eq!(samples.len(), 2);
        assert_eq!(value(&samples, "plain", &[]), Some(3.0));
        assert_eq!(value(&samples, "with", &[("b", "q\"x,y")]), Some(2.5));
        assert_eq!(value(&samples, "with", &[("a", "2")]), None);
    }

    #[test]
    fn speaker_metrics_are_read() {
        let text = r#"# HELP ferrolb_speaker_announced IPs
ferrolb_speaker_announced{service="default/web",node="node-1",ip="192.0.2.192",protocol="ipv4"} 1
ferrolb_speaker_gossip_members{state="alive"} 3
ferrolb_speaker_gossip_dropped_total{reason="forged"} 7
ferrolb_speaker_gossip_dropped_total{reason="replayed"} 1
ferrolb_speaker_owner_changes_total 2
ferrolb_layer2_malformed_frames_total{interface="eth0"} 5
ferrolb_layer2_malformed_frames_total{interface="eth1"} 1
# EOF
"#;
        let view = SpeakerView::parse(text);
        assert_eq!(view.alive, Some(3));
        assert_eq!(view.announced, BTreeSet::from(["192.0.2.192".to_owned()]));
        assert_eq!(view.dropped("forged"), 7);
        assert_eq!(view.dropped("stale"), 0);
        assert_eq!(view.owner_changes, 2);
        assert_eq!(view.l2_malformed, 6);
        let views = vec![Some(view.clone()), None, Some(SpeakerView::default())];
        assert_eq!(announcers(&views, "192.0.2.192"), vec![1]);
    }

    #[test]
    fn settled_needs_every_speaker_alive_and_one_announcer_per_ip() {
        let mut a = SpeakerView::parse(
            "ferrolb_speaker_gossip_members{state=\"alive\"} 2\nferrolb_speaker_announced{ip=\"192.0.2.192\"} 1\n",
        );
        let b = SpeakerView::parse("ferrolb_speaker_gossip_members{state=\"alive\"} 2\n");
        let ips = vec!["192.0.2.192".to_owned()];
        assert_eq!(
            settled(&[Some(a.clone()), Some(b.clone())], &ips),
            Some(vec![1])
        );
        assert_eq!(settled(&[Some(a.clone()), None], &ips), None);
        assert_eq!(settled(&[Some(a.clone()), Some(a.clone())], &ips), None);
        a.alive = Some(1);
        assert_eq!(settled(&[Some(a), Some(b)], &ips), None);
    }
}
