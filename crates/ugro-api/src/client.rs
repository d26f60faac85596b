//! HTTP/1.1 client over the daemon's Unix control socket. Every call has a deadline; every
//! failure says which socket and which request it was about.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::{ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION};

/// How a transport error starts when the daemon closed the connection before answering.
const CLOSED_EARLY: &str = "connection closed before an answer";

/// Largest response body the client reads.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {cause}")]
    Connect {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{method} {uri} on {path}: no answer within {timeout:?}")]
    Timeout {
        path: PathBuf,
        method: Method,
        uri: String,
        timeout: Duration,
    },
    #[error("{method} {uri} on {path}: {message}")]
    Transport {
        path: PathBuf,
        method: Method,
        uri: String,
        message: String,
    },
    #[error(
        "daemon speaks protocol {daemon}, this client speaks {client}: upgrade the {}",
        if *daemon > *client { "client (ugroctl)" } else { "daemon (ugro-monitor)" }
    )]
    ProtocolMismatch { daemon: u32, client: u32 },
    #[error("{message} ({status}, {code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        details: Vec<String>,
    },
    #[error("{method} {uri}: unexpected answer: {message}")]
    Decode {
        method: Method,
        uri: String,
        message: String,
    },
}

impl ClientError {
    /// True when the daemon could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. } | ClientError::Timeout { .. }
        )
    }
}

/// A client bound to one socket path. Cheap to create; each request opens its own connection
/// (requests are rare and short, and this keeps a hung daemon from wedging a shared connection).
#[derive(Debug, Clone)]
pub struct Client {
    path: PathBuf,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
}

impl Client {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Overall deadline for one request, connection included.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn get<T: DeserializeOwned>(&self, uri: &str) -> Result<T, ClientError> {
        self.request(Method::GET, uri, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, uri, body).await
    }

    /// Sends one request and decodes a JSON answer.
    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let (status, protocol, bytes) = self.raw(method.clone(), uri, body).await?;
        if let Some(daemon) = protocol
            && daemon != PROTOCOL_VERSION
        {
            return Err(ClientError::ProtocolMismatch {
                daemon,
                client: PROTOCOL_VERSION,
            });
        }
        let decode_err = |message: String| ClientError::Decode {
            method: method.clone(),
            uri: uri.to_owned(),
            message,
        };
        if !status.is_success() {
            return match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => Err(ClientError::Api {
                    status,
                    code: e.error.code,
                    message: e.error.message,
                    details: e.error.details,
                }),
                Err(_) => Err(decode_err(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ))),
            };
        }
        if protocol.is_none() {
            return Err(decode_err(format!(
                "no {PROTOCOL_HEADER} header: is {} really a ugro-monitor socket?",
                self.path.display()
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| decode_err(e.to_string()))
    }

    /// Sends one request; returns status, the protocol header (if any) and the body bytes.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Option<u32>, Bytes), ClientError> {
        let timeout = self.request_timeout;
        // A daemon serving too many connections answers 503 with Retry-After at once: try again
        // (within the same deadline) rather than fail the caller.
        let fut = async {
            let mut pause = Duration::from_millis(100);
            loop {
                let r = self.raw_inner(method.clone(), uri, body.clone()).await;
                let idempotent = matches!(method, Method::GET | Method::HEAD);
                match &r {
                    Ok((StatusCode::SERVICE_UNAVAILABLE, _, bytes)) if is_refusal(bytes) => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                    // A busy daemon may close a connection unanswered; a read can be sent again.
                    Err(ClientError::Transport { message, .. })
                        if idempotent && message.starts_with(CLOSED_EARLY) =>
                    {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                    _ => return r,
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                path: self.path.clone(),
                method,
                uri: uri.to_owned(),
                timeout,
            }),
        }
    }

    /// Connects to the socket within the connect deadline.
    pub(crate) async fn connect(&self) -> Result<UnixStream, ClientError> {
        match tokio::time::timeout(self.connect_timeout, UnixStream::connect(&self.path)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(cause)) => Err(ClientError::Connect {
                path: self.path.clone(),
                cause,
            }),
            Err(_) => Err(ClientError::Connect {
                path: self.path.clone(),
                cause: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.connect_timeout),
                ),
            }),
        }
    }

    async fn raw_inner(
        &self,
        method: Method,
        uri: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Option<u32>, Bytes), ClientError> {
        let transport = |message: String| ClientError::Transport {
            path: self.path.clone(),
            method: method.clone(),
            uri: uri.to_owned(),
            message,
        };
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        let conn_task = tokio::spawn(conn);

        let body_bytes = match &body {
            Some(v) => Bytes::from(serde_json::to_vec(v).map_err(|e| transport(e.to_string()))?),
            None => Bytes::new(),
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(http::header::HOST, "ugro-monitor")
            .header(http::header::ACCEPT, "application/json")
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string());
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body_bytes))
            .map_err(|e| transport(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| {
            if e.is_canceled() || e.is_incomplete_message() || closed_by_peer(&e) {
                transport(format!("{CLOSED_EARLY}: {e}"))
            } else {
                transport(e.to_string())
            }
        })?;
        let status = resp.status();
        let protocol = resp
            .headers()
            .get(PROTOCOL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| transport(format!("reading body: {e}")))?
            .to_bytes();
        conn_task.abort();
        Ok((status, protocol, bytes))
    }
}

/// Did the peer close the connection under hyper (a broken pipe or reset while the request was
/// written)? A daemon past its refusal bound closes connections without reading them.
fn closed_by_peer(e: &hyper::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            );
        }
        cause = c.source();
    }
    false
}

/// Is this 503 body the daemon's "too many connections" refusal (worth retrying)?
fn is_refusal(bytes: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody>(bytes).is_ok_and(|e| e.error.code == "too_many_connections")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one canned HTTP answer on a fresh socket and returns its path.
    async fn one_answer(dir: &Path, answer: &'static str) -> PathBuf {
        let path = dir.join("peer.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        path
    }

    #[tokio::test]
    async fn newer_daemon_is_told_apart_from_other_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = one_answer(
            dir.path(),
            "HTTP/1.1 200 OK\r\nugro-protocol: 2\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await;
        let err = Client::new(path)
            .get::<serde_json::Value>("/v1/status")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::ProtocolMismatch {
                    daemon: 2,
                    client: 1
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("upgrade the client"), "{err}");
    }

    #[tokio::test]
    async fn a_socket_that_is_not_ugro_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = one_answer(
            dir.path(),
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await;
        let err = Client::new(&path)
            .get::<serde_json::Value>("/v1/status")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("really a ugro-monitor socket"),
            "{err}"
        );
    }

    /// A peer that closes its first `drops` connections unread (as a daemon past its refusal bound
    /// does), waiting `linger` first, then answers the next one with an empty status.
    async fn drops_then_answers(dir: &Path, drops: usize, linger: Duration) -> PathBuf {
        let path = dir.join("busy.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            for _ in 0..drops {
                let (s, _) = listener.accept().await.unwrap();
                tokio::time::sleep(linger).await;
                drop(s);
            }
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nugro-protocol: 1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
        });
        path
    }

    #[tokio::test]
    async fn a_read_is_sent_again_when_a_busy_daemon_closes_it_unread() {
        for linger in [Duration::ZERO, Duration::from_millis(50)] {
            let dir = tempfile::tempdir().unwrap();
            let path = drops_then_answers(dir.path(), 3, linger).await;
            let got = Client::new(&path)
                .with_timeout(Duration::from_secs(10))
                .get::<serde_json::Value>("/v1/status")
                .await;
            assert!(got.is_ok(), "closed unread after {linger:?}: {got:?}");
        }
    }

    #[tokio::test]
    async fn a_change_is_not_sent_again_when_closed_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = drops_then_answers(dir.path(), 1, Duration::from_millis(50)).await;
        let got = Client::new(&path)
            .with_timeout(Duration::from_secs(10))
            .post::<serde_json::Value>("/v1/reload", None)
            .await;
        assert!(matches!(got, Err(ClientError::Transport { .. })), "{got:?}");
    }

    #[tokio::test]
    async fn a_silent_peer_hits_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silent.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap(); // never accepts
        let err = Client::new(&path)
            .with_timeout(Duration::from_millis(200))
            .get::<serde_json::Value>("/v1/status")
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(err.is_unreachable());
    }
}
