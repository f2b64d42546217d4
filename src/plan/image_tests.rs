//! Planner scenarios for images: builds (missing, unchanged, changed inputs), extra tags,
//! pushes, registry digests of moving tags, and image removals with `--prune` and
//! `dockwright prune`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::testutil::*;
use super::*;
use crate::api::PullPolicy;
use crate::desired::{
    DesiredBuild, DesiredContainer, DesiredImage, DesiredState, Dockerfile, Kind, ResourceKey,
};
use crate::labels;
use crate::observed::{ImageRecord, ObservedImage};

const WEB: &str = "127.0.0.1:5000/team/web:1";
const WEB_LATEST: &str = "127.0.0.1:5000/team/web:latest";
const HASH: &str = "sha256:aaaa000000000000000000000000000000000000000000000000000000000000";

fn built_image(tags: &[&str], push: bool) -> DesiredImage {
    let mut image = image_resource("web", WEB, PullPolicy::IfNotPresent);
    image.build = Some(Arc::new(DesiredBuild {
        context: PathBuf::from("/ctx"),
        dockerfile: Dockerfile::InContext("Dockerfile".into()),
        args: BTreeMap::new(),
        target: None,
        labels: BTreeMap::from([("team".into(), "web".into())]),
        hash: HASH.into(),
    }));
    image.tags = tags.iter().map(|t| t.to_string()).collect();
    image.push = push;
    image
}

/// A container bound to `Image/web`.
fn web_container() -> DesiredContainer {
    let mut c = container("app").image(WEB, PullPolicy::IfNotPresent);
    c.image.resource = Some(image_key("web"));
    c
}

fn with_image(mut state: DesiredState, image: DesiredImage) -> DesiredState {
    state.images.insert(image.key.clone(), image);
    state
}

/// Observed: `reference` names image `id` built with `hash` (by us), with `digests`.
fn local_image(
    observed: &mut ObservedState,
    reference: &str,
    id: &str,
    hash: Option<&str>,
    digests: &[&str],
) {
    observed
        .images
        .by_reference
        .insert(reference.into(), id.into());
    let image = observed
        .images
        .by_id
        .entry(id.into())
        .or_insert_with(|| ObservedImage {
            id: id.into(),
            owner: hash.map(|_| OWNER.to_string()),
            resource: hash.map(|_| image_key("web")),
            build_hash: hash.map(str::to_string),
            ..Default::default()
        });
    image.tags.push(reference.into());
    image.digests.extend(digests.iter().map(|d| d.to_string()));
}

#[test]
fn a_missing_build_is_built_with_ownership_labels_and_creates_wait_for_it() {
    let d = with_image(desired([web_container()]), built_image(&[], false));
    let p = plan(&d, &ObservedState::default(), &options());
    assert_well_formed(&p);
    assert_eq!(
        lines(&p),
        vec![
            format!("build {WEB}"),
            "create app".into(),
            "start app".into()
        ]
    );
    let Action::BuildImage(spec) = &p.actions[0].action else {
        panic!()
    };
    assert_eq!(spec.labels[labels::OWNER], OWNER);
    assert_eq!(spec.labels[labels::RESOURCE], "Image/default/web");
    assert_eq!(spec.labels[labels::BUILD_HASH], HASH);
    assert_eq!(spec.labels["team"], "web");
    assert_eq!(p.actions[0].resource, image_key("web"));
    assert!(p.actions[1].action.is_deferred());
    assert!(depends_on(&p, 1, 0));
}

#[test]
fn an_unchanged_build_is_not_rebuilt_and_a_changed_one_is() {
    let c = web_container();
    let d = with_image(desired([c.clone()]), built_image(&[], false));
    let mut observed = observed([matching(&c, 0, "sha256:old")]);
    local_image(&mut observed, WEB, "sha256:old", Some(HASH), &[]);
    let p = plan(&d, &observed, &options());
    assert!(p.is_empty(), "{:#?}", lines(&p));

    // Other inputs: rebuild; the running container stays until the new ID is observed.
    observed
        .images
        .by_id
        .get_mut("sha256:old")
        .unwrap()
        .build_hash = Some("sha256:other".into());
    let p = plan(&d, &observed, &options());
    assert_eq!(lines(&p), vec![format!("build {WEB}")]);
    assert!(
        matches!(&p.actions[0].reason, Reason::BuildChanged { old, new } if old == "sha256:other" && new == HASH)
    );

    // The next pass sees the new image: the container is recreated on its ID.
    local_image(&mut observed, WEB, "sha256:new", Some(HASH), &[]);
    let p = plan(&d, &observed, &options());
    // (Rolled: the old container is kept aside until the new one has started.)
    assert_eq!(
        lines(&p),
        vec!["rename app", "create app", "start app", "remove app_prev"]
    );
    let Action::CreateContainer(spec) = &p.actions[1].action else {
        panic!()
    };
    assert_eq!(spec.image_id.as_deref(), Some("sha256:new"));
}

#[test]
fn an_image_not_built_by_dockwright_is_rebuilt() {
    let d = with_image(DesiredState::default(), built_image(&[], false));
    let mut observed = ObservedState::default();
    local_image(&mut observed, WEB, "sha256:foreign", None, &[]);
    assert_eq!(
        lines(&plan(&d, &observed, &options())),
        vec![format!("build {WEB}")]
    );
}

#[test]
fn tags_and_pushes_follow_the_build() {
    let d = with_image(DesiredState::default(), built_image(&[WEB_LATEST], true));
    let p = plan(&d, &ObservedState::default(), &options());
    assert_well_formed(&p);
    let build = find(&p, &format!("build {WEB}"));
    let tag = find(&p, &format!("tag {WEB_LATEST}"));
    let push_ref = find(&p, &format!("push {WEB}"));
    let push_tag = find(&p, &format!("push {WEB_LATEST}"));
    assert!(depends_on(&p, tag, build));
    assert!(depends_on(&p, push_ref, build));
    assert!(depends_on(&p, push_tag, tag));
    assert_eq!(p.actions.len(), 4);
}

#[test]
fn a_present_build_is_tagged_and_pushed_only_where_missing() {
    let d = with_image(DesiredState::default(), built_image(&[WEB_LATEST], true));
    let mut observed = ObservedState::default();
    local_image(&mut observed, WEB, "sha256:img", Some(HASH), &[]);
    // Neither tagged nor pushed yet.
    assert_eq!(
        lines(&plan(&d, &observed, &options())),
        vec![
            format!("tag {WEB_LATEST}"),
            format!("push {WEB}"),
            format!("push {WEB_LATEST}")
        ]
    );
    // Tagged, and pushed to the repository (a digest there): nothing to do.
    local_image(
        &mut observed,
        WEB_LATEST,
        "sha256:img",
        Some(HASH),
        &["127.0.0.1:5000/team/web@sha256:d1"],
    );
    assert!(plan(&d, &observed, &options()).is_empty());
}

#[test]
fn containers_may_use_an_extra_tag_without_it_being_pulled() {
    let c = container("app").image(WEB_LATEST, PullPolicy::Always);
    let d = with_image(desired([c]), built_image(&[WEB_LATEST], false));
    let p = plan(&d, &ObservedState::default(), &options());
    assert_eq!(
        lines(&p),
        vec![
            format!("build {WEB}"),
            format!("tag {WEB_LATEST}"),
            "create app".into(),
            "start app".into()
        ]
    );
}

#[test]
fn a_new_registry_digest_is_pulled_and_a_known_one_is_not() {
    const REF: &str = "127.0.0.1:5000/team/api:stable";
    let mut c = container("api").image(REF, PullPolicy::IfNotPresent);
    c.image.resource = Some(image_key("api"));
    let d = with_image(
        desired([c.clone()]),
        image_resource("api", REF, PullPolicy::IfNotPresent),
    );
    let mut observed = observed([matching(&c, 0, "sha256:v1")]);
    local_image(
        &mut observed,
        REF,
        "sha256:v1",
        None,
        &["127.0.0.1:5000/team/api@sha256:d1"],
    );
    observed
        .images
        .registry_digests
        .insert(REF.into(), "sha256:d1".into());
    assert!(plan(&d, &observed, &options()).is_empty(), "same digest");

    observed
        .images
        .registry_digests
        .insert(REF.into(), "sha256:d2".into());
    let p = plan(&d, &observed, &options());
    assert_eq!(lines(&p), vec![format!("pull {REF}")]);
    assert_eq!(
        p.actions[0].reason,
        Reason::NewDigest {
            digest: "sha256:d2".into()
        }
    );
    // A digest in another repository does not count as the same kind.
    let mut other = ObservedState::default();
    local_image(
        &mut other,
        REF,
        "sha256:v1",
        None,
        &["127.0.0.1:5000/team/other@sha256:d2"],
    );
    other
        .images
        .registry_digests
        .insert(REF.into(), "sha256:d2".into());
    let d2 = with_image(
        DesiredState::default(),
        image_resource("api", REF, PullPolicy::IfNotPresent),
    );
    assert_eq!(
        lines(&super::plan(&d2, &other, &options())),
        vec![format!("pull {REF}")]
    );
}

fn users(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Vec<String>>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (image, container) in pairs {
        map.entry(image.to_string())
            .or_default()
            .push(container.to_string());
    }
    Some(map)
}

#[test]
fn prune_removes_a_build_of_a_gone_resource_only_when_unused() {
    let d = DesiredState::default();
    let mut observed = ObservedState::default();
    local_image(&mut observed, WEB, "sha256:img", Some(HASH), &[]);
    // Not observed who uses it: nothing.
    assert!(plan(&d, &observed, &pruning()).is_empty());
    observed.images.users = users(&[]);
    assert!(
        plan(&d, &observed, &options()).is_empty(),
        "only with --prune"
    );
    let plan1 = plan(&d, &observed, &pruning());
    assert_eq!(lines(&plan1), vec![format!("remove-image {WEB}")]);
    assert_eq!(plan1.actions[0].resource, image_key("web"));
    // A container someone else runs keeps it.
    observed.images.users = users(&[("sha256:img", "foreign")]);
    assert!(plan(&d, &observed, &pruning()).is_empty());
    // Another owner's build is never ours.
    observed.images.users = users(&[]);
    observed.images.by_id.get_mut("sha256:img").unwrap().owner = Some("someone-else".into());
    assert!(plan(&d, &observed, &pruning()).is_empty());
}

#[test]
fn prune_waits_for_the_pruned_containers_that_use_the_image() {
    let c = web_container();
    let mut observed = observed([matching(&c, 0, "sha256:img")]);
    local_image(&mut observed, WEB, "sha256:img", Some(HASH), &[]);
    observed.images.users = users(&[("sha256:img", "id-app-0")]);
    let p = plan(&DesiredState::default(), &observed, &pruning());
    let remove = find(&p, "remove app");
    let image = find(&p, &format!("remove-image {WEB}"));
    assert!(depends_on(&p, image, remove));
}

#[test]
fn prune_removes_only_the_recorded_tag_of_a_pulled_image_and_never_a_declared_one() {
    const REF: &str = "127.0.0.1:5000/lib/db:2";
    let mut observed = ObservedState::default();
    local_image(&mut observed, REF, "sha256:db", None, &[]);
    local_image(
        &mut observed,
        "docker.io/library/mine:1",
        "sha256:db",
        None,
        &[],
    );
    observed.images.users = users(&[]);
    observed.images.records.push(ImageRecord {
        resource: ResourceKey::new(Kind::Container, "default", "db"),
        reference: REF.into(),
        id: "sha256:db".into(),
        source: None,
    });
    let plan1 = plan(&DesiredState::default(), &observed, &pruning());
    assert_eq!(lines(&plan1), vec![format!("remove-image {REF}")]);
    let Action::RemoveImage { references, .. } = &plan1.actions[0].action else {
        panic!()
    };
    assert_eq!(
        references,
        &vec![REF.to_string()],
        "the user's own tag is not ours"
    );
    // Still declared by another resource: kept.
    let c = container("other").image("docker.io/library/mine:1", PullPolicy::IfNotPresent);
    let kept = plan(&desired([c]), &observed, &pruning());
    assert!(
        !lines(&kept).iter().any(|l| l.starts_with("remove-image")),
        "{:?}",
        lines(&kept)
    );
    // Not recorded at all: never removed.
    observed.images.records.clear();
    assert!(plan(&DesiredState::default(), &observed, &pruning()).is_empty());
}

#[test]
fn prune_removes_what_a_still_declared_resource_no_longer_names() {
    // A container moved from db:2 (pulled and recorded for it) to db:3.
    const OLD: &str = "127.0.0.1:5000/lib/db:2";
    const NEW: &str = "127.0.0.1:5000/lib/db:3";
    let db = container("db").image(NEW, PullPolicy::IfNotPresent);
    let mut observed = ObservedState::default();
    local_image(&mut observed, OLD, "sha256:old", None, &[]);
    local_image(&mut observed, NEW, "sha256:new", None, &[]);
    observed.images.users = users(&[]);
    observed.images.records.push(ImageRecord {
        resource: db.key.clone(),
        reference: OLD.into(),
        id: "sha256:old".into(),
        source: None,
    });
    let state = desired([db.clone()]);
    let pruned = |p: &Plan| {
        lines(p)
            .into_iter()
            .filter(|l| l.starts_with("remove-image"))
            .collect::<Vec<_>>()
    };
    assert!(
        pruned(&plan(&state, &observed, &options())).is_empty(),
        "only with --prune"
    );
    assert_eq!(
        pruned(&plan(&state, &observed, &pruning())),
        [format!("remove-image {OLD}")]
    );
    // While the resource still names it, or anything else declares it: kept.
    let back = desired([container("db").image(OLD, PullPolicy::IfNotPresent)]);
    assert!(pruned(&plan(&back, &observed, &pruning())).is_empty());
    let other = desired([db, container("x").image(OLD, PullPolicy::IfNotPresent)]);
    assert!(pruned(&plan(&other, &observed, &pruning())).is_empty());

    // An Image resource whose ref moved from web:1 to web:2: its old build goes, tags and all.
    let mut moved = built_image(&[], false);
    moved.reference = "127.0.0.1:5000/team/web:2".into();
    let mut observed = ObservedState::default();
    local_image(&mut observed, WEB, "sha256:img", Some(HASH), &[]);
    observed.images.users = users(&[]);
    let state = with_image(DesiredState::default(), moved);
    assert_eq!(
        pruned(&plan(&state, &observed, &pruning())),
        [format!("remove-image {WEB}")]
    );
    // Someone tagged it too: theirs now, kept.
    local_image(
        &mut observed,
        "127.0.0.1:5000/team/web:prod",
        "sha256:img",
        Some(HASH),
        &[],
    );
    assert!(pruned(&plan(&state, &observed, &pruning())).is_empty());
    let image = observed.images.by_id.get_mut("sha256:img").unwrap();
    image.tags.retain(|t| t == WEB);
    observed.images.by_reference.retain(|r, _| r == WEB);
    // Still its ref: kept; dangling (no tags left): `dockwright prune`'s, not this.
    let state = with_image(DesiredState::default(), built_image(&[], false));
    assert!(pruned(&plan(&state, &observed, &pruning())).is_empty());
    observed
        .images
        .by_id
        .get_mut("sha256:img")
        .unwrap()
        .tags
        .clear();
    observed.images.by_reference.clear();
    let mut moved = built_image(&[], false);
    moved.reference = "127.0.0.1:5000/team/web:2".into();
    let state = with_image(DesiredState::default(), moved);
    assert!(pruned(&plan(&state, &observed, &pruning())).is_empty());
}

#[test]
fn dangling_builds_are_pruned_when_unused() {
    let mut observed = ObservedState::default();
    for (id, owner) in [
        ("sha256:mine", OWNER),
        ("sha256:theirs", "other"),
        ("sha256:used", OWNER),
    ] {
        observed.images.by_id.insert(
            id.into(),
            ObservedImage {
                id: id.into(),
                owner: Some(owner.into()),
                resource: Some(image_key("web")),
                build_hash: Some(HASH.into()),
                ..Default::default()
            },
        );
    }
    local_image(&mut observed, WEB, "sha256:tagged", Some(HASH), &[]);
    assert!(
        plan_prune_dangling(&observed, OWNER).is_empty(),
        "users not observed"
    );
    observed.images.users = users(&[("sha256:used", "c1")]);
    let p = plan_prune_dangling(&observed, OWNER);
    assert_eq!(lines(&p), vec!["remove-image sha256:mine"]);
    assert_eq!(p.actions[0].reason, Reason::Dangling);
}
