//! Rollout decisions for one replica, from one observation alone: roll to a new revision while
//! keeping the previous container (renamed `<name>_prev`), finish or clean up a rollout an
//! earlier pass began, or roll back to the kept container when the new one fails. No graph
//! here: [`super::containers`] turns each [`Decision`] into actions and chains the waves.
//!
//! A pass that dies halfway leaves nothing the next one cannot read: the kept container still
//! carries its resource and replica labels, and its name says what it is.

use std::collections::BTreeSet;

use super::{ActionId, Plan, Reason};
use crate::api::{DesiredRunState, RestartPolicy, RolloutStrategyType};
use crate::desired::{DesiredContainer, ResourceKey};
use crate::observed::{HealthState, ObservedContainer, RunState};

/// Suffix of the name a replica's previous container is kept under during a rollout.
///
/// `_` never occurs in a deterministic name (resource names and namespaces are DNS-1123
/// labels, joined by `.` and `-<index>`), so a kept name can never be another resource's
/// container name — `.prev` or `-prev` could (namespace `web`, resource `prev`; resource
/// `web-prev`).
pub const KEPT_SUFFIX: &str = "_prev";

/// The name the previous container of replica `name` is kept under during a rollout.
pub fn kept_name(name: &str) -> String {
    format!("{name}{KEPT_SUFFIX}")
}

/// The revision shown to users: the first 12 hex digits of a spec hash (as Docker shortens
/// IDs), without the `sha256:` prefix.
pub fn short_revision(spec_hash: &str) -> &str {
    let hex = spec_hash.strip_prefix("sha256:").unwrap_or(spec_hash);
    hex.get(..12).unwrap_or(hex)
}

/// The revisions a pass found unfit, as `(resource, spec hash)`: those whose rollout await
/// failed (`failed(id)` says whether action `id` failed) — the new replica did not become
/// healthy in time — and those the plan rolled back. Callers feed them back through
/// [`super::PlanOptions::failed_revisions`] so the next plan rolls back instead of waiting
/// again, and keeps the previous revision while the revision backs off.
pub fn unfit_revisions(
    plan: &Plan,
    failed: impl Fn(ActionId) -> bool,
) -> BTreeSet<(ResourceKey, String)> {
    plan.actions
        .iter()
        .filter_map(|a| match &a.reason {
            Reason::Rollout { revision }
                if matches!(a.action, super::Action::AwaitCondition { .. }) && failed(a.id) =>
            {
                Some((a.resource.clone(), revision.clone()))
            }
            Reason::RolledBack { revision } => Some((a.resource.clone(), revision.clone())),
            _ => None,
        })
        .collect()
}

/// How a resource rolls, with the forced rules applied.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// Stop the old container before the new one starts.
    pub stop_first: bool,
    /// Replicas replaced at once (at least 1).
    pub max_unavailable: usize,
    /// Seconds a new replica may take to become healthy.
    pub health_timeout_seconds: u32,
    /// Replicas are replaced by rolling (keep the old one until the new one is up): services
    /// that should run. Stopped resources and one-shots (`restartPolicy: Never`) have nothing
    /// to keep available, so they are replaced by remove, then create.
    pub rolls: bool,
    /// A new replica must be healthy before its predecessor goes (rolling, with a health check).
    pub gated: bool,
}

impl Settings {
    /// The settings of `d`. A host port forces `StopFirst` even if the strategy says
    /// otherwise (validation rejects that; the planner stays safe on its own).
    pub(super) fn of(d: &DesiredContainer) -> Self {
        let rolls = d.state == DesiredRunState::Running && d.restart_policy != RestartPolicy::Never;
        let host_port = d.config.ports.iter().any(|p| p.host_port.is_some());
        Self {
            stop_first: d.rollout.strategy == RolloutStrategyType::StopFirst || host_port,
            max_unavailable: usize::try_from(d.rollout.max_unavailable.max(1)).unwrap_or(1),
            health_timeout_seconds: d.rollout.health_timeout_seconds,
            rolls,
            gated: rolls && d.config.healthcheck.is_some(),
        }
    }
}

/// The containers of one replica, sorted out.
#[derive(Clone, Debug, Default)]
pub(super) struct ReplicaView<'a> {
    /// The container holding (or to hold) the deterministic name: the one with the desired
    /// hash, else the newest.
    pub current: Option<&'a ObservedContainer>,
    /// The previous container kept by a rollout (named [`kept_name`] of the replica's name).
    pub kept: Option<&'a ObservedContainer>,
    /// Everything else claiming the replica: removed.
    pub duplicates: Vec<&'a ObservedContainer>,
}

impl<'a> ReplicaView<'a> {
    /// Sorts the containers labelled with one replica whose deterministic name is `name`.
    pub(super) fn new(
        candidates: &[&'a ObservedContainer],
        name: &str,
        hash: Option<&str>,
    ) -> Self {
        let kept_as = kept_name(name);
        let kept = candidates.iter().copied().find(|c| c.name == kept_as);
        let rest: Vec<&ObservedContainer> = candidates
            .iter()
            .copied()
            .filter(|c| c.name != kept_as)
            .collect();
        let current = pick_current(&rest, hash);
        let duplicates = rest
            .into_iter()
            .filter(|c| Some(c.id.as_str()) != current.map(|k| k.id.as_str()))
            .collect();
        Self {
            current,
            kept,
            duplicates,
        }
    }
}

/// Of several containers claiming one replica, the one to keep: the one already matching the
/// desired hash, else the newest (ties broken by ID so the choice is deterministic).
fn pick_current<'a>(
    candidates: &[&'a ObservedContainer],
    hash: Option<&str>,
) -> Option<&'a ObservedContainer> {
    candidates.iter().copied().max_by(|a, b| {
        let key =
            |c: &ObservedContainer| (hash.is_some() && c.spec_hash.as_deref() == hash, c.created);
        key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
    })
}

/// How the container of a rollout is doing, judged from one observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// Up (healthy, with a health check): its predecessor may go.
    Proven,
    /// On its way: created but not started (`needs_start`), or running with the health check
    /// still starting.
    Pending {
        /// Created, never started.
        needs_start: bool,
    },
    /// It will not make it: unhealthy, dead, or a service that exited.
    Failed,
}

/// Judges the container that is to replace a kept one. A resource that should be stopped has
/// nothing to prove; without a health check, running is enough.
pub(super) fn progress(c: &ObservedContainer, d: &DesiredContainer, s: &Settings) -> Progress {
    if d.state == DesiredRunState::Stopped {
        return Progress::Proven;
    }
    match c.state {
        RunState::Dead | RunState::Removing => Progress::Failed,
        RunState::Created => Progress::Pending { needs_start: true },
        RunState::Exited => match d.restart_policy {
            RestartPolicy::Never => Progress::Proven,
            RestartPolicy::OnFailure if c.exit_code == Some(0) => Progress::Proven,
            RestartPolicy::OnFailure | RestartPolicy::Always => Progress::Failed,
        },
        RunState::Running | RunState::Restarting | RunState::Paused if !s.gated => Progress::Proven,
        RunState::Running | RunState::Restarting | RunState::Paused => match c.health {
            Some(HealthState::Healthy) => Progress::Proven,
            Some(HealthState::Unhealthy) => Progress::Failed,
            Some(HealthState::Starting) | None => Progress::Pending { needs_start: false },
        },
    }
}

/// What to do with one replica.
#[derive(Clone, Debug)]
pub(super) enum Decision<'a> {
    /// No rollout step: keep `current` (renamed, started or stopped as needed), or create the
    /// replica when there is none.
    Steady(Option<&'a ObservedContainer>),
    /// The spec changed and the resource is a service: rename `old` to the kept name (and
    /// stop it first with `StopFirst`), create and start the new container, await healthy
    /// (gated), then remove `old`.
    Roll {
        /// The running revision.
        old: &'a ObservedContainer,
    },
    /// The spec changed (stopped resources, one-shots) or the container is dead: remove it,
    /// then create (and start) the new one.
    Recreate {
        /// The container to replace.
        old: &'a ObservedContainer,
    },
    /// A rollout is under way with no usable new container: create one (after removing
    /// `replace`, a new container of another, unproven revision), await, remove `kept`.
    Continue {
        /// The previous container.
        kept: &'a ObservedContainer,
        /// A new container of another revision that has not proven itself.
        replace: Option<&'a ObservedContainer>,
    },
    /// The new container has the desired revision and is on its way: start it if needed,
    /// await healthy, then remove `kept`.
    Finish {
        /// The previous container.
        kept: &'a ObservedContainer,
        /// The new container.
        current: &'a ObservedContainer,
        /// It was created but never started.
        needs_start: bool,
    },
    /// The new container failed (or its revision is held back): remove it and give the kept
    /// container its name back, started.
    Rollback {
        /// The previous container.
        kept: &'a ObservedContainer,
        /// The new container.
        failed: &'a ObservedContainer,
    },
    /// The kept container already has the desired revision (the manifest went back): remove
    /// the newer container and give the kept one its name back.
    Revert {
        /// The previous container, with the desired revision.
        kept: &'a ObservedContainer,
        /// The newer container, of another revision.
        current: &'a ObservedContainer,
    },
    /// Only the kept container is left and it is the one to run (the desired revision, a
    /// held-back revision, or the image is not resolved yet): it takes its name back.
    Restore {
        /// The previous container.
        kept: &'a ObservedContainer,
        /// Whether this restores the previous revision because the new one is held back.
        held: bool,
    },
    /// The new container proved itself: remove `kept`, then treat `then` like any replica
    /// (it may need to roll again if the desired revision moved on meanwhile).
    Cleanup {
        /// The previous container.
        kept: &'a ObservedContainer,
        /// What to do with the new container.
        then: Box<Decision<'a>>,
    },
}

/// True when the new container of `view` has revision `hash` and failed: the revision is
/// unfit, so the whole resource holds it back in this plan.
pub(super) fn observed_failure(
    view: &ReplicaView<'_>,
    hash: &str,
    d: &DesiredContainer,
    s: &Settings,
) -> bool {
    match (view.kept, view.current) {
        (Some(_), Some(c)) => {
            c.spec_hash.as_deref() == Some(hash) && progress(c, d, s) == Progress::Failed
        }
        _ => false,
    }
}

/// Decides one replica. `hash` is the desired spec hash (`None` while the image is
/// unresolved: then nothing is replaced); `held` says the desired revision is unfit and must
/// not be rolled out (failed earlier, or failing in this very observation).
pub(super) fn decide<'a>(
    view: &ReplicaView<'a>,
    hash: Option<&str>,
    d: &DesiredContainer,
    s: &Settings,
    held: bool,
) -> Decision<'a> {
    let Some(kept) = view.kept else {
        return decide_plain(view.current, hash, s, held);
    };
    if matches!(kept.state, RunState::Dead | RunState::Removing) {
        // No fallback any more: clear it away and carry on as if it never was.
        let then = Box::new(decide_plain(view.current, hash, s, held));
        return Decision::Cleanup { kept, then };
    }
    let Some(hash) = hash else {
        return match view.current {
            None => Decision::Restore { kept, held: false },
            Some(c) => Decision::Steady(Some(c)),
        };
    };
    let kept_is_desired = kept.spec_hash.as_deref() == Some(hash);
    let Some(c) = view.current else {
        return if kept_is_desired || held {
            Decision::Restore {
                kept,
                held: held && !kept_is_desired,
            }
        } else {
            Decision::Continue {
                kept,
                replace: None,
            }
        };
    };
    let current_is_desired = c.spec_hash.as_deref() == Some(hash);
    if kept_is_desired && !current_is_desired {
        return Decision::Revert { kept, current: c };
    }
    match progress(c, d, s) {
        Progress::Failed => Decision::Rollback { kept, failed: c },
        _ if current_is_desired && held => Decision::Rollback { kept, failed: c },
        Progress::Proven => {
            let then = Box::new(decide_plain(Some(c), Some(hash), s, held));
            Decision::Cleanup { kept, then }
        }
        Progress::Pending { needs_start } if current_is_desired => Decision::Finish {
            kept,
            current: c,
            needs_start,
        },
        // A third revision running without any health state has no check to wait for
        // (Docker reports `starting` from the first moment for a container with one): it can
        // prove itself no further, and the desired revision is held, so the fallback goes.
        Progress::Pending { needs_start: false } if held && c.health.is_none() => {
            let then = Box::new(decide_plain(Some(c), Some(hash), s, held));
            Decision::Cleanup { kept, then }
        }
        // A third revision, still unproven: the kept one stays the fallback.
        Progress::Pending { .. } if held => Decision::Steady(Some(c)),
        Progress::Pending { .. } => Decision::Continue {
            kept,
            replace: Some(c),
        },
    }
}

/// Decides a replica with no kept container.
fn decide_plain<'a>(
    current: Option<&'a ObservedContainer>,
    hash: Option<&str>,
    s: &Settings,
    held: bool,
) -> Decision<'a> {
    let (Some(c), Some(hash)) = (current, hash) else {
        // Missing, or the image is unresolved (keep what runs until the pull lands).
        return Decision::Steady(current);
    };
    if c.state == RunState::Dead {
        // Nothing to keep: replaced even while its successor's revision is held back.
        return Decision::Recreate { old: c };
    }
    if c.spec_hash.as_deref() == Some(hash) {
        return Decision::Steady(Some(c));
    }
    if held {
        Decision::Steady(Some(c))
    } else if s.rolls && !matches!(c.state, RunState::Dead | RunState::Removing) {
        Decision::Roll { old: c }
    } else {
        Decision::Recreate { old: c }
    }
}
