//! End-to-end tests of the `dockwright` binary against the real Docker daemon: apply, diff,
//! delete, get, logs, exit codes, no-op cost, ownership and bad input.

mod common;

use std::path::Path;
use std::process::Output;

use common::{dockwright, ensure_test_image, unique, CountingProxy, TestOwner, TEST_IMAGE};
use serde_json::Value;

/// The docker CLI, for independent checks of what dockwright did.
fn docker_cli(args: &[&str]) -> Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap()
}

/// Force-removes a container the test created itself (not owned by dockwright) on drop.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = docker_cli(&["rm", "-f", &self.0]);
    }
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

fn run(owner: &TestOwner, args: &[&str], docker_host: Option<&str>) -> Output {
    let mut cmd = dockwright();
    cmd.args(args).arg("--owner").arg(owner.name());
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn apply(owner: &TestOwner, dir: &Path, extra: &[&str]) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["apply", "-f", dir];
    args.extend_from_slice(extra);
    run(owner, &args, None)
}

fn get(owner: &TestOwner) -> Vec<Value> {
    let out = run(owner, &["get", "-o", "json"], None);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

fn inspect(name: &str) -> Value {
    let out = docker_cli(&["inspect", name]);
    assert!(out.status.success(), "inspect {name}: {}", text(&out));
    let mut all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.remove(0)
}

fn container_id(name: &str) -> Option<String> {
    let out = docker_cli(&["inspect", "-f", "{{.Id}}", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn container_manifest(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, \"3600\"]\n{extra}"
    )
}

#[tokio::test]
async fn apply_creates_every_field_then_noop_costs_four_reads() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-fields");
    let dir = tempfile::tempdir().unwrap();
    let web = unique("web");
    let vol = unique("vol");
    let net = unique("net");
    let port = 20000 + (std::process::id() % 20000);
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    write(&dir.path().join("conf"), "app.conf", "greeting=hello\n");
    write(
        dir.path(),
        "web.yaml",
        &format!(
            "apiVersion: dockwright.dev/v1alpha1
kind: Container
metadata:
  name: {web}
spec:
  image: {TEST_IMAGE}
  imagePullPolicy: Never
  entrypoint: [sh, -c]
  command: ['httpd -f -p 8080 -h /www']
  env: [{{name: MODE, value: prod}}, {{name: EMPTY}}]
  workingDir: /www
  user: '0'
  labels: {{team: platform}}
  ports: [{{containerPort: 8080, hostPort: {port}, hostIP: 127.0.0.1}}, {{containerPort: 9000, protocol: UDP}}]
  volumes:
    - {{type: Volume, source: {vol}, target: /data}}
    - {{type: Bind, source: ./conf, target: /conf, readOnly: true}}
    - {{type: Tmpfs, target: /scratch, sizeLimit: 16Mi}}
  network: {net}
  restartPolicy: OnFailure
  maxRestarts: 3
  healthcheck: {{shell: 'test -f /www/index.html', intervalSeconds: 1, retries: 2}}
  resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}
  files:
    - {{path: /www/index.html, content: '<h1>hi</h1>'}}
    - {{path: /etc/app/app.conf, source: conf/app.conf, mode: '0600'}}
"
        ),
    );
    // The bind mount of ./conf needs the operator's policy to allow its directory; the
    // policy file lives outside the manifest directory (every *.yaml there is a manifest).
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = policy_dir.path().join("policy.yaml");
    let conf_dir = dir.path().join("conf").canonicalize().unwrap();
    write(
        policy_dir.path(),
        "policy.yaml",
        &format!("allowedBindPrefixes: [{}]\n", conf_dir.display()),
    );
    let policy = policy.to_str().unwrap();
    let out = apply(&owner, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("allowedBindPrefixes") && text(&out).contains("spec.volumes[1].source"),
        "{}",
        text(&out)
    );
    assert!(
        container_id(&web).is_none(),
        "a refused resource is never created"
    );
    let out = apply(&owner, dir.path(), &["--policy", policy]);
    assert!(out.status.success(), "{}", text(&out));
    let c = inspect(&web);
    let cfg = &c["Config"];
    let host = &c["HostConfig"];
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["sh", "-c"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["httpd -f -p 8080 -h /www"]));
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"MODE=prod") && env.contains(&"EMPTY="),
        "{env:?}"
    );
    assert_eq!(cfg["WorkingDir"], "/www");
    assert_eq!(cfg["User"], "0");
    assert_eq!(cfg["Labels"]["team"], "platform");
    assert_eq!(cfg["Labels"]["dockwright.dev/owner"], owner.name());
    assert_eq!(
        cfg["Labels"]["dockwright.dev/resource"],
        format!("Container/default/{web}")
    );
    assert!(cfg["Labels"]["dockwright.dev/spec-hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(host["PortBindings"]["8080/tcp"][0]["HostIp"], "127.0.0.1");
    assert!(cfg["ExposedPorts"].get("9000/udp").is_some());
    assert_eq!(host["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(host["RestartPolicy"]["MaximumRetryCount"], 3);
    assert_eq!(host["Memory"], 64 * 1024 * 1024);
    assert_eq!(host["NanoCpus"], 500_000_000);
    assert_eq!(
        cfg["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /www/index.html"])
    );
    assert_eq!(cfg["Healthcheck"]["Interval"], 1_000_000_000i64);
    let mounts = c["Mounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["Type"] == "volume"
        && m["Name"] == vol.as_str()
        && m["Destination"] == "/data"));
    assert!(mounts
        .iter()
        .any(|m| m["Type"] == "bind" && m["Destination"] == "/conf" && m["RW"] == false));
    assert!(
        host["Tmpfs"].get("/scratch").is_some()
            || host["Mounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["Type"] == "tmpfs"))
    );
    assert!(c["NetworkSettings"]["Networks"].get(&net).is_some());
    let conf = docker_cli(&["exec", &web, "cat", "/etc/app/app.conf"]);
    assert_eq!(String::from_utf8_lossy(&conf.stdout), "greeting=hello\n");
    let mode = docker_cli(&["exec", &web, "stat", "-c", "%a", "/etc/app/app.conf"]);
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "600");
    // Volume and network were created with our owner label.
    let vol_labels = docker_cli(&["volume", "inspect", "-f", "{{json .Labels}}", &vol]);
    assert!(String::from_utf8_lossy(&vol_labels.stdout).contains(owner.name()));

    // A second apply with nothing changed: no writes, four list calls (containers, images,
    // networks, volumes; the users of networks and volumes are listed only when one of them
    // belongs to a `Network`/`Volume` resource).
    let proxy = CountingProxy::start();
    let out = run(
        &owner,
        &[
            "apply",
            "-f",
            dir.path().to_str().unwrap(),
            "--policy",
            policy,
        ],
        Some(&proxy.docker_host()),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no changes"), "{}", text(&out));
    assert_eq!(proxy.writes(), Vec::<(String, String)>::new());
    let lists: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|(_, p)| p != "/version" && p != "/_ping")
        .collect();
    assert_eq!(lists.len(), 4, "{lists:?}");

    // diff says nothing to do: exit 0.
    let diff_args = [
        "diff",
        "-f",
        dir.path().to_str().unwrap(),
        "--policy",
        policy,
    ];
    let out = run(&owner, &diff_args, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Editing the file that `files:` copies recreates the container, and diff names the field.
    let before = container_id(&web).unwrap();
    write(&dir.path().join("conf"), "app.conf", "greeting=bye\n");
    let out = run(&owner, &diff_args, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("files"), "{}", text(&out));
    let out = apply(&owner, dir.path(), &["--policy", policy]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(container_id(&web).unwrap(), before);
    let conf = docker_cli(&["exec", &web, "cat", "/etc/app/app.conf"]);
    assert_eq!(String::from_utf8_lossy(&conf.stdout), "greeting=bye\n");
}

#[tokio::test]
async fn env_change_recreates_and_diff_names_old_and_new() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-env");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("env");
    write(
        dir.path(),
        "c.yaml",
        &container_manifest(&name, "  env: [{name: MODE, value: dev}]\n"),
    );
    assert!(apply(&owner, dir.path(), &[]).status.success());
    let first = container_id(&name).unwrap();
    write(
        dir.path(),
        "c.yaml",
        &container_manifest(&name, "  env: [{name: MODE, value: prod}]\n"),
    );
    let out = run(&owner, &["diff", "-f", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let diff = text(&out);
    assert!(
        diff.contains("MODE=dev") && diff.contains("MODE=prod"),
        "{diff}"
    );
    let out = apply(&owner, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(container_id(&name).unwrap(), first);
    let env = inspect(&name)["Config"]["Env"].to_string();
    assert!(env.contains("MODE=prod"), "{env}");
}

#[tokio::test]
async fn replicas_and_state_changes_never_recreate_the_rest() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-replicas");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("rep");
    write(
        dir.path(),
        "c.yaml",
        &container_manifest(&name, "  replicas: 2\n"),
    );
    assert!(apply(&owner, dir.path(), &[]).status.success());
    let r0 = container_id(&format!("{name}-0")).unwrap();
    let r1 = container_id(&format!("{name}-1")).unwrap();
    write(
        dir.path(),
        "c.yaml",
        &container_manifest(&name, "  replicas: 3\n"),
    );
    assert!(apply(&owner, dir.path(), &[]).status.success());
    assert_eq!(container_id(&format!("{name}-0")).unwrap(), r0);
    assert_eq!(container_id(&format!("{name}-1")).unwrap(), r1);
    assert!(container_id(&format!("{name}-2")).is_some());
    // Down to one: the survivor is renamed to the plain name, not recreated.
    write(
        dir.path(),
        "c.yaml",
        &container_manifest(&name, "  replicas: 1\n"),
    );
    let out = apply(&owner, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(container_id(&name).unwrap(), r0);
    assert!(container_id(&format!("{name}-1")).is_none());
    assert!(container_id(&format!("{name}-2")).is_none());
    // Stopped and back: same container.
    write(
        dir.path(),
        "c.yaml",
        &container_manifest(&name, "  state: Stopped\n"),
    );
    assert!(apply(&owner, dir.path(), &[]).status.success());
    assert_eq!(inspect(&name)["State"]["Running"], false);
    assert_eq!(container_id(&name).unwrap(), r0);
    write(dir.path(), "c.yaml", &container_manifest(&name, ""));
    assert!(apply(&owner, dir.path(), &[]).status.success());
    assert_eq!(inspect(&name)["State"]["Running"], true);
    assert_eq!(container_id(&name).unwrap(), r0);
}

#[tokio::test]
async fn created_but_never_started_converges_without_duplicates() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-crash");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("crash");
    // `state: Stopped` leaves exactly what a crash between create and start leaves: a created
    // container with the final labels (state is not part of the spec hash).
    write(
        dir.path(),
        "c.yaml",
        &container_manifest(&name, "  state: Stopped\n"),
    );
    assert!(apply(&owner, dir.path(), &[]).status.success());
    assert_eq!(inspect(&name)["State"]["Status"], "created");
    let id = container_id(&name).unwrap();
    write(dir.path(), "c.yaml", &container_manifest(&name, ""));
    let out = apply(&owner, dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(container_id(&name).unwrap(), id);
    assert_eq!(get(&owner).len(), 1);
}

#[tokio::test]
async fn one_shot_runs_once_and_records_exit_code() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-oneshot");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("job");
    write(
        dir.path(),
        "job.yaml",
        &format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  restartPolicy: Never\n  command: [sh, -c, 'echo ran; exit 7']\n"
        ),
    );
    assert!(apply(&owner, dir.path(), &[]).status.success());
    let _ = docker_cli(&["wait", &name]);
    let rows = get(&owner);
    assert_eq!(rows[0]["exitCode"], 7, "{rows:?}");
    let started = inspect(&name)["State"]["StartedAt"].clone();
    let out = apply(&owner, dir.path(), &[]);
    assert!(text(&out).contains("no changes"), "{}", text(&out));
    assert_eq!(inspect(&name)["State"]["StartedAt"], started);
    let logs = run(&owner, &["logs", &name], None);
    assert_eq!(String::from_utf8_lossy(&logs.stdout).trim(), "ran");
}

#[tokio::test]
async fn unmanaged_container_with_the_same_name_is_never_touched() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-unmanaged");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("clash");
    let other = unique("ok");
    let out = docker_cli(&["create", "--name", &name, TEST_IMAGE, "sleep", "3600"]);
    assert!(out.status.success(), "{}", text(&out));
    let foreign = container_id(&name).unwrap();
    let _cleanup = RemoveOnDrop(name.clone());
    write(dir.path(), "a.yaml", &container_manifest(&name, ""));
    write(dir.path(), "b.yaml", &container_manifest(&other, ""));
    let out = apply(&owner, dir.path(), &["--prune"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains(&name) && msg.contains("does not manage"),
        "{msg}"
    );
    // The foreign container is exactly as it was; the other resource still converged.
    assert_eq!(container_id(&name).unwrap(), foreign);
    assert_eq!(inspect(&name)["State"]["Status"], "created");
    assert_eq!(inspect(&other)["State"]["Running"], true);
    // delete and get never see it either.
    assert!(run(
        &owner,
        &["delete", "-f", dir.path().to_str().unwrap()],
        None
    )
    .status
    .success());
    assert_eq!(container_id(&name).unwrap(), foreign);
    assert!(get(&owner).is_empty());
}

#[tokio::test]
async fn prune_only_when_asked_and_never_after_bad_input() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-prune");
    let dir = tempfile::tempdir().unwrap();
    let a = unique("a");
    let b = unique("b");
    write(dir.path(), "a.yaml", &container_manifest(&a, ""));
    write(dir.path(), "b.yaml", &container_manifest(&b, ""));
    assert!(apply(&owner, dir.path(), &[]).status.success());
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    // Without --prune the undeclared container stays.
    assert!(apply(&owner, dir.path(), &[]).status.success());
    assert!(container_id(&b).is_some());
    // A broken manifest: exit 2, error names the file, nothing removed.
    write(
        dir.path(),
        "a.yaml",
        &container_manifest(&a, "  replicas: many\n"),
    );
    let out = apply(&owner, dir.path(), &["--prune"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("a.yaml") && msg.contains("spec.replicas"),
        "{msg}"
    );
    assert!(container_id(&a).is_some() && container_id(&b).is_some());
    let out = run(&owner, &["diff", "-f", dir.path().to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    // Fixed: --prune removes b only.
    write(dir.path(), "a.yaml", &container_manifest(&a, ""));
    let out = apply(&owner, dir.path(), &["--prune"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(container_id(&a).is_some());
    assert!(container_id(&b).is_none());
}

#[tokio::test]
async fn a_failed_pull_is_reported_once() {
    let owner = TestOwner::new("cli-pull");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("pull");
    // A port nothing listens on: the daemon's pull is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let reference = format!("127.0.0.1:{port}/dwtest/nowhere:v1");
    write(
        dir.path(),
        "a.yaml",
        &format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {reference}\n"
        ),
    );
    let out = apply(&owner, dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = format!(
        "error: Container/default/{name}: pull {reference}: Get \"http://127.0.0.1:{port}/v2/\": \
         dial tcp 127.0.0.1:{port}: connect: connection refused"
    );
    assert!(
        stderr.lines().any(|l| l == line),
        "want {line:?} in:\n{stderr}"
    );
    assert!(container_id(&name).is_none());
}

#[tokio::test]
async fn bad_input_names_file_resource_and_field() {
    let owner = TestOwner::new("cli-bad");
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        ("kind: Container\napiVersion: dockwright.dev/v1alpha1\nmetadata: {name: x}\nspec: {image: 'Not Valid'}\n", "ref.yaml", &["ref.yaml", "x", "spec.image"]),
        ("apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {name: y}\nspec: {image: busybox, colour: red}\n", "unknown.yaml", &["unknown.yaml", "y", "colour"]),
        ("apiVersion: dockwright.dev/v1alpha1\nkind: Potato\nmetadata: {name: z}\n", "kind.yaml", &["kind.yaml", "Potato"]),
        ("apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {name: w}\nspec: {image: busybox, volumes: [{type: Bind, source: ./nope, target: /x}]}\n", "vol.yaml", &["vol.yaml", "w", "volumes"]),
        ("key: [unclosed\n", "syntax.yaml", &["syntax.yaml"]),
    ];
    for (yaml, file, needles) in cases {
        let case_dir = dir.path().join(file.trim_end_matches(".yaml"));
        std::fs::create_dir(&case_dir).unwrap();
        write(&case_dir, file, yaml);
        let out = run(&owner, &["apply", "-f", case_dir.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2), "{file}: {}", text(&out));
        let msg = text(&out);
        assert!(!msg.contains("panicked"), "{msg}");
        for needle in *needles {
            assert!(msg.contains(needle), "{file}: expected {needle:?} in {msg}");
        }
    }
    // Host-port clash and duplicate names across files.
    let clash = dir.path().join("clash");
    std::fs::create_dir(&clash).unwrap();
    let port = "  ports: [{containerPort: 80, hostPort: 18080}]\n";
    write(&clash, "one.yaml", &container_manifest("one", port));
    write(
        &clash,
        "two.yaml",
        &format!(
            "{}---\n{}",
            container_manifest("two", port),
            container_manifest("one", "")
        ),
    );
    let out = run(&owner, &["apply", "-f", clash.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let msg = text(&out);
    assert!(msg.contains("18080") && msg.contains("two.yaml"), "{msg}");
    assert!(
        msg.contains("one") && msg.to_lowercase().contains("duplicate"),
        "{msg}"
    );
}

#[tokio::test]
async fn logs_of_replicas_are_prefixed() {
    ensure_test_image().await;
    let owner = TestOwner::new("cli-logs");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("logs");
    write(
        dir.path(),
        "c.yaml",
        &format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  replicas: 2\n  command: [sh, -c, 'echo hello from $HOSTNAME; sleep 3600']\n"
        ),
    );
    assert!(apply(&owner, dir.path(), &[]).status.success());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let out = run(&owner, &["logs", &name, "--tail", "5"], None);
    assert!(out.status.success(), "{}", text(&out));
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains(&format!("[{name}-0] hello from")), "{logs}");
    assert!(logs.contains(&format!("[{name}-1] hello from")), "{logs}");
}
