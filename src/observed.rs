//! What the daemon has, as the planner sees it: the managed containers (one filtered list
//! call) and the local images (one list call). Built by [`crate::docker`], read by
//! [`crate::plan`]; no Docker types leak past this module.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::desired::ResourceKey;

/// A snapshot of the daemon.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedState {
    /// Containers that carry this agent's owner label.
    pub containers: Vec<ObservedContainer>,
    /// Local images.
    pub images: ObservedImages,
    /// Networks that carry this agent's owner label.
    pub networks: Vec<ObservedObject>,
    /// Volumes that carry this agent's owner label.
    pub volumes: Vec<ObservedObject>,
}

/// A network or volume of ours, with the containers (of any owner) that use it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedObject {
    /// Network ID; for a volume its name.
    pub id: String,
    /// Docker name.
    pub name: String,
    /// The resource label, when it parses (absent on one created on demand for a container).
    pub resource: Option<ResourceKey>,
    /// The spec-hash label.
    pub spec_hash: Option<String>,
    /// The spec label.
    pub spec: Option<String>,
    /// The reclaim-policy label (volumes).
    pub reclaim_policy: Option<String>,
    /// The source label: which source declared it (`None`: made before sources existed).
    pub source: Option<String>,
    /// Containers attached to or mounting it, running or not. `None` when not observed:
    /// then it counts as in use.
    pub users: Option<Vec<ObjectUser>>,
}

/// A container using a network or volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectUser {
    /// Container ID.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Its owner label, if any.
    pub owner: Option<String>,
}

impl ObservedObject {
    /// An object as its labels describe it (`label` looks one up by name); `users` unset.
    pub fn from_labels(id: String, name: String, label: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            id,
            name,
            resource: label(crate::labels::RESOURCE).and_then(|l| ResourceKey::parse(&l)),
            spec_hash: label(crate::labels::SPEC_HASH),
            spec: label(crate::labels::SPEC),
            reclaim_policy: label(crate::labels::RECLAIM_POLICY),
            source: label(crate::labels::SOURCE),
            users: None,
        }
    }

    /// The users whose owner label is not `owner` (all users when not observed: `None`).
    pub fn foreign_users(&self, owner: &str) -> Option<Vec<&ObjectUser>> {
        self.users.as_ref().map(|users| {
            users
                .iter()
                .filter(|u| u.owner.as_deref() != Some(owner))
                .collect()
        })
    }
}

/// Docker's container state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the daemon's restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited.
    Exited,
    /// Dead (failed removal).
    Dead,
}

impl RunState {
    /// Parses Docker's `State` string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "removing" => Self::Removing,
            "exited" => Self::Exited,
            "dead" => Self::Dead,
            _ => return None,
        })
    }

    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }
}

/// Health as reported in the container list's status text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Within the start period or before the first check.
    Starting,
    /// Last checks passed.
    Healthy,
    /// Failed `retries` times in a row.
    Unhealthy,
}

impl HealthState {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One managed container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedContainer {
    /// Container ID.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// The resource label, when it parses.
    pub resource: Option<ResourceKey>,
    /// The replica label, when it parses.
    pub replica: Option<u32>,
    /// The spec-hash label.
    pub spec_hash: Option<String>,
    /// The spec label (canonical JSON of the create configuration plus image ID).
    pub spec: Option<String>,
    /// The source that declared it: the `dockwright.dev/source` label, or the adoption
    /// record that moved it (see [`crate::adoptions`]). `None`: created before sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// State.
    pub state: RunState,
    /// Health, when the container has a health check.
    pub health: Option<HealthState>,
    /// Exit code, for exited containers.
    pub exit_code: Option<i64>,
    /// Image ID the container was created from.
    pub image_id: String,
    /// Image as the daemon names it.
    pub image: String,
    /// Published ports as `hostIP:hostPort->containerPort/proto`.
    pub ports: Vec<String>,
    /// Creation time (Unix seconds).
    pub created: i64,
    /// Docker's status text, e.g. `Up 3 minutes (healthy)`.
    pub status: String,
}

impl ObservedContainer {
    /// This container as a replica in a status (the agent's and the Kubernetes one).
    pub fn replica_status(&self) -> crate::api::ReplicaStatus {
        crate::api::ReplicaStatus {
            name: self.name.clone(),
            container_id: Some(self.id.clone()),
            image_id: Some(self.image_id.clone()),
            revision: self
                .spec_hash
                .as_deref()
                .map(|h| crate::plan::short_revision(h).to_string()),
            state: Some(self.state.as_str().to_string()),
            health: self.health.map(|h| h.as_str().to_string()),
            exit_code: self.exit_code.filter(|_| self.state == RunState::Exited),
            // The list call the observation is made of does not carry it; the Kubernetes
            // status fills it from cached inspects (`crate::docker::RestartCounts`).
            restart_count: None,
        }
    }
}

/// Local images: which reference resolves to which ID, and what each image carries; plus
/// what image decisions need from elsewhere (registry digests, image users, pull records),
/// filled in by the caller before planning when it has them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedImages {
    /// Canonical reference (`tag` or `@digest` form) → image ID.
    pub by_reference: BTreeMap<String, String>,
    /// Local images by ID (from the same list call).
    pub by_id: BTreeMap<String, ObservedImage>,
    /// Registry digest of each canonical tag reference whose update is due (checked before
    /// planning, `minAge` already applied); empty when no check ran.
    pub registry_digests: BTreeMap<String, String>,
    /// IDs of the containers of any owner (managed or not) using each image ID. `None` when
    /// not observed: then no image is removed.
    pub users: Option<BTreeMap<String, Vec<String>>>,
    /// What dockwright pulled for which resource (its state file), for `--prune`.
    pub records: Vec<ImageRecord>,
}

impl ObservedImages {
    /// The local image ID a canonical reference resolves to.
    pub fn resolve(&self, reference: &str) -> Option<&str> {
        self.by_reference.get(reference).map(String::as_str)
    }

    /// The image a canonical reference resolves to.
    pub fn image_for(&self, reference: &str) -> Option<&ObservedImage> {
        self.resolve(reference).and_then(|id| self.by_id.get(id))
    }
}

/// One local image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedImage {
    /// Image ID.
    pub id: String,
    /// Canonical tags (`repo:tag`); empty for a dangling image.
    pub tags: Vec<String>,
    /// Canonical digest references (`repo@sha256:...`): what it was pulled as or pushed to.
    pub digests: Vec<String>,
    /// `dockwright.dev/owner` label.
    pub owner: Option<String>,
    /// `dockwright.dev/resource` label.
    pub resource: Option<ResourceKey>,
    /// `dockwright.dev/build-hash` label.
    pub build_hash: Option<String>,
    /// `dockwright.dev/source` label.
    pub source: Option<String>,
}

impl ObservedImage {
    /// True when the image carries `repository@digest` (same kind: the descriptor digest
    /// recorded at pull or push time).
    pub fn has_digest(&self, repository: &str, digest: &str) -> bool {
        self.digests.iter().any(|d| {
            d.split_once('@')
                .is_some_and(|(repo, dg)| repo == repository && dg == digest)
        })
    }

    /// The digest (`sha256:...`) the image carries in `repository`, if any: what it was
    /// pulled as or pushed as there.
    pub fn digest_in(&self, repository: &str) -> Option<&str> {
        self.digests.iter().find_map(|d| {
            d.split_once('@')
                .filter(|(repo, _)| *repo == repository)
                .map(|(_, digest)| digest)
        })
    }

    /// True when the image has any digest in `repository` (it was pulled from or pushed to it).
    pub fn has_any_digest_in(&self, repository: &str) -> bool {
        self.digests.iter().any(|d| {
            d.split_once('@')
                .is_some_and(|(repo, _)| repo == repository)
        })
    }
}

/// One image dockwright pulled, for whom (kept in the owner's state file: pulled images
/// cannot carry labels).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The resource the pull served.
    pub resource: ResourceKey,
    /// Canonical reference pulled.
    pub reference: String,
    /// Image ID it resolved to after the pull.
    pub id: String,
    /// The source whose plan pulled it (`None`: recorded before sources existed; then only
    /// `dockwright prune` removes it, never a source's `--prune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}
