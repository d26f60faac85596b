//! `ugroctl runs --watch`, `ugroctl health --watch` and `ugroctl events -f`: fetch the list once,
//! then follow the daemon's change stream (no polling). On a terminal the table is redrawn in
//! place; otherwise one plain line is printed per change. A lost daemon is waited for (with
//! backoff) and the stream resumed with its last id; a `reset` refetches the list.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ugro_api::stream::{Change, ChangeStream, Message};
use ugro_api::{Client, ClientError, Event, Events, NodeHealth, Nodes, RunInfo, Runs};

use crate::render;

/// Longest pause between two attempts to reach a daemon that is gone.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Redraws of the table are at most this frequent (changes in between are drawn together).
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// What is being watched.
#[derive(Debug)]
pub enum Watch {
    Runs {
        status: Option<String>,
        root: Option<String>,
    },
    Health {
        node: Option<String>,
    },
    /// Events; `list` is the query of `/v1/events` for the first fetch.
    Events {
        list: String,
        kind: Option<String>,
        subject: Option<String>,
    },
}

impl Watch {
    /// The watch a command asks for (`runs --watch`, `health --watch`, `events -f`), if any.
    pub fn of(cmd: &crate::Command) -> Option<Watch> {
        use crate::Command as C;
        Some(match cmd {
            C::Runs {
                status,
                root,
                watch: true,
            } => Watch::Runs {
                status: status.clone(),
                root: root.clone(),
            },
            C::Health { node, watch: true } => Watch::Health { node: node.clone() },
            C::Events {
                since,
                kind,
                subject,
                limit,
                follow: true,
            } => {
                let mut list = format!("/v1/events?since={}&limit={limit}", crate::encode(since));
                if let Some(k) = kind {
                    list.push_str(&format!("&kind={}", crate::encode(k)));
                }
                if let Some(s) = subject {
                    list.push_str(&format!("&subject={}", crate::encode(s)));
                }
                Watch::Events {
                    list,
                    kind: kind.clone(),
                    subject: subject.clone(),
                }
            }
            _ => return None,
        })
    }

    fn kinds(&self) -> &'static [&'static str] {
        match self {
            Watch::Runs { .. } => &["run"],
            Watch::Health { .. } => &["node"],
            Watch::Events { .. } => &["event"],
        }
    }
}

/// The list being kept current.
#[derive(Debug, Default)]
struct View {
    runs: BTreeMap<String, RunInfo>,
    nodes: BTreeMap<String, NodeHealth>,
    /// The store id of the newest event printed.
    last_event: Option<i64>,
    last_event_time: Option<DateTime<Utc>>,
}

/// Follows the stream until interrupted (or the daemon refuses for good).
pub async fn follow(client: &Client, what: Watch, json: bool) -> ExitCode {
    let tty = std::io::stdout().is_terminal() && !json;
    let mut out = Output {
        tty,
        json,
        dirty: false,
    };
    let mut view = View::default();
    let mut fetched = false;
    let mut ever_fetched = false;
    let mut last_id: Option<u64> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        let stream = match client.stream(what.kinds(), last_id).await {
            Ok(s) => s,
            Err(e) => match retry(&e) {
                Some(why) => {
                    out.note(&format!(
                        "{why}: {e}; trying again in {:.1}s",
                        backoff.as_secs_f64()
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                None => return crate::report(&e, client.path()),
            },
        };
        if backoff > Duration::from_millis(250) {
            out.note("connected to the daemon again");
        }
        backoff = Duration::from_millis(250);
        // The stream is open before the list is fetched: nothing between the two is lost.
        if !fetched {
            if let Err(e) = refetch(client, &what, &mut view, &mut out, !ever_fetched).await {
                if retry(&e).is_some() {
                    out.note(&format!("cannot fetch the list: {e}"));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                return crate::report(&e, client.path());
            }
            fetched = true;
            ever_fetched = true;
        }
        match read(client, stream, &what, &mut view, &mut out).await {
            Ended::Stream(id, why) => {
                last_id = id.or(last_id);
                out.note(&format!("{why}; reconnecting"));
            }
            Ended::Refetch(id) => {
                last_id = id.or(last_id);
                fetched = false;
            }
            Ended::Failed(e) => return crate::report(&e, client.path()),
        }
    }
}

/// Why the daemon could not be used now, when waiting may help.
fn retry(e: &ClientError) -> Option<&'static str> {
    match e {
        ClientError::Connect { .. } | ClientError::Timeout { .. } => {
            Some("the daemon is not reachable")
        }
        ClientError::Transport { .. } => Some("lost the daemon"),
        ClientError::Api { status, .. } if status.as_u16() == 503 => Some("the daemon is busy"),
        _ => None,
    }
}

enum Ended {
    /// The stream broke or ended; resume after this id.
    Stream(Option<u64>, String),
    /// The daemon said reset while the list could not be refetched: start over.
    Refetch(Option<u64>),
    Failed(ClientError),
}

async fn read(
    client: &Client,
    mut stream: ChangeStream,
    what: &Watch,
    view: &mut View,
    out: &mut Output,
) -> Ended {
    let mut last_draw = tokio::time::Instant::now() - REDRAW_EVERY;
    loop {
        let next = if out.dirty {
            let wait = REDRAW_EVERY.saturating_sub(last_draw.elapsed());
            match tokio::time::timeout(wait, stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    out.redraw(what, view);
                    last_draw = tokio::time::Instant::now();
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let msg = match next {
            None => {
                return Ended::Stream(stream.last_event_id(), "the daemon ended the stream".into());
            }
            Some(Err(e)) => return Ended::Stream(stream.last_event_id(), e.to_string()),
            Some(Ok(m)) => m,
        };
        if out.json && msg.event != "reset" && !msg.data.is_empty() {
            out.json_line(&msg);
        }
        match msg.decode() {
            Ok(Change::Reset(reason)) => {
                out.note(&format!(
                    "the daemon says: {reason}; fetching the list again"
                ));
                if let Err(e) = refetch(client, what, view, out, false).await {
                    if retry(&e).is_some() {
                        return Ended::Refetch(stream.last_event_id());
                    }
                    return Ended::Failed(e);
                }
            }
            Ok(change) => apply(what, view, change, out),
            Err(e) => out.note(&format!("skipped a message the client cannot read: {e}")),
        }
        if out.dirty && last_draw.elapsed() >= REDRAW_EVERY {
            out.redraw(what, view);
            last_draw = tokio::time::Instant::now();
        }
    }
}

/// Fetches the list; the first time (or on a terminal) shows it whole, after a reset prints
/// only what differs from what was known.
async fn refetch(
    client: &Client,
    what: &Watch,
    view: &mut View,
    out: &mut Output,
    first: bool,
) -> Result<(), ClientError> {
    match what {
        Watch::Runs { .. } => {
            let runs = client.get::<Runs>("/v1/runs").await?;
            let fresh: BTreeMap<String, RunInfo> =
                runs.runs.into_iter().map(|r| (r.id.clone(), r)).collect();
            if !first {
                for id in view
                    .runs
                    .keys()
                    .filter(|id| !fresh.contains_key(*id))
                    .cloned()
                    .collect::<Vec<_>>()
                {
                    apply(what, view, Change::RunRemoved(id), out);
                }
                for r in fresh.values() {
                    apply(what, view, Change::Run(Box::new(r.clone())), out);
                }
            }
            view.runs = fresh;
        }
        Watch::Health { .. } => {
            let nodes = client.get::<Nodes>("/v1/nodes").await?;
            let fresh: BTreeMap<String, NodeHealth> = nodes
                .nodes
                .into_iter()
                .map(|n| (n.name.clone(), n))
                .collect();
            if !first {
                for n in fresh.values() {
                    apply(what, view, Change::Node(Box::new(n.clone())), out);
                }
            }
            view.nodes = fresh;
        }
        Watch::Events { list, .. } => {
            // After a reset: what was stored since the newest event printed.
            let uri = match view.last_event_time {
                Some(t) if !first => format!(
                    "/v1/events?since={}&limit=10000",
                    crate::encode(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
                ),
                _ => list.clone(),
            };
            let events = client.get::<Events>(&uri).await?;
            for e in events.events {
                apply(what, view, Change::Event(e), out);
            }
        }
    }
    if first && !out.json {
        if out.tty {
            out.dirty = true;
        } else {
            // Once, before the lines of change.
            out.redraw(what, view);
        }
    }
    Ok(())
}

/// Applies one change to the view and says it (a line, or a redraw to come).
fn apply(what: &Watch, view: &mut View, change: Change, out: &mut Output) {
    let now = Utc::now();
    match (what, change) {
        (Watch::Runs { status, root }, Change::Run(run)) => {
            let shown = |r: &RunInfo| {
                status.as_deref().is_none_or(|s| r.status.as_str() == s)
                    && root.as_deref().is_none_or(|p| r.root == p)
            };
            let old = view.runs.get(&run.id);
            if shown(&run) || old.is_some_and(shown) {
                if let Some(line) = run_line(old, &run, now) {
                    out.line(&line);
                }
                out.touch();
            }
            view.runs.insert(run.id.clone(), *run);
        }
        (Watch::Runs { .. }, Change::RunRemoved(id)) if view.runs.contains_key(&id) => {
            view.runs.remove(&id);
            out.line(&format!(
                "{} run {} removed",
                stamp(now),
                render::clean(&id)
            ));
            out.touch();
        }
        (Watch::Health { node }, Change::Node(n)) => {
            if node.as_deref().is_none_or(|x| x == n.name) {
                if let Some(line) = node_line(view.nodes.get(&n.name), &n, now) {
                    out.line(&line);
                }
                out.touch();
            }
            view.nodes.insert(n.name.clone(), *n);
        }
        (Watch::Health { .. }, Change::NodeRemoved(name)) if view.nodes.contains_key(&name) => {
            view.nodes.remove(&name);
            out.line(&format!(
                "{} node {} removed",
                stamp(now),
                render::clean(&name)
            ));
            out.touch();
        }
        (Watch::Events { kind, subject, .. }, Change::Event(e)) => {
            if view.last_event.is_some_and(|l| e.id <= l) {
                return;
            }
            view.last_event = Some(e.id);
            view.last_event_time = Some(e.time);
            let kind_ok = kind.as_deref().is_none_or(|k| {
                if k.ends_with('.') {
                    e.kind.starts_with(k)
                } else {
                    e.kind == k
                }
            });
            if kind_ok && subject.as_deref().is_none_or(|s| e.subject == s) && !out.json {
                out.always(&event_line(&e));
            }
        }
        _ => {}
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn epochs(r: &RunInfo) -> String {
    match r.progress.total_epochs {
        Some(t) => format!("{}/{t}", r.progress.completed_epochs),
        None => format!("{:.0}%", r.progress.percentage),
    }
}

/// `2026-12-01T13:00:00Z run exp/run_1 running→stuck 12/100`, or None when nothing a reader
/// of the line sees has changed.
fn run_line(old: Option<&RunInfo>, new: &RunInfo, now: DateTime<Utc>) -> Option<String> {
    let id = render::clean(&new.id);
    let status = match old {
        None => format!("new {}", new.status),
        Some(o) if o.status != new.status => format!("{}→{}", o.status, new.status),
        Some(o) if epochs(o) != epochs(new) => new.status.to_string(),
        Some(_) => return None,
    };
    let mut line = format!("{} run {id} {status} {}", stamp(now), epochs(new));
    if old.is_some_and(|o| o.status != new.status)
        && let Some(e) = &new.error
    {
        line.push_str(&format!(" ({})", render::clean(e)));
    }
    Some(line)
}

/// `2026-12-01T13:00:00Z node gpu1 healthy→degraded score 80 (failing: load)`.
fn node_line(old: Option<&NodeHealth>, new: &NodeHealth, now: DateTime<Utc>) -> Option<String> {
    let failing: Vec<&str> = new
        .checks
        .iter()
        .filter(|c| c.passed == Some(false))
        .map(|c| c.name.as_str())
        .collect();
    let state = match old {
        None => format!("new {}", new.state),
        Some(o) if o.state != new.state => format!("{}→{}", o.state, new.state),
        Some(o)
            if o.score != new.score
                || o.checks
                    .iter()
                    .map(|c| (c.name, c.status))
                    .ne(new.checks.iter().map(|c| (c.name, c.status))) =>
        {
            new.state.to_string()
        }
        Some(_) => return None,
    };
    let mut line = format!(
        "{} node {} {state} score {}",
        stamp(now),
        render::clean(&new.name),
        new.score
    );
    if !failing.is_empty() {
        line.push_str(&format!(" (failing: {})", failing.join(", ")));
    }
    Some(line)
}

/// `2026-12-01T13:00:00Z warning run.stuck exp/run_1: no new epoch for 30 min`.
fn event_line(e: &Event) -> String {
    format!(
        "{} {} {} {}: {}",
        stamp(e.time),
        e.severity,
        render::clean(&e.kind),
        render::clean(&e.subject),
        render::clean(&e.message)
    )
}

/// Where changes go: a redrawn table on a terminal, lines otherwise, JSON lines with --json.
#[derive(Debug)]
struct Output {
    tty: bool,
    json: bool,
    /// The table on screen is older than the view.
    dirty: bool,
}

impl Output {
    /// The table on screen is out of date (only a terminal's table is redrawn; otherwise each
    /// change was a line).
    fn touch(&mut self) {
        if self.tty {
            self.dirty = true;
        }
    }

    /// A line of change (not on a terminal, where the table is redrawn instead).
    fn line(&self, s: &str) {
        if !self.tty && !self.json {
            self.always(s);
        }
    }

    fn always(&self, s: &str) {
        let mut out = anstream::stdout();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }

    fn json_line(&self, m: &Message) {
        let data: serde_json::Value =
            serde_json::from_str(&m.data).unwrap_or(serde_json::Value::String(m.data.clone()));
        self.always(&serde_json::json!({ "id": m.id, "event": m.event, "data": data }).to_string());
    }

    /// A note about the connection: on stderr, so the output stays a list of changes.
    fn note(&self, s: &str) {
        let mut err = anstream::stderr();
        let _ = writeln!(err, "ugroctl: {s}");
    }

    /// Draws the whole list: in place on a terminal; once, as a table, before the first lines
    /// otherwise.
    fn redraw(&mut self, what: &Watch, view: &View) {
        self.dirty = false;
        if self.json {
            return;
        }
        let now = Utc::now();
        let text = match what {
            Watch::Runs { status, root } => render::runs(
                &Runs {
                    runs: view
                        .runs
                        .values()
                        .filter(|r| {
                            status.as_deref().is_none_or(|s| r.status.as_str() == s)
                                && root.as_deref().is_none_or(|p| r.root == p)
                        })
                        .cloned()
                        .collect(),
                },
                now,
            ),
            Watch::Health { node: Some(n) } => match view.nodes.get(n) {
                Some(node) => render::node(node, now),
                None => format!("no node named \"{}\"\n", render::clean(n)),
            },
            Watch::Health { node: None } => render::nodes(
                &Nodes {
                    nodes: view.nodes.values().cloned().collect(),
                },
                now,
            ),
            Watch::Events { .. } => return,
        };
        let mut out = anstream::stdout();
        if self.tty {
            use crossterm::{cursor::MoveTo, queue, terminal};
            let _ = queue!(out, MoveTo(0, 0), terminal::Clear(terminal::ClearType::All));
            let _ = write!(out, "{}", text.trim_end());
            let _ = writeln!(
                out,
                "\n\nwatching — updated {} (Ctrl-C to stop)",
                now.with_timezone(&chrono::Local).format("%H:%M:%S")
            );
        } else {
            let _ = writeln!(out, "{}", text.trim_end());
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: &str, done: u32) -> RunInfo {
        serde_json::from_value(serde_json::json!({
            "id": "exp/run_1", "root": "/r", "work_dir": "/r/exp/run_1", "runner": "trainer",
            "status": status,
            "progress": {"completed_epochs": done, "total_epochs": 100, "percentage": done as f64,
                         "early_stopped": false, "early_stopped_at_epoch": null, "best_score": null,
                         "latest_score": null, "rate_per_hour": null, "eta_seconds": null},
            "last_log_update": null, "last_artifact_update": null, "process": null,
            "error": null, "diagnostic": null
        }))
        .unwrap()
    }

    #[test]
    fn a_run_line_says_the_transition_and_the_epochs() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T13:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (a, b) = (run("running", 12), run("stuck", 12));
        assert_eq!(
            run_line(Some(&a), &b, now).unwrap(),
            "2026-12-01T13:00:00Z run exp/run_1 running→stuck 12/100"
        );
        assert_eq!(run_line(Some(&a), &a, now), None);
        assert_eq!(
            run_line(Some(&a), &run("running", 13), now).unwrap(),
            "2026-12-01T13:00:00Z run exp/run_1 running 13/100"
        );
        assert_eq!(
            run_line(None, &a, now).unwrap(),
            "2026-12-01T13:00:00Z run exp/run_1 new running 12/100"
        );
    }
}
