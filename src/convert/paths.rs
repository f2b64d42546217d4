//! Host paths in Compose trees: relative paths of a file that is not the main one (an
//! `include`d file, the `file:` of an `extends`) made absolute against that file's directory
//! before its services join the main model, as Compose resolves each file's paths against its
//! own project directory; and paths written into manifests relative to the output directory.

use std::path::{Component, Path, PathBuf};

use super::node::Node;

/// `path` with `.` and `..` removed lexically (no file system access).
pub(super) fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `target` relative to the directory `from` (both absolute and normalised), e.g.
/// `/a/b/c` from `/a/d` is `../b/c`. The same path is `.`.
pub(super) fn relative_to(target: &Path, from: &Path) -> PathBuf {
    let t: Vec<Component> = target.components().collect();
    let f: Vec<Component> = from.components().collect();
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// A relative path made absolute against `dir`; absolute paths, `~` paths, URLs and empty
/// strings stay as they are.
fn rebased(path: &str, dir: &Path) -> Option<String> {
    if path.is_empty() || path.starts_with(['/', '~']) || path.contains("://") {
        return None;
    }
    Some(normalise(&dir.join(path)).to_string_lossy().into_owned())
}

fn rebase_str(node: &mut Node, dir: &Path) {
    if let Node::Str(s) = node {
        if let Some(new) = rebased(s, dir) {
            *s = new;
        }
    }
}

fn get_mut<'a>(node: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    match node {
        Node::Map(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// Makes the host paths of one service absolute against `dir`: the build context, env
/// files, bind-mount sources (short syntax: a source starting with `.`), and `extends.file`.
pub(super) fn rebase_service(service: &mut Node, dir: &Path) {
    if let Some(build) = get_mut(service, "build") {
        match build {
            Node::Str(_) => rebase_str(build, dir),
            Node::Map(_) => match get_mut(build, "context") {
                Some(context) => rebase_str(context, dir),
                // The default context is the file's directory.
                None => {
                    if let Node::Map(entries) = build {
                        entries.push((
                            "context".to_string(),
                            Node::Str(dir.to_string_lossy().into_owned()),
                        ));
                    }
                }
            },
            _ => {}
        }
    }
    if let Some(env_file) = get_mut(service, "env_file") {
        match env_file {
            Node::Str(_) => rebase_str(env_file, dir),
            Node::Seq(items) => {
                for item in items {
                    match item {
                        Node::Str(_) => rebase_str(item, dir),
                        Node::Map(_) => {
                            if let Some(p) = get_mut(item, "path") {
                                rebase_str(p, dir);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(Node::Seq(volumes)) = get_mut(service, "volumes") {
        for v in volumes {
            match v {
                Node::Str(s) if s.starts_with('.') => {
                    if let Some((source, rest)) = s.split_once(':') {
                        if let Some(new) = rebased(source, dir) {
                            *s = format!("{new}:{rest}");
                        }
                    }
                }
                Node::Map(_) => {
                    let is_bind =
                        v.get("type").and_then(Node::scalar_text).as_deref() == Some("bind");
                    if is_bind {
                        if let Some(source) = get_mut(v, "source") {
                            rebase_str(source, dir);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(extends) = get_mut(service, "extends") {
        if let Some(file) = get_mut(extends, "file") {
            rebase_str(file, dir);
        }
    }
}

/// Makes every host path of a whole file's tree absolute against `dir`: each service's, and
/// the `file:` of its secrets and configs.
pub(super) fn rebase_file(tree: &mut Node, dir: &Path) {
    if let Some(Node::Map(services)) = get_mut(tree, "services") {
        for (_, service) in services {
            rebase_service(service, dir);
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(Node::Map(defs)) = get_mut(tree, section) {
            for (_, def) in defs {
                if let Some(file) = get_mut(def, "file") {
                    rebase_str(file, dir);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let rel = |t: &str, f: &str| relative_to(Path::new(t), Path::new(f));
        assert_eq!(rel("/a/b/c", "/a/d"), PathBuf::from("../b/c"));
        assert_eq!(rel("/a/b", "/a/b"), PathBuf::from("."));
        assert_eq!(rel("/a/b/c", "/a/b"), PathBuf::from("c"));
        assert_eq!(rel("/x", "/a/b"), PathBuf::from("../../x"));
    }

    #[test]
    fn rebases_only_relative_host_paths() {
        let dir = Path::new("/base/sub");
        let mut service = Node::Map(vec![
            ("build".into(), Node::Str("./web".into())),
            (
                "env_file".into(),
                Node::Seq(vec![Node::Str("a.env".into())]),
            ),
            (
                "volumes".into(),
                Node::Seq(vec![
                    Node::Str("../data:/data:ro".into()),
                    Node::Str("named:/x".into()),
                    Node::Str("/abs:/y".into()),
                ]),
            ),
        ]);
        rebase_service(&mut service, dir);
        assert_eq!(
            service.get("build"),
            Some(&Node::Str("/base/sub/web".into()))
        );
        assert_eq!(
            service.get("env_file"),
            Some(&Node::Seq(vec![Node::Str("/base/sub/a.env".into())]))
        );
        assert_eq!(
            service.get("volumes"),
            Some(&Node::Seq(vec![
                Node::Str("/base/data:/data:ro".into()),
                Node::Str("named:/x".into()),
                Node::Str("/abs:/y".into()),
            ]))
        );
    }
}
