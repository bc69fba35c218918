//! kube-proxy in IPVS mode puts every Service IP on the `kube-ipvs0` dummy interface; unless
//! its `strictARP` is set (which sets `arp_ignore=1` and `arp_announce=2`), every node's kernel
//! then answers ARP for every Service IP and clients reach random nodes. MetalLB documents the
//! setting; ferrolb checks it on the node and says what to set.

/// What the node's kernel is configured to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpSysctls {
    /// `kube-ipvs0` exists (kube-proxy runs in IPVS mode).
    pub ipvs: bool,
    /// `net.ipv4.conf.all.arp_ignore`.
    pub arp_ignore: u8,
    /// `net.ipv4.conf.all.arp_announce`.
    pub arp_announce: u8,
}

/// What to tell the operator, when the node would answer ARP for every Service IP.
pub fn problem(sysctls: ArpSysctls) -> Option<String> {
    if !sysctls.ipvs || (sysctls.arp_ignore >= 1 && sysctls.arp_announce >= 2) {
        return None;
    }
    Some(format!(
        "kube-proxy runs in IPVS mode without strict ARP (net.ipv4.conf.all.arp_ignore={}, arp_announce={}): this node answers ARP for every Service IP on kube-ipvs0. Set `ipvs.strictARP: true` in the kube-proxy ConfigMap (kubectl -n kube-system edit configmap kube-proxy) and restart kube-proxy",
        sysctls.arp_ignore, sysctls.arp_announce
    ))
}

/// Reads the sysctls of the node the speaker runs on (host network namespace).
pub fn read() -> ArpSysctls {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/all/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    ArpSysctls {
        ipvs: std::path::Path::new("/sys/class/net/kube-ipvs0").exists(),
        arp_ignore: sysctl("arp_ignore"),
        arp_announce: sysctl("arp_announce"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ipvs_without_strict_arp_is_a_problem() {
        let strict = ArpSysctls {
            ipvs: true,
            arp_ignore: 1,
            arp_announce: 2,
        };
        assert_eq!(problem(strict), None);
        let loose = ArpSysctls {
            arp_ignore: 0,
            arp_announce: 0,
            ..strict
        };
        let message = problem(loose).unwrap_or_default();
        assert!(message.contains("strictARP: true"), "{message}");
        assert!(message.contains("arp_ignore=0"), "{message}");
        assert!(
            problem(ArpSysctls {
                arp_announce: 0,
                ..strict
            })
            .is_some()
        );
        assert_eq!(
            problem(ArpSysctls {
                ipvs: false,
                ..loose
            }),
            None
        );
    }
}
