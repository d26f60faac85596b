//! Only the sshd listener of a node dies: the daemon's own session goes on working, but nobody
//! can log in any more. A periodic fresh login (`health.login_check_interval`) sees it: the
//! ssh check fails saying new logins fail, and the node is no longer healthy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::Value;
use ugro_testkit::sshd::Sshd;
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

fn node_state(d: &Daemon) -> Value {
    d.ctl_report(&["health", "gpu1"])
}

#[test]
fn a_dead_sshd_listener_behind_a_live_session_is_seen_by_a_fresh_login() {
    let mut sshd = Sshd::start();
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[health]\ndisk_free_min = \"1MB\"\ninterval = \"1s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"2s\"\nlogin_check_interval = \"3s\"\n\n{}",
            sshd.node_toml("gpu1", "")
        ),
        ..Default::default()
    });
    wait_for("gpu1 healthy", Duration::from_secs(20), || {
        (node_state(&d)["state"] == "healthy").then_some(())
    });

    // The listener dies; the session the daemon holds does not.
    sshd.kill_listener();
    let n = wait_for("the fresh login to fail", Duration::from_secs(30), || {
        let n = node_state(&d);
        let ssh = n["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "ssh")
            .cloned()
            .unwrap();
        (ssh["status"] == "fail").then_some((n, ssh))
    });
    let (_, ssh) = n;
    let msg = ssh["message"].as_str().unwrap();
    assert!(msg.contains("users cannot log in"), "{msg}");
    wait_for("gpu1 no longer healthy", Duration::from_secs(20), || {
        (node_state(&d)["state"] != "healthy").then_some(())
    });

    // The listener back: a fresh login works again and so does the node.
    sshd.restart();
    wait_for("gpu1 healthy again", Duration::from_secs(30), || {
        (node_state(&d)["state"] == "healthy").then_some(())
    });
}
