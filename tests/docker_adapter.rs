//! The Docker adapter against the real daemon: observation, the create mapping, the runner's
//! idempotence and conflict rules, waits, pulls (from an in-test registry) and logs.
//!
//! Every test uses its own owner and name prefix and cleans up through a guard, so tests run
//! in parallel and leave nothing behind even when they fail.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, MountType, RestartPolicyNameEnum, VolumeCreateRequest};
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
};
use dockwright::api::DependencyCondition;
use dockwright::desired::{
    ContainerConfig, ContainerFile, Health, Kind, Mount, PortBinding, ResourceKey,
};
use dockwright::docker::{Docker, DockerRunner, LogOptions, LogSink, PullProgress};
use dockwright::execute::{ActionError, ActionRunner, ErrorKind};
use dockwright::labels;
use dockwright::observed::{HealthState, RunState};
use dockwright::plan::{Action, CreateSpec, PlannedAction, Reason};
use futures::StreamExt;

mod common;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// The shared test image (`tests/common`), and its ID.
async fn ensure_test_image() -> String {
    common::ensure_test_image().await;
    raw()
        .inspect_image(common::TEST_IMAGE)
        .await
        .expect("test image")
        .id
        .expect("image id")
}

/// The canonical reference of [`common::TEST_IMAGE`].
const TEST_IMAGE_REF: &str = "docker.io/dockwright-test/busybox:latest";

/// A raw bollard client for setting up and checking what the adapter did.
fn raw() -> bollard::Docker {
    bollard::Docker::connect_with_defaults().expect("docker client")
}

async fn docker() -> Docker {
    Docker::connect().await.expect("connect to the daemon")
}

/// Removes, when dropped, everything a test created: containers of its owner and those named
/// explicitly, and the listed networks, volumes and images.
struct Guard {
    owner: String,
    prefix: String,
    containers: Mutex<Vec<String>>,
    networks: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
}

impl Guard {
    fn new() -> Self {
        Self {
            owner: common::unique("dwtest-adapter"),
            prefix: common::unique("dwt"),
            containers: Mutex::default(),
            networks: Mutex::default(),
            volumes: Mutex::default(),
            images: Mutex::default(),
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    fn container(&self, name: &str) {
        self.containers.lock().unwrap().push(name.to_string());
    }

    fn network(&self, name: &str) -> String {
        self.networks.lock().unwrap().push(name.to_string());
        name.to_string()
    }

    fn volume(&self, name: &str) -> String {
        self.volumes.lock().unwrap().push(name.to_string());
        name.to_string()
    }

    fn image(&self, reference: &str) {
        self.images.lock().unwrap().push(reference.to_string());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let owner = self.owner.clone();
        let named = std::mem::take(&mut *self.containers.lock().unwrap());
        let networks = std::mem::take(&mut *self.networks.lock().unwrap());
        let volumes = std::mem::take(&mut *self.volumes.lock().unwrap());
        let images = std::mem::take(&mut *self.images.lock().unwrap());
        // Drop may run inside a runtime: clean up on a thread with its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let client = raw();
                let filters =
                    HashMap::from([("label", vec![format!("{}={owner}", labels::OWNER)])]);
                let list = client
                    .list_containers(Some(
                        ListContainersOptionsBuilder::new()
                            .all(true)
                            .filters(&filters)
                            .build(),
                    ))
                    .await
                    .unwrap_or_default();
                let ids = list.into_iter().filter_map(|c| c.id).chain(named);
                let remove = RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .v(true)
                    .build();
                for id in ids {
                    let _ = client.remove_container(&id, Some(remove.clone())).await;
                }
                for network in networks {
                    // Duplicates of one name are removed one by one, by ID.
                    let filters = HashMap::from([("name", vec![network.clone()])]);
                    let list = client
                        .list_networks(Some(
                            ListNetworksOptionsBuilder::new().filters(&filters).build(),
                        ))
                        .await
                        .unwrap_or_default();
                    for n in list
                        .into_iter()
                        .filter(|n| n.name.as_deref() == Some(network.as_str()))
                    {
                        let _ = client.remove_network(&n.id.unwrap_or_default()).await;
                    }
                }
                for volume in volumes {
                    let _ = client
                        .remove_volume(
                            &volume,
                            None::<bollard::query_parameters::RemoveVolumeOptions>,
                        )
                        .await;
                }
                for image in images {
                    let options = RemoveImageOptionsBuilder::new().force(true).build();
                    let _ = client.remove_image(&image, Some(options), None).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn planned(resource: &str, action: Action) -> PlannedAction {
    PlannedAction {
        id: 0,
        resource: ResourceKey::new(Kind::Container, "default", resource),
        action,
        reason: Reason::Missing,
        after: vec![],
    }
}

/// A create spec for `name` as the planner would make it: user labels plus ownership labels.
fn spec(guard: &Guard, name: &str, image_id: &str, config: ContainerConfig) -> CreateSpec {
    let mut all_labels: BTreeMap<String, String> = config.labels.clone();
    all_labels.insert(labels::OWNER.into(), guard.owner.clone());
    all_labels.insert(labels::RESOURCE.into(), format!("Container/default/{name}"));
    all_labels.insert(labels::REPLICA.into(), "0".into());
    all_labels.insert(labels::SPEC_HASH.into(), format!("hash-{name}"));
    all_labels.insert(
        labels::SPEC.into(),
        format!("{{\"image\":\"{}\"}}", config.image),
    );
    guard.container(name);
    CreateSpec {
        name: name.to_string(),
        replica: 0,
        config: Arc::new(config),
        image_id: Some(image_id.to_string()),
        labels: all_labels,
        start: true,
    }
}

fn config(cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        image: TEST_IMAGE_REF.into(),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        network: "bridge".into(),
        restart_policy: "no".into(),
        ..Default::default()
    }
}

fn healthcheck() -> Health {
    Health {
        test: vec!["CMD".into(), "true".into()],
        interval_ns: Some(300_000_000),
        timeout_ns: Some(2_000_000_000),
        retries: Some(3),
        start_period_ns: None,
    }
}

async fn run(runner: &DockerRunner, resource: &str, action: Action) -> Result<(), ActionError> {
    runner.run(&planned(resource, action)).await
}

async fn create_and_start(runner: &DockerRunner, spec: CreateSpec) {
    let name = spec.name.clone();
    run(runner, &name, Action::CreateContainer(Box::new(spec)))
        .await
        .expect("create");
    run(runner, &name, Action::StartContainer { name: name.clone() })
        .await
        .expect("start");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn runner(docker: &Docker, guard: &Guard) -> DockerRunner {
    DockerRunner::new(docker.clone(), guard.owner.clone())
        .with_await_timeout(Duration::from_secs(60))
}

/// The bytes and mode of one file inside a container (works on stopped containers).
async fn read_file(client: &bollard::Docker, container: &str, path: &str) -> (Vec<u8>, u32) {
    let options = DownloadFromContainerOptionsBuilder::new()
        .path(path)
        .build();
    let mut stream = client.download_from_container(container, Some(options));
    let mut archive = Vec::new();
    while let Some(chunk) = stream.next().await {
        archive.extend_from_slice(&chunk.expect("download archive"));
    }
    let mut archive = tar::Archive::new(archive.as_slice());
    let mut entry = archive
        .entries()
        .unwrap()
        .next()
        .expect("one entry")
        .unwrap();
    let mode = entry.header().mode().unwrap();
    let mut content = Vec::new();
    entry.read_to_end(&mut content).unwrap();
    (content, mode)
}

// ---------------------------------------------------------------------------------------------
// Connection and observation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn connect_negotiates_and_names_the_host_on_failure() {
    let docker = docker().await;
    let version = docker.api_version();
    let (major, minor) = version.split_once('.').expect("major.minor");
    assert!(
        (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap()) >= (1, 41),
        "{version}"
    );
    assert_eq!(
        docker.request_counts().get("version"),
        Some(&1),
        "negotiation is one version call"
    );

    let missing = Docker::connect_to("unix:///nonexistent/dockwright.sock")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("unix:///nonexistent/dockwright.sock") && missing.contains("DOCKER_HOST"),
        "{missing}"
    );
    let refused = Docker::connect_to(&format!("tcp://127.0.0.1:{}", free_port()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("tcp://127.0.0.1:") && refused.contains("daemon is running"),
        "{refused}"
    );
    let scheme = Docker::connect_to("ftp://example")
        .await
        .unwrap_err()
        .to_string();
    assert!(scheme.contains("ftp://example"), "{scheme}");
}

#[tokio::test]
async fn observe_reads_labels_state_health_exit_code_and_ports_in_four_calls() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let port = free_port();

    let failed = guard.name("failed");
    create_and_start(
        &runner,
        spec(&guard, &failed, &image, config(&["sh", "-c", "exit 3"])),
    )
    .await;
    let healthy = guard.name("healthy");
    let mut healthy_config = config(&["sleep", "300"]);
    healthy_config.healthcheck = Some(healthcheck());
    healthy_config.ports = vec![PortBinding {
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: Some("127.0.0.1".into()),
        host_port: Some(port),
    }];
    create_and_start(&runner, spec(&guard, &healthy, &image, healthy_config)).await;
    let idle = guard.name("idle");
    run(
        &runner,
        &idle,
        Action::CreateContainer(Box::new(spec(&guard, &idle, &image, config(&["true"])))),
    )
    .await
    .unwrap();

    let exited = run(
        &runner,
        &failed,
        Action::AwaitCondition {
            name: failed.clone(),
            condition: DependencyCondition::Completed,
            timeout_seconds: None,
        },
    )
    .await;
    assert!(exited.is_err_and(|e| e.message.contains("code 3")));
    run(
        &runner,
        &healthy,
        Action::AwaitCondition {
            name: healthy.clone(),
            condition: DependencyCondition::Healthy,
            timeout_seconds: None,
        },
    )
    .await
    .expect("healthy");

    let before = docker.request_counts();
    let observed = docker.observe(&guard.owner).await.unwrap();
    let after = docker.request_counts();
    let delta: BTreeMap<&str, u64> = after
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    assert_eq!(
        delta,
        BTreeMap::from([
            ("container_list", 1),
            ("image_list", 1),
            ("network_list", 1),
            ("volume_list", 1)
        ])
    );

    assert_eq!(observed.containers.len(), 3, "{:#?}", observed.containers);
    let by_name: HashMap<&str, _> = observed
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let f = by_name[failed.as_str()];
    assert_eq!(f.state, RunState::Exited);
    assert_eq!(f.exit_code, Some(3));
    assert_eq!(f.health, None);
    assert_eq!(
        f.resource,
        Some(ResourceKey::new(Kind::Container, "default", &failed))
    );
    assert_eq!(f.replica, Some(0));
    assert_eq!(
        f.spec_hash.as_deref(),
        Some(format!("hash-{failed}").as_str())
    );
    assert_eq!(
        f.spec.as_deref(),
        Some(format!("{{\"image\":\"{TEST_IMAGE_REF}\"}}").as_str())
    );
    assert_eq!(f.image_id, image);
    let h = by_name[healthy.as_str()];
    assert_eq!(h.state, RunState::Running);
    assert_eq!(h.health, Some(HealthState::Healthy));
    assert_eq!(h.exit_code, None);
    assert_eq!(h.ports, vec![format!("127.0.0.1:{port}->8080/tcp")]);
    assert!(h.status.starts_with("Up"), "{}", h.status);
    let i = by_name[idle.as_str()];
    assert_eq!(i.state, RunState::Created);
    assert_eq!(i.exit_code, None);
    assert!(i.created > 0);

    assert_eq!(
        observed.images.resolve(TEST_IMAGE_REF),
        Some(image.as_str())
    );
    // Another owner sees none of them.
    assert!(docker
        .list_managed(&format!("{}-other", guard.owner))
        .await
        .unwrap()
        .is_empty());
    assert!(docker.daemon_cpus().await.unwrap() >= 1);
}

#[tokio::test]
async fn request_counts_match_what_reaches_the_daemon() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let proxy = common::CountingProxy::start();
    let docker = Docker::connect_to(&proxy.docker_host())
        .await
        .expect("connect through the proxy");
    let runner = runner(&docker, &guard);
    let name = guard.name("counted");
    create_and_start(
        &runner,
        spec(&guard, &name, &image, config(&["sleep", "300"])),
    )
    .await;
    let started = Action::AwaitCondition {
        name: name.clone(),
        condition: DependencyCondition::Started,
        timeout_seconds: None,
    };
    run(&runner, &name, started).await.unwrap();
    docker.observe(&guard.owner).await.unwrap();

    let wire = proxy.requests();
    let counts = docker.request_counts();
    let count = |op: &str| counts.get(op).copied().unwrap_or(0) as usize;
    assert_eq!(
        counts.values().sum::<u64>() as usize,
        wire.len(),
        "{counts:?} vs {wire:?}"
    );
    assert_eq!(count("version"), proxy.count("GET", "/version"));
    assert_eq!(
        count("container_create"),
        proxy.count("POST", "/containers/create")
    );
    // After its own create the runner starts the container by the ID the create returned.
    let starts = wire
        .iter()
        .filter(|(m, p)| m == "POST" && p.starts_with("/containers/") && p.ends_with("/start"))
        .count();
    assert_eq!((count("container_start"), starts), (1, 1));
    assert_eq!(
        count("container_inspect"),
        proxy.count("GET", &format!("/containers/{name}/json"))
    );
    assert_eq!(
        (
            count("container_list"),
            proxy.count("GET", "/containers/json")
        ),
        (1, 1)
    );
    assert_eq!(
        (count("image_list"), proxy.count("GET", "/images/json")),
        (1, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_maps_every_field_and_copies_files_before_start() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let client = raw();
    let network = guard.network(&guard.name("net"));
    let volume = guard.volume(&guard.name("data"));
    let bind_dir = tempfile::tempdir().unwrap();
    std::fs::write(bind_dir.path().join("hello"), "from the host\n").unwrap();
    run(
        &runner,
        "full",
        Action::EnsureNetwork {
            name: network.clone(),
        },
    )
    .await
    .unwrap();
    run(
        &runner,
        "full",
        Action::EnsureVolume {
            name: volume.clone(),
        },
    )
    .await
    .unwrap();
    let (port_a, port_b) = (free_port(), free_port());

    let name = guard.name("full");
    let files = vec![
        ContainerFile {
            path: "/etc/app/conf.d/app.yaml".into(),
            mode: 0o604,
            digest: "sha256:unused".into(),
            content: Arc::new(b"greeting: hello\n".to_vec()),
        },
        ContainerFile {
            path: "/run.sh".into(),
            mode: 0o750,
            digest: "sha256:unused".into(),
            content: Arc::new(b"#!/bin/sh\necho hi\n".to_vec()),
        },
    ];
    let full = ContainerConfig {
        image: TEST_IMAGE_REF.into(),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["cat /etc/app/conf.d/app.yaml; sleep 300".into()]),
        env: vec!["MODE=prod".into(), "EMPTY=".into(), "SPACES=a b  c".into()],
        working_dir: Some("/srv".into()),
        user: Some("1000:1000".into()),
        hostname: Some("boxhost".into()),
        labels: BTreeMap::from([("team".into(), "core".into())]),
        ports: vec![
            PortBinding {
                container_port: 53,
                protocol: "udp".into(),
                host_ip: None,
                host_port: None,
            },
            PortBinding {
                container_port: 8080,
                protocol: "tcp".into(),
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(port_a),
            },
            PortBinding {
                container_port: 9090,
                protocol: "udp".into(),
                host_ip: None,
                host_port: Some(port_b),
            },
        ],
        mounts: vec![
            Mount::Volume {
                source: volume.clone(),
                target: "/data".into(),
                read_only: false,
            },
            Mount::Bind {
                source: bind_dir.path().display().to_string(),
                target: "/host".into(),
                read_only: true,
            },
            Mount::Tmpfs {
                target: "/scratch".into(),
                size_bytes: Some(8 << 20),
            },
        ],
        network: network.clone(),
        network_aliases: vec!["api".into(), "api-v2".into()],
        restart_policy: "on-failure".into(),
        max_restarts: Some(2),
        healthcheck: Some(Health {
            test: vec!["CMD-SHELL".into(), "test -f /run.sh".into()],
            interval_ns: Some(1_500_000_000),
            timeout_ns: Some(3_000_000_000),
            retries: Some(4),
            start_period_ns: Some(2_000_000_000),
        }),
        memory_bytes: Some(64 << 20),
        nano_cpus: Some(500_000_000),
        stop_timeout: Some(7),
        files: files.clone(),
        // The policy-judged fields and secret env: tests/security.rs.
        ..Default::default()
    };
    let create = spec(&guard, &name, &image, full);
    let want_labels = create.labels.clone();
    run(&runner, &name, Action::CreateContainer(Box::new(create)))
        .await
        .expect("create");

    // Files are in place before the container ever started.
    let inspect = client.inspect_container(&name, None).await.unwrap();
    assert_eq!(
        inspect
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .as_deref(),
        Some("created")
    );
    for file in &files {
        let (content, mode) = read_file(&client, &name, &file.path).await;
        assert_eq!(content, *file.content, "{}", file.path);
        assert_eq!(mode & 0o7777, file.mode, "{}", file.path);
    }

    let c = inspect.config.unwrap();
    // Created by its familiar reference (what `docker ps` shows), resolving to the planned ID.
    assert_eq!(inspect.image.as_deref(), Some(image.as_str()));
    assert_eq!(c.image.as_deref(), Some(common::TEST_IMAGE));
    assert_eq!(
        c.entrypoint,
        Some(vec!["/bin/sh".to_string(), "-c".to_string()])
    );
    assert_eq!(
        c.cmd,
        Some(vec!["cat /etc/app/conf.d/app.yaml; sleep 300".to_string()])
    );
    let env = c.env.unwrap_or_default();
    let ours: Vec<&String> = env.iter().filter(|e| !e.starts_with("PATH=")).collect();
    assert_eq!(ours, ["MODE=prod", "EMPTY=", "SPACES=a b  c"]);
    assert_eq!(c.working_dir.as_deref(), Some("/srv"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.hostname.as_deref(), Some("boxhost"));
    let got_labels: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
    let mut expected = want_labels;
    expected.insert("team".into(), "core".into());
    assert_eq!(got_labels, expected);
    let mut exposed = c.exposed_ports.unwrap_or_default();
    exposed.sort();
    assert_eq!(exposed, ["53/udp", "8080/tcp", "9090/udp"]);
    assert_eq!(c.stop_timeout, Some(7));
    let health = c.healthcheck.unwrap();
    assert_eq!(
        health.test,
        Some(vec!["CMD-SHELL".to_string(), "test -f /run.sh".to_string()])
    );
    assert_eq!(
        (
            health.interval,
            health.timeout,
            health.retries,
            health.start_period
        ),
        (
            Some(1_500_000_000),
            Some(3_000_000_000),
            Some(4),
            Some(2_000_000_000)
        )
    );

    let host = inspect.host_config.unwrap();
    assert_eq!(host.network_mode.as_deref(), Some(network.as_str()));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    let restart = host.restart_policy.unwrap();
    assert_eq!(
        (restart.name, restart.maximum_retry_count),
        (Some(RestartPolicyNameEnum::ON_FAILURE), Some(2))
    );
    let bindings = host.port_bindings.unwrap_or_default();
    let binding = |key: &str| {
        bindings
            .get(key)
            .cloned()
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|b| {
                (
                    b.host_ip.unwrap_or_default(),
                    b.host_port.unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        binding("8080/tcp"),
        [("127.0.0.1".to_string(), port_a.to_string())]
    );
    assert_eq!(binding("9090/udp"), [(String::new(), port_b.to_string())]);
    assert!(binding("53/udp").is_empty());
    let mounts = host.mounts.unwrap_or_default();
    assert_eq!(mounts.len(), 3);
    assert_eq!(
        (
            mounts[0].typ,
            mounts[0].source.as_deref(),
            mounts[0].target.as_deref()
        ),
        (
            Some(MountType::VOLUME),
            Some(volume.as_str()),
            Some("/data")
        )
    );
    assert_eq!(
        (
            mounts[1].typ,
            mounts[1].target.as_deref(),
            mounts[1].read_only
        ),
        (Some(MountType::BIND), Some("/host"), Some(true))
    );
    assert_eq!(
        (mounts[2].typ, mounts[2].target.as_deref()),
        (Some(MountType::TMPFS), Some("/scratch"))
    );
    assert_eq!(
        mounts[2].tmpfs_options.as_ref().and_then(|t| t.size_bytes),
        Some(8 << 20)
    );
    let endpoints = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    let aliases = endpoints
        .get(&network)
        .and_then(|e| e.aliases.clone())
        .unwrap_or_default();
    assert!(
        aliases.contains(&"api".to_string()) && aliases.contains(&"api-v2".to_string()),
        "{aliases:?}"
    );

    // It runs as configured: the command sees its file, the health check sees the other one.
    run(
        &runner,
        &name,
        Action::StartContainer { name: name.clone() },
    )
    .await
    .expect("start");
    run(
        &runner,
        &name,
        Action::AwaitCondition {
            name: name.clone(),
            condition: DependencyCondition::Healthy,
            timeout_seconds: None,
        },
    )
    .await
    .expect("healthy");
    // (Files belong to root: user 1000 reads app.yaml through its "other" read bit.)
    let (mut out, mut err) = (Vec::new(), Vec::new());
    docker
        .logs(
            std::slice::from_ref(&name),
            LogOptions::default(),
            LogSink {
                stdout: &mut out,
                stderr: &mut err,
            },
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&err), "");
    assert_eq!(String::from_utf8_lossy(&out), "greeting: hello\n");
}

#[tokio::test]
async fn a_name_held_by_an_unmanaged_container_is_a_conflict_and_stays_untouched() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let client = raw();
    let name = guard.name("taken");
    guard.container(&name);
    let theirs = client
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::new()
                    .name(&name)
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(image.clone()),
                cmd: Some(vec!["sleep".into(), "300".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    client.start_container(&name, None).await.unwrap();

    let err = run(
        &runner,
        &name,
        Action::CreateContainer(Box::new(spec(&guard, &name, &image, config(&["true"])))),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!("container name \"{name}\" is taken by a container dockwright does not manage; rename or remove it")
    );
    let after = client.inspect_container(&name, None).await.unwrap();
    assert_eq!(after.id.as_deref(), Some(theirs.as_str()));
    assert_eq!(after.state.and_then(|s| s.running), Some(true));
    assert!(!after
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default()
        .contains_key(labels::OWNER));
    assert!(docker.list_managed(&guard.owner).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_file_copy_removes_the_new_container() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let name = guard.name("badcopy");
    let mut cfg = config(&["true"]);
    // The parent is a regular file: the daemon cannot extract below it.
    cfg.files = vec![ContainerFile {
        path: "/bin/busybox/child".into(),
        mode: 0o644,
        digest: "sha256:unused".into(),
        content: Arc::new(b"x".to_vec()),
    }];
    let err = run(
        &runner,
        &name,
        Action::CreateContainer(Box::new(spec(&guard, &name, &image, cfg))),
    )
    .await
    .unwrap_err();
    assert!(
        err.message
            .starts_with(&format!("copy files into {name}: ")),
        "{}",
        err.message
    );
    assert!(
        docker.list_managed(&guard.owner).await.unwrap().is_empty(),
        "the half-made container must be gone"
    );
    // A retry without the bad file starts clean (no name conflict).
    run(
        &runner,
        &name,
        Action::CreateContainer(Box::new(spec(&guard, &name, &image, config(&["true"])))),
    )
    .await
    .expect("retry");
}

// ---------------------------------------------------------------------------------------------
// Start, stop, remove, rename
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lifecycle_actions_are_idempotent() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let client = raw();
    let name = guard.name("life");
    create_and_start(
        &runner,
        spec(&guard, &name, &image, config(&["sleep", "300"])),
    )
    .await;
    // Starting a running container is a 304: success.
    run(
        &runner,
        &name,
        Action::StartContainer { name: name.clone() },
    )
    .await
    .expect("second start");
    let id = client
        .inspect_container(&name, None)
        .await
        .unwrap()
        .id
        .unwrap();

    let renamed = guard.name("life-0");
    guard.container(&renamed);
    run(
        &runner,
        &name,
        Action::RenameContainer {
            id: id.clone(),
            from: name.clone(),
            to: renamed.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        client
            .inspect_container(&renamed, None)
            .await
            .unwrap()
            .id
            .as_deref(),
        Some(id.as_str())
    );

    let stop = Action::StopContainer {
        id: id.clone(),
        name: renamed.clone(),
        timeout_seconds: Some(1),
    };
    run(&runner, &renamed, stop.clone()).await.expect("stop");
    run(&runner, &renamed, stop.clone())
        .await
        .expect("stop again (304)");
    let state = client
        .inspect_container(&id, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.running, Some(false));

    let remove = Action::RemoveContainer {
        id: id.clone(),
        name: renamed.clone(),
    };
    run(&runner, &renamed, remove.clone())
        .await
        .expect("remove");
    assert!(client.inspect_container(&id, None).await.is_err());
    run(&runner, &renamed, remove)
        .await
        .expect("removing a vanished container is fine");
    run(&runner, &renamed, stop)
        .await
        .expect("stopping a vanished container is fine");

    let missing = run(
        &runner,
        "ghost",
        Action::StartContainer {
            name: guard.name("ghost"),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{}", missing.message);
}

#[tokio::test]
async fn stop_without_timeout_honours_the_containers_stop_timeout() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let client = raw();
    let name = guard.name("patient");
    // PID 1 `sleep` ignores SIGTERM, so the stop lasts exactly the grace period.
    let mut cfg = config(&["sleep", "300"]);
    cfg.stop_timeout = Some(1);
    create_and_start(&runner, spec(&guard, &name, &image, cfg)).await;
    let id = client
        .inspect_container(&name, None)
        .await
        .unwrap()
        .id
        .unwrap();
    let started = std::time::Instant::now();
    let stop = Action::StopContainer {
        id: id.clone(),
        name: name.clone(),
        timeout_seconds: None,
    };
    run(&runner, &name, stop).await.expect("stop");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "StopTimeout 1 s, not Docker's 10 s default: {took:?}"
    );
    let state = client
        .inspect_container(&id, None)
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(state.running, Some(false));
}

#[tokio::test]
async fn remove_keeps_named_volumes() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let client = raw();
    let volume = guard.volume(&guard.name("keep"));
    run(
        &runner,
        "v",
        Action::EnsureVolume {
            name: volume.clone(),
        },
    )
    .await
    .unwrap();
    let name = guard.name("user");
    let mut cfg = config(&["sh", "-c", "echo kept > /data/file"]);
    cfg.mounts = vec![Mount::Volume {
        source: volume.clone(),
        target: "/data".into(),
        read_only: false,
    }];
    create_and_start(&runner, spec(&guard, &name, &image, cfg)).await;
    run(
        &runner,
        &name,
        Action::AwaitCondition {
            name: name.clone(),
            condition: DependencyCondition::Completed,
            timeout_seconds: None,
        },
    )
    .await
    .unwrap();
    let id = client
        .inspect_container(&name, None)
        .await
        .unwrap()
        .id
        .unwrap();
    run(
        &runner,
        &name,
        Action::RemoveContainer {
            id,
            name: name.clone(),
        },
    )
    .await
    .unwrap();
    assert!(
        client.inspect_volume(&volume).await.is_ok(),
        "the named volume survives its container"
    );
}

// ---------------------------------------------------------------------------------------------
// Networks and volumes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn network_and_volume_ensure_is_idempotent_and_race_free() {
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let client = raw();

    let network = guard.network(&guard.name("net"));
    // Four concurrent ensures of one missing network: exactly one network remains.
    let ensures = (0..4).map(|_| {
        run(
            &runner,
            "n",
            Action::EnsureNetwork {
                name: network.clone(),
            },
        )
    });
    for result in futures::future::join_all(ensures).await {
        result.expect("ensure network");
    }
    run(
        &runner,
        "n",
        Action::EnsureNetwork {
            name: network.clone(),
        },
    )
    .await
    .unwrap();
    // Every racer that lost removed its own duplicate, and only that.
    let counts = docker.request_counts();
    let created = counts.get("network_create").copied().unwrap_or(0);
    assert!(created >= 1);
    assert_eq!(
        counts.get("network_remove").copied().unwrap_or(0),
        created - 1,
        "{counts:?}"
    );
    let filters = HashMap::from([("name", vec![network.clone()])]);
    let same: Vec<_> = client
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.name.as_deref() == Some(network.as_str()))
        .collect();
    assert_eq!(same.len(), 1, "{same:#?}");
    assert_eq!(
        same[0].labels.as_ref().and_then(|l| l.get(labels::OWNER)),
        Some(&guard.owner)
    );

    let volume = guard.volume(&guard.name("vol"));
    run(
        &runner,
        "v",
        Action::EnsureVolume {
            name: volume.clone(),
        },
    )
    .await
    .unwrap();
    run(
        &runner,
        "v",
        Action::EnsureVolume {
            name: volume.clone(),
        },
    )
    .await
    .unwrap();
    let listed = client
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new()
                .filters(&HashMap::from([("name", vec![volume.clone()])]))
                .build(),
        ))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default();
    assert_eq!(listed.iter().filter(|v| v.name == volume).count(), 1);
    assert_eq!(
        client
            .inspect_volume(&volume)
            .await
            .unwrap()
            .labels
            .get(labels::OWNER),
        Some(&guard.owner)
    );

    // An existing unmanaged volume is used as it is.
    let theirs = guard.volume(&guard.name("theirs"));
    client
        .create_volume(VolumeCreateRequest {
            name: Some(theirs.clone()),
            labels: Some(HashMap::from([("someone".into(), "else".into())])),
            ..Default::default()
        })
        .await
        .unwrap();
    run(
        &runner,
        "v",
        Action::EnsureVolume {
            name: theirs.clone(),
        },
    )
    .await
    .unwrap();
    let labels_after = client.inspect_volume(&theirs).await.unwrap().labels;
    assert_eq!(
        labels_after,
        HashMap::from([("someone".to_string(), "else".to_string())])
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn await_condition_reaches_healthy_and_completed_and_fails_fast() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let wait = |name: &str, condition| Action::AwaitCondition {
        name: name.to_string(),
        condition,
        timeout_seconds: None,
    };

    let healthy = guard.name("healthy");
    let mut cfg = config(&["sleep", "300"]);
    cfg.healthcheck = Some(healthcheck());
    create_and_start(&runner, spec(&guard, &healthy, &image, cfg)).await;
    run(
        &runner,
        &healthy,
        wait(&healthy, DependencyCondition::Started),
    )
    .await
    .expect("started");
    run(
        &runner,
        &healthy,
        wait(&healthy, DependencyCondition::Healthy),
    )
    .await
    .expect("healthy");

    let job = guard.name("job");
    create_and_start(
        &runner,
        spec(
            &guard,
            &job,
            &image,
            config(&["sh", "-c", "sleep 1; exit 0"]),
        ),
    )
    .await;
    run(&runner, &job, wait(&job, DependencyCondition::Completed))
        .await
        .expect("completed");

    let failing = guard.name("failing");
    create_and_start(
        &runner,
        spec(&guard, &failing, &image, config(&["sh", "-c", "exit 3"])),
    )
    .await;
    let err = run(
        &runner,
        &failing,
        wait(&failing, DependencyCondition::Completed),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(
        err.message.contains("exited with code 3"),
        "{}",
        err.message
    );

    // Healthy cannot be reached without a health check, or once the container exited.
    let plain = guard.name("plain");
    create_and_start(
        &runner,
        spec(&guard, &plain, &image, config(&["sleep", "300"])),
    )
    .await;
    let started = std::time::Instant::now();
    let err = run(&runner, &plain, wait(&plain, DependencyCondition::Healthy))
        .await
        .unwrap_err();
    assert!(err.message.contains("no health check"), "{}", err.message);
    let dies = guard.name("dies");
    let mut cfg = config(&["sh", "-c", "sleep 1; exit 1"]);
    cfg.healthcheck = Some(Health {
        test: vec!["CMD".into(), "false".into()],
        interval_ns: Some(10_000_000_000),
        ..healthcheck()
    });
    create_and_start(&runner, spec(&guard, &dies, &image, cfg)).await;
    let err = run(&runner, &dies, wait(&dies, DependencyCondition::Healthy))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(
        err.message.contains("exited with code 1"),
        "{}",
        err.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "fails fast, not at the timeout"
    );

    // A condition that is never reached ends at the configured timeout.
    let short = DockerRunner::new(docker.clone(), guard.owner.clone())
        .with_await_timeout(Duration::from_secs(1));
    let err = run(
        &short,
        &healthy,
        wait(&healthy, DependencyCondition::Completed),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.message.contains("within 1s"), "{}", err.message);
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn logs_of_several_containers_are_prefixed_per_line() {
    let image = ensure_test_image().await;
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);
    let a = guard.name("a");
    let b = guard.name("b");
    create_and_start(
        &runner,
        spec(
            &guard,
            &a,
            &image,
            config(&["sh", "-c", "echo one; echo two; echo oops >&2"]),
        ),
    )
    .await;
    create_and_start(
        &runner,
        spec(&guard, &b, &image, config(&["sh", "-c", "printf 'x\\ny'"])),
    )
    .await;
    for name in [&a, &b] {
        run(
            &runner,
            name,
            Action::AwaitCondition {
                name: name.clone(),
                condition: DependencyCondition::Completed,
                timeout_seconds: None,
            },
        )
        .await
        .unwrap();
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let names = [a.clone(), b.clone()];
    docker
        .logs(
            &names,
            LogOptions::default(),
            LogSink {
                stdout: &mut out,
                stderr: &mut err,
            },
        )
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    let mut want = vec![
        format!("[{a}] one"),
        format!("[{a}] two"),
        format!("[{b}] x"),
        format!("[{b}] y"),
    ];
    want.sort();
    assert_eq!(lines, want);
    assert!(
        out.find(&format!("[{a}] one")) < out.find(&format!("[{a}] two")),
        "order within a container is kept"
    );
    assert_eq!(String::from_utf8(err).unwrap(), format!("[{a}] oops\n"));

    // One container: no prefix. (Ordering across stdout and stderr is not kept by Docker's
    // log driver, so the tail is checked on a stdout-only container.)
    let mut tail = Vec::new();
    let options = LogOptions {
        follow: false,
        tail: Some(1),
    };
    let sink = LogSink {
        stdout: &mut tail,
        stderr: &mut std::io::sink(),
    };
    docker
        .logs(std::slice::from_ref(&b), options, sink)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(tail).unwrap(), "y\n");

    let mut follow = Vec::new();
    let followed = tokio::time::timeout(
        Duration::from_secs(20),
        docker.logs(
            std::slice::from_ref(&b),
            LogOptions {
                follow: true,
                tail: None,
            },
            LogSink {
                stdout: &mut follow,
                stderr: &mut std::io::sink(),
            },
        ),
    )
    .await;
    assert!(followed.is_ok(), "following an exited container ends");
    assert_eq!(String::from_utf8(follow).unwrap(), "x\ny\n");
}

// ---------------------------------------------------------------------------------------------
// Pulls, from a registry played by this test
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum RegistryMode {
    Serve,
    Unauthorized,
}

/// A minimal registry (distribution API v2 over plain HTTP) serving one image. The daemon
/// treats 127.0.0.0/8 as an insecure registry: it tries TLS first (we hang up) then HTTP.
struct FakeRegistry {
    host: String,
    manifest_digest: String,
    layer_size: u64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn fake_registry(mode: RegistryMode, repo: &str, tag: &str, unique: &str) -> FakeRegistry {
    // An uncompressed layer: one file of 1 MiB (big enough for progress reports).
    let mut layer = tar::Builder::new(Vec::new());
    let content: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    layer
        .append_data(&mut header, "payload.bin", content.as_slice())
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let layer_digest = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"dockwright.test": unique}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer.len(), "digest": layer_digest}],
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    let layer_size = layer.len() as u64;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let blobs: Arc<HashMap<String, Vec<u8>>> = Arc::new(HashMap::from([
        (config_digest, config),
        (layer_digest, layer),
    ]));
    let (repo, tag, md) = (repo.to_string(), tag.to_string(), manifest_digest.clone());
    let manifest = Arc::new(manifest);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (blobs, manifest, repo, tag, md) = (
                blobs.clone(),
                manifest.clone(),
                repo.clone(),
                tag.clone(),
                md.clone(),
            );
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                if socket.peek(&mut first).await.is_err() || first[0] == 0x16 {
                    return; // a TLS handshake: hang up so the daemon falls back to HTTP
                }
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let mut words = text.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                let path = path.split('?').next().unwrap_or("");
                let (status, headers, body): (&str, Vec<(&str, String)>, Vec<u8>) = if mode
                    == RegistryMode::Unauthorized
                {
                    let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec();
                    (
                        "401 Unauthorized",
                        vec![
                            ("WWW-Authenticate", "Basic realm=\"fake\"".into()),
                            ("Content-Type", "application/json".into()),
                        ],
                        body,
                    )
                } else if path == "/v2/" {
                    (
                        "200 OK",
                        vec![("Content-Type", "application/json".into())],
                        b"{}".to_vec(),
                    )
                } else if let Some(reference) = path.strip_prefix(&format!("/v2/{repo}/manifests/"))
                {
                    if reference == tag || reference == md {
                        (
                            "200 OK",
                            vec![
                                (
                                    "Content-Type",
                                    "application/vnd.docker.distribution.manifest.v2+json".into(),
                                ),
                                ("Docker-Content-Digest", md.clone()),
                            ],
                            manifest.to_vec(),
                        )
                    } else {
                        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.to_vec();
                        (
                            "404 Not Found",
                            vec![("Content-Type", "application/json".into())],
                            body,
                        )
                    }
                } else if let Some(blob) = path
                    .strip_prefix(&format!("/v2/{repo}/blobs/"))
                    .and_then(|d| blobs.get(d))
                {
                    (
                        "200 OK",
                        vec![("Content-Type", "application/octet-stream".into())],
                        blob.clone(),
                    )
                } else {
                    ("404 Not Found", vec![("Content-Type", "application/json".into())], br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#.to_vec())
                };
                let mut response = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    response.push_str(&format!("{k}: {v}\r\n"));
                }
                response.push_str("\r\n");
                let _ = socket.write_all(response.as_bytes()).await;
                if method != "HEAD" {
                    let _ = socket.write_all(&body).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    FakeRegistry {
        host,
        manifest_digest,
        layer_size,
        task,
    }
}

#[derive(Default)]
struct Recorder {
    updates: Mutex<Vec<(String, String, u64, u64)>>,
    done: Mutex<Vec<String>>,
}

impl PullProgress for Recorder {
    fn update(&self, reference: &str, layer: &str, current: u64, total: u64) {
        self.updates
            .lock()
            .unwrap()
            .push((reference.into(), layer.into(), current, total));
    }
    fn done(&self, reference: &str) {
        self.done.lock().unwrap().push(reference.into());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_by_tag_and_digest_reports_progress_and_resolves_locally() {
    let guard = Guard::new();
    let id = common::unique("img");
    let registry = fake_registry(RegistryMode::Serve, "dwtest/pull", "v1", &id).await;
    let docker = docker().await;
    let recorder = Arc::new(Recorder::default());
    let runner = runner(&docker, &guard).with_progress(recorder.clone());
    let by_tag = format!("{}/dwtest/pull:v1", registry.host);
    let by_digest = format!("{}/dwtest/pull@{}", registry.host, registry.manifest_digest);
    guard.image(&by_tag);
    guard.image(&by_digest);

    run(
        &runner,
        "p",
        Action::PullImage {
            reference: by_tag.clone(),
            auth: None,
        },
    )
    .await
    .expect("pull by tag");
    assert_eq!(
        recorder.done.lock().unwrap().as_slice(),
        std::slice::from_ref(&by_tag)
    );
    let updates = recorder.updates.lock().unwrap().clone();
    assert!(
        updates.iter().any(|(r, _, current, total)| *r == by_tag
            && *total == registry.layer_size
            && current == total),
        "the layer's download is reported to completion: {updates:?}"
    );
    run(
        &runner,
        "p",
        Action::PullImage {
            reference: by_digest.clone(),
            auth: None,
        },
    )
    .await
    .expect("pull by digest");

    let images = docker.list_images().await.unwrap();
    let tagged = images.resolve(&by_tag).expect("tag resolves");
    assert_eq!(
        images.resolve(&by_digest),
        Some(tagged),
        "digest resolves to the same image"
    );
    guard.image(tagged);

    let missing = run(
        &runner,
        "p",
        Action::PullImage {
            reference: format!("{}/dwtest/pull:nope", registry.host),
            auth: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{}", missing.message);
    assert!(
        missing.message.contains("dwtest/pull:nope"),
        "{}",
        missing.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_failures_are_classified() {
    let guard = Guard::new();
    let docker = docker().await;
    let runner = runner(&docker, &guard);

    let locked = fake_registry(
        RegistryMode::Unauthorized,
        "dwtest/locked",
        "v1",
        &common::unique("img"),
    )
    .await;
    let reference = format!("{}/dwtest/locked:v1", locked.host);
    let err = run(
        &runner,
        "p",
        Action::PullImage {
            reference: reference.clone(),
            auth: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthorized, "{}", err.message);
    assert_eq!(
        err.message,
        format!(
            "pull {reference}: Head \"http://{}/v2/dwtest/locked/manifests/v1\": \
             no basic auth credentials (the registry refused access: check the credentials for it)",
            locked.host
        )
    );

    let port = free_port();
    let reference = format!("127.0.0.1:{port}/dwtest/nowhere:v1");
    let err = run(
        &runner,
        "p",
        Action::PullImage {
            reference: reference.clone(),
            auth: None,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Daemon, "{}", err.message);
    // The call and its target once, then the daemon's own words.
    assert_eq!(
        err.message,
        format!(
            "pull {reference}: Get \"http://127.0.0.1:{port}/v2/\": \
             dial tcp 127.0.0.1:{port}: connect: connection refused"
        )
    );
}
