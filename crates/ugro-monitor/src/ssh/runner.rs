//! The command runner: one long-lived `perl` on a channel of a node's connection that runs the
//! commands sent on its stdin, several at once, so a command costs the node a fork instead of
//! a login shell. sshd runs every exec through the user's login shell, which on a GPU box reads
//! a `~/.bashrc` with conda or pyenv set-up: a good part of a second of the node's CPU per
//! command. Requests and answers are framed with a command id both ways; a reader task hands
//! each answer's frames to the command waiting for them. A node without perl gets plain execs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{Handle, Msg};
use tokio::sync::{Mutex, mpsc};

use super::{Collect, ExecOutput, Verifier, shell_quote};

/// Commands running on one runner at most; more run on channels of their own.
pub(super) const MAX_IN_FLIGHT: usize = 16;
/// The first line a runner writes.
const HELLO: &[u8] = b"ugro-runner 2\n";
/// Longest frame header the reader accepts (`o 18446744073709551615 65536\n`).
const MAX_HEADER: usize = 40;
/// Largest data frame the runner writes.
const MAX_CHUNK: usize = 65536;

/// The runner (perl, core modules only). Reads requests `ID LEN\n` + LEN bytes of a command and
/// runs each at once with `/bin/sh -c` (stdin `/dev/null`); writes each command's output as it
/// comes as `o ID N\n` + N bytes (stdout) and `e ID N\n` + N bytes (stderr), and after both
/// have ended and the command exited, `x ID CODE\n` (`x ID s` when a signal ended it). It ends
/// at the end of its stdin (the channel closed) or when its stdout is gone; commands still
/// running are ended by their own `timeout`.
const RUNNER_PERL: &str = r#"use strict; use IO::Select; use POSIX ();
binmode STDIN; binmode STDOUT;
my $sel = IO::Select->new(\*STDIN); my (%out, %pid, %open, %st); my $in = "";
sub put { my $d = shift; while (length $d) { my $n = syswrite(STDOUT, $d);
  POSIX::_exit(0) unless defined $n && $n > 0; substr($d, 0, $n) = ""; } }
sub finish { my $id = shift; return if $open{$id} || !defined $st{$id};
  put("x $id " . delete($st{$id}) . "\n"); delete $open{$id}; }
sub start { my ($id, $cmd) = @_; my ($or, $ow, $er, $ew);
  unless (pipe($or, $ow) && pipe($er, $ew)) { put("x $id 126\n"); return; }
  my $p = fork(); unless (defined $p) { put("x $id 126\n"); return; }
  if (!$p) { open(STDIN, "<", "/dev/null"); open(STDOUT, ">&", $ow); open(STDERR, ">&", $ew);
    exec("/bin/sh", "-c", $cmd); POSIX::_exit(127); }
  close $ow; close $ew; $pid{$p} = $id; $open{$id} = 2;
  $out{fileno $or} = [$id, "o", $or]; $out{fileno $er} = [$id, "e", $er];
  $sel->add($or); $sel->add($er); }
put("ugro-runner 2\n");
while (1) {
  for my $fh ($sel->can_read(%pid ? 0.05 : undef)) {
    if (fileno($fh) == 0) {
      my $n = sysread(STDIN, $in, 65536, length $in); POSIX::_exit(0) unless $n;
      while ($in =~ /\A([0-9]+) ([0-9]+)\n/) { my ($id, $len, $h) = ($1, $2, length($&));
        last if length($in) < $h + $len; my $cmd = substr($in, $h, $len);
        substr($in, 0, $h + $len) = ""; start($id, $cmd); }
      POSIX::_exit(1) if $in ne "" && $in !~ /\A[0-9]{0,20}( [0-9]{0,20})?(\n|\z)/;
    } else {
      my $e = $out{fileno $fh}; my $n = sysread($fh, my $b, 65536);
      if (!$n) { $sel->remove($fh); delete $out{fileno $fh}; close $fh;
        $open{$e->[0]}--; finish($e->[0]); next; }
      put("$e->[1] $e->[0] $n\n" . $b);
    }
  }
  while ((my $p = waitpid(-1, POSIX::WNOHANG())) > 0) { my $id = delete $pid{$p};
    next unless defined $id; $st{$id} = ($? & 127) ? "s" : ($? >> 8); finish($id); }
}"#;

/// Why a command on the runner gave no answer (the caller may run it on a channel of its own).
#[derive(Debug, thiserror::Error)]
pub(super) enum RunnerError {
    #[error("runner channel: {0}")]
    Channel(#[from] russh::Error),
    #[error("the runner ended before the command did")]
    Ended,
    #[error("the runner has {MAX_IN_FLIGHT} commands running")]
    Full,
}

/// One frame of a command's answer.
enum Frame {
    Out(Vec<u8>),
    Err(Vec<u8>),
    Exit(Option<u32>),
}

type Waiting = Arc<StdMutex<HashMap<u64, mpsc::UnboundedSender<Frame>>>>;

/// A runner: its channel's writing half, and the commands waiting for their answers (the
/// reader task owns the reading half).
pub(super) struct Runner {
    write: Mutex<russh::ChannelWriteHalf<Msg>>,
    waiting: Waiting,
    next_id: AtomicU64,
    in_flight: AtomicUsize,
    ended: Arc<AtomicBool>,
    /// Frames read so far (of any command).
    frames: Arc<AtomicU64>,
    /// The connection it runs on (the address of its handle).
    pub(super) conn: usize,
}

/// What starting a runner gave.
pub(super) enum Started {
    Ready(Arc<Runner>),
    /// The node cannot run one (no `program`): use plain execs on this connection.
    Unsupported,
}

/// Removes a command from the waiting ones when its caller gives up (deadline) or is done.
struct Pending<'a> {
    runner: &'a Runner,
    id: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.runner
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.runner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Runner {
    /// Opens a channel and starts the runner with `program` (`perl`; tests name another).
    pub(super) async fn start(
        h: &Arc<Handle<Verifier>>,
        program: &str,
    ) -> Result<Started, RunnerError> {
        let ch = h.channel_open_session().await?;
        let cmd = format!("exec {program} -e {}", shell_quote(RUNNER_PERL));
        ch.exec(true, cmd.as_bytes()).await?;
        let (mut read, write) = ch.split();
        let mut buf = Vec::new();
        while buf.len() < HELLO.len() {
            match read.wait().await {
                Some(ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    return Ok(Started::Unsupported);
                }
                Some(_) => {}
            }
        }
        if !buf.starts_with(HELLO) {
            return Ok(Started::Unsupported);
        }
        buf.drain(..HELLO.len());
        let waiting: Waiting = Arc::default();
        let ended = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        tokio::spawn(read_answers(
            read,
            buf,
            Arc::clone(&waiting),
            Arc::clone(&ended),
            Arc::clone(&frames),
        ));
        Ok(Started::Ready(Arc::new(Runner {
            write: Mutex::new(write),
            waiting,
            next_id: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            ended,
            frames,
            conn: Arc::as_ptr(h) as usize,
        })))
    }

    /// Frames read from the runner so far.
    pub(super) fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Whether the runner's channel ended.
    pub(super) fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Runs `command` (a `/bin/sh -c` script) keeping up to `max_output` bytes of each stream.
    /// The caller bounds the wait; giving up forgets the command (its `timeout` ends it).
    pub(super) async fn run(
        &self,
        command: &str,
        max_output: usize,
    ) -> Result<ExecOutput, RunnerError> {
        if self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .is_err()
        {
            return Err(RunnerError::Full);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let _pending = Pending { runner: self, id };
        if self.has_ended() {
            return Err(RunnerError::Ended);
        }
        let mut req = format!("{id} {}\n", command.len()).into_bytes();
        req.extend_from_slice(command.as_bytes());
        // One writer at a time: a request's packets must not interleave with another's.
        self.write.lock().await.data(&req[..]).await?;
        let mut out = Collect::new(max_output);
        loop {
            match rx.recv().await {
                Some(Frame::Out(b)) => out.stdout(&b),
                Some(Frame::Err(b)) => out.stderr(&b),
                Some(Frame::Exit(code)) => return Ok(out.finish(code)),
                None => return Err(RunnerError::Ended),
            }
        }
    }

    /// Closes the channel (the runner ends at the end of its stdin).
    pub(super) async fn close(&self) {
        self.ended.store(true, Ordering::Release);
        let write = self.write.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), write.close()).await;
    }
}

/// What a frame header says: kind, command id, and the length or exit code.
fn parse_header(h: &[u8]) -> Option<(u8, u64, &str)> {
    let h = std::str::from_utf8(h).ok()?;
    let mut f = h.splitn(3, ' ');
    let kind = f.next()?;
    let id = f.next()?.parse().ok()?;
    let arg = f.next()?;
    match kind {
        "o" | "e" | "x" => Some((kind.as_bytes()[0], id, arg)),
        _ => None,
    }
}

/// The reader task: splits the runner's output into frames and hands each to its command.
/// Ends (and with it every waiting command, which sees [`RunnerError::Ended`]) when the
/// channel ends or a frame is malformed.
async fn read_answers(
    mut read: russh::ChannelReadHalf,
    mut buf: Vec<u8>,
    waiting: Waiting,
    ended: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
) {
    'read: loop {
        // Every whole frame in the buffer.
        loop {
            let Some(nl) = buf.iter().take(MAX_HEADER).position(|&b| b == b'\n') else {
                if buf.len() >= MAX_HEADER {
                    tracing::debug!("runner: malformed frame header");
                    break 'read;
                }
                break;
            };
            let Some((kind, id, arg)) = parse_header(&buf[..nl]) else {
                tracing::debug!("runner: malformed frame header");
                break 'read;
            };
            let frame = if kind == b'x' {
                let code = arg.parse().ok();
                buf.drain(..=nl);
                Frame::Exit(code)
            } else {
                let Some(n) = arg.parse::<usize>().ok().filter(|&n| n <= MAX_CHUNK) else {
                    tracing::debug!("runner: malformed frame length");
                    break 'read;
                };
                if buf.len() < nl + 1 + n {
                    break;
                }
                let data = buf[nl + 1..nl + 1 + n].to_vec();
                buf.drain(..nl + 1 + n);
                if kind == b'o' {
                    Frame::Out(data)
                } else {
                    Frame::Err(data)
                }
            };
            frames.fetch_add(1, Ordering::Relaxed);
            let mut w = waiting.lock().unwrap_or_else(|p| p.into_inner());
            let last = matches!(frame, Frame::Exit(_));
            // A command given up on has no entry: its frames are dropped.
            if let Some(tx) = w.get(&id) {
                let _ = tx.send(frame);
            }
            if last {
                w.remove(&id);
            }
        }
        match read.wait().await {
            Some(ChannelMsg::Data { data }) => buf.extend_from_slice(&data),
            // The runner's own complaints (perl's), not a command's.
            Some(ChannelMsg::ExtendedData { data, .. }) => {
                tracing::debug!(
                    "runner stderr: {}",
                    String::from_utf8_lossy(&data).trim_end()
                );
            }
            Some(ChannelMsg::Eof | ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    ended.store(true, Ordering::Release);
    waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_parse_or_are_refused() {
        assert_eq!(parse_header(b"o 7 12"), Some((b'o', 7, "12")));
        assert_eq!(parse_header(b"x 3 s"), Some((b'x', 3, "s")));
        assert_eq!(parse_header(b"q 3 1"), None);
        assert_eq!(parse_header(b"o x 1"), None);
        assert_eq!(parse_header(b"o 1"), None);
    }
}
