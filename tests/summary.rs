//! The nightly summary end to end: the real daemon on real run directories, `ugroctl summary`,
//! the files under `summary.dir`, email through Debian's aiosmtpd (STARTTLS with a test CA, and
//! plain), the durable outbox across an SMTP outage and a daemon restart, and the schedule making
//! exactly one nightly summary per date.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;
use ugro_core::event::EventKind;
use ugro_testkit::runs::{age, write_file};
use ugro_testkit::smtp::{SmtpOptions, SmtpServer, TestCa};
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

const SECTIONS: [&str; 4] = [
    "## Experiment Statistics",
    "## Key Events",
    "## Progress Overview",
    "## Resource Utilization",
];

/// A root with a finished trainer, a running one and a failed one (CUDA OOM in its log), so the
/// summary has something to say in every section.
fn runs(root: &Path) {
    for (name, total, done) in [
        ("exp/finished", 2, 2),
        ("exp/running", 10, 3),
        ("exp/oom", 10, 1),
    ] {
        let run = root.join(name);
        write_file(
            &run.join("config.json"),
            &format!("{{\"epochs\": {total}}}"),
        );
        for i in 0..done {
            let d = run.join(format!("epoch_{i}"));
            write_file(&d.join("training_losses.pt"), "\u{1}");
            write_file(&d.join("optimizer_buffer.json"), "{}");
            write_file(&d.join("validation_scores.json"), "{\"acc\": 0.5}");
        }
    }
    write_file(
        &root.join("exp/running/train_val_1.log"),
        "epoch 3: loss 0.4\n",
    );
    let oom = root.join("exp/oom/train_val_1.log");
    write_file(
        &oom,
        "epoch 1: loss 1.2\nTraceback (most recent call last):\n  File \"train.py\", line 9, in <module>\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
    );
    age(&oom, Duration::from_secs(7200));
}

fn config(d: &Daemon, email: &str, schedule: &str) -> String {
    let root = d.dir.path().join("logs");
    runs(&root);
    format!(
        r#"[[nodes]]
name = "local"
host = "local"

[[roots]]
path = "{root}"
stall_after = "30m"

[summary]
schedule = "{schedule}"
timezone = "Europe/Berlin"
dir = "{summaries}"
metrics_interval = "10s"

{email}
"#,
        root = root.display(),
        summaries = d.dir.path().join("summaries").display(),
    )
}

fn email(port: u16, tls: &str, ca: Option<&Path>) -> String {
    format!(
        "[email]\nenabled = true\nsmtp_host = \"localhost\"\nsmtp_port = {port}\ntls = \"{tls}\"\n{}from = \"ugro-monitor <ugro@lab.test>\"\nto = [\"team@lab.test\"]\n",
        ca.map(|p| format!("ca_file = \"{}\"\n", p.display()))
            .unwrap_or_default()
    )
}

/// Starts a daemon whose config is built from its own temp dir.
fn start(build: impl Fn(&Daemon) -> String) -> (Daemon, DaemonOptions) {
    let opts = DaemonOptions::default();
    let mut d = Daemon::prepare(&opts);
    let text = d.config_text(&DaemonOptions {
        extra_config: build(&d),
        ..opts.clone()
    });
    d.write_config(&text);
    d.spawn(&opts);
    d.wait_ready();
    // Every run is listed before anything is summarised.
    wait_for("three runs listed", Duration::from_secs(10), || {
        let v = d.ctl_report(&["runs"]);
        (v["runs"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    (d, opts)
}

fn in_order(text: &str, what: &[&str]) {
    let mut from = 0;
    for w in what {
        let at = text[from..]
            .find(w)
            .unwrap_or_else(|| panic!("{w:?} missing or out of order in:\n{text}"));
        from += at + w.len();
    }
}

fn email_state(d: &Daemon) -> Option<Value> {
    let v = d.ctl_json(&["summary", "--list"]);
    v["summaries"]
        .as_array()
        .and_then(|s| s.first())
        .map(|s| s["email"].clone())
}

#[test]
fn summary_send_delivers_four_sections_html_and_the_inline_chart_over_starttls() {
    let ca = TestCa::generate();
    let smtp = SmtpServer::start(SmtpOptions::starttls(&ca));
    let (d, _) = start(|d| {
        config(
            d,
            &email(smtp.port(), "starttls", Some(ca.ca_pem())),
            "0 55 23 * * *",
        )
    });

    let out = d.ctl(&["summary", "--send"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let md = String::from_utf8(out.stdout).unwrap();
    assert!(md.starts_with("# Daily Summary — "), "{md}");
    in_order(&md, &SECTIONS);
    assert!(md.contains("exp/oom"), "the failed run is named:\n{md}");
    assert!(
        md.to_lowercase().contains("out of memory"),
        "with its reason:\n{md}"
    );

    let msgs = smtp.wait_for_messages(1, Duration::from_secs(30));
    assert_eq!(
        msgs.len(),
        1,
        "exactly one message; smtp log:\n{}",
        smtp.log()
    );
    let msg = MessageParser::default().parse(&msgs[0]).unwrap();
    let subject = msg.subject().unwrap();
    assert!(subject.starts_with("[ugro] "), "{subject}");
    assert!(subject.contains("1 running"), "{subject}");
    assert!(subject.contains("1 failed"), "{subject}");
    let text = msg.body_text(0).unwrap();
    in_order(&text, &SECTIONS);
    let html = msg.body_html(0).unwrap();
    assert!(html.contains("Experiment Statistics") && html.contains("Resource Utilization"));
    assert!(
        html.contains("cid:gpu-chart"),
        "the HTML shows the chart inline"
    );
    let chart = msg
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png"))
        })
        .expect("an image/png part");
    assert_eq!(
        chart.content_id().map(|c| c.trim_matches(['<', '>'])),
        Some("gpu-chart")
    );
    assert!(chart.contents().starts_with(b"\x89PNG\r\n\x1a\n"));

    // Files beside each other, and the snapshot export.
    let dir = d.dir.path().join("summaries");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for suffix in ["_summary.md", "_summary.html", "_gpu.png"] {
        assert!(
            names.iter().any(|n| n.ends_with(suffix)),
            "{suffix} in {names:?}"
        );
    }
    let snaps: Vec<_> = std::fs::read_dir(dir.join("snapshots")).unwrap().collect();
    assert_eq!(snaps.len(), 1);
    let snap: Value =
        serde_json::from_slice(&std::fs::read(snaps[0].as_ref().unwrap().path()).unwrap()).unwrap();
    assert_eq!(snap["runs"].as_array().unwrap().len(), 3);

    // The outbox says delivered; the stored summary reads back the same.
    wait_for("delivered state", Duration::from_secs(10), || {
        (email_state(&d)?["state"] == "delivered").then_some(())
    });
    let date = snap["taken_at"].as_str().unwrap().to_string();
    let _ = date;
    let list = d.ctl_json(&["summary", "--list"]);
    let day = list["summaries"][0]["date"].as_str().unwrap().to_string();
    let stored = d.ctl(&["summary", "--date", &day]);
    assert_eq!(String::from_utf8(stored.stdout).unwrap(), md);
}

#[test]
fn smtp_down_at_summary_time_is_delivered_later_also_across_a_restart() {
    // Learn a free port, then keep the server down.
    let mut smtp = SmtpServer::start(SmtpOptions::plain());
    let port = smtp.port();
    smtp.stop();
    let (mut d, opts) = start(|d| config(d, &email(port, "none", None), "0 55 23 * * *"));

    let out = d.ctl(&["summary", "--send"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = wait_for("a failed attempt", Duration::from_secs(20), || {
        let e = email_state(&d)?;
        (e["attempts"].as_u64()? >= 1).then_some(e)
    });
    assert_eq!(state["state"], "pending");
    assert!(state["last_error"].as_str().is_some_and(|m| !m.is_empty()));

    // The daemon restarts while SMTP is still down; then SMTP comes back.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    d.spawn(&opts);
    d.wait_ready();
    smtp.restart();
    let msgs = smtp.wait_for_messages(1, Duration::from_secs(60));
    assert_eq!(msgs.len(), 1, "daemon log:\n{}", d.log());
    let text = MessageParser::default()
        .parse(&msgs[0])
        .unwrap()
        .body_text(0)
        .unwrap()
        .into_owned();
    in_order(&text, &SECTIONS);
    wait_for("delivered state", Duration::from_secs(10), || {
        (email_state(&d)?["state"] == "delivered").then_some(())
    });
    let events = d.ctl_json(&["events", "--kind", "email."]);
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&EventKind::EmailDeferred.as_str()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&EventKind::EmailDelivered.as_str()),
        "{kinds:?}"
    );

    // Down again, without a restart this time: the retry after the server is back delivers.
    smtp.stop();
    let out = d.ctl(&["summary", "--send"]);
    assert!(out.status.success());
    wait_for("a failed attempt", Duration::from_secs(20), || {
        let e = email_state(&d)?;
        (e["state"] == "pending" && e["attempts"].as_u64()? >= 1).then_some(())
    });
    smtp.restart();
    let msgs = smtp.wait_for_messages(2, Duration::from_secs(60));
    assert_eq!(msgs.len(), 2, "daemon log:\n{}", d.log());
}

#[test]
fn the_schedule_makes_one_nightly_summary_per_date_even_across_a_restart() {
    // Every 2 seconds: the first occurrence after start-up makes today's nightly summary; the
    // following ones find the date done.
    let (mut d, opts) = start(|d| config(d, "", "*/2 * * * * *"));
    let nightly = |d: &Daemon| -> Vec<Value> {
        d.ctl_json(&["summary", "--list"])["summaries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["scheduled"] == true)
            .cloned()
            .collect()
    };
    let first = wait_for("the nightly summary", Duration::from_secs(30), || {
        let n = nightly(&d);
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(first.len(), 1);
    // Let the schedule fire several more times, and restart in between.
    std::thread::sleep(Duration::from_secs(5));
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(10));
    d.spawn(&opts);
    d.wait_ready();
    std::thread::sleep(Duration::from_secs(5));
    let after = nightly(&d);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["made_at"], first[0]["made_at"]);
    // Not a catch-up: it was made on time.
    let caught = d.ctl_json(&["events", "--kind", EventKind::SummaryCaughtUp.as_str()]);
    assert_eq!(caught["events"].as_array().unwrap().len(), 0);
    // Its Markdown file is there.
    let date = after[0]["date"].as_str().unwrap();
    assert!(
        d.dir
            .path()
            .join("summaries")
            .join(format!("{date}_summary.md"))
            .is_file()
    );
}

#[test]
fn send_without_email_configured_is_refused_clearly() {
    let (d, _) = start(|d| config(d, "", "0 55 23 * * *"));
    let out = d.ctl(&["summary", "--send"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("email is disabled"), "{err}");
    // Making one without sending works and prints the Markdown.
    let out = d.ctl(&["summary"]);
    assert!(out.status.success());
    in_order(&String::from_utf8_lossy(&out.stdout), &SECTIONS);
    // An unknown date is a clear 404.
    let out = d.ctl(&["summary", "--date", "2001-01-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no summary for 2001-01-01"));
}

#[test]
fn an_unwritable_summary_dir_loses_nothing_and_says_why() {
    // `summary.dir` below a regular file: every write fails (ENOTDIR), even for root.
    let (d, _) = start(|d| {
        std::fs::write(d.dir.path().join("summaries"), "not a directory").unwrap();
        config(d, "", "0 55 23 * * *").replace(
            &format!("dir = \"{}\"", d.dir.path().join("summaries").display()),
            &format!("dir = \"{}\"", d.dir.path().join("summaries/out").display()),
        )
    });
    let out = d.ctl(&["summary"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8(out.stdout).unwrap();
    in_order(&md, &SECTIONS);
    let ev = d.ctl_json(&["events", "--kind", EventKind::SummaryWriteFailed.as_str()]);
    let msg = ev["events"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("summaries/out"), "{ev}");
    assert!(msg.contains("kept in the database"), "{msg}");
    // The summary is served from the database.
    let list = d.ctl_json(&["summary", "--list"]);
    let day = list["summaries"][0]["date"].as_str().unwrap().to_string();
    assert_eq!(list["summaries"][0]["file"], Value::Null);
    let stored = d.ctl(&["summary", "--date", &day]);
    assert_eq!(String::from_utf8(stored.stdout).unwrap(), md);
}
