//! The crate's error type. Each variant carries its source; [`Error::label`] gives a short
//! stable category for metrics and events.

use std::path::PathBuf;

use crate::source::ManifestErrors;

/// Any failure of a dockwright operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more manifests failed to parse or validate; nothing was changed.
    #[error("{0}")]
    Manifests(#[from] ManifestErrors),
    /// The Docker daemon could not be reached or answered with an error.
    #[error("docker {operation}: {source}")]
    Docker {
        /// What we asked the daemon to do.
        operation: String,
        /// The daemon's answer.
        #[source]
        source: bollard::errors::Error,
    },
    /// A local file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file (adoption records) could not be read or written.
    #[error("{0}")]
    State(#[from] crate::image_records::StateError),
    /// Output could not be serialised.
    #[error("serialising output: {0}")]
    Output(String),
}

impl Error {
    /// Short, stable category for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Manifests(_) => "manifest",
            Error::Docker { .. } => "docker",
            Error::Io { .. } => "io",
            Error::State(_) => "state",
            Error::Output(_) => "output",
        }
    }
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
