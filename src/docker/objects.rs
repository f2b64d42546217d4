//! Declared networks and volumes (`Network`/`Volume` resources) on the daemon: observed as
//! two label-filtered list calls plus, when any is ours, one list of every container (any
//! owner) to know who uses them; created with their labels; a changed network recreated
//! with our containers moved over; removed when the planner says so. Request bodies carry
//! only fields an API-1.41 daemon knows (no `EnableIPv4`, no `CheckDuplicate`).

use std::collections::HashMap;

use bollard::models::{
    ContainerSummary, EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};

use super::errors::{action_error, is_not_found, status_of};
use super::Docker;
use crate::desired::{NetworkConfig, NetworkEndpoint};
use crate::execute::{ActionError, ErrorKind};
use crate::labels;
use crate::observed::{ObjectUser, ObservedObject};
use crate::plan::{NetworkCreate, VolumeCreate};
use crate::Error;

impl Docker {
    /// The networks and volumes labelled with `owner`, with their users when any exists.
    pub async fn list_objects(
        &self,
        owner: &str,
    ) -> Result<(Vec<ObservedObject>, Vec<ObservedObject>), Error> {
        let filters = HashMap::from([("label", vec![format!("{}={owner}", labels::OWNER)])]);
        let networks = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let volumes = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let (networks, volumes) = tokio::try_join!(
            async {
                self.client
                    .list_networks(Some(networks))
                    .await
                    .map_err(|source| Error::Docker {
                        operation: "list networks".into(),
                        source,
                    })
            },
            async {
                self.client
                    .list_volumes(Some(volumes))
                    .await
                    .map_err(|source| Error::Docker {
                        operation: "list volumes".into(),
                        source,
                    })
            }
        )?;
        let mut networks: Vec<ObservedObject> = networks
            .into_iter()
            .filter_map(|n| {
                let labels = n.labels.unwrap_or_default();
                Some(object(n.id?, n.name?, &labels))
            })
            .collect();
        let mut volumes: Vec<ObservedObject> = volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| object(v.name.clone(), v.name, &v.labels))
            .collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        // Users matter for the objects of `Network`/`Volume` resources (recreate and prune
        // decisions); ones created on demand for a container alone cost no extra call.
        if !networks
            .iter()
            .chain(&volumes)
            .any(|o| o.resource.is_some())
        {
            return Ok((networks, volumes));
        }
        let options = ListContainersOptionsBuilder::new().all(true).build();
        // Unknown users count as "in use": nothing is removed or recreated on a failed list.
        match self.client.list_containers(Some(options)).await {
            Ok(list) => {
                for n in &mut networks {
                    n.users = Some(users(&list, |c| attached(c, &n.name)));
                }
                for v in &mut volumes {
                    v.users = Some(users(&list, |c| mounts(c, &v.name)));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not list the users of our networks and volumes")
            }
        }
        Ok((networks, volumes))
    }
}

fn object(id: String, name: String, labels: &HashMap<String, String>) -> ObservedObject {
    ObservedObject::from_labels(id, name, |k| labels.get(k).cloned())
}

fn users(list: &[ContainerSummary], uses: impl Fn(&ContainerSummary) -> bool) -> Vec<ObjectUser> {
    list.iter()
        .filter(|c| uses(c))
        .filter_map(|c| {
            let id = c.id.clone()?;
            let name = c
                .names
                .iter()
                .flatten()
                .next()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_else(|| id.clone());
            let owner = c
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::OWNER))
                .cloned();
            Some(ObjectUser { id, name, owner })
        })
        .collect()
}

fn attached(c: &ContainerSummary, network: &str) -> bool {
    c.network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref())
        .is_some_and(|n| n.contains_key(network))
}

fn mounts(c: &ContainerSummary, volume: &str) -> bool {
    c.mounts
        .iter()
        .flatten()
        .any(|m| m.name.as_deref() == Some(volume))
}

/// The create request of a declared network, limited to API-1.41 fields.
pub fn network_request(spec: &NetworkCreate) -> NetworkCreateRequest {
    let c: &NetworkConfig = &spec.config;
    let ipam = (c.ipam_driver.is_some() || !c.ipam.is_empty()).then(|| Ipam {
        driver: c.ipam_driver.clone(),
        config: Some(
            c.ipam
                .iter()
                .map(|p| IpamConfig {
                    subnet: Some(p.subnet.clone()),
                    gateway: p.gateway.clone(),
                    ip_range: p.ip_range.clone(),
                    auxiliary_addresses: None,
                })
                .collect(),
        ),
        options: None,
    });
    NetworkCreateRequest {
        name: spec.name.clone(),
        driver: Some(c.driver.clone()),
        internal: Some(c.internal),
        attachable: Some(c.attachable),
        enable_ipv6: Some(c.enable_ipv6),
        options: (!c.options.is_empty()).then(|| {
            c.options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        ipam,
        ..Default::default()
    }
}

/// Creates a declared network. One of that name already there is an error naming its owner
/// (API 1.41 would otherwise create a second network of the same name).
pub(crate) async fn create_network(
    docker: &Docker,
    owner: &str,
    spec: &NetworkCreate,
) -> Result<(), ActionError> {
    let name = spec.name.as_str();
    match docker.client.inspect_network(name, None).await {
        Ok(existing) => {
            let labels = existing.labels.unwrap_or_default();
            let holder = labels
                .get(labels::OWNER)
                .map_or("nobody (created outside dockwright)".to_string(), |o| {
                    format!("owner {o:?}")
                });
            let ours_already = labels.get(labels::OWNER).map(String::as_str) == Some(owner)
                && labels.get(labels::SPEC_HASH) == spec.labels.get(labels::SPEC_HASH);
            if ours_already {
                return Ok(());
            }
            return Err(ActionError::new(
                ErrorKind::Conflict,
                format!("create network {name}: a network of that name already exists, held by {holder}; remove it or rename the Network"),
            ));
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(action_error("inspect network", name, &e)),
    }
    let created = docker
        .client
        .create_network(network_request(spec))
        .await
        .map_err(|e| action_error("create network", name, &e))?;
    tracing::info!(network = name, id = %created.id, "network created");
    Ok(())
}

/// Recreates a network of ours with a new spec, moving the containers on it (all ours, or
/// nothing is done) over: each is disconnected (its aliases and fixed address remembered), the network removed and created
/// anew, and each connected again as it was.
pub(crate) async fn recreate_network(
    docker: &Docker,
    owner: &str,
    id: &str,
    spec: &NetworkCreate,
) -> Result<(), ActionError> {
    let name = spec.name.as_str();
    // Listed again now (the plan's list may be stale or unknown): another owner's
    // container on the network stops everything.
    let filters = HashMap::from([("network", vec![id.to_string()])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let attached = docker
        .client
        .list_containers(Some(options))
        .await
        .map_err(|e| action_error("list the containers on network", name, &e))?;
    let foreign = users(&attached, |_| true)
        .into_iter()
        .filter(|u| u.owner.as_deref() != Some(owner))
        .map(|u| u.name)
        .collect::<Vec<_>>();
    if !foreign.is_empty() {
        return Err(ActionError::new(
            ErrorKind::Conflict,
            format!("recreate network {name}: containers of other owners use it: {}; disconnect them or leave the spec as it is", foreign.join(", ")),
        ));
    }
    let containers: Vec<String> = attached.into_iter().filter_map(|c| c.id).collect();
    let mut moved: Vec<(String, NetworkEndpoint)> = Vec::with_capacity(containers.len());
    for container in &containers {
        let inspected = match docker.client.inspect_container(container, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(action_error("inspect container", container, &e)),
        };
        let endpoint = inspected
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(name))
            .unwrap_or_default();
        let short_id = container.get(..12).unwrap_or(container);
        let aliases = endpoint
            .aliases
            .unwrap_or_default()
            .into_iter()
            // The daemon adds the short ID itself.
            .filter(|a| a != short_id)
            .collect();
        let ipv4_address = endpoint
            .ipam_config
            .and_then(|c| c.ipv4_address)
            .filter(|a| !a.is_empty());
        let request = NetworkDisconnectRequest {
            container: container.clone(),
            force: Some(true),
        };
        match docker.client.disconnect_network(id, request).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(action_error("disconnect from network", name, &e)),
        }
        moved.push((
            container.clone(),
            NetworkEndpoint {
                name: name.to_string(),
                aliases,
                ipv4_address,
            },
        ));
    }
    match docker.client.remove_network(id).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(action_error("remove network", name, &e)),
    }
    docker
        .client
        .create_network(network_request(spec))
        .await
        .map_err(|e| action_error("create network", name, &e))?;
    tracing::info!(network = name, moved = moved.len(), "network recreated");
    for (container, endpoint) in &moved {
        connect(docker, container, endpoint).await?;
    }
    Ok(())
}

/// Connects a container to a network with its aliases and fixed address.
pub(crate) async fn connect(
    docker: &Docker,
    container: &str,
    endpoint: &NetworkEndpoint,
) -> Result<(), ActionError> {
    let request = NetworkConnectRequest {
        container: container.to_string(),
        endpoint_config: Some(endpoint_settings(
            &endpoint.aliases,
            endpoint.ipv4_address.as_deref(),
        )),
    };
    match docker.client.connect_network(&endpoint.name, request).await {
        Ok(()) => Ok(()),
        // Connected already (a create adopted after a crash): as wanted.
        Err(e) if super::errors::daemon_message(&e).contains("already exists") => Ok(()),
        Err(e) => Err(action_error(
            &format!("connect {container} to network"),
            &endpoint.name,
            &e,
        )),
    }
}

/// Endpoint settings with only the aliases and the IPv4 address set.
pub(crate) fn endpoint_settings(aliases: &[String], ipv4: Option<&str>) -> EndpointSettings {
    EndpointSettings {
        aliases: (!aliases.is_empty()).then(|| aliases.to_vec()),
        ipam_config: ipv4.map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Removes a network of ours (gone already counts as done).
pub(crate) async fn remove_network(
    docker: &Docker,
    id: &str,
    name: &str,
) -> Result<(), ActionError> {
    match docker.client.remove_network(id).await {
        Ok(()) => {
            tracing::info!(network = name, "network removed");
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(action_error("remove network", name, &e)),
    }
}

/// Creates a declared volume. One of that name not created for the same spec by this owner
/// is an error (Docker's volume create would silently return the existing one).
pub(crate) async fn create_volume(
    docker: &Docker,
    owner: &str,
    spec: &VolumeCreate,
) -> Result<(), ActionError> {
    let name = spec.name.as_str();
    match docker.client.inspect_volume(name).await {
        Ok(existing) => {
            let labels = existing.labels;
            if labels.get(labels::OWNER).map(String::as_str) == Some(owner)
                && labels.get(labels::SPEC_HASH) == spec.labels.get(labels::SPEC_HASH)
            {
                return Ok(());
            }
            let holder = labels
                .get(labels::OWNER)
                .map_or("nobody (created outside dockwright)".to_string(), |o| {
                    format!("owner {o:?}")
                });
            return Err(ActionError::new(
                ErrorKind::Conflict,
                format!("create volume {name}: a volume of that name already exists, held by {holder}; dockwright does not take over data it did not create: remove it or rename the Volume"),
            ));
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(action_error("inspect volume", name, &e)),
    }
    let request = VolumeCreateRequest {
        name: Some(name.to_string()),
        driver: Some(spec.config.driver.clone()),
        driver_opts: (!spec.config.driver_options.is_empty()).then(|| {
            spec.config
                .driver_options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        cluster_volume_spec: None,
    };
    docker
        .client
        .create_volume(request)
        .await
        .map_err(|e| action_error("create volume", name, &e))?;
    tracing::info!(volume = name, "volume created");
    Ok(())
}

/// Removes a volume of ours and its data (gone already counts as done; in use is refused by
/// the daemon, never forced).
pub(crate) async fn remove_volume(docker: &Docker, name: &str) -> Result<(), ActionError> {
    let options = RemoveVolumeOptionsBuilder::new().force(false).build();
    match docker.client.remove_volume(name, Some(options)).await {
        Ok(()) => {
            tracing::info!(volume = name, "volume removed with its data");
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) if status_of(&e) == Some(409) => Err(ActionError::new(
            ErrorKind::Conflict,
            format!("remove volume {name}: a container started using it meanwhile; it is kept"),
        )),
        Err(e) => Err(action_error("remove volume", name, &e)),
    }
}
