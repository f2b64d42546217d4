//! The follower: a thread that polls the ref (every `--git-poll`, at once on a webhook call,
//! sooner with back-off after a failure), checks out each new revision, loads it as one whole
//! and publishes it as the agent's desired state only when every manifest parses and the set
//! validates. Owns the [`Fetcher`] and the applied revision; readers see [`DesiredSnapshot`]s
//! and [`GitStatus`]es on `tokio::sync::watch` channels.
//!
//! Choices the issue leaves open:
//! - Each revision is checked out into its own directory, `git/checkouts/<commit>`, and the
//!   desired state points into it (build contexts, `files`); the applied revision and the one
//!   before it are kept (a build of the previous revision may still be reading it), older ones
//!   are removed. The directory name never enters a spec hash: those hash contents only.
//! - The applied revision is remembered in `git/applied`; an agent restarted while the server
//!   is down starts from it instead of from nothing (it was validated when applied).
//! - A revision that fails to parse or validate is not fetched or loaded again until the ref
//!   moves; one whose checkout failed (a full disk) is retried at the next poll.
//! - After a failed poll the next one comes after 1 s, doubling up to the poll interval.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{checkout, GitOptions, Polled};
use crate::desired::DesiredState;
use crate::source::watch::DesiredSnapshot;
use crate::source::{ManifestError, ManifestErrors};

/// First retry delay after a failed poll.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest a poll (ref advertisement and fetch) may take before it counts as failed; the git
/// transport has no timeouts of its own, and a server that accepts and never answers must not
/// stall the follower. The stuck worker is abandoned.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// What `/state` and `dockwright status` show of the git source (never a credential).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitStatus {
    /// The repository, credentials stripped.
    pub url: String,
    /// The ref followed (`HEAD`: the remote's default branch).
    pub reference: String,
    /// The manifest directory in the repository (empty: the root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The commit whose manifests are in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// When it was applied (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
    /// The last commit tried, when it differs from the applied one (it was rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_revision: Option<String>,
    /// Why the attempted revision was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempted_error: Option<String>,
    /// When the server last answered a poll (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch: Option<String>,
    /// The same as Unix seconds (for the metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_unix: Option<f64>,
    /// Why the last poll failed, while it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_error: Option<String>,
    /// Polls that reached the server, since start.
    pub fetches: u64,
    /// Polls that failed, since start.
    pub fetch_failures: u64,
    /// Revisions rejected (checkout, parse or validation), since start.
    pub rejected_revisions: u64,
}

/// Messages to the follower thread.
#[derive(Debug)]
enum Message {
    /// Poll now (a webhook call).
    Poll,
}

/// A running follower. Dropping it stops the thread (after the poll in progress, if any).
#[derive(Debug)]
pub struct GitHandle {
    desired: watch::Receiver<DesiredSnapshot>,
    status: watch::Receiver<GitStatus>,
    control: mpsc::Sender<Message>,
    _thread: std::thread::JoinHandle<()>,
}

impl GitHandle {
    /// Snapshots of the desired state, as the directory watcher's.
    pub fn subscribe(&self) -> watch::Receiver<DesiredSnapshot> {
        self.desired.clone()
    }

    /// Status updates (after every poll).
    pub fn status(&self) -> watch::Receiver<GitStatus> {
        self.status.clone()
    }

    /// Polls at once (a verified webhook call). Calls while a poll runs are coalesced.
    pub fn trigger(&self) {
        // Fails only once the thread is gone, which needs `self` dropped.
        let _ = self.control.send(Message::Poll);
    }

    /// [`Self::trigger`] as a function the webhook server can keep.
    pub fn trigger_fn(&self) -> Arc<dyn Fn() + Send + Sync> {
        let control = self.control.clone();
        Arc::new(move || {
            let _ = control.send(Message::Poll);
        })
    }
}

/// The follower's state. Owned by its thread.
#[derive(Debug)]
pub struct GitFollower {
    options: GitOptions,
    fetcher: super::Fetcher,
    /// The applied commit and the desired state loaded from it.
    applied: Option<(String, Arc<DesiredState>)>,
    /// The applied commit before that (its checkout is kept).
    previous: Option<String>,
    status: GitStatus,
    published: DesiredSnapshot,
    /// Consecutive failed polls.
    failures: u32,
}

impl GitFollower {
    /// A follower of `options`, resuming from the revision applied by an earlier run when its
    /// checkout is still there and it still loads.
    pub fn new(options: GitOptions) -> Self {
        let fetcher = super::Fetcher::new(
            options.state_dir.join("repo.git"),
            &options.url,
            options.reference.as_deref(),
        )
        .with_auth(options.auth.clone());
        let status = GitStatus {
            url: options.display_url().to_string(),
            reference: options.reference_label().to_string(),
            path: options.path.to_string_lossy().into_owned(),
            ..GitStatus::default()
        };
        let mut follower = Self {
            options,
            fetcher,
            applied: None,
            previous: None,
            status,
            published: DesiredSnapshot {
                desired: Arc::new(DesiredState::default()),
                errors: Vec::new(),
                complete: false,
                generation: 1,
                revision: None,
                held: Vec::new(),
                prune_only: None,
            },
            failures: 0,
        };
        follower.resume();
        follower
    }

    /// The status after the last poll (what `/state` shows).
    pub fn status(&self) -> &GitStatus {
        &self.status
    }

    /// The snapshot in effect (before [`Self::start`]: the resumed one, if any).
    pub fn snapshot(&self) -> DesiredSnapshot {
        self.published.clone()
    }

    /// Starts the thread; the first poll runs at once.
    pub fn start(self) -> std::io::Result<GitHandle> {
        let (desired_tx, desired) = watch::channel(self.published.clone());
        let (status_tx, status) = watch::channel(self.status.clone());
        let (control, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("git-follow".into())
            .spawn(move || self.run(rx, desired_tx, status_tx))?;
        Ok(GitHandle {
            desired,
            status,
            control,
            _thread: thread,
        })
    }

    fn run(
        mut self,
        rx: mpsc::Receiver<Message>,
        desired_tx: watch::Sender<DesiredSnapshot>,
        status_tx: watch::Sender<GitStatus>,
    ) {
        let span = tracing::info_span!("git_source", url = %self.status.url, reference = %self.status.reference);
        let _entered = span.enter();
        let mut next = Instant::now();
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Message::Poll) => {
                    tracing::info!("webhook: polling now");
                    while rx.try_recv().is_ok() {}
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let delay = match self.poll_once() {
                Some(snapshot) => {
                    desired_tx.send_replace(snapshot);
                    self.options.poll
                }
                None if self.failures > 0 => retry_delay(self.failures, self.options.poll),
                None => self.options.poll,
            };
            status_tx.send_replace(self.status.clone());
            next = Instant::now() + delay;
        }
    }

    /// One poll; returns the snapshot to publish when the desired state or its errors changed.
    pub fn poll_once(&mut self) -> Option<DesiredSnapshot> {
        let polled = self.poll_with_timeout();
        let now = SystemTime::now();
        match polled {
            Err(error) => {
                self.failures += 1;
                self.status.fetch_failures += 1;
                tracing::warn!(%error, failures = self.failures, "git fetch failed; the applied revision stays in effect");
                self.status.fetch_error = Some(error.to_string());
                None
            }
            Ok(polled) => {
                if self.failures > 0 {
                    tracing::info!("git server answers again");
                }
                self.failures = 0;
                self.status.fetches += 1;
                self.status.fetch_error = None;
                self.status.last_fetch = Some(rfc3339(now));
                self.status.last_fetch_unix = now
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs_f64());
                match polled {
                    Polled::Unchanged => None,
                    Polled::Fetched { commit, .. } => self.take(&commit, now),
                }
            }
        }
    }

    /// [`super::Fetcher::poll`] on a worker thread, bounded by [`FETCH_TIMEOUT`].
    fn poll_with_timeout(&mut self) -> Result<Polled, super::FetchError> {
        let mut fetcher = self.fetcher.clone();
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("git-fetch".into())
            .spawn(move || {
                let result = fetcher.poll();
                let _ = tx.send((fetcher, result));
            });
        if let Err(e) = spawned {
            return Err(super::FetchError {
                stage: "starting a fetch of",
                url: self.status.url.clone(),
                message: e.to_string(),
            });
        }
        match rx.recv_timeout(FETCH_TIMEOUT) {
            Ok((fetcher, result)) => {
                self.fetcher = fetcher;
                result
            }
            Err(_) => Err(super::FetchError {
                stage: "fetching from",
                url: self.status.url.clone(),
                message: format!("no answer within {} s", FETCH_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Checks out and loads `commit`; publishes it when it is good.
    fn take(&mut self, commit: &str, now: SystemTime) -> Option<DesiredSnapshot> {
        if self.applied.as_ref().is_some_and(|(c, _)| c == commit) {
            // The ref moved back to what is applied (or a tag moved to the same commit).
            self.status.attempted_revision = None;
            self.status.attempted_error = None;
            return self.publish(Vec::new());
        }
        let _span = tracing::info_span!("git_revision", commit = %commit).entered();
        let dir = self.checkout_dir(commit);
        let loaded = self.check_out(commit, &dir).and_then(|()| {
            load_revision(&dir, &self.options.path, &self.options.load)
                .map_err(|ManifestErrors(errors)| errors)
        });
        match loaded {
            Ok(desired) => {
                tracing::info!(
                    images = desired.images.len(),
                    containers = desired.containers.len(),
                    "revision applied"
                );
                if let Some((old, _)) = self
                    .applied
                    .replace((commit.to_string(), Arc::new(desired)))
                {
                    self.previous = Some(old);
                }
                self.status.applied_revision = Some(commit.to_string());
                self.status.applied_at = Some(rfc3339(now));
                self.status.attempted_revision = None;
                self.status.attempted_error = None;
                self.remember_applied(commit);
                self.remove_old_checkouts();
                self.publish(Vec::new())
            }
            Err(errors) => {
                let message = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(errors = %message, "revision rejected; the applied revision stays in effect");
                self.status.rejected_revisions += 1;
                self.status.attempted_revision = Some(commit.to_string());
                self.status.attempted_error = Some(message);
                if self.applied.as_ref().is_none_or(|(c, _)| c != commit)
                    && self.previous.as_deref() != Some(commit)
                {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                self.publish(errors)
            }
        }
    }

    /// Writes the checkout of `commit` into `dir` (through a temporary name, so a directory
    /// named after a commit is always complete).
    fn check_out(&mut self, commit: &str, dir: &Path) -> Result<(), Vec<ManifestError>> {
        if dir.is_dir() {
            return Ok(());
        }
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        let result = std::fs::create_dir_all(self.options.state_dir.join("checkouts"))
            .map_err(|e| e.to_string())
            .and_then(|()| {
                checkout::write_commit(self.fetcher.repo_dir(), commit, &tmp)
                    .map_err(|e| e.to_string())
            })
            .and_then(|files| {
                tracing::debug!(files, "checked out");
                std::fs::rename(&tmp, dir).map_err(|e| e.to_string())
            });
        result.map_err(|message| {
            let _ = std::fs::remove_dir_all(&tmp);
            // Maybe transient (disk full): fetch and try again at the next poll.
            self.fetcher.forget();
            vec![ManifestError::new(
                format!("commit {commit}"),
                None,
                None,
                message,
            )]
        })
    }

    /// The snapshot of the applied revision with `errors`, if it differs from the last one.
    fn publish(&mut self, errors: Vec<ManifestError>) -> Option<DesiredSnapshot> {
        let (desired, complete, revision) = match &self.applied {
            Some((commit, desired)) => {
                (Arc::clone(desired), true, Some(Arc::from(commit.as_str())))
            }
            None => (Arc::new(DesiredState::default()), false, None),
        };
        let unchanged = Arc::ptr_eq(&desired, &self.published.desired)
            && errors == self.published.errors
            && complete == self.published.complete;
        if unchanged {
            return None;
        }
        self.published = DesiredSnapshot {
            desired,
            errors,
            complete,
            generation: self.published.generation + 1,
            revision,
            held: Vec::new(),
            prune_only: None,
        };
        Some(self.published.clone())
    }

    fn checkout_dir(&self, commit: &str) -> PathBuf {
        self.options.state_dir.join("checkouts").join(commit)
    }

    /// The file naming the applied revision: commit, then the source identity.
    fn applied_file(&self) -> PathBuf {
        self.options.state_dir.join("applied")
    }

    fn remember_applied(&self, commit: &str) {
        let text = format!("{commit}\n{}\n", self.identity_line());
        let tmp = self.applied_file().with_extension("tmp");
        let written =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, self.applied_file()));
        if let Err(error) = written {
            tracing::warn!(%error, "could not record the applied revision; a restart starts from the server");
        }
    }

    fn identity_line(&self) -> String {
        format!(
            "{} {}",
            self.options.identity(),
            self.options.reference_label()
        )
    }

    /// Starts from the revision an earlier run applied, if it is for this source and loads.
    fn resume(&mut self) {
        let Ok(text) = std::fs::read_to_string(self.applied_file()) else {
            return;
        };
        let mut lines = text.lines();
        let (Some(commit), Some(identity)) = (lines.next(), lines.next()) else {
            return;
        };
        if identity != self.identity_line() || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return;
        }
        let dir = self.checkout_dir(commit);
        match load_revision(&dir, &self.options.path, &self.options.load) {
            Ok(desired) => {
                tracing::info!(%commit, "resuming from the revision applied before the restart");
                self.applied = Some((commit.to_string(), Arc::new(desired)));
                self.status.applied_revision = Some(commit.to_string());
                self.published.desired = Arc::clone(
                    &self
                        .applied
                        .as_ref()
                        .map(|(_, d)| d)
                        .cloned()
                        .unwrap_or_default(),
                );
                self.published.complete = true;
                self.published.revision = Some(Arc::from(commit));
            }
            Err(errors) => {
                tracing::warn!(%commit, %errors, "the revision applied before the restart does not load; waiting for the server");
            }
        }
    }

    /// Removes the checkouts of revisions that are neither applied nor the one before.
    fn remove_old_checkouts(&self) {
        let keep: Vec<&str> = self
            .applied
            .iter()
            .map(|(c, _)| c.as_str())
            .chain(self.previous.as_deref())
            .collect();
        let Ok(entries) = std::fs::read_dir(self.options.state_dir.join("checkouts")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !keep.iter().any(|k| name.to_str() == Some(*k)) {
                if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), %error, "could not remove an old checkout");
                }
            }
        }
    }
}

/// Loads the manifests under `path` of the checkout in `dir` as one whole. Error locations
/// are made relative to the repository root (`app/web.yaml (document 1)`). `options` decrypt
/// age-encrypted secrets.
pub fn load_revision(
    dir: &Path,
    path: &Path,
    options: &crate::source::LoadOptions,
) -> Result<DesiredState, ManifestErrors> {
    let root = dir.join(path);
    crate::source::load_paths_with(&[root], options).map_err(|ManifestErrors(errors)| {
        let prefix = format!("{}/", dir.display());
        ManifestErrors(
            errors
                .into_iter()
                .map(|mut e| {
                    if let Some(rest) = e.location.strip_prefix(&prefix) {
                        e.location = rest.to_string();
                    } else if e.location == dir.display().to_string() {
                        e.location = ".".into();
                    }
                    e.message = e.message.replace(&prefix, "");
                    e
                })
                .collect(),
        )
    })
}

/// `min(poll, 1 s × 2^(failures-1))`.
fn retry_delay(failures: u32, poll: Duration) -> Duration {
    RETRY_INITIAL
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(poll)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) of `t`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_251_199);
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn retries_back_off_up_to_the_poll_interval() {
        let poll = Duration::from_secs(60);
        assert_eq!(retry_delay(1, poll), Duration::from_secs(1));
        assert_eq!(retry_delay(3, poll), Duration::from_secs(4));
        assert_eq!(retry_delay(30, poll), poll);
    }
}
