//! One root's tracking task: the first scan, then inotify batches or poll cycles, root
//! presence checks and the timer that re-judges statuses; what changed is published to
//! [`super::Runs`], stored by the root's writer ([`super::persist`]) and reported as events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use ugro_core::event::EventKind;
use ugro_core::health::Severity;
use ugro_core::runs::{self as core, RunStatus, RunView, RunnerKind, StatusRules};

use crate::config::{RootConfig, WatchMode};
use crate::scan::{self, ReadRun, Stamps};
use crate::shared::Shared;
use crate::store::NewEvent;
use crate::view::RunInfo;

use super::events::{epoch_event, fallback_event, missing_event, transition_event};
use super::persist::{Write, to_store, writer};
use super::presence::{Presence, ROOT_CHECK_DEADLINE, RootChange, RootId};
use super::procs::{Procs, processes_of_runs};
use super::progress_file::write_progress;
use super::watch::{Mode, Watch, is_network_fs};
use super::{Run, info, rel_of, root_name, status_counts};

/// File events are gathered this long before the touched runs are recomputed.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(20);

/// How often statuses are re-judged without file events (quiet logs age into stuck/failed).
pub(super) const REJUDGE_EVERY: Duration = Duration::from_secs(10);

/// How often a root's identity is checked (a `stat` of it and of its parent): a root created,
/// moved away, replaced or unmounted is seen within this, whatever inotify reports.
pub(super) const ROOT_CHECK: Duration = Duration::from_secs(2);

/// How long a root's first scan waits for the roots listed before it to claim their run ids.
pub(super) const FIRST_CLAIMS_WAIT: Duration = Duration::from_secs(10);

/// Full rescan of an inotify root, in case an event was lost.
pub(super) const SAFETY_RESCAN: Duration = Duration::from_secs(600);

/// In poll mode, finished and outdated runs are checked only every this many cycles.
pub(super) const FINISHED_EVERY: u64 = 20;

/// Pending file events per root; past it the root is rescanned instead.
pub(super) const EVENT_QUEUE: usize = 8192;

/// How long the process lists are re-used between file events (the timer re-judges every
/// [`REJUDGE_EVERY`] with a fresh one).
pub(super) const PROCS_FRESH: Duration = Duration::from_secs(2);

/// Threads of a full scan: two per core (a scan waits on the disk or the network as much as
/// it computes), 2 to 8.
pub(super) fn scan_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 8)
}

/// What a scan, poll cycle or inotify batch found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Runs read again (or for the first time): id (none yet for a new run), dir, what was read.
    pub(super) read: Vec<(Option<String>, PathBuf, ReadRun)>,
    /// Runs whose directory is gone.
    pub(super) gone: Vec<String>,
}

pub(super) async fn track_root(
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

/// Reads the failure reason of a failed or stuck run from its newest log; clears it otherwise.
/// Sets the `error` of the runs `ids` from the tail of their newest log when they are failed or
/// stuck (cleared otherwise). The logs are read on the blocking pool, never on the runtime.
pub(super) async fn attach_errors(runs: &mut BTreeMap<String, Run>, ids: &[String]) {
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

/// A run a poll cycle looks at.
#[derive(Debug)]
pub(super) struct Due {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) view: Arc<RunView>,
    pub(super) stamps: Option<Stamps>,
}

/// One poll cycle (blocking): the frontier check of each due run (a few `stat`s), a read of the
/// runs whose frontier changed, and a look for new runs in the directories that changed.
pub(super) fn poll_cycle(
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
pub(super) fn rescan_touched(
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
