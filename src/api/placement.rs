//! The `Placement` kind: one per (resource, node) the resource is placed on. Written by the
//! placement controller (`dockwright controller`), read and reported on by the node's agent.
//!
//! This is the DaemonSet → Pod split: a `Container` or `Image` (the parent) says what to run
//! and where; the controller keeps one small child per matching node, labelled with the node,
//! so each agent watches only its own node's children and writes status only on them. The
//! parent's status is an aggregate over its children ([`AggregateStatus`]), written by the
//! controller alone, so its size does not grow with the number of nodes.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, ContainerSpec, ImageSpec, ReplicaStatus};

/// Label on every `Placement`: the node it is for (see [`node_label_value`]).
pub const NODE_LABEL: &str = "dockwright.dev/node";
/// Label on every `Placement`: the parent's kind (`Container`, `Image`).
pub const PARENT_KIND_LABEL: &str = "dockwright.dev/parent-kind";
/// Label on every `Placement`: the parent's name.
pub const PARENT_NAME_LABEL: &str = "dockwright.dev/parent";
/// Annotation on every `Placement`: [`spec_hash`] of its spec as the controller wrote it, so
/// the controller can tell an up-to-date child without keeping its spec in memory.
pub const SPEC_HASH_ANNOTATION: &str = "dockwright.dev/spec-hash";

/// What one node is to run of one parent resource.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dockwright.dev",
    version = "v1alpha1",
    kind = "Placement",
    plural = "placements",
    shortname = "dwp",
    namespaced,
    status = "PlacementStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.parent.kind"}"#,
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.parent.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// The node whose agent runs this.
    pub node_name: String,
    /// The resource this was made from.
    pub parent: ParentReference,
    /// The parent's spec, when the parent is a `Container`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// The parent's spec, when the parent is an `Image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
}

/// The parent of a `Placement`, as the controller last copied it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// `Container` or `Image`.
    pub kind: String,
    /// The parent's name (same namespace); Docker objects are named after it.
    pub name: String,
    /// The parent's `metadata.uid`.
    pub uid: String,
    /// The parent's `metadata.generation` the spec was copied from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// What the node's agent observed for its `Placement`. Written by that agent only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementStatus {
    /// The `Placement`'s own `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The parent generation the node runs (`spec.parent.generation` when observed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded` on this node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// `ready/desired` replicas (a `Container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<String>,
    /// One entry per replica (a `Container`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// Local image ID the reference resolves to on this node (an `Image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Registry digest the local image carries for the reference's repository (an `Image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// What the node still has to do, while progressing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<String>,
    /// Last error on this node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A parent's status: counts over its `Placement`s, DaemonSet-style. Written by the placement
/// controller only; per-node detail is on the children
/// (`kubectl get placements -l dockwright.dev/parent=<name>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AggregateStatus {
    /// The parent generation these counts were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Nodes the resource is placed on.
    #[serde(default)]
    pub desired_nodes: i64,
    /// Nodes that have a `Placement` for it.
    #[serde(default)]
    pub current_nodes: i64,
    /// Nodes whose `Placement` runs the current generation.
    #[serde(default)]
    pub updated_nodes: i64,
    /// Nodes where it is ready.
    #[serde(default)]
    pub ready_nodes: i64,
    /// Nodes where it is not ready (desired minus ready).
    #[serde(default)]
    pub unavailable_nodes: i64,
    /// `ready/desired` nodes, for the printer columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// `Ready`, `Progressing`, `Degraded` over all nodes, with the worst reason and a few
    /// example nodes in the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The value of [`NODE_LABEL`] for a node: its name when that is a valid label value (at
/// most 63 characters), else `h-` and the first 40 hex digits of its SHA-256 (node names may
/// be DNS subdomains of up to 253 characters; label values may not).
pub fn node_label_value(node: &str) -> String {
    let valid = node.len() <= 63
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && node.starts_with(|c: char| c.is_ascii_alphanumeric())
        && node.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        node.to_string()
    } else {
        format!("h-{}", &hex_sha256(node)[..40])
    }
}

/// The name of the `Placement` of `parent` (of `kind`) on `node`: `<kind>.<parent>.<node>`
/// in lower case, or, when that exceeds the 253 characters of a name, the parent and a hash
/// of the node.
pub fn placement_name(kind: &str, parent: &str, node: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    let name = format!("{kind}.{parent}.{node}");
    if name.len() <= 253 {
        name
    } else {
        let parent: String = parent.chars().take(180).collect();
        let parent = parent.trim_end_matches(['.', '-']);
        format!("{kind}.{parent}.{}", &hex_sha256(node)[..40])
    }
}

/// SHA-256 (hex) of the JSON form of `spec`.
pub fn spec_hash(spec: &PlacementSpec) -> String {
    hex_sha256(&serde_json::to_string(spec).unwrap_or_default())
}

fn hex_sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_label_values_are_names_or_hashes() {
        assert_eq!(node_label_value("dw-node-1"), "dw-node-1");
        let long = "n".repeat(64);
        let v = node_label_value(&long);
        assert!(v.starts_with("h-") && v.len() == 42, "{v}");
        assert_eq!(v, node_label_value(&long), "stable");
        assert_ne!(v, node_label_value(&"m".repeat(64)));
    }

    #[test]
    fn placement_names_fit() {
        assert_eq!(
            placement_name("Container", "web", "dw-node-1"),
            "container.web.dw-node-1"
        );
        let long = placement_name("Image", &"p".repeat(200), &"n".repeat(200));
        assert!(long.len() <= 253, "{}", long.len());
        assert!(long.starts_with("image.ppp"));
    }
}
