//! The Markdown rendering of a built summary (escaping, list caps, the four sections).

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::health::Severity;
use crate::runs::RunStatus;

use super::build::first_line;
use super::{
    BottleneckKind, EpochChange, EpochRange, GPU_IDLE_PCT, NEAR_COMPLETION_PCT, RunRef, Summary,
};

/// Items shown per list in the rendered summary; the rest are counted ("… and N more").
pub const LIST_CAP: usize = 20;
/// Key events shown in the rendered summary; the rest are counted.
pub const EVENT_CAP: usize = 50;

/// Characters kept of an event message (its first line).
pub const EVENT_MAX_CHARS: usize = 300;

/// Escapes text for Markdown so that it renders as itself (no emphasis, links, raw HTML or
/// table breaks) while staying readable as plain text: underscores inside words stay as they are.
fn md(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let escape = match c {
            '\\' | '`' | '*' | '[' | ']' | '<' | '|' => true,
            '&' => chars
                .get(i + 1)
                .is_some_and(|n| n.is_alphanumeric() || *n == '#'),
            '_' => {
                let word = |j: Option<usize>| {
                    j.and_then(|j| chars.get(j))
                        .is_some_and(|c| c.is_alphanumeric())
                };
                !(word(i.checked_sub(1)) && word(i.checked_add(1)))
            }
            '\n' | '\r' | '\t' => {
                out.push(' ');
                continue;
            }
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Escapes what would make the start of a list item a block of its own (heading, quote, nested
/// list, ordered list).
fn md_lead(s: &str) -> String {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let after_digits = s[digits..].chars().next();
    let block = match s.chars().next() {
        Some('#' | '>' | '-' | '+' | '=') => true,
        Some(c) if c.is_ascii_digit() => matches!(after_digits, Some('.' | ')')),
        _ => false,
    };
    if !block {
        return s.to_owned();
    }
    if digits > 0 {
        // "1. x" → "1\. x"
        format!("{}\\{}", &s[..digits], &s[digits..])
    } else {
        format!("\\{s}")
    }
}

/// "HH:MM" in `tz`, with the date in front when it is not the summary's date.
fn local_time(t: DateTime<Utc>, tz: Tz, date: NaiveDate) -> String {
    let l = t.with_timezone(&tz);
    if l.date_naive() == date {
        l.format("%H:%M").to_string()
    } else {
        l.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// "95%", "73.5%".
fn pct(x: f64) -> String {
    let s = format!("{x:.1}");
    format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
}

/// "2.5 h", "3 h".
fn hours(d: TimeDelta) -> String {
    let s = format!("{:.1}", d.num_seconds() as f64 / 3600.0);
    format!("{} h", s.strip_suffix(".0").unwrap_or(&s))
}

/// "10 days", "1 day", "5 h", "12 min".
fn human(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => {
            let d = s / 86_400;
            format!("{d} {}", if d == 1 { "day" } else { "days" })
        }
        s if s >= 3600 => format!("{} h", s / 3600),
        s => format!("{} min", s / 60),
    }
}

fn epochs_text(ranges: &[EpochRange]) -> String {
    let parts: Vec<String> = ranges
        .iter()
        .map(|r| {
            if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}–{}", r.first, r.last)
            }
        })
        .collect();
    let single = matches!(ranges, [r] if r.first == r.last);
    format!(
        "{} {}",
        if single { "epoch" } else { "epochs" },
        parts.join(", ")
    )
}

/// Writes at most `cap` items as nested list entries, then "… and N more".
fn capped<T>(
    out: &mut String,
    items: &[T],
    cap: usize,
    indent: &str,
    mut item: impl FnMut(&T) -> String,
) -> fmt::Result {
    for i in items.iter().take(cap) {
        writeln!(out, "{indent}- {}", md_lead(&item(i)))?;
    }
    if items.len() > cap {
        writeln!(out, "{indent}- … and {} more", items.len() - cap)?;
    }
    Ok(())
}

/// The summary as CommonMark (with one GFM table), readable as plain text.
pub fn render_markdown(s: &Summary) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_markdown(&mut out, s);
    // Text from logs (failure reasons, event messages) may carry terminal escapes: the file,
    // the email's text part and the HTML made from this never hold a raw control character.
    match neutralise_controls(&out) {
        Cow::Borrowed(_) => out,
        Cow::Owned(clean) => clean,
    }
}

/// Replaces every control character but newline and tab (C0, DEL, C1: ESC, BEL, CR, the CSI
/// byte, …) by a visible Rust-style escape, `\u{1b}` for ESC, so that text from logs cannot
/// move a terminal's cursor, change its colours or ring its bell when a summary is read with
/// `cat`, in a mail reader or a pager. Borrowed when there is nothing to replace.
pub fn neutralise_controls(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn write_markdown(out: &mut String, s: &Summary) -> fmt::Result {
    let tz = s.tz;
    writeln!(out, "# Daily Summary — {}", s.date.format("%Y-%m-%d"))?;
    writeln!(out)?;
    writeln!(
        out,
        "Window: {} → {} ({})",
        s.window_start.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        s.window_end.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
        tz.name()
    )?;
    writeln!(out)?;
    if s.quiet {
        return write_quiet(out, s);
    }
    if !s.has_previous {
        writeln!(
            out,
            "First summary: no previous snapshot, changes are judged by their timestamps."
        )?;
        writeln!(out)?;
    }
    write_experiments(out, s)?;
    write_events(out, s)?;
    write_progress(out, s)?;
    write_resources(out, s)
}

fn write_quiet(out: &mut String, s: &Summary) -> fmt::Result {
    let c = &s.experiments.counts;
    let mut tracked = format!("{} runs tracked", c.total());
    let mut notes = Vec::new();
    if c.failed > 0 {
        notes.push(format!("{} failed", c.failed));
    }
    if c.stuck > 0 {
        notes.push(format!("{} stuck", c.stuck));
    }
    if !notes.is_empty() {
        tracked.push_str(&format!(" ({})", notes.join(", ")));
    }
    let nodes = if s.nodes.total > 0 {
        format!(", {}/{} nodes healthy", s.nodes.healthy, s.nodes.total)
    } else {
        String::new()
    };
    writeln!(
        out,
        "Quiet window: no run started, finished or failed, no new epochs and no notable events; \
         {tracked}{nodes}."
    )
}

fn write_experiments(out: &mut String, s: &Summary) -> fmt::Result {
    let e = &s.experiments;
    let c = &e.counts;
    let (tz, date) = (s.tz, s.date);
    writeln!(out, "## Experiment Statistics")?;
    writeln!(out)?;
    writeln!(
        out,
        "- **Runs tracked**: {} — running {}, finished {}, stuck {}, failed {}, outdated {}, unknown {}",
        c.total(),
        c.running,
        c.finished,
        c.stuck,
        c.failed,
        c.outdated,
        c.unknown
    )?;
    let run_at = |r: &RunRef| match r.at {
        Some(t) => format!("{} ({})", md(&r.id), local_time(t, tz, date)),
        None => md(&r.id),
    };
    writeln!(out, "- **Started in window**: {}", e.started.len())?;
    capped(out, &e.started, LIST_CAP, "  ", run_at)?;
    writeln!(out, "- **Finished in window**: {}", e.finished.len())?;
    capped(out, &e.finished, LIST_CAP, "  ", run_at)?;
    if e.still_failed > 0 {
        writeln!(
            out,
            "- **Failed in window**: {} ({} still failed from before)",
            e.newly_failed.len(),
            e.still_failed
        )?;
    } else {
        writeln!(out, "- **Failed in window**: {}", e.newly_failed.len())?;
    }
    capped(out, &e.newly_failed, LIST_CAP, "  ", |f| {
        let epochs = match f.total_epochs {
            Some(t) => format!("{}/{t} epochs", f.completed_epochs),
            None => format!("{} epochs", f.completed_epochs),
        };
        let reason = f
            .reason
            .as_deref()
            .map_or_else(|| "no reason recorded".to_owned(), md);
        format!("{} ({epochs}): {reason}", md(&f.id))
    })?;
    if !e.newly_stuck.is_empty() {
        writeln!(out, "- **Stuck in window**: {}", e.newly_stuck.len())?;
        capped(out, &e.newly_stuck, LIST_CAP, "  ", run_at)?;
    }
    if e.epochs.is_empty() {
        writeln!(out, "- **Epoch progress**: no new epochs")?;
    } else {
        let n = e.epochs.len();
        let noun = if n == 1 { "run" } else { "runs" };
        writeln!(out, "- **Epoch progress**: {n} {noun}")?;
        capped(out, &e.epochs, LIST_CAP, "  ", |p| match &p.change {
            EpochChange::Completed { ranges } => {
                format!("{}: completed {}", md(&p.id), epochs_text(ranges))
            }
            EpochChange::Restarted { previous, current } => format!(
                "{}: restarted (completed epochs went from {previous} to {current})",
                md(&p.id)
            ),
        })?;
    }
    writeln!(out)
}

fn write_events(out: &mut String, s: &Summary) -> fmt::Result {
    writeln!(out, "## Key Events")?;
    writeln!(out)?;
    if s.key_events.is_empty() {
        writeln!(out, "No notable events.")?;
        return writeln!(out);
    }
    for e in s.key_events.iter().take(EVENT_CAP) {
        let text = first_line(&e.message, EVENT_MAX_CHARS).unwrap_or_default();
        let text = if e.subject.is_empty() || text.starts_with(e.subject.as_str()) {
            text
        } else {
            format!("{}: {text}", e.subject)
        };
        let mark = if e.severity == Severity::Critical {
            "**critical** "
        } else {
            ""
        };
        writeln!(
            out,
            "- {} — {mark}{} ({})",
            local_time(e.at, s.tz, s.date),
            md(&text),
            md(&e.kind)
        )?;
    }
    if s.key_events.len() > EVENT_CAP {
        writeln!(
            out,
            "- … and {} more events (see `ugroctl events`)",
            s.key_events.len() - EVENT_CAP
        )?;
    }
    writeln!(out)
}

fn write_progress(out: &mut String, s: &Summary) -> fmt::Result {
    let p = &s.progress;
    writeln!(out, "## Progress Overview")?;
    writeln!(out)?;
    match p.completion_pct() {
        Some(x) => writeln!(
            out,
            "- **Overall completion**: {} ({}/{} runs)",
            pct(x),
            p.complete,
            p.considered
        )?,
        None => writeln!(out, "- **Overall completion**: no runs tracked")?,
    }
    writeln!(
        out,
        "- **Near completion** (≥ {}): {}",
        pct(NEAR_COMPLETION_PCT),
        p.near_completion.len()
    )?;
    capped(out, &p.near_completion, LIST_CAP, "  ", |n| {
        let mut line = format!("{}: {}", md(&n.id), pct(n.percentage));
        if let Some(t) = n.total_epochs {
            line.push_str(&format!(" ({}/{t} epochs)", n.completed_epochs));
        }
        if n.status != RunStatus::Running {
            line.push_str(&format!(", {}", n.status.as_str()));
        }
        line
    })?;
    writeln!(
        out,
        "- **Long running** (> {}): {}",
        human(p.long_running_threshold_secs),
        p.long_running.len()
    )?;
    capped(out, &p.long_running, LIST_CAP, "  ", |l| {
        format!(
            "{}: running for {}, {} complete",
            md(&l.id),
            human(l.running_for_secs),
            pct(l.percentage)
        )
    })?;
    if p.etas.is_empty() {
        writeln!(out, "- **ETAs**: none known")?;
    } else {
        writeln!(out, "- **ETAs**: {}", p.etas.len())?;
        capped(out, &p.etas, LIST_CAP, "  ", |e| {
            format!(
                "{}: {} (in {})",
                md(&e.id),
                local_time(e.at, s.tz, s.date),
                human(e.eta_seconds)
            )
        })?;
    }
    writeln!(out)
}

/// One queued experiment: `Experiments queued: job 12 "name" (user, partition p) pending for
/// 2.5 h: Resources`.
fn queued_line(q: &crate::slurm::QueuedJob, now: DateTime<Utc>) -> String {
    format!(
        "Experiments queued: job {} \"{}\" ({}, partition {}) pending for {}: {}",
        md(&q.job_id),
        md(&q.name),
        md(&q.user),
        md(&q.partition),
        match (now - q.submitted).num_seconds() {
            s if s < 60 => "under a minute".to_string(),
            s if s < 3600 => format!("{} min", s / 60),
            _ => hours(now - q.submitted),
        },
        md(&q.reason)
    )
}

fn write_resources(out: &mut String, s: &Summary) -> fmt::Result {
    let r = &s.resources;
    let (tz, date) = (s.tz, s.date);
    writeln!(out, "## Resource Utilization")?;
    writeln!(out)?;
    let n = &s.nodes;
    if n.total > 0 {
        let others: Vec<String> = n
            .not_healthy
            .iter()
            .take(LIST_CAP)
            .map(|x| format!("{} {} (score {})", md(&x.name), x.state.as_str(), x.score))
            .collect();
        let more = n.not_healthy.len().saturating_sub(LIST_CAP);
        let tail = match (others.is_empty(), more) {
            (true, _) => String::new(),
            (false, 0) => format!("; {}", others.join(", ")),
            (false, m) => format!("; {} and {m} more", others.join(", ")),
        };
        writeln!(out, "- **Nodes**: {}/{} healthy{tail}", n.healthy, n.total)?;
    }
    if r.gpu_samples == 0 && r.node_samples == 0 {
        writeln!(out, "- No resource samples were recorded in the window.")?;
        if !r.queued.is_empty() {
            writeln!(out, "- **Bottlenecks**:")?;
            capped(out, &r.queued, LIST_CAP, "  ", |q| {
                queued_line(q, s.window_end)
            })?;
        }
        return Ok(());
    }
    match &r.gpu {
        Some(g) => {
            writeln!(out, "- **GPU usage**:")?;
            writeln!(out, "  - Average: {}", pct(g.average_pct))?;
            writeln!(
                out,
                "  - Peak: {} ({})",
                pct(g.peak_pct),
                local_time(g.peak_at, tz, date)
            )?;
            let share = if g.gpus > 0 {
                g.idle.len() as f64 * 100.0 / g.gpus as f64
            } else {
                0.0
            };
            let mut line = format!(
                "  - Idle GPUs: {}/{} ({})",
                g.idle.len(),
                g.gpus,
                pct(share)
            );
            if !g.idle.is_empty() {
                let names: Vec<String> = g
                    .idle
                    .iter()
                    .take(LIST_CAP)
                    .map(|x| format!("{}:{}", md(&x.node), x.gpu))
                    .collect();
                line.push_str(&format!(" — {}", names.join(", ")));
                if g.idle.len() > LIST_CAP {
                    line.push_str(&format!(" and {} more", g.idle.len() - LIST_CAP));
                }
            }
            writeln!(out, "{line}")?;
        }
        None => writeln!(out, "- **GPU usage**: no GPU samples")?,
    }
    match &r.cpu {
        Some(c) => {
            writeln!(out, "- **CPU usage**:")?;
            writeln!(out, "  - Average: {}", pct(c.average_pct))?;
            writeln!(
                out,
                "  - Peak: {} ({})",
                pct(c.peak_pct),
                local_time(c.peak_at, tz, date)
            )?;
        }
        None => writeln!(out, "- **CPU usage**: no CPU figures")?,
    }
    let span = |from: DateTime<Utc>, to: DateTime<Utc>| {
        format!(
            "from {} to {} ({})",
            local_time(from, tz, date),
            local_time(to, tz, date),
            hours(to - from)
        )
    };
    if r.bottlenecks.is_empty() && r.queued.is_empty() {
        writeln!(out, "- **Bottlenecks**: none")?;
    } else if r.bottlenecks.is_empty() {
        writeln!(out, "- **Bottlenecks**:")?;
        capped(out, &r.queued, LIST_CAP, "  ", |q| {
            queued_line(q, s.window_end)
        })?;
    } else {
        writeln!(out, "- **Bottlenecks**:")?;
        capped(out, &r.bottlenecks, LIST_CAP, "  ", |b| {
            let node = b.node.as_deref().map(md).unwrap_or_default();
            match b.kind {
                BottleneckKind::AllGpusBusy => format!(
                    "All GPUs > {} {} (lowest {})",
                    pct(b.threshold),
                    span(b.from, b.to),
                    pct(b.extreme)
                ),
                BottleneckKind::CpuLoad => format!(
                    "{node}: load above its {} cores {} (peak load {:.1})",
                    b.threshold,
                    span(b.from, b.to),
                    b.extreme
                ),
                BottleneckKind::MemoryLow => format!(
                    "{node}: available memory < {} of total, too low to launch, {} (lowest {})",
                    pct(b.threshold),
                    span(b.from, b.to),
                    pct(b.extreme)
                ),
            }
        })?;
    }
    if !r.bottlenecks.is_empty() {
        capped(out, &r.queued, LIST_CAP, "  ", |q| {
            queued_line(q, s.window_end)
        })?;
    }
    if r.idle_periods.is_empty() {
        writeln!(out, "- **Idle periods**: none")?;
    } else {
        writeln!(
            out,
            "- **Idle periods** (every GPU of a node < {}):",
            pct(GPU_IDLE_PCT)
        )?;
        capped(out, &r.idle_periods, LIST_CAP, "  ", |p| {
            format!("{}: idle {}", md(&p.node), span(p.from, p.to))
        })?;
    }
    if !r.nodes.is_empty() {
        let opt = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), pct);
        writeln!(out)?;
        writeln!(
            out,
            "| Node | GPUs | GPU avg | GPU peak | Idle GPUs | CPU avg | CPU peak |"
        )?;
        writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")?;
        for u in &r.nodes {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md(&u.node),
                u.gpus,
                opt(u.gpu_avg_pct),
                opt(u.gpu_peak_pct),
                u.idle_gpus,
                opt(u.cpu_avg_pct),
                opt(u.cpu_peak_pct)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::health::NodeState;
    use crate::summary::fixtures::*;
    use crate::summary::{render_html, subject};

    #[test]
    fn sections_in_order_each_once() {
        let md = busy_fixture().md();
        let headings: Vec<&str> = lines(&md)
            .into_iter()
            .filter(|l| l.starts_with('#'))
            .collect();
        assert_eq!(
            headings,
            [
                "# Daily Summary — 2026-11-22",
                "## Experiment Statistics",
                "## Key Events",
                "## Progress Overview",
                "## Resource Utilization"
            ]
        );
        assert_eq!(
            lines(&md)[2],
            "Window: 2026-11-21 23:55 → 2026-11-22 23:55 (UTC)"
        );
        assert_line(&md, "- **Nodes**: 1/2 healthy; gpu2 unreachable (score 20)");
    }

    #[test]
    fn quiet_window_is_one_line_without_headings() {
        let runs = vec![
            run("a", RunStatus::Running, 5, 10),
            run("b", RunStatus::Failed, 2, 10),
        ];
        let mut fx = Fx::new(runs.clone()).previous(runs);
        fx.current.nodes.push(node("gpu2", NodeState::Degraded));
        // Info events of other kinds are not notable; samples alone do not make a window busy.
        fx.events = vec![event(
            "2026-11-22T03:00:00Z",
            EventKind::RootScanned,
            "/data",
            Severity::Info,
            "scanned",
        )];
        fx.gpus = gpu_day(|_| false, |_| false);
        let s = fx.build();
        assert!(s.quiet);
        let md = render_markdown(&s);
        assert_eq!(
            lines(&md),
            [
                "# Daily Summary — 2026-11-22",
                "",
                "Window: 2026-11-21 23:55 → 2026-11-22 23:55 (UTC)",
                "",
                "Quiet window: no run started, finished or failed, no new epochs and no notable \
                 events; 2 runs tracked (1 failed), 1/2 nodes healthy."
            ]
        );
        assert!(subject(&s).starts_with("[ugro] 2026-11-22 — 1 running, 1 failed"));

        // One new epoch is enough to make it a full summary.
        fx.current.runs[0].completed_epochs = 6;
        let s = fx.build();
        assert!(!s.quiet);
        assert!(render_markdown(&s).contains("## Resource Utilization"));
    }

    #[test]
    fn markdown_is_commonmark_and_text_stays_literal() {
        use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag};

        let mut weird = run("1. exp/*star*_[x](y)<b>", RunStatus::Running, 95, 100);
        weird.started_at = Some(t("2026-11-22T01:00:00Z"));
        let mut fx = busy_fixture();
        fx.current.runs.push(weird);
        let md = fx.md();
        let events: Vec<Event> = Parser::new_ext(&md, Options::ENABLE_TABLES).collect();
        let count = |f: &dyn Fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
        assert_eq!(
            count(&|e| matches!(
                e,
                Event::Start(Tag::Heading {
                    level: HeadingLevel::H1,
                    ..
                })
            )),
            1
        );
        assert_eq!(
            count(&|e| matches!(
                e,
                Event::Start(Tag::Heading {
                    level: HeadingLevel::H2,
                    ..
                })
            )),
            4
        );
        assert_eq!(count(&|e| matches!(e, Event::Start(Tag::Table(_)))), 1);
        for bad in [
            count(&|e| matches!(e, Event::Start(Tag::Emphasis))),
            count(&|e| matches!(e, Event::Start(Tag::Link { .. }))),
            count(&|e| matches!(e, Event::Html(_) | Event::InlineHtml(_))),
            count(&|e| matches!(e, Event::Start(Tag::List(Some(_))))),
        ] {
            assert_eq!(bad, 0, "{md}");
        }
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Event::Text(t) => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        assert!(text.contains("1. exp/*star*_[x](y)<b> (01:00)"), "{text}");
    }

    #[test]
    fn control_characters_from_logs_are_neutralised_in_markdown_and_html() {
        let mut red = run("exp/\u{1b}]0;title\u{7}red", RunStatus::Failed, 5, 20);
        red.error = Some("\u{1b}[31mred\u{7} alert\u{9b}2J\r done\u{7f}".to_owned());
        red.last_update = Some(t("2026-11-22T18:45:00Z"));
        let mut fx = Fx::new(vec![red]).previous(vec![run("exp/x", RunStatus::Running, 4, 20)]);
        fx.events.push(event(
            "2026-11-22T18:46:00Z",
            EventKind::RunFailed,
            "exp/red",
            Severity::Warning,
            "failed: \u{1b}[2Jcleared",
        ));
        let s = fx.build();
        let md = render_markdown(&s);
        let html = render_html(&s, None);
        for (what, text) in [("markdown", &md), ("html", &html)] {
            let raw: Vec<char> = text
                .chars()
                .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
                .collect();
            assert!(raw.is_empty(), "{what} holds raw controls {raw:?}:\n{text}");
        }
        assert!(md.contains("\\u{1b}\\[31mred\\u{7} alert\\u{9b}2J"), "{md}");
        assert!(md.contains("\\u{1b}\\[2Jcleared"), "{md}");
        assert!(html.contains("\\u{1b}[31mred\\u{7} alert"), "{html}");
        assert_eq!(
            neutralise_controls("tab\tand\nnewline"),
            "tab\tand\nnewline"
        );
        assert!(matches!(neutralise_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(neutralise_controls("a\u{0}b\u{1b}"), "a\\u{0}b\\u{1b}");
    }
}
