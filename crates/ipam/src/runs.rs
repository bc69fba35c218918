//! The used addresses of one pool and family as maximal runs `start -> end` (inclusive), so
//! finding the lowest free address costs O(log runs) however large the pool is.
//!
//! In a pool that avoids buggy IPv4 addresses (`.0` / `.255`), a run may also cover buggy
//! addresses next to used ones. Without that, a fully used /8 would be 65,536 runs separated by
//! unusable gaps and a search would step over all of them; with it, the runs on either side of a
//! `.255`/`.0` gap merge, and between two runs there is always a free, usable address. A search
//! thus steps past at most one run plus a couple of buggy addresses.

use std::collections::BTreeMap;

use crate::range::is_buggy_v4;

/// Whether buggy IPv4 addresses are skipped (and may be absorbed into runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Buggy {
    /// Every address is usable.
    Usable,
    /// IPv4 `.0` and `.255` are never handed out.
    Avoided,
}

impl Buggy {
    fn skips(self, value: u128) -> bool {
        self == Self::Avoided && is_buggy_v4(value)
    }
}

/// The highest IPv4 value: runs never grow past it when absorbing buggy addresses.
const V4_MAX: u128 = u32::MAX as u128;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Runs {
    runs: BTreeMap<u128, u128>,
}

impl Runs {
    /// The run holding `value`, as `(start, end)`.
    fn run_of(&self, value: u128) -> Option<(u128, u128)> {
        let (&start, &end) = self.runs.range(..=value).next_back()?;
        (end >= value).then_some((start, end))
    }

    /// Whether `value` is covered by a run (used, or buggy next to a used address).
    #[cfg(test)]
    pub(crate) fn contains(&self, value: u128) -> bool {
        self.run_of(value).is_some()
    }

    /// Marks `value` used, merging with the runs it touches.
    pub(crate) fn insert(&mut self, value: u128, buggy: Buggy) {
        let (mut lo, mut hi) = (value, value);
        // Absorb the buggy addresses around `value` (at most two on each side) so that runs
        // separated only by unusable addresses become one.
        while lo > 0 && buggy.skips(lo - 1) {
            lo -= 1;
        }
        while hi < V4_MAX && buggy.skips(hi + 1) {
            hi += 1;
        }
        if let Some((start, end)) = self.runs.range(..=lo).next_back().map(|(&s, &e)| (s, e))
            && end.saturating_add(1) >= lo
        {
            self.runs.remove(&start);
            lo = start;
            hi = hi.max(end);
        }
        while let Some((start, end)) = self
            .runs
            .range(lo..=hi.saturating_add(1))
            .next()
            .map(|(&s, &e)| (s, e))
        {
            self.runs.remove(&start);
            hi = hi.max(end);
        }
        self.runs.insert(lo, hi);
    }

    /// Marks `value` free, splitting its run. Buggy addresses left at the cut ends are dropped
    /// with it, so no run ever consists of buggy addresses alone.
    pub(crate) fn remove(&mut self, value: u128, buggy: Buggy) {
        let Some((start, end)) = self.run_of(value) else {
            return;
        };
        self.runs.remove(&start);
        if value > start {
            let mut left_end = value - 1;
            while left_end > start && buggy.skips(left_end) {
                left_end -= 1;
            }
            if !buggy.skips(left_end) {
                self.runs.insert(start, left_end);
            }
        }
        if value < end {
            let mut right_start = value + 1;
            while right_start < end && buggy.skips(right_start) {
                right_start += 1;
            }
            if !buggy.skips(right_start) {
                self.runs.insert(right_start, end);
            }
        }
    }

    /// The lowest free, usable value in `[from, to]`.
    pub(crate) fn first_free(&self, from: u128, to: u128, buggy: Buggy) -> Option<u128> {
        let mut candidate = from;
        while candidate <= to {
            if buggy.skips(candidate) {
                candidate += 1; // cannot overflow: buggy values are IPv4
            } else if let Some((_, end)) = self.run_of(candidate) {
                if end >= to {
                    return None;
                }
                candidate = end + 1;
            } else {
                return Some(candidate);
            }
        }
        None
    }

    /// The number of runs (for tests of the merging rules).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 192.0.2.0 as an integer, so tests read like addresses.
    const NET: u128 = 0xC000_0200;

    fn runs(values: &[u128], buggy: Buggy) -> Runs {
        let mut r = Runs::default();
        for &v in values {
            r.insert(v, buggy);
        }
        r
    }

    #[test]
    fn adjacent_inserts_merge_into_one_run() {
        let r = runs(&[5, 7, 6, 4, 8], Buggy::Usable);
        assert_eq!(r.len(), 1);
        assert_eq!(r.first_free(0, 100, Buggy::Usable), Some(0));
        assert_eq!(r.first_free(4, 100, Buggy::Usable), Some(9));
    }

    #[test]
    fn removing_from_the_middle_splits_the_run() {
        let mut r = runs(&[1, 2, 3, 4, 5], Buggy::Usable);
        r.remove(3, Buggy::Usable);
        assert_eq!(r.len(), 2);
        assert!(!r.contains(3) && r.contains(2) && r.contains(4));
        assert_eq!(r.first_free(1, 10, Buggy::Usable), Some(3));
        r.remove(1, Buggy::Usable);
        r.remove(5, Buggy::Usable);
        assert_eq!(
            r.runs.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(),
            [(2, 2), (4, 4)]
        );
    }

    #[test]
    fn full_range_has_no_free_value_even_at_the_top_of_the_space() {
        let r = runs(&[u128::MAX - 1, u128::MAX], Buggy::Usable);
        assert_eq!(r.first_free(u128::MAX - 1, u128::MAX, Buggy::Usable), None);
        assert_eq!(
            r.first_free(u128::MAX - 2, u128::MAX, Buggy::Usable),
            Some(u128::MAX - 2)
        );
    }

    #[test]
    fn avoided_buggy_addresses_are_skipped_by_arithmetic() {
        let r = Runs::default();
        assert_eq!(r.first_free(NET, NET + 255, Buggy::Avoided), Some(NET + 1));
        assert_eq!(r.first_free(NET + 255, NET + 256, Buggy::Avoided), None);
        assert_eq!(
            r.first_free(NET + 255, NET + 257, Buggy::Avoided),
            Some(NET + 257)
        );
    }

    #[test]
    fn runs_bridge_buggy_gaps_so_a_full_slash_16_is_one_run() {
        let mut r = Runs::default();
        for v in NET..NET + 65_536 {
            if !is_buggy_v4(v) {
                r.insert(v, Buggy::Avoided);
            }
        }
        assert_eq!(r.len(), 1);
        assert_eq!(r.first_free(NET, NET + 65_535, Buggy::Avoided), None);
        // Bridging works whichever side of the gap is filled first.
        let r = runs(&[NET + 257, NET + 254], Buggy::Avoided);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.first_free(NET + 254, NET + 300, Buggy::Avoided),
            Some(NET + 258)
        );
    }

    #[test]
    fn removal_never_leaves_a_run_of_buggy_addresses_only() {
        let mut r = runs(&[NET + 254, NET + 257], Buggy::Avoided);
        r.remove(NET + 254, Buggy::Avoided);
        assert_eq!(
            r.runs.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(),
            [(NET + 257, NET + 257)]
        );
        r.remove(NET + 257, Buggy::Avoided);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn removal_keeps_the_bridge_on_the_side_still_used() {
        let mut r = runs(&[NET + 253, NET + 254, NET + 257], Buggy::Avoided);
        r.remove(NET + 253, Buggy::Avoided);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r.first_free(NET + 1, NET + 300, Buggy::Avoided),
            Some(NET + 1)
        );
        assert_eq!(
            r.first_free(NET + 254, NET + 300, Buggy::Avoided),
            Some(NET + 258)
        );
    }

    #[test]
    fn first_free_agrees_with_a_brute_force_scan() {
        // A deterministic pseudo-random insert/remove sequence over two /24s.
        for buggy in [Buggy::Usable, Buggy::Avoided] {
            let mut r = Runs::default();
            let mut used = std::collections::BTreeSet::new();
            let mut x: u128 = 12_345;
            for _ in 0..3_000 {
                x = (x * 1_103_515_245 + 12_345) % 2_147_483_648;
                let v = NET + x % 512;
                if buggy.skips(v) {
                    continue;
                }
                if used.remove(&v) {
                    r.remove(v, buggy);
                } else {
                    used.insert(v);
                    r.insert(v, buggy);
                }
                let from = NET + (x / 512) % 512;
                let brute = (from..NET + 512).find(|v| !used.contains(v) && !buggy.skips(*v));
                assert_eq!(r.first_free(from, NET + 511, buggy), brute);
            }
        }
    }
}
