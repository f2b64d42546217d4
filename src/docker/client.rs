//! The connection to the daemon: honours `DOCKER_HOST`, negotiates the API version, and counts
//! every request by operation. Counting hooks bollard's request modifier, so no call path can
//! forget to count: the numbers are exactly what went over the wire.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// Where bollard looks when `DOCKER_HOST` is unset.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Response-head timeout of ordinary requests. Streams (pull, logs) are not limited by it; a
/// stop gets its own longer limit (see the runner).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A Docker daemon client: the bollard client plus request counters.
///
/// Owned by the CLI/agent, shared by the observer and the [`super::DockerRunner`] (cloning is
/// cheap and clones share the counters). Readers of [`Docker::request_counts`] are tests, the
/// benchmark and the metrics module.
#[derive(Clone, Debug)]
pub struct Docker {
    pub(crate) client: bollard::Docker,
    host: String,
    counters: Arc<Counters>,
    /// Where containers adopted or taken over without a recreate are recorded (read over
    /// their source label by every observation); `None` keeps no records.
    pub(crate) adoptions: Option<Arc<crate::adoptions::Adoptions>>,
}

impl Docker {
    /// Connects honouring `DOCKER_HOST` (`unix://`, `tcp://`, `http://`; default
    /// `unix:///var/run/docker.sock`) and negotiates the API version with the daemon (one
    /// `version` request). The error names the host and says what to check.
    pub async fn connect() -> Result<Self, Error> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        Self::connect_to(&host).await
    }

    /// Connects to an explicit host address (same schemes as [`Docker::connect`]).
    pub async fn connect_to(host: &str) -> Result<Self, Error> {
        let fail = |source| Error::Docker {
            operation: format!(
                "connect to {host} (check that the Docker daemon is running, that DOCKER_HOST \
                 points at it and that this user may use its socket)"
            ),
            source,
        };
        let counters = Arc::new(Counters::default());
        let hook = Arc::clone(&counters);
        let client = bollard::Docker::connect_with_host(host)
            .map_err(fail)?
            .with_timeout(REQUEST_TIMEOUT)
            .with_request_modifier(move |request| {
                hook.count(operation_of(
                    request.method().as_str(),
                    request.uri().path(),
                ));
                request
            });
        let client = client.negotiate_version().await.map_err(fail)?;
        Ok(Self {
            client,
            host: host.to_string(),
            counters,
            adoptions: None,
        })
    }

    /// Reads and writes adoption records in `adoptions` (see [`crate::adoptions`]): the
    /// owner's state directory, shared by its `apply` runs and agents.
    pub fn with_adoptions(mut self, adoptions: Arc<crate::adoptions::Adoptions>) -> Self {
        self.adoptions = Some(adoptions);
        self
    }

    /// The adoption records, when kept.
    pub fn adoptions(&self) -> Option<&Arc<crate::adoptions::Adoptions>> {
        self.adoptions.as_ref()
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let v = self.client.client_version();
        format!("{}.{}", v.major_version, v.minor_version)
    }

    /// The address connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Number of daemon API requests made by this client (and its clones) so far, by
    /// operation name (`container_list`, `image_pull`, ...; see [`OPERATIONS`]). Operations
    /// never used are left out.
    pub fn request_counts(&self) -> BTreeMap<&'static str, u64> {
        self.counters.snapshot()
    }

    /// Total number of daemon API requests so far.
    pub fn request_total(&self) -> u64 {
        self.counters.snapshot().values().sum()
    }

    /// The same client with a different response-head timeout (shares the counters).
    pub(crate) fn client_with_timeout(&self, timeout: Duration) -> bollard::Docker {
        self.client.clone().with_timeout(timeout)
    }
}

/// Every operation name [`Docker::request_counts`] can report.
pub const OPERATIONS: &[&str] = &[
    "ping",
    "version",
    "info",
    "events",
    "container_list",
    "container_create",
    "container_inspect",
    "container_start",
    "container_stop",
    "container_remove",
    "container_rename",
    "container_wait",
    "container_logs",
    "container_archive_put",
    "container_archive_get",
    "container_exec",
    "exec_start",
    "exec_inspect",
    "image_list",
    "image_pull",
    "image_build",
    "image_inspect",
    "image_tag",
    "image_push",
    "image_remove",
    "network_list",
    "network_inspect",
    "network_create",
    "network_remove",
    "network_connect",
    "network_disconnect",
    "volume_list",
    "volume_inspect",
    "volume_create",
    "volume_remove",
    "other",
];

#[derive(Debug)]
struct Counters([AtomicU64; OPERATIONS.len()]);

impl Default for Counters {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Counters {
    fn count(&self, operation: &'static str) {
        let index = OPERATIONS
            .iter()
            .position(|o| *o == operation)
            .unwrap_or(OPERATIONS.len() - 1);
        self.0[index].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        OPERATIONS
            .iter()
            .zip(self.0.iter())
            .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Names the operation of a request from its method and URL path (with or without the
/// `/v1.xx` prefix). Image names may contain `/`, so image paths match on their ends.
pub(crate) fn operation_of(method: &str, path: &str) -> &'static str {
    let path = strip_version(path);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) => "ping",
        ("GET", ["version"]) => "version",
        ("GET", ["info"]) => "info",
        ("GET", ["events"]) => "events",
        ("GET", ["containers", "json"]) => "container_list",
        ("POST", ["containers", "create"]) => "container_create",
        ("GET", ["containers", _, "json"]) => "container_inspect",
        ("POST", ["containers", _, "start"]) => "container_start",
        ("POST", ["containers", _, "stop"]) => "container_stop",
        ("DELETE", ["containers", _]) => "container_remove",
        ("POST", ["containers", _, "rename"]) => "container_rename",
        ("POST", ["containers", _, "wait"]) => "container_wait",
        ("GET", ["containers", _, "logs"]) => "container_logs",
        ("PUT", ["containers", _, "archive"]) => "container_archive_put",
        ("GET" | "HEAD", ["containers", _, "archive"]) => "container_archive_get",
        ("POST", ["containers", _, "exec"]) => "container_exec",
        ("POST", ["exec", _, "start"]) => "exec_start",
        ("GET", ["exec", _, "json"]) => "exec_inspect",
        ("GET", ["images", "json"]) => "image_list",
        ("POST", ["images", "create"]) => "image_pull",
        ("POST", ["build"]) => "image_build",
        ("GET", ["images", .., "json"]) => "image_inspect",
        ("POST", ["images", .., "tag"]) => "image_tag",
        ("POST", ["images", .., "push"]) => "image_push",
        ("DELETE", ["images", ..]) => "image_remove",
        ("GET", ["networks"]) => "network_list",
        ("POST", ["networks", "create"]) => "network_create",
        ("POST", ["networks", _, "connect"]) => "network_connect",
        ("POST", ["networks", _, "disconnect"]) => "network_disconnect",
        ("GET", ["networks", _]) => "network_inspect",
        ("DELETE", ["networks", _]) => "network_remove",
        ("GET", ["volumes"]) => "volume_list",
        ("POST", ["volumes", "create"]) => "volume_create",
        ("GET", ["volumes", _]) => "volume_inspect",
        ("DELETE", ["volumes", _]) => "volume_remove",
        _ => "other",
    }
}

fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return &rest[end..];
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_from_method_and_path() {
        let cases = [
            ("GET", "/v1.41/containers/json", "container_list"),
            ("GET", "/containers/json", "container_list"),
            ("GET", "/v1.41/version", "version"),
            ("POST", "/v1.41/containers/create", "container_create"),
            ("GET", "/v1.41/containers/abc/json", "container_inspect"),
            ("POST", "/v1.41/containers/web-1/start", "container_start"),
            ("DELETE", "/v1.41/containers/abc", "container_remove"),
            (
                "PUT",
                "/v1.41/containers/abc/archive",
                "container_archive_put",
            ),
            ("GET", "/v1.41/images/json", "image_list"),
            ("POST", "/v1.41/images/create", "image_pull"),
            (
                "GET",
                "/v1.41/images/127.0.0.1:5000/team/web:1/json",
                "image_inspect",
            ),
            (
                "DELETE",
                "/v1.41/images/docker.io/library/busybox:latest",
                "image_remove",
            ),
            ("POST", "/v1.41/networks/create", "network_create"),
            ("GET", "/v1.41/networks/front", "network_inspect"),
            ("GET", "/v1.41/networks", "network_list"),
            ("POST", "/v1.41/volumes/create", "volume_create"),
            ("GET", "/v1.41/volumes/data", "volume_inspect"),
            ("GET", "/v1.41/info", "info"),
            ("PATCH", "/v1.41/whatever", "other"),
        ];
        for (method, path, want) in cases {
            assert_eq!(operation_of(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn every_classified_operation_is_listed() {
        let counters = Counters::default();
        counters.count("container_list");
        counters.count("container_list");
        counters.count("no-such-operation");
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.get("container_list"), Some(&2));
        assert_eq!(snapshot.get("other"), Some(&1));
        assert_eq!(snapshot.len(), 2);
    }
}
