//! The git source (`dockwright agent --git URL`): follows one ref of a repository and feeds
//! the agent the same [`DesiredSnapshot`]s as the directory watcher, so the engine, ownership,
//! policy, endpoints and metrics are the directory agent's.
//!
//! - [`fetch`] asks the server where the ref points (one ref advertisement per poll) and only
//!   when it moved fetches that one commit shallowly into a private bare repository under the
//!   agent's state directory (`$XDG_STATE_HOME/dockwright/<owner>/git/`).
//! - [`checkout`] writes the commit's tree into `git/checkouts/<commit>`.
//! - [`follow`] loads the manifests under `--git-path` of that checkout as one whole: a
//!   revision that fails to fetch, check out, parse or validate changes nothing, and the last
//!   good revision stays in effect. It publishes the new desired state only then (that is the
//!   swap), and reports the applied and attempted revisions in a [`GitStatus`].
//! - [`auth`] holds the credentials' whereabouts (HTTPS user/password or token files, a
//!   private CA, an SSH key with a pinned known_hosts) and checks them against the URL.
//! - [`webhook`] serves `POST /hooks/git`: a verified call makes the follower poll at once.
//!
//! [`DesiredSnapshot`]: crate::source::watch::DesiredSnapshot

pub mod auth;
pub mod checkout;
pub mod fetch;
pub mod follow;
pub mod url;
pub mod webhook;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use auth::{GitAuth, HttpCredentials, HttpSecret, SshAuth};
pub use fetch::{FetchError, Fetcher, Polled};
pub use follow::{GitFollower, GitHandle, GitStatus};
pub use url::DisplayUrl;

/// What to follow and where to keep it.
#[derive(Clone, Debug)]
pub struct GitOptions {
    /// The repository URL as given (never shown as is: see [`DisplayUrl`]).
    pub url: String,
    /// Branch or tag; `None`: the remote's HEAD branch.
    pub reference: Option<String>,
    /// Directory of the manifests inside the repository (relative; empty: the root).
    pub path: PathBuf,
    /// How often the ref is polled.
    pub poll: Duration,
    /// The git state directory (`<agent state dir>/git`).
    pub state_dir: PathBuf,
    /// How to authenticate (HTTPS credentials, private CA, SSH key and known_hosts).
    pub auth: GitAuth,
    /// How manifests load (the age identities of encrypted secrets).
    pub load: crate::source::LoadOptions,
}

impl GitOptions {
    /// The URL with credentials stripped, as logs, `/state` and metrics show it.
    pub fn display_url(&self) -> DisplayUrl {
        DisplayUrl::new(&self.url)
    }

    /// The ref as reported: the one given, else `HEAD` (the remote's default branch).
    pub fn reference_label(&self) -> &str {
        self.reference.as_deref().unwrap_or("HEAD")
    }

    /// The source identity of everything this source declares (the `dockwright.dev/source`
    /// label): `git:<url without credentials>#<path>`, see
    /// [`SourceId::git`](crate::source::identity::SourceId::git). Two agents following
    /// different directories of one repository have different identities.
    pub fn identity(&self) -> String {
        source_identity(&self.url, &self.path)
    }
}

/// See [`GitOptions::identity`].
pub fn source_identity(url: &str, path: &Path) -> String {
    let path = path.to_string_lossy();
    let path = if path == "." { "" } else { path.as_ref() };
    match crate::source::identity::SourceId::git(url, path) {
        Ok(id) => id.to_string(),
        // Only an overlong or control-character URL: still never show its credentials.
        Err(_) => format!("git:{}#{path}", DisplayUrl::new(url)),
    }
}

/// Checks that `url` can be fetched with `auth`: see [`GitAuth::check`].
pub fn check_transport(url: &str, auth: &GitAuth) -> Result<(), String> {
    auth.check(url).map(|_| ())
}

/// Checks `--git-path`: relative, no `..`; returns it normalised (no `.` components).
pub fn check_path(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("must not contain `..`".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("must be relative to the repository root".into())
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_stripped_url_and_the_path() {
        assert_eq!(
            source_identity("https://u:t@example.com/org/ops.git", Path::new("")),
            "git:https://example.com/org/ops.git#"
        );
        assert_eq!(
            source_identity("git://127.0.0.1/ops.git", Path::new("hosts/web/")),
            "git:git://127.0.0.1/ops.git#hosts/web"
        );
    }

    #[test]
    fn supported_transports_are_accepted() {
        let none = GitAuth::default();
        for ok in [
            "git://h/r.git",
            "file:///srv/r.git",
            "/srv/r.git",
            "./r",
            "https://h/r.git",
        ] {
            assert!(check_transport(ok, &none).is_ok(), "{ok}");
        }
        for refused in [
            "https://u:s3cr3t@h/r.git",
            "ssh://git@h/r.git",
            "git@github.com:org/r.git",
            "ftp://u:s3cr3t@h/r",
        ] {
            let e = check_transport(refused, &none).unwrap_err();
            assert!(!e.contains("s3cr3t"), "no credentials in {e}");
        }
    }

    #[test]
    fn the_manifest_path_stays_inside_the_repository() {
        assert_eq!(
            check_path(Path::new("./hosts/web")).unwrap(),
            Path::new("hosts/web")
        );
        assert!(check_path(Path::new("../x")).is_err());
        assert!(check_path(Path::new("/etc")).is_err());
    }
}
