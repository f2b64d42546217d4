//! Shared fixtures for the integration tests, all against the real Docker daemon: the test
//! image, unique names, per-test owners that clean up on drop, a counting proxy in front of the
//! daemon socket, the loopback test registries, and a runner for the `dockwright` binary.
//!
//! Each `tests/*.rs` does `mod common;`; not every test uses every helper, hence the
//! `dead_code`/`unused_imports` allowance below.
#![allow(dead_code, unused_imports)]

pub mod fleet;
pub mod git;
pub mod git_servers;
mod image;
pub mod node_daemon;
mod owner;
mod proxy;
mod registry;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use image::{ensure_test_image, ensure_test_image_blocking, own_layers, TEST_IMAGE};
pub use owner::{TestOwner, OWNER_PREFIX};
pub use proxy::{CountingProxy, Fault, FaultPolicy, RequestInfo};
pub use registry::{
    auth_registry, delete_manifest, get_manifest, put_manifest, registry, require_registry,
    AuthRegistry, Manifest,
};

/// `prefix-xxxxxxxx`: a name no other test (or earlier run) uses. The suffix mixes a per-process
/// random key, the clock, the pid and a counter, so parallel tests and parallel test binaries
/// never collide. Lowercase hex, so it is valid as a container, volume or network name.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("{prefix}-{:08x}", h.finish() as u32)
}

/// A bollard client for the daemon the tests use (`DOCKER_HOST`, else the default socket),
/// with the API version negotiated (the CI daemon is 20.10, API 1.41).
pub async fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_defaults()
        .expect("connect to the Docker daemon (DOCKER_HOST or /var/run/docker.sock)")
        .negotiate_version()
        .await
        .expect("negotiate the Docker API version: is the daemon running?")
}

/// `dockwright` as built by cargo for this test run, with stdin closed (CI has none either).
/// Point it at a [`CountingProxy`] with `.env("DOCKER_HOST", proxy.docker_host())` and give it
/// a test owner with `.args(["--owner", owner.name()])`.
pub fn dockwright() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dockwright"));
    cmd.stdin(Stdio::null());
    cmd
}

/// What a finished command did. `Display` prints everything, for assertion messages.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Run {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run a command to completion and capture its output: `run(dockwright().args([...]))`.
pub fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
