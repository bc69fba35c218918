//! The lab's network plumbing: namespaces joined by a bridge reach each other over IPv4 and
//! IPv6, a cut link stops traffic, and nothing is left behind.
#![allow(clippy::unwrap_used)]

use ferrolb_lab::netns::{Topology, existing, in_ns, privileged};

#[test]
fn hosts_on_the_bridge_reach_each_other_and_everything_is_removed() {
    if !privileged() {
        return;
    }
    let prefix = format!("fl{}t", std::process::id() % 100_000);
    {
        let mut topo = Topology::new(&prefix).unwrap();
        let a = topo.add_host("a", 10).unwrap();
        let b = topo.add_host("b", 11).unwrap();
        in_ns(&a.ns, &["ping", "-c", "1", "-W", "2", &b.ipv4]).unwrap();
        in_ns(&a.ns, &["ping", "-6", "-c", "1", "-W", "2", &b.ipv6]).unwrap();
        topo.set_link(&b, false).unwrap();
        assert!(
            in_ns(&a.ns, &["ping", "-c", "1", "-W", "1", &b.ipv4]).is_err(),
            "a cut link stops traffic"
        );
        assert!(!existing(&prefix).is_empty());
    }
    assert!(
        existing(&prefix).is_empty(),
        "namespaces left behind: {:?}",
        existing(&prefix)
    );
}
