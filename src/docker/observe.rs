//! Observation: the managed containers (one filtered list call), the local images (one list
//! call) and our networks and volumes (two filtered list calls, see `objects`), translated into
//! [`crate::observed`] types. Health and exit code come from the list's status text, never from
//! per-container inspects, so a pass costs four calls at any scale (five when a `Network` or
//! `Volume` resource exists: its users are one more list).

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::models::{ContainerSummary, ImageSummary, PortSummary};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder};

use super::Docker;
use crate::desired::ResourceKey;
use crate::observed::{
    HealthState, ObservedContainer, ObservedImage, ObservedImages, ObservedState, RunState,
};
use crate::{labels, reference, Error};

impl Docker {
    /// One filtered list call: all containers (running or not) labelled
    /// `dockwright.dev/owner=<owner>`.
    pub async fn list_managed(&self, owner: &str) -> Result<Vec<ObservedContainer>, Error> {
        let filters = HashMap::from([("label", vec![format!("{}={owner}", labels::OWNER)])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|source| Error::Docker {
                operation: "list containers".into(),
                source,
            })?;
        let mut containers: Vec<ObservedContainer> =
            list.into_iter().filter_map(observed_container).collect();
        if let Some(adoptions) = &self.adoptions {
            // An unreadable record is an error, not "no records": a container taken over by
            // another source would otherwise look like its old source's again, and be pruned.
            let records = adoptions.load()?;
            let mut stale = false;
            for (id, source) in &records {
                match containers.iter_mut().find(|c| &c.id == id) {
                    Some(c) => c.source = Some(source.clone()),
                    None => stale = true,
                }
            }
            if stale {
                let alive = |id: &str| containers.iter().any(|c| c.id == id);
                if let Err(error) = adoptions.forget_except(&alive) {
                    tracing::warn!(%error, "could not drop the adoption records of removed containers");
                }
            }
        }
        Ok(containers)
    }

    /// One list call: every local image's tags and digests, canonicalised with
    /// [`crate::reference`] (`<none>` and unparsable ones skipped), mapped to the image ID.
    pub async fn list_images(&self) -> Result<ObservedImages, Error> {
        let options = ListImagesOptionsBuilder::new().all(false).build();
        let list = self
            .client
            .list_images(Some(options))
            .await
            .map_err(|source| Error::Docker {
                operation: "list images".into(),
                source,
            })?;
        Ok(observed_images(list))
    }

    /// [`Docker::list_managed`], [`Docker::list_images`] and [`Docker::list_objects`], run
    /// concurrently.
    pub async fn observe(&self, owner: &str) -> Result<ObservedState, Error> {
        let (containers, images, (networks, volumes)) = tokio::try_join!(
            self.list_managed(owner),
            self.list_images(),
            self.list_objects(owner)
        )?;
        Ok(ObservedState {
            containers,
            images,
            networks,
            volumes,
        })
    }

    /// Number of CPUs of the daemon's host (`docker info`); used to size concurrency, so it is
    /// asked only when there is work.
    pub async fn daemon_cpus(&self) -> Result<usize, Error> {
        let info = self.client.info().await.map_err(|source| Error::Docker {
            operation: "info".into(),
            source,
        })?;
        Ok(info
            .ncpu
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1)
            .max(1))
    }
}

/// Daemon operations are mostly waiting on containerd and the kernel, not on CPU, so the
/// executor runs a few per daemon CPU; bounded so a large host does not get a thundering herd.
pub fn concurrency_for_cpus(cpus: usize) -> usize {
    (cpus * 4).clamp(4, 32)
}

#[async_trait]
impl crate::converge::Observe for Docker {
    async fn observe(&self, owner: &str) -> crate::Result<ObservedState> {
        Docker::observe(self, owner).await
    }

    async fn default_concurrency(&self) -> usize {
        match self.daemon_cpus().await {
            Ok(cpus) => concurrency_for_cpus(cpus),
            Err(error) => {
                tracing::warn!(%error, "could not ask the daemon for its CPU count; using 8");
                8
            }
        }
    }
}

fn observed_container(c: ContainerSummary) -> Option<ObservedContainer> {
    let id = c.id?;
    let name = primary_name(c.names.as_deref().unwrap_or_default());
    let labels = c.labels.unwrap_or_default();
    let removing = c.state == Some(bollard::models::ContainerSummaryStateEnum::REMOVING);
    // A removal that already gave up its name is no replica and nothing left to remove.
    // Docker 20.10 can keep one listed for good ("Removal In Progress", no name, inspect says
    // no such container), which no remove call clears. (One still holding its name is kept:
    // its replica waits for the daemon to finish.)
    if is_build_step(&labels) || (removing && name.is_none()) {
        return None;
    }
    let name = name.unwrap_or_else(|| id.clone());
    let status = c.status.unwrap_or_default();
    let state_text = c.state.map(|s| s.to_string()).unwrap_or_default();
    let state = RunState::parse(&state_text).unwrap_or_else(|| {
        // "stopping" exists only in newer APIs; it is still running.
        if state_text == "stopping" {
            RunState::Running
        } else {
            tracing::warn!(container = %name, state = %state_text, "unknown container state; treating it as created");
            RunState::Created
        }
    });
    let mut ports: Vec<String> = c
        .ports
        .unwrap_or_default()
        .iter()
        .map(format_port)
        .collect();
    ports.sort();
    ports.dedup();
    Some(ObservedContainer {
        resource: labels
            .get(labels::RESOURCE)
            .and_then(|l| ResourceKey::parse(l)),
        replica: labels.get(labels::REPLICA).and_then(|r| r.parse().ok()),
        spec_hash: labels.get(labels::SPEC_HASH).cloned(),
        spec: labels.get(labels::SPEC).cloned(),
        source: labels.get(labels::SOURCE).cloned(),
        health: health_from_status(&status),
        exit_code: if state == RunState::Exited {
            exit_code_from_status(&status)
        } else {
            None
        },
        state,
        image_id: c.image_id.unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        ports,
        created: c.created.unwrap_or_default(),
        status,
        name,
        id,
    })
}

/// A container the daemon made for a step of one of our builds, not one dockwright created:
/// the classic builder turns the build's labels into `LABEL` steps, each run in a container
/// made from the config built so far, so such a container carries the build hash and maybe
/// the owner (what the owner filter finds) but neither the `Image` resource yet nor a spec
/// hash, which only dockwright's own containers have. Without a resource label it would
/// count as an orphan, and `--prune` would remove it under the build (or race the daemon's
/// own cleanup after a killed build). The daemon removes it when the step ends.
fn is_build_step(labels: &HashMap<String, String>) -> bool {
    labels.contains_key(labels::BUILD_HASH) && !labels.contains_key(labels::SPEC_HASH)
}

/// The container's own name: `/web`, not a legacy link alias like `/other/web`.
fn primary_name(names: &[String]) -> Option<String> {
    names
        .iter()
        .find(|n| n.trim_start_matches('/').split('/').count() == 1)
        .or(names.first())
        .map(|n| n.trim_start_matches('/').to_string())
}

/// Health from the list's status text: `Up 3 minutes (healthy)`, `(unhealthy)`,
/// `(health: starting)`.
pub(crate) fn health_from_status(status: &str) -> Option<HealthState> {
    if status.contains("(healthy)") {
        Some(HealthState::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(HealthState::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(HealthState::Starting)
    } else {
        None
    }
}

/// Exit code from `Exited (3) 2 seconds ago`.
pub(crate) fn exit_code_from_status(status: &str) -> Option<i64> {
    let rest = status.trim_start().strip_prefix("Exited (")?;
    let end = rest.find(')')?;
    rest[..end].trim().parse().ok()
}

/// `hostIP:hostPort->containerPort/proto` for published ports (IPv6 hosts in brackets),
/// `containerPort/proto` for exposed-only ones.
pub(crate) fn format_port(p: &PortSummary) -> String {
    let proto = p
        .typ
        .map(|t| t.to_string())
        .unwrap_or_else(|| "tcp".to_string());
    match p.public_port {
        Some(public) => {
            let ip = p.ip.as_deref().unwrap_or("0.0.0.0");
            let ip = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            format!("{ip}:{public}->{}/{proto}", p.private_port)
        }
        None => format!("{}/{proto}", p.private_port),
    }
}

fn observed_images(list: Vec<ImageSummary>) -> ObservedImages {
    let mut images = ObservedImages::default();
    for image in list {
        let mut observed = ObservedImage {
            id: image.id.clone(),
            owner: image.labels.get(labels::OWNER).cloned(),
            resource: image
                .labels
                .get(labels::RESOURCE)
                .and_then(|l| ResourceKey::parse(l)),
            build_hash: image.labels.get(labels::BUILD_HASH).cloned(),
            source: image.labels.get(labels::SOURCE).cloned(),
            ..Default::default()
        };
        for (names, is_digest) in [(&image.repo_tags, false), (&image.repo_digests, true)] {
            for name in names {
                if name.starts_with("<none>") {
                    continue;
                }
                match reference::canonicalize(name) {
                    Ok(canonical) => {
                        images
                            .by_reference
                            .insert(canonical.clone(), image.id.clone());
                        if is_digest {
                            observed.digests.push(canonical);
                        } else {
                            observed.tags.push(canonical);
                        }
                    }
                    Err(error) => tracing::debug!(%error, "skipping unparsable image name"),
                }
            }
        }
        images.by_id.insert(image.id.clone(), observed);
    }
    images
}

#[cfg(test)]
mod tests {
    use bollard::models::PortSummaryTypeEnum;

    use super::*;

    #[test]
    fn health_is_read_from_status_text() {
        assert_eq!(
            health_from_status("Up 3 minutes (healthy)"),
            Some(HealthState::Healthy)
        );
        assert_eq!(
            health_from_status("Up 5 seconds (unhealthy)"),
            Some(HealthState::Unhealthy)
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            Some(HealthState::Starting)
        );
        assert_eq!(health_from_status("Up 2 hours"), None);
        assert_eq!(health_from_status("Exited (0) 1 second ago"), None);
    }

    #[test]
    fn exit_code_is_read_from_status_text() {
        assert_eq!(exit_code_from_status("Exited (3) 2 seconds ago"), Some(3));
        assert_eq!(
            exit_code_from_status("Exited (137) About a minute ago"),
            Some(137)
        );
        assert_eq!(exit_code_from_status("Up 2 seconds"), None);
        assert_eq!(exit_code_from_status("Created"), None);
    }

    #[test]
    fn ports_are_formatted_like_docker_ps() {
        let port = |ip: Option<&str>, public: Option<u16>, typ| PortSummary {
            ip: ip.map(str::to_string),
            private_port: 8080,
            public_port: public,
            typ: Some(typ),
        };
        assert_eq!(
            format_port(&port(Some("0.0.0.0"), Some(3000), PortSummaryTypeEnum::TCP)),
            "0.0.0.0:3000->8080/tcp"
        );
        assert_eq!(
            format_port(&port(Some("::"), Some(3000), PortSummaryTypeEnum::UDP)),
            "[::]:3000->8080/udp"
        );
        assert_eq!(
            format_port(&port(None, None, PortSummaryTypeEnum::TCP)),
            "8080/tcp"
        );
    }

    #[test]
    fn images_map_every_canonical_name_to_the_id() {
        let image = ImageSummary {
            id: "sha256:aaa".into(),
            repo_tags: vec![
                "busybox:latest".into(),
                "127.0.0.1:5000/t/web:1".into(),
                "<none>:<none>".into(),
            ],
            repo_digests: vec![
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                    .into(),
                "<none>@<none>".into(),
                "Not A Valid:Ref".into(),
            ],
            ..Default::default()
        };
        let images = observed_images(vec![image]);
        assert_eq!(
            images.resolve("docker.io/library/busybox:latest"),
            Some("sha256:aaa")
        );
        assert_eq!(images.resolve("127.0.0.1:5000/t/web:1"), Some("sha256:aaa"));
        assert_eq!(
            images.resolve("docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
            Some("sha256:aaa")
        );
        assert_eq!(images.by_reference.len(), 3);
        let observed = &images.by_id["sha256:aaa"];
        assert_eq!(observed.tags.len(), 2);
        assert!(observed.has_digest(
            "docker.io/library/busybox",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ));
    }

    #[test]
    fn containers_of_build_steps_are_not_observed() {
        let label_map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let container = |pairs: &[(&str, &str)]| ContainerSummary {
            id: Some("c1".into()),
            names: Some(vec!["/eager_turing".into()]),
            state: Some(bollard::models::ContainerSummaryStateEnum::CREATED),
            labels: Some(label_map(pairs)),
            ..Default::default()
        };
        // A `LABEL` step's container after the build hash and owner steps, before the
        // resource one: dropped, not taken for an orphan of the owner.
        let step = container(&[(labels::BUILD_HASH, "sha256:1"), (labels::OWNER, "o")]);
        assert!(observed_container(step).is_none());
        // A managed container created from a built image inherits the image's labels, the
        // build hash too; its spec hash says it is ours.
        let managed = container(&[
            (labels::BUILD_HASH, "sha256:1"),
            (labels::OWNER, "o"),
            (labels::RESOURCE, "Container/default/web"),
            (labels::SPEC_HASH, "sha256:2"),
        ]);
        let observed = observed_container(managed.clone()).expect("a managed container");
        // A finished removal Docker 20.10 keeps listing (no name, state "removing"): dropped;
        // one still holding its name is seen.
        let removing = Some(bollard::models::ContainerSummaryStateEnum::REMOVING);
        let ghost = ContainerSummary {
            names: Some(Vec::new()),
            state: removing,
            ..managed.clone()
        };
        assert!(observed_container(ghost).is_none());
        let named = ContainerSummary {
            state: removing,
            ..managed
        };
        assert_eq!(
            observed_container(named).map(|c| c.name).as_deref(),
            Some("eager_turing")
        );
        assert_eq!(
            observed.resource.map(|r| r.to_string()).as_deref(),
            Some("Container/default/web")
        );
        // Without resource label nor build hash: still observed (pruned as unreadable).
        assert!(observed_container(container(&[(labels::OWNER, "o")])).is_some());
    }

    #[test]
    fn primary_name_skips_link_aliases() {
        assert_eq!(
            primary_name(&["/other/web".into(), "/web".into()]).as_deref(),
            Some("web")
        );
        assert_eq!(primary_name(&["/db".into()]).as_deref(), Some("db"));
        assert_eq!(primary_name(&[]), None);
    }

    #[test]
    fn concurrency_scales_with_cpus_within_bounds() {
        assert_eq!(concurrency_for_cpus(1), 4);
        assert_eq!(concurrency_for_cpus(2), 8);
        assert_eq!(concurrency_for_cpus(64), 32);
    }
}
