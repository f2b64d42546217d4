//! `imagePullSecrets` → registry credentials for the pulls of one object: each named Secret
//! (type `kubernetes.io/dockerconfigjson`, or the legacy `kubernetes.io/dockercfg`) is read
//! from the object's namespace with one GET, and the result is a [`CredentialSource`] handed
//! to the runner for that reconcile, tried before the node's Docker config (kubelet order:
//! the first secret with an entry for the registry wins).
//!
//! Secret values never leave this module except as the parsed [`DockerConfig`], whose
//! `Debug` is redacted; errors name the Secret and the key, never the content.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::{Map, Value};

use crate::api::LocalObjectReference;
use crate::credentials::{default_config_path, CredentialSource, CredentialsError, DockerConfig};

/// Secret type of a `~/.docker/config.json`-format secret.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// Legacy secret type holding a bare `.dockercfg` map.
pub const DOCKER_CFG: &str = "kubernetes.io/dockercfg";

/// Credentials of one object's `imagePullSecrets`, layered over the node's Docker config.
/// Built per reconcile, owned by that reconcile's runner.
#[derive(Clone)]
pub struct PullSecrets {
    /// Merged `auths` of the secrets (first secret wins per registry).
    auths: Map<String, Value>,
    /// Where the merged entries came from, for error messages.
    label: PathBuf,
    /// The node's Docker config, consulted for registries no secret names.
    fallback: Option<PathBuf>,
}

impl fmt::Debug for PullSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSecrets")
            .field("registries", &self.auths.keys().collect::<Vec<_>>())
            .field("from", &self.label)
            .finish_non_exhaustive()
    }
}

impl CredentialSource for PullSecrets {
    fn config(&self) -> Result<DockerConfig, CredentialsError> {
        let mut auths = self.auths.clone();
        if let Some(path) = self.fallback.as_ref().filter(|p| p.exists()) {
            let text = std::fs::read_to_string(path).map_err(|e| CredentialsError {
                path: path.clone(),
                message: format!("cannot read: {}", e.kind()),
            })?;
            // Parse first so a broken node config is reported against its own file.
            DockerConfig::parse(&text, path)?;
            if let Ok(Value::Object(root)) = serde_json::from_str::<Value>(&text) {
                if let Some(Value::Object(node)) = root.get("auths") {
                    for (registry, entry) in node {
                        auths
                            .entry(registry.clone())
                            .or_insert_with(|| entry.clone());
                    }
                }
            }
        }
        let text = Value::Object(Map::from_iter([(
            "auths".to_string(),
            Value::Object(auths),
        )]))
        .to_string();
        DockerConfig::parse(&text, &self.label)
    }
}

/// Why one pull secret could not be used. Names the secret, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The Secret could not be read (missing, forbidden, API down).
    #[error("imagePullSecrets: Secret {namespace}/{name}: {source}")]
    Get {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The Secret is of another type or its data is not a Docker config.
    #[error("imagePullSecrets: Secret {namespace}/{name}: {message}")]
    Invalid {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The `auths` map of one secret.
pub fn secret_auths(secret: &Secret) -> Result<Map<String, Value>, String> {
    let type_ = secret.type_.as_deref().unwrap_or_default();
    let (key, wrapped) = match type_ {
        DOCKER_CONFIG_JSON => (".dockerconfigjson", true),
        DOCKER_CFG => (".dockercfg", false),
        other => return Err(format!("type {other:?} is not {DOCKER_CONFIG_JSON}")),
    };
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("has no {key} key"))?;
    let parsed: Value = serde_json::from_slice(&data.0).map_err(|e| {
        format!(
            "{key} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let auths = if wrapped {
        parsed.get("auths").cloned().unwrap_or(Value::Null)
    } else {
        parsed
    };
    match auths {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(Map::new()),
        _ => Err(format!("{key}: auths is not an object")),
    }
}

/// Reads the named secrets from `namespace` (one GET each) and layers them over the node's
/// Docker config. `None` when `refs` is empty (the runner's default applies).
pub async fn pull_secrets(
    client: &Client,
    namespace: &str,
    refs: &[LocalObjectReference],
) -> Result<Option<Arc<PullSecrets>>, SecretError> {
    if refs.is_empty() {
        return Ok(None);
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut auths = Map::new();
    let mut names = Vec::with_capacity(refs.len());
    for r in refs {
        let secret = api.get(&r.name).await.map_err(|source| SecretError::Get {
            namespace: namespace.to_string(),
            name: r.name.clone(),
            source,
        })?;
        let entries = secret_auths(&secret).map_err(|message| SecretError::Invalid {
            namespace: namespace.to_string(),
            name: r.name.clone(),
            message,
        })?;
        for (registry, entry) in entries {
            auths.entry(registry).or_insert(entry);
        }
        names.push(r.name.as_str());
    }
    let label = Path::new("secret").join(namespace).join(names.join(","));
    Ok(Some(Arc::new(PullSecrets {
        auths,
        label,
        fallback: default_config_path(None),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use k8s_openapi::ByteString;
    use std::collections::BTreeMap;

    fn secret(type_: &str, key: &str, json: &str) -> Secret {
        Secret {
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(json.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn dockerconfigjson_and_dockercfg_parse() {
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p");
        let s = secret(
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            &format!(r#"{{"auths":{{"r.example:5000":{{"auth":"{auth}"}}}}}}"#),
        );
        assert!(secret_auths(&s).unwrap().contains_key("r.example:5000"));
        let s = secret(
            DOCKER_CFG,
            ".dockercfg",
            &format!(r#"{{"r.example:5000":{{"auth":"{auth}"}}}}"#),
        );
        assert!(secret_auths(&s).unwrap().contains_key("r.example:5000"));
    }

    #[test]
    fn wrong_type_or_data_is_named_without_content() {
        let s = secret("Opaque", "x", "{}");
        assert!(secret_auths(&s).unwrap_err().contains("Opaque"));
        let s = secret(
            DOCKER_CONFIG_JSON,
            ".dockerconfigjson",
            "{\"auths\": \"hunter2\"",
        );
        let e = secret_auths(&s).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn first_secret_wins_and_debug_is_redacted() {
        let auth = base64::engine::general_purpose::STANDARD.encode("first:secretpw");
        let mut auths = Map::new();
        auths.insert("r.example:5000".into(), serde_json::json!({"auth": auth}));
        let ps = PullSecrets {
            auths,
            label: "secret/ns/a".into(),
            fallback: None,
        };
        let config = ps.config().unwrap();
        assert_eq!(
            config.get("r.example:5000").unwrap().username.as_deref(),
            Some("first")
        );
        assert!(!format!("{ps:?}").contains("secretpw"));
        assert!(!format!("{ps:?}").contains(&auth));
    }
}
