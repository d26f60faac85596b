//! Reading experiment trees from the filesystem into `ugro_core::runs::RunView`s: discovery of
//! run directories under a root (symlinks never followed, unreadable directories reported and
//! skipped, non-UTF-8 names kept as paths), the stat of a run's files, bounded reads of the
//! JSON files that decide progress (re-used while size and mtime are unchanged), and the
//! bounded tail of a log. Everything here is blocking I/O: callers run it off the async runtime.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ugro_core::runs::{self as core, EpochView, FileInfo, JsonRead, RunView};

/// JSON files larger than this are not parsed (reported as unreadable).
pub const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;
/// At most this much of a log's end is read to classify a failure.
pub const LOG_TAIL_BYTES: u64 = 64 * 1024;
/// Directories deeper than this below a root are not searched for runs.
pub const MAX_DEPTH: usize = 12;
/// JSON files read at the top of a run directory.
const RUN_JSON: [&str; 3] = ["config.json", "progress.json", core::EVALUATOR_SCORES];

/// Run directories found under a root, and what could not be read.
#[derive(Debug, Default)]
pub struct Discovery {
    pub runs: Vec<PathBuf>,
    pub problems: Vec<String>,
}

fn mtime_of(meta: &fs::Metadata) -> DateTime<Utc> {
    meta.modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or_default()
}

/// Lists a directory: regular files with their size and mtime, and sub-directory names.
/// Entries that vanish mid-listing are skipped; symlinks are neither files nor dirs here.
fn list(dir: &Path) -> std::io::Result<(BTreeMap<String, FileInfo>, Vec<String>)> {
    let mut files = BTreeMap::new();
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let Ok(ft) = entry.file_type() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            dirs.push(name);
        } else if ft.is_file() {
            // Vanished between readdir and stat: skip it, the next scan sees the truth.
            if let Ok(meta) = entry.metadata() {
                files.insert(
                    name,
                    FileInfo {
                        size: meta.len(),
                        mtime: mtime_of(&meta),
                    },
                );
            }
        }
    }
    dirs.sort();
    Ok((files, dirs))
}

/// Finds every run directory under `root`. A run directory is not searched further (its
/// `epoch_*` folders and other sub-directories are part of it).
pub fn discover(root: &Path) -> Discovery {
    discover_known(root, &std::collections::HashSet::new())
}

/// Like [`discover`], but directories in `known` are taken as runs without being listed
/// (a poll cycle only looks for new runs between the known ones).
pub fn discover_known(root: &Path, known: &std::collections::HashSet<PathBuf>) -> Discovery {
    let mut out = Discovery::default();
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        if known.contains(&dir) {
            out.runs.push(dir);
            continue;
        }
        let (files, dirs) = match list(&dir) {
            Ok(l) => l,
            Err(e) => {
                if dir == root || e.kind() != std::io::ErrorKind::NotFound {
                    out.problems
                        .push(format!("cannot read {}: {e}", dir.display()));
                }
                continue;
            }
        };
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        let subs: Vec<&str> = dirs.iter().map(String::as_str).collect();
        if dir != root && core::is_run_dir(&names, &subs) {
            out.runs.push(dir);
            continue;
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        for d in dirs.iter().rev() {
            stack.push((dir.join(d), depth + 1));
        }
    }
    out.runs.sort();
    out
}

/// Parses a JSON file unless `prev` already holds the result for the same size and mtime.
fn read_json(path: &Path, info: &FileInfo, prev: Option<(&FileInfo, &JsonRead)>) -> JsonRead {
    if let Some((pinfo, pread)) = prev
        && pinfo == info
    {
        return pread.clone();
    }
    if info.size == 0 {
        return Err("empty".into());
    }
    if info.size > MAX_JSON_BYTES {
        return Err(format!("unreadable: larger than {MAX_JSON_BYTES} bytes"));
    }
    match fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Err("empty".into()),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON: {e}")),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

/// Keeps only what progress needs of a parsed epoch file, so thousands of epochs stay small:
/// validation scores as their flattened numeric leaves, other files as "parsed".
fn compact(name: &str, read: JsonRead) -> JsonRead {
    read.map(|v| {
        if name == "validation_scores.json" {
            let flat = core::flatten_scores(&v);
            serde_json::Value::Object(
                flat.into_iter()
                    .filter_map(|(k, x)| {
                        serde_json::Number::from_f64(x).map(|n| (k, serde_json::Value::Number(n)))
                    })
                    .collect(),
            )
        } else {
            serde_json::Value::Null
        }
    })
}

/// Reads one epoch directory (stat of its files, parse of its expected JSON files).
fn read_epoch(dir: &Path, prev: Option<&EpochView>) -> std::io::Result<EpochView> {
    let (files, _) = list(dir)?;
    let mut json = BTreeMap::new();
    for name in core::TRAINER_EXPECTED
        .iter()
        .filter(|n| n.ends_with(".json"))
    {
        if let Some(info) = files.get(*name) {
            let p = prev.and_then(|e| Some((e.files.get(*name)?, e.json.get(*name)?)));
            let read = match p {
                Some((pi, pr)) if pi == info => pr.clone(),
                _ => compact(name, read_json(&dir.join(name), info, None)),
            };
            json.insert((*name).to_string(), read);
        }
    }
    Ok(EpochView { files, json })
}

/// Reads a run directory. With `prev` (the last view of the same run), epochs before the
/// previous frontier whose files are unchanged are re-used, and only the frontier (the first
/// incomplete epoch and what follows it) is read again — unless `full` asks for everything.
pub fn read_run(dir: &Path, prev: Option<&RunView>, full: bool) -> std::io::Result<RunView> {
    let (files, subdirs) = list(dir)?;
    let mut json = BTreeMap::new();
    for name in RUN_JSON {
        if let Some(info) = files.get(name) {
            let p = prev.and_then(|v| Some((v.files.get(name)?, v.json.get(name)?)));
            json.insert(name.to_string(), read_json(&dir.join(name), info, p));
        }
    }
    let mut indices: Vec<u32> = subdirs
        .iter()
        .filter_map(|d| core::epoch_dir_index(d))
        .collect();
    indices.sort_unstable();
    let mut epochs = BTreeMap::new();
    // Re-use the complete prefix of the previous view (frontier polling).
    let mut next = 0u32;
    if let (Some(p), false) = (prev, full) {
        while let Some(e) = p.epochs.get(&next) {
            if !core::epoch_complete(e) || !indices.contains(&next) {
                break;
            }
            epochs.insert(next, e.clone());
            next += 1;
        }
    }
    // Read from the frontier on: consecutive epochs while complete, plus the first incomplete.
    let mut i = next;
    while indices.binary_search(&i).is_ok() {
        let prev_e = prev.and_then(|p| p.epochs.get(&i));
        let e = match read_epoch(&dir.join(format!("epoch_{i}")), prev_e) {
            Ok(e) => e,
            Err(_) => break, // vanished or unreadable: the count stops here
        };
        let complete = core::epoch_complete(&e);
        epochs.insert(i, e);
        if !complete {
            break;
        }
        i += 1;
    }
    Ok(RunView {
        files,
        subdirs,
        epochs,
        json,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn touch(p: &Path, text: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
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

    #[test]
    fn discovery_finds_nested_runs_not_epoch_dirs_and_survives_bad_dirs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        epoch(&r.join("exp1/run_a"), 0);
        touch(&r.join("exp1/run_b/evaluation_scores.json"), "{}");
        touch(&r.join("exp2/deep/run_c/train_val_1.log"), "x");
        touch(&r.join("exp2/notes/readme.txt"), "not a run");
        std::os::unix::fs::symlink(r, r.join("exp2/loop")).unwrap();
        let locked = r.join("locked");
        fs::create_dir_all(locked.join("run_d")).unwrap();
        touch(&locked.join("run_d/config.json"), "{}");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let d = discover(r);
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        let ids: Vec<String> = d
            .runs
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        // Root may read 0o000 dirs; as another user the locked dir is a reported problem.
        let expected_min = ["exp1/run_a", "exp1/run_b", "exp2/deep/run_c"];
        for e in expected_min {
            assert!(ids.contains(&e.to_string()), "{ids:?}");
        }
        assert!(
            !ids.iter()
                .any(|i| i.contains("epoch_") || i.contains("loop")),
            "{ids:?}"
        );
    }

    #[test]
    fn frontier_read_reuses_complete_epochs_and_sees_new_ones() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        for i in 0..3 {
            epoch(&run, i);
        }
        let v1 = read_run(&run, None, false).unwrap();
        assert_eq!(core::completed_epochs(&v1), 3);
        epoch(&run, 3);
        let v2 = read_run(&run, Some(&v1), false).unwrap();
        assert_eq!(core::completed_epochs(&v2), 4);
        // A corrupt file in the next epoch stops the count there.
        touch(&run.join("epoch_4/training_losses.pt"), "x");
        touch(&run.join("epoch_4/optimizer_buffer.json"), "{not json");
        touch(&run.join("epoch_4/validation_scores.json"), "{}");
        let v3 = read_run(&run, Some(&v2), false).unwrap();
        assert_eq!(core::completed_epochs(&v3), 4);
    }

    #[test]
    fn json_is_not_reread_while_unchanged() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        touch(&run.join("config.json"), "{\"epochs\": 5}");
        let v1 = read_run(&run, None, false).unwrap();
        assert_eq!(v1.json["config.json"].as_ref().unwrap()["epochs"], 5);
        let mut fake = v1.clone();
        fake.json
            .insert("config.json".into(), Ok(serde_json::json!({"epochs": 7})));
        let v2 = read_run(&run, Some(&fake), false).unwrap();
        assert_eq!(
            v2.json["config.json"].as_ref().unwrap()["epochs"],
            7,
            "re-used"
        );
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
