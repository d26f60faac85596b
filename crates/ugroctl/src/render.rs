//! Human output: aligned tables, relative times ("3 min ago"), colour only on a terminal
//! (anstream strips it otherwise).

use anstyle::{AnsiColor, Style};
use bytesize::ByteSize;
use chrono::{DateTime, Utc};
use comfy_table::{Table, presets};
use ugro_api::{
    Events, LogFile, NodeHealth, NodeState, Nodes, Outcome, ReloadResult, RunInfo, RunStatus, Runs,
    Severity, Status,
};

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default();

/// Text that came from a run's log or a remote host, made safe for a terminal: every control
/// character but newline and tab (ESC, BEL, CR, CSI, …) is shown in caret notation (`^[`,
/// `^G`), so a log line cannot move the cursor, recolour or clear the screen
/// ([`crate::logs::neutralise`], the one neutraliser).
pub(crate) fn clean(s: &str) -> String {
    crate::logs::neutralise(s)
}

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// English with short units: "3 min ago", "2 h ago".
#[derive(Debug, Clone, Copy)]
struct Short;

impl timeago::Language for Short {
    fn too_low(&self) -> &'static str {
        "just now"
    }
    fn too_high(&self) -> &'static str {
        "long ago"
    }
    fn ago(&self) -> &'static str {
        "ago"
    }
    fn clone_boxed(&self) -> timeago::BoxedLanguage {
        Box::new(*self)
    }
    fn get_word(&self, tu: timeago::TimeUnit, _x: u64) -> &'static str {
        use timeago::TimeUnit::*;
        match tu {
            Nanoseconds => "ns",
            Microseconds => "µs",
            Milliseconds => "ms",
            Seconds => "s",
            Minutes => "min",
            Hours => "h",
            Days => "d",
            Weeks => "wk",
            Months => "mo",
            Years => "yr",
        }
    }
}

/// "3 min ago" for a time before `now` ("just now" under a second, "in 2 min" ahead).
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let mut f = timeago::Formatter::with_language(Short);
    f.num_items(1).min_unit(timeago::TimeUnit::Seconds);
    match (now - t).to_std() {
        Ok(d) if d.as_secs() == 0 => "just now".into(),
        Ok(d) => f.convert(d),
        Err(_) => {
            let ahead = (t - now).to_std().unwrap_or_default();
            let s = f.convert(ahead);
            format!("in {}", s.trim_end_matches(" ago"))
        }
    }
}

/// "3 h 12 min" for a span of seconds.
fn span(seconds: u64) -> String {
    let mut f = timeago::Formatter::with_language(Short);
    f.num_items(2).min_unit(timeago::TimeUnit::Seconds).ago("");
    f.convert(std::time::Duration::from_secs(seconds))
        .trim()
        .to_string()
}

/// A duration as a duration, at any scale: "4 ms", "0.3 s", "12.5 s", "4 min 10 s", "3 h 12 min".
fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if d < std::time::Duration::from_millis(100) {
        format!("{} ms", d.as_millis())
    } else if secs < 59.95 {
        format!("{secs:.1} s")
    } else {
        span(d.as_secs())
    }
}

/// A rate in the unit that reads best: "2.50 epochs/h", "12.0 epochs/min", "250 epochs/s".
fn rate(per_hour: f64, unit: &str) -> String {
    if !per_hour.is_finite() {
        return "-".into();
    }
    let (x, per) = if per_hour >= 3600.0 {
        (per_hour / 3600.0, "s")
    } else if per_hour >= 60.0 {
        (per_hour / 60.0, "min")
    } else {
        (per_hour, "h")
    };
    if x >= 100.0 {
        format!("{x:.0} {unit}/{per}")
    } else if per == "h" {
        format!("{x:.2} {unit}/{per}")
    } else {
        format!("{x:.1} {unit}/{per}")
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    t
}

/// Renders `t`, bolding the header and styling each body line with `styles[i]`.
fn lines(t: &Table, styles: &[Option<Style>]) -> String {
    let mut out = String::new();
    for (i, line) in t.lines().enumerate() {
        let line = line.trim_end().to_string();
        let styled = match i {
            0 => paint(BOLD, &line),
            n => match styles.get(n - 1).copied().flatten() {
                Some(s) => paint(s, &line),
                None => line,
            },
        };
        out.push_str(&styled);
        out.push('\n');
    }
    out
}

/// `ok`, or why the store is degraded: writes failing since when (and the rows held to store
/// again), and damage found at start.
fn store_line(st: &ugro_api::StoreStatus) -> String {
    let mut parts = Vec::new();
    if let Some(since) = st.since {
        parts.push(format!(
            "writes failing since {} ({} rows held to store again): {}",
            since.format("%Y-%m-%d %H:%M:%S UTC"),
            st.pending_writes,
            st.last_error.as_deref().unwrap_or("unknown error")
        ));
    }
    if let Some(damage) = &st.integrity {
        parts.push(format!("damaged ({damage})"));
    }
    if parts.is_empty() {
        st.state.as_str().to_string()
    } else {
        format!("{}: {}", st.state.as_str(), parts.join("; "))
    }
}

pub fn status(s: &Status, now: DateTime<Utc>) -> String {
    let mut out = format!(
        "{} {} (protocol {}), pid {}, up {} (since {})\n",
        paint(BOLD, "ugro-monitor"),
        s.version,
        s.protocol,
        s.pid,
        span(s.uptime_seconds),
        s.started_at.format("%Y-%m-%d %H:%M UTC"),
    );
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.add_row(vec![
        "config".to_string(),
        format!(
            "{} (loaded {})",
            s.config_path,
            ago(s.config_loaded_at, now)
        ),
    ]);
    t.add_row(vec!["database".to_string(), s.database_path.clone()]);
    t.add_row(vec!["store".to_string(), store_line(&s.store)]);
    t.add_row(vec!["socket".to_string(), s.socket_path.clone()]);
    t.add_row(vec!["nodes".to_string(), s.counts.nodes.to_string()]);
    t.add_row(vec!["roots".to_string(), s.counts.roots.to_string()]);
    t.add_row(vec![
        "events".to_string(),
        format!(
            "{} in the last 24 h, {} kept",
            s.counts.events_24h, s.counts.events
        ),
    ]);
    let tasks: Vec<String> = s
        .tasks
        .iter()
        .map(|t| {
            if t.alive {
                paint(GREEN, &t.name)
            } else {
                paint(
                    RED,
                    &format!("{} (silent {})", t.name, span(t.last_beat_seconds_ago)),
                )
            }
        })
        .collect();
    // Last row, so its colour codes cannot shift the alignment of the rows above.
    t.add_row(vec!["tasks".to_string(), tasks.join(", ")]);
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn state_style(s: NodeState) -> Option<Style> {
    match s {
        NodeState::Healthy => None,
        NodeState::Degraded | NodeState::Unknown => Some(YELLOW),
        NodeState::Unhealthy | NodeState::Unreachable => Some(RED),
    }
}

fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "never".into(), |t| ago(t, now))
}

/// One line per failing, hung or warning check: "latency: median 180 ms > 100 ms".
fn failing(n: &NodeHealth) -> Vec<String> {
    n.checks
        .iter()
        .filter(|c| matches!(c.status, Outcome::Fail | Outcome::Hung))
        .map(|c| {
            let tag = if c.status == Outcome::Hung {
                " (hung)"
            } else if c.is_warning() {
                " (warning)"
            } else {
                ""
            };
            format!("{}{tag}: {}", c.name, clean(&c.message))
        })
        .collect()
}

/// `ugroctl health`: one row per node.
pub fn nodes(n: &Nodes, now: DateTime<Utc>) -> String {
    if n.nodes.is_empty() {
        return "no nodes configured\n".into();
    }
    let mut t = table(&[
        "NODE",
        "STATE",
        "SCORE",
        "LAST CHECK",
        "NEXT CHECK",
        "FAILING",
    ]);
    let mut styles = Vec::new();
    for node in &n.nodes {
        let mut state = node.state.as_str().to_string();
        if node.restored {
            state.push_str(" (restored)");
        }
        let fails = failing(node);
        t.add_row(vec![
            node.name.clone(),
            state,
            node.score.to_string(),
            when(node.last_check, now),
            node.next_check.map_or_else(|| "-".into(), |t| ago(t, now)),
            if fails.is_empty() {
                "-".into()
            } else {
                fails.join("; ")
            },
        ]);
        styles.push(state_style(node.state));
    }
    let mut out = lines(&t, &styles);
    let healthy = n.nodes.iter().filter(|x| x.healthy).count();
    out.push_str(&format!("{healthy}/{} nodes healthy\n", n.nodes.len()));
    out
}

/// `ugroctl health NODE` and `ugroctl check NODE`: every check of one node.
pub fn node(n: &NodeHealth, now: DateTime<Utc>) -> String {
    let state = paint(state_style(n.state).unwrap_or(GREEN), n.state.as_str());
    let mut out = format!(
        "{} ({}) {state}, score {}, checked {}, next {}{}\n",
        paint(BOLD, &n.name),
        n.host,
        n.score,
        when(n.last_check, now),
        n.next_check.map_or_else(|| "-".into(), |t| ago(t, now)),
        if n.restored {
            " (restored from the last run; no sweep yet)"
        } else {
            ""
        },
    );
    if n.observed != n.state && !n.restored {
        out.push_str(&paint(
            state_style(n.observed).unwrap_or(GREEN),
            &format!(
                "last sweep says {}: the state changes when the next sweep agrees\n",
                n.observed.as_str()
            ),
        ));
    }
    let mut t = table(&["CHECK", "RESULT", "TIME", "MESSAGE"]);
    let mut styles = Vec::new();
    for c in &n.checks {
        t.add_row(vec![
            c.name.as_str().to_string(),
            if c.is_warning() {
                "warn".to_string()
            } else {
                c.status.as_str().to_string()
            },
            if c.status == Outcome::Skipped {
                "-".into()
            } else {
                format!("{} ms", c.duration_ms)
            },
            clean(&c.message),
        ]);
        styles.push(match c.status {
            Outcome::Pass => None,
            Outcome::Skipped => Some(DIM),
            Outcome::Fail if c.is_warning() => Some(YELLOW),
            Outcome::Fail | Outcome::Hung => Some(RED),
        });
    }
    out.push_str(&lines(&t, &styles));
    if !n.gpus.is_empty() {
        let mut g = table(&["GPU", "NAME", "TEMP", "UTIL", "MEMORY", "POWER"]);
        for x in &n.gpus {
            let opt = |v: Option<f64>, unit: &str| {
                v.map_or_else(|| "-".into(), |v| format!("{v:.0}{unit}"))
            };
            g.add_row(vec![
                x.index.to_string(),
                x.name.clone(),
                opt(x.temperature_c, " °C"),
                opt(x.utilization_pct, " %"),
                match (x.memory_used_mib, x.memory_total_mib) {
                    (Some(u), Some(t)) => format!("{u:.0}/{t:.0} MiB"),
                    _ => "-".into(),
                },
                opt(x.power_w, " W"),
            ]);
        }
        out.push_str(&lines(&g, &[]));
    }
    for a in &n.alerts {
        let style = if a.severity == Severity::Critical {
            RED
        } else {
            YELLOW
        };
        out.push_str(&paint(
            style,
            &format!(
                "alert ({}, since {}): {}\n",
                a.severity.as_str(),
                ago(a.since, now),
                a.message
            ),
        ));
    }
    out
}

/// A 10-cell text bar for a percentage.
fn bar(pct: f64) -> String {
    let filled = ((pct.clamp(0.0, 100.0) / 10.0).round()) as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(10 - filled))
}

fn run_style(s: RunStatus) -> Option<Style> {
    match s {
        RunStatus::Failed | RunStatus::Stuck => Some(RED),
        RunStatus::Unknown => Some(YELLOW),
        RunStatus::Outdated => Some(DIM),
        _ => None,
    }
}

/// The time left, shown for running runs only ("-" otherwise, and when unknown): under a
/// minute reads "< 1 min", not "0 s".
fn eta(status: RunStatus, seconds: Option<u64>) -> String {
    match (status, seconds) {
        (RunStatus::Running, Some(s)) if s < 60 => "< 1 min".into(),
        (RunStatus::Running, Some(s)) => span(s),
        _ => "-".into(),
    }
}

/// What a run counts: epochs (trainer), evaluations, or a generic run's own units.
fn unit(runner: ugro_api::RunnerKind) -> &'static str {
    match runner {
        ugro_api::RunnerKind::Trainer => "epochs",
        ugro_api::RunnerKind::Evaluator => "evaluations",
        _ => "steps",
    }
}

/// `ugroctl runs`.
pub fn runs(r: &Runs, now: DateTime<Utc>) -> String {
    if r.runs.is_empty() {
        return "no runs\n".into();
    }
    let mut t = table(&[
        "RUN", "RUNNER", "STATUS", "PROGRESS", "EPOCHS", "ETA", "UPDATED",
    ]);
    let mut styles = Vec::new();
    for run in &r.runs {
        let p = &run.progress;
        let epochs = match (run.runner, p.total_epochs) {
            (ugro_api::RunnerKind::Trainer, Some(total)) => {
                format!("{}/{total}", p.completed_epochs)
            }
            (ugro_api::RunnerKind::Trainer, None) => format!("{}/?", p.completed_epochs),
            _ => "-".into(),
        };
        let updated = run.last_log_update.or(run.last_artifact_update);
        t.add_row(vec![
            run.id.clone(),
            run.runner.as_str().to_string(),
            if run.stale {
                // Its root is out of reach: the last state seen, not a current one.
                format!("{} (stale)", run.status.as_str())
            } else {
                run.status.as_str().to_string()
            },
            format!("{} {:>3.0}%", bar(p.percentage), p.percentage),
            epochs,
            eta(run.status, p.eta_seconds),
            updated.map_or_else(|| "-".into(), |u| ago(u, now)),
        ]);
        styles.push(if run.stale {
            Some(DIM)
        } else {
            run_style(run.status)
        });
    }
    let mut out = lines(&t, &styles);
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for run in &r.runs {
        *counts.entry(run.status.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
    out.push_str(&format!("{} runs: {}\n", r.runs.len(), summary.join(", ")));
    out
}

/// `ugroctl run ID`.
pub fn run(r: &RunInfo, now: DateTime<Utc>) -> String {
    let p = &r.progress;
    let status = paint(run_style(r.status).unwrap_or(GREEN), r.status.as_str());
    let mut out = format!(
        "{} ({} run) {status}\n",
        paint(BOLD, &r.id),
        r.runner.as_str()
    );
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.add_row(vec!["work dir".to_string(), r.work_dir.clone()]);
    let total = p.total_epochs.map_or("?".into(), |t| t.to_string());
    let mut progress = format!("{} {:.1}%", bar(p.percentage), p.percentage);
    if r.runner == ugro_api::RunnerKind::Trainer {
        progress.push_str(&format!(", {}/{total} epochs", p.completed_epochs));
    }
    if p.early_stopped {
        progress.push_str(&format!(
            ", early-stopped at epoch {}",
            p.early_stopped_at_epoch
                .map_or("?".into(), |e| e.to_string())
        ));
    }
    t.add_row(vec!["progress".to_string(), progress]);
    if let Some(per_hour) = p.rate_per_hour {
        let mut line = rate(per_hour, unit(r.runner));
        if r.status == RunStatus::Running {
            line.push_str(&format!(", ETA {}", eta(r.status, p.eta_seconds)));
        }
        t.add_row(vec!["rate".to_string(), line]);
    }
    let scores = |s: &Option<std::collections::BTreeMap<String, f64>>| {
        s.as_ref().map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    if let Some(b) = scores(&p.best_score) {
        t.add_row(vec!["best".to_string(), b]);
    }
    if let Some(l) = scores(&p.latest_score) {
        t.add_row(vec!["latest".to_string(), l]);
    }
    if let Some(u) = r.last_log_update {
        t.add_row(vec![
            "log".to_string(),
            format!(
                "{} (updated {})",
                r.log.clone().unwrap_or_default(),
                ago(u, now)
            ),
        ]);
    }
    if let Some(u) = r.last_artifact_update {
        t.add_row(vec![
            "artifacts".to_string(),
            format!("updated {}", ago(u, now)),
        ]);
    }
    t.add_row(vec![
        "process".to_string(),
        r.process.as_ref().map_or_else(
            || "none".to_string(),
            |pr| {
                format!(
                    "{} pid {} ({}) {}",
                    pr.node,
                    pr.pid,
                    pr.user,
                    clean(&pr.cmd)
                )
            },
        ),
    ]);
    if let Some(c) = r.process.as_ref().and_then(|p| p.container.as_ref()) {
        t.add_row(vec![
            "container".to_string(),
            format!(
                "{} ({}, {})",
                clean(&c.name),
                clean(&c.image),
                clean(c.id.get(..12).unwrap_or(&c.id))
            ),
        ]);
    }
    if let Some(pr) = r.process.as_ref().filter(|p| !p.gpus.is_empty()) {
        let gpus: Vec<String> = pr
            .gpus
            .iter()
            .map(|g| {
                let which = g
                    .index
                    .map_or_else(|| clean(&g.uuid), |i| format!("GPU {i}"));
                match g.used_memory_mib {
                    Some(m) => format!("{which} ({m} MiB, pid {})", g.pid),
                    None => format!("{which} (pid {})", g.pid),
                }
            })
            .collect();
        t.add_row(vec!["gpus".to_string(), gpus.join(", ")]);
    }
    if let Some(j) = &r.slurm {
        t.add_row(vec![
            "slurm".to_string(),
            format!(
                "job {} {} \"{}\" ({}, partition {})",
                clean(&j.job_id),
                clean(&j.state),
                clean(&j.name),
                clean(&j.user),
                clean(&j.partition)
            ),
        ]);
    }
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !r.epochs.is_empty() {
        let mut e = table(&["EPOCH", "COMPLETED", "TOOK"]);
        let shown = r.epochs.len().saturating_sub(10);
        let mut prev = shown
            .checked_sub(1)
            .and_then(|i| r.epochs.get(i))
            .map(|x| x.completed_at);
        for x in &r.epochs[shown..] {
            let took = prev
                .and_then(|p| (x.completed_at - p).to_std().ok())
                .map_or_else(|| "-".into(), duration);
            e.add_row(vec![x.epoch.to_string(), ago(x.completed_at, now), took]);
            prev = Some(x.completed_at);
        }
        if shown > 0 {
            out.push_str(&paint(
                DIM,
                &format!("(last 10 of {} epochs)\n", r.epochs.len()),
            ));
        }
        out.push_str(&lines(&e, &[]));
    }
    if !r.logs.is_empty() {
        out.push_str(&log_files(&r.logs, now));
    }
    if r.restored {
        out.push_str(&paint(
            DIM,
            "(from the last run of the daemon; the disk is being re-read)\n",
        ));
    }
    if r.stale {
        out.push_str(&paint(
            DIM,
            "(stale: its root is out of reach; this is the last state seen)\n",
        ));
    }
    if let Some(e) = &r.error {
        out.push_str(&paint(RED, &format!("error: {}\n", clean(e))));
        if let Some(x) = &r.error_excerpt {
            for l in clean(x).lines() {
                out.push_str(&paint(DIM, &format!("  | {l}\n")));
            }
        }
    }
    if let Some(d) = &r.diagnostic {
        out.push_str(&paint(YELLOW, &format!("diagnostic: {}\n", clean(d))));
    }
    out
}

/// How many of a run's log files `run ID` lists at most.
const LOGS_SHOWN: usize = 20;

/// The run's log files as a table (LOG, SIZE, MODIFIED) in name order; of more than
/// [`LOGS_SHOWN`], the most recently modified ones, with a note saying so. A name is a path on
/// the run's disk, so it is [`clean`]ed.
fn log_files(logs: &[LogFile], now: DateTime<Utc>) -> String {
    let mut shown: Vec<&LogFile> = logs.iter().collect();
    let mut out = String::new();
    if shown.len() > LOGS_SHOWN {
        shown.sort_by_key(|l| std::cmp::Reverse(l.modified));
        shown.truncate(LOGS_SHOWN);
        shown.sort_by(|a, b| a.name.cmp(&b.name));
        out.push_str(&paint(
            DIM,
            &format!(
                "(the {LOGS_SHOWN} newest of {} logs; `ugroctl --json run` lists them all)\n",
                logs.len()
            ),
        ));
    }
    let mut t = table(&["LOG", "SIZE", "MODIFIED"]);
    for l in shown {
        t.add_row(vec![
            clean(&l.name),
            ByteSize(l.size).display().iec().to_string(),
            l.modified.map_or_else(|| "-".into(), |m| ago(m, now)),
        ]);
    }
    out.push_str(&lines(&t, &[]));
    out
}

pub fn events(e: &Events, now: DateTime<Utc>) -> String {
    if e.events.is_empty() {
        return "no events in that window\n".into();
    }
    let mut t = table(&["WHEN", "SEVERITY", "KIND", "SUBJECT", "MESSAGE"]);
    let mut styles = Vec::new();
    for ev in &e.events {
        t.add_row(vec![
            ago(ev.time, now),
            ev.severity.as_str().to_string(),
            ev.kind.clone(),
            ev.subject.clone(),
            clean(&ev.message),
        ]);
        styles.push(match ev.severity {
            Severity::Info => None,
            Severity::Warning => Some(YELLOW),
            Severity::Critical => Some(RED),
        });
    }
    let mut out = lines(&t, &styles);
    if e.truncated {
        out.push_str(&paint(
            DIM,
            "(older events left out: use --limit or --since)\n",
        ));
    }
    out
}

/// The stored summaries with their email state.
pub fn summaries(s: &ugro_api::Summaries, now: DateTime<Utc>) -> String {
    if s.summaries.is_empty() {
        return "no summaries yet: the first is made at the next scheduled time, or now with `ugroctl summary`\n".into();
    }
    let mut t = table(&["DATE", "KIND", "MADE", "EMAIL", "SUBJECT"]);
    let mut styles = Vec::new();
    for x in &s.summaries {
        let (email, style) = match &x.email {
            None => ("-".to_string(), None),
            Some(e) if e.state == "delivered" => ("delivered".to_string(), None),
            Some(e) if e.state == "pending" => (
                format!(
                    "pending ({} attempt{}{})",
                    e.attempts,
                    if e.attempts == 1 { "" } else { "s" },
                    e.last_error
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                Some(YELLOW),
            ),
            Some(e) => (
                format!(
                    "{}{}",
                    e.state,
                    e.last_error
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                Some(RED),
            ),
        };
        t.add_row(vec![
            x.date.to_string(),
            if x.scheduled { "nightly" } else { "requested" }.to_string(),
            ago(x.made_at, now),
            email,
            x.subject.clone(),
        ]);
        styles.push(style);
    }
    lines(&t, &styles)
}

pub fn reload(r: &ReloadResult) -> String {
    let mut out = format!("reloaded {}\n", r.config_path);
    if !r.needs_restart.is_empty() {
        out.push_str(&paint(
            YELLOW,
            &format!(
                "changes to {} take effect after a restart\n",
                r.needs_restart.join(", ")
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn relative_times_are_short() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        assert_eq!(ago(now - chrono::Duration::seconds(200), now), "3 min ago");
        assert_eq!(ago(now - chrono::Duration::hours(5), now), "5 h ago");
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now + chrono::Duration::seconds(120), now), "in 2 min");
        assert_eq!(span(3 * 3600 + 12 * 60 + 5), "3 h 12 min");
    }

    #[test]
    fn durations_rates_and_etas_read_as_such() {
        use std::time::Duration as D;
        assert_eq!(duration(D::from_millis(4)), "4 ms");
        assert_eq!(duration(D::from_millis(300)), "0.3 s");
        assert_eq!(duration(D::from_millis(12_500)), "12.5 s");
        assert_eq!(duration(D::from_secs(250)), "4 min 10 s");
        assert_eq!(duration(D::from_secs(3 * 3600 + 12 * 60)), "3 h 12 min");
        // Epochs of 4 ms: 900 000 epochs/h is 250 epochs/s.
        assert_eq!(rate(900_000.0, "epochs"), "250 epochs/s");
        assert_eq!(rate(720.0, "epochs"), "12.0 epochs/min");
        assert_eq!(rate(2.5, "epochs"), "2.50 epochs/h");
        assert_eq!(rate(f64::INFINITY, "epochs"), "-");
        assert_eq!(eta(RunStatus::Running, Some(0)), "< 1 min");
        assert_eq!(
            eta(RunStatus::Running, Some(3 * 3600 + 12 * 60)),
            "3 h 12 min"
        );
        assert_eq!(eta(RunStatus::Running, None), "-");
        for s in [RunStatus::Finished, RunStatus::Failed, RunStatus::Stuck] {
            assert_eq!(eta(s, Some(600)), "-", "{s:?}");
        }
    }

    #[test]
    fn run_detail_shows_epoch_times_as_durations() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let t0 = now - chrono::Duration::seconds(10);
        let r: RunInfo = serde_json::from_value(serde_json::json!({
            "id": "exp/run_1", "root": "/logs", "work_dir": "/logs/exp/run_1",
            "runner": "trainer", "status": "running",
            "progress": {"completed_epochs": 3, "total_epochs": 1000, "percentage": 0.3,
                "early_stopped": false, "early_stopped_at_epoch": null, "best_score": null,
                "latest_score": null, "rate_per_hour": 900000.0, "eta_seconds": 4},
            "last_log_update": now, "last_artifact_update": now, "process": null,
            "error": null, "diagnostic": null,
            "epochs": [
                {"epoch": 0, "completed_at": t0},
                {"epoch": 1, "completed_at": t0 + chrono::Duration::milliseconds(4)},
                {"epoch": 2, "completed_at": t0 + chrono::Duration::milliseconds(300)},
            ],
        }))
        .unwrap();
        let text = anstream::adapter::strip_str(&run(&r, now)).to_string();
        assert!(text.contains("250 epochs/s, ETA < 1 min"), "{text}");
        assert!(text.contains("4 ms") && text.contains("0.3 s"), "{text}");
        let epochs = text.split("TOOK").nth(1).unwrap();
        assert!(!epochs.contains("just now"), "{text}");

        // A log's escapes and bells reach the terminal as text, not as commands.
        let mut failed = r.clone();
        failed.status = RunStatus::Failed;
        failed.error = Some("Python exception: \u{1b}[2J\u{7}boom".into());
        failed.error_excerpt = Some("line 1\n\u{1b}[31mred\r".into());
        let text = run(&failed, now);
        let raw: Vec<char> = anstream::adapter::strip_str(&text)
            .to_string()
            .chars()
            .filter(|c| c.is_control() && *c != '\n')
            .collect();
        assert!(raw.is_empty(), "{raw:?} in {text:?}");
        assert!(text.contains("^[[2J^Gboom"), "{text}");
        assert!(text.contains("^[[31mred^M"), "{text}");
    }

    #[test]
    fn a_run_with_many_logs_lists_the_newest_in_name_order_with_a_note() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        // 25 logs, log_00 the oldest; one without a time; one named with an escape.
        let mut logs: Vec<serde_json::Value> = (0..24)
            .map(|i| {
                serde_json::json!({"name": format!("logs/log_{i:02}.txt"), "size": 1024 * i,
                    "modified": now - chrono::Duration::minutes(60 - i)})
            })
            .collect();
        logs.push(serde_json::json!({"name": "a\u{1b}[2Jb.log", "size": 3, "modified": null}));
        let r: RunInfo = serde_json::from_value(serde_json::json!({
            "id": "exp/run_1", "root": "/logs", "work_dir": "/logs/exp/run_1",
            "runner": "generic", "status": "running",
            "progress": {"completed_epochs": 0, "total_epochs": null, "percentage": 0.0,
                "early_stopped": false, "early_stopped_at_epoch": null, "best_score": null,
                "latest_score": null, "rate_per_hour": null, "eta_seconds": null},
            "last_log_update": now, "last_artifact_update": null, "process": null,
            "error": null, "diagnostic": null, "logs": logs,
        }))
        .unwrap();
        let text = anstream::adapter::strip_str(&run(&r, now)).to_string();
        assert!(
            text.contains("(the 20 newest of 25 logs; `ugroctl --json run` lists them all)"),
            "{text}"
        );
        let listed: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("LOG "))
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        let want: Vec<String> = (4..24).map(|i| format!("logs/log_{i:02}.txt")).collect();
        assert_eq!(listed, want, "{text}");
        assert!(
            text.contains(" logs/log_23.txt  23.0 KiB  37 min ago"),
            "{text}"
        );

        // Under the cap every log is listed, the one without a time as "-", escapes as text.
        let mut few = r.clone();
        few.logs = r.logs[20..].to_vec();
        let text = anstream::adapter::strip_str(&run(&few, now)).to_string();
        assert!(!text.contains("newest of"), "{text}");
        let escaped = text.lines().find(|l| l.contains("b.log")).unwrap();
        assert_eq!(
            escaped.split_whitespace().collect::<Vec<_>>(),
            ["a^[[2Jb.log", "3", "B", "-"],
            "{text}"
        );
        assert_eq!(text.matches(".txt").count(), 4, "{text}");
    }

    #[test]
    fn event_table_is_aligned() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        let ev = |kind: &str, msg: &str, sev| ugro_api::Event {
            id: 1,
            time: now - chrono::Duration::minutes(3),
            kind: kind.into(),
            subject: "daemon".into(),
            severity: sev,
            message: msg.into(),
        };
        let e = Events {
            events: vec![
                ev("daemon.started", "started", Severity::Info),
                ev("config.reload_rejected", "bad config", Severity::Warning),
            ],
            truncated: false,
        };
        let text = anstream::adapter::strip_str(&events(&e, now)).to_string();
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 3);
        let col = |row: &str, word: &str| row.find(word).unwrap();
        assert_eq!(col(rows[0], "KIND"), col(rows[1], "daemon.started"));
        assert_eq!(col(rows[0], "MESSAGE"), col(rows[2], "bad config"));
        assert!(rows[1].contains("3 min ago"));
    }
}
