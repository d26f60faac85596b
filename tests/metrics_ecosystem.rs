//! End-to-end: `/metrics` in the Prometheus/Grafana ecosystem. A real daemon tracking 2,000
//! generated runs (benches/gen_runs.py) is scraped over its `[http]` listener; the answer must
//! pass `promtool check metrics` and Debian's Python parser (python3-prometheus-client), keep
//! its per-run series under `http.metrics_max_runs` and count what the cap dropped. The
//! deploy/ assets are checked by promtool (`check rules`, `test rules`, `check config`), and
//! every `ugro_` metric the Grafana board and the alert rules name must be in a real answer of
//! the daemon, so renaming a metric fails here. Both tools come from Debian packages that
//! scripts/test.sh installs (prometheus, python3-prometheus-client).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use ugro_testkit::{
    Daemon, DaemonOptions, repo_root, wait_for, wait_output, write_epoch, write_file,
};

/// `GET /metrics` over the TCP listener, as curl (and promtool) get it: the text format.
fn scrape(port: u16) -> String {
    let child = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    let out = wait_output(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "GET /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cmd` with `stdin` fed in; its exit status and everything it printed.
fn run_with_input(cmd: &mut Command, stdin: &str, timeout: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let text = stdin.to_owned();
    // Written from a thread: a large answer must not block on a full pipe while the tool writes.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = wait_output(child, timeout);
    writer.join().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `promtool check metrics`: accepted without a remark.
fn assert_promtool_accepts(text: &str) {
    let (ok, out, err) = run_with_input(
        Command::new("promtool").args(["check", "metrics"]),
        text,
        Duration::from_secs(60),
    );
    assert!(
        ok && out.trim().is_empty() && err.trim().is_empty(),
        "promtool check metrics: {out}{err}"
    );
}

/// One sample as Debian's `prometheus_client.parser` reads it.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

const PY_PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
json.dump(out, sys.stdout)
"#;

/// Every sample of `text`, parsed by Debian's Python parser (which must accept it).
fn python_parse(text: &str) -> Vec<Sample> {
    let (ok, out, err) = run_with_input(
        Command::new("/usr/bin/python3").args(["-c", PY_PARSE]),
        text,
        Duration::from_secs(60),
    );
    assert!(ok, "the Python parser refused /metrics: {err}");
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    v.into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_owned(),
            labels: s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

fn of<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

fn sum(samples: &[Sample], name: &str, label: (&str, &str)) -> f64 {
    of(samples, name)
        .iter()
        .filter(|s| s.labels.get(label.0).map(String::as_str) == Some(label.1))
        .map(|s| s.value)
        .sum()
}

/// The per-run families: one series per running or stuck run kept by the cap.
const PER_RUN: [&str; 6] = [
    "ugro_run_progress_ratio",
    "ugro_run_completed_epochs",
    "ugro_run_total_epochs",
    "ugro_run_eta_seconds",
    "ugro_run_last_update_age_seconds",
    "ugro_run_stuck",
];

/// A trainer run of 10 epochs with 2 done whose log was just written (running); its log says
/// `log` last.
fn write_running_trainer(dir: &Path, log: &str) {
    write_file(&dir.join("config.json"), "{\"epochs\": 10}");
    write_epoch(dir, 0);
    write_epoch(dir, 1);
    write_file(
        &dir.join("train_val_20261201_000000.log"),
        &format!("epoch 3/10 step 1/9\n{log}\n"),
    );
}

fn config(port: u16, cap: u32, roots: &[(&Path, &str)]) -> String {
    let mut c = format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\nmetrics_max_runs = {cap}\ncluster = \"lab-test\"\n\n"
    );
    for (root, extra) in roots {
        c.push_str(&format!(
            "[[roots]]\npath = \"{}\"\nwatch = \"poll\"\npoll_interval = \"2s\"\n{extra}\n",
            root.display()
        ));
    }
    c
}

/// A daemon over a fresh 2,000-run tree (plus one running run whose id needs escaping), with
/// `cap`; returns it, its port, the tree and that run's id.
fn daemon_with_2000_runs(cap: u32) -> (Daemon, u16, tempfile::TempDir, String) {
    let tree = tempfile::Builder::new()
        .prefix("ugro-runs")
        .tempdir()
        .unwrap();
    let root = tree.path().join("runs");
    let out = ugro_testkit::output_within(
        Command::new("/usr/bin/python3")
            .arg(repo_root().join("benches/gen_runs.py"))
            .arg(&root)
            .args(["--runs", "2000", "--max-epochs", "3", "--seed", "11"]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "gen_runs.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A label value with a quote, a backslash and a newline: escaped on /metrics, read back
    // whole by both parsers.
    let weird = "odd \"quoted\" back\\slash\nnew line";
    write_running_trainer(&root.join("zz").join(weird), "loss=0.5");
    let weird_id = format!("zz/{weird}");

    let port = ugro_testkit::sshd::free_port();
    let d = Daemon::start(&DaemonOptions {
        extra_config: config(port, cap, &[(&root, "")]),
        ..Default::default()
    });
    (d, port, tree, weird_id)
}

/// Scrapes until all 2,001 runs are counted; returns the text.
fn scrape_all_runs(d: &Daemon, port: u16) -> String {
    wait_for("2,001 runs on /metrics", Duration::from_secs(120), || {
        let text = scrape(port);
        let total: f64 = text
            .lines()
            .filter(|l| l.starts_with("ugro_runs{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (total == 2001.0).then_some(text)
    });
    // The daemon's own list agrees with the counts.
    let runs = d.ctl_report(&["runs"]);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2001);
    scrape(port)
}

#[test]
fn metrics_of_2000_runs_pass_promtool_and_the_python_parser_and_the_cap_holds() {
    let cap = 40;
    let (d, port, _tree, weird_id) = daemon_with_2000_runs(cap);
    let text = scrape_all_runs(&d, port);
    assert_promtool_accepts(&text);
    let samples = python_parse(&text);
    let lines = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(samples.len(), lines, "every sample line parsed");
    assert!(
        samples
            .iter()
            .all(|s| s.labels.get("cluster").map(String::as_str) == Some("lab-test")),
        "[http] cluster labels every series"
    );

    // Every status of the root is a series, zeros included.
    let statuses: BTreeSet<&str> = of(&samples, "ugro_runs")
        .iter()
        .map(|s| s.labels["status"].as_str())
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from([
            "failed", "finished", "outdated", "running", "stuck", "unknown"
        ])
    );
    let active = sum(&samples, "ugro_runs", ("status", "running"))
        + sum(&samples, "ugro_runs", ("status", "stuck"));
    assert!(
        active > f64::from(cap),
        "the tree has more active runs ({active}) than the cap ({cap})"
    );
    // The cap holds for every per-run family, and what it dropped is counted.
    for name in PER_RUN {
        assert!(
            of(&samples, name).len() <= cap as usize,
            "{name} over the cap"
        );
    }
    assert_eq!(of(&samples, "ugro_run_progress_ratio").len(), cap as usize);
    let dropped = of(&samples, "ugro_run_series_dropped");
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].value, active - f64::from(cap));
    // The whole answer stays bounded by the cap, not by the 2,000 runs.
    assert!(
        samples.len() <= PER_RUN.len() * cap as usize + 150,
        "{} samples for a cap of {cap}",
        samples.len()
    );
    // Failures by kind: every kind is a series from the start (zeros), none counted yet: the
    // failed runs of the tree were failed when first seen, not turned failed.
    let kinds = of(&samples, "ugro_run_failures_total");
    assert!(kinds.len() >= 9, "{kinds:?}");
    assert!(kinds.iter().all(|s| s.value == 0.0), "{kinds:?}");
    assert_eq!(
        of(&samples, "ugro_outbox_messages").len(),
        3,
        "pending, delivered, given_up"
    );

    // A cap above the active runs (applied by a reload): every active run has its series,
    // nothing is dropped, and the odd run id comes back whole through the escaping.
    let root = d.ctl_report(&["runs"])["runs"][0]["root"]
        .as_str()
        .unwrap()
        .to_owned();
    d.write_config(&format!(
        "{}\n{}",
        d.config_text(&DaemonOptions::default()),
        config(port, 5000, &[(Path::new(&root), "")])
    ));
    assert!(d.ctl(&["reload"]).status.success(), "{}", d.log());
    let (text, samples) = wait_for("the new cap in force", Duration::from_secs(30), || {
        let text = scrape(port);
        let samples = python_parse(&text);
        (of(&samples, "ugro_run_series_dropped")[0].value == 0.0).then_some((text, samples))
    });
    assert_promtool_accepts(&text);
    let active = sum(&samples, "ugro_runs", ("status", "running"))
        + sum(&samples, "ugro_runs", ("status", "stuck"));
    assert_eq!(of(&samples, "ugro_run_progress_ratio").len() as f64, active);
    let weird = of(&samples, "ugro_run_progress_ratio")
        .into_iter()
        .find(|s| s.labels["run"] == weird_id)
        .unwrap_or_else(|| panic!("no series for {weird_id:?}:\n{text}"));
    assert_eq!(weird.labels["root"], root);
    assert!(
        (weird.value - 0.2).abs() < 1e-9,
        "2 of 10 epochs: {weird:?}"
    );
    let epochs = of(&samples, "ugro_run_total_epochs")
        .into_iter()
        .find(|s| s.labels["run"] == weird_id)
        .unwrap();
    assert_eq!(epochs.value, 10.0);
}

#[test]
fn runs_turning_failed_are_counted_by_kind() {
    let dir = tempfile::Builder::new()
        .prefix("ugro-fail")
        .tempdir()
        .unwrap();
    let root = dir.path().join("runs");
    write_running_trainer(
        &root.join("oom"),
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    );
    write_running_trainer(&root.join("quiet"), "loss=0.4");
    write_running_trainer(&root.join("busy"), "loss=0.3");
    let port = ugro_testkit::sshd::free_port();
    // A 4 s stall window: a run whose log stays quiet that long, with no process, has failed.
    let _d = Daemon::start(&DaemonOptions {
        extra_config: config(port, 100, &[(&root, "stall_after = \"4s\"")]),
        ..Default::default()
    });
    let busy_log = root.join("busy/train_val_20261201_000000.log");
    let samples = wait_for("two runs turned failed", Duration::from_secs(60), || {
        // "busy" keeps writing, so it stays running.
        write_file(
            &busy_log,
            &format!("epoch 3/10 {:?}\n", std::time::Instant::now()),
        );
        let samples = python_parse(&scrape(port));
        (sum(&samples, "ugro_runs", ("status", "failed")) == 2.0).then_some(samples)
    });
    let failures: BTreeMap<&str, f64> = of(&samples, "ugro_run_failures_total")
        .iter()
        .map(|s| (s.labels["kind"].as_str(), s.value))
        .collect();
    assert_eq!(failures["cuda_oom"], 1.0, "{failures:?}");
    assert_eq!(
        failures["unknown"], 1.0,
        "a quiet log with no error: {failures:?}"
    );
    assert_eq!(failures.values().sum::<f64>(), 2.0, "{failures:?}");
    // The running run keeps its series; the failed ones have none.
    let runs: BTreeSet<&str> = of(&samples, "ugro_run_progress_ratio")
        .iter()
        .map(|s| s.labels["run"].as_str())
        .collect();
    assert_eq!(runs, BTreeSet::from(["busy"]));
}

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = ugro_testkit::output_within(
        Command::new("promtool").args(args).current_dir(repo_root()),
        Duration::from_secs(60),
    );
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn alert_rules_pass_promtool_checks_and_unit_tests() {
    let (ok, said) = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    assert!(ok, "promtool check rules: {said}");
    assert!(said.contains("SUCCESS: 6 rules found"), "{said}");
    let (ok, said) = promtool(&["test", "rules", "deploy/prometheus/alerts_test.yml"]);
    assert!(ok, "promtool test rules: {said}");
    // --syntax-only: the example's token file (credentials_file) exists only where it is deployed.
    let (ok, said) = promtool(&[
        "check",
        "config",
        "--syntax-only",
        "deploy/prometheus/scrape.yml",
    ]);
    assert!(ok, "promtool check config: {said}");

    // Every alert has unit tests, among them one where it must not fire.
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(deploy("prometheus/alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for a in alerts {
        let evals: Vec<&str> = tests
            .split("- eval_time:")
            .skip(1)
            .filter(|block| block.contains(&format!("alertname: {a}\n")))
            .collect();
        assert!(
            evals.iter().any(|b| b.contains("exp_alerts: []")),
            "{a}: no case where it must not fire"
        );
        assert!(
            evals.iter().any(|b| b.contains("exp_labels:")),
            "{a}: no case where it fires"
        );
    }
}

/// Every `ugro_…` identifier in `text` (PromQL names: letters, digits, `_`, `:`).
fn ugro_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while let Some(at) = text[i..].find("ugro_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && ident(b[end]) {
            end += 1;
        }
        if start == 0 || !ident(b[start - 1]) {
            out.insert(text[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    out
}

/// The metric names a real daemon's `/metrics` answer describes or has samples of.
fn served_names() -> BTreeSet<String> {
    let port = ugro_testkit::sshd::free_port();
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!("[http]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Default::default()
    });
    let text = wait_for("the first sweep", Duration::from_secs(30), || {
        let text = scrape(port);
        text.contains("ugro_check_passed{").then_some(text)
    });
    drop(d);
    let mut names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    names.extend(
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned),
    );
    names
}

/// Checks the dashboard's shape (what Grafana needs to import it) and returns every PromQL
/// expression and variable query in it.
fn dashboard_queries(d: &Value) -> Vec<String> {
    for key in ["title", "uid"] {
        assert!(
            d[key].as_str().is_some_and(|s| !s.is_empty()),
            "dashboard {key}"
        );
    }
    let uid = d["uid"].as_str().unwrap();
    assert!(
        uid.len() <= 40
            && uid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "uid {uid:?}"
    );
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string());
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var_names: BTreeSet<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable"
    );
    let mut queries: Vec<String> = vars
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| v["definition"].as_str().unwrap().to_owned())
        .collect();

    let mut ids = BTreeSet::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    assert!(panels.len() >= 8, "a board, not a stub");
    let mut queried = 0;
    while let Some(p) = panels.pop() {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "panel {id} has a title");
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
        assert!(
            g["h"].as_u64().unwrap() >= 1 && g["y"].is_u64(),
            "{title}: gridPos"
        );
        assert!(w >= 1 && x + w <= 24, "{title}: gridPos past 24 columns");
        if p["type"] == "row" {
            panels.extend(p["panels"].as_array().into_iter().flatten());
            continue;
        }
        assert!(
            p["type"].as_str().is_some_and(|t| !t.is_empty()),
            "{title}: type"
        );
        let ds = p["datasource"]["uid"].as_str().expect("panel data source");
        assert!(
            ds.strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'))
                .is_some_and(|v| var_names.contains(v)),
            "{title}: data source {ds} is a dashboard variable"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            assert!(
                t["refId"].as_str().is_some_and(|r| !r.is_empty()),
                "{title}: refId"
            );
            let expr = t["expr"].as_str().expect("expr");
            assert!(
                !ugro_names(expr).is_empty() || expr.contains("up{"),
                "{title}: {expr}"
            );
            queries.push(expr.to_owned());
            queried += 1;
        }
    }
    assert!(queried >= 15, "{queried} queries");
    queries
}

#[test]
fn grafana_board_and_alert_rules_name_only_metrics_the_daemon_serves() {
    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/ugro-monitor.json")).unwrap(),
    )
    .expect("the board is JSON");
    let queries = dashboard_queries(&board);
    let served = served_names();

    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for q in &queries {
        for n in ugro_names(q) {
            used.entry("deploy/grafana/ugro-monitor.json".into())
                .or_default()
                .insert(n);
        }
    }
    for f in ["prometheus/alerts.yml", "prometheus/alerts_test.yml"] {
        let text = std::fs::read_to_string(deploy(f)).unwrap();
        used.insert(format!("deploy/{f}"), ugro_names(&text));
    }
    let board_names = &used["deploy/grafana/ugro-monitor.json"];
    // The board shows nodes, GPUs, runs, failures, summary and outbox.
    for must in [
        "ugro_node_state",
        "ugro_node_health_score",
        "ugro_gpu_utilization_ratio",
        "ugro_runs",
        "ugro_run_progress_ratio",
        "ugro_run_eta_seconds",
        "ugro_run_failures_total",
        "ugro_summary_last_made_timestamp_seconds",
        "ugro_outbox_messages",
    ] {
        assert!(board_names.contains(must), "the board has no {must}");
    }
    assert!(used["deploy/prometheus/alerts.yml"].len() >= 7);
    for (file, names) in &used {
        let missing: Vec<&String> = names.iter().filter(|n| !served.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "{file} names metrics /metrics does not serve: {missing:?}\nserved: {served:?}"
        );
    }
}
