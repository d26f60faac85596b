//! Run tracking: one task per `[[roots]]` entry keeps every run under it current. The first scan
//! discovers and reads all runs on a few threads; then inotify (local filesystems; watches on the
//! searched directories, the run dirs and their frontier epoch dirs only) recomputes only the
//! touched runs, debounced, or frontier polling (network filesystems, on request, or when
//! inotify runs out of watches) `stat`s only what can change next per run and reads a run only
//! when that changed. Statuses
//! are re-judged on a timer (a quiet log turns a run stuck or failed without any file event),
//! against the processes of this machine (/proc), of the remote nodes (`ps` over their SSH
//! sessions) and the GPU compute processes (NVML or `nvidia-smi --query-compute-apps`). Changes
//! become events; only changed runs are stored and published. The rules live in
//! `ugro_core::runs`; the filesystem reading in `crate::scan`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use ugro_core::runs::{self as core, Evaluation, RunStatus, RunView};

use crate::scan::{ReadRun, Stamps};
use crate::view::{RunInfo, RunProcess};

mod containers;
mod events;
mod host;
mod persist;
mod presence;
mod procs;
mod progress_file;
mod remote;
mod source;
mod tracker;
mod watch;

pub use events::RunFailures;
pub use host::RunsHost;

use tracker::track_root;

/// One tracked run.
#[derive(Debug)]
struct Run {
    id: String,
    dir: PathBuf,
    /// Shared, so the per-cycle work lists hand views to the reader threads without copying.
    view: Arc<RunView>,
    /// What the frontier check of poll mode compares.
    stamps: Option<Stamps>,
    eval: Evaluation,
    status: RunStatus,
    process: Option<RunProcess>,
    error: Option<core::Failure>,
    /// Changed since it was last stored and published.
    dirty: bool,
    /// Epochs whose completion times are stored.
    stored_epochs: u32,
}

impl Run {
    fn new(id: String, dir: PathBuf, read: ReadRun, root_epochs: Option<u32>) -> Run {
        let eval = core::evaluate(&read.view, root_epochs);
        Run {
            id,
            dir,
            view: Arc::new(read.view),
            stamps: Some(read.stamps),
            eval,
            status: RunStatus::Unknown,
            process: None,
            error: None,
            dirty: true,
            stored_epochs: 0,
        }
    }
}

/// The runs of `roots` with `status` under `root` (each filter when given), by root then id.
fn matching<'a>(
    roots: &'a BTreeMap<PathBuf, BTreeMap<String, RunInfo>>,
    status: Option<&'a str>,
    root: Option<&'a Path>,
) -> impl Iterator<Item = &'a RunInfo> + Clone {
    roots
        .iter()
        .filter(move |(r, _)| root.is_none_or(|want| r.as_path() == want))
        .flat_map(|(_, runs)| runs.values())
        .filter(move |r| status.is_none_or(|s| r.status.as_str() == s))
}

/// Most changed run ids kept for [`Runs::take_touched`]; past it, "any run may have changed".
const TOUCHED_MAX: usize = 50_000;

/// Every tracked run of every root, for the API.
#[derive(Debug, Default)]
pub struct Runs {
    roots: RwLock<BTreeMap<PathBuf, BTreeMap<String, RunInfo>>>,
    /// What the previous daemon stored, per root, until that root's first scan reconciles it.
    restored: std::sync::Mutex<HashMap<PathBuf, BTreeMap<String, RunInfo>>>,
    /// Which root holds which run id ([`Ids`]): ids are unique across roots.
    ids: std::sync::Mutex<Ids>,
    /// The roots whose first scan has claimed its ids: a root waits for those listed before it
    /// in the config ([`Runs::wait_turn`]), so which of two runs at the same relative path
    /// keeps the plain id does not depend on which scan ended first.
    first_claims: std::sync::Mutex<HashSet<PathBuf>>,
    claimed: tokio::sync::Notify,
    /// Moves on every change of any list: an answer built at one generation is current until
    /// it moves (the control API serialises the full list once per generation).
    generation: std::sync::atomic::AtomicU64,
    /// Told the new generation on every change ([`Runs::watch_generation`]).
    generation_tx: tokio::sync::watch::Sender<u64>,
    /// The ids of the runs changed since [`Runs::take_touched`] last took them (None: any run
    /// may have changed), so the change stream need not compare the whole list.
    touched: std::sync::Mutex<Option<HashSet<String>>>,
    /// Runs that turned failed since the daemon started, by kind (for `/metrics`).
    pub failures: RunFailures,
}

impl Runs {
    /// Serves the runs stored by the previous daemon at once (marked `restored`).
    pub fn restore(rows: Vec<(String, RunInfo)>) -> Self {
        let mut by_root: BTreeMap<PathBuf, BTreeMap<String, RunInfo>> = BTreeMap::new();
        let mut ids = Ids::default();
        for (root, mut info) in rows {
            info.restored = true;
            // The stored ids keep their owners: a restart never moves an id to another root.
            let rel = info
                .work_dir
                .strip_prefix(root.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(&info.id);
            ids.hold(Path::new(&root), rel, &info.id);
            by_root
                .entry(PathBuf::from(root))
                .or_default()
                .insert(info.id.clone(), info);
        }
        Self {
            restored: std::sync::Mutex::new(
                by_root
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            roots: RwLock::new(by_root),
            ids: std::sync::Mutex::new(ids),
            first_claims: std::sync::Mutex::default(),
            claimed: tokio::sync::Notify::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
            generation_tx: tokio::sync::watch::Sender::new(0),
            touched: std::sync::Mutex::new(None),
            failures: RunFailures::default(),
        }
    }

    /// Calls `f` with every run of every root under the read lock, copying none (`/metrics`).
    pub fn with_all<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &RunInfo>) -> T) -> T {
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
        f(&mut matching(&roots, None, None))
    }

    /// See the `generation` field.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Wakes when the generation moves (for the change stream).
    pub fn watch_generation(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation_tx.subscribe()
    }

    /// The runs changed since the last call (None: any may have; the caller compares all).
    pub fn take_touched(&self) -> Option<HashSet<String>> {
        let mut t = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        t.replace(HashSet::new())
    }

    /// Moves the generation after a change of these runs only.
    fn changed_runs(&self, ids: impl IntoIterator<Item = String>) {
        let mut t = self.touched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = t.as_mut() {
            set.extend(ids);
            if set.len() > TOUCHED_MAX {
                *t = None;
            }
        }
        drop(t);
        self.bump();
    }

    /// Moves the generation after a change of any run.
    fn changed(&self) {
        *self.touched.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.bump();
    }

    fn bump(&self) {
        let g = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.generation_tx.send_replace(g + 1);
    }

    /// `{"runs": [...]}` of the runs [`Runs::list`] would give, serialised under the read lock
    /// one run at a time (20,000 runs cloned per request cost ~1 GB under 200 readers).
    pub fn to_json(
        &self,
        status: Option<&str>,
        root: Option<&Path>,
    ) -> serde_json::Result<Vec<u8>> {
        use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
        struct Seq<'a, I: Iterator<Item = &'a RunInfo> + Clone>(I);
        impl<'a, I: Iterator<Item = &'a RunInfo> + Clone> serde::Serialize for Seq<'a, I> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(None)?;
                for r in self.0.clone() {
                    // The wire form, one run at a time (ugro-api owns the protocol's types).
                    seq.serialize_element(&ugro_api::RunInfo::from(r))?;
                }
                seq.end()
            }
        }
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
        let runs = matching(&roots, status, root);
        let mut out = Vec::with_capacity(64 * 1024);
        let mut ser = serde_json::Serializer::new(&mut out);
        let mut st = ser.serialize_struct("Runs", 1)?;
        st.serialize_field("runs", &Seq(runs))?;
        SerializeStruct::end(st)?;
        Ok(out)
    }

    fn take_restored(&self, root: &Path) -> BTreeMap<String, RunInfo> {
        self.restored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(root)
            .unwrap_or_default()
    }

    /// The root a run id belongs to.
    pub fn root_of(&self, id: &str) -> Option<PathBuf> {
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
        roots
            .iter()
            .find(|(_, runs)| runs.contains_key(id))
            .map(|(r, _)| r.clone())
    }

    /// All runs, optionally filtered, ordered by root then id.
    pub fn list(&self, status: Option<&str>, root: Option<&Path>) -> Vec<RunInfo> {
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
        matching(&roots, status, root).cloned().collect()
    }

    /// One run by id (ids are unique across roots, see [`Ids`]).
    pub fn get(&self, id: &str) -> Option<RunInfo> {
        let roots = self.roots.read().unwrap_or_else(|e| e.into_inner());
        roots.values().find_map(|runs| runs.get(id).cloned())
    }

    pub fn count(&self) -> usize {
        self.roots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(BTreeMap::len)
            .sum()
    }

    /// Replaces a root's whole list (its first scan: restored entries go).
    fn publish_all(&self, root: &Path, infos: BTreeMap<String, RunInfo>) {
        self.roots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(root.to_path_buf(), infos);
        self.changed();
    }

    /// Updates the changed runs of a root and drops the gone ones.
    fn publish_changes(&self, root: &Path, changed: Vec<RunInfo>, gone: &[String]) {
        let ids: Vec<String> = (changed.iter().map(|i| i.id.clone()))
            .chain(gone.iter().cloned())
            .collect();
        let mut roots = self.roots.write().unwrap_or_else(|e| e.into_inner());
        let runs = roots.entry(root.to_path_buf()).or_default();
        for id in gone {
            runs.remove(id);
        }
        for i in changed {
            runs.insert(i.id.clone(), i);
        }
        drop(roots);
        self.changed_runs(ids);
    }

    /// The id of the run at `rel` (its path relative to `root`, [`rel_id`]): the one it has,
    /// else `rel` itself, else — when a run of another root holds `rel` — `NAME:rel` with the
    /// root's name ([`root_name`]).
    fn claim(&self, root: &Path, rel: &str, name: &str) -> String {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .claim(root, rel, name)
    }

    /// Waits (at most `deadline`: a hung root must not hold the others) until the roots in
    /// `earlier` have claimed the ids of their first scan.
    async fn wait_turn(&self, earlier: &[PathBuf], deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.claimed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let done = self.first_claims.lock().unwrap_or_else(|e| e.into_inner());
                if earlier.iter().all(|r| done.contains(r)) {
                    return;
                }
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return;
            }
        }
    }

    /// Records that `root`'s first scan has claimed its ids.
    fn first_claimed(&self, root: &Path) {
        self.first_claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(root.to_path_buf());
        self.claimed.notify_waiters();
    }

    /// Frees the ids of runs that are gone.
    fn release(&self, ids: &[String]) {
        let mut all = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            all.release(id);
        }
    }

    /// Marks every run of a root as stale (its root is missing) or current again.
    fn set_stale(&self, root: &Path, stale: bool) {
        let mut roots = self.roots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(runs) = roots.get_mut(root) {
            for r in runs.values_mut() {
                r.stale = stale;
            }
        }
        drop(roots);
        self.changed();
    }

    fn forget(&self, root: &Path) {
        self.first_claims
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(root);
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(root);
        self.roots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(root);
        self.changed();
    }
}

/// The run ids in use, unique across roots. A run's id is its path relative to its root; when a
/// run of another root holds that already (the same relative path under two roots), it is
/// `NAME:RELPATH` with its root's name — the `NODE:RELPATH` form of remote roots. First come,
/// first served, and held while the run exists: the stored ids are held before any root is
/// scanned, so a restart gives every run the id it had.
#[derive(Debug, Default)]
struct Ids {
    /// id → (root, relative path).
    owner: HashMap<String, (PathBuf, String)>,
    /// root → relative path → id.
    by_rel: HashMap<PathBuf, HashMap<String, String>>,
}

impl Ids {
    fn hold(&mut self, root: &Path, rel: &str, id: &str) {
        self.owner
            .insert(id.to_owned(), (root.to_path_buf(), rel.to_owned()));
        self.by_rel
            .entry(root.to_path_buf())
            .or_default()
            .insert(rel.to_owned(), id.to_owned());
    }

    fn claim(&mut self, root: &Path, rel: &str, name: &str) -> String {
        if let Some(id) = self.by_rel.get(root).and_then(|m| m.get(rel)) {
            return id.clone();
        }
        let taken = |id: &str| self.owner.contains_key(id);
        let id = if !taken(rel) {
            rel.to_owned()
        } else {
            // `NAME:rel`, then `NAME~2:rel`, … should that be taken too (a run literally named
            // so); bounded by the number of ids in use.
            (1..=self.owner.len() + 1)
                .map(|k| match k {
                    1 => format!("{name}:{rel}"),
                    k => format!("{name}~{k}:{rel}"),
                })
                .find(|id| !taken(id))
                .unwrap_or_else(|| format!("{name}~:{rel}"))
        };
        self.hold(root, rel, &id);
        id
    }

    fn release(&mut self, id: &str) {
        if let Some((root, rel)) = self.owner.remove(id)
            && let Some(m) = self.by_rel.get_mut(&root)
            && m.get(&rel).is_some_and(|held| held == id)
        {
            m.remove(&rel);
        }
    }

    fn forget(&mut self, root: &Path) {
        if let Some(m) = self.by_rel.remove(root) {
            for id in m.values() {
                self.owner.remove(id);
            }
        }
    }
}

/// A root's name, the prefix of its runs' ids where they would collide with another root's:
/// the last component of its path, made unique among the configured roots and nodes by
/// `-2`, `-3`, … in config order.
fn root_name(config: &crate::config::Config, root: &Path) -> String {
    let mut used: HashSet<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
    let mut mine = None;
    for r in &config.roots {
        let base = r
            .path
            .file_name()
            .map(|n| rel_id(Path::new(n)))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "root".to_owned());
        let name = (1..=used.len() + 1)
            .map(|k| match k {
                1 => base.clone(),
                k => format!("{base}-{k}"),
            })
            .find(|n| !used.contains(n))
            .unwrap_or(base);
        used.insert(name.clone());
        if r.path == root {
            mine = Some(name);
        }
    }
    mine.unwrap_or_else(|| "root".to_owned())
}

/// A path (relative: a run id; or a run's `work_dir`) as text, lossless: valid UTF-8 is kept as it is; each byte that is not
/// valid UTF-8 becomes `\xNN` (never U+FFFD, so two names that differ only there stay two
/// ids); a backslash that would read as such an escape becomes `\x5c`.
pub fn rel_id(rel: &Path) -> String {
    use std::fmt::Write as _;
    use std::os::unix::ffi::OsStrExt;
    let bytes = rel.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let mut rest = chunk.valid();
        while let Some(i) = rest.find('\\') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let looks_escaped = after.len() >= 3
                && after.as_bytes()[0] == b'x'
                && after.as_bytes()[1..3].iter().all(u8::is_ascii_hexdigit);
            out.push_str(if looks_escaped { "\\x5c" } else { "\\" });
            rest = after;
        }
        out.push_str(rest);
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn info(root: &str, r: &Run) -> RunInfo {
    RunInfo {
        id: r.id.clone(),
        root: root.to_owned(),
        work_dir: rel_id(&r.dir),
        runner: r.eval.kind,
        status: r.status,
        progress: r.eval.progress.clone(),
        last_log_update: r.eval.newest_log.as_ref().map(|(_, f)| f.mtime),
        last_artifact_update: r.eval.newest_artifact,
        process: r.process.clone(),
        error: r.error.as_ref().map(|f| f.message.clone()),
        error_excerpt: r.error.as_ref().map(|f| f.excerpt.clone()),
        diagnostic: r.eval.diagnostic.clone(),
        log: r
            .eval
            .newest_log
            .as_ref()
            .map(|(name, _)| rel_id(&r.dir.join(name))),
        epochs: Vec::new(),
        restored: false,
        stale: false,
    }
}

/// Keeps one task per configured root, following config reloads.
pub async fn supervise<H: RunsHost>(
    host: Arc<H>,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    crate::supervise::supervise_keyed(
        &*host,
        &cancel,
        &hb,
        |c| {
            c.roots
                .iter()
                .map(|r| (r.path.clone(), r.clone()))
                .collect()
        },
        |_, path, cfg, token| {
            // A root removed or changed by a reload ends its task on purpose: retired, not dead.
            let root_hb = host.heartbeats().register_until(
                &format!("runs:{}", path.display()),
                Duration::from_secs(300),
                &token,
            );
            tokio::spawn(track_root(host.clone(), cfg.clone(), token, root_hb));
        },
        |path| host.runs().forget(path),
    )
    .await;
}

fn status_counts(runs: &BTreeMap<String, Run>) -> String {
    let mut c: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs.values() {
        *c.entry(r.status.as_str()).or_default() += 1;
    }
    c.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A run dir's path relative to its root, as an id ([`rel_id`]).
fn rel_of(root: &Path, dir: &Path) -> String {
    rel_id(dir.strip_prefix(root).unwrap_or(dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use ugro_core::runs::RunnerKind;

    pub(super) fn stored(id: &str, status: RunStatus) -> (String, RunInfo) {
        (
            "/data/logs".into(),
            RunInfo {
                id: id.into(),
                root: "/data/logs".into(),
                work_dir: format!("/data/logs/{id}"),
                runner: RunnerKind::Trainer,
                status,
                progress: core::Progress::default(),
                last_log_update: None,
                last_artifact_update: None,
                process: None,
                error: None,
                diagnostic: None,
                error_excerpt: None,
                log: None,
                epochs: Vec::new(),
                restored: false,
                stale: false,
            },
        )
    }

    #[test]
    fn run_ids_are_lossless_for_any_bytes() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let id = |b: &[u8]| rel_id(Path::new(OsStr::from_bytes(b)));
        assert_eq!(id(b"exp/run_1"), "exp/run_1");
        assert_eq!(id("ünï/ç".as_bytes()), "ünï/ç");
        assert_eq!(id(b"run\xff"), "run\\xff", "not an escape: kept");
        // Invalid bytes are escaped, never U+FFFD: names differing only there stay apart.
        assert_eq!(id(b"run_\xff"), "run_\\xff");
        assert_eq!(id(b"run_\xfe"), "run_\\xfe");
        assert_eq!(id(b"a\\xff/b"), "a\\x5cxff/b", "a literal escape-like text");
        assert_ne!(id(b"a\\xff"), id(b"a\xff"));
        assert_eq!(id(b"a\\\xff"), "a\\\\xff");
        assert_eq!(id(b"half\xe2\x82"), "half\\xe2\\x82");
    }

    #[test]
    fn ids_are_unique_across_roots_and_stable_while_held() {
        let mut ids = Ids::default();
        let (a, b, c) = (Path::new("/a/logs"), Path::new("/b/logs"), Path::new("/c"));
        assert_eq!(ids.claim(a, "exp/1", "logs"), "exp/1");
        assert_eq!(ids.claim(b, "exp/1", "logs-2"), "logs-2:exp/1");
        assert_eq!(
            ids.claim(a, "exp/1", "logs"),
            "exp/1",
            "held: the same id again"
        );
        assert_eq!(ids.claim(b, "exp/1", "logs-2"), "logs-2:exp/1");
        // A run literally named like the prefixed id elsewhere.
        assert_eq!(ids.claim(c, "logs-2:exp/1", "c"), "c:logs-2:exp/1");
        // Released ids are free again; the other root's run keeps its id.
        ids.release("exp/1");
        assert_eq!(ids.claim(b, "exp/1", "logs-2"), "logs-2:exp/1");
        assert_eq!(ids.claim(c, "exp/1", "c"), "exp/1");
        ids.forget(b);
        assert_eq!(ids.claim(a, "exp/2", "logs"), "exp/2");
        assert!(!ids.owner.contains_key("logs-2:exp/1"));
    }

    #[test]
    fn root_names_are_unique_among_roots_and_nodes() {
        let text = r#"
[[nodes]]
name = "logs"
host = "local"
[[roots]]
path = "/a/logs"
[[roots]]
path = "/b/logs"
[[roots]]
path = "/c/exp"
"#;
        let config = crate::config::parse(Path::new("ugro.toml"), text).unwrap();
        assert_eq!(root_name(&config, Path::new("/a/logs")), "logs-2");
        assert_eq!(root_name(&config, Path::new("/b/logs")), "logs-3");
        assert_eq!(root_name(&config, Path::new("/c/exp")), "exp");
    }

    #[test]
    fn restored_runs_are_served_at_once_until_the_first_scan() {
        let runs = Runs::restore(vec![
            stored("a/1", RunStatus::Running),
            stored("a/2", RunStatus::Failed),
        ]);
        let all = runs.list(None, None);
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|r| r.restored));
        assert_eq!(runs.list(Some("failed"), None).len(), 1);
        assert_eq!(runs.list(None, Some(Path::new("/other"))).len(), 0);
        assert_eq!(runs.root_of("a/2"), Some(PathBuf::from("/data/logs")));
        // The root's first scan takes the stored list over (once).
        assert_eq!(runs.take_restored(Path::new("/data/logs")).len(), 2);
        assert!(runs.take_restored(Path::new("/data/logs")).is_empty());
    }

    #[test]
    fn changes_are_published_run_by_run() {
        let runs = Runs::restore(vec![
            stored("a/1", RunStatus::Running),
            stored("a/2", RunStatus::Failed),
        ]);
        let root = Path::new("/data/logs");
        let (_, mut fresh) = stored("a/3", RunStatus::Running);
        runs.publish_all(root, BTreeMap::from([("a/3".to_string(), fresh.clone())]));
        assert_eq!(runs.count(), 1, "the first scan replaces the restored list");
        fresh.status = RunStatus::Stuck;
        let (_, other) = stored("a/4", RunStatus::Finished);
        runs.publish_changes(root, vec![fresh, other], &[]);
        assert_eq!(runs.get("a/3").unwrap().status, RunStatus::Stuck);
        assert_eq!(runs.count(), 2);
        runs.publish_changes(root, Vec::new(), &["a/3".to_string()]);
        assert!(runs.get("a/3").is_none());
        assert_eq!(runs.count(), 1);
    }
}
