//! Host keys of remote nodes against a real OpenSSH server: a key missing from known_hosts is
//! refused with a message that names the file; with `accept_new_host_keys = true` the first
//! key seen is recorded exactly once (however often the daemon reconnects) and from then on
//! checked strictly — a changed key is refused and never written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use ugro_testkit::sshd::Sshd;
use ugro_testkit::{Daemon, DaemonOptions, wait_for};

const FAST_HEALTH: &str = "[health]\ndisk_free_min = \"1MB\"\ninterval = \"1s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"2s\"\n\n";

fn node(sshd: &Sshd, known_hosts: &Path, accept_new: bool) -> String {
    let node = sshd.node_toml_with(
        "gpu1",
        sshd.port(),
        known_hosts,
        &format!("accept_new_host_keys = {accept_new}\n"),
    );
    format!("{FAST_HEALTH}{node}")
}

fn ssh_check(d: &Daemon) -> Value {
    let n: Value = d.ctl_report(&["check", "gpu1"]);
    n["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ssh")
        .cloned()
        .unwrap()
}

/// Lines of `known_hosts` that name this server's port.
fn entries(known_hosts: &Path, sshd: &Sshd) -> Vec<String> {
    std::fs::read_to_string(known_hosts)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("]:{}", sshd.port())))
        .map(str::to_string)
        .collect()
}

#[test]
fn an_unknown_host_key_is_refused_naming_the_known_hosts_file() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let d = Daemon::start(&DaemonOptions {
        extra_config: node(&sshd, &known_hosts, false),
        ..Default::default()
    });
    let ssh = ssh_check(&d);
    assert_eq!(ssh["status"], "fail", "{ssh}");
    let msg = ssh["message"].as_str().unwrap();
    assert!(
        msg.contains(&known_hosts.display().to_string()) && msg.contains("is not in"),
        "{msg}"
    );
    assert!(entries(&known_hosts, &sshd).is_empty(), "nothing recorded");
}

#[test]
fn accept_new_records_the_first_key_once_then_checks_it_strictly() {
    let mut sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let d = Daemon::start(&DaemonOptions {
        extra_config: node(&sshd, &known_hosts, true),
        ..Default::default()
    });
    wait_for("gpu1's first key recorded", Duration::from_secs(20), || {
        (ssh_check(&d)["status"] == "pass").then_some(())
    });
    let recorded = entries(&known_hosts, &sshd);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].contains(sshd.host_public_key().split(' ').nth(1).unwrap()),
        "{recorded:?} vs {}",
        sshd.host_public_key()
    );

    // Reconnects (sshd restarted with the same key, several sweeps) add nothing.
    sshd.restart();
    wait_for("gpu1 back", Duration::from_secs(20), || {
        (ssh_check(&d)["status"] == "pass").then_some(())
    });
    for _ in 0..3 {
        assert_eq!(ssh_check(&d)["status"], "pass");
    }
    assert_eq!(
        entries(&known_hosts, &sshd),
        recorded,
        "recorded exactly once"
    );

    // A different key now: refused as a changed key, and the file keeps the first one.
    sshd.restart_with_new_host_key();
    let ssh = wait_for("the changed key refused", Duration::from_secs(20), || {
        let s = ssh_check(&d);
        (s["status"] == "fail").then_some(s)
    });
    let msg = ssh["message"].as_str().unwrap();
    assert!(msg.contains("CHANGED"), "{msg}");
    assert_eq!(entries(&known_hosts, &sshd), recorded, "never overwritten");
}
