//! Every directory under `examples/` applied and torn down against the real daemon, checking
//! that it does what its README says: pages fetched over HTTP from the published ports, the
//! one-shot's exit code and output, the dependent started only after its dependency turned
//! healthy, the pushed tags in the registry and a run from the registry, a rolling update that
//! never stops serving, and the layer cache reused by the reordered Dockerfile.
//!
//! The examples use fixed container names and host ports (that is what a newcomer types), so
//! each example has exactly one test here and they can run in parallel; a run of
//! `scripts/run-examples.sh` under the default owner on the same daemon makes these fail with
//! "name taken" (`dockwright delete -f examples/` first). Everything is created under a
//! [`TestOwner`], so a failing test still leaves nothing behind. The registry example needs
//! `scripts/start-registries.sh` (`scripts/test.sh` runs it).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{dockwright, ensure_test_image_blocking, registry, require_registry, TestOwner};
use serde_json::Value;

/// Every example and the test that covers it: a new example directory fails
/// [`every_example_has_a_readme_and_a_test`] until it is added here.
const EXAMPLES: &[&str] = &[
    "hello",
    "static-site",
    "layer-caching",
    "one-shot",
    "two-tier",
    "networks",
    "registry",
    "rolling-update",
    "secrets",
    "gitops",
    "compose-app",
];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn example(name: &str) -> PathBuf {
    examples_dir().join(name)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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

/// One example run under its own owner, with a state directory of its own.
struct Run {
    owner: TestOwner,
    state: tempfile::TempDir,
}

impl Run {
    fn new(name: &str) -> Self {
        ensure_test_image_blocking();
        Self {
            owner: TestOwner::new(&format!("ex-{name}")),
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn dockwright(&self, args: &[&str]) -> Output {
        dockwright()
            .args(args)
            .args(["--owner", self.owner.name()])
            .env("XDG_STATE_HOME", self.state.path())
            .output()
            .unwrap()
    }

    /// `dockwright apply -f PATH --source example`, which must succeed; returns its stdout.
    /// One named source, so an edited copy of an example in a temporary directory updates
    /// what the example created instead of clashing with it.
    fn apply(&self, path: &Path) -> String {
        let out = self.dockwright(&["apply", "-f", path.to_str().unwrap(), "--source", "example"]);
        assert!(
            out.status.success(),
            "apply -f {}: {}",
            path.display(),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `dockwright delete -f PATH`, then nothing of this owner may be left running.
    fn delete(&self, path: &Path) {
        let out = self.dockwright(&["delete", "-f", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "delete -f {}: {}",
            path.display(),
            text(&out)
        );
        assert_eq!(
            self.get(),
            Vec::<Value>::new(),
            "delete leaves no container"
        );
    }

    /// `dockwright get -o json`.
    fn get(&self) -> Vec<Value> {
        let out = self.dockwright(&["get", "-o", "json"]);
        assert!(out.status.success(), "get: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The `get` row of one container.
    fn row(&self, name: &str) -> Value {
        self.get()
            .into_iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no managed container {name}"))
    }

    /// `dockwright logs NAME`.
    fn logs(&self, name: &str) -> String {
        let out = self.dockwright(&["logs", name]);
        assert!(out.status.success(), "logs {name}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls `get` until `name` satisfies `done`, for up to `timeout`.
    fn wait_for(&self, name: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let row = self.row(name);
            if done(&row) {
                return row;
            }
            assert!(Instant::now() < deadline, "{name} did not get there: {row}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A plain HTTP/1.0 GET on `addr`: status code and body.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw);
    // The head ends at the first empty line; a CGI script's own header lines (passed through
    // by busybox httpd) may end in a bare `\n`.
    let end = [("\r\n\r\n", 4), ("\n\n", 2)]
        .iter()
        .filter_map(|(sep, len)| raw.find(sep).map(|i| (i, i + len)))
        .min();
    let (head, body) = match end {
        Some((head_end, body_start)) => (&raw[..head_end], &raw[body_start..]),
        None => (&raw[..], ""),
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// GETs `path` until it answers 200 (a server may need a moment to listen), for up to 30 s.
fn fetch(addr: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = http_get(addr, path);
        if let Ok((200, body)) = &last {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "GET http://{addr}{path}: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Copies an example into a temporary directory, to edit it without touching the repository.
fn copy_example(name: &str) -> tempfile::TempDir {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example(name), dir.path());
    dir
}

/// `2026-11-24T18:47:59.12345Z` as (seconds part, nanoseconds), comparable; UTC only, as
/// Docker reports `State.StartedAt` (and as the template below formats health-log times).
fn utc_instant(s: &str) -> (String, u32) {
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("not a UTC time: {s:?}"));
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let nanos = format!("{frac:0<9}")[..9].parse().unwrap();
    (secs.to_string(), nanos)
}

#[test]
fn every_example_has_a_readme_and_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut known: Vec<String> = EXAMPLES.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(
        found, known,
        "examples/ and the tests here must list the same examples"
    );
    for name in EXAMPLES {
        let readme = read(&example(name).join("README.md"));
        assert!(readme.starts_with("# "), "{name}/README.md has a title");
        assert!(
            readme.contains(&format!("examples/{name}")),
            "{name}/README.md shows how to apply it"
        );
    }
}

/// `scripts/run-examples.sh` applies the whole directory at once: every example must load
/// and plan together (no clashing names, ports or references).
#[test]
fn all_examples_plan_together() {
    let run = Run::new("all");
    let out = run.dockwright(&["apply", "--dry-run", "-f", examples_dir().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    for container in [
        "hello-web",
        "hello-once",
        "example-static-site",
        "example-layer-caching",
        "example-one-shot",
        "example-two-tier-api",
        "example-two-tier-web",
        "example-net-kv",
        "example-net-web",
        "example-greeter",
        "example-rolling-0",
        "example-rolling-2",
        "example-rolling-front",
        "secrets-demo",
        "compose-web",
        "compose-kv",
        "compose-worker-1",
    ] {
        assert!(
            plan.contains(&format!("create {container} ")),
            "{container} in\n{plan}"
        );
    }
    assert_eq!(run.get(), Vec::<Value>::new(), "a dry run creates nothing");
}

#[test]
fn networks_example_reaches_the_store_over_the_internal_network() {
    let run = Run::new("networks");
    let dir = example("networks");
    let out = run.apply(&dir);
    let mut page = String::new();
    for _ in 0..50 {
        page = fetch("127.0.0.1:18090", "/cgi-bin/value");
        if page.contains("1 time(s)") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(page, "the store has started 1 time(s)\n", "{out}");
    assert_eq!(
        docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Internal}}",
            "example-net-back"
        ]),
        "true"
    );
    assert_eq!(
        docker_ok(&[
            "inspect",
            "-f",
            "{{(index .NetworkSettings.Networks \"example-net-back\").IPAddress}}",
            "example-net-kv"
        ]),
        "10.231.77.10"
    );
    let again = run.dockwright(&["diff", "-f", dir.to_str().unwrap(), "--source", "example"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    run.delete(&dir);
}

/// The Compose project and its converted manifests side by side: the manifests are still what
/// `convert -o manifests` writes, `apply -f` of the directory skips the Compose file, builds
/// the web image, and the app works across its two networks with its secret and volume.
#[test]
fn compose_app_converts_and_runs() {
    forget_example_images(&["dockwright-examples/compose-app-web:1"]);
    let run = Run::new("compose-app");
    let dir = example("compose-app");

    // Converting again (in a copy) writes exactly the committed manifests.
    let copy = copy_example("compose-app");
    let fresh = copy.path().join("manifests");
    std::fs::remove_dir_all(&fresh).unwrap();
    let out = dockwright()
        .arg("convert")
        .arg(copy.path().join("docker-compose.yml"))
        .arg("-o")
        .arg(&fresh)
        .env_remove("COMPOSE_PROFILES")
        .env_remove("COMPOSE_PROJECT_NAME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let listing = |d: &Path| {
        let mut files: Vec<(String, String)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    read(&p),
                )
            })
            .collect();
        files.sort();
        files
    };
    assert_eq!(
        listing(&fresh),
        listing(&dir.join("manifests")),
        "manifests/ is what `dockwright convert docker-compose.yml -o manifests` writes"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "one warning (the volume's name): {stderr}"
    );

    let first = run.apply(&dir);
    assert!(first.contains("build "), "the web image is built: {first}");
    let mut page = String::new();
    for _ in 0..100 {
        page = fetch("127.0.0.1:18091", "/cgi-bin/value");
        if page.contains("1 time(s)") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        page, "the store has started 1 time(s)\nthe API token has 21 characters\n",
        "{first}"
    );
    assert_eq!(
        docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Internal}}",
            "compose-app-back"
        ]),
        "true"
    );
    assert_eq!(
        docker_ok(&[
            "exec",
            "compose-web",
            "stat",
            "-c",
            "%a",
            "/run/secrets/api_token"
        ]),
        "400"
    );
    for worker in ["compose-worker-0", "compose-worker-1"] {
        run.wait_for(worker, Duration::from_secs(30), |r| r["state"] == "running");
    }
    assert!(
        run.get().iter().all(|r| r["name"] != "compose-debug"),
        "the debug profile is off"
    );
    let again = run.dockwright(&["diff", "-f", dir.to_str().unwrap(), "--source", "example"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    run.delete(&dir);
    forget_example_images(&["dockwright-examples/compose-app-web:1"]);
}

#[test]
fn hello_serves_its_page_and_runs_its_one_shot() {
    let run = Run::new("hello");
    let dir = example("hello");
    run.apply(&dir);
    let page = fetch("127.0.0.1:8088", "/");
    assert_eq!(page, read(&dir.join("site/index.html")));
    run.wait_for("hello-once", Duration::from_secs(30), |r| {
        r["state"] == "exited"
    });
    assert_eq!(run.row("hello-once")["exitCode"], 0);
    let logs = run.logs("hello-once");
    assert!(logs.contains("hello from a one-shot container"), "{logs}");
    assert!(logs.contains("dockwright copied this file in"), "{logs}");
    run.delete(&dir);
}

/// Removes the images an example builds, so its test sees the build (and push) happen even
/// after `scripts/run-examples.sh` built them on this machine (their names are the example's,
/// not the test's). The examples must not be running while their tests run: the container
/// names and host ports are the example's too.
fn forget_example_images(references: &[&str]) {
    for reference in references {
        let _ = docker_cli(&["rmi", "-f", reference]);
    }
}

#[test]
fn static_site_is_built_and_published() {
    forget_example_images(&["dockwright-examples/static-site:1"]);
    let run = Run::new("static-site");
    let dir = example("static-site");
    let first = run.apply(&dir);
    assert!(first.contains("build "), "the image is built: {first}");
    assert_eq!(
        fetch("127.0.0.1:18081", "/"),
        read(&dir.join("site/index.html"))
    );
    let files = fetch("127.0.0.1:18081", "/files.txt");
    assert!(
        files.lines().any(|l| l == "./index.html"),
        "RUN listed the files: {files}"
    );
    let row = run.row("example-static-site");
    assert_eq!(row["image"], "dockwright-examples/static-site:1");
    let inspect = docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config}}",
        "dockwright-examples/static-site:1",
    ]);
    let config: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(config["WorkingDir"], "/www", "WORKDIR");
    assert!(
        config["ExposedPorts"]["8080/tcp"].is_object(),
        "EXPOSE: {config}"
    );
    run.wait_for("example-static-site", Duration::from_secs(60), |r| {
        r["health"] == "healthy"
    });
    // Nothing changed: no build, no recreate.
    assert!(run.apply(&dir).contains("no changes"));
    assert_eq!(
        run.row("example-static-site")["containerId"],
        row["containerId"]
    );
    run.delete(&dir);
}

/// The README's claim: editing the site rebuilds only the last layer; the slow install step
/// comes from the cache.
#[test]
fn layer_caching_reuses_the_install_layer_after_an_edit() {
    let run = Run::new("layer-caching");
    let dir = example("layer-caching");
    run.apply(&dir);
    assert_eq!(
        fetch("127.0.0.1:18082", "/"),
        read(&dir.join("site/index.html"))
    );
    assert!(fetch("127.0.0.1:18082", "/vendor/htmx.txt").contains("htmx"));
    let layers = |image: &str| -> Vec<(String, String)> {
        docker_ok(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}\t{{.CreatedBy}}",
            image,
        ])
        .lines()
        .map(|l| {
            let (id, by) = l.split_once('\t').unwrap();
            (id.to_string(), by.to_string())
        })
        .collect()
    };
    let layer = |layers: &[(String, String)], needle: &str| -> String {
        layers
            .iter()
            .find(|(_, by)| by.contains(needle))
            .unwrap_or_else(|| panic!("no layer made by {needle:?} in {layers:?}"))
            .0
            .clone()
    };
    let before = layers("dockwright-examples/layer-caching:1");

    // The same example, edited as the README suggests.
    let copy = copy_example("layer-caching");
    // `.dockerignore` keeps the README out of the context: editing it rebuilds nothing.
    let readme = copy.path().join("README.md");
    std::fs::write(&readme, format!("{}\nedited\n", read(&readme))).unwrap();
    let unchanged = run.apply(copy.path());
    assert!(unchanged.contains("no changes"), "{unchanged}");
    let index = copy.path().join("site/index.html");
    std::fs::write(&index, format!("{}<p>edited</p>\n", read(&index))).unwrap();
    let second = run.apply(copy.path());
    assert!(second.contains("build "), "the edit rebuilds: {second}");
    assert!(fetch("127.0.0.1:18082", "/").contains("<p>edited</p>"));
    let after = layers("dockwright-examples/layer-caching:1");

    assert_ne!(before[0].0, after[0].0, "a new image");
    assert_eq!(
        layer(&before, "deps/install.sh"),
        layer(&after, "deps/install.sh"),
        "the install layer is reused from the cache"
    );
    assert_ne!(
        layer(&before, "in www/"),
        layer(&after, "in www/"),
        "the COPY of the edited site is rebuilt"
    );

    // The control: with Dockerfile.naive the same edit reruns the install.
    let manifest = copy.path().join("layer-caching.yaml");
    let naive = read(&manifest).replace("dockerfile: Dockerfile ", "dockerfile: Dockerfile.naive ");
    assert!(naive.contains("Dockerfile.naive"), "{naive}");
    std::fs::write(&manifest, naive).unwrap();
    run.apply(copy.path());
    let naive_before = layers("dockwright-examples/layer-caching:1");
    std::fs::write(&index, format!("{}<p>edited again</p>\n", read(&index))).unwrap();
    run.apply(copy.path());
    assert!(fetch("127.0.0.1:18082", "/").contains("<p>edited again</p>"));
    let naive_after = layers("dockwright-examples/layer-caching:1");
    assert_ne!(
        layer(&naive_before, "deps/install.sh"),
        layer(&naive_after, "deps/install.sh"),
        "with COPY . . first, a page edit reruns the install"
    );
    run.delete(&dir);
}

#[test]
fn one_shot_runs_to_completion_once() {
    let run = Run::new("one-shot");
    let dir = example("one-shot");
    run.apply(&dir);
    let row = run.wait_for("example-one-shot", Duration::from_secs(30), |r| {
        r["state"] == "exited"
    });
    assert_eq!(row["exitCode"], 0, "{row}");
    let logs = run.logs("example-one-shot");
    for line in [
        "report for /job/orders.csv",
        "alice 35",
        "bob 12",
        "orders: 3",
    ] {
        assert!(logs.lines().any(|l| l == line), "{line:?} in\n{logs}");
    }
    // Applied again with the same spec: not run again.
    assert!(run.apply(&dir).contains("no changes"));
    let again = run.row("example-one-shot");
    assert_eq!(again["containerId"], row["containerId"]);
    assert_eq!(again["state"], "exited");
    run.delete(&dir);
}

#[test]
fn two_tier_web_starts_after_the_api_is_healthy() {
    let run = Run::new("two-tier");
    let dir = example("two-tier");
    let out = run.apply(&dir);
    // Inspected right away: the health log keeps only the last five checks.
    let api_healthy_at = docker_ok(&[
        "inspect",
        "-f",
        r#"{{range .State.Health.Log}}{{if eq .ExitCode 0}}{{.End.UTC.Format "2006-01-02T15:04:05.000000000Z"}}{{"\n"}}{{end}}{{end}}"#,
        "example-two-tier-api",
    ]);
    let first_pass = api_healthy_at
        .lines()
        .next()
        .unwrap_or_else(|| panic!("the API has passed no health check yet: {out}"));
    let api_started = docker_ok(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}}",
        "example-two-tier-api",
    ]);
    let web_started = docker_ok(&[
        "inspect",
        "-f",
        "{{.State.StartedAt}}",
        "example-two-tier-web",
    ]);
    assert!(
        utc_instant(&web_started) >= utc_instant(first_pass),
        "web started {web_started}, before the API's first passing check ended {first_pass}"
    );
    let (api_secs, _) = utc_instant(&api_started);
    let (web_secs, _) = utc_instant(&web_started);
    assert!(
        web_secs > api_secs,
        "the API's warm-up delayed the web: {api_started} / {web_started}"
    );
    let await_line = out
        .lines()
        .position(|l| l.starts_with("await") && l.contains("example-two-tier-api"));
    let start_line = out
        .lines()
        .position(|l| l.starts_with("start") && l.contains("example-two-tier-web "));
    assert!(
        matches!((await_line, start_line), (Some(a), Some(s)) if a < s),
        "apply reports the await before the start: {out}"
    );
    let message = fetch("127.0.0.1:18084", "/cgi-bin/message");
    assert!(
        message.contains("hello from the api"),
        "the web fetched it from the API: {message}"
    );
    run.delete(&dir);
}

#[test]
fn registry_image_is_pushed_and_run_from_the_registry() {
    let addr = registry();
    assert_eq!(
        addr, "127.0.0.1:5000",
        "the example names the registry 127.0.0.1:5000"
    );
    require_registry(&addr);
    forget_example_images(&[
        "127.0.0.1:5000/examples/greeter:1",
        "127.0.0.1:5000/examples/greeter:latest",
    ]);
    let run = Run::new("registry");
    let dir = example("registry");
    let out = run.apply(&dir);
    assert!(out.contains("push "), "{out}");
    let (status, tags) = http_get(&addr, "/v2/examples/greeter/tags/list").unwrap();
    assert_eq!(status, 200, "{tags}");
    let tags: Value = serde_json::from_str(&tags).unwrap();
    let tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(tags.contains(&"1") && tags.contains(&"latest"), "{tags:?}");
    let page = read(&dir.join("app/index.html"));
    assert_eq!(fetch("127.0.0.1:18085", "/"), page);
    assert_eq!(
        run.row("example-greeter")["image"],
        "127.0.0.1:5000/examples/greeter:1"
    );

    // Run from the registry: without the local image, the container alone pulls it.
    run.delete(&dir);
    docker_ok(&[
        "rmi",
        "127.0.0.1:5000/examples/greeter:1",
        "127.0.0.1:5000/examples/greeter:latest",
    ]);
    let out = run.apply(&dir.join("container.yaml"));
    assert!(out.contains("pull "), "pulled from the registry: {out}");
    assert_eq!(fetch("127.0.0.1:18085", "/"), page);
    run.delete(&dir);
}

/// The README's claim: changing VERSION rolls the replicas one at a time and the front keeps
/// answering throughout.
#[test]
fn rolling_update_keeps_serving() {
    let run = Run::new("rolling-update");
    let dir = example("rolling-update");
    run.apply(&dir);
    let replicas = [
        "example-rolling-0",
        "example-rolling-1",
        "example-rolling-2",
    ];
    for name in replicas {
        run.wait_for(name, Duration::from_secs(60), |r| r["health"] == "healthy");
    }
    let first = fetch("127.0.0.1:18086", "/cgi-bin/version");
    assert!(first.starts_with("v1 from "), "{first}");

    let copy = copy_example("rolling-update");
    let manifest = copy.path().join("rolling-update.yaml");
    let edited = read(&manifest).replace("value: v1", "value: v2");
    std::fs::write(&manifest, edited).unwrap();

    let update = std::thread::scope(|s| {
        let apply = s.spawn(|| run.apply(copy.path()));
        let mut answers = Vec::new();
        while !apply.is_finished() {
            let answer = http_get("127.0.0.1:18086", "/cgi-bin/version");
            answers.push(answer);
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = apply.join().unwrap();
        for answer in &answers {
            match answer {
                Ok((200, body)) if body.starts_with("v1 from ") || body.starts_with("v2 from ") => {
                }
                other => panic!("the front stopped serving during the update: {other:?}\n{out}"),
            }
        }
        assert!(answers.len() >= 3, "the update was observed: {answers:?}");
        out
    });
    // One replica at a time: each replacement waits for the new one to be healthy.
    let awaits: Vec<&str> = update.lines().filter(|l| l.starts_with("await")).collect();
    assert_eq!(awaits.len(), 3, "{update}");
    let names: Vec<String> = run
        .get()
        .into_iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with("_prev")),
        "old containers removed: {names:?}"
    );
    for name in replicas {
        let version = docker_ok(&["exec", name, "cat", "/www/version.txt"]);
        assert!(version.starts_with("v2 from "), "{name}: {version}");
    }
    assert!(fetch("127.0.0.1:18086", "/cgi-bin/version").starts_with("v2 from "));
    run.delete(&dir);
}

/// The README's claims: the process gets the value, `get` and the labels never show it.
#[test]
fn secrets_reach_the_process_and_nothing_else() {
    let run = Run::new("secrets");
    let dir = example("secrets");
    let secret = read(&dir.join("db-password"));
    let secret = secret.strip_suffix('\n').unwrap_or(&secret).to_string();
    assert!(secret.len() >= 8, "a recognisable value: {secret:?}");
    run.apply(&dir);
    let want = format!("DB_PASSWORD has {} characters", secret.chars().count());
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let logs = run.logs("secrets-demo");
        if logs.contains(&want) || Instant::now() > deadline {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(logs.contains(&want), "{want:?} in {logs:?}");
    let env = docker_ok(&["inspect", "-f", "{{json .Config.Env}}", "secrets-demo"]);
    assert!(
        env.contains(&format!("DB_PASSWORD={secret}")),
        "the process gets it: {env}"
    );
    let get = run.dockwright(&["get", "-o", "json"]);
    assert!(
        !String::from_utf8_lossy(&get.stdout).contains(&secret),
        "not in get"
    );
    let labels = docker_ok(&["inspect", "-f", "{{json .Config.Labels}}", "secrets-demo"]);
    assert!(!labels.contains(&secret), "not in the labels: {labels}");
    assert!(
        labels.contains("hmac-sha256:"),
        "a keyed digest instead: {labels}"
    );
    run.delete(&dir);
}

#[test]
fn gitops_follows_the_web_hosts_directory() {
    use common::git::git;

    let run = Run::new("gitops");
    let repo = copy_example("gitops");
    git(repo.path(), &["init", "-q", "-b", "main"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "first"]);
    let url = format!("file://{}", repo.path().display());
    let mut agent = dockwright()
        .args(["agent", "--git", &url, "--git-path", "hosts/web"])
        .args(["--git-poll", "500ms", "--listen", "127.0.0.1:0"])
        .args(["--owner", run.owner.name()])
        .env("XDG_STATE_HOME", run.state.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let page = fetch("127.0.0.1:18087", "/");
    assert_eq!(
        page,
        read(&example("gitops").join("hosts/web/site/index.html"))
    );
    // Only the web host's directory is followed.
    assert!(docker_cli(&["inspect", "gitops-db"]).status.code() != Some(0));

    std::fs::write(
        repo.path().join("hosts/web/site/index.html"),
        "<h1>second commit</h1>\n",
    )
    .unwrap();
    git(repo.path(), &["commit", "-q", "-am", "second"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if matches!(http_get("127.0.0.1:18087", "/"), Ok((200, body)) if body.contains("second commit"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the second commit never served");
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = agent.kill();
    let _ = agent.wait();
    run.delete(&example("gitops").join("hosts/web"));
}
