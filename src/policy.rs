//! The agent's safe-by-default policy: what a `Container` may ask of the daemon beyond an
//! unprivileged, namespaced container. Loaded from the operator's YAML file (`--policy`; in
//! Kubernetes mode the chart's ConfigMap), never from a manifest or custom resource.
//!
//! Where the check lives: [`check`] is a pure function over a [`DesiredState`] and a
//! [`Policy`] (plus a [`PathResolver`] for symlinks), run by the front ends through a
//! [`Gate`] after the source built the desired state and before planning
//! ([`crate::converge`] for `apply`/`diff`, [`crate::agent`] for the agent in both modes).
//! The gate also seals secret environment values ([`crate::secrets`]). A refused resource is
//! taken out of the desired state handed to the planner and its actions are then dropped
//! from the plan ([`Admission::hold`]): its containers, if any already run, are neither
//! changed nor pruned — a refusal blocks, it never removes — and it is reported as
//! [`Blocked`] with the file, resource, field and the policy setting that would allow it.
//! Every other resource converges as usual (a container that `dependsOn` a refused one
//! waits, blocked, like on any undeclared dependency).
//!
//! Refused by default: `privileged`, `network: host`, `hostPID`, `hostIPC`, any added
//! capability (dropping is always fine), any device, any bind mount whose source (symlinks
//! resolved) is not under an allowed prefix (none by default), and the Docker socket itself
//! — a bind whose resolved source is the daemon's socket, or a directory holding it — even
//! when its directory is an allowed prefix, unless `allowDockerSocket`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::desired::{DesiredContainer, DesiredState, Mount, Origin, ResourceKey};
use crate::plan::{Blocked, Plan};
use crate::secrets::SecretKey;
use crate::source::normalize::canonical_capability;

/// Largest policy file accepted.
const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// The operator's policy. Every field loosens the safe default; the empty file is the
/// default. Field names are the policy file's (camelCase).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Allow `privileged: true`.
    #[serde(default)]
    pub allow_privileged: bool,
    /// Allow `network: host`.
    #[serde(default)]
    pub allow_host_network: bool,
    /// Allow `hostPID: true`.
    #[serde(default, rename = "allowHostPID")]
    pub allow_host_pid: bool,
    /// Allow `hostIPC: true`.
    #[serde(default, rename = "allowHostIPC")]
    pub allow_host_ipc: bool,
    /// Capabilities `capabilities.add` may name (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`
    /// allows any, including `add: [ALL]`).
    #[serde(default)]
    pub allowed_capabilities: Vec<String>,
    /// Host device paths (or directories of them, e.g. `/dev/dri`) `devices` may map.
    #[serde(default)]
    pub allowed_devices: Vec<String>,
    /// Host directories under which bind mounts may have their source (after symlinks are
    /// resolved), compared by path component: `/srv/data` allows `/srv/data/x`, not
    /// `/srv/database`.
    #[serde(default)]
    pub allowed_bind_prefixes: Vec<String>,
    /// Allow a bind mount of the Docker socket file itself (still needs an allowed prefix
    /// for anything else; a directory holding the socket stays refused).
    #[serde(default)]
    pub allow_docker_socket: bool,
    /// Host paths of the daemon's socket (default: the `unix://` path of `DOCKER_HOST`,
    /// `/var/run/docker.sock` and `/run/docker.sock`). Set it in Kubernetes mode when the
    /// node's socket lives elsewhere: the agent sees the socket at its own mount path.
    #[serde(default)]
    pub docker_socket_paths: Vec<String>,
}

/// The policy file could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[error("policy {path}: {message}")]
pub struct PolicyError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Policy {
    /// Reads and validates a policy file. An empty file (or `{}`) is the safe default.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let fail = |message: String| PolicyError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Self::parse(&text).map_err(fail)
    }

    /// Parses and validates policy text (see [`Policy::load`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(format!("larger than {MAX_POLICY_BYTES} bytes"));
        }
        // YAML 1.2 booleans, as in manifests: `yes` is a string here, not a permission.
        let options = serde_saphyr::options! { strict_booleans: true };
        let value: serde_json::Value = serde_saphyr::from_str_with_options(text, options)
            .map_err(|e| format!("invalid YAML: {e}"))?;
        let value = if value.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            value
        };
        let mut policy: Policy = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.inner())
        })?;
        policy.validate()?;
        Ok(policy)
    }

    fn validate(&mut self) -> Result<(), String> {
        for (i, cap) in self.allowed_capabilities.iter_mut().enumerate() {
            *cap = canonical_capability(cap).ok_or_else(|| {
                format!(
                    "allowedCapabilities[{i}]: {cap:?} is not a capability name such as NET_ADMIN"
                )
            })?;
        }
        for (field, list) in [
            ("allowedBindPrefixes", &mut self.allowed_bind_prefixes),
            ("allowedDevices", &mut self.allowed_devices),
            ("dockerSocketPaths", &mut self.docker_socket_paths),
        ] {
            for (i, p) in list.iter_mut().enumerate() {
                if !p.starts_with('/') {
                    return Err(format!("{field}[{i}]: {p:?} must be an absolute path"));
                }
                *p = lexical(Path::new(p)).to_string_lossy().into_owned();
            }
        }
        Ok(())
    }

    /// The daemon socket paths to protect: the policy's, else `DOCKER_HOST`'s unix path and
    /// the two usual ones.
    pub fn socket_paths(&self) -> Vec<PathBuf> {
        if !self.docker_socket_paths.is_empty() {
            return self.docker_socket_paths.iter().map(PathBuf::from).collect();
        }
        let from_env = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from));
        // Both spellings: in Kubernetes mode paths are compared lexically, and /var/run is a
        // symlink to /run on most hosts.
        let mut paths = vec![
            PathBuf::from("/var/run/docker.sock"),
            PathBuf::from("/run/docker.sock"),
        ];
        if let Some(p) = from_env {
            paths.insert(0, p);
        }
        paths
    }
}

/// How host paths are resolved before the prefix and socket checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathResolver {
    /// Follow symlinks on this machine's filesystem (the file mode: the agent runs on the
    /// host). A path that cannot be resolved is judged as written.
    #[default]
    HostFs,
    /// Lexical only (`.` and `..` folded): for an agent that does not share the host's
    /// filesystem (Kubernetes mode, where it cannot follow the node's symlinks).
    Lexical,
}

impl PathResolver {
    /// The path as the checks see it.
    pub fn resolve(self, path: &Path) -> PathBuf {
        match self {
            PathResolver::HostFs => std::fs::canonicalize(path).unwrap_or_else(|_| lexical(path)),
            PathResolver::Lexical => lexical(path),
        }
    }
}

/// `path` with `.` dropped and `..` applied (never above `/`).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// One thing a resource asks for that the policy refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The resource.
    pub resource: ResourceKey,
    /// Where it was declared (file and document).
    pub location: String,
    /// The spec field, e.g. `spec.volumes[0].source`.
    pub field: String,
    /// What is refused.
    pub message: String,
    /// The policy setting that would allow it, e.g. `allowPrivileged: true`.
    pub setting: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = crate::source::resource_label(
            self.resource.kind.as_str(),
            &self.resource.namespace,
            &self.resource.name,
        );
        write!(
            f,
            "{}: {label}: {}: {} is refused by the agent's policy; to allow it, set `{}` in the policy file",
            self.location, self.field, self.message, self.setting
        )
    }
}

/// Every refusal of every container of `desired` under `policy`. Pure but for `paths`,
/// which resolves bind sources and socket paths.
pub fn check(desired: &DesiredState, policy: &Policy, paths: PathResolver) -> Vec<Refusal> {
    let sockets: Vec<PathBuf> = policy
        .socket_paths()
        .iter()
        .flat_map(|p| {
            let resolved = paths.resolve(p);
            let written = lexical(p);
            [resolved, written]
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    desired
        .containers
        .values()
        .flat_map(|c| check_container(c, policy, paths, &sockets))
        .collect()
}

fn check_container(
    c: &DesiredContainer,
    policy: &Policy,
    paths: PathResolver,
    sockets: &[PathBuf],
) -> Vec<Refusal> {
    let location = match &c.origin {
        Origin::File { .. } => c.origin.to_string(),
        Origin::Kubernetes { .. } => format!("{}/{} ({})", c.key.namespace, c.key.name, c.origin),
    };
    let mut out = Vec::new();
    let mut refuse = |field: String, message: String, setting: String| {
        out.push(Refusal {
            resource: c.key.clone(),
            location: location.clone(),
            field,
            message,
            setting,
        })
    };
    let config = &c.config;
    if config.privileged && !policy.allow_privileged {
        refuse(
            "spec.privileged".into(),
            "a privileged container".into(),
            "allowPrivileged: true".into(),
        );
    }
    if config.network == "host" && !policy.allow_host_network {
        refuse(
            "spec.network".into(),
            "the host's network namespace".into(),
            "allowHostNetwork: true".into(),
        );
    }
    if config.host_pid && !policy.allow_host_pid {
        refuse(
            "spec.hostPID".into(),
            "the host's PID namespace".into(),
            "allowHostPID: true".into(),
        );
    }
    if config.host_ipc && !policy.allow_host_ipc {
        refuse(
            "spec.hostIPC".into(),
            "the host's IPC namespace".into(),
            "allowHostIPC: true".into(),
        );
    }
    let all_caps = policy.allowed_capabilities.iter().any(|c| c == "ALL");
    for cap in &config.cap_add {
        if !all_caps && !policy.allowed_capabilities.contains(cap) {
            refuse(
                "spec.capabilities.add".into(),
                format!("adding capability {cap}"),
                format!("allowedCapabilities: [{cap}]"),
            );
        }
    }
    for (i, d) in config.devices.iter().enumerate() {
        let host = paths.resolve(Path::new(&d.host_path));
        let allowed = policy.allowed_devices.iter().any(|p| host.starts_with(p));
        if !allowed {
            refuse(
                format!("spec.devices[{i}].hostPath"),
                format!("host device {}", describe(&d.host_path, &host)),
                format!("allowedDevices: [{}]", host.display()),
            );
        }
    }
    for (i, m) in config.mounts.iter().enumerate() {
        let Mount::Bind { source, .. } = m else {
            continue;
        };
        let field = format!("spec.volumes[{i}].source");
        let resolved = paths.resolve(Path::new(source));
        if let Some(socket) = sockets.iter().find(|s| s.starts_with(&resolved)) {
            let exact = &resolved == socket;
            if !(exact && policy.allow_docker_socket) {
                let (message, setting) = if exact {
                    (
                        format!(
                            "bind mount of the Docker socket {} (root on the host)",
                            describe(source, &resolved)
                        ),
                        "allowDockerSocket: true".to_string(),
                    )
                } else {
                    (
                        format!(
                            "bind mount of {}, which holds the Docker socket {} (root on the host)",
                            describe(source, &resolved),
                            socket.display()
                        ),
                        "nothing: mount the socket file itself with allowDockerSocket: true"
                            .to_string(),
                    )
                };
                refuse(field, message, setting);
                continue;
            }
            continue;
        }
        if !policy
            .allowed_bind_prefixes
            .iter()
            .any(|p| resolved.starts_with(p))
        {
            refuse(
                field,
                format!("bind mount of host path {}", describe(source, &resolved)),
                format!("allowedBindPrefixes: [{}]", resolved.display()),
            );
        }
    }
    out
}

/// `/a` or `/a (resolves to /b)`.
fn describe(written: &str, resolved: &Path) -> String {
    if Path::new(written) == resolved {
        written.to_string()
    } else {
        format!("{written} (resolves to {})", resolved.display())
    }
}

/// What a front end applies to a desired state before planning: the policy, the path
/// resolver, and the owner's key for sealing secret values. The default is the safe policy
/// with no key (resources with secret values are then held back, never run unsealed).
#[derive(Clone, Debug, Default)]
pub struct Gate {
    /// The operator's policy.
    pub policy: Arc<Policy>,
    /// How bind sources and device paths are resolved.
    pub paths: PathResolver,
    /// The owner's secret key ([`SecretKey::load_or_create`]).
    pub secret_key: Option<SecretKey>,
}

impl Gate {
    /// A gate with `policy` and the owner's key.
    pub fn new(policy: Policy, secret_key: Option<SecretKey>) -> Self {
        Self {
            policy: Arc::new(policy),
            paths: PathResolver::HostFs,
            secret_key,
        }
    }

    /// The admitted, sealed desired state and the resources held back, with why.
    pub fn admit(&self, desired: &DesiredState) -> Admission {
        let mut admitted = desired.clone();
        let mut held: Vec<Blocked> = Vec::new();
        fn hold(held: &mut Vec<Blocked>, key: &ResourceKey, message: String) {
            match held.iter_mut().find(|b| &b.resource == key) {
                Some(b) => {
                    b.message.push_str("; ");
                    b.message.push_str(&message);
                }
                None => held.push(Blocked {
                    resource: key.clone(),
                    message,
                }),
            }
        }
        for refusal in check(desired, &self.policy, self.paths) {
            tracing::warn!(resource = %refusal.resource, field = %refusal.field, setting = %refusal.setting, "refused by policy");
            hold(&mut held, &refusal.resource, refusal.to_string());
        }
        for b in &held {
            admitted.containers.remove(&b.resource);
        }
        for (key, message) in crate::secrets::seal(&mut admitted, self.secret_key.as_ref()) {
            hold(&mut held, &key, message);
            admitted.containers.remove(&key);
        }
        Admission {
            desired: admitted,
            held,
        }
    }
}

/// A desired state after the [`Gate`].
#[derive(Clone, Debug, Default)]
pub struct Admission {
    /// What may be planned: admitted resources, secrets sealed.
    pub desired: DesiredState,
    /// Resources held back (refused by policy, or secrets that cannot be sealed).
    pub held: Vec<Blocked>,
}

impl Admission {
    /// `plan` (made from [`Admission::desired`]) without any action on a held resource —
    /// their containers are neither changed nor pruned — plus a blocked entry for each.
    pub fn hold(&self, plan: Plan) -> Plan {
        crate::plan::hold(plan, &self.held)
    }
}

#[cfg(test)]
mod tests;
