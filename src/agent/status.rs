//! The agent's view of each resource after a pass: phase, replicas, what it waits on, the last
//! error and the back-off. Served as JSON on `/state` for `dockwright get --agent` and
//! `dockwright status`, and summarised into the `dockwright_resources` gauge.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Backoffs, RevisionBackoffs};
use crate::desired::{DesiredState, Kind, ResourceKey};
use crate::observed::ObservedState;
use crate::plan::Plan;
use crate::source::ManifestError;

/// Everything `/state` serves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Number of passes so far.
    pub passes: u64,
    /// One entry per declared resource, plus undeclared managed containers.
    pub resources: Vec<ResourceStatus>,
    /// Manifest problems in effect (last good versions are used meanwhile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifest_errors: Vec<String>,
    /// The git source's revisions and fetches (`agent --git`; added by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::source::git::GitStatus>,
}

/// One resource as the agent last saw it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// `Kind/namespace/name`.
    pub resource: String,
    /// `Ready`, `Progressing`, `Failed`, `Blocked` or `Undeclared`.
    pub phase: String,
    /// Replica containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<crate::api::ReplicaStatus>,
    /// What the resource waits for (planned actions, a block reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    /// The last error, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Seconds until the next attempt, while backing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_seconds: Option<u64>,
}

impl AgentStatus {
    /// Count of resources per `(kind, phase)` for the resources gauge.
    pub fn phase_counts(&self) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for r in &self.resources {
            let kind = r.resource.split('/').next().unwrap_or("").to_string();
            *counts.entry((kind, r.phase.clone())).or_default() += 1;
        }
        counts
    }
}

/// Builds the status from one pass's inputs. Pure.
#[allow(clippy::too_many_arguments)]
pub(super) fn build(
    desired: &DesiredState,
    observed: &ObservedState,
    plan: &Plan,
    backoffs: &Backoffs,
    revisions: &RevisionBackoffs,
    in_flight: &BTreeMap<ResourceKey, usize>,
    last_errors: &BTreeMap<ResourceKey, String>,
    manifest_errors: &[ManifestError],
    passes: u64,
    now: Instant,
) -> AgentStatus {
    let mut replicas: BTreeMap<&ResourceKey, Vec<crate::api::ReplicaStatus>> = BTreeMap::new();
    let mut undeclared: BTreeMap<String, Vec<crate::api::ReplicaStatus>> = BTreeMap::new();
    for c in &observed.containers {
        let replica = c.replica_status();
        match &c.resource {
            Some(k) if desired.containers.contains_key(k) => {
                replicas.entry(k).or_default().push(replica)
            }
            other => undeclared
                .entry(
                    other
                        .as_ref()
                        .map_or_else(|| "-".into(), ToString::to_string),
                )
                .or_default()
                .push(replica),
        }
    }
    let keys = desired.images.keys().chain(desired.containers.keys());
    let mut resources: Vec<ResourceStatus> = keys
        .map(|key| {
            let waiting_on: Vec<String> = plan
                .actions
                .iter()
                .filter(|a| &a.resource == key)
                .map(|a| format!("{} {} ({})", a.action.verb(), a.action.target(), a.reason))
                .chain(
                    plan.blocked
                        .iter()
                        .filter(|b| &b.resource == key)
                        .map(|b| format!("blocked: {}", b.message)),
                )
                .collect();
            // The resource's own back-off, else its revision's (a rolled-back rollout).
            let until = backoffs
                .get(key)
                .map(|b| b.until)
                .filter(|u| *u > now)
                .or_else(|| revisions.waiting(key, now).map(|b| b.until));
            let phase = if until.is_some() {
                "Failed"
            } else if plan.blocked.iter().any(|b| &b.resource == key) {
                "Blocked"
            } else if in_flight.contains_key(key) || !waiting_on.is_empty() {
                "Progressing"
            } else {
                "Ready"
            };
            let mut reps = replicas.remove(key).unwrap_or_default();
            reps.sort_by(|a, b| a.name.cmp(&b.name));
            ResourceStatus {
                resource: key.to_string(),
                phase: phase.to_string(),
                replicas: if key.kind == Kind::Container {
                    reps
                } else {
                    Vec::new()
                },
                waiting_on,
                last_error: last_errors.get(key).cloned(),
                retry_in_seconds: until.map(|u| u.saturating_duration_since(now).as_secs()),
            }
        })
        .collect();
    resources.extend(
        undeclared
            .into_iter()
            .map(|(resource, replicas)| ResourceStatus {
                resource,
                phase: "Undeclared".into(),
                replicas,
                ..Default::default()
            }),
    );
    AgentStatus {
        passes,
        resources,
        manifest_errors: manifest_errors.iter().map(ToString::to_string).collect(),
        source: None,
    }
}
