//! The kube `Controller`s over `Container` and `Image` objects (all namespaces) and the
//! reconcile of one `Container`: desired state of every placed object (from the reflector
//! stores; `dependsOn` needs the others) → observe → plan → narrow to this object and the
//! image pulls it needs → execute → status, events and back-off. Deleted objects, and objects
//! no longer placed on this node, have this node's containers removed before this node's
//! finalizer goes. `Image` objects are reconciled in [`super::image`].
//!
//! Triggers ([`super::triggers`]): object changes that bump the generation or change the
//! finalizers (a status write does neither, so it does not reconcile its object again),
//! `Image` spec changes mapped to the `Container`s naming them, and `reconcile_all_on` fed by
//! the Docker events stream and changes of this node's labels. Objects are wrapped in
//! [`DeserializeGuard`], so one malformed object reaches its reconcile (its error goes to
//! status) instead of breaking the watch.
//!
//! Engine state shared with file mode, kept in the [`Context`]: per-object failure back-off
//! ([`Backoffs`]), unfit rollout revisions ([`RevisionBackoffs`], fed to the planner as
//! `failed_revisions`), registry digests of moving tags ([`UpdateTracker`]) and pulled-image
//! records.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Debug;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalize};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::desired::{self, ClusterDesired};
use super::image::reconcile_image;
use super::placement::{container_placed, NodeInfo};
use super::readiness::FirstPass;
use super::secrets;
use super::status::{self, Progress};
use super::triggers::{coalesced, object_changes, spec_changes};
use super::{field_manager, finalizer_name, Error, FINALIZER_PREFIX};
use crate::agent::backoff::{BackoffPolicy, Backoffs};
use crate::agent::{unfit_reason, FreshPulls, GroupVerdict, ImageInterest, RevisionBackoffs};
use crate::api::{Container, Image};
use crate::credentials::Credentials;
use crate::desired::{DesiredState, Kind, ResourceKey};
use crate::docker::{DaemonEvent, Docker, DockerRunner, RestartCounts};
use crate::execute::{execute, ActionError, ActionReport, ExecuteOptions, Outcome};
use crate::image_records::ImageRecords;
use crate::metrics::Metrics;
use crate::observed::ObservedState;
use crate::plan::{self, Action as PlanAction, Plan, PlanOptions, PlannedAction, Reason};
use crate::policy::Gate;
use crate::updates::UpdateTracker;

/// A `Container` object as the controller holds it (malformed ones included).
pub type ContainerObject = DeserializeGuard<Container>;
/// An `Image` object as the controller holds it (malformed ones included).
pub type ImageObject = DeserializeGuard<Image>;

/// Settings of the Kubernetes controllers.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// This agent's Node name (`--node-name`).
    pub node_name: String,
    /// Owner label value of what the agent creates.
    pub owner: String,
    /// Source label value of what the agent creates: the cluster (`kubernetes`) unless
    /// `--source` names it.
    pub source: crate::source::SourceId,
    /// Per-object failure back-off.
    pub backoff: BackoffPolicy,
    /// Requeue of a converged object (the safety net behind events).
    pub resync: Duration,
    /// Requeue of an object waiting for something (a dependency, a replica starting).
    pub waiting_requeue: Duration,
    /// Daemon actions in flight at once within one reconcile.
    pub concurrency: usize,
    /// Objects reconciled at once.
    pub reconcile_concurrency: u16,
    /// Observe → plan → execute rounds per reconcile (a pull defers creates to the next).
    pub max_rounds: usize,
    /// The operator's policy and the owner's key for sealing secret values, applied to the
    /// desired state exactly as in file mode.
    pub gate: Gate,
    /// Where pulled images are recorded (so `dockwright prune` on the node can remove them
    /// later), as in file mode; `None`: not recorded.
    pub image_records: Option<Arc<ImageRecords>>,
}

impl ControllerOptions {
    /// Defaults for a node: 5 min resync, 2 s while waiting, kubelet-like back-off.
    pub fn new(node_name: impl Into<String>, owner: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            owner: owner.into(),
            source: crate::source::SourceId::kubernetes(),
            backoff: BackoffPolicy::default(),
            resync: Duration::from_secs(300),
            waiting_requeue: Duration::from_secs(2),
            concurrency: 4,
            reconcile_concurrency: 4,
            max_rounds: 3,
            gate: Gate::default(),
            image_records: None,
        }
    }
}

/// Everything a reconcile needs, shared by every reconcile of both controllers. The node info
/// is written by the Node watch; the back-offs by reconciles and the error policy; the
/// revision back-offs, restart counts and digest history by reconciles (the restart counts
/// also by the Docker events stream); the desired state cache is rebuilt by whichever
/// reconcile first sees the stores changed.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The node's daemon.
    pub docker: Docker,
    /// Settings.
    pub options: ControllerOptions,
    /// This node, as last read.
    pub node: RwLock<NodeInfo>,
    /// Every `Container` object (reflector store).
    pub containers: Store<ContainerObject>,
    /// Every `Image` object (reflector store).
    pub images: Store<ImageObject>,
    /// The one event recorder.
    pub recorder: Recorder,
    /// Per-object failure back-off.
    pub backoffs: Mutex<Backoffs>,
    /// Rollout revisions found unfit, held back while they wait (the planner keeps the
    /// previous revision meanwhile): the file agent's [`RevisionBackoffs`].
    pub revisions: Mutex<RevisionBackoffs>,
    /// What this agent pulled lately: `pullPolicy: Always` pulls once per resync interval,
    /// not on every reconcile its own pull events trigger (see [`FreshPulls`]).
    pub fresh_pulls: Mutex<FreshPulls>,
    /// Which image events matter, as of the last observation (the file agent's rule).
    pub image_interest: Mutex<ImageInterest>,
    /// Restart counts of this node's containers, for status (see [`RestartCounts`]).
    pub restarts: Mutex<RestartCounts>,
    /// The first full pass, for readiness.
    pub first_pass: FirstPass,
    /// Metrics, when served.
    pub metrics: Option<Arc<Metrics>>,
    desired: Mutex<Option<(u64, Arc<ClusterDesired>)>>,
    /// Malformed objects already reported, by `(uid, generation)`: their status cannot be
    /// read back, so this is what keeps a Docker-event resync from re-sending the same error.
    reported_invalid: Mutex<HashSet<(String, Option<i64>)>>,
    /// Registry digests seen per moving tag (`updateInterval`, `minAge`); held across a
    /// check so each tag is checked once per interval however many reconciles observe.
    updates: tokio::sync::Mutex<UpdateTracker>,
}

impl Context {
    /// A context over the given stores.
    pub fn new(
        client: Client,
        docker: Docker,
        options: ControllerOptions,
        node: NodeInfo,
        containers: Store<ContainerObject>,
        images: Store<ImageObject>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let reporter = Reporter {
            controller: "dockwright".into(),
            instance: Some(options.node_name.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            backoffs: Mutex::new(Backoffs::new(options.backoff)),
            revisions: Mutex::new(RevisionBackoffs::new(options.backoff)),
            fresh_pulls: Mutex::new(FreshPulls::for_resync(options.resync)),
            image_interest: Mutex::new(ImageInterest::default()),
            restarts: Mutex::default(),
            first_pass: FirstPass::default(),
            updates: tokio::sync::Mutex::default(),
            client,
            docker,
            options,
            node: RwLock::new(node),
            containers,
            images,
            metrics,
            desired: Mutex::new(None),
            reported_invalid: Mutex::default(),
        }
    }

    /// This node as last read.
    pub fn node(&self) -> NodeInfo {
        self.node
            .read()
            .map(|n| n.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the node's labels; true when they changed.
    pub fn set_node(&self, node: NodeInfo) -> bool {
        let mut guard = self.node.write().unwrap_or_else(|p| p.into_inner());
        let changed = *guard != node;
        *guard = node;
        changed
    }

    /// The desired state of every valid object placed on this node and not being deleted,
    /// secret references resolved (one GET per referenced Secret) and passed through the
    /// policy gate; rebuilt only when the stores or the node changed. (A rotated Secret is
    /// picked up at the next change of any object; the resync requeue does not rebuild.)
    pub async fn desired(&self) -> Arc<ClusterDesired> {
        let node = self.node();
        let images = self.images.state();
        let containers = self.containers.state();
        let mut h = DefaultHasher::new();
        node.name.hash(&mut h);
        node.labels.hash(&mut h);
        for i in &images {
            desired::fingerprint_of(&**i).hash(&mut h);
        }
        for c in &containers {
            desired::fingerprint_of(&**c).hash(&mut h);
        }
        let fingerprint = h.finish();
        if let Some((f, d)) = self
            .desired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if *f == fingerprint {
                return Arc::clone(d);
            }
        }
        let live = |m: &kube::api::ObjectMeta| m.deletion_timestamp.is_none();
        let built = {
            let images: Vec<&Image> = images
                .iter()
                .filter_map(|i| i.0.as_ref().ok())
                .filter(|i| live(&i.metadata))
                .collect();
            let containers: Vec<&Container> = containers
                .iter()
                .filter_map(|c| c.0.as_ref().ok())
                .filter(|c| live(&c.metadata) && container_placed(&c.spec, &node))
                .collect();
            desired::build(&images, &containers)
        };
        let mut fetched = desired::FetchedSecrets(BTreeMap::new());
        for (namespace, name) in desired::secret_refs(&built.state) {
            let api: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(self.client.clone(), &namespace);
            let data = match api.get(&name).await {
                Ok(secret) => Ok(secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect()),
                Err(e) => Err(format!("Secret {namespace}/{name}: {e}")),
            };
            fetched.0.insert((namespace, name), data);
        }
        let built = Arc::new(desired::admit(built, &fetched, &self.options.gate));
        // Back-offs of objects that are gone (deleted, no longer placed) are forgotten.
        let state = &built.state;
        lock(&self.backoffs).retain(|k| {
            state.containers.contains_key(k)
                || state.images.contains_key(k)
                || built.held.contains_key(k)
        });
        lock(&self.revisions).retain(|k| state.containers.contains_key(k));
        *self.desired.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((fingerprint, Arc::clone(&built)));
        built
    }

    /// The planner's options: no pruning (objects are removed one by one, through their
    /// finalizers), and the revisions that wait after failing their rollout.
    pub(super) fn plan_options(&self) -> PlanOptions {
        PlanOptions {
            owner: self.options.owner.clone(),
            source: self.options.source.as_str().to_string(),
            take_over: false,
            record_adoptions: self.docker.adoptions().is_some(),
            prune: false,
            failed_revisions: lock(&self.revisions).held(Instant::now()),
            fresh_pulls: lock(&self.fresh_pulls).fresh(Instant::now()),
        }
    }

    /// A runner for this node's daemon (pulls recorded when records are kept).
    pub(super) fn runner(&self) -> DockerRunner {
        let runner = DockerRunner::new(self.docker.clone(), self.options.owner.clone())
            .with_source(&self.options.source);
        match &self.options.image_records {
            Some(records) => runner.with_image_records(Arc::clone(records)),
            None => runner,
        }
    }

    /// One observation (the list calls of `Docker::observe`), with the registry digests of the moving tags whose
    /// `updateInterval` is due checked first (as the file agent does before each pass).
    pub(super) async fn observe(&self, desired: &DesiredState) -> Result<ObservedState, Error> {
        let registry_digests = self.registry_digests(desired).await;
        let mut observed = self.observe_daemon().await?;
        observed.images.registry_digests = registry_digests;
        if let Some(records) = &self.options.image_records {
            crate::docker::settle_pulls(records, &observed);
        }
        *lock(&self.image_interest) = ImageInterest::of(desired, &observed, &self.options.owner);
        Ok(observed)
    }

    /// One observation without digest checks (for removals).
    async fn observe_daemon(&self) -> Result<ObservedState, Error> {
        self.docker
            .observe(&self.options.owner)
            .await
            .map_err(|e| Error::Docker(Box::new(e)))
    }

    /// The due registry digests of `desired`'s images with an `updateInterval`: each tag is
    /// checked at most once per interval (the tracker remembers across reconciles), and a
    /// new digest is handed to the planner once it is older than `minAge`. Nothing is asked
    /// when no image has an `updateInterval`.
    async fn registry_digests(&self, desired: &DesiredState) -> BTreeMap<String, String> {
        if desired.images.values().all(|i| i.update.is_none()) {
            return BTreeMap::new();
        }
        let mut tracker = self.updates.lock().await;
        let now = SystemTime::now();
        let credentials = Credentials::docker_config(None);
        let failures = crate::docker::check_updates(
            &self.docker,
            &credentials,
            desired,
            &mut tracker,
            now,
            false,
        )
        .await;
        for failure in failures {
            tracing::warn!(resource = %failure.resource, error = %failure.error, "registry digest check failed");
        }
        tracker.retain_declared(desired);
        tracker.due_digests(desired, now)
    }

    /// Takes a Docker event in (the events stream calls this before it triggers the
    /// reconciles): a container start makes its restart count stale.
    pub fn on_daemon_event(&self, event: &DaemonEvent) {
        lock(&self.restarts).on_event(event);
    }

    /// The restart counts of `key`'s containers in `observed`, by container ID: from the
    /// cache, with one inspect per container whose count may have changed (see
    /// [`RestartCounts`]). A count that cannot be read is left out (and tried again next
    /// time); status then shows none for that replica.
    async fn restart_counts(
        &self,
        observed: &ObservedState,
        key: &ResourceKey,
    ) -> BTreeMap<String, i64> {
        let mine: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| c.resource.as_ref() == Some(key))
            .collect();
        let to_read = {
            let mut cache = lock(&self.restarts);
            let live: HashSet<&str> = observed.containers.iter().map(|c| c.id.as_str()).collect();
            cache.retain(|id| live.contains(id));
            cache.to_read(mine.iter().copied())
        };
        for read in to_read {
            match self.docker.restart_count(&read.id).await {
                Ok(Some(count)) => lock(&self.restarts).record(&read, count),
                Ok(None) => {}
                Err(error) => tracing::debug!(%error, "restart count not available"),
            }
        }
        lock(&self.restarts).counts(mine)
    }

    /// Records the revisions `verdict` found unfit; true when one was found unfit just now
    /// (its rollback is what the next plan does), false for none or one already waiting.
    fn note_unfit(&self, verdict: &GroupVerdict) -> bool {
        let now = Instant::now();
        let mut revisions = lock(&self.revisions);
        let mut fresh = false;
        for (key, (revision, detail)) in &verdict.unfit {
            let reason = unfit_reason(revision, detail);
            if let Some(delay) = revisions.failed(key, revision, reason.clone(), now) {
                tracing::warn!(resource = %key, error = %reason, retry_in = ?delay, "rollout failed; rolling back");
                fresh = true;
            }
        }
        fresh
    }

    /// True the first time a malformed object is seen at this generation.
    pub(super) fn first_report_of_invalid<K: Resource>(&self, obj: &K) -> bool {
        let seen = (obj.uid().unwrap_or_default(), obj.meta().generation);
        lock(&self.reported_invalid).insert(seen)
    }

    /// Publishes an event about `obj`; a failure is logged, never fatal.
    pub(super) async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: reason.into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not publish event");
        }
    }

    /// Runs `plan` for `obj`: counts the outcomes in the metrics and publishes one event per
    /// outcome about `obj`.
    pub(super) async fn run<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        plan: &Plan,
        runner: &DockerRunner,
    ) -> Vec<ActionReport> {
        let mut log = |r: &ActionReport| crate::agent::log_report(plan, r);
        let options = ExecuteOptions {
            concurrency: self.options.concurrency,
        };
        let reports = execute(plan, runner, options, &mut log).await;
        let pulled = crate::execute::pulled_references(plan, &reports);
        lock(&self.fresh_pulls).record(pulled, Instant::now());
        if let Some(m) = &self.metrics {
            m.count_actions(&reports);
        }
        self.action_events(obj, &reports).await;
        reports
    }

    /// One event per action outcome: reason = the action verb, note = target and outcome
    /// (for a failure, the error, which names both).
    async fn action_events<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reports: &[ActionReport],
    ) {
        for r in reports {
            let (type_, note) = match &r.outcome {
                Outcome::Succeeded => (EventType::Normal, format!("{} {}: done", r.verb, r.target)),
                Outcome::Failed { error } => (EventType::Warning, format!("failed: {error}")),
                Outcome::Skipped { .. } => (
                    EventType::Warning,
                    format!("{} {}: skipped: a prerequisite failed", r.verb, r.target),
                ),
                Outcome::Deferred => continue,
            };
            self.event(obj, type_, &pascal(r.verb), note).await;
        }
    }
}

/// `remove-image` → `RemoveImage`.
fn pascal(verb: &str) -> String {
    verb.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Locks a mutex, going on with the data of a poisoned one (a panicked reconcile leaves
/// nothing half-written in these maps that a later reconcile cannot overwrite).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn now() -> String {
    Timestamp::now().to_string()
}

pub(super) fn key_of<K: Resource>(kind: Kind, obj: &K) -> Result<ResourceKey, Error> {
    let ns = obj
        .meta()
        .namespace
        .clone()
        .ok_or(Error::Unnamed("namespace"))?;
    let name = obj.meta().name.clone().ok_or(Error::Unnamed("name"))?;
    Ok(ResourceKey::new(kind, ns, name))
}

/// The first failure among `reports`, as the error the reconcile returns (its message names
/// the call and its target).
fn first_failure(reports: &[ActionReport]) -> Option<ActionError> {
    reports.iter().find_map(|r| match &r.outcome {
        Outcome::Failed { error } => Some(error.clone()),
        _ => None,
    })
}

/// When to reconcile an object again that has `remaining` work ([`work_left`]): soon while
/// there is some, else at the resync interval.
pub(super) fn requeue_after(
    options: &ControllerOptions,
    remaining: &(usize, Option<String>),
) -> Duration {
    if remaining.0 > 0 || remaining.1.is_some() {
        options.waiting_requeue
    } else {
        options.resync
    }
}

/// What is left to do for `key` in `plan`: the number of its actions (a pull planned only
/// because the pull policy is `Always` does not count: with fresh pulls it is planned once
/// per resync interval) and why it is blocked, if it is.
pub(super) fn work_left(plan: &Plan, key: &ResourceKey) -> (usize, Option<String>) {
    (
        plan.actions
            .iter()
            .filter(|a| &a.resource == key && a.reason != Reason::PullAlways)
            .count(),
        plan.blocked
            .iter()
            .find(|b| &b.resource == key)
            .map(|b| b.message.clone()),
    )
}

/// Server-side apply of `body` (one node entry, see [`status::apply_patch`]) to the status of
/// `key`, as this node's field manager. `K` is the guarded kind, so a malformed object's
/// answer is read too.
pub(super) async fn patch_status<K>(
    ctx: &Context,
    key: &ResourceKey,
    body: &serde_json::Value,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let pp = PatchParams::apply(&field_manager(&ctx.options.node_name)).force();
    api.patch_status(&key.name, &pp, &Patch::Apply(body))
        .await?;
    Ok(())
}

/// Reads this agent's Node (one GET).
pub async fn load_node(client: &Client, name: &str) -> Result<NodeInfo, Error> {
    let node = Api::<Node>::all(client.clone()).get(name).await?;
    Ok(NodeInfo::new(name, node.labels().clone()))
}

/// The actions of `plan` that reconcile `key` on its own: its own actions and the image
/// actions (pull, build, tag) of the reference it runs, whichever object they are planned
/// for; as with [`plan::restrict_actions`], an action whose prerequisite is dropped is dropped
/// too.
pub fn restrict_to_object(plan: &Plan, key: &ResourceKey, image: Option<&str>) -> Plan {
    let keep = |a: &PlannedAction| {
        &a.resource == key
            || match (&a.action, image) {
                (PlanAction::PullImage { reference, .. }, Some(image)) => reference == image,
                (PlanAction::BuildImage(spec), Some(image)) => spec.reference == image,
                (PlanAction::TagImage { target, .. }, Some(image)) => target == image,
                _ => false,
            }
    };
    let mut out = plan::restrict_actions(plan, keep);
    out.blocked = plan
        .blocked
        .iter()
        .filter(|b| &b.resource == key)
        .cloned()
        .collect();
    out
}

/// Reconciles one `Container` object on this node.
pub async fn reconcile_container(
    obj: Arc<ContainerObject>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let key = key_of(Kind::Container, &*obj)?;
    let span = tracing::info_span!("reconcile", resource = %key, node = %ctx.options.node_name);
    let started = Instant::now();
    let result = reconcile_container_inner(obj, &key, &ctx)
        .instrument(span)
        .await;
    if let Some(m) = &ctx.metrics {
        m.observe_reconcile(started.elapsed(), result.is_ok());
    }
    ctx.first_pass.reconciled(&key);
    result
}

async fn reconcile_container_inner(
    obj: Arc<ContainerObject>,
    key: &ResourceKey,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let node = ctx.node();
    let fin = finalizer_name(&node.name);
    let deleting = obj.meta().deletion_timestamp.is_some();
    let has_fin = obj.finalizers().contains(&fin);
    let api: Api<Container> = Api::namespaced(ctx.client.clone(), &key.namespace);
    if deleting {
        release_gone_nodes(ctx, &key.namespace, &*obj).await?;
    }
    let container = match &obj.0 {
        Ok(c) => c,
        Err(invalid) => {
            if deleting && has_fin {
                remove_containers(ctx, &*obj, key).await?;
                remove_finalizer(ctx, &key.namespace, &*obj, &fin).await?;
                return Ok(Action::await_change());
            }
            if !ctx.first_report_of_invalid(&*obj) {
                return Ok(Action::await_change());
            }
            let message = format!(
                "the object does not match the Container schema: {}",
                invalid.error
            );
            let prev = None;
            let entry = status::node_entry(
                status::Subject {
                    node: &node.name,
                    key,
                    generation: obj.meta().generation,
                },
                None,
                &ObservedState::default(),
                &BTreeMap::new(),
                &Progress::Invalid(message.clone()),
                prev,
                &now(),
            );
            patch_status::<ContainerObject>(ctx, key, &status::apply_patch("Container", &entry))
                .await?;
            ctx.event(&*obj, EventType::Warning, "InvalidSpec", message)
                .await;
            // Retried when the object changes.
            return Ok(Action::await_change());
        }
    };
    let placed = !deleting && container_placed(&container.spec, &node);
    if placed || (deleting && has_fin) {
        let c = Arc::new(container.clone());
        let result = finalizer(&api, &fin, c, |event| async {
            match event {
                Finalize::Apply(c) => apply_container(ctx, &c, key).await,
                Finalize::Cleanup(c) => {
                    remove_containers(ctx, &*c, key).await?;
                    Ok(Action::await_change())
                }
            }
        })
        .await;
        return result.map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => Error::Finalizer(Box::new(other)),
        });
    }
    // Not (or no longer) ours: remove what this node runs of it, then let go of it. Nothing
    // is created before this node's finalizer is on the object, so without it (and without a
    // status entry of ours) there is nothing here to remove and the daemon is not asked:
    // every agent sees every object, most of them placed elsewhere.
    let had_it = has_fin
        || deleting
        || status::previous_entry(container.status.as_ref(), &node.name).is_some();
    if !had_it {
        return Ok(Action::await_change());
    }
    remove_containers(ctx, container, key).await?;
    if has_fin {
        remove_finalizer(ctx, &key.namespace, container, &fin).await?;
    }
    if status::previous_entry(container.status.as_ref(), &node.name).is_some() {
        patch_status::<ContainerObject>(ctx, key, &status::release_patch("Container")).await?;
    }
    lock(&ctx.backoffs).succeeded(key);
    Ok(Action::await_change())
}

/// Converges one placed object, writes its status and events.
async fn apply_container(
    ctx: &Arc<Context>,
    c: &Container,
    key: &ResourceKey,
) -> Result<Action, Error> {
    let node = ctx.options.node_name.clone();
    let subject = status::Subject {
        node: &node,
        key,
        generation: c.metadata.generation,
    };
    let previous = status::previous_entry(c.status.as_ref(), &node).cloned();
    let no_restarts = BTreeMap::new();
    let desired = ctx.desired().await;
    if let Some(message) = desired.errors.get(key) {
        let entry = status::node_entry(
            subject,
            None,
            &ObservedState::default(),
            &no_restarts,
            &Progress::Invalid(message.clone()),
            previous.as_ref(),
            &now(),
        );
        if previous.as_ref() != Some(&entry) {
            write_status(ctx, key, &entry).await?;
            ctx.event(c, EventType::Warning, "InvalidSpec", message.clone())
                .await;
        }
        // Retried when the object (or one it depends on) changes.
        return Ok(Action::await_change());
    }
    if let Some(message) = desired.held.get(key) {
        let entry = status::node_entry(
            subject,
            None,
            &ObservedState::default(),
            &no_restarts,
            &Progress::Failed("Held", message.clone()),
            previous.as_ref(),
            &now(),
        );
        if previous.as_ref() != Some(&entry) {
            write_status(ctx, key, &entry).await?;
            ctx.event(c, EventType::Warning, "Held", message.clone())
                .await;
        }
        // Retried with back-off: a Secret may appear, the policy may change.
        return Err(Error::Held(message.clone()));
    }
    let Some(d) = desired.state.containers.get(key) else {
        return Ok(Action::requeue(ctx.options.waiting_requeue));
    };
    let mut runner = ctx.runner();
    match secrets::pull_secrets(&ctx.client, &key.namespace, &c.spec.image_pull_secrets).await {
        Ok(Some(source)) => runner = runner.with_credentials(Credentials::with_default(source)),
        Ok(None) => {}
        Err(error) => {
            // kubelet semantics: a missing pull secret is reported and the pull goes on without it.
            tracing::warn!(%error, "pull secret unusable");
            ctx.event(
                c,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                error.to_string(),
            )
            .await;
        }
    }
    // Observe → plan → execute rounds, as `converge` runs them: another round when creates
    // were deferred behind a pull, an image changed under the containers (rebuilt, new
    // digest), or a rollout was just found unfit (the next plan rolls it back).
    let mut failure: Option<ActionError> = None;
    let mut observed = ctx.observe(&desired.state).await?;
    let mut remaining;
    let mut round = 0;
    loop {
        round += 1;
        let full = plan::plan(&desired.state, &observed, &ctx.plan_options());
        let mine = restrict_to_object(&full, key, Some(&d.image.reference));
        remaining = work_left(&full, key);
        if mine.actions.is_empty() || round > ctx.options.max_rounds {
            break;
        }
        let done = ctx.run(c, &mine, &runner).await;
        let verdict = GroupVerdict::of(&mine, &done);
        let rolling_back = ctx.note_unfit(&verdict);
        let deferred = done.iter().any(|r| r.outcome == Outcome::Deferred);
        let image_changed = crate::converge::image_arrived(&mine, &done);
        // This object's own failure first, else the failure of an image it needs.
        failure = failure.or_else(|| {
            verdict
                .failures
                .get(key)
                .or_else(|| verdict.failures.values().next())
                .cloned()
        });
        observed = ctx.observe(&desired.state).await?;
        if failure.is_some() || !(deferred || image_changed || rolling_back) {
            // One more plan to see what is left (awaits, dependencies), no more execution.
            let full = plan::plan(&desired.state, &observed, &ctx.plan_options());
            remaining = work_left(&full, key);
            break;
        }
    }
    // A revision that failed its rollout keeps the object Degraded while it waits (the
    // previous revision runs meanwhile); once the wait is over the rollout is tried again.
    let revision_wait = {
        let mut revisions = lock(&ctx.revisions);
        let now = Instant::now();
        if failure.is_none() {
            revisions.succeeded(key, now);
        }
        revisions
            .waiting(key, now)
            .map(|b| (b.reason.clone(), b.until))
    };
    let progress = match (&failure, &revision_wait, &remaining) {
        (Some(e), _, _) => Progress::Failed("ActionFailed", e.message.clone()),
        (None, Some((reason, _)), _) => Progress::Failed("RolloutFailed", reason.clone()),
        (None, None, (_, Some(blocked))) => Progress::Waiting("Blocked", blocked.clone()),
        (None, None, (n, None)) if *n > 0 => Progress::Waiting(
            "Converging",
            format!("{n} actions left (waiting for dependencies or replicas)"),
        ),
        _ => Progress::Converged,
    };
    let restarts = ctx.restart_counts(&observed, key).await;
    let entry = status::node_entry(
        subject,
        Some(d),
        &observed,
        &restarts,
        &progress,
        previous.as_ref(),
        &now(),
    );
    if previous.as_ref() != Some(&entry) {
        write_status(ctx, key, &entry).await?;
    }
    if let Some(error) = failure {
        return Err(Error::Actions(error));
    }
    lock(&ctx.backoffs).succeeded(key);
    let mut requeue = requeue_after(&ctx.options, &remaining);
    if let Some((_, until)) = revision_wait {
        // Try the held revision again as soon as its wait is over.
        let wait = until.saturating_duration_since(Instant::now()) + Duration::from_millis(100);
        requeue = requeue.min(wait);
    }
    Ok(Action::requeue(requeue))
}

/// Server-side apply of this node's status entry, as this node's field manager.
async fn write_status(
    ctx: &Context,
    key: &ResourceKey,
    entry: &crate::api::NodeContainerStatus,
) -> Result<(), Error> {
    patch_status::<ContainerObject>(ctx, key, &status::apply_patch("Container", entry)).await
}

/// Removes this node's containers of `key` (if any), with events.
async fn remove_containers<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    key: &ResourceKey,
) -> Result<(), Error> {
    let observed = ctx.observe_daemon().await?;
    let plan = plan::plan_delete(&BTreeSet::from([key.clone()]), &observed);
    if plan.actions.is_empty() {
        return Ok(());
    }
    let runner = ctx.runner();
    let reports = ctx.run(obj, &plan, &runner).await;
    match first_failure(&reports) {
        Some(e) => Err(Error::Actions(e)),
        None => Ok(()),
    }
}

/// JSON patch removing `fin` at its index (with a test, so a concurrent change fails the patch
/// instead of removing someone else's finalizer).
async fn remove_finalizer<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    namespace: &str,
    obj: &K,
    fin: &str,
) -> Result<(), Error> {
    remove_finalizers(ctx, namespace, obj, &[fin.to_string()]).await
}

async fn remove_finalizers<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    namespace: &str,
    obj: &K,
    gone: &[String],
) -> Result<(), Error> {
    let name = obj.meta().name.clone().ok_or(Error::Unnamed("name"))?;
    let finalizers = obj.meta().finalizers.clone().unwrap_or_default();
    let mut ops = Vec::new();
    for (i, f) in finalizers.iter().enumerate().rev() {
        if gone.contains(f) {
            ops.push(serde_json::json!({"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": f}));
            ops.push(
                serde_json::json!({"op": "remove", "path": format!("/metadata/finalizers/{i}")}),
            );
        }
    }
    if ops.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|_| Error::Unnamed("valid finalizer patch"))?;
    let api: Api<ContainerObject> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

/// The gone-node rule: on an object being deleted, finalizers of nodes whose Node object no
/// longer exists are removed (one GET per foreign node finalizer).
async fn release_gone_nodes<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    namespace: &str,
    obj: &K,
) -> Result<(), Error> {
    let mine = finalizer_name(&ctx.options.node_name);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut gone = Vec::new();
    for f in obj.meta().finalizers.iter().flatten() {
        let Some(node) = f.strip_prefix(FINALIZER_PREFIX) else {
            continue;
        };
        if *f == mine {
            continue;
        }
        if nodes.get_opt(node).await?.is_none() {
            tracing::info!(node, "node is gone for good; releasing its finalizer");
            gone.push(f.clone());
        }
    }
    if !gone.is_empty() {
        remove_finalizers(ctx, namespace, obj, &gone).await?;
    }
    Ok(())
}

/// Back-off on failure: the object is retried after its per-object delay.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let kind = if K::kind(&()) == "Image" {
        Kind::Image
    } else {
        Kind::Container
    };
    let key = match key_of(kind, &*obj) {
        Ok(k) => k,
        Err(_) => return Action::await_change(),
    };
    let delay = lock(&ctx.backoffs).failed(&key, error.to_string(), Instant::now());
    tracing::warn!(resource = %key, %error, kind = error.label(), retry_in = ?delay, "reconcile failed; backing off");
    Action::requeue(delay)
}

/// Runs both controllers until `shutdown` completes. Reads this node first (placement needs
/// its labels), then keeps it fresh with a watch; Docker events trigger a reconcile of all.
/// `ready` is called once the first full pass is done: both kinds listed and every listed
/// object reconciled once (see [`FirstPass`]).
pub async fn run(
    client: Client,
    docker: Docker,
    options: ControllerOptions,
    metrics: Option<Arc<Metrics>>,
    ready: impl Fn() + Send + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Result<(), Error> {
    let node = load_node(&client, &options.node_name).await?;
    tracing::info!(node = %node.name, labels = ?node.labels, "node read");
    let containers_api: Api<ContainerObject> = Api::all(client.clone());
    let images_api: Api<ImageObject> = Api::all(client.clone());
    let config = kube::runtime::Config::default().concurrency(options.reconcile_concurrency);

    // The controllers' own streams pass an object only when its generation or finalizers
    // changed (see `triggers`): a status write does not reconcile its object again.
    let (container_store, container_writer) = reflector::store::<ContainerObject>();
    let container_stream = watcher(containers_api, watcher::Config::default())
        .default_backoff()
        .reflect(container_writer)
        .applied_objects()
        .predicate_filter(object_changes::<ContainerObject>, Default::default());
    let (image_store, image_writer) = reflector::store::<ImageObject>();
    let image_stream = watcher(images_api.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(image_writer)
        .applied_objects()
        .predicate_filter(object_changes::<ImageObject>, Default::default());

    let ctx = Arc::new(Context::new(
        client.clone(),
        docker.clone(),
        options.clone(),
        node,
        container_store.clone(),
        image_store.clone(),
        metrics.clone(),
    ));

    // Triggers: Docker events (container changes, reconnects) and node relabelling.
    let (c_tx, c_rx) = mpsc::channel::<()>(16);
    let (i_tx, i_rx) = mpsc::channel::<()>(16);
    let (ev_tx, mut ev_rx) = mpsc::channel::<DaemonEvent>(1024);
    let events_task = {
        let owner = options.owner.clone();
        tokio::spawn(async move { docker.follow_events(&owner, ev_tx).await })
    };
    let forward_task = {
        let (c_tx, i_tx) = (c_tx.clone(), i_tx.clone());
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            while let Some(ev) = ev_rx.recv().await {
                if let Some(m) = &ctx.metrics {
                    m.count_docker_event(&ev);
                }
                // Before the reconciles it triggers, so they read fresh restart counts.
                ctx.on_daemon_event(&ev);
                // Image events the file agent would ignore (tags and pulls of references
                // nothing declares, removals of images nothing uses) reconcile nothing here
                // either: on a CI host they never stop.
                let relevant = match &ev {
                    DaemonEvent::Container { .. } | DaemonEvent::Connected => true,
                    DaemonEvent::Image { .. } => lock(&ctx.image_interest).wants(&ev),
                    DaemonEvent::Disconnected { .. } => false,
                };
                if relevant {
                    let _ = c_tx.try_send(());
                    if matches!(ev, DaemonEvent::Image { .. } | DaemonEvent::Connected) {
                        let _ = i_tx.try_send(());
                    }
                }
            }
        })
    };
    let node_task = {
        let ctx = Arc::clone(&ctx);
        let nodes: Api<Node> = Api::all(client.clone());
        let wc = watcher::Config::default().fields(&format!("metadata.name={}", options.node_name));
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(nodes, wc).default_backoff().applied_objects());
            while let Some(item) = stream.next().await {
                match item {
                    Ok(n) => {
                        let info = NodeInfo::new(n.name_any(), n.labels().clone());
                        if ctx.set_node(info) {
                            tracing::info!(labels = ?n.labels(), "node relabelled; re-evaluating placement");
                            let _ = c_tx.try_send(());
                        }
                    }
                    Err(error) => tracing::warn!(%error, "node watch"),
                }
            }
        })
    };
    let readiness_task = {
        let ctx = Arc::clone(&ctx);
        let (containers, images) = (container_store.clone(), image_store.clone());
        tokio::spawn(async move {
            first_pass(&ctx, &containers, &images).await;
            ready();
        })
    };

    // An Image spec change (or deletion) reconciles the Containers that name it.
    let store_for_map = container_store.clone();
    let image_changes =
        spec_changes(watcher(images_api, watcher::Config::default()).default_backoff());
    let coalesce = Duration::from_millis(100);
    let containers = Controller::for_stream(container_stream, container_store)
        .with_config(config.clone())
        .watches_stream(image_changes, move |image: ImageObject| {
            let (ns, name) = (image.namespace(), image.name_any());
            store_for_map
                .state()
                .into_iter()
                .filter(|c| c.namespace() == ns && c.0.as_ref().is_ok_and(|c| c.spec.image == name))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(coalesced(c_rx, coalesce))
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_container, error_policy, Arc::clone(&ctx));
    let images = Controller::for_stream(image_stream, image_store)
        .with_config(config)
        .reconcile_all_on(coalesced(i_rx, coalesce))
        .graceful_shutdown_on(shutdown)
        .run(reconcile_image, error_policy, Arc::clone(&ctx));

    let containers = containers.for_each(|res| {
        if let Err(error) = res {
            tracing::debug!(%error, "container reconcile");
        }
        futures::future::ready(())
    });
    let images = images.for_each(|res| {
        if let Err(error) = res {
            tracing::debug!(%error, "image reconcile");
        }
        futures::future::ready(())
    });
    futures::join!(containers, images);
    readiness_task.abort();
    events_task.abort();
    forward_task.abort();
    node_task.abort();
    Ok(())
}

/// [`Store::wait_until_ready`], asked again every 100 ms. The ready signal of a kube 5 store
/// wakes only the task that polled it last (one oneshot receiver, one waker slot), and the
/// `Controller` waits on the same store: a single wait here would never be woken.
async fn store_ready<K>(store: &Store<K>) -> Result<(), reflector::store::WriterDropped>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    loop {
        let wait = store.wait_until_ready();
        if let Ok(result) = tokio::time::timeout(Duration::from_millis(100), wait).await {
            return result;
        }
    }
}

/// Waits for the first full pass: both stores listed, then every listed object (that still
/// exists) reconciled once. The stores are filled by the controllers' streams, so this must
/// run beside them, never before them.
async fn first_pass(
    ctx: &Context,
    containers: &Store<ContainerObject>,
    images: &Store<ImageObject>,
) {
    let (c, i) = futures::join!(store_ready(containers), store_ready(images));
    if c.is_err() || i.is_err() {
        return; // the streams ended: shutting down
    }
    let listed: BTreeSet<ResourceKey> = containers
        .state()
        .iter()
        .filter_map(|o| key_of(Kind::Container, &**o).ok())
        .chain(
            images
                .state()
                .iter()
                .filter_map(|o| key_of(Kind::Image, &**o).ok()),
        )
        .collect();
    let live = |k: &ResourceKey| match k.kind {
        Kind::Image => images
            .get(&ObjectRef::new(&k.name).within(&k.namespace))
            .is_some(),
        _ => containers
            .get(&ObjectRef::new(&k.name).within(&k.namespace))
            .is_some(),
    };
    tracing::info!(
        objects = listed.len(),
        "listed; waiting for the first reconcile of each"
    );
    ctx.first_pass.wait(&listed, live).await;
    tracing::info!("first full reconcile pass done; ready");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_become_reasons() {
        assert_eq!(pascal("create"), "Create");
        assert_eq!(pascal("remove-image"), "RemoveImage");
        assert_eq!(pascal("ensure-network"), "EnsureNetwork");
    }

    #[test]
    fn notes_are_bounded() {
        assert_eq!(truncate("é".repeat(600), 1000).len(), 1000);
    }
}
