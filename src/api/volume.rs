//! The `Volume` kind: a named Docker volume the daemon should have.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NodeObjectStatus;

/// Desired volume. Its Docker name is `metadata.name` (prefixed `namespace.` outside the
/// `default` namespace); containers mount it by that name (`volumes[].source`). A volume
/// holds data: it is removed (by `--prune`, or to recreate it with a changed spec) only when
/// its `reclaimPolicy` is `Delete`, and never while a container uses it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dockwright.dev",
    version = "v1alpha1",
    kind = "Volume",
    plural = "volumes",
    shortname = "dwv",
    namespaced,
    status = "VolumeStatus",
    printcolumn = r#"{"name":"Driver","type":"string","jsonPath":".spec.driver"}"#,
    printcolumn = r#"{"name":"Reclaim","type":"string","jsonPath":".spec.reclaimPolicy"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Volume driver. Default `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Driver options (`docker volume create --opt`), e.g. `type`, `device`, `o` for `local`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_options: BTreeMap<String, String>,
    /// Labels of the volume. Keys under `dockwright.dev/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What happens to the data when the resource leaves the manifests (`--prune`) or its
    /// spec changes: `Retain` (default) keeps the volume, `Delete` removes it.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

/// Whether dockwright may delete a volume's data (as a PersistentVolume's policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    /// Never removed by dockwright.
    #[default]
    Retain,
    /// Removed with `--prune` once unused, or to recreate it with a changed spec.
    Delete,
}

impl ReclaimPolicy {
    /// The spelling in manifests and in the volume's label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimPolicy::Retain => "Retain",
            ReclaimPolicy::Delete => "Delete",
        }
    }
}

/// Observed state written back in Kubernetes mode (one entry per node).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// One entry per node that reconciled this volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeObjectStatus>,
}
