//! The owner's state directory and its record of pulled images. A pulled image cannot carry
//! labels, so which resource dockwright pulled it for is written here after each pull and
//! read by `apply --prune` and `dockwright prune`; images dockwright built carry labels and
//! need no record. A lost file only means fewer removals: nothing is removed without a record.
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

    /// Drops every record of an image ID (after it was removed).
    pub fn forget(&self, id: &str) -> Result<(), StateError> {
        self.update(|records| records.retain(|r| r.id != id))
    }

    fn update(&self, change: impl FnOnce(&mut Vec<ImageRecord>)) -> Result<(), StateError> {
        let _held = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        with_lock(&self.dir, || {
            let path = self.file();
            let mut file: RecordsFile = read_json(&path)?;
            change(&mut file.pulled);
            file.pulled.sort();
            file.pulled.dedup();
            write_json(&path, &file)
        })
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
