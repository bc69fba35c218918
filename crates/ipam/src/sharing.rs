//! When two Services may hold the same IP.
//!
//! A Service may hold an IP others hold only if its sharing key is non-empty and equal to every
//! other holder's, its backend key equals theirs (both absent counts as equal), and none of its
//! (protocol, port) pairs is used on that IP by another holder. A sole holder is compared with
//! nobody, so it may change its key, backend or ports in place.

use std::net::IpAddr;

use crate::request::{Port, Protocol, ServiceRequest};

/// What a holder of an IP brings to the sharing rule, stored compactly per assignment (most
/// Services share nothing, so the keys live behind one optional box).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terms {
    /// Sorted and deduplicated, so equal port sets compare equal.
    ports: Box<[Port]>,
    keys: Option<Box<Keys>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Keys {
    sharing: Option<Box<str>>,
    backend: Option<Box<str>>,
}

impl Terms {
    pub(crate) fn of(req: &ServiceRequest) -> Self {
        let mut ports = req.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        let sharing = req.sharing_key().map(Box::from);
        let backend = req.backend_key.as_deref().map(Box::from);
        let keys =
            (sharing.is_some() || backend.is_some()).then(|| Box::new(Keys { sharing, backend }));
        Self {
            ports: ports.into_boxed_slice(),
            keys,
        }
    }

    /// The non-empty sharing key, if any.
    pub(crate) fn sharing_key(&self) -> Option<&str> {
        self.keys.as_ref()?.sharing.as_deref()
    }

    fn backend_key(&self) -> Option<&str> {
        self.keys.as_ref()?.backend.as_deref()
    }

    /// Whether a holder with these terms may share an IP with one holding `other`.
    fn shares_with(&self, other: &Self) -> bool {
        self.sharing_key().is_some()
            && self.sharing_key() == other.sharing_key()
            && self.backend_key() == other.backend_key()
    }

    /// The first (protocol, port) both use, in port order.
    fn common_port(&self, other: &Self) -> Option<Port> {
        // Both lists are sorted: walk them together.
        let (mut a, mut b) = (self.ports.iter().peekable(), other.ports.iter().peekable());
        while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
            match x.cmp(y) {
                std::cmp::Ordering::Less => _ = a.next(),
                std::cmp::Ordering::Greater => _ = b.next(),
                std::cmp::Ordering::Equal => return Some(**x),
            }
        }
        None
    }
}

/// Why a Service may not hold an IP that others hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// Keys or backends differ from `holder`'s.
    IpInUse { ip: IpAddr, holder: String },
    /// `holder` already uses this port on the IP.
    PortInUse {
        ip: IpAddr,
        protocol: Protocol,
        port: u16,
        holder: String,
    },
}

/// Checks `mine` against every other holder of `ip`, given in key order so the holder named in
/// an error is deterministic.
pub(crate) fn check<'a>(
    ip: IpAddr,
    mine: &Terms,
    others: impl IntoIterator<Item = (&'a str, &'a Terms)>,
) -> Result<(), Conflict> {
    for (holder, theirs) in others {
        if !mine.shares_with(theirs) {
            return Err(Conflict::IpInUse {
                ip,
                holder: holder.to_owned(),
            });
        }
        if let Some(Port { protocol, port }) = mine.common_port(theirs) {
            return Err(Conflict::PortInUse {
                ip,
                protocol,
                port,
                holder: holder.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn terms(build: impl FnOnce(ServiceRequest) -> ServiceRequest) -> Terms {
        Terms::of(&build(ServiceRequest::new("ns", "x")))
    }

    fn ip() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    #[test]
    fn same_key_and_disjoint_ports_share() {
        let a = terms(|r| r.sharing("k").ports(&[Port::tcp(80)]));
        let b = terms(|r| r.sharing("k").ports(&[Port::tcp(443), Port::udp(80)]));
        assert_eq!(check(ip(), &b, [("ns/a", &a)]), Ok(()));
    }

    #[test]
    fn missing_or_different_key_conflicts_naming_the_holder() {
        let a = terms(|r| r.sharing("k"));
        for b in [
            terms(|r| r),
            terms(|r| r.sharing("other")),
            terms(|r| r.sharing("")),
        ] {
            assert_eq!(
                check(ip(), &b, [("ns/a", &a)]),
                Err(Conflict::IpInUse {
                    ip: ip(),
                    holder: "ns/a".into()
                })
            );
        }
        // Neither having a key is no permission either.
        assert!(check(ip(), &terms(|r| r), [("ns/a", &terms(|r| r))]).is_err());
    }

    #[test]
    fn backends_must_be_equal_when_sharing() {
        let a = terms(|r| r.sharing("k").backend("app=web"));
        let with_backend =
            |b: &str| check(ip(), &terms(|r| r.sharing("k").backend(b)), [("ns/a", &a)]);
        assert!(with_backend("app=web").is_ok());
        assert!(with_backend("app=db").is_err());
        assert!(check(ip(), &terms(|r| r.sharing("k")), [("ns/a", &a)]).is_err());
    }

    #[test]
    fn a_common_port_conflicts_naming_protocol_and_port() {
        let a = terms(|r| r.sharing("k").ports(&[Port::tcp(22), Port::tcp(443)]));
        let b = terms(|r| r.sharing("k").ports(&[Port::udp(443), Port::tcp(443)]));
        assert_eq!(
            check(ip(), &b, [("ns/a", &a)]),
            Err(Conflict::PortInUse {
                ip: ip(),
                protocol: Protocol::Tcp,
                port: 443,
                holder: "ns/a".into()
            })
        );
    }

    #[test]
    fn no_other_holder_means_no_conflict() {
        assert!(check(ip(), &terms(|r| r), std::iter::empty()).is_ok());
    }
}
