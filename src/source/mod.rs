//! Sources of desired state. Files: a set of paths of YAML manifests. (Kubernetes: later.)
//! Sources know nothing of Docker: [`files`] finds and reads manifests, [`parse`] turns one
//! file into typed documents, [`normalize`] and [`validate`] turn them into a [`DesiredState`].
//!
//! [`DesiredState`]: crate::desired::DesiredState

use std::fmt;
use std::sync::Arc;

pub mod decrypt;
pub mod files;
pub mod git;
pub mod identity;
pub mod normalize;
pub mod parse;
pub mod validate;
pub mod watch;

pub use files::{expand_paths, load_paths, load_paths_with, parse_file, MAX_FILE_BYTES};
pub use identity::SourceId;
pub use parse::{parse_str, LoadedManifest, Manifest, MAX_DEPTH, MAX_DOCUMENTS};
pub use validate::{build_desired, build_desired_with};

/// What loading needs beyond the manifests' text. The default decrypts nothing (a `*.age`
/// file is then an error naming `--age-identity`).
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The identities that decrypt `*.age` secret files (`--age-identity`).
    pub age: Option<Arc<decrypt::AgeIdentities>>,
}

/// A manifest problem with its location: file, document, resource and field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// `path (document N)` or a Kubernetes object reference.
    pub location: String,
    /// `Kind/name` when known.
    pub resource: Option<String>,
    /// Dotted field path when known, e.g. `spec.ports[0].hostPort`.
    pub field: Option<String>,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl ManifestError {
    /// An error at `location`, optionally naming a resource and a field.
    pub fn new(
        location: impl Into<String>,
        resource: Option<String>,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            location: location.into(),
            resource,
            field,
            message: message.into(),
        }
    }

    /// An error about a whole file or path (no resource, no field).
    pub fn file(path: &std::path::Path, message: impl Into<String>) -> Self {
        Self::new(path.display().to_string(), None, None, message)
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.location)?;
        if let Some(r) = &self.resource {
            write!(f, ": {r}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every manifest problem found in one load (we report all, not just the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl From<ManifestError> for ManifestErrors {
    fn from(e: ManifestError) -> Self {
        Self(vec![e])
    }
}

/// How errors name a resource: `Kind/name`, or `Kind/namespace/name` outside `default`.
pub(crate) fn resource_label(kind: &str, namespace: &str, name: &str) -> String {
    if namespace == crate::desired::DEFAULT_NAMESPACE {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
