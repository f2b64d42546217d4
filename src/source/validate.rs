//! Cross-document validation: turns every parsed document into one [`DesiredState`] or the
//! full list of what is wrong. Per-resource normalisation is [`super::normalize`]'s; this
//! module owns what needs several resources at once: duplicate identities, the dependency
//! graph, Docker container names and host ports.
//!
//! When two resources clash, the one declared later (in the order the manifests were given)
//! carries the error and names the earlier one, so each clash is reported once.
//! Host ports and container names are checked for the replicas a resource asks for now:
//! `replicas: 0` publishes nothing and names nothing; a `Stopped` resource still counts (its
//! containers exist and would take the port when started).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::normalize::{
    normalize_container, normalize_image, normalize_network, normalize_volume, ImageIndex,
    ObjectIndex,
};
use super::{LoadOptions, LoadedManifest, Manifest, ManifestError, ManifestErrors};
use crate::api::{ContainerSpec, DependencyCondition, RestartPolicy};
use crate::desired::{DesiredContainer, DesiredImage, DesiredState, ResourceKey};

/// Cross-document validation and normalisation into the desired state.
///
/// Reports every problem of every resource; a resource declared twice is reported on its
/// second declaration and otherwise ignored.
pub fn build_desired(manifests: &[LoadedManifest]) -> Result<DesiredState, ManifestErrors> {
    build_desired_with(manifests, &LoadOptions::default())
}

/// [`build_desired`] with `options` (the age identities of encrypted secret files).
pub fn build_desired_with(
    manifests: &[LoadedManifest],
    options: &LoadOptions,
) -> Result<DesiredState, ManifestErrors> {
    let mut errors = Vec::new();
    let unique = unique_resources(manifests, &mut errors);

    let mut state = DesiredState::default();
    let mut images = ImageIndex::new();
    let mut producers = ImageProducers::default();
    for lm in &unique {
        if let Manifest::Image(image) = &lm.manifest {
            match normalize_image(lm, image) {
                Ok(desired) => {
                    producers.check(lm, &desired, &mut errors);
                    images.insert(
                        desired.key.clone(),
                        Some((desired.reference.clone(), desired.pull_policy)),
                    );
                    state.images.insert(desired.key.clone(), desired);
                }
                Err(mut errs) => {
                    images.insert(lm.manifest.key(), None);
                    errors.append(&mut errs);
                }
            }
        }
    }

    // Networks and volumes first: containers name them.
    let mut objects = ObjectIndex::new();
    for lm in &unique {
        let normalized = match &lm.manifest {
            Manifest::Network(n) => normalize_network(lm, n).map(|n| {
                objects.insert(n.key.clone(), n.name.clone());
                state.networks.insert(n.key.clone(), n);
            }),
            Manifest::Volume(v) => normalize_volume(lm, v).map(|v| {
                objects.insert(v.key.clone(), v.name.clone());
                state.volumes.insert(v.key.clone(), v);
            }),
            _ => Ok(()),
        };
        if let Err(mut errs) = normalized {
            // Still resolvable by name, so its containers report no confusing errors.
            let key = lm.manifest.key();
            objects.insert(key.clone(), key.object_name());
            errors.append(&mut errs);
        }
    }

    let declared: BTreeSet<ResourceKey> = unique.iter().map(|lm| lm.manifest.key()).collect();
    // Normalised containers with their specs, in declaration order.
    let mut containers: Vec<(&LoadedManifest, &ContainerSpec, DesiredContainer)> = Vec::new();
    for lm in &unique {
        if let Manifest::Container(container) = &lm.manifest {
            match normalize_container(lm, container, &images, &objects, options) {
                Ok(desired) => containers.push((lm, &container.spec, desired)),
                Err(mut errs) => errors.append(&mut errs),
            }
        }
    }

    check_dependencies(&containers, &declared, &mut errors);
    check_cycles(&containers, &mut errors);
    check_container_names(&containers, &mut errors);
    check_host_ports(&containers, &mut errors);

    if !errors.is_empty() {
        return Err(ManifestErrors(errors));
    }
    for (_, _, desired) in containers {
        state.containers.insert(desired.key.clone(), desired);
    }
    Ok(state)
}

/// Which `Image` puts which reference on the daemon. A reference an `Image` builds or tags
/// belongs to that `Image` alone: another one building, tagging or pulling it would make the
/// two fight over what it names.
#[derive(Default)]
struct ImageProducers {
    /// Reference → (resource label, origin, whether that resource builds or tags it).
    seen: BTreeMap<String, (String, String, bool)>,
}

impl ImageProducers {
    fn check(
        &mut self,
        lm: &LoadedManifest,
        image: &DesiredImage,
        errors: &mut Vec<ManifestError>,
    ) {
        let refs = std::iter::once((
            &image.reference,
            image.build.is_some(),
            "spec.ref".to_string(),
        ))
        .chain(
            image
                .tags
                .iter()
                .enumerate()
                .map(|(i, t)| (t, true, format!("spec.tags[{i}]"))),
        );
        for (reference, produced, field) in refs {
            match self.seen.get(reference) {
                Some((label, origin, earlier)) if produced || *earlier => errors.push(err(
                    lm,
                    field,
                    format!("{reference} is also built, tagged or pulled by {label} ({origin}); one Image per reference"),
                )),
                Some(_) => {}
                None => {
                    self.seen.insert(
                        reference.clone(),
                        (lm.manifest.label(), lm.origin.to_string(), produced),
                    );
                }
            }
        }
    }
}

fn err(lm: &LoadedManifest, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::new(
        lm.origin.to_string(),
        Some(lm.manifest.label()),
        Some(field.into()),
        message,
    )
}

/// The first declaration of each identity; later ones are errors.
fn unique_resources<'a>(
    manifests: &'a [LoadedManifest],
    errors: &mut Vec<ManifestError>,
) -> Vec<&'a LoadedManifest> {
    let mut first: BTreeMap<ResourceKey, &LoadedManifest> = BTreeMap::new();
    let mut unique = Vec::with_capacity(manifests.len());
    for lm in manifests {
        let key = lm.manifest.key();
        if let Some(earlier) = first.get(&key) {
            errors.push(err(
                lm,
                "metadata.name",
                format!(
                    "duplicate {} {:?} in namespace {}: already declared in {}",
                    key.kind.as_str(),
                    key.name,
                    key.namespace,
                    earlier.origin
                ),
            ));
        } else {
            first.insert(key, lm);
            unique.push(lm);
        }
    }
    unique
}

/// The position in `spec.dependsOn` of the dependency on `name`.
fn dependency_index(spec: &ContainerSpec, name: &str) -> usize {
    spec.depends_on
        .iter()
        .position(|d| d.name == name)
        .unwrap_or_default()
}

/// Every dependency exists and can reach the condition asked for.
fn check_dependencies(
    containers: &[(&LoadedManifest, &ContainerSpec, DesiredContainer)],
    declared: &BTreeSet<ResourceKey>,
    errors: &mut Vec<ManifestError>,
) {
    let by_key: BTreeMap<&ResourceKey, &DesiredContainer> =
        containers.iter().map(|(_, _, c)| (&c.key, c)).collect();
    for (lm, spec, c) in containers {
        for (dep, condition) in &c.depends_on {
            let field = format!("spec.dependsOn[{}].name", dependency_index(spec, &dep.name));
            if !declared.contains(dep) {
                errors.push(err(
                    lm,
                    field,
                    format!(
                        "unknown dependency: no Container {:?} in namespace {}",
                        dep.name, dep.namespace
                    ),
                ));
                continue;
            }
            let Some(target) = by_key.get(dep) else {
                continue;
            };
            match condition {
                DependencyCondition::Healthy if target.config.healthcheck.is_none() => {
                    errors.push(err(
                        lm,
                        field,
                        format!(
                            "Container {:?} has no healthcheck, so it can never become Healthy",
                            dep.name
                        ),
                    ))
                }
                DependencyCondition::Completed
                    if target.restart_policy == RestartPolicy::Always =>
                {
                    errors.push(err(
                        lm,
                        field,
                        format!(
                            "Container {:?} has restartPolicy: Always, so it never completes",
                            dep.name
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
}

/// No dependency cycles (iterative DFS: chains may be long).
fn check_cycles(
    containers: &[(&LoadedManifest, &ContainerSpec, DesiredContainer)],
    errors: &mut Vec<ManifestError>,
) {
    let index: BTreeMap<&ResourceKey, usize> = containers
        .iter()
        .enumerate()
        .map(|(i, (_, _, c))| (&c.key, i))
        .collect();
    let edges: Vec<Vec<(usize, usize)>> = containers
        .iter()
        .map(|(_, spec, c)| {
            c.depends_on
                .iter()
                .filter_map(|(dep, _)| {
                    index
                        .get(dep)
                        .map(|&v| (v, dependency_index(spec, &dep.name)))
                })
                .collect()
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color = vec![Color::White; containers.len()];
    for start in 0..containers.len() {
        if color[start] != Color::White {
            continue;
        }
        color[start] = Color::Grey;
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(top) = stack.last_mut() {
            let (u, pos) = *top;
            let Some(&(v, field_index)) = edges[u].get(pos) else {
                color[u] = Color::Black;
                stack.pop();
                continue;
            };
            top.1 += 1;
            match color[v] {
                Color::White => {
                    color[v] = Color::Grey;
                    stack.push((v, 0));
                }
                Color::Grey => {
                    let from = stack.iter().position(|(n, _)| *n == v).unwrap_or_default();
                    let cycle: Vec<String> = stack[from..]
                        .iter()
                        .map(|(n, _)| containers[*n].0.manifest.label())
                        .chain(std::iter::once(containers[v].0.manifest.label()))
                        .collect();
                    errors.push(err(
                        containers[u].0,
                        format!("spec.dependsOn[{field_index}].name"),
                        format!("dependency cycle: {}", cycle.join(" -> ")),
                    ));
                }
                Color::Black => {}
            }
        }
    }
}

/// No two replicas anywhere share a Docker container name.
fn check_container_names(
    containers: &[(&LoadedManifest, &ContainerSpec, DesiredContainer)],
    errors: &mut Vec<ManifestError>,
) {
    let mut names: BTreeMap<String, (String, u32)> = BTreeMap::new();
    for (lm, _, c) in containers {
        for replica in 0..c.replicas {
            let name = c.key.container_name(c.replicas, replica);
            if let Some((other, other_replica)) = names.get(&name) {
                errors.push(err(
                    lm,
                    "metadata.name",
                    format!(
                        "Docker container name {name:?} (replica {replica}) is also the name of {other} replica {other_replica}"
                    ),
                ));
            } else {
                names.insert(name, (lm.manifest.label(), replica));
            }
        }
    }
}

/// Who publishes a host port first.
#[derive(Clone)]
struct Publisher {
    label: String,
    origin: String,
    field: String,
}

/// Publishers of one host port and protocol.
#[derive(Default)]
struct PortUsers {
    /// First publisher on all addresses.
    wildcard: Option<Publisher>,
    /// First publisher on each specific address.
    specific: BTreeMap<IpAddr, Publisher>,
}

/// No host port, protocol and address is published twice. A port published on all addresses
/// (no `hostIP`, `0.0.0.0` or `::`) clashes with the same port on any address.
fn check_host_ports(
    containers: &[(&LoadedManifest, &ContainerSpec, DesiredContainer)],
    errors: &mut Vec<ManifestError>,
) {
    let mut users: BTreeMap<(u16, &'static str), PortUsers> = BTreeMap::new();
    for (lm, spec, c) in containers {
        if c.replicas == 0 {
            continue;
        }
        for (i, port) in spec.ports.iter().enumerate() {
            let Some(host_port) = port.host_port else {
                continue;
            };
            let ip = match port.host_ip.as_deref().map(str::parse::<IpAddr>) {
                None => None,
                Some(Ok(ip)) if ip.is_unspecified() => None,
                Some(Ok(ip)) => Some(ip),
                Some(Err(_)) => continue, // reported by normalisation
            };
            let protocol = port.protocol.as_docker();
            let entry = users.entry((host_port, protocol)).or_default();
            let clash = match ip {
                None => entry
                    .wildcard
                    .as_ref()
                    .or_else(|| entry.specific.values().next()),
                Some(ip) => entry.wildcard.as_ref().or_else(|| entry.specific.get(&ip)),
            };
            let field = format!("spec.ports[{i}].hostPort");
            if let Some(first) = clash {
                let addresses = ip.map_or("all addresses".to_string(), |ip| ip.to_string());
                errors.push(err(
                    lm,
                    field,
                    format!(
                        "host port {host_port}/{protocol} on {addresses} is already published by {} at {} ({})",
                        first.label, first.field, first.origin
                    ),
                ));
                continue;
            }
            let publisher = Publisher {
                label: lm.manifest.label(),
                origin: lm.origin.to_string(),
                field,
            };
            match ip {
                None => entry.wildcard = Some(publisher),
                Some(ip) => {
                    entry.specific.insert(ip, publisher);
                }
            }
        }
    }
}
