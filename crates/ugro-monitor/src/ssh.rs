//! One persistent SSH connection per remote node (russh): strict host-key checking against an
//! OpenSSH known_hosts file, key authentication, keepalive, reconnection with backoff, commands
//! with deadlines (remote `timeout` kills what overruns), and latency measured with SSH-level
//! round trips instead of execs. Never more than one TCP connection per node. Commands run on
//! one long-lived runner per connection ([`runner`]), several at once, so each costs the node a
//! fork, not a login shell.

mod runner;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::Mutex;

use crate::config::RemoteHost;

use runner::{Runner, RunnerError, Started};

/// Most bytes kept from one command's stdout (and, separately, stderr).
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// Deadline for TCP connect + key exchange + authentication.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, thiserror::Error)]
pub enum SshError {
    #[error("cannot connect to {addr}: {message}")]
    Connect { addr: String, message: String },
    #[error(
        "host key of {addr} does not match known_hosts ({known_hosts} line {line}): the host key CHANGED — a reinstalled node or a man in the middle; verify it, then fix that line"
    )]
    HostKeyChanged {
        addr: String,
        known_hosts: PathBuf,
        line: usize,
    },
    #[error(
        "host key of {addr} ({fingerprint}) is not in {known_hosts}: add it (ssh-keyscan) or set accept_new_host_keys = true for this node"
    )]
    HostKeyUnknown {
        addr: String,
        known_hosts: PathBuf,
        fingerprint: String,
    },
    #[error("cannot read known_hosts {known_hosts}: {message}")]
    KnownHosts {
        known_hosts: PathBuf,
        message: String,
    },
    #[error("cannot load identity_file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("authentication as {user} on {addr} refused (key {key})")]
    AuthRejected {
        user: String,
        addr: String,
        key: PathBuf,
    },
    #[error("no answer from {addr} within {deadline:?}")]
    Timeout { addr: String, deadline: Duration },
    #[error(
        "waiting before reconnecting to {addr} ({remaining:?} left of the backoff): last error: {last}"
    )]
    BackingOff {
        addr: String,
        remaining: Duration,
        last: String,
    },
    #[error("SSH session to {addr} failed: {message}")]
    Session { addr: String, message: String },
    #[error(
        "a new SSH login to {addr} fails, so users cannot log in (the daemon's older session no longer proves it): {message}"
    )]
    FreshLogin { addr: String, message: String },
}

impl SshError {
    /// True for the host-key problems that must never be retried silently.
    pub fn is_host_key(&self) -> bool {
        matches!(
            self,
            SshError::HostKeyChanged { .. } | SshError::HostKeyUnknown { .. }
        )
    }
}

/// What a remote command produced.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: String,
    pub stderr: String,
    /// None when the channel closed without an exit status (e.g. killed by a signal).
    pub exit_status: Option<u32>,
    pub truncated: bool,
}

/// Result of a command that may overrun its deadline.
#[derive(Debug, Clone)]
pub enum Exec {
    Done(ExecOutput),
    /// The command did not finish in time; its channel was closed and the remote `timeout`
    /// kills it.
    Hung,
}

/// Verifies the server's host key against known_hosts; remembers why it refused.
struct Verifier {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    accept_new: bool,
    problem: Arc<StdMutex<Option<SshError>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let addr = format!("{}:{}", self.host, self.port);
        let key: &PublicKey = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(_) => {
                self.refuse(SshError::Session {
                    addr,
                    message: "the server offered a host certificate; only plain host keys in known_hosts are supported".into(),
                });
                return Ok(false);
            }
        };
        let known = if self.known_hosts.exists() {
            russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts)
        } else {
            Ok(false)
        };
        match known {
            Ok(true) => Ok(true),
            Ok(false) if self.accept_new => {
                match russh::keys::known_hosts::learn_known_hosts_path(
                    &self.host,
                    self.port,
                    key,
                    &self.known_hosts,
                ) {
                    Ok(()) => {
                        tracing::warn!(host = %addr, fingerprint = %key.fingerprint(HashAlg::Sha256), known_hosts = %self.known_hosts.display(), "recorded a first-seen host key (accept_new_host_keys)");
                        Ok(true)
                    }
                    Err(e) => {
                        self.refuse(SshError::KnownHosts {
                            known_hosts: self.known_hosts.clone(),
                            message: format!("cannot record the new host key: {e}"),
                        });
                        Ok(false)
                    }
                }
            }
            Ok(false) => {
                self.refuse(SshError::HostKeyUnknown {
                    addr,
                    known_hosts: self.known_hosts.clone(),
                    fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                });
                Ok(false)
            }
            Err(russh::keys::Error::KeyChanged { line }) => {
                self.refuse(SshError::HostKeyChanged {
                    addr,
                    known_hosts: self.known_hosts.clone(),
                    line,
                });
                Ok(false)
            }
            Err(e) => {
                self.refuse(SshError::KnownHosts {
                    known_hosts: self.known_hosts.clone(),
                    message: e.to_string(),
                });
                Ok(false)
            }
        }
    }
}

impl Verifier {
    fn refuse(&self, e: SshError) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

enum Conn {
    Down {
        retry_at: Option<Instant>,
        backoff: Duration,
        last: Option<SshError>,
    },
    Up(Arc<Handle<Verifier>>),
}

/// The SSH session of one node, shared by every check of that node.
pub struct NodeSession {
    target: RemoteHost,
    addr: String,
    config: Arc<client::Config>,
    conn: Mutex<Conn>,
    reconnects: AtomicU64,
    connects: AtomicU64,
    /// When the live connection logged in (a full handshake and authentication).
    logged_in_at: StdMutex<Option<Instant>>,
    /// The command runner of the live connection, or the connection found unable to run one.
    runner: Mutex<RunnerState>,
    /// The runner's interpreter (`perl`; tests name a missing one).
    runner_program: String,
    /// Session channels opened (runners started and commands run on a channel of their own).
    channels: AtomicU64,
}

enum RunnerState {
    None,
    Ready(Arc<Runner>),
    /// The connection (its handle's address) whose node cannot run one.
    Unsupported(usize),
}

impl std::fmt::Debug for NodeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSession")
            .field("addr", &self.addr)
            .finish()
    }
}

impl NodeSession {
    pub fn new(target: RemoteHost) -> Self {
        let config = client::Config {
            // Keepalive also detects a dead peer: after 3 unanswered the session ends.
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_max: 3,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        };
        Self {
            addr: format!("{}:{}", target.host, target.port),
            target,
            config: Arc::new(config),
            conn: Mutex::new(Conn::Down {
                retry_at: None,
                backoff: BACKOFF_MIN,
                last: None,
            }),
            reconnects: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            logged_in_at: StdMutex::new(None),
            runner: Mutex::new(RunnerState::None),
            runner_program: "perl".into(),
            channels: AtomicU64::new(0),
        }
    }

    /// This session with `program` as the runner's interpreter (a missing one: plain execs).
    #[cfg(test)]
    fn with_runner_program(mut self, program: &str) -> Self {
        self.runner_program = program.into();
        self
    }

    /// Session channels opened so far: each costs the node a login shell.
    pub fn channels_opened(&self) -> u64 {
        self.channels.load(Ordering::Relaxed)
    }

    /// Closes the runner (the connection is going away or gone).
    async fn drop_runner(&self) {
        let old = std::mem::replace(&mut *self.runner.lock().await, RunnerState::None);
        if let RunnerState::Ready(r) = old {
            r.close().await;
        }
    }

    /// The runner of connection `h`, started when there is none. `Ok(None)`: the node cannot
    /// run one (or it failed to start); `Err(())`: no answer by the deadline.
    async fn runner_of(
        &self,
        h: &Arc<Handle<Verifier>>,
        deadline: Duration,
    ) -> Result<Option<Arc<Runner>>, ()> {
        let conn = Arc::as_ptr(h) as usize;
        // Held while a runner starts, so concurrent commands wait for that one login.
        let Ok(mut state) = tokio::time::timeout(deadline, self.runner.lock()).await else {
            return Err(());
        };
        match &*state {
            RunnerState::Unsupported(c) if *c == conn => return Ok(None),
            RunnerState::Ready(r) if r.conn == conn && !r.has_ended() => {
                return Ok(Some(Arc::clone(r)));
            }
            _ => {}
        }
        if let RunnerState::Ready(old) = std::mem::replace(&mut *state, RunnerState::None) {
            tokio::spawn(async move { old.close().await });
        }
        self.channels.fetch_add(1, Ordering::Relaxed);
        let start = Runner::start(h, &self.runner_program);
        match tokio::time::timeout(deadline, start).await {
            Ok(Ok(Started::Ready(r))) => {
                *state = RunnerState::Ready(Arc::clone(&r));
                Ok(Some(r))
            }
            Ok(Ok(Started::Unsupported)) => {
                tracing::info!(
                    node = %self.addr,
                    "the node cannot start a command runner (no {}); every command runs on a channel of its own, a login shell each",
                    self.runner_program
                );
                *state = RunnerState::Unsupported(conn);
                Ok(None)
            }
            Ok(Err(e)) => {
                tracing::debug!(node = %self.addr, "command runner did not start: {e}");
                Ok(None)
            }
            Err(_) => Err(()),
        }
    }

    /// Runs `command` on the connection's runner. `None`: run it on a channel of its own (the
    /// node has no perl, the runner is full, or it ended before the command did).
    async fn on_runner(
        &self,
        h: &Arc<Handle<Verifier>>,
        command: &str,
        deadline: Duration,
        max_output: usize,
    ) -> Option<Exec> {
        let started = Instant::now();
        let runner = match self.runner_of(h, deadline).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(()) => return Some(Exec::Hung),
        };
        let frames = runner.frames();
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, runner.run(command, max_output)).await {
            Ok(Ok(out)) => Some(Exec::Done(out)),
            Ok(Err(RunnerError::Full)) => None,
            Ok(Err(e)) => {
                tracing::debug!(node = %self.addr, "command runner failed: {e}");
                None
            }
            Err(_) => {
                // Nothing at all from the runner meanwhile: it may be stuck itself; the next
                // command starts a new one.
                if runner.frames() == frames {
                    let mut state = self.runner.lock().await;
                    if matches!(&*state, RunnerState::Ready(r) if Arc::ptr_eq(r, &runner)) {
                        *state = RunnerState::None;
                    }
                    drop(state);
                    tokio::spawn(async move { runner.close().await });
                }
                Some(Exec::Hung)
            }
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Connections opened after the first one (the connection had been lost or refused).
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Connects unless connected. `force` ignores the reconnect backoff (an operator asked for
    /// a check now).
    pub async fn ensure_connected(&self, force: bool) -> Result<(), SshError> {
        self.handle(force).await.map(|_| ())
    }

    /// Like [`NodeSession::ensure_connected`], but when the live connection logged in more
    /// than `max_age` ago it is closed and the node logged in to afresh: a persistent session
    /// outlives its sshd listener, and only a new login shows that users can no longer log in.
    /// Still one connection at a time.
    pub async fn ensure_fresh_login(&self, force: bool, max_age: Duration) -> Result<(), SshError> {
        let stale = self
            .logged_in_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() > max_age);
        if stale {
            let live = match &*self.conn.lock().await {
                Conn::Up(h) => Some(h.clone()),
                Conn::Down { .. } => None,
            };
            if let Some(h) = live {
                tracing::debug!(node = %self.addr, "logging in afresh (the login is older than {max_age:?})");
                self.invalidate(&h).await;
            }
            return self
                .handle(true)
                .await
                .map(|_| ())
                .map_err(|e| SshError::FreshLogin {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                });
        }
        self.ensure_connected(force).await
    }

    /// The live connection, connecting first when there is none.
    async fn handle(&self, force: bool) -> Result<Arc<Handle<Verifier>>, SshError> {
        let mut conn = self.conn.lock().await;
        let (retry_at, backoff, last) = match &*conn {
            Conn::Up(h) if !h.is_closed() => return Ok(h.clone()),
            Conn::Up(_) => {
                tracing::info!(node = %self.addr, "SSH connection lost; reconnecting");
                (None, BACKOFF_MIN, None)
            }
            Conn::Down {
                retry_at,
                backoff,
                last,
            } => (*retry_at, *backoff, last.clone()),
        };
        if !force
            && let (Some(at), Some(last)) = (retry_at, &last)
            && Instant::now() < at
            && !last.is_host_key()
        {
            return Err(SshError::BackingOff {
                addr: self.addr.clone(),
                remaining: at - Instant::now(),
                last: last.to_string(),
            });
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, self.connect()).await {
            Ok(Ok(h)) => {
                if self.connects.fetch_add(1, Ordering::Relaxed) > 0 {
                    self.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                let h = Arc::new(h);
                *conn = Conn::Up(h.clone());
                *self.logged_in_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Ok(h)
            }
            Ok(Err(e)) => {
                *conn = Conn::Down {
                    retry_at: Some(Instant::now() + backoff),
                    backoff: (backoff * 2).min(BACKOFF_MAX),
                    last: Some(e.clone()),
                };
                Err(e)
            }
            Err(_) => {
                let e = SshError::Timeout {
                    addr: self.addr.clone(),
                    deadline: CONNECT_TIMEOUT,
                };
                *conn = Conn::Down {
                    retry_at: Some(Instant::now() + backoff),
                    backoff: (backoff * 2).min(BACKOFF_MAX),
                    last: Some(e.clone()),
                };
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<Handle<Verifier>, SshError> {
        let t = &self.target;
        let key =
            russh::keys::load_secret_key(&t.identity_file, None).map_err(|e| SshError::Key {
                path: t.identity_file.clone(),
                message: e.to_string(),
            })?;
        let problem = Arc::new(StdMutex::new(None));
        let verifier = Verifier {
            host: t.host.clone(),
            port: t.port,
            known_hosts: t.known_hosts.clone(),
            accept_new: t.accept_new_host_keys,
            problem: problem.clone(),
        };
        let connected =
            client::connect(self.config.clone(), (t.host.as_str(), t.port), verifier).await;
        let mut handle = match connected {
            Ok(h) => h,
            Err(e) => {
                let refused = problem.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(refused.unwrap_or_else(|| SshError::Connect {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                }));
            }
        };
        let hash = if key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten()
        } else {
            None
        };
        let auth = handle
            .authenticate_publickey(&t.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| SshError::Session {
                addr: self.addr.clone(),
                message: format!("authentication: {e}"),
            })?;
        if !auth.success() {
            let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            return Err(SshError::AuthRejected {
                user: t.user.clone(),
                addr: self.addr.clone(),
                key: t.identity_file.clone(),
            });
        }
        Ok(handle)
    }

    /// Drops the connection (e.g. before the daemon stops or the node is removed).
    pub async fn disconnect(&self) {
        let mut conn = self.conn.lock().await;
        if let Conn::Up(h) = &*conn {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                h.disconnect(Disconnect::ByApplication, "ugro-monitor stopping", "en"),
            )
            .await;
        }
        *conn = Conn::Down {
            retry_at: None,
            backoff: BACKOFF_MIN,
            last: None,
        };
        drop(conn);
        self.drop_runner().await;
    }

    /// Marks the connection broken so the next call reconnects (after a transport error).
    async fn invalidate(&self, h: &Arc<Handle<Verifier>>) {
        let mut conn = self.conn.lock().await;
        if let Conn::Up(cur) = &*conn
            && Arc::ptr_eq(cur, h)
        {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                h.disconnect(Disconnect::ByApplication, "", "en"),
            )
            .await;
            *conn = Conn::Down {
                retry_at: None,
                backoff: BACKOFF_MIN,
                last: None,
            };
            drop(conn);
            self.drop_runner().await;
        }
    }

    /// Runs `command` on a runner, or on a channel of its own. The remote side runs it under
    /// `timeout -k 1 <deadline>`, so an overrunning probe is killed there too; locally the
    /// deadline closes the runner's or the command's channel and the result is [`Exec::Hung`].
    pub async fn exec(&self, command: &str, deadline: Duration) -> Result<Exec, SshError> {
        self.exec_bounded(command, deadline, MAX_OUTPUT).await
    }

    /// [`exec`](Self::exec) keeping up to `max_output` bytes of each output stream instead of
    /// [`MAX_OUTPUT`] (a remote root's listings and file contents).
    pub async fn exec_bounded(
        &self,
        command: &str,
        deadline: Duration,
        max_output: usize,
    ) -> Result<Exec, SshError> {
        let h = self.handle(false).await?;
        let secs = deadline.as_secs_f64().ceil().max(1.0) as u64;
        // A plain command line needs no extra shell under `timeout` (one fork less per probe).
        let simple = command
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " -_=,./:".contains(c));
        let wrapped = if simple {
            format!("timeout -k 1 {secs} {command}")
        } else {
            format!("timeout -k 1 {secs} sh -c {}", shell_quote(command))
        };
        if let Some(done) = self.on_runner(&h, &wrapped, deadline, max_output).await {
            return Ok(done);
        }
        let run = async {
            self.channels.fetch_add(1, Ordering::Relaxed);
            let mut ch = h.channel_open_session().await?;
            ch.exec(true, wrapped.as_bytes()).await?;
            let mut out = Collect::new(max_output);
            let mut exit_status = None;
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout(&data),
                    ChannelMsg::ExtendedData { data, .. } => out.stderr(&data),
                    ChannelMsg::ExitStatus { exit_status: e } => exit_status = Some(e),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            Ok::<_, russh::Error>(out.finish(exit_status))
        };
        match tokio::time::timeout(deadline, run).await {
            Ok(Ok(out)) => Ok(Exec::Done(out)),
            Ok(Err(e)) => {
                self.invalidate(&h).await;
                Err(SshError::Session {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                })
            }
            // The channel is dropped with the future: russh closes it.
            Err(_) => Ok(Exec::Hung),
        }
    }

    /// Round-trip times of `n` SSH keepalive requests on the open connection.
    pub async fn ping(&self, n: usize, deadline: Duration) -> Result<Vec<Duration>, SshError> {
        let h = self.handle(false).await?;
        let run = async {
            let mut rtts = Vec::with_capacity(n);
            for _ in 0..n {
                let start = Instant::now();
                h.send_ping().await?;
                rtts.push(start.elapsed());
            }
            Ok::<_, russh::Error>(rtts)
        };
        match tokio::time::timeout(deadline, run).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.invalidate(&h).await;
                Err(SshError::Session {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                })
            }
            Err(_) => Err(SshError::Timeout {
                addr: self.addr.clone(),
                deadline,
            }),
        }
    }
}

/// A command's output as it arrives, each stream kept up to a bound (on a channel of its own
/// or on the runner).
struct Collect {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
    max: usize,
}

impl Collect {
    fn new(max: usize) -> Self {
        Collect {
            stdout: Vec::new(),
            stderr: Vec::new(),
            truncated: false,
            max,
        }
    }

    fn stdout(&mut self, data: &[u8]) {
        append(&mut self.stdout, data, &mut self.truncated, self.max);
    }

    fn stderr(&mut self, data: &[u8]) {
        append(&mut self.stderr, data, &mut self.truncated, self.max);
    }

    fn finish(self, exit_status: Option<u32>) -> ExecOutput {
        ExecOutput {
            stdout: String::from_utf8_lossy(&self.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr).into_owned(),
            exit_status,
            truncated: self.truncated,
        }
    }
}

fn append(buf: &mut Vec<u8>, data: &[u8], truncated: &mut bool, max: usize) {
    let room = max.saturating_sub(buf.len());
    if data.len() > room {
        *truncated = true;
    }
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

/// Quotes `s` for a POSIX shell as one word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("echo 'a b'"), r#"'echo '\''a b'\'''"#);
    }

    #[test]
    fn output_is_bounded() {
        let mut buf = Vec::new();
        let mut t = false;
        append(&mut buf, &vec![b'x'; MAX_OUTPUT - 1], &mut t, MAX_OUTPUT);
        assert!(!t);
        append(&mut buf, b"yz", &mut t, MAX_OUTPUT);
        assert!(t);
        assert_eq!(buf.len(), MAX_OUTPUT);
    }

    fn session(sshd: &ugro_testkit::sshd::Sshd) -> NodeSession {
        NodeSession::new(RemoteHost::loopback(
            sshd.port(),
            sshd.user(),
            sshd.client_key(),
            sshd.known_hosts(),
        ))
    }

    fn done(r: Result<Exec, SshError>) -> ExecOutput {
        match r {
            Ok(Exec::Done(out)) => out,
            Ok(Exec::Hung) => panic!("hung"),
            Err(e) => panic!("{e}"),
        }
    }

    const T: Duration = Duration::from_secs(20);

    #[allow(clippy::unwrap_used)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_share_one_runner_instead_of_a_login_shell_each() {
        let sshd = ugro_testkit::sshd::Sshd::start();
        let s = session(&sshd);
        for i in 0..20 {
            let out = done(
                s.exec(&format!("echo {i}; echo err{i} >&2; exit {}", i % 3), T)
                    .await,
            );
            assert_eq!(out.stdout, format!("{i}\n"));
            assert_eq!(out.stderr, format!("err{i}\n"));
            assert_eq!(out.exit_status, Some(i % 3));
        }
        assert_eq!(s.channels_opened(), 1, "one runner, one login shell");
        // Output past the bound is cut and the rest drained: the runner answers the next one.
        let big = done(
            s.exec_bounded("head -c 300000 /dev/zero | tr '\\0' x", T, 100_000)
                .await,
        );
        assert!(big.truncated);
        assert_eq!(big.stdout.len(), 100_000);
        let out = done(s.exec("printf 'a\\nb'; printf '\\001\\n' >&2", T).await);
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("a\nb", "\u{1}\n")
        );
        assert_eq!(s.channels_opened(), 1);

        // Eight at once, on the one runner, running together: each marks itself present and
        // waits until all eight are (one after another, the first would give up: exit 9).
        let dir = tempfile::tempdir().unwrap();
        let d = shell_quote(&dir.path().to_string_lossy());
        let cmds: Vec<String> = (0..8)
            .map(|i| {
                format!(
                    "touch {d}/{i}; n=0; while [ $(ls {d} | wc -l) -lt 8 ]; do \
                     n=$((n+1)); [ $n -gt 300 ] && exit 9; sleep 0.05; done; echo {i}"
                )
            })
            .collect();
        let outs = futures_util::future::join_all(cmds.iter().map(|c| s.exec(c, T))).await;
        for (i, r) in outs.into_iter().enumerate() {
            let out = done(r);
            assert_eq!((out.stdout, out.exit_status), (format!("{i}\n"), Some(0)));
        }
        assert_eq!(s.channels_opened(), 1);

        // A command past its deadline is Hung; the runner, silent meanwhile, is replaced.
        let t0 = Instant::now();
        // (1.5 s here, 2 s for the remote `timeout`: no frame of it before the deadline.)
        let hung = s
            .exec("sleep 30", Duration::from_millis(1500))
            .await
            .unwrap();
        assert!(matches!(hung, Exec::Hung));
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(done(s.exec("echo after", T).await).stdout, "after\n");
        assert_eq!(s.channels_opened(), 2);
        // One that overruns while others answer leaves the runner in place.
        let (slow, quick) = tokio::join!(
            s.exec("sleep 30", Duration::from_secs(2)),
            s.exec("sleep 0.5; echo quick", T)
        );
        assert!(matches!(slow, Ok(Exec::Hung)));
        assert_eq!(done(quick).stdout, "quick\n");
        assert_eq!(done(s.exec("echo still", T).await).stdout, "still\n");
        assert_eq!(s.channels_opened(), 2);

        // After the connection is dropped, a runner starts afresh on the new one.
        s.disconnect().await;
        let before = s.channels_opened();
        assert_eq!(done(s.exec("echo again", T).await).stdout, "again\n");
        assert_eq!(
            done(s.exec("echo and again", T).await).stdout,
            "and again\n"
        );
        assert_eq!(s.channels_opened(), before + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_that_cannot_start_a_runner_gets_a_channel_per_command() {
        let sshd = ugro_testkit::sshd::Sshd::start();
        let s = session(&sshd).with_runner_program("no-such-interpreter");
        for i in 0..3 {
            let out = done(s.exec(&format!("echo {i}; exit 2"), T).await);
            assert_eq!((out.stdout, out.exit_status), (format!("{i}\n"), Some(2)));
        }
        assert_eq!(
            s.channels_opened(),
            1 + 3,
            "one try at a runner, then a channel each"
        );
    }
}
