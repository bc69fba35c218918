//! The accepted pools and what is in use in each: built by `Allocator::set_pools`, which rejects
//! a pool overlapping an earlier one, and kept up to date on every assign and release.
//!
//! Usage is kept as counters and run maps (see [`crate::runs`]), so stats and "lowest free
//! address" cost the same for a /8 as for a /29.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::pool::Pool;
use crate::range::{AddrRange, Family, from_u128, to_u128};
use crate::runs::{Buggy, Runs};

/// How full a pool is. Counts saturate at `u64::MAX` (an IPv6 /32 holds 2^96 addresses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PoolStats {
    /// Distinct IPv4 addresses in use (a shared IP counts once).
    pub assigned_v4: u64,
    /// Distinct IPv6 addresses in use.
    pub assigned_v6: u64,
    /// IPv4 addresses that could still be handed out (buggy ones excluded when avoided).
    pub available_v4: u64,
    /// IPv6 addresses that could still be handed out.
    pub available_v6: u64,
}

/// Why `set_pools` did not accept a pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolRejection {
    /// Shares addresses with a pool earlier in the list, which keeps them.
    #[error("overlaps pool {other:?} at {first}-{last}; the earlier pool keeps these addresses")]
    Overlaps {
        /// The earlier pool.
        other: String,
        /// The first shared address (of the first overlapping range pair found).
        first: IpAddr,
        /// The last shared address of that pair.
        last: IpAddr,
    },
    /// A pool of the same name comes earlier in the list.
    #[error("another pool named {name:?} comes earlier")]
    DuplicateName {
        /// The name.
        name: String,
    },
}

/// The pools [`crate::Allocator::set_pools`] would reject, and why, without changing any
/// allocator: a caller can try a set of pools first and substitute an older spec for a pool that
/// would be rejected, instead of losing that pool's assignments to the rejection.
#[must_use]
pub fn rejected_pools(pools: Vec<Pool>) -> Vec<(String, PoolRejection)> {
    Layout::build(pools).1
}

/// One accepted pool and its usage.
#[derive(Debug, Clone)]
pub(crate) struct PoolState {
    pub(crate) pool: Pool,
    /// Number of Services holding an IP of this pool.
    pub(crate) services: usize,
    runs: [Runs; 2],
    /// Distinct IPs in use, per family.
    assigned: [u64; 2],
    /// Addresses the pool may hand out, per family (saturating).
    usable: [u128; 2],
}

impl PoolState {
    fn new(pool: Pool) -> Self {
        let mut usable = [0u128; 2];
        for r in pool.ranges() {
            let slot = &mut usable[r.family().index()];
            *slot = slot.saturating_add(r.usable(pool.avoid_buggy_ips()));
        }
        Self {
            pool,
            services: 0,
            runs: Default::default(),
            assigned: [0; 2],
            usable,
        }
    }

    fn buggy(&self, family: Family) -> Buggy {
        if self.pool.avoid_buggy_ips() && family == Family::V4 {
            Buggy::Avoided
        } else {
            Buggy::Usable
        }
    }

    /// Whether the pool has any address of `family` it may hand out.
    pub(crate) fn offers(&self, family: Family) -> bool {
        self.usable[family.index()] > 0
    }

    /// Records that `ip` (of this pool) went from free to used.
    pub(crate) fn mark_used(&mut self, ip: IpAddr) {
        let family = Family::of(ip);
        let buggy = self.buggy(family);
        self.runs[family.index()].insert(to_u128(ip), buggy);
        self.assigned[family.index()] += 1;
    }

    /// Records that `ip` (of this pool) went from used to free.
    pub(crate) fn mark_free(&mut self, ip: IpAddr) {
        let family = Family::of(ip);
        let buggy = self.buggy(family);
        self.runs[family.index()].remove(to_u128(ip), buggy);
        self.assigned[family.index()] -= 1;
    }

    /// The lowest free address of `family`, trying ranges in spec order.
    pub(crate) fn first_free(&self, family: Family) -> Option<IpAddr> {
        let (runs, buggy) = (&self.runs[family.index()], self.buggy(family));
        self.pool
            .ranges()
            .iter()
            .filter(|r| r.family() == family)
            .find_map(|r| runs.first_free(r.start(), r.end(), buggy))
            .map(|value| from_u128(family, value))
    }

    pub(crate) fn stats(&self) -> PoolStats {
        let sat = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
        let available = |f: Family| {
            sat(self.usable[f.index()].saturating_sub(u128::from(self.assigned[f.index()])))
        };
        PoolStats {
            assigned_v4: self.assigned[0],
            assigned_v6: self.assigned[1],
            available_v4: available(Family::V4),
            available_v6: available(Family::V6),
        }
    }
}

/// The accepted pools in caller order, with the indexes the allocator looks things up by.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    pub(crate) pools: Vec<PoolState>,
    by_name: HashMap<String, usize>,
    /// Every accepted range by (family, start), to find an IP's pool in O(log ranges); accepted
    /// pools never overlap, so the range starting at or before an IP is the only candidate.
    ranges: BTreeMap<(Family, u128), (AddrRange, usize)>,
    /// Pools a Service without requests may get addresses from, in trial order: `autoAssign`
    /// pools that are not draining.
    auto_order: Vec<usize>,
}

impl Layout {
    /// Accepts `pools` in order, rejecting each one that repeats a name or overlaps an accepted
    /// one: the caller orders pools by age, so a newcomer never takes addresses from a pool in use
    /// (a draining pool's addresses included).
    pub(crate) fn build(pools: Vec<Pool>) -> (Self, Vec<(String, PoolRejection)>) {
        let mut layout = Self::default();
        let mut rejected = Vec::new();
        for pool in pools {
            match layout.conflict(&pool) {
                Some(why) => rejected.push((pool.name().to_owned(), why)),
                None => layout.accept(pool),
            }
        }
        let mut order: Vec<usize> = (0..layout.pools.len())
            .filter(|&i| {
                let pool = &layout.pools[i].pool;
                pool.auto_assign() && !pool.draining()
            })
            .collect();
        order.sort_by(|&a, &b| {
            layout.pools[a]
                .pool
                .candidate_rank()
                .cmp(&layout.pools[b].pool.candidate_rank())
        });
        layout.auto_order = order;
        (layout, rejected)
    }

    fn conflict(&self, pool: &Pool) -> Option<PoolRejection> {
        if self.by_name.contains_key(pool.name()) {
            return Some(PoolRejection::DuplicateName {
                name: pool.name().to_owned(),
            });
        }
        pool.ranges().iter().find_map(|range| {
            let key = |v| (range.family(), v);
            let before = self.ranges.range(..=key(range.start())).next_back();
            let within = self
                .ranges
                .range(key(range.start())..=key(range.end()))
                .next();
            [before, within]
                .into_iter()
                .flatten()
                .find_map(|(_, (other, p))| {
                    let (first, last) = range.intersection(other)?;
                    Some(PoolRejection::Overlaps {
                        other: self.pools[*p].pool.name().to_owned(),
                        first,
                        last,
                    })
                })
        })
    }

    fn accept(&mut self, pool: Pool) {
        let index = self.pools.len();
        for range in pool.ranges() {
            self.ranges
                .insert((range.family(), range.start()), (*range, index));
        }
        self.by_name.insert(pool.name().to_owned(), index);
        self.pools.push(PoolState::new(pool));
    }

    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The accepted pool holding `ip`.
    pub(crate) fn pool_at(&self, ip: IpAddr) -> Option<usize> {
        let (_, (range, p)) = self
            .ranges
            .range(..=(Family::of(ip), to_u128(ip)))
            .next_back()?;
        range.contains(ip).then_some(*p)
    }

    pub(crate) fn auto_order(&self) -> &[usize] {
        &self.auto_order
    }

    /// The one pool holding every IP of `ips`, none of them excluded as buggy; `None` if the IPs
    /// are spread over pools, outside every pool, or excluded.
    pub(crate) fn fit(&self, ips: impl IntoIterator<Item = IpAddr>) -> Option<usize> {
        let mut found = None;
        for ip in ips {
            let p = self.pool_at(ip)?;
            if self.pools[p].pool.is_buggy(ip) || found.is_some_and(|q| q != p) {
                return None;
            }
            found = Some(p);
        }
        found
    }
}
