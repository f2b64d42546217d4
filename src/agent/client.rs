//! Reading a running agent's `/state` (for `dockwright status`): one plain HTTP/1.1 GET on
//! loopback, no client library needed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::AgentStatus;

/// Why the agent's state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No agent answered.
    #[error("no dockwright agent answers on {addr} (is `dockwright agent --listen {addr}` running?): {source}")]
    Connect {
        /// Address tried.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The agent answered with something other than its state.
    #[error("unexpected answer from the agent on {addr}: {message}")]
    Answer {
        /// Address asked.
        addr: SocketAddr,
        /// What was wrong.
        message: String,
    },
}

/// Fetches and parses `/state` from the agent listening on `addr` (5 s timeout).
pub async fn fetch_status(addr: SocketAddr) -> Result<AgentStatus, StatusError> {
    let answer = |message: String| StatusError::Answer { addr, message };
    let io = |source| StatusError::Connect { addr, source };
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(io)?;
        let request = format!("GET /state HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(io)?;
        Ok::<_, StatusError>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| answer("no answer within 5 s".into()))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| answer("not HTTP".into()))?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200 ") {
        return Err(answer(format!(
            "{status_line} (the agent may not have finished its first pass)"
        )));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    serde_json::from_str(&body).map_err(|e| answer(format!("state is not valid JSON: {e}")))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }
}
