//! What the daemon's HTTP endpoints share, on the socket and on TCP: the peer's credentials a
//! listener attaches to each request, the error envelope every endpoint answers with
//! ([`ApiError`]), and the connection bounds the endpoints' own limits are derived from.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
