//! A counting reverse proxy in front of the daemon's unix socket, so tests can assert which API
//! calls dockwright makes ("a no-op apply performs no write"). It is a real HTTP/1 proxy (hyper
//! server downstream, one hyper client connection upstream per request): keep-alive, streamed
//! bodies (log follow, pull progress, events) and connection upgrades (attach, exec) pass through.
//!
//! It runs on its own thread and runtime, so a test may block on a child process (the dockwright
//! binary talking through the proxy) without starving it. Faults for reliability tests hook in
//! through [`FaultPolicy`]: answer with an error, delay, drop the connection before the daemon
//! sees the request, or let the daemon act and drop the connection before its answer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST, UPGRADE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

/// One request as the proxy saw it, for fault policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path without the `/v1.xx` prefix, e.g. `/containers/json`.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
}

/// What the proxy does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pass it to the daemon unchanged.
    Forward,
    /// Answer it with this status and a Docker-style JSON error body, without asking the daemon.
    Respond(u16),
    /// Answer it with this status and this message (e.g. `500` and `no space left on device`).
    RespondWith(u16, String),
    /// Wait this long, then forward it (a slow daemon).
    Delay(Duration),
    /// Close the connection without an answer; the daemon never sees the request.
    Drop,
    /// Forward it, let the daemon act, then close the connection instead of answering (the
    /// answer is lost: the client cannot tell whether the call took effect).
    DropAfter,
}

/// Counts one request as open from its arrival until dropped: with the handler (early
/// answers, dropped connections) or with the response body (once delivered or cut).
struct OpenGuard {
    shared: Arc<Shared>,
    key: (String, String),
}

impl OpenGuard {
    fn new(shared: Arc<Shared>, key: (String, String)) -> Self {
        *shared
            .open
            .lock()
            .expect("proxy open lock")
            .entry(key.clone())
            .or_default() += 1;
        Self { shared, key }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Ok(mut open) = self.shared.open.lock() {
            if let Some(n) = open.get_mut(&self.key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.key);
                }
            }
        }
    }
}

/// The error that makes hyper close a downstream connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the test proxy")
    }
}

impl std::error::Error for Dropped {}

/// Decides, per request, whether to forward it or inject a fault. Later faults (delays,
/// dropped connections, cut streams) are new [`Fault`] variants handled in `handle`.
pub type FaultPolicy = Arc<dyn Fn(&RequestInfo) -> Fault + Send + Sync>;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// State shared by the proxy's connection tasks (writers) and the test (reader).
struct Shared {
    upstream: PathBuf,
    log: Mutex<Vec<(String, String)>>,
    /// Requests whose answer has not been delivered in full yet: (method, path) → count.
    open: Mutex<std::collections::BTreeMap<(String, String), usize>>,
    policy: Mutex<Option<FaultPolicy>>,
}

/// The proxy. Owned by one test; listens on `<tempdir>/docker.sock` until dropped.
pub struct CountingProxy {
    socket: PathBuf,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl CountingProxy {
    /// Start a proxy to the daemon the tests use: `DOCKER_HOST` when it is a `unix://` socket,
    /// else `/var/run/docker.sock`.
    pub fn start() -> Self {
        let upstream = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        Self::start_to(&upstream)
    }

    /// Start a proxy to the daemon socket at `upstream`.
    pub fn start_to(upstream: &Path) -> Self {
        // Short path: unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dwproxy")
            .tempdir_in("/tmp")
            .expect("create the proxy's temp dir");
        let socket = dir.path().join("docker.sock");
        // Bound here, so the socket accepts as soon as `start` returns.
        let listener =
            std::os::unix::net::UnixListener::bind(&socket).expect("bind the proxy socket");
        listener
            .set_nonblocking(true)
            .expect("set the proxy socket non-blocking");
        let shared = Arc::new(Shared {
            upstream: upstream.to_path_buf(),
            log: Mutex::new(Vec::new()),
            open: Mutex::new(std::collections::BTreeMap::new()),
            policy: Mutex::new(None),
        });
        let (tx, rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("counting-proxy".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("build the proxy's runtime");
                rt.block_on(async move {
                    let listener =
                        UnixListener::from_std(listener).expect("register the proxy socket");
                    tokio::select! {
                        _ = rx => {}
                        _ = accept_loop(listener, thread_shared) => {}
                    }
                });
                // Dropping the runtime drops every connection task: open streams are cut.
            })
            .expect("spawn the proxy thread");
        Self {
            socket,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `unix:///tmp/dwproxy.../docker.sock`, for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The proxy's socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// A bollard client through the proxy. The API version is negotiated on a direct connection
    /// first, so the proxy sees only the calls the test makes.
    pub async fn client(&self) -> bollard::Docker {
        let version = super::docker().await.client_version();
        bollard::Docker::connect_with_unix(&self.docker_host(), 120, &version)
            .expect("connect to the counting proxy")
    }

    /// Every request so far, in arrival order: (method, path without `/v1.xx` and query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.log.lock().expect("proxy log lock").clone()
    }

    /// The requests that may change the daemon: every method but GET and HEAD.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.requests()
            .into_iter()
            .filter(|(m, _)| m != "GET" && m != "HEAD")
            .collect()
    }

    /// How many requests had this method and path.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }

    /// How many requests with this method and a path starting with `prefix` are open now:
    /// seen by the proxy, their answer not yet delivered in full (a build or pull streaming
    /// its progress, a request the daemon still works on). Ends when the answer's last byte
    /// was handed on, or when either side closed the connection.
    pub fn open(&self, method: &str, prefix: &str) -> usize {
        self.shared
            .open
            .lock()
            .expect("proxy open lock")
            .iter()
            .filter(|((m, p), _)| m == method && p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// Forget the requests recorded so far.
    pub fn reset(&self) {
        self.shared.log.lock().expect("proxy log lock").clear();
    }

    /// Decide per request whether to forward it or inject a fault (replaces any earlier policy).
    pub fn set_fault_policy(&self, policy: impl Fn(&RequestInfo) -> Fault + Send + Sync + 'static) {
        *self.shared.policy.lock().expect("proxy policy lock") = Some(Arc::new(policy));
    }

    /// Forward everything again.
    pub fn clear_fault_policy(&self) {
        *self.shared.policy.lock().expect("proxy policy lock") = None;
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            // Errors here are the client going away mid-stream; nothing to report.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// `/v1.41/containers/json` → `/containers/json`; paths without a version prefix stay as they are.
fn strip_version(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let version = &rest[..end];
        if !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return if end == rest.len() { "/" } else { &rest[end..] };
        }
    }
    path
}

fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Dropped> {
    let info = RequestInfo {
        method: req.method().to_string(),
        path: strip_version(req.uri().path()).to_string(),
        query: req.uri().query().map(str::to_string),
    };
    shared
        .log
        .lock()
        .expect("proxy log lock")
        .push((info.method.clone(), info.path.clone()));
    let guard = OpenGuard::new(shared.clone(), (info.method.clone(), info.path.clone()));

    let policy = shared.policy.lock().expect("proxy policy lock").clone();
    let fault = policy.map_or(Fault::Forward, |p| p(&info));
    if matches!(fault, Fault::Respond(_) | Fault::RespondWith(..)) {
        // Read the whole request first, as the daemon does (a build's context, say): an
        // answer sent while the client still writes makes it see a broken pipe, not the error.
        let _ = req.body_mut().collect().await;
    }
    match &fault {
        Fault::Forward | Fault::DropAfter => {}
        Fault::Respond(status) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(error_response(
                status,
                "dockwright test proxy: injected fault",
            ));
        }
        Fault::RespondWith(status, message) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(error_response(status, message));
        }
        Fault::Delay(pause) => tokio::time::sleep(*pause).await,
        Fault::Drop => return Err(Dropped),
    }

    // Connection upgrades (attach, exec start): take the downstream half before the request moves.
    let downstream_upgrade = req
        .headers()
        .contains_key(UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));

    let origin_form = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .unwrap_or_default();
    *req.uri_mut() = origin_form;
    if !req.headers().contains_key(HOST) {
        req.headers_mut()
            .insert(HOST, HeaderValue::from_static("docker"));
    }

    let stream = match UnixStream::connect(&shared.upstream).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("connect {}: {e}", shared.upstream.display());
            return Ok(error_response(StatusCode::BAD_GATEWAY, &msg));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return Ok(error_response(StatusCode::BAD_GATEWAY, &e.to_string())),
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Ok(error_response(StatusCode::BAD_GATEWAY, &e.to_string())),
    };
    if fault == Fault::DropAfter {
        // Let the daemon finish the call (read the whole answer), then lose the answer.
        let _ = resp.into_body().collect().await;
        return Err(Dropped);
    }

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(downstream) = downstream_upgrade {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                if let (Ok(down), Ok(up)) = tokio::join!(downstream, upstream) {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(down),
                        &mut TokioIo::new(up),
                    )
                    .await;
                }
            });
        }
    }
    // The guard goes with the body: the request stays open until its answer is delivered.
    Ok(resp.map(|body| {
        body.map_frame(move |frame| {
            let _held = &guard;
            frame
        })
        .boxed()
    }))
}
