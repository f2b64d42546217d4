//! Image decisions: which references to build, pull, tag and push and, for every reference a
//! container uses, the image ID to hash (or the build or pull its creates must wait for).
//! Pull policy has kubelet semantics; a build happens exactly when the `build-hash` label of
//! the image the reference names differs from the declared inputs' hash; a moving tag is
//! pulled when the registry digest the caller observed is not among the image's digests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::graph::{Graph, NodeId};
use super::{Action, BuildSpec, Reason};
use crate::api::PullPolicy;
use crate::desired::{DesiredBuild, DesiredImage, DesiredState, ResourceKey};
use crate::labels;
use crate::observed::ObservedState;
use crate::reference::Reference;

/// What the containers using one reference can count on in this pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ImageStatus {
    /// Present locally with this ID (possibly re-pulled by a `PullAlways` action, whose new ID
    /// the next pass picks up).
    Present(String),
    /// Missing or outdated; this build or pull node brings it. Creates are deferred behind
    /// it, and existing containers are kept until the next pass sees the new ID.
    Pending(NodeId),
    /// Missing and `pullPolicy: Never`: nothing can be created from it.
    Unavailable,
}

/// Everything that asks for one reference.
struct Need<'a> {
    policy: PullPolicy,
    /// The `Image` resource whose `ref` this is.
    image: Option<&'a DesiredImage>,
    image_resource: Option<ResourceKey>,
    containers: Vec<ResourceKey>,
}

/// Plans the builds, pulls, tags and pushes and returns the status of every reference in use.
///
/// A reference used by several resources is pulled once. Their policies combine to the most
/// eager one (`Always` over `IfNotPresent` over `Never`): the image is shared, so a pull one
/// resource asks for serves all of them. The pull is attributed to the `Image` resource when
/// there is one, else to the first container using it. A reference that is an extra tag of
/// an `Image` shares that image's status: it is never pulled, the tag action provides it.
/// `Always` does not pull a reference in `fresh` (see [`super::PlanOptions::fresh_pulls`]).
pub(super) fn plan_images(
    graph: &mut Graph,
    desired: &DesiredState,
    observed: &ObservedState,
    owner: &str,
    source: &str,
    fresh: &BTreeSet<String>,
) -> BTreeMap<String, ImageStatus> {
    let mut needs: BTreeMap<&str, Need<'_>> = BTreeMap::new();
    let mut tag_of: BTreeMap<&str, &str> = BTreeMap::new();
    for image in desired.images.values() {
        let need = need_for(&mut needs, &image.reference, image.pull_policy);
        need.image_resource.get_or_insert_with(|| image.key.clone());
        need.image.get_or_insert(image);
        for tag in &image.tags {
            tag_of.insert(tag, &image.reference);
        }
    }
    let mut tag_users: BTreeMap<&str, Vec<ResourceKey>> = BTreeMap::new();
    for container in desired.containers.values() {
        let reference = container.image.reference.as_str();
        if !needs.contains_key(reference) && tag_of.contains_key(reference) {
            tag_users
                .entry(reference)
                .or_default()
                .push(container.key.clone());
            continue;
        }
        let need = need_for(&mut needs, reference, container.image.pull_policy);
        if let Some(resource) = &container.image.resource {
            need.image_resource.get_or_insert_with(|| resource.clone());
        }
        need.containers.push(container.key.clone());
    }

    let mut statuses = BTreeMap::new();
    for (reference, need) in &needs {
        let Some(owner_key) = need.image_resource.as_ref().or(need.containers.first()) else {
            continue;
        };
        let status = match need.image.and_then(|i| i.build.as_ref().map(|b| (i, b))) {
            Some((image, build)) => plan_build(graph, image, build, observed, owner, source),
            None => plan_pull(graph, reference, need, owner_key, observed, fresh),
        };
        statuses.insert(reference.to_string(), status);
    }
    for image in desired.images.values() {
        if let Some(status) = statuses.get(&image.reference).cloned() {
            plan_tags_and_push(graph, image, &status, observed);
        }
    }
    for (tag, _) in tag_users {
        let status = tag_of
            .get(tag)
            .and_then(|r| statuses.get(*r))
            .cloned()
            .unwrap_or(ImageStatus::Unavailable);
        statuses.insert(tag.to_string(), status);
    }
    statuses
}

/// Builds when the reference is missing or names an image built from other inputs.
fn plan_build(
    graph: &mut Graph,
    image: &DesiredImage,
    build: &Arc<DesiredBuild>,
    observed: &ObservedState,
    owner: &str,
    source: &str,
) -> ImageStatus {
    let current = observed.images.image_for(&image.reference);
    let current_hash = current.and_then(|i| i.build_hash.as_deref());
    if let Some(current) = current.filter(|_| current_hash == Some(build.hash.as_str())) {
        return ImageStatus::Present(current.id.clone());
    }
    let mut labels: BTreeMap<String, String> = build
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with(labels::PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend(labels::ownership(owner, source));
    labels.insert(labels::RESOURCE.into(), image.key.to_string());
    labels.insert(labels::BUILD_HASH.into(), build.hash.clone());
    let spec = BuildSpec {
        reference: image.reference.clone(),
        build: Arc::clone(build),
        labels,
        auth: image.registry_auth.clone(),
    };
    let reason = Reason::BuildChanged {
        old: current_hash.unwrap_or("-").to_string(),
        new: build.hash.clone(),
    };
    let node = graph.add(&image.key, Action::BuildImage(Box::new(spec)), reason, []);
    ImageStatus::Pending(node)
}

/// Pulls by policy, or because the registry has a new digest for the tag.
fn plan_pull(
    graph: &mut Graph,
    reference: &str,
    need: &Need<'_>,
    owner_key: &ResourceKey,
    observed: &ObservedState,
    fresh: &BTreeSet<String>,
) -> ImageStatus {
    let auth = need.image.and_then(|i| i.registry_auth.clone());
    let mut pull = |reason| {
        let action = Action::PullImage {
            reference: reference.to_string(),
            auth: auth.clone(),
        };
        graph.add(owner_key, action, reason, [])
    };
    let local = observed.images.resolve(reference);
    // Like with like: the registry's descriptor digest of the tag against the digests the
    // image recorded when it was pulled (also descriptor digests of tags), same repository.
    let new_digest = observed
        .images
        .registry_digests
        .get(reference)
        .filter(|digest| {
            let repository = Reference::parse(reference).map(|r| r.repository());
            let known = observed.images.image_for(reference).is_some_and(|image| {
                repository
                    .as_ref()
                    .is_ok_and(|repo| image.has_digest(repo, digest))
            });
            !known
        });
    match (local, need.policy, new_digest) {
        (Some(id), PullPolicy::Never, _) => ImageStatus::Present(id.to_string()),
        (None, PullPolicy::Never, _) => {
            let message = format!("image {reference} is not present and pullPolicy is Never");
            for key in need.image_resource.iter().chain(&need.containers) {
                graph.block(key, message.clone());
            }
            ImageStatus::Unavailable
        }
        (Some(_), _, Some(digest)) => ImageStatus::Pending(pull(Reason::NewDigest {
            digest: digest.clone(),
        })),
        (Some(id), PullPolicy::Always, None) if !fresh.contains(reference) => {
            pull(Reason::PullAlways);
            ImageStatus::Present(id.to_string())
        }
        (Some(id), _, None) => ImageStatus::Present(id.to_string()),
        (None, _, _) => ImageStatus::Pending(pull(Reason::ImageMissing)),
    }
}

/// Tags the image with each extra tag that is missing or names another image, and with
/// `push` pushes every reference that changed in this plan or whose repository the image
/// has no digest in (never pushed there, or the last push failed).
fn plan_tags_and_push(
    graph: &mut Graph,
    image: &DesiredImage,
    status: &ImageStatus,
    observed: &ObservedState,
) {
    let (id, provider) = match status {
        ImageStatus::Present(id) => (Some(id.as_str()), None),
        ImageStatus::Pending(node) => (None, Some(*node)),
        ImageStatus::Unavailable => return,
    };
    // Each reference with the node after which it names the new image (None: already does).
    let mut references: Vec<(&str, Option<NodeId>)> = vec![(&image.reference, provider)];
    for tag in &image.tags {
        let current = observed.images.resolve(tag);
        let node = match id {
            Some(id) if current == Some(id) => None,
            _ => {
                let action = Action::TagImage {
                    source: image.reference.clone(),
                    target: tag.clone(),
                };
                Some(graph.add(&image.key, action, Reason::TagMissing, provider))
            }
        };
        references.push((tag, node));
    }
    if !image.push {
        return;
    }
    for (reference, node) in references {
        let needed = match (id, node) {
            (Some(id), None) => {
                let repository = Reference::parse(reference).map(|r| r.repository());
                let pushed = observed.images.by_id.get(id).is_some_and(|i| {
                    repository
                        .as_ref()
                        .is_ok_and(|repo| i.has_any_digest_in(repo))
                });
                !pushed
            }
            _ => true,
        };
        if needed {
            let action = Action::PushImage {
                reference: reference.to_string(),
                auth: image.registry_auth.clone(),
            };
            graph.add(&image.key, action, Reason::NotPushed, node);
        }
    }
}

fn need_for<'m, 'a>(
    needs: &'m mut BTreeMap<&'a str, Need<'a>>,
    reference: &'a str,
    policy: PullPolicy,
) -> &'m mut Need<'a> {
    let need = needs.entry(reference).or_insert(Need {
        policy,
        image: None,
        image_resource: None,
        containers: Vec::new(),
    });
    need.policy = eager(need.policy, policy);
    need
}

fn eager(a: PullPolicy, b: PullPolicy) -> PullPolicy {
    let rank = |p| match p {
        PullPolicy::Always => 2,
        PullPolicy::IfNotPresent => 1,
        PullPolicy::Never => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}
