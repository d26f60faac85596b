//! A private OpenSSH server (Debian's `/usr/sbin/sshd`) on 127.0.0.1 with its own host key,
//! client key, authorized_keys and known_hosts, all in a temp dir, for end-to-end SSH tests.
//!
//! PATH injection: every session gets `SetEnv PATH=<path_prepend>:… SHLVL=1` from the
//! generated sshd_config. `SHLVL=1` makes the login shell (bash) skip `~/.bashrc`, which bash
//! otherwise sources for commands run by sshd and which on the CI/dev machines prepends
//! pyenv/cargo directories (and costs ~150 ms per session). So an exec'd command sees exactly
//! the configured PATH, with the fake `nvidia-smi` directory first.
//!
//! Every session also carries `UGRO_TESTKIT_SSHD=<temp dir>` in its environment: `stop`,
//! `restart*` and `Drop` kill sshd, its per-connection children and every process started
//! through it (found by that marker even after they were orphaned, e.g. a hung `nvidia-smi`),
//! so a stopped server really looks like a host that went down.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const SSHD: &str = "/usr/sbin/sshd";
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const MARKER_VAR: &str = "UGRO_TESTKIT_SSHD";

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, drop).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// How to start an [`Sshd`].
#[derive(Debug, Default, Clone)]
pub struct SshdOptions {
    /// Port to listen on; `None` picks a free one (retrying if it gets taken meanwhile).
    pub port: Option<u16>,
    /// A directory put first on PATH of every session (e.g. holding a fake `nvidia-smi`).
    pub path_prepend: Option<PathBuf>,
    /// Reuse this private host key (it is copied into the server's temp dir with mode 0600)
    /// instead of generating one.
    pub host_key: Option<PathBuf>,
    /// More `NAME=VALUE` pairs every session gets (values without spaces), e.g. `SLURM_CONF`.
    pub env: Vec<(String, String)>,
}

/// A running private sshd. Dropping it kills sshd and everything started through it.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    path_prepend: Option<PathBuf>,
    env: Vec<(String, String)>,
    host_key: PathBuf,
    host_key_generation: u32,
    client_key: PathBuf,
    known_hosts: PathBuf,
    config: PathBuf,
    log_path: PathBuf,
    user: String,
    child: Option<Child>,
    /// Session processes left running by [`Sshd::kill_listener`], killed on stop.
    orphans: Vec<u32>,
}

impl Sshd {
    /// Starts a server with default options (free port, fresh host key, no PATH prepend).
    pub fn start() -> Self {
        Self::start_with(SshdOptions::default())
    }

    /// Starts a server; panics (with sshd's log) if it is not listening within 10 s.
    pub fn start_with(opts: SshdOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ugro-sshd")
            .tempdir()
            .expect("create sshd temp dir");
        let d = dir.path().to_path_buf();

        let host_key = d.join("host_ed25519_key.0");
        match &opts.host_key {
            Some(src) => {
                fs::copy(src, &host_key)
                    .unwrap_or_else(|e| panic!("copy host key {} failed: {e}", src.display()));
                fs::set_permissions(&host_key, fs::Permissions::from_mode(0o600)).unwrap();
                let pubkey = derive_public_key(&host_key);
                fs::write(pub_path(&host_key), pubkey + "\n").unwrap();
            }
            None => keygen(&host_key),
        }

        let client_key = d.join("client_ed25519_key");
        keygen(&client_key);
        let client_pub = fs::read_to_string(pub_path(&client_key)).unwrap();
        let authorized_keys = d.join("authorized_keys");
        fs::write(&authorized_keys, client_pub).unwrap();

        let user = current_user();
        let mut s = Self {
            port: 0,
            path_prepend: opts.path_prepend.clone(),
            env: opts.env.clone(),
            host_key,
            host_key_generation: 0,
            client_key,
            known_hosts: d.join("known_hosts"),
            config: d.join("sshd_config"),
            log_path: d.join("sshd.log"),
            user,
            child: None,
            orphans: Vec::new(),
            dir,
        };

        ensure_privsep_dir();
        let mut attempts = 0;
        loop {
            attempts += 1;
            s.port = opts.port.unwrap_or_else(free_port);
            match s.spawn_and_wait() {
                Ok(()) => break,
                Err(e) if opts.port.is_none() && attempts < 5 && e.contains("already in use") => {
                    continue;
                }
                Err(e) => panic!("sshd did not start: {e}\nsshd log:\n{}", s.log()),
            }
        }
        s.write_known_hosts();
        s
    }

    /// The port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as (the current user; root in CI).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Private client key (ed25519, no passphrase) that authorized_keys accepts.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// An OpenSSH known_hosts file with `[127.0.0.1]:PORT` and the host key sshd was *started*
    /// with (not updated by [`Sshd::restart_with_new_host_key`]).
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// The private host key sshd currently uses (mode 0600).
    pub fn host_key(&self) -> &Path {
        &self.host_key
    }

    /// The current host public key, `ssh-ed25519 AAAA…` (no comment).
    pub fn host_public_key(&self) -> String {
        let text = fs::read_to_string(pub_path(&self.host_key)).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A known_hosts line for this server's current host key reached at 127.0.0.1:`port`
    /// (e.g. a [`crate::proxy::DelayProxy`] port in front of it).
    pub fn known_hosts_entry(&self, port: u16) -> String {
        format!("{} {}", host_pattern(port), self.host_public_key())
    }

    /// A `[[nodes]]` entry for the daemon's config: node `name` reached at 127.0.0.1:`port` (this
    /// server's, or a proxy's in front of it) as [`Sshd::user`] with [`Sshd::client_key`],
    /// checking host keys against `known_hosts`; `extra` is appended (e.g. `"gpus = 2\n"`).
    pub fn node_toml_with(&self, name: &str, port: u16, known_hosts: &Path, extra: &str) -> String {
        format!(
            "[[nodes]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"{}\"\nidentity_file = \"{}\"\nknown_hosts = \"{}\"\n{extra}\n",
            self.user(),
            self.client_key().display(),
            known_hosts.display()
        )
    }

    /// [`Sshd::node_toml_with`] on this server's port and its known_hosts.
    pub fn node_toml(&self, name: &str, extra: &str) -> String {
        self.node_toml_with(name, self.port(), self.known_hosts(), extra)
    }

    /// The server's temp dir (config, keys, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the sshd listener is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills sshd, its connections and every process started through it; waits until they
    /// are gone and the port no longer listens (deadline 10 s).
    pub fn stop(&mut self) {
        for pid in std::mem::take(&mut self.orphans) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let listener = child.id();
        let tree = descendants(listener);
        let _ = kill(Pid::from_raw(listener as i32), Signal::SIGKILL);
        for pid in &tree {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("ugro-testkit: sshd (pid {listener}) did not die within 10 s");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Processes started in sessions (possibly orphaned already) carry the marker.
        let marker = self.marker();
        loop {
            let left: Vec<u32> = marked_pids(&marker)
                .into_iter()
                .chain(tree.iter().copied().filter(|p| is_alive(*p)))
                .collect();
            if left.is_empty() && !is_listening(self.port) {
                break;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            if Instant::now() >= deadline {
                eprintln!("ugro-testkit: sshd on port {} not fully stopped", self.port);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills only the listening sshd: sessions already open go on working, new logins are
    /// refused (the port no longer listens) — a crashed or stopped `sshd.service` on a node.
    pub fn kill_listener(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let listener = child.id();
        self.orphans.extend(descendants(listener));
        let _ = kill(Pid::from_raw(listener as i32), Signal::SIGKILL);
        let _ = child.wait();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_listening(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops and starts sshd again on the same port with the same host key.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait()
            .unwrap_or_else(|e| panic!("sshd restart failed: {e}\nsshd log:\n{}", self.log()));
    }

    /// Stops sshd and starts it on the same port with a freshly generated host key. The
    /// known_hosts file is *not* updated: clients with strict checking must now refuse.
    pub fn restart_with_new_host_key(&mut self) {
        self.stop();
        self.host_key_generation += 1;
        self.host_key = self
            .dir
            .path()
            .join(format!("host_ed25519_key.{}", self.host_key_generation));
        keygen(&self.host_key);
        self.spawn_and_wait()
            .unwrap_or_else(|e| panic!("sshd restart failed: {e}\nsshd log:\n{}", self.log()));
    }

    /// sshd's log (stderr, `-e`) so far, across restarts.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// How many ESTABLISHED TCP connections process `pid` holds to this sshd's port.
    pub fn established_connections_from(&self, pid: u32) -> usize {
        established_tcp_connections(pid, self.port)
    }

    /// An OpenSSH client command running `remote_cmd` on this server with strict host key
    /// checking against [`Sshd::known_hosts`] (stdin is /dev/null; override if needed).
    pub fn ssh_command(&self, remote_cmd: &str) -> Command {
        self.ssh_command_via(self.port, remote_cmd)
    }

    /// Like [`Sshd::ssh_command`] but connecting to 127.0.0.1:`port` (e.g. a proxy in front of
    /// this server) while still verifying the host key as `[127.0.0.1]:<sshd port>`.
    pub fn ssh_command_via(&self, port: u16, remote_cmd: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg("none")
            .arg("-i")
            .arg(&self.client_key)
            .arg("-p")
            .arg(port.to_string())
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-o")
            .arg("GlobalKnownHostsFile=/dev/null")
            .arg("-o")
            .arg(format!("HostKeyAlias={}", host_pattern(self.port)))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UpdateHostKeys=no",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{}@127.0.0.1", self.user))
            .arg(remote_cmd)
            .stdin(Stdio::null());
        cmd
    }

    fn marker(&self) -> String {
        format!("{MARKER_VAR}={}", self.dir.path().display())
    }

    fn write_config(&self) {
        let mut path = String::new();
        if let Some(p) = &self.path_prepend {
            path.push_str(&p.display().to_string());
            path.push(':');
        }
        path.push_str("/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin");
        let text = format!(
            "# written by ugro-testkit\n\
             ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {host_key}\n\
             PidFile {pid}\n\
             AuthorizedKeysFile {ak}\n\
             StrictModes no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             AllowTcpForwarding no\n\
             AllowAgentForwarding no\n\
             X11Forwarding no\n\
             PrintMotd no\n\
             UseDNS no\n\
             MaxStartups 200:30:400\n\
             MaxSessions 64\n\
             MaxAuthTries 6\n\
             LoginGraceTime 30\n\
             ClientAliveInterval 0\n\
             Subsystem sftp internal-sftp\n\
             SetEnv PATH={path} SHLVL=1 {marker}{extra}\n",
            port = self.port,
            host_key = self.host_key.display(),
            pid = self.dir.path().join("sshd.pid").display(),
            ak = self.dir.path().join("authorized_keys").display(),
            marker = self.marker(),
            extra = self
                .env
                .iter()
                .map(|(k, v)| format!(" {k}={v}"))
                .collect::<String>(),
        );
        fs::write(&self.config, text).unwrap();
    }

    fn write_known_hosts(&self) {
        let line = self.known_hosts_entry(self.port);
        let tmp = self.known_hosts.with_extension("tmp");
        fs::write(&tmp, line + "\n").unwrap();
        fs::rename(&tmp, &self.known_hosts).unwrap();
    }

    /// Writes the config, spawns sshd and waits until it listens; `Err` has the reason.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        self.write_config();
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let _ = writeln!(log, "--- ugro-testkit: starting sshd on port {}", self.port);
        let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {SSHD}: {e} (apt-get install openssh-server)"))?;
        self.child = Some(child);
        crate::wait_listening(
            &mut self.child,
            self.port,
            "sshd",
            &self.log_path,
            log_start,
            START_TIMEOUT,
        )
        .inspect_err(|_| self.stop())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many ESTABLISHED TCP connections process `pid` holds whose remote port is
/// `remote_port` (socket inodes of /proc/PID/fd matched in /proc/PID/net/tcp{,6}).
pub fn established_tcp_connections(pid: u32, remote_port: u16) -> usize {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: HashSet<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let s = l.to_string_lossy().to_string();
            s.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .collect();
    if inodes.is_empty() {
        return 0;
    }
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(format!("/proc/{pid}/net/{f}")).ok())
        .flat_map(|t| parse_proc_net_tcp(&t))
        .filter(|e| e.state == 0x01 && e.remote_port == remote_port && inodes.contains(&e.inode))
        .count()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpEntry {
    local_port: u16,
    remote_port: u16,
    state: u8,
    inode: u64,
}

fn parse_proc_net_tcp(text: &str) -> Vec<TcpEntry> {
    fn port_of(addr: &str) -> Option<u16> {
        u16::from_str_radix(addr.rsplit(':').next()?, 16).ok()
    }
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            Some(TcpEntry {
                local_port: port_of(f[1])?,
                remote_port: port_of(f[2])?,
                state: u8::from_str_radix(f[3], 16).ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// Whether something in our network namespace listens on TCP `port` on 127.0.0.1 or any.
pub(crate) fn is_listening(port: u16) -> bool {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(format!("/proc/self/net/{f}")).ok())
        .flat_map(|t| parse_proc_net_tcp(&t))
        .any(|e| e.state == 0x0A && e.local_port == port)
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn host_pattern(port: u16) -> String {
    if port == 22 {
        "127.0.0.1".to_string()
    } else {
        format!("[127.0.0.1]:{port}")
    }
}

fn keygen(path: &Path) {
    let _ = fs::remove_file(path);
    let _ = fs::remove_file(pub_path(path));
    let out = crate::wait_output(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ugro-testkit", "-f"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssh-keygen (apt-get install openssh-client)"),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

fn derive_public_key(private: &Path) -> String {
    let out = crate::wait_output(
        Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(private)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ssh-keygen"),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "ssh-keygen -y {} failed: {}",
        private.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn current_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "root".to_string()))
}

/// sshd's privilege separation directory must exist (root-owned, not group/world writable).
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.exists() {
        let _ = fs::create_dir_all(dir);
    }
    if dir.exists() {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
    }
}

fn ppid_map() -> HashMap<u32, Vec<u32>> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return children;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..." — comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    children
}

/// All descendants of `root` (not including it).
fn descendants(root: u32) -> Vec<u32> {
    let map = ppid_map();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(kids) = map.get(&p) {
            for k in kids {
                out.push(*k);
                stack.push(*k);
            }
        }
    }
    out
}

/// Live processes whose initial environment contains `marker` (`VAR=value`).
fn marked_pids(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    let needle = marker.as_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == needle))
                .unwrap_or(false)
        })
        .filter(|pid| is_alive(*pid))
        .collect()
}

/// Exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:A5A6 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1\n   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        let e = parse_proc_net_tcp(text);
        assert_eq!(
            e,
            vec![
                TcpEntry {
                    local_port: 0xA5A6,
                    remote_port: 22,
                    state: 1,
                    inode: 123456
                },
                TcpEntry {
                    local_port: 22,
                    remote_port: 0,
                    state: 0x0A,
                    inode: 777
                },
            ]
        );
    }

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_port(), 0);
    }
}
