//! How a root's tree is listed and read ([`RootSource`]), apart from what the tracker makes of
//! it: the first scan and full rescans, a poll cycle's frontier checks and new-run look, the
//! re-read of runs touched by file events, the root's identity, log tails for failure reasons
//! and the progress.json writes. [`LocalRoot`] does it with filesystem calls on the blocking
//! pool (`crate::scan`); a root on another node's disk implements the same over that node's
//! SSH session, one batched round trip per call.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use ugro_core::runs::RunView;

use crate::scan::{self, ReadRun, RootScan, Stamps, Tree};

use super::presence::RootId;

/// A boxed future that holds no borrow (a root's identity check may outlive the look that
/// started it: a hung one is waited for again at the next look).
pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a scan, poll cycle or inotify batch found.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// Runs read again (or for the first time): id (none yet for a new run), dir, what was read.
    pub(super) read: Vec<(Option<String>, PathBuf, ReadRun)>,
    /// Runs whose directory is gone.
    pub(super) gone: Vec<String>,
}

/// The last views of run dirs, by dir: a scan re-uses their complete epochs and unchanged JSON.
pub(super) type Views = HashMap<PathBuf, Arc<RunView>>;

/// How a root's tree is listed and read. Paths are the root's own (absolute on the machine
/// that holds it). Every call does its I/O off the async runtime and answers with what it
/// found; `None` (or `Err`) when the work itself failed (a panicked blocking task), in which
/// case the caller keeps what it had. The semantics every implementation keeps: a run is a
/// directory [`scan`] recognises as one; a poll cycle `stat`s only each due run's dir, its
/// files and its next epoch dir ([`scan::unchanged`]) and reads a run only when one of those
/// changed; new runs are looked for only in searched directories whose stamp changed.
/// Which directory a root is now (`None`: not a directory now) and, for a mount point turned
/// plain directory, whether it is empty; `Err`: the root could not be asked, with why.
pub(super) type Identity = Result<(Option<RootId>, bool), String>;

pub(super) trait RootSource: Send + Sync {
    /// Why this root's file events cannot be watched with inotify (the name of its network
    /// filesystem, or why else), `None` when they can.
    fn unwatchable(&self) -> Option<&'static str>;

    /// Which directory the root is now (`None`: not a directory now) and, when it `was_mount`
    /// and is now a plain directory, whether that directory is empty (an unmounted mount
    /// point). `Err`: the root could not be asked (its node is unreachable), with why.
    fn identify(&self, was_mount: bool) -> BoxFuture<Identity>;

    /// Every run under the root and the searched directories ([`scan::scan_root`]), re-using
    /// the `prev` views.
    fn scan(&self, prev: Views) -> BoxFuture<Result<RootScan, String>>;

    /// One poll cycle: the frontier check of each `due` run, a read of those whose frontier
    /// changed (`gone` when their dir is), and a look for new runs (not in `known`) in the
    /// directories of `tree` that changed. Gives `tree` back, updated.
    fn poll(
        &self,
        due: Vec<Due>,
        tree: Tree,
        known: HashSet<PathBuf>,
    ) -> BoxFuture<Option<(Found, Tree)>>;

    /// Re-reads the runs (`known`: id, dir, last view) that contain a `touched` path; a touched
    /// path outside every run makes the directories of `tree` be looked at for new runs.
    fn reread(
        &self,
        known: Vec<(String, PathBuf, Arc<RunView>)>,
        touched: HashSet<PathBuf>,
        tree: Tree,
    ) -> BoxFuture<Option<(Found, Tree)>>;

    /// The tail of each log (run id, path) that can be read ([`scan::LOG_TAIL_BYTES`] at most,
    /// from a line boundary).
    fn log_tails(&self, logs: Vec<(String, PathBuf)>) -> BoxFuture<Vec<(String, String)>>;

    /// Writes each (run id, run dir, text) as the run's progress.json, atomically; gives the
    /// failures as (run id, message).
    fn write_progress(
        &self,
        files: Vec<(String, PathBuf, String)>,
    ) -> BoxFuture<Vec<(String, String)>>;
}

/// Runs `f` on the blocking pool inside the caller's tracing span; `None` if it panicked.
fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Option<T>> + Send + 'static {
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || span.in_scope(f));
    async move { task.await.ok() }
}

/// Threads of a full scan: two per core (a scan waits on the disk or the network as much as
/// it computes), 2 to 8.
fn scan_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, 8)
}

/// A root on this machine's filesystems (or a network filesystem mounted here).
#[derive(Debug, Clone)]
pub(super) struct LocalRoot {
    root: PathBuf,
    /// The root's `log_globs`.
    globs: Vec<String>,
}

impl LocalRoot {
    pub(super) fn new(root: PathBuf, globs: Vec<String>) -> LocalRoot {
        LocalRoot { root, globs }
    }
}

impl RootSource for LocalRoot {
    fn unwatchable(&self) -> Option<&'static str> {
        super::watch::is_network_fs(&self.root)
    }

    fn identify(&self, was_mount: bool) -> BoxFuture<Identity> {
        let root = self.root.clone();
        Box::pin(async move {
            Ok(blocking(move || {
                let id = RootId::of(&root);
                // Listed only when a mount point turned (or still is) a plain directory.
                let empty = was_mount
                    && id.is_some_and(|i| !i.mount)
                    && std::fs::read_dir(&root).is_ok_and(|mut d| d.next().is_none());
                (id, empty)
            })
            .await
            .unwrap_or((None, false)))
        })
    }

    fn scan(&self, prev: Views) -> BoxFuture<Result<RootScan, String>> {
        let (root, globs) = (self.root.clone(), self.globs.clone());
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                scan::scan_root_with(&root, &|d| prev.get(d).cloned(), scan_threads(), &globs)
            })
        });
        Box::pin(async move { task.await.map_err(|e| e.to_string()) })
    }

    fn poll(
        &self,
        due: Vec<Due>,
        mut tree: Tree,
        known: HashSet<PathBuf>,
    ) -> BoxFuture<Option<(Found, Tree)>> {
        let (root, globs) = (self.root.clone(), self.globs.clone());
        Box::pin(blocking(move || {
            let f = poll_cycle(&root, due, &mut tree, &known, &globs);
            (f, tree)
        }))
    }

    fn reread(
        &self,
        known: Vec<(String, PathBuf, Arc<RunView>)>,
        touched: HashSet<PathBuf>,
        mut tree: Tree,
    ) -> BoxFuture<Option<(Found, Tree)>> {
        let (root, globs) = (self.root.clone(), self.globs.clone());
        Box::pin(blocking(move || {
            let f = rescan_touched(&root, &known, touched, &mut tree, &globs);
            (f, tree)
        }))
    }

    fn log_tails(&self, logs: Vec<(String, PathBuf)>) -> BoxFuture<Vec<(String, String)>> {
        Box::pin(async move {
            blocking(move || {
                logs.into_iter()
                    .filter_map(|(id, path)| Some((id, scan::log_tail(&path).ok()?)))
                    .collect()
            })
            .await
            .unwrap_or_default()
        })
    }

    fn write_progress(
        &self,
        files: Vec<(String, PathBuf, String)>,
    ) -> BoxFuture<Vec<(String, String)>> {
        Box::pin(async move {
            blocking(move || super::progress_file::write_progress_files(files))
                .await
                .unwrap_or_default()
        })
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
fn poll_cycle(
    root: &Path,
    due: Vec<Due>,
    tree: &mut scan::Tree,
    known: &HashSet<PathBuf>,
    globs: &[String],
) -> Found {
    let mut found = Found::default();
    for d in due {
        if d.stamps
            .is_some_and(|s| scan::unchanged(&d.dir, &d.view, &s))
        {
            continue;
        }
        match scan::read_run_with(&d.dir, Some(&d.view), globs) {
            Ok(r) => found.read.push((Some(d.id), d.dir, r)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.gone.push(d.id),
            Err(_) => {} // unreadable now (permissions, racing delete): keep the last view
        }
    }
    let (new_runs, problems) = scan::poll_tree(root, tree, &|d| known.contains(d));
    for p in problems.iter().take(5) {
        tracing::debug!("{p}");
    }
    for dir in new_runs {
        if let Ok(r) = scan::read_run_with(&dir, None, globs) {
            found.read.push((None, dir, r));
        }
    }
    found
}

/// The runs to read again for a batch of touched paths, by dir: the innermost known run (id,
/// dir, last view) containing each path, with its id and view; and whether some path lies
/// outside every known run (then the searched directories are looked at for new runs). Each
/// path's ancestors are looked up, so a batch costs its paths times their depth, not times the
/// number of runs.
pub(super) fn runs_touched(
    known: &[(String, PathBuf, Arc<RunView>)],
    touched: impl IntoIterator<Item = PathBuf>,
) -> (Touched, bool) {
    let by_dir: HashMap<&Path, (&String, &Arc<RunView>)> = known
        .iter()
        .map(|(id, d, v)| (d.as_path(), (id, v)))
        .collect();
    let mut hit = Touched::new();
    let mut outside = false;
    for path in touched {
        match path.ancestors().find_map(|a| by_dir.get_key_value(a)) {
            Some((dir, (id, view))) => {
                hit.insert(
                    dir.to_path_buf(),
                    (Some((*id).clone()), Some(Arc::clone(view))),
                );
            }
            None => outside = true,
        }
    }
    (hit, outside)
}

/// Runs to read, by dir: the id (none yet for a new run) and the last view (none for a new run).
pub(super) type Touched = BTreeMap<PathBuf, (Option<String>, Option<Arc<RunView>>)>;

/// Re-reads the runs that contain a touched path; a touched path outside every known run makes
/// the searched directories be looked at again for new runs ([`scan::poll_tree`]).
fn rescan_touched(
    root: &Path,
    known: &[(String, PathBuf, Arc<RunView>)],
    touched: HashSet<PathBuf>,
    tree: &mut scan::Tree,
    globs: &[String],
) -> Found {
    let (mut hit, outside) = runs_touched(known, touched);
    if outside {
        let dirs: HashSet<&Path> = known.iter().map(|(_, d, _)| d.as_path()).collect();
        let (new_runs, _) = scan::poll_tree(root, tree, &|d| dirs.contains(d));
        for d in new_runs {
            hit.insert(d, (None, None));
        }
    }
    let mut found = Found::default();
    for (dir, (id, prev)) in hit {
        match scan::read_run_with(&dir, prev.as_deref(), globs) {
            Ok(r) => found.read.push((id, dir, r)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.gone.extend(id),
            Err(_) => {} // unreadable now (permissions, racing delete): keep the last view
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn run(id: &str, dir: &str) -> (String, PathBuf, Arc<RunView>) {
        (
            id.to_owned(),
            PathBuf::from(dir),
            Arc::new(RunView::default()),
        )
    }

    #[test]
    fn touched_paths_go_to_the_innermost_run_holding_them() {
        let known = vec![
            run("a", "/r/g/a"),
            run("b", "/r/g/b"),
            run("inner", "/r/g/a/sub/inner"),
            run("ab", "/r/g/ab"),
        ];
        let touched = [
            "/r/g/a/epoch_3/validation_scores.json",
            "/r/g/a/train_val.log",
            "/r/g/a/sub/inner/config.json",
            "/r/g/b",
            "/r/g/ab/x",
        ]
        .map(PathBuf::from);
        let (hit, outside) = runs_touched(&known, touched);
        assert!(!outside);
        let got: Vec<(String, Option<String>)> = hit
            .iter()
            .map(|(d, (id, v))| {
                assert!(v.is_some(), "a known run keeps its view");
                (d.display().to_string(), id.clone())
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/r/g/a".to_owned(), Some("a".to_owned())),
                ("/r/g/a/sub/inner".to_owned(), Some("inner".to_owned())),
                ("/r/g/ab".to_owned(), Some("ab".to_owned())),
                ("/r/g/b".to_owned(), Some("b".to_owned())),
            ],
            "one entry per run; /r/g/ab/x is not in /r/g/a"
        );
        // A path in no run (a new group, the root itself) asks for a look for new runs.
        let (hit, outside) = runs_touched(&known, [PathBuf::from("/r/g/new/run/x")]);
        assert!(hit.is_empty() && outside);
        let (hit, outside) = runs_touched(&known, [PathBuf::from("/r/g")]);
        assert!(hit.is_empty() && outside);
        let (hit, outside) = runs_touched(&[], Vec::new());
        assert!(hit.is_empty() && !outside);
    }
}
