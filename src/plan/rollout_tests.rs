//! Rollout scenarios, one rule each: the order of a replica's replacement per strategy, waves
//! of `maxUnavailable`, what a later pass does with a kept container from observation alone
//! (clean up, finish, continue, roll back, restore), and failed revisions held back.

use std::collections::BTreeSet;

use super::testutil::*;
use super::*;
use crate::api::{DependencyCondition, RestartPolicy, RolloutStrategyType};
use crate::desired::DesiredContainer;
use crate::observed::{HealthState, ObservedContainer, RunState};

use RolloutStrategyType::{StartFirst, StopFirst};

/// A service with a health check, and the same with a changed spec.
fn old_and_new() -> (DesiredContainer, DesiredContainer) {
    let old = container("web").healthy_check();
    let new = old.clone().with_config(|c| c.env = vec!["V=2".into()]);
    (old, new)
}

/// The previous container of replica 0, kept under its rollout name.
fn kept(old: &DesiredContainer) -> ObservedContainer {
    let name = kept_name(&old.key.container_name(old.replicas, 0));
    matching(old, 0, IMAGE_ID).named(&name).id("old")
}

/// The new container of replica 0 in `health`.
fn fresh(new: &DesiredContainer, health: Option<HealthState>) -> ObservedContainer {
    matching(new, 0, IMAGE_ID).id("new").health(health)
}

fn reason_of(plan: &Plan, line: &str) -> Reason {
    plan.actions[find(plan, line)].reason.clone()
}

fn blocked_messages(plan: &Plan) -> Vec<&str> {
    plan.blocked.iter().map(|b| b.message.as_str()).collect()
}

// ---------------------------------------------------------------- names

#[test]
fn kept_names_and_short_revisions() {
    assert_eq!(kept_name("web-0"), "web-0_prev");
    assert_eq!(kept_name("team.web"), "team.web_prev");
    assert_eq!(short_revision("sha256:0123456789abcdef"), "0123456789ab");
    assert_eq!(short_revision("abc"), "abc");
}

// ---------------------------------------------------------------- one replica

#[test]
fn start_first_keeps_the_old_container_until_the_new_one_is_healthy() {
    let (old, new) = old_and_new();
    let plan = plan(
        &desired([new.clone()]),
        &observed([matching(&old, 0, IMAGE_ID)]),
        &options(),
    );
    assert_well_formed(&plan);
    assert_eq!(
        lines(&plan),
        [
            "rename web",
            "create web",
            "start web",
            "await web",
            "remove web_prev"
        ]
    );
    assert_eq!(
        plan.actions[0].action,
        Action::RenameContainer {
            id: "id-web-0".into(),
            from: "web".into(),
            to: "web_prev".into()
        }
    );
    let revision = new.hash();
    assert_eq!(
        plan.actions[0].reason,
        Reason::Rollout {
            revision: revision.clone()
        }
    );
    assert_eq!(
        plan.actions[3].action,
        Action::AwaitCondition {
            name: "web".into(),
            condition: DependencyCondition::Healthy,
            timeout_seconds: Some(300),
        }
    );
    assert_eq!(plan.actions[3].reason, Reason::Rollout { revision });
    assert_eq!(
        plan.actions[4].action,
        Action::RemoveContainer {
            id: "id-web-0".into(),
            name: "web_prev".into()
        }
    );
    assert_eq!(plan.actions[4].reason, Reason::Replaced);
    // A strict chain: nothing stops the old one, and it goes only after the await.
    for (later, earlier) in [(1, 0), (2, 1), (3, 2), (4, 3)] {
        assert!(
            plan.actions[later].after.contains(&earlier),
            "{later} after {earlier}"
        );
    }
    assert!(plan.blocked.is_empty());
}

#[test]
fn the_health_timeout_is_the_resources_own() {
    let (old, mut new) = old_and_new();
    new.rollout.health_timeout_seconds = 7;
    let plan = plan(
        &desired([new]),
        &observed([matching(&old, 0, IMAGE_ID)]),
        &options(),
    );
    let Action::AwaitCondition {
        timeout_seconds, ..
    } = &plan.actions[find(&plan, "await web")].action
    else {
        panic!()
    };
    assert_eq!(*timeout_seconds, Some(7));
}

#[test]
fn stop_first_stops_the_old_container_before_the_new_one_starts() {
    let (old, new) = old_and_new();
    let new = new.strategy(StopFirst, 1);
    let plan = plan(
        &desired([new]),
        &observed([matching(&old, 0, IMAGE_ID)]),
        &options(),
    );
    assert_well_formed(&plan);
    let stop = find(&plan, "stop web_prev");
    let create = find(&plan, "create web");
    let start = find(&plan, "start web");
    assert!(depends_on(&plan, stop, find(&plan, "rename web")));
    assert!(depends_on(&plan, start, stop));
    // The create does not wait for the stop: the old one serves while the new one is made.
    assert!(!depends_on(&plan, create, stop));
    assert!(depends_on(
        &plan,
        find(&plan, "remove web_prev"),
        find(&plan, "await web")
    ));
    assert_eq!(
        plan.actions[stop].action,
        Action::StopContainer {
            id: "id-web-0".into(),
            name: "web_prev".into(),
            timeout_seconds: None
        }
    );
}

#[test]
fn a_host_port_forces_stop_first() {
    let old = container("web").with_config(|c| c.ports = vec![host_port(8080)]);
    let new = old
        .clone()
        .strategy(StartFirst, 1)
        .with_config(|c| c.user = Some("1".into()));
    let mut running = matching(&old, 0, IMAGE_ID);
    running.ports = vec!["0.0.0.0:8080->80/tcp".into()];
    let plan = plan(&desired([new]), &observed([running]), &options());
    assert_well_formed(&plan);
    assert!(depends_on(
        &plan,
        find(&plan, "start web"),
        find(&plan, "stop web_prev")
    ));
    // The stopped old container binds nothing: its removal frees no port and nothing waits for
    // it but the start it follows.
    assert!(!depends_on(
        &plan,
        find(&plan, "create web"),
        find(&plan, "stop web_prev")
    ));
}

#[test]
fn without_a_healthcheck_the_old_one_goes_right_after_the_new_one_starts() {
    let old = container("web");
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let plan = plan(
        &desired([new]),
        &observed([matching(&old, 0, IMAGE_ID)]),
        &options(),
    );
    assert_eq!(
        lines(&plan),
        ["rename web", "create web", "start web", "remove web_prev"]
    );
    assert!(plan.actions[3].after.contains(&2));
}

#[test]
fn an_exited_old_container_is_kept_but_not_stopped() {
    let (old, new) = old_and_new();
    let new = new.strategy(StopFirst, 1);
    let c = matching(&old, 0, IMAGE_ID).exit(1).health(None);
    let plan = plan(&desired([new]), &observed([c]), &options());
    assert!(!lines(&plan).iter().any(|l| l.starts_with("stop")));
    assert_eq!(lines(&plan)[0], "rename web");
}

#[test]
fn stopped_resources_and_one_shots_are_replaced_without_keeping() {
    let old = container("job").restart(RestartPolicy::Never);
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let plan = plan(
        &desired([new]),
        &observed([matching(&old, 0, IMAGE_ID).exit(0)]),
        &options(),
    );
    assert_eq!(lines(&plan), ["remove job", "create job", "start job"]);
    let old = container("idle").stopped();
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let plan = super::plan(
        &desired([new]),
        &observed([matching(&old, 0, IMAGE_ID).exit(0)]),
        &options(),
    );
    assert_eq!(lines(&plan), ["remove idle", "create idle"]);
}

#[test]
fn strategy_changes_never_replace_anything() {
    let d = container("web").replicas(2).healthy_check();
    let obs = converged(&desired([d.clone()]));
    let mut changed = d.strategy(StopFirst, 2);
    changed.rollout.health_timeout_seconds = 9;
    assert!(plan(&desired([changed]), &obs, &options()).is_empty());
}

#[test]
fn a_dependency_that_can_never_be_met_holds_the_rollout() {
    let (old, new) = old_and_new();
    let new = new.depends("ghost", DependencyCondition::Started);
    let plan = plan(
        &desired([new]),
        &observed([matching(&old, 0, IMAGE_ID)]),
        &options(),
    );
    assert!(plan.actions.is_empty(), "{:?}", lines(&plan));
    assert!(blocked_messages(&plan)[0].contains("not declared"));
}

// ---------------------------------------------------------------- waves

#[test]
fn replicas_roll_in_waves_of_max_unavailable() {
    let old = container("web").replicas(4).healthy_check();
    let new = old
        .clone()
        .with_config(|c| c.user = Some("1".into()))
        .strategy(StartFirst, 2);
    let obs = observed((0..4).map(|r| matching(&old, r, IMAGE_ID)));
    let plan = plan(&desired([new]), &obs, &options());
    assert_well_formed(&plan);
    let rename = |r: u32| find(&plan, &format!("rename web-{r}"));
    let ready = |r: u32| find(&plan, &format!("await web-{r}"));
    // First wave: web-0 and web-1 side by side.
    assert!(plan.actions[rename(0)].after.is_empty());
    assert!(plan.actions[rename(1)].after.is_empty());
    // Second wave: after both of the first are healthy, not after each other.
    for r in [2, 3] {
        for previous in [0, 1] {
            assert!(
                depends_on(&plan, rename(r), ready(previous)),
                "{r} after {previous}"
            );
        }
    }
    assert!(!depends_on(&plan, rename(3), ready(2)));
    assert!(!depends_on(&plan, rename(2), ready(3)));
}

#[test]
fn max_unavailable_beyond_replicas_replaces_all_at_once() {
    let old = container("web").replicas(3);
    let new = old
        .clone()
        .with_config(|c| c.user = Some("1".into()))
        .strategy(StopFirst, 5);
    let obs = observed((0..3).map(|r| matching(&old, r, IMAGE_ID)));
    let plan = plan(&desired([new]), &obs, &options());
    for r in 0..3 {
        assert!(plan.actions[find(&plan, &format!("rename web-{r}"))]
            .after
            .is_empty());
    }
}

#[test]
fn stop_first_waves_stop_the_next_old_ones_only_after_the_previous_wave_is_healthy() {
    let old = container("web").replicas(3).healthy_check();
    let new = old
        .clone()
        .with_config(|c| c.user = Some("1".into()))
        .strategy(StopFirst, 2);
    let obs = observed((0..3).map(|r| matching(&old, r, IMAGE_ID)));
    let plan = plan(&desired([new]), &obs, &options());
    let stop2 = find(&plan, "stop web-2_prev");
    assert!(depends_on(&plan, stop2, find(&plan, "await web-0")));
    assert!(depends_on(&plan, stop2, find(&plan, "await web-1")));
    assert!(!depends_on(
        &plan,
        find(&plan, "stop web-1_prev"),
        find(&plan, "await web-0")
    ));
}

#[test]
fn a_rollout_under_way_takes_the_first_wave() {
    // web-1 is half-way (new one starting); web-0 and web-2 still run the old revision.
    let old = container("web").replicas(3).healthy_check();
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let obs = observed([
        matching(&old, 0, IMAGE_ID),
        matching(&old, 1, IMAGE_ID).named("web-1_prev").id("old-1"),
        matching(&new, 1, IMAGE_ID)
            .id("new-1")
            .health(Some(HealthState::Starting)),
        matching(&old, 2, IMAGE_ID),
    ]);
    let plan = plan(&desired([new]), &obs, &options());
    assert_well_formed(&plan);
    let await1 = find(&plan, "await web-1");
    assert!(plan.actions[await1].after.is_empty());
    assert!(depends_on(&plan, find(&plan, "rename web-0"), await1));
    assert!(depends_on(
        &plan,
        find(&plan, "rename web-2"),
        find(&plan, "await web-0")
    ));
}

// ---------------------------------------------------------------- a later pass

#[test]
fn kept_old_and_healthy_new_removes_the_old() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Healthy))]);
    let plan = plan(&desired([new]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web_prev"]);
    assert_eq!(plan.actions[0].reason, Reason::Replaced);
    assert!(plan.blocked.is_empty());
}

#[test]
fn kept_old_and_starting_new_awaits_then_removes_the_old() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Starting))]);
    let plan = plan(&desired([new]), &obs, &options());
    assert_eq!(lines(&plan), ["await web", "remove web_prev"]);
    assert!(plan.actions[1].after.contains(&0));
}

#[test]
fn kept_old_and_never_started_new_starts_awaits_then_removes_the_old() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old), fresh(&new, None).state(RunState::Created)]);
    let plan = plan(&desired([new]), &obs, &options());
    assert_eq!(lines(&plan), ["start web", "await web", "remove web_prev"]);
}

#[test]
fn kept_old_and_unhealthy_new_rolls_back() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Unhealthy))]);
    let plan = plan(&desired([new.clone()]), &obs, &options());
    assert_well_formed(&plan);
    // The old one still runs (StartFirst): it only takes its name back.
    assert_eq!(lines(&plan), ["remove web", "rename web_prev"]);
    let rolled_back = Reason::RolledBack {
        revision: new.hash(),
    };
    assert_eq!(plan.actions[0].reason, rolled_back);
    assert_eq!(
        plan.actions[0].action,
        Action::RemoveContainer {
            id: "new".into(),
            name: "web".into()
        }
    );
    assert_eq!(
        plan.actions[1].action,
        Action::RenameContainer {
            id: "old".into(),
            from: "web_prev".into(),
            to: "web".into()
        }
    );
    assert!(plan.actions[1].after.contains(&0));
    assert_eq!(
        blocked_messages(&plan),
        [format!(
            "revision {} never became healthy; rolled back",
            short_revision(&new.hash())
        )]
    );
    assert_eq!(
        rolled_back.to_string(),
        format!(
            "revision {} never became healthy; rolled back",
            short_revision(&new.hash())
        )
    );
}

#[test]
fn a_rolled_back_stopped_old_container_is_started_again() {
    let (old, new) = old_and_new();
    let new = new.strategy(StopFirst, 1);
    let obs = observed([
        kept(&old).exit(143).health(None),
        fresh(&new, Some(HealthState::Unhealthy)),
    ]);
    let plan = plan(&desired([new]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web", "rename web_prev", "start web"]);
    assert!(depends_on(&plan, 2, 1) && depends_on(&plan, 2, 0));
}

#[test]
fn kept_old_and_exited_new_rolls_back() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old), fresh(&new, None).exit(1)]);
    let plan = plan(&desired([new]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web", "rename web_prev"]);
    assert!(matches!(plan.actions[0].reason, Reason::RolledBack { .. }));
}

#[test]
fn a_failure_of_one_replica_holds_the_others_back() {
    let old = container("web").replicas(3).healthy_check();
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let obs = observed([
        matching(&old, 0, IMAGE_ID).named("web-0_prev").id("old-0"),
        matching(&new, 0, IMAGE_ID)
            .id("new-0")
            .health(Some(HealthState::Unhealthy)),
        matching(&old, 1, IMAGE_ID),
        matching(&old, 2, IMAGE_ID),
    ]);
    let plan = plan(&desired([new]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web-0", "rename web-0_prev"]);
    assert_eq!(plan.blocked.len(), 1);
}

#[test]
fn kept_old_without_new_creates_the_new_one_as_usual() {
    let (old, new) = old_and_new();
    let plan = plan(&desired([new]), &observed([kept(&old)]), &options());
    assert_eq!(
        lines(&plan),
        ["create web", "start web", "await web", "remove web_prev"]
    );
    assert!(matches!(
        reason_of(&plan, "create web"),
        Reason::SpecChanged { .. }
    ));
}

#[test]
fn kept_old_without_new_stops_it_first_with_stop_first() {
    let (old, new) = old_and_new();
    let new = new.strategy(StopFirst, 1);
    let plan = plan(&desired([new]), &observed([kept(&old)]), &options());
    assert!(depends_on(
        &plan,
        find(&plan, "start web"),
        find(&plan, "stop web_prev")
    ));
}

#[test]
fn a_kept_container_of_the_desired_revision_takes_its_name_back() {
    let (old, _) = old_and_new();
    let plan = plan(
        &desired([old.clone()]),
        &observed([kept(&old).exit(143).health(None)]),
        &options(),
    );
    assert_eq!(lines(&plan), ["rename web_prev", "start web"]);
    assert_eq!(plan.actions[0].reason, Reason::NameChanged);
}

#[test]
fn a_manifest_reverted_mid_rollout_restores_the_kept_container() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Starting))]);
    let plan = plan(&desired([old]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web", "rename web_prev"]);
    assert!(matches!(plan.actions[0].reason, Reason::SpecChanged { .. }));
    assert!(plan.blocked.is_empty());
}

#[test]
fn a_third_revision_replaces_the_unproven_one_and_keeps_the_fallback() {
    let (old, new) = old_and_new();
    let third = new.clone().with_config(|c| c.env = vec!["V=3".into()]);
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Starting))]);
    let plan = plan(&desired([third]), &obs, &options());
    assert_well_formed(&plan);
    assert_eq!(
        lines(&plan),
        [
            "remove web",
            "create web",
            "start web",
            "await web",
            "remove web_prev"
        ]
    );
    assert_eq!(
        plan.actions[4].action,
        Action::RemoveContainer {
            id: "old".into(),
            name: "web_prev".into()
        }
    );
}

#[test]
fn a_proven_intermediate_revision_is_cleaned_up_then_rolled_again() {
    let (old, new) = old_and_new();
    let third = new.clone().with_config(|c| c.env = vec!["V=3".into()]);
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Healthy))]);
    let plan = plan(&desired([third]), &obs, &options());
    assert_well_formed(&plan);
    let removes: Vec<&Action> = plan
        .actions
        .iter()
        .map(|a| &a.action)
        .filter(|a| a.verb() == "remove")
        .collect();
    assert_eq!(
        removes,
        [
            &Action::RemoveContainer {
                id: "old".into(),
                name: "web_prev".into()
            },
            &Action::RemoveContainer {
                id: "new".into(),
                name: "web_prev".into()
            }
        ]
    );
    // The intermediate one takes the kept name only once the oldest is gone.
    assert!(depends_on(
        &plan,
        find(&plan, "rename web"),
        find(&plan, "remove web_prev")
    ));
}

#[test]
fn a_kept_container_beyond_the_replica_count_is_scaled_down() {
    let old = container("web").replicas(2);
    let obs = observed([
        matching(&old, 0, IMAGE_ID),
        matching(&old, 1, IMAGE_ID).named("web-1_prev").id("old-1"),
    ]);
    let plan = plan(&desired([old.replicas(1)]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web-1_prev", "rename web-0"]);
    assert_eq!(plan.actions[0].reason, Reason::ScaledDown);
}

// ---------------------------------------------------------------- failed revisions

#[test]
fn a_failed_revision_is_held_back_while_it_backs_off() {
    let (old, new) = old_and_new();
    let obs = observed([matching(&old, 0, IMAGE_ID)]);
    let plan = plan(&desired([new.clone()]), &obs, &failing("web", &new.hash()));
    assert!(plan.actions.is_empty(), "{:?}", lines(&plan));
    assert_eq!(
        blocked_messages(&plan),
        [format!(
            "revision {} never became healthy; rolled back",
            short_revision(&new.hash())
        )]
    );
    // The back-off over, the caller forgets it and the rollout is tried again.
    let plan = super::plan(&desired([new]), &obs, &options());
    assert_eq!(lines(&plan)[0], "rename web");
}

#[test]
fn a_failed_revision_still_starting_is_rolled_back_without_waiting_again() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Starting))]);
    let plan = plan(&desired([new.clone()]), &obs, &failing("web", &new.hash()));
    assert_eq!(lines(&plan), ["remove web", "rename web_prev"]);
}

#[test]
fn a_lone_kept_container_of_a_held_revision_takes_its_name_back() {
    let (old, new) = old_and_new();
    let obs = observed([kept(&old)]);
    let plan = plan(&desired([new.clone()]), &obs, &failing("web", &new.hash()));
    assert_eq!(lines(&plan), ["rename web_prev"]);
    assert_eq!(
        plan.actions[0].reason,
        Reason::RolledBack {
            revision: new.hash()
        }
    );
}

#[test]
fn a_held_revision_keeps_replicas_that_already_run_it() {
    // No predecessor to go back to: the replica keeps the failed revision, nothing is blocked.
    let (_, new) = old_and_new();
    let obs = observed([fresh(&new, Some(HealthState::Unhealthy)).id("id-web-0")]);
    let plan = plan(&desired([new.clone()]), &obs, &failing("web", &new.hash()));
    assert!(plan.is_empty(), "{:?}", plan);
}

#[test]
fn another_resources_failed_revision_changes_nothing_here() {
    let (old, new) = old_and_new();
    let obs = observed([matching(&old, 0, IMAGE_ID)]);
    let plan = plan(
        &desired([new.clone()]),
        &obs,
        &failing("other", &new.hash()),
    );
    assert_eq!(lines(&plan)[0], "rename web");
}

#[test]
fn unfit_revisions_are_failed_rollout_awaits_and_rollbacks() {
    let (old, new) = old_and_new();
    let rolling = plan(
        &desired([new.clone()]),
        &observed([matching(&old, 0, IMAGE_ID)]),
        &options(),
    );
    let await_id = find(&rolling, "await web");
    let expected = BTreeSet::from([(key("web"), new.hash())]);
    assert_eq!(unfit_revisions(&rolling, |id| id == await_id), expected);
    assert!(unfit_revisions(&rolling, |_| false).is_empty());
    // A failed create is not the revision's fault.
    let create = find(&rolling, "create web");
    assert!(unfit_revisions(&rolling, |id| id == create).is_empty());
    // A dependency's await is not a rollout's.
    let dependent = plan(
        &desired([
            container("db").healthy_check(),
            container("app").depends("db", DependencyCondition::Healthy),
        ]),
        &observed([]),
        &options(),
    );
    assert!(unfit_revisions(&dependent, |_| true).is_empty());
    // A planned rollback is a verdict of its own.
    let obs = observed([kept(&old), fresh(&new, Some(HealthState::Unhealthy))]);
    let rollback = plan(&desired([new]), &obs, &options());
    assert_eq!(unfit_revisions(&rollback, |_| false), expected);
}
