//! The node agent (`dockwright agent --kubernetes`): one per node, watching only its own
//! node's `Placement`s (label `dockwright.dev/node=<node>`), so what it holds and what the API
//! server sends it grow with its own node's work, never with the cluster.
//!
//! Three tasks around the file agent's loop ([`crate::agent::run`]), which does all the
//! observing, planning and executing as in file and git mode:
//! - the watch fills a reflector store; each burst of changes makes the [`feed`] build a new
//!   [`DesiredSnapshot`](crate::source::watch::DesiredSnapshot) for the loop, after putting
//!   this agent's finalizer on new `Placement`s;
//! - the loop runs a pass per burst of triggers (snapshots, Docker events, resync, back-off)
//!   and hands each pass's findings to the [`report`]er;
//! - the reporter writes the `Placement`s' statuses and lets deleted ones go.

pub mod feed;
pub mod parents;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Recorder, Reporter as EventReporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::{watch, Notify};

use crate::agent::AgentOptions;
use crate::api::{node_label_value, Placement, NODE_LABEL};
use crate::credentials::ScopedCredentials;
use crate::docker::Docker;
use crate::metrics::Metrics;
use crate::server::AgentState;
use feed::{Fed, Feed, PlacementObject};

use super::{field_manager, Error, FINALIZER};

/// Settings of the node agent.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// This node's name (`--node-name`).
    pub node_name: String,
    /// The loop's settings (owner, source `kubernetes`, policy gate, back-off, ...).
    pub agent: AgentOptions,
    /// Quiet time that closes a burst of `Placement` changes before a new snapshot.
    pub debounce: Duration,
}

impl NodeOptions {
    /// Defaults for `node_name` and `owner`.
    pub fn new(node_name: impl Into<String>, owner: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            agent: AgentOptions::new(owner),
            debounce: Duration::from_millis(50),
        }
    }
}

/// Runs the node agent until `shutdown` completes (containers are left running).
pub async fn run(
    client: Client,
    docker: Docker,
    options: NodeOptions,
    metrics: Arc<Metrics>,
    state: AgentState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let node = options.node_name.clone();
    let selector = format!("{NODE_LABEL}={}", node_label_value(&node));
    let shutdown = shutdown.shared();
    let api: Api<PlacementObject> = Api::all(client.clone());
    // One list up front: a refused token, a missing CRD or missing RBAC is an error at start
    // (exit status 2), not a watch retrying in the background for ever.
    api.list_metadata(&ListParams::default().labels(&selector).limit(1))
        .await?;
    tracing::info!(%node, %selector, "watching this node's placements");
    let (store, writer) = reflector::store::<PlacementObject>();
    let changed = Arc::new(Notify::new());
    let watch_task = {
        let changed = Arc::clone(&changed);
        let stream = watcher(api, watcher::Config::default().labels(&selector))
            .default_backoff()
            .reflect(writer)
            .touched_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(_) => changed.notify_one(),
                    Err(error) => tracing::warn!(%error, "placement watch"),
                }
            }
        })
    };
    // Also woken by relists that change nothing but deletions: `touched_objects` passes no
    // deletes, so a deleted Placement (its finalizer already gone) is noticed at the next
    // change; the loop's resync prunes meanwhile.
    tokio::select! {
        ready = store.wait_until_ready() => if ready.is_err() {
            watch_task.abort();
            return Ok(()); // the watch ended before the first list
        },
        () = shutdown.clone() => {
            watch_task.abort();
            return Ok(());
        }
    }
    let scoped = ScopedCredentials::default();
    let mut feed = Feed::new(client.clone(), scoped.clone());
    let first = feed.snapshot(&store.state()).await;
    add_finalizers(&client, &node, &first).await;
    let (snapshot_tx, snapshot_rx) = watch::channel(first.snapshot.clone());
    let (fed_tx, fed_rx) = watch::channel(Arc::new(first));
    let (report_tx, report_rx) = watch::channel(None);

    let feed_task = {
        let (client, node, store, changed) = (
            client.clone(),
            node.clone(),
            store.clone(),
            Arc::clone(&changed),
        );
        let debounce = options.debounce;
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                tokio::time::sleep(debounce).await;
                let fed = feed.snapshot(&store.state()).await;
                add_finalizers(&client, &node, &fed).await;
                let desired_moved = {
                    let current = snapshot_tx.borrow();
                    *current.desired != *fed.snapshot.desired || current.held != fed.snapshot.held
                };
                if desired_moved {
                    snapshot_tx.send_replace(fed.snapshot.clone());
                }
                fed_tx.send_replace(Arc::new(fed));
            }
        })
    };
    let report_task = {
        let recorder = Recorder::new(
            client.clone(),
            EventReporter {
                controller: "dockwright".into(),
                instance: Some(node.clone()),
            },
        );
        let reporter = report::Reporter::new(client.clone(), recorder, field_manager(&node));
        tokio::spawn(report_loop(reporter, store.clone(), report_rx, fed_rx))
    };

    let mut agent = options.agent;
    agent.credentials = agent.credentials.with_scoped(scoped);
    agent.pass_reports = Some(report_tx);
    let result = crate::agent::run(docker, snapshot_rx, agent, metrics, state, shutdown).await;
    for task in [watch_task, feed_task, report_task] {
        task.abort();
    }
    result.map_err(|e| Error::Docker(Box::new(e)))
}

/// Reports after every pass, and again when the feed moves (a new hold shows at once).
async fn report_loop(
    reporter: report::Reporter,
    store: Store<PlacementObject>,
    mut reports: watch::Receiver<Option<Arc<crate::agent::PassReport>>>,
    mut fed: watch::Receiver<Arc<Fed>>,
) {
    loop {
        tokio::select! {
            r = reports.changed() => if r.is_err() { return },
            r = fed.changed() => if r.is_err() { return },
        }
        let Some(report) = reports.borrow_and_update().clone() else {
            continue;
        };
        let fed = Arc::clone(&fed.borrow_and_update());
        let now = crate::kubernetes::status::now();
        reporter.report(&store.state(), &report, &fed, &now).await;
    }
}

/// Puts this agent's finalizer on the `Placement`s that lack it (a merge patch carrying the
/// `resourceVersion`, so a concurrent change makes it fail and the next snapshot retries).
async fn add_finalizers(client: &Client, node: &str, fed: &Fed) {
    for meta in &fed.need_finalizer {
        let (Some(name), Some(namespace)) = (&meta.name, &meta.namespace) else {
            continue;
        };
        let mut finalizers = meta.finalizers.clone().unwrap_or_default();
        finalizers.push(FINALIZER.to_string());
        let patch = serde_json::json!({
            "metadata": { "finalizers": finalizers, "resourceVersion": meta.resource_version }
        });
        let api: Api<Placement> = Api::namespaced(client.clone(), namespace);
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::debug!(%node, placement = %name, "finalizer added"),
            Err(error) => {
                tracing::warn!(%node, placement = %name, %error, "could not add the finalizer")
            }
        }
    }
}
