//! Which resources may not start this pass because a `dependsOn` can never be met: the
//! dependency is undeclared, declared `Stopped`, cannot be created (image missing with
//! `pullPolicy: Never`), has exited for good without reaching the condition, or is itself
//! blocked — unless the observation already shows it in the required condition.

use std::collections::{BTreeMap, BTreeSet};

use super::hash::{spec_hash, spec_json};
use super::images::ImageStatus;
use crate::api::{DependencyCondition, DesiredRunState, RestartPolicy};
use crate::desired::{DesiredContainer, DesiredState, ResourceKey};
use crate::observed::{HealthState, ObservedContainer, RunState};

/// Start blocks, computed on demand and remembered. Owned by one `plan` call.
pub(super) struct StartBlocks<'a> {
    desired: &'a DesiredState,
    observed: &'a BTreeMap<&'a ResourceKey, Vec<&'a ObservedContainer>>,
    images: &'a BTreeMap<String, ImageStatus>,
    failed_revisions: &'a BTreeSet<(ResourceKey, String)>,
    memo: BTreeMap<ResourceKey, Option<String>>,
    visiting: BTreeSet<ResourceKey>,
}

impl<'a> StartBlocks<'a> {
    /// Blocks for `desired`, given the observed containers of each declared resource, the
    /// image statuses and the revisions held back.
    pub(super) fn new(
        desired: &'a DesiredState,
        observed: &'a BTreeMap<&'a ResourceKey, Vec<&'a ObservedContainer>>,
        images: &'a BTreeMap<String, ImageStatus>,
        failed_revisions: &'a BTreeSet<(ResourceKey, String)>,
    ) -> Self {
        Self {
            desired,
            observed,
            images,
            failed_revisions,
            memo: BTreeMap::new(),
            visiting: BTreeSet::new(),
        }
    }

    /// Why `key` may not be started this pass, if it may not. A `dependsOn` cycle (rejected by
    /// validation) does not block here.
    pub(super) fn reason(&mut self, key: &ResourceKey) -> Option<String> {
        if let Some(known) = self.memo.get(key) {
            return known.clone();
        }
        if !self.visiting.insert(key.clone()) {
            return None;
        }
        let reason = self.compute(key);
        self.visiting.remove(key);
        self.memo.insert(key.clone(), reason.clone());
        reason
    }

    fn compute(&mut self, key: &ResourceKey) -> Option<String> {
        let d = self.desired.containers.get(key)?;
        for (dep_key, condition) in &d.depends_on {
            if dep_key == key {
                continue;
            }
            let Some(dep) = self.desired.containers.get(dep_key) else {
                return Some(format!("dependency {dep_key} is not declared"));
            };
            let reached = self.observed_in(dep_key, dep.replicas, *condition);
            if dep.state == DesiredRunState::Stopped {
                // A stopped dependency is stopped in this pass; only a completed run counts.
                if !(reached && *condition == DependencyCondition::Completed) {
                    return Some(format!(
                        "dependency {dep_key} has state Stopped, so it can never be {condition:?}"
                    ));
                }
                continue;
            }
            if reached {
                continue;
            }
            if let Some(reason) = self.finished_for_good(dep, *condition) {
                return Some(reason);
            }
            if self.images.get(&dep.image.reference) == Some(&ImageStatus::Unavailable) {
                return Some(format!(
                    "dependency {dep_key} cannot be created: image {} is not present",
                    dep.image.reference
                ));
            }
            if self.reason(dep_key).is_some() {
                return Some(format!("dependency {dep_key} is blocked"));
            }
        }
        None
    }

    /// Why a dependency can no longer reach `condition`: a replica that stays (its spec is
    /// unchanged) has exited and will not be started again — `Never`, or `OnFailure` after
    /// exit code 0 — so it can never turn healthy, nor complete if it failed.
    fn finished_for_good(
        &self,
        dep: &DesiredContainer,
        condition: DependencyCondition,
    ) -> Option<String> {
        if condition == DependencyCondition::Started {
            return None;
        }
        // With the image unresolved, or the desired revision held back, the planner keeps
        // what exists; else only a container matching the spec stays.
        let hash = match self.images.get(&dep.image.reference) {
            Some(ImageStatus::Present(id)) => Some(spec_hash(&spec_json(&dep.config, id))),
            _ => None,
        }
        .filter(|h| {
            !(super::rollout::Settings::of(dep).rolls
                && self
                    .failed_revisions
                    .contains(&(dep.key.clone(), h.clone())))
        });
        let list = self
            .observed
            .get(&dep.key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let finished = list.iter().find(|c| {
            let stays_exited = match dep.restart_policy {
                RestartPolicy::Never => true,
                RestartPolicy::OnFailure => c.exit_code == Some(0),
                RestartPolicy::Always => false,
            };
            c.replica.is_some_and(|r| r < dep.replicas)
                && c.state == RunState::Exited
                && stays_exited
                && (hash.is_none() || c.spec_hash == hash)
                && (condition == DependencyCondition::Healthy || c.exit_code != Some(0))
        })?;
        let key = &dep.key;
        let code = finished
            .exit_code
            .map_or_else(|| "unknown".to_string(), |c| c.to_string());
        Some(match condition {
            DependencyCondition::Healthy => {
                format!("dependency {key} has exited (exit code {code}) and is not restarted for the same spec")
            }
            _ => format!(
                "dependency {key} failed (exit code {code}) and is not run again for the same spec"
            ),
        })
    }

    /// True when every replica of `key` is observed in `condition`.
    fn observed_in(
        &self,
        key: &ResourceKey,
        replicas: u32,
        condition: DependencyCondition,
    ) -> bool {
        let list = self
            .observed
            .get(key)
            .map(Vec::as_slice)
            .unwrap_or_default();
        (0..replicas).all(|replica| {
            list.iter().any(|c| {
                c.replica == Some(replica)
                    && match condition {
                        DependencyCondition::Started => c.state == RunState::Running,
                        DependencyCondition::Healthy => {
                            c.state == RunState::Running && c.health == Some(HealthState::Healthy)
                        }
                        DependencyCondition::Completed => {
                            c.state == RunState::Exited && c.exit_code == Some(0)
                        }
                    }
            })
        })
    }
}
