//! The control API: HTTP/1.1 + JSON over the Unix socket (axum router, own accept loop).
//! Owns request routing, peer-credential authorisation of mutating calls, the error envelope,
//! the protocol header, and the bounds: connections, header-read deadline, body size, time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use ugro_api::{
    Counts, ErrorBody, ErrorDetail, Events, MAX_REQUEST_BODY, PROTOCOL_HEADER, PROTOCOL_VERSION,
    ReloadResult, Status,
};

use crate::daemon::Shared;
use crate::store::{EventFilter, MAX_EVENTS_PER_QUERY};

/// Most connections served at once; further clients wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request may take end to end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long open connections get to finish when the daemon stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

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

    fn internal(e: impl std::fmt::Display) -> Self {
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

/// The routes of the control API.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/reload", post(reload))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{name}", get(node))
        .route("/v1/nodes/{name}/check", post(check_node))
        .route("/v1/runs", get(runs))
        .route("/v1/runs/{*id}", get(run))
        .route("/v1/summary", post(make_summary))
        .route("/v1/summaries", get(summaries))
        .route("/v1/summaries/{date}", get(summary_of))
        .route("/v1/summaries/{date}/send", post(send_summary))
        .route("/metrics", get(crate::metrics::handler))
        .fallback(not_found)
        .with_state(shared)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_REQUEST_BODY,
        ))
        // Outermost, so answers made by the layers above get the envelope and header too.
        .layer(axum::middleware::map_response(envelope))
}

/// Adds the protocol header to every answer and turns any error answer that is not already
/// JSON (404 from routing, 405, 413 from the body limit, 408) into the error envelope.
async fn envelope(mut resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (code, message) = match status {
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                format!("request body larger than {MAX_REQUEST_BODY} bytes"),
            ),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "method not allowed for this path".to_string(),
            ),
            StatusCode::REQUEST_TIMEOUT => ("timeout", "request took too long".to_string()),
            s => ("error", s.canonical_reason().unwrap_or("error").to_string()),
        };
        resp = ApiError::new(status, code, message).into_response();
    }
    resp.headers_mut()
        .insert(PROTOCOL_HEADER, HeaderValue::from(PROTOCOL_VERSION));
    resp
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {}", uri.path()),
    )
}

async fn status(State(shared): State<Arc<Shared>>) -> Result<Json<Status>, ApiError> {
    let now = Utc::now();
    let config = shared.config();
    let (events, events_24h) = shared
        .store
        .event_counts(now - chrono::Duration::hours(24))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        pid: shared.pid,
        started_at: shared.started_at,
        uptime_seconds: (now - shared.started_at).num_seconds().max(0) as u64,
        config_path: config.path.display().to_string(),
        config_loaded_at: shared.config_loaded_at(),
        database_path: shared.store.path().display().to_string(),
        socket_path: config.daemon.socket.display().to_string(),
        counts: Counts {
            nodes: config.nodes.len() as u64,
            roots: config.roots.len() as u64,
            events,
            events_24h,
        },
        tasks: shared.heartbeats.status(),
        store: shared.store.write_status(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// RFC 3339 time, or a duration back from now such as "24h".
    since: Option<String>,
    kind: Option<String>,
    subject: Option<String>,
    limit: Option<u32>,
}

/// Parses `since` as an RFC 3339 time or as a duration back from `now`.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        format!("invalid since \"{s}\": expected a duration such as \"24h\" or an RFC 3339 time")
    })?;
    let d = chrono::Duration::from_std(d).map_err(|_| format!("since \"{s}\" is too long ago"))?;
    Ok(now - d)
}

async fn events(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Events>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let since = q
        .since
        .as_deref()
        .map(|s| parse_since(s, Utc::now()))
        .transpose()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m))?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_EVENTS_PER_QUERY {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("limit {limit} out of range 1..={MAX_EVENTS_PER_QUERY}"),
        ));
    }
    let (events, truncated) = shared
        .store
        .events(&EventFilter {
            since,
            kind: q.kind,
            subject: q.subject,
            limit,
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Events { events, truncated }))
}

async fn reload(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
) -> Result<Json<ReloadResult>, ApiError> {
    authorize_control(&shared, peer).await?;
    match shared.reload("control API").await {
        Ok(r) => Ok(Json(r)),
        Err(e) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_config",
            message: "new configuration rejected; the previous one stays in force".to_string(),
            details: e.lines(),
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    status: Option<String>,
    root: Option<String>,
}

async fn runs(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ugro_api::Runs>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    if let Some(s) = &q.status
        && ugro_api::RunStatus::parse(s).is_none()
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "unknown status \"{s}\": use running, finished, stuck, failed, outdated or unknown"
            ),
        ));
    }
    Ok(Json(ugro_api::Runs {
        runs: shared.runs.list(
            q.status.as_deref(),
            q.root.as_deref().map(std::path::Path::new),
        ),
    }))
}

async fn run(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<ugro_api::RunInfo>, ApiError> {
    let mut info = shared.runs.get(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_run",
            format!("no run \"{id}\" under any root"),
        )
    })?;
    if let Some(root) = shared.runs.root_of(&id) {
        info.epochs = shared
            .store
            .run_epochs(&root.display().to_string(), &id)
            .await
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|(epoch, completed_at)| ugro_api::EpochTime {
                epoch,
                completed_at,
            })
            .collect();
    }
    Ok(Json(info))
}

async fn nodes(State(shared): State<Arc<Shared>>) -> Json<ugro_api::Nodes> {
    Json(ugro_api::Nodes {
        nodes: shared.health.reports(),
    })
}

async fn node(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<ugro_api::NodeHealth>, ApiError> {
    shared
        .health
        .node(&name)
        .map(|n| Json(n.report()))
        .ok_or_else(|| unknown_node(&shared, &name))
}

fn unknown_node(shared: &Shared, name: &str) -> ApiError {
    let known: Vec<String> = shared
        .config()
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_node",
        format!("no node named \"{name}\"; configured: {}", known.join(", ")),
    )
}

/// Runs a sweep of the node now (ignoring the reconnect backoff) and answers with its result.
async fn check_node(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<ugro_api::NodeHealth>, ApiError> {
    authorize_control(&shared, peer).await?;
    let h = shared.config().health.clone();
    let deadline = h.pytorch_timeout.max(h.probe_timeout)
        + crate::ssh::CONNECT_TIMEOUT
        + Duration::from_secs(10);
    match shared.health.check_now(&name, deadline).await {
        Ok(r) => Ok(Json(r)),
        Err(crate::health::CheckNowError::UnknownNode(_)) => Err(unknown_node(&shared, &name)),
        Err(e @ crate::health::CheckNowError::Busy(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            e.to_string(),
        )),
    }
}

fn summary_error(e: crate::summary::SummaryError) -> ApiError {
    use crate::summary::SummaryError as E;
    match e {
        E::NotFound(d) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_summary",
            format!(
                "no summary for {d}: `ugroctl summary` lists none for that date (see GET /v1/summaries)"
            ),
        ),
        e @ E::EmailDisabled(_) => {
            ApiError::new(StatusCode::CONFLICT, "email_disabled", e.to_string())
        }
        e => ApiError::internal(e),
    }
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, ApiError> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("invalid date \"{s}\": use YYYY-MM-DD"),
        )
    })
}

/// Makes a summary now (window: since the last nightly one) and optionally queues its email.
async fn make_summary(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    body: Result<Json<ugro_api::SummaryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ugro_api::SummaryDoc>, ApiError> {
    authorize_control(&shared, peer).await?;
    let Json(req) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    crate::summary::make(
        &shared,
        chrono::Utc::now(),
        crate::summary::Trigger::Request { send: req.send },
    )
    .await
    .map(Json)
    .map_err(summary_error)
}

/// Most summaries listed at once.
const MAX_SUMMARIES_LISTED: u32 = 400;

async fn summaries(
    State(shared): State<Arc<Shared>>,
) -> Result<Json<ugro_api::Summaries>, ApiError> {
    let dir = shared.config().summary.dir.clone();
    let rows = shared
        .store
        .list_summaries(MAX_SUMMARIES_LISTED)
        .await
        .map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(
            shared
                .store
                .info(r, &dir)
                .await
                .map_err(ApiError::internal)?,
        );
    }
    Ok(Json(ugro_api::Summaries { summaries: out }))
}

async fn summary_of(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(date): axum::extract::Path<String>,
) -> Result<Json<ugro_api::SummaryDoc>, ApiError> {
    let date = parse_date(&date)?;
    let dir = shared.config().summary.dir.clone();
    let row = shared
        .store
        .summary_by_date(date)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| summary_error(crate::summary::SummaryError::NotFound(date)))?;
    Ok(Json(
        shared
            .store
            .doc(row, &dir)
            .await
            .map_err(ApiError::internal)?,
    ))
}

/// Queues the email of a stored summary again.
async fn send_summary(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    axum::extract::Path(date): axum::extract::Path<String>,
) -> Result<Json<ugro_api::SummaryDoc>, ApiError> {
    authorize_control(&shared, peer).await?;
    let date = parse_date(&date)?;
    crate::summary::resend(&shared, date)
        .await
        .map(Json)
        .map_err(summary_error)
}

/// Mutating calls are for root, the daemon's own uid, and members of `control_group`.
async fn authorize_control(shared: &Shared, peer: Peer) -> Result<(), ApiError> {
    if peer.uid == 0 || peer.uid == shared.uid {
        return Ok(());
    }
    let group = shared.config().daemon.control_group.clone();
    let member = match &group {
        Some(g) => {
            let g = g.clone();
            tokio::task::spawn_blocking(move || is_group_member(peer, &g))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if member {
        return Ok(());
    }
    tracing::warn!(uid = peer.uid, pid = ?peer.pid, "refused a mutating control call");
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        match group {
            Some(g) => format!(
                "uid {} may not change the daemon: only root, the daemon's user and members of group \"{g}\" may",
                peer.uid
            ),
            None => format!(
                "uid {} may not change the daemon: only root and the daemon's user may (no control_group is set)",
                peer.uid
            ),
        },
    ))
}

/// Is the peer in `group`? Its primary gid, its process's supplementary groups (from /proc),
/// or the group database's member list.
fn is_group_member(peer: Peer, group: &str) -> bool {
    let Ok(Some(g)) = nix::unistd::Group::from_name(group) else {
        return false;
    };
    let gid = g.gid.as_raw();
    if peer.gid == gid {
        return true;
    }
    if let Some(pid) = peer.pid
        && let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        && let Some(line) = status.lines().find(|l| l.starts_with("Groups:"))
        && line
            .split_whitespace()
            .skip(1)
            .any(|x| x.parse::<u32>() == Ok(gid))
    {
        return true;
    }
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid)) {
        Ok(Some(user)) => g.mem.contains(&user.name),
        _ => false,
    }
}

/// The bound control socket. Removes its file on drop if the file is still the one it bound.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    ino: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "another ugro-monitor is already serving on {path}{}; stop it first (systemctl stop ugro-monitor) or use another daemon.socket",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { path: PathBuf, pid: Option<u32> },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ControlSocket {
    /// Binds `path` with mode 0660 (group `group` when it exists and may be set). A stale
    /// socket left by a killed daemon is removed; a live one is never taken over.
    pub async fn bind(path: &Path, group: Option<&str>) -> Result<Self, SocketError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        let io = |op, source| SocketError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            crate::store::create_private_dir(dir).map_err(|e| io("create directory for", e))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::UnixStream::connect(path),
                )
                .await
                {
                    Ok(Ok(_)) | Err(_) => {
                        let pid = ugro_api::Client::new(path)
                            .with_timeout(Duration::from_secs(2))
                            .get::<Status>("/v1/status")
                            .await
                            .ok()
                            .map(|s| s.pid);
                        return Err(SocketError::InUse {
                            path: path.to_path_buf(),
                            pid,
                        });
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tracing::info!(path = %path.display(), "removing stale control socket left by a previous daemon");
                        std::fs::remove_file(path).map_err(|e| io("remove stale socket", e))?;
                    }
                    Ok(Err(e)) => return Err(io("probe existing socket", e)),
                }
            }
            Ok(_) => {
                return Err(SocketError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("inspect", e)),
        }
        let listener = UnixListener::bind(path).map_err(|e| io("bind", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io("set permissions on", e))?;
        if let Some(g) = group {
            match nix::unistd::Group::from_name(g) {
                Ok(Some(grp)) => {
                    if let Err(e) = nix::unistd::chown(path, None, Some(grp.gid)) {
                        tracing::warn!(group = g, error = %e, "cannot give the control socket to its group");
                    }
                }
                _ => tracing::info!(
                    group = g,
                    "control_group does not exist; only root and the daemon's user may change the daemon"
                ),
            }
        }
        let ino = std::fs::metadata(path).map_err(|e| io("stat", e))?.ino();
        Ok(Self {
            listener,
            path: path.to_path_buf(),
            ino,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves `router` on `socket` until `cancel` fires, then drains open connections briefly.
/// Beats `heartbeat` while the accept loop runs.
pub async fn serve(
    socket: ControlSocket,
    router: Router,
    cancel: CancellationToken,
    heartbeat: crate::systemd::Heartbeat,
    beat_every: Duration,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut beat = tokio::time::interval(beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = beat.tick() => { heartbeat.beat(); continue; }
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            r = socket.listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept on control socket failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let peer = match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials; dropping connection");
                continue;
            }
        };
        let svc = router
            .clone()
            .map_request(move |mut req: axum::extract::Request<_>| {
                req.extensions_mut().insert(peer);
                req
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(socket);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some control connections did not finish in time; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_since("24h", now).unwrap().to_rfc3339(),
            "2026-11-21T12:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-11-20T00:00:00+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-19T23:00:00+00:00"
        );
        assert!(
            parse_since("yesterday", now)
                .unwrap_err()
                .contains("\"yesterday\"")
        );
    }
}
