//! Leader election on a `coordination.k8s.io/v1` Lease, with fencing: only the holder runs the
//! controller, and a replica that cannot show a recent renewal writes nothing.
//!
//! ```text
//! campaign task: every retry period, read the Lease ─> Elector::decide (pure) ─> create /
//!                take over / renew it (replace, resourceVersion precondition) ─> Elector::written
//!      │  leading = a renewal started less than the renew deadline ago (monotonic clock)
//!      ├─> LeaseGuard (checked before every write the controller sends)
//!      └─> watch channel ─> lead(): runs the runtime while true, drops it when false
//! ```
//!
//! The renew deadline (2/3 of the lease duration) is measured from when the last successful
//! renewal was *sent*, on this process's monotonic clock, which keeps running while the process
//! is stopped (SIGSTOP). Another replica takes over only after it has seen the Lease unchanged
//! for the whole lease duration on its own clock, which starts no earlier than that send. So
//! once a successor can hold the lease, this replica's guard has refused every write for a third
//! of the lease duration, whatever the clocks say, and the runtime is dropped soon after. Errors
//! reading or writing the Lease are logged and counted, never retried silently forever: with
//! no successful renewal, leadership simply runs out at the deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::Args;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::runtime::{self, RuntimeConfig};

/// Lease name in the controller's namespace.
pub const LEASE_NAME: &str = "ferrolb-controller";

/// How long shutdown waits for the lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(4);

/// The lease's timings, all derived from its duration as client-go's defaults are (15 s
/// duration, 10 s renew deadline, 2 s retry period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long the Lease is valid without renewal, as written in it.
    pub duration: Duration,
    /// How long this replica acts as leader after the last successful renewal was sent.
    pub renew_deadline: Duration,
    /// How often the Lease is read (and renewed by the holder); also the timeout of each request.
    pub retry_period: Duration,
}

impl LeaseTiming {
    /// The timings for a lease of `duration`.
    pub fn for_duration(duration: Duration) -> Self {
        Self {
            duration,
            renew_deadline: duration * 2 / 3,
            retry_period: (duration * 2 / 15).max(Duration::from_millis(100)),
        }
    }
}

/// What the campaign does next with the Lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing: another replica holds a lease that has not run out.
    Wait,
    /// No Lease exists: create it, held by us.
    Create(LeaseSpec),
    /// Replace the Lease at this resourceVersion (a 409 means someone else was faster).
    Replace {
        /// The precondition.
        resource_version: String,
        /// What to write.
        spec: LeaseSpec,
    },
}

/// What of a Lease shows that its holder is alive: any change restarts the expiry clock.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
}

/// The election as a state machine: Lease readings and write results in, steps out. Time is
/// passed in, so tests need no clock.
#[derive(Debug, Clone)]
pub struct Elector {
    identity: String,
    timing: LeaseTiming,
    /// Until when this replica may act as leader.
    leading_until: Option<Instant>,
    /// Another holder's record and when this replica first saw it so.
    observed: Option<(Record, Instant)>,
}

impl Elector {
    /// An elector for the replica `identity`.
    pub fn new(identity: impl Into<String>, timing: LeaseTiming) -> Self {
        Self {
            identity: identity.into(),
            timing,
            leading_until: None,
            observed: None,
        }
    }

    /// Whether this replica may act as leader at `now`.
    pub fn leading(&self, now: Instant) -> bool {
        self.leading_until.is_some_and(|until| now < until)
    }

    /// Until when this replica may act as leader, if it leads.
    pub fn leading_until(&self) -> Option<Instant> {
        self.leading_until
    }

    fn our_spec(&self, now_wall: MicroTime, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let ours = previous
            .and_then(|p| p.holder_identity.as_deref())
            .is_some_and(|h| h == self.identity);
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.timing.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(now_wall.clone())
            },
            renew_time: Some(now_wall),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions.saturating_add(1)
            }),
            ..LeaseSpec::default()
        }
    }

    /// What to do about `lease`, read at `now` (`now_wall` goes into the Lease for humans).
    pub fn decide(&mut self, now: Instant, now_wall: MicroTime, lease: Option<&Lease>) -> Step {
        let Some(lease) = lease else {
            self.observed = None;
            return Step::Create(self.our_spec(now_wall, None));
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let resource_version = lease.metadata.resource_version.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let replace = |elector: &Self| Step::Replace {
            resource_version: resource_version.clone(),
            spec: elector.our_spec(now_wall.clone(), Some(&spec)),
        };
        match holder {
            Some(h) if h == self.identity => {
                self.observed = None;
                replace(self)
            }
            None => {
                self.observed = None;
                replace(self)
            }
            Some(_) => {
                // Someone else holds it: we do not lead, whatever we believed.
                self.leading_until = None;
                let record = Record {
                    holder: spec.holder_identity.clone(),
                    renew_time: spec.renew_time.clone(),
                    transitions: spec.lease_transitions,
                };
                let since = match &self.observed {
                    Some((seen, at)) if *seen == record => *at,
                    _ => {
                        self.observed = Some((record, now));
                        now
                    }
                };
                let their_duration = spec
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.timing.duration, Duration::from_secs);
                if now.saturating_duration_since(since) >= their_duration {
                    replace(self)
                } else {
                    Step::Wait
                }
            }
        }
    }

    /// The write of a step whose request was sent at `sent` succeeded: this replica leads until
    /// the renew deadline counted from then.
    pub fn written(&mut self, sent: Instant) {
        self.leading_until = Some(sent + self.timing.renew_deadline);
    }

    /// This replica gave the lease up.
    pub fn released(&mut self) {
        self.leading_until = None;
    }
}

/// Shared "may I write?" check: the campaign sets the deadline, every write asks before it is
/// sent. Without leader election it always answers yes.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    /// `None`: no election, always valid.
    until: Option<Arc<Mutex<Option<Instant>>>>,
}

impl LeaseGuard {
    /// A guard for a controller that runs without leader election.
    pub fn always() -> Self {
        Self { until: None }
    }

    /// A guard that refuses until [`LeaseGuard::set`] says otherwise.
    pub fn fenced() -> Self {
        Self {
            until: Some(Arc::new(Mutex::new(None))),
        }
    }

    /// Writes are allowed until `until`.
    pub fn set(&self, until: Option<Instant>) {
        if let Some(slot) = &self.until
            && let Ok(mut slot) = slot.lock()
        {
            *slot = until;
        }
    }

    /// Whether a write may be sent now.
    pub fn holds(&self) -> bool {
        match &self.until {
            None => true,
            Some(slot) => slot
                .lock()
                .map(|until| until.is_some_and(|u| Instant::now() < u))
                .unwrap_or(false),
        }
    }

    /// [`Error::NotLeader`] unless a write may be sent now.
    ///
    /// # Errors
    /// [`Error::NotLeader`].
    pub fn check(&self) -> Result<(), Error> {
        if self.holds() {
            Ok(())
        } else {
            Err(Error::NotLeader)
        }
    }
}

/// Runs the controller whenever this replica holds the lease, until `shutdown` resolves; then
/// releases the lease (waiting at most a few seconds) so a successor takes over at once.
///
/// # Errors
/// [`Error::TaskEnded`] when the campaign task ends, and what [`runtime::run_fenced`] returns.
pub async fn run_as_leader(
    client: kube::Client,
    args: &Args,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("ferrolb-controller-{}", std::process::id()));
    let timing = LeaseTiming::for_duration(Duration::from_secs(args.lease_duration_seconds.max(1)));
    let api: Api<Lease> = Api::namespaced(client.clone(), &args.namespace);
    let guard = LeaseGuard::fenced();
    let (tx, rx) = watch::channel(false);
    // Its own task, so that even when this future is dropped (not only on shutdown) the
    // campaign sees the channel close and releases the lease.
    let mut campaign = tokio::spawn(campaign(
        api,
        Elector::new(identity.clone(), timing),
        guard.clone(),
        tx,
        metrics.clone(),
    ));
    let result = tokio::select! {
        result = lead(rx, client, &identity, config, metrics.clone(), ready, guard.clone()) => result,
        joined = &mut campaign => {
            tracing::error!(?joined, "the leader election task ended");
            Err(Error::TaskEnded("leader election"))
        }
        () = shutdown => Ok(()),
    };
    // `lead` is dropped, and with it the receiver: the campaign releases the lease and ends.
    guard.set(None);
    metrics.set_leader(false);
    if campaign.is_finished() {
        return result;
    }
    if tokio::time::timeout(RELEASE_TIMEOUT, campaign)
        .await
        .is_err()
    {
        tracing::warn!("lease not released in time; the successor waits for it to expire");
    } else {
        tracing::info!("leader lease released");
    }
    result
}

/// Counts and logs a failed Lease request.
fn lease_error(metrics: &Metrics, error: &Error) {
    metrics.count(error);
    tracing::warn!(error = %error, "leader lease request failed; leadership ends at the renew deadline unless a retry succeeds");
}

/// A Lease request with the retry period as its timeout.
async fn lease_request<T>(
    what: &'static str,
    timeout: Duration,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(Error::LeaseRenew { what, source }),
        Err(_) => Err(Error::LeaseTimeout {
            what,
            seconds: timeout.as_secs_f64(),
        }),
    }
}

fn is_conflict(error: &Error) -> bool {
    matches!(error, Error::LeaseRenew { source: kube::Error::Api(e), .. } if e.code == 409)
}

async fn campaign(
    api: Api<Lease>,
    mut elector: Elector,
    guard: LeaseGuard,
    leading: watch::Sender<bool>,
    metrics: Arc<Metrics>,
) {
    let retry = elector.timing.retry_period;
    let mut current: Option<Lease> = None;
    loop {
        let sent = Instant::now();
        match lease_request("read", retry, api.get_opt(LEASE_NAME)).await {
            Ok(lease) => {
                let wall = MicroTime(k8s_openapi::jiff::Timestamp::now());
                let step = elector.decide(sent, wall, lease.as_ref());
                current = lease;
                let written = match step {
                    Step::Wait => None,
                    Step::Create(spec) => {
                        let lease = Lease {
                            metadata: ObjectMeta {
                                name: Some(LEASE_NAME.to_owned()),
                                ..ObjectMeta::default()
                            },
                            spec: Some(spec),
                        };
                        Some(
                            lease_request(
                                "create",
                                retry,
                                api.create(&PostParams::default(), &lease),
                            )
                            .await,
                        )
                    }
                    Step::Replace {
                        resource_version,
                        spec,
                    } => {
                        let lease = Lease {
                            metadata: ObjectMeta {
                                name: Some(LEASE_NAME.to_owned()),
                                resource_version: Some(resource_version),
                                ..ObjectMeta::default()
                            },
                            spec: Some(spec),
                        };
                        Some(
                            lease_request(
                                "update",
                                retry,
                                api.replace(LEASE_NAME, &PostParams::default(), &lease),
                            )
                            .await,
                        )
                    }
                };
                match written {
                    Some(Ok(lease)) => {
                        elector.written(sent);
                        current = Some(lease);
                    }
                    // Another replica wrote first: read again next round.
                    Some(Err(e)) if is_conflict(&e) => {
                        tracing::debug!(error = %e, "leader lease changed meanwhile");
                    }
                    Some(Err(e)) => lease_error(&metrics, &e),
                    None => {}
                }
            }
            Err(e) => lease_error(&metrics, &e),
        }
        let now = Instant::now();
        let is_leader = elector.leading(now);
        guard.set(elector.leading_until().filter(|_| is_leader));
        metrics.set_leader(is_leader);
        leading.send_if_modified(|was| {
            let changed = *was != is_leader;
            *was = is_leader;
            changed
        });
        // Wake for the next round, or at the deadline to step down on time.
        let mut next = now + retry;
        if let Some(until) = elector.leading_until().filter(|u| *u > now) {
            next = next.min(until);
        }
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            () = leading.closed() => {
                release(&api, &mut elector, current.as_ref(), retry).await;
                return;
            }
        }
    }
}

/// Gives the lease up, if this replica holds it, so a successor need not wait for it to expire.
async fn release(
    api: &Api<Lease>,
    elector: &mut Elector,
    current: Option<&Lease>,
    retry: Duration,
) {
    let was_leading = elector.leading(Instant::now());
    elector.released();
    let Some(lease) = current.filter(|_| was_leading) else {
        return;
    };
    let mut released = lease.clone();
    if let Some(spec) = released.spec.as_mut() {
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
    }
    if let Err(e) = lease_request(
        "release",
        retry,
        api.replace(LEASE_NAME, &PostParams::default(), &released),
    )
    .await
    {
        tracing::warn!(error = %e, "could not release the leader lease");
    }
}

async fn lead(
    mut leading: watch::Receiver<bool>,
    client: kube::Client,
    identity: &str,
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    guard: LeaseGuard,
) -> Result<(), Error> {
    // A standby is ready: it serves nothing until it leads, and readiness gates rollouts.
    ready.store(true, Ordering::Relaxed);
    loop {
        if *leading.borrow_and_update() {
            tracing::info!(%identity, "became leader");
            ready.store(false, Ordering::Relaxed);
            tokio::select! {
                result = runtime::run_fenced(client.clone(), config.clone(), metrics.clone(), ready.clone(), guard.clone()) => {
                    result?;
                }
                changed = leading.changed() => {
                    changed.map_err(|_| Error::TaskEnded("leader election"))?;
                }
            }
            // Lost the lease (or the runtime ended): the engine is dropped here, so nothing
            // more is decided or written.
            tracing::warn!(%identity, "lost leadership; stopped the engine");
            // A standby's engine does not run: its silence is no hang.
            config.heartbeat.rest();
            metrics.config_loaded.set(0);
            ready.store(true, Ordering::Relaxed);
        } else {
            leading
                .changed()
                .await
                .map_err(|_| Error::TaskEnded("leader election"))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(15);

    fn timing() -> LeaseTiming {
        LeaseTiming::for_duration(T)
    }

    fn wall() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn lease(holder: Option<&str>, rv: &str, renewals: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(LEASE_NAME.into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    k8s_openapi::jiff::Timestamp::from_second(renewals).unwrap_or_default(),
                )),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn timings_follow_client_go_defaults() {
        let t = timing();
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(2));
    }

    #[test]
    fn no_lease_is_created_and_a_free_one_taken_with_a_precondition() {
        let mut e = Elector::new("a", timing());
        let now = Instant::now();
        assert!(
            matches!(e.decide(now, wall(), None), Step::Create(s) if s.holder_identity.as_deref() == Some("a"))
        );
        let Step::Replace {
            resource_version,
            spec,
        } = e.decide(now, wall(), Some(&lease(None, "7", 0)))
        else {
            panic!("a free lease is taken");
        };
        assert_eq!(resource_version, "7");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert!(!e.leading(now), "leading only once the write landed");
    }

    #[test]
    fn leadership_runs_out_at_the_renew_deadline_counted_from_the_send() {
        let mut e = Elector::new("a", timing());
        let sent = Instant::now();
        e.written(sent);
        assert!(e.leading(sent + Duration::from_secs(9)));
        assert!(
            !e.leading(sent + Duration::from_secs(10)),
            "no renewal for the renew deadline (a pause, a cut-off API) ends leadership"
        );
        assert!(
            T > Duration::from_secs(10),
            "and that is within the lease duration"
        );
    }

    #[test]
    fn another_holders_lease_is_taken_only_after_it_stayed_unchanged_for_its_duration() {
        let mut e = Elector::new("b", timing());
        let t0 = Instant::now();
        assert_eq!(
            e.decide(t0, wall(), Some(&lease(Some("a"), "1", 1))),
            Step::Wait
        );
        // Renewed meanwhile: the clock starts again.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(
            e.decide(t1, wall(), Some(&lease(Some("a"), "2", 2))),
            Step::Wait
        );
        assert_eq!(
            e.decide(
                t1 + Duration::from_secs(14),
                wall(),
                Some(&lease(Some("a"), "2", 2))
            ),
            Step::Wait
        );
        assert!(matches!(
            e.decide(t1 + T, wall(), Some(&lease(Some("a"), "2", 2))),
            Step::Replace { resource_version, .. } if resource_version == "2"
        ));
    }

    #[test]
    fn seeing_another_holder_ends_leadership_at_once() {
        let mut e = Elector::new("a", timing());
        let now = Instant::now();
        e.written(now);
        assert!(e.leading(now));
        e.decide(now, wall(), Some(&lease(Some("b"), "9", 3)));
        assert!(!e.leading(now));
    }

    #[test]
    fn our_own_lease_is_renewed_and_keeps_its_transition_count() {
        let mut e = Elector::new("a", timing());
        let mut ours = lease(Some("a"), "4", 1);
        if let Some(s) = ours.spec.as_mut() {
            s.lease_transitions = Some(3);
        }
        let Step::Replace { spec, .. } = e.decide(Instant::now(), wall(), Some(&ours)) else {
            panic!("renew");
        };
        assert_eq!(spec.lease_transitions, Some(3));
        let mut theirs = lease(Some("b"), "5", 1);
        if let Some(s) = theirs.spec.as_mut() {
            s.lease_transitions = Some(3);
        }
        let later = Instant::now();
        e.decide(later, wall(), Some(&theirs));
        let Step::Replace { spec, .. } = e.decide(later + T, wall(), Some(&theirs)) else {
            panic!("take over");
        };
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn a_fenced_guard_refuses_until_set_and_after_the_deadline() {
        let guard = LeaseGuard::fenced();
        assert!(!guard.holds());
        guard.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(guard.holds());
        guard.set(Some(Instant::now()));
        assert!(matches!(guard.check(), Err(Error::NotLeader)));
        assert!(LeaseGuard::always().holds());
    }
}
