//! A fleet of `Container` resources for the reliability tests (crash, faults, concurrency):
//! many containers with replicas, a few with `files`, a one-shot, a shared named volume and a
//! network, optionally `Image` resources (built from contexts the fleet writes, or pulled from
//! the loopback registry) that some containers run; unmanaged neighbours with names next to
//! ours; and [`verify`], which checks that the daemon holds exactly the fleet — one container
//! per replica name with the right labels and image, no duplicates, no orphans, files in
//! place, every `Image` resolved to the one right image, leftovers only what `dockwright prune`
//! removes, neighbours untouched, `diff` empty.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder};

use super::{dockwright, registry, run, TEST_IMAGE};

/// Label the fleet's Dockerfiles set on every image they make (intermediate steps included,
/// which carry no dockwright label), value the fleet's prefix: how the test finds, and its
/// guard removes, every image it caused.
pub const FLEET_LABEL: &str = "dwtest.fleet";

/// The tag pulled images are declared with; the test moves it between pushed versions.
pub const PULLED_TAG: &str = "stable";

/// How an `Image` of the fleet reaches the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// Built from a context the fleet writes (`FROM` the test image, a `COPY` and a `RUN`,
    /// each a step the daemon commits), unique per prefix and revision, so no cache makes it instant.
    Build,
    /// Pulled from the loopback registry: `<registry>/dwtest/<name>:stable`, with
    /// `updateInterval`, the tag pointed at the pushed version `v<revision>` by
    /// [`Fleet::write`].
    Pull,
}

/// One `Image` resource of the fleet.
#[derive(Clone, Debug)]
pub struct FleetImage {
    /// Resource name (unique: it starts with the fleet's prefix).
    pub name: String,
    /// Built or pulled.
    pub source: ImageSource,
    /// Built: the content of the context. Pulled: the version the registry tag names.
    pub revision: u32,
}

impl FleetImage {
    /// The repository (in the loopback registry for pulled images; built ones are never pushed).
    pub fn repository(&self) -> String {
        format!("dwtest/{}", self.name)
    }

    /// The declared reference.
    pub fn reference(&self) -> String {
        match self.source {
            ImageSource::Build => format!("{}:latest", self.repository()),
            ImageSource::Pull => format!("{}/{}:{PULLED_TAG}", registry(), self.repository()),
        }
    }

    /// The content a build of this revision copies to `/stamp` (and its `RUN` to `/built`).
    pub fn stamp(&self) -> String {
        format!("image={} revision={}\n", self.name, self.revision)
    }

    fn context(&self, dir: &Path) -> PathBuf {
        dir.join("ctx").join(&self.name)
    }

    fn manifest(&self) -> String {
        let mut spec = format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata:\n  name: {}\nspec:\n  ref: {}\n",
            self.name,
            self.reference()
        );
        match self.source {
            ImageSource::Build => {
                spec.push_str(&format!("  build: {{context: ./ctx/{}}}\n", self.name));
            }
            ImageSource::Pull => spec.push_str("  updateInterval: 1m\n"),
        }
        spec
    }
}

/// The Dockerfile of a built fleet image (and, without the `RUN`, of a pushed version).
fn dockerfile(prefix: &str, run: bool) -> String {
    let mut text = format!("FROM {TEST_IMAGE}\nLABEL {FLEET_LABEL}={prefix}\nCOPY stamp /stamp\n");
    if run {
        text.push_str("RUN cp /stamp /built\n");
    }
    text
}

/// Writes `path` unless it already holds `content` (so a context's files keep their
/// metadata between trials that declare the same revision).
fn write_if_changed(path: &Path, content: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

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
    /// Runs this `Image` resource of the fleet (by name) instead of the test image.
    pub image: Option<String>,
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
        let image = match &self.image {
            Some(name) => name.clone(),
            None => format!("{TEST_IMAGE}\n  imagePullPolicy: Never"),
        };
        let mut spec = format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {}\nspec:\n  image: {image}\n  replicas: {}\n  env: [{{name: REVISION, value: '{}'}}]\n",
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
    /// The `Image` resources (none unless [`Fleet::with_images`]).
    pub images: Vec<FleetImage>,
    /// `XDG_STATE_HOME` of every `dockwright` run on the fleet (the owner's pulled-image
    /// records live there); `None`: the environment's.
    pub state: Option<PathBuf>,
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
            image: None,
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
            images: Vec::new(),
            state: None,
        }
    }

    /// Adds `built` built and `pulled` pulled `Image` resources (revision 1) and has some
    /// members run them, round robin: the first four replicated members and every fifth
    /// single one (never the one-shot or those with files). Pulled images need
    /// [`FleetImages::push`] before the fleet is written.
    pub fn with_images(mut self, built: usize, pulled: usize) -> Self {
        let prefix = self.prefix.clone();
        self.images = (0..built)
            .map(|i| (format!("{prefix}-b{i}"), ImageSource::Build))
            .chain((0..pulled).map(|i| (format!("{prefix}-p{i}"), ImageSource::Pull)))
            .map(|(name, source)| FleetImage {
                name,
                source,
                revision: 1,
            })
            .collect();
        if self.images.is_empty() {
            return self;
        }
        let names: Vec<String> = self.images.iter().map(|i| i.name.clone()).collect();
        let replicated = format!("{prefix}-r");
        let single = format!("{prefix}-s");
        let mut next = 0;
        let (mut replicated_users, mut singles) = (0, 0);
        for m in &mut self.members {
            let pick = if m.name.starts_with(&replicated) {
                replicated_users += 1;
                replicated_users <= 4
            } else if m.name.starts_with(&single) {
                singles += 1;
                singles % 5 == 1
            } else {
                false
            };
            if pick {
                m.image = Some(names[next % names.len()].clone());
                next += 1;
            }
        }
        self
    }

    /// Number of containers that run a fleet image.
    pub fn image_users(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.image.is_some())
            .map(|m| m.replicas as usize)
            .sum()
    }

    /// Number of containers the fleet declares.
    pub fn containers(&self) -> usize {
        self.members.iter().map(|m| m.replicas as usize).sum()
    }

    /// Writes the fleet as one multi-document file `fleet.yaml` in `dir` (replacing it), with
    /// the build contexts of its built images under `dir/ctx/`, and points the registry tag of
    /// each pulled image at its declared version (the registry is part of the desired world).
    pub fn write(&self, dir: &Path) {
        for image in &self.images {
            match image.source {
                ImageSource::Build => {
                    let ctx = image.context(dir);
                    write_if_changed(
                        &ctx.join("Dockerfile"),
                        dockerfile(&self.prefix, true).as_bytes(),
                    );
                    write_if_changed(&ctx.join("stamp"), image.stamp().as_bytes());
                }
                ImageSource::Pull => {
                    let (addr, repo) = (registry(), image.repository());
                    let version =
                        super::get_manifest(&addr, &repo, &format!("v{}", image.revision))
                            .unwrap_or_else(|e| panic!("{}: pushed version: {e}", image.name));
                    let current = super::get_manifest(&addr, &repo, PULLED_TAG).ok();
                    if current.is_none_or(|c| c.digest != version.digest) {
                        super::put_manifest(&addr, &repo, PULLED_TAG, &version)
                            .unwrap_or_else(|e| panic!("{}: move the tag: {e}", image.name));
                    }
                }
            }
        }
        let text = self
            .images
            .iter()
            .map(FleetImage::manifest)
            .chain(self.members.iter().map(|m| m.manifest(self)))
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
    /// ID of the image it was created from.
    pub image_id: String,
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
            image_id: c.image_id.unwrap_or_default(),
        })
        .collect()
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Declared containers that exist as they should.
    pub converged: usize,
    /// Declared `Image` resources resolved to the one right image, with their containers on it.
    pub images_converged: usize,
    /// Declared containers and `Image` resources missing.
    pub lost: usize,
    /// Images of the owner beyond the declared ones that `dockwright prune` removes: dangling
    /// (no tag), unused, built with the owner's label or recorded as pulled by it.
    pub prunable_images: usize,
    /// Those images, described (for assertion messages).
    pub prunable: Vec<String>,
    /// Untagged images of the fleet's builds with no dockwright label: the intermediate steps
    /// of builds killed midway (the daemon's build cache, which `docker image prune` reclaims;
    /// dockwright only owns what carries its label). Reported, not a problem.
    pub build_cache: usize,
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
    // Only this directory's source (or containers from before source labels): another
    // source of the same owner on the daemon is not the fleet's.
    let source = dir
        .canonicalize()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let of_dir = |s: &Seen| {
        s.labels
            .get(dockwright::labels::SOURCE)
            .is_none_or(|v| *v == source)
    };
    let mut seen = owned(docker, owner).await;
    seen.retain(of_dir);
    while std::time::Instant::now() < deadline
        && seen
            .iter()
            .any(|s| s.state == "running" && expected.get(&s.name).is_some_and(|(m, _)| m.one_shot))
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        seen = owned(docker, owner).await;
        seen.retain(of_dir);
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
    if !fleet.images.is_empty() {
        verify_images(docker, owner, fleet, dir, &seen, &mut verdict).await;
    }
    let mut diff = dockwright();
    diff.args(["diff", "-f"]).arg(dir).args(["--owner", owner]);
    if let Some(state) = &fleet.state {
        diff.env("XDG_STATE_HOME", state);
    }
    let diff = run(&mut diff);
    if !diff.success() {
        verdict.problems.push(format!("diff is not empty: {diff}"));
    }
    verdict
}

/// Image part of [`verify`]: every `Image` resource's reference names exactly one image — a
/// build of the declared inputs (owner, resource and `build-hash` labels as the manifests
/// hash them) or the pulled version (its registry digest among the image's, the pull
/// recorded for the resource) — every container of the resource runs that image, and
/// whatever else the owner has is dangling and unused, so that `dockwright prune` removes it.
async fn verify_images(
    docker: &bollard::Docker,
    owner: &str,
    fleet: &Fleet,
    dir: &Path,
    seen: &[Seen],
    verdict: &mut Verdict,
) {
    use dockwright::desired::{Kind, ResourceKey};
    let desired = match dockwright::source::files::load_paths(&[dir.to_path_buf()]) {
        Ok(d) => d,
        Err(e) => {
            verdict.problems.push(format!("load the manifests: {e:?}"));
            return;
        }
    };
    let records = fleet
        .state
        .as_ref()
        .map(|s| dockwright::image_records::ImageRecords::new(s.join("dockwright").join(owner)))
        .map(|r| r.load().unwrap_or_default())
        .unwrap_or_default();
    let list = |all: bool, filters: HashMap<String, Vec<String>>| {
        docker.list_images(Some(
            ListImagesOptionsBuilder::default()
                .all(all)
                .filters(&filters)
                .build(),
        ))
    };
    let tagged = |tags: &[String]| tags.iter().any(|t| !t.starts_with("<none>"));
    let everything = list(false, HashMap::new()).await.unwrap();
    let used: BTreeSet<String> = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.image_id)
        .collect();
    let expected = fleet.expected();
    let mut current = BTreeSet::new();
    for image in &fleet.images {
        let key = ResourceKey::new(Kind::Image, "default", &image.name);
        let reference = image.reference();
        let Ok(info) = docker.inspect_image(&reference).await else {
            verdict.lost += 1;
            verdict
                .problems
                .push(format!("image {}: {reference} is missing", image.name));
            continue;
        };
        let id = info.id.clone().unwrap_or_default();
        current.insert(id.clone());
        let labels = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        let mut problems = Vec::new();
        match image.source {
            ImageSource::Build => {
                let want = desired
                    .images
                    .get(&key)
                    .and_then(|d| d.build.as_ref())
                    .map(|b| b.hash.clone())
                    .unwrap_or_default();
                if label(dockwright::labels::OWNER) != owner
                    || label(dockwright::labels::RESOURCE) != key.to_string()
                    || label(dockwright::labels::BUILD_HASH) != want
                {
                    problems.push(format!(
                        "labels owner={:?} resource={:?} build-hash={:?} (want {want})",
                        label(dockwright::labels::OWNER),
                        label(dockwright::labels::RESOURCE),
                        label(dockwright::labels::BUILD_HASH)
                    ));
                }
                // Another tagged build of the resource would be a duplicate.
                let others = everything
                    .iter()
                    .filter(|i| i.id != id && tagged(&i.repo_tags))
                    .filter(|i| {
                        i.labels.get(dockwright::labels::OWNER).map(String::as_str) == Some(owner)
                            && i.labels.get(dockwright::labels::RESOURCE) == Some(&key.to_string())
                    })
                    .count();
                if others > 0 {
                    problems.push(format!("{others} other tagged build(s) of the resource"));
                }
            }
            ImageSource::Pull => {
                let repo = format!("{}/{}", registry(), image.repository());
                match super::get_manifest(
                    &registry(),
                    &image.repository(),
                    &format!("v{}", image.revision),
                ) {
                    Ok(m) => {
                        let want = format!("{repo}@{}", m.digest);
                        let digests = info.repo_digests.clone().unwrap_or_default();
                        if !digests.contains(&want) {
                            problems.push(format!("digests {digests:?} lack {want}"));
                        }
                    }
                    Err(e) => problems.push(format!("registry: {e}")),
                }
                let recorded = records
                    .iter()
                    .any(|r| r.resource == key && r.id == id && r.reference == reference);
                if fleet.state.is_some() && !recorded {
                    problems.push(format!("the pull of {id} is not recorded: {records:?}"));
                }
                let others = everything
                    .iter()
                    .filter(|i| i.id != id)
                    .filter(|i| {
                        i.repo_tags
                            .iter()
                            .any(|t| t.starts_with(&format!("{repo}:")))
                    })
                    .count();
                if others > 0 {
                    problems.push(format!("{others} other local tag(s) of {repo}"));
                }
            }
        }
        for s in seen {
            let runs_it = expected
                .get(&s.name)
                .is_some_and(|(m, _)| m.image.as_deref() == Some(image.name.as_str()));
            if runs_it && s.image_id != id {
                problems.push(format!(
                    "container {} runs {} instead of {id}",
                    s.name, s.image_id
                ));
            }
        }
        if problems.is_empty() {
            verdict.images_converged += 1;
        } else {
            for p in problems {
                verdict.problems.push(format!("image {}: {p}", image.name));
            }
        }
    }

    // Leftovers: built (owner label) or pulled (our repositories) images beyond the declared.
    let owner_filter = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={owner}", dockwright::labels::OWNER)],
    )]);
    let pulled_repo = format!("{}/dwtest/{}-", registry(), fleet.prefix);
    let mut leftovers: BTreeMap<String, (Vec<String>, bool, String)> = BTreeMap::new();
    let describe = |i: &bollard::models::ImageSummary| {
        format!(
            "{} created {} parent {} containers {} digests {:?} resource {:?}",
            i.id,
            i.created,
            i.parent_id,
            i.containers,
            i.repo_digests,
            i.labels.get(dockwright::labels::RESOURCE)
        )
    };
    for i in list(true, owner_filter).await.unwrap() {
        leftovers.insert(i.id.clone(), (i.repo_tags.clone(), false, describe(&i)));
    }
    for i in &everything {
        if i.repo_digests.iter().any(|d| d.starts_with(&pulled_repo)) {
            leftovers.insert(i.id.clone(), (i.repo_tags.clone(), true, describe(i)));
        }
    }
    // Intermediate images (a build's steps, `docker images -a`) go with the image on top of
    // them: leave out the chains under the declared images and under every image a container
    // uses, and every image with a child.
    let all = list(true, HashMap::new()).await.unwrap();
    let parent: HashMap<&str, &str> = all
        .iter()
        .filter(|i| !i.parent_id.is_empty())
        .map(|i| (i.id.as_str(), i.parent_id.as_str()))
        .collect();
    let with_children: BTreeSet<&str> = parent.values().copied().collect();
    let mut live: BTreeSet<&str> = BTreeSet::new();
    for top in current.iter().chain(&used) {
        let mut at = Some(top.as_str());
        while let Some(id) = at {
            if !live.insert(id) {
                break;
            }
            at = parent.get(id).copied();
        }
    }
    for (id, (tags, pulled, description)) in leftovers {
        if live.contains(id.as_str()) || with_children.contains(id.as_str()) {
            continue;
        }
        let recorded = records.iter().any(|r| r.id == id);
        if tagged(&tags) {
            verdict
                .problems
                .push(format!("leftover image {id} still tagged {tags:?}"));
        } else if used.contains(&id) {
            verdict
                .problems
                .push(format!("leftover image {id} still used by a container"));
        } else if pulled && !recorded {
            verdict.problems.push(format!(
                "leftover pulled image {id} has no record: dockwright prune cannot remove it"
            ));
        } else {
            verdict.prunable_images += 1;
            verdict.prunable.push(format!(
                "{description}{}",
                if pulled { " (pulled)" } else { "" }
            ));
        }
    }
    let cache_filter = HashMap::from([
        (
            "label".to_string(),
            vec![format!("{FLEET_LABEL}={}", fleet.prefix)],
        ),
        ("dangling".to_string(), vec!["true".to_string()]),
    ]);
    verdict.build_cache = list(false, cache_filter)
        .await
        .unwrap()
        .iter()
        .filter(|i| !i.labels.contains_key(dockwright::labels::OWNER) && i.repo_digests.is_empty())
        .count();
}

/// Registry versions of a fleet's pulled images, and the guard that removes, on drop, every
/// local image the fleet caused (all carry [`FLEET_LABEL`]: builds, their intermediate
/// steps, pulls) and the manifests it pushed. Create it before the test's `TestOwner`, so it
/// drops after the containers are gone.
pub struct FleetImages {
    prefix: String,
    /// (repository, digest) of every pushed manifest.
    pushed: Vec<(String, String)>,
}

impl FleetImages {
    /// The guard for `fleet`'s images.
    pub fn new(fleet: &Fleet) -> Self {
        Self {
            prefix: fleet.prefix.clone(),
            pushed: Vec::new(),
        }
    }

    /// Pushes versions `v1..=versions` of every pulled image of `fleet` to the registry, each
    /// with a layer of its own (8 MB of random bytes, so a pull has something to download),
    /// then removes the local copies: an apply has to pull them.
    pub fn push(&mut self, fleet: &Fleet, versions: u32) {
        let jobs: Vec<_> = fleet
            .images
            .iter()
            .filter(|i| i.source == ImageSource::Pull)
            .flat_map(|i| (1..=versions).map(move |v| (i.clone(), v)))
            .map(|(image, v)| {
                let prefix = self.prefix.clone();
                std::thread::spawn(move || push_version(&prefix, &image, v))
            })
            .collect();
        let mut local = Vec::new();
        for job in jobs {
            let (reference, repo, digest) = job.join().expect("push a version");
            self.pushed.push((repo, digest));
            local.push(reference);
        }
        for reference in local {
            cli_ok(&["rmi", &reference]);
        }
    }
}

/// Builds and pushes version `v` of a pulled image: (local reference, repository, digest).
fn push_version(prefix: &str, image: &FleetImage, v: u32) -> (String, String, String) {
    let ctx = tempfile::tempdir().unwrap();
    let mut blob = vec![0u8; 8 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut blob))
        .unwrap();
    let version = FleetImage {
        revision: v,
        ..image.clone()
    };
    std::fs::write(ctx.path().join("blob"), blob).unwrap();
    std::fs::write(ctx.path().join("stamp"), version.stamp()).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("{}COPY blob /blob\n", dockerfile(prefix, false)),
    )
    .unwrap();
    let repo = image.repository();
    let reference = format!("{}/{repo}:v{v}", registry());
    cli_ok(&[
        "build",
        "-q",
        "-t",
        &reference,
        ctx.path().to_str().unwrap(),
    ]);
    cli_ok(&["push", "-q", &reference]);
    let digest = super::get_manifest(&registry(), &repo, &format!("v{v}"))
        .unwrap_or_else(|e| panic!("{reference}: {e}"))
        .digest;
    (reference, repo, digest)
}

impl Drop for FleetImages {
    fn drop(&mut self) {
        let filter = format!("label={FLEET_LABEL}={}", self.prefix);
        // Children before parents: a few rounds remove whole chains.
        for _ in 0..4 {
            let out = cli(&["images", "-a", "-q", "--filter", &filter]);
            let ids: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if ids.is_empty() {
                break;
            }
            let mut args = vec!["rmi", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = cli(&args);
        }
        for (repo, digest) in &self.pushed {
            if let Err(e) = super::delete_manifest(&registry(), repo, digest) {
                eprintln!("fleet images: {e}");
            }
        }
    }
}
