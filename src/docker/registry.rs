//! Registry-facing image calls besides pulls: tag, push, and the registry digest of a tag
//! (`GET /distribution/{name}/json`, API 1.30+: the daemon asks the registry for the tag's
//! descriptor — the manifest list's digest for a multi-arch tag, else the manifest's — with
//! our credentials, without fetching layers). Plus [`check_updates`], which runs the due
//! digest checks for the [`UpdateTracker`].

use std::time::SystemTime;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use futures::StreamExt;

use super::errors::{action_error, registry_error};
use super::Docker;
use crate::credentials::{Credentials, RegistryCredentials};
use crate::desired::{DesiredState, ResourceKey};
use crate::execute::{ActionError, ErrorKind};
use crate::reference::Reference;
use crate::updates::UpdateTracker;

fn parse(reference: &str) -> Result<Reference, ActionError> {
    Reference::parse(reference).map_err(|e| ActionError::new(ErrorKind::NotFound, e.to_string()))
}

/// Tags the image `source` names as `target` (both canonical).
pub(crate) async fn tag(docker: &Docker, source: &str, target: &str) -> Result<(), ActionError> {
    let parsed = parse(target)?;
    let tag = parsed.tag.clone().unwrap_or_else(|| "latest".into());
    let options = TagImageOptionsBuilder::new()
        .repo(&parsed.repository())
        .tag(&tag)
        .build();
    docker
        .client
        .tag_image(source, Some(options))
        .await
        .map_err(|e| action_error(&format!("tag {source} as"), target, &e))?;
    tracing::debug!(source, target, "tagged");
    Ok(())
}

/// Pushes `reference` (canonical, a tag) to its registry.
pub(crate) async fn push(
    docker: &Docker,
    reference: &str,
    credentials: Option<DockerCredentials>,
) -> Result<(), ActionError> {
    let parsed = parse(reference)?;
    let tag = parsed.tag.clone().unwrap_or_else(|| "latest".into());
    let options = PushImageOptionsBuilder::new().tag(&tag).build();
    let mut stream = docker
        .client
        .push_image(&parsed.repository(), Some(options), credentials);
    while let Some(item) = stream.next().await {
        if let Err(error) = item {
            return Err(registry_error("push", reference, &error));
        }
    }
    tracing::debug!(reference, "pushed");
    Ok(())
}

impl Docker {
    /// The registry's descriptor digest for a tag (`sha256:...`), asked through the daemon.
    pub async fn registry_digest(
        &self,
        reference: &str,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<String, ActionError> {
        let inspect = self
            .client
            .inspect_registry_image(reference, credentials.map(RegistryCredentials::to_docker))
            .await
            .map_err(|e| registry_error("check", reference, &e))?;
        inspect.descriptor.digest.ok_or_else(|| {
            ActionError::new(
                ErrorKind::Daemon,
                format!("check {reference}: the registry answered without a digest"),
            )
        })
    }
}

/// A registry digest check that failed, for the report (the resource still converges with
/// what it has).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckFailure {
    /// The `Image` resource.
    pub resource: ResourceKey,
    /// What went wrong (never containing credentials).
    pub error: ActionError,
}

/// Checks the registry digest of every tag due (see [`UpdateTracker::due_checks`]; with
/// `every_time`, every tag with an `updateInterval`), records what was seen in `tracker`,
/// and returns the failures. Checks run one after the other: they are few and cheap.
pub async fn check_updates(
    docker: &Docker,
    credentials: &Credentials,
    desired: &DesiredState,
    tracker: &mut UpdateTracker,
    now: SystemTime,
    every_time: bool,
) -> Vec<CheckFailure> {
    let mut failures = Vec::new();
    for image in tracker.due_checks(desired, now, every_time) {
        let creds = match credentials.for_reference(&image.reference, image.registry_auth.as_ref())
        {
            Ok(c) => c,
            Err(e) => {
                tracker.record_failure(&image.reference, now);
                failures.push(CheckFailure {
                    resource: image.key.clone(),
                    error: ActionError::new(ErrorKind::Io, e.to_string()),
                });
                continue;
            }
        };
        let span = tracing::info_span!("check_digest", resource = %image.key, reference = %image.reference);
        let check = docker.registry_digest(&image.reference, creds.as_ref());
        match tracing::Instrument::instrument(check, span).await {
            Ok(digest) => {
                tracing::debug!(resource = %image.key, %digest, "registry digest");
                tracker.record(&image.reference, &digest, now);
            }
            Err(error) => {
                tracker.record_failure(&image.reference, now);
                failures.push(CheckFailure {
                    resource: image.key.clone(),
                    error,
                });
            }
        }
    }
    failures
}
