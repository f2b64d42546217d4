//! Compose `privileged`, `cap_add`, `cap_drop`, `devices`, `pid` and `ipc` → the Container's
//! `privileged`, `capabilities`, `devices`, `hostPID` and `hostIPC`, written as they are:
//! whether they are allowed is the agent policy's call at apply time (by default it refuses
//! them, naming the setting that allows each). What has no field — another container's
//! namespace, a CDI device name — is warned about.

use super::compose::{Device, Service};
use super::to_manifests::ServiceCx;
use super::warnings::Warnings;
use super::ConvertError;
use crate::api::{Capabilities, DeviceMapping};

/// The security fields of one converted service.
#[derive(Debug)]
pub(super) struct Security {
    pub(super) privileged: bool,
    pub(super) host_pid: bool,
    pub(super) host_ipc: bool,
    pub(super) capabilities: Option<Capabilities>,
    pub(super) devices: Vec<DeviceMapping>,
}

/// Converts the security fields of `s`.
pub(super) fn security(
    sc: &ServiceCx<'_>,
    s: &Service,
    w: &mut Warnings,
) -> Result<Security, ConvertError> {
    let capabilities = (!s.cap_add.is_empty() || !s.cap_drop.is_empty()).then(|| Capabilities {
        add: s.cap_add.clone(),
        drop: s.cap_drop.clone(),
    });
    let mut devices = Vec::with_capacity(s.devices.len());
    for (i, d) in s.devices.iter().enumerate() {
        devices.extend(device(sc, i, d, w)?);
    }
    Ok(Security {
        privileged: s.privileged.unwrap_or(false),
        host_pid: host_namespace(sc, "pid", s.pid.as_deref(), w),
        host_ipc: host_namespace(sc, "ipc", s.ipc.as_deref(), w),
        capabilities,
        devices,
    })
}

/// `pid`/`ipc`: `host` shares the host's namespace; anything else (another container's,
/// `private`, `shareable`) has no field and is dropped with a warning.
fn host_namespace(sc: &ServiceCx<'_>, key: &str, value: Option<&str>, w: &mut Warnings) -> bool {
    match value {
        None => false,
        Some("host") => true,
        Some(v) => {
            let (field, what) = match key {
                "pid" => ("hostPID", "PID"),
                _ => ("hostIPC", "IPC"),
            };
            sc.warn(
                w,
                key,
                format!("{v:?} is not supported: dockwright can share only the host's {what} namespace ({field}); the container gets the daemon's default; dropped"),
            );
            false
        }
    }
}

/// One `devices` entry; `None` (warned) for a CDI device name, which has no field.
fn device(
    sc: &ServiceCx<'_>,
    i: usize,
    d: &Device,
    w: &mut Warnings,
) -> Result<Option<DeviceMapping>, ConvertError> {
    let field = format!("devices[{i}]");
    let (host, container, permissions) = match d {
        Device::Long(l) => {
            sc.unsupported(w, &field, &l.other.0);
            let Some(source) = l.source.as_deref().filter(|s| !s.is_empty()) else {
                return Err(sc.err(&field, "source is required"));
            };
            (source, l.target.as_deref(), l.permissions.as_deref())
        }
        Device::Short(text) => match text.split(':').collect::<Vec<_>>().as_slice() {
            [host] => (*host, None, None),
            // Docker reads `HOST:X` as a container path when X is one, else as permissions.
            [host, path] if path.starts_with('/') => (*host, Some(*path), None),
            [host, permissions] => (*host, None, Some(*permissions)),
            [host, path, permissions] => (*host, Some(*path), Some(*permissions)),
            _ => {
                return Err(sc.err(
                    &field,
                    format!("{text:?} is not HOST[:CONTAINER][:PERMISSIONS]"),
                ))
            }
        },
    };
    if !host.starts_with('/') {
        sc.warn(
            w,
            &field,
            format!("{host:?} is not a host device path (a CDI device name?): dockwright maps device files only; dropped"),
        );
        return Ok(None);
    }
    Ok(Some(DeviceMapping {
        host_path: host.to_string(),
        container_path: container.filter(|c| *c != host).map(str::to_string),
        permissions: permissions.map(str::to_string),
    }))
}
