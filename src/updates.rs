//! Following moving tags (`updateInterval`, `minAge`), the bookkeeping half: which tags are
//! due for a registry digest check, what each check saw and since when, and which digests are
//! old enough to act on. Pure (the caller passes the clock); the checks themselves are the
//! Docker adapter's [`crate::docker::check_updates`].
//!
//! How it reaches the planner, which stays pure: before planning, the caller runs the due
//! checks, then puts [`UpdateTracker::due_digests`] into
//! [`crate::observed::ObservedImages::registry_digests`]. The planner pulls a reference whose
//! due digest the local image does not carry. The agent keeps one tracker in memory and calls
//! the check with `every_time = false` (each tag checked every `updateInterval`); `apply` has
//! no memory between runs, so it checks every tag with an `updateInterval` on every run and
//! keeps the first-seen times for `minAge` in the owner's state file (`updates.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::desired::{DesiredImage, DesiredState};
use crate::image_records::{read_json, with_lock, write_json, StateError};

/// What the last checks of one reference saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tracked {
    /// Registry digest seen last.
    digest: Option<String>,
    /// When that digest was first seen (Unix seconds).
    first_seen: u64,
    /// When the reference was last checked, successfully or not (Unix seconds).
    last_checked: u64,
}

/// Digests seen per canonical tag reference. Owned by the agent (in memory) or by one
/// `apply` (loaded from and saved to the state directory).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateTracker {
    #[serde(default)]
    references: BTreeMap<String, Tracked>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl UpdateTracker {
    /// The images whose registry digest should be checked now: those with an
    /// `updateInterval` never checked or last checked at least that long ago; with
    /// `every_time`, all of them.
    pub fn due_checks<'a>(
        &self,
        desired: &'a DesiredState,
        now: SystemTime,
        every_time: bool,
    ) -> Vec<&'a DesiredImage> {
        let now = secs(now);
        desired
            .images
            .values()
            .filter(|image| {
                let Some(update) = image.update else {
                    return false;
                };
                if every_time {
                    return true;
                }
                self.references.get(&image.reference).is_none_or(|t| {
                    now.saturating_sub(t.last_checked) >= update.interval.as_secs().max(1)
                })
            })
            .collect()
    }

    /// Records what a check of `reference` saw at `now`.
    pub fn record(&mut self, reference: &str, digest: &str, now: SystemTime) {
        let now = secs(now);
        let entry = self.references.entry(reference.to_string()).or_default();
        if entry.digest.as_deref() != Some(digest) {
            entry.digest = Some(digest.to_string());
            entry.first_seen = now;
        }
        entry.last_checked = now;
    }

    /// Records a failed check (the next one waits a full interval, like a success).
    pub fn record_failure(&mut self, reference: &str, now: SystemTime) {
        self.references
            .entry(reference.to_string())
            .or_default()
            .last_checked = secs(now);
    }

    /// The digest of every declared tag with an `updateInterval` whose latest digest has
    /// been seen for at least its `minAge` — what the planner may pull.
    pub fn due_digests(&self, desired: &DesiredState, now: SystemTime) -> BTreeMap<String, String> {
        let now = secs(now);
        desired
            .images
            .values()
            .filter_map(|image| {
                let update = image.update?;
                let tracked = self.references.get(&image.reference)?;
                let digest = tracked.digest.clone()?;
                let age = Duration::from_secs(now.saturating_sub(tracked.first_seen));
                (age >= update.min_age.unwrap_or_default())
                    .then(|| (image.reference.clone(), digest))
            })
            .collect()
    }

    /// When a held-back digest of `reference` becomes due, if one is held back.
    pub fn held_until(&self, image: &DesiredImage) -> Option<SystemTime> {
        let min_age = image.update?.min_age?;
        let tracked = self.references.get(&image.reference)?;
        tracked.digest.as_ref()?;
        let due = UNIX_EPOCH + Duration::from_secs(tracked.first_seen) + min_age;
        Some(due)
    }

    /// Forgets references no longer declared with an `updateInterval`.
    pub fn retain_declared(&mut self, desired: &DesiredState) {
        self.references.retain(|reference, _| {
            desired
                .images
                .values()
                .any(|i| i.update.is_some() && &i.reference == reference)
        });
    }

    /// `updates.json` in a state directory.
    pub fn file_in(dir: &Path) -> PathBuf {
        dir.join("updates.json")
    }

    /// Loads the tracker kept in `dir` (empty when there is none).
    pub fn load(dir: &Path) -> Result<Self, StateError> {
        read_json(&Self::file_in(dir))
    }

    /// Saves the tracker into `dir`, under the directory's lock.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        with_lock(dir, || write_json(&Self::file_in(dir), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PullPolicy;
    use crate::desired::{Kind, Origin, ResourceKey, UpdatePolicy};

    const REF: &str = "r.io/app:stable";

    fn desired(interval: u64, min_age: Option<u64>) -> DesiredState {
        let key = ResourceKey::new(Kind::Image, "default", "app");
        let image = DesiredImage {
            key: key.clone(),
            origin: Origin::File {
                path: "/m.yaml".into(),
                document: 1,
            },
            reference: REF.into(),
            pull_policy: PullPolicy::IfNotPresent,
            build: None,
            tags: Vec::new(),
            push: false,
            registry_auth: None,
            update: Some(UpdatePolicy {
                interval: Duration::from_secs(interval),
                min_age: min_age.map(Duration::from_secs),
            }),
        };
        let mut state = DesiredState::default();
        state.images.insert(key, image);
        state
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    #[test]
    fn checks_are_due_once_per_interval_or_every_time() {
        let d = desired(300, None);
        let mut t = UpdateTracker::default();
        assert_eq!(t.due_checks(&d, at(0), false).len(), 1, "never checked");
        t.record(REF, "sha256:a", at(0));
        assert!(t.due_checks(&d, at(299), false).is_empty());
        assert_eq!(t.due_checks(&d, at(300), false).len(), 1);
        assert_eq!(
            t.due_checks(&d, at(1), true).len(),
            1,
            "apply checks every time"
        );
        t.record_failure(REF, at(300));
        assert!(t.due_checks(&d, at(301), false).is_empty());
    }

    #[test]
    fn min_age_holds_a_new_digest_back_until_it_is_old_enough() {
        let d = desired(60, Some(600));
        let mut t = UpdateTracker::default();
        t.record(REF, "sha256:a", at(0));
        assert!(t.due_digests(&d, at(599)).is_empty());
        assert_eq!(
            t.due_digests(&d, at(600)).get(REF).map(String::as_str),
            Some("sha256:a")
        );
        // Seeing the same digest again keeps its first-seen time; a newer one restarts it.
        t.record(REF, "sha256:a", at(700));
        assert!(t.due_digests(&d, at(700)).contains_key(REF));
        t.record(REF, "sha256:b", at(800));
        assert!(t.due_digests(&d, at(1399)).is_empty(), "b is too young");
        assert_eq!(
            t.held_until(d.images.values().next().unwrap()),
            Some(at(1400))
        );
        assert_eq!(
            t.due_digests(&d, at(1400)).get(REF).map(String::as_str),
            Some("sha256:b")
        );
    }

    #[test]
    fn without_min_age_a_digest_is_due_at_once_and_state_round_trips() {
        let d = desired(60, None);
        let mut t = UpdateTracker::default();
        t.record(REF, "sha256:a", at(0));
        assert_eq!(t.due_digests(&d, at(0)).len(), 1);
        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path()).unwrap();
        assert_eq!(UpdateTracker::load(dir.path()).unwrap(), t);
        t.retain_declared(&DesiredState::default());
        assert!(t.due_digests(&d, at(0)).is_empty());
    }
}
