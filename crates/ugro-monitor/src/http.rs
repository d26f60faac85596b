//! What the daemon's HTTP endpoints share, on the socket and on TCP: the peer's credentials a
//! listener attaches to each request, the error envelope every endpoint answers with
//! ([`ApiError`]), the connection bounds the endpoints' own limits are derived from, and the
//! serving of one accepted connection ([`serve_connection`]) both listeners share.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use ugro_api::{ErrorBody, ErrorDetail};

/// Most connections served at once; past it a connection is answered 503 at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Of [`MAX_CONNECTIONS`], the places only root and the daemon's own uid may take.
pub const RESERVED_CONNECTIONS: usize = 16;
/// Most connections one peer uid other than root and the daemon's own may hold at once.
pub const MAX_CONNECTIONS_PER_UID: usize = 32;

/// Credentials of the process at the other end of a connection (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// An error answer: `{"error": {"code", "message", "details"}}` with an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Put into a request's extensions by a listener that can close the connection on demand: the
/// stream cancels it when the client falls behind, and the listener then drops the connection
/// (a client that never reads would otherwise hold it with a full socket buffer).
#[derive(Debug, Clone)]
pub struct Disconnect(pub CancellationToken);

/// The HTTP/1.1 limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Request headers must arrive within this, from connect and between kept-alive requests.
    pub header_timeout: Duration,
    /// hyper's read buffer (heads larger than this are cut off by hyper itself).
    pub max_buf: usize,
    /// Most header fields hyper parses.
    pub max_headers: usize,
}

/// Serves `router` on one accepted connection on a task of its own, watched by `graceful`:
/// every request carries `peer` (when the listener knows it) and the [`Disconnect`] token a
/// change stream cancels to drop a client that fell behind. `hold` (the connection's places
/// under the listener's bounds) is released when the connection ends.
pub fn serve_connection<I>(
    io: I,
    router: &Router,
    peer: Option<Peer>,
    limits: ConnLimits,
    graceful: &GracefulShutdown,
    hold: impl Send + 'static,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let disconnect = CancellationToken::new();
    let on_disconnect = Disconnect(disconnect.clone());
    let svc = router
        .clone()
        .map_request(move |mut req: axum::extract::Request<_>| {
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            req.extensions_mut().insert(on_disconnect.clone());
            req
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_buf)
        .max_headers(limits.max_headers)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc));
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        tokio::select! {
            r = conn => if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            },
            _ = disconnect.cancelled() => tracing::debug!("closed a change stream that fell behind"),
        }
        drop(hold);
    });
}
