//! Writes the tree of a fetched commit into a fresh directory (no index, no `.git`: the
//! checkout is read-only input for the manifest loader). Files keep their executable bit;
//! symbolic links are written as links only when they point inside the checkout, so a
//! repository cannot make the agent read a host file through `files` or `valueFrom.file`.
//! Submodules are not fetched: they are left out, with a warning.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use gix::objs::tree::EntryKind;

/// Deepest tree nesting written (as the directory source's walk).
const MAX_DEPTH: usize = 64;

/// A checkout problem, naming the path in the repository.
#[derive(Debug, thiserror::Error)]
#[error("checking out {commit}: {path}: {message}")]
pub struct CheckoutError {
    /// The commit being checked out.
    pub commit: String,
    /// The path in the repository (`.` for the root).
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Writes the tree of `commit` (a hex id) from the repository at `repo_dir` into `dest`,
/// which must not exist yet. Returns the number of files written.
pub fn write_commit(repo_dir: &Path, commit: &str, dest: &Path) -> Result<usize, CheckoutError> {
    let err = |path: &str, message: String| CheckoutError {
        commit: commit.to_string(),
        path: path.to_string(),
        message,
    };
    let repo = gix::open(repo_dir).map_err(|e| err(".", format!("opening the repository: {e}")))?;
    let id = gix::ObjectId::from_hex(commit.as_bytes())
        .map_err(|e| err(".", format!("not a commit id: {e}")))?;
    let tree = repo
        .find_commit(id)
        .map_err(|e| err(".", e.to_string()))?
        .tree_id()
        .map_err(|e| err(".", e.to_string()))?
        .detach();
    std::fs::create_dir(dest).map_err(|e| err(".", format!("{}: {e}", dest.display())))?;
    let mut writer = Writer {
        repo: &repo,
        root: dest,
        commit,
        files: 0,
    };
    writer.tree(tree, dest, Path::new(""), 0)?;
    Ok(writer.files)
}

struct Writer<'a> {
    repo: &'a gix::Repository,
    root: &'a Path,
    commit: &'a str,
    files: usize,
}

impl Writer<'_> {
    fn err(&self, rel: &Path, message: impl Into<String>) -> CheckoutError {
        CheckoutError {
            commit: self.commit.to_string(),
            path: if rel.as_os_str().is_empty() {
                ".".into()
            } else {
                rel.display().to_string()
            },
            message: message.into(),
        }
    }

    fn tree(
        &mut self,
        id: gix::ObjectId,
        dir: &Path,
        rel: &Path,
        depth: usize,
    ) -> Result<(), CheckoutError> {
        if depth > MAX_DEPTH {
            return Err(self.err(rel, format!("nested deeper than {MAX_DEPTH} directories")));
        }
        let tree = self
            .repo
            .find_tree(id)
            .map_err(|e| self.err(rel, e.to_string()))?;
        let entries: Vec<(String, EntryKind, gix::ObjectId)> = tree
            .decode()
            .map_err(|e| self.err(rel, e.to_string()))?
            .entries
            .iter()
            .map(|e| (e.filename.to_string(), e.mode.kind(), e.oid.to_owned()))
            .collect();
        for (name, kind, oid) in entries {
            let rel = rel.join(&name);
            if !is_plain_name(&name) {
                return Err(self.err(&rel, "unsafe file name in the tree"));
            }
            let path = dir.join(&name);
            match kind {
                EntryKind::Tree => {
                    std::fs::create_dir(&path).map_err(|e| self.err(&rel, e.to_string()))?;
                    self.tree(oid, &path, &rel, depth + 1)?;
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let data = self.blob(oid, &rel)?;
                    write_file(&path, &data, kind == EntryKind::BlobExecutable)
                        .map_err(|e| self.err(&rel, e.to_string()))?;
                    self.files += 1;
                }
                EntryKind::Link => {
                    let data = self.blob(oid, &rel)?;
                    let target = String::from_utf8(data)
                        .map_err(|_| self.err(&rel, "symbolic link target is not UTF-8"))?;
                    if !stays_inside(&rel, Path::new(&target)) {
                        return Err(self.err(
                            &rel,
                            format!("symbolic link to {target:?} points outside the repository"),
                        ));
                    }
                    std::os::unix::fs::symlink(&target, &path)
                        .map_err(|e| self.err(&rel, e.to_string()))?;
                }
                EntryKind::Commit => {
                    tracing::warn!(path = %rel.display(), root = %self.root.display(), "submodule skipped: submodules are not fetched");
                }
            }
        }
        Ok(())
    }

    fn blob(&self, id: gix::ObjectId, rel: &Path) -> Result<Vec<u8>, CheckoutError> {
        Ok(self
            .repo
            .find_blob(id)
            .map_err(|e| self.err(rel, e.to_string()))?
            .detach()
            .data)
    }
}

fn write_file(path: &Path, data: &[u8], executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(data)
}

/// A tree entry name that is one plain path component (git refuses others too, but a
/// crafted tree object need not).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && name != ".git" && !name.contains('/')
}

/// Whether a link at `link` (relative to the checkout root) pointing to `target` resolves,
/// lexically, inside the checkout.
fn stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<PathBuf> = link
        .parent()
        .map(|p| {
            p.components()
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect()
        })
        .unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(n) => depth.push(PathBuf::from(n)),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_stay_inside_the_checkout() {
        assert!(stays_inside(Path::new("a/link"), Path::new("../b.yaml")));
        assert!(stays_inside(Path::new("link"), Path::new("./b/c")));
        assert!(!stays_inside(Path::new("link"), Path::new("../etc/passwd")));
        assert!(!stays_inside(Path::new("a/link"), Path::new("../../x")));
        assert!(!stays_inside(Path::new("link"), Path::new("/etc/shadow")));
    }

    #[test]
    fn only_plain_names_are_written() {
        assert!(is_plain_name("app.yaml"));
        for bad in ["", ".", "..", ".git", "a/b"] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }
}
