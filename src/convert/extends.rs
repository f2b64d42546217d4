//! `extends`: a service built on another one, of the same file (`extends: base` or
//! `extends: {service: base}`) or of another file (`extends: {file: common.yml, service:
//! base}`), resolved on the interpolated trees before the typed model, recursively, with a
//! cycle named in the error.
//!
//! Merge rules, as Compose's: the extending service's fields win; `command`, `entrypoint` and
//! nested lists such as `healthcheck.test` are replaced; `environment`, `labels`, `build.args`
//! and the other key/value fields are merged by key; `networks` and `depends_on` by name;
//! `volumes` by container path; `secrets` and `configs` by source; the remaining lists
//! (`ports`, `expose`, `cap_add`, ...) are concatenated without duplicates; nested mappings
//! (`deploy`, `healthcheck`, `build`) are merged key by key. Paths of another file were made
//! absolute against its directory when it was read ([`super::paths`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::node::Node;
use super::ConvertError;

/// Deepest chain of `extends` followed: far beyond real files, bounds recursion.
const MAX_DEPTH: usize = 32;

/// A file services come from: `None` for the tree being resolved, else another file's path.
type FileKey = Option<PathBuf>;

/// Resolves every `extends` of `tree`'s services in place. `label` names `tree`'s file in
/// errors; `base_dir` resolves a relative `extends.file`; `load` reads another file (already
/// interpolated, its paths absolute).
pub(super) fn resolve(
    tree: &mut Node,
    label: &str,
    base_dir: &Path,
    load: &mut dyn FnMut(&Path) -> Result<Node, ConvertError>,
) -> Result<(), ConvertError> {
    let Some(Node::Map(services)) = tree.get("services").cloned() else {
        return Ok(());
    };
    if !services.iter().any(|(_, s)| s.get("extends").is_some()) {
        return Ok(());
    }
    let mut r = Resolver {
        main: services.clone(),
        label,
        base_dir,
        others: BTreeMap::new(),
        load,
    };
    let mut resolved = Vec::with_capacity(services.len());
    for (name, _) in &services {
        let mut stack = Vec::new();
        resolved.push((name.clone(), r.service(&None, name, &mut stack)?));
    }
    if let Node::Map(entries) = tree {
        if let Some((_, s)) = entries.iter_mut().find(|(k, _)| k == "services") {
            *s = Node::Map(resolved);
        }
    }
    Ok(())
}

struct Resolver<'a> {
    main: Vec<(String, Node)>,
    label: &'a str,
    base_dir: &'a Path,
    /// Services of the other files read so far, by path.
    others: BTreeMap<PathBuf, Vec<(String, Node)>>,
    load: &'a mut dyn FnMut(&Path) -> Result<Node, ConvertError>,
}

impl Resolver<'_> {
    fn label_of(&self, file: &FileKey) -> String {
        match file {
            None => self.label.to_string(),
            Some(p) => p.display().to_string(),
        }
    }

    fn err(&self, file: &FileKey, field: String, message: String) -> ConvertError {
        ConvertError::Invalid {
            file: self.label_of(file),
            field,
            message,
        }
    }

    fn raw(&mut self, file: &FileKey, name: &str) -> Result<Option<Node>, ConvertError> {
        let services = match file {
            None => &self.main,
            Some(path) => {
                if !self.others.contains_key(path) {
                    let tree = (self.load)(path)?;
                    let services = match tree.get("services") {
                        Some(Node::Map(s)) => s.clone(),
                        _ => Vec::new(),
                    };
                    self.others.insert(path.clone(), services);
                }
                &self.others[path]
            }
        };
        Ok(services
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }

    /// The service `name` of `file` with its `extends` chain merged in.
    fn service(
        &mut self,
        file: &FileKey,
        name: &str,
        stack: &mut Vec<(FileKey, String)>,
    ) -> Result<Node, ConvertError> {
        let field = format!("services.{name}.extends");
        if let Some(at) = stack.iter().position(|(f, n)| f == file && n == name) {
            let chain: Vec<String> = stack[at..]
                .iter()
                .chain(std::iter::once(&(file.clone(), name.to_string())))
                .map(|(f, n)| match f {
                    None => n.clone(),
                    Some(p) => format!("{n} ({})", p.display()),
                })
                .collect();
            let (first_file, first) = &stack[at];
            return Err(self.err(
                first_file,
                format!("services.{first}.extends"),
                format!("extends forms a cycle: {}", chain.join(" → ")),
            ));
        }
        if stack.len() >= MAX_DEPTH {
            return Err(self.err(
                file,
                field,
                format!("extends is nested deeper than {MAX_DEPTH} services"),
            ));
        }
        let Some(mut service) = self.raw(file, name)? else {
            // Only reached for a base; the caller names it.
            return Err(self.err(file, format!("services.{name}"), "no such service".into()));
        };
        let Some(extends) = take(&mut service, "extends") else {
            return Ok(service);
        };
        let (base_name, base_file) = match &extends {
            Node::Str(s) => (s.clone(), None),
            Node::Map(_) => {
                let Some(base) = extends.get("service").and_then(Node::scalar_text) else {
                    return Err(self.err(
                        file,
                        field,
                        "needs service: the service to extend".into(),
                    ));
                };
                for (k, _) in match &extends {
                    Node::Map(e) => e.as_slice(),
                    _ => &[],
                } {
                    if k != "service" && k != "file" {
                        return Err(self.err(
                            file,
                            format!("{field}.{k}"),
                            "unknown key; extends takes service and file".into(),
                        ));
                    }
                }
                let other = extends.get("file").and_then(Node::scalar_text);
                (base, other)
            }
            other => {
                return Err(self.err(
                    file,
                    field,
                    format!(
                        "expected a service name or a mapping with service and file, found {}",
                        other.kind()
                    ),
                ))
            }
        };
        let base_key: FileKey = match base_file {
            None => file.clone(),
            Some(f) => {
                let dir = match file {
                    None => self.base_dir.to_path_buf(),
                    Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
                };
                Some(super::paths::normalise(&dir.join(f)))
            }
        };
        if self.raw(&base_key, &base_name)?.is_none() {
            let where_ = match &base_key {
                None => "this file".to_string(),
                Some(p) => p.display().to_string(),
            };
            return Err(self.err(
                file,
                field,
                format!("service {base_name:?} is not defined in {where_}"),
            ));
        }
        stack.push((file.clone(), name.to_string()));
        let base = self.service(&base_key, &base_name, stack)?;
        stack.pop();
        Ok(merge_service(base, service))
    }
}

/// Removes `key` from a mapping and returns its value.
fn take(node: &mut Node, key: &str) -> Option<Node> {
    let Node::Map(entries) = node else {
        return None;
    };
    let i = entries.iter().position(|(k, _)| k == key)?;
    Some(entries.remove(i).1)
}

/// `over` merged onto `base`, field by field (see the module doc).
pub(super) fn merge_service(base: Node, over: Node) -> Node {
    let (Node::Map(mut merged), Node::Map(over)) = (base, over) else {
        return Node::Null;
    };
    for (key, value) in over {
        match merged.iter_mut().find(|(k, _)| *k == key) {
            None => merged.push((key, value)),
            Some((_, existing)) => {
                let old = std::mem::replace(existing, Node::Null);
                *existing = merge_field(&key, old, value);
            }
        }
    }
    Node::Map(merged)
}

fn merge_field(key: &str, base: Node, over: Node) -> Node {
    match key {
        "command" | "entrypoint" => over,
        "environment" | "labels" | "annotations" | "sysctls" | "extra_hosts" => {
            merge_maps(key_values(base), key_values(over))
        }
        "networks" | "depends_on" => merge_maps(names(base), names(over)),
        "build" => {
            let as_map = |n: Node| match n {
                Node::Str(s) => Node::Map(vec![("context".into(), Node::Str(s))]),
                other => other,
            };
            match (as_map(base), as_map(over)) {
                (Node::Map(b), Node::Map(o)) => {
                    let mut merged = b;
                    for (k, v) in o {
                        match merged.iter_mut().find(|(mk, _)| *mk == k) {
                            None => merged.push((k, v)),
                            Some((_, e)) => {
                                let old = std::mem::replace(e, Node::Null);
                                *e = if k == "args" || k == "labels" {
                                    merge_maps(key_values(old), key_values(v))
                                } else {
                                    merge_deep(old, v)
                                };
                            }
                        }
                    }
                    Node::Map(merged)
                }
                (_, o) => o,
            }
        }
        "volumes" => merge_by(base, over, volume_target),
        "secrets" | "configs" => merge_by(base, over, |n| match n {
            Node::Map(_) => n.get("source").and_then(Node::scalar_text),
            other => other.scalar_text(),
        }),
        _ => match (base, over) {
            (Node::Seq(b), Node::Seq(o)) => concat(b, o),
            (Node::Str(b), Node::Seq(o)) if key == "tmpfs" || key == "env_file" => {
                concat(vec![Node::Str(b)], o)
            }
            (Node::Seq(b), Node::Str(o)) if key == "tmpfs" || key == "env_file" => {
                concat(b, vec![Node::Str(o)])
            }
            (b, o) => merge_deep(b, o),
        },
    }
}

/// Mappings merged key by key (recursively); anything else: `over` wins.
fn merge_deep(base: Node, over: Node) -> Node {
    match (base, over) {
        (Node::Map(mut b), Node::Map(o)) => {
            for (k, v) in o {
                match b.iter_mut().find(|(bk, _)| *bk == k) {
                    None => b.push((k, v)),
                    Some((_, e)) => {
                        let old = std::mem::replace(e, Node::Null);
                        *e = merge_deep(old, v);
                    }
                }
            }
            Node::Map(b)
        }
        (_, o) => o,
    }
}

/// Two key/value mappings: `over`'s values win, `base`'s key order first.
fn merge_maps(base: Node, over: Node) -> Node {
    match (base, over) {
        (Node::Map(mut b), Node::Map(o)) => {
            for (k, v) in o {
                match b.iter_mut().find(|(bk, _)| *bk == k) {
                    None => b.push((k, v)),
                    Some((_, e)) => {
                        let old = std::mem::replace(e, Node::Null);
                        *e = merge_deep(old, v);
                    }
                }
            }
            Node::Map(b)
        }
        (_, o) => o,
    }
}

/// A `KEY=VALUE` list as a mapping (a bare `KEY` maps to null); mappings stay.
fn key_values(node: Node) -> Node {
    match node {
        Node::Seq(items) => Node::Map(
            items
                .into_iter()
                .filter_map(|i| i.scalar_text())
                .map(|s| match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Node::Str(v.to_string())),
                    None => (s, Node::Null),
                })
                .collect(),
        ),
        other => other,
    }
}

/// A list of names as a mapping of name → null; mappings stay.
fn names(node: Node) -> Node {
    match node {
        Node::Seq(items) => Node::Map(
            items
                .into_iter()
                .filter_map(|i| i.scalar_text())
                .map(|s| (s, Node::Null))
                .collect(),
        ),
        other => other,
    }
}

/// Lists concatenated, an item already present not repeated.
fn concat(mut base: Vec<Node>, over: Vec<Node>) -> Node {
    for item in over {
        if !base.contains(&item) {
            base.push(item);
        }
    }
    Node::Seq(base)
}

/// Lists merged by a key: an item of `over` replaces the item of `base` with the same key.
fn merge_by(base: Node, over: Node, key: impl Fn(&Node) -> Option<String>) -> Node {
    let (Node::Seq(mut b), Node::Seq(o)) = (base, over) else {
        return Node::Null;
    };
    for item in o {
        let k = key(&item);
        match b.iter_mut().find(|e| k.is_some() && key(e) == k) {
            Some(e) => *e = item,
            None => b.push(item),
        }
    }
    Node::Seq(b)
}

/// The container path of a `volumes` entry (short `source:target[:mode]` or long syntax).
fn volume_target(node: &Node) -> Option<String> {
    match node {
        Node::Map(_) => node.get("target").and_then(Node::scalar_text),
        other => {
            let s = other.scalar_text()?;
            let parts: Vec<&str> = s.split(':').collect();
            Some(match parts.as_slice() {
                [t] => t.to_string(),
                [_, t, ..] => t.to_string(),
                [] => return None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Node {
        Node::Str(v.into())
    }

    #[test]
    fn merges_by_field_kind() {
        let base = Node::Map(vec![
            ("command".into(), Node::Seq(vec![s("a"), s("b")])),
            ("environment".into(), Node::Seq(vec![s("A=1"), s("B=2")])),
            ("ports".into(), Node::Seq(vec![s("80")])),
            (
                "volumes".into(),
                Node::Seq(vec![s("data:/data"), s("./x:/x")]),
            ),
        ]);
        let over = Node::Map(vec![
            ("command".into(), Node::Seq(vec![s("c")])),
            (
                "environment".into(),
                Node::Map(vec![("B".into(), s("3")), ("C".into(), s("4"))]),
            ),
            ("ports".into(), Node::Seq(vec![s("80"), s("443")])),
            ("volumes".into(), Node::Seq(vec![s("other:/data")])),
        ]);
        let m = merge_service(base, over);
        assert_eq!(m.get("command"), Some(&Node::Seq(vec![s("c")])));
        assert_eq!(
            m.get("environment"),
            Some(&Node::Map(vec![
                ("A".into(), s("1")),
                ("B".into(), s("3")),
                ("C".into(), s("4"))
            ]))
        );
        assert_eq!(m.get("ports"), Some(&Node::Seq(vec![s("80"), s("443")])));
        assert_eq!(
            m.get("volumes"),
            Some(&Node::Seq(vec![s("other:/data"), s("./x:/x")]))
        );
    }
}
