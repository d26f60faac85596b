//! Writing files safely, for every part that writes one (summaries, snapshots, progress.json):
//! an atomic replace — a temporary file beside the target, fsync, rename, fsync of the
//! directory — so a reader sees the old file or the new one, never half of one, even after a
//! crash or power loss.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` atomically. The directory must exist (this never creates
/// one: the daemon must not make directories in experiment trees). On failure the temporary
/// file is removed and the old file, if any, is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.ugro-{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() && tmp.exists() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("progress.json");
        write_atomic(&p, b"{\"a\": 1}").unwrap();
        write_atomic(&p, b"{\"a\": 2}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\": 2}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["progress.json"]);
    }

    #[test]
    fn never_creates_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gone/progress.json");
        assert!(write_atomic(&p, b"x").is_err());
        assert!(!dir.path().join("gone").exists());
    }
}
