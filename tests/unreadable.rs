//! A directory the daemon may not read, with the daemon running as the user it is about (an
//! unprivileged one, through `setpriv`; root would read a 0000 directory and prove nothing):
//! the directory is reported, its runs are not guessed at, every other run is tracked, and the
//! daemon carries on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;
use ugro_testkit::{Daemon, DaemonOptions, wait_for, write_file};

const NOBODY: (u32, u32) = (65534, 65534);

#[test]
fn an_unreadable_directory_is_reported_and_not_fatal_for_an_unprivileged_daemon() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root to run the daemon as another user; CI runs as root"
    );
    let data = tempfile::tempdir().unwrap();
    let root = data.path().join("logs");
    write_file(&root.join("exp/eval_ok/eval_1.log"), "done\n");
    write_file(
        &root.join("exp/eval_ok/evaluation_scores.json"),
        "{\"accuracy\": 0.9}",
    );
    write_file(&root.join("locked/run_x/eval_1.log"), "done\n");
    write_file(
        &root.join("locked/run_x/evaluation_scores.json"),
        "{\"accuracy\": 0.5}",
    );
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // The tree is world-readable but for `locked`; the daemon's own dir belongs to nobody.
    for dir in [data.path(), &root, &root.join("exp")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let opts = DaemonOptions {
        extra_config: format!("[[roots]]\npath = \"{}\"\n", root.display()),
        run_as: Some(NOBODY),
        ..Default::default()
    };
    let mut d = Daemon::prepare(&opts);
    std::os::unix::fs::chown(d.dir.path(), Some(NOBODY.0), Some(NOBODY.1)).unwrap();
    std::os::unix::fs::chown(&d.config_path, Some(NOBODY.0), Some(NOBODY.1)).unwrap();
    d.spawn(&opts);
    d.wait_ready();
    let status = d.ctl_json(&["status"]);
    assert_eq!(
        std::fs::metadata(&d.socket)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.uid()
            })
            .unwrap(),
        NOBODY.0,
        "the daemon really runs as nobody: {status}"
    );

    let runs: Value = wait_for("the readable run", Duration::from_secs(20), || {
        let v = d.ctl_report(&["runs"]);
        (!v["runs"].as_array().unwrap().is_empty()).then_some(v)
    });
    let ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["exp/eval_ok"],
        "the locked dir's run is not guessed at"
    );
    let log = d.log();
    assert!(
        log.contains("locked") && log.contains("ermission denied"),
        "the unreadable directory is reported, naming it and why:\n{log}"
    );
    // Not fatal: still serving, every task alive.
    std::thread::sleep(Duration::from_secs(2));
    assert!(d.try_wait().is_none(), "{log}");
    for t in d.ctl_json(&["status"])["tasks"].as_array().unwrap() {
        assert_eq!(t["alive"], true, "{t}");
    }
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o755)).unwrap();
}
