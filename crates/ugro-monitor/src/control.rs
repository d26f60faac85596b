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
use serde::Deserialize;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use ugro_api::{
    Counts, ErrorBody, ErrorDetail, Events, MAX_REQUEST_BODY, PROTOCOL_HEADER, PROTOCOL_VERSION,
    ReloadResult, Status,
};

use crate::http::{ApiError, Peer};
use crate::shared::Shared;
use crate::store::{EventFilter, MAX_EVENTS_PER_QUERY};

pub use crate::http::{MAX_CONNECTIONS, MAX_CONNECTIONS_PER_UID, RESERVED_CONNECTIONS};
/// A client must send its request headers within this time, from connect and between requests
/// on a kept-alive connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A request body must arrive whole within this time.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request target answered (longer: 414 with the error envelope).
pub const MAX_URI_LEN: usize = 8 * 1024;
/// Most bytes of request headers answered (more: 431 with the error envelope).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields answered (more: 431 with the error envelope).
pub const MAX_HEADER_COUNT: usize = 64;
/// hyper's own read buffer: heads larger than this are cut off by hyper itself (bare 431).
const MAX_HEAD_BUFFER: usize = 256 * 1024;
/// How long a refused connection gets to take its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a refused connection's request head is waited for before the 503 is sent anyway.
const REFUSAL_HEAD_TIMEOUT: Duration = Duration::from_millis(250);
/// Most refusals being answered at once (each holds its connection up to
/// [`REFUSAL_WRITE_TIMEOUT`]).
const MAX_REFUSALS: usize = 256;
/// Longest a request may take end to end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long open connections get to finish when the daemon stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

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
        .route("/v1/logs/{*id}", get(crate::logs::handler))
        .route("/v1/summary", post(make_summary))
        .route("/v1/summaries", get(summaries))
        .route("/v1/summaries/{date}", get(summary_of))
        .route("/v1/summaries/{date}/send", post(send_summary))
        .route("/v1/stream", get(crate::stream::handler))
        .route("/metrics", get(crate::metrics::handler))
        .fallback(not_found)
        .with_state(shared.clone())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_REQUEST_BODY,
        ))
        .layer(axum::middleware::from_fn_with_state(shared, guard))
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

/// Checks a request before any handler sees it: the size of its target and headers (414/431
/// with the envelope, below hyper's own hard limits), and for every changing method the caller's
/// right to change the daemon *before* its body is read, then the whole body within
/// [`BODY_READ_TIMEOUT`]. A user who may not change the daemon can never hold a connection open
/// by sending half a body.
async fn guard(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let target_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > MAX_URI_LEN {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("request target of {target_len} bytes; at most {MAX_URI_LEN} are read"),
        )
        .into_response();
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.as_bytes().len() + 4)
        .sum();
    if headers.len() > MAX_HEADER_COUNT || header_bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "{} header fields, {header_bytes} bytes; at most {MAX_HEADER_COUNT} fields and {MAX_HEADER_BYTES} bytes are read",
                headers.len()
            ),
        )
        .into_response();
    }
    if matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<Peer>().copied();
    if let Some(peer) = peer
        && let Err(e) = authorize_control(&shared, peer).await
    {
        return e.into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BODY as u64) {
        // Refused from its Content-Length, before any of it is read.
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body larger than {MAX_REQUEST_BODY} bytes"),
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_REQUEST_BODY),
    )
    .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body unreadable or larger than {MAX_REQUEST_BODY} bytes: {e}"),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "request body not received within {}s",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            )
            .into_response();
        }
    };
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
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
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .filter(|t| t.timestamp() >= 0)
        .ok_or_else(|| format!("invalid since \"{s}\": reaches back before 1970"))
}

/// Checks an events query and turns it into the store's filter: every parameter parsed and
/// range-checked here (a bad one is a 400, never a panic further down).
fn events_filter(q: EventsQuery, now: DateTime<Utc>) -> Result<EventFilter, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let since = q
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()
        .map_err(bad)?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_EVENTS_PER_QUERY {
        return Err(bad(format!(
            "limit {limit} out of range 1..={MAX_EVENTS_PER_QUERY}"
        )));
    }
    for (name, v) in [("kind", &q.kind), ("subject", &q.subject)] {
        if v.as_ref().is_some_and(|v| v.len() > MAX_FILTER_LEN) {
            return Err(bad(format!("{name} longer than {MAX_FILTER_LEN} bytes")));
        }
    }
    Ok(EventFilter {
        since,
        kind: q.kind,
        subject: q.subject,
        limit,
    })
}

/// Longest `kind` or `subject` filter accepted.
const MAX_FILTER_LEN: usize = 1024;

async fn events(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Events>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let filter = events_filter(q, Utc::now())?;
    let (events, truncated) = shared
        .store
        .events(&filter)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Events {
        events: events.iter().map(Into::into).collect(),
        truncated,
    }))
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
) -> Result<Response, ApiError> {
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
    if let Some(root) = &q.root {
        let config = shared.config();
        if !config.roots.iter().any(|r| r.path == Path::new(root)) {
            let known: Vec<String> = config
                .roots
                .iter()
                .map(|r| r.path.display().to_string())
                .collect();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_root",
                format!(
                    "no root \"{root}\" is configured; configured: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let bytes = if q.status.is_none() && q.root.is_none() {
        full_run_list(&shared).await?
    } else {
        // Filtered lists are built per request: a few at a time, so memory stays bounded
        // however many readers ask at once.
        let _turn = FILTERED_LISTS.acquire().await.map_err(ApiError::internal)?;
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || {
            shared
                .runs
                .to_json(q.status.as_deref(), q.root.as_deref().map(Path::new))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .into()
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response())
}

/// Filtered run lists being serialised at once.
static FILTERED_LISTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The whole run list as JSON, serialised once per change of the list and shared by every
/// reader until the next change (one copy in memory however many clients ask at once).
async fn full_run_list(shared: &Arc<Shared>) -> Result<axum::body::Bytes, ApiError> {
    let mut cache = shared.runs_json.lock().await;
    let generation = shared.runs.generation();
    if let Some((g, bytes)) = cache.as_ref()
        && *g == generation
    {
        return Ok(bytes.clone());
    }
    let s = shared.clone();
    let bytes: axum::body::Bytes = tokio::task::spawn_blocking(move || s.runs.to_json(None, None))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .into();
    *cache = Some((generation, bytes.clone()));
    Ok(bytes)
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
            .map(|(epoch, completed_at)| crate::view::EpochTime {
                epoch,
                completed_at,
            })
            .collect();
    }
    let mut out: ugro_api::RunInfo = (&info).into();
    if let Some(logs) = crate::logs::locate(&shared, &id) {
        out.logs = logs.list().await.unwrap_or_default();
    }
    out.slurm = shared.slurm.job_of(&id);
    Ok(Json(out))
}

async fn nodes(State(shared): State<Arc<Shared>>) -> Json<ugro_api::Nodes> {
    Json(ugro_api::Nodes {
        nodes: shared.health.reports().iter().map(Into::into).collect(),
    })
}

async fn node(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<ugro_api::NodeHealth>, ApiError> {
    shared
        .health
        .node(&name)
        .map(|n| Json((&n.report()).into()))
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
        Ok(r) => Ok(Json((&r).into())),
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
        &*shared,
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
    crate::summary::resend(&*shared, date)
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
    #[error("cannot {op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
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
            cause: source,
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

/// Connections currently held per peer uid; a [`UidSlot`] gives its place back on drop.
#[derive(Debug, Default)]
struct PerUid(std::sync::Mutex<std::collections::HashMap<u32, usize>>);

/// One connection's place in [`PerUid`].
#[derive(Debug)]
struct UidSlot {
    table: Arc<PerUid>,
    uid: u32,
}

impl PerUid {
    /// Takes a place for `uid` unless it already holds `cap`.
    fn take(self: &Arc<Self>, uid: u32, cap: usize) -> Option<UidSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(uid).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(UidSlot {
            table: self.clone(),
            uid,
        })
    }
}

impl Drop for UidSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.uid);
            }
        }
    }
}

/// Why a connection was turned away before it was served.
fn refusal(uid: u32, why: &str) -> Vec<u8> {
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code: "too_many_connections".to_string(),
            message: format!("uid {uid}: {why}; try again shortly"),
            details: Vec::new(),
        },
    })
    .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\n{PROTOCOL_HEADER}: {PROTOCOL_VERSION}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Answers a refused connection with a 503 and closes it: reads what the client sends of its
/// request head first (a client that is answered before it has sent its request sees a broken
/// connection, not the answer), all bounded in time and size.
/// At most [`MAX_REFUSALS`] are under way; past that a refused connection is simply closed.
fn refuse(
    refusals: &Arc<tokio::sync::Semaphore>,
    mut stream: tokio::net::UnixStream,
    uid: u32,
    why: &'static str,
) {
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        // Too many refusals under way: say it without waiting, if the socket takes it at once.
        let _ = stream.try_write(&refusal(uid, why));
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let answer = refusal(uid, why);
        let _ = tokio::time::timeout(REFUSAL_HEAD_TIMEOUT, async {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            while head.len() < 8 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
            stream.write_all(&answer).await?;
            stream.shutdown().await
        })
        .await;
    });
}

/// Serves `router` on `socket` until `cancel` fires, then drains open connections briefly.
///
/// The accept loop never blocks without beating `heartbeat`: a daemon nobody talks to is idle,
/// not dead. Each connection is bounded: a header deadline (also between keep-alive requests),
/// a body deadline (see [`guard`]), [`MAX_CONNECTIONS`] in all with [`RESERVED_CONNECTIONS`] of
/// those kept for root and the daemon's own uid, and at most [`MAX_CONNECTIONS_PER_UID`] for
/// any other peer uid. A connection past a bound is answered 503 at once instead of waiting in the
/// backlog, so one user's idle or half-sent connections never make another wait.
pub async fn serve(
    socket: ControlSocket,
    router: Router,
    cancel: CancellationToken,
    heartbeat: crate::systemd::Heartbeat,
    beat_every: Duration,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_uid = Arc::new(PerUid::default());
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS));
    let own_uid = nix::unistd::geteuid().as_raw();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut beat = tokio::time::interval(beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = beat.tick() => { heartbeat.beat(); continue; }
            r = socket.listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning (still beating).
                    tracing::warn!(error = %e, "accept on control socket failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
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
        let privileged = peer.uid == 0 || peer.uid == own_uid;
        // Others may not take the last reserved places.
        let permit = (privileged || permits.available_permits() > RESERVED_CONNECTIONS)
            .then(|| permits.clone().try_acquire_owned().ok())
            .flatten();
        let Some(permit) = permit else {
            tracing::debug!(uid = peer.uid, "control connections exhausted; refusing");
            refuse(
                &refusals,
                stream,
                peer.uid,
                "the daemon is serving too many connections",
            );
            continue;
        };
        // Root and the daemon's own uid are bounded by the total alone (and have their reserve).
        let cap = if privileged {
            MAX_CONNECTIONS
        } else {
            MAX_CONNECTIONS_PER_UID
        };
        let Some(slot) = per_uid.take(peer.uid, cap) else {
            tracing::debug!(uid = peer.uid, "per-uid connection cap reached; refusing");
            refuse(
                &refusals,
                stream,
                peer.uid,
                "too many open connections from this user",
            );
            continue;
        };
        crate::http::serve_connection(
            stream,
            &router,
            Some(peer),
            crate::http::ConnLimits {
                header_timeout: HEADER_READ_TIMEOUT,
                max_buf: MAX_HEAD_BUFFER,
                max_headers: MAX_HEADER_COUNT * 4,
            },
            &graceful,
            (slot, permit),
        );
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
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// Runs a raw query string through the extractor and the checks, as a request would.
    fn events_query(raw: &str) -> Result<EventFilter, ApiError> {
        let uri: axum::http::Uri = format!("/v1/events?{raw}")
            .parse()
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "bad uri"))?;
        let Query(q) = Query::<EventsQuery>::try_from_uri(&uri)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
        events_filter(q, now())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any text as `since`: an answer or a message, never a panic; a time it gives is never
        /// before 1970.
        #[test]
        fn since_never_panics(s in ".{0,40}") {
            if let Ok(t) = parse_since(&s, now()) {
                prop_assert!(t.timestamp() >= 0);
            }
        }

        /// Durations of any size, in any unit humantime knows.
        #[test]
        fn huge_durations_are_refused_not_panicked_on(
            n in any::<u64>(),
            unit in prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", "w", "M", "y"]),
        ) {
            let s = format!("{n}{unit}");
            match parse_since(&s, now()) {
                Ok(t) => prop_assert!(t <= now()),
                Err(m) => prop_assert!(m.contains(&s)),
            }
        }

        /// Whole query strings of parameter-ish junk: a filter or a 400, never a panic.
        #[test]
        fn events_queries_never_panic(
            parts in prop::collection::vec(
                (prop::sample::select(vec!["since", "limit", "kind", "subject", "colour", ""]),
                 "[a-zA-Z0-9%+:._ -]{0,24}"),
                0..5,
            )
        ) {
            let raw: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={}", v.replace(' ', "%20"))).collect();
            match events_query(&raw.join("&")) {
                Ok(f) => {
                    prop_assert!((1..=MAX_EVENTS_PER_QUERY).contains(&f.limit));
                    prop_assert!(f.since.is_none_or(|t| t.timestamp() >= 0));
                }
                Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
            }
        }
    }

    #[test]
    fn the_reported_crashers_are_400s() {
        for raw in [
            "since=300000y",
            "since=500000000y",
            "since=18446744073709551615s",
            "limit=4294967296",
            "limit=0",
            "limit=-1",
        ] {
            let e = events_query(raw)
                .err()
                .unwrap_or_else(|| panic!("{raw} accepted"));
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{raw}");
        }
        assert!(events_query("since=24h&limit=5&kind=daemon.").is_ok());
    }

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
