//! Kubernetes mode at cluster scale, against the REAL API server of the test control plane
//! (`scripts/start-kube.sh`: kube-apiserver 1.20 on loopback).
//! Run: `. /tmp/dockwright-test/kube/env && cargo bench --bench kubernetes_scale -- [A] [G]`
//! (A agents, default 30; G foreign objects, default 2000).
//!
//! Everything is this build's binary as processes on the host, with the admin kubeconfig: one
//! placement controller, A node agents (one Node object each, created by the bench, no kubelet
//! behind them; owners distinct, resync 30 min) and one agent on the real node (`dw-node-1`,
//! this machine's daemon). Printed:
//! - watch events per change to an object no running agent is placed on: the API server's own
//!   `apiserver_watch_events_total` (every kind) before and after 20 spec edits of one of G
//!   Containers placed on a Node without an agent, once the controller is idle, minus the events
//!   of an idle window as long (heartbeats); once with the A agents running and once after they
//!   are stopped, in the same run. Equal figures mean the agents receive nothing of
//!   it, whatever A is;
//! - agent RSS (mean and max over the A agents) before the G objects exist and after;
//! - the size of a parent's status (and of the whole object) placed on 1, 10 and A nodes
//!   (`replicas: 0`, so the A agents, which share this machine's daemon, have no container
//!   names to collide on, and each reports Ready);
//! - the controller's RSS with G parents and G Placements, and its rate while creating them
//!   (Placements per second, from `dockwright_controller_writes_total`);
//! - create → Ready (the parent's aggregate `Ready` for its generation, from a watch) of 20
//!   `Container`s one at a time on the real node (each a real container created and started),
//!   then of 1,000 at once with `replicas: 0` (the whole control path, parent → controller →
//!   Placement → agent pass → Placement status → aggregate, without 1,000 daemon round trips
//!   on this 2-core machine; the daemon's own create+start cost is in the `agent` bench).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockwright::api::Container;
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Resource;
use serde::de::DeserializeOwned;

const IMAGE: &str = "dockwright-test/busybox:latest";
const EDITS: usize = 20;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn kubectl(kubeconfig: &str, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `apiserver_watch_events_total` summed over every kind.
fn watch_events(kubeconfig: &str) -> f64 {
    kubectl(kubeconfig, &["get", "--raw", "/metrics"])
        .lines()
        .filter(|l| l.starts_with("apiserver_watch_events_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn metric(port: u16, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `n` distinct free ports, all held at once while they are picked (so no two processes of the
/// bench get the same one, which would leave one unable to serve and another answering for it).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect()
}

/// A process of the bench, killed when dropped.
struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn start(kubeconfig: &str, port: u16, args: &[&str]) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_dockwright"))
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .args(args)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dockwright");
        Process { child, port }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics when the process has exited.
    fn assert_alive(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what} exited: {status}");
        }
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        while !Command::new("curl")
            .args(["-fsS", &format!("http://127.0.0.1:{}/readyz", self.port)])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
        {
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "not ready in 10 min"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

fn container(namespace: &str, name: &str, node: &str) -> Container {
    placed(namespace, name, 1, serde_json::json!({ "nodeName": node }))
}

/// A Container with `replicas` replicas and `placement` (nodeName / nodeSelector) merged
/// into its spec.
fn placed(namespace: &str, name: &str, replicas: u32, placement: serde_json::Value) -> Container {
    let mut spec = serde_json::json!({
        "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"], "replicas": replicas,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), placement.as_object()) {
        spec.extend(extra.clone());
    }
    from_json(serde_json::json!({
        "apiVersion": "dockwright.dev/v1alpha1",
        "kind": "Container",
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    }))
}

/// Ready for its current generation on all the nodes it is placed on (at least one).
fn ready(status: Option<&dockwright::api::AggregateStatus>, generation: Option<i64>) -> bool {
    status.is_some_and(|s| {
        s.observed_generation == generation
            && s.desired_nodes > 0
            && s.ready_nodes == s.desired_nodes
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// When each object was first seen Ready, by name (fed by one watch per kind).
type ReadyAt = Arc<Mutex<BTreeMap<String, Instant>>>;

fn track_ready<K>(api: Api<K>, ready: ReadyAt, is_ready: fn(&K) -> bool)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(event)) = events.next().await {
            let (watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event else {
                continue;
            };
            if is_ready(&o) {
                let name = o.meta().name.clone().unwrap_or_default();
                ready
                    .lock()
                    .expect("ready map")
                    .entry(name)
                    .or_insert_with(Instant::now);
            }
        }
    });
}

async fn wait_all(ready: &ReadyAt, names: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let missing = {
            let r = ready.lock().expect("ready map");
            names.iter().filter(|n| !r.contains_key(*n)).count()
        };
        if missing == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} objects not Ready within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until `count()` reaches `want`.
async fn wait_count(what: &str, want: usize, limit: Duration, count: impl Fn() -> usize) {
    let deadline = Instant::now() + limit;
    loop {
        let n = count();
        if n >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {n}/{want} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn count_placements(kubeconfig: &str, namespace: &str, selector: &str) -> usize {
    kubectl(
        kubeconfig,
        &[
            "-n",
            namespace,
            "get",
            "placements.dockwright.dev",
            "-l",
            selector,
            "-o",
            "name",
        ],
    )
    .lines()
    .count()
}

/// Waits until the controller has written nothing for 5 s (done with earlier work), at most
/// 10 min.
async fn settle(controller_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = metric(controller_port, "dockwright_controller_writes_total");
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = metric(controller_port, "dockwright_controller_writes_total");
        if now == last {
            return;
        }
        last = now;
    }
}

/// Watch events the API server sends because of `EDITS` edits of one foreign Container, per
/// edit: the events of the edit window minus those of an idle window as long just before it
/// (node and Lease heartbeats go on all the time).
async fn events_per_foreign_edit(
    kubeconfig: &str,
    controller_port: u16,
    api: &Api<Container>,
    name: &str,
) -> f64 {
    settle(controller_port).await;
    let pause = Duration::from_millis(300);
    let tail = Duration::from_secs(3);
    let idle_start = watch_events(kubeconfig);
    tokio::time::sleep(pause * EDITS as u32 + tail).await;
    let before = watch_events(kubeconfig);
    for i in 0..EDITS {
        let patch = serde_json::json!({ "spec": { "env": [{ "name": "EDIT", "value": format!("{i}-{}", std::process::id()) }] } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("edit");
        tokio::time::sleep(pause).await;
    }
    tokio::time::sleep(tail).await;
    let during = watch_events(kubeconfig) - before;
    (during - (before - idle_start)) / EDITS as f64
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let agents: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(30);
    let foreign: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let (Some(kubeconfig), Some(real_node)) = (
        env("DOCKWRIGHT_TEST_KUBECONFIG"),
        env("DOCKWRIGHT_TEST_KUBE_NODE"),
    ) else {
        println!(
            "no test cluster: run scripts/start-kube.sh and source /tmp/dockwright-test/kube/env"
        );
        return;
    };
    dockwright::tls::install_crypto_provider();
    let root = env!("CARGO_MANIFEST_DIR");
    kubectl(&kubeconfig, &["apply", "-f", &format!("{root}/crds")]);
    let pid = std::process::id();
    let run = format!("dwscale-{pid}");
    let namespace = run.clone();
    kubectl(&kubeconfig, &["create", "namespace", &namespace]);
    let _ = kubectl(&kubeconfig, &["delete", "node", "-l", "dwscale=true"]);

    // The Nodes: A with an agent each, one without any (where the foreign objects go).
    let node_names: Vec<String> = (0..agents).map(|i| format!("{run}-n{i}")).collect();
    let lonely = format!("{run}-noagent");
    let mut nodes_yaml = String::new();
    for (i, name) in node_names.iter().chain([&lonely]).enumerate() {
        let tier = if i < 10 { "ten" } else { "rest" };
        let pool = if name == &lonely { "none" } else { "agents" };
        nodes_yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{ dwscale: \"true\", dwscale-run: \"{run}\", dwscale-pool: {pool}, dwscale-tier: {tier}, dwscale-index: \"{i}\" }}\n"
        ));
    }
    let nodes_file = std::env::temp_dir().join(format!("{run}-nodes.yaml"));
    std::fs::write(&nodes_file, nodes_yaml).expect("write nodes");
    kubectl(
        &kubeconfig,
        &["apply", "-f", nodes_file.to_str().unwrap_or_default()],
    );

    let mut ports = free_ports(agents + 2).into_iter();
    let mut port = move || ports.next().expect("enough ports");
    let controller = Process::start(
        &kubeconfig,
        port(),
        &[
            "controller",
            "--lease-namespace",
            &namespace,
            "--identity",
            "bench",
        ],
    );
    controller.wait_ready();
    let mut node_agents: Vec<Process> = node_names
        .iter()
        .enumerate()
        .map(|(i, node)| {
            Process::start(
                &kubeconfig,
                port(),
                &[
                    "agent",
                    "--kubernetes",
                    "--node-name",
                    node,
                    "--owner",
                    &format!("{run}-{i}"),
                    "--resync",
                    "30m",
                ],
            )
        })
        .collect();
    let mut real_agent = Process::start(
        &kubeconfig,
        port(),
        &[
            "agent",
            "--kubernetes",
            "--node-name",
            &real_node,
            "--owner",
            &format!("{run}-real"),
            "--resync",
            "30m",
        ],
    );
    for agent in node_agents.iter().chain([&real_agent]) {
        agent.wait_ready();
    }
    let check_alive = |agents: &mut [Process], real: &mut Process| {
        for (i, agent) in agents.iter_mut().enumerate() {
            agent.assert_alive(&format!("agent {i}"));
        }
        real.assert_alive("the real node's agent");
    };
    check_alive(&mut node_agents, &mut real_agent);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = |agents: &[Process]| -> (f64, f64) {
        let all: Vec<f64> = agents.iter().map(|a| rss_mib(a.pid())).collect();
        let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
        (mean, all.iter().copied().fold(0.0, f64::max))
    };
    let rss_before = rss(&node_agents);
    let controller_rss_before = rss_mib(controller.pid());

    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let containers: Api<Container> = Api::namespaced(client.clone(), &namespace);
    let ready_containers: ReadyAt = Arc::default();
    track_ready(
        containers.clone(),
        ready_containers.clone(),
        |c: &Container| ready(c.status.as_ref(), c.metadata.generation),
    );

    // G foreign objects, all on the Node without an agent.
    let writes_before = metric(controller.port, "dockwright_controller_writes_total");
    let t0 = Instant::now();
    for i in 0..foreign {
        containers
            .create(
                &PostParams::default(),
                &container(&namespace, &format!("foreign-{i}"), &lonely),
            )
            .await
            .expect("create");
    }
    let created_in = t0.elapsed();
    let selector = format!("dockwright.dev/node={lonely}");
    wait_count(
        "foreign Placements",
        foreign,
        Duration::from_secs(1800),
        || count_placements(&kubeconfig, &namespace, &selector),
    )
    .await;
    let placed_in = t0.elapsed();
    let controller_writes =
        metric(controller.port, "dockwright_controller_writes_total") - writes_before;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after = rss(&node_agents);
    let controller_rss_after = rss_mib(controller.pid());

    check_alive(&mut node_agents, &mut real_agent);
    // Fan-out of one foreign object's edits, with the agents and then without them.
    let with_agents =
        events_per_foreign_edit(&kubeconfig, controller.port, &containers, "foreign-0").await;

    // Status size of one parent placed on 1, 10 and A nodes.
    let mut sizes = Vec::new();
    for (name, placement, nodes) in [
        (
            "wide-1",
            serde_json::json!({ "nodeName": node_names[0] }),
            1,
        ),
        (
            "wide-10",
            serde_json::json!({ "nodeSelector": { "dwscale-run": run, "dwscale-tier": "ten" } }),
            agents.min(10),
        ),
        (
            "wide-all",
            serde_json::json!({ "nodeSelector": { "dwscale-run": run, "dwscale-pool": "agents" } }),
            agents,
        ),
    ] {
        containers
            .create(
                &PostParams::default(),
                &placed(&namespace, name, 0, placement),
            )
            .await
            .expect("create");
        wait_all(
            &ready_containers,
            &[name.to_string()],
            Duration::from_secs(300),
        )
        .await;
        let obj = kubectl(
            &kubeconfig,
            &[
                "-n",
                &namespace,
                "get",
                "containers.dockwright.dev",
                name,
                "-o",
                "json",
            ],
        );
        let value: serde_json::Value = serde_json::from_str(&obj).expect("json");
        let status = serde_json::to_string(&value["status"]).unwrap_or_default();
        sizes.push((nodes, status.len(), obj.len()));
    }

    // create -> Ready on the real node: 20 one at a time, then 1,000 at once.
    let mut single = Vec::new();
    for i in 0..20 {
        let name = format!("one-{i}");
        let t0 = Instant::now();
        containers
            .create(
                &PostParams::default(),
                &container(&namespace, &name, &real_node),
            )
            .await
            .expect("create");
        wait_all(
            &ready_containers,
            std::slice::from_ref(&name),
            Duration::from_secs(120),
        )
        .await;
        single.push(ready_containers.lock().expect("ready map")[&name] - t0);
    }
    let names: Vec<String> = (0..1000).map(|i| format!("many-{i}")).collect();
    let mut created = BTreeMap::new();
    let reconciles_before = metric(controller.port, "dockwright_controller_reconciles_total");
    let t_many = Instant::now();
    for name in &names {
        created.insert(name.clone(), Instant::now());
        containers
            .create(
                &PostParams::default(),
                &placed(
                    &namespace,
                    name,
                    0,
                    serde_json::json!({ "nodeName": real_node }),
                ),
            )
            .await
            .expect("create");
    }
    wait_all(&ready_containers, &names, Duration::from_secs(1200)).await;
    let many_all = t_many.elapsed();
    let reconciles =
        metric(controller.port, "dockwright_controller_reconciles_total") - reconciles_before;
    let mut many: Vec<Duration> = {
        let r = ready_containers.lock().expect("ready map");
        names.iter().map(|n| r[n] - created[n]).collect()
    };

    // The same fan-out with the A agents stopped.
    check_alive(&mut node_agents, &mut real_agent);
    node_agents.clear();
    let without_agents =
        events_per_foreign_edit(&kubeconfig, controller.port, &containers, "foreign-0").await;
    let controller_rss_end = rss_mib(controller.pid());

    // Clean up: the real node's containers go with their Placements (its agent still runs).
    kubectl(
        &kubeconfig,
        &["delete", "namespace", &namespace, "--wait=false"],
    );
    let _ = kubectl(
        &kubeconfig,
        &[
            "delete",
            "node",
            "-l",
            &format!("dwscale-run={run}"),
            "--wait=false",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline
        && !kubectl(
            &kubeconfig,
            &[
                "get",
                "namespace",
                &namespace,
                "--ignore-not-found",
                "-o",
                "name",
            ],
        )
        .trim()
        .is_empty()
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(real_agent);
    drop(controller);

    single.sort();
    many.sort();
    println!("kubernetes_scale: real kube-apiserver 1.20; {agents} node agents (one Node each), one agent on the real node, one controller; {foreign} foreign objects on a Node without an agent");
    println!(
        "watch events per edit of one foreign object (apiserver_watch_events_total, all kinds, {EDITS} edits): with {agents} agents {with_agents:.2}, without them {without_agents:.2}, difference {:.2}",
        with_agents - without_agents
    );
    println!(
        "agent RSS (mean / max over {agents}): before the foreign objects {:.1} / {:.1} MiB, with {foreign} {:.1} / {:.1} MiB (mean difference {:+.1} MiB)",
        rss_before.0, rss_before.1, rss_after.0, rss_after.1, rss_after.0 - rss_before.0
    );
    for (nodes, status, object) in &sizes {
        println!(
            "parent placed on {nodes:>4} nodes: status {status} bytes, whole object {object} bytes"
        );
    }
    println!(
        "controller: {foreign} parents created in {created_in:.1?}, their {foreign} Placements all there after {placed_in:.1?} ({:.0} Placements/s, {controller_writes:.0} writes)",
        foreign as f64 / placed_in.as_secs_f64()
    );
    println!(
        "controller RSS: {controller_rss_before:.1} MiB before, {controller_rss_after:.1} MiB with {foreign} parents + Placements, {controller_rss_end:.1} MiB at the end (+1,000 on the real node, {} wide)",
        sizes.len()
    );
    println!(
        "create -> Ready (aggregate), 20 Containers one at a time: p50 {:.0?}  p95 {:.0?}",
        percentile(&single, 0.5),
        percentile(&single, 0.95)
    );
    println!(
        "create -> Ready (aggregate), 1,000 at once (replicas: 0): p50 {:.1?}  p95 {:.1?}  all {many_all:.1?}; controller reconciles {reconciles:.0} ({:.0}/s)",
        percentile(&many, 0.5),
        percentile(&many, 0.95),
        reconciles / many_all.as_secs_f64()
    );
}
