//! Image pulls: `POST /images/create` with the canonical reference split into repository and
//! tag (or digest), the progress stream forwarded to a [`PullProgress`], failures classified
//! (not found / unauthorized / daemon). Credentials are a parameter, filled by a later issue.

use std::collections::HashMap;

use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

use super::errors::pull_error;
use super::progress::PullProgress;
use super::Docker;
use crate::execute::{ActionError, ErrorKind};
use crate::reference::Reference;

/// Pulls `reference` (canonical form). `credentials` is sent as `X-Registry-Auth` when given;
/// it never appears in errors or logs. Errors read `pull <reference>: <why>`, complete as they
/// are: reports print them without naming the action again.
pub(crate) async fn pull(
    docker: &Docker,
    reference: &str,
    credentials: Option<DockerCredentials>,
    progress: Option<&dyn PullProgress>,
) -> Result<(), ActionError> {
    let parsed = Reference::parse(reference)
        .map_err(|e| ActionError::new(ErrorKind::NotFound, format!("pull {reference}: {e}")))?;
    let repository = parsed.repository();
    // A digest wins over a tag: `fromImage=repo&tag=sha256:...` pulls exactly that manifest.
    let tag = parsed
        .digest
        .clone()
        .or(parsed.tag.clone())
        .unwrap_or_else(|| "latest".to_string());
    let options = CreateImageOptionsBuilder::new()
        .from_image(&repository)
        .tag(&tag)
        .build();
    let mut stream = docker.client.create_image(Some(options), None, credentials);
    let mut totals: HashMap<String, u64> = HashMap::new();
    let mut result = Ok(());
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                let (Some(progress), Some(layer)) = (progress, info.id.as_deref()) else {
                    continue;
                };
                let status = info.status.as_deref().unwrap_or_default();
                let detail = info.progress_detail.as_ref();
                let current = detail
                    .and_then(|d| d.current)
                    .and_then(|c| u64::try_from(c).ok());
                let total = detail
                    .and_then(|d| d.total)
                    .and_then(|t| u64::try_from(t).ok());
                match (status, current, total) {
                    ("Downloading", Some(current), Some(total)) if total > 0 => {
                        totals.insert(layer.to_string(), total);
                        progress.update(reference, layer, current, total);
                    }
                    ("Download complete" | "Pull complete" | "Already exists", _, _) => {
                        if let Some(total) = totals.get(layer) {
                            progress.update(reference, layer, *total, *total);
                        }
                    }
                    _ => {}
                }
            }
            Err(error) => {
                result = Err(pull_error(reference, &error));
                break;
            }
        }
    }
    if let Some(progress) = progress {
        progress.done(reference);
    }
    if result.is_ok() {
        tracing::debug!(reference, "pulled");
    }
    result
}
