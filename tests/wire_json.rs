//! The JSON of every `/v1` answer, pinned: a real daemon (one remote node over a real sshd with
//! the nvidia-smi stand-in, a root with runs of every kind, a summary made on request) is asked
//! every JSON endpoint its router serves — and the refusals a client must be able to read —,
//! the volatile values (times, dates, pids, durations, ids, temp paths, ports, machine-dependent
//! readings) are replaced by placeholders that keep their type, and each answer is compared
//! with its insta snapshot under `tests/snapshots/`. A renamed, removed or retyped field of a
//! wire type (ugro-api) or of what the daemon converts into it fails here; so does a new
//! endpoint that is not pinned (the router's routes are read from control.rs).
//!
//! Each success body must also survive a round trip through its ugro-api type unchanged, so
//! the client reads every field the daemon sends.
//!
//! After a deliberate change of the protocol: `INSTA_UPDATE=always cargo nextest run -p
//! ugro-e2e --test wire_json`, then read the `.snap` diffs (and bump `PROTOCOL_VERSION` when a
//! field was renamed or removed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use ugro_testkit::gpu::{FakeGpu, install_fake_nvidia_smi};
use ugro_testkit::sshd::{Sshd, SshdOptions};
use ugro_testkit::{Daemon, DaemonOptions, repo_root, wait_for, wait_output, write_file};

/// Routes that do not answer JSON (`/v1/stream` is server-sent events).
const NOT_JSON: &[&str] = &["/v1/stream"];

/// Check names whose outcome depends on this machine (its disks, memory, load and how fast
/// it answers).
const MACHINE_CHECKS: &[&str] = &["latency", "disk", "memory", "load"];

/// Tasks whose entries are pinned in `/v1/status` (the list grows with the daemon's parts).
const PINNED_TASKS: &[&str] = &["control", "health:gpu01"];

const FAST_HEALTH: &str = "[health]\ninterval = \"2s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"5s\"\n\n";

/// `scripts/example-runs.sh` (three trainers, an evaluator, a generic run) plus a second
/// evaluator, a finished generic run and a run of unknown kind.
fn runs(root: &Path) {
    let child = Command::new(repo_root().join("scripts/example-runs.sh"))
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "example-runs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let more = root.join("more");
    write_file(
        &more.join("evaluator_b/evaluation_scores.json"),
        "{\"test\": {\"accuracy\": 0.5}}",
    );
    write_file(&more.join("evaluator_b/eval_1.log"), "done\n");
    write_file(
        &more.join("generic_done/progress.json"),
        "{\"mission_current\": 10, \"mission_total\": 10, \"status\": \"done\"}",
    );
    write_file(&more.join("generic_done/worker.log"), "all done\n");
    write_file(
        &more.join("unknown_kind/config.json"),
        "{\"model\": \"resnet18\"}",
    );
    write_file(&more.join("unknown_kind/notes.log"), "started\n");
}

/// Replaces what changes from run to run by placeholders that keep the value's type.
struct Normalise {
    /// (literal, placeholder) pairs replaced inside every string, longest first.
    literals: Vec<(String, String)>,
}

fn placeholder(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Bool(_) => json!("<bool>"),
        Value::Number(_) => json!("<number>"),
        Value::String(_) => json!("<string>"),
        Value::Array(a) => Value::Array(a.iter().map(placeholder).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), placeholder(v))).collect())
        }
    }
}

/// `v` if it is one of `words`, else `v` unchanged (so a renamed word shows in the diff).
fn word(v: &Value, words: &[&str], name: &str) -> Value {
    match v.as_str() {
        Some(s) if words.contains(&s) => json!(format!("<{name}>")),
        _ => v.clone(),
    }
}

impl Normalise {
    fn string(&self, s: &str) -> String {
        if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
            return "<time>".into();
        }
        let mut out = s.to_string();
        for (lit, ph) in &self.literals {
            out = out.replace(lit.as_str(), ph);
        }
        out
    }

    fn value(&self, key: Option<&str>, v: &Value) -> Value {
        match (key, v) {
            (_, Value::Null) => Value::Null,
            (
                Some(
                    "pid"
                    | "uptime_seconds"
                    | "last_beat_seconds_ago"
                    | "duration_ms"
                    | "version"
                    | "events"
                    | "events_24h"
                    | "attempts"
                    | "interval_seconds"
                    | "rate_per_hour"
                    | "eta_seconds",
                ),
                Value::Number(_) | Value::String(_),
            ) => placeholder(v),
            (_, Value::String(s)) => json!(self.string(s)),
            (_, Value::Array(a)) => Value::Array(a.iter().map(|x| self.value(key, x)).collect()),
            (_, Value::Object(o)) => {
                let mut o = o.clone();
                // A check whose result depends on this machine: its shape is pinned, its
                // verdict and readings are not.
                if o.contains_key("passed")
                    && o.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| MACHINE_CHECKS.contains(&n))
                {
                    let status = o.get("status").cloned().unwrap_or(Value::Null);
                    if o.get("warning") == Some(&json!(true)) && status == json!("fail") {
                        o.remove("warning");
                    }
                    o.insert(
                        "status".into(),
                        word(&status, &["pass", "fail", "skipped", "hung"], "status"),
                    );
                    for k in ["passed", "value", "threshold", "message"] {
                        if let Some(x) = o.get(k) {
                            let x = placeholder(x);
                            o.insert(k.into(), x);
                        }
                    }
                }
                // A node's verdict follows those checks.
                if o.contains_key("observed") && o.contains_key("score") {
                    const STATES: &[&str] =
                        &["healthy", "degraded", "unhealthy", "unreachable", "unknown"];
                    for k in ["state", "observed"] {
                        let w = word(&o[k], STATES, "state");
                        o.insert(k.into(), w);
                    }
                    for k in ["healthy", "score"] {
                        let p = placeholder(&o[k]);
                        o.insert(k.into(), p);
                    }
                }
                // Event ids count every event the daemon recorded before.
                if o.contains_key("kind") && o.contains_key("subject") {
                    let id = placeholder(&o["id"]);
                    o.insert("id".into(), id);
                }
                // Only some tasks: every entry has the same fields.
                if let Some(Value::Array(tasks)) = o.get("tasks") {
                    let t = tasks
                        .iter()
                        .filter(|t| PINNED_TASKS.iter().any(|n| t["name"] == *n))
                        .cloned()
                        .collect();
                    o.insert("tasks".into(), Value::Array(t));
                }
                // Alerts of the machine-dependent checks (warnings) come and go: only the
                // critical one of the GPU check, which fails on purpose, is pinned.
                if let Some(Value::Array(alerts)) = o.get("alerts") {
                    let a = alerts
                        .iter()
                        .filter(|a| a["severity"] == "critical")
                        .cloned()
                        .collect();
                    o.insert("alerts".into(), Value::Array(a));
                }
                Value::Object(
                    o.iter()
                        .map(|(k, v)| (k.clone(), self.value(Some(k), v)))
                        .collect(),
                )
            }
            _ => v.clone(),
        }
    }
}

/// One request, its status and the normalised body as pretty JSON.
struct Answer {
    status: StatusCode,
    body: Value,
}

fn ask(rt: &tokio::runtime::Runtime, d: &Daemon, method: Method, uri: &str) -> Answer {
    let body = (method == Method::POST).then(|| json!({}));
    let (status, protocol, bytes) = rt
        .block_on(d.client().raw(method.clone(), uri, body))
        .unwrap_or_else(|e| panic!("{method} {uri}: {e}\n{}", d.log()));
    assert_eq!(
        protocol,
        Some(ugro_api::PROTOCOL_VERSION),
        "{method} {uri}: protocol header"
    );
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {uri}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    if !status.is_success() {
        round_trip::<ugro_api::ErrorBody>(uri, &body);
    }
    Answer { status, body }
}

/// The body reads into `T` and writes back unchanged.
fn round_trip<T: DeserializeOwned + Serialize>(uri: &str, body: &Value) {
    let typed: T = serde_json::from_value(body.clone()).unwrap_or_else(|e| {
        panic!(
            "{uri}: does not read as {}: {e}",
            std::any::type_name::<T>()
        )
    });
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        body,
        "{uri}: {} loses or changes fields",
        std::any::type_name::<T>()
    );
}

/// The routes of the control API, read from its router.
fn routes() -> Vec<String> {
    let src = std::fs::read_to_string(repo_root().join("crates/ugro-monitor/src/control.rs"))
        .expect("read control.rs");
    src.split(".route(\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|r| r.starts_with("/v1/"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_v1_answer_keeps_its_json() {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 2 });
    let sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });
    let opts = DaemonOptions::default();
    let mut d = Daemon::prepare(&opts);
    let root = d.dir.path().join("logs");
    runs(&root);
    let config = format!(
        "{FAST_HEALTH}{node}\n[[roots]]\npath = \"{root}\"\n\n[summary]\ntimezone = \"UTC\"\ndir = \"{summaries}\"\n",
        // Three GPUs expected, two found: the gpu check fails and raises an alert, whatever
        // this machine's load.
        node = sshd.node_toml("gpu01", "gpus = 3\n"),
        root = root.display(),
        summaries = d.dir.path().join("summaries").display(),
    );
    let text = d.config_text(&DaemonOptions {
        extra_config: config,
        ..opts.clone()
    });
    d.write_config(&text);
    d.spawn(&opts);
    d.wait_ready();

    // Settled: every run listed, the node's state (unhealthy: a GPU is missing) confirmed by
    // two sweeps and its alert open.
    wait_for("eight runs listed", Duration::from_secs(20), || {
        let v = d.ctl_report(&["runs"]);
        (v["runs"].as_array().map_or(0, Vec::len) == 8).then_some(())
    });
    wait_for(
        "the node's state confirmed",
        Duration::from_secs(30),
        || {
            let n = d.ctl_report(&["health", "gpu01"]);
            (n["state"] == "unhealthy"
                && n["observed"] == "unhealthy"
                && !n["gpus"].as_array()?.is_empty()
                && !n["alerts"].as_array()?.is_empty())
            .then_some(())
        },
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let made = ask(&rt, &d, Method::POST, "/v1/summary");
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let date = made.body["date"].as_str().unwrap().to_string();

    let dir = d.dir.path().display().to_string();
    let norm = Normalise {
        literals: vec![
            (dir, "<dir>".into()),
            (
                format!("127.0.0.1:{}", sshd.port()),
                "127.0.0.1:<port>".into(),
            ),
            (format!(":{}", sshd.port()), ":<port>".into()),
            (date.clone(), "<date>".into()),
            (format!("pid {}", d.pid()), "pid <pid>".into()),
            (
                format!("ugro-monitor {}", env!("CARGO_PKG_VERSION")),
                "ugro-monitor <version>".into(),
            ),
            (
                format!("connected as {}", sshd.user()),
                "connected as <user>".into(),
            ),
        ],
    };

    // (route it covers, method, uri, snapshot name)
    let summary_uri = format!("/v1/summaries/{date}");
    let send_uri = format!("/v1/summaries/{date}/send");
    let asked: Vec<(&str, Method, &str, &str)> = vec![
        ("/v1/status", Method::GET, "/v1/status", "status"),
        (
            "/v1/events",
            Method::GET,
            "/v1/events?kind=daemon.started",
            "events",
        ),
        ("/v1/nodes", Method::GET, "/v1/nodes", "nodes"),
        ("/v1/nodes/{name}", Method::GET, "/v1/nodes/gpu01", "node"),
        (
            "/v1/nodes/{name}",
            Method::GET,
            "/v1/nodes/nope",
            "node_unknown",
        ),
        (
            "/v1/nodes/{name}/check",
            Method::POST,
            "/v1/nodes/gpu01/check",
            "node_check",
        ),
        ("/v1/runs", Method::GET, "/v1/runs", "runs"),
        (
            "/v1/runs",
            Method::GET,
            "/v1/runs?status=failed",
            "runs_failed",
        ),
        (
            "/v1/runs",
            Method::GET,
            "/v1/runs?status=bogus",
            "runs_bad_status",
        ),
        (
            "/v1/runs/{*id}",
            Method::GET,
            "/v1/runs/example/trainer_running",
            "run_trainer",
        ),
        (
            "/v1/runs/{*id}",
            Method::GET,
            "/v1/runs/example/nope",
            "run_unknown",
        ),
        (
            "/v1/logs/{*id}",
            Method::GET,
            "/v1/logs/example/trainer_failed",
            "log_window",
        ),
        (
            "/v1/logs/{*id}",
            Method::GET,
            "/v1/logs/example/nope",
            "log_unknown_run",
        ),
        ("/v1/summaries", Method::GET, "/v1/summaries", "summaries"),
        ("/v1/summaries/{date}", Method::GET, &summary_uri, "summary"),
        (
            "/v1/summaries/{date}/send",
            Method::POST,
            &send_uri,
            "summary_send_disabled",
        ),
        ("/v1/reload", Method::POST, "/v1/reload", "reload"),
    ];

    let covered: Vec<&str> = asked
        .iter()
        .map(|a| a.0)
        .chain(["/v1/summary"])
        .chain(NOT_JSON.iter().copied())
        .collect();
    for r in routes() {
        assert!(
            covered.contains(&r.as_str()),
            "the router serves {r}, which this test does not pin: add it to `asked` (or to NOT_JSON)"
        );
    }

    let mut all = vec![("summary_made", made)];
    for (_, method, uri, name) in &asked {
        all.push((name, ask(&rt, &d, method.clone(), uri)));
    }
    // A reload the daemon refuses, with its details.
    std::fs::write(&d.config_path, "[daemon]\nbogus = 1\n").unwrap();
    all.push(("reload_rejected", ask(&rt, &d, Method::POST, "/v1/reload")));

    for (name, a) in &all {
        let uri = *name;
        if a.status.is_success() {
            match *name {
                "status" => round_trip::<ugro_api::Status>(uri, &a.body),
                "events" => round_trip::<ugro_api::Events>(uri, &a.body),
                "nodes" => round_trip::<ugro_api::Nodes>(uri, &a.body),
                "node" | "node_check" => round_trip::<ugro_api::NodeHealth>(uri, &a.body),
                "runs" | "runs_failed" => round_trip::<ugro_api::Runs>(uri, &a.body),
                "run_trainer" => round_trip::<ugro_api::RunInfo>(uri, &a.body),
                "summaries" => round_trip::<ugro_api::Summaries>(uri, &a.body),
                "summary" | "summary_made" => round_trip::<ugro_api::SummaryDoc>(uri, &a.body),
                "reload" => round_trip::<ugro_api::ReloadResult>(uri, &a.body),
                // Its wire type (ugro-api LogWindow) is read back by ugroctl's own tests.
                "log_window" => {}
                other => panic!("{other}: answered {} unexpectedly: {}", a.status, a.body),
            }
        }
        let mut body = norm.value(None, &a.body);
        // The summary's text is pinned by tests/summary.rs; here only that it is there.
        for k in ["markdown", "html"] {
            if let Some(t) = body.get(k).and_then(Value::as_str) {
                assert!(!t.is_empty(), "{name}: empty {k}");
                body[k] = json!(format!("<{k}>"));
            }
        }
        let text = format!(
            "{}\n{}",
            a.status.as_u16(),
            serde_json::to_string_pretty(&body).unwrap()
        );
        insta::assert_snapshot!(*name, text);
    }
}
