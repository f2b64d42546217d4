//! The owner's state directory and its record of pulled images. A pulled image cannot carry
//! labels, so which resource dockwright pulled it for is written here after each pull and
//! read by `apply --prune` and `dockwright prune`; images dockwright built carry labels and
//! need no record. A lost file only means fewer removals: nothing is removed without a record.
//!
//! A pull is recorded in two steps, so a crash between the daemon finishing it and the
//! record being written loses nothing: [`ImageRecords::begin_pull`] notes the pull and the
//! image the reference named before it, [`ImageRecords::finish_pull`] turns the note into
//! the record. A note left by a killed process is settled by the next observation
//! ([`ImageRecords::settle`]): when the reference names another image than before the pull,
//! that image is recorded as pulled; else the pull never finished and the note is dropped.
//!
//! Location: `$XDG_STATE_HOME/dockwright/<owner>/` (default `~/.local/state/...`), one file
//! per concern (`images.json` here, `updates.json` for [`crate::updates`]). Writes are
//! atomic (temp file + rename) under an exclusive lock on `lock`, so an `apply` and an agent
//! of the same owner never lose each other's records.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::observed::ImageRecord;

/// Why the state directory could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state file {}: {message}", path.display())]
pub struct StateError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// `$XDG_STATE_HOME/dockwright/<owner>` (or `~/.local/state/dockwright/<owner>`); characters
/// outside `[A-Za-z0-9._-]` in the owner become `_`. `None` without `XDG_STATE_HOME` and
/// `HOME`.
pub fn default_state_dir(owner: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("state"))
        })?;
    let safe: String = owner
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(base.join("dockwright").join(safe))
}

/// Runs `f` holding the directory's exclusive lock (in-process callers are serialised by the
/// caller's mutex; other processes by the file lock).
pub(crate) fn with_lock<T>(
    dir: &Path,
    f: impl FnOnce() -> Result<T, StateError>,
) -> Result<T, StateError> {
    let lock_path = dir.join("lock");
    let fail = |e: std::io::Error| StateError {
        path: lock_path.clone(),
        message: e.to_string(),
    };
    fs::create_dir_all(dir).map_err(fail)?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(fail)?;
    lock.lock().map_err(fail)?;
    let result = f();
    let _ = lock.unlock();
    result
}

/// Reads a JSON state file; a missing file is `T::default()`.
pub(crate) fn read_json<T: for<'de> Deserialize<'de> + Default>(
    path: &Path,
) -> Result<T, StateError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError {
            path: path.to_path_buf(),
            message: format!("unreadable ({e}); remove it to start afresh"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(StateError {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Writes a JSON state file atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let fail = |e: std::io::Error| StateError {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let text = serde_json::to_vec_pretty(value).map_err(|e| StateError {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    let mut file = File::create(&tmp).map_err(fail)?;
    file.write_all(&text).map_err(fail)?;
    file.write_all(b"\n").map_err(fail)?;
    file.sync_all().map_err(fail)?;
    fs::rename(&tmp, path).map_err(fail)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RecordsFile {
    #[serde(default)]
    pulled: Vec<ImageRecord>,
    /// Pulls begun and not known to be finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<PendingPull>,
}

/// A pull dockwright started: settled into an [`ImageRecord`] when it finished, dropped when
/// it did not.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PendingPull {
    /// The resource the pull serves.
    pub resource: crate::desired::ResourceKey,
    /// Canonical reference pulled.
    pub reference: String,
    /// The image ID the reference named before the pull (`None`: not present).
    pub before: Option<String>,
    /// The process that pulls ([`this_process`]): its notes are settled only once it is gone,
    /// so an agent and an `apply` of one owner never settle each other's running pulls.
    /// `None` (notes of older versions): settled at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The source whose plan pulls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// This process, as `pid:start-time`: the start time (from `/proc`) tells a restarted
/// process that got the same PID — PID 1 of every container — from the one that wrote a note.
/// `None` where `/proc` cannot say.
pub fn this_process() -> Option<String> {
    process_token(std::process::id())
}

fn process_token(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so count from the
    // last `)`; the start time is field 22, the 20th after it.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let start = after_comm.split_whitespace().nth(19)?;
    Some(format!("{pid}:{start}"))
}

/// True when the process that wrote `token` still runs (same PID, same start time).
fn still_running(token: &str) -> bool {
    let Some(pid) = token.split(':').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    process_token(pid).as_deref() == Some(token)
}

/// The pulled-image records of one owner. Shared by the runner (writes after pulls and image
/// removals) and the observer (reads before planning a prune).
#[derive(Debug)]
pub struct ImageRecords {
    dir: PathBuf,
    guard: Mutex<()>,
}

impl ImageRecords {
    /// Records kept in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            guard: Mutex::new(()),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self) -> PathBuf {
        self.dir.join("images.json")
    }

    /// Every record, sorted.
    pub fn load(&self) -> Result<Vec<ImageRecord>, StateError> {
        let file: RecordsFile = read_json(&self.file())?;
        Ok(file.pulled)
    }

    /// Adds a record (idempotent).
    pub fn add(&self, record: ImageRecord) -> Result<(), StateError> {
        self.update(|records| {
            if !records.contains(&record) {
                records.push(record);
            }
        })
    }

    /// Notes a pull about to start (before the daemon is asked), replacing an earlier note of
    /// the same resource and reference.
    pub fn begin_pull(&self, pending: PendingPull) -> Result<(), StateError> {
        self.update_file(|file| {
            file.pending
                .retain(|p| (&p.resource, &p.reference) != (&pending.resource, &pending.reference));
            file.pending.push(pending);
        })
    }

    /// Records a finished pull and drops its note.
    pub fn finish_pull(&self, record: ImageRecord) -> Result<(), StateError> {
        self.update_file(|file| {
            file.pending
                .retain(|p| (&p.resource, &p.reference) != (&record.resource, &record.reference));
            if !file.pulled.contains(&record) {
                file.pulled.push(record);
            }
        })
    }

    /// Settles the notes of pulls whose process ended before [`Self::finish_pull`]:
    /// `resolve` gives the image a reference names now. A reference that names another image
    /// than before its pull was pulled (the daemon finished it): that image is recorded. Any
    /// other note is dropped. Returns the records added; writes only when there were notes.
    ///
    /// Notes of a process that still runs (this one included) are left alone: its pull may be
    /// under way, and its own `finish_pull` records it.
    pub fn settle(
        &self,
        resolve: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<ImageRecord>, StateError> {
        let orphaned = |p: &PendingPull| !p.process.as_deref().is_some_and(still_running);
        let file: RecordsFile = read_json(&self.file())?;
        if !file.pending.iter().any(orphaned) {
            return Ok(Vec::new());
        }
        let mut added = Vec::new();
        self.update_file(|file| {
            let (orphans, running): (Vec<_>, Vec<_>) = std::mem::take(&mut file.pending)
                .into_iter()
                .partition(orphaned);
            file.pending = running;
            for pending in orphans {
                let Some(now) = resolve(&pending.reference) else {
                    continue;
                };
                if pending.before.as_deref() == Some(now.as_str()) {
                    continue;
                }
                let record = ImageRecord {
                    resource: pending.resource,
                    reference: pending.reference,
                    id: now,
                    source: pending.source,
                };
                if !file.pulled.contains(&record) {
                    file.pulled.push(record.clone());
                    added.push(record);
                }
            }
        })?;
        Ok(added)
    }

    /// Drops every record of an image ID (after it was removed).
    pub fn forget(&self, id: &str) -> Result<(), StateError> {
        self.update(|records| records.retain(|r| r.id != id))
    }

    fn update(&self, change: impl FnOnce(&mut Vec<ImageRecord>)) -> Result<(), StateError> {
        self.update_file(|file| change(&mut file.pulled))
    }

    fn update_file(&self, change: impl FnOnce(&mut RecordsFile)) -> Result<(), StateError> {
        let _held = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        with_lock(&self.dir, || {
            let path = self.file();
            let mut file: RecordsFile = read_json(&path)?;
            change(&mut file);
            file.pulled.sort();
            file.pulled.dedup();
            file.pending.sort();
            file.pending.dedup();
            write_json(&path, &file)
        })
    }

    /// The notes of pulls not known to be finished.
    pub fn pending(&self) -> Result<Vec<PendingPull>, StateError> {
        let file: RecordsFile = read_json(&self.file())?;
        Ok(file.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Kind, ResourceKey};

    fn record(name: &str, id: &str) -> ImageRecord {
        ImageRecord {
            resource: ResourceKey::new(Kind::Image, "default", name),
            reference: format!("r.io/{name}:1"),
            id: id.into(),
            source: None,
        }
    }

    #[test]
    fn records_survive_a_reopen_and_are_forgotten_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let records = ImageRecords::new(dir.path().join("owner"));
        assert!(records.load().unwrap().is_empty());
        records.add(record("b", "sha256:2")).unwrap();
        records.add(record("a", "sha256:1")).unwrap();
        records.add(record("a", "sha256:1")).unwrap();
        let again = ImageRecords::new(dir.path().join("owner"));
        assert_eq!(
            again.load().unwrap(),
            vec![record("a", "sha256:1"), record("b", "sha256:2")]
        );
        again.forget("sha256:1").unwrap();
        assert_eq!(records.load().unwrap(), vec![record("b", "sha256:2")]);
    }

    fn pending(name: &str, before: Option<&str>) -> PendingPull {
        PendingPull {
            resource: ResourceKey::new(Kind::Image, "default", name),
            reference: format!("r.io/{name}:1"),
            before: before.map(str::to_string),
            process: None,
            source: None,
        }
    }

    #[test]
    fn a_finished_pull_is_recorded_and_its_note_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let records = ImageRecords::new(dir.path());
        records.begin_pull(pending("a", None)).unwrap();
        assert_eq!(records.pending().unwrap(), vec![pending("a", None)]);
        records.finish_pull(record("a", "sha256:1")).unwrap();
        assert!(records.pending().unwrap().is_empty());
        assert_eq!(records.load().unwrap(), vec![record("a", "sha256:1")]);
        // Nothing to settle: no write, no change.
        assert!(records.settle(|_| None).unwrap().is_empty());
        assert_eq!(records.load().unwrap(), vec![record("a", "sha256:1")]);
    }

    /// A process killed after the daemon finished the pull and before `finish_pull` left a
    /// note; the next observation records the image the reference names now.
    #[test]
    fn a_pull_cut_short_by_a_crash_is_recorded_when_the_reference_moved() {
        let dir = tempfile::tempdir().unwrap();
        let records = ImageRecords::new(dir.path());
        records.begin_pull(pending("missing", None)).unwrap();
        records
            .begin_pull(pending("moved", Some("sha256:old")))
            .unwrap();
        records
            .begin_pull(pending("same", Some("sha256:same")))
            .unwrap();
        records.begin_pull(pending("never", None)).unwrap();
        let now = |reference: &str| match reference {
            "r.io/missing:1" => Some("sha256:new1".to_string()),
            "r.io/moved:1" => Some("sha256:new2".to_string()),
            "r.io/same:1" => Some("sha256:same".to_string()),
            _ => None,
        };
        let added = ImageRecords::new(dir.path()).settle(now).unwrap();
        let want = vec![
            record("missing", "sha256:new1"),
            record("moved", "sha256:new2"),
        ];
        assert_eq!(added, want);
        assert_eq!(records.load().unwrap(), want);
        // Every note is settled: the unchanged and the unfinished pulls are forgotten.
        assert!(records.pending().unwrap().is_empty());
        assert!(records.settle(now).unwrap().is_empty());
    }

    #[test]
    fn notes_of_a_running_process_are_left_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let records = ImageRecords::new(dir.path());
        let mine = this_process().expect("/proc on Linux");
        let pid = std::process::id();
        // This very process, and a process that had this PID but started at another time
        // (a restarted container's PID 1).
        for (name, process) in [("live", mine.clone()), ("gone", format!("{pid}:1"))] {
            records
                .begin_pull(PendingPull {
                    process: Some(process),
                    ..pending(name, None)
                })
                .unwrap();
        }
        let now = |_: &str| Some("sha256:new".to_string());
        let added = records.settle(now).unwrap();
        assert_eq!(added, vec![record("gone", "sha256:new")]);
        let left = records.pending().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].process.as_deref(), Some(mine.as_str()));
        // Nothing else to settle: no write.
        assert!(records.settle(now).unwrap().is_empty());
    }

    #[test]
    fn files_without_notes_still_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("images.json"),
            r#"{"pulled": [{"resource": {"kind": "Image", "namespace": "default", "name": "a"}, "reference": "r.io/a:1", "id": "sha256:1"}]}"#,
        )
        .unwrap();
        let records = ImageRecords::new(dir.path());
        assert_eq!(records.load().unwrap(), vec![record("a", "sha256:1")]);
        assert!(records.pending().unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("images.json"), "{not json").unwrap();
        let err = ImageRecords::new(dir.path()).load().unwrap_err();
        assert!(err.to_string().contains("images.json"), "{err}");
    }

    #[test]
    fn owners_are_made_safe_for_paths() {
        let dir = default_state_dir("team/a b").unwrap_or_default();
        assert!(
            dir.ends_with("dockwright/team_a_b") || dir.as_os_str().is_empty(),
            "{}",
            dir.display()
        );
    }
}
