//! `dockwright prune`: one pass removing the dangling images this owner built (owner label)
//! or pulled (state file) that no container of any owner uses. Images of resources that left
//! the manifests are `apply --prune`'s job (it knows the manifests); this needs none.

use crate::converge::{resolve_concurrency, ConvergeReport, Observe};
use crate::execute::{execute, ActionReport, ActionRunner, ExecuteOptions};
use crate::plan::plan_prune_dangling;

/// Observes (the daemon must report image users, see [`crate::docker::ImageObserver`]),
/// plans the removals and runs them.
pub async fn prune_dangling<O, R>(
    daemon: &O,
    runner: &R,
    owner: &str,
    concurrency: Option<usize>,
    on_report: &mut (dyn FnMut(&ActionReport) + Send),
) -> crate::Result<ConvergeReport>
where
    O: Observe + ?Sized,
    R: ActionRunner + ?Sized,
{
    let observed = daemon.observe(owner).await?;
    let plan = plan_prune_dangling(&observed, owner);
    let mut report = ConvergeReport {
        rounds: 1,
        ..Default::default()
    };
    if !plan.actions.is_empty() {
        let concurrency = resolve_concurrency(daemon, concurrency).await;
        report.actions = execute(&plan, runner, ExecuteOptions { concurrency }, on_report).await;
    }
    report.observed = observed;
    Ok(report)
}

/// Plans the removal of the owner's containers that no source declared (see
/// [`crate::plan::plan_orphans`]); `daemon` must read the adoption records.
pub async fn plan_orphans<O: Observe + ?Sized>(
    daemon: &O,
    owner: &str,
) -> crate::Result<crate::plan::Plan> {
    let observed = daemon.observe(owner).await?;
    Ok(crate::plan::plan_orphans(&observed))
}

/// `dockwright prune --orphans`: removes the owner's containers that no source declared.
pub async fn prune_orphans<O, R>(
    daemon: &O,
    runner: &R,
    owner: &str,
    concurrency: Option<usize>,
    on_report: &mut (dyn FnMut(&ActionReport) + Send),
) -> crate::Result<ConvergeReport>
where
    O: Observe + ?Sized,
    R: ActionRunner + ?Sized,
{
    let observed = daemon.observe(owner).await?;
    let plan = crate::plan::plan_orphans(&observed);
    let mut report = ConvergeReport {
        rounds: 1,
        ..Default::default()
    };
    if !plan.actions.is_empty() {
        let concurrency = resolve_concurrency(daemon, concurrency).await;
        report.actions = execute(&plan, runner, ExecuteOptions { concurrency }, on_report).await;
    }
    report.observed = observed;
    Ok(report)
}
