//! The parts of an `Image` that touch the filesystem or need parsing: the build (context and
//! Dockerfile resolved, build inputs hashed — the only place the context is read when
//! nothing changed) and the update policy (`updateInterval`, `minAge`).

use std::path::{Component, Path, PathBuf};

use super::{resolve, Ctx};
use crate::api::{ImageBuild, ImageSpec, PullPolicy};
use crate::build_context::{inputs_hash, BuildInputs};
use crate::desired::{DesiredBuild, Dockerfile, UpdatePolicy};
use crate::duration::parse_duration;
use crate::labels;

/// Largest Dockerfile accepted (it is held in memory and hashed).
const MAX_DOCKERFILE_BYTES: u64 = 4 * 1024 * 1024;

/// Resolves and hashes `spec.build`; `None` (with errors recorded) when it cannot be used.
pub(super) fn normalize_build(
    cx: &mut Ctx,
    b: &ImageBuild,
    base_dir: &Path,
) -> Option<DesiredBuild> {
    let before = cx.errors.len();
    if b.context.is_empty() {
        cx.err(
            "spec.build.context",
            "must not be empty; use \".\" for the manifest's directory",
        );
        return None;
    }
    // Canonical paths, so `..` and symlinks cannot make an in-context Dockerfile look external.
    let context = resolve(base_dir, &b.context);
    let context = std::fs::canonicalize(&context).unwrap_or(context);
    match std::fs::metadata(&context) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => cx.err(
            "spec.build.context",
            format!("{} is not a directory", context.display()),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => cx.err(
            "spec.build.context",
            format!("{} does not exist", context.display()),
        ),
        Err(e) => cx.err(
            "spec.build.context",
            format!("cannot read {}: {e}", context.display()),
        ),
    }
    let dockerfile_path = resolve(&context, b.dockerfile.as_deref().unwrap_or("Dockerfile"));
    let dockerfile_path = std::fs::canonicalize(&dockerfile_path).unwrap_or(dockerfile_path);
    let dockerfile = match relative_inside(&context, &dockerfile_path) {
        Some(rel) => Dockerfile::InContext(rel),
        None => Dockerfile::External(dockerfile_path.clone()),
    };
    let content = match read_dockerfile(&dockerfile_path) {
        Ok(content) => Some(content),
        Err(message) => {
            cx.err("spec.build.dockerfile", message);
            None
        }
    };
    for name in b.args.keys() {
        if name.is_empty() || name.contains('=') {
            cx.err(
                "spec.build.args",
                format!("{name:?} is not a valid build arg name"),
            );
        }
    }
    for name in b.labels.keys() {
        if name.is_empty() {
            cx.err("spec.build.labels", "label keys must not be empty");
        } else if name.starts_with(labels::PREFIX) {
            cx.err(
                format!("spec.build.labels.{name}"),
                format!(
                    "keys under {:?} are reserved for dockwright",
                    labels::PREFIX
                ),
            );
        }
    }
    if b.target.as_deref() == Some("") {
        cx.err(
            "spec.build.target",
            "must not be empty; omit it to build the last stage",
        );
    }
    if cx.errors.len() > before {
        return None;
    }
    let content = content?;
    let target = b.target.clone();
    let hash = inputs_hash(&BuildInputs {
        context: &context,
        dockerfile: &content,
        args: &b.args,
        target: target.as_deref(),
        labels: &b.labels,
    });
    let hash = match hash {
        Ok(hash) => hash,
        Err(e) => {
            cx.err("spec.build.context", e.to_string());
            return None;
        }
    };
    Some(DesiredBuild {
        context,
        dockerfile,
        args: b.args.clone(),
        target,
        labels: b.labels.clone(),
        hash,
    })
}

/// `path` relative to `context` (`/`-separated) when it lies inside it.
fn relative_inside(context: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(context).ok()?;
    let parts: Option<Vec<&str>> = rel
        .components()
        .map(|c| match c {
            Component::Normal(p) => p.to_str(),
            _ => None,
        })
        .collect();
    parts.filter(|p| !p.is_empty()).map(|p| p.join("/"))
}

fn read_dockerfile(path: &PathBuf) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.len() > MAX_DOCKERFILE_BYTES {
        return Err(format!(
            "{} is larger than the limit of {MAX_DOCKERFILE_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `updateInterval` and `minAge`, checked against the rest of the spec.
pub(super) fn normalize_update(
    cx: &mut Ctx,
    spec: &ImageSpec,
    pinned: bool,
) -> Option<UpdatePolicy> {
    let mut parse = |field: &str, text: &Option<String>| match text.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if d.is_zero() => {
            cx.err(field, "must be greater than 0");
            None
        }
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            cx.err(field, e.to_string());
            None
        }
    };
    let interval = parse("spec.updateInterval", &spec.update_interval);
    let min_age = parse("spec.minAge", &spec.min_age);
    if spec.update_interval.is_none() {
        if spec.min_age.is_some() {
            cx.err("spec.minAge", "only valid with spec.updateInterval");
        }
        return None;
    }
    if spec.build.is_some() {
        cx.err(
            "spec.updateInterval",
            "a built image has no registry tag to follow; remove updateInterval or build",
        );
    }
    if pinned {
        cx.err(
            "spec.updateInterval",
            "spec.ref pins a digest, so there is no moving tag to follow",
        );
    }
    if spec.pull_policy == PullPolicy::Never {
        cx.err(
            "spec.updateInterval",
            "pullPolicy Never forbids pulling the new digest",
        );
    }
    interval.map(|interval| UpdatePolicy { interval, min_age })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfiles_inside_the_context_are_relative() {
        let ctx = Path::new("/srv/app");
        assert_eq!(
            relative_inside(ctx, Path::new("/srv/app/Dockerfile")).as_deref(),
            Some("Dockerfile")
        );
        assert_eq!(
            relative_inside(ctx, Path::new("/srv/app/docker/Dev.df")).as_deref(),
            Some("docker/Dev.df")
        );
        assert_eq!(
            relative_inside(ctx, Path::new("/srv/other/Dockerfile")),
            None
        );
        assert_eq!(relative_inside(ctx, Path::new("/srv/app")), None);
    }
}
