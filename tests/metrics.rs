//! End-to-end: `/metrics` as Prometheus' own checker sees it. What curl and promtool get (no
//! OpenMetrics in their `Accept`) is the classic text format and passes `promtool check
//! metrics` (Debian's prometheus package; scripts/test.sh installs it), every family with HELP
//! and TYPE; a scraper asking for OpenMetrics still gets OpenMetrics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use ugro_testkit::{Daemon, DaemonOptions, wait_for, wait_output};

/// `GET /metrics` on the daemon's socket with curl; `accept` is the Accept header, if any.
/// Returns the response headers and body.
fn curl_metrics(d: &Daemon, accept: Option<&str>) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-f", "-D", "-", "--max-time", "10", "--unix-socket"])
        .arg(&d.socket);
    if let Some(a) = accept {
        cmd.args(["-H", &format!("Accept: {a}")]);
    }
    let child = cmd
        .arg("http://localhost/metrics")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    let out = wait_output(child, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "GET /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("headers, then the body");
    (head.to_ascii_lowercase(), body.to_string())
}

/// `promtool check metrics` over `text`: its exit status and everything it printed.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (Debian's prometheus package; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn metrics_pass_promtool_and_every_family_has_help_and_type() {
    let d = Daemon::start(&DaemonOptions::default());
    // After the first sweep every family this node has is there, counters included.
    let (head, text) = wait_for(
        "the first sweep in /metrics",
        Duration::from_secs(30),
        || {
            let (head, text) = curl_metrics(&d, None);
            text.contains("ugro_check_passed{").then_some((head, text))
        },
    );
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(
        text.contains("ugro_node_sweeps_total{node=\"local\"}"),
        "{text}"
    );
    // A busy node's load warning is told apart from a failure.
    assert!(
        text.contains("ugro_check_warning{node=\"local\",check=\"load\"}"),
        "{text}"
    );

    let (ok, said) = promtool_check(&text);
    assert!(ok, "promtool check metrics failed:\n{said}\n{text}");
    assert!(
        said.trim().is_empty(),
        "promtool has remarks:\n{said}\n{text}"
    );

    // Every sample's family has both HELP and TYPE, under the sample's own name (or the name
    // a histogram's or summary's sample belongs to; there are none today).
    let meta = |kind: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(kind))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect()
    };
    let (help, types) = (meta("# HELP "), meta("# TYPE "));
    assert_eq!(help, types, "HELP and TYPE name the same families");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            help.iter().any(|h| h == name),
            "{name} has no HELP:\n{text}"
        );
    }
    assert!(!text.contains("# EOF"), "no OpenMetrics terminator");

    // Prometheus asks for OpenMetrics and gets it: counters named without _total, # EOF.
    let (head, om) = curl_metrics(
        &d,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.contains("# TYPE ugro_node_sweeps counter\n"), "{om}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
}
