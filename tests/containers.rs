//! Processes in containers matched to their runs, end to end. Each "container" is made of the
//! real kernel parts a container runtime uses: a cgroup v2 directory named as Docker's systemd
//! driver names it (`docker-<64 hex>.scope`) with the process moved into it, and a private
//! mount namespace whose root is pivoted to a small rootfs where the run root's host dir is
//! bind-mounted at `/workspace` — so the process's command line and working dir name
//! `/workspace/...` paths, as inside a container. The testkit's `docker` stand-in (first on the
//! daemon's PATH, before this machine's real client) answers `docker inspect` with the mount
//! `/workspace` → the host dir; the daemon must map the paths back to match the runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ugro_testkit::docker::{FakeContainer, FakeDocker, fake_container_id};
use ugro_testkit::runs::{H, age, wait_run, write_file};
use ugro_testkit::{Daemon, DaemonOptions, in_pid_namespace, path_first, wait_for};

/// A trainer run of 10 epochs with 3 done, every file 2 h old: not active, not complete —
/// stuck exactly when a live process belongs to it, else failed.
fn quiet_trainer(run: &Path) {
    write_file(&run.join("config.json"), "{\"epochs\": 10}");
    for i in 0..3u64 {
        let d = run.join(format!("epoch_{i}"));
        for (f, text) in [
            ("training_losses.pt", "\u{1}\u{2}"),
            ("optimizer_buffer.json", "{\"step\": 1}"),
            ("validation_scores.json", "{\"val\": {\"acc\": 0.5}}"),
        ] {
            write_file(&d.join(f), text);
            age(&d.join(f), Duration::from_secs(2 * H + 600 * (2 - i)));
        }
    }
    write_file(&run.join("train_val_2026-11-20.log"), "epoch 2: loss 1.9\n");
    age(
        &run.join("train_val_2026-11-20.log"),
        Duration::from_secs(2 * H),
    );
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on a pure v2 machine,
/// `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(at))
        })
}

/// A cgroup v2 directory `PARENT.slice/docker-ID.scope`, removed (with its parent) on drop
/// once its processes are gone.
struct Scope {
    parent: PathBuf,
    dir: PathBuf,
}

impl Scope {
    fn create(cg2: &Path, id: &str) -> Scope {
        let parent = cg2.join(format!("ugro-e2e-{}.slice", std::process::id()));
        let dir = parent.join(format!("docker-{id}.scope"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", dir.display()));
        Scope { parent, dir }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // The killed process leaves the cgroup once reaped; give it a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir(&self.parent);
    }
}

/// A process "in a container": moved into `scope`, in a private mount namespace whose root is
/// `rootfs` (with the host's /usr, and `host_dir` at /workspace), working in `cwd` and run as
/// `python3 -c <sleep> ARGS…` (one process: the shells `exec` into it).
struct Containerised {
    child: Child,
}

impl Containerised {
    fn start(scope: &Scope, rootfs: &Path, host_dir: &Path, cwd: &str, args: &[&str]) -> Self {
        for d in ["usr", "workspace", "oldroot", "proc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let mut mounts = String::new();
        // /bin, /lib… are links into /usr on a merged-/usr system, directories otherwise.
        for d in ["bin", "sbin", "lib", "lib64"] {
            let host = Path::new("/").join(d);
            match std::fs::read_link(&host) {
                Ok(target) => std::os::unix::fs::symlink(target, rootfs.join(d)).unwrap(),
                Err(_) if host.is_dir() => {
                    std::fs::create_dir_all(rootfs.join(d)).unwrap();
                    mounts.push_str(&format!("mount --rbind /{d} \"$R/{d}\"\n"));
                }
                Err(_) => {}
            }
        }
        let q = |p: &str| format!("'{}'", p.replace('\'', r"'\''"));
        let argv: Vec<String> = args.iter().map(|a| q(a)).collect();
        let script = format!(
            "set -e\nR={root}\nmount --bind \"$R\" \"$R\"\nmount --rbind /usr \"$R/usr\"\n{mounts}\
             mount --bind {host} \"$R/workspace\"\nmount -t proc proc \"$R/proc\"\ncd \"$R\"\n\
             pivot_root . oldroot\numount -l /oldroot\ncd {cwd}\n\
             exec /usr/bin/python3 -c 'import time; time.sleep(600)' {argv}\n",
            root = q(&rootfs.display().to_string()),
            host = q(&host_dir.display().to_string()),
            cwd = q(cwd),
            argv = argv.join(" "),
        );
        let script_path = rootfs.with_extension("sh");
        std::fs::write(&script_path, script).unwrap();
        let child = Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1/cgroup.procs\" && exec unshare --mount --propagation private sh \"$2\"",
                "sh",
            ])
            .arg(&scope.dir)
            .arg(&script_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let c = Containerised { child };
        let pid = c.pid();
        // Ready when the process is python, working in the container's dir.
        let want = PathBuf::from(cwd);
        let mut c = c;
        wait_for(
            "the containerised process to start",
            Duration::from_secs(10),
            || {
                if let Ok(Some(st)) = c.child.try_wait() {
                    let mut err = String::new();
                    std::io::Read::read_to_string(c.child.stderr.as_mut()?, &mut err).ok();
                    panic!("the containerised process ended ({st}): {err}");
                }
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let at = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
                (cmd.starts_with(b"/usr/bin/python3\0") && at == want).then_some(())
            },
        );
        c
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Containerised {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the daemon may take to see a process in its container.
const SEEN: Duration = Duration::from_secs(40);

fn container(id: &str, name: &str, host_root: &Path, pid: u32) -> FakeContainer {
    FakeContainer {
        id: id.into(),
        name: name.into(),
        image: "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime".into(),
        mounts: vec![(host_root.to_path_buf(), "/workspace".into())],
        pid,
    }
}

#[test]
fn a_process_in_a_container_is_matched_to_its_run_through_the_containers_mounts() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test makes cgroups and mount namespaces: it needs root"
    );
    let cg2 = cgroup2_mount().expect("this test needs cgroup v2 mounted (see /proc/self/mounts)");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    for r in ["exp/by_config", "exp/by_cwd", "exp/unknown"] {
        quiet_trainer(&root.join(r));
    }
    let ids: Vec<String> = (1..=3).map(fake_container_id).collect();
    let scopes: Vec<Scope> = ids.iter().map(|id| Scope::create(&cg2, id)).collect();
    // by_config: its command line names the run's config by its container path.
    let mut by_config = Some(Containerised::start(
        &scopes[0],
        &tmp.path().join("rootfs1"),
        &root,
        "/",
        &[
            "train.py",
            "--config",
            "/workspace/exp/by_config/config.json",
        ],
    ));
    // by_cwd: a relative command line; only its working dir names the run.
    let by_cwd = Containerised::start(
        &scopes[1],
        &tmp.path().join("rootfs2"),
        &root,
        "/workspace/exp/by_cwd",
        &["train.py", "--epochs", "10"],
    );
    // unknown: like by_config, but docker does not know its container (no mapping).
    let unknown = Containerised::start(
        &scopes[2],
        &tmp.path().join("rootfs3"),
        &root,
        "/workspace/exp/unknown",
        &["train.py", "--config", "/workspace/exp/unknown/config.json"],
    );
    let config_pid = by_config.as_ref().unwrap().pid();
    // The kernel really has them in a Docker-named cgroup, seeing container paths.
    let cgroup = std::fs::read_to_string(format!("/proc/{config_pid}/cgroup")).unwrap();
    assert!(
        cgroup.contains(&format!("/docker-{}.scope", ids[0])),
        "{cgroup}"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", by_cwd.pid())).unwrap(),
        Path::new("/workspace/exp/by_cwd")
    );

    let bin = tempfile::tempdir().unwrap();
    let docker = FakeDocker::install(bin.path());
    docker.add(&container(&ids[0], "trainer-config", &root, config_pid));
    docker.add(&container(&ids[1], "trainer-cwd", &root, by_cwd.pid()));
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[[roots]]\npath = \"{}\"\nstall_after = \"30m\"\n",
            root.display()
        ),
        env: vec![path_first(docker.dir())],
        ..Default::default()
    });

    let r = wait_run(
        &d,
        "exp/by_config",
        "by_config stuck with its process",
        SEEN,
        |r| r["status"] == "stuck",
    );
    let p = &r["process"];
    assert_eq!(p["pid"], config_pid, "{r}");
    assert_eq!(p["node"], "local", "{r}");
    assert_eq!(p["container"]["id"], ids[0], "{r}");
    assert_eq!(p["container"]["name"], "trainer-config", "{r}");
    assert_eq!(
        p["container"]["image"], "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
        "{r}"
    );
    assert!(
        p["cmd"]
            .as_str()
            .unwrap()
            .contains("/workspace/exp/by_config/config.json"),
        "the command line is shown as the process has it: {r}"
    );
    let r = wait_run(
        &d,
        "exp/by_cwd",
        "by_cwd stuck with its process",
        SEEN,
        |r| r["status"] == "stuck",
    );
    assert_eq!(r["process"]["pid"], by_cwd.pid(), "{r}");
    assert_eq!(r["process"]["container"]["name"], "trainer-cwd", "{r}");
    // Docker does not know the third container: its paths cannot be mapped, so its live
    // process is not the run's, and the quiet run is failed, not stuck.
    let r = wait_run(&d, "exp/unknown", "unknown judged", SEEN, |r| {
        r["status"] != "unknown"
    });
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r["process"].is_null(), "{r}");
    assert!(unknown.pid() > 0);

    // `ugroctl run` shows the container.
    let out = d.ctl(&["run", "exp/by_config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("container"))
        .unwrap_or_else(|| panic!("no container line:\n{text}"));
    assert!(
        line.contains("trainer-config")
            && line.contains("pytorch/pytorch:2.4.0")
            && line.contains(&ids[0][..12]),
        "{line}"
    );

    // The process ends: the run turns failed and loses its process.
    drop(by_config.take());
    let r = wait_run(&d, "exp/by_config", "by_config failed", SEEN, |r| {
        r["status"] == "failed"
    });
    assert!(r["process"].is_null(), "{r}");
    assert_eq!(
        wait_run(&d, "exp/by_cwd", "by_cwd", SEEN, |_| true)["status"],
        "stuck"
    );

    // Every container was inspected once, however many cycles ran (known ones are cached;
    // an unknown one is asked again only after minutes).
    let calls = docker.calls();
    for id in &ids {
        let asked = calls
            .iter()
            .filter(|c| c.starts_with("inspect") && c.contains(id.as_str()))
            .count();
        assert_eq!(asked, 1, "{id} asked {asked} times: {calls:?}");
    }
    drop(unknown);
    drop(by_cwd);
    drop(scopes);
}

#[test]
fn a_process_in_a_container_on_a_node_is_matched_over_its_ssh_session() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test makes cgroups and namespaces: it needs root"
    );
    let cg2 = cgroup2_mount().expect("this test needs cgroup v2 mounted (see /proc/self/mounts)");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("runs");
    quiet_trainer(&root.join("exp/remote"));
    let id = fake_container_id(7);
    let scope = Scope::create(&cg2, &id);
    let proc = Containerised::start(
        &scope,
        &tmp.path().join("rootfs"),
        &root,
        "/workspace/exp/remote",
        &["train.py", "--epochs", "10"],
    );
    // The node's PATH has the docker stand-in; the daemon's does not need one.
    let bin = tempfile::tempdir().unwrap();
    let docker = FakeDocker::install(bin.path());
    docker.add(&container(&id, "trainer-remote", &root, proc.pid()));
    let sshd = ugro_testkit::sshd::Sshd::start_with(ugro_testkit::sshd::SshdOptions {
        path_prepend: Some(bin.path().to_path_buf()),
        ..Default::default()
    });
    // The daemon in a PID namespace of its own (its /proc shows none of the test's processes),
    // so the containerised process is seen only over the node's SSH session.
    let d = Daemon::start(&DaemonOptions {
        extra_config: format!(
            "[health]\ninterval = \"2s\"\nmin_interval = \"1s\"\nmax_interval = \"2s\"\nprobe_timeout = \"5s\"\n\n{}\n[[roots]]\npath = \"{}\"\nstall_after = \"30m\"\n",
            sshd.node_toml("gpu1", "gpus = 0\n"),
            root.display()
        ),
        wrapper: in_pid_namespace(),
        ..Default::default()
    });
    let r = wait_run(&d, "exp/remote", "the run stuck on gpu1", SEEN, |r| {
        r["status"] == "stuck"
    });
    let p = &r["process"];
    assert_eq!(p["node"], "gpu1", "{r}");
    assert_eq!(p["pid"], proc.pid(), "{r}");
    assert_eq!(p["container"]["name"], "trainer-remote", "{r}");
    assert!(
        docker
            .calls()
            .iter()
            .any(|c| c.starts_with("inspect") && c.contains(id.as_str())),
        "docker inspect ran on the node: {:?}",
        docker.calls()
    );
    // The process ends: the node's next listing (every 30 s) makes the run failed.
    drop(proc);
    let r = wait_run(&d, "exp/remote", "the run failed", SEEN, |r| {
        r["status"] == "failed"
    });
    assert!(r["process"].is_null(), "{r}");
    drop(scope);
}
