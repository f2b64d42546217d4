//! The normalised desired state both sources produce and the planner consumes.
//!
//! Everything here is already validated and resolved: relative paths are absolute, image
//! references are canonical, file contents are loaded and hashed. The planner never needs to
//! touch the filesystem or the API server.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::{
    DependencyCondition, DesiredRunState, PullPolicy, ReclaimPolicy, RestartPolicy,
    RolloutStrategyType,
};

/// Which kind of resource a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// `Image`.
    Image,
    /// `Container`.
    Container,
    /// `Network`.
    Network,
    /// `Volume`.
    Volume,
}

impl Kind {
    /// The kind as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "Image",
            Kind::Container => "Container",
            Kind::Network => "Network",
            Kind::Volume => "Volume",
        }
    }
}

/// Identity of a resource: `Kind/namespace/name`, also the value of the resource label.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace (`default` in file mode unless the manifest says otherwise).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ResourceKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses the label form `Kind/namespace/name`.
    pub fn parse(label: &str) -> Option<Self> {
        let mut parts = label.splitn(3, '/');
        let kind = match parts.next()? {
            "Image" => Kind::Image,
            "Container" => Kind::Container,
            "Network" => Kind::Network,
            "Volume" => Kind::Volume,
            _ => return None,
        };
        let namespace = parts.next()?;
        let name = parts.next()?;
        if namespace.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self::new(kind, namespace, name))
    }

    /// The Docker container name of replica `index` when the resource has `replicas` replicas:
    /// `name` for one replica, `name-<index>` for more; a namespace other than `default`
    /// becomes a `namespace.` prefix so namespaces cannot collide.
    pub fn container_name(&self, replicas: u32, index: u32) -> String {
        let base = if self.namespace == DEFAULT_NAMESPACE {
            self.name.clone()
        } else {
            format!("{}.{}", self.namespace, self.name)
        };
        if replicas == 1 {
            base
        } else {
            format!("{base}-{index}")
        }
    }
}

impl ResourceKey {
    /// The Docker name of a `Network` or `Volume`: `name` in the `default` namespace,
    /// `namespace.name` otherwise.
    pub fn object_name(&self) -> String {
        self.container_name(1, 0)
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Namespace of resources whose manifest names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Where a resource was declared, for error messages and status.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Origin {
    /// A document in a manifest file (1-based document index).
    File {
        /// The manifest file.
        path: PathBuf,
        /// 1-based position of the document in the file.
        document: usize,
    },
    /// A Kubernetes object.
    Kubernetes {
        /// `metadata.uid`.
        uid: String,
        /// `metadata.generation`.
        generation: Option<i64>,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, document } => {
                write!(f, "{} (document {document})", path.display())
            }
            Origin::Kubernetes { uid, .. } => write!(f, "kubernetes object {uid}"),
        }
    }
}

/// The whole desired state of one source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredState {
    /// `Image` resources by key.
    pub images: BTreeMap<ResourceKey, DesiredImage>,
    /// `Container` resources by key.
    pub containers: BTreeMap<ResourceKey, DesiredContainer>,
    /// `Network` resources by key.
    pub networks: BTreeMap<ResourceKey, DesiredNetwork>,
    /// `Volume` resources by key.
    pub volumes: BTreeMap<ResourceKey, DesiredVolume>,
}

impl DesiredState {
    /// True when `key` is declared here.
    pub fn declares(&self, key: &ResourceKey) -> bool {
        match key.kind {
            Kind::Image => self.images.contains_key(key),
            Kind::Container => self.containers.contains_key(key),
            Kind::Network => self.networks.contains_key(key),
            Kind::Volume => self.volumes.contains_key(key),
        }
    }

    /// The declared network whose Docker name is `name`, if any.
    pub fn network_named(&self, name: &str) -> Option<&DesiredNetwork> {
        self.networks.values().find(|n| n.name == name)
    }

    /// The declared volume whose Docker name is `name`, if any.
    pub fn volume_named(&self, name: &str) -> Option<&DesiredVolume> {
        self.volumes.values().find(|v| v.name == name)
    }
}

/// A desired network (`Network` resource).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredNetwork {
    /// Identity.
    pub key: ResourceKey,
    /// Where it was declared.
    pub origin: Origin,
    /// Docker name (see [`ResourceKey::object_name`]).
    pub name: String,
    /// The create configuration: the only input of its spec hash.
    pub config: NetworkConfig,
}

/// The normalised create configuration of a network; hashed like a container's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    /// Driver (`bridge` when not declared).
    pub driver: String,
    /// Driver options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// User labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `--internal`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
    /// `--attachable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attachable: bool,
    /// IPv6 enabled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_ipv6: bool,
    /// IPAM driver, when not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam_driver: Option<String>,
    /// Address pools in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipam: Vec<IpamPoolConfig>,
}

/// One normalised address pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamPoolConfig {
    /// Subnet (CIDR).
    pub subnet: String,
    /// Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Range (CIDR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// A desired volume (`Volume` resource).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredVolume {
    /// Identity.
    pub key: ResourceKey,
    /// Where it was declared.
    pub origin: Origin,
    /// Docker name (see [`ResourceKey::object_name`]).
    pub name: String,
    /// The create configuration: the only input of its spec hash.
    pub config: VolumeConfig,
    /// Whether dockwright may remove it (recorded on the volume as a label at creation).
    pub reclaim_policy: ReclaimPolicy,
}

/// The normalised create configuration of a volume; hashed like a container's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeConfig {
    /// Driver (`local` when not declared).
    pub driver: String,
    /// Driver options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_options: BTreeMap<String, String>,
    /// User labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A desired image.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredImage {
    /// Identity.
    pub key: ResourceKey,
    /// Where it was declared.
    pub origin: Origin,
    /// Canonical reference (see [`crate::reference`]).
    pub reference: String,
    /// Pull policy (ignored when the image is built).
    pub pull_policy: PullPolicy,
    /// Build instead of pull, when set.
    pub build: Option<Arc<DesiredBuild>>,
    /// Extra canonical references to tag the image with.
    pub tags: Vec<String>,
    /// Push the reference and every tag after a build (or whenever the local image has no
    /// digest in a tag's repository, i.e. was never pushed there).
    pub push: bool,
    /// Credentials for this image beyond the Docker config.
    pub registry_auth: Option<RegistryAuth>,
    /// Follow the tag's digest in its registry (`updateInterval`, `minAge`).
    pub update: Option<UpdatePolicy>,
}

/// How to build an image, resolved and hashed by the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredBuild {
    /// Absolute context directory.
    pub context: PathBuf,
    /// Where the Dockerfile is.
    pub dockerfile: Dockerfile,
    /// Build args.
    pub args: BTreeMap<String, String>,
    /// Target stage.
    pub target: Option<String>,
    /// User labels for the image (the ownership and build-hash labels are added at build).
    pub labels: BTreeMap<String, String>,
    /// `sha256:<hex>` of the build inputs (see [`crate::build_context::inputs_hash`]).
    pub hash: String,
}

/// The Dockerfile of a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dockerfile {
    /// Inside the context, at this `/`-separated relative path.
    InContext(String),
    /// Outside the context, at this absolute path (sent inside the context tar).
    External(PathBuf),
}

/// Where an image's registry credentials come from, besides the Docker config. Kubernetes
/// mode adds `imagePullSecrets` here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegistryAuth {
    /// A file in Docker config format (`registryAuth.secretFile`), read when needed.
    SecretFile(PathBuf),
}

/// Following a moving tag: check the registry's digest for the tag every `interval`, and
/// pull a new digest once it has been seen for `min_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// How often to check.
    pub interval: Duration,
    /// How long a new digest must have been seen before it is pulled.
    pub min_age: Option<Duration>,
}

/// A desired container resource (all replicas).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredContainer {
    /// Identity.
    pub key: ResourceKey,
    /// Where it was declared.
    pub origin: Origin,
    /// The image to run, resolved through an `Image` resource when the spec names one.
    pub image: ImageBinding,
    /// Replica count.
    pub replicas: u32,
    /// Running or stopped.
    pub state: DesiredRunState,
    /// Restart policy (needed by the planner for one-shot semantics).
    pub restart_policy: RestartPolicy,
    /// Containers to wait for, already resolved to keys.
    pub depends_on: Vec<(ResourceKey, DependencyCondition)>,
    /// The effective create configuration: the only input of the spec hash besides the image ID.
    pub config: Arc<ContainerConfig>,
    /// How replicas are replaced when the spec hash changes. Kept out of `config` on purpose:
    /// a strategy edit never recreates anything.
    pub rollout: Rollout,
}

/// How a resource's replicas are replaced when their spec hash changes (`spec.strategy`,
/// defaults applied by the source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// Start the new container while the old one runs, or stop the old one first.
    pub strategy: RolloutStrategyType,
    /// Replicas replaced at the same time (at least 1).
    pub max_unavailable: u32,
    /// With a health check: how long a new replica may take to become healthy before it is
    /// rolled back.
    pub health_timeout_seconds: u32,
}

impl Default for Rollout {
    /// `StartFirst`, one replica at a time, five minutes to become healthy.
    fn default() -> Self {
        Self {
            strategy: RolloutStrategyType::StartFirst,
            max_unavailable: 1,
            health_timeout_seconds: DEFAULT_HEALTH_TIMEOUT_SECONDS,
        }
    }
}

/// Default of `spec.strategy.healthTimeoutSeconds`.
pub const DEFAULT_HEALTH_TIMEOUT_SECONDS: u32 = 300;

/// Which image a container runs and how it is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageBinding {
    /// Canonical reference.
    pub reference: String,
    /// Pull policy (from the `Image` resource, or the container's own).
    pub pull_policy: PullPolicy,
    /// The `Image` resource the spec named, if any.
    pub resource: Option<ResourceKey>,
}

/// The normalised create configuration of one replica, independent of its name and index.
///
/// Serialised (canonical JSON, fields in declaration order, maps sorted) it is stored in the
/// `dockwright.dev/spec` label and hashed into `dockwright.dev/spec-hash`, so `diff` can name
/// old and new values without `docker inspect`. File contents appear only as digests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerConfig {
    /// Canonical image reference as declared (the image ID is hashed separately).
    pub image: String,
    /// Docker `Entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Docker `Cmd` (`command` followed by `args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Environment, `NAME=value`, in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// User labels (the ownership labels are added at create time, not hashed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Ports, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBinding>,
    /// Mounts in declaration order, bind sources absolute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Network name (`bridge` when not declared).
    pub network: String,
    /// Network aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_aliases: Vec<String>,
    /// Docker restart policy name: `unless-stopped`, `on-failure` or `no`.
    pub restart_policy: String,
    /// Maximum retries for `on-failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Health>,
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// CPU limit in units of 1e-9 CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Stop timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u32>,
    /// Files copied in before start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ContainerFile>,
    // The fields below are what the policy (crate::policy) judges. They come last and are
    // omitted when unset, so the spec JSON (and hash) of containers created before they
    // existed is unchanged.
    /// Privileged mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Share the host's PID namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_pid: bool,
    /// Share the host's IPC namespace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_ipc: bool,
    /// Capabilities added, canonical (`NET_ADMIN`), sorted, deduplicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped, canonical, sorted, deduplicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Host devices, in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Environment variables whose values are secret (`valueFrom`), in declaration order.
    /// Only the name and a keyed digest are serialised; see [`crate::secrets`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<SecretEnv>,
    // Added with several networks per container; omitted when unset, so older hashes hold.
    /// Fixed IPv4 address on `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// Networks connected after create and before start, in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_networks: Vec<NetworkEndpoint>,
}

/// A network a container is connected to besides its first one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkEndpoint {
    /// Docker network name.
    pub name: String,
    /// DNS aliases on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Fixed IPv4 address on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

/// A host device mapped into the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Absolute host path.
    pub host_path: String,
    /// Path inside the container.
    pub container_path: String,
    /// cgroup permissions (`rwm` subset).
    pub permissions: String,
}

/// An environment variable with a secret value. The value never leaves the process except
/// in the create request's `Env`; the label carries `digest`, a keyed HMAC of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretEnv {
    /// Variable name.
    pub name: String,
    /// `hmac-sha256:<hex>` of the value under the owner's secret key; empty until the front
    /// end seals the desired state ([`crate::secrets::seal`]).
    pub digest: String,
    /// The value itself (not serialised, redacted in `Debug`).
    #[serde(skip)]
    pub value: crate::secrets::SecretValue,
    /// Where the value comes from (not serialised).
    #[serde(skip)]
    pub source: crate::secrets::SecretSource,
}

/// A published or exposed port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortBinding {
    /// Port inside the container.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Host address, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// Host port, when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
}

/// A mount.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Mount {
    /// A named volume.
    Volume {
        /// Volume name.
        source: String,
        /// Path inside the container.
        target: String,
        /// Read-only.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        read_only: bool,
    },
    /// A host path.
    Bind {
        /// Absolute host path.
        source: String,
        /// Path inside the container.
        target: String,
        /// Read-only.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        read_only: bool,
    },
    /// An in-memory filesystem.
    Tmpfs {
        /// Path inside the container.
        target: String,
        /// Size limit in bytes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_bytes: Option<i64>,
    },
}

/// A normalised health check (Docker's shape, durations in nanoseconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    /// Interval in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ns: Option<i64>,
    /// Timeout in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ns: Option<i64>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// Start period in nanoseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period_ns: Option<i64>,
}

/// A file to place in the container. Only the digest is serialised; the bytes travel beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerFile {
    /// Absolute path in the container.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// `sha256:<hex>` of the content; for an age-encrypted source, `age:sha256:<hex>` of the
    /// encrypted bytes (the plaintext's hash never enters a label).
    pub digest: String,
    /// The content itself (not serialised: never in a label).
    #[serde(skip)]
    pub content: Arc<Vec<u8>>,
}

impl ContainerConfig {
    /// Named volumes this configuration mounts.
    pub fn volume_names(&self) -> impl Iterator<Item = &str> {
        self.mounts.iter().filter_map(|m| match m {
            Mount::Volume { source, .. } => Some(source.as_str()),
            _ => None,
        })
    }

    /// Every user-defined network the container is attached to, first one first.
    pub fn named_networks(&self) -> impl Iterator<Item = &str> {
        let first = self.uses_named_network().then_some(self.network.as_str());
        first
            .into_iter()
            .chain(self.extra_networks.iter().map(|n| n.name.as_str()))
    }

    /// True when `network` is a user-defined network (not `bridge`, `host`, `none` or `container:`).
    pub fn uses_named_network(&self) -> bool {
        !matches!(
            self.network.as_str(),
            "bridge" | "host" | "none" | "default"
        ) && !self.network.starts_with("container:")
    }
}
