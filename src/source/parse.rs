//! One manifest file's text → typed documents ([`LoadedManifest`]), with errors naming file,
//! document (and its first line), resource and field. No cross-document checks and no file
//! system access here: that is [`super::validate`]'s and [`super::files`]' job.
//!
//! Documents are split on `---` / `...` marker lines ourselves (YAML forbids those lines inside
//! any scalar, so this matches the parser) to number documents as the user counts them, give
//! each its first line, and report errors of every document rather than the first only. Each
//! document is read into a `serde_json::Value` under a strict parser budget, its envelope
//! (`apiVersion`, `kind`, `metadata`) checked by hand, and its `spec` deserialised into the
//! API type through `serde_path_to_error` so a type error names its field path.
//!
//! Choices the design leaves open:
//! - `status` is accepted and ignored (it is written by dockwright, as the API server ignores
//!   it on apply), so the output of `dockwright get -o yaml` style dumps can be re-applied.
//! - `metadata` accepts `name`, `namespace`, `labels` and `annotations`; anything else is an
//!   unknown field.
//! - Serde stops at the first type error of a `spec`, so a document reports its envelope
//!   errors plus at most one `spec` error; other documents and files are still reported.
//! - YAML 1.2 booleans only (`yes`/`no` stay strings) and plain numbers with leading zeros
//!   stay strings, so `mode: 0644` means the string `"0644"` and not 644 or 420.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{resource_label, ManifestError, ManifestErrors};
use crate::api::{
    Container, ContainerSpec, Image, ImageSpec, Network, NetworkSpec, Volume, VolumeSpec,
    API_VERSION,
};
use crate::desired::{Kind, Origin, ResourceKey, DEFAULT_NAMESPACE};

/// Most documents one file may hold.
pub const MAX_DOCUMENTS: usize = 1000;
/// Deepest nesting of mappings and sequences in one document.
pub const MAX_DEPTH: usize = 64;
/// Most YAML nodes one document may hold (aliases expanded).
const MAX_NODES_PER_DOCUMENT: usize = 20_000;
/// Most nodes all documents of one file may hold together (aliases expanded).
const MAX_NODES_PER_FILE: usize = 200_000;
/// Most events alias expansion may replay in one document (no billion laughs).
const MAX_ALIAS_REPLAY: usize = 10_000;

/// The kinds a manifest may have, as errors list them.
const KINDS: &str = "Image, Container, Network or Volume";

/// One parsed document, before cross-document checks.
// Unboxed on purpose: a file holds at most MAX_DOCUMENTS of these, and callers match on the
// plain API types.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Manifest {
    /// An `Image` resource.
    Image(Image),
    /// A `Container` resource.
    Container(Container),
    /// A `Network` resource.
    Network(Network),
    /// A `Volume` resource.
    Volume(Volume),
}

impl Manifest {
    /// The resource kind.
    pub fn kind(&self) -> Kind {
        match self {
            Manifest::Image(_) => Kind::Image,
            Manifest::Container(_) => Kind::Container,
            Manifest::Network(_) => Kind::Network,
            Manifest::Volume(_) => Kind::Volume,
        }
    }

    /// The object metadata.
    pub fn metadata(&self) -> &kube::api::ObjectMeta {
        match self {
            Manifest::Image(i) => &i.metadata,
            Manifest::Container(c) => &c.metadata,
            Manifest::Network(n) => &n.metadata,
            Manifest::Volume(v) => &v.metadata,
        }
    }

    /// `metadata.name` (always present once parsed).
    pub fn name(&self) -> &str {
        let meta = self.metadata();
        meta.name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`, `default` when absent.
    pub fn namespace(&self) -> &str {
        let meta = self.metadata();
        meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// The resource's identity.
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.kind(), self.namespace(), self.name())
    }

    /// `Kind/name` (or `Kind/namespace/name`) as errors name the resource.
    pub fn label(&self) -> String {
        resource_label(self.kind().as_str(), self.namespace(), self.name())
    }
}

/// A parsed document with where it came from.
#[derive(Clone, Debug)]
pub struct LoadedManifest {
    /// The typed resource.
    pub manifest: Manifest,
    /// File and 1-based document index.
    pub origin: Origin,
    /// Absolute directory of the manifest file: relative paths in the spec resolve against it.
    pub base_dir: PathBuf,
}

/// Parses the text of one manifest file (multi-document; empty documents are skipped).
///
/// `path` names the file in errors and gives the base directory for relative paths (made
/// absolute against the current directory); the file itself is not read.
pub fn parse_str(text: &str, path: &Path) -> Result<Vec<LoadedManifest>, ManifestErrors> {
    if text.len() > super::MAX_FILE_BYTES {
        return Err(ManifestError::file(
            path,
            format!(
                "file is larger than the limit of {} bytes",
                super::MAX_FILE_BYTES
            ),
        )
        .into());
    }
    let base_dir = base_dir_of(path)?;
    let documents = split_documents(text);
    if documents.len() > MAX_DOCUMENTS {
        return Err(ManifestError::file(
            path,
            format!("file holds more than the limit of {MAX_DOCUMENTS} documents; split it"),
        )
        .into());
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut nodes = 0usize;
    for doc in documents {
        let location = format!(
            "{} (document {}, line {})",
            path.display(),
            doc.index,
            doc.line
        );
        if !doc.has_content {
            continue;
        }
        let value = match read_yaml(doc.text, doc.first_line) {
            Ok(v) => v,
            Err(message) => {
                errors.push(ManifestError::new(location, None, None, message));
                continue;
            }
        };
        nodes = nodes.saturating_add(count_nodes(&value));
        if nodes > MAX_NODES_PER_FILE {
            errors.push(ManifestError::new(
                location,
                None,
                None,
                format!("file holds more than {MAX_NODES_PER_FILE} YAML nodes (aliases expanded); split it"),
            ));
            break;
        }
        if value.is_null() {
            continue;
        }
        let origin = Origin::File {
            path: path.to_path_buf(),
            document: doc.index,
        };
        match typed_manifest(value, &location) {
            Ok(manifest) => out.push(LoadedManifest {
                manifest,
                origin,
                base_dir: base_dir.clone(),
            }),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ManifestErrors(errors))
    }
}

/// The absolute directory holding `path`.
fn base_dir_of(path: &Path) -> Result<PathBuf, ManifestError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let absolute = std::path::absolute(parent).map_err(|e| {
        ManifestError::file(
            path,
            format!("cannot resolve the manifest's directory: {e}"),
        )
    })?;
    // Drop `.` components so paths built from it are clean (and hash the same).
    Ok(absolute.components().collect())
}

/// One document's slice of the file.
#[derive(Debug)]
struct RawDocument<'a> {
    /// 1-based position in the file, as the user counts documents.
    index: usize,
    /// Line of its `---` marker, or of its first content.
    line: usize,
    /// 1-based line number of the first line of `text`.
    first_line: usize,
    /// The document's text, marker included.
    text: &'a str,
    /// False for a document with nothing but comments (skipped).
    has_content: bool,
}

/// Splits a YAML stream into documents at `---` and after `...` marker lines. Comments,
/// blank lines and directives before a `---` belong to the document it starts; such a
/// prefix alone (e.g. a header comment) is not a document.
fn split_documents(text: &str) -> Vec<RawDocument<'_>> {
    let mut docs = Vec::new();
    let mut piece = Piece {
        start: 0,
        first_line: 1,
        marker: None,
        content: None,
    };
    let mut offset = 0usize;
    for (i, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_no = i + 1;
        let line = raw_line.trim_end_matches(['\n', '\r']);
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let line_end = offset + raw_line.len();
        if let Some(rest) = marker_rest(line, "---") {
            if piece.marker.is_some() || piece.content.is_some() {
                close(text, &piece, offset, &mut docs);
                piece = Piece {
                    start: offset,
                    first_line: line_no,
                    marker: None,
                    content: None,
                };
            }
            piece.marker = Some(line_no);
            // `--- {a: 1}` or `--- |` carries content on the marker line.
            if !is_trivial(rest) {
                piece.content.get_or_insert(line_no);
            }
        } else if marker_rest(line, "...").is_some() {
            close(text, &piece, line_end, &mut docs);
            piece = Piece {
                start: line_end,
                first_line: line_no + 1,
                marker: None,
                content: None,
            };
        } else if !(is_trivial(line) || line.starts_with('%')) {
            piece.content.get_or_insert(line_no);
        }
        offset = line_end;
        if docs.len() > MAX_DOCUMENTS {
            // The caller rejects the file; no need to index the rest.
            return docs;
        }
    }
    close(text, &piece, text.len(), &mut docs);
    docs
}

/// One piece of the stream between markers.
struct Piece {
    start: usize,
    first_line: usize,
    marker: Option<usize>,
    content: Option<usize>,
}

/// Ends `piece` at byte `end`; it is a document if it has a marker or content.
fn close<'a>(text: &'a str, piece: &Piece, end: usize, docs: &mut Vec<RawDocument<'a>>) {
    if let Some(line) = piece.marker.or(piece.content) {
        docs.push(RawDocument {
            index: docs.len() + 1,
            line,
            first_line: piece.first_line,
            text: text.get(piece.start..end).unwrap_or_default(),
            has_content: piece.content.is_some(),
        });
    }
}

/// If `line` is the document marker `marker` (alone or followed by whitespace), what follows it.
fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
}

/// Blank or comment only.
fn is_trivial(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// Parser options: the hardening limits plus YAML 1.2 scalars (see the module doc).
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_documents: 1,
            max_nodes: MAX_NODES_PER_DOCUMENT,
            max_events: 4 * MAX_NODES_PER_DOCUMENT,
            max_aliases: 1000,
            max_anchors: 1000,
            max_reader_input_bytes: Some(super::MAX_FILE_BYTES),
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_REPLAY,
            max_replay_stack_depth: 16,
        },
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        with_snippet: false,
    }
}

/// One document's YAML as a generic value (`Null` for an empty document), or a message.
fn read_yaml(text: &str, first_line: usize) -> Result<Value, String> {
    serde_saphyr::from_str_with_options::<Value>(text, yaml_options()).map_err(|e| {
        let line_offset = u64::try_from(first_line.saturating_sub(1)).unwrap_or(0);
        let rendered = e.render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
            line_offset: line_offset,
        });
        match e.without_snippet() {
            serde_saphyr::Error::Budget { .. } => format!(
                "document exceeds the parser limits (nesting depth {MAX_DEPTH}, \
                 {MAX_NODES_PER_DOCUMENT} nodes, alias expansion): {rendered}"
            ),
            // The parser's hint is for programmers ("set DuplicateKeyPolicy in Options").
            _ => format!(
                "invalid YAML: {}",
                rendered.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
            ),
        }
    })
}

/// Nodes in a value (iterative: the value is depth-limited, but this costs nothing).
fn count_nodes(value: &Value) -> usize {
    let mut stack = vec![value];
    let mut n = 0usize;
    while let Some(v) = stack.pop() {
        n += 1;
        match v {
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    n
}

/// The fields `metadata` may hold in a file.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with name, namespace, labels and annotations"
)]
struct FileMetadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Checks the envelope and deserialises the spec of one non-empty document.
fn typed_manifest(value: Value, location: &str) -> Result<Manifest, Vec<ManifestError>> {
    let err = |resource: Option<&str>, field: Option<&str>, message: String| {
        ManifestError::new(
            location,
            resource.map(str::to_string),
            field.map(str::to_string),
            message,
        )
    };
    let Value::Object(mut map) = value else {
        return Err(vec![err(
            None,
            None,
            format!(
                "a manifest must be a mapping with apiVersion, kind, metadata and spec, found {}",
                describe(&value)
            ),
        )]);
    };
    let mut errors = Vec::new();
    match map.get("apiVersion") {
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(Value::String(v)) => errors.push(err(
            None,
            Some("apiVersion"),
            format!("unsupported apiVersion {v:?}; expected {API_VERSION}"),
        )),
        Some(other) => errors.push(err(
            None,
            Some("apiVersion"),
            format!(
                "expected the string {API_VERSION}, found {}",
                describe(other)
            ),
        )),
        None => errors.push(err(
            None,
            Some("apiVersion"),
            format!("missing; expected {API_VERSION}"),
        )),
    }
    let kind = match map.get("kind") {
        Some(Value::String(k)) if k == "Image" => Some(Kind::Image),
        Some(Value::String(k)) if k == "Container" => Some(Kind::Container),
        Some(Value::String(k)) if k == "Network" => Some(Kind::Network),
        Some(Value::String(k)) if k == "Volume" => Some(Kind::Volume),
        Some(Value::String(k)) => {
            errors.push(err(
                None,
                Some("kind"),
                format!("unknown kind {k:?}; expected {KINDS}"),
            ));
            None
        }
        Some(other) => {
            errors.push(err(
                None,
                Some("kind"),
                format!("expected {KINDS}, found {}", describe(other)),
            ));
            None
        }
        None => {
            errors.push(err(
                None,
                Some("kind"),
                format!("missing; expected {KINDS}"),
            ));
            None
        }
    };
    let Some(kind) = kind else { return Err(errors) };
    if !errors.is_empty() {
        return Err(errors);
    }

    // The resource as errors name it, as far as the document tells.
    let raw_name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str);
    let raw_namespace = map
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_NAMESPACE);
    let resource = match raw_name {
        Some(name) => resource_label(kind.as_str(), raw_namespace, name),
        None => kind.as_str().to_string(),
    };
    let res = Some(resource.as_str());

    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            errors.push(err(
                res,
                Some(key),
                format!("unknown field `{key}`; expected apiVersion, kind, metadata or spec"),
            ));
        }
    }

    let metadata = match map.remove("metadata") {
        None | Some(Value::Null) => {
            errors.push(err(
                res,
                Some("metadata.name"),
                "missing; every resource needs a name".to_string(),
            ));
            None
        }
        Some(m) => match serde_path_to_error::deserialize::<_, FileMetadata>(m) {
            Ok(m) => Some(m),
            Err(e) => {
                let (field, message) = path_error("metadata", &e);
                errors.push(err(res, Some(&field), message));
                None
            }
        },
    };
    if let Some(meta) = &metadata {
        match &meta.name {
            None => errors.push(err(
                res,
                Some("metadata.name"),
                "missing; every resource needs a name".to_string(),
            )),
            Some(name) => {
                if let Err(problem) = check_dns_label(name) {
                    errors.push(err(
                        res,
                        Some("metadata.name"),
                        format!(
                            "invalid name {name:?}: {problem} (it becomes a Docker container name)"
                        ),
                    ));
                }
            }
        }
        if let Some(ns) = &meta.namespace {
            if let Err(problem) = check_dns_label(ns) {
                errors.push(err(
                    res,
                    Some("metadata.namespace"),
                    format!("invalid namespace {ns:?}: {problem}"),
                ));
            }
        }
    }

    let spec = match map.remove("spec") {
        None | Some(Value::Null) => {
            errors.push(err(res, Some("spec"), "missing".to_string()));
            None
        }
        Some(spec) => Some(spec),
    };
    let manifest =
        spec.and_then(|spec| {
            let typed =
                match kind {
                    Kind::Image => {
                        serde_path_to_error::deserialize::<_, ImageSpec>(spec).map(TypedSpec::Image)
                    }
                    Kind::Container => serde_path_to_error::deserialize::<_, ContainerSpec>(spec)
                        .map(TypedSpec::Container),
                    Kind::Network => serde_path_to_error::deserialize::<_, NetworkSpec>(spec)
                        .map(TypedSpec::Network),
                    Kind::Volume => serde_path_to_error::deserialize::<_, VolumeSpec>(spec)
                        .map(TypedSpec::Volume),
                };
            match typed {
                Ok(t) => Some(t),
                Err(e) => {
                    let (field, message) = path_error("spec", &e);
                    errors.push(err(res, Some(&field), message));
                    None
                }
            }
        });

    match (metadata, manifest) {
        (Some(meta), Some(spec)) if errors.is_empty() => {
            let name = meta.name.unwrap_or_default();
            let mut manifest = match spec {
                TypedSpec::Image(s) => Manifest::Image(Image::new(&name, s)),
                TypedSpec::Container(s) => Manifest::Container(Container::new(&name, s)),
                TypedSpec::Network(s) => Manifest::Network(Network::new(&name, s)),
                TypedSpec::Volume(s) => Manifest::Volume(Volume::new(&name, s)),
            };
            let object_meta = match &mut manifest {
                Manifest::Image(i) => &mut i.metadata,
                Manifest::Container(c) => &mut c.metadata,
                Manifest::Network(n) => &mut n.metadata,
                Manifest::Volume(v) => &mut v.metadata,
            };
            object_meta.namespace = Some(
                meta.namespace
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            );
            object_meta.labels = meta.labels;
            object_meta.annotations = meta.annotations;
            Ok(manifest)
        }
        _ => Err(errors),
    }
}

#[allow(clippy::large_enum_variant)] // short-lived, moved once into a `Manifest`
enum TypedSpec {
    Image(ImageSpec),
    Container(ContainerSpec),
    Network(NetworkSpec),
    Volume(VolumeSpec),
}

/// `(field path, message)` of a deserialisation error below `prefix`.
fn path_error(prefix: &str, e: &serde_path_to_error::Error<serde_json::Error>) -> (String, String) {
    let path = e.path().to_string();
    let mut field = if path == "." || path.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}.{path}")
    };
    let mut message = e.inner().to_string();
    // Serde names Rust types ("struct HealthCheck with 6 elements"); users wrote a mapping.
    if let Some(at) = message.find("expected struct ") {
        message = if message.starts_with("invalid length") {
            "invalid type: sequence, expected a mapping".to_string()
        } else {
            format!("{}expected a mapping", &message[..at])
        };
    }
    // serde reports a missing field at its parent; name the field itself.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        field = format!("{field}.{missing}");
        message = "missing".to_string();
    }
    if message.contains("expected a string")
        && [
            "invalid type: integer",
            "invalid type: floating point",
            "invalid type: boolean",
        ]
        .iter()
        .any(|p| message.starts_with(p))
    {
        message.push_str("; quote the value to make it a string");
    }
    (field, message)
}

/// Short description of a value for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a sequence".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

/// DNS-1123 label: lowercase letters, digits and `-`, starting and ending alphanumeric, at
/// most 63 characters. Names become Docker container names and label values.
pub(crate) fn check_dns_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 63 {
        return Err("longer than 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("only lowercase letters, digits and '-' are allowed");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a lowercase letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<(usize, usize, bool, &str)> {
        split_documents(text)
            .into_iter()
            .map(|d| (d.index, d.line, d.has_content, d.text))
            .collect()
    }

    #[test]
    fn splits_documents_with_line_numbers() {
        let text = "# header\n---\na: 1\n---\n---\nb: 2\n...\n# trailing\n";
        assert_eq!(
            split(text),
            vec![
                (1, 2, true, "# header\n---\na: 1\n"),
                (2, 4, false, "---\n"),
                (3, 5, true, "---\nb: 2\n...\n"),
            ]
        );
        // No marker at all: one document starting at its first content line.
        assert_eq!(split("\n\nkind: x\n"), vec![(1, 3, true, "\n\nkind: x\n")]);
        // `---` inside content is not a marker unless at column 0 and alone.
        assert_eq!(split("a: |\n  ---\nb: ---x\n").len(), 1);
        // Content on the marker line.
        assert_eq!(split("--- {a: 1}\n--- |\n  x\n").len(), 2);
        assert!(split("").is_empty());
        assert!(split("# only a comment\n").is_empty());
    }

    #[test]
    fn dns_labels() {
        for ok in ["web", "a", "web-1", "0abc", &"a".repeat(63)] {
            assert_eq!(check_dns_label(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a_b", "a.b", &"a".repeat(64), "wéb"] {
            assert!(check_dns_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn syntax_error_lines_are_file_lines() {
        let text = "apiVersion: dockwright.dev/v1alpha1\nkind: Image\nmetadata: {name: a}\nspec: {ref: x}\n---\nkind: [\n";
        let errs = parse_str(text, Path::new("m.yaml")).unwrap_err().0;
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].location, "m.yaml (document 2, line 5)");
        assert!(
            errs[0].message.starts_with("invalid YAML: "),
            "{}",
            errs[0].message
        );
        assert!(errs[0].message.contains("line 6"), "{}", errs[0].message);
    }
}
