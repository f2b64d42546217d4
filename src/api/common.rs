//! Sub-types shared by both kinds: conditions, pull policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When to pull an image, with kubelet semantics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Re-resolve the reference on every reconcile (pull; unchanged layers are not fetched again).
    Always,
    /// Pull only when no local image answers to the reference.
    #[default]
    IfNotPresent,
    /// Never pull; a missing image is an error for the resource.
    Never,
}

/// A Kubernetes-style condition (`Ready`, `Progressing`, `Degraded`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason in PascalCase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 time of the last status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A reference to an object by name in the same namespace (Kubernetes'
/// `LocalObjectReference`), e.g. an entry of `imagePullSecrets`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectReference {
    /// Name of the object.
    pub name: String,
}
