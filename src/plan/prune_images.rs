//! Image removals, the careful way: only images dockwright owns (built with its owner label,
//! or recorded as pulled for a resource in its state file) for a resource that left the
//! manifests or no longer names them (its `ref` or image changed), only when no container of
//! any owner uses them — unless every such container is removed earlier in the same plan — and
//! never an image any declared reference still names. Only images of this source (built with
//! its source label, or pulled by it) are removed. Without an observation of the image
//! users nothing is removed at all.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::{Graph, NodeId};
use super::{Action, Plan, Reason};
use crate::desired::{DesiredState, Kind, ResourceKey};
use crate::observed::ObservedState;

/// One image to remove, with whom it is attributed to and the references to drop.
struct Doomed {
    resource: ResourceKey,
    references: BTreeSet<String>,
}

/// Plans the removal of images dockwright built or pulled for resources that left the
/// manifests or now name other images (`apply --prune`). `removed` maps container IDs to the
/// nodes removing them in this plan, so an image whose last users go now is removed after them.
pub(super) fn plan_prune_images(
    graph: &mut Graph,
    desired: &DesiredState,
    observed: &ObservedState,
    scope: &super::SourceScope<'_>,
    owner: &str,
    removed: &BTreeMap<String, NodeId>,
) {
    let images = &observed.images;
    let Some(users) = &images.users else {
        return;
    };
    let mut doomed: BTreeMap<&str, Doomed> = BTreeMap::new();
    for image in images.by_id.values() {
        let Some(resource) = &image.resource else {
            continue;
        };
        let left = match references_of(desired, resource) {
            None => true,
            // Still declared, under another ref: an image left with the one tag it was built
            // under, which the resource no longer names. One with more tags may carry a tag
            // someone added (theirs now); a dangling one is `dockwright prune`'s.
            Some(named) => match image.tags.as_slice() {
                [only] => !named.contains(only.as_str()),
                _ => false,
            },
        };
        if image.owner.as_deref() == Some(owner)
            && scope.owns_label(image.source.as_deref())
            && resource.kind == Kind::Image
            && left
        {
            // Built by us for a resource that is gone: the image and its tags are ours.
            doomed.insert(
                &image.id,
                Doomed {
                    resource: resource.clone(),
                    references: image.tags.iter().cloned().collect(),
                },
            );
        }
    }
    for record in &images.records {
        if !scope.owns_label(record.source.as_deref()) {
            continue;
        }
        let Some(image) = images.by_id.get(&record.id) else {
            continue;
        };
        if references_of(desired, &record.resource)
            .is_some_and(|named| named.contains(record.reference.as_str()))
        {
            continue;
        }
        let entry = doomed.entry(&image.id).or_insert_with(|| Doomed {
            resource: record.resource.clone(),
            references: BTreeSet::new(),
        });
        // Only the tag we pulled, and only while it still names the image we pulled.
        if images.resolve(&record.reference) == Some(image.id.as_str()) {
            entry.references.insert(record.reference.clone());
        }
    }
    let in_use = declared_ids(desired, observed);
    for (id, d) in doomed {
        if in_use.contains(id) {
            continue;
        }
        let Some(image) = images.by_id.get(id) else {
            continue;
        };
        // With no reference of ours left on it, only a dangling image may go (by ID); one
        // that others tagged is theirs now.
        if d.references.is_empty() && !image.tags.is_empty() {
            continue;
        }
        let mut after = Vec::new();
        let users_gone = users.get(id).is_none_or(|list| {
            list.iter().all(|c| match removed.get(c) {
                Some(node) => {
                    after.push(*node);
                    true
                }
                None => false,
            })
        });
        if !users_gone {
            continue;
        }
        let action = Action::RemoveImage {
            id: id.to_string(),
            references: d.references.into_iter().collect(),
        };
        graph.add(&d.resource, action, scope.pruned(), after);
    }
}

/// The references `key` declares (an `Image`'s ref and tags, a container's image); `None`
/// when it is not declared.
fn references_of<'a>(desired: &'a DesiredState, key: &ResourceKey) -> Option<BTreeSet<&'a str>> {
    match key.kind {
        Kind::Image => desired.images.get(key).map(|i| {
            std::iter::once(&i.reference)
                .chain(&i.tags)
                .map(String::as_str)
                .collect()
        }),
        Kind::Container => desired
            .containers
            .get(key)
            .map(|c| BTreeSet::from([c.image.reference.as_str()])),
        // No image is built or pulled for these.
        Kind::Network | Kind::Volume => None,
    }
}

/// IDs of every image a declared reference (an `Image`'s ref or tag, a container's image)
/// resolves to now.
fn declared_ids<'a>(desired: &DesiredState, observed: &'a ObservedState) -> BTreeSet<&'a str> {
    let images = desired.images.values();
    let references = images
        .flat_map(|i| std::iter::once(&i.reference).chain(&i.tags))
        .chain(desired.containers.values().map(|c| &c.image.reference));
    references
        .filter_map(|r| observed.images.resolve(r))
        .collect()
}

/// Plans `dockwright prune`: every dangling image dockwright built (owner label) or pulled
/// (state file) that no container uses. Nothing without an observation of image users.
pub fn plan_prune_dangling(observed: &ObservedState, owner: &str) -> Plan {
    let mut graph = Graph::default();
    let images = &observed.images;
    let Some(users) = &images.users else {
        return graph.into_plan();
    };
    // Pulled by tag only: an image pulled by digest has no tag by nature, and is not dangling.
    let recorded: BTreeMap<&str, &ResourceKey> = images
        .records
        .iter()
        .filter(|r| !r.reference.contains('@'))
        .map(|r| (r.id.as_str(), &r.resource))
        .collect();
    for image in images.by_id.values() {
        if !image.tags.is_empty() || users.get(&image.id).is_some_and(|u| !u.is_empty()) {
            continue;
        }
        let built = image.owner.as_deref() == Some(owner);
        let resource = match (built, &image.resource, recorded.get(image.id.as_str())) {
            (true, Some(resource), _) => resource.clone(),
            (true, None, _) => ResourceKey::new(Kind::Image, "-", short(&image.id)),
            (false, _, Some(resource)) => (*resource).clone(),
            (false, _, None) => continue,
        };
        let action = Action::RemoveImage {
            id: image.id.clone(),
            references: Vec::new(),
        };
        graph.add(&resource, action, Reason::Dangling, []);
    }
    graph.into_plan()
}

fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}
