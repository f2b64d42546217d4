//! The leader's work: four watches (`Container`, `Image`, `Node` metadata, `Placement`) fill
//! reflector stores and name the parents that need a look; a worker plans each such parent's
//! children ([`super::children`]), writes only the differences, and writes its aggregate
//! status ([`super::aggregate`]) when it changed.
//!
//! - A parent change marks that parent; a `Placement` change marks its parent (status counts);
//!   a Node added, removed or relabelled marks every parent (placement may move). Node
//!   heartbeats change no label and cost nothing.
//! - The stores hold `Placement`s without their spec copy ([`super::children::strip_spec`]) and
//!   Nodes as metadata only, so the controller's memory grows with the number of objects, not
//!   their size.
//! - A failed step marks its parent again after a delay.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, PartialObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;

use super::aggregate::aggregate;
use super::children::{plan_children, slim, strip_spec, ParentObject};
use super::ControllerMetrics;
use crate::api::{AggregateStatus, Container, Image, Placement};
use crate::kubernetes::placement::NodeInfo;
use crate::kubernetes::{Error, FINALIZER, LEGACY_FINALIZER_PREFIX};

/// Field manager of the controller's writes.
pub const FIELD_MANAGER: &str = "dockwright-controller";

/// A parent, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParentKey {
    /// `Container` or `Image`.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What the watches ask the worker to look at.
#[derive(Clone, Debug)]
enum Dirty {
    Parent(ParentKey),
    AllParents,
}

/// Settings of the worker.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Quiet time that closes a burst of changes.
    pub debounce: Duration,
    /// Parents handled at once (API calls in flight).
    pub concurrency: usize,
    /// Delay before a failed parent is looked at again.
    pub retry: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(100),
            concurrency: 16,
            retry: Duration::from_secs(5),
        }
    }
}

/// The four stores.
#[derive(Clone)]
struct Stores {
    containers: Store<DeserializeGuard<Container>>,
    images: Store<DeserializeGuard<Image>>,
    nodes: Store<PartialObjectMeta<Node>>,
    placements: Store<Placement>,
}

/// Runs until the task is aborted (leadership lost or shutdown).
pub async fn run(client: Client, options: WorkerOptions, metrics: Arc<ControllerMetrics>) {
    let (dirty_tx, mut dirty_rx) = mpsc::unbounded_channel::<Dirty>();
    let (containers, w) = reflector::store();
    let mut watches = vec![spawn_watch(
        watcher(Api::all(client.clone()), watcher::Config::default())
            .map_ok(|event| event.modify(slim))
            .reflect(w),
        dirty_tx.clone(),
        "containers",
        |c: &DeserializeGuard<Container>| Some(Dirty::Parent(key_of("Container", c.meta()))),
    )];
    let (images, w) = reflector::store();
    watches.push(spawn_watch(
        watcher(Api::all(client.clone()), watcher::Config::default())
            .map_ok(|event| event.modify(slim))
            .reflect(w),
        dirty_tx.clone(),
        "images",
        |i: &DeserializeGuard<Image>| Some(Dirty::Parent(key_of("Image", i.meta()))),
    ));
    let (nodes, w) = reflector::store();
    let mut labels_seen: BTreeMap<String, Option<BTreeMap<String, String>>> = BTreeMap::new();
    watches.push(spawn_node_watch(
        watcher(
            Api::<PartialObjectMeta<Node>>::all(client.clone()),
            watcher::Config::default(),
        )
        // Only the name and labels count.
        .map_ok(|event| {
            event.modify(|node| {
                slim(node);
                node.metadata.annotations = None;
            })
        })
        .reflect(w),
        dirty_tx.clone(),
        move |node, deleted| {
            let name = node.name_any();
            let labels = (!deleted).then(|| node.labels().clone());
            let changed = labels_seen.get(&name) != Some(&labels);
            labels_seen.insert(name, labels);
            changed
        },
    ));
    let (placements, w) = reflector::store();
    watches.push(spawn_watch(
        watcher(
            Api::<Placement>::all(client.clone()),
            watcher::Config::default(),
        )
        .map_ok(|event| {
            event.modify(|child| {
                strip_spec(child);
                slim(child);
            })
        })
        .reflect(w),
        dirty_tx.clone(),
        "placements",
        |p: &Placement| {
            let kind = match p.spec.parent.kind.as_str() {
                "Container" => "Container",
                "Image" => "Image",
                _ => return None,
            };
            Some(Dirty::Parent(ParentKey {
                kind,
                namespace: p.namespace().unwrap_or_default(),
                name: p.spec.parent.name.clone(),
            }))
        },
    ));
    let stores = Stores {
        containers,
        images,
        nodes,
        placements,
    };
    let ready = async {
        stores.containers.wait_until_ready().await.ok()?;
        stores.images.wait_until_ready().await.ok()?;
        stores.nodes.wait_until_ready().await.ok()?;
        stores.placements.wait_until_ready().await.ok()
    };
    if ready.await.is_none() {
        return;
    }
    tracing::info!(
        containers = stores.containers.state().len(),
        images = stores.images.state().len(),
        nodes = stores.nodes.state().len(),
        placements = stores.placements.state().len(),
        "caches filled; reconciling every parent"
    );
    metrics.ready.set(1);
    let _ = dirty_tx.send(Dirty::AllParents);
    let context = Arc::new(Context {
        client,
        metrics,
        stores,
    });
    loop {
        let Some(first) = dirty_rx.recv().await else {
            break;
        };
        tokio::time::sleep(options.debounce).await;
        let mut batch = vec![first];
        while let Ok(more) = dirty_rx.try_recv() {
            batch.push(more);
        }
        let keys = context.expand(batch);
        let index = Arc::new(context.index_children());
        let nodes = Arc::new(context.nodes());
        let failed: Vec<ParentKey> = futures::stream::iter(keys)
            .map(|key| {
                let (context, index, nodes) =
                    (Arc::clone(&context), Arc::clone(&index), Arc::clone(&nodes));
                async move {
                    let result = context.reconcile(&key, &nodes, &index).await;
                    let label = match &result {
                        Ok(()) => "ok",
                        Err(e) => e.label(),
                    };
                    context
                        .metrics
                        .reconciles
                        .with_label_values(&[key.kind, label])
                        .inc();
                    match result {
                        Ok(()) => None,
                        Err(error) => {
                            tracing::warn!(kind = key.kind, namespace = %key.namespace, name = %key.name, %error, "reconcile failed; retrying");
                            Some(key)
                        }
                    }
                }
            })
            .buffer_unordered(options.concurrency.max(1))
            .filter_map(|k| async move { k })
            .collect()
            .await;
        if !failed.is_empty() {
            let tx = dirty_tx.clone();
            let retry = options.retry;
            tokio::spawn(async move {
                tokio::time::sleep(retry).await;
                for key in failed {
                    let _ = tx.send(Dirty::Parent(key));
                }
            });
        }
    }
    for watch in watches {
        watch.abort();
    }
}

fn key_of(kind: &'static str, meta: &kube::api::ObjectMeta) -> ParentKey {
    ParentKey {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// Drives one reflected watch, marking what each applied or deleted object names.
fn spawn_watch<K, S>(
    stream: S,
    dirty: mpsc::UnboundedSender<Dirty>,
    what: &'static str,
    mark: impl Fn(&K) -> Option<Dirty> + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        while let Some(event) = stream.next().await {
            match event {
                Ok(
                    watcher::Event::Apply(o)
                    | watcher::Event::Delete(o)
                    | watcher::Event::InitApply(o),
                ) => {
                    if let Some(d) = mark(&o) {
                        let _ = dirty.send(d);
                    }
                }
                // A relist may have dropped objects deleted while the watch was down.
                Ok(watcher::Event::InitDone) => {
                    let _ = dirty.send(Dirty::AllParents);
                }
                Ok(watcher::Event::Init) => {}
                Err(error) => tracing::warn!(%error, watch = what, "watch failed; retrying"),
            }
        }
    })
}

/// Drives the Node watch: every parent is marked when a node appears, goes or is relabelled.
fn spawn_node_watch<S>(
    stream: S,
    dirty: mpsc::UnboundedSender<Dirty>,
    mut changed: impl FnMut(&PartialObjectMeta<Node>, bool) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    S: Stream<Item = Result<watcher::Event<PartialObjectMeta<Node>>, watcher::Error>>
        + Send
        + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream.default_backoff());
        while let Some(event) = stream.next().await {
            let moved = match event {
                Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => changed(&n, false),
                Ok(watcher::Event::Delete(n)) => changed(&n, true),
                // A relist may have dropped nodes deleted while the watch was down.
                Ok(watcher::Event::InitDone) => true,
                Ok(watcher::Event::Init) => false,
                Err(error) => {
                    tracing::warn!(%error, watch = "nodes", "watch failed; retrying");
                    false
                }
            };
            if moved {
                let _ = dirty.send(Dirty::AllParents);
            }
        }
    })
}

/// Children by parent (kind, namespace, name).
type ChildIndex = BTreeMap<ParentKey, Vec<Arc<Placement>>>;

struct Context {
    client: Client,
    metrics: Arc<ControllerMetrics>,
    stores: Stores,
}

impl Context {
    /// The parents a batch names: each once; "all" is every parent in the stores and every
    /// parent some child still names.
    fn expand(&self, batch: Vec<Dirty>) -> BTreeSet<ParentKey> {
        let mut keys = BTreeSet::new();
        for dirty in batch {
            match dirty {
                Dirty::Parent(key) => {
                    keys.insert(key);
                }
                Dirty::AllParents => {
                    for c in self.stores.containers.state() {
                        keys.insert(key_of("Container", c.meta()));
                    }
                    for i in self.stores.images.state() {
                        keys.insert(key_of("Image", i.meta()));
                    }
                    keys.extend(self.index_children().into_keys());
                }
            }
        }
        keys
    }

    fn index_children(&self) -> ChildIndex {
        let mut index = ChildIndex::new();
        for child in self.stores.placements.state() {
            let kind = match child.spec.parent.kind.as_str() {
                "Container" => "Container",
                "Image" => "Image",
                _ => continue,
            };
            let key = ParentKey {
                kind,
                namespace: child.namespace().unwrap_or_default(),
                name: child.spec.parent.name.clone(),
            };
            index.entry(key).or_default().push(child);
        }
        index
    }

    fn nodes(&self) -> BTreeMap<String, NodeInfo> {
        self.stores
            .nodes
            .state()
            .iter()
            .map(|n| {
                let name = n.name_any();
                (name.clone(), NodeInfo::new(name, n.labels().clone()))
            })
            .collect()
    }

    fn parent(&self, key: &ParentKey) -> Option<Result<ParentObject, String>> {
        let find = |meta: &kube::api::ObjectMeta| {
            meta.name.as_deref() == Some(key.name.as_str())
                && meta.namespace.as_deref() == Some(key.namespace.as_str())
        };
        let guard_error = |e: &kube::core::error_boundary::InvalidObject| e.error.clone();
        match key.kind {
            "Container" => self.stores.containers.find(|c| find(c.meta())).map(|c| {
                c.0.as_ref()
                    .map(|c| ParentObject::Container(Box::new(c.clone())))
                    .map_err(guard_error)
            }),
            _ => self.stores.images.find(|i| find(i.meta())).map(|i| {
                i.0.as_ref()
                    .map(|i| ParentObject::Image(Box::new(i.clone())))
                    .map_err(guard_error)
            }),
        }
    }

    /// One parent: its children, then its status.
    async fn reconcile(
        &self,
        key: &ParentKey,
        nodes: &BTreeMap<String, NodeInfo>,
        index: &ChildIndex,
    ) -> Result<(), Error> {
        let children: Vec<&Placement> = index
            .get(key)
            .map(|c| c.iter().map(Arc::as_ref).collect())
            .unwrap_or_default();
        let parent = match self.parent(key) {
            Some(Ok(parent)) => parent,
            Some(Err(error)) => {
                // A parent that does not match the schema: its children stay as they are (a
                // typo must not remove what runs); the API server normally refuses such objects.
                tracing::warn!(kind = key.kind, namespace = %key.namespace, name = %key.name, %error, "parent does not match its schema; children left as they are");
                return Ok(());
            }
            None => {
                // Gone: garbage collection deletes the children; only the finalizers of children
                // on nodes that no longer exist are the controller's to release.
                for child in children {
                    if !nodes.contains_key(&child.spec.node_name) {
                        self.release(child).await?;
                    }
                }
                return Ok(());
            }
        };
        // Children whose uid is not this parent's belong to an earlier object of the same
        // name: garbage collection removes them; they do not count and are not updated.
        let uid = parent.meta().uid.clone().unwrap_or_default();
        let (own, stale): (Vec<&Placement>, Vec<&Placement>) =
            children.into_iter().partition(|c| c.spec.parent.uid == uid);
        for child in stale {
            if !nodes.contains_key(&child.spec.node_name) {
                self.release(child).await?;
            }
        }
        let plan = plan_children(&parent, nodes, &own);
        let api: Api<Placement> = Api::namespaced(self.client.clone(), &key.namespace);
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        for child in &plan.apply {
            let name = child.name_any();
            api.patch(&name, &apply, &Patch::Apply(child)).await?;
            self.metrics.writes.with_label_values(&["apply"]).inc();
            tracing::debug!(kind = key.kind, namespace = %key.namespace, name = %key.name, placement = %name, "placement applied");
        }
        for name in &plan.delete {
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            self.metrics.writes.with_label_values(&["delete"]).inc();
            tracing::info!(kind = key.kind, namespace = %key.namespace, name = %key.name, placement = %name, "placement deleted (node no longer matches)");
        }
        for name in &plan.release {
            if let Some(child) = own.iter().find(|c| c.name_any() == *name) {
                self.release(child).await?;
            }
        }
        self.strip_legacy_finalizers(&parent).await?;
        self.write_status(key, &parent, &plan.desired_nodes, &own)
            .await
    }

    /// Removes the node agent's finalizer from a child whose node is gone for good.
    async fn release(&self, child: &Placement) -> Result<(), Error> {
        let finalizers: Vec<&String> = child
            .finalizers()
            .iter()
            .filter(|f| f.as_str() != FINALIZER)
            .collect();
        if finalizers.len() == child.finalizers().len() {
            return Ok(());
        }
        let namespace = child.namespace().ok_or(Error::Unnamed("namespace"))?;
        let patch = serde_json::json!({
            "metadata": { "finalizers": finalizers, "resourceVersion": child.resource_version() }
        });
        let api: Api<Placement> = Api::namespaced(self.client.clone(), &namespace);
        match api
            .patch(
                &child.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        self.metrics.writes.with_label_values(&["release"]).inc();
        tracing::info!(placement = %child.name_any(), node = %child.spec.node_name, "node is gone: its agent's finalizer released");
        Ok(())
    }

    /// Removes the per-node finalizers agents of earlier versions put on the parent itself
    /// (the children carry them now).
    async fn strip_legacy_finalizers(&self, parent: &ParentObject) -> Result<(), Error> {
        let meta = parent.meta();
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let kept: Vec<&String> = finalizers
            .iter()
            .filter(|f| !f.starts_with(LEGACY_FINALIZER_PREFIX))
            .collect();
        if kept.len() == finalizers.len() {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": { "finalizers": kept, "resourceVersion": meta.resource_version }
        });
        let name = meta.name.clone().ok_or(Error::Unnamed("name"))?;
        let namespace = meta.namespace.clone().ok_or(Error::Unnamed("namespace"))?;
        let params = PatchParams::default();
        match parent {
            ParentObject::Container(_) => {
                Api::<Container>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &params, &Patch::Merge(&patch))
                    .await?;
            }
            ParentObject::Image(_) => {
                Api::<Image>::namespaced(self.client.clone(), &namespace)
                    .patch(&name, &params, &Patch::Merge(&patch))
                    .await?;
            }
        }
        tracing::info!(kind = parent.kind(), %namespace, %name, "legacy per-node finalizers removed");
        Ok(())
    }

    /// Writes the aggregate status when it differs from the stored one.
    async fn write_status(
        &self,
        key: &ParentKey,
        parent: &ParentObject,
        desired_nodes: &[String],
        children: &[&Placement],
    ) -> Result<(), Error> {
        if parent.meta().deletion_timestamp.is_some() {
            return Ok(());
        }
        let previous: Option<AggregateStatus> = match parent {
            ParentObject::Container(c) => c.status.clone(),
            ParentObject::Image(i) => i.status.clone(),
        };
        let previous_conditions = previous
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let status = aggregate(
            parent.meta().generation,
            desired_nodes,
            children,
            previous_conditions,
            &crate::kubernetes::status::now(),
        );
        if previous.as_ref() == Some(&status) {
            return Ok(());
        }
        let patch = serde_json::json!({ "status": status });
        let params = PatchParams::default();
        let result = match parent {
            ParentObject::Container(_) => {
                Api::<Container>::namespaced(self.client.clone(), &key.namespace)
                    .patch_status(&key.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            ParentObject::Image(_) => Api::<Image>::namespaced(self.client.clone(), &key.namespace)
                .patch_status(&key.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => {}
            // Deleted meanwhile: nothing to report on.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.metrics.writes.with_label_values(&["status"]).inc();
        Ok(())
    }
}
