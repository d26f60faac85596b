//! The dashboard's pages (overview, node, run, summaries) rendered on the server with maud
//! (every value escaped), and the SVG charts they show.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use ugro_api::{NodeHealth, NodeState, Outcome, RunInfo, RunStatus};

use crate::shared::Shared;
use crate::store::EventFilter;

/// Events shown on the overview.
const RECENT_EVENTS: u32 = 20;
/// Summaries listed.
const SUMMARIES_LISTED: u32 = 400;
/// Epochs listed in a run's timeline (the newest).
const TIMELINE_MAX: usize = 500;
/// Runs listed per group on the overview, the most recently written of the group: running and
/// stuck runs (bounded in practice by the GPUs; the cap keeps a page of a broken tree bounded),
/// failed runs (they stay failed for months), the quiet groups (finished, outdated, unknown).
/// Each row is about 200 bytes.
const ACTIVE_LISTED: usize = 500;
const FAILED_LISTED: usize = 200;
const QUIET_LISTED: usize = 100;
/// Lines of the run's log shown on its page, the most bytes read for them, and how long the
/// page waits for them (a remote node may be slow).
const TAIL_LINES: u64 = 50;
const TAIL_BYTES: u64 = 64 * 1024;
const TAIL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);
/// The order of the run groups on the overview.
const GROUPS: [RunStatus; 6] = [
    RunStatus::Running,
    RunStatus::Stuck,
    RunStatus::Failed,
    RunStatus::Finished,
    RunStatus::Outdated,
    RunStatus::Unknown,
];

/// A page that could not be made: its status and a message, shown as a page.
#[derive(Debug)]
pub struct PageError(StatusCode, String);

impl PageError {
    fn internal(e: impl std::fmt::Display) -> Self {
        PageError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = self.0.to_string();
        (
            self.0,
            Html(layout(&title, html! { p.error { (self.1) } }).into_string()),
        )
            .into_response()
    }
}

type PageResult = Result<Html<String>, PageError>;

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · ugro-monitor" }
                link rel="stylesheet" href=(super::STYLE_URL);
                script defer src=(super::SCRIPT_URL) {}
            }
            body {
                header.top {
                    a.brand href="/" { "ugro-monitor" }
                    nav { a href="/" { "Overview" } a href="/summaries" { "Summaries" } }
                    span #live .live title="live updates" { "static" }
                }
                main { (body) }
            }
        }
    }
}

/// Percent-encodes a path (slashes kept) for an `href`.
pub fn url_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// "3h 20m", "45s".
fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

fn ago(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        Some(t) => format!(
            "{} ago",
            duration((now - t).num_seconds().max(0).unsigned_abs())
        ),
        None => "never".to_string(),
    }
}

fn state_class(s: NodeState) -> &'static str {
    match s {
        NodeState::Healthy => "ok",
        NodeState::Degraded => "warn",
        NodeState::Unhealthy | NodeState::Unreachable => "bad",
        _ => "muted",
    }
}

fn status_class(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "ok",
        RunStatus::Finished => "done",
        RunStatus::Stuck => "warn",
        RunStatus::Failed => "bad",
        _ => "muted",
    }
}

/// Mean utilisation of a node's GPUs, when it reported any.
fn gpu_use(n: &NodeHealth) -> Option<f64> {
    let u: Vec<f64> = n.gpus.iter().filter_map(|g| g.utilization_pct).collect();
    (!u.is_empty()).then(|| u.iter().sum::<f64>() / u.len() as f64)
}

/// "3/10", or "3" when the total is not known.
fn epochs(p: &ugro_api::Progress) -> String {
    match p.total_epochs {
        Some(t) => format!("{}/{t}", p.completed_epochs),
        None => p.completed_epochs.to_string(),
    }
}

/// The run page's progress: a `<progress>` bar and its figures (updated by the script).
fn progress(r: &RunInfo) -> Markup {
    let p = &r.progress;
    let epochs = epochs(p);
    html! {
        progress.bar max="100" value=(format!("{:.1}", p.percentage)) {}
        " " span.pct { (format!("{:.0}%", p.percentage)) } " " span.ep { (epochs) }
    }
}

fn eta(r: &RunInfo) -> String {
    match (r.status, r.progress.eta_seconds) {
        (RunStatus::Running, Some(s)) => duration(s),
        _ => String::new(),
    }
}

fn nodes_table(nodes: &[NodeHealth]) -> Markup {
    html! {
        table.nodes {
            thead { tr { th { "Node" } th { "State" } th { "Score" } th { "Failing" } th { "GPUs" } } }
            tbody {
                @for n in nodes {
                    @let failing: Vec<&str> = n.checks.iter()
                        .filter(|c| matches!(c.status, Outcome::Fail | Outcome::Hung))
                        .map(|c| c.name.as_str()).collect();
                    tr data-node=(n.name) {
                        td { a href={ "/nodes/" (url_path(&n.name)) } { (n.name) } }
                        td { span class={ "badge state " (state_class(n.state)) } { (n.state.as_str()) } }
                        td.score { (n.score) }
                        td.failing { (failing.join(", ")) }
                        td { @if let Some(u) = gpu_use(n) { (n.gpus.len()) " · " (format!("{u:.0}%")) } @else { "–" } }
                    }
                }
            }
        }
    }
}

/// How many runs of a group the overview lists.
fn listed_of(status: RunStatus) -> usize {
    match status {
        RunStatus::Running | RunStatus::Stuck => ACTIVE_LISTED,
        RunStatus::Failed => FAILED_LISTED,
        _ => QUIET_LISTED,
    }
}

/// The `limit` most recently written of `all` (a run never written counts as oldest), in the
/// order of their ids; all of them when there are no more.
fn most_recent<'a, T>(
    all: &[&'a T],
    limit: usize,
    written: impl Fn(&T) -> Option<DateTime<Utc>>,
    id: impl Fn(&T) -> &str,
) -> Vec<&'a T> {
    if all.len() <= limit {
        return all.to_vec();
    }
    let mut v = all.to_vec();
    if limit == 0 {
        return Vec::new();
    }
    v.select_nth_unstable_by_key(limit - 1, |r| std::cmp::Reverse(written(r)));
    v.truncate(limit);
    v.sort_unstable_by(|a, b| id(a).cmp(id(b)));
    v
}

/// `GET /`: nodes, runs by status, recent events, the last summary.
pub async fn overview(State(shared): State<Arc<Shared>>) -> PageResult {
    let now = Utc::now();
    let nodes: Vec<NodeHealth> = shared.health.reports().iter().map(Into::into).collect();
    let mut runs: Vec<RunInfo> = shared
        .runs
        .list(None, None)
        .iter()
        .map(Into::into)
        .collect();
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    let (events, _) = shared
        .store
        .events(&EventFilter {
            limit: RECENT_EVENTS,
            ..EventFilter::default()
        })
        .await
        .map_err(PageError::internal)?;
    let last = shared
        .store
        .list_summaries(1)
        .await
        .map_err(PageError::internal)?;
    let body = html! {
        section {
            h2 { "Nodes" }
            (nodes_table(&nodes))
        }
        section #runs {
            h2 { "Runs " span.muted { "(" (runs.len()) ")" } }
            @for status in GROUPS {
                @let active = matches!(status, RunStatus::Running | RunStatus::Stuck | RunStatus::Failed);
                @let all: Vec<&RunInfo> = runs.iter().filter(|r| r.status == status).collect();
                @let group = most_recent(&all, listed_of(status), |r| r.last_log_update, |r| r.id.as_str());
                details.group open[active] data-group=(status.as_str()) {
                    summary { span class={ "badge " (status_class(status)) } { (status.as_str()) } " " span.count { (all.len()) } }
                    @if group.len() < all.len() {
                        p.muted { "The " (group.len()) " most recently written of " (all.len()) "; all: " code { "ugroctl runs --status " (status.as_str()) } }
                    }
                    table.runs {
                        thead { tr { th { "Run" } th { "Progress" } th { "ETA" } th { "Reason" } } }
                        tbody {
                            // Lean rows (the group is the status; live.js finds the cells by
                            // position): about 200 bytes each, so 1,200 rows stay under 300 KB.
                            @for r in group {
                                tr data-run=(r.id) {
                                    td.id { a href={ "/runs/" (url_path(&r.id)) } { (r.id) } }
                                    td { progress max="100" value=(format!("{:.0}", r.progress.percentage)) {} " " (epochs(&r.progress)) }
                                    td { (eta(r)) }
                                    td { (r.error.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Recent events" }
            ul #events .events {
                @for e in &events {
                    li class=(e.severity.as_str()) {
                        time datetime=(e.time.to_rfc3339()) { (ago(Some(e.time), now)) }
                        " " b { (e.kind.as_str()) } " " span.subject { (e.subject) } " " span.msg { (e.message) }
                    }
                }
            }
        }
        section {
            h2 { "Last summary" }
            @match last.first() {
                Some(s) => p { a href={ "/summaries/" (s.date) } { (s.date) " — " (s.subject) } " " span.muted { "made " (ago(Some(s.made_at), now)) } },
                None => p.muted { "No summary yet." },
            }
        }
    };
    Ok(Html(layout("Overview", body).into_string()))
}

/// `GET /nodes/{name}`: checks, GPUs, 24 h charts.
pub async fn node(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> PageResult {
    let now = Utc::now();
    let Some(rt) = shared.health.node(&name) else {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no node named \"{name}\""),
        ));
    };
    let n: NodeHealth = (&rt.report()).into();
    let base = format!("/nodes/{}", url_path(&name));
    let body = html! {
        h1 { (n.name) " " span class={ "badge state " (state_class(n.state)) } { (n.state.as_str()) } }
        p.muted { (n.host) " · score " (n.score) " · checked " (ago(n.last_check, now)) }
        @if !n.alerts.is_empty() {
            ul.alerts { @for a in &n.alerts { li class=(a.severity.as_str()) { (a.message) " " span.muted { "since " (ago(Some(a.since), now)) } } } }
        }
        h2 { "Checks" }
        table {
            thead { tr { th { "Check" } th { "Outcome" } th { "Value" } th { "Message" } } }
            tbody {
                @for c in &n.checks {
                    tr {
                        td { (c.name.as_str()) }
                        td { span class={ "badge " (match c.status { Outcome::Pass => "ok", Outcome::Fail if c.warning => "warn", Outcome::Fail | Outcome::Hung => "bad", _ => "muted" }) } { (c.status.as_str()) } }
                        td { (c.value.as_ref().map(ToString::to_string).unwrap_or_default()) }
                        td { (c.message) }
                    }
                }
            }
        }
        h2 { "GPUs" }
        @if n.gpus.is_empty() { p.muted { "No GPU reading." } } @else {
            table {
                thead { tr { th { "#" } th { "Name" } th { "Use" } th { "Memory" } th { "Temp" } th { "Power" } } }
                tbody { @for g in &n.gpus { tr {
                    td { (g.index) } td { (g.name) }
                    td { (g.utilization_pct.map(|u| format!("{u:.0}%")).unwrap_or_default()) }
                    td { (match (g.memory_used_mib, g.memory_total_mib) { (Some(u), Some(t)) => format!("{u:.0}/{t:.0} MiB"), _ => String::new() }) }
                    td { (g.temperature_c.map(|t| format!("{t:.0} °C")).unwrap_or_default()) }
                    td { (g.power_w.map(|p| format!("{p:.0} W")).unwrap_or_default()) }
                } } }
            }
        }
        h2 { "Last 24 hours" }
        div.charts {
            img.chart src={ (base) "/gpu.svg" } alt="GPU utilisation, last 24 hours" width="900" height="400";
            img.chart src={ (base) "/cpu.svg" } alt="CPU use, last 24 hours" width="900" height="400";
        }
    };
    Ok(Html(layout(&name, body).into_string()))
}

fn svg(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /nodes/{name}/gpu.svg|cpu.svg`: the node's last 24 hours.
pub async fn node_chart(
    State(shared): State<Arc<Shared>>,
    Path((name, chart)): Path<(String, String)>,
) -> Result<Response, PageError> {
    if shared.health.node(&name).is_none() {
        return Err(PageError(
            StatusCode::NOT_FOUND,
            format!("no node named \"{name}\""),
        ));
    }
    let end = Utc::now();
    let start = end - chrono::Duration::hours(24);
    let config = shared.config();
    let (gpus, cpus) = shared
        .store
        .samples_between(start, end)
        .await
        .map_err(PageError::internal)?;
    let (series, title, y, empty) = match chart.as_str() {
        "gpu.svg" => {
            let mine: Vec<_> = gpus.into_iter().filter(|g| g.node == name).collect();
            let series = crate::chart::series_from_samples(&mine, config.summary.metrics_interval);
            (
                series,
                "GPU utilisation, last 24 h",
                "GPU utilisation",
                "no GPU samples in the last 24 h",
            )
        }
        "cpu.svg" => {
            let points = cpus
                .iter()
                .filter(|c| c.node == name)
                .filter_map(|c| Some((c.at, c.cpu_pct?)))
                .collect();
            let series = vec![crate::chart::ChartSeries {
                name: name.clone(),
                points,
            }];
            (
                series,
                "CPU use, last 24 h",
                "CPU use",
                "no CPU samples in the last 24 h",
            )
        }
        _ => {
            return Err(PageError(
                StatusCode::NOT_FOUND,
                "no such chart".to_string(),
            ));
        }
    };
    let owned = OwnedInput {
        title: title.to_string(),
        tz: config.summary.timezone,
        start,
        end,
        series,
    };
    owned.render(y, empty).await
}

/// A chart input that owns its series, for the blocking pool.
struct OwnedInput {
    title: String,
    tz: chrono_tz::Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    series: Vec<crate::chart::ChartSeries>,
}

impl OwnedInput {
    fn input(&self) -> crate::chart::ChartInput<'_> {
        crate::chart::ChartInput {
            title: self.title.clone(),
            tz: self.tz,
            window_start: self.start,
            window_end: self.end,
            series: &self.series,
        }
    }

    /// Draws the SVG on the blocking pool.
    async fn render(self, y: &'static str, empty: &'static str) -> Result<Response, PageError> {
        let body =
            tokio::task::spawn_blocking(move || crate::chart::chart_svg(&self.input(), y, empty))
                .await
                .map_err(PageError::internal)?
                .map_err(PageError::internal)?;
        Ok(svg(body))
    }
}

/// The run and its epochs' completion times, or 404.
async fn run_and_epochs(
    shared: &Shared,
    id: &str,
) -> Result<(RunInfo, Vec<(u32, DateTime<Utc>)>), PageError> {
    let info = shared.runs.get(id).ok_or_else(|| {
        PageError(
            StatusCode::NOT_FOUND,
            format!("no run \"{id}\" under any root"),
        )
    })?;
    let epochs = match shared.runs.root_of(id) {
        Some(root) => shared
            .store
            .run_epochs(&root.display().to_string(), id)
            .await
            .map_err(PageError::internal)?,
        None => Vec::new(),
    };
    Ok(((&info).into(), epochs))
}

fn scores(s: Option<&ugro_api::Scores>) -> String {
    s.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// The last lines of a run's log as the run page shows them, and where live.js follows on.
struct LogTail {
    file: String,
    text: String,
    /// `/v1/logs/ID?follow=true&file=NAME&offset=END`: the follow, from where the text ends.
    follow_url: String,
}

/// Reads the last [`TAIL_LINES`] lines of the run's log (at most [`TAIL_BYTES`], within
/// [`TAIL_DEADLINE`]); `Err` is the sentence the page shows instead.
async fn log_tail(shared: &Shared, id: &str) -> Result<LogTail, String> {
    let logs = crate::logs::locate(shared, id).ok_or_else(|| "The run is gone.".to_string())?;
    let read = async {
        let file = logs.pick(None).await.map_err(|e| e.message)?;
        let chunk = logs
            .read(&file, 0, TAIL_BYTES, Some(TAIL_LINES))
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((file, chunk))
    };
    let (file, chunk) = tokio::time::timeout(TAIL_DEADLINE, read)
        .await
        .map_err(|_| format!("The log could not be read within {TAIL_DEADLINE:?}."))??;
    let follow_url = format!(
        "/v1/logs/{}?follow=true&file={}&offset={}",
        url_path(id),
        url_path(&file),
        chunk.next_offset()
    );
    Ok(LogTail {
        text: String::from_utf8_lossy(&chunk.bytes).into_owned(),
        file,
        follow_url,
    })
}

/// `GET /runs/{id}`: progress, scores, epoch timeline, chart, log tail.
pub async fn run(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> PageResult {
    let now = Utc::now();
    let (r, epochs) = run_and_epochs(&shared, &id).await?;
    let tail = log_tail(&shared, &id).await;
    let p = &r.progress;
    let body = html! {
        h1.id { (r.id) }
        div.runhead data-run=(r.id) {
            p {
                span class={ "badge st " (status_class(r.status)) } { (r.status.as_str()) }
                " " (r.runner.as_str()) " · " span.muted { (r.work_dir) }
            }
            p.prog { (progress(&r)) }
            dl.facts {
                dt { "ETA" } dd.eta { (eta(&r)) }
                dt { "Rate" } dd { (p.rate_per_hour.map(|x| format!("{x:.2} epochs/h")).unwrap_or_default()) }
                dt { "Best" } dd { (scores(p.best_score.as_ref())) }
                dt { "Latest" } dd { (scores(p.latest_score.as_ref())) }
                dt { "Early stopped" } dd { (p.early_stopped_at_epoch.map(|e| format!("at epoch {e}")).unwrap_or_else(|| "no".to_string())) }
                dt { "Log written" } dd { (ago(r.last_log_update, now)) }
                @if let Some(proc_) = &r.process {
                    dt { "Process" } dd { (proc_.node) " pid " (proc_.pid) " " (proc_.user) }
                }
            }
            p.reason.error { (r.error.as_deref().unwrap_or("")) }
        }
        @if let Some(x) = &r.error_excerpt { pre.log { (x) } }
        @if let Some(d) = &r.diagnostic { p.muted { (d) } }
        h2 { "Progress over time" }
        img.chart src={ "/chart/runs/" (url_path(&r.id)) } alt="epochs completed over time" width="900" height="400";
        h2 { "Epoch timeline" }
        @if epochs.is_empty() { p.muted { "No epoch recorded yet." } } @else {
            table.timeline {
                thead { tr { th { "Epoch" } th { "Completed" } th { "Took" } } }
                tbody {
                    @let skip = epochs.len().saturating_sub(TIMELINE_MAX);
                    @for (i, (e, at)) in epochs.iter().enumerate().skip(skip).rev() {
                        tr {
                            td { (e) }
                            td { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
                            td { (match i.checked_sub(1).and_then(|j| epochs.get(j)) { Some((_, prev)) => duration((*at - *prev).num_seconds().max(0).unsigned_abs()), None => String::new() }) }
                        }
                    }
                }
            }
        }
        h2 { "Log" }
        @match &tail {
            Ok(t) => {
                p.muted { (t.file) " · last " (TAIL_LINES) " lines" }
                pre #logtail .log data-follow=(t.follow_url) { (t.text) }
            }
            Err(why) => p.muted #logtail { (why) },
        }
    };
    Ok(Html(layout(&id, body).into_string()))
}

/// `GET /chart/runs/{id}`: the run's progress (percent of its epochs) over time, as SVG.
pub async fn run_chart(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (r, epochs) = run_and_epochs(&shared, &id).await?;
    let total = r
        .progress
        .total_epochs
        .filter(|t| *t > 0)
        .or_else(|| epochs.last().map(|(e, _)| e + 1))
        .unwrap_or(1);
    let points: Vec<(DateTime<Utc>, f64)> = epochs
        .iter()
        .map(|(e, at)| (*at, f64::from(e + 1) * 100.0 / f64::from(total)))
        .collect();
    let end = Utc::now().max(points.last().map_or(Utc::now(), |p| p.0));
    let start = points
        .first()
        .map_or(end - chrono::Duration::hours(1), |p| p.0)
        .min(end - chrono::Duration::minutes(1));
    OwnedInput {
        title: "Epochs completed".to_string(),
        tz: shared.config().summary.timezone,
        start,
        end,
        series: vec![crate::chart::ChartSeries {
            name: "progress".to_string(),
            points,
        }],
    }
    .render("% of epochs", "no epoch recorded yet")
    .await
}

/// `GET /summaries`: every stored summary, newest first.
pub async fn summaries(State(shared): State<Arc<Shared>>) -> PageResult {
    let rows = shared
        .store
        .list_summaries(SUMMARIES_LISTED)
        .await
        .map_err(PageError::internal)?;
    let body = html! {
        h1 { "Summaries" }
        @if rows.is_empty() { p.muted { "No summary yet." } }
        ul.summaries {
            @for s in &rows {
                li { a href={ "/summaries/" (s.date) } { (s.date) } " " (s.subject) " " span.muted { @if s.scheduled { "nightly" } @else { "on request" } } }
            }
        }
    };
    Ok(Html(layout("Summaries", body).into_string()))
}

fn parse_date(s: &str) -> Result<chrono::NaiveDate, PageError> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        PageError(
            StatusCode::NOT_FOUND,
            format!("\"{s}\" is not a date (YYYY-MM-DD)"),
        )
    })
}

async fn summary_row(shared: &Shared, date: &str) -> Result<crate::summary::SummaryRow, PageError> {
    let date = parse_date(date)?;
    shared
        .store
        .summary_by_date(date)
        .await
        .map_err(PageError::internal)?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("no summary for {date}")))
}

/// The body of a stored summary's HTML (made and escaped by ugro-core), its mail chart
/// reference pointed at the chart route.
fn summary_body(html: &str, date: chrono::NaiveDate) -> String {
    let body = html
        .split_once("<body>")
        .map_or(html, |(_, b)| b.split_once("</body>").map_or(b, |(b, _)| b));
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = rest.find("src=\"cid:") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "src=\"cid:".len()..];
        let end = after.find('"').unwrap_or(after.len());
        let _ = write!(out, "src=\"/summaries/{date}/chart.png");
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `GET /summaries/{date}`: the summary as made.
pub async fn summary(State(shared): State<Arc<Shared>>, Path(date): Path<String>) -> PageResult {
    let row = summary_row(&shared, &date).await?;
    let body = html! {
        p { a href="/summaries" { "← all summaries" } }
        article.summary { (PreEscaped(summary_body(&row.html, row.date))) }
    };
    Ok(Html(layout(&row.subject, body).into_string()))
}

/// `GET /summaries/{date}/chart.png`: the summary's GPU chart.
pub async fn summary_chart(
    State(shared): State<Arc<Shared>>,
    Path(date): Path<String>,
) -> Result<Response, PageError> {
    let row = summary_row(&shared, &date).await?;
    let png = row.chart_png.ok_or_else(|| {
        PageError(
            StatusCode::NOT_FOUND,
            "this summary has no chart".to_string(),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded_but_keep_their_slashes() {
        assert_eq!(url_path("exp/run 1"), "exp/run%201");
        assert_eq!(
            url_path("<img src=x onerror=alert(1)>"),
            "%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
        );
    }

    #[test]
    fn a_summary_body_is_cut_out_and_its_chart_pointed_here() {
        let d = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default();
        let html = "<html><head><style>x</style></head><body><p>hi</p><img src=\"cid:chart@ugro\" alt=\"c\"></body></html>";
        assert_eq!(
            summary_body(html, d),
            "<p>hi</p><img src=\"/summaries/2026-12-01/chart.png\" alt=\"c\">"
        );
    }

    #[test]
    fn a_long_group_lists_its_most_recently_written_runs_in_id_order() {
        let t = |h: i64| Some(Utc::now() - chrono::TimeDelta::hours(h));
        let runs = [
            ("a", t(5)),
            ("b", None),
            ("c", t(1)),
            ("d", t(3)),
            ("e", t(2)),
        ];
        let all: Vec<&(&str, Option<DateTime<Utc>>)> = runs.iter().collect();
        let ids = |v: Vec<&(&'static str, Option<DateTime<Utc>>)>| -> Vec<&'static str> {
            v.iter().map(|r| r.0).collect()
        };
        assert_eq!(ids(most_recent(&all, 3, |r| r.1, |r| r.0)), ["c", "d", "e"]);
        assert_eq!(
            ids(most_recent(&all, 5, |r| r.1, |r| r.0)),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(
            ids(most_recent(&all, 0, |r| r.1, |r| r.0)),
            Vec::<&str>::new()
        );
        // Failed runs are capped too: they pile up for months.
        assert!(listed_of(RunStatus::Failed) < 300);
        assert!(listed_of(RunStatus::Running) >= listed_of(RunStatus::Failed));
    }

    #[test]
    fn durations_read_shortly() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(3 * 3600 + 20 * 60), "3h 20m");
        assert_eq!(duration(2 * 86400 + 3600), "2d 1h");
    }
}
