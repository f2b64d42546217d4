//! Daemon faults and concurrency, against the real daemon through the fault-injecting proxy:
//! slow answers, dropped connections (before the daemon acts, and after it acted with the
//! answer lost), `409` on names, `404` on objects removed mid-plan, disk-full errors on create
//! and build. Each must end as a per-resource error (exit 1, never a crash) and converge once
//! the fault is gone, never removing a running declared container nor touching unmanaged ones.
//! Then two processes of one owner at once (no duplicates), and two owners side by side.
//!
//! Fault choices come from a seeded generator; `DOCKWRIGHT_FAULT_SEED=<seed>` replays.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fleet::{owned, verify, Fleet, Neighbours, Verdict};
use common::{
    docker, dockwright, ensure_test_image, run, unique, CountingProxy, Fault, RequestInfo, Run,
    TestOwner, TEST_IMAGE,
};

/// splitmix64, shared by the proxy's policy (behind a mutex).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn seed() -> u64 {
    std::env::var("DOCKWRIGHT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

fn is_write(r: &RequestInfo) -> bool {
    r.method != "GET" && r.method != "HEAD"
}

fn apply(dir: &Path, owner: &str, host: Option<&str>) -> Run {
    let mut cmd = dockwright();
    cmd.args(["apply", "-f"]).arg(dir).args(["--owner", owner]);
    if let Some(host) = host {
        cmd.env("DOCKER_HOST", host);
    }
    run(&mut cmd)
}

/// A faulty pass may fail (exit 1 with per-resource errors) but never crash.
fn assert_no_crash(name: &str, trial: usize, out: &Run) {
    assert!(
        matches!(out.code, Some(0) | Some(1)),
        "{name} trial {trial}: not a clean exit: {out}"
    );
    assert!(
        !out.stderr.contains("panicked"),
        "{name} trial {trial}: panic: {out}"
    );
}

/// Counts what a campaign did, for its summary line.
#[derive(Default)]
struct Tally {
    trials: usize,
    faults: Arc<AtomicUsize>,
    lost: usize,
}

/// Checks after each faulty pass: every container of `stable` (replicas whose spec this
/// campaign does not change) that was running before is still there with the same ID —
/// nothing may have removed it —, nothing of ours outside the fleet, neighbours untouched.
#[allow(clippy::too_many_arguments)]
async fn safety(
    name: &str,
    trial: usize,
    owner: &str,
    fleet: &Fleet,
    stable: &BTreeSet<String>,
    neighbours: &Neighbours,
    running: &mut BTreeMap<String, String>,
    tally: &mut Tally,
) {
    let d = docker().await;
    let expected = fleet.expected();
    let now = owned(&d, owner).await;
    for s in &now {
        // A rolling update keeps the previous container as `<name>_prev` until the new one
        // is up: allowed between passes, gone once converged (`verify`).
        let base = s.name.strip_suffix("_prev").unwrap_or(&s.name);
        assert!(
            expected.contains_key(base),
            "{name} trial {trial}: {} is not declared",
            s.name
        );
    }
    let ids: BTreeSet<&str> = now.iter().map(|s| s.id.as_str()).collect();
    for (n, id) in running.iter() {
        if !ids.contains(id.as_str()) {
            tally.lost += 1;
            eprintln!("{name} trial {trial}: running container {n} ({id}) was removed");
        }
    }
    running.extend(
        now.iter()
            .filter(|s| s.state == "running" && stable.contains(&s.name))
            .map(|s| (s.name.clone(), s.id.clone())),
    );
    let touched = neighbours.touched();
    assert!(
        touched.is_empty(),
        "{name} trial {trial}: touched {touched:?}"
    );
}

/// One campaign: `trials` applies of `fleet` through `proxy` with `policy` installed, safety
/// checks after each, then a clean apply and full verification; prints the summary line.
/// `changed` names the members whose spec differs from what the daemon held before.
#[allow(clippy::too_many_arguments)]
async fn campaign(
    name: &str,
    proxy: &CountingProxy,
    policy: impl Fn(&RequestInfo) -> Fault + Send + Sync + 'static,
    faults: Arc<AtomicUsize>,
    dir: &Path,
    owner: &TestOwner,
    fleet: &Fleet,
    changed: &BTreeSet<String>,
    neighbours: &Neighbours,
    trials: usize,
) -> Verdict {
    let mut tally = Tally {
        faults,
        ..Default::default()
    };
    let mut running = BTreeMap::new();
    // Replicas this campaign does not change: the ones `dir` held before with the same spec.
    let before = owned(&docker().await, owner.name()).await;
    let stable: BTreeSet<String> = fleet
        .members
        .iter()
        .filter(|m| !changed.contains(&m.name))
        .flat_map(|m| m.container_names())
        .filter(|n| before.iter().any(|s| &s.name == n))
        .collect();
    proxy.set_fault_policy(policy);
    for trial in 0..trials {
        let out = apply(dir, owner.name(), Some(&proxy.docker_host()));
        assert_no_crash(name, trial, &out);
        tally.trials += 1;
        safety(
            name,
            trial,
            owner.name(),
            fleet,
            &stable,
            neighbours,
            &mut running,
            &mut tally,
        )
        .await;
    }
    proxy.clear_fault_policy();
    let out = apply(dir, owner.name(), Some(&proxy.docker_host()));
    assert!(out.success(), "{name}: the clean apply failed: {out}");
    let verdict = verify(&docker().await, owner.name(), fleet, dir).await;
    summary(name, &tally, &verdict, neighbours);
    verdict
}

fn summary(name: &str, tally: &Tally, verdict: &Verdict, neighbours: &Neighbours) {
    let touched = neighbours.touched().len();
    println!(
        "campaign {name}: trials {}, faults injected {}, resources converged {}, objects lost {}, unmanaged objects touched {touched}",
        tally.trials,
        tally.faults.load(Ordering::SeqCst),
        verdict.converged,
        tally.lost + verdict.lost
    );
    assert!(
        verdict.problems.is_empty(),
        "{name}: {:#?}",
        verdict.problems
    );
    assert_eq!(tally.lost + verdict.lost, 0, "{name}: objects lost");
    assert_eq!(touched, 0, "{name}: unmanaged objects touched");
}

struct Setup {
    owner: TestOwner,
    dir: tempfile::TempDir,
    fleet: Fleet,
    neighbours: Neighbours,
    proxy: CountingProxy,
}

fn setup(test: &str, containers: usize) -> Setup {
    let owner = TestOwner::new(test);
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(&unique(test), containers);
    fleet.write(dir.path());
    let neighbours = Neighbours::create(&fleet);
    Setup {
        owner,
        dir,
        fleet,
        neighbours,
        proxy: CountingProxy::start(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_and_dropped_connections_never_crash_nor_remove() {
    ensure_test_image().await;
    let seed = seed();
    println!("fault seed {seed} (replay: DOCKWRIGHT_FAULT_SEED={seed})");
    let s = setup("fault-net", 30);

    // Slow: every request delayed up to 300 ms; a pass still converges.
    let rng = Arc::new(Mutex::new(Rng(seed)));
    let count = Arc::new(AtomicUsize::new(0));
    let (r, c) = (rng.clone(), count.clone());
    campaign(
        "faults-slow",
        &s.proxy,
        move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            Fault::Delay(Duration::from_millis(r.lock().unwrap().next() % 300))
        },
        count,
        s.dir.path(),
        &s.owner,
        &s.fleet,
        &BTreeSet::new(),
        &s.neighbours,
        1,
    )
    .await;

    // Dropped: a fifth of the writes lose their connection, half before the daemon acts and
    // half after (the create or remove happened, its answer is lost).
    let mut changed = s.fleet.clone();
    for m in changed.members.iter_mut().step_by(2) {
        m.revision += 1;
    }
    let bumped: BTreeSet<String> = changed
        .members
        .iter()
        .step_by(2)
        .map(|m| m.name.clone())
        .collect();
    changed.write(s.dir.path());
    let count = Arc::new(AtomicUsize::new(0));
    let (r, c) = (rng.clone(), count.clone());
    campaign(
        "faults-dropped-connections",
        &s.proxy,
        move |req| {
            let mut rng = r.lock().unwrap();
            if is_write(req) && rng.chance(20) {
                c.fetch_add(1, Ordering::SeqCst);
                if rng.chance(50) {
                    Fault::Drop
                } else {
                    Fault::DropAfter
                }
            } else {
                Fault::Forward
            }
        },
        count,
        s.dir.path(),
        &s.owner,
        &changed,
        &bumped,
        &s.neighbours,
        6,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_vanished_objects_and_disk_full_are_per_resource_errors() {
    ensure_test_image().await;
    let seed = seed().wrapping_add(1);
    println!(
        "fault seed {seed} (replay: DOCKWRIGHT_FAULT_SEED={})",
        seed - 1
    );
    let s = setup("fault-daemon", 30);
    let rng = Arc::new(Mutex::new(Rng(seed)));

    // 409 on creates (nobody holds the name: the holder "vanished"), 404 on starts, stops and
    // removes (removed mid-plan), 500 "no space left on device" on creates.
    let count = Arc::new(AtomicUsize::new(0));
    let (r, c) = (rng.clone(), count.clone());
    let verdict = campaign(
        "faults-daemon-errors",
        &s.proxy,
        move |req| {
            let mut rng = r.lock().unwrap();
            if !is_write(req) || !rng.chance(25) {
                return Fault::Forward;
            }
            c.fetch_add(1, Ordering::SeqCst);
            if req.path == "/containers/create" {
                if rng.chance(50) {
                    Fault::Respond(409)
                } else {
                    Fault::RespondWith(
                        500,
                        "write /var/lib/docker/containers/x/config.v2.json: no space left on device"
                            .into(),
                    )
                }
            } else {
                Fault::Respond(404)
            }
        },
        count,
        s.dir.path(),
        &s.owner,
        &s.fleet,
        &BTreeSet::new(),
        &s.neighbours,
        6,
    )
    .await;
    assert_eq!(verdict.converged, s.fleet.containers());

    // Containers removed by someone else while a pass runs (real 404s): the pass reports
    // per-resource errors or succeeds; the next converges.
    let mut changed = s.fleet.clone();
    for m in changed.members.iter_mut() {
        m.revision += 1;
    }
    changed.write(s.dir.path());
    let d = docker().await;
    let victims: Vec<String> = owned(&d, s.owner.name())
        .await
        .into_iter()
        .map(|c| c.id)
        .step_by(3)
        .collect();
    let child = dockwright()
        .args(["apply", "-f"])
        .arg(s.dir.path())
        .args(["--owner", s.owner.name()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for id in &victims {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", id])
            .output();
    }
    let out = child.wait_with_output().unwrap();
    let first = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_no_crash("faults-removed-mid-plan", 0, &first);
    let out = apply(s.dir.path(), s.owner.name(), None);
    assert!(out.success(), "{out}");
    let verdict = verify(&d, s.owner.name(), &changed, s.dir.path()).await;
    summary(
        "faults-removed-mid-plan",
        &Tally {
            trials: 1,
            faults: Arc::new(AtomicUsize::new(victims.len())),
            lost: 0,
        },
        &verdict,
        &s.neighbours,
    );
}

#[tokio::test]
async fn disk_full_during_a_build_is_a_per_resource_error_and_others_converge() {
    ensure_test_image().await;
    let s = setup("fault-build", 4);
    let image = unique("dwfault-build");
    let tag = format!("{image}:1");
    std::fs::create_dir(s.dir.path().join("ctx")).unwrap();
    std::fs::write(
        s.dir.path().join("ctx/Dockerfile"),
        common::own_layers(
            &format!("FROM {TEST_IMAGE}\nRUN echo built > /built\n"),
            &image,
        ),
    )
    .unwrap();
    std::fs::write(
        s.dir.path().join("built.yaml"),
        format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: {{name: {image}}}\nspec:\n  ref: {tag}\n  build: {{context: ctx}}\n---\napiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {image}-c}}\nspec:\n  image: {image}\n  command: [sleep, '3600']\n"
        ),
    )
    .unwrap();
    let builds = Arc::new(AtomicUsize::new(0));
    let b = builds.clone();
    s.proxy.set_fault_policy(move |req| {
        if req.path == "/build" {
            b.fetch_add(1, Ordering::SeqCst);
            Fault::RespondWith(500, "no space left on device".into())
        } else {
            Fault::Forward
        }
    });
    let out = apply(s.dir.path(), s.owner.name(), Some(&s.proxy.docker_host()));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("no space left on device"), "{out}");
    // The fleet converged regardless of the broken build.
    let d = docker().await;
    let verdict = verify(&d, s.owner.name(), &s.fleet, s.dir.path()).await;
    let not_fleet: Vec<_> = verdict
        .problems
        .iter()
        .filter(|p| !p.contains(&image))
        .collect();
    assert!(not_fleet.is_empty(), "{not_fleet:#?}");
    s.proxy.clear_fault_policy();
    let out = apply(s.dir.path(), s.owner.name(), Some(&s.proxy.docker_host()));
    assert!(out.success(), "{out}");
    let names: Vec<String> = owned(&d, s.owner.name())
        .await
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(names.contains(&format!("{image}-c")), "{names:?}");
    println!(
        "campaign faults-build-disk-full: trials 2, faults injected {}, resources converged {}, objects lost 0, unmanaged objects touched {}",
        builds.load(Ordering::SeqCst),
        s.fleet.containers() + 1,
        s.neighbours.touched().len()
    );
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_retries_with_backoff_through_faults() {
    ensure_test_image().await;
    let s = setup("fault-agent", 12);
    // The daemon is gone at first (the first requests lose their connection), then the first
    // creates fail as on a full disk; the agent must wait, then retry them with back-off.
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let seen = AtomicUsize::new(0);
    s.proxy.set_fault_policy(move |req| {
        if seen.fetch_add(1, Ordering::SeqCst) < 10 {
            c.fetch_add(1, Ordering::SeqCst);
            Fault::Drop
        } else if req.path == "/containers/create" && c.load(Ordering::SeqCst) < 30 {
            c.fetch_add(1, Ordering::SeqCst);
            Fault::RespondWith(500, "no space left on device".into())
        } else {
            Fault::Forward
        }
    });
    let mut agent = dockwright()
        .args(["agent", "--manifests"])
        .arg(s.dir.path())
        .args(["--owner", s.owner.name(), "--listen", "127.0.0.1:0"])
        .args(["--backoff-initial", "500ms", "--backoff-max", "2s"])
        .env("DOCKER_HOST", s.proxy.docker_host())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = docker().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let verdict = loop {
        assert!(
            agent.try_wait().unwrap().is_none(),
            "the agent exited under faults"
        );
        let v = verify(&d, s.owner.name(), &s.fleet, s.dir.path()).await;
        if v.problems.is_empty() || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(count.load(Ordering::SeqCst) > 0, "no fault was injected");
    summary(
        "faults-agent-backoff",
        &Tally {
            trials: 1,
            faults: count,
            lost: 0,
        },
        &verdict,
        &s.neighbours,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_of_one_owner_at_once_make_no_duplicates() {
    ensure_test_image().await;
    let s = setup("conc-same", 40);
    let mut fleet = s.fleet.clone();
    let mut both_zero = 0;
    for trial in 0..3 {
        if trial > 0 {
            // A config change on every member: both race to recreate.
            for m in fleet.members.iter_mut() {
                m.revision += 1;
            }
            fleet.write(s.dir.path());
        }
        let spawn = || {
            dockwright()
                .args(["apply", "-f"])
                .arg(s.dir.path())
                .args(["--owner", s.owner.name()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outs: Vec<Run> = [a, b]
            .into_iter()
            .map(|c| {
                let o = c.wait_with_output().unwrap();
                Run {
                    code: o.status.code(),
                    stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                }
            })
            .collect();
        for out in &outs {
            assert_no_crash("concurrent-same-owner", trial, out);
        }
        if outs.iter().all(Run::success) {
            both_zero += 1;
        } else {
            // A loser may report what changed under it; a plain re-apply resolves it.
            eprintln!("trial {trial}: {}\n{}", outs[0], outs[1]);
            let out = apply(s.dir.path(), s.owner.name(), None);
            assert!(out.success(), "{out}");
        }
        let verdict = verify(&docker().await, s.owner.name(), &fleet, s.dir.path()).await;
        assert!(
            verdict.problems.is_empty(),
            "trial {trial}: {:#?}",
            verdict.problems
        );
    }
    println!(
        "campaign concurrent-same-owner: trials 3, both exited 0 in {both_zero}, resources converged {}, objects lost 0, unmanaged objects touched {}",
        fleet.containers(),
        s.neighbours.touched().len()
    );
    assert!(s.neighbours.touched().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_on_one_daemon_never_see_nor_touch_each_other() {
    ensure_test_image().await;
    let a = setup("conc-a", 15);
    let b_owner = TestOwner::new("conc-b");
    let b_dir = tempfile::tempdir().unwrap();
    let b_fleet = Fleet::new(&unique("conc-b"), 15);
    b_fleet.write(b_dir.path());
    // Both converge at once, each pruning: neither may remove the other's containers.
    let spawn = |dir: &Path, owner: &str| {
        dockwright()
            .args(["apply", "--prune", "-f"])
            .arg(dir)
            .args(["--owner", owner])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (
        spawn(a.dir.path(), a.owner.name()),
        spawn(b_dir.path(), b_owner.name()),
    );
    for c in [ca, cb] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let d = docker().await;
    assert!(verify(&d, a.owner.name(), &a.fleet, a.dir.path())
        .await
        .problems
        .is_empty());
    assert!(verify(&d, b_owner.name(), &b_fleet, b_dir.path())
        .await
        .problems
        .is_empty());
    let b_ids: BTreeSet<String> = owned(&d, b_owner.name())
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();

    // A declares a name B holds: a clear conflict for that resource, B's container untouched;
    // A's `get` lists none of B's; A's prune of everything leaves B alone.
    let stolen = b_fleet.members[1].name.clone();
    std::fs::write(
        a.dir.path().join("steal.yaml"),
        format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {stolen}}}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, '3600']\n"
        ),
    )
    .unwrap();
    let out = apply(a.dir.path(), a.owner.name(), None);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("another dockwright owner") && out.stderr.contains(b_owner.name()),
        "{out}"
    );
    let get = run(dockwright()
        .args(["get", "-o", "json", "--owner"])
        .arg(a.owner.name()));
    assert!(get.success(), "{get}");
    for id in &b_ids {
        assert!(!get.stdout.contains(id.as_str()), "A's get shows B's {id}");
    }
    std::fs::remove_file(a.dir.path().join("steal.yaml")).unwrap();
    std::fs::remove_file(a.dir.path().join("fleet.yaml")).unwrap();
    std::fs::write(
        a.dir.path().join("empty.yaml"),
        format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {}-last}}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, '3600']\n",
            a.fleet.prefix
        ),
    )
    .unwrap();
    let out = run(dockwright()
        .args(["apply", "--prune", "-f"])
        .arg(a.dir.path())
        .args(["--owner", a.owner.name()]));
    assert!(out.success(), "{out}");
    let b_now: BTreeSet<String> = owned(&d, b_owner.name())
        .await
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(b_now, b_ids, "A's prune touched B's containers");
    assert!(a.neighbours.touched().is_empty());
    println!(
        "campaign two-owners: trials 1, faults injected 1, resources converged {}, objects lost 0, unmanaged objects touched 0",
        b_fleet.containers() + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_of_one_owner_never_touch_each_other() {
    ensure_test_image().await;
    let a = setup("src-a", 15);
    let b_dir = tempfile::tempdir().unwrap();
    let b_fleet = Fleet::new(&unique("src-b"), 15);
    b_fleet.write(b_dir.path());
    let owner = a.owner.name();
    // Both converge at once under one owner, each pruning: neither removes the other's.
    let spawn = |dir: &Path| {
        dockwright()
            .args(["apply", "--prune", "-f"])
            .arg(dir)
            .args(["--owner", owner])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(a.dir.path()), spawn(b_dir.path()));
    for c in [ca, cb] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let d = docker().await;
    let b_source = b_dir.path().canonicalize().unwrap();
    let b_source = b_source.to_string_lossy();
    let of_b = |c: &common::fleet::Seen| {
        c.labels.get(dockwright::labels::SOURCE).map(String::as_str) == Some(&*b_source)
    };
    let b_ids = || async {
        owned(&d, owner)
            .await
            .into_iter()
            .filter(of_b)
            .map(|c| c.id)
            .collect::<BTreeSet<String>>()
    };
    assert!(verify(&d, owner, &a.fleet, a.dir.path())
        .await
        .problems
        .is_empty());
    assert!(verify(&d, owner, &b_fleet, b_dir.path())
        .await
        .problems
        .is_empty());
    let before = b_ids().await;
    assert_eq!(before.len(), b_fleet.containers());

    // A declares a name B created: an error for that resource naming both sources, B's
    // container untouched; A's prune of everything else leaves all of B alone.
    let stolen = b_fleet.members[1].name.clone();
    std::fs::write(
        a.dir.path().join("steal.yaml"),
        format!(
            "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: {stolen}}}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, '3600']\n"
        ),
    )
    .unwrap();
    std::fs::remove_file(a.dir.path().join("fleet.yaml")).unwrap();
    let out = run(dockwright()
        .args(["apply", "--prune", "-f"])
        .arg(a.dir.path())
        .args(["--owner", owner]));
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(&*b_source) && out.stderr.contains("--take-over"),
        "{out}"
    );
    let a_left: Vec<String> = owned(&d, owner)
        .await
        .into_iter()
        .filter(|c| !of_b(c))
        .map(|c| c.name)
        .collect();
    assert!(a_left.is_empty(), "A's prune left {a_left:?}");
    let after = b_ids().await;
    let touched = before.symmetric_difference(&after).count();
    println!(
        "campaign two-sources: trials 1, faults injected 1, resources converged {}, objects lost 0, objects of the other source touched {touched}, unmanaged objects touched {}",
        b_fleet.containers(),
        a.neighbours.touched().len()
    );
    assert_eq!(touched, 0, "A touched B's containers");
    assert!(a.neighbours.touched().is_empty());
}
