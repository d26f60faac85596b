//! End-to-end: a newcomer's first minutes, as the README's quick start has them —
//! `scripts/quickstart.sh` (the example tree from `scripts/example-runs.sh` under `./logs`, the
//! daemon on `config/quickstart.toml`; the test's binaries instead of a release build),
//! `ugroctl --socket .ugro/ugro.sock runs | health` — in a copy of the checkout's config and
//! scripts, with the daemon's default log filter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ugro_testkit::{bin, repo_root, wait_for, wait_output};

/// A checkout's `config/quickstart.toml` and `scripts/example-runs.sh` in a temp dir.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("ugro-qs")
        .tempdir()
        .unwrap();
    for f in [
        "config/quickstart.toml",
        "scripts/example-runs.sh",
        "scripts/quickstart.sh",
    ] {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo_root().join(f), &to).unwrap();
    }
    dir
}

/// `scripts/example-runs.sh` in `dir` (writes `./logs/example/…`).
fn example_runs(dir: &Path) {
    let child = Command::new("scripts/example-runs.sh")
        .current_dir(dir)
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
}

/// The daemon as the quick start starts it; killed when dropped.
struct QuickStart {
    child: Child,
    log: std::path::PathBuf,
}

impl QuickStart {
    /// The daemon binary itself on the quick start's config.
    fn start(dir: &Path) -> Self {
        let mut cmd = Command::new(bin("ugro-monitor"));
        cmd.args(["--config", "config/quickstart.toml"]);
        Self::spawn(dir, cmd)
    }

    /// `scripts/quickstart.sh`, the README's one command, with the test's binaries.
    fn start_script(dir: &Path) -> Self {
        let mut cmd = Command::new("scripts/quickstart.sh");
        cmd.env("UGRO_BIN_DIR", bin("ugro-monitor").parent().unwrap());
        Self::spawn(dir, cmd)
    }

    fn spawn(dir: &Path, mut cmd: Command) -> Self {
        let log = dir.join("daemon.log");
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .current_dir(dir)
            .env_remove("UGRO_LOG")
            .env_remove("RUST_LOG")
            .env_remove("UGRO_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        QuickStart { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ugroctl --socket .ugro/ugro.sock ARGS` in `dir`.
fn ctl(dir: &Path, args: &[&str]) -> Output {
    let child = Command::new(bin("ugroctl"))
        .args(["--socket", ".ugro/ugro.sock"])
        .args(args)
        .current_dir(dir)
        .env_remove("UGRO_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, Duration::from_secs(30))
}

/// The five example runs and their statuses, once the daemon lists all five.
fn wait_for_examples(dir: &Path, d: &QuickStart) -> Vec<(String, String)> {
    wait_for(
        "the five example runs in `ugroctl runs`",
        Duration::from_secs(60),
        || {
            let out = ctl(dir, &["--json", "runs"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let runs: Vec<(String, String)> = v["runs"]
                .as_array()?
                .iter()
                .map(|r| {
                    (
                        r["id"].as_str().unwrap_or("").to_owned(),
                        r["status"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect();
            (runs.len() == 5).then_some(runs)
        },
    )
    .into_iter()
    .inspect(|(id, _)| assert!(id.contains("example/"), "{id}\n{}", d.log()))
    .collect()
}

fn status_of<'a>(runs: &'a [(String, String)], name: &str) -> &'a str {
    runs.iter()
        .find(|(id, _)| id.ends_with(&format!("example/{name}")))
        .map(|(_, s)| s.as_str())
        .unwrap_or_else(|| panic!("no run example/{name} in {runs:?}"))
}

/// Whether this machine is overloaded as the load check judges it (both the 5- and 15-minute
/// load above 5 per core): only then may the quick start's node be other than healthy.
fn overloaded() -> bool {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap();
    let loads: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(|x| x.parse().unwrap())
        .collect();
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    loads[1] / cores > 5.0 && loads[2] / cores > 5.0
}

#[test]
fn quick_start_shows_the_example_runs_and_a_healthy_node() {
    let dir = checkout();
    let dir = dir.path();
    // The one command writes the example runs and starts the daemon.
    let d = QuickStart::start_script(dir);

    let runs = wait_for_examples(dir, &d);
    for (name, status) in [
        ("trainer_finished", "finished"),
        ("trainer_running", "running"),
        ("trainer_failed", "failed"),
        ("evaluator", "finished"),
        ("generic", "running"),
    ] {
        assert_eq!(status_of(&runs, name), status, "{name}: {runs:?}");
    }

    // The table: ETAs only for running runs, and exit 1 because one failed.
    let out = ctl(dir, &["runs"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed run makes `runs` exit 1"
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("5 runs: 1 failed, 2 finished, 2 running"),
        "{table}"
    );
    // The ETA column: from its header to the next one.
    let header = table.lines().next().unwrap();
    let (from, to) = (header.find("ETA").unwrap(), header.find("UPDATED").unwrap());
    let eta = |name: &str| {
        let row = table
            .lines()
            .find(|l| l.contains(&format!("example/{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        row.chars()
            .skip(header[..from].chars().count())
            .take(header[from..to].chars().count())
            .collect::<String>()
            .trim()
            .to_owned()
    };
    // 6 epochs left at 10 minutes each; 60 missions left at 120 an hour.
    assert_eq!(eta("trainer_running"), "1 h", "{table}");
    assert_eq!(eta("generic"), "30 min", "{table}");
    for done in ["trainer_finished", "trainer_failed", "evaluator"] {
        assert_eq!(
            eta(done),
            "-",
            "no ETA for a run that is not running:\n{table}"
        );
    }
    let out = ctl(dir, &["run", "example/trainer_failed"]);
    let detail = String::from_utf8(out.stdout).unwrap();
    assert!(
        detail.contains("error: CUDA out of memory") && detail.contains("20 min"),
        "{detail}"
    );

    // `ugroctl health` exits 0 on an idle or busy machine.
    let health = wait_for("the first sweep", Duration::from_secs(30), || {
        let out = ctl(dir, &["--json", "health"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["nodes"][0]["last_check"]
            .is_string()
            .then_some((out.status.code(), v))
    });
    let checks = health.1["nodes"][0]["checks"].as_array().unwrap().clone();
    let load = checks.iter().find(|c| c["name"] == "load").unwrap();
    if overloaded() {
        eprintln!("this machine is overloaded (/proc/loadavg); the node may be degraded");
    } else {
        // Idle passes, busy only warns.
        assert!(
            load["status"] == "pass" || load["warning"] == true,
            "{load}"
        );
        let others_pass = checks
            .iter()
            .filter(|c| c["name"] != "load")
            .all(|c| c["status"] == "pass" || c["status"] == "skipped");
        if others_pass {
            assert_eq!(health.0, Some(0), "{}", health.1);
            assert_eq!(health.1["nodes"][0]["state"], "healthy", "{}", health.1);
        } else {
            eprintln!("this machine fails another check (disk or memory): {checks:?}");
        }
    }

    // The log reads as sentences: no library chatter, no Debug structs, no empty parentheses.
    let log = d.log();
    for noise in ["Uninited", "Job creator created", "RetentionReport", "()"] {
        assert!(!log.contains(noise), "{noise:?} in the log:\n{log}");
    }
    assert!(
        log.contains("retention deleted nothing older than 30 days"),
        "{log}"
    );
}

/// The other order: the daemon first, `./logs` made later (the quick start's root does not
/// exist in a fresh checkout). The runs show within seconds, not at the 10-minute rescan.
#[test]
fn example_runs_made_after_start_show_at_once() {
    let dir = checkout();
    let dir = dir.path();
    let d = QuickStart::start(dir);
    wait_for("the daemon's socket", Duration::from_secs(20), || {
        ctl(dir, &["status"]).status.success().then_some(())
    });
    example_runs(dir);
    let runs = wait_for_examples(dir, &d);
    assert_eq!(status_of(&runs, "trainer_running"), "running", "{runs:?}");
}
