//! Slurm end to end: a private single-node Slurm from the testkit (real slurmctld, slurmd and
//! munged in a temp dir), the real daemon with `[slurm] enabled`, jobs submitted with `sbatch`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ugro_testkit::slurm::Slurm;

/// The testkit's cluster works the way the daemon will use it: a job runs, a held job stays
/// pending with its reason, the node drains and resumes.
#[test]
fn testkit_slurm_runs_jobs_and_drains() {
    let slurm = Slurm::start();
    let script = slurm.dir().join("jobs/sleep.sh");
    std::fs::write(&script, "#!/bin/sh\nsleep 30\n").unwrap();
    let running = slurm.sbatch(&["--job-name=sleeper", script.to_str().unwrap()]);
    slurm.wait_job_state(running, "RUNNING", Duration::from_secs(30));
    let held = slurm.sbatch(&["--hold", "--job-name=held", script.to_str().unwrap()]);
    slurm.wait_job_state(held, "PENDING", Duration::from_secs(30));

    slurm.drain("operator: bad fan");
    let (state, reason) = slurm.node_state();
    assert!(state.contains("DRAIN"), "{state}");
    assert_eq!(reason, "operator: bad fan");
    slurm.resume();
    let (state, reason) = slurm.node_state();
    assert!(!state.contains("DRAIN"), "{state}");
    assert_eq!(reason, "");
}
