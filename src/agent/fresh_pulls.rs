//! `pullPolicy: Always` in a long-running reconciler. The planner pulls an `Always` reference
//! on every plan; the agent and the controllers plan again after each of their own action
//! groups, and every pull makes the daemon emit a `pull` event. Left alone, that is a pull per
//! pass, forever (seen: 378 pulls in 14 s of an idle agent). So a reference this process
//! pulled successfully a little less than one resync interval ago counts as fresh: the planner
//! does not pull it again ([`crate::plan::PlanOptions::fresh_pulls`]). A moving tag is followed
//! once per resync interval (`updateInterval` checks its digest more often, without pulling);
//! `apply` pulls once per run.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// When this process last pulled each reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshPulls {
    window: Duration,
    pulled: BTreeMap<String, Instant>,
}

impl FreshPulls {
    /// Pulls stay fresh for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            pulled: BTreeMap::new(),
        }
    }

    /// Pulls stay fresh for nine tenths of `resync`: every resync pulls again, however its
    /// timer jitters against the pass that pulled.
    pub fn for_resync(resync: Duration) -> Self {
        Self::new(resync - resync / 10)
    }

    /// Notes references pulled by a pass planned at `at`.
    pub fn record(&mut self, references: impl IntoIterator<Item = String>, at: Instant) {
        for reference in references {
            self.pulled.insert(reference, at);
        }
    }

    /// The references still fresh at `now`; forgets the others.
    pub fn fresh(&mut self, now: Instant) -> BTreeSet<String> {
        let window = self.window;
        self.pulled
            .retain(|_, at| now.saturating_duration_since(*at) < window);
        self.pulled.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Kind, ResourceKey};
    use crate::execute::pulled_references;
    use crate::execute::{ActionError, ActionReport, Outcome};
    use crate::plan::{Action, Plan, PlannedAction, Reason};

    fn pull(id: usize, reference: &str) -> PlannedAction {
        PlannedAction {
            id,
            resource: ResourceKey::new(Kind::Container, "default", "web"),
            action: Action::PullImage {
                reference: reference.into(),
                auth: None,
            },
            reason: Reason::PullAlways,
            after: Vec::new(),
        }
    }

    fn report(id: usize, outcome: Outcome) -> ActionReport {
        ActionReport {
            id,
            resource: ResourceKey::new(Kind::Container, "default", "web"),
            verb: "pull",
            target: String::new(),
            outcome,
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn only_successful_pulls_are_fresh_and_only_for_the_window() {
        let plan = Plan {
            actions: vec![
                pull(0, "example.com/a:latest"),
                pull(1, "example.com/b:latest"),
            ],
            ..Plan::default()
        };
        let reports = [
            report(0, Outcome::Succeeded),
            report(
                1,
                Outcome::Failed {
                    error: ActionError::new(crate::execute::ErrorKind::Daemon, "no"),
                },
            ),
        ];
        let start = Instant::now();
        let mut fresh = FreshPulls::new(Duration::from_secs(300));
        fresh.record(pulled_references(&plan, &reports), start);
        assert_eq!(
            fresh.fresh(start + Duration::from_secs(299)),
            BTreeSet::from(["example.com/a:latest".to_string()])
        );
        assert!(fresh.fresh(start + Duration::from_secs(300)).is_empty());
        // Forgotten once stale, and a new pull starts a new window.
        fresh.record(
            ["example.com/a:latest".to_string()],
            start + Duration::from_secs(400),
        );
        assert_eq!(fresh.fresh(start + Duration::from_secs(401)).len(), 1);
    }

    #[test]
    fn every_resync_tick_pulls_again_despite_timer_jitter() {
        let start = Instant::now();
        let resync = Duration::from_secs(300);
        let mut fresh = FreshPulls::for_resync(resync);
        fresh.record(["example.com/a:latest".to_string()], start);
        assert_eq!(fresh.fresh(start + resync / 2).len(), 1);
        // The next tick may come a little early against the pass that pulled.
        assert!(fresh
            .fresh(start + resync - Duration::from_secs(1))
            .is_empty());
    }
}
