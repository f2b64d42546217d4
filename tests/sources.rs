//! Sources never step on each other (`dockwright.dev/source`), end to end with the real binary
//! and daemon: `apply --prune` of one directory never touches what another created, a name
//! declared by two sources is an error naming both until `--take-over` moves it (no
//! recreate), containers made before source labels are left alone by other sources and
//! adopted without a recreate by the one declaring them, `prune --orphans` lists and removes
//! the rest, and `--source NAME` lets a renamed directory keep its containers.
//!
//! Each test has its own owner and its own state directory (`XDG_STATE_HOME`: the adoption
//! records live there).

mod common;

use std::path::{Path, PathBuf};

use common::{dockwright, ensure_test_image, run, unique, Run, TestOwner, TEST_IMAGE};
use serde_json::Value;

/// One test's owner, state directory and manifest directories.
struct World {
    owner: TestOwner,
    state: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl World {
    fn new(prefix: &str) -> Self {
        Self {
            owner: TestOwner::new(prefix),
            state: tempfile::tempdir().unwrap(),
            root: tempfile::tempdir().unwrap(),
        }
    }

    /// A manifest directory `name` under the test's root, declaring `containers`.
    fn dir(&self, name: &str, containers: &[&str]) -> PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        declare(&dir, containers);
        dir
    }

    /// `dockwright ARGS --owner OWNER` with this test's state directory.
    fn dw(&self, args: &[&str]) -> Run {
        run(dockwright()
            .args(args)
            .args(["--owner", self.owner.name()])
            .env("XDG_STATE_HOME", self.state.path())
            .env_remove("DOCKWRIGHT_SOURCE"))
    }

    fn apply(&self, dir: &Path, extra: &[&str]) -> Run {
        let mut args = vec!["apply", "-f", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.dw(&args)
    }
}

/// Rewrites `dir` to declare exactly `containers` (one file each).
fn declare(dir: &Path, containers: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for name in containers {
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            format!(
                "apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\nspec:\n  image: {TEST_IMAGE}\n  imagePullPolicy: Never\n  command: [sleep, \"3600\"]\n"
            ),
        )
        .unwrap();
    }
}

fn canonical(dir: &Path) -> String {
    dir.canonicalize().unwrap().to_string_lossy().into_owned()
}

fn docker_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .args(args)
        .output()
        .unwrap()
}

fn container_id(name: &str) -> Option<String> {
    let out = docker_cli(&["inspect", "-f", "{{.Id}}", name]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn labels_of(name: &str) -> serde_json::Map<String, Value> {
    let out = docker_cli(&["inspect", "-f", "{{json .Config.Labels}}", name]);
    assert!(out.status.success(), "inspect {name}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Replaces `name` by a running container with the same labels minus the source label: what
/// a dockwright from before source labels left behind.
fn make_unlabelled(name: &str) -> String {
    let labels = labels_of(name);
    assert!(docker_cli(&["rm", "-f", name]).status.success());
    let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.into()];
    for (k, v) in &labels {
        if k != dockwright::labels::SOURCE {
            args.push("--label".into());
            args.push(format!("{k}={}", v.as_str().unwrap()));
        }
    }
    args.extend([TEST_IMAGE.into(), "sleep".into(), "3600".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = docker_cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!labels_of(name).contains_key(dockwright::labels::SOURCE));
    container_id(name).unwrap()
}

#[tokio::test]
async fn apply_prune_of_one_directory_touches_nothing_of_another() {
    ensure_test_image().await;
    let w = World::new("src-prune");
    let (a1, b1) = (unique("a1"), unique("b1"));
    let a = w.dir("a", &[&a1]);
    let b = w.dir("b", &[&b1]);
    let out = w.apply(&b, &[]);
    assert!(out.success(), "{out}");
    let b1_id = container_id(&b1).unwrap();
    assert_eq!(
        labels_of(&b1)[dockwright::labels::SOURCE],
        canonical(&b).as_str()
    );

    let out = w.apply(&a, &["--prune"]);
    assert!(out.success(), "{out}");
    assert_eq!(container_id(&b1).as_deref(), Some(b1_id.as_str()), "{out}");
    assert!(!out.stdout.contains(&b1), "{out}");

    // a1 leaves A: diff says why it goes (which source, which rule), and only it goes.
    declare(&a, &[]);
    let out = w.dw(&["diff", "--prune", "-f", a.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("remove") && l.contains(&a1))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("no longer declared by source {:?}", canonical(&a))),
        "{line}"
    );
    assert!(!out.stdout.contains(&b1), "{out}");
    let out = w.apply(&a, &["--prune", "--dry-run"]);
    assert!(
        out.stdout.contains(&a1) && !out.stdout.contains(&b1),
        "{out}"
    );
    let out = w.apply(&a, &["--prune"]);
    assert!(out.success(), "{out}");
    assert!(container_id(&a1).is_none(), "{out}");
    assert_eq!(container_id(&b1).as_deref(), Some(b1_id.as_str()));
}

#[tokio::test]
async fn a_name_two_sources_declare_is_an_error_until_taken_over_without_a_recreate() {
    ensure_test_image().await;
    let w = World::new("src-clash");
    let web = unique("web");
    let a = w.dir("a", &[&web]);
    let b = w.dir("b", &[&web]);
    assert!(w.apply(&a, &[]).success());
    let id = container_id(&web).unwrap();

    let out = w.apply(&b, &["--prune"]);
    assert_eq!(out.code, Some(1), "{out}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(&canonical(&a)) && all.contains(&canonical(&b)) && all.contains("--take-over"),
        "the error names both sources: {out}"
    );
    assert_eq!(container_id(&web).as_deref(), Some(id.as_str()));

    // diff shows the take-over before it happens.
    let out = w.dw(&["diff", "--take-over", "-f", b.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains(&format!("adopt {web}"))
            && out
                .stdout
                .contains(&format!("taken over from source {:?}", canonical(&a))),
        "{out}"
    );
    let out = w.apply(&b, &["--take-over"]);
    assert!(out.success(), "{out}");
    assert_eq!(
        container_id(&web).as_deref(),
        Some(id.as_str()),
        "no recreate"
    );
    // It is B's now, for good: B applies with nothing to do, A gets the clash naming B, and
    // A's prune of a directory that no longer declares it leaves it.
    let out = w.apply(&b, &[]);
    assert!(out.success() && out.stdout.contains("no changes"), "{out}");
    let out = w.apply(&a, &[]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains(&canonical(&b)), "{out}");
    declare(&a, &[]);
    let out = w.apply(&a, &["--prune"]);
    assert!(out.success(), "{out}");
    assert_eq!(container_id(&web).as_deref(), Some(id.as_str()), "{out}");
}

#[tokio::test]
async fn unlabelled_containers_are_left_alone_adopted_in_place_and_pruned_as_orphans() {
    ensure_test_image().await;
    let w = World::new("src-legacy");
    let (web, old, other) = (unique("web"), unique("old"), unique("other"));
    let a = w.dir("a", &[&web, &old]);
    let b = w.dir("b", &[&other]);
    assert!(w.apply(&a, &[]).success());
    let web_id = make_unlabelled(&web);
    let old_id = make_unlabelled(&old);

    // Another source, pruning: neither removed nor recreated.
    let out = w.apply(&b, &["--prune"]);
    assert!(out.success(), "{out}");
    assert_eq!(
        container_id(&web).as_deref(),
        Some(web_id.as_str()),
        "{out}"
    );
    assert_eq!(
        container_id(&old).as_deref(),
        Some(old_id.as_str()),
        "{out}"
    );

    // The source declaring `web` adopts it in place; `old`, which it no longer declares, stays.
    declare(&a, &[&web]);
    let out = w.apply(&a, &["--prune"]);
    assert!(out.success(), "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("adopt ") && l.contains(&web)),
        "{out}"
    );
    assert_eq!(
        container_id(&web).as_deref(),
        Some(web_id.as_str()),
        "no recreate: {out}"
    );
    assert_eq!(
        container_id(&old).as_deref(),
        Some(old_id.as_str()),
        "{out}"
    );
    let out = w.apply(&a, &["--prune"]);
    assert!(out.success() && out.stdout.contains("no changes"), "{out}");

    // `old` is an orphan: listed by --dry-run, removed by prune --orphans; `web` is not one.
    let out = w.dw(&["prune", "--orphans", "--dry-run"]);
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains(&old) && !out.stdout.contains(&web),
        "{out}"
    );
    assert_eq!(container_id(&old).as_deref(), Some(old_id.as_str()));
    let out = w.dw(&["prune", "--orphans"]);
    assert!(out.success(), "{out}");
    assert!(container_id(&old).is_none(), "{out}");
    assert_eq!(container_id(&web).as_deref(), Some(web_id.as_str()));

    // Adopted for good: its source prunes it once it leaves.
    declare(&a, &[]);
    let out = w.apply(&a, &["--prune"]);
    assert!(out.success(), "{out}");
    assert!(container_id(&web).is_none(), "{out}");
    assert!(container_id(&other).is_some());
}

#[tokio::test]
async fn a_renamed_directory_keeps_its_containers_with_a_source_name() {
    ensure_test_image().await;
    let w = World::new("src-named");
    let web = unique("web");
    let name = unique("team-app");
    let first = w.dir("first", &[&web]);
    let out = w.apply(&first, &["--source", &name]);
    assert!(out.success(), "{out}");
    let id = container_id(&web).unwrap();
    assert_eq!(labels_of(&web)[dockwright::labels::SOURCE], name.as_str());

    let moved = w.root.path().join("moved");
    std::fs::rename(&first, &moved).unwrap();
    // Under its path it would be another source: a clash naming the named one.
    let out = w.dw(&["diff", "-f", moved.to_str().unwrap()]);
    assert!(out.stdout.contains(&format!("{name:?}")), "{out}");
    let out = w.apply(&moved, &["--prune", "--source", &name]);
    assert!(out.success() && out.stdout.contains("no changes"), "{out}");
    assert_eq!(container_id(&web).as_deref(), Some(id.as_str()));
}
