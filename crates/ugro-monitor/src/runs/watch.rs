//! Watching a root with inotify: which filesystems cannot be watched, and the watches on the
//! searched directories, the run dirs and their frontier epoch dirs only.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::scan;

/// Filesystems on which inotify does not see writes made by other hosts (statfs magic numbers).
pub(super) fn is_network_fs(path: &Path) -> Option<&'static str> {
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
pub(super) enum Mode {
    Inotify(Watch),
    Poll,
}

/// The inotify watches of a root: only the directories whose changes matter, not the whole
/// tree — the searched (non-run) directories, where new runs appear; each run dir (its logs,
/// JSON files and new epoch dirs); each run's frontier epoch dir; and the log folders of a run
/// that has them (`logs/`, a glob's folder). Complete epochs are not watched. Each watch is
/// non-recursive; dropping the watcher removes them all.
pub(super) struct Watch {
    pub(super) watcher: notify::RecommendedWatcher,
    /// The watched searched directories.
    pub(super) tree: HashSet<PathBuf>,
    /// Each run's watched directories.
    pub(super) runs: HashMap<String, RunWatch>,
    /// The run sub-folders that hold logs ([`ugro_core::runs::log_dirs`]).
    log_dirs: Vec<String>,
}

/// The watched directories of one run.
pub(super) struct RunWatch {
    dir: PathBuf,
    frontier: Option<PathBuf>,
    /// Those of its log folders that exist.
    logs: Vec<PathBuf>,
}

impl RunWatch {
    /// How many watches this run holds.
    pub(super) fn count(&self) -> usize {
        1 + usize::from(self.frontier.is_some()) + self.logs.len()
    }
}

impl Watch {
    pub(super) fn new(
        tx: tokio::sync::mpsc::Sender<PathBuf>,
        overflow: Arc<std::sync::atomic::AtomicBool>,
        log_globs: &[String],
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
            log_dirs: ugro_core::runs::log_dirs(log_globs)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Watches one directory. A directory that vanished meanwhile is no error (its parent's
    /// watch reports the removal); running out of watches is.
    pub(super) fn add(&mut self, dir: &Path) -> Result<(), String> {
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

    pub(super) fn remove(&mut self, dir: &Path) {
        use notify::Watcher;
        let _ = self.watcher.unwatch(dir);
    }

    /// Makes the watches follow the searched directories of `tree` and the given runs (new or
    /// read again: their dir and frontier epoch dir) and drops the watches of `gone` runs.
    /// Returns the paths to look at again because their watch is new (what changed between
    /// the read and the watch), or why watching failed (the watch limit).
    pub(super) fn sync<'a>(
        &mut self,
        root: &Path,
        tree: &scan::Tree,
        runs: impl Iterator<Item = (&'a str, &'a Path, Option<u32>)>,
        gone: &[String],
    ) -> Result<Vec<PathBuf>, String> {
        let mut recheck = Vec::new();
        for id in gone {
            if let Some(w) = self.runs.remove(id) {
                self.remove(&w.dir);
                for d in w.frontier.iter().chain(&w.logs) {
                    self.remove(d);
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
            let (old_dir, old_frontier, old_logs) = match self.runs.remove(id) {
                Some(w) => (Some(w.dir), w.frontier, w.logs),
                None => (None, None, Vec::new()),
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
            // A log folder that appeared is watched (and looked at: it may hold lines already);
            // one that went is dropped.
            let logs: Vec<PathBuf> = self
                .log_dirs
                .iter()
                .map(|s| dir.join(s))
                .filter(|d| d.is_dir())
                .collect();
            for d in old_logs.iter().filter(|d| !logs.contains(d)) {
                self.remove(d);
            }
            for d in logs.iter().filter(|d| !old_logs.contains(d)) {
                self.add(d)?;
                recheck.push(dir.to_path_buf());
            }
            self.runs.insert(
                id.to_owned(),
                RunWatch {
                    dir: dir.to_path_buf(),
                    frontier,
                    logs,
                },
            );
        }
        Ok(recheck)
    }
}

/// Why inotify gave up on a root when the watch limit is reached.
pub(super) const INOTIFY_LIMIT: &str =
    "the inotify watch limit is reached (raise fs.inotify.max_user_watches)";
