//! The unit file's hardening, exercised under a real systemd: the daemon started with every
//! `[Service]` property of `systemd/ugro-monitor.service` reaches READY, writes its database in
//! its state directory, and can write nothing else.
//!
//! PID 1 here is not systemd, but Debian's systemd runs as a user manager for root once
//! `/run/systemd/system` exists. So that nothing else on the machine sees that directory, the
//! manager's cgroups or its users, the manager runs in a cgroup of its own (a new child of the
//! cgroup2 root, entered through a cgroup namespace with its own cgroup2 mount) and in a mount
//! namespace of its own, where (for it and every unit it starts):
//!
//! - `/run` is a fresh tmpfs, a mount point as on any systemd machine (were it not, the units'
//!   API file systems would bring a `/run` of their own), holding `/run/systemd/system`,
//!   `/run/lock` (world-writable, as on Debian) and `/run/systemd/inaccessible` (the nodes
//!   systemd masks paths with; PID 1 makes them, a user manager makes them in its runtime dir);
//! - `/run/systemd/ugro-test` is the test's temp dir: the config, the manager's `$HOME` and
//!   `$XDG_*` dirs (so `StateDirectory=`/`RuntimeDirectory=` land there), `passwd`/`group`;
//! - `/run/systemd/ugro-bin` is the directory of the built binaries;
//! - `/srv` is a directory of the temp dir, with a `summaries` dir owned by the daemon's user;
//! - `/etc/passwd` and `/etc/group` are copies with the unit's `User=ugro`/`Group=ugro` added
//!   (when the machine has no such user), so the daemon runs as an unprivileged user as it would.
//!
//! Clients (`systemctl --user`, `systemd-run --user`) run in that namespace through `nsenter`;
//! `ugroctl` talks to the daemon's socket through the temp dir's real path. On drop the manager
//! is stopped (it stops its units), anything left in its cgroup is killed and the cgroups are
//! removed; the namespace goes with its last process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ugro_testkit::{bin, output_within, repo_root, wait_for};

const SYSTEMD: &str = "/lib/systemd/systemd";
/// Where the test's temp dir and the binaries appear inside the manager's namespace.
const NS_BASE: &str = "/run/systemd/ugro-test";
const NS_BIN: &str = "/run/systemd/ugro-bin";
/// The paths the unit's `Exec*=` lines name, replaced by the test's.
const UNIT_BIN: &str = "/usr/local/bin/ugro-monitor";
const UNIT_CONFIG: &str = "/etc/ugro/ugro.toml";
/// The daemon's user, as the unit names it.
const USER: &str = "ugro";
/// Every wait on systemd or the daemon.
const DEADLINE: Duration = Duration::from_secs(30);

/// Run by `sh` with $1 = the temp dir, $2 = the binaries' dir, $3 = the manager's cgroup: joins
/// the cgroup, then sets up the private namespaces and becomes the user manager (same pid).
const MANAGER_SH: &str = r#"set -eu
echo $$ > "$3/cgroup.procs"
exec unshare --mount --cgroup --propagation private sh -eu -c '
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system /run/systemd/ugro-test /run/systemd/ugro-bin /run/lock
chmod 1777 /run/lock
ln -s "$XDG_RUNTIME_DIR/systemd/inaccessible" /run/systemd/inaccessible
mount --bind "$1" /run/systemd/ugro-test
mount --bind "$2" /run/systemd/ugro-bin
mount --bind "$1/srv" /srv
mount --bind "$1/passwd" /etc/passwd
mount --bind "$1/group" /etc/group
exec /lib/systemd/systemd --user
' sh "$1" "$2"
"#;

/// A private systemd user manager (see the module comment).
struct Manager {
    child: Option<Child>,
    pid: i32,
    base: tempfile::TempDir,
    cgroup: PathBuf,
    /// Prefix of every unit name this test starts (for the PrivateTmp= leftovers of a kill).
    unit_prefix: String,
}

impl Manager {
    /// Starts the manager on `base` (already filled) and waits until it runs.
    fn start(base: tempfile::TempDir) -> Self {
        let cgroup = cgroup2_mount().join(format!("{SWEEP_PREFIX}{}", std::process::id()));
        std::fs::create_dir(&cgroup).unwrap_or_else(|e| {
            panic!(
                "cannot create the manager's own cgroup {} ({e}); it is not run in this \
                 machine's cgroups instead, where it would move other processes around",
                cgroup.display()
            )
        });
        let log = std::fs::File::create(base.path().join("manager.log")).unwrap();
        let bin_dir = bin("ugro-monitor").parent().unwrap().to_path_buf();
        // SIGTERM to the manager should the test process die without dropping it (killed at
        // its deadline): the manager then still stops its units.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "SIGTERM", "sh", "-c", MANAGER_SH])
            .arg("sh")
            .arg(base.path())
            .arg(&bin_dir)
            .arg(&cgroup)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", format!("{NS_BASE}/home"))
            .env("XDG_RUNTIME_DIR", format!("{NS_BASE}/rt"))
            .env("XDG_CONFIG_HOME", format!("{NS_BASE}/config"))
            .env("XDG_STATE_HOME", format!("{NS_BASE}/state"))
            .env("XDG_CACHE_HOME", format!("{NS_BASE}/cache"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("spawn sh for the user manager");
        let pid = child.id() as i32;
        let mut m = Manager {
            child: Some(child),
            pid,
            base,
            cgroup,
            unit_prefix: format!("ugro-sandbox-{}-", std::process::id()),
        };
        wait_for("the user manager to run", DEADLINE, || {
            if let Some(st) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the user manager exited ({st}):\n{}", m.log());
            }
            let out = output_within(
                &mut m.ns_cmd("systemctl", &["--user", "is-system-running"]),
                DEADLINE,
            );
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            matches!(state.as_str(), "running" | "degraded").then_some(())
        });
        // PID 1's notify socket is world-writable, so that a service with any User= can send
        // READY=1; a user manager makes its own 0755, for services of its own uid only, which
        // User=ugro could not connect to. Give it PID 1's mode.
        let notify = m.real(&format!("{NS_BASE}/rt/systemd/notify"));
        std::fs::set_permissions(&notify, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", notify.display()));
        m
    }

    /// `PROGRAM ARGS` in the manager's mount namespace, talking to the manager.
    fn ns_cmd(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.pid.to_string())
            .arg("-m")
            .arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("XDG_RUNTIME_DIR", format!("{NS_BASE}/rt"));
        cmd
    }

    /// Runs `systemctl --user ARGS` with a deadline.
    fn systemctl(&self, args: &[&str]) -> Output {
        let mut full = vec!["--user"];
        full.extend_from_slice(args);
        output_within(&mut self.ns_cmd("systemctl", &full), DEADLINE)
    }

    /// `systemctl --user show UNIT -p NAME` of each name, in order.
    fn show(&self, unit: &str, names: &[&str]) -> Vec<String> {
        let out = self.systemctl(&["show", unit, "-p", &names.join(",")]);
        assert!(
            out.status.success(),
            "systemctl show: {}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        names
            .iter()
            .map(|n| {
                stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{n}=")))
                    .unwrap_or_else(|| panic!("no {n}= in `systemctl show`: {stdout}"))
                    .to_owned()
            })
            .collect()
    }

    /// The real path of a path inside the namespace's `NS_BASE`.
    fn real(&self, ns_path: &str) -> PathBuf {
        let rel = ns_path
            .strip_prefix(NS_BASE)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or_else(|| panic!("{ns_path} is not under {NS_BASE}"));
        self.base.path().join(rel)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.base.path().join("manager.log")).unwrap_or_default()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the manager stops its units (the daemon within its TimeoutStopSec=).
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
            if !wait_child(&mut child, Duration::from_secs(20)) {
                eprintln!("the user manager did not stop within 20 s: killing its cgroup");
                kill_cgroup(&self.cgroup);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Whatever it left (the session bus it started, a unit's process) goes too.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cgroup_pids(&self.cgroup).is_empty() && Instant::now() < deadline {
            kill_cgroup(&self.cgroup);
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(e) = remove_cgroup_tree(&self.cgroup) {
            eprintln!("{e}");
        }
        // PrivateTmp= dirs of a unit that was killed rather than stopped (systemd removes them
        // when it stops the unit).
        for tmp in ["/tmp", "/var/tmp"] {
            let Ok(entries) = std::fs::read_dir(tmp) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("systemd-private-")
                    && name.contains(&format!("-{}", self.unit_prefix))
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Names of this test's cgroup and temp dirs: the prefix, then the test process's pid.
const SWEEP_PREFIX: &str = "ugro-unit-sandbox-";

/// Removes what an earlier run left when it was killed before its drop (its manager went with
/// it, by the parent-death signal): its empty cgroups and its temp dirs, when no process of its
/// pid is alive.
fn sweep_killed_runs() {
    let dead = |name: &str| {
        name.strip_prefix(SWEEP_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    let cgroups = cgroup2_mount();
    let tmp = std::env::temp_dir();
    for parent in [cgroups.as_path(), tmp.as_path(), Path::new("/tmp")] {
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !dead(&name) {
                continue;
            }
            let p = e.path();
            if parent == cgroups {
                if cgroup_pids(&p).is_empty() {
                    let _ = remove_cgroup_tree(&p);
                }
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

/// Waits for `child` at most `timeout`; true when it exited.
fn wait_child(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Every pid in the cgroup tree under `dir`.
fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs);
    dirs.iter()
        .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// SIGKILL to every process in the cgroup tree under `dir` (`cgroup.kill` where the kernel has
/// it).
fn kill_cgroup(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for pid in cgroup_pids(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Removes the (empty) cgroup `dir` and those below it, deepest first.
fn remove_cgroup_tree(dir: &Path) -> Result<(), String> {
    let mut dirs = Vec::new();
    collect_dirs(dir, &mut dirs);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in dirs {
        std::fs::remove_dir(&d)
            .map_err(|e| format!("cannot remove cgroup {}: {e}", d.display()))?;
    }
    Ok(())
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// Where this machine mounts cgroup2 (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid
/// layout).
fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            (right.split(' ').next() == Some("cgroup2")).then(|| PathBuf::from(mount_point))
        })
        .expect("no cgroup2 mount in /proc/self/mountinfo: the user manager needs one")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `[Service]` lines of the unit file, as `(key, value)` in order.
fn service_properties(unit: &str) -> Vec<(String, String)> {
    let mut in_service = false;
    let mut props = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continued line in the unit (not followed by this test): {line}"
        );
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a property line in the unit: {line}"));
        props.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    props
}

/// `-p KEY=VALUE` for each property.
fn prop_args(props: &[(String, String)]) -> Vec<String> {
    props
        .iter()
        .flat_map(|(k, v)| ["-p".to_owned(), format!("{k}={v}")])
        .collect()
}

/// The unit user's ids: the machine's own `ugro` user when it has one, else the first ids from
/// 60999 down that neither passwd nor group uses, added to copies of both (the namespace's).
fn daemon_user(base: &Path) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let group = std::fs::read_to_string("/etc/group").unwrap();
    let id_of = |text: &str, name: &str| {
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f.get(2)?.parse::<u32>().ok())?
        })
    };
    let used = |text: &str, id: u32| {
        text.lines()
            .any(|l| l.split(':').nth(2) == Some(id.to_string().as_str()))
    };
    let (mut passwd_out, mut group_out) = (passwd.clone(), group.clone());
    let uid = id_of(&passwd, USER);
    let gid = id_of(&group, USER);
    let ids = match (uid, gid) {
        (Some(u), Some(g)) => (u, g),
        _ => {
            let id = (60000..=60999)
                .rev()
                .find(|&i| !used(&passwd, i) && !used(&group, i))
                .expect("a free uid/gid in 60000..=60999");
            assert!(
                uid.is_none() && gid.is_none(),
                "this machine has a user or a group {USER} but not both"
            );
            passwd_out.push_str(&format!(
                "{USER}:x:{id}:{id}:ugro-monitor (unit_sandbox test):/nonexistent:/usr/sbin/nologin\n"
            ));
            group_out.push_str(&format!("{USER}:x:{id}:\n"));
            (id, id)
        }
    };
    std::fs::write(base.join("passwd"), passwd_out).unwrap();
    std::fs::write(base.join("group"), group_out).unwrap();
    ids
}

/// `nix` chown of a path to the daemon's user.
fn chown(path: &Path, (uid, gid): (u32, u32)) {
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// The probe: a shell run as a unit with the daemon's properties. It prints the state and
/// runtime dirs systemd made, one `write DIR: ok|ERROR` line per directory it tries to create a
/// file in (the unit's own dirs first, then its arguments), and whether `$MARKER`, a file of
/// the machine's /tmp, is visible.
const PROBE_SH: &str = r#"echo "state=$STATE_DIRECTORY"
echo "runtime=$RUNTIME_DIRECTORY"
for d in "$STATE_DIRECTORY" "$RUNTIME_DIRECTORY" /tmp /var/tmp "$@"; do
    if err=$(touch "$d/ugro-probe" 2>&1); then
        echo "write $d: ok"
        rm -f "$d/ugro-probe"
    else
        echo "write $d: $err"
    fi
done
if [ -e "$MARKER" ]; then echo "tmp: shared"; else echo "tmp: private"; fi
"#;

#[test]
fn the_hardened_unit_reaches_ready_and_writes_only_its_state_dir() {
    if !Path::new(SYSTEMD).exists() {
        eprintln!(
            "SKIPPED: {SYSTEMD} is absent (Debian: apt-get install systemd; scripts/test.sh \
             installs it), so the unit's hardening cannot be exercised"
        );
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts a systemd manager in its own namespaces: run it as root"
    );
    let unit_text =
        std::fs::read_to_string(repo_root().join("systemd/ugro-monitor.service")).unwrap();
    let all = service_properties(&unit_text);
    let has = |k: &str| all.iter().any(|(key, _)| key == k);
    for k in ["User", "StateDirectory", "RuntimeDirectory", "ExecStart"] {
        assert!(
            has(k),
            "the unit has no {k}=: this test follows it and needs one"
        );
    }
    let ns_config = format!("{NS_BASE}/etc/ugro.toml");
    let localize = |v: &str| {
        v.replace(UNIT_BIN, &format!("{NS_BIN}/ugro-monitor"))
            .replace(UNIT_CONFIG, &ns_config)
    };
    let exec_start = all
        .iter()
        .find(|(k, _)| k == "ExecStart")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        exec_start.contains(UNIT_BIN) && exec_start.contains(UNIT_CONFIG),
        "ExecStart= no longer names {UNIT_BIN} and {UNIT_CONFIG}: teach this test the new paths \
         ({exec_start})"
    );
    // The sandbox: everything but the commands. The daemon's unit gets the other Exec*= lines
    // too (the config check before start, the reload), pointed at the test's paths.
    let sandbox: Vec<(String, String)> = all
        .iter()
        .filter(|(k, _)| !k.starts_with("Exec"))
        .cloned()
        .collect();
    let daemon_props: Vec<(String, String)> = all
        .iter()
        .filter(|(k, _)| k != "ExecStart")
        .map(|(k, v)| (k.clone(), localize(v)))
        .collect();

    // The temp dir: 0755 so that the daemon's user can reach what it must (as /run and /etc).
    sweep_killed_runs();
    let base = tempfile::Builder::new()
        .prefix(&format!("{SWEEP_PREFIX}{}-", std::process::id()))
        .tempdir()
        .unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [
        "home",
        "config",
        "state",
        "cache",
        "rt",
        "etc",
        "srv",
        "srv/summaries",
        "outside",
    ] {
        std::fs::create_dir(base.path().join(d)).unwrap();
        std::fs::set_permissions(base.path().join(d), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let ids = daemon_user(base.path());
    // Directories the daemon's user owns outside the unit's writable paths: only the sandbox
    // can keep it from writing there. /srv/summaries is where an operator might point
    // summary.dir; NS_BASE/outside is a directory of its own under /run.
    chown(&base.path().join("srv/summaries"), ids);
    chown(&base.path().join("outside"), ids);
    let marker = tempfile::Builder::new()
        .prefix(&format!("{SWEEP_PREFIX}{}-marker-", std::process::id()))
        .tempfile_in("/tmp")
        .unwrap();

    let m = Manager::start(base);

    // 1. The probe, with the daemon's sandbox: which directories can its user write?
    let mut probe_args = vec![
        "--user".to_owned(),
        "--unit".to_owned(),
        format!("{}probe", m.unit_prefix),
        "--wait".to_owned(),
        "--pipe".to_owned(),
        "--quiet".to_owned(),
    ];
    probe_args.extend(prop_args(&sandbox));
    probe_args.extend(
        [
            "-p",
            "Type=exec",
            "-p",
            "Restart=no",
            "-p",
            &format!("Environment=MARKER={}", marker.path().display()),
            "/bin/sh",
            "-c",
            PROBE_SH,
            "sh",
        ]
        .map(str::to_owned),
    );
    // Must be read-only for the daemon: the system, /home, a dir of its own outside its paths,
    // the world-writable dirs of /run and /dev/shm, the parents of its own dirs (systemd 252's
    // user manager puts StateDirectory= in $XDG_CONFIG_HOME, later ones in $XDG_STATE_HOME).
    let read_only: Vec<String> = [
        "/etc",
        "/usr",
        "/var/lib",
        "/home",
        "/srv/summaries",
        &format!("{NS_BASE}/outside"),
        "/run/lock",
        "/dev/shm",
        &format!("{NS_BASE}/config"),
        &format!("{NS_BASE}/rt"),
    ]
    .into_iter()
    .filter(|p| *p != "/home" || Path::new("/home").is_dir())
    .map(str::to_owned)
    .collect();
    probe_args.extend(read_only.iter().cloned());
    let probe_refs: Vec<&str> = probe_args.iter().map(String::as_str).collect();
    let out = output_within(&mut m.ns_cmd("systemd-run", &probe_refs), DEADLINE);
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "the probe unit failed ({}): a property of the unit this systemd cannot apply?\n\
         stdout: {report}\nstderr: {}\nmanager: {}",
        out.status,
        text(&out.stderr),
        m.log()
    );
    let field = |prefix: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in the probe's report:\n{report}"))
            .to_owned()
    };
    let state_dir = field("state=");
    let runtime_dir = field("runtime=");
    assert!(
        state_dir.starts_with(NS_BASE) && runtime_dir.starts_with(NS_BASE),
        "StateDirectory/RuntimeDirectory outside the test's dir:\n{report}"
    );
    for d in [&state_dir, &runtime_dir, "/tmp", "/var/tmp"] {
        assert_eq!(
            field(&format!("write {d}: ")),
            "ok",
            "the unit cannot write {d}:\n{report}"
        );
    }
    for d in &read_only {
        let result = field(&format!("write {d}: "));
        assert!(
            result.ends_with("Read-only file system"),
            "{d} is not read-only for the unit's user (got `{result}`; a permission error is \
             not the sandbox):\n{report}"
        );
    }
    assert_eq!(
        field("tmp: "),
        "private",
        "PrivateTmp=: the unit sees the machine's /tmp"
    );

    // 2. The daemon, as the unit starts it, on a config whose summary dir is not its own.
    let socket_ns = format!("{runtime_dir}/ugro.sock");
    std::fs::write(
        m.real(&ns_config),
        format!(
            "[daemon]\nstate_dir = \"{state_dir}\"\nsocket = \"{socket_ns}\"\n\n\
             [summary]\ndir = \"/srv/summaries\"\n"
        ),
    )
    .unwrap();
    let unit = format!("{}daemon.service", m.unit_prefix);
    let mut args = vec![
        "--user".to_owned(),
        "--unit".to_owned(),
        unit.clone(),
        "--quiet".to_owned(),
    ];
    args.extend(prop_args(&daemon_props));
    // Test-only: the unit logs to the journal, which this manager has not; a file keeps the
    // daemon's log for the failure messages.
    for k in ["StandardOutput", "StandardError"] {
        args.extend(["-p".to_owned(), format!("{k}=append:{NS_BASE}/daemon.log")]);
    }
    args.extend(localize(&exec_start).split_whitespace().map(str::to_owned));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon_log = || std::fs::read_to_string(m.real(&format!("{NS_BASE}/daemon.log")));
    let out = output_within(&mut m.ns_cmd("systemd-run", &refs), DEADLINE);
    let status_of = |m: &Manager| {
        text(
            &m.systemctl(&["status", "--no-pager", "--full", &unit])
                .stdout,
        )
    };
    assert!(
        out.status.success(),
        "systemd-run of the daemon's unit failed ({}): {}\n{}\ndaemon log: {:?}",
        out.status,
        text(&out.stderr),
        status_of(&m),
        daemon_log()
    );

    // 3. READY=1 came over the real notify protocol: active, running, the daemon's status line.
    let shown = wait_for("the unit to be active", DEADLINE, || {
        let v = m.show(
            &unit,
            &["ActiveState", "SubState", "StatusText", "MainPID", "Type"],
        );
        match v[0].as_str() {
            "active" => Some(v),
            "activating" if v[1] == "start" || v[1] == "start-pre" => None,
            _ => panic!(
                "the unit is {}/{}:\n{}\ndaemon log: {:?}",
                v[0],
                v[1],
                status_of(&m),
                daemon_log()
            ),
        }
    });
    assert_eq!(shown[1], "running");
    assert_eq!(shown[4], "notify", "Type= from the unit");
    assert!(
        shown[2].starts_with("Serving on "),
        "StatusText is not the daemon's READY status: {:?}",
        shown[2]
    );
    let main_pid: i32 = shown[3].parse().unwrap();

    // The process is the unprivileged user, without privileges to gain, filtered.
    let proc_status = std::fs::read_to_string(format!("/proc/{main_pid}/status")).unwrap();
    let line = |k: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no {k} in /proc/{main_pid}/status"))
    };
    assert!(
        line("Uid:").iter().all(|u| *u == ids.0.to_string()),
        "not running as {USER} ({}): {:?}",
        ids.0,
        line("Uid:")
    );
    assert_eq!(line("NoNewPrivs:"), ["1"], "NoNewPrivileges=");
    assert_eq!(
        line("Seccomp:"),
        ["2"],
        "SystemCallFilter= (seccomp filter mode)"
    );
    assert_eq!(
        line("CapBnd:"),
        ["0000000000000000"],
        "CapabilityBoundingSet="
    );
    assert_eq!(line("CapEff:"), ["0000000000000000"]);

    // 4. It answers on its socket, and its database is in the state dir, owned by its user.
    let socket = m.real(&socket_ns);
    let ctl = |args: &[&str]| {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let out = ugro_testkit::ctl_as(&socket, &full, None);
        assert!(
            out.status.success(),
            "ugroctl {args:?} failed ({}): {}\ndaemon log: {:?}",
            out.status,
            text(&out.stderr),
            daemon_log()
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let status = ctl(&["status"]);
    assert_eq!(status["pid"], main_pid, "{status}");
    let db_ns = format!("{state_dir}/ugro.db");
    assert_eq!(status["database_path"], db_ns.as_str(), "{status}");
    let db = m.real(&db_ns);
    let head = std::fs::read(&db).unwrap();
    assert!(
        head.starts_with(b"SQLite format 3\0"),
        "{} is not an SQLite database",
        db.display()
    );
    assert_eq!(std::fs::metadata(&db).unwrap().uid(), ids.0);

    // 5. A summary into /srv/summaries: the daemon's user owns it, the sandbox forbids it. The
    // write fails read-only, is reported, and the daemon goes on.
    ctl(&["summary"]);
    let events = ctl(&["events", "--kind", "summary.write_failed"]);
    let failed = events["events"].as_array().unwrap();
    assert!(
        failed.iter().any(|e| {
            let msg = e["message"].as_str().unwrap_or("");
            msg.contains("/srv/summaries") && msg.contains("Read-only file system")
        }),
        "no read-only summary.write_failed event: {events}\ndaemon log: {:?}",
        daemon_log()
    );
    let written: Vec<_> = std::fs::read_dir(m.real(&format!("{NS_BASE}/srv/summaries")))
        .unwrap()
        .collect();
    assert!(written.is_empty(), "files in /srv/summaries: {written:?}");
    let after = m.show(&unit, &["ActiveState", "MainPID", "NRestarts"]);
    assert_eq!(
        after,
        ["active", main_pid.to_string().as_str(), "0"],
        "the daemon did not keep running"
    );
    ctl(&["status"]);

    // The unit's ExecReload= (SIGHUP from inside the sandbox) reloads the config in place.
    let out = m.systemctl(&["reload", &unit]);
    assert!(
        out.status.success(),
        "systemctl reload: {}",
        text(&out.stderr)
    );
    wait_for("config.reloaded after systemctl reload", DEADLINE, || {
        let ev = ctl(&["events", "--kind", "config.reloaded"]);
        (!ev["events"].as_array().unwrap().is_empty()).then_some(())
    });
    assert_eq!(
        m.show(&unit, &["ActiveState", "MainPID"]),
        ["active", main_pid.to_string().as_str()]
    );

    // 6. Nothing the daemon's user owns outside its state and runtime dirs.
    let (state_real, runtime_real) = (m.real(&state_dir), m.real(&runtime_dir));
    let mut strays = Vec::new();
    let mut stack = vec![m.base.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(&state_real) || p.starts_with(&runtime_real) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let prepared = p == m.real(&format!("{NS_BASE}/srv/summaries"))
                || p == m.real(&format!("{NS_BASE}/outside"));
            if meta.uid() == ids.0 && !prepared {
                strays.push(p.clone());
            }
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    assert!(
        strays.is_empty(),
        "written outside the state dir: {strays:?}"
    );

    // 7. A clean stop under systemd: the session is closed in the database it wrote.
    let out = m.systemctl(&["stop", &unit]);
    assert!(
        out.status.success(),
        "systemctl stop: {}",
        text(&out.stderr)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (stopped, write_failed): (Option<i64>, i64) = rt.block_on(async {
        use sqlx::Row;
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .read_only(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let stopped =
            sqlx::query("SELECT stopped_ms FROM daemon_sessions ORDER BY id DESC LIMIT 1")
                .fetch_one(&pool)
                .await
                .unwrap()
                .get(0);
        let n = sqlx::query("SELECT COUNT(*) FROM events WHERE kind = 'summary.write_failed'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        pool.close().await;
        (stopped, n)
    });
    assert!(
        stopped.is_some(),
        "the session was not closed: no clean stop"
    );
    assert!(write_failed >= 1, "the failed write is not in the database");
}
