//! Talking to the git server with `gix` (blocking; the follower runs it on its own thread): one
//! ref advertisement per poll, and only when the ref moved a shallow (depth 1) fetch of that
//! one ref into a private bare repository. The ref is fetched with a forced refspec, so a
//! force-push or a moved tag is followed like any other move.
//!
//! The private repository is opened isolated from the host's git configuration and
//! environment (no `~/.gitconfig` credential helpers, URL rewrites or `GIT_SSH_COMMAND`):
//! what authenticates and which host keys are trusted is decided by [`GitAuth`] alone.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use gix::protocol::transport::client::blocking_io::http;
use gix::remote::fetch::Shallow;
use gix::remote::Direction;

use super::auth::{self, GitAuth, HttpCredentials, Transport};

/// Largest part of ssh's log read back to explain a failure.
const MAX_SSH_LOG_BYTES: usize = 16 * 1024;

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
    /// Credentials (paths only), the private CA and the SSH settings.
    auth: GitAuth,
    /// The server's `WWW-Authenticate` challenge last answered successfully (no secret): later
    /// polls send the credentials with the first request instead of waiting for the 401, which
    /// saves a round trip per poll. Only ever to this fetcher's own URL, only over HTTPS.
    challenge: Arc<Mutex<Option<Vec<gix::bstr::BString>>>>,
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
            auth: GitAuth::default(),
            challenge: Arc::default(),
        }
    }

    /// Authenticates with `auth` (checked against the URL by [`GitAuth::check`]).
    pub fn with_auth(mut self, auth: GitAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Where ssh writes its log (beside the private repository).
    fn ssh_log(&self) -> PathBuf {
        self.repo_dir.with_file_name("ssh.log")
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
            gix::open_opts(&self.repo_dir, gix::open::Options::isolated())
                .map_err(|e| e.to_string())
        } else {
            std::fs::create_dir_all(&self.repo_dir)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    gix::ThreadSafeRepository::init_opts(
                        &self.repo_dir,
                        gix::create::Kind::Bare,
                        gix::create::Options::default(),
                        gix::open::Options::isolated(),
                    )
                    .map(gix::Repository::from)
                    .map_err(|e| e.to_string())
                })
        };
        let mut repo = opened.map_err(|e| {
            self.error(
                "opening the local repository",
                format!("{}: {e}", self.repo_dir.display()),
            )
        })?;
        if let Some(ssh) = &self.auth.ssh {
            // In memory only: nothing of this is written to the repository's config file.
            let mut config = repo.config_snapshot_mut();
            config
                .set_raw_value("core.sshCommand", ssh.command(&self.ssh_log()).as_str())
                .and_then(|_| config.set_raw_value("ssh.variant", "ssh"))
                .map_err(|e| self.error("configuring ssh for", e))?;
        }
        Ok(repo)
    }

    /// The HTTP transport options: gix's defaults (from the isolated configuration) with a
    /// client that trusts `--git-ca-file` instead of the system roots, when given.
    fn http_options(&self, repo: &gix::Repository) -> Result<Box<dyn std::any::Any>, FetchError> {
        let mut options = repo
            .transport_options(self.url.as_str(), None)
            .map_err(|e| self.error("configuring HTTP for", chain(&e)))?
            .ok_or_else(|| {
                self.error("configuring HTTP for", "this build has no HTTP transport")
            })?;
        let Some(http_options) = options.downcast_mut::<http::Options>() else {
            return Err(self.error("configuring HTTP for", "unexpected transport options"));
        };
        let certs = match &self.auth.ca_file {
            Some(path) => Some(
                auth::ca_certificates(path).map_err(|e| self.error("configuring HTTP for", e))?,
            ),
            None => None,
        };
        // reqwest uses the process-wide rustls provider; make sure there is one (ring).
        crate::tls::install_crypto_provider();
        let configure = move |builder: reqwest::blocking::ClientBuilder| {
            Ok(match &certs {
                Some(certs) => builder.tls_certs_only(certs.iter().cloned()),
                None => builder,
            })
        };
        http_options.backend = Some(Arc::new(Mutex::new(http::reqwest::Options {
            configure_client: Some(Box::new(configure)),
            configure_request: None,
        })));
        Ok(options)
    }

    /// Adds ssh's account of a failure (a host key mismatch, say) to `error`.
    fn explain_ssh(&self, mut error: FetchError) -> FetchError {
        let Some(ssh) = &self.auth.ssh else {
            return error;
        };
        let Ok(log) = std::fs::read(self.ssh_log()) else {
            return error;
        };
        let log = String::from_utf8_lossy(&log[log.len().saturating_sub(MAX_SSH_LOG_BYTES)..]);
        match ssh.explain(&log, &auth::ssh_host(&self.url)) {
            Some(message) => error.message = message,
            None => {
                if let Some(last) = log.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
                    error.message = format!("{} (ssh: {last})", error.message);
                }
            }
        }
        error
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
        let transport =
            auth::transport_of(&self.url).map_err(|e| self.error("parsing the URL", e))?;
        if transport == Transport::Ssh {
            let _ = std::fs::remove_file(self.ssh_log());
        }
        let mut connection = remote
            .connect(Direction::Fetch)
            .map_err(|e| self.error("connecting to", chain(&e)))?;
        if matches!(transport, Transport::Http | Transport::Https) {
            connection = connection.with_transport_options(self.http_options(&repo)?);
        }
        let known_challenge = self.challenge.lock().ok().and_then(|c| c.clone());
        if let (Some(http), Some(challenge)) = (&self.auth.http, known_challenge) {
            if transport == Transport::Https {
                if let Ok(credentials) = http.answer(&challenge) {
                    // A transport that takes no credentials would refuse; then the 401 path runs.
                    let _ = connection.transport_mut().set_credentials(credentials);
                }
            }
        }
        let http = self.auth.http.clone();
        let seen = Arc::new(Mutex::new(None));
        let seen_in_hook = Arc::clone(&seen);
        let connection = connection.with_credentials(move |action| {
            if let gix::credentials::helper::Action::Get(context) = &action {
                if let Ok(mut seen) = seen_in_hook.lock() {
                    *seen = Some(context.www_authenticate.clone());
                }
            }
            answer_challenge(http.as_ref(), action)
        });
        let prepared = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| {
                if let Ok(mut challenge) = self.challenge.lock() {
                    *challenge = None;
                }
                let mut error = self.explain_ssh(self.error("listing the refs of", chain(&e)));
                if error.message.contains("UnknownIssuer") {
                    error.message.push_str(
                        " (a server certificate from a private CA: give the CA with --git-ca-file)",
                    );
                }
                error
            })?;
        // Accepted: remember the challenge for the next polls.
        if let Some(challenge) = seen.lock().ok().and_then(|mut s| s.take()) {
            if let Ok(mut known) = self.challenge.lock() {
                *known = Some(challenge);
            }
        }
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
            .map_err(|e| self.explain_ssh(self.error("fetching from", chain(&e))))?;
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

/// The agent's credential hook: answers a server's request for credentials (a 401) from the
/// configured files, and nothing else. It replaces git's credential helpers, so no helper
/// program, prompt or stored credential of the host is ever used; `store`/`erase` are no-ops.
fn answer_challenge(
    http: Option<&HttpCredentials>,
    action: gix::credentials::helper::Action,
) -> gix::Result<Option<gix::credentials::protocol::Outcome>> {
    use gix::credentials::helper::{Action, NextAction};
    use gix::credentials::protocol::{Context, Outcome};
    let Action::Get(context) = action else {
        return Ok(None);
    };
    let Some(http) = http else {
        return Err(gix::Error::from_error(AuthRequired(
            "the server asks for credentials: give --git-token-file, or --git-username with --git-password-file".into(),
        )));
    };
    let credentials = http
        .answer(&context.www_authenticate)
        .map_err(|e| gix::Error::from_error(AuthRequired(e)))?;
    // What gix hands back to `store`/`erase`: the request's URL, no secret.
    let next = NextAction::from(Context {
        url: context.url.clone(),
        options: context.options,
        ..Context::default()
    });
    Ok(Some(Outcome { credentials, next }))
}

/// A credential problem of the agent's own (no credentials configured, a file unreadable).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct AuthRequired(String);

/// The messages of `error` and its sources, joined with `: ` (gix's `Display` shows only the
/// outermost one, "Transport handshake failed", which says nothing of the cause).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        // Wrappers often repeat their source's message; keep each once.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
