//! One reconcile pass, shared by every front end: observe → plan → execute, repeated while
//! the plan holds creates deferred behind an image pull, an image was pulled or built (the
//! containers kept on what its reference named before are planned once its ID is observed),
//! or a rollout did not become healthy and is to be rolled back (at most a few rounds).
//! `apply`, `diff` and `delete` are thin wrappers in `main.rs`; the Kubernetes controller runs
//! the same rounds on a plan narrowed to one object (`kubernetes::controller`).

use std::collections::BTreeSet;

use async_trait::async_trait;

use crate::desired::{DesiredState, ResourceKey};
use crate::execute::{execute, ActionReport, ActionRunner, ExecuteOptions, Outcome};
use crate::observed::ObservedState;
use crate::plan::{self, Action, Blocked, Plan, PlanOptions};

/// Reads the daemon's current state for one owner.
#[async_trait]
pub trait Observe: Send + Sync {
    /// One observation (four or five list calls on a real daemon, see `docker::observe`).
    async fn observe(&self, owner: &str) -> crate::Result<ObservedState>;
    /// Concurrency to use when there is work, sized for the daemon (may ask it).
    async fn default_concurrency(&self) -> usize;
}

/// Settings of a pass.
#[derive(Clone, Debug)]
pub struct ConvergeOptions {
    /// Owner label value.
    pub owner: String,
    /// Source identity (see [`crate::plan::PlanOptions::source`]); empty: unscoped.
    pub source: String,
    /// Take over resources another source of the same owner declared (`--take-over`).
    pub take_over: bool,
    /// Record adoptions (see [`crate::plan::PlanOptions::record_adoptions`]).
    pub record_adoptions: bool,
    /// Remove managed containers of this source whose resource is no longer declared.
    pub prune: bool,
    /// Executor concurrency; `None` sizes it for the daemon.
    pub concurrency: Option<usize>,
    /// Upper bound on observe→plan→execute rounds (deferred creates need a second round).
    pub max_rounds: usize,
    /// Policy and secret sealing applied to the desired state before planning; refused
    /// resources are reported blocked and left as they are (see [`crate::policy`]).
    pub gate: crate::policy::Gate,
}

impl ConvergeOptions {
    /// Defaults for `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            source: String::new(),
            take_over: false,
            record_adoptions: false,
            prune: false,
            concurrency: None,
            max_rounds: 4,
            gate: crate::policy::Gate::default(),
        }
    }
}

/// What a pass did.
#[derive(Clone, Debug, Default)]
pub struct ConvergeReport {
    /// Every action outcome across rounds, in completion order.
    pub actions: Vec<ActionReport>,
    /// Resources that could not be converged, with the reason.
    pub blocked: Vec<Blocked>,
    /// Number of observe→plan→execute rounds run.
    pub rounds: usize,
    /// The last observation (after the last round's plan was made).
    pub observed: ObservedState,
}

impl ConvergeReport {
    /// True when nothing failed, nothing is blocked and nothing was left deferred.
    pub fn converged(&self) -> bool {
        self.blocked.is_empty() && self.failures().next().is_none()
    }

    /// Reports of actions that did not succeed (failed, skipped, or still deferred at the end).
    pub fn failures(&self) -> impl Iterator<Item = &ActionReport> {
        self.actions
            .iter()
            .filter(|r| r.outcome != Outcome::Succeeded)
    }

    /// Number of actions that changed the daemon.
    pub fn changes(&self) -> usize {
        self.actions
            .iter()
            .filter(|r| r.outcome == Outcome::Succeeded && r.verb != "await")
            .count()
    }
}

/// Plans once without changing anything (for `diff` and `--dry-run`).
pub async fn plan_only<O: Observe + ?Sized>(
    daemon: &O,
    desired: &DesiredState,
    options: &ConvergeOptions,
) -> crate::Result<(Plan, ObservedState)> {
    let admission = options.gate.admit(desired);
    let observed = daemon.observe(&options.owner).await?;
    let plan = admission.hold(plan::plan(
        &admission.desired,
        &observed,
        &plan_options(options),
    ));
    Ok((plan, observed))
}

/// True when `reports` (executed from `plan`) built or pulled an image: the containers kept
/// on what the reference named before — a rebuild, a new digest, an `Image` whose `ref`
/// moved to a tag not present yet — can only be planned once the next round observes the
/// new ID.
pub fn image_arrived(plan: &Plan, reports: &[ActionReport]) -> bool {
    reports.iter().any(|r| {
        r.outcome == Outcome::Succeeded
            && plan.actions.get(r.id).is_some_and(|a| {
                matches!(a.action, Action::PullImage { .. } | Action::BuildImage(_))
            })
    })
}

/// Converges the daemon towards `desired`.
pub async fn converge<O, R>(
    daemon: &O,
    runner: &R,
    desired: &DesiredState,
    options: &ConvergeOptions,
    on_report: &mut (dyn FnMut(&ActionReport) + Send),
) -> crate::Result<ConvergeReport>
where
    O: Observe + ?Sized,
    R: ActionRunner + ?Sized,
{
    let mut report = ConvergeReport::default();
    let mut concurrency = options.concurrency;
    // Resources that failed in an earlier round are not retried within the pass (a broken
    // Dockerfile fails once), while the others go on to their deferred creates.
    let mut failed_resources: BTreeSet<ResourceKey> = BTreeSet::new();
    let mut waiting_on_failure: Vec<Blocked> = Vec::new();
    // Revisions whose rollout did not become healthy: the next round rolls them back (and
    // keeps the previous revision) instead of waiting for them again.
    let mut plan_opts = plan_options(options);
    let admission = options.gate.admit(desired);
    let desired = &admission.desired;
    for round in 1..=options.max_rounds.max(1) {
        let observed = daemon.observe(&options.owner).await?;
        let mut plan = admission.hold(plan::plan(desired, &observed, &plan_opts));
        if !failed_resources.is_empty() {
            plan = plan::restrict(&plan, |key| !failed_resources.contains(key));
        }
        report.rounds = round;
        report.observed = observed;
        report.blocked = plan.blocked.clone();
        if plan.actions.is_empty() {
            break;
        }
        let limit = resolve_concurrency(daemon, concurrency).await;
        concurrency = Some(limit);
        let outcomes = execute(
            &plan,
            runner,
            ExecuteOptions { concurrency: limit },
            on_report,
        )
        .await;
        let deferred = outcomes.iter().any(|r| r.outcome == Outcome::Deferred);
        let image_changed = image_arrived(&plan, &outcomes);
        // Pulled in this run: `Always` does not pull them again in the next round.
        plan_opts
            .fresh_pulls
            .extend(crate::execute::pulled_references(&plan, &outcomes));
        let unfit = plan::unfit_revisions(&plan, |id| {
            outcomes
                .iter()
                .any(|r| r.id == id && matches!(r.outcome, Outcome::Failed { .. }))
        });
        let rolling_back: BTreeSet<ResourceKey> = unfit
            .iter()
            .filter(|u| !plan_opts.failed_revisions.contains(*u))
            .map(|(key, _)| key.clone())
            .collect();
        plan_opts.failed_revisions.extend(unfit);
        for blocked in blocked_by_failures(&plan, &outcomes) {
            if !waiting_on_failure.contains(&blocked) {
                waiting_on_failure.push(blocked);
            }
        }
        failed_resources.extend(
            outcomes
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Failed { .. } | Outcome::Skipped { .. }))
                .filter(|r| !rolling_back.contains(&r.resource))
                .map(|r| r.resource.clone()),
        );
        // Deferred outcomes are superseded by the next round; keep only final ones.
        report.actions.retain(|r| r.outcome != Outcome::Deferred);
        report.actions.extend(outcomes);
        if !deferred && !image_changed && rolling_back.is_empty() {
            break;
        }
    }
    report.blocked.extend(waiting_on_failure);
    Ok(report)
}

/// Resources whose actions did not run because another resource's action failed (a
/// container waiting for an image whose build failed), with that failure's words.
fn blocked_by_failures(plan: &Plan, outcomes: &[ActionReport]) -> Vec<Blocked> {
    let by_id: std::collections::BTreeMap<usize, &ActionReport> =
        outcomes.iter().map(|r| (r.id, r)).collect();
    // The failed action each action waits for, directly or through others (plan order is
    // topological, so one forward sweep finds it).
    let mut cause: Vec<Option<usize>> = vec![None; plan.actions.len()];
    for action in &plan.actions {
        cause[action.id] =
            action
                .after
                .iter()
                .find_map(|&before| match by_id.get(&before).map(|r| &r.outcome) {
                    Some(Outcome::Failed { .. }) => Some(before),
                    _ => cause.get(before).copied().flatten(),
                });
    }
    let mut blocked: Vec<Blocked> = Vec::new();
    for r in outcomes {
        let (Outcome::Deferred | Outcome::Skipped { .. }) = r.outcome else {
            continue;
        };
        let Some(failed) = cause
            .get(r.id)
            .copied()
            .flatten()
            .and_then(|id| by_id.get(&id))
        else {
            continue;
        };
        let Outcome::Failed { error } = &failed.outcome else {
            continue;
        };
        if failed.resource == r.resource || blocked.iter().any(|b| b.resource == r.resource) {
            continue;
        }
        blocked.push(Blocked {
            resource: r.resource.clone(),
            message: format!("{} failed: {error}", failed.resource),
        });
    }
    blocked
}

/// Removes every managed container of the given resources.
pub async fn delete<O, R>(
    daemon: &O,
    runner: &R,
    keys: &BTreeSet<ResourceKey>,
    options: &ConvergeOptions,
    on_report: &mut (dyn FnMut(&ActionReport) + Send),
) -> crate::Result<ConvergeReport>
where
    O: Observe + ?Sized,
    R: ActionRunner + ?Sized,
{
    let observed = daemon.observe(&options.owner).await?;
    let plan = plan::plan_delete(keys, &observed);
    let mut report = ConvergeReport {
        rounds: 1,
        blocked: plan.blocked.clone(),
        ..Default::default()
    };
    if !plan.actions.is_empty() {
        let limit = resolve_concurrency(daemon, options.concurrency).await;
        report.actions = execute(
            &plan,
            runner,
            ExecuteOptions { concurrency: limit },
            on_report,
        )
        .await;
    }
    report.observed = observed;
    Ok(report)
}

/// The executor concurrency: `configured`, or else what the daemon is sized for (which may
/// cost it a call, so callers running several rounds keep the answer).
pub(crate) async fn resolve_concurrency<O: Observe + ?Sized>(
    daemon: &O,
    configured: Option<usize>,
) -> usize {
    match configured {
        Some(c) => c,
        None => daemon.default_concurrency().await,
    }
}

fn plan_options(options: &ConvergeOptions) -> PlanOptions {
    PlanOptions {
        owner: options.owner.clone(),
        source: options.source.clone(),
        take_over: options.take_over,
        record_adoptions: options.record_adoptions,
        prune: options.prune,
        failed_revisions: BTreeSet::new(),
        fresh_pulls: BTreeSet::new(),
    }
}
