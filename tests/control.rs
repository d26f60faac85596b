//! The control API over the real Unix socket: peer-credential authorisation (with a real second
//! uid), the error envelope and protocol header, request bounds, event queries, and what
//! `ugroctl` says when the daemon cannot be reached.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use http::{Method, StatusCode};
use ugro_api::{ErrorBody, PROTOCOL_VERSION};
use ugro_core::event::EventKind;
use ugro_testkit::{Daemon, DaemonOptions, ctl_as, ctl_with_groups};

const NOBODY: (u32, u32) = (65534, 65534);

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `ugroctl ARGS` as nobody, given the socket's group as a supplementary group so the socket's
/// own 0660 lets it connect (a reader, as the daemon's group makes one): no chmod.
fn ctl_as_reader(d: &Daemon, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(&d.socket).unwrap().gid();
    ctl_with_groups(&d.socket, args, NOBODY, &[gid])
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn socket_is_created_with_mode_0660() {
    let d = Daemon::start(&DaemonOptions::default());
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn non_member_gets_403_on_reload_but_may_read() {
    assert!(
        running_as_root(),
        "this test needs root to run ugroctl as a second uid (nobody); CI runs as root"
    );
    let d = Daemon::start(&DaemonOptions::default()); // control_group = "" (none)
    let out = ctl_as_reader(&d, &["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(forbidden)") && stderr.contains("uid 65534"),
        "{stderr}"
    );

    let out = ctl_as_reader(&d, &["--json", "status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Nothing was reloaded by the refused call; the refusal left no config event.
    let ev = d.ctl_json(&["events", "--since", "1h", "--kind", "config."]);
    assert_eq!(ev["events"].as_array().unwrap().len(), 0);

    // Root (and the daemon's own uid, here the same) may.
    assert!(d.ctl(&["reload"]).status.success());
}

#[test]
fn control_group_member_may_reload() {
    assert!(running_as_root(), "needs root to act as a second uid");
    // nobody's primary group is nogroup (65534): a member.
    let d = Daemon::start(&DaemonOptions {
        control_group: Some("nogroup".into()),
        ..Default::default()
    });
    // The socket belongs to nogroup, nobody's own group: it connects through the socket's mode.
    let out = ctl_as_reader(&d, &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn errors_are_json_envelopes_with_the_protocol_header() {
    let d = Daemon::start(&DaemonOptions::default());
    let client = d.client();
    let rt = runtime();

    let check = |method: Method,
                 uri: &str,
                 body: Option<serde_json::Value>,
                 want: StatusCode,
                 code: &str| {
        let (status, protocol, bytes) = rt.block_on(client.raw(method, uri, body)).unwrap();
        assert_eq!(status, want, "{uri}: {}", String::from_utf8_lossy(&bytes));
        assert_eq!(protocol, Some(PROTOCOL_VERSION), "{uri}: protocol header");
        let e: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(e.error.code, code, "{uri}");
        assert!(!e.error.message.is_empty());
    };
    check(
        Method::GET,
        "/v1/nope",
        None,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    check(
        Method::DELETE,
        "/v1/status",
        None,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    check(
        Method::GET,
        "/v1/events?since=yesterday",
        None,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    check(
        Method::GET,
        "/v1/events?limit=0",
        None,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    check(
        Method::GET,
        "/v1/events?colour=red",
        None,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );

    // A body over 1 MiB is refused from its Content-Length, before any of it is read.
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        ugro_api::MAX_REQUEST_BODY + 1
    )
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("ugro-protocol: 1"), "{answer}");
    assert!(
        answer.contains("\"code\":\"payload_too_large\""),
        "{answer}"
    );

    // Success answers carry the header too.
    let (status, protocol, _) = rt
        .block_on(client.raw(Method::GET, "/v1/status", None))
        .unwrap();
    assert_eq!((status, protocol), (StatusCode::OK, Some(PROTOCOL_VERSION)));
}

#[test]
fn reload_over_the_api_reports_every_problem_and_keeps_serving() {
    let d = Daemon::start(&DaemonOptions::default());
    let good = std::fs::read_to_string(&d.config_path).unwrap();
    d.write_config(&format!(
        "{good}\n[health]\npass_rate = \"high\"\nlatency_max = \"fast\"\n"
    ));
    let out = d.ctl(&["reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("previous one stays in force"), "{stderr}");
    assert!(
        stderr.contains("health.pass_rate") && stderr.contains("health.latency_max"),
        "{stderr}"
    );
    assert!(stderr.contains("\"fast\""), "{stderr}");
    assert!(d.ctl(&["status"]).status.success());

    // The settings that need a restart are named when they change.
    d.write_config(&good.replace("ugro.sock", "other.sock"));
    let v = d.ctl_json(&["reload"]);
    assert_eq!(v["needs_restart"], serde_json::json!(["daemon.socket"]));
}

#[test]
fn events_filter_by_kind_family_and_time() {
    // Other producers (the local node's health) add events at their own pace: count only the
    // daemon's and config events this test causes.
    let d = Daemon::start(&DaemonOptions::default());
    assert!(d.ctl(&["reload"]).status.success());
    assert!(d.ctl(&["reload"]).status.success());
    let config = d.ctl_json(&["events", "--since", "1h", "--kind", "config."]);
    let config = config["events"].as_array().unwrap().clone();
    assert_eq!(config.len(), 2);
    assert!(
        config
            .iter()
            .all(|e| e["kind"] == EventKind::ConfigReloaded.as_str())
    );
    let daemon = d.ctl_json(&["events", "--kind", "daemon."]);
    assert_eq!(
        daemon["events"][0]["kind"],
        EventKind::DaemonStarted.as_str()
    );
    assert_eq!(daemon["events"].as_array().unwrap().len(), 1);
    let exact = d.ctl_json(&["events", "--kind", EventKind::DaemonStarted.as_str()]);
    assert_eq!(
        exact["events"].as_array().unwrap().len(),
        1,
        "an exact kind"
    );
    let future = d.ctl_json(&["events", "--since", "2099-01-01T00:00:00Z"]);
    assert_eq!(future["events"].as_array().unwrap().len(), 0);
    let limited = d.ctl_json(&["events", "--kind", "config.", "--limit", "1"]);
    assert_eq!(limited["truncated"], true);
    assert_eq!(
        limited["events"][0]["id"], config[1]["id"],
        "limit keeps the newest"
    );

    // Human output: a table with relative times.
    let out = d.ctl(&["events"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().contains("KIND"), "{text}");
    assert!(
        text.contains("just now") || text.contains(" s ago"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour when not on a terminal");
}

#[test]
fn unreachable_daemon_exits_2_and_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("missing.sock");
    let out = ctl_as(&sock, &["status"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains(&sock.display().to_string()), "{stderr}");
    assert!(stderr.contains("systemctl status ugro-monitor"), "{stderr}");

    // A stale socket (daemon gone) says so.
    let mut d = Daemon::start(&DaemonOptions::default());
    d.kill9();
    let out = ctl_as(&d.socket, &["status"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
fn a_hung_client_does_not_block_others() {
    // A client that connects and never sends a request holds one connection; others are served.
    let d = Daemon::start(&DaemonOptions::default());
    let _idle: Vec<_> = (0..8)
        .map(|_| std::os::unix::net::UnixStream::connect(&d.socket).unwrap())
        .collect();
    let start = std::time::Instant::now();
    assert!(d.ctl(&["status"]).status.success());
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn completions_are_generated_without_a_daemon() {
    let out = ctl_as(
        std::path::Path::new("/nonexistent.sock"),
        &["completions", "bash"],
        None,
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ugroctl") && text.contains("events") && text.contains("reload"));
}
