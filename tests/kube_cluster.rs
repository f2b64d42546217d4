//! The Kubernetes add-on against a real control plane (scripts/start-kube.sh: kube-apiserver,
//! controller manager, scheduler and a kubelet on this machine's Docker daemon, 1.20), used the
//! way its user does: `kubectl apply -f crds/`, the chart installed, upgraded and uninstalled
//! with Helm's own SDK (scripts/helm-release.py), the agent in its DaemonSet pod (image built
//! locally by scripts/build-agent-image.sh from this test build's binary, `pullPolicy: Never`),
//! resources applied with kubectl and checked on the daemon.
//!
//! The cluster comes from `scripts/test.sh` (it sources `$DOCKWRIGHT_TEST_STATE/kube/env`).
//! Without it the tests say so and pass, except under CI (`CI=true`), where a missing cluster
//! fails. Everything runs as the agent's ServiceAccount inside the pod: a verb missing from the
//! chart's ClusterRole fails a step here. The one node has room for one agent, so the chart
//! scenario is one test whose steps run in order.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::node_daemon::NodeDaemon;
use common::{run, Run};

/// The test cluster, from the variables scripts/start-kube.sh writes.
struct Cluster {
    kubeconfig: String,
    node: String,
    state: PathBuf,
    helm_python: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cluster() -> Option<Cluster> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("DOCKWRIGHT_TEST_KUBECONFIG"),
        var("DOCKWRIGHT_TEST_KUBE_NODE"),
        var("DOCKWRIGHT_TEST_KUBE_STATE"),
    ) {
        (Some(kubeconfig), Some(node), Some(state)) => Some(Cluster {
            kubeconfig,
            node,
            state: PathBuf::from(state),
            helm_python: var("DOCKWRIGHT_TEST_HELM_PYTHON").unwrap_or_else(|| "python3".into()),
        }),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("no test cluster: .ci/run must run scripts/start-kube.sh and source its env (scripts/test.sh does)")
        }
        _ => {
            eprintln!("no test cluster (run through scripts/test.sh, which starts one): skipped");
            None
        }
    }
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> Run {
        run(Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args))
    }

    /// kubectl that must succeed; its stdout.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.success(), "kubectl {args:?}: {out}");
        out.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl_ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {text}"))
    }

    /// `kubectl apply -f` of a YAML text.
    fn apply(&self, yaml: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("manifest.yaml");
        std::fs::write(&file, yaml).unwrap();
        self.kubectl_ok(&["apply", "-f", file.to_str().unwrap()]);
    }

    /// A merge patch of a `Container`'s spec, as `kubectl patch --type=merge` sends it.
    fn patch_spec(&self, namespace: &str, name: &str, spec: &str) {
        let patch = format!(r#"{{"spec":{spec}}}"#);
        self.kubectl_ok(&[
            "-n",
            namespace,
            "patch",
            "containers.dockwright.dev",
            name,
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    fn helm(&self, args: &[&str]) -> Run {
        run(Command::new(&self.helm_python)
            .env("KUBECONFIG", &self.kubeconfig)
            .arg(root().join("scripts/helm-release.py"))
            .args(args))
    }
}

/// Polls `probe` every 300 ms until it gives `Some`, for at most `secs` seconds.
fn wait_for<T>(what: &str, secs: u64, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// One managed container on the daemon.
#[derive(Debug, Clone, PartialEq)]
struct Managed {
    id: String,
    name: String,
    state: String,
}

/// The daemon's containers of `owner` for one resource (`Container/<ns>/<name>`), by name.
fn managed(owner: &str, namespace: &str, name: &str) -> Vec<Managed> {
    managed_on(None, owner, namespace, name)
}

/// [`managed`] on the daemon at `host` (`None`: the machine's own).
fn managed_on(host: Option<&str>, owner: &str, namespace: &str, name: &str) -> Vec<Managed> {
    let mut docker = Command::new("docker");
    if let Some(host) = host {
        docker.args(["-H", host]);
    }
    let out = run(docker.args([
        "ps",
        "-a",
        "--filter",
        &format!("label=dockwright.dev/owner={owner}"),
        "--filter",
        &format!("label=dockwright.dev/resource=Container/{namespace}/{name}"),
        "--format",
        "{{.ID}}\t{{.Names}}\t{{.State}}",
    ]));
    assert!(out.success(), "docker ps: {out}");
    let mut all: Vec<Managed> = out
        .stdout
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            Some(Managed {
                id: f.next()?.to_string(),
                name: f.next()?.to_string(),
                state: f.next()?.to_string(),
            })
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

fn inspect(id: &str, format: &str) -> String {
    let out = run(Command::new("docker").args(["inspect", "--format", format, id]));
    assert!(out.success(), "docker inspect {id}: {out}");
    out.stdout.trim().to_string()
}

/// A resource's aggregate status when it says Ready=True on all `nodes` nodes it is placed on,
/// for its current generation.
fn ready_on(obj: &Value, nodes: i64) -> Option<Value> {
    let generation = obj["metadata"]["generation"].as_i64()?;
    let status = &obj["status"];
    let ready = status["conditions"]
        .as_array()?
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let counts = [
        &status["desiredNodes"],
        &status["currentNodes"],
        &status["updatedNodes"],
        &status["readyNodes"],
    ]
    .iter()
    .all(|n| n.as_i64() == Some(nodes));
    (ready
        && counts
        && status["unavailableNodes"].as_i64() == Some(0)
        && status["ready"] == format!("{nodes}/{nodes}").as_str()
        && status["observedGeneration"].as_i64() == Some(generation))
    .then(|| status.clone())
}

/// The status of a resource's `Placement` on `node`, once it exists.
fn placement_status(
    c: &Cluster,
    namespace: &str,
    kind: &str,
    name: &str,
    node: &str,
) -> Option<Value> {
    let out = c.kubectl(&[
        "-n",
        namespace,
        "get",
        "placements.dockwright.dev",
        &format!("{}.{name}.{node}", kind.to_ascii_lowercase()),
        "-o",
        "json",
    ]);
    if !out.success() {
        return None;
    }
    let obj: Value = serde_json::from_str(&out.stdout).ok()?;
    Some(obj)
}

fn container_yaml(namespace: &str, name: &str, extra: &str) -> String {
    format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  image: {image}\n  imagePullPolicy: Never\n  command: [sleep, \"3600\"]\n{extra}",
        image = common::TEST_IMAGE
    )
}

/// Applies the CRDs as a user does, checked first by the server (`--dry-run=server`): every
/// API server from the chart's floor (1.20) up must accept them.
fn install_crds(c: &Cluster) {
    let crds = root().join("crds");
    c.kubectl_ok(&["apply", "--dry-run=server", "-f", crds.to_str().unwrap()]);
    let chart_crds = root().join("charts/dockwright/crds");
    c.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-f",
        chart_crds.to_str().unwrap(),
    ]);
    c.kubectl_ok(&["apply", "-f", crds.to_str().unwrap()]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/containers.dockwright.dev",
        "crd/images.dockwright.dev",
        "crd/networks.dockwright.dev",
        "crd/volumes.dockwright.dev",
        "crd/placements.dockwright.dev",
    ]);
}

#[test]
fn crds_are_accepted_by_a_real_api_server() {
    let Some(c) = cluster() else { return };
    install_crds(&c);
    let served = c.json(&["get", "crd", "containers.dockwright.dev"]);
    assert_eq!(served["spec"]["versions"][0]["name"], "v1alpha1");
}

/// The agent opens a real TLS connection to the API server (before the fix it panicked: no
/// rustls crypto provider). A token the server refuses must give a clear error and exit 2.
#[test]
fn the_agent_reaches_a_tls_api_server_and_reports_a_refused_token() {
    let Some(c) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let bad = regex::Regex::new(r"(?m)^(\s*token:).*$")
        .unwrap()
        .replace(&text, "$1 not-a-valid-token");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, bad.as_ref()).unwrap();
    let owner = common::TestOwner::new("kube-tls");
    // `timeout`: a hang would be a failure too (exit 124).
    let out = run(Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_dockwright"))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["agent", "--kubernetes", "--node-name", &c.node])
        .args(["--owner", owner.name(), "--listen", "127.0.0.1:0"]));
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert!(!out.stderr.contains("CryptoProvider"), "{out}");
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("401") || out.stderr.to_lowercase().contains("unauthorized"),
        "the refused token is named: {out}"
    );
    // The controller likewise: a clear error at start, not a Lease campaign retried for ever.
    let out = run(Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_dockwright"))
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["controller", "--listen", "127.0.0.1:0"]));
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert_eq!(out.code, Some(2), "{out}");
    assert!(
        out.stderr.contains("401") || out.stderr.to_lowercase().contains("unauthorized"),
        "the refused token is named: {out}"
    );
}

/// The values every install of the scenario uses.
fn chart_values(image: &str, owner: &str, ports: (u16, u16), state_dir: &Path) -> Value {
    let (repository, tag) = image.rsplit_once(':').unwrap();
    let (port, controller_port) = ports;
    serde_json::json!({
        "image": { "repository": repository, "tag": tag, "pullPolicy": "Never" },
        "owner": owner,
        "logFormat": "text",
        "extraArgs": ["--resync=1m", "-v"],
        "hostNetwork": true,
        "stateDir": state_dir.to_str().unwrap(),
        "extraEnv": [
            { "name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1" },
            { "name": "KUBERNETES_SERVICE_PORT", "value": "6443" },
        ],
        "metrics": { "port": port, "service": { "enabled": true, "type": "ClusterIP", "annotations": {} } },
        // One replica: the one node has room for one pod on each host port.
        "controller": { "replicas": 1, "metrics": { "port": controller_port }, "extraArgs": ["-v"] },
    })
}

/// The release's pod of `app` (`dockwright`: the agent; `dockwright-controller`), once
/// Ready (through its own probes); its name.
fn ready_pod(c: &Cluster, namespace: &str, app: &str, other_than: Option<&str>) -> String {
    wait_for(&format!("the {app} pod to be Ready"), 180, || {
        let selector = format!("app.kubernetes.io/name={app}");
        let pods = c.json(&["-n", namespace, "get", "pods", "-l", &selector]);
        pods["items"].as_array()?.iter().find_map(|p| {
            let name = p["metadata"]["name"].as_str()?;
            let ready = p["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let deleting = !p["metadata"]["deletionTimestamp"].is_null();
            (ready && !deleting && Some(name) != other_than).then(|| name.to_string())
        })
    })
}

fn logs(c: &Cluster, namespace: &str, workload: &str) -> String {
    c.kubectl(&["-n", namespace, "logs", workload, "--tail", "300"])
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The two scenarios that run a placement controller take turns: two controllers at once would
/// both act on every resource of the cluster.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn the_chart_installs_and_its_agent_converges_the_node() {
    let Some(c) = cluster() else { return };
    let _serial = serial();
    common::ensure_test_image_blocking();
    install_crds(&c);

    // The agent image, from this test build's binary.
    let image = format!(
        "dockwright-e2e:{}",
        common::unique("t").trim_start_matches("t-")
    );
    let build = run(
        Command::new(root().join("scripts/build-agent-image.sh")).args([
            "--binary",
            env!("CARGO_BIN_EXE_dockwright"),
            "--tag",
            &image,
            "--no-smoke",
        ]),
    );
    assert!(build.success(), "build-agent-image.sh: {build}");
    let _image_guard = RemoveImage(image.clone());

    let owner = common::TestOwner::new("kube");
    let release_ns = common::unique("dw-sys");
    let apps = common::unique("apps");
    let state_dir = c.state.join(format!("agent-state-{apps}"));
    let values_file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    let ports = (free_port(), free_port());
    std::fs::write(
        values_file.path(),
        chart_values(&image, owner.name(), ports, &state_dir).to_string(),
    )
    .unwrap();
    let values = values_file.path().to_str().unwrap().to_string();
    // What a killed earlier run left (its agent would fight this one's): gone first.
    let namespaces = c.json(&["get", "namespaces"]);
    let stale: Vec<String> = namespaces["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("dw-sys-") || n.starts_with("apps-"))
        .map(str::to_string)
        .collect();
    for ns in &stale {
        Teardown::new(&c, ns.clone(), ns.clone()).run();
    }
    let _teardown = Teardown::new(&c, release_ns.clone(), apps.clone());

    // helm install: the DaemonSet's pod becomes Ready through its own probes.
    let installed = c.helm(&[
        "install",
        "dockwright",
        "--namespace",
        &release_ns,
        "--values",
        &values,
        "--wait",
        "240",
    ]);
    assert!(installed.success(), "helm install: {installed}");
    let pod = ready_pod(&c, &release_ns, "dockwright", None);
    ready_pod(&c, &release_ns, "dockwright-controller", None);
    c.kubectl_ok(&["create", "namespace", &apps]);

    // A Container converges on the daemon; status and Events are written.
    c.apply(&container_yaml(
        &apps,
        "web",
        "  env: [{ name: MODE, value: one }]\n",
    ));
    c.apply(&container_yaml(&apps, "other", ""));
    for name in ["web", "other"] {
        wait_for(&format!("{name} Ready"), 90, || {
            ready_on(
                &c.json(&["-n", &apps, "get", "containers.dockwright.dev", name]),
                1,
            )
        });
        let on_daemon = managed(owner.name(), &apps, name);
        assert_eq!(on_daemon.len(), 1, "{name}: {on_daemon:?}");
        assert_eq!(on_daemon[0].state, "running");
    }
    let other_id = managed(owner.name(), &apps, "other")[0].id.clone();

    // An edit recreates exactly what changed.
    let web_before = managed(owner.name(), &apps, "web")[0].id.clone();
    c.apply(&container_yaml(
        &apps,
        "web",
        "  env: [{ name: MODE, value: two }]\n",
    ));
    let web_after = wait_for("web recreated", 90, || {
        let now = managed(owner.name(), &apps, "web");
        (now.len() == 1 && now[0].id != web_before && now[0].state == "running")
            .then(|| now[0].id.clone())
    });
    assert!(inspect(&web_after, "{{.Config.Env}}").contains("MODE=two"));
    assert_eq!(
        managed(owner.name(), &apps, "other")[0].id,
        other_id,
        "other untouched"
    );

    // Scale up and down.
    c.patch_spec(&apps, "web", r#"{"replicas":3}"#);
    wait_for("3 replicas of web", 90, || {
        let now = managed(owner.name(), &apps, "web");
        (now.len() == 3 && now.iter().all(|m| m.state == "running")).then_some(())
    });
    c.patch_spec(&apps, "web", r#"{"replicas":1}"#);
    wait_for("1 replica of web", 90, || {
        let now = managed(owner.name(), &apps, "web");
        (now.len() == 1 && now[0].state == "running").then_some(())
    });

    // state: Stopped stops it without removing it.
    c.patch_spec(&apps, "other", r#"{"state":"Stopped"}"#);
    wait_for("other stopped", 90, || {
        let now = managed(owner.name(), &apps, "other");
        (now.len() == 1 && now[0].state == "exited").then_some(())
    });
    assert_eq!(
        managed(owner.name(), &apps, "other")[0].id,
        other_id,
        "stopped, not recreated"
    );

    // A Secret through secretKeyRef reaches the container, never a label.
    c.kubectl_ok(&[
        "-n",
        &apps,
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2-e2e",
    ]);
    c.apply(&container_yaml(
        &apps,
        "with-secret",
        "  env: [{ name: PASSWORD, valueFrom: { secretKeyRef: { name: db, key: password } } }]\n",
    ));
    wait_for("with-secret Ready", 90, || {
        ready_on(
            &c.json(&[
                "-n",
                &apps,
                "get",
                "containers.dockwright.dev",
                "with-secret",
            ]),
            1,
        )
    });
    let secret_id = managed(owner.name(), &apps, "with-secret")[0].id.clone();
    assert!(inspect(&secret_id, "{{.Config.Env}}").contains("PASSWORD=hunter2-e2e"));
    assert!(!inspect(&secret_id, "{{json .Config.Labels}}").contains("hunter2"));
    assert!(
        state_dir
            .join("dockwright")
            .join(owner.name())
            .join("secret.key")
            .is_file(),
        "the secret key lives in the chart's state directory on the node"
    );

    // imagePullSecrets against the loopback auth registry.
    let reg = common::auth_registry();
    let private = format!("{}/dwtest/e2e-private:{}", reg.addr, common::unique("t"));
    push_private(&reg, &private);
    let config_json = std::fs::read_to_string(&reg.config_file).unwrap();
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), &config_json).unwrap();
    c.kubectl_ok(&[
        "-n",
        &apps,
        "create",
        "secret",
        "generic",
        "regcred",
        "--type=kubernetes.io/dockerconfigjson",
        &format!(
            "--from-file=.dockerconfigjson={}",
            secret_file.path().display()
        ),
    ]);
    c.apply(&format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: private\n  namespace: {apps}\nspec:\n  image: {private}\n  imagePullPolicy: IfNotPresent\n  imagePullSecrets: [{{ name: regcred }}]\n  command: [sleep, \"3600\"]\n"
    ));
    wait_for("private pulled with the Secret and Ready", 120, || {
        ready_on(
            &c.json(&["-n", &apps, "get", "containers.dockwright.dev", "private"]),
            1,
        )
    });

    // An Image pulled from the open loopback registry, and a Container that names it.
    let pulled = format!(
        "{}/dwtest/e2e-pulled:{}",
        common::registry(),
        common::unique("t")
    );
    for args in [
        vec!["tag", common::TEST_IMAGE, pulled.as_str()],
        vec!["push", pulled.as_str()],
        vec!["rmi", pulled.as_str()],
    ] {
        let out = run(Command::new("docker").args(&args));
        assert!(out.success(), "docker {args:?}: {out}");
    }
    c.apply(&format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata:\n  name: pulled\n  namespace: {apps}\nspec:\n  ref: {pulled}\n  pullPolicy: IfNotPresent\n"
    ));
    wait_for("the Image pulled and Ready", 120, || {
        ready_on(
            &c.json(&["-n", &apps, "get", "images.dockwright.dev", "pulled"]),
            1,
        )
    });
    let image_entry = placement_status(&c, &apps, "Image", "pulled", &c.node)
        .expect("the Image's Placement")["status"]
        .clone();
    assert!(
        image_entry["imageId"]
            .as_str()
            .is_some_and(|id| id.starts_with("sha256:")),
        "{image_entry}"
    );
    let _pulled_guard = RemoveImage(pulled.clone());

    // The chart's policy (default: the safe one) refuses privileged; nothing is created.
    c.apply(&container_yaml(&apps, "privileged", "  privileged: true\n"));
    let held = wait_for("privileged held back", 60, || {
        let entry = placement_status(&c, &apps, "Container", "privileged", &c.node)?;
        entry["status"]["lastError"]
            .as_str()
            .filter(|e| e.contains("privileged"))
            .map(str::to_string)
    });
    assert!(held.contains("policy"), "{held}");
    let placement = format!("container.privileged.{}", c.node);
    let events = wait_for("a Warning event on the held Placement", 30, || {
        let events = c.kubectl_ok(&["-n", &apps, "get", "events.events.k8s.io", "-o", "json"]);
        events.contains(&placement).then_some(events)
    });
    assert!(events.contains("Warning"), "{events}");
    assert!(managed(owner.name(), &apps, "privileged").is_empty());

    // Placement: a nodeSelector the node lacks, then the node relabelled.
    let label = common::unique("role");
    c.apply(&container_yaml(
        &apps,
        "placed",
        &format!("  nodeSelector: {{ dwtest-role: {label} }}\n"),
    ));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        managed(owner.name(), &apps, "placed").is_empty(),
        "not placed here yet"
    );
    c.kubectl_ok(&["label", "node", &c.node, &format!("dwtest-role={label}")]);
    wait_for("placed created after the relabel", 60, || {
        let now = managed(owner.name(), &apps, "placed");
        (now.len() == 1 && now[0].state == "running").then_some(())
    });
    c.kubectl_ok(&["label", "node", &c.node, "dwtest-role-"]);
    wait_for("placed removed after the label went", 60, || {
        managed(owner.name(), &apps, "placed")
            .is_empty()
            .then_some(())
    });

    // The agent pod deleted: its successor changes nothing (same key, no duplicates).
    let before: Vec<Vec<Managed>> = ["web", "other", "with-secret", "private"]
        .iter()
        .map(|n| managed(owner.name(), &apps, n))
        .collect();
    c.kubectl_ok(&["-n", &release_ns, "delete", "pod", &pod, "--wait=false"]);
    let pod = ready_pod(&c, &release_ns, "dockwright", Some(&pod));
    std::thread::sleep(Duration::from_secs(5));
    let after: Vec<Vec<Managed>> = ["web", "other", "with-secret", "private"]
        .iter()
        .map(|n| managed(owner.name(), &apps, n))
        .collect();
    assert_eq!(
        before, after,
        "a new agent pod recreated or duplicated something"
    );

    // The API server restarted mid-watch: the agent's watches resume.
    // SIGTERM, and SIGKILL if its graceful shutdown (which waits for open watches) drags on.
    let pid = std::fs::read_to_string(c.state.join("kube-apiserver.pid")).unwrap();
    let pid = pid.trim();
    assert!(run(Command::new("kill").arg(pid)).success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = run(Command::new("kill").args(["-KILL", pid]));
    wait_for("the API server to be gone", 30, || {
        (!alive(pid)).then_some(())
    });
    let restarted = run(&mut Command::new(root().join("scripts/start-kube.sh")));
    assert!(restarted.success(), "start-kube.sh: {restarted}");
    c.apply(&container_yaml(
        &apps,
        "web",
        "  env: [{ name: MODE, value: three }]\n",
    ));
    wait_for(
        "web follows an edit made after the API server restart",
        120,
        || {
            let now = managed(owner.name(), &apps, "web");
            (now.len() == 1 && inspect(&now[0].id, "{{.Config.Env}}").contains("MODE=three"))
                .then_some(())
        },
    );

    // helm upgrade: the pod rolls, the containers stay.
    let upgraded_values = {
        let mut v = chart_values(&image, owner.name(), ports, &state_dir);
        v["podAnnotations"] = serde_json::json!({ "dwtest/upgraded": "yes" });
        v
    };
    std::fs::write(values_file.path(), upgraded_values.to_string()).unwrap();
    let others_before = managed(owner.name(), &apps, "other");
    let upgraded = c.helm(&[
        "upgrade",
        "dockwright",
        "--namespace",
        &release_ns,
        "--values",
        &values,
        "--wait",
        "240",
    ]);
    assert!(upgraded.success(), "helm upgrade: {upgraded}");
    let new_pod = ready_pod(&c, &release_ns, "dockwright", Some(&pod));
    let annotations = c.json(&["-n", &release_ns, "get", "pod", &new_pod]);
    assert_eq!(
        annotations["metadata"]["annotations"]["dwtest/upgraded"],
        "yes"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(managed(owner.name(), &apps, "other"), others_before);

    // delete → the Placements go by garbage collection, each held by its agent's finalizer
    // until the node's containers are gone.
    let web_placement = placement_status(&c, &apps, "Container", "web", &c.node).unwrap();
    let finalizers = web_placement["metadata"]["finalizers"].to_string();
    assert!(
        finalizers.contains("dockwright.dev/node-agent"),
        "{finalizers}"
    );
    assert_eq!(
        web_placement["metadata"]["ownerReferences"][0]["name"], "web",
        "the Placement is owned by its Container"
    );
    c.kubectl_ok(&[
        "-n",
        &apps,
        "delete",
        "containers.dockwright.dev,images.dockwright.dev",
        "--all",
        // Foreground: each parent waits for its Placements (blockOwnerDeletion), which wait
        // for the agent's finalizer, so the command returns once the containers are gone.
        "--cascade=foreground",
        "--timeout=120s",
    ]);
    for name in [
        "web",
        "other",
        "with-secret",
        "private",
        "privileged",
        "placed",
    ] {
        assert!(
            managed(owner.name(), &apps, name).is_empty(),
            "{name} left on the daemon"
        );
    }
    wait_for("the Placements gone with their parents", 60, || {
        let left = c.kubectl_ok(&[
            "-n",
            &apps,
            "get",
            "placements.dockwright.dev",
            "-o",
            "name",
        ]);
        left.trim().is_empty().then_some(())
    });
    for workload in ["daemonset/dockwright", "deployment/dockwright-controller"] {
        let logs = logs(&c, &release_ns, workload);
        assert!(
            !logs.contains("forbidden"),
            "{workload}: the ServiceAccount lacked a verb:\n{logs}"
        );
    }

    // helm uninstall removes the agent.
    let uninstalled = c.helm(&[
        "uninstall",
        "dockwright",
        "--namespace",
        &release_ns,
        "--wait",
        "120",
    ]);
    assert!(uninstalled.success(), "helm uninstall: {uninstalled}");
    wait_for("the DaemonSet and the Deployment gone", 60, || {
        let ds = c.kubectl(&["-n", &release_ns, "get", "daemonset", "dockwright"]);
        let deploy = c.kubectl(&[
            "-n",
            &release_ns,
            "get",
            "deployment",
            "dockwright-controller",
        ]);
        (!ds.success() && !deploy.success()).then_some(())
    });
}

/// Whether process `pid` runs (a zombie does not: it is gone, only not reaped yet).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Tags the test image as `reference` and pushes it to the auth registry, then removes the
/// local tag, so only a pull with the credentials can bring it back.
fn push_private(reg: &common::AuthRegistry, reference: &str) {
    let docker_config = reg.config_file.parent().unwrap();
    for args in [
        vec!["tag", common::TEST_IMAGE, reference],
        vec![
            "--config",
            docker_config.to_str().unwrap(),
            "push",
            reference,
        ],
        vec!["rmi", reference],
    ] {
        let out = run(Command::new("docker").args(&args));
        assert!(out.success(), "docker {args:?}: {out}");
    }
}

/// Removes the agent image when the test ends.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}

/// Leaves the cluster as it was, whatever step failed: the resources first (the agent removes
/// their containers and finalizers), then the release and the namespaces.
struct Teardown {
    kubeconfig: String,
    helm_python: String,
    release_ns: String,
    apps: String,
}

impl Teardown {
    fn new(c: &Cluster, release_ns: String, apps: String) -> Self {
        Self {
            kubeconfig: c.kubeconfig.clone(),
            helm_python: c.helm_python.clone(),
            release_ns,
            apps,
        }
    }

    fn run(&self) {
        let kubectl = |args: &[&str]| {
            let _ = Command::new("kubectl")
                .env("KUBECONFIG", &self.kubeconfig)
                .args(args)
                .output();
        };
        kubectl(&[
            "-n",
            &self.apps,
            "delete",
            "containers.dockwright.dev,images.dockwright.dev",
            "--all",
            "--timeout=60s",
        ]);
        // Whatever the agent could not finish: drop the finalizers so the namespace can go.
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args([
                "-n",
                &self.apps,
                "get",
                "containers.dockwright.dev,images.dockwright.dev,placements.dockwright.dev",
                "-o",
                "name",
            ])
            .output();
        if let Ok(out) = out {
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                kubectl(&[
                    "-n",
                    &self.apps,
                    "patch",
                    name,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ]);
            }
        }
        let _ = Command::new(&self.helm_python)
            .env("KUBECONFIG", &self.kubeconfig)
            .arg(root().join("scripts/helm-release.py"))
            .args(["uninstall", "dockwright", "--namespace", &self.release_ns])
            .output();
        kubectl(&[
            "delete",
            "namespace",
            &self.apps,
            &self.release_ns,
            "--wait=false",
        ]);
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.run();
    }
}

/// A `dockwright` process of the multi-node scenario (a controller or an agent), its output in
/// a log file; killed when dropped.
struct Process {
    child: std::process::Child,
    what: String,
    log: PathBuf,
}

impl Process {
    fn start(what: &str, log_dir: &Path, env: &[(&str, String)], args: &[&str]) -> Process {
        let log = log_dir.join(format!("{what}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dockwright"));
        cmd.args(args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "dockwright=debug")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
        Process {
            child,
            what: what.to_string(),
            log,
        }
    }

    /// SIGTERM, and the exit awaited (a controller gives its Lease up on the way out).
    fn stop(&mut self) {
        let _ = run(Command::new("kill").arg(self.child.id().to_string()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not stop on SIGTERM:\n{}", self.what, self.logs());
    }

    /// SIGKILL: no clean-up of any kind (a crashed controller keeps its Lease until it expires).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The multi-node scenario's Node objects, deleted at the end whatever happened.
struct Nodes<'a> {
    c: &'a Cluster,
    names: Vec<String>,
}

impl Drop for Nodes<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = self.c.kubectl(&["delete", "node", name, "--wait=false"]);
        }
    }
}

/// Label on the multi-node scenario's Node objects, so a later run removes what a killed one
/// left.
const TEST_NODE_LABEL: &str = "dwtest-multinode";

fn node_yaml(name: &str, labels: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    {TEST_NODE_LABEL}: \"true\"\n"
    );
    for (k, v) in labels {
        yaml.push_str(&format!("    {k}: \"{v}\"\n"));
    }
    yaml
}

/// Container IDs the daemon at `host` created for a resource since `since` (RFC 3339), from
/// its own event log: what proves that nothing was created twice.
fn creates_since(host: &str, owner: &str, resource: &str, since: &str) -> Vec<String> {
    let until = chrono_now();
    let out = run(Command::new("docker").args([
        "-H",
        host,
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--filter",
        "event=create",
        "--filter",
        &format!("label=dockwright.dev/owner={owner}"),
        "--filter",
        &format!("label=dockwright.dev/resource={resource}"),
        "--format",
        "{{.ID}}",
    ]));
    assert!(out.success(), "docker events: {out}");
    out.stdout.lines().map(str::to_string).collect()
}

/// Now as Unix seconds, which `docker events --since/--until` take.
fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// The Lease's holder.
fn lease_holder(c: &Cluster, namespace: &str, lease: &str) -> Option<String> {
    let out = c.kubectl(&[
        "-n",
        namespace,
        "get",
        "lease",
        lease,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    (out.success() && !out.stdout.trim().is_empty()).then(|| out.stdout.trim().to_string())
}

/// The Placements of one parent, by node.
fn placements_of(c: &Cluster, namespace: &str, parent: &str) -> Vec<Value> {
    let list = c.json(&[
        "-n",
        namespace,
        "get",
        "placements.dockwright.dev",
        "-l",
        &format!("dockwright.dev/parent={parent}"),
    ]);
    let mut items = list["items"].as_array().cloned().unwrap_or_default();
    items.sort_by_key(|p| {
        p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    items
}

fn nodes_of(placements: &[Value]) -> Vec<String> {
    placements
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect()
}

/// Several nodes, each with its own real Docker daemon and its own agent (local processes,
/// each watching only its node's Placements), and two leader-elected controllers: placement by
/// nodeName, nodeSelector and relabelling; a node added and deleted; the leader killed in the
/// middle of a rollout and the controller restarted; a parent deleted while one agent is down.
/// The aggregate status is checked for exact counts, and the daemons' own event logs show that
/// nothing was created twice.
#[test]
fn placements_follow_nodes_labels_and_the_leader() {
    let Some(c) = cluster() else { return };
    let _serial = serial();
    common::ensure_test_image_blocking();
    install_crds(&c);
    // What a killed earlier run left.
    let _ = c.kubectl(&["delete", "node", "-l", &format!("{TEST_NODE_LABEL}=true")]);

    let id = common::unique("mn");
    let ns = id.clone();
    let owner = common::TestOwner::new("kube-mn");
    let work = tempfile::Builder::new()
        .prefix("multinode-")
        .tempdir_in(&c.state)
        .unwrap();
    let (node_a, node_b, node_c) = (format!("{id}-a"), format!("{id}-b"), format!("{id}-c"));
    let pool = ("dwtest-pool", id.as_str());
    for node in [&node_a, &node_b] {
        c.apply(&node_yaml(node, &[pool]));
    }
    let mut nodes = Nodes {
        c: &c,
        names: vec![node_a.clone(), node_b.clone()],
    };
    c.kubectl_ok(&["create", "namespace", &ns]);
    let _teardown = NamespaceTeardown {
        c: &c,
        ns: ns.clone(),
    };
    let daemon_a = NodeDaemon::start(work.path(), "a", 1);
    let daemon_b = NodeDaemon::start(work.path(), "b", 2);
    let (host_a, host_b) = (daemon_a.host(), daemon_b.host());

    let kubeconfig = ("KUBECONFIG", c.kubeconfig.clone());
    let lease = "dockwright-controller";
    let controller = |identity: &str| {
        Process::start(
            identity,
            work.path(),
            std::slice::from_ref(&kubeconfig),
            &[
                "controller",
                "--listen",
                "127.0.0.1:0",
                "--lease-namespace",
                &ns,
                "--identity",
                identity,
                "--lease-duration",
                "4s",
            ],
        )
    };
    let agent = |node: &str, host: &str| {
        Process::start(
            &format!("agent-{node}"),
            work.path(),
            &[
                kubeconfig.clone(),
                ("DOCKER_HOST", host.to_string()),
                (
                    "XDG_STATE_HOME",
                    work.path()
                        .join(format!("state-{node}"))
                        .display()
                        .to_string(),
                ),
            ],
            &[
                "agent",
                "--kubernetes",
                "--node-name",
                node,
                "--owner",
                owner.name(),
                "--listen",
                "127.0.0.1:0",
            ],
        )
    };
    let mut c1 = controller("c1");
    let mut c2 = controller("c2");
    let agent_a = agent(&node_a, &host_a);
    let mut agent_b = agent(&node_b, &host_b);
    let started = chrono_now();
    let get = |name: &str| c.json(&["-n", &ns, "get", "containers.dockwright.dev", name]);
    let on = |host: &str, name: &str| managed_on(Some(host), owner.name(), &ns, name);
    let running_once = |host: &str, name: &str| {
        let now = on(host, name);
        (now.len() == 1 && now[0].state == "running").then(|| now[0].id.clone())
    };

    // nodeSelector: on both pool nodes, each daemon runs it once; counts are exact.
    c.apply(&container_yaml(
        &ns,
        "all",
        &format!(
            "  nodeSelector: {{ {}: \"{}\" }}\n  env: [{{ name: MODE, value: one }}]\n",
            pool.0, pool.1
        ),
    ));
    let status = wait_for("all Ready on 2 nodes", 120, || ready_on(&get("all"), 2));
    assert_eq!(status["ready"], "2/2");
    assert_eq!(
        nodes_of(&placements_of(&c, &ns, "all")),
        [node_a.clone(), node_b.clone()]
    );
    let all_a = wait_for("all on a", 30, || running_once(&host_a, "all"));
    let all_b = wait_for("all on b", 30, || running_once(&host_b, "all"));
    assert!(
        managed(owner.name(), &ns, "all").is_empty(),
        "never on the kubelet's node"
    );

    // nodeName: on that node only.
    c.apply(&container_yaml(
        &ns,
        "pinned",
        &format!("  nodeName: {node_a}\n"),
    ));
    wait_for("pinned Ready on 1 node", 90, || ready_on(&get("pinned"), 1));
    let pinned_a = wait_for("pinned on a", 30, || running_once(&host_a, "pinned"));
    assert!(on(&host_b, "pinned").is_empty());

    // A nodeSelector no node has: placed nowhere; then a node relabelled in and out.
    let role = ("dwtest-role", id.as_str());
    c.apply(&container_yaml(
        &ns,
        "sel",
        &format!("  nodeSelector: {{ {}: \"{}\" }}\n", role.0, role.1),
    ));
    wait_for("sel observed on no node", 60, || {
        let obj = get("sel");
        (obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
            && obj["status"]["desiredNodes"] == 0)
            .then_some(())
    });
    assert!(placements_of(&c, &ns, "sel").is_empty());
    c.kubectl_ok(&["label", "node", &node_b, &format!("{}={}", role.0, role.1)]);
    wait_for("sel Ready on b after the relabel", 90, || {
        ready_on(&get("sel"), 1)
    });
    wait_for("sel running on b", 30, || running_once(&host_b, "sel"));
    assert!(on(&host_a, "sel").is_empty());
    c.kubectl_ok(&["label", "node", &node_b, &format!("{}-", role.0)]);
    wait_for("sel gone from b after the label went", 90, || {
        (on(&host_b, "sel").is_empty() && placements_of(&c, &ns, "sel").is_empty()).then_some(())
    });
    assert_eq!(get("sel")["status"]["desiredNodes"], 0);

    // A node added (no agent runs there): counted, unavailable, named; deleted: gone again.
    c.apply(&node_yaml(&node_c, &[pool]));
    nodes.names.push(node_c.clone());
    let degraded = wait_for("all desired on 3 nodes, ready on 2", 60, || {
        let s = get("all")["status"].clone();
        (s["desiredNodes"] == 3 && s["currentNodes"] == 3 && s["readyNodes"] == 2).then_some(s)
    });
    assert_eq!(degraded["unavailableNodes"], 1, "{degraded}");
    assert_eq!(degraded["ready"], "2/3", "{degraded}");
    let ready = degraded["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False", "{degraded}");
    assert!(
        ready["message"].as_str().unwrap().contains(&node_c),
        "the condition names the node: {ready}"
    );
    c.kubectl_ok(&["delete", "node", &node_c]);
    wait_for("all back to 2/2 after the node went", 60, || {
        ready_on(&get("all"), 2)
    });
    assert_eq!(
        nodes_of(&placements_of(&c, &ns, "all")),
        [node_a.clone(), node_b.clone()]
    );

    // A rollout whose leader dies half-way (SIGKILL: it keeps the Lease until it expires).
    let leader = wait_for("a leader", 30, || lease_holder(&c, &ns, lease));
    let before_rollout = chrono_now();
    c.patch_spec(&ns, "all", r#"{"env":[{"name":"MODE","value":"two"}]}"#);
    let (killed, survivor) = if leader == "c1" {
        (&mut c1, "c2")
    } else {
        (&mut c2, "c1")
    };
    killed.kill();
    wait_for("the standby to take the Lease over", 60, || {
        (lease_holder(&c, &ns, lease).as_deref() == Some(survivor)).then_some(())
    });
    wait_for("the rollout finished by the new leader", 120, || {
        ready_on(&get("all"), 2)
    });
    for host in [&host_a, &host_b] {
        let now = on(host, "all");
        assert_eq!(now.len(), 1, "{now:?}");
        assert!(inspect_on(host, &now[0].id, "{{.Config.Env}}").contains("MODE=two"));
        let created = creates_since(
            host,
            owner.name(),
            &format!("Container/{ns}/all"),
            &before_rollout,
        );
        assert_eq!(
            created.len(),
            1,
            "the rollout created exactly one container on {host}: {created:?}"
        );
    }
    assert_eq!(
        running_once(&host_a, "pinned"),
        Some(pinned_a.clone()),
        "pinned untouched"
    );

    // The killed controller restarted, then the leader stopped cleanly (it gives the Lease
    // up): the restarted one leads, and an edit converges through it.
    let restarted_name = if survivor == "c1" { "c2" } else { "c1" };
    let restarted = controller(restarted_name);
    if survivor == "c1" {
        c1.stop();
    } else {
        c2.stop();
    }
    wait_for("the restarted controller to lead", 60, || {
        (lease_holder(&c, &ns, lease).as_deref() == Some(restarted_name)).then_some(())
    });
    c.patch_spec(
        &ns,
        "pinned",
        r#"{"env":[{"name":"MODE","value":"edited"}]}"#,
    );
    wait_for("pinned edited through the restarted controller", 90, || {
        let id = running_once(&host_a, "pinned")?;
        (id != pinned_a && ready_on(&get("pinned"), 1).is_some()).then_some(())
    });

    // A parent deleted while one agent is down: its Placement there waits for that agent.
    agent_b.stop();
    c.kubectl_ok(&[
        "-n",
        &ns,
        "delete",
        "containers.dockwright.dev",
        "all",
        "--wait=false",
    ]);
    wait_for("all gone from a", 60, || {
        on(&host_a, "all").is_empty().then_some(())
    });
    let left = wait_for("only b's Placement left, terminating", 60, || {
        let left = placements_of(&c, &ns, "all");
        (nodes_of(&left) == [node_b.clone()]).then_some(left)
    });
    assert!(
        !left[0]["metadata"]["deletionTimestamp"].is_null(),
        "terminating: {}",
        left[0]
    );
    assert_eq!(
        on(&host_b, "all").len(),
        1,
        "b's daemon untouched while its agent is down"
    );
    // Beside it, a container of this owner and source that no Placement names (what an agent
    // of the previous version made, before the controller wrote its node's Placements): the
    // agent must leave it alone.
    let orphan = daemon_b.docker(&[
        "run",
        "-d",
        "--name",
        &format!("{ns}.legacy"),
        "--label",
        &format!("dockwright.dev/owner={}", owner.name()),
        "--label",
        "dockwright.dev/source=kubernetes",
        "--label",
        &format!("dockwright.dev/resource=Container/{ns}/legacy"),
        common::TEST_IMAGE,
        "sleep",
        "3600",
    ]);
    assert!(orphan.success(), "{orphan}");
    agent_b = agent(&node_b, &host_b);
    wait_for(
        "b's agent removes its container and lets the Placement go",
        90,
        || {
            (on(&host_b, "all").is_empty() && placements_of(&c, &ns, "all").is_empty())
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        on(&host_b, "legacy").len(),
        1,
        "a container no Placement named was removed"
    );

    // Over the whole scenario: "all" was created once per node, and once more by the rollout.
    for (host, first) in [(&host_a, &all_a), (&host_b, &all_b)] {
        let created = creates_since(host, owner.name(), &format!("Container/{ns}/all"), &started);
        assert_eq!(created.len(), 2, "{host}: {created:?}");
        assert!(
            created[0].starts_with(first.as_str()),
            "{created:?} begins with {first}"
        );
    }
    for p in [&agent_a, &agent_b, &restarted] {
        assert!(!p.logs().contains("panicked"), "{}:\n{}", p.what, p.logs());
    }
    drop(agent_b);
}

fn inspect_on(host: &str, id: &str, format: &str) -> String {
    let out = run(Command::new("docker").args(["-H", host, "inspect", "--format", format, id]));
    assert!(out.success(), "docker inspect {id}: {out}");
    out.stdout.trim().to_string()
}

/// Deletes the scenario's resources (their finalizers dropped if an agent could not finish)
/// and its namespace.
struct NamespaceTeardown<'a> {
    c: &'a Cluster,
    ns: String,
}

impl Drop for NamespaceTeardown<'_> {
    fn drop(&mut self) {
        Teardown::new(self.c, String::new(), self.ns.clone()).run();
    }
}
