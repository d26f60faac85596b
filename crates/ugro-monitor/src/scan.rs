//! Reading experiment trees from the filesystem into `ugro_core::runs::RunView`s: the parallel
//! first scan of a root (discovery and reading in one pass, symlinks never followed, unreadable
//! directories reported and skipped, non-UTF-8 names kept as paths), `read_run` (re-uses the
//! summary of complete epochs and unchanged JSON, reads only the frontier), the cheap frontier
//! check of poll mode (a few `stat`s per run), new-run discovery by directory change stamps,
//! bounded JSON reads and the bounded tail of a log. Everything here is blocking I/O: callers run
//! it off the async runtime.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use ugro_core::runs::{self as core, EpochView, FileInfo, JsonRead, RunView};

/// JSON files larger than this are not parsed (reported as unreadable).
pub const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;
/// At most this much of a log's end is read to classify a failure (the one limit, ugro-core's).
pub const LOG_TAIL_BYTES: u64 = ugro_core::runs::MAX_LOG_TAIL as u64;
/// Most log files taken from one log sub-directory of a run (`logs/`, a glob's directory).
pub const MAX_SUBDIR_LOGS: usize = 256;
/// Directories deeper than this below a root are not searched for runs.
pub const MAX_DEPTH: usize = 12;
/// JSON files read at the top of a run directory.
const RUN_JSON: [&str; 3] = [
    core::CONFIG_JSON,
    core::PROGRESS_JSON,
    core::EVALUATOR_SCORES,
];
/// JSON files read in an epoch directory (the `.json` ones of [`core::TRAINER_EXPECTED`]).
pub const EPOCH_JSON_FILES: [&str; 2] = ["optimizer_buffer.json", core::VALIDATION_SCORES];
/// A directory whose mtime is this close to the moment it was stamped may change again within
/// the same timestamp tick (coarse network-filesystem clocks): its stamp is not trusted.
const RACY: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Directory stamps

/// A directory's change stamp: creating, removing or renaming an entry changes its mtime and
/// ctime; replacing the directory changes its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// Modified within [`RACY`] of being stamped: a later change may keep the same times.
    racy: bool,
}

impl Stamp {
    fn of(meta: &fs::Metadata, now: SystemTime) -> Stamp {
        // Entry changes set the mtime; a recent (or future) one may be followed by another in
        // the same tick.
        let racy = meta.modified().map_or(true, |t| {
            now.duration_since(t).map_or(true, |age| age < RACY)
        });
        Stamp {
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            racy,
        }
    }

    /// `lstat` of `dir` now; `None` when it is gone or not a directory.
    pub fn take(dir: &Path) -> Option<Stamp> {
        let meta = fs::symlink_metadata(dir).ok()?;
        meta.is_dir().then(|| Stamp::of(&meta, SystemTime::now()))
    }

    /// Whether nothing can have changed between this stamp and `now` (a later stamp).
    pub fn unchanged(&self, now: &Stamp) -> bool {
        !self.racy && self.ino == now.ino && self.mtime == now.mtime && self.ctime == now.ctime
    }
}

/// What the frontier check of a run compares: the run dir's stamp, when the next epoch dir
/// exists its index and stamp, and the stamps of the log sub-directories read (`logs/`, the
/// directories of the root's `log_globs`), whose new files are new logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamps {
    pub dir: Stamp,
    pub epoch: Option<(u32, Stamp)>,
    pub log_dirs: LogDirsStamp,
}

/// One fingerprint of a run's log sub-directories' stamps (each present or not), so a new log
/// in `logs/` is seen by the frontier check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LogDirsStamp {
    hash: u64,
    racy: bool,
}

impl LogDirsStamp {
    fn take(dir: &Path, globs: &[String]) -> LogDirsStamp {
        LogDirsStamp::from_stamps(
            core::log_dirs(globs)
                .into_iter()
                .map(|sub| Stamp::take(&dir.join(sub))),
        )
    }

    fn unchanged(&self, now: &LogDirsStamp) -> bool {
        !self.racy && self.hash == now.hash
    }
}

/// A run directory as read: its view and the stamps its frontier check compares.
#[derive(Debug, Clone)]
pub struct ReadRun {
    pub view: RunView,
    pub stamps: Stamps,
}

// ---------------------------------------------------------------------------------------------
// Listing

fn mtime_of(meta: &fs::Metadata) -> DateTime<Utc> {
    meta.modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or_default()
}

fn file_info(meta: &fs::Metadata) -> FileInfo {
    FileInfo {
        size: meta.len(),
        mtime: mtime_of(meta),
    }
}

/// One directory's entries (with their names, lossily decoded), split into regular files and
/// directories by their `d_type` (symlinks and other kinds are neither). Entries that vanish
/// mid-listing are skipped.
struct Listing {
    files: Vec<(String, fs::DirEntry)>,
    dirs: Vec<(String, fs::DirEntry)>,
}

fn list(dir: &Path) -> std::io::Result<Listing> {
    let mut out = Listing {
        files: Vec::new(),
        dirs: Vec::new(),
    };
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Ok(ft) = entry.file_type() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            out.dirs.push((name, entry));
        } else if ft.is_file() {
            out.files.push((name, entry));
        }
    }
    Ok(out)
}

impl Listing {
    fn is_run_dir(&self) -> bool {
        let f: Vec<&str> = self.files.iter().map(|(n, _)| n.as_str()).collect();
        let d: Vec<&str> = self.dirs.iter().map(|(n, _)| n.as_str()).collect();
        core::is_run_dir(&f, &d)
    }

    /// Regular files with size and mtime (one `statx` each, relative to the open directory).
    /// A file that vanished since the listing is left out.
    fn stat_files(&self) -> BTreeMap<String, FileInfo> {
        self.files
            .iter()
            .filter_map(|(n, e)| Some((n.clone(), file_info(&e.metadata().ok()?))))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// A size for messages: `512 B`, `3.5 KiB`, `16 MiB`, `1.2 GiB` (one decimal below 10).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = bytes as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < UNITS.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 || x >= 10.0 || x.fract() == 0.0 {
        format!("{x:.0} {}", UNITS[unit])
    } else {
        format!("{x:.1} {}", UNITS[unit])
    }
}

/// Reads and parses a JSON file of known size, in one `read` when it did not grow; `keep` false
/// only validates it ([`core::validate_json`]).
fn read_json(path: &Path, info: &FileInfo, keep: bool, buf: &mut Vec<u8>) -> JsonRead {
    if info.size == 0 {
        return Err("empty".into());
    }
    if info.size > MAX_JSON_BYTES {
        return Err(format!(
            "unreadable: {}, over the {} read limit",
            human_size(info.size),
            human_size(MAX_JSON_BYTES)
        ));
    }
    // Exactly the size the stat saw (one `read` on a local filesystem): the view records that
    // size, so a file that grows since is seen as changed and read again.
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::open(path)?;
        let want = usize::try_from(info.size).unwrap_or(0);
        buf.clear();
        buf.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            match f.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(())
    })();
    if let Err(e) = result {
        return Err(format!("unreadable: {e}"));
    }
    if keep {
        core::read_json(buf)
    } else {
        core::validate_json(buf)
    }
}

/// A directory's last files and the reads of its JSON files.
pub type Reads<'a> = (
    &'a BTreeMap<String, FileInfo>,
    &'a BTreeMap<String, JsonRead>,
);

/// The JSON files `names` among a directory's `files`, each one's read re-used from `prev`
/// (that directory's last files and reads) while its size and mtime are unchanged, else made by
/// `read(name, info)`. The one reuse rule of run dirs and epoch dirs, local or remote.
pub fn reuse_or_read<'a>(
    names: impl IntoIterator<Item = &'a str>,
    files: &BTreeMap<String, FileInfo>,
    prev: Option<Reads<'_>>,
    mut read: impl FnMut(&str, &FileInfo) -> JsonRead,
) -> BTreeMap<String, JsonRead> {
    let mut json = BTreeMap::new();
    for name in names {
        let Some(info) = files.get(name) else {
            continue;
        };
        let reused = prev
            .filter(|(f, _)| f.get(name) == Some(info))
            .and_then(|(_, j)| j.get(name));
        let read = match reused {
            Some(r) => r.clone(),
            None => read(name, info),
        };
        json.insert(name.to_owned(), read);
    }
    json
}

/// The JSON files of a run dir ([`RUN_JSON_FILES`], compacted), re-using `prev`'s reads of
/// unchanged files; `read(name, info)` gives a changed file's read before compaction.
pub fn run_json_with(
    files: &BTreeMap<String, FileInfo>,
    prev: Option<&RunView>,
    mut read: impl FnMut(&str, &FileInfo) -> JsonRead,
) -> BTreeMap<String, JsonRead> {
    reuse_or_read(
        RUN_JSON,
        files,
        prev.map(|p| (&p.files, &p.json)),
        |name, info| compact(name, read(name, info)),
    )
}

/// The expected JSON files of an epoch dir ([`EPOCH_JSON_FILES`]), re-using `prev`'s reads of
/// unchanged files; `read(name, info, keep)` reads a changed one (`keep`: the value is kept,
/// the validation scores; else only validated, the optimizer buffer).
pub fn epoch_json_with(
    files: &BTreeMap<String, FileInfo>,
    prev: Option<&EpochView>,
    mut read: impl FnMut(&str, &FileInfo, bool) -> JsonRead,
) -> BTreeMap<String, JsonRead> {
    reuse_or_read(
        EPOCH_JSON_FILES,
        files,
        prev.map(|p| (&p.files, &p.json)),
        |name, info| read(name, info, name == core::VALIDATION_SCORES),
    )
}

/// The JSON files of a run dir, re-using `prev`'s parse of files whose size and mtime are
/// unchanged.
fn run_json(
    dir: &Path,
    files: &BTreeMap<String, FileInfo>,
    prev: Option<&RunView>,
    buf: &mut Vec<u8>,
) -> BTreeMap<String, JsonRead> {
    run_json_with(files, prev, |name, info| {
        read_json(&dir.join(name), info, true, buf)
    })
}

/// Keeps of a run's JSON file only what the rules read, so thousands of runs stay small:
/// `config.json` only its `epochs`; `evaluation_scores.json` its numeric leaves, flattened
/// (what the scores are made of); `progress.json` whole (generic runs report in it).
fn compact(name: &str, read: JsonRead) -> JsonRead {
    use serde_json::Value;
    read.map(|v| match (name, v) {
        (core::CONFIG_JSON, Value::Object(mut m)) => {
            let mut kept = serde_json::Map::new();
            if let Some(e) = m.remove("epochs") {
                kept.insert("epochs".to_owned(), e);
            }
            Value::Object(kept)
        }
        (core::EVALUATOR_SCORES, v) => Value::Object(
            core::flatten_scores(&v)
                .into_iter()
                .filter_map(|(k, x)| serde_json::Number::from_f64(x).map(|n| (k, Value::Number(n))))
                .collect(),
        ),
        (_, v) => v,
    })
}

// ---------------------------------------------------------------------------------------------
// Runs

/// Reads one epoch directory: its files' size and mtime, and its expected JSON files (scores
/// kept, the optimizer buffer only validated), re-using `prev`'s reads of unchanged files.
fn read_epoch(
    dir: &Path,
    prev: Option<&EpochView>,
    buf: &mut Vec<u8>,
) -> std::io::Result<EpochView> {
    let files = list(dir)?.stat_files();
    let json = epoch_json_with(&files, prev, |name, info, keep| {
        read_json(&dir.join(name), info, keep, buf)
    });
    Ok(EpochView { files, json })
}

/// Whether `prev`'s summary of complete epochs still applies: their dirs all still exist.
pub fn summary_holds(prev: &RunView, epoch_dirs: &[u32]) -> bool {
    let n = prev.completed.count() as usize;
    n == 0 || (epoch_dirs.len() >= n && epoch_dirs[n - 1] as usize == n - 1)
}

/// Builds a run's view from its listing: the files' stat, the run JSON, the summary of
/// complete epochs (re-used from `prev` while their dirs exist) and the frontier epoch.
fn read_listed(
    dir: &Path,
    dir_stamp: Stamp,
    listing: &Listing,
    prev: Option<&RunView>,
    globs: &[String],
    buf: &mut Vec<u8>,
) -> ReadRun {
    let mut view = RunView {
        files: listing.stat_files(),
        log_globs: globs.to_vec(),
        ..RunView::default()
    };
    let log_dirs = LogDirsStamp::take(dir, globs);
    read_log_dirs(dir, listing, &mut view);
    for (name, _) in &listing.dirs {
        view.add_subdir(name);
    }
    view.json = run_json(dir, &view.files, prev, buf);
    let epoch_stamp = read_epochs(
        &mut view,
        prev,
        |i, prev_e| read_epoch(&dir.join(format!("epoch_{i}")), prev_e, buf).ok(),
        |i| Stamp::take(&dir.join(format!("epoch_{i}"))),
    );
    ReadRun {
        view,
        stamps: Stamps {
            dir: dir_stamp,
            epoch: epoch_stamp,
            log_dirs,
        },
    }
}

/// Adds the logs of a run's log sub-directories (`logs/*.log`, files matching a `DIR/…` glob;
/// at most [`MAX_SUBDIR_LOGS`] each, no symlinks) to `view.files` as `DIR/NAME`.
/// The caller stamps those directories first ([`LogDirsStamp`]).
fn read_log_dirs(dir: &Path, listing: &Listing, view: &mut RunView) {
    let globs = view.log_globs.clone();
    for sub in core::log_dirs(&globs) {
        if !listing.dirs.iter().any(|(n, _)| n == sub) {
            continue;
        }
        let Ok(l) = list(&dir.join(sub)) else {
            continue;
        };
        let mut taken = 0;
        for (name, entry) in &l.files {
            let rel = format!("{sub}/{name}");
            if taken >= MAX_SUBDIR_LOGS
                || !core::is_run_log(core::RunnerKind::Unknown, &view.log_globs, &rel)
                || (sub != core::LOGS_DIR
                    && !view.log_globs.iter().any(|g| core::glob_match(g, &rel)))
            {
                continue;
            }
            if let Ok(meta) = entry.metadata() {
                view.files.insert(rel, file_info(&meta));
                taken += 1;
            }
        }
    }
}

/// Reads a run directory. With `prev` (the last view of the same run), the summary of complete
/// epochs is re-used while their dirs exist and unchanged JSON is not parsed again; only the
/// frontier (the first incomplete epoch) is read. The root's `log_globs` are `prev`'s (none
/// without it; see [`read_run_with`]).
pub fn read_run(dir: &Path, prev: Option<&RunView>) -> std::io::Result<ReadRun> {
    let globs = prev.map(|p| p.log_globs.clone()).unwrap_or_default();
    read_run_with(dir, prev, &globs)
}

/// [`read_run`] with the root's `log_globs`.
pub fn read_run_with(
    dir: &Path,
    prev: Option<&RunView>,
    globs: &[String],
) -> std::io::Result<ReadRun> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not a directory",
        ));
    }
    let stamp = Stamp::of(&meta, SystemTime::now());
    let listing = list(dir)?;
    let mut buf = Vec::new();
    Ok(read_listed(dir, stamp, &listing, prev, globs, &mut buf))
}

/// The frontier check of poll mode: `stat`s of the run dir, of its files and, when the next
/// epoch dir exists, of that dir and its files. True when none changed since `stamps` and `view`
/// were taken, so the run need not be read. Files whose names are not valid UTF-8 are not
/// checked (their changes are seen when the directory changes).
pub fn unchanged(dir: &Path, view: &RunView, stamps: &Stamps) -> bool {
    let now = SystemTime::now();
    let dir_same = |p: &Path, old: &Stamp| {
        fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && old.unchanged(&Stamp::of(&m, now)))
    };
    let mut path = dir.to_path_buf();
    let files_same = |path: &mut PathBuf, files: &BTreeMap<String, FileInfo>| {
        files.iter().all(|(name, info)| {
            if name.contains(char::REPLACEMENT_CHARACTER) {
                return true;
            }
            // `logs/NAME`: pushed as two components, popped as two.
            path.push(name);
            let same = fs::symlink_metadata(&*path).is_ok_and(|m| file_info(&m) == *info);
            for _ in 0..=name.matches('/').count() {
                path.pop();
            }
            same
        })
    };
    if !dir_same(&path, &stamps.dir) || !files_same(&mut path, &view.files) {
        return false;
    }
    if !stamps
        .log_dirs
        .unchanged(&LogDirsStamp::take(dir, &view.log_globs))
    {
        return false;
    }
    match stamps.epoch {
        None => true,
        Some((i, stamp)) => {
            let Some(e) = view.epochs.get(&i) else {
                return false;
            };
            path.push(format!("epoch_{i}"));
            dir_same(&path, &stamp) && files_same(&mut path, &e.files)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The first scan of a root, and new-run discovery

/// The directories under a root that are not runs (the root included), with their stamps: a
/// poll cycle re-lists only those whose stamp changed to find new runs.
#[derive(Debug, Default)]
pub struct Tree {
    dirs: HashMap<PathBuf, (Stamp, usize)>,
}

impl Tree {
    /// The searched directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.dirs.keys().map(PathBuf::as_path)
    }

    pub fn contains(&self, dir: &Path) -> bool {
        self.dirs.contains_key(dir)
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }
}

/// Everything the first scan of a root found.
#[derive(Debug, Default)]
pub struct RootScan {
    pub runs: Vec<(PathBuf, ReadRun)>,
    pub problems: Vec<String>,
    pub tree: Tree,
}

/// The shared work list of a scan: directories to visit and how many are being visited.
struct Work {
    queue: Mutex<(Vec<(PathBuf, usize)>, usize)>,
    more: Condvar,
}

impl Work {
    /// The next directory to visit, waiting while others may still add some; None when done.
    fn next(&self) -> Option<(PathBuf, usize)> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(item) = q.0.pop() {
                q.1 += 1;
                return Some(item);
            }
            if q.1 == 0 {
                return None;
            }
            q = self.more.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self, children: Vec<(PathBuf, usize)>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.0.extend(children);
        q.1 -= 1;
        drop(q);
        self.more.notify_all();
    }
}

/// What one directory turned out to be.
enum Visit {
    Run(PathBuf, Box<ReadRun>),
    Dir(PathBuf, Stamp, usize, Vec<(PathBuf, usize)>),
    Problem(String),
    Nothing,
}

fn visit(
    root: &Path,
    dir: PathBuf,
    depth: usize,
    prev: &(dyn Fn(&Path) -> Option<std::sync::Arc<RunView>> + Sync),
    globs: &[String],
    buf: &mut Vec<u8>,
) -> Visit {
    let problem = |e: std::io::Error| {
        if dir == root || e.kind() != std::io::ErrorKind::NotFound {
            Visit::Problem(format!("cannot read {}: {e}", dir.display()))
        } else {
            Visit::Nothing
        }
    };
    let meta = match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return Visit::Nothing,
        Err(e) => return problem(e),
    };
    let stamp = Stamp::of(&meta, SystemTime::now());
    let listing = match list(&dir) {
        Ok(l) => l,
        Err(e) => return problem(e),
    };
    if dir != root && listing.is_run_dir() {
        let p = prev(&dir);
        let read = read_listed(&dir, stamp, &listing, p.as_deref(), globs, buf);
        return Visit::Run(dir, Box::new(read));
    }
    let children = if depth < MAX_DEPTH {
        listing
            .dirs
            .iter()
            .map(|(_, d)| (d.path(), depth + 1))
            .collect()
    } else {
        Vec::new()
    };
    Visit::Dir(dir, stamp, depth, children)
}

/// Discovers and reads every run under `root` on `threads` threads (discovery and reading in
/// one pass over a shared work list). `prev` gives the last view of a run dir, whose complete
/// epochs and unchanged JSON are re-used. A run directory is not searched further.
pub fn scan_root(
    root: &Path,
    prev: &(dyn Fn(&Path) -> Option<std::sync::Arc<RunView>> + Sync),
    threads: usize,
) -> RootScan {
    scan_root_with(root, prev, threads, &[])
}

/// [`scan_root`] with the root's `log_globs`.
pub fn scan_root_with(
    root: &Path,
    prev: &(dyn Fn(&Path) -> Option<std::sync::Arc<RunView>> + Sync),
    threads: usize,
    globs: &[String],
) -> RootScan {
    let work = Work {
        queue: Mutex::new((vec![(root.to_path_buf(), 0)], 0)),
        more: Condvar::new(),
    };
    let worker = || {
        let mut out = RootScan::default();
        let mut buf = Vec::new();
        while let Some((dir, depth)) = work.next() {
            let mut children = Vec::new();
            match visit(root, dir, depth, prev, globs, &mut buf) {
                Visit::Run(d, r) => out.runs.push((d, *r)),
                Visit::Dir(d, stamp, depth, c) => {
                    out.tree.dirs.insert(d, (stamp, depth));
                    children = c;
                }
                Visit::Problem(p) => out.problems.push(p),
                Visit::Nothing => {}
            }
            work.done(children);
        }
        out
    };
    // `threads - 1` helpers and this thread (which alone does the work if none can start).
    let results: Vec<RootScan> = std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads.max(1))
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("ugro-scan".into())
                    .spawn_scoped(s, worker)
                    .ok()
            })
            .collect();
        let mut results = vec![worker()];
        results.extend(helpers.into_iter().filter_map(|h| h.join().ok()));
        results
    });
    let mut all = RootScan::default();
    for r in results {
        all.runs.extend(r.runs);
        all.problems.extend(r.problems);
        all.tree.dirs.extend(r.tree.dirs);
    }
    all.runs.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Finds runs that appeared under the directories of `tree` since it was taken: `stat`s every
/// known non-run directory and re-lists only those whose stamp changed (or was racy). New
/// sub-directories are searched like in the first scan; directories that are gone are dropped.
/// `is_known` tells the run dirs already tracked. Returns the new run dirs and the problems.
pub fn poll_tree(
    root: &Path,
    tree: &mut Tree,
    is_known: &dyn Fn(&Path) -> bool,
) -> (Vec<PathBuf>, Vec<String>) {
    let now = SystemTime::now();
    let mut changed = Vec::new();
    let mut gone = Vec::new();
    for (dir, (stamp, depth)) in &tree.dirs {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {
                let new = Stamp::of(&m, now);
                if !stamp.unchanged(&new) {
                    changed.push((dir.clone(), new, *depth));
                }
            }
            _ => gone.push(dir.clone()),
        }
    }
    for d in gone {
        tree.dirs.remove(&d);
    }
    // The root is searched again as long as it is missing (it may appear later).
    if !tree.dirs.contains_key(root) && Stamp::take(root).is_some() {
        changed.push((root.to_path_buf(), racy_stamp(root), 0));
    }
    let mut new_runs = Vec::new();
    let mut problems = Vec::new();
    let mut stack: Vec<(PathBuf, Option<Stamp>, usize)> = changed
        .into_iter()
        .map(|(d, s, depth)| (d, Some(s), depth))
        .collect();
    while let Some((dir, stamp, depth)) = stack.pop() {
        let Some(stamp) = stamp.or_else(|| Stamp::take(&dir)) else {
            continue;
        };
        let listing = match list(&dir) {
            Ok(l) => l,
            Err(e) => {
                if dir == root || e.kind() != std::io::ErrorKind::NotFound {
                    problems.push(format!("cannot read {}: {e}", dir.display()));
                }
                tree.dirs.remove(&dir);
                continue;
            }
        };
        if dir != root && listing.is_run_dir() {
            // A searched directory that became a run.
            tree.dirs.remove(&dir);
            if !is_known(&dir) {
                new_runs.push(dir);
            }
            continue;
        }
        tree.dirs.insert(dir, (stamp, depth));
        if depth >= MAX_DEPTH {
            continue;
        }
        for (_, d) in &listing.dirs {
            let p = d.path();
            if !tree.dirs.contains_key(&p) && !is_known(&p) {
                stack.push((p, None, depth + 1));
            }
        }
    }
    new_runs.sort();
    (new_runs, problems)
}

/// A stamp of `root` that is never trusted, so the next look lists it.
fn racy_stamp(root: &Path) -> Stamp {
    let s = Stamp::take(root).unwrap_or(Stamp {
        ino: 0,
        mtime: (0, 0),
        ctime: (0, 0),
        racy: true,
    });
    Stamp { racy: true, ..s }
}

/// The last `LOG_TAIL_BYTES` of a file, lossily decoded, starting at a line boundary.
pub fn log_tail(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    f.take(LOG_TAIL_BYTES).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Ok(if start > 0 {
        text.split_once('\n')
            .map_or(text.clone(), |(_, rest)| rest.to_string())
    } else {
        text
    })
}

// ---------------------------------------------------------------------------------------------
// Building blocks for a root listed elsewhere (another node's disk, listed over SSH)

impl Stamp {
    /// A stamp from a `stat` taken elsewhere: inode, mtime and ctime as (seconds, nanoseconds),
    /// and how long before the listing's own clock reading the directory was modified.
    pub fn from_parts(
        ino: u64,
        mtime: (i64, i64),
        ctime: (i64, i64),
        age: Option<Duration>,
    ) -> Stamp {
        Stamp {
            ino,
            mtime,
            ctime,
            racy: age.is_none_or(|a| a < RACY),
        }
    }
}

impl LogDirsStamp {
    /// The fingerprint of a run's log sub-directories' stamps, in [`core::log_dirs`] order
    /// (`None`: that directory is not there).
    pub fn from_stamps(stamps: impl IntoIterator<Item = Option<Stamp>>) -> LogDirsStamp {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let mut racy = false;
        for s in stamps {
            if let Some(s) = s {
                racy |= s.racy;
                (s.ino, s.mtime, s.ctime).hash(&mut h);
            } else {
                0u8.hash(&mut h);
            }
        }
        LogDirsStamp {
            hash: h.finish(),
            racy,
        }
    }

    /// Whether nothing can have changed between this fingerprint and `now`.
    pub fn same_as(&self, now: &LogDirsStamp) -> bool {
        self.unchanged(now)
    }
}

impl Tree {
    /// Adds (or updates) a searched directory with its stamp and depth below the root.
    pub fn insert(&mut self, dir: PathBuf, stamp: Stamp, depth: usize) {
        self.dirs.insert(dir, (stamp, depth));
    }

    /// Drops a searched directory.
    pub fn remove(&mut self, dir: &Path) {
        self.dirs.remove(dir);
    }

    /// The searched directories with their stamps and depths.
    pub fn entries(&self) -> impl Iterator<Item = (&Path, Stamp, usize)> {
        self.dirs
            .iter()
            .map(|(d, (s, depth))| (d.as_path(), *s, *depth))
    }
}

/// A JSON file's read from bytes fetched elsewhere, as [`read_run`] makes it: `info` is the
/// listed size and mtime, `bytes` what was fetched (`None`: could not be), cut to the listed
/// size; `keep` false only validates. (Run-level files are compacted by [`run_json_with`].)
pub fn json_from_bytes(info: &FileInfo, bytes: Option<&[u8]>, keep: bool) -> JsonRead {
    if info.size == 0 {
        return Err("empty".into());
    }
    if info.size > MAX_JSON_BYTES {
        return Err(format!(
            "unreadable: {}, over the {} read limit",
            human_size(info.size),
            human_size(MAX_JSON_BYTES)
        ));
    }
    let Some(bytes) = bytes else {
        return Err("unreadable: could not be fetched".into());
    };
    let bytes = &bytes[..bytes
        .len()
        .min(usize::try_from(info.size).unwrap_or(usize::MAX))];
    if keep {
        core::read_json(bytes)
    } else {
        core::validate_json(bytes)
    }
}

/// The JSON files read at the top of a run directory.
pub const RUN_JSON_FILES: [&str; 3] = RUN_JSON;

/// Whether a run's summary of complete epochs still applies to its epoch dirs now.
/// Reads a run's epochs from the first one its summary does not hold (the summary of `prev`
/// is re-used while its epoch dirs are all there): each complete epoch goes into the summary,
/// the first incomplete one (the frontier) into `view.epochs`, with its stamp. `read` gives
/// epoch `i` (`None`: vanished or unreadable, the count stops there), with its previous read;
/// `stamp` stats epoch `i`'s dir, after the read, so a change in between leaves a racy stamp.
/// Local and remote reads differ only in those two.
pub fn read_epochs(
    view: &mut RunView,
    prev: Option<&RunView>,
    mut read: impl FnMut(u32, Option<&EpochView>) -> Option<EpochView>,
    stamp: impl Fn(u32) -> Option<Stamp>,
) -> Option<(u32, Stamp)> {
    if let Some(p) = prev
        && summary_holds(p, &view.epoch_dirs)
    {
        view.completed = p.completed.clone();
    }
    view.epoch_dirs.shrink_to_fit();
    let mut epoch_stamp = None;
    let mut i = view.completed.count();
    while view.epoch_dirs.binary_search(&i).is_ok() {
        let Some(e) = read(i, prev.and_then(|p| p.epochs.get(&i))) else {
            break;
        };
        if view.completed.push(&e) {
            i += 1;
            continue;
        }
        epoch_stamp = stamp(i).map(|s| (i, s));
        view.epochs.insert(i, e);
        break;
    }
    view.completed.times.shrink_to_fit();
    epoch_stamp
}

/// The bounded tail of a log from its size and its last bytes, as [`log_tail`] cuts it (from a
/// line boundary when the file is longer than the tail).
pub fn tail_from_bytes(size: u64, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    if size > bytes.len() as u64 {
        text.split_once('\n')
            .map_or(text.clone(), |(_, rest)| rest.to_string())
    } else {
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    fn touch(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// Sets a file's or directory's mtime `secs` seconds into the past.
    fn age(p: &Path, secs: u64) {
        let t = SystemTime::now() - Duration::from_secs(secs);
        let f = fs::File::open(p).unwrap();
        f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }

    fn epoch(run: &Path, i: u32) {
        let d = run.join(format!("epoch_{i}"));
        touch(&d.join("training_losses.pt"), "xx");
        touch(&d.join("optimizer_buffer.json"), "{}");
        touch(
            &d.join("validation_scores.json"),
            &format!("{{\"val\": {{\"acc\": 0.{i}}}}}"),
        );
    }

    /// Ages every entry of a run (files and dirs) so its stamps are not racy.
    fn settle(run: &Path) {
        for e in fs::read_dir(run).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                settle(&e.path());
            } else {
                age(&e.path(), 60);
            }
        }
        age(run, 60);
    }

    fn ids(root: &Path, runs: &[PathBuf]) -> Vec<String> {
        runs.iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn discovery_finds_nested_runs_not_epoch_dirs_and_survives_bad_dirs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        epoch(&r.join("exp1/run_a"), 0);
        touch(&r.join("exp1/run_a/sub/run_x/config.json"), "{}"); // inside a run: not a run
        touch(&r.join("exp1/run_b/evaluation_scores.json"), "{}");
        touch(&r.join("exp2/deep/run_c/train_val_1.log"), "x");
        touch(&r.join("exp2/notes/readme.txt"), "not a run");
        std::os::unix::fs::symlink(r, r.join("exp2/loop")).unwrap();
        let locked = r.join("locked");
        fs::create_dir_all(locked.join("run_d")).unwrap();
        touch(&locked.join("run_d/config.json"), "{}");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        // Discovery alone (a tree not seen before) and the first scan.
        let (found, problems) = poll_tree(r, &mut Tree::default(), &|_| false);
        let scanned = scan_root(r, &|_| None, 3);
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        // Root may read 0o000 dirs; as another user the locked dir is a reported problem.
        let mut expected = vec!["exp1/run_a", "exp1/run_b", "exp2/deep/run_c"];
        if ids(r, &found).len() == 4 {
            expected.push("locked/run_d");
        } else {
            assert!(
                problems.iter().any(|p| p.contains("locked")),
                "{problems:?}"
            );
        }
        assert_eq!(ids(r, &found), expected);
        let scanned_ids: Vec<String> = ids(
            r,
            &scanned
                .runs
                .iter()
                .map(|(p, _)| p.clone())
                .collect::<Vec<_>>(),
        );
        assert_eq!(
            scanned_ids, expected,
            "the parallel scan finds the same runs"
        );
        // The searched directories are remembered for polling; runs and epoch dirs are not.
        assert!(scanned.tree.dirs.contains_key(r));
        assert!(scanned.tree.dirs.contains_key(&r.join("exp2/notes")));
        assert!(!scanned.tree.dirs.contains_key(&r.join("exp1/run_a")));
        assert!(!scanned.tree.dirs.contains_key(&r.join("exp2/loop")));
    }

    #[test]
    fn the_first_scan_reads_every_run_like_read_run() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for g in 0..4 {
            for k in 0..5 {
                let run = r.join(format!("g{g}/run_{k}"));
                touch(&run.join("config.json"), "{\"epochs\": 9}");
                for i in 0..k {
                    epoch(&run, i);
                }
            }
        }
        touch(&r.join("g0/run_4/epoch_4/training_losses.pt"), "x"); // a frontier epoch
        let scanned = scan_root(r, &|_| None, 2);
        assert_eq!(scanned.runs.len(), 20);
        for (dir, read) in &scanned.runs {
            let alone = read_run(dir, None).unwrap();
            assert_eq!(read.view, alone.view, "{}", dir.display());
            let k: u32 = dir
                .to_string_lossy()
                .rsplit('_')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(read.view.completed.count(), k, "{}", dir.display());
            assert!(read.view.epochs.keys().all(|i| *i >= k));
        }
        let frontier = &scanned
            .runs
            .iter()
            .find(|(d, _)| d.ends_with("g0/run_4"))
            .unwrap()
            .1;
        assert_eq!(frontier.view.epochs.keys().collect::<Vec<_>>(), [&4]);
        assert_eq!(frontier.stamps.epoch.map(|(i, _)| i), Some(4));
    }

    #[test]
    fn frontier_read_reuses_complete_epochs_and_sees_new_ones() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        for i in 0..3 {
            epoch(&run, i);
        }
        let v1 = read_run(&run, None).unwrap().view;
        assert_eq!(core::completed_epochs(&v1), 3);
        assert!(
            v1.epochs.is_empty(),
            "complete epochs are summarised, not kept"
        );
        epoch(&run, 3);
        let v2 = read_run(&run, Some(&v1)).unwrap().view;
        assert_eq!(core::completed_epochs(&v2), 4);
        // The summary is re-used, not re-read: a fake summary survives while its dirs exist.
        let mut fake = v2.clone();
        fake.completed.latest = core::Scores::from([("fake".into(), 1.0)]);
        let v3 = read_run(&run, Some(&fake)).unwrap().view;
        assert_eq!(v3.completed.latest, fake.completed.latest);
        // A corrupt file in the next epoch stops the count there.
        touch(&run.join("epoch_4/training_losses.pt"), "x");
        touch(&run.join("epoch_4/optimizer_buffer.json"), "{not json");
        touch(&run.join("epoch_4/validation_scores.json"), "{}");
        let v4 = read_run(&run, Some(&v2)).unwrap().view;
        assert_eq!(core::completed_epochs(&v4), 4);
        assert!(
            v4.epochs[&4].json["optimizer_buffer.json"]
                .as_ref()
                .unwrap_err()
                .starts_with("invalid JSON"),
            "{v4:?}"
        );
        // A summarised epoch dir that disappears makes the run be read from scratch.
        fs::remove_dir_all(run.join("epoch_1")).unwrap();
        let v5 = read_run(&run, Some(&fake)).unwrap().view;
        assert_eq!(core::completed_epochs(&v5), 1);
        assert_ne!(v5.completed.latest, fake.completed.latest);
    }

    #[test]
    fn json_is_not_reread_while_unchanged() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        touch(&run.join("config.json"), "{\"epochs\": 5}");
        let v1 = read_run(&run, None).unwrap().view;
        assert_eq!(v1.json["config.json"].as_ref().unwrap()["epochs"], 5);
        let mut fake = v1.clone();
        fake.json
            .insert("config.json".into(), Ok(serde_json::json!({"epochs": 7})));
        let v2 = read_run(&run, Some(&fake)).unwrap().view;
        assert_eq!(
            v2.json["config.json"].as_ref().unwrap()["epochs"],
            7,
            "re-used"
        );
        touch(&run.join("config.json"), "{\"epochs\": 50}");
        let v3 = read_run(&run, Some(&fake)).unwrap().view;
        assert_eq!(v3.json["config.json"].as_ref().unwrap()["epochs"], 50);
    }

    #[test]
    fn epoch_json_reads_only_changed_files_and_keeps_only_the_scores() {
        let expected: Vec<&str> = core::TRAINER_EXPECTED
            .iter()
            .copied()
            .filter(|n| n.ends_with(".json"))
            .collect();
        let mut names = EPOCH_JSON_FILES.to_vec();
        names.sort_unstable();
        assert_eq!(names, expected, "EPOCH_JSON_FILES follows TRAINER_EXPECTED");
        let t = Utc::now();
        let fi = |size| FileInfo { size, mtime: t };
        let files: BTreeMap<String, FileInfo> = [
            ("training_losses.pt".to_owned(), fi(9)),
            ("optimizer_buffer.json".to_owned(), fi(2)),
            ("validation_scores.json".to_owned(), fi(8)),
        ]
        .into();
        let mut asked = Vec::new();
        let first = epoch_json_with(&files, None, |name, _, keep| {
            asked.push((name.to_owned(), keep));
            Ok(serde_json::json!(name))
        });
        asked.sort();
        assert_eq!(
            asked,
            [
                ("optimizer_buffer.json".to_owned(), false),
                ("validation_scores.json".to_owned(), true)
            ]
        );
        assert_eq!(first.len(), 2, "only the JSON files: {first:?}");
        // Unchanged files are re-used; a changed size is read again.
        let prev = EpochView {
            files: files.clone(),
            json: first,
        };
        let mut grown = files.clone();
        grown.insert("validation_scores.json".into(), fi(9));
        let mut again = Vec::new();
        let second = epoch_json_with(&grown, Some(&prev), |name, _, _| {
            again.push(name.to_owned());
            Ok(serde_json::json!("new"))
        });
        assert_eq!(again, ["validation_scores.json"]);
        assert_eq!(
            second["optimizer_buffer.json"],
            Ok(serde_json::json!("optimizer_buffer.json"))
        );
        assert_eq!(
            second["validation_scores.json"],
            Ok(serde_json::json!("new"))
        );
    }

    #[test]
    fn json_reads_are_bounded_and_report_why() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("x.json");
        let mut buf = Vec::new();
        let info = |size| FileInfo {
            size,
            mtime: Utc::now(),
        };
        fs::write(&p, "{\"a\": [1, 2]}").unwrap();
        assert_eq!(
            read_json(&p, &info(13), true, &mut buf),
            Ok(serde_json::json!({"a": [1, 2]}))
        );
        assert_eq!(
            read_json(&p, &info(13), false, &mut buf),
            Ok(serde_json::Value::Null)
        );
        assert_eq!(read_json(&p, &info(0), true, &mut buf), Err("empty".into()));
        let big = read_json(&p, &info(500 * 1024 * 1024), true, &mut buf).unwrap_err();
        assert_eq!(big, "unreadable: 500 MiB, over the 16 MiB read limit");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(512), "512 B");
        // Only the size the stat saw is read: the rest is seen as a change next time.
        assert!(read_json(&p, &info(6), true, &mut buf).is_err());
        let gone = read_json(&root.path().join("nope.json"), &info(5), true, &mut buf);
        assert!(gone.unwrap_err().starts_with("unreadable"));
    }

    #[test]
    fn an_oversized_scores_file_is_named_in_the_diagnostic() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        touch(&run.join("config.json"), "{\"epochs\": 10}");
        for i in 0..3 {
            epoch(&run, i);
        }
        epoch(&run, 3);
        // 500 MiB, sparse: no disk used, and never read.
        let big = fs::File::options()
            .write(true)
            .open(run.join("epoch_3/validation_scores.json"))
            .unwrap();
        big.set_len(500 * 1024 * 1024).unwrap();
        let r = read_run(&run, None).unwrap();
        let e = core::evaluate(&r.view, None);
        assert_eq!(e.progress.completed_epochs, 3);
        assert_eq!(
            e.diagnostic.as_deref(),
            Some(
                "epoch_3/validation_scores.json unreadable: 500 MiB, over the 16 MiB read limit; \
                 epochs from 3 on are not counted"
            )
        );
    }

    #[test]
    fn the_frontier_check_sees_every_change_that_matters() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        touch(&run.join("config.json"), "{\"epochs\": 5}");
        touch(&run.join("train_val.log"), "epoch 0\n");
        for i in 0..2 {
            epoch(&run, i);
        }
        touch(&run.join("epoch_2/training_losses.pt"), "x");
        settle(&run);
        let fresh = |what: &str| {
            let r = read_run(&run, None).unwrap();
            assert!(
                unchanged(&run, &r.view, &r.stamps),
                "{what}: just read, settled: unchanged"
            );
            r
        };
        let check = |what: &str, r: &ReadRun, change: &dyn Fn()| {
            change();
            assert!(!unchanged(&run, &r.view, &r.stamps), "{what} is a change");
            settle(&run);
        };
        let r = fresh("start");
        assert_eq!(r.stamps.epoch.map(|(i, _)| i), Some(2));
        check("a log written", &r, &|| {
            fs::write(run.join("train_val.log"), "epoch 0\nepoch 1\n").unwrap()
        });
        let r = fresh("after the log");
        check("a file written in the frontier epoch", &r, &|| {
            fs::write(run.join("epoch_2/training_losses.pt"), "xy").unwrap()
        });
        let r = fresh("after the frontier file");
        check("a new file in the frontier epoch", &r, &|| {
            touch(&run.join("epoch_2/optimizer_buffer.json"), "{}")
        });
        let r = fresh("after the new frontier file");
        check("a new log", &r, &|| {
            touch(&run.join("train_val_2.log"), "x")
        });
        let r = fresh("after the new log");
        check("progress.json rewritten in place", &r, &|| {
            touch(&run.join("config.json"), "{\"epochs\": 6}")
        });
        let r = fresh("after config");
        fs::remove_dir_all(&run).unwrap();
        assert!(!unchanged(&run, &r.view, &r.stamps), "the run dir removed");
        // A change inside a summarised epoch is not looked at (complete epochs do not change).
        touch(&run.join("config.json"), "{}");
        epoch(&run, 0);
        epoch(&run, 1);
        settle(&run);
        let r = fresh("rebuilt");
        assert_eq!(r.stamps.epoch, None, "no next epoch dir");
        fs::write(run.join("epoch_0/validation_scores.json"), "{\"b\": 2}").unwrap();
        assert!(unchanged(&run, &r.view, &r.stamps));
        // The next epoch dir appearing changes the run dir.
        fs::create_dir(run.join("epoch_2")).unwrap();
        assert!(!unchanged(&run, &r.view, &r.stamps));
    }

    #[test]
    fn logs_in_the_logs_subfolder_and_globs_are_read_and_watched() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("training_logs");
        touch(&run.join("progress.json"), "{\"mission_current\": 1}");
        touch(&run.join("logs/training_20251110.log"), "start\n");
        touch(&run.join("logs/notes.txt"), "not a log");
        touch(&run.join("stdout/job.out"), "out\n");
        touch(&run.join("stdout/job.log"), "not matched by the glob\n");
        settle(&run);
        age(&run.join("logs"), 60);
        age(&run.join("stdout"), 60);
        let globs = vec!["stdout/*.out".to_string()];
        let r = read_run_with(&run, None, &globs).unwrap();
        let names: Vec<&str> = r.view.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "logs/training_20251110.log",
                "progress.json",
                "stdout/job.out"
            ]
        );
        assert!(unchanged(&run, &r.view, &r.stamps), "settled: unchanged");
        // The globs carry over to the next read through the previous view.
        let again = read_run(&run, Some(&r.view)).unwrap();
        assert_eq!(again.view.files.len(), 3);
        fs::write(run.join("logs/training_20251110.log"), "start\nmore\n").unwrap();
        assert!(!unchanged(&run, &r.view, &r.stamps), "a log in logs/ grew");
        let r = read_run_with(&run, None, &globs).unwrap();
        age(&run.join("logs"), 60);
        let r2 = read_run_with(&run, None, &globs).unwrap();
        assert!(unchanged(&run, &r2.view, &r2.stamps));
        touch(&run.join("logs/training_20251111.log"), "new\n");
        assert!(!unchanged(&run, &r2.view, &r2.stamps), "a new log in logs/");
        drop(r);
    }

    #[test]
    fn a_recently_changed_dir_is_not_trusted() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        touch(&run.join("config.json"), "{}");
        // Just written: the stamp is racy, so the check says "look again" even without change.
        let r = read_run(&run, None).unwrap();
        assert!(!unchanged(&run, &r.view, &r.stamps));
        settle(&run);
        let r = read_run(&run, None).unwrap();
        assert!(unchanged(&run, &r.view, &r.stamps));
    }

    #[test]
    fn polling_the_tree_finds_new_runs_only_where_dirs_changed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        touch(&r.join("g1/run_a/config.json"), "{}");
        touch(&r.join("g2/sweep/run_b/config.json"), "{}");
        fs::create_dir_all(r.join("g3/empty")).unwrap();
        for d in [
            "g1/run_a",
            "g1",
            "g2/sweep/run_b",
            "g2/sweep",
            "g2",
            "g3/empty",
            "g3",
        ] {
            age(&r.join(d), 60);
        }
        age(r, 60);
        let mut scanned = scan_root(r, &|_| None, 2);
        let known: std::cell::RefCell<std::collections::HashSet<PathBuf>> =
            std::cell::RefCell::new(scanned.runs.iter().map(|(d, _)| d.clone()).collect());
        let is_known = |d: &Path| known.borrow().contains(d);
        assert_eq!(
            poll_tree(r, &mut scanned.tree, &is_known),
            (Vec::new(), Vec::new())
        );
        // New runs: in a new sweep dir, in a known empty dir, and a dir that became a run.
        touch(&r.join("g2/sweep2/run_c/train_val.log"), "x");
        touch(&r.join("g3/empty/run_d/progress.json"), "{}");
        touch(&r.join("g1/later/eval_1.log"), "x");
        let (new, problems) = poll_tree(r, &mut scanned.tree, &is_known);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            ids(r, &new),
            ["g1/later", "g2/sweep2/run_c", "g3/empty/run_d"]
        );
        known.borrow_mut().extend(new);
        let (new, _) = poll_tree(r, &mut scanned.tree, &is_known);
        assert!(new.is_empty(), "found once: {new:?}");
        // A removed directory is forgotten.
        fs::remove_dir_all(r.join("g3")).unwrap();
        let (new, _) = poll_tree(r, &mut scanned.tree, &is_known);
        assert!(new.is_empty());
        assert!(
            !scanned
                .tree
                .dirs
                .keys()
                .any(|d| d.starts_with(r.join("g3")))
        );
        // A root that does not exist yet is looked for again each time.
        let missing = r.join("later-root");
        let mut tree = Tree::default();
        assert_eq!(
            poll_tree(&missing, &mut tree, &|_| false).0,
            Vec::<PathBuf>::new()
        );
        touch(&missing.join("x/run/config.json"), "{}");
        assert_eq!(
            ids(&missing, &poll_tree(&missing, &mut tree, &|_| false).0),
            ["x/run"]
        );
    }

    #[test]
    fn previous_views_are_reused_by_the_full_rescan() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("g/run");
        for i in 0..3 {
            epoch(&run, i);
        }
        let first = scan_root(root.path(), &|_| None, 2);
        let mut fake = first.runs[0].1.view.clone();
        fake.completed.best = core::Scores::from([("fake".into(), 2.0)]);
        let fake = Arc::new(fake);
        let again = scan_root(root.path(), &|d| (d == run).then(|| Arc::clone(&fake)), 2);
        assert_eq!(again.runs[0].1.view.completed.best, fake.completed.best);
    }

    #[test]
    fn log_tail_is_bounded_and_starts_at_a_line() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("train_val.log");
        let line = "x".repeat(99) + "\n";
        fs::write(&p, line.repeat(2000)).unwrap();
        let t = log_tail(&p).unwrap();
        assert!(t.len() <= LOG_TAIL_BYTES as usize);
        assert!(t.starts_with('x') && t.lines().all(|l| l.len() == 99));
    }
}
