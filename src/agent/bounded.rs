//! One bound on daemon work across all of the agent's groups. Each group runs its own
//! executor, so a slow resource never holds up another; but together they must not flood the
//! daemon: a pass that finds 800 missing containers would otherwise send 800 creates at once,
//! which times starts out on a small host (and then backs them off) and holds hundreds of
//! connections' buffers in the agent. Waiting for a condition (health, completion) holds no
//! permit: it is not daemon work, and a long rollout must not starve the rest.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::execute::{ActionError, ActionRunner};
use crate::plan::{Action, PlannedAction};

/// An [`ActionRunner`] that holds one of a shared set of permits while each action runs.
/// The agent loop owns the permits; every group's task gets a clone of this runner.
pub(super) struct BoundedRunner<R> {
    inner: Arc<R>,
    permits: Arc<Semaphore>,
}

impl<R> BoundedRunner<R> {
    /// Runs actions through `inner`, at most `permits` of them at once (condition waits aside).
    pub(super) fn new(inner: Arc<R>, permits: Arc<Semaphore>) -> Self {
        Self { inner, permits }
    }
}

#[async_trait]
impl<R: ActionRunner> ActionRunner for BoundedRunner<R> {
    async fn run(&self, action: &PlannedAction) -> Result<(), ActionError> {
        if matches!(action.action, Action::AwaitCondition { .. }) {
            return self.inner.run(action).await;
        }
        // The semaphore is never closed, so acquiring cannot fail; if it ever did, running
        // unbounded beats not running.
        let _permit = self.permits.acquire().await.ok();
        self.inner.run(action).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::api::DependencyCondition;
    use crate::desired::{Kind, ResourceKey};
    use crate::plan::Reason;

    /// Records how many actions run at once.
    #[derive(Default)]
    struct Gauge {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    #[async_trait]
    impl ActionRunner for Gauge {
        async fn run(&self, _: &PlannedAction) -> Result<(), ActionError> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn planned(action: Action) -> PlannedAction {
        PlannedAction {
            id: 0,
            resource: ResourceKey::new(Kind::Container, "default", "web"),
            action,
            reason: Reason::Missing,
            after: Vec::new(),
        }
    }

    async fn max_in_flight(action: Action) -> usize {
        let gauge = Arc::new(Gauge::default());
        let runner = Arc::new(BoundedRunner::new(
            gauge.clone(),
            Arc::new(Semaphore::new(2)),
        ));
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let runner = runner.clone();
                let action = planned(action.clone());
                tokio::spawn(async move { runner.run(&action).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        gauge.max.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn daemon_work_is_bounded_across_callers() {
        let start = Action::StartContainer { name: "web".into() };
        assert_eq!(max_in_flight(start).await, 2);
    }

    #[tokio::test]
    async fn waiting_for_a_condition_takes_no_permit() {
        let wait = Action::AwaitCondition {
            name: "web".into(),
            condition: DependencyCondition::Healthy,
            timeout_seconds: None,
        };
        assert!(max_in_flight(wait).await > 2);
    }
}
