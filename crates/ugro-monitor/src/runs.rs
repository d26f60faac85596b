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

use ugro_core::event::EventKind;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use ugro_core::health::Severity;
use ugro_core::runs::{self as core, Evaluation, RunStatus, RunView, RunnerKind, StatusRules};

use crate::config::{NodeHost, RootConfig, WatchMode};
use crate::scan::{self, ReadRun, Stamps};
use crate::shared::Shared;
use crate::ssh::Exec;
use crate::store::{NewEvent, StoreError};
use crate::view::{RunGpu, RunInfo, RunProcess};

/// File events are gathered this long before the touched runs are recomputed.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How often statuses are re-judged without file events (quiet logs age into stuck/failed).
const REJUDGE_EVERY: Duration = Duration::from_secs(10);
/// How often a root's identity is checked (a `stat` of it and of its parent): a root created,
/// moved away, replaced or unmounted is seen within this, whatever inotify reports.
const ROOT_CHECK: Duration = Duration::from_secs(2);
/// How long a root's identity check may take before the root counts as missing (a hung
/// network filesystem); the check goes on and is waited for again at the next look.
const ROOT_CHECK_DEADLINE: Duration = Duration::from_secs(5);
/// How long a root's first scan waits for the roots listed before it to claim their run ids.
const FIRST_CLAIMS_WAIT: Duration = Duration::from_secs(10);
/// Full rescan of an inotify root, in case an event was lost.
const SAFETY_RESCAN: Duration = Duration::from_secs(600);
/// In poll mode, finished and outdated runs are checked only every this many cycles.
const FINISHED_EVERY: u64 = 20;
/// Pending file events per root; past it the root is rescanned instead.
const EVENT_QUEUE: usize = 8192;
/// How long the process lists are re-used between file events (the timer re-judges every
/// [`REJUDGE_EVERY`] with a fresh one).
const PROCS_FRESH: Duration = Duration::from_secs(2);
/// How long a remote node's process and GPU lists are re-used.
const PROCS_EVERY: Duration = Duration::from_secs(30);
/// How long the local GPU compute processes are re-used.
const LOCAL_GPU_EVERY: Duration = Duration::from_secs(30);
/// Marker between `ps` and `nvidia-smi` in the output of the batched remote command.
const APPS_MARKER: &str = "@@ugro:compute-apps";

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
    /// Runs that turned failed since the daemon started, by kind (for `/metrics`).
    pub failures: crate::metrics::RunFailures,
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
            failures: crate::metrics::RunFailures::default(),
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

    fn changed(&self) {
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
        let mut roots = self.roots.write().unwrap_or_else(|e| e.into_inner());
        let runs = roots.entry(root.to_path_buf()).or_default();
        for id in gone {
            runs.remove(id);
        }
        for i in changed {
            runs.insert(i.id.clone(), i);
        }
        drop(roots);
        self.changed();
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

// ---------------------------------------------------------------------------------------------
// Processes: this machine's from /proc, remote nodes' from `ps` over their SSH sessions, and
// the GPU compute processes of both.

/// A GPU a process computes on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GpuUse {
    uuid: String,
    used_memory_mib: Option<u64>,
}

/// A process that may belong to a run.
#[derive(Debug, Clone)]
struct Proc {
    node: String,
    pid: u32,
    user: String,
    cmd: String,
    start_time: Option<DateTime<Utc>>,
    gpus: Vec<GpuUse>,
}

/// The processes of this machine whose command line mentions one of `needles` (the root's
/// path), with user and start time (blocking: reads /proc). Other processes cannot belong to a
/// run of the root, so only their command line is read.
fn local_processes(needles: &[String]) -> Vec<Proc> {
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<i64>().ok())
    });
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut users: HashMap<u32, String> = HashMap::new();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut path = PathBuf::from("/proc");
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        path.push(e.file_name());
        if let Some(p) = local_process(&path, pid, needles, boot, tck, &mut users) {
            out.push(p);
        }
        path.pop();
    }
    out
}

/// One process of this machine if its command line mentions a needle.
fn local_process(
    path: &Path,
    pid: u32,
    needles: &[String],
    boot: Option<i64>,
    tck: f64,
    users: &mut HashMap<u32, String>,
) -> Option<Proc> {
    let raw = std::fs::read(path.join("cmdline")).ok()?;
    if raw.is_empty() {
        return None; // kernel thread or zombie
    }
    let cmd = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !needles.iter().any(|n| cmd.contains(n.as_str())) {
        return None;
    }
    let uid = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    let user = users
        .entry(uid)
        .or_insert_with(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |u| u.name)
        })
        .clone();
    let start_time = std::fs::read_to_string(path.join("stat"))
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 2..];
            let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
            let secs = boot? as f64 + ticks / tck;
            DateTime::from_timestamp(secs as i64, 0)
        });
    Some(Proc {
        node: "local".into(),
        pid,
        user,
        cmd,
        start_time,
        gpus: Vec::new(),
    })
}

/// Compute processes by pid, from `nvidia-smi --query-compute-apps` output.
fn apps_by_pid(apps: Vec<ugro_core::sample::ComputeApp>) -> HashMap<u32, Vec<GpuUse>> {
    let mut out: HashMap<u32, Vec<GpuUse>> = HashMap::new();
    for a in apps {
        out.entry(a.pid).or_default().push(GpuUse {
            uuid: a.gpu_uuid,
            used_memory_mib: a.used_memory_mib,
        });
    }
    out
}

/// The GPU compute processes of this machine: NVML, else a local `nvidia-smi`; empty without
/// either (a machine without NVIDIA GPUs).
async fn local_gpu_apps(deadline: Duration) -> HashMap<u32, Vec<GpuUse>> {
    if let crate::local::NvmlOutcome::Read(r) = crate::local::gpus_and_apps(deadline).await
        && let Some(apps) = r.apps
    {
        return apps_by_pid(apps);
    }
    let query = format!(
        "--query-compute-apps={}",
        ugro_core::sample::COMPUTE_APPS_QUERY
    );
    match crate::local::run_local(
        "nvidia-smi",
        &[&query, "--format=csv,noheader,nounits"],
        deadline,
    )
    .await
    {
        Ok(Exec::Done(o)) if o.exit_status == Some(0) => {
            apps_by_pid(ugro_core::sample::compute_apps(&o.stdout))
        }
        _ => HashMap::new(),
    }
}

/// The batched remote command: the process list, then the GPU compute processes (bounded by
/// their own `timeout`, so a hanging driver costs only the GPU part).
fn remote_command(deadline: Duration) -> String {
    let secs = (deadline.as_secs() / 2).max(1);
    format!(
        "{}; echo {APPS_MARKER}; timeout -k 1 {secs} nvidia-smi --query-compute-apps={} \
         --format=csv,noheader,nounits 2>/dev/null; true",
        ugro_core::parse::PS_COMMAND,
        ugro_core::sample::COMPUTE_APPS_QUERY
    )
}

/// Splits the batched remote command's output into processes, each with its GPUs.
fn remote_procs(node: &str, stdout: &str, now: DateTime<Utc>) -> Vec<Proc> {
    let (ps, apps) = match stdout.split_once(APPS_MARKER) {
        Some((ps, apps)) => (ps, apps),
        None => (stdout, ""),
    };
    let mut gpus = apps_by_pid(ugro_core::sample::compute_apps(apps));
    ugro_core::parse::ps_processes(ps)
        .into_iter()
        .map(|p| Proc {
            node: node.to_owned(),
            pid: p.pid,
            user: p.user,
            cmd: p.args,
            // `ps` output is input: an absurd elapsed time gives no start time, not a panic.
            start_time: i64::try_from(p.elapsed_seconds)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| now.checked_sub_signed(d)),
            gpus: gpus.remove(&p.pid).unwrap_or_default(),
        })
        .collect()
}

/// Processes of every node: the local ones from /proc (every time: it is cheap and filtered)
/// with their GPUs from NVML or `nvidia-smi` (cached), remote ones with their GPUs from one
/// batched exec (`ps`, `nvidia-smi --query-compute-apps`) over the node's health SSH session,
/// cached per node. A GPU compute process is joined to its process by pid. A node that cannot
/// be asked keeps its last list (its runs are not declared dead by a blip).
#[derive(Debug, Default)]
struct Procs {
    remote: HashMap<String, (tokio::time::Instant, Vec<Proc>)>,
    local_gpu: Option<(tokio::time::Instant, HashMap<u32, Vec<GpuUse>>)>,
}

impl Procs {
    /// Whether any remote node's processes are known (cached): only those can be stale.
    fn has_remote(&self) -> bool {
        !self.remote.is_empty()
    }

    /// Every node's processes; `force` asks the remote nodes again however fresh their cached
    /// lists are.
    async fn all(&mut self, shared: &Shared, needles: Vec<String>, force: bool) -> Vec<Proc> {
        let deadline = shared.config().health.probe_timeout;
        let mut asking = tokio::task::JoinSet::new();
        for rt in shared.health.runtimes() {
            let fresh = !force
                && self
                    .remote
                    .get(&rt.cfg.name)
                    .is_some_and(|(at, _)| at.elapsed() < PROCS_EVERY);
            if !matches!(rt.cfg.host, NodeHost::Remote(_)) || fresh {
                continue;
            }
            let Some(session) = rt.session().cloned() else {
                continue;
            };
            let cmd = remote_command(deadline);
            asking.spawn(async move {
                let out = match session.exec(&cmd, deadline).await {
                    Ok(Exec::Done(o)) => Some(o.stdout),
                    _ => None,
                };
                (rt.cfg.name.clone(), out)
            });
        }
        let gpus_fresh = self
            .local_gpu
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < LOCAL_GPU_EVERY);
        if !gpus_fresh {
            let apps = local_gpu_apps(deadline).await;
            self.local_gpu = Some((tokio::time::Instant::now(), apps));
        }
        let mut local = tokio::task::spawn_blocking(move || local_processes(&needles))
            .await
            .unwrap_or_default();
        let now = Utc::now();
        while let Some(Ok((node, out))) = asking.join_next().await {
            // A node that cannot be asked now keeps its last list.
            let Some(stdout) = out else { continue };
            let procs = remote_procs(&node, &stdout, now);
            self.remote
                .insert(node, (tokio::time::Instant::now(), procs));
        }
        let configured: HashSet<String> = shared
            .config()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        self.remote.retain(|node, _| configured.contains(node));
        if let Some((_, apps)) = &self.local_gpu {
            for p in &mut local {
                if let Some(g) = apps.get(&p.pid) {
                    p.gpus = g.clone();
                }
            }
        }
        let mut all = local;
        all.extend(self.remote.values().flat_map(|(_, v)| v.iter().cloned()));
        all
    }
}

/// The GPU index of each GPU uuid, from the nodes' health readings.
fn gpu_indices(shared: &Shared) -> HashMap<String, u32> {
    shared
        .health
        .runtimes()
        .iter()
        .flat_map(|rt| rt.report().gpus)
        .map(|g| (g.uuid, g.index))
        .collect()
}

/// The process of each run that has one: its command line holds the run's absolute work dir
/// or its config file path (`dir/config.json`, which holds the dir). The oldest such process
/// wins (the launcher rather than a worker); the GPUs of every matching process on that node
/// are listed with it. Only processes that mention the root are looked at, and each run dir is
/// found by looking up the path prefixes that follow the root in the command line.
fn match_processes(
    root: &Path,
    dirs: &HashMap<String, &str>,
    procs: &[Proc],
    gpu_index: &HashMap<String, u32>,
) -> HashMap<String, RunProcess> {
    let root_s = root.display().to_string();
    let mut by_run: HashMap<&str, Vec<&Proc>> = HashMap::new();
    for p in procs.iter().filter(|p| p.cmd.contains(root_s.as_str())) {
        let mut hit: HashSet<&str> = HashSet::new();
        for (at, _) in p.cmd.match_indices(root_s.as_str()) {
            let rest = &p.cmd[at..];
            // Every prefix of `rest` that ends at a path boundary may be a run dir.
            let after_root = rest[root_s.len()..]
                .char_indices()
                .map(|(i, c)| (root_s.len() + i, c))
                .chain(std::iter::once((rest.len(), '/')));
            for (end, c) in after_root {
                if !(c == '/' || c.is_whitespace() || c == '"' || c == '\'') {
                    continue;
                }
                if let Some(id) = dirs.get(&rest[..end]) {
                    hit.insert(id);
                    break;
                }
            }
        }
        for id in hit {
            by_run.entry(id).or_default().push(p);
        }
    }
    by_run
        .into_iter()
        .filter_map(|(id, ps)| {
            let main = ps.iter().min_by_key(|p| (p.start_time, p.pid))?;
            let mut gpus: Vec<RunGpu> = ps
                .iter()
                .filter(|p| p.node == main.node)
                .flat_map(|p| {
                    p.gpus.iter().map(|g| RunGpu {
                        uuid: g.uuid.clone(),
                        index: gpu_index.get(&g.uuid).copied(),
                        pid: p.pid,
                        used_memory_mib: g.used_memory_mib,
                    })
                })
                .collect();
            gpus.sort_by(|a, b| (a.index, &a.uuid, a.pid).cmp(&(b.index, &b.uuid, b.pid)));
            Some((
                id.to_owned(),
                RunProcess {
                    node: main.node.clone(),
                    pid: main.pid,
                    user: main.user.clone(),
                    cmd: main.cmd.chars().take(500).collect(),
                    start_time: main.start_time,
                    gpus,
                },
            ))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The per-root task.

/// Keeps one task per configured root, following config reloads.
pub async fn supervise(
    shared: Arc<Shared>,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    crate::supervise::supervise_keyed(
        &shared,
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
            let root_hb = shared.heartbeats.register_until(
                &format!("runs:{}", path.display()),
                Duration::from_secs(300),
                &token,
            );
            tokio::spawn(track_root(shared.clone(), cfg.clone(), token, root_hb));
        },
        |path| shared.runs.forget(path),
    )
    .await;
}

/// Filesystems on which inotify does not see writes made by other hosts (statfs magic numbers).
fn is_network_fs(path: &Path) -> Option<&'static str> {
    let s = nix::sys::statfs::statfs(path).ok()?;
    #[allow(clippy::unnecessary_cast)]
    let magic = s.filesystem_type().0 as i64;
    Some(match magic {
        0x6969 => "nfs",
        0x517B => "smb",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x65735546 => "fuse",
        0x00C3_6400 => "ceph",
        0x0102_1997 => "9p",
        0x5346_414F => "afs",
        0x0BD0_0BD0 => "lustre",
        0x4750_4653 => "gpfs",
        0x1970_0426 => "panfs",
        _ => return None,
    })
}

/// How a root is kept current.
enum Mode {
    Inotify(Watch),
    Poll,
}

/// The inotify watches of a root: only the directories whose changes matter, not the whole
/// tree — the searched (non-run) directories, where new runs appear; each run dir (its logs,
/// JSON files and new epoch dirs); and each run's frontier epoch dir. Complete epochs are not
/// watched. Each watch is non-recursive; dropping the watcher removes them all.
struct Watch {
    watcher: notify::RecommendedWatcher,
    /// The watched searched directories.
    tree: HashSet<PathBuf>,
    /// Each run's watched dir and frontier epoch dir.
    runs: HashMap<String, (PathBuf, Option<PathBuf>)>,
}

impl Watch {
    fn new(
        tx: tokio::sync::mpsc::Sender<PathBuf>,
        overflow: Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Watch, String> {
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match res {
                // Opens, reads and closes-without-write change nothing (and our own reads
                // cause them).
                Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => {}
                Ok(ev) => {
                    for p in ev.paths {
                        if tx.try_send(p).is_err() {
                            overflow.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
                Err(_) => overflow.store(true, std::sync::atomic::Ordering::Relaxed),
            }
        })
        .map_err(|e| e.to_string())?;
        Ok(Watch {
            watcher,
            tree: HashSet::new(),
            runs: HashMap::new(),
        })
    }

    /// Watches one directory. A directory that vanished meanwhile is no error (its parent's
    /// watch reports the removal); running out of watches is.
    fn add(&mut self, dir: &Path) -> Result<(), String> {
        use notify::Watcher;
        match self.watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                Err(INOTIFY_LIMIT.to_string())
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "cannot watch");
                Ok(())
            }
        }
    }

    fn remove(&mut self, dir: &Path) {
        use notify::Watcher;
        let _ = self.watcher.unwatch(dir);
    }

    /// Makes the watches follow the searched directories of `tree` and the given runs (new or
    /// read again: their dir and frontier epoch dir) and drops the watches of `gone` runs.
    /// Returns the paths to look at again because their watch is new (what changed between
    /// the read and the watch), or why watching failed (the watch limit).
    fn sync<'a>(
        &mut self,
        root: &Path,
        tree: &scan::Tree,
        runs: impl Iterator<Item = (&'a str, &'a Path, Option<u32>)>,
        gone: &[String],
    ) -> Result<Vec<PathBuf>, String> {
        let mut recheck = Vec::new();
        for id in gone {
            if let Some((dir, frontier)) = self.runs.remove(id) {
                self.remove(&dir);
                if let Some(f) = frontier {
                    self.remove(&f);
                }
            }
        }
        let stale: Vec<PathBuf> = self
            .tree
            .iter()
            .filter(|d| !tree.contains(d))
            .cloned()
            .collect();
        for d in stale {
            self.tree.remove(&d);
            self.remove(&d);
        }
        let mut tree_grew = false;
        for d in tree.dirs() {
            if !self.tree.contains(d) {
                self.add(d)?;
                self.tree.insert(d.to_path_buf());
                tree_grew = true;
            }
        }
        if tree_grew {
            recheck.push(root.to_path_buf());
        }
        for (id, dir, epoch) in runs {
            let frontier = epoch.map(|i| dir.join(format!("epoch_{i}")));
            let (old_dir, old_frontier) = match self.runs.get(id) {
                Some((d, f)) => (Some(d.clone()), f.clone()),
                None => (None, None),
            };
            if old_dir.is_none() {
                self.add(dir)?;
                recheck.push(dir.to_path_buf());
            }
            if old_frontier != frontier {
                if let Some(f) = &old_frontier {
                    self.remove(f);
                }
                if let Some(f) = &frontier {
                    self.add(f)?;
                    recheck.push(dir.to_path_buf());
                }
            }
            self.runs
                .insert(id.to_owned(), (dir.to_path_buf(), frontier));
        }
        Ok(recheck)
    }
}

/// Threads of a full scan: two per core (a scan waits on the disk or the network as much as
/// it computes), 2 to 8.
fn scan_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 8)
}

/// What a scan, poll cycle or inotify batch found.
#[derive(Debug, Default)]
struct Found {
    /// Runs read again (or for the first time): id (none yet for a new run), dir, what was read.
    read: Vec<(Option<String>, PathBuf, ReadRun)>,
    /// Runs whose directory is gone.
    gone: Vec<String>,
}

/// Which directory a root is: its device and inode, and whether it is a mount point (on
/// another device than its parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RootId {
    dev: u64,
    ino: u64,
    mount: bool,
}

impl RootId {
    /// `stat` of the root (following a symlink) and of its parent; `None` when it is not a
    /// directory now.
    fn of(root: &Path) -> Option<RootId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(root)
            .ok()
            .filter(std::fs::Metadata::is_dir)?;
        let parent = match root.parent() {
            Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
            p => p,
        };
        let mount = parent.is_none_or(|p| std::fs::metadata(p).is_ok_and(|pm| pm.dev() != m.dev()));
        Some(RootId {
            dev: m.dev(),
            ino: m.ino(),
            mount,
        })
    }

    fn describe(&self) -> String {
        format!(
            "device {}:{}, inode {}",
            nix::sys::stat::major(self.dev),
            nix::sys::stat::minor(self.dev),
            self.ino
        )
    }
}

/// Whether a root is there, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Here(RootId),
    /// `was_mount`: it went away by being unmounted, so the empty mount point left behind does
    /// not count as the root being back.
    Missing {
        was_mount: bool,
    },
}

/// What a root's identity check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootChange {
    Same,
    /// Gone: the `root.missing` text (after the path).
    Gone(String),
    /// There again, or there for the first time.
    Back,
    /// Another directory is there now (moved into place, or a filesystem mounted on it): the
    /// old one is missing and the new one is scanned.
    Replaced(String),
}

impl Presence {
    fn is_missing(&self) -> bool {
        matches!(self, Presence::Missing { .. })
    }

    /// The identity check did not answer by its deadline: a root that was here is missing
    /// until a check answers again.
    fn hung(&mut self) -> RootChange {
        match *self {
            Presence::Here(_) => {
                *self = Presence::Missing { was_mount: false };
                RootChange::Gone(format!(
                    "does not answer: a stat of it took longer than {} (a hung network \
                     filesystem?)",
                    humantime::format_duration(ROOT_CHECK_DEADLINE)
                ))
            }
            Presence::Missing { .. } => RootChange::Same,
        }
    }

    /// The change from this presence to `now`; `is_empty` lists the root (only asked when a
    /// mount point turned into a plain directory). Updates the presence.
    fn update(&mut self, now: Option<RootId>, is_empty: impl Fn() -> bool) -> RootChange {
        let (change, next) = match (*self, now) {
            (Presence::Here(_), None) => (
                RootChange::Gone(
                    "does not exist any more (removed, moved away, or its filesystem is gone)"
                        .to_owned(),
                ),
                Presence::Missing { was_mount: false },
            ),
            (Presence::Here(a), Some(b)) if a == b => (RootChange::Same, *self),
            (Presence::Here(a), Some(b)) if a.mount && !b.mount && is_empty() => (
                RootChange::Gone(
                    "is an empty directory that is no longer a mount point: the filesystem \
                     mounted there is gone (unmounted)"
                        .to_owned(),
                ),
                Presence::Missing { was_mount: true },
            ),
            (Presence::Here(a), Some(b)) if !a.mount && b.mount => {
                (RootChange::Back, Presence::Here(b))
            }
            (Presence::Here(a), Some(b)) => (
                RootChange::Replaced(format!(
                    "was replaced by another directory ({} before, {} now)",
                    a.describe(),
                    b.describe()
                )),
                Presence::Here(b),
            ),
            (Presence::Missing { .. }, None) => (RootChange::Same, *self),
            (Presence::Missing { was_mount: true }, Some(b)) if !b.mount && is_empty() => {
                (RootChange::Same, *self)
            }
            (Presence::Missing { .. }, Some(b)) => (RootChange::Back, Presence::Here(b)),
        };
        *self = next;
        change
    }
}

/// The `root.missing` event.
fn missing_event(root: &Path, why: &str, runs: usize) -> NewEvent {
    NewEvent::new(
        EventKind::RootMissing,
        root.display().to_string(),
        Severity::Warning,
        format!(
            "root {} {why}; its {runs} run(s) stay listed as stale until it is back",
            root.display()
        ),
    )
}

async fn track_root(
    shared: Arc<Shared>,
    cfg: RootConfig,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    let root = cfg.path.clone();
    let root_s = root.display().to_string();
    let name = root_name(&shared.config(), &root);
    let rules = StatusRules {
        stall_after: cfg.stall_after,
        outdated_after: cfg.outdated_after,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PathBuf>(EVENT_QUEUE);
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Choose how to watch.
    let mut mode = Mode::Poll;
    let network = is_network_fs(&root);
    let want_inotify = match cfg.watch {
        WatchMode::Inotify => true,
        WatchMode::Poll => false,
        WatchMode::Auto => network.is_none(),
    };
    if let (WatchMode::Auto, Some(fs)) = (cfg.watch, network) {
        tracing::info!(root = %root.display(), fs, "network filesystem: polling (inotify does not see other hosts' writes)");
    }
    if want_inotify {
        // The watches themselves are set up after the first scan, from what it found.
        match Watch::new(tx.clone(), overflow.clone()) {
            Ok(w) => mode = Mode::Inotify(w),
            Err(e) => shared.event(fallback_event(&root, &cfg, &e)).await,
        }
    }

    // First scan: everything, on a few threads, while the process lists are asked for.
    let started = std::time::Instant::now();
    let scanned = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            let found = scan::scan_root(&root, &|_| None, scan_threads());
            (found, started.elapsed())
        })
    };
    let mut procs_source = Procs::default();
    let needles = vec![root_s.clone()];
    let mut procs = procs_source.all(&shared, needles.clone(), false).await;
    let mut procs_at = tokio::time::Instant::now();
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let mut tree = scan::Tree::default();
    let scanned = scanned.await;
    let earlier: Vec<PathBuf> = shared
        .config()
        .roots
        .iter()
        .map(|r| r.path.clone())
        .take_while(|p| *p != root)
        .collect();
    shared.runs.wait_turn(&earlier, FIRST_CLAIMS_WAIT).await;
    match scanned {
        Ok((found, took)) => {
            for p in found.problems.iter().take(20) {
                tracing::warn!(root = %root.display(), "{p}");
            }
            tracing::info!(
                root = %root.display(),
                runs = found.runs.len(),
                dirs = found.tree.len(),
                ms = took.as_millis(),
                "first scan read"
            );
            tree = found.tree;
            for (dir, read) in found.runs {
                let id = shared.runs.claim(&root, &rel_of(&root, &dir), &name);
                runs.insert(id.clone(), Run::new(id, dir, read, cfg.epochs));
            }
        }
        Err(e) => tracing::error!(root = %root.display(), error = %e, "scan failed"),
    }
    shared.runs.first_claimed(&root);
    // Where the root is (its identity), checked every few seconds and before each batch of work.
    let mut presence = match RootId::of(&root) {
        Some(id) => Presence::Here(id),
        None => Presence::Missing { was_mount: false },
    };
    if presence.is_missing() {
        shared
            .event(NewEvent::new(
                EventKind::RootMissing,
                root_s.clone(),
                Severity::Warning,
                format!(
                    "root {} does not exist (yet); watching for it",
                    root.display()
                ),
            ))
            .await;
    }
    let now = Utc::now();
    let matched = processes_of_runs(&shared, &root_s, &runs, &procs);
    for r in runs.values_mut() {
        r.process = matched.get(&r.id).cloned();
        r.status = core::status(&r.eval, &rules, r.process.is_some(), now);
    }
    let all: Vec<String> = runs.keys().cloned().collect();
    attach_errors(&mut runs, &all).await;
    // Reconcile with what the previous daemon stored: what changed while it was away. A root
    // missing now keeps them listed, stale, until it is back.
    let mut prior = shared.runs.take_restored(&root);
    let mut stale_prior: Vec<String> = Vec::new();
    if presence.is_missing() && !prior.is_empty() {
        stale_prior = prior.keys().cloned().collect();
        shared.runs.publish_all(
            &root,
            std::mem::take(&mut prior)
                .into_iter()
                .map(|(id, mut i)| {
                    i.stale = true;
                    (id, i)
                })
                .collect(),
        );
    }
    let mut events = Vec::new();
    if !prior.is_empty() {
        for r in runs.values_mut() {
            match prior.get(&r.id) {
                Some(old) => {
                    let (before, after) = (
                        old.progress.completed_epochs,
                        r.eval.progress.completed_epochs,
                    );
                    if r.eval.kind == RunnerKind::Trainer && old.runner == RunnerKind::Trainer {
                        // Those completion times are stored already.
                        r.stored_epochs = before.min(after);
                    }
                    if after > before && r.eval.kind == RunnerKind::Trainer {
                        events.push(epoch_event(r, before, after));
                    }
                    if old.status != r.status
                        && let Some(e) = transition_event(r, old.status)
                    {
                        if r.status == RunStatus::Failed {
                            shared
                                .runs
                                .failures
                                .record(r.error.as_ref().map(|f| f.kind));
                        }
                        events.push(e);
                    }
                }
                None => events.push(NewEvent::new(
                    EventKind::RunDiscovered,
                    &r.id,
                    Severity::Info,
                    format!(
                        "{}: new {} run in {}",
                        r.id,
                        r.eval.kind.as_str(),
                        r.dir.display()
                    ),
                )),
            }
        }
        for id in prior.keys().filter(|id| !runs.contains_key(*id)) {
            events.push(NewEvent::new(
                EventKind::RunRemoved,
                id,
                Severity::Info,
                format!("{id}: no longer under {}", root.display()),
            ));
        }
    }
    let gone: Vec<String> = prior
        .keys()
        .filter(|id| !runs.contains_key(*id))
        .cloned()
        .collect();
    shared.runs.release(&gone);
    // Serve the list first; storing every epoch's completion time takes longer.
    if stale_prior.is_empty() {
        shared.runs.publish_all(
            &root,
            runs.iter()
                .map(|(id, r)| (id.clone(), info(&root_s, r)))
                .collect(),
        );
    }
    let counts = status_counts(&runs);
    tracing::info!(root = %root.display(), ms = started.elapsed().as_millis(), "first scan published");
    // Then watch (what changed since the scan is caught by the first look of the loop) ...
    let mut recheck: Vec<PathBuf> = Vec::new();
    if let Mode::Inotify(mut w) = mode {
        let (t, dirs): (scan::Tree, Vec<(String, PathBuf, Option<u32>)>) = (
            std::mem::take(&mut tree),
            runs.values()
                .map(|r| {
                    let epoch = r.stamps.and_then(|s| s.epoch).map(|(i, _)| i);
                    (r.id.clone(), r.dir.clone(), epoch)
                })
                .collect(),
        );
        let root2 = root.clone();
        let set_up = tokio::task::spawn_blocking(move || {
            let result = w.sync(
                &root2,
                &t,
                dirs.iter().map(|(id, d, e)| (id.as_str(), d.as_path(), *e)),
                &[],
            );
            (w, t, result)
        })
        .await;
        mode = Mode::Poll;
        match set_up {
            Ok((w, t, Ok(_))) => {
                tree = t;
                mode = Mode::Inotify(w);
                // What changed between the scan and the watches: one frontier check of all.
                recheck.push(root.clone());
            }
            Ok((_, t, Err(why))) => {
                tree = t;
                events.push(fallback_event(&root, &cfg, &why));
            }
            Err(e) => tracing::error!(root = %root.display(), error = %e, "watch set-up failed"),
        }
        tracing::info!(root = %root.display(), ms = started.elapsed().as_millis(), "watches set up");
    }
    // ... and store it all on the root's writer task (every epoch's completion time: a while).
    let (store, store_rx) = tokio::sync::mpsc::channel::<Write>(64);
    tokio::spawn(writer(shared.clone(), root_s.clone(), store_rx));
    let infos: Vec<RunInfo> = runs.values().map(|r| info(&root_s, r)).collect();
    let _ = store
        .send(Write::Runs(to_store(&mut runs, infos, &gone)))
        .await;
    let mut written: HashMap<String, String> = HashMap::new();
    if cfg.write_progress_json {
        write_progress(&shared, &runs, &mut written, true).await;
    }
    for r in runs.values_mut() {
        r.dirty = false;
    }
    // Recorded once the runs are stored: the end of the start-up work.
    events.push(NewEvent::new(
        EventKind::RootScanned,
        root_s.clone(),
        Severity::Info,
        format!(
            "{} under {}{}; watching with {}",
            match runs.len() {
                0 => "no runs".to_owned(),
                1 => "1 run".to_owned(),
                n => format!("{n} runs"),
            },
            root.display(),
            if counts.is_empty() {
                String::new()
            } else {
                format!(" ({counts})")
            },
            match &mode {
                Mode::Inotify(w) => format!(
                    "inotify ({} directories watched)",
                    w.tree.len()
                        + w.runs
                            .values()
                            .map(|(_, f)| 1 + usize::from(f.is_some()))
                            .sum::<usize>()
                ),
                Mode::Poll => format!(
                    "polling every {}",
                    humantime::format_duration(cfg.poll_interval)
                ),
            }
        ),
    ));
    let _ = store.send(Write::Events(events)).await;

    let mut rejudge = tokio::time::interval(REJUDGE_EVERY);
    rejudge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(cfg.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut safety = tokio::time::interval(SAFETY_RESCAN);
    safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut root_check = tokio::time::interval(ROOT_CHECK);
    root_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (_, _, _, _) = (
        rejudge.tick().await,
        poll.tick().await,
        safety.tick().await,
        root_check.tick().await,
    );
    let mut cycle: u64 = 0;
    // The root was watched with inotify before it went missing: watch it again once back.
    let mut rewatch = false;
    // An identity check that did not answer by its deadline, still running.
    let mut pending_check: Option<tokio::task::JoinHandle<(Option<RootId>, bool)>> = None;
    // The root was last seen as this directory: another one at its path is read from scratch.
    let mut last_here = match presence {
        Presence::Here(id) => Some(id),
        Presence::Missing { .. } => None,
    };
    // The first look after the watches are set up checks every run's frontier.
    let mut check_all = !recheck.is_empty();
    loop {
        let mut touched: HashSet<PathBuf> = HashSet::new();
        let mut rescan = false;
        let mut polled = false;
        let inotify = matches!(mode, Mode::Inotify(_));
        tokio::select! {
            _ = cancel.cancelled() => return,
            () = std::future::ready(()), if !recheck.is_empty() => {
                touched.extend(recheck.drain(..));
                polled = std::mem::take(&mut check_all);
            }
            _ = rejudge.tick() => {}
            _ = root_check.tick() => {}
            _ = poll.tick(), if !inotify => polled = true,
            _ = safety.tick(), if inotify => rescan = true,
            Some(p) = rx.recv() => {
                touched.insert(p);
                // Debounce: gather what else arrives shortly.
                let until = tokio::time::Instant::now() + DEBOUNCE;
                while let Ok(Some(p)) = tokio::time::timeout_at(until, rx.recv()).await {
                    touched.insert(p);
                }
            }
        }
        hb.beat();
        if overflow.swap(false, std::sync::atomic::Ordering::Relaxed) {
            rescan = true;
        }
        // Is the root still the directory it was? Gone: its runs stay listed, stale, and
        // nothing is read or re-judged until it is back; back or replaced: read it all now.
        let mut back = false;
        let mut fresh = false;
        // A check that hung last time (a dead network filesystem) is waited for again rather
        // than started anew, so a hung root holds one thread, not one per look.
        let mut check = match pending_check.take() {
            Some(check) => check,
            None => {
                let root2 = root.clone();
                let was = presence;
                tokio::task::spawn_blocking(move || {
                    let id = RootId::of(&root2);
                    // Listed only when a mount point turned (or still is) a plain directory.
                    let was_mount = match was {
                        Presence::Here(a) => a.mount,
                        Presence::Missing { was_mount } => was_mount,
                    };
                    let empty = was_mount
                        && id.is_some_and(|i| !i.mount)
                        && std::fs::read_dir(&root2).is_ok_and(|mut d| d.next().is_none());
                    (id, empty)
                })
            }
        };
        let mut now_id = None;
        let change = match tokio::time::timeout(ROOT_CHECK_DEADLINE, &mut check).await {
            Ok(result) => {
                let (id, empty) = result.unwrap_or((None, false));
                now_id = id;
                presence.update(id, || empty)
            }
            Err(_) => {
                pending_check = Some(check);
                presence.hung()
            }
        };
        if let RootChange::Gone(why) | RootChange::Replaced(why) = &change {
            tracing::warn!(root = %root.display(), "root {why}");
            let _ = store
                .send(Write::Events(vec![missing_event(
                    &root,
                    why,
                    runs.len() + stale_prior.len(),
                )]))
                .await;
        }
        match change {
            RootChange::Same => {}
            RootChange::Gone(_) => {
                shared.runs.set_stale(&root, true);
                if matches!(mode, Mode::Inotify(_)) {
                    // Its watches follow the old directory wherever it went: drop them.
                    mode = Mode::Poll;
                    rewatch = true;
                }
                tree = scan::Tree::default();
            }
            RootChange::Back | RootChange::Replaced(_) => back = true,
        }
        if presence.is_missing() {
            // Drain what the old watches still report; nothing to read.
            while rx.try_recv().is_ok() {}
            recheck.clear();
            continue;
        }
        if back {
            let now = now_id;
            fresh = last_here != now;
            last_here = now;
            rescan = true;
            if rewatch || matches!(mode, Mode::Inotify(_)) {
                match Watch::new(tx.clone(), overflow.clone()) {
                    Ok(w) => {
                        mode = Mode::Inotify(w);
                        rewatch = false;
                    }
                    Err(e) => shared.event(fallback_event(&root, &cfg, &e)).await,
                }
            }
        }
        let mut found = Found::default();
        let mut full = false;
        if rescan {
            // A directory not seen before is read from scratch: nothing of the old views holds.
            let prev: HashMap<PathBuf, Arc<RunView>> = if fresh {
                HashMap::new()
            } else {
                runs.values()
                    .map(|r| (r.dir.clone(), Arc::clone(&r.view)))
                    .collect()
            };
            let root2 = root.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                scan::scan_root(&root2, &|d| prev.get(d).cloned(), scan_threads())
            })
            .await;
            if let Ok(scanned) = scanned {
                full = true;
                tree = scanned.tree;
                let seen: HashSet<&Path> = scanned.runs.iter().map(|(d, _)| d.as_path()).collect();
                found.gone = runs
                    .values()
                    .filter(|r| !seen.contains(r.dir.as_path()))
                    .map(|r| r.id.clone())
                    .collect();
                found.read = scanned
                    .runs
                    .into_iter()
                    .map(|(d, r)| (None, d, r))
                    .collect();
            }
        } else if polled {
            cycle += 1;
            let every = inotify || cycle.is_multiple_of(FINISHED_EVERY);
            let due: Vec<Due> = runs
                .values()
                .filter(|r| every || !matches!(r.status, RunStatus::Finished | RunStatus::Outdated))
                .map(|r| Due {
                    id: r.id.clone(),
                    dir: r.dir.clone(),
                    view: Arc::clone(&r.view),
                    stamps: r.stamps,
                })
                .collect();
            let known: HashSet<PathBuf> = runs.values().map(|r| r.dir.clone()).collect();
            let root2 = root.clone();
            let mut t = std::mem::take(&mut tree);
            let result = tokio::task::spawn_blocking(move || {
                let f = poll_cycle(&root2, due, &mut t, &known);
                (f, t)
            })
            .await;
            if let Ok((f, t)) = result {
                found = f;
                tree = t;
            }
        } else if !touched.is_empty() {
            let known: Vec<(String, PathBuf, Arc<RunView>)> = runs
                .values()
                .map(|r| (r.id.clone(), r.dir.clone(), Arc::clone(&r.view)))
                .collect();
            let root2 = root.clone();
            let mut t = std::mem::take(&mut tree);
            let result = tokio::task::spawn_blocking(move || {
                let f = rescan_touched(&root2, &known, touched, &mut t);
                (f, t)
            })
            .await;
            if let Ok((f, t)) = result {
                found = f;
                tree = t;
            }
        }
        // A root that went away while it was read: what the read saw says nothing about its
        // runs (they are not gone); the check at the top of the loop tells what happened.
        if full || !found.gone.is_empty() {
            let root2 = root.clone();
            let id = tokio::time::timeout(
                ROOT_CHECK_DEADLINE,
                tokio::task::spawn_blocking(move || RootId::of(&root2)),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
            if Some(presence) != id.map(Presence::Here) {
                recheck.push(root.clone());
                continue;
            }
        }
        // New runs get their id.
        let read: Vec<(String, PathBuf, ReadRun)> = std::mem::take(&mut found.read)
            .into_iter()
            .map(|(id, d, r)| {
                let id = id.unwrap_or_else(|| shared.runs.claim(&root, &rel_of(&root, &d), &name));
                (id, d, r)
            })
            .collect();
        // Back after missing since the start: the stored runs not found now are gone, the
        // others are no news.
        let mut was_known: HashSet<String> = HashSet::new();
        if back && full {
            was_known = std::mem::take(&mut stale_prior).into_iter().collect();
            let now_ids: HashSet<&str> = read.iter().map(|(id, _, _)| id.as_str()).collect();
            found.gone.extend(
                was_known
                    .iter()
                    .filter(|id| !now_ids.contains(id.as_str()))
                    .cloned(),
            );
        }
        // Watch what is new (a new run, a new frontier epoch, a new directory), and look
        // again at what got a new watch. Out of watches: poll this root from now on.
        if let Mode::Inotify(w) = &mut mode {
            let synced = w.sync(
                &root,
                &tree,
                read.iter()
                    .map(|(id, d, r)| (id.as_str(), d.as_path(), r.stamps.epoch.map(|(i, _)| i))),
                &found.gone,
            );
            match synced {
                Ok(again) => recheck.extend(again),
                Err(why) => {
                    mode = Mode::Poll;
                    poll.reset();
                    shared.event(fallback_event(&root, &cfg, &why)).await;
                }
            }
        }
        // Bursts of file events re-use a process list that is a moment old.
        if procs_at.elapsed() >= PROCS_FRESH {
            procs = procs_source.all(&shared, needles.clone(), false).await;
            procs_at = tokio::time::Instant::now();
        }
        let now = Utc::now();
        let mut events = Vec::new();
        for id in &found.gone {
            runs.remove(id);
        }
        shared.runs.release(&found.gone);
        for (id, dir, read) in read {
            match runs.get_mut(&id) {
                Some(r) => {
                    r.stamps = Some(read.stamps);
                    if *r.view == read.view {
                        continue; // nothing moved: no re-evaluation, no event, no write
                    }
                    let eval = core::evaluate(&read.view, cfg.epochs);
                    r.view = Arc::new(read.view);
                    let before = r.eval.progress.completed_epochs;
                    let after = eval.progress.completed_epochs;
                    if eval != r.eval {
                        r.eval = eval;
                        r.dirty = true;
                    }
                    if after > before && r.eval.kind == RunnerKind::Trainer {
                        events.push(epoch_event(r, before, after));
                    }
                }
                None if was_known.contains(&id) => {
                    runs.insert(id.clone(), Run::new(id, dir, read, cfg.epochs));
                }
                None => {
                    let r = Run::new(id.clone(), dir, read, cfg.epochs);
                    events.push(NewEvent::new(
                        EventKind::RunDiscovered,
                        &id,
                        Severity::Info,
                        format!(
                            "{id}: new {} run in {}",
                            r.eval.kind.as_str(),
                            r.dir.display()
                        ),
                    ));
                    if r.eval.kind == RunnerKind::Unknown {
                        events.push(NewEvent::new(
                            EventKind::RunUnknownRunner,
                            &id,
                            Severity::Warning,
                            format!(
                                "{id}: cannot tell what kind of run this is: {}",
                                r.eval.diagnostic.clone().unwrap_or_default()
                            ),
                        ));
                    }
                    // Status Unknown until the re-judging below sets it (and reports the change).
                    runs.insert(id, r);
                }
            }
        }
        // Re-judge every run: time passes, processes come and go.
        let mut matched = processes_of_runs(&shared, &root_s, &runs, &procs);
        // A run about to be judged failed for want of a process: ask the remote nodes again
        // first (their lists are cached up to PROCS_EVERY), so a run whose process started
        // since is judged stuck at once — never failed, then stuck.
        let would_fail = runs.values().any(|r| {
            r.status != RunStatus::Failed
                && core::status(&r.eval, &rules, matched.contains_key(&r.id), now)
                    == RunStatus::Failed
        });
        if would_fail && procs_source.has_remote() {
            procs = procs_source.all(&shared, needles.clone(), true).await;
            procs_at = tokio::time::Instant::now();
            matched = processes_of_runs(&shared, &root_s, &runs, &procs);
        }
        let mut moved: Vec<(String, RunStatus)> = Vec::new();
        for r in runs.values_mut() {
            let process = matched.get(&r.id);
            if process != r.process.as_ref() {
                r.process = process.cloned();
                r.dirty = true;
            }
            let status = core::status(&r.eval, &rules, r.process.is_some(), now);
            if status != r.status {
                r.dirty = true;
                moved.push((r.id.clone(), r.status));
                r.status = status;
            }
        }
        if !moved.is_empty() {
            let ids: Vec<String> = moved.iter().map(|(id, _)| id.clone()).collect();
            attach_errors(&mut runs, &ids).await;
            for (id, old) in moved {
                if let Some(r) = runs.get(&id)
                    && let Some(e) = transition_event(r, old)
                {
                    if r.status == RunStatus::Failed {
                        shared
                            .runs
                            .failures
                            .record(r.error.as_ref().map(|f| f.kind));
                    }
                    events.push(e);
                }
            }
        }
        if back {
            tracing::info!(root = %root.display(), runs = runs.len(), "root is back");
            events.push(NewEvent::new(
                EventKind::RootBack,
                root_s.clone(),
                Severity::Info,
                format!(
                    "root {} is back: {} run(s) ({})",
                    root.display(),
                    runs.len(),
                    status_counts(&runs)
                ),
            ));
        }
        if !full && found.gone.is_empty() && runs.values().all(|r| !r.dirty) {
            continue;
        }
        // Publish first: the API shows the change at once; storing it may wait on the database.
        let changed: Vec<RunInfo> = runs
            .values()
            .filter(|r| r.dirty)
            .map(|r| info(&root_s, r))
            .collect();
        if full {
            shared.runs.publish_all(
                &root,
                runs.iter()
                    .map(|(id, r)| (id.clone(), info(&root_s, r)))
                    .collect(),
            );
        } else {
            shared
                .runs
                .publish_changes(&root, changed.clone(), &found.gone);
        }
        let _ = store
            .send(Write::Runs(to_store(&mut runs, changed, &found.gone)))
            .await;
        if cfg.write_progress_json {
            write_progress(&shared, &runs, &mut written, false).await;
        }
        for id in &found.gone {
            written.remove(id);
        }
        for r in runs.values_mut() {
            r.dirty = false;
        }
        if !events.is_empty() {
            let _ = store.send(Write::Events(events)).await;
        }
    }
}

/// The process of each run that has one ([`match_processes`]); nothing to look up when no
/// process mentions the root.
fn processes_of_runs(
    shared: &Shared,
    root: &str,
    runs: &BTreeMap<String, Run>,
    procs: &[Proc],
) -> HashMap<String, RunProcess> {
    if !procs.iter().any(|p| p.cmd.contains(root)) {
        return HashMap::new();
    }
    let dirs: HashMap<String, &str> = runs
        .values()
        .map(|r| (r.dir.display().to_string(), r.id.as_str()))
        .collect();
    match_processes(Path::new(root), &dirs, procs, &gpu_indices(shared))
}

/// The Pylon-compatible progress.json of a trainer or evaluator run (field names as Pylon's
/// ProgressInfo), without a timestamp so identical progress gives identical bytes.
fn progress_json(r: &Run) -> Option<String> {
    if !matches!(r.eval.kind, RunnerKind::Trainer | RunnerKind::Evaluator) {
        return None; // generic runs own their progress.json; unknown ones get nothing
    }
    let p = &r.eval.progress;
    let v = serde_json::json!({
        "completed_epochs": p.completed_epochs,
        "progress_percentage": p.percentage,
        "early_stopped": p.early_stopped,
        "early_stopped_at_epoch": p.early_stopped_at_epoch,
        "total_epochs": p.total_epochs,
        "runner_type": r.eval.kind.as_str(),
        "status": r.status.as_str(),
        "scores": {"best": p.best_score, "latest": p.latest_score},
        "timing": {
            "rate_per_hour": p.rate_per_hour,
            "eta_seconds": p.eta_seconds,
            "last_log_update": r.eval.newest_log.as_ref().map(|(_, f)| f.mtime),
            "last_artifact_update": r.eval.newest_artifact,
        },
        "written_by": "ugro-monitor",
    });
    serde_json::to_string_pretty(&v).ok()
}

/// Writes progress.json into each run whose content changed ([`crate::files::write_atomic`]).
/// Returns failures as (run id, message).
fn write_progress_files(jobs: Vec<(String, PathBuf, String)>) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    for (id, dir, text) in jobs {
        let result = crate::files::write_atomic(&dir.join("progress.json"), text.as_bytes());
        if let Err(e) = result {
            failures.push((
                id,
                format!("cannot write {}: {e}", dir.join("progress.json").display()),
            ));
        }
    }
    failures
}

fn epoch_event(r: &Run, before: u32, after: u32) -> NewEvent {
    let range = if after - before == 1 {
        format!("epoch {}", after - 1)
    } else {
        format!("epochs {}–{}", before, after - 1)
    };
    let total = r
        .eval
        .progress
        .total_epochs
        .map_or("?".into(), |t| t.to_string());
    NewEvent::new(
        EventKind::RunEpochCompleted,
        &r.id,
        Severity::Info,
        format!("{}: {range} completed ({after}/{total})", r.id),
    )
}

/// Writes the progress.json files whose content changed (of the changed runs, or of all with
/// `all`); a failure is an event once per run.
async fn write_progress(
    shared: &Shared,
    runs: &BTreeMap<String, Run>,
    written: &mut HashMap<String, String>,
    all: bool,
) {
    let jobs: Vec<(String, PathBuf, String)> = runs
        .values()
        .filter(|r| all || r.dirty)
        .filter_map(|r| {
            let text = progress_json(r)?;
            (written.get(&r.id) != Some(&text)).then(|| (r.id.clone(), r.dir.clone(), text))
        })
        .collect();
    if jobs.is_empty() {
        return;
    }
    for (id, _, text) in &jobs {
        written.insert(id.clone(), text.clone());
    }
    let failures = tokio::task::spawn_blocking(move || write_progress_files(jobs))
        .await
        .unwrap_or_default();
    for (id, message) in failures {
        shared
            .event(NewEvent::new(
                EventKind::RunProgressWriteFailed,
                &id,
                Severity::Warning,
                format!("{id}: {message}"),
            ))
            .await;
    }
}

/// Rows per transaction when storing runs: a first scan stores every epoch of every run, and
/// other writers (health, events) must get the database in between.
const STORE_BATCH: usize = 4000;

/// Runs to store: each changed run as published, with the epochs whose completion times are
/// not stored yet (`from..to` of its view), and the gone runs.
#[derive(Debug, Default)]
struct ToStore {
    changed: Vec<(RunInfo, Option<EpochsToStore>)>,
    gone: Vec<String>,
}

/// The completion times of epochs `from..to` of a run's view.
type EpochsToStore = (Arc<RunView>, u32, u32);

/// What the root's writer task stores, in order.
#[derive(Debug)]
enum Write {
    Runs(ToStore),
    Events(Vec<NewEvent>),
    /// Time to try a failed store again (made by the writer itself).
    Retry,
}

/// What to store for the changed runs (`infos`, as published) and the gone ones; the epochs
/// handed over count as stored from now on.
fn to_store(runs: &mut BTreeMap<String, Run>, infos: Vec<RunInfo>, gone: &[String]) -> ToStore {
    let mut out = ToStore {
        gone: gone.to_vec(),
        changed: Vec::with_capacity(infos.len()),
    };
    for i in infos {
        let epochs = runs.get_mut(&i.id).and_then(|r| {
            let done = r.eval.progress.completed_epochs;
            (r.eval.kind == RunnerKind::Trainer && done > r.stored_epochs).then(|| {
                let from = std::mem::replace(&mut r.stored_epochs, done);
                (Arc::clone(&r.view), from, done)
            })
        });
        out.changed.push((i, epochs));
    }
    out
}

/// First wait before a failed store is tried again; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two tries of a failed store.
const RETRY_MAX: Duration = Duration::from_secs(10);

/// One run's pending write: delete its rows (it went; maybe it came back since), then store
/// its newest state and the epochs not stored yet.
#[derive(Debug, Default)]
struct Pending {
    delete: bool,
    info: Option<RunInfo>,
    epochs: Option<EpochsToStore>,
}

impl Pending {
    /// Rows this writes (a batch holds about [`STORE_BATCH`]).
    fn rows(&self) -> usize {
        1 + self
            .epochs
            .as_ref()
            .map_or(0, |(_, from, to)| to.saturating_sub(*from) as usize)
    }
}

/// What a root's writer still has to store, one entry per run: a newer state replaces an older
/// one, so a database that refuses writes for hours costs one entry per run, never a growing
/// queue, and what lands once it takes writes again is the state held in memory.
#[derive(Debug, Default)]
struct Backlog(BTreeMap<String, Pending>);

impl Backlog {
    fn merge(&mut self, s: ToStore) {
        for (info, epochs) in s.changed {
            let p = self.0.entry(info.id.clone()).or_default();
            p.epochs = match (p.epochs.take(), epochs) {
                // The newest view, from the first epoch not stored yet.
                (Some((_, old_from, _)), Some((view, from, to))) => {
                    Some((view, old_from.min(from).min(to), to))
                }
                (old, new) => new.or(old),
            };
            p.info = Some(info);
        }
        for id in s.gone {
            self.0.insert(
                id,
                Pending {
                    delete: true,
                    ..Pending::default()
                },
            );
        }
    }

    fn rows(&self) -> usize {
        self.0.values().map(Pending::rows).sum()
    }

    /// Stores the backlog in transactions of about [`STORE_BATCH`] rows (the epoch rows are
    /// made one transaction at a time, so a first scan's 100 000 of them are never all in
    /// memory). Stops at the first failure, keeping what did not land; `Err` then.
    async fn flush(&mut self, shared: &Shared, root: &str) -> Result<(), StoreError> {
        while !self.0.is_empty() {
            let mut batch = Vec::new();
            let mut rows = 0;
            while rows < STORE_BATCH
                && let Some((id, p)) = self.0.pop_first()
            {
                rows += p.rows();
                batch.push((id, p));
            }
            let mut gone = Vec::new();
            let mut changed = Vec::new();
            let mut epochs = Vec::new();
            for (id, p) in &batch {
                if p.delete {
                    gone.push(id.clone());
                }
                if let Some(info) = &p.info {
                    changed.push(info.clone());
                }
                if let Some((view, from, to)) = &p.epochs {
                    let times = core::epoch_completion_times(view, *to);
                    for (e, t) in times.into_iter().enumerate().skip(*from as usize) {
                        epochs.push((id.clone(), e as u32, t));
                    }
                }
            }
            let started = std::time::Instant::now();
            let result = shared
                .store
                .save_runs(root, &changed, &gone, &epochs, Utc::now())
                .await;
            tracing::debug!(
                root,
                rows = changed.len() + gone.len() + epochs.len(),
                ms = started.elapsed().as_millis() as u64,
                ok = result.is_ok(),
                "stored runs"
            );
            if let Err(e) = result {
                // Nothing was merged meanwhile (this task is the only one merging): put it back.
                self.0.extend(batch);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The root's writer: stores runs and records events in the order they come, so the tracking
/// loop never waits on the database (it waits only when this falls far behind). A store that
/// fails is kept in the backlog and tried again, waiting longer each time (up to
/// [`RETRY_MAX`]); what comes meanwhile is merged into it.
async fn writer(shared: Arc<Shared>, root: String, mut rx: tokio::sync::mpsc::Receiver<Write>) {
    let mut backlog = Backlog::default();
    let mut reported = 0usize;
    // Set while failing: when to try again, and the wait after that.
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    let report = |backlog: &Backlog, reported: &mut usize| {
        let rows = backlog.rows();
        shared.store.add_pending(rows as i64 - *reported as i64);
        *reported = rows;
    };
    loop {
        let w = match retry {
            Some((at, _)) if !backlog.0.is_empty() => tokio::select! {
                w = rx.recv() => w,
                _ = tokio::time::sleep_until(at) => Some(Write::Retry),
            },
            _ => rx.recv().await,
        };
        let Some(w) = w else { break };
        let (flush, events) = match w {
            Write::Runs(s) => {
                backlog.merge(s);
                report(&backlog, &mut reported);
                (retry.is_none(), Vec::new())
            }
            Write::Retry => (true, Vec::new()),
            // The events follow the runs they are about: those go first (unless failing).
            Write::Events(events) => (retry.is_none() && !backlog.0.is_empty(), events),
        };
        if flush {
            let result = backlog.flush(&shared, &root).await;
            report(&backlog, &mut reported);
            retry = match result {
                Ok(()) => {
                    shared.store.write_landed();
                    None
                }
                Err(e) => {
                    let wait = retry.map_or(RETRY_FIRST, |(_, w)| w);
                    tracing::warn!(
                        root,
                        error = %e,
                        runs = backlog.0.len(),
                        retry_in_ms = wait.as_millis() as u64,
                        "could not store runs; kept to try again"
                    );
                    Some((
                        tokio::time::Instant::now() + wait,
                        (wait * 2).min(RETRY_MAX),
                    ))
                }
            };
        }
        for e in events {
            shared.event(e).await;
        }
    }
    // The root is gone or the daemon stops: one last try.
    if !backlog.0.is_empty() && backlog.flush(&shared, &root).await.is_err() {
        tracing::warn!(
            root,
            runs = backlog.0.len(),
            "runs not stored; the next start's first scan stores them"
        );
    }
    shared.store.add_pending(-(reported as i64));
}

/// Reads the failure reason of a failed or stuck run from its newest log; clears it otherwise.
/// Sets the `error` of the runs `ids` from the tail of their newest log when they are failed or
/// stuck (cleared otherwise). The logs are read on the blocking pool, never on the runtime.
async fn attach_errors(runs: &mut BTreeMap<String, Run>, ids: &[String]) {
    let mut to_read: Vec<(String, PathBuf)> = Vec::new();
    for id in ids {
        let Some(r) = runs.get_mut(id) else { continue };
        r.error = None;
        if matches!(r.status, RunStatus::Failed | RunStatus::Stuck)
            && let Some((name, _)) = r.eval.newest_log.as_ref()
        {
            to_read.push((id.clone(), r.dir.join(name)));
        }
    }
    if to_read.is_empty() {
        return;
    }
    let read = tokio::task::spawn_blocking(move || {
        to_read
            .into_iter()
            .filter_map(|(id, path)| {
                let error = scan::log_tail(&path)
                    .ok()
                    .and_then(|tail| core::classify_failure(&tail))?;
                Some((id, error))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for (id, error) in read {
        if let Some(r) = runs.get_mut(&id) {
            r.error = Some(error);
        }
    }
}

fn transition_event(r: &Run, old: RunStatus) -> Option<NewEvent> {
    let id = &r.id;
    let p = &r.eval.progress;
    let epochs = match p.total_epochs {
        Some(t) => format!("{}/{t} epochs", p.completed_epochs),
        None => format!("{} epochs", p.completed_epochs),
    };
    let reason = r.error.as_ref().map_or_else(
        || "no error found in the log".to_string(),
        |e| e.message.clone(),
    );
    Some(match r.status {
        RunStatus::Running if old != RunStatus::Unknown => NewEvent::new(
            EventKind::RunStarted,
            id,
            Severity::Info,
            format!("{id}: running ({epochs})"),
        ),
        RunStatus::Finished => NewEvent::new(
            EventKind::RunFinished,
            id,
            Severity::Info,
            format!("{id}: finished ({epochs})"),
        ),
        RunStatus::Failed => NewEvent::new(
            EventKind::RunFailed,
            id,
            Severity::Warning,
            format!("{id}: failed after {epochs}: {reason}"),
        ),
        RunStatus::Stuck => NewEvent::new(
            EventKind::RunStuck,
            id,
            Severity::Warning,
            format!(
                "{id}: stuck: its process (pid {} on {}) lives but the log is quiet ({epochs}); {reason}",
                r.process.as_ref().map_or(0, |p| p.pid),
                r.process.as_ref().map_or("?", |p| p.node.as_str()),
            ),
        ),
        RunStatus::Outdated => NewEvent::new(
            EventKind::RunOutdated,
            id,
            Severity::Info,
            format!("{id}: outdated (finished, artifacts older than the root's outdated_after)"),
        ),
        _ => return None,
    })
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

/// A run a poll cycle looks at.
#[derive(Debug)]
struct Due {
    id: String,
    dir: PathBuf,
    view: Arc<RunView>,
    stamps: Option<Stamps>,
}

/// One poll cycle (blocking): the frontier check of each due run (a few `stat`s), a read of the
/// runs whose frontier changed, and a look for new runs in the directories that changed.
fn poll_cycle(
    root: &Path,
    due: Vec<Due>,
    tree: &mut scan::Tree,
    known: &HashSet<PathBuf>,
) -> Found {
    let mut found = Found::default();
    for d in due {
        if d.stamps
            .is_some_and(|s| scan::unchanged(&d.dir, &d.view, &s))
        {
            continue;
        }
        match scan::read_run(&d.dir, Some(&d.view)) {
            Ok(r) => found.read.push((Some(d.id), d.dir, r)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.gone.push(d.id),
            Err(_) => {} // unreadable now (permissions, racing delete): keep the last view
        }
    }
    let (new_runs, problems) = scan::poll_tree(root, tree, &|d| known.contains(d));
    for p in problems.iter().take(5) {
        tracing::debug!(root = %root.display(), "{p}");
    }
    for dir in new_runs {
        if let Ok(r) = scan::read_run(&dir, None) {
            found.read.push((None, dir, r));
        }
    }
    found
}

/// Re-reads the runs that contain a touched path; a touched path outside every known run makes
/// the searched directories be looked at again for new runs ([`scan::poll_tree`]).
fn rescan_touched(
    root: &Path,
    known: &[(String, PathBuf, Arc<RunView>)],
    touched: HashSet<PathBuf>,
    tree: &mut scan::Tree,
) -> Found {
    // By dir: the id (none yet for a new run) and the last view.
    let mut hit: BTreeMap<PathBuf, (Option<String>, Option<Arc<RunView>>)> = BTreeMap::new();
    let mut outside = false;
    for path in touched {
        // The innermost known run containing the path.
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
    if outside {
        let dirs: HashSet<&Path> = known.iter().map(|(_, d, _)| d.as_path()).collect();
        let (new_runs, _) = scan::poll_tree(root, tree, &|d| dirs.contains(d));
        for d in new_runs {
            hit.insert(d, (None, None));
        }
    }
    let mut found = Found::default();
    for (dir, (id, prev)) in hit {
        match scan::read_run(&dir, prev.as_deref()) {
            Ok(r) => found.read.push((id, dir, r)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.gone.extend(id),
            Err(_) => {} // unreadable now (permissions, racing delete): keep the last view
        }
    }
    found
}

/// Why inotify gave up on a root when the watch limit is reached.
const INOTIFY_LIMIT: &str =
    "the inotify watch limit is reached (raise fs.inotify.max_user_watches)";

/// The `root.watch_fallback` warning: this root is polled instead of watched.
fn fallback_event(root: &Path, cfg: &RootConfig, why: &str) -> NewEvent {
    NewEvent::new(
        EventKind::RootWatchFallback,
        root.display().to_string(),
        Severity::Warning,
        format!(
            "cannot watch {} with inotify ({why}); polling every {} instead",
            root.display(),
            humantime::format_duration(cfg.poll_interval)
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn stored(id: &str, status: RunStatus) -> (String, RunInfo) {
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
    fn a_failed_store_keeps_one_entry_per_run_with_its_newest_state() {
        let info = |id: &str, s| stored(id, s).1;
        let view = Arc::new(RunView::default());
        let mut b = Backlog::default();
        b.merge(ToStore {
            changed: vec![(info("a", RunStatus::Running), Some((view.clone(), 0, 3)))],
            gone: Vec::new(),
        });
        // Not stored yet: newer states and a run that went.
        b.merge(ToStore {
            changed: vec![(info("a", RunStatus::Finished), Some((view.clone(), 3, 5)))],
            gone: vec!["b".into()],
        });
        b.merge(ToStore {
            changed: vec![(info("b", RunStatus::Running), None)],
            gone: Vec::new(),
        });
        assert_eq!(b.0.len(), 2);
        let a = &b.0["a"];
        assert_eq!(a.info.as_ref().map(|i| i.status), Some(RunStatus::Finished));
        assert_eq!(
            a.epochs.as_ref().map(|(_, from, to)| (*from, *to)),
            Some((0, 5)),
            "every epoch not stored yet, from the first handed over"
        );
        assert!(!a.delete);
        let back = &b.0["b"];
        assert!(
            back.delete && back.info.is_some(),
            "gone, then back: its rows deleted, then stored fresh"
        );
        assert_eq!(b.rows(), (1 + 5) + 1);
        // Hours of failures cost no more entries.
        for _ in 0..1000 {
            b.merge(ToStore {
                changed: vec![(info("a", RunStatus::Running), None)],
                gone: Vec::new(),
            });
        }
        assert_eq!(b.0.len(), 2);
        assert_eq!(b.0["a"].rows(), 6, "epochs kept while newer states come");
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
    fn a_root_that_goes_and_comes_back_is_seen_as_such() {
        let here = |ino, mount| {
            Some(RootId {
                dev: if mount { 40 } else { 8 },
                ino,
                mount,
            })
        };
        let mut p = Presence::Missing { was_mount: false };
        assert_eq!(p.update(None, || true), RootChange::Same, "still absent");
        assert_eq!(
            p.update(here(5, false), || true),
            RootChange::Back,
            "created"
        );
        assert_eq!(p.update(here(5, false), || true), RootChange::Same);
        assert!(
            matches!(p.update(None, || true), RootChange::Gone(_)),
            "moved away"
        );
        assert_eq!(
            p.update(here(5, false), || true),
            RootChange::Back,
            "moved back"
        );
        assert!(
            matches!(p.update(here(6, false), || true), RootChange::Replaced(_)),
            "another tree moved into place"
        );
        assert_eq!(
            p.update(here(1, true), || true),
            RootChange::Back,
            "a filesystem mounted on it"
        );
        // Unmounted: the empty mount point left behind is not the root.
        match p.update(here(6, false), || true) {
            RootChange::Gone(why) => assert!(why.contains("unmounted"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.update(here(6, false), || true),
            RootChange::Same,
            "still unmounted"
        );
        assert_eq!(
            p.update(here(1, true), || true),
            RootChange::Back,
            "remounted"
        );
        // A mount point replaced by a plain directory with content is a replacement.
        assert!(matches!(
            p.update(here(7, false), || false),
            RootChange::Replaced(_)
        ));
        assert!(p.update(None, || true) != RootChange::Same);
        assert!(p.is_missing());
        // A check that hangs: missing once, then back when a check answers.
        let mut p = Presence::Here(here(9, true).unwrap());
        match p.hung() {
            RootChange::Gone(why) => assert!(why.contains("does not answer"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.hung(), RootChange::Same);
        assert_eq!(p.update(here(9, true), || false), RootChange::Back);
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

    fn p(node: &str, pid: u32, secs: i64, cmd: &str, gpus: &[&str]) -> Proc {
        Proc {
            node: node.into(),
            pid,
            user: "u".into(),
            cmd: cmd.into(),
            start_time: DateTime::from_timestamp(secs, 0),
            gpus: gpus
                .iter()
                .map(|g| GpuUse {
                    uuid: (*g).into(),
                    used_memory_mib: Some(100),
                })
                .collect(),
        }
    }

    fn matched(dirs: &[&str], procs: &[Proc]) -> HashMap<String, RunProcess> {
        let index: HashMap<String, &str> =
            dirs.iter().map(|d| (format!("/runs/{d}"), *d)).collect();
        let gpu_index = HashMap::from([("GPU-a".to_string(), 0), ("GPU-b".to_string(), 1)]);
        match_processes(Path::new("/runs"), &index, procs, &gpu_index)
    }

    #[test]
    fn a_process_belongs_to_a_run_by_its_dir_or_config_path_only() {
        let procs = vec![
            p("local", 10, 5, "python train.py --work-dir /runs/ab", &[]),
            p(
                "local",
                11,
                3,
                "python train.py --config /runs/a/config.json",
                &[],
            ),
            p("local", 12, 4, "python train.py --out /runs/a/", &[]),
            p("local", 13, 1, "python train.py --out /runs/abc/x", &[]),
            p(
                "local",
                14,
                1,
                "python eval.py '/runs/with space/config.json'",
                &[],
            ),
            p("local", 15, 1, "vim /runs/notes.txt /runs", &[]),
        ];
        let m = matched(&["a", "ab", "b", "with space"], &procs);
        assert_eq!(m["a"].pid, 11, "the oldest process of the run");
        assert_eq!(m["ab"].pid, 10);
        assert_eq!(m["with space"].pid, 14);
        assert!(!m.contains_key("b"));
        assert_eq!(m.len(), 3, "{m:?}");
    }

    #[test]
    fn gpu_processes_of_a_run_are_listed_with_its_process() {
        let procs = vec![
            // The launcher holds no GPU; its workers (same config) do, on two GPUs.
            p(
                "gpu1",
                100,
                1,
                "torchrun train.py --config /runs/a/config.json",
                &[],
            ),
            p(
                "gpu1",
                101,
                2,
                "python -u train.py --config /runs/a/config.json",
                &["GPU-b"],
            ),
            p(
                "gpu1",
                102,
                2,
                "python -u train.py --config /runs/a/config.json",
                &["GPU-a"],
            ),
            // Another node's process of the same run is not mixed in.
            p(
                "gpu2",
                103,
                9,
                "python -u train.py --config /runs/a/config.json",
                &["GPU-c"],
            ),
            p("gpu1", 104, 2, "python other.py", &["GPU-a"]),
        ];
        let m = matched(&["a"], &procs);
        let a = &m["a"];
        assert_eq!((a.node.as_str(), a.pid), ("gpu1", 100));
        let gpus: Vec<(Option<u32>, u32)> = a.gpus.iter().map(|g| (g.index, g.pid)).collect();
        assert_eq!(gpus, [(Some(0), 102), (Some(1), 101)]);
        assert_eq!(a.gpus[0].uuid, "GPU-a");
        assert_eq!(a.gpus[0].used_memory_mib, Some(100));
    }

    #[test]
    fn the_batched_remote_listing_joins_gpu_processes_by_pid() {
        let cmd = remote_command(Duration::from_secs(15));
        assert!(cmd.starts_with(ugro_core::parse::PS_COMMAND), "{cmd}");
        assert!(
            cmd.contains("timeout -k 1 7 nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory"),
            "{cmd}"
        );
        let out = format!(
            "    1 root        900 /sbin/init\n 4242 alice       120 python train.py --config /runs/a/config.json\n\
             {APPS_MARKER}\nGPU-4f1c, 4242, 10240\nGPU-9e2d, 4242, [N/A]\nGPU-4f1c, 777, 5\n"
        );
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let procs = remote_procs("gpu1", &out, now);
        assert_eq!(procs.len(), 2, "{procs:?}");
        let train = procs.iter().find(|p| p.pid == 4242).unwrap();
        assert_eq!(train.node, "gpu1");
        assert_eq!(train.user, "alice");
        assert_eq!(
            train.start_time,
            DateTime::from_timestamp(1_000_000 - 120, 0)
        );
        assert_eq!(
            train.gpus,
            [
                GpuUse {
                    uuid: "GPU-4f1c".into(),
                    used_memory_mib: Some(10240)
                },
                GpuUse {
                    uuid: "GPU-9e2d".into(),
                    used_memory_mib: None
                }
            ]
        );
        // Without nvidia-smi (or its output), the process list alone.
        let bare = remote_procs("gpu1", &format!(" 5 bob 3 sleep 9\n{APPS_MARKER}\n"), now);
        assert_eq!(bare.len(), 1);
        assert!(bare[0].gpus.is_empty());
    }

    #[test]
    fn an_absurd_elapsed_time_from_ps_gives_no_start_time_instead_of_a_panic() {
        // `ps` output comes from the node: past what a date can hold (chrono used to panic
        // on the first two), the process has no start time.
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let out = format!(
            " 6 eve 9223372036854776 sleep 9\n 7 eve 100000000000000 sleep 9\n\
             8 eve 18446744073709551615 sleep 9\n{APPS_MARKER}\n"
        );
        let procs = remote_procs("gpu1", &out, now);
        assert_eq!(procs.len(), 3, "{procs:?}");
        assert!(procs.iter().all(|p| p.start_time.is_none()), "{procs:?}");
    }

    #[test]
    fn local_processes_are_read_only_when_they_mention_the_root() {
        let me = std::process::id();
        let all = local_processes(&[String::new()]);
        assert!(
            all.iter().any(|p| p.pid == me),
            "an empty needle matches all"
        );
        let mine = all.iter().find(|p| p.pid == me).unwrap();
        assert!(mine.start_time.is_some());
        let none = local_processes(&["/no/such/root/anywhere-ugro".to_string()]);
        assert!(
            none.iter()
                .all(|p| p.cmd.contains("/no/such/root/anywhere-ugro"))
        );
    }
}
