//! A fleet of `Container` resources for the reliability tests (crash, faults, concurrency):
//! many containers with replicas, a few with `files`, a one-shot, a shared named volume and a
//! network; unmanaged neighbours with names next to ours; and [`verify`], which checks that the
//! daemon holds exactly the fleet — one container per replica name with the right labels,
//! no duplicates, no orphans, files in place, neighbours untouched, `diff` empty.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use bollard::query_parameters::ListContainersOptionsBuilder;

use super::{dockwright, run, TEST_IMAGE};

/// One resource of the fleet.
#[derive(Clone, Debug)]
pub struct Member {
    /// Resource name (also the container name, or its prefix with replicas).
    pub name: String,
    /// Replica count.
    pub replicas: u32,
    /// Copies a file to `/etc/dw/app.conf` (content depends on `revision`).
    pub files: bool,
    /// `restartPolicy: Never`, exits 0 at once.
    pub one_shot: bool,
    /// Mounts the fleet's named volume.
    pub volume: bool,
    /// Joins the fleet's network.
    pub network: bool,
    /// Bumped to change the spec (an env value): forces a recreate.
    pub revision: u32,
}

impl Member {
    /// The deterministic container names.
    pub fn container_names(&self) -> Vec<String> {
        if self.replicas == 1 {
            vec![self.name.clone()]
        } else {
            (0..self.replicas)
                .map(|i| format!("{}-{i}", self.name))
                .collect()
        }
    }

    /// The file content this revision copies in.
    pub fn file_content(&self) -> String {
        format!("member={} revision={}", self.name, self.revision)
    }

    fn manifest(&self, fleet: &Fleet) -> String {
        let mut spec = format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  replicas: {}\n  env: [{{name: REVISION, value: '{}'}}]\n",
            self.name, self.replicas, self.revision
        );
        if self.one_shot {
            spec.push_str("  restartPolicy: Never\n  command: [sh, -c, 'exit 0']\n");
        } else {
            spec.push_str("  command: [sleep, '3600']\n");
        }
        if self.volume {
            spec.push_str(&format!(
                "  volumes: [{{type: Volume, source: {}, target: /data}}]\n",
                fleet.volume
            ));
        }
        if self.network {
            spec.push_str(&format!("  network: {}\n", fleet.network));
        }
        if self.files {
            spec.push_str(&format!(
                "  files: [{{path: /etc/dw/app.conf, content: '{}'}}]\n",
                self.file_content()
            ));
        }
        spec
    }
}

/// The desired state of a reliability test, as data.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// Unique prefix of every name.
    pub prefix: String,
    /// Named volume shared by the replicated members.
    pub volume: String,
    /// Network of some single members.
    pub network: String,
    /// The resources.
    pub members: Vec<Member>,
}

impl Fleet {
    /// About `containers` containers: one one-shot, up to four members with files, members of
    /// three replicas (sharing the volume) for about a third, single members (every fourth on
    /// the network) for the rest.
    pub fn new(prefix: &str, containers: usize) -> Self {
        let mut members = Vec::new();
        let mut left = containers;
        let mut push = |m: Member, left: &mut usize| {
            *left = left.saturating_sub(m.replicas as usize);
            members.push(m);
        };
        let base = |name: String| Member {
            name,
            replicas: 1,
            files: false,
            one_shot: false,
            volume: false,
            network: false,
            revision: 1,
        };
        if left > 0 {
            push(
                Member {
                    one_shot: true,
                    ..base(format!("{prefix}-once"))
                },
                &mut left,
            );
        }
        for i in 0..4 {
            if left == 0 {
                break;
            }
            push(
                Member {
                    files: true,
                    ..base(format!("{prefix}-f{i}"))
                },
                &mut left,
            );
        }
        let replicated = containers / 3 / 3;
        for i in 0..replicated {
            if left < 3 {
                break;
            }
            push(
                Member {
                    replicas: 3,
                    volume: true,
                    ..base(format!("{prefix}-r{i}"))
                },
                &mut left,
            );
        }
        let mut i = 0;
        while left > 0 {
            push(
                Member {
                    network: i % 4 == 0,
                    ..base(format!("{prefix}-s{i}"))
                },
                &mut left,
            );
            i += 1;
        }
        Self {
            prefix: prefix.to_string(),
            volume: format!("{prefix}-data"),
            network: format!("{prefix}-net"),
            members,
        }
    }

    /// Number of containers the fleet declares.
    pub fn containers(&self) -> usize {
        self.members.iter().map(|m| m.replicas as usize).sum()
    }

    /// Writes the fleet as one multi-document file `fleet.yaml` in `dir` (replacing it).
    pub fn write(&self, dir: &Path) {
        let text = self
            .members
            .iter()
            .map(|m| m.manifest(self))
            .collect::<Vec<_>>()
            .join("---\n");
        let tmp = dir.join(".fleet.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join("fleet.yaml")).unwrap();
    }

    /// Container name → (member, replica index).
    pub fn expected(&self) -> BTreeMap<String, (&Member, u32)> {
        let mut map = BTreeMap::new();
        for m in &self.members {
            for (i, name) in m.container_names().into_iter().enumerate() {
                map.insert(name, (m, i as u32));
            }
        }
        map
    }
}

/// Unmanaged objects with names next to the fleet's: a running container, a volume and a
/// network, created by the test (not dockwright) and removed on drop. Nothing may touch them.
pub struct Neighbours {
    /// `<prefix>-r0-7`: what a replica of `r0` would be called.
    pub container: (String, String),
    /// `<prefix>-data2`.
    pub volume: String,
    /// `<prefix>-net2` (name, ID).
    pub network: (String, String),
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().unwrap()
}

fn cli_ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Neighbours {
    /// Creates them.
    pub fn create(fleet: &Fleet) -> Self {
        let name = format!("{}-r0-7", fleet.prefix);
        let id = cli_ok(&["run", "-d", "--name", &name, TEST_IMAGE, "sleep", "3600"]);
        let volume = format!("{}-data2", fleet.prefix);
        cli_ok(&["volume", "create", &volume]);
        let network = format!("{}-net2", fleet.prefix);
        let net_id = cli_ok(&["network", "create", &network]);
        Self {
            container: (name, id),
            volume,
            network: (network, net_id),
        }
    }

    /// How many of them were changed: the container gone, renamed or not running, the volume
    /// or the network gone.
    pub fn touched(&self) -> Vec<String> {
        let mut touched = Vec::new();
        let (name, id) = &self.container;
        let state = cli(&["inspect", "-f", "{{.Name}} {{.State.Status}}", id]);
        let text = String::from_utf8_lossy(&state.stdout).trim().to_string();
        if !state.status.success() || text != format!("/{name} running") {
            touched.push(format!("container {name}: {text:?}"));
        }
        if !cli(&["volume", "inspect", &self.volume]).status.success() {
            touched.push(format!("volume {}", self.volume));
        }
        let (net, net_id) = &self.network;
        let out = cli(&["network", "inspect", "-f", "{{.Name}}", net_id]);
        if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != net {
            touched.push(format!("network {net}"));
        }
        touched
    }
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        let _ = cli(&["rm", "-f", &self.container.1]);
        let _ = cli(&["volume", "rm", "-f", &self.volume]);
        let _ = cli(&["network", "rm", &self.network.1]);
    }
}

/// One container of an owner, as [`verify`] reads it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Name.
    pub name: String,
    /// ID.
    pub id: String,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// Docker state.
    pub state: String,
}

/// Every container carrying `owner`'s label.
pub async fn owned(docker: &bollard::Docker, owner: &str) -> Vec<Seen> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={owner}", dockwright::labels::OWNER)],
    )]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap();
    // Docker 20.10 can keep a finished removal listed as "Removal In Progress" (no name,
    // inspect says no such container) until it restarts; dockwright ignores those too.
    list.into_iter()
        .filter(|c| {
            let removing = c.state == Some(bollard::models::ContainerSummaryStateEnum::REMOVING);
            !(removing && c.names.as_ref().is_none_or(|n| n.is_empty()))
        })
        .map(|c| Seen {
            name: c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            id: c.id.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        })
        .collect()
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Declared containers that exist as they should.
    pub converged: usize,
    /// Declared containers missing.
    pub lost: usize,
    /// Problems (empty when the daemon holds exactly the fleet).
    pub problems: Vec<String>,
}

/// Checks that `owner`'s containers are exactly `fleet`: one per replica name, labels right
/// (owner, resource, replica, one spec hash per resource), running (the one-shot exited 0),
/// files in place, nothing else of ours, and `dockwright diff` finds nothing to do.
pub async fn verify(docker: &bollard::Docker, owner: &str, fleet: &Fleet, dir: &Path) -> Verdict {
    let mut verdict = Verdict::default();
    let expected = fleet.expected();
    // A one-shot started by the last pass may still be running its `exit 0`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = owned(docker, owner).await;
    while std::time::Instant::now() < deadline
        && seen
            .iter()
            .any(|s| s.state == "running" && expected.get(&s.name).is_some_and(|(m, _)| m.one_shot))
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        seen = owned(docker, owner).await;
    }
    let mut by_name: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in &seen {
        by_name.entry(s.name.as_str()).or_default().push(s);
    }
    let mut hashes: BTreeMap<&str, &str> = BTreeMap::new();
    let mut replica_claims: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in &seen {
        let resource = s
            .labels
            .get(dockwright::labels::RESOURCE)
            .cloned()
            .unwrap_or_default();
        let replica = s
            .labels
            .get(dockwright::labels::REPLICA)
            .cloned()
            .unwrap_or_default();
        *replica_claims.entry((resource, replica)).or_default() += 1;
        if !expected.contains_key(&s.name) {
            verdict
                .problems
                .push(format!("orphan: {} ({}, {})", s.name, s.state, s.id));
        }
    }
    for ((resource, replica), n) in &replica_claims {
        if *n > 1 {
            verdict.problems.push(format!(
                "duplicate: {n} containers claim {resource} replica {replica}"
            ));
        }
    }
    for (name, (member, replica)) in &expected {
        let Some(list) = by_name.get(name.as_str()) else {
            verdict.lost += 1;
            verdict.problems.push(format!("missing: {name}"));
            continue;
        };
        let s = list[0];
        let label = |k: &str| s.labels.get(k).map(String::as_str).unwrap_or("");
        let want_resource = format!("Container/default/{}", member.name);
        let mut ok = true;
        if label(dockwright::labels::RESOURCE) != want_resource
            || label(dockwright::labels::REPLICA) != replica.to_string()
        {
            ok = false;
            verdict.problems.push(format!(
                "{name}: labels resource={:?} replica={:?}",
                label(dockwright::labels::RESOURCE),
                label(dockwright::labels::REPLICA)
            ));
        }
        let hash = label(dockwright::labels::SPEC_HASH);
        match hashes.get(member.name.as_str()) {
            Some(h) if *h != hash => {
                ok = false;
                verdict.problems.push(format!(
                    "{name}: spec hash {hash} differs from its siblings' {h}"
                ));
            }
            _ => {
                hashes.insert(member.name.as_str(), hash);
            }
        }
        let want_state = if member.one_shot { "exited" } else { "running" };
        if s.state != want_state {
            ok = false;
            verdict
                .problems
                .push(format!("{name}: state {} (want {want_state})", s.state));
        }
        if member.files && s.state == "running" {
            let out = cli(&["exec", &s.id, "cat", "/etc/dw/app.conf"]);
            let got = String::from_utf8_lossy(&out.stdout).to_string();
            if got != member.file_content() {
                ok = false;
                verdict.problems.push(format!(
                    "{name}: /etc/dw/app.conf is {got:?} (want {:?})",
                    member.file_content()
                ));
            }
        }
        if ok {
            verdict.converged += 1;
        }
    }
    let diff = run(dockwright()
        .args(["diff", "-f"])
        .arg(dir)
        .args(["--owner", owner]));
    if !diff.success() {
        verdict.problems.push(format!("diff is not empty: {diff}"));
    }
    verdict
}
