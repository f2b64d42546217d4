//! Source scoping in the planner: pruning only what the same source created, clashes between
//! sources of one owner, take-over and the adoption of containers made before source labels.

use super::testutil::*;
use super::*;
use crate::observed::ObservedContainer;

const MINE: &str = "/srv/a";
const OTHER: &str = "/srv/b";

fn scoped(prune: bool, take_over: bool) -> PlanOptions {
    PlanOptions {
        source: MINE.into(),
        take_over,
        record_adoptions: true,
        prune,
        ..options()
    }
}

fn from(mut c: ObservedContainer, source: Option<&str>) -> ObservedContainer {
    c.source = source.map(str::to_string);
    c
}

#[test]
fn prune_removes_only_this_sources_containers() {
    let mine = container("mine");
    let theirs = container("theirs");
    let legacy = container("legacy");
    let obs = observed([
        from(matching(&mine, 0, IMAGE_ID), Some(MINE)),
        from(matching(&theirs, 0, IMAGE_ID), Some(OTHER)),
        from(matching(&legacy, 0, IMAGE_ID), None),
    ]);
    let plan = plan(&DesiredState::default(), &obs, &scoped(true, false));
    assert_eq!(lines(&plan), ["remove mine"]);
    assert_eq!(
        plan.actions[0].reason,
        Reason::PrunedFromSource {
            source: MINE.into()
        }
    );
    assert!(plan.actions[0].reason.to_string().contains(MINE));
}

#[test]
fn a_resource_another_source_created_is_blocked_naming_both() {
    let web = container("web");
    let obs = observed([from(matching(&web, 0, IMAGE_ID), Some(OTHER))]);
    let plan = plan(&desired([web]), &obs, &scoped(true, false));
    assert!(plan.actions.is_empty(), "{:?}", lines(&plan));
    assert_eq!(plan.blocked.len(), 1);
    let message = &plan.blocked[0].message;
    assert!(
        message.contains(OTHER) && message.contains(MINE),
        "{message}"
    );
    assert!(message.contains("--take-over"), "{message}");
}

#[test]
fn a_changed_spec_of_another_sources_container_is_not_recreated() {
    let web = container("web");
    let changed = web
        .clone()
        .with_config(|c| c.cmd = Some(vec!["changed".into()]));
    let obs = observed([from(matching(&web, 0, IMAGE_ID), Some(OTHER))]);
    let plan = plan(&desired([changed]), &obs, &scoped(false, false));
    assert!(plan.actions.is_empty(), "{:?}", lines(&plan));
}

#[test]
fn take_over_records_the_move_without_a_recreate() {
    let web = container("web").replicas(2);
    let obs = observed([
        from(matching(&web, 0, IMAGE_ID), Some(OTHER)),
        from(matching(&web, 1, IMAGE_ID), Some(MINE)),
    ]);
    let plan = plan(&desired([web]), &obs, &scoped(true, true));
    assert_eq!(lines(&plan), ["adopt web-0"]);
    assert_eq!(
        plan.actions[0].reason,
        Reason::TakenOver { from: OTHER.into() }
    );
    let Action::AdoptContainer { source, .. } = &plan.actions[0].action else {
        panic!()
    };
    assert_eq!(source, MINE);
}

#[test]
fn an_unlabelled_container_is_adopted_by_the_source_declaring_it_and_left_by_others() {
    let web = container("web");
    let obs = observed([from(matching(&web, 0, IMAGE_ID), None)]);
    let plan1 = plan(&desired([web.clone()]), &obs, &scoped(true, false));
    assert_eq!(lines(&plan1), ["adopt web"]);
    assert_eq!(plan1.actions[0].reason, Reason::Adopted);
    // Without records it is simply treated as this source's, and nothing is planned.
    let unrecorded = PlanOptions {
        record_adoptions: false,
        ..scoped(true, false)
    };
    assert!(plan(&desired([web]), &obs, &unrecorded).is_empty());
    // A source not declaring it leaves it, even pruning.
    assert!(plan(&DesiredState::default(), &obs, &scoped(true, false)).is_empty());
}

#[test]
fn created_objects_carry_the_source_label_outside_the_spec_hash() {
    let web = container("web");
    let plan = plan(
        &desired([web.clone()]),
        &observed([]),
        &scoped(false, false),
    );
    let Action::CreateContainer(spec) = &plan.actions[0].action else {
        panic!("{:?}", lines(&plan))
    };
    assert_eq!(spec.labels[crate::labels::SOURCE], MINE);
    assert_eq!(spec.labels[crate::labels::SPEC_HASH], web.hash());
    assert!(!spec.labels[crate::labels::SPEC].contains(MINE));
}

#[test]
fn orphans_are_the_owners_containers_without_a_source() {
    let a = container("a");
    let b = container("b");
    let obs = observed([
        from(matching(&a, 0, IMAGE_ID), None),
        from(matching(&b, 0, IMAGE_ID), Some(OTHER)),
    ]);
    let plan = plan_orphans(&obs);
    assert_eq!(lines(&plan), ["remove a"]);
    assert_eq!(plan.actions[0].reason, Reason::Orphan);
}
