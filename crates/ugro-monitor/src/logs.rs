//! Serving run logs (`GET /v1/logs/{*id}`): which file (the run's newest log, or `?file=` one of
//! its logs), a window of it read by seek (local) or by one exec on the node's SSH session
//! (remote), the last N lines read backwards in blocks, and the follow stream (server-sent
//! events; inotify with a poll fallback locally, a poll every 500 ms remotely) that reports
//! truncation and rotation. Never reads a whole file; every read and buffer is bounded.

use std::convert::Infallible;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use ugro_api::{LogChunk, LogFile, LogFileState, LogWindow};
use ugro_core::runs as core;

use crate::config::defaults;
use crate::http::ApiError;
use crate::shared::Shared;
use crate::ssh::{Exec, NodeSession, shell_quote};

/// Bytes read per block when reading backwards for the last lines.
pub const TAIL_BLOCK: u64 = 64 * 1024;
/// Most bytes one `log` event of a follow carries.
pub const FOLLOW_CHUNK: u64 = 64 * 1024;
/// Most bytes a follow sends per wake before it checks the client again.
const FOLLOW_BURST: u64 = 1024 * 1024;
/// A local follow's poll when inotify works (a safety net), and when it does not.
const LOCAL_POLL: Duration = Duration::from_secs(1);
const LOCAL_POLL_NO_INOTIFY: Duration = Duration::from_millis(250);
/// A remote follow's poll.
pub const REMOTE_POLL: Duration = Duration::from_millis(500);
/// The deadline of one remote read.
pub const REMOTE_DEADLINE: Duration = Duration::from_secs(10);
/// Events queued for one follow client.
const FOLLOW_QUEUE: usize = 8;
/// Most follows open at once (each holds a control connection).
pub const MAX_FOLLOWS: usize = 64;
/// Most log files listed for one run.
pub const MAX_LOG_FILES: usize = 256;
/// Keep-alive comments of a follow (the client counts a silence of 45 s as dead).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

static FOLLOWS: Semaphore = Semaphore::const_new(MAX_FOLLOWS);

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{op} {path} on node {node}: {message}")]
    Remote {
        op: &'static str,
        node: String,
        path: String,
        message: String,
    },
    #[error("read of {path} on node {node} did not finish within {deadline:?}")]
    RemoteTimeout {
        node: String,
        path: String,
        deadline: Duration,
    },
}

impl LogsError {
    fn missing(&self) -> bool {
        match self {
            LogsError::Io { cause, .. } => cause.kind() == std::io::ErrorKind::NotFound,
            LogsError::Remote { message, .. } => message.contains("No such file"),
            LogsError::RemoteTimeout { .. } => false,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LogsError + 'a {
    move |cause| LogsError::Io {
        op,
        path: path.to_path_buf(),
        cause,
    }
}

/// Where a run's files are: this machine, or a node over its SSH session.
#[derive(Debug, Clone)]
pub enum Place {
    Local,
    Remote {
        node: String,
        session: Arc<NodeSession>,
    },
}

/// A window of a file: the file's size and inode when read, and the bytes from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub size: u64,
    pub ino: u64,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl Chunk {
    pub fn next_offset(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }
}

/// Resolves a requested offset against a size: negative counts from the end; clamped to
/// `0..=size`.
pub fn resolve_offset(offset: i64, size: u64) -> u64 {
    if offset < 0 {
        size.saturating_sub(offset.unsigned_abs())
    } else {
        offset.unsigned_abs().min(size)
    }
}

/// Where the last `n` lines of `bytes` start (a last line without its newline counts), or
/// `None` when `bytes` holds fewer than `n` line starts and does not begin the file
/// (`at_start`).
pub fn last_lines_start(bytes: &[u8], n: u64, at_start: bool) -> Option<usize> {
    if n == 0 {
        return Some(bytes.len());
    }
    let mut end = bytes.len();
    if bytes.last() == Some(&b'\n') {
        end -= 1;
    }
    let mut count = 0;
    for (i, b) in bytes[..end].iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == n {
                return Some(i + 1);
            }
        }
    }
    at_start.then_some(0)
}

// ---------------------------------------------------------------------------------------------
// Local reads (blocking: callers run them on the blocking pool)

/// Reads at most `limit` bytes of `path` from `offset` (negative: from the end) by seek.
pub fn local_window(path: &Path, offset: i64, limit: u64) -> Result<Chunk, LogsError> {
    let mut f = fs::File::open(path).map_err(io("open", path))?;
    let meta = f.metadata().map_err(io("stat", path))?;
    let size = meta.len();
    let start = resolve_offset(offset, size);
    f.seek(SeekFrom::Start(start)).map_err(io("seek", path))?;
    let want = limit.min(size - start);
    let mut bytes = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    f.take(want)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    Ok(Chunk {
        size,
        ino: meta.ino(),
        offset: start,
        bytes,
    })
}

/// The last `lines` lines of `path`, read backwards in [`TAIL_BLOCK`]s until enough newlines
/// are seen, never more than `cap` bytes (then the partial first line is dropped).
pub fn local_tail(path: &Path, lines: u64, cap: u64) -> Result<Chunk, LogsError> {
    let mut f = fs::File::open(path).map_err(io("open", path))?;
    let meta = f.metadata().map_err(io("stat", path))?;
    let size = meta.len();
    let mut start = size;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if let Some(i) = last_lines_start(&buf, lines, start == 0) {
            buf.drain(..i);
            return Ok(Chunk {
                size,
                ino: meta.ino(),
                offset: start + i as u64,
                bytes: buf,
            });
        }
        let have = size - start;
        if have >= cap {
            let cut = buf
                .iter()
                .position(|b| *b == b'\n')
                .map_or(buf.len(), |p| p + 1);
            buf.drain(..cut);
            return Ok(Chunk {
                size,
                ino: meta.ino(),
                offset: start + cut as u64,
                bytes: buf,
            });
        }
        let block = TAIL_BLOCK.min(start).min(cap - have);
        start -= block;
        f.seek(SeekFrom::Start(start)).map_err(io("seek", path))?;
        let mut front = Vec::with_capacity(usize::try_from(block).unwrap_or(0));
        (&mut f)
            .take(block)
            .read_to_end(&mut front)
            .map_err(io("read", path))?;
        if (front.len() as u64) < block {
            // The file shrank under us: read what is there now from the start.
            return local_window(path, 0, cap);
        }
        front.extend_from_slice(&buf);
        buf = front;
    }
}

// ---------------------------------------------------------------------------------------------
// Remote reads: one exec on the node's session

/// The one command of a remote read: the size, inode and resolved offset on the first line,
/// then at most `limit` bytes from the offset, base64-encoded (byte-exact over the channel).
pub fn remote_command(path: &str, offset: i64, limit: u64) -> String {
    let f = shell_quote(path);
    let off = if offset < 0 {
        format!(
            "off=$((size - {n})); [ \"$off\" -lt 0 ] && off=0",
            n = offset.unsigned_abs()
        )
    } else {
        format!("off={offset}; [ \"$off\" -gt \"$size\" ] && off=$size")
    };
    format!(
        "st=$(stat -L -c '%s %i' -- {f}) || exit 3; set -- $st; size=$1; ino=$2; {off}; \
         echo \"$size $ino $off\"; tail -c +$((off + 1)) -- {f} | head -c {limit} | base64 -w0"
    )
}

/// Parses the output of [`remote_command`].
pub fn parse_remote(out: &str) -> Result<Chunk, String> {
    let (head, body) = out.split_once('\n').unwrap_or((out, ""));
    let nums: Vec<u64> = head
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad header {head:?}: {e}"))?;
    let [size, ino, offset] = nums[..] else {
        return Err(format!("bad header {head:?}"));
    };
    let bytes = base64_decode(body.trim()).ok_or_else(|| "bad base64 body".to_string())?;
    Ok(Chunk {
        size,
        ino,
        offset,
        bytes,
    })
}

/// What one remote read cost on the channel (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelBytes(pub usize);

/// Reads a window of `path` on a remote node with one exec (see [`remote_command`]).
pub async fn remote_window(
    session: &NodeSession,
    node: &str,
    path: &str,
    offset: i64,
    limit: u64,
) -> Result<(Chunk, ChannelBytes), LogsError> {
    let remote = |message: String| LogsError::Remote {
        op: "read",
        node: node.to_owned(),
        path: path.to_owned(),
        message,
    };
    let out = match session
        .exec(&remote_command(path, offset, limit), REMOTE_DEADLINE)
        .await
    {
        Ok(Exec::Done(o)) => o,
        Ok(Exec::Hung) => {
            return Err(LogsError::RemoteTimeout {
                node: node.to_owned(),
                path: path.to_owned(),
                deadline: REMOTE_DEADLINE,
            });
        }
        Err(e) => return Err(remote(e.to_string())),
    };
    if out.exit_status != Some(0) {
        return Err(remote(format!(
            "exit {:?}: {}",
            out.exit_status,
            out.stderr.trim()
        )));
    }
    if out.truncated {
        return Err(remote(
            "answer larger than the session's output bound".into(),
        ));
    }
    let chunk = parse_remote(&out.stdout).map_err(remote)?;
    Ok((chunk, ChannelBytes(out.stdout.len() + out.stderr.len())))
}

/// The last `lines` lines of a remote file: windows from the end, growing ×4 from
/// [`TAIL_BLOCK`] up to `cap`, until enough newlines are seen. Returns the channel bytes of all
/// the reads.
pub async fn remote_tail(
    session: &NodeSession,
    node: &str,
    path: &str,
    lines: u64,
    cap: u64,
) -> Result<(Chunk, ChannelBytes), LogsError> {
    let mut block = TAIL_BLOCK.min(cap.max(1));
    let mut spent = 0;
    loop {
        let (mut c, ChannelBytes(n)) =
            remote_window(session, node, path, -(block as i64), block).await?;
        spent += n;
        if let Some(i) = last_lines_start(&c.bytes, lines, c.offset == 0) {
            c.bytes.drain(..i);
            c.offset += i as u64;
            return Ok((c, ChannelBytes(spent)));
        }
        if block >= cap {
            let cut = c
                .bytes
                .iter()
                .position(|b| *b == b'\n')
                .map_or(c.bytes.len(), |p| p + 1);
            c.bytes.drain(..cut);
            c.offset += cut as u64;
            return Ok((c, ChannelBytes(spent)));
        }
        block = (block * 4).min(cap);
    }
}

/// Standard base64 (RFC 4648, with padding) as `base64 -w0` writes it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

// ---------------------------------------------------------------------------------------------
// Which run, which file

/// A run's log files, found where the run is.
#[derive(Debug, Clone)]
pub struct RunLogs {
    pub run: String,
    pub node: String,
    pub place: Place,
    pub work_dir: PathBuf,
    /// The run's newest log of its kind, as the tracker saw it.
    pub newest: Option<String>,
    pub globs: Vec<String>,
}

/// The name this daemon gives its own machine: the configured local node, else `local`.
fn local_node_name(shared: &Shared) -> String {
    shared
        .config()
        .nodes
        .iter()
        .find(|n| matches!(n.host, crate::config::NodeHost::Local))
        .map_or_else(|| "local".to_string(), |n| n.name.clone())
}

/// Finds a run and where its logs are: this machine, or for a root on a node's disk
/// (`[[roots]] node`) that node over its health session.
pub fn locate(shared: &Shared, id: &str) -> Option<RunLogs> {
    let info = shared.runs.get(id)?;
    let root = shared.runs.root_of(id);
    let config = shared.config();
    let candidates: Vec<_> = config
        .roots
        .iter()
        .filter(|c| root.as_ref() == Some(&c.path))
        .collect();
    // Two roots may share a path on different nodes: the run id names the node.
    let root_cfg = candidates
        .iter()
        .find(|c| {
            c.node
                .as_ref()
                .is_some_and(|n| id.starts_with(&format!("{n}:")))
        })
        .or_else(|| candidates.first())
        .copied();
    let globs = root_cfg.map(|c| c.log_globs.clone()).unwrap_or_default();
    let remote = root_cfg
        .and_then(|c| c.node.clone())
        .and_then(|n| Some((shared.health.node(&n)?.session()?.clone(), n)));
    let (node, place) = match remote {
        Some((session, node)) => (node.clone(), Place::Remote { node, session }),
        None => (local_node_name(shared), Place::Local),
    };
    let work_dir = PathBuf::from(info.work_dir);
    // The tracker names the newest log by its absolute path.
    let newest = info.log.and_then(|l| {
        Path::new(&l)
            .strip_prefix(&work_dir)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    });
    Some(RunLogs {
        run: info.id,
        node,
        place,
        work_dir,
        newest,
        globs,
    })
}

/// Lists the log files of a local run dir: `*.log` in it, `logs/*.log`, the root's globs; at
/// most [`MAX_LOG_FILES`], by name. A missing dir lists nothing.
pub fn list_local(work_dir: &Path, globs: &[String]) -> Vec<LogFile> {
    let mut out = Vec::new();
    let mut dirs = vec![""];
    dirs.extend(core::log_dirs(globs));
    for sub in dirs {
        let dir = if sub.is_empty() {
            work_dir.to_path_buf()
        } else {
            work_dir.join(sub)
        };
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for entry in rd.flatten() {
            if out.len() >= MAX_LOG_FILES {
                break;
            }
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if sub.is_empty() {
                name
            } else {
                format!("{sub}/{name}")
            };
            let in_logs = sub.is_empty() || sub == core::LOGS_DIR;
            let is_log = (in_logs && core::is_log_of(core::RunnerKind::Unknown, &rel))
                || globs.iter().any(|g| core::glob_match(g, &rel));
            if !is_log {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            out.push(LogFile {
                name: rel,
                size: meta.len(),
                modified: meta.modified().ok().map(Into::into),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The remote listing command: `size mtime name` of each log, from the run dir.
fn remote_list_command(work_dir: &str, globs: &[String]) -> String {
    let mut pats = vec!["*.log".to_string(), format!("{}/*.log", core::LOGS_DIR)];
    pats.extend(globs.iter().cloned());
    // Globs are validated (no quotes needed beyond the shell's own word splitting of `*`/`?`);
    // quote every other character.
    let pats: Vec<String> = pats
        .iter()
        .map(|p| {
            p.split_inclusive(['*', '?'])
                .map(|part| {
                    let (lit, wild) = match part.strip_suffix(['*', '?']) {
                        Some(l) => (l, &part[l.len()..]),
                        None => (part, ""),
                    };
                    let q = if lit.is_empty() {
                        String::new()
                    } else {
                        shell_quote(lit)
                    };
                    format!("{q}{wild}")
                })
                .collect()
        })
        .collect();
    format!(
        "cd {} || exit 3; for f in {}; do [ -f \"$f\" ] && stat -c '%s %Y %n' -- \"$f\"; done; exit 0",
        shell_quote(work_dir),
        pats.join(" ")
    )
}

/// Lists a remote run dir's logs with one exec.
pub async fn list_remote(
    session: &NodeSession,
    node: &str,
    work_dir: &str,
    globs: &[String],
) -> Result<Vec<LogFile>, LogsError> {
    let cmd = remote_list_command(work_dir, globs);
    let out = match session.exec(&cmd, REMOTE_DEADLINE).await {
        Ok(Exec::Done(o)) if o.exit_status == Some(0) => o,
        Ok(Exec::Done(o)) => {
            return Err(LogsError::Remote {
                op: "list",
                node: node.into(),
                path: work_dir.into(),
                message: o.stderr.trim().to_string(),
            });
        }
        Ok(Exec::Hung) => {
            return Err(LogsError::RemoteTimeout {
                node: node.into(),
                path: work_dir.into(),
                deadline: REMOTE_DEADLINE,
            });
        }
        Err(e) => {
            return Err(LogsError::Remote {
                op: "list",
                node: node.into(),
                path: work_dir.into(),
                message: e.to_string(),
            });
        }
    };
    let mut files: Vec<LogFile> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let size = it.next()?.parse().ok()?;
            let mtime: i64 = it.next()?.parse().ok()?;
            let name = it.next()?.to_string();
            Some(LogFile {
                name,
                size,
                modified: chrono::DateTime::from_timestamp(mtime, 0),
            })
        })
        .take(MAX_LOG_FILES)
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files.dedup_by(|a, b| a.name == b.name);
    Ok(files)
}

impl RunLogs {
    /// The run's log files.
    pub async fn list(&self) -> Result<Vec<LogFile>, LogsError> {
        match &self.place {
            Place::Local => {
                let (dir, globs) = (self.work_dir.clone(), self.globs.clone());
                Ok(
                    tokio::task::spawn_blocking(move || list_local(&dir, &globs))
                        .await
                        .unwrap_or_default(),
                )
            }
            Place::Remote { node, session } => {
                list_remote(session, node, &self.work_dir.to_string_lossy(), &self.globs).await
            }
        }
    }

    /// The file a request means: `file` when it is one of the run's logs, else the tracker's
    /// newest log, else the most recently modified log. `Err` is the answer to give.
    pub async fn pick(&self, file: Option<&str>) -> Result<String, ApiError> {
        let files = self.list().await.map_err(|e| read_error(&e))?;
        if let Some(f) = file {
            return files
                .iter()
                .find(|l| l.name == f)
                .map(|l| l.name.clone())
                .ok_or_else(|| {
                    let mut e = ApiError::new(
                        StatusCode::NOT_FOUND,
                        "unknown_log",
                        format!("run \"{}\" has no log file \"{f}\"", self.run),
                    );
                    e.details = files.iter().map(|l| l.name.clone()).collect();
                    e
                });
        }
        if let Some(n) = &self.newest
            && files.iter().any(|l| &l.name == n)
        {
            return Ok(n.clone());
        }
        files
            .iter()
            .max_by(|a, b| {
                a.modified
                    .cmp(&b.modified)
                    .then_with(|| a.name.cmp(&b.name))
            })
            .map(|l| l.name.clone())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no_log",
                    format!(
                        "run \"{}\" has no log file (looked for *.log and {}/*.log{})",
                        self.run,
                        core::LOGS_DIR,
                        if self.globs.is_empty() {
                            String::new()
                        } else {
                            format!(" and {}", self.globs.join(", "))
                        }
                    ),
                )
            })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.work_dir.join(name)
    }

    /// A window of `name`: `lines` from the end when given (bounded by `limit`), else
    /// `limit` bytes from `offset`.
    pub async fn read(
        &self,
        name: &str,
        offset: i64,
        limit: u64,
        lines: Option<u64>,
    ) -> Result<Chunk, LogsError> {
        let path = self.path_of(name);
        match &self.place {
            Place::Local => tokio::task::spawn_blocking(move || match lines {
                Some(n) => local_tail(&path, n, limit),
                None => local_window(&path, offset, limit),
            })
            .await
            .unwrap_or_else(|e| {
                Err(LogsError::Io {
                    op: "read",
                    path: PathBuf::new(),
                    cause: std::io::Error::other(e.to_string()),
                })
            }),
            Place::Remote { node, session } => {
                let p = path.to_string_lossy();
                match lines {
                    Some(n) => remote_tail(session, node, &p, n, limit).await,
                    None => remote_window(session, node, &p, offset, limit).await,
                }
                .map(|(c, _)| c)
            }
        }
    }
}

fn read_error(e: &LogsError) -> ApiError {
    if e.missing() {
        return ApiError::new(StatusCode::NOT_FOUND, "log_missing", e.to_string());
    }
    match e {
        LogsError::Io { .. } => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "log_unreadable",
            e.to_string(),
        ),
        LogsError::Remote { .. } | LogsError::RemoteTimeout { .. } => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_unreachable",
            e.to_string(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The endpoint

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    offset: Option<i64>,
    limit: Option<u64>,
    /// The last N lines (then `offset` is not used; `limit` bounds the bytes read).
    lines: Option<u64>,
    file: Option<String>,
    follow: Option<bool>,
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<u64>,
}

/// `GET /v1/logs/{*id}?offset=N&limit=BYTES[&lines=N][&file=NAME][&follow=true]`: a window of
/// a run's log as JSON, or with `follow=true` its appended chunks as server-sent events. Usable
/// on any router whose state is the daemon's [`Shared`].
pub async fn handler(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    parts: Parts,
) -> Response {
    match serve(&shared, &id, &parts).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(shared: &Arc<Shared>, id: &str, parts: &Parts) -> Result<Response, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    let Query(q) = Query::<LogsQuery>::try_from_uri(&parts.uri).map_err(|e| bad(e.body_text()))?;
    let limit = q.limit.unwrap_or(match q.lines {
        Some(_) => defaults::LOG_WINDOW_MAX,
        None => defaults::LOG_WINDOW,
    });
    if limit == 0 || limit > defaults::LOG_WINDOW_MAX {
        return Err(bad(format!(
            "limit = {limit}: must be 1 to {} bytes",
            defaults::LOG_WINDOW_MAX
        )));
    }
    if q.lines.is_some_and(|n| n > 1_000_000) {
        return Err(bad("lines: at most 1000000".into()));
    }
    if q.offset.is_some_and(|o| o == i64::MIN) {
        return Err(bad("offset out of range".into()));
    }
    let logs = locate(shared, id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_run",
            format!("no run \"{id}\" under any root"),
        )
    })?;
    let name = logs.pick(q.file.as_deref()).await?;
    if q.follow.unwrap_or(false) {
        let last = parts
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .or(q.last_event_id);
        return follow(logs, name, last, q.offset);
    }
    let chunk = logs
        .read(&name, q.offset.unwrap_or(0), limit, q.lines)
        .await
        .map_err(|e| read_error(&e))?;
    let path = logs.path_of(&name);
    Ok(axum::Json(LogWindow {
        run: logs.run.clone(),
        node: logs.node.clone(),
        path: path.to_string_lossy().into_owned(),
        file: name.clone(),
        size: chunk.size,
        offset: chunk.offset,
        next_offset: chunk.next_offset(),
        text: String::from_utf8_lossy(&chunk.bytes).into_owned(),
    })
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Following

/// What a follow reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEvent {
    Data {
        offset: u64,
        bytes: Vec<u8>,
    },
    /// The file shrank below the offset: following goes on from 0.
    Truncated {
        size: u64,
    },
    /// The path names another file now: following goes on from 0 of the new one.
    Rotated {
        size: u64,
    },
}

/// A local follow's state: the open file (kept across a rename, so the rest of a rotated file
/// is still read), its identity and the offset reached.
#[derive(Debug)]
pub struct LocalFollow {
    path: PathBuf,
    file: Option<fs::File>,
    id: (u64, u64),
    pub offset: u64,
}

impl LocalFollow {
    /// Opens `path` and starts at `offset` (negative: from the end; `None`: at the end).
    pub fn open(path: &Path, offset: Option<i64>) -> Result<(LocalFollow, u64), LogsError> {
        let file = fs::File::open(path).map_err(io("open", path))?;
        let meta = file.metadata().map_err(io("stat", path))?;
        let start = offset.map_or(meta.len(), |o| resolve_offset(o, meta.len()));
        Ok((
            LocalFollow {
                path: path.to_path_buf(),
                file: Some(file),
                id: (meta.dev(), meta.ino()),
                offset: start,
            },
            meta.len(),
        ))
    }

    /// Reads what was appended (at most `budget` bytes, in chunks), then checks for
    /// truncation and rotation.
    pub fn step(&mut self, budget: u64) -> Result<Vec<FollowEvent>, LogsError> {
        let mut out = Vec::new();
        let mut left = budget;
        if let Some(f) = &mut self.file {
            let size = f.metadata().map_err(io("stat", &self.path))?.len();
            if size < self.offset {
                self.offset = 0;
                out.push(FollowEvent::Truncated { size });
            }
            read_chunks(f, &self.path, &mut self.offset, &mut left, &mut out)?;
        }
        if left == 0 {
            return Ok(out);
        }
        // Rotation: the path now names another file (or appeared again).
        match fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) != self.id || self.file.is_none() => {
                let f = fs::File::open(&self.path).map_err(io("open", &self.path))?;
                let m = f.metadata().map_err(io("stat", &self.path))?;
                self.id = (m.dev(), m.ino());
                self.offset = 0;
                out.push(FollowEvent::Rotated { size: m.len() });
                self.file = Some(f);
                if let Some(f) = &mut self.file {
                    read_chunks(f, &self.path, &mut self.offset, &mut left, &mut out)?;
                }
            }
            _ => {}
        }
        Ok(out)
    }

    /// The directory whose changes wake the follow.
    pub fn dir(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
    }
}

fn read_chunks(
    f: &mut fs::File,
    path: &Path,
    offset: &mut u64,
    left: &mut u64,
    out: &mut Vec<FollowEvent>,
) -> Result<(), LogsError> {
    while *left > 0 {
        f.seek(SeekFrom::Start(*offset)).map_err(io("seek", path))?;
        let want = FOLLOW_CHUNK.min(*left);
        let mut bytes = Vec::new();
        (&mut *f)
            .take(want)
            .read_to_end(&mut bytes)
            .map_err(io("read", path))?;
        if bytes.is_empty() {
            break;
        }
        *left -= bytes.len() as u64;
        let at = *offset;
        *offset += bytes.len() as u64;
        out.push(FollowEvent::Data { offset: at, bytes });
    }
    Ok(())
}

/// A remote follow's state: the file's inode and the offset reached.
#[derive(Debug, Clone)]
pub struct RemoteFollow {
    pub path: String,
    pub ino: Option<u64>,
    pub offset: u64,
}

impl RemoteFollow {
    /// One poll: one exec reading from the offset; a smaller size means truncated, another
    /// inode rotated (the rest of the old file cannot be read then).
    pub async fn step(
        &mut self,
        session: &NodeSession,
        node: &str,
    ) -> Result<Vec<FollowEvent>, LogsError> {
        let (mut c, _) =
            remote_window(session, node, &self.path, self.offset as i64, FOLLOW_CHUNK).await?;
        let mut out = Vec::new();
        let rotated = self.ino.is_some_and(|i| i != c.ino);
        if rotated || c.size < self.offset {
            out.push(if rotated {
                FollowEvent::Rotated { size: c.size }
            } else {
                FollowEvent::Truncated { size: c.size }
            });
            self.offset = 0;
            c = remote_window(session, node, &self.path, 0, FOLLOW_CHUNK)
                .await?
                .0;
        }
        self.ino = Some(c.ino);
        if !c.bytes.is_empty() {
            let at = c.offset;
            self.offset = c.next_offset();
            out.push(FollowEvent::Data {
                offset: at,
                bytes: c.bytes,
            });
        }
        Ok(out)
    }
}

fn to_sse(e: &FollowEvent, logs: &RunLogs, path: &str) -> SseEvent {
    match e {
        FollowEvent::Data { offset, bytes } => {
            let next = offset + bytes.len() as u64;
            let data = LogChunk {
                offset: *offset,
                next_offset: next,
                text: String::from_utf8_lossy(bytes).into_owned(),
            };
            SseEvent::default()
                .event("log")
                .id(next.to_string())
                .data(serde_json::to_string(&data).unwrap_or_default())
        }
        FollowEvent::Truncated { size } | FollowEvent::Rotated { size } => {
            let name = if matches!(e, FollowEvent::Truncated { .. }) {
                "truncated"
            } else {
                "rotated"
            };
            state_event(name, logs, path, *size, 0)
        }
    }
}

fn state_event(name: &str, logs: &RunLogs, path: &str, size: u64, offset: u64) -> SseEvent {
    let data = LogFileState {
        run: logs.run.clone(),
        node: logs.node.clone(),
        path: path.to_string(),
        size,
        offset,
    };
    SseEvent::default()
        .event(name)
        .id(offset.to_string())
        .data(serde_json::to_string(&data).unwrap_or_default())
}

fn follow(
    logs: RunLogs,
    name: String,
    last: Option<u64>,
    offset: Option<i64>,
) -> Result<Response, ApiError> {
    let permit = FOLLOWS.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_follows",
            format!("{MAX_FOLLOWS} log follows are open; try again shortly"),
        )
    })?;
    // Last-Event-ID is the offset to go on from; else `offset`; else the end.
    let start = last
        .map(|l| i64::try_from(l).unwrap_or(i64::MAX))
        .or(offset);
    let (tx, rx) = mpsc::channel::<SseEvent>(FOLLOW_QUEUE);
    let path = logs.path_of(&name);
    tokio::spawn(async move {
        let _permit = permit;
        let result = match logs.place.clone() {
            Place::Local => follow_local(&logs, &path, start, &tx).await,
            Place::Remote { node, session } => {
                follow_remote(&logs, &node, &session, &path, start, &tx).await
            }
        };
        if let Err(e) = result {
            tracing::debug!(run = %logs.run, path = %path.display(), error = %e, "log follow ended");
            let _ = tx
                .send(
                    SseEvent::default()
                        .event("error")
                        .data(serde_json::json!({ "message": e.to_string() }).to_string()),
                )
                .await;
        }
    });
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// Sends `events`; false when the client is gone.
async fn send_all(
    tx: &mpsc::Sender<SseEvent>,
    events: &[FollowEvent],
    logs: &RunLogs,
    path: &str,
) -> bool {
    for e in events {
        if tx.send(to_sse(e, logs, path)).await.is_err() {
            return false;
        }
    }
    true
}

async fn follow_local(
    logs: &RunLogs,
    path: &Path,
    start: Option<i64>,
    tx: &mpsc::Sender<SseEvent>,
) -> Result<(), LogsError> {
    let p = path.to_path_buf();
    let (state, size) = tokio::task::spawn_blocking(move || LocalFollow::open(&p, start))
        .await
        .map_err(|e| LogsError::Io {
            op: "open",
            path: path.to_path_buf(),
            cause: std::io::Error::other(e.to_string()),
        })??;
    let shown = path.to_string_lossy().into_owned();
    if tx
        .send(state_event("open", logs, &shown, size, state.offset))
        .await
        .is_err()
    {
        return Ok(());
    }
    // Wake on any change in the file's directory (writes, renames, creations); the poll is a
    // safety net, and the only wake when inotify is not available.
    let (wake_tx, mut wake) = mpsc::channel::<()>(1);
    let watcher = {
        use notify::Watcher;
        let dir = state.dir();
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if !matches!(res, Ok(ref ev) if matches!(ev.kind, notify::EventKind::Access(_))) {
                let _ = wake_tx.try_send(());
            }
        })
        .and_then(|mut w| {
            w.watch(&dir, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        })
    };
    let poll = match &watcher {
        Ok(_) => LOCAL_POLL,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no inotify for a log follow; polling");
            LOCAL_POLL_NO_INOTIFY
        }
    };
    let mut state = Some(state);
    loop {
        let Some(mut s) = state.take() else {
            return Ok(());
        };
        let (s, events) = tokio::task::spawn_blocking(move || {
            let r = s.step(FOLLOW_BURST);
            (s, r)
        })
        .await
        .map_err(|e| LogsError::Io {
            op: "read",
            path: path.to_path_buf(),
            cause: std::io::Error::other(e.to_string()),
        })?;
        let events = events?;
        let busy = events
            .iter()
            .map(|e| match e {
                FollowEvent::Data { bytes, .. } => bytes.len() as u64,
                _ => 0,
            })
            .sum::<u64>()
            >= FOLLOW_BURST;
        state = Some(s);
        if !send_all(tx, &events, logs, &shown).await {
            return Ok(());
        }
        if busy {
            continue;
        }
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = wake.recv() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

async fn follow_remote(
    logs: &RunLogs,
    node: &str,
    session: &NodeSession,
    path: &Path,
    start: Option<i64>,
    tx: &mpsc::Sender<SseEvent>,
) -> Result<(), LogsError> {
    let shown = path.to_string_lossy().into_owned();
    // Where to start: one read of nothing at the resolved offset.
    let (c, _) = remote_window(session, node, &shown, start.unwrap_or(-0), 0).await?;
    let offset = if start.is_none() { c.size } else { c.offset };
    let mut state = RemoteFollow {
        path: shown.clone(),
        ino: Some(c.ino),
        offset,
    };
    if tx
        .send(state_event("open", logs, &shown, c.size, offset))
        .await
        .is_err()
    {
        return Ok(());
    }
    loop {
        match state.step(session, node).await {
            Ok(events) => {
                if !send_all(tx, &events, logs, &shown).await {
                    return Ok(());
                }
            }
            // A node that cannot be asked now is asked again at the next poll.
            Err(e) => tracing::debug!(node, path = %shown, error = %e, "remote log poll failed"),
        }
        tokio::select! {
            _ = tx.closed() => return Ok(()),
            _ = tokio::time::sleep(REMOTE_POLL) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    #[test]
    fn offsets_resolve_at_the_boundaries() {
        assert_eq!(resolve_offset(0, 10), 0);
        assert_eq!(resolve_offset(10, 10), 10);
        assert_eq!(resolve_offset(11, 10), 10);
        assert_eq!(resolve_offset(-1, 10), 9);
        assert_eq!(resolve_offset(-10, 10), 0);
        assert_eq!(resolve_offset(-11, 10), 0);
        assert_eq!(resolve_offset(i64::MAX, 10), 10);
    }

    #[test]
    fn last_lines() {
        assert_eq!(last_lines_start(b"a\nb\nc\n", 2, false), Some(2));
        assert_eq!(last_lines_start(b"a\nb\nc", 2, false), Some(2));
        assert_eq!(last_lines_start(b"a\nb\nc\n", 3, false), None);
        assert_eq!(last_lines_start(b"a\nb\nc\n", 3, true), Some(0));
        assert_eq!(last_lines_start(b"a\nb\nc\n", 9, true), Some(0));
        assert_eq!(last_lines_start(b"a\n", 0, true), Some(2));
        assert_eq!(last_lines_start(b"", 1, true), Some(0));
    }

    #[test]
    fn local_tail_reads_backwards_in_blocks_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.log");
        let mut f = fs::File::create(&p).unwrap();
        // 3 blocks of one long line, then 10 short lines.
        f.write_all(&vec![b'x'; 3 * TAIL_BLOCK as usize]).unwrap();
        for i in 0..10 {
            writeln!(f, "line {i}").unwrap();
        }
        drop(f);
        let c = local_tail(&p, 3, 1 << 20).unwrap();
        assert_eq!(c.bytes, b"line 7\nline 8\nline 9\n");
        assert_eq!(c.next_offset(), c.size);
        // 11 lines need the long one: more than a block is read, up to the cap.
        let c = local_tail(&p, 11, 1 << 20).unwrap();
        assert_eq!(c.offset, 0);
        assert!(c.bytes.starts_with(b"xxx"));
        // A cap below it: the partial line is dropped.
        let c = local_tail(&p, 11, TAIL_BLOCK).unwrap();
        assert!(c.bytes.starts_with(b"line 1\n"), "{:?}", &c.bytes[..10]);
        // Windows by offset.
        let w = local_window(&p, -7, 100).unwrap();
        assert_eq!(w.bytes, b"line 9\n");
        assert_eq!(w.next_offset(), w.size);
        let w = local_window(&p, 0, 4).unwrap();
        assert_eq!((w.offset, w.next_offset()), (0, 4));
        let w = local_window(&p, w.size as i64 + 5, 4).unwrap();
        assert_eq!((w.offset, w.bytes.len()), (w.size, 0));
    }

    #[test]
    fn local_follow_reports_append_truncation_and_rotation_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.log");
        fs::write(&p, "old\n").unwrap();
        let (mut f, size) = LocalFollow::open(&p, None).unwrap();
        assert_eq!((size, f.offset), (4, 4));
        assert_eq!(f.step(1 << 20).unwrap(), vec![]);
        let mut h = fs::OpenOptions::new().append(true).open(&p).unwrap();
        h.write_all(b"new\n").unwrap();
        assert_eq!(
            f.step(1 << 20).unwrap(),
            vec![FollowEvent::Data {
                offset: 4,
                bytes: b"new\n".to_vec()
            }]
        );
        // Truncated in place and rewritten shorter.
        fs::write(&p, "t\n").unwrap();
        assert_eq!(
            f.step(1 << 20).unwrap(),
            vec![
                FollowEvent::Truncated { size: 2 },
                FollowEvent::Data {
                    offset: 0,
                    bytes: b"t\n".to_vec()
                }
            ]
        );
        assert_eq!(f.step(1 << 20).unwrap(), vec![]);
        // Rotated: the last line of the old file, then the new file from 0.
        let mut h = fs::OpenOptions::new().append(true).open(&p).unwrap();
        h.write_all(b"last\n").unwrap();
        fs::rename(&p, dir.path().join("train.log.1")).unwrap();
        assert_eq!(
            f.step(1 << 20).unwrap(),
            vec![FollowEvent::Data {
                offset: 2,
                bytes: b"last\n".to_vec()
            }],
            "renamed away, nothing new at the path yet"
        );
        fs::write(&p, "fresh\n").unwrap();
        assert_eq!(
            f.step(1 << 20).unwrap(),
            vec![
                FollowEvent::Rotated { size: 6 },
                FollowEvent::Data {
                    offset: 0,
                    bytes: b"fresh\n".to_vec()
                }
            ]
        );
        assert_eq!(f.step(1 << 20).unwrap(), vec![]);
    }

    #[test]
    fn base64_round_trips_what_coreutils_writes() {
        let out = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(b"\x00\xff\x1b]0;x\x07 caf\xc3\xa9\n")?;
                c.wait_with_output()
            })
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            base64_decode(&s).unwrap(),
            b"\x00\xff\x1b]0;x\x07 caf\xc3\xa9\n"
        );
        assert_eq!(base64_decode("").unwrap(), b"");
        assert_eq!(base64_decode("abc"), None);
    }

    proptest! {
        #[test]
        fn parse_remote_never_panics(s in ".{0,80}") {
            let _ = parse_remote(&s);
        }
    }

    /// The remote read against the testkit's real sshd: a window, the last lines of a 2 GiB
    /// sparse file with few bytes on the channel, a follow step, and rotation.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remote_reads_over_a_real_sshd() {
        use ugro_testkit::sshd::Sshd;
        let sshd = Sshd::start();
        let session = NodeSession::new(crate::config::RemoteHost::loopback(
            sshd.port(),
            sshd.user(),
            sshd.client_key(),
            sshd.known_hosts(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("it's a log.log");
        let f = fs::File::create(&p).unwrap();
        f.set_len(2 << 30).unwrap();
        drop(f);
        let mut h = fs::OpenOptions::new().append(true).open(&p).unwrap();
        for i in 0..8 {
            writeln!(h, "line {i} \x1b[2J é").unwrap();
        }
        let ps = p.to_string_lossy().into_owned();
        let (c, ChannelBytes(n)) = remote_tail(&session, "box", &ps, 5, 1 << 20).await.unwrap();
        let text = String::from_utf8(c.bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.starts_with("line 3 \x1b[2J é\n"), "{text}");
        assert_eq!(c.next_offset(), c.size);
        assert!(n < 1 << 20, "{n} bytes on the channel");
        // Byte-exact windows at the boundaries.
        let local = local_window(&p, -20, 7).unwrap();
        let (remote, _) = remote_window(&session, "box", &ps, -20, 7).await.unwrap();
        assert_eq!(remote, local);
        let (end, _) = remote_window(&session, "box", &ps, i64::MAX, 7)
            .await
            .unwrap();
        assert_eq!((end.offset, end.bytes.len()), (end.size, 0));
        // A follow: append, truncate, rotate.
        let mut fol = RemoteFollow {
            path: ps.clone(),
            ino: Some(c.ino),
            offset: c.size,
        };
        assert_eq!(fol.step(&session, "box").await.unwrap(), vec![]);
        writeln!(h, "appended").unwrap();
        assert_eq!(
            fol.step(&session, "box").await.unwrap(),
            vec![FollowEvent::Data {
                offset: c.size,
                bytes: b"appended\n".to_vec()
            }]
        );
        h.set_len(3).unwrap();
        let ev = fol.step(&session, "box").await.unwrap();
        assert_eq!(ev[0], FollowEvent::Truncated { size: 3 });
        fs::rename(&p, dir.path().join("old.log")).unwrap();
        fs::write(&p, "new file\n").unwrap();
        let ev = fol.step(&session, "box").await.unwrap();
        assert_eq!(
            ev,
            vec![
                FollowEvent::Rotated { size: 9 },
                FollowEvent::Data {
                    offset: 0,
                    bytes: b"new file\n".to_vec()
                }
            ]
        );
        // A missing file is an error naming the node and path.
        let err = remote_window(&session, "box", "/nonexistent/x.log", 0, 10)
            .await
            .unwrap_err();
        assert!(err.missing(), "{err}");
        assert!(err.to_string().contains("/nonexistent/x.log"), "{err}");
        // Listing a run dir remotely.
        fs::create_dir(dir.path().join("logs")).unwrap();
        fs::write(dir.path().join("logs/training_1.log"), "x").unwrap();
        fs::write(dir.path().join("job 1.out"), "x").unwrap();
        let files = list_remote(
            &session,
            "box",
            &dir.path().to_string_lossy(),
            &["job ?.out".to_string()],
        )
        .await
        .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "it's a log.log",
                "job 1.out",
                "logs/training_1.log",
                "old.log"
            ]
        );
        let local: Vec<String> = list_local(dir.path(), &["job ?.out".to_string()])
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(local, names);
    }
}
