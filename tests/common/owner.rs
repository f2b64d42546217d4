//! Per-test owners: each test runs dockwright (or creates objects) under its own owner name and
//! everything carrying that owner label is removed when the guard drops, even when the test
//! panics. Owner names start with `dwtest-`, which CI's final sweep also removes.

use std::collections::HashMap;

use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};

/// Prefix of every test owner name (`scripts/cleanup-test-resources.sh` sweeps it).
pub const OWNER_PREFIX: &str = "dwtest-";

/// A unique owner name for one test; on drop, removes every container, network, volume and
/// image labelled `dockwright.dev/owner=<name>`. The test owns the guard; nothing else reads it.
#[derive(Debug)]
pub struct TestOwner {
    name: String,
}

impl TestOwner {
    /// `dwtest-<prefix>-<random>`; use the test's name as the prefix.
    pub fn new(prefix: &str) -> Self {
        Self {
            name: super::unique(&format!("{OWNER_PREFIX}{prefix}")),
        }
    }

    /// The owner name, for `--owner` or a label value.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `dockwright.dev/owner=<name>`, the daemon filter for this owner's objects.
    pub fn label_filter(&self) -> String {
        format!("{}={}", dockwright::labels::OWNER, self.name)
    }

    /// The owner label as a map, for objects a test creates directly.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(dockwright::labels::OWNER.to_string(), self.name.clone())])
    }

    /// Remove everything this owner has, now. Runs on its own thread and runtime, so it works
    /// from synchronous code, from inside a runtime and from `Drop` alike. Returns what could
    /// not be removed.
    pub fn cleanup(&self) -> Vec<String> {
        let filter = self.label_filter();
        std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(remove_owned(filter)),
                Err(e) => vec![format!("build a runtime: {e}")],
            }
        })
        .join()
        .unwrap_or_else(|_| vec!["cleanup thread panicked".into()])
    }
}

impl Drop for TestOwner {
    fn drop(&mut self) {
        for problem in self.cleanup() {
            eprintln!("test owner {}: cleanup: {problem}", self.name);
        }
    }
}

async fn remove_owned(filter: String) -> Vec<String> {
    let mut problems = Vec::new();
    let docker = match bollard::Docker::connect_with_defaults() {
        Ok(d) => match d.negotiate_version().await {
            Ok(d) => d,
            Err(e) => return vec![format!("negotiate the API version: {e}")],
        },
        Err(e) => return vec![format!("connect to the daemon: {e}")],
    };
    let filters = HashMap::from([("label".to_string(), vec![filter])]);

    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await;
    match containers {
        Ok(list) => {
            for id in list.into_iter().filter_map(|c| c.id) {
                let opts = RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build();
                if let Err(e) = docker.remove_container(&id, Some(opts)).await {
                    problems.push(format!("container {id}: {e}"));
                }
            }
        }
        Err(e) => problems.push(format!("list containers: {e}")),
    }

    match docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
    {
        Ok(list) => {
            for id in list.into_iter().filter_map(|n| n.id) {
                // A container removed a moment ago may still hold its endpoint.
                let mut attempt = 0;
                loop {
                    match docker.remove_network(&id).await {
                        Ok(()) => break,
                        Err(_) if attempt < 10 => {
                            attempt += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            problems.push(format!("network {id}: {e}"));
                            break;
                        }
                    }
                }
            }
        }
        Err(e) => problems.push(format!("list networks: {e}")),
    }

    match docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
    {
        Ok(list) => {
            for name in list.volumes.unwrap_or_default().into_iter().map(|v| v.name) {
                let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
                if let Err(e) = docker.remove_volume(&name, Some(opts)).await {
                    problems.push(format!("volume {name}: {e}"));
                }
            }
        }
        Err(e) => problems.push(format!("list volumes: {e}")),
    }

    match docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
    {
        Ok(list) => {
            for image in list {
                let opts = RemoveImageOptionsBuilder::default().force(true).build();
                match docker.remove_image(&image.id, Some(opts), None).await {
                    // Already gone with a parent removed before it.
                    Ok(_)
                    | Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => {}
                    Err(e) => problems.push(format!("image {}: {e}", image.id)),
                }
            }
        }
        Err(e) => problems.push(format!("list images: {e}")),
    }
    problems
}
