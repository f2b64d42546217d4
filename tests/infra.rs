//! Tests of the shared test infrastructure itself (tests/common): the counting proxy counts and
//! forwards faithfully (keep-alive, streamed bodies, upgrades, injected faults), the test image
//! runs, test owners clean up only what is theirs, and the examples parse.

mod common;

use std::collections::HashMap;
use std::path::Path;

use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerCreateBody, ExecConfig, NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder,
};
use bollard::Docker;
use common::{CountingProxy, Fault, TestOwner, TEST_IMAGE};
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Create (not start) a container of the test image labelled with the owner.
async fn create(docker: &Docker, owner: &TestOwner, cmd: &[&str]) -> String {
    let opts = CreateContainerOptionsBuilder::default()
        .name(&common::unique(owner.name()))
        .build();
    let body = ContainerCreateBody {
        image: Some(TEST_IMAGE.to_string()),
        cmd: Some(strings(cmd)),
        labels: Some(owner.labels()),
        ..Default::default()
    };
    docker.create_container(Some(opts), body).await.unwrap().id
}

/// Follow a container's output until it exits.
async fn follow_logs(docker: &Docker, id: &str) -> String {
    let opts = LogsOptionsBuilder::default()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut out = String::new();
    let mut stream = docker.logs(id, Some(opts));
    while let Some(chunk) = stream.next().await {
        out.push_str(&chunk.unwrap().to_string());
    }
    out
}

#[tokio::test]
async fn proxy_counts_requests_and_writes() {
    common::ensure_test_image().await;
    let owner = TestOwner::new("infra-count");
    let proxy = CountingProxy::start();
    let docker = proxy.client().await;

    docker.ping().await.unwrap();
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await
        .unwrap();
    assert_eq!(
        proxy.requests(),
        vec![
            ("GET".to_string(), "/_ping".to_string()),
            ("GET".to_string(), "/containers/json".to_string()),
        ]
    );
    assert!(proxy.writes().is_empty(), "{:?}", proxy.writes());

    let id = create(&docker, &owner, &["true"]).await;
    assert_eq!(
        proxy.writes(),
        vec![("POST".to_string(), "/containers/create".to_string())]
    );
    assert_eq!(proxy.count("POST", "/containers/create"), 1);
    assert_eq!(proxy.requests().len(), 3);

    // The write really reached the daemon, under the owner label.
    let direct = common::docker().await;
    let inspect = direct
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let labels = inspect.config.unwrap().labels.unwrap();
    assert_eq!(
        labels.get(dockwright::labels::OWNER).map(String::as_str),
        Some(owner.name())
    );

    proxy.reset();
    assert!(proxy.requests().is_empty());
}

#[tokio::test]
async fn proxy_keeps_connections_alive_and_strips_versions() {
    let proxy = CountingProxy::start();
    let stream = tokio::net::UnixStream::connect(proxy.socket_path())
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Two requests on one connection: the proxy must serve the second after the first.
    for uri in ["/v1.41/_ping", "/_ping"] {
        let req = hyper::Request::get(uri)
            .header("host", "docker")
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{uri}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"OK", "{uri}");
    }
    assert_eq!(proxy.count("GET", "/_ping"), 2, "{:?}", proxy.requests());
}

#[tokio::test]
async fn test_image_runs_a_shell() {
    common::ensure_test_image().await;
    let owner = TestOwner::new("infra-image");
    let docker = common::docker().await;
    let id = create(&docker, &owner, &["sh", "-c", "echo ok"]).await;
    docker.start_container(&id, None).await.unwrap();
    assert_eq!(follow_logs(&docker, &id).await, "ok\n");
    let state = docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.exit_code, Some(0));
}

#[tokio::test]
async fn proxy_streams_followed_logs() {
    common::ensure_test_image().await;
    let owner = TestOwner::new("infra-logs");
    let proxy = CountingProxy::start();
    let docker = proxy.client().await;
    let id = create(
        &docker,
        &owner,
        &["sh", "-c", "echo one; sleep 1; echo two"],
    )
    .await;
    docker.start_container(&id, None).await.unwrap();
    // The body arrives in pieces over a second; the proxy must pass it on as it comes.
    assert_eq!(follow_logs(&docker, &id).await, "one\ntwo\n");
    assert_eq!(proxy.count("GET", &format!("/containers/{id}/logs")), 1);
}

#[tokio::test]
async fn proxy_passes_connection_upgrades() {
    common::ensure_test_image().await;
    let owner = TestOwner::new("infra-exec");
    let proxy = CountingProxy::start();
    let docker = proxy.client().await;
    let id = create(&docker, &owner, &["sleep", "60"]).await;
    docker.start_container(&id, None).await.unwrap();

    let exec = docker
        .create_exec(
            &id,
            ExecConfig {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(strings(&["sh", "-c", "echo via-upgrade"])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    else {
        panic!("exec started detached");
    };
    let mut out = String::new();
    while let Some(chunk) = output.next().await {
        if let LogOutput::StdOut { message } = chunk.unwrap() {
            out.push_str(&String::from_utf8_lossy(&message));
        }
    }
    assert_eq!(out, "via-upgrade\n");
    assert_eq!(proxy.count("POST", &format!("/exec/{}/start", exec.id)), 1);
}

#[tokio::test]
async fn fault_policy_answers_instead_of_the_daemon() {
    let proxy = CountingProxy::start();
    let docker = proxy.client().await;
    proxy.set_fault_policy(|req| {
        if req.path == "/_ping" {
            Fault::Respond(503)
        } else {
            Fault::Forward
        }
    });
    match docker.ping().await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        }) => {
            assert_eq!(status_code, 503);
            assert!(message.contains("injected fault"), "{message}");
        }
        other => panic!("expected the injected 503, got {other:?}"),
    }
    docker.version().await.unwrap();
    proxy.clear_fault_policy();
    docker.ping().await.unwrap();
    assert_eq!(proxy.count("GET", "/_ping"), 2);
}

#[tokio::test]
async fn test_owner_removes_only_its_own_objects() {
    common::ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("infra-owner");
    let bystander = TestOwner::new("infra-bystander");

    let mine = create(&docker, &owner, &["sleep", "60"]).await;
    docker.start_container(&mine, None).await.unwrap();
    let theirs = create(&docker, &bystander, &["true"]).await;
    let volume = docker
        .create_volume(VolumeCreateRequest {
            name: Some(common::unique(owner.name())),
            labels: Some(owner.labels()),
            ..Default::default()
        })
        .await
        .unwrap()
        .name;
    let network = docker
        .create_network(NetworkCreateRequest {
            name: common::unique(owner.name()),
            labels: Some(owner.labels()),
            ..Default::default()
        })
        .await
        .unwrap()
        .id;

    let problems = owner.cleanup();
    assert!(problems.is_empty(), "{problems:?}");

    let filters = HashMap::from([("label", vec![owner.label_filter()])]);
    let left = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        docker.inspect_volume(&volume).await.is_err(),
        "volume {volume} left"
    );
    assert!(
        docker.inspect_network(&network, None).await.is_err(),
        "network {network} left"
    );
    // The other owner's container is untouched until its own guard drops.
    assert!(docker
        .inspect_container(&theirs, None::<InspectContainerOptions>)
        .await
        .is_ok());
    drop(bystander);
    assert!(docker
        .inspect_container(&theirs, None::<InspectContainerOptions>)
        .await
        .is_err());
}

#[test]
fn unique_names_differ() {
    let names: std::collections::HashSet<String> = (0..1000).map(|_| common::unique("x")).collect();
    assert_eq!(names.len(), 1000);
    assert!(names.iter().all(|n| n.starts_with("x-") && n.len() == 10));
}

/// Every document under examples/ is a valid `Image` or `Container` of our API version, with
/// no unknown field; the hello containers use the locally built test image (nothing can be
/// pulled on a fresh machine).
#[test]
fn examples_parse_as_resources() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let hello = examples.join("hello");
    // The files `apply -f examples/...` reads: the product's own walk, which leaves Compose
    // files (examples/compose-app's docker-compose.yml) out.
    let files = dockwright::source::files::expand_paths(std::slice::from_ref(&examples))
        .unwrap_or_else(|e| panic!("examples/: {e}"));
    assert!(!files.is_empty(), "no manifests under examples/");
    let mut containers = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs {
            let where_ = format!("{}: {}", file.display(), doc["metadata"]["name"]);
            assert_eq!(doc["apiVersion"], dockwright::api::API_VERSION, "{where_}");
            match doc["kind"].as_str() {
                Some("Container") => {
                    let c: dockwright::api::Container = serde_json::from_value(doc.clone())
                        .unwrap_or_else(|e| panic!("{where_}: {e}"));
                    if file.starts_with(&hello) {
                        assert_eq!(c.spec.image, TEST_IMAGE, "{where_}");
                        containers += 1;
                    }
                }
                Some("Image") => {
                    serde_json::from_value::<dockwright::api::Image>(doc.clone())
                        .unwrap_or_else(|e| panic!("{where_}: {e}"));
                }
                Some("Network") => {
                    serde_json::from_value::<dockwright::api::Network>(doc.clone())
                        .unwrap_or_else(|e| panic!("{where_}: {e}"));
                }
                Some("Volume") => {
                    serde_json::from_value::<dockwright::api::Volume>(doc.clone())
                        .unwrap_or_else(|e| panic!("{where_}: {e}"));
                }
                other => panic!("{where_}: unexpected kind {other:?}"),
            }
        }
    }
    assert!(containers >= 2, "expected the hello examples' containers");
}
