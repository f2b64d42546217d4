//! Local image housekeeping: who uses which image (one unfiltered container list, asked only
//! when something may be removed), removing an image dockwright owns without ever forcing,
//! and [`ImageObserver`], the observation that adds what image decisions need beyond the two
//! list calls of a pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveImageOptionsBuilder};

use super::errors::{action_error, is_not_found, status_of};
use super::registry::{check_updates, CheckFailure};
use super::Docker;
use crate::credentials::Credentials;
use crate::desired::DesiredState;
use crate::execute::{ActionError, ErrorKind};
use crate::image_records::ImageRecords;
use crate::observed::ObservedState;
use crate::updates::UpdateTracker;
use crate::Error;

impl Docker {
    /// Image ID → IDs of every container (any owner, running or not) created from it.
    pub async fn image_users(&self) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let list = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|source| Error::Docker {
                operation: "list containers (image users)".into(),
                source,
            })?;
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in list {
            if let (Some(image), Some(id)) = (c.image_id, c.id) {
                users.entry(image).or_default().push(id);
            }
        }
        Ok(users)
    }
}

/// Removes image `id`: untags each of `references` that still names it, then removes the
/// image by ID if it is left without tags (and still exists). Never forced: an image a
/// container uses, or one with dependent child images, makes the daemon refuse, and that
/// refusal is the action's error.
pub(crate) async fn remove_image(
    docker: &Docker,
    id: &str,
    references: &[String],
) -> Result<(), ActionError> {
    let options = || {
        RemoveImageOptionsBuilder::new()
            .force(false)
            .noprune(false)
            .build()
    };
    for reference in references {
        match docker.client.inspect_image(reference).await {
            Ok(image) if image.id.as_deref() == Some(id) => {}
            Ok(_) => continue,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(action_error("inspect", reference, &e)),
        }
        match docker
            .client
            .remove_image(reference, Some(options()), None)
            .await
        {
            Ok(_) => tracing::debug!(reference, "untagged"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(refusal(reference, &e)),
        }
    }
    let tags = match docker.client.inspect_image(id).await {
        Ok(image) => image.repo_tags.unwrap_or_default(),
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(action_error("inspect", id, &e)),
    };
    if !tags.is_empty() {
        // Someone else's tag keeps it: it is theirs now.
        tracing::info!(image = id, ?tags, "image kept: tagged by others");
        return Ok(());
    }
    match docker.client.remove_image(id, Some(options()), None).await {
        Ok(_) => {
            tracing::debug!(image = id, "image removed");
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(refusal(id, &e)),
    }
}

fn refusal(target: &str, error: &bollard::errors::Error) -> ActionError {
    let mut e = action_error("remove image", target, error);
    if status_of(error) == Some(409) {
        e.kind = ErrorKind::Conflict;
    }
    e
}

/// The observation for image-aware passes: the list calls of [`Docker::observe`], plus
/// the registry digests due (checked before the pass), and — only when `prune` is set — the
/// image users (one more list call) and the pulled-image records. With records, the notes of
/// pulls an earlier process began and never recorded are settled first (see
/// [`ImageRecords::settle`]). Owned by one `apply`,
/// `diff` or `prune`; the agent builds one per pass.
#[derive(Debug)]
pub struct ImageObserver {
    /// The daemon.
    pub docker: Docker,
    /// Registry digests due for update, by canonical reference.
    pub registry_digests: BTreeMap<String, String>,
    /// Observe image users and records, so image removals can be planned.
    pub prune: bool,
    /// Where pulls are recorded.
    pub records: Option<Arc<ImageRecords>>,
}

/// Records the pulls a killed process left unrecorded, now that `observed` says what each
/// reference names (see [`ImageRecords::settle`]); failures are logged, never fatal.
pub fn settle_pulls(records: &ImageRecords, observed: &ObservedState) {
    let resolve = |reference: &str| observed.images.resolve(reference).map(str::to_string);
    match records.settle(resolve) {
        Ok(added) => {
            for r in added {
                tracing::info!(reference = %r.reference, image = %r.id, resource = %r.resource, "recorded a pull an earlier run finished");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot settle the pulled-image records"),
    }
}

#[async_trait]
impl crate::converge::Observe for ImageObserver {
    async fn observe(&self, owner: &str) -> crate::Result<ObservedState> {
        let mut observed = self.docker.observe(owner).await?;
        observed.images.registry_digests = self.registry_digests.clone();
        if let Some(records) = &self.records {
            settle_pulls(records, &observed);
        }
        if self.prune {
            observed.images.users = Some(self.docker.image_users().await?);
            if let Some(records) = &self.records {
                match records.load() {
                    Ok(list) => observed.images.records = list,
                    // Without records nothing pulled is removed; say so and carry on.
                    Err(e) => tracing::warn!(error = %e, "cannot read the pulled-image records"),
                }
            }
        }
        Ok(observed)
    }

    async fn default_concurrency(&self) -> usize {
        crate::converge::Observe::default_concurrency(&self.docker).await
    }
}

impl ImageObserver {
    /// The observer for one `apply` or `diff`. `apply` has no memory between runs, so every
    /// image with an `updateInterval` has its registry digest checked now; the first-seen
    /// times `minAge` needs are kept in the records' state directory (`updates.json`).
    /// Returns the observer and the checks that failed (to report; the rest goes on).
    pub async fn for_pass(
        docker: Docker,
        credentials: &Credentials,
        desired: &DesiredState,
        prune: bool,
        records: Option<Arc<ImageRecords>>,
    ) -> (Self, Vec<CheckFailure>) {
        let mut failures = Vec::new();
        let mut registry_digests = BTreeMap::new();
        if desired.images.values().any(|i| i.update.is_some()) {
            let dir = records.as_ref().map(|r| r.dir().to_path_buf());
            let mut tracker = match dir.as_deref().map(UpdateTracker::load) {
                Some(Ok(tracker)) => tracker,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "starting the digest history afresh");
                    UpdateTracker::default()
                }
                None => UpdateTracker::default(),
            };
            let now = SystemTime::now();
            failures = check_updates(&docker, credentials, desired, &mut tracker, now, true).await;
            tracker.retain_declared(desired);
            if let Some(dir) = &dir {
                if let Err(e) = tracker.save(dir) {
                    tracing::warn!(error = %e, "cannot keep the digest history; minAge restarts next run");
                }
            }
            registry_digests = tracker.due_digests(desired, now);
        }
        let observer = Self {
            docker,
            registry_digests,
            prune,
            records,
        };
        (observer, failures)
    }
}
