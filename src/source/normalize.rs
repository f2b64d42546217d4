//! One resource → its normalised desired form: defaults applied, references canonical,
//! relative paths resolved against the manifest's directory, file sources read and hashed,
//! quantities converted. Per-resource checks live here; checks that need several resources
//! (duplicates, clashes, dependency graph) are in [`super::validate`].
//!
//! Normalising is what keeps the spec hash stable: two spellings of the same intent (an
//! omitted field and its default, `0` meaning "Docker's default", `::1` and `0:0::1`) produce
//! the same [`ContainerConfig`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::decrypt::{is_age_file, read_age_file, AgeIdentities};
use super::{LoadedManifest, ManifestError};
use crate::api::{
    Container, ContainerSpec, HealthCheck, Image, PullPolicy, RestartPolicy, VolumeType,
};
use crate::desired::{
    ContainerConfig, ContainerFile, DesiredContainer, DesiredImage, Health, ImageBinding, Kind,
    Mount, PortBinding, RegistryAuth, ResourceKey,
};
use crate::labels;
use crate::quantity::{parse_cpu, parse_memory};
use crate::reference::Reference;

/// Most replicas one resource may ask for (every replica is a container on this daemon).
pub const MAX_REPLICAS: u32 = 1000;
/// Largest file `files[].source` may name (the bytes are held in memory and copied in).
pub const MAX_CONTAINER_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Docker's smallest accepted CPU limit (0.01 CPUs) in nano CPUs.
const MIN_NANO_CPUS: i64 = 10_000_000;
/// Docker's smallest accepted memory limit (6 MiB).
const MIN_MEMORY_BYTES: i64 = 6 * 1024 * 1024;
/// Permission bits of a file whose `mode` is omitted.
const DEFAULT_FILE_MODE: u32 = 0o644;

/// The `Image` resources containers may name, by key: the canonical reference and pull
/// policy, or `None` when the `Image` itself is invalid (its own errors say why).
pub type ImageIndex = BTreeMap<ResourceKey, Option<(String, PullPolicy)>>;

mod image_build;
mod objects;
mod security;
mod strategy;

pub use objects::{normalize_network, normalize_volume, ObjectIndex};
pub use security::{canonical_capability, MAX_SECRET_FILE_BYTES};

/// Collects the errors of one resource.
struct Ctx {
    location: String,
    resource: String,
    errors: Vec<ManifestError>,
}

impl Ctx {
    fn new(lm: &LoadedManifest) -> Self {
        Self {
            location: lm.origin.to_string(),
            resource: lm.manifest.label(),
            errors: Vec::new(),
        }
    }

    fn err(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ManifestError::new(
            self.location.clone(),
            Some(self.resource.clone()),
            Some(field.into()),
            message,
        ));
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<ManifestError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Normalises an `Image` resource.
pub fn normalize_image(
    lm: &LoadedManifest,
    image: &Image,
) -> Result<DesiredImage, Vec<ManifestError>> {
    let mut cx = Ctx::new(lm);
    let reference = match Reference::parse(&image.spec.reference) {
        Ok(r) => r.to_string(),
        Err(e) => {
            cx.err("spec.ref", e.to_string());
            String::new()
        }
    };
    let spec = &image.spec;
    let key = lm.manifest.key();
    let _span = tracing::debug_span!("normalize", resource = %key).entered();
    let pinned = Reference::parse(&spec.reference).is_ok_and(|r| r.is_pinned());
    let mut tags: Vec<String> = Vec::with_capacity(spec.tags.len());
    for (i, tag) in spec.tags.iter().enumerate() {
        let field = format!("spec.tags[{i}]");
        match Reference::parse(tag) {
            Ok(r) if r.is_pinned() => {
                cx.err(field, format!("{tag:?} carries a digest; a tag cannot"))
            }
            Ok(r) => {
                let canonical = r.to_string();
                if canonical == reference || tags.contains(&canonical) {
                    cx.err(
                        field,
                        format!("{tag:?} is listed twice (with spec.ref or another tag)"),
                    );
                } else {
                    tags.push(canonical);
                }
            }
            Err(e) => cx.err(field, e.to_string()),
        }
    }
    let build = spec
        .build
        .as_ref()
        .and_then(|b| image_build::normalize_build(&mut cx, b, &lm.base_dir));
    if spec.build.is_some() && pinned {
        cx.err(
            "spec.ref",
            "a built image cannot be named by digest; use a tag",
        );
    }
    if spec.push && pinned {
        cx.err(
            "spec.push",
            "spec.ref pins a digest, which cannot be pushed; use a tag",
        );
    }
    let registry_auth = spec.registry_auth.as_ref().and_then(|a| {
        let path = resolve(&lm.base_dir, &a.secret_file);
        match crate::credentials::DockerConfig::load(&path) {
            Ok(_) => Some(RegistryAuth::SecretFile(path)),
            Err(e) => {
                cx.err("spec.registryAuth.secretFile", e.message);
                None
            }
        }
    });
    let update = image_build::normalize_update(&mut cx, spec, pinned);
    let desired = DesiredImage {
        key,
        origin: lm.origin.clone(),
        reference,
        pull_policy: spec.pull_policy,
        build: build.map(Arc::new),
        tags,
        push: spec.push,
        registry_auth,
        update,
    };
    cx.finish(desired)
}

/// Normalises a `Container` resource. `images` are the `Image` resources of all manifests,
/// `objects` the `Network` and `Volume` resources (their names resolve to Docker names),
/// `options` the identities of age-encrypted secret files.
///
/// Dependencies are resolved to keys but not checked for existence or cycles here.
pub fn normalize_container(
    lm: &LoadedManifest,
    container: &Container,
    images: &ImageIndex,
    objects: &ObjectIndex,
    options: &super::LoadOptions,
) -> Result<DesiredContainer, Vec<ManifestError>> {
    let key = lm.manifest.key();
    let _span = tracing::debug_span!("normalize", resource = %key).entered();
    let spec = &container.spec;
    let mut cx = Ctx::new(lm);

    let image = bind_image(&mut cx, spec, &key, images);
    if spec.replicas > MAX_REPLICAS {
        cx.err(
            "spec.replicas",
            format!("{} is more than the limit of {MAX_REPLICAS}", spec.replicas),
        );
    }
    if spec.replicas == 1 && key.container_name(1, 0).len() < 2 {
        cx.err(
            "metadata.name",
            "Docker container names need at least 2 characters",
        );
    }
    let cmd = match (&spec.command, &spec.args) {
        (None, None) => None,
        (command, args) => Some(
            command
                .iter()
                .flatten()
                .chain(args.iter().flatten())
                .cloned()
                .collect(),
        ),
    };
    if let Some(dir) = &spec.working_dir {
        if !dir.starts_with('/') {
            cx.err(
                "spec.workingDir",
                format!("{dir:?} must be an absolute path"),
            );
        }
    }
    let networks = objects::container_networks(&mut cx, spec, &key.namespace, objects);
    let network = networks.network;
    let env = normalize_env(&mut cx, spec);
    let secret_env = security::secret_env(
        &mut cx,
        spec,
        &lm.origin,
        &key.namespace,
        &lm.base_dir,
        options.age.as_deref(),
    );
    let (cap_add, cap_drop) = security::capabilities(&mut cx, spec);
    let devices = security::devices(&mut cx, spec);
    let labels = normalize_labels(&mut cx, spec);
    let ports = normalize_ports(&mut cx, spec, &network);
    let mut mounts = normalize_mounts(&mut cx, spec, &lm.base_dir);
    for mount in &mut mounts {
        if let Mount::Volume { source, .. } = mount {
            *source = objects::resolve_object(objects, Kind::Volume, &key.namespace, source);
        }
    }
    let (restart_policy, max_restarts) = restart(&mut cx, spec);
    let healthcheck = spec.healthcheck.as_ref().and_then(|h| health(&mut cx, h));
    let (memory_bytes, nano_cpus) = resources(&mut cx, spec);
    let files = normalize_files(&mut cx, spec, &lm.base_dir, options.age.as_deref());
    let depends_on = dependencies(&mut cx, spec, &key);
    let fixed: Vec<&str> = networks
        .ipv4_address
        .iter()
        .chain(networks.extra.iter().flat_map(|n| &n.ipv4_address))
        .map(String::as_str)
        .collect();
    let rollout = strategy::normalize_strategy(&mut cx, spec, &ports, &fixed);

    let mut config = ContainerConfig {
        image: String::new(),
        entrypoint: spec.entrypoint.clone(),
        cmd,
        env,
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        labels,
        ports,
        mounts,
        network,
        network_aliases: networks.aliases,
        restart_policy: restart_policy.to_string(),
        max_restarts,
        healthcheck,
        memory_bytes,
        nano_cpus,
        stop_timeout: spec.stop_grace_period_seconds,
        files,
        privileged: spec.privileged,
        host_pid: spec.host_pid,
        host_ipc: spec.host_ipc,
        cap_add,
        cap_drop,
        devices,
        secret_env,
        ipv4_address: networks.ipv4_address,
        extra_networks: networks.extra,
    };
    if !config.network_aliases.is_empty() && !config.uses_named_network() {
        let field = if spec.networks.is_empty() {
            "spec.networkAliases"
        } else {
            "spec.networks[0].aliases"
        };
        cx.err(
            field,
            format!(
                "aliases need a user-defined network; {:?} has none",
                config.network
            ),
        );
    }
    let Some(image) = image else {
        return Err(cx.errors);
    };
    config.image = image.reference.clone();
    let desired = DesiredContainer {
        key,
        origin: lm.origin.clone(),
        image,
        replicas: spec.replicas,
        state: spec.state,
        restart_policy: spec.restart_policy,
        depends_on,
        config: Arc::new(config),
        rollout,
    };
    cx.finish(desired)
}

/// An `Image` resource of the same namespace by name, else a plain reference with the
/// kubelet's default pull policy (`Always` for `:latest` or untagged, else `IfNotPresent`).
fn bind_image(
    cx: &mut Ctx,
    spec: &ContainerSpec,
    key: &ResourceKey,
    images: &ImageIndex,
) -> Option<ImageBinding> {
    let image_key = ResourceKey::new(Kind::Image, key.namespace.clone(), spec.image.clone());
    if let Some(entry) = images.get(&image_key) {
        if spec.image_pull_policy.is_some() {
            cx.err(
                "spec.imagePullPolicy",
                format!(
                    "must not be set when spec.image names Image/{}; set spec.pullPolicy on the Image",
                    spec.image
                ),
            );
        }
        return match entry {
            Some((reference, pull_policy)) => Some(ImageBinding {
                reference: reference.clone(),
                pull_policy: *pull_policy,
                resource: Some(image_key),
            }),
            None => {
                cx.err(
                    "spec.image",
                    format!("Image/{} is invalid (see its errors)", spec.image),
                );
                None
            }
        };
    }
    match Reference::parse(&spec.image) {
        Ok(reference) => {
            let default = if reference.is_latest() {
                PullPolicy::Always
            } else {
                PullPolicy::IfNotPresent
            };
            Some(ImageBinding {
                reference: reference.to_string(),
                pull_policy: spec.image_pull_policy.unwrap_or(default),
                resource: None,
            })
        }
        Err(e) => {
            cx.err(
                "spec.image",
                format!(
                    "{e} (and no Image resource {:?} in namespace {})",
                    spec.image, key.namespace
                ),
            );
            None
        }
    }
}

fn normalize_env(cx: &mut Ctx, spec: &ContainerSpec) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut env = Vec::with_capacity(spec.env.len());
    for (i, var) in spec.env.iter().enumerate() {
        let field = format!("spec.env[{i}].name");
        if var.name.is_empty() {
            cx.err(field, "must not be empty");
        } else if var.name.contains('=') {
            cx.err(field, format!("{:?} must not contain '='", var.name));
        } else if var.name.contains('\0') {
            cx.err(field, "must not contain a NUL character");
        } else if let Some(first) = seen.insert(&var.name, i) {
            cx.err(
                field,
                format!(
                    "duplicate environment variable {:?} (also spec.env[{first}])",
                    var.name
                ),
            );
        }
        if var.value.contains('\0') {
            cx.err(
                format!("spec.env[{i}].value"),
                "must not contain a NUL character",
            );
        }
        // `valueFrom` entries are secret: see security::secret_env.
        if var.value_from.is_none() {
            env.push(format!("{}={}", var.name, var.value));
        }
    }
    env
}

fn normalize_labels(cx: &mut Ctx, spec: &ContainerSpec) -> BTreeMap<String, String> {
    for key in spec.labels.keys() {
        if key.is_empty() {
            cx.err("spec.labels", "label keys must not be empty");
        } else if key.starts_with(labels::PREFIX) {
            cx.err(
                format!("spec.labels.{key}"),
                format!(
                    "keys under {:?} are reserved for dockwright",
                    labels::PREFIX
                ),
            );
        }
    }
    spec.labels.clone()
}

fn normalize_ports(cx: &mut Ctx, spec: &ContainerSpec, network: &str) -> Vec<PortBinding> {
    if network == "host" && !spec.ports.is_empty() {
        cx.err(
            "spec.ports",
            "ports cannot be published with network: host (the container uses the host's ports)",
        );
    }
    let mut ports = Vec::with_capacity(spec.ports.len());
    for (i, p) in spec.ports.iter().enumerate() {
        if p.container_port == 0 {
            cx.err(
                format!("spec.ports[{i}].containerPort"),
                "must be between 1 and 65535",
            );
        }
        if p.host_port == Some(0) {
            cx.err(
                format!("spec.ports[{i}].hostPort"),
                "must be between 1 and 65535; omit it to expose the port without publishing it",
            );
        }
        if let (Some(host_port), true) = (p.host_port, spec.replicas > 1) {
            cx.err(
                format!("spec.ports[{i}].hostPort"),
                format!(
                    "host port {host_port} cannot be shared by {} replicas; remove hostPort or use replicas: 1",
                    spec.replicas
                ),
            );
        }
        let host_ip = match p.host_ip.as_deref() {
            None => None,
            Some(ip) => match ip.parse::<IpAddr>() {
                Ok(ip) => Some(ip.to_string()),
                Err(_) => {
                    cx.err(
                        format!("spec.ports[{i}].hostIP"),
                        format!("{ip:?} is not an IP address"),
                    );
                    None
                }
            },
        };
        ports.push(PortBinding {
            container_port: p.container_port,
            protocol: p.protocol.as_docker().to_string(),
            host_ip,
            host_port: p.host_port,
        });
    }
    ports.sort();
    ports
}

/// An absolute, `.`-free path: `path` itself, or relative to `base`.
fn resolve(base: &Path, path: &str) -> PathBuf {
    base.join(path).components().collect()
}

/// Docker's volume name pattern `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() >= 2
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn normalize_mounts(cx: &mut Ctx, spec: &ContainerSpec, base_dir: &Path) -> Vec<Mount> {
    let mut targets: BTreeMap<&str, usize> = BTreeMap::new();
    let mut mounts = Vec::with_capacity(spec.volumes.len());
    for (i, v) in spec.volumes.iter().enumerate() {
        let field = |name: &str| format!("spec.volumes[{i}].{name}");
        if !v.target.starts_with('/') {
            cx.err(
                field("target"),
                format!("{:?} must be an absolute path", v.target),
            );
        } else if let Some(first) = targets.insert(v.target.trim_end_matches('/'), i) {
            cx.err(
                field("target"),
                format!("{:?} is already mounted by spec.volumes[{first}]", v.target),
            );
        }
        if v.size_limit.is_some() && v.type_ != VolumeType::Tmpfs {
            cx.err(field("sizeLimit"), "only valid for type: Tmpfs");
        }
        let target = v.target.clone();
        match v.type_ {
            VolumeType::Volume => match &v.source {
                Some(source) if valid_volume_name(source) => {
                    mounts.push(Mount::Volume {
                        source: source.clone(),
                        target,
                        read_only: v.read_only,
                    });
                }
                Some(source) => {
                    let hint = if source.starts_with(['/', '.', '~']) {
                        "; use type: Bind for a host path"
                    } else {
                        ""
                    };
                    cx.err(
                        field("source"),
                        format!("{source:?} is not a valid volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+){hint}"),
                    );
                }
                None => cx.err(
                    field("source"),
                    "missing; a named volume needs the volume's name",
                ),
            },
            VolumeType::Bind => match &v.source {
                Some(source) if !source.is_empty() => {
                    let path = resolve(base_dir, source);
                    match std::fs::metadata(&path) {
                        Ok(_) => match path.to_str() {
                            Some(s) => mounts.push(Mount::Bind {
                                source: s.to_string(),
                                target,
                                read_only: v.read_only,
                            }),
                            None => cx.err(
                                field("source"),
                                format!("{} is not valid UTF-8", path.display()),
                            ),
                        },
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            cx.err(
                                field("source"),
                                format!("missing volume source: {} does not exist", path.display()),
                            );
                        }
                        Err(e) => cx.err(
                            field("source"),
                            format!("cannot access volume source {}: {e}", path.display()),
                        ),
                    }
                }
                _ => cx.err(field("source"), "missing; a bind mount needs a host path"),
            },
            VolumeType::Tmpfs => {
                if v.source.is_some() {
                    cx.err(field("source"), "a tmpfs mount has no source; remove it");
                }
                let size_bytes = v.size_limit.as_deref().and_then(|s| match parse_memory(s) {
                    Ok(0) => {
                        cx.err(
                            field("sizeLimit"),
                            "must be greater than 0; omit it for no limit",
                        );
                        None
                    }
                    Ok(n) => Some(n),
                    Err(e) => {
                        cx.err(field("sizeLimit"), e.to_string());
                        None
                    }
                });
                mounts.push(Mount::Tmpfs { target, size_bytes });
            }
        }
    }
    mounts
}

/// Docker's restart policy name and retry limit (`0` retries means unlimited, as omitted).
fn restart(cx: &mut Ctx, spec: &ContainerSpec) -> (&'static str, Option<u32>) {
    if spec.max_restarts.is_some() && spec.restart_policy != RestartPolicy::OnFailure {
        cx.err(
            "spec.maxRestarts",
            "only valid with restartPolicy: OnFailure",
        );
    }
    match spec.restart_policy {
        RestartPolicy::Always => ("unless-stopped", None),
        RestartPolicy::OnFailure => ("on-failure", spec.max_restarts.filter(|n| *n > 0)),
        RestartPolicy::Never => ("no", None),
    }
}

/// Docker's health check; `0` seconds or retries mean Docker's default, as omitted.
fn health(cx: &mut Ctx, h: &HealthCheck) -> Option<Health> {
    let test = match (&h.command, &h.shell) {
        (Some(command), None) if !command.is_empty() => std::iter::once("CMD".to_string())
            .chain(command.iter().cloned())
            .collect(),
        (Some(_), None) => {
            cx.err("spec.healthcheck.command", "must not be empty");
            return None;
        }
        (None, Some(shell)) if !shell.trim().is_empty() => {
            vec!["CMD-SHELL".to_string(), shell.clone()]
        }
        (None, Some(_)) => {
            cx.err("spec.healthcheck.shell", "must not be empty");
            return None;
        }
        _ => {
            cx.err(
                "spec.healthcheck",
                "exactly one of command and shell is required",
            );
            return None;
        }
    };
    let ns = |s: Option<u32>| s.filter(|s| *s > 0).map(|s| i64::from(s) * 1_000_000_000);
    Some(Health {
        test,
        interval_ns: ns(h.interval_seconds),
        timeout_ns: ns(h.timeout_seconds),
        retries: h.retries.filter(|r| *r > 0).map(i64::from),
        start_period_ns: ns(h.start_period_seconds),
    })
}

/// `(memory bytes, nano CPUs)` limits.
fn resources(cx: &mut Ctx, spec: &ContainerSpec) -> (Option<i64>, Option<i64>) {
    let Some(limits) = spec.resources.as_ref().map(|r| &r.limits) else {
        return (None, None);
    };
    let memory = limits
        .memory
        .as_deref()
        .and_then(|m| match parse_memory(m) {
            Ok(n) if n >= MIN_MEMORY_BYTES => Some(n),
            Ok(_) => {
                cx.err(
                    "spec.resources.limits.memory",
                    format!("{m:?} is below Docker's minimum of 6Mi"),
                );
                None
            }
            Err(e) => {
                cx.err("spec.resources.limits.memory", e.to_string());
                None
            }
        });
    let cpu = limits.cpu.as_deref().and_then(|c| match parse_cpu(c) {
        Ok(n) if n >= MIN_NANO_CPUS => Some(n),
        Ok(_) => {
            cx.err(
                "spec.resources.limits.cpu",
                format!("{c:?} is below Docker's minimum of 10m"),
            );
            None
        }
        Err(e) => {
            cx.err("spec.resources.limits.cpu", e.to_string());
            None
        }
    });
    (memory, cpu)
}

/// Octal permission bits: `"0644"`, `"644"` or `"0o644"`, at most `7777`.
fn parse_mode(mode: &str) -> Result<u32, String> {
    let digits = mode.strip_prefix("0o").unwrap_or(mode);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!("{mode:?} is not an octal mode such as \"0644\""));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("{mode:?} is larger than 07777")),
    }
}

fn normalize_files(
    cx: &mut Ctx,
    spec: &ContainerSpec,
    base_dir: &Path,
    age: Option<&AgeIdentities>,
) -> Vec<ContainerFile> {
    let mut paths: BTreeMap<&str, usize> = BTreeMap::new();
    let mut files = Vec::with_capacity(spec.files.len());
    for (i, f) in spec.files.iter().enumerate() {
        let field = |name: &str| format!("spec.files[{i}].{name}");
        if !f.path.starts_with('/') || f.path.ends_with('/') {
            cx.err(
                field("path"),
                format!("{:?} must be an absolute file path", f.path),
            );
        } else if let Some(first) = paths.insert(&f.path, i) {
            cx.err(
                field("path"),
                format!("{:?} is already written by spec.files[{first}]", f.path),
            );
        }
        let mode = match f.mode.as_deref().map(parse_mode) {
            None => DEFAULT_FILE_MODE,
            Some(Ok(m)) => m,
            Some(Err(message)) => {
                cx.err(field("mode"), message);
                DEFAULT_FILE_MODE
            }
        };
        // An age file's digest is of its encrypted bytes: the plaintext's hash never enters
        // the spec label (a low-entropy secret could be guessed from it).
        let content = match (&f.content, &f.source) {
            (Some(content), None) => (content.as_bytes().to_vec(), None),
            (None, Some(source)) => match read_source(&resolve(base_dir, source), age) {
                Ok(read) => read,
                Err(message) => {
                    cx.err(field("source"), message);
                    continue;
                }
            },
            _ => {
                cx.err(
                    format!("spec.files[{i}]"),
                    "exactly one of content and source is required",
                );
                continue;
            }
        };
        let (content, encrypted_digest) = content;
        let digest = encrypted_digest
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&content))));
        files.push(ContainerFile {
            path: f.path.clone(),
            mode,
            digest,
            content: Arc::new(content),
        });
    }
    files
}

/// The bytes of a `files[].source` and, for an age file, the digest of its encrypted bytes
/// (`age:sha256:<hex>`); or a message naming the resolved path.
fn read_source(
    path: &Path,
    age: Option<&AgeIdentities>,
) -> Result<(Vec<u8>, Option<String>), String> {
    if is_age_file(path) {
        let decrypted = read_age_file(path, age, MAX_CONTAINER_FILE_BYTES, "files source")?;
        return Ok((decrypted.plaintext, Some(decrypted.encrypted_digest)));
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("missing files source: {} does not exist", path.display())
        }
        _ => format!("cannot read files source {}: {e}", path.display()),
    })?;
    if meta.is_dir() {
        return Err(format!(
            "files source {} is a directory; expected a file",
            path.display()
        ));
    }
    let too_large = || {
        format!(
            "files source {} is larger than the limit of {MAX_CONTAINER_FILE_BYTES} bytes",
            path.display()
        )
    };
    if meta.len() > MAX_CONTAINER_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONTAINER_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read files source {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_CONTAINER_FILE_BYTES {
        return Err(too_large());
    }
    Ok((bytes, None))
}

fn dependencies(
    cx: &mut Ctx,
    spec: &ContainerSpec,
    key: &ResourceKey,
) -> Vec<(ResourceKey, crate::api::DependencyCondition)> {
    let mut seen = BTreeSet::new();
    let mut deps = Vec::with_capacity(spec.depends_on.len());
    for (i, d) in spec.depends_on.iter().enumerate() {
        let field = format!("spec.dependsOn[{i}].name");
        if d.name == key.name {
            cx.err(field, "a container cannot depend on itself");
        } else if !seen.insert(d.name.as_str()) {
            cx.err(field, format!("duplicate dependency {:?}", d.name));
        } else {
            deps.push((
                ResourceKey::new(Kind::Container, key.namespace.clone(), d.name.clone()),
                d.condition,
            ));
        }
    }
    deps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o755"), Ok(0o755));
        assert_eq!(parse_mode("04755"), Ok(0o4755));
        for bad in [
            "",
            "0o",
            "8",
            "0x1ff",
            "rw-r--r--",
            "-644",
            "17777",
            "777777",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volume_names() {
        for ok in ["data", "my_vol.1", "a-b", "0a"] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["", "a", "/data", "./data", "_x", "a b", "a/b"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
    }

    #[test]
    fn resolves_relative_paths() {
        let base = Path::new("/srv/app");
        assert_eq!(resolve(base, "./data"), PathBuf::from("/srv/app/data"));
        assert_eq!(
            resolve(base, "conf/x.conf"),
            PathBuf::from("/srv/app/conf/x.conf")
        );
        assert_eq!(resolve(base, "/etc/hosts"), PathBuf::from("/etc/hosts"));
        assert_eq!(resolve(base, "a//b/./c"), PathBuf::from("/srv/app/a/b/c"));
    }
}
