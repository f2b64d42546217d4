//! Source identity: which source declared an object, written on everything dockwright creates
//! as the `dockwright.dev/source` label (see [`crate::labels::SOURCE`]) and compared by the
//! planner, so that one source never prunes or takes over what another declared.
//!
//! Forms of the label value (documented in the README, "Semantics worth knowing"):
//! - a manifests directory: its canonical absolute path (`/srv/app`); a file given to `apply`
//!   stands for the directory that holds it;
//! - `--source NAME`: `NAME` verbatim (a renamed or moved directory keeps its objects);
//! - a git repository: `git:<url without credentials>#<path>` ([`SourceId::git`]);
//! - Kubernetes mode: `kubernetes` ([`SourceId::kubernetes`]).

use std::fmt;
use std::path::{Path, PathBuf};

/// Longest accepted source identity (Docker labels have no limit, but the value shows in
/// every line of output).
pub const MAX_LEN: usize = 512;

/// A source identity, validated: non-empty, at most [`MAX_LEN`] bytes, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(String);

/// Why a source identity was refused.
#[derive(Debug, thiserror::Error)]
pub enum SourceIdError {
    /// Empty, too long, or with control characters.
    #[error("source name {0:?}: must be 1 to {MAX_LEN} characters without control characters")]
    Invalid(String),
    /// No directory could be derived from the manifest paths.
    #[error("manifest path {}: {message}", path.display())]
    Path {
        /// The path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Paths in several directories and no `--source`.
    #[error(
        "the manifest paths are in several directories ({0}); name the source with --source NAME"
    )]
    Ambiguous(String),
}

impl SourceId {
    /// A source named explicitly (`--source NAME`, or any front end's own identity string:
    /// the git agent passes `git:<url>#<path>` through [`SourceId::git`]).
    pub fn named(name: impl Into<String>) -> Result<Self, SourceIdError> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_LEN || name.chars().any(char::is_control) {
            return Err(SourceIdError::Invalid(name));
        }
        Ok(Self(name))
    }

    /// A manifests directory: its canonical path (symlinks resolved), so `./app` and
    /// `/srv/app` are the same source.
    pub fn directory(dir: &Path) -> Result<Self, SourceIdError> {
        let canonical = dir.canonicalize().map_err(|e| SourceIdError::Path {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::named(canonical.to_string_lossy().into_owned())
    }

    /// The source of `apply`/`diff -f PATH...`: the one directory the paths are in (a file
    /// stands for its directory; `-` for standard input is the working directory). Paths in
    /// several directories need an explicit `--source`.
    pub fn of_paths(paths: &[PathBuf]) -> Result<Self, SourceIdError> {
        let mut dirs: Vec<SourceId> = Vec::new();
        for path in paths {
            let dir = if path.as_os_str() == "-" {
                PathBuf::from(".")
            } else if path.is_dir() {
                path.clone()
            } else {
                match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                }
            };
            let id = Self::directory(&dir)?;
            if !dirs.contains(&id) {
                dirs.push(id);
            }
        }
        match dirs.len() {
            0 => Self::directory(Path::new(".")),
            1 => Ok(dirs.remove(0)),
            _ => Err(SourceIdError::Ambiguous(
                dirs.iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// A git repository and a path in it: `git:<url>#<path>`, with any `user:password@` in
    /// the URL dropped so credentials never reach a label.
    pub fn git(url: &str, path: &str) -> Result<Self, SourceIdError> {
        let url = strip_credentials(url);
        let path = path.trim_matches('/');
        Self::named(format!("git:{url}#{path}"))
    }

    /// Kubernetes mode: the cluster is the source.
    pub fn kubernetes() -> Self {
        Self("kubernetes".to_string())
    }

    /// The label value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `scheme://user:pass@host/...` → `scheme://host/...`; scp-like `user@host:path` is kept
/// (a user name there is not a secret).
fn strip_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_refuses_empty_and_control_characters() {
        assert!(SourceId::named("").is_err());
        assert!(SourceId::named("a\nb").is_err());
        assert!(SourceId::named("x".repeat(MAX_LEN + 1)).is_err());
        assert_eq!(SourceId::named("team-a").unwrap().as_str(), "team-a");
    }

    #[test]
    fn git_identity_drops_credentials() {
        let id = SourceId::git("https://bob:s3cret@example.com/org/repo.git", "/deploy/").unwrap();
        assert_eq!(id.as_str(), "git:https://example.com/org/repo.git#deploy");
        let scp = SourceId::git("git@example.com:org/repo.git", "").unwrap();
        assert_eq!(scp.as_str(), "git:git@example.com:org/repo.git#");
    }

    #[test]
    fn a_file_stands_for_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "").unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        let expected = canonical.to_string_lossy().into_owned();
        assert_eq!(
            SourceId::of_paths(std::slice::from_ref(&file))
                .unwrap()
                .as_str(),
            expected
        );
        assert_eq!(
            SourceId::of_paths(&[dir.path().to_path_buf(), file])
                .unwrap()
                .as_str(),
            expected
        );
        let other = tempfile::tempdir().unwrap();
        let err = SourceId::of_paths(&[dir.path().to_path_buf(), other.path().to_path_buf()])
            .unwrap_err();
        assert!(err.to_string().contains("--source"), "{err}");
    }
}
