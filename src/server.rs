//! The agent's read-only HTTP endpoints: `/metrics` (Prometheus text), `/healthz` (alive),
//! `/readyz` (the first full reconcile pass is done) and `/state` (what the agent last saw, as
//! JSON, for `dockwright get/status --agent`). Nothing here changes state; the agent feeds it
//! through an [`AgentState`] handle. Plain hyper 1 over HTTP/1.1 (already in the tree through
//! bollard), so the server costs no extra compile time.
//!
//! Choices the design leaves open:
//! - `HEAD` is served like `GET` (without a body); any other method on a known path is a 405
//!   with `Allow: GET, HEAD`; an unknown path is a 404 whatever the method.
//! - `/state` is a 503 until the agent publishes a first state; the JSON is serialised once
//!   per publication, not per request.
//! - A client has [`HEADER_READ_TIMEOUT`] to send its request head, and shutdown waits at most
//!   [`SHUTDOWN_GRACE`] for requests in flight, so neither a slow client nor a stuck scraper
//!   can hold the agent.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// The agent's default listen address (used by the CLI).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";
/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Time a client has to send its request head.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}: {source}")]
pub struct ServerError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why binding failed.
    #[source]
    pub source: std::io::Error,
}

/// What the server shows, written by the agent: readiness, the last published state and the
/// metrics. Cheap to clone (one `Arc`); the agent keeps one clone, the server another.
#[derive(Clone, Debug)]
pub struct AgentState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    metrics: Arc<Metrics>,
    ready: AtomicBool,
    /// The last published state, already serialised.
    state: RwLock<Option<Bytes>>,
    /// The last published state and source status, as JSON values (to compose `state`).
    parts: RwLock<Parts>,
}

/// What `/state` is composed of: the agent's status, with the source's status under `source`.
#[derive(Debug, Default)]
struct Parts {
    state: Option<serde_json::Value>,
    source: Option<serde_json::Value>,
}

impl AgentState {
    /// A handle that is not ready and has no state yet.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            inner: Arc::new(Inner {
                metrics,
                ready: AtomicBool::new(false),
                state: RwLock::new(None),
                parts: RwLock::new(Parts::default()),
            }),
        }
    }

    /// The metrics rendered on `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Marks the first full reconcile pass as done: `/readyz` answers 200 from now on, and
    /// `dockwright_ready` is 1.
    pub fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::SeqCst);
        self.inner.metrics.set_ready(true);
    }

    /// Whether [`Self::set_ready`] was called.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// Replaces what `/state` serves (a `serde_json::Value` or any serialisable status).
    /// A value that cannot be serialised (a map with non-string keys) is logged and the
    /// previous state kept.
    pub fn publish_state<T: Serialize + ?Sized>(&self, state: &T) {
        match serde_json::to_value(state) {
            Ok(value) => {
                let mut parts = self.inner.parts.write().unwrap_or_else(|e| e.into_inner());
                parts.state = Some(value);
                self.render(&parts);
            }
            Err(e) => {
                tracing::warn!(error = %e, "agent state not serialisable; /state keeps the previous one")
            }
        }
    }

    /// Replaces the source's status shown under `source` in `/state` (the git source's
    /// revisions and fetches). Shown from the agent's first published state on.
    pub fn publish_source<T: Serialize + ?Sized>(&self, source: &T) {
        match serde_json::to_value(source) {
            Ok(value) => {
                let mut parts = self.inner.parts.write().unwrap_or_else(|e| e.into_inner());
                parts.source = Some(value);
                self.render(&parts);
            }
            Err(e) => tracing::warn!(error = %e, "source status not serialisable"),
        }
    }

    fn render(&self, parts: &Parts) {
        let Some(state) = &parts.state else {
            return;
        };
        let mut state = state.clone();
        if let (Some(source), Some(map)) = (&parts.source, state.as_object_mut()) {
            map.insert("source".into(), source.clone());
        }
        match serde_json::to_vec_pretty(&state) {
            Ok(mut json) => {
                json.push(b'\n');
                *self.inner.state.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Bytes::from(json));
            }
            Err(e) => tracing::warn!(error = %e, "agent state not serialisable"),
        }
    }

    /// The JSON `/state` serves, if any was published.
    pub fn state_json(&self) -> Option<Bytes> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A bound listener, not yet serving (bind first to learn the port of `127.0.0.1:0`).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Server {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> Result<Self, ServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError { addr, source })?;
        Ok(Self { listener, addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish
    /// (at most [`SHUTDOWN_GRACE`]) and closes idle connections.
    pub async fn serve(self, state: AgentState, shutdown: impl Future<Output = ()>) {
        let Self { listener, addr } = self;
        tracing::info!(%addr, "serving /metrics /healthz /readyz /state");
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let state = state.clone();
                        let service = service_fn(move |req| respond(state.clone(), req));
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_READ_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service);
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(%peer, error = %e, "http connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accepting an http connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "http connections still open after the shutdown grace period; dropping them"
            );
        }
        tracing::debug!(%addr, "http server stopped");
    }
}

/// Binds `addr` and serves `state` until `shutdown` completes (see [`Server::serve`]).
pub async fn serve(
    addr: SocketAddr,
    state: AgentState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::bind(addr).await?.serve(state, shutdown).await;
    Ok(())
}

/// Paths served.
const PATHS: &[&str] = &["/metrics", "/healthz", "/readyz", "/state"];

async fn respond(
    state: AgentState,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(route(&state, req.method(), req.uri().path()))
}

fn route(state: &AgentState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if !PATHS.contains(&path) {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics().render())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.is_ready() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first reconcile pass has not finished\n",
        ),
        _ => match state.state_json() {
            Some(json) => {
                let mut response = Response::new(Full::new(json));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            None => {
                let mut response = Response::new(Full::new(Bytes::from_static(
                    b"{\"error\":\"the agent has not published its state yet\"}\n",
                )));
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
        },
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn state() -> AgentState {
        AgentState::new(Arc::new(Metrics::new().unwrap()))
    }

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn routes_answer_by_path_then_method() {
        let s = state();
        assert_eq!(
            route(&s, &Method::GET, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&s, &Method::POST, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        let r = route(&s, &Method::DELETE, "/state");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, HEAD");
        assert_eq!(
            route(&s, &Method::HEAD, "/healthz").status(),
            StatusCode::OK
        );
        assert_eq!(body(route(&s, &Method::GET, "/healthz")).await, "ok\n");
    }

    #[tokio::test]
    async fn readiness_and_state_follow_the_handle() {
        let s = state();
        assert_eq!(
            route(&s, &Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            route(&s, &Method::GET, "/state").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(s.metrics().render().contains("dockwright_ready 0"));

        s.set_ready();
        s.publish_state(&serde_json::json!({ "passes": 1 }));
        assert_eq!(route(&s, &Method::GET, "/readyz").status(), StatusCode::OK);
        assert!(s.metrics().render().contains("dockwright_ready 1"));
        let r = route(&s, &Method::GET, "/state");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(v["passes"], 1);
    }

    #[test]
    fn unserialisable_state_keeps_the_previous_one() {
        let s = state();
        s.publish_state(&serde_json::json!({ "passes": 1 }));
        let bad: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        s.publish_state(&bad);
        let json = s.state_json().unwrap();
        assert!(std::str::from_utf8(&json).unwrap().contains("passes"));
    }
}
