//! Builds the in-memory tar that carries a container's `files` (uploaded at `/` before the
//! container starts, as `docker cp` would). Deterministic: uid/gid 0, mtime 0, the declared
//! mode, entries in declaration order, so the same files always give the same bytes.

use crate::desired::ContainerFile;

/// A tar archive holding `files`, paths relative to `/`.
///
/// Parent directories are deliberately *not* archived: the daemon creates missing parents
/// itself (mode 0755, owned by root), whereas an explicit directory entry would reset the
/// mode, owner and mtime of an existing directory such as `/tmp` or `/etc`.
pub fn files_tar(files: &[ContainerFile]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for file in files {
        let path = file.path.trim_start_matches('/');
        if path.is_empty() || path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "file path {:?} must be absolute, normalised and name a file",
                    file.path
                ),
            ));
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(file.content.len() as u64);
        header.set_mode(file.mode & 0o7777);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder.append_data(&mut header, path, file.content.as_slice())?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;

    use super::*;

    fn file(path: &str, mode: u32, content: &str) -> ContainerFile {
        ContainerFile {
            path: path.into(),
            mode,
            digest: String::new(),
            content: Arc::new(content.as_bytes().to_vec()),
        }
    }

    #[test]
    fn archive_holds_each_file_with_mode_owner_and_zero_mtime() {
        let bytes = files_tar(&[
            file("/etc/app/config.yaml", 0o640, "a: 1\n"),
            file("/run.sh", 0o755, "#!/bin/sh\n"),
        ])
        .unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            seen.push((
                entry.path().unwrap().display().to_string(),
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.mtime().unwrap(),
                content,
            ));
        }
        assert_eq!(
            seen,
            [
                (
                    "etc/app/config.yaml".to_string(),
                    0o640,
                    0,
                    0,
                    "a: 1\n".to_string()
                ),
                ("run.sh".to_string(), 0o755, 0, 0, "#!/bin/sh\n".to_string()),
            ]
        );
    }

    #[test]
    fn same_files_same_bytes() {
        let files = [file("/a", 0o644, "x")];
        assert_eq!(files_tar(&files).unwrap(), files_tar(&files).unwrap());
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(files_tar(&[file("/../etc/passwd", 0o644, "")]).is_err());
        assert!(files_tar(&[file("/", 0o644, "")]).is_err());
    }
}
