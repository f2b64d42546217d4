//! The build context as a tar stream, with fixed metadata: mtime 0, uid/gid 0, no user or
//! group names, entries in walk order. Identical content gives identical bytes, so nothing
//! here defeats the daemon's layer cache.
//!
//! A Dockerfile outside the context is sent as [`EXTERNAL_DOCKERFILE`] and that name appended
//! to the `.dockerignore` sent along, so the daemon drops it after reading it (the Docker CLI
//! does the same with a random name; a fixed one keeps the tar stable).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use tar::{EntryType, Header};

use super::{read_dockerignore, walk, ContextError, EntryKind};

/// Name under which a Dockerfile from outside the context travels in the tar.
pub const EXTERNAL_DOCKERFILE: &str = ".dockwright.Dockerfile";

/// Writes the context tar of `context` to `out`.
///
/// `dockerfile_in_context` is the Dockerfile's path inside the context, when it is there; it
/// and `.dockerignore` are always sent (the daemon reads and drops them when `.dockerignore`
/// excludes them). `external_dockerfile` is the content of a Dockerfile from elsewhere.
pub fn write_tar<W: Write>(
    context: &Path,
    dockerfile_in_context: Option<&str>,
    external_dockerfile: Option<&[u8]>,
    out: W,
) -> Result<W, ContextError> {
    let ignore = read_dockerignore(context)?;
    let mut always = vec![".dockerignore"];
    always.extend(dockerfile_in_context);
    let entries = walk(context, &ignore, &always)?;
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let sink = |e: io::Error| ContextError::io(Path::new("<build context stream>"), e);
    let mut wrote_ignore = false;
    for entry in &entries {
        let abs = context.join(&entry.path);
        let mut header = header(entry.mode);
        match &entry.kind {
            EntryKind::Dir => {
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", entry.path), io::empty())
                    .map_err(sink)?;
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, &entry.path, target)
                    .map_err(sink)?;
            }
            EntryKind::File { .. }
                if entry.path == ".dockerignore" && external_dockerfile.is_some() =>
            {
                let mut text = std::fs::read(&abs).map_err(|e| ContextError::io(&abs, e))?;
                text.extend_from_slice(format!("\n{EXTERNAL_DOCKERFILE}\n").as_bytes());
                header.set_size(text.len() as u64);
                tar.append_data(&mut header, &entry.path, text.as_slice())
                    .map_err(sink)?;
                wrote_ignore = true;
            }
            EntryKind::File { .. } => {
                let file = File::open(&abs).map_err(|e| ContextError::io(&abs, e))?;
                // The size is taken from the open file and exactly that many bytes are sent:
                // a file that changes meanwhile fails the build instead of corrupting the tar.
                let size = file
                    .metadata()
                    .map_err(|e| ContextError::io(&abs, e))?
                    .len();
                header.set_size(size);
                let mut reader = Exact {
                    inner: file.take(size),
                    left: size,
                };
                tar.append_data(&mut header, &entry.path, &mut reader)
                    .map_err(|e| ContextError::io(&abs, e))?;
            }
        }
    }
    if let Some(content) = external_dockerfile {
        let mut header = header(0o600);
        header.set_size(content.len() as u64);
        tar.append_data(&mut header, EXTERNAL_DOCKERFILE, content)
            .map_err(sink)?;
        if !wrote_ignore {
            let text = format!("{EXTERNAL_DOCKERFILE}\n");
            let mut header = header_for(0o644, text.len());
            tar.append_data(&mut header, ".dockerignore", text.as_bytes())
                .map_err(sink)?;
        }
    }
    tar.into_inner().map_err(sink)
}

fn header(mode: u32) -> Header {
    let mut header = Header::new_gnu();
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(EntryType::Regular);
    header
}

fn header_for(mode: u32, size: usize) -> Header {
    let mut h = header(mode);
    h.set_size(size as u64);
    h
}

/// A reader that fails unless it yields exactly `left` more bytes.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while the build context was being sent",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tar_bytes: &[u8]) -> Vec<(String, u64, u32)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!(h.mtime().unwrap(), 0);
                assert_eq!(h.uid().unwrap(), 0);
                assert_eq!(h.gid().unwrap(), 0);
                (
                    e.path().unwrap().display().to_string(),
                    h.size().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn same_content_same_bytes_and_ignored_files_stay_home() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.txt"), "hello").unwrap();
        std::fs::write(dir.path().join("secret.key"), "s3cret").unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.key\nDockerfile\n").unwrap();
        let one = write_tar(dir.path(), Some("Dockerfile"), None, Vec::new()).unwrap();
        // Touching a file changes its mtime only: the bytes stay the same.
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("src/main.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now()).unwrap();
        let two = write_tar(dir.path(), Some("Dockerfile"), None, Vec::new()).unwrap();
        assert_eq!(one, two);
        let listed: Vec<String> = names(&one).into_iter().map(|(n, _, _)| n).collect();
        assert_eq!(
            listed,
            vec![".dockerignore", "Dockerfile", "src/", "src/main.txt"]
        );
    }

    #[test]
    fn an_external_dockerfile_travels_under_a_fixed_ignored_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let tar = write_tar(dir.path(), None, Some(b"FROM scratch\n"), Vec::new()).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut found = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            found.push((entry.path().unwrap().display().to_string(), text));
        }
        assert_eq!(
            found,
            vec![
                ("a.txt".to_string(), "a".to_string()),
                (
                    EXTERNAL_DOCKERFILE.to_string(),
                    "FROM scratch\n".to_string()
                ),
                (
                    ".dockerignore".to_string(),
                    format!("{EXTERNAL_DOCKERFILE}\n")
                ),
            ]
        );
    }
}
