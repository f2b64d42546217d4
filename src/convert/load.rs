//! Reads a Compose file into one interpolated tree: YAML → [`Node`] → `${VAR}` interpolation
//! → the top-level `include`s merged in → every `extends` resolved ([`super::extends`]).
//!
//! `include` follows Compose: each entry is a path (or `{path, project_directory, env_file}`)
//! relative to the including file's directory; the included file is read as a project of its
//! own — interpolated with the variables of the including file plus its own `.env` (or the
//! entry's `env_file`s) for the ones not set, its own `include`s and `extends` resolved, its
//! relative paths made absolute against its project directory (default: its own directory)
//! — and its services, networks, volumes, secrets and configs join the including file's. A
//! name defined on both sides is an error (networks, volumes, secrets and configs may repeat
//! an identical definition), as is an include cycle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::node::Node;
use super::paths::{normalise, rebase_file};
use super::warnings::Warnings;
use super::{add_dotenv, interpolate_tree, read_yaml, ConvertError};

/// Deepest chain of `include`s followed.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads files for one conversion.
pub(super) struct Loader<'a> {
    pub(super) warnings: &'a mut Warnings,
    /// Files being included, outermost first (cycle detection).
    stack: Vec<PathBuf>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(warnings: &'a mut Warnings) -> Self {
        Self {
            warnings,
            stack: Vec::new(),
        }
    }

    /// The main file's tree: interpolated, includes and extends resolved. Relative paths
    /// stay relative (they resolve against `base_dir` later).
    pub(super) fn main(
        &mut self,
        text: &str,
        label: &str,
        base_dir: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<Node, ConvertError> {
        let mut tree = self.parse(text, label, vars)?;
        self.includes(&mut tree, label, base_dir, vars)?;
        self.extends(&mut tree, label, base_dir, vars)?;
        Ok(tree)
    }

    fn parse(
        &mut self,
        text: &str,
        label: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<Node, ConvertError> {
        if text.len() > crate::source::MAX_FILE_BYTES {
            return Err(ConvertError::Yaml {
                file: label.to_string(),
                message: format!(
                    "file is larger than the limit of {} bytes",
                    crate::source::MAX_FILE_BYTES
                ),
            });
        }
        let mut tree = read_yaml(text, label)?;
        if !matches!(tree, Node::Map(_)) {
            return Err(ConvertError::Invalid {
                file: label.to_string(),
                field: "(top level)".into(),
                message: format!("expected a mapping with services, found {}", tree.kind()),
            });
        }
        interpolate_tree(&mut tree, &mut String::new(), vars, self.warnings).map_err(
            |(field, message)| ConvertError::Invalid {
                file: label.to_string(),
                field,
                message,
            },
        )?;
        Ok(tree)
    }

    /// Another file, interpolated with `vars`, its paths absolute against `project_dir`.
    fn other(
        &mut self,
        path: &Path,
        project_dir: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<Node, ConvertError> {
        let label = path.display().to_string();
        // Refuse devices, FIFOs and huge files before reading them.
        let meta = std::fs::metadata(path).map_err(|source| ConvertError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if !meta.is_file() || meta.len() > crate::source::MAX_FILE_BYTES as u64 {
            return Err(ConvertError::Yaml {
                file: label,
                message: format!(
                    "not a regular file of at most {} bytes",
                    crate::source::MAX_FILE_BYTES
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConvertError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tree = self.parse(&text, &label, vars)?;
        rebase_file(&mut tree, project_dir);
        Ok(tree)
    }

    fn extends(
        &mut self,
        tree: &mut Node,
        label: &str,
        base_dir: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), ConvertError> {
        let mut load = |path: &Path| -> Result<Node, ConvertError> {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            self.other(path, &dir, vars)
        };
        super::extends::resolve(tree, label, base_dir, &mut load)
    }

    fn includes(
        &mut self,
        tree: &mut Node,
        label: &str,
        dir: &Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), ConvertError> {
        let Node::Map(entries) = tree else {
            return Ok(());
        };
        let Some(i) = entries.iter().position(|(k, _)| k == "include") else {
            return Ok(());
        };
        let (_, include) = entries.remove(i);
        let err = |field: String, message: String| ConvertError::Invalid {
            file: label.to_string(),
            field,
            message,
        };
        let items = match include {
            Node::Seq(items) => items,
            Node::Null => Vec::new(),
            other => {
                return Err(err(
                    "include".into(),
                    format!("expected a list, found {}", other.kind()),
                ))
            }
        };
        for (n, item) in items.iter().enumerate() {
            let field = format!("include[{n}]");
            let entry = IncludeEntry::read(item).map_err(|m| err(field.clone(), m))?;
            let paths: Vec<PathBuf> = entry
                .paths
                .iter()
                .map(|p| normalise(&dir.join(p)))
                .collect();
            let Some(first) = paths.first() else {
                return Err(err(format!("{field}.path"), "no file to include".into()));
            };
            let project_dir = match &entry.project_directory {
                Some(p) => normalise(&dir.join(p)),
                None => first.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let mut inc_vars = vars.clone();
            if entry.env_files.is_empty() {
                add_dotenv(&mut inc_vars, &project_dir.join(".env"), self.warnings)?;
            } else {
                for f in &entry.env_files {
                    let path = normalise(&dir.join(f));
                    if !path.exists() {
                        return Err(err(
                            format!("{field}.env_file"),
                            format!("{} does not exist", path.display()),
                        ));
                    }
                    add_dotenv(&mut inc_vars, &path, self.warnings)?;
                }
            }
            for path in &paths {
                let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                if self.stack.contains(&key) || self.stack.len() >= MAX_INCLUDE_DEPTH {
                    let chain: Vec<String> = self
                        .stack
                        .iter()
                        .chain(std::iter::once(&key))
                        .map(|p| p.display().to_string())
                        .collect();
                    return Err(err(
                        field,
                        format!(
                            "include forms a cycle (or nests too deep): {}",
                            chain.join(" → ")
                        ),
                    ));
                }
                if !path.exists() {
                    return Err(err(
                        format!("{field}.path"),
                        format!("{} does not exist", path.display()),
                    ));
                }
                self.stack.push(key);
                let mut included = self.other(path, &project_dir, &inc_vars)?;
                let inc_label = path.display().to_string();
                let inc_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                self.includes(&mut included, &inc_label, &inc_dir, &inc_vars)?;
                self.extends(&mut included, &inc_label, &inc_dir, &inc_vars)?;
                self.stack.pop();
                merge_included(tree, included, label, &inc_label)?;
            }
        }
        Ok(())
    }
}

/// One `include` entry.
struct IncludeEntry {
    paths: Vec<String>,
    project_directory: Option<String>,
    env_files: Vec<String>,
}

impl IncludeEntry {
    fn read(node: &Node) -> Result<Self, String> {
        let strings = |n: &Node, what: &str| -> Result<Vec<String>, String> {
            match n {
                Node::Seq(items) => items
                    .iter()
                    .map(|i| {
                        i.scalar_text()
                            .ok_or_else(|| format!("{what}: expected strings"))
                    })
                    .collect(),
                other => other
                    .scalar_text()
                    .map(|s| vec![s])
                    .ok_or_else(|| format!("{what}: expected a path or a list of paths")),
            }
        };
        match node {
            Node::Map(entries) => {
                let mut e = IncludeEntry {
                    paths: Vec::new(),
                    project_directory: None,
                    env_files: Vec::new(),
                };
                for (k, v) in entries {
                    match k.as_str() {
                        "path" => e.paths = strings(v, "path")?,
                        "project_directory" => e.project_directory = v.scalar_text(),
                        "env_file" => e.env_files = strings(v, "env_file")?,
                        other => {
                            return Err(format!(
                                "unknown key {other:?}; include takes path, project_directory and env_file"
                            ))
                        }
                    }
                }
                Ok(e)
            }
            other => Ok(IncludeEntry {
                paths: vec![other
                    .scalar_text()
                    .ok_or("expected a path or a mapping with path")?],
                project_directory: None,
                env_files: Vec::new(),
            }),
        }
    }
}

/// Adds the included file's definitions to `tree`'s; a name on both sides is an error unless
/// (outside `services`) the two definitions are identical.
fn merge_included(
    tree: &mut Node,
    included: Node,
    label: &str,
    inc_label: &str,
) -> Result<(), ConvertError> {
    let (Node::Map(entries), Node::Map(inc)) = (tree, included) else {
        return Ok(());
    };
    for (section, defs) in inc {
        let Node::Map(defs) = defs else { continue };
        if !matches!(
            section.as_str(),
            "services" | "networks" | "volumes" | "secrets" | "configs"
        ) {
            continue;
        }
        let target = match entries.iter_mut().find(|(k, _)| *k == section) {
            Some((_, t)) => t,
            None => {
                entries.push((section.clone(), Node::Map(Vec::new())));
                &mut entries.last_mut().expect("just pushed").1
            }
        };
        if matches!(target, Node::Null) {
            *target = Node::Map(Vec::new());
        }
        let Node::Map(existing) = target else {
            continue;
        };
        for (name, def) in defs {
            match existing.iter().find(|(k, _)| *k == name) {
                Some((_, old)) if section != "services" && *old == def => {}
                Some(_) => {
                    return Err(ConvertError::Invalid {
                        file: label.to_string(),
                        field: format!("{section}.{name}"),
                        message: format!(
                            "also defined by the included file {inc_label}; rename one of them"
                        ),
                    })
                }
                None => existing.push((name, def)),
            }
        }
    }
    Ok(())
}
