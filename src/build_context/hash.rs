//! The build-inputs hash: SHA-256 over the files the build sees (path, kind, permission bits,
//! content or link target, in walk order), the Dockerfile's content, the build args, the
//! target and the labels. Stored as `dockwright.dev/build-hash` on the built image; a rebuild
//! happens exactly when it changes. Every field is length-prefixed, so no two different
//! inputs serialise alike.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::{read_dockerignore, walk, ContextError, EntryKind};

/// Version tag of the hash layout; bump it to force one rebuild of everything.
const LAYOUT: &[u8] = b"dockwright-build-inputs/1";

/// Context files whose content was read for hashing since the process started.
static FILES_READ: AtomicU64 = AtomicU64::new(0);

/// Number of context files read for hashing so far in this process (for the benchmark and
/// metrics: a no-op pass over unchanged contexts reads each file once, at load).
pub fn files_read() -> u64 {
    FILES_READ.load(Ordering::Relaxed)
}

/// Everything a build depends on, as the source resolved it.
#[derive(Clone, Copy, Debug)]
pub struct BuildInputs<'a> {
    /// The context directory.
    pub context: &'a Path,
    /// The Dockerfile's content.
    pub dockerfile: &'a [u8],
    /// Build args.
    pub args: &'a BTreeMap<String, String>,
    /// Target stage.
    pub target: Option<&'a str>,
    /// User labels given to the build.
    pub labels: &'a BTreeMap<String, String>,
}

/// `sha256:<hex>` of the build inputs. Reads each file the build sees exactly once.
pub fn inputs_hash(inputs: &BuildInputs<'_>) -> Result<String, ContextError> {
    let ignore = read_dockerignore(inputs.context)?;
    let entries = walk(inputs.context, &ignore, &[])?;
    let mut h = Sha256::new();
    field(&mut h, LAYOUT);
    for entry in entries.iter().filter(|e| e.visible) {
        match &entry.kind {
            EntryKind::File { .. } => {
                field(&mut h, b"file");
                field(&mut h, entry.path.as_bytes());
                h.update(entry.mode.to_be_bytes());
                let path = inputs.context.join(&entry.path);
                field(&mut h, &file_digest(&path)?);
            }
            EntryKind::Dir => {
                field(&mut h, b"dir");
                field(&mut h, entry.path.as_bytes());
                h.update(entry.mode.to_be_bytes());
            }
            EntryKind::Symlink { target } => {
                field(&mut h, b"symlink");
                field(&mut h, entry.path.as_bytes());
                field(&mut h, target.as_bytes());
            }
        }
    }
    field(&mut h, b"dockerfile");
    field(&mut h, &Sha256::digest(inputs.dockerfile));
    for (name, value) in inputs.args {
        field(&mut h, b"arg");
        field(&mut h, name.as_bytes());
        field(&mut h, value.as_bytes());
    }
    if let Some(target) = inputs.target {
        field(&mut h, b"target");
        field(&mut h, target.as_bytes());
    }
    for (name, value) in inputs.labels {
        field(&mut h, b"label");
        field(&mut h, name.as_bytes());
        field(&mut h, value.as_bytes());
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn file_digest(path: &Path) -> Result<[u8; 32], ContextError> {
    let mut file = File::open(path).map_err(|e| ContextError::io(path, e))?;
    FILES_READ.fetch_add(1, Ordering::Relaxed);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| ContextError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ctx {
        dir: tempfile::TempDir,
        args: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    }

    impl Ctx {
        fn new(files: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            for (path, content) in files {
                let p = dir.path().join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, content).unwrap();
            }
            Self {
                dir,
                args: BTreeMap::new(),
                labels: BTreeMap::new(),
            }
        }

        fn write(&self, path: &str, content: &str) {
            std::fs::write(self.dir.path().join(path), content).unwrap();
        }

        fn hash(&self, dockerfile: &str, target: Option<&str>) -> String {
            inputs_hash(&BuildInputs {
                context: self.dir.path(),
                dockerfile: dockerfile.as_bytes(),
                args: &self.args,
                target,
                labels: &self.labels,
            })
            .unwrap()
        }
    }

    #[test]
    fn ignored_files_do_not_count_but_real_changes_do() {
        let mut ctx = Ctx::new(&[
            ("app.txt", "v1"),
            ("notes.log", "a"),
            (".dockerignore", "*.log\n"),
        ]);
        let base = ctx.hash("FROM scratch", None);
        assert!(base.starts_with("sha256:") && base.len() == 71);
        assert_eq!(ctx.hash("FROM scratch", None), base, "deterministic");
        ctx.write("notes.log", "changed");
        assert_eq!(ctx.hash("FROM scratch", None), base, "ignored file");
        ctx.write("app.txt", "v2");
        let changed = ctx.hash("FROM scratch", None);
        assert_ne!(changed, base);
        assert_ne!(ctx.hash("FROM scratch\n", None), changed, "dockerfile");
        assert_ne!(ctx.hash("FROM scratch", Some("dev")), changed, "target");
        ctx.args.insert("A".into(), "1".into());
        let with_arg = ctx.hash("FROM scratch", None);
        assert_ne!(with_arg, changed, "args");
        ctx.labels.insert("A".into(), "1".into());
        assert_ne!(ctx.hash("FROM scratch", None), with_arg, "labels");
    }

    #[test]
    fn names_and_framing_matter() {
        let a = Ctx::new(&[("ab", "c")]);
        let b = Ctx::new(&[("a", "bc")]);
        assert_ne!(a.hash("", None), b.hash("", None));
        let c = Ctx::new(&[("x/y", "")]);
        let d = Ctx::new(&[("x", ""), ("y", "")]);
        assert_ne!(c.hash("", None), d.hash("", None));
    }

    #[cfg(unix)]
    #[test]
    fn the_exec_bit_counts_but_mtime_does_not() {
        use std::os::unix::fs::PermissionsExt;
        let ctx = Ctx::new(&[("run.sh", "echo")]);
        let base = ctx.hash("", None);
        let file = std::fs::File::options()
            .write(true)
            .open(ctx.dir.path().join("run.sh"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(ctx.hash("", None), base);
        std::fs::set_permissions(
            ctx.dir.path().join("run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(ctx.hash("", None), base);
    }
}
