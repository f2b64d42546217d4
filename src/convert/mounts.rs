//! Compose `volumes` (short and long syntax) and `tmpfs` → `VolumeMount`s: named volumes by
//! their Docker names, host paths made absolute, anonymous volumes given a name, and a warning
//! for every mount option dockwright has no field for.

use std::path::PathBuf;

use super::compose::{LongVolume, ServiceVolume};
use super::to_manifests::{Context, ServiceCx, Tables};
use super::units::size_quantity;
use super::warnings::Warnings;
use super::ConvertError;
use crate::api::{VolumeMount, VolumeType};

/// `~` and relative paths resolved, `.` and `..` removed lexically.
pub(super) fn resolve_host_path(cx: &Context<'_>, source: &str) -> PathBuf {
    let expanded = match source.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = cx.vars.get("HOME").map(String::as_str).unwrap_or("/");
            PathBuf::from(format!("{home}{rest}"))
        }
        _ => PathBuf::from(source),
    };
    super::paths::normalise(&cx.base_dir.join(expanded))
}

fn is_host_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~'])
}

fn bind_mount(
    sc: &ServiceCx<'_>,
    field: &str,
    source: &str,
    target: &str,
    read_only: bool,
    w: &mut Warnings,
) -> Result<VolumeMount, ConvertError> {
    let path = resolve_host_path(sc.cx, source);
    let Some(abs_str) = path.to_str() else {
        return Err(sc.err(field, format!("{} is not valid UTF-8", path.display())));
    };
    let path_str = sc.cx.manifest_path(&path);
    if !path.exists() {
        sc.warn(
            w,
            field,
            format!("{abs_str} does not exist: Compose creates it, dockwright requires it; create it before applying"),
        );
    }
    Ok(VolumeMount {
        type_: VolumeType::Bind,
        source: Some(path_str),
        target: target.to_string(),
        read_only,
        size_limit: None,
    })
}

/// What mounts need to know beyond the service: the volume table and the replica count.
pub(super) struct MountCx<'a> {
    pub(super) t: &'a Tables<'a>,
    pub(super) replicas: u32,
}

fn named_mount(
    sc: &ServiceCx<'_>,
    field: &str,
    key: Option<&str>,
    target: &str,
    read_only: bool,
    mx: &MountCx<'_>,
    w: &mut Warnings,
) -> Result<VolumeMount, ConvertError> {
    let (t, replicas) = (mx.t, mx.replicas);
    let source = match key {
        Some(key) => t.volumes.get(key).cloned().ok_or_else(|| {
            sc.err(
                field,
                format!("named volume {key:?} is not declared under the top-level volumes"),
            )
        })?,
        None => {
            let slug: String = target
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let name = format!(
                "{}_{}{}",
                sc.cx.project,
                sc.resource,
                slug.trim_end_matches('_')
            );
            let shared = if replicas > 1 {
                format!(" (shared by all {replicas} replicas)")
            } else {
                String::new()
            };
            sc.warn(
                w,
                field,
                format!("anonymous volume at {target} becomes the named volume {name:?}{shared}"),
            );
            name
        }
    };
    Ok(VolumeMount {
        type_: VolumeType::Volume,
        source: Some(source),
        target: target.to_string(),
        read_only,
        size_limit: None,
    })
}

pub(super) fn volume(
    sc: &ServiceCx<'_>,
    i: usize,
    v: &ServiceVolume,
    mx: &MountCx<'_>,
    w: &mut Warnings,
) -> Result<Option<VolumeMount>, ConvertError> {
    let field = format!("volumes[{i}]");
    match v {
        ServiceVolume::Short(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            let (source, target, modes) = match parts.as_slice() {
                [target] => (None, *target, ""),
                [source, target] => (Some(*source), *target, ""),
                [source, target, modes] => (Some(*source), *target, *modes),
                _ => {
                    return Err(sc.err(
                        &field,
                        format!("invalid volume {s:?}; expected [source:]target[:mode]"),
                    ))
                }
            };
            let mut read_only = false;
            for mode in modes.split(',').filter(|m| !m.is_empty()) {
                match mode {
                    "ro" => read_only = true,
                    "rw" => read_only = false,
                    "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" | "shared"
                    | "slave" | "private" | "rshared" | "rslave" | "rprivate" => sc.warn(
                        w,
                        &field,
                        format!("mount option {mode:?} is not supported by dockwright; dropped"),
                    ),
                    _ => {
                        return Err(sc.err(&field, format!("unknown mount mode {mode:?} in {s:?}")))
                    }
                }
            }
            if target.is_empty() {
                return Err(sc.err(&field, format!("invalid volume {s:?}: no target path")));
            }
            match source {
                Some(src) if is_host_path(src) => {
                    bind_mount(sc, &field, src, target, read_only, w).map(Some)
                }
                Some("") => Err(sc.err(&field, format!("invalid volume {s:?}: empty source"))),
                source => named_mount(sc, &field, source, target, read_only, mx, w).map(Some),
            }
        }
        ServiceVolume::Long(l) => long_volume(sc, &field, l, mx, w),
    }
}

fn long_volume(
    sc: &ServiceCx<'_>,
    field: &str,
    l: &LongVolume,
    mx: &MountCx<'_>,
    w: &mut Warnings,
) -> Result<Option<VolumeMount>, ConvertError> {
    sc.unsupported(w, field, &l.other.0);
    let read_only = l.read_only.unwrap_or(false);
    if let Some(bind) = &l.bind {
        sc.unsupported(w, &format!("{field}.bind"), &bind.0);
    }
    if let Some(vol) = &l.volume {
        sc.unsupported(w, &format!("{field}.volume"), &vol.0);
    }
    match l.type_.as_str() {
        "volume" => named_mount(
            sc,
            field,
            l.source.as_deref().filter(|s| !s.is_empty()),
            &l.target,
            read_only,
            mx,
            w,
        )
        .map(Some),
        "bind" => match l.source.as_deref() {
            Some(src) if !src.is_empty() => {
                bind_mount(sc, field, src, &l.target, read_only, w).map(Some)
            }
            _ => Err(sc.err(
                &format!("{field}.source"),
                "a bind mount needs a source path",
            )),
        },
        "tmpfs" => {
            let mut size_limit = None;
            if let Some(opts) = &l.tmpfs {
                sc.unsupported(w, &format!("{field}.tmpfs"), &opts.other.0);
                if let Some(size) = &opts.size {
                    size_limit = Some(
                        size_quantity(size)
                            .map_err(|m| sc.err(&format!("{field}.tmpfs.size"), m))?,
                    );
                }
            }
            if read_only {
                sc.warn(
                    w,
                    &format!("{field}.read_only"),
                    "a read-only tmpfs is not supported; mounted read-write",
                );
            }
            Ok(Some(VolumeMount {
                type_: VolumeType::Tmpfs,
                source: None,
                target: l.target.clone(),
                read_only: false,
                size_limit,
            }))
        }
        "npipe" | "cluster" | "image" => {
            sc.warn(
                w,
                field,
                format!(
                    "mount type {:?} is not supported by dockwright; dropped",
                    l.type_
                ),
            );
            Ok(None)
        }
        other => Err(sc.err(
            &format!("{field}.type"),
            format!("unknown mount type {other:?}; expected volume, bind or tmpfs"),
        )),
    }
}

/// A service-level `tmpfs` entry: `path[:size=64m,mode=1777,...]`.
pub(super) fn tmpfs_mount(
    sc: &ServiceCx<'_>,
    i: usize,
    entry: &str,
    w: &mut Warnings,
) -> Result<VolumeMount, ConvertError> {
    let field = format!("tmpfs[{i}]");
    let (target, options) = entry.split_once(':').unwrap_or((entry, ""));
    let mut size_limit = None;
    for option in options.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("size", size)) => {
                size_limit = Some(size_quantity(size).map_err(|m| sc.err(&field, m))?);
            }
            _ => sc.warn(
                w,
                &field,
                format!("tmpfs option {option:?} is not supported by dockwright; dropped"),
            ),
        }
    }
    Ok(VolumeMount {
        type_: VolumeType::Tmpfs,
        source: None,
        target: target.to_string(),
        read_only: false,
        size_limit,
    })
}
