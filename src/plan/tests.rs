//! Planner scenarios, one rule each: what a given desired × observed pair must plan.

use std::collections::{BTreeMap, BTreeSet};

use super::testutil::*;
use super::*;
use crate::api::{DependencyCondition, PullPolicy, RestartPolicy};
use crate::desired::{Mount, ResourceKey};
use crate::labels;
use crate::observed::{HealthState, RunState};

fn reason_of(plan: &Plan, line: &str) -> Reason {
    plan.actions[find(plan, line)].reason.clone()
}

// ---------------------------------------------------------------- hashing and labels

#[test]
fn spec_json_is_the_config_plus_image_id_and_stable() {
    let c = config(IMAGE);
    let json = spec_json(&c, "sha256:abc");
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["imageId"], "sha256:abc");
    assert_eq!(value["image"], IMAGE);
    assert_eq!(value["restartPolicy"], "unless-stopped");
    assert!(json.ends_with(r#""imageId":"sha256:abc"}"#), "{json}");
    assert_eq!(json, spec_json(&c.clone(), "sha256:abc"));
    assert_ne!(spec_hash(&json), spec_hash(&spec_json(&c, "sha256:abd")));
}

#[test]
fn spec_hash_is_prefixed_sha256() {
    // sha256("") is well known.
    assert_eq!(
        spec_hash(""),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn container_labels_carry_ownership_and_drop_reserved_user_labels() {
    let user = BTreeMap::from([
        ("tier".to_string(), "web".to_string()),
        (labels::OWNER.to_string(), "intruder".to_string()),
        ("dockwright.dev/other".to_string(), "x".to_string()),
    ]);
    let labels = container_labels("me", "src", &key("web"), 2, "{}", "sha256:00", &user);
    assert_eq!(labels["tier"], "web");
    assert_eq!(labels[labels::OWNER], "me");
    assert_eq!(labels[labels::RESOURCE], "Container/default/web");
    assert_eq!(labels[labels::REPLICA], "2");
    assert_eq!(labels[labels::SPEC], "{}");
    assert_eq!(labels[labels::SPEC_HASH], "sha256:00");
    assert_eq!(labels[labels::SOURCE], "src");
    assert!(!labels.contains_key("dockwright.dev/other"));
    assert_eq!(labels.len(), 7);
}

#[test]
fn changed_fields_compares_env_by_element_and_labels_by_key() {
    let mut old = config(IMAGE);
    old.env = vec!["A=1".into(), "B=2".into()];
    old.labels.insert("tier".into(), "web".into());
    let mut new = old.clone();
    new.env = vec!["A=1".into(), "B=3".into(), "C=4".into()];
    new.labels.insert("tier".into(), "api".into());
    new.user = Some("1000".into());
    let changes = changed_fields(&spec_json(&old, "sha256:1"), &spec_json(&new, "sha256:2"));
    let got: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|c| (c.field.as_str(), c.old.as_str(), c.new.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("env[1]", r#""B=2""#, r#""B=3""#),
            ("env[2]", "-", r#""C=4""#),
            ("imageId", r#""sha256:1""#, r#""sha256:2""#),
            ("labels.tier", r#""web""#, r#""api""#),
            ("user", "-", r#""1000""#),
        ]
    );
}

#[test]
fn changed_fields_shows_ports_as_a_whole() {
    let old = config(IMAGE);
    let mut new = old.clone();
    new.ports = vec![host_port(8080)];
    let changes = changed_fields(&spec_json(&old, "i"), &spec_json(&new, "i"));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].field, "ports");
    assert_eq!(changes[0].old, "-");
    assert_eq!(
        changes[0].new,
        r#"[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]"#
    );
}

#[test]
fn changed_fields_of_an_unreadable_old_spec_is_one_change() {
    let new = spec_json(&config(IMAGE), "i");
    let changes = changed_fields("{not json", &new);
    assert_eq!(
        changes,
        vec![FieldChange {
            field: "spec".into(),
            old: "(unreadable)".into(),
            new: new.clone()
        }]
    );
    assert_eq!(changed_fields("[1]", &new)[0].old, "(unreadable)");
    assert!(changed_fields(&new, &new).is_empty());
}

// ---------------------------------------------------------------- no-op

#[test]
fn converged_state_plans_nothing() {
    let state = desired([
        container("db").with_config(|c| c.healthcheck = Some(healthcheck())),
        container("web")
            .replicas(3)
            .depends("db", DependencyCondition::Healthy)
            .with_config(|c| {
                c.ports = vec![host_port(8080)];
                c.network = "appnet".into();
                c.mounts = vec![Mount::Volume {
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: false,
                }];
            }),
        container("job").restart(RestartPolicy::Never),
        container("idle").stopped(),
    ]);
    let mut obs = converged(&state);
    for c in &mut obs.containers {
        if c.name == "job" {
            c.state = RunState::Exited;
            c.exit_code = Some(0);
        }
        if c.name == "idle" {
            c.state = RunState::Exited;
        }
    }
    let plan = plan(&state, &obs, &options());
    assert!(plan.is_empty(), "{:#?}", plan);
}

#[test]
fn nothing_desired_nothing_observed_plans_nothing() {
    assert!(plan(
        &DesiredState::default(),
        &ObservedState::default(),
        &pruning()
    )
    .is_empty());
}

// ---------------------------------------------------------------- creates

#[test]
fn missing_replica_is_created_with_labels_then_started() {
    let d = container("web");
    let state = desired([d.clone()]);
    let plan = plan(&state, &observed([]), &options());
    assert_eq!(lines(&plan), ["create web", "start web"]);
    let Action::CreateContainer(spec) = &plan.actions[0].action else {
        panic!()
    };
    let json = spec_json(&d.config, IMAGE_ID);
    assert_eq!(spec.image_id.as_deref(), Some(IMAGE_ID));
    assert_eq!(spec.labels[labels::SPEC_HASH], spec_hash(&json));
    assert_eq!(spec.labels[labels::SPEC], json);
    assert_eq!(spec.labels[labels::OWNER], OWNER);
    assert_eq!(spec.labels[labels::REPLICA], "0");
    assert!(spec.start);
    assert_eq!(plan.actions[1].after, [0]);
    assert_eq!(plan.actions[0].reason, Reason::Missing);
}

#[test]
fn replicas_get_deterministic_names() {
    let plan = plan(
        &desired([container("web").replicas(3)]),
        &observed([]),
        &options(),
    );
    assert_eq!(
        lines(&plan),
        [
            "create web-0",
            "start web-0",
            "create web-1",
            "start web-1",
            "create web-2",
            "start web-2"
        ]
    );
}

#[test]
fn stopped_resource_is_created_but_not_started() {
    let plan = plan(
        &desired([container("web").stopped()]),
        &observed([]),
        &options(),
    );
    assert_eq!(lines(&plan), ["create web"]);
    let Action::CreateContainer(spec) = &plan.actions[0].action else {
        panic!()
    };
    assert!(!spec.start);
}

#[test]
fn networks_and_volumes_are_ensured_once_before_every_create_needing_them() {
    let with = |name: &str| {
        container(name).with_config(|c| {
            c.network = "appnet".into();
            c.mounts = vec![
                Mount::Volume {
                    source: "data".into(),
                    target: "/data".into(),
                    read_only: false,
                },
                Mount::Tmpfs {
                    target: "/tmp".into(),
                    size_bytes: None,
                },
            ];
        })
    };
    let plan = plan(
        &desired([with("a"), with("b"), container("c")]),
        &observed([]),
        &options(),
    );
    assert_well_formed(&plan);
    let all = lines(&plan);
    assert_eq!(
        all.iter().filter(|l| *l == "ensure-network appnet").count(),
        1
    );
    assert_eq!(all.iter().filter(|l| *l == "ensure-volume data").count(), 1);
    assert!(!all.iter().any(|l| l.contains("ensure-network bridge")));
    for create in ["create a", "create b"] {
        assert!(depends_on(
            &plan,
            find(&plan, create),
            find(&plan, "ensure-network appnet")
        ));
        assert!(depends_on(
            &plan,
            find(&plan, create),
            find(&plan, "ensure-volume data")
        ));
    }
    assert!(plan.actions[find(&plan, "create c")].after.is_empty());
}

// ---------------------------------------------------------------- images

#[test]
fn missing_image_is_pulled_and_creates_are_deferred_behind_it() {
    let state = desired([container("web").replicas(2)]);
    let plan = plan(&state, &ObservedState::default(), &options());
    assert_eq!(lines(&plan)[0], format!("pull {IMAGE}"));
    assert_eq!(plan.actions[0].reason, Reason::ImageMissing);
    assert_eq!(plan.actions[0].resource, key("web"));
    for create in ["create web-0", "create web-1"] {
        let action = &plan.actions[find(&plan, create)];
        assert!(action.action.is_deferred());
        assert!(action.after.contains(&0));
        let Action::CreateContainer(spec) = &action.action else {
            panic!()
        };
        assert!(spec.labels.is_empty());
    }
}

#[test]
fn missing_image_with_pull_policy_never_blocks_every_user() {
    let state = desired([
        container("a").image("registry.local/gone:1", PullPolicy::Never),
        container("b").image("registry.local/gone:1", PullPolicy::Never),
    ]);
    let plan = plan(&state, &observed([]), &options());
    assert!(plan.actions.is_empty(), "{:#?}", lines(&plan));
    let blocked: Vec<_> = plan
        .blocked
        .iter()
        .map(|b| (b.resource.name.as_str(), b.message.as_str()))
        .collect();
    let msg = "image registry.local/gone:1 is not present and pullPolicy is Never";
    assert_eq!(blocked, [("a", msg), ("b", msg)]);
}

#[test]
fn pull_always_pulls_a_present_image_and_plans_with_its_current_id() {
    let d = container("web").image(IMAGE, PullPolicy::Always);
    let obs = observed([matching(&d, 0, IMAGE_ID)]);
    let plan = plan(&desired([d.clone()]), &obs, &options());
    assert_eq!(lines(&plan), [format!("pull {IMAGE}")]);
    assert_eq!(plan.actions[0].reason, Reason::PullAlways);
    // And a missing replica is created right away from the present ID, not deferred.
    let plan = super::plan(&desired([d.replicas(2)]), &obs, &options());
    let create = &plan.actions[find(&plan, "create web-1")];
    assert!(!create.action.is_deferred());
}

#[test]
fn a_reference_shared_by_resources_is_pulled_once_for_the_image_resource() {
    let mut state = desired([container("a"), container("b")]);
    state.images.insert(
        image_key("app"),
        image_resource("app", IMAGE, PullPolicy::IfNotPresent),
    );
    let plan = plan(&state, &ObservedState::default(), &options());
    let pulls: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.action.verb() == "pull")
        .collect();
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].resource, image_key("app"));
}

#[test]
fn image_resource_without_containers_is_pulled_per_policy() {
    let mut state = DesiredState::default();
    state.images.insert(
        image_key("app"),
        image_resource("app", "registry.local/x:1", PullPolicy::IfNotPresent),
    );
    let plan = plan(&state, &observed([]), &options());
    assert_eq!(lines(&plan), ["pull registry.local/x:1"]);
    // Present: nothing to do.
    let mut obs = observed([]);
    obs.images
        .by_reference
        .insert("registry.local/x:1".into(), "sha256:x".into());
    assert!(super::plan(&state, &obs, &options()).is_empty());
}

#[test]
fn existing_container_whose_image_is_missing_is_kept_until_the_pull_lands() {
    let old = container("web");
    let obs_c = matching(&old, 0, IMAGE_ID);
    let new = old
        .clone()
        .image("registry.local/app:2", PullPolicy::IfNotPresent);
    let plan = plan(&desired([new]), &observed([obs_c]), &options());
    assert_eq!(lines(&plan), ["pull registry.local/app:2"]);
}

// ---------------------------------------------------------------- recreates

#[test]
fn spec_change_replaces_with_the_changed_fields() {
    let old = container("web");
    let new = old
        .clone()
        .with_config(|c| c.env = vec!["MODE=prod".into()]);
    let plan = plan(
        &desired([new]),
        &observed([matching(&old, 0, IMAGE_ID)]),
        &options(),
    );
    // The old container is kept aside until the new one runs (rollout module).
    assert_eq!(
        lines(&plan),
        ["rename web", "create web", "start web", "remove web_prev"]
    );
    let expected = Reason::SpecChanged {
        changes: vec![FieldChange {
            field: "env[0]".into(),
            old: "-".into(),
            new: r#""MODE=prod""#.into(),
        }],
    };
    assert_eq!(plan.actions[1].reason, expected);
    assert_eq!(plan.actions[2].reason, expected);
    assert!(
        depends_on(&plan, 1, 0),
        "create after the rename that frees the name"
    );
}

#[test]
fn changed_image_id_recreates() {
    let d = container("web");
    let plan = plan(
        &desired([d.clone()]),
        &observed([matching(&d, 0, "sha256:older")]),
        &options(),
    );
    let Reason::SpecChanged { changes } = reason_of(&plan, "create web") else {
        panic!()
    };
    assert_eq!(changes[0].field, "imageId");
}

#[test]
fn missing_spec_label_recreates_with_unknown_old_spec() {
    let d = container("web");
    let mut c = matching(&d, 0, IMAGE_ID);
    c.spec = None;
    c.spec_hash = None;
    let plan = plan(&desired([d.clone()]), &observed([c]), &options());
    let Reason::SpecChanged { changes } = reason_of(&plan, "create web") else {
        panic!()
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].field.as_str(), changes[0].old.as_str()),
        ("spec", "(unknown)")
    );
    assert_eq!(changes[0].new, spec_json(&d.config, IMAGE_ID));
}

#[test]
fn recreated_replicas_roll_one_at_a_time() {
    let old = container("web").replicas(3);
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let obs = observed((0..3).map(|r| matching(&old, r, IMAGE_ID)));
    let plan = plan(&desired([new]), &obs, &options());
    assert_well_formed(&plan);
    assert!(!lines(&plan).iter().any(|l| l.starts_with("await")));
    assert!(depends_on(
        &plan,
        find(&plan, "rename web-1"),
        find(&plan, "start web-0")
    ));
    assert!(depends_on(
        &plan,
        find(&plan, "rename web-2"),
        find(&plan, "start web-1")
    ));
    assert!(plan.actions[find(&plan, "rename web-0")].after.is_empty());
}

#[test]
fn rolling_with_a_healthcheck_waits_for_health_between_replicas() {
    let old = container("web")
        .replicas(2)
        .with_config(|c| c.healthcheck = Some(healthcheck()));
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let obs = observed((0..2).map(|r| matching(&old, r, IMAGE_ID)));
    let plan = plan(&desired([new.clone()]), &obs, &options());
    let awaits: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.action.verb() == "await")
        .collect();
    assert_eq!(awaits.len(), 2, "one per replica: {:#?}", lines(&plan));
    assert_eq!(
        awaits[0].action,
        Action::AwaitCondition {
            name: "web-0".into(),
            condition: DependencyCondition::Healthy,
            timeout_seconds: Some(300),
        }
    );
    assert_eq!(
        awaits[0].reason,
        Reason::Rollout {
            revision: new.hash()
        }
    );
    assert!(depends_on(&plan, awaits[0].id, find(&plan, "start web-0")));
    let removed = find(&plan, "remove web-0_prev");
    assert!(plan.actions[removed].after.contains(&awaits[0].id));
    // The next replica goes once the first is healthy and its predecessor gone.
    assert!(plan.actions[find(&plan, "rename web-1")]
        .after
        .contains(&removed));
}

#[test]
fn rolling_a_stopped_resource_chains_on_creates() {
    let old = container("web").replicas(2).stopped();
    let new = old.clone().with_config(|c| c.user = Some("1".into()));
    let obs = observed((0..2).map(|r| matching(&old, r, IMAGE_ID).state(RunState::Exited)));
    let plan = plan(&desired([new]), &obs, &options());
    assert_eq!(
        lines(&plan),
        [
            "remove web-0",
            "create web-0",
            "remove web-1",
            "create web-1"
        ]
    );
    assert!(depends_on(
        &plan,
        find(&plan, "remove web-1"),
        find(&plan, "create web-0")
    ));
}

#[test]
fn dead_container_is_replaced() {
    let d = container("web");
    let plan = plan(
        &desired([d.clone()]),
        &observed([matching(&d, 0, IMAGE_ID).state(RunState::Dead)]),
        &options(),
    );
    assert_eq!(lines(&plan), ["remove web", "create web", "start web"]);
    assert!(plan.actions.iter().all(|a| a.reason == Reason::Broken));
}

#[test]
fn pull_always_skips_references_pulled_moments_ago() {
    let mut d = container("web");
    d.image.pull_policy = PullPolicy::Always;
    let state = desired([d.clone()]);
    let observed = observed([matching(&d, 0, IMAGE_ID)]);
    let reference = d.image.reference.clone();
    assert_eq!(
        lines(&plan(&state, &observed, &options())),
        [format!("pull {reference}")]
    );
    let fresh = PlanOptions {
        fresh_pulls: BTreeSet::from([reference]),
        ..options()
    };
    assert!(plan(&state, &observed, &fresh).is_empty());
}

// ---------------------------------------------------------------- run state

#[test]
fn run_state_rules_for_a_resource_that_should_run() {
    use RestartPolicy::*;
    let cases: Vec<(RestartPolicy, RunState, Option<i64>, bool)> = vec![
        (Always, RunState::Created, None, true),
        (Never, RunState::Created, None, true),
        (Always, RunState::Exited, Some(0), true),
        (Always, RunState::Exited, Some(1), true),
        (OnFailure, RunState::Exited, Some(1), true),
        (OnFailure, RunState::Exited, Some(0), false),
        (Never, RunState::Exited, Some(0), false),
        (Never, RunState::Exited, Some(3), false),
        (Always, RunState::Running, None, false),
        (Always, RunState::Restarting, None, false),
        (Always, RunState::Paused, None, false),
        (Always, RunState::Removing, None, false),
    ];
    for (policy, state, exit, start) in cases {
        let d = container("web").restart(policy);
        let mut c = matching(&d, 0, IMAGE_ID).state(state);
        c.exit_code = exit;
        let plan = plan(&desired([d]), &observed([c]), &options());
        let expected: Vec<String> = if start {
            vec!["start web".into()]
        } else {
            vec![]
        };
        assert_eq!(lines(&plan), expected, "{policy:?} {state:?} {exit:?}");
        if start {
            assert_eq!(plan.actions[0].reason, Reason::NotRunning);
        }
    }
}

#[test]
fn run_state_rules_for_a_resource_that_should_be_stopped() {
    for (state, stop) in [
        (RunState::Running, true),
        (RunState::Restarting, true),
        (RunState::Created, false),
        (RunState::Exited, false),
        (RunState::Paused, false),
    ] {
        let d = container("web")
            .stopped()
            .with_config(|c| c.stop_timeout = Some(7));
        let c = matching(&d, 0, IMAGE_ID).state(state);
        let plan = plan(&desired([d]), &observed([c]), &options());
        if stop {
            assert_eq!(
                plan.actions.iter().map(|a| &a.action).collect::<Vec<_>>(),
                [&Action::StopContainer {
                    id: "id-web-0".into(),
                    name: "web".into(),
                    timeout_seconds: Some(7)
                }]
            );
            assert_eq!(plan.actions[0].reason, Reason::ShouldBeStopped);
        } else {
            assert!(plan.is_empty(), "{state:?}: {:?}", lines(&plan));
        }
    }
}

// ---------------------------------------------------------------- replicas

#[test]
fn scaling_down_removes_only_the_surplus() {
    let d = container("web").replicas(3);
    let obs = observed((0..3).map(|r| matching(&d, r, IMAGE_ID)));
    let plan = plan(&desired([d.replicas(2)]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web-2"]);
    assert_eq!(plan.actions[0].reason, Reason::ScaledDown);
}

#[test]
fn scaling_to_zero_removes_everything() {
    let d = container("web").replicas(2);
    let obs = observed((0..2).map(|r| matching(&d, r, IMAGE_ID)));
    let plan = plan(&desired([d.replicas(0)]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web-0", "remove web-1"]);
}

#[test]
fn crossing_from_one_to_many_replicas_renames_instead_of_recreating() {
    let d = container("web");
    let plan = plan(
        &desired([d.clone().replicas(2)]),
        &observed([matching(&d, 0, IMAGE_ID)]),
        &options(),
    );
    assert_eq!(lines(&plan), ["rename web", "create web-1", "start web-1"]);
    assert_eq!(
        plan.actions[0].action,
        Action::RenameContainer {
            id: "id-web-0".into(),
            from: "web".into(),
            to: "web-0".into()
        }
    );
    assert_eq!(plan.actions[0].reason, Reason::NameChanged);
}

#[test]
fn crossing_from_many_to_one_replica_renames_and_removes() {
    let d = container("web").replicas(2);
    let obs = observed((0..2).map(|r| matching(&d, r, IMAGE_ID)));
    let plan = plan(&desired([d.replicas(1)]), &obs, &options());
    assert_eq!(lines(&plan), ["remove web-1", "rename web-0"]);
}

#[test]
fn a_rename_onto_a_name_held_by_a_removed_duplicate_waits_for_the_removal() {
    let d = container("web");
    let good = matching(&d.clone().replicas(2), 0, IMAGE_ID).id("good"); // named web-0, right hash
    let stale = matching(
        &d.clone().with_config(|c| c.user = Some("x".into())),
        0,
        IMAGE_ID,
    )
    .id("stale")
    .created(999);
    let plan = plan(&desired([d]), &observed([stale, good]), &options());
    assert_well_formed(&plan);
    assert_eq!(lines(&plan), ["remove web", "rename web-0"]);
    assert_eq!(plan.actions[0].reason, Reason::Duplicate);
    assert!(depends_on(&plan, 1, 0));
}

#[test]
fn a_renamed_stopped_container_is_started_under_its_new_name() {
    let d = container("web");
    let c = matching(&d, 0, IMAGE_ID).state(RunState::Created);
    let plan = plan(&desired([d.replicas(2)]), &observed([c]), &options());
    assert!(depends_on(
        &plan,
        find(&plan, "start web-0"),
        find(&plan, "rename web")
    ));
}

#[test]
fn duplicates_keep_the_matching_container_else_the_newest() {
    let d = container("web");
    let stale = |id: &str, at: i64| {
        matching(
            &d.clone().with_config(|c| c.user = Some(id.into())),
            0,
            IMAGE_ID,
        )
        .id(id)
        .named(id)
        .created(at)
    };
    // One matches: it stays, even though older.
    let good = matching(&d, 0, IMAGE_ID).created(1);
    let plan = plan(
        &desired([d.clone()]),
        &observed([good, stale("dup", 50)]),
        &options(),
    );
    assert_eq!(lines(&plan), ["remove dup"]);
    assert_eq!(plan.actions[0].reason, Reason::Duplicate);
    // None matches: the newest is kept (and recreated); the others go.
    let plan = super::plan(
        &desired([d.clone()]),
        &observed([stale("old", 1), stale("new", 50)]),
        &options(),
    );
    assert_eq!(
        lines(&plan),
        [
            "remove old",
            "rename new",
            "create web",
            "start web",
            "remove web_prev"
        ]
    );
    assert_eq!(reason_of(&plan, "remove old"), Reason::Duplicate);
    assert!(matches!(
        reason_of(&plan, "rename new"),
        Reason::Rollout { .. }
    ));
}

#[test]
fn container_without_replica_label_is_removed() {
    let d = container("web");
    let mut c = matching(&d, 0, IMAGE_ID).named("web-odd").id("odd");
    c.replica = None;
    let plan = plan(
        &desired([d.clone()]),
        &observed([c, matching(&d, 0, IMAGE_ID)]),
        &options(),
    );
    assert_eq!(lines(&plan), ["remove web-odd"]);
}

// ---------------------------------------------------------------- names and ports

#[test]
fn removal_freeing_a_host_port_comes_before_the_create_taking_it() {
    let old = container("old").with_config(|c| c.ports = vec![host_port(8080)]);
    let mut c = matching(&old, 0, IMAGE_ID);
    c.ports = vec!["0.0.0.0:8080->80/tcp".into()];
    let new = container("new").with_config(|c| c.ports = vec![host_port(8080)]);
    let plan = plan(&desired([new]), &observed([c]), &pruning());
    assert_well_formed(&plan);
    assert_eq!(lines(&plan), ["remove old", "create new", "start new"]);
    assert_eq!(plan.actions[0].reason, Reason::Pruned);
    assert!(plan.actions[1].after.contains(&0));
}

#[test]
fn port_freed_by_a_recreate_orders_another_resources_create() {
    // `a` moves from 8080 to 9090 while `b` takes 8080.
    let a_old = container("a").with_config(|c| c.ports = vec![host_port(8080)]);
    let a_new = container("a").with_config(|c| c.ports = vec![host_port(9090)]);
    let b = container("b").with_config(|c| c.ports = vec![host_port(8080)]);
    let plan = plan(
        &desired([a_new, b]),
        &observed([matching(&a_old, 0, IMAGE_ID)]),
        &options(),
    );
    // `a` has a host port, so it rolls StopFirst: its stop frees 8080.
    assert!(depends_on(
        &plan,
        find(&plan, "create b"),
        find(&plan, "stop a_prev")
    ));
}

#[test]
fn unrelated_ports_do_not_serialise_creates() {
    let a = container("a").with_config(|c| c.ports = vec![host_port(8080)]);
    let old_b = container("b").with_config(|c| c.ports = vec![host_port(9090)]);
    let new_b = old_b.clone().with_config(|c| c.user = Some("1".into()));
    let plan = plan(
        &desired([a, new_b]),
        &observed([matching(&old_b, 0, IMAGE_ID)]),
        &options(),
    );
    assert!(plan.actions[find(&plan, "create a")].after.is_empty());
}

// ---------------------------------------------------------------- dependsOn

#[test]
fn dependent_starts_after_its_dependency_starts() {
    let state = desired([
        container("db"),
        container("web").depends("db", DependencyCondition::Started),
    ]);
    let plan = plan(&state, &observed([]), &options());
    assert_well_formed(&plan);
    assert!(depends_on(
        &plan,
        find(&plan, "start web"),
        find(&plan, "start db")
    ));
    assert!(!lines(&plan).iter().any(|l| l.starts_with("await")));
    // The dependent's create is not held back.
    assert!(plan.actions[find(&plan, "create web")].after.is_empty());
}

#[test]
fn healthy_dependency_not_yet_healthy_is_awaited() {
    let db = container("db")
        .replicas(2)
        .with_config(|c| c.healthcheck = Some(healthcheck()));
    let web = container("web").depends("db", DependencyCondition::Healthy);
    let obs = observed([
        matching(&db, 0, IMAGE_ID),
        matching(&db, 1, IMAGE_ID).health(Some(HealthState::Starting)),
    ]);
    let plan = plan(&desired([db, web]), &obs, &options());
    assert_well_formed(&plan);
    let awaits: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.action.verb() == "await")
        .collect();
    assert_eq!(awaits.len(), 1);
    assert_eq!(
        awaits[0].action,
        Action::AwaitCondition {
            name: "db-1".into(),
            condition: DependencyCondition::Healthy,
            timeout_seconds: None,
        }
    );
    assert_eq!(awaits[0].reason, Reason::Dependency);
    assert_eq!(awaits[0].resource, key("web"));
    assert!(depends_on(&plan, find(&plan, "start web"), awaits[0].id));
}

#[test]
fn dependency_already_healthy_or_completed_is_not_awaited() {
    let db = container("db").with_config(|c| c.healthcheck = Some(healthcheck()));
    let migrate = container("migrate").restart(RestartPolicy::Never);
    let web = container("web")
        .depends("db", DependencyCondition::Healthy)
        .depends("migrate", DependencyCondition::Completed);
    let obs = observed([
        matching(&db, 0, IMAGE_ID),
        matching(&migrate, 0, IMAGE_ID).exit(0),
    ]);
    let plan = plan(&desired([db, migrate, web]), &obs, &options());
    assert_eq!(lines(&plan), ["create web", "start web"]);
}

#[test]
fn dependency_started_in_this_plan_is_awaited_after_its_start() {
    let migrate = container("migrate").restart(RestartPolicy::Never);
    let web = container("web").depends("migrate", DependencyCondition::Completed);
    let plan = plan(&desired([migrate, web]), &observed([]), &options());
    assert_well_formed(&plan);
    let wait = find(&plan, "await migrate");
    assert!(depends_on(&plan, wait, find(&plan, "start migrate")));
    assert!(depends_on(&plan, find(&plan, "start web"), wait));
}

#[test]
fn failed_one_shot_dependency_blocks_its_dependents_instead_of_being_rerun() {
    let migrate = container("migrate").restart(RestartPolicy::Never);
    let web = container("web").depends("migrate", DependencyCondition::Completed);
    let obs = observed([matching(&migrate, 0, IMAGE_ID).exit(1)]);
    let plan = plan(&desired([migrate.clone(), web.clone()]), &obs, &options());
    assert_eq!(lines(&plan), ["create web"]);
    assert_eq!(plan.blocked.len(), 1);
    assert!(
        plan.blocked[0].message.contains("failed (exit code 1)"),
        "{}",
        plan.blocked[0].message
    );
    // A changed spec re-runs the one-shot, so the dependent waits for it instead.
    let migrate2 = migrate.with_config(|c| c.env = vec!["V=2".into()]);
    let plan = super::plan(&desired([migrate2, web]), &obs, &options());
    assert!(plan.blocked.is_empty());
    assert!(depends_on(
        &plan,
        find(&plan, "start web"),
        find(&plan, "await migrate")
    ));
}

#[test]
fn dependency_that_exited_for_good_cannot_become_healthy() {
    let db = container("db")
        .restart(RestartPolicy::OnFailure)
        .with_config(|c| c.healthcheck = Some(healthcheck()));
    let web = container("web").depends("db", DependencyCondition::Healthy);
    let obs = observed([matching(&db, 0, IMAGE_ID).exit(0)]);
    let plan = plan(&desired([db, web]), &obs, &options());
    assert_eq!(lines(&plan), ["create web"]);
    assert!(
        plan.blocked[0].message.contains("has exited"),
        "{}",
        plan.blocked[0].message
    );
}

#[test]
fn blocks_propagate_along_dependency_chains() {
    let state = desired([
        container("a").image("registry.local/gone:1", PullPolicy::Never),
        container("b").depends("a", DependencyCondition::Started),
        container("c").depends("b", DependencyCondition::Started),
    ]);
    let plan = plan(&state, &observed([]), &options());
    assert_eq!(lines(&plan), ["create b", "create c"]);
    let blocked: Vec<_> = plan
        .blocked
        .iter()
        .map(|b| (b.resource.name.as_str(), b.message.as_str()))
        .collect();
    assert_eq!(blocked[0].0, "a");
    assert_eq!(blocked[1], ("b", "dependency Container/default/a cannot be created: image registry.local/gone:1 is not present"));
    assert_eq!(
        blocked[2],
        ("c", "dependency Container/default/b is blocked")
    );
}

#[test]
fn a_dependency_already_in_its_condition_never_blocks() {
    // `a`'s image is gone and unpullable, but its container runs: `b` may start.
    let a = container("a").image("registry.local/gone:1", PullPolicy::Never);
    let b = container("b").depends("a", DependencyCondition::Started);
    let mut obs = observed([matching(&a, 0, "sha256:old")]);
    obs.images.by_reference.clear();
    obs.images
        .by_reference
        .insert(IMAGE.into(), IMAGE_ID.into());
    let plan = plan(&desired([a, b]), &obs, &options());
    assert_eq!(lines(&plan), ["create b", "start b"]);
}

#[test]
fn dependency_declared_stopped_blocks_the_dependents_start() {
    let state = desired([
        container("db").stopped(),
        container("web").depends("db", DependencyCondition::Started),
    ]);
    let plan = plan(&state, &observed([]), &options());
    assert_eq!(lines(&plan), ["create db", "create web"]);
    assert_eq!(plan.blocked.len(), 1);
    assert_eq!(plan.blocked[0].resource, key("web"));
    assert!(
        plan.blocked[0].message.contains("Container/default/db"),
        "{}",
        plan.blocked[0].message
    );
}

#[test]
fn dependency_block_is_silent_when_no_start_is_needed() {
    let db = container("db").stopped();
    let web = container("web").depends("db", DependencyCondition::Started);
    let obs = observed([
        matching(&db, 0, IMAGE_ID).state(RunState::Exited),
        matching(&web, 0, IMAGE_ID),
    ]);
    assert!(plan(&desired([db, web]), &obs, &options()).is_empty());
}

#[test]
fn undeclared_dependency_blocks() {
    let plan = plan(
        &desired([container("web").depends("ghost", DependencyCondition::Started)]),
        &observed([]),
        &options(),
    );
    assert_eq!(lines(&plan), ["create web"]);
    assert!(plan.blocked[0].message.contains("not declared"));
}

#[test]
fn dependent_of_a_deferred_dependency_is_ordered_behind_it() {
    let db = container("db").image("registry.local/db:1", PullPolicy::IfNotPresent);
    let web = container("web").depends("db", DependencyCondition::Started);
    let plan = plan(&desired([db, web]), &observed([]), &options());
    assert!(depends_on(
        &plan,
        find(&plan, "start web"),
        find(&plan, "create db")
    ));
    assert!(plan.actions[find(&plan, "create db")].action.is_deferred());
}

// ---------------------------------------------------------------- ownership and pruning

fn strays() -> Vec<crate::observed::ObservedContainer> {
    let other = container("gone");
    let mut foreign = matching(&other, 0, IMAGE_ID).named("imagey").id("foreign");
    foreign.resource = Some(image_key("gone"));
    let mut unreadable = matching(&other, 0, IMAGE_ID).named("junk").id("junk");
    unreadable.resource = None;
    vec![matching(&other, 0, IMAGE_ID), foreign, unreadable]
}

#[test]
fn undeclared_and_unreadable_containers_stay_without_prune() {
    let plan = plan(&DesiredState::default(), &observed(strays()), &options());
    assert!(plan.is_empty(), "{:?}", lines(&plan));
}

#[test]
fn prune_removes_undeclared_and_unreadable_but_never_other_kinds() {
    let plan = plan(&DesiredState::default(), &observed(strays()), &pruning());
    assert_eq!(lines(&plan), ["remove junk", "remove gone"]);
    assert!(plan.actions.iter().all(|a| a.reason == Reason::Pruned));
    assert!(!plan
        .actions
        .iter()
        .any(|a| matches!(&a.action, Action::RemoveContainer { id, .. } if id == "foreign")));
}

#[test]
fn delete_removes_only_the_named_container_resources() {
    let web = container("web").replicas(2);
    let mut obs = observed((0..2).map(|r| matching(&web, r, IMAGE_ID)));
    obs.containers.extend(strays());
    let keys = BTreeSet::from([key("web"), image_key("gone")]);
    let plan = plan_delete(&keys, &obs);
    assert_eq!(lines(&plan), ["remove web-0", "remove web-1"]);
    assert!(plan
        .actions
        .iter()
        .all(|a| a.reason == Reason::Deleted && a.resource == key("web")));
    assert!(plan_delete(&BTreeSet::from([key("nothing")]), &obs).is_empty());
}

#[test]
fn plan_ignores_the_order_of_observation() {
    let d = container("web").replicas(3);
    let new = d
        .clone()
        .replicas(2)
        .with_config(|c| c.user = Some("1".into()));
    let mut list: Vec<_> = (0..3).map(|r| matching(&d, r, IMAGE_ID)).collect();
    list.extend(strays());
    let a = plan(&desired([new.clone()]), &observed(list.clone()), &pruning());
    list.reverse();
    let b = plan(&desired([new]), &observed(list), &pruning());
    assert_eq!(a, b);
}

#[test]
fn namespaced_resources_get_prefixed_names() {
    let mut d = container("web");
    d.key = ResourceKey::new(crate::desired::Kind::Container, "team", "web");
    let plan = plan(&desired([d]), &observed([]), &options());
    assert_eq!(lines(&plan), ["create team.web", "start team.web"]);
}
