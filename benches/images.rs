//! Image benchmark (issue 3): a no-op apply over 50 built images sends no build and reads each
//! context file exactly once (to hash it); and the time to hash a 100 MB context beside `tar`
//! of the same directory. Run: `cargo bench --bench images` (needs the test image, built by
//! `scripts/build-test-image.sh`). Prints a table; exits non-zero if a promise is broken.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListImagesOptionsBuilder, RemoveImageOptionsBuilder};
use dockwright::build_context::{files_read, inputs_hash, write_tar, BuildInputs};
use dockwright::converge::{self, ConvergeOptions};
use dockwright::docker::{Docker, DockerRunner, ImageObserver};

const IMAGES: usize = 50;
const FILES_PER_CONTEXT: usize = 20;
const BIG_FILES: usize = 100;
const BIG_FILE_BYTES: usize = 1024 * 1024;

fn write_contexts(root: &Path, owner: &str) -> usize {
    let mut manifests = String::new();
    let mut files = 0;
    for i in 0..IMAGES {
        let ctx = root.join(format!("ctx-{i}"));
        std::fs::create_dir_all(ctx.join("src")).expect("create context");
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM dockwright-test/busybox:latest\nCOPY src/ /src/\n",
        )
        .expect("write Dockerfile");
        std::fs::write(ctx.join(".dockerignore"), "*.tmp\n").expect("write .dockerignore");
        std::fs::write(ctx.join("scratch.tmp"), "ignored").expect("write ignored file");
        files += 2; // Dockerfile and .dockerignore are context files too
        for f in 0..FILES_PER_CONTEXT {
            std::fs::write(
                ctx.join("src").join(format!("f{f}.txt")),
                format!("image {i} file {f}\n"),
            )
            .expect("write file");
            files += 1;
        }
        manifests.push_str(&format!(
            "---\napiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: {{name: img-{i}}}\nspec:\n  ref: {owner}/img-{i}:1\n  build: {{context: ctx-{i}}}\n"
        ));
    }
    std::fs::write(root.join("images.yaml"), manifests).expect("write manifests");
    files
}

fn write_big_context(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create big context");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..BIG_FILES {
        let mut data = Vec::with_capacity(BIG_FILE_BYTES);
        while data.len() < BIG_FILE_BYTES {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        std::fs::write(dir.join(format!("blob-{i:03}.bin")), data).expect("write blob");
    }
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let value = f();
        best = best.min(started.elapsed());
        last = Some(value);
    }
    (best, last.expect("at least one run"))
}

fn time_command(runs: usize, script: &str) -> Duration {
    best_of(runs, || {
        let status = Command::new("sh")
            .args(["-c", script])
            .status()
            .expect("run sh");
        assert!(status.success(), "{script} failed");
    })
    .0
}

async fn remove_owned(owner: &str) {
    let Ok(client) = bollard::Docker::connect_with_defaults() else {
        return;
    };
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("dockwright.dev/owner={owner}")],
    )]);
    let options = ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    for image in client.list_images(Some(options)).await.unwrap_or_default() {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        let _ = client.remove_image(&image.id, Some(options), None).await;
    }
}

#[tokio::main]
async fn main() {
    let owner = format!("dwbench-images-{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let files = write_contexts(dir.path(), &owner);
    let docker = Docker::connect()
        .await
        .expect("connect to the Docker daemon");
    let runner = DockerRunner::new(docker.clone(), owner.clone());
    let options = ConvergeOptions::new(owner.clone());
    let paths: Vec<PathBuf> = vec![dir.path().to_path_buf()];
    let mut failures = Vec::new();

    // First apply: 50 builds.
    let started = Instant::now();
    let desired = dockwright::source::load_paths(&paths).expect("manifests load");
    let observer = ImageObserver {
        docker: docker.clone(),
        registry_digests: Default::default(),
        prune: false,
        records: None,
    };
    let report = converge::converge(&observer, &runner, &desired, &options, &mut |_| {})
        .await
        .expect("converge");
    let first = started.elapsed();
    let builds = docker
        .request_counts()
        .get("image_build")
        .copied()
        .unwrap_or(0);
    if !report.converged() || builds != IMAGES as u64 {
        failures.push(format!(
            "first apply: converged={} builds={builds}",
            report.converged()
        ));
    }

    // No-op apply: load (hash every context) + observe + plan, no build, each file read once.
    let reads_before = files_read();
    let builds_before = builds;
    let requests_before = docker.request_total();
    let started = Instant::now();
    let desired = dockwright::source::load_paths(&paths).expect("manifests load");
    let hashed = started.elapsed();
    let report = converge::converge(&observer, &runner, &desired, &options, &mut |_| {})
        .await
        .expect("converge");
    let noop = started.elapsed();
    let reads = files_read() - reads_before;
    let builds = docker
        .request_counts()
        .get("image_build")
        .copied()
        .unwrap_or(0)
        - builds_before;
    let requests = docker.request_total() - requests_before;
    if !report.actions.is_empty() || builds != 0 {
        failures.push(format!(
            "no-op apply: {} actions, {builds} builds",
            report.actions.len()
        ));
    }
    if reads != files as u64 {
        failures.push(format!(
            "no-op apply read {reads} context files, expected each of {files} once"
        ));
    }

    // Hashing a 100 MB context beside tar of the same directory (warm page cache, best of 3).
    let big = dir.path().join("big");
    write_big_context(&big);
    let empty = Default::default();
    let inputs = BuildInputs {
        context: &big,
        dockerfile: b"FROM scratch\n",
        args: &empty,
        target: None,
        labels: &empty,
    };
    let _ = inputs_hash(&inputs);
    let (hash_time, _) = best_of(3, || inputs_hash(&inputs).expect("hash"));
    let (our_tar_time, _) = best_of(3, || {
        write_tar(&big, None, Some(b"FROM scratch\n"), std::io::sink()).expect("tar")
    });
    let big_str = big.display().to_string();
    let tar_null = time_command(3, &format!("tar -cf /dev/null -C '{big_str}' ."));
    let tar_piped = time_command(3, &format!("tar -cf - -C '{big_str}' . | cat > /dev/null"));

    println!(
        "images benchmark ({IMAGES} built images, {files} context files, daemon API {})",
        docker.api_version()
    );
    println!("  first apply (50 builds)                 {:>9.2?}", first);
    println!("  no-op apply                             {:>9.2?}  (load+hash {:.2?}; {requests} daemon requests, {builds} builds, {reads} context files read)", noop, hashed);
    println!(
        "  hash 100 MB context                     {:>9.2?}  ({:.0} MB/s)",
        hash_time,
        100.0 / hash_time.as_secs_f64()
    );
    println!(
        "  dockwright tar of it to a sink          {:>9.2?}",
        our_tar_time
    );
    println!(
        "  tar -cf /dev/null (GNU tar skips reads) {:>9.2?}",
        tar_null
    );
    println!(
        "  tar -cf - | cat > /dev/null             {:>9.2?}",
        tar_piped
    );

    remove_owned(&owner).await;
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        std::process::exit(1);
    }
}
