//! Crash safety: `dockwright apply` is killed with SIGKILL at random points while it converges a
//! fleet of 100 containers (creates with files, starts, a one-shot, then recreates after a
//! config change, then scale-downs, renames and prunes); after every campaign an apply run to
//! completion must leave exactly the declared containers — no duplicates, no orphans, files in
//! place — and the unmanaged neighbours untouched.
//!
//! The kill delays come from a seeded generator; the seed is printed, and
//! `DOCKWRIGHT_CRASH_SEED=<seed>` replays a run.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::fleet::{owned, verify, Fleet, Neighbours, Verdict};
use common::{docker, dockwright, ensure_test_image, run, unique, TestOwner};

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

fn spawn_apply(dir: &Path, owner: &str, prune: bool) -> Child {
    let mut cmd = dockwright();
    cmd.args(["apply", "-f"]).arg(dir).args(["--owner", owner]);
    if prune {
        cmd.arg("--prune");
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs apply and kills it with SIGKILL after `delay`, unless it finished first. True when
/// the kill landed on a running process.
fn kill_after(dir: &Path, owner: &str, prune: bool, delay: Duration) -> bool {
    let mut child = spawn_apply(dir, owner, prune);
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no cleanup, no flushed state.
    let killed = child.try_wait().unwrap().is_none() && child.kill().is_ok();
    child.wait().unwrap();
    killed
}

struct Campaign<'a> {
    name: &'a str,
    trials: usize,
    kills: usize,
}

/// One campaign: applies until `kills_wanted` of them were killed (at most three times as
/// many trials), each killed at a random point within `window` ms, trial
/// `i` applying `states[i % states.len()]` (alternating states keeps work in flight: scale
/// up, scale down, create and remove interleave), with safety checks after each kill; then an
/// apply of `fleet` to completion and the full verification.
#[allow(clippy::too_many_arguments)]
async fn campaign<'a>(
    name: &'a str,
    rng: &mut Rng,
    dir: &Path,
    owner: &TestOwner,
    fleet: &Fleet,
    states: &[&Fleet],
    allowed: &[&Fleet],
    neighbours: &Neighbours,
    prune: bool,
    kills_wanted: usize,
    window: (u64, u64),
) -> (Campaign<'a>, Verdict) {
    let d = docker().await;
    let mut kills = 0;
    let mut trials = 0;
    // Upper bound of the next delay: shrinks to what an uninterrupted apply took, so kills
    // keep landing once little work is left.
    let mut upper = window.1;
    while kills < kills_wanted && trials < kills_wanted * 3 {
        let trial = trials;
        trials += 1;
        states[trial % states.len()].write(dir);
        let delay = rng.between(window.0, upper.max(window.0));
        let started = Instant::now();
        let killed = kill_after(dir, owner.name(), prune, Duration::from_millis(delay));
        kills += usize::from(killed);
        if !killed {
            upper = started.elapsed().as_millis() as u64;
        }
        eprintln!(
            "{name} trial {trial}: {} after {delay} ms",
            if killed { "SIGKILL" } else { "finished" }
        );
        // Safety at every kill point: only names some declared state has, one container per
        // name, nothing unmanaged touched.
        let names: std::collections::BTreeSet<String> = allowed
            .iter()
            .flat_map(|f| f.expected().into_keys())
            .flat_map(|n| [format!("{n}{KEPT}"), n])
            .collect();
        for s in owned(&d, owner.name()).await {
            assert!(
                names.contains(&s.name),
                "{name} trial {trial}: container {} ({}) matches no declared replica",
                s.name,
                s.state
            );
        }
        let touched = neighbours.touched();
        assert!(
            touched.is_empty(),
            "{name} trial {trial}: touched {touched:?}"
        );
    }
    fleet.write(dir);
    let finish = run(dockwright()
        .args(["apply", "-f"])
        .arg(dir)
        .args(["--owner", owner.name()])
        .args(if prune { &["--prune"][..] } else { &[][..] }));
    assert!(finish.success(), "{name}: the final apply failed: {finish}");
    let verdict = verify(&d, owner.name(), fleet, dir).await;
    (
        Campaign {
            name,
            trials,
            kills,
        },
        verdict,
    )
}

fn report(c: &Campaign<'_>, v: &Verdict, neighbours: &Neighbours) -> usize {
    let touched = neighbours.touched().len();
    println!(
        "campaign {}: trials {}, faults injected {}, resources converged {}, objects lost {}, unmanaged objects touched {}",
        c.name, c.trials, c.kills, v.converged, v.lost, touched
    );
    assert!(
        v.problems.is_empty(),
        "campaign {}: {:#?}",
        c.name,
        v.problems
    );
    assert_eq!(touched, 0);
    c.kills
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_converges_to_exactly_the_desired_state() {
    ensure_test_image().await;
    let seed = seed();
    println!("crash seed {seed} (replay: DOCKWRIGHT_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let owner = TestOwner::new("crash");
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("crash");
    let created = Fleet::new(&prefix, 100);
    assert_eq!(created.containers(), 100);
    let neighbours = Neighbours::create(&created);

    // 1. From nothing: creates (some with files), starts, a one-shot, the volume and network.
    let (c, v) = campaign(
        "crash-create",
        &mut rng,
        dir.path(),
        &owner,
        &created,
        &[&created],
        &[&created],
        &neighbours,
        false,
        12,
        (30, 2500),
    )
    .await;
    let mut kills = report(&c, &v, &neighbours);

    // 2. A config change on every other member: recreates (remove, create, copy, start).
    let mut changed = created.clone();
    for (i, m) in changed.members.iter_mut().enumerate() {
        if i % 2 == 0 || m.files || m.one_shot {
            m.revision += 1;
        }
    }
    let (c, v) = campaign(
        "crash-recreate",
        &mut rng,
        dir.path(),
        &owner,
        &changed,
        &[&changed],
        &[&created, &changed],
        &neighbours,
        false,
        10,
        (30, 2500),
    )
    .await;
    kills += report(&c, &v, &neighbours);

    // 3. Scale down (3 → 2 keeps names; 3 → 1 renames replica 0) and prune removed members,
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
    let (c, v) = campaign(
        "crash-scale-down-prune",
        &mut rng,
        dir.path(),
        &owner,
        &shrunk,
        &[&shrunk, &changed],
        &[&changed, &shrunk],
        &neighbours,
        true,
        12,
        (30, 1500),
    )
    .await;
    kills += report(&c, &v, &neighbours);

    assert!(
        kills >= 30,
        "only {kills} kills landed on a running apply (seed {seed}): widen the windows"
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
