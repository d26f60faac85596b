//! Test harness for ugro-monitor: the real daemon binary in a temp dir (optionally as another
//! user), a systemd-style notify socket the test owns, `ugroctl` runs, commands as another user
//! (`setpriv`), and — in the modules — a private sshd, an SMTP server, the nvidia-smi stand-in,
//! a latency proxy, a private single-node Slurm, run trees on disk with waits for the daemon's
//! view of them, and the benches' helpers. Every wait here has a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod chromium;
pub mod docker;
pub mod gpu;
pub mod proxy;
pub mod runs;
pub mod slurm;
pub mod smtp;
pub mod sshd;

pub use runs::{write_epoch, write_file};

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Directory holding the workspace's built binaries (`target/<profile>`), found from the
/// running test executable (`target/<profile>/deps/<test>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test exe has a parent dir");
    if deps.ends_with("deps") {
        deps.parent().expect("deps has a parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of a workspace binary; panics with the fix when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --bins` before the end-to-end tests (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/ugro-testkit sits two levels below the root")
        .to_path_buf()
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
    seen: Vec<String>,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self {
            sock,
            path,
            seen: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receives datagrams until one has a line equal to `line` (or satisfying it as a prefix
    /// when it ends in '='), within `timeout`. Returns that line; everything received is kept.
    pub fn expect(&mut self, line: &str, timeout: Duration) -> String {
        let matches = |l: &str| {
            if line.ends_with('=') {
                l.starts_with(line)
            } else {
                l == line
            }
        };
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        loop {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let lines: Vec<String> = msg.lines().map(str::to_string).collect();
                self.seen.extend(lines.iter().cloned());
                if let Some(l) = lines.into_iter().find(|l| matches(l)) {
                    return l;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "no `{line}` on the notify socket within {timeout:?}; got {:?}",
                self.seen
            );
        }
    }

    /// Everything received so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }
}

/// Waits until the server just spawned into `child` listens on `port`: `Err` when it exits first
/// (with the part of its log at `log_path` written since `log_start`) or after `timeout`.
pub(crate) fn wait_listening(
    child: &mut Option<Child>,
    port: u16,
    name: &str,
    log_path: &Path,
    log_start: u64,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            *child = None;
            let text = std::fs::read_to_string(log_path).unwrap_or_default();
            let tail = text.get(log_start as usize..).unwrap_or(&text);
            return Err(format!("{name} exited with {status}: {}", tail.trim()));
        }
        if sshd::is_listening(port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} not listening on port {port} within {timeout:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A daemon under test: its own temp dir with config, state and socket.
#[derive(Debug)]
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    child: Option<Child>,
    log_path: PathBuf,
}

/// How to start a [`Daemon`].
#[derive(Debug, Default, Clone)]
pub struct DaemonOptions {
    /// Extra TOML appended after the generated `[daemon]` section.
    pub extra_config: String,
    /// `NOTIFY_SOCKET` for the daemon.
    pub notify_socket: Option<PathBuf>,
    /// `WATCHDOG_USEC` for the daemon.
    pub watchdog: Option<Duration>,
    /// Value of `daemon.control_group` (default: "" = none).
    pub control_group: Option<String>,
    /// Further environment for the daemon (e.g. a debug build's failpoint).
    pub env: Vec<(String, String)>,
    /// Run the daemon as this uid/gid (through `setpriv`, no supplementary groups; needs root).
    /// The test gives that user its state dir.
    pub run_as: Option<(u32, u32)>,
    /// A command the daemon runs under, its binary and arguments appended (e.g. `unshare
    /// --pid --fork --mount-proc --kill-child`: the daemon in a PID namespace of its own). The
    /// daemon's pid is then the wrapper's. Not together with `run_as`.
    pub wrapper: Vec<String>,
}

impl Daemon {
    /// Writes a config into a fresh temp dir (nothing started yet).
    pub fn prepare(opts: &DaemonOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ugro-e2e")
            .tempdir()
            .unwrap();
        let state_dir = dir.path().join("state");
        let socket = dir.path().join("ugro.sock");
        let config_path = dir.path().join("ugro.toml");
        let d = Self {
            config_path,
            socket,
            state_dir,
            log_path: dir.path().join("daemon.log"),
            dir,
            child: None,
        };
        d.write_config(&d.config_text(opts));
        d
    }

    /// The generated config for `opts`.
    pub fn config_text(&self, opts: &DaemonOptions) -> String {
        format!(
            "[daemon]\nstate_dir = \"{}\"\nsocket = \"{}\"\ncontrol_group = \"{}\"\n\n{}\n",
            self.state_dir.display(),
            self.socket.display(),
            opts.control_group.as_deref().unwrap_or(""),
            opts.extra_config
        )
    }

    /// Replaces the config file (atomically, as an editor would).
    pub fn write_config(&self, text: &str) {
        let tmp = self.config_path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// Prepares and starts a daemon, waiting until its socket answers.
    pub fn start(opts: &DaemonOptions) -> Self {
        let mut d = Self::prepare(opts);
        d.spawn(opts);
        d.wait_ready();
        d
    }

    /// Starts the daemon process on this dir (again), without waiting.
    pub fn spawn(&mut self, opts: &DaemonOptions) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        assert!(
            opts.wrapper.is_empty() || opts.run_as.is_none(),
            "a wrapper and run_as together are not supported"
        );
        let mut cmd = match (opts.run_as, opts.wrapper.split_first()) {
            (Some((uid, gid)), _) => setpriv(uid, gid, &[], bin("ugro-monitor")),
            (None, Some((first, rest))) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("ugro-monitor"));
                c
            }
            (None, None) => Command::new(bin("ugro-monitor")),
        };
        cmd.arg("--config")
            .arg(&self.config_path)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("UGRO_CONFIG")
            .env("UGRO_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(n) = &opts.notify_socket {
            cmd.env("NOTIFY_SOCKET", n);
        }
        if let Some(w) = opts.watchdog {
            cmd.env("WATCHDOG_USEC", w.as_micros().to_string());
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.spawn().expect("spawn ugro-monitor"));
    }

    /// Waits (≤ 10 s) until `ugroctl status` answers.
    pub fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_wait() {
                panic!(
                    "daemon exited during start-up with {status}:\n{}",
                    self.log()
                );
            }
            if self.ctl(&["status"]).status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "daemon not answering after 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("daemon running").id() as i32)
    }

    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).expect("signal daemon");
    }

    /// The exit status if the daemon has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the daemon to exit within `timeout`; returns its status and the time taken.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        let status = wait_for("the daemon to exit", timeout, || self.try_wait());
        self.child = None;
        (status, start.elapsed())
    }

    /// SIGKILL, as the OOM killer or `kill -9` would; leaves socket and lock files behind.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `ugroctl --socket <ours> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl_as(&self.socket, args, None)
    }

    /// Runs `ugroctl --json ARGS` and parses its output (panics with stderr if it failed).
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl(&full);
        assert!(
            out.status.success(),
            "ugroctl {args:?} failed ({}): {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_slice(&out.stdout).expect("ugroctl --json printed JSON")
    }

    /// Like [`Daemon::ctl_json`] for commands whose exit code 1 means "answered, but something
    /// is not healthy" (`health`, `check`): both 0 and 1 carry JSON.
    pub fn ctl_report(&self, args: &[&str]) -> serde_json::Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = self.ctl(&full);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "ugroctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("ugroctl --json printed JSON")
    }

    /// The events of `kind` (or of a family, `run.`) stored in the last hour, oldest first
    /// (`ugroctl --json events --since 1h --kind KIND`).
    pub fn events_of_kind(&self, kind: &str) -> Vec<serde_json::Value> {
        self.ctl_json(&["events", "--since", "1h", "--kind", kind])["events"]
            .as_array()
            .expect("ugroctl events --json lists events")
            .clone()
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// An API client on the daemon's socket.
    pub fn client(&self) -> ugro_api::Client {
        ugro_api::Client::new(&self.socket).with_timeout(Duration::from_secs(10))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

/// A [`DaemonOptions::env`] entry: `PATH` with `dir` first (where a test puts a stand-in such as
/// the nvidia-smi or docker one), then the test's own `PATH`.
pub fn path_first(dir: &Path) -> (String, String) {
    let path = std::env::var("PATH").unwrap_or_default();
    ("PATH".into(), format!("{}:{path}", dir.display()))
}

/// A [`DaemonOptions::wrapper`] that starts the daemon as PID 1 of a PID namespace of its own
/// (its /proc shows none of the test's processes; util-linux `unshare`, root only). Killing
/// the wrapper kills the daemon (`--kill-child`).
pub fn in_pid_namespace() -> Vec<String> {
    ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
        .map(str::to_owned)
        .to_vec()
}

/// Runs `ugroctl --socket SOCKET ARGS`, optionally as another uid/gid (root only).
pub fn ctl_as(socket: &Path, args: &[&str], ids: Option<(u32, u32)>) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(bin("ugroctl"));
    cmd.arg("--socket").arg(socket).args(args);
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    output_within(&mut cmd, Duration::from_secs(30))
}

/// `PROGRAM` run as `uid`/`gid` with exactly `groups` as its supplementary groups (none when
/// empty), through util-linux `setpriv` (root only): the way to run a case as the user it is
/// about.
pub fn setpriv(
    uid: u32,
    gid: u32,
    groups: &[u32],
    program: impl AsRef<std::ffi::OsStr>,
) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"));
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.arg(format!("--groups={}", list.join(",")));
    }
    cmd.arg(program);
    cmd
}

/// Runs `ugroctl --socket SOCKET ARGS` as `uid`/`gid` with exactly `groups` as supplementary
/// groups ([`setpriv`]; root only): a user who reaches the 0660 socket through its group, or not.
pub fn ctl_with_groups(
    socket: &Path,
    args: &[&str],
    (uid, gid): (u32, u32),
    groups: &[u32],
) -> Output {
    output_within(
        setpriv(uid, gid, groups, bin("ugroctl"))
            .arg("--socket")
            .arg(socket)
            .args(args),
        Duration::from_secs(30),
    )
}

/// Runs `cmd` (no stdin, `UGRO_SOCKET` unset, output captured) and waits for it at most
/// `timeout` ([`wait_output`]).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .env_remove("UGRO_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    wait_output(child, timeout)
}

/// Waits for `child` with a deadline, reading its output meanwhile (so a child writing more
/// than a pipe buffer cannot block), and kills it when the deadline passes.
pub fn wait_output(child: Child, timeout: Duration) -> Output {
    let pid = Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = kill(pid, Signal::SIGKILL);
            let out = rx
                .recv_timeout(Duration::from_secs(5))
                .ok()
                .and_then(Result::ok);
            panic!(
                "process did not finish within {timeout:?}; stderr: {}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            );
        }
    }
}
