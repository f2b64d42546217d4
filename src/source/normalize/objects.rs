//! `Network` and `Volume` resources → their normalised configuration, and a container's
//! networks (`network` + `networkAliases`, or `networks`) → its first network and the ones
//! connected before start. Names of declared networks and volumes resolve to their Docker
//! names (see [`ResourceKey::object_name`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use super::{Ctx, LoadedManifest, ManifestError};
use crate::api::{ContainerSpec, Network, Volume};
use crate::desired::{
    DesiredNetwork, DesiredVolume, IpamPoolConfig, Kind, NetworkConfig, NetworkEndpoint,
    ResourceKey, VolumeConfig,
};
use crate::labels;

/// Docker names of the declared `Network` and `Volume` resources, by key.
pub type ObjectIndex = BTreeMap<ResourceKey, String>;

/// Network names with a fixed meaning to Docker, never a user-defined network.
const PREDEFINED_NETWORKS: &[&str] = &["bridge", "host", "none", "default"];

/// Normalises a `Network` resource.
pub fn normalize_network(
    lm: &LoadedManifest,
    network: &Network,
) -> Result<DesiredNetwork, Vec<ManifestError>> {
    let key = lm.manifest.key();
    let mut cx = Ctx::new(lm);
    let spec = &network.spec;
    let name = key.object_name();
    if PREDEFINED_NETWORKS.contains(&name.as_str()) {
        cx.err(
            "metadata.name",
            format!("{name:?} is one of Docker's predefined networks; choose another name"),
        );
    }
    let driver = non_empty(&mut cx, "spec.driver", spec.driver.as_deref(), "bridge");
    check_labels(&mut cx, &spec.labels);
    let mut ipam = Vec::with_capacity(spec.ipam.as_ref().map_or(0, |i| i.config.len()));
    let mut ipam_driver = None;
    if let Some(i) = &spec.ipam {
        ipam_driver = i.driver.clone().filter(|d| d != "default");
        for (n, pool) in i.config.iter().enumerate() {
            let field = |f: &str| format!("spec.ipam.config[{n}].{f}");
            let subnet = cidr(&mut cx, &field("subnet"), &pool.subnet);
            let ip_range = pool
                .ip_range
                .as_deref()
                .and_then(|r| cidr(&mut cx, &field("ipRange"), r));
            let gateway = pool
                .gateway
                .as_deref()
                .and_then(|g| match g.parse::<IpAddr>() {
                    Ok(ip) => Some(ip.to_string()),
                    Err(_) => {
                        cx.err(field("gateway"), format!("{g:?} is not an IP address"));
                        None
                    }
                });
            if let Some(subnet) = subnet {
                ipam.push(IpamPoolConfig {
                    subnet,
                    gateway,
                    ip_range,
                });
            }
        }
    }
    let config = NetworkConfig {
        driver,
        options: spec.options.clone(),
        labels: spec.labels.clone(),
        internal: spec.internal,
        attachable: spec.attachable,
        enable_ipv6: spec.enable_ipv6,
        ipam_driver,
        ipam,
    };
    cx.finish(DesiredNetwork {
        key,
        origin: lm.origin.clone(),
        name,
        config,
    })
}

/// Normalises a `Volume` resource.
pub fn normalize_volume(
    lm: &LoadedManifest,
    volume: &Volume,
) -> Result<DesiredVolume, Vec<ManifestError>> {
    let key = lm.manifest.key();
    let mut cx = Ctx::new(lm);
    let spec = &volume.spec;
    let driver = non_empty(&mut cx, "spec.driver", spec.driver.as_deref(), "local");
    check_labels(&mut cx, &spec.labels);
    let config = VolumeConfig {
        driver,
        driver_options: spec.driver_options.clone(),
        labels: spec.labels.clone(),
    };
    cx.finish(DesiredVolume {
        name: key.object_name(),
        key,
        origin: lm.origin.clone(),
        config,
        reclaim_policy: spec.reclaim_policy,
    })
}

/// The Docker name a container's reference to network or volume `name` means: the declared
/// resource of that name in the container's namespace, else `name` itself.
pub fn resolve_object(objects: &ObjectIndex, kind: Kind, namespace: &str, name: &str) -> String {
    objects
        .get(&ResourceKey::new(kind, namespace, name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// A container's networks, normalised.
pub struct ContainerNetworks {
    /// The network it is created on (`bridge` by default).
    pub network: String,
    /// Aliases on it.
    pub aliases: Vec<String>,
    /// Fixed IPv4 address on it.
    pub ipv4_address: Option<String>,
    /// The others, connected before start.
    pub extra: Vec<NetworkEndpoint>,
}

/// `network` + `networkAliases`, or `networks` (exactly one of the two forms).
pub fn container_networks(
    cx: &mut Ctx,
    spec: &ContainerSpec,
    namespace: &str,
    objects: &ObjectIndex,
) -> ContainerNetworks {
    let resolve = |name: &str| resolve_object(objects, Kind::Network, namespace, name);
    if spec.networks.is_empty() {
        let network = spec
            .network
            .as_deref()
            .map_or_else(|| "bridge".to_string(), resolve);
        if network.is_empty() {
            cx.err(
                "spec.network",
                "must not be empty; omit it for the default bridge network",
            );
        }
        return ContainerNetworks {
            network,
            aliases: spec.network_aliases.clone(),
            ipv4_address: None,
            extra: Vec::new(),
        };
    }
    if spec.network.is_some() {
        cx.err(
            "spec.network",
            "give either network or networks, not both (list every network under networks)",
        );
    }
    if !spec.network_aliases.is_empty() {
        cx.err(
            "spec.networkAliases",
            "with networks, aliases go on each entry (networks[].aliases)",
        );
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut endpoints = Vec::with_capacity(spec.networks.len());
    for (i, n) in spec.networks.iter().enumerate() {
        let field = |f: &str| format!("spec.networks[{i}].{f}");
        let name = resolve(&n.name);
        if n.name.is_empty() {
            cx.err(field("name"), "must not be empty");
        } else if PREDEFINED_NETWORKS.contains(&name.as_str()) || name.starts_with("container:") {
            cx.err(
                field("name"),
                format!("{name:?} is not a user-defined network; several networks must all be user-defined (use network: {name} alone)"),
            );
        } else if let Some(first) = seen.insert(name.clone(), i) {
            cx.err(
                field("name"),
                format!("network {name:?} is already listed at spec.networks[{first}]"),
            );
        }
        for (a, alias) in n.aliases.iter().enumerate() {
            if alias.is_empty() {
                cx.err(
                    format!("spec.networks[{i}].aliases[{a}]"),
                    "must not be empty",
                );
            }
        }
        if n.ipv4_address.is_some() && spec.replicas > 1 {
            cx.err(
                field("ipv4Address"),
                format!(
                    "one fixed address cannot be shared by {} replicas; remove it or use replicas: 1",
                    spec.replicas
                ),
            );
        }
        let ipv4_address = n
            .ipv4_address
            .as_deref()
            .and_then(|ip| match ip.parse::<Ipv4Addr>() {
                Ok(ip) => Some(ip.to_string()),
                Err(_) => {
                    cx.err(
                        field("ipv4Address"),
                        format!("{ip:?} is not an IPv4 address"),
                    );
                    None
                }
            });
        endpoints.push(NetworkEndpoint {
            name,
            aliases: n.aliases.clone(),
            ipv4_address,
        });
    }
    let mut endpoints = endpoints.into_iter();
    let first = endpoints.next().unwrap_or_default();
    ContainerNetworks {
        network: first.name,
        aliases: first.aliases,
        ipv4_address: first.ipv4_address,
        extra: endpoints.collect(),
    }
}

fn non_empty(cx: &mut Ctx, field: &str, value: Option<&str>, default: &str) -> String {
    match value {
        None => default.to_string(),
        Some("") => {
            cx.err(field, format!("must not be empty; omit it for {default}"));
            default.to_string()
        }
        Some(v) => v.to_string(),
    }
}

fn check_labels(cx: &mut Ctx, labels: &BTreeMap<String, String>) {
    for key in labels.keys() {
        if key.is_empty() {
            cx.err("spec.labels", "label keys must not be empty");
        } else if key.starts_with(labels::PREFIX) {
            cx.err(
                format!("spec.labels.{key}"),
                format!(
                    "keys under {:?} are reserved for dockwright",
                    labels::PREFIX
                ),
            );
        }
    }
}

/// A CIDR (`addr/prefix`) in canonical spelling, or an error on `field`.
fn cidr(cx: &mut Ctx, field: &str, text: &str) -> Option<String> {
    let parsed = text.split_once('/').and_then(|(addr, prefix)| {
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then(|| format!("{addr}/{prefix}"))
    });
    if parsed.is_none() {
        cx.err(
            field,
            format!("{text:?} is not a subnet in CIDR form (e.g. 172.28.0.0/16)"),
        );
    }
    parsed
}
