//! The `Container` kind: one or more replicas of a container the daemon should run.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AggregateStatus, LocalObjectReference, PullPolicy};

/// Desired state of a group of identical containers.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "dockwright.dev",
    version = "v1alpha1",
    kind = "Container",
    plural = "containers",
    shortname = "dwc",
    namespaced,
    status = "AggregateStatus",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Nodes where it is ready / nodes it is placed on","jsonPath":".status.ready"}"#,
    printcolumn = r#"{"name":"Up-to-date","type":"integer","priority":1,"jsonPath":".status.updatedNodes"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// The name of an `Image` resource in the same namespace, or any image reference.
    pub image: String,
    /// Pull policy for a plain image reference (an `Image` resource carries its own).
    /// Defaults as kubelet does: `Always` for `:latest` or an untagged reference, else `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = super::crd::field_description)]
    pub image_pull_policy: Option<PullPolicy>,
    /// Number of identical containers. One replica is named after the resource, more are `name-<i>` (0-based).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Whether the containers should be running.
    #[serde(default)]
    pub state: DesiredRunState,
    /// Overrides the image's ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Arguments appended to `command` (or, without `command`, used as the CMD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment variables, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Working directory inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User (and optionally group) the process runs as, `uid[:gid]` or a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Hostname inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Extra container labels. Keys under `dockwright.dev/` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Published ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Mounts: named volumes (created if missing), bind mounts, tmpfs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Network to attach to: `bridge` (default), `host`, `none`, a `Network` resource of the same
    /// namespace, or a named network created if missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Extra DNS names for the container on a named network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_aliases: Vec<String>,
    /// Several user-defined networks, each with its own aliases and fixed address; the
    /// first is the one the container is created on, the others are connected before it
    /// starts. Instead of `network` and `networkAliases`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Restart policy, kubelet names: `Always`, `OnFailure`, `Never` (run to completion once per spec).
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// For `OnFailure`: how many times the daemon retries (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Health check run by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthCheck>,
    /// CPU and memory limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Run the container privileged: every capability, every host device, no seccomp or
    /// AppArmor confinement (root on the host). Refused unless the agent's policy has
    /// `allowPrivileged: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Share the host's PID namespace. Refused unless the policy has `allowHostPID: true`.
    /// (The host's network is `network: host`, refused unless `allowHostNetwork: true`.)
    #[serde(
        default,
        rename = "hostPID",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub host_pid: bool,
    /// Share the host's IPC namespace. Refused unless the policy has `allowHostIPC: true`.
    #[serde(
        default,
        rename = "hostIPC",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub host_ipc: bool,
    /// Linux capabilities added to or dropped from Docker's default set. Dropping is always
    /// allowed; each added capability must be in the policy's `allowedCapabilities`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Host devices made available inside the container. Each host path must be in the
    /// policy's `allowedDevices`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// Files copied into the container before it starts (like `docker cp`). Their content is part
    /// of the spec hash: editing one recreates the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Containers that must reach a condition before these start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// Seconds the daemon waits after SIGTERM before SIGKILL when stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_seconds: Option<u32>,
    /// How replicas are replaced when their configuration changes. Not part of the spec
    /// hash: editing it replaces nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<RolloutStrategy>,
    /// Run only on nodes whose labels match all of these (Kubernetes mode).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Run only on this node (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Secrets of type `kubernetes.io/dockerconfigjson` in the resource's namespace whose
    /// registry credentials pull its image (Kubernetes mode; kubelet semantics: tried before
    /// the node's Docker config). Ignored in file mode, which has `Image.spec.registryAuth`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
}

fn default_replicas() -> u32 {
    1
}

/// Whether containers should run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DesiredRunState {
    /// Created and started (a `Never` one-shot runs once and then stays exited).
    #[default]
    Running,
    /// Created but not running.
    Stopped,
}

/// Restart policy with kubelet names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Restarted by the daemon whenever it exits (Docker `unless-stopped`, so a deliberate stop sticks).
    #[default]
    Always,
    /// Restarted by the daemon on a non-zero exit (Docker `on-failure`).
    OnFailure,
    /// Never restarted: a one-shot that runs to completion once per spec.
    Never,
}

/// One environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Value (empty when omitted). Exactly one of `value` and `valueFrom`.
    // Omitted when empty, which also keeps `default: ""` out of the CRD schema:
    // kube-apiserver 1.20 refuses that default (`...value.default: Invalid value: "null"`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// A secret value read from a file or a Kubernetes Secret instead of `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Linux capabilities to add and drop, by name (`NET_ADMIN` or `CAP_NET_ADMIN`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    /// Capabilities to add (`ALL` adds every one). Refused unless the policy allows each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Capabilities to drop (`ALL` drops every one). Always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// A host device made available in the container (Docker `--device`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceMapping {
    /// Absolute path of the device on the host, e.g. `/dev/fuse`.
    pub host_path: String,
    /// Path inside the container (default: the host path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// cgroup permissions, a combination of `r`, `w` and `m` (default `rwm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

/// Where an environment variable's value comes from when it is not written inline. Such
/// values are secrets: never logged, never in a label, status or output (only a keyed digest
/// is, so a changed secret still recreates the container).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVarSource {
    /// A file whose content is the value, one trailing newline removed (relative to the
    /// manifest file; file mode). UTF-8, at most 1 MiB, no NUL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// A key of a Secret in the resource's namespace (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// One key of a Kubernetes Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret (same namespace as the resource).
    pub name: String,
    /// Key within the Secret's data.
    pub key: String,
}

/// Transport protocol of a published port.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// Docker's lowercase spelling.
    pub fn as_docker(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A container port, optionally published on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the host; omitted means exposed only (or a random host port with `publishAll`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Host address to bind, e.g. `127.0.0.1`. Default: all addresses.
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `TCP` (default) or `UDP`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// One network a container is attached to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkAttachment {
    /// A `Network` resource of the same namespace, or the name of a Docker network (a
    /// user-defined one, created if missing).
    pub name: String,
    /// Extra DNS names of the container on this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Fixed IPv4 address on this network (the network needs a declared subnet).
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
}

/// Kind of mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum VolumeType {
    /// A named Docker volume: a `Volume` resource of the same namespace, or any name (created if
    /// missing, never removed by dockwright).
    #[default]
    Volume,
    /// A host path; relative paths resolve against the manifest file. Must exist.
    Bind,
    /// An in-memory filesystem.
    Tmpfs,
}

/// A mount inside the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeMount {
    /// `Volume` (default), `Bind` or `Tmpfs`.
    #[serde(default, rename = "type")]
    pub type_: VolumeType,
    /// Volume name or host path; not used for `Tmpfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Absolute path inside the container.
    pub target: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Size limit for `Tmpfs`, a quantity such as `64Mi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// A health check run by the daemon.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Command run directly (Docker `CMD`). Exactly one of `command` and `shell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Command run by `/bin/sh -c` (Docker `CMD-SHELL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Seconds between checks (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    /// Seconds before one check counts as failed (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Consecutive failures before `unhealthy` (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Seconds after start during which failures do not count (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_seconds: Option<u32>,
}

/// Resource limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Upper limits enforced by the daemon.
    #[serde(default)]
    pub limits: ResourceLimits,
}

/// CPU and memory limits as Kubernetes quantities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceLimits {
    /// CPUs, e.g. `500m` or `1.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi` or `1G`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A file placed in the container before it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path of the file inside the container.
    pub path: String,
    /// Inline content. Exactly one of `content` and `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A file on the host, relative to the manifest file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Octal permission bits as a string, e.g. `"0644"` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// How replicas are replaced when their configuration changes: in waves of `maxUnavailable`,
/// each new replica waiting until healthy (with a health check) before the previous
/// container, kept meanwhile under `<name>_prev`, is removed. A new replica that does not
/// become healthy in time is removed and the previous container takes its name back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStrategy {
    /// `StartFirst` (the default without a `hostPort`): the new container starts while the old
    /// one still runs. `StopFirst` (the default, and the only choice, with a `hostPort`, which
    /// two containers cannot bind at once): the old one stops first.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(transform = super::crd::field_description)]
    pub type_: Option<RolloutStrategyType>,
    /// How many replicas are replaced at the same time (default 1); with `StopFirst` also how
    /// many may be down at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_unavailable: Option<u32>,
    /// With a health check: seconds a new replica may take to become healthy before it is
    /// rolled back (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub health_timeout_seconds: Option<u32>,
}

/// Order of stopping the old and starting the new container of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RolloutStrategyType {
    /// Stop the old container, then start the new one (a short outage per replica).
    StopFirst,
    /// Start the new container while the old one still runs (no outage; needs no host port).
    StartFirst,
}

/// Condition a dependency must reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DependencyCondition {
    /// Started (running).
    #[default]
    Started,
    /// Running and reported healthy by its health check.
    Healthy,
    /// Exited with code 0 (for one-shot containers).
    Completed,
}

/// A `Container` in the same namespace that must be ready first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dependency {
    /// Name of the `Container` resource.
    pub name: String,
    /// What it must reach (default `Started`).
    #[serde(default)]
    pub condition: DependencyCondition,
}

/// Observed state written back in Kubernetes mode.
///
/// One replica as observed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Docker container name.
    pub name: String,
    /// Docker container ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Image ID the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Revision the container runs: the first 12 hex digits of its spec hash (during a
    /// rollout the old and the new revision show side by side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Docker state (`running`, `exited`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Health (`healthy`, `unhealthy`, `starting`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Exit code of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Restart count reported by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i64>,
}
