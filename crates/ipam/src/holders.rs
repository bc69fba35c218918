//! Which Services hold each IP in use.
//!
//! A hash map (point lookups only, never iterated where order would matter) from IP to its
//! holders. Almost every IP has one holder, which is stored inline; a shared IP keeps a sorted
//! list behind a box, so the common entry stays small (see the memory budget in the crate docs).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    One(Arc<str>),
    /// Two or more holders, sorted by key.
    #[allow(
        clippy::box_collection,
        reason = "a thin pointer keeps every slot at 16 bytes; shared IPs are rare, so the extra allocation is too"
    )]
    Many(Box<Vec<Arc<str>>>),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Holders {
    slots: HashMap<IpAddr, Slot>,
}

impl Holders {
    /// The holders of `ip`, sorted by key; empty when the IP is free.
    pub(crate) fn of(&self, ip: IpAddr) -> &[Arc<str>] {
        match self.slots.get(&ip) {
            None => &[],
            Some(Slot::One(key)) => std::slice::from_ref(key),
            Some(Slot::Many(keys)) => keys,
        }
    }

    /// Adds `key` as a holder of `ip`; returns whether the IP was free before.
    pub(crate) fn add(&mut self, ip: IpAddr, key: &Arc<str>) -> bool {
        let Some(slot) = self.slots.get_mut(&ip) else {
            self.slots.insert(ip, Slot::One(key.clone()));
            return true;
        };
        match slot {
            Slot::One(first) if first == key => {}
            Slot::One(first) => {
                let mut keys = vec![first.clone(), key.clone()];
                keys.sort_unstable();
                *slot = Slot::Many(Box::new(keys));
            }
            Slot::Many(keys) => {
                if let Err(at) = keys.binary_search(key) {
                    keys.insert(at, key.clone());
                }
            }
        }
        false
    }

    /// Removes `key` from the holders of `ip`; returns whether the IP is free now.
    pub(crate) fn remove(&mut self, ip: IpAddr, key: &str) -> bool {
        let Some(slot) = self.slots.get_mut(&ip) else {
            return false;
        };
        match slot {
            Slot::One(first) if &**first == key => {
                self.slots.remove(&ip);
                return true;
            }
            Slot::One(_) => {}
            Slot::Many(keys) => {
                keys.retain(|k| &**k != key);
                if let [last] = keys.as_slice() {
                    *slot = Slot::One(last.clone());
                }
            }
        }
        false
    }

    /// Every IP in use, in no particular order: callers must not let the order matter.
    pub(crate) fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.slots.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_ip_is_free_again_only_when_its_last_holder_leaves() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b, c): (Arc<str>, Arc<str>, Arc<str>) =
            ("ns/a".into(), "ns/b".into(), "ns/c".into());
        let mut h = Holders::default();
        assert!(h.add(ip, &c));
        assert!(!h.add(ip, &a));
        assert!(!h.add(ip, &b));
        assert!(!h.add(ip, &b), "adding twice is harmless");
        assert_eq!(h.of(ip), [a.clone(), b.clone(), c.clone()]);
        assert!(!h.remove(ip, "ns/b"));
        assert!(!h.remove(ip, "ns/a"));
        assert_eq!(h.of(ip), [c]);
        assert!(!h.remove(ip, "ns/zzz"));
        assert!(h.remove(ip, "ns/c"));
        assert!(h.of(ip).is_empty());
    }

    #[test]
    fn the_common_entry_stays_small() {
        assert!(size_of::<Slot>() <= 16, "{}", size_of::<Slot>());
    }
}
