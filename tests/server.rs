//! The agent's HTTP endpoints over a real socket, spoken to with raw HTTP/1.1 so the wire
//! format (status line, headers, body) is what is checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dockwright::metrics::Metrics;
use dockwright::server::{AgentState, Server, METRICS_CONTENT_TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One parsed HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse(raw: &str) -> Reply {
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole reply.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    parse(&String::from_utf8(raw).unwrap())
}

struct Running {
    addr: SocketAddr,
    state: AgentState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn start() -> Running {
    let state = AgentState::new(Arc::new(Metrics::new().unwrap()));
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(state.clone(), async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        state,
        stop,
        task,
    }
}

#[tokio::test]
async fn health_readiness_metrics_and_state() {
    let s = start().await;

    let health = request(s.addr, "GET", "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok\n");

    assert_eq!(request(s.addr, "GET", "/readyz").await.status, 503);
    let state = request(s.addr, "GET", "/state").await;
    assert_eq!(state.status, 503);
    assert_eq!(state.header("content-type"), Some("application/json"));

    let metrics = request(s.addr, "GET", "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-type"), Some(METRICS_CONTENT_TYPE));
    assert!(
        metrics.body.contains("\ndockwright_ready 0\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("dockwright_build_info{version=\""),
        "{}",
        metrics.body
    );

    // The agent finishes its first pass.
    s.state.metrics().count_drift_correction("removed");
    s.state.publish_state(&serde_json::json!({ "passes": 1, "resources": [{ "resource": "Container/default/web", "phase": "Ready" }] }));
    s.state.set_ready();

    let ready = request(s.addr, "GET", "/readyz").await;
    assert_eq!(ready.status, 200);
    let state = request(s.addr, "GET", "/state").await;
    assert_eq!(state.status, 200);
    let json: serde_json::Value = serde_json::from_str(&state.body).unwrap();
    assert_eq!(json["resources"][0]["phase"], "Ready");
    let metrics = request(s.addr, "GET", "/metrics").await;
    assert!(
        metrics.body.contains("\ndockwright_ready 1\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("dockwright_drift_corrections_total{reason=\"removed\"} 1"),
        "{}",
        metrics.body
    );

    s.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn unknown_paths_and_other_methods_are_refused() {
    let s = start().await;
    assert_eq!(request(s.addr, "GET", "/").await.status, 404);
    assert_eq!(request(s.addr, "GET", "/metrics/extra").await.status, 404);
    assert_eq!(request(s.addr, "POST", "/nope").await.status, 404);
    for (method, path) in [
        ("POST", "/metrics"),
        ("PUT", "/state"),
        ("DELETE", "/readyz"),
        ("PATCH", "/healthz"),
    ] {
        let reply = request(s.addr, method, path).await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{method} {path}");
    }
    // HEAD: the status and headers of GET, no body; a query string does not change the route.
    let head = request(s.addr, "HEAD", "/healthz").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(
        request(s.addr, "GET", "/healthz?verbose=1").await.status,
        200
    );
    s.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_and_stops_listening() {
    let s = start().await;
    // A keep-alive client that stays connected after its request.
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    s.stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(3), s.task)
        .await
        .expect("shutdown does not wait for idle connections")
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the idle connection is closed");
    assert!(
        TcpStream::connect(s.addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn binding_a_taken_address_is_an_error_naming_it() {
    let s = start().await;
    let err = Server::bind(s.addr).await.unwrap_err();
    assert!(err.to_string().contains(&s.addr.to_string()), "{err}");
    s.stop.send(()).unwrap();
}
