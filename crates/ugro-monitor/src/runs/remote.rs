//! A root on another node's disk ([`RemoteRoot`]): the same [`RootSource`] as a local root,
//! over that node's one SSH session (the health loop's). A listing is one exec of GNU `find`
//! (`-printf` of type, links, size, mtime, ctime, inode and path, NUL-separated) for a batch of
//! directories, each listed with its `epoch_N` and log sub-directories in the same pass; when
//! runs are read for the first time the same `find` names their JSON files to a `perl` (or,
//! without perl, `tar`) running beside it, so a batch's listing and contents are one exec. Outputs are gzip + base64 so any
//! byte survives the session's text channel; a big level is spread over up to 4 execs at once,
//! sized from the directories' link counts, and decoded off the runtime. A poll cycle is one
//! exec: the due runs' dirs, their frontier epoch dir and log dirs listed, and the searched
//! directories stat'ed; the node hashes that listing and sends it only when it differs from
//! the last one of a cycle that found nothing changed. Runs are built in memory with the same
//! rules as `crate::scan` (re-used summaries, frontier only).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use ugro_core::runs::{self as core, FileInfo, RunView};

use crate::scan::{self, LogDirsStamp, ReadRun, RootScan, Stamp, Stamps, Tree};
use crate::ssh::{Exec, MAX_OUTPUT, NodeSession, shell_quote};

use super::host::RunsHost;
use super::presence::RootId;
use super::source::{BoxFuture, Due, Found, Identity, RootSource, Views, runs_touched};

/// Directories listed per exec at most (their paths travel gzip'ed in the command line).
const LIST_BATCH: usize = 2048;
/// Files fetched per exec (halved while the output overruns its bound).
const FETCH_BATCH: usize = 2048;
/// Execs run at once on the session (sshd's default `MaxSessions` is 10; the health loop
/// and the logs API use some too).
const PARALLEL: usize = 4;
/// Log tails read per exec.
const TAIL_BATCH: usize = 128;
/// Progress files written per exec.
const WRITE_BATCH: usize = 64;
/// The deadline of one exec.
const EXEC_DEADLINE: Duration = Duration::from_secs(60);
/// How long a command waits for the node's session to be set up (at the daemon's start).
const SESSION_WAIT: Duration = Duration::from_secs(10);
/// Most bytes a decompressed output may have.
const MAX_DECODED: u64 = 512 * 1024 * 1024;
/// Most output (base64 text) kept of one listing or fetch exec; a batch over it is split.
const OUTPUT_BOUND: usize = 16 * 1024 * 1024;
/// The most estimated output a batch aims at (a queue of directories estimated over
/// [`ONE_EXEC`] is split over the free exec places, each batch at least `ONE_EXEC`).
const BATCH_TARGET: u64 = 8 * 1024 * 1024;
/// A queue of directories estimated below this is listed in one exec (every exec is a round
/// trip, and one on a channel of its own costs the node a login shell's start-up: a good part
/// of a second with a heavy `~/.bashrc`).
const ONE_EXEC: u64 = 3 * 1024 * 1024;
/// The longest poll-cycle command sent as one exec (it is one argument of the remote shell,
/// which Linux bounds at 128 KiB); a longer one is listed in batches.
const MAX_COMMAND: usize = 96 * 1024;

/// Execs run by every remote root of this process (for tests and benchmarks).
static EXECS: AtomicU64 = AtomicU64::new(0);

/// How many execs remote roots have run in this process.
pub fn execs() -> u64 {
    EXECS.load(Ordering::Relaxed)
}

/// What `find -printf` told of one entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    dir: bool,
    size: u64,
    ino: u64,
    /// Hard links: 2 + the number of sub-directories for a directory on most filesystems (an
    /// estimate of a listing's size only).
    nlink: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Meta {
    fn info(&self) -> FileInfo {
        FileInfo {
            size: self.size,
            mtime: DateTime::<Utc>::from_timestamp(self.mtime.0, self.mtime.1 as u32)
                .unwrap_or_default(),
        }
    }
}

/// One directory as listings saw it: its own stat, and its entries when it was listed.
#[derive(Debug, Default)]
struct Dir {
    meta: Option<Meta>,
    entries: Option<BTreeMap<OsString, Meta>>,
}

/// What listings found, by directory, and the node's clock when it listed.
#[derive(Debug, Default)]
struct Listed {
    now: (i64, i64),
    dirs: HashMap<PathBuf, Dir>,
}

/// File contents fetched, by path.
type Contents = HashMap<PathBuf, Vec<u8>>;

/// What one batch of a discovery brought: its listing, contents, and the runs built from them.
type Batch = (Listed, Contents, Vec<(PathBuf, ReadRun)>);

impl Listed {
    fn meta(&self, p: &Path) -> Option<&Meta> {
        self.dirs.get(p)?.meta.as_ref()
    }

    fn stamp(&self, p: &Path) -> Option<Stamp> {
        let m = self.meta(p).filter(|m| m.dir)?;
        let age = Duration::new(
            u64::try_from(self.now.0 - m.mtime.0).ok()?,
            u32::try_from(self.now.1).unwrap_or(0),
        )
        .checked_sub(Duration::from_nanos(u64::try_from(m.mtime.1).unwrap_or(0)));
        Some(Stamp::from_parts(m.ino, m.mtime, m.ctime, age))
    }

    /// The entries of a listed directory.
    fn entries(&self, dir: &Path) -> Option<&BTreeMap<OsString, Meta>> {
        self.dirs.get(dir)?.entries.as_ref()
    }

    fn is_listed(&self, dir: &Path) -> bool {
        self.entries(dir).is_some()
    }

    fn file(&self, p: &Path) -> Option<FileInfo> {
        self.entries(p.parent()?)?
            .get(p.file_name()?)
            .filter(|m| !m.dir)
            .map(Meta::info)
    }

    fn merge(&mut self, other: Listed) {
        self.now = self.now.max(other.now);
        for (p, d) in other.dirs {
            let mine = self.dirs.entry(p).or_default();
            if d.meta.is_some() {
                mine.meta = d.meta;
            }
            if d.entries.is_some() {
                mine.entries = d.entries;
            }
        }
    }

    fn is_run_dir(&self, dir: &Path) -> bool {
        let Some(c) = self.entries(dir) else {
            return false;
        };
        let names: Vec<(String, bool)> = c
            .iter()
            .map(|(n, m)| (n.to_string_lossy().into_owned(), m.dir))
            .collect();
        let files: Vec<&str> = names
            .iter()
            .filter(|e| !e.1)
            .map(|e| e.0.as_str())
            .collect();
        let dirs: Vec<&str> = names.iter().filter(|e| e.1).map(|e| e.0.as_str()).collect();
        core::is_run_dir(&files, &dirs)
    }
}

/// `SECS.FRACTION` (find's `%T@`, date's `%s.%N`) as (seconds, nanoseconds).
fn parse_time(s: &str) -> Option<(i64, i64)> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().ok()?))
}

/// Whether a listing in descending mode goes into a run's sub-directory `name` (as the
/// `find` of [`list_find`] does): `epoch_` and a digit, or one of the log directories.
fn descends_into(name: &[u8], log_dirs: &[&str]) -> bool {
    name.strip_prefix(b"epoch_")
        .is_some_and(|d| d.first().is_some_and(u8::is_ascii_digit))
        || log_dirs.iter().any(|l| l.as_bytes() == name)
}

/// The start point a listed directory is given to `find` as (`DIR/.`, whose name `.` tells
/// it from the entries below it).
fn start_point(dir: &Path) -> PathBuf {
    if dir == Path::new("/") {
        PathBuf::from("/.")
    } else {
        dir.join(".")
    }
}

/// The directory of a start point as `find` printed it (`%H`).
fn from_start_point(h: &[u8]) -> PathBuf {
    let h = h.strip_suffix(b"/.").unwrap_or(h);
    if h.is_empty() {
        PathBuf::from("/")
    } else {
        PathBuf::from(OsStr::from_bytes(h))
    }
}

/// Parses NUL-terminated `find` records: `L …` a listed directory (its entries follow,
/// `1 …` at depth 1 and, in descending mode, `2 …` inside the depth-1 directories it went
/// into), `S …` a directory only stat'ed.
fn parse_records(bytes: &[u8], mode: Mode, log_dirs: &[&str]) -> Listed {
    let mut out = Listed::default();
    // The listed directory being filled, and the depth-1 directory inside it.
    let mut cur0: Option<(PathBuf, BTreeMap<OsString, Meta>)> = None;
    let mut cur1: Option<(PathBuf, BTreeMap<OsString, Meta>)> = None;
    let flush = |out: &mut Listed, cur: &mut Option<(PathBuf, BTreeMap<OsString, Meta>)>| {
        if let Some((p, entries)) = cur.take() {
            out.dirs.entry(p).or_default().entries = Some(entries);
        }
    };
    let num = |b: &[u8]| -> Option<u64> { std::str::from_utf8(b).ok()?.parse().ok() };
    let time = |b: &[u8]| parse_time(std::str::from_utf8(b).ok()?);
    for rec in bytes.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let mut f = rec.splitn(3, |&b| b == b' ');
        let (Some(kind), Some(ty), Some(rest)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let file_entry = ty == b"f" && (kind == b"1" || kind == b"2");
        let (meta, path) = if file_entry {
            // Files: size, mtime and path (their inode and ctime are never compared).
            let mut f = rest.splitn(3, |&b| b == b' ');
            let (Some(size), Some(mtime), Some(path)) =
                (f.next().and_then(num), f.next().and_then(time), f.next())
            else {
                continue;
            };
            let meta = Meta {
                dir: false,
                size,
                ino: 0,
                nlink: 1,
                mtime,
                ctime: (0, 0),
            };
            (meta, path)
        } else {
            let mut f = rest.splitn(6, |&b| b == b' ');
            let (Some(nlink), Some(size), Some(mtime), Some(ctime), Some(ino)) = (
                f.next().and_then(num),
                f.next().and_then(num),
                f.next().and_then(time),
                f.next().and_then(time),
                f.next().and_then(num),
            ) else {
                continue;
            };
            let meta = Meta {
                dir: ty == b"d",
                size,
                ino,
                nlink,
                mtime,
                ctime,
            };
            (meta, f.next().unwrap_or_default())
        };
        match kind {
            b"L" | b"S" => {
                flush(&mut out, &mut cur1);
                flush(&mut out, &mut cur0);
                let p = from_start_point(path);
                if kind == b"L" && meta.dir {
                    cur0 = Some((p.clone(), BTreeMap::new()));
                }
                out.dirs.entry(p).or_default().meta = Some(meta);
            }
            b"1" => {
                flush(&mut out, &mut cur1);
                let Some((dir, entries)) = cur0.as_mut() else {
                    continue;
                };
                if ty != b"d" && ty != b"f" {
                    continue;
                }
                let name = OsStr::from_bytes(path);
                if meta.dir {
                    let p = dir.join(name);
                    if mode.descend && (mode.all || descends_into(path, log_dirs)) {
                        cur1 = Some((p.clone(), BTreeMap::new()));
                    }
                    out.dirs.entry(p).or_default().meta = Some(meta);
                }
                entries.insert(name.to_owned(), meta);
            }
            b"2" => {
                let Some((dir, entries)) = cur1.as_mut() else {
                    continue;
                };
                let Some(i) = path.iter().position(|&b| b == b'/') else {
                    continue;
                };
                if (ty != b"d" && ty != b"f")
                    || dir.file_name().map(OsStrExt::as_bytes) != Some(&path[..i])
                {
                    continue;
                }
                entries.insert(OsStr::from_bytes(&path[i + 1..]).to_owned(), meta);
            }
            _ => {}
        }
    }
    flush(&mut out, &mut cur1);
    flush(&mut out, &mut cur0);
    out
}

/// base64 text → its gunzip'ed bytes (bounded by [`MAX_DECODED`]); empty text → no bytes.
fn unpack(b64: &str) -> Result<Vec<u8>, String> {
    let b64 = b64.trim();
    if b64.is_empty() {
        return Ok(Vec::new());
    }
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .take(MAX_DECODED)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The tag [`CAT_FILES`]'s `perl` starts its output with (a tar archive never does: it
/// starts with a member's path).
const FILES_TAG: &[u8] = b"ugro-files 1\0";

/// Reads the NUL-separated paths of its stdin and prints each readable file as
/// `PATH\0LEN\0BYTES` after [`FILES_TAG`]. About a sixth of what `tar` sends for the same small
/// JSON files (tar pads every header and every file to 512 bytes: some 100 MB for 2,000 runs'
/// epochs, which the node must gzip and the daemon gunzip).
/// One `sysread` of its size a file (perl's buffered slurp cost a fifth more of the node's
/// CPU); one over [`scan::MAX_JSON_BYTES`] is left out.
const CAT_PERL: &str = r#"binmode STDOUT; print "ugro-files 1\0"; $/ = "\0";
while (defined(my $p = <STDIN>)) { chomp $p; sysopen(my $f, $p, 0) or next; my $s = -s $f;
next unless defined $s && $s <= MAX; my $n = sysread($f, my $c, $s + 1); close $f;
next unless defined $n && $n <= MAX; print $p, "\0", $n, "\0", $c; }"#;

/// The command printing the files named NUL-separated on its stdin: `perl` ([`CAT_PERL`]) or,
/// on a node without it, `tar`. [`read_files`] reads either.
fn cat_files() -> String {
    format!(
        "if command -v perl >/dev/null 2>&1; then exec perl -e {}; \
         else exec tar -c -P --null -T - -f - --ignore-failed-read; fi",
        shell_quote(&CAT_PERL.replace("MAX", &scan::MAX_JSON_BYTES.to_string()))
    )
}

/// A path as `find` names it below a start point (`DIR/./NAME`) as `DIR/NAME`.
fn from_found(name: &[u8]) -> PathBuf {
    match name.windows(3).position(|w| w == b"/./") {
        Some(i) => {
            let mut p = name[..i].to_vec();
            p.extend_from_slice(&name[i + 2..]);
            PathBuf::from(OsString::from_vec(p))
        }
        None => PathBuf::from(OsStr::from_bytes(name)),
    }
}

/// The files of [`cat_files`]'s output by path. A record cut short ends it.
fn read_files(bytes: &[u8]) -> Contents {
    let Some(mut rest) = bytes.strip_prefix(FILES_TAG) else {
        return untar(bytes);
    };
    let mut out = Contents::new();
    let field = |b: &[u8]| b.iter().position(|&c| c == 0);
    while let Some(i) = field(rest) {
        let path = from_found(&rest[..i]);
        rest = &rest[i + 1..];
        let Some(j) = field(rest) else { break };
        let Some(len) = std::str::from_utf8(&rest[..j])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
        else {
            break;
        };
        rest = &rest[j + 1..];
        if rest.len() < len {
            break;
        }
        out.insert(path, rest[..len].to_vec());
        rest = &rest[len..];
    }
    out
}

/// The files of a tar archive by path (`DIR/./NAME` as `DIR/NAME`).
fn untar(bytes: &[u8]) -> Contents {
    let mut out = Contents::new();
    let mut ar = tar::Archive::new(bytes);
    let Ok(entries) = ar.entries() else {
        return out;
    };
    for mut e in entries.flatten() {
        let path = from_found(&e.path_bytes());
        let mut buf = Vec::with_capacity(usize::try_from(e.size()).unwrap_or(0).min(1 << 20));
        if e.read_to_end(&mut buf).is_ok() {
            out.insert(path, buf);
        }
    }
    out
}

/// Decodes a listing exec's output (`CLOCK\nCONTENTS\nLISTING`, the last two gzip + base64).
fn decode_listing(text: &str, mode: Mode, log_dirs: &[&str]) -> Result<(Listed, Contents), String> {
    let mut lines = text.splitn(3, '\n');
    let now = lines.next().and_then(|l| parse_time(l.trim()));
    let tar = lines.next().unwrap_or_default();
    let listing = lines.next().unwrap_or_default();
    let contents = if tar.trim().is_empty() {
        Contents::new()
    } else {
        read_files(&unpack(tar)?)
    };
    let mut listed = parse_records(&unpack(listing)?, mode, log_dirs);
    listed.now = now.unwrap_or((0, 0));
    Ok((listed, contents))
}

/// The paths as one shell word: NUL-separated, gzip'ed, base64.
fn packed(paths: &[PathBuf]) -> String {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for p in paths {
        let _ = gz.write_all(p.as_os_str().as_bytes());
        let _ = gz.write_all(b"\0");
    }
    let bytes = gz.finish().unwrap_or_default();
    shell_quote(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A shell pipeline giving `paths` NUL-separated on stdin to `then`.
fn feed(paths: &[PathBuf], then: &str) -> String {
    format!(
        "printf %s {} | base64 -d | gzip -dc | {then}",
        packed(paths)
    )
}

/// `xargs` running `find_script` on the NUL-separated start points of its stdin.
fn xargs(find_script: &str) -> String {
    format!("xargs -0 -r sh -c {} sh", shell_quote(find_script))
}

/// A `find -name` pattern matching `name` literally.
fn glob_literal(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a batch of directories is listed.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Also list the `epoch_N` and log sub-directories of each (its run's second level).
    descend: bool,
    /// Also fetch the JSON files a first read of the runs among them needs (with `descend`).
    contents: bool,
    /// Go into every sub-directory, not only a run's (the root's first look: its
    /// sub-directories' entries come with it, a round trip less).
    all: bool,
}

const LIST: Mode = Mode {
    descend: false,
    contents: false,
    all: false,
};

/// The `find` listing the start points (`DIR/.`) of its arguments ([`parse_records`]'s
/// records); with `contents`, the JSON files a first read needs (non-empty, within
/// [`scan::MAX_JSON_BYTES`]) are named NUL-separated on fd 3.
fn list_find(mode: Mode, log_dirs: &[&str]) -> String {
    let mut s = format!(
        "exec find -H \"$@\" -maxdepth {} \\( -name . -printf {} \\) -o \\( \\( -type d -printf {} -o -type f -printf {} \\)",
        if mode.descend { 2 } else { 1 },
        shell_quote("L %y %n %s %T@ %C@ %i %H\\0"),
        shell_quote("%d d %n %s %T@ %C@ %i %P\\0"),
        shell_quote("%d f %s %T@ %P\\0"),
    );
    if mode.descend && !mode.all {
        s.push_str(" \\( \\( -type d ! -name 'epoch_[0-9]*'");
        for d in log_dirs {
            s.push_str(&format!(" ! -name {}", shell_quote(&glob_literal(d))));
        }
        s.push_str(" -prune \\)");
        if mode.contents {
            let pats: Vec<String> = scan::RUN_JSON_FILES
                .iter()
                .map(|n| format!("-path '*/./{n}'"))
                .chain(
                    scan::EPOCH_JSON_FILES
                        .iter()
                        .map(|n| format!("-path '*/./epoch_[0-9]*/{n}'")),
                )
                .collect();
            s.push_str(&format!(
                " -o \\( -type f \\( {} \\) -size +0c -size -{}c -fprint0 /dev/fd/3 \\)",
                pats.join(" -o "),
                scan::MAX_JSON_BYTES + 1
            ));
        }
        s.push_str(" -o -true \\)");
    }
    s.push_str(" \\)");
    s
}

/// The `find` stat'ing its arguments' start points alone (`S` records).
fn stat_find() -> String {
    format!(
        "exec find -H \"$@\" -maxdepth 0 -printf {}",
        shell_quote("S %y %n %s %T@ %C@ %i %H\\0")
    )
}

/// The listing commands of `dirs` (listed) and `stats` (stat'ed), records on stdout.
fn listing_cmds(dirs: &[PathBuf], stats: &[PathBuf], mode: Mode, log_dirs: &[&str]) -> String {
    let mut parts = Vec::new();
    if !dirs.is_empty() {
        let starts: Vec<PathBuf> = dirs.iter().map(|d| start_point(d)).collect();
        parts.push(feed(&starts, &xargs(&list_find(mode, log_dirs))));
    }
    if !stats.is_empty() {
        let starts: Vec<PathBuf> = stats.iter().map(|d| start_point(d)).collect();
        parts.push(feed(&starts, &xargs(&stat_find())));
    }
    parts.join("; ")
}

/// The script of one listing batch; its output is `CLOCK\nCONTENTS\nLISTING`
/// ([`decode_listing`]). With `contents`, `find` names the JSON files to a `tar` beside it
/// (one pass over the tree); the archive streams out while the listing is kept until the end.
fn list_script(dirs: &[PathBuf], stats: &[PathBuf], mode: Mode, log_dirs: &[&str]) -> String {
    if mode.contents && stats.is_empty() && !dirs.is_empty() {
        let starts: Vec<PathBuf> = dirs.iter().map(|d| start_point(d)).collect();
        let find = feed(
            &starts,
            &format!(
                "{} 3>&1 1>&5 2>/dev/null",
                xargs(&list_find(mode, log_dirs))
            ),
        );
        format!(
            "date +%s.%N; exec 4>&1; l=$( {{ {find} | {{ {cat}; }} 2>/dev/null | gzip -1 \
             | base64 -w0 >&4; }} 5>&1 | gzip -1 | base64 -w0 ); echo; printf '%s\\n' \"$l\"",
            cat = cat_files()
        )
    } else {
        let mode = Mode {
            contents: false,
            ..mode
        };
        format!(
            "date +%s.%N; echo; {{ {}; }} 2>/dev/null | gzip -1 | base64 -w0",
            listing_cmds(dirs, stats, mode, log_dirs)
        )
    }
}

/// The script of a poll cycle's one exec: `CLOCK\nHASH\n` and then `=` when the listing's
/// hash is `want` (nothing to send), else the listing (gzip + base64).
fn poll_script(dirs: &[PathBuf], stats: &[PathBuf], want: Option<&str>) -> String {
    format!(
        "date +%s.%N; l=$( {{ {}; }} 2>/dev/null | gzip -n -1 | base64 -w0 ); \
         h=$(printf %s \"$l\" | md5sum 2>/dev/null | cut -d' ' -f1); echo \"$h\"; \
         if [ -n \"$h\" ] && [ \"$h\" = {} ]; then echo =; else printf '%s\\n' \"$l\"; fi",
        listing_cmds(dirs, stats, LIST, &[]),
        shell_quote(want.unwrap_or("-"))
    )
}

/// What a poll cycle's exec answered.
enum PollAnswer {
    /// The listing is the one of the last quiet cycle.
    Same,
    /// The listing, and its hash (empty when the node has no `md5sum`).
    Listed(Listed, String),
}

fn decode_poll(text: &str) -> Result<PollAnswer, String> {
    let mut lines = text.splitn(3, '\n');
    let now = lines.next().and_then(|l| parse_time(l.trim()));
    let hash = lines.next().unwrap_or_default().trim().to_owned();
    let rest = lines.next().unwrap_or_default();
    if rest.trim() == "=" {
        return Ok(PollAnswer::Same);
    }
    let mut listed = parse_records(&unpack(rest)?, LIST, &[]);
    listed.now = now.unwrap_or((0, 0));
    Ok(PollAnswer::Listed(listed, hash))
}

/// The log tails of [`Inner::log_tails`]'s output, in order: per log `SIZE LEN\n` and LEN
/// bytes (perl), `b SIZE BASE64\n` (the shell loop), or `-\n` (unreadable: `None`). A record
/// cut short ends the list.
fn parse_tails(mut bytes: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
        let head = String::from_utf8_lossy(&bytes[..nl]).into_owned();
        bytes = &bytes[nl + 1..];
        if head == "-" {
            out.push(None);
            continue;
        }
        let mut f = head.split(' ');
        match (f.next(), f.next(), f.next()) {
            (Some("b"), Some(size), b64) => {
                let tail = base64::engine::general_purpose::STANDARD
                    .decode(b64.unwrap_or_default())
                    .ok()
                    .zip(size.parse().ok())
                    .map(|(b, size)| scan::tail_from_bytes(size, &b));
                out.push(tail);
            }
            (Some(size), Some(len), None) => {
                let (Ok(size), Ok(len)) = (size.parse::<u64>(), len.parse::<usize>()) else {
                    break;
                };
                if bytes.len() < len {
                    break;
                }
                out.push(Some(scan::tail_from_bytes(size, &bytes[..len])));
                bytes = &bytes[len..];
            }
            _ => break,
        }
    }
    out
}

/// What a due run's frontier check depends on besides the listing (its dir, the view it
/// holds, by identity, and its stamps) and the searched directories' stamps, as one key: a
/// poll cycle whose key and listing are those of a cycle that found nothing changed finds
/// nothing changed either.
fn poll_key(due: &[Due], tree: &Tree, dirs: &[PathBuf], stats: &[PathBuf]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    dirs.hash(&mut h);
    stats.hash(&mut h);
    for d in due {
        d.dir.hash(&mut h);
        (Arc::as_ptr(&d.view) as usize).hash(&mut h);
        d.stamps.hash(&mut h);
    }
    let mut entries: Vec<(&Path, Stamp, usize)> = tree.entries().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries.hash(&mut h);
    h.finish()
}

/// The last quiet poll cycle: its key, the hash of its listing, and the views its key names
/// by identity (held, so no other view can take their address).
struct PollCache {
    key: u64,
    hash: String,
    _views: Vec<Arc<RunView>>,
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A root on a remote node's disk, read over the node's health session.
pub(super) struct RemoteRoot<H: RunsHost> {
    inner: Arc<Inner<H>>,
}

struct Inner<H: RunsHost> {
    host: Arc<H>,
    node: String,
    root: PathBuf,
    globs: Vec<String>,
    poll_cache: Mutex<Option<PollCache>>,
}

impl<H: RunsHost> RemoteRoot<H> {
    pub(super) fn new(host: Arc<H>, node: String, root: PathBuf, globs: Vec<String>) -> Self {
        RemoteRoot {
            inner: Arc::new(Inner {
                host,
                node,
                root,
                globs,
                poll_cache: Mutex::new(None),
            }),
        }
    }
}

/// Runs `f` on the blocking pool; `Err` names what failed when it panicked.
async fn off_runtime<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("{what}: {e}"))
}

impl<H: RunsHost> Inner<H> {
    /// The node's session. At start the root's first scan may come before the health loop
    /// has set the node's session up: it is waited for, up to [`SESSION_WAIT`] (before, the
    /// first scan failed at once and the root was listed empty until the next poll).
    async fn session(&self) -> Result<Arc<NodeSession>, String> {
        let until = Instant::now() + SESSION_WAIT;
        loop {
            let found = self
                .host
                .remote_sessions()
                .into_iter()
                .find(|(n, _)| *n == self.node)
                .map(|(_, s)| s);
            match found {
                Some(s) => return Ok(s),
                None if Instant::now() < until => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None => return Err(format!("node {} has no SSH session", self.node)),
            }
        }
    }

    /// Runs `script` on the node keeping up to `bound` bytes of output; its stdout as text and
    /// whether it was cut. `Err` names the node and what failed.
    async fn exec_text(&self, script: &str, bound: usize) -> Result<(String, bool), String> {
        let session = self.session().await?;
        EXECS.fetch_add(1, Ordering::Relaxed);
        match session.exec_bounded(script, EXEC_DEADLINE, bound).await {
            Ok(Exec::Done(out)) => Ok((out.stdout, out.truncated)),
            Ok(Exec::Hung) => Err(format!(
                "listing on node {} did not finish within {EXEC_DEADLINE:?}",
                self.node
            )),
            Err(e) => Err(format!("listing on node {}: {e}", self.node)),
        }
    }

    /// Runs `script` with its output gzip'ed and base64'ed; the output's bytes, or `Ok(None)`
    /// when it overran [`OUTPUT_BOUND`].
    async fn exec_bytes(&self, script: &str) -> Result<Option<Vec<u8>>, String> {
        let wrapped = format!("{{ {script} ; }} 2>/dev/null | gzip -1 | base64 -w0");
        let (text, truncated) = self.exec_text(&wrapped, OUTPUT_BOUND).await?;
        if truncated {
            return Ok(None);
        }
        let node = self.node.clone();
        off_runtime("decoding", move || unpack(&text))
            .await?
            .map(Some)
            .map_err(|e| format!("output from node {node}: {e}"))
    }

    /// The estimated output of listing `dir` (from its link count: its sub-directories).
    fn estimate(listed: &Listed, dir: &Path, mode: Mode) -> u64 {
        // Its own stat, or the entry its parent's listing gave.
        let meta = listed
            .meta(dir)
            .or_else(|| listed.entries(dir.parent()?)?.get(dir.file_name()?));
        let subdirs = meta.map_or(0, |m| m.nlink.saturating_sub(2));
        match (mode.descend, mode.contents) {
            (true, true) => 600 + 280 * subdirs,
            (true, false) => 300 + 120 * subdirs,
            _ => 200 + 30 * subdirs,
        }
    }

    /// Lists `dirs` (with their estimated output) and stats `stats`, in batches sized from
    /// the estimates, up to [`PARALLEL`] execs at once, each decoded off the runtime as it
    /// comes; a batch whose output overran its bound is split and asked again.
    async fn list(
        &self,
        dirs: Vec<(PathBuf, u64)>,
        stats: Vec<PathBuf>,
        mode: Mode,
    ) -> Result<(Listed, Contents), String> {
        let total: u64 = dirs.iter().map(|d| d.1).sum();
        let target = if total <= ONE_EXEC {
            u64::MAX
        } else {
            total
                .div_ceil(PARALLEL as u64)
                .clamp(ONE_EXEC / 4, BATCH_TARGET)
        };
        let mut pending: Vec<(Vec<PathBuf>, Vec<PathBuf>)> = Vec::new();
        let (mut batch, mut size) = (Vec::new(), 0u64);
        for (d, est) in dirs {
            if !batch.is_empty() && (size + est > target || batch.len() >= LIST_BATCH) {
                pending.push((std::mem::take(&mut batch), Vec::new()));
                size = 0;
            }
            size += est;
            batch.push(d);
        }
        if !batch.is_empty() {
            pending.push((batch, Vec::new()));
        }
        for chunk in stats.chunks(LIST_BATCH * 4) {
            match pending.first_mut() {
                // The first batch of stats rides with a listing that has no contents.
                Some(first) if first.1.is_empty() && !mode.contents => first.1 = chunk.to_vec(),
                _ => pending.push((Vec::new(), chunk.to_vec())),
            }
        }
        let log_dirs: Vec<String> = core::log_dirs(&self.globs)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let log_dirs = Arc::new(log_dirs);
        let mut out = (Listed::default(), Contents::new());
        while !pending.is_empty() {
            let mut answers = futures_util::stream::iter(pending.drain(..).map(|(one, zero)| {
                let log_dirs = Arc::clone(&log_dirs);
                async move {
                    let subs: Vec<&str> = log_dirs.iter().map(String::as_str).collect();
                    let script = list_script(&one, &zero, mode, &subs);
                    let r = self.exec_text(&script, OUTPUT_BOUND).await;
                    let answer = match r {
                        Ok((_, true)) => Ok(None),
                        Ok((text, false)) => off_runtime("decoding a listing", move || {
                            let subs: Vec<&str> = log_dirs.iter().map(String::as_str).collect();
                            decode_listing(&text, mode, &subs)
                        })
                        .await
                        .and_then(|r| r.map(Some)),
                        Err(e) => Err(e),
                    };
                    (answer, one, zero)
                }
            }))
            .buffer_unordered(PARALLEL);
            let mut again = Vec::new();
            while let Some((answer, one, zero)) = answers.next().await {
                match answer.map_err(|e| format!("listing on node {}: {e}", self.node))? {
                    Some((l, c)) => {
                        out.0.merge(l);
                        out.1.extend(c);
                    }
                    None if one.len() + zero.len() > 1 => {
                        let (a1, b1) = one.split_at(one.len() / 2);
                        let (a0, b0) = zero.split_at(zero.len() / 2);
                        again.push((a1.to_vec(), a0.to_vec()));
                        again.push((b1.to_vec(), b0.to_vec()));
                    }
                    None => {
                        return Err(format!(
                            "listing of {} on node {} is over the output bound",
                            one.first()
                                .or(zero.first())
                                .map_or(String::new(), |p| p.display().to_string()),
                            self.node
                        ));
                    }
                }
            }
            drop(answers);
            pending = again;
        }
        Ok(out)
    }

    /// The contents of `files` (those that could be read), by path.
    /// `Err` when the node could not be asked (the caller keeps what it had rather than
    /// taking the files as unreadable).
    async fn fetch(&self, files: Vec<PathBuf>) -> Result<Contents, String> {
        let mut out = Contents::new();
        let mut pending: Vec<Vec<PathBuf>> =
            files.chunks(FETCH_BATCH).map(<[PathBuf]>::to_vec).collect();
        while !pending.is_empty() {
            let mut answers = futures_util::stream::iter(pending.drain(..).map(|batch| async {
                let cmd = feed(&batch, &cat_files());
                let answer = match self.exec_bytes(&cmd).await {
                    Ok(Some(bytes)) => off_runtime("reading files", move || read_files(&bytes))
                        .await
                        .map(Some),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                (answer, batch)
            }))
            .buffer_unordered(PARALLEL);
            let mut again = Vec::new();
            while let Some((answer, batch)) = answers.next().await {
                match answer? {
                    Some(c) => out.extend(c),
                    None if batch.len() > 1 => {
                        let (a, b) = batch.split_at(batch.len() / 2);
                        again.push(a.to_vec());
                        again.push(b.to_vec());
                    }
                    None => {}
                }
            }
            drop(answers);
            pending = again;
        }
        Ok(out)
    }

    /// Finds runs below `start` (dirs with their depth): a queue of directories listed in
    /// batches (each dir with its epoch and log dirs, and with `with_contents` the JSON files of
    /// the runs among them), up to [`PARALLEL`] execs at once, a batch's sub-directories queued
    /// as soon as it is decoded rather than after its whole level. Records the searched
    /// directories in `tree` and gives the new run dirs (`is_known` ones left out) with their
    /// listings merged into `listed`. With `built` (a first read, no views to re-use), the runs
    /// of a batch are built off the runtime as it arrives and go there instead.
    #[allow(clippy::too_many_arguments)]
    async fn discover(
        &self,
        start: Vec<(PathBuf, usize)>,
        tree: &mut Tree,
        is_known: &(dyn Fn(&Path) -> bool + Sync),
        listed: &mut Listed,
        contents: &mut Contents,
        with_contents: bool,
        mut built: Option<&mut Vec<(PathBuf, ReadRun)>>,
        problems: &mut Vec<String>,
    ) -> Result<Vec<PathBuf>, String> {
        let mode = Mode {
            descend: true,
            contents: with_contents,
            all: false,
        };
        let build_now = with_contents && built.is_some();
        let log_dirs: Arc<Vec<String>> = Arc::new(
            core::log_dirs(&self.globs)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        );
        let globs = Arc::new(self.globs.clone());
        let mut runs = Vec::new();
        let mut queue: Vec<(PathBuf, usize)> = start;
        // Batches split after overrunning the output bound, asked again first.
        // (A dir alone over the bound is asked again for less: the root without its
        // sub-directories' entries, a run without its contents, fetched apart.)
        let mut split: Vec<(Vec<(PathBuf, usize)>, Mode)> = Vec::new();
        let mut inflight = futures_util::stream::FuturesUnordered::new();
        loop {
            while inflight.len() < PARALLEL && (!split.is_empty() || !queue.is_empty()) {
                let (batch, mode) = match split.pop() {
                    Some(b) => b,
                    None => {
                        let est = |d: &Path| Self::estimate(listed, d, mode);
                        let total: u64 = queue.iter().map(|(d, _)| est(d)).sum();
                        let free = (PARALLEL - inflight.len()) as u64;
                        let target = if total <= ONE_EXEC {
                            u64::MAX
                        } else {
                            total.div_ceil(free).clamp(ONE_EXEC, BATCH_TARGET)
                        };
                        let (mut n, mut size) = (0, 0);
                        while n < queue.len() && n < LIST_BATCH && (n == 0 || size < target) {
                            size += est(&queue[n].0);
                            n += 1;
                        }
                        let batch: Vec<(PathBuf, usize)> = queue.drain(..n).collect();
                        // The root alone: its sub-directories' entries come with it.
                        let mode = if batch.len() == 1 && batch[0].0 == self.root {
                            Mode {
                                contents: false,
                                all: true,
                                ..mode
                            }
                        } else {
                            mode
                        };
                        (batch, mode)
                    }
                };
                inflight.push(self.discover_batch(
                    batch,
                    mode,
                    build_now,
                    Arc::clone(&log_dirs),
                    Arc::clone(&globs),
                ));
            }
            let Some((answer, batch, asked)) = inflight.next().await else {
                break;
            };
            let (l, c, b) = match answer? {
                Some(found) => found,
                None if batch.len() > 1 => {
                    let (a, b) = batch.split_at(batch.len() / 2);
                    split.push((a.to_vec(), asked));
                    split.push((b.to_vec(), asked));
                    continue;
                }
                None if asked.all || asked.contents => {
                    let less = Mode {
                        all: false,
                        contents: asked.contents && asked.all,
                        ..asked
                    };
                    split.push((batch, less));
                    continue;
                }
                None => {
                    return Err(format!(
                        "listing of {} on node {} is over the output bound",
                        batch
                            .first()
                            .map_or(String::new(), |p| p.0.display().to_string()),
                        self.node
                    ));
                }
            };
            listed.merge(l);
            contents.extend(c);
            let built_dirs: HashSet<PathBuf> = b.iter().map(|(d, _)| d.clone()).collect();
            if let Some(out) = built.as_deref_mut() {
                out.extend(b);
            }
            for (dir, depth) in batch {
                if built_dirs.contains(&dir) {
                    tree.remove(&dir);
                    continue;
                }
                let Some(stamp) = listed.stamp(&dir).filter(|_| listed.is_listed(&dir)) else {
                    if dir == self.root {
                        problems.push(format!(
                            "cannot read {} on node {}",
                            dir.display(),
                            self.node
                        ));
                    }
                    tree.remove(&dir);
                    continue;
                };
                if dir != self.root && listed.is_run_dir(&dir) {
                    tree.remove(&dir);
                    if !is_known(&dir) {
                        runs.push(dir);
                    }
                    continue;
                }
                tree.insert(dir.clone(), stamp, depth);
                if depth >= scan::MAX_DEPTH {
                    continue;
                }
                for (name, m) in listed.entries(&dir).into_iter().flatten() {
                    let p = dir.join(name);
                    if !m.dir || tree.contains(&p) || is_known(&p) {
                        continue;
                    }
                    // Listed with its parent (the root's first look): a searched directory
                    // is looked into at once; a run is listed again, as runs are.
                    let stamp = listed.stamp(&p).filter(|_| listed.is_listed(&p));
                    match stamp {
                        Some(stamp) if !listed.is_run_dir(&p) => {
                            tree.insert(p.clone(), stamp, depth + 1);
                            if depth + 1 >= scan::MAX_DEPTH {
                                continue;
                            }
                            for (name, m) in listed.entries(&p).into_iter().flatten() {
                                let c = p.join(name);
                                if m.dir && !tree.contains(&c) && !is_known(&c) {
                                    queue.push((c, depth + 2));
                                }
                            }
                        }
                        _ => queue.push((p, depth + 1)),
                    }
                }
            }
        }
        runs.sort();
        Ok(runs)
    }

    /// [`Inner::discover`] of the runs that appeared below `start` since the last look (their
    /// JSON fetched with their listing; `is_known` runs left out), its problems logged.
    async fn discover_new(
        &self,
        start: Vec<(PathBuf, usize)>,
        tree: &mut Tree,
        is_known: &(dyn Fn(&Path) -> bool + Sync),
        listed: &mut Listed,
        contents: &mut Contents,
    ) -> Result<Vec<PathBuf>, String> {
        let mut problems = Vec::new();
        let new = self
            .discover(
                start,
                tree,
                is_known,
                listed,
                contents,
                true,
                None,
                &mut problems,
            )
            .await?;
        for p in problems.iter().take(5) {
            tracing::debug!("{p}");
        }
        Ok(new)
    }

    /// One batch of [`discover`](Self::discover): its listing (and contents), and with
    /// `build_now` the views of the runs among its dirs (whose listings and contents are
    /// then dropped).
    async fn discover_batch(
        &self,
        batch: Vec<(PathBuf, usize)>,
        mode: Mode,
        build_now: bool,
        log_dirs: Arc<Vec<String>>,
        globs: Arc<Vec<String>>,
    ) -> (Result<Option<Batch>, String>, Vec<(PathBuf, usize)>, Mode) {
        let dirs: Vec<PathBuf> = batch.iter().map(|(d, _)| d.clone()).collect();
        let subs: Vec<&str> = log_dirs.iter().map(String::as_str).collect();
        let script = list_script(&dirs, &[], mode, &subs);
        let root = self.root.clone();
        let started = Instant::now();
        let r = self.exec_text(&script, OUTPUT_BOUND).await;
        tracing::debug!(
            dirs = batch.len(),
            bytes = r.as_ref().map_or(0, |x| x.0.len()),
            ms = started.elapsed().as_millis() as u64,
            "listing batch"
        );
        let answer = match r {
            Ok((_, true)) => Ok(None),
            Ok((text, false)) => off_runtime("decoding a listing", move || {
                let subs: Vec<&str> = log_dirs.iter().map(String::as_str).collect();
                let (mut listed, mut contents) = decode_listing(&text, mode, &subs)?;
                let mut built = Vec::new();
                if build_now && mode.contents {
                    for d in dirs {
                        if d != root && listed.is_run_dir(&d) {
                            let read = build_run(&d, &listed, &contents, None, &globs);
                            built.push((d, read));
                        }
                    }
                    let done: HashSet<&Path> = built.iter().map(|(d, _)| d.as_path()).collect();
                    listed.dirs.retain(|p, _| {
                        !done.contains(p.as_path())
                            && !p.parent().is_some_and(|pp| done.contains(pp))
                    });
                    contents = Contents::new();
                }
                Ok((listed, contents, built))
            })
            .await
            .and_then(|r| r.map(Some)),
            Err(e) => Err(e),
        };
        (
            answer.map_err(|e| format!("listing on node {}: {e}", self.node)),
            batch,
            mode,
        )
    }

    /// Reads runs (id, dir, last view) whose dirs `listed` holds (those it does not are listed
    /// first): lists their log dirs and epoch dirs from the frontier on where not listed yet,
    /// fetches the JSON files whose stamp changed and that `contents` lacks, and builds their
    /// views off the runtime. Runs whose dir is gone are `gone`.
    async fn read_runs(
        &self,
        runs: Vec<(Option<String>, PathBuf, Option<Arc<RunView>>)>,
        mut listed: Listed,
        mut contents: Contents,
        found: &mut Found,
    ) -> Result<(), String> {
        let descend = Mode {
            descend: true,
            contents: false,
            all: false,
        };
        let unlisted: Vec<(PathBuf, u64)> = runs
            .iter()
            .filter(|(_, d, _)| !listed.is_listed(d))
            .map(|(_, d, _)| (d.clone(), Self::estimate(&listed, d, descend)))
            .collect();
        if !unlisted.is_empty() {
            let (l, _) = self.list(unlisted, Vec::new(), descend).await?;
            listed.merge(l);
        }
        let log_dirs: Vec<&str> = core::log_dirs(&self.globs);
        // Second level: log dirs and epoch dirs from the frontier on.
        let mut more = Vec::new();
        let mut plans = Vec::new();
        for (id, dir, prev) in runs {
            let Some(children) = listed.entries(&dir) else {
                if let Some(id) = id {
                    found.gone.push(id);
                }
                continue;
            };
            let mut epoch_dirs: Vec<u32> = children
                .iter()
                .filter(|e| e.1.dir)
                .filter_map(|e| core::epoch_dir_index(e.0.to_str()?))
                .collect();
            epoch_dirs.sort_unstable();
            let from = prev
                .as_deref()
                .filter(|p| scan::summary_holds(p, &epoch_dirs))
                .map_or(0, |p| p.completed.count());
            for i in epoch_dirs.iter().filter(|i| **i >= from) {
                more.push(dir.join(format!("epoch_{i}")));
            }
            for sub in &log_dirs {
                if children.get(OsStr::new(sub)).is_some_and(|m| m.dir) {
                    more.push(dir.join(sub));
                }
            }
            plans.push((id, dir, prev, from));
        }
        more.retain(|d| !listed.is_listed(d));
        if !more.is_empty() {
            let dirs = more.into_iter().map(|d| (d, 0)).collect();
            let (l, _) = self.list(dirs, Vec::new(), LIST).await?;
            listed.merge(l);
        }
        // The JSON files whose stamp changed, not fetched yet.
        let mut want = Vec::new();
        let wanted = |p: &Path, info: &FileInfo, prev: Option<&FileInfo>| {
            prev != Some(info)
                && info.size > 0
                && info.size <= scan::MAX_JSON_BYTES
                && !contents.contains_key(p)
        };
        for (_, dir, prev, from) in &plans {
            let prev = prev.as_deref();
            for name in scan::RUN_JSON_FILES {
                let p = dir.join(name);
                if let Some(info) = listed.file(&p)
                    && wanted(&p, &info, prev.and_then(|v| v.files.get(name)))
                {
                    want.push(p);
                }
            }
            let epochs: Vec<(u32, PathBuf)> = listed
                .entries(dir)
                .into_iter()
                .flatten()
                .filter(|e| e.1.dir)
                .filter_map(|e| Some((core::epoch_dir_index(e.0.to_str()?)?, dir.join(e.0))))
                .filter(|(i, _)| i >= from)
                .collect();
            for (i, d) in &epochs {
                let prev_e = prev.and_then(|v| v.epochs.get(i));
                for name in scan::EPOCH_JSON_FILES {
                    let p = d.join(name);
                    if let Some(info) = listed.file(&p)
                        && wanted(&p, &info, prev_e.and_then(|e| e.files.get(name)))
                    {
                        want.push(p);
                    }
                }
            }
        }
        if !want.is_empty() {
            contents.extend(self.fetch(want).await?);
        }
        let globs = self.globs.clone();
        let built = off_runtime("building run views", move || {
            plans
                .into_iter()
                .map(|(id, dir, prev, _)| {
                    let read = build_run(&dir, &listed, &contents, prev.as_deref(), &globs);
                    (id, dir, read)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        found.read.extend(built);
        Ok(())
    }
}

/// The files of a listed directory with their size and mtime.
fn files_of(listed: &Listed, dir: &Path) -> BTreeMap<String, FileInfo> {
    listed
        .entries(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.1.dir)
        .map(|(n, m)| (n.to_string_lossy().into_owned(), m.info()))
        .collect()
}

/// A run's view from its listings and fetched contents, as `scan::read_run` builds it.
fn build_run(
    dir: &Path,
    listed: &Listed,
    contents: &Contents,
    prev: Option<&RunView>,
    globs: &[String],
) -> ReadRun {
    let fetched = |path: &Path, info: &FileInfo, keep: bool| {
        scan::json_from_bytes(info, contents.get(path).map(Vec::as_slice), keep)
    };
    let mut view = RunView {
        files: files_of(listed, dir),
        log_globs: globs.to_vec(),
        ..RunView::default()
    };
    let subs = core::log_dirs(globs);
    let log_dirs = LogDirsStamp::from_stamps(subs.iter().map(|s| listed.stamp(&dir.join(s))));
    // Logs of the log sub-directories, as `DIR/NAME`.
    for sub in &subs {
        let mut taken = 0;
        for (name, info) in files_of(listed, &dir.join(sub)) {
            let rel = format!("{sub}/{name}");
            if taken >= scan::MAX_SUBDIR_LOGS
                || !core::is_run_log(core::RunnerKind::Unknown, globs, &rel)
                || (*sub != core::LOGS_DIR && !globs.iter().any(|g| core::glob_match(g, &rel)))
            {
                continue;
            }
            view.files.insert(rel, info);
            taken += 1;
        }
    }
    for (name, m) in listed.entries(dir).into_iter().flatten() {
        if m.dir {
            view.add_subdir(&name.to_string_lossy());
        }
    }
    view.json = scan::run_json_with(&view.files, prev, |name, info| {
        fetched(&dir.join(name), info, true)
    });
    let epoch_stamp = scan::read_epochs(
        &mut view,
        prev,
        |i, prev_e| {
            let path = dir.join(format!("epoch_{i}"));
            if !listed.is_listed(&path) {
                return None;
            }
            let files = files_of(listed, &path);
            let json = scan::epoch_json_with(&files, prev_e, |name, info, keep| {
                fetched(&path.join(name), info, keep)
            });
            Some(core::EpochView { files, json })
        },
        |i| listed.stamp(&dir.join(format!("epoch_{i}"))),
    );
    ReadRun {
        view,
        stamps: Stamps {
            dir: listed
                .stamp(dir)
                .unwrap_or_else(|| Stamp::from_parts(0, (0, 0), (0, 0), None)),
            epoch: epoch_stamp,
            log_dirs,
        },
    }
}

/// The frontier check of a due run against a listing of its dir, frontier epoch dir and log
/// dirs (`scan::unchanged` over listed stats).
fn unchanged(listed: &Listed, dir: &Path, view: &RunView, stamps: &Stamps) -> bool {
    let dir_same = |p: &Path, old: &Stamp| listed.stamp(p).is_some_and(|s| old.unchanged(&s));
    let files_same = |base: &Path, files: &BTreeMap<String, FileInfo>| {
        files.iter().all(|(name, info)| {
            name.contains(char::REPLACEMENT_CHARACTER)
                || listed.file(&base.join(name)).as_ref() == Some(info)
        })
    };
    if !dir_same(dir, &stamps.dir) || !files_same(dir, &view.files) {
        return false;
    }
    let now = LogDirsStamp::from_stamps(
        core::log_dirs(&view.log_globs)
            .iter()
            .map(|s| listed.stamp(&dir.join(s))),
    );
    if !stamps.log_dirs.same_as(&now) {
        return false;
    }
    match stamps.epoch {
        None => true,
        Some((i, stamp)) => {
            let Some(e) = view.epochs.get(&i) else {
                return false;
            };
            let p = dir.join(format!("epoch_{i}"));
            dir_same(&p, &stamp) && files_same(&p, &e.files)
        }
    }
}

impl<H: RunsHost> Inner<H> {
    async fn scan(&self, prev: Views) -> Result<RootScan, String> {
        let started = Instant::now();
        let before = execs();
        let mut out = RootScan::default();
        let mut listed = Listed::default();
        let mut contents = Contents::new();
        // A first read fetches the runs' JSON with their listing and builds each batch's runs
        // as it arrives; a rescan re-uses the views.
        let with_contents = prev.is_empty();
        let mut built = Vec::new();
        let dirs = self
            .discover(
                vec![(self.root.clone(), 0)],
                &mut out.tree,
                &|_| false,
                &mut listed,
                &mut contents,
                with_contents,
                with_contents.then_some(&mut built),
                &mut out.problems,
            )
            .await?;
        let listed_at = started.elapsed();
        let runs = dirs
            .into_iter()
            .map(|d| {
                let p = prev.get(&d).cloned();
                (None, d, p)
            })
            .collect();
        let mut found = Found::default();
        self.read_runs(runs, listed, contents, &mut found).await?;
        out.runs = found.read.into_iter().map(|(_, d, r)| (d, r)).collect();
        out.runs.extend(built);
        out.runs.sort_by(|a, b| a.0.cmp(&b.0));
        tracing::debug!(
            runs = out.runs.len(),
            execs = execs() - before,
            listed_ms = listed_at.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "scan"
        );
        Ok(out)
    }

    async fn poll(
        &self,
        mut due: Vec<Due>,
        tree: &mut Tree,
        known: &HashSet<PathBuf>,
    ) -> Result<Found, String> {
        let started = Instant::now();
        let before = execs();
        // One order, so an unchanged set of runs gives the same command and listing.
        due.sort_unstable_by(|a, b| a.dir.cmp(&b.dir));
        let subs = core::log_dirs(&self.globs);
        let mut depth1 = Vec::new();
        for d in &due {
            depth1.push(d.dir.clone());
            if let Some((i, _)) = d.stamps.and_then(|s| s.epoch) {
                depth1.push(d.dir.join(format!("epoch_{i}")));
            }
            if d.view.files.keys().any(|n| n.contains('/')) {
                depth1.extend(subs.iter().map(|s| d.dir.join(s)));
            }
        }
        let mut depth0: Vec<PathBuf> = tree.dirs().map(Path::to_path_buf).collect();
        depth0.sort_unstable();
        if !tree.contains(&self.root) {
            depth0.push(self.root.clone());
        }
        let key = poll_key(&due, tree, &depth1, &depth0);
        let want = self
            .poll_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|c| c.key == key)
            .map(|c| c.hash.clone());
        let script = poll_script(&depth1, &depth0, want.as_deref());
        let mut answer = None;
        if script.len() <= MAX_COMMAND {
            let (text, truncated) = self.exec_text(&script, OUTPUT_BOUND).await?;
            if !truncated {
                answer =
                    Some(off_runtime("decoding a listing", move || decode_poll(&text)).await??);
            }
        }
        let (listed, hash) = match answer {
            Some(PollAnswer::Same) => {
                tracing::debug!(
                    execs = execs() - before,
                    read = 0,
                    same = true,
                    us = started.elapsed().as_micros() as u64,
                    "poll cycle"
                );
                return Ok(Found::default());
            }
            Some(PollAnswer::Listed(listed, hash)) => (listed, hash),
            // Too many runs for one command, or a listing over the bound: in batches.
            None => {
                let dirs = depth1.iter().map(|d| (d.clone(), 0)).collect();
                let (listed, _) = self.list(dirs, depth0.clone(), LIST).await?;
                (listed, String::new())
            }
        };
        // Runs whose frontier changed, read again (their listings re-used).
        let mut found = Found::default();
        let mut changed = Vec::new();
        let views: Vec<Arc<RunView>> = due.iter().map(|d| Arc::clone(&d.view)).collect();
        for d in due {
            if d.stamps
                .is_some_and(|s| unchanged(&listed, &d.dir, &d.view, &s))
            {
                continue;
            }
            changed.push((Some(d.id), d.dir, Some(d.view)));
        }
        // Searched directories whose stamp changed, or gone; the root while missing.
        let mut start = Vec::new();
        let mut gone = Vec::new();
        for (dir, stamp, depth) in tree.entries() {
            match listed.stamp(dir) {
                Some(s) if stamp.unchanged(&s) => {}
                Some(_) => start.push((dir.to_path_buf(), depth)),
                None => gone.push(dir.to_path_buf()),
            }
        }
        if !tree.contains(&self.root) && listed.stamp(&self.root).is_some() {
            start.push((self.root.clone(), 0));
        }
        // Nothing changed: the next cycle with this key and this listing needs no listing.
        let quiet = changed.is_empty() && start.is_empty() && gone.is_empty();
        *self.poll_cache.lock().unwrap_or_else(|e| e.into_inner()) = (quiet && !hash.is_empty())
            .then_some(PollCache {
                key,
                hash,
                _views: views,
            });
        for d in gone {
            tree.remove(&d);
        }
        let mut listed = listed;
        let mut contents = Contents::new();
        if !start.is_empty() {
            let new = self
                .discover_new(
                    start,
                    tree,
                    &|p| known.contains(p),
                    &mut listed,
                    &mut contents,
                )
                .await?;
            changed.extend(new.into_iter().map(|d| (None, d, None)));
        }
        if !changed.is_empty() {
            // A due run's dir listed alone lacks its epoch dirs: `read_runs` lists those.
            self.read_runs(changed, listed, contents, &mut found)
                .await?;
        }
        tracing::debug!(
            execs = execs() - before,
            read = found.read.len(),
            same = false,
            us = started.elapsed().as_micros() as u64,
            "poll cycle"
        );
        Ok(found)
    }

    async fn reread(
        &self,
        known: Vec<(String, PathBuf, Arc<RunView>)>,
        touched: HashSet<PathBuf>,
        tree: &mut Tree,
    ) -> Result<Found, String> {
        let (mut hit, outside) = runs_touched(&known, touched);
        let mut listed = Listed::default();
        let mut contents = Contents::new();
        if outside {
            let dirs: HashSet<PathBuf> = known.iter().map(|(_, d, _)| d.clone()).collect();
            let mut start: Vec<(PathBuf, usize)> = tree
                .entries()
                .map(|(d, _, depth)| (d.to_path_buf(), depth))
                .collect();
            if start.is_empty() {
                start.push((self.root.clone(), 0));
            }
            let new = self
                .discover_new(
                    start,
                    tree,
                    &|p| dirs.contains(p),
                    &mut listed,
                    &mut contents,
                )
                .await?;
            for d in new {
                hit.insert(d, (None, None));
            }
        }
        let runs = hit.into_iter().map(|(d, (id, v))| (id, d, v)).collect();
        let mut found = Found::default();
        self.read_runs(runs, listed, contents, &mut found).await?;
        Ok(found)
    }

    /// `Err` when the node could not be asked.
    async fn identify(&self, was_mount: bool) -> Result<(Option<RootId>, bool), String> {
        let root = shell_quote(&self.root.to_string_lossy());
        // Nothing printed when the root is not a directory now.
        let script = format!(
            "[ -d {root} ] || exit 0; stat -L -c '%d %i' -- {root} && stat -L -c '%d %i' -- \
             {root}/.. && {{ ls -A -- {root} | head -n 1 | wc -l; }}"
        );
        let (out, _) = self.exec_text(&script, MAX_OUTPUT).await?;
        let mut lines = out.lines();
        let parse = |l: Option<&str>| -> Option<(u64, u64)> {
            let (d, i) = l?.trim().split_once(' ')?;
            Some((d.parse().ok()?, i.parse().ok()?))
        };
        let Some((dev, ino)) = parse(lines.next()) else {
            return Ok((None, false));
        };
        let parent = parse(lines.next());
        let mount = parent.is_none_or(|(pd, _)| pd != dev);
        let empty = was_mount && !mount && lines.next().is_some_and(|l| l.trim() == "0");
        Ok((Some(RootId { dev, ino, mount }), empty))
    }

    /// The tails of `logs`, [`TAIL_BATCH`] logs per exec (paths fed on stdin, output gzip'ed),
    /// up to [`PARALLEL`] at once; a batch over the output bound is split. One `perl` reads
    /// a batch (a process per log costs about a millisecond each); without perl, a shell loop.
    async fn log_tails(&self, logs: Vec<(String, PathBuf)>) -> Vec<(String, String)> {
        let n = scan::LOG_TAIL_BYTES;
        let perl = format!(
            "for my $f (@ARGV) {{ if (open(my $h, '<', $f)) {{ my $s = -s $h; \
             my $n = $s < {n} ? $s : {n}; seek($h, $s - $n, 0); \
             my $got = read($h, my $b, $n) // 0; print \"$s $got\\n\", $b; }} \
             else {{ print \"-\\n\"; }} }}"
        );
        let shell = format!(
            "for f; do s=$(stat -c %s -- \"$f\" 2>/dev/null) || {{ echo -; continue; }}; \
             printf 'b %s ' \"$s\"; tail -c {n} -- \"$f\" | base64 -w0; echo; done"
        );
        let mut out = Vec::new();
        let mut pending: Vec<Vec<(String, PathBuf)>> =
            logs.chunks(TAIL_BATCH).map(<[_]>::to_vec).collect();
        while !pending.is_empty() {
            let mut answers = futures_util::stream::iter(pending.drain(..).map(|batch| {
                let paths: Vec<PathBuf> = batch.iter().map(|(_, p)| p.clone()).collect();
                let cmd = format!(
                    "if command -v perl >/dev/null 2>&1; then {}; else {}; fi",
                    feed(
                        &paths,
                        &format!("xargs -0 -r perl -e {}", shell_quote(&perl))
                    ),
                    feed(&paths, &xargs(&shell)),
                );
                async move { (self.exec_bytes(&cmd).await, batch) }
            }))
            .buffer_unordered(PARALLEL);
            let mut again = Vec::new();
            while let Some((answer, batch)) = answers.next().await {
                match answer {
                    Ok(Some(bytes)) => out.extend(
                        batch
                            .into_iter()
                            .zip(parse_tails(&bytes))
                            .filter_map(|((id, _), tail)| Some((id, tail?))),
                    ),
                    Ok(None) if batch.len() > 1 => {
                        let (a, b) = batch.split_at(batch.len() / 2);
                        again.push(a.to_vec());
                        again.push(b.to_vec());
                    }
                    Ok(None) | Err(_) => {}
                }
            }
            drop(answers);
            pending = again;
        }
        out
    }

    async fn write_progress(&self, files: Vec<(String, PathBuf, String)>) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        for batch in files.chunks(WRITE_BATCH) {
            let mut script = String::new();
            for (k, (_, dir, text)) in batch.iter().enumerate() {
                let d = shell_quote(&dir.to_string_lossy());
                let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                script.push_str(&format!(
                    "{{ printf %s '{b64}' | base64 -d > {d}/.progress.json.ugro-tmp && \
                     mv -f -- {d}/.progress.json.ugro-tmp {d}/progress.json; }} 2>/dev/null \
                     || {{ rm -f -- {d}/.progress.json.ugro-tmp 2>/dev/null; echo {k}; }}; "
                ));
            }
            script.push_str("true");
            match self.exec_text(&script, MAX_OUTPUT).await {
                Ok((out, _)) => {
                    for k in out.lines().filter_map(|l| l.trim().parse::<usize>().ok()) {
                        if let Some((id, dir, _)) = batch.get(k) {
                            failures.push((
                                id.clone(),
                                format!(
                                    "cannot write {} on node {}",
                                    dir.join("progress.json").display(),
                                    self.node
                                ),
                            ));
                        }
                    }
                }
                Err(e) => failures.extend(batch.iter().map(|(id, _, _)| (id.clone(), e.clone()))),
            }
        }
        failures
    }
}

impl<H: RunsHost> RootSource for RemoteRoot<H> {
    fn unwatchable(&self) -> Option<&'static str> {
        Some("another node's disk (over SSH)")
    }

    fn identify(&self, was_mount: bool) -> BoxFuture<Identity> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.identify(was_mount).await })
    }

    fn scan(&self, prev: Views) -> BoxFuture<Result<RootScan, String>> {
        use tracing::Instrument;
        // Started now, as a local scan is, so it runs while the caller asks for processes;
        // stopped if the caller drops it.
        let inner = Arc::clone(&self.inner);
        let task = tokio::spawn(
            async move { inner.scan(prev).await }.instrument(tracing::Span::current()),
        );
        let abort = AbortOnDrop(task.abort_handle());
        Box::pin(async move {
            let _abort = abort;
            task.await.map_err(|e| format!("scan: {e}"))?
        })
    }

    fn poll(
        &self,
        due: Vec<Due>,
        mut tree: Tree,
        known: HashSet<PathBuf>,
    ) -> BoxFuture<Option<(Found, Tree)>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            match inner.poll(due, &mut tree, &known).await {
                Ok(f) => Some((f, tree)),
                Err(e) => {
                    tracing::debug!("poll: {e}");
                    None
                }
            }
        })
    }

    fn reread(
        &self,
        known: Vec<(String, PathBuf, Arc<RunView>)>,
        touched: HashSet<PathBuf>,
        mut tree: Tree,
    ) -> BoxFuture<Option<(Found, Tree)>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            match inner.reread(known, touched, &mut tree).await {
                Ok(f) => Some((f, tree)),
                Err(e) => {
                    tracing::debug!("re-read: {e}");
                    None
                }
            }
        })
    }

    fn log_tails(&self, logs: Vec<(String, PathBuf)>) -> BoxFuture<Vec<(String, String)>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.log_tails(logs).await })
    }

    fn write_progress(
        &self,
        files: Vec<(String, PathBuf, String)>,
    ) -> BoxFuture<Vec<(String, String)>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.write_progress(files).await })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn find_times_parse_to_seconds_and_nanoseconds() {
        assert_eq!(
            parse_time("1700000000.1234567890"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(
            parse_time("1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_time("17"), Some((17, 0)));
        assert_eq!(parse_time("x.1"), None);
    }

    /// NUL-terminated records as `find` prints them.
    fn records(recs: &[&str]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for r in recs {
            bytes.extend_from_slice(r.as_bytes());
            bytes.push(0);
        }
        bytes
    }

    #[test]
    fn a_listing_gives_entries_their_stats_and_the_second_level() {
        let bytes = records(&[
            "L d 4 4096 1700000000.0 1700000000.0 11 /r/run a/.",
            "1 f 12 1700000001.25 config.json",
            "1 d 2 4096 1700000002.0 1700000002.0 13 epoch_0",
            "2 f 7 1700000002.0 epoch_0/validation_scores.json",
            "1 d 2 4096 1700000003.0 1700000003.0 15 checkpoints",
            "1 l 1 9 1700000003.0 1700000003.0 16 link",
            "S d 9 4096 1700000000.0 1700000000.0 17 /r/.",
            "L d 2 4096 1700000000.0 1700000000.0 18 /.",
        ]);
        let descend = Mode {
            descend: true,
            contents: false,
            all: false,
        };
        let mut l = parse_records(&bytes, descend, &["logs"]);
        l.now = (1_700_000_100, 0);
        let run = Path::new("/r/run a");
        assert!(l.is_run_dir(run));
        let names: Vec<_> = l.entries(run).unwrap().keys().cloned().collect();
        assert_eq!(
            names,
            ["checkpoints", "config.json", "epoch_0"],
            "no symlink"
        );
        let f = l.file(&run.join("config.json")).unwrap();
        assert_eq!(f.size, 12);
        assert_eq!(f.mtime.timestamp_subsec_nanos(), 250_000_000);
        // The epoch dir was gone into, the other sub-directory only seen.
        assert!(l.is_listed(&run.join("epoch_0")));
        assert_eq!(
            l.file(&run.join("epoch_0/validation_scores.json"))
                .unwrap()
                .size,
            7
        );
        assert!(!l.is_listed(&run.join("checkpoints")));
        assert_eq!(l.meta(run).unwrap().nlink, 4);
        // Old enough to be trusted; a stamp of a dir, none of a file.
        let s = l.stamp(run).unwrap();
        assert!(s.unchanged(&s));
        assert!(l.stamp(&run.join("epoch_0")).is_some());
        assert!(l.stamp(&run.join("config.json")).is_none());
        // A stat-only dir has a stamp and no entries.
        assert!(l.stamp(Path::new("/r")).is_some());
        assert!(!l.is_listed(Path::new("/r")));
        assert!(l.is_listed(Path::new("/")), "the root dir as a start point");
        // Without descending, a depth-2 record has no place.
        let flat = parse_records(&bytes, LIST, &[]);
        assert!(!flat.is_listed(&run.join("epoch_0")));
    }

    #[test]
    fn listing_output_decodes_contents_and_records() {
        use std::io::Write;
        let gz_b64 = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
        };
        // An absolute name, as GNU tar -P writes it (the tar crate only writes relative ones).
        let name = b"/r/run/./epoch_0/validation_scores.json";
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_size(4);
        h.set_mode(0o644);
        h.set_cksum();
        let mut ar = tar::Builder::new(Vec::new());
        ar.append(&h, &b"{\"a\"}"[..4]).unwrap();
        let tar_bytes = ar.into_inner().unwrap();
        let listing = records(&["L d 3 4096 1700000000.0 1700000000.0 11 /r/run/."]);
        let text = format!(
            "1700000100.5\n{}\n{}\n",
            gz_b64(&tar_bytes),
            gz_b64(&listing)
        );
        let descend = Mode {
            descend: true,
            contents: true,
            all: false,
        };
        let (l, c) = decode_listing(&text, descend, &[]).unwrap();
        assert_eq!(l.now, (1_700_000_100, 500_000_000));
        assert!(l.is_listed(Path::new("/r/run")));
        assert_eq!(
            c.get(Path::new("/r/run/epoch_0/validation_scores.json"))
                .map(Vec::as_slice),
            Some(&b"{\"a\""[..])
        );
        // No contents part, an empty listing.
        let (l, c) = decode_listing("1700000100.5\n\n\n", LIST, &[]).unwrap();
        assert!(l.dirs.is_empty() && c.is_empty());
        // The poll answer: the same listing, or a new one with its hash.
        assert!(matches!(
            decode_poll("1700000100.5\nabc\n=\n").unwrap(),
            PollAnswer::Same
        ));
        match decode_poll(&format!("1700000100.5\nabc\n{}\n", gz_b64(&listing))).unwrap() {
            PollAnswer::Listed(l, h) => {
                assert_eq!(h, "abc");
                assert!(l.is_listed(Path::new("/r/run")));
            }
            PollAnswer::Same => panic!("a listing was sent"),
        }
    }

    /// Runs [`cat_files`] with `sh` on `paths` (NUL-separated on stdin) and `path` as PATH.
    fn run_cat_files(paths: &[PathBuf], path: &str) -> Vec<u8> {
        use std::io::Write;
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cat_files())
            .env("PATH", path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for p in paths {
            stdin.write_all(p.as_os_str().as_bytes()).unwrap();
            stdin.write_all(b"\0").unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success() || !out.stdout.is_empty());
        out.stdout
    }

    #[test]
    fn files_are_sent_by_perl_or_tar_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run one\nx");
        std::fs::create_dir_all(run.join("epoch_0")).unwrap();
        let a = run.join("epoch_0/validation_scores.json");
        std::fs::write(&a, b"{\"acc\": 0.5}\n").unwrap();
        // Bytes a line- or NUL-based reader would cut.
        let b = run.join("config.json");
        std::fs::write(&b, b"{\0\n\xff}").unwrap();
        let found = |p: &Path| {
            // As `find` names them below the start point `RUN/.`.
            PathBuf::from(format!(
                "{}/./{}",
                run.display(),
                p.strip_prefix(&run).unwrap().display()
            ))
        };
        let paths = vec![found(&a), run.join("missing.json"), found(&b)];
        let want: Contents = [
            (a.clone(), std::fs::read(&a).unwrap()),
            (b.clone(), std::fs::read(&b).unwrap()),
        ]
        .into_iter()
        .collect();

        let perl = run_cat_files(&paths, "/usr/bin:/bin");
        assert!(perl.starts_with(FILES_TAG), "perl is on this machine");
        assert_eq!(read_files(&perl), want);
        // A record cut short is left out, the ones before it kept.
        let cut = read_files(&perl[..perl.len() - 2]);
        assert_eq!(cut.len(), 1);
        assert!(cut.contains_key(&a));

        // Without perl on PATH: tar.
        let bin = tempfile::tempdir().unwrap();
        let tar = ["/usr/bin/tar", "/bin/tar"]
            .into_iter()
            .find(|t| Path::new(t).exists())
            .unwrap();
        std::os::unix::fs::symlink(tar, bin.path().join("tar")).unwrap();
        let tarred = run_cat_files(&paths, bin.path().to_str().unwrap());
        assert!(!tarred.starts_with(FILES_TAG));
        assert_eq!(read_files(&tarred), want);
        // Tar's blocks are far bigger for small files.
        assert!(
            tarred.len() > 4 * perl.len(),
            "{} vs {}",
            tarred.len(),
            perl.len()
        );
    }

    #[test]
    fn log_tails_parse_in_both_forms_and_stop_at_a_cut() {
        let mut bytes = b"10 5\nab\ncd".to_vec();
        bytes.extend_from_slice(b"b 3 eHl6\n");
        bytes.extend_from_slice(b"-\n");
        bytes.extend_from_slice(b"200 8\nli\nthe end");
        let tails = parse_tails(&bytes);
        assert_eq!(tails.len(), 4, "{tails:?}");
        // 5 of 10 bytes: the tail starts after the first line break.
        assert_eq!(tails[0].as_deref(), Some("cd"));
        assert_eq!(tails[1].as_deref(), Some("xyz"));
        assert_eq!(tails[2], None);
        assert_eq!(
            tails[3].as_deref(),
            Some("the e"),
            "8 bytes, cut at its line"
        );
        let tails = parse_tails(b"10 40\nshort");
        assert!(tails.is_empty(), "a record cut short ends the list");
    }

    #[test]
    fn descending_follows_find_s_names() {
        assert!(descends_into(b"epoch_0", &[]));
        assert!(descends_into(b"epoch_12x", &[]), "as find's epoch_[0-9]*");
        assert!(!descends_into(b"epoch_", &[]));
        assert!(!descends_into(b"epochs", &[]));
        assert!(descends_into(b"logs", &["logs", "out*"]));
        assert!(descends_into(b"out*", &["logs", "out*"]));
        assert_eq!(glob_literal("out*[1]"), "out\\*\\[1\\]");
        assert_eq!(start_point(Path::new("/")), Path::new("/."));
        assert_eq!(from_start_point(b"/."), Path::new("/"));
        assert_eq!(from_start_point(b"/r/a b/."), Path::new("/r/a b"));
    }
}
