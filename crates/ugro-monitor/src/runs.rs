//! Run tracking: one task per `[[roots]]` entry keeps every run under it current. The first scan
//! discovers and reads all runs; then inotify (local filesystems) recomputes only the touched
//! runs, debounced, or frontier polling (network filesystems, or on request) re-reads only what
//! can change next. Statuses are re-judged on a timer (a quiet log turns a run stuck or failed
//! without any file event), against the processes of this machine. Changes become events.
//! The rules live in `ugro_core::runs`; the filesystem reading in `crate::scan`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use ugro_api::{RunInfo, RunProcess, Severity};
use ugro_core::runs::{self as core, Evaluation, RunStatus, RunView, RunnerKind, StatusRules};

use crate::config::{RootConfig, WatchMode};
use crate::daemon::Shared;
use crate::scan;
use crate::store::NewEvent;

/// File events are gathered this long before the touched runs are recomputed.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How often statuses are re-judged without file events (quiet logs age into stuck/failed).
const REJUDGE_EVERY: Duration = Duration::from_secs(10);
/// Full rescan of an inotify root, in case an event was lost.
const SAFETY_RESCAN: Duration = Duration::from_secs(600);
/// In poll mode, finished and outdated runs are re-read only every this many cycles.
const FINISHED_EVERY: u64 = 20;
/// Pending file events per root; past it the root is rescanned instead.
const EVENT_QUEUE: usize = 8192;

/// One tracked run.
#[derive(Debug, Clone)]
struct Run {
    id: String,
    dir: PathBuf,
    /// Shared, so the per-cycle work lists hand views to the reader threads without copying.
    view: Arc<RunView>,
    eval: Evaluation,
    status: RunStatus,
    process: Option<RunProcess>,
    error: Option<core::Failure>,
}

/// Every tracked run of every root, for the API.
#[derive(Debug, Default)]
pub struct Runs {
    roots: RwLock<BTreeMap<PathBuf, BTreeMap<String, RunInfo>>>,
    /// What the previous daemon stored, per root, until that root's first scan reconciles it.
    restored: std::sync::Mutex<HashMap<PathBuf, BTreeMap<String, RunInfo>>>,
}

impl Runs {
    /// Serves the runs stored by the previous daemon at once (marked `restored`).
    pub fn restore(rows: Vec<(String, RunInfo)>) -> Self {
        let mut by_root: BTreeMap<PathBuf, BTreeMap<String, RunInfo>> = BTreeMap::new();
        for (root, mut info) in rows {
            info.restored = true;
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
        }
    }

    fn take_restored(&self, root: &Path) -> BTreeMap<String, RunInfo> {
        self.restored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(root)
            .unwrap_or_default()
    }

    /// The root a run id belongs to (the first root that has it).
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
        roots
            .iter()
            .filter(|(r, _)| root.is_none_or(|want| r.as_path() == want))
            .flat_map(|(_, runs)| runs.values())
            .filter(|r| status.is_none_or(|s| r.status.as_str() == s))
            .cloned()
            .collect()
    }

    /// One run by id (ids are relative to their root; the first root that has it wins).
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

    fn publish(&self, root: &Path, runs: &BTreeMap<String, Run>) {
        let infos = runs
            .iter()
            .map(|(id, r)| (id.clone(), info(root, r)))
            .collect();
        self.roots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(root.to_path_buf(), infos);
    }

    fn forget(&self, root: &Path) {
        self.roots
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(root);
    }
}

fn info(root: &Path, r: &Run) -> RunInfo {
    RunInfo {
        id: r.id.clone(),
        root: root.display().to_string(),
        work_dir: r.dir.display().to_string(),
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
            .map(|(name, _)| r.dir.join(name).display().to_string()),
        epochs: Vec::new(),
        restored: false,
    }
}

// ---------------------------------------------------------------------------------------------
// Processes of this machine (remote nodes' processes come with the health sessions later).

/// A process that may belong to a run.
#[derive(Debug, Clone)]
struct Proc {
    node: String,
    pid: u32,
    user: String,
    cmd: String,
    start_time: Option<DateTime<Utc>>,
}

/// Every process of this machine with its command line (blocking: reads /proc).
fn local_processes() -> Vec<Proc> {
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
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if raw.is_empty() {
            continue; // kernel thread or zombie
        }
        let cmd = String::from_utf8_lossy(&raw)
            .split('\0')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let uid = std::fs::metadata(e.path())
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
        let start_time = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|s| {
                let after = &s[s.rfind(')')? + 2..];
                let ticks: f64 = after.split_whitespace().nth(19)?.parse().ok()?;
                let secs = boot? as f64 + ticks / tck;
                DateTime::from_timestamp(secs as i64, 0)
            });
        out.push(Proc {
            node: "local".into(),
            pid,
            user,
            cmd,
            start_time,
        });
    }
    out
}

/// The process that belongs to a run: its command line holds the run's absolute work dir or
/// its config file path. The oldest such process wins (the launcher rather than a worker).
fn process_of(dir: &Path, procs: &[Proc]) -> Option<RunProcess> {
    let dir_s = dir.display().to_string();
    let config = dir.join("config.json").display().to_string();
    procs
        .iter()
        .filter(|p| {
            // A word boundary after the dir, so /runs/a does not claim /runs/ab's process.
            let holds = |needle: &str| {
                p.cmd.match_indices(needle).any(|(i, _)| {
                    p.cmd[i + needle.len()..]
                        .chars()
                        .next()
                        .is_none_or(|c| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
                })
            };
            holds(&dir_s) || holds(&config)
        })
        .min_by_key(|p| (p.start_time, p.pid))
        .map(|p| RunProcess {
            node: p.node.clone(),
            pid: p.pid,
            user: p.user.clone(),
            cmd: p.cmd.chars().take(500).collect(),
            start_time: p.start_time,
        })
}

/// How long a remote node's process list is re-used.
const REMOTE_PS_EVERY: Duration = Duration::from_secs(30);

/// Processes of the remote nodes, asked over their health SSH sessions, cached per node; a
/// node that cannot be asked keeps its last list (its runs are not declared dead by a blip).
#[derive(Debug, Default)]
struct RemoteProcs {
    cache: HashMap<String, (tokio::time::Instant, Vec<Proc>)>,
}

impl RemoteProcs {
    async fn all(&mut self, shared: &Shared) -> Vec<Proc> {
        let deadline = shared.config().health.probe_timeout;
        let mut asking = tokio::task::JoinSet::new();
        for rt in shared.health.runtimes() {
            let fresh = self
                .cache
                .get(&rt.cfg.name)
                .is_some_and(|(at, _)| at.elapsed() < REMOTE_PS_EVERY);
            if matches!(rt.cfg.host, crate::config::NodeHost::Remote(_)) && !fresh {
                asking.spawn(
                    async move { (rt.cfg.name.clone(), rt.remote_processes(deadline).await) },
                );
            }
        }
        let now = Utc::now();
        while let Some(Ok((node, list))) = asking.join_next().await {
            let Some(list) = list else { continue };
            let procs = list
                .into_iter()
                .map(|p| Proc {
                    node: node.clone(),
                    pid: p.pid,
                    user: p.user,
                    cmd: p.args,
                    start_time: Some(
                        now - chrono::Duration::seconds(
                            i64::try_from(p.elapsed_seconds).unwrap_or(0),
                        ),
                    ),
                })
                .collect();
            self.cache
                .insert(node, (tokio::time::Instant::now(), procs));
        }
        let configured: HashSet<String> = shared
            .config()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect();
        self.cache.retain(|node, _| configured.contains(node));
        self.cache
            .values()
            .flat_map(|(_, v)| v.iter().cloned())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The per-root task.

/// Keeps one task per configured root, following config reloads.
pub async fn supervise(
    shared: Arc<Shared>,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    crate::daemon::supervise_keyed(
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
            let root_hb = shared.heartbeats.register(
                &format!("runs:{}", path.display()),
                Duration::from_secs(300),
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

enum Mode {
    /// Holds the watcher: dropping it ends the watch.
    Inotify {
        _watcher: notify::RecommendedWatcher,
    },
    Poll,
}

async fn track_root(
    shared: Arc<Shared>,
    cfg: RootConfig,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    let root = cfg.path.clone();
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
        match start_inotify(&root, tx.clone(), overflow.clone()) {
            Ok(w) => mode = Mode::Inotify { _watcher: w },
            Err(e) => {
                shared
                    .event(NewEvent::new(
                        "root.watch_fallback",
                        root.display().to_string(),
                        Severity::Warning,
                        format!(
                            "cannot watch {} with inotify ({e}); polling every {} instead",
                            root.display(),
                            humantime::format_duration(cfg.poll_interval)
                        ),
                    ))
                    .await;
            }
        }
    }

    // First scan: everything.
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let scanned = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || full_scan(&root, &BTreeMap::new()))
    };
    let mut remote = RemoteProcs::default();
    let mut procs = tokio::task::spawn_blocking(local_processes)
        .await
        .unwrap_or_default();
    procs.extend(remote.all(&shared).await);
    match scanned.await {
        Ok((found, problems)) => {
            for p in problems.iter().take(20) {
                tracing::warn!(root = %root.display(), "{p}");
            }
            for (id, (dir, view)) in found {
                let eval = core::evaluate(&view, cfg.epochs);
                let process = process_of(&dir, &procs);
                let status = core::status(&eval, &rules, process.is_some(), Utc::now());
                runs.insert(
                    id.clone(),
                    Run {
                        id,
                        dir,
                        view: Arc::new(view),
                        eval,
                        status,
                        process,
                        error: None,
                    },
                );
            }
            if !root.exists() {
                shared
                    .event(NewEvent::new(
                        "root.missing",
                        root.display().to_string(),
                        Severity::Warning,
                        format!(
                            "root {} does not exist (yet); watching for it",
                            root.display()
                        ),
                    ))
                    .await;
            }
        }
        Err(e) => tracing::error!(root = %root.display(), error = %e, "scan failed"),
    }
    for r in runs.values_mut() {
        attach_error(r);
    }
    // Reconcile with what the previous daemon stored: what changed while it was away.
    let prior = shared.runs.take_restored(&root);
    let mut events = Vec::new();
    if !prior.is_empty() {
        for r in runs.values() {
            match prior.get(&r.id) {
                Some(old) => {
                    let (before, after) = (
                        old.progress.completed_epochs,
                        r.eval.progress.completed_epochs,
                    );
                    if after > before && r.eval.kind == RunnerKind::Trainer {
                        events.push(epoch_event(r, before, after));
                    }
                    if old.status != r.status
                        && let Some(e) = transition_event(r, old.status)
                    {
                        events.push(e);
                    }
                }
                None => events.push(NewEvent::new(
                    "run.discovered",
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
                "run.removed",
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
    let mut saved: HashMap<String, RunInfo> = HashMap::new();
    persist(&shared, &root, &runs, &mut saved, &gone, &HashMap::new()).await;
    let mut written: HashMap<String, String> = HashMap::new();
    if cfg.write_progress_json {
        write_progress(&shared, &runs, &mut written).await;
    }
    let counts = status_counts(&runs);
    shared.runs.publish(&root, &runs);
    for e in events {
        shared.event(e).await;
    }
    shared
        .event(NewEvent::new(
            "root.scanned",
            root.display().to_string(),
            Severity::Info,
            format!(
                "{} run(s) under {} ({counts}); watching with {}",
                runs.len(),
                root.display(),
                match mode {
                    Mode::Inotify { .. } => "inotify".to_string(),
                    Mode::Poll => format!(
                        "polling every {}",
                        humantime::format_duration(cfg.poll_interval)
                    ),
                }
            ),
        ))
        .await;

    let mut rejudge = tokio::time::interval(REJUDGE_EVERY);
    rejudge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(cfg.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut safety = tokio::time::interval(SAFETY_RESCAN);
    safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (_, _, _) = (rejudge.tick().await, poll.tick().await, safety.tick().await);
    let mut cycle: u64 = 0;
    loop {
        let mut touched: HashSet<PathBuf> = HashSet::new();
        let mut rescan = false;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = rejudge.tick() => {}
            _ = poll.tick(), if matches!(mode, Mode::Poll) => {
                cycle += 1;
                let (changed, new_runs) = poll_cycle(&root, &runs, cycle).await;
                touched.extend(changed);
                touched.extend(new_runs);
            }
            _ = safety.tick(), if matches!(mode, Mode::Inotify { .. }) => rescan = true,
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
        let mut procs = tokio::task::spawn_blocking(local_processes)
            .await
            .unwrap_or_default();
        procs.extend(remote.all(&shared).await);
        let mut updates: Vec<(String, PathBuf, RunView)> = Vec::new();
        if rescan {
            let prev: BTreeMap<String, (PathBuf, Arc<RunView>)> = runs
                .iter()
                .map(|(k, r)| (k.clone(), (r.dir.clone(), Arc::clone(&r.view))))
                .collect();
            let root2 = root.clone();
            if let Ok((found, _)) =
                tokio::task::spawn_blocking(move || full_scan(&root2, &prev)).await
            {
                runs.retain(|id, _| found.contains_key(id));
                for (id, (dir, view)) in found {
                    updates.push((id, dir, view));
                }
            }
        } else if !touched.is_empty() {
            let known: Vec<(String, PathBuf, Arc<RunView>)> = runs
                .values()
                .map(|r| (r.id.clone(), r.dir.clone(), Arc::clone(&r.view)))
                .collect();
            let root2 = root.clone();
            let result =
                tokio::task::spawn_blocking(move || rescan_touched(&root2, &known, touched)).await;
            if let Ok((changed, gone)) = result {
                for id in gone {
                    runs.remove(&id);
                }
                updates = changed;
            }
        }
        let now = Utc::now();
        let mut events = Vec::new();
        let mut epochs_before: HashMap<String, u32> = HashMap::new();
        let before_ids: HashSet<String> = runs.keys().cloned().collect();
        for (id, dir, view) in updates {
            let eval = core::evaluate(&view, cfg.epochs);
            match runs.get_mut(&id) {
                Some(r) => {
                    let before = r.eval.progress.completed_epochs;
                    epochs_before.entry(id.clone()).or_insert(before);
                    r.view = Arc::new(view);
                    r.eval = eval;
                    let after = r.eval.progress.completed_epochs;
                    if after > before && r.eval.kind == RunnerKind::Trainer {
                        events.push(epoch_event(r, before, after));
                    }
                }
                None => {
                    events.push(NewEvent::new(
                        "run.discovered",
                        &id,
                        Severity::Info,
                        format!("{id}: new {} run in {}", eval.kind.as_str(), dir.display()),
                    ));
                    if eval.kind == RunnerKind::Unknown {
                        events.push(NewEvent::new(
                            "run.unknown_runner",
                            &id,
                            Severity::Warning,
                            format!(
                                "{id}: cannot tell what kind of run this is: {}",
                                eval.diagnostic.clone().unwrap_or_default()
                            ),
                        ));
                    }
                    // Status Unknown until the re-judging below sets it (and reports the change).
                    runs.insert(
                        id.clone(),
                        Run {
                            id: id.clone(),
                            dir,
                            view: Arc::new(view),
                            eval,
                            status: RunStatus::Unknown,
                            process: None,
                            error: None,
                        },
                    );
                }
            }
        }
        // Re-judge every run: time passes, processes come and go.
        let mut dirty = !epochs_before.is_empty() || runs.len() != before_ids.len() || rescan;
        for r in runs.values_mut() {
            let process = process_of(&r.dir, &procs);
            if process != r.process {
                r.process = process;
                dirty = true;
            }
            let status = core::status(&r.eval, &rules, r.process.is_some(), now);
            if status != r.status {
                dirty = true;
                let old = r.status;
                r.status = status;
                attach_error(r);
                if let Some(e) = transition_event(r, old) {
                    events.push(e);
                }
            }
        }
        let gone: Vec<String> = before_ids
            .iter()
            .filter(|id| !runs.contains_key(*id))
            .cloned()
            .collect();
        if !dirty && gone.is_empty() {
            continue;
        }
        persist(&shared, &root, &runs, &mut saved, &gone, &epochs_before).await;
        if cfg.write_progress_json {
            write_progress(&shared, &runs, &mut written).await;
        }
        shared.runs.publish(&root, &runs);
        for e in events {
            shared.event(e).await;
        }
    }
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

/// Writes progress.json into each run whose content changed, atomically (temp file + rename).
/// Returns failures as (run id, message).
fn write_progress_files(jobs: Vec<(String, PathBuf, String)>) -> Vec<(String, String)> {
    let mut failures = Vec::new();
    for (id, dir, text) in jobs {
        let tmp = dir.join(".progress.json.ugro-tmp");
        let result = std::fs::write(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, dir.join("progress.json")));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
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
        "run.epoch_completed",
        &r.id,
        Severity::Info,
        format!("{}: {range} completed ({after}/{total})", r.id),
    )
}

/// Writes the progress.json files whose content changed; a failure is an event once per run.
async fn write_progress(
    shared: &Shared,
    runs: &BTreeMap<String, Run>,
    written: &mut HashMap<String, String>,
) {
    let jobs: Vec<(String, PathBuf, String)> = runs
        .values()
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
                "run.progress_write_failed",
                &id,
                Severity::Warning,
                format!("{id}: {message}"),
            ))
            .await;
    }
}

/// Stores the runs whose published state changed since the last save, the gone ones, and the
/// completion times of epochs completed since `epochs_before` (all of them for new runs).
async fn persist(
    shared: &Shared,
    root: &Path,
    runs: &BTreeMap<String, Run>,
    saved: &mut HashMap<String, RunInfo>,
    gone: &[String],
    epochs_before: &HashMap<String, u32>,
) {
    let mut changed = Vec::new();
    let mut epochs = Vec::new();
    for r in runs.values() {
        let i = info(root, r);
        if saved.get(&r.id) != Some(&i) {
            let from = match saved.get(&r.id) {
                None => 0,
                Some(_) => epochs_before
                    .get(&r.id)
                    .copied()
                    .unwrap_or(r.eval.progress.completed_epochs),
            };
            let done = core::completed_epochs(&r.view);
            for (e, t) in core::epoch_completion_times(&r.view, done)
                .into_iter()
                .enumerate()
            {
                let e = e as u32;
                if e >= from {
                    epochs.push((r.id.clone(), e, t));
                }
            }
            changed.push(i);
        }
    }
    for id in gone {
        saved.remove(id);
    }
    if changed.is_empty() && gone.is_empty() {
        return;
    }
    let root_s = root.display().to_string();
    match shared
        .store
        .save_runs(&root_s, &changed, gone, &epochs, Utc::now())
        .await
    {
        Ok(()) => {
            for i in changed {
                saved.insert(i.id.clone(), i);
            }
        }
        Err(e) => tracing::error!(root = %root.display(), error = %e, "could not store runs"),
    }
}

/// Reads the failure reason of a failed or stuck run from its newest log; clears it otherwise.
fn attach_error(r: &mut Run) {
    r.error = match r.status {
        RunStatus::Failed | RunStatus::Stuck => r
            .eval
            .newest_log
            .as_ref()
            .and_then(|(name, _)| scan::log_tail(&r.dir.join(name)).ok())
            .and_then(|tail| core::classify_failure(&tail)),
        _ => None,
    };
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
            "run.started",
            id,
            Severity::Info,
            format!("{id}: running ({epochs})"),
        ),
        RunStatus::Finished => NewEvent::new(
            "run.finished",
            id,
            Severity::Info,
            format!("{id}: finished ({epochs})"),
        ),
        RunStatus::Failed => NewEvent::new(
            "run.failed",
            id,
            Severity::Warning,
            format!("{id}: failed after {epochs}: {reason}"),
        ),
        RunStatus::Stuck => NewEvent::new(
            "run.stuck",
            id,
            Severity::Warning,
            format!(
                "{id}: stuck: its process (pid {}) lives but the log is quiet ({epochs}); {reason}",
                r.process.as_ref().map_or(0, |p| p.pid)
            ),
        ),
        RunStatus::Outdated => NewEvent::new(
            "run.outdated",
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

fn run_id(root: &Path, dir: &Path) -> String {
    dir.strip_prefix(root).unwrap_or(dir).display().to_string()
}

/// A run read from disk: its id, directory and view.
type ReadRun = (String, PathBuf, RunView);

/// Discovers and reads every run under `root` (re-using `prev` views where unchanged).
fn full_scan(
    root: &Path,
    prev: &BTreeMap<String, (PathBuf, Arc<RunView>)>,
) -> (BTreeMap<String, (PathBuf, RunView)>, Vec<String>) {
    let found = scan::discover(root);
    let mut problems = found.problems;
    // Read runs on a few threads: the scan is dominated by small file reads.
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let chunks: Vec<Vec<PathBuf>> = {
        let mut c = vec![Vec::new(); threads];
        for (i, d) in found.runs.into_iter().enumerate() {
            c[i % threads].push(d);
        }
        c
    };
    let results: Vec<(Vec<ReadRun>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut ok = Vec::new();
                    let mut bad = Vec::new();
                    for dir in chunk {
                        let id = run_id(root, &dir);
                        let p = prev.get(&id).map(|(_, v)| v.as_ref());
                        match scan::read_run(&dir, p, false) {
                            Ok(v) => ok.push((id, dir, v)),
                            Err(e) => bad.push(format!("cannot read run {}: {e}", dir.display())),
                        }
                    }
                    (ok, bad)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut out = BTreeMap::new();
    for (ok, bad) in results {
        problems.extend(bad);
        for (id, dir, v) in ok {
            out.insert(id, (dir, v));
        }
    }
    (out, problems)
}

/// Re-reads the runs that contain a touched path and finds runs that appeared. Returns the
/// updated views and the ids of runs that are gone.
fn rescan_touched(
    root: &Path,
    known: &[(String, PathBuf, Arc<RunView>)],
    touched: HashSet<PathBuf>,
) -> (Vec<(String, PathBuf, RunView)>, Vec<String>) {
    let mut hit: BTreeMap<String, (PathBuf, Option<Arc<RunView>>)> = BTreeMap::new();
    for path in touched {
        // The innermost known run containing the path.
        if let Some((id, dir, view)) = known
            .iter()
            .filter(|(_, d, _)| path.starts_with(d))
            .max_by_key(|(_, d, _)| d.as_os_str().len())
        {
            hit.insert(id.clone(), (dir.clone(), Some(Arc::clone(view))));
            continue;
        }
        // Not inside a known run: a run may have appeared at the path or above it.
        let mut cur = if path.is_dir() {
            Some(path.as_path())
        } else {
            path.parent()
        };
        while let Some(d) = cur {
            if !d.starts_with(root) || d == root {
                break;
            }
            if let Ok(rd) = std::fs::read_dir(d) {
                let mut files = Vec::new();
                let mut dirs = Vec::new();
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    match e.file_type() {
                        Ok(t) if t.is_dir() => dirs.push(name),
                        Ok(t) if t.is_file() => files.push(name),
                        _ => {}
                    }
                }
                let f: Vec<&str> = files.iter().map(String::as_str).collect();
                let s: Vec<&str> = dirs.iter().map(String::as_str).collect();
                if core::is_run_dir(&f, &s) {
                    hit.insert(run_id(root, d), (d.to_path_buf(), None));
                    break;
                }
                // A new directory tree (e.g. copied in): discover runs below it.
                if path.is_dir() && d == path.as_path() {
                    for r in scan::discover(d).runs {
                        hit.insert(run_id(root, &r), (r, None));
                    }
                }
            }
            cur = d.parent();
        }
    }
    let mut changed = Vec::new();
    let mut gone = Vec::new();
    for (id, (dir, prev)) in hit {
        match scan::read_run(&dir, prev.as_deref(), false) {
            // Nothing moved: no re-evaluation, no event, no write.
            Ok(v) if prev.as_deref() == Some(&v) => {}
            Ok(v) => changed.push((id, dir, v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone.push(id),
            Err(_) => {} // unreadable now (permissions, racing delete): keep the last view
        }
    }
    (changed, gone)
}

/// One poll cycle: re-reads the frontier of active runs (finished ones only every
/// `FINISHED_EVERY` cycles) and looks for new runs. Returns the run dirs to recompute.
async fn poll_cycle(
    root: &Path,
    runs: &BTreeMap<String, Run>,
    cycle: u64,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let active: Vec<PathBuf> = runs
        .values()
        .filter(|r| {
            !matches!(r.status, RunStatus::Finished | RunStatus::Outdated)
                || cycle.is_multiple_of(FINISHED_EVERY)
        })
        .map(|r| r.dir.clone())
        .collect();
    let known: HashSet<PathBuf> = runs.values().map(|r| r.dir.clone()).collect();
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let found = scan::discover_known(&root, &known);
        let new: Vec<PathBuf> = found
            .runs
            .into_iter()
            .filter(|d| !known.contains(d))
            .collect();
        (active, new)
    })
    .await
    .unwrap_or_default()
}

fn start_inotify(
    root: &Path,
    tx: tokio::sync::mpsc::Sender<PathBuf>,
    overflow: Arc<std::sync::atomic::AtomicBool>,
) -> Result<notify::RecommendedWatcher, String> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        // Opens, reads and closes-without-write change nothing (and our own reads cause them).
        Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => {}
        Ok(ev) => {
            for p in ev.paths {
                if tx.try_send(p).is_err() {
                    overflow.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Err(_) => overflow.store(true, std::sync::atomic::Ordering::Relaxed),
    })
    .map_err(|e| e.to_string())?;
    w.watch(root, notify::RecursiveMode::Recursive)
        .map_err(|e| match e.kind {
            notify::ErrorKind::MaxFilesWatch => {
                "the inotify watch limit is reached (raise fs.inotify.max_user_watches)".to_string()
            }
            _ => e.to_string(),
        })?;
    Ok(w)
}

#[cfg(test)]
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
            },
        )
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
    fn a_process_belongs_to_a_run_by_its_dir_or_config_path_only() {
        let p = |pid, cmd: &str| Proc {
            node: "local".into(),
            pid,
            user: "u".into(),
            cmd: cmd.into(),
            start_time: None,
        };
        let procs = vec![
            p(10, "python train.py --work-dir /runs/ab"),
            p(11, "python train.py --config /runs/a/config.json"),
            p(12, "python train.py --out /runs/a/"),
        ];
        assert_eq!(
            process_of(Path::new("/runs/a"), &procs).map(|x| x.pid),
            Some(11)
        );
        assert_eq!(
            process_of(Path::new("/runs/ab"), &procs).map(|x| x.pid),
            Some(10)
        );
        assert!(process_of(Path::new("/runs/b"), &procs).is_none());
    }
}
