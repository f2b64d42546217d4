//! Crash safety: `dockwright apply` is killed with SIGKILL at random points while it converges a
//! fleet of 100 containers and 7 `Image` resources (4 built from contexts the test writes, 3
//! pulled from the loopback registry, run by about a quarter of the containers): builds and
//! pulls from nothing, creates with files, starts, a one-shot; then new image content on every
//! trial (rebuilds, a moved registry tag to pull, rollouts onto the new images); then
//! recreates after a config change; then scale-downs, renames and prunes. After every campaign
//! an apply run to completion must leave exactly the declared state — one container per
//! replica, no orphans, files in place, every `Image` resolved to the one right image with its
//! containers on it — and the unmanaged neighbours untouched.
//!
//! A second source of the same owner shares the daemon throughout: a few containers (one
//! member on an `Image` it builds, one with files, a one-shot), a volume and a network,
//! applied once from a directory of their own before the campaigns. After every trial, every
//! one of its objects must still be there with the same ID and state: the killed applies —
//! pruning ones too — and `dockwright prune` never touch another source's objects. The
//! summary lines count the objects of the other source touched (must be 0).
//!
//! Every killed apply talks to the daemon through the counting proxy, which tells how many
//! pulls (`POST /images/create`) and builds (`POST /build`) the daemon had not finished
//! answering at the kill: the summary lines count the kills that hit one.
//!
//! Images left behind, by decision: superseded builds and pulls (dangling, unused, built with
//! the owner's label or recorded as pulled) are what `dockwright prune` is for; `verify`
//! counts them and the test prunes and checks that none is left. A build killed midway can
//! leave the untagged images of its finished steps without any dockwright label: the daemon's
//! build cache (reused by the next build of the same inputs, reclaimed by `docker image
//! prune`), which dockwright does not own and never removes; they are counted as
//! "build-cache images". The test's own guard removes every image it caused (all carry the
//! `dwtest.fleet` label of the fleet's Dockerfiles) and the manifests it pushed, on failure
//! too.
//!
//! The kill delays come from a seeded generator; the seed is printed, and
//! `DOCKWRIGHT_CRASH_SEED=<seed>` replays a run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fleet::{owned, verify, Fleet, FleetImages, ImageSource, Neighbours, Verdict};
use common::{
    docker, dockwright, ensure_test_image, registry, require_registry, run, unique, CountingProxy,
    TestOwner,
};

/// Suffix of the name a replica's previous container is kept under during a rolling update
/// (`dockwright::plan::KEPT_SUFFIX`): such a container may exist between kill points.
const KEPT: &str = "_prev";

/// splitmix64: small, seedable, good enough to spread kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn seed() -> u64 {
    std::env::var("DOCKWRIGHT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// Where every `dockwright` run of the test talks to the daemon and keeps its state.
struct Env<'a> {
    dir: &'a Path,
    owner: &'a TestOwner,
    /// Every killed apply talks through it, so the test sees which pulls and builds are in
    /// flight at the kill.
    proxy: &'a CountingProxy,
    /// `XDG_STATE_HOME`: the owner's pulled-image records.
    state: &'a Path,
}

impl Env<'_> {
    fn dockwright(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = dockwright();
        cmd.args(args)
            .args(["--owner", self.owner.name()])
            .env("XDG_STATE_HOME", self.state);
        cmd
    }

    fn apply(&self, prune: bool) -> std::process::Command {
        let dir = self.dir.to_str().unwrap();
        let mut cmd = self.dockwright(&["apply", "-f", dir]);
        if prune {
            cmd.arg("--prune");
        }
        cmd
    }
}

/// Another source of the same owner on the daemon (its directory's default source): the
/// crashing source must never touch any of its objects.
struct OtherSource {
    /// The source label of its objects: the directory's canonical path.
    source: String,
    owner: String,
    /// Its built image's reference.
    image: String,
    volume: String,
    network: String,
    /// Its objects as first converged: description → identity (ID, state).
    before: BTreeMap<String, String>,
}

impl OtherSource {
    /// Applies `fleet` (one `Image` resource, built) from `dir` to completion, checks that it
    /// converged and notes what it created.
    async fn create(env: &Env<'_>, fleet: &Fleet, dir: &Path) -> Self {
        fleet.write(dir);
        let out = run(&mut env.dockwright(&["apply", "-f", dir.to_str().unwrap()]));
        assert!(out.success(), "the other source's apply failed: {out}");
        let d = docker().await;
        // Also waits for its one-shot to exit: its state is final from here on.
        let verdict = verify(&d, env.owner.name(), fleet, dir).await;
        assert!(
            verdict.problems.is_empty(),
            "the other source: {:#?}",
            verdict.problems
        );
        let mut other = Self {
            source: dir.canonicalize().unwrap().to_string_lossy().into_owned(),
            owner: env.owner.name().to_string(),
            image: fleet.images[0].reference(),
            volume: fleet.volume.clone(),
            network: fleet.network.clone(),
            before: BTreeMap::new(),
        };
        other.before = other.snapshot(&d).await;
        let containers = other
            .before
            .keys()
            .filter(|k| k.starts_with("container "))
            .count();
        assert_eq!(containers, fleet.containers(), "{:#?}", other.before);
        other
    }

    /// Whether `s` is one of its containers.
    fn owns(&self, s: &common::fleet::Seen) -> bool {
        s.labels.get(dockwright::labels::SOURCE) == Some(&self.source)
    }

    /// Its objects now: containers carrying its source label (ID and state), its image (ID),
    /// volume (creation time) and network (ID).
    async fn snapshot(&self, d: &bollard::Docker) -> BTreeMap<String, String> {
        let mut now: BTreeMap<String, String> = owned(d, &self.owner)
            .await
            .into_iter()
            .filter(|s| self.owns(s))
            .map(|s| {
                (
                    format!("container {}", s.name),
                    format!("{} {}", s.id, s.state),
                )
            })
            .collect();
        let missing = || "missing".to_string();
        let image = d.inspect_image(&self.image).await.ok().and_then(|i| i.id);
        now.insert(
            format!("image {}", self.image),
            image.unwrap_or_else(missing),
        );
        let volume = d.inspect_volume(&self.volume).await.ok().map(|v| {
            v.created_at
                .map(|t| t.to_string())
                .unwrap_or_else(|| "created".to_string())
        });
        now.insert(
            format!("volume {}", self.volume),
            volume.unwrap_or_else(missing),
        );
        let network = d
            .inspect_network(&self.network, None)
            .await
            .ok()
            .and_then(|n| n.id);
        now.insert(
            format!("network {}", self.network),
            network.unwrap_or_else(missing),
        );
        now
    }

    /// Its objects that changed since they were created: gone, replaced, in another state,
    /// or new.
    async fn touched(&self, d: &bollard::Docker) -> Vec<String> {
        let now = self.snapshot(d).await;
        self.before
            .keys()
            .chain(now.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| self.before.get(*k) != now.get(*k))
            .map(|k| format!("{k}: {:?} -> {:?}", self.before.get(k), now.get(k)))
            .collect()
    }
}

/// What a kill hit.
#[derive(Default)]
struct Kill {
    /// The apply was still running (else it had finished first).
    landed: bool,
    /// Image pulls (`POST /images/create`) the daemon had not finished answering.
    pulls: usize,
    /// Image builds (`POST /build`) the daemon had not finished answering.
    builds: usize,
}

/// Runs apply and kills it with SIGKILL after `delay` — counted from the start of its first
/// pull with `after_pull` (when it pulls within 10 s) — unless it finished first; notes the
/// pulls and builds in flight at that moment.
fn kill_after(env: &Env<'_>, prune: bool, delay: Duration, after_pull: bool) -> Kill {
    let mut child = env
        .apply(prune)
        .env("DOCKER_HOST", env.proxy.docker_host())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    if after_pull {
        let give_up = Instant::now() + Duration::from_secs(10);
        while env.proxy.open("POST", "/images/create") == 0 && Instant::now() < give_up {
            if child.try_wait().unwrap().is_some() {
                return Kill::default();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Kill::default();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pulls = env.proxy.open("POST", "/images/create");
    let builds = env.proxy.open("POST", "/build");
    // `Child::kill` is SIGKILL on Unix: no destructor, no cleanup, no flushed state.
    let landed = child.try_wait().unwrap().is_none() && child.kill().is_ok();
    child.wait().unwrap();
    if !landed {
        return Kill::default();
    }
    Kill {
        landed,
        pulls,
        builds,
    }
}

struct Campaign {
    name: &'static str,
    trials: usize,
    kills: usize,
    /// Kills that landed while at least one pull was in flight.
    during_pulls: usize,
    /// Kills that landed while at least one build was in flight.
    during_builds: usize,
}

/// What one campaign does.
struct Plan<'a> {
    name: &'static str,
    /// The state trial `i` applies (alternating states keeps work in flight: scale up, scale
    /// down, create and remove interleave; new image revisions keep builds and pulls coming).
    state: &'a dyn Fn(usize) -> Fleet,
    /// What the final apply converges to; `None`: `state(trials)` (for trial-dependent
    /// states, one more revision, built and pulled without a kill).
    last: Option<&'a Fleet>,
    /// Every state a container may come from between kills.
    allowed: &'a [&'a Fleet],
    /// `apply --prune`.
    prune: bool,
    /// Run `dockwright prune` after every trial (an operator reclaiming superseded images,
    /// so a later trial pulls and builds from scratch again).
    prune_images: bool,
    kills_wanted: usize,
    /// Kill delays in ms.
    window: (u64, u64),
    /// Kill delays in ms of every even trial, when set, counted from the moment its first
    /// pull started: a random point of the pull phase (a pull of a few MB from the loopback
    /// registry takes a few hundred ms), which random delays from the start of the apply
    /// seldom hit.
    during_pulls: Option<(u64, u64)>,
}

/// One campaign: applies until `kills_wanted` of them were killed (at most three times as
/// many trials), each killed at a random point within the window, trial `i` applying
/// `state(i)`, with safety checks after each kill; then an apply of `state(trials)` to
/// completion and the full verification. Returns the final state too, and the objects of
/// `other` touched (checked after every trial as well).
async fn campaign(
    plan: &Plan<'_>,
    rng: &mut Rng,
    env: &Env<'_>,
    neighbours: &Neighbours,
    other: &OtherSource,
) -> (Campaign, Verdict, Fleet, Vec<String>) {
    let d = docker().await;
    let name = plan.name;
    let mut c = Campaign {
        name,
        trials: 0,
        kills: 0,
        during_pulls: 0,
        during_builds: 0,
    };
    // Upper bound of the next delay: shrinks to what an uninterrupted apply took, so kills
    // keep landing once little work is left.
    let mut upper = plan.window.1;
    let names: BTreeSet<String> = plan
        .allowed
        .iter()
        .flat_map(|f| f.expected().into_keys())
        .flat_map(|n| [format!("{n}{KEPT}"), n])
        .collect();
    let images: BTreeSet<String> = plan
        .allowed
        .iter()
        .flat_map(|f| &f.images)
        .map(|i| format!("Image/default/{}", i.name))
        .collect();
    while c.kills < plan.kills_wanted && c.trials < plan.kills_wanted * 3 {
        let trial = c.trials;
        c.trials += 1;
        (plan.state)(trial).write(env.dir);
        let (delay, after_pull) = match plan.during_pulls {
            Some((low, high)) if trial.is_multiple_of(2) => (rng.between(low, high), true),
            _ => (rng.between(plan.window.0, upper.max(plan.window.0)), false),
        };
        let started = Instant::now();
        let kill = kill_after(env, plan.prune, Duration::from_millis(delay), after_pull);
        c.kills += usize::from(kill.landed);
        c.during_pulls += usize::from(kill.pulls > 0);
        c.during_builds += usize::from(kill.builds > 0);
        if !kill.landed && !after_pull {
            upper = started.elapsed().as_millis() as u64;
        }
        eprintln!(
            "{name} trial {trial}: {} after {delay} ms{} ({} pulls, {} builds in flight)",
            if kill.landed { "SIGKILL" } else { "finished" },
            if after_pull {
                " from the first pull"
            } else {
                ""
            },
            kill.pulls,
            kill.builds
        );
        // Safety at every kill point: only names some declared state has, one container per
        // name, nothing unmanaged touched. A build step's container may still be there: the
        // daemon makes one per step from the config built so far, so after the first of the
        // build's labels (a `LABEL` step each) it carries some of ours — the build hash, the
        // owner, maybe the `Image` resource, never a spec hash — and removes it when the step
        // ends or the build is cancelled. `verify` finds none left after the final apply.
        // The other source's containers are checked below, against what they were.
        for s in owned(&d, env.owner.name()).await {
            if other.owns(&s) {
                continue;
            }
            let build_step = s.labels.contains_key(dockwright::labels::BUILD_HASH)
                && !s.labels.contains_key(dockwright::labels::SPEC_HASH)
                && s.labels
                    .get(dockwright::labels::RESOURCE)
                    .is_none_or(|r| images.contains(r));
            if build_step {
                continue;
            }
            assert!(
                names.contains(&s.name),
                "{name} trial {trial}: container {} ({}, {:?}) matches no declared replica",
                s.name,
                s.state,
                s.labels
            );
        }
        let touched = neighbours.touched();
        assert!(
            touched.is_empty(),
            "{name} trial {trial}: touched {touched:?}"
        );
        if plan.prune_images {
            let out = run(&mut env.dockwright(&["prune"]));
            assert!(out.success(), "{name} trial {trial}: prune: {out}");
        }
        let touched = other.touched(&d).await;
        assert!(
            touched.is_empty(),
            "{name} trial {trial}: touched objects of the other source {touched:?}"
        );
    }
    let fleet = plan.last.cloned().unwrap_or_else(|| (plan.state)(c.trials));
    fleet.write(env.dir);
    let started = Instant::now();
    let finish = run(&mut env.apply(plan.prune));
    eprintln!("{name}: final apply took {:?}", started.elapsed());
    assert!(finish.success(), "{name}: the final apply failed: {finish}");
    let verdict = verify(&d, env.owner.name(), &fleet, env.dir).await;
    let other_touched = other.touched(&d).await;
    (c, verdict, fleet, other_touched)
}

fn report(c: &Campaign, v: &Verdict, neighbours: &Neighbours, other_touched: &[String]) -> usize {
    let touched = neighbours.touched().len();
    println!(
        "campaign {}: trials {}, faults injected {}, resources converged {}, objects lost {}, unmanaged objects touched {}, \
         other source touched {} \
         (containers {}, images {}; kills during pulls {}, during builds {}; prunable images left {}, build-cache images {})",
        c.name,
        c.trials,
        c.kills,
        v.converged + v.images_converged,
        v.lost,
        touched,
        other_touched.len(),
        v.converged,
        v.images_converged,
        c.during_pulls,
        c.during_builds,
        v.prunable_images,
        v.build_cache
    );
    assert!(
        v.problems.is_empty(),
        "campaign {}: {:#?}",
        c.name,
        v.problems
    );
    assert_eq!(touched, 0);
    assert!(
        other_touched.is_empty(),
        "campaign {}: touched objects of the other source {other_touched:#?}",
        c.name
    );
    c.kills
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_converges_to_exactly_the_desired_state() {
    ensure_test_image().await;
    require_registry(&registry());
    let seed = seed();
    println!("crash seed {seed} (replay: DOCKWRIGHT_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let prefix = unique("crash");
    let state = tempfile::tempdir().unwrap();
    let mut created = Fleet::new(&prefix, 100).with_images(4, 3);
    created.state = Some(state.path().to_path_buf());
    assert_eq!(created.containers(), 100);
    // Dropped last: after the owner's containers are gone.
    let mut images = FleetImages::new(&created);
    images.push(&created, 2);
    let owner = TestOwner::new("crash");
    let dir = tempfile::tempdir().unwrap();
    let proxy = CountingProxy::start();
    let env = Env {
        dir: dir.path(),
        owner: &owner,
        proxy: &proxy,
        state: state.path(),
    };
    let neighbours = Neighbours::create(&created);
    // The other source of the same owner: 9 containers (a one-shot, four with files, three
    // replicas on the volume and the built image, one on the network and the image).
    let other_fleet = Fleet::new(&unique("crash-other"), 9).with_images(1, 0);
    let _other_images = FleetImages::new(&other_fleet);
    let other_dir = tempfile::tempdir().unwrap();
    let other = OtherSource::create(&env, &other_fleet, other_dir.path()).await;
    let mut kills = 0;
    let (mut during_pulls, mut during_builds) = (0, 0);
    let mut tally = |c: &Campaign, v: &Verdict, other_touched: &[String]| {
        during_pulls += c.during_pulls;
        during_builds += c.during_builds;
        kills += report(c, v, &neighbours, other_touched);
    };

    // 1. From nothing: builds and pulls, creates (some with files), starts, a one-shot, the
    //    volume and network. The first kills land in the image phase.
    let (c, v, created, o) = campaign(
        &Plan {
            name: "crash-create",
            state: &|_| created.clone(),
            last: None,
            allowed: &[&created],
            prune: false,
            prune_images: false,
            kills_wanted: 12,
            window: (30, 2500),
            during_pulls: None,
        },
        &mut rng,
        &env,
        &neighbours,
        &other,
    )
    .await;
    tally(&c, &v, &o);

    // 2. New image content every trial: every build's inputs change (a rebuild with a RUN
    //    step), the registry tag of the pulled images moves between two versions (a pull with
    //    a layer to download); their containers roll onto the new images. Superseded images
    //    are pruned between trials, so pulls find nothing local to reuse. Every other kill
    //    lands at a random point of the pull phase, the others anywhere in the apply.
    let revised = |trial: usize| {
        let mut f = created.clone();
        for i in &mut f.images {
            i.revision = match i.source {
                ImageSource::Build => 2 + trial as u32,
                ImageSource::Pull => 1 + (trial as u32 + 1) % 2,
            };
        }
        f
    };
    let (c, v, imaged, o) = campaign(
        &Plan {
            name: "crash-images",
            state: &revised,
            last: None,
            allowed: &[&created],
            prune: false,
            prune_images: true,
            kills_wanted: 8,
            window: (500, 9000),
            during_pulls: Some((0, 200)),
        },
        &mut rng,
        &env,
        &neighbours,
        &other,
    )
    .await;
    tally(&c, &v, &o);
    // What is left beyond the declared images is exactly what `dockwright prune` removes.
    let out = run(&mut env.dockwright(&["prune"]));
    assert!(out.success(), "prune: {out}");
    eprintln!("prune after crash-images: {out}");
    let after = verify(&docker().await, owner.name(), &imaged, dir.path()).await;
    assert!(
        after.problems.is_empty(),
        "after prune: {:#?}",
        after.problems
    );
    assert!(
        after.prunable.is_empty(),
        "dockwright prune left images it owns: {:#?} (before: {:#?})",
        after.prunable,
        v.prunable
    );
    assert_eq!(after.images_converged, imaged.images.len());

    // 3. A config change on every other member: recreates (remove, create, copy, start).
    let mut changed = imaged.clone();
    for (i, m) in changed.members.iter_mut().enumerate() {
        if i % 2 == 0 || m.files || m.one_shot {
            m.revision += 1;
        }
    }
    let (c, v, changed, o) = campaign(
        &Plan {
            name: "crash-recreate",
            state: &|_| changed.clone(),
            last: None,
            allowed: &[&imaged, &changed],
            prune: false,
            prune_images: false,
            kills_wanted: 10,
            window: (30, 2500),
            during_pulls: None,
        },
        &mut rng,
        &env,
        &neighbours,
        &other,
    )
    .await;
    tally(&c, &v, &o);

    // 4. Scale down (3 → 2 keeps names; 3 → 1 renames replica 0) and prune removed members,
    //    alternating with the way back (scale up, rename back, re-create the pruned).
    let mut shrunk = changed.clone();
    for (r, m) in shrunk
        .members
        .iter_mut()
        .filter(|m| m.replicas == 3)
        .enumerate()
    {
        m.replicas = if r % 2 == 0 { 2 } else { 1 };
    }
    let single = format!("{prefix}-s");
    let pruned: Vec<String> = shrunk
        .members
        .iter()
        .filter(|m| m.name.starts_with(&single))
        .take(12)
        .map(|m| m.name.clone())
        .collect();
    shrunk.members.retain(|m| !pruned.contains(&m.name));
    let (c, v, _, o) = campaign(
        &Plan {
            name: "crash-scale-down-prune",
            state: &|trial| {
                if trial % 2 == 0 {
                    shrunk.clone()
                } else {
                    changed.clone()
                }
            },
            last: Some(&shrunk),
            allowed: &[&changed, &shrunk],
            prune: true,
            prune_images: false,
            kills_wanted: 12,
            window: (30, 1500),
            during_pulls: None,
        },
        &mut rng,
        &env,
        &neighbours,
        &other,
    )
    .await;
    tally(&c, &v, &o);

    println!(
        "crash total: faults injected {kills}, kills during pulls {during_pulls}, during builds {during_builds}"
    );
    assert!(
        kills >= 30,
        "only {kills} kills landed on a running apply (seed {seed}): widen the windows"
    );
    assert!(
        during_pulls >= 1 && during_builds >= 1,
        "only {during_pulls} kills during pulls and {during_builds} during builds (seed {seed})"
    );
}

/// The narrowest crash window, made deterministic: the copy of `files` into a new container
/// is held up by the proxy and the apply killed meanwhile, leaving a created container without
/// its files. The next apply must not start it as it is (it would run without its files): it
/// copies the files again, then starts it.
#[tokio::test]
async fn a_crash_between_create_and_file_copy_never_starts_a_container_without_its_files() {
    ensure_test_image().await;
    let owner = TestOwner::new("crash-files");
    let dir = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(&unique("crfiles"), 2);
    fleet.members.retain(|m| m.files);
    fleet.members.truncate(1);
    fleet.write(dir.path());
    let name = fleet.members[0].name.clone();

    let proxy = common::CountingProxy::start();
    proxy.set_fault_policy(|r| {
        if r.method == "PUT" && r.path.ends_with("/archive") {
            common::Fault::Delay(Duration::from_secs(60))
        } else {
            common::Fault::Forward
        }
    });
    let mut child = dockwright()
        .args(["apply", "-f"])
        .arg(dir.path())
        .args(["--owner", owner.name()])
        .env("DOCKER_HOST", proxy.docker_host())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.count("PUT", &format!("/containers/{name}/archive")) == 0
        && !proxy
            .requests()
            .iter()
            .any(|(m, p)| m == "PUT" && p.ends_with("/archive"))
    {
        assert!(Instant::now() < deadline, "the apply never copied files");
        assert!(child.try_wait().unwrap().is_none(), "the apply ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let d = docker().await;
    let left = owned(&d, owner.name()).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        left[0].state, "created",
        "the crash left a created container"
    );
    let first_id = left[0].id.clone();

    let out = run(dockwright()
        .args(["apply", "-f"])
        .arg(dir.path())
        .args(["--owner", owner.name()]));
    assert!(out.success(), "{out}");
    let verdict = verify(&d, owner.name(), &fleet, dir.path()).await;
    assert!(verdict.problems.is_empty(), "{:#?}", verdict.problems);
    // Adopted, not removed: the same container, now with its files.
    let now = owned(&d, owner.name()).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].id, first_id);
}

/// The narrowest window of a pull: the daemon has the image, and the apply is killed before it
/// wrote down that it pulled it (held up by the proxy on the inspect that reads the pulled
/// image's ID). The next apply pulls nothing (the image is there) but must still know that
/// it pulled it: the record is what lets `apply --prune` remove the image once its resource
/// is gone. Without it the image is left behind for good.
#[tokio::test]
async fn a_crash_between_a_pull_and_its_record_still_lets_prune_remove_the_image() {
    ensure_test_image().await;
    require_registry(&registry());
    let state = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(&unique("crpull"), 0).with_images(0, 1);
    fleet.state = Some(state.path().to_path_buf());
    let mut images = FleetImages::new(&fleet);
    images.push(&fleet, 1);
    let owner = TestOwner::new("crash-pull");
    let dir = tempfile::tempdir().unwrap();
    let proxy = CountingProxy::start();
    let env = Env {
        dir: dir.path(),
        owner: &owner,
        proxy: &proxy,
        state: state.path(),
    };
    fleet.write(dir.path());
    let reference = fleet.images[0].reference();

    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen_pull = pulled.clone();
    let name = fleet.images[0].name.clone();
    proxy.set_fault_policy(move |r| {
        use std::sync::atomic::Ordering;
        if r.method == "POST" && r.path == "/images/create" {
            seen_pull.store(true, Ordering::SeqCst);
        } else if seen_pull.load(Ordering::SeqCst)
            && r.method == "GET"
            && r.path.starts_with("/images/")
            && r.path.ends_with("/json")
            && r.path.contains(&name)
        {
            return common::Fault::Delay(Duration::from_secs(60));
        }
        common::Fault::Forward
    });
    let mut child = env
        .apply(false)
        .env("DOCKER_HOST", proxy.docker_host())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = |proxy: &CountingProxy| {
        pulled.load(std::sync::atomic::Ordering::SeqCst)
            && proxy.open("POST", "/images/create") == 0
            && proxy.open("GET", "/images/") > 0
    };
    while !held(&proxy) {
        assert!(
            Instant::now() < deadline,
            "the apply never read the pulled image"
        );
        assert!(child.try_wait().unwrap().is_none(), "the apply ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let d = docker().await;
    let id = d
        .inspect_image(&reference)
        .await
        .expect("the daemon finished the pull before the kill")
        .id
        .unwrap_or_default();

    // The next apply finds the image there: nothing to pull, everything converged.
    let out = run(&mut env.apply(false));
    assert!(out.success(), "{out}");
    let verdict = verify(&d, owner.name(), &fleet, dir.path()).await;
    assert!(verdict.problems.is_empty(), "{:#?}", verdict.problems);

    // The resource goes: its pulled image goes with it.
    Fleet {
        images: Vec::new(),
        ..fleet.clone()
    }
    .write(dir.path());
    let out = run(&mut env.apply(true));
    assert!(out.success(), "{out}");
    assert!(
        d.inspect_image(&id).await.is_err(),
        "the image pulled before the crash is left behind: {out}"
    );
}
