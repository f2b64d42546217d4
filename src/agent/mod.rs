//! The long-running reconciler (`dockwright agent`): keeps the daemon converged to a desired
//! state that changes over time. Triggers are desired-state changes, Docker events, a periodic
//! resync (the safety net) and back-off expiry. Each pass observes, plans, drops what must
//! not run now (resources already being reconciled or backing off) and runs the rest as
//! independent groups, so a slow rollout never holds up an unrelated resource and no resource
//! is reconciled twice at once. The file source and the Kubernetes controller both feed it.

pub mod backoff;
mod bounded;
mod client;
mod fresh_pulls;
mod revisions;
mod status;
mod triggers;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore};

use crate::desired::ResourceKey;
use crate::docker::{DaemonEvent, Docker, DockerRunner};
use crate::execute::{execute, ActionReport, ExecuteOptions, Outcome};
use crate::metrics::Metrics;
use crate::plan::{self, PlanOptions, Reason};
use crate::server::AgentState;
use crate::source::watch::DesiredSnapshot;
pub use backoff::{BackoffPolicy, Backoffs};
pub use client::{fetch_status, StatusError};
pub use fresh_pulls::FreshPulls;
pub use revisions::{unfit_reason, GroupVerdict, RevisionBackoff, RevisionBackoffs};
pub use status::{AgentStatus, ResourceStatus};
pub use triggers::ImageInterest;

/// Settings of the agent loop.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Owner label value.
    pub owner: String,
    /// Source identity: labels what the agent creates and scopes its pruning (see
    /// [`crate::plan::PlanOptions::source`]). Default: `kubernetes`'s counterpart for files
    /// is set by the CLI (the directory's canonical path, or `--source`).
    pub source: crate::source::SourceId,
    /// Take over resources another source of the same owner declared (`--take-over`).
    pub take_over: bool,
    /// Record adoptions (see [`crate::plan::PlanOptions::record_adoptions`]); set when the
    /// daemon handle keeps adoption records.
    pub record_adoptions: bool,
    /// Full resync interval (the safety net; events do the real work).
    pub resync: Duration,
    /// Per-resource failure back-off.
    pub backoff: BackoffPolicy,
    /// Daemon actions in flight at once, across all groups (`None`: sized for the daemon).
    pub concurrency: Option<usize>,
    /// How long to gather more triggers before a pass (bursts of events become one pass).
    pub coalesce: Duration,
    /// How long shutdown waits for in-flight actions.
    pub shutdown_grace: Duration,
    /// Policy and secret sealing applied to every desired state before planning (both
    /// modes); refused resources are blocked and left as they are.
    pub gate: crate::policy::Gate,
    /// Registry credentials for pulls, pushes and digest checks.
    pub credentials: crate::credentials::Credentials,
    /// Where pulled images are recorded (so `prune` can remove them later); `None`: not recorded.
    pub image_records: Option<Arc<crate::image_records::ImageRecords>>,
    /// Receives every pass's [`PassReport`] (the Kubernetes node agent writes status from it).
    pub pass_reports: Option<watch::Sender<Option<Arc<PassReport>>>>,
}

/// What one pass saw and concluded, for a front end that reports it elsewhere.
#[derive(Clone, Debug)]
pub struct PassReport {
    /// The desired state the pass planned for (before the policy gate).
    pub desired: Arc<crate::desired::DesiredState>,
    /// The observation the pass planned from.
    pub observed: Arc<crate::observed::ObservedState>,
    /// The status the pass published on `/state`.
    pub status: Arc<AgentStatus>,
}

impl AgentOptions {
    /// Defaults for `owner`: resync 5 min, kubelet-like back-off, 20 ms coalescing.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            source: crate::source::SourceId::kubernetes(),
            take_over: false,
            record_adoptions: false,
            resync: Duration::from_secs(300),
            backoff: BackoffPolicy::default(),
            concurrency: None,
            coalesce: Duration::from_millis(20),
            shutdown_grace: Duration::from_secs(30),
            gate: crate::policy::Gate::default(),
            credentials: crate::credentials::Credentials::default(),
            image_records: None,
            pass_reports: None,
        }
    }
}

/// What one group of actions did, sent back to the loop.
struct GroupDone {
    resources: BTreeSet<ResourceKey>,
    reports: Vec<ActionReport>,
    verdict: revisions::GroupVerdict,
    drift: Vec<&'static str>,
    first_pass: bool,
    /// References the group pulled successfully.
    pulled: Vec<String>,
    /// When the pass that dispatched the group planned it: pulls count as fresh from then,
    /// so the next resync tick, one interval later, pulls again.
    planned_at: Instant,
}

/// Runs the agent until `shutdown` completes, then waits (bounded) for in-flight actions and
/// returns. Containers are left running.
pub async fn run(
    docker: Docker,
    mut desired_rx: watch::Receiver<DesiredSnapshot>,
    options: AgentOptions,
    metrics: Arc<Metrics>,
    state: AgentState,
    shutdown: impl Future<Output = ()>,
) -> crate::Result<()> {
    let mut runner = DockerRunner::new(docker.clone(), options.owner.clone())
        .with_source(&options.source)
        .with_credentials(options.credentials.clone());
    if let Some(records) = &options.image_records {
        runner = runner.with_image_records(Arc::clone(records));
    }
    let runner = Arc::new(runner);
    let (event_tx, mut event_rx) = mpsc::channel::<DaemonEvent>(1024);
    let events = {
        let docker = docker.clone();
        let owner = options.owner.clone();
        tokio::spawn(async move { docker.follow_events(&owner, event_tx).await })
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<GroupDone>();
    let resync_interval = options.resync;
    let mut agent = Loop {
        docker,
        runner,
        options,
        metrics,
        state,
        backoffs: Backoffs::default(),
        revisions: RevisionBackoffs::default(),
        fresh_pulls: FreshPulls::for_resync(resync_interval),
        in_flight: BTreeMap::new(),
        permits: None,
        image_interest: triggers::ImageInterest::default(),
        first_pass_groups: None,
        passes: 0,
        daemon_up: true,
        retry_at: None,
        updates: crate::updates::UpdateTracker::default(),
        next_update_check: None,
        done_tx,
        last_errors: BTreeMap::new(),
    };
    agent.backoffs = Backoffs::new(agent.options.backoff);
    agent.revisions = RevisionBackoffs::new(agent.options.backoff);
    tokio::pin!(shutdown);
    let mut resync = tokio::time::interval(agent.options.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    let mut dirty = true;
    loop {
        if !dirty {
            let wake = agent.next_wake();
            tokio::select! {
                () = &mut shutdown => break,
                changed = desired_rx.changed() => {
                    if changed.is_err() {
                        tracing::warn!("desired-state source ended; stopping");
                        break;
                    }
                    dirty = true;
                }
                Some(event) = event_rx.recv() => dirty = agent.on_event(&event),
                Some(done) = done_rx.recv() => {
                    agent.on_done(done);
                    dirty = true;
                }
                _ = resync.tick() => dirty = true,
                () = sleep_until(wake) => dirty = true,
            }
            continue;
        }
        // Gather the rest of a burst, then run one pass for all of it.
        tokio::time::sleep(agent.options.coalesce).await;
        while let Ok(event) = event_rx.try_recv() {
            agent.on_event(&event);
        }
        while let Ok(done) = done_rx.try_recv() {
            agent.on_done(done);
        }
        let input = desired_rx.borrow_and_update().clone();
        agent.pass(&input).await;
        dirty = false;
    }
    events.abort();
    agent.drain(&mut done_rx).await;
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The loop's state. Owned by [`run`]; groups report back through `done_tx`.
struct Loop {
    docker: Docker,
    runner: Arc<DockerRunner>,
    options: AgentOptions,
    metrics: Arc<Metrics>,
    state: AgentState,
    backoffs: Backoffs,
    /// Revisions that never became healthy, held back while they wait.
    revisions: RevisionBackoffs,
    fresh_pulls: FreshPulls,
    /// Resources whose actions are running, with the number of groups holding them.
    in_flight: BTreeMap<ResourceKey, usize>,
    /// Daemon actions in flight at once across all groups (set at the first dispatch).
    permits: Option<Arc<Semaphore>>,
    /// Images whose removal matters, as of the last pass.
    image_interest: triggers::ImageInterest,
    /// Groups of the first pass still running; `Some(0)` once done (then the agent is ready).
    first_pass_groups: Option<usize>,
    passes: u64,
    daemon_up: bool,
    /// When observing failed: try again at this instant.
    retry_at: Option<Instant>,
    /// Registry digests seen per moving tag (for `updateInterval` and `minAge`).
    updates: crate::updates::UpdateTracker,
    /// When the shortest `updateInterval` among declared images comes round again.
    next_update_check: Option<Instant>,
    done_tx: mpsc::UnboundedSender<GroupDone>,
    /// Last action error per resource (kept after the back-off ends, cleared on success).
    last_errors: BTreeMap<ResourceKey, String>,
}

impl Loop {
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        [
            self.backoffs.next_retry(now),
            self.revisions.next_retry(now),
            self.retry_at,
            self.next_update_check,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Takes an event in; true when it calls for a pass (see [`triggers`]).
    fn on_event(&mut self, event: &DaemonEvent) -> bool {
        self.metrics.count_docker_event(event);
        if !self.image_interest.wants(event) {
            if let DaemonEvent::Image { id, action, .. } = event {
                tracing::debug!(%id, %action, "image event ignored: not an image of ours");
            }
            return false;
        }
        match event {
            DaemonEvent::Connected => {
                if !self.daemon_up {
                    tracing::info!("docker daemon is back; relisting");
                }
                self.daemon_up = true;
            }
            DaemonEvent::Disconnected { reason } => {
                tracing::warn!(%reason, "docker daemon unreachable");
                self.daemon_up = false;
            }
            DaemonEvent::Container {
                resource, action, ..
            } => {
                tracing::debug!(resource = ?resource.as_ref().map(ToString::to_string), %action, "container event");
            }
            DaemonEvent::Image { id, action, .. } => tracing::debug!(%id, %action, "image event"),
        }
        true
    }

    fn on_done(&mut self, done: GroupDone) {
        let now = Instant::now();
        for report in &done.reports {
            self.metrics.count_action(report);
        }
        for reason in &done.drift {
            self.metrics.count_drift_correction(reason);
        }
        self.fresh_pulls.record(done.pulled, done.planned_at);
        for key in &done.resources {
            if let Some(n) = self.in_flight.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(key);
                }
            }
            // A revision that never became healthy backs off on its own (the planner rolls it
            // back at once and keeps the previous revision while it waits).
            if let Some((revision, detail)) = done.verdict.unfit.get(key) {
                let reason = unfit_reason(revision, detail);
                if let Some(delay) = self.revisions.failed(key, revision, reason.clone(), now) {
                    tracing::warn!(resource = %key, error = %reason, retry_in = ?delay, "rollout failed; rolling back");
                    self.last_errors.insert(key.clone(), reason);
                }
            }
            match done.verdict.failures.get(key) {
                Some(error) => {
                    let delay = self.backoffs.failed(key, error.message.clone(), now);
                    tracing::warn!(resource = %key, %error, retry_in = ?delay, "reconcile failed; backing off");
                    self.last_errors.insert(key.clone(), error.message.clone());
                }
                None => {
                    self.backoffs.succeeded(key);
                    self.revisions.succeeded(key, now);
                    if self.revisions.waiting(key, now).is_none() {
                        self.last_errors.remove(key);
                    }
                }
            }
        }
        if done.first_pass {
            if let Some(n) = self.first_pass_groups.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.state.set_ready();
                    tracing::info!("first full reconcile pass done; ready");
                }
            }
        }
    }

    /// One observe → plan → dispatch pass.
    async fn pass(&mut self, input: &DesiredSnapshot) {
        let started = Instant::now();
        self.retry_at = None;
        if !self.daemon_up {
            // The events stream reconnects on its own and says so; until then, do nothing.
            return;
        }
        // Registry digests of moving tags, each checked no more often than its updateInterval;
        // the tracker keeps first-seen times for minAge in memory.
        let now_wall = std::time::SystemTime::now();
        let failures = crate::docker::check_updates(
            &self.docker,
            &self.options.credentials,
            &input.desired,
            &mut self.updates,
            now_wall,
            false,
        )
        .await;
        for failure in failures {
            tracing::warn!(resource = %failure.resource, error = %failure.error, "registry digest check failed");
        }
        self.updates.retain_declared(&input.desired);
        let observer = crate::docker::ImageObserver {
            docker: self.docker.clone(),
            registry_digests: self.updates.due_digests(&input.desired, now_wall),
            prune: input.complete,
            records: self.options.image_records.clone(),
        };
        self.next_update_check = min_update_interval(&input.desired).map(|d| Instant::now() + d);
        let observed = match crate::converge::Observe::observe(&observer, &self.options.owner).await
        {
            Ok(observed) => observed,
            Err(error) => {
                tracing::warn!(%error, "observing the daemon failed; retrying in 1 s");
                self.metrics.observe_reconcile(started.elapsed(), false);
                self.retry_at = Some(Instant::now() + Duration::from_secs(1));
                return;
            }
        };
        self.passes += 1;
        self.image_interest =
            triggers::ImageInterest::of(&input.desired, &observed, &self.options.owner);
        let admission = self.options.gate.admit(&input.desired);
        let plan = admission.hold(plan::plan(
            &admission.desired,
            &observed,
            &PlanOptions {
                owner: self.options.owner.clone(),
                source: self.options.source.as_str().to_string(),
                take_over: self.options.take_over,
                record_adoptions: self.options.record_adoptions,
                prune: input.complete,
                failed_revisions: self.revisions.held(Instant::now()),
                fresh_pulls: self.fresh_pulls.fresh(started),
            },
        ));
        let plan = plan::hold(plan, &input.held);
        let plan = match &input.prune_only {
            Some(removable) => plan::restrict(&plan, |key| {
                input.desired.declares(key) || removable.contains(key)
            }),
            None => plan,
        };
        self.backoffs.retain(|k| {
            input.desired.containers.contains_key(k) || input.desired.images.contains_key(k)
        });
        self.revisions
            .retain(|k| input.desired.containers.contains_key(k));
        let now = Instant::now();
        let runnable = plan::restrict(&plan, |k| {
            !self.in_flight.contains_key(k) && !self.backoffs.waiting(k, now)
        });
        let groups = plan::independent_groups(&runnable);
        log_changes(&groups, input.revision.as_deref());
        let first_pass = self.first_pass_groups.is_none();
        let dispatched = groups.iter().filter(|g| !g.actions.is_empty()).count();
        if first_pass {
            self.first_pass_groups = Some(dispatched);
            if dispatched == 0 {
                self.state.set_ready();
                tracing::info!("first full reconcile pass done; ready");
            }
        }
        let limits = if dispatched == 0 {
            None
        } else {
            Some(self.limits().await)
        };
        for group in groups.into_iter().filter(|g| !g.actions.is_empty()) {
            let resources: BTreeSet<ResourceKey> =
                group.actions.iter().map(|a| a.resource.clone()).collect();
            for key in &resources {
                *self.in_flight.entry(key.clone()).or_default() += 1;
            }
            // One correction per resource and reason: a recreate is a create and a start,
            // both planned because the container is missing.
            let drift: Vec<&'static str> = if first_pass {
                Vec::new()
            } else {
                let corrections: BTreeSet<(&ResourceKey, &'static str)> = group
                    .actions
                    .iter()
                    .filter_map(|a| Some((&a.resource, drift_reason(&a.reason)?)))
                    .collect();
                corrections.into_iter().map(|(_, reason)| reason).collect()
            };
            let Some((concurrency, permits)) = limits.clone() else {
                break; // unreachable: limits are set whenever a group is dispatched
            };
            let runner = bounded::BoundedRunner::new(Arc::clone(&self.runner), permits);
            let tx = self.done_tx.clone();
            tokio::spawn(async move {
                let mut log = |r: &ActionReport| log_report(&group, r);
                let reports =
                    execute(&group, &runner, ExecuteOptions { concurrency }, &mut log).await;
                let verdict = GroupVerdict::of(&group, &reports);
                let pulled = crate::execute::pulled_references(&group, &reports);
                let _ = tx.send(GroupDone {
                    pulled,
                    planned_at: started,
                    resources,
                    reports,
                    verdict,
                    drift,
                    first_pass,
                });
            });
        }
        let status = status::build(
            &input.desired,
            &observed,
            &plan,
            &self.backoffs,
            &self.revisions,
            &self.in_flight,
            &self.last_errors,
            &input.errors,
            self.passes,
            now,
        );
        self.metrics.set_resources(&status.phase_counts());
        let waiting: BTreeSet<&ResourceKey> = self
            .backoffs
            .waiting_keys(now)
            .chain(self.revisions.waiting_keys(now))
            .collect();
        self.metrics.set_backoff_resources(waiting.len());
        self.metrics.observe_reconcile(started.elapsed(), true);
        self.metrics
            .sync_docker_requests(&self.docker.request_counts());
        self.state.publish_state(&status);
        if let Some(reports) = &self.options.pass_reports {
            reports.send_replace(Some(Arc::new(PassReport {
                desired: Arc::clone(&input.desired),
                observed: Arc::new(observed),
                status: Arc::new(status),
            })));
        }
    }

    /// Executor concurrency and the permits every group shares (see [`bounded`]): the
    /// option, else sized for the daemon's CPUs, asked once at the first dispatch (asking on
    /// every pass cost a `docker info` per event, on the path of every drift repair); 8 when
    /// the daemon does not say.
    async fn limits(&mut self) -> (usize, Arc<Semaphore>) {
        let concurrency = match self.options.concurrency {
            Some(c) => c,
            None => {
                let c = match self.docker.daemon_cpus().await {
                    Ok(cpus) => crate::docker::concurrency_for_cpus(cpus),
                    Err(error) => {
                        tracing::warn!(%error, "could not ask the daemon for its CPU count; using 8");
                        8
                    }
                };
                *self.options.concurrency.insert(c)
            }
        };
        let permits = self
            .permits
            .get_or_insert_with(|| Arc::new(Semaphore::new(concurrency.max(1))));
        (concurrency, Arc::clone(permits))
    }

    /// Waits for in-flight groups (bounded by the grace period) so daemon calls finish.
    async fn drain(&mut self, done_rx: &mut mpsc::UnboundedReceiver<GroupDone>) {
        let deadline = Instant::now() + self.options.shutdown_grace;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline.into(), done_rx.recv()).await {
                Ok(Some(done)) => self.on_done(done),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// The shortest `updateInterval` of the declared images, if any has one.
fn min_update_interval(desired: &crate::desired::DesiredState) -> Option<Duration> {
    desired
        .images
        .values()
        .filter_map(|i| i.update.as_ref().map(|u| u.interval))
        .min()
}

/// Drift-correction label for an action's reason, when the action repairs drift.
fn drift_reason(reason: &Reason) -> Option<&'static str> {
    match reason {
        Reason::Missing => Some("missing"),
        Reason::NotRunning => Some("not-running"),
        Reason::ShouldBeStopped => Some("running"),
        Reason::Broken => Some("broken"),
        Reason::Duplicate => Some("duplicate"),
        Reason::ImageMissing => Some("image-missing"),
        _ => None,
    }
}

/// Logs, once per resource, why a change is made and from which source revision: the
/// fields that changed (old → new, secrets redacted by the planner) or the removal.
fn log_changes(groups: &[plan::Plan], revision: Option<&str>) {
    let mut seen = BTreeSet::new();
    for action in groups.iter().flat_map(|g| &g.actions) {
        if !matches!(action.reason, Reason::SpecChanged { .. } | Reason::Pruned) {
            continue;
        }
        if seen.insert(&action.resource) {
            match revision {
                Some(revision) => {
                    tracing::info!(resource = %action.resource, %revision, reason = %action.reason, "change planned")
                }
                None => {
                    tracing::info!(resource = %action.resource, reason = %action.reason, "change planned")
                }
            }
        }
    }
}

/// Logs one action's outcome, once, with the reason it was planned for: at info for every
/// daemon write (and adoption) that ran or was skipped, at warn for a failure; a create
/// deferred behind a pull only at debug (it is logged when it runs). File, git and
/// Kubernetes modes share it.
pub fn log_report(plan: &crate::plan::Plan, r: &ActionReport) {
    let reason = plan
        .actions
        .get(r.id)
        .map(|a| a.reason.to_string())
        .unwrap_or_default();
    match &r.outcome {
        Outcome::Succeeded => {
            tracing::info!(resource = %r.resource, verb = r.verb, object = %r.target, %reason, elapsed_ms = r.elapsed.as_millis() as u64, "action done")
        }
        Outcome::Failed { error } => {
            tracing::warn!(resource = %r.resource, verb = r.verb, object = %r.target, %reason, %error, "action failed")
        }
        Outcome::Skipped { .. } => {
            tracing::info!(resource = %r.resource, verb = r.verb, object = %r.target, %reason, "action skipped: a prerequisite failed")
        }
        Outcome::Deferred => {
            tracing::debug!(resource = %r.resource, verb = r.verb, object = %r.target, %reason, "action deferred until the image is present")
        }
    }
}
