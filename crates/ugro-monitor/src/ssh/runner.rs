//! Command runners: a long-lived `perl` on a channel of a node's connection that runs command
//! after command sent on its stdin, so a command costs the node a fork instead of a login
//! shell. sshd runs every exec through the user's login shell, which on a GPU box reads a
//! `~/.bashrc` with conda or pyenv set-up: a good part of a second of the node's CPU per
//! command. The wire format is length-framed both ways; a node without perl gets plain execs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use russh::ChannelMsg;
use russh::client::{Handle, Msg};

use super::{ExecOutput, Verifier, append, shell_quote};

/// Runners kept per connection at most (busy or idle). A command finding them all busy runs
/// on a channel of its own instead of waiting. sshd's default `MaxSessions` is 10.
pub(super) const MAX_RUNNERS: usize = 6;
/// An idle runner older than this is closed rather than used (it holds a session on the node).
pub(super) const IDLE_LIMIT: Duration = Duration::from_secs(300);
/// The first line a runner writes.
const HELLO: &[u8] = b"ugro-runner 1\n";
/// Longest frame header the daemon accepts (`o 65536\n`).
const MAX_HEADER: usize = 24;

/// The runner (perl, core modules only). Reads `LEN\n` and LEN bytes of a command, runs it with
/// `/bin/sh -c` (stdin `/dev/null`), and writes its output as it comes as `o N\n` + N bytes
/// (stdout) and `e N\n` + N bytes (stderr), then `x CODE\n` (`x s` when a signal ended it).
/// It ends at the end of its stdin (the channel closed) or when its stdout is gone.
const RUNNER_PERL: &str = r#"use strict; use IO::Select; use POSIX ();
binmode STDIN; binmode STDOUT;
sub put { my $d = shift; while (length $d) { my $n = syswrite(STDOUT, $d);
  POSIX::_exit(0) unless defined $n && $n > 0; substr($d, 0, $n) = ""; } }
sub get { my $n = shift; my $b = ""; while (length($b) < $n) {
  my $r = sysread(STDIN, $b, $n - length($b), length($b)); POSIX::_exit(0) unless $r; } $b }
sub line { my $l = ""; while (1) { my $c = get(1); return $l if $c eq "\n"; $l .= $c;
  POSIX::_exit(1) if length($l) > 12; } }
put("ugro-runner 1\n");
while (1) {
  my $len = line(); POSIX::_exit(1) unless $len =~ /^[0-9]+$/;
  my $cmd = get($len);
  pipe(my $or, my $ow) or POSIX::_exit(1); pipe(my $er, my $ew) or POSIX::_exit(1);
  my $pid = fork(); POSIX::_exit(1) unless defined $pid;
  if (!$pid) { open(STDIN, "<", "/dev/null"); open(STDOUT, ">&", $ow); open(STDERR, ">&", $ew);
    exec("/bin/sh", "-c", $cmd); POSIX::_exit(127); }
  close $ow; close $ew;
  my $ofd = fileno($or);
  my $sel = IO::Select->new($or, $er);
  while ($sel->count) { for my $fh ($sel->can_read) {
    my $n = sysread($fh, my $b, 65536);
    if (!$n) { $sel->remove($fh); close $fh; next; }
    put((fileno($fh) == $ofd ? "o" : "e") . " $n\n" . $b); } }
  waitpid($pid, 0);
  put("x " . (($? & 127) ? "s" : ($? >> 8)) . "\n");
}"#;

/// Why a command on a runner did not give an answer (the runner is closed; the caller may run
/// the command on a channel of its own).
#[derive(Debug, thiserror::Error)]
pub(super) enum RunnerError {
    #[error("runner channel: {0}")]
    Channel(#[from] russh::Error),
    #[error("runner ended before the command did")]
    Ended,
    #[error("runner wrote a malformed frame: {0:?}")]
    Frame(String),
}

/// A slot of [`MAX_RUNNERS`], given back when its runner is dropped.
pub(super) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot when fewer than [`MAX_RUNNERS`] are taken.
    pub(super) fn take(live: &Arc<AtomicUsize>) -> Option<Slot> {
        live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_RUNNERS).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(Arc::clone(live)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One runner: its channel and the bytes read past the last frame.
pub(super) struct Runner {
    ch: russh::Channel<Msg>,
    buf: Vec<u8>,
    /// The connection it runs on (the address of its handle).
    pub(super) conn: usize,
    pub(super) idle_since: Instant,
    _slot: Slot,
}

/// What starting a runner gave.
pub(super) enum Started {
    Ready(Runner),
    /// The node cannot run one (no `program`): use plain execs on this connection.
    Unsupported,
}

impl Runner {
    /// Opens a channel and starts the runner with `program` (`perl`; tests name another).
    pub(super) async fn start(
        h: &Arc<Handle<Verifier>>,
        program: &str,
        slot: Slot,
    ) -> Result<Started, RunnerError> {
        let ch = h.channel_open_session().await?;
        let cmd = format!("exec {program} -e {}", shell_quote(RUNNER_PERL));
        ch.exec(true, cmd.as_bytes()).await?;
        let mut r = Runner {
            ch,
            buf: Vec::new(),
            conn: Arc::as_ptr(h) as usize,
            idle_since: Instant::now(),
            _slot: slot,
        };
        while r.buf.len() < HELLO.len() {
            if !r.read_more().await? {
                return Ok(Started::Unsupported);
            }
        }
        if !r.buf.starts_with(HELLO) {
            return Ok(Started::Unsupported);
        }
        r.buf.drain(..HELLO.len());
        Ok(Started::Ready(r))
    }

    /// Appends the next stdout data of the channel to the buffer; false when it ended.
    async fn read_more(&mut self) -> Result<bool, RunnerError> {
        loop {
            match self.ch.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    self.buf.extend_from_slice(&data);
                    return Ok(true);
                }
                // The runner's own complaints (perl's), not a command's.
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    tracing::debug!(
                        "runner stderr: {}",
                        String::from_utf8_lossy(&data).trim_end()
                    );
                }
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => return Ok(false),
                Some(_) => {}
            }
        }
    }

    /// The next frame header (without its `\n`), reading as needed.
    async fn header(&mut self) -> Result<String, RunnerError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let h = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..=i);
                return Ok(h);
            }
            if self.buf.len() > MAX_HEADER {
                return Err(RunnerError::Frame(
                    String::from_utf8_lossy(&self.buf[..MAX_HEADER]).into_owned(),
                ));
            }
            if !self.read_more().await? {
                return Err(RunnerError::Ended);
            }
        }
    }

    /// Runs `command` (a `/bin/sh -c` script) keeping up to `max_output` bytes of each stream.
    pub(super) async fn run(
        &mut self,
        command: &str,
        max_output: usize,
    ) -> Result<ExecOutput, RunnerError> {
        let mut req = format!("{}\n", command.len()).into_bytes();
        req.extend_from_slice(command.as_bytes());
        self.ch.data(&req[..]).await?;
        let mut out = ExecOutput::default();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let h = self.header().await?;
            let (kind, arg) = h
                .split_once(' ')
                .ok_or_else(|| RunnerError::Frame(h.clone()))?;
            match kind {
                "o" | "e" => {
                    let n: usize = arg.parse().map_err(|_| RunnerError::Frame(h.clone()))?;
                    if n > 65536 {
                        return Err(RunnerError::Frame(h));
                    }
                    while self.buf.len() < n {
                        if !self.read_more().await? {
                            return Err(RunnerError::Ended);
                        }
                    }
                    let into = if kind == "o" {
                        &mut stdout
                    } else {
                        &mut stderr
                    };
                    append(into, &self.buf[..n], &mut out.truncated, max_output);
                    self.buf.drain(..n);
                }
                "x" => {
                    out.exit_status = arg.parse().ok();
                    break;
                }
                _ => return Err(RunnerError::Frame(h)),
            }
        }
        out.stdout = String::from_utf8_lossy(&stdout).into_owned();
        out.stderr = String::from_utf8_lossy(&stderr).into_owned();
        self.idle_since = Instant::now();
        Ok(out)
    }

    /// Closes the channel (the runner ends at the end of its stdin; a command still running
    /// is ended by its remote `timeout`).
    pub(super) async fn close(self) {
        let Runner { ch, _slot, .. } = self;
        drop(_slot);
        let _ = tokio::time::timeout(Duration::from_secs(1), ch.close()).await;
    }
}
