//! Proves the testkit's real infrastructure works: private sshd with strict host keys, PATH
//! injection of the fake nvidia-smi, host key rotation, connection counting, the delay proxy
//! and the hanging fake.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ugro_testkit::gpu::{
    EXIT_GPU_LOST, FakeGpu, QUERY_GPU_FIELDS, healthy_gpu_line, install_fake_nvidia_smi,
    lost_gpu_line,
};
use ugro_testkit::proxy::DelayProxy;
use ugro_testkit::sshd::{Sshd, SshdOptions};
use ugro_testkit::{wait_for, wait_output};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(mut cmd: Command) -> Self {
        Self(Some(cmd.spawn().expect("spawn")))
    }
    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    wait_output(child, TIMEOUT)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn run_ok(sshd: &Sshd, cmd: Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "ssh failed ({}): {}\nsshd log:\n{}",
        o.status,
        stderr(&o),
        sshd.log()
    );
    stdout(&o)
}

fn gpu_query() -> String {
    format!("nvidia-smi --query-gpu={QUERY_GPU_FIELDS} --format=csv,noheader,nounits")
}

/// Reads the first stdout line of `proc` within `timeout`.
fn first_line(proc: &mut Proc, timeout: Duration) -> String {
    let out = proc.child().stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout).expect("a line within the timeout")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st != "Z")
    })
}

#[test]
fn sshd_runs_commands_with_strict_host_key_checking() {
    let sshd = Sshd::start();
    let out = run_ok(&sshd, sshd.ssh_command("echo hi"));
    assert_eq!(out, "hi\n");

    let kh = std::fs::read_to_string(sshd.known_hosts()).unwrap();
    assert_eq!(
        kh.trim_end(),
        format!("[127.0.0.1]:{} {}", sshd.port(), sshd.host_public_key())
    );
    assert!(sshd.host_public_key().starts_with("ssh-ed25519 AAAA"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sshd.host_key()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        sshd.log().contains("Accepted publickey for"),
        "{}",
        sshd.log()
    );

    // A known_hosts without this server's key must be refused (never blindly accepted).
    let empty = tempfile::NamedTempFile::new().unwrap();
    // (ssh uses the first value of an option, so the path is replaced in place.)
    let cmd = sshd.ssh_command("echo hi");
    let args: Vec<std::ffi::OsString> = cmd
        .get_args()
        .map(|a| {
            if a.to_string_lossy().starts_with("UserKnownHostsFile=") {
                format!("UserKnownHostsFile={}", empty.path().display()).into()
            } else {
                a.to_owned()
            }
        })
        .collect();
    let mut strict = Command::new("ssh");
    strict.args(&args).stdin(Stdio::null());
    let o = run(strict);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Host key verification failed")
            || stderr(&o).contains("No ED25519 host key is known"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn session_path_starts_with_the_fake_nvidia_smi_dir() {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Healthy { count: 8 });
    let sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });

    let path = run_ok(&sshd, sshd.ssh_command("echo \"$PATH\""));
    assert_eq!(
        path.trim_end(),
        format!(
            "{}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            bin.path().display()
        )
    );
    let which = run_ok(&sshd, sshd.ssh_command("command -v nvidia-smi"));
    assert_eq!(
        which.trim_end(),
        bin.path().join("nvidia-smi").display().to_string()
    );

    let out = run_ok(&sshd, sshd.ssh_command(&gpu_query()));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8, "{out}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, healthy_gpu_line(i as u32, None));
    }

    // Switching the mode while the server runs takes effect for the next session.
    install_fake_nvidia_smi(
        bin.path(),
        FakeGpu::Lost {
            count: 8,
            lost_index: 3,
        },
    );
    let o = run(sshd.ssh_command(&gpu_query()));
    assert_eq!(o.status.code(), Some(EXIT_GPU_LOST), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[3], lost_gpu_line(3));
}

#[test]
fn new_host_key_is_refused_and_same_key_restart_is_accepted() {
    let mut sshd = Sshd::start();
    let port = sshd.port();
    let key = sshd.host_public_key();
    run_ok(&sshd, sshd.ssh_command("true"));

    sshd.restart();
    assert_eq!(sshd.port(), port);
    assert_eq!(sshd.host_public_key(), key);
    run_ok(&sshd, sshd.ssh_command("true"));

    // Another server started with this one's host key presents the same key.
    {
        let twin = Sshd::start_with(SshdOptions {
            host_key: Some(sshd.host_key().to_path_buf()),
            ..Default::default()
        });
        assert_eq!(twin.host_public_key(), key);
        assert_ne!(twin.port(), port);
        run_ok(&twin, twin.ssh_command("true"));
    }

    sshd.restart_with_new_host_key();
    assert_eq!(sshd.port(), port);
    assert_ne!(sshd.host_public_key(), key);
    let o = run(sshd.ssh_command("echo should-not-run"));
    assert!(!o.status.success());
    assert!(!stdout(&o).contains("should-not-run"));
    let err = stderr(&o);
    assert!(
        err.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || err.contains("Host key verification failed"),
        "{err}"
    );
}

#[test]
fn counts_established_connections_and_stop_kills_sessions() {
    let mut sshd = Sshd::start();
    let mut cmd = sshd.ssh_command("echo $$; exec sleep 60");
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut ssh = Proc::spawn(cmd);
    let remote_pid: u32 = first_line(&mut ssh, TIMEOUT).trim().parse().unwrap();
    assert!(alive(remote_pid));
    assert_eq!(sshd.established_connections_from(ssh.id()), 1);
    assert_eq!(
        sshd.established_connections_from(std::process::id()),
        0,
        "the test process itself holds no connection"
    );

    sshd.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", sshd.port())).is_err());
    wait_for("the ssh client to exit", TIMEOUT, || {
        ssh.child().try_wait().unwrap()
    });
    assert!(!alive(remote_pid), "remote session process survived stop()");
    assert_eq!(sshd.established_connections_from(ssh.id()), 0);

    sshd.restart();
    run_ok(&sshd, sshd.ssh_command("true"));
}

#[test]
fn drop_kills_orphaned_session_processes() {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Hang);
    let sshd = Sshd::start_with(SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });
    // The hung nvidia-smi is left behind when the client gives up, as a timed-out check would.
    let mut cmd = sshd.ssh_command("echo $$; exec nvidia-smi -L");
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut ssh = Proc::spawn(cmd);
    let remote_pid: u32 = first_line(&mut ssh, TIMEOUT).trim().parse().unwrap();
    drop(ssh);
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(remote_pid), "hung nvidia-smi should still run");
    drop(sshd);
    assert!(!alive(remote_pid), "hung nvidia-smi survived Sshd::drop");
}

/// Median wall time of `n` runs of `make()`.
fn median_time(sshd: &Sshd, n: usize, make: impl Fn() -> Command) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            run_ok(sshd, make());
            t0.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn delay_proxy_slows_ssh_and_counts_connections() {
    let sshd = Sshd::start();
    let proxy = DelayProxy::start(
        ([127, 0, 0, 1], sshd.port()).into(),
        Duration::from_millis(100),
    );
    let direct = median_time(&sshd, 3, || sshd.ssh_command("true"));
    let via = median_time(&sshd, 3, || sshd.ssh_command_via(proxy.port(), "true"));
    assert!(
        via >= direct + Duration::from_millis(150),
        "direct {direct:?}, via 100 ms proxy {via:?}"
    );
    eprintln!("ssh true: direct {direct:?}, via 100 ms delay proxy {via:?}");

    let mut cmd = sshd.ssh_command_via(proxy.port(), "echo up; exec sleep 60");
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut ssh = Proc::spawn(cmd);
    assert_eq!(first_line(&mut ssh, TIMEOUT), "up\n");
    assert_eq!(proxy.connections(), 1);
    // The client's connection goes to the proxy port, not directly to sshd.
    assert_eq!(sshd.established_connections_from(ssh.id()), 0);
    assert_eq!(
        ugro_testkit::sshd::established_tcp_connections(ssh.id(), proxy.port()),
        1
    );
    drop(ssh);
    wait_for("the proxy to see the connection close", TIMEOUT, || {
        (proxy.connections() == 0).then_some(())
    });
}

#[test]
fn hanging_fake_nvidia_smi_does_not_return() {
    let bin = tempfile::tempdir().unwrap();
    install_fake_nvidia_smi(bin.path(), FakeGpu::Hang);
    let mut cmd = Command::new(bin.path().join("nvidia-smi"));
    cmd.arg(format!("--query-gpu={QUERY_GPU_FIELDS}"))
        .arg("--format=csv,noheader,nounits")
        .stdout(Stdio::null());
    let mut p = Proc::spawn(cmd);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        p.child().try_wait().unwrap().is_none(),
        "Hang fake returned"
    );
    p.child().kill().unwrap();
    let status = p.child().wait().unwrap();
    assert!(!status.success());
}
