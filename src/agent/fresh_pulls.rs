//! `pullPolicy: Always` in a long-running reconciler. The planner pulls an `Always` reference
//! on every plan; the agent and the controllers plan again after each of their own action
//! groups, and every pull makes the daemon emit a `pull` event. Left alone, that is a pull per
//! pass, forever (seen: 378 pulls in 14 s of an idle agent). So a reference this process
//! pulled successfully less than one resync interval ago counts as fresh: the planner does not
//! pull it again ([`crate::plan::PlanOptions::fresh_pulls`]). A moving tag is followed once per
//! resync interval (`updateInterval` checks its digest more often, without pulling); `apply`,
//! a new process, always pulls.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::execute::{ActionReport, Outcome};
use crate::plan::{Action, Plan};

/// When this process last pulled each reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshPulls {
    window: Duration,
    pulled: BTreeMap<String, Instant>,
}

impl FreshPulls {
    /// Pulls stay fresh for `window` (the resync interval).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            pulled: BTreeMap::new(),
        }
    }

    /// Notes the references `reports` (executed from `plan`) pulled successfully.
    pub fn record(&mut self, plan: &Plan, reports: &[ActionReport], now: Instant) {
        for reference in pulled_references(plan, reports) {
            self.pulled.insert(reference, now);
        }
    }

    /// Notes references pulled at `now`.
    pub fn record_references(
        &mut self,
        references: impl IntoIterator<Item = String>,
        now: Instant,
    ) {
        for reference in references {
            self.pulled.insert(reference, now);
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
    use super::*;
    use crate::desired::{Kind, ResourceKey};
    use crate::execute::ActionError;
    use crate::plan::{PlannedAction, Reason};

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
        fresh.record(&plan, &reports, start);
        assert_eq!(
            fresh.fresh(start + Duration::from_secs(299)),
            BTreeSet::from(["example.com/a:latest".to_string()])
        );
        assert!(fresh.fresh(start + Duration::from_secs(300)).is_empty());
        // Forgotten once stale, and a new pull starts a new window.
        fresh.record_references(
            ["example.com/a:latest".to_string()],
            start + Duration::from_secs(400),
        );
        assert_eq!(fresh.fresh(start + Duration::from_secs(401)).len(), 1);
    }
}
