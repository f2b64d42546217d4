//! Registry credentials: the Docker config format (`auths` entries with a base64 `auth` or
//! `username`/`password`, identity tokens), where the default file lives, and the lookup the
//! Docker adapter makes for each pull, push, build and registry digest check.
//!
//! Secrets never leave this module except inside the request header bollard builds: `Debug`
//! is redacted, and errors name the file, the registry and the JSON position — never the
//! text (serde's own messages may quote values, so they are not passed on). Files are read at
//! each lookup, so a `docker login` or a rotated secret takes effect without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;

use crate::desired::RegistryAuth;
use crate::reference::Reference;

/// Registry key of Docker Hub, whatever spelling a config file uses.
const DOCKER_HUB: &str = "docker.io";
/// Server address Docker Hub credentials are sent with.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// A secret string; `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry. Cloned into each request; printed only redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// Registry key (`127.0.0.1:5001`, `docker.io`).
    pub registry: String,
    /// User name (not secret).
    pub username: Option<String>,
    password: Option<Secret>,
    identity_token: Option<Secret>,
    registry_token: Option<Secret>,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl RegistryCredentials {
    /// Credentials from a user name and password.
    pub fn basic(registry: &str, username: &str, password: &str) -> Self {
        Self {
            registry: registry_key(registry),
            username: Some(username.to_string()),
            password: Some(Secret(password.to_string())),
            identity_token: None,
            registry_token: None,
        }
    }

    /// The bollard form sent as `X-Registry-Auth` / `X-Registry-Config`.
    pub(crate) fn to_docker(&self) -> bollard::auth::DockerCredentials {
        let server = if self.registry == DOCKER_HUB {
            DOCKER_HUB_SERVER.to_string()
        } else {
            self.registry.clone()
        };
        bollard::auth::DockerCredentials {
            username: self.username.clone(),
            password: self.password.as_ref().map(|s| s.0.clone()),
            serveraddress: Some(server),
            identitytoken: self.identity_token.as_ref().map(|s| s.0.clone()),
            registrytoken: self.registry_token.as_ref().map(|s| s.0.clone()),
            ..Default::default()
        }
    }

    /// True when `text` contains any secret of these credentials (for tests and for callers
    /// that must scrub foreign text before showing it).
    pub fn appears_in(&self, text: &str) -> bool {
        [&self.password, &self.identity_token, &self.registry_token]
            .into_iter()
            .flatten()
            .any(|s| !s.0.is_empty() && text.contains(&s.0))
    }
}

/// Why credentials could not be read. Never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("registry credentials {}: {message}", path.display())]
pub struct CredentialsError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, without any of the file's text.
    pub message: String,
}

/// The `auths` of a Docker config file, by registry key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerConfig {
    auths: BTreeMap<String, RegistryCredentials>,
    /// Registries configured with `credHelpers`/`credsStore` (not supported; warned about).
    helpers: Vec<String>,
}

impl DockerConfig {
    /// Parses a Docker config file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CredentialsError> {
        let fail = |message: String| CredentialsError {
            path: path.to_path_buf(),
            message,
        };
        let root: Value = serde_json::from_str(text).map_err(|e| {
            fail(format!(
                "not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let Value::Object(root) = root else {
            return Err(fail("expected a JSON object".into()));
        };
        let mut config = DockerConfig::default();
        if let Some(helpers) = root.get("credHelpers").and_then(Value::as_object) {
            config.helpers = helpers.keys().map(|k| registry_key(k)).collect();
        }
        if root
            .get("credsStore")
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        {
            config.helpers.push("*".into());
        }
        let auths = match root.get("auths") {
            None | Some(Value::Null) => return Ok(config),
            Some(Value::Object(auths)) => auths,
            Some(_) => return Err(fail("\"auths\" must be an object".into())),
        };
        for (server, entry) in auths {
            let key = registry_key(server);
            let Value::Object(entry) = entry else {
                return Err(fail(format!("auths.{server:?} must be an object")));
            };
            let text_field = |name: &str| -> Result<Option<String>, CredentialsError> {
                match entry.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.is_empty() => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(fail(format!("auths.{server:?}.{name} must be a string"))),
                }
            };
            let mut username = text_field("username")?;
            let mut password = text_field("password")?;
            if let Some(auth) = text_field("auth")? {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| fail(format!("auths.{server:?}.auth is not valid base64")))?;
                let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                    fail(format!(
                        "auths.{server:?}.auth does not decode to \"user:password\""
                    ))
                })?;
                username = Some(user.to_string());
                password = Some(pass.to_string());
            }
            let credentials = RegistryCredentials {
                registry: key.clone(),
                username,
                password: password.map(Secret),
                identity_token: text_field("identitytoken")?.map(Secret),
                registry_token: text_field("registrytoken")?.map(Secret),
            };
            let usable = credentials.password.is_some()
                || credentials.identity_token.is_some()
                || credentials.registry_token.is_some();
            if usable {
                config.auths.insert(key, credentials);
            }
        }
        Ok(config)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|e| CredentialsError {
            path: path.to_path_buf(),
            message: match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".into(),
                _ => format!("cannot read: {e}"),
            },
        })?;
        Self::parse(&text, path)
    }

    /// Credentials for a registry key.
    pub fn get(&self, registry: &str) -> Option<&RegistryCredentials> {
        self.auths.get(&registry_key(registry))
    }

    /// Every entry.
    pub fn entries(&self) -> impl Iterator<Item = &RegistryCredentials> {
        self.auths.values()
    }

    fn uses_helper_for(&self, registry: &str) -> bool {
        self.helpers.iter().any(|h| h == "*" || h == registry)
    }
}

/// The registry key of a config entry or registry address: scheme and path dropped, Docker
/// Hub's aliases folded into `docker.io`, lowercased.
pub fn registry_key(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// The registry key a reference is pulled from or pushed to.
pub fn registry_of(reference: &str) -> String {
    match Reference::parse(reference) {
        Ok(r) => registry_key(&r.domain),
        Err(_) => DOCKER_HUB.to_string(),
    }
}

/// Where credentials for a registry come from. The Docker config file is one; Kubernetes
/// mode adds `imagePullSecrets` as another (a [`DockerConfig`] parsed from the secret).
pub trait CredentialSource: Send + Sync + fmt::Debug {
    /// The whole set of entries, read now.
    fn config(&self) -> Result<DockerConfig, CredentialsError>;
}

/// A Docker config file read at each lookup. `required`: a missing file is an error (a
/// `registryAuth.secretFile`) rather than "no credentials" (the default config).
#[derive(Clone, Debug)]
pub struct ConfigFile {
    /// The file.
    pub path: PathBuf,
    /// Whether a missing file is an error.
    pub required: bool,
}

impl CredentialSource for ConfigFile {
    fn config(&self) -> Result<DockerConfig, CredentialsError> {
        if !self.required && !self.path.exists() {
            return Ok(DockerConfig::default());
        }
        DockerConfig::load(&self.path)
    }
}

impl CredentialSource for DockerConfig {
    fn config(&self) -> Result<DockerConfig, CredentialsError> {
        Ok(self.clone())
    }
}

/// The default Docker config file: `explicit` (a file, or a directory holding
/// `config.json`), else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        });
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// The lookup the runner makes: an image's own source first (its `registryAuth`), then the
/// default Docker config. Owned by the runner; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    default: Option<Arc<dyn CredentialSource>>,
    scoped: ScopedCredentials,
}

/// Credentials that apply to one resource's actions only, replacing the default source for
/// them (Kubernetes `imagePullSecrets`, read from the resource's own namespace). Shared: the
/// source that reads them replaces the whole map, the runner reads it per action.
#[derive(Clone, Debug, Default)]
pub struct ScopedCredentials(
    Arc<std::sync::RwLock<BTreeMap<crate::desired::ResourceKey, Arc<dyn CredentialSource>>>>,
);

impl ScopedCredentials {
    /// Replaces every resource's source.
    pub fn replace(
        &self,
        sources: BTreeMap<crate::desired::ResourceKey, Arc<dyn CredentialSource>>,
    ) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = sources;
    }

    fn get(&self, key: &crate::desired::ResourceKey) -> Option<Arc<dyn CredentialSource>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }
}

impl Credentials {
    /// No default credentials (image sources still apply).
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// These credentials with per-resource sources from `scoped` (see [`Self::for_resource`]).
    pub fn with_scoped(mut self, scoped: ScopedCredentials) -> Self {
        self.scoped = scoped;
        self
    }

    /// The credentials for `resource`'s actions: its scoped source in place of the default
    /// when it has one, else these.
    pub fn for_resource(&self, resource: &crate::desired::ResourceKey) -> Credentials {
        match self.scoped.get(resource) {
            Some(source) => Self::with_default(source),
            None => self.clone(),
        }
    }

    /// The standard Docker config (see [`default_config_path`]); a missing file means none.
    pub fn docker_config(explicit: Option<&Path>) -> Self {
        let default = default_config_path(explicit).map(|path| {
            let required = explicit.is_some();
            Arc::new(ConfigFile { path, required }) as Arc<dyn CredentialSource>
        });
        Self {
            default,
            scoped: ScopedCredentials::default(),
        }
    }

    /// A custom default source.
    pub fn with_default(source: Arc<dyn CredentialSource>) -> Self {
        Self {
            default: Some(source),
            scoped: ScopedCredentials::default(),
        }
    }

    /// The source behind an image's `registryAuth`.
    pub fn source_for(auth: &RegistryAuth) -> Arc<dyn CredentialSource> {
        match auth {
            RegistryAuth::SecretFile(path) => Arc::new(ConfigFile {
                path: path.clone(),
                required: true,
            }),
        }
    }

    /// Credentials for pulling or pushing `reference`, or checking its digest: the image's
    /// own source when it has an entry for the registry, else the default config.
    pub fn for_reference(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<Option<RegistryCredentials>, CredentialsError> {
        let registry = registry_of(reference);
        if let Some(auth) = auth {
            if let Some(found) = Self::source_for(auth).config()?.get(&registry) {
                return Ok(Some(found.clone()));
            }
        }
        let Some(default) = &self.default else {
            return Ok(None);
        };
        let config = default.config()?;
        let found = config.get(&registry).cloned();
        if found.is_none() && config.uses_helper_for(&registry) {
            tracing::warn!(
                registry = %registry,
                "the Docker config names a credential helper for this registry; helpers are not supported, so the request is anonymous"
            );
        }
        Ok(found)
    }

    /// Every credential known, by registry key, for a build (its `FROM` images may come from
    /// any registry): the default config's entries, overridden by the image's own.
    pub fn for_build(
        &self,
        auth: Option<&RegistryAuth>,
    ) -> Result<BTreeMap<String, RegistryCredentials>, CredentialsError> {
        let mut all = BTreeMap::new();
        if let Some(default) = &self.default {
            for c in default.config()?.entries() {
                all.insert(c.registry.clone(), c.clone());
            }
        }
        if let Some(auth) = auth {
            for c in Self::source_for(auth).config()?.entries() {
                all.insert(c.registry.clone(), c.clone());
            }
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn auth_and_username_password_entries_parse() {
        let text = format!(
            r#"{{"auths": {{
                "127.0.0.1:5001": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"username": "hub", "password": "hubpw"}},
                "http://reg.example.com/v2/": {{"identitytoken": "tok"}},
                "empty.example.com": {{}}
            }}}}"#,
            b64("dw:pa:ss")
        );
        let config = DockerConfig::parse(&text, Path::new("c.json")).unwrap();
        let local = config.get("127.0.0.1:5001").unwrap();
        assert_eq!(local.username.as_deref(), Some("dw"));
        let docker = local.to_docker();
        assert_eq!(docker.password.as_deref(), Some("pa:ss"));
        assert_eq!(docker.serveraddress.as_deref(), Some("127.0.0.1:5001"));
        let hub = config.get("docker.io").unwrap().to_docker();
        assert_eq!(hub.username.as_deref(), Some("hub"));
        assert_eq!(hub.serveraddress.as_deref(), Some(DOCKER_HUB_SERVER));
        assert!(config.get("reg.example.com").is_some());
        assert!(config.get("empty.example.com").is_none());
    }

    #[test]
    fn nothing_secret_is_printed_or_put_in_errors() {
        let text = format!(
            r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
            b64("u:hunter2")
        );
        let config = DockerConfig::parse(&text, Path::new("c.json")).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(config.get("r.io").unwrap().appears_in("x hunter2 y"));
        for bad in [
            r#"{"auths": {"r.io": {"password": ["hunter2"]}}}"#.to_string(),
            r#"{"auths": {"r.io": {"auth": "hunter2!!"}}}"#.to_string(),
            format!(
                r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
                b64("hunter2")
            ),
            r#"{"auths": {"r.io": {"auth": "hunter2"#.to_string(),
            r#"["hunter2"]"#.to_string(),
        ] {
            let err = DockerConfig::parse(&bad, Path::new("c.json")).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
            assert!(err.to_string().contains("c.json"), "{err}");
        }
    }

    #[test]
    fn registry_keys_fold_schemes_paths_and_hub_aliases() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("registry-1.docker.io"), "docker.io");
        assert_eq!(registry_key("http://127.0.0.1:5001/v2/"), "127.0.0.1:5001");
        assert_eq!(registry_key("Reg.Example.com"), "reg.example.com");
        assert_eq!(registry_of("127.0.0.1:5001/a/b:1"), "127.0.0.1:5001");
        assert_eq!(registry_of("busybox"), "docker.io");
    }

    #[test]
    fn image_sources_win_over_the_default_config() {
        let dir = tempfile::tempdir().unwrap();
        let default = dir.path().join("default.json");
        let own = dir.path().join("own.json");
        std::fs::write(
            &default,
            format!(
                r#"{{"auths": {{"r.io": {{"auth": "{}"}}, "o.io": {{"auth": "{}"}}}}}}"#,
                b64("d:1"),
                b64("d:2")
            ),
        )
        .unwrap();
        std::fs::write(
            &own,
            format!(r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#, b64("own:3")),
        )
        .unwrap();
        let creds = Credentials::docker_config(Some(&default));
        let auth = RegistryAuth::SecretFile(own.clone());
        let user = |c: Option<RegistryCredentials>| c.and_then(|c| c.username);
        assert_eq!(
            user(creds.for_reference("r.io/a:1", Some(&auth)).unwrap()).as_deref(),
            Some("own")
        );
        assert_eq!(
            user(creds.for_reference("o.io/a:1", Some(&auth)).unwrap()).as_deref(),
            Some("d")
        );
        assert_eq!(
            user(creds.for_reference("r.io/a:1", None).unwrap()).as_deref(),
            Some("d")
        );
        assert!(creds.for_reference("x.io/a:1", None).unwrap().is_none());
        let build = creds.for_build(Some(&auth)).unwrap();
        assert_eq!(build["r.io"].username.as_deref(), Some("own"));
        assert_eq!(build["o.io"].username.as_deref(), Some("d"));
        // A missing secret file is an error; a missing default config is not.
        let gone = RegistryAuth::SecretFile(dir.path().join("gone.json"));
        assert!(creds.for_reference("r.io/a:1", Some(&gone)).is_err());
        let none = Credentials::with_default(Arc::new(ConfigFile {
            path: dir.path().join("nope"),
            required: false,
        }));
        assert!(none.for_reference("r.io/a:1", None).unwrap().is_none());
    }
}
