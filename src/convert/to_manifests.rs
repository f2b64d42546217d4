//! Compose services (the typed model of `compose.rs`) → dockwright `Container` resources, one
//! per service, with a [`Warning`](super::Warning) for everything that has no exact equivalent.
//! Reads only the env files a service names; everything else is computed from the model.
//!
//! Mapping decisions (the design is silent on these):
//! - Resource name: `container_name` when it is a DNS label, else the service name lowercased
//!   with `_` and `.` turned into `-` (a warning says when the name changed).
//! - Top-level networks and volumes become `Network` and `Volume` resources named
//!   `<project>-<key>` ([`objects`](super::objects) has the rules; external ones are referenced
//!   by their Docker name). A service without `networks` joins the project's `default`
//!   network, as under Compose; one network (without a fixed address) is written as
//!   `network` + `networkAliases`, several as the `networks` list, each with its aliases and
//!   `ipv4_address`. Every service gets its service name as an alias on each of its networks,
//!   so services still resolve each other by name.
//! - Services whose profiles are all inactive are left out ([`profiles`](super::profiles));
//!   `secrets` and `configs` become `files` ([`secrets`](super::secrets)); `extends` and
//!   `include` were resolved on the tree before ([`load`](super::load)).
//! - Compose's default `restart: "no"` is `restartPolicy: Never`; `always` and
//!   `unless-stopped` are both `Always` (dockwright runs it as Docker's `unless-stopped`).
//! - Compose pulls only missing images, so `imagePullPolicy` is `IfNotPresent` unless
//!   `pull_policy` says otherwise (dockwright's own default would pull `:latest` every time).
//! - A bare container port (`"80"`) is published on a random host port by Compose; it becomes
//!   `hostIP: 0.0.0.0` without `hostPort`, which dockwright publishes on a random port too.
//! - An anonymous volume becomes the named volume `<project>_<resource>_<target path>`, so its
//!   data survives a recreate as under Compose (warned: all replicas share it).
//! - Host paths (bind-mount sources, build contexts, file sources) are written relative to the
//!   output directory when the caller gives it (`convert -o DIR`), else absolute.
//! - `privileged`, `cap_add`, `cap_drop`, `devices`, `pid: host` and `ipc: host` are written
//!   as they are ([`security`](super::security)); the agent's policy refuses them unless it
//!   allows each. `deploy.update_config` becomes `strategy` ([`rollout`](super::rollout)).
//! - `build` becomes an `Image` of the service's resource name with `build` (context written
//!   as a host path, `dockerfile` relative to it as in Compose, `args`, `target`,
//!   `labels`) whose `ref` is the service's `image:` (else Compose v2's default name
//!   `<project>-<service>`); the `Container` names that `Image`. A build arg without a value
//!   (taken from the environment by Compose) is dropped with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::compose::{
    Build, ComposeFile, DependsOn, Healthcheck as ComposeHealthcheck, ListOrMap, Service, Words,
};
use super::dotenv::parse_env_file;
use super::mounts::{resolve_host_path, tmpfs_mount, volume, MountCx};
use super::objects::Objects;
use super::ports::{expose, port};
use super::profiles::Active;
use super::rollout::strategy;
use super::security::security;
use super::units::{cpu_quantity, parse_duration, size_quantity};
use super::warnings::Warnings;
use super::{shell, ConvertError};
use crate::api::{
    Container, ContainerSpec, Dependency, DependencyCondition, EnvVar, HealthCheck,
    NetworkAttachment, PullPolicy, ResourceLimits, Resources, RestartPolicy,
};

/// What a conversion needs besides the Compose model.
pub(crate) struct Context<'a> {
    /// The Compose file as named in errors.
    pub file: &'a str,
    /// Directory relative paths resolve against.
    pub base_dir: &'a Path,
    /// Variables for env passthrough and env files (process environment over `.env`).
    pub vars: &'a BTreeMap<String, String>,
    /// The Compose project name.
    pub project: &'a str,
    /// Where the manifests are written (host paths are written relative to it), if known.
    pub output_dir: Option<&'a Path>,
}

impl Context<'_> {
    /// A host path as a manifest names it: relative to the output directory when it is
    /// known (manifests resolve paths against their own file), else absolute.
    pub(super) fn manifest_path(&self, path: &Path) -> String {
        match self.output_dir {
            Some(dir) => {
                let rel = super::paths::relative_to(path, dir)
                    .to_string_lossy()
                    .into_owned();
                if rel == "." || rel.starts_with("../") || rel == ".." {
                    rel
                } else {
                    format!("./{rel}")
                }
            }
            None => path.to_string_lossy().into_owned(),
        }
    }

    pub(super) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConvertError {
        ConvertError::Invalid {
            file: self.file.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One converted service.
#[derive(Debug)]
pub(crate) struct Converted {
    /// The Compose service name.
    pub service: String,
    /// The `Container` resource.
    pub container: Container,
    /// The `Image` it builds, when the service has `build`.
    pub image: Option<crate::api::Image>,
}

/// Converts every service of `file` the active profiles enable, in file order.
pub(crate) fn convert(
    cx: &Context<'_>,
    file: &ComposeFile,
    active: &Active,
    objects: &Objects,
    warnings: &mut Warnings,
) -> Result<Vec<Converted>, ConvertError> {
    warnings.unsupported(None, "", &file.other.0);
    if file.services.0.is_empty() {
        return Err(cx.err("services", "no services to convert"));
    }
    let names = resource_names(cx, file, warnings)?;
    let volumes = super::objects::names(&objects.volumes);
    let networks = super::objects::names(&objects.networks);
    let disabled: BTreeMap<String, Vec<String>> = file
        .services
        .0
        .iter()
        .filter(|(_, s)| !active.enables(s))
        .map(|(n, s)| (n.clone(), s.profiles.clone()))
        .collect();
    if disabled.len() == file.services.0.len() {
        return Err(cx.err(
            "services",
            "no service is enabled by the active profiles; name one with --profile (or COMPOSE_PROFILES)",
        ));
    }
    let tables = Tables {
        names: &names,
        volumes: &volumes,
        networks: &networks,
        disabled: &disabled,
        file,
    };
    let mut out = Vec::new();
    for (service_name, service) in &file.services.0 {
        if disabled.contains_key(service_name) {
            tracing::debug!(service = %service_name, "left out: none of its profiles is active");
            continue;
        }
        let _span = tracing::debug_span!("convert", service = %service_name).entered();
        let sc = ServiceCx {
            cx,
            service: service_name,
            resource: names
                .get(service_name.as_str())
                .cloned()
                .unwrap_or_default(),
            prefix: format!("services.{service_name}"),
        };
        let (container, image) = convert_service(&sc, service, &tables, warnings)?;
        out.push(Converted {
            service: service_name.clone(),
            container,
            image,
        });
    }
    Ok(out)
}

/// Lookups shared by all services.
pub(super) struct Tables<'a> {
    /// Service name → resource name.
    pub(super) names: &'a BTreeMap<String, String>,
    /// Compose volume key → Docker volume name.
    pub(super) volumes: &'a BTreeMap<String, String>,
    /// Compose network key → Docker network name.
    pub(super) networks: &'a BTreeMap<String, String>,
    /// Services left out by the profiles → their profiles.
    pub(super) disabled: &'a BTreeMap<String, Vec<String>>,
    /// The whole file (secrets and configs).
    pub(super) file: &'a ComposeFile,
}

/// The service being converted.
pub(super) struct ServiceCx<'a> {
    pub(super) cx: &'a Context<'a>,
    pub(super) service: &'a str,
    pub(super) resource: String,
    /// `services.<name>`.
    pub(super) prefix: String,
}

impl ServiceCx<'_> {
    pub(super) fn field(&self, rest: &str) -> String {
        if rest.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{rest}", self.prefix)
        }
    }
    pub(super) fn err(&self, rest: &str, message: impl Into<String>) -> ConvertError {
        self.cx.err(self.field(rest), message)
    }
    pub(super) fn warn(&self, w: &mut Warnings, rest: &str, message: impl Into<String>) {
        w.push(Some(self.service), self.field(rest), message);
    }
    pub(super) fn unsupported(&self, w: &mut Warnings, rest: &str, keys: &[String]) {
        w.unsupported(Some(self.service), &self.field(rest), keys);
    }
}

/// A DNS-1123 label made from a Compose service name: lowercase, `_`/`.`/others → `-`,
/// trimmed to 63 characters. Empty when nothing usable is left.
pub fn dns_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut: String = trimmed.chars().take(63).collect();
    cut.trim_end_matches('-').to_string()
}

/// Service name → resource name, unique.
fn resource_names(
    cx: &Context<'_>,
    file: &ComposeFile,
    warnings: &mut Warnings,
) -> Result<BTreeMap<String, String>, ConvertError> {
    let mut names = BTreeMap::new();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for (service, def) in &file.services.0 {
        let field = format!("services.{service}");
        let derived = dns_label(service);
        let name = match def.container_name.as_deref() {
            Some(cn) if crate::source::parse::check_dns_label(cn).is_ok() => {
                warnings.push(
                    Some(service),
                    format!("{field}.container_name"),
                    format!(
                        "used as the resource name {cn:?}; dockwright names containers after the resource ({cn:?}, or \"{cn}-<i>\" with several replicas)"
                    ),
                );
                cn.to_string()
            }
            Some(cn) => {
                warnings.push(
                    Some(service),
                    format!("{field}.container_name"),
                    format!(
                        "{cn:?} is not a valid resource name (lowercase letters, digits, '-'); the resource is named {derived:?} and its container after it"
                    ),
                );
                derived
            }
            None => {
                if derived != *service && !derived.is_empty() {
                    warnings.push(
                        Some(service),
                        field.clone(),
                        format!("the resource is named {derived:?}: names must be DNS labels"),
                    );
                }
                derived
            }
        };
        if name.is_empty() {
            return Err(cx.err(
                field,
                "cannot make a resource name from this service name; set container_name to a DNS label",
            ));
        }
        if let Some(other) = taken.insert(name.clone(), service.clone()) {
            return Err(cx.err(
                field,
                format!("its resource name {name:?} is also the name of service {other:?}; set container_name on one of them"),
            ));
        }
        names.insert(service.clone(), name);
    }
    Ok(names)
}

fn convert_service(
    sc: &ServiceCx<'_>,
    s: &Service,
    t: &Tables<'_>,
    w: &mut Warnings,
) -> Result<(Container, Option<crate::api::Image>), ConvertError> {
    sc.unsupported(w, "", &s.other.0);
    let (image, image_pull_policy, built) = image(sc, s, w)?;
    let replicas = replicas(sc, s, w)?;
    let (network, network_aliases, networks) = network(sc, s, t, w)?;
    let mut ports = Vec::new();
    for (i, p) in s.ports.iter().enumerate() {
        ports.extend(port(sc, i, p, w)?);
    }
    for (i, e) in s.expose.iter().enumerate() {
        ports.extend(expose(sc, i, e)?);
    }
    if network.as_deref() == Some("host") && !ports.is_empty() {
        sc.warn(
            w,
            "ports",
            "dropped: with network_mode host the container uses the host's ports directly",
        );
        ports.clear();
    }
    if replicas > 1 {
        for p in &mut ports {
            if let Some(host_port) = p.host_port.take() {
                sc.warn(
                    w,
                    "ports",
                    format!("host port {host_port} cannot be shared by {replicas} replicas; each replica publishes container port {} on a random host port instead", p.container_port),
                );
                p.host_ip.get_or_insert_with(|| "0.0.0.0".to_string());
            }
        }
    }
    let mut volumes = Vec::new();
    let mx = MountCx { t, replicas };
    for (i, v) in s.volumes.iter().enumerate() {
        volumes.extend(volume(sc, i, v, &mx, w)?);
    }
    if let Some(tmpfs) = &s.tmpfs {
        for (i, entry) in tmpfs.0.iter().enumerate() {
            volumes.push(tmpfs_mount(sc, i, entry, w)?);
        }
    }
    let (restart_policy, max_restarts) = restart(sc, s, w)?;
    let security = security(sc, s, w)?;
    let strategy = strategy(
        sc,
        s.deploy.as_ref().and_then(|d| d.update_config.as_ref()),
        replicas,
        ports.iter().find_map(|p| p.host_port),
        w,
    )?;
    let spec = ContainerSpec {
        image,
        image_pull_policy,
        replicas,
        entrypoint: words(sc, "entrypoint", s.entrypoint.as_ref())?,
        command: words(sc, "command", s.command.as_ref())?,
        env: environment(sc, s, w)?,
        working_dir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        labels: labels(sc, s.labels.as_ref(), w),
        ports,
        volumes,
        network,
        network_aliases,
        networks,
        files: super::secrets::files(sc, s, t.file, w)?,
        restart_policy,
        max_restarts,
        healthcheck: healthcheck(sc, s.healthcheck.as_ref(), w)?,
        resources: resources(sc, s, w)?,
        depends_on: depends_on(sc, s.depends_on.as_ref(), t, w)?,
        stop_grace_period_seconds: s
            .stop_grace_period
            .as_deref()
            .map(|d| seconds(sc, "stop_grace_period", d, w))
            .transpose()?,
        privileged: security.privileged,
        host_pid: security.host_pid,
        host_ipc: security.host_ipc,
        capabilities: security.capabilities,
        devices: security.devices,
        strategy,
        ..ContainerSpec::default()
    };
    Ok((Container::new(&sc.resource, spec), built))
}

/// The container's `image` and pull policy, and the `Image` that builds it (with `build`).
fn image(
    sc: &ServiceCx<'_>,
    s: &Service,
    w: &mut Warnings,
) -> Result<(String, Option<PullPolicy>, Option<crate::api::Image>), ConvertError> {
    let policy = match s.pull_policy.as_deref() {
        None | Some("missing") | Some("if_not_present") => PullPolicy::IfNotPresent,
        Some("always") => PullPolicy::Always,
        Some("never") => PullPolicy::Never,
        Some("build") if s.build.is_some() => PullPolicy::IfNotPresent,
        Some("build") => {
            sc.warn(w, "pull_policy", "\"build\" without a build section: the image is never pulled (imagePullPolicy: Never)");
            PullPolicy::Never
        }
        Some(p) if p == "daily" || p == "weekly" || p.starts_with("every_") => {
            sc.warn(w, "pull_policy", format!("{p:?} is not supported; the image is pulled when missing (IfNotPresent)"));
            PullPolicy::IfNotPresent
        }
        Some(p) => {
            return Err(sc.err(
                "pull_policy",
                format!("unknown pull policy {p:?}; expected always, never, missing, if_not_present or build"),
            ))
        }
    };
    let Some(build) = &s.build else {
        return match &s.image {
            Some(image) if !image.trim().is_empty() => Ok((image.clone(), Some(policy), None)),
            _ => Err(sc.err("image", "missing: a service needs an image or a build")),
        };
    };
    let reference = s
        .image
        .clone()
        .unwrap_or_else(|| format!("{}-{}", sc.cx.project, sc.service));
    let mut spec = crate::api::ImageBuild::default();
    match build {
        Build::Context(c) => spec.context = sc.cx.manifest_path(&resolve_host_path(sc.cx, c)),
        Build::Long(l) => {
            sc.unsupported(w, "build", &l.other.0);
            spec.context = sc.cx.manifest_path(&resolve_host_path(
                sc.cx,
                l.context.as_deref().unwrap_or("."),
            ));
            spec.dockerfile = l.dockerfile.clone();
            spec.target = l.target.clone();
            for (k, v) in l.args.iter().flat_map(|a| a.0.iter()) {
                match v {
                    Some(v) => {
                        spec.args.insert(k.clone(), v.clone());
                    }
                    None => sc.warn(
                        w,
                        "build.args",
                        format!("{k} has no value (Compose takes it from the environment at build time); dropped: give it a value"),
                    ),
                }
            }
            for (k, v) in l.labels.iter().flat_map(|a| a.0.iter()) {
                spec.labels.insert(k.clone(), v.clone().unwrap_or_default());
            }
        }
    }
    if policy != PullPolicy::IfNotPresent {
        sc.warn(
            w,
            "pull_policy",
            "ignored with build: the image is built when its inputs change",
        );
    }
    let image = crate::api::Image::new(
        &sc.resource,
        crate::api::ImageSpec {
            reference,
            build: Some(spec),
            ..Default::default()
        },
    );
    Ok((sc.resource.clone(), None, Some(image)))
}

fn replicas(sc: &ServiceCx<'_>, s: &Service, w: &mut Warnings) -> Result<u32, ConvertError> {
    let deploy = s.deploy.as_ref();
    if let Some(d) = deploy {
        sc.unsupported(w, "deploy", &d.other.0);
        if let Some(r) = &d.resources {
            sc.unsupported(w, "deploy.resources", &r.other.0);
        }
    }
    let from_deploy = deploy.and_then(|d| d.replicas);
    if let (Some(_), Some(_)) = (from_deploy, s.scale) {
        return Err(sc.err(
            "scale",
            "both scale and deploy.replicas are set; keep only deploy.replicas",
        ));
    }
    match deploy.and_then(|d| d.mode.as_deref()) {
        None | Some("replicated") => {}
        Some("global") => sc.warn(
            w,
            "deploy.mode",
            "global (one per Swarm node) becomes one replica on this daemon",
        ),
        Some(m) => {
            return Err(sc.err(
                "deploy.mode",
                format!("unknown mode {m:?}; expected replicated or global"),
            ))
        }
    }
    Ok(from_deploy.or(s.scale).unwrap_or(1))
}

/// A container's networks as written: `(network, networkAliases, networks)`.
type Networks = (Option<String>, Vec<String>, Vec<NetworkAttachment>);

/// One network with its aliases as `network` and `networkAliases`; several (or one with a
/// fixed address) as `networks`.
fn network(
    sc: &ServiceCx<'_>,
    s: &Service,
    t: &Tables<'_>,
    w: &mut Warnings,
) -> Result<Networks, ConvertError> {
    if let Some(mode) = s.network_mode.as_deref() {
        if s.networks.is_some() {
            return Err(sc.err(
                "network_mode",
                "network_mode and networks cannot be combined",
            ));
        }
        match mode {
            "host" | "none" | "bridge" => {
                return Ok((Some(mode.to_string()), Vec::new(), Vec::new()))
            }
            m if m.starts_with("service:") || m.starts_with("container:") => {
                sc.warn(
                    w,
                    "network_mode",
                    format!("{m:?} (sharing another container's network) is not supported; the service joins the project network instead"),
                );
            }
            m => {
                return Ok((
                    Some(m.to_string()),
                    vec![sc.service.to_string()],
                    Vec::new(),
                ))
            }
        }
    }
    let attachments: Vec<(String, Option<&super::compose::NetworkAttachment>)> = match &s.networks {
        None => vec![("default".to_string(), None)],
        Some(n) if n.0.is_empty() => vec![("default".to_string(), None)],
        Some(n) => n.0.iter().map(|(k, a)| (k.clone(), a.as_ref())).collect(),
    };
    let mut out: Vec<NetworkAttachment> = Vec::new();
    for (key, attachment) in &attachments {
        let field = format!("networks.{key}");
        let Some(name) = t.networks.get(key) else {
            return Err(sc.err(
                &field,
                format!("undefined network {key:?}; declare it under the top-level networks"),
            ));
        };
        // Compose gives every container its service name as an alias on each network.
        let mut aliases = vec![sc.service.to_string()];
        let mut ipv4_address = None;
        if let Some(a) = attachment {
            sc.unsupported(w, &field, &a.other.0);
            for alias in &a.aliases {
                if !aliases.contains(alias) {
                    aliases.push(alias.clone());
                }
            }
            ipv4_address = a.ipv4_address.clone().filter(|a| !a.is_empty());
        }
        if out.iter().any(|n| n.name == *name) {
            return Err(sc.err(&field, format!("joins network {name:?} twice")));
        }
        out.push(NetworkAttachment {
            name: name.clone(),
            aliases,
            ipv4_address,
        });
    }
    if out.len() == 1 && out[0].ipv4_address.is_none() {
        let only = out.remove(0);
        return Ok((Some(only.name), only.aliases, Vec::new()));
    }
    Ok((None, Vec::new(), out))
}

/// `restartPolicy` and `maxRestarts`. `deploy.restart_policy` wins over `restart`, as in
/// Compose.
fn restart(
    sc: &ServiceCx<'_>,
    s: &Service,
    w: &mut Warnings,
) -> Result<(RestartPolicy, Option<u32>), ConvertError> {
    if let Some(rp) = s.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        sc.unsupported(w, "deploy.restart_policy", &rp.other.0);
        if s.restart.is_some() {
            sc.warn(
                w,
                "restart",
                "ignored: deploy.restart_policy is set and wins",
            );
        }
        let policy = match rp.condition.as_deref().unwrap_or("any") {
            "any" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure,
            "none" => RestartPolicy::Never,
            c => {
                return Err(sc.err(
                    "deploy.restart_policy.condition",
                    format!("unknown condition {c:?}; expected none, on-failure or any"),
                ))
            }
        };
        let max = match policy {
            RestartPolicy::OnFailure => rp.max_attempts.filter(|n| *n > 0),
            _ => {
                if rp.max_attempts.is_some_and(|n| n > 0) {
                    sc.warn(
                        w,
                        "deploy.restart_policy.max_attempts",
                        "only applies to condition on-failure; dropped",
                    );
                }
                None
            }
        };
        return Ok((policy, max));
    }
    let value = s.restart.as_deref().unwrap_or("no");
    Ok(match value {
        "no" | "" => (RestartPolicy::Never, None),
        "always" | "unless-stopped" => (RestartPolicy::Always, None),
        "on-failure" => (RestartPolicy::OnFailure, None),
        v => match v.strip_prefix("on-failure:").map(|n| n.trim().parse::<u32>()) {
            Some(Ok(n)) => (RestartPolicy::OnFailure, (n > 0).then_some(n)),
            _ => {
                return Err(sc.err(
                    "restart",
                    format!("unknown restart policy {v:?}; expected no, always, unless-stopped or on-failure[:N]"),
                ))
            }
        },
    })
}

fn words(
    sc: &ServiceCx<'_>,
    field: &str,
    w: Option<&Words>,
) -> Result<Option<Vec<String>>, ConvertError> {
    match w {
        None => Ok(None),
        Some(Words::List(l)) => Ok(Some(l.clone())),
        Some(Words::String(s)) => shell::split(s).map(Some).map_err(|m| sc.err(field, m)),
    }
}

/// Sets `name` in `env`, keeping the first position and the last value.
fn set_env(env: &mut Vec<EnvVar>, name: &str, value: String) {
    match env.iter_mut().find(|e| e.name == name) {
        Some(e) => e.value = value,
        None => env.push(EnvVar {
            name: name.to_string(),
            value,
            value_from: None,
        }),
    }
}

/// `env_file` entries first, then `environment` (which wins), as Compose merges them.
fn environment(
    sc: &ServiceCx<'_>,
    s: &Service,
    w: &mut Warnings,
) -> Result<Vec<EnvVar>, ConvertError> {
    let mut env = Vec::new();
    let passthrough = |name: &str, field: String, env: &mut Vec<EnvVar>, w: &mut Warnings| match sc
        .cx
        .vars
        .get(name)
    {
        Some(v) => set_env(env, name, v.clone()),
        None => w.push(
            Some(sc.service),
            field,
            format!("{name} is not set in the environment; left out, as Compose does"),
        ),
    };
    for (i, f) in s.env_file.iter().flat_map(|f| f.0.iter()).enumerate() {
        let field = sc.field(&format!("env_file[{i}]"));
        let path = resolve_host_path(sc.cx, &f.path);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !f.required => {
                tracing::debug!(path = %path.display(), "optional env file missing");
                continue;
            }
            Err(e) => {
                return Err(sc
                    .cx
                    .err(field, format!("cannot read {}: {e}", path.display())))
            }
        };
        let lines = parse_env_file(&text, sc.cx.vars).map_err(|(line, m)| {
            sc.cx
                .err(field.clone(), format!("{}:{line}: {m}", path.display()))
        })?;
        for line in lines {
            for var in &line.unset {
                w.push(
                    Some(sc.service),
                    field.clone(),
                    format!(
                        "{}:{}: variable {var} is not set; substituted an empty string",
                        path.display(),
                        line.line
                    ),
                );
            }
            match line.value {
                Some(v) => set_env(&mut env, &line.name, v),
                None => passthrough(&line.name, field.clone(), &mut env, w),
            }
        }
    }
    if let Some(ListOrMap(vars)) = &s.environment {
        for (name, value) in vars {
            let field = sc.field(&format!("environment.{name}"));
            if name.is_empty() || name.contains('\0') {
                return Err(sc.cx.err(field, "variable names must not be empty"));
            }
            match value {
                Some(v) => set_env(&mut env, name, v.clone()),
                None => passthrough(name, field, &mut env, w),
            }
        }
    }
    Ok(env)
}

fn labels(
    sc: &ServiceCx<'_>,
    labels: Option<&ListOrMap>,
    w: &mut Warnings,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in labels.iter().flat_map(|l| l.0.iter()) {
        if k.starts_with(crate::labels::PREFIX) {
            sc.warn(
                w,
                &format!("labels.{k}"),
                format!(
                    "keys under {:?} are reserved for dockwright; dropped",
                    crate::labels::PREFIX
                ),
            );
            continue;
        }
        out.insert(k.clone(), v.clone().unwrap_or_default());
    }
    out
}

fn seconds(
    sc: &ServiceCx<'_>,
    field: &str,
    value: &str,
    w: &mut Warnings,
) -> Result<u32, ConvertError> {
    let d = parse_duration(value).map_err(|m| sc.err(field, m))?;
    if d.rounded {
        sc.warn(
            w,
            field,
            format!(
                "{value:?} rounded up to {}s: dockwright counts whole seconds",
                d.seconds
            ),
        );
    }
    Ok(d.seconds)
}

fn healthcheck(
    sc: &ServiceCx<'_>,
    h: Option<&ComposeHealthcheck>,
    w: &mut Warnings,
) -> Result<Option<HealthCheck>, ConvertError> {
    let Some(h) = h else { return Ok(None) };
    sc.unsupported(w, "healthcheck", &h.other.0);
    if h.disable == Some(true)
        || matches!(&h.test, Some(Words::List(l)) if l.first().map(String::as_str) == Some("NONE"))
    {
        sc.warn(
            w,
            "healthcheck",
            "disabling the image's health check is not supported by dockwright; dropped",
        );
        return Ok(None);
    }
    let (command, shell) = match &h.test {
        None => {
            sc.warn(
                w,
                "healthcheck",
                "no test: dockwright cannot change the timings of the image's own check; dropped",
            );
            return Ok(None);
        }
        Some(Words::String(s)) => (None, Some(s.clone())),
        Some(Words::List(l)) => match l.split_first() {
            Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                (Some(rest.to_vec()), None)
            }
            Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => {
                (None, Some(rest.join(" ")))
            }
            _ => return Err(sc.err(
                "healthcheck.test",
                "a list must start with CMD or CMD-SHELL followed by the command (or be [NONE])",
            )),
        },
    };
    let dur =
        |field: &str, v: &Option<String>, w: &mut Warnings| -> Result<Option<u32>, ConvertError> {
            v.as_deref()
                .map(|d| seconds(sc, &format!("healthcheck.{field}"), d, w))
                .transpose()
                .map(|s| s.filter(|s| *s > 0))
        };
    Ok(Some(HealthCheck {
        command,
        shell,
        interval_seconds: dur("interval", &h.interval, w)?,
        timeout_seconds: dur("timeout", &h.timeout, w)?,
        retries: h.retries.filter(|r| *r > 0),
        start_period_seconds: dur("start_period", &h.start_period, w)?,
    }))
}

fn resources(
    sc: &ServiceCx<'_>,
    s: &Service,
    w: &mut Warnings,
) -> Result<Option<Resources>, ConvertError> {
    let limits = s
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    if let Some(l) = limits {
        sc.unsupported(w, "deploy.resources.limits", &l.other.0);
    }
    let pick = |deploy: Option<&String>,
                legacy: Option<&String>,
                dfield: &str,
                lfield: &str,
                w: &mut Warnings| {
        match (deploy, legacy) {
            (Some(d), Some(_)) => {
                sc.warn(w, lfield, format!("ignored: {dfield} is set and wins"));
                Some((d.clone(), dfield.to_string()))
            }
            (Some(d), None) => Some((d.clone(), dfield.to_string())),
            (None, Some(l)) => Some((l.clone(), lfield.to_string())),
            (None, None) => None,
        }
    };
    let cpu = pick(
        limits.and_then(|l| l.cpus.as_ref()),
        s.cpus.as_ref(),
        "deploy.resources.limits.cpus",
        "cpus",
        w,
    );
    let memory = pick(
        limits.and_then(|l| l.memory.as_ref()),
        s.mem_limit.as_ref(),
        "deploy.resources.limits.memory",
        "mem_limit",
        w,
    );
    let cpu = cpu
        .map(|(v, f)| cpu_quantity(&v).map_err(|m| sc.err(&f, m)))
        .transpose()?;
    let memory = memory
        .map(|(v, f)| size_quantity(&v).map_err(|m| sc.err(&f, m)))
        .transpose()?;
    Ok((cpu.is_some() || memory.is_some()).then_some(Resources {
        limits: ResourceLimits { cpu, memory },
    }))
}

fn depends_on(
    sc: &ServiceCx<'_>,
    d: Option<&DependsOn>,
    t: &Tables<'_>,
    w: &mut Warnings,
) -> Result<Vec<Dependency>, ConvertError> {
    let mut out: Vec<Dependency> = Vec::new();
    let mut seen = BTreeSet::new();
    for (service, entry) in d.iter().flat_map(|d| d.0.iter()) {
        let field = format!("depends_on.{service}");
        sc.unsupported(w, &field, &entry.other.0);
        if let Some(profiles) = t.disabled.get(service) {
            if entry.required == Some(false) {
                sc.warn(
                    w,
                    &field,
                    format!("dropped: {service:?} is not converted (none of its profiles {profiles:?} is active) and the dependency is not required"),
                );
                continue;
            }
            return Err(sc.err(
                &field,
                format!("{service:?} is not enabled by the active profiles (it has {profiles:?}); activate one with --profile or COMPOSE_PROFILES, or give both services a common profile"),
            ));
        }
        let Some(name) = t.names.get(service) else {
            return Err(sc.err(&field, format!("undefined service {service:?}")));
        };
        let condition = match entry.condition.as_deref().unwrap_or("service_started") {
            "service_started" => DependencyCondition::Started,
            "service_healthy" => DependencyCondition::Healthy,
            "service_completed_successfully" => DependencyCondition::Completed,
            c => {
                return Err(sc.err(
                    &format!("{field}.condition"),
                    format!("unknown condition {c:?}; expected service_started, service_healthy or service_completed_successfully"),
                ))
            }
        };
        if seen.insert(name.clone()) {
            out.push(Dependency {
                name: name.clone(),
                condition,
            });
        }
    }
    Ok(out)
}
