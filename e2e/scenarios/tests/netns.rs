//! The lab's network plumbing: namespaces joined by a bridge reach each other over IPv4 and
//! IPv6, a cut link stops traffic, and dropping the lab leaves nothing behind.
#![allow(clippy::unwrap_used)]

use ferrolb_lab::Lab;
use ferrolb_lab::cluster::prefix;
use ferrolb_lab::topology::{existing, in_ns};

#[test]
#[cfg_attr(not(lab_root), ignore = "needs root: network namespaces")]
fn hosts_on_the_bridge_reach_each_other_a_cut_link_stops_traffic_and_drop_removes_all() {
    let prefix = prefix("fn");
    {
        let mut lab = Lab::network(&prefix).unwrap();
        let a = lab.add_host("a", 10).unwrap();
        let b = lab.add_host("b", 11).unwrap();
        in_ns(&a.ns, &["ping", "-c", "1", "-W", "2", &b.ipv4]).unwrap();
        in_ns(&a.ns, &["ping", "-6", "-c", "1", "-W", "2", &b.ipv6]).unwrap();
        lab.topology().set_link(&b, false).unwrap();
        assert!(
            in_ns(&a.ns, &["ping", "-c", "1", "-W", "1", &b.ipv4]).is_err(),
            "a cut link stops traffic"
        );
        assert_eq!(existing(&prefix).len(), 3, "bridge, a and b");
    }
    assert!(
        existing(&prefix).is_empty(),
        "namespaces left behind: {:?}",
        existing(&prefix)
    );
}
