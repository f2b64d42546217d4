//! Talking to the git server with `gix` (blocking; the follower runs it on its own thread): one
//! ref advertisement per poll, and only when the ref moved a shallow (depth 1) fetch of that
//! one ref into a private bare repository. The ref is fetched with a forced refspec, so a
//! force-push or a moved tag is followed like any other move.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::remote::fetch::Shallow;
use gix::remote::Direction;

/// The local ref the fetched revision is kept under in the private repository.
const TARGET_REF: &str = "refs/dockwright/target";

/// A fetch problem, with the stage that failed (the URL shown has no credentials).
#[derive(Debug, thiserror::Error)]
#[error("{stage} {url}: {message}")]
pub struct FetchError {
    /// `opening the local repository`, `connecting to`, `fetching from`, …
    pub stage: &'static str,
    /// The repository, credentials stripped.
    pub url: String,
    /// The library's message (its whole chain).
    pub message: String,
}

/// What one poll found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled {
    /// The ref still points where it pointed last time: nothing was downloaded.
    Unchanged,
    /// The ref moved (or this is the first poll); the commit is fetched and can be checked out.
    Fetched {
        /// The object the ref points to on the server (a commit, or an annotated tag).
        advertised: String,
        /// The commit it peels to.
        commit: String,
    },
}

/// The private repository and the one ref it follows. Cheap to clone: the follower polls on a
/// clone in a worker thread, so a server that accepts and never answers cannot stall it.
#[derive(Clone)]
pub struct Fetcher {
    repo_dir: PathBuf,
    url: String,
    shown_url: String,
    /// The refspec source: `HEAD` (the remote's default branch) or the ref as given.
    source: String,
    /// The object the ref pointed to at the last successful fetch.
    last_advertised: Option<String>,
    /// `core.sshCommand` for SSH URLs (key file and pinned known_hosts).
    ssh_command: Option<String>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("repo_dir", &self.repo_dir)
            .field("url", &self.shown_url)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher of `reference` (`None`: the remote's HEAD branch) of `url`, keeping its
    /// objects in `repo_dir` (created on first use).
    pub fn new(repo_dir: PathBuf, url: &str, reference: Option<&str>) -> Self {
        Self {
            repo_dir,
            url: url.to_string(),
            shown_url: super::DisplayUrl::new(url).to_string(),
            source: reference.unwrap_or("HEAD").to_string(),
            last_advertised: None,
            ssh_command: None,
        }
    }

    /// Uses `command` as `core.sshCommand` (SSH URLs only).
    pub fn with_ssh_command(mut self, command: Option<String>) -> Self {
        self.ssh_command = command;
        self
    }

    /// The private repository's directory.
    pub fn repo_dir(&self) -> &Path {
        &self.repo_dir
    }

    /// Forgets the last fetched ref, so the next poll fetches again even when it did not move
    /// (after the checkout of a fetched revision failed).
    pub fn forget(&mut self) {
        self.last_advertised = None;
    }

    fn error(&self, stage: &'static str, message: impl std::fmt::Display) -> FetchError {
        // gix errors can quote the URL; make sure no credential of it survives.
        let mut message = message.to_string();
        if self.url != self.shown_url {
            message = message.replace(&self.url, &self.shown_url);
        }
        FetchError {
            stage,
            url: self.shown_url.clone(),
            message,
        }
    }

    fn open_repo(&self) -> Result<gix::Repository, FetchError> {
        let opened = if self.repo_dir.join("HEAD").exists() {
            gix::open(&self.repo_dir).map_err(|e| e.to_string())
        } else {
            std::fs::create_dir_all(&self.repo_dir)
                .map_err(|e| e.to_string())
                .and_then(|()| gix::init_bare(&self.repo_dir).map_err(|e| e.to_string()))
        };
        let mut repo = opened.map_err(|e| {
            self.error(
                "opening the local repository",
                format!("{}: {e}", self.repo_dir.display()),
            )
        })?;
        if let Some(command) = &self.ssh_command {
            let mut config = repo.config_snapshot_mut();
            config
                .set_raw_value("core.sshCommand", command.as_str())
                .map_err(|e| self.error("configuring ssh for", e))?;
        }
        Ok(repo)
    }

    /// One ref advertisement; when the ref moved, a shallow fetch of its commit.
    pub fn poll(&mut self) -> Result<Polled, FetchError> {
        let _span =
            tracing::debug_span!("git_poll", url = %self.shown_url, reference = %self.source)
                .entered();
        let repo = self.open_repo()?;
        let refspec = format!("+{}:{TARGET_REF}", self.source);
        let remote = repo
            .remote_at(self.url.as_str())
            .map_err(|e| self.error("parsing the URL", e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(Some(refspec.as_str()), Direction::Fetch)
            .map_err(|e| self.error("building the refspec for", e))?;
        let connection = remote
            .connect(Direction::Fetch)
            .map_err(|e| self.error("connecting to", e))?;
        let prepared = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.error("listing the refs of", e))?;
        let advertised = prepared
            .ref_map()
            .mappings
            .iter()
            .find_map(|m| m.remote.as_id().map(|id| id.to_string()))
            .ok_or_else(|| {
                self.error(
                    "finding the ref in",
                    format!("the server has no ref {:?}", self.source),
                )
            })?;
        if self.last_advertised.as_deref() == Some(advertised.as_str()) {
            return Ok(Polled::Unchanged);
        }
        let depth = NonZeroU32::new(1).map_or(Shallow::NoChange, Shallow::DepthAtRemote);
        prepared
            .with_shallow(depth)
            .receive(gix::progress::Discard, &AtomicBool::new(false))
            .map_err(|e| self.error("fetching from", e))?;
        let commit = repo
            .find_reference(TARGET_REF)
            .map_err(|e| self.error("reading the fetched ref of", e))?
            .peel_to_commit()
            .map_err(|e| self.error("peeling the fetched ref to a commit of", e))?
            .id
            .to_string();
        self.last_advertised = Some(advertised.clone());
        Ok(Polled::Fetched { advertised, commit })
    }
}
