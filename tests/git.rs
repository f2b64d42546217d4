//! `dockwright agent --git`: the real binary following a repository served by a real
//! `git daemon` on loopback (and over `file://`), against the real daemon. Commits are made
//! with the git CLI. Scenarios: the first commit converges; an edit recreates only the edited
//! container; a broken commit changes nothing, is reported, and the last good revision stays;
//! a removed manifest is pruned; a force-push back to an old commit is followed; the server
//! going away disturbs nothing and is noticed again when it is back.
//!
//! Every wait is bounded polling; negative checks first wait for a positive sign that the
//! agent saw the change (the rejected revision in `/state`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::git::{GitDaemon, TestRepo};
use common::{dockwright, ensure_test_image, unique, TestOwner, TEST_IMAGE};
use serde_json::Value;

/// Upper bound for anything the agent should do "soon" on this loaded machine.
const CONVERGE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// A running `dockwright agent --git`, killed on drop (declare it after the [`TestOwner`]).
struct Agent {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _state: tempfile::TempDir,
}

impl Agent {
    fn start(owner: &TestOwner, url: &str, extra: &[&str]) -> Agent {
        let state = tempfile::Builder::new()
            .prefix("dwstate")
            .tempdir()
            .unwrap();
        let mut child = dockwright()
            .args(["-v", "--log-format", "json", "agent", "--git", url])
            .args(["--owner", owner.name(), "--listen", "127.0.0.1:0"])
            .args(["--git-poll", "300ms"])
            .args(extra)
            .env("XDG_STATE_HOME", state.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dockwright agent");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["message"] == "agent endpoints" {
                            if let Some(addr) = v["listen"].as_str().and_then(|a| a.parse().ok()) {
                                let _ = tx.send(addr);
                            }
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "the agent never logged its listen address\n{}",
                    logs.lock().unwrap().join("\n")
                )
            });
        Agent {
            child,
            addr,
            logs,
            _state: state,
        }
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    /// `/state`, once published.
    fn state(&self) -> Option<Value> {
        let (status, body) = self.get("/state");
        (status == 200).then(|| serde_json::from_str(&body).unwrap())
    }

    /// `/state`'s `source`, once published.
    fn source(&self) -> Option<Value> {
        self.state()
            .map(|s| s["source"].clone())
            .filter(|s| !s.is_null())
    }

    async fn eventually<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + CONVERGE;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited {CONVERGE:?} for {what}\n--- agent log ---\n{}",
                self.log_text()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `/state` says `commit` is applied and the agent is ready.
    async fn applied(&self, commit: &str) {
        self.eventually(&format!("revision {commit} applied"), async || {
            let source = self.source()?;
            (source["appliedRevision"] == commit && self.get("/readyz").0 == 200).then_some(())
        })
        .await;
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// A sleeping `Container` of the test image; `extra` goes under `spec` (2-space indent).
fn container(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, \"3600\"]\n  stopGracePeriodSeconds: 0\n{extra}"
    )
}

/// The ID of the running container `name`.
async fn running_id(docker: &bollard::Docker, name: &str) -> Option<String> {
    let c = docker.inspect_container(name, None).await.ok()?;
    c.state?.running?.then_some(())?;
    c.id
}

async fn gone(docker: &bollard::Docker, name: &str) -> bool {
    docker.inspect_container(name, None).await.is_err()
}

#[tokio::test]
async fn follows_commits_rejects_broken_ones_prunes_and_follows_force_pushes() {
    ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("git-follow");
    let repo = TestRepo::new();
    let daemon = GitDaemon::serve(&repo);
    let (a, b) = (unique("gt-a"), unique("gt-b"));
    repo.write("apps/a.yaml", &container(&a, ""));
    repo.write("apps/b.yaml", &container(&b, ""));
    repo.write("README.md", "not a manifest\n");
    let first = repo.commit("first");

    // First commit converges.
    let agent = Agent::start(&owner, &daemon.url(), &["--git-path", "apps"]);
    agent.applied(&first).await;
    let a1 = agent
        .eventually("a running", async || running_id(&docker, &a).await)
        .await;
    let b1 = agent
        .eventually("b running", async || running_id(&docker, &b).await)
        .await;
    let source = agent.source().unwrap();
    assert_eq!(source["url"], daemon.url());
    assert_eq!(source["reference"], "HEAD");
    assert_eq!(source["path"], "apps");
    let (_, metrics) = agent.get("/metrics");
    assert!(
        metrics.contains(&format!("revision=\"{first}\"")),
        "{metrics}"
    );

    // An edit recreates only that container.
    repo.write(
        "apps/a.yaml",
        &container(&a, "  env: [{name: MODE, value: two}]\n"),
    );
    let second = repo.commit("edit a");
    agent.applied(&second).await;
    let a2 = agent
        .eventually("a recreated", async || {
            running_id(&docker, &a).await.filter(|id| *id != a1)
        })
        .await;
    assert_eq!(running_id(&docker, &b).await.as_deref(), Some(b1.as_str()));

    // A broken commit changes nothing and is reported; the last good revision stays.
    repo.write("apps/a.yaml", &container(&a, "  nope: 1\n"));
    repo.remove("apps/b.yaml");
    let broken = repo.commit("broken");
    let source = agent
        .eventually("the broken revision reported", async || {
            agent
                .source()
                .filter(|s| s["attemptedRevision"] == broken.as_str())
        })
        .await;
    assert_eq!(source["appliedRevision"], second.as_str());
    let error = source["attemptedError"].as_str().unwrap();
    assert!(
        error.contains("apps/a.yaml") && error.contains("nope"),
        "{error}"
    );
    let state = agent.state().unwrap();
    assert!(
        state["manifestErrors"].to_string().contains("nope"),
        "{state}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(running_id(&docker, &a).await.as_deref(), Some(a2.as_str()));
    assert_eq!(
        running_id(&docker, &b).await.as_deref(),
        Some(b1.as_str()),
        "a broken revision must not prune"
    );

    // A removed manifest (in a good revision) is pruned.
    repo.write(
        "apps/a.yaml",
        &container(&a, "  env: [{name: MODE, value: two}]\n"),
    );
    let pruned = repo.commit("fix a, b stays removed");
    agent.applied(&pruned).await;
    agent
        .eventually("b pruned", async || gone(&docker, &b).await.then_some(()))
        .await;
    assert_eq!(running_id(&docker, &a).await.as_deref(), Some(a2.as_str()));
    assert!(agent.source().unwrap()["attemptedRevision"].is_null());

    // A force-push back to the first commit is followed: b is back, a is as it was.
    repo.force_push(&first);
    agent.applied(&first).await;
    agent
        .eventually("b back", async || running_id(&docker, &b).await)
        .await;
    agent
        .eventually("a back to its first spec", async || {
            running_id(&docker, &a).await.filter(|id| *id != a2)
        })
        .await;
}

#[tokio::test]
async fn the_server_going_away_disturbs_nothing() {
    ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("git-down");
    let repo = TestRepo::new();
    let mut daemon = GitDaemon::serve(&repo);
    let a = unique("gd-a");
    repo.write("a.yaml", &container(&a, ""));
    let first = repo.commit("first");
    let agent = Agent::start(&owner, &daemon.url(), &[]);
    agent.applied(&first).await;
    let a1 = agent
        .eventually("a running", async || running_id(&docker, &a).await)
        .await;

    daemon.stop();
    let source = agent
        .eventually("the fetch error reported", async || {
            agent.source().filter(|s| s["fetchError"].is_string())
        })
        .await;
    assert_eq!(source["appliedRevision"], first.as_str());
    let (_, metrics) = agent.get("/metrics");
    assert!(
        metrics.contains("dockwright_source_fetches_total{result=\"error\"}"),
        "{metrics}"
    );
    assert_eq!(running_id(&docker, &a).await.as_deref(), Some(a1.as_str()));

    // Back, with a new commit: followed.
    repo.write(
        "a.yaml",
        &container(&a, "  env: [{name: MODE, value: back}]\n"),
    );
    let second = repo.commit("while the server was down");
    daemon.start();
    agent.applied(&second).await;
    agent
        .eventually("a recreated", async || {
            running_id(&docker, &a).await.filter(|id| *id != a1)
        })
        .await;
    assert!(agent.source().unwrap()["fetchError"].is_null());
}

#[tokio::test]
async fn a_tag_over_file_url_and_status_output() {
    ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("git-tag");
    let repo = TestRepo::new();
    let a = unique("gf-a");
    repo.write("a.yaml", &container(&a, ""));
    let tagged = repo.commit("first");
    common::git::git(&repo.work, &["tag", "-a", "-m", "v1", "v1"]);
    common::git::git(&repo.work, &["push", "-q", "origin", "v1"]);
    // A later commit on main is not followed: the agent follows the tag.
    repo.write(
        "a.yaml",
        &container(&a, "  env: [{name: MODE, value: main}]\n"),
    );
    repo.commit("on main only");

    let agent = Agent::start(&owner, &repo.file_url(), &["--git-ref", "v1"]);
    agent.applied(&tagged).await;
    agent
        .eventually("a running", async || running_id(&docker, &a).await)
        .await;

    let out = dockwright()
        .args(["status", "--agent", &agent.addr.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("applied revision:   {tagged}")),
        "{text}"
    );
    assert!(text.contains("ref v1"), "{text}");
}
