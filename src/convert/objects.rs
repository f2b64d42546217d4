//! Top-level `networks` and `volumes` → `Network` and `Volume` resources, and the table that
//! tells services which name to use for each Compose key.
//!
//! - A declared network or volume becomes a resource named `<project>-<key>` as a DNS label
//!   (resource names must be; Compose's Docker name is `<project>_<key>`), or its `name:` when
//!   that is a DNS label. The project's `default` network is declared implicitly, as in Compose.
//! - `external: true` (or a `name:` that is not a DNS label) is a reference by Docker name: no
//!   resource, so dockwright never creates it with options nor removes it; a container naming
//!   it uses the existing one (or, as for any plain name, creates a bare one if it is missing).
//! - Only the ones some converted service uses are written, as Compose creates only those.

use std::collections::BTreeMap;

use super::compose::{ComposeFile, External, ListOrMap, NetworkDef, VolumeDef};
use super::to_manifests::{dns_label, Context};
use super::warnings::Warnings;
use super::ConvertError;
use crate::api::{IpamPool, Network, NetworkIpam, NetworkSpec, Volume, VolumeSpec};

/// A converted top-level network or volume.
#[derive(Debug)]
pub(crate) enum Object {
    /// A `Network` resource.
    Network(Network),
    /// A `Volume` resource.
    Volume(Volume),
}

/// A declared network or volume: its Compose key, the name services use, and the resource
/// (`None` for a reference to an existing one).
#[derive(Debug)]
pub(crate) struct Declared {
    /// `networks.<key>` or `volumes.<key>`.
    pub field: String,
    /// The name containers use (resource name = Docker name, or the external Docker name).
    pub name: String,
    /// The resource, unless external.
    pub object: Option<Object>,
    /// For a volume named after the project: the Docker name Compose gives it (warned about
    /// when a converted service uses it).
    pub compose_name: Option<String>,
}

/// The declared networks and volumes, by Compose key.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    /// Networks in file order (the implicit `default` first).
    pub networks: Vec<(String, Declared)>,
    /// Volumes in file order.
    pub volumes: Vec<(String, Declared)>,
}

/// Compose key → the name containers use.
pub(crate) fn names(list: &[(String, Declared)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, d)| (k.clone(), d.name.clone()))
        .collect()
}

/// Converts the top-level definitions.
pub(crate) fn convert(
    cx: &Context<'_>,
    file: &ComposeFile,
    w: &mut Warnings,
) -> Result<Objects, ConvertError> {
    let mut out = Objects::default();
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    if !file.networks.0.iter().any(|(k, _)| k == "default") {
        let d = network(cx, "default", None, w)?;
        taken.insert(d.name.clone(), d.field.clone());
        out.networks.push(("default".into(), d));
    }
    for (key, def) in &file.networks.0 {
        let d = network(cx, key, def.as_ref(), w)?;
        claim(cx, &mut taken, &d)?;
        out.networks.push((key.clone(), d));
    }
    let mut taken = BTreeMap::new();
    for (key, def) in &file.volumes.0 {
        let d = volume(cx, key, def.as_ref(), w)?;
        claim(cx, &mut taken, &d)?;
        out.volumes.push((key.clone(), d));
    }
    Ok(out)
}

fn claim(
    cx: &Context<'_>,
    taken: &mut BTreeMap<String, String>,
    d: &Declared,
) -> Result<(), ConvertError> {
    if d.object.is_none() {
        return Ok(());
    }
    if let Some(other) = taken.insert(d.name.clone(), d.field.clone()) {
        return Err(cx.err(
            &d.field,
            format!(
                "its resource name {:?} is also the name of {other}; set name: on one of them",
                d.name
            ),
        ));
    }
    Ok(())
}

/// What the two kinds share: how the Docker name and the resource name are chosen.
enum Naming {
    /// A resource with this name.
    Resource(String),
    /// A reference to this Docker name.
    Reference(String),
}

fn naming(
    cx: &Context<'_>,
    field: &str,
    key: &str,
    name: Option<&String>,
    external: Option<&External>,
) -> Result<Naming, ConvertError> {
    let legacy = external.and_then(|e| e.name.clone());
    if let (Some(n), Some(l)) = (name, &legacy) {
        if n != l {
            return Err(cx.err(
                format!("{field}.external.name"),
                "conflicts with name; keep only name",
            ));
        }
    }
    let name = name.cloned().or(legacy);
    if name.as_deref() == Some("") {
        return Err(cx.err(format!("{field}.name"), "must not be empty"));
    }
    if external.is_some_and(|e| e.external) {
        return Ok(Naming::Reference(name.unwrap_or_else(|| key.to_string())));
    }
    match name {
        Some(n) if crate::source::parse::check_dns_label(&n).is_ok() => Ok(Naming::Resource(n)),
        Some(n) => Ok(Naming::Reference(n)),
        None => {
            let derived = dns_label(&format!("{}-{key}", cx.project));
            if derived.is_empty() {
                return Err(cx.err(
                    field,
                    "cannot make a resource name from this key; set name: to a DNS label",
                ));
            }
            Ok(Naming::Resource(derived))
        }
    }
}

fn key_values(
    field: &str,
    l: Option<&ListOrMap>,
    labels: bool,
    w: &mut Warnings,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in l.iter().flat_map(|l| l.0.iter()) {
        if labels && k.starts_with(crate::labels::PREFIX) {
            w.push(
                None,
                format!("{field}.{k}"),
                format!(
                    "keys under {:?} are reserved for dockwright; dropped",
                    crate::labels::PREFIX
                ),
            );
            continue;
        }
        out.insert(k.clone(), v.clone().unwrap_or_default());
    }
    out
}

/// Options a reference cannot carry, warned about by name.
fn dropped_on_reference(w: &mut Warnings, field: &str, name: &str, set: &[(&str, bool)]) {
    for (option, is_set) in set {
        if *is_set {
            w.push(
                None,
                format!("{field}.{option}"),
                format!("dropped: {name:?} is used by its Docker name (external, or a name that is not a DNS label), so dockwright does not create it with options"),
            );
        }
    }
}

fn network(
    cx: &Context<'_>,
    key: &str,
    def: Option<&NetworkDef>,
    w: &mut Warnings,
) -> Result<Declared, ConvertError> {
    let field = format!("networks.{key}");
    let empty = NetworkDef::default();
    let def = def.unwrap_or(&empty);
    w.unsupported(None, &field, &def.other.0);
    let naming = naming(cx, &field, key, def.name.as_ref(), def.external.as_ref())?;
    let name = match naming {
        Naming::Reference(name) => {
            dropped_on_reference(
                w,
                &field,
                &name,
                &[
                    ("driver", def.driver.is_some()),
                    ("driver_opts", def.driver_opts.is_some()),
                    ("labels", def.labels.is_some()),
                    ("internal", def.internal.is_some()),
                    ("attachable", def.attachable.is_some()),
                    ("enable_ipv6", def.enable_ipv6.is_some()),
                    ("ipam", def.ipam.is_some()),
                ],
            );
            return Ok(Declared {
                field,
                name,
                object: None,
                compose_name: None,
            });
        }
        Naming::Resource(name) => name,
    };
    let mut ipam = None;
    if let Some(i) = &def.ipam {
        w.unsupported(None, &format!("{field}.ipam"), &i.other.0);
        let mut config = Vec::new();
        for (n, pool) in i.config.iter().enumerate() {
            let pfield = format!("{field}.ipam.config[{n}]");
            w.unsupported(None, &pfield, &pool.other.0);
            let Some(subnet) = pool.subnet.clone() else {
                w.push(
                    None,
                    pfield,
                    "a pool without a subnet cannot be expressed (dockwright's pools name their subnet); dropped",
                );
                continue;
            };
            config.push(IpamPool {
                subnet,
                gateway: pool.gateway.clone(),
                ip_range: pool.ip_range.clone(),
            });
        }
        if i.driver.is_some() || !config.is_empty() {
            ipam = Some(NetworkIpam {
                driver: i.driver.clone(),
                config,
            });
        }
    }
    let spec = NetworkSpec {
        driver: def.driver.clone(),
        options: key_values(
            &format!("{field}.driver_opts"),
            def.driver_opts.as_ref(),
            false,
            w,
        ),
        labels: key_values(&format!("{field}.labels"), def.labels.as_ref(), true, w),
        internal: def.internal.unwrap_or(false),
        attachable: def.attachable.unwrap_or(false),
        enable_ipv6: def.enable_ipv6.unwrap_or(false),
        ipam,
    };
    Ok(Declared {
        field,
        object: Some(Object::Network(Network::new(&name, spec))),
        name,
        compose_name: None,
    })
}

fn volume(
    cx: &Context<'_>,
    key: &str,
    def: Option<&VolumeDef>,
    w: &mut Warnings,
) -> Result<Declared, ConvertError> {
    let field = format!("volumes.{key}");
    let empty = VolumeDef::default();
    let def = def.unwrap_or(&empty);
    w.unsupported(None, &field, &def.other.0);
    let naming = naming(cx, &field, key, def.name.as_ref(), def.external.as_ref())?;
    let name = match naming {
        Naming::Reference(name) => {
            dropped_on_reference(
                w,
                &field,
                &name,
                &[
                    ("driver", def.driver.is_some()),
                    ("driver_opts", def.driver_opts.is_some()),
                    ("labels", def.labels.is_some()),
                ],
            );
            return Ok(Declared {
                field,
                name,
                object: None,
                compose_name: None,
            });
        }
        Naming::Resource(name) => name,
    };
    let spec = VolumeSpec {
        driver: def.driver.clone(),
        driver_options: key_values(
            &format!("{field}.driver_opts"),
            def.driver_opts.as_ref(),
            false,
            w,
        ),
        labels: key_values(&format!("{field}.labels"), def.labels.as_ref(), true, w),
        ..VolumeSpec::default()
    };
    Ok(Declared {
        field,
        object: Some(Object::Volume(Volume::new(&name, spec))),
        name,
        // The data of a project Compose already ran lives in `<project>_<key>`.
        compose_name: def.name.is_none().then(|| format!("{}_{key}", cx.project)),
    })
}
