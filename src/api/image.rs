//! The `Image` kind: an image the daemon should have.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AggregateStatus, PullPolicy};

/// Desired image, referenced by `Container.spec.image` through its name.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dockwright.dev",
    version = "v1alpha1",
    kind = "Image",
    plural = "images",
    shortname = "dwi",
    namespaced,
    status = "AggregateStatus",
    printcolumn = r#"{"name":"Ref","type":"string","jsonPath":".spec.ref"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Nodes where it is present / nodes it is placed on","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSpec {
    /// Image reference to pull (`registry/repo:tag` or `repo@sha256:...`).
    #[serde(rename = "ref")]
    pub reference: String,
    /// When to pull (kubelet semantics). Default: `IfNotPresent`. Ignored with `build`.
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Build the image from a Dockerfile instead of pulling it; `ref` names the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<ImageBuild>,
    /// More references to tag the image with (`registry/repo:tag`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Push `ref` and every tag to their registries after a build.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push: bool,
    /// Registry credentials for this image, beyond the Docker config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuthSpec>,
    /// Check the registry for a new digest of the tag this often (e.g. `5m`) and pull it
    /// when it changed. In `apply`, set means "check on every apply".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_interval: Option<String>,
    /// Hold back a new digest until it has been seen for this long (e.g. `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age: Option<String>,
}

/// How to build an image (`docker build`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageBuild {
    /// Context directory, relative to the manifest file. `.dockerignore` in it applies.
    pub context: String,
    /// Dockerfile: a path relative to the context, or an absolute path. Default `Dockerfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build args (`ARG`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// Target stage of a multi-stage Dockerfile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Labels for the built image.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Where an image's registry credentials are.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistryAuthSpec {
    /// A file in Docker config format (`{"auths": {"host": {"auth": "..."}}}`), relative to
    /// the manifest file.
    pub secret_file: String,
}
