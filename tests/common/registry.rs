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

/// An HTTP answer: status, headers (lowercased names), body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.0 exchange with the open registry at `addr` (no auth): returns the status, the
/// headers (lowercased names) and the body. Enough for the few manifest calls tests make.
fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Answer, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {:?}", String::from_utf8_lossy(&answer)))?;
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, answer[split + 4..].to_vec()))
}

/// A manifest as the registry serves it.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// `Content-Type` (the manifest's media type).
    pub media_type: String,
    /// `Docker-Content-Digest`.
    pub digest: String,
    /// The manifest bytes.
    pub body: Vec<u8>,
}

const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// `GET /v2/<repository>/manifests/<reference>` on the open registry at `addr`.
pub fn get_manifest(addr: &str, repository: &str, reference: &str) -> Result<Manifest, String> {
    let path = format!("/v2/{repository}/manifests/{reference}");
    let (status, headers, body) = exchange(addr, "GET", &path, &[("Accept", MANIFEST_TYPES)], &[])?;
    if status != 200 {
        return Err(format!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Ok(Manifest {
        media_type: header("content-type"),
        digest: header("docker-content-digest"),
        body,
    })
}

/// Points `tag` of `repository` at `manifest` (`PUT /v2/<repository>/manifests/<tag>`): moves
/// a tag in the registry without any local image.
pub fn put_manifest(
    addr: &str,
    repository: &str,
    tag: &str,
    manifest: &Manifest,
) -> Result<(), String> {
    let path = format!("/v2/{repository}/manifests/{tag}");
    let (status, _, body) = exchange(
        addr,
        "PUT",
        &path,
        &[("Content-Type", &manifest.media_type)],
        &manifest.body,
    )?;
    if status != 201 {
        return Err(format!(
            "PUT {path}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}

/// Deletes the manifest `digest` of `repository` (and so every tag naming it); a manifest
/// already gone is fine. Blobs stay until the registry's garbage collection.
pub fn delete_manifest(addr: &str, repository: &str, digest: &str) -> Result<(), String> {
    let path = format!("/v2/{repository}/manifests/{digest}");
    let (status, _, body) = exchange(addr, "DELETE", &path, &[], &[])?;
    if status != 202 && status != 404 {
        return Err(format!(
            "DELETE {path}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}
