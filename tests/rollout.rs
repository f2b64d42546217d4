//! Rollouts end to end: `dockwright apply` of a changed spec against the real daemon. The old
//! container keeps serving until its successor is healthy (watched through `docker events`), a
//! successor that never becomes healthy is rolled back in the same apply (same ID, same name,
//! started again with `StopFirst`), `get` says which revision runs, and a strategy edit
//! replaces nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{dockwright, ensure_test_image, run, unique, Run, TestOwner, TEST_IMAGE};
use serde_json::Value;

/// `dockwright <args> --owner <owner>` to completion.
fn dw(owner: &TestOwner, args: &[&str]) -> Run {
    run(dockwright().args(args).args(["--owner", owner.name()]))
}

fn apply(owner: &TestOwner, dir: &Path) -> Run {
    dw(owner, &["apply", "-f", dir.to_str().unwrap()])
}

/// `docker inspect` of one container, `None` when it does not exist.
fn inspect(name: &str) -> Option<Value> {
    let out = run(Command::new("docker").args(["inspect", name]));
    if !out.success() {
        return None;
    }
    let mut all: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    Some(all.remove(0))
}

fn id_of(name: &str) -> Option<String> {
    inspect(name).map(|c| c["Id"].as_str().unwrap().to_string())
}

/// Names of every container of `owner` (running or not).
fn owned_names(owner: &TestOwner) -> Vec<String> {
    let out = run(Command::new("docker").args([
        "ps",
        "-a",
        "--filter",
        &format!("label={}", owner.label_filter()),
        "--format",
        "{{.Names}}",
    ]));
    assert!(out.success(), "{out}");
    let mut names: Vec<String> = out.stdout.lines().map(String::from).collect();
    names.sort();
    names
}

/// A `Container` manifest running `sleep` with `extra` spec lines (2-space indented).
fn manifest(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, \"3600\"]\n{extra}"
    )
}

fn write(dir: &Path, text: &str) {
    std::fs::write(dir.join("c.yaml"), text).unwrap();
}

/// `docker events` for one owner's containers, collected in the background until dropped.
struct Events {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Events {
    fn start(owner: &TestOwner) -> Self {
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                &format!("label={}", owner.label_filter()),
                "--format",
                "{{json .}}",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        // The stream only reports what happens after it is connected.
        std::thread::sleep(Duration::from_millis(500));
        Self { child, lines }
    }

    /// `(action, container ID)` in order, once `until` holds for them (bounded wait).
    fn collect(&self, until: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: Vec<(String, String)> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["Action"].as_str().unwrap_or_default().to_string(),
                        e["Actor"]["ID"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            if until(&seen) || Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn position(events: &[(String, String)], action: &str, id: &str) -> Option<usize> {
    events.iter().position(|(a, i)| a == action && i == id)
}

#[tokio::test]
async fn start_first_keeps_the_old_container_serving_until_the_new_one_is_healthy() {
    ensure_test_image().await;
    let owner = TestOwner::new("rollout-start-first");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("web");
    let health = "  healthcheck: {shell: \"true\", intervalSeconds: 1}\n";
    write(
        dir.path(),
        &manifest(
            &name,
            &format!("{health}  env: [{{name: V, value: \"1\"}}]\n"),
        ),
    );
    let out = apply(&owner, dir.path());
    assert!(out.success(), "{out}");
    let old = id_of(&name).unwrap();

    let events = Events::start(&owner);
    write(
        dir.path(),
        &manifest(
            &name,
            &format!("{health}  env: [{{name: V, value: \"2\"}}]\n"),
        ),
    );
    let out = apply(&owner, dir.path());
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(&format!("{name}_prev")), "{out}");
    let new = id_of(&name).unwrap();
    assert_ne!(new, old);
    let seen = events.collect(|e| position(e, "destroy", &old).is_some());

    // The old container was renamed, never stopped, and removed (killed) only once the new one
    // was reported healthy.
    let at = |action: &str, id: &str| {
        position(&seen, action, id).unwrap_or_else(|| panic!("no {action} of {id}: {seen:#?}"))
    };
    let renamed = at("rename", &old);
    let started = at("start", &new);
    let healthy = at("health_status: healthy", &new);
    let gone = at("destroy", &old);
    assert!(renamed < started, "{seen:#?}");
    assert!(healthy < gone, "{seen:#?}");
    let first_down = seen
        .iter()
        .position(|(a, i)| i == &old && matches!(a.as_str(), "kill" | "die" | "stop"))
        .unwrap();
    assert!(
        first_down > healthy,
        "old went down before the new one was healthy: {seen:#?}"
    );
    assert!(
        !seen.iter().any(|(a, i)| i == &old && a == "stop"),
        "StartFirst never stops the old one: {seen:#?}"
    );

    // One container left, under its name, with the new spec; `get` names its revision.
    assert_eq!(owned_names(&owner), std::slice::from_ref(&name));
    let c = inspect(&name).unwrap();
    assert!(c["Config"]["Env"].to_string().contains("V=2"));
    let hash = c["Config"]["Labels"][dockwright::labels::SPEC_HASH]
        .as_str()
        .unwrap()
        .to_string();
    let get = dw(&owner, &["get", "-o", "json"]);
    assert!(get.success(), "{get}");
    let rows: Vec<Value> = serde_json::from_str(&get.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["revision"], dockwright::plan::short_revision(&hash));
    assert_eq!(rows[0]["revision"].as_str().unwrap().len(), 12);
}

#[tokio::test]
async fn a_revision_that_never_becomes_healthy_is_rolled_back_in_the_same_apply() {
    ensure_test_image().await;
    let owner = TestOwner::new("rollout-back");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("api");
    write(
        dir.path(),
        &manifest(
            &name,
            "  healthcheck: {shell: \"true\", intervalSeconds: 1}\n",
        ),
    );
    let out = apply(&owner, dir.path());
    assert!(out.success(), "{out}");
    let old = id_of(&name).unwrap();

    write(
        dir.path(),
        &manifest(
            &name,
            "  healthcheck: {shell: \"exit 1\", intervalSeconds: 1, retries: 1}\n  strategy: {healthTimeoutSeconds: 4}\n",
        ),
    );
    let started = Instant::now();
    let out = apply(&owner, dir.path());
    let took = started.elapsed();
    assert_eq!(out.code, Some(1), "{out}");
    // The resource's own timeout, not the runner's default of five minutes.
    assert!(took < Duration::from_secs(60), "took {took:?}: {out}");
    assert!(
        out.stderr.contains("never became healthy; rolled back"),
        "{out}"
    );
    assert!(out.stderr.contains("within 4s"), "{out}");

    // Already rolled back: the old container runs under its name, the new one is gone.
    assert_eq!(id_of(&name).as_deref(), Some(old.as_str()));
    let c = inspect(&name).unwrap();
    assert_eq!(c["State"]["Running"], true, "{c:#}");
    assert_eq!(
        c["Config"]["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );
    assert_eq!(owned_names(&owner), std::slice::from_ref(&name));

    // Another apply tries the revision again (apply keeps no memory) and rolls back again.
    let out = apply(&owner, dir.path());
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(id_of(&name).as_deref(), Some(old.as_str()));
    assert_eq!(owned_names(&owner), [name]);
}

#[tokio::test]
async fn stop_first_with_a_host_port_stops_the_old_one_and_restarts_it_on_rollback() {
    ensure_test_image().await;
    let owner = TestOwner::new("rollout-stop-first");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("port");
    let port = 20000 + (std::process::id() % 20000) as u16 + 7;
    let ports =
        format!("  ports: [{{containerPort: 8080, hostPort: {port}, hostIP: 127.0.0.1}}]\n");
    write(
        dir.path(),
        &manifest(
            &name,
            &format!("{ports}  healthcheck: {{shell: \"true\", intervalSeconds: 1}}\n"),
        ),
    );
    let out = apply(&owner, dir.path());
    assert!(out.success(), "{out}");
    let old = id_of(&name).unwrap();

    // StartFirst cannot be had with a host port: refused, nothing touched.
    write(
        dir.path(),
        &manifest(
            &name,
            &format!("{ports}  healthcheck: {{shell: \"exit 1\", intervalSeconds: 1, retries: 1}}\n  strategy: {{type: StartFirst}}\n"),
        ),
    );
    let out = apply(&owner, dir.path());
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("spec.strategy.type"), "{out}");
    assert_eq!(id_of(&name).as_deref(), Some(old.as_str()));

    // The default with a host port is StopFirst: the old one stops so the new one can bind
    // the port; the new one never becomes healthy, so the old one is started again.
    write(
        dir.path(),
        &manifest(
            &name,
            &format!("{ports}  healthcheck: {{shell: \"exit 1\", intervalSeconds: 1, retries: 1}}\n  strategy: {{healthTimeoutSeconds: 3}}\n"),
        ),
    );
    let events = Events::start(&owner);
    let out = apply(&owner, dir.path());
    assert_eq!(out.code, Some(1), "{out}");
    let seen = events.collect(|e| position(e, "start", &old).is_some());
    let stop = seen
        .iter()
        .position(|(a, i)| i == &old && a == "stop")
        .unwrap_or_else(|| panic!("old one not stopped: {seen:#?}"));
    let restart = position(&seen, "start", &old).unwrap();
    let new_start = seen
        .iter()
        .position(|(a, i)| i != &old && a == "start")
        .unwrap_or_else(|| panic!("new one not started: {seen:#?}"));
    assert!(stop < new_start && new_start < restart, "{seen:#?}");

    assert_eq!(id_of(&name).as_deref(), Some(old.as_str()));
    let c = inspect(&name).unwrap();
    assert_eq!(c["State"]["Running"], true, "{c:#}");
    let bound = &c["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"];
    assert_eq!(bound, &Value::String(port.to_string()), "{c:#}");
    assert_eq!(owned_names(&owner), [name]);
}

#[tokio::test]
async fn a_strategy_edit_replaces_nothing() {
    ensure_test_image().await;
    let owner = TestOwner::new("rollout-strategy");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("calm");
    write(dir.path(), &manifest(&name, "  replicas: 2\n"));
    let out = apply(&owner, dir.path());
    assert!(out.success(), "{out}");
    let ids = [id_of(&format!("{name}-0")), id_of(&format!("{name}-1"))];
    write(
        dir.path(),
        &manifest(
            &name,
            "  replicas: 2\n  strategy: {type: StopFirst, maxUnavailable: 2, healthTimeoutSeconds: 9}\n",
        ),
    );
    let out = dw(&owner, &["diff", "-f", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    let out = apply(&owner, dir.path());
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("no changes"), "{out}");
    assert_eq!(
        [id_of(&format!("{name}-0")), id_of(&format!("{name}-1"))],
        ids
    );
}

/// A `dockwright agent` for one test, killed on drop (declare it after the owner).
struct Agent {
    child: Child,
    addr: String,
}

impl Agent {
    fn start(owner: &TestOwner, dir: &Path, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = dockwright()
            .args(["agent", "--manifests"])
            .arg(dir)
            .args(["--owner", owner.name(), "--listen", &addr])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dockwright agent");
        Self { child, addr }
    }

    /// The agent's status entry of `resource` (`/state` through `dockwright status`).
    fn resource(&self, resource: &str) -> Option<Value> {
        let out = run(dockwright().args(["status", "--agent", &self.addr, "-o", "json"]));
        if !out.success() {
            return None;
        }
        let state: Value = serde_json::from_str(&out.stdout).ok()?;
        state["resources"]
            .as_array()?
            .iter()
            .find(|r| r["resource"] == resource)
            .cloned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 100 ms until it gives a value, for at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn the_agent_rolls_back_then_retries_the_revision_after_its_back_off() {
    ensure_test_image().await;
    let owner = TestOwner::new("rollout-agent");
    let dir = tempfile::tempdir().unwrap();
    let name = unique("svc");
    let resource = format!("Container/default/{name}");
    write(
        dir.path(),
        &manifest(
            &name,
            "  healthcheck: {shell: \"true\", intervalSeconds: 1}\n",
        ),
    );
    let agent = Agent::start(
        &owner,
        dir.path(),
        &["--backoff-initial", "4s", "--backoff-max", "4s"],
    );
    let old = wait_for(Duration::from_secs(30), "the first container", || {
        let c = inspect(&name)?;
        (c["State"]["Running"] == true).then(|| c["Id"].as_str().unwrap().to_string())
    });

    let events = Events::start(&owner);
    write(
        dir.path(),
        &manifest(
            &name,
            "  healthcheck: {shell: \"exit 1\", intervalSeconds: 1, retries: 1}\n  strategy: {healthTimeoutSeconds: 2}\n",
        ),
    );
    // Rolled back and backing off, with the reason in the status.
    let failed = wait_for(Duration::from_secs(30), "the rollback in /state", || {
        agent.resource(&resource).filter(|r| {
            r["phase"] == "Failed"
                && r["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("never became healthy; rolled back"))
        })
    });
    let failed_at = Instant::now();
    assert!(failed["retryInSeconds"].as_u64().is_some(), "{failed:#}");
    wait_for(Duration::from_secs(10), "the old container back", || {
        (id_of(&name).as_deref() == Some(old.as_str()) && owned_names(&owner) == [name.clone()])
            .then_some(())
    });
    // The status says which revision runs: the old one's (once a pass observed the rollback).
    let label = inspect(&name).unwrap()["Config"]["Labels"][dockwright::labels::SPEC_HASH]
        .as_str()
        .unwrap()
        .to_string();
    let short = dockwright::plan::short_revision(&label).to_string();
    wait_for(
        Duration::from_secs(10),
        "the old revision in /state",
        || {
            let r = agent.resource(&resource)?;
            let replicas = r["replicas"].as_array()?.clone();
            (replicas.len() == 1 && replicas[0]["name"] == name.as_str()).then_some(())?;
            (replicas[0]["revision"] == short.as_str()).then_some(())
        },
    );

    // Held back while it waits; once the wait is over the agent tries the revision again (a
    // second new container), and rolls back again.
    let creates = |seen: &[(String, String)]| {
        seen.iter()
            .filter(|(a, id)| a == "create" && id != &old)
            .count()
    };
    let seen = events.collect(|e| creates(e) >= 2);
    assert_eq!(creates(&seen), 2, "{seen:#?}");
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(2),
        "tried again after {waited:?}, before its 4 s back-off"
    );
    let first = seen
        .iter()
        .position(|(a, id)| a == "create" && id != &old)
        .unwrap();
    let second = seen
        .iter()
        .rposition(|(a, id)| a == "create" && id != &old)
        .unwrap();
    let destroyed_between = seen[first..second]
        .iter()
        .any(|(a, id)| a == "destroy" && id != &old);
    assert!(
        destroyed_between,
        "the first try was removed before the second: {seen:#?}"
    );
    wait_for(Duration::from_secs(20), "the second rollback", || {
        (id_of(&name).as_deref() == Some(old.as_str())
            && owned_names(&owner) == [name.clone()]
            && inspect(&name)?["State"]["Running"] == true)
            .then_some(())
    });
    drop(agent);
}
