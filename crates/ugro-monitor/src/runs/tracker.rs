//! One root's tracking task as a [`RootTracker`]: the first scan, then a loop that waits for
//! work (file events, the poll and re-judge timers, the root check), checks the root is still
//! there, reads what changed through the root's [`RootSource`] (a full rescan, a poll cycle or
//! an inotify batch), re-judges every run and publishes what changed to [`super::Runs`], the
//! root's writer ([`super::persist`]) and the event log. Its logs are inside the task's `root`
//! span.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use ugro_core::event::EventKind;
use ugro_core::health::Severity;
use ugro_core::runs::{self as core, RunStatus, RunView, RunnerKind, StatusRules};

use crate::config::{RootConfig, WatchMode};
use crate::scan::{self, ReadRun};
use crate::store::NewEvent;
use crate::view::RunInfo;

use super::events::{epoch_event, fallback_event, missing_event, transition_event};
use super::host::RunsHost;
use super::persist::{Write, to_store, writer};
use super::presence::{Presence, ROOT_CHECK_DEADLINE, RootChange, RootId};
use super::procs::{Proc, Procs, processes_of_runs};
use super::progress_file::write_progress;
use super::source::{BoxFuture, Due, Found, Identity, LocalRoot, RootSource, Views};
use super::watch::{Mode, RunWatch, Watch};
use super::{Run, info, rel_of, root_name, status_counts};

/// File events are gathered this long before the touched runs are recomputed.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// How often statuses are re-judged without file events (quiet logs age into stuck/failed).
const REJUDGE_EVERY: Duration = Duration::from_secs(10);

/// How often a root's identity is checked (a `stat` of it and of its parent): a root created,
/// moved away, replaced or unmounted is seen within this, whatever inotify reports.
const ROOT_CHECK: Duration = Duration::from_secs(2);

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

/// One root's task: a [`RootTracker`] over the local filesystem, inside a `root` span.
pub(super) async fn track_root<H: RunsHost>(
    host: Arc<H>,
    cfg: RootConfig,
    cancel: CancellationToken,
    hb: crate::systemd::Heartbeat,
) {
    let span = tracing::info_span!("root", root = %cfg.path.display());
    // A root on a remote node's disk is read over that node's SSH session.
    let source: Box<dyn RootSource> = match &cfg.node {
        Some(node) => Box::new(super::remote::RemoteRoot::new(
            host.clone(),
            node.clone(),
            cfg.path.clone(),
            cfg.log_globs.clone(),
        )),
        None => Box::new(LocalRoot::new(cfg.path.clone(), cfg.log_globs.clone())),
    };
    async move {
        let mut t = RootTracker::new(host, cfg, source).await;
        t.first_scan().await;
        let mut ticks = Ticks::start(t.cfg.poll_interval).await;
        while let Some(wake) = t.wait(&mut ticks, &cancel).await {
            hb.beat();
            t.cycle(wake, &mut ticks).await;
        }
    }
    .instrument(span)
    .await;
}

/// The timers of a root's loop.
struct Ticks {
    rejudge: Interval,
    poll: Interval,
    safety: Interval,
    root_check: Interval,
}

impl Ticks {
    /// The timers, their immediate first ticks taken.
    async fn start(poll_interval: Duration) -> Ticks {
        let every = |d| {
            let mut i = tokio::time::interval(d);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        };
        let mut t = Ticks {
            rejudge: every(REJUDGE_EVERY),
            poll: every(poll_interval),
            safety: every(SAFETY_RESCAN),
            root_check: every(ROOT_CHECK),
        };
        t.rejudge.tick().await;
        t.poll.tick().await;
        t.safety.tick().await;
        t.root_check.tick().await;
        t
    }
}

/// Why the loop woke, and what to read.
#[derive(Debug, Default)]
struct Wake {
    /// Paths reported by file events (or to look at again).
    touched: HashSet<PathBuf>,
    /// Read everything (an overflow, the safety rescan, the root back).
    rescan: bool,
    /// A poll cycle (frontier checks) is due.
    polled: bool,
}

/// What the root check found, for the rest of the cycle.
enum Here {
    /// Missing: nothing to read or re-judge until it is back.
    Missing,
    /// As it was.
    Same,
    /// There again, or another directory there now; `fresh`: not the directory last seen,
    /// so nothing of the old views holds.
    Back { fresh: bool },
}

/// One root's state between cycles.
pub(super) struct RootTracker<H: RunsHost> {
    host: Arc<H>,
    cfg: RootConfig,
    root: PathBuf,
    root_s: String,
    /// The prefix of its run ids where they collide with another root's.
    name: String,
    rules: StatusRules,
    /// How the root's tree is listed and read.
    source: Box<dyn RootSource>,
    runs: BTreeMap<String, Run>,
    /// The searched (non-run) directories, with their stamps.
    tree: scan::Tree,
    mode: Mode,
    /// File events of the inotify watches; `overflow` when some were lost.
    file_tx: mpsc::Sender<PathBuf>,
    file_rx: mpsc::Receiver<PathBuf>,
    overflow: Arc<AtomicBool>,
    procs_source: Procs,
    procs: Vec<Proc>,
    procs_at: Instant,
    presence: Presence,
    /// The root was last seen as this directory: another one at its path is read from scratch.
    last_here: Option<RootId>,
    /// An identity check that did not answer by its deadline, still running.
    pending_check: Option<BoxFuture<Identity>>,
    /// The root was watched with inotify before it went missing: watch it again once back.
    rewatch: bool,
    /// Runs the previous daemon stored, listed stale while the root has been missing since
    /// the start.
    stale_prior: Vec<String>,
    /// The root's writer task.
    store: mpsc::Sender<Write>,
    /// The progress.json text last written per run.
    written: HashMap<String, String>,
    /// Paths to look at in the next cycle without waiting.
    recheck: Vec<PathBuf>,
    /// The next look at `recheck` checks every run's frontier.
    check_all: bool,
    /// Poll cycles so far.
    cycle: u64,
}

impl<H: RunsHost> RootTracker<H> {
    /// A run's id before collisions: its path below the root, `NODE:` before it on a remote
    /// root.
    fn rel(&self, dir: &Path) -> String {
        match &self.cfg.node {
            Some(node) => format!("{node}:{}", rel_of(&self.root, dir)),
            None => rel_of(&self.root, dir),
        }
    }

    /// The tracker of `cfg`'s root, how it is watched chosen (the watches themselves are set
    /// up after the first scan, from what it found), its writer started.
    pub(super) async fn new(
        host: Arc<H>,
        cfg: RootConfig,
        source: Box<dyn RootSource>,
    ) -> RootTracker<H> {
        let root = cfg.path.clone();
        let (file_tx, file_rx) = mpsc::channel::<PathBuf>(EVENT_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let mut mode = Mode::Poll;
        let network = source.unwatchable();
        let want_inotify = match cfg.watch {
            WatchMode::Inotify => true,
            WatchMode::Poll => false,
            WatchMode::Auto => network.is_none(),
        };
        if let (WatchMode::Auto, Some(fs)) = (cfg.watch, network) {
            tracing::info!(
                fs,
                "network filesystem: polling (inotify does not see other hosts' writes)"
            );
        }
        if want_inotify {
            match Watch::new(file_tx.clone(), overflow.clone(), &cfg.log_globs) {
                Ok(w) => mode = Mode::Inotify(w),
                Err(e) => host.event(fallback_event(&root, &cfg, &e)).await,
            }
        }
        let root_s = root.display().to_string();
        let (store, store_rx) = mpsc::channel::<Write>(64);
        tokio::spawn(
            writer(host.clone(), root_s.clone(), store_rx).instrument(tracing::Span::current()),
        );
        RootTracker {
            name: root_name(&host.config(), &root),
            rules: StatusRules {
                stall_after: cfg.stall_after,
                outdated_after: cfg.outdated_after,
            },
            host,
            cfg,
            root,
            root_s,
            source,
            runs: BTreeMap::new(),
            tree: scan::Tree::default(),
            mode,
            file_tx,
            file_rx,
            overflow,
            procs_source: Procs::default(),
            procs: Vec::new(),
            procs_at: Instant::now(),
            presence: Presence::Missing { was_mount: false },
            last_here: None,
            pending_check: None,
            rewatch: false,
            stale_prior: Vec::new(),
            store,
            written: HashMap::new(),
            recheck: Vec::new(),
            check_all: false,
            cycle: 0,
        }
    }

    /// The processes that may be the runs' (the root's path is what they must mention).
    async fn ask_processes(&mut self, force: bool) {
        let needles = vec![self.root_s.clone()];
        self.procs = self.procs_source.all(&*self.host, needles, force).await;
        self.procs_at = Instant::now();
    }

    /// The first scan: everything, on a few threads, while the process lists are asked for;
    /// ids claimed in config order; statuses judged; reconciled with what the previous daemon
    /// stored; published; then watched and stored, and `root.scanned` recorded.
    pub(super) async fn first_scan(&mut self) {
        let started = std::time::Instant::now();
        let scanned = self.source.scan(Views::new());
        // Where the root is (its identity), asked beside the scan: over SSH it is a round trip
        // of its own that need not wait for the listing.
        let identified = tokio::spawn(self.source.identify(false));
        self.ask_processes(false).await;
        let scanned = scanned.await;
        let earlier: Vec<PathBuf> = self
            .host
            .config()
            .roots
            .iter()
            .map(|r| r.path.clone())
            .take_while(|p| *p != self.root)
            .collect();
        self.host
            .runs()
            .wait_turn(&earlier, FIRST_CLAIMS_WAIT)
            .await;
        match scanned {
            Ok(found) => {
                for p in found.problems.iter().take(20) {
                    tracing::warn!("{p}");
                }
                tracing::info!(
                    runs = found.runs.len(),
                    dirs = found.tree.len(),
                    ms = started.elapsed().as_millis(),
                    "first scan read"
                );
                self.tree = found.tree;
                for (dir, read) in found.runs {
                    let id = self
                        .host
                        .runs()
                        .claim(&self.root, &self.rel(&dir), &self.name);
                    self.runs
                        .insert(id.clone(), Run::new(id, dir, read, self.cfg.epochs));
                }
            }
            Err(e) => tracing::error!(error = %e, "scan failed"),
        }
        self.host.runs().first_claimed(&self.root);
        // The identity is checked again every few seconds and before each batch of work.
        let asked = match identified.await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => {
                tracing::debug!("the root's check beside the first scan failed: {e}");
                self.source.identify(false).await
            }
            // Not asked beside the scan (a remote root's node session was not up yet), or the
            // check failed: ask again now rather than take the root as missing.
            _ => self.source.identify(false).await,
        };
        let (id, unasked) = match asked {
            Ok((id, _)) => (id, None),
            Err(why) => (None, Some(why)),
        };
        self.presence = match id {
            Some(id) => Presence::Here(id),
            None => Presence::Missing { was_mount: false },
        };
        self.last_here = id;
        if self.presence.is_missing() {
            let why = match unasked {
                Some(why) => format!("cannot be checked: {why}"),
                None => "does not exist (yet); watching for it".to_owned(),
            };
            self.host
                .event(NewEvent::new(
                    EventKind::RootMissing,
                    self.root_s.clone(),
                    Severity::Warning,
                    format!("root {} {why}", self.root.display()),
                ))
                .await;
        }
        let now = Utc::now();
        let matched = processes_of_runs(&*self.host, &self.root_s, &self.runs, &self.procs);
        for r in self.runs.values_mut() {
            r.process = matched.get(&r.id).cloned();
            r.status = core::status(&r.eval, &self.rules, r.process.is_some(), now);
        }
        let all: Vec<String> = self.runs.keys().cloned().collect();
        self.attach_errors(&all).await;
        let (mut events, gone) = self.reconcile_restored();
        // Serve the list first; storing every epoch's completion time takes longer.
        if self.stale_prior.is_empty() {
            self.publish_all();
        }
        let counts = status_counts(&self.runs);
        tracing::info!(ms = started.elapsed().as_millis(), "first scan published");
        // Then watch (what changed since the scan is caught by the first look of the loop) ...
        if self.first_watches(&mut events).await {
            tracing::info!(ms = started.elapsed().as_millis(), "watches set up");
        }
        // ... and store it all on the root's writer task (every epoch's completion time: a
        // while).
        let infos: Vec<RunInfo> = self.runs.values().map(|r| info(&self.root_s, r)).collect();
        let _ = self
            .store
            .send(Write::Runs(to_store(&mut self.runs, infos, &gone)))
            .await;
        if self.cfg.write_progress_json {
            write_progress(
                &*self.host,
                &*self.source,
                &self.runs,
                &mut self.written,
                true,
            )
            .await;
        }
        for r in self.runs.values_mut() {
            r.dirty = false;
        }
        // Recorded once the runs are stored: the end of the start-up work.
        events.push(self.scanned_event(&counts));
        let _ = self.store.send(Write::Events(events)).await;
        // The first look after the watches are set up checks every run's frontier.
        self.check_all = !self.recheck.is_empty();
    }

    /// Reconciles the first scan with what the previous daemon stored: what changed while it
    /// was away becomes events. A root missing now keeps them listed, stale, until it is back.
    /// Returns the events and the stored runs that are gone (their ids released).
    fn reconcile_restored(&mut self) -> (Vec<NewEvent>, Vec<String>) {
        let runs_view = self.host.runs();
        let mut prior = runs_view.take_restored(&self.root);
        if self.presence.is_missing() && !prior.is_empty() {
            self.stale_prior = prior.keys().cloned().collect();
            runs_view.publish_all(
                &self.root,
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
            for r in self.runs.values_mut() {
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
                                runs_view.failures.record(r.error.as_ref().map(|f| f.kind));
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
            for id in prior.keys().filter(|id| !self.runs.contains_key(*id)) {
                events.push(NewEvent::new(
                    EventKind::RunRemoved,
                    id,
                    Severity::Info,
                    format!("{id}: no longer under {}", self.root.display()),
                ));
            }
        }
        let gone: Vec<String> = prior
            .keys()
            .filter(|id| !self.runs.contains_key(*id))
            .cloned()
            .collect();
        runs_view.release(&gone);
        (events, gone)
    }

    /// Sets up the inotify watches from what the first scan found (on the blocking pool: one
    /// watch per directory); falls back to polling when that fails. False when the root is
    /// not watched with inotify at all.
    async fn first_watches(&mut self, events: &mut Vec<NewEvent>) -> bool {
        let Mode::Inotify(mut w) = std::mem::replace(&mut self.mode, Mode::Poll) else {
            return false;
        };
        let t = std::mem::take(&mut self.tree);
        let dirs: Vec<(String, PathBuf, Option<u32>)> = self
            .runs
            .values()
            .map(|r| {
                let epoch = r.stamps.and_then(|s| s.epoch).map(|(i, _)| i);
                (r.id.clone(), r.dir.clone(), epoch)
            })
            .collect();
        let root = self.root.clone();
        let span = tracing::Span::current();
        let set_up = tokio::task::spawn_blocking(move || {
            let _in = span.enter();
            let result = w.sync(
                &root,
                &t,
                dirs.iter().map(|(id, d, e)| (id.as_str(), d.as_path(), *e)),
                &[],
            );
            (w, t, result)
        })
        .await;
        match set_up {
            Ok((w, t, Ok(_))) => {
                self.tree = t;
                self.mode = Mode::Inotify(w);
                // What changed between the scan and the watches: one frontier check of all.
                self.recheck.push(self.root.clone());
            }
            Ok((_, t, Err(why))) => {
                self.tree = t;
                events.push(fallback_event(&self.root, &self.cfg, &why));
            }
            Err(e) => tracing::error!(error = %e, "watch set-up failed"),
        }
        true
    }

    /// The `root.scanned` event.
    fn scanned_event(&self, counts: &str) -> NewEvent {
        NewEvent::new(
            EventKind::RootScanned,
            self.root_s.clone(),
            Severity::Info,
            format!(
                "{} under {}{}; watching with {}",
                match self.runs.len() {
                    0 => "no runs".to_owned(),
                    1 => "1 run".to_owned(),
                    n => format!("{n} runs"),
                },
                self.root.display(),
                if counts.is_empty() {
                    String::new()
                } else {
                    format!(" ({counts})")
                },
                match &self.mode {
                    Mode::Inotify(w) => format!(
                        "inotify ({} directories watched)",
                        w.tree.len() + w.runs.values().map(RunWatch::count).sum::<usize>()
                    ),
                    Mode::Poll => format!(
                        "polling every {}",
                        humantime::format_duration(self.cfg.poll_interval)
                    ),
                }
            ),
        )
    }

    /// Waits for work: paths to look at again, a timer, or file events (debounced). `None`
    /// when the task is cancelled.
    async fn wait(&mut self, ticks: &mut Ticks, cancel: &CancellationToken) -> Option<Wake> {
        let mut wake = Wake::default();
        let inotify = matches!(self.mode, Mode::Inotify(_));
        tokio::select! {
            _ = cancel.cancelled() => return None,
            () = std::future::ready(()), if !self.recheck.is_empty() => {
                wake.touched.extend(self.recheck.drain(..));
                wake.polled = std::mem::take(&mut self.check_all);
            }
            _ = ticks.rejudge.tick() => {}
            _ = ticks.root_check.tick() => {}
            _ = ticks.poll.tick(), if !inotify => wake.polled = true,
            _ = ticks.safety.tick(), if inotify => wake.rescan = true,
            Some(p) = self.file_rx.recv() => {
                wake.touched.insert(p);
                // Debounce: gather what else arrives shortly.
                let until = Instant::now() + DEBOUNCE;
                while let Ok(Some(p)) = tokio::time::timeout_at(until, self.file_rx.recv()).await {
                    wake.touched.insert(p);
                }
            }
        }
        if self.overflow.swap(false, Ordering::Relaxed) {
            wake.rescan = true;
        }
        Some(wake)
    }

    /// One cycle: the root check, the read of what changed, the re-judging of every run, and
    /// publishing what changed.
    async fn cycle(&mut self, mut wake: Wake, ticks: &mut Ticks) {
        let back = match self.presence_change().await {
            Here::Missing => return,
            Here::Same => None,
            Here::Back { fresh } => {
                wake.rescan = true;
                Some(fresh)
            }
        };
        let (mut found, full) = if wake.rescan {
            match self.rescan(back == Some(true)).await {
                Some(found) => (found, true),
                None => (Found::default(), false),
            }
        } else if wake.polled {
            (self.poll_cycle().await, false)
        } else if !wake.touched.is_empty() {
            (self.inotify_batch(wake.touched).await, false)
        } else {
            (Found::default(), false)
        };
        // A root that went away while it was read: what the read saw says nothing about its
        // runs (they are not gone); the check at the top of the next cycle tells what
        // happened.
        if (full || !found.gone.is_empty()) && self.moved_while_read().await {
            self.recheck.push(self.root.clone());
            return;
        }
        // New runs get their id.
        let read: Vec<(String, PathBuf, ReadRun)> = std::mem::take(&mut found.read)
            .into_iter()
            .map(|(id, d, r)| {
                let id = id.unwrap_or_else(|| {
                    self.host
                        .runs()
                        .claim(&self.root, &self.rel(&d), &self.name)
                });
                (id, d, r)
            })
            .collect();
        // Back after missing since the start: the stored runs not found now are gone, the
        // others are no news.
        let mut was_known: HashSet<String> = HashSet::new();
        if back.is_some() && full {
            was_known = std::mem::take(&mut self.stale_prior).into_iter().collect();
            let now_ids: HashSet<&str> = read.iter().map(|(id, _, _)| id.as_str()).collect();
            found.gone.extend(
                was_known
                    .iter()
                    .filter(|id| !now_ids.contains(id.as_str()))
                    .cloned(),
            );
        }
        self.follow_watches(&read, &found.gone, ticks).await;
        // Bursts of file events re-use a process list that is a moment old.
        if self.procs_at.elapsed() >= PROCS_FRESH {
            self.ask_processes(false).await;
        }
        let mut events = Vec::new();
        for id in &found.gone {
            self.runs.remove(id);
        }
        self.host.runs().release(&found.gone);
        self.apply_reads(read, &was_known, &mut events);
        self.judge(&mut events).await;
        if back.is_some() {
            tracing::info!(runs = self.runs.len(), "root is back");
            events.push(NewEvent::new(
                EventKind::RootBack,
                self.root_s.clone(),
                Severity::Info,
                format!(
                    "root {} is back: {} run(s) ({})",
                    self.root.display(),
                    self.runs.len(),
                    status_counts(&self.runs)
                ),
            ));
        }
        if !full && found.gone.is_empty() && self.runs.values().all(|r| !r.dirty) {
            return;
        }
        self.publish(full, &found.gone, events).await;
    }

    /// Is the root still the directory it was? Gone: its runs stay listed, stale, and nothing
    /// is read or re-judged until it is back; back or replaced: read it all now.
    async fn presence_change(&mut self) -> Here {
        // A check that hung last time (a dead network filesystem) is waited for again rather
        // than started anew, so a hung root holds one thread, not one per look.
        let mut check = match self.pending_check.take() {
            Some(check) => check,
            None => {
                let was_mount = match self.presence {
                    Presence::Here(a) => a.mount,
                    Presence::Missing { was_mount } => was_mount,
                };
                self.source.identify(was_mount)
            }
        };
        let mut now_id = None;
        let change = match tokio::time::timeout(ROOT_CHECK_DEADLINE, &mut check).await {
            Ok(Ok((id, empty))) => {
                now_id = id;
                self.presence.update(id, || empty)
            }
            Ok(Err(why)) => self.presence.unasked(&why),
            Err(_) => {
                self.pending_check = Some(check);
                self.presence.hung()
            }
        };
        if let RootChange::Gone(why) | RootChange::Replaced(why) = &change {
            tracing::warn!("root {why}");
            let _ = self
                .store
                .send(Write::Events(vec![missing_event(
                    &self.root,
                    why,
                    self.runs.len() + self.stale_prior.len(),
                )]))
                .await;
        }
        let back = match change {
            RootChange::Same => false,
            RootChange::Gone(_) => {
                self.host.runs().set_stale(&self.root, true);
                if matches!(self.mode, Mode::Inotify(_)) {
                    // Its watches follow the old directory wherever it went: drop them.
                    self.mode = Mode::Poll;
                    self.rewatch = true;
                }
                self.tree = scan::Tree::default();
                false
            }
            RootChange::Back | RootChange::Replaced(_) => true,
        };
        if self.presence.is_missing() {
            // Drain what the old watches still report; nothing to read.
            while self.file_rx.try_recv().is_ok() {}
            self.recheck.clear();
            return Here::Missing;
        }
        if !back {
            return Here::Same;
        }
        let fresh = self.last_here != now_id;
        self.last_here = now_id;
        if self.rewatch || matches!(self.mode, Mode::Inotify(_)) {
            match Watch::new(
                self.file_tx.clone(),
                self.overflow.clone(),
                &self.cfg.log_globs,
            ) {
                Ok(w) => {
                    self.mode = Mode::Inotify(w);
                    self.rewatch = false;
                }
                Err(e) => {
                    self.host
                        .event(fallback_event(&self.root, &self.cfg, &e))
                        .await
                }
            }
        }
        Here::Back { fresh }
    }

    /// Reads the whole root again (`fresh`: a directory not seen before, read from scratch).
    /// `None` when the scan failed.
    async fn rescan(&mut self, fresh: bool) -> Option<Found> {
        let prev: Views = if fresh {
            Views::new()
        } else {
            self.runs
                .values()
                .map(|r| (r.dir.clone(), Arc::clone(&r.view)))
                .collect()
        };
        let scanned = self.source.scan(prev).await.ok()?;
        self.tree = scanned.tree;
        let seen: HashSet<&Path> = scanned.runs.iter().map(|(d, _)| d.as_path()).collect();
        let gone = self
            .runs
            .values()
            .filter(|r| !seen.contains(r.dir.as_path()))
            .map(|r| r.id.clone())
            .collect();
        let read = scanned
            .runs
            .into_iter()
            .map(|(d, r)| (None, d, r))
            .collect();
        Some(Found { read, gone })
    }

    /// A poll cycle: the frontier check of the due runs (finished and outdated ones only every
    /// [`FINISHED_EVERY`] cycles when polling), and new runs in the directories that changed.
    async fn poll_cycle(&mut self) -> Found {
        self.cycle += 1;
        let every =
            matches!(self.mode, Mode::Inotify(_)) || self.cycle.is_multiple_of(FINISHED_EVERY);
        let due: Vec<Due> = self
            .runs
            .values()
            .filter(|r| every || !matches!(r.status, RunStatus::Finished | RunStatus::Outdated))
            .map(|r| Due {
                id: r.id.clone(),
                dir: r.dir.clone(),
                view: Arc::clone(&r.view),
                stamps: r.stamps,
            })
            .collect();
        let known: HashSet<PathBuf> = self.runs.values().map(|r| r.dir.clone()).collect();
        let tree = std::mem::take(&mut self.tree);
        match self.source.poll(due, tree, known).await {
            Some((found, tree)) => {
                self.tree = tree;
                found
            }
            None => Found::default(),
        }
    }

    /// A batch of file events: the runs holding a touched path read again.
    async fn inotify_batch(&mut self, touched: HashSet<PathBuf>) -> Found {
        let known: Vec<(String, PathBuf, Arc<RunView>)> = self
            .runs
            .values()
            .map(|r| (r.id.clone(), r.dir.clone(), Arc::clone(&r.view)))
            .collect();
        let tree = std::mem::take(&mut self.tree);
        match self.source.reread(known, touched, tree).await {
            Some((found, tree)) => {
                self.tree = tree;
                found
            }
            None => Found::default(),
        }
    }

    /// Whether the root is no longer the directory last seen (checked after a read that found
    /// runs gone).
    async fn moved_while_read(&mut self) -> bool {
        let id = tokio::time::timeout(ROOT_CHECK_DEADLINE, self.source.identify(false))
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|(id, _)| id);
        Some(self.presence) != id.map(Presence::Here)
    }

    /// Watches what is new (a new run, a new frontier epoch, a new directory), and looks again
    /// at what got a new watch. Out of watches: polls this root from now on.
    async fn follow_watches(
        &mut self,
        read: &[(String, PathBuf, ReadRun)],
        gone: &[String],
        ticks: &mut Ticks,
    ) {
        let Mode::Inotify(w) = &mut self.mode else {
            return;
        };
        let synced = w.sync(
            &self.root,
            &self.tree,
            read.iter()
                .map(|(id, d, r)| (id.as_str(), d.as_path(), r.stamps.epoch.map(|(i, _)| i))),
            gone,
        );
        match synced {
            Ok(again) => self.recheck.extend(again),
            Err(why) => {
                self.mode = Mode::Poll;
                ticks.poll.reset();
                self.host
                    .event(fallback_event(&self.root, &self.cfg, &why))
                    .await;
            }
        }
    }

    /// Takes in what was read: a run whose view moved is evaluated again (a completed epoch
    /// is an event); a new run is discovered (its status set by the judging that follows).
    fn apply_reads(
        &mut self,
        read: Vec<(String, PathBuf, ReadRun)>,
        was_known: &HashSet<String>,
        events: &mut Vec<NewEvent>,
    ) {
        for (id, dir, read) in read {
            match self.runs.get_mut(&id) {
                Some(r) => {
                    r.stamps = Some(read.stamps);
                    if *r.view == read.view {
                        continue; // nothing moved: no re-evaluation, no event, no write
                    }
                    let eval = core::evaluate(&read.view, self.cfg.epochs);
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
                    self.runs
                        .insert(id.clone(), Run::new(id, dir, read, self.cfg.epochs));
                }
                None => {
                    let r = Run::new(id.clone(), dir, read, self.cfg.epochs);
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
                    // Status Unknown until the re-judging sets it (and reports the change).
                    self.runs.insert(id, r);
                }
            }
        }
    }

    /// Re-judges every run: time passes, processes come and go. A status change reads the
    /// failure reason and is an event.
    async fn judge(&mut self, events: &mut Vec<NewEvent>) {
        let now = Utc::now();
        let mut matched = processes_of_runs(&*self.host, &self.root_s, &self.runs, &self.procs);
        // A run about to be judged failed for want of a process: ask the remote nodes again
        // first (their lists are cached), so a run whose process started since is judged
        // stuck at once — never failed, then stuck.
        let would_fail = self.runs.values().any(|r| {
            r.status != RunStatus::Failed
                && core::status(&r.eval, &self.rules, matched.contains_key(&r.id), now)
                    == RunStatus::Failed
        });
        if would_fail && self.procs_source.has_remote() {
            self.ask_processes(true).await;
            matched = processes_of_runs(&*self.host, &self.root_s, &self.runs, &self.procs);
        }
        let mut moved: Vec<(String, RunStatus)> = Vec::new();
        for r in self.runs.values_mut() {
            let process = matched.get(&r.id);
            if process != r.process.as_ref() {
                r.process = process.cloned();
                r.dirty = true;
            }
            let status = core::status(&r.eval, &self.rules, r.process.is_some(), now);
            if status != r.status {
                r.dirty = true;
                moved.push((r.id.clone(), r.status));
                r.status = status;
            }
        }
        if moved.is_empty() {
            return;
        }
        let ids: Vec<String> = moved.iter().map(|(id, _)| id.clone()).collect();
        self.attach_errors(&ids).await;
        for (id, old) in moved {
            if let Some(r) = self.runs.get(&id)
                && let Some(e) = transition_event(r, old)
            {
                if r.status == RunStatus::Failed {
                    self.host
                        .runs()
                        .failures
                        .record(r.error.as_ref().map(|f| f.kind));
                }
                events.push(e);
            }
        }
    }

    /// Sets the `error` of the runs `ids` from the tail of their newest log when they are
    /// failed or stuck (cleared otherwise). The logs are read by the source, off the runtime.
    async fn attach_errors(&mut self, ids: &[String]) {
        let mut to_read: Vec<(String, PathBuf)> = Vec::new();
        for id in ids {
            let Some(r) = self.runs.get_mut(id) else {
                continue;
            };
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
        for (id, tail) in self.source.log_tails(to_read).await {
            if let Some(error) = core::classify_failure(&tail)
                && let Some(r) = self.runs.get_mut(&id)
            {
                r.error = Some(error);
            }
        }
    }

    /// Replaces the root's whole published list.
    fn publish_all(&self) {
        self.host.runs().publish_all(
            &self.root,
            self.runs
                .iter()
                .map(|(id, r)| (id.clone(), info(&self.root_s, r)))
                .collect(),
        );
    }

    /// Publishes the changed runs (all of them after a full read) and the gone ones, then
    /// hands them to the writer with the cycle's events, and writes progress.json files.
    async fn publish(&mut self, full: bool, gone: &[String], events: Vec<NewEvent>) {
        // Publish first: the API shows the change at once; storing it may wait on the
        // database.
        let changed: Vec<RunInfo> = self
            .runs
            .values()
            .filter(|r| r.dirty)
            .map(|r| info(&self.root_s, r))
            .collect();
        if full {
            self.publish_all();
        } else {
            self.host
                .runs()
                .publish_changes(&self.root, changed.clone(), gone);
        }
        let _ = self
            .store
            .send(Write::Runs(to_store(&mut self.runs, changed, gone)))
            .await;
        if self.cfg.write_progress_json {
            write_progress(
                &*self.host,
                &*self.source,
                &self.runs,
                &mut self.written,
                false,
            )
            .await;
        }
        for id in gone {
            self.written.remove(id);
        }
        for r in self.runs.values_mut() {
            r.dirty = false;
        }
        if !events.is_empty() {
            let _ = self.store.send(Write::Events(events)).await;
        }
    }
}
