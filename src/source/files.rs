//! The file source: finds manifest files under the paths given with `-f`, reads them with a
//! size limit, and hands their text to [`super::parse`]; [`load_paths`] runs the whole path to a
//! [`DesiredState`]. The only module of the source that lists directories and opens manifests.
//!
//! Directories are walked recursively in sorted order (stable document order, stable errors),
//! skipping hidden entries (editor swap files, `.git`); symlinks are followed, each directory
//! visited once. A file reached twice is loaded once. Compose files (`docker-compose.yml`,
//! `compose.yaml`, `docker-compose.<x>.yml`, ...) are skipped in a directory walk, so a Compose
//! project can sit beside the manifests `dockwright convert` made of it; named as a file, one
//! is read (and rejected) like any other.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{parse_str, LoadedManifest, ManifestError, ManifestErrors};
use crate::desired::DesiredState;

/// Largest manifest file accepted.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// Deepest directory nesting walked below a given directory.
const MAX_WALK_DEPTH: usize = 32;

/// Expands paths: files as given; directories recursively, `*.yaml` / `*.yml`, sorted, hidden
/// entries skipped. A path that does not exist is an error.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestErrors> {
    let (files, errors) = expand(paths);
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(ManifestErrors(errors))
    }
}

/// Files found and problems met, so [`load_paths`] can go on and report everything.
fn expand(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<ManifestError>) {
    let mut walk = Walk::default();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk.dir(path, 0),
            Ok(_) => walk.file(path),
            Err(e) => walk.errors.push(io_error(path, &e)),
        }
    }
    (walk.files, walk.errors)
}

#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    errors: Vec<ManifestError>,
    /// Canonical paths of files taken and directories entered.
    seen: BTreeSet<PathBuf>,
}

impl Walk {
    fn file(&mut self, path: &Path) {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.seen.insert(canonical) {
            self.files.push(path.to_path_buf());
        }
    }

    fn dir(&mut self, dir: &Path, depth: usize) {
        let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !self.seen.insert(canonical) {
            return; // a symlink loop or the same directory given twice
        }
        if depth > MAX_WALK_DEPTH {
            self.errors.push(ManifestError::file(
                dir,
                format!("nested deeper than {MAX_WALK_DEPTH} directories"),
            ));
            return;
        }
        let entries = match std::fs::read_dir(dir).and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        {
            Ok(entries) => entries,
            Err(e) => {
                self.errors.push(io_error(dir, &e));
                return;
            }
        };
        let mut names: Vec<_> = entries.into_iter().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            if name.as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = dir.join(&name);
            let is_manifest = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) && !is_compose_file(&name.to_string_lossy());
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => self.dir(&path, depth + 1),
                Ok(meta) if meta.is_file() && is_manifest => self.file(&path),
                Ok(_) => {}
                // A dangling link that looks like a manifest is worth a word; others are not ours.
                Err(e) if is_manifest => self.errors.push(io_error(&path, &e)),
                Err(_) => {}
            }
        }
    }
}

/// A Compose file name: `docker-compose.yml`, `compose.yaml`, or an override such as
/// `docker-compose.prod.yml`.
fn is_compose_file(name: &str) -> bool {
    (name.starts_with("docker-compose.") || name.starts_with("compose."))
        && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

fn io_error(path: &Path, e: &std::io::Error) -> ManifestError {
    let message = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        _ => format!("cannot read: {e}"),
    };
    ManifestError::file(path, message)
}

/// Parses one file (multi-document, `---`; empty documents skipped). Per file, so the agent
/// can keep the last good state of each file.
pub fn parse_file(path: &Path) -> Result<Vec<LoadedManifest>, ManifestErrors> {
    let _span = tracing::debug_span!("parse_file", path = %path.display()).entered();
    let text = read_manifest(path)?;
    parse_str(&text, path)
}

/// The file's text, refusing directories, files over [`MAX_FILE_BYTES`] and non-UTF-8.
fn read_manifest(path: &Path) -> Result<String, ManifestError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let meta = file.metadata().map_err(|e| io_error(path, &e))?;
    if meta.is_dir() {
        return Err(ManifestError::file(path, "is a directory"));
    }
    let too_large = || {
        ManifestError::file(
            path,
            format!("file is larger than the limit of {MAX_FILE_BYTES} bytes"),
        )
    };
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(too_large());
    }
    // Read at most one byte past the limit: the file may grow, or be a device.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        ManifestError::file(
            path,
            format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// Expands the paths, parses every file and builds the desired state. Collects the errors of
/// all paths and files before failing; cross-document checks run only once every file parsed
/// (a file that failed to parse would make them report phantom problems, such as a missing
/// dependency that the broken file declares).
pub fn load_paths(paths: &[PathBuf]) -> Result<DesiredState, ManifestErrors> {
    load_paths_with(paths, &super::LoadOptions::default())
}

/// [`load_paths`] with `options` (the age identities of encrypted secret files).
pub fn load_paths_with(
    paths: &[PathBuf],
    options: &super::LoadOptions,
) -> Result<DesiredState, ManifestErrors> {
    let _span = tracing::debug_span!("load_paths").entered();
    let (files, mut errors) = expand(paths);
    let mut manifests = Vec::new();
    for file in &files {
        match parse_file(file) {
            Ok(mut m) => manifests.append(&mut m),
            Err(ManifestErrors(mut e)) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(ManifestErrors(errors));
    }
    tracing::debug!(
        files = files.len(),
        resources = manifests.len(),
        "manifests parsed"
    );
    super::build_desired_with(&manifests, options)
}
