//! Back-off of revisions found unfit: a rollout whose new replica never became healthy (or
//! that a pass rolled back) is not tried again at once. While a revision waits, the planner
//! keeps the previous one ([`crate::plan::PlanOptions::failed_revisions`]) — the resource
//! itself is not held back, so the rollback and any drift repair run — and once the wait is
//! over the rollout is tried again; each new failure of the same revision doubles the wait.
//! Owned by the agent loop in file mode and by the controller context in Kubernetes mode;
//! both judge what their executions did with [`GroupVerdict`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::BackoffPolicy;
use crate::desired::ResourceKey;
use crate::execute::{ActionError, ActionReport, ErrorKind, Outcome};
use crate::plan::{short_revision, unfit_revisions, Action, Plan, Reason};

/// The back-off of one resource's unfit revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionBackoff {
    /// Spec hash of the revision.
    pub revision: String,
    /// Times it failed in a row.
    pub failures: u32,
    /// Not rolled out again before this instant.
    pub until: Instant,
    /// Why, for status and `get`.
    pub reason: String,
}

/// Unfit revisions per resource (at most one each: a newer unfit revision replaces an older).
#[derive(Clone, Debug, Default)]
pub struct RevisionBackoffs {
    policy: BackoffPolicy,
    entries: BTreeMap<ResourceKey, RevisionBackoff>,
}

impl RevisionBackoffs {
    /// Empty, with the given bounds.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            entries: BTreeMap::new(),
        }
    }

    /// Records that `revision` of `key` was found unfit at `now`. A revision still waiting is
    /// not counted again (its rollback, planned because it waits, is the same failure): then
    /// `None`, else the delay until it is tried again.
    pub fn failed(
        &mut self,
        key: &ResourceKey,
        revision: &str,
        reason: impl Into<String>,
        now: Instant,
    ) -> Option<Duration> {
        let previous = self.entries.get(key).filter(|b| b.revision == revision);
        if previous.is_some_and(|b| b.until > now) {
            return None;
        }
        let failures = previous.map_or(0, |b| b.failures) + 1;
        let delay = self.policy.delay(failures);
        self.entries.insert(
            key.clone(),
            RevisionBackoff {
                revision: revision.to_string(),
                failures,
                until: now + delay,
                reason: reason.into(),
            },
        );
        Some(delay)
    }

    /// A pass for `key` went through: once its revision's wait is over, the retried rollout
    /// succeeded and the revision is forgotten. (While it waits, success is the rollback's.)
    pub fn succeeded(&mut self, key: &ResourceKey, now: Instant) {
        if self.entries.get(key).is_some_and(|b| b.until <= now) {
            self.entries.remove(key);
        }
    }

    /// The revisions the planner must hold back at `now`.
    pub fn held(&self, now: Instant) -> BTreeSet<(ResourceKey, String)> {
        self.entries
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(k, b)| (k.clone(), b.revision.clone()))
            .collect()
    }

    /// The back-off of `key` while it waits.
    pub fn waiting(&self, key: &ResourceKey, now: Instant) -> Option<&RevisionBackoff> {
        self.entries.get(key).filter(|b| b.until > now)
    }

    /// Forget resources that are no longer declared.
    pub fn retain(&mut self, keep: impl Fn(&ResourceKey) -> bool) {
        self.entries.retain(|k, _| keep(k));
    }

    /// The earliest instant at which a held revision may be rolled out again.
    pub fn next_retry(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .map(|b| b.until)
            .filter(|u| *u > now)
            .min()
    }

    /// Resources whose revision waits at `now`.
    pub fn waiting_keys(&self, now: Instant) -> impl Iterator<Item = &ResourceKey> {
        self.entries
            .iter()
            .filter(move |(_, b)| b.until > now)
            .map(|(k, _)| k)
    }
}

/// What one group's reports mean per resource: the rollouts that found a revision unfit
/// (resource → (revision, what happened)), and the first other failure of each resource.
/// A failed rollout await and the actions skipped behind it are the revision's failure, not
/// the resource's: the resource must not back off, so its rollback runs in the next pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupVerdict {
    /// Unfit revisions: resource → (spec hash, detail).
    pub unfit: BTreeMap<ResourceKey, (String, String)>,
    /// Other failures: resource → the first one, its message naming the action and target
    /// (`start web: ...`; an action skipped behind a failure counts as a daemon error).
    pub failures: BTreeMap<ResourceKey, ActionError>,
}

impl GroupVerdict {
    /// Judges `reports` of `group` (the plan they were executed from).
    pub fn of(group: &Plan, reports: &[ActionReport]) -> Self {
        let failed = |id: usize| {
            reports
                .iter()
                .find(|r| r.id == id && matches!(r.outcome, Outcome::Failed { .. }))
        };
        let mut verdict = Self::default();
        for (key, revision) in unfit_revisions(group, |id| failed(id).is_some()) {
            let detail = group
                .actions
                .iter()
                .filter(|a| a.resource == key)
                .filter(|a| matches!(&a.reason, Reason::Rollout { revision: r } if *r == revision))
                .find_map(|a| match failed(a.id).map(|r| &r.outcome) {
                    Some(Outcome::Failed { error }) => Some(error.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| "its new replica failed".to_string());
            verdict.unfit.insert(key, (revision, detail));
        }
        for r in reports {
            let rollout_await = group.actions.get(r.id).is_some_and(|a| {
                matches!(a.action, Action::AwaitCondition { .. })
                    && matches!(a.reason, Reason::Rollout { .. })
            });
            let message = match &r.outcome {
                Outcome::Failed { .. } if rollout_await => continue,
                Outcome::Skipped { .. } if verdict.unfit.contains_key(&r.resource) => continue,
                // The runner's message already names the action and its target.
                Outcome::Failed { error } => error.clone(),
                Outcome::Skipped { .. } => ActionError::new(
                    ErrorKind::Daemon,
                    format!("{} {}: a prerequisite failed", r.verb, r.target),
                ),
                Outcome::Succeeded | Outcome::Deferred => continue,
            };
            verdict
                .failures
                .entry(r.resource.clone())
                .or_insert(message);
        }
        verdict
    }
}

/// The back-off reason of an unfit revision, for status and logs.
pub fn unfit_reason(revision: &str, detail: &str) -> String {
    format!(
        "revision {} never became healthy; rolled back ({detail})",
        short_revision(revision)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DependencyCondition;
    use crate::desired::Kind;

    fn key() -> ResourceKey {
        ResourceKey::new(Kind::Container, "default", "web")
    }

    fn report(plan: &Plan, id: usize, outcome: Outcome) -> ActionReport {
        let a = &plan.actions[id];
        ActionReport {
            id,
            resource: a.resource.clone(),
            verb: a.action.verb(),
            target: a.action.target().to_string(),
            outcome,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn a_failed_rollout_await_is_the_revisions_failure_not_the_resources() {
        let db = ResourceKey::new(Kind::Container, "default", "db");
        let rollout = Reason::Rollout {
            revision: "sha256:new".into(),
        };
        let mut plan = Plan::default();
        let start = plan.push(
            key(),
            Action::StartContainer { name: "web".into() },
            Reason::Missing,
            vec![],
        );
        let wait = plan.push(
            key(),
            Action::AwaitCondition {
                name: "web".into(),
                condition: DependencyCondition::Healthy,
                timeout_seconds: Some(5),
            },
            rollout,
            vec![start],
        );
        let remove = plan.push(
            key(),
            Action::RemoveContainer {
                id: "old".into(),
                name: "web_prev".into(),
            },
            Reason::Replaced,
            vec![wait],
        );
        let broken = plan.push(
            db.clone(),
            Action::StartContainer { name: "db".into() },
            Reason::NotRunning,
            vec![],
        );
        let timeout = ActionError::new(ErrorKind::Timeout, "web did not become healthy within 5s");
        let reports = [
            report(&plan, start, Outcome::Succeeded),
            report(&plan, wait, Outcome::Failed { error: timeout }),
            report(&plan, remove, Outcome::Skipped { blocked_by: wait }),
            report(
                &plan,
                broken,
                Outcome::Failed {
                    error: ActionError::new(ErrorKind::Daemon, "start db: boom"),
                },
            ),
        ];
        let verdict = GroupVerdict::of(&plan, &reports);
        assert_eq!(
            verdict.unfit,
            BTreeMap::from([(
                key(),
                (
                    "sha256:new".to_string(),
                    "web did not become healthy within 5s".to_string()
                )
            )])
        );
        assert_eq!(
            verdict.failures,
            BTreeMap::from([(db, ActionError::new(ErrorKind::Daemon, "start db: boom"))])
        );
        assert_eq!(
            unfit_reason("sha256:0123456789abcdef", "late"),
            "revision 0123456789ab never became healthy; rolled back (late)"
        );
        // All went well: nothing to say.
        let fine: Vec<ActionReport> = (0..plan.actions.len())
            .map(|id| report(&plan, id, Outcome::Succeeded))
            .collect();
        assert_eq!(GroupVerdict::of(&plan, &fine), GroupVerdict::default());
    }

    #[test]
    fn a_failed_revision_is_held_then_retried_with_a_doubling_wait() {
        let mut b = RevisionBackoffs::new(BackoffPolicy::default());
        let now = Instant::now();
        assert_eq!(
            b.failed(&key(), "sha256:a", "no", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            b.held(now),
            BTreeSet::from([(key(), "sha256:a".to_string())])
        );
        // Its rollback reports the same revision: not a second failure.
        assert_eq!(b.failed(&key(), "sha256:a", "no", now), None);
        // A success while waiting is the rollback's: the revision stays held.
        b.succeeded(&key(), now);
        assert!(b.waiting(&key(), now).is_some());
        assert_eq!(b.next_retry(now), Some(now + Duration::from_secs(10)));
        // Over: tried again; failing again doubles the wait.
        let later = now + Duration::from_secs(11);
        assert!(b.held(later).is_empty());
        assert_eq!(
            b.failed(&key(), "sha256:a", "no", later),
            Some(Duration::from_secs(20))
        );
        // Another revision starts afresh.
        let even_later = later + Duration::from_secs(21);
        assert_eq!(
            b.failed(&key(), "sha256:b", "no", even_later),
            Some(Duration::from_secs(10))
        );
        // The retried rollout went through: forgotten.
        let done = even_later + Duration::from_secs(11);
        b.succeeded(&key(), done);
        assert!(b.waiting(&key(), done).is_none());
        assert_eq!(
            b.failed(&key(), "sha256:b", "no", done),
            Some(Duration::from_secs(10))
        );
    }
}
