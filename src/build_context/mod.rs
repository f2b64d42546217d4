//! Build contexts: which files of a context directory a build sees (`.dockerignore` with
//! Docker's rules), the content hash of the build inputs, and the tar sent to the daemon.
//! The source hashes at load time ([`inputs_hash`]); the Docker adapter tars at build time
//! ([`write_tar`]); both walk the directory with the same [`walk`], so they agree on the files.
//!
//! The hash and the tar never depend on mtimes, owners or directory order: the same content
//! gives the same hash and the same tar bytes, so the daemon's layer cache is never defeated.

mod dockerignore;
mod hash;
mod tar;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use dockerignore::{DockerIgnore, PatternError};
pub use hash::{files_read, inputs_hash, BuildInputs};
pub use tar::{write_tar, EXTERNAL_DOCKERFILE};

/// Deepest directory nesting walked inside a context.
const MAX_DEPTH: usize = 128;

/// What kind of filesystem object an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file of this many bytes (at walk time).
    File {
        /// Size in bytes.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link (never followed, as Docker sends it).
    Symlink {
        /// The link's target as written.
        target: String,
    },
}

/// One object of the context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the context root, `/`-separated.
    pub path: String,
    /// Kind.
    pub kind: EntryKind,
    /// Permission bits (including setuid, setgid, sticky).
    pub mode: u32,
    /// False for files sent only because Docker always sends them (the Dockerfile and
    /// `.dockerignore` when `.dockerignore` excludes them: the daemon reads, then drops them).
    pub visible: bool,
}

/// Why a context cannot be walked, read or sent.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `.dockerignore` has a bad pattern.
    #[error("{}: {source}", path.display())]
    Ignore {
        /// The `.dockerignore` file.
        path: PathBuf,
        /// The problem.
        #[source]
        source: PatternError,
    },
    /// A path cannot be represented (not UTF-8) or the tree is too deep.
    #[error("{}: {message}", path.display())]
    Unsupported {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl ContextError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Reads `<context>/.dockerignore` (absent = no patterns).
pub fn read_dockerignore(context: &Path) -> Result<DockerIgnore, ContextError> {
    let path = context.join(".dockerignore");
    match fs::read_to_string(&path) {
        Ok(text) => {
            DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore { path, source })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DockerIgnore::default()),
        Err(e) => Err(ContextError::io(&path, e)),
    }
}

/// Walks `context` in sorted order (depth first, names compared bytewise, as Docker's walk),
/// applying `ignore`. `always` are context paths sent even when excluded (the Dockerfile and
/// `.dockerignore`, as the Docker CLI does); they come back with `visible: false` then.
///
/// Excluded directories are skipped whole unless an exception (or an `always` path) may
/// re-include something inside them. Sockets, FIFOs and devices are left out.
pub fn walk(
    context: &Path,
    ignore: &DockerIgnore,
    always: &[&str],
) -> Result<Vec<Entry>, ContextError> {
    let mut out = Vec::new();
    walk_dir(context, "", ignore, always, 0, &mut out)?;
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    ignore: &DockerIgnore,
    always: &[&str],
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), ContextError> {
    if depth > MAX_DEPTH {
        return Err(ContextError::Unsupported {
            path: dir.to_path_buf(),
            message: format!("nested deeper than {MAX_DEPTH} directories"),
        });
    }
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ContextError::io(dir, e))? {
        let entry = entry.map_err(|e| ContextError::io(dir, e))?;
        names.push(entry.file_name());
    }
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let abs = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(ContextError::Unsupported {
                path: abs,
                message: "file name is not valid UTF-8".into(),
            });
        };
        let path = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let meta = fs::symlink_metadata(&abs).map_err(|e| ContextError::io(&abs, e))?;
        let file_type = meta.file_type();
        let kind = if file_type.is_file() {
            EntryKind::File { size: meta.len() }
        } else if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            let target = fs::read_link(&abs).map_err(|e| ContextError::io(&abs, e))?;
            let Some(target) = target.to_str() else {
                return Err(ContextError::Unsupported {
                    path: abs,
                    message: "symlink target is not valid UTF-8".into(),
                });
            };
            EntryKind::Symlink {
                target: target.to_string(),
            }
        } else {
            continue;
        };
        let excluded = ignore.excludes(&path);
        let forced = always.contains(&path.as_str());
        let is_dir = kind == EntryKind::Dir;
        if excluded && !forced {
            let prefix = format!("{path}/");
            let needed =
                ignore.must_descend(&path) || always.iter().any(|a| a.starts_with(&prefix));
            if is_dir && needed {
                walk_dir(&abs, &path, ignore, always, depth + 1, out)?;
            }
            continue;
        }
        out.push(Entry {
            path: path.clone(),
            kind,
            mode: mode_of(&meta),
            visible: !excluded,
        });
        if is_dir {
            walk_dir(&abs, &path, ignore, always, depth + 1, out)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn mode_of(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &fs::Metadata) -> u32 {
    match (meta.is_dir(), meta.permissions().readonly()) {
        (true, _) => 0o755,
        (false, true) => 0o444,
        (false, false) => 0o644,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        dir
    }

    fn paths(entries: &[Entry]) -> Vec<(&str, bool)> {
        entries
            .iter()
            .map(|e| (e.path.as_str(), e.visible))
            .collect()
    }

    #[test]
    fn walk_is_sorted_and_honours_dockerignore() {
        let dir = tree(&[
            ("b.txt", "b"),
            ("a/z.txt", "z"),
            ("a/y.log", "y"),
            ("logs/1.log", "1"),
            ("Dockerfile", "FROM scratch"),
            (
                ".dockerignore",
                "*/*.log\nlogs\nDockerfile\n.dockerignore\n",
            ),
        ]);
        let ignore = read_dockerignore(dir.path()).unwrap();
        let entries = walk(dir.path(), &ignore, &["Dockerfile", ".dockerignore"]).unwrap();
        assert_eq!(
            paths(&entries),
            vec![
                (".dockerignore", false),
                ("Dockerfile", false),
                ("a", true),
                ("a/z.txt", true),
                ("b.txt", true),
            ]
        );
    }

    #[test]
    fn exceptions_reach_into_excluded_directories() {
        let dir = tree(&[
            ("docs/keep.md", "k"),
            ("docs/drop.md", "d"),
            ("docs/sub/x", "x"),
        ]);
        let ignore = DockerIgnore::parse("docs\n!docs/keep.md\n").unwrap();
        let entries = walk(dir.path(), &ignore, &[]).unwrap();
        // Like Docker, the excluded directory itself is not sent; the kept file is.
        assert_eq!(paths(&entries), vec![("docs/keep.md", true)]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_not_followed_and_modes_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tree(&[("run.sh", "#!/bin/sh\n")]);
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
        let entries = walk(dir.path(), &DockerIgnore::default(), &[]).unwrap();
        assert_eq!(
            entries[0].kind,
            EntryKind::Symlink {
                target: "/etc/passwd".into()
            }
        );
        assert_eq!(entries[1].mode, 0o755);
    }
}
