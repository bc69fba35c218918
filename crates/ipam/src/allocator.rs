//! The allocator: which Service holds which IPs, and the rules for giving, keeping, moving and
//! taking them back. Synchronous and deterministic: the same calls give the same results.
//!
//! Every public call that changes state first computes a [`Plan`] from `&self` and only then
//! applies it, so an error leaves everything as it was.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::error::{AllocError, Wanted};
use crate::holders::Holders;
use crate::layout::{Layout, PoolRejection, PoolState, PoolStats};
use crate::pool::Pool;
use crate::range::Family;
use crate::request::{FamilyPolicy, ServiceRequest};
use crate::sharing::{self, Terms};

/// The IPs a Service holds and the pool they come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// One or two IPs (at most one per family), in the Service's family order.
    pub ips: Vec<IpAddr>,
    /// The pool holding all of them.
    pub pool: String,
}

/// An assignment `set_pools` took back because its IPs no longer fit one accepted pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evicted {
    /// The Service's `namespace/name`.
    pub key: String,
    /// The IPs it held.
    pub ips: Vec<IpAddr>,
    /// The pool they were in.
    pub pool: String,
}

/// What `set_pools` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolsUpdate {
    /// Pools not accepted, with why, in the order given.
    pub rejected: Vec<(String, PoolRejection)>,
    /// Assignments released because they no longer fit, by Service key.
    pub evicted: Vec<Evicted>,
}

/// Up to one IP per family plus the Service's family order: 24 bytes instead of a `Vec`, which
/// matters at 100,000 assignments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ips {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    v6_first: bool,
}

impl Ips {
    /// Callers pass at most one IP per family (checked before).
    fn new(ips: impl IntoIterator<Item = IpAddr>, first: Family) -> Self {
        let mut out = Self {
            v4: None,
            v6: None,
            v6_first: first == Family::V6,
        };
        for ip in ips {
            match ip {
                IpAddr::V4(v4) => out.v4 = Some(v4),
                IpAddr::V6(v6) => out.v6 = Some(v6),
            }
        }
        out
    }

    /// The IPs in the Service's family order.
    fn iter(self) -> impl Iterator<Item = IpAddr> {
        let (v4, v6) = (self.v4.map(IpAddr::V4), self.v6.map(IpAddr::V6));
        let (a, b) = if self.v6_first { (v6, v4) } else { (v4, v6) };
        a.into_iter().chain(b)
    }
}

/// What the allocator stores per Service (keyed by its `namespace/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    ips: Ips,
    /// Index into the layout's pools; `set_pools` rewrites it.
    pool: usize,
    terms: Terms,
}

/// A decision not yet applied.
#[derive(Debug, Clone, Copy)]
struct Plan {
    ips: Ips,
    pool: usize,
}

/// Where IPs to check come from: what differs between a request and a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Asked for by the Service: must be in its named pool and, for `RequireDualStack`, complete.
    Request,
    /// Already in the Service's status: recorded as found. A later `allocate` completes a
    /// dual-stack pair and moves the Service if its pool no longer admits it.
    Restore,
}

/// Why no candidate pool could give what a Service needs.
enum Shortfall {
    /// No candidate has the needed families at all.
    NoPool(Wanted),
    /// These candidates have them, but they are full.
    Full(Wanted, Vec<usize>),
}

/// Assigns IPs from pools to Services. See the crate docs for the rules.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    layout: Layout,
    /// Point lookups by key only; anything reported from it is sorted first.
    services: HashMap<Arc<str>, Record>,
    holders: Holders,
    /// IPs held under each sharing key, with the number of holders using that key: where a
    /// Service with the key looks first, lowest IP first.
    shared: BTreeMap<Box<str>, BTreeMap<IpAddr, u32>>,
}

impl Allocator {
    /// An allocator with no pools and no assignments.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the pools. `pools` must be in creation order: a pool overlapping an earlier one
    /// (or repeating its name) is rejected, so a newcomer cannot take addresses from a pool in use.
    ///
    /// Every assignment whose IPs all lie in one accepted pool (and are not excluded as buggy)
    /// is kept, relabelled when that pool has a new name. The others are released and returned
    /// in [`PoolsUpdate::evicted`], sorted by Service key, for the caller to reallocate. Changes
    /// of `serviceAllocation` do not evict: the caller re-checks by calling [`Self::allocate`].
    /// Nor does a pool starting to drain ([`Pool::draining`]): it is accepted (and reserves its
    /// addresses against overlapping pools) like any other, and only stops giving out new ones.
    pub fn set_pools(&mut self, pools: Vec<Pool>) -> PoolsUpdate {
        let (layout, rejected) = Layout::build(pools);
        let mut kept = Vec::new();
        let mut gone = Vec::new();
        for (key, rec) in &self.services {
            match layout.fit(rec.ips.iter()) {
                Some(pool) => kept.push((key.clone(), pool)),
                None => gone.push(key.clone()),
            }
        }
        gone.sort_unstable();
        let evicted = gone
            .iter()
            .filter_map(|key| {
                let Assignment { ips, pool } = self.release(key)?;
                Some(Evicted {
                    key: key.to_string(),
                    ips,
                    pool,
                })
            })
            .collect();
        for (key, pool) in kept {
            if let Some(rec) = self.services.get_mut(&key) {
                rec.pool = pool;
            }
        }
        self.layout = layout;
        // Recount usage in the new pools. Run maps are sets, so the hash order does not matter.
        for ip in self.holders.ips() {
            if let Some(p) = self.layout.pool_at(ip) {
                self.layout.pools[p].mark_used(ip);
            }
        }
        for rec in self.services.values() {
            self.layout.pools[rec.pool].services += 1;
        }
        PoolsUpdate { rejected, evicted }
    }

    /// Records an assignment found in the cluster (a Service's status) as it is, without
    /// applying pool order, requests or `serviceAllocation`, so a restart never moves an IP; IPs
    /// of a draining pool are accepted too. (Eligibility is the next [`Self::allocate`]'s
    /// business, as after [`Self::set_pools`].)
    /// Restoring the same assignment again changes nothing; restoring other IPs for the
    /// Service replaces its own.
    ///
    /// # Errors
    ///
    /// When the IPs are not all in one accepted pool, do not fit the family policy (at most
    /// one per family), are excluded as buggy, or clash with other holders under the sharing
    /// rule. Nothing changes then.
    pub fn restore(
        &mut self,
        req: &ServiceRequest,
        ips: &[IpAddr],
    ) -> Result<Assignment, AllocError> {
        let terms = Terms::of(req);
        let plan = self.check_ips(req, &terms, ips, Source::Restore)?;
        Ok(self.commit(&req.key, plan, terms))
    }

    /// Gives the Service its addresses: the requested IPs if any; else what it holds, if its
    /// pool still admits it and is the one it names (IPs it may no longer share under its new
    /// sharing key, backend or ports are dropped, the others kept, and a dual-stack pair left
    /// with one IP is completed from the same pool when possible); else the lowest free
    /// addresses of the first candidate pool. Calling it again with the same request changes
    /// nothing: one call reaches the fixed point.
    ///
    /// A draining pool ([`Pool::draining`]) lets Services keep what they hold in it but gives
    /// out no new address: it is no automatic candidate; naming it, or requesting one of its IPs
    /// the Service does not hold already, fails with [`AllocError::PoolDraining`]; and it does
    /// not complete a dual-stack pair (`PreferDualStack` keeps its one IP, `RequireDualStack`
    /// moves to another pool).
    ///
    /// # Errors
    ///
    /// An [`AllocError`] naming the IP or pool and the reason. Nothing changes then: a Service
    /// keeps what it held, and the caller decides whether to release it.
    pub fn allocate(&mut self, req: &ServiceRequest) -> Result<Assignment, AllocError> {
        let terms = Terms::of(req);
        let plan = self.plan(req, &terms)?;
        Ok(self.commit(&req.key, plan, terms))
    }

    /// Takes back the Service's addresses; returns what it held.
    pub fn release(&mut self, key: &str) -> Option<Assignment> {
        let (_, rec) = self.detach(key)?;
        Some(self.assignment(&rec))
    }

    /// What the Service holds.
    ///
    /// Returned by value: assignments are stored compactly (see the memory budget in the crate
    /// docs), not as `Assignment`s that could be lent out.
    #[must_use]
    pub fn lookup(&self, key: &str) -> Option<Assignment> {
        self.services.get(key).map(|rec| self.assignment(rec))
    }

    /// Every assignment, sorted by Service key.
    #[must_use]
    pub fn assignments(&self) -> Vec<(String, Assignment)> {
        let mut all: Vec<_> = self
            .services
            .iter()
            .map(|(k, rec)| (k.to_string(), self.assignment(rec)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Usage counts of an accepted pool.
    #[must_use]
    pub fn pool_stats(&self, pool: &str) -> Option<PoolStats> {
        self.layout
            .index_of(pool)
            .map(|p| self.layout.pools[p].stats())
    }

    /// How many Services hold an IP of the pool (0 for a pool not accepted).
    #[must_use]
    pub fn assignments_in_pool(&self, pool: &str) -> usize {
        self.layout
            .index_of(pool)
            .map_or(0, |p| self.layout.pools[p].services)
    }

    /// The accepted pool holding `ip`.
    #[must_use]
    pub fn pool_of(&self, ip: IpAddr) -> Option<&str> {
        self.layout
            .pool_at(ip)
            .map(|p| self.layout.pools[p].pool.name())
    }

    /// The accepted pools' names, in the order given to [`Self::set_pools`].
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.layout.pools.iter().map(|s| s.pool.name())
    }

    fn assignment(&self, rec: &Record) -> Assignment {
        Assignment {
            ips: rec.ips.iter().collect(),
            pool: self.state(rec.pool).pool.name().to_owned(),
        }
    }

    fn state(&self, pool: usize) -> &PoolState {
        &self.layout.pools[pool]
    }

    fn plan(&self, req: &ServiceRequest, terms: &Terms) -> Result<Plan, AllocError> {
        let requested = &req.requested_ips;
        let ips = match (requested.from_annotation.as_slice(), &requested.from_spec) {
            ([], None) => &[][..],
            ([], Some(ip)) => std::slice::from_ref(ip),
            (ips, None) => ips,
            (_, Some(_)) => return Err(AllocError::BothAnnotationAndSpec),
        };
        if !ips.is_empty() {
            return self.check_ips(req, terms, ips, Source::Request);
        }
        match self.keep_current(req, terms) {
            Some(plan) => Ok(plan),
            None => self.fresh(req, terms),
        }
    }

    /// Checks IPs named by the Service (requested, or restored from its status).
    fn check_ips(
        &self,
        req: &ServiceRequest,
        terms: &Terms,
        ips: &[IpAddr],
        source: Source,
    ) -> Result<Plan, AllocError> {
        let policy = req.families;
        let mut found: Vec<(IpAddr, usize)> = Vec::with_capacity(2);
        for &ip in ips {
            let family = Family::of(ip);
            if !policy.allows(family) {
                return Err(AllocError::WrongFamily { ip, policy });
            }
            if let Some(&(first, _)) = found.iter().find(|(other, _)| Family::of(*other) == family)
            {
                return Err(AllocError::TwoOfOneFamily {
                    family,
                    first,
                    second: ip,
                });
            }
            let p = self
                .layout
                .pool_at(ip)
                .ok_or(AllocError::NotInAnyPool { ip })?;
            let pool = &self.state(p).pool;
            if let (Source::Request, Some(requested)) = (source, &req.requested_pool)
                && requested != pool.name()
            {
                let pool = pool.name().to_owned();
                return Err(AllocError::NotInRequestedPool {
                    ip,
                    pool,
                    requested: requested.clone(),
                });
            }
            if source == Source::Request && pool.draining() && !self.holds(&req.key, ip) {
                return Err(AllocError::PoolDraining {
                    pool: pool.name().to_owned(),
                });
            }
            if source == Source::Request
                && let Err(reason) = pool.admits(req)
            {
                return Err(AllocError::PoolNotAllowed {
                    ip: Some(ip),
                    pool: pool.name().to_owned(),
                    reason,
                });
            }
            if pool.is_buggy(ip) {
                return Err(AllocError::BuggyIp {
                    ip,
                    pool: pool.name().to_owned(),
                });
            }
            self.check_sharing(ip, &req.key, terms)?;
            found.push((ip, p));
        }
        match found.as_slice() {
            [] => Err(AllocError::NoIpsToRestore),
            &[(ip1, p1), (ip2, p2)] if p1 != p2 => Err(AllocError::DifferentPools {
                ip1,
                pool1: self.state(p1).pool.name().to_owned(),
                ip2,
                pool2: self.state(p2).pool.name().to_owned(),
            }),
            &[(ip, _)]
                if source == Source::Request
                    && matches!(policy, FamilyPolicy::RequireDualStack(..)) =>
            {
                Err(AllocError::DualStackNeedsBoth {
                    missing: Family::of(ip).other(),
                })
            }
            &[(_, pool), ..] => Ok(Plan {
                ips: Ips::new(found.iter().map(|f| f.0), policy.first()),
                pool,
            }),
        }
    }

    /// What the Service keeps of its current IPs, completed in this one call. Its pool must
    /// still admit it (and be the requested pool, if one is named). IPs of a family the Service
    /// no longer uses are dropped, and so are IPs it may no longer share under its new terms
    /// (sharing key, backend, ports); the others are kept rather than moving the Service. A
    /// dual-stack Service left with one IP gets the other family (missing, or dropped as no longer
    /// shareable) from the same pool when that pool has one and is not draining (an IP shared
    /// under its key, else the lowest free one): `PreferDualStack` otherwise keeps its one IP,
    /// `RequireDualStack` otherwise returns `None` and moves as a whole, as does a Service left
    /// with nothing.
    ///
    /// The result is a fixed point: an IP dropped here is of a family the Service no longer uses,
    /// or still held by the others it clashes with, so nothing the commit frees could complete
    /// the pair on the next call.
    fn keep_current(&self, req: &ServiceRequest, terms: &Terms) -> Option<Plan> {
        let rec = self.services.get(req.key.as_str())?;
        let pool = &self.state(rec.pool).pool;
        pool.admits(req).ok()?;
        if req
            .requested_pool
            .as_deref()
            .is_some_and(|name| name != pool.name())
        {
            return None;
        }
        let policy = req.families;
        let mut ips: Vec<IpAddr> = rec
            .ips
            .iter()
            .filter(|&ip| policy.allows(Family::of(ip)))
            .filter(|&ip| self.check_sharing(ip, &req.key, terms).is_ok())
            .collect();
        if ips.is_empty() {
            return None;
        }
        if let &[kept] = ips.as_slice()
            && policy.is_dual()
        {
            let missing = Family::of(kept).other();
            let completion = if pool.draining() {
                None
            } else {
                self.pick(rec.pool, missing, &req.key, terms)
            };
            match completion {
                Some(ip) => ips.push(ip),
                None if matches!(policy, FamilyPolicy::RequireDualStack(..)) => return None,
                None => {}
            }
        }
        Some(Plan {
            ips: Ips::new(ips, policy.first()),
            pool: rec.pool,
        })
    }

    /// New addresses from the requested pool, or from the automatic candidates in order (never
    /// from a draining pool).
    ///
    /// The Service's own IPs still count as used here, which cannot change the outcome (so
    /// committing the plan frees nothing the next call could use): this runs only when its pool
    /// may no longer serve it (and is no candidate), when it kept no IP (its IPs are of a family
    /// it no longer uses, or shared with Services it clashes with), or when its pool lacks a
    /// family `RequireDualStack` needs (and fails for that family whatever the Service frees).
    fn fresh(&self, req: &ServiceRequest, terms: &Terms) -> Result<Plan, AllocError> {
        if let Some(name) = &req.requested_pool {
            let p = self
                .layout
                .index_of(name)
                .ok_or_else(|| AllocError::UnknownPool { pool: name.clone() })?;
            let pool = name.clone();
            if self.state(p).pool.draining() {
                return Err(AllocError::PoolDraining { pool });
            }
            if let Err(reason) = self.state(p).pool.admits(req) {
                return Err(AllocError::PoolNotAllowed {
                    ip: None,
                    pool,
                    reason,
                });
            }
            return self
                .fill(&[p], req, terms)
                .map_err(|shortfall| match shortfall {
                    Shortfall::NoPool(family) => AllocError::FamilyNotInPool { pool, family },
                    Shortfall::Full(family, _) => AllocError::PoolExhausted { pool, family },
                });
        }
        let candidates: Vec<usize> = (self.layout.auto_order().iter().copied())
            .filter(|&p| self.state(p).pool.admits(req).is_ok())
            .collect();
        self.fill(&candidates, req, terms)
            .map_err(|shortfall| match shortfall {
                Shortfall::NoPool(family) => AllocError::NoEligiblePool { family },
                Shortfall::Full(family, pools) => AllocError::NoAddressAvailable {
                    family,
                    pools: pools
                        .iter()
                        .map(|&p| self.state(p).pool.name().to_owned())
                        .collect(),
                },
            })
    }

    /// The first candidate (in order) that can give what the family policy needs.
    fn fill(
        &self,
        candidates: &[usize],
        req: &ServiceRequest,
        terms: &Terms,
    ) -> Result<Plan, Shortfall> {
        let policy = req.families;
        let (first, second) = (policy.first(), policy.first().other());
        let pick = |p: usize, family| self.pick(p, family, &req.key, terms);
        let plan = |pool, ips: &[IpAddr]| Plan {
            ips: Ips::new(ips.iter().copied(), first),
            pool,
        };
        let both =
            |p: usize| pick(p, first).and_then(|a| pick(p, second).map(|b| plan(p, &[a, b])));
        let one = |family| {
            candidates
                .iter()
                .find_map(|&p| pick(p, family).map(|ip| plan(p, &[ip])))
        };
        let (found, wanted, offers): (_, _, &dyn Fn(&PoolState) -> bool) = match policy {
            FamilyPolicy::SingleStack(f) => (one(f), Wanted::One(f), &move |s| s.offers(f)),
            FamilyPolicy::RequireDualStack(..) => (
                candidates.iter().find_map(|&p| both(p)),
                Wanted::Both,
                &|s| s.offers(first) && s.offers(second),
            ),
            FamilyPolicy::PreferDualStack(..) => (
                candidates
                    .iter()
                    .find_map(|&p| both(p))
                    .or_else(|| one(first))
                    .or_else(|| one(second)),
                Wanted::Either,
                &|s| s.offers(first) || s.offers(second),
            ),
        };
        found.ok_or_else(|| {
            let offering: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&p| offers(self.state(p)))
                .collect();
            if offering.is_empty() {
                Shortfall::NoPool(wanted)
            } else {
                Shortfall::Full(wanted, offering)
            }
        })
    }

    /// The address of `family` the Service would get from pool `p`: the lowest IP already held
    /// under its sharing key that it may share, else the lowest free one.
    fn pick(&self, p: usize, family: Family, key: &str, terms: &Terms) -> Option<IpAddr> {
        if let Some(held) = terms.sharing_key().and_then(|k| self.shared.get(k)) {
            let span = match family {
                Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED)..=IpAddr::V4(Ipv4Addr::BROADCAST),
                Family::V6 => {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)..=IpAddr::V6(Ipv6Addr::from(u128::MAX))
                }
            };
            let shareable = held.range(span).map(|(&ip, _)| ip).find(|&ip| {
                self.layout.pool_at(ip) == Some(p) && self.check_sharing(ip, key, terms).is_ok()
            });
            if shareable.is_some() {
                return shareable;
            }
        }
        self.state(p).first_free(family)
    }

    /// Whether the Service `key` holds `ip` now.
    fn holds(&self, key: &str, ip: IpAddr) -> bool {
        self.services
            .get(key)
            .is_some_and(|rec| rec.ips.iter().any(|held| held == ip))
    }

    /// The sharing rule for `key` holding `ip` with `terms`, against every other holder.
    fn check_sharing(&self, ip: IpAddr, key: &str, terms: &Terms) -> Result<(), AllocError> {
        let others = (self.holders.of(ip).iter())
            .filter(|holder| &***holder != key)
            .filter_map(|holder| Some((&**holder, &self.services.get(holder)?.terms)));
        sharing::check(ip, terms, others).map_err(AllocError::from)
    }

    /// Applies a plan: replaces whatever the Service held.
    fn commit(&mut self, key: &str, plan: Plan, terms: Terms) -> Assignment {
        let rec = Record {
            ips: plan.ips,
            pool: plan.pool,
            terms,
        };
        let assignment = self.assignment(&rec);
        if self.services.get(key) != Some(&rec) {
            let key = self
                .detach(key)
                .map_or_else(|| Arc::from(key), |(key, _)| key);
            self.attach(key, rec);
        }
        assignment
    }

    fn attach(&mut self, key: Arc<str>, rec: Record) {
        let state = &mut self.layout.pools[rec.pool];
        state.services += 1;
        for ip in rec.ips.iter() {
            if self.holders.add(ip, &key) {
                state.mark_used(ip);
            }
            if let Some(sharing_key) = rec.terms.sharing_key() {
                let ips = match self.shared.get_mut(sharing_key) {
                    Some(ips) => ips,
                    None => self.shared.entry(sharing_key.into()).or_default(),
                };
                *ips.entry(ip).or_default() += 1;
            }
        }
        self.services.insert(key, rec);
    }

    fn detach(&mut self, key: &str) -> Option<(Arc<str>, Record)> {
        let (key, rec) = self.services.remove_entry(key)?;
        let state = &mut self.layout.pools[rec.pool];
        state.services -= 1;
        for ip in rec.ips.iter() {
            if self.holders.remove(ip, &key) {
                state.mark_free(ip);
            }
            if let Some(sharing_key) = rec.terms.sharing_key()
                && let Some(ips) = self.shared.get_mut(sharing_key)
            {
                if let Some(count) = ips.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        ips.remove(&ip);
                    }
                }
                if ips.is_empty() {
                    self.shared.remove(sharing_key);
                }
            }
        }
        Some((key, rec))
    }
}

#[cfg(test)]
mod tests;
