//! Agent benchmark (issue 4), against the real daemon and the release `dockwright` binary:
//! (a) `docker rm -f` of a managed container → its replacement running, (b) manifest edit →
//! converged, (c) agent RSS with many managed containers, (d) idle CPU and (e) daemon calls per
//! idle minute (through the counting proxy). Prints a table; not a timed test.
//!
//! Latencies use the daemon's own event timestamps: (a) from the old container's `destroy` to
//! the new one's `start`, (b) from the moment the edited file is renamed into place to the new
//! container's `start`. The daemon's create+start floor is measured the same way and printed
//! beside them, since on a loaded host the daemon, not the agent, sets most of the latency.
//!
//! Run: `cargo bench --bench agent`. Sizes come from the environment, so CI can run a small
//! version: `DW_BENCH_RM_TRIALS` (50), `DW_BENCH_EDIT_TRIALS` (20), `DW_BENCH_IDLE_CONTAINERS`
//! (200), `DW_BENCH_IDLE_SECS` (60), `DW_BENCH_SCALE` (`500,1000`: further RSS points, empty to
//! skip), `DW_BENCH_MIN_FREE_MIB` (2048: stop scaling when the host has less memory available).
//! Everything runs under one `dwtest-bench-agent-*` owner and is removed at the end.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::EventMessageTypeEnum;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use common::{ensure_test_image, CountingProxy, TestOwner, TEST_IMAGE};
use futures::stream::{self, StreamExt};
use tokio::sync::mpsc;

/// Longest wait for any single step before it counts as a failed trial.
const STEP: Duration = Duration::from_secs(15);

struct Config {
    rm_trials: usize,
    edit_trials: usize,
    idle_containers: usize,
    idle_secs: u64,
    scale: Vec<usize>,
    min_free_mib: u64,
}

impl Config {
    fn from_env() -> Self {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(d)
        };
        let scale = std::env::var("DW_BENCH_SCALE").unwrap_or_else(|_| "500,1000".into());
        Self {
            rm_trials: num("DW_BENCH_RM_TRIALS", 50) as usize,
            edit_trials: num("DW_BENCH_EDIT_TRIALS", 20) as usize,
            idle_containers: num("DW_BENCH_IDLE_CONTAINERS", 200) as usize,
            idle_secs: num("DW_BENCH_IDLE_SECS", 60),
            scale: scale
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect(),
            min_free_mib: num("DW_BENCH_MIN_FREE_MIB", 2048),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The agent process
// ---------------------------------------------------------------------------------------------

/// A running release `dockwright agent` (JSON logs on stderr: warnings and the Docker events
/// that woke it are kept in memory). Killed on drop.
struct AgentProc {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// `type action subject` of every daemon event the agent reacted to (its debug log).
    triggers: Arc<Mutex<Vec<String>>>,
}

impl AgentProc {
    fn start(owner: &str, dir: &Path, docker_host: Option<&str>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dockwright"));
        cmd.args(["-v", "--log-format", "json", "agent", "--manifests"])
            .arg(dir)
            .args(["--owner", owner, "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn,dockwright=info,dockwright::agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(host) = docker_host {
            cmd.env("DOCKER_HOST", host);
        }
        let mut child = cmd.spawn().expect("spawn dockwright agent");
        let stderr = child.stderr.take().expect("agent stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let triggers = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            let triggers = triggers.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["message"] == "agent endpoints" {
                            if let Some(a) = v["listen"].as_str().and_then(|a| a.parse().ok()) {
                                let _ = tx.send(a);
                            }
                        }
                        if v["message"] == "container event" || v["message"] == "image event" {
                            let subject = v["resource"].as_str().or(v["id"].as_str());
                            let line = format!(
                                "{} {} {}",
                                v["message"].as_str().unwrap_or_default(),
                                v["action"].as_str().unwrap_or_default(),
                                subject.unwrap_or_default()
                            );
                            triggers.lock().expect("trigger lock").push(line);
                            continue;
                        }
                        if v["level"] == "WARN" || v["level"] == "ERROR" {
                            let mut logs = logs.lock().expect("log lock");
                            logs.push(line);
                            let excess = logs.len().saturating_sub(200);
                            logs.drain(..excess);
                        }
                    }
                }
            });
        }
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the agent never logged its listen address");
        Self {
            child,
            addr,
            logs,
            triggers,
        }
    }

    /// Number of daemon events the agent has reacted to so far.
    fn trigger_count(&self) -> usize {
        self.triggers.lock().expect("trigger lock").len()
    }

    /// The daemon events the agent reacted to since `from` (a [`Self::trigger_count`]).
    fn triggers_since(&self, from: usize) -> Vec<String> {
        self.triggers.lock().expect("trigger lock")[from..].to_vec()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn warnings(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) else {
            return (0, String::new());
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        );
        let mut response = String::new();
        let _ = s.read_to_string(&mut response);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_string())
    }

    /// True when `/state` lists every declared resource as `Ready`.
    fn all_ready(&self) -> bool {
        let (status, body) = self.get("/state");
        if status != 200 {
            return false;
        }
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&body) else {
            return false;
        };
        state["resources"].as_array().is_some_and(|rs| {
            rs.iter()
                .filter(|r| r["phase"] != "Undeclared")
                .all(|r| r["phase"] == "Ready")
        })
    }

    /// Sum of a metric's samples on `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(VmRSS, VmHWM)` of a process in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let at = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    at(11) + at(12)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn mem_available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

// ---------------------------------------------------------------------------------------------
// Manifests, events and the daemon
// ---------------------------------------------------------------------------------------------

/// A sleeping container with a small memory limit. `isolated`: `network: none`, for the scale
/// phase: the default bridge takes at most 1024 interfaces (the kernel's bridge port limit),
/// and veth setup would dominate the converge time.
fn container_doc(name: &str, env: Option<&str>, isolated: bool) -> String {
    let env = env.map_or(String::new(), |e| {
        format!("  env: [{{ name: TRIAL, value: \"{e}\" }}]\n")
    });
    let network = if isolated { "  network: none\n" } else { "" };
    format!(
        "---\napiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{ name: {name} }}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, \"36000\"]\n  stopGracePeriodSeconds: 0\n  resources: {{ limits: {{ memory: 8Mi }} }}\n{network}{env}"
    )
}

/// Writes `file` by rename (one complete file for the watcher); returns when it is in place.
fn write_file(dir: &Path, file: &str, text: &str) -> SystemTime {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).expect("write manifest");
    let at = SystemTime::now();
    std::fs::rename(&tmp, dir.join(file)).expect("rename manifest");
    at
}

/// One container event: action, container name, ID, daemon time.
#[derive(Clone, Debug)]
struct Ev {
    action: String,
    name: String,
    id: String,
    at: SystemTime,
}

/// Follows the daemon's container events for one owner (directly, not through any proxy).
fn follow_events(client: bollard::Docker, owner: String) -> mpsc::UnboundedReceiver<Ev> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let filters = HashMap::from([("type", vec!["container"]), ("label", vec![owner.as_str()])]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut events = client.events(Some(options));
        while let Some(Ok(m)) = events.next().await {
            if m.typ != Some(EventMessageTypeEnum::CONTAINER) {
                continue;
            }
            let actor = m.actor.unwrap_or_default();
            let attrs = actor.attributes.unwrap_or_default();
            let nanos = m.time_nano.unwrap_or_default().max(0) as u64;
            let ev = Ev {
                action: m.action.unwrap_or_default(),
                name: attrs.get("name").cloned().unwrap_or_default(),
                id: actor.id.unwrap_or_default(),
                at: UNIX_EPOCH + Duration::from_nanos(nanos),
            };
            if tx.send(ev).is_err() {
                return;
            }
        }
    });
    rx
}

/// Every event up to and including the first matching `end`, within [`STEP`] (empty or
/// without the end event on timeout).
async fn events_until(rx: &mut mpsc::UnboundedReceiver<Ev>, end: impl Fn(&Ev) -> bool) -> Vec<Ev> {
    let deadline = tokio::time::Instant::now() + STEP;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                let done = end(&ev);
                seen.push(ev);
                if done {
                    return seen;
                }
            }
            Ok(None) | Err(_) => return seen,
        }
    }
}

/// `later - earlier`, zero if the clock says otherwise.
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

fn drain(rx: &mut mpsc::UnboundedReceiver<Ev>) {
    while rx.try_recv().is_ok() {}
}

async fn container_id(client: &bollard::Docker, name: &str) -> Option<String> {
    let c = client.inspect_container(name, None).await.ok()?;
    c.state?.running?.then_some(())?;
    c.id
}

async fn running_count(client: &bollard::Docker, label: &str) -> usize {
    let filters = HashMap::from([
        ("label".to_string(), vec![label.to_string()]),
        ("status".to_string(), vec!["running".to_string()]),
    ]);
    let options = ListContainersOptionsBuilder::default()
        .filters(&filters)
        .build();
    client
        .list_containers(Some(options))
        .await
        .map_or(0, |l| l.len())
}

async fn remove_all(client: &bollard::Docker, label: &str) {
    let filters = HashMap::from([("label".to_string(), vec![label.to_string()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = client
        .list_containers(Some(options))
        .await
        .unwrap_or_default();
    stream::iter(list)
        .for_each_concurrent(8, |c| async move {
            if let Some(id) = c.id {
                let options = RemoveContainerOptionsBuilder::default().force(true).build();
                let _ = client.remove_container(&id, Some(options)).await;
            }
        })
        .await;
}

/// Waits until `/state` shows every resource Ready (the agent has settled after a trial).
async fn settle(agent: &AgentProc) -> bool {
    let deadline = Instant::now() + STEP;
    while Instant::now() < deadline {
        if agent.all_ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// Statistics and output
// ---------------------------------------------------------------------------------------------

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

struct Row {
    what: String,
    measured: String,
    target: String,
    ok: Option<bool>,
}

fn row(
    rows: &mut Vec<Row>,
    what: impl Into<String>,
    measured: String,
    target: &str,
    ok: Option<bool>,
) {
    let r = Row {
        what: what.into(),
        measured,
        target: target.into(),
        ok,
    };
    println!("  {:<46} {:>22}   {}", r.what, r.measured, r.target);
    rows.push(r);
}

/// p50/p99 rows for one latency series.
fn latency_rows(
    rows: &mut Vec<Row>,
    what: &str,
    mut samples: Vec<Duration>,
    failed: usize,
    targets: &[(f64, Duration)],
) {
    if samples.is_empty() && failed == 0 {
        return; // not run (0 trials)
    }
    samples.sort();
    for (p, target) in targets {
        let v = percentile(&samples, *p);
        row(
            rows,
            format!("{what} p{p:.0} (n={}, failed {failed})", samples.len()),
            ms(v),
            &format!("< {}", ms(*target)),
            Some(failed == 0 && !samples.is_empty() && v < *target),
        );
    }
    if let (Some(min), Some(max)) = (samples.first(), samples.last()) {
        println!(
            "  {:<46} {:>22}",
            format!("{what} min / max"),
            format!("{} / {}", ms(*min), ms(*max))
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The phases
// ---------------------------------------------------------------------------------------------

/// The daemon's own create+start time for the same container (the floor under (a) and (b)).
/// Its containers carry an owner of their own: under the agent's owner they would be
/// undeclared managed containers, which the agent prunes.
async fn daemon_floor(client: &bollard::Docker, trials: usize) -> Vec<Duration> {
    let owner = TestOwner::new("bench-floor");
    let mut out = Vec::new();
    for _ in 0..trials {
        let name = common::unique("bench-floor");
        let started = Instant::now();
        let body = bollard::models::ContainerCreateBody {
            image: Some(TEST_IMAGE.into()),
            cmd: Some(vec!["sleep".into(), "36000".into()]),
            labels: Some(owner.labels()),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        if let Err(e) = client.create_container(Some(options), body).await {
            eprintln!("floor: create {name}: {e}");
            continue;
        }
        match client
            .start_container(
                &name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            Ok(()) => out.push(started.elapsed()),
            Err(e) => eprintln!("floor: start {name}: {e}"),
        }
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = client.remove_container(&name, Some(options)).await;
    }
    out
}

/// (a) and (b): one managed container, removed behind the agent's back, then edited.
async fn latencies(
    client: &bollard::Docker,
    owner: &TestOwner,
    config: &Config,
    rows: &mut Vec<Row>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = common::unique("bench-lat");
    let mut events = follow_events(client.clone(), owner.label_filter());
    write_file(dir.path(), "lat.yaml", &container_doc(&name, None, false));
    let agent = AgentProc::start(owner.name(), dir.path(), None);
    if !settle(&agent).await {
        eprintln!("the latency agent never settled: {:?}", agent.warnings());
        return;
    }

    let floor = daemon_floor(client, 10).await;
    let mut floor_sorted = floor.clone();
    floor_sorted.sort();
    row(
        rows,
        format!("daemon create+start floor p50 (n={})", floor.len()),
        ms(percentile(&floor_sorted, 50.0)),
        "(reference)",
        None,
    );

    // (a) rm -f → replacement running; the agent's share is destroy → create of the new one.
    let mut samples = Vec::new();
    let mut reaction = Vec::new();
    let mut wall = Vec::new();
    let mut failed = 0;
    for _ in 0..config.rm_trials {
        let Some(old) = container_id(client, &name).await else {
            failed += 1;
            settle(&agent).await;
            continue;
        };
        drain(&mut events);
        let sent = Instant::now();
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        if client.remove_container(&name, Some(options)).await.is_err() {
            failed += 1;
            continue;
        }
        let seen = events_until(&mut events, |e| {
            e.action == "start" && e.name == name && e.id != old
        })
        .await;
        let destroyed = seen.iter().find(|e| e.action == "destroy" && e.id == old);
        let created = seen.iter().find(|e| e.action == "create" && e.id != old);
        match (
            destroyed,
            created,
            seen.last().filter(|e| e.action == "start"),
        ) {
            (Some(d), Some(c), Some(s)) => {
                samples.push(since(s.at, d.at));
                reaction.push(since(c.at, d.at));
                wall.push(sent.elapsed());
            }
            _ => failed += 1,
        }
        settle(&agent).await;
    }
    latency_rows(
        rows,
        "(a) rm -f → running",
        samples,
        failed,
        &[
            (50.0, Duration::from_millis(300)),
            (99.0, Duration::from_secs(1)),
        ],
    );
    reaction.sort();
    wall.sort();
    println!(
        "  {:<46} {:>22}",
        "(a) of which destroy → created, p50",
        ms(percentile(&reaction, 50.0))
    );
    println!(
        "  {:<46} {:>22}",
        "(a) incl. the rm call itself, p50",
        ms(percentile(&wall, 50.0))
    );

    // (b) manifest edit → the new container running; the agent's share is the time to its
    // first daemon action (the old container's kill).
    let mut samples = Vec::new();
    let mut reaction = Vec::new();
    let mut failed = 0;
    for trial in 0..config.edit_trials {
        let Some(old) = container_id(client, &name).await else {
            failed += 1;
            settle(&agent).await;
            continue;
        };
        drain(&mut events);
        let value = format!("{trial}");
        let written = write_file(
            dir.path(),
            "lat.yaml",
            &container_doc(&name, Some(&value), false),
        );
        let seen = events_until(&mut events, |e| {
            e.action == "start" && e.name == name && e.id != old
        })
        .await;
        match (seen.first(), seen.last().filter(|e| e.action == "start")) {
            (Some(first), Some(s)) => {
                samples.push(since(s.at, written));
                reaction.push(since(first.at, written));
            }
            _ => failed += 1,
        }
        settle(&agent).await;
        let env = client
            .inspect_container(&name, None)
            .await
            .ok()
            .and_then(|c| c.config?.env)
            .unwrap_or_default();
        if !env.contains(&format!("TRIAL={value}")) {
            eprintln!("edit {trial}: the running container does not have the new env: {env:?}");
        }
    }
    latency_rows(
        rows,
        "(b) edit → converged",
        samples,
        failed,
        &[(50.0, Duration::from_millis(500))],
    );
    reaction.sort();
    println!(
        "  {:<46} {:>22}",
        "(b) of which edit → first daemon action, p50",
        ms(percentile(&reaction, 50.0))
    );
    let warnings = agent.warnings();
    if !warnings.is_empty() {
        println!("  latency agent warnings: {}", warnings.len());
        for w in warnings.iter().take(5) {
            println!("    {w}");
        }
    }
}

/// Writes `n` containers into `many.yaml` and waits until they all run; returns the time.
async fn scale_to(
    client: &bollard::Docker,
    owner: &TestOwner,
    dir: &Path,
    prefix: &str,
    n: usize,
) -> Option<Duration> {
    let text: String = (0..n)
        .map(|i| container_doc(&format!("{prefix}-{i}"), None, true))
        .collect();
    let started = Instant::now();
    write_file(dir, "many.yaml", &text);
    let label = owner.label_filter();
    let limit = Duration::from_secs(60) + Duration::from_millis(500) * n as u32;
    while started.elapsed() < limit {
        if running_count(client, &label).await >= n {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// (c), (d), (e): many containers, an idle agent behind the counting proxy.
async fn idle_and_scale(
    client: &bollard::Docker,
    owner: &TestOwner,
    config: &Config,
    rows: &mut Vec<Row>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = common::unique("bench-many");
    let proxy = CountingProxy::start();
    let agent = AgentProc::start(owner.name(), dir.path(), Some(&proxy.docker_host()));
    let pid = agent.pid();

    let n = config.idle_containers;
    let Some(took) = scale_to(client, owner, dir.path(), &prefix, n).await else {
        println!("  {n} containers did not all run in time; skipping (c)-(e)");
        return;
    };
    println!(
        "  {:<46} {:>22}",
        format!("converge {n} containers (via proxy)"),
        format!("{:.1} s", took.as_secs_f64())
    );
    settle(&agent).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss, hwm) = rss_kib(pid);
    row(
        rows,
        format!("(c) agent RSS, {n} containers (peak)"),
        format!(
            "{:.1} MiB ({:.1})",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        "< 40 MiB at 1000",
        None,
    );

    // (d) and (e): nothing changes for a while.
    let tick = clock_ticks_per_second();
    let metric_before = agent.metric("dockwright_docker_requests_total");
    let triggers_before = agent.trigger_count();
    proxy.reset();
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(config.idle_secs)).await;
    let cpu1 = cpu_ticks(pid);
    let secs = t0.elapsed().as_secs_f64();
    let requests = proxy.requests();
    let metric_after = agent.metric("dockwright_docker_requests_total");
    let cpu_pct = (cpu1 - cpu0) as f64 / tick as f64 / secs * 100.0;
    row(
        rows,
        format!("(d) idle CPU, {n} containers, {secs:.0} s"),
        format!("{cpu_pct:.2} % of a core"),
        "< 1 %",
        Some(cpu_pct < 1.0),
    );
    let per_minute = requests.len() as f64 * 60.0 / secs;
    row(
        rows,
        "(e) daemon calls per idle minute (proxy)",
        format!("{per_minute:.1}"),
        "0 (events stream only)",
        Some(requests.is_empty()),
    );
    if !requests.is_empty() {
        println!("    calls seen: {:?}", &requests[..requests.len().min(10)]);
    }
    let triggers = agent.triggers_since(triggers_before);
    println!(
        "  {:<46} {:>22}",
        "(e) daemon events that woke the agent",
        triggers.len()
    );
    for t in triggers.iter().take(10) {
        println!("    {t}");
    }
    println!(
        "  {:<46} {:>22}",
        "(e) agent's own request counter delta",
        format!("{:.0}", metric_after - metric_before)
    );

    // (c) at larger sizes, as far as the host's memory allows.
    for &size in config.scale.iter().filter(|&&s| s > n) {
        let free = mem_available_mib();
        if free < config.min_free_mib {
            println!(
                "  stopping at {} containers: only {free} MiB available",
                running_count(client, &owner.label_filter()).await
            );
            break;
        }
        match scale_to(client, owner, dir.path(), &prefix, size).await {
            Some(took) => {
                println!(
                    "  {:<46} {:>22}",
                    format!("converge {size} containers (via proxy)"),
                    format!("{:.1} s", took.as_secs_f64())
                );
                settle(&agent).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
                let (rss, hwm) = rss_kib(pid);
                let target = if size >= 1000 {
                    "< 40 MiB"
                } else {
                    "< 40 MiB at 1000"
                };
                row(
                    rows,
                    format!("(c) agent RSS, {size} containers (peak)"),
                    format!(
                        "{:.1} MiB ({:.1})",
                        rss as f64 / 1024.0,
                        hwm as f64 / 1024.0
                    ),
                    target,
                    (size >= 1000).then_some(rss < 40 * 1024),
                );
                // One idle pass at this size too: cheap, and shows whether idle cost grows.
                let cpu0 = cpu_ticks(pid);
                let t0 = Instant::now();
                proxy.reset();
                tokio::time::sleep(Duration::from_secs(10)).await;
                let cpu = (cpu_ticks(pid) - cpu0) as f64 / tick as f64 / t0.elapsed().as_secs_f64()
                    * 100.0;
                println!(
                    "  {:<46} {:>22}",
                    format!("idle CPU / calls, {size} containers, 10 s"),
                    format!("{cpu:.2} % / {}", proxy.requests().len())
                );
            }
            None => {
                let got = running_count(client, &owner.label_filter()).await;
                println!(
                    "  {size} containers did not all run in time ({got} running); stopping here"
                );
                let (rss, hwm) = rss_kib(pid);
                row(
                    rows,
                    format!("(c) agent RSS, {got} containers (peak)"),
                    format!(
                        "{:.1} MiB ({:.1})",
                        rss as f64 / 1024.0,
                        hwm as f64 / 1024.0
                    ),
                    "< 40 MiB at 1000",
                    None,
                );
                break;
            }
        }
    }
    let warnings = agent.warnings();
    if !warnings.is_empty() {
        println!("  scale agent warnings: {}", warnings.len());
        for w in warnings.iter().take(5) {
            println!("    {w}");
        }
    }

    // (c) once more for an agent started on what is already there (a restart, the steady
    // state): the figure above also holds what converging from scratch left in the heap.
    drop(agent);
    let count = running_count(client, &owner.label_filter()).await;
    let agent = AgentProc::start(owner.name(), dir.path(), None);
    if settle(&agent).await {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (rss, hwm) = rss_kib(agent.pid());
        row(
            rows,
            format!("(c) agent RSS after a restart, {count} (peak)"),
            format!(
                "{:.1} MiB ({:.1})",
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            ),
            "< 40 MiB at 1000",
            (count >= 1000).then_some(rss < 40 * 1024),
        );
    }
}

#[tokio::main]
async fn main() {
    let config = Config::from_env();
    ensure_test_image().await;
    let client = common::docker().await;
    let owner = TestOwner::new("bench-agent");
    println!(
        "dockwright agent benchmark — owner {}, {} CPUs, load {}",
        owner.name(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let mut rows = Vec::new();
    latencies(&client, &owner, &config, &mut rows).await;
    remove_all(&client, &owner.label_filter()).await;
    idle_and_scale(&client, &owner, &config, &mut rows).await;
    println!("  cleaning up…");
    remove_all(&client, &owner.label_filter()).await;
    drop(owner);

    println!("\nsummary");
    println!("  {:<46} {:>22}   {:<24}", "measure", "measured", "target");
    for r in &rows {
        let verdict = match r.ok {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "  {:<46} {:>22}   {:<24} {verdict}",
            r.what, r.measured, r.target
        );
    }
}
