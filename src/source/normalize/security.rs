//! The fields the agent's policy judges — `privileged`, `hostPID`, `hostIPC`,
//! `capabilities`, `devices` — and secret environment values (`env[].valueFrom`), normalised.
//! Only their shape is checked here; whether they are allowed is [`crate::policy`]'s call,
//! made by the front end, so the same manifest is valid everywhere and refused per agent.

use std::path::Path;

use super::{resolve, Ctx};
use crate::api::ContainerSpec;
use crate::desired::{Device, Origin, SecretEnv};
use crate::secrets::{SecretSource, SecretValue};
use crate::source::decrypt::{is_age_file, read_age_file, AgeIdentities};

/// Largest secret file `valueFrom.file` may name.
pub const MAX_SECRET_FILE_BYTES: u64 = 1024 * 1024;

/// Canonical capability names (`NET_ADMIN`), sorted and deduplicated: `(add, drop)`.
pub(super) fn capabilities(cx: &mut Ctx, spec: &ContainerSpec) -> (Vec<String>, Vec<String>) {
    let Some(caps) = &spec.capabilities else {
        return (Vec::new(), Vec::new());
    };
    let mut canonical = |list: &[String], which: &str| {
        let mut out: Vec<String> = Vec::with_capacity(list.len());
        for (i, name) in list.iter().enumerate() {
            match canonical_capability(name) {
                Some(c) => out.push(c),
                None => cx.err(
                    format!("spec.capabilities.{which}[{i}]"),
                    format!("{name:?} is not a capability name such as NET_ADMIN (or ALL)"),
                ),
            }
        }
        out.sort();
        out.dedup();
        out
    };
    let add = canonical(&caps.add, "add");
    let drop = canonical(&caps.drop, "drop");
    if let Some(both) = add.iter().find(|c| drop.contains(c)) {
        cx.err(
            "spec.capabilities",
            format!("{both} is both added and dropped"),
        );
    }
    (add, drop)
}

/// `NET_ADMIN` for `net_admin`, `CAP_NET_ADMIN` or `NET_ADMIN`; `None` for anything that
/// is not letters, digits and `_` (Docker rejects unknown names itself at create).
pub fn canonical_capability(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    let ok = !bare.is_empty()
        && bare.len() <= 64
        && bare
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && bare.as_bytes()[0].is_ascii_uppercase();
    ok.then(|| bare.to_string())
}

/// Devices with absolute paths and `rwm` permissions.
pub(super) fn devices(cx: &mut Ctx, spec: &ContainerSpec) -> Vec<Device> {
    let mut out = Vec::with_capacity(spec.devices.len());
    for (i, d) in spec.devices.iter().enumerate() {
        let field = |name: &str| format!("spec.devices[{i}].{name}");
        let absolute = |p: &str| p.starts_with('/') && !p.contains('\0') && !p.contains(':');
        if !absolute(&d.host_path) {
            cx.err(
                field("hostPath"),
                format!("{:?} must be an absolute path without ':'", d.host_path),
            );
            continue;
        }
        let container_path = d
            .container_path
            .clone()
            .unwrap_or_else(|| d.host_path.clone());
        if !absolute(&container_path) {
            cx.err(
                field("containerPath"),
                format!("{container_path:?} must be an absolute path without ':'"),
            );
            continue;
        }
        let permissions = d.permissions.clone().unwrap_or_else(|| "rwm".to_string());
        let valid = !permissions.is_empty()
            && permissions.len() <= 3
            && permissions.bytes().all(|b| b"rwm".contains(&b))
            && (1..permissions.len()).all(|k| !permissions[k..].contains(&permissions[k - 1..k]));
        if !valid {
            cx.err(
                field("permissions"),
                format!("{permissions:?} must be a combination of r, w and m"),
            );
            continue;
        }
        out.push(Device {
            host_path: d.host_path.clone(),
            container_path,
            permissions,
        });
    }
    out
}

/// The `env` entries with `valueFrom`, in declaration order, with file values read. Name
/// checks (empty, duplicate, ...) are `normalize_env`'s, which skips these entries' values.
pub(super) fn secret_env(
    cx: &mut Ctx,
    spec: &ContainerSpec,
    origin: &Origin,
    namespace: &str,
    base_dir: &Path,
    age: Option<&AgeIdentities>,
) -> Vec<SecretEnv> {
    let mut out = Vec::new();
    for (i, var) in spec.env.iter().enumerate() {
        let Some(from) = &var.value_from else {
            continue;
        };
        let field = format!("spec.env[{i}].valueFrom");
        if !var.value.is_empty() {
            cx.err(
                format!("spec.env[{i}]"),
                "exactly one of value and valueFrom is allowed",
            );
            continue;
        }
        let (value, source) = match (&from.file, &from.secret_key_ref) {
            (Some(file), None) => {
                if matches!(origin, Origin::Kubernetes { .. }) {
                    cx.err(
                        format!("{field}.file"),
                        "a host file has no meaning for a cluster object; use secretKeyRef",
                    );
                    continue;
                }
                match read_secret_file(&resolve(base_dir, file), age) {
                    Ok(value) => (value, SecretSource::File),
                    Err(message) => {
                        cx.err(format!("{field}.file"), message);
                        continue;
                    }
                }
            }
            (None, Some(selector)) => {
                if selector.name.is_empty() || selector.key.is_empty() {
                    cx.err(
                        format!("{field}.secretKeyRef"),
                        "name and key must not be empty",
                    );
                    continue;
                }
                if !matches!(origin, Origin::Kubernetes { .. }) {
                    cx.err(
                        format!("{field}.secretKeyRef"),
                        "Secrets exist only in Kubernetes mode; in a manifest file use valueFrom.file",
                    );
                    continue;
                }
                (
                    SecretValue::default(),
                    SecretSource::SecretKeyRef {
                        namespace: namespace.to_string(),
                        selector: selector.clone(),
                        resolved: false,
                    },
                )
            }
            _ => {
                cx.err(field, "exactly one of file and secretKeyRef is required");
                continue;
            }
        };
        out.push(SecretEnv {
            name: var.name.clone(),
            digest: String::new(),
            value,
            source,
        });
    }
    out
}

/// A secret file's value: UTF-8 without NUL, one trailing newline (`\n` or `\r\n`) removed.
/// Messages name the path, never the content. A `*.age` file is decrypted with `age`.
fn read_secret_file(path: &Path, age: Option<&AgeIdentities>) -> Result<SecretValue, String> {
    use std::io::Read;
    if is_age_file(path) {
        let decrypted = read_age_file(path, age, MAX_SECRET_FILE_BYTES, "secret file")?;
        return secret_text(path, decrypted.plaintext);
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("secret file {} does not exist", path.display()),
        _ => format!("cannot read secret file {}: {e}", path.display()),
    })?;
    if !meta.is_file() {
        return Err(format!(
            "secret file {} is not a regular file",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(format!(
            "secret file {} is larger than the limit of {MAX_SECRET_FILE_BYTES} bytes",
            path.display()
        ));
    }
    secret_text(path, bytes)
}

/// The secret value of a file's bytes: UTF-8, no NUL, one trailing newline removed.
fn secret_text(path: &Path, bytes: Vec<u8>) -> Result<SecretValue, String> {
    let mut text = String::from_utf8(bytes)
        .map_err(|_| format!("secret file {} is not UTF-8 text", path.display()))?;
    if text.contains('\0') {
        return Err(format!(
            "secret file {} contains a NUL character",
            path.display()
        ));
    }
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(SecretValue::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape error of the new fields names its field; nothing is refused here (that is
    /// the policy's job), so a well-formed dangerous spec is valid.
    #[test]
    fn shape_errors_name_the_field() {
        use crate::source::{build_desired, parse_str};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "a\r\n").unwrap();
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        let run = |spec: &str| {
            let text = format!("apiVersion: dockwright.dev/v1alpha1\nkind: Container\nmetadata: {{name: web}}\nspec: {{image: busybox:1, {spec}}}\n");
            let manifests = parse_str(&text, &dir.path().join("m.yaml")).unwrap();
            build_desired(&manifests)
        };
        let ok = run("privileged: true, hostPID: true, hostIPC: true, network: host, capabilities: {add: [cap_net_admin, NET_ADMIN], drop: [all]}, devices: [{hostPath: /dev/null}], env: [{name: PW, valueFrom: {file: pw}}]").unwrap();
        let c = &ok.containers.values().next().unwrap().config;
        assert_eq!(c.cap_add, ["NET_ADMIN"]);
        assert_eq!(c.cap_drop, ["ALL"]);
        assert_eq!(c.devices[0].container_path, "/dev/null");
        assert_eq!(c.devices[0].permissions, "rwm");
        assert_eq!(
            c.secret_env[0].value.expose(),
            "a",
            "\\r\\n is one trailing newline"
        );
        assert!(c.env.is_empty(), "a secret never lands in the plain env");
        for (spec, field, says) in [
            (
                "capabilities: {add: [\"NET ADMIN\"]}",
                "spec.capabilities.add[0]",
                "capability",
            ),
            (
                "capabilities: {add: [NET_ADMIN], drop: [NET_ADMIN]}",
                "spec.capabilities",
                "both",
            ),
            (
                "devices: [{hostPath: dev/null}]",
                "spec.devices[0].hostPath",
                "absolute",
            ),
            (
                "devices: [{hostPath: /dev/null, containerPath: x}]",
                "spec.devices[0].containerPath",
                "absolute",
            ),
            (
                "devices: [{hostPath: /dev/null, permissions: rwx}]",
                "spec.devices[0].permissions",
                "r, w and m",
            ),
            (
                "devices: [{hostPath: /dev/null, permissions: rr}]",
                "spec.devices[0].permissions",
                "r, w and m",
            ),
            (
                "env: [{name: A, value: x, valueFrom: {file: pw}}]",
                "spec.env[0]",
                "exactly one of value",
            ),
            (
                "env: [{name: A, valueFrom: {}}]",
                "spec.env[0].valueFrom",
                "exactly one of file",
            ),
            (
                "env: [{name: A, valueFrom: {file: pw, secretKeyRef: {name: s, key: k}}}]",
                "spec.env[0].valueFrom",
                "exactly one of file",
            ),
            (
                "env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: k}}}]",
                "spec.env[0].valueFrom.secretKeyRef",
                "Kubernetes mode",
            ),
            (
                "env: [{name: A, valueFrom: {file: missing}}]",
                "spec.env[0].valueFrom.file",
                "does not exist",
            ),
            (
                "env: [{name: A, valueFrom: {file: bin}}]",
                "spec.env[0].valueFrom.file",
                "UTF-8",
            ),
            (
                "env: [{name: A, valueFrom: {file: .}}]",
                "spec.env[0].valueFrom.file",
                "regular file",
            ),
            (
                "env: [{name: A, value: x}, {name: A, valueFrom: {file: pw}}]",
                "spec.env[1].name",
                "duplicate",
            ),
        ] {
            let errors = run(spec).unwrap_err().0;
            assert!(
                errors
                    .iter()
                    .any(|e| e.field.as_deref() == Some(field) && e.message.contains(says)),
                "{spec}: {errors:?}"
            );
        }
    }

    #[test]
    fn capability_names() {
        assert_eq!(
            canonical_capability("net_admin").as_deref(),
            Some("NET_ADMIN")
        );
        assert_eq!(
            canonical_capability("CAP_SYS_TIME").as_deref(),
            Some("SYS_TIME")
        );
        assert_eq!(canonical_capability("ALL").as_deref(), Some("ALL"));
        for bad in ["", "CAP_", "NET ADMIN", "1CAP", "NET-ADMIN", "ñ"] {
            assert_eq!(canonical_capability(bad), None, "{bad}");
        }
    }
}
