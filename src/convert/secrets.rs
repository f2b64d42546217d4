//! A service's `secrets` and `configs` → the Container's `files`, placed where Compose mounts
//! them: a secret at `/run/secrets/<name>` (or its `target`, relative ones under
//! `/run/secrets`), mode `0400` unless the long syntax sets `mode`; a config at `/<name>` (or
//! its `target`), mode `0444`. A `file:`-backed one becomes a file copied from the host path;
//! an `environment:`-backed one (and a config's inline `content:`) becomes inline content,
//! the variable read when converting (warned: the value is then in the manifest). `external`
//! ones live in a Swarm and cannot be read: warned and dropped. `uid`/`gid` have no field
//! (files are owned by root): warned.

use super::compose::{ComposeFile, OrderedMap, SecretDef, SecretRef, Service};
use super::mounts::resolve_host_path;
use super::node::Node;
use super::to_manifests::ServiceCx;
use super::warnings::Warnings;
use super::ConvertError;
use crate::api::FileSpec;

/// The files of both lists, secrets first, in file order.
pub(super) fn files(
    sc: &ServiceCx<'_>,
    s: &Service,
    file: &ComposeFile,
    w: &mut Warnings,
) -> Result<Vec<FileSpec>, ConvertError> {
    let mut out = Vec::new();
    for (kind, refs, defs) in [
        (Kind::Secret, &s.secrets, &file.secrets),
        (Kind::Config, &s.configs, &file.configs),
    ] {
        for (i, r) in refs.iter().enumerate() {
            if let Some(f) = one(sc, kind, i, r, defs, s, w)? {
                out.push(f);
            }
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Secret,
    Config,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Secret => "secrets",
            Kind::Config => "configs",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::Config => "config",
        }
    }
}

fn one(
    sc: &ServiceCx<'_>,
    kind: Kind,
    i: usize,
    r: &SecretRef,
    defs: &OrderedMap<Option<SecretDef>>,
    s: &Service,
    w: &mut Warnings,
) -> Result<Option<FileSpec>, ConvertError> {
    let section = kind.section();
    let field = format!("{section}[{i}]");
    let (source, target, mode) = match r {
        SecretRef::Short(name) => (name.as_str(), None, None),
        SecretRef::Long(l) => {
            sc.unsupported(w, &field, &l.other.0);
            for (key, set) in [("uid", l.uid.is_some()), ("gid", l.gid.is_some())] {
                if set {
                    sc.warn(
                        w,
                        &format!("{field}.{key}"),
                        "dropped: dockwright's files are owned by root",
                    );
                }
            }
            let mode = l
                .mode
                .as_ref()
                .map(|m| parse_mode(m).map_err(|e| sc.err(&format!("{field}.mode"), e)))
                .transpose()?;
            (l.source.as_str(), l.target.as_deref(), mode)
        }
    };
    let noun = kind.noun();
    let Some((_, def)) = defs.0.iter().find(|(k, _)| k == source) else {
        return Err(sc.err(
            &field,
            format!("undefined {noun} {source:?}; declare it under the top-level {section}"),
        ));
    };
    let top = format!("{section}.{source}");
    let Some(def) = def else {
        return Err(sc
            .cx
            .err(top, format!("the {noun} needs file or environment")));
    };
    w.unsupported(None, &top, &def.other.0);
    if def.external.as_ref().is_some_and(|e| e.external) {
        sc.warn(
            w,
            &field,
            format!("{noun} {source:?} is external (kept by a Swarm, which dockwright cannot read); dropped: declare it with file: instead"),
        );
        return Ok(None);
    }
    let path = match (kind, target) {
        (_, Some(t)) if t.starts_with('/') => t.to_string(),
        (Kind::Secret, t) => format!("/run/secrets/{}", t.unwrap_or(source)),
        (Kind::Config, t) => format!("/{}", t.unwrap_or(source)),
    };
    let default_mode = match kind {
        Kind::Secret => 0o400,
        Kind::Config => 0o444,
    };
    if kind == Kind::Secret && mode.is_none() && runs_as_non_root(s) {
        sc.warn(
            w,
            &field,
            format!("{path} is owned by root with mode 0400 and the service runs as user {:?}: set mode (e.g. 0444) in the long syntax if it must read it", s.user.as_deref().unwrap_or_default()),
        );
    }
    let mut spec = FileSpec {
        path,
        mode: Some(format!("{:04o}", mode.unwrap_or(default_mode))),
        ..FileSpec::default()
    };
    match (&def.file, &def.environment, &def.content) {
        (Some(f), None, None) => {
            let host = resolve_host_path(sc.cx, f);
            if !host.is_file() {
                w.push(
                    None,
                    format!("{top}.file"),
                    format!(
                        "{} does not exist: create it before applying",
                        host.display()
                    ),
                );
            }
            spec.source = Some(sc.cx.manifest_path(&host));
        }
        (None, Some(var), None) => {
            match sc.cx.vars.get(var) {
                Some(value) => {
                    if kind == Kind::Secret {
                        w.push(
                        None,
                        format!("{top}.environment"),
                        format!("the value of {var} is written into the manifests as the file's content: keep them as secret as the variable, or put the value in a file and use file:"),
                    );
                    }
                    spec.content = Some(value.clone());
                }
                None => {
                    sc.warn(
                    w,
                    &field,
                    format!("{var} is not set in the environment; the {noun} {source:?} is left out"),
                );
                    return Ok(None);
                }
            }
        }
        (None, None, Some(content)) if kind == Kind::Config => {
            spec.content = Some(content.clone());
        }
        _ => {
            return Err(sc.cx.err(
                top,
                match kind {
                    Kind::Secret => "needs exactly one of file and environment",
                    Kind::Config => "needs exactly one of file, environment and content",
                },
            ))
        }
    }
    Ok(Some(spec))
}

/// Whether `user:` names someone other than root.
fn runs_as_non_root(s: &Service) -> bool {
    match s.user.as_deref() {
        None => false,
        Some(u) => {
            let user = u.split(':').next().unwrap_or_default();
            !(user.is_empty() || user == "0" || user == "root")
        }
    }
}

/// A file mode as Compose reads it: `0440` or `0o440` octal, a plain number decimal (YAML's
/// integer); at most `07777`.
fn parse_mode(node: &Node) -> Result<u32, String> {
    let text = node
        .scalar_text()
        .ok_or_else(|| format!("expected a mode such as 0440, found {}", node.kind()))?;
    let parsed = if let Some(oct) = text.strip_prefix("0o") {
        u32::from_str_radix(oct, 8)
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8)
    } else {
        text.parse::<u32>()
    };
    match parsed {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!(
            "invalid mode {text:?}; expected octal permission bits such as 0440"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode(&Node::Str("0440".into())), Ok(0o440));
        assert_eq!(parse_mode(&Node::Str("0o400".into())), Ok(0o400));
        assert_eq!(parse_mode(&Node::UInt(288)), Ok(0o440));
        assert!(parse_mode(&Node::Str("0999".into())).is_err());
        assert!(parse_mode(&Node::UInt(70000)).is_err());
    }
}
