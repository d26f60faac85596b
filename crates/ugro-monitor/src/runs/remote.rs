//! A root on another node's disk ([`RemoteRoot`]): the same [`RootSource`] as a local root,
//! over that node's one SSH session (the health loop's). A listing is one exec of `find`
//! (`-printf` of type, size, mtime, ctime, inode and path, NUL-separated) for a batch of
//! directories; file contents are one exec of `tar` of the files whose stamp changed; every
//! output is gzip + base64 so any byte survives the session's text channel and its 1 MiB
//! bound. A poll cycle with nothing changed is one exec: the due runs' dirs, their frontier
//! epoch dir and log dirs listed, and the searched directories stat'ed. Runs are built in
//! memory with the same rules as `crate::scan` (re-used summaries, frontier only).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use ugro_core::runs::{self as core, EpochView, FileInfo, RunView};

use crate::scan::{self, LogDirsStamp, ReadRun, RootScan, Stamp, Stamps, Tree};
use crate::ssh::{Exec, NodeSession, shell_quote};

use super::host::RunsHost;
use super::presence::RootId;
use super::source::{BoxFuture, Due, Found, RootSource, Views};

/// Directories listed per exec (a batch's paths travel gzip'ed in the command line).
const LIST_BATCH: usize = 2048;
/// Files fetched per exec (halved while the output overruns the session's bound).
const FETCH_BATCH: usize = 2048;
/// Execs run at once on the session (sshd's default `MaxSessions` is 10; the health loop
/// and the logs API use some too).
const PARALLEL: usize = 4;
/// Progress files written per exec.
const WRITE_BATCH: usize = 64;
/// The deadline of one exec.
const EXEC_DEADLINE: Duration = Duration::from_secs(60);
/// Most bytes a decompressed output may have.
const MAX_DECODED: u64 = 512 * 1024 * 1024;

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

/// What listings found: each entry's meta, each listed directory's entries (name → is dir),
/// and the node's clock when it listed.
#[derive(Debug, Default)]
struct Listed {
    now: (i64, i64),
    meta: HashMap<PathBuf, Meta>,
    children: HashMap<PathBuf, BTreeMap<String, bool>>,
}

impl Listed {
    fn stamp(&self, p: &Path) -> Option<Stamp> {
        let m = self.meta.get(p).filter(|m| m.dir)?;
        let age = Duration::new(
            u64::try_from(self.now.0 - m.mtime.0).ok()?,
            u32::try_from(self.now.1).unwrap_or(0),
        )
        .checked_sub(Duration::from_nanos(u64::try_from(m.mtime.1).unwrap_or(0)));
        Some(Stamp::from_parts(m.ino, m.mtime, m.ctime, age))
    }

    fn file(&self, p: &Path) -> Option<FileInfo> {
        self.meta.get(p).filter(|m| !m.dir).map(Meta::info)
    }

    fn merge(&mut self, other: Listed) {
        self.now = self.now.max(other.now);
        self.meta.extend(other.meta);
        for (d, c) in other.children {
            self.children.entry(d).or_default().extend(c);
        }
    }

    fn is_run_dir(&self, dir: &Path) -> bool {
        let Some(c) = self.children.get(dir) else {
            return false;
        };
        let files: Vec<&str> = c.iter().filter(|e| !*e.1).map(|e| e.0.as_str()).collect();
        let dirs: Vec<&str> = c.iter().filter(|e| *e.1).map(|e| e.0.as_str()).collect();
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

/// Parses a listing: the clock on the first line, then NUL-terminated `find -printf` records.
fn parse_listing(bytes: &[u8], depth1: &HashSet<PathBuf>) -> Listed {
    let mut out = Listed::default();
    let (first, rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    out.now = parse_time(String::from_utf8_lossy(first).trim()).unwrap_or((0, 0));
    for rec in rest.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let text = String::from_utf8_lossy(rec);
        let mut f = text.splitn(6, ' ');
        let (Some(kind), Some(size), Some(mt), Some(ct), Some(ino), Some(path)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Some(mtime), Some(ctime), Ok(size), Ok(ino)) =
            (parse_time(mt), parse_time(ct), size.parse(), ino.parse())
        else {
            continue;
        };
        let path = PathBuf::from(path);
        let dir = kind == "d";
        out.meta.insert(
            path.clone(),
            Meta {
                dir,
                size,
                ino,
                mtime,
                ctime,
            },
        );
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name())
            && depth1.contains(parent)
        {
            out.children
                .entry(parent.to_path_buf())
                .or_default()
                .insert(name.to_string_lossy().into_owned(), dir);
        }
    }
    for d in depth1 {
        if out.meta.get(d).is_some_and(|m| m.dir) {
            out.children.entry(d.clone()).or_default();
        }
    }
    out
}

/// The paths as one shell word: NUL-separated, gzip'ed, base64.
fn packed(paths: &[PathBuf]) -> String {
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
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

/// The `find` of `paths` to `depth` (0: the paths themselves), records as [`parse_listing`]
/// reads them.
fn find_cmd(paths: &[PathBuf], depth: u8) -> String {
    let find = format!(
        "exec find -H \"$@\" -maxdepth {depth} \\( -type d -o -type f \\) -printf {}",
        shell_quote("%y %s %T@ %C@ %i %p\\0")
    );
    feed(
        paths,
        &format!("xargs -0 -r sh -c {} sh", shell_quote(&find)),
    )
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
}

impl<H: RunsHost> RemoteRoot<H> {
    pub(super) fn new(host: Arc<H>, node: String, root: PathBuf, globs: Vec<String>) -> Self {
        RemoteRoot {
            inner: Arc::new(Inner {
                host,
                node,
                root,
                globs,
            }),
        }
    }
}

impl<H: RunsHost> Inner<H> {
    fn session(&self) -> Result<Arc<NodeSession>, String> {
        self.host
            .remote_sessions()
            .into_iter()
            .find(|(n, _)| *n == self.node)
            .map(|(_, s)| s)
            .ok_or_else(|| format!("node {} has no SSH session", self.node))
    }

    /// Runs `script` on the node; its stdout as text. `Err` names the node and what failed.
    async fn exec_text(&self, script: &str) -> Result<(String, bool), String> {
        let session = self.session()?;
        EXECS.fetch_add(1, Ordering::Relaxed);
        match session.exec(script, EXEC_DEADLINE).await {
            Ok(Exec::Done(out)) => Ok((out.stdout, out.truncated)),
            Ok(Exec::Hung) => Err(format!(
                "listing on node {} did not finish within {EXEC_DEADLINE:?}",
                self.node
            )),
            Err(e) => Err(format!("listing on node {}: {e}", self.node)),
        }
    }

    /// Runs `script` with its output gzip'ed and base64'ed; the output's bytes, or `Ok(None)`
    /// when it overran the session's output bound.
    async fn exec_bytes(&self, script: &str) -> Result<Option<Vec<u8>>, String> {
        let wrapped = format!("{{ {script} ; }} 2>/dev/null | gzip -1 | base64 -w0");
        let (text, truncated) = self.exec_text(&wrapped).await?;
        if truncated {
            return Ok(None);
        }
        let gz = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("output from node {}: {e}", self.node))?;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .take(MAX_DECODED)
            .read_to_end(&mut out)
            .map_err(|e| format!("output from node {}: {e}", self.node))?;
        Ok(Some(out))
    }

    /// Lists `depth1` (each dir and its entries) and `depth0` (the paths alone), batched.
    async fn list(&self, depth1: &[PathBuf], depth0: &[PathBuf]) -> Result<Listed, String> {
        let mut out = Listed::default();
        let mut pending: Vec<(Vec<PathBuf>, Vec<PathBuf>)> = depth1
            .chunks(LIST_BATCH)
            .map(|c| (c.to_vec(), Vec::new()))
            .collect();
        pending.extend(
            depth0
                .chunks(LIST_BATCH * 4)
                .map(|c| (Vec::new(), c.to_vec())),
        );
        if pending.len() > 1 {
            // The first batch of the cheap stats rides with the first listing.
            if let Some(pos) = pending.iter().position(|(a, _)| a.is_empty()) {
                let (_, zero) = pending.remove(pos);
                pending[0].1 = zero;
            }
        }
        while !pending.is_empty() {
            // Up to PARALLEL batches at once, each on its own channel of the one session.
            let take = pending.len().min(PARALLEL);
            let wave: Vec<_> = pending.drain(..take).collect();
            let answers =
                futures_util::future::join_all(wave.into_iter().map(|(one, zero)| async {
                    let mut script = String::from("date +%s.%N");
                    if !one.is_empty() {
                        script.push_str("; ");
                        script.push_str(&find_cmd(&one, 1));
                    }
                    if !zero.is_empty() {
                        script.push_str("; ");
                        script.push_str(&find_cmd(&zero, 0));
                    }
                    (self.exec_bytes(&script).await, one, zero)
                }))
                .await;
            for (answer, one, zero) in answers {
                match answer? {
                    Some(bytes) => {
                        let set: HashSet<PathBuf> = one.iter().cloned().collect();
                        out.merge(parse_listing(&bytes, &set));
                    }
                    None if one.len() + zero.len() > 1 => {
                        let (a1, b1) = one.split_at(one.len() / 2);
                        let (a0, b0) = zero.split_at(zero.len() / 2);
                        pending.push((a1.to_vec(), a0.to_vec()));
                        pending.push((b1.to_vec(), b0.to_vec()));
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
        }
        Ok(out)
    }

    /// The contents of `files` (those that could be read), by path.
    /// `Err` when the node could not be asked (the caller keeps what it had rather than
    /// taking the files as unreadable).
    async fn fetch(&self, files: Vec<PathBuf>) -> Result<HashMap<PathBuf, Vec<u8>>, String> {
        let mut out = HashMap::new();
        let mut pending: Vec<Vec<PathBuf>> =
            files.chunks(FETCH_BATCH).map(<[PathBuf]>::to_vec).collect();
        while !pending.is_empty() {
            let take = pending.len().min(PARALLEL);
            let wave: Vec<_> = pending.drain(..take).collect();
            let answers = futures_util::future::join_all(wave.into_iter().map(|batch| async {
                let cmd = feed(&batch, "tar -c -P --null -T - -f - --ignore-failed-read");
                (self.exec_bytes(&cmd).await, batch)
            }))
            .await;
            for (answer, batch) in answers {
                match answer {
                    Ok(Some(bytes)) => {
                        let mut ar = tar::Archive::new(&bytes[..]);
                        let Ok(entries) = ar.entries() else { continue };
                        for mut e in entries.flatten() {
                            let Ok(path) = e.path().map(|p| p.into_owned()) else {
                                continue;
                            };
                            let mut buf = Vec::new();
                            if e.read_to_end(&mut buf).is_ok() {
                                out.insert(path, buf);
                            }
                        }
                    }
                    Ok(None) if batch.len() > 1 => {
                        let (a, b) = batch.split_at(batch.len() / 2);
                        pending.push(a.to_vec());
                        pending.push(b.to_vec());
                    }
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// Finds runs below `start` (dirs with their depth): lists level by level, records the
    /// searched directories in `tree`, and gives the new run dirs (`is_known` ones left out)
    /// with their listings merged into `listed`.
    async fn discover(
        &self,
        start: Vec<(PathBuf, usize)>,
        tree: &mut Tree,
        is_known: &(dyn Fn(&Path) -> bool + Sync),
        listed: &mut Listed,
        problems: &mut Vec<String>,
    ) -> Result<Vec<PathBuf>, String> {
        let mut runs = Vec::new();
        let mut level = start;
        while !level.is_empty() {
            let dirs: Vec<PathBuf> = level.iter().map(|(d, _)| d.clone()).collect();
            let l = self.list(&dirs, &[]).await?;
            listed.merge(l);
            let mut next = Vec::new();
            for (dir, depth) in level {
                let Some(stamp) = listed
                    .stamp(&dir)
                    .filter(|_| listed.children.contains_key(&dir))
                else {
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
                if let Some(c) = listed.children.get(&dir) {
                    for (name, is_dir) in c {
                        let p = dir.join(name);
                        if *is_dir && !tree.contains(&p) && !is_known(&p) {
                            next.push((p, depth + 1));
                        }
                    }
                }
            }
            level = next;
        }
        runs.sort();
        Ok(runs)
    }

    /// Reads runs (id, dir, last view) whose dirs `listed` holds (those it does not are listed
    /// first): lists their log dirs and epoch dirs from the frontier on, fetches the JSON
    /// files whose stamp changed, and builds their views. Runs whose dir is gone are `gone`.
    async fn read_runs(
        &self,
        runs: Vec<(Option<String>, PathBuf, Option<Arc<RunView>>)>,
        mut listed: Listed,
        found: &mut Found,
    ) -> Result<(), String> {
        let unlisted: Vec<PathBuf> = runs
            .iter()
            .filter(|(_, d, _)| !listed.children.contains_key(d))
            .map(|(_, d, _)| d.clone())
            .collect();
        if !unlisted.is_empty() {
            let l = self.list(&unlisted, &[]).await?;
            listed.merge(l);
        }
        let log_dirs: Vec<&str> = core::log_dirs(&self.globs);
        // Second level: log dirs and epoch dirs from the frontier on.
        let mut more = Vec::new();
        let mut plans = Vec::new();
        for (id, dir, prev) in runs {
            let Some(children) = listed.children.get(&dir) else {
                if let Some(id) = id {
                    found.gone.push(id);
                }
                continue;
            };
            let mut epoch_dirs: Vec<u32> = children
                .iter()
                .filter(|e| *e.1)
                .filter_map(|e| core::epoch_dir_index(e.0))
                .collect();
            epoch_dirs.sort_unstable();
            let from = prev
                .as_deref()
                .filter(|p| scan::summary_still_holds(p, &epoch_dirs))
                .map_or(0, |p| p.completed.count());
            for i in epoch_dirs.iter().filter(|i| **i >= from) {
                more.push(dir.join(format!("epoch_{i}")));
            }
            for sub in &log_dirs {
                if children.get(*sub) == Some(&true) {
                    more.push(dir.join(sub));
                }
            }
            plans.push((id, dir, prev));
        }
        more.retain(|d| !listed.children.contains_key(d));
        if !more.is_empty() {
            let l = self.list(&more, &[]).await?;
            listed.merge(l);
        }
        // The JSON files whose stamp changed.
        let mut want = Vec::new();
        for (_, dir, prev) in &plans {
            let prev = prev.as_deref();
            for name in scan::RUN_JSON_FILES {
                let p = dir.join(name);
                if let Some(info) = listed.file(&p)
                    && prev.and_then(|v| v.files.get(name)) != Some(&info)
                    && info.size > 0
                    && info.size <= scan::MAX_JSON_BYTES
                {
                    want.push(p);
                }
            }
            let epochs: Vec<(u32, PathBuf)> = listed
                .children
                .get(dir)
                .into_iter()
                .flatten()
                .filter(|e| *e.1)
                .filter_map(|e| Some((core::epoch_dir_index(e.0)?, dir.join(e.0))))
                .collect();
            for (i, d) in &epochs {
                let Some(c) = listed.children.get(d) else {
                    continue;
                };
                let prev_e = prev.and_then(|v| v.epochs.get(i));
                for name in core::TRAINER_EXPECTED
                    .iter()
                    .filter(|n| n.ends_with(".json"))
                {
                    if c.get(*name) != Some(&false) {
                        continue;
                    }
                    let p = d.join(name);
                    if let Some(info) = listed.file(&p)
                        && prev_e.and_then(|e| e.files.get(*name)) != Some(&info)
                        && info.size > 0
                        && info.size <= scan::MAX_JSON_BYTES
                    {
                        want.push(p);
                    }
                }
            }
        }
        let contents = if want.is_empty() {
            HashMap::new()
        } else {
            self.fetch(want).await?
        };
        for (id, dir, prev) in plans {
            let read = build_run(&dir, &listed, &contents, prev.as_deref(), &self.globs);
            found.read.push((id, dir, read));
        }
        Ok(())
    }
}

/// The files of a listed directory with their size and mtime.
fn files_of(listed: &Listed, dir: &Path) -> BTreeMap<String, FileInfo> {
    listed
        .children
        .get(dir)
        .into_iter()
        .flatten()
        .filter(|e| !*e.1)
        .filter_map(|(n, _)| Some((n.clone(), listed.file(&dir.join(n))?)))
        .collect()
}

/// A run's view from its listings and fetched contents, as `scan::read_run` builds it.
fn build_run(
    dir: &Path,
    listed: &Listed,
    contents: &HashMap<PathBuf, Vec<u8>>,
    prev: Option<&RunView>,
    globs: &[String],
) -> ReadRun {
    let json_of = |path: &Path, name: &str, info: &FileInfo, keep: bool, run_level: bool| {
        scan::json_from_bytes(
            name,
            info,
            contents.get(path).map(Vec::as_slice),
            keep,
            run_level,
        )
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
    if let Some(c) = listed.children.get(dir) {
        for (name, _) in c.iter().filter(|e| *e.1) {
            view.add_subdir(name);
        }
    }
    for name in scan::RUN_JSON_FILES {
        let Some(info) = view.files.get(name) else {
            continue;
        };
        let reused = prev
            .filter(|p| p.files.get(name) == Some(info))
            .and_then(|p| p.json.get(name));
        let read = match reused {
            Some(r) => r.clone(),
            None => json_of(&dir.join(name), name, info, true, true),
        };
        view.json.insert(name.to_owned(), read);
    }
    if let Some(p) = prev
        && scan::summary_still_holds(p, &view.epoch_dirs)
    {
        view.completed = p.completed.clone();
    }
    view.epoch_dirs.shrink_to_fit();
    let mut epoch_stamp = None;
    let mut i = view.completed.count();
    while view.epoch_dirs.binary_search(&i).is_ok() {
        let path = dir.join(format!("epoch_{i}"));
        if !listed.children.contains_key(&path) {
            break; // vanished or unreadable: the count stops here
        }
        let files = files_of(listed, &path);
        let prev_e = prev.and_then(|p| p.epochs.get(&i));
        let mut json = BTreeMap::new();
        for name in core::TRAINER_EXPECTED
            .iter()
            .filter(|n| n.ends_with(".json"))
        {
            let Some(info) = files.get(*name) else {
                continue;
            };
            let reused = prev_e
                .filter(|p| p.files.get(*name) == Some(info))
                .and_then(|p| p.json.get(*name));
            let read = match reused {
                Some(r) => r.clone(),
                None => json_of(
                    &path.join(name),
                    name,
                    info,
                    *name == core::VALIDATION_SCORES,
                    false,
                ),
            };
            json.insert((*name).to_owned(), read);
        }
        let e = EpochView { files, json };
        if view.completed.push(&e) {
            i += 1;
            continue;
        }
        epoch_stamp = listed.stamp(&path).map(|s| (i, s));
        view.epochs.insert(i, e);
        break;
    }
    view.completed.times.shrink_to_fit();
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
        let mut out = RootScan::default();
        let mut listed = Listed::default();
        let dirs = self
            .discover(
                vec![(self.root.clone(), 0)],
                &mut out.tree,
                &|_| false,
                &mut listed,
                &mut out.problems,
            )
            .await?;
        let runs = dirs
            .into_iter()
            .map(|d| {
                let p = prev.get(&d).cloned();
                (None, d, p)
            })
            .collect();
        let mut found = Found::default();
        self.read_runs(runs, listed, &mut found).await?;
        out.runs = found.read.into_iter().map(|(_, d, r)| (d, r)).collect();
        out.runs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn poll(
        &self,
        due: Vec<Due>,
        tree: &mut Tree,
        known: &HashSet<PathBuf>,
    ) -> Result<Found, String> {
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
        if !tree.contains(&self.root) {
            depth0.push(self.root.clone());
        }
        let before = execs();
        let listed = self.list(&depth1, &depth0).await?;
        // Runs whose frontier changed, read again (their listings re-used).
        let mut found = Found::default();
        let mut changed = Vec::new();
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
        for d in gone {
            tree.remove(&d);
        }
        if !tree.contains(&self.root) && listed.stamp(&self.root).is_some() {
            start.push((self.root.clone(), 0));
        }
        let mut listed = listed;
        if !start.is_empty() {
            let mut problems = Vec::new();
            let new = self
                .discover(
                    start,
                    tree,
                    &|p| known.contains(p),
                    &mut listed,
                    &mut problems,
                )
                .await?;
            for p in problems.iter().take(5) {
                tracing::debug!("{p}");
            }
            changed.extend(new.into_iter().map(|d| (None, d, None)));
        }
        if !changed.is_empty() {
            // A listing of a due run's dir alone lacks its epoch dirs: `read_runs` lists those.
            self.read_runs(changed, listed, &mut found).await?;
        }
        tracing::debug!(
            execs = execs() - before,
            read = found.read.len(),
            "poll cycle"
        );
        Ok(found)
    }

    async fn identify(&self, was_mount: bool) -> Option<(Option<RootId>, bool)> {
        let root = shell_quote(&self.root.to_string_lossy());
        // Nothing printed when the root is not a directory now.
        let script = format!(
            "[ -d {root} ] || exit 0; stat -L -c '%d %i' -- {root} && stat -L -c '%d %i' -- \
             {root}/.. && {{ ls -A -- {root} | head -n 1 | wc -l; }}"
        );
        let (out, _) = self.exec_text(&script).await.ok()?;
        let mut lines = out.lines();
        let parse = |l: Option<&str>| -> Option<(u64, u64)> {
            let (d, i) = l?.trim().split_once(' ')?;
            Some((d.parse().ok()?, i.parse().ok()?))
        };
        let Some((dev, ino)) = parse(lines.next()) else {
            return Some((None, false));
        };
        let parent = parse(lines.next());
        let mount = parent.is_none_or(|(pd, _)| pd != dev);
        let empty = was_mount && !mount && lines.next().is_some_and(|l| l.trim() == "0");
        Some((Some(RootId { dev, ino, mount }), empty))
    }

    async fn log_tails(&self, logs: Vec<(String, PathBuf)>) -> Vec<(String, String)> {
        if logs.is_empty() {
            return Vec::new();
        }
        let paths: Vec<String> = logs
            .iter()
            .map(|(_, p)| shell_quote(&p.to_string_lossy()))
            .collect();
        let script = format!(
            "for f in {}; do s=$(stat -c %s -- \"$f\" 2>/dev/null) || {{ echo -; continue; }}; \
             printf '%s ' \"$s\"; tail -c {} -- \"$f\" | base64 -w0; echo; done",
            paths.join(" "),
            scan::LOG_TAIL_BYTES
        );
        let Ok((out, _)) = self.exec_text(&script).await else {
            return Vec::new();
        };
        // A line cut by the output bound has no newline: it and those after are left out.
        let complete = out.rfind('\n').map_or("", |i| &out[..i]);
        logs.into_iter()
            .zip(complete.split('\n'))
            .filter_map(|((id, _), line)| {
                let (size, b64) = line.split_once(' ')?;
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
                Some((id, scan::tail_from_bytes(size.parse().ok()?, &bytes)))
            })
            .collect()
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
            match self.exec_text(&script).await {
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

    fn identify(&self, was_mount: bool) -> BoxFuture<(Option<RootId>, bool)> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.identify(was_mount).await.unwrap_or((None, false)) })
    }

    fn scan(&self, prev: Views) -> BoxFuture<Result<RootScan, String>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.scan(prev).await })
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
            let mut hit: BTreeMap<PathBuf, (Option<String>, Option<Arc<RunView>>)> =
                BTreeMap::new();
            let mut outside = false;
            for path in touched {
                match known
                    .iter()
                    .filter(|(_, d, _)| path.starts_with(d))
                    .max_by_key(|(_, d, _)| d.as_os_str().len())
                {
                    Some((id, dir, view)) => {
                        hit.insert(dir.clone(), (Some(id.clone()), Some(Arc::clone(view))));
                    }
                    None => outside = true,
                }
            }
            let mut listed = Listed::default();
            if outside {
                let dirs: HashSet<PathBuf> = known.iter().map(|(_, d, _)| d.clone()).collect();
                let mut start: Vec<(PathBuf, usize)> = tree
                    .entries()
                    .map(|(d, _, depth)| (d.to_path_buf(), depth))
                    .collect();
                if start.is_empty() {
                    start.push((inner.root.clone(), 0));
                }
                let mut problems = Vec::new();
                let new = inner
                    .discover(
                        start,
                        &mut tree,
                        &|p| dirs.contains(p),
                        &mut listed,
                        &mut problems,
                    )
                    .await
                    .ok()?;
                for d in new {
                    hit.insert(d, (None, None));
                }
            }
            let runs = hit.into_iter().map(|(d, (id, v))| (id, d, v)).collect();
            let mut found = Found::default();
            inner.read_runs(runs, listed, &mut found).await.ok()?;
            Some((found, tree))
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

    #[test]
    fn a_listing_gives_entries_children_and_the_clock() {
        let mut bytes = b"1700000100.000000000\n".to_vec();
        for rec in [
            "d 4096 1700000000.0 1700000000.0 11 /r/run a",
            "f 12 1700000001.25 1700000001.25 12 /r/run a/config.json",
            "d 4096 1700000002.0 1700000002.0 13 /r/run a/epoch_0",
        ] {
            bytes.extend_from_slice(rec.as_bytes());
            bytes.push(0);
        }
        let set: HashSet<PathBuf> = [PathBuf::from("/r/run a")].into();
        let l = parse_listing(&bytes, &set);
        assert_eq!(l.now, (1_700_000_100, 0));
        assert!(l.is_run_dir(Path::new("/r/run a")));
        let f = l.file(Path::new("/r/run a/config.json")).unwrap();
        assert_eq!(f.size, 12);
        assert_eq!(f.mtime.timestamp_subsec_nanos(), 250_000_000);
        // Old enough to be trusted; a stamp of the epoch dir exists, none of a file.
        let s = l.stamp(Path::new("/r/run a")).unwrap();
        assert!(s.unchanged(&s));
        assert!(l.stamp(Path::new("/r/run a/config.json")).is_none());
    }
}
