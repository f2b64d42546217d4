//! [`DockerRunner`]: carries out each planned [`Action`] with the daemon calls it needs and
//! nothing more. It decides nothing (the plan did); it only makes every call idempotent where
//! Docker allows (304 and 404 answers that mean "already done" are successes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};

use super::build::BuildOutput;
use super::create::create_body;
use super::errors::{action_error, is_not_found, status_of};
use super::files::files_tar;
use super::progress::PullProgress;
use super::{build, conflict, ensure, images, objects, pull, registry, wait, Docker};
use crate::credentials::Credentials;
use crate::desired::RegistryAuth;
use crate::execute::{ActionError, ActionRunner, ErrorKind};
use crate::image_records::{ImageRecords, PendingPull};
use crate::observed::ImageRecord;
use crate::plan::{Action, CreateSpec, PlannedAction};

/// Default limit of one `AwaitCondition`.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default pause between two inspects while waiting.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long to wait for a stop's answer when the action names no timeout: the container's
/// own `StopTimeout` applies then, which we cannot see without an inspect.
const UNKNOWN_STOP_WAIT: Duration = Duration::from_secs(900);

/// How long a remove waits for a removal someone else already began.
const REMOVAL_WAIT: Duration = Duration::from_secs(60);

/// Runs plan actions against one daemon on behalf of one owner.
///
/// Built by the CLI/agent for a pass (or kept for the agent's lifetime); the executor calls
/// [`ActionRunner::run`] concurrently, so it holds only shared, immutable state.
pub struct DockerRunner {
    docker: Docker,
    owner: String,
    /// Source label of what it creates (empty: none).
    source: String,
    progress: Option<Arc<dyn PullProgress>>,
    build_output: Option<Arc<dyn BuildOutput>>,
    credentials: Credentials,
    records: Option<Arc<ImageRecords>>,
    await_timeout: Duration,
    poll_interval: Duration,
    /// Container name → ID of the container this runner created (or adopted) under it, until
    /// its start runs.
    created: Mutex<HashMap<String, String>>,
}

impl DockerRunner {
    /// A runner that labels what it creates as owned by `owner`.
    pub fn new(docker: Docker, owner: impl Into<String>) -> Self {
        Self {
            docker,
            owner: owner.into(),
            source: String::new(),
            progress: None,
            build_output: None,
            credentials: Credentials::docker_config(None),
            records: None,
            await_timeout: DEFAULT_AWAIT_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            created: Mutex::new(HashMap::new()),
        }
    }

    /// Labels what it creates (networks, volumes; containers and builds carry the label in
    /// their plan) and records what it pulls as declared by `source`.
    pub fn with_source(mut self, source: &crate::source::SourceId) -> Self {
        self.source = source.as_str().to_string();
        self
    }

    fn source(&self) -> Option<String> {
        (!self.source.is_empty()).then(|| self.source.clone())
    }

    /// Reports pull progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn PullProgress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Reports build output to `output` (it always goes to the logs too).
    pub fn with_build_output(mut self, output: Arc<dyn BuildOutput>) -> Self {
        self.build_output = Some(output);
        self
    }

    /// Registry credentials (default: the standard Docker config, see
    /// [`Credentials::docker_config`]).
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Records each pull for its resource in `records` (read by `--prune`); without it,
    /// pulled images are never removed.
    pub fn with_image_records(mut self, records: Arc<ImageRecords>) -> Self {
        self.records = Some(records);
        self
    }

    /// Limits each `AwaitCondition` that names no timeout of its own to `timeout` (default 5
    /// minutes); a rollout's await carries the resource's `healthTimeoutSeconds`.
    pub fn with_await_timeout(mut self, timeout: Duration) -> Self {
        self.await_timeout = timeout;
        self
    }

    /// Polls `AwaitCondition` every `interval` (default 200 ms).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The client.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The owner label value.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Registry credentials to `what` (`pull`, `push`) `reference`, as bollard sends them. A
    /// credentials file that cannot be read fails the action (its error names the call and the
    /// file, never its content).
    fn credentials_for(
        &self,
        planned: &PlannedAction,
        what: &str,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<Option<bollard::auth::DockerCredentials>, ActionError> {
        self.credentials
            .for_resource(&planned.resource)
            .for_reference(reference, auth)
            .map(|c| c.map(|c| c.to_docker()))
            .map_err(|e| ActionError::new(ErrorKind::Io, format!("{what} {reference}: {e}")))
    }

    /// Pulls and records the pull for the resource it served: noted before the daemon is
    /// asked (with the image the reference named then), recorded once the pulled image's ID
    /// is read, so a crash in between leaves a note the next pass settles (see
    /// [`crate::image_records`]).
    async fn pull(
        &self,
        planned: &PlannedAction,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<(), ActionError> {
        let credentials = self.credentials_for(planned, "pull", reference, auth)?;
        let image_id = |reference: &str| {
            let reference = reference.to_string();
            async move {
                self.docker
                    .client
                    .inspect_image(&reference)
                    .await
                    .ok()
                    .and_then(|i| i.id)
            }
        };
        if let Some(records) = &self.records {
            let pending = PendingPull {
                resource: planned.resource.clone(),
                reference: reference.to_string(),
                before: image_id(reference).await,
                process: crate::image_records::this_process(),
                source: self.source(),
            };
            if let Err(e) = records.begin_pull(pending) {
                tracing::warn!(error = %e, reference, "could not note the pull; a crash before it is recorded leaves the image unrecorded");
            }
        }
        pull::pull(
            &self.docker,
            reference,
            credentials,
            self.progress.as_deref(),
        )
        .await?;
        if let Some(records) = &self.records {
            match image_id(reference).await {
                Some(id) => {
                    let record = ImageRecord {
                        resource: planned.resource.clone(),
                        reference: reference.to_string(),
                        id,
                        source: self.source(),
                    };
                    if let Err(e) = records.finish_pull(record) {
                        tracing::warn!(error = %e, reference, "could not record the pull; --prune will not remove this image");
                    }
                }
                None => tracing::warn!(
                    reference,
                    "pulled image not found by its reference; not recorded"
                ),
            }
        }
        Ok(())
    }

    /// Records container `id` as `source`'s (see [`crate::adoptions`]).
    fn adopt(&self, id: &str, name: &str, source: &str) -> Result<(), ActionError> {
        let Some(adoptions) = self.docker.adoptions() else {
            return Err(ActionError::new(
                crate::execute::ErrorKind::Io,
                format!(
                    "adopt {name}: no state directory to record it in (set XDG_STATE_HOME or HOME)"
                ),
            ));
        };
        adoptions.record(id, source).map_err(|e| {
            ActionError::new(crate::execute::ErrorKind::Io, format!("adopt {name}: {e}"))
        })
    }

    async fn remove_image(&self, id: &str, references: &[String]) -> Result<(), ActionError> {
        images::remove_image(&self.docker, id, references).await?;
        if let Some(records) = &self.records {
            if let Err(e) = records.forget(id) {
                tracing::warn!(error = %e, image = id, "could not update the pulled-image records");
            }
        }
        Ok(())
    }

    async fn create(&self, spec: &CreateSpec) -> Result<(), ActionError> {
        let name = spec.name.as_str();
        let image_id = spec.image_id.as_deref().ok_or_else(|| {
            ActionError::new(
                ErrorKind::NotFound,
                format!("create {name}: the image is not present yet (pull it first)"),
            )
        })?;
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = match self
            .docker
            .client
            .create_container(Some(options), create_body(spec, image_id))
            .await
        {
            Ok(created) => created,
            Err(e) if status_of(&e) == Some(409) => {
                // Ours with the same spec (a concurrent process of this owner, or a create
                // whose answer was lost) is a success; anything else is never touched.
                let holder = conflict::adopt(&self.docker, &self.owner, spec).await?;
                if holder.never_started {
                    // Whoever created it may not have connected its networks or copied the
                    // files yet: doing it again is harmless, starting without them is not.
                    self.complete(&holder.id, spec).await?;
                }
                self.remember(spec, &holder.id);
                return Ok(());
            }
            Err(e) => return Err(action_error("create", name, &e)),
        };
        for warning in &created.warnings {
            tracing::warn!(container = name, warning = %warning, "daemon warning on create");
        }
        if !spec.config.files.is_empty() || !spec.config.extra_networks.is_empty() {
            if let Err(error) = self.complete(&created.id, spec).await {
                // Leave no half-made container behind: a retry starts clean.
                let options = RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(false)
                    .build();
                if let Err(e) = self
                    .docker
                    .client
                    .remove_container(&created.id, Some(options))
                    .await
                {
                    tracing::warn!(container = name, error = %e, "could not remove the container after a failed network connect or file copy");
                }
                return Err(error);
            }
        }
        tracing::debug!(container = name, id = %created.id, "container created");
        self.remember(spec, &created.id);
        Ok(())
    }

    /// What a create does between the create call and the start: connect the networks
    /// beyond the first (API 1.41 takes one at create time), then copy the files in.
    async fn complete(&self, id: &str, spec: &CreateSpec) -> Result<(), ActionError> {
        for endpoint in &spec.config.extra_networks {
            objects::connect(&self.docker, id, endpoint).await?;
        }
        if !spec.config.files.is_empty() {
            self.copy_files(id, spec).await?;
        }
        Ok(())
    }

    /// Notes the ID a create produced (or adopted), for the start that follows (when one does).
    fn remember(&self, spec: &CreateSpec, id: &str) {
        if !spec.start {
            return;
        }
        if let Ok(mut created) = self.created.lock() {
            created.insert(spec.name.clone(), id.to_string());
        }
    }

    /// Starts `name`. After our own create it starts that very container by ID: should the
    /// name have changed hands in between (a concurrent process removed ours and created
    /// its own, whose files may not be copied yet), the start fails with "not found" and the
    /// next pass retries, rather than start someone's half-made container.
    async fn start(&self, name: &str) -> Result<(), ActionError> {
        let target = self
            .created
            .lock()
            .ok()
            .and_then(|mut created| created.remove(name))
            .unwrap_or_else(|| name.to_string());
        // 304 (already running) is a success in bollard.
        self.docker
            .client
            .start_container(&target, None)
            .await
            .map_err(|e| action_error("start", name, &e))
    }

    async fn copy_files(&self, id: &str, spec: &CreateSpec) -> Result<(), ActionError> {
        let name = spec.name.as_str();
        let tar = files_tar(&spec.config.files)
            .map_err(|e| ActionError::new(ErrorKind::Io, format!("copy files into {name}: {e}")))?;
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        self.docker
            .client
            .upload_to_container(id, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| action_error("copy files into", name, &e))
    }

    async fn stop(
        &self,
        id: &str,
        name: &str,
        timeout_seconds: Option<u32>,
    ) -> Result<(), ActionError> {
        // Without a timeout the daemon uses the container's own StopTimeout (default 10 s).
        let mut options = StopContainerOptionsBuilder::new();
        let mut wait = UNKNOWN_STOP_WAIT;
        if let Some(seconds) = timeout_seconds {
            options = options.t(i32::try_from(seconds).unwrap_or(i32::MAX));
            wait = Duration::from_secs(u64::from(seconds) + 60);
        }
        let options = options.build();
        // The daemon answers only once the container stopped: allow the grace period and more.
        let client = self.docker.client_with_timeout(wait);
        match client.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(action_error("stop", name, &e)),
        }
    }

    async fn remove(&self, id: &str, name: &str) -> Result<(), ActionError> {
        // Never `v=true`: named volumes outlive their containers.
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(false)
            .build();
        match self.docker.client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e)
                if status_of(&e) == Some(409)
                    && super::errors::daemon_message(&e).contains("already in progress") =>
            {
                // Someone's earlier remove (a killed pass's, or a concurrent process's) is
                // still running: done only once the name is free, or the create that follows
                // would find it taken.
                self.await_gone(id, name).await
            }
            Err(e) => Err(action_error("remove", name, &e)),
        }
    }

    /// Waits until container `id` no longer exists (a removal in progress finishes).
    async fn await_gone(&self, id: &str, name: &str) -> Result<(), ActionError> {
        let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
        loop {
            match self.docker.client.inspect_container(id, None).await {
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(action_error("remove (await removal of)", name, &e)),
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(ActionError::new(
                        ErrorKind::Timeout,
                        format!(
                        "remove {name}: a removal already in progress did not finish within {}s",
                        REMOVAL_WAIT.as_secs()
                    ),
                    ))
                }
                Ok(_) => {
                    tokio::time::sleep(self.poll_interval.min(Duration::from_millis(100))).await
                }
            }
        }
    }

    async fn rename(&self, id: &str, from: &str, to: &str) -> Result<(), ActionError> {
        let options = RenameContainerOptionsBuilder::new().name(to).build();
        match self.docker.client.rename_container(id, options).await {
            Ok(()) => Ok(()),
            // Already done (by a concurrent process of this owner, or a pass whose answer
            // was lost).
            Err(e)
                if super::errors::daemon_message(&e)
                    .contains("with the same name as its current name") =>
            {
                Ok(())
            }
            Err(e) if status_of(&e) == Some(409) => Err(ActionError::new(
                ErrorKind::Conflict,
                format!("rename {from} to {to}: the name \"{to}\" is taken by another container; rename or remove it"),
            )),
            Err(e) => Err(action_error(&format!("rename {from} to"), to, &e)),
        }
    }
}

#[async_trait]
impl ActionRunner for DockerRunner {
    async fn run(&self, planned: &PlannedAction) -> Result<(), ActionError> {
        match &planned.action {
            Action::PullImage { reference, auth } => {
                self.pull(planned, reference, auth.as_ref()).await
            }
            Action::BuildImage(spec) => {
                let credentials = self
                    .credentials
                    .for_resource(&planned.resource)
                    .for_build(spec.auth.as_ref())
                    .map_err(|e| {
                        ActionError::new(ErrorKind::Io, format!("build {}: {e}", spec.reference))
                    })?;
                build::build(
                    &self.docker,
                    spec,
                    credentials,
                    self.build_output.as_deref(),
                )
                .await
                .map(|_| ())
            }
            Action::TagImage { source, target } => {
                registry::tag(&self.docker, source, target).await
            }
            Action::PushImage { reference, auth } => {
                let credentials =
                    self.credentials_for(planned, "push", reference, auth.as_ref())?;
                registry::push(&self.docker, reference, credentials).await
            }
            Action::RemoveImage { id, references } => self.remove_image(id, references).await,
            Action::EnsureNetwork { name } => {
                ensure::ensure_network(&self.docker, &self.owner, &self.source, name).await
            }
            Action::EnsureVolume { name } => {
                ensure::ensure_volume(&self.docker, &self.owner, &self.source, name).await
            }
            Action::CreateNetwork(spec) => {
                objects::create_network(&self.docker, &self.owner, spec).await
            }
            Action::RecreateNetwork { id, spec, .. } => {
                objects::recreate_network(&self.docker, &self.owner, id, spec).await
            }
            Action::RemoveNetwork { id, name } => {
                objects::remove_network(&self.docker, id, name).await
            }
            Action::CreateVolume(spec) => {
                objects::create_volume(&self.docker, &self.owner, spec).await
            }
            Action::RemoveVolume { name } => objects::remove_volume(&self.docker, name).await,
            Action::CreateContainer(spec) => self.create(spec).await,
            Action::StartContainer { name } => self.start(name).await,
            Action::StopContainer {
                id,
                name,
                timeout_seconds,
            } => self.stop(id, name, *timeout_seconds).await,
            Action::RemoveContainer { id, name } => self.remove(id, name).await,
            Action::RenameContainer { id, from, to } => self.rename(id, from, to).await,
            Action::AdoptContainer { id, name, source } => self.adopt(id, name, source),
            Action::AwaitCondition {
                name,
                condition,
                timeout_seconds,
            } => {
                let timeout = timeout_seconds
                    .map_or(self.await_timeout, |s| Duration::from_secs(u64::from(s)));
                wait::await_condition(&self.docker, name, *condition, timeout, self.poll_interval)
                    .await
            }
        }
    }
}
