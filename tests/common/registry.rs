//! The loopback test registries `scripts/start-registries.sh` runs (`scripts/test.sh` and CI
//! start them): an open one and one with htpasswd auth. Addresses and credentials come from the
//! `DOCKWRIGHT_TEST_*` variables that script writes, with its defaults when a variable is unset,
//! so a plain `cargo test` works once the script has run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_STATE: &str = "/tmp/dockwright-test";

fn state_dir() -> PathBuf {
    PathBuf::from(std::env::var("DOCKWRIGHT_TEST_STATE").unwrap_or_else(|_| DEFAULT_STATE.into()))
}

/// `host:port` of the open registry (`DOCKWRIGHT_TEST_REGISTRY`, default `127.0.0.1:5000`).
pub fn registry() -> String {
    std::env::var("DOCKWRIGHT_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

/// The registry with htpasswd auth and the credentials it accepts.
#[derive(Clone, Debug)]
pub struct AuthRegistry {
    /// `host:port` (`DOCKWRIGHT_TEST_AUTH_REGISTRY`, default `127.0.0.1:5001`).
    pub addr: String,
    /// User name (`DOCKWRIGHT_TEST_AUTH_USER`, default `dwtest`).
    pub username: String,
    /// Password, read from `DOCKWRIGHT_TEST_AUTH_PASSWORD_FILE`.
    pub password: String,
    /// A Docker config file (`{"auths": {addr: {"auth": base64(user:password)}}}`) holding the
    /// credentials (`DOCKWRIGHT_TEST_AUTH_FILE`), for `--docker-config` or `registryAuth`.
    pub config_file: PathBuf,
}

/// The auth registry's address and credentials. Panics with a hint when the script has not run.
pub fn auth_registry() -> AuthRegistry {
    let env_or = |k: &str, d: String| std::env::var(k).unwrap_or(d);
    let state = state_dir();
    let password_file = PathBuf::from(env_or(
        "DOCKWRIGHT_TEST_AUTH_PASSWORD_FILE",
        state.join("credentials/password").display().to_string(),
    ));
    let password = std::fs::read_to_string(&password_file).unwrap_or_else(|e| {
        panic!(
            "read the test registry password {}: {e} (run scripts/start-registries.sh; scripts/test.sh does)",
            password_file.display()
        )
    });
    AuthRegistry {
        addr: env_or("DOCKWRIGHT_TEST_AUTH_REGISTRY", "127.0.0.1:5001".into()),
        username: env_or("DOCKWRIGHT_TEST_AUTH_USER", "dwtest".into()),
        password: password.trim().to_string(),
        config_file: PathBuf::from(env_or(
            "DOCKWRIGHT_TEST_AUTH_FILE",
            state.join("credentials/config.json").display().to_string(),
        )),
    }
}

/// Panic with a clear hint unless a registry answers `GET /v2/` at `addr` (200 for the open
/// registry, 401 for the auth one). Call it first in tests that need a registry.
pub fn require_registry(addr: &str) {
    let status = v2_status(addr);
    assert!(
        matches!(status, Ok(200) | Ok(401)),
        "no test registry answers on http://{addr}/v2/ ({status:?}); \
         start them with scripts/start-registries.sh (scripts/test.sh does)"
    );
}

/// Status code of `GET /v2/`, the distribution API's version check.
fn v2_status(addr: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not HTTP: {:?}", String::from_utf8_lossy(&head)))
}
