//! Converge benchmark (issue 2): N = 10 / 50 / 200 containers from scratch, then a no-op
//! re-apply, beside the same creates and starts done by a plain parallel bollard client (the
//! daemon's own limit). Run: `cargo bench --bench converge` (needs the test image, built by
//! `scripts/build-test-image.sh`). Prints a table; the ratios are the figures to watch.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use dockwright::converge::{self, ConvergeOptions};
use dockwright::docker::{Docker, DockerRunner};
use futures::stream::{self, StreamExt};

const IMAGE: &str = "dockwright-test/busybox:latest";
const BENCH_LABEL: &str = "dockwright.dev/bench";

fn manifests(dir: &Path, n: usize, prefix: &str) {
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {prefix}-{i}}}\nspec:\n  image: {IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, '3600']\n"
        ));
    }
    std::fs::write(dir.join("bench.yaml"), text).expect("write manifests");
}

async fn raw_create_start(
    client: &bollard::Docker,
    n: usize,
    prefix: &str,
    concurrency: usize,
) -> Duration {
    let started = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(concurrency, |i| async move {
            let name = format!("{prefix}-{i}");
            let body = ContainerCreateBody {
                image: Some(IMAGE.to_string()),
                cmd: Some(vec!["sleep".into(), "3600".into()]),
                labels: Some(HashMap::from([(
                    BENCH_LABEL.to_string(),
                    prefix.to_string(),
                )])),
                ..Default::default()
            };
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            if let Err(e) = client.create_container(Some(options), body).await {
                eprintln!("raw create {name}: {e}");
                return;
            }
            if let Err(e) = client
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
            {
                eprintln!("raw start {name}: {e}");
            }
        })
        .await;
    started.elapsed()
}

async fn remove_labelled(client: &bollard::Docker, label: &str) {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let containers = client
        .list_containers(Some(options))
        .await
        .unwrap_or_default();
    stream::iter(containers)
        .for_each_concurrent(16, |c| async move {
            if let Some(id) = c.id {
                let options = RemoveContainerOptionsBuilder::default().force(true).build();
                let _ = client.remove_container(&id, Some(options)).await;
            }
        })
        .await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let client = bollard::Docker::connect_with_defaults()
        .expect("docker")
        .negotiate_version()
        .await
        .expect("negotiate");
    if client.inspect_image(IMAGE).await.is_err() {
        let status = Command::new("bash")
            .arg("scripts/build-test-image.sh")
            .status()
            .expect("build test image");
        assert!(status.success(), "building {IMAGE} failed");
    }
    let docker = Docker::connect().await.expect("connect");
    let concurrency = converge::Observe::default_concurrency(&docker).await;
    let binary = env!("CARGO_BIN_EXE_dockwright");
    println!(
        "dockwright converge benchmark — daemon API {}, concurrency {concurrency}",
        docker.api_version()
    );
    println!(
        "{:>5} {:>12} {:>12} {:>7} {:>14} {:>12} {:>14}",
        "N", "raw (ms)", "cold (ms)", "ratio", "no-op e2e(ms)", "no-op calls", "no-op writes"
    );
    for n in [10usize, 50, 200] {
        let mut raw = Vec::new();
        let mut cold = Vec::new();
        let mut noop = Vec::new();
        let mut noop_calls = 0;
        let mut noop_writes = 0;
        for round in 0..3 {
            // Raw parallel client.
            let prefix = format!("bench-raw-{n}-{round}");
            raw.push(raw_create_start(&client, n, &prefix, concurrency).await);
            remove_labelled(&client, &format!("{BENCH_LABEL}={prefix}")).await;

            // dockwright, in-process, from scratch.
            let owner = format!("bench-{n}-{round}");
            let dir = tempfile::tempdir().expect("tempdir");
            manifests(dir.path(), n, &format!("bench-dw-{n}-{round}"));
            let desired =
                dockwright::source::load_paths(&[dir.path().to_path_buf()]).expect("manifests");
            let mut options = ConvergeOptions::new(owner.clone());
            options.concurrency = Some(concurrency);
            let runner = DockerRunner::new(docker.clone(), owner.clone());
            let started = Instant::now();
            let report = converge::converge(&docker, &runner, &desired, &options, &mut |_| {})
                .await
                .expect("converge");
            cold.push(started.elapsed());
            assert!(
                report.converged(),
                "cold converge failed: {:?}",
                report.failures().collect::<Vec<_>>()
            );

            // No-op re-apply, end to end through the release binary, and its daemon calls in-process.
            let started = Instant::now();
            let out = Command::new(binary)
                .args(["apply", "-f"])
                .arg(dir.path())
                .args(["--owner", &owner])
                .output()
                .expect("run");
            noop.push(started.elapsed());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let counter = Docker::connect().await.expect("connect");
            let before: BTreeMap<_, _> = counter.request_counts();
            let again = converge::converge(
                &counter,
                &DockerRunner::new(counter.clone(), owner.clone()),
                &desired,
                &options,
                &mut |_| {},
            )
            .await
            .expect("noop");
            assert_eq!(again.actions.len(), 0, "no-op apply planned actions");
            let after = counter.request_counts();
            noop_calls = after.values().sum::<u64>() - before.values().sum::<u64>();
            noop_writes = again.changes();
            remove_labelled(&client, &format!("dockwright.dev/owner={owner}")).await;
        }
        let (raw, cold, noop) = (median(raw), median(cold), median(noop));
        println!(
            "{n:>5} {:>12.1} {:>12.1} {:>7.3} {:>14.1} {:>12} {:>14}",
            raw.as_secs_f64() * 1e3,
            cold.as_secs_f64() * 1e3,
            cold.as_secs_f64() / raw.as_secs_f64(),
            noop.as_secs_f64() * 1e3,
            noop_calls,
            noop_writes
        );
    }
}
