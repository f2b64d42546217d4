//! The serde model of the Compose specification's shapes that `convert` understands, read
//! from an interpolated [`Node`](super::node::Node) tree. Union shapes (string or list, list or
//! map, short or long syntax) are small enums with hand-written visitors, so an error says what
//! was expected. Every struct keeps the keys it does not model in an [`Other`], which
//! `to_manifests` turns into warnings: nothing is dropped silently. No meaning is given to any
//! value here.
//!
//! Why our own model: the Compose-spec crates we found either parse with serde_yaml (not our
//! YAML stack), drop unknown keys silently, or reject files Compose accepts; we need both the
//! file's key order and every unmodelled key.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::node::Node;

/// A mapping whose key order is kept (services, networks and volumes in file order).
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedMap<T>(pub Vec<(String, T)>);

impl<T> Default for OrderedMap<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OrderedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(OrderedMap::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    entries.push((k, v));
                }
                Ok(OrderedMap(entries))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// The keys of a mapping that a struct does not model, in file order (values are not kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Other(pub Vec<String>);

impl<'de> Deserialize<'de> for Other {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Other;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Other, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Other(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// A whole Compose file.
#[derive(Debug, Default, Deserialize)]
pub struct ComposeFile {
    /// The project name.
    #[serde(default)]
    pub name: Option<String>,
    /// Obsolete; accepted and ignored, as Compose v2 does (modelled so it is not warned about).
    #[serde(default)]
    #[allow(dead_code)]
    pub version: Option<String>,
    /// The services.
    #[serde(default)]
    pub services: OrderedMap<Service>,
    /// Named volumes (`data:` with no body is common, hence `Option`).
    #[serde(default)]
    pub volumes: OrderedMap<Option<VolumeDef>>,
    /// Networks.
    #[serde(default)]
    pub networks: OrderedMap<Option<NetworkDef>>,
    /// Secrets services may mount.
    #[serde(default)]
    pub secrets: OrderedMap<Option<SecretDef>>,
    /// Configs services may mount.
    #[serde(default)]
    pub configs: OrderedMap<Option<SecretDef>>,
    /// Everything else (`x-...`; `include` is resolved on the tree before this model).
    #[serde(flatten)]
    pub other: Other,
}

/// A top-level secret or config.
#[derive(Debug, Default, Deserialize)]
pub struct SecretDef {
    /// Content from a host file, relative to the Compose file.
    #[serde(default)]
    pub file: Option<String>,
    /// Content from a variable of the environment `convert` runs in.
    #[serde(default)]
    pub environment: Option<String>,
    /// Inline content (configs only).
    #[serde(default)]
    pub content: Option<String>,
    /// Managed outside Compose.
    #[serde(default)]
    pub external: Option<External>,
    /// The name on the platform (not used for file- or environment-backed ones).
    #[serde(default)]
    #[allow(dead_code)]
    pub name: Option<String>,
    /// Everything else (`driver`, `template_driver`, `labels`).
    #[serde(flatten)]
    pub other: Other,
}

/// A service's `secrets` or `configs` entry: a name, or the long syntax.
#[derive(Debug)]
pub enum SecretRef {
    /// Just the source name.
    Short(String),
    /// The long syntax.
    Long(SecretRefLong),
}

/// The long syntax of a service's `secrets` / `configs` entry.
#[derive(Debug, Default, Deserialize)]
pub struct SecretRefLong {
    /// The top-level secret or config.
    pub source: String,
    /// Path in the container (relative: under `/run/secrets` for secrets).
    #[serde(default)]
    pub target: Option<String>,
    /// Owner uid.
    #[serde(default)]
    pub uid: Option<String>,
    /// Owner gid.
    #[serde(default)]
    pub gid: Option<String>,
    /// Permission bits (octal as written, or a decimal number).
    #[serde(default)]
    pub mode: Option<Node>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Other,
}

impl FromShortLong for SecretRef {
    type Long = SecretRefLong;
    fn short(s: String) -> Self {
        SecretRef::Short(s)
    }
    fn long(l: SecretRefLong) -> Self {
        SecretRef::Long(l)
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShortOrLong::<SecretRef, SecretRefLong>(
            PhantomData,
            "a secret name or a mapping with source, target, uid, gid, mode",
        ))
    }
}

/// One service.
#[derive(Debug, Default, Deserialize)]
pub struct Service {
    /// Image reference.
    #[serde(default)]
    pub image: Option<String>,
    /// Build instructions.
    #[serde(default)]
    pub build: Option<Build>,
    /// `always`, `never`, `missing`, `if_not_present`, `build`, ...
    #[serde(default)]
    pub pull_policy: Option<String>,
    /// Overrides the image's CMD.
    #[serde(default)]
    pub command: Option<Words>,
    /// Overrides the image's ENTRYPOINT.
    #[serde(default)]
    pub entrypoint: Option<Words>,
    /// Environment variables.
    #[serde(default)]
    pub environment: Option<ListOrMap>,
    /// Env files, relative to the Compose file.
    #[serde(default)]
    pub env_file: Option<EnvFiles>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Exposed (not published) ports.
    #[serde(default)]
    pub expose: Vec<String>,
    /// Mounts.
    #[serde(default)]
    pub volumes: Vec<ServiceVolume>,
    /// Tmpfs mounts, `path[:options]`.
    #[serde(default)]
    pub tmpfs: Option<StringOrList>,
    /// Networks to join.
    #[serde(default)]
    pub networks: Option<ServiceNetworks>,
    /// `bridge`, `host`, `none`, `service:x`, `container:x`.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// Services to start first.
    #[serde(default)]
    pub depends_on: Option<DependsOn>,
    /// Health check.
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    /// `no`, `always`, `unless-stopped`, `on-failure[:N]`.
    #[serde(default)]
    pub restart: Option<String>,
    /// Deployment settings.
    #[serde(default)]
    pub deploy: Option<Deploy>,
    /// Legacy replica count.
    #[serde(default)]
    pub scale: Option<u32>,
    /// Legacy CPU limit.
    #[serde(default)]
    pub cpus: Option<String>,
    /// Legacy memory limit.
    #[serde(default)]
    pub mem_limit: Option<String>,
    /// Container labels.
    #[serde(default)]
    pub labels: Option<ListOrMap>,
    /// Fixed container name.
    #[serde(default)]
    pub container_name: Option<String>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// User.
    #[serde(default)]
    pub user: Option<String>,
    /// Hostname.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Time between SIGTERM and SIGKILL.
    #[serde(default)]
    pub stop_grace_period: Option<String>,
    /// Run privileged.
    #[serde(default)]
    pub privileged: Option<bool>,
    /// Capabilities to add.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Capabilities to drop.
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// Host devices.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// PID namespace: `host`, `service:x`, `container:x`.
    #[serde(default)]
    pub pid: Option<String>,
    /// IPC namespace: `host`, `private`, `shareable`, `service:x`, `container:x`.
    #[serde(default)]
    pub ipc: Option<String>,
    /// Profiles the service belongs to (none: always enabled).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Secrets mounted as files.
    #[serde(default)]
    pub secrets: Vec<SecretRef>,
    /// Configs mounted as files.
    #[serde(default)]
    pub configs: Vec<SecretRef>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Other,
}

/// A `devices` entry: `HOST[:CONTAINER][:PERMISSIONS]`, a CDI name, or the long form.
#[derive(Debug)]
pub enum Device {
    /// The short form as written.
    Short(String),
    /// The long form.
    Long(DeviceLong),
}

/// The long form of a `devices` entry.
#[derive(Debug, Default, Deserialize)]
pub struct DeviceLong {
    /// Path on the host.
    #[serde(default)]
    pub source: Option<String>,
    /// Path in the container (default: the host path).
    #[serde(default)]
    pub target: Option<String>,
    /// cgroup permissions (`rwm`).
    #[serde(default)]
    pub permissions: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Other,
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Device;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a device as HOST[:CONTAINER][:PERMISSIONS] or a mapping with source, target, permissions")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Device, E> {
                Ok(Device::Short(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Device, A::Error> {
                DeviceLong::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Device::Long)
            }
        }
        d.deserialize_any(V)
    }
}

/// `build: ./dir` or the long form.
#[derive(Debug)]
pub enum Build {
    /// Just the context.
    Context(String),
    /// The long form.
    Long(BuildLong),
}

/// The long form of `build`.
#[derive(Debug, Default, Deserialize)]
pub struct BuildLong {
    /// Build context.
    #[serde(default)]
    pub context: Option<String>,
    /// Dockerfile, relative to the context.
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Build arguments.
    #[serde(default)]
    pub args: Option<ListOrMap>,
    /// Target stage.
    #[serde(default)]
    pub target: Option<String>,
    /// Labels of the built image.
    #[serde(default)]
    pub labels: Option<ListOrMap>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Other,
}

impl<'de> Deserialize<'de> for Build {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Build;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a build context path or a mapping with context, dockerfile, args, target",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Build, E> {
                Ok(Build::Context(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Build, A::Error> {
                BuildLong::deserialize(de::value::MapAccessDeserializer::new(map)).map(Build::Long)
            }
        }
        d.deserialize_any(V)
    }
}

/// A command as a string (split like a shell would) or a list of words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Words {
    /// `command: httpd -f -p 8080`.
    String(String),
    /// `command: [httpd, -f]`.
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Words;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Words, E> {
                Ok(Words::String(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Words, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Words::List)
            }
        }
        d.deserialize_any(V)
    }
}

/// A string or a list of strings (`tmpfs`, `env_file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StringOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Words::deserialize(d).map(|w| match w {
            Words::String(s) => StringOrList(vec![s]),
            Words::List(l) => StringOrList(l),
        })
    }
}

/// `KEY=VALUE` strings or a mapping (`environment`, `labels`, `build.args`), in file order.
/// A value is `None` for a bare `KEY` or `KEY:` with no value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOrMap(pub Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for ListOrMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListOrMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of KEY=VALUE strings or a mapping")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ListOrMap, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    out.push(match item.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (item, None),
                    });
                }
                Ok(ListOrMap(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListOrMap, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Option<String>>()? {
                    out.push((k, v));
                }
                Ok(ListOrMap(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `env_file`: a path, or a list of paths and `{path, required}` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvFiles(pub Vec<EnvFileRef>);

/// One env file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFileRef {
    /// Path relative to the Compose file.
    pub path: String,
    /// A missing optional file is skipped (Compose `required: false`).
    pub required: bool,
}

fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for EnvFileRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            path: String,
            #[serde(default = "yes")]
            required: bool,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFileRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a mapping with path and required")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFileRef, E> {
                Ok(EnvFileRef {
                    path: v.to_string(),
                    required: true,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvFileRef, A::Error> {
                let l = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EnvFileRef {
                    path: l.path,
                    required: l.required,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFiles;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFiles, E> {
                Ok(EnvFiles(vec![EnvFileRef {
                    path: v.to_string(),
                    required: true,
                }]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<EnvFiles, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(EnvFiles)
            }
        }
        d.deserialize_any(V)
    }
}

/// One `ports` entry.
#[derive(Debug)]
pub enum Port {
    /// `"[[ip:]host:]container[/protocol]"`, ranges allowed.
    Short(String),
    /// The long syntax.
    Long(LongPort),
}

/// The long syntax of a port.
#[derive(Debug, Default, Deserialize)]
pub struct LongPort {
    /// Container port.
    pub target: u16,
    /// Host port or range (`8080`, `"8000-8010"`).
    #[serde(default)]
    pub published: Option<String>,
    /// Host address.
    #[serde(default)]
    pub host_ip: Option<String>,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// `host` or `ingress`: only Swarm's routing mesh reads it, so it is accepted and ignored
    /// (modelled so it is not warned about).
    #[serde(default)]
    #[allow(dead_code)]
    pub mode: Option<String>,
    /// Everything else (`name`, `app_protocol`).
    #[serde(flatten)]
    pub other: Other,
}

/// Visitor for "a short string (or number) or a long mapping" shapes.
struct ShortOrLong<S, L>(PhantomData<(S, L)>, &'static str);

trait FromShortLong: Sized {
    type Long: for<'de> Deserialize<'de>;
    fn short(s: String) -> Self;
    fn long(l: Self::Long) -> Self;
}

impl<'de, T: FromShortLong> Visitor<'de> for ShortOrLong<T, T::Long> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Ok(T::short(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::short(v.to_string()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::Long::deserialize(de::value::MapAccessDeserializer::new(map)).map(T::long)
    }
}

impl FromShortLong for Port {
    type Long = LongPort;
    fn short(s: String) -> Self {
        Port::Short(s)
    }
    fn long(l: LongPort) -> Self {
        Port::Long(l)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShortOrLong::<Port, LongPort>(
            PhantomData,
            "a port such as \"8080:80\" or a mapping with target, published, host_ip, protocol",
        ))
    }
}

/// One service `volumes` entry.
#[derive(Debug)]
pub enum ServiceVolume {
    /// `"[source:]target[:mode]"`.
    Short(String),
    /// The long syntax.
    Long(LongVolume),
}

/// The long syntax of a mount.
#[derive(Debug, Default, Deserialize)]
pub struct LongVolume {
    /// `volume`, `bind`, `tmpfs`, `npipe`, `cluster`, `image`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Volume name or host path.
    #[serde(default)]
    pub source: Option<String>,
    /// Path in the container.
    pub target: String,
    /// Read-only mount.
    #[serde(default)]
    pub read_only: Option<bool>,
    /// Bind options.
    #[serde(default)]
    pub bind: Option<Other>,
    /// Volume options.
    #[serde(default)]
    pub volume: Option<Other>,
    /// Tmpfs options.
    #[serde(default)]
    pub tmpfs: Option<TmpfsOptions>,
    /// Everything else (`consistency`).
    #[serde(flatten)]
    pub other: Other,
}

/// `tmpfs:` options of a long-syntax mount.
#[derive(Debug, Default, Deserialize)]
pub struct TmpfsOptions {
    /// Size limit, bytes or with a unit.
    #[serde(default)]
    pub size: Option<String>,
    /// Everything else (`mode`).
    #[serde(flatten)]
    pub other: Other,
}

impl FromShortLong for ServiceVolume {
    type Long = LongVolume;
    fn short(s: String) -> Self {
        ServiceVolume::Short(s)
    }
    fn long(l: LongVolume) -> Self {
        ServiceVolume::Long(l)
    }
}

impl<'de> Deserialize<'de> for ServiceVolume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShortOrLong::<ServiceVolume, LongVolume>(
            PhantomData,
            "a mount such as \"data:/data:ro\" or a mapping with type, source, target",
        ))
    }
}

/// A service's `networks`: a list of names or a mapping of name → attachment options.
#[derive(Debug)]
pub struct ServiceNetworks(pub Vec<(String, Option<NetworkAttachment>)>);

/// Options of one network attachment.
#[derive(Debug, Default, Deserialize)]
pub struct NetworkAttachment {
    /// Extra DNS names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Fixed IPv4 address.
    #[serde(default)]
    pub ipv4_address: Option<String>,
    /// Everything else (`ipv6_address`, `priority`, ...).
    #[serde(flatten)]
    pub other: Other,
}

impl<'de> Deserialize<'de> for ServiceNetworks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServiceNetworks;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of network names or a mapping")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ServiceNetworks, A::Error> {
                let names: Vec<String> =
                    Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(ServiceNetworks(
                    names.into_iter().map(|n| (n, None)).collect(),
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServiceNetworks, A::Error> {
                OrderedMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| ServiceNetworks(m.0))
            }
        }
        d.deserialize_any(V)
    }
}

/// `depends_on`: a list of services or a mapping of service → condition.
#[derive(Debug)]
pub struct DependsOn(pub Vec<(String, DependsOnEntry)>);

/// One long-form dependency.
#[derive(Debug, Default, Deserialize)]
pub struct DependsOnEntry {
    /// `service_started` (default), `service_healthy`, `service_completed_successfully`.
    #[serde(default)]
    pub condition: Option<String>,
    /// `false`: a dependency that is not converted (its profile is off) is dropped.
    #[serde(default)]
    pub required: Option<bool>,
    /// Everything else (`restart`).
    #[serde(flatten)]
    pub other: Other,
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of service names or a mapping of service to condition")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<DependsOn, A::Error> {
                let names: Vec<String> =
                    Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(DependsOn(
                    names
                        .into_iter()
                        .map(|n| (n, DependsOnEntry::default()))
                        .collect(),
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DependsOn, A::Error> {
                OrderedMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|m| DependsOn(m.0))
            }
        }
        d.deserialize_any(V)
    }
}

/// A health check.
#[derive(Debug, Default, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]` or a shell string.
    #[serde(default)]
    pub test: Option<Words>,
    /// Duration between checks.
    #[serde(default)]
    pub interval: Option<String>,
    /// Duration before a check fails.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Failures before unhealthy.
    #[serde(default)]
    pub retries: Option<u32>,
    /// Grace period after start.
    #[serde(default)]
    pub start_period: Option<String>,
    /// Disable the image's check.
    #[serde(default)]
    pub disable: Option<bool>,
    /// Everything else (`start_interval`).
    #[serde(flatten)]
    pub other: Other,
}

/// `deploy`.
#[derive(Debug, Default, Deserialize)]
pub struct Deploy {
    /// Replica count.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// `replicated` or `global`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Resource limits and reservations.
    #[serde(default)]
    pub resources: Option<DeployResources>,
    /// Restart policy (wins over the service's `restart`).
    #[serde(default)]
    pub restart_policy: Option<DeployRestart>,
    /// How replicas are updated.
    #[serde(default)]
    pub update_config: Option<UpdateConfig>,
    /// Everything else (`placement`, `rollback_config`, `labels`, ...).
    #[serde(flatten)]
    pub other: Other,
}

/// `deploy.update_config`.
#[derive(Debug, Default, Deserialize)]
pub struct UpdateConfig {
    /// Containers updated at a time (0: all at once).
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// `stop-first` or `start-first`.
    #[serde(default)]
    pub order: Option<String>,
    /// `continue`, `rollback` or `pause`.
    #[serde(default)]
    pub failure_action: Option<String>,
    /// How long each updated container is watched for a failure.
    #[serde(default)]
    pub monitor: Option<String>,
    /// Everything else (`delay`, `max_failure_ratio`).
    #[serde(flatten)]
    pub other: Other,
}

/// `deploy.resources`.
#[derive(Debug, Default, Deserialize)]
pub struct DeployResources {
    /// Upper limits.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Everything else (`reservations`).
    #[serde(flatten)]
    pub other: Other,
}

/// `deploy.resources.limits`.
#[derive(Debug, Default, Deserialize)]
pub struct Limits {
    /// CPU count, e.g. `0.5`.
    #[serde(default)]
    pub cpus: Option<String>,
    /// Memory, e.g. `512m`.
    #[serde(default)]
    pub memory: Option<String>,
    /// Everything else (`pids`, `devices`).
    #[serde(flatten)]
    pub other: Other,
}

/// `deploy.restart_policy`.
#[derive(Debug, Default, Deserialize)]
pub struct DeployRestart {
    /// `none`, `on-failure` or `any`.
    #[serde(default)]
    pub condition: Option<String>,
    /// Retries for `on-failure`.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Everything else (`delay`, `window`).
    #[serde(flatten)]
    pub other: Other,
}

/// A top-level named volume.
#[derive(Debug, Default, Deserialize)]
pub struct VolumeDef {
    /// The Docker volume name (no project prefix).
    #[serde(default)]
    pub name: Option<String>,
    /// Created outside Compose.
    #[serde(default)]
    pub external: Option<External>,
    /// Volume driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// Driver options.
    #[serde(default)]
    pub driver_opts: Option<ListOrMap>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<ListOrMap>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Other,
}

/// A top-level network.
#[derive(Debug, Default, Deserialize)]
pub struct NetworkDef {
    /// The Docker network name (no project prefix).
    #[serde(default)]
    pub name: Option<String>,
    /// Created outside Compose.
    #[serde(default)]
    pub external: Option<External>,
    /// Network driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// Driver options.
    #[serde(default)]
    pub driver_opts: Option<ListOrMap>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<ListOrMap>,
    /// No outside route.
    #[serde(default)]
    pub internal: Option<bool>,
    /// Standalone containers may attach.
    #[serde(default)]
    pub attachable: Option<bool>,
    /// IPv6.
    #[serde(default)]
    pub enable_ipv6: Option<bool>,
    /// Address management.
    #[serde(default)]
    pub ipam: Option<Ipam>,
    /// Everything else.
    #[serde(flatten)]
    pub other: Other,
}

/// A network's `ipam`.
#[derive(Debug, Default, Deserialize)]
pub struct Ipam {
    /// IPAM driver.
    #[serde(default)]
    pub driver: Option<String>,
    /// Address pools.
    #[serde(default)]
    pub config: Vec<IpamConfig>,
    /// Everything else (`options`).
    #[serde(flatten)]
    pub other: Other,
}

/// One `ipam.config` pool.
#[derive(Debug, Default, Deserialize)]
pub struct IpamConfig {
    /// Subnet in CIDR form.
    #[serde(default)]
    pub subnet: Option<String>,
    /// Gateway address.
    #[serde(default)]
    pub gateway: Option<String>,
    /// Sub-range for containers.
    #[serde(default)]
    pub ip_range: Option<String>,
    /// Everything else (`aux_addresses`).
    #[serde(flatten)]
    pub other: Other,
}

/// `external: true` or the legacy `external: {name: x}`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct External {
    /// Whether the object is external.
    pub external: bool,
    /// Legacy spelling of the name.
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(default)]
            name: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = External;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false or a mapping with name")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<External, E> {
                Ok(External {
                    external: v,
                    name: None,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<External, E> {
                match v.to_ascii_lowercase().as_str() {
                    "true" => self.visit_bool(true),
                    "false" => self.visit_bool(false),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<External, A::Error> {
                let l = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(External {
                    external: true,
                    name: l.name,
                })
            }
        }
        d.deserialize_any(V)
    }
}
