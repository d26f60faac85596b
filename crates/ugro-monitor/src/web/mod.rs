//! The read-only web dashboard on `[http] listen`: its routes beside `/metrics` and
//! `/v1/stream`, the embedded assets, and the TCP listener that serves them (no control action
//! is ever routed here).

pub mod auth;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;
pub use auth::{Token, TokenError};

/// The style sheet, embedded in the binary.
const STYLE: &str = include_str!("assets/style.css");
/// The live-update script, embedded in the binary.
const SCRIPT: &str = include_str!("assets/live.js");

/// Asset URLs carry the version, so a long cache lifetime is safe across upgrades.
pub const STYLE_URL: &str = concat!("/assets/style.css?v=", env!("CARGO_PKG_VERSION"));
pub const SCRIPT_URL: &str = concat!("/assets/live.js?v=", env!("CARGO_PKG_VERSION"));

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Every route of the TCP listener: the dashboard pages and charts, the assets, the change
/// stream, run logs (`/v1/logs/{id}`, a window or its follow) and `/metrics`, all GET and all behind the token when one is configured.
pub fn router(shared: Arc<Shared>, token: Option<Token>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/nodes/{name}", get(pages::node))
        .route("/nodes/{name}/{chart}", get(pages::node_chart))
        .route("/runs/{*id}", get(pages::run))
        .route("/chart/runs/{*id}", get(pages::run_chart))
        .route("/summaries", get(pages::summaries))
        .route("/summaries/{date}", get(pages::summary))
        .route("/summaries/{date}/chart.png", get(pages::summary_chart))
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/assets/live.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route("/v1/stream", get(crate::stream::handler))
        .route("/v1/logs/{*id}", get(crate::logs::handler))
        .route("/metrics", get(crate::metrics::handler))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 Not Found\n") })
        .with_state(shared)
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn(auth::security_headers))
}

/// Most TCP connections served at once; past it a new connection is closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 128;
/// A TCP client must send its request headers within this time, from connect and between
/// requests on a kept-alive connection.
const TCP_HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// hyper's read buffer and header count on TCP (its defaults: ~400 KiB, 100 fields).
const TCP_HEAD_BUFFER: usize = 64 * 1024;
const TCP_MAX_HEADERS: usize = 100;
/// How long open connections get to finish when the daemon stops.
const TCP_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serves [`router`] on a TCP listener (`[http] listen`) until `cancel`: at most
/// [`MAX_TCP_CONNECTIONS`] at once (the change streams among them capped by the hub), request
/// headers within [`TCP_HEADER_TIMEOUT`], an answer's head within 30 s, and a change stream that
/// falls behind is disconnected.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    token: Option<Token>,
    cancel: CancellationToken,
) {
    let app = router(shared, token).layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        std::time::Duration::from_secs(30),
    ));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept on the http listener failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    }
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("http connections exhausted; closing a new one");
            continue;
        };
        crate::http::serve_connection(
            stream,
            &app,
            None,
            crate::http::ConnLimits {
                header_timeout: TCP_HEADER_TIMEOUT,
                max_buf: TCP_HEAD_BUFFER,
                max_headers: TCP_MAX_HEADERS,
            },
            &graceful,
            permit,
        );
    }
    drop(listener);
    if tokio::time::timeout(TCP_DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("http connections still open at stop; dropped");
    }
}
