//! The planner's output: ordered actions, each with the resource it serves and why.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::rollout::short_revision;
use crate::api::DependencyCondition;
use crate::desired::{
    ContainerConfig, DesiredBuild, NetworkConfig, RegistryAuth, ResourceKey, VolumeConfig,
};

/// Index of an action inside its [`Plan`].
pub type ActionId = usize;

/// Everything the executor needs to create one replica; the labels are already computed.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateSpec {
    /// Container name.
    pub name: String,
    /// Replica index.
    pub replica: u32,
    /// The normalised configuration.
    pub config: Arc<ContainerConfig>,
    /// Image ID to create from; `None` while the image is still to be pulled in this plan, in
    /// which case the action is *deferred*: shown by `diff`, run after the next observation.
    pub image_id: Option<String>,
    /// All labels to set: the user's plus the ownership labels (owner, resource, replica,
    /// spec, spec-hash). Empty while deferred.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Whether the container is to be started after creation (`state: Running`).
    pub start: bool,
}

/// Everything the executor needs to build one image; the labels are already computed.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildSpec {
    /// Canonical reference to tag the result with.
    pub reference: String,
    /// Context, Dockerfile, args, target and the inputs hash.
    pub build: Arc<DesiredBuild>,
    /// All image labels: the user's plus owner, resource and build hash.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The image's own credentials source, if any (for `FROM` pulls).
    pub auth: Option<RegistryAuth>,
}

/// Everything the executor needs to create a declared network; the labels are computed.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkCreate {
    /// Docker name.
    pub name: String,
    /// The normalised configuration.
    pub config: NetworkConfig,
    /// All labels: the user's plus owner, resource, spec and spec hash.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Everything the executor needs to create a declared volume; the labels are computed.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeCreate {
    /// Docker name.
    pub name: String,
    /// The normalised configuration.
    pub config: VolumeConfig,
    /// All labels: the user's plus owner, resource, spec, spec hash and reclaim policy.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Pull an image reference.
    PullImage {
        /// Canonical reference.
        reference: String,
        /// The image's own credentials source, if any (else the Docker config).
        auth: Option<RegistryAuth>,
    },
    /// Build an image and tag it with its reference.
    BuildImage(Box<BuildSpec>),
    /// Tag the image a reference resolves to with another reference.
    TagImage {
        /// Canonical reference of the image to tag.
        source: String,
        /// Canonical reference to add.
        target: String,
    },
    /// Push a reference to its registry.
    PushImage {
        /// Canonical reference.
        reference: String,
        /// The image's own credentials source, if any.
        auth: Option<RegistryAuth>,
    },
    /// Remove an image dockwright owns: untag `references` (each only while it still names
    /// `id`), then the image itself if nothing else names it.
    RemoveImage {
        /// Image ID.
        id: String,
        /// Canonical references dockwright gave it.
        references: Vec<String>,
    },
    /// Create a named network if missing (labelled as ours when created).
    EnsureNetwork {
        /// Network name.
        name: String,
    },
    /// Create a named volume if missing (labelled as ours when created; never removed).
    EnsureVolume {
        /// Volume name.
        name: String,
    },
    /// Create a declared network (an unowned one of the same name is an error).
    CreateNetwork(Box<NetworkCreate>),
    /// Replace a network of ours whose spec changed: disconnect `containers` (ours; the
    /// planner made sure no other owner's container uses it), remove it, create it anew and
    /// connect them again with the aliases and addresses they had.
    RecreateNetwork {
        /// ID of the network to replace.
        id: String,
        /// The new network.
        spec: Box<NetworkCreate>,
        /// IDs of our containers attached to it.
        containers: Vec<String>,
    },
    /// Remove a network of ours that no container uses.
    RemoveNetwork {
        /// Network ID.
        id: String,
        /// Network name, for output.
        name: String,
    },
    /// Create a declared volume (an unowned one of the same name is an error).
    CreateVolume(Box<VolumeCreate>),
    /// Remove a volume of ours, with its data (`reclaimPolicy: Delete`, unused).
    RemoveVolume {
        /// Volume name.
        name: String,
    },
    /// Create a container and copy its files in.
    CreateContainer(Box<CreateSpec>),
    /// Start a container by name.
    StartContainer {
        /// Container name.
        name: String,
    },
    /// Stop a running container.
    StopContainer {
        /// Container ID.
        id: String,
        /// Container name, for output.
        name: String,
        /// Seconds before SIGKILL.
        timeout_seconds: Option<u32>,
    },
    /// Remove a container (forcefully: it is ours and replaced or unwanted).
    RemoveContainer {
        /// Container ID.
        id: String,
        /// Container name, for output.
        name: String,
    },
    /// Rename a container (replica count changed between one and many).
    RenameContainer {
        /// Container ID.
        id: String,
        /// Current name.
        from: String,
        /// New name.
        to: String,
    },
    /// Record that a container belongs to this source without recreating it (Docker cannot
    /// relabel one): it had no source label, or another source's and `--take-over` was given.
    /// Written to the owner's adoption records ([`crate::adoptions`]), not to the daemon.
    AdoptContainer {
        /// Container ID.
        id: String,
        /// Container name, for output.
        name: String,
        /// The source it now belongs to.
        source: String,
    },
    /// Wait until a container reaches a condition (for `dependsOn` and rolling updates).
    AwaitCondition {
        /// Container name.
        name: String,
        /// Condition to reach.
        condition: DependencyCondition,
        /// Give up after this many seconds (`None`: the runner's default); a rollout sets
        /// the resource's `healthTimeoutSeconds`.
        timeout_seconds: Option<u32>,
    },
}

impl Action {
    /// Short stable label for metrics and output (`pull`, `create`, ...).
    pub fn verb(&self) -> &'static str {
        match self {
            Action::PullImage { .. } => "pull",
            Action::BuildImage(_) => "build",
            Action::TagImage { .. } => "tag",
            Action::PushImage { .. } => "push",
            Action::RemoveImage { .. } => "remove-image",
            Action::EnsureNetwork { .. } => "ensure-network",
            Action::EnsureVolume { .. } => "ensure-volume",
            Action::CreateNetwork(_) => "create-network",
            Action::RecreateNetwork { .. } => "recreate-network",
            Action::RemoveNetwork { .. } => "remove-network",
            Action::CreateVolume(_) => "create-volume",
            Action::RemoveVolume { .. } => "remove-volume",
            Action::CreateContainer(_) => "create",
            Action::StartContainer { .. } => "start",
            Action::StopContainer { .. } => "stop",
            Action::RemoveContainer { .. } => "remove",
            Action::RenameContainer { .. } => "rename",
            Action::AwaitCondition { .. } => "await",
            Action::AdoptContainer { .. } => "adopt",
        }
    }

    /// The object the action works on (image reference, network, volume or container name).
    pub fn target(&self) -> &str {
        match self {
            Action::PullImage { reference, .. } | Action::PushImage { reference, .. } => reference,
            Action::BuildImage(spec) => &spec.reference,
            Action::TagImage { target, .. } => target,
            Action::RemoveImage { id, references } => references.first().unwrap_or(id),
            Action::EnsureNetwork { name }
            | Action::EnsureVolume { name }
            | Action::RemoveNetwork { name, .. }
            | Action::RemoveVolume { name } => name,
            Action::CreateNetwork(spec) | Action::RecreateNetwork { spec, .. } => &spec.name,
            Action::CreateVolume(spec) => &spec.name,
            Action::CreateContainer(spec) => &spec.name,
            Action::StartContainer { name }
            | Action::StopContainer { name, .. }
            | Action::RemoveContainer { name, .. }
            | Action::AwaitCondition { name, .. }
            | Action::AdoptContainer { name, .. } => name,
            Action::RenameContainer { from, .. } => from,
        }
    }

    /// True for a create whose image is still to be pulled.
    pub fn is_deferred(&self) -> bool {
        matches!(self, Action::CreateContainer(spec) if spec.image_id.is_none())
    }

    /// True when the action changes daemon state (everything except waiting).
    pub fn is_write(&self) -> bool {
        !matches!(self, Action::AwaitCondition { .. })
    }
}

/// One field that differs between the running and the desired configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Dotted path, e.g. `env[1]` or `ports`.
    pub field: String,
    /// Old value as JSON text (`-` when absent).
    pub old: String,
    /// New value as JSON text (`-` when absent).
    pub new: String,
}

/// Why an action is in the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "camelCase")]
pub enum Reason {
    /// The image is not present locally.
    ImageMissing,
    /// `pullPolicy: Always`.
    PullAlways,
    /// The registry has a new digest for the tag (`updateInterval`).
    NewDigest {
        /// The registry's digest.
        digest: String,
    },
    /// The image to build is missing or was built from other inputs.
    BuildChanged {
        /// Build hash of the present image (`-` when missing or not built by dockwright).
        old: String,
        /// Build hash of the declared inputs.
        new: String,
    },
    /// An extra tag is missing or names another image.
    TagMissing,
    /// The image is not in the tag's registry yet (built now, or never pushed there).
    NotPushed,
    /// An image dockwright built is dangling (`dockwright prune`).
    Dangling,
    /// The network or volume must exist before a container uses it.
    Prerequisite,
    /// The replica does not exist.
    Missing,
    /// The effective configuration changed: these fields.
    SpecChanged {
        /// Changed fields, old → new.
        changes: Vec<FieldChange>,
    },
    /// The container should run but is not running.
    NotRunning,
    /// The container should be stopped but runs.
    ShouldBeStopped,
    /// The replica index is beyond `replicas`.
    ScaledDown,
    /// The resource left the manifests (`--prune`).
    Pruned,
    /// The resource left this source, which declared the container (`--prune`, the agent):
    /// only containers of the same owner and source are pruned.
    PrunedFromSource {
        /// The source.
        source: String,
    },
    /// No source declares the container: made before source labels existed and never
    /// adopted (`dockwright prune --orphans`).
    Orphan,
    /// The container has no source label (made before sources existed) and this source
    /// declares it: recorded as this source's, without a recreate.
    Adopted,
    /// The container belongs to another source and `--take-over` moves it here, without a
    /// recreate.
    TakenOver {
        /// The source it belonged to.
        from: String,
    },
    /// The resource is being deleted.
    Deleted,
    /// Two containers claim the same replica.
    Duplicate,
    /// The container is dead or otherwise unusable.
    Broken,
    /// Replica count crossed between one and many, so the deterministic name changed.
    NameChanged,
    /// The previous container, kept through a rollout, removed once its successor is up
    /// (and healthy, with a health check).
    Replaced,
    /// A dependency must reach a condition first.
    Dependency,
    /// Rolling update to a new revision (spec hash): the step that keeps the previous
    /// container (renamed, or stopped first) or waits for the new one to become healthy.
    Rollout {
        /// Spec hash of the revision being rolled out.
        revision: String,
    },
    /// A new revision never became healthy: it is removed and the kept previous container
    /// takes its name back. Also the signal that turns into back-off for the revision.
    RolledBack {
        /// Spec hash of the revision that failed.
        revision: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::ImageMissing => write!(f, "image not present"),
            Reason::PullAlways => write!(f, "pullPolicy Always"),
            Reason::NewDigest { digest } => write!(f, "registry has a new digest {digest}"),
            Reason::BuildChanged { old, new } => {
                write!(f, "build inputs changed: {} → {}", short(old), short(new))
            }
            Reason::TagMissing => write!(f, "tag missing"),
            Reason::NotPushed => write!(f, "not in the registry yet"),
            Reason::Dangling => write!(f, "dangling image"),
            Reason::Prerequisite => write!(f, "needed by a container"),
            Reason::Missing => write!(f, "missing"),
            Reason::SpecChanged { changes } => {
                write!(f, "spec changed: ")?;
                for (i, c) in changes.iter().enumerate() {
                    if i > 0 {
                        write!(f, "; ")?;
                    }
                    write!(f, "{}: {} → {}", c.field, c.old, c.new)?;
                }
                Ok(())
            }
            Reason::NotRunning => write!(f, "not running"),
            Reason::ShouldBeStopped => write!(f, "state Stopped"),
            Reason::ScaledDown => write!(f, "replicas reduced"),
            Reason::Pruned => write!(f, "no longer declared (--prune)"),
            Reason::PrunedFromSource { source } => write!(
                f,
                "no longer declared by source {source:?}, which created it (prune: same owner and source)"
            ),
            Reason::Orphan => write!(
                f,
                "declared by no source: made before source labels and never adopted (prune --orphans)"
            ),
            Reason::Adopted => write!(
                f,
                "no source label (made before sources): adopted by the source that declares it"
            ),
            Reason::TakenOver { from } => {
                write!(f, "taken over from source {from:?} (--take-over)")
            }
            Reason::Deleted => write!(f, "deleted"),
            Reason::Duplicate => write!(f, "duplicate replica"),
            Reason::Broken => write!(f, "container is dead"),
            Reason::NameChanged => write!(f, "replica name changed"),
            Reason::Replaced => write!(f, "replaced by a new container"),
            Reason::Dependency => write!(f, "dependency"),
            Reason::Rollout { revision } => {
                write!(f, "rolling update to revision {}", short_revision(revision))
            }
            Reason::RolledBack { revision } => write!(
                f,
                "revision {} never became healthy; rolled back",
                short_revision(revision)
            ),
        }
    }
}

/// `sha256:` and twelve hex digits of a hash, for reasons.
fn short(hash: &str) -> &str {
    hash.get(..19).unwrap_or(hash)
}

/// An action with its place in the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedAction {
    /// Position in [`Plan::actions`].
    pub id: ActionId,
    /// The resource the action serves (an image pull shared by several serves the first).
    pub resource: ResourceKey,
    /// What to do.
    pub action: Action,
    /// Why.
    pub reason: Reason,
    /// Actions that must succeed first (always smaller ids: the plan is topologically ordered).
    pub after: Vec<ActionId>,
}

/// A resource the planner cannot act on, with the reason (e.g. image missing and `Never`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// The resource.
    pub resource: ResourceKey,
    /// Why nothing can be done.
    pub message: String,
}

/// Ordered actions plus the resources that cannot converge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Actions in a valid execution order.
    pub actions: Vec<PlannedAction>,
    /// Resources that cannot be converged from this observation.
    pub blocked: Vec<Blocked>,
}

impl Plan {
    /// True when there is nothing to do and nothing blocked.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.blocked.is_empty()
    }

    /// Appends an action and returns its id.
    pub fn push(
        &mut self,
        resource: ResourceKey,
        action: Action,
        reason: Reason,
        after: Vec<ActionId>,
    ) -> ActionId {
        let id = self.actions.len();
        debug_assert!(
            after.iter().all(|a| *a < id),
            "plan must be topologically ordered"
        );
        self.actions.push(PlannedAction {
            id,
            resource,
            action,
            reason,
            after,
        });
        id
    }
}
