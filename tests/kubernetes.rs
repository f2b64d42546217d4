//! The Kubernetes controller through the real kube client against a request-level API-server
//! mock (kube-rs controller-rs's `ApiServerVerifier`: the test plays the API server request by
//! request and asserts each one), wired to the REAL Docker daemon. Reconciles are called
//! directly with a context built on the mock client and reflector stores the test fills.
//!
//! `end_to_end_against_kubeconfig` (ignored) runs the whole controller against whatever
//! cluster `KUBECONFIG` names; see charts/dockwright/README.md.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};
use common::{ensure_test_image, TestOwner, TEST_IMAGE};
use dockwright::api::{
    Container, ContainerSpec, EnvVar, HealthCheck, Image, ImageSpec, LocalObjectReference,
    PullPolicy, RolloutStrategy,
};
use dockwright::docker::{DaemonEvent, Docker};
use dockwright::kubernetes::controller::{
    load_node, reconcile_container, ContainerObject, Context, ControllerOptions, ImageObject,
};
use dockwright::kubernetes::image::reconcile_image;
use dockwright::kubernetes::NodeInfo;
use http::{Request, Response};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};

const NODE: &str = "n1";
const FINALIZER: &str = "dockwright.dev/node.n1";
/// Per request: a reconcile that does not send the next request in time fails the test.
const STEP: Duration = Duration::from_secs(60);

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Plays the API server: hands out the client's requests one at a time.
struct ApiServerVerifier(Handle);

/// One request as the mock received it.
struct Seen {
    method: String,
    /// Path and query.
    uri: String,
    body: Value,
    reply: tower_test::mock::SendResponse<Response<Body>>,
}

impl Seen {
    fn respond(self, status: u16, body: &Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        self.reply.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .unwrap(),
        );
    }
}

impl ApiServerVerifier {
    async fn next(&mut self) -> Seen {
        let (request, reply) = tokio::time::timeout(STEP, self.0.next_request())
            .await
            .expect("the controller sent no further request in time")
            .expect("client dropped");
        let method = request.method().to_string();
        let uri = request.uri().to_string().trim_end_matches('?').to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Seen {
            method,
            uri,
            body,
            reply,
        }
    }

    /// Answers event POSTs (201, echoing the body) until another request comes; returns the
    /// events' bodies and that request.
    async fn events_then(&mut self) -> (Vec<Value>, Seen) {
        let mut events = Vec::new();
        loop {
            let seen = self.next().await;
            if seen.uri.starts_with("/apis/events.k8s.io/v1/") {
                // A repeated event (same reason and note) is a PATCH of the first one's series.
                assert!(
                    seen.method == "POST" || seen.method == "PATCH",
                    "{} {}",
                    seen.method,
                    seen.uri
                );
                let body = seen.body.clone();
                seen.respond(201, &body);
                events.push(body);
            } else {
                return (events, seen);
            }
        }
    }

    /// Answers event POSTs until none comes for a moment; returns their bodies.
    async fn only_events(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Ok(Some((request, reply))) =
            tokio::time::timeout(Duration::from_millis(500), self.0.next_request()).await
        {
            let uri = request.uri().to_string();
            assert!(
                uri.starts_with("/apis/events.k8s.io/v1/"),
                "unexpected request {} {uri}",
                request.method()
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            reply.send_response(
                Response::builder()
                    .status(201)
                    .body(Body::from(bytes.to_vec()))
                    .unwrap(),
            );
            events.push(body);
        }
        events
    }

    /// Answers event POSTs until `task` ends (any other request fails the test); returns the
    /// events' bodies and the task's result.
    async fn events_until<T>(&mut self, task: tokio::task::JoinHandle<T>) -> (Vec<Value>, T) {
        let mut events = Vec::new();
        let mut task = std::pin::pin!(task);
        loop {
            tokio::select! {
                result = &mut task => return (events, result.unwrap()),
                next = tokio::time::timeout(STEP, self.0.next_request()) => {
                    let (request, reply) = next
                        .expect("the reconcile neither ended nor sent a request in time")
                        .expect("client dropped");
                    let uri = request.uri().to_string();
                    assert!(
                        uri.starts_with("/apis/events.k8s.io/v1/"),
                        "unexpected request {} {uri}",
                        request.method()
                    );
                    let bytes = request.into_body().collect_bytes().await.unwrap();
                    events.push(serde_json::from_slice(&bytes).unwrap());
                    reply.send_response(
                        Response::builder()
                            .status(201)
                            .body(Body::from(bytes.to_vec()))
                            .unwrap(),
                    );
                }
            }
        }
    }

    /// Asserts that nothing is sent for a moment.
    async fn nothing_sent(&mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(500), self.0.next_request()).await
        {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// A controller context on a mock client, with stores the test fills.
struct Fixture {
    ctx: Arc<Context>,
    api: ApiServerVerifier,
    containers: Writer<ContainerObject>,
    images: Writer<ImageObject>,
    owner: TestOwner,
    docker: bollard::Docker,
}

async fn fixture(test: &str, labels: &[(&str, &str)]) -> Fixture {
    fixture_with(test, labels, |_| {}).await
}

async fn fixture_with(
    test: &str,
    labels: &[(&str, &str)],
    tune: impl FnOnce(&mut ControllerOptions),
) -> Fixture {
    ensure_test_image().await;
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let owner = TestOwner::new(test);
    let (c_reader, c_writer) = reflector::store::<ContainerObject>();
    let (i_reader, i_writer) = reflector::store::<ImageObject>();
    let docker = Docker::connect().await.unwrap();
    let mut options = ControllerOptions::new(NODE, owner.name());
    options.resync = Duration::from_secs(300);
    tune(&mut options);
    let node = NodeInfo::new(
        NODE,
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let ctx = Arc::new(Context::new(
        client, docker, options, node, c_reader, i_reader, None,
    ));
    Fixture {
        ctx,
        api: ApiServerVerifier(handle),
        containers: c_writer,
        images: i_writer,
        owner,
        docker: common::docker().await,
    }
}

impl Fixture {
    /// Puts `c` in the store (as the watcher would) and reconciles it in the background.
    fn reconcile(
        &mut self,
        c: &Container,
    ) -> tokio::task::JoinHandle<
        Result<kube::runtime::controller::Action, dockwright::kubernetes::Error>,
    > {
        let guard = DeserializeGuard(Ok(c.clone()));
        self.containers
            .apply_watcher_event(&watcher::Event::Apply(guard.clone()));
        tokio::spawn(reconcile_container(Arc::new(guard), Arc::clone(&self.ctx)))
    }

    /// Puts `i` in the store and reconciles it in the background.
    fn reconcile_image(
        &mut self,
        i: &Image,
    ) -> tokio::task::JoinHandle<
        Result<kube::runtime::controller::Action, dockwright::kubernetes::Error>,
    > {
        let guard = DeserializeGuard(Ok(i.clone()));
        self.images
            .apply_watcher_event(&watcher::Event::Apply(guard.clone()));
        tokio::spawn(reconcile_image(Arc::new(guard), Arc::clone(&self.ctx)))
    }

    /// Feeds this owner's Docker events to the context as the controller's events task does
    /// (on a client of its own, so the context's request counts stay the reconciles'), and
    /// hands each event on to the returned channel once the context has it. Returns once the
    /// stream is connected.
    async fn follow_events(&self) -> tokio::sync::mpsc::UnboundedReceiver<DaemonEvent> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let events = Docker::connect().await.unwrap();
        let owner = self.owner.name().to_string();
        tokio::spawn(async move { events.follow_events(&owner, tx).await });
        let ctx = Arc::clone(&self.ctx);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                ctx.on_daemon_event(&event);
                let _ = seen_tx.send(event);
            }
        });
        let connected = tokio::time::timeout(STEP, seen_rx.recv()).await.unwrap();
        assert_eq!(connected, Some(DaemonEvent::Connected));
        seen_rx
    }

    /// Daemon requests of `operation` the context made so far.
    fn requests(&self, operation: &str) -> u64 {
        self.ctx
            .docker
            .request_counts()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// This owner's containers on the daemon: name → (state, env).
    async fn containers(&self) -> BTreeMap<String, (String, Vec<String>)> {
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![self.owner.label_filter()],
        )]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for c in list {
            let id = c.id.unwrap();
            let inspect = self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .unwrap();
            let name = inspect.name.unwrap().trim_start_matches('/').to_string();
            let state = inspect
                .state
                .and_then(|s| s.status)
                .map(|s| s.to_string())
                .unwrap_or_default();
            let env = inspect.config.and_then(|c| c.env).unwrap_or_default();
            out.insert(name, (state, env));
        }
        out
    }
}

fn container(name: &str, generation: i64) -> Container {
    let mut c = Container::new(
        name,
        ContainerSpec {
            image: TEST_IMAGE.into(),
            image_pull_policy: Some(PullPolicy::IfNotPresent),
            replicas: 1,
            command: Some(vec!["sleep".into(), "600".into()]),
            stop_grace_period_seconds: Some(1),
            ..Default::default()
        },
    );
    c.metadata.namespace = Some("default".into());
    c.metadata.uid = Some(format!("uid-{name}"));
    c.metadata.generation = Some(generation);
    c.metadata.resource_version = Some("1".into());
    c
}

fn with_finalizer(mut c: Container) -> Container {
    c.metadata.finalizers = Some(vec![FINALIZER.into()]);
    c
}

fn to_json(c: &Container) -> Value {
    serde_json::to_value(c).unwrap()
}

fn path(name: &str) -> String {
    format!("/apis/dockwright.dev/v1alpha1/namespaces/default/containers/{name}")
}

fn image(name: &str, reference: &str, generation: i64) -> Image {
    let mut i = Image::new(
        name,
        ImageSpec {
            reference: reference.into(),
            ..Default::default()
        },
    );
    i.metadata.namespace = Some("default".into());
    i.metadata.uid = Some(format!("uid-{name}"));
    i.metadata.generation = Some(generation);
    i.metadata.resource_version = Some("1".into());
    i
}

fn image_path(name: &str) -> String {
    format!("/apis/dockwright.dev/v1alpha1/namespaces/default/images/{name}")
}

/// The container `name` as the daemon has it.
async fn inspect(f: &Fixture, name: &str) -> bollard::models::ContainerInspectResponse {
    f.docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .unwrap()
}

/// Asserts the status PATCH of a `Container`: server-side apply, this node's field manager,
/// forced, one entry.
fn assert_status_patch(seen: &Seen, name: &str) -> Value {
    assert_status_patch_of(seen, &path(name), "Container")
}

/// Asserts the status PATCH of the object at `object_path` (of `kind`): server-side apply,
/// this node's field manager, forced, nothing but this node's entry. Returns the entry.
fn assert_status_patch_of(seen: &Seen, object_path: &str, kind: &str) -> Value {
    assert_eq!(seen.method, "PATCH");
    let (p, query) = seen.uri.split_once('?').unwrap();
    assert_eq!(p, format!("{object_path}/status"));
    let mut q: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    q.sort();
    assert_eq!(
        q,
        vec!["fieldManager=dockwright-n1", "force=true"],
        "{}",
        seen.uri
    );
    assert_eq!(seen.body["apiVersion"], "dockwright.dev/v1alpha1");
    assert_eq!(seen.body["kind"], kind);
    let nodes = seen.body["status"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{}", seen.body);
    assert_eq!(
        seen.body.as_object().unwrap().len(),
        3,
        "only apiVersion, kind, status: {}",
        seen.body
    );
    assert_eq!(
        seen.body["status"].as_object().unwrap().len(),
        1,
        "only status.nodes: {}",
        seen.body
    );
    nodes[0].clone()
}

fn condition<'a>(entry: &'a Value, type_: &str) -> &'a Value {
    entry["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

/// Reconciles a fresh object: the finalizer patch first, nothing else.
async fn add_finalizer(f: &mut Fixture, c: &Container) -> Container {
    let task = f.reconcile(c);
    let seen = f.api.next().await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.uri, path(c.metadata.name.as_deref().unwrap()));
    assert_eq!(
        seen.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ])
    );
    let added = with_finalizer(c.clone());
    seen.respond(200, &to_json(&added));
    task.await.unwrap().unwrap();
    assert!(
        f.containers().await.is_empty(),
        "nothing is created before the finalizer is in place"
    );
    added
}

/// Reconciles a placed object with the finalizer: events, then the status patch (answered
/// with the object carrying that status). Returns the events, the entry and the new object.
async fn converge(f: &mut Fixture, c: &Container) -> (Vec<Value>, Value, Container) {
    let name = c.metadata.name.clone().unwrap();
    let task = f.reconcile(c);
    let (events, seen) = f.api.events_then().await;
    let entry = assert_status_patch(&seen, &name);
    let mut updated = c.clone();
    updated.status = Some(serde_json::from_value(seen.body["status"].clone()).unwrap());
    seen.respond(200, &to_json(&updated));
    task.await.unwrap().unwrap();
    (events, entry, updated)
}

#[tokio::test]
async fn create_adds_the_finalizer_then_runs_and_reports_ready() {
    let mut f = fixture("k8s-create", &[]).await;
    let name = common::unique("kw-create");
    let c = add_finalizer(&mut f, &container(&name, 1)).await;
    let (events, entry, updated) = converge(&mut f, &c).await;

    let running = f.containers().await;
    assert_eq!(running.keys().collect::<Vec<_>>(), vec![&name]);
    assert_eq!(running[&name].0, "running");
    assert_eq!(entry["node"], NODE);
    assert_eq!(entry["observedGeneration"], 1);
    assert_eq!(entry["readyReplicas"], "1/1");
    assert_eq!(condition(&entry, "Ready")["status"], "True");
    assert_eq!(condition(&entry, "Degraded")["status"], "False");
    assert_eq!(entry["replicas"][0]["name"], name.as_str());
    assert_eq!(entry["replicas"][0]["state"], "running");
    assert!(entry["replicas"][0]["containerId"]
        .as_str()
        .is_some_and(|id| id.len() == 64));
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["Create", "Start"]);

    // Converged: a second reconcile sends nothing at all (status unchanged, no events).
    let task = f.reconcile(&updated);
    f.api.nothing_sent().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn event_bodies_name_the_action_target_and_outcome() {
    let mut f = fixture("k8s-events", &[]).await;
    let name = common::unique("kw-events");
    let c = add_finalizer(&mut f, &container(&name, 1)).await;
    let (events, _, _) = converge(&mut f, &c).await;
    let create = &events[0];
    assert_eq!(create["type"], "Normal");
    assert_eq!(create["reason"], "Create");
    assert_eq!(create["action"], "Create");
    assert_eq!(create["note"], format!("create {name}: done"));
    assert_eq!(create["reportingController"], "dockwright");
    assert_eq!(create["reportingInstance"], NODE);
    assert_eq!(create["regarding"]["kind"], "Container");
    assert_eq!(create["regarding"]["apiVersion"], "dockwright.dev/v1alpha1");
    assert_eq!(create["regarding"]["name"], name.as_str());
    assert_eq!(create["regarding"]["namespace"], "default");
    assert_eq!(create["metadata"]["namespace"], "default");
}

#[tokio::test]
async fn an_edit_converges_and_reports_the_new_generation() {
    let mut f = fixture("k8s-edit", &[]).await;
    let name = common::unique("kw-edit");
    let c = add_finalizer(&mut f, &container(&name, 1)).await;
    let (_, _, mut c) = converge(&mut f, &c).await;
    let before = f.containers().await;

    c.spec.env = vec![EnvVar {
        name: "MODE".into(),
        value: "edited".into(),
        ..Default::default()
    }];
    c.metadata.generation = Some(2);
    let (events, entry, _) = converge(&mut f, &c).await;
    let after = f.containers().await;
    assert_eq!(after[&name].0, "running");
    assert!(
        after[&name].1.contains(&"MODE=edited".to_string()),
        "{:?}",
        after[&name].1
    );
    assert_ne!(before, after);
    assert_eq!(entry["observedGeneration"], 2);
    assert_eq!(condition(&entry, "Ready")["status"], "True");
    assert_eq!(condition(&entry, "Ready")["observedGeneration"], 2);
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"Create"), "{reasons:?}");
}

#[tokio::test]
async fn deletion_removes_the_containers_then_releases_the_finalizer() {
    let mut f = fixture("k8s-delete", &[]).await;
    let name = common::unique("kw-delete");
    let c = add_finalizer(&mut f, &container(&name, 1)).await;
    let (_, _, mut c) = converge(&mut f, &c).await;
    assert_eq!(f.containers().await.len(), 1);

    c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let task = f.reconcile(&c);
    let (events, seen) = f.api.events_then().await;
    assert!(
        f.containers().await.is_empty(),
        "containers are gone before the finalizer is released"
    );
    assert_eq!(
        events
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Remove"]
    );
    assert_eq!(seen.method, "PATCH");
    assert_eq!(seen.uri, path(&name));
    assert_eq!(
        seen.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    let mut gone = c.clone();
    gone.metadata.finalizers = None;
    seen.respond(200, &to_json(&gone));
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_gone_node_loses_its_finalizer_on_deletion() {
    let mut f = fixture("k8s-gone", &[]).await;
    let name = common::unique("kw-gone");
    let mut c = container(&name, 1);
    c.spec.node_name = Some("elsewhere".into());
    c.metadata.finalizers = Some(vec![
        "dockwright.dev/node.dead".into(),
        "other.example/keep".into(),
    ]);
    c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    let task = f.reconcile(&c);
    let seen = f.api.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/api/v1/nodes/dead")
    );
    seen.respond(404, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "nodes \"dead\" not found"}));
    let seen = f.api.next().await;
    assert_eq!(seen.method, "PATCH");
    assert_eq!(
        seen.body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "dockwright.dev/node.dead"},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    let mut after = c.clone();
    after.metadata.finalizers = Some(vec!["other.example/keep".into()]);
    seen.respond(200, &to_json(&after));
    task.await.unwrap().unwrap();
    f.api.nothing_sent().await;
}

#[tokio::test]
async fn node_lookup_then_a_selector_mismatch_creates_nothing() {
    let mut f = fixture("k8s-node", &[]).await;
    let client = f.ctx.client.clone();
    let lookup = tokio::spawn(async move { load_node(&client, NODE).await });
    let seen = f.api.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/api/v1/nodes/n1")
    );
    seen.respond(200, &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {"zone": "a"}}}));
    let node = lookup.await.unwrap().unwrap();
    assert_eq!(node.labels.get("zone").map(String::as_str), Some("a"));
    f.ctx.set_node(node);

    let name = common::unique("kw-node");
    let mut c = container(&name, 1);
    c.spec.node_selector = BTreeMap::from([("zone".to_string(), "b".to_string())]);
    let task = f.reconcile(&c);
    f.api.nothing_sent().await;
    task.await.unwrap().unwrap();
    assert!(f.containers().await.is_empty());

    // Relabelled to match: now the finalizer comes first, as for any placed object.
    f.ctx.set_node(NodeInfo::new(
        NODE,
        BTreeMap::from([("zone".to_string(), "b".to_string())]),
    ));
    add_finalizer(&mut f, &c).await;
}

#[tokio::test]
async fn no_longer_placed_removes_the_containers_and_lets_go() {
    let mut f = fixture("k8s-unplace", &[("zone", "a")]).await;
    let name = common::unique("kw-unplace");
    let mut c = container(&name, 1);
    c.spec.node_selector = BTreeMap::from([("zone".to_string(), "a".to_string())]);
    let c = add_finalizer(&mut f, &c).await;
    let (_, _, c) = converge(&mut f, &c).await;
    assert_eq!(f.containers().await.len(), 1);

    f.ctx.set_node(NodeInfo::new(
        NODE,
        BTreeMap::from([("zone".to_string(), "b".to_string())]),
    ));
    let task = f.reconcile(&c);
    let (events, seen) = f.api.events_then().await;
    assert_eq!(events.len(), 1);
    assert!(f.containers().await.is_empty());
    assert_eq!(
        seen.body[1],
        json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
    let mut released = c.clone();
    released.metadata.finalizers = None;
    seen.respond(200, &to_json(&released));
    let seen = f.api.next().await;
    assert_eq!(seen.method, "PATCH");
    assert!(
        seen.uri.contains("/status?") && seen.uri.contains("fieldManager=dockwright-n1"),
        "{}",
        seen.uri
    );
    assert_eq!(seen.body["status"], json!({"nodes": []}));
    seen.respond(200, &to_json(&released));
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn image_pull_secrets_are_read_from_the_namespace() {
    use base64::Engine as _;
    let mut f = fixture("k8s-secret", &[]).await;
    let name = common::unique("kw-secret");
    let mut c = container(&name, 1);
    c.spec.image_pull_secrets = vec![LocalObjectReference {
        name: "regcred".into(),
    }];
    let c = add_finalizer(&mut f, &c).await;
    let task = f.reconcile(&c);
    let seen = f.api.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/api/v1/namespaces/default/secrets/regcred")
    );
    let config = json!({"auths": {"127.0.0.1:5999": {"auth": base64::engine::general_purpose::STANDARD.encode("u:topsecret")}}});
    let data = base64::engine::general_purpose::STANDARD.encode(config.to_string());
    seen.respond(200, &json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": "default"}, "data": {".dockerconfigjson": data}}));
    let (events, seen) = f.api.events_then().await;
    let entry = assert_status_patch(&seen, &name);
    seen.respond(200, &to_json(&c));
    task.await.unwrap().unwrap();
    assert_eq!(condition(&entry, "Ready")["status"], "True");
    for e in &events {
        assert!(!e.to_string().contains("topsecret"));
    }
    assert_eq!(f.containers().await.len(), 1);
}

#[tokio::test]
async fn a_missing_pull_secret_is_a_warning_event_and_the_pull_goes_on() {
    let mut f = fixture("k8s-nosecret", &[]).await;
    let name = common::unique("kw-nosecret");
    let mut c = container(&name, 1);
    c.spec.image_pull_secrets = vec![LocalObjectReference {
        name: "missing".into(),
    }];
    let c = add_finalizer(&mut f, &c).await;
    let task = f.reconcile(&c);
    let seen = f.api.next().await;
    assert_eq!(seen.uri, "/api/v1/namespaces/default/secrets/missing");
    seen.respond(404, &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "secrets \"missing\" not found"}));
    let (events, seen) = f.api.events_then().await;
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["reason"], "FailedToRetrieveImagePullSecret");
    let entry = assert_status_patch(&seen, &name);
    seen.respond(200, &to_json(&c));
    task.await.unwrap().unwrap();
    assert_eq!(condition(&entry, "Ready")["status"], "True");
}

#[tokio::test]
async fn an_invalid_spec_goes_to_status_and_nothing_runs() {
    let mut f = fixture("k8s-invalid", &[]).await;
    let name = common::unique("kw-invalid");
    let mut c = container(&name, 1);
    c.spec.files = vec![dockwright::api::FileSpec {
        path: "/etc/app.conf".into(),
        source: Some("app.conf".into()),
        ..Default::default()
    }];
    let c = add_finalizer(&mut f, &c).await;
    let task = f.reconcile(&c);
    let (events, seen) = f.api.events_then().await;
    let entry = assert_status_patch(&seen, &name);
    seen.respond(200, &to_json(&c));
    let more = f.api.only_events().await;
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert_eq!(condition(&entry, "Degraded")["status"], "True");
    assert_eq!(condition(&entry, "Degraded")["reason"], "InvalidSpec");
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("spec.files[0].source"),
        "{entry}"
    );
    assert_eq!(events.len(), 0, "the event follows the status");
    assert_eq!(more.len(), 1);
    assert_eq!(more[0]["reason"], "InvalidSpec");
    assert!(f.containers().await.is_empty());
}

#[tokio::test]
async fn secret_env_values_are_read_from_the_namespace_and_never_shown() {
    use base64::Engine as _;
    use dockwright::api::{EnvVarSource, SecretKeySelector};
    use dockwright::policy::{Gate, Policy};
    use dockwright::secrets::SecretKey;
    let mut f = fixture_with("k8s-secenv", &[], |o| {
        o.gate = Gate::new(Policy::default(), Some(SecretKey::from_bytes([7; 32])))
    })
    .await;
    let name = common::unique("kw-secenv");
    let mut c = container(&name, 1);
    c.spec.env = vec![EnvVar {
        name: "DB_PASSWORD".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "db".into(),
                key: "password".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let c = add_finalizer(&mut f, &c).await;
    let task = f.reconcile(&c);
    let seen = f.api.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("GET", "/api/v1/namespaces/default/secrets/db")
    );
    let value = base64::engine::general_purpose::STANDARD.encode("s3cr3t-value");
    seen.respond(
        200,
        &json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "db", "namespace": "default"}, "data": {"password": value}}),
    );
    let (events, seen) = f.api.events_then().await;
    let entry = assert_status_patch(&seen, &name);
    seen.respond(200, &to_json(&c));
    task.await.unwrap().unwrap();
    assert_eq!(condition(&entry, "Ready")["status"], "True", "{entry}");
    assert!(!entry.to_string().contains("s3cr3t"));
    assert!(events.iter().all(|e| !e.to_string().contains("s3cr3t")));
    let running = f.containers().await;
    assert!(running[&name]
        .1
        .contains(&"DB_PASSWORD=s3cr3t-value".to_string()));
}

#[tokio::test]
async fn without_the_owner_key_secret_values_are_held_with_back_off() {
    use dockwright::api::{EnvVarSource, SecretKeySelector};
    let mut f = fixture("k8s-held", &[]).await;
    let name = common::unique("kw-held");
    let mut c = container(&name, 1);
    c.spec.env = vec![EnvVar {
        name: "TOKEN".into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "tok".into(),
                key: "t".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let c = add_finalizer(&mut f, &c).await;
    let task = f.reconcile(&c);
    let seen = f.api.next().await;
    assert_eq!(seen.uri, "/api/v1/namespaces/default/secrets/tok");
    seen.respond(200, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tok"}, "data": {"t": "eA=="}}));
    let (_, seen) = f.api.events_then().await;
    let entry = assert_status_patch(&seen, &name);
    seen.respond(200, &to_json(&c));
    let events = f.api.only_events().await;
    let result = task.await.unwrap();
    assert!(
        matches!(result, Err(dockwright::kubernetes::Error::Held(_))),
        "{result:?}"
    );
    assert_eq!(condition(&entry, "Degraded")["reason"], "Held");
    assert_eq!(events[0]["reason"], "Held");
    assert!(f.containers().await.is_empty());
}

#[tokio::test]
async fn a_malformed_object_reports_once_and_breaks_nothing() {
    let mut f = fixture("k8s-malformed", &[]).await;
    let name = common::unique("kw-malformed");
    // What the watcher hands over for an object our types cannot read.
    let raw = json!({"apiVersion": "dockwright.dev/v1alpha1", "kind": "Container",
        "metadata": {"name": name, "namespace": "default", "uid": "uid-m", "generation": 1},
        "spec": {"image": TEST_IMAGE, "replicas": "three"}});
    let guard: ContainerObject = serde_json::from_value(raw.clone()).unwrap();
    assert!(guard.0.is_err());
    let reconcile =
        |ctx: Arc<Context>, g: ContainerObject| tokio::spawn(reconcile_container(Arc::new(g), ctx));
    let task = reconcile(Arc::clone(&f.ctx), guard.clone());
    let seen = f.api.next().await;
    let entry = assert_status_patch(&seen, &name);
    seen.respond(200, &raw);
    let events = f.api.only_events().await;
    task.await.unwrap().unwrap();
    assert_eq!(condition(&entry, "Degraded")["reason"], "InvalidSpec");
    assert!(
        entry["lastError"]
            .as_str()
            .unwrap()
            .contains("does not match the Container schema"),
        "{entry}"
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "InvalidSpec");
    // A resync of the same generation sends nothing again.
    let task = reconcile(Arc::clone(&f.ctx), guard);
    f.api.nothing_sent().await;
    task.await.unwrap().unwrap();
    assert!(f.containers().await.is_empty());
}

#[tokio::test]
async fn restart_count_follows_the_daemons_restarts_and_costs_nothing_when_nothing_happened() {
    let mut f = fixture("k8s-restarts", &[]).await;
    let mut events = f.follow_events().await;
    let name = common::unique("kw-restarts");
    let mut c = container(&name, 1);
    // The first run exits after 3 s; the daemon's restart policy (`unless-stopped`) starts it
    // again, and that run stays up.
    c.spec.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "if [ -f /tmp/ran ]; then exec sleep 600; fi; touch /tmp/ran; sleep 3; exit 3".into(),
    ]);
    let c = add_finalizer(&mut f, &c).await;
    let (_, entry, c) = converge(&mut f, &c).await;
    assert_eq!(entry["replicas"][0]["state"], "running", "{entry}");
    assert_eq!(entry["replicas"][0]["restartCount"], 0, "{entry}");
    let id = entry["replicas"][0]["containerId"]
        .as_str()
        .unwrap()
        .to_string();

    // Two starts of the same container: ours, then the daemon's restart.
    let mut starts = 0;
    while starts < 2 {
        let event = tokio::time::timeout(STEP, events.recv())
            .await
            .expect("the daemon restarted the container in time")
            .unwrap();
        if matches!(&event, DaemonEvent::Container { id: i, action, .. } if *i == id && action == "start")
        {
            starts += 1;
        }
    }
    let daemon = inspect(&f, &name).await;
    assert_eq!(daemon.restart_count, Some(1));
    assert_eq!(daemon.id.as_deref(), Some(id.as_str()));

    // Nothing to do on the daemon, but the entry changed: one inspect, one status patch.
    let inspects = f.requests("container_inspect");
    let task = f.reconcile(&c);
    let seen = f.api.next().await;
    let entry = assert_status_patch(&seen, &name);
    let mut updated = c.clone();
    updated.status = Some(serde_json::from_value(seen.body["status"].clone()).unwrap());
    seen.respond(200, &to_json(&updated));
    task.await.unwrap().unwrap();
    assert_eq!(entry["replicas"][0]["restartCount"], 1, "{entry}");
    assert_eq!(entry["replicas"][0]["containerId"], id.as_str());
    assert_eq!(entry["replicas"][0]["state"], "running");
    assert_eq!(condition(&entry, "Ready")["status"], "True");
    assert_eq!(f.requests("container_inspect") - inspects, 1);

    // Nothing happened since: no request to the API server, no inspect.
    let inspects = f.requests("container_inspect");
    let task = f.reconcile(&updated);
    f.api.nothing_sent().await;
    task.await.unwrap().unwrap();
    assert_eq!(f.requests("container_inspect"), inspects);
}

#[tokio::test]
async fn an_image_gets_this_nodes_status_entry_with_its_id() {
    let mut f = fixture("k8s-image", &[]).await;
    let name = common::unique("kw-image");
    let i = image(&name, TEST_IMAGE, 3);
    let task = f.reconcile_image(&i);
    // Present already (IfNotPresent): no action, no event, just the entry.
    let seen = f.api.next().await;
    let entry = assert_status_patch_of(&seen, &image_path(&name), "Image");
    let mut updated = i.clone();
    updated.status = Some(serde_json::from_value(seen.body["status"].clone()).unwrap());
    seen.respond(200, &serde_json::to_value(&updated).unwrap());
    task.await.unwrap().unwrap();

    let local = f.docker.inspect_image(TEST_IMAGE).await.unwrap();
    // Built locally: it carries digests of test registries at most, none in its own repository.
    let own_digest = local.repo_digests.unwrap_or_default().iter().find_map(|d| {
        d.strip_prefix("dockwright-test/busybox@")
            .map(str::to_string)
    });
    let mut keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    let mut expected = vec!["conditions", "imageId", "node", "observedGeneration"];
    if own_digest.is_some() {
        expected.push("digest");
        expected.sort();
    }
    assert_eq!(keys, expected, "{entry}");
    assert_eq!(entry["node"], NODE);
    assert_eq!(entry["observedGeneration"], 3);
    assert_eq!(entry["imageId"], local.id.unwrap().as_str());
    assert_eq!(
        entry.get("digest").and_then(Value::as_str),
        own_digest.as_deref()
    );
    let ready = condition(&entry, "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(ready["reason"], "Present");
    assert_eq!(ready["observedGeneration"], 3);
    assert!(ready["lastTransitionTime"].as_str().is_some());
    assert_eq!(condition(&entry, "Progressing")["status"], "False");
    assert_eq!(condition(&entry, "Degraded")["status"], "False");

    // Unchanged: nothing is sent again.
    let task = f.reconcile_image(&updated);
    f.api.nothing_sent().await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failed_pull_is_a_warning_and_a_degraded_image_entry_with_the_error() {
    let mut f = fixture("k8s-image-fail", &[]).await;
    let name = common::unique("kw-image-fail");
    let reference = "127.0.0.1:1/dwtest/nowhere:1";
    let i = image(&name, reference, 1);
    let task = f.reconcile_image(&i);
    let (events, seen) = f.api.events_then().await;
    let entry = assert_status_patch_of(&seen, &image_path(&name), "Image");
    seen.respond(200, &serde_json::to_value(&i).unwrap());
    let result = task.await.unwrap();
    assert!(
        matches!(result, Err(dockwright::kubernetes::Error::Actions(_))),
        "backs off: {result:?}"
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["reason"], "Pull");
    assert_eq!(events[0]["regarding"]["kind"], "Image");
    assert_eq!(condition(&entry, "Ready")["status"], "False");
    assert_eq!(condition(&entry, "Ready")["reason"], "NotPresent");
    assert_eq!(condition(&entry, "Degraded")["status"], "True");
    assert_eq!(condition(&entry, "Degraded")["reason"], "ActionFailed");
    let error = entry["lastError"].as_str().unwrap();
    assert!(error.starts_with(&format!("pull {reference}")), "{error}");
    assert_eq!(condition(&entry, "Degraded")["message"], error);
    assert!(entry.get("imageId").is_none(), "{entry}");
}

#[tokio::test]
async fn a_rollout_that_never_becomes_healthy_is_rolled_back_and_held_back() {
    let mut f = fixture_with("k8s-rollback", &[], |o| {
        o.backoff = dockwright::agent::BackoffPolicy {
            initial: Duration::from_secs(6),
            max: Duration::from_secs(6),
        }
    })
    .await;
    let name = common::unique("kw-rollback");
    let mut c = container(&name, 1);
    c.spec.healthcheck = Some(HealthCheck {
        shell: Some("true".into()),
        interval_seconds: Some(1),
        ..Default::default()
    });
    let c = add_finalizer(&mut f, &c).await;
    let (_, _, mut c) = converge(&mut f, &c).await;
    let old = inspect(&f, &name).await;
    let old_id = old.id.clone().unwrap();
    let old_revision = dockwright::plan::short_revision(
        &old.config.unwrap().labels.unwrap()[dockwright::labels::SPEC_HASH],
    )
    .to_string();

    c.spec.healthcheck = Some(HealthCheck {
        shell: Some("exit 1".into()),
        interval_seconds: Some(1),
        retries: Some(1),
        ..Default::default()
    });
    c.spec.strategy = Some(RolloutStrategy {
        health_timeout_seconds: Some(3),
        ..Default::default()
    });
    c.metadata.generation = Some(2);
    // The new revision is tried, found unfit and rolled back within the one reconcile, which
    // does not fail (the object does not back off: its revision does).
    let (events, entry, c) = converge(&mut f, &c).await;
    let reasons: Vec<&str> = events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"Create"), "{reasons:?}");
    assert!(
        events.iter().any(|e| e["type"] == "Warning"),
        "the failed await is reported: {events:?}"
    );
    assert_eq!(entry["observedGeneration"], 2);
    let degraded = condition(&entry, "Degraded");
    assert_eq!(degraded["status"], "True", "{entry}");
    assert_eq!(degraded["reason"], "RolloutFailed");
    let error = entry["lastError"].as_str().unwrap();
    assert!(
        error.contains("never became healthy; rolled back"),
        "{error}"
    );
    assert!(error.contains("within 3s"), "{error}");
    // The previous revision runs on, under its name.
    assert_eq!(entry["replicas"].as_array().unwrap().len(), 1, "{entry}");
    assert_eq!(entry["replicas"][0]["revision"], old_revision.as_str());
    assert_eq!(entry["replicas"][0]["containerId"], old_id.as_str());
    assert_eq!(f.containers().await.len(), 1);
    let running = inspect(&f, &name).await;
    assert_eq!(running.id.as_deref(), Some(old_id.as_str()));
    assert_eq!(running.state.unwrap().running, Some(true));

    // While the revision waits, a reconcile does not try it again: nothing is sent.
    let task = f.reconcile(&c);
    f.api.nothing_sent().await;
    task.await.unwrap().unwrap();
    assert_eq!(
        inspect(&f, &name).await.id.as_deref(),
        Some(old_id.as_str())
    );

    // Once the wait is over, the rollout is tried again (and rolled back again).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let task = f.reconcile(&c);
    let (events, result) = f.api.events_until(task).await;
    result.unwrap();
    let creates = events.iter().filter(|e| e["reason"] == "Create").count();
    assert_eq!(creates, 1, "{events:?}");
    assert_eq!(
        inspect(&f, &name).await.id.as_deref(),
        Some(old_id.as_str())
    );
    assert_eq!(f.containers().await.len(), 1);
}

/// `docker` CLI, asserting success; stdout trimmed.
fn docker_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("run the docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The digest `reference`'s local image carries in `repository` (`sha256:...`).
fn local_digest(reference: &str, repository: &str) -> Option<String> {
    let digests = docker_cli(&["image", "inspect", "-f", "{{json .RepoDigests}}", reference]);
    let digests: Vec<String> = serde_json::from_str(&digests).unwrap();
    digests.iter().find_map(|d| {
        d.strip_prefix(&format!("{repository}@"))
            .map(str::to_string)
    })
}

#[tokio::test]
async fn an_image_with_update_interval_follows_its_moving_tag_and_shows_the_digest() {
    if std::env::var_os("DOCKWRIGHT_TEST_REGISTRY").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but DOCKWRIGHT_TEST_REGISTRY is not: run scripts/start-registries.sh"
        );
        eprintln!("SKIPPED: no test registry (run scripts/start-registries.sh and source $DOCKWRIGHT_TEST_STATE/env)");
        return;
    }
    let reg = common::registry();
    common::require_registry(&reg);
    let mut f = fixture("k8s-moving", &[]).await;
    let repository = format!("{reg}/dwtest/{}", common::unique("k8s-moving"));
    let reference = format!("{repository}:stable");
    let v2_tag = format!("dwtest/{}:v2", common::unique("k8s-moving"));
    struct Remove(Vec<String>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for r in &self.0 {
                let _ = std::process::Command::new("docker")
                    .args(["rmi", "-f", r])
                    .output();
            }
        }
    }
    let _cleanup = Remove(vec![reference.clone(), v2_tag.clone()]);
    docker_cli(&["tag", TEST_IMAGE, &reference]);
    docker_cli(&["push", &reference]);
    let v1 = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &reference]);
    let d1 = local_digest(&reference, &repository).expect("pushed: a digest in the repository");

    let name = common::unique("kw-moving");
    let mut i = image(&name, &reference, 1);
    i.spec.update_interval = Some("1s".into());
    let task = f.reconcile_image(&i);
    let seen = f.api.next().await;
    let entry = assert_status_patch_of(&seen, &image_path(&name), "Image");
    let mut i = i.clone();
    i.status = Some(serde_json::from_value(seen.body["status"].clone()).unwrap());
    seen.respond(200, &serde_json::to_value(&i).unwrap());
    task.await.unwrap().unwrap();
    assert_eq!(entry["imageId"], v1.as_str(), "{entry}");
    assert_eq!(entry["digest"], d1.as_str(), "{entry}");
    assert_eq!(condition(&entry, "Ready")["status"], "True");

    // The tag moves in the registry (v2: other content); locally it still names v1.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        common::own_layers(
            &format!("FROM {TEST_IMAGE}\nRUN echo two > /version\n"),
            &v2_tag,
        ),
    )
    .unwrap();
    docker_cli(&["build", "-q", "-t", &v2_tag, dir.path().to_str().unwrap()]);
    let v2 = docker_cli(&["image", "inspect", "-f", "{{.Id}}", &v2_tag]);
    docker_cli(&["tag", &v2_tag, &reference]);
    docker_cli(&["push", &reference]);
    docker_cli(&["tag", TEST_IMAGE, &reference]);
    let d2 = local_digest(&v2_tag, &repository).expect("pushed v2");
    assert_ne!(d1, d2);

    // Once its interval is over, the next reconcile checks the registry and pulls.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let task = f.reconcile_image(&i);
    let (events, seen) = f.api.events_then().await;
    let entry = assert_status_patch_of(&seen, &image_path(&name), "Image");
    seen.respond(200, &serde_json::to_value(&i).unwrap());
    task.await.unwrap().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["reason"], "Pull");
    assert_eq!(events[0]["type"], "Normal");
    assert_eq!(entry["imageId"], v2.as_str(), "{entry}");
    assert_eq!(entry["digest"], d2.as_str(), "{entry}");
    assert_eq!(condition(&entry, "Ready")["status"], "True");
}

/// `run` wires the real `Controller`s: the node is read, both kinds are listed, and each
/// listed object reaches its reconcile (the `Container`'s finalizer patch, the `Image`'s
/// status entry). Readiness waits for both reconciles: not ready while the finalizer patch
/// is unanswered, ready once it is. Watches are left hanging, as an idle API server would.
#[tokio::test]
async fn run_becomes_ready_only_after_every_listed_object_was_reconciled() {
    ensure_test_image().await;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let owner = TestOwner::new("k8s-run");
    let name = common::unique("kw-run");
    let obj = to_json(&container(&name, 1));
    let image_name = common::unique("kw-run-image");
    let image_obj = serde_json::to_value(image(&image_name, TEST_IMAGE, 1)).unwrap();
    // PATCHes go to the test, with their reply; everything else is answered here.
    let (patch_tx, mut patches) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let (list_obj, list_image) = (obj.clone(), image_obj.clone());
    let server = tokio::spawn(async move {
        let mut hanging = Vec::new();
        while let Some((request, reply)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().clone();
            let (path, query) = (
                uri.path().to_string(),
                uri.query().unwrap_or_default().to_string(),
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let list = |kind: &str, items: Vec<Value>| json!({"apiVersion": "dockwright.dev/v1alpha1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items});
            let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {}}});
            let answer = if query.contains("watch=true") {
                hanging.push(reply);
                continue;
            } else if method == "PATCH" {
                let seen = Seen {
                    method,
                    uri: format!("{path}?{query}"),
                    body,
                    reply,
                };
                patch_tx.send(seen).unwrap();
                continue;
            } else if path == "/api/v1/nodes/n1" {
                node
            } else if path == "/api/v1/nodes" {
                json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1"}, "items": [node]})
            } else if path == "/apis/dockwright.dev/v1alpha1/containers" {
                list("ContainerList", vec![list_obj.clone()])
            } else if path == "/apis/dockwright.dev/v1alpha1/images" {
                list("ImageList", vec![list_image.clone()])
            } else {
                body
            };
            let bytes = serde_json::to_vec(&answer).unwrap();
            reply.send_response(
                Response::builder()
                    .status(200)
                    .body(Body::from(bytes))
                    .unwrap(),
            );
        }
    });
    let docker = Docker::connect().await.unwrap();
    let options = ControllerOptions::new(NODE, owner.name());
    let (ready_tx, mut ready_rx) = tokio::sync::oneshot::channel::<()>();
    let ready_tx = std::sync::Mutex::new(Some(ready_tx));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = futures::FutureExt::shared(async move {
        let _ = stop_rx.await;
    });
    let ready = move || {
        if let Some(tx) = ready_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
    };
    let agent = tokio::spawn(dockwright::kubernetes::run(
        client, docker, options, None, ready, shutdown,
    ));

    // Both reconciles reach the API server; which comes first is the controllers' business.
    let mut finalizer_patch = None;
    let mut image_status = None;
    while finalizer_patch.is_none() || image_status.is_none() {
        let seen = tokio::time::timeout(STEP, patches.recv())
            .await
            .expect("both listed objects were reconciled in time")
            .unwrap();
        if seen
            .uri
            .starts_with(&format!("{}/status?", image_path(&image_name)))
        {
            image_status = Some(seen);
        } else {
            assert!(seen.uri.starts_with(&path(&name)), "{}", seen.uri);
            finalizer_patch = Some(seen);
        }
    }
    let image_status = image_status.unwrap();
    let entry = assert_status_patch_of(&image_status, &image_path(&image_name), "Image");
    assert_eq!(condition(&entry, "Ready")["status"], "True");
    let mut with_status = image_obj.clone();
    with_status["status"] = image_status.body["status"].clone();
    image_status.respond(200, &with_status);
    // The Container's reconcile has not finished: not ready.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        ready_rx.try_recv().is_err(),
        "ready before every listed object was reconciled"
    );
    let finalizer_patch = finalizer_patch.unwrap();
    assert_eq!(
        finalizer_patch.body[1],
        json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    );
    let mut finalized = obj.clone();
    finalized["metadata"]["finalizers"] = json!([FINALIZER]);
    finalizer_patch.respond(200, &finalized);
    tokio::time::timeout(STEP, ready_rx)
        .await
        .expect("ready once both were reconciled")
        .unwrap();

    // Docker events (the stream's `Connected`) reconcile everything again, and this API
    // server never sends the objects' updates: answer whatever comes until the end, so the
    // graceful shutdown finds no reconcile stuck on an unanswered request.
    tokio::spawn(async move {
        while let Some(seen) = patches.recv().await {
            let answer = if seen.uri.starts_with(&image_path(&image_name)) {
                with_status.clone()
            } else {
                finalized.clone()
            };
            seen.respond(200, &answer);
        }
    });
    let _ = stop_tx.send(());
    tokio::time::timeout(STEP, agent)
        .await
        .expect("run stops on shutdown")
        .unwrap()
        .unwrap();
    server.abort();
}

/// The whole controller against a real cluster (`KUBECONFIG`), reconciling this machine's
/// Docker daemon as node `DOCKWRIGHT_E2E_NODE` (default: the cluster's first node). Applies
/// the CRDs, creates a Container, waits for Ready, deletes it, waits for the containers to go.
#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG=... cargo test --test kubernetes -- --ignored"]
async fn end_to_end_against_kubeconfig() {
    use k8s_openapi::api::core::v1::Node;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use kube::runtime::wait::{await_condition, conditions};

    ensure_test_image().await;
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG names a reachable cluster");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in dockwright::api::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("dockwright-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap()
        .unwrap();
    }
    let node = match std::env::var("DOCKWRIGHT_E2E_NODE") {
        Ok(n) => n,
        Err(_) => Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .unwrap()
            .items[0]
            .metadata
            .name
            .clone()
            .unwrap(),
    };
    let owner = TestOwner::new("k8s-e2e");
    let docker = Docker::connect().await.unwrap();
    let options = ControllerOptions::new(node.clone(), owner.name());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|s| *s).await;
    };
    let shutdown = futures::FutureExt::shared(shutdown);
    let agent = tokio::spawn(dockwright::kubernetes::run(
        client.clone(),
        docker,
        options,
        None,
        || {},
        shutdown,
    ));

    let name = common::unique("kw-e2e");
    let api: Api<Container> = Api::namespaced(client.clone(), "default");
    let mut c = container(&name, 1);
    c.metadata.uid = None;
    c.metadata.generation = None;
    c.metadata.resource_version = None;
    let created = api.create(&PostParams::default(), &c).await.unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let ready = |obj: Option<&Container>| {
        obj.and_then(|c| c.status.as_ref())
            .and_then(|s| s.nodes.iter().find(|n| n.node == node))
            .is_some_and(|n| {
                n.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        await_condition(api.clone(), &name, ready),
    )
    .await
    .expect("Ready in time")
    .unwrap();
    let f = Fixture::probe(&owner).await;
    assert_eq!(f.len(), 1);

    api.delete(&name, &DeleteParams::default()).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(120),
        await_condition(api.clone(), &name, conditions::is_deleted(&uid)),
    )
    .await
    .expect("deleted in time")
    .unwrap();
    assert!(
        Fixture::probe(&owner).await.is_empty(),
        "containers removed before the object went"
    );
    let _ = stop_tx.send(true);
    let _ = agent.await;
}

impl Fixture {
    /// Names of `owner`'s containers on the daemon.
    async fn probe(owner: &TestOwner) -> Vec<String> {
        let docker = common::docker().await;
        let filters =
            std::collections::HashMap::from([("label".to_string(), vec![owner.label_filter()])]);
        docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .collect()
    }
}
