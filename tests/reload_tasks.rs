//! A reload that adds and removes a node and a root starts and stops their loops without a
//! restart — seen in `/v1/nodes`, `/v1/runs` and the task list — and the loops it ends are
//! retired, not taken for dead: the systemd watchdog keeps pinging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;
use ugro_testkit::runs::{runs, write_file};
use ugro_testkit::sshd::Sshd;
use ugro_testkit::{Daemon, DaemonOptions, NotifySocket, wait_for};

/// One finished evaluator run at `root/rel`.
fn evaluator(root: &Path, rel: &str) {
    write_file(&root.join(rel).join("eval_1.log"), "done\n");
    write_file(
        &root.join(rel).join("evaluation_scores.json"),
        "{\"accuracy\": 0.9}",
    );
}

fn root_entry(root: &Path) -> String {
    format!("[[roots]]\npath = \"{}\"\n", root.display())
}

fn node_entry(sshd: &Sshd) -> String {
    format!(
        "[[nodes]]\nname = \"local\"\nhost = \"local\"\n\n{}",
        sshd.node_toml("extra", "")
    )
}

fn task_names(d: &Daemon) -> Vec<String> {
    d.ctl_json(&["status"])["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn node_names(d: &Daemon) -> Vec<String> {
    let v: Value = d.ctl_report(&["health"]);
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

fn run_ids(d: &Daemon) -> Vec<String> {
    let mut ids: Vec<String> = runs(d)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn reload_starts_and_stops_node_and_root_loops_and_the_watchdog_keeps_pinging() {
    let sshd = Sshd::start();
    let notify_dir = tempfile::tempdir().unwrap();
    let mut notify = NotifySocket::bind(notify_dir.path());
    let data = tempfile::tempdir().unwrap();
    let (a, b) = (data.path().join("a"), data.path().join("b"));
    evaluator(&a, "exp/eval_a");
    evaluator(&b, "exp/eval_b");

    let opts = DaemonOptions {
        notify_socket: Some(notify.path().to_path_buf()),
        watchdog: Some(Duration::from_secs(2)),
        extra_config: format!(
            "[[nodes]]\nname = \"local\"\nhost = \"local\"\n\n{}",
            root_entry(&a)
        ),
        ..Default::default()
    };
    let mut d = Daemon::prepare(&opts);
    d.spawn(&opts);
    notify.expect("READY=1", Duration::from_secs(10));
    wait_for("root a's run", Duration::from_secs(20), || {
        (run_ids(&d) == ["exp/eval_a"]).then_some(())
    });
    let pid = d.pid();

    // Add a node and a root.
    d.write_config(&d.config_text(&DaemonOptions {
        extra_config: format!(
            "{}\n{}\n{}",
            node_entry(&sshd),
            root_entry(&a),
            root_entry(&b)
        ),
        ..Default::default()
    }));
    d.signal(Signal::SIGHUP);
    wait_for(
        "the new node, root and their loops",
        Duration::from_secs(20),
        || {
            let tasks = task_names(&d);
            (node_names(&d).contains(&"extra".to_string())
                && run_ids(&d) == ["exp/eval_a", "exp/eval_b"]
                && tasks.contains(&"health:extra".to_string())
                && tasks.contains(&format!("runs:{}", b.display())))
            .then_some(())
        },
    );

    // Remove them again (and root a with them).
    d.write_config(&d.config_text(&DaemonOptions {
        extra_config: format!(
            "[[nodes]]\nname = \"local\"\nhost = \"local\"\n\n{}",
            root_entry(&b)
        ),
        ..Default::default()
    }));
    d.signal(Signal::SIGHUP);
    wait_for(
        "the removed node and root to go",
        Duration::from_secs(20),
        || {
            let tasks = task_names(&d);
            (node_names(&d) == ["local"]
                && run_ids(&d) == ["exp/eval_b"]
                && !tasks.contains(&"health:extra".to_string())
                && !tasks.contains(&format!("runs:{}", a.display())))
            .then_some(())
        },
    );
    let status = d.ctl_json(&["status"]);
    for t in status["tasks"].as_array().unwrap() {
        assert_eq!(t["alive"], true, "{t}");
    }

    // The loops the reload ended are not dead tasks: the watchdog goes on pinging.
    let seen_before = notify.seen().len();
    for _ in 0..4 {
        notify.expect("WATCHDOG=1", Duration::from_secs(3));
    }
    let held: Vec<&String> = notify.seen()[seen_before..]
        .iter()
        .filter(|l| l.contains("watchdog held"))
        .collect();
    assert!(held.is_empty(), "{held:?}\n{}", d.log());
    assert_eq!(d.pid(), pid, "no restart");
    assert!(d.try_wait().is_none(), "{}", d.log());
}
