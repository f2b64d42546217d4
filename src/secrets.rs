//! Secret environment values (`env[].valueFrom`): the redacted value type, the per-owner key
//! that turns a value into a digest fit for a label, and the hook through which Kubernetes
//! mode resolves `secretKeyRef`s. No Docker, no planning: the front ends seal a desired
//! state (through [`crate::policy::Gate`]) before the planner hashes it.
//!
//! Why a keyed digest: the spec label must change when a secret changes (so the container is
//! recreated), but labels are seen far more widely than a container's environment — in
//! `docker ps --format`, the events stream, monitoring exporters that turn labels into metric
//! labels, `dockwright diff` and Kubernetes status. A plain SHA-256 of a low-entropy secret (a
//! password) can be brute-forced offline from the label; an HMAC-SHA256 under a random
//! 256-bit key cannot, without the key. The key is per owner, created on first use in the
//! owner's state directory (`$XDG_STATE_HOME/dockwright/<owner>/secret.key`, mode 0600).
//! Losing it changes every digest once: containers with secrets are recreated one time.
//!
//! What `docker inspect` still shows: the container's own `Env` necessarily holds the value
//! (that is how the process receives it); whoever can inspect containers can read it. That
//! is the Docker daemon's access control, not dockwright's: anyone with the socket is root.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::api::SecretKeySelector;
use crate::desired::{DesiredState, ResourceKey};

/// A secret value. `Debug` and `Display` print `<redacted>`; the only way to the bytes is
/// [`SecretValue::expose`], which the Docker create body and the digest use.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct SecretValue(Arc<str>);

impl SecretValue {
    /// Wraps a value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The value itself. Call only to hand it to the daemon or the digest.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret value comes from (not serialised; the spec carries only the digest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum SecretSource {
    /// Read by the file source from this file (already in `value`).
    #[default]
    File,
    /// A Kubernetes Secret key, resolved by the cluster module through [`SecretResolver`].
    SecretKeyRef {
        /// Namespace of the resource (and so of the Secret).
        namespace: String,
        /// The Secret and key.
        selector: SecretKeySelector,
        /// Filled in by [`resolve_refs`].
        resolved: bool,
    },
}

/// Resolves `secretKeyRef`s (Kubernetes mode). The cluster module implements it over its
/// Secret cache; errors name the Secret and key, never a value.
pub trait SecretResolver {
    /// The value of `selector` in `namespace`.
    fn resolve(&self, namespace: &str, selector: &SecretKeySelector)
        -> Result<SecretValue, String>;
}

/// Fills in every `secretKeyRef` of `desired` through `resolver`. Resources whose
/// references cannot be resolved are returned with the reason (callers block them); their
/// entries stay unresolved, which [`seal`] refuses to digest.
pub fn resolve_refs(
    desired: &mut DesiredState,
    resolver: &dyn SecretResolver,
) -> Vec<(ResourceKey, String)> {
    let mut failures = Vec::new();
    for (key, container) in desired.containers.iter_mut() {
        if !container.config.secret_env.iter().any(|s| {
            matches!(
                s.source,
                SecretSource::SecretKeyRef {
                    resolved: false,
                    ..
                }
            )
        }) {
            continue;
        }
        let config = Arc::make_mut(&mut container.config);
        for (i, env) in config.secret_env.iter_mut().enumerate() {
            let SecretSource::SecretKeyRef {
                namespace,
                selector,
                resolved,
            } = &mut env.source
            else {
                continue;
            };
            match resolver.resolve(namespace, selector) {
                Ok(value) => {
                    env.value = value;
                    *resolved = true;
                }
                Err(message) => failures.push((
                    key.clone(),
                    format!(
                        "secret env {} (secret {:?}, key {:?}, entry {i}): {message}",
                        env.name, selector.name, selector.key
                    ),
                )),
            }
        }
    }
    failures
}

/// The per-owner key of the secret digests.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The key file could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("secret key {path}: {message}")]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// File name of the key in an owner's state directory.
pub const KEY_FILE: &str = "secret.key";

impl SecretKey {
    /// A key from raw bytes (tests, or a key kept elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key in `dir/secret.key`, created (32 random bytes, mode 0600, directory 0700) if
    /// missing. Concurrent first uses agree: the file is created exclusively and a loser
    /// reads the winner's key.
    pub fn load_or_create(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(KEY_FILE);
        let fail = |message: String| KeyError {
            path: path.clone(),
            message,
        };
        if let Some(key) = Self::read(&path).map_err(fail)? {
            return Ok(key);
        }
        create_private_dir(dir).map_err(|e| fail(format!("creating its directory: {e}")))?;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|e| fail(format!("reading /dev/urandom: {e}")))?;
        let tmp = dir.join(format!(".{KEY_FILE}.{}", std::process::id()));
        write_private(&tmp, &bytes).map_err(|e| fail(e.to_string()))?;
        // hard_link fails if the key appeared meanwhile: then the other process's key wins.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Self(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(&path)
                .map_err(fail)?
                .ok_or_else(|| fail("vanished while being created".into())),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    fn read(path: &Path) -> Result<Option<Self>, String> {
        match std::fs::read(path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(|b| Some(Self(b)))
                .map_err(|_| {
                    format!(
                        "holds {} bytes, expected 32; remove it to make a new key (containers with secrets are then recreated once)",
                        bytes.len()
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `hmac-sha256:<hex>` of `name=value` under this key (the name is included so two
    /// variables with one value do not share a digest).
    pub fn digest(&self, name: &str, value: &SecretValue) -> String {
        let mut message = Vec::with_capacity(name.len() + 1 + value.expose().len());
        message.extend_from_slice(name.as_bytes());
        message.push(b'=');
        message.extend_from_slice(value.expose().as_bytes());
        format!(
            "hmac-sha256:{}",
            hex::encode(hmac_sha256(&self.0, &message))
        )
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// HMAC-SHA256 (RFC 2104) over `sha2`, which the crate already has.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Fills in the digest of every secret env of `desired` under `key`. Resources that cannot
/// be sealed (a `secretKeyRef` not resolved, or no key at all) are returned with the reason;
/// their digests stay empty and callers must not act on them.
pub fn seal(desired: &mut DesiredState, key: Option<&SecretKey>) -> Vec<(ResourceKey, String)> {
    let mut refused = Vec::new();
    for (rk, container) in desired.containers.iter_mut() {
        if container.config.secret_env.is_empty() {
            continue;
        }
        if let Some(env) = container.config.secret_env.iter().find(|e| {
            matches!(
                e.source,
                SecretSource::SecretKeyRef {
                    resolved: false,
                    ..
                }
            )
        }) {
            refused.push((
                rk.clone(),
                format!(
                    "spec.env: the secretKeyRef of {} is not resolved (only Kubernetes mode resolves Secrets)",
                    env.name
                ),
            ));
            continue;
        }
        let Some(key) = key else {
            refused.push((
                rk.clone(),
                "spec.env: valueFrom needs the owner's secret key, which this front end did not load".into(),
            ));
            continue;
        };
        let config = Arc::make_mut(&mut container.config);
        for env in &mut config.secret_env {
            env.digest = key.digest(&env.name, &env.value);
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn values_are_redacted_in_debug_and_display() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v:?} {v}"), "<redacted> <redacted>");
        let k = SecretKey::from_bytes([7; 32]);
        assert!(!format!("{k:?}").contains('7'));
    }

    #[test]
    fn digests_depend_on_key_name_and_value() {
        let (a, b) = (
            SecretKey::from_bytes([1; 32]),
            SecretKey::from_bytes([2; 32]),
        );
        let v = SecretValue::new("s3cret");
        let d = a.digest("PW", &v);
        assert!(d.starts_with("hmac-sha256:") && d.len() == 12 + 64, "{d}");
        assert!(!d.contains("s3cret"));
        assert_eq!(d, a.digest("PW", &SecretValue::new("s3cret")));
        assert_ne!(d, b.digest("PW", &v));
        assert_ne!(d, a.digest("PW2", &v));
        assert_ne!(d, a.digest("PW", &SecretValue::new("s3cret2")));
    }

    #[test]
    fn key_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("owner");
        let k1 = SecretKey::load_or_create(&state).unwrap();
        let k2 = SecretKey::load_or_create(&state).unwrap();
        assert_eq!(k1.0, k2.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(state.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        std::fs::write(state.join(KEY_FILE), b"short").unwrap();
        let err = SecretKey::load_or_create(&state).unwrap_err();
        assert!(err.to_string().contains("expected 32"), "{err}");
    }
}
