//! Slurm read over a node's SSH session (`[slurm] node = "box"`): the daemon itself cannot
//! reach the cluster (its `SLURM_CONF` names no file), the node's sessions can (the testkit's
//! sshd gives them the cluster's `SLURM_CONF`). A job whose working directory is a run's is
//! that run's job, and the queue and its jobs come only through the session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ugro_testkit::runs::{wait_run_detail, write_file};
use ugro_testkit::slurm::Slurm;
use ugro_testkit::sshd::{Sshd, SshdOptions};
use ugro_testkit::{Daemon, DaemonOptions};

#[test]
fn slurm_is_read_over_the_nodes_ssh_session() {
    let slurm = Slurm::start();
    let sshd = Sshd::start_with(SshdOptions {
        env: vec![slurm.env()],
        ..Default::default()
    });
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("exp/run_1");
    write_file(&run.join("config.json"), "{\"epochs\": 10}");
    write_file(&run.join("train_val.log"), "epoch 0\n");
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "{}\n[[roots]]\npath = \"{}\"\n\n[slurm]\nenabled = true\nnode = \"box\"\ninterval = \"1s\"\n",
            sshd.node_toml("box", ""),
            root.path().display()
        ),
        // Local Slurm commands of the daemon fail: only the session reaches the cluster.
        env: vec![("SLURM_CONF".into(), "/nonexistent/slurm.conf".into())],
        ..Default::default()
    });

    let script = slurm.dir().join("jobs/sleep.sh");
    write_file(&script, "#!/bin/sh\nsleep 120\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let job = slurm.sbatch(&[
        "--job-name=run-1",
        &format!("--chdir={}", run.display()),
        &format!(
            "--output={}",
            slurm.dir().join("jobs/sleep-%j.out").display()
        ),
        script.to_str().unwrap(),
    ]);
    slurm.wait_job_state(job, "RUNNING", Duration::from_secs(30));

    let info = wait_run_detail(
        &d,
        "exp/run_1",
        "the run's Slurm job read over SSH",
        Duration::from_secs(45),
        |v| v["slurm"]["state"] == "RUNNING",
    );
    assert_eq!(info["slurm"]["job_id"], job.to_string(), "{info}");
    assert_eq!(info["slurm"]["name"], "run-1");
    assert_eq!(info["slurm"]["state"], "RUNNING");
    // Read through the session all along: no outage was ever reported.
    assert!(
        d.events_of_kind("slurm.unavailable").is_empty(),
        "{:?}\n{}",
        d.events_of_kind("slurm.unavailable"),
        d.log()
    );
}
