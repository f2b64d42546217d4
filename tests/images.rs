//! End-to-end tests of images against the real daemon and the loopback registries: builds
//! (`.dockerignore`, args, target, labels, rebuild only on real changes, failures), push and
//! pull by tag and digest, registry credentials (right and wrong), moving tags with
//! `updateInterval` and `minAge`, and image removal with `--prune` and `dockwright prune`.
//!
//! Registry tests need `scripts/start-registries.sh` (its `DOCKWRIGHT_TEST_*` variables): when
//! they are absent they are skipped with a message, unless `CI` is set, where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use base64::Engine as _;
use common::{
    auth_registry, dockwright, ensure_test_image, own_layers, registry, require_registry, unique,
    CountingProxy, TestOwner, TEST_IMAGE,
};
use serde_json::Value;

/// The registry at `DOCKWRIGHT_TEST_REGISTRY`, or `None` (test skipped) when the variable is
/// absent outside CI. Under CI a missing registry fails the test.
fn open_registry(test: &str) -> Option<String> {
    if std::env::var_os("DOCKWRIGHT_TEST_REGISTRY").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI is set but DOCKWRIGHT_TEST_REGISTRY is not: run scripts/start-registries.sh and source its env file"
        );
        eprintln!("SKIPPED {test}: no test registry (run scripts/start-registries.sh and source $DOCKWRIGHT_TEST_STATE/env)");
        return None;
    }
    let addr = registry();
    require_registry(&addr);
    Some(addr)
}

/// Like [`open_registry`], for the registry with htpasswd auth.
fn locked_registry(test: &str) -> Option<common::AuthRegistry> {
    if std::env::var_os("DOCKWRIGHT_TEST_AUTH_REGISTRY").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: CI is set but DOCKWRIGHT_TEST_AUTH_REGISTRY is not: run scripts/start-registries.sh and source its env file"
        );
        eprintln!("SKIPPED {test}: no auth test registry (run scripts/start-registries.sh and source $DOCKWRIGHT_TEST_STATE/env)");
        return None;
    }
    let auth = auth_registry();
    require_registry(&auth.addr);
    Some(auth)
}

fn docker_cli(args: &[&str]) -> Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker_cli(args);
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// A test's workspace: manifests in `dir/m`, build contexts beside them, and a state
/// directory of its own (`XDG_STATE_HOME`).
struct Work {
    owner: TestOwner,
    dir: tempfile::TempDir,
}

impl Work {
    fn new(name: &str) -> Self {
        Self {
            owner: TestOwner::new(name),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn manifests(&self) -> PathBuf {
        let m = self.path("m");
        std::fs::create_dir_all(&m).unwrap();
        m
    }

    /// Writes the manifests (replacing earlier ones).
    fn declare(&self, yaml: &str) {
        let m = self.manifests();
        write(&m.join("all.yaml"), yaml);
    }

    fn run(&self, args: &[&str], docker_host: Option<&str>) -> Output {
        let mut cmd = dockwright();
        cmd.args(args)
            .arg("--owner")
            .arg(self.owner.name())
            .env("XDG_STATE_HOME", self.path("state"))
            .env("DOCKER_CONFIG", self.path("no-docker-config"));
        if let Some(host) = docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        cmd.output().unwrap()
    }

    fn apply(&self, extra: &[&str]) -> Output {
        let m = self.manifests();
        let mut args = vec!["apply", "-f", m.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args, None)
    }

    fn apply_ok(&self, extra: &[&str]) -> String {
        let out = self.apply(extra);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    }
}

fn image_manifest(name: &str, reference: &str, spec: &str) -> String {
    format!("---\napiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: {{name: {name}}}\nspec:\n  ref: {reference}\n{spec}")
}

fn container_manifest(name: &str, image: &str, extra: &str) -> String {
    format!("---\napiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {image}\n  command: [sleep, '3600']\n{extra}")
}

fn inspect(target: &str) -> Value {
    let out = docker_cli(&["inspect", target]);
    assert!(out.status.success(), "inspect {target}: {}", text(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .unwrap()
        .remove(0)
}

fn exists(target: &str) -> bool {
    docker_cli(&["inspect", target]).status.success()
}

fn image_id(reference: &str) -> String {
    docker_ok(&["image", "inspect", "-f", "{{.Id}}", reference])
}

fn container_image(name: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Image}}", name])
}

fn exec(name: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", name];
    args.extend_from_slice(cmd);
    docker_ok(&args)
}

/// Removes containers the test made itself (no owner label) on drop.
struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        let _ = docker_cli(&["rm", "-f", &self.0]);
    }
}

/// Removes image tags the test made itself on drop.
struct RemoveImages(Vec<String>);

impl Drop for RemoveImages {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = docker_cli(&["rmi", "-f", image]);
        }
    }
}

const DOCKERFILE: &str = "FROM dockwright-test/busybox:latest AS base
ARG GREETING=hello
COPY app/ /app/
RUN echo \"$GREETING\" > /greeting
FROM base AS final
RUN echo final > /stage
";

fn web_context(work: &Work) -> PathBuf {
    let ctx = work.path("web");
    write(
        &ctx.join("Dockerfile"),
        &own_layers(DOCKERFILE, work.owner.name()),
    );
    write(&ctx.join("app/index.html"), "v1\n");
    write(&ctx.join("app/debug.log"), "noise 1\n");
    write(&ctx.join(".dockerignore"), "# logs stay home\n**/*.log\n");
    ctx
}

#[tokio::test]
async fn build_honours_dockerignore_and_rebuilds_only_on_real_changes() {
    ensure_test_image().await;
    let work = Work::new("img-build");
    let ctx = web_context(&work);
    let reference = format!("dwtest/{}:1", unique("web"));
    let web = unique("web");
    work.declare(&format!(
        "{}{}",
        image_manifest("web", &reference, "  build: {context: ../web}\n"),
        container_manifest(&web, "web", "")
    ));
    let first = work.apply_ok(&[]);
    assert!(first.contains("build"), "{first}");
    let built = image_id(&reference);
    assert_eq!(container_image(&web), built);
    assert_eq!(exec(&web, &["cat", "/app/index.html"]), "v1");
    // The ignored file never reached the daemon.
    assert!(!docker_cli(&["exec", &web, "test", "-e", "/app/debug.log"])
        .status
        .success());
    let labels = &inspect(&reference)["Config"]["Labels"];
    assert_eq!(labels["dockwright.dev/owner"], work.owner.name());
    assert_eq!(labels["dockwright.dev/resource"], "Image/default/web");
    assert!(labels["dockwright.dev/build-hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));

    // Nothing changed: no build is sent, nothing is written.
    let proxy = CountingProxy::start();
    let m = work.manifests();
    let out = work.run(
        &["apply", "-f", m.to_str().unwrap()],
        Some(&proxy.docker_host()),
    );
    assert!(
        out.status.success() && text(&out).contains("no changes"),
        "{}",
        text(&out)
    );
    assert_eq!(proxy.count("POST", "/build"), 0);
    assert_eq!(proxy.writes(), Vec::<(String, String)>::new());

    // An ignored file changes: still no build. An mtime alone changes: no build either.
    write(&ctx.join("app/debug.log"), "noise 2\n");
    let touched = std::fs::File::options()
        .write(true)
        .open(ctx.join("app/index.html"))
        .unwrap();
    touched
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    proxy.reset();
    let out = work.run(
        &["apply", "-f", m.to_str().unwrap()],
        Some(&proxy.docker_host()),
    );
    assert!(
        out.status.success() && text(&out).contains("no changes"),
        "{}",
        text(&out)
    );
    assert_eq!(proxy.count("POST", "/build"), 0);

    // A real change: one build, and the container is recreated on the new image ID.
    write(&ctx.join("app/index.html"), "v2\n");
    let out = work.run(&["diff", "-f", m.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("build inputs changed"),
        "{}",
        text(&out)
    );
    proxy.reset();
    let out = work.run(
        &["apply", "-f", m.to_str().unwrap()],
        Some(&proxy.docker_host()),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(proxy.count("POST", "/build"), 1, "{}", text(&out));
    let rebuilt = image_id(&reference);
    assert_ne!(rebuilt, built);
    assert_eq!(container_image(&web), rebuilt);
    assert_eq!(exec(&web, &["cat", "/app/index.html"]), "v2");
    // Converged again.
    assert!(work.apply_ok(&[]).contains("no changes"));

    // The replaced build is dangling now; `dockwright prune` removes it and nothing else.
    assert!(exists(&built));
    let out = work.run(&["prune"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!exists(&built), "{}", text(&out));
    assert!(exists(&rebuilt));
    assert!(exists(TEST_IMAGE));
    let out = work.run(&["prune"], None);
    assert!(text(&out).contains("nothing to prune"), "{}", text(&out));
}

#[tokio::test]
async fn build_args_target_labels_and_an_outside_dockerfile_reach_the_build() {
    ensure_test_image().await;
    let work = Work::new("img-args");
    web_context(&work);
    write(
        &work.path("dockerfiles/Other.dockerfile"),
        &own_layers(
            "FROM dockwright-test/busybox:latest\nCOPY app/index.html /copied\n",
            work.owner.name(),
        ),
    );
    let base = format!("dwtest/{}:1", unique("base"));
    let full = format!("dwtest/{}:1", unique("full"));
    let outside = format!("dwtest/{}:1", unique("outside"));
    let (a, b) = (unique("a"), unique("b"));
    work.declare(&format!(
        "{}{}{}{}{}",
        image_manifest(
            "base",
            &base,
            "  build:\n    context: ../web\n    args: {GREETING: bonjour}\n    target: base\n    labels: {team: web}\n"
        ),
        image_manifest("full", &full, "  build: {context: ../web}\n"),
        image_manifest("outside", &outside, "  build: {context: ../web, dockerfile: ../dockerfiles/Other.dockerfile}\n"),
        container_manifest(&a, "base", ""),
        container_manifest(&b, "full", "")
    ));
    work.apply_ok(&[]);
    assert_eq!(exec(&a, &["cat", "/greeting"]), "bonjour");
    assert!(
        !docker_cli(&["exec", &a, "test", "-e", "/stage"])
            .status
            .success(),
        "target base stops before final"
    );
    assert_eq!(exec(&b, &["cat", "/greeting"]), "hello");
    assert_eq!(exec(&b, &["cat", "/stage"]), "final");
    assert_eq!(inspect(&base)["Config"]["Labels"]["team"], "web");
    // The outside Dockerfile was used, and did not end up in the image.
    let out = docker_cli(&["run", "--rm", &outside, "sh", "-c", "cat /copied; ls -a /"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.starts_with("v1\n"), "{listing}");
    assert!(!listing.contains("dockwright.Dockerfile"), "{listing}");
    // Changing an arg rebuilds that image only.
    let hash = |r: &str| inspect(r)["Config"]["Labels"]["dockwright.dev/build-hash"].clone();
    let (base_hash, full_hash) = (hash(&base), hash(&full));
    let manifests = std::fs::read_to_string(work.manifests().join("all.yaml")).unwrap();
    work.declare(&manifests.replace("GREETING: bonjour", "GREETING: salut"));
    let out = work.apply_ok(&[]);
    assert_ne!(hash(&base), base_hash, "{out}");
    assert_eq!(hash(&full), full_hash, "{out}");
    assert_eq!(exec(&a, &["cat", "/greeting"]), "salut");
}

#[tokio::test]
async fn a_broken_dockerfile_fails_its_image_and_containers_only() {
    ensure_test_image().await;
    let work = Work::new("img-broken");
    write(
        &work.path("bad/Dockerfile"),
        &own_layers(
            "FROM dockwright-test/busybox:latest\nRUN echo dockwright-broken-step && exit 3\n",
            work.owner.name(),
        ),
    );
    let bad_ref = format!("dwtest/{}:1", unique("bad"));
    let (bad, good) = (unique("bad"), unique("good"));
    work.declare(&format!(
        "{}{}{}",
        image_manifest("bad", &bad_ref, "  build: {context: ../bad}\n"),
        container_manifest(&bad, "bad", ""),
        container_manifest(&good, TEST_IMAGE, "  imagePullPolicy: Never\n")
    ));
    let out = work.apply(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("returned a non-zero code: 3"), "{all}");
    assert!(
        all.contains(&format!("Container/default/{bad}")),
        "the container is reported: {all}"
    );
    assert!(!exists(&bad));
    assert_eq!(inspect(&good)["State"]["Running"], true);
}

#[tokio::test]
async fn push_after_build_then_pull_by_tag_and_by_digest() {
    let Some(reg) = open_registry("push_after_build_then_pull_by_tag_and_by_digest") else {
        return;
    };
    ensure_test_image().await;
    let work = Work::new("img-push");
    web_context(&work);
    let repo = format!("{reg}/dwtest/{}", unique("pushed"));
    let (v1, latest) = (format!("{repo}:1"), format!("{repo}:latest"));
    work.declare(&image_manifest(
        "web",
        &v1,
        &format!("  build: {{context: ../web}}\n  tags: [{latest}]\n  push: true\n"),
    ));
    let out = work.apply_ok(&[]);
    assert!(out.contains("push") && out.contains(&latest), "{out}");
    let built = image_id(&v1);
    assert_eq!(image_id(&latest), built);
    let digests = inspect(&v1)["RepoDigests"].clone();
    let by_digest = digests[0]
        .as_str()
        .expect("pushed image has a repo digest")
        .to_string();
    assert!(by_digest.starts_with(&repo), "{by_digest}");
    assert!(work.apply_ok(&[]).contains("no changes"), "pushed once");

    // Gone locally: pull it back by tag, then by digest, for containers.
    docker_ok(&["rmi", "-f", &built]);
    let (by_tag_c, by_digest_c) = (unique("tag"), unique("digest"));
    work.declare(&format!(
        "{}{}{}{}",
        image_manifest("bytag", &v1, ""),
        image_manifest("bydigest", &by_digest, ""),
        container_manifest(&by_tag_c, "bytag", ""),
        container_manifest(&by_digest_c, "bydigest", "")
    ));
    let out = work.apply_ok(&[]);
    assert!(out.contains("pull"), "{out}");
    let _cleanup = RemoveImages(vec![v1.clone(), by_digest.clone()]);
    assert_eq!(container_image(&by_tag_c), built, "same content, same ID");
    assert_eq!(container_image(&by_digest_c), built);
    assert_eq!(exec(&by_digest_c, &["cat", "/app/index.html"]), "v1");

    // Pulled for resources that leave: --prune removes what was pulled once no container
    // uses it; the digest reference of a still-declared resource keeps nothing else alive.
    std::fs::remove_file(work.manifests().join("all.yaml")).unwrap();
    let out = work.apply_ok(&["--prune"]);
    assert!(out.contains("remove-image"), "{out}");
    assert!(!exists(&built), "{out}");
}

/// A Docker config file holding `user:password` for `registry`.
fn docker_config(path: &Path, registry: &str, user: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    write(
        path,
        &format!("{{\"auths\": {{\"{registry}\": {{\"auth\": \"{auth}\"}}}}}}"),
    );
}

#[tokio::test]
async fn registry_credentials_work_and_wrong_ones_fail_without_being_printed() {
    let Some(auth) =
        locked_registry("registry_credentials_work_and_wrong_ones_fail_without_being_printed")
    else {
        return;
    };
    ensure_test_image().await;
    let work = Work::new("img-auth");
    web_context(&work);
    let reference = format!("{}/dwtest/{}:1", auth.addr, unique("locked"));
    let right = work.path("secrets/right.json");
    std::fs::create_dir_all(right.parent().unwrap()).unwrap();
    std::fs::copy(&auth.config_file, &right).unwrap();
    let wrong_password = format!("wrong-{}", unique("pw"));
    let wrong = work.path("secrets/wrong.json");
    docker_config(&wrong, &auth.addr, &auth.username, &wrong_password);

    // Build and push with the image's own secret file.
    work.declare(&image_manifest(
        "locked",
        &reference,
        "  build: {context: ../web}\n  push: true\n  registryAuth: {secretFile: ../secrets/right.json}\n",
    ));
    let out = work.apply_ok(&[]);
    assert!(out.contains("push"), "{out}");
    let built = image_id(&reference);
    docker_ok(&["rmi", "-f", &built]);

    // Pull with the Docker config given on the command line.
    let name = unique("locked");
    work.declare(&format!(
        "{}{}",
        image_manifest("locked", &reference, ""),
        container_manifest(&name, "locked", "")
    ));
    let out = work.apply(&["--docker-config", right.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let _cleanup = RemoveImages(vec![reference.clone()]);
    assert_eq!(container_image(&name), built);
    assert!(!text(&out).contains(&auth.password));
    docker_ok(&["rm", "-f", &name]);
    docker_ok(&["rmi", "-f", &built]);

    // Wrong credentials (from the config, and from a secret file), then none: a clear
    // "unauthorized", never a password.
    for (how, extra, manifest_auth) in [
        (
            "wrong --docker-config",
            vec!["--docker-config", wrong.to_str().unwrap()],
            "",
        ),
        (
            "wrong secretFile",
            vec!["-v"],
            "  registryAuth: {secretFile: ../secrets/wrong.json}\n",
        ),
        ("no credentials", vec!["-vv"], ""),
    ] {
        work.declare(&format!(
            "{}{}",
            image_manifest("locked", &reference, manifest_auth),
            container_manifest(&name, "locked", "")
        ));
        let out = work.apply(&extra);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{how}: {all}");
        assert!(
            all.to_lowercase().contains("unauthorized")
                || all.contains("no basic auth credentials"),
            "{how}: {all}"
        );
        assert!(all.contains("check the credentials"), "{how}: {all}");
        assert!(
            !all.contains(&wrong_password),
            "{how}: the wrong password was printed: {all}"
        );
        assert!(
            !all.contains(&auth.password),
            "{how}: the password was printed: {all}"
        );
        let get = work.run(&["get", "-o", "json"], None);
        assert!(!text(&get).contains(&wrong_password) && !text(&get).contains(&auth.password));
    }
}

/// Pushes `image` as `reference` with the docker CLI.
fn push_as(image: &str, reference: &str) {
    docker_ok(&["tag", image, reference]);
    docker_ok(&["push", reference]);
}

#[tokio::test]
async fn a_moved_tag_is_followed_with_update_interval_after_min_age() {
    let Some(reg) = open_registry("a_moved_tag_is_followed_with_update_interval_after_min_age")
    else {
        return;
    };
    ensure_test_image().await;
    let work = Work::new("img-moving");
    let reference = format!("{reg}/dwtest/{}:stable", unique("moving"));
    let _cleanup = RemoveImages(vec![reference.clone()]);
    let v1 = image_id(TEST_IMAGE);
    push_as(TEST_IMAGE, &reference);
    // v2: different content, built beside (the docker CLI, not dockwright).
    let v2_tag = format!("dwtest/{}:v2", unique("moving"));
    let _cleanup_v2 = RemoveImages(vec![v2_tag.clone()]);
    write(
        &work.path("v2/Dockerfile"),
        &own_layers(
            "FROM dockwright-test/busybox:latest\nRUN echo two > /version\n",
            work.owner.name(),
        ),
    );
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &v2_tag,
        work.path("v2").to_str().unwrap(),
    ]);
    let v2 = image_id(&v2_tag);

    let name = unique("moving");
    let declare = |spec: &str| {
        work.declare(&format!(
            "{}{}",
            image_manifest("app", &reference, spec),
            container_manifest(&name, "app", "")
        ))
    };
    declare("  updateInterval: 1m\n");
    work.apply_ok(&[]);
    assert_eq!(container_image(&name), v1);
    assert!(
        work.apply_ok(&[]).contains("no changes"),
        "the digest is unchanged"
    );

    // The tag moves in the registry; the local tag still names v1.
    push_as(&v2_tag, &reference);
    docker_ok(&["tag", TEST_IMAGE, &reference]);
    // minAge holds the new digest back (the first-seen time survives between applies).
    declare("  updateInterval: 1m\n  minAge: 1h\n");
    assert!(work.apply_ok(&[]).contains("no changes"));
    assert!(work.apply_ok(&[]).contains("no changes"));
    assert_eq!(container_image(&name), v1);
    // Without minAge: pulled, and the container rolls onto v2.
    declare("  updateInterval: 1m\n");
    let out = work.apply_ok(&[]);
    assert!(out.contains("pull"), "{out}");
    assert_eq!(image_id(&reference), v2);
    assert_eq!(container_image(&name), v2, "{out}");
    assert_eq!(exec(&name, &["cat", "/version"]), "two");
    let proxy = CountingProxy::start();
    let m = work.manifests();
    let out = work.run(
        &["apply", "-f", m.to_str().unwrap()],
        Some(&proxy.docker_host()),
    );
    assert!(text(&out).contains("no changes"), "{}", text(&out));
    assert_eq!(proxy.count("POST", "/images/create"), 0);
}

#[tokio::test]
async fn prune_removes_unused_images_of_gone_resources_and_keeps_those_in_use() {
    ensure_test_image().await;
    let work = Work::new("img-prune");
    web_context(&work);
    let used_ref = format!("dwtest/{}:1", unique("used"));
    let unused_ref = format!("dwtest/{}:1", unique("unused"));
    let managed = unique("managed");
    work.declare(&format!(
        "{}{}{}",
        image_manifest("used", &used_ref, "  build: {context: ../web}\n"),
        image_manifest(
            "unused",
            &unused_ref,
            "  build: {context: ../web, target: base}\n"
        ),
        container_manifest(&managed, "unused", "")
    ));
    work.apply_ok(&[]);
    let (used_id, unused_id) = (image_id(&used_ref), image_id(&unused_ref));
    // Someone else runs a container from one of our images.
    let foreign = unique("foreign");
    let _foreign = RemoveContainer(foreign.clone());
    docker_ok(&["create", "--name", &foreign, &used_ref, "sleep", "1"]);

    std::fs::remove_file(work.manifests().join("all.yaml")).unwrap();
    // Without --prune nothing goes.
    assert!(work.apply_ok(&[]).contains("no changes"));
    assert!(exists(&used_id) && exists(&unused_id) && exists(&managed));
    let out = work.apply_ok(&["--prune"]);
    assert!(!exists(&managed), "{out}");
    assert!(
        !exists(&unused_id),
        "removed after its last container: {out}"
    );
    assert!(exists(&used_id), "in use by an unmanaged container: {out}");
    assert!(exists(&foreign));
    assert!(exists(TEST_IMAGE));
}

#[tokio::test]
async fn prune_removes_the_old_pull_of_a_resource_that_moved_to_another_tag() {
    let Some(reg) =
        open_registry("prune_removes_the_old_pull_of_a_resource_that_moved_to_another_tag")
    else {
        return;
    };
    ensure_test_image().await;
    let work = Work::new("img-moved");
    let repo = format!("{reg}/dwtest/{}", unique("moved"));
    let (v1, v2) = (format!("{repo}:1"), format!("{repo}:2"));
    let _cleanup = RemoveImages(vec![v1.clone(), v2.clone()]);
    // Two images of their own in the registry (containers of other tests run the test
    // image's ID, which keeps any image of that ID), neither left locally.
    let dockerfile = work.manifests().join("Dockerfile");
    for (version, reference) in [(1, &v1), (2, &v2)] {
        write(
            &dockerfile,
            &format!("FROM {TEST_IMAGE}\nLABEL version={version}-{repo}\n"),
        );
        let (file, context) = (
            dockerfile.display().to_string(),
            work.manifests().display().to_string(),
        );
        docker_ok(&["build", "-q", "-t", reference, "-f", &file, &context]);
        docker_ok(&["push", reference]);
    }
    std::fs::remove_file(&dockerfile).unwrap();
    docker_ok(&["rmi", &v1, &v2]);

    let app = unique("moved-app");
    let declare = |reference: &str| {
        work.declare(&format!(
            "{}{}",
            image_manifest("db", reference, ""),
            container_manifest(&app, "db", "")
        ))
    };
    declare(&v1);
    work.apply_ok(&[]);
    let old = image_id(&v1);
    assert_eq!(container_image(&app), old);

    // The resource stays, under another tag: without --prune the old pull stays too.
    declare(&v2);
    let out = work.apply_ok(&[]);
    assert_eq!(container_image(&app), image_id(&v2), "{out}");
    assert!(exists(&old), "{out}");
    let out = work.apply_ok(&["--prune"]);
    assert!(out.contains("remove-image"), "{out}");
    assert!(!exists(&old), "{out}");
    assert!(exists(&v2) && exists(TEST_IMAGE));
}
