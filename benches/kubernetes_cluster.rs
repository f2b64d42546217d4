//! Kubernetes benchmark against the REAL API server of the test control plane
//! (`scripts/start-kube.sh`: kube-apiserver 1.20 on loopback, node `dw-node-1` = this machine).
//! Run: `. /tmp/dockwright-test/kube/env && cargo bench --bench kubernetes_cluster`.
//!
//! The agent is this build's `dockwright agent --kubernetes` as a process on the host (admin
//! kubeconfig, the node's name), against the real daemon. The figures:
//! - create → Ready: from the bench's `create` call to the first watch event whose node entry
//!   says Ready for the object's generation; one object at a time (20 times), then 200 at once;
//! - API requests the agent makes per reconcile: the API server's own `apiserver_request_total`
//!   before and after, minus the requests the bench makes itself (its creates, deletes, one
//!   list+watch), divided by the agent's `dockwright_reconciles_total`;
//! - agent RSS idle, with 200 objects converged, and after they are deleted.
//!
//! Printed beside the figures of `cargo bench --bench kubernetes` (the request-level mock)
//! in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dockwright::api::Container;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;

const IMAGE: &str = "dockwright-test/busybox:latest";

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

/// `apiserver_request_total` summed by verb, for dockwright.dev resources, events, secrets
/// and nodes.
fn api_requests(kubeconfig: &str) -> BTreeMap<String, f64> {
    let text = kubectl(kubeconfig, &["get", "--raw", "/metrics"]);
    let mut by: BTreeMap<String, f64> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let (group, resource) = (label("group"), label("resource"));
        let counted = group == "dockwright.dev"
            || matches!(resource.as_str(), "events" | "secrets" | "nodes");
        if !counted {
            continue;
        }
        let sub = label("subresource");
        let key = format!(
            "{} {}{}",
            label("verb"),
            resource,
            if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            }
        );
        *by.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    by
}

fn agent_metric(port: u16, name: &str) -> f64 {
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

fn object(namespace: &str, name: &str) -> Container {
    let doc = serde_json::json!({
        "apiVersion": "dockwright.dev/v1alpha1",
        "kind": "Container",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "image": IMAGE, "imagePullPolicy": "Never", "command": ["sleep", "3600"] },
    });
    serde_json::from_value(doc).expect("a valid Container")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// When each object was first seen Ready on `node`, by name (fed by one watch).
type ReadyAt = Arc<Mutex<BTreeMap<String, Instant>>>;

fn ready_on(c: &Container, _node: &str) -> bool {
    let generation = c.metadata.generation;
    c.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

async fn wait_ready(ready: &ReadyAt, names: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = {
            let r = ready.lock().expect("ready map");
            names.iter().all(|n| r.contains_key(n))
        };
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "objects not Ready within 10 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let (Some(kubeconfig), Some(node)) = (
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
    let namespace = format!("dwbench-{pid}");
    let owner = format!("dwbench-kube-{pid}");
    kubectl(&kubeconfig, &["create", "namespace", &namespace]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");

    let agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_dockwright"))
            .env("KUBECONFIG", &kubeconfig)
            .args([
                "agent",
                "--kubernetes",
                "--node-name",
                &node,
                "--owner",
                &owner,
            ])
            .args(["--listen", &format!("127.0.0.1:{port}"), "--resync", "30m"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent"),
    );
    let agent_pid = agent.0.id();
    let start = Instant::now();
    while Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/readyz")])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "agent not ready in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_mib(agent_pid);

    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let api: Api<Container> = Api::namespaced(client, &namespace);
    let ready: ReadyAt = Arc::default();
    {
        let (api, ready, node) = (api.clone(), ready.clone(), node.clone());
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = events.next().await {
                let objects = match event {
                    watcher::Event::Apply(c) | watcher::Event::InitApply(c) => vec![c],
                    _ => continue,
                };
                for c in objects {
                    if ready_on(&c, &node) {
                        let name = c.metadata.name.clone().unwrap_or_default();
                        ready
                            .lock()
                            .expect("ready map")
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                }
            }
        });
    }
    let requests_before = api_requests(&kubeconfig);
    let reconciles_before = agent_metric(port, "dockwright_reconciles_total");

    // One object at a time.
    let mut single = Vec::new();
    for i in 0..20 {
        let name = format!("one-{i}");
        let t0 = Instant::now();
        api.create(&PostParams::default(), &object(&namespace, &name))
            .await
            .expect("create");
        wait_ready(&ready, std::slice::from_ref(&name)).await;
        single.push(ready.lock().expect("ready map")[&name] - t0);
    }
    // 200 at once.
    let names: Vec<String> = (0..200).map(|i| format!("many-{i}")).collect();
    let mut created = BTreeMap::new();
    for name in &names {
        created.insert(name.clone(), Instant::now());
        api.create(&PostParams::default(), &object(&namespace, name))
            .await
            .expect("create");
    }
    wait_ready(&ready, &names).await;
    let mut many: Vec<Duration> = {
        let r = ready.lock().expect("ready map");
        names.iter().map(|n| r[n] - created[n]).collect()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_loaded = rss_mib(agent_pid);
    let requests_after = api_requests(&kubeconfig);
    let reconciles = agent_metric(port, "dockwright_reconciles_total") - reconciles_before;

    // Deletion through the finalizers.
    let t0 = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete all");
    loop {
        let left = api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len();
        if left == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "{left} objects not gone in 10 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let delete_all = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_mib(agent_pid);
    drop(agent);
    kubectl(
        &kubeconfig,
        &["delete", "namespace", &namespace, "--wait=false"],
    );

    single.sort();
    many.sort();
    let objects = 220.0;
    println!(
        "kubernetes_cluster: real kube-apiserver 1.20, one node (this machine), agent as a process"
    );
    println!(
        "create -> Ready, one at a time (20): p50 {:?}  p95 {:?}",
        percentile(&single, 0.5),
        percentile(&single, 0.95)
    );
    println!(
        "create -> Ready, 200 at once:       p50 {:?}  p95 {:?}  (last {:?})",
        percentile(&many, 0.5),
        percentile(&many, 0.95),
        many.last().copied().unwrap_or_default()
    );
    println!("delete 220 -> all gone (finalizers):  {delete_all:?}");
    println!("agent reconciles while converging 220 objects: {reconciles:.0}");
    println!("API requests by the agent (apiserver_request_total; the bench's own, node traffic and watches left out):");
    let mut agent_total = 0.0;
    for (key, after) in &requests_after {
        let n = after - requests_before.get(key).copied().unwrap_or(0.0);
        // The bench's own creates, deletion, polling and watch; the kubelet's and controller
        // manager's node traffic. What is left is the agent's.
        let (verb, resource) = key.split_once(' ').unwrap_or((key.as_str(), ""));
        if resource == "containers"
            && matches!(verb, "POST" | "DELETECOLLECTION" | "LIST" | "WATCH")
            || resource.starts_with("nodes")
            || verb == "WATCH"
        {
            continue;
        }
        if n > 0.0 {
            println!("  {key:<32} {n:>6.0}  ({:.2} per object)", n / objects);
            agent_total += n;
        }
    }
    println!(
        "  total {agent_total:.0}: {:.2} per object, {:.2} per reconcile",
        agent_total / objects,
        agent_total / reconciles.max(1.0)
    );
    println!("agent RSS: idle {rss_idle:.1} MiB, 220 objects {rss_loaded:.1} MiB, after delete {rss_after:.1} MiB");
}
