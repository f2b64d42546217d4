//! The pure planner: desired × observed → ordered actions, each with its reason. No I/O, no
//! clock, deterministic; every decision about what to change lives here and the executor only
//! runs what it emits. A converged daemon yields an empty plan.

mod action;
mod blocks;
mod containers;
mod graph;
mod hash;
#[cfg(test)]
mod image_tests;
mod images;
mod objects;
#[cfg(test)]
mod proptests;
mod prune_images;
mod restrict;
mod rollout;
#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod source_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
mod unfinished;

pub use action::*;
pub use hash::{
    changed_fields, container_labels, object_labels, object_spec_json, spec_hash, spec_json,
};
pub use prune_images::plan_prune_dangling;
pub use restrict::{hold, independent_groups, restrict, restrict_actions};
pub use rollout::{kept_name, short_revision, unfit_revisions, KEPT_SUFFIX};

use std::collections::{BTreeMap, BTreeSet};

use crate::api::DependencyCondition;
use crate::desired::{DesiredState, Kind, ResourceKey};
use crate::observed::{ObservedContainer, ObservedState};
use blocks::StartBlocks;
use containers::{Planner, ResourceOutcome};
use graph::Graph;
use images::ImageStatus;

/// Settings of one planning pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Owner label value written on created containers.
    pub owner: String,
    /// Source identity written on created objects (`dockwright.dev/source`) and the scope of
    /// pruning: only containers of this source are pruned; a declared resource whose
    /// containers belong to another source is blocked (see [`PlanOptions::take_over`]);
    /// containers without a source (made before sources existed) are adopted by the source
    /// that declares them and otherwise left alone. Empty: no scoping (every container of the
    /// owner counts as this source's, as before sources existed) — for library callers only.
    pub source: String,
    /// Take over declared resources whose containers belong to another source of the same
    /// owner (`--take-over`): recorded as ours, without a recreate.
    pub take_over: bool,
    /// Record adoptions of containers without a source label (an `adopt` action writing the
    /// owner's state file), so that they are this source's for good: pruned by it, a clash for
    /// others. Without it (no state directory, e.g. in a pod without one) such a container is
    /// treated as this source's while it declares it, and never pruned.
    pub record_adoptions: bool,
    /// Remove managed containers whose resource is no longer declared (or cannot be read).
    pub prune: bool,
    /// Revisions (resource, spec hash) found unfit earlier — a rollout to them did not become
    /// healthy, see [`unfit_revisions`] — and not to be rolled out again yet: a replica
    /// running one next to its kept predecessor is rolled back, the others keep what they
    /// run. The caller decides for how long (the agent: while the resource backs off).
    pub failed_revisions: BTreeSet<(ResourceKey, String)>,
    /// Canonical references this process pulled so recently that `pullPolicy: Always` does
    /// not pull them again in this plan (a long-running caller's own re-plans would otherwise
    /// pull on every pass; see `crate::agent::FreshPulls`). `apply` starts empty and adds
    /// what each round pulled, so its later rounds do not pull again.
    pub fresh_pulls: BTreeSet<String>,
}

/// Plans the actions that take `observed` to `desired`.
///
/// Order of the result: pulls and prerequisites before the creates that need them, removals
/// of containers holding a name or host port before the create or rename taking it, replicas
/// of a changed resource rolled in waves of `maxUnavailable` (see `rollout`), `dependsOn`
/// targets before their dependents' starts.
/// Containers whose resource label names another kind are never touched; containers whose
/// resource is undeclared or unreadable are removed only with `prune`.
pub fn plan(desired: &DesiredState, observed: &ObservedState, options: &PlanOptions) -> Plan {
    let mut graph = Graph::default();
    let images = images::plan_images(
        &mut graph,
        desired,
        observed,
        &options.owner,
        &options.source,
        &options.fresh_pulls,
    );
    let scope = SourceScope::new(&options.source);
    let clashes = scope.clashes(desired, observed, options.take_over);
    for (key, other) in &clashes {
        graph.block(
            key,
            format!(
                "{key} is also declared by source {other:?} (owner {:?}); this source is {:?}. \
                 Remove it from one of them, or pass --take-over to move it here (no recreate)",
                options.owner, options.source
            ),
        );
    }

    let mut sorted: Vec<&ObservedContainer> = observed.containers.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.resource, a.replica, &a.name, &a.id).cmp(&(&b.resource, b.replica, &b.name, &b.id))
    });
    let mut by_resource: BTreeMap<&ResourceKey, Vec<&ObservedContainer>> = BTreeMap::new();
    let objects = objects::plan_objects(
        &mut graph,
        desired,
        observed,
        &options.owner,
        &options.source,
    );
    let mut planner = Planner::new(
        &mut graph,
        &options.owner,
        &options.source,
        &options.failed_revisions,
        objects,
    );
    for c in sorted {
        match &c.resource {
            Some(key) if key.kind != Kind::Container => {}
            Some(key) if clashes.contains_key(key) => {}
            Some(key) if desired.containers.contains_key(key) => {
                let adoption = scope
                    .adoption(c)
                    .filter(|r| options.record_adoptions || *r != Reason::Adopted);
                if let Some(reason) = adoption {
                    let action = Action::AdoptContainer {
                        id: c.id.clone(),
                        name: c.name.clone(),
                        source: options.source.clone(),
                    };
                    planner.graph.add(key, action, reason, None);
                }
                let unfinished = desired.containers.get(key).is_some_and(|d| {
                    unfinished::must_recreate_files(c, d, images.get(&d.image.reference))
                });
                // Left out, the replica counts as missing: its create adopts this container
                // and copies its files again before the start (see `unfinished`).
                if !unfinished {
                    by_resource.entry(key).or_default().push(c)
                }
            }
            Some(key) if options.prune && scope.owns(c) => {
                planner.remove(key, c, scope.pruned(), None);
            }
            None if options.prune && scope.owns(c) => {
                // No readable resource to attribute it to: name it after the container.
                let key = ResourceKey::new(Kind::Container, "-", c.name.clone());
                planner.remove(&key, c, scope.pruned(), None);
            }
            _ => {}
        }
    }

    let mut blocks = StartBlocks::new(desired, &by_resource, &images, &options.failed_revisions);
    let mut outcomes: BTreeMap<&ResourceKey, ResourceOutcome<'_>> = BTreeMap::new();
    for (key, d) in &desired.containers {
        if clashes.contains_key(key) {
            continue;
        }
        let status = images
            .get(&d.image.reference)
            .cloned()
            .unwrap_or(ImageStatus::Unavailable);
        let observed_here = by_resource.get(key).map(Vec::as_slice).unwrap_or_default();
        let blocked = blocks.reason(key);
        let outcome = planner.plan_resource(d, observed_here, &status, blocked.as_deref());
        outcomes.insert(key, outcome);
    }

    let claims = (
        std::mem::take(&mut planner.freed),
        std::mem::take(&mut planner.taken),
    );
    let removed = std::mem::take(&mut planner.removed);
    drop(planner);
    if options.prune {
        prune_images::plan_prune_images(
            &mut graph,
            desired,
            observed,
            &scope,
            &options.owner,
            &removed,
        );
        objects::prune_objects(&mut graph, desired, observed, &scope, &removed);
    }
    order_dependencies(&mut graph, desired, &outcomes);
    order_claims(&mut graph, &claims.0, &claims.1);
    graph.into_plan()
}

/// Which containers a source may act on; see [`PlanOptions::source`].
pub(crate) struct SourceScope<'a> {
    source: &'a str,
}

impl<'a> SourceScope<'a> {
    /// The scope of `source` (empty: unscoped).
    pub(crate) fn new(source: &'a str) -> Self {
        Self { source }
    }

    /// True when `c` was declared by this source (and so may be pruned by it).
    pub(crate) fn owns(&self, c: &ObservedContainer) -> bool {
        self.source.is_empty() || c.source.as_deref() == Some(self.source)
    }

    /// True when an object's source label (`None`: none) is this source's.
    pub(crate) fn owns_label(&self, label: Option<&str>) -> bool {
        self.source.is_empty() || label == Some(self.source)
    }

    /// Why a container of a resource this source declares is recorded as this source's: it
    /// has no source (made before sources existed), or another one and `--take-over` asked
    /// for it. `None` when it already is this source's.
    fn adoption(&self, c: &ObservedContainer) -> Option<Reason> {
        if self.owns(c) {
            return None;
        }
        Some(match &c.source {
            None => Reason::Adopted,
            Some(from) => Reason::TakenOver { from: from.clone() },
        })
    }

    /// The reason a container of this source whose resource left it is removed.
    pub(crate) fn pruned(&self) -> Reason {
        if self.source.is_empty() {
            Reason::Pruned
        } else {
            Reason::PrunedFromSource {
                source: self.source.to_string(),
            }
        }
    }

    /// Declared `Container` resources with a container of another source, and that source
    /// (the first by container name); empty with `take_over`.
    fn clashes(
        &self,
        desired: &DesiredState,
        observed: &ObservedState,
        take_over: bool,
    ) -> BTreeMap<ResourceKey, String> {
        let mut out = BTreeMap::new();
        if take_over || self.source.is_empty() {
            return out;
        }
        let mut sorted: Vec<&ObservedContainer> = observed.containers.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for c in sorted {
            let (Some(key), Some(other)) = (&c.resource, &c.source) else {
                continue;
            };
            if other != self.source && desired.containers.contains_key(key) {
                out.entry(key.clone()).or_insert_with(|| other.clone());
            }
        }
        out
    }
}

/// Plans the removal of the owner's containers that no source declared (made before source
/// labels existed and never adopted): `dockwright prune --orphans`.
pub fn plan_orphans(observed: &ObservedState) -> Plan {
    let mut orphans: Vec<&ObservedContainer> = observed
        .containers
        .iter()
        .filter(|c| c.source.is_none())
        .collect();
    orphans
        .sort_by(|a, b| (&a.resource, a.replica, &a.name).cmp(&(&b.resource, b.replica, &b.name)));
    let mut plan = Plan::default();
    for c in orphans {
        let key = c
            .resource
            .clone()
            .unwrap_or_else(|| ResourceKey::new(Kind::Container, "-", c.name.clone()));
        let action = Action::RemoveContainer {
            id: c.id.clone(),
            name: c.name.clone(),
        };
        plan.push(key, action, Reason::Orphan, Vec::new());
    }
    plan
}

/// Plans the removal of every container of the given `Container` resources (`delete`).
/// Containers labelled with another kind are never touched; images, volumes and networks are
/// left in place.
pub fn plan_delete(keys: &BTreeSet<ResourceKey>, observed: &ObservedState) -> Plan {
    let mut doomed: Vec<(&ResourceKey, &ObservedContainer)> = observed
        .containers
        .iter()
        .filter_map(|c| c.resource.as_ref().map(|key| (key, c)))
        .filter(|(key, _)| key.kind == Kind::Container && keys.contains(*key))
        .collect();
    doomed.sort_by(|(ka, a), (kb, b)| {
        (ka, a.replica, &a.name, &a.id).cmp(&(kb, b.replica, &b.name, &b.id))
    });
    let mut plan = Plan::default();
    for (key, c) in doomed {
        let action = Action::RemoveContainer {
            id: c.id.clone(),
            name: c.name.clone(),
        };
        plan.push(key.clone(), action, Reason::Deleted, Vec::new());
    }
    plan
}

/// Orders every dependent's starts after its dependencies' creates and starts in this plan,
/// and for `Healthy`/`Completed` behind an await on each dependency replica not already in
/// that condition. Only starts wait: creating a dependent early is harmless and saves time.
fn order_dependencies(
    graph: &mut Graph,
    desired: &DesiredState,
    outcomes: &BTreeMap<&ResourceKey, ResourceOutcome<'_>>,
) {
    for (key, d) in &desired.containers {
        let starts = outcomes
            .get(key)
            .map(ResourceOutcome::starts)
            .unwrap_or_default();
        if starts.is_empty() {
            continue;
        }
        for (i, (dep_key, condition)) in d.depends_on.iter().enumerate() {
            if dep_key == key || d.depends_on[..i].contains(&(dep_key.clone(), *condition)) {
                continue;
            }
            let Some(dep) = outcomes.get(dep_key) else {
                continue;
            };
            for replica in &dep.replicas {
                let before: Vec<_> = replica.create.into_iter().chain(replica.start).collect();
                let awaited = match condition {
                    DependencyCondition::Started => None,
                    DependencyCondition::Healthy | DependencyCondition::Completed
                        if replica.already(*condition) =>
                    {
                        None
                    }
                    DependencyCondition::Healthy | DependencyCondition::Completed => {
                        let action = Action::AwaitCondition {
                            name: replica.name.clone(),
                            condition: *condition,
                            timeout_seconds: None,
                        };
                        Some(graph.add(key, action, Reason::Dependency, replica.last))
                    }
                };
                for &start in &starts {
                    for &b in before.iter().chain(&awaited) {
                        graph.order(b, start);
                    }
                }
            }
        }
    }
}

/// Orders each create or rename after the removal or rename that frees the name or host port
/// it takes.
fn order_claims(graph: &mut Graph, freed: &[containers::Claim], taken: &[containers::Claim]) {
    for take in taken {
        for free in freed {
            if take.node != free.node && take.conflicts_with(free) {
                graph.order(free.node, take.node);
            }
        }
    }
}
