//! The executor: runs a plan's actions with bounded concurrency, honouring `after` edges.
//! It never decides anything: a failed action skips its dependents, deferred creates (image
//! still to be pulled) are left for the next pass, and every outcome is recorded.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::desired::ResourceKey;
use crate::plan::{Action, ActionId, Plan, PlannedAction};

/// Category of an action failure, stable for metrics and retry decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// A name is taken (e.g. by a container dockwright does not own).
    Conflict,
    /// The object vanished (removed mid-plan) or the image is unknown to the registry.
    NotFound,
    /// The registry refused our credentials.
    Unauthorized,
    /// The daemon could not be reached.
    Unreachable,
    /// A wait did not reach its condition in time, or the condition can no longer be reached.
    Timeout,
    /// Reading a local file failed.
    Io,
    /// Any other daemon error.
    Daemon,
}

impl ErrorKind {
    /// Short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::Daemon => "daemon",
        }
    }
}

/// Why one action failed, in words fit for a user (never containing credentials).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct ActionError {
    /// Category.
    pub kind: ErrorKind,
    /// What happened and, where possible, what to do. It names the call and its target
    /// (`pull <reference>: ...`), so reports print it as it is.
    pub message: String,
}

impl ActionError {
    /// Builds an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Carries out single actions against a daemon. The Docker adapter implements it.
#[async_trait]
pub trait ActionRunner: Send + Sync {
    /// Performs one action. Called only once every action in `after` has succeeded.
    async fn run(&self, action: &PlannedAction) -> Result<(), ActionError>;
}

/// How one action ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// The daemon or the runner reported an error.
    Failed {
        /// The error.
        error: ActionError,
    },
    /// Not run because an action it depends on failed.
    Skipped {
        /// The failed (or skipped) prerequisite.
        blocked_by: ActionId,
    },
    /// Not run yet: waits for an image pulled in this pass (planned again after observing).
    Deferred,
}

/// The record of one action, fed to output, metrics, status and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionReport {
    /// Action id in its plan.
    pub id: ActionId,
    /// The resource served.
    pub resource: ResourceKey,
    /// Verb (`create`, `start`, ...).
    pub verb: &'static str,
    /// Object acted on.
    pub target: String,
    /// Result.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Wall time spent.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// Executor settings.
#[derive(Clone, Copy, Debug)]
pub struct ExecuteOptions {
    /// Maximum daemon actions in flight.
    pub concurrency: usize,
}

impl Default for ExecuteOptions {
    fn default() -> Self {
        Self { concurrency: 8 }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Pending,
    Running,
    Done(bool),
}

/// Runs `plan` to completion and returns one report per action, in completion order.
/// `on_report` sees each report as soon as it exists (for live output).
pub async fn execute<R: ActionRunner + ?Sized>(
    plan: &Plan,
    runner: &R,
    options: ExecuteOptions,
    on_report: &mut (dyn FnMut(&ActionReport) + Send),
) -> Vec<ActionReport> {
    let concurrency = options.concurrency.max(1);
    let actions = &plan.actions;
    let mut slots = vec![Slot::Pending; actions.len()];
    let mut reports = Vec::with_capacity(actions.len());
    let mut in_flight = FuturesUnordered::new();

    loop {
        // Settle everything that can be decided without running: skipped and deferred actions.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for action in actions {
                if slots[action.id] != Slot::Pending {
                    continue;
                }
                let blocker = action
                    .after
                    .iter()
                    .copied()
                    .find(|a| slots[*a] == Slot::Done(false));
                let outcome = if let Some(blocked_by) = blocker {
                    let deferred = reports.iter().any(|r: &ActionReport| {
                        r.id == blocked_by && r.outcome == Outcome::Deferred
                    });
                    Some(if deferred {
                        Outcome::Deferred
                    } else {
                        Outcome::Skipped { blocked_by }
                    })
                } else if action.action.is_deferred() {
                    Some(Outcome::Deferred)
                } else {
                    None
                };
                if let Some(outcome) = outcome {
                    slots[action.id] = Slot::Done(false);
                    let report = report_for(action, outcome, Duration::ZERO);
                    on_report(&report);
                    reports.push(report);
                    progressed = true;
                }
            }
        }
        // Start whatever is ready, up to the limit.
        for action in actions {
            if in_flight.len() >= concurrency {
                break;
            }
            if slots[action.id] == Slot::Pending
                && action.after.iter().all(|a| slots[*a] == Slot::Done(true))
            {
                slots[action.id] = Slot::Running;
                in_flight.push(async move {
                    let started = Instant::now();
                    let span = tracing::info_span!("action", resource = %action.resource, verb = action.action.verb(), target = action.action.target());
                    let result = tracing::Instrument::instrument(runner.run(action), span).await;
                    (action, result, started.elapsed())
                });
            }
        }
        let Some((action, result, elapsed)) = in_flight.next().await else {
            break;
        };
        let outcome = match result {
            Ok(()) => Outcome::Succeeded,
            Err(error) => {
                // The caller reports the outcome (the agent logs it at warn): once is enough.
                tracing::debug!(resource = %action.resource, verb = action.action.verb(), target = action.action.target(), error = %error, "action failed");
                Outcome::Failed { error }
            }
        };
        slots[action.id] = Slot::Done(outcome == Outcome::Succeeded);
        let report = report_for(action, outcome, elapsed);
        on_report(&report);
        reports.push(report);
    }
    reports
}

fn report_for(action: &PlannedAction, outcome: Outcome, elapsed: Duration) -> ActionReport {
    ActionReport {
        id: action.id,
        resource: action.resource.clone(),
        verb: action.action.verb(),
        target: action.action.target().to_string(),
        outcome,
        elapsed,
    }
}

/// The canonical references of the pulls in `plan` that `reports` say succeeded.
pub fn pulled_references(plan: &Plan, reports: &[ActionReport]) -> Vec<String> {
    reports
        .iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .filter_map(|r| match &plan.actions.get(r.id)?.action {
            Action::PullImage { reference, .. } => Some(reference.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::desired::{ContainerConfig, Kind};
    use crate::plan::{Action, CreateSpec, Reason};

    /// Records the order actions start and finish; fails the targets it is told to.
    #[derive(Default)]
    struct Recorder {
        started: Mutex<Vec<String>>,
        finished: Mutex<Vec<String>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        fail: Vec<String>,
    }

    #[async_trait]
    impl ActionRunner for Recorder {
        async fn run(&self, action: &PlannedAction) -> Result<(), ActionError> {
            let target = action.action.target().to_string();
            self.started.lock().unwrap().push(target.clone());
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.finished.lock().unwrap().push(target.clone());
            if self.fail.contains(&target) {
                Err(ActionError::new(ErrorKind::Daemon, "boom"))
            } else {
                Ok(())
            }
        }
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(Kind::Container, "default", name)
    }

    fn start(name: &str) -> Action {
        Action::StartContainer { name: name.into() }
    }

    fn create(name: &str, image_id: Option<&str>) -> Action {
        Action::CreateContainer(Box::new(CreateSpec {
            name: name.into(),
            replica: 0,
            config: Arc::new(ContainerConfig::default()),
            image_id: image_id.map(str::to_string),
            labels: BTreeMap::new(),
            start: true,
        }))
    }

    async fn run(plan: &Plan, runner: &Recorder, concurrency: usize) -> Vec<ActionReport> {
        execute(plan, runner, ExecuteOptions { concurrency }, &mut |_| {}).await
    }

    #[tokio::test]
    async fn honours_after_edges() {
        let mut plan = Plan::default();
        let a = plan.push(
            key("a"),
            create("a", Some("sha256:1")),
            Reason::Missing,
            vec![],
        );
        plan.push(key("a"), start("a-start"), Reason::Missing, vec![a]);
        let runner = Recorder::default();
        let reports = run(&plan, &runner, 8).await;
        assert_eq!(*runner.started.lock().unwrap(), vec!["a", "a-start"]);
        assert!(reports.iter().all(|r| r.outcome == Outcome::Succeeded));
    }

    #[tokio::test]
    async fn bounds_concurrency() {
        let mut plan = Plan::default();
        for i in 0..20 {
            plan.push(
                key(&format!("c{i}")),
                start(&format!("c{i}")),
                Reason::NotRunning,
                vec![],
            );
        }
        let runner = Recorder::default();
        let reports = run(&plan, &runner, 3).await;
        assert_eq!(reports.len(), 20);
        assert_eq!(runner.max_in_flight.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn failure_skips_dependents_but_not_others() {
        let mut plan = Plan::default();
        let a = plan.push(
            key("a"),
            create("a", Some("sha256:1")),
            Reason::Missing,
            vec![],
        );
        let a_start = plan.push(key("a"), start("a-start"), Reason::Missing, vec![a]);
        plan.push(
            key("a"),
            start("a-after"),
            Reason::Dependency,
            vec![a_start],
        );
        plan.push(key("b"), start("b"), Reason::NotRunning, vec![]);
        let runner = Recorder {
            fail: vec!["a".into()],
            ..Default::default()
        };
        let reports = run(&plan, &runner, 4).await;
        let by_target: BTreeMap<_, _> = reports
            .iter()
            .map(|r| (r.target.as_str(), &r.outcome))
            .collect();
        assert!(matches!(by_target["a"], Outcome::Failed { .. }));
        assert_eq!(by_target["a-start"], &Outcome::Skipped { blocked_by: a });
        assert_eq!(
            by_target["a-after"],
            &Outcome::Skipped {
                blocked_by: a_start
            }
        );
        assert_eq!(by_target["b"], &Outcome::Succeeded);
        assert_eq!(*runner.started.lock().unwrap(), vec!["a", "b"]);
    }

    #[tokio::test]
    async fn deferred_creates_and_their_dependents_are_not_run() {
        let mut plan = Plan::default();
        let pull = plan.push(
            key("a"),
            Action::PullImage {
                reference: "img".into(),
                auth: None,
            },
            Reason::ImageMissing,
            vec![],
        );
        let c = plan.push(key("a"), create("a", None), Reason::Missing, vec![pull]);
        plan.push(key("a"), start("a"), Reason::Missing, vec![c]);
        let runner = Recorder::default();
        let reports = run(&plan, &runner, 4).await;
        assert_eq!(*runner.started.lock().unwrap(), vec!["img"]);
        let deferred = reports
            .iter()
            .filter(|r| r.outcome == Outcome::Deferred)
            .count();
        assert_eq!(deferred, 2);
    }
}
