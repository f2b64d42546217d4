//! `POST /hooks/git` (`--git-webhook-listen ADDR`, `--git-webhook-secret FILE`): a push
//! notification from the git host makes the follower poll at once instead of at the next
//! `--git-poll`. A call is accepted only when it proves the shared secret:
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
//! - Gitea / Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256>`;
//! - GitLab: `X-Gitlab-Token: <secret>`.
//!
//! Every comparison is constant-time. A refused call is a 401 and changes nothing; an accepted
//! one a 202 (the poll runs after the answer). The payload is never trusted for what to
//! deploy: the follower asks the server where the ref points, as on any poll. Its own
//! listener, so the agent's read-only endpoints stay read-only (and may stay on loopback
//! while the webhook faces the git host).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// The path served.
pub const HOOK_PATH: &str = "/hooks/git";
/// Largest payload read (GitHub caps its payloads at 25 MB; a push event is far smaller, and
/// only the signature over it matters here).
pub const MAX_BODY: usize = 4 << 20;
/// Time a client has to send its request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook's shared secret (never logged; `Debug` shows nothing of it).
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// Reads the secret from `path` (one trailing newline removed); an empty secret is refused.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let mut bytes =
            std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(format!("{}: the webhook secret is empty", path.display()));
        }
        Ok(Self(bytes.into()))
    }

    /// A secret from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.into())
    }
}

/// Why a call was refused (logged; the caller only sees 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No signature or token header at all.
    Unsigned,
    /// A signature or token that does not match.
    BadSignature,
}

/// Checks a call's proof of the secret; `Ok` names the kind of host it came from.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: &WebhookSecret,
) -> Result<&'static str, Refusal> {
    let header = |name: &str| headers.get(name).map(HeaderValue::as_bytes);
    if let Some(value) = header("x-hub-signature-256") {
        let given = value.strip_prefix(b"sha256=").unwrap_or(b"");
        return signature_matches(given, body, secret)
            .then_some("github")
            .ok_or(Refusal::BadSignature);
    }
    for (name, kind) in [
        ("x-gitea-signature", "gitea"),
        ("x-forgejo-signature", "forgejo"),
    ] {
        if let Some(value) = header(name) {
            return signature_matches(value, body, secret)
                .then_some(kind)
                .ok_or(Refusal::BadSignature);
        }
    }
    if let Some(token) = header("x-gitlab-token") {
        return constant_time_eq(token, &secret.0)
            .then_some("gitlab")
            .ok_or(Refusal::BadSignature);
    }
    Err(Refusal::Unsigned)
}

/// Whether `given` (hex) is the HMAC-SHA256 of `body` under the secret.
fn signature_matches(given: &[u8], body: &[u8], secret: &WebhookSecret) -> bool {
    let expected = hex::encode(crate::secrets::hmac_sha256(&secret.0, body));
    let given = given.to_ascii_lowercase();
    constant_time_eq(&given, expected.as_bytes())
}

/// Compares without an early exit (the length is not secret: signatures have a fixed one).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Serves [`HOOK_PATH`] on `listener` until `shutdown`, calling `trigger` for every verified
/// call.
pub async fn serve(
    listener: TcpListener,
    secret: WebhookSecret,
    trigger: Arc<dyn Fn() + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let secret = secret.clone();
                    let trigger = Arc::clone(&trigger);
                    let service = service_fn(move |req| {
                        respond(req, secret.clone(), Arc::clone(&trigger), peer)
                    });
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a webhook connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
}

async fn respond(
    req: Request<Incoming>,
    secret: WebhookSecret,
    trigger: Arc<dyn Fn() + Send + Sync>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != HOOK_PATH {
        return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
    }
    if req.method() != Method::POST {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(response);
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            tracing::warn!(%peer, %error, "webhook refused: body unreadable or too large");
            return Ok(text(StatusCode::PAYLOAD_TOO_LARGE, "payload too large\n"));
        }
    };
    match verify(&parts.headers, &body, &secret) {
        Ok(kind) => {
            tracing::info!(%peer, host = kind, "webhook verified; fetching now");
            trigger();
            Ok(text(StatusCode::ACCEPTED, "fetching\n"))
        }
        Err(refusal) => {
            tracing::warn!(%peer, reason = ?refusal, "webhook refused: no valid signature or token");
            Ok(text(StatusCode::UNAUTHORIZED, "invalid signature\n"))
        }
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    // Values from GitHub's documentation ("Validating webhook deliveries").
    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIG: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_signatures_are_checked() {
        let secret = WebhookSecret::from_bytes(GITHUB_SECRET);
        let h = headers(&[("x-hub-signature-256", GITHUB_SIG)]);
        assert_eq!(verify(&h, GITHUB_BODY, &secret), Ok("github"));
        assert_eq!(
            verify(&h, b"Hello, World?", &secret),
            Err(Refusal::BadSignature)
        );
        let other = WebhookSecret::from_bytes(b"another secret");
        assert_eq!(verify(&h, GITHUB_BODY, &other), Err(Refusal::BadSignature));
        let h = headers(&[(
            "x-hub-signature-256",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert_eq!(
            verify(&h, GITHUB_BODY, &secret),
            Err(Refusal::BadSignature),
            "the sha256= prefix is required"
        );
    }

    #[test]
    fn gitea_and_forgejo_signatures_are_bare_hex() {
        let secret = WebhookSecret::from_bytes(GITHUB_SECRET);
        let hex = GITHUB_SIG.trim_start_matches("sha256=");
        for name in ["x-gitea-signature", "x-forgejo-signature"] {
            let h = headers(&[(name, hex)]);
            assert!(verify(&h, GITHUB_BODY, &secret).is_ok(), "{name}");
            let h = headers(&[(name, &hex.replace('7', "8"))]);
            assert_eq!(verify(&h, GITHUB_BODY, &secret), Err(Refusal::BadSignature));
        }
    }

    #[test]
    fn gitlab_tokens_are_compared_whole() {
        let secret = WebhookSecret::from_bytes(b"s3cret");
        assert_eq!(
            verify(&headers(&[("x-gitlab-token", "s3cret")]), b"{}", &secret),
            Ok("gitlab")
        );
        for bad in ["s3cre", "s3cret!", "S3cret", ""] {
            assert_eq!(
                verify(&headers(&[("x-gitlab-token", bad)]), b"{}", &secret),
                Err(Refusal::BadSignature),
                "{bad:?}"
            );
        }
        assert_eq!(
            verify(&HeaderMap::new(), b"{}", &secret),
            Err(Refusal::Unsigned)
        );
    }

    #[test]
    fn secrets_come_from_a_file_without_the_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = WebhookSecret::from_file(&path).unwrap();
        assert_eq!(&*secret.0, b"s3cret");
        assert!(!format!("{secret:?}").contains("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        assert!(WebhookSecret::from_file(&path).is_err());
    }
}
