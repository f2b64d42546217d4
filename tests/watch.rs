//! The manifest directory watcher against the real file system (inotify) in a temporary
//! directory: edits, broken and fixed files, removals, editor-style writes and no-op saves.

use std::path::Path;
use std::time::Duration;

use dockwright::desired::{Kind, ResourceKey};
use dockwright::source::watch::{DesiredSnapshot, ManifestDirWatcher, WatchHandle, WatchOptions};
use tokio::sync::watch;

/// How fast an edit must show up (issue 4: the agent reacts in under a second).
const EDIT_LATENCY: Duration = Duration::from_secs(1);
/// How long to wait to be sure nothing is published (several debounce periods).
const QUIET: Duration = Duration::from_millis(600);

fn image(name: &str, tag: &str) -> String {
    format!(
        "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata:\n  name: {name}\nspec:\n  ref: 127.0.0.1:5000/{name}:{tag}\n"
    )
}

fn reference(s: &DesiredSnapshot, name: &str) -> Option<String> {
    let key = ResourceKey::new(Kind::Image, "default", name);
    s.desired.images.get(&key).map(|i| i.reference.clone())
}

fn names(s: &DesiredSnapshot) -> Vec<String> {
    s.desired.images.keys().map(|k| k.name.clone()).collect()
}

fn start(dir: &Path) -> (WatchHandle, watch::Receiver<DesiredSnapshot>) {
    let handle = ManifestDirWatcher::initial_load(dir)
        .unwrap()
        .watch(WatchOptions::default())
        .unwrap();
    let rx = handle.subscribe();
    (handle, rx)
}

/// The next snapshot, failing the test if none comes within `limit`.
async fn next(rx: &mut watch::Receiver<DesiredSnapshot>, limit: Duration) -> DesiredSnapshot {
    tokio::time::timeout(limit, rx.changed())
        .await
        .unwrap_or_else(|_| panic!("no snapshot within {limit:?}"))
        .unwrap();
    rx.borrow_and_update().clone()
}

/// Asserts that nothing is published for a while.
async fn quiet(rx: &mut watch::Receiver<DesiredSnapshot>) {
    if let Ok(changed) = tokio::time::timeout(QUIET, rx.changed()).await {
        changed.unwrap();
        panic!("unexpected snapshot: {:?}", *rx.borrow());
    }
}

#[tokio::test]
async fn an_edit_is_published_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), image("a", "1")).unwrap();
    let (handle, mut rx) = start(dir.path());
    let first = handle.current();
    assert_eq!(
        reference(&first, "a").as_deref(),
        Some("127.0.0.1:5000/a:1")
    );
    assert!(first.complete);

    let started = std::time::Instant::now();
    std::fs::write(dir.path().join("a.yaml"), image("a", "2")).unwrap();
    let s = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(reference(&s, "a").as_deref(), Some("127.0.0.1:5000/a:2"));
    assert_eq!(s.generation, first.generation + 1);
    assert!(s.errors.is_empty());
    eprintln!("edit published after {:?}", started.elapsed());
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_last_good_state_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, image("a", "1")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), image("b", "1")).unwrap();
    let (_handle, mut rx) = start(dir.path());

    std::fs::write(
        &a,
        "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: { name: a }\nspec: { ref: [\n",
    )
    .unwrap();
    let broken = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(
        reference(&broken, "a").as_deref(),
        Some("127.0.0.1:5000/a:1"),
        "last good version kept"
    );
    assert_eq!(names(&broken), ["a", "b"]);
    assert_eq!(broken.errors.len(), 1, "{:?}", broken.errors);
    assert!(
        broken.errors[0].location.contains("a.yaml"),
        "{:?}",
        broken.errors
    );
    assert!(
        broken.complete,
        "a has a last good version: pruning stays safe"
    );

    std::fs::write(&a, image("a", "3")).unwrap();
    let fixed = next(&mut rx, EDIT_LATENCY).await;
    assert!(fixed.errors.is_empty(), "{:?}", fixed.errors);
    assert_eq!(
        reference(&fixed, "a").as_deref(),
        Some("127.0.0.1:5000/a:3")
    );
}

#[tokio::test]
async fn a_deleted_file_drops_its_resources_and_a_new_one_adds_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), image("a", "1")).unwrap();
    std::fs::write(dir.path().join("b.yml"), image("b", "1")).unwrap();
    let (_handle, mut rx) = start(dir.path());

    std::fs::remove_file(dir.path().join("b.yml")).unwrap();
    let s = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(names(&s), ["a"]);
    assert!(s.complete);

    // A new file in a new subdirectory.
    std::fs::create_dir(dir.path().join("more")).unwrap();
    std::fs::write(dir.path().join("more/c.yaml"), image("c", "1")).unwrap();
    let s = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(names(&s), ["a", "c"]);

    // The whole subdirectory goes.
    std::fs::remove_dir_all(dir.path().join("more")).unwrap();
    let s = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(names(&s), ["a"]);
}

#[tokio::test]
async fn an_atomic_rename_over_the_file_is_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, image("a", "1")).unwrap();
    let (_handle, mut rx) = start(dir.path());

    // Write a temporary file, then rename it over the manifest (what most tools do).
    let tmp = dir.path().join(".a.yaml.tmp");
    std::fs::write(&tmp, image("a", "2")).unwrap();
    std::fs::rename(&tmp, &a).unwrap();
    let s = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(reference(&s, "a").as_deref(), Some("127.0.0.1:5000/a:2"));
    quiet(&mut rx).await;
}

#[tokio::test]
async fn a_vim_style_save_never_looks_like_a_removal() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, image("a", "1")).unwrap();
    let (handle, mut rx) = start(dir.path());
    let before = handle.current().generation;

    // vim: probe file 4913, swap file, move the original to a backup, write anew, drop the backup.
    std::fs::write(dir.path().join("4913"), "").unwrap();
    std::fs::remove_file(dir.path().join("4913")).unwrap();
    std::fs::write(dir.path().join(".a.yaml.swp"), "swap").unwrap();
    std::fs::rename(&a, dir.path().join("a.yaml~")).unwrap();
    std::fs::write(&a, image("a", "2")).unwrap();
    std::fs::remove_file(dir.path().join("a.yaml~")).unwrap();
    std::fs::remove_file(dir.path().join(".a.yaml.swp")).unwrap();

    let s = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(reference(&s, "a").as_deref(), Some("127.0.0.1:5000/a:2"));
    assert_eq!(
        s.generation,
        before + 1,
        "exactly one publication for the save"
    );
    quiet(&mut rx).await;
}

#[tokio::test]
async fn saving_identical_content_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, image("a", "1")).unwrap();
    let (handle, mut rx) = start(dir.path());
    let before = handle.current().generation;

    std::fs::write(&a, image("a", "1")).unwrap();
    // Same resources, written differently: still the same desired state.
    std::fs::write(&a, format!("# a comment\n{}", image("a", "1"))).unwrap();
    handle.rescan();
    quiet(&mut rx).await;

    // The watcher is alive and saw the writes: the next real edit is the very next generation.
    std::fs::write(&a, image("a", "2")).unwrap();
    let s = next(&mut rx, EDIT_LATENCY).await;
    assert_eq!(s.generation, before + 1);
}

#[tokio::test]
async fn a_file_broken_at_startup_blocks_pruning_until_it_parses() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    std::fs::write(&a, "kind: [").unwrap();
    std::fs::write(dir.path().join("b.yaml"), image("b", "1")).unwrap();
    let (handle, mut rx) = start(dir.path());
    let first = handle.current();
    assert!(!first.complete, "a never parsed: its resources are unknown");
    assert_eq!(names(&first), ["b"]);
    assert_eq!(first.errors.len(), 1);

    std::fs::write(&a, image("a", "1")).unwrap();
    let s = next(&mut rx, EDIT_LATENCY).await;
    assert!(s.complete);
    assert_eq!(names(&s), ["a", "b"]);
    assert!(s.errors.is_empty());
}
