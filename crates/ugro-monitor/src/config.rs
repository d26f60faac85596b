//! The daemon's TOML configuration: parsing, defaults, path resolution and validation. Every
//! problem is reported (not just the first) as `file:line:col: message` with the bad value quoted.
//! The daemon only ever reads its config; it never writes it.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Where the daemon looks for its config when `--config` is not given and `$UGRO_CONFIG` is unset.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ugro/ugro.toml";

/// Longest path a Unix socket address can hold (sun_path, minus the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

// ---------------------------------------------------------------------------------------------
// Allowed ranges. Every duration and size key has one and a value outside it is a located
// problem like any other, so nothing the daemon computes from its config (deadlines, cut-offs,
// tick times) can overflow, whether at start or after a reload.

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// An inclusive range a duration key must lie in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    const fn secs(min: u64, max: u64) -> Self {
        Self {
            min: Duration::from_secs(min),
            max: Duration::from_secs(max),
        }
    }

    pub fn contains(&self, d: Duration) -> bool {
        self.min <= d && d <= self.max
    }
}

/// `health.interval`, `health.min_interval` and `health.max_interval`: 1s to 1d.
pub const HEALTH_INTERVAL_RANGE: DurationRange = DurationRange::secs(1, DAY);
/// `health.latency_max`: 1ms to 10m.
pub const LATENCY_MAX_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(1),
    max: Duration::from_secs(10 * MINUTE),
};
/// `health.pytorch_interval`: 1s to 7d.
pub const PYTORCH_INTERVAL_RANGE: DurationRange = DurationRange::secs(1, 7 * DAY);
/// Default of `health.login_check_interval`: a fresh SSH login every 10 minutes.
pub const DEFAULT_LOGIN_CHECK_INTERVAL: Duration = Duration::from_secs(10 * MINUTE);
/// `health.login_check_interval`: 1s to 1d.
pub const LOGIN_CHECK_RANGE: DurationRange = DurationRange::secs(1, DAY);
/// `health.probe_timeout` and `health.pytorch_timeout`: 100ms to 10m.
pub const PROBE_TIMEOUT_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(100),
    max: Duration::from_secs(10 * MINUTE),
};
/// `roots.poll_interval`: 1s to 1d.
pub const POLL_INTERVAL_RANGE: DurationRange = DurationRange::secs(1, DAY);
/// `roots.stall_after`: 1s to 365d.
pub const STALL_AFTER_RANGE: DurationRange = DurationRange::secs(1, 365 * DAY);
/// `roots.outdated_after`: 1s to 3650d (10 years).
pub const OUTDATED_AFTER_RANGE: DurationRange = DurationRange::secs(1, 3650 * DAY);
/// `summary.retention`: 1d to 3650d (10 years).
pub const RETENTION_RANGE: DurationRange = DurationRange::secs(DAY, 3650 * DAY);
/// `summary.metrics_interval`: 10s to 1d.
pub const METRICS_INTERVAL_RANGE: DurationRange = DurationRange::secs(10, DAY);
/// `summary.long_running`: 1m to 3650d (10 years).
pub const LONG_RUNNING_RANGE: DurationRange = DurationRange::secs(MINUTE, 3650 * DAY);
/// Largest `http.metrics_max_runs`.
pub const METRICS_MAX_RUNS_MAX: u32 = 100_000;
/// Longest `http.cluster`, in bytes.
pub const CLUSTER_MAX_LEN: usize = 128;
/// `slurm.queued_after`: 1s to 30d.
pub const SLURM_QUEUED_AFTER_RANGE: DurationRange = DurationRange::secs(1, 30 * DAY);
/// `slurm.interval`: 1s to 1d.
pub const SLURM_INTERVAL_RANGE: DurationRange = DurationRange::secs(1, DAY);
/// Largest `health.disk_free_min`: 1 PB (10¹⁵ bytes).
pub const DISK_FREE_MIN_MAX: u64 = 1_000_000_000_000_000;

/// A range bound the way the docs write it: "1d", "10m", "100ms".
fn short(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 || d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    for (n, unit) in [(DAY, "d"), (HOUR, "h"), (MINUTE, "m")] {
        if s.is_multiple_of(n) {
            return format!("{}{unit}", s / n);
        }
    }
    format!("{s}s")
}

/// One problem in a config file, located in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{} problem{} in {}:\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, path.display(),
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem as a `file:line:col: message` line (a read error is one line).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid { problems, .. } => {
                problems.iter().map(|p| p.to_string()).collect()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved configuration: defaults applied, paths absolute, values checked.

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Absolute path of the file this was loaded from.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub health: HealthConfig,
    pub nodes: Vec<NodeConfig>,
    pub roots: Vec<RootConfig>,
    pub http: HttpConfig,
    pub summary: SummaryConfig,
    pub email: EmailConfig,
    pub slurm: SlurmConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// Group whose members may call mutating endpoints (besides root and the daemon's uid).
    pub control_group: Option<String>,
}

impl DaemonConfig {
    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join("ugro.db")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub interval: Duration,
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub pass_rate: f64,
    pub disk_free_min: u64,
    pub latency_max: Duration,
    pub pytorch_interval: Duration,
    pub gpu_temp_max: f64,
    /// Load per core (5- and 15-minute averages) above which the load check fails; above one
    /// per core it only warns.
    pub load_per_core_max: f64,
    /// Deadline of each probe (SSH no-op, batch, nvidia-smi, latency); past it a probe is hung.
    pub probe_timeout: Duration,
    /// Deadline of the PyTorch probe.
    pub pytorch_timeout: Duration,
    /// How old a remote node's SSH login may get before a sweep logs in afresh (so a dead sshd
    /// listener behind a live session is seen).
    pub login_check_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeHost {
    /// This machine, checked without SSH.
    Local,
    Remote(RemoteHost),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHost {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: PathBuf,
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
}

impl RemoteHost {
    /// A host on this machine's loopback (127.0.0.1, e.g. the testkit's sshd in tests and
    /// benchmarks), its host key checked against `known_hosts`.
    pub fn loopback(port: u16, user: &str, identity_file: &Path, known_hosts: &Path) -> Self {
        RemoteHost {
            host: "127.0.0.1".into(),
            port,
            user: user.into(),
            identity_file: identity_file.to_path_buf(),
            known_hosts: known_hosts.to_path_buf(),
            accept_new_host_keys: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    pub host: NodeHost,
    pub gpus: Option<u32>,
    pub python: Option<String>,
    pub disk_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    Auto,
    Inotify,
    Poll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootConfig {
    pub path: PathBuf,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    pub epochs: Option<u32>,
    pub stall_after: Duration,
    pub outdated_after: Duration,
    pub write_progress_json: bool,
    /// Extra log patterns relative to a run dir (`NAME` or `DIR/NAME`, `*` and `?`).
    pub log_globs: Vec<String>,
    /// The remote node whose disk holds the root (`None`: this machine, or a node whose
    /// host is `local`); its run ids are `NODE:RELPATH`.
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: Option<SocketAddr>,
    /// At most this many running or stuck runs get their own series on `/metrics`.
    pub metrics_max_runs: u32,
    /// A `cluster` label on every series of `/metrics`, when set.
    pub cluster: Option<String>,
    /// The bearer token of the dashboard (required when `listen` is not a loopback address).
    pub token_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            metrics_max_runs: defaults::METRICS_MAX_RUNS,
            cluster: None,
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryConfig {
    pub schedule: String,
    pub timezone: chrono_tz::Tz,
    pub dir: PathBuf,
    pub retention: Duration,
    pub metrics_interval: Duration,
    pub long_running: Duration,
}

/// `[slurm]`: read the queue and nodes, map jobs to runs, optionally drain unhealthy nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmConfig {
    pub enabled: bool,
    /// The node whose session runs `squeue`/`sinfo`/`scontrol`; `None` = this machine.
    pub node: Option<String>,
    /// Drain a node ugro finds unhealthy (reason `ugro: …`); resume it when healthy again.
    pub drain_unhealthy: bool,
    /// A job pending longer than this is "queued" in the summary's bottlenecks.
    pub queued_after: Duration,
    /// How often the queue and the nodes are read.
    pub interval: Duration,
    /// Deadline of each Slurm command.
    pub command_timeout: Duration,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            node: None,
            drain_unhealthy: false,
            queued_after: defaults::SLURM_QUEUED_AFTER,
            interval: defaults::SLURM_INTERVAL,
            command_timeout: defaults::SLURM_COMMAND_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    pub enabled: bool,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) trusted for the SMTP server's certificate, e.g. a lab CA.
    pub ca_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Raw shape of the file. Every field optional and spanned, so defaults are applied in one place
// and every semantic problem can point at its value.

type S<T> = Option<Spanned<T>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: S<String>,
    socket: S<String>,
    control_group: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    interval: S<DurationValue>,
    min_interval: S<DurationValue>,
    max_interval: S<DurationValue>,
    pass_rate: S<f64>,
    disk_free_min: S<SizeValue>,
    latency_max: S<DurationValue>,
    pytorch_interval: S<DurationValue>,
    gpu_temp_max: S<f64>,
    load_per_core_max: S<f64>,
    probe_timeout: S<DurationValue>,
    pytorch_timeout: S<DurationValue>,
    login_check_interval: S<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: S<String>,
    host: S<String>,
    port: S<u16>,
    user: S<String>,
    identity_file: S<String>,
    known_hosts: S<String>,
    accept_new_host_keys: S<bool>,
    gpus: S<u32>,
    python: S<String>,
    disk_paths: S<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoot {
    path: S<String>,
    watch: S<WatchMode>,
    poll_interval: S<DurationValue>,
    epochs: S<u32>,
    stall_after: S<DurationValue>,
    outdated_after: S<DurationValue>,
    write_progress_json: S<bool>,
    log_globs: S<Vec<Spanned<String>>>,
    node: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: S<String>,
    metrics_max_runs: S<u32>,
    cluster: S<String>,
    token_file: S<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlurm {
    enabled: S<bool>,
    node: S<String>,
    drain_unhealthy: S<bool>,
    queued_after: S<DurationValue>,
    interval: S<DurationValue>,
    command_timeout: S<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSummary {
    schedule: S<String>,
    timezone: S<String>,
    dir: S<String>,
    retention: S<DurationValue>,
    metrics_interval: S<DurationValue>,
    long_running: S<DurationValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    enabled: S<bool>,
    smtp_host: S<String>,
    smtp_port: S<u16>,
    tls: S<TlsMode>,
    username: S<String>,
    password_file: S<String>,
    ca_file: S<String>,
    from: S<String>,
    to: S<Vec<Spanned<String>>>,
}

/// A duration written as a string: "30s", "5m", "1h 30m", "30d".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurationValue(Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration string such as "30s", "5m" or "30d""#)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<DurationValue, E> {
                humantime::parse_duration(s.trim())
                    .map(DurationValue)
                    .map_err(|e| {
                        E::custom(format!(
                            r#"invalid duration "{s}": {e}; write e.g. "30s", "5m", "30d""#
                        ))
                    })
            }
        }
        d.deserialize_str(V)
    }
}

/// A byte size written as a string: "10GB", "512MiB", "1.5 TB".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeValue(u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a size string such as "10GB" or "512MiB""#)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SizeValue, E> {
                s.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|b| SizeValue(b.as_u64()))
                    .map_err(|e| {
                        E::custom(format!(
                            r#"invalid size "{s}": {e}; write e.g. "10GB", "512MiB""#
                        ))
                    })
            }
        }
        d.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// Which config file to use: `--config`, else `$UGRO_CONFIG`, else [`DEFAULT_CONFIG_PATH`].
pub fn config_path(cli: Option<&Path>, env: Option<&std::ffi::OsStr>) -> PathBuf {
    match (cli, env) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(e)) if !e.is_empty() => PathBuf::from(e),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let abs = std::path::absolute(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        cause: source,
    })?;
    let text = std::fs::read_to_string(&abs).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        cause: source,
    })?;
    parse(&abs, &text)
}

/// Validates `text` as if read from `path` (which must be absolute: relative paths inside the
/// config are resolved against its directory).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut p = Problems {
        text,
        spans: Vec::new(),
    };
    let (doc, syntax_errors) = DeTable::parse_recoverable(text);
    for e in syntax_errors {
        p.toml_error(e);
    }
    if !p.spans.is_empty() {
        return Err(p.into_error(path, None));
    }

    let mut raw = RawFile::default();
    let root_span = doc.span();
    for (key, value) in doc.get_ref().iter() {
        let name: &str = key.get_ref();
        match name {
            "daemon" => raw.daemon = p.section(value),
            "health" => raw.health = p.section(value),
            "http" => raw.http = p.section(value),
            "summary" => raw.summary = p.section(value),
            "email" => raw.email = p.section(value),
            "slurm" => raw.slurm = p.section(value),
            "nodes" | "roots" => {
                let DeValue::Array(items) = value.get_ref() else {
                    p.push(
                        value.span(),
                        format!("`{name}` must be an array of tables: write [[{name}]]"),
                    );
                    continue;
                };
                for item in items.iter() {
                    let span = item.span();
                    if name == "nodes" {
                        if let Some(n) = p.section::<RawNode>(item) {
                            raw.nodes.push((span, n));
                        }
                    } else if let Some(r) = p.section::<RawRoot>(item) {
                        raw.roots.push((span, r));
                    }
                }
            }
            other => p.push(
                key.span(),
                format!(
                    "unknown section `{other}`; expected one of daemon, health, nodes, roots, http, summary, email, slurm"
                ),
            ),
        }
    }
    let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let config = resolve(&mut p, path, &base, raw, root_span);
    if p.spans.is_empty() {
        Ok(config)
    } else {
        Err(p.into_error(path, Some(doc.get_ref())))
    }
}

#[derive(Default)]
struct RawFile {
    daemon: Option<RawDaemon>,
    health: Option<RawHealth>,
    nodes: Vec<(Range<usize>, RawNode)>,
    roots: Vec<(Range<usize>, RawRoot)>,
    http: Option<RawHttp>,
    summary: Option<RawSummary>,
    email: Option<RawEmail>,
    slurm: Option<RawSlurm>,
}

/// Collects problems as (span, message) and turns them into located [`Problem`]s at the end.
struct Problems<'t> {
    text: &'t str,
    spans: Vec<(Range<usize>, String)>,
}

impl Problems<'_> {
    fn push(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.spans.push((span, message.into()));
    }

    /// The source text of `span` (a value, quotes included) or, when it is not one short line,
    /// `fallback` quoted.
    fn quoted(&self, span: &Range<usize>, fallback: impl fmt::Display) -> String {
        snippet(self.text, span).map_or_else(|| format!("\"{fallback}\""), str::to_string)
    }

    /// Records a problem when the duration key `name` was given and lies outside `range`.
    fn duration_in(&mut self, name: &str, v: &S<DurationValue>, range: DurationRange) {
        let Some(s) = v else { return };
        let d = s.get_ref().0;
        if range.contains(d) {
            return;
        }
        let found = self.quoted(&s.span(), humantime::format_duration(d));
        self.push(
            s.span(),
            format!(
                "{name} {found} is out of range: it must be from \"{}\" to \"{}\"",
                short(range.min),
                short(range.max)
            ),
        );
    }

    fn toml_error(&mut self, e: toml::de::Error) {
        let span = e.span().unwrap_or(0..0);
        self.push(span, e.message().trim().to_string());
    }

    /// Deserializes one section. A problem inside it is recorded, the offending key dropped and
    /// the section tried again, so every bad key of every section is reported in one pass.
    fn section<T: DeserializeOwned>(&mut self, value: &Spanned<DeValue<'_>>) -> Option<T> {
        let DeValue::Table(table) = value.get_ref() else {
            self.push(
                value.span(),
                format!("expected a table, found {}", value.get_ref().type_str()),
            );
            return None;
        };
        let mut table = table.clone();
        let mut failed = false;
        loop {
            let attempt = Spanned::new(value.span(), DeValue::Table(table.clone()));
            match T::deserialize(ValueDeserializer::from(attempt)) {
                Ok(v) => return (!failed).then_some(v),
                Err(e) => {
                    failed = true;
                    let span = e.span().unwrap_or(value.span());
                    self.push(span.clone(), plain_types(e.message().trim()));
                    let culprit = table
                        .iter()
                        .find(|(k, v)| overlaps(&k.span(), &span) || overlaps(&v.span(), &span))
                        .map(|(k, _)| k.clone());
                    match culprit {
                        Some(k) => {
                            table.remove(&k);
                        }
                        None => return None,
                    }
                }
            }
        }
    }

    fn into_error(self, path: &Path, doc: Option<&DeTable<'_>>) -> ConfigError {
        let text = self.text;
        let mut spans = self.spans;
        spans.sort_by_key(|(s, _)| s.start);
        let problems = spans
            .into_iter()
            .map(|(span, message)| {
                let (line, column) = line_col(text, span.start);
                let key = doc.map(|d| key_path(d, &span)).unwrap_or_default();
                let mut message = if key.is_empty() || message.starts_with(&key) {
                    message
                } else {
                    format!("{key}: {message}")
                };
                if let Some(found) = snippet(text, &span)
                    && !message.contains(found.trim_matches('"'))
                {
                    message.push_str(&format!(" (found `{found}`)"));
                }
                Problem {
                    file: path.to_path_buf(),
                    line,
                    column,
                    message,
                }
            })
            .collect();
        ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        }
    }
}

/// Says serde's Rust type names the way a config author reads them.
fn plain_types(message: &str) -> String {
    message
        .replace("expected u16", "expected a whole number from 0 to 65535")
        .replace(
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        )
        .replace("expected f64", "expected a number")
        .replace("expected a boolean", "expected true or false")
}

/// 1-based line and column (in characters) of byte offset `pos`.
fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = text.get(..pos).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The source text of a span, when it is short and on one line (a value or a key).
fn snippet<'t>(text: &'t str, span: &Range<usize>) -> Option<&'t str> {
    let s = text.get(span.clone())?.trim();
    (!s.is_empty() && s.len() <= 80 && !s.contains('\n')).then_some(s)
}

fn overlaps(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.end > outer.start
}

/// Dotted path of the key a problem is about, e.g. `nodes[1].port`: the key whose value is the
/// smallest one containing `span`, or, when `span` is a key itself, the table holding it.
/// (Table spans in TOML cover only their header, so the whole tree is searched.)
fn key_path(table: &DeTable<'_>, span: &Range<usize>) -> String {
    fn walk_table(
        t: &DeTable<'_>,
        prefix: &str,
        span: &Range<usize>,
        best: &mut Option<(usize, String)>,
    ) {
        for (k, v) in t.iter() {
            let path = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            if overlaps(&k.span(), span) && best.as_ref().is_none_or(|(w, _)| k.span().len() < *w) {
                *best = Some((k.span().len(), prefix.to_string()));
            }
            walk_value(v, &path, span, best);
        }
    }
    fn walk_value(
        v: &Spanned<DeValue<'_>>,
        path: &str,
        span: &Range<usize>,
        best: &mut Option<(usize, String)>,
    ) {
        let width = v.span().len();
        if overlaps(&v.span(), span) && best.as_ref().is_none_or(|(w, _)| width <= *w) {
            *best = Some((width, path.to_string()));
        }
        match v.get_ref() {
            DeValue::Table(t) => walk_table(t, path, span, best),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    walk_value(item, &format!("{path}[{i}]"), span, best);
                }
            }
            _ => {}
        }
    }
    let mut best = None;
    walk_table(table, "", span, &mut best);
    best.map(|(_, p)| p).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Defaults, path resolution and semantic checks.

fn val<T: Clone>(v: &S<T>) -> Option<T> {
    v.as_ref().map(|s| s.get_ref().clone())
}

fn dur(v: &S<DurationValue>, default: Duration) -> Duration {
    v.as_ref().map_or(default, |s| s.get_ref().0)
}

fn span_or<T>(v: &S<T>, fallback: &Range<usize>) -> Range<usize> {
    v.as_ref().map_or(fallback.clone(), |s| s.span())
}

/// Makes `p` absolute against `base` and removes `.` and `..` lexically (no filesystem access:
/// the paths may not exist yet, or may be on another machine).
fn resolve_path(base: &Path, p: &str) -> PathBuf {
    use std::path::Component;
    let joined = base.join(p);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// "a regular file", "a symbolic link", … for a message about a path that is not a directory.
fn file_kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a directory"
    }
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn resolve(
    p: &mut Problems<'_>,
    path: &Path,
    base: &Path,
    raw: RawFile,
    root_span: Range<usize>,
) -> Config {
    let _ = root_span;
    let daemon = resolve_daemon(p, base, raw.daemon.unwrap_or_default());
    Config {
        path: path.to_path_buf(),
        health: resolve_health(p, raw.health.unwrap_or_default()),
        nodes: resolve_nodes(p, base, &daemon.state_dir, &raw.nodes),
        roots: resolve_roots(p, base, &raw.roots, &raw.nodes),
        http: resolve_http(p, base, raw.http.unwrap_or_default()),
        summary: resolve_summary(p, base, &daemon.state_dir, raw.summary.unwrap_or_default()),
        email: resolve_email(p, base, raw.email.unwrap_or_default()),
        slurm: resolve_slurm(p, &raw.nodes, raw.slurm.unwrap_or_default()),
        daemon,
    }
}

/// The value of every key that is left out (docs/configuration.md lists them too).
pub mod defaults {
    use std::time::Duration;

    pub const STATE_DIR: &str = "/var/lib/ugro";
    pub const SOCKET: &str = "/run/ugro/ugro.sock";
    pub const CONTROL_GROUP: &str = "ugro";
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(60);
    pub const HEALTH_MIN_INTERVAL: Duration = Duration::from_secs(10);
    pub const HEALTH_MAX_INTERVAL: Duration = Duration::from_secs(300);
    pub const PASS_RATE: f64 = 0.9;
    pub const DISK_FREE_MIN: u64 = 10_000_000_000;
    pub const LATENCY_MAX: Duration = Duration::from_millis(100);
    pub const PYTORCH_INTERVAL: Duration = Duration::from_secs(30 * 60);
    pub const GPU_TEMP_MAX: f64 = 85.0;
    pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
    pub const PYTORCH_TIMEOUT: Duration = Duration::from_secs(60);
    pub const POLL_INTERVAL: Duration = Duration::from_secs(30);
    pub const STALL_AFTER: Duration = Duration::from_secs(30 * 60);
    pub const OUTDATED_AFTER: Duration = Duration::from_secs(30 * 86_400);
    pub const SCHEDULE: &str = "0 55 23 * * *";
    pub const TIMEZONE: &str = "UTC";
    pub const METRICS_INTERVAL: Duration = Duration::from_secs(300);
    pub const RETENTION: Duration = Duration::from_secs(30 * 86_400);
    pub const LONG_RUNNING: Duration = Duration::from_secs(7 * 86_400);
    /// `slurm.queued_after`: a job pending longer than an hour is a bottleneck (seed 000).
    pub const SLURM_QUEUED_AFTER: Duration = Duration::from_secs(3600);
    /// `slurm.interval`: the queue and the nodes are read every minute.
    pub const SLURM_INTERVAL: Duration = Duration::from_secs(60);
    /// `slurm.command_timeout`: the deadline of one `squeue`, `sinfo` or `scontrol`.
    pub const SLURM_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
    pub const SMTP_HOST: &str = "localhost";
    pub const SMTP_PORT: u16 = 587;
    pub const FROM: &str = "ugro-monitor <ugro@localhost>";
    /// `http.metrics_max_runs`: running or stuck runs with their own series on `/metrics`.
    pub const METRICS_MAX_RUNS: u32 = 500;
    /// Messages of the change stream kept for clients that reconnect with `Last-Event-ID`.
    pub const STREAM_RING_MESSAGES: usize = 4096;
    /// Bytes of those messages kept at most (JSON plus a little per message).
    pub const STREAM_RING_BYTES: usize = 8 * 1024 * 1024;
    /// `roots.log_globs`: at most this many patterns per root.
    pub const MAX_LOG_GLOBS: usize = 16;
    /// `GET /v1/logs`: bytes of a window when `limit` is not given.
    pub const LOG_WINDOW: u64 = 64 * 1024;
    /// `GET /v1/logs`: the largest `limit` answered.
    pub const LOG_WINDOW_MAX: u64 = 1024 * 1024;
}

/// The span of a value that is absent (the top of the file).
const TOP: Range<usize> = 0..0;

/// `[daemon]`.
fn resolve_daemon(p: &mut Problems<'_>, base: &Path, d: RawDaemon) -> DaemonConfig {
    let top = TOP;
    let state_dir = val(&d.state_dir).map_or_else(
        || PathBuf::from(defaults::STATE_DIR),
        |s| resolve_path(base, &s),
    );
    if d.state_dir.as_ref().is_some_and(|s| s.get_ref().is_empty()) {
        p.push(
            span_or(&d.state_dir, &top),
            "daemon.state_dir must not be empty",
        );
    }
    let socket = val(&d.socket).map_or_else(
        || PathBuf::from(defaults::SOCKET),
        |s| resolve_path(base, &s),
    );
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        p.push(
            span_or(&d.socket, &top),
            format!(
                "socket path \"{}\" is {} bytes long; a Unix socket path holds at most {MAX_SOCKET_PATH}",
                socket.display(),
                socket.as_os_str().len()
            ),
        );
    }
    let control_group = match &d.control_group {
        None => Some(defaults::CONTROL_GROUP.to_string()),
        Some(g) if g.get_ref().is_empty() => None,
        Some(g) => {
            if !valid_name(g.get_ref()) {
                p.push(g.span(), format!("invalid group name \"{}\"", g.get_ref()));
            }
            Some(g.get_ref().clone())
        }
    };

    DaemonConfig {
        state_dir,
        socket,
        control_group,
    }
}

/// `[health]`.
fn resolve_health(p: &mut Problems<'_>, h: RawHealth) -> HealthConfig {
    let top = TOP;
    let health = HealthConfig {
        interval: dur(&h.interval, defaults::HEALTH_INTERVAL),
        min_interval: dur(&h.min_interval, defaults::HEALTH_MIN_INTERVAL),
        max_interval: dur(&h.max_interval, defaults::HEALTH_MAX_INTERVAL),
        pass_rate: val(&h.pass_rate).unwrap_or(defaults::PASS_RATE),
        disk_free_min: h
            .disk_free_min
            .as_ref()
            .map_or(defaults::DISK_FREE_MIN, |s| s.get_ref().0),
        latency_max: dur(&h.latency_max, defaults::LATENCY_MAX),
        pytorch_interval: dur(&h.pytorch_interval, defaults::PYTORCH_INTERVAL),
        gpu_temp_max: val(&h.gpu_temp_max).unwrap_or(defaults::GPU_TEMP_MAX),
        load_per_core_max: val(&h.load_per_core_max)
            .unwrap_or(ugro_core::health::DEFAULT_LOAD_PER_CORE_MAX),
        probe_timeout: dur(&h.probe_timeout, defaults::PROBE_TIMEOUT),
        pytorch_timeout: dur(&h.pytorch_timeout, defaults::PYTORCH_TIMEOUT),
        login_check_interval: dur(&h.login_check_interval, DEFAULT_LOGIN_CHECK_INTERVAL),
    };
    for (name, v, range) in [
        ("interval", &h.interval, HEALTH_INTERVAL_RANGE),
        ("min_interval", &h.min_interval, HEALTH_INTERVAL_RANGE),
        ("max_interval", &h.max_interval, HEALTH_INTERVAL_RANGE),
        ("latency_max", &h.latency_max, LATENCY_MAX_RANGE),
        (
            "pytorch_interval",
            &h.pytorch_interval,
            PYTORCH_INTERVAL_RANGE,
        ),
        ("probe_timeout", &h.probe_timeout, PROBE_TIMEOUT_RANGE),
        ("pytorch_timeout", &h.pytorch_timeout, PROBE_TIMEOUT_RANGE),
        (
            "login_check_interval",
            &h.login_check_interval,
            LOGIN_CHECK_RANGE,
        ),
    ] {
        p.duration_in(name, v, range);
    }
    if let Some(s) = &h.disk_free_min
        && s.get_ref().0 > DISK_FREE_MIN_MAX
    {
        let found = p.quoted(&s.span(), s.get_ref().0);
        p.push(
            s.span(),
            format!("disk_free_min {found} is out of range: it must be from \"0B\" to \"1PB\""),
        );
    }
    if !(health.min_interval <= health.interval && health.interval <= health.max_interval) {
        let span = span_or(
            &h.interval,
            &span_or(&h.min_interval, &span_or(&h.max_interval, &top)),
        );
        p.push(
            span,
            format!(
                "health intervals must satisfy min_interval <= interval <= max_interval; got \"{}\" <= \"{}\" <= \"{}\"",
                humantime::format_duration(health.min_interval),
                humantime::format_duration(health.interval),
                humantime::format_duration(health.max_interval)
            ),
        );
    }
    if !(health.pass_rate > 0.0 && health.pass_rate <= 1.0) {
        p.push(
            span_or(&h.pass_rate, &top),
            format!("pass_rate {} must be in (0, 1]", health.pass_rate),
        );
    }
    if !(0.0..=150.0).contains(&health.gpu_temp_max) {
        p.push(
            span_or(&h.gpu_temp_max, &top),
            format!(
                "gpu_temp_max {} is not a plausible °C threshold (0-150)",
                health.gpu_temp_max
            ),
        );
    }
    if !(health.load_per_core_max > 0.0 && health.load_per_core_max <= 100.0) {
        p.push(
            span_or(&h.load_per_core_max, &top),
            format!(
                "load_per_core_max {} must be in (0, 100] (runnable tasks per core)",
                health.load_per_core_max
            ),
        );
    }

    health
}

/// `[[nodes]]`; none means this machine alone (`local`).
fn resolve_nodes(
    p: &mut Problems<'_>,
    base: &Path,
    state_dir: &Path,
    raw_nodes: &[(Range<usize>, RawNode)],
) -> Vec<NodeConfig> {
    let mut nodes = Vec::new();
    let mut names = HashSet::new();
    let mut local_seen = false;
    for (span, n) in raw_nodes {
        let Some(name) = &n.name else {
            p.push(span.clone(), "[[nodes]] entry is missing `name`");
            continue;
        };
        if !valid_name(name.get_ref()) {
            p.push(
                name.span(),
                format!(
                    "invalid node name \"{}\": use letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)",
                    name.get_ref()
                ),
            );
        } else if !names.insert(name.get_ref().clone()) {
            p.push(
                name.span(),
                format!("duplicate node name \"{}\"", name.get_ref()),
            );
        }
        let Some(host) = &n.host else {
            p.push(
                name.span(),
                format!(
                    "node \"{}\" is missing `host` (use \"local\" for this machine)",
                    name.get_ref()
                ),
            );
            continue;
        };
        let host_cfg = if host.get_ref() == "local" {
            if local_seen {
                p.push(host.span(), "only one node may have host = \"local\"");
            }
            local_seen = true;
            for (field, present) in [
                ("port", n.port.is_some()),
                ("user", n.user.is_some()),
                ("identity_file", n.identity_file.is_some()),
                ("known_hosts", n.known_hosts.is_some()),
            ] {
                if present {
                    p.push(
                        host.span(),
                        format!(
                            "node \"{}\": `{field}` has no meaning for host = \"local\"",
                            name.get_ref()
                        ),
                    );
                }
            }
            NodeHost::Local
        } else {
            if host.get_ref().trim().is_empty() || host.get_ref().contains(char::is_whitespace) {
                p.push(host.span(), format!("invalid host \"{}\"", host.get_ref()));
            }
            if n.port.as_ref().is_some_and(|s| *s.get_ref() == 0) {
                p.push(span_or(&n.port, span), "port 0 is not a valid SSH port");
            }
            let identity_file = match &n.identity_file {
                Some(f) => resolve_path(base, f.get_ref()),
                None => {
                    p.push(
                        host.span(),
                        format!("node \"{}\" on remote host \"{}\" needs `identity_file` (the SSH private key)", name.get_ref(), host.get_ref()),
                    );
                    PathBuf::new()
                }
            };
            NodeHost::Remote(RemoteHost {
                host: host.get_ref().clone(),
                port: val(&n.port).unwrap_or(22),
                user: val(&n.user).unwrap_or_else(|| "ugro".into()),
                identity_file,
                known_hosts: val(&n.known_hosts)
                    .map_or_else(|| state_dir.join("known_hosts"), |k| resolve_path(base, &k)),
                accept_new_host_keys: val(&n.accept_new_host_keys).unwrap_or(false),
            })
        };
        if let Some(g) = &n.gpus
            && *g.get_ref() > 64
        {
            p.push(
                g.span(),
                format!("gpus = {} is more than the 64 a node can hold", g.get_ref()),
            );
        }
        let mut disk_paths = Vec::new();
        for dp in n
            .disk_paths
            .as_ref()
            .map(|v| v.get_ref().as_slice())
            .unwrap_or(&[])
        {
            if !dp.get_ref().starts_with('/') {
                p.push(
                    dp.span(),
                    format!("disk path \"{}\" must be absolute", dp.get_ref()),
                );
            }
            disk_paths.push(PathBuf::from(dp.get_ref()));
        }
        if disk_paths.is_empty() {
            disk_paths.push(PathBuf::from("/"));
        }
        if let Some(py) = &n.python
            && py.get_ref().trim().is_empty()
        {
            p.push(
                py.span(),
                "python must not be empty (leave it out to skip the PyTorch check)",
            );
        }
        nodes.push(NodeConfig {
            name: name.get_ref().clone(),
            host: host_cfg,
            gpus: val(&n.gpus),
            python: val(&n.python),
            disk_paths,
        });
    }
    if raw_nodes.is_empty() {
        nodes.push(NodeConfig {
            name: "local".into(),
            host: NodeHost::Local,
            gpus: None,
            python: None,
            disk_paths: vec![PathBuf::from("/")],
        });
    }

    nodes
}

/// `[[roots]]`.
fn resolve_roots(
    p: &mut Problems<'_>,
    base: &Path,
    raw_roots: &[(Range<usize>, RawRoot)],
    raw_nodes: &[(Range<usize>, RawNode)],
) -> Vec<RootConfig> {
    let mut roots = Vec::new();
    let mut root_paths = HashSet::new();
    for (span, r) in raw_roots {
        let Some(rp) = &r.path else {
            p.push(span.clone(), "[[roots]] entry is missing `path`");
            continue;
        };
        if rp.get_ref().is_empty() {
            p.push(rp.span(), "root path must not be empty");
            continue;
        }
        // `node = "NAME"`: a node of [[nodes]]; a remote one holds the root on its own disk.
        let mut node = None;
        if let Some(n) = &r.node {
            match raw_nodes
                .iter()
                .find(|(_, rn)| rn.name.as_ref().is_some_and(|x| x.get_ref() == n.get_ref()))
            {
                None => p.push(
                    n.span(),
                    format!("root node \"{}\" is not one of [[nodes]]", n.get_ref()),
                ),
                Some((_, rn)) => {
                    if rn.host.as_ref().is_some_and(|h| h.get_ref() != "local") {
                        node = Some(n.get_ref().clone());
                    }
                }
            }
            if let Some(w) = &r.watch
                && node.is_some()
                && matches!(w.get_ref(), WatchMode::Inotify)
            {
                p.push(
                    w.span(),
                    format!(
                        "watch = \"inotify\" cannot see node \"{}\"'s disk: a remote root is polled",
                        n.get_ref()
                    ),
                );
            }
            if node.is_some() && !Path::new(rp.get_ref()).is_absolute() {
                p.push(
                    rp.span(),
                    format!(
                        "root \"{}\" on node \"{}\" must be an absolute path",
                        rp.get_ref(),
                        n.get_ref()
                    ),
                );
            }
        }
        let path = if node.is_some() {
            PathBuf::from(rp.get_ref())
        } else {
            resolve_path(base, rp.get_ref())
        };
        // The same path on two nodes is refused too: a root is known by its path.
        if !root_paths.insert(path.clone()) {
            p.push(rp.span(), format!("duplicate root \"{}\"", rp.get_ref()));
        }
        match std::fs::metadata(&path) {
            // Another node's path is not looked at here.
            _ if node.is_some() => {}
            Ok(m) if !m.is_dir() => p.push(
                rp.span(),
                format!(
                    "root \"{}\" is not a directory: {} exists and is {}",
                    rp.get_ref(),
                    path.display(),
                    file_kind(&m)
                ),
            ),
            // A missing root is fine: it may be created after the daemon starts.
            _ => {}
        }
        p.duration_in("poll_interval", &r.poll_interval, POLL_INTERVAL_RANGE);
        p.duration_in("stall_after", &r.stall_after, STALL_AFTER_RANGE);
        p.duration_in("outdated_after", &r.outdated_after, OUTDATED_AFTER_RANGE);
        let poll_interval = dur(&r.poll_interval, defaults::POLL_INTERVAL);
        if let Some(e) = &r.epochs
            && *e.get_ref() == 0
        {
            p.push(
                e.span(),
                "epochs = 0: a run needs at least one epoch (leave it out if unknown)",
            );
        }
        let stall_after = dur(&r.stall_after, defaults::STALL_AFTER);
        let mut log_globs = Vec::new();
        let globs = r
            .log_globs
            .as_ref()
            .map_or(&[][..], |v| v.get_ref().as_slice());
        if let Some(v) = &r.log_globs
            && globs.len() > defaults::MAX_LOG_GLOBS
        {
            p.push(
                v.span(),
                format!(
                    "log_globs has {} patterns; at most {} are allowed",
                    globs.len(),
                    defaults::MAX_LOG_GLOBS
                ),
            );
        }
        for g in globs {
            match ugro_core::runs::log_glob_problem(g.get_ref()) {
                Some(why) => p.push(
                    g.span(),
                    format!("log_globs pattern \"{}\": {why}", g.get_ref()),
                ),
                None => log_globs.push(g.get_ref().clone()),
            }
        }
        roots.push(RootConfig {
            path,
            watch: val(&r.watch).unwrap_or(WatchMode::Auto),
            poll_interval,
            epochs: val(&r.epochs),
            stall_after,
            outdated_after: dur(&r.outdated_after, defaults::OUTDATED_AFTER),
            write_progress_json: val(&r.write_progress_json).unwrap_or(false),
            log_globs,
            node,
        });
    }

    roots
}

/// `[http]`.
fn resolve_http(p: &mut Problems<'_>, base: &Path, hr: RawHttp) -> HttpConfig {
    let listen = hr.listen.as_ref().and_then(|l| match l.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.push(
                l.span(),
                format!("invalid listen address \"{}\": expected IP:PORT such as \"127.0.0.1:9314\"", l.get_ref()),
            );
            None
        }
    });

    let metrics_max_runs = match &hr.metrics_max_runs {
        Some(n) if *n.get_ref() > METRICS_MAX_RUNS_MAX => {
            p.push(
                n.span(),
                format!(
                    "metrics_max_runs = {} is more than {METRICS_MAX_RUNS_MAX}",
                    n.get_ref()
                ),
            );
            defaults::METRICS_MAX_RUNS
        }
        Some(n) => *n.get_ref(),
        None => defaults::METRICS_MAX_RUNS,
    };
    let cluster = hr.cluster.as_ref().and_then(|c| {
        let v = c.get_ref();
        if v.is_empty() || v.len() > CLUSTER_MAX_LEN || v.chars().any(char::is_control) {
            p.push(
                c.span(),
                format!("invalid cluster \"{v}\": expected 1 to {CLUSTER_MAX_LEN} bytes without control characters"),
            );
            return None;
        }
        Some(v.clone())
    });

    let token_file = hr
        .token_file
        .as_ref()
        .map(|t| resolve_path(base, t.get_ref()));
    if let (Some(l), Some(addr)) = (&hr.listen, listen)
        && !addr.ip().is_loopback()
        && token_file.is_none()
    {
        p.push(
            l.span(),
            format!("listen = \"{addr}\" is not a loopback address: set token_file (the dashboard's bearer token) too"),
        );
    }
    HttpConfig {
        listen,
        metrics_max_runs,
        cluster,
        token_file,
    }
}

/// `[summary]`.
fn resolve_summary(
    p: &mut Problems<'_>,
    base: &Path,
    state_dir: &Path,
    s: RawSummary,
) -> SummaryConfig {
    let top = TOP;
    let schedule = val(&s.schedule).unwrap_or_else(|| defaults::SCHEDULE.into());
    if let Err(e) = parse_schedule(&schedule) {
        p.push(
            span_or(&s.schedule, &top),
            format!("invalid cron schedule \"{schedule}\": {e}"),
        );
    }
    let tz_name = val(&s.timezone).unwrap_or_else(|| defaults::TIMEZONE.into());
    let timezone = tz_name.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
        p.push(
            span_or(&s.timezone, &top),
            format!("unknown timezone \"{tz_name}\": use an IANA name such as \"UTC\" or \"Europe/Berlin\""),
        );
        chrono_tz::UTC
    });
    // A valid expression for a date that does not exist (30 February) would never make a
    // summary, and costs a search of every year the cron library knows on each tick.
    if let Ok(cron) = parse_schedule(&schedule)
        && ugro_core::schedule::next_fire(&cron, timezone, chrono::Utc::now()).is_none()
    {
        p.push(
            span_or(&s.schedule, &top),
            format!("cron schedule \"{schedule}\" never fires (a date that does not exist, such as 30 February): no summary would ever be made"),
        );
    }
    p.duration_in(
        "metrics_interval",
        &s.metrics_interval,
        METRICS_INTERVAL_RANGE,
    );
    p.duration_in("retention", &s.retention, RETENTION_RANGE);
    p.duration_in("long_running", &s.long_running, LONG_RUNNING_RANGE);
    let metrics_interval = dur(&s.metrics_interval, defaults::METRICS_INTERVAL);
    let retention = dur(&s.retention, defaults::RETENTION);
    SummaryConfig {
        schedule,
        timezone,
        dir: val(&s.dir).map_or_else(|| state_dir.join("summaries"), |d| resolve_path(base, &d)),
        retention,
        metrics_interval,
        long_running: dur(&s.long_running, defaults::LONG_RUNNING),
    }
}

/// `[slurm]`: `node` must name a configured node.
fn resolve_slurm(
    p: &mut Problems<'_>,
    nodes: &[(Range<usize>, RawNode)],
    s: RawSlurm,
) -> SlurmConfig {
    p.duration_in("queued_after", &s.queued_after, SLURM_QUEUED_AFTER_RANGE);
    p.duration_in("interval", &s.interval, SLURM_INTERVAL_RANGE);
    p.duration_in("command_timeout", &s.command_timeout, PROBE_TIMEOUT_RANGE);
    let node = s.node.as_ref().and_then(|n| {
        let name = n.get_ref();
        let names: Vec<String> = nodes.iter().filter_map(|(_, r)| val(&r.name)).collect();
        // Without [[nodes]] the one node is `local`.
        if names.iter().any(|x| x == name) || (names.is_empty() && name == "local") {
            Some(name.clone())
        } else {
            p.push(
                n.span(),
                format!(
                    "\"{name}\" is not a configured node; configured: {}",
                    if names.is_empty() {
                        "local".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            );
            None
        }
    });
    SlurmConfig {
        enabled: val(&s.enabled).unwrap_or(false),
        node,
        drain_unhealthy: val(&s.drain_unhealthy).unwrap_or(false),
        queued_after: dur(&s.queued_after, defaults::SLURM_QUEUED_AFTER),
        interval: dur(&s.interval, defaults::SLURM_INTERVAL),
        command_timeout: dur(&s.command_timeout, defaults::SLURM_COMMAND_TIMEOUT),
    }
}

/// `[email]`.
fn resolve_email(p: &mut Problems<'_>, base: &Path, e: RawEmail) -> EmailConfig {
    let top = TOP;
    let email_span = span_or(&e.enabled, &top);
    let email = EmailConfig {
        enabled: val(&e.enabled).unwrap_or(false),
        smtp_host: val(&e.smtp_host).unwrap_or_else(|| defaults::SMTP_HOST.into()),
        smtp_port: val(&e.smtp_port).unwrap_or(defaults::SMTP_PORT),
        tls: val(&e.tls).unwrap_or(TlsMode::Starttls),
        username: val(&e.username),
        password_file: val(&e.password_file).map(|f| resolve_path(base, &f)),
        ca_file: val(&e.ca_file).map(|f| resolve_path(base, &f)),
        from: val(&e.from).unwrap_or_else(|| defaults::FROM.into()),
        to: e
            .to
            .as_ref()
            .map(|v| v.get_ref().iter().map(|t| t.get_ref().clone()).collect())
            .unwrap_or_default(),
    };
    for addr in e.to.as_ref().map(|v| v.get_ref().as_slice()).unwrap_or(&[]) {
        if !plausible_mailbox(addr.get_ref()) {
            p.push(
                addr.span(),
                format!("invalid email address \"{}\"", addr.get_ref()),
            );
        }
    }
    if let Some(f) = &e.from
        && !plausible_mailbox(f.get_ref())
    {
        p.push(
            f.span(),
            format!("invalid email address \"{}\"", f.get_ref()),
        );
    }
    if email.enabled && email.to.is_empty() {
        p.push(
            span_or(&e.to, &email_span),
            "email is enabled but `to` lists no recipient",
        );
    }
    if email.smtp_port == 0 {
        p.push(
            span_or(&e.smtp_port, &email_span),
            "smtp_port 0 is not a valid port",
        );
    }
    email
}

/// Parses a cron expression the way the scheduler will (5 or 6 fields, seconds optional).
pub fn parse_schedule(expr: &str) -> Result<croner::Cron, String> {
    ugro_core::schedule::parse(expr)
}

/// "Name <user@host>" or "user@host", with something on each side of the '@'.
fn plausible_mailbox(s: &str) -> bool {
    let addr = match (s.find('<'), s.rfind('>')) {
        (Some(a), Some(b)) if a < b && s.trim_end().ends_with('>') => &s[a + 1..b],
        (None, None) => s.trim(),
        _ => return false,
    };
    match addr.split_once('@') {
        Some((user, host)) => {
            !user.is_empty()
                && !host.is_empty()
                && !addr.contains(char::is_whitespace)
                && !host.contains('@')
        }
        None => false,
    }
}

impl Config {
    /// Settings that differ from `old` but only take effect after a restart.
    pub fn needs_restart(&self, old: &Config) -> Vec<String> {
        let mut v = Vec::new();
        if self.daemon.state_dir != old.daemon.state_dir {
            v.push("daemon.state_dir".to_string());
        }
        if self.daemon.socket != old.daemon.socket {
            v.push("daemon.socket".to_string());
        }
        if self.http.listen != old.http.listen {
            v.push("http.listen".to_string());
        }
        if self.http.token_file != old.http.token_file {
            v.push("http.token_file".to_string());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(Path::new("/etc/ugro/test.toml"), text)
    }

    fn problems(text: &str) -> Vec<String> {
        match parse_str(text) {
            Ok(_) => panic!("expected problems for:\n{text}"),
            Err(e) => e.lines(),
        }
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse_str("").unwrap();
        assert_eq!(c.daemon.state_dir, PathBuf::from(defaults::STATE_DIR));
        assert_eq!(c.daemon.socket, PathBuf::from(defaults::SOCKET));
        assert_eq!(c.daemon.control_group.as_deref(), Some("ugro"));
        assert_eq!(c.health.interval, Duration::from_secs(60));
        assert_eq!(c.health.disk_free_min, 10_000_000_000);
        assert_eq!(c.health.latency_max, Duration::from_millis(100));
        assert_eq!(c.nodes.len(), 1);
        assert_eq!(c.nodes[0].host, NodeHost::Local);
        assert_eq!(c.summary.schedule, "0 55 23 * * *");
        assert_eq!(c.summary.dir, PathBuf::from("/var/lib/ugro/summaries"));
        assert!(!c.email.enabled);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let c =
            parse_str("[daemon]\nstate_dir = \"../state\"\n[[roots]]\npath = \"logs\"\n").unwrap();
        assert_eq!(c.daemon.state_dir, PathBuf::from("/etc/state"));
        assert_eq!(c.roots[0].path, PathBuf::from("/etc/ugro/logs"));
    }

    #[test]
    fn unknown_key_is_located_and_quoted() {
        let lines = problems("[health]\ninterval = \"30s\"\nintervall = \"5m\"\n");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("/etc/ugro/test.toml:3:1: "),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("intervall"), "{}", lines[0]);
    }

    #[test]
    fn bad_duration_names_key_position_and_value() {
        let lines = problems("[health]\ninterval = \"30x\"\n");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("/etc/ugro/test.toml:2:12: health.interval: "),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("\"30x\""), "{}", lines[0]);
    }

    #[test]
    fn every_problem_is_reported_not_just_the_first() {
        let lines = problems(
            "[health]\npass_rate = 1.5\n[summary]\ntimezone = \"Mars/Olympus\"\n[[nodes]]\nname = \"a\"\nhost = \"gpu1\"\n[[nodes]]\nname = \"a\"\nhost = \"local\"\n",
        );
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].contains(":2:13: ") && lines[0].contains("1.5"));
        assert!(lines[1].contains(":4:12: ") && lines[1].contains("\"Mars/Olympus\""));
        assert!(lines[2].contains(":7:8: ") && lines[2].contains("identity_file"));
        assert!(lines[3].contains(":9:8: ") && lines[3].contains("duplicate node name \"a\""));
    }

    #[test]
    fn syntax_error_is_located() {
        let lines = problems("[daemon]\nsocket = \"/run/x.sock\n");
        assert!(lines[0].starts_with("/etc/ugro/test.toml:2:"), "{lines:?}");
    }

    #[test]
    fn sizes_and_schedules_parse() {
        let c = parse_str(
            "[health]\ndisk_free_min = \"512MiB\"\n[summary]\nschedule = \"0 0 6 * * Mon-Fri\"\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        assert_eq!(c.health.disk_free_min, 512 * 1024 * 1024);
        assert_eq!(c.summary.timezone, chrono_tz::Europe::Berlin);
        assert!(problems("[summary]\nschedule = \"61 * * * *\"\n")[0].contains("\"61 * * * *\""));
    }

    #[test]
    fn mailbox_check() {
        assert!(plausible_mailbox("team@lab"));
        assert!(plausible_mailbox("ugro-monitor <ugro@lab>"));
        assert!(!plausible_mailbox("team"));
        assert!(!plausible_mailbox("a b@lab"));
        assert!(!plausible_mailbox("<ugro@lab"));
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncdé", 0), (1, 1));
        assert_eq!(line_col("ab\ncdé", 3), (2, 1));
        assert_eq!(line_col("ab\nédx", 6), (2, 3));
    }

    /// Every duration key: its section (`roots` is an array of tables), its name, its allowed
    /// range and where the resolved value is.
    type DurationKey = (
        &'static str,
        &'static str,
        DurationRange,
        fn(&Config) -> Duration,
    );
    const DURATION_KEYS: &[DurationKey] = &[
        ("health", "interval", HEALTH_INTERVAL_RANGE, |c| {
            c.health.interval
        }),
        ("health", "min_interval", HEALTH_INTERVAL_RANGE, |c| {
            c.health.min_interval
        }),
        ("health", "max_interval", HEALTH_INTERVAL_RANGE, |c| {
            c.health.max_interval
        }),
        ("health", "latency_max", LATENCY_MAX_RANGE, |c| {
            c.health.latency_max
        }),
        ("health", "pytorch_interval", PYTORCH_INTERVAL_RANGE, |c| {
            c.health.pytorch_interval
        }),
        ("health", "probe_timeout", PROBE_TIMEOUT_RANGE, |c| {
            c.health.probe_timeout
        }),
        ("health", "pytorch_timeout", PROBE_TIMEOUT_RANGE, |c| {
            c.health.pytorch_timeout
        }),
        ("health", "login_check_interval", LOGIN_CHECK_RANGE, |c| {
            c.health.login_check_interval
        }),
        ("roots", "poll_interval", POLL_INTERVAL_RANGE, |c| {
            c.roots[0].poll_interval
        }),
        ("roots", "stall_after", STALL_AFTER_RANGE, |c| {
            c.roots[0].stall_after
        }),
        ("roots", "outdated_after", OUTDATED_AFTER_RANGE, |c| {
            c.roots[0].outdated_after
        }),
        ("summary", "retention", RETENTION_RANGE, |c| {
            c.summary.retention
        }),
        ("summary", "metrics_interval", METRICS_INTERVAL_RANGE, |c| {
            c.summary.metrics_interval
        }),
        ("summary", "long_running", LONG_RUNNING_RANGE, |c| {
            c.summary.long_running
        }),
    ];

    /// A file with `key = value` as its line 2 (line 3 for a root, after its `path`).
    fn with_key(section: &str, key: &str, value: &str) -> (String, usize) {
        if section == "roots" {
            let text = format!("[[roots]]\npath = \"/nonexistent/ugro-test\"\n{key} = {value}\n");
            (text, 3)
        } else {
            (format!("[{section}]\n{key} = {value}\n"), 2)
        }
    }

    #[test]
    fn defaults_lie_in_their_ranges() {
        let (text, _) = with_key("roots", "epochs", "1");
        let c = parse_str(&text).unwrap();
        for (section, key, range, get) in DURATION_KEYS {
            assert!(range.contains(get(&c)), "default of {section}.{key}");
        }
        assert!(c.health.disk_free_min <= DISK_FREE_MIN_MAX);
    }

    #[test]
    fn the_values_that_crashed_the_daemon_are_located_quoted_and_ranged() {
        let lines = problems("[summary]\nretention = \"300000y\"\n");
        assert_eq!(
            lines,
            [
                "/etc/ugro/test.toml:2:13: summary.retention: retention \"300000y\" is out of range: it must be from \"1d\" to \"3650d\""
            ]
        );
        let lines = problems("[summary]\nmetrics_interval = \"500000000y\"\n");
        assert_eq!(
            lines,
            [
                "/etc/ugro/test.toml:2:20: summary.metrics_interval: metrics_interval \"500000000y\" is out of range: it must be from \"10s\" to \"1d\""
            ]
        );
    }

    #[test]
    fn every_duration_key_rejects_both_ends_and_accepts_its_bounds() {
        for (section, key, range, get) in DURATION_KEYS {
            for bound in [range.min, range.max] {
                let (text, _) = with_key(section, key, &format!("\"{}\"", short(bound)));
                // The health intervals are also ordered; keep the other two out of the way.
                let text = if *section == "health"
                    && key.ends_with("interval")
                    && *key != "pytorch_interval"
                {
                    let others: String = ["interval", "min_interval", "max_interval"]
                        .iter()
                        .filter(|k| *k != key)
                        .map(|k| format!("{k} = \"{}\"\n", short(bound)))
                        .collect();
                    text.replacen('\n', &format!("\n{others}"), 1)
                } else {
                    text
                };
                let c = parse_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                assert_eq!(get(&c), bound, "{section}.{key}");
            }
            let below = range.min.checked_sub(Duration::from_millis(1));
            for bad in below
                .into_iter()
                .chain([range.max + Duration::from_secs(1)])
            {
                let value = format!("\"{}ms\"", bad.as_millis());
                let (text, line) = with_key(section, key, &value);
                let lines = problems(&text);
                assert!(
                    lines
                        .iter()
                        .any(|l| l.starts_with(&format!("/etc/ugro/test.toml:{line}:"))
                            && l.contains(section)
                            && l.contains(key)
                            && l.contains(&value)
                            && l.contains(&format!("\"{}\"", short(range.max)))),
                    "{section}.{key} = {value}: {lines:?}"
                );
            }
        }
    }

    #[test]
    fn a_schedule_that_never_fires_is_an_error() {
        let lines = problems("[summary]\nschedule = \"0 0 6 30 2 *\"\n");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "/etc/ugro/test.toml:2:12: summary.schedule: cron schedule \"0 0 6 30 2 *\" never fires"
            ),
            "{}",
            lines[0]
        );
        // Rare is fine: 29 February comes every four years.
        assert!(parse_str("[summary]\nschedule = \"0 0 6 29 2 *\"\n").is_ok());
    }

    #[test]
    fn disk_free_min_is_at_most_a_petabyte() {
        assert_eq!(
            parse_str("[health]\ndisk_free_min = \"1PB\"\n")
                .unwrap()
                .health
                .disk_free_min,
            DISK_FREE_MIN_MAX
        );
        let lines = problems("[health]\ndisk_free_min = \"5EB\"\n");
        assert_eq!(
            lines,
            [
                "/etc/ugro/test.toml:2:17: health.disk_free_min: disk_free_min \"5EB\" is out of range: it must be from \"0B\" to \"1PB\""
            ]
        );
    }

    #[test]
    fn a_root_that_is_a_file_is_an_error_a_missing_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        let cfg = dir.path().join("ugro.toml");
        let text = "[[roots]]\npath = \"notes.txt\"\n[[roots]]\npath = \"logs\"\n[[roots]]\npath = \"later\"\n";
        let lines = match parse(&cfg, text) {
            Ok(_) => panic!("a file root was accepted"),
            Err(e) => e.lines(),
        };
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(&format!(
                "{}:2:8: roots[0].path: root \"notes.txt\" is not a directory",
                cfg.display()
            )),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].ends_with("exists and is a regular file"),
            "{}",
            lines[0]
        );
        // Through the file system too.
        std::fs::write(&cfg, text.replace("notes.txt", "logs2")).unwrap();
        assert_eq!(load(&cfg).unwrap().roots.len(), 3);
    }

    /// Property tests of the resolver: whatever the text, `parse` returns a config whose every
    /// duration and size lies in its range, or located problems; it never panics.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// 256 cases per property in the test suite (well under a second); set
        /// `UGRO_FUZZ_CASES` for a longer run.
        fn cfg() -> ProptestConfig {
            ProptestConfig {
                cases: std::env::var("UGRO_FUZZ_CASES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(256),
                failure_persistence: None,
                ..ProptestConfig::default()
            }
        }

        /// Duration strings: humantime's units and some it does not know, numbers up to and past
        /// u64, one to three parts.
        fn duration_text() -> impl Strategy<Value = String> {
            let number = prop_oneof![
                (0u64..10_000).prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                "[0-9]{15,22}",
                "-?[0-9]{0,3}(\\.[0-9]{0,3})?",
            ];
            let unit = prop_oneof![
                Just(""),
                Just("ns"),
                Just("us"),
                Just("ms"),
                Just("s"),
                Just("sec"),
                Just("m"),
                Just("min"),
                Just("h"),
                Just("hr"),
                Just("d"),
                Just("days"),
                Just("w"),
                Just("M"),
                Just("month"),
                Just("y"),
                Just("years"),
                Just("x"),
                Just("µs"),
            ];
            prop::collection::vec((number, unit, prop_oneof![Just(""), Just(" ")]), 1..3).prop_map(
                |parts| {
                    parts
                        .into_iter()
                        .map(|(n, u, sep)| format!("{n}{sep}{u}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
            )
        }

        fn size_text() -> impl Strategy<Value = String> {
            let number = prop_oneof![
                (0u64..10_000).prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                "[0-9]{1,3}\\.[0-9]{1,3}",
                "[0-9]e[0-9]{1,3}",
                "-[0-9]{1,3}",
            ];
            let unit = prop_oneof![
                Just(""),
                Just("B"),
                Just("KB"),
                Just("KiB"),
                Just("MB"),
                Just("MiB"),
                Just("GB"),
                Just("GiB"),
                Just("TB"),
                Just("TiB"),
                Just("PB"),
                Just("PiB"),
                Just("EB"),
                Just("EiB"),
                Just("k"),
                Just("x"),
            ];
            (number, prop_oneof![Just(""), Just(" ")], unit)
                .prop_map(|(n, s, u)| format!("{n}{s}{u}"))
        }

        /// A located problem: inside the file, and `value` quoted on `line` when given.
        fn assert_located(e: &ConfigError, text: &str, want: Option<(usize, &str)>) {
            let ConfigError::Invalid { problems, .. } = e else {
                panic!("not a located error: {e}");
            };
            assert!(!problems.is_empty());
            let lines = text.split('\n').count();
            for p in problems {
                assert!(p.line >= 1 && p.line <= lines, "{p} in {lines} lines");
                assert!(p.column >= 1, "{p}");
                assert!(!p.message.is_empty(), "{p}");
            }
            if let Some((line, value)) = want {
                assert!(
                    problems
                        .iter()
                        .any(|p| p.line == line && p.message.contains(value)),
                    "no problem on line {line} quoting {value}: {e}"
                );
            }
        }

        proptest! {
            #![proptest_config(cfg())]

            #[test]
            fn any_duration_in_any_key_is_in_range_or_located(
                k in 0..DURATION_KEYS.len(),
                d in duration_text(),
            ) {
                let (section, key, range, get) = DURATION_KEYS[k];
                let value = format!("\"{d}\"");
                let (text, line) = with_key(section, key, &value);
                match parse_str(&text) {
                    Ok(c) => prop_assert!(range.contains(get(&c)), "{section}.{key} = {value} accepted"),
                    Err(e) => assert_located(&e, &text, Some((line, &value))),
                }
            }

            #[test]
            fn any_size_is_in_range_or_located(s in size_text()) {
                let value = format!("\"{s}\"");
                let (text, line) = with_key("health", "disk_free_min", &value);
                match parse_str(&text) {
                    Ok(c) => prop_assert!(c.health.disk_free_min <= DISK_FREE_MIN_MAX, "{value} accepted"),
                    Err(e) => assert_located(&e, &text, Some((line, &value))),
                }
            }

            #[test]
            fn toml_ish_text_never_panics(lines in prop::collection::vec(toml_line(), 0..12)) {
                let text = lines.join("\n");
                if let Err(e) = parse_str(&text) {
                    assert_located(&e, &text, None);
                }
            }

            #[test]
            fn arbitrary_text_never_panics(text in "(?s).{0,300}") {
                // A read error cannot happen here; anything else is located.
                if let Err(e @ ConfigError::Invalid { .. }) = parse_str(&text) {
                    assert_located(&e, &text, None);
                }
            }
        }

        /// One line of a config-like file: a section header, a known key with a plausible or
        /// hostile value, or noise.
        fn toml_line() -> impl Strategy<Value = String> {
            let header = prop_oneof![
                Just("[daemon]"),
                Just("[health]"),
                Just("[[nodes]]"),
                Just("[[roots]]"),
                Just("[http]"),
                Just("[summary]"),
                Just("[email]"),
                Just("[nodes]"),
                Just("[x]"),
            ]
            .prop_map(str::to_string);
            let key = prop_oneof![
                prop::sample::select(DURATION_KEYS.iter().map(|k| k.1).collect::<Vec<_>>()),
                prop::sample::select(vec![
                    "state_dir",
                    "socket",
                    "control_group",
                    "pass_rate",
                    "disk_free_min",
                    "gpu_temp_max",
                    "name",
                    "host",
                    "port",
                    "user",
                    "identity_file",
                    "known_hosts",
                    "gpus",
                    "python",
                    "disk_paths",
                    "path",
                    "watch",
                    "epochs",
                    "listen",
                    "schedule",
                    "timezone",
                    "dir",
                    "enabled",
                    "smtp_port",
                    "tls",
                    "from",
                    "to",
                ]),
            ];
            let value = prop_oneof![
                duration_text().prop_map(|d| format!("\"{d}\"")),
                size_text().prop_map(|s| format!("\"{s}\"")),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| format!("{f:?}")),
                Just("nan".to_string()),
                Just("inf".to_string()),
                Just("true".to_string()),
                Just("[\"/\", \"rel\"]".to_string()),
                "\"[ -~]{0,20}\"",
                "[ -~]{0,12}",
            ];
            prop_oneof![
                header,
                (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
                "[ -~]{0,30}",
            ]
        }
    }
}
