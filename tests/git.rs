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
    /// The webhook listener, when started with `--git-webhook-listen`.
    webhook: Option<SocketAddr>,
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
            .args(if extra.contains(&"--git-poll") {
                &[][..]
            } else {
                &["--git-poll", "300ms"][..]
            })
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
                        let which = match v["message"].as_str() {
                            Some("agent endpoints") => Some(false),
                            Some("git webhook endpoint") => Some(true),
                            _ => None,
                        };
                        if let (Some(webhook), Some(addr)) = (
                            which,
                            v["listen"]
                                .as_str()
                                .and_then(|a| a.parse::<SocketAddr>().ok()),
                        ) {
                            let _ = tx.send((webhook, addr));
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let wants_webhook = extra.contains(&"--git-webhook-listen");
        let (mut addr, mut webhook) = (None, None);
        while addr.is_none() || (wants_webhook && webhook.is_none()) {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok((true, a)) => webhook = Some(a),
                Ok((false, a)) => addr = Some(a),
                Err(_) => panic!(
                    "the agent never logged its listen addresses\n{}",
                    logs.lock().unwrap().join("\n")
                ),
            }
        }
        Agent {
            child,
            addr: addr.unwrap(),
            webhook,
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

    /// Sum of a metric's samples on `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `POST /hooks/git` with `headers` and `body`: the status code.
    fn hook(&self, headers: &[(&str, &str)], body: &str) -> u16 {
        let addr = self.webhook.expect("started with a webhook");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = format!(
            "POST /hooks/git HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        write!(stream, "{head}\r\n{body}").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
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

    // No-op polls cost no Docker call.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (calls, fetches) = (
        agent.metric("dockwright_docker_requests_total"),
        agent.metric("dockwright_source_fetches_total"),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        agent.metric("dockwright_source_fetches_total") >= fetches + 3.0,
        "the agent kept polling"
    );
    assert_eq!(
        agent.metric("dockwright_docker_requests_total"),
        calls,
        "a poll that finds nothing new makes no Docker call"
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
    agent
        .eventually("the error among the agent's manifest errors", async || {
            let state = agent.state()?;
            state["manifestErrors"]
                .to_string()
                .contains("nope")
                .then_some(())
        })
        .await;
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
async fn a_signed_webhook_fetches_at_once_and_a_bad_one_is_refused() {
    ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("git-hook");
    let repo = TestRepo::new();
    let daemon = GitDaemon::serve(&repo);
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("secret");
    std::fs::write(&secret_file, "It's a Secret to Everybody\n").unwrap();
    let a = unique("gh-a");
    repo.write("a.yaml", &container(&a, ""));
    let first = repo.commit("first");
    let agent = Agent::start(
        &owner,
        &daemon.url(),
        &[
            "--git-poll",
            "1h",
            "--git-webhook-listen",
            "127.0.0.1:0",
            "--git-webhook-secret",
            secret_file.to_str().unwrap(),
        ],
    );
    agent.applied(&first).await;
    let a1 = agent
        .eventually("a running", async || running_id(&docker, &a).await)
        .await;
    repo.write(
        "a.yaml",
        &container(&a, "  env: [{name: MODE, value: hooked}]\n"),
    );
    let second = repo.commit("second");

    // GitHub's documented example: this body signed with this secret.
    let body = "Hello, World!";
    let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let bad = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(agent.hook(&[("X-Hub-Signature-256", bad)], body), 401);
    assert_eq!(agent.hook(&[("X-Gitlab-Token", "guess")], body), 401);
    assert_eq!(agent.hook(&[], body), 401);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        agent.source().unwrap()["appliedRevision"],
        first.as_str(),
        "a refused call fetches nothing"
    );
    assert_eq!(running_id(&docker, &a).await.as_deref(), Some(a1.as_str()));
    let (status, _) = agent.get("/hooks/git");
    assert_eq!(status, 404, "the read-only endpoints stay read-only");

    assert_eq!(agent.hook(&[("X-Hub-Signature-256", good)], body), 202);
    agent.applied(&second).await;
    agent
        .eventually("a recreated without waiting for the poll", async || {
            running_id(&docker, &a).await.filter(|id| *id != a1)
        })
        .await;
    assert!(
        agent.log_text().contains(&second),
        "the log names the commit"
    );
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

/// The follower alone (no Docker): a poll that finds nothing new downloads nothing and
/// publishes nothing; a broken revision keeps the last good one; a force-push is followed.
#[test]
fn the_follower_swaps_only_whole_good_revisions() {
    use dockwright::source::git::{GitFollower, GitOptions};

    let repo = TestRepo::new();
    let state = tempfile::tempdir().unwrap();
    repo.write("m/a.yaml", &container("fa", ""));
    let first = repo.commit("first");
    let options = GitOptions {
        url: repo.file_url(),
        reference: None,
        path: "m".into(),
        poll: Duration::from_secs(60),
        state_dir: state.path().join("git"),
        auth: Default::default(),
        load: Default::default(),
    };
    let mut follower = GitFollower::new(options.clone());
    let snapshot = follower
        .poll_once()
        .expect("the first revision is published");
    assert!(snapshot.complete);
    assert_eq!(snapshot.desired.containers.len(), 1);
    assert_eq!(snapshot.revision.as_deref(), Some(first.as_str()));
    assert!(follower.poll_once().is_none(), "nothing moved");

    // Broken: the snapshot carries the error, the desired state is the same Arc.
    repo.write("m/b.yaml", "kind: Container\nnot: [valid\n");
    let broken = repo.commit("broken");
    let rejected = follower.poll_once().expect("the error is news");
    assert!(std::sync::Arc::ptr_eq(&rejected.desired, &snapshot.desired));
    assert!(rejected.complete, "the last good revision is whole");
    assert!(
        rejected.errors[0].location.starts_with("m/b.yaml"),
        "{:?}",
        rejected.errors
    );
    assert!(
        follower.poll_once().is_none(),
        "a rejected revision is not retried"
    );
    assert!(!state.path().join("git/checkouts").join(&broken).exists());

    // Force-push back to the first commit.
    repo.force_push(&first);
    let back = follower.poll_once().expect("back to the first revision");
    assert!(back.errors.is_empty());
    assert_eq!(back.revision.as_deref(), Some(first.as_str()));

    // A new follower (a restarted agent) resumes from the applied revision without a poll.
    let resumed = GitFollower::new(options).snapshot();
    assert!(resumed.complete);
    assert_eq!(resumed.revision.as_deref(), Some(first.as_str()));
    assert_eq!(resumed.desired.containers.len(), 1);
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(path);
                }
            }
        }
    }
    found
}

/// A follower of `url` with `auth` (no Docker).
fn follower(
    url: &str,
    auth: dockwright::source::git::GitAuth,
    state: &std::path::Path,
) -> dockwright::source::git::GitFollower {
    dockwright::source::git::GitFollower::new(dockwright::source::git::GitOptions {
        url: url.to_string(),
        reference: None,
        path: "".into(),
        poll: Duration::from_secs(60),
        state_dir: state.join("git"),
        auth,
        load: Default::default(),
    })
}

/// Smart HTTP through the follower alone: a token goes as the basic-auth password, the
/// private CA is required (the system roots do not know it), no credentials or wrong ones
/// are a clear fetch error without the secret, and nothing of the secret lands on disk.
#[test]
fn https_credentials_come_from_files_and_the_private_ca_is_required() {
    use dockwright::source::git::{GitAuth, HttpCredentials, HttpSecret};

    let repo = TestRepo::new();
    let password = "pa55-https-9f3e1c";
    let server = common::git_servers::HttpsGit::serve(&repo.served, "dwuser", password);
    repo.write("a.yaml", &container("fh-a", ""));
    let first = repo.commit("first");
    let url = server.url("ops.git");
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{password}\n")).unwrap();
    let wrong_file = secrets.path().join("wrong");
    std::fs::write(&wrong_file, "not-the-password\n").unwrap();
    let auth = |file: &std::path::Path, ca: bool| GitAuth {
        http: Some(HttpCredentials {
            username: Some("dwuser".into()),
            secret: HttpSecret::TokenFile(file.to_path_buf()),
        }),
        ca_file: ca.then(|| server.ca.ca_pem.clone()),
        ssh: None,
    };
    let fetch_error = |auth: GitAuth| {
        let state = tempfile::tempdir().unwrap();
        let mut f = follower(&url, auth, state.path());
        assert!(f.poll_once().is_none(), "nothing is published");
        let status = format!("{:?}", f.status());
        assert!(!status.contains(password), "{status}");
        let e = f.status().fetch_error.clone().expect("the fetch failed");
        eprintln!("fetch error: {e}");
        e
    };

    let e = fetch_error(auth(&token_file, false));
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "without the CA: {e}"
    );
    let e = fetch_error(GitAuth {
        ca_file: Some(server.ca.ca_pem.clone()),
        ..GitAuth::default()
    });
    assert!(e.contains("--git-token-file"), "without credentials: {e}");
    let e = fetch_error(auth(&wrong_file, true));
    assert!(e.contains("not accepted"), "wrong credentials: {e}");
    assert!(!e.contains("not-the-password"), "{e}");

    let state = tempfile::tempdir().unwrap();
    let mut f = follower(&url, auth(&token_file, true), state.path());
    let snapshot = f.poll_once().expect("converges with the token");
    assert_eq!(snapshot.revision.as_deref(), Some(first.as_str()));
    assert!(f.status().fetch_error.is_none());
    assert!(
        files_containing(state.path(), password).is_empty(),
        "the password is nowhere on disk"
    );

    // A no-op poll: the credentials go with the first request (no 401 round trip again), and
    // it takes the ref advertisement only (protocol v2: the capabilities, then ls-refs).
    use std::sync::atomic::Ordering::SeqCst;
    let (served, refused) = (server.served.load(SeqCst), server.unauthorized.load(SeqCst));
    assert!(f.poll_once().is_none(), "nothing moved");
    assert!(f.status().fetch_error.is_none());
    assert_eq!(server.unauthorized.load(SeqCst), refused, "no 401 any more");
    assert!(
        server.served.load(SeqCst) - served <= 2,
        "{} requests for a no-op poll",
        server.served.load(SeqCst) - served
    );

    // The file is read at every poll: a wrong secret is refused even though the last one was
    // accepted, and the right one works again without a new follower.
    repo.write("b.yaml", &container("fh-b", ""));
    let second = repo.commit("second");
    std::fs::write(&token_file, "rotated-wrong\n").unwrap();
    assert!(f.poll_once().is_none());
    let e = f.status().fetch_error.clone().expect("refused");
    assert!(
        e.contains("not accepted") && !e.contains("rotated-wrong"),
        "{e}"
    );
    std::fs::write(&token_file, password).unwrap();
    let snapshot = f.poll_once().expect("the second revision");
    assert_eq!(snapshot.revision.as_deref(), Some(second.as_str()));
}

/// SSH through the follower alone: with the pinned host key it fetches; once the server's
/// host key changes, the fetch fails with a message naming the host, nothing is published,
/// and the known_hosts file is left as it was (never trusted on first use, never updated).
#[test]
fn ssh_fetches_only_from_the_pinned_host_key() {
    use dockwright::source::git::{GitAuth, SshAuth};

    let repo = TestRepo::new();
    let mut sshd = common::git_servers::Sshd::start();
    repo.write("a.yaml", &container("fs-a", ""));
    let first = repo.commit("first");
    let url = sshd.url(&repo.bare);
    let auth = GitAuth {
        ssh: Some(SshAuth {
            key: Some(sshd.client_key.clone()),
            known_hosts: sshd.known_hosts.clone(),
        }),
        ..GitAuth::default()
    };
    let pinned = std::fs::read_to_string(&sshd.known_hosts).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut f = follower(&url, auth, state.path());
    let snapshot = f.poll_once();
    assert!(
        f.status().fetch_error.is_none(),
        "{:?}",
        f.status().fetch_error
    );
    assert_eq!(
        snapshot.expect("published").revision.as_deref(),
        Some(first.as_str())
    );

    sshd.swap_host_key();
    repo.write(
        "a.yaml",
        &container("fs-a", "  env: [{name: X, value: y}]\n"),
    );
    repo.commit("second");
    assert!(f.poll_once().is_none(), "nothing from a changed host");
    let e = f.status().fetch_error.clone().expect("the fetch failed");
    eprintln!("fetch error: {e}");
    assert!(
        e.contains(&format!(
            "host key for 127.0.0.1:{} does not match the pinned known_hosts",
            sshd.port
        )),
        "{e}"
    );
    assert_eq!(f.status().applied_revision.as_deref(), Some(first.as_str()));
    assert_eq!(std::fs::read_to_string(&sshd.known_hosts).unwrap(), pinned);
}

/// The agent over smart HTTPS with a user and password file: wrong credentials are a clear
/// fetch error and create nothing; the right ones converge; the password appears in no log,
/// endpoint or file of the agent's state.
#[tokio::test]
async fn https_agent_converges_with_good_credentials_and_wrong_ones_change_nothing() {
    ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("12-https");
    let repo = TestRepo::new();
    let password = "pa55-agent-7c1d2e";
    let server = common::git_servers::HttpsGit::serve(&repo.served, "dwuser", password);
    let a = unique("gs-a");
    repo.write("a.yaml", &container(&a, ""));
    let first = repo.commit("first");
    let secrets = tempfile::tempdir().unwrap();
    let (good, wrong) = (
        secrets.path().join("password"),
        secrets.path().join("wrong"),
    );
    std::fs::write(&good, format!("{password}\n")).unwrap();
    std::fs::write(&wrong, "wr0ng-password-55\n").unwrap();
    let ca = server.ca.ca_pem.to_str().unwrap().to_string();
    let flags = |file: &std::path::Path| {
        vec![
            "--git-username".to_string(),
            "dwuser".into(),
            "--git-password-file".into(),
            file.to_str().unwrap().into(),
            "--git-ca-file".into(),
            ca.clone(),
        ]
    };

    let wrong_flags = flags(&wrong);
    let agent = Agent::start(
        &owner,
        &server.url("ops.git"),
        &wrong_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let source = agent
        .eventually("the refused credentials reported", async || {
            agent.source().filter(|s| s["fetchError"].is_string())
        })
        .await;
    let error = source["fetchError"].as_str().unwrap();
    assert!(error.contains("were not accepted"), "{error}");
    assert!(source["appliedRevision"].is_null());
    assert!(gone(&docker, &a).await, "nothing is created");
    assert!(!agent.log_text().contains("wr0ng-password-55"));
    drop(agent);

    let good_flags = flags(&good);
    let agent = Agent::start(
        &owner,
        &server.url("ops.git"),
        &good_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    agent.applied(&first).await;
    agent
        .eventually("a running", async || running_id(&docker, &a).await)
        .await;
    let (_, state) = agent.get("/state");
    let (_, metrics) = agent.get("/metrics");
    for (what, text) in [
        ("/state", state),
        ("/metrics", metrics),
        ("the log", agent.log_text()),
    ] {
        assert!(!text.contains(password), "the password is in {what}");
    }
    assert_eq!(
        files_containing(agent._state.path(), password),
        Vec::<std::path::PathBuf>::new(),
        "the password is in no file of the agent's state"
    );
}

/// The agent over SSH with a deploy key and a pinned known_hosts: converges; once the host
/// key changes, a new commit is not fetched, the error names the host, and the running
/// container is left alone.
#[tokio::test]
async fn ssh_agent_refuses_a_swapped_host_key_and_changes_nothing() {
    ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("12-ssh");
    let repo = TestRepo::new();
    let mut sshd = common::git_servers::Sshd::start();
    let a = unique("gk-a");
    repo.write("a.yaml", &container(&a, ""));
    let first = repo.commit("first");
    let agent = Agent::start(
        &owner,
        &sshd.url(&repo.bare),
        &[
            "--git-ssh-key",
            sshd.client_key.to_str().unwrap(),
            "--git-known-hosts",
            sshd.known_hosts.to_str().unwrap(),
        ],
    );
    agent.applied(&first).await;
    let a1 = agent
        .eventually("a running", async || running_id(&docker, &a).await)
        .await;

    // A poll already connected when the key changes may still finish; wait for the first
    // refused one before committing.
    sshd.swap_host_key();
    let expected = format!(
        "host key for 127.0.0.1:{} does not match the pinned known_hosts",
        sshd.port
    );
    let source = agent
        .eventually("the host key mismatch reported", async || {
            agent.source().filter(|s| {
                s["fetchError"]
                    .as_str()
                    .is_some_and(|e| e.contains(&expected))
            })
        })
        .await;
    repo.write(
        "a.yaml",
        &container(&a, "  env: [{name: MODE, value: two}]\n"),
    );
    repo.commit("after the host key changed");
    let failures = source["fetchFailures"].as_u64().unwrap();
    let source = agent
        .eventually("more refused polls", async || {
            agent
                .source()
                .filter(|s| s["fetchFailures"].as_u64().unwrap_or(0) >= failures + 2)
        })
        .await;
    assert_eq!(
        source["appliedRevision"],
        first.as_str(),
        "{}",
        agent.log_text()
    );
    assert!(agent.log_text().contains(&expected), "the log says so too");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(running_id(&docker, &a).await.as_deref(), Some(a1.as_str()));
}

/// Runs the Debian `age` CLI (never the code under test) to encrypt `plaintext` to `recipient`.
fn age_encrypt(recipient: &str, plaintext: &str, out: &std::path::Path, armor: bool) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut cmd = std::process::Command::new("age");
    cmd.args(["-r", recipient]);
    if armor {
        cmd.arg("-a");
    }
    let mut child = cmd
        .arg("-o")
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run age (Debian's age package)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plaintext.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// `age-keygen -o FILE`; returns the public key.
fn age_keygen(file: &std::path::Path) -> String {
    let out = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(file)
        .output()
        .expect("run age-keygen");
    assert!(out.status.success());
    let out = std::process::Command::new("age-keygen")
        .arg("-y")
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// age-encrypted secrets in the repository: with the wrong identity the revision fails with
/// the file and resource named and nothing is created; with the right one the secret env and
/// the secret file reach the container, and the plaintext is nowhere else: not in `/state`,
/// the metrics, the log, the container's labels or any file of the agent's state (the
/// checkout holds only the encrypted files). `diff -f` takes `--age-identity` too.
#[tokio::test]
async fn an_age_encrypted_secret_reaches_the_container_and_nothing_else() {
    ensure_test_image().await;
    let docker = common::docker().await;
    let owner = TestOwner::new("12-age");
    let repo = TestRepo::new();
    let daemon = GitDaemon::serve(&repo);
    let keys = tempfile::tempdir().unwrap();
    let (key, other) = (keys.path().join("key.txt"), keys.path().join("other.txt"));
    let recipient = age_keygen(&key);
    age_keygen(&other);
    let (env_secret, file_secret) = (unique("dw-age-env"), unique("dw-age-file"));
    age_encrypt(
        &recipient,
        &format!("{env_secret}\n"),
        &repo.work.join("secrets/db.age"),
        false,
    );
    age_encrypt(
        &recipient,
        &file_secret,
        &repo.work.join("secrets/token.age"),
        true,
    );
    let a = unique("ga-a");
    repo.write(
        "app.yaml",
        &container(
            &a,
            "  env:\n  - name: DB_PASSWORD\n    valueFrom: {file: secrets/db.age}\n  files:\n  - path: /etc/app/token\n    source: secrets/token.age\n",
        ),
    );
    let first = repo.commit("encrypted secrets");

    // The one-shot commands: without the identity the file and the flag are named.
    let out = dockwright()
        .args(["diff", "--owner", owner.name(), "-f"])
        .arg(repo.work.join("app.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("secrets/db.age") && text.contains("--age-identity"),
        "{text}"
    );
    let out = dockwright()
        .args(["diff", "--owner", owner.name(), "--age-identity"])
        .arg(&key)
        .arg("-f")
        .arg(repo.work.join("app.yaml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "changes to make: {text}");
    assert!(
        !text.contains(&env_secret) && !text.contains(&file_secret),
        "{text}"
    );

    // The wrong identity: the revision fails, naming the file and the resource.
    let agent = Agent::start(
        &owner,
        &daemon.url(),
        &["--age-identity", other.to_str().unwrap()],
    );
    let source = agent
        .eventually("the revision rejected", async || {
            agent
                .source()
                .filter(|s| s["attemptedRevision"] == first.as_str())
        })
        .await;
    let error = source["attemptedError"].as_str().unwrap();
    assert!(
        error.contains("secrets/db.age")
            && error.contains(&a)
            && error.contains("not encrypted to any key"),
        "{error}"
    );
    assert!(source["appliedRevision"].is_null());
    assert!(gone(&docker, &a).await, "nothing is created");
    drop(agent);

    let agent = Agent::start(
        &owner,
        &daemon.url(),
        &["--age-identity", key.to_str().unwrap()],
    );
    agent.applied(&first).await;
    agent
        .eventually("a running", async || running_id(&docker, &a).await)
        .await;
    let inspect = docker.inspect_container(&a, None).await.unwrap();
    let config = inspect.config.unwrap();
    assert!(
        config
            .env
            .unwrap_or_default()
            .contains(&format!("DB_PASSWORD={env_secret}")),
        "the secret env reaches the container"
    );
    let out = std::process::Command::new("docker")
        .args(["exec", &a, "cat", "/etc/app/token"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        file_secret,
        "the secret file reaches the container"
    );
    let labels = format!("{:?}", config.labels.unwrap_or_default());
    let (_, state) = agent.get("/state");
    let (_, metrics) = agent.get("/metrics");
    for secret in [&env_secret, &file_secret] {
        for (what, text) in [
            ("/state", &state),
            ("/metrics", &metrics),
            ("the labels", &labels),
            ("the log", &agent.log_text()),
        ] {
            assert!(!text.contains(secret.as_str()), "a secret is in {what}");
        }
        assert_eq!(
            files_containing(agent._state.path(), secret),
            Vec::<std::path::PathBuf>::new(),
            "a secret is in a file of the agent's state"
        );
    }
}
