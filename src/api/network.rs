//! The `Network` kind: a user-defined Docker network the daemon should have.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Desired network. Its Docker name is `metadata.name` (prefixed `namespace.` outside the
/// `default` namespace); containers attach to it by that name. The daemon cannot edit a
/// network in place: a changed spec recreates it (our containers are moved over), but only
/// when no container of another owner uses it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dockwright.dev",
    version = "v1alpha1",
    kind = "Network",
    plural = "networks",
    shortname = "dwn",
    namespaced,
    status = "NetworkStatus",
    printcolumn = r#"{"name":"Driver","type":"string","jsonPath":".spec.driver"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// Network driver. Default `bridge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Driver options (`docker network create --opt`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Labels of the network. Keys under `dockwright.dev/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// No route to the outside world (`--internal`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// Standalone containers may attach to a swarm-scoped network (`--attachable`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    /// Enable IPv6 (needs an IPv6 subnet in `ipam`, or a daemon default pool).
    #[serde(
        default,
        rename = "enableIPv6",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub enable_ipv6: bool,
    /// Address management: subnets, gateways, ranges. Default: the daemon picks a subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<NetworkIpam>,
}

/// IP address management of a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkIpam {
    /// IPAM driver. Default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Address pools, one per subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
}

/// One address pool of a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamPool {
    /// Subnet in CIDR form, e.g. `172.28.0.0/16`.
    pub subnet: String,
    /// Gateway address inside the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Sub-range containers get addresses from, in CIDR form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// Observed state written back in Kubernetes mode (one entry per node).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// One entry per node that reconciled this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeObjectStatus>,
}

/// What one node's agent observed for a `Network` or `Volume`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeObjectStatus {
    /// Node name (the list-map key).
    pub node: String,
    /// The `metadata.generation` this entry was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the object exists as declared on this node), `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Last error on this node, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
