//! Containers whose source changed without a recreate. Docker cannot relabel a container, so
//! when a source adopts one created before source labels existed, or takes one over from
//! another source (`--take-over`), the move is written here — container ID → source — and
//! every observation reads it over the `dockwright.dev/source` label. A record is dropped
//! once its container is gone (a recreated container carries the right label itself).
//!
//! Location: `sources.json` in the owner's state directory (see
//! [`crate::image_records::default_state_dir`]), written atomically under the directory's
//! lock. A lost file means adopted containers count as unlabelled again (never removed by
//! another source; adopted again by the source that declares them) and taken-over ones fall
//! back to their label (a name clash again, until `--take-over` is repeated).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::image_records::{read_json, with_lock, write_json, StateError};

#[derive(Debug, Default, Serialize, Deserialize)]
struct AdoptionsFile {
    /// Container ID → source identity.
    #[serde(default)]
    containers: BTreeMap<String, String>,
}

/// The owner's adoption records (one file, shared by every process of the owner).
#[derive(Debug)]
pub struct Adoptions {
    dir: PathBuf,
    /// Serialises this process's writers (other processes: the file lock).
    guard: Mutex<()>,
}

impl Adoptions {
    /// Records kept in `dir` (the owner's state directory).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            guard: Mutex::new(()),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("sources.json")
    }

    /// Container ID → source, as recorded.
    pub fn load(&self) -> Result<BTreeMap<String, String>, StateError> {
        Ok(read_json::<AdoptionsFile>(&self.path())?.containers)
    }

    /// Records that container `id` now belongs to `source`.
    pub fn record(&self, id: &str, source: &str) -> Result<(), StateError> {
        let _g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        with_lock(&self.dir, || {
            let path = self.path();
            let mut file: AdoptionsFile = read_json(&path)?;
            file.containers.insert(id.to_string(), source.to_string());
            write_json(&path, &file)
        })
    }

    /// Drops the records of containers not in `alive` (the owner's containers just listed).
    /// Writes only when something is dropped.
    pub fn forget_except(&self, alive: &dyn Fn(&str) -> bool) -> Result<(), StateError> {
        let _g = self.guard.lock().unwrap_or_else(|e| e.into_inner());
        with_lock(&self.dir, || {
            let path = self.path();
            let mut file: AdoptionsFile = read_json(&path)?;
            let before = file.containers.len();
            file.containers.retain(|id, _| alive(id));
            if file.containers.len() == before {
                return Ok(());
            }
            write_json(&path, &file)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_new_instance_and_are_forgotten_with_their_container() {
        let dir = tempfile::tempdir().unwrap();
        let a = Adoptions::new(dir.path().to_path_buf());
        assert!(a.load().unwrap().is_empty());
        a.record("c1", "/srv/a").unwrap();
        a.record("c2", "team-b").unwrap();
        let b = Adoptions::new(dir.path().to_path_buf());
        assert_eq!(
            b.load().unwrap().get("c1").map(String::as_str),
            Some("/srv/a")
        );
        b.forget_except(&|id| id == "c2").unwrap();
        let left = a.load().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left.get("c2").map(String::as_str), Some("team-b"));
    }
}
