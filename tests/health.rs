//! Node health end to end: the real daemon against real OpenSSH servers on 127.0.0.1 (one per
//! "host", each with its own `nvidia-smi` stand-in on PATH), a delaying TCP proxy for latency,
//! a restart that serves the last known states, and `/metrics` through a real parser.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use ugro_core::event::EventKind;
use ugro_testkit::gpu::{FakeGpu, install_fake_nvidia_smi};
use ugro_testkit::proxy::DelayProxy;
use ugro_testkit::sshd::{Sshd, SshdOptions, established_tcp_connections};
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

/// Fast cadence for tests: sweeps every 1-2 s, probes time out after 2 s.
const FAST_HEALTH: &str = "[health]\ndisk_free_min = \"1MB\"\ninterval = \"2s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"2s\"\n\n";

fn remote_node(
    name: &str,
    sshd: &Sshd,
    port: u16,
    known_hosts: &Path,
    gpus: Option<u32>,
) -> String {
    let gpus = gpus.map(|g| format!("gpus = {g}\n")).unwrap_or_default();
    sshd.node_toml_with(name, port, known_hosts, &gpus)
}

/// An sshd whose sessions find a fake nvidia-smi in `bin` first on PATH.
fn gpu_host(mode: FakeGpu) -> (Sshd, tempfile::TempDir) {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), mode);
    let sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });
    (sshd, bin)
}

/// `ugroctl --json health NAME` (exit 0 healthy, 1 not healthy: both carry the report).
fn node(d: &Daemon, name: &str) -> Value {
    let out = d.ctl(&["--json", "health", name]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "ugroctl health {name}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        out.status.code() == Some(0),
        v["healthy"] == true,
        "exit code follows healthy"
    );
    v
}

fn find_check<'a>(n: &'a Value, name: &str) -> Option<&'a Value> {
    n["checks"].as_array()?.iter().find(|c| c["name"] == name)
}

fn check<'a>(n: &'a Value, name: &str) -> &'a Value {
    find_check(n, name).unwrap_or_else(|| panic!("no {name} check in {n}"))
}

fn wait_state(d: &Daemon, name: &str, state: &str, within: Duration) -> Value {
    let mut last = Value::Null;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&format!("{name} to become {state}"), within, || {
            let n = node(d, name);
            last = n.clone();
            (n["state"] == state).then_some(n)
        })
    }));
    match r {
        Ok(v) => v,
        Err(_) => panic!(
            "{name} did not become {state} within {within:?}; last report:\n{}\ndaemon log:\n{}",
            serde_json::to_string_pretty(&last).unwrap(),
            d.log()
        ),
    }
}

#[test]
fn remote_node_healthy_unreachable_back_and_host_key_change_over_one_connection() {
    let (mut sshd, _bin) = gpu_host(FakeGpu::Healthy { count: 2 });
    let mut d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "{FAST_HEALTH}{}",
            remote_node("gpu1", &sshd, sshd.port(), sshd.known_hosts(), Some(2))
        ),
        ..Default::default()
    });
    let pid = d.pid().as_raw() as u32;
    let mut max_conns = 0;
    let mut conns = |sshd: &Sshd| {
        max_conns = max_conns.max(sshd.established_connections_from(pid));
    };

    // Healthy: ssh, latency and 2 GPUs pass over the persistent connection.
    let n = wait_state(&d, "gpu1", "healthy", Duration::from_secs(15));
    assert_eq!(check(&n, "ssh")["status"], "pass");
    assert_eq!(check(&n, "latency")["status"], "pass");
    assert_eq!(check(&n, "gpu")["status"], "pass", "{n}");
    assert_eq!(n["gpus"].as_array().unwrap().len(), 2);
    assert!(
        d.ctl(&["health"]).status.success(),
        "exit 0 when all nodes are healthy"
    );
    for _ in 0..3 {
        conns(&sshd);
        std::thread::sleep(Duration::from_millis(700));
    }
    assert_eq!(
        sshd.established_connections_from(pid),
        1,
        "one persistent connection"
    );

    // sshd goes away: unreachable within two intervals (2 × 2 s, plus the probe deadline).
    sshd.stop();
    let n = wait_state(&d, "gpu1", "unreachable", Duration::from_secs(6));
    assert_eq!(check(&n, "ssh")["status"], "fail");
    assert_eq!(check(&n, "gpu")["status"], "skipped");
    let out = d.ctl(&["health"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ugroctl health exits 1 when a node is not healthy: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("unreachable"));

    // sshd back: healthy again, still one connection.
    sshd.restart();
    wait_state(&d, "gpu1", "healthy", Duration::from_secs(20));
    for _ in 0..3 {
        conns(&sshd);
        std::thread::sleep(Duration::from_millis(500));
    }

    // A new host key: the ssh check fails and says it is the host key; never accepted.
    sshd.restart_with_new_host_key();
    let out = d.ctl(&["--json", "check", "gpu1"]);
    assert_eq!(out.status.code(), Some(1));
    let n: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ssh = check(&n, "ssh");
    assert_eq!(ssh["status"], "fail");
    let msg = ssh["message"].as_str().unwrap();
    assert!(msg.contains("host key") && msg.contains("CHANGED"), "{msg}");
    wait_state(&d, "gpu1", "unreachable", Duration::from_secs(6));
    conns(&sshd);
    assert_eq!(
        sshd.established_connections_from(pid),
        0,
        "a refused host key leaves no session"
    );
    assert!(
        max_conns <= 1,
        "at most one established connection per node, saw {max_conns}"
    );

    // The transitions are events.
    let ev = d.ctl_json(&[
        "events",
        "--kind",
        EventKind::NodeStateChanged.as_str(),
        "--subject",
        "gpu1",
    ]);
    let msgs: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("unknown → healthy")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("healthy → unreachable")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("unreachable → healthy")),
        "{msgs:?}"
    );
    d.signal(Signal::SIGTERM);
    let (status, _) = d.wait_exit(Duration::from_secs(5));
    assert!(status.success());
}

#[test]
fn gpu_stand_ins_lost_hung_hot_and_absent_nvml() {
    let (ok, _b1) = gpu_host(FakeGpu::Healthy { count: 2 });
    let (lost, _b2) = gpu_host(FakeGpu::Lost {
        count: 2,
        lost_index: 1,
    });
    let (hang, _b3) = gpu_host(FakeGpu::Hang);
    let (hot, _b4) = gpu_host(FakeGpu::Hot {
        count: 2,
        hot_index: 1,
        temp_c: 91,
    });
    let nodes = [
        remote_node("ok", &ok, ok.port(), ok.known_hosts(), Some(2)),
        remote_node("lost", &lost, lost.port(), lost.known_hosts(), Some(2)),
        remote_node("hang", &hang, hang.port(), hang.known_hosts(), Some(2)),
        remote_node("hot", &hot, hot.port(), hot.known_hosts(), Some(2)),
        "[[nodes]]\nname = \"here\"\nhost = \"local\"\n".to_string(),
    ]
    .join("\n");
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!("{FAST_HEALTH}{nodes}"),
        ..Default::default()
    });

    let n = wait_state(&d, "ok", "healthy", Duration::from_secs(15));
    assert_eq!(check(&n, "gpu")["status"], "pass");

    let n = wait_state(&d, "lost", "unhealthy", Duration::from_secs(15));
    let gpu = check(&n, "gpu");
    assert_eq!(gpu["status"], "fail");
    assert!(
        gpu["message"].as_str().unwrap().contains("GPU is lost"),
        "{gpu}"
    );

    // nvidia-smi never answers: `hung` at its 2 s deadline, the node's other checks complete.
    let n = wait_state(&d, "hang", "unhealthy", Duration::from_secs(15));
    let gpu = check(&n, "gpu");
    assert_eq!(gpu["status"], "hung", "{gpu}");
    assert_eq!(gpu["passed"], false);
    let took = gpu["duration_ms"].as_u64().unwrap();
    assert!(
        (1900..4000).contains(&took),
        "hung at its deadline, took {took} ms"
    );
    for c in ["ssh", "latency", "disk", "memory"] {
        assert_eq!(
            check(&n, c)["status"],
            "pass",
            "{c} completes beside a hung probe: {n}"
        );
    }
    let hangs = d.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_, _, metrics) = rt
        .block_on(hangs.raw(http::Method::GET, "/metrics", None))
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics).to_string();
    assert!(
        metrics.contains("ugro_probe_hangs_total{node=\"hang\",check=\"gpu\"}"),
        "{metrics}"
    );

    // A hot GPU raises an alert (the check itself passes).
    let n = wait_for("the hot-GPU alert", Duration::from_secs(15), || {
        let n = node(&d, "hot");
        n["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["message"].as_str().unwrap().contains("91"))
            .then_some(n)
    });
    assert_eq!(check(&n, "gpu")["status"], "pass");
    std::thread::sleep(Duration::from_secs(3)); // more sweeps: still one alert
    let ev = d.ctl_json(&[
        "events",
        "--kind",
        EventKind::NodeAlertOpened.as_str(),
        "--subject",
        "hot",
    ]);
    let gpu_alerts = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["message"].as_str().unwrap().contains("91 °C"))
        .count();
    assert_eq!(gpu_alerts, 1, "the hot-GPU alert is opened once: {ev}");

    // No NVML and no nvidia-smi on this machine: the local GPU check is skipped, said once.
    let n = wait_for(
        "two sweeps of the local node",
        Duration::from_secs(10),
        || {
            let n = node(&d, "here");
            (n["last_check"] != Value::Null).then_some(n)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let gpu = check(&n, "gpu");
    assert_eq!(gpu["status"], "skipped", "{gpu}");
    assert!(gpu["message"].as_str().unwrap().contains("NVML"), "{gpu}");
    assert_eq!(
        d.log().matches("NVML not available").count(),
        1,
        "NVML absence is logged once, by every part that reads GPUs together:\n{}",
        d.log()
    );
}

#[test]
fn added_latency_fails_latency_and_degrades_not_unreachable() {
    let sshd = Sshd::start();
    let proxy = DelayProxy::start(
        format!("127.0.0.1:{}", sshd.port()).parse().unwrap(),
        Duration::ZERO,
    );
    let kh = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        kh.path(),
        format!("{}\n", sshd.known_hosts_entry(proxy.port())),
    )
    .unwrap();
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "{}latency_max = \"80ms\"\n\n{}",
            FAST_HEALTH.replace("probe_timeout = \"2s\"", "probe_timeout = \"5s\""),
            remote_node("far", &sshd, proxy.port(), kh.path(), None)
        ),
        ..Default::default()
    });
    let n = wait_for(
        "a first sweep through the proxy",
        Duration::from_secs(15),
        || {
            let n = node(&d, "far");
            find_check(&n, "latency")
                .is_some_and(|c| c["status"] == "pass")
                .then_some(n)
        },
    );
    assert_ne!(n["state"], "unreachable");

    // 60 ms each way: every round trip ≥ 120 ms > 80 ms.
    proxy.set_delay(Duration::from_millis(60));
    // (On a loaded machine the load check may fail too; that also only degrades.)
    let n = wait_for(
        "latency to fail and the node to be degraded",
        Duration::from_secs(20),
        || {
            let n = node(&d, "far");
            (n["state"] == "degraded"
                && find_check(&n, "latency").is_some_and(|c| c["status"] == "fail"))
            .then_some(n)
        },
    );
    let lat = check(&n, "latency");
    assert!(lat["value"].as_f64().unwrap() >= 120.0, "{lat}");
    assert_eq!(check(&n, "ssh")["status"], "pass");
    assert_eq!(
        established_tcp_connections(d.pid().as_raw() as u32, proxy.port()),
        1,
        "still one connection"
    );
}

#[test]
fn restart_serves_last_known_states_at_once() {
    let (sshd, _bin) = gpu_host(FakeGpu::Healthy { count: 1 });
    let opts = DaemonOptions {
        extra_config: format!(
            "[health]\ndisk_free_min = \"1MB\"\ninterval = \"5m\"\nmin_interval = \"5m\"\nmax_interval = \"5m\"\n\n{}",
            remote_node("gpu1", &sshd, sshd.port(), sshd.known_hosts(), Some(1))
        ),
        ..Default::default()
    };
    let mut d = Daemon::start(&opts);
    wait_state(&d, "gpu1", "healthy", Duration::from_secs(15));
    d.signal(Signal::SIGTERM);
    d.wait_exit(Duration::from_secs(5));

    // Down while the daemon is away; the restart shows the last known state until it sweeps.
    drop(sshd);
    d.spawn(&opts);
    d.wait_ready();
    let n = node(&d, "gpu1");
    assert_eq!(n["state"], "healthy", "last known state, not unknown: {n}");
    assert!(n["last_check"].is_string());
    // Either no sweep ran yet (restored), or one did and saw the node down: one sweep does
    // not overturn the restored state.
    assert!(
        n["restored"] == true || n["observed"] == "unreachable",
        "{n}"
    );
    // The first sweep after the restart sees the truth (hysteresis: two sweeps to flip).
    let n = wait_for("a sweep after the restart", Duration::from_secs(15), || {
        let n = node(&d, "gpu1");
        (n["restored"] == false).then_some(n)
    });
    assert_eq!(check(&n, "ssh")["status"], "fail");
    assert_eq!(
        n["state"], "healthy",
        "hysteresis: one failed sweep is not confirmed"
    );
    // The second failed sweep (asked for now: the interval is 5 min) confirms it.
    let n = d.ctl_report(&["check", "gpu1"]);
    assert_eq!(check(&n, "ssh")["status"], "fail");
    assert_eq!(n["state"], "unreachable", "two sweeps agree: {n}");
}

#[test]
fn metrics_parse_with_the_prometheus_parser_on_socket_and_tcp() {
    let port = ugro_testkit::sshd::free_port();
    let (sshd, _bin) = gpu_host(FakeGpu::Healthy { count: 2 });
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "{FAST_HEALTH}[http]\nlisten = \"127.0.0.1:{port}\"\n\n{}[[nodes]]\nname = \"here\"\nhost = \"local\"\n",
            remote_node("gpu1", &sshd, sshd.port(), sshd.known_hosts(), Some(2))
        ),
        ..Default::default()
    });
    wait_state(&d, "gpu1", "healthy", Duration::from_secs(15));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, protocol, body) = rt
        .block_on(d.client().raw(http::Method::GET, "/metrics", None))
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(protocol, Some(1));
    let socket_text = String::from_utf8(body.to_vec()).unwrap();

    // Over TCP as Prometheus scrapes it (OpenMetrics); on the socket as curl and promtool get
    // it (the classic text format).
    let tcp = std::process::Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "10",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .unwrap();
    assert!(tcp.status.success(), "GET /metrics over TCP");

    for (text, openmetrics) in [
        (socket_text, false),
        (String::from_utf8(tcp.stdout).unwrap(), true),
    ] {
        let parsed = parse_with_prometheus_client(&text, openmetrics);
        for family in [
            "ugro_node_health_score",
            "ugro_node_state",
            "ugro_check_passed",
            "ugro_check_duration_seconds",
            "ugro_gpu_temperature_celsius",
            "ugro_gpu_utilization_ratio",
            "ugro_gpu_memory_used_bytes",
            "ugro_ssh_reconnects",
            "ugro_node_sweeps",
        ] {
            assert!(
                parsed.contains(&format!("{family}\n")),
                "{family} missing; parsed families:\n{parsed}"
            );
        }
        let report = d.ctl_report(&["health", "gpu1"]);
        assert!(
            text.contains(&format!(
                "ugro_node_health_score{{node=\"gpu1\"}} {}.0",
                report["score"]
            )),
            "the exposed score is the reported one ({}):\n{text}",
            report["score"]
        );
    }
}

/// Runs Debian's python3-prometheus-client parser (OpenMetrics, or the classic text format)
/// over `text`; returns the family names it found, one per line. Panics with the parser's error
/// when the text is invalid.
fn parse_with_prometheus_client(text: &str, openmetrics: bool) -> String {
    use std::io::Write;
    let module = if openmetrics {
        "prometheus_client.openmetrics.parser"
    } else {
        "prometheus_client.parser"
    };
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            &format!("import sys\nfrom {module} import text_string_to_metric_families as p\nfor f in p(sys.stdin.read()):\n    print(f.name)\n"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 with python3-prometheus-client (scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = ugro_testkit::wait_output(child, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "the exposition does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
