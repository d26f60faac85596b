//! A private single-node Slurm (Debian's `slurm-wlm` and `munge`) in a temp dir: `munged` with
//! its own key and socket, `slurm.conf` naming this machine (its real CPUs and memory, from
//! `slurmd -C`) as the one node, `slurmctld -D` and `slurmd -D` on free ports, state, spool,
//! pid files and logs all in the temp dir. Every client command gets `SLURM_CONF` pointing at
//! it, so instances running in parallel never see each other.
//!
//! Dropping a [`Slurm`] cancels its jobs and kills the daemons, the job step daemons and the
//! jobs' processes (found by `SLURM_CONF=<ours>` in their environment or a working directory
//! inside the temp dir, since `slurmstepd` leaves slurmd's process tree).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::sshd::free_port;

/// How long the daemons get to come up (the node registered and idle).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one client command (`sinfo`, `sbatch`, `scontrol`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long everything gets to die on drop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const MARKER_VAR: &str = "UGRO_TESTKIT_SLURM";

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// Whether the Slurm and munge daemons are installed (`scripts/test.sh` installs them).
pub fn available() -> bool {
    [
        "/usr/sbin/slurmctld",
        "/usr/sbin/slurmd",
        "/usr/sbin/munged",
    ]
    .iter()
    .all(|p| Path::new(p).exists())
}

/// A running private Slurm cluster of one node (this machine).
#[derive(Debug)]
pub struct Slurm {
    dir: tempfile::TempDir,
    conf: PathBuf,
    node: String,
    cluster: String,
    munged: Option<Child>,
    slurmctld: Option<Child>,
    slurmd: Option<Child>,
}

impl Slurm {
    /// Starts munged, slurmctld and slurmd; panics with their logs when the node is not idle
    /// within 60 s. Retries with other ports when one was taken meanwhile.
    pub fn start() -> Self {
        assert!(
            available(),
            "slurm-wlm and munge are not installed (scripts/test.sh installs them)"
        );
        let dir = tempfile::Builder::new()
            .prefix("ugro-slurm")
            .tempdir()
            .expect("create slurm temp dir");
        let d = dir.path().to_path_buf();
        // Jobs run as the submitting user and the munge socket must be reachable by clients.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        for sub in ["munge", "state", "spool", "log", "jobs"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::set_permissions(d.join("munge"), fs::Permissions::from_mode(0o755)).unwrap();
        let key = d.join("munge/munge.key");
        let mut bytes = [0u8; 1024];
        fill_random(&mut bytes);
        fs::write(&key, bytes).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();

        let node = fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("read /proc/sys/kernel/hostname")
            .trim()
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string();
        let cluster = format!(
            "ugro{}x{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        );
        let mut s = Self {
            conf: d.join("slurm.conf"),
            node,
            cluster,
            munged: None,
            slurmctld: None,
            slurmd: None,
            dir,
        };
        s.start_munged();
        let hardware = s.node_hardware();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (ctld_port, d_port) = (free_port(), free_port());
            s.write_conf(&hardware, ctld_port, d_port);
            match s.start_slurm(ctld_port, d_port) {
                Ok(()) => break,
                Err(e) if attempts < 4 && e.contains("in use") => {
                    s.kill_daemons();
                    continue;
                }
                Err(e) => panic!("slurm did not start: {e}\n{}", s.logs()),
            }
        }
        s
    }

    /// Path of the generated `slurm.conf` (the value of `SLURM_CONF` for clients).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// `("SLURM_CONF", path)`: the environment a client (or the daemon under test) needs.
    pub fn env(&self) -> (String, String) {
        ("SLURM_CONF".into(), self.conf.display().to_string())
    }

    /// The node's name in Slurm (this machine's short host name).
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// The cluster's name (unique per instance).
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The temp dir (config, state, spool, logs; `jobs/` is free for test scripts).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client command (`sinfo`, `squeue`, …) with `SLURM_CONF` set to this cluster, run in
    /// `jobs/`.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        // Run from `jobs/`: a job's default working dir and output file land there, never in
        // the test's working directory.
        cmd.env("SLURM_CONF", &self.conf)
            .env_remove("SLURM_JOB_ID")
            .current_dir(self.dir().join("jobs"));
        cmd
    }

    /// Runs a client command with a 30 s deadline; panics (with the daemons' logs) on failure.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.try_run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a client command with a 30 s deadline, whatever its exit status.
    pub fn try_run(&self, program: &str, args: &[&str]) -> Output {
        crate::output_within(self.command(program).args(args), COMMAND_TIMEOUT)
    }

    /// `sbatch --parsable ARGS`: the new job's id.
    pub fn sbatch(&self, args: &[&str]) -> u64 {
        let mut full = vec!["--parsable"];
        full.extend_from_slice(args);
        let out = self.run("sbatch", &full);
        let id = out.trim().split(';').next().unwrap_or_default();
        id.parse()
            .unwrap_or_else(|_| panic!("sbatch printed no job id: {out:?}"))
    }

    /// The job's state (`PENDING`, `RUNNING`, …), or `None` once squeue no longer lists it.
    pub fn job_state(&self, job: u64) -> Option<String> {
        let out = self.try_run(
            "squeue",
            &["--noheader", "--jobs", &job.to_string(), "--format=%T"],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let state = text.trim();
        (out.status.success() && !state.is_empty()).then(|| state.to_string())
    }

    /// Waits (≤ `timeout`) until the job is in `state`.
    pub fn wait_job_state(&self, job: u64, state: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let now = self.job_state(job);
            if now.as_deref() == Some(state) {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "job {job} not {state} within {timeout:?} (now {now:?})\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The node's complete state (`IDLE`, `IDLE+DRAIN`, `MIXED+DRAIN`, …) and its reason
    /// (empty when none), as `scontrol show node` reports them.
    pub fn node_state(&self) -> (String, String) {
        let out = self.run("scontrol", &["--oneliner", "show", "node", &self.node]);
        let state = out
            .split_whitespace()
            .find_map(|t| t.strip_prefix("State="))
            .unwrap_or_default()
            .to_string();
        let reason = out
            .split_once(" Reason=")
            .map(|(_, r)| {
                // "Reason=TEXT [user@time]"
                let r = r.trim_end();
                r.rsplit_once(" [").map_or(r, |(text, _)| text).to_string()
            })
            .unwrap_or_default();
        (state, reason)
    }

    /// Drains the node with `reason`, as an operator would.
    pub fn drain(&self, reason: &str) {
        self.run(
            "scontrol",
            &[
                "update",
                &format!("NodeName={}", self.node),
                "State=DRAIN",
                &format!("Reason={reason}"),
            ],
        );
    }

    /// Resumes the node, as an operator would.
    pub fn resume(&self) {
        self.run(
            "scontrol",
            &["update", &format!("NodeName={}", self.node), "State=RESUME"],
        );
    }

    /// The daemons' logs (for failure messages).
    pub fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["munged.out", "slurmctld.log", "slurmd.log"] {
            let text = fs::read_to_string(self.dir().join("log").join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            all.push_str(&format!(
                "--- {name} (last 40 lines)\n{}\n",
                tail.join("\n")
            ));
        }
        all
    }

    fn marker(&self) -> String {
        format!("{MARKER_VAR}={}", self.dir().display())
    }

    fn daemon(&self, program: &str, args: &[&str], log: &str) -> Child {
        let out = fs::File::create(self.dir().join("log").join(log)).unwrap();
        Command::new(program)
            .args(args)
            .current_dir(self.dir())
            .env("SLURM_CONF", &self.conf)
            .env(MARKER_VAR, self.dir())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
    }

    fn munge_socket(&self) -> PathBuf {
        self.dir().join("munge/munge.sock")
    }

    fn start_munged(&mut self) {
        let d = self.dir().to_path_buf();
        let args = [
            "--foreground".to_string(),
            "--force".to_string(),
            format!("--key-file={}", d.join("munge/munge.key").display()),
            format!("--socket={}", self.munge_socket().display()),
            format!("--pid-file={}", d.join("munge/munged.pid").display()),
            format!("--log-file={}", d.join("log/munged.log").display()),
            format!("--seed-file={}", d.join("munge/munged.seed").display()),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.munged = Some(self.daemon("/usr/sbin/munged", &args, "munged.out"));
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.munge_socket().exists() {
            if let Some(status) = self
                .munged
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("munged exited with {status}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "munged made no socket within {START_TIMEOUT:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// This machine as `slurmd -C` describes it: `NodeName=… CPUs=… RealMemory=…` (the
    /// `UpTime` line dropped).
    fn node_hardware(&self) -> String {
        let out = crate::output_within(Command::new("/usr/sbin/slurmd").arg("-C"), COMMAND_TIMEOUT);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("NodeName="))
            .unwrap_or_else(|| panic!("slurmd -C printed no NodeName line: {text:?}"));
        // Our node name, whatever slurmd -C calls it.
        line.split_whitespace()
            .filter(|t| !t.starts_with("NodeName="))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn write_conf(&self, hardware: &str, ctld_port: u16, d_port: u16) {
        let d = self.dir().display().to_string();
        let node = &self.node;
        let text = format!(
            "# Written by ugro-testkit: a private single-node cluster in {d}.
ClusterName={cluster}
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=300
NodeName={node} NodeHostname={node} NodeAddr=127.0.0.1 {hardware} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
",
            cluster = self.cluster,
            munge = self.munge_socket().display(),
        );
        fs::write(&self.conf, text).unwrap();
    }

    fn start_slurm(&mut self, ctld_port: u16, d_port: u16) -> Result<(), String> {
        let conf = self.conf.display().to_string();
        self.slurmctld =
            Some(self.daemon("/usr/sbin/slurmctld", &["-D", "-f", &conf], "slurmctld.out"));
        self.wait_port(ctld_port, "slurmctld")?;
        self.slurmd = Some(self.daemon(
            "/usr/sbin/slurmd",
            &["-D", "-f", &conf, "-N", &self.node.clone()],
            "slurmd.out",
        ));
        self.wait_port(d_port, "slurmd")?;
        // Registered and schedulable: sinfo shows the node idle.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = self.try_run("sinfo", &["--noheader", "--Node", "--format=%T"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && state == "idle" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "node not idle within {START_TIMEOUT:?} (sinfo: {state:?}, {})",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_port(&mut self, port: u16, name: &str) -> Result<(), String> {
        let child = match name {
            "slurmctld" => &mut self.slurmctld,
            _ => &mut self.slurmd,
        };
        let log = self.dir.path().join("log").join(format!("{name}.log"));
        crate::wait_listening(child, port, name, &log, 0, START_TIMEOUT).map_err(|e| {
            let out = fs::read_to_string(self.dir.path().join("log").join(format!("{name}.out")))
                .unwrap_or_default();
            format!("{e}\n{out}")
        })
    }

    /// Kills slurmd and slurmctld (not munged), waiting for them to exit.
    fn kill_daemons(&mut self) {
        for child in [self.slurmd.take(), self.slurmctld.take()]
            .into_iter()
            .flatten()
        {
            stop_child(child);
        }
    }

    /// Every process that belongs to this cluster: started by us (marker), a job's (our
    /// `SLURM_CONF` in its environment) or a step daemon's (working directory inside ours).
    fn stray_pids(&self) -> Vec<u32> {
        let me = std::process::id();
        let marker = self.marker();
        let conf = format!("SLURM_CONF={}", self.conf.display());
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != me)
            .filter(|pid| {
                let env_match = fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|b| *b == 0)
                        .any(|v| v == marker.as_bytes() || v == conf.as_bytes())
                });
                env_match
                    || fs::read_link(format!("/proc/{pid}/cwd"))
                        .is_ok_and(|cwd| cwd.starts_with(self.dir.path()))
            })
            .collect()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Cancel the jobs first (their step daemons end them), then stop the daemons.
        if self.slurmctld.is_some() {
            let _ = run_quiet(
                self.command("scancel")
                    .arg("--full")
                    .arg(format!("--user={}", nix::unistd::Uid::current().as_raw())),
                Duration::from_secs(5),
            );
        }
        self.kill_daemons();
        if let Some(c) = self.munged.take() {
            stop_child(c);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let left = self.stray_pids();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "ugro-testkit: slurm in {} not fully stopped",
                    self.dir().display()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGKILL and reap (bounded: a killed child exits at once).
fn stop_child(mut child: Child) {
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` to its end or kills it after `timeout`; never panics (for `Drop`).
fn run_quiet(cmd: &mut Command, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn fill_random(buf: &mut [u8]) {
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("read /dev/urandom");
}
