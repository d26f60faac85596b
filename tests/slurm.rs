//! Slurm end to end: a private single-node Slurm from the testkit (real slurmctld, slurmd and
//! munged in a temp dir), the real daemon with `[slurm] enabled` (its `SLURM_CONF` pointing at
//! that cluster), jobs submitted with `sbatch`. A job running a fake training script is mapped
//! to its run; a node ugro finds unhealthy (its GPU probe failing through the nvidia-smi
//! stand-in) is drained with the `ugro: ` reason and resumed when healthy; an operator's drain
//! is never lifted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use ugro_testkit::gpu::{FakeGpu, install_fake_nvidia_smi};
use ugro_testkit::runs::{wait_run_detail, write_file};
use ugro_testkit::slurm::Slurm;
use ugro_testkit::{Daemon, DaemonOptions, path_first, wait_for};

/// Health sweeps every second, so a state change is confirmed within a few seconds; the disk
/// check asks for little, so this machine's own free space does not decide the node's state.
const FAST_HEALTH: &str = "[health]\ninterval = \"1s\"\nmin_interval = \"1s\"\nmax_interval = \"1s\"\nprobe_timeout = \"5s\"\ndisk_free_min = \"1MB\"\n\n";

/// A daemon whose Slurm commands reach `slurm`, with `bin` (the nvidia-smi stand-in) first on
/// PATH, and `extra` config.
fn daemon(slurm: &Slurm, bin: &Path, extra: &str) -> Daemon {
    Daemon::start(&DaemonOptions {
        extra_config: extra.to_string(),
        env: vec![slurm.env(), path_first(bin)],
        ..Default::default()
    })
}

/// Waits (≤ 30 s) until ugro's node `local` is in `want`; panics with its last report.
fn wait_node_state(d: &Daemon, want: &str) {
    let start = std::time::Instant::now();
    loop {
        let report = d.ctl_report(&["health", "local"]);
        if report["state"] == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node not {want} within 30 s: {report:#}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

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

/// A fake training script: writes complete epochs into the run dir given as its argument (so
/// the run's process mentions its work dir, as a real launcher's does), then keeps training.
const TRAIN: &str = r#"#!/bin/sh
run="$1"
for i in 0 1; do
  mkdir -p "$run/epoch_$i"
  printf '\001\002' > "$run/epoch_$i/training_losses.pt"
  echo '{"step": 1}' > "$run/epoch_$i/optimizer_buffer.json"
  echo "{\"val\": {\"acc\": 0.$i, \"loss\": 1.0}}" > "$run/epoch_$i/validation_scores.json"
  echo "epoch $i done" >> "$run/train_val.log"
done
while true; do echo step >> "$run/train_val.log"; sleep 1; done
"#;

/// A job that runs a training script is the run's job: `ugroctl --json run ID` names it (found
/// through the process's `SLURM_JOB_ID`: the job's working directory is elsewhere), and
/// `ugroctl run ID` shows it.
#[test]
fn a_submitted_job_is_mapped_to_its_run() {
    let slurm = Slurm::start();
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("exp/run_1");
    write_file(&run.join("config.json"), "{\"epochs\": 10}");
    let script = slurm.dir().join("jobs/train.sh");
    write_file(&script, TRAIN);
    let bin = tempfile::tempdir().unwrap();
    let d = daemon(
        &slurm,
        bin.path(),
        &format!(
            "[[roots]]\npath = \"{}\"\n\n[slurm]\nenabled = true\ninterval = \"1s\"\n",
            root.path().display()
        ),
    );
    let job = slurm.sbatch(&[
        "--job-name=train-run-1",
        &format!("--chdir={}", slurm.dir().join("jobs").display()),
        &format!(
            "--output={}",
            slurm.dir().join("jobs/train-%j.out").display()
        ),
        script.to_str().unwrap(),
        run.to_str().unwrap(),
    ]);
    slurm.wait_job_state(job, "RUNNING", Duration::from_secs(30));

    let info = wait_run_detail(
        &d,
        "exp/run_1",
        "the run's Slurm job",
        Duration::from_secs(30),
        |v| v["slurm"]["job_id"].is_string(),
    );
    assert_eq!(info["slurm"]["job_id"], job.to_string(), "{info}");
    assert_eq!(info["slurm"]["name"], "train-run-1");
    assert_eq!(info["slurm"]["state"], "RUNNING");
    assert_eq!(info["slurm"]["partition"], "debug");
    assert!(info["process"]["pid"].is_u64(), "{info}");
    let human = String::from_utf8(d.ctl(&["run", "exp/run_1"]).stdout).unwrap();
    assert!(
        human.contains(&format!("job {job} RUNNING \"train-run-1\"")),
        "{human}"
    );
}

/// `drain_unhealthy`: the GPU probe fails (driver error), the node turns unhealthy after
/// hysteresis and is drained with `ugro: gpu`; the GPU comes back, the node turns healthy and
/// is resumed. Both are events.
#[test]
fn an_unhealthy_node_is_drained_and_resumed_when_healthy() {
    let slurm = Slurm::start();
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 1 });
    let d = daemon(
        &slurm,
        bin.path(),
        &format!(
            "{FAST_HEALTH}[[nodes]]\nname = \"local\"\nhost = \"local\"\ngpus = 1\n\n[slurm]\nenabled = true\ndrain_unhealthy = true\ninterval = \"1s\"\n"
        ),
    );
    let state = |d: &Daemon| d.ctl_report(&["health", "local"])["state"].clone();
    wait_node_state(&d, "healthy");
    assert!(!slurm.node_state().0.contains("DRAIN"));

    install_fake_nvidia_smi(bin.path(), FakeGpu::DriverError);
    let (s, reason) = wait_for("the node drained", Duration::from_secs(30), || {
        let (s, r) = slurm.node_state();
        s.contains("DRAIN").then_some((s, r))
    });
    assert_eq!(reason, "ugro: gpu", "{s}");
    assert_eq!(state(&d), "unhealthy");
    let drained = d.events_of_kind("slurm.drained");
    assert_eq!(drained.len(), 1, "{drained:?}");
    assert_eq!(drained[0]["subject"], "local");

    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 1 });
    wait_for("the node resumed", Duration::from_secs(30), || {
        (!slurm.node_state().0.contains("DRAIN")).then_some(())
    });
    assert_eq!(state(&d), "healthy");
    assert_eq!(d.events_of_kind("slurm.resumed").len(), 1);
}

/// An operator's drain is never undone: the node drained with another reason turns unhealthy
/// (left alone: `slurm.drain_skipped`) and healthy again, and stays drained with the operator's
/// reason.
#[test]
fn an_operator_drain_is_never_resumed() {
    let slurm = Slurm::start();
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 1 });
    slurm.drain("operator: replacing a fan");
    let d = daemon(
        &slurm,
        bin.path(),
        &format!(
            "{FAST_HEALTH}[[nodes]]\nname = \"local\"\nhost = \"local\"\ngpus = 1\n\n[slurm]\nenabled = true\ndrain_unhealthy = true\ninterval = \"1s\"\n"
        ),
    );
    wait_node_state(&d, "healthy");

    install_fake_nvidia_smi(bin.path(), FakeGpu::DriverError);
    let skipped = wait_for("the drain left alone", Duration::from_secs(30), || {
        let e = d.events_of_kind("slurm.drain_skipped");
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(
        skipped.len(),
        1,
        "one event per operator drain: {skipped:?}"
    );
    assert_eq!(slurm.node_state().1, "operator: replacing a fan");

    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 1 });
    wait_node_state(&d, "healthy");
    // A few Slurm cycles (every second) with the node healthy: still the operator's drain.
    std::thread::sleep(Duration::from_secs(4));
    let (s, reason) = slurm.node_state();
    assert!(s.contains("DRAIN"), "{s}");
    assert_eq!(reason, "operator: replacing a fan");
    assert!(d.events_of_kind("slurm.resumed").is_empty());
    assert!(d.events_of_kind("slurm.drained").is_empty());
}

/// A held job pending for longer than `queued_after` is an experiment queued in the summary's
/// bottlenecks, with Slurm's reason; a running job is not.
#[test]
fn a_pending_job_is_queued_in_the_summary() {
    let slurm = Slurm::start();
    let script = slurm.dir().join("jobs/sleep.sh");
    write_file(&script, "#!/bin/sh\nsleep 60\n");
    let bin = tempfile::tempdir().unwrap();
    let d = daemon(
        &slurm,
        bin.path(),
        "[slurm]\nenabled = true\ninterval = \"1s\"\nqueued_after = \"1s\"\n",
    );
    let running = slurm.sbatch(&["--job-name=runner", script.to_str().unwrap()]);
    let held = slurm.sbatch(&["--hold", "--job-name=held-exp", script.to_str().unwrap()]);
    slurm.wait_job_state(running, "RUNNING", Duration::from_secs(30));
    slurm.wait_job_state(held, "PENDING", Duration::from_secs(30));

    let want = format!("Experiments queued: job {held} \"held-exp\"");
    let not_running = format!("job {running} ");
    // The daemon reads Slurm every second: once it has seen the runner start, only the held
    // job is queued.
    let md = wait_for(
        "the held job, and only it, in the summary",
        Duration::from_secs(30),
        || {
            let out = d.ctl(&["summary"]);
            let md = String::from_utf8_lossy(&out.stdout).into_owned();
            (md.contains(&want) && !md.contains(&not_running)).then_some(md)
        },
    );
    let line = md.lines().find(|l| l.contains(&want)).unwrap();
    assert!(line.ends_with(": JobHeldUser"), "{line}");
    let bottlenecks = md
        .lines()
        .skip_while(|l| !l.starts_with("- **Bottlenecks**"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        bottlenecks.contains(&want),
        "listed under Bottlenecks:\n{md}"
    );
}
