//! Failure classification: why a run failed, from its log tail (kinds, messages, excerpts).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How much of a log's end the daemon reads to classify a failure.
pub const MAX_LOG_TAIL: usize = 64 * 1024;

/// The longest [`Failure::message`], [`Failure::excerpt`] and [`Failure::error_text`], in chars.
pub const MAX_ERROR_CHARS: usize = 1000;

/// Longest line kept in a failure excerpt, in chars.
const EXCERPT_LINE_CHARS: usize = 300;

/// Why a run failed, from its log tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    CudaOom,
    Nccl,
    NanLoss,
    Traceback,
    Killed,
    NoSpace,
    Preempted,
    MissingFile,
    /// Never returned by [`classify_failure`]; [`failure_from_log`] uses it when nothing matched.
    Unknown,
}

impl FailureKind {
    pub const ALL: [FailureKind; 9] = [
        FailureKind::CudaOom,
        FailureKind::Nccl,
        FailureKind::NanLoss,
        FailureKind::Traceback,
        FailureKind::Killed,
        FailureKind::NoSpace,
        FailureKind::Preempted,
        FailureKind::MissingFile,
        FailureKind::Unknown,
    ];

    /// The name used in JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::CudaOom => "cuda_oom",
            FailureKind::Nccl => "nccl",
            FailureKind::NanLoss => "nan_loss",
            FailureKind::Traceback => "traceback",
            FailureKind::Killed => "killed",
            FailureKind::NoSpace => "no_space",
            FailureKind::Preempted => "preempted",
            FailureKind::MissingFile => "missing_file",
            FailureKind::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<FailureKind> {
        FailureKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A short human label ("CUDA out of memory", "Killed (SIGKILL / OOM killer)", …).
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::CudaOom => "CUDA out of memory",
            FailureKind::Nccl => "NCCL error",
            FailureKind::NanLoss => "NaN/inf loss",
            FailureKind::Traceback => "Python exception",
            FailureKind::Killed => "Killed (SIGKILL / OOM killer)",
            FailureKind::NoSpace => "No space left on device",
            FailureKind::Preempted => "Terminated (SIGTERM / preemption)",
            FailureKind::MissingFile => "Missing file",
            FailureKind::Unknown => "Unknown failure",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// One line, ≤ [`MAX_ERROR_CHARS`] chars, e.g. "CUDA out of memory: Tried to allocate
    /// 2.00 GiB (GPU 0; 79.35 GiB total capacity ...)"; for tracebacks the last exception line.
    pub message: String,
    /// The matched line with a few lines of context, ≤ [`MAX_ERROR_CHARS`] chars.
    pub excerpt: String,
}

impl Failure {
    /// The run's `error`: the message, a blank line and the excerpt, ≤ [`MAX_ERROR_CHARS`] chars
    /// (the excerpt is shortened from its start, the message kept whole).
    pub fn error_text(&self) -> String {
        let head = truncate_chars(&self.message, MAX_ERROR_CHARS);
        let room = MAX_ERROR_CHARS.saturating_sub(head.chars().count() + 2);
        if self.excerpt.is_empty() || room < 20 {
            return head;
        }
        let n = self.excerpt.chars().count();
        let excerpt = if n <= room {
            self.excerpt.clone()
        } else {
            let tail: String = self.excerpt.chars().skip(n - (room - 1)).collect();
            format!("…{tail}")
        };
        format!("{head}\n\n{excerpt}")
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The text of a log's last [`MAX_LOG_TAIL`] bytes: lossily decoded, without the partial first
/// line when the log was cut.
pub fn log_tail_text(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_LOG_TAIL {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let tail = &bytes[bytes.len() - MAX_LOG_TAIL..];
    let tail = match tail.iter().position(|b| *b == b'\n') {
        Some(i) => &tail[i + 1..],
        None => tail,
    };
    String::from_utf8_lossy(tail).into_owned()
}

/// Truncates to at most `max` chars, ending with `…` when cut.
pub(super) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Strips a torchrun per-rank prefix (`[rank0]:`, `[default3]:`) and one following space.
fn strip_rank_prefix(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('[')
        && let Some(end) = rest.find("]:")
        && end > 0
        && end <= 16
        && rest[..end].chars().all(|c| c.is_ascii_alphanumeric())
    {
        let after = &rest[end + 2..];
        return after.strip_prefix(' ').unwrap_or(after);
    }
    line
}

/// Non-blank lines, split on `\n` and `\r` (progress bars), rank prefixes removed.
fn log_lines(tail: &str) -> Vec<&str> {
    tail.split(['\n', '\r'])
        .map(strip_rank_prefix)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

fn excerpt(lines: &[&str], idx: usize, before: usize, after: usize) -> String {
    let start = idx.saturating_sub(before);
    let end = (idx + after).min(lines.len().saturating_sub(1));
    let parts: Vec<String> = lines[start..=end]
        .iter()
        .map(|l| truncate_chars(l.trim_end(), EXCERPT_LINE_CHARS))
        .collect();
    let matched = idx - start;
    let mut first = 0;
    let len = |ps: &[String]| ps.iter().map(|p| p.chars().count() + 1).sum::<usize>();
    while first < matched && len(&parts[first..]) > MAX_ERROR_CHARS {
        first += 1;
    }
    truncate_chars(&parts[first..].join("\n"), MAX_ERROR_CHARS)
}

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
}

/// Whether `lower` mentions an exit code / status / return code in `codes`.
fn has_exit_code(lower: &str, codes: &[i64]) -> bool {
    for key in [
        "exit code",
        "exitcode",
        "exit_code",
        "exit status",
        "returncode",
        "return code",
    ] {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(key) {
            let start = from + pos + key.len();
            let rest = lower[start..].trim_start_matches([' ', '\t', ':', '=']);
            let (neg, digits) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let end = digits
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(digits.len());
            if let Ok(n) = digits[..end].parse::<i64>()
                && codes.contains(&if neg { -n } else { n })
            {
                return true;
            }
            from = start;
        }
    }
    false
}

fn is_cuda_oom(lower: &str) -> bool {
    lower.contains("cuda out of memory") || lower.contains("cuda error: out of memory")
}

fn is_nccl(lower: &str) -> bool {
    lower.contains("watchdog caught collective operation timeout")
        || (lower.contains("nccl")
            && (lower.contains("error")
                || lower.contains("timeout")
                || lower.contains("timed out")))
}

fn is_nan_loss(lower: &str) -> bool {
    let nan_word = words(lower).any(|w| w == "nan");
    (lower.contains("loss") && nan_word)
        || lower.contains("non-finite loss")
        || lower.contains("loss is not finite")
        || lower.contains("loss is inf")
        || lower.contains("infinite loss")
        || lower.contains("nan or inf")
        || lower.contains("inf or nan")
        || lower.contains("returned nan values")
}

fn is_no_space(lower: &str) -> bool {
    lower.contains("no space left on device")
        || lower.contains("errno 28")
        || words(lower).any(|w| w == "enospc")
        || lower.contains("disk quota exceeded")
}

fn is_missing_file(lower: &str) -> bool {
    lower.contains("filenotfounderror") || lower.contains("no such file or directory")
}

fn is_killed(line: &str, lower: &str) -> bool {
    words(line).any(|w| w == "Killed")
        || lower.contains("oom-kill")
        || lower.contains("oom_kill")
        || lower.contains("oom killer")
        || lower.contains("out of memory: killed process")
        || lower.contains("sigkill")
        || has_exit_code(lower, &[137, -9])
}

fn is_preempted(line: &str, lower: &str) -> bool {
    // torchrun sends SIGTERM to the other workers when one fails: not the cause.
    if lower.contains("closing signal sigterm") {
        return false;
    }
    lower.contains("sigterm")
        || lower.contains("preempt")
        || words(line).any(|w| w == "Terminated")
        || lower.contains("due to time limit")
        || has_exit_code(lower, &[143, -15])
}

/// The exception line of a traceback, if `line` is one: starts unindented with a dotted
/// identifier followed by `:` or nothing.
fn exception_type(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t']) {
        return None;
    }
    let head = line.split(':').next().unwrap_or(line).trim_end();
    let ok = !head.is_empty()
        && head
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        && head
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_');
    ok.then_some(head)
}

/// The exception line of every `Traceback (most recent call last):` block, in order.
fn traceback_exceptions(lines: &[&str]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_tb = false;
    for (i, line) in lines.iter().enumerate() {
        if line
            .trim_start()
            .starts_with("Traceback (most recent call last)")
        {
            in_tb = true;
            continue;
        }
        if in_tb && exception_type(line).is_some() {
            out.push(i);
            in_tb = false;
        }
    }
    out
}

/// Classifies a log tail. Most specific wins: CUDA out of memory > NCCL error/timeout > NaN/inf
/// loss > no space left on device > missing file > killed (SIGKILL, OOM killer, exit code
/// 137/-9) > SIGTERM/preemption (also exit code 143/-15, Slurm time limit; torchrun's "closing
/// signal SIGTERM" to sibling workers does not count) > Python traceback (the exception line of
/// the last traceback, skipping torchrun's `ChildFailedError` wrapper when an earlier one
/// exists). Within a kind the last matching line is used, except that for NCCL the first
/// watchdog timeout line (the first observed failure) is preferred. Lines are split on `\n` and
/// `\r`, torchrun `[rankN]:` prefixes removed. `None` when nothing matches.
pub fn classify_failure(log_tail: &str) -> Option<Failure> {
    let lines = log_lines(log_tail);
    let lowers: Vec<String> = lines.iter().map(|l| l.to_lowercase()).collect();
    let last = |pred: &dyn Fn(&str, &str) -> bool| -> Option<usize> {
        (0..lines.len()).rev().find(|&i| pred(lines[i], &lowers[i]))
    };
    let make = |kind: FailureKind, idx: usize, message: String| Failure {
        kind,
        message: truncate_chars(&message, MAX_ERROR_CHARS),
        excerpt: excerpt(&lines, idx, 3, 1),
    };
    let labelled = |kind: FailureKind, idx: usize| {
        make(
            kind,
            idx,
            format!("{}: {}", kind.label(), lines[idx].trim()),
        )
    };

    if let Some(i) = last(&|_, l| is_cuda_oom(l)) {
        let line = lines[i];
        let lower = &lowers[i];
        let phrase_end = ["cuda out of memory", "cuda error: out of memory"]
            .iter()
            .filter_map(|p| lower.find(p).map(|at| at + p.len()))
            .min()
            .unwrap_or(line.len());
        // Lowercasing keeps ASCII byte offsets; fall back to the whole line otherwise.
        let detail = if lower.len() == line.len() && line.is_char_boundary(phrase_end) {
            line[phrase_end..]
                .trim_start_matches(['.', ':', ' '])
                .trim()
        } else {
            line.trim()
        };
        let message = if detail.is_empty() {
            FailureKind::CudaOom.label().to_owned()
        } else {
            format!("{}: {detail}", FailureKind::CudaOom.label())
        };
        return Some(make(FailureKind::CudaOom, i, message));
    }
    let first_watchdog = lowers
        .iter()
        .position(|l| l.contains("watchdog caught collective operation timeout"));
    if let Some(i) = first_watchdog.or_else(|| last(&|_, l| is_nccl(l))) {
        let lower = &lowers[i];
        let label = if lower.contains("timeout")
            || lower.contains("timed out")
            || lower.contains("timing out")
        {
            "NCCL timeout"
        } else {
            "NCCL error"
        };
        return Some(make(
            FailureKind::Nccl,
            i,
            format!("{label}: {}", lines[i].trim()),
        ));
    }
    if let Some(i) = last(&|_, l| is_nan_loss(l)) {
        return Some(labelled(FailureKind::NanLoss, i));
    }
    if let Some(i) = last(&|_, l| is_no_space(l)) {
        return Some(labelled(FailureKind::NoSpace, i));
    }
    if let Some(i) = last(&|_, l| is_missing_file(l)) {
        return Some(labelled(FailureKind::MissingFile, i));
    }
    if let Some(i) = last(&is_killed) {
        return Some(labelled(FailureKind::Killed, i));
    }
    if let Some(i) = last(&is_preempted) {
        return Some(labelled(FailureKind::Preempted, i));
    }
    let exceptions = traceback_exceptions(&lines);
    let is_wrapper =
        |i: &usize| exception_type(lines[*i]).is_some_and(|t| t.ends_with("ChildFailedError"));
    let chosen = exceptions
        .iter()
        .rev()
        .find(|i| !is_wrapper(i))
        .or(exceptions.last())
        .copied();
    chosen.map(|i| Failure {
        kind: FailureKind::Traceback,
        message: truncate_chars(lines[i].trim(), MAX_ERROR_CHARS),
        excerpt: excerpt(&lines, i, 4, 0),
    })
}

/// [`classify_failure`], or a [`FailureKind::Unknown`] failure quoting the last log lines when
/// nothing matched ("log is empty" for an empty tail).
pub fn failure_from_log(log_tail: &str) -> Failure {
    if let Some(f) = classify_failure(log_tail) {
        return f;
    }
    let lines = log_lines(log_tail);
    match lines.last() {
        None => Failure {
            kind: FailureKind::Unknown,
            message: "no recognisable error: the log is empty".to_owned(),
            excerpt: String::new(),
        },
        Some(last) => Failure {
            kind: FailureKind::Unknown,
            message: truncate_chars(
                &format!("no recognisable error; last log line: {}", last.trim()),
                MAX_ERROR_CHARS,
            ),
            excerpt: excerpt(&lines, lines.len() - 1, 4, 0),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUDA_OOM: &str = "\
Epoch 3:  45%|████▌     | 450/1000 [05:12<06:21,  1.44it/s, loss=0.231]\r\
Epoch 3:  45%|████▌     | 451/1000 [05:13<06:20,  1.44it/s, loss=0.229]
Traceback (most recent call last):
  File \"/home/ugro/proj/main.py\", line 212, in <module>
    main()
  File \"/home/ugro/proj/runners/base_trainer.py\", line 341, in run
    self._train_epoch_()
  File \"/home/ugro/proj/runners/base_trainer.py\", line 198, in _train_step_
    outputs = self.model(inputs)
  File \"/opt/conda/lib/python3.10/site-packages/torch/nn/modules/module.py\", line 1501, in _call_impl
    return forward_call(*args, **kwargs)
  File \"/opt/conda/lib/python3.10/site-packages/torch/nn/functional.py\", line 1457, in relu
    result = torch.relu(input)
torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity; 75.12 GiB already allocated; 1.23 GiB free; 76.80 GiB reserved in total by PyTorch) If reserved memory is >> allocated memory try setting max_split_size_mb to avoid fragmentation.  See documentation for Memory Management and PYTORCH_CUDA_ALLOC_CONF
";

    #[test]
    fn classifies_cuda_oom() {
        let f = classify_failure(CUDA_OOM).unwrap();
        assert_eq!(f.kind, FailureKind::CudaOom);
        assert!(
            f.message.starts_with(
                "CUDA out of memory: Tried to allocate 2.00 GiB (GPU 0; 79.35 GiB total capacity"
            ),
            "{}",
            f.message
        );
        assert!(f.excerpt.contains("torch.relu(input)"), "{}", f.excerpt);
        assert!(f.excerpt.contains("torch.cuda.OutOfMemoryError"));
        assert!(f.excerpt.chars().count() <= MAX_ERROR_CHARS);
    }

    #[test]
    fn classifies_new_style_cuda_oom() {
        let log = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 23.65 GiB of which 3.06 MiB is free.\n";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::CudaOom);
        assert!(
            f.message
                .starts_with("CUDA out of memory: Tried to allocate 20.00 MiB. GPU 0")
        );
    }

    const NCCL_TIMEOUT: &str = "\
[rank0]:[E ProcessGroupNCCL.cpp:563] [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48213, OpType=ALLREDUCE, NumelIn=25557032, NumelOut=25557032, Timeout(ms)=1800000) ran for 1800000 milliseconds before timing out.
[rank0]:[E ProcessGroupNCCL.cpp:1537] [PG 0 Rank 0] Timeout at NCCL work: 48213, last enqueued NCCL work: 48213, last completed NCCL work: 48212.
[rank0]:[E ProcessGroupNCCL.cpp:577] [Rank 0] Some NCCL operations have failed or timed out. Due to the asynchronous nature of CUDA kernels, subsequent GPU operations might run on corrupted/incomplete data.
[rank0]:[E ProcessGroupNCCL.cpp:583] [Rank 0] To avoid data inconsistency, we are taking the entire process down.
terminate called after throwing an instance of 'c10::DistBackendError'
  what():  [PG 0 Rank 0] Process group watchdog thread terminated with exception: [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48213, OpType=ALLREDUCE, NumelIn=25557032, NumelOut=25557032, Timeout(ms)=1800000) ran for 1800000 milliseconds before timing out.
E0101 03:00:00.000000 140 torch/distributed/elastic/multiprocessing/api.py:826] failed (exitcode: -6) local_rank: 0 (pid: 4242) of binary: /opt/conda/bin/python
";

    #[test]
    fn classifies_nccl_watchdog_timeout() {
        let f = classify_failure(NCCL_TIMEOUT).unwrap();
        assert_eq!(f.kind, FailureKind::Nccl);
        assert!(
            f.message.starts_with(
                "NCCL timeout: [E ProcessGroupNCCL.cpp:563] [Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=48213, OpType=ALLREDUCE"
            ),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains("ran for 1800000 milliseconds before timing out")
        );
        assert!(
            f.excerpt.starts_with("[E ProcessGroupNCCL.cpp:563]"),
            "{}",
            f.excerpt
        );
    }

    #[test]
    fn classifies_nccl_error() {
        let log = "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.20.5\n";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::Nccl);
        assert!(
            f.message
                .starts_with("NCCL error: torch.distributed.DistBackendError")
        );
        // Plain NCCL chatter is not an error.
        assert_eq!(
            classify_failure("gpu1:4242:4242 [0] NCCL INFO Bootstrap : Using eth0:10.0.0.1<0>\n"),
            None
        );
    }

    #[test]
    fn cuda_oom_beats_nccl() {
        let log = format!("{CUDA_OOM}{NCCL_TIMEOUT}");
        assert_eq!(classify_failure(&log).unwrap().kind, FailureKind::CudaOom);
    }

    #[test]
    fn classifies_nan_loss() {
        let log = "\
Epoch 12 | step 4800 | loss 0.4123 | lr 3.0e-04
Epoch 12 | step 4850 | loss nan | lr 3.0e-04
Loss is nan, stopping training
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::NanLoss);
        assert_eq!(f.message, "NaN/inf loss: Loss is nan, stopping training");
        assert!(f.excerpt.contains("loss nan | lr"));
    }

    const VALUE_ERROR: &str = "\
2025-01-01 03:00:00 INFO best_val_loss = inf
Traceback (most recent call last):
  File \"/home/u/proj/data/loader.py\", line 88, in __getitem__
    sample = self.cache[key]
KeyError: 'img_00042'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/home/u/proj/main.py\", line 212, in <module>
    main()
  File \"/home/u/proj/data/loader.py\", line 91, in __getitem__
    raise ValueError(f\"bad sample shape {shape}, expected (3, 224, 224)\")
ValueError: bad sample shape (1, 224, 224), expected (3, 224, 224)
";

    #[test]
    fn traceback_last_exception_line_wins() {
        let f = classify_failure(VALUE_ERROR).unwrap();
        assert_eq!(f.kind, FailureKind::Traceback);
        assert_eq!(
            f.message,
            "ValueError: bad sample shape (1, 224, 224), expected (3, 224, 224)"
        );
        assert!(f.excerpt.contains("loader.py\", line 91"), "{}", f.excerpt);
        assert!(f.excerpt.ends_with("expected (3, 224, 224)"));
        assert!(!f.excerpt.contains("KeyError"));
    }

    #[test]
    fn torchrun_child_failure_reports_the_child_exception() {
        let log = "\
[rank1]: Traceback (most recent call last):
[rank1]:   File \"/home/u/proj/main.py\", line 10, in <module>
[rank1]:     main()
[rank1]: AssertionError: labels out of range
W0101 03:00:00.000000 1234 torch/distributed/elastic/multiprocessing/api.py:890] Sending process 4243 closing signal SIGTERM
E0101 03:00:01.000000 1234 torch/distributed/elastic/multiprocessing/api.py:862] failed (exitcode: 1) local_rank: 1 (pid: 4244) of binary: /opt/conda/bin/python
Traceback (most recent call last):
  File \"/opt/conda/bin/torchrun\", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError: 
============================================================
main.py FAILED
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::Traceback);
        assert_eq!(f.message, "AssertionError: labels out of range");
    }

    #[test]
    fn classifies_killed() {
        let log = "Epoch 3:  12%|█▏        | 120/1000 [00:40<04:53,  3.00it/s]\rEpoch 3:  12%|█▏        | 121/1000 [00:40<04:53,  3.00it/s]\nKilled\n";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::Killed);
        assert_eq!(f.message, "Killed (SIGKILL / OOM killer): Killed");
        for log in [
            "run.sh: line 12:  4242 Killed                  python main.py --config c.py\n",
            "[12345.678] Out of memory: Killed process 4242 (python) total-vm:98765432kB\n",
            "Process finished with exit code 137\n",
            "  exitcode  : -9 (pid: 4242)\n",
            "subprocess.CalledProcessError: Command '['python', 'main.py']' died with <Signals.SIGKILL: 9>.\n",
        ] {
            assert_eq!(
                classify_failure(log).map(|f| f.kind),
                Some(FailureKind::Killed),
                "{log}"
            );
        }
        // Other exit codes are not kills.
        assert_eq!(
            classify_failure("Process finished with exit code 1370\n"),
            None
        );
    }

    #[test]
    fn classifies_no_space() {
        let log = "\
Traceback (most recent call last):
  File \"/home/u/proj/runners/base_trainer.py\", line 402, in _save_scores_
    json.dump(scores, f)
  File \"/opt/conda/lib/python3.10/json/__init__.py\", line 180, in dump
    fp.write(chunk)
OSError: [Errno 28] No space left on device
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::NoSpace);
        assert_eq!(
            f.message,
            "No space left on device: OSError: [Errno 28] No space left on device"
        );
        assert!(f.excerpt.contains("fp.write(chunk)"));
    }

    #[test]
    fn classifies_missing_file() {
        let log = "\
  File \"/home/u/proj/data/imagenet.py\", line 40, in _load_
    with open(path, 'rb') as f:
FileNotFoundError: [Errno 2] No such file or directory: '/data/imagenet/train/n01440764/n01440764_10026.JPEG'
";
        let f = classify_failure(log).unwrap();
        assert_eq!(f.kind, FailureKind::MissingFile);
        assert!(
            f.message
                .starts_with("Missing file: FileNotFoundError: [Errno 2]")
        );
        assert!(f.message.ends_with("n01440764_10026.JPEG'"));
    }

    #[test]
    fn classifies_sigterm_and_preemption() {
        for log in [
            "Received SIGTERM, saving checkpoint and exiting\n",
            "slurmstepd: error: *** JOB 4242 ON gpu1 CANCELLED AT 2025-01-01T03:00:00 DUE TO PREEMPTION ***\n",
            "Terminated\n",
            "Instance preempted by the cloud provider\n",
            "slurmstepd: error: *** JOB 4242 ON gpu1 CANCELLED AT 2025-01-01T03:00:00 DUE TO TIME LIMIT ***\n",
        ] {
            assert_eq!(
                classify_failure(log).map(|f| f.kind),
                Some(FailureKind::Preempted),
                "{log}"
            );
        }
    }

    #[test]
    fn specific_kinds_beat_each_other_in_order() {
        // NaN beats no-space, no-space beats missing file, missing file beats killed, killed beats
        // SIGTERM, SIGTERM beats a traceback.
        let nan = "loss: nan\n";
        let space = "OSError: [Errno 28] No space left on device\n";
        let missing = "FileNotFoundError: [Errno 2] No such file or directory: 'x'\n";
        let killed = "Killed\n";
        let term = "Received SIGTERM\n";
        let tb = "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nValueError: x\n";
        let cases = [
            (format!("{space}{nan}"), FailureKind::NanLoss),
            (format!("{missing}{space}"), FailureKind::NoSpace),
            (format!("{killed}{missing}"), FailureKind::MissingFile),
            (format!("{term}{killed}"), FailureKind::Killed),
            (format!("{tb}{term}"), FailureKind::Preempted),
        ];
        for (log, kind) in cases {
            assert_eq!(classify_failure(&log).map(|f| f.kind), Some(kind), "{log}");
        }
    }

    #[test]
    fn initial_infinite_best_loss_is_not_a_nan_failure() {
        let log = "best_val_loss = inf\nbest loss: inf\nEpoch 1 done\n";
        assert_eq!(classify_failure(log), None);
    }

    #[test]
    fn clean_log_has_no_failure() {
        assert_eq!(classify_failure(""), None);
        assert_eq!(
            classify_failure("Epoch 9 | loss 0.12 | acc 0.93\nTraining finished.\n"),
            None
        );
    }

    #[test]
    fn messages_are_capped() {
        let long = format!("RuntimeError: {}\n", "x".repeat(5000));
        let log = format!("Traceback (most recent call last):\n  File \"a.py\", line 1\n{long}");
        let f = classify_failure(&log).unwrap();
        assert_eq!(f.kind, FailureKind::Traceback);
        assert_eq!(f.message.chars().count(), MAX_ERROR_CHARS);
        assert!(f.message.ends_with('…'));
        assert!(f.excerpt.chars().count() <= MAX_ERROR_CHARS);
        assert!(f.error_text().chars().count() <= MAX_ERROR_CHARS);
    }

    #[test]
    fn error_text_joins_message_and_excerpt() {
        let f = classify_failure(CUDA_OOM).unwrap();
        let text = f.error_text();
        assert!(text.starts_with(&f.message));
        assert!(text.contains("\n\n"));
        assert!(text.chars().count() <= MAX_ERROR_CHARS);
        let short = Failure {
            kind: FailureKind::Killed,
            message: "Killed (SIGKILL / OOM killer): Killed".into(),
            excerpt: "step 10\nKilled".into(),
        };
        assert_eq!(
            short.error_text(),
            "Killed (SIGKILL / OOM killer): Killed\n\nstep 10\nKilled"
        );
    }

    #[test]
    fn failure_from_log_falls_back_to_unknown() {
        let f = failure_from_log("Epoch 3 | loss 0.3\nsaving checkpoint\n");
        assert_eq!(f.kind, FailureKind::Unknown);
        assert_eq!(
            f.message,
            "no recognisable error; last log line: saving checkpoint"
        );
        assert_eq!(f.excerpt, "Epoch 3 | loss 0.3\nsaving checkpoint");
        assert_eq!(
            failure_from_log("").message,
            "no recognisable error: the log is empty"
        );
        assert_eq!(failure_from_log("Killed\n").kind, FailureKind::Killed);
    }

    #[test]
    fn log_tail_drops_the_partial_first_line() {
        assert_eq!(log_tail_text(b"a\nb\n"), "a\nb\n");
        let mut big = vec![b'x'; MAX_LOG_TAIL];
        big.extend_from_slice(b"\nlast line\n");
        assert_eq!(log_tail_text(&big), "last line\n");
        // Invalid UTF-8 is replaced, not an error.
        assert_eq!(log_tail_text(b"a\xffb"), "a\u{fffd}b");
    }
}
