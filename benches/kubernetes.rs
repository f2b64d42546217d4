//! Kubernetes controller benchmark (issue 5): 1000 `Container` objects across 10 simulated
//! nodes. Run: `cargo bench --bench kubernetes` (needs the test image, built by
//! `scripts/build-test-image.sh`).
//!
//! What is real and what is simulated:
//! - Placement: the real pure function, 1000 objects × 10 nodes.
//! - The API server is SIMULATED: a request-level mock behind a real `kube::Client`, answering
//!   every request at once (finalizer patch, status patch, event create/patch) and counting
//!   them. No watch latency: "create" is the object appearing in the controller's store and its
//!   reconcile being called, as the `Controller` would.
//! - Nodes are SIMULATED: 10 controller contexts (own node name, labels, owner, finalizer and
//!   field manager) on this machine's ONE Docker daemon. Docker is REAL: every reconcile
//!   observes the daemon and runs its plan. To keep the machine usable, 990 objects ask for
//!   `replicas: 0` (real observe/plan/status path, no container) and 10 (one per node) for one
//!   real busybox container.
//!
//! Printed: API requests per object per reconcile (first, converging, steady state, for
//! placed and not-placed objects), Docker requests per reconcile, and the time from create to
//! the status patch saying Ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use dockwright::api::{Container, ContainerSpec, PullPolicy};
use dockwright::docker::Docker;
use dockwright::kubernetes::controller::{
    reconcile_container, ContainerObject, Context, ControllerOptions, ImageObject,
};
use dockwright::kubernetes::placement::container_placed;
use dockwright::kubernetes::NodeInfo;
use futures::StreamExt;
use http::{Request, Response};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use serde_json::Value;

const IMAGE: &str = "dockwright-test/busybox:latest";
const OBJECTS: usize = 1000;
const NODES: usize = 10;
/// Reconciles in flight per simulated node (the controller's default).
const CONCURRENCY: usize = 4;

/// Requests the simulated API server answered, by kind.
#[derive(Default)]
struct Counts {
    finalizer: AtomicU64,
    status: AtomicU64,
    events: AtomicU64,
    other: AtomicU64,
    /// When each object's Ready status patch arrived.
    ready_at: Mutex<BTreeMap<String, Instant>>,
    /// The last status each object was patched with (what the watch would deliver back).
    last_status: Mutex<BTreeMap<String, Value>>,
}

impl Counts {
    fn total(&self) -> u64 {
        [&self.finalizer, &self.status, &self.events, &self.other]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Answers every request at once: status patches echo the status into the object, finalizer
/// patches return the object with the finalizer, events echo their body.
fn simulated_api(counts: Arc<Counts>) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, reply)) = handle.next_request().await {
            let uri = request.uri().path().to_string();
            let method = request.method().clone();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let name = uri
                .trim_end_matches("/status")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string();
            let response = if uri.starts_with("/apis/events.k8s.io/") {
                counts.events.fetch_add(1, Ordering::Relaxed);
                body
            } else if uri.ends_with("/status") {
                counts.status.fetch_add(1, Ordering::Relaxed);
                let ready = body["status"]["nodes"][0]["conditions"]
                    .as_array()
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                if ready {
                    counts
                        .ready_at
                        .lock()
                        .unwrap()
                        .entry(name.clone())
                        .or_insert_with(Instant::now);
                }
                counts
                    .last_status
                    .lock()
                    .unwrap()
                    .insert(name.clone(), body["status"].clone());
                serde_json::json!({"apiVersion": "dockwright.dev/v1alpha1", "kind": "Container",
                    "metadata": {"name": name, "namespace": "default"}, "spec": {"image": IMAGE}, "status": body["status"]})
            } else if method == http::Method::PATCH {
                counts.finalizer.fetch_add(1, Ordering::Relaxed);
                serde_json::json!({"apiVersion": "dockwright.dev/v1alpha1", "kind": "Container",
                    "metadata": {"name": name, "namespace": "default"}, "spec": {"image": IMAGE}})
            } else {
                counts.other.fetch_add(1, Ordering::Relaxed);
                serde_json::json!({})
            };
            let bytes = serde_json::to_vec(&response).unwrap_or_default();
            reply.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(bytes))
                    .unwrap(),
            );
        }
    });
    kube::Client::new(service, "default")
}

fn object(i: usize, run: &str) -> Container {
    let node = i % NODES;
    let mut c = Container::new(
        &format!("{run}-{i}"),
        ContainerSpec {
            image: IMAGE.into(),
            image_pull_policy: Some(PullPolicy::Never),
            replicas: u32::from(i < NODES),
            command: Some(vec!["sleep".into(), "3600".into()]),
            stop_grace_period_seconds: Some(1),
            node_selector: BTreeMap::from([("zone".to_string(), format!("z{node}"))]),
            ..Default::default()
        },
    );
    c.metadata.namespace = Some("default".into());
    c.metadata.uid = Some(format!("uid-{run}-{i}"));
    c.metadata.generation = Some(1);
    c
}

struct SimNode {
    ctx: Arc<Context>,
    store: Writer<ContainerObject>,
    _images: Writer<ImageObject>,
    counts: Arc<Counts>,
    owner: String,
}

fn node_info(n: usize) -> NodeInfo {
    NodeInfo::new(
        format!("n{n}"),
        BTreeMap::from([("zone".to_string(), format!("z{n}"))]),
    )
}

/// Reconciles every object on every node once (each node `CONCURRENCY` at a time); returns
/// the elapsed time, API requests and Docker requests of the pass.
async fn pass(nodes: &[SimNode], objects: &[Container]) -> (Duration, u64, u64, usize) {
    let api_before: u64 = nodes.iter().map(|n| n.counts.total()).sum();
    let docker_before: u64 = nodes.iter().map(|n| n.ctx.docker.request_total()).sum();
    let started = Instant::now();
    let failures = Arc::new(AtomicU64::new(0));
    futures::future::join_all(nodes.iter().map(|node| {
        let failures = Arc::clone(&failures);
        async move {
            futures::stream::iter(objects.iter().filter_map(|o| {
                node.ctx
                    .containers
                    .get(&kube::runtime::reflector::ObjectRef::from_obj(
                        &DeserializeGuard(Ok(o.clone())),
                    ))
            }))
            .for_each_concurrent(CONCURRENCY, |obj| {
                let failures = Arc::clone(&failures);
                let ctx = Arc::clone(&node.ctx);
                async move {
                    if let Err(e) = reconcile_container(obj, ctx).await {
                        eprintln!("reconcile failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await;
        }
    }))
    .await;
    let api: u64 = nodes.iter().map(|n| n.counts.total()).sum::<u64>() - api_before;
    let docker: u64 = nodes
        .iter()
        .map(|n| n.ctx.docker.request_total())
        .sum::<u64>()
        - docker_before;
    (
        started.elapsed(),
        api,
        docker,
        failures.load(Ordering::Relaxed) as usize,
    )
}

fn with_finalizer(c: &Container, node: usize) -> Container {
    let mut c = c.clone();
    c.metadata.finalizers = Some(vec![dockwright::kubernetes::finalizer_name(&format!(
        "n{node}"
    ))]);
    c
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn cleanup(owners: &[String]) {
    let Ok(client) = bollard::Docker::connect_with_defaults() else {
        return;
    };
    for owner in owners {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("dockwright.dev/owner={owner}")],
        )]);
        let list = client
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap_or_default();
        for c in list.into_iter().filter_map(|c| c.id) {
            let _ = client
                .remove_container(
                    &c,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await;
        }
    }
}

#[tokio::main]
async fn main() {
    let run = format!("kb{:x}", std::process::id());
    let objects: Vec<Container> = (0..OBJECTS).map(|i| object(i, &run)).collect();

    // Placement: pure.
    let infos: Vec<NodeInfo> = (0..NODES).map(node_info).collect();
    let started = Instant::now();
    let mut placed = vec![0usize; NODES];
    for (n, info) in infos.iter().enumerate() {
        placed[n] = objects
            .iter()
            .filter(|o| container_placed(&o.spec, info))
            .count();
    }
    let placement = started.elapsed();
    println!("placement: {} objects x {NODES} nodes in {:?} ({:.0} ns per decision); placed per node: {:?}",
        OBJECTS, placement, placement.as_nanos() as f64 / (OBJECTS * NODES) as f64, placed);

    let docker = Docker::connect()
        .await
        .expect("connect to the Docker daemon");
    let mut nodes = Vec::new();
    for n in 0..NODES {
        let counts = Arc::new(Counts::default());
        let client = simulated_api(Arc::clone(&counts));
        let (c_reader, c_writer) = reflector::store::<ContainerObject>();
        let (i_reader, i_writer) = reflector::store::<ImageObject>();
        let owner = format!("dwbench-{run}-n{n}");
        let options = ControllerOptions::new(format!("n{n}"), owner.clone());
        let ctx = Arc::new(Context::new(
            client,
            Docker::connect().await.expect("docker"),
            options,
            node_info(n),
            c_reader,
            i_reader,
            None,
        ));
        nodes.push(SimNode {
            ctx,
            store: c_writer,
            _images: i_writer,
            counts,
            owner,
        });
    }
    drop(docker);
    let owners: Vec<String> = nodes.iter().map(|n| n.owner.clone()).collect();

    // Every node sees every object (all namespaces are watched).
    let created = Instant::now();
    for node in &mut nodes {
        for o in &objects {
            node.store
                .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o.clone()))));
        }
    }
    let (t1, api1, docker1, f1) = pass(&nodes, &objects).await;
    // The finalizer patch lands: each node sees its finalizer on the objects placed on it.
    for (n, node) in nodes.iter_mut().enumerate() {
        for (i, o) in objects.iter().enumerate() {
            let o = if i % NODES == n {
                with_finalizer(o, n)
            } else {
                o.clone()
            };
            node.store
                .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o))));
        }
    }
    let (t2, api2, docker2, f2) = pass(&nodes, &objects).await;
    // Steady state: the objects now carry the status each node wrote.
    for (n, node) in nodes.iter_mut().enumerate() {
        for (i, o) in objects.iter().enumerate() {
            let mut o = if i % NODES == n {
                with_finalizer(o, n)
            } else {
                o.clone()
            };
            if i % NODES == n {
                // What the status patch carried, as the watch would deliver it.
                let name = o.metadata.name.clone().unwrap_or_default();
                let last = node.counts.last_status.lock().unwrap().get(&name).cloned();
                o.status = last.and_then(|v| serde_json::from_value(v).ok());
            }
            node.store
                .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o))));
        }
    }
    let (t3, api3, docker3, f3) = pass(&nodes, &objects).await;

    // Latency of one object on an idle node: create (first reconcile adds the finalizer),
    // then the reconcile the finalizer's watch event triggers, to the Ready status patch.
    let mut latencies = Vec::new();
    for (n, node) in nodes.iter_mut().enumerate() {
        let mut o = object(n, &format!("{run}-lat"));
        o.spec.replicas = 1;
        let started = Instant::now();
        node.store
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o.clone()))));
        let first = DeserializeGuard(Ok(o.clone()));
        let _ = reconcile_container(Arc::new(first), Arc::clone(&node.ctx)).await;
        let o = with_finalizer(&o, n);
        node.store
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o.clone()))));
        let _ = reconcile_container(Arc::new(DeserializeGuard(Ok(o))), Arc::clone(&node.ctx)).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();

    let ready = nodes
        .iter()
        .flat_map(|n| n.counts.ready_at.lock().unwrap().clone())
        .collect::<BTreeMap<_, _>>();
    let mut to_ready: Vec<Duration> = ready
        .iter()
        .filter(|(name, _)| !name.contains("-lat-"))
        .map(|(_, t)| t.duration_since(created))
        .collect();
    to_ready.sort();
    let reconciles = (OBJECTS * NODES) as f64;
    println!(
        "\n{:<34} {:>10} {:>12} {:>14} {:>16} {:>9}",
        "pass (1000 objects x 10 nodes)",
        "wall",
        "API reqs",
        "API/obj/rec",
        "Docker reqs/rec",
        "failures"
    );
    for (label, t, api, docker, f) in [
        ("1 first sight (finalizer)", t1, api1, docker1, f1),
        ("2 converge (create, status)", t2, api2, docker2, f2),
        ("3 steady state (no change)", t3, api3, docker3, f3),
    ] {
        println!(
            "{label:<34} {:>10.2?} {api:>12} {:>14.3} {:>16.2} {f:>9}",
            t,
            api as f64 / reconciles,
            docker as f64 / reconciles
        );
    }
    let placed_total: usize = placed.iter().sum();
    println!("\nper placed object: first {:.2}, converge {:.2}, steady {:.2} API requests (placed objects: {placed_total}; not-placed reconciles send none)",
        api1 as f64 / placed_total as f64, api2 as f64 / placed_total as f64, api3 as f64 / placed_total as f64);
    let sum = |f: fn(&Counts) -> &AtomicU64| {
        nodes
            .iter()
            .map(|n| f(&n.counts).load(Ordering::Relaxed))
            .sum::<u64>()
    };
    println!(
        "requests by kind: finalizer {}, status {}, events {}, other {}",
        sum(|c| &c.finalizer),
        sum(|c| &c.status),
        sum(|c| &c.events),
        sum(|c| &c.other)
    );
    println!(
        "create -> status Ready, one object with one real container on an idle node ({} samples): p50 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 1.0)
    );
    println!(
        "create -> status Ready, batch of {} objects created at once (passes 1 and 2 back to back): p50 {:?}, p95 {:?}, all {:?}",
        to_ready.len(),
        percentile(&to_ready, 0.5),
        percentile(&to_ready, 0.95),
        percentile(&to_ready, 1.0)
    );
    cleanup(&owners).await;
}
