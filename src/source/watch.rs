//! The agent's desired side: a directory of manifests, watched recursively (inotify through
//! `notify`), debounced, re-reading only the files that changed. Keeps the last good version
//! of each file and publishes [`DesiredSnapshot`]s on a `tokio::sync::watch` channel; it knows
//! nothing of Docker and never decides what to prune — it says, with [`DesiredSnapshot::complete`],
//! when pruning is safe.
//!
//! Semantics (DESIGN, "fail-safe pruning"):
//! - A file that stops parsing keeps its last good manifests; its error is reported.
//! - A removed file drops its manifests. A new file is parsed.
//! - The whole desired state is rebuilt with [`build_desired`] over every file's current
//!   manifests (files in path order, the order `apply -f DIR` uses, so clashes are reported on
//!   the same side); when that cross-file validation fails, the previous desired state stays.
//! - A file that never parsed, or a directory that could not be listed, hides resources we
//!   cannot know: the snapshot is then not `complete` and nothing may be pruned.
//!
//! Choices the design leaves open:
//! - Which files count is [`super::files`]' rule: `*.yaml` / `*.yml`, hidden entries and
//!   everything below them skipped, symlinks followed. Editor droppings (vim's `4913`, `.swp`,
//!   `foo.yaml~`, emacs `#foo.yaml#` and `.#foo.yaml`) are therefore ignored.
//! - Events are coalesced until the directory has been quiet for [`WatchOptions::debounce`]
//!   (but no longer than [`WatchOptions::max_delay`] after the first event), so an editor's
//!   "rename the old file away, write the new one" lands in one batch and never looks like a
//!   removal.
//! - A removed or renamed manifest *directory* (`DIR` itself) is not a removal of everything:
//!   it is reported as an error and the last good state stays (replacing the whole directory is
//!   far more often a deploy step or an accident than an intent to delete every resource).
//! - A hidden symlink or directory appearing at any level (Kubernetes ConfigMap volumes swap a
//!   `..data` symlink) triggers a full re-read, so such mounts are followed too.
//! - Attribute-only changes (`chmod`, `touch`) are ignored: reading a file changes its access
//!   time, which would otherwise make every read trigger another read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::watch;

use super::{build_desired, parse_file, LoadedManifest, ManifestError, ManifestErrors};
use crate::desired::DesiredState;

/// Deepest directory nesting walked below the manifest directory (as [`super::files`]).
const MAX_WALK_DEPTH: usize = 32;

/// What the watcher publishes: the desired state in effect and the problems that hold it back.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredSnapshot {
    /// The desired state in effect: the last one that passed cross-file validation. The same
    /// `Arc` is kept while the state is unchanged, so `Arc::ptr_eq` tells "only errors moved".
    pub desired: Arc<DesiredState>,
    /// Problems in effect: unreadable directories, then per-file parse errors (path order),
    /// then cross-file errors of the last build.
    pub errors: Vec<ManifestError>,
    /// True when `desired` holds a good version of every file present and every directory
    /// was listed: only then may the agent prune resources missing from `desired`.
    pub complete: bool,
    /// Publication counter: 1 for the initial load, +1 for each snapshot published since.
    pub generation: u64,
    /// The source revision `desired` comes from (the git source's applied commit), named in
    /// the agent's logs of the changes it makes; `None` for a directory.
    pub revision: Option<Arc<str>>,
    /// Resources the source declares but cannot give a usable spec for (the Kubernetes
    /// mode's invalid objects, unresolvable secrets): the agent leaves their containers as
    /// they are — nothing created, changed or pruned — and reports them blocked.
    pub held: Vec<crate::plan::Blocked>,
    /// When set, the only undeclared resources the agent may remove (with `complete`): those
    /// its source told it to remove. The Kubernetes node agent removes what a deleted
    /// `Placement` held, never a container merely because no `Placement` names it (an agent
    /// upgraded before the controller wrote its `Placement`s must not prune the node).
    pub prune_only: Option<Arc<std::collections::BTreeSet<crate::desired::ResourceKey>>>,
}

/// Watcher timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchOptions {
    /// Quiet time that closes a batch of events.
    pub debounce: Duration,
    /// Longest a batch may stay open after its first event while events keep coming.
    pub max_delay: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The manifest directory is missing, not a directory or unreadable.
    #[error("manifest directory {}: {message}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The file system watch could not be set up (inotify limits, permissions).
    #[error("watching {}: {source}", path.display())]
    Notify {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        #[source]
        source: notify::Error,
    },
    /// The thread that applies changes could not be started.
    #[error("starting the manifest watcher thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What is known of one manifest file.
#[derive(Clone, Debug, Default)]
struct FileState {
    /// Manifests of the last version that parsed; `None` while it never has.
    last_good: Option<Vec<LoadedManifest>>,
    /// The current version's parse error, if it fails.
    error: Option<ManifestErrors>,
}

/// The per-file state of a manifest directory and the desired state built from it.
///
/// Owned by the thread [`ManifestDirWatcher::watch`] starts (before that, by the caller of
/// [`ManifestDirWatcher::initial_load`]); readers only see the [`DesiredSnapshot`]s it publishes.
#[derive(Debug)]
pub struct ManifestDirWatcher {
    /// The directory as given, made absolute (not canonical: errors name the paths the user
    /// knows, and event paths from the watch share this prefix).
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// Directories that could not be listed; their files are unknown, so kept as they were.
    dir_errors: BTreeMap<PathBuf, ManifestError>,
    /// Errors of the last cross-file build (empty when it succeeded).
    build_errors: Vec<ManifestError>,
    desired: Arc<DesiredState>,
    /// `desired` was built while every file had a good version and every directory listed.
    desired_complete: bool,
    /// The snapshot last published (the initial load counts as published).
    published: DesiredSnapshot,
}

/// Changes gathered from one batch of events.
#[derive(Debug, Default)]
struct Batch {
    /// Manifest files to re-read.
    files: BTreeSet<PathBuf>,
    /// Directories (or vanished paths) to re-list; files below them are re-read.
    dirs: BTreeSet<PathBuf>,
    /// Re-list and re-read everything.
    full: bool,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty() && !self.full
    }
}

impl ManifestDirWatcher {
    /// Lists `dir` and parses every manifest in it (synchronously, for startup). Per-file
    /// errors do not fail the load: they are in the snapshot, which is then not `complete`.
    /// Fails only when `dir` itself is missing, not a directory or unreadable.
    pub fn initial_load(dir: impl AsRef<Path>) -> Result<Self, WatchError> {
        let dir = dir.as_ref();
        let root = std::path::absolute(dir).map_err(|e| WatchError::Dir {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        match std::fs::metadata(&root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(WatchError::Dir {
                    path: root,
                    message: "not a directory".into(),
                });
            }
            Err(e) => {
                return Err(WatchError::Dir {
                    path: root,
                    message: e.to_string(),
                })
            }
        }
        let _span = tracing::info_span!("manifest_dir", dir = %root.display()).entered();
        let mut watcher = Self {
            root,
            files: BTreeMap::new(),
            dir_errors: BTreeMap::new(),
            build_errors: Vec::new(),
            desired: Arc::new(DesiredState::default()),
            desired_complete: false,
            published: DesiredSnapshot {
                desired: Arc::new(DesiredState::default()),
                errors: Vec::new(),
                complete: false,
                generation: 0,
                revision: None,
                held: Vec::new(),
                prune_only: None,
            },
        };
        watcher.apply(Batch {
            full: true,
            ..Batch::default()
        });
        watcher.published = watcher.current();
        watcher.published.generation = 1;
        if let Some(e) = watcher.dir_errors.get(&watcher.root) {
            return Err(WatchError::Dir {
                path: watcher.root.clone(),
                message: e.message.clone(),
            });
        }
        tracing::info!(
            files = watcher.files.len(),
            errors = watcher.published.errors.len(),
            complete = watcher.published.complete,
            "manifests loaded"
        );
        Ok(watcher)
    }

    /// The directory watched (absolute).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The snapshot last published (after [`Self::initial_load`]: the initial one).
    pub fn snapshot(&self) -> DesiredSnapshot {
        self.published.clone()
    }

    /// Starts watching: sets up the recursive watch, re-reads everything once (to catch edits
    /// made since [`Self::initial_load`]) and from then on applies each debounced batch of
    /// changes on a dedicated thread, publishing a snapshot whenever the desired state, the
    /// errors or completeness change. Dropping the [`WatchHandle`] stops it.
    pub fn watch(mut self, options: WatchOptions) -> Result<WatchHandle, WatchError> {
        let (tx, rx) = mpsc::channel::<Message>();
        let events = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res| {
            // The receiver only goes away when the handle is dropped; nothing to do then.
            let _ = events.send(Message::Event(res));
        })
        .map_err(|source| WatchError::Notify {
            path: self.root.clone(),
            source,
        })?;
        watcher
            .watch(&self.root, RecursiveMode::Recursive)
            .map_err(|source| WatchError::Notify {
                path: self.root.clone(),
                source,
            })?;

        let (snapshots, receiver) = watch::channel(self.published.clone());
        // Catch up with what changed between the initial load and the watch.
        if let Some(snapshot) = self.update(Batch {
            full: true,
            ..Batch::default()
        }) {
            snapshots.send_replace(snapshot);
        }
        let thread = std::thread::Builder::new()
            .name("manifest-watch".into())
            .spawn(move || self.run(rx, snapshots, options))
            .map_err(WatchError::Thread)?;
        Ok(WatchHandle {
            receiver,
            control: tx,
            _watcher: watcher,
            _thread: thread,
        })
    }

    /// The event loop: one debounced batch at a time until the handle is dropped.
    fn run(
        mut self,
        rx: mpsc::Receiver<Message>,
        snapshots: watch::Sender<DesiredSnapshot>,
        options: WatchOptions,
    ) {
        let span = tracing::info_span!("manifest_watch", dir = %self.root.display());
        let _entered = span.enter();
        while let Ok(first) = rx.recv() {
            let mut batch = Batch::default();
            self.classify(first, &mut batch);
            let opened = Instant::now();
            loop {
                let left = options.max_delay.saturating_sub(opened.elapsed());
                if left.is_zero() {
                    break;
                }
                match rx.recv_timeout(options.debounce.min(left)) {
                    Ok(message) => self.classify(message, &mut batch),
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            if batch.is_empty() {
                continue;
            }
            if let Some(snapshot) = self.update(batch) {
                tracing::info!(
                    generation = snapshot.generation,
                    errors = snapshot.errors.len(),
                    complete = snapshot.complete,
                    "desired state updated"
                );
                snapshots.send_replace(snapshot);
            }
        }
    }

    /// Sorts one watch message into the batch.
    fn classify(&self, message: Message, batch: &mut Batch) {
        let event = match message {
            Message::Rescan => {
                batch.full = true;
                return;
            }
            Message::Event(Ok(event)) => event,
            Message::Event(Err(e)) => {
                // Lost events (queue overflow, watch limit): only a full re-read is safe.
                tracing::warn!(error = %e, "file watch error; re-reading every manifest");
                batch.full = true;
                return;
            }
        };
        if event.need_rescan() {
            batch.full = true;
            return;
        }
        let relevant = match event.kind {
            EventKind::Create(_) | EventKind::Remove(_) | EventKind::Any | EventKind::Other => true,
            EventKind::Modify(ModifyKind::Metadata(_)) => false,
            EventKind::Modify(_) => true,
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
        };
        if !relevant {
            return;
        }
        for path in event.paths {
            self.classify_path(path, batch);
        }
    }

    fn classify_path(&self, path: PathBuf, batch: &mut Batch) {
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return;
        };
        let names: Vec<&std::ffi::OsStr> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some((last, parents)) = names.split_last() else {
            // DIR itself moved or vanished.
            batch.full = true;
            return;
        };
        if parents.iter().any(|n| is_hidden(n)) {
            return;
        }
        if is_hidden(last) {
            // A swapped `..data` symlink or a renamed hidden directory may change every file.
            let swapped = std::fs::symlink_metadata(&path)
                .map(|m| m.file_type().is_symlink() || m.is_dir())
                .unwrap_or(false);
            if swapped {
                batch.full = true;
            }
            return;
        }
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                batch.dirs.insert(path);
            }
            _ if is_manifest_name(&path) => {
                batch.files.insert(path);
            }
            Ok(_) => {} // some other file: not ours
            Err(_) => {
                // Gone: if it was a directory we knew files in, re-list it.
                if self.files.keys().any(|f| f.starts_with(&path)) {
                    batch.dirs.insert(path);
                }
            }
        }
    }

    /// Applies a batch and returns the snapshot to publish, if anything visible changed.
    fn update(&mut self, batch: Batch) -> Option<DesiredSnapshot> {
        self.apply(batch);
        let mut next = self.current();
        if *next.desired == *self.published.desired {
            next.desired = Arc::clone(&self.published.desired);
            self.desired = Arc::clone(&self.published.desired);
        }
        let unchanged = Arc::ptr_eq(&next.desired, &self.published.desired)
            && next.errors == self.published.errors
            && next.complete == self.published.complete;
        if unchanged {
            return None;
        }
        next.generation = self.published.generation + 1;
        self.published = next.clone();
        Some(next)
    }

    /// The snapshot the current state gives (generation left to the caller).
    fn current(&self) -> DesiredSnapshot {
        let mut errors: Vec<ManifestError> = self.dir_errors.values().cloned().collect();
        for state in self.files.values() {
            if let Some(ManifestErrors(e)) = &state.error {
                errors.extend(e.iter().cloned());
            }
        }
        errors.extend(self.build_errors.iter().cloned());
        DesiredSnapshot {
            desired: Arc::clone(&self.desired),
            errors,
            complete: self.desired_complete && self.all_known(),
            generation: self.published.generation,
            revision: None,
            held: Vec::new(),
            prune_only: None,
        }
    }

    /// Every file has a good version and every directory was listed.
    fn all_known(&self) -> bool {
        self.dir_errors.is_empty() && self.files.values().all(|f| f.last_good.is_some())
    }

    /// Re-lists and re-reads what the batch names, then rebuilds the desired state when any
    /// file's manifests changed.
    fn apply(&mut self, batch: Batch) {
        let mut reread = batch.files;
        let mut dirty = false;
        if batch.full || !batch.dirs.is_empty() {
            let listing = walk(&self.root);
            self.dir_errors = listing.errors;
            let unlisted: Vec<PathBuf> = self
                .files
                .keys()
                .filter(|f| !listing.files.contains(*f))
                .filter(|f| !self.dir_errors.keys().any(|d| f.starts_with(d)))
                .cloned()
                .collect();
            for path in unlisted {
                tracing::info!(path = %path.display(), "manifest file removed");
                self.files.remove(&path);
                dirty = true;
            }
            for path in listing.files {
                let below_changed = batch.dirs.iter().any(|d| path.starts_with(d));
                if batch.full || below_changed || !self.files.contains_key(&path) {
                    reread.insert(path);
                }
            }
        }
        for path in reread {
            dirty |= self.reread(&path);
        }
        if dirty {
            self.rebuild();
        }
    }

    /// Reads one file again. Returns true when its manifests may have changed.
    fn reread(&mut self, path: &Path) -> bool {
        let _span = tracing::debug_span!("manifest_file", path = %path.display()).entered();
        let gone = || matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
        if gone() {
            if self.files.remove(path).is_some() {
                tracing::info!("manifest file removed");
                return true;
            }
            return false;
        }
        match parse_file(path) {
            Ok(manifests) => {
                let state = self.files.entry(path.to_path_buf()).or_default();
                if state.error.take().is_some() {
                    tracing::info!(resources = manifests.len(), "manifest file parses again");
                }
                state.last_good = Some(manifests);
                true
            }
            // Removed between the check and the read: a removal, not an error.
            Err(_) if gone() => self.files.remove(path).is_some(),
            Err(errors) => {
                let state = self.files.entry(path.to_path_buf()).or_default();
                tracing::warn!(
                    errors = %errors,
                    kept = state.last_good.as_ref().map_or(0, Vec::len),
                    "manifest file does not parse; its last good version stays in effect"
                );
                state.error = Some(errors);
                false
            }
        }
    }

    /// Builds the desired state from every file's current manifests; on failure the previous
    /// desired state stays and the errors are kept for the snapshot.
    fn rebuild(&mut self) {
        let manifests: Vec<LoadedManifest> = self
            .files
            .values()
            .filter_map(|f| f.last_good.as_ref())
            .flat_map(|m| m.iter().cloned())
            .collect();
        match build_desired(&manifests) {
            Ok(desired) => {
                self.desired = Arc::new(desired);
                self.desired_complete = self.all_known();
                self.build_errors.clear();
            }
            Err(ManifestErrors(errors)) => {
                tracing::warn!(
                    errors = errors.len(),
                    "manifests fail cross-file validation; the previous desired state stays in effect"
                );
                self.build_errors = errors;
            }
        }
    }
}

/// A running watch. Dropping it stops the watch and its thread.
#[derive(Debug)]
pub struct WatchHandle {
    receiver: watch::Receiver<DesiredSnapshot>,
    control: mpsc::Sender<Message>,
    _watcher: RecommendedWatcher,
    // Detached on drop: the thread ends by itself once the channel closes.
    _thread: std::thread::JoinHandle<()>,
}

impl WatchHandle {
    /// A receiver of snapshots; it starts marked as having seen the current one.
    pub fn subscribe(&self) -> watch::Receiver<DesiredSnapshot> {
        self.receiver.clone()
    }

    /// The snapshot in effect now.
    pub fn current(&self) -> DesiredSnapshot {
        self.receiver.borrow().clone()
    }

    /// Asks for a full re-list and re-read (the agent's periodic resync safety net); a
    /// snapshot follows only if something changed.
    pub fn rescan(&self) {
        // Fails only when the thread is gone, which only happens once `self` is dropped.
        let _ = self.control.send(Message::Rescan);
    }
}

/// What the watch thread receives.
#[derive(Debug)]
enum Message {
    Event(notify::Result<notify::Event>),
    Rescan,
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Manifest files below a directory and the directories that could not be listed.
#[derive(Debug, Default)]
struct Listing {
    files: BTreeSet<PathBuf>,
    errors: BTreeMap<PathBuf, ManifestError>,
    /// Canonical paths of directories entered and files taken (symlink loops, duplicates).
    seen: BTreeSet<PathBuf>,
}

/// Walks `root` with [`super::files`]' rules (kept in step with `Walk` there).
fn walk(root: &Path) -> Listing {
    let mut listing = Listing::default();
    walk_dir(root, 0, &mut listing);
    listing
}

fn walk_dir(dir: &Path, depth: usize, listing: &mut Listing) {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if !listing.seen.insert(canonical) {
        return;
    }
    if depth > MAX_WALK_DEPTH {
        listing.errors.insert(
            dir.to_path_buf(),
            ManifestError::file(
                dir,
                format!("nested deeper than {MAX_WALK_DEPTH} directories"),
            ),
        );
        return;
    }
    let names = match std::fs::read_dir(dir).and_then(|rd| {
        rd.map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
    }) {
        Ok(mut names) => {
            names.sort();
            names
        }
        Err(e) => {
            let message = match e.kind() {
                std::io::ErrorKind::NotFound => "no such directory".to_string(),
                _ => format!("cannot list: {e}"),
            };
            listing
                .errors
                .insert(dir.to_path_buf(), ManifestError::file(dir, message));
            return;
        }
    };
    for name in names {
        if is_hidden(&name) {
            continue;
        }
        let path = dir.join(&name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk_dir(&path, depth + 1, listing),
            Ok(meta) if meta.is_file() && is_manifest_name(&path) => {
                let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if listing.seen.insert(canonical) {
                    listing.files.insert(path);
                }
            }
            Ok(_) => {}
            // A dangling link that looks like a manifest: reading it reports the problem.
            Err(_) if is_manifest_name(&path) => {
                listing.files.insert(path);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE_A: &str = "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: { name: a }\nspec: { ref: 127.0.0.1:5000/a:1 }\n";
    const IMAGE_B: &str = "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: { name: b }\nspec: { ref: 127.0.0.1:5000/b:1 }\n";
    const BROKEN: &str = "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: { name: a }\nspec: { nope: 1 }\n";

    fn names(s: &DesiredSnapshot) -> Vec<String> {
        s.desired.images.keys().map(|k| k.name.clone()).collect()
    }

    fn file(dir: &Path, name: &str) -> PathBuf {
        std::path::absolute(dir.join(name)).unwrap()
    }

    fn batch_of(paths: &[PathBuf]) -> Batch {
        Batch {
            files: paths.iter().cloned().collect(),
            ..Batch::default()
        }
    }

    #[test]
    fn initial_load_reads_every_manifest_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), IMAGE_A).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), IMAGE_B).unwrap();
        std::fs::write(dir.path().join(".a.yaml.swp"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("a.yaml~"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("4913"), "").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/c.yaml"), "garbage: [").unwrap();
        let w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        let s = w.snapshot();
        assert_eq!(names(&s), ["a", "b"]);
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert!(s.complete);
        assert_eq!(s.generation, 1);
    }

    #[test]
    fn initial_load_fails_only_for_the_directory_itself() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            ManifestDirWatcher::initial_load(&missing),
            Err(WatchError::Dir { .. })
        ));
        std::fs::write(dir.path().join("f.yaml"), IMAGE_A).unwrap();
        let err = ManifestDirWatcher::initial_load(dir.path().join("f.yaml")).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn a_file_broken_at_startup_makes_the_snapshot_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), BROKEN).unwrap();
        std::fs::write(dir.path().join("b.yaml"), IMAGE_B).unwrap();
        let mut w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        let s = w.snapshot();
        assert_eq!(names(&s), ["b"]);
        assert!(!s.complete);
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].location.contains("a.yaml"), "{:?}", s.errors);

        // Fixed: complete, the error is gone.
        let a = file(dir.path(), "a.yaml");
        std::fs::write(&a, IMAGE_A).unwrap();
        let s = w.update(batch_of(&[a])).expect("a snapshot");
        assert_eq!(names(&s), ["a", "b"]);
        assert!(s.complete);
        assert!(s.errors.is_empty());
        assert_eq!(s.generation, 2);
    }

    #[test]
    fn a_file_that_breaks_keeps_its_last_good_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(dir.path(), "a.yaml");
        std::fs::write(&a, IMAGE_A).unwrap();
        let mut w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        let before = w.snapshot();

        std::fs::write(&a, BROKEN).unwrap();
        let s = w
            .update(batch_of(std::slice::from_ref(&a)))
            .expect("the error is news");
        assert!(
            Arc::ptr_eq(&s.desired, &before.desired),
            "desired state unchanged"
        );
        assert_eq!(names(&s), ["a"]);
        assert!(s.complete, "the last good version is known");
        assert!(s.errors[0].message.contains("nope"), "{:?}", s.errors);

        // The same broken content again: nothing new.
        assert_eq!(w.update(batch_of(std::slice::from_ref(&a))), None);
    }

    #[test]
    fn removing_a_file_drops_its_manifests_and_rereading_equal_content_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(dir.path(), "a.yaml");
        let b = file(dir.path(), "b.yaml");
        std::fs::write(&a, IMAGE_A).unwrap();
        std::fs::write(&b, IMAGE_B).unwrap();
        let mut w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        assert_eq!(
            w.update(Batch {
                full: true,
                ..Batch::default()
            }),
            None
        );

        std::fs::remove_file(&b).unwrap();
        let s = w.update(batch_of(&[b])).expect("b is gone");
        assert_eq!(names(&s), ["a"]);
        assert!(s.complete);
    }

    #[test]
    fn a_cross_file_clash_keeps_the_previous_desired_state() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(dir.path(), "a.yaml");
        let b = file(dir.path(), "b.yaml");
        std::fs::write(&a, IMAGE_A).unwrap();
        let mut w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        // b declares Image/a again: a duplicate, reported on the later file.
        std::fs::write(&b, IMAGE_A).unwrap();
        let s = w
            .update(batch_of(std::slice::from_ref(&b)))
            .expect("the clash is news");
        assert_eq!(names(&s), ["a"]);
        assert_eq!(s.errors.len(), 1);
        assert!(s.errors[0].location.contains("b.yaml"), "{:?}", s.errors);
        assert!(s.errors[0].message.contains("duplicate"), "{:?}", s.errors);

        std::fs::write(&b, IMAGE_B).unwrap();
        let s = w.update(batch_of(&[b])).expect("resolved");
        assert_eq!(names(&s), ["a", "b"]);
        assert!(s.errors.is_empty());
    }

    #[test]
    fn a_failed_first_build_is_never_complete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), IMAGE_A).unwrap();
        std::fs::write(dir.path().join("b.yaml"), IMAGE_A).unwrap();
        let w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        let s = w.snapshot();
        assert!(s.desired.images.is_empty());
        assert!(
            !s.complete,
            "an empty desired state from a failed build must not prune"
        );
    }

    #[test]
    fn a_vanished_directory_drops_the_files_below_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.yaml"), IMAGE_B).unwrap();
        std::fs::write(dir.path().join("a.yaml"), IMAGE_A).unwrap();
        let mut w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        std::fs::remove_dir_all(dir.path().join("sub")).unwrap();
        let mut batch = Batch::default();
        w.classify_path(file(dir.path(), "sub"), &mut batch);
        let s = w.update(batch).expect("sub is gone");
        assert_eq!(names(&s), ["a"]);
    }

    #[test]
    fn the_root_vanishing_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("m");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a.yaml"), IMAGE_A).unwrap();
        let mut w = ManifestDirWatcher::initial_load(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let s = w
            .update(Batch {
                full: true,
                ..Batch::default()
            })
            .expect("an error is news");
        assert_eq!(names(&s), ["a"]);
        assert!(!s.complete);
        assert!(
            s.errors[0].message.contains("no such directory"),
            "{:?}",
            s.errors
        );
    }

    #[test]
    fn classify_ignores_editor_files_and_hidden_trees() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        let w = ManifestDirWatcher::initial_load(dir.path()).unwrap();
        for name in [
            "4913",
            ".a.yaml.swp",
            "a.yaml~",
            "#a.yaml#",
            ".#a.yaml",
            ".git/x.yaml",
            "a.txt",
        ] {
            let path = file(dir.path(), name);
            std::fs::write(&path, "x").unwrap();
            let mut batch = Batch::default();
            w.classify_path(path, &mut batch);
            assert!(batch.is_empty(), "{name}: {batch:?}");
        }
        let mut batch = Batch::default();
        w.classify_path(file(dir.path(), "new.yml"), &mut batch);
        assert_eq!(batch.files.len(), 1);
    }
}
